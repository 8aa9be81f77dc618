"""Point locks of the state store: mutual exclusion between threads and processes, timeouts, expiry."""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import text

from orchestrator.model.errors import PlanError
from orchestrator.store import LockTimeout, Store
from orchestrator.store.errors import StoreError
from orchestrator.store.locks import PointLocks
from tests import store_fixtures

if TYPE_CHECKING:
    from tests.store_fixtures import Backend, LockHolderProcess

# The store fixtures, run on SQLite and on PostgreSQL.
backend = store_fixtures.backend
store = store_fixtures.store
lock_holder = store_fixtures.lock_holder


class Holder(threading.Thread):
    """Holds a point lock from another thread (its own database connection) until told to let go."""

    def __init__(self, store: Store, point: str, owner: str, **lock_args: float) -> None:
        super().__init__(daemon=True)
        self.store, self.point, self.owner, self.lock_args = store, point, owner, lock_args
        self.locked, self.release = threading.Event(), threading.Event()
        self.released_at = 0.0

    def run(self) -> None:
        with self.store.point_lock(self.point, owner=self.owner, **self.lock_args):
            self.locked.set()
            self.release.wait(10)
            self.released_at = time.monotonic()

    def __enter__(self) -> Holder:
        self.start()
        assert self.locked.wait(10), "the holder thread did not get the lock"
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release.set()
        self.join(10)


def lock_row(backend: Backend, point: str) -> tuple[str, datetime, datetime] | None:
    with backend.raw.connect() as conn:
        row = conn.execute(
            text("SELECT owner, acquired_at, expires_at FROM point_locks WHERE point = :p"), {"p": point}
        ).one_or_none()
    return None if row is None else (row[0], row[1], row[2])


def test_contending_threads_never_overlap(store: Store) -> None:
    spans: list[tuple[float, float]] = []

    def worker(n: int) -> None:
        for _ in range(2):
            with store.point_lock("sw1", owner=f"run-{n}", timeout=10):
                entered = time.monotonic()
                time.sleep(0.02)
                spans.append((entered, time.monotonic()))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(spans) == 6
    for (_, exited), (entered, _) in itertools.pairwise(sorted(spans)):
        assert entered >= exited, f"two holders of sw1 at once: {sorted(spans)}"


def test_a_waiter_gets_the_lock_when_the_holder_releases(
    backend: Backend, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    with Holder(store, "sw1", "run-A") as holder:
        threading.Timer(0.3, holder.release.set).start()
        with store.point_lock("sw1", owner="run-B", timeout=10):
            got_it = time.monotonic()
            assert lock_row(backend, "sw1")[0] == "run-B"  # type: ignore[index]
    assert got_it >= holder.released_at > 0
    assert lock_row(backend, "sw1") is None
    assert [r for r in caplog.records if r.name.startswith("orchestrator.store")] == []  # both released cleanly


def test_timeout_names_the_point_and_the_holder(store: Store) -> None:
    with Holder(store, "sw1", "20261121T153012Z-3f9a2c"):
        started = time.monotonic()
        with pytest.raises(LockTimeout) as caught, store.point_lock("sw1", owner="run-B", timeout=0.3):
            pytest.fail("the lock was granted twice")
        assert time.monotonic() - started >= 0.3
        message = str(caught.value)
        assert "'sw1'" in message and "20261121T153012Z-3f9a2c" in message and "since 20" in message
        assert isinstance(caught.value, PlanError) and caught.value.owner == "20261121T153012Z-3f9a2c"
        assert caught.value.since.tzinfo is not None and caught.value.since <= datetime.now(UTC)

        started = time.monotonic()
        with pytest.raises(LockTimeout, match="did not wait"), store.point_lock("sw1", owner="run-B", timeout=0):
            pytest.fail("the lock was granted twice")
        assert time.monotonic() - started < 0.5


def test_different_points_do_not_block_each_other(store: Store) -> None:
    with Holder(store, "sw1", "run-A"), store.point_lock("sw2", owner="run-B", timeout=0):
        pass


def test_an_expired_lock_is_taken_over(backend: Backend, store: Store) -> None:
    now = datetime.now(UTC)
    with backend.raw.begin() as conn:
        conn.execute(
            text("INSERT INTO point_locks (point, owner, acquired_at, expires_at) VALUES ('sw1', 'crashed', :a, :e)"),
            {"a": now - timedelta(hours=1), "e": now - timedelta(seconds=1)},
        )
    with store.point_lock("sw1", owner="run-B", timeout=0):
        owner, _acquired_at, _ = lock_row(backend, "sw1")  # type: ignore[misc]
        assert owner == "run-B"
    assert lock_row(backend, "sw1") is None


def test_the_lease_is_renewed_while_held(backend: Backend, store: Store) -> None:
    with store.point_lock("sw1", owner="run-A", timeout=0, ttl=0.3):
        first_expiry = lock_row(backend, "sw1")[2]  # type: ignore[index]
        time.sleep(0.6)
        with pytest.raises(LockTimeout), store.point_lock("sw1", owner="run-B", timeout=0):
            pytest.fail("a renewed lock was taken over")
        assert lock_row(backend, "sw1")[2] > first_expiry  # type: ignore[index]


def test_release_only_deletes_our_own_lock(backend: Backend, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    with store.point_lock("sw1", owner="run-A", timeout=0), backend.raw.begin() as conn:
        # as if our lease had expired and run-B had taken over
        conn.execute(text("UPDATE point_locks SET owner = 'run-B' WHERE point = 'sw1'"))
    assert lock_row(backend, "sw1")[0] == "run-B"  # type: ignore[index]
    assert "taken over before it was released" in caplog.text


def test_a_lock_held_by_another_process_blocks_this_one(
    store: Store, lock_holder: Callable[..., LockHolderProcess]
) -> None:
    other = lock_holder("sw1", "run-in-other-process")
    other.expect("locked")
    with pytest.raises(LockTimeout, match="run-in-other-process"), store.point_lock("sw1", owner="me", timeout=0.2):
        pytest.fail("the lock was granted twice")

    got: list[float] = []

    def wait_for_it() -> None:
        with store.point_lock("sw1", owner="me", timeout=15):
            got.append(time.monotonic())

    waiter = threading.Thread(target=wait_for_it)
    waiter.start()
    time.sleep(0.3)
    assert got == []  # still waiting
    other.release()
    other.expect("released")
    waiter.join(15)
    assert len(got) == 1


def test_a_crashed_process_releases_its_lock_when_the_lease_expires(
    backend: Backend, store: Store, lock_holder: Callable[..., LockHolderProcess]
) -> None:
    other = lock_holder("sw1", "run-that-crashes", ttl=0.6)
    other.expect("locked")
    other.kill()
    assert lock_row(backend, "sw1")[0] == "run-that-crashes"  # type: ignore[index]
    started = time.monotonic()
    with store.point_lock("sw1", owner="me", timeout=10):
        assert lock_row(backend, "sw1")[0] == "me"  # type: ignore[index]
    assert time.monotonic() - started < 2


def test_force_unlock_clears_a_crashed_runs_live_lease_and_audits_it(backend: Backend, store: Store) -> None:
    """A run that died holding a point keeps it for its lease (up to 15 minutes): an operator may clear it,
    with a reason that the audit trail keeps beside the former holder."""
    now = datetime.now(UTC)
    with backend.raw.begin() as conn:
        conn.execute(
            text("INSERT INTO point_locks (point, owner, acquired_at, expires_at) VALUES ('sw1', 'crashed', :a, :e)"),
            {"a": now - timedelta(minutes=1), "e": now + timedelta(minutes=14)},
        )
    with pytest.raises(LockTimeout), store.point_lock("sw1", owner="run-B", timeout=0):
        pytest.fail("a live lease was taken")
    holder = store.force_unlock("sw1", actor="alice", reason="run crashed with its host")
    assert holder is not None and holder.owner == "crashed"
    with store.point_lock("sw1", owner="run-B", timeout=0):
        assert store.lock_holder("sw1").owner == "run-B"  # type: ignore[union-attr]
    event = store.audit_events()[-1]
    assert event.event == "force-unlock" and event.actor == "alice" and event.point == "sw1"
    assert event.detail["reason"] == "run crashed with its host" and event.detail["holder"] == "crashed"
    assert store.force_unlock("sw1", actor="alice", reason="again") is None  # free: nothing recorded
    assert store.audit_events()[-1] == event


def test_force_unlock_command(tmp_path: Path) -> None:
    """The CLI: the lock of a run that is gone is released and said so; a reason is required."""
    from click.testing import CliRunner

    from orchestrator.cli.main import main
    from orchestrator.store import open_store

    url = f"sqlite:///{tmp_path}/state.db"
    store = open_store(url)
    try:
        with store.point_lock("sw9", owner="run-gone", timeout=0):
            result = CliRunner().invoke(main, ["--store", url, "--actor", "bob", "force-unlock", "sw9",
                                               "--reason", "host lost", "--json"])
            assert result.exit_code == 0, result.output
            data = json.loads(result.stdout)
            assert data["released"] is True and data["holder"]["owner"] == "run-gone"
    finally:
        store.close()
    missing = CliRunner().invoke(main, ["--store", url, "force-unlock", "sw9"])
    assert missing.exit_code == 64 and "--reason" in missing.output
    free = CliRunner().invoke(main, ["--store", url, "force-unlock", "sw9", "--reason", "x"])
    assert free.exit_code == 0 and "was not locked" in free.output


# ---------------------------------------------------------------------- a run's locks, held as one set


def test_a_lock_set_takes_many_free_points_in_one_statement_and_never_a_held_one(backend: Backend,
                                                                                 store: Store) -> None:
    now = datetime.now(UTC)
    with backend.raw.begin() as conn:
        conn.execute(
            text("INSERT INTO point_locks (point, owner, acquired_at, expires_at) VALUES ('sw9', 'crashed', :a, :e)"),
            {"a": now - timedelta(hours=1), "e": now - timedelta(seconds=1)},
        )
    points = [f"sw{i}" for i in range(1, 10)]
    with Holder(store, "sw3", "run-A"):
        with store.lock_set("run-B", ttl=30) as locks:
            statements = count_statements(backend, store)
            held = locks.take_many([*points, "sw1"])  # a point twice is taken once
            assert statements() == 1
            assert held == set(points) - {"sw3"}  # the expired lease of sw9 is taken over; sw3 is run-A's
            assert {p: lock_row(backend, p)[0] for p in points} == {  # type: ignore[index]
                p: "run-A" if p == "sw3" else "run-B" for p in points}
            assert locks.take_many(points) == held  # already held: not taken again, still held
            with pytest.raises(LockTimeout, match="'sw3' is locked by run-A"):
                locks.take("sw3", timeout=0.2)  # the one held elsewhere waits, and names its holder
            statements = count_statements(backend, store)
        assert statements() == 1  # all released in one statement
        assert all(lock_row(backend, p) is None for p in points if p != "sw3")
        assert lock_row(backend, "sw3")[0] == "run-A"  # type: ignore[index]  (never released by run-B)


def test_a_lock_set_renews_every_lease_in_one_statement_and_drops_a_lost_one(
        backend: Backend, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    with store.lock_set("run-A", ttl=30) as locks:
        locks.take_many(["sw1", "sw2"])
        locks.take("sw3", timeout=0)
        first = {p: lock_row(backend, p)[2] for p in ("sw1", "sw2", "sw3")}  # type: ignore[index]
        with backend.raw.begin() as conn:  # as if sw2's lease had run out and run-B had taken it over
            conn.execute(text("UPDATE point_locks SET owner = 'run-B' WHERE point = 'sw2'"))
        statements = count_statements(backend, store)
        assert locks.renew()  # what the renewal thread does every ttl / 3
        # one UPDATE for all three (PostgreSQL reads its clock first: one SELECT more)
        assert statements() == (2 if backend.name == "postgresql" else 1)
        assert all(lock_row(backend, p)[2] > first[p] for p in ("sw1", "sw3"))  # type: ignore[index]
        assert locks.held() == {"sw1", "sw3"}
        assert "lock on sw2 held by run-A was lost" in caplog.text
    assert lock_row(backend, "sw2")[0] == "run-B"  # type: ignore[index]  (never released by run-A)
    assert lock_row(backend, "sw1") is None and lock_row(backend, "sw3") is None


def test_a_lock_sets_thread_renews_its_leases(backend: Backend, store: Store) -> None:
    with store.lock_set("run-A", ttl=0.9) as locks:
        locks.take_many(["sw1", "sw2"])
        first = lock_row(backend, "sw1")[2]  # type: ignore[index]
        time.sleep(0.8)  # two renewal periods
        assert lock_row(backend, "sw1")[2] > first  # type: ignore[index]


def test_a_lock_set_keeps_what_a_failing_chunk_left_taken_and_releases_it(
        backend: Backend, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each chunk of a many-point take commits on its own: when a later one fails, the points the earlier ones
    took are held by the set (renewed, released at the end), not left in the table for nobody."""
    from orchestrator.store import locks as locks_module

    take = locks_module._take_statement
    calls: list[int] = []

    def second_fails(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the second chunk's statement cannot be built")
        return take(*args)

    monkeypatch.setattr(locks_module, "CHUNK", 2)
    monkeypatch.setattr(locks_module, "_take_statement", second_fails)
    with store.lock_set("run-A", ttl=30) as locks:
        with pytest.raises(RuntimeError):
            locks.take_many(["sw1", "sw2", "sw3", "sw4"])
        assert locks.held() == {"sw1", "sw2"}
        locks.take("sw1", timeout=0)  # its own: no wait
    assert all(lock_row(backend, p) is None for p in ("sw1", "sw2", "sw3", "sw4"))


def test_a_lock_set_that_cannot_release_says_so_and_lets_the_run_end(
        backend: Backend, store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    locks = store.lock_set("run-A", ttl=30)
    locks.take_many(["sw1", "sw2"])

    def unreachable(*_: Any, **__: Any) -> set[str]:
        raise StoreError("cannot release the locks of 2 points in (the store): connection refused")

    monkeypatch.setattr(PointLocks, "release_many", unreachable)
    locks.close()  # no exception: the run's end is still recorded
    assert "could not release the locks of 2 points held by run-A (their leases run out within 30 s)" in caplog.text
    assert lock_row(backend, "sw1")[0] == "run-A"  # type: ignore[index]  (left to expire)


def test_a_closed_lock_set_takes_nothing(backend: Backend, store: Store) -> None:
    locks = store.lock_set("run-A", ttl=30)
    locks.take("sw1", timeout=0)
    locks.close()
    with pytest.raises(StoreError, match="the run is ending"):
        locks.take("sw2", timeout=0)
    with pytest.raises(StoreError, match="the run is ending"):
        locks.take_many(["sw3"])
    assert all(lock_row(backend, p) is None for p in ("sw1", "sw2", "sw3"))


def test_two_runs_many_point_statements_never_deadlock(backend: Backend) -> None:
    """Run A renews 1,200 leases in a loop while run B tries to take them all in a loop, each through its own
    connection pool: the upsert, the renewal and the release lock rows in one order, so PostgreSQL never finds
    a cycle (it did before, within seconds)."""
    if backend.name != "postgresql":
        pytest.skip("SQLite locks the whole database: no row locks to order")
    a, b = backend.open(), backend.open()
    points = [f"sw{i:05d}" for i in random.sample(range(1200), 1200)]
    errors: list[str] = []
    try:
        held = a.lock_set("run-A", ttl=900)
        held.take_many(points)
        with backend.raw.begin() as conn:  # rows rewritten in random order: a scan meets them out of order
            for point in random.sample(points, len(points)):
                conn.execute(text("UPDATE point_locks SET expires_at = expires_at WHERE point = :p"), {"p": point})
        stop = time.monotonic() + 4

        def renewing() -> None:
            while time.monotonic() < stop:
                if not held.renew():
                    errors.append("renewal failed")

        def taking() -> None:
            while time.monotonic() < stop:
                try:
                    with b.lock_set("run-B", ttl=900) as other:
                        assert other.take_many(points) == set()
                except StoreError as exc:
                    errors.append(exc.message)

        threads = [threading.Thread(target=renewing), threading.Thread(target=taking)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        held.close()
        assert errors == []
        assert all(lock_row(backend, p) is None for p in points[:10])
    finally:
        a.close()
        b.close()


def count_statements(backend: Backend, store: Store) -> Callable[[], int]:
    """A counter of the statements ``store`` sends from now on (the store's own engine)."""
    from sqlalchemy import event

    engine = store._engine
    seen: list[str] = []

    def before(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE", "SELECT")):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    start = len(seen)

    def counted() -> int:
        event.remove(engine, "before_cursor_execute", before)
        return len(seen) - start
    return counted
