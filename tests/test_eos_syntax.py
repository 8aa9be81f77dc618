"""Arista EOS syntax: the real capture read completely, IPv6 and standard lists, bindings, config lines."""

from __future__ import annotations

import ipaddress

import pytest

from drivers.arista_eos import syntax as eos
from drivers.netacl.ace import Ace, Binding, Unsupported
from orchestrator.model.errors import ParseError
from orchestrator.model.rules import ANY_PORTS, Action
from tests.test_ciscolike_syntax import capture, check_outline, count_show_entries, entry, ports

N = ipaddress.ip_network
SHOW = "arista_eos_show_ip_access-lists.raw"
CONTROL = "default-control-plane-acl"

SHOW_EXPECTED = [
    ("TEST_1", 10, "ace"),
    (CONTROL, 10, "ace"), (CONTROL, 20, "tracked"), (CONTROL, 30, "ttl eq 255"), (CONTROL, 50, "ace"),
    (CONTROL, 60, "ace"), (CONTROL, 70, "ace"),
    ("test2", 10, "fragments"), ("test2", 20, "TCP flags urg"),
    ("test3", 10, "TCP flags ack"), ("test3", 20, "TCP flags ack"), ("test3", 30, "ace"),
]


def test_show_ip_access_lists_capture_completely() -> None:
    text = capture(SHOW)
    acls = eos.parse_acls(text)
    assert [(a.name, a.family, a.kind) for a in acls] == [
        ("TEST_1", 4, "extended"), (CONTROL, 4, "extended"), ("test2", 4, "extended"), ("test3", 4, "extended")]
    assert {a.name: len(a.entries) for a in acls} == count_show_entries(text)
    check_outline(acls, SHOW_EXPECTED)
    assert "ttl eq 30" in entry(acls, "test2", 20).reason  # type: ignore[union-attr]


def test_show_ip_access_lists_capture_fields() -> None:
    acls = eos.parse_acls(capture(SHOW))
    any4 = N("0.0.0.0/0")
    assert entry(acls, "TEST_1", 10) == Ace(Action.PERMIT, None, N("10.0.0.1/32"), N("10.0.0.0/24"))
    assert entry(acls, CONTROL, 10) == Ace(Action.PERMIT, 1, any4, any4)
    web = entry(acls, CONTROL, 50)
    assert isinstance(web, Ace) and web.protocol == 6
    assert {p for lo, hi in web.dst_ports for p in range(lo, hi + 1)} == {22, 23, 80, 161, 179, 443, 639}
    assert entry(acls, CONTROL, 60) == Ace(Action.PERMIT, 17, any4, any4, dst_ports=ports((67, 68), 123, 161, 520))
    assert entry(acls, CONTROL, 70) == Ace(Action.PERMIT, 6, any4, any4, dst_ports=ports((5900, 5910)))
    assert entry(acls, CONTROL, 30) == Unsupported("permit udp any any eq bfd ttl eq 255", "ttl eq 255")
    assert entry(acls, "test3", 30) == Ace(Action.PERMIT, 6, any4, any4, ports(23, 80, 175, 401), ANY_PORTS, log=True)
    fragments = entry(acls, "test2", 10)
    assert fragments == Unsupported("permit ip 1.1.1.0/30 any fragments log", "fragments")


IPV6_SHOW = """IPv6 Access List MSEG-INGRESS-V6
        counters per-entry
        10 permit tcp 2001:db8::/64 host 2001:db8:1::1 eq https log [match 12 packets, 0:00:05 ago]
        20 permit icmpv6 any any neighbor-solicitation
        30 permit udp any any eq 53 123
        40 permit tcp any any hop-limit eq 1
        50 deny ipv6 any any
        Total rules configured: 5
        Configured on Ingress: Vlan301
        Active on     Ingress: Vlan301

Standard IP Access List SNMP-HOSTS
        10 permit host 10.0.0.5
        20 permit 10.1.0.0/16
        30 deny any log
"""


def test_ipv6_and_standard_lists() -> None:
    acls = eos.parse_acls(IPV6_SHOW)
    any6 = N("::/0")
    assert [(a.name, a.family, a.kind) for a in acls] == [("MSEG-INGRESS-V6", 6, "extended"),
                                                        ("SNMP-HOSTS", 4, "standard")]
    check_outline(acls, [*[("MSEG-INGRESS-V6", seq, "hop-limit eq 1" if seq == 40 else "ace") for seq in
                           (10, 20, 30, 40, 50)], ("SNMP-HOSTS", 10, "ace"), ("SNMP-HOSTS", 20, "ace"),
                         ("SNMP-HOSTS", 30, "ace")])
    assert entry(acls, "MSEG-INGRESS-V6", 10) == Ace(Action.PERMIT, 6, N("2001:db8::/64"), N("2001:db8:1::1/128"),
                                                     dst_ports=ports(443), log=True)
    assert entry(acls, "MSEG-INGRESS-V6", 20) == Ace(Action.PERMIT, 58, any6, any6, icmp_type=135)
    assert entry(acls, "MSEG-INGRESS-V6", 30) == Ace(Action.PERMIT, 17, any6, any6, dst_ports=ports(53, 123))
    assert entry(acls, "SNMP-HOSTS", 20) == Ace(Action.PERMIT, None, N("10.1.0.0/16"), N("0.0.0.0/0"))
    assert entry(acls, "SNMP-HOSTS", 30) == Ace(Action.DENY, None, N("0.0.0.0/0"), N("0.0.0.0/0"), log=True)


INTERFACES = """interface Ethernet1
   description uplink
   no switchport
   ip access-group MSEG-EGRESS-V4 in
   ipv6 access-group MSEG-EGRESS-V6 in
interface Management1
   ip address 192.0.2.10/24
interface Vlan301
   ip address 10.30.1.1/24
   ip access-group MSEG-INGRESS-V4 out
   ipv6 access-group MSEG-INGRESS-V6 out
"""


def test_bindings_from_running_config_interface_sections() -> None:
    assert eos.parse_bindings(INTERFACES) == (
        Binding("Ethernet1", 4, "in", "MSEG-EGRESS-V4"), Binding("Ethernet1", 6, "in", "MSEG-EGRESS-V6"),
        Binding("Vlan301", 4, "out", "MSEG-INGRESS-V4"), Binding("Vlan301", 6, "out", "MSEG-INGRESS-V6"))
    with pytest.raises(ParseError, match="outside an interface section"):
        eos.parse_bindings("   ip access-group A in\n")


def test_parse_all_outputs() -> None:
    device = eos.parse({eos.FETCH_COMMANDS[0]: capture(SHOW), eos.FETCH_COMMANDS[1]: IPV6_SHOW,
                        eos.FETCH_COMMANDS[2]: INTERFACES})
    assert len(device.acls) == 6 and len(device.bindings) == 4
    assert eos.FETCH_COMMANDS == (
        "show ip access-lists", "show ipv6 access-lists", "show running-config | section ^interface")


def test_config_lines() -> None:
    assert eos.acl_mode("A", 4) == "ip access-list A" and eos.acl_mode("A", 6) == "ipv6 access-list A"
    assert (eos.delete_entry(10, 4), eos.delete_entry(10, 6)) == ("no 10", "no 10")
    assert (eos.delete_acl("A", 4), eos.delete_acl("A", 6)) == ("no ip access-list A", "no ipv6 access-list A")
    assert eos.resequence("A", 6) == ("ipv6 access-list A", "resequence 10 10")
    b6 = Binding("Vlan301", 6, "out", "MSEG-INGRESS-V6")
    assert eos.bind(b6) == ("interface Vlan301", "ipv6 access-group MSEG-INGRESS-V6 out")
    assert eos.unbind(b6) == ("interface Vlan301", "no ipv6 access-group MSEG-INGRESS-V6 out")
    assert eos.bind(Binding("Ethernet1", 4, "in", "E")) == ("interface Ethernet1", "ip access-group E in")
