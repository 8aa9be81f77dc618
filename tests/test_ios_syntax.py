"""Cisco IOS syntax: the three real captures read completely, the IPv6 show format, bindings, config lines."""

from __future__ import annotations

import ipaddress
import re

import pytest

from drivers.cisco_ios import syntax as ios
from drivers.netacl.ace import Ace, Binding, Unsupported
from orchestrator.model.errors import ParseError
from orchestrator.model.rules import ANY_PORTS, Action, TcpFlags
from tests.test_ciscolike_syntax import capture, check_outline, count_show_entries, entry, ports

N = ipaddress.ip_network
SHOW = "cisco_ios_show_ip_access-lists.raw"
SHOW_OBJECT_GROUPS = "cisco_ios_show_ip_access-lists_1104.raw"
RUNNING = "cisco_ios_show_running-config_partition_access-list.raw"

SHOW_EXPECTED = [
    ("99", 10, "ace"), ("99", 20, "ace"), ("99", 30, "non-contiguous wildcard 0.255.0.255"),
    ("stdacl", 10, "ace"),
    ("101", 10, "ace"), ("101", 20, "ace"), ("101", 30, "log-input"), ("101", 40, "time-range test (active)"),
    ("101", 50, "time-range test2 (inactive)"), ("101", 60, "ace"), ("101", 70, "ace"), ("101", 80, "neq"),
    ("101", 90, "TCP flags match-all +ack -fin"), ("101", 100, "ace"), ("101", 110, "TCP flags psh"),
    *[("sample", seq, {590: "time-range test (active)", 660: "time-range test2 (inactive)"}.get(seq, "ace"))
      for seq in range(10, 670, 10)],
]


def test_show_ip_access_lists_capture_completely() -> None:
    text = capture(SHOW)
    acls = ios.parse_acls(text)
    assert [(a.name, a.family, a.kind) for a in acls] == [
        ("99", 4, "standard"), ("stdacl", 4, "standard"), ("test", 4, "extended"), ("101", 4, "extended"),
        ("sample", 4, "extended"), ("test2", 4, "extended")]
    assert {a.name: len(a.entries) for a in acls} == count_show_entries(text)
    check_outline(acls, SHOW_EXPECTED)
    assert entry(acls, "101", 100) == Ace(Action.PERMIT, 6, N("10.1.1.1/32"), N("0.0.0.0/0"),
                                          tcp_flags=TcpFlags.ESTABLISHED)
    assert entry(acls, "101", 110).reason == "TCP flags psh"  # type: ignore[union-attr]  # established + psh


def test_show_ip_access_lists_capture_fields() -> None:
    acls = ios.parse_acls(capture(SHOW))
    assert entry(acls, "101", 60) == Ace(Action.PERMIT, 17, N("0.0.0.0/0"), N("10.1.1.0/24"),
                                         ports((16384, 32767)), ports((16384, 32767)))
    assert entry(acls, "101", 70) == Ace(Action.PERMIT, 17, N("0.0.0.0/0"), N("10.1.0.0/24"), ports(68, 161))
    assert entry(acls, "101", 20) == Ace(Action.PERMIT, 6, N("0.0.0.0/0"), N("10.1.1.1/32"),
                                         dst_ports=ports(443), log=True)
    assert entry(acls, "99", 10) == Ace(Action.PERMIT, None, N("172.16.191.199/32"), N("0.0.0.0/0"))
    assert entry(acls, "99", 20) == Ace(Action.DENY, None, N("0.0.0.0/0"), N("0.0.0.0/0"), log=True)
    assert entry(acls, "sample", 40) == Ace(Action.PERMIT, 1, N("10.10.37.24/29"), N("10.10.37.17/32"))
    assert entry(acls, "sample", 20) == Ace(Action.PERMIT, 6, N("10.10.37.18/32"), N("10.10.37.17/32"),
                                            src_ports=ports(179))
    assert entry(acls, "sample", 600) == Ace(Action.PERMIT, 6, N("10.10.37.24/29"), N("10.3.140.64/27"),
                                             dst_ports=ports((9821, 9823)))
    std = entry(acls, "99", 30)
    assert std == Unsupported("permit 10.0.10.0, wildcard bits 0.255.0.255", "non-contiguous wildcard 0.255.0.255")
    neq = entry(acls, "101", 80)
    assert isinstance(neq, Unsupported) and neq.reason == "neq port operator"
    assert neq.text == "permit tcp 10.0.0.0 0.255.255.255 eq telnet ssh http 8080 host 10.1.0.0 neq telnet ssh"


def test_object_group_capture_every_entry_unsupported() -> None:
    text = capture(SHOW_OBJECT_GROUPS)
    acls = ios.parse_acls(text)
    assert [(a.name, a.family) for a in acls] == [("access-acl", 4)]
    assert len(acls[0].entries) == count_show_entries(text)["access-acl"] == 20
    check_outline(acls, [("access-acl", seq, "object-group") for seq in range(10, 210, 10)])
    for e in acls[0].entries:
        assert isinstance(e.body, Unsupported)
        groups = re.findall(r"object-group (\S+)", e.body.text)
        for group in groups:
            assert f"object-group reference {group}" in e.body.reason
        assert ("service object-group SERVICE_OBJECT_GROUP in protocol position" in e.body.reason) == (
            int(e.seq) >= 160)


def _running_config_entry_counts(text: str) -> dict[str, int]:
    """Entries per ACL, classified without the parser (remarks are not entries)."""
    counts: dict[str, int] = {}
    name = ""
    for line in text.splitlines():
        if m := re.fullmatch(r"ip access-list (?:extended|standard) (\S+)", line):
            name = m[1]
            counts.setdefault(name, 0)
        elif m := re.match(r"access-list (\d+) (permit|deny|remark) ", line):
            counts[m[1]] = counts.get(m[1], 0) + (m[2] != "remark")
        elif re.match(r" (permit|deny) ", line):
            counts[name] += 1
    return counts


def test_running_config_partition_capture_completely() -> None:
    text = capture(RUNNING)
    acls = ios.parse_running_config_acls(text)
    assert [(a.name, a.family, a.kind) for a in acls] == [
        ("sample", 4, "extended"), ("test", 4, "extended"), ("97", 4, "standard"), ("98", 4, "standard"),
        ("99", 4, "standard"), ("199", 4, "extended"), ("101", 4, "extended"), ("stdacl", 4, "standard"),
        ("test2", 4, "extended"), ("198", 4, "extended")]
    assert {a.name: len(a.entries) for a in acls} == _running_config_entry_counts(text)
    sample = {660: "ace", 640: "time-range test", 650: "log-input", 680: "non-contiguous wildcard 0.255.0.255"}
    check_outline(acls, [
        *[("sample", seq, sample.get(seq, "ace")) for seq in range(10, 690, 10)],
        ("97", 10, "non-contiguous wildcard 0.0.255.0"), ("97", 20, "ace"),
        ("98", 10, "ace"), ("98", 20, "ace"), ("99", 10, "ace"), ("99", 20, "ace"),
        ("199", 10, "ace"), ("199", 20, "ace"),
        ("101", 10, "ace"), ("101", 20, "ace"), ("101", 30, "log-input"), ("101", 40, "time-range test"),
        ("stdacl", 10, "ace"), ("198", 10, "ace"), ("198", 20, "ace")])


def test_running_config_partition_capture_fields_and_remarks() -> None:
    acls = ios.parse_running_config_acls(capture(RUNNING))
    by_name = {a.name: a for a in acls}
    assert by_name["sample"].remarks[:2] == ('"allows BGP"', '"allows sample to ping"')
    assert len(by_name["sample"].remarks) == 23
    assert by_name["97"].remarks == ("this is a remark",) and by_name["101"].remarks == ("this is a remark",)
    assert entry(acls, "sample", 670) == Ace(Action.DENY, None, N("0.0.0.0/0"), N("0.0.0.0/0"))
    assert entry(acls, "sample", 660) == Ace(Action.PERMIT, 103, N("10.1.6.20/32"), N("224.0.0.1/32"))
    assert entry(acls, "199", 10) == Ace(Action.PERMIT, 6, N("10.16.5.19/32"), N("0.0.0.0/0"), dst_ports=ports(80))
    assert entry(acls, "97", 20) == Ace(Action.PERMIT, None, N("0.0.0.0/0"), N("0.0.0.0/0"))
    assert entry(acls, "98", 20) == Ace(Action.PERMIT, None, N("10.16.5.20/32"), N("0.0.0.0/0"))


def test_running_config_numbered_entries_keep_explicit_numbers_and_ipv6_blocks() -> None:
    text = """ip access-list extended WEB
 10 permit tcp any any eq 443
 remark next one is added without a number
 permit tcp any any eq 80
 25 deny ip any any
!
ipv6 access-list WEB6
 permit tcp any 2001:DB8::/64 eq www sequence 20
 deny ipv6 any any
access-list 700 permit 0000.0000.0001 0000.0000.0000
object-group network SERVERS
 host 10.0.0.1
end
"""
    acls = ios.parse_running_config_acls(text)
    assert [(a.name, a.family, [e.seq for e in a.entries]) for a in acls] == [
        ("WEB", 4, [10, 20, 25]), ("WEB6", 6, [20, 30]), ("700", 0, [10])]
    assert entry(acls, "WEB6", 20) == Ace(Action.PERMIT, 6, N("::/0"), N("2001:db8::/64"), dst_ports=ports(80))
    assert isinstance(entry(acls, "700", 10), Unsupported)


@pytest.mark.parametrize(("text", "lineno"), [
    ("ip access-list extended A\n permit tcp any\n", 2),
    (" permit ip any any\n", 1),
    ("ip access-list role-based X\n", 1),
    ("access-list 101 permit bogus-protocol\n", 1),
    ("ip access-list extended A\n 10 permit ip any any\n 10 deny ip any any\n", 3),
])
def test_running_config_garbage_raises_parse_error(text: str, lineno: int) -> None:
    with pytest.raises(ParseError, match=f"line {lineno}:"):
        ios.parse_running_config_acls(text)


IPV6_SHOW = """IPv6 access list MSEG-INGRESS-V6
    permit tcp any 2001:DB8::/64 eq www (5 matches) sequence 10
    permit icmp any host 2001:DB8::1 echo-request sequence 20
    permit udp 2001:DB8:1::/48 range 1000 2000 any log sequence 30
    permit tcp any any established sequence 40
    deny ipv6 any any (17 matches) sequence 50
IPv6 access list EMPTY
"""


def test_ipv6_show_format_sequence_last() -> None:
    acls = ios.parse_acls(IPV6_SHOW)
    assert [(a.name, a.family) for a in acls] == [("MSEG-INGRESS-V6", 6), ("EMPTY", 6)]
    check_outline(acls, [("MSEG-INGRESS-V6", 10, "ace"), ("MSEG-INGRESS-V6", 20, "ace"),
                         ("MSEG-INGRESS-V6", 30, "ace"), ("MSEG-INGRESS-V6", 40, "ace"),
                         ("MSEG-INGRESS-V6", 50, "ace")])
    assert entry(acls, "MSEG-INGRESS-V6", 10) == Ace(Action.PERMIT, 6, N("::/0"), N("2001:db8::/64"),
                                                     dst_ports=ports(80))
    assert entry(acls, "MSEG-INGRESS-V6", 20) == Ace(Action.PERMIT, 58, N("::/0"), N("2001:db8::1/128"),
                                                     icmp_type=128)
    assert entry(acls, "MSEG-INGRESS-V6", 30) == Ace(Action.PERMIT, 17, N("2001:db8:1::/48"), N("::/0"),
                                                     ports((1000, 2000)), ANY_PORTS, log=True)
    last = entry(acls, "MSEG-INGRESS-V6", 50)
    assert isinstance(last, Ace) and last.is_catch_all()


INTERFACES = """interface GigabitEthernet0/1
 description uplink
 ip address 10.0.0.1 255.255.255.0
 ip access-group 101 in
 ipv6 traffic-filter MSEG-EGRESS-V6 in
!
interface Vlan301
 ip access-group MSEG-INGRESS-V4 out
 ipv6 traffic-filter MSEG-INGRESS-V6 out
 ip access-group MSEG-EGRESS-V4 in
!
interface Loopback0
 ip address 192.0.2.1 255.255.255.255
"""


def test_bindings_from_interface_sections() -> None:
    assert ios.parse_bindings(INTERFACES) == (
        Binding("GigabitEthernet0/1", 4, "in", "101"), Binding("GigabitEthernet0/1", 6, "in", "MSEG-EGRESS-V6"),
        Binding("Vlan301", 4, "out", "MSEG-INGRESS-V4"), Binding("Vlan301", 6, "out", "MSEG-INGRESS-V6"),
        Binding("Vlan301", 4, "in", "MSEG-EGRESS-V4"))


@pytest.mark.parametrize("text", [
    "interface Vlan1\n ip access-group FOO\n",
    " ip access-group FOO in\n",
    "!\n ipv6 traffic-filter FOO out\n",
])
def test_unreadable_bindings_raise_parse_error(text: str) -> None:
    with pytest.raises(ParseError):
        ios.parse_bindings(text)


def test_parse_all_outputs() -> None:
    device = ios.parse({ios.FETCH_COMMANDS[0]: capture(SHOW), ios.FETCH_COMMANDS[1]: IPV6_SHOW,
                        ios.FETCH_COMMANDS[2]: INTERFACES})
    assert len(device.acls) == 8 and len(device.bindings) == 5
    assert device.acl("MSEG-INGRESS-V6") is not None
    assert ios.FETCH_COMMANDS == (
        "show ip access-lists", "show ipv6 access-list", "show running-config | section ^interface")
    twice = ios.parse({ios.FETCH_COMMANDS[0]: capture(SHOW), ios.FETCH_COMMANDS[1]: capture(SHOW),
                       ios.FETCH_COMMANDS[2]: ""})
    assert [(u.acl, u.reason) for u in twice.unread] == [(a.name, "access list is listed twice") for a in acls_of(SHOW)]


def acls_of(name: str) -> tuple:
    return ios.parse_acls(capture(name))


def test_config_lines() -> None:
    assert ios.acl_mode("MSEG-INGRESS-V4", 4) == "ip access-list extended MSEG-INGRESS-V4"
    assert ios.acl_mode("MSEG-INGRESS-V6", 6) == "ipv6 access-list MSEG-INGRESS-V6"
    assert (ios.delete_entry(10, 4), ios.delete_entry(10, 6)) == ("no 10", "no sequence 10")
    assert ios.delete_acl("A", 4) == "no ip access-list extended A"
    assert ios.delete_acl("A", 6) == "no ipv6 access-list A"
    assert ios.resequence("A", 4) == ("ip access-list resequence A 10 10",)
    assert ios.resequence("A", 6) is None
    b4, b6 = Binding("Vlan301", 4, "out", "MSEG-INGRESS-V4"), Binding("Vlan301", 6, "in", "MSEG-EGRESS-V6")
    assert ios.bind(b4) == ("interface Vlan301", "ip access-group MSEG-INGRESS-V4 out")
    assert ios.unbind(b4) == ("interface Vlan301", "no ip access-group MSEG-INGRESS-V4 out")
    assert ios.bind(b6) == ("interface Vlan301", "ipv6 traffic-filter MSEG-EGRESS-V6 in")
    assert ios.unbind(b6) == ("interface Vlan301", "no ipv6 traffic-filter MSEG-EGRESS-V6 in")
    for bad in (lambda: ios.acl_mode("two words", 4), lambda: ios.acl_mode("A", 5),
                lambda: ios.bind(Binding("Vlan1", 4, "both", "A")), lambda: ios.bind(Binding("Vlan1", 0, "in", "A"))):
        with pytest.raises(ValueError):
            bad()
