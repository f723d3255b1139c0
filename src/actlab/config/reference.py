"""The configuration reference (Markdown), generated from what Hydra composes, never written by hand.

For each primary config (conf/train.yaml, eval.yaml, ...) and each option of each config group (one folder
under conf/), Hydra composes the config as a command would, and every key of the result is listed with
its type (from the structured-config schema of its node: `OmegaConf.get_type`), its composed default, and
its comment: the trailing `# ...` comment on the schema field's line (or the comment block just above
it), else the yaml file's comment for that key. The docs site renders it on every build (docs/hooks.py);
`python -m actlab.config.reference OUT.md` writes it alone.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import io
import re
import sys
import textwrap
import tokenize
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from actlab.config.compose import CONFIG_DIR

CONF = Path(CONFIG_DIR)
# The primary configs and the console script of each (whose module registers the config's schema, where
# actlab.config.schema.register_configs does not).
PRIMARIES = {
    "train": "actlab-train",
    "eval": "actlab-eval",
    "serve": "actlab-serve",
    "deploy": "actlab-deploy",
    "convert": "actlab-convert",
}
COMMANDS = {"train": "python train.py"}  # how the guides start a command, where not by its console script


@dataclass
class Row:
    key: str
    type: str
    value: str
    comment: str


# --- composing -------------------------------------------------------------------------------------------


def compose(config_name: str, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """`config_name` composed with `overrides` as its command would compose it (Hydra's node included)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name, overrides=list(overrides), return_hydra_config=True)


def register_schemas() -> None:
    """Every schema and resolver the primary configs need, registered in Hydra's ConfigStore."""
    from hydra.core.config_store import ConfigStore

    from actlab.config.checkpoint import register_checkpoint
    from actlab.config.schema import register_configs

    register_configs()
    register_checkpoint(None)  # eval/serve/deploy list `checkpoint_run`: without a checkpoint, empty
    stored = ConfigStore.instance().repo
    for name, script in PRIMARIES.items():
        schemas = [e for e in defaults_list(CONF / f"{name}.yaml") if isinstance(e, str) and e.endswith("_schema")]
        if any(f"{s}.yaml" not in stored for s in schemas):
            import_script_module(script)


def import_script_module(script: str) -> None:
    """Imports the module behind a console script (it registers its config's schema when imported)."""
    import importlib
    import tomllib

    scripts = tomllib.loads((CONF.parent / "pyproject.toml").read_text())["project"]["scripts"]
    importlib.import_module(scripts[script].split(":")[0])


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


# --- schemas ---------------------------------------------------------------------------------------------


def last_paragraph(lines: list[str]) -> list[str]:
    """The comment lines after the last empty one (a block above a key may open with a section heading)."""
    return lines[len(lines) - lines[::-1].index("") :] if "" in lines else lines


def paragraphs(lines: list[str]) -> str:
    """Comment lines as Markdown paragraphs."""
    text = "\n".join(lines).strip()
    return "\n\n".join(prose(" ".join(p.split())) for p in re.split(r"\n\s*\n", text) if p.strip())


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
    for key in cfg.keys():
        child = cfg._get_node(key)
        full = f"{prefix}.{key}" if prefix else str(key)
        comment = field_comments.get(str(key)) or comments.get(full, "")
        if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing() and len(child):
            if not child._is_interpolation():
                rows += rows_of(child, comments, full)
                continue
        typ = type_name(hints[str(key)]) if str(key) in hints else value_type(child)
        rows.append(Row(full, typ, node_text(child), comment))
    return rows


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


# --- Markdown --------------------------------------------------------------------------------------------


def code(text: str) -> str:
    if not text:
        return ""
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def prose(text: str) -> str:
    """Text for a table cell: Markdown specials escaped outside code spans."""
    parts = re.split(r"(`[^`]*`)", text)
    for i in range(0, len(parts), 2):
        parts[i] = re.sub(r"([|*_\\])", r"\\\1", parts[i]).replace("<", "&lt;")
    return "".join(parts)


def table(rows: list[Row], value_header: str = "default") -> list[str]:
    lines = [f"| key | type | {value_header} | comment |", "|---|---|---|---|"]
    for row in rows:
        typ = row.type if row.type.startswith("*") else code(row.type)
        lines.append(f"| {code(row.key)} | {typ} | {code(row.value)} | {prose(row.comment)} |")
    return lines


def anchor(group: str, option: str | None = None) -> str:
    return "-".join(filter(None, ["group", group.replace("/", "-"), option]))


def groups() -> dict[str, list[str]]:
    """Config group (folder under conf/, e.g. `dataset`, `hydra/launcher`) -> its options."""
    found: dict[str, list[str]] = {}
    for path in sorted(CONF.rglob("*.yaml")):
        if path.parent != CONF:
            found.setdefault(path.parent.relative_to(CONF).as_posix(), []).append(path.stem)
    return found


def option_file(group: str, option: str | None) -> Path | None:
    """conf/<group>/<option>.yaml, if the option is a file there (an option may also be a stored node)."""
    path = CONF / group / f"{option}.yaml"
    return path if option and path.is_file() else None


def default_choice(config_name: str, group: str) -> tuple[bool, str | None]:
    """Whether a primary config's defaults list names `group`, and its default option there."""
    for entry in defaults_list(CONF / f"{config_name}.yaml"):
        if isinstance(entry, dict):
            for key, value in entry.items():
                if key.split()[-1].lstrip("/") == group:
                    return True, value
    return False, None


def primary_section(name: str, cfg: DictConfig, group_names: set[str], train_keys: set[str]) -> list[str]:
    """A primary config's own keys: not those of the options it picks by default (they have their own
    sections), nor, for a command other than train, whole subtrees whose keys are all train's too."""
    rows = rows_of(cfg, comment_index(name, cfg))
    top: dict[str, list[Row]] = {}
    for row in rows:
        top.setdefault(row.key.split(".")[0], []).append(row)
    own: list[Row] = []
    skipped: list[str] = []
    for head, group_rows in top.items():
        subtree = len(group_rows) > 1 or group_rows[0].key != head
        if head == "hydra" or option_file(head, default_choice(name, head)[1]):
            continue  # in its option's section
        if name != "train" and subtree and all(r.key in train_keys for r in group_rows):
            skipped.append(head)
            continue
        own.extend(group_rows)
    command = ", ".join(dict.fromkeys(f"`{c}`" for c in (COMMANDS.get(name, PRIMARIES[name]), PRIMARIES[name])))
    _, description = header(CONF / f"{name}.yaml")
    lines = [f"### `{name}` {{ #primary-{name} }}", "", f"`conf/{name}.yaml`, run by {command}."]
    if description:
        lines += ["", paragraphs(description)]
    chosen = []
    for group in sorted(group_names):
        named, option = default_choice(name, group)
        if named:
            target = f"`{group}={option}`" if option else f"`{group}`: none"
            chosen.append(f"[{target}](#{anchor(group, option)})" if option_file(group, option) else target)
    if chosen:
        lines += ["", "Its config groups, with the default option: " + ", ".join(chosen) + "."]
    if skipped:
        also = ", ".join(f"`{s}.*`" for s in skipped)
        lines += ["", f"Also {also}: the same keys as in [`train`](#primary-train)."]
        if "checkpoint" in cfg.keys():
            lines[-1] += " Given `checkpoint=`, those its training run recorded start from its values."
    return [*lines, "", *table(own), ""]


def option_section(group: str, option: str, primary: str) -> list[str]:
    override = f"{group}={option}"
    cfg = compose(primary, [override])
    rows = {r.key: r for r in rows_of(cfg, comment_index(primary, cfg))}
    subtree = group.replace("/", ".")
    keys = [k for k in rows if k == subtree or k.startswith(subtree + ".")]
    for path in files_of(group, option):
        for key in keys_set_by(path, package_of(path, group)):
            keys += [k for k in rows if (k == key or k.startswith(key + ".")) and k not in keys]
    path = CONF / group / f"{option}.yaml"
    _, description = header(path)
    lines = [f"#### `{override}` {{ #{anchor(group, option)} }}", ""]
    if description:
        lines += [paragraphs(description), ""]
    selects = [
        f"[`{k.split()[-1].lstrip('/')}={v}`](#{anchor(k.split()[-1].lstrip('/'), v)})"
        for entry in defaults_list(path)
        if isinstance(entry, dict)
        for k, v in entry.items()
        if k.startswith("override") and option_file(k.split()[-1].lstrip("/"), v)
    ]
    if selects:
        lines += ["Selects " + ", ".join(selects) + ".", ""]
    if keys:
        lines += [*table([rows[k] for k in keys], "value"), ""]
    else:
        lines += ["Sets no keys.", ""]
    return lines


def render_reference() -> str:
    """The configuration reference as Markdown: every primary config and every option of every group."""
    register_schemas()
    found = groups()
    names = [n for n in PRIMARIES if (CONF / f"{n}.yaml").is_file()]
    lines = [
        "# Configuration reference",
        "",
        "Generated by `actlab.config.reference` from the structured-config schemas and the yaml files under "
        "`conf/` each time the docs are built: do not edit it. A type is the schema's (in *italics* where the "
        "node has no schema: the value's own); a default is what Hydra composes (`???`: required; `${...}`: "
        "an interpolation, resolved when the command runs); a comment is the schema field's, else the yaml "
        "file's. Every key is set on the command line as `key=value`; see [Configuration](../configuration.md).",
        "",
        "## Commands",
        "",
    ]
    train_keys = {row.key for row in rows_of(compose("train"), {})}
    for name in names:
        lines += primary_section(name, compose(name), set(found), train_keys)
    lines += ["## Config groups", ""]
    for group, options in found.items():
        primary = next((n for n in names if default_choice(n, group)[0]), names[0])
        named, default = default_choice(primary, group)
        lines += [f"### `{group}` {{ #{anchor(group)} }}", ""]
        usage = f"`{COMMANDS.get(primary, PRIMARIES[primary])} {group}=<option>`"
        default_text = f"default `{default}`" if default else "none by default"
        lines += [
            f"Options: {', '.join(f'[`{o}`](#{anchor(group, o)})' for o in options)}. Chosen with {usage} "
            f"(`conf/{group}/`; {default_text if named else 'not in the defaults list'}).",
            "",
        ]
        for option in options:
            lines += option_section(group, option, primary)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m actlab.config.reference OUT.md", file=sys.stderr)
        sys.exit(2)
    Path(args[0]).write_text(render_reference())


if __name__ == "__main__":
    main()
