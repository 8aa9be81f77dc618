"""Per-enforcement-point locks shared by every process using the store: leased rows in ``point_locks``."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, Executable, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from orchestrator.store.engine import describe, mask
from orchestrator.store.errors import LockTimeout, StoreError
from orchestrator.store.models import LockRow

log = logging.getLogger(__name__)

POLL_INTERVAL = (0.05, 0.1)  # seconds between attempts, jittered so waiters do not move in lockstep
CHUNK = 500  # points per statement of the many-point operations (bounded parameter lists)
RETRY_RENEWAL = 5.0  # seconds before a failed renewal of a lock set is tried again


class Holder(NamedTuple):
    """Who holds a point lock, since when, and until when the lease runs."""

    owner: str
    acquired_at: datetime
    expires_at: datetime


class PointLocks:
    """Acquire, renew and release point locks.

    A lock is a row keyed by the point.  Acquiring is one atomic statement: insert the row, or,
    when a row exists whose lease has expired (its holder crashed), take it over.  While the lock
    is held a background thread renews the lease every ``ttl / 3`` seconds, so ``ttl`` bounds how
    long a crashed holder blocks the point, not how long the work under the lock may take.
    Lease times come from the database clock on PostgreSQL (shared by all hosts) and from the
    local clock on SQLite (one host by nature).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @contextmanager
    def hold(self, point: str, *, owner: str, timeout: float, ttl: float) -> Iterator[None]:
        """Hold the lock of ``point`` for the duration of the ``with`` block."""
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.acquire(point, owner=owner, timeout=timeout, ttl=ttl)
        lease = _Lease(self, point, owner, ttl)
        try:
            lease.start()
            yield
        finally:
            lease.stop()
            if not self.release(point, owner=owner):
                log.warning("lock on %s held by %s had been taken over before it was released", point, owner)

    def acquire(self, point: str, *, owner: str, timeout: float, ttl: float, reentrant: bool = False) -> None:
        """Take the lock of ``point``, polling until ``timeout`` seconds; raise LockTimeout otherwise.
        ``reentrant``: a live lock ``owner`` holds already counts as taken (a lock set's own row)."""
        started = time.monotonic()
        while True:
            holder = self._attempt(point, owner, ttl)
            if holder is None or (reentrant and holder.owner == owner):
                return
            waited = time.monotonic() - started
            if waited >= timeout:
                raise LockTimeout(
                    point, owner=holder.owner, since=holder.acquired_at, expires_at=holder.expires_at, timeout=timeout
                )
            time.sleep(min(random.uniform(*POLL_INTERVAL), timeout - waited))

    def release(self, point: str, *, owner: str) -> bool:
        """Delete the lock row of ``point`` if ``owner`` still holds it; whether it did."""
        statement = delete(LockRow).where(LockRow.point == point, LockRow.owner == owner)
        with self._connection("release the lock of " + point) as conn:
            return conn.execute(statement).rowcount == 1

    def renew(self, point: str, *, owner: str, ttl: float) -> bool:
        """Extend the lease of ``point`` by ``ttl`` from now if ``owner`` still holds it; whether it did."""
        with self._connection("renew the lock of " + point) as conn:
            expires_at = db_now(conn) + timedelta(seconds=ttl)
            statement = (
                update(LockRow).where(LockRow.point == point, LockRow.owner == owner).values(expires_at=expires_at)
            )
            return conn.execute(statement).rowcount == 1

    def force_release(self, point: str) -> Holder | None:
        """Delete the lock row of ``point`` whoever holds it (a crashed run's lease an operator clears); the
        holder it had, or None when it was free."""
        with self._connection("force the lock of " + point + " open") as conn:
            holder = _holder(conn, point)
            if holder is not None:
                conn.execute(delete(LockRow).where(LockRow.point == point, LockRow.owner == holder.owner))
            return holder

    def holder(self, point: str) -> Holder | None:
        """The current holder of ``point`` (expired or not), or None when it is free."""
        with self._connection("read the lock of " + point) as conn:
            return _holder(conn, point)

    def _attempt(self, point: str, owner: str, ttl: float) -> Holder | None:
        """One try: None when the lock is ours now, else who holds it."""
        while True:
            with self._connection("lock " + point) as conn:
                now = _now_in_statement(conn)  # PostgreSQL: its own clock, read by the statement itself
                if conn.execute(_take_statement(conn, point, owner, now, ttl)).first() is not None:
                    return None
                holder = _holder(conn, point)
            if holder is not None:
                return holder
            # The holder released it between our two statements: try again at once.

    def take_many(self, points: Sequence[str], *, owner: str, ttl: float,
                  taken: Callable[[set[str]], None]) -> None:
        """Take every free (or expired) lock of ``points``, without waiting: one statement per chunk, each
        committed on its own and reported to ``taken`` as soon as it is (so a failing later chunk loses nothing
        already held).  Rows are taken in code-point order of the point name — the order renewals and releases
        lock them in too, so two runs' statements never wait on each other in a cycle."""
        for chunk in _chunks(points):
            with self._connection(f"lock {len(chunk)} points") as conn:
                now = _now_in_statement(conn)
                got = {row.point for row in conn.execute(_take_statement(conn, chunk, owner, now, ttl))}
            taken(got)

    def renew_many(self, points: Sequence[str], *, owner: str, ttl: float) -> set[str]:
        """Extend by ``ttl`` the leases ``owner`` still holds among ``points`` (one statement per chunk, rows
        locked in the order :meth:`take_many` takes them); the points renewed."""
        renewed: set[str] = set()
        for chunk in _chunks(points):
            with self._connection(f"renew the locks of {len(chunk)} points") as conn:
                expires_at = db_now(conn) + timedelta(seconds=ttl)
                statement = (update(LockRow).where(LockRow.point.in_(_ours_in_order(conn, chunk, owner)))
                             .values(expires_at=expires_at).returning(LockRow.point))
                renewed |= {row.point for row in conn.execute(statement)}
        return renewed

    def release_many(self, points: Sequence[str], *, owner: str) -> set[str]:
        """Delete the lock rows of ``points`` that ``owner`` still holds (one statement per chunk, rows locked in
        the order :meth:`take_many` takes them; every chunk is tried, the first error raised after); the points
        released."""
        released: set[str] = set()
        failed: StoreError | None = None
        for chunk in _chunks(points):
            try:
                with self._connection(f"release the locks of {len(chunk)} points") as conn:
                    statement = delete(LockRow).where(LockRow.point.in_(_ours_in_order(conn, chunk, owner))) \
                        .returning(LockRow.point)
                    released |= {row.point for row in conn.execute(statement)}
            except StoreError as exc:
                failed = failed or exc
        if failed is not None:
            raise failed
        return released

    def _connection(self, what: str) -> AbstractContextManager[Connection]:
        return begin(self._engine, what)


class LockSet:
    """The point locks one owner (a run) holds, renewed together by one thread: one statement per renewal
    for all of them, however many points the run holds, instead of a thread and a statement per point.

    ``take`` waits for one point as :meth:`PointLocks.acquire` does (a live lock the owner holds already is its
    own); ``take_many`` takes the free ones of many points at once, without waiting.  A lease found lost at a
    renewal (expired and taken over) is logged and dropped; a renewal that fails is tried again soon.
    ``close`` stops the renewals and releases every lock still held; a lock taken while or after the set
    closes is released at once and the take refused, so nothing outlives the run.
    """

    def __init__(self, locks: PointLocks, owner: str, ttl: float) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self._locks, self.owner, self._ttl = locks, owner, ttl
        self._held: set[str] = set()
        self._closed = False
        self._mutex = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LockSet:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def held(self) -> frozenset[str]:
        with self._mutex:
            return frozenset(self._held)

    def holds(self, point: str) -> bool:
        with self._mutex:
            return point in self._held

    def take(self, point: str, *, timeout: float) -> None:
        """Hold the lock of ``point`` (already held: nothing to do); LockTimeout naming the holder otherwise."""
        if self.holds(point):
            return
        self._refuse_if_closed()
        self._locks.acquire(point, owner=self.owner, timeout=timeout, ttl=self._ttl, reentrant=True)
        self._add({point})

    def take_many(self, points: Sequence[str]) -> set[str]:
        """Hold the free locks of ``points`` now (one statement per chunk of them); the points held afterwards."""
        self._refuse_if_closed()
        with self._mutex:
            wanted = [p for p in points if p not in self._held]
        if wanted:
            self._locks.take_many(wanted, owner=self.owner, ttl=self._ttl, taken=self._add)
        with self._mutex:
            return {p for p in points if p in self._held}

    def _refuse_if_closed(self) -> None:
        with self._mutex:
            if self._closed:
                raise StoreError(f"the locks of {self.owner} are released (the run is ending): no point is locked "
                                 "any more")

    def _add(self, points: set[str]) -> None:
        if not points:
            return
        with self._mutex:
            closed = self._closed
            if not closed:
                self._held |= points
                if self._thread is None:
                    self._thread = threading.Thread(target=self._renewals, name=f"microseg-leases-{self.owner}",
                                                    daemon=True)
                    self._thread.start()
        if closed:  # taken while the set closed: let go at once, never left behind
            self._locks.release_many(sorted(points), owner=self.owner)
            self._refuse_if_closed()

    def _renewals(self) -> None:
        wait = self._ttl / 3
        while not self._stopping.wait(wait):
            wait = self._ttl / 3 if self.renew() else min(self._ttl / 3, RETRY_RENEWAL)

    def renew(self) -> bool:
        """Renew every lease held now, in one statement per chunk; whether the store answered (a lease found
        lost is logged and dropped)."""
        points = sorted(self.held())
        if not points:
            return True
        try:
            renewed = self._locks.renew_many(points, owner=self.owner, ttl=self._ttl)
        except StoreError as exc:
            log.warning("could not renew the locks of %d points held by %s (will retry): %s", len(points),
                        self.owner, exc)
            return False
        lost = set(points) - renewed
        for point in sorted(lost):
            log.warning("lock on %s held by %s was lost (lease expired and taken over)", point, self.owner)
        with self._mutex:
            self._held -= lost
        return True

    def close(self) -> None:
        """Stop renewing and release every lock still held (a lock taken over meanwhile is logged)."""
        with self._mutex:
            self._closed = True
            thread, self._thread = self._thread, None
        self._stopping.set()
        if thread is not None:
            thread.join()
        with self._mutex:
            points, self._held = sorted(self._held), set()
        if not points:
            return
        try:
            released = self._locks.release_many(points, owner=self.owner)
        except StoreError as exc:  # the run's end is still recorded; the leases run out by themselves
            log.warning("could not release the locks of %d points held by %s (their leases run out within %g s): "
                        "%s", len(points), self.owner, self._ttl, exc)
            return
        for point in sorted(set(points) - released):
            log.warning("lock on %s held by %s had been taken over before it was released", point, self.owner)


@contextmanager
def begin(engine: Engine, what: str) -> Iterator[Connection]:
    """One transaction on ``engine``; a database error becomes a StoreError saying what could not be done."""
    try:
        with engine.begin() as conn:
            yield conn
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot {what} in {mask(engine.url)}: {describe(exc)}") from exc


def db_now(conn: Connection) -> datetime:
    """Now, by the database clock on PostgreSQL (shared by every host), else by this host's."""
    if conn.dialect.name == "postgresql":
        moment: datetime = conn.execute(select(func.clock_timestamp())).scalar_one()
        return moment.astimezone(UTC)
    return datetime.now(UTC)


def _now_in_statement(conn: Connection) -> Any:
    """Now for a statement: the database clock as an SQL expression on PostgreSQL (no separate round trip to
    read it), this host's clock on SQLite."""
    return func.clock_timestamp() if conn.dialect.name == "postgresql" else datetime.now(UTC)


def _chunks(points: Sequence[str]) -> Iterator[list[str]]:
    """``points`` once each, in code-point order (the order every many-point statement locks rows in; a row
    twice in one upsert is an error on PostgreSQL), ``CHUNK`` at a time."""
    unique = sorted(set(points))
    for start in range(0, len(unique), CHUNK):
        yield unique[start:start + CHUNK]


def _ours_in_order(conn: Connection, points: Sequence[str], owner: str) -> Any:
    """The rows of ``points`` that ``owner`` holds, locked (PostgreSQL) in code-point order of the point — the
    order :meth:`PointLocks.take_many` inserts them in — as a subquery for an UPDATE or DELETE."""
    rows = select(LockRow.point).where(LockRow.point.in_(points), LockRow.owner == owner)
    if conn.dialect.name != "postgresql":  # SQLite locks the whole database: no order to keep
        return rows
    return rows.order_by(LockRow.point.collate("C")).with_for_update()


def _take_statement(conn: Connection, points: str | Sequence[str], owner: str, now: Any, ttl: float) -> Executable:
    """INSERT the lock rows, or take over existing rows whose lease expired before ``now``; returns a row (its
    point) for each lock taken."""
    values = [{"point": point, "owner": owner, "acquired_at": now, "expires_at": now + timedelta(seconds=ttl)}
              for point in ([points] if isinstance(points, str) else points)]
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(LockRow).values(values)
    return insert.on_conflict_do_update(
        index_elements=[LockRow.point],
        set_={name: insert.excluded[name] for name in ("owner", "acquired_at", "expires_at")},
        where=LockRow.expires_at < now,
    ).returning(LockRow.point)


def _holder(conn: Connection, point: str) -> Holder | None:
    row = conn.execute(
        select(LockRow.owner, LockRow.acquired_at, LockRow.expires_at).where(LockRow.point == point)
    ).one_or_none()
    return None if row is None else Holder(row.owner, row.acquired_at, row.expires_at)


class _Lease(threading.Thread):
    """Renews a held lock until stopped; stops by itself if the lock was lost."""

    def __init__(self, locks: PointLocks, point: str, owner: str, ttl: float) -> None:
        super().__init__(name=f"microseg-lease-{point}", daemon=True)
        self._locks = locks
        self._point = point
        self._owner = owner
        self._ttl = ttl
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.wait(self._ttl / 3):
            try:
                renewed = self._locks.renew(self._point, owner=self._owner, ttl=self._ttl)
            except StoreError as exc:
                log.warning("could not renew the lock on %s (will retry): %s", self._point, exc)
                continue
            if not renewed:
                log.warning("lock on %s held by %s was lost (lease expired and taken over)", self._point, self._owner)
                return

    def stop(self) -> None:
        self._stopping.set()
        if self.ident is not None:  # started
            self.join()
