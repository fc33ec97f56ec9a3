"""The import graph of a package, read with ``ast`` (no module is imported), and its cycles.

Every import statement counts, wherever it sits: at module level, under ``if TYPE_CHECKING:``
and inside functions. A guard or a lazy import only hides a cycle from the interpreter; the two
modules still depend on each other. Each edge remembers where it was written and how it was
guarded, so a cycle can be printed with the lines that close it.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TOP, TYPE_CHECKING, FUNCTION = "top-level", "TYPE_CHECKING", "in a function"


@dataclass(frozen=True, order=True)
class Edge:
    importer: str
    imported: str
    line: int
    guard: str  # TOP, TYPE_CHECKING or FUNCTION

    def __str__(self) -> str:
        return f"{self.importer} -> {self.imported} (line {self.line}, {self.guard})"


def module_names(root: Path) -> dict[str, Path]:
    """Dotted name -> file, for every ``.py`` under the package directory ``root``."""
    names: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


class _Imports(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, known: set[str]) -> None:
        self.module = module
        self.package = module if is_package else module.rpartition(".")[0]
        self.known = known
        self.guards: list[str] = []
        self.edges: list[Edge] = []

    def _add(self, target: str, line: int) -> None:
        # `import a.b.c` or `from a.b import c`: the deepest module of ours that the name
        # reaches; names from outside the package are not ours to check.
        while target and target not in self.known:
            target = target.rpartition(".")[0]
        if target and target != self.module:
            guard = self.guards[-1] if self.guards else TOP
            self.edges.append(Edge(self.module, target, line, guard))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            anchor = self.package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            full = f"{base}.{alias.name}"
            self._add(full if full in self.known else base, node.lineno)

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self.guards.append(TYPE_CHECKING)
        for child in node.body:
            self.visit(child)
        self.guards.pop()
        for child in node.orelse:
            self.visit(child)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        # An import under TYPE_CHECKING stays a TYPE_CHECKING import even inside a function.
        self.guards.append(self.guards[-1] if self.guards else FUNCTION)
        self.generic_visit(node)
        self.guards.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = _function


def import_edges(root: Path) -> list[Edge]:
    """Every import between modules of the package at ``root`` (a directory with __init__.py)."""
    names = module_names(root)
    known = set(names)
    edges: list[Edge] = []
    for name, path in names.items():
        visitor = _Imports(name, path.name == "__init__.py", known)
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        edges += visitor.edges
    return sorted(set(edges))


def _components(graph: dict[str, set[str]]) -> Iterator[list[str]]:
    """Tarjan's strongly connected components, iteratively (no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph.get(succ, ())))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    yield sorted(component)


def _shortest_cycle_through(start: str, graph: dict[str, set[str]]) -> list[str]:
    """The modules of a shortest cycle from ``start`` back to itself (breadth first)."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for succ in sorted(graph.get(node, ())):
                if succ == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if succ not in previous:
                    previous[succ] = node
                    following.append(succ)
        frontier = following
    raise ValueError(f"{start} is on no cycle")


def cycles(edges: list[Edge]) -> list[list[Edge]]:
    """One shortest cycle per strongly connected component of more than one module, each as
    the edges that close it (the first import statement found for each step)."""
    graph: dict[str, set[str]] = {}
    first: dict[tuple[str, str], Edge] = {}
    for edge in edges:
        graph.setdefault(edge.importer, set()).add(edge.imported)
        first.setdefault((edge.importer, edge.imported), edge)
    found = []
    for component in _components(graph):
        if len(component) > 1:
            loop = _shortest_cycle_through(component[0], graph)
            found.append([first[step] for step in itertools.pairwise(loop)])
    return found


def describe(found: list[list[Edge]]) -> str:
    """Each cycle as its module chain, then the import statements that close it."""
    blocks = []
    for cycle in found:
        chain = " -> ".join([cycle[0].importer, *(edge.imported for edge in cycle)])
        blocks.append("\n".join([f"cycle {chain}:", *(f"  {edge}" for edge in cycle)]))
    return "\n\n".join(blocks)
