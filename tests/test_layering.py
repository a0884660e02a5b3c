"""The package's layering: no import cycle, no function-local import of memdesc, layers point down.

Layers (docs/architecture.md): ``lib`` (standalone data structures) < ``mm`` (the modelled
kernel) < ``trace`` (real-kernel files; may read mm's formats, never the page allocator) <
``sim`` (drivers joining a machine and real data: churn, replay, snapshot, scenarios) <
``cli``.  A function-local ``import memdesc...`` is how cycles hide, so none is allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "memdesc"

#: package prefix -> prefixes it must not import
FORBIDDEN = {
    "memdesc.lib": ("memdesc.mm", "memdesc.trace", "memdesc.sim", "memdesc.report", "memdesc.cli"),
    "memdesc.mm": ("memdesc.trace", "memdesc.sim", "memdesc.report", "memdesc.cli"),
    "memdesc.trace": ("memdesc.mm.page_alloc", "memdesc.mm.machine", "memdesc.sim", "memdesc.report",
                      "memdesc.cli"),
    "memdesc.sim": ("memdesc.report", "memdesc.cli"),
    "memdesc.report": ("memdesc.cli",),
    # imported by every layer: they import nothing of memdesc's layers
    "memdesc.results": ("memdesc.lib", "memdesc.mm", "memdesc.trace", "memdesc.sim", "memdesc.report",
                        "memdesc.cli"),
    "memdesc._html": ("memdesc.lib", "memdesc.mm", "memdesc.trace", "memdesc.sim", "memdesc.report",
                      "memdesc.cli"),
}


def _modules() -> dict[str, Path]:
    out = {}
    for p in SRC.rglob("*.py"):
        parts = list(p.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The memdesc module an import names (``from a.b import c`` may name module a.b.c)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(path: Path) -> tuple[set[str], list[tuple[int, str]]]:
    """(memdesc modules imported at module level, [(line, name)] of imports inside functions)."""
    tree = ast.parse(path.read_text())
    top: set[str] = set()
    local: list[tuple[int, str]] = []

    def names(node) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            return [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        return []

    def visit(node, in_func: bool) -> None:
        for child in ast.iter_child_nodes(node):
            f = in_func or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            for n in names(child):
                if n.split(".")[0] != "memdesc":
                    continue
                if f:
                    local.append((child.lineno, n))
                else:
                    m = _resolve(n)
                    if m:
                        top.add(m)
            visit(child, f)

    visit(tree, False)
    return top, local


GRAPH = {m: _imports(p) for m, p in MODULES.items()}


def test_no_function_local_import_of_memdesc():
    bad = [f"{MODULES[m].relative_to(SRC.parent)}:{line}: {n}" for m, (_, local) in GRAPH.items()
           for line, n in local]
    assert not bad, "function-local imports of memdesc modules (a cycle hiding?):\n" + "\n".join(bad)


def test_no_import_cycle():
    edges = {m: {d for d in deps if d != m and not m.startswith(d + ".")} for m, (deps, _) in GRAPH.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(edges.get(m, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state:
                cyc = dfs(d)
                if cyc:
                    return cyc
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state:
            cyc = dfs(m)
            assert cyc is None, "import cycle: " + " -> ".join(cyc)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_point_down(layer):
    bad = []
    for m, (deps, _) in GRAPH.items():
        if m == layer or m.startswith(layer + "."):
            for d in deps:
                if any(d == f or d.startswith(f + ".") for f in FORBIDDEN[layer]):
                    bad.append(f"{m} imports {d}")
    assert not bad, "\n".join(bad)
