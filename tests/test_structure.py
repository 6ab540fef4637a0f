"""The package's import structure: no import cycle, each backend below the front.

Imports are read with ``ast`` from every module of the package, including those inside
functions (the lazy imports of numba, torch and the CUDA backend): a cycle closed by a lazy
import still makes modules depend on each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fastinterp"

#: Layers from the bottom up: a module may import only from its own layer's lower entries
#: and from lower layers. Every module of the package is listed (checked below).
LAYERS = {
    "shared": ["reference", "_threads", "_coords", "_plan"],
    "backends": [
        "_cpu", "_cpu_fixed", "_adjoint", "_antialias", "_cpu_arrays",
        "_cuda_kernels", "_cuda_launch", "_cuda_antialias", "_cuda",
        "_torch_ops",
    ],
    "front": ["_api", "_dropin", "__init__"],
    "integrations": ["torch", "dask"],
}
#: Modules that nothing below the front may import.
FRONT = {"_api", "_dropin", "__init__", "torch", "dask"}


def _module_name(path: Path) -> str:
    return path.stem


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports anywhere in its body (``__init__`` for the package
    itself, when a name that is not a submodule is taken from it)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "fastinterp":
                    found.add(parts[1] if len(parts) > 1 and parts[1] in modules else "__init__")
        elif isinstance(node, ast.ImportFrom):
            if node.level == 1 or (node.level == 0 and (node.module or "").split(".")[0] == "fastinterp"):
                parts = (node.module or "").split(".")
                submodule = parts[0] if node.level == 1 else (parts[1] if len(parts) > 1 else "")
                if submodule:
                    found.add(submodule if submodule in modules else "__init__")
                else:  # from . import a, b
                    found.update(a.name if a.name in modules else "__init__" for a in node.names)
    found.discard(_module_name(path))
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.glob("*.py"))
    modules = {_module_name(p) for p in paths}
    return {_module_name(p): imports_of(p, modules) for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == "open":
                return stack[stack.index(successor):] + [successor]
            if successor not in state:
                cycle = visit(successor)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_reader_sees_lazy_imports(tmp_path):
    (tmp_path / "a.py").write_text("def f():\n    from . import b\n")
    (tmp_path / "b.py").write_text("from .a import f\nimport fastinterp.a\n")
    modules = {"a", "b"}
    assert imports_of(tmp_path / "a.py", modules) == {"b"}
    assert imports_of(tmp_path / "b.py", modules) == {"a"}
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_the_package():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_module_has_a_layer():
    listed = {m for layer in LAYERS.values() for m in layer}
    assert set(import_graph()) == listed


@pytest.mark.parametrize("module", [m for layer in ("shared", "backends") for m in LAYERS[layer]])
def test_modules_below_the_front_import_only_downward(module):
    order = [m for layer in LAYERS.values() for m in layer]
    graph = import_graph()
    upward = {m for m in graph[module] if order.index(m) > order.index(module)}
    assert not upward, f"{module} imports {sorted(upward)} from above it"
    assert not graph[module] & FRONT


def test_the_plan_imports_no_backend():
    assert import_graph()["_plan"] <= set(LAYERS["shared"])
