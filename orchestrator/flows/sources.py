"""Flow sources (entry-point group ``microseg.flow_sources``) and importing their records into the flow store:
files and objects through a source plugin, and the points' own tables through their drivers (agentless)."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from orchestrator.flows.store import FlowStore, ImportReport
from orchestrator.model import (
    Diagnostic,
    FlowReadingDriver,
    FlowSource,
    MicrosegError,
    PlanError,
    TabularFlowSource,
    closest,
)

if TYPE_CHECKING:
    from orchestrator.engine.engine import Engine

FLOW_SOURCE_ENTRY_POINT_GROUP = "microseg.flow_sources"


def available_flow_sources() -> list[str]:
    return sorted({e.name for e in entry_points(group=FLOW_SOURCE_ENTRY_POINT_GROUP)})


def observer_only_sources(names: Collection[str]) -> tuple[set[str], set[str]]:
    """Of the flow sources ``names`` (those a flow store holds records of), the ones whose records name only the
    interface that logged them (``OBSERVER_ONLY``, see :class:`~orchestrator.model.flows.FlowSource`), and the
    plugins among them that cannot be loaded now (their records cannot be judged).  Only those plugins load."""
    found: set[str] = set()
    broken: set[str] = set()
    for entry in entry_points(group=FLOW_SOURCE_ENTRY_POINT_GROUP):
        if entry.name not in names:
            continue
        try:
            if getattr(entry.load(), "OBSERVER_ONLY", False) is True:
                found.add(entry.name)
        except Exception:  # a plugin that fails to import: named to the caller, never fatal here
            broken.add(entry.name)
    return found, broken


def make_flow_source(name: str, options: Mapping[str, Any] | None = None) -> FlowSource:
    """The flow source registered as ``name``, built with ``options``; an unknown name suggests the closest."""
    matches = list(entry_points(group=FLOW_SOURCE_ENTRY_POINT_GROUP, name=name))
    if not matches:
        known = available_flow_sources()
        close = closest(name, known)
        hint = f"did you mean {close!r}? " if close else ""
        raise PlanError(f"unknown flow source {name!r} ({hint}known: {', '.join(known) or 'none'})")
    cls = matches[0].load()
    try:
        source = cls(**dict(options or {}))
    except (TypeError, ValueError) as exc:
        raise PlanError(f"flow source {name!r} does not take these options: {exc}") from exc
    if not isinstance(source, FlowSource):
        raise PlanError(f"flow source {name!r} ({matches[0].value}) has no read(location, problems)")
    return source


def import_location(store: FlowStore, name: str, source: FlowSource, location: str, *,
                    force: bool = False, bulk: bool = True) -> ImportReport:
    """Load one file or object: in bulk when the source describes it as a table, else record by record."""
    if bulk and isinstance(source, TabularFlowSource):
        table = source.table_format(location)
        if table is not None:
            return store.import_table(name, location, table, force=force)
    problems: list[Diagnostic] = []
    return store.import_records(name, location, source.read(location, problems), problems, force=force)


def import_locations(store: FlowStore, name: str, locations: Iterable[str], *,
                     options: Mapping[str, Any] | None = None, force: bool = False, bulk: bool = True,
                     progress: Callable[[ImportReport], None] | None = None) -> list[ImportReport]:
    source = make_flow_source(name, options)
    reports = []
    for location in locations:
        report = import_location(store, name, source, location, force=force, bulk=bulk)
        reports.append(report)
        if progress is not None:
            progress(report)
    return reports


def collect_from_points(engine: Engine, store: FlowStore, points: Iterable[str],
                        progress: Callable[[ImportReport], None] | None = None) -> list[ImportReport]:
    """Each point's current flows, read by its driver over its own connection (e.g. an nftables host's
    conntrack table over SSH); a point whose driver cannot read flows is reported, not skipped silently."""
    reports = []
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for point in points:
        kind = engine.project.inventory.point(point).driver
        report = ImportReport(source=f"driver:{kind}", location=f"{point}@{stamp}")
        try:
            driver = engine.sessions.driver(point)
            if not isinstance(driver, FlowReadingDriver):
                raise PlanError(f"{point}: driver {kind!r} cannot read flows (read its platform's flow logs "
                                "instead: `microseg collect SOURCE FILE`)")
            problems: list[Diagnostic] = []
            records = engine.call(point, "read flows", lambda d=driver, p=problems: list(d.read_flows(p)))
            report = store.import_records(report.source, report.location, records, problems, force=True)
        except MicrosegError as exc:
            report.problems.append(Diagnostic(exc.message, code="collect"))
        reports.append(report)
        if progress is not None:
            progress(report)
    return reports
