"""Switch drivers under faults, against the SSH simulators: refused lines, lost sessions, timers that revert,
garbage answers, and CLI lines that grow with the delta."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import paramiko
import pytest

from drivers.cisco_ios import IosDriver
from drivers.netacl.errors import RejectedLine
from drivers.testing import assert_matches, plan_and_apply
from orchestrator.model.driver import Connection, PointContext
from orchestrator.model.errors import MicrosegError, ParseError, PermanentDriverError
from simulators.netdev.server import DeviceSimulator
from tests.netdev_kit import (
    APP,
    DRIVERS,
    FIRST,
    IN,
    INTERFACES,
    MEMBERS,
    PERMIT,
    PLATFORMS,
    SECOND,
    driver_for,
    render,
    rule,
    ruleset,
    simulator,
)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_a_refused_line_leaves_the_device_old_and_names_device_and_line(platform: str) -> None:
    with simulator(platform) as sim:
        driver = driver_for(sim, platform)
        plan_and_apply(driver, FIRST)
        before = driver.fetch()
        change = render(driver, SECOND)
        sim.faults.reject = "5432"  # the device refuses the one line naming port 5432
        with pytest.raises(RejectedLine) as caught:
            driver.apply(change)
        assert "sw:" in caught.value.message and "5432" in caught.value.line
        assert driver.fetch().fingerprint() == before.fingerprint(), "a refused change must leave the device old"
        assert_matches(driver, FIRST)
        driver.close()


def test_a_refusal_is_charged_to_the_line_echoed_last_before_it_even_when_lines_repeat() -> None:
    from drivers.netacl.transport import _refused_line

    chunk = ["ip access-list A", "statistics per-entry", "10 permit tcp any any eq 5432", "ip access-list B",
             "statistics per-entry", "10 permit ip any any"]
    echoed = "sw(config)# ip access-list A\nsw(config-acl)# statistics per-entry\nsw(config-acl)# 10 permit tcp any " \
             "any eq 5432\n"  # the error follows this echo; the later lines were echoed after it
    assert _refused_line(chunk, echoed) == "10 permit tcp any any eq 5432"
    assert _refused_line(chunk, "") == "ip access-list A"


def test_an_unreadable_counter_answer_leaves_counters_unknown_and_the_fetch_whole(
        caplog: pytest.LogCaptureFixture) -> None:
    """Junos lists hit counters apart from the configuration: an answer microseg cannot read there (a login
    class without `show firewall`, a filter gone between the two commands) is evidence lost, never a failed
    fetch — checkpoints, verification and rollbacks read through the same fetch."""
    with simulator("junos") as sim:
        driver = driver_for(sim, "junos")
        plan_and_apply(driver, FIRST)
        whole = driver.fetch()
        counted = driver.normalize(whole).hits
        assert counted and None not in counted
        sim.faults.garbage["show firewall filter MSEG-INGRESS-V4"] = "error: permission denied\n"
        with caplog.at_level("WARNING", logger="drivers.netacl.base"):
            degraded = driver.fetch()
        assert degraded.fingerprint() == whole.fingerprint()
        hits = driver.normalize(degraded).hits
        assert not hits or None in hits  # that filter's counters unknown (all of them: no hits at all)
        assert "sw: hit counters not read (they stay unknown)" in caplog.text and "permission denied" in caplog.text
        driver.close()


@pytest.mark.parametrize("platform", PLATFORMS)
def test_garbage_from_the_device_is_a_parse_error_naming_the_point(platform: str) -> None:
    with simulator(platform) as sim:
        driver = driver_for(sim, platform)
        owned = [(name, family) for name, (_, family) in driver.settings.owned_names().items()]
        command = type(driver).syntax.fetch_commands(owned)[0]  # the listing of an owned ACL
        sim.faults.garbage[command] = "%$#@ this is not an ACL listing\n  <<>>"
        with pytest.raises(ParseError) as caught:
            driver.fetch()
        assert caught.value.point == "sw" and "line 1" in caught.value.message
        assert command in caught.value.message or "show configuration" in caught.value.message
        if platform != "junos":  # the ACL it was asked for is named: garbage never reads as "no such ACL"
            assert f"owned ACL {owned[0][0]}" in caught.value.message
        driver.close()


@pytest.mark.parametrize("platform", PLATFORMS)
def test_lines_sent_grow_with_the_delta_not_the_acl(platform: str) -> None:
    """The same one-rule insert costs the same lines on a 10-entry and a 120-entry ACL (see benchmarks/switches.py
    for 2,000 entries)."""
    sent: dict[int, tuple[int, int]] = {}
    for size in (10, 120):
        big = tuple(rule(PERMIT, IN, 6, f"10.{100 + i // 250}.{i % 250}.0/24", "10.30.1.0/24", (443, 443))
                    for i in range(size))
        with simulator(platform) as sim:
            driver = driver_for(sim, platform)
            plan_and_apply(driver, ruleset(big))
            one_more = ruleset((*big[: size // 2], APP, *big[size // 2:]))
            sim.counters.config_lines = 0
            change, report = plan_and_apply(driver, one_more)
            assert report is not None and [c for c in change.commands if "8080" in c]
            assert_matches(driver, one_more)
            sent[size] = (len(change.commands), sim.counters.config_lines)
            driver.close()
    assert sent[10] == sent[120], sent
    assert sent[120][0] <= 7  # the ACL context and one entry; Junos: one term's `set` lines and an `insert`


@pytest.mark.parametrize("platform", ["ios", "eos", "junos"])
def test_an_unconfirmed_change_reverts_by_itself(platform: str) -> None:
    with simulator(platform, minute_seconds=1.0) as sim:
        driver = driver_for(sim, platform, confirm_minutes=2)
        plan_and_apply(driver, FIRST)
        before = driver.fetch().fingerprint()
        driver.apply(render(driver, SECOND))
        assert_matches(driver, SECOND)  # active now, pending confirmation
        driver.pending = None  # the orchestrator "died": nobody will confirm
        driver.close()
        deadline = time.monotonic() + 10
        while driver.fetch().fingerprint() != before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert driver.fetch().fingerprint() == before, "the device did not revert the unconfirmed change"
        driver.close()


@pytest.mark.parametrize("platform", PLATFORMS)
def test_a_session_lost_mid_change_ends_old_or_new_and_rollback_restores(platform: str) -> None:
    with simulator(platform, minute_seconds=1.0) as sim:
        driver = driver_for(sim, platform)
        plan_and_apply(driver, FIRST)
        checkpoint = driver.checkpoint()
        change = render(driver, SECOND)
        assert len(change.commands) >= 4
        sim.faults.drop_after_config_lines = 2
        with pytest.raises(MicrosegError):
            driver.apply(change)
        driver.rollback(checkpoint)  # what the executor does with a point that is neither old nor new
        assert driver.fetch().fingerprint() == checkpoint.fingerprint
        time.sleep(1.5)  # any revert timer that was running has fired by now: still the checkpoint
        assert driver.fetch().fingerprint() == checkpoint.fingerprint
        driver.close()


def test_a_key_only_simulator_takes_the_authorized_key_and_refuses_passwords(tmp_path: Path) -> None:
    key = paramiko.Ed25519Key.from_private_key_file(str(_keypair(tmp_path)))
    public = f"{key.get_name()} {key.get_base64()} lab"
    sim = DeviceSimulator("ios", "lab-ios", username="microseg", password="", authorized_keys=[public],
                          interfaces=["Vlan301"])
    with sim.start():
        context = PointContext("sw", "ios", Connection("127.0.0.1", sim.port, "microseg", None, "ios"),
                               {"bindings": ["Vlan301"], "key_file": str(tmp_path / "id")}, timeout=5.0,
                               members=MEMBERS)
        driver = IosDriver(context)
        assert driver.normalize(driver.fetch()).ruleset.rules == ()
        driver.close()
        guess = IosDriver(PointContext("sw", "ios", Connection("127.0.0.1", sim.port, "microseg", "", "ios"),
                                       {"bindings": ["Vlan301"]}, timeout=5.0, members=MEMBERS))
        with pytest.raises(MicrosegError, match="authentication"):
            guess.fetch()


def _keypair(directory: Path) -> Path:
    path = directory / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


@pytest.mark.parametrize("platform", PLATFORMS)
def test_nothing_listening_is_one_line_and_not_retried(platform: str) -> None:
    """A refused connection is permanent for the run (nothing listens; retrying will not change it) and says
    where, in one line, without netmiko's list of common causes."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    settings = {"bindings": [{"interface": i} for i in INTERFACES[platform][:2]]}
    driver = DRIVERS[platform](PointContext("sw", platform, Connection("127.0.0.1", port, "admin", "admin",
                                                                       platform), settings, timeout=10.0,
                                            members=MEMBERS))
    started = time.monotonic()
    with pytest.raises(PermanentDriverError) as caught:
        driver.fetch()
    assert time.monotonic() - started < 5
    message = caught.value.message
    assert f"cannot connect to 127.0.0.1:{port}: connection refused" in message and "\n" not in message
    assert "Common causes" not in message


@pytest.mark.parametrize(("platform", "line"), [("nxos", "statistics per-entry"), ("eos", "counters per-entry")])
def test_entry_counters_false_writes_the_no_form_and_the_listing_stops_counting(platform: str, line: str) -> None:
    """`entry_counters` (default true) decides the per-entry counter line of every ACL a change edits; false
    writes its `no` form, so an ACL that counted stops (scarce hardware counters)."""
    def listings() -> str:  # both platforms list the property as `statistics per-entry`
        return sim.cli("show ip access-lists MSEG-INGRESS-V4")

    with simulator(platform) as sim:
        counting = driver_for(sim, platform)
        plan_and_apply(counting, FIRST)
        assert "statistics per-entry" in listings()
        quiet = driver_for(sim, platform, entry_counters=False)
        change = render(quiet, SECOND)
        assert f"no {line}" in change.commands and line not in change.commands
        assert "ip access-list MSEG-INGRESS-V4" in change.commands  # the ACL the check below lists is edited
        quiet.apply(change)
        quiet.confirm()
        assert_matches(quiet, SECOND)
        assert "statistics per-entry" not in listings()
        counting.close()
        quiet.close()
