"""Applying a plan as one run-level transaction: checkpoint → apply → verify per point, rollback on failure.

Per point, under the store's point lock: re-fetch and compare the plan's
fingerprint (stale → untouched), checkpoint, apply, verify (re-fetch,
normalize, the diff against the intent must be empty).  A point that fails
is restored from its checkpoint and the restore is verified.  Depending on
``on_failure`` the run then rolls back every point it changed
(``rollback-all``), carries on with the others (``rollback-failed``) or just
stops starting new points (``stop``).  Every point ends in one named state:
``new``, ``restored``, ``unchanged``, ``skipped`` or — only when a rollback
itself failed — ``unknown``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from orchestrator.engine.diff import diff_rulesets
from orchestrator.engine.engine import Engine, point_record
from orchestrator.engine.plan import ChangePlan, Plan
from orchestrator.engine.runner import run_on_points
from orchestrator.model.driver import (
    AnnotatingDriver,
    ApplyReport,
    Checkpoint,
    ConfirmingDriver,
    RenderRequest,
    Snapshot,
)
from orchestrator.model.errors import MicrosegError, PermanentDriverError, PlanError, RollbackError, VerifyError
from orchestrator.model.rules import Ruleset
from orchestrator.store.locks import LockSet

log = logging.getLogger(__name__)


class OnFailure(StrEnum):
    ROLLBACK_ALL = "rollback-all"
    ROLLBACK_FAILED = "rollback-failed"
    STOP = "stop"


class PointState(StrEnum):
    NEW = "new"
    RESTORED = "restored"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    UNKNOWN = "unknown"


class GivenUp(PlanError):
    """The run gave this point's step up elsewhere (its worker's lease ran out; another worker restores the point):
    send nothing more to the point and record nothing — the coordinator has the point's outcome."""


@dataclass(frozen=True, slots=True)
class ApplyOptions:
    on_failure: OnFailure = OnFailure.ROLLBACK_ALL
    canary: int = 0
    batch_size: int = 0  # 0: all remaining points in one batch


@dataclass(slots=True)
class PointOutcome:
    """How one point ended, and why."""

    point: str
    state: PointState
    error: str | None = None
    report: ApplyReport | None = None
    rollback_error: str | None = None
    seconds: float = 0.0
    fingerprint_after: str | None = None  # the verified new state (rollback of this run checks it)

    @property
    def failed(self) -> bool:
        return self.error is not None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PointOutcome:
        """The outcome a worker answered (``to_dict``'s form)."""
        report = data.get("report")
        return cls(str(data["point"]), PointState(data["state"]), data.get("error"),
                   ApplyReport.from_dict(report) if isinstance(report, Mapping) else None,
                   data.get("rollback_error"), float(data.get("seconds") or 0.0), data.get("fingerprint_after"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "point": self.point,
            "state": self.state.value,
            "error": self.error,
            "rollback_error": self.rollback_error,
            "report": self.report.to_dict() if self.report else None,
            "seconds": round(self.seconds, 4),
            "fingerprint_after": self.fingerprint_after,
        }


@dataclass
class RunResult:
    run_id: str
    kind: str
    outcomes: dict[str, PointOutcome] = field(default_factory=dict)

    @property
    def status(self) -> str:
        states = [o.state for o in self.outcomes.values()]
        if PointState.UNKNOWN in states:
            return "unknown"
        if any(o.failed for o in self.outcomes.values()):
            return "failed" if PointState.NEW not in states else "partial"
        return "ok"

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def by_state(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, outcome in sorted(self.outcomes.items()):
            out.setdefault(outcome.state.value, []).append(name)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "status": self.status,
            "states": self.by_state(),
            "points": {n: o.to_dict() for n, o in sorted(self.outcomes.items())},
        }


@dataclass
class Changed:
    """What the transaction must know to undo one point."""

    checkpoint: Checkpoint
    before: Ruleset | None  # the normalized state at the checkpoint, when this run observed it
    before_fingerprint: str


def batches(names: Sequence[str], canary: int, batch_size: int) -> Iterator[list[str]]:
    """Canary points first, then the rest in batches (one batch when ``batch_size`` is 0)."""
    rest = list(names)
    if canary > 0:
        yield rest[:canary]
        rest = rest[canary:]
    size = batch_size if batch_size > 0 else max(1, len(rest))
    for start in range(0, len(rest), size):
        yield rest[start:start + size]


def check_guards(plan: Plan, engine: Engine) -> None:
    """Refuse a plan a safety guard refused, unless its override was given now."""
    allowed = {
        "mass-removal": engine.options.guards.allow_mass_removal,
        "empty-group": engine.options.guards.allow_empty_groups,
        "lockout": engine.options.guards.allow_lockout,
    }
    refused = [(p.point, g) for p in plan.changes for g in p.guards if not allowed.get(g.guard, False)]
    if refused:
        lines = "; ".join(f"{point}: {g.message} (override: {g.override})" for point, g in refused)
        raise PlanError(f"refused by safety guards: {lines}")


class Transaction:
    """Applies one plan; construct, then :meth:`run`."""

    def __init__(self, engine: Engine, plan: Plan, options: ApplyOptions, kind: str = "apply",
                 deadline: datetime | None = None) -> None:
        self.engine = engine
        self.plan = plan
        self.options = options
        self.kind = kind
        self.abort = threading.Event()
        self.deadline = deadline  # the change window closes: start no point after this
        self.changed: dict[str, Changed] = {}
        self.locks = ExitStack()
        self._locks: LockSet | None = None
        self._mutex = threading.Lock()
        self.result = RunResult("", kind)

    def record(self, outcome: PointOutcome) -> None:
        """Store a point's state as soon as it is known (a crash later loses nothing).

        With it go the digests a later reconcile classifies drift against (for a restored point the intent
        is not the plan's: it is left out)."""
        detail = outcome.to_dict()
        point_plan = self.plan.points.get(outcome.point)
        if point_plan is not None:
            extra = point_record(point_plan, self.engine.context())
            if outcome.state is not PointState.NEW:
                extra["intent"] = None
            detail = {**extra, **detail}
        self.engine.store.record_result(self.result.run_id, outcome.point, outcome.state.value, detail)
    # ------------------------------------------------------------------ the run

    def run(self, run_options: Mapping[str, Any]) -> RunResult:
        engine = self.engine
        run_id = engine.store.create_run(self.kind, actor=engine.actor.name, ticket=engine.actor.ticket,
                                         origin_host=engine.actor.origin_host, options=dict(run_options))
        self.result.run_id = run_id
        engine.store.audit(f"{self.kind}.start", actor=engine.actor.name, run_id=run_id,
                           detail={"points": [p.point for p in self.plan.changes], "ticket": engine.actor.ticket})
        try:
            check_guards(self.plan, engine)
            if run_options.get("emergency"):
                engine.store.audit("apply.emergency", actor=engine.actor.name, run_id=run_id,
                                   detail={"reason": run_options["emergency"]})
            engine.store.record_plans(run_id, {name: p.to_dict() for name, p in self.plan.points.items()})
            self._preflight()
            self._apply_batches()
            if self.abort.is_set() and self.options.on_failure is OnFailure.ROLLBACK_ALL:
                self._rollback_changed()
        except PlanError as exc:
            engine.store.finish_run(run_id, "refused", {"error": exc.message})
            engine.store.audit(f"{self.kind}.refused", actor=engine.actor.name, run_id=run_id,
                               detail={"error": exc.message})
            raise
        except BaseException as exc:  # Ctrl-C or a bug: say what is known, never leave the run "running"
            self.abort.set()  # points still queued in the runner's threads start nothing more
            engine.store.finish_run(run_id, "interrupted", {"error": f"{type(exc).__name__}: {exc}",
                                                            **self.result.to_dict()})
            raise
        finally:
            self.locks.close()
        for outcome in self.result.outcomes.values():  # final states (rollback-all changes some)
            self.record(outcome)
        engine.store.finish_run(run_id, self.result.status, self.result.to_dict())
        engine.store.audit(f"{self.kind}.finish", actor=engine.actor.name, run_id=run_id,
                           detail={"status": self.result.status, "states": self.result.by_state()})
        return self.result

    def _preflight(self) -> None:
        """Every point to change is re-fetched: a single stale fingerprint refuses the whole run."""
        changes = self.plan.changes
        if not changes:
            return
        self.engine.reporter.phase("checking the plan is current", len(changes))

        def current(point: str, fresh: str | MicrosegError) -> str | None:
            if isinstance(fresh, MicrosegError):
                self.engine.reporter.point(point, "failed", fresh.message)
                return f"{point}: cannot be fetched: {fresh.message}"
            expected = self.plan.points[point].fingerprint
            self.engine.reporter.point(point, "planned" if fresh == expected else "failed",
                                       "current" if fresh == expected else "changed since the plan")
            return None if fresh == expected else f"{point}: actual state changed since the plan"

        def work(point: str) -> str | None:
            try:  # the fingerprint is of the raw state: a change that made it unparsable is stale too
                snapshot = self.engine.call(point, "fetch", self.engine.sessions.driver(point).fetch)
            except MicrosegError as exc:
                return current(point, exc)
            return current(point, snapshot.fingerprint())

        names = [p.point for p in changes]
        executor = self.engine.options.executor
        results: Mapping[str, object]
        if executor is not None:  # fetched where the points are reachable
            fresh = executor.fingerprints(self.engine, names)
            results = {point: current(point, fresh[point]) for point in names}
        else:
            results = run_on_points(self.engine.nornir, names, work, self.engine.options.workers)
        self.engine.reporter.done()
        problems = sorted(str(r) for r in results.values() if r is not None)
        if problems:
            what = "stale plan" if any("changed since" in p for p in problems) else "cannot check the plan is current"
            raise PlanError(f"{what}, nothing applied — run `microseg plan` again: " + "; ".join(problems))

    def _apply_batches(self) -> None:
        """Canary, then batches, in inventory order (the order Nornir runs hosts in)."""
        order = {name: i for i, name in enumerate(self.engine.nornir.hosts)}  # hosts.yaml order
        changes = sorted((p.point for p in self.plan.changes), key=lambda n: (order.get(n, len(order)), n))
        for name, point_plan in self.plan.points.items():
            if point_plan.empty:
                self.result.outcomes[name] = PointOutcome(name, PointState.UNCHANGED)
        for number, batch in enumerate(batches(changes, self.options.canary, self.options.batch_size)):
            if self.abort.is_set():
                for name in batch:
                    self.result.outcomes[name] = PointOutcome(name, PointState.SKIPPED, "not started: run aborted")
                continue
            title = "canary" if number == 0 and self.options.canary else f"applying batch {number + 1}"
            self.engine.reporter.phase(title, len(batch))
            try:  # the batch's free locks in one statement; each point waits for a held one when it starts
                self.lock_points(batch)
            except MicrosegError as exc:  # each point tries again, and fails alone, when it starts
                log.warning("could not lock the points of %s at once (each point tries when it starts): %s", title,
                            exc.message)
            executor = self.engine.options.executor
            outcomes: Mapping[str, object] = (
                executor.apply_points(self, batch) if executor is not None
                else run_on_points(self.engine.nornir, batch, self.apply_point, self.engine.options.workers))
            self.engine.reporter.done()
            for name, result in outcomes.items():
                if isinstance(result, PointOutcome):
                    self.result.outcomes[name] = result
                else:  # a bug outside the guarded steps: the point may be half-changed — say so and stop
                    self.result.outcomes[name] = PointOutcome(name, PointState.UNKNOWN, f"internal error: {result}")
                    self.record(self.result.outcomes[name])
                    self.abort.set()
            if number == 0 and self.options.canary and any(self.result.outcomes[n].failed for n in batch):
                self.abort.set()  # a failed canary stops the run whatever --on-failure says

    # ------------------------------------------------------------------ one point

    def lock_point(self, point: str) -> None:
        """Hold ``point``'s lock until the run ends (waiting up to ``--lock-timeout`` for another run's)."""
        self._lock_set().take(point, timeout=self.engine.options.lock_timeout)

    def lock_points(self, points: Sequence[str]) -> set[str]:
        """Hold the locks of those of ``points`` no other run holds, in one statement, without waiting; the ones
        held.  (:meth:`lock_point` then waits for the others, one by one.)"""
        return self._lock_set().take_many(points)

    def _lock_set(self) -> LockSet:
        with self._mutex:
            if self._locks is None:  # one set per run: its locks renewed together, released together at the end
                self._locks = self.engine.store.lock_set(self.result.run_id)
                self.locks.callback(self._locks.close)
            return self._locks

    def guard(self, point: str, what: str) -> None:
        """The last check before ``what`` (a push, a confirm, a rollback) goes to ``point``: nothing here; a worker
        raises :class:`GivenUp` once its coordinator gave its step up (another worker restores the point then, or
        a human is told to look at it)."""

    def _window_closed(self) -> bool:
        return self.deadline is not None and self.engine.options.clock() >= self.deadline

    def not_startable(self, point: str) -> PointOutcome | None:
        """The outcome of a point this run must not start (aborted, or the change window closed), else None."""
        if self.abort.is_set():
            return PointOutcome(point, PointState.SKIPPED, "not started: run aborted")
        if self._window_closed():
            assert self.deadline is not None
            outcome = PointOutcome(point, PointState.SKIPPED, f"not started: the change window closed at "
                                                              f"{self.deadline.isoformat(timespec='minutes')}")
            self.engine.reporter.point(point, "skipped", outcome.error or "")
            self.record(outcome)
            return outcome
        return None

    def apply_point(self, point: str) -> PointOutcome:
        skipped = self.not_startable(point)
        if skipped is not None:
            return skipped
        started = time.monotonic()
        engine, point_plan = self.engine, self.plan.points[point]
        try:
            self.lock_point(point)
            snapshot, observed = engine.observe(point)
            if snapshot.fingerprint() != point_plan.fingerprint:
                raise PlanError(f"{point}: actual state changed since the plan (stale); nothing changed here")
            checkpoint: Checkpoint = engine.call(point, "checkpoint", engine.sessions.driver(point).checkpoint)
            if checkpoint.fingerprint != snapshot.fingerprint():
                raise PlanError(f"{point}: changed while being checkpointed; nothing changed here")
            # with the normalized state beside it: whoever restores the point (a worker of its queue, when this one
            # is lost) judges the result as this run would — the raw state can never match again once something
            # microseg does not own moved meanwhile (a binding in a slot it does not manage), the owned rules can.
            # Not for a change of annotations only: its rules are the same before and after, so they cannot tell
            # a restored point from one that is not — its restore is judged by the raw state alone.
            before = None if point_plan.annotations_only else observed.ruleset
            engine.store.record_checkpoint(self.result.run_id, point, {
                **checkpoint.to_dict(), "before": None if before is None else before.to_dict(with_provenance=False)})
            self.guard(point, "push")
        except GivenUp as exc:
            return PointOutcome(point, PointState.UNCHANGED, exc.message, seconds=time.monotonic() - started)
        except MicrosegError as exc:
            return self.failed_untouched(point, exc, started)
        undo = Changed(checkpoint, before, checkpoint.fingerprint)
        with self._mutex:
            self.changed[point] = undo
        try:
            report, after = self._apply_and_verify(point, point_plan, snapshot)
        except GivenUp as exc:  # another worker restores the point now: touch nothing more, record nothing
            return PointOutcome(point, PointState.UNKNOWN, exc.message, seconds=time.monotonic() - started)
        except Exception as exc:  # any failure after the checkpoint is restored, bugs included
            message = exc.message if isinstance(exc, MicrosegError) else f"internal error: {type(exc).__name__}: {exc}"
            if self.options.on_failure is not OnFailure.ROLLBACK_FAILED:
                self.abort.set()
            try:
                outcome = self.restore(point, undo, failed_here=True)
            except GivenUp as given_up:  # as above: the coordinator's verdict stands
                return PointOutcome(point, PointState.UNKNOWN, f"{message}; {given_up.message}",
                                    seconds=time.monotonic() - started)
            outcome.error = message
            outcome.seconds = time.monotonic() - started
            engine.reporter.point(point, outcome.state.value, message)
            self.record(outcome)
            return outcome
        engine.store.audit("point.applied", actor=engine.actor.name, run_id=self.result.run_id, point=point,
                           detail={"summary": point_plan.summary(), "lines_sent": report.lines_sent})
        engine.reporter.point(point, "new", f"{point_plan.summary()} in {report.seconds * 1000:.0f} ms")
        outcome = PointOutcome(point, PointState.NEW, report=report, seconds=time.monotonic() - started,
                               fingerprint_after=after)
        self.record(outcome)
        return outcome

    def failed_untouched(self, point: str, exc: MicrosegError, started: float) -> PointOutcome:
        if self.options.on_failure is not OnFailure.ROLLBACK_FAILED:
            self.abort.set()
        self.engine.reporter.point(point, "failed", exc.message)
        outcome = PointOutcome(point, PointState.UNCHANGED, exc.message, seconds=time.monotonic() - started)
        self.record(outcome)
        return outcome

    def _apply_and_verify(self, point: str, point_plan: ChangePlan, before: Snapshot) -> tuple[ApplyReport, str]:
        """Apply, then prove it: returns the report and the fingerprint of the verified new state."""
        engine = self.engine
        driver = engine.sessions.driver(point)
        try:
            report = driver.apply(point_plan.change)
        except PermanentDriverError:
            raise
        except MicrosegError as exc:  # transient: the session dropped mid-change — where is the point now?
            snapshot, observed = engine.observe(point)
            if not _differences(driver, point_plan, snapshot, observed.ruleset):
                report = ApplyReport(point, point_plan.change.mutating_calls, len(point_plan.change.commands), 0.0,
                                     f"applied; the session dropped after the change ({exc.message})")
                self._confirm(point, driver)
                return report, snapshot.fingerprint()
            if snapshot.fingerprint() != before.fingerprint():
                raise PermanentDriverError(f"session dropped mid-change and the state is neither old nor new: "
                                           f"{exc.message}", point=point, driver=point_plan.driver) from exc
            report = engine.call(point, "apply", lambda: self._guarded_apply(point, driver, point_plan))
        snapshot, observed = engine.observe(point)
        remaining = _differences(driver, point_plan, snapshot, observed.ruleset)
        if remaining:
            raise VerifyError(f"{point}: verification failed after apply: still differs ({remaining})")
        self._confirm(point, driver)
        return report, snapshot.fingerprint()

    def _guarded_apply(self, point: str, driver: Any, point_plan: ChangePlan) -> ApplyReport:
        self.guard(point, "push")  # a retry comes later: the step may have been given up meanwhile
        report: ApplyReport = driver.apply(point_plan.change)
        return report

    def _confirm(self, point: str, driver: object) -> None:
        """Verified: make a change pushed under an auto-revert timer permanent (no-op for other drivers).  Not
        once the step was given up: the device's timer then puts the old state back."""
        if isinstance(driver, ConfirmingDriver):
            self.guard(point, "confirm")
            self.engine.call(point, "confirm", driver.confirm)

    def restore(self, point: str, undo: Changed, *, failed_here: bool = False) -> PointOutcome:
        """Roll one point back to its checkpoint and prove it; UNKNOWN (loudly) when that fails.

        A point whose own change failed is looked at first: when it is still exactly at its checkpoint
        (an atomic change that was refused) it is ``unchanged`` and nothing is sent to it.  Raises
        :class:`GivenUp` when a worker's step was given up before the rollback went out.
        """
        engine = self.engine
        try:
            driver = engine.sessions.driver(point)
            if failed_here and self._still_at(point, undo.before_fingerprint):
                engine.store.audit("point.unchanged", actor=engine.actor.name, run_id=self.result.run_id,
                                   point=point, detail={"why": "the change failed atomically"})
                with self._mutex:
                    self.changed.pop(point, None)
                return PointOutcome(point, PointState.UNCHANGED)
            engine.call(point, "rollback", lambda: self._guarded_rollback(point, driver, undo.checkpoint))
            snapshot, observed = engine.observe(point)
            same_state = snapshot.fingerprint() == undo.before_fingerprint
            if not same_state and (undo.before is None or observed.ruleset != undo.before):
                raise RollbackError(f"{point}: after rollback the state is still not the checkpoint's")
        except GivenUp:  # the coordinator gave this step up: nothing more is sent; the caller records nothing
            raise
        except MicrosegError as exc:
            message = f"ROLLBACK FAILED, state unknown — a human must look at {point}: {exc.message}"
            engine.store.audit("point.rollback_failed", actor=engine.actor.name, run_id=self.result.run_id,
                               point=point, detail={"error": exc.message})
            engine.reporter.point(point, "unknown", message)
            return PointOutcome(point, PointState.UNKNOWN, rollback_error=message)
        engine.store.audit("point.restored", actor=engine.actor.name, run_id=self.result.run_id, point=point)
        with self._mutex:
            self.changed.pop(point, None)
        return PointOutcome(point, PointState.RESTORED)

    def _guarded_rollback(self, point: str, driver: Any, checkpoint: Checkpoint) -> None:
        self.guard(point, "rollback")  # before every attempt: a retry comes later, the step may be given up by then
        driver.rollback(checkpoint)

    def _still_at(self, point: str, fingerprint: str) -> bool:
        """Whether the point is exactly at ``fingerprint`` now (False when that cannot be known)."""
        try:
            return self.engine.sessions.driver(point).fetch().fingerprint() == fingerprint
        except MicrosegError:
            return False

    def _rollback_changed(self) -> None:
        """rollback-all: restore every point this run left new."""
        executor = self.engine.options.executor
        targets = [n for n, o in self.result.outcomes.items()  # a worker's point: its checkpoint is in the store
                   if o.state is PointState.NEW and (executor is not None or n in self.changed)]
        if not targets:
            return
        self.engine.reporter.phase("rolling back", len(targets))

        def work(point: str) -> PointOutcome:
            outcome = self.restore(point, self.changed[point])
            if outcome.state is PointState.RESTORED:
                self.engine.reporter.point(point, "restored", "rolled back and verified")
            return outcome

        results: Mapping[str, object] = (
            executor.restore_points(self, targets) if executor is not None
            else run_on_points(self.engine.nornir, targets, work, self.engine.options.workers))
        self.engine.reporter.done()
        for name, outcome in results.items():
            previous = self.result.outcomes[name]
            if isinstance(outcome, PointOutcome):
                outcome.report, outcome.seconds = previous.report, previous.seconds
                outcome.error = outcome.error or "rolled back because another point failed"
                self.result.outcomes[name] = outcome
            else:
                self.result.outcomes[name] = PointOutcome(name, PointState.UNKNOWN, rollback_error=str(outcome))


def apply_plan(engine: Engine, plan: Plan, options: ApplyOptions, run_options: Mapping[str, Any],
               deadline: datetime | None = None) -> RunResult:
    return Transaction(engine, plan, options, deadline=deadline).run(run_options)


def record_refusal(engine: Engine, kind: str, reason: str, options: Mapping[str, Any]) -> str:
    """A run that was refused before it changed anything (guards, confirmation): recorded all the same."""
    run_id = engine.store.create_run(kind, actor=engine.actor.name, ticket=engine.actor.ticket,
                                     origin_host=engine.actor.origin_host, options=dict(options))
    engine.store.finish_run(run_id, "refused", {"error": reason})
    engine.store.audit(f"{kind}.refused", actor=engine.actor.name, run_id=run_id, detail={"error": reason})
    return run_id


def _differences(driver: object, point_plan: ChangePlan, snapshot: Snapshot, observed: Ruleset) -> str:
    """How the point still differs from the plan's new state ("" when it is there): its rules, and for a plan that
    only writes annotations (remarks), those too — the rules of such a point are in sync before and after."""
    remaining = diff_rulesets(observed, point_plan.intended)
    if not remaining.empty:
        return remaining.summary()
    if point_plan.annotations_only and isinstance(driver, AnnotatingDriver):
        left = driver.annotate(RenderRequest(point_plan.point, point_plan.intended, observed, snapshot))
        if not left.empty:
            return f"annotations (remarks) still out of date: a change of {len(left.commands)} config lines"
    return ""
