"""The configuration reference (Markdown), generated from what Hydra composes, never written by hand.

For each primary config (conf/train.yaml, eval.yaml, ...) and each option of each config group (one folder
under conf/), Hydra composes the config as a command would, and every key of the result is listed with
its type (from the structured-config schema of its node: `OmegaConf.get_type`), its composed default, and
its comment: the trailing `# ...` comment on the schema field's line (or the comment block just above
it), else the yaml file's comment for that key. The docs site renders it on every build (docs/hooks.py);
`python -m actlab.config.reference OUT.md` writes it alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig

from actlab.config.compose import CONFIG_DIR
from actlab.config.reference_sources import (
    Row,
    comment_index,
    defaults_list,
    files_of,
    header,
    keys_set_by,
    package_of,
    paragraphs,
    prose,
    rows_of,
)

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


# --- Markdown --------------------------------------------------------------------------------------------


def code(text: str) -> str:
    if not text:
        return ""
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


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
