"""Change requests as policy (the effective policy), their store tables on SQLite and PostgreSQL, job slots."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import text

from orchestrator.api.scheduler import Job, Scheduler
from orchestrator.cli.main import main
from orchestrator.engine.changes import ChangeSpec, PendingChange, effective_policy, load_effective_project, stamp
from orchestrator.engine.cron import latest_slot
from orchestrator.model.errors import MicrosegError, PolicyError
from orchestrator.store import ServiceStore, has_applied_changes, open_service_store
from tests.conftest import REPO
from tests.store_fixtures import Backend, backend  # noqa: F401  (module-scoped fixture: SQLite and PostgreSQL)

TODAY = date(2026, 11, 21)
RULE = {"name": "chg-1-dev-api", "from": "web-dev", "to": "app-prod", "services": ["shop-api"],
        "action": "allow", "priority": 50}


@pytest.fixture
def service_store(backend: Backend) -> Iterator[ServiceStore]:  # noqa: F811
    store = open_service_store(backend.url, schema=backend.schema)
    try:
        yield store
    finally:
        store.close()
        with backend.raw.begin() as conn:
            for table in ("change_requests", "api_tokens", "job_slots", "audit_events", "point_results", "runs"):
                conn.execute(text(f"DELETE FROM {table}"))


def applied(store: ServiceStore, ticket: str, change: dict[str, Any]) -> str:
    record = store.create_change(ticket=ticket, requester="alice", submitted_by="alice", source="api",
                                 status="applied", change=change, plan={}, origin={}, detail={})
    return record.id


# ------------------------------------------------------------------------------ the effective policy


def test_the_effective_policy_is_the_directory_plus_applied_changes(service_store: ServiceStore) -> None:
    applied(service_store, "CHG-1", stamp(ChangeSpec(add=[RULE], remove=["admin-ssh"]), "CHG-1"))
    service_store.create_change(ticket="CHG-2", requester="a", submitted_by="a", source="api", status="planned",
                                change={"add": [{**RULE, "name": "not-yet"}], "remove": []}, plan={}, origin={},
                                detail={})
    service_store.create_change(ticket="CHG-3", requester="a", submitted_by="a", source="api", status="expired",
                                change={"add": [{**RULE, "name": "gone"}], "remove": []}, plan={}, origin={},
                                detail={})
    with effective_policy(REPO / "policies", service_store) as directory:
        names = {p.name for p in directory.iterdir()}
        change_files = [n for n in names if n.startswith("zz-change-")]
        assert len(change_files) == 1 and names - set(change_files) == {p.name for p in (REPO / "policies").iterdir()}
        platform = yaml.safe_load((directory / "platform.yaml").read_text())
        assert "admin-ssh" not in [r["name"] for r in platform["rules"]] and len(platform["rules"]) == 4
        assert (directory / "shop.yaml").read_bytes() == (REPO / "policies" / "shop.yaml").read_bytes()
    assert not directory.exists()
    project = load_effective_project(REPO / "policies", REPO / "inventory", today=TODAY, store=service_store)
    rules = {r.name: r for r in project.loaded.policy.rules}
    assert "chg-1-dev-api" in rules and rules["chg-1-dev-api"].ticket == "CHG-1"
    assert not {"admin-ssh", "not-yet", "gone"} & set(rules)
    where = project.loaded.sources.locate("rule", "chg-1-dev-api")
    assert where is not None and where.file.startswith("change request cr-") and where.file.endswith("add[0]")
    assert project.loaded.sources.locate("rule", "dns").file == str(REPO / "policies" / "platform.yaml")


def test_a_later_change_may_remove_an_earlier_ones_rule(service_store: ServiceStore) -> None:
    applied(service_store, "CHG-1", {"add": [RULE], "remove": []})
    later = PendingChange("new", {"add": [], "remove": ["chg-1-dev-api"]})
    project = load_effective_project(REPO / "policies", REPO / "inventory", today=TODAY, store=service_store,
                                     extra=[later])
    assert "chg-1-dev-api" not in {r.name for r in project.loaded.policy.rules}


def test_errors_name_the_policy_file_or_the_requests_rule(tmp_path: Path) -> None:
    policy = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policy)
    broken = policy / "edge.yaml"
    broken.write_text(broken.read_text().replace("to: web-prod", "to: web-prd"))
    change = PendingChange("new", {"add": [RULE, {**RULE, "name": "b", "services": ["shop-apy"]}], "remove": []})
    with pytest.raises(PolicyError) as caught:
        load_effective_project(policy, REPO / "inventory", today=TODAY, store=None, extra=[change])
    where = [(d.location.file if d.location else None, d.message) for d in caught.value.diagnostics]
    assert where == [(str(broken), "unknown group 'web-prd'"), ("add[1]", "unknown service 'shop-apy'")]
    assert "microseg-effective" not in str(caught.value)


def test_a_change_must_carry_its_own_ticket_and_change_something() -> None:
    with pytest.raises(PolicyError, match="request's ticket"):
        stamp(ChangeSpec(add=[{**RULE, "ticket": "CHG-2"}]), "CHG-1")
    assert stamp(ChangeSpec(add=[RULE]), "CHG-1")["add"][0]["ticket"] == "CHG-1"
    with pytest.raises(ValueError, match="rules to add or rules to remove"):
        ChangeSpec()


def test_cli_runs_keep_applied_ticket_rules(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    args = ["--policy", str(REPO / "policies"), "--inventory", str(REPO / "inventory"), "--today", "2026-11-21",
            "--store", url, "compile", "--json", "-t", "app-prod-01"]

    def ticket_rules() -> list[str]:
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        compiled = json.loads(result.stdout)
        return sorted({n for p in compiled["points"].values() for r in p["ruleset"]["rules"]
                       for n in r["provenance"]["rules"] if n.startswith("chg-")})

    assert ticket_rules() == []
    with open_service_store(url) as store:
        applied(store, "CHG-1", stamp(ChangeSpec(add=[RULE]), "CHG-1"))
    assert has_applied_changes(url)
    assert ticket_rules() == ["chg-1-dev-api"]
    missing = tmp_path / "nowhere" / "state.db"
    assert not has_applied_changes(f"sqlite:///{missing}") and not missing.parent.exists()


# ------------------------------------------------------------------------------ the store tables


def test_change_requests_round_trip_and_guarded_updates(service_store: ServiceStore) -> None:
    record = service_store.create_change(ticket="CHG-1", requester="alice", submitted_by="jira-bot", source="jira",
                                         status="planned", change={"add": [RULE], "remove": []},
                                         plan={"points": {"app-prod-01": {}}}, origin={"system": "jira"},
                                         detail={"digest": "d"}, run_ids=["r1"])
    assert service_store.change(record.id) == record
    approved = service_store.update_change(record.id, expect={"planned"}, status="approved", approver="bob",
                                           approved_at=datetime.now(UTC))
    assert approved is not None and approved.status == "approved" and approved.run_ids == ("r1",)
    assert service_store.update_change(record.id, expect={"planned"}, status="approved", approver="eve") is None
    assert service_store.change(record.id).approver == "bob"
    assert [r.id for r in service_store.changes(["approved"], ticket="CHG-1")] == [record.id]
    assert service_store.changes(["planned"]) == []
    with pytest.raises(MicrosegError, match="cannot be set"):
        service_store.update_change(record.id, requester="mallory")
    with pytest.raises(MicrosegError, match="no change request"):
        service_store.change("cr-nope")


def test_tokens_are_kept_as_salted_digests(service_store: ServiceStore, backend: Backend) -> None:  # noqa: F811
    first, token = service_store.add_token("alice", "requester")
    _, other = service_store.add_token("alice", "requester")
    found = service_store.verify_token(token)
    assert found is not None and found.id == first.id and found.name == "alice"
    secret = token.split("_", 2)[2]
    with backend.raw.connect() as conn:
        rows = [tuple(r) for r in conn.execute(text("SELECT * FROM api_tokens"))]
    assert secret not in repr(rows)
    assert len({r[3] for r in rows}) == 2  # a salt per token
    for forged in (token + "x", token.replace("mst_", "xxx_"), "mst_" + first.id, "", "mst__", other[:-1]):
        assert service_store.verify_token(forged) is None
    assert service_store.revoke_token(first.id) == 1
    assert service_store.verify_token(token) is None and service_store.verify_token(other) is not None
    assert service_store.revoke_token("alice") == 1 and service_store.verify_token(other) is None


def test_only_one_of_many_concurrent_claims_of_a_slot_wins(backend: Backend) -> None:  # noqa: F811
    stores = [open_service_store(backend.url, schema=backend.schema) for _ in range(4)]
    slot = datetime(2026, 11, 21, 10, 15, tzinfo=UTC)
    barrier = threading.Barrier(len(stores))
    wins: list[bool] = [False] * len(stores)

    def claim(index: int) -> None:
        barrier.wait()
        wins[index] = stores[index].claim_slot("reconcile", slot, f"instance-{index}")

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert sum(wins) == 1
        (row,) = stores[0].slots("reconcile")
        assert row.instance == f"instance-{wins.index(True)}" and row.status == "running"
        assert stores[1].claim_slot("reconcile", slot + timedelta(minutes=15), "instance-1")
    finally:
        with backend.raw.begin() as conn:
            conn.execute(text("DELETE FROM job_slots"))
        for store in stores:
            store.close()


# ------------------------------------------------------------------------------ the scheduler


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_the_scheduler_runs_each_slot_once_and_never_replays_missed_ones(service_store: ServiceStore) -> None:
    clock = Clock(datetime(2026, 11, 21, 10, 7, 30, tzinfo=UTC))
    calls: list[str] = []

    def boom() -> dict[str, Any]:
        raise PolicyError("the policy is broken")

    jobs = [Job("count", "*/5 * * * *", lambda: calls.append("x") or {"n": len(calls)}),
            Job("boom", "* * * * *", boom)]
    scheduler = Scheduler(service_store, jobs, instance="a", clock=clock)
    assert scheduler.tick() == []  # 10:05 and 10:07 fired before it started
    clock.now = datetime(2026, 11, 21, 10, 10, 0, tzinfo=UTC)
    outcomes = {o.job: o for o in scheduler.tick()}
    assert outcomes["count"].status == "done" and outcomes["boom"].status == "failed"
    assert scheduler.tick() == [] and calls == ["x"]
    clock.now += timedelta(minutes=5, seconds=20)
    assert [o.job for o in scheduler.tick()] == ["count", "boom"] and calls == ["x", "x"]
    slots = {(s.job, s.slot.minute): s for s in service_store.slots()}
    assert slots[("boom", 10)].detail == {"error": "the policy is broken"} and slots[("count", 15)].detail == {"n": 2}
    other = Scheduler(service_store, jobs, instance="b", clock=clock)
    other.started = clock.now - timedelta(hours=1)
    assert {o.status for o in other.tick()} == {"taken"} and calls == ["x", "x"]


def test_cron_slots_honour_the_time_zone_and_seconds() -> None:
    now = datetime(2026, 11, 21, 1, 30, tzinfo=UTC)  # 02:30 in Berlin
    assert latest_slot("0 2 * * *", now, "Europe/Berlin") == datetime(2026, 11, 21, 1, 0, tzinfo=UTC)
    assert latest_slot("*/15 * * * *", datetime(2026, 11, 21, 10, 15, tzinfo=UTC)).minute == 15
    assert latest_slot("* * * * * */5", datetime(2026, 11, 21, 10, 7, 8, tzinfo=UTC)).second == 5
