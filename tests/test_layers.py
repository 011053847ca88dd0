"""The package's layers, read from every module's imports (walked, not listed by hand).

- landscape.cube is the contract: no torch, nothing of the package but its errors and bounded reads.
- landscape.read and plots read cubes: no torch (nor any module of ours that imports it), neither
  landscape.run nor landscape.train; plots use only the cube, the readers and the errors.
- Tasks never import the readers.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("landscape", "plots")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def _type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (getattr(test, "id", None) == "TYPE_CHECKING"
                                         or getattr(test, "attr", None) == "TYPE_CHECKING")


@cache
def imports(name: str) -> frozenset[str]:
    """The modules ``name`` imports anywhere (top level and inside functions; ``from a import b``
    counts as ``a.b`` where that is a module of ours). Annotations under TYPE_CHECKING run never."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    skip = {id(n) for node in ast.walk(ast.parse(path.read_text())) if _type_checking(node)
            for n in ast.walk(node)}
    for node in ast.walk(ast.parse(path.read_text())):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package up level - 1
                parts = package.split(".")[: package.count(".") + 2 - node.level]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)
    return frozenset(found)


@cache
def reached(name: str) -> frozenset[str]:
    """Every module ``name`` imports, through our own modules (a module also imports its packages' __init__)."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        for module in imports(todo.pop()):
            parents = [".".join(module.split(".")[:k]) for k in range(1, module.count(".") + 2)]
            for m in parents:
                if m not in seen:
                    seen.add(m)
                    if m in MODULES:
                        todo.append(m)
    return frozenset(seen)


def under(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


READERS = [m for m in MODULES if under(m, "landscape.cube", "landscape.read", "plots")]


def test_the_walk_sees_every_layer():
    assert {"landscape.cube.store", "landscape.read.analysis", "plots.render", "landscape.run.driver",
            "landscape.train.loop", "landscape.tasks.registry"} <= set(MODULES)


@pytest.mark.parametrize("name", READERS)
def test_readers_need_neither_torch_nor_training(name):
    for module in reached(name):
        assert not under(module, "torch", "landscape.run", "landscape.train"), f"{name} reaches {module}"
    assert "matplotlib.pyplot" not in imports(name), "pyplot's global state"


@pytest.mark.parametrize("name", [m for m in MODULES if under(m, "landscape.cube")])
def test_the_cube_imports_nothing_of_the_package_but_errors(name):
    ours = {m for m in imports(name) if under(m, "landscape")}
    assert ours <= {"landscape.errors", "landscape.safeio"} | {m for m in ours if under(m, "landscape.cube")}, ours


@pytest.mark.parametrize("name", [m for m in MODULES if under(m, "plots")])
def test_plots_read_only_the_cube_and_the_readers(name):
    ours = {m for m in imports(name) if under(m, "landscape")}
    assert all(under(m, "landscape.cube", "landscape.read", "landscape.errors") for m in ours), ours


@pytest.mark.parametrize("name", [m for m in MODULES if under(m, "landscape.tasks")])
def test_tasks_never_import_the_readers(name):
    assert not any(under(m, "landscape.read") for m in reached(name)), name


def test_readers_import_without_torch_at_run_time():
    """What the walk cannot see: a dependency (xarray, zarr, matplotlib) that pulls torch in."""
    code = ("import sys, importlib; [importlib.import_module(m) for m in sys.argv[1:]]; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'landscape.run', "
            "'landscape.train'))))")
    out = subprocess.run([sys.executable, "-c", code, *READERS], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
