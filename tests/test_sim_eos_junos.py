"""The EOS and Junos device simulators: their CLI line by line, then through unmodified netmiko over real SSH."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from netmiko import ConnectHandler
from netmiko.exceptions import ConfigInvalidException, ReadTimeout

from simulators.netdev.eos import EosPersonality
from simulators.netdev.junos import JunosPersonality
from simulators.netdev.personality import Personality, SessionEnd, personality_class, registered
from simulators.netdev.server import DeviceSimulator

CAPTURE = Path(__file__).resolve().parents[2] / "shared/fixtures/device-outputs/arista_eos_show_ip_access-lists.raw"
USER_ACLS = ("TEST_1", "test2", "test3")  # the capture's ACLs a user can create (the fourth is a readonly system ACL)
EOS_ERROR = r"^% ?(Invalid input|Incomplete command|Error)"
JUNOS_ERROR = r"syntax error|\berror:|unknown command|missing argument"


def capture_blocks() -> dict[str, list[str]]:
    """ACL name -> the capture's lines for it (header + entries), blank separator lines left out."""
    blocks: dict[str, list[str]] = {}
    name = ""
    for line in CAPTURE.read_text().splitlines():
        if line.startswith("IP Access List "):
            name = line.split()[3]
            blocks[name] = [line]
        elif line.strip():
            blocks[name].append(line)
    return blocks


def eventually(check: Callable[[], bool], seconds: float = 8.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


class Cli:
    """One CLI session on a (not started) simulator, driven line by line under the device lock."""

    def __init__(self, sim: DeviceSimulator) -> None:
        self.sim = sim
        with sim.lock:
            self.personality: Personality = sim.personality_cls(sim)

    def __call__(self, *lines: str) -> str:
        with self.sim.lock:
            return "".join(self.personality.respond(line) for line in lines)

    @property
    def prompt(self) -> str:
        with self.sim.lock:
            return self.personality.prompt()

    def lose(self) -> None:
        with self.sim.lock:
            self.personality.session_lost()


@pytest.fixture
def eos_sim() -> Iterator[DeviceSimulator]:
    sim = DeviceSimulator("eos", "leaf1", minute_seconds=0.6, interfaces=("Ethernet1", "Vlan201", "Vlan299"))
    yield sim
    sim.stop()


@pytest.fixture
def junos_sim() -> Iterator[DeviceSimulator]:
    sim = DeviceSimulator("junos", "r1", username="ops", minute_seconds=0.3, interfaces=("irb.100", "ge-0/0/0"))
    yield sim
    sim.stop()


def test_both_personalities_are_registered() -> None:
    assert personality_class("eos") is EosPersonality and personality_class("junos") is JunosPersonality
    assert {"eos", "junos"} <= set(registered())


# ---------------------------------------------------------------------------------------------- EOS, line level


def test_eos_show_ip_access_lists_reproduces_the_capture(eos_sim: DeviceSimulator) -> None:
    blocks, cli = capture_blocks(), Cli(eos_sim)
    lines = ["configure session cap"]
    for name in USER_ACLS:
        lines += [f"ip access-list {name}", *(entry.strip() for entry in blocks[name][1:])]
    assert cli(*lines, "commit") == ""
    assert cli("show ip access-lists") == "\n\n".join("\n".join(blocks[n]) for n in USER_ACLS) + "\n"
    assert cli("show ip access-lists test2") == "\n".join(blocks["test2"]) + "\n"


def test_eos_entries_print_as_eos_does(eos_sim: DeviceSimulator) -> None:
    cli = Cli(eos_sim)
    cli("configure", "ip access-list A", "20 deny tcp 10.0.0.5 0.0.0.255 any eq 8080 443 log",
        "10 permit udp any gt 1023 host 10.1.1.1 eq 53", "permit icmp any 10.2.0.9/16 echo",
        "40 permit icmp any any 8 0", "50 deny icmp any any 3 3", "exit",
        "ipv6 access-list B", "10 permit tcp 2001:DB8::/64 host 2001:db8::1 eq 443", "20 permit icmpv6 any any 128",
        "30 deny ipv6 any any", "end")
    assert cli("show ip access-lists") == (
        "IP Access List A\n"
        "        10 permit udp any gt 1023 host 10.1.1.1 eq domain\n"
        "        20 deny tcp 10.0.0.0/24 any eq 8080 https log\n"
        "        30 permit icmp any 10.2.0.0/16 echo\n"
        "        40 permit icmp any any 8 0\n"
        "        50 deny icmp any any port-unreachable\n"
    )
    assert cli("show ipv6 access-lists") == (
        "IPv6 Access List B\n"
        "        10 permit tcp 2001:db8::/64 host 2001:db8::1 eq https\n"
        "        20 permit icmpv6 any any echo-request\n"
        "        30 deny ipv6 any any\n"
    )


def test_eos_prompts_follow_the_mode(eos_sim: DeviceSimulator) -> None:
    cli = Cli(eos_sim)
    assert cli.prompt == "leaf1#"
    steps = [("configure session microseg-42", "leaf1(config-s-micros)#"),
             ("ip access-list MSEG-IN", "leaf1(config-s-micros-acl-MSEG-IN)#"),
             ("ipv6 access-list MSEG-IN6", "leaf1(config-s-micros-ipv6-acl-MSEG-IN6)#"),
             ("interface vlan 201", "leaf1(config-s-micros-if-Vl201)#"), ("exit", "leaf1(config-s-micros)#"),
             ("end", "leaf1#"), ("configure terminal", "leaf1(config)#"),
             ("ip access-list X", "leaf1(config-acl-X)#"), ("interface Et1", "leaf1(config-if-Et1)#"),
             ("end", "leaf1#")]
    for line, prompt in steps:
        assert cli(line) == ""
        assert cli.prompt == prompt, line
    assert cli("terminal length 0") == "Pagination disabled.\n"
    assert cli.personality.page_length == 0
    assert cli("terminal width 511") == "Width set to 511 columns.\n"
    with pytest.raises(SessionEnd):
        cli.personality.execute("exit")


def test_eos_refuses_bad_lines_and_applies_nothing_from_them(eos_sim: DeviceSimulator) -> None:
    cli = Cli(eos_sim)
    cli("configure", "ip access-list A", "10 permit ip any any")
    assert cli("20 permit tcp any any eq 70000") == "% Invalid input (at token 6: '70000')\n"
    assert cli("20 permit ip 10.0.0.0/33 any") == "% Invalid input (at token 3: '10.0.0.0/33')\n"
    assert cli("frobnicate") == "% Invalid input\n"
    assert cli("20 permit tcp any") == "% Incomplete command\n"
    assert cli("10 deny ip any any") == "% Error: Duplicate sequence number\n"
    assert cli("30 permit ipv6 any any").startswith("% Invalid input")
    assert cli.prompt == "leaf1(config-acl-A)#"
    cli("end")
    assert cli("show ip access-lists") == "IP Access List A\n        10 permit ip any any\n"
    assert cli("show ip bogus").startswith("% Invalid input")
    assert cli("commit").startswith("% Invalid input")  # not in a session


def test_eos_acl_edits_resequence_and_removal(eos_sim: DeviceSimulator) -> None:
    cli = Cli(eos_sim)
    cli("configure", "ip access-list A", "10 permit ip host 10.0.0.1 any", "20 permit ip host 10.0.0.2 any",
        "15 permit ip host 10.0.0.3 any", "permit ip host 10.0.0.4 any", "no 20", "no permit ip host 10.0.0.1 any",
        "resequence 100 5")
    assert cli("show ip access-lists") == ""  # configure terminal: an ACL applies when its mode is left
    cli("exit")
    assert cli("show ip access-lists A") == (
        "IP Access List A\n        100 permit ip host 10.0.0.3 any\n        105 permit ip host 10.0.0.4 any\n")
    cli("ip access-list A", "10 deny ip any any", "abort")
    assert "deny" not in cli("show ip access-lists")
    cli("no ip access-list A")
    assert cli("show ip access-lists") == ""


def test_eos_bindings_in_running_config(eos_sim: DeviceSimulator) -> None:
    cli = Cli(eos_sim)
    cli("configure", "interface Vlan201", "ip access-group IN4 out", "ipv6 access-group IN6 out",
        "ip access-group EG4 in", "interface Ethernet1", "description uplink", "end")
    assert cli("show running-config | section ^interface") == (
        "interface Ethernet1\n   description uplink\ninterface Vlan201\n   ip access-group EG4 in\n"
        "   ip access-group IN4 out\n   ipv6 access-group IN6 out\ninterface Vlan299\n")
    cli("configure", "interface Vlan201", "no ip access-group IN4 out", "no ipv6 access-group OTHER out", "end")
    assert "IN4" not in cli("show running-config") and "IN6 out" in cli("show running-config")
    assert cli("show running-config | include access-group") == (
        "   ip access-group EG4 in\n   ipv6 access-group IN6 out\n")


def test_eos_session_is_invisible_until_commit_and_abort_discards(eos_sim: DeviceSimulator) -> None:
    cli, other = Cli(eos_sim), Cli(eos_sim)
    cli("configure session s1", "ip access-list A", "10 permit ip any any", "end")
    assert other("show ip access-lists") == ""
    assert "10 permit ip any any" in cli("configure session s1", "show session-config")
    cli("commit")
    assert cli.prompt == "leaf1#"
    assert other("show ip access-lists") == "IP Access List A\n        10 permit ip any any\n"
    cli("configure session s2", "no ip access-list A", "abort")
    assert cli.prompt == "leaf1#" and "IP Access List A" in other("show ip access-lists")
    cli("configure session s3", "no ip access-list A", "end")
    assert other("configure session s3 commit") == "" and other("show ip access-lists") == ""
    assert other("configure session nope commit").startswith("% Session nope")


def test_eos_commit_timer_rolls_back_unless_confirmed(eos_sim: DeviceSimulator) -> None:
    cli = Cli(eos_sim)  # minute_seconds=0.6: one EOS second lasts 10 ms
    cli("configure session t1", "ip access-list A", "10 permit ip any any", "commit timer 00:00:20")
    assert "IP Access List A" in cli("show ip access-lists")
    assert eventually(lambda: cli("show ip access-lists") == "")
    cli("configure session t2", "ip access-list B", "10 permit ip any any", "commit timer 00:00:40")
    assert cli("configure session t2 commit") == ""
    time.sleep(0.6)
    assert "IP Access List B" in cli("show ip access-lists")
    cli("configure session t3", "no ip access-list B", "end", "configure session t3 commit timer 00:00:30",
        "configure session t3 abort")  # abort of a pending timer: roll back now
    assert "IP Access List B" in cli("show ip access-lists")


def test_eos_lost_session_never_applies_its_changes(eos_sim: DeviceSimulator) -> None:
    cli = Cli(eos_sim)
    cli("configure session lost", "ip access-list A", "10 permit ip any any")
    cli.lose()
    assert eos_sim.state.sessions == {}
    fresh = Cli(eos_sim)
    assert fresh("configure session lost commit").startswith("% Session lost") and fresh("show ip access-lists") == ""


def test_eos_boot_config(eos_sim: DeviceSimulator) -> None:
    sim = DeviceSimulator("eos", "leaf2", boot_config=("ip access-list EDGE", "   10 deny ip any any log", "!",
                                                       "interface Ethernet1", "   ip access-group EDGE in"))
    cli = Cli(sim)
    assert cli("show ip access-lists") == "IP Access List EDGE\n        10 deny ip any any log\n"
    assert "ip access-group EDGE in" in cli("show running-config")
    with pytest.raises(ValueError, match="boot line"):
        DeviceSimulator("eos", "leaf3", boot_config=("ip access-list X", "10 permit bogus any any"))


# -------------------------------------------------------------------------------------------- Junos, line level

FILTER = "set firewall family inet filter F"


def test_junos_display_set_in_hierarchy_order(junos_sim: DeviceSimulator) -> None:
    cli = Cli(junos_sim)
    assert cli.prompt == "\nops@r1> "
    assert cli("set cli screen-length 0") == "Screen length set to 0\n" and cli.personality.page_length == 0
    assert cli("set cli screen-width 511") == "Screen width set to 511\n"
    assert cli("configure private").endswith("Entering configuration mode\n")
    assert cli.prompt == "\n[edit]\nops@r1# "
    cli(f"{FILTER} term T10 then accept", f"{FILTER} term T10 from destination-port https",
        f"{FILTER} term T10 from protocol tcp", f"{FILTER} term T10 from source-address 10.0.0.0/24",
        f"{FILTER} term T10 then log", f"{FILTER} term T20 then discard",
        "set firewall family inet6 filter G term T1 from next-header icmp6",
        "set firewall family inet6 filter G term T1 from source-address 2001:DB8::/32",
        "set interfaces irb unit 100 family inet filter output F", "commit")
    assert cli("run show configuration firewall | display set") == (
        f"{FILTER} term T10 from source-address 10.0.0.0/24\n{FILTER} term T10 from protocol tcp\n"
        f"{FILTER} term T10 from destination-port https\n{FILTER} term T10 then log\n"
        f"{FILTER} term T10 then accept\n{FILTER} term T20 then discard\n"
        "set firewall family inet6 filter G term T1 from source-address 2001:db8::/32\n"
        "set firewall family inet6 filter G term T1 from next-header icmp6\n")
    assert cli("run show configuration interfaces | display set") == (
        "set interfaces irb unit 100 family inet filter output F\nset interfaces ge-0/0/0\n")
    assert "term T10 {" in cli("show firewall") and "then accept;" not in cli("show firewall")


def test_junos_insert_delete_and_replacements(junos_sim: DeviceSimulator) -> None:
    cli = Cli(junos_sim)
    cli("configure", *(f"{FILTER} term {t} then accept" for t in ("A", "B", "C")),
        "insert firewall family inet filter F term C before term A", f"{FILTER} term B then count hits",
        f"{FILTER} term B then count other", f"{FILTER} term B then discard")
    assert cli("show firewall | display set") == (
        f"{FILTER} term C then accept\n{FILTER} term A then accept\n{FILTER} term B then count other\n"
        f"{FILTER} term B then discard\n")
    cli("insert firewall family inet filter F term C after term B", "delete firewall family inet filter F term B then")
    assert cli("show firewall | display set") == (
        f"{FILTER} term A then accept\n{FILTER} term B\n{FILTER} term C then accept\n")
    assert cli("delete firewall family inet filter F term Z") == "warning: statement not found\n"
    assert cli("insert firewall family inet filter F term A after term Z").endswith(
        "error: statement not found: term Z\n")
    cli("delete firewall family inet filter F")
    assert cli("show firewall | display set") == ""


def test_junos_rejects_like_junos(junos_sim: DeviceSimulator) -> None:
    cli = Cli(junos_sim)
    cli("configure")
    width = len("ops@r1# ")
    assert cli(f"{FILTER} term T from frobnicate 1") == " " * (width + len(f"{FILTER} term T from ")) + (
        "^\nsyntax error.\n")
    assert cli(f"{FILTER} term T from source-address 10.0.0.300/24").endswith(
        "error: invalid IPv4 prefix: '10.0.0.300/24'\n")
    assert cli(f"{FILTER} term T from destination-port 70000").endswith(
        "error: invalid port or port range: '70000'\n")
    assert cli(f"{FILTER} term T from next-header tcp").endswith("syntax error.\n")
    assert cli("set firewall family inet6 filter G term T from protocol tcp").endswith("syntax error.\n")
    assert cli(f"{FILTER} term T from protocol").endswith("^\nmissing argument.\n")
    assert cli("frobnicate").endswith("unknown command.\n")
    assert cli("show | compare") == ""
    assert cli("run frobnicate").endswith("unknown command.\n")


def test_junos_commit_checks_references(junos_sim: DeviceSimulator) -> None:
    cli = Cli(junos_sim)
    cli("configure", f"{FILTER} term NOACTION from protocol udp",
        "set interfaces irb unit 100 family inet6 filter input F")
    answer = cli("commit")
    assert "error: Referenced filter 'F' is not defined" in answer  # F is an inet filter, bound under inet6
    assert answer.endswith("error: configuration check-out failed\n")
    assert cli("run show configuration firewall | display set") == ""
    cli("delete interfaces irb unit 100 family inet6")
    assert cli("commit check") == "configuration check succeeds\n"
    assert cli("commit") == "commit complete\n"  # a term without `then` is accepted
    assert cli("show | compare") == ""
    cli(f"{FILTER} term NOACTION then accept")
    assert cli("show | compare") == (
        "[edit firewall family inet filter F term NOACTION then]\n+    accept;\n")
    assert cli("rollback 0") == "load complete\n" and cli("show | compare") == ""


def test_junos_commit_confirmed_rolls_back_unless_confirmed(junos_sim: DeviceSimulator) -> None:
    cli = Cli(junos_sim)  # minute_seconds=0.3
    cli("configure private", f"{FILTER} term A then accept")
    assert cli("commit confirmed 1") == (
        "commit confirmed will be automatically rolled back in 1 minutes unless confirmed\ncommit complete\n")
    assert cli.prompt == "\n# commit confirmed will be rolled back in 1 minutes\n[edit]\nops@r1# "
    assert "term A" in cli("run show configuration firewall | display set")
    assert eventually(lambda: cli("run show configuration firewall | display set") == "")
    assert cli.prompt == "\n[edit]\nops@r1# "
    assert cli("commit") == "error: configuration database modified\nerror: commit failed\n"  # stale private copy
    cli("exit configuration-mode", "configure private", f"{FILTER} term B then accept", "commit confirmed 1")
    assert cli("commit") == "commit complete\n"
    time.sleep(0.6)
    assert "term B" in cli("run show configuration firewall | display set")


def test_junos_private_candidate_dies_with_its_session(junos_sim: DeviceSimulator) -> None:
    cli, other = Cli(junos_sim), Cli(junos_sim)
    cli("configure private", f"{FILTER} term A then accept")
    assert other("configure private").endswith("Entering configuration mode\n")
    assert other("show | compare") == ""
    cli.lose()
    interfaces = "set interfaces irb unit 100\nset interfaces ge-0/0/0\n"
    assert Cli(junos_sim)("show configuration | display set") == interfaces
    cli("configure private", f"{FILTER} term A then accept")
    assert cli("exit configuration-mode") == (
        "warning: uncommitted changes will be discarded on exit\nExiting configuration mode\n")
    assert "filter" not in cli("show configuration | display set")


def test_junos_shared_candidate_asks_before_exit(junos_sim: DeviceSimulator) -> None:
    cli = Cli(junos_sim)
    cli("configure", f"{FILTER} term A then accept")
    assert cli("exit") == "The configuration has been changed but not committed\n"
    assert cli.prompt == "Exit with uncommitted changes? [yes,no] (yes) "
    assert cli("yes") == "Exiting configuration mode\n" and cli.prompt == "\nops@r1> "
    assert cli("configure private") == "error: shared configuration database modified\n"
    assert cli("configure").endswith("The configuration has been changed but not committed\n")
    assert "term A" in cli("show | compare")


def test_junos_boot_config(junos_sim: DeviceSimulator) -> None:
    sim = DeviceSimulator("junos", "r2", boot_config=(f"{FILTER} term A then accept",
                                                       "set interfaces ge-0/0/1 unit 0 family inet filter input F"))
    assert "filter input F" in Cli(sim)("show configuration | display set")
    with pytest.raises(ValueError, match="boot"):
        DeviceSimulator("junos", "r3", boot_config=("set interfaces ge-0/0/1 unit 0 family inet filter input NOPE",))
    with pytest.raises(ValueError, match="boot line"):
        DeviceSimulator("junos", "r4", boot_config=("set firewall bogus",))


# ---------------------------------------------------------------------------------- real SSH, unmodified netmiko


def connect(sim: DeviceSimulator, device_type: str) -> object:
    return ConnectHandler(device_type=device_type, host="127.0.0.1", port=sim.port, username="admin",
                          password="admin", conn_timeout=10)


@pytest.fixture
def eos_ssh() -> Iterator[DeviceSimulator]:
    with DeviceSimulator("eos", "leaf1", minute_seconds=1.0, interfaces=("Ethernet1", "Vlan201")) as sim:
        yield sim


@pytest.fixture
def junos_ssh() -> Iterator[DeviceSimulator]:
    with DeviceSimulator("junos", "r1", minute_seconds=1.0, interfaces=("irb.100",)) as sim:
        yield sim


def test_eos_over_ssh_session_commit_and_exact_outputs(eos_ssh: DeviceSimulator) -> None:
    blocks = capture_blocks()
    conn = connect(eos_ssh, "arista_eos")
    try:
        lines = [f"ip access-list {USER_ACLS[0]}", *(e.strip() for e in blocks[USER_ACLS[0]][1:]),
                 "interface Vlan201", f"ip access-group {USER_ACLS[0]} in", "commit"]
        conn.send_config_set(lines, config_mode_command="configure session ssh1", error_pattern=EOS_ERROR)
        assert conn.send_command("show ip access-lists") == "\n".join(blocks[USER_ACLS[0]])
        assert conn.send_command("show running-config | section ^interface") == (
            f"interface Ethernet1\ninterface Vlan201\n   ip access-group {USER_ACLS[0]} in")
        with pytest.raises(ConfigInvalidException):
            conn.send_config_set(["ip access-list B", "10 permit tcp any any eq nonsense"],
                                 config_mode_command="configure session ssh2", error_pattern=EOS_ERROR)
        conn.send_command("abort", expect_string=r"leaf1#")  # abort leaves the session: the prompt changes
        assert "IP Access List B" not in conn.send_command("show ip access-lists")
    finally:
        conn.disconnect()


def test_eos_over_ssh_commit_timer(eos_ssh: DeviceSimulator) -> None:
    conn = connect(eos_ssh, "arista_eos")
    try:  # minute_seconds=1.0: `commit timer 00:01:00` lasts one second
        conn.send_config_set(["ip access-list T", "10 permit ip any any", "commit timer 00:01:00"],
                             config_mode_command="configure session timed", error_pattern=EOS_ERROR)
        assert "IP Access List T" in conn.send_command("show ip access-lists")
        assert eventually(lambda: conn.send_command("show ip access-lists") == "")
        conn.send_config_set(["ip access-list K", "10 permit ip any any", "commit timer 00:01:00"],
                             config_mode_command="configure session kept", error_pattern=EOS_ERROR)
        conn.send_command("configure session kept commit")
        time.sleep(1.5)
        assert "IP Access List K" in conn.send_command("show ip access-lists")
    finally:
        conn.disconnect()


def test_eos_over_ssh_dropped_before_commit_applies_nothing(eos_ssh: DeviceSimulator) -> None:
    conn = connect(eos_ssh, "arista_eos")
    with eos_ssh.lock:
        eos_ssh.faults.drop_after_config_lines = 2
    with pytest.raises((OSError, EOFError, ReadTimeout)):
        conn.send_config_set(["ip access-list D", "10 permit ip any any", "commit"],
                             config_mode_command="configure session dropped", read_timeout=2)
    assert eventually(lambda: eos_ssh.session_count() == 0)
    assert eos_ssh.state.sessions == {}
    conn = connect(eos_ssh, "arista_eos")
    try:
        assert conn.send_command("show ip access-lists") == ""
    finally:
        conn.disconnect()


def test_junos_over_ssh_private_commit_and_invalid_lines(junos_ssh: DeviceSimulator) -> None:
    conn = connect(junos_ssh, "juniper_junos")
    try:
        conn.send_config_set([f"{FILTER} term T10 from source-address 10.0.0.0/24", f"{FILTER} term T10 then accept",
                              "set interfaces irb unit 100 family inet filter input F"],
                             config_mode_command="configure private", exit_config_mode=False,
                             error_pattern=JUNOS_ERROR)
        assert "commit complete" in conn.commit()
        conn.exit_config_mode()
        # Junos prints a blank line before the operational prompt
        assert conn.send_command("show configuration firewall | display set") == (
            f"{FILTER} term T10 from source-address 10.0.0.0/24\n{FILTER} term T10 then accept\n")
        assert conn.send_command("show configuration interfaces | display set") == (
            "set interfaces irb unit 100 family inet filter input F\n")
        with pytest.raises(ConfigInvalidException):
            conn.send_config_set([f"{FILTER} term T20 from source-port 99999"], config_mode_command="configure private",
                                 error_pattern=JUNOS_ERROR)
        conn.send_command("rollback 0")
        conn.exit_config_mode()
        conn.send_config_set([f"{FILTER} term T30 then accept"], config_mode_command="configure",
                             exit_config_mode=False)
        conn.exit_config_mode()  # answers "Exit with uncommitted changes? [yes,no]"
        assert "T30" not in conn.send_command("show configuration firewall | display set")
    finally:
        conn.disconnect()


def test_junos_over_ssh_commit_confirmed(junos_ssh: DeviceSimulator) -> None:
    conn = connect(junos_ssh, "juniper_junos")
    try:  # minute_seconds=1.0: `commit confirmed 1` lasts one second
        conn.send_config_set([f"{FILTER} term A then accept"], config_mode_command="configure private",
                             exit_config_mode=False, error_pattern=JUNOS_ERROR)
        assert "rolled back in 1 minutes" in conn.commit(confirm=True, confirm_delay=1)
        conn.exit_config_mode()
        assert "term A" in conn.send_command("show configuration firewall | display set")
        assert eventually(lambda: conn.send_command("show configuration firewall | display set").strip() == "")
        conn.send_config_set([f"{FILTER} term B then accept"], config_mode_command="configure private",
                             exit_config_mode=False, error_pattern=JUNOS_ERROR)
        conn.commit(confirm=True, confirm_delay=1)
        assert "commit complete" in conn.commit()
        conn.exit_config_mode()
        time.sleep(1.5)
        assert "term B" in conn.send_command("show configuration firewall | display set")
    finally:
        conn.disconnect()


def test_junos_over_ssh_dropped_private_session(junos_ssh: DeviceSimulator) -> None:
    conn = connect(junos_ssh, "juniper_junos")
    conn.send_config_set([f"{FILTER} term KEEP then accept"], config_mode_command="configure private",
                         exit_config_mode=False)
    conn.commit(confirm=True, confirm_delay=1)
    with junos_ssh.lock:
        junos_ssh.faults.drop_after_config_lines = 1
    with pytest.raises((OSError, EOFError, ReadTimeout)):
        conn.send_config_set([f"{FILTER} term LOST then accept", f"{FILTER} term LOST2 then accept"],
                             enter_config_mode=False, read_timeout=2)
    assert eventually(lambda: junos_ssh.session_count() == 0)
    conn = connect(junos_ssh, "juniper_junos")
    try:
        assert "LOST" not in conn.send_command("show configuration firewall | display set")
        assert conn.config_mode("configure private")  # the shared database was never touched
        assert conn.send_command("show | compare").strip() == ""
        conn.exit_config_mode()  # the pending `commit confirmed` outlived the session: it rolls back
        assert eventually(lambda: conn.send_command("show configuration firewall | display set").strip() == "")
    finally:
        conn.disconnect()
