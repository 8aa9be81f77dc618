"""The Cisco IOS-XE and NX-OS SSH simulators, driven through unmodified netmiko over real SSH on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
from netmiko import BaseConnection, ConnectHandler
from netmiko.exceptions import ConfigInvalidException

from simulators.netdev.server import DeviceSimulator

REPO = Path(__file__).resolve().parents[1]
CAPTURES = REPO.parent / "shared" / "fixtures" / "device-outputs"
NETMIKO = {"ios": "cisco_ios", "nxos": "cisco_nxos"}
SHOW = {"ios": "show ip access-lists", "nxos": "show access-lists"}
ACL_MODE = {"ios": "ip access-list extended", "nxos": "ip access-list"}
INTERFACES = {"ios": ("Vlan301", "Vlan302", "GigabitEthernet1/0/1"), "nxos": ("Vlan202", "Ethernet1/1")}
SVI = {"ios": "Vlan301", "nxos": "Vlan202"}


def start(personality: str, **kwargs: Any) -> DeviceSimulator:
    """A started simulator on 127.0.0.1 (random port), hostname ``leaf1``."""
    kwargs.setdefault("interfaces", INTERFACES[personality])
    return DeviceSimulator(personality, "leaf1", **kwargs).start()


def connect(sim: DeviceSimulator, **kwargs: Any) -> BaseConnection:
    return ConnectHandler(device_type=NETMIKO[sim.personality_name], host="127.0.0.1", port=sim.port,
                          username="admin", password="admin", conn_timeout=5, **kwargs)


@pytest.fixture(params=["ios", "nxos"])
def sim(request: pytest.FixtureRequest) -> Iterator[DeviceSimulator]:
    with start(request.param, minute_seconds=1.0) as device:
        yield device


@pytest.fixture
def ios() -> Iterator[DeviceSimulator]:
    with start("ios", minute_seconds=1.0) as device:
        yield device


@pytest.fixture
def nxos() -> Iterator[DeviceSimulator]:
    with start("nxos") as device:
        yield device


def wait_until(predicate: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


# -- show output: exact text --------------------------------------------------------------------------


def test_ios_acls_ipv6_and_bindings_show_exactly(ios: DeviceSimulator) -> None:
    with connect(ios) as conn:
        conn.send_config_set([
            "ip access-list extended MSEG-INGRESS-V4",
            "10 permit tcp 10.0.0.0 0.0.0.255 host 10.30.1.5 eq 80",
            "20 permit udp any range 16384 32767 10.1.1.0 0.0.0.255 eq 53",
            "permit icmp any 10.30.1.0 0.0.0.255 8",
            "40 deny ip any any log",
            "ipv6 access-list MSEG-INGRESS-V6",
            "sequence 10 permit tcp any 2001:db8::/64 eq 80",
            "permit icmp any host 2001:db8::1 echo-request",
            "sequence 30 deny ipv6 any any",
            "interface Vlan301",
            "ip access-group MSEG-INGRESS-V4 out",
            "ipv6 traffic-filter MSEG-INGRESS-V6 out",
        ], error_pattern=r"% Invalid")
        assert conn.send_command("show ip access-lists") == (
            "Extended IP access list MSEG-INGRESS-V4\n"
            "    10 permit tcp 10.0.0.0 0.0.0.255 host 10.30.1.5 eq www\n"
            "    20 permit udp any range 16384 32767 10.1.1.0 0.0.0.255 eq domain\n"
            "    30 permit icmp any 10.30.1.0 0.0.0.255 echo\n"
            "    40 deny ip any any log"
        )
        assert conn.send_command("show ipv6 access-list") == (
            "IPv6 access list MSEG-INGRESS-V6\n"
            "    permit tcp any 2001:DB8::/64 eq www sequence 10\n"
            "    permit icmp any host 2001:DB8::1 echo-request sequence 20\n"
            "    deny ipv6 any any sequence 30"
        )
        assert conn.send_command("show running-config | section ^interface") == (
            "interface Vlan301\n"
            " ip access-group MSEG-INGRESS-V4 out\n"
            " ipv6 traffic-filter MSEG-INGRESS-V6 out\n"
            "interface Vlan302\n"
            "interface GigabitEthernet1/0/1"
        )


def test_nxos_acls_ipv6_and_bindings_show_exactly(nxos: DeviceSimulator) -> None:
    with connect(nxos) as conn:
        conn.send_config_set([
            "ip access-list MSEG-INGRESS-V4",
            "10 permit tcp 10.0.0.0/24 10.30.1.5/32 eq 80",
            "20 permit udp any host 10.1.1.1 range 16384 32767",
            "permit icmp any 10.30.1.0/24 echo",
            "40 deny ip any any log",
            "ipv6 access-list MSEG-INGRESS-V6",
            "10 permit tcp any 2001:DB8::/64 eq 443",
            "20 deny ipv6 any any",
            "interface Vlan202",
            "ip access-group MSEG-INGRESS-V4 out",
            "ipv6 traffic-filter MSEG-INGRESS-V6 in",
        ], error_pattern=r"% Invalid")
        assert conn.send_command("show access-lists") == (
            "IP access list MSEG-INGRESS-V4\n"
            "        10 permit tcp 10.0.0.0/24 10.30.1.5/32 eq www\n"
            "        20 permit udp any 10.1.1.1/32 range 16384 32767\n"
            "        30 permit icmp any 10.30.1.0/24 echo\n"
            "        40 deny ip any any log\n"
            "IPv6 access list MSEG-INGRESS-V6\n"
            "        10 permit tcp any 2001:db8::/64 eq 443\n"
            "        20 deny ipv6 any any\n"
        )
        running = conn.send_command("show running-config interface")
        section = ("\ninterface Vlan202\n  ip access-group MSEG-INGRESS-V4 out\n"
                   "  ipv6 traffic-filter MSEG-INGRESS-V6 in\n")
        assert section in running + "\n"
        assert running.splitlines()[1] == "!Command: show running-config interface"


def capture_blocks(name: str) -> list[list[str]]:
    """The capture's ACLs: [header, entry, …] each."""
    blocks: list[list[str]] = []
    for line in (CAPTURES / name).read_text().splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            blocks.append([line])
        else:
            blocks[-1].append(line)
    return blocks


def test_ios_reproduces_the_capture_from_its_own_entries(ios: DeviceSimulator) -> None:
    headers = {"Extended IP access list": "ip access-list extended",
               "Standard IP access list": "ip access-list standard"}
    wanted, config = [], []
    for block in capture_blocks("cisco_ios_show_ip_access-lists.raw"):
        kind, name = block[0].rsplit(" ", 1)
        lines = [line.replace(" (20 matches)", "") for line in block[1:]]
        # left out: counters are traffic, time ranges, match-all flags, ssh/http port names and an
        # address with host bits under its wildcard are not what this IOS-XE simulator prints
        left_out = ("time-range", "match-all", "ssh", "established psh")
        lines = [line for line in lines if not any(word in line for word in left_out)]
        wanted += [block[0], *lines]
        config += [f"{headers[kind]} {name}"]
        config += [line.strip().replace(", wildcard bits", "") for line in lines]
    assert len(config) > 70
    with connect(ios) as conn:
        conn.send_config_set(config, error_pattern=r"% Invalid")
        assert conn.send_command("show ip access-lists").splitlines() == wanted
        sample = conn.send_command("show ip access-lists sample").splitlines()
    capture = [block for block in capture_blocks("cisco_ios_show_ip_access-lists.raw") if block[0].endswith(" sample")]
    assert sample == [line for line in capture[0] if "time-range" not in line]
    assert len(sample) > 60


def test_nxos_reproduces_the_capture_from_its_own_entries(nxos: DeviceSimulator) -> None:
    blocks = [b for b in capture_blocks("cisco_nxos_show_access-lists.raw") if not b[0].startswith("MAC")]
    config = []
    for block in blocks:
        kind, name = block[0].split(" access list ")
        config.append(f"{'ip' if kind == 'IP' else 'ipv6'} access-list {name}")
        config += [line.strip() for line in block[1:]]
    with connect(nxos) as conn:
        conn.send_config_set(config, error_pattern=r"% Invalid")
        output = conn.send_command("show access-lists", strip_prompt=True)
    assert output.splitlines() == [line for block in blocks for line in block]
    assert sum(len(b) - 1 for b in blocks) == 20  # every IP and IPv6 entry of the capture


# -- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("personality", "line", "bad"),
    [
        ("ios", "10 permit tcp any any eq 99999", "99999"),
        ("ios", "20 permit ip 10.0.0.300 0.0.0.255 any", "10.0.0.300"),
        ("ios", "30 permit tcp any any eq 80 bogus", "bogus"),
        ("ios", "40 permit ip 10.0.0.0/24 any", "10.0.0.0/24"),
        ("ios", "50 permit udp any any eq telnet", "telnet"),
        ("nxos", "10 permit tcp any any eq 99999", "99999"),
        ("nxos", "20 permit ip 10.0.0.0/33 any", "10.0.0.0/33"),
        ("nxos", "30 allow ip any any", "allow"),
        ("nxos", "40 permit tcp any any range 90 80", "80"),
    ],
)
def test_invalid_input_is_refused_with_a_caret_under_the_token(personality: str, line: str, bad: str) -> None:
    device = start(personality)
    try:
        with connect(device) as conn:
            with pytest.raises(ConfigInvalidException):
                conn.send_config_set([f"{ACL_MODE[personality]} A", line], error_pattern=r"% Invalid")
            conn.send_command("end", expect_string=r"#")
            assert conn.send_command(SHOW[personality]).splitlines()[1:] == []  # the ACL exists, empty
            output = conn.send_config_set([f"{ACL_MODE[personality]} A", line])
        prompt = "leaf1(config-ext-nacl)#" if personality == "ios" else "leaf1(config-acl)#"
        message = {"ios": "% Invalid input detected at '^' marker.",
                   "nxos": "% Invalid command at '^' marker."}[personality]
        expected = f"{prompt}{line}\n{' ' * (len(prompt) + line.index(bad))}^\n{message}\n"
        assert expected in output
    finally:
        device.stop()


def test_duplicate_sequence_numbers_are_refused(sim: DeviceSimulator) -> None:
    personality = sim.personality_name
    output = sim.cli("configure terminal", f"{ACL_MODE[personality]} A", "10 permit ip any any", "10 deny ip any any")
    assert output.endswith("% Duplicate sequence number\n" if personality == "ios" else "Duplicate sequence number\n")
    assert "deny" not in sim.cli(SHOW[personality])


def test_entries_without_numbers_take_last_plus_ten_and_no_removes(sim: DeviceSimulator) -> None:
    personality = sim.personality_name
    sim.cli("configure terminal", f"{ACL_MODE[personality]} A", "15 permit tcp any any eq 22",
            "permit udp any any eq 53", "5 deny ip any any", "no 15", "end")
    lines = sim.cli(SHOW[personality]).splitlines()
    assert [line.split()[0] for line in lines[1:] if line] == ["5", "25"]


def test_resequence_renumbers(sim: DeviceSimulator) -> None:
    personality = sim.personality_name
    command = "ip access-list resequence A 10 10" if personality == "ios" else "resequence ip access-list A 10 10"
    sim.cli("configure terminal", f"{ACL_MODE[personality]} A", "3 permit tcp any any eq 22", "4 deny ip any any",
            "exit", command, "end")
    lines = sim.cli(SHOW[personality]).splitlines()
    assert [line.split()[0] for line in lines[1:] if line] == ["10", "20"]


def test_deleted_acl_stays_bound_and_shows_nothing(sim: DeviceSimulator) -> None:
    personality = sim.personality_name
    name = "ip access-list extended A" if personality == "ios" else "ip access-list A"
    sim.cli("configure terminal", name, "permit ip any any", f"interface {SVI[personality]}",
            "ip access-group A in", f"no {name}", "end")
    assert sim.cli(SHOW[personality]) == ""
    assert "ip access-group A in" in sim.cli("show running-config")


# -- safety: IOS revert timer, NX-OS checkpoints -------------------------------------------------------


def test_ios_revert_timer_reverts_unless_confirmed(ios: DeviceSimulator) -> None:
    change = ["ip access-list extended A", "10 permit ip any any"]
    with connect(ios) as conn:
        conn.send_config_set(change, config_mode_command="configure terminal revert timer 1")
        assert "Extended IP access list A" in conn.send_command("show ip access-lists")
        assert wait_until(lambda: ios.cli("show ip access-lists") == "", 3.0), "not reverted"
        conn.send_config_set(change, config_mode_command="configure terminal revert timer 1")
        conn.send_command("configure confirm")
        time.sleep(1.5)
        assert "10 permit ip any any" in conn.send_command("show ip access-lists")
        assert conn.send_command("configure revert now") == "% No Rollback Confirmed Change pending"


def test_ios_revert_now_restores_everything(ios: DeviceSimulator) -> None:
    ios.cli("configure terminal", "ip access-list extended KEEP", "10 permit ip any any", "end")
    before = ios.cli("show running-config")
    ios.cli("configure terminal revert timer 5", "no ip access-list extended KEEP", "interface Vlan301",
            "ip access-group X in", "hostname other", "end")
    assert "other uptime" in ios.cli("show version")
    assert ios.cli("show running-config") != before
    ios.cli("configure revert now")
    assert ios.cli("show running-config") == before


def test_a_lost_session_leaves_the_revert_timer_running() -> None:
    ios = start("ios", minute_seconds=3.0)
    ios.faults.drop_after_config_lines = 2
    conn = connect(ios)
    with pytest.raises(Exception):  # netmiko cannot tell a reset channel: it times out waiting for the echo
        conn.send_config_set(["ip access-list extended A", "10 permit ip any any", "20 deny ip any any"],
                             config_mode_command="configure terminal revert timer 1", read_timeout=0.5)
    conn.disconnect()
    assert ios.faults.drop_after_config_lines is None  # one-shot
    assert ios.cli("show ip access-lists") == "Extended IP access list A\n    10 permit ip any any\n"
    assert wait_until(lambda: ios.session_count() == 0)
    assert wait_until(lambda: ios.cli("show ip access-lists") == "", 6.0), "the timer must survive the session"
    ios.stop()


def test_nxos_checkpoint_and_rollback_restore(nxos: DeviceSimulator) -> None:
    with connect(nxos) as conn:
        conn.send_config_set(["ip access-list KEEP", "10 permit ip any any", "interface Vlan202",
                              "ip access-group KEEP in"])
        before = conn.send_command("show access-lists") + conn.send_command("show running-config interface Vlan202")
        assert conn.send_command("checkpoint mseg-1") == "Done"
        assert conn.send_command("checkpoint mseg-1").startswith("ERROR")
        conn.send_config_set(["no ip access-list KEEP", "ip access-list NEW", "10 deny ip any any",
                              "interface Vlan202", "no ip access-group KEEP in"])
        assert "NEW" in conn.send_command("show access-lists")
        output = conn.send_command("rollback running-config checkpoint mseg-1")
        assert output.splitlines()[-1] == "Rollback completed successfully."
        after = conn.send_command("show access-lists") + conn.send_command("show running-config interface Vlan202")
        assert _without_times(after) == _without_times(before)
        assert conn.send_command("no checkpoint mseg-1") == ""
        assert conn.send_command("rollback running-config checkpoint mseg-1").startswith("ERROR")


def _without_times(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("!"))


# -- faults and counters -----------------------------------------------------------------------------


def test_reject_garbage_delay_and_counters(sim: DeviceSimulator) -> None:
    personality = sim.personality_name
    sim.faults.reject = r"eq 5432"
    sim.faults.garbage[SHOW[personality]] = "%$#@ not an ACL"
    with connect(sim) as conn:
        base = sim.counters.config_lines
        with pytest.raises(ConfigInvalidException):
            conn.send_config_set([f"{ACL_MODE[personality]} A", "10 permit tcp any any eq 5432"],
                                 error_pattern=r"% Invalid")
        assert sim.faults.reject is None
        assert sim.counters.config_lines - base == 2
        assert conn.send_command(SHOW[personality]) == "%$#@ not an ACL"
        del sim.faults.garbage[SHOW[personality]]
        assert "5432" not in conn.send_command(SHOW[personality])
        sim.faults.delay = 0.3
        started = time.monotonic()
        conn.send_command("show version")
        assert time.monotonic() - started >= 0.3
        sim.faults.delay = 0.0


def test_concurrent_sessions_share_one_device(sim: DeviceSimulator) -> None:
    personality = sim.personality_name

    def edit(name: str) -> None:
        with connect(sim) as conn:
            conn.send_config_set([f"{ACL_MODE[personality]} {name}", "10 permit ip any any"])

    threads = [threading.Thread(target=edit, args=(f"ACL{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    shown = sim.cli(SHOW[personality])
    assert all(f"access list ACL{i}" in shown for i in range(3))
    assert sim.counters.sessions == 3


def test_a_full_session_is_fast(sim: DeviceSimulator) -> None:
    personality = sim.personality_name
    started = time.monotonic()
    with connect(sim) as conn:
        for command in (SHOW[personality], "show running-config", "show version"):
            conn.send_command(command)
        entries = [f"{i} permit ip any host 10.0.0.{i}" for i in range(1, 10)]
        conn.send_config_set([f"{ACL_MODE[personality]} A", *entries])
    assert time.monotonic() - started < 2.0  # ~0.6 s here; generous for loaded CI machines


def test_pagination_until_terminal_length_zero() -> None:
    with start("ios") as device:
        device.cli("configure terminal", "ip access-list extended BIG",
                   *(f"{i} permit ip any host 10.0.0.{i}" for i in range(1, 41)), "end")
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        client.connect("127.0.0.1", device.port, "admin", "admin", look_for_keys=False, allow_agent=False)
        try:
            chan = client.invoke_shell()
            read_until(chan, "leaf1#")
            chan.send(b"show ip access-lists\n")
            assert "--More--" in read_until(chan, "--More--")
            chan.send(b" ")
            rest = read_until(chan, "leaf1#")
            assert "40 permit ip any host 10.0.0.40" in rest
            chan.send(b"terminal length 0\nshow ip access-lists\n")
            assert "More" not in read_until(chan, "10.0.0.40\r\nleaf1#")
        finally:
            client.close()


def read_until(chan: paramiko.Channel, marker: str, seconds: float = 5.0) -> str:
    data = ""
    deadline = time.monotonic() + seconds
    while marker not in data and time.monotonic() < deadline:
        if chan.recv_ready():
            data += chan.recv(65536).decode()
        else:
            time.sleep(0.01)
    assert marker in data, data
    return data


def test_stop_ends_sessions_threads_and_timers() -> None:
    device = start("ios", minute_seconds=60.0)
    conn = connect(device)
    conn.send_config_set(["ip access-list extended A"], config_mode_command="configure terminal revert timer 5")
    device.stop()
    with contextlib.suppress(EOFError, OSError):  # the device is gone: no polite logout (a reset may surface here)
        conn.paramiko_cleanup()
    assert not [t for t in threading.enumerate() if t.name.startswith("sim-leaf1")]
    assert device.session_count() == 0 and not device._timers
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", device.port), timeout=1):
        pass


def test_abbreviations_and_wrong_password(ios: DeviceSimulator) -> None:
    assert ios.cli("conf t", "ip access-l ext A", "permit ip any any", "end", "sh ip access-l") == (
        "Enter configuration commands, one per line.  End with CNTL/Z.\n"
        "Extended IP access list A\n    10 permit ip any any\n"
    )
    with pytest.raises(Exception, match=r"(?i)authentication"):
        ConnectHandler(device_type="cisco_ios", host="127.0.0.1", port=ios.port, username="admin", password="x",
                       conn_timeout=5)


def test_boot_config_and_bad_boot_config() -> None:
    device = DeviceSimulator("nxos", "nx", interfaces=["Vlan202"],
                             boot_config=["ip access-list B", "10 permit ip any any", "interface Vlan202",
                                          "ip access-group B in"])
    assert "ip access-group B in" in device.cli("show running-config interface")
    with pytest.raises(ValueError, match="boot line"):
        DeviceSimulator("ios", "x", boot_config=["ip access-list extended B", "10 permit tcp any any eq 99999"])
    with pytest.raises(ValueError):
        DeviceSimulator("ios", "x", host="0.0.0.0")


# -- the fleet command -------------------------------------------------------------------------------


def test_fleet_serves_until_sigterm(tmp_path: Path) -> None:
    spec = [
        {"name": "a", "personality": "ios", "hostname": "fleet-a", "port": 0, "interfaces": ["Vlan301"],
         "boot_config": ["ip access-list extended F", "10 permit ip any any"]},
        {"name": "b", "personality": "nxos", "hostname": "fleet-b", "username": "ops", "password": "pw"},
        {"name": "c", "personality": "ios", "hostname": "fleet-c", "minute_seconds": 1.0},
    ]
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "simulators.netdev", "fleet", str(tmp_path / "spec.json")],
                            stdout=subprocess.PIPE, text=True, cwd=REPO, env=env)
    try:
        assert proc.stdout is not None
        ports = json.loads(proc.stdout.readline())
        assert sorted(ports) == ["a", "b", "c"]
        with ConnectHandler(device_type="cisco_ios", host="127.0.0.1", port=ports["a"], username="admin",
                            password="admin") as conn:
            assert conn.find_prompt() == "fleet-a#"
            assert "10 permit ip any any" in conn.send_command("show ip access-lists F")
        with ConnectHandler(device_type="cisco_nxos", host="127.0.0.1", port=ports["b"], username="ops",
                            password="pw") as conn:
            assert conn.find_prompt() == "fleet-b#"
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(10) == 0
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", ports["c"]), timeout=1):
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
