"""``microseg rollback RUN_ID``: restore the checkpoints an earlier run recorded, as a run of its own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.engine.engine import Engine
from orchestrator.engine.plan import Plan
from orchestrator.engine.runner import run_on_points
from orchestrator.engine.transaction import (
    ApplyOptions,
    Changed,
    GivenUp,
    PointOutcome,
    PointState,
    RunResult,
    Transaction,
)
from orchestrator.model.driver import Checkpoint
from orchestrator.model.errors import MicrosegError, PlanError


def rollback_run(engine: Engine, run_id: str, points: Sequence[str] | None = None, *,
                 force: bool = False) -> RunResult:
    """Restore the checkpoints an earlier run recorded, as a new run (itself checkpointed, so undoable).

    By default the points that run left ``new`` or ``unknown``.  A point changed since that run (by a later
    run or by hand) is refused unless ``force``: rolling back would silently throw that change away.
    """
    record = engine.store.run(run_id)
    checkpoints = engine.store.checkpoints(record.id)
    results = record.results
    default = [n for n, r in sorted(results.items()) if r.state in ("new", "unknown") and n in checkpoints]
    chosen = list(points) if points else default
    missing = [n for n in chosen if n not in checkpoints]
    if missing:
        raise PlanError(f"run {record.id} has no checkpoint for: {', '.join(missing)}")
    tx = Transaction(engine, Plan({}), ApplyOptions(), kind="rollback")
    tx.result.run_id = engine.store.create_run("rollback", actor=engine.actor.name, ticket=engine.actor.ticket,
                                               origin_host=engine.actor.origin_host,
                                               options={"of_run": record.id, "points": chosen, "force": force})
    engine.reporter.phase(f"rolling back run {record.id}", len(chosen))

    def work(point: str) -> PointOutcome:
        after = (results[point].detail or {}).get("fingerprint_after") if point in results else None
        return rollback_point(tx, record.id, point, checkpoints[point], after, force=force)

    executor = engine.options.executor
    try:
        results_now: Mapping[str, object] = (
            executor.rollback_points(tx, record.id, chosen, force) if executor is not None
            else run_on_points(engine.nornir, chosen, work, engine.options.workers))
    finally:
        tx.locks.close()
        engine.reporter.done()
    for name, outcome in results_now.items():
        tx.result.outcomes[name] = outcome if isinstance(outcome, PointOutcome) else PointOutcome(
            name, PointState.UNKNOWN, rollback_error=str(outcome))
    for outcome in tx.result.outcomes.values():
        tx.record(outcome)
    engine.store.finish_run(tx.result.run_id, tx.result.status, tx.result.to_dict())
    engine.store.audit("rollback.finish", actor=engine.actor.name, run_id=tx.result.run_id,
                       detail={"of_run": record.id, "states": tx.result.by_state()})
    return tx.result


def rollback_point(tx: Transaction, of_run: str, point: str, checkpoint_data: Mapping[str, Any], after: str | None,
                   *, force: bool) -> PointOutcome:
    """Restore one point to the checkpoint run ``of_run`` took (here, or on the worker of its queue): refused
    when the point changed since that run left it at ``after`` unless ``force``; checkpointed first itself."""
    engine = tx.engine
    checkpoint = Checkpoint.from_dict(checkpoint_data)
    try:
        tx.lock_point(point)
        current = engine.sessions.driver(point).fetch().fingerprint()
        if current == checkpoint.fingerprint:
            engine.reporter.point(point, "unchanged", "already at the checkpoint")
            return PointOutcome(point, PointState.UNCHANGED)
        if after and current != after and not force:
            raise PlanError(f"{point} changed since run {of_run} (a later run or a hand edit); rolling back "
                            "would discard that — check `microseg drift`, or pass --force")
        own = engine.call(point, "checkpoint", engine.sessions.driver(point).checkpoint)
        engine.store.record_checkpoint(tx.result.run_id, point, own.to_dict())
    except MicrosegError as exc:
        engine.reporter.point(point, "failed", exc.message)
        return PointOutcome(point, PointState.UNCHANGED, exc.message)
    try:
        outcome = tx.restore(point, Changed(checkpoint, None, checkpoint.fingerprint))
    except GivenUp as exc:  # a worker's step the coordinator gave up: it restores the point through another one
        return PointOutcome(point, PointState.UNKNOWN, exc.message)
    if outcome.state is PointState.RESTORED:
        outcome.fingerprint_after = checkpoint.fingerprint
        engine.reporter.point(point, "restored", f"back to the checkpoint of run {of_run}")
    return outcome
