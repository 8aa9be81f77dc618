"""The timed microseg job of ``benchmarks/aerleon.py``, in a module of its own so that the run imports only what
``microseg compile`` and ``plan --native`` would (not the harness, the estate generator or the checkers)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

TODAY = date(2026, 1, 1)


def render_microseg(policy: str, inventory: str, out: str) -> None:
    """The timed microseg job: load and compile as ``microseg compile`` does, then render every point natively
    for a device without owned ACLs/table (as ``plan --native`` would), and write the texts."""
    from orchestrator.engine.project import load_project
    from orchestrator.engine.registry import driver_class
    from orchestrator.model.driver import Connection, PointContext, RenderRequest, Snapshot
    from orchestrator.model.rules import Action, Ruleset

    project = load_project(Path(policy), Path(inventory), today=TODAY)
    compilation = project.compile()
    for name, compiled in compilation.points.items():
        point = project.inventory.point(name)
        target = compiled.target
        context = PointContext(name, point.driver, Connection(hostname=name), dict(point.settings),
                               members=target.members or target.scope, directions=frozenset(point.directions))
        fresh = Snapshot(name, point.driver, {"acls": [], "bindings": [], "other_acls": []})  # nftables ignores it
        nothing = Ruleset(name, compiled.ruleset.ordering, Action.PERMIT, (), stateful=compiled.ruleset.stateful)
        change = driver_class(point.driver)(context).render(RenderRequest(name, compiled.ruleset, nothing, fresh))
        Path(out, f"{name}.txt").write_text(change.text() + "\n")
