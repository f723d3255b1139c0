"""The package's layers, drawn from its imports: every import of an actlab module (at module level or inside
a function) must point to the same layer or one below, packages of one layer must not import each other,
and the modules must not import each other in a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Bottom to top. A module belongs to the first entry that is it or a package above it.
LAYERS = [
    ("vocabulary", ["actlab.errors", "actlab.features", "actlab.io", "actlab.devices", "actlab.entry"]),
    ("config", ["actlab.config"]),
    ("formats", ["actlab.lerobot_io"]),
    ("data", ["actlab.data"]),
    ("policy", ["actlab.policy"]),
    ("sim", ["actlab.sim"]),
    # exports, and the ONNX export on the fly that actlab-eval/-serve/-deploy run with policy.runtime=onnx
    ("export", ["actlab.export"]),
    ("commands", ["actlab.training", "actlab.eval", "actlab.deploy"]),
    ("entry points", ["actlab.cli"]),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """Every module but the root package (which imports nothing: `test_the_root_package_imports_nothing`)."""
    return {module_name(p): p for p in (SRC / "actlab").rglob("*.py") if p != SRC / "actlab" / "__init__.py"}


def imported(path: Path, name: str, known: set[str]) -> set[str]:
    """The actlab modules `path` imports (a `from package import module` counts as the module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        out |= {t for t in targets if t.startswith("actlab") and t != name}
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imported(path, name, set(mods)) for name, path in mods.items()}


def layer(module: str) -> tuple[int, str]:
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                return index, prefix
    raise AssertionError(f"{module} is in no layer of tests/test_layers.py: add it")


def test_every_import_points_down_or_stays_in_its_package():
    wrong = []
    for module, targets in graph().items():
        level, package = layer(module)
        for target in targets:
            target_level, target_package = layer(target)
            if target_level > level or (target_level == level and target_package != package and level > 0):
                wrong.append(f"{module} ({LAYERS[level][0]}) imports {target} ({LAYERS[target_level][0]})")
    assert not wrong, "imports that run up the layers or across packages of one layer:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if target not in edges:
                continue
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target) :] + [node, target]))
            elif target not in state:
                visit(target, [*path, node])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_root_package_imports_nothing():
    assert not imported(SRC / "actlab" / "__init__.py", "actlab", set(modules()))


def test_the_walk_sees_imports():
    # The checks above must find what they check: the vocabulary is imported all over the package.
    assert sum("actlab.features" in targets for targets in graph().values()) > 10
