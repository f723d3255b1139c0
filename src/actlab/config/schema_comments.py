"""The comments written beside the fields of the structured-config schemas, read from their source with
`tokenize`, for the configuration reference (the schemas themselves stay plain dataclasses)."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import io
import textwrap
import tokenize
import typing
from typing import Any


def last_paragraph(lines: list[str]) -> list[str]:
    """The comment lines after the last empty one (a block above a key may open with a section heading)."""
    return lines[len(lines) - lines[::-1].index("") :] if "" in lines else lines


@functools.cache
def class_comments(cls: type) -> dict[str, str]:
    """Field name -> the comment written with it in `cls`'s own source: the trailing `# ...` on its line,
    else the comment lines just above it. A comment line right after a commented field, above a field
    with a comment of its own, continues the first field's comment."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comment_lines: dict[int, str] = {}
    fields: list[tuple[str, int, int, str]] = []  # name, first line, last line, trailing comment
    depth, line_depth = 0, 0
    tokens: list[tokenize.TokenInfo] = []  # the logical line's code
    trailing: list[str] = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.INDENT, tokenize.DEDENT):
            depth += 1 if tok.type == tokenize.INDENT else -1
        elif tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            if tok.line.strip().startswith("#"):
                comment_lines[tok.start[0]] = text
            else:
                trailing.append(text)
        elif tok.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
            # a field of the class body: `name: annotation [= default]`
            if line_depth == 1 and len(tokens) > 1 and tokens[0].type == tokenize.NAME and tokens[1].string == ":":
                fields.append((tokens[0].string, tokens[0].start[0], tok.start[0], " ".join(trailing)))
            tokens, trailing = [], []
        elif tok.type != tokenize.NL:
            if not tokens:
                line_depth = depth
            tokens.append(tok)
    comments: dict[str, str] = {}
    previous: tuple[str, int] | None = None  # a commented field and its last line
    for name, start, end, comment in fields:
        above: list[str] = []
        line = start - 1
        while line in comment_lines:
            above.insert(0, comment_lines[line])
            line -= 1
        above = last_paragraph(above)
        if above and comment and previous and previous[1] == line:
            comments[previous[0]] += " " + " ".join(above)  # continues the field above
        elif above and not comment:
            comment = " ".join(above)
        comments[name] = comment
        previous = (name, end) if comment else None
    return {k: v for k, v in comments.items() if v}


def schema_fields(cls: type) -> tuple[dict[str, Any], dict[str, str]]:
    """A dataclass schema's field types and comments (its bases' fields included)."""
    if not dataclasses.is_dataclass(cls):
        return {}, {}
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - an annotation that does not resolve: show it as written
        hints = {f.name: f.type for f in dataclasses.fields(cls)}
    comments: dict[str, str] = {}
    for base in reversed(cls.__mro__):
        if dataclasses.is_dataclass(base):
            comments.update(class_comments(base))
    return hints, comments
