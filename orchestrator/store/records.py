"""What the state store returns: frozen, JSON-ready records of runs, point results and audit events."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

RESULT_STATES = frozenset(
    {"unchanged", "new", "restored", "failed", "unknown", "skipped", "planned", "drift", "in_sync"}
)


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 in UTC with a ``Z`` suffix, or None."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class PointResult:
    """The latest state of one enforcement point in a run."""

    point: str
    state: str
    detail: dict[str, Any]
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"point": self.point, "state": self.state, "detail": self.detail, "updated_at": iso(self.updated_at)}


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One entry of the audit trail."""

    id: int
    at: datetime
    event: str
    actor: str
    run_id: str | None
    point: str | None
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": iso(self.at),
            "event": self.event,
            "actor": self.actor,
            "run_id": self.run_id,
            "point": self.point,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One line of the run history: who ran what, when, and how many points ended in each state."""

    id: str
    kind: str
    status: str
    actor: str
    ticket: str | None
    origin_host: str
    started_at: datetime
    finished_at: datetime | None
    result_counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**_run_dict(self), "result_counts": dict(self.result_counts)}


@dataclass(frozen=True, slots=True)
class RunRecord:
    """Everything recorded about one run: its options, summary, per-point results and audit events."""

    id: str
    kind: str
    status: str
    actor: str
    ticket: str | None
    origin_host: str
    options: dict[str, Any]
    summary: dict[str, Any]
    started_at: datetime
    finished_at: datetime | None
    results: dict[str, PointResult]
    events: tuple[AuditEvent, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            **_run_dict(self),
            "options": self.options,
            "summary": self.summary,
            "results": {point: result.to_dict() for point, result in self.results.items()},
            "events": [event.to_dict() for event in self.events],
        }


def _run_dict(run: RunSummary | RunRecord) -> dict[str, Any]:
    """What a run summary and a run record both show, JSON-ready."""
    return {"id": run.id, "kind": run.kind, "status": run.status, "actor": run.actor, "ticket": run.ticket,
            "origin_host": run.origin_host, "started_at": iso(run.started_at), "finished_at": iso(run.finished_at)}
