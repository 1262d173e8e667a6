"""The imports between tipline's modules, read from the source (nothing is imported to check).

The rules enforced (docs/architecture.md draws them):

1. **No circle.** No tipline module reaches itself by following imports — at module level
   *or* inside a function (a deferred import is still a dependency, and a circle "fixed" by
   deferring it is the guard the CLI once needed). Imports under ``if TYPE_CHECKING:`` are
   left out: they never run, and a type may name its user.
2. **``tipline.model`` imports nothing of tipline's**: the pure domain types.
3. **``tipline.kinds`` imports only ``tipline.kinds``**: registries are data.
4. **``tipline.cybertip`` imports only ``model`` and ``kinds``**: the wire format.
5. **``tipline.store`` imports only ``config``, ``model`` and ``kinds``**: tables, blobs.
6. **Only the outside imports ``tipline.web``**: the HTTP adapters depend on the services,
   never the other way. Apart from ``web`` itself only the drivers may import it: the CLI
   (``cli``, ``commands``, ``__main__``), ``demo`` and ``sim``, which run the real app.
   The exceptions known today are listed in ``KNOWN_WEB_IMPORTS``, each with what removes it;
   any other such import fails.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "tipline"

# Rule 6: the packages (first name below ``tipline``) that may import ``tipline.web``.
WEB_IMPORTERS = frozenset({"web", "cli", "commands", "__main__", "demo", "sim"})
# Rule 6's exceptions known today: (importer, imported) -> why, and what removes it. Nothing
# else may join them; an entry goes when its import does.
KNOWN_WEB_IMPORTS: dict[tuple[str, str], str] = {
}
# Rules 2-5: what each inner package may import of tipline's (besides itself).
ALLOWED: dict[str, frozenset[str]] = {
    "model": frozenset(),
    "kinds": frozenset(),
    "cybertip": frozenset({"model", "kinds"}),
    # metrics is a leaf (prometheus-client only): the pool and commit timings are the store's.
    "metrics": frozenset(),
    "store": frozenset({"config", "model", "kinds", "metrics"}),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    line: int


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, skipping the bodies of ``if TYPE_CHECKING:`` (their ``else`` runs)."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for node in child.orelse:
                yield node
                yield from _nodes(node)
            continue
        yield child
        yield from _nodes(child)


def _resolve(name: str) -> str | None:
    """The tipline module ``name`` is, or the one it lives in (an attribute of a module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    is_package = MODULES[module].name == "__init__.py"
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def edges_of(module: str) -> list[Edge]:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    out: list[Edge] = []
    for node in _nodes(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, node)
            # ``from tipline.web import public`` imports the submodule; ``from x import name``
            # the module x.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for target in targets:
            if target == "tipline" or target.startswith("tipline."):
                found = _resolve(target)
                if found is not None and found != module:
                    out.append(Edge(module, found, node.lineno))
    return out


EDGES: list[Edge] = [e for m in MODULES for e in edges_of(m)]


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def circles(edges: list[Edge]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    graph: dict[str, list[str]] = {m: [] for m in MODULES}
    for e in edges:
        graph[e.importer].append(e.imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on_stack.add(v)
            if i < len(graph[v]):
                work.append((v, i + 1))
                w = graph[v][i]
                if w not in index:
                    work.append((w, 0))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            if low[v] == index[v]:
                component: list[str] = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return found


def test_the_walk_sees_the_imports_it_checks() -> None:
    # The walk itself: a known module-level, deferred and relative-free import each.
    pairs = {(e.importer, e.imported) for e in EDGES}
    assert ("tipline.web.ispws", "tipline.intake.errors") in pairs  # module level
    assert ("tipline.web.app", "tipline.web.public") in pairs  # inside a function
    assert ("tipline.intake.credentials", "tipline.runtime") not in pairs  # TYPE_CHECKING only
    assert len(MODULES) > 50


def test_circles_are_found() -> None:
    fake = [Edge("tipline.model", "tipline.config", 1), Edge("tipline.config", "tipline.model", 1)]
    assert circles(fake) == [["tipline.config", "tipline.model"]]


def test_no_import_circle() -> None:
    found = circles(EDGES)
    detail = [
        [f"{e.importer} -> {e.imported} (line {e.line})" for e in EDGES
         if e.importer in c and e.imported in c]
        for c in found
    ]
    assert not found, detail


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_inner_packages_import_only_what_they_stand_on(package: str) -> None:
    allowed = ALLOWED[package] | {package}
    wrong = [f"{e.importer} -> {e.imported} (line {e.line})" for e in EDGES
             if package_of(e.importer) == package and package_of(e.imported) not in allowed]
    assert not wrong, f"tipline.{package} may import only {sorted(allowed)}: {wrong}"


def test_only_the_outside_imports_web() -> None:
    wrong = [f"{e.importer} -> {e.imported} (line {e.line})" for e in EDGES
             if package_of(e.imported) == "web" and package_of(e.importer) not in WEB_IMPORTERS
             and (e.importer, e.imported) not in KNOWN_WEB_IMPORTS]
    assert not wrong, wrong
