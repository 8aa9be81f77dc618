"""Worker step records of the state store (``--executor celery``): one claim wins, answers are kept, a lease
that runs out lets the coordinator abandon the step, and an abandoned step is never run; SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import text

from orchestrator.engine.distributed import CeleryExecutor
from orchestrator.model.errors import PlanError
from orchestrator.store import Store
from tests import store_fixtures

if TYPE_CHECKING:
    from tests.store_fixtures import Backend

backend = store_fixtures.backend
store = store_fixtures.store


def new_run(store: Store) -> str:
    return store.create_run("apply", actor="alice", ticket=None, origin_host="coordinator", options={})


def test_of_many_concurrent_claims_exactly_one_wins(store: Store, backend: Backend) -> None:
    run_id = new_run(store)
    barrier = threading.Barrier(6)
    won: list[str] = []
    lost: list[str] = []

    def claim(worker: str) -> None:
        other = backend.open()  # its own engine: as separate processes would
        try:
            barrier.wait()
            taken = other.steps.claim(run_id, "sw1", "apply", worker=worker, ttl=30)
            (won if taken is None else lost).append(worker if taken is None else taken.worker)
        finally:
            other.close()

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1 and lost == [won[0]] * 5  # every loser is told who has it


def test_a_finished_step_answers_every_later_claim_and_cannot_be_abandoned(store: Store) -> None:
    run_id = new_run(store)
    steps = store.steps
    assert steps.claim(run_id, "sw1", "apply", worker="w1", ttl=30) is None
    assert steps.finish(run_id, "sw1", "apply", worker="w1", answer={"outcome": {"state": "new"}})
    again = steps.claim(run_id, "sw1", "apply", worker="w2", ttl=30)
    assert again is not None and again.status == "done" and again.answer == {"outcome": {"state": "new"}}
    kept = steps.abandon(run_id, "sw1", "apply", by="coordinator", reason="x")
    assert kept is not None and kept.status == "done"
    assert not steps.finish(run_id, "sw1", "apply", worker="w2", answer={})  # only the claimant finishes
    assert steps.of_run(run_id, "apply")["sw1"].worker == "w1"


def test_a_live_lease_is_never_abandoned_an_expired_one_is_and_its_late_answer_is_dropped(store: Store) -> None:
    run_id = new_run(store)
    steps = store.steps
    assert steps.claim(run_id, "sw1", "apply", worker="w1", ttl=0.5) is None
    with steps.leased(run_id, "sw1", "apply", worker="w1", ttl=0.5):
        time.sleep(1.2)  # renewed every ttl/3: still alive
        live = steps.abandon(run_id, "sw1", "apply", by="coordinator", reason="lost?")
        assert live is not None and live.status == "running" and not live.expired
    time.sleep(0.8)  # no renewal: the lease runs out, as when the worker is SIGKILLed
    record = steps.get(run_id, "sw1", "apply")
    assert record is not None and record.expired
    assert steps.abandon(run_id, "sw1", "apply", by="coordinator", reason="w1 lost") is None
    assert not steps.finish(run_id, "sw1", "apply", worker="w1", answer={"outcome": {}})  # too late
    assert not steps.renew(run_id, "sw1", "apply", worker="w1", ttl=5)
    late = steps.claim(run_id, "sw1", "apply", worker="w2", ttl=30)  # a redelivery: told, never run
    assert late is not None and late.status == "abandoned" and late.answer == {"reason": "w1 lost"}


def test_a_step_nobody_claimed_is_abandoned_so_a_late_worker_never_runs_it(store: Store) -> None:
    run_id = new_run(store)
    assert store.steps.abandon(run_id, "sw9", "apply", by="coordinator", reason="no worker of queue 'x'") is None
    late = store.steps.claim(run_id, "sw9", "apply", worker="w1", ttl=30)
    assert late is not None and late.status == "abandoned" and late.worker == "coordinator"
    assert store.steps.get(run_id, "sw9", "restore") is None  # steps are per (run, point, step)


def test_a_coordinator_rides_out_a_store_hiccup_but_gives_up_on_a_store_that_stays_unreadable(store: Store) -> None:
    """The coordinator polls the store for the workers' answers: a failing read is retried (the answers wait
    there), but a store that fails every poll for the queue timeout ends the wait with an error naming the run
    instead of polling for ever."""
    run_id = new_run(store)
    steps = store.steps
    assert steps.claim(run_id, "sw1", "apply", worker="w1", ttl=30) is None
    coordinator = CeleryExecutor("redis://127.0.0.1:6379/15", queue_timeout=0.5)
    records, since = coordinator._records(steps, run_id, "apply", None)
    assert records is not None and records["sw1"].worker == "w1" and since is None
    with steps._engine.begin() as conn:  # the store loses the table under the coordinator's feet
        conn.execute(text("ALTER TABLE point_steps RENAME TO point_steps_away"))
    try:
        records, since = coordinator._records(steps, run_id, "apply", None)
        assert records is None and since is not None  # a hiccup, for now: retried
        time.sleep(0.6)
        with pytest.raises(PlanError, match=rf"unreadable for 0.5 s.* apply steps of run {run_id}"):
            coordinator._records(steps, run_id, "apply", since)
    finally:
        with steps._engine.begin() as conn:
            conn.execute(text("ALTER TABLE point_steps_away RENAME TO point_steps"))
