"""No import cycles in ``proxy`` or ``magento_standin``: the graph of imports each module
runs when it is imported (module level, outside ``if TYPE_CHECKING:``) is acyclic, so any
module can be imported first and none sees another half-initialised.

Read statically (``ast``), like import linters do: an import inside a function runs later,
on purpose (optional dependencies, the demo's stand-in) and is not an edge. A package's own
parent is not an edge either: Python imports it first whatever the child says.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("proxy", "magento_standin")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _run_at_import(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that run when the module body runs (not in defs or classes)."""
    out: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            out.append(node)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                out += _run_at_import(node.body)
            out += _run_at_import(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                out += _run_at_import(block)
            for handler in node.handlers:
                out += _run_at_import(handler.body)
        elif isinstance(node, ast.With):
            out += _run_at_import(node.body)
    return out


def _edges(name: str, path: Path) -> set[str]:
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    edges: set[str] = set()
    for node in _run_at_import(ast.parse(path.read_text(encoding="utf-8")).body):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from X import y`: runs X, and y too when y is a submodule of X.
            targets = [source] + [f"{source}.{alias.name}" for alias in node.names]
        edges.update(t for t in targets if t in MODULES and t != name)
    # A package's parents run before it whatever it imports; they are not its edges.
    return {e for e in edges if not name.startswith(e + ".")}


GRAPH = {name: _edges(name, path) for name, path in MODULES.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_is_read() -> None:
    # The reader must see real edges, or an empty graph would pass vacuously.
    assert "proxy.auth" in GRAPH["proxy.edge"]
    assert "proxy.backends.keystore.base" in GRAPH["proxy.backends.keystore.sqlite"]
    assert "proxy.errors" in GRAPH["proxy.backends.keystore.sqlite"]
    assert "proxy.edge" not in GRAPH["proxy.endpoints"]  # under TYPE_CHECKING only
    assert "proxy.backends.keystore.redis" not in GRAPH["proxy.backends.keystore"]  # lazy


def test_no_import_cycles() -> None:
    assert _cycle(GRAPH) is None, " -> ".join(_cycle(GRAPH) or [])


def test_a_cycle_is_found_and_named() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycle(graph) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_product_never_imports_the_standin_at_import_time() -> None:
    reached: set[str] = set()
    todo = [name for name in GRAPH if name.startswith("proxy")]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(GRAPH[name])
    assert not {name for name in reached if name.startswith("magento_standin")}


@pytest.mark.parametrize(
    "module", ["proxy.backends.keystore.sqlite", "proxy.backends.ratelimit", "proxy.grants"]
)
def test_a_leaf_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    # What the static graph promises, checked for real where a cycle would bite first:
    # modules deep in the graph, imported before anything else.
    subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, check=True)
