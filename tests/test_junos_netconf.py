"""Junos over NETCONF through napalm's unmodified Junos driver (``transport: napalm``, PyEZ and ncclient beneath),
against the simulator's ``netconf`` SSH subsystem: refused lines, a connection dropped mid-load, a commit nobody
confirms, a commit whose answer is lost, someone else's uncommitted edits, host keys, wrong credentials, an answer
that is not NETCONF — and the same device state read by both transports normalizes to the same thing."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from netmiko import ConnectHandler

from drivers.netacl.errors import RejectedLine
from drivers.testing import assert_matches, plan_and_apply
from orchestrator.engine.rollback import rollback_run
from orchestrator.engine.transaction import ApplyOptions, apply_plan
from orchestrator.model.errors import PermanentDriverError, TransientDriverError
from simulators.netdev.netconf import text_to_set
from simulators.netdev.server import DeviceSimulator
from tests.netdev_kit import FIRST, SECOND, driver_for, new_host_key, render, serving_host_key, simulator
from tests.test_engine_switches import SWITCHES, Fleet, fleet  # noqa: F401  (the four switch simulators)


@pytest.fixture
def junos() -> Iterator[tuple[DeviceSimulator, dict[str, Any]]]:
    with simulator("junos", minute_seconds=3.0) as sim:
        yield sim, {"transport": "napalm", "netconf_port": sim.port}


def settled(sim: DeviceSimulator) -> bool:
    """No commit waiting for confirmation, no lock, no uncommitted shared edits."""
    with sim.lock:
        db = sim.state
        return db.confirm is None and db.exclusive is None and db.shared == db.active


def test_both_transports_read_the_same_device_state_the_same_way(junos: tuple[DeviceSimulator, dict[str, Any]]) -> None:
    sim, napalm = junos
    cli, api = driver_for(sim, "junos"), driver_for(sim, "junos", **napalm)
    try:
        plan_and_apply(cli, FIRST)  # written over the CLI …
        assert api.fetch().native == cli.fetch().native  # … read over NETCONF: the same filters and bindings
        assert api.fetch().fingerprint() == cli.fetch().fingerprint()
        assert api.normalize(api.fetch()).ruleset == cli.normalize(cli.fetch()).ruleset
        sim.hit(4, "MSEG-INGRESS-V4", "T10", 7)  # counters: `show firewall filter` over SSH and over <command>
        hits = cli.normalize(cli.fetch()).hits
        assert hits[0] == 7 and set(hits[1:]) <= {0} and api.normalize(api.fetch()).hits == hits
        commands = sim.counters.commands
        plan_and_apply(api, SECOND)  # written over NETCONF …
        assert "<open-configuration>" in list(sim.history)[-(sim.counters.commands - commands):]
        assert cli.fetch().fingerprint() == api.fetch().fingerprint()
        assert_matches(cli, SECOND)
        assert settled(sim)  # committed confirmed, confirmed, private candidate closed
    finally:
        cli.close()
        api.close()


def test_a_refused_line_discards_the_candidate_and_names_the_line(
        junos: tuple[DeviceSimulator, dict[str, Any]]) -> None:
    sim, napalm = junos
    driver = driver_for(sim, "junos", **napalm)
    plan_and_apply(driver, FIRST)
    before = driver.fetch()
    change = render(driver, SECOND)
    target = next(line for line in change.commands if line.startswith("set ") and "5432" in line)
    sim.faults.reject = "5432"
    with pytest.raises(RejectedLine) as caught:
        driver.apply(change)
    assert caught.value.line == target and "NETCONF" in caught.value.message
    assert driver.pending is None  # nothing was committed, so nothing waits for confirmation
    assert driver.fetch().fingerprint() == before.fingerprint()
    assert settled(sim)
    driver.close()


def test_an_unconfirmed_commit_rolls_back_by_itself(junos: tuple[DeviceSimulator, dict[str, Any]]) -> None:
    sim, napalm = junos
    driver = driver_for(sim, "junos", confirm_minutes=1, **napalm)  # 3 s on this device's clock
    plan_and_apply(driver, FIRST)
    before = driver.fetch().fingerprint()
    driver.apply(render(driver, SECOND))
    assert_matches(driver, SECOND)  # active, under `commit confirmed 1`
    with sim.lock:
        assert sim.state.confirm is not None
    driver.pending = None  # the orchestrator "died": nobody confirms
    driver.close()
    deadline = time.monotonic() + 10
    while driver.fetch().fingerprint() != before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert driver.fetch().fingerprint() == before, "Junos did not roll back the unconfirmed commit"
    driver.close()


def test_a_connection_dropped_mid_load_changes_nothing_and_the_change_goes_through_again(
        junos: tuple[DeviceSimulator, dict[str, Any]]) -> None:
    sim, napalm = junos
    driver = driver_for(sim, "junos", **napalm)
    plan_and_apply(driver, FIRST)
    checkpoint = driver.checkpoint()
    change = render(driver, SECOND)
    assert len(change.commands) >= 4
    sim.faults.drop_after_config_lines = 2  # two lines reach the private candidate, then the connection drops
    with pytest.raises(TransientDriverError, match="NETCONF connection lost"):
        driver.apply(change)
    assert driver.fetch().fingerprint() == checkpoint.fingerprint  # the private candidate died with the session
    assert settled(sim)
    driver.apply(change)  # re-sent over a new session
    driver.confirm()
    assert_matches(driver, SECOND)
    assert settled(sim)
    driver.rollback(checkpoint)
    assert driver.fetch().fingerprint() == checkpoint.fingerprint
    driver.close()


def test_a_warning_is_not_a_refusal(junos: tuple[DeviceSimulator, dict[str, Any]]) -> None:
    """Junos answers a delete of a statement that is not there with an rpc-error of severity warning and loads
    the rest: the change goes through (the CLI transport tolerates the same warning)."""
    sim, napalm = junos
    driver = driver_for(sim, "junos", **napalm)
    plan_and_apply(driver, FIRST)
    change = render(driver, SECOND)
    ghost = "delete firewall family inet filter MSEG-INGRESS-V4 term T9999"
    driver.transport.push([ghost, *change.commands], 1)
    assert driver.transport.commit_sent
    driver.transport.confirm()
    assert ghost in sim.history
    assert_matches(driver, SECOND)
    assert settled(sim)
    driver.close()


def test_a_refused_commit_commits_nothing(junos: tuple[DeviceSimulator, dict[str, Any]]) -> None:
    sim, napalm = junos
    driver = driver_for(sim, "junos", **napalm)
    plan_and_apply(driver, FIRST)
    before = driver.fetch().fingerprint()
    sim.faults.refuse_commit = "mgd: commit failed: configuration database size limit exceeded"
    with pytest.raises(PermanentDriverError, match="size limit exceeded"):
        driver.apply(render(driver, SECOND))
    assert driver.pending is None  # nothing committed, nothing to confirm
    assert driver.fetch().fingerprint() == before
    assert settled(sim)  # the private candidate was closed, its edits gone
    plan_and_apply(driver, SECOND)  # and the next try goes through
    driver.close()


def test_a_commit_whose_answer_is_lost_is_still_confirmed(junos: tuple[DeviceSimulator, dict[str, Any]]) -> None:
    """The commit ran but its answer never came: the change is active under `commit confirmed`; confirming it
    (what the executor does once it sees the intended state) keeps it past the timer."""
    sim, napalm = junos
    driver = driver_for(sim, "junos", confirm_minutes=1, **napalm)  # 3 s on this device's clock
    plan_and_apply(driver, FIRST)
    sim.faults.drop_after_command = "commit-configuration"
    with pytest.raises(TransientDriverError):
        driver.apply(render(driver, SECOND))
    assert_matches(driver, SECOND)  # committed, pending confirmation
    assert driver.pending is not None
    driver.confirm()
    time.sleep(4)  # past the timer: confirmed, so nothing rolls back
    assert_matches(driver, SECOND)
    assert settled(sim)
    driver.close()


def test_someone_elses_uncommitted_edits_are_never_committed_with_ours(
        junos: tuple[DeviceSimulator, dict[str, Any]]) -> None:
    """A person left an uncommitted edit in the shared candidate: the private candidate is refused (a transient
    error: retried later), nothing of ours is loaded, and their edit is neither committed nor lost."""
    sim, napalm = junos
    driver = driver_for(sim, "junos", **napalm)
    plan_and_apply(driver, FIRST)
    before = driver.fetch().fingerprint()
    with ConnectHandler(device_type="juniper_junos", host="127.0.0.1", port=sim.port, username="admin",
                        password="admin") as person:
        person.send_config_set(["set system host-name edited-by-hand"], exit_config_mode=False)
        lines = sim.counters.config_lines
        with pytest.raises(TransientDriverError, match="someone else's uncommitted edits"):
            driver.apply(render(driver, SECOND))
        assert sim.counters.config_lines == lines  # not one line of ours loaded
        assert driver.pending is None  # nothing committed: nothing to confirm
        assert driver.fetch().fingerprint() == before
        with sim.lock:
            assert sim.state.shared != sim.state.active  # their edit is still there, uncommitted
            assert "edited-by-hand" not in str(sim.state.active)
    driver.close()


def test_host_keys_are_verified_as_for_the_cli(junos: tuple[DeviceSimulator, dict[str, Any]], tmp_path: Path) -> None:
    sim, napalm = junos
    scratch = set(Path(tempfile.gettempdir()).glob("microseg-netconf-*"))  # the transport's own ssh_config files
    known_hosts = tmp_path / "known_hosts"
    strict = driver_for(sim, "junos", host_key_policy="strict", known_hosts=str(known_hosts), **napalm)
    with pytest.raises(PermanentDriverError, match=r"host key rejected: .* is not in .*strict"):
        strict.fetch()
    first = driver_for(sim, "junos", known_hosts=str(known_hosts), **napalm)  # accept-new: recorded, then used
    first.fetch()
    first.close()
    assert f"[127.0.0.1]:{sim.port} ssh-ed25519 " in known_hosts.read_text()
    driver_for(sim, "junos", host_key_policy="strict", known_hosts=str(known_hosts), **napalm).fetch()
    sessions = sim.counters.sessions
    with serving_host_key(sim, new_host_key()):  # someone else answers on that address
        impostor = driver_for(sim, "junos", known_hosts=str(known_hosts), **napalm)
        with pytest.raises(PermanentDriverError, match="host key rejected"):
            impostor.fetch()
    assert sim.counters.sessions == sessions + 1  # refused during the key exchange: no login, no retry
    sim.password = "other"
    with pytest.raises(PermanentDriverError, match="NETCONF authentication failed"):
        driver_for(sim, "junos", known_hosts=str(known_hosts), **napalm).fetch()
    assert sim.counters.config_lines == 0
    assert set(Path(tempfile.gettempdir()).glob("microseg-netconf-*")) == scratch  # none left, refused or not


def test_an_answer_that_is_not_netconf_fails_closed(junos: tuple[DeviceSimulator, dict[str, Any]]) -> None:
    """ncclient drops a message it cannot parse, so garbage reads as no answer: the fetch fails naming what it
    asked, the session is dropped (its state is unknown), and the next fetch starts clean."""
    sim, napalm = junos
    driver = driver_for(sim, "junos", **napalm)
    sim.faults.garbage["get-configuration"] = "% Invalid input detected at '^' marker."
    with pytest.raises(TransientDriverError, match=r"show configuration firewall .*no NETCONF answer within 10 s"):
        driver.fetch()
    assert driver.transport._device is None
    del sim.faults.garbage["get-configuration"]
    assert driver.normalize(driver.fetch()).ruleset is not None
    driver.close()


def test_curly_brace_text_loads_as_the_set_lines_it_means() -> None:
    text = """
    /* a comment */
    firewall {
        family inet {
            filter F {
                term t1 {
                    from {
                        source-address {
                            10.0.0.0/8;
                        }
                        protocol [ tcp udp ];
                    }
                    then accept;
                }
            }
        }
    }
    """
    assert text_to_set(text) == [
        "set firewall family inet filter F term t1 from source-address 10.0.0.0/8",
        "set firewall family inet filter F term t1 from protocol tcp",
        "set firewall family inet filter F term t1 from protocol udp",
        "set firewall family inet filter F term t1 then accept",
    ]


def test_the_worked_examples_junos_firewall_over_napalm_through_the_engine(fleet: Fleet, tmp_path: Path) -> None:  # noqa: F811
    """The inventory's settings pick the transport: the engine plans, applies, verifies, confirms and rolls back
    the Junos firewall over NETCONF, beside the other three switches over the CLI."""
    hosts_file = fleet.inventory / "hosts.yaml"
    hosts = yaml.safe_load(hosts_file.read_text())
    sim = fleet.sims["fw-shared-junos"]
    hosts["fw-shared-junos"]["data"]["microseg"]["settings"].update(transport="napalm", netconf_port=sim.port)
    hosts_file.write_text(yaml.safe_dump(hosts, sort_keys=False))
    with fleet.engine(f"sqlite:///{tmp_path}/state.db") as engine:
        plan = engine.plan(list(SWITCHES))
        assert not plan.failures, plan.failures
        commands = sim.counters.commands
        result = apply_plan(engine, plan, ApplyOptions(), {})
        assert result.by_state() == {"new": sorted(SWITCHES)}, result.to_dict()
        assert not engine.plan(list(SWITCHES)).changes  # verified and confirmed: nothing left to do
        sent = list(sim.history)[-(sim.counters.commands - commands):]
        assert "<commit-configuration>" in sent and "<load-configuration>" in sent  # over NETCONF …
        assert not any(line.startswith(("configure", "commit")) for line in sent)  # … not one CLI line
        assert settled(sim)
        back = rollback_run(engine, result.run_id)
        assert back.by_state() == {"restored": sorted(SWITCHES)}, back.to_dict()
        assert settled(sim)
