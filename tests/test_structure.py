"""The centre's modules stay small and acyclic, and its front ends stay thin (issue 11).

Checked on the source: the import graph of ``central`` at import time (module-level
imports; ``if TYPE_CHECKING:`` blocks and imports inside functions do not run on import)
has no circle; no module is over :data:`MAX_LINES` lines; the command line does not
reach the HTTP package for its answers or exit codes (not even through another module);
the services import no front end.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CENTRAL = ROOT / "central"
MAX_LINES = 600
# Modules allowed over the limit, with the size they may not grow past (a ratchet: lower
# it as they shrink, drop the entry once under MAX_LINES). None now.
OVER_LIMIT: dict[str, int] = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(CENTRAL.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _top_level_imports(body: list[ast.stmt]) -> list[ast.stmt]:
    """Import statements that run when the module is imported."""
    found: list[ast.stmt] = []
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If) and not _is_type_checking(node):
            found += _top_level_imports(node.body) + _top_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            found += _top_level_imports(node.body)
    return found


def _targets(node: ast.stmt, here: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    assert isinstance(node, ast.ImportFrom)
    base = node.module or ""
    if node.level:  # relative: from the package of ``here``
        package = here.split(".")[: -node.level] if MODULES[here].name != "__init__.py" \
            else here.split(".")[: len(here.split(".")) - node.level + 1]
        base = ".".join([*package, base] if base else package)
    # ``from central import answers`` imports the module central.answers
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]


def graph(*, at_import: bool = True) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        nodes = (_top_level_imports(tree.body) if at_import else
                 [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)])
        edges[name] = {t for n in nodes for t in _targets(n, name) if t in MODULES} - {name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in edges[todo.pop()] - seen:
            seen.add(w)
            todo.append(w)
    return seen


def test_the_scanner_sees_imports_and_circles() -> None:
    edges = graph()
    assert "central.answers" in edges["central.cli_routine"]  # ``from central import answers``
    assert "central.services.cases" in edges["central.services.schedule"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_centre_has_no_import_circles() -> None:
    assert cycles(graph()) == []


def test_no_module_of_the_centre_is_over_600_lines_but_the_ratcheted() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    long = {name: n for name, n in sizes.items()
            if n > OVER_LIMIT.get(name, MAX_LINES)}
    assert long == {}, f"split these modules (over {MAX_LINES} lines): {long}"
    shrunk = {name: sizes.get(name, 0) for name, n in OVER_LIMIT.items()
              if sizes.get(name, 0) < n}
    assert shrunk == {}, f"lower OVER_LIMIT to the new sizes (or drop them): {shrunk}"


def test_the_command_line_does_not_reach_the_http_package() -> None:
    edges = graph()
    for name in MODULES:
        if name.startswith("central.cli"):
            http = sorted(m for m in reachable(edges, name) | {name}
                          if m.startswith("central.http"))
            assert http == [], f"{name} imports {http} (answers: central.answers; exit " \
                               "codes: on the errors, central.errors)"
    # at any time, not only on import: only 'serve' starts the server (central.server)
    anywhere = graph(at_import=False)
    assert not {m for m in MODULES if m.startswith("central.cli")
                for t in anywhere[m] if t.startswith("central.http")}


def test_the_services_import_no_front_end() -> None:
    edges = graph(at_import=False)
    fronts = ("central.http", "central.cli", "central.web", "central.server")
    bad = {(m, t) for m in MODULES if m.startswith("central.services")
           for t in edges[m] if t.startswith(fronts)}
    assert bad == set()
