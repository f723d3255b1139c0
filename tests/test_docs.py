"""The documentation stays true: every command in README.md and docs/ composes (its config groups and keys
exist), the configuration reference renders every group, README's links land, and the site builds."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console"}
DUMMY = "/tmp/actlab-docs-placeholder"  # stands for $VAR, $(...) and <placeholder> values

# command words -> the primary config a Hydra entry point composes
HYDRA_SCRIPTS = {
    "actlab-train": "train",
    "actlab-eval": "eval",
    "actlab-serve": "serve",
    "actlab-deploy": "deploy",
    "actlab-convert": "convert",
}
PYTHON_FILES = {"train.py": "train", "eval.py": "eval"}
PYTHON_MODULES = {"actlab.deploy": "deploy"}
ARGPARSE_SCRIPTS = {"actlab-export"}
CHECKPOINT_CONFIGS = {"eval", "serve", "deploy"}


@dataclass
class DocCommand:
    where: str  # file:line
    program: str  # a primary config name, or an argparse console script
    args: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.where} {self.program} {' '.join(self.args)}"


# --- finding commands ------------------------------------------------------------------------------------


def shell_substitute(line: str) -> str:
    """The line with its comment cut and the values only a shell knows ($VAR, ${VAR}, $(...), <placeholder>)
    replaced by a dummy path; single-quoted text (Hydra's own ${...} interpolations) is left as written."""
    out: list[str] = []
    i, quote = 0, None
    while i < len(line):
        ch = line[i]
        if quote == "'":
            quote = None if ch == "'" else quote
        elif ch in "'\"":
            quote = None if quote == ch else ch if quote is None else quote
        elif ch == "#" and quote is None and (i == 0 or line[i - 1].isspace()):
            break
        elif ch == "$" and line.startswith("$(", i):
            depth, j = 0, i + 1
            while j < len(line):
                depth += {"(": 1, ")": -1}.get(line[j], 0)
                if depth == 0:
                    break
                j += 1
            out.append(DUMMY)
            i = j + 1
            continue
        elif ch == "$" and (m := re.match(r"\$(\{[A-Za-z_]\w*\}|[A-Za-z_]\w*)", line[i:])):
            out.append(DUMMY)
            i += m.end()
            continue
        elif ch == "<" and quote is None and (m := re.match(r"<[A-Za-z_][\w .-]*>", line[i:])):
            out.append(DUMMY)
            i += m.end()
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def logical_lines(block: str) -> list[tuple[int, str]]:
    """(offset of the first line, text) of each line of a shell block, `\\` continuations joined."""
    lines: list[tuple[int, str]] = []
    pending, start = "", 0
    for n, line in enumerate(block.splitlines()):
        if not pending:
            start = n
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        lines.append((start, pending + line))
        pending = ""
    if pending:
        lines.append((start, pending))
    return lines


def parse_command(tokens: list[str], where: str) -> DocCommand | None:
    """The actlab command of one simple shell command, or None for another program."""
    while tokens and re.fullmatch(r"[A-Za-z_]\w*=.*", tokens[0]):
        tokens = tokens[1:]  # environment assignments (ACTLAB_DATA_DIR=... python train.py)
    if not tokens:
        return None
    word, rest = tokens[0], tokens[1:]
    if word in HYDRA_SCRIPTS:
        return DocCommand(where, HYDRA_SCRIPTS[word], rest)
    if word in ARGPARSE_SCRIPTS:
        return DocCommand(where, word, rest)
    if word.startswith("actlab-"):
        return DocCommand(where, word, rest)  # not a console script we know: reported by the check
    if word == "make" and rest[:1] == ["train"]:
        args = [a.split("=", 1)[1] for a in rest[1:] if a.startswith("ARGS=")]
        return DocCommand(where, "train", ["experiment=quickstart", *shlex.split(" ".join(args))])
    if Path(word).name.startswith("python") and rest:
        if rest[0] in PYTHON_FILES:
            return DocCommand(where, PYTHON_FILES[rest[0]], rest[1:])
        if rest[0] == "-m" and len(rest) > 1 and rest[1] in PYTHON_MODULES:
            return DocCommand(where, PYTHON_MODULES[rest[1]], rest[2:])
    return None


def markdown_commands(text: str, name: str) -> list[DocCommand]:
    """The actlab commands in a Markdown text's shell code blocks."""
    commands = []
    for block in re.finditer(r"^```([\w-]*)[^\n]*\n(.*?)^```", text, re.M | re.S):
        if block[1] not in SHELL_LANGUAGES:
            continue
        first_line = text[: block.start(2)].count("\n") + 1
        for offset, line in logical_lines(block[2]):
            tokens = shlex.split(shell_substitute(line))
            simple: list[list[str]] = [[]]
            for token in tokens:  # `a & b`, `a && b`, `a; b`, `a | b`
                if token in ("&", "&&", ";", "|", "||"):
                    simple.append([])
                else:
                    simple[-1].append(token)
            for part in simple:
                command = parse_command(part, f"{name}:{first_line + offset}")
                if command:
                    commands.append(command)
    return commands


def doc_commands() -> list[DocCommand]:
    return [c for path in DOC_FILES for c in markdown_commands(path.read_text(), path.relative_to(ROOT).as_posix())]


# --- checking them ---------------------------------------------------------------------------------------


def hydra_overrides(args: list[str]) -> list[str]:
    """A Hydra command line's overrides: flags dropped (-m, --cfg job, --help), each sweep at its first value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep

    overrides, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("-m", "--multirun", "--help", "-h", "--hydra-help", "--info", "-i"):
            pass
        elif arg in ("--cfg", "-c", "--package", "-p"):
            skip = True
        elif arg.startswith("-"):
            raise ValueError(f"{arg}: not a Hydra flag")
        else:
            overrides.append(arg)
    parsed = OverridesParser.create().parse_overrides(overrides)
    out = []
    for raw, override in zip(overrides, parsed, strict=True):
        if override.is_sweep_override():
            value = override.value()
            first = str(value.start) if isinstance(value, IntervalSweep) else next(override.sweep_string_iterator())
            out.append(f"{raw.split('=', 1)[0]}={first}")
        else:
            out.append(raw)
    return out


def console_script(name: str):
    """The function behind a console script, as pyproject.toml names it now."""
    target = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"][name]
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)


class Parsed(Exception):
    """Raised by a patched ArgumentParser.parse_args once the arguments parsed."""


def check_argparse(command: DocCommand) -> None:
    main = console_script(command.program)
    parse_args = argparse.ArgumentParser.parse_args

    def parse_only(self, args=None, namespace=None):
        parse_args(self, args, namespace)
        raise Parsed

    argparse.ArgumentParser.parse_args = parse_only
    try:
        main(command.args)
    except Parsed:
        return
    except SystemExit as e:
        raise AssertionError(f"{command.program} refused its arguments (exit status {e.code})") from None
    finally:
        argparse.ArgumentParser.parse_args = parse_args
    raise AssertionError(f"{command.program} ran without parsing its arguments")


def user_file(override: str, tmp_path: Path) -> str:
    """`encoder.weights=/path/to/x.pth`, a file the reader supplies and a new run checks when it composes,
    with an empty file in `tmp_path` in its place; any other override unchanged."""
    key, _, value = override.partition("=")
    if key.lstrip("+") != "encoder.weights" or not value.startswith("/path/to/"):
        return override
    stand_in = tmp_path / Path(value).name
    stand_in.touch()
    return f"{key}={stand_in}"


def check_command(command: DocCommand, tmp_path: Path) -> str | None:
    """None when the command composes (or parses); else what went wrong, in one line."""
    try:
        if command.program in ARGPARSE_SCRIPTS:
            check_argparse(command)
            return None
        if command.program not in HYDRA_SCRIPTS.values():
            return f"{command.program}: not an actlab command"
        overrides = [user_file(o, tmp_path) for o in hydra_overrides(command.args)]
        if command.program == "train":
            from actlab.config.compose import compose_train

            compose_train(overrides, output_dir=tmp_path / "run")
        elif command.program in CHECKPOINT_CONFIGS:
            from actlab.config.compose import compose_eval

            # no checkpoint exists here: compose without it, so only groups and keys are checked
            overrides = [o for o in overrides if not o.startswith("checkpoint=")]
            compose_eval(overrides, tmp_path / "run", config_name=command.program)
        else:
            from actlab.config.reference import compose, register_schemas

            register_schemas()
            compose(command.program, overrides)
    except Exception as e:  # noqa: BLE001 - the report names any failure
        return f"{type(e).__name__}: {' '.join(str(e).split())}"
    return None


COMMANDS = doc_commands()


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.where)
def test_doc_command_composes(command: DocCommand, tmp_path: Path) -> None:
    problem = check_command(command, tmp_path)
    assert problem is None, f"{command}\n{problem}"


def test_docs_have_commands_of_every_kind() -> None:
    programs = {c.program for c in COMMANDS}
    assert {"train", "eval", "serve", "deploy", "convert", "actlab-export"} <= programs
    assert sum(c.program == "train" for c in COMMANDS) >= 30


def test_command_finder_reads_shell_as_a_shell_does() -> None:
    text = """
```bash
LIFT=$(ls -d data/lift_*)   # an assignment, not a command
ACTLAB_DATA_DIR=/data python train.py dataset.root=$LIFT \\
    'env.image_size=[64,64]' model=tiny   # a comment's apostrophe isn't a quote
python train.py -m seed=1,2 'hydra.launcher.submitit_folder=${hydra.sweep.dir}/.submitit' resume=$(ls -d a | tail -1)
actlab-serve checkpoint=<run>/checkpoints/best serve.port=8000 &
kill %1
```
```python
python train.py not=a_shell_block
```
"""
    commands = markdown_commands(text, "self-test")
    assert [(c.program, c.args) for c in commands] == [
        ("train", [f"dataset.root={DUMMY}", "env.image_size=[64,64]", "model=tiny"]),
        ("train", ["-m", "seed=1,2", "hydra.launcher.submitit_folder=${hydra.sweep.dir}/.submitit", f"resume={DUMMY}"]),
        ("serve", [f"checkpoint={DUMMY}/checkpoints/best", "serve.port=8000"]),
    ]
    assert [c.where for c in commands] == ["self-test:4", "self-test:6", "self-test:7"]
    assert hydra_overrides(commands[1].args)[0] == "seed=1"


def test_checker_reports_a_misspelt_key(tmp_path: Path) -> None:
    bad = markdown_commands("```bash\npython train.py model=tiny model.dim_modle=1\n```\n", "self-test")
    assert len(bad) == 1
    problem = check_command(bad[0], tmp_path)
    assert problem is not None and "dim_modle" in problem
    eval_bad = markdown_commands("```\nactlab-eval checkpoint=$RUN eval.videoz=2\n```\n", "self-test")
    problem = check_command(eval_bad[0], tmp_path)
    assert problem is not None and "videoz" in problem
    export_bad = DocCommand("self-test", "actlab-export", ["a", "b", "--push-to-hubb", "x"])
    assert "refused" in (check_command(export_bad, tmp_path) or "")


# --- the reference and the site --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference() -> str:
    from actlab.config.reference import render_reference

    return render_reference()


def test_reference_lists_every_group_option_and_key(reference: str) -> None:
    from omegaconf import OmegaConf

    from actlab.config.reference import compose

    conf = ROOT / "conf"
    for primary in ("train", "eval", "serve", "deploy"):
        assert f"### `{primary}`" in reference
    for folder in sorted({p.parent for p in conf.rglob("*.yaml") if p.parent != conf}):
        group = folder.relative_to(conf).as_posix()
        assert f"### `{group}`" in reference, group
        for option in sorted(p.stem for p in folder.glob("*.yaml")):
            assert f"#### `{group}={option}`" in reference, f"{group}={option}"
    leaves = [
        k for k, _ in _leaves(OmegaConf.to_container(compose("train"), resolve=False)) if k.split(".")[0] != "hydra"
    ]
    missing = [k for k in leaves if f"| `{k}` |" not in reference]
    assert not missing, f"keys of conf/train.yaml missing from the reference: {missing}"


def _leaves(node, prefix=""):
    if isinstance(node, dict) and node:
        for k, v in node.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, node


@dataclass
class _Commented:
    """Comments as the schemas write them."""

    plain: int = 1
    trailing: int = 2  # on the line
    # above the field
    above: int = 3
    first: float = 0.0  # a comment that goes on
    # on the next line
    second: str = "x"  # its own
    # npy format
    #
    # after a blank comment line
    last: bool = False


def test_field_comments_come_from_the_schema_source() -> None:
    from actlab.config.schema_comments import class_comments

    assert class_comments(_Commented) == {
        "trailing": "on the line",
        "above": "above the field",
        "first": "a comment that goes on on the next line",
        "second": "its own",
        "last": "after a blank comment line",
    }


def test_readme_links_land() -> None:
    from markdown.extensions.toc import slugify

    text = (ROOT / "README.md").read_text()
    headings = {m[1] for m in re.finditer(r"^#+ (.+)$", text, re.M)}
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        file = ROOT / path if path else ROOT / "README.md"
        assert file.exists(), target
        if anchor and file.suffix == ".md":
            names = headings if not path else {m[1] for m in re.finditer(r"^#+ (.+)$", file.read_text(), re.M)}
            assert anchor in {slugify(h.replace("`", ""), "-") for h in names}, target


@pytest.mark.slow
def test_docs_site_builds_without_warnings(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    assert (tmp_path / "reference" / "configuration" / "index.html").is_file()
