"""The core's layout rules that import-linter cannot state: no import circle, every package says what it is for."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("model", "policy", "inventory", "packetspace", "compiler", "engine", "store", "lab", "api", "cli")


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle in ``graph`` (module -> modules it imports), or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    for start in sorted(graph):
        if start in state:
            continue
        stack: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        path = [start]
        state[start] = 1
        while stack:
            node, todo = stack[-1]
            if not todo:
                stack.pop()
                path.pop()
                state[node] = 2
                continue
            nxt = todo.pop()
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, sorted(graph.get(nxt, ()))))
    return None


def test_cycle_finder_finds_a_planted_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_between_core_modules() -> None:
    built = grimp.build_graph("orchestrator", exclude_type_checking_imports=True)
    graph = {m: set(built.find_modules_directly_imported_by(m)) for m in built.modules}
    assert _cycle(graph) is None


def test_every_package_says_what_it_is_for_and_what_it_uses() -> None:
    for name in PACKAGES:
        init = ROOT / "orchestrator" / name / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc, f"orchestrator/{name}/__init__.py has no docstring"
        assert "Uses" in doc or "uses" in doc, f"orchestrator.{name}: the docstring must say which packages it uses"


def test_the_core_has_no_loose_modules_besides_config() -> None:
    loose = sorted(p.name for p in (ROOT / "orchestrator").glob("*.py"))
    assert loose == ["__init__.py", "config.py"]
