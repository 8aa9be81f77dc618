"""EOS over eAPI through napalm's unmodified EOS driver (``transport: napalm``), against the simulator's eAPI:
refused lines, a connection dropped mid-load, a commit nobody confirms, an untrusted certificate, wrong
credentials — and the same device state read by both transports normalizes to the same thing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from drivers.netacl.errors import RejectedLine
from drivers.testing import assert_matches, plan_and_apply
from orchestrator.engine.rollback import rollback_run
from orchestrator.engine.transaction import ApplyOptions, apply_plan
from orchestrator.model.errors import PermanentDriverError, TransientDriverError
from simulators.netdev.eapi import serving_eapi
from simulators.netdev.server import DeviceSimulator
from tests.netdev_kit import FIRST, SECOND, driver_for, render, simulator
from tests.test_engine_switches import SWITCHES, Fleet, fleet  # noqa: F401  (the four switch simulators)


@pytest.fixture
def eos(tmp_path: Path) -> Iterator[tuple[DeviceSimulator, dict[str, Any]]]:
    with simulator("eos", minute_seconds=3.0) as sim, serving_eapi(sim, tmp_path / "ca.pem") as port:
        yield sim, {"transport": "napalm", "eapi_port": port, "eapi_ca_file": str(tmp_path / "ca.pem")}


def test_both_transports_read_the_same_device_state_the_same_way(eos: tuple[DeviceSimulator, dict[str, Any]]) -> None:
    sim, napalm = eos
    cli, api = driver_for(sim, "eos"), driver_for(sim, "eos", **napalm)
    try:
        plan_and_apply(cli, FIRST)  # written over SSH …
        assert api.fetch().fingerprint() == cli.fetch().fingerprint()  # … read over eAPI: the same state
        assert api.normalize(api.fetch()).ruleset == cli.normalize(cli.fetch()).ruleset
        plan_and_apply(api, SECOND)  # written over eAPI …
        assert cli.fetch().fingerprint() == api.fetch().fingerprint()
        assert_matches(cli, SECOND)
        with sim.lock:
            assert sim.state.sessions == {} and sim.state.pending == {}  # napalm's session committed, confirmed
    finally:
        cli.close()
        api.close()


def test_a_refused_line_aborts_napalms_session_and_names_the_line(eos: tuple[DeviceSimulator, dict[str, Any]]) -> None:
    sim, napalm = eos
    driver = driver_for(sim, "eos", **napalm)
    plan_and_apply(driver, FIRST)
    before = driver.fetch()
    change = render(driver, SECOND)
    sim.faults.reject = "5432"
    with pytest.raises(RejectedLine) as caught:
        driver.apply(change)
    assert "5432" in caught.value.line and "eAPI" in caught.value.message
    assert driver.fetch().fingerprint() == before.fingerprint()
    with sim.lock:
        assert sim.state.sessions == {}  # napalm aborted its session: nothing left open on the switch
    driver.close()


def test_an_unconfirmed_commit_reverts_by_itself(eos: tuple[DeviceSimulator, dict[str, Any]]) -> None:
    sim, napalm = eos
    driver = driver_for(sim, "eos", confirm_minutes=1, **napalm)  # 3 s on this switch's clock
    plan_and_apply(driver, FIRST)
    before = driver.fetch().fingerprint()
    driver.apply(render(driver, SECOND))
    assert_matches(driver, SECOND)  # active, under napalm's commit timer
    driver.pending = None  # the orchestrator "died": nobody confirms
    driver.close()
    deadline = time.monotonic() + 10
    while driver.fetch().fingerprint() != before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert driver.fetch().fingerprint() == before, "EOS did not revert the unconfirmed commit"
    driver.close()


def test_a_connection_dropped_mid_load_changes_nothing_and_the_change_goes_through_again(
        eos: tuple[DeviceSimulator, dict[str, Any]]) -> None:
    sim, napalm = eos
    driver = driver_for(sim, "eos", **napalm)
    plan_and_apply(driver, FIRST)
    checkpoint = driver.checkpoint()
    change = render(driver, SECOND)
    assert len(change.commands) >= 4
    sim.faults.drop_after_config_lines = 2  # two lines reach the session, then the connection drops
    with pytest.raises(TransientDriverError):
        driver.apply(change)
    assert driver.fetch().fingerprint() == checkpoint.fingerprint  # the session was never committed
    with sim.lock:
        assert len(sim.state.sessions) == 1  # … and is still open on the switch, as on EOS
    driver.apply(change)  # re-sent: the orphaned session is aborted first, so napalm's lock check passes
    driver.confirm()
    assert_matches(driver, SECOND)
    with sim.lock:
        assert sim.state.sessions == {} and sim.state.pending == {}
    driver.rollback(checkpoint)
    assert driver.fetch().fingerprint() == checkpoint.fingerprint
    driver.close()


def test_a_commit_whose_answer_is_lost_is_still_confirmed(eos: tuple[DeviceSimulator, dict[str, Any]]) -> None:
    """The commit ran but its answer never came: the change is active under napalm's timer; confirming it (what
    the executor does once it sees the intended state) keeps it, and the next push finds nothing to abort."""
    sim, napalm = eos
    driver = driver_for(sim, "eos", confirm_minutes=1, **napalm)  # 3 s on this switch's clock
    plan_and_apply(driver, FIRST)
    sim.faults.drop_after_command = "commit timer"
    with pytest.raises(TransientDriverError):
        driver.apply(render(driver, SECOND))
    assert_matches(driver, SECOND)  # committed, pending confirmation
    driver.confirm()
    time.sleep(4)  # past the timer: confirmed, so nothing reverts
    assert_matches(driver, SECOND)
    plan_and_apply(driver, FIRST)  # the next change goes through: no session left to trip napalm's lock
    with sim.lock:
        assert sim.state.sessions == {} and sim.state.pending == {}
    driver.close()


def test_an_untrusted_certificate_or_wrong_password_is_refused_and_not_retried(
        eos: tuple[DeviceSimulator, dict[str, Any]], tmp_path: Path) -> None:
    sim, napalm = eos
    untrusted = driver_for(sim, "eos", **{**napalm, "eapi_ca_file": None})  # the system store: not our CA
    with pytest.raises(PermanentDriverError, match=r"certificate is not trusted .*eapi_ca_file"):
        untrusted.fetch()
    sim.password = "other"
    with pytest.raises(PermanentDriverError, match="eAPI authentication failed"):
        driver_for(sim, "eos", **napalm).fetch()
    assert sim.counters.config_lines == 0


def test_the_worked_examples_eos_leaf_over_napalm_through_the_engine(fleet: Fleet, tmp_path: Path) -> None:  # noqa: F811
    """The inventory's settings pick the transport: the engine plans, applies, verifies, confirms and rolls back
    the EOS leaf over eAPI, beside the other three switches over SSH."""
    hosts_file = fleet.inventory / "hosts.yaml"
    hosts = yaml.safe_load(hosts_file.read_text())
    with serving_eapi(fleet.sims["leaf-prod-eos"], tmp_path / "ca.pem") as port:
        hosts["leaf-prod-eos"]["data"]["microseg"]["settings"].update(
            transport="napalm", eapi_port=port, eapi_ca_file=str(tmp_path / "ca.pem"))
        hosts_file.write_text(yaml.safe_dump(hosts, sort_keys=False))
        with fleet.engine(f"sqlite:///{tmp_path}/state.db") as engine:
            ssh_sessions = fleet.sims["leaf-prod-eos"].counters.sessions
            plan = engine.plan(list(SWITCHES))
            assert not plan.failures, plan.failures
            result = apply_plan(engine, plan, ApplyOptions(), {})
            assert result.by_state() == {"new": sorted(SWITCHES)}, result.to_dict()
            assert not engine.plan(list(SWITCHES)).changes  # verified and confirmed: nothing left to do
            assert fleet.sims["leaf-prod-eos"].counters.sessions == ssh_sessions  # not one SSH login to the leaf
            with fleet.sims["leaf-prod-eos"].lock:
                assert fleet.sims["leaf-prod-eos"].state.pending == {}  # napalm's commit was confirmed
            back = rollback_run(engine, result.run_id)
            assert back.by_state() == {"restored": sorted(SWITCHES)}, back.to_dict()
