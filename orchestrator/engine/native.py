"""What each point's driver would send to a point where microseg owns nothing yet — native text for review of
a compile (``microseg compile --native DIR``), without connecting to anything.

Only drivers that can render from nothing offer it (a ``fresh_snapshot`` class method: the switch ACL drivers
and nftables); a cloud driver needs its account for that (``microseg plan --native``).  Settings are read
as written (secret references are not resolved: rendering needs no credentials).
"""

from __future__ import annotations

from orchestrator.compiler.compiler import CompiledPoint
from orchestrator.engine.project import Project
from orchestrator.engine.registry import driver_class
from orchestrator.model.driver import Connection, NativeChange, PointContext, RenderRequest
from orchestrator.model.rules import Action, Ruleset


def fresh_change(project: Project, compiled: CompiledPoint) -> NativeChange | None:
    """The native change for a point without microseg's objects yet; None when its driver cannot tell offline."""
    name = compiled.target.name
    point = project.inventory.point(name)
    cls = driver_class(point.driver)
    fresh = getattr(cls, "fresh_snapshot", None)
    if fresh is None:
        return None
    target = compiled.target
    context = PointContext(name, point.driver, Connection(hostname=point.hostname or name), dict(point.settings),
                           members=target.scope if target.members is None else target.members,
                           directions=frozenset(point.directions))
    driver = cls(context)
    try:
        nothing = Ruleset(name, compiled.ruleset.ordering, Action.PERMIT, (), stateful=compiled.ruleset.stateful)
        change: NativeChange = driver.render(RenderRequest(name, compiled.ruleset, nothing, fresh(name)))
        return change
    finally:
        driver.close()
