"""The engine against the lab: real nftables in namespaces, reached over real SSH, proven with real TCP."""

from __future__ import annotations

import json
import shutil
import threading
import time
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli.main import main
from orchestrator.engine.engine import Actor, Engine, EngineOptions
from orchestrator.engine.plan import GuardSettings
from orchestrator.engine.project import load_project
from orchestrator.engine.retry import RetryPolicy
from orchestrator.engine.rollback import rollback_run
from orchestrator.engine.transaction import ApplyOptions, OnFailure, apply_plan
from orchestrator.inventory.inventory import load_nornir_inventory
from orchestrator.store import StoreError, open_store
from tests.conftest import REPO
from tests.labkit import DROP, FAIL, LINUX_POINTS, LabFixture, module_lab, on_nft_f, store_url

__all__ = ["store_url"]  # a fixture, used by name
from tests.store_fixtures import POSTGRES_URL

TODAY = date(2026, 11, 21)
# in inventory order (the order Nornir runs them with one worker): point 3 of 5 is app-prod-01
FIVE = ("web-prod-01", "web-prod-02", "app-prod-01", "db-prod-01", "db-prod-02")

# (source host, destination address, port, allowed by the worked example)
FLOWS = [
    ("internet", "10.20.1.11", 443, True),
    ("internet", "fd00:20:1::11", 443, True),
    ("web-prod-01", "10.20.2.11", 8443, True),
    ("app-prod-01", "10.20.3.11", 5432, True),
    ("jump-01", "10.20.3.11", 22, True),
    ("web-dev-01", "10.20.1.11", 443, False),
    ("web-prod-01", "10.20.3.11", 5432, False),
    ("internet", "10.20.3.11", 5432, False),
    ("app-prod-01", "10.20.1.11", 80, False),
]


testlab, lab = module_lab("enginelab")


def engine(lab: LabFixture, store_url: str, *, policy: Path = REPO / "policies", schema: str | None = None,
           workers: int = 6, guards: GuardSettings | None = None, lock_timeout: float = 30.0) -> Engine:
    project = load_project(policy, lab.inventory, today=TODAY)
    options = EngineOptions(workers=workers, retry=RetryPolicy(attempts=3, base=0.05),
                            guards=guards or GuardSettings(), lock_timeout=lock_timeout)
    store = open_store(store_url, schema=schema)
    return Engine(project, load_nornir_inventory(lab.inventory), store, Actor("tester", "CHG-1"), options,
                  owns_store=True)


def flows_as(lab: LabFixture, expect_policy: bool) -> list[str]:
    """The flows whose real TCP result differs from the expectation (empty = all as expected)."""
    results = lab.lab.probe_many([(s, d, p) for s, d, p, _ in FLOWS], timeout=1.0)
    return [f"{s}->{d}:{p} {'connected' if r.ok else r.detail}" for (s, d, p, allowed), r in zip(FLOWS, results,
            strict=True) if r.ok != (allowed if expect_policy else True)]


def cli(lab: LabFixture, store_url: str, *args: str, policy: Path = REPO / "policies") -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--policy", str(policy), "--inventory", str(lab.inventory), "--today",
                                       TODAY.isoformat(), "--store", store_url, "--actor", "tester", *args])
    return result.exit_code, (result.stdout if "--json" in args else result.output)


def test_apply_the_worked_example_and_prove_it_with_real_tcp(lab: LabFixture, store_url: str) -> None:
    assert flows_as(lab, expect_policy=False) == []  # no firewall yet: everything connects
    with engine(lab, store_url) as eng:
        plan = eng.plan(LINUX_POINTS)
        assert not plan.failures and {p.point for p in plan.changes} == set(LINUX_POINTS)
        assert all(p.flows.denied_total > 0 for p in plan.changes)
        result = apply_plan(eng, plan, ApplyOptions(), {})
        assert result.status == "ok" and result.by_state() == {"new": sorted(LINUX_POINTS)}
        assert flows_as(lab, expect_policy=True) == []
        twin = eng.plan(LINUX_POINTS)
        assert twin.changes == [] and not twin.failures  # idempotency twin
        record = eng.store.run(result.run_id)
        assert record.status == "ok" and set(eng.store.checkpoints(result.run_id)) == set(LINUX_POINTS)
        assert {e.event for e in record.events} >= {"apply.start", "point.applied", "apply.finish"}


def test_drift_is_reported_and_repaired_and_other_tables_are_untouched(lab: LabFixture, store_url: str) -> None:
    code, out = cli(lab, store_url, "apply", "--auto-approve", "-t", "db-prod-01")
    assert code == 0, out
    code, out = cli(lab, store_url, "drift", "-t", "db-prod-01")
    assert code == 0, out
    lab.nft("db-prod-01", "insert rule inet microseg ingress ip saddr 10.30.1.11 tcp dport 5432 accept")
    lab.nft("db-prod-01", "add table inet scratch")
    lab.nft("db-prod-01", "add chain inet scratch input '{ type filter hook input priority 10; }'")
    lab.nft("db-prod-01", "add rule inet scratch input tcp dport 9999 counter")
    assert lab.lab.probe("web-dev-01", "10.20.3.11", 5432).ok  # the hotfix opened a hole
    code, out = cli(lab, store_url, "drift", "--json", "-t", "db-prod-01")
    assert code == 2, out
    report = json.loads(out)
    removed = report["points"]["db-prod-01"]["diff"]["removed"]
    assert [r["src"] for r in removed] == [["10.30.1.11/32"]]
    assert any(u["name"].endswith("scratch") for u in report["points"]["db-prod-01"]["unmanaged"])
    code, out = cli(lab, store_url, "apply", "--auto-approve", "-t", "db-prod-01")
    assert code == 0, out
    assert not lab.lab.probe("web-dev-01", "10.20.3.11", 5432).ok
    assert "tcp dport 9999" in lab.nft("db-prod-01", "list table inet scratch")
    assert cli(lab, store_url, "drift", "-t", "db-prod-01")[0] == 0


@pytest.mark.parametrize("fault", ["nft-fails", "session-drops"])
def test_failure_on_point_3_of_5_rolls_back_points_1_and_2(lab: LabFixture, store_url: str, fault: str) -> None:
    lab.inject("app-prod-01", on_nft_f(FAIL if fault == "nft-fails" else DROP))
    with engine(lab, store_url, workers=1) as eng:
        plan = eng.plan(FIVE)
        result = apply_plan(eng, plan, ApplyOptions(OnFailure.ROLLBACK_ALL), {})
        states = result.by_state()
        assert states == {"restored": ["web-prod-01", "web-prod-02"], "unchanged": ["app-prod-01"],
                          "skipped": ["db-prod-01", "db-prod-02"]}, result.to_dict()
        assert result.status == "failed"
        assert "app-prod-01" in (result.outcomes["app-prod-01"].error or "")
        for name in FIVE:
            assert not lab.has_table(name), f"{name} still has the microseg table"
        record = eng.store.run(result.run_id)
        assert {n: r.state for n, r in record.results.items()} == {
            "web-prod-01": "restored", "web-prod-02": "restored", "app-prod-01": "unchanged",
            "db-prod-01": "skipped", "db-prod-02": "skipped"}
        assert sum(e.event == "point.restored" for e in record.events) == 2
        assert sum(e.event == "point.unchanged" for e in record.events) == 1
    assert flows_as(lab, expect_policy=False) == []


def test_failure_during_rollback_says_unknown_loudly(lab: LabFixture, store_url: str) -> None:
    lab.inject("app-prod-01", on_nft_f(FAIL))
    # the 1st `nft -f` loads conntrack, the 2nd is the change, the 3rd — the rollback — fails
    lab.inject("web-prod-02", on_nft_f(FAIL, times="3"))
    with engine(lab, store_url, workers=1) as eng:
        result = apply_plan(eng, eng.plan(FIVE), ApplyOptions(), {})
    assert result.status == "unknown"
    outcome = result.outcomes["web-prod-02"]
    assert outcome.state.value == "unknown" and "ROLLBACK FAILED" in (outcome.rollback_error or "")
    assert result.outcomes["web-prod-01"].state.value == "restored"
    assert result.outcomes["app-prod-01"].state.value == "unchanged"


def test_rollback_failed_keeps_the_others_and_stop_starts_no_more(lab: LabFixture, store_url: str) -> None:
    lab.inject("app-prod-01", on_nft_f(FAIL))
    with engine(lab, store_url, workers=1) as eng:
        result = apply_plan(eng, eng.plan(FIVE), ApplyOptions(OnFailure.ROLLBACK_FAILED), {})
        assert result.by_state() == {"new": ["db-prod-01", "db-prod-02", "web-prod-01", "web-prod-02"],
                                     "unchanged": ["app-prod-01"]}
        assert result.status == "partial"
    lab.reset()
    lab.inject("app-prod-01", on_nft_f(FAIL))
    with engine(lab, store_url, workers=1) as eng:
        stopped = apply_plan(eng, eng.plan(FIVE), ApplyOptions(OnFailure.STOP), {})
        assert stopped.by_state() == {"new": ["web-prod-01", "web-prod-02"], "unchanged": ["app-prod-01"],
                                      "skipped": ["db-prod-01", "db-prod-02"]}


def test_canary_goes_first_and_a_failing_canary_stops_the_rest(lab: LabFixture, store_url: str) -> None:
    lab.inject("web-prod-01", on_nft_f(FAIL))
    with engine(lab, store_url) as eng:
        result = apply_plan(eng, eng.plan(FIVE), ApplyOptions(canary=1, batch_size=2), {})
    assert result.by_state() == {"unchanged": ["web-prod-01"],
                                 "skipped": ["app-prod-01", "db-prod-01", "db-prod-02", "web-prod-02"]}


def test_stale_plan_is_refused_and_nothing_changes(lab: LabFixture, store_url: str, tmp_path: Path) -> None:
    saved = tmp_path / "plan.json"
    code, out = cli(lab, store_url, "plan", "-o", str(saved))
    assert code == 0, out
    lab.nft("web-prod-02", "add table inet microseg")  # somebody touched web-prod-02 since
    code, out = cli(lab, store_url, "apply", "--plan", str(saved), "--auto-approve")
    assert code == 1 and "stale plan" in out and "web-prod-02" in out
    assert not any(lab.has_table(n) for n in LINUX_POINTS if n != "web-prod-02")
    code, out = cli(lab, store_url, "history", "--json")
    assert [r["status"] for r in json.loads(out)["runs"]][:2] == ["refused", "drift"]


def test_saved_plan_applies_then_rollback_by_run_id(lab: LabFixture, store_url: str, tmp_path: Path) -> None:
    saved = tmp_path / "plan.json"
    assert cli(lab, store_url, "plan", "-o", str(saved), "-t", "web-prod-01", "-t", "app-prod-01")[0] == 0
    code, out = cli(lab, store_url, "apply", "--plan", str(saved), "--auto-approve", "--json")
    assert code == 0, out
    run_id = json.loads(out)["run_id"]
    assert lab.has_table("web-prod-01") and lab.has_table("app-prod-01")
    code, out = cli(lab, store_url, "show", run_id[:-2], "--json")  # a unique prefix
    assert code == 0 and json.loads(out)["run"]["id"] == run_id
    code, out = cli(lab, store_url, "rollback", run_id, "--auto-approve", "--json")
    assert code == 0, out
    assert json.loads(out)["states"] == {"restored": ["app-prod-01", "web-prod-01"]}
    assert not lab.has_table("web-prod-01") and not lab.has_table("app-prod-01")


def _policy_copy(tmp_path: Path, drop: tuple[str, ...] = (), drop_rules: tuple[str, ...] = ()) -> Path:
    import yaml

    target = tmp_path / "policies"
    shutil.copytree(REPO / "policies", target)
    for name in drop:
        (target / name).unlink()
    for path in target.glob("*.yaml"):
        data = yaml.safe_load(path.read_text())
        if data.get("rules"):
            data["rules"] = [r for r in data["rules"] if r["name"] not in drop_rules]
            path.write_text(yaml.safe_dump(data, sort_keys=False))
    return target


def test_lockout_guard_refuses_cutting_the_management_address(lab: LabFixture, store_url: str, tmp_path: Path) -> None:
    assert cli(lab, store_url, "apply", "--auto-approve", "-t", "web-prod-01")[0] == 0
    before = lab.nft("web-prod-01", "list table inet microseg")
    policy = _policy_copy(tmp_path, drop_rules=("microseg-management",))
    code, out = cli(lab, store_url, "apply", "--auto-approve", "-t", "web-prod-01", policy=policy)
    assert code == 1 and "lockout" in out and "10.0.0.10" in out and "--allow-lockout" in out
    assert lab.nft("web-prod-01", "list table inet microseg") == before


def test_mass_removal_guard(lab: LabFixture, store_url: str, tmp_path: Path) -> None:
    assert cli(lab, store_url, "apply", "--auto-approve", "-t", "web-prod-01")[0] == 0
    policy = _policy_copy(tmp_path, drop=("edge.yaml", "shop.yaml"), drop_rules=("dns", "ntp", "monitoring-scrape"))
    code, out = cli(lab, store_url, "apply", "--auto-approve", "-t", "web-prod-01", policy=policy)
    assert code == 1 and "mass-removal" in out and "--allow-mass-removal" in out
    code, out = cli(lab, store_url, "apply", "--auto-approve", "-t", "web-prod-01", "--allow-mass-removal",
                    policy=policy)
    assert code == 0, out


def test_garbage_from_a_host_is_a_parse_error_and_nothing_is_pushed(lab: LabFixture, store_url: str) -> None:
    lab.inject("db-prod-01", 'case "$SSH_ORIGINAL_COMMAND" in *"list tables"*) echo "{\\"nftables\\": [garbage";'
                             ' exit 0;; esac\n' + 'exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"\n')
    code, out = cli(lab, store_url, "apply", "--auto-approve")
    assert code == 1 and "db-prod-01" in out and "nothing applied" in out
    assert not any(lab.has_table(n) for n in LINUX_POINTS)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_applies_on_one_point_never_interleave(lab: LabFixture, tmp_path: Path, backend: str) -> None:
    if backend == "sqlite":
        url, schema = f"sqlite:///{tmp_path}/locks.db", None
    else:
        import secrets

        from sqlalchemy import create_engine, text
        url, schema = POSTGRES_URL, f"mlock_{secrets.token_hex(4)}"
        with create_engine(url).begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    slow = 'case "$SSH_ORIGINAL_COMMAND" in *"-f -"*) sleep 1.5;; esac\nexec /bin/sh -c "$SSH_ORIGINAL_COMMAND"\n'
    lab.inject("web-prod-01", slow)
    try:
        first, second = engine(lab, url, schema=schema), engine(lab, url, schema=schema, lock_timeout=0)
        with first, second:
            plan_a, plan_b = first.plan(["web-prod-01"]), second.plan(["web-prod-01"])
            box: dict[str, object] = {}
            worker = threading.Thread(target=lambda: box.update(a=apply_plan(first, plan_a, ApplyOptions(), {})))
            worker.start()
            time.sleep(0.6)  # the first run holds the point now (its nft -f sleeps 1.5 s)
            refused = apply_plan(second, plan_b, ApplyOptions(), {})
            worker.join()
            assert "is locked by" in (refused.outcomes["web-prod-01"].error or ""), refused.to_dict()
            assert refused.outcomes["web-prod-01"].state.value == "unchanged"
            assert box["a"].status == "ok"  # type: ignore[attr-defined]
            # a waiting run gets the point after the first released it — and then sees it changed (stale)
            third = engine(lab, url, schema=schema, lock_timeout=10)
            with third:
                lab.reset()
                plan_c = third.plan(["web-prod-01"])
                lab.inject("web-prod-01", slow)
                worker = threading.Thread(target=lambda: box.update(c=apply_plan(first, first.plan(["web-prod-01"]),
                                                                                 ApplyOptions(), {})))
                worker.start()
                time.sleep(0.6)
                asked = time.monotonic()
                waited = apply_plan(third, plan_c, ApplyOptions(), {})
                waited_for = time.monotonic() - asked
                worker.join()
                assert "stale" in (waited.outcomes["web-prod-01"].error or ""), waited.to_dict()
                assert waited_for > 0.5, "the second run must have waited for the first to release the point"
                events = {e.event: e.at for e in third.store.audit_events(limit=500) if e.run_id == waited.run_id}
                first_done = max(e.at for e in third.store.audit_events(limit=500)
                                 if e.run_id == box["c"].run_id and e.event == "point.applied")  # type: ignore[attr-defined]
                assert events["apply.finish"] > first_done  # strictly after, never interleaved
    finally:
        if schema:
            from sqlalchemy import create_engine, text
            with create_engine(POSTGRES_URL).begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))


def test_rollback_refuses_unknown_runs_and_points_changed_since(lab: LabFixture, store_url: str) -> None:
    code, out = cli(lab, store_url, "rollback", "nope", "--auto-approve")
    assert code == 1 and "'nope'" in out
    with engine(lab, store_url) as eng:
        with pytest.raises(StoreError, match="nope"):
            rollback_run(eng, "nope")
        first = apply_plan(eng, eng.plan(["web-prod-01", "web-prod-02"]), ApplyOptions(), {})
        lab.nft("web-prod-02", "add rule inet microseg ingress ip saddr 192.0.2.1 accept")  # a hand edit since
        refused = rollback_run(eng, first.run_id)
        assert refused.by_state() == {"restored": ["web-prod-01"], "unchanged": ["web-prod-02"]}
        assert "changed since run" in (refused.outcomes["web-prod-02"].error or "")
        assert lab.has_table("web-prod-02") and not lab.has_table("web-prod-01")
        again = rollback_run(eng, first.run_id, ["web-prod-01"])  # already at the checkpoint: nothing to do
        assert again.by_state() == {"unchanged": ["web-prod-01"]} and again.ok
        forced = rollback_run(eng, first.run_id, ["web-prod-02"], force=True)
        assert forced.by_state() == {"restored": ["web-prod-02"]} and not lab.has_table("web-prod-02")
        assert set(eng.store.checkpoints(forced.run_id)) == {"web-prod-02"}  # the rollback is undoable


def test_a_session_dropped_after_the_change_is_verified_not_repeated(lab: LabFixture, store_url: str) -> None:
    # the 2nd `nft -f` (the change, after the conntrack bootstrap) runs, then the session dies
    lab.inject("web-prod-01", on_nft_f('/bin/sh -c "$SSH_ORIGINAL_COMMAND"; kill -9 $PPID; exit 1', times="2"))
    with engine(lab, store_url) as eng:
        result = apply_plan(eng, eng.plan(["web-prod-01"]), ApplyOptions(), {})
    outcome = result.outcomes["web-prod-01"]
    assert result.ok and outcome.state.value == "new", result.to_dict()
    assert outcome.report is not None and "session dropped after the change" in outcome.report.output
    assert not lab.lab.probe("web-dev-01", "10.20.1.11", 443).ok  # the change really is in force
    assert lab.lab.probe("internet", "10.20.1.11", 443).ok


def test_empty_group_guard_refuses_removals_driven_by_an_empty_group(lab: LabFixture, store_url: str,
                                                                      tmp_path: Path) -> None:
    import yaml

    assert cli(lab, store_url, "apply", "--auto-approve", "-t", "web-prod-01")[0] == 0
    policy = _policy_copy(tmp_path)
    groups = yaml.safe_load((policy / "groups.yaml").read_text())
    groups["groups"]["jump-hosts"]["selector"] = {"role": "decommissioned"}  # a workload source lost them
    (policy / "groups.yaml").write_text(yaml.safe_dump(groups, sort_keys=False))
    platform = yaml.safe_load((policy / "platform.yaml").read_text())
    for rule in platform["rules"]:
        if rule["name"] == "admin-ssh":
            rule["allow_empty"] = True
    (policy / "platform.yaml").write_text(yaml.safe_dump(platform, sort_keys=False))
    code, out = cli(lab, store_url, "apply", "--auto-approve", "-t", "web-prod-01", policy=policy)
    assert code == 1 and "empty-group" in out and "'admin-ssh'" in out and "'jump-hosts'" in out, out
    assert lab.lab.probe("jump-01", "10.20.1.11", 22).ok  # nothing was removed
    code, out = cli(lab, store_url, "apply", "--auto-approve", "-t", "web-prod-01", "--allow-empty-groups",
                    policy=policy)
    assert code == 0, out
    assert not lab.lab.probe("jump-01", "10.20.1.11", 22).ok
