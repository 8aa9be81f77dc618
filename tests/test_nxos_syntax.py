"""Cisco NX-OS syntax: the real capture read completely (IP, IPv6, MAC), IPv6 entries, bindings, config lines."""

from __future__ import annotations

import ipaddress

import pytest

from drivers.cisco_nxos import syntax as nxos
from drivers.netacl.ace import Ace, Binding, Unsupported
from orchestrator.model.errors import ParseError
from orchestrator.model.rules import Action
from tests.test_ciscolike_syntax import capture, check_outline, count_show_entries, entry, ports

N = ipaddress.ip_network
SHOW = "cisco_nxos_show_access-lists.raw"
MAC = "MAC access list entry"
COPP = "copp-system-p-acl-"

SHOW_EXPECTED = [
    ("acl-test", 10, "ace"), ("acl-test", 20, "ttl 200"), ("acl-test", 30, "neq port operator"),
    ("acl-test", 40, "ace"), ("acl-test", 50, "addrgroup reference TEST"),
    ("acl-test", 60, "addrgroup reference TEST-START"),
    (COPP + "eigrp", 10, "ace"), (COPP + "hsrp", 10, "ace"), (COPP + "hsrp6", 10, "ace"),
    (COPP + "icmp6-msgs", 10, "ace"), (COPP + "icmp6-msgs", 20, "ace"),
    (COPP + "mac-cdp-udld-vtp", 10, MAC), (COPP + "mac-cfsoe", 10, MAC), (COPP + "mac-l2-tunnel", 10, MAC),
    (COPP + "mac-l3-isis", 10, MAC), (COPP + "mac-l3-isis", 20, MAC), (COPP + "mac-lacp", 10, MAC),
    (COPP + "mac-lldp", 10, MAC), (COPP + "mac-sdp-srp", 10, MAC),
    (COPP + "pim6", 10, "ace"), (COPP + "pim6", 20, "ace"), (COPP + "pim6-reg", 10, "ace"),
    (COPP + "ptp", 10, "ace"), (COPP + "ptp", 20, "ace"), (COPP + "radius", 10, "ace"), (COPP + "rip6", 10, "ace"),
    (COPP + "traceroute", 10, "ace"), (COPP + "vrrp6", 10, "ace"),
    ("mac_acl_test", 10, MAC),
]


def test_show_access_lists_capture_completely() -> None:
    text = capture(SHOW)
    acls = nxos.parse_acls(text)
    assert {a.name: len(a.entries) for a in acls} == count_show_entries(text)
    check_outline(acls, SHOW_EXPECTED)
    families = {a.name: (a.family, a.kind) for a in acls}
    assert families["acl-test"] == (4, "extended") and families[COPP + "hsrp6"] == (6, "extended")
    assert {n for n, (f, k) in families.items() if f == 0} == {n for n, (f, k) in families.items() if k == "mac"} == {
        n for n in families if n.startswith((COPP + "mac-", "mac_"))}
    flags = entry(acls, "acl-test", 30)
    assert isinstance(flags, Unsupported) and "TCP flags ack psh rst fin" in flags.reason
    assert "addrgroup reference TEST_FINISH" in entry(acls, "acl-test", 60).reason  # type: ignore[union-attr]


def test_show_access_lists_capture_fields() -> None:
    acls = nxos.parse_acls(capture(SHOW))
    any4, any6 = N("0.0.0.0/0"), N("::/0")
    assert entry(acls, "acl-test", 10) == Ace(Action.PERMIT, None, N("1.1.1.1/32"), any4)
    assert entry(acls, "acl-test", 20) == Unsupported("permit ip 1.1.1.1/24 any ttl 200", "ttl 200")
    assert entry(acls, "acl-test", 40) == Ace(Action.PERMIT, 6, N("1.1.1.1/32"), any4, src_ports=ports((37, 179)))
    assert entry(acls, COPP + "eigrp", 10) == Ace(Action.PERMIT, 88, any4, any4)
    assert entry(acls, COPP + "hsrp", 10) == Ace(Action.PERMIT, 17, any4, N("224.0.0.0/24"), dst_ports=ports(1985))
    assert entry(acls, COPP + "hsrp6", 10) == Ace(Action.PERMIT, 17, any6, N("ff02::66/128"), dst_ports=ports(2029))
    assert entry(acls, COPP + "icmp6-msgs", 10) == Ace(Action.PERMIT, 58, any6, any6, icmp_type=134)
    assert entry(acls, COPP + "icmp6-msgs", 20) == Ace(Action.PERMIT, 58, any6, any6, icmp_type=133)
    assert entry(acls, COPP + "pim6", 10) == Ace(Action.PERMIT, 103, any6, N("ff02::d/128"))
    assert entry(acls, COPP + "pim6", 20) == Ace(Action.PERMIT, 17, any6, any6, dst_ports=ports(496))
    assert entry(acls, COPP + "rip6", 10) == Ace(Action.PERMIT, 17, any6, N("ff02::/64"), dst_ports=ports(521))
    assert entry(acls, COPP + "traceroute", 10) == Ace(Action.PERMIT, 1, any4, any4, icmp_type=11, icmp_code=0)
    assert entry(acls, COPP + "vrrp6", 10) == Ace(Action.PERMIT, None, any6, N("ff02::12/128"))
    assert entry(acls, "mac_acl_test", 10) == Unsupported(
        "permit 000e.000e.000e 000e.000e.000e 00aa.00aa.00aa 00aa.00ae.00ac aarp cos 0", MAC)


IPV6_SHOW = """IPv6 access list MSEG-INGRESS-V6
        statistics per-entry
        10 permit tcp 2001:db8::/64 2001:db8:1::1/128 eq 443 log [match=3]
        20 permit icmp any any echo-request
        30 permit udp any range 1024 65535 any eq domain
        40 permit tcp any any portgroup WEB
        50 deny ipv6 any any [match=120]
"""


def test_ipv6_entries() -> None:
    acls = nxos.parse_acls(IPV6_SHOW)
    any6 = N("::/0")
    check_outline(acls, [("MSEG-INGRESS-V6", seq, "portgroup reference WEB" if seq == 40 else "ace")
                         for seq in (10, 20, 30, 40, 50)])
    assert entry(acls, "MSEG-INGRESS-V6", 10) == Ace(Action.PERMIT, 6, N("2001:db8::/64"), N("2001:db8:1::1/128"),
                                                     dst_ports=ports(443), log=True)
    assert entry(acls, "MSEG-INGRESS-V6", 20) == Ace(Action.PERMIT, 58, any6, any6, icmp_type=128)
    assert entry(acls, "MSEG-INGRESS-V6", 30) == Ace(Action.PERMIT, 17, any6, any6, ports((1024, 65535)), ports(53))


INTERFACES = """!Command: show running-config interface
!Running configuration last done at: Mon Jan  1 00:00:00 2024
!Time: Mon Jan  1 00:00:01 2024

version 9.3(8) Bios:version

interface Vlan301
  no shutdown
  ip access-group MSEG-INGRESS-V4 out
  ipv6 traffic-filter MSEG-INGRESS-V6 out
  ip address 10.30.1.1/24

interface Ethernet1/1
  switchport
  ip port access-group PACL in

interface Ethernet1/2
  no switchport
  ip access-group MSEG-EGRESS-V4 in
  ipv6 traffic-filter MSEG-EGRESS-V6 in
"""


def test_bindings_from_interface_sections() -> None:
    assert nxos.parse_bindings(INTERFACES) == (
        Binding("Vlan301", 4, "out", "MSEG-INGRESS-V4"), Binding("Vlan301", 6, "out", "MSEG-INGRESS-V6"),
        Binding("Ethernet1/2", 4, "in", "MSEG-EGRESS-V4"), Binding("Ethernet1/2", 6, "in", "MSEG-EGRESS-V6"))
    with pytest.raises(ParseError, match="line 2"):
        nxos.parse_bindings("interface Vlan1\n  ipv6 traffic-filter A sideways\n")


def test_parse_all_outputs() -> None:
    device = nxos.parse({nxos.FETCH_COMMANDS[0]: capture(SHOW) + IPV6_SHOW, nxos.FETCH_COMMANDS[1]: INTERFACES})
    assert len(device.acls) == 21 and len(device.bindings) == 4
    assert nxos.FETCH_COMMANDS == ("show access-lists", "show running-config interface")


def test_config_lines() -> None:
    assert nxos.acl_mode("A", 4) == "ip access-list A" and nxos.acl_mode("A", 6) == "ipv6 access-list A"
    assert (nxos.delete_entry(10, 4), nxos.delete_entry(10, 6)) == ("no 10", "no 10")
    assert (nxos.delete_acl("A", 4), nxos.delete_acl("A", 6)) == ("no ip access-list A", "no ipv6 access-list A")
    assert nxos.resequence("A", 4) == ("resequence ip access-list A 10 10",)
    assert nxos.resequence("A", 6) == ("resequence ipv6 access-list A 10 10",)
    b6 = Binding("Vlan301", 6, "out", "MSEG-INGRESS-V6")
    assert nxos.bind(b6) == ("interface Vlan301", "ipv6 traffic-filter MSEG-INGRESS-V6 out")
    assert nxos.unbind(b6) == ("interface Vlan301", "no ipv6 traffic-filter MSEG-INGRESS-V6 out")
    assert nxos.bind(Binding("Ethernet1/2", 4, "in", "E")) == ("interface Ethernet1/2", "ip access-group E in")
