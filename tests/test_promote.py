"""`microseg promote`: monitor → enforce only when the observed flows say enforcement breaks nothing they carried,
written as one line of hosts.yaml (nothing else touched), recorded in the audit trail; `--force REASON` overrides."""

from __future__ import annotations

import json
import shutil
import time
from datetime import date
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from orchestrator.cli.main import main
from orchestrator.engine.project import load_project
from orchestrator.flows.store import FlowStore
from orchestrator.inventory.edit import with_mode
from orchestrator.model.flows import FlowRecord
from orchestrator.model.rules import Mode
from orchestrator.store import open_store
from tests.conftest import REPO

TODAY = "2026-12-06"


@pytest.mark.parametrize(("hosts", "expected"), [
    ("a:\n  data:\n    microseg:\n      mode: monitor   # watch first\n      driver: x\n",
     "a:\n  data:\n    microseg:\n      mode: enforce   # watch first\n      driver: x\n"),
    ("a:\n  data:\n    microseg:\n      driver: x\n",
     "a:\n  data:\n    microseg:\n      mode: enforce\n      driver: x\n"),
    ("a:\n  data: {microseg: {driver: x}}\n", "a:\n  data: {microseg: {mode: enforce, driver: x}}\n"),
    ("a:\n  data:\n    site: hq\n", "a:\n  data:\n    microseg: {mode: enforce}\n    site: hq\n"),
    ("# hosts\na:\n  hostname: h  # me\nb:\n  hostname: k\n",
     "# hosts\na:\n  data: {microseg: {mode: enforce}}\n  hostname: h  # me\nb:\n  hostname: k\n"),
])
def test_the_edit_touches_one_place(hosts: str, expected: str) -> None:
    assert with_mode(hosts, "a", Mode.ENFORCE) == expected
    assert yaml.safe_load(expected)["a"]["data"]["microseg"]["mode"] == "enforce"


def estate(tmp_path: Path, monitored: list[str]) -> Path:
    inventory = tmp_path / "inventory"
    shutil.copytree(REPO / "inventory", inventory)
    text = (inventory / "hosts.yaml").read_text()
    for host in monitored:
        text = with_mode(text, host, Mode.MONITOR)
    (inventory / "hosts.yaml").write_text(text)
    return inventory


def observed(tmp_path: Path, flows: list[tuple[str, str, int]]) -> Path:
    path = tmp_path / "flows.duckdb"
    now = int(time.time())
    with FlowStore(path) as store:
        store.import_records("test", "flows", [FlowRecord(now - 3600, now - 3590, src, dst, 6, 40000, port, 10, 800,
                                                          "accept", "src", "test") for src, dst, port in flows])
    return path


def run(tmp_path: Path, inventory: Path, *args: str):
    base = ["--policy", str(REPO / "policies"), "--inventory", str(inventory), "--today", TODAY,
            "--store", f"sqlite:///{tmp_path}/state.db"]
    return CliRunner().invoke(main, [*base, *args])


def test_promotion_needs_evidence_and_is_refused_when_enforcing_would_break_traffic(tmp_path: Path) -> None:
    inventory = estate(tmp_path, ["web-prod-01", "web-prod-02"])
    before = (inventory / "hosts.yaml").read_text()
    # the web tier served the internet on 443; a dev host reached web-prod-02 on 22 (the policy denies it)
    flows = observed(tmp_path, [("8.8.8.8", "10.20.1.11", 443), ("8.8.4.4", "10.20.1.12", 443),
                                ("10.30.1.11", "10.20.1.12", 22)])
    refused = run(tmp_path, inventory, "promote", "-t", "web-prod-02", "--flow-store", str(flows), "--json")
    assert refused.exit_code == 2, refused.output
    report = json.loads(refused.stdout)
    assert not report["ok"] and report["would_deny"][0]["service"] == "tcp/22"
    assert (inventory / "hosts.yaml").read_text() == before  # nothing moved
    # the point whose observed traffic the policy allows is promoted: one line of hosts.yaml
    ok = run(tmp_path, inventory, "promote", "-t", "web-prod-01", "--flow-store", str(flows))
    assert ok.exit_code == 0, ok.output
    assert "promoted to enforce: web-prod-01" in ok.output
    after = (inventory / "hosts.yaml").read_text()
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]
    assert changed == [("      mode: monitor", "      mode: enforce")]
    project = load_project(REPO / "policies", inventory, today=date.fromisoformat(TODAY))
    assert project.inventory.point("web-prod-01").mode is Mode.ENFORCE
    assert project.inventory.point("web-prod-02").mode is Mode.MONITOR
    # --force promotes anyway, and the audit trail says who, why and what it would deny
    forced = run(tmp_path, inventory, "promote", "-t", "web-prod-02", "--flow-store", str(flows),
                 "--force", "CHG-77: ssh from dev is being retired")
    assert forced.exit_code == 0, forced.output
    with open_store(f"sqlite:///{tmp_path}/state.db") as store:
        events = [e for e in store.audit_events() if e.event.startswith("promote")]
    kinds = sorted(e.event for e in events)
    assert kinds == ["promote.point", "promote.point", "promote.refused"]
    forced_event = next(e for e in events if e.point == "web-prod-02")
    assert forced_event.detail["forced"] == "CHG-77: ssh from dev is being retired"
    assert forced_event.detail["would_deny"] == 1 and forced_event.detail["hosts.yaml"] == [
        "-      mode: monitor", "+      mode: enforce"]


def test_promotion_refuses_points_not_in_monitor_and_an_empty_window(tmp_path: Path) -> None:
    inventory = estate(tmp_path, ["web-prod-01"])
    empty = observed(tmp_path, [])
    no_flows = run(tmp_path, inventory, "promote", "-t", "web-prod-01", "--flow-store", str(empty))
    assert no_flows.exit_code == 1 and "no observed flows since 7d" in no_flows.output
    enforcing = run(tmp_path, inventory, "promote", "-t", "web-prod-02", "--flow-store", str(empty))
    assert enforcing.exit_code == 1 and "not in monitor mode: web-prod-02" in enforcing.output
    nothing = run(tmp_path, inventory, "promote")
    assert nothing.exit_code == 1 and "name the points to promote" in nothing.output
