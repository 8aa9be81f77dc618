"""microseg's public Nornir tasks, from a team's own Nornir (docs/nornir_example.py), against the simulators."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from nornir import InitNornir

from orchestrator.engine.nornir_tasks import microseg_drift, microseg_engine, microseg_plan
from tests.conftest import REPO
from tests.test_engine_switches import SWITCHES, TODAY, Fleet, fleet  # noqa: F401  (the switch simulators)


def with_a_host_that_is_no_point(inventory: Path) -> None:
    hosts = yaml.safe_load((inventory / "hosts.yaml").read_text())
    hosts["core-router"] = {"hostname": "127.0.0.1", "platform": "ios"}  # the team's own host
    (inventory / "hosts.yaml").write_text(yaml.safe_dump(hosts, sort_keys=False))


def test_the_example_script_plans_applies_and_plans_again(fleet: Fleet, tmp_path: Path) -> None:  # noqa: F811
    with_a_host_that_is_no_point(fleet.inventory)
    run = subprocess.run(
        [sys.executable, str(REPO / "docs" / "nornir_example.py"), "--policy", str(REPO / "policies"),
         "--inventory", str(fleet.inventory), "--store", f"sqlite:///{tmp_path}/state.db",
         "--today", TODAY.isoformat(), "--apply"],
        check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin"})
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    for switch in SWITCHES:
        assert any(line.startswith(f"plan: {switch}: changes, ") for line in lines), run.stdout
        assert any(line.startswith(f"apply: {switch}: changes, run ") and line.endswith(" ok") for line in lines)
        assert f"plan again: {switch}: in sync, 0 native lines" in lines
    assert "plan: core-router: not a microseg point" in lines


def test_tasks_return_nornir_results_with_the_plan_as_data(fleet: Fleet, tmp_path: Path) -> None:  # noqa: F811
    with_a_host_that_is_no_point(fleet.inventory)
    inventory = fleet.inventory
    nr = InitNornir(runner={"plugin": "threaded", "options": {"num_workers": 4}}, logging={"enabled": False},
                    inventory={"plugin": "SimpleInventory", "options": {
                        "host_file": str(inventory / "hosts.yaml"), "group_file": str(inventory / "groups.yaml"),
                        "defaults_file": str(inventory / "defaults.yaml")}})
    with microseg_engine(REPO / "policies", inventory, store=f"sqlite:///{tmp_path}/state.db", today=TODAY) as engine:
        planned = nr.run(task=microseg_plan, engine=engine)
        eos = planned["leaf-prod-eos"][0]
        assert eos.changed and not eos.failed and eos.result["point"] == "leaf-prod-eos"
        assert "ip access-list MSEG-INGRESS-V4" in eos.diff
        assert planned["core-router"][0].result == {"point": False}
        drift = nr.filter(name="sw-dev-ios").run(task=microseg_drift, engine=engine)["sw-dev-ios"][0]
        assert drift.changed and drift.result["run_id"]
        assert engine.store.run(drift.result["run_id"]).kind == "drift"  # recorded as a drift run
    assert all(v == 0 for v in fleet.config_lines().values())  # planning configured nothing
