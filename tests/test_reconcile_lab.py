"""Scheduled reconciliation against the lab: drift found, classified, reported or repaired (guards still apply)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.labkit import LabFixture, module_lab, store_url

__all__ = ["store_url"]  # a fixture, used by name
from tests.test_engine_lab import _policy_copy, cli

testlab, lab = module_lab("reconcilelab")


def reconcile(lab: LabFixture, store_url: str, *args: str, **kwargs: Path) -> tuple[int, dict]:
    code, out = cli(lab, store_url, "reconcile", "--json", "-t", "web-prod-01", "-t", "db-prod-01", *args, **kwargs)
    return code, json.loads(out)


def kinds(report: dict, point: str) -> list[str]:
    return report["findings"][point]["kinds"]


def test_report_classifies_tampering_and_unmanaged_and_changes_nothing(lab: LabFixture, store_url: str) -> None:
    code, report = reconcile(lab, store_url)
    assert code == 2 and kinds(report, "web-prod-01") == ["no-baseline"]
    assert cli(lab, store_url, "apply", "--auto-approve", "-t", "web-prod-01", "-t", "db-prod-01")[0] == 0
    code, report = reconcile(lab, store_url)
    assert code == 0 and report["drifted"] == []
    lab.nft("db-prod-01", "add rule inet microseg ingress ip saddr 10.30.1.11 tcp dport 5432 accept")
    lab.nft("web-prod-01", "add table inet scratch")
    before = lab.nft("db-prod-01", "list table inet microseg")
    code, report = reconcile(lab, store_url)
    assert code == 2 and report["drifted"] == ["db-prod-01"]
    assert kinds(report, "db-prod-01") == ["tampered"]
    assert kinds(report, "web-prod-01") == ["unmanaged-appeared"] and report["findings"]["web-prod-01"]["in_sync"]
    assert lab.nft("db-prod-01", "list table inet microseg") == before  # report mode changes nothing


def test_repair_reverts_tampering_through_the_normal_path(lab: LabFixture, store_url: str) -> None:
    assert cli(lab, store_url, "apply", "--auto-approve", "-t", "web-prod-01", "-t", "db-prod-01")[0] == 0
    lab.nft("db-prod-01", "insert rule inet microseg ingress ip saddr 10.30.1.11 tcp dport 5432 accept")  # a hotfix
    assert lab.lab.probe("web-dev-01", "10.20.3.11", 5432).ok
    code, report = reconcile(lab, store_url, "--mode", "repair")
    assert code == 0, report
    assert report["repair"]["states"] == {"new": ["db-prod-01"], "unchanged": ["web-prod-01"]}
    assert not lab.lab.probe("web-dev-01", "10.20.3.11", 5432).ok
    assert reconcile(lab, store_url)[0] == 0


def test_policy_and_inventory_changes_are_told_apart(lab: LabFixture, store_url: str, tmp_path: Path) -> None:
    assert cli(lab, store_url, "apply", "--auto-approve", "-t", "web-prod-01", "-t", "db-prod-01")[0] == 0
    policy = _policy_copy(tmp_path, drop_rules=("monitoring-scrape",))
    code, report = reconcile(lab, store_url, policy=policy)
    assert code == 2 and kinds(report, "web-prod-01") == ["policy-changed"]
    moved = tmp_path / "inventory"
    shutil.copytree(lab.inventory, moved)
    workloads = yaml.safe_load((moved / "workloads.yaml").read_text())
    for workload in workloads["workloads"]:
        if workload["name"] == "jump-01":
            workload["addresses"] = ["10.10.0.29"]  # the jump host moved
    (moved / "workloads.yaml").write_text(yaml.safe_dump(workloads, sort_keys=False))
    code, out = cli(lab, store_url, "--inventory", str(moved), "reconcile", "--json", "-t", "web-prod-01")
    report = json.loads(out)
    assert code == 2 and kinds(report, "web-prod-01") == ["inventory-changed"]


def test_repair_never_forces_a_guard(lab: LabFixture, store_url: str, tmp_path: Path) -> None:
    assert cli(lab, store_url, "apply", "--auto-approve", "-t", "web-prod-01", "-t", "db-prod-01")[0] == 0
    policy = _policy_copy(tmp_path, drop_rules=("microseg-management",))
    before = lab.nft("web-prod-01", "list table inet microseg")
    code, report = reconcile(lab, store_url, "--mode", "repair", policy=policy)
    assert code == 2
    assert report["findings"]["web-prod-01"]["refused"] == ["lockout"]
    assert lab.nft("web-prod-01", "list table inet microseg") == before


def test_select_by_label(lab: LabFixture, store_url: str) -> None:
    code, out = cli(lab, store_url, "reconcile", "--json", "--label", "env=shared")
    assert sorted(json.loads(out)["findings"]) == ["jump-01"]
    code, out = cli(lab, store_url, "reconcile", "--label", "env")
    assert code == 1 and "KEY=VALUE" in out


def _window_config(tmp_path: Path, open_now: bool) -> Path:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    start = now - timedelta(minutes=5) if open_now else now + timedelta(hours=2)
    end = start + timedelta(hours=1)
    day = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[start.weekday()]
    config = tmp_path / "microseg.yaml"
    config.write_text(yaml.safe_dump({"change_windows": [
        {"name": "prod", "groups": ["prod"], "windows": [f"{day} {start:%H:%M}-{end:%H:%M} UTC"]}]}))
    return config


def test_apply_outside_the_change_window_is_refused_unless_emergency(lab: LabFixture, store_url: str,
                                                                        tmp_path: Path) -> None:
    closed = _window_config(tmp_path, open_now=False)
    code, out = cli(lab, store_url, "--config", str(closed), "apply", "--auto-approve", "-t", "web-prod-01")
    assert code == 1 and "outside the change window" in out and "--emergency" in out
    assert not lab.has_table("web-prod-01")
    assert cli(lab, store_url, "--config", str(closed), "apply", "--auto-approve", "-t", "jump-01")[0] == 0  # shared
    code, out = cli(lab, store_url, "--config", str(closed), "apply", "--auto-approve", "-t", "web-prod-01",
                    "--emergency", "INC-42 active attack", "--json")
    assert code == 0, out
    run = json.loads(cli(lab, store_url, "show", json.loads(out)["run_id"], "--json")[1])["run"]
    assert any(e["event"] == "apply.emergency" and e["detail"]["reason"] == "INC-42 active attack"
               for e in run["events"])
    opened = _window_config(tmp_path, open_now=True)
    assert cli(lab, store_url, "--config", str(opened), "apply", "--auto-approve", "-t", "db-prod-01")[0] == 0


def test_a_window_that_closes_mid_run_starts_no_more_points(lab: LabFixture, store_url: str) -> None:
    from datetime import UTC, datetime, timedelta

    from orchestrator.engine.transaction import ApplyOptions, apply_plan
    from tests.test_engine_lab import engine

    closes = datetime.now(UTC) + timedelta(hours=1)
    calls = {"n": 0}

    def clock() -> datetime:  # the window closes while the first point is being changed
        calls["n"] += 1
        return closes - timedelta(minutes=1) if calls["n"] <= 1 else closes
    with engine(lab, store_url, workers=1) as eng:
        eng.options = dataclasses.replace(eng.options, clock=clock)
        result = apply_plan(eng, eng.plan(["web-prod-01", "web-prod-02"]), ApplyOptions(), {}, deadline=closes)
    assert result.by_state() == {"new": ["web-prod-01"], "skipped": ["web-prod-02"]}, result.to_dict()
    assert "change window closed" in (result.outcomes["web-prod-02"].error or "")
    assert lab.has_table("web-prod-01") and not lab.has_table("web-prod-02")


def test_adopt_proposes_the_found_rules_as_a_policy_file_and_changes_nothing(lab: LabFixture, store_url: str,
                                                                            tmp_path: Path) -> None:
    assert cli(lab, store_url, "apply", "--auto-approve", "-t", "db-prod-01")[0] == 0
    lab.nft("db-prod-01", "add rule inet microseg ingress ip saddr 10.30.7.0/24 ip daddr 10.20.3.11 udp dport 514 "
                          "accept")
    before = lab.nft("db-prod-01", "list table inet microseg")
    proposal = tmp_path / "adopt.yaml"
    code, _ = cli(lab, store_url, "reconcile", "-t", "db-prod-01", "--adopt", str(proposal))
    assert code == 2 and lab.nft("db-prod-01", "list table inet microseg") == before
    adopted = yaml.safe_load(proposal.read_text())
    assert [(r["services"], r["action"]) for r in adopted["rules"]] == [(["udp/514"], "allow")]
    rule = adopted["rules"][0]
    assert adopted["groups"][rule["from"]]["cidrs"] == ["10.30.7.0/24"]
    assert adopted["groups"][rule["to"]]["cidrs"] == ["10.20.3.11/32"]
    policy = _policy_copy(tmp_path)
    shutil.copy(proposal, policy / "zz-adopted.yaml")  # what a reviewer does after reading it
    code, out = cli(lab, store_url, "reconcile", "--json", "-t", "db-prod-01", policy=policy)
    assert code == 0 and json.loads(out)["findings"]["db-prod-01"]["in_sync"]  # the policy now says what is there
    assert lab.nft("db-prod-01", "list table inet microseg") == before


def test_collect_points_reads_conntrack_over_ssh_and_simulate_replays_it(lab: LabFixture, store_url: str,
                                                                         tmp_path: Path) -> None:
    """Agentless discovery in the lab: real connections, the host's conntrack table read over the nftables
    driver's SSH session, then simulate on what was read."""
    for host in ("db-prod-01", "web-prod-01"):  # earlier tests' connections (and their sessions) are not this one's
        lab.lab.exec(host, ["conntrack", "-F"])
    # the kernel tracks connections in a namespace once a rule uses conntrack
    lab.lab.track_connections("db-prod-01")
    assert all(r.ok for r in lab.lab.probe_many([("app-prod-01", "db-prod-01", 5432), ("jump-01", "db-prod-01", 22)]))
    flows = str(tmp_path / "flows.duckdb")
    code, out = cli(lab, store_url, "collect", "points", "-t", "db-prod-01", "-t", "web-prod-01", "--json",
                    "--flow-store", flows)
    assert code == 0, out
    imports = {i["location"].split("@")[0]: i for i in json.loads(out)["imports"]}
    assert imports["db-prod-01"]["records"] >= 2 and imports["web-prod-01"]["problems"] == []
    code, out = cli(lab, store_url, "simulate", "--json", "--flow-store", flows)
    assert code == 0, out
    report = json.loads(out)
    assert not report["breaks"] and report["conversations"] >= 2
    code, out = cli(lab, store_url, "discover", "--json", "--flow-store", flows, "-o", str(tmp_path / "p.yaml"))
    assert code == 0, out
    edges = {(e["from"], e["to"], e["service"]) for e in json.loads(out)["edges"]}
    assert {("shop-app-prod", "shop-db-prod", "tcp/5432"), ("platform-shared", "shop-db-prod", "tcp/22")} <= edges


def test_one_point_in_monitor_mode_beside_enforcing_ones(lab: LabFixture, store_url: str, tmp_path: Path) -> None:
    """`mode: monitor` on one host of the inventory: its would-denies still connect (and are logged), the other
    hosts enforce — one run, real traffic; switching it to enforce is a plan of its own (`mode: monitor →
    enforce`)."""
    from click.testing import CliRunner

    from orchestrator.cli.main import main
    from tests.conftest import REPO
    from tests.test_engine_lab import TODAY

    inventory = tmp_path / "inventory"
    shutil.copytree(lab.inventory, inventory)
    hosts = yaml.safe_load((inventory / "hosts.yaml").read_text())
    hosts["db-prod-01"]["data"]["microseg"]["mode"] = "monitor"
    (inventory / "hosts.yaml").write_text(yaml.safe_dump(hosts, sort_keys=False))

    def run(*args: str, where: Path = inventory) -> tuple[int, str]:
        result = CliRunner().invoke(main, ["--policy", str(REPO / "policies"), "--inventory", str(where), "--today",
                                           TODAY.isoformat(), "--store", store_url, "--actor", "tester", *args])
        return result.exit_code, result.output

    code, out = run("apply", "--auto-approve", "-t", "db-prod-01", "-t", "db-prod-02")
    assert code == 0, out
    denied = [("web-prod-01", "db-prod-01", 5432), ("web-prod-01", "db-prod-02", 5432)]  # no rule allows these
    assert [r.ok for r in lab.lab.probe_many(denied, timeout=1.0)] == [True, False]  # monitor vs. enforce
    code, out = run("plan", "--detailed-exitcode", "-t", "db-prod-01", where=lab.inventory)
    assert code == 2 and "mode: monitor → enforce" in out, out
    assert run("apply", "--auto-approve", "-t", "db-prod-01", where=lab.inventory)[0] == 0
    assert [r.ok for r in lab.lab.probe_many(denied[:1], timeout=1.0)] == [False]  # promoted: now enforced


def test_rule_counters_are_sampled_by_drift_and_reported_by_hits(lab: LabFixture, store_url: str) -> None:
    """Issue #17, hit evidence with real traffic: every owned nft rule counts; each drift run stores the counts
    per policy rule; `microseg hits` reports what was matched between samples, per point, and the last hit."""
    points = ("-t", "web-prod-01", "-t", "db-prod-01")
    assert cli(lab, store_url, "apply", "--auto-approve", *points)[0] == 0
    assert cli(lab, store_url, "drift", *points)[0] == 0  # the baseline sample
    for _ in range(3):
        assert lab.lab.probe("internet", "10.20.1.11", 443).ok
    assert not lab.lab.probe("web-dev-01", "10.20.3.11", 5432).ok
    assert cli(lab, store_url, "drift", *points)[0] == 0
    code, out = cli(lab, store_url, "hits", "--json")
    assert code == 0, out
    rules = {r["rule"]: r for r in json.loads(out)["rules"]}
    web = rules["internet-to-web"]
    assert web["counted"] and web["points"]["web-prod-01"] >= 3 and web["last_hit"] is not None
    assert rules["deny-dev-to-prod"]["points"]["db-prod-01"] >= 1  # the refused SYNs
    assert rules["shop-app-to-db-prod"]["never_hit_on"] == ["db-prod-01"]  # counted there, nothing matched
    assert not rules["vendor-acme-api-tests"]["counted"] or rules["vendor-acme-api-tests"]["packets"] == 0
    code, text = cli(lab, store_url, "hits")
    assert code == 0 and "internet-to-web" in text and "never hit on" in text


def _chromium(*args: str) -> str:
    """Headless Chromium (the Debian package; scripts/test installs it) on a local file: its output."""
    browser = shutil.which("chromium")
    if browser is None:
        if os.environ.get("MICROSEG_TEST_TOOLS") == "1":
            raise AssertionError("chromium is missing although scripts/setup-env installs it for the tests")
        pytest.skip("chromium is not installed (scripts/test installs it)")
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--user-data-dir=" + tempfile.mkdtemp(prefix="mseg-chromium-"), *args],
                          capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


def test_the_report_renders_the_matrix_and_the_run_in_a_real_browser(lab: LabFixture, store_url: str,
                                                                       tmp_path: Path) -> None:
    """Issue #19: one self-contained HTML file — no external asset — that a real browser renders: the cells of
    the segmentation matrix as the page shows them (the summary line is computed by the page's own script, so
    it exists only in the rendered DOM), the run's points with their end state and native change."""
    code, out = cli(lab, store_url, "apply", "--auto-approve", "--json", "-t", "web-prod-01", "-t", "db-prod-01")
    assert code == 0, out
    run_id = json.loads(out)["run_id"]
    page = tmp_path / "report.html"
    code, out = cli(lab, store_url, "report", "--run", run_id, "-o", str(page))
    assert code == 0, out
    source = page.read_text()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", source)  # nothing fetched from anywhere
    assert 'id="summary">Matrix summary needs a browser' in source  # … the summary is the browser's work
    dom = _chromium("--dump-dom", page.as_uri())
    summary = re.search(r'id="summary">Matrix: (\d+) group pairs, (\d+) allowed, (\d+) denied, (\d+) monitored, '
                        r"(\d+) mixed, (\d+) left to the default", dom)
    assert summary is not None, dom[:2000]
    pairs, allowed, denied, monitored, mixed, default = map(int, summary.groups())
    assert pairs == allowed + denied + monitored + mixed + default and allowed and denied and mixed and default
    cells = {m["title"]: m["text"] for m in re.finditer(
        r'<td class="\w+" data-verdict="\w+" data-observed="\d+" title="(?P<title>[^"]+)">(?P<text>.*?)</td>', dom)}
    assert len(cells) == pairs
    assert cells["internet → web-prod: allow"].startswith("<b>allow</b>allow web (internet-to-web)")
    assert "deny-dev-to-prod" in cells["app-dev → db-prod: deny"]
    assert f"Run {run_id}" in dom and "web-prod-01" in dom and "table inet microseg" in dom
    shot = Path(os.environ.get("MICROSEG_TEST_ARTIFACTS", tmp_path)) / "report.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    _chromium("--window-size=1600,1400", f"--screenshot={shot}", page.as_uri())
    assert shot.stat().st_size > 20_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_rollout_monitors_every_point_then_promotes_group_by_group_without_breaking_a_flow(
        lab: LabFixture, store_url: str, tmp_path: Path) -> None:
    """Issue #17's walk-through in the lab, with real traffic: every point of the worked example in monitor; the
    flows it carried (and one the policy would deny) collected from the hosts' conntrack; `promote` moves the
    points whose flows enforcement keeps, refuses the group with the would-deny flow (nothing moves), promotes
    it with a recorded reason once the owner accepts the break; after each apply every allowed flow still
    connects and the denied one is blocked only once its point enforces."""
    from click.testing import CliRunner

    from orchestrator.cli.main import main
    from orchestrator.inventory.edit import with_mode
    from orchestrator.model.rules import Mode
    from orchestrator.store import open_store
    from tests.conftest import REPO
    from tests.labkit import LINUX_POINTS
    from tests.test_engine_lab import TODAY

    inventory = tmp_path / "inventory"
    shutil.copytree(lab.inventory, inventory)
    text = (inventory / "hosts.yaml").read_text()
    for point in LINUX_POINTS:
        text = with_mode(text, point, Mode.MONITOR)
    (inventory / "hosts.yaml").write_text(text)
    flows = str(tmp_path / "flows.duckdb")

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, ["--policy", str(REPO / "policies"), "--inventory", str(inventory),
                                           "--today", TODAY.isoformat(), "--store", store_url, "--actor", "tester",
                                           *args])
        return result.exit_code, result.output

    allowed = [("internet", "web-prod-01", 443), ("app-prod-01", "db-prod-01", 5432), ("jump-01", "db-prod-01", 22)]
    would_deny = ("web-dev-01", "db-prod-01", 5432)  # deny-dev-to-prod
    code, out = run("apply", "--auto-approve")
    assert code == 0, out
    for host in LINUX_POINTS:  # only this test's connections in the hosts' tables
        lab.lab.exec(host, ["conntrack", "-F"])
        lab.lab.track_connections(host)
    assert [r.ok for r in lab.lab.probe_many([*allowed, would_deny], timeout=1.0)] == [True] * 4  # monitor: all pass
    code, out = run("collect", "points", "--flow-store", flows)
    assert code == 0, out
    code, out = run("simulate", "--json", "--flow-store", flows)
    assert code == 2, out  # the would-deny evidence, before anything enforces
    breaks = json.loads(out)["denied"]
    assert any(gap["service"] == "tcp/5432" and any("db-prod-01" in at for at in gap["denied_at"])
               for gap in breaks), breaks

    code, out = run("promote", "-g", "shared", "--flow-store", flows)  # the jump host: its flows are allowed
    assert code == 0 and "promoted to enforce: jump-01" in out, out
    before = (inventory / "hosts.yaml").read_text()
    code, out = run("promote", "-g", "prod", "--flow-store", flows)  # db-prod-01 would deny an observed flow
    assert code == 2 and "db-prod-01" in out and "5432" in out, out
    assert (inventory / "hosts.yaml").read_text() == before  # refused: nothing moved
    code, out = run("promote", "-t", "web-prod-01", "-t", "web-prod-02", "-t", "app-prod-01", "-t", "db-prod-02",
                    "--flow-store", flows)
    assert code == 0, out
    code, out = run("apply", "--auto-approve")
    assert code == 0, out
    assert [r.ok for r in lab.lab.probe_many([*allowed, would_deny], timeout=1.0)] == [True] * 4  # nothing broke
    assert not lab.lab.probe("web-dev-01", "web-prod-01", 22, timeout=1.0).ok  # web-prod-01 enforces now

    code, out = run("promote", "-t", "db-prod-01", "--flow-store", flows,
                    "--force", "dev reads of the prod DB end today (CHG-4711)")
    assert code == 0, out
    code, out = run("apply", "--auto-approve")
    assert code == 0, out
    assert [r.ok for r in lab.lab.probe_many([*allowed, would_deny], timeout=1.0)] == [True, True, True, False]
    code, out = run("plan", "--detailed-exitcode")
    assert code == 0, out  # every point enforces what the policy says
    with open_store(store_url) as store:
        forced = [e for e in store.audit_events(limit=200) if e.event == "promote.point" and e.point == "db-prod-01"]
    assert forced and forced[0].detail["forced"] == "dev reads of the prod DB end today (CHG-4711)"
    assert forced[0].detail["would_deny"] >= 1
