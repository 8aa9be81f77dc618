"""The state store: runs, per-point plans, checkpoints and results, the audit trail, and point locks."""

from __future__ import annotations

import json
import secrets
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Select, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.model.redaction import redact
from orchestrator.store.engine import describe, dumps, mask
from orchestrator.store.errors import StoreError
from orchestrator.store.locks import Holder, LockSet, PointLocks, begin
from orchestrator.store.models import AuditRow, Base, CheckpointRow, PlanRow, ResultRow, RunRow
from orchestrator.store.records import RESULT_STATES, AuditEvent, PointResult, RunRecord, RunSummary
from orchestrator.store.steps import PointSteps

RUNNING = "running"


def new_run_id(now: datetime) -> str:
    """A run id that sorts by start time: ``20261121T153012Z-3f9a2c``."""
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _from_each_points_start(query: Any, since: datetime | None) -> Any:
    """``query`` over stored plans, limited to each point's last plan at or before ``since`` and its later ones (a
    point with none before: all of its plans; everything without ``since``) — a point not planned for long does
    not drag every other point's history in."""
    if since is None:
        return query
    last = (select(PlanRow.point.label("point"), func.max(PlanRow.recorded_at).label("at"))
            .where(PlanRow.recorded_at <= since).group_by(PlanRow.point).subquery())
    return query.outerjoin(last, last.c.point == PlanRow.point).where(
        or_(last.c.at.is_(None), PlanRow.recorded_at >= last.c.at))


def document(value: dict[str, Any] | None, what: str) -> dict[str, Any]:
    """``value`` as it will be stored: secrets redacted, then reduced to plain JSON types."""
    try:
        loaded: dict[str, Any] = json.loads(dumps(redact(value or {})))
    except (TypeError, ValueError) as exc:
        raise StoreError(f"cannot store {what}: {exc}") from exc
    return loaded


def applied_intended_query(point: str, limit: int) -> Select[tuple[Any]]:
    """``Store.applied_intended``'s query: by point and time on the results (index ``ix_point_results_point``),
    each run's plan of the point by its key."""
    return (select(PlanRow.plan["intended"])
            .join(ResultRow, (ResultRow.run_id == PlanRow.run_id) & (ResultRow.point == PlanRow.point))
            .where(PlanRow.point == point, ResultRow.state == "new")
            .order_by(ResultRow.updated_at.desc(), ResultRow.run_id.desc()).limit(limit))


class Store:
    """A connection to the state store.  Thread-safe: one engine, one session per call."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._locks = PointLocks(engine)
        self.steps = PointSteps(engine)  # steps run by workers (--executor celery)
        self.url_display = mask(engine.url)

    def __repr__(self) -> str:
        return f"Store({self.url_display!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- runs -------------------------------------------------------------------------------------

    def create_run(
        self, kind: str, *, actor: str, ticket: str | None, origin_host: str, options: dict[str, Any]
    ) -> str:
        """Record the start of a run; its id."""
        for _attempt in range(5):
            now = datetime.now(UTC)
            row = RunRow(
                id=new_run_id(now),
                kind=kind,
                status=RUNNING,
                actor=actor,
                ticket=ticket,
                origin_host=origin_host,
                options=document(options, "the run options"),
                summary={},
                started_at=now,
            )
            try:
                with self._session("create a run") as session:
                    session.add(row)
            except StoreError as exc:
                if isinstance(exc.__cause__, IntegrityError):
                    continue  # the same id in the same second: draw another suffix
                raise
            return row.id
        raise StoreError("could not allocate a unique run id")

    def finish_run(self, run_id: str, status: str, summary: dict[str, Any]) -> None:
        """Record the end of a run: its final status and summary."""
        stored_summary = document(summary, f"the summary of run {run_id}")
        with self._session(f"finish run {run_id}") as session:
            row = self._run_row(session, run_id)
            row.status = status
            row.summary = stored_summary
            row.finished_at = datetime.now(UTC)

    def run(self, run_id: str) -> RunRecord:
        """Everything recorded about a run, by id or unique id prefix."""
        with self._session(f"read run {run_id}") as session:
            row = self._find_run(session, run_id)
            results = session.scalars(select(ResultRow).where(ResultRow.run_id == row.id).order_by(ResultRow.point))
            events = session.scalars(select(AuditRow).where(AuditRow.run_id == row.id).order_by(AuditRow.id))
            return RunRecord(
                **_run_fields(row),
                options=row.options,
                summary=row.summary,
                results={r.point: _result(r) for r in results},
                events=tuple(_event(e) for e in events),
            )

    def point_history(self, point: str, limit: int = 50) -> list[tuple[str, str, PointResult]]:
        """``(run id, run kind, result)`` of one point across runs, newest first."""
        query = (
            select(RunRow.id, RunRow.kind, ResultRow)
            .join(ResultRow, ResultRow.run_id == RunRow.id)
            .where(ResultRow.point == point)
            .order_by(ResultRow.updated_at.desc(), RunRow.id.desc())
            .limit(limit)
        )
        with self._session(f"read the history of {point}") as session:
            return [(run_id, kind, _result(r)) for run_id, kind, r in session.execute(query)]

    def runs(self, limit: int = 20, kind: str | None = None) -> list[RunSummary]:
        """The latest runs, newest first, optionally only of one kind."""
        query = select(RunRow).order_by(RunRow.started_at.desc(), RunRow.id.desc()).limit(limit)
        if kind is not None:
            query = query.where(RunRow.kind == kind)
        with self._session("list runs") as session:
            rows = list(session.scalars(query))
            counts: dict[str, dict[str, int]] = {row.id: {} for row in rows}
            count_query = (
                select(ResultRow.run_id, ResultRow.state, func.count())
                .where(ResultRow.run_id.in_(counts))
                .group_by(ResultRow.run_id, ResultRow.state)
            )
            for run_id, state, n in session.execute(count_query):
                counts[run_id][state] = n
        return [
            RunSummary(**_run_fields(row), result_counts=dict(sorted(counts[row.id].items())))
            for row in rows
        ]

    # -- per point --------------------------------------------------------------------------------

    def record_plan(self, run_id: str, point: str, plan: dict[str, Any]) -> None:
        """Record the change plan of ``point`` in a run (once: a second plan for it is an error)."""
        self._record_once(PlanRow, "plan", run_id, {point: plan})

    def record_plans(self, run_id: str, plans: dict[str, dict[str, Any]]) -> None:
        """Record the change plans of many points of a run together (each once: a point that has a plan already
        is an error, and then none of them is recorded)."""
        self._record_once(PlanRow, "plan", run_id, plans)

    def record_checkpoint(self, run_id: str, point: str, checkpoint: dict[str, Any]) -> None:
        """Record the pre-change checkpoint of ``point`` in a run (once: the first one is the one to restore)."""
        self._record_once(CheckpointRow, "checkpoint", run_id, {point: checkpoint})

    def _record_once(self, table: type[PlanRow | CheckpointRow], what: str, run_id: str,
                     documents: dict[str, dict[str, Any]]) -> None:
        """Insert write-once rows (column ``what``) in one transaction, one statement per 500 rows (within the
        databases' limits on bound parameters): all or nothing.  No SELECT first — a point that has its row
        already is found by the conflict, a missing run by the foreign key (a coordinator writes these for every
        point of a run)."""
        if not documents:
            return
        now = datetime.now(UTC)
        rows = [{"run_id": run_id, "point": point, what: document(doc, f"the {what} of {point}"), "recorded_at": now}
                for point, doc in documents.items()]
        names = ", ".join(list(documents)[:3]) + (f" and {len(documents) - 3} more" if len(documents) > 3 else "")
        with self._point_rows(f"record the {what} of {names} in run {run_id}", run_id) as conn:
            written: set[str] = set()
            for start in range(0, len(rows), 500):
                insert = self._insert(table).values(rows[start:start + 500]).on_conflict_do_nothing()
                written |= {row.point for row in conn.execute(insert.returning(table.point))}
            if len(written) != len(rows):  # raised inside the transaction: none of the rows is kept
                raise StoreError(f"run {run_id} already has a {what} for {', '.join(sorted(set(documents) - written))}")

    def record_result(self, run_id: str, point: str, state: str, detail: dict[str, Any]) -> None:
        """Set the latest state of ``point`` in a run (replacing any earlier one)."""
        if state not in RESULT_STATES:
            raise StoreError(f"unknown point state {state!r}: expected one of {', '.join(sorted(RESULT_STATES))}")
        values = {
            "run_id": run_id,
            "point": point,
            "state": state,
            "detail": document(detail, f"the result of {point}"),
            "updated_at": datetime.now(UTC),
        }
        insert = self._insert(ResultRow).values(values)
        upsert = insert.on_conflict_do_update(
            index_elements=[ResultRow.run_id, ResultRow.point],
            set_={name: insert.excluded[name] for name in ("state", "detail", "updated_at")},
        )
        with self._point_rows(f"record the result of {point} in run {run_id}", run_id) as conn:
            conn.execute(upsert)

    def checkpoints(self, run_id: str) -> dict[str, dict[str, Any]]:
        """The checkpoints of a run, by point."""
        with self._session(f"read the checkpoints of run {run_id}") as session:
            row = self._find_run(session, run_id)
            query = select(CheckpointRow).where(CheckpointRow.run_id == row.id).order_by(CheckpointRow.point)
            return {cp.point: cp.checkpoint for cp in session.scalars(query)}

    def plan_of(self, run_id: str, point: str) -> dict[str, Any] | None:
        """The change plan of one point in a run (exact run id), or None."""
        with self._session(f"read the plan of {point} in run {run_id}") as session:
            row = session.get(PlanRow, (run_id, point))
            return None if row is None else row.plan

    def checkpoint_of(self, run_id: str, point: str) -> dict[str, Any] | None:
        """The checkpoint of one point in a run (exact run id), or None when the run took none there."""
        with self._session(f"read the checkpoint of {point} in run {run_id}") as session:
            row = session.get(CheckpointRow, (run_id, point))
            return None if row is None else row.checkpoint

    def plans(self, run_id: str) -> dict[str, dict[str, Any]]:
        """The change plans of a run, by point."""
        with self._session(f"read the plans of run {run_id}") as session:
            row = self._find_run(session, run_id)
            query = select(PlanRow).where(PlanRow.run_id == row.id).order_by(PlanRow.point)
            return {plan.point: plan.plan for plan in session.scalars(query)}

    def applied_intended(self, point: str, limit: int = 3) -> list[dict[str, Any]]:
        """The intended rulesets (as stored, with provenance) the point's ``limit`` latest successful changes put
        in place (runs where it ended ``new``), newest first: what microseg last made it enforce, and why.  Plans
        that changed nothing (plan, drift) do not count: they store the intent of their own day."""
        with self._session(f"read the rules microseg last put on {point}") as session:
            return [intended for (intended,) in session.execute(applied_intended_query(point, limit))
                    if isinstance(intended, dict)]

    def hit_samples(self, since: datetime | None = None) -> list[tuple[datetime, str, dict[str, int], str]]:
        """(when, point, packets per policy rule, counter epoch) of every stored point plan that read counters
        (plan, drift, reconcile and apply runs record them), oldest first; ``since``: only those recorded from
        then on."""
        query = select(PlanRow.recorded_at, PlanRow.point, PlanRow.plan).order_by(PlanRow.recorded_at, PlanRow.point)
        if since is not None:
            query = query.where(PlanRow.recorded_at >= since)
        with self._session("read the rule hit counters") as session:
            rows = list(session.execute(query))
        out: list[tuple[datetime, str, dict[str, int], str]] = []
        for at, point, plan in rows:
            hits = plan.get("hits") if isinstance(plan, dict) else None
            if isinstance(hits, dict) and hits:
                counts = {str(k): int(v) for k, v in hits.items() if isinstance(v, int)}
                out.append((at, point, counts, str(plan.get("hits_epoch") or "")))
        return out

    def log_name_samples(self, since: datetime | None = None) -> list[tuple[datetime, str, dict[str, tuple[str, ...]],
                                                                          bool]]:
        """(when, point, flow-log rule name -> policy rules, settled) of every stored point plan whose point's flow
        logs name rules (Azure NSGs, GCP firewall rules), oldest first: what each name meant when it was read, and
        whether that plan changed nothing.  ``since``: only from each point's last plan at or before then on."""
        out: list[tuple[datetime, str, dict[str, tuple[str, ...]], bool]] = []
        for at, point, plan, settled in self._plan_samples(since, "flow-log rule names"):
            names = plan.get("log_names")
            if isinstance(names, dict) and names:
                out.append((at, point, {str(k): tuple(str(r) for r in v) for k, v in names.items()
                                        if isinstance(v, list)}, settled))
        return out

    def observer_samples(self, interfaces: Collection[str], since: datetime | None = None,
                         ) -> list[tuple[datetime, str, dict[str, tuple[str, ...]] | None, dict[str, Any],
                                         dict[str, Any] | None, bool]]:
        """(when, point, logging interface -> its addresses, intended ruleset as stored, the stored diff where the
        plan had changes, settled) of every stored plan of each point whose flow logs name no rule but the
        interface (AWS: the ENIs carrying the owned group) and that listed one of ``interfaces`` at some time,
        oldest first — those listing none too (the group was detached), and those of a release that recorded no
        interfaces (None).  Only those points' plans are read whole.  ``since``: from each point's last plan at
        or before then on."""
        wanted = set(interfaces)
        if not wanted:
            return []
        query = _from_each_points_start(select(PlanRow.point, PlanRow.plan["log_observers"]), since)
        with self._session("read the flow-logging interfaces of the stored plans") as session:
            rows = list(session.execute(query))  # small: no plan is read whole here
        points = sorted({point for point, observers in rows if isinstance(observers, dict) and wanted & set(observers)})
        if not points:
            return []
        out: list[tuple[datetime, str, dict[str, tuple[str, ...]] | None, dict[str, Any], dict[str, Any] | None,
                        bool]] = []
        last: dict[str, dict[str, Any]] = {}  # per point its previous intended rules: one object while unchanged
        for at, point, plan, settled in self._plan_samples(since, "the stored rules of flow-logging interfaces",
                                                           points):
            observers, intended, diff = plan.get("log_observers"), plan.get("intended"), plan.get("diff")
            if not isinstance(intended, dict):
                continue
            if last.get(point) == intended:
                intended = last[point]  # drift runs repeat the same rules: keep them once
            last[point] = intended
            out.append((at, point, {str(k): tuple(str(a) for a in v) for k, v in observers.items()
                                    if isinstance(v, list)} if isinstance(observers, dict) else None,
                        intended, None if settled or not isinstance(diff, dict) else diff, settled))
        return out

    def _plan_samples(self, since: datetime | None, what: str, points: Collection[str] | None = None,
                      ) -> Iterator[tuple[datetime, str, dict[str, Any], bool]]:
        """(when, point, stored plan, settled: it planned no change) oldest first, from each point's last plan at
        or before ``since`` on (all without); only of ``points`` when given.  Streamed within one read: consume
        it at once."""
        query = _from_each_points_start(select(PlanRow.recorded_at, PlanRow.point, PlanRow.plan), since
                                        ).order_by(PlanRow.recorded_at, PlanRow.point, PlanRow.run_id)  # one order
        if points is not None:
            query = query.where(PlanRow.point.in_(sorted(points)))
        with self._session(f"read {what}") as session:  # streamed: the caller keeps what it needs of each
            for at, point, plan in session.execute(query.execution_options(yield_per=200)):
                if isinstance(plan, dict):
                    diff = plan.get("diff")
                    changes = isinstance(diff, dict) and any(diff.get(key) for key in ("added", "removed", "moved",
                                                                                       "settings"))
                    yield at, point, plan, not changes

    # -- audit ------------------------------------------------------------------------------------

    def audit(
        self,
        event: str,
        *,
        actor: str,
        run_id: str | None = None,
        point: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Append an event to the audit trail."""
        row = AuditRow(
            at=datetime.now(UTC),
            event=event,
            actor=actor,
            run_id=run_id,
            point=point,
            detail=document(detail, f"audit event {event}"),
        )
        with self._session(f"record audit event {event}") as session:
            if run_id is not None:
                self._run_row(session, run_id)
            session.add(row)

    def audit_events(self, run_id: str | None = None, limit: int = 100) -> list[AuditEvent]:
        """The latest ``limit`` audit events (of one run, or all), oldest first."""
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if run_id is not None:
            query = query.where(AuditRow.run_id == run_id)
        with self._session("read the audit trail") as session:
            return [_event(row) for row in reversed(list(session.scalars(query)))]

    # -- locks and lifetime -----------------------------------------------------------------------

    @contextmanager
    def point_lock(self, point: str, *, owner: str, timeout: float = 30.0, ttl: float = 900.0) -> Iterator[None]:
        """Hold the lock of ``point`` (shared by all processes on this store) for a ``with`` block.

        Waits up to ``timeout`` seconds (0: do not wait) and raises LockTimeout naming the holder.
        The lease is renewed while held; ``ttl`` is how long a crashed holder keeps others out.
        """
        with self._locks.hold(point, owner=owner, timeout=timeout, ttl=ttl):
            yield

    def lock_set(self, owner: str, *, ttl: float = 900.0) -> LockSet:
        """The point locks ``owner`` (a run) will hold, taken one by one or many at once and renewed together
        (one statement per renewal for all of them); close it (or leave its ``with`` block) to release them."""
        return LockSet(self._locks, owner, ttl)

    def lock_holder(self, point: str) -> Holder | None:
        """Who holds the lock of ``point`` (an expired lease included), or None."""
        return self._locks.holder(point)

    def force_unlock(self, point: str, *, actor: str, reason: str) -> Holder | None:
        """Clear the lock of ``point`` whoever holds it, recorded in the audit trail with ``reason``; the former
        holder, or None when the point was not locked (nothing recorded then)."""
        holder = self._locks.force_release(point)
        if holder is not None:
            self.audit("force-unlock", actor=actor, point=point, detail={
                "reason": reason, "holder": holder.owner, "acquired_at": holder.acquired_at.isoformat(),
                "expires_at": holder.expires_at.isoformat()})
        return holder

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    # -- helpers ----------------------------------------------------------------------------------

    @contextmanager
    def _session(self, what: str) -> Iterator[Session]:
        try:
            with self._sessions.begin() as session:
                yield session
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot {what} in {self.url_display}: {describe(exc)}") from exc

    def _insert(self, table: type[Base]) -> Any:
        """The dialect's INSERT (ON CONFLICT clauses are dialect-specific)."""
        return (postgresql.insert if self._engine.dialect.name == "postgresql" else sqlite.insert)(table)

    @contextmanager
    def _point_rows(self, what: str, run_id: str) -> Iterator[Connection]:
        """One transaction writing a run's point rows; a row whose run does not exist is refused by the
        foreign key, and said so."""
        try:
            with begin(self._engine, what) as conn:  # database errors mapped as everywhere in the store
                yield conn
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError) and _foreign_key_violation(exc.__cause__):
                raise StoreError(f"no run {run_id!r} in {self.url_display}") from exc.__cause__
            raise

    def _run_row(self, session: Session, run_id: str) -> RunRow:
        row = session.get(RunRow, run_id)
        if row is None:
            raise StoreError(f"no run {run_id!r} in {self.url_display}")
        return row

    def _find_run(self, session: Session, id_or_prefix: str) -> RunRow:
        exact = session.get(RunRow, id_or_prefix)
        if exact is not None:
            return exact
        if not id_or_prefix:
            raise StoreError("empty run id")
        pattern = id_or_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = select(RunRow).where(RunRow.id.like(pattern, escape="\\")).order_by(RunRow.id).limit(6)
        matches = list(session.scalars(query))
        if not matches:
            raise StoreError(f"no run {id_or_prefix!r} in {self.url_display}")
        if len(matches) > 1:
            listed = ", ".join(m.id for m in matches[:5]) + (", …" if len(matches) > 5 else "")
            raise StoreError(f"run id prefix {id_or_prefix!r} is ambiguous: {listed}")
        return matches[0]


def _event(row: AuditRow) -> AuditEvent:
    return AuditEvent(
        id=row.id, at=row.at, event=row.event, actor=row.actor, run_id=row.run_id, point=row.point, detail=row.detail
    )


def _run_fields(row: RunRow) -> dict[str, Any]:
    """The columns a run summary and a run record share."""
    return {"id": row.id, "kind": row.kind, "status": row.status, "actor": row.actor, "ticket": row.ticket,
            "origin_host": row.origin_host, "started_at": row.started_at, "finished_at": row.finished_at}


def _result(row: ResultRow) -> PointResult:
    return PointResult(row.point, row.state, row.detail, row.updated_at)


def _foreign_key_violation(exc: IntegrityError) -> bool:
    """PostgreSQL's SQLSTATE 23503, SQLite's "FOREIGN KEY constraint failed"."""
    return getattr(exc.orig, "sqlstate", None) == "23503" or "FOREIGN KEY constraint failed" in str(exc.orig)
