"""The package's layering, read from the import statements themselves (docs/architecture.md).

Every ``import`` in ``archgraph/``, ``spaces/`` and ``strategies/``, at module level or inside a
function, is checked: a module may import its own layer and the layers below, never one above; and
nothing in the package imports a particular space or strategy (they are reached by name through the
registry), except the spaces and strategies themselves.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"archgraph": ROOT / "archgraph", "archgraph.spaces": ROOT / "spaces", "archgraph.strategies": ROOT / "strategies"}

# Lowest first. A module name belongs to the first layer whose prefix it matches (longest prefix wins).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("archgraph.errors", "archgraph.io", "archgraph.configtools", "archgraph.runfolder")),
    ("core", ("archgraph.core", "archgraph.data")),
    ("config", ("archgraph.config", "archgraph.builders")),
    ("extensions", ("archgraph.spaces", "archgraph.strategies")),
    ("outputs", ("archgraph.outputs",)),
    ("engine", ("archgraph.engine",)),
    ("studies", ("archgraph.studies",)),
    ("interface", ("archgraph.commands", "archgraph.cli", "archgraph.__main__", "archgraph")),
]
EXTENSIONS = ("archgraph.spaces", "archgraph.strategies")


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best is None:
        raise AssertionError(f"{module} is in no layer; add it to LAYERS and docs/architecture.md")
    return best


def modules() -> list[tuple[str, Path]]:
    found = []
    for package, folder in FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found.append((".".join([package, *parts]), path))
    return found


KNOWN = {name for name, _ in modules()}


def imports_of(module: str, path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import of a package module in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from archgraph.engine import distributed` imports the submodule
            out += [(f"{base}.{a.name}" if f"{base}.{a.name}" in KNOWN else base, node.lineno) for a in node.names]
    return [(name, line) for name, line in out if name == "archgraph" or name.startswith("archgraph.")]


def violations() -> list[str]:
    found = []
    for module, path in modules():
        own = layer_of(module)
        own_ext = next((e for e in EXTENSIONS if module.startswith(e)), None)
        for target, line in imports_of(module, path):
            if target == "archgraph":
                continue  # the package itself (its version), imported by the interface only
            where = f"{path.name}:{line} ({module}, {LAYERS[own][0]}) imports {target}"
            ext = next((e for e in EXTENSIONS if target.startswith(e)), None)
            if ext and ext != own_ext:
                found.append(f"{where}: spaces and strategies are reached through the registry only")
            elif layer_of(target) > own:
                found.append(f"{where} ({LAYERS[layer_of(target)][0]}): a lower layer imports a higher one")
    return found


def test_no_import_runs_up_the_layers():
    assert violations() == []


def test_every_module_has_a_layer():
    for module, _ in modules():
        layer_of(module)


@pytest.mark.parametrize("bad, why", [("archgraph.core.fake", "lower layer"), ("archgraph.engine.fake", "registry")])
def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch, bad, why):
    """The checker is not vacuous: a core module importing the engine, or an engine module
    importing a strategy, is reported."""
    folder = tmp_path / "archgraph"
    sub = folder / bad.split(".")[1]
    sub.mkdir(parents=True)
    target = "archgraph.engine.search" if why == "lower layer" else "archgraph.strategies.dcnas"
    (sub / "fake.py").write_text(f"def f():\n    from {target} import x\n")
    monkeypatch.setattr(__import__(__name__), "FOLDERS", {"archgraph": folder})
    assert any(why in v for v in violations())
