"""Per-point steps on Celery workers (``--executor celery``), the local Nornir runner staying the default.

A site's switches are often reachable only from a machine inside that site, a cloud account only from a
worker holding its role.  Each point names its ``queue`` (inventory ``data.microseg.queue``, per host or
Nornir group; default ``default``); ``microseg worker --queue SITE…`` serves those queues.  The coordinator
(the CLI or ``serve``) keeps the run exactly as the local runner has it — the run record, guards, the
staleness check, canary and batches, ``--on-failure``, change windows and the point locks (held by the
coordinator, renewed while the run lasts, so two coordinators never interleave on a point) — and sends tasks
per step: ``plan`` and ``fingerprint`` (read-only; in chunks of a queue's points on large runs, ``read_chunks``),
``apply`` (checkpoint → apply → verify → confirm, restored on failure), ``restore`` (back to the run's stored
checkpoint) and ``rollback`` (``microseg rollback``), one point per task.  What a task carries is the points'
names, the step, the run id and the digest of the compiled policy — never a secret: credentials resolve on the
worker, from its own inventory and secret backends.

A worker loads the same policy and inventory as the coordinator (deployed beside it); a task whose policy
digest differs from the worker's is refused with both digests.  A changing step is *claimed* in the store
first (``orchestrator.store.steps``): of two deliveries of one message exactly one runs it, the other returns
the first one's answer.  While it runs, the worker renews the step's lease; a worker that dies (SIGKILL, a
lost host) stops renewing, and the coordinator, seeing the lease expired, abandons the step and sends a
``restore`` to another worker of the queue, which puts the point back to its stored checkpoint and verifies
it — the point ends ``restored`` (or ``unchanged`` when the change had not reached it, ``unknown`` when no
worker could restore it).  A queue no worker serves: its points wait ``--queue-timeout`` seconds, then end
``skipped`` naming the queue (and a worker that shows up later never runs the step).  Answers travel through
the store (PostgreSQL), so a step's outcome survives the broker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from orchestrator.engine.plan import ChangePlan, Plan
from orchestrator.engine.rollback import rollback_point
from orchestrator.engine.transaction import (
    ApplyOptions,
    Changed,
    GivenUp,
    OnFailure,
    PointOutcome,
    PointState,
    Transaction,
)
from orchestrator.model.driver import Checkpoint
from orchestrator.model.errors import MicrosegError, PlanError
from orchestrator.model.rules import Ruleset
from orchestrator.store.steps import ABANDONED, DONE, PointSteps, StepRecord

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # Celery loads only for --executor celery and `microseg worker`
    from celery import Celery

    from orchestrator.engine.engine import Engine

STEP_TASK = "microseg.step"
READ_STEPS = ("plan", "fingerprint")
CHANGE_STEPS = ("apply", "restore", "rollback")
STEPS = READ_STEPS + CHANGE_STEPS
DEFAULT_QUEUE = "default"
# read-only steps go out in chunks of a queue's points: a message with a result costs the coordinator ~0.7 ms of
# CPU to send and about as much to collect (benchmarks/scale.py).  A queue's points are spread over at least
# READ_CHUNK_SPREAD messages (small runs keep one point per message), so that as many worker threads get one;
# a worker runs its chunk's points one after the other (side by side, 36 threads per worker process fought over
# the GIL: the plan took 13 s instead of 7 at 100 switches).
READ_CHUNK_MAX = 20
READ_CHUNK_SPREAD = 16  # points of a queue per chunk = its points // this, 1 to READ_CHUNK_MAX
BROKER_ENV = "MICROSEG_BROKER"
COORDINATOR = "coordinator"


def backend_for(broker: str) -> str:
    """Where answers go back: the same Redis for a Redis broker; RabbitMQ's reply queues (``rpc://``) else."""
    return broker if broker.startswith(("redis://", "rediss://")) else "rpc://"


@cache
def celery_app(broker: str) -> Celery:
    """The Celery app both sides use: JSON only (no pickle: a message never runs code), late acks, one task
    prefetched per worker process."""
    from celery import Celery  # noqa: PLC0415

    app = Celery("microseg", broker=broker, backend=backend_for(broker))
    app.conf.update(
        task_serializer="json", result_serializer="json", accept_content=["json"], result_accept_content=["json"],
        task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
        task_default_queue=DEFAULT_QUEUE, broker_connection_retry_on_startup=True, result_expires=3600,
        worker_hijack_root_logger=False,
    )
    return app


def refuse_local_store(store_url: str) -> None:
    """Workers on other machines share the coordinator's store: a SQLite file cannot be that."""
    if store_url.startswith("sqlite"):
        raise PlanError("--executor celery needs a store every worker can reach: PostgreSQL (--store "
                        "postgresql+psycopg://…), not a SQLite file")


def _no_worker(point: str, queue: str, timeout: float) -> str:
    return (f"{point}: no worker of queue {queue!r} took it within {timeout:g} s "
            f"(start one: microseg worker --queue {queue})")


@dataclass(frozen=True)
class CeleryExecutor:
    """Sends each point's step to its queue and collects the answers (the coordinator's side).

    ``lease``: seconds a worker's step may go without renewing before the coordinator calls the worker lost.
    """

    broker: str
    queue_timeout: float = 120.0
    lease: float = 30.0
    poll: float = 0.2

    # ------------------------------------------------------------------ read-only steps

    def plan_points(self, engine: Engine, points: Sequence[str], digest: str,
                    on_result: Callable[[str, ChangePlan | MicrosegError], None] | None = None,
                    ) -> dict[str, ChangePlan | MicrosegError]:
        """The plan of every point, made by a worker of the point's queue."""
        out: dict[str, ChangePlan | MicrosegError] = {}
        for point, data in self._ask(engine, "plan", points, digest).items():
            answer = data if isinstance(data, MicrosegError) else ChangePlan.from_dict(data["plan"])
            out[point] = answer
            if on_result is not None:
                on_result(point, answer)
        return out

    def fingerprints(self, engine: Engine, points: Sequence[str]) -> dict[str, str | MicrosegError]:
        """The fingerprint of each point's actual state, fetched by a worker of its queue."""
        answers = self._ask(engine, "fingerprint", points, engine.policy_digest())
        return {p: a if isinstance(a, MicrosegError) else str(a["fingerprint"]) for p, a in answers.items()}

    def _ask(self, engine: Engine, step: str, points: Sequence[str],
             digest: str) -> dict[str, Mapping[str, Any] | MicrosegError]:
        """Send a read-only step for every point and collect the answers as they arrive (one drain of the result
        backend for all of them: RabbitMQ's reply queue or Redis), up to ``queue_timeout`` in all."""
        from celery.exceptions import TimeoutError as CeleryTimeout  # noqa: PLC0415
        from celery.result import ResultSet  # noqa: PLC0415

        app = celery_app(self.broker)
        pending: list[tuple[str, list[str], Any]] = []  # (queue, its points, the message's result)
        for queue, chunk in read_chunks(engine, points):
            kwargs: dict[str, Any] = {"step": step, "digest": digest}
            kwargs.update({"point": chunk[0]} if len(chunk) == 1 else {"point": "", "points": chunk})
            pending.append((queue, chunk, app.send_task(STEP_TASK, kwargs=kwargs, queue=queue)))
        arrived: dict[str, Any] = {}
        with contextlib.suppress(CeleryTimeout):  # the points still without an answer are named below
            ResultSet([result for _, _, result in pending], app=app).join_native(
                timeout=self.queue_timeout, propagate=False, callback=lambda task_id, value: arrived.update(
                    {task_id: value}))
        answers: dict[str, Any] = {}
        missing: dict[str, tuple[str, int]] = {}  # point -> (queue, points of its chunk)
        for queue, chunk, result in pending:
            if result.id not in arrived:
                result.revoke()  # a worker that shows up later does not run it
                missing.update(dict.fromkeys(chunk, (queue, len(chunk))))
                continue
            answers.update(_chunk_answers(chunk, arrived[result.id]))
        out: dict[str, Mapping[str, Any] | MicrosegError] = {}
        for point in points:
            if point in missing:
                queue, size = missing[point]
                which = "" if size == 1 else f" the message for it and {size - 1} more points (one may hold them up)"
                out[point] = PlanError(f"{point}: no worker of queue {queue!r} answered{which} within "
                                       f"{self.queue_timeout:g} s (start one: microseg worker --queue {queue})")
                continue
            queue = engine.project.inventory.point(point).queue
            data = answers[point]
            if isinstance(data, Mapping) and data.get("ok"):
                out[point] = data
            elif isinstance(data, Mapping) and isinstance(data.get("error"), str):
                out[point] = PlanError(f"{point} (worker of queue {queue!r}): {data['error']}")
            else:
                out[point] = PlanError(f"{point}: the worker of queue {queue!r} failed: {data!r}"[:2000])
        return out

    # ------------------------------------------------------------------ changing steps

    def apply_points(self, tx: Transaction, points: Sequence[str]) -> dict[str, PointOutcome]:
        """Checkpoint → apply → verify each point of a batch on its queue's worker, under this run's locks.

        As with the local runner, at most ``--workers`` points are in flight, and a point is only started (its
        step sent) while the run is not aborted and the change window is open."""
        outcomes: dict[str, PointOutcome] = {}

        def start(point: str) -> bool:
            skipped = tx.not_startable(point)
            if skipped is not None:
                outcomes[point] = skipped
                return False
            try:
                tx.lock_point(point)  # the coordinator holds the lock for the whole run, as the local runner does
            except MicrosegError as exc:
                outcomes[point] = tx.failed_untouched(point, exc, time.monotonic())
                return False
            return True

        answers = self._steps(tx, "apply", points, {"kind": tx.kind}, start=start,
                              in_flight=tx.engine.options.workers)
        for point, outcome in self._outcomes(tx, "apply", answers).items():
            if outcome.failed and tx.options.on_failure is not OnFailure.ROLLBACK_FAILED:
                tx.abort.set()  # as the local runner does: the points not started yet are skipped
            outcomes[point] = outcome
        return outcomes

    def restore_points(self, tx: Transaction, points: Sequence[str]) -> dict[str, PointOutcome]:
        """Restore points of this run to their stored checkpoints (rollback-all)."""
        return self._outcomes(tx, "restore", self._steps(tx, "restore", points, {"failed_here": False}))

    def rollback_points(self, tx: Transaction, of_run: str, points: Sequence[str],
                        force: bool) -> dict[str, PointOutcome]:
        """``microseg rollback``: each point back to the checkpoint run ``of_run`` took, by its queue's worker."""
        outcomes: dict[str, PointOutcome] = {}

        def start(point: str) -> bool:
            try:
                tx.lock_point(point)
            except MicrosegError as exc:
                tx.engine.reporter.point(point, "failed", exc.message)
                outcomes[point] = PointOutcome(point, PointState.UNCHANGED, exc.message)
                return False
            return True

        answers = self._steps(tx, "rollback", points, {"of_run": of_run, "force": force}, start=start)
        outcomes.update(self._outcomes(tx, "rollback", answers))
        return outcomes

    def _outcomes(self, tx: Transaction, step: str, answers: Mapping[str, Mapping[str, Any]],
                  ) -> dict[str, PointOutcome]:
        """Each point's outcome from its answer; a point whose worker was lost mid-step is restored from the
        run's stored checkpoint by another worker of its queue."""
        out: dict[str, PointOutcome] = {}
        lost: dict[str, str] = {}
        for point, answer in answers.items():
            if isinstance(answer.get("outcome"), Mapping):
                outcome = PointOutcome.from_dict(answer["outcome"])
            elif "untaken" in answer and step != "restore":  # nothing was done to the point
                outcome = PointOutcome(point, PointState.SKIPPED, str(answer["untaken"]))
                tx.record(outcome)
            elif "lost" in answer and step != "restore":
                lost[point] = str(answer["reason"])
                continue
            else:  # a restore nobody took or finished, or a worker's internal error: the point may be half changed
                why = str(answer.get("reason") or answer.get("untaken") or answer.get("error") or answer)
                outcome = PointOutcome(point, PointState.UNKNOWN, why, rollback_error=(
                    f"STATE UNKNOWN — a human must look at {point}: {why}; its checkpoint is stored with run "
                    f"{tx.result.run_id} (`microseg rollback {tx.result.run_id} -t {point}`)"))
                tx.record(outcome)
            tx.engine.reporter.point(point, outcome.state.value, outcome.error or "")
            out[point] = outcome
        if lost:
            time.sleep(self.lease)  # one more lease: a worker that was only slow sees its step abandoned and stops
            restored = self._outcomes(tx, "restore", self._steps(tx, "restore", list(lost), {"failed_here": True}))
            for point, outcome in restored.items():
                if step == "rollback" and outcome.state is PointState.RESTORED:  # back to before the rollback
                    outcome.state, outcome.error = PointState.UNCHANGED, "the rollback was undone"
                outcome.error = f"{lost[point]}; " + {
                    PointState.RESTORED: "another worker restored the checkpoint and verified it",
                    PointState.UNCHANGED: outcome.error or "the change had not reached the point",
                }.get(outcome.state, outcome.error or "not restored")
                tx.record(outcome)
                out[point] = outcome
        return out

    def _steps(self, tx: Transaction, step: str, points: Sequence[str], options: Mapping[str, Any], *,
               start: Callable[[str], bool] | None = None, in_flight: int = 0) -> dict[str, dict[str, Any]]:
        """Send ``step`` for each point to its queue and wait for every answer, watching the workers' leases:
        an answer, ``{"untaken": why}`` (no worker claimed it in time) or ``{"lost": worker, "reason": why}``.

        ``start(point)`` is asked right before a point's step is sent (False: not sent; it recorded why);
        ``in_flight`` bounds the steps sent but not answered (0: no bound).  A queue's ``queue_timeout`` runs
        from the last sign of progress on that queue (a step claimed or answered), so a long queue that is
        being worked through is not mistaken for one without workers."""
        engine, run_id = tx.engine, tx.result.run_id
        steps = engine.store.steps
        app = celery_app(self.broker)
        waiting = list(points)
        sent: dict[str, tuple[str, Any]] = {}
        progress: dict[str, float] = {}  # queue → when it last moved (a step sent, claimed or answered)
        seen: set[str] = set()
        answers: dict[str, dict[str, Any]] = {}
        unreadable_since: float | None = None  # the store has failed every poll since then
        try:
            while waiting or len(answers) < len(sent):
                while waiting and (in_flight <= 0 or len(sent) - len(answers) < in_flight):
                    point = waiting.pop(0)
                    if start is not None and not start(point):
                        continue
                    queue = engine.project.inventory.point(point).queue
                    result = app.send_task(STEP_TASK, queue=queue, ignore_result=True, kwargs={  # answers: store
                        "step": step, "point": point, "digest": engine.policy_digest(), "run_id": run_id,
                        "lease": self.lease, "options": dict(options)})
                    sent[point] = (queue, result)
                    progress[queue] = time.monotonic()  # its clock starts with its newest step
                if len(answers) == len(sent):
                    continue
                time.sleep(self.poll)
                records, unreadable_since = self._records(steps, run_id, step, unreadable_since)
                if records is None:
                    continue
                now = time.monotonic()
                for point, (queue, result) in sent.items():
                    if point in answers:
                        continue
                    record = records.get(point)
                    if record is not None and (point not in seen or record.status == DONE):
                        seen.add(point)
                        progress[queue] = now
                    if record is not None and record.status == DONE:
                        answers[point] = record.answer
                    elif record is None and now - progress[queue] >= self.queue_timeout:
                        reason = _no_worker(point, queue, self.queue_timeout)
                        if steps.abandon(run_id, point, step, by=COORDINATOR, reason=reason) is None:
                            result.revoke()
                            answers[point] = {"untaken": reason}
                    elif record is not None and (record.expired or record.status == ABANDONED):
                        reason = (f"{point}: worker {record.worker} was lost mid-{step} (its lease expired at "
                                  f"{record.expires_at:%H:%M:%S}Z)")
                        if record.status == ABANDONED or steps.abandon(run_id, point, step, by=COORDINATOR,
                                                                       reason=reason) is None:
                            answers[point] = {"lost": record.worker, "reason": reason}
        except BaseException:  # Ctrl-C or a broken broker: steps nobody claimed yet must never run later
            for point in sent:
                if point not in answers:
                    with contextlib.suppress(Exception):
                        steps.abandon(run_id, point, step, by=COORDINATOR, reason="the coordinator stopped")
            raise
        return answers

    def _records(self, steps: PointSteps, run_id: str, step: str,
                 unreadable_since: float | None) -> tuple[dict[str, StepRecord] | None, float | None]:
        """The run's records of ``step`` and None, or None and since when the store has failed every poll (it
        hiccupped: the workers' answers wait there); an error once that has lasted ``queue_timeout``."""
        try:
            return steps.of_run(run_id, step), None
        except MicrosegError as exc:
            unreadable_since = unreadable_since or time.monotonic()
            if time.monotonic() - unreadable_since >= self.queue_timeout:  # gone, not hiccupping
                raise PlanError(f"the store has been unreadable for {self.queue_timeout:g} s, so the answers to "
                                f"the {step} steps of run {run_id} cannot be read: {exc.message}") from exc
            log.warning("cannot read the steps of run %s (will retry): %s", run_id, exc.message)
            return None, unreadable_since


# ---------------------------------------------------------------------- the worker's side


class WorkerState:
    """One worker process's engine, built on its first task (project, Nornir inventory, store)."""

    def __init__(self, make_engine: Callable[[], Engine]) -> None:
        self.make_engine = make_engine
        self._engine: Engine | None = None
        self._lock = threading.Lock()  # a thread pool shares one engine

    def engine(self, *, fresh: bool = False) -> Engine:
        """The engine (``fresh``: rebuilt from the files; the old one is left to the steps still using it —
        with ``--pool threads`` other steps may be mid-change on its sessions)."""
        with self._lock:
            if self._engine is None or fresh:
                self._engine = self.make_engine()
            return self._engine

    def run_many(self, step: str, points: Sequence[str], digest: str) -> dict[str, Any]:
        """A read-only step for a chunk of points, one after the other: each point's answer as ``run`` gives it,
        under ``answers``."""
        if step not in READ_STEPS:
            return {"ok": False, "error": f"step {step} is sent for one point at a time, not for {len(points)}"}
        answers: dict[str, Any] = {}
        for point in points:
            try:
                answers[point] = self.run(step, point, digest)
            except Exception as exc:  # a bug on one point fails that point, not its chunk-mates
                log.exception("%s: %s failed on this worker", point, step)
                answers[point] = {"ok": False, "error": f"internal error on the worker: {type(exc).__name__}: {exc}"}
        return {"ok": True, "answers": answers}

    def run(self, step: str, point: str, digest: str, run_id: str | None = None, lease: float = 30.0,
            options: Mapping[str, Any] | None = None, worker: str = "") -> dict[str, Any]:
        """One step for one point, as a JSON-able answer (errors are answers too, never exceptions)."""
        if step not in STEPS:
            return {"ok": False, "error": f"this worker does not run step {step!r} (it runs: {', '.join(STEPS)})"}
        if step not in READ_STEPS and not run_id:
            return {"ok": False, "error": f"step {step} needs the run id"}
        checked: Engine | MicrosegError
        try:
            checked = self._checked(point, digest)
            if step == "plan":
                return {"ok": True, "plan": checked.plan_point(point).to_dict()}
            if step == "fingerprint":
                fetched = checked.call(point, "fetch", checked.sessions.driver(point).fetch)
                return {"ok": True, "fingerprint": fetched.fingerprint()}
        except MicrosegError as exc:
            if step in READ_STEPS:
                return {"ok": False, "error": exc.message}
            checked = exc  # a changing step answers its refusal through the store, like any answer
        assert run_id is not None
        return self._changing(checked, step, point, run_id, lease, dict(options or {}),
                              worker or f"pid-{os.getpid()}")

    def _checked(self, point: str, digest: str) -> Engine:
        engine = self.engine()
        if engine.policy_digest() != digest:  # the files may have changed since this process started: reread
            engine = self.engine(fresh=True)
        mine = engine.policy_digest()
        if mine != digest:
            raise PlanError(f"the worker's policy differs from the coordinator's (worker {mine[:12]}, coordinator "
                            f"{digest[:12]}): deploy the same policy and inventory to every worker")
        if point not in engine.compilation().points:
            raise PlanError(f"{point} is not an enforcement point of the worker's inventory")
        return engine

    def _changing(self, checked: Engine | MicrosegError, step: str, point: str, run_id: str, lease: float,
                  options: dict[str, Any], worker: str) -> dict[str, Any]:
        """Claim (run, point, step), run it under a renewed lease, record the answer; a step someone else
        claimed is never run again here: its answer (waited for) is returned instead.  A refused step is
        answered too: ``unchanged`` for an apply or a rollback refused before touching the point, ``unknown`` for
        a restore (the point it should have put back was not verified).  A step the coordinator gave up meanwhile
        sends nothing more (``GivenUp``), and its answer is dropped by the store."""
        steps = (self.engine() if isinstance(checked, MicrosegError) else checked).store.steps
        while (taken := steps.claim(run_id, point, step, worker=worker, ttl=lease)) is not None:
            if taken.status == DONE:
                return taken.answer  # a redelivered message: the step already ran
            if taken.status == ABANDONED:
                return {"abandoned": str(taken.answer.get("reason", "abandoned by the coordinator"))}
            if taken.expired:
                reason = f"{point}: worker {taken.worker} was lost mid-{step} (its lease expired)"
                if steps.abandon(run_id, point, step, by=worker, reason=reason) is None:
                    return {"lost": taken.worker, "reason": reason}
                continue
            time.sleep(min(1.0, lease / 3))  # the first delivery is still running: wait for its answer
        with steps.leased(run_id, point, step, worker=worker, ttl=lease):
            answer: dict[str, Any]
            try:
                if isinstance(checked, MicrosegError):
                    raise checked
                answer = {"outcome": self._change(checked, step, point, run_id, options,
                                                  StepLease(worker, lease)).to_dict()}
            except MicrosegError as exc:
                state = PointState.UNKNOWN if step == "restore" else PointState.UNCHANGED
                answer = {"outcome": PointOutcome(point, state, exc.message, rollback_error=(
                    f"NOT RESTORED, state unknown — a human must look at {point}: {exc.message}"
                    if state is PointState.UNKNOWN else None)).to_dict()}
            except Exception as exc:  # a bug: the point may be half changed — the coordinator says unknown
                answer = {"error": f"internal error on worker {worker}: {type(exc).__name__}: {exc}"}
        steps.finish(run_id, point, step, worker=worker, answer=answer)
        return answer

    def _change(self, engine: Engine, step: str, point: str, run_id: str, options: Mapping[str, Any],
                lease: StepLease | None = None) -> PointOutcome:
        store = engine.store
        if step == "apply":
            plan = store.plan_of(run_id, point)
            if plan is None:
                raise PlanError(f"run {run_id} has no plan for {point}")
            tx = WorkerTransaction(engine, Plan({point: ChangePlan.from_dict(plan)}), ApplyOptions(),
                                   kind=str(options.get("kind", "apply")), run_id=run_id, lease=lease)
            return tx.apply_point(point)
        tx = WorkerTransaction(engine, Plan({}), ApplyOptions(), kind="rollback", run_id=run_id, lease=lease,
                               step=step)
        if step == "rollback":
            of_run = str(options["of_run"])
            checkpoint = store.checkpoint_of(of_run, point)
            if checkpoint is None:
                raise PlanError(f"run {of_run} has no checkpoint for {point}")
            result = store.run(of_run).results.get(point)
            after = (result.detail or {}).get("fingerprint_after") if result is not None else None
            return rollback_point(tx, of_run, point, checkpoint, after, force=bool(options.get("force")))
        checkpoint = store.checkpoint_of(run_id, point)  # restore
        if checkpoint is None:
            return PointOutcome(point, PointState.UNCHANGED, "no checkpoint was taken: the run never changed it")
        try:
            tx.lock_point(point)
        except PlanError as exc:  # the point may be half changed: say so, touch nothing
            return PointOutcome(point, PointState.UNKNOWN, exc.message,
                                rollback_error=f"ROLLBACK NOT DONE, state unknown — a human must look at {point}: "
                                               f"{exc.message}")
        saved = Checkpoint.from_dict(checkpoint)
        before = _stored_rules(checkpoint.get("before"))
        return tx.restore(point, Changed(saved, before, saved.fingerprint),
                          failed_here=bool(options.get("failed_here")))


@dataclass(frozen=True)
class StepLease:
    """Who runs a step, and for how long each renewal holds it."""

    worker: str
    ttl: float


def _stored_rules(data: object) -> Ruleset | None:
    """The normalized state a checkpoint row carries (None: none, or one that cannot be read — the restore is
    then judged by the raw state alone)."""
    rules = Ruleset.from_stored(data)
    if rules is None and isinstance(data, dict):
        log.warning("the checkpoint's normalized state cannot be read: the restore compares raw state only")
    return rules


class WorkerTransaction(Transaction):
    """A worker's share of a coordinator's run: the coordinator holds the point locks for the whole run, so a
    step checks the run still holds its point's lock instead of taking it."""

    def __init__(self, engine: Engine, plan: Plan, options: ApplyOptions, *, kind: str, run_id: str,
                 lease: StepLease | None = None, step: str = "apply") -> None:
        super().__init__(engine, plan, options, kind=kind)
        self.result.run_id = run_id
        self.lease = lease
        self.step = step

    def guard(self, point: str, what: str) -> None:
        """Renew the step's lease right before a push, a confirm or a rollback: a worker that outlived its lease
        (stalled, cut off from the store) and whose step the coordinator gave up — another worker may be
        restoring the point, or the coordinator told a human to look at it — must not change it now; nor confirm
        a change, which the device's timer then reverts.  A store that cannot be reached says nothing either way:
        nothing is sent then too."""
        if self.lease is None:
            return
        try:
            held = self.engine.store.steps.renew(self.result.run_id, point, self.step, worker=self.lease.worker,
                                                 ttl=self.lease.ttl)
        except MicrosegError as exc:
            raise GivenUp(f"{point}: cannot renew this worker's {self.step} step before the {what} ({exc.message}); "
                          "nothing more was sent here") from exc
        if not held:
            raise GivenUp(f"{point}: the coordinator gave up this worker's {self.step} step (its lease ran out) "
                          f"before the {what}; nothing more was sent here")

    def lock_points(self, points: Sequence[str]) -> set[str]:
        """Never on a worker: the coordinator holds the run's locks (a lock set here would release its rows)."""
        raise PlanError(f"a worker does not take the locks of run {self.result.run_id}: its coordinator holds them")

    def lock_point(self, point: str) -> None:
        holder = self.engine.store.lock_holder(point)
        if holder is None or holder.owner != self.result.run_id:
            raise PlanError(f"{point}: run {self.result.run_id} does not hold the point's lock (held by "
                            f"{holder.owner if holder else 'nobody'}); nothing changed here")
        if holder.expires_at <= datetime.now(UTC):  # the coordinator stopped renewing: it may be gone
            raise PlanError(f"{point}: the lease of run {self.result.run_id} on the point ran out at "
                            f"{holder.expires_at:%H:%M:%S}Z (its coordinator stopped); nothing changed here")


def register_step(app: Celery, state: WorkerState) -> None:
    """The task a worker runs for every step message."""

    @app.task(name=STEP_TASK, bind=True)  # type: ignore[untyped-decorator]
    def step(self: Any, step: str, point: str, digest: str, run_id: str | None = None, lease: float = 30.0,
             options: dict[str, Any] | None = None, points: list[str] | None = None) -> dict[str, Any]:
        if points is not None:  # a chunk of a read-only step (CeleryExecutor._ask)
            return state.run_many(step, [str(p) for p in points], digest)
        worker = f"{self.request.hostname or 'worker'}#{os.getpid()}.{threading.get_native_id()}"
        return state.run(step, point, digest, run_id, lease, options, worker)


def _chunk_answers(chunk: Sequence[str], data: Any) -> dict[str, Any]:
    """Each point's answer from a message's answer: a chunk's answers by point; a failed message (an error
    answer, or the exception of a task that raised) is the answer of each of its points."""
    if len(chunk) == 1:
        return {chunk[0]: data}
    if not (isinstance(data, Mapping) and data.get("ok")):
        return dict.fromkeys(chunk, data)
    many = data.get("answers")
    if not isinstance(many, Mapping):
        error = f"the worker answered {len(chunk)} points without an answer per point (a worker of another release?)"
        return {point: {"ok": False, "error": error} for point in chunk}
    return {point: many.get(point, {"ok": False, "error": f"the worker's answer for {len(chunk)} points left "
                                                          f"{point} out"}) for point in chunk}


def read_chunks(engine: Engine, points: Sequence[str]) -> list[tuple[str, list[str]]]:
    """The messages of a read-only step: each queue's points (in order) in chunks of ``its points //
    READ_CHUNK_SPREAD``, at least 1 and at most ``READ_CHUNK_MAX``."""
    by_queue: dict[str, list[str]] = {}
    for point in points:
        by_queue.setdefault(engine.project.inventory.point(point).queue, []).append(point)
    out: list[tuple[str, list[str]]] = []
    for queue, mine in by_queue.items():
        size = max(1, min(READ_CHUNK_MAX, len(mine) // READ_CHUNK_SPREAD))
        out += [(queue, mine[start:start + size]) for start in range(0, len(mine), size)]
    return out


def live_workers(broker: str, timeout: float = 2.0) -> dict[str, list[str]]:
    """Each live worker and the queues it serves (asked over the broker)."""
    app = celery_app(broker)
    replies = app.control.inspect(timeout=timeout).active_queues() or {}
    return {worker: sorted(str(q.get("name")) for q in queues) for worker, queues in sorted(replies.items())}
