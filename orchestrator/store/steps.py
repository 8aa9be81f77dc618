"""Per-point steps run by workers (``--executor celery``): one leased row per (run, point, step).

A worker *claims* a step before it touches the point: one atomic INSERT, so of two deliveries of the same
message exactly one runs the step; the other finds the row (``done``: the answer to return; ``running``: wait
for it; ``abandoned``: never run).  While the step runs a background thread renews the row's lease; a worker
that dies stops renewing, and the coordinator, seeing the lease expired, marks the step ``abandoned`` (an
atomic transition a late answer cannot undo) and has the point restored from its stored checkpoint.  The
coordinator also abandons a step no worker claimed in time, so a worker that shows up later never runs it.
Lease times come from the database clock on PostgreSQL, as the point locks' do.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.dialects import postgresql, sqlite

from orchestrator.store.errors import StoreError
from orchestrator.store.locks import begin, db_now
from orchestrator.store.models import StepRow

log = logging.getLogger(__name__)

RUNNING, DONE, ABANDONED = "running", "done", "abandoned"


class StepRecord(NamedTuple):
    """A claimed step: who has it, in which status, its answer once done, and whether its lease ran out."""

    worker: str
    status: str
    answer: dict[str, Any]
    started_at: datetime
    expires_at: datetime
    expired: bool


class PointSteps:
    """Claim, renew, finish and abandon step rows."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def claim(self, run_id: str, point: str, step: str, *, worker: str, ttl: float) -> StepRecord | None:
        """Take the step for ``worker``: None when it is ours now, else the record of whoever has it."""
        with self._connection(f"claim step {step} of {point}") as conn:
            now = db_now(conn)
            values = {"run_id": run_id, "point": point, "step": step, "worker": worker, "status": RUNNING,
                      "answer": {}, "started_at": now, "expires_at": now + timedelta(seconds=ttl)}
            insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(StepRow)
            taken = conn.execute(insert.values(values).on_conflict_do_nothing().returning(StepRow.worker)).first()
            if taken is not None:
                return None
            record = _record(conn, run_id, point, step, now)
            assert record is not None  # rows are never deleted while their run exists
            return record

    @contextmanager
    def leased(self, run_id: str, point: str, step: str, *, worker: str, ttl: float) -> Iterator[None]:
        """Renew the lease of a claimed step every ``ttl / 3`` seconds for the ``with`` block."""
        stopping = threading.Event()

        def renew() -> None:
            while not stopping.wait(ttl / 3):
                try:
                    if not self.renew(run_id, point, step, worker=worker, ttl=ttl):
                        log.warning("step %s of %s in run %s was abandoned while %s ran it", step, point, run_id,
                                    worker)
                        return
                except StoreError as exc:
                    log.warning("could not renew the lease of step %s of %s (will retry): %s", step, point, exc)

        thread = threading.Thread(target=renew, name=f"microseg-step-{point}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stopping.set()
            thread.join()

    def renew(self, run_id: str, point: str, step: str, *, worker: str, ttl: float) -> bool:
        """Extend the lease by ``ttl`` from now while ``worker`` still runs the step; whether it did."""
        with self._connection(f"renew step {step} of {point}") as conn:
            statement = update(StepRow).where(*_key(run_id, point, step), StepRow.worker == worker,
                                              StepRow.status == RUNNING)
            return conn.execute(statement.values(expires_at=db_now(conn) + timedelta(seconds=ttl))).rowcount == 1

    def finish(self, run_id: str, point: str, step: str, *, worker: str, answer: dict[str, Any]) -> bool:
        """Record the step's answer; False when it had been abandoned meanwhile (the answer is then dropped)."""
        with self._connection(f"finish step {step} of {point}") as conn:
            statement = update(StepRow).where(*_key(run_id, point, step), StepRow.worker == worker,
                                              StepRow.status == RUNNING)
            return conn.execute(statement.values(status=DONE, answer=answer)).rowcount == 1

    def abandon(self, run_id: str, point: str, step: str, *, by: str, reason: str) -> StepRecord | None:
        """Mark the step abandoned when nobody claimed it or its lease expired: None when this call did, else
        the record that stands (a live or finished step is never abandoned)."""
        with self._connection(f"abandon step {step} of {point}") as conn:
            now = db_now(conn)
            values = {"run_id": run_id, "point": point, "step": step, "worker": by, "status": ABANDONED,
                      "answer": {"reason": reason}, "started_at": now, "expires_at": now}
            insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(StepRow)
            if conn.execute(insert.values(values).on_conflict_do_nothing().returning(StepRow.worker)).first():
                return None
            statement = update(StepRow).where(*_key(run_id, point, step), StepRow.status == RUNNING,
                                              StepRow.expires_at < now)
            if conn.execute(statement.values(status=ABANDONED, answer={"reason": reason})).rowcount == 1:
                return None
            return _record(conn, run_id, point, step, now)

    def of_run(self, run_id: str, step: str) -> dict[str, StepRecord]:
        """Every point's record of ``step`` in a run (one query: a coordinator polls this)."""
        with self._connection(f"read the {step} steps of run {run_id}") as conn:
            now = db_now(conn)
            rows = conn.execute(select(StepRow.point, StepRow.worker, StepRow.status, StepRow.answer,
                                       StepRow.started_at, StepRow.expires_at)
                                .where(StepRow.run_id == run_id, StepRow.step == step))
            return {row.point: _from_row(row, now) for row in rows}

    def get(self, run_id: str, point: str, step: str) -> StepRecord | None:
        with self._connection(f"read step {step} of {point}") as conn:
            return _record(conn, run_id, point, step, db_now(conn))

    def _connection(self, what: str) -> AbstractContextManager[Connection]:
        return begin(self._engine, what)


def _key(run_id: str, point: str, step: str) -> tuple[Any, ...]:
    return StepRow.run_id == run_id, StepRow.point == point, StepRow.step == step


def _record(conn: Connection, run_id: str, point: str, step: str, now: datetime) -> StepRecord | None:
    row = conn.execute(select(StepRow.worker, StepRow.status, StepRow.answer, StepRow.started_at,
                              StepRow.expires_at).where(*_key(run_id, point, step))).one_or_none()
    return None if row is None else _from_row(row, now)


def _from_row(row: Any, now: datetime) -> StepRecord:
    return StepRecord(row.worker, row.status, dict(row.answer or {}), row.started_at, row.expires_at,
                      row.status == RUNNING and row.expires_at < now)
