"""Where the configuration reference finds each key's type, default and comment: the yaml files under
conf/ (their header, `@package` directive, defaults list and trailing comments) and the structured-config
schemas (field types; their comments come from actlab.config.schema_comments)."""

from __future__ import annotations

import dataclasses
import enum
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from actlab.config.compose import CONFIG_DIR
from actlab.config.schema_comments import last_paragraph, schema_fields

CONF = Path(CONFIG_DIR)


@dataclass
class Row:
    key: str
    type: str
    value: str
    comment: str


# --- yaml files ------------------------------------------------------------------------------------------


def defaults_list(path: Path) -> list[Any]:
    if not path.is_file():
        return []
    node = OmegaConf.load(path)
    defaults = node.get("defaults") if isinstance(node, DictConfig) else None
    return list(OmegaConf.to_container(defaults)) if defaults else []


def header(path: Path) -> tuple[str, list[str]]:
    """The file's `# @package` directive (or "") and the comment lines that open it ("" between paragraphs)."""
    package, lines = "", []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped.startswith("#"):
            break
        text = stripped.lstrip("#").strip()
        if text.startswith("@package"):
            package = text.split(None, 1)[1].strip()
        else:
            lines.append(text)
    return package, lines


def package_of(path: Path, group: str) -> str:
    """The dotted key prefix a file's keys land under: its `@package`, else its group's path."""
    package, _ = header(path)
    if package == "_global_":
        return ""
    if package and package != "_group_":
        return package
    return group.replace("/", ".")


def split_comment(text: str) -> tuple[str, str]:
    """`value  # comment` -> (value, comment); a `#` inside quotes or not after a space is part of the value."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1].isspace()):
            return text[:i].rstrip(), text[i + 1 :].strip()
    return text.rstrip(), ""


KEY_LINE = re.compile(r"^(\s*)([^\s#'\"\-][^:#]*?):(?:\s+(.*)|\s*)$")


def yaml_comments(path: Path, prefix: str) -> dict[str, str]:
    """Dotted key -> the comment on its line in a yaml file (or the comment lines just above it)."""
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    block: list[str] = []
    lines = path.read_text().splitlines()
    start = len(header(path)[1]) + sum(1 for line in lines[:20] if "@package" in line)
    for line in lines[start:]:
        stripped = line.strip()
        if not stripped or stripped.startswith("-"):
            block = []
            continue
        if stripped.startswith("#"):
            block.append(stripped.lstrip("#").strip())
            continue
        match = KEY_LINE.match(line)
        if not match:
            block = []
            continue
        indent, key = len(match[1]), match[2].strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        full = ".".join([prefix] * bool(prefix) + [k for _, k in stack] + [key])
        _, trailing = split_comment(match[3] or "")
        comment = trailing or " ".join(last_paragraph(block))
        if comment:
            comments[full] = comment
        stack.append((indent, key))
        block = []
    return comments


def files_of(group: str, option: str) -> list[Path]:
    """An option's yaml file and the files of its group that its defaults list includes (e.g. g1 -> lerobot)."""
    path = CONF / group / f"{option}.yaml"
    if not path.is_file():
        return []
    included = []
    for entry in defaults_list(path):
        if isinstance(entry, str) and entry not in ("_self_",) and "/" not in entry:
            included += files_of(group, entry)
    return [*included, path]


def comment_index(config_name: str, cfg: DictConfig) -> dict[str, str]:
    """Every yaml comment that applies to a composition: the primary file, the top-level files its
    defaults list includes, and the chosen option of each group, later files winning."""
    index: dict[str, str] = {}
    primary = CONF / f"{config_name}.yaml"
    for entry in defaults_list(primary):
        if isinstance(entry, str) and (CONF / f"{entry}.yaml").is_file():
            index.update(yaml_comments(CONF / f"{entry}.yaml", ""))
    index.update(yaml_comments(primary, ""))
    choices = OmegaConf.select(cfg, "hydra.runtime.choices") or {}
    for group, option in choices.items():
        if option is None:
            continue
        for path in files_of(group, str(option)):
            index.update(yaml_comments(path, package_of(path, group)))
    return index


def keys_set_by(path: Path, prefix: str) -> list[str]:
    """The dotted keys a yaml file sets (its defaults list aside)."""
    node = OmegaConf.load(path)
    data = OmegaConf.to_container(node, resolve=False) if isinstance(node, DictConfig) else {}
    data.pop("defaults", None)
    keys: list[str] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(v, f"{path}.{k}" if path else str(k))
        else:
            keys.append(path)

    walk(data, prefix)
    return keys


# --- rows of the reference ------------------------------------------------------------------------------


def paragraphs(lines: list[str]) -> str:
    """Comment lines as Markdown paragraphs."""
    text = "\n".join(lines).strip()
    return "\n\n".join(prose(" ".join(p.split())) for p in re.split(r"\n\s*\n", text) if p.strip())


def type_name(hint: Any) -> str:
    if isinstance(hint, str):
        return hint
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__name__
    return re.sub(r"\b(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)", r"\1", str(hint)).replace("NoneType", "None")


def value_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, str):
        return value if value else "''"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {value_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    return str(value)


def rows_of(cfg: DictConfig, comments: dict[str, str], prefix: str = "") -> list[Row]:
    """One row per leaf of `cfg` (an empty or null node is a leaf), dotted keys under `prefix`."""
    rows: list[Row] = []
    hints, field_comments = schema_fields(OmegaConf.get_type(cfg) or dict)
    ranges = declared_ranges(OmegaConf.get_type(cfg))
    for key in cfg.keys():
        child = cfg._get_node(key)
        full = f"{prefix}.{key}" if prefix else str(key)
        comment = field_comments.get(str(key)) or comments.get(full, "")
        if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing() and len(child):
            if not child._is_interpolation():
                rows += rows_of(child, comments, full)
                continue
        typ = type_name(hints[str(key)]) if str(key) in hints else value_type(child)
        if str(key) in ranges:
            typ += ranges[str(key)].describe()
        rows.append(Row(full, typ, node_text(child), comment))
    return rows


def declared_ranges(schema: Any) -> dict[str, Any]:
    """Field name -> its valid range (actlab.config.ranges), shown beside the key's type."""
    if not (isinstance(schema, type) and dataclasses.is_dataclass(schema)):
        return {}
    return {f.name: f.metadata["range"] for f in dataclasses.fields(schema) if "range" in f.metadata}


def node_text(node: Any) -> str:
    """A node's value as written in yaml: `???` when required, an interpolation unresolved."""
    if node._is_missing():
        return "???"
    if node._is_interpolation():
        return str(node._value())
    if isinstance(node, (DictConfig, ListConfig)):
        return value_text(None if node._is_none() else OmegaConf.to_container(node, resolve=False))
    return value_text(node._value())


def value_type(node: Any) -> str:
    """The type of a node without a schema: its value's, in italics ("" for null, ??? and interpolations)."""
    if node._is_none() or node._is_missing() or node._is_interpolation():
        return ""
    if isinstance(node, (DictConfig, ListConfig)):
        return "*dict*" if isinstance(node, DictConfig) else "*list*"
    return f"*{type(node._value()).__name__}*"


def prose(text: str) -> str:
    """Text for a table cell: Markdown specials escaped outside code spans."""
    parts = re.split(r"(`[^`]*`)", text)
    for i in range(0, len(parts), 2):
        parts[i] = re.sub(r"([|*_\\])", r"\\\1", parts[i]).replace("<", "&lt;")
    return "".join(parts)
