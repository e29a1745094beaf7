"""The architecture as code: no two modules of ours import each other, directly or through
others (import-linter's contracts in pyproject.toml check the layers; this checks cycles at
module level, which its sibling contract cannot see inside a package such as
`calls.scheduling`, whose two modules sit on either side of the services)."""

from __future__ import annotations

import grimp

PACKAGES = ("calls", "appointments", "audit")


def _cycle(graph: grimp.ImportGraph) -> list[str] | None:
    """One cycle of module imports, or None. Imports made only for type checking and the
    packages' own `__init__` modules (which import nothing of ours) are left out."""
    modules = sorted(m for m in graph.modules if m.split(".")[0] in PACKAGES)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported.split(".")[0] not in PACKAGES:
                continue
            if state.get(imported) == 1:
                return [*path[path.index(imported) :], imported]
            if imported not in state and (found := visit(imported)):
                return found
        path.pop()
        state[module] = 2
        return None

    for module in modules:
        if module not in state and (found := visit(module)):
            return found
    return None


def test_no_module_imports_itself_through_others():
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True)
    assert _cycle(graph) is None


def test_the_check_finds_a_cycle():
    graph = grimp.ImportGraph()
    for module in ("calls.a", "calls.b", "calls.c"):
        graph.add_module(module)
    graph.add_import(importer="calls.a", imported="calls.b")
    graph.add_import(importer="calls.b", imported="calls.c")
    assert _cycle(graph) is None
    graph.add_import(importer="calls.c", imported="calls.a")
    assert _cycle(graph) == ["calls.a", "calls.b", "calls.c", "calls.a"]
