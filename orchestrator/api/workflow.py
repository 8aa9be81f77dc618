"""The change-request workflow: submit → plan → approve (four eyes) → apply in the window → expire, with evidence.

Every step goes through the engine's one path (plan, guards, transaction
with verify and rollback) on the effective policy, under one store lock so
that two applies never compute their intent from different sets of applied
change requests.  Evidence is posted to the ticket at each step.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from orchestrator.api.evidence import flows_digest, plan_summary, run_evidence, verification
from orchestrator.api.notify import Evidence, Notifier, NotifyError
from orchestrator.api.webhooks import parse_change
from orchestrator.config import Config
from orchestrator.engine.auditreport import render_html, report_data
from orchestrator.engine.changes import (
    ChangeSpec,
    PendingChange,
    affected_points,
    expiring,
    load_effective_project,
    stamp,
)
from orchestrator.engine.engine import Actor, Engine, EngineOptions, PointExecutor
from orchestrator.engine.plan import Plan
from orchestrator.engine.project import Project
from orchestrator.engine.registry import available_drivers
from orchestrator.engine.reporting import Reporter, SilentReporter
from orchestrator.engine.retry import RetryPolicy
from orchestrator.engine.transaction import ApplyOptions, apply_plan, check_guards, record_refusal
from orchestrator.engine.windows import check_point
from orchestrator.inventory.inventory import load_nornir_inventory
from orchestrator.model.driver import fingerprint
from orchestrator.model.errors import MicrosegError, PlanError, PolicyError
from orchestrator.model.identity import UNKNOWN, could_be
from orchestrator.store import ChangeRecord, ServiceStore

log = logging.getLogger(__name__)
CHANGE_LOCK = "microseg:change-requests"  # a lease in the store's lock table, shared by every instance
ACTIVE = ("planned", "approved", "applied")
PENDING = ("planned", "approved", "refused")  # statuses whose rules are not in the policy in force


class Forbidden(MicrosegError):
    """The identity may not do this to this change request (four eyes)."""


class Unverified(Forbidden):
    """The ticket system does not have the ticket a webhook named asking for the change it carried."""


class TicketUnavailable(MicrosegError):
    """The ticket system could not be asked whether the ticket a webhook named is real."""


class Conflict(MicrosegError):
    """The change request is not in a status that allows this."""


class Unavailable(MicrosegError):
    """Enforcement points could not be reached to plan the change."""

    def __init__(self, message: str, change_id: str) -> None:
        super().__init__(message)
        self.change_id = change_id


class Refused(PlanError):
    """A safety guard refused the change: it was recorded, nothing was applied."""

    def __init__(self, message: str, change_id: str) -> None:
        super().__init__(message)
        self.change_id = change_id


@dataclass
class ServiceContext:
    """Where the service's policy, inventory and state are, and how it tells the time and the tickets."""

    policy: Path
    inventory: Path
    store: ServiceStore
    config: Config
    notifier: Notifier
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    instance: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    workers: int = 10
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    reporter: Reporter = field(default_factory=SilentReporter)
    public_url: str = ""
    executor: PointExecutor | None = None  # None: Nornir's threads here; else e.g. Celery workers per site

    def today(self) -> date:
        return self.clock().astimezone(UTC).date()

    def link(self, change_id: str) -> str:
        return f"{self.public_url.rstrip('/')}/v1/change-requests/{change_id}"


def four_eyes_refusal(record: ChangeRecord, approver: str) -> str | None:
    """Why ``approver`` may not approve ``record`` (they could be its submitter or requester), or None.

    Identities compare however they are spelled, and loosely (``alice`` could be ``Alice@example.net``):
    a false refusal costs a second approver, a false acceptance the four-eyes rule.
    """
    if could_be(approver, record.submitted_by):
        return f"{approver} could be {record.submitted_by}, who submitted it"
    if record.requester != UNKNOWN and could_be(approver, record.requester):
        return f"{approver} could be {record.requester}, who requested it"
    for field_name, text in sorted((record.detail.get("ticket_user") or {}).items()):
        if could_be(approver, str(text)):
            known = "" if record.requester != UNKNOWN else ", whom serve.ticket_users maps to no identity"
            return f"{approver} could be the ticket's requester ({field_name} {text!r}{known})"
    return None


class ChangeService:
    """Submit, approve, apply and expire change requests."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.store = ctx.store

    # ------------------------------------------------------------------ helpers

    def project(self, *extra: PendingChange, today: date | None = None) -> Project:
        """The project over the effective policy (+ ``extra`` changes), as of ``today``."""
        return load_effective_project(self.ctx.policy, self.ctx.inventory, today=today or self.ctx.today(),
                                      store=self.store, extra=extra)

    @contextmanager
    def engine(self, project: Project, actor: str, ticket: str | None) -> Iterator[Engine]:
        """An engine over ``project`` and the service's store, acting for ``actor`` and ``ticket``."""
        options = EngineOptions(workers=self.ctx.workers, retry=self.ctx.retry, clock=self.ctx.clock,
                                executor=self.ctx.executor)
        nornir = load_nornir_inventory(self.ctx.inventory)
        with Engine(project, nornir, self.store, Actor(actor, ticket), options, self.ctx.reporter) as engine:
            yield engine

    def report(self, change_id: str, actor: str) -> str:
        """The audit report of one change request as a self-contained HTML page: its ticket, requester and
        approver, its own latest run point by point (native change, guards, end state, audit trail), and the
        segmentation matrix of the policy with its rules while they await approval, or of the policy in force."""
        record = self.store.change(change_id)
        project, basis = None, ""
        if record.status in PENDING:
            try:
                project = self.project(PendingChange(record.id, record.change))
                basis = ("The matrix shows the policy in force with this request's changes made, as planned"
                         + (" (a refused request is never applied)." if record.status == "refused" else "."))
            except PolicyError as exc:  # the policy moved on since the request was planned
                why = "; ".join(d.message for d in exc.diagnostics[:2]) or exc.message
                basis = (f"This request's changes no longer fit the policy in force ({why}); the matrix shows the "
                         "policy in force without them.")
        if project is None:
            project = self.project()
        if not basis:
            expired = [str(name) for name in record.detail.get("expired_rules") or ()]
            basis = "The matrix shows the policy in force now" + (
                "; this request's changes are not in it." if record.status != "applied" else
                f", this request's changes included but its expired rules ({', '.join(expired)})." if expired else
                ", this request's changes included.")
        with self.engine(project, actor, record.ticket) as engine:
            data = report_data(engine, record.run_ids[-1] if record.run_ids else None, None,
                               change={**record.to_dict(), "basis": basis})
        return render_html(data)

    @contextmanager
    def change_lock(self, owner: str) -> Iterator[None]:
        """The store lease that serializes applies and expiries across every instance."""
        with self.store.point_lock(CHANGE_LOCK, owner=f"{self.ctx.instance}/{owner}", timeout=600):
            yield

    def managed(self, before: Project, after: Project) -> tuple[list[str], dict[str, str]]:
        """Points whose intent the change moves, split into those with an installed driver and the others."""
        compiled = after.compile()
        installed = available_drivers()
        names = affected_points(before.compile(), compiled)
        skipped = {n: f"driver {compiled.points[n].target.driver!r} is not installed" for n in names
                   if n in compiled.points and compiled.points[n].target.driver not in installed}
        return [n for n in names if n not in skipped and n in compiled.points], skipped

    def notify(self, event: str, record: ChangeRecord | None, detail: dict[str, Any], *,
               ticket: str = "", origin: dict[str, Any] | None = None) -> None:
        """Post evidence to the ticket; a ticket system that fails is audited, never fatal."""
        evidence = Evidence(event, record.ticket if record else ticket, record.id if record else None,
                            record.origin if record else origin or {}, detail,
                            self.ctx.link(record.id) if record else None)
        try:
            self.ctx.notifier.send(evidence)
        except NotifyError as exc:
            log.warning("evidence %s of %s not delivered: %s", event, evidence.ticket, exc.message)
            self.store.audit("notify.failed", actor=self.ctx.instance,
                             detail={"ticket": evidence.ticket, "change_request": evidence.change_id,
                                     "event": event, "error": exc.message})

    def window(self, project: Project, points: list[str]) -> tuple[bool, datetime | None, datetime | None]:
        """(all open now, when the first of them closes, when the last closed one opens)."""
        rules = self.ctx.config.window_rules()
        now = self.ctx.clock()
        checks = [check_point(p, project.inventory.point(p).all_groups, rules, now) for p in points]
        closed = [c.next_opening for c in checks if not c.allowed and c.next_opening is not None]
        ends = [c.open_until for c in checks if c.open_until is not None]
        return not closed, min(ends) if ends else None, max(closed) if closed else None

    def verified_origin(self, ticket: str, origin: dict[str, Any], spec: ChangeSpec, caller: str) -> dict[str, Any]:
        """``origin``, marked ``verified`` once its ticket system, asked by microseg, has ``ticket`` asking for
        ``spec`` (only a verified ServiceNow record or Jira issue ever gets evidence); refused when it has not."""
        system = origin.get("system")
        if system not in ("servicenow", "jira"):
            return origin
        serve = self.ctx.config.serve
        field = serve.servicenow_change_field if system == "servicenow" else serve.jira_change_field
        try:
            fields = self.ctx.notifier.ticket_fields(origin)
        except NotifyError as exc:
            raise TicketUnavailable(f"{ticket} could not be read back from {system} to verify it: "
                                    f"{exc.message}") from exc
        if fields is None:  # no URL for that system: nothing will be written to it
            return {**origin, "verified": False}
        named = fields.get("number") if system == "servicenow" else fields.get("key")
        try:
            same = named == ticket and parse_change(fields.get(field), field) == spec
        except PolicyError:
            same = False
        if not same:
            self.store.audit("change.unverified", actor=caller, detail={"ticket": ticket, "origin": origin})
            raise Unverified(f"{system} does not have {ticket} asking for this change (read back by microseg): "
                             "the webhook must come from the ticket it names")
        return {**origin, "verified": True}

    # ------------------------------------------------------------------ submit

    def submit(self, *, ticket: str, requester: str, submitted_by: str, source: str, spec: ChangeSpec,
               origin: dict[str, Any] | None = None,
               ticket_user: dict[str, str] | None = None) -> tuple[ChangeRecord, bool]:
        """Validate, compile and plan a change; (its record, whether it is new). Raises on invalid input.

        ``requester`` is an identity (or UNKNOWN for a ticket user mapped to none); ``ticket_user`` is the
        requester as the ticket names them, kept so that no identity that could be them may approve.
        """
        origin = self.verified_origin(ticket, origin or {"system": source}, spec, submitted_by)
        try:
            change = stamp(spec, ticket)
            digest = fingerprint(change)
            for existing in self.store.changes(ACTIVE, ticket=ticket):
                if existing.detail.get("digest") == digest:
                    return existing, False  # a ticket system delivering the same webhook again
            before, after = self.project(), self.project(PendingChange("new", change))
            points, not_managed = self.managed(before, after)
        except PolicyError as exc:
            shown = "; ".join(str(d) for d in exc.diagnostics[:3]) or exc.message
            self.store.audit("change.rejected", actor=submitted_by,
                             detail={"ticket": ticket, "error": exc.message,
                                     "diagnostics": [d.to_dict() for d in exc.diagnostics]})
            self.notify("rejected", None, {"message": str(exc)}, ticket=ticket, origin=origin)
            raise PolicyError(f"the change is not valid: {shown}", exc.diagnostics) from exc
        with self.engine(after, submitted_by, ticket) as engine:
            plan = engine.plan(points) if points else Plan({})
            run_id = engine.record_plan("plan", plan, {"ticket": ticket, "change_request": True}) if points else None
        summary = plan_summary(plan, not_managed, run_id)
        status = "failed" if plan.failures else ("refused" if plan.refused else "planned")
        record = self.store.create_change(
            ticket=ticket, requester=requester, submitted_by=submitted_by, source=source, status=status,
            change=change, plan=summary, origin=origin, run_ids=[run_id] if run_id else [],
            detail={"digest": digest, "flows": flows_digest(summary),
                    **({"ticket_user": dict(ticket_user)} if ticket_user else {})})
        self.store.audit(f"change.{'created' if status == 'planned' else status}", actor=submitted_by,
                         run_id=run_id, detail={"change_request": record.id, "ticket": ticket, "status": status})
        self.notify(status, record, {"plan": summary})
        if status == "refused":
            reasons = "; ".join(f"{p}: {g['message']} ({g['guard']})" for p, s in summary["points"].items()
                                for g in s["guards"])
            raise Refused(f"refused by safety guards, nothing will be applied: {reasons}", record.id)
        if status == "failed":
            raise Unavailable("cannot plan the change: " + "; ".join(f"{k}: {v}" for k, v in plan.failures.items()),
                              record.id)
        return record, True

    # ------------------------------------------------------------------ approve and apply

    def approve(self, change_id: str, approver: str) -> ChangeRecord:
        """Four eyes: anyone who could not be the requester or the submitter; applies now when windows are open."""
        record = self.store.change(change_id)
        why = four_eyes_refusal(record, approver)
        if why is not None:
            self.store.audit("change.approval_refused", actor=approver,
                             detail={"change_request": change_id, "why": f"four eyes: {why}"})
            raise Forbidden(f"{why}: another identity must approve change request {change_id}")
        updated = self.store.update_change(change_id, expect={"planned"}, status="approved", approver=approver,
                                           approved_at=self.ctx.clock())
        if updated is None:
            raise Conflict(f"change request {change_id} is {record.status}: only a planned one can be approved")
        self.store.audit("change.approved", actor=approver, detail={"change_request": change_id,
                                                                    "ticket": record.ticket})
        project = self.project(PendingChange(updated.id, updated.change))
        is_open, _, opens = self.window(project, list(updated.plan.get("points", {})))
        if not is_open:
            assert opens is not None
            scheduled = self.store.update_change(change_id, detail={**updated.detail,
                                                                    "scheduled_for": opens.isoformat()})
            assert scheduled is not None
            self.store.audit("change.scheduled", actor=approver,
                             detail={"change_request": change_id, "scheduled_for": opens.isoformat()})
            self.notify("scheduled", scheduled, {"message": f"approved by {approver}; the change window opens "
                                                            f"{opens.isoformat(timespec='minutes')}"})
            return scheduled
        return self.apply(change_id)

    def apply(self, change_id: str) -> ChangeRecord:
        """Plan again, check the flows are the ones approved, apply with verify and rollback, record, notify."""
        with self.change_lock(change_id):
            record = self.store.change(change_id)
            if record.status != "approved":
                return record
            try:
                return self._apply_locked(record)
            except MicrosegError as exc:
                return self._finish(record, "failed", {"message": exc.message}, [])

    def _apply_locked(self, record: ChangeRecord) -> ChangeRecord:
        actor = record.approver or "unknown"
        before, after = self.project(), self.project(PendingChange(record.id, record.change))
        points, _ = self.managed(before, after)
        with self.engine(after, actor, record.ticket) as engine:
            plan = engine.plan(points) if points else Plan({})
            if plan.failures:
                raise PlanError("cannot plan: " + "; ".join(f"{k}: {v}" for k, v in sorted(plan.failures.items())))
            summary = plan_summary(plan, {}, None)
            if plan.changes and flows_digest(summary) != record.detail.get("flows"):
                message = "the points changed since the plan was approved (other flows would open or close)"
                record_refusal(engine, "apply", message, {"change_request": record.id})
                raise PlanError(message + ": submit the change again")
            if not plan.changes:
                return self._finish(record, "applied", {"message": "no managed point needed a change"}, [])
            is_open, deadline, opens = self.window(after, [p.point for p in plan.changes])
            if not is_open:
                raise PlanError(f"the change window is closed (opens {opens})")
            check_guards(plan, engine)
            result = apply_plan(engine, plan, ApplyOptions(), {"change_request": record.id}, deadline)
            check = engine.plan([p.point for p in plan.changes])
        evidence = {"result": run_evidence(result), "verification": verification(check)}
        ok = result.ok and not check.changes and not check.failures
        return self._finish(record, "applied" if ok else "failed", evidence, [result.run_id])

    def _finish(self, record: ChangeRecord, status: str, evidence: dict[str, Any], runs: list[str]) -> ChangeRecord:
        now = self.ctx.clock()
        fields: dict[str, Any] = {"status": status, "run_ids": [*record.run_ids, *runs],
                                  "detail": {**record.detail, **evidence}}
        if status == "applied":
            fields["applied_at"] = now
        updated = self.store.update_change(record.id, **fields)
        assert updated is not None
        self.store.audit(f"change.{status}", actor=record.approver or self.ctx.instance,
                         run_id=runs[0] if runs else None,
                         detail={"change_request": record.id, "ticket": record.ticket, **evidence})
        self.notify(status, updated, evidence)
        return updated

    # ------------------------------------------------------------------ scheduled jobs

    def apply_pending(self) -> dict[str, Any]:
        """Apply every approved change request whose points' windows are open now."""
        applied: dict[str, str] = {}
        for record in self.store.changes(["approved"]):
            project = self.project(PendingChange(record.id, record.change))
            if self.window(project, list(record.plan.get("points", {})))[0]:
                applied[record.id] = self.apply(record.id).status
        return {"applied": applied}

    def expire_due(self) -> dict[str, Any]:
        """Remove expired ticket rules through plan/apply; a request whose rules all expired ends ``expired``."""
        today = self.ctx.today()
        due: dict[str, list[tuple[str, date]]] = {}
        for record in self.store.changes(["applied"]):
            done = set(record.detail.get("expired_rules", ()))
            rules = [(name, when) for name, when in expiring(record.change) if when < today and name not in done]
            if rules:
                due[record.id] = rules
        if not due:
            return {"expired": {}}
        with self.change_lock("expiry"):
            try:
                return self._expire_locked(due, today)
            except MicrosegError as exc:
                for change_id in due:
                    self.notify("expiry-failed", self.store.change(change_id), {"message": exc.message})
                raise

    def _expire_locked(self, due: dict[str, list[tuple[str, date]]], today: date) -> dict[str, Any]:
        earliest = min(when for rules in due.values() for _, when in rules)
        before, after = self.project(today=earliest), self.project(today=today)
        points, _ = self.managed(before, after)
        records = [self.store.change(cid) for cid in due]
        evidence: dict[str, Any] = {"message": "expired rules removed: " + ", ".join(
            n for rules in due.values() for n, _ in rules)}
        if points:
            with self.engine(after, "microseg-expiry", ",".join(sorted({r.ticket for r in records}))) as engine:
                plan = engine.plan(points)
                is_open, deadline, opens = self.window(after, [p.point for p in plan.changes])
                if plan.failures or not is_open:
                    why = plan.failures or {"window": f"closed until {opens}"}
                    return {"expired": {}, "waiting": why}
                check_guards(plan, engine)
                result = apply_plan(engine, plan, ApplyOptions(), {"expiry": sorted(due)}, deadline)
                check = engine.plan(points)
            evidence |= {"plan": plan_summary(plan, {}, None), "result": run_evidence(result),
                         "verification": verification(check)}
            if not result.ok:
                for record in records:
                    self.notify("expiry-failed", record, evidence)
                return {"expired": {}, "failed": result.run_id}
        outcome: dict[str, str] = {}
        for record in records:
            done = [*record.detail.get("expired_rules", ()), *(n for n, _ in due[record.id])]
            finished = len(done) >= len(record.change.get("add", ())) and not record.change.get("remove")
            status = "expired" if finished else record.status
            runs = [evidence["result"]["run_id"]] if "result" in evidence else []
            updated = self.store.update_change(record.id, status=status, run_ids=[*record.run_ids, *runs],
                                               detail={**record.detail, "expired_rules": done})
            assert updated is not None
            outcome[record.id] = status
            self.store.audit("change.expired", actor="microseg-expiry", run_id=runs[0] if runs else None,
                             detail={"change_request": record.id, "rules": [n for n, _ in due[record.id]]})
            self.notify("expired", updated, evidence)
        return {"expired": outcome}
