"""Junos syntax: ``display set`` filters and bindings → DeviceAcls (nothing lost, exact reasons), render round trip."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.juniper_junos import syntax
from drivers.juniper_junos.syntax import (
    ERROR_PATTERN,
    FETCH_COMMANDS,
    FIREWALL_COMMAND,
    INTERFACES_COMMAND,
    bind,
    counter_commands,
    delete_filter,
    delete_term,
    insert_before,
    parse,
    parse_bindings,
    parse_filters,
    read_counters,
    term_lines,
    term_name,
    unbind,
    with_counters,
)
from drivers.netacl.ace import Ace, Acl, Binding, Unsupported
from orchestrator.model.errors import ParseError
from orchestrator.model.rules import (
    ANY_PORTS,
    MAX_PORT,
    Action,
    AddressSet,
    Direction,
    TcpFlags,
    normalize_ports,
)

N = ipaddress.ip_network
CAPTURES = Path(__file__).parent / "data" / "captures" / "junos"  # real `show firewall` output (PROVENANCE.md)
ANY4, ANY6 = N("0.0.0.0/0"), N("::/0")

# Modelled on Juniper's examples of `show configuration firewall | display set` (protect-RE filters, inet6
# filters, a family-less `firewall filter`, a layer-2 filter, a policer) plus microseg's own filters.
FIREWALL = """
set firewall family inet filter MSEG-INGRESS-V4 term T10 from source-address 10.20.0.0/16
set firewall family inet filter MSEG-INGRESS-V4 term T10 from destination-address 10.10.1.0/24
set firewall family inet filter MSEG-INGRESS-V4 term T10 from protocol tcp
set firewall family inet filter MSEG-INGRESS-V4 term T10 from destination-port https
set firewall family inet filter MSEG-INGRESS-V4 term T10 from destination-port 8443
set firewall family inet filter MSEG-INGRESS-V4 term T10 then accept
set firewall family inet filter MSEG-INGRESS-V4 term T20 from destination-address 10.10.1.53/32
set firewall family inet filter MSEG-INGRESS-V4 term T20 from protocol udp
set firewall family inet filter MSEG-INGRESS-V4 term T20 from source-port 1024-65535
set firewall family inet filter MSEG-INGRESS-V4 term T20 from destination-port domain
set firewall family inet filter MSEG-INGRESS-V4 term T20 then log
set firewall family inet filter MSEG-INGRESS-V4 term T20 then accept
set firewall family inet filter MSEG-INGRESS-V4 term T15 from protocol icmp
set firewall family inet filter MSEG-INGRESS-V4 term T15 from icmp-type unreachable
set firewall family inet filter MSEG-INGRESS-V4 term T15 from icmp-code port-unreachable
set firewall family inet filter MSEG-INGRESS-V4 term T15 then accept
set firewall family inet filter MSEG-INGRESS-V4 term default then discard

set firewall family inet filter PROTECT-RE interface-specific
set firewall family inet filter PROTECT-RE term ssh from source-address 192.0.2.0/24
set firewall family inet filter PROTECT-RE term ssh from source-address 198.51.100.0/24
set firewall family inet filter PROTECT-RE term ssh from protocol tcp
set firewall family inet filter PROTECT-RE term ssh from destination-port ssh
set firewall family inet filter PROTECT-RE term ssh then accept
set firewall family inet filter PROTECT-RE term bgp from source-prefix-list BGP-PEERS
set firewall family inet filter PROTECT-RE term bgp from protocol tcp
set firewall family inet filter PROTECT-RE term bgp from port bgp
set firewall family inet filter PROTECT-RE term bgp then accept
set firewall family inet filter PROTECT-RE term established from protocol tcp
set firewall family inet filter PROTECT-RE term established from tcp-established
set firewall family inet filter PROTECT-RE term established then accept
set firewall family inet filter PROTECT-RE term est-any from tcp-established
set firewall family inet filter PROTECT-RE term est-any then accept
set firewall family inet filter PROTECT-RE term syn from protocol tcp
set firewall family inet filter PROTECT-RE term syn from tcp-flags "(syn & !ack)"
set firewall family inet filter PROTECT-RE term syn then discard
set firewall family inet filter PROTECT-RE term count-icmp from protocol icmp
set firewall family inet filter PROTECT-RE term count-icmp then count icmp-hits
set firewall family inet filter PROTECT-RE term count-icmp then accept
set firewall family inet filter PROTECT-RE term frags from is-fragment
set firewall family inet filter PROTECT-RE term frags then discard
set firewall family inet filter PROTECT-RE term first-frag from fragment-offset 0
set firewall family inet filter PROTECT-RE term first-frag then accept
set firewall family inet filter PROTECT-RE term not-mgmt from source-address 10.0.0.0/8 except
set firewall family inet filter PROTECT-RE term not-mgmt then log
set firewall family inet filter PROTECT-RE term not-mgmt then reject tcp-reset
set firewall family inet filter PROTECT-RE term voice from dscp ef
set firewall family inet filter PROTECT-RE term voice then policer p-1m
set firewall family inet filter PROTECT-RE term voice then accept
set firewall family inet filter PROTECT-RE term tally then count all
set firewall family inet filter PROTECT-RE term tally then next term
set firewall family inet filter PROTECT-RE term traceroute from protocol udp
set firewall family inet filter PROTECT-RE term traceroute from ttl 1
set firewall family inet filter PROTECT-RE term traceroute then accept
set firewall family inet filter PROTECT-RE term icmp-port from protocol icmp
set firewall family inet filter PROTECT-RE term icmp-port from destination-port 80
set firewall family inet filter PROTECT-RE term icmp-port then accept
set firewall family inet filter PROTECT-RE term mark from protocol tcp
set firewall family inet filter PROTECT-RE term mark then forwarding-class expedited-forwarding
set firewall family inet filter PROTECT-RE term last then reject
set firewall policer p-1m if-exceeding bandwidth-limit 1m
set firewall policer p-1m if-exceeding burst-size-limit 15k
set firewall policer p-1m then discard

set firewall family inet6 filter MSEG-EGRESS-V6 term T10 from source-address 2001:db8:10::/64
set firewall family inet6 filter MSEG-EGRESS-V6 term T10 from next-header tcp
set firewall family inet6 filter MSEG-EGRESS-V6 term T10 from destination-port 443
set firewall family inet6 filter MSEG-EGRESS-V6 term T10 then accept
set firewall family inet6 filter MSEG-EGRESS-V6 term T20 from next-header icmp6
set firewall family inet6 filter MSEG-EGRESS-V6 term T20 from icmp-type neighbor-solicit
set firewall family inet6 filter MSEG-EGRESS-V6 term T20 then accept
set firewall family inet6 filter MSEG-EGRESS-V6 term T30 from next-header icmp6
set firewall family inet6 filter MSEG-EGRESS-V6 term T30 from icmp-type 1
set firewall family inet6 filter MSEG-EGRESS-V6 term T30 from icmp-code address-unreachable
set firewall family inet6 filter MSEG-EGRESS-V6 term T30 then syslog
set firewall family inet6 filter MSEG-EGRESS-V6 term T30 then discard
set firewall family inet6 filter MSEG-EGRESS-V6 term T40 from next-header udp
set firewall family inet6 filter MSEG-EGRESS-V6 term T40 from hop-limit 255
set firewall family inet6 filter MSEG-EGRESS-V6 term T40 then accept
set firewall family inet6 filter MSEG-EGRESS-V6 term T50 from next-header tcp
set firewall family inet6 filter MSEG-EGRESS-V6 term T50 from next-header udp
set firewall family inet6 filter MSEG-EGRESS-V6 term T50 then accept
set firewall family inet6 filter MSEG-EGRESS-V6 term default then accept

set firewall filter LEGACY term a from source-address 172.16.0.0/12
set firewall filter LEGACY term a from protocol udp
set firewall filter LEGACY term a from destination-port snmp
set firewall filter LEGACY term a from destination-port 10161-10162
set firewall filter LEGACY term a then syslog
set firewall filter LEGACY term a then discard
set firewall filter LEGACY term b from protocol tcp
set firewall filter LEGACY term b then accept
deactivate firewall filter LEGACY term b
set firewall filter LEGACY term c from prefix-list MGMT
set firewall filter LEGACY term c then accept
set firewall family ethernet-switching filter L2 term arp from ether-type arp
set firewall family ethernet-switching filter L2 term arp then accept
"""

INTERFACES = """
set interfaces ge-0/0/0 description "uplink to core-1 (Bob's rack)"
set interfaces ge-0/0/0 unit 0 family inet address 192.0.2.1/31
set interfaces ge-0/0/0 unit 0 family inet filter input LEGACY
set interfaces ge-0/0/0 unit 0 family inet6 address 2001:db8::1/127
set interfaces ge-0/0/1 ether-options 802.3ad ae0
set interfaces ge-0/0/2 unit 0 family ethernet-switching interface-mode access
set interfaces ge-0/0/2 unit 0 family ethernet-switching vlan members v100
set interfaces ge-0/0/2 unit 0 family ethernet-switching filter input L2
set interfaces ae0 aggregated-ether-options lacp active
set interfaces irb unit 100 description "servers vlan"
set interfaces irb unit 100 family inet address 10.10.1.1/24
set interfaces irb unit 100 family inet filter output MSEG-INGRESS-V4
set interfaces irb unit 100 family inet6 filter input MSEG-EGRESS-V6
set interfaces irb unit 100 family inet6 address 2001:db8:10::1/64
set interfaces irb unit 200 family inet filter input-list [ A B ]
set interfaces irb unit 300 family inet filter output OLD
deactivate interfaces irb unit 300
set interfaces lo0 unit 0 family inet filter input PROTECT-RE
set interfaces lo0 unit 0 family inet address 127.0.0.1/32
{master:0}
"""


def filters() -> dict[str, Acl]:
    return {a.name: a for a in parse_filters(FIREWALL)}


def body(acl: str, term: str) -> Ace | Unsupported:
    entry = next(e for e in filters()[acl].entries if e.seq == term)
    return entry.body


def test_every_term_is_accounted_for_in_first_appearance_order() -> None:
    expected: dict[str, list[str]] = {}
    for match in re.finditer(r"^(?:set|deactivate) firewall (?:family \S+ )?filter (\S+) term (\S+)", FIREWALL, re.M):
        terms = expected.setdefault(match[1], [])
        if match[2] not in terms:
            terms.append(match[2])
    parsed = filters()
    assert {name: [e.seq for e in acl.entries] for name, acl in parsed.items()} == expected
    assert sum(len(a.entries) for a in parsed.values()) == 4 + 15 + 6 + 3 + 1
    assert [e.seq for e in parsed["MSEG-INGRESS-V4"].entries] == ["T10", "T20", "T15", "default"]


def test_filter_families_kinds_and_remarks() -> None:
    parsed = filters()
    assert [(a.name, a.family, a.kind) for a in parsed.values()] == [
        ("MSEG-INGRESS-V4", 4, "filter"), ("PROTECT-RE", 4, "filter"), ("MSEG-EGRESS-V6", 6, "filter"),
        ("LEGACY", 4, "filter"), ("L2", 0, "ethernet-switching"),
    ]
    assert parsed["PROTECT-RE"].remarks == ("interface-specific",)
    assert "p-1m" not in parsed


def test_modelled_inet_terms() -> None:
    assert body("MSEG-INGRESS-V4", "T10") == Ace(
        Action.PERMIT, 6, N("10.20.0.0/16"), N("10.10.1.0/24"), dst_ports=((443, 443), (8443, 8443)))
    assert body("MSEG-INGRESS-V4", "T20") == Ace(
        Action.PERMIT, 17, ANY4, N("10.10.1.53/32"), src_ports=((1024, MAX_PORT),), dst_ports=((53, 53),), log=True)
    assert body("MSEG-INGRESS-V4", "T15") == Ace(Action.PERMIT, 1, ANY4, ANY4, icmp_type=3, icmp_code=3)
    assert body("MSEG-INGRESS-V4", "default") == Ace(Action.DENY, None, ANY4, ANY4)
    assert body("LEGACY", "a") == Ace(
        Action.DENY, 17, N("172.16.0.0/12"), ANY4, dst_ports=((161, 161), (10161, 10162)), log=True)


def test_a_counted_term_is_read_with_its_counter_and_a_shared_counter_tells_no_term() -> None:
    entries = {e.seq: e for e in filters()["PROTECT-RE"].entries}
    assert body("PROTECT-RE", "count-icmp") == Ace(Action.PERMIT, 1, ANY4, ANY4)  # count decides nothing
    assert (entries["count-icmp"].counter, entries["ssh"].counter) == ("icmp-hits", None)
    shared = parse_filters("set firewall filter F term a then count c\nset firewall filter F term a then accept\n"
                           "set firewall filter F term b then count c\nset firewall filter F term b then discard\n")
    assert [(e.seq, e.counter) for e in shared[0].entries] == [("a", None), ("b", None)]


def test_counters_are_read_from_real_show_firewall_captures() -> None:
    whole = (CAPTURES / "show_firewall__golden_output_output.txt").read_text()
    assert read_counters(whole, "show firewall filter local-access-control") == {
        "fragment-test": 0, "fragment-test2": 0, "last_policer": 19016081, "ntp-deny-count": 0,
        "telnet-deny-count": 23, "traceroute-udp-deny-count": 8350}  # not the filter's Policers: rows
    assert read_counters(whole, "show firewall filter v6_local-access-control") == {
        "traceroute-udp-deny-count": 0, "v6_last_policer": 7859252}
    assert read_counters(whole, "show firewall filter __default_bpdu_filter__") == {}  # listed, no counters
    one = (CAPTURES / "show_firewall_counter_filter__golden_output_output.txt").read_text()
    assert read_counters(one, "show firewall filter v6_local-access-control") == {"v6_last_policer": 7860915}
    with pytest.raises(ParseError, match=r"show firewall filter F: line 4: not a counter row: c1 12"):
        read_counters("Filter: F\nCounters:\nName    Bytes    Packets\nc1 12\n", "show firewall filter F")
    with pytest.raises(ParseError, match=r"line 1: the device answered with an error: error: permission denied"):
        read_counters("error: permission denied\n", "show firewall filter F")
    two_columns = ("{master:0}\nFilter: F\nCounters:\nName  Bytes  Packets\nc1  640  10\n"
                   "Policers:\nName  Packets\np1  3\n")
    assert read_counters(two_columns, "show firewall filter F") == {"c1": 10}


def test_with_counters_sets_each_counted_terms_packets() -> None:
    device = parse({FIREWALL_COMMAND: FIREWALL, INTERFACES_COMMAND: ""})
    owned = [("MSEG-INGRESS-V4", 4), ("PROTECT-RE", 4), ("NOT-THERE", 4)]
    assert counter_commands(device, owned) == ("show firewall filter PROTECT-RE",)  # the filters that count
    counted = with_counters(device, {"show firewall filter PROTECT-RE": "Filter: PROTECT-RE\nCounters:\n"
                                     "Name  Bytes  Packets\nicmp-hits  8400  100\nall 0 0\n"})
    entries = {e.seq: e.matches for e in counted.acl("PROTECT-RE").entries}
    assert entries["count-icmp"] == 100 and entries["ssh"] is None  # a term without a counter is unknown
    assert entries["tally"] == 0  # counted, even where the term is unsupported
    assert counted.acl("MSEG-INGRESS-V4") == device.acl("MSEG-INGRESS-V4")


def test_modelled_inet6_terms() -> None:
    assert body("MSEG-EGRESS-V6", "T10") == Ace(Action.PERMIT, 6, N("2001:db8:10::/64"), ANY6, dst_ports=((443, 443),))
    assert body("MSEG-EGRESS-V6", "T20") == Ace(Action.PERMIT, 58, ANY6, ANY6, icmp_type=135)
    assert body("MSEG-EGRESS-V6", "T30") == Ace(Action.DENY, 58, ANY6, ANY6, icmp_type=1, icmp_code=3, log=True)
    assert body("MSEG-EGRESS-V6", "default") == Ace(Action.PERMIT, None, ANY6, ANY6)


@pytest.mark.parametrize(("acl", "term", "reason"), [
    ("PROTECT-RE", "bgp", "from source-prefix-list; from port"),
    ("PROTECT-RE", "est-any", "tcp-established without protocol tcp"),
    ("PROTECT-RE", "syn", "from tcp-flags"),
    ("PROTECT-RE", "frags", "from is-fragment"),
    ("PROTECT-RE", "first-frag", "from fragment-offset"),
    ("PROTECT-RE", "not-mgmt", "source-address … except; then reject; no terminating action (accept or discard)"),
    ("PROTECT-RE", "voice", "from dscp; then policer"),
    ("PROTECT-RE", "tally", "then next term; no terminating action (accept or discard)"),
    ("PROTECT-RE", "traceroute", "from ttl"),
    ("PROTECT-RE", "icmp-port", "source-port/destination-port without protocol tcp or udp"),
    ("PROTECT-RE", "mark", "then forwarding-class; no terminating action (accept or discard)"),
    ("PROTECT-RE", "last", "then reject; no terminating action (accept or discard)"),
    ("MSEG-EGRESS-V6", "T40", "from hop-limit"),
    ("MSEG-EGRESS-V6", "T50", "several protocols in one term (next-header)"),
    ("LEGACY", "b", "inactive (deactivated)"),
    ("LEGACY", "c", "from prefix-list"),
    ("L2", "arp", "family ethernet-switching filter"),
])
def test_unsupported_reasons(acl: str, term: str, reason: str) -> None:
    found = body(acl, term)
    assert isinstance(found, Unsupported)
    assert found.reason == reason


def test_a_term_with_address_lists_is_one_entry() -> None:
    """Several ``source-address``/``destination-address`` values in one term are one entry (their product with
    the ports): canonical — collapsed and sorted — whatever order the device lists them in."""
    assert body("PROTECT-RE", "ssh") == Ace(Action.PERMIT, 6, N("192.0.2.0/24"), ANY4, dst_ports=((22, 22),),
                                             more_src=(N("198.51.100.0/24"),))
    text = ("set firewall family inet filter F term t from source-address 10.0.1.0/24\n"
            "set firewall family inet filter F term t from source-address 10.0.0.0/24\n"
            "set firewall family inet filter F term t from destination-address 172.16.0.128/25\n"
            "set firewall family inet filter F term t from destination-address 172.16.0.0/25\n"
            "set firewall family inet filter F term t from destination-address 192.168.9.9/32\n"
            "set firewall family inet filter F term t then accept\n")
    (f,) = parse_filters(text)
    assert f.entries[0].body == Ace(Action.PERMIT, None, N("10.0.0.0/23"), N("172.16.0.0/24"),
                                    more_dst=(N("192.168.9.9/32"),))


def test_tcp_established_is_a_match_of_tcp_terms() -> None:
    """``from tcp-established`` (Junos: an alias of ``tcp-flags "(ack | rst)"``, which does not check the
    protocol itself) is read on a tcp term and written back as it was."""
    established = body("PROTECT-RE", "established")
    assert established == Ace(Action.PERMIT, 6, ANY4, ANY4, tcp_flags=TcpFlags.ESTABLISHED)
    assert term_lines("F", 4, "T1", established) == (
        "set firewall family inet filter F term T1 from protocol tcp",
        "set firewall family inet filter F term T1 from tcp-established",
        "set firewall family inet filter F term T1 then count T1",
        "set firewall family inet filter F term T1 then accept",
    )
    with pytest.raises(ValueError, match="without ACK or RST"):
        term_lines("F", 4, "T1", Ace(Action.PERMIT, 6, ANY4, ANY4, tcp_flags=TcpFlags.INITIAL))


def test_unsupported_keeps_the_terms_raw_lines() -> None:
    found = body("LEGACY", "b")
    assert isinstance(found, Unsupported)
    assert found.text.splitlines() == [
        "set firewall filter LEGACY term b from protocol tcp",
        "set firewall filter LEGACY term b then accept",
        "deactivate firewall filter LEGACY term b",
    ]
    syn = body("PROTECT-RE", "syn")
    assert isinstance(syn, Unsupported)
    assert 'from tcp-flags "(syn & !ack)"' in syn.text


def test_bindings_ignore_unrelated_config_and_inactive_units() -> None:
    assert parse_bindings(INTERFACES) == (
        Binding("ge-0/0/0.0", 4, "in", "LEGACY"),
        Binding("irb.100", 4, "out", "MSEG-INGRESS-V4"),
        Binding("irb.100", 6, "in", "MSEG-EGRESS-V6"),
        Binding("lo0.0", 4, "in", "PROTECT-RE"),
    )


def test_parse_reads_both_outputs() -> None:
    device = parse(dict(zip(FETCH_COMMANDS, (FIREWALL, INTERFACES), strict=True)))
    assert device.acl("LEGACY") is not None
    assert len(device.acls) == 5
    assert len(device.bindings) == 4
    assert parse(dict.fromkeys(FETCH_COMMANDS, "")).acls == ()
    with pytest.raises(ParseError, match="missing output of show configuration interfaces"):
        parse({FETCH_COMMANDS[0]: FIREWALL}, point="sw1")


def test_empty_filter_and_bracketed_lists() -> None:
    text = ("set firewall family inet filter EMPTY\n"
            "set firewall family inet filter F term t from destination-port [ http https 8080-8081 ]\n"
            "set firewall family inet filter F term t from protocol tcp\n"
            "set firewall family inet filter F term t then accept\n")
    empty, f = parse_filters(text)
    assert (empty.name, empty.entries) == ("EMPTY", ())
    assert f.entries[0].body == Ace(Action.PERMIT, 6, ANY4, ANY4, dst_ports=((80, 80), (443, 443), (8080, 8081)))


@pytest.mark.parametrize(("line", "problem"), [
    ("foo bar", "not a `set` statement"),
    ("show configuration firewall", "not a `set` statement"),
    ("set", "not a `set` statement"),
    ("set interfaces irb unit 100 family inet filter input F", "not a firewall statement"),
    ("set firewall family inet filter", "a filter without a name"),
    ("set firewall family inet filter F term", "a term without a name"),
    ("set firewall family inet filter F term T from", "`from` without a statement"),
    ("set firewall family inet filter F term T from source-address 300.1.1.0/24", "does not appear to be"),
    ("set firewall family inet6 filter F term T from source-address 10.0.0.0/8", "is not an inet6 prefix"),
    ("set firewall family inet filter F term T from destination-port 70000", "invalid port range 70000"),
    ("set firewall family inet filter F term T from icmp-type 300", "300 is above 255"),
    ("set firewall family inet filter F term T from protocol", "from protocol without a value"),
])
def test_garbage_is_a_parse_error_naming_line_and_text(line: str, problem: str) -> None:
    text = "set firewall family inet filter OK term a then accept\n\n" + line + "\n"
    with pytest.raises(ParseError) as info:
        parse_filters(text, point="sw1")
    message = str(info.value)
    assert message.startswith(f"sw1 (junos): {FETCH_COMMANDS[0]}: line 3: ")
    assert problem in message
    assert message.endswith(line)


def test_interfaces_garbage_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match=r"line 2: not an interfaces statement: set firewall filter F"):
        parse_bindings("set interfaces lo0 unit 0\nset firewall filter F term a then accept\n")
    with pytest.raises(ParseError, match=r"line 1: not a `set` statement: interfaces \{"):
        parse_bindings("interfaces {\n")
    with pytest.raises(ParseError, match="unit x is not a number"):
        parse_bindings("set interfaces irb unit x family inet filter input F\n")


def test_a_deactivated_filter_makes_every_term_unsupported() -> None:
    text = ("set firewall family inet6 filter F interface-specific\n"
            "set firewall family inet6 filter F term a then accept\n"
            "set firewall family inet6 filter F term b from next-header tcp\n"
            "set firewall family inet6 filter F term b then discard\n"
            "deactivate firewall family inet6 filter F interface-specific\n"
            "deactivate firewall family inet6 filter F\n")
    (acl,) = parse_filters(text)
    assert [(e.seq, getattr(e.body, "reason", None)) for e in acl.entries] == [
        ("a", "inactive (deactivated)"), ("b", "inactive (deactivated)")]
    assert acl.remarks == ("interface-specific", "inactive: interface-specific")


def test_unknown_keywords_are_unsupported_not_errors() -> None:
    text = ("set firewall filter F term t from protocol tcp\n"
            "set firewall filter F term t from destination-port gopher\n"
            "set firewall filter F term t then accept\n")
    assert parse_filters(text)[0].entries[0].body == Unsupported(text.strip(), "unknown destination-port gopher")


# ---------------------------------------------------------------------------------------------- rendering


def test_term_lines_exact() -> None:
    ace = Ace(Action.PERMIT, 6, N("10.20.0.0/16"), N("10.10.1.0/24"), dst_ports=((443, 443), (8000, 8080)), log=True)
    base = "set firewall family inet filter MSEG-INGRESS-V4 term T10"
    assert term_lines("MSEG-INGRESS-V4", 4, "T10", ace) == (
        f"{base} from source-address 10.20.0.0/16",
        f"{base} from destination-address 10.10.1.0/24",
        f"{base} from protocol tcp",
        f"{base} from destination-port 443",
        f"{base} from destination-port 8000-8080",
        f"{base} then count T10",
        f"{base} then log",
        f"{base} then accept",
    )
    icmp6 = Ace(Action.PERMIT, 58, ANY6, N("2001:db8::/64"), icmp_type=128, icmp_code=0)
    base6 = "set firewall family inet6 filter MSEG-INGRESS-V6 term T20"
    assert term_lines("MSEG-INGRESS-V6", 6, "T20", icmp6) == (
        f"{base6} from destination-address 2001:db8::/64",
        f"{base6} from next-header icmp6",
        f"{base6} from icmp-type echo-request",
        f"{base6} from icmp-code 0",
        f"{base6} then count T20",
        f"{base6} then accept",
    )
    assert term_lines("F", 4, "legacy.v1", Ace(Action.DENY, None, ANY4, ANY4)) == (  # restored: no counter name
        "set firewall family inet filter F term legacy.v1 then discard",)
    assert term_lines("F", 4, "default", Ace(Action.DENY, None, ANY4, ANY4)) == (
        "set firewall family inet filter F term default then count default",
        "set firewall family inet filter F term default then discard")


@pytest.mark.parametrize(("family", "ace"), [
    (6, Ace(Action.DENY, None, ANY4, ANY4)),
    (4, Ace(Action.PERMIT, 132, ANY4, ANY4, dst_ports=((80, 80),))),
    (4, Ace(Action.PERMIT, 58, ANY4, ANY4, icmp_type=8)),
    (4, Ace(Action.PERMIT, 6, ANY4, ANY4, dst_ports=())),
])
def test_term_lines_refuses_what_junos_cannot_write(family: int, ace: Ace) -> None:
    with pytest.raises(ValueError):
        term_lines("F", family, "T10", ace)
    with pytest.raises(ValueError):
        term_lines("bad name", 4, "T10", Ace(Action.DENY, None, ANY4, ANY4))


def test_other_change_lines() -> None:
    assert delete_term("MSEG-INGRESS-V4", 4, "T10") == "delete firewall family inet filter MSEG-INGRESS-V4 term T10"
    assert insert_before("F", 6, "T15", "T20") == "insert firewall family inet6 filter F term T15 before term T20"
    assert delete_filter("MSEG-EGRESS-V6", 6) == "delete firewall family inet6 filter MSEG-EGRESS-V6"
    b = Binding("irb.100", 4, "out", "MSEG-INGRESS-V4")
    assert bind(b) == ("set interfaces irb unit 100 family inet filter output MSEG-INGRESS-V4",)
    assert unbind(b) == ("delete interfaces irb unit 100 family inet filter output MSEG-INGRESS-V4",)
    assert bind(Binding("ge-0/0/1.0", 6, "in", "F")) == ("set interfaces ge-0/0/1 unit 0 family inet6 filter input F",)
    for bad in (Binding("irb", 4, "in", "F"), Binding("irb.100", 4, "both", "F"), Binding("irb.100", 0, "in", "F")):
        with pytest.raises(ValueError):
            bind(bad)
    assert parse_bindings("\n".join(bind(b))) == (b,)


def test_term_names() -> None:
    assert [term_name(n) for n in (1, 2, 3)] == ["T10", "T20", "T30"]
    assert syntax.DEFAULT_TERM == "default"
    assert syntax.delete_acl is delete_filter
    with pytest.raises(ValueError):
        term_name(0)


@pytest.mark.parametrize("output", [
    "set firewall family inet filter F term T from destination-port\n       ^\nsyntax error.",
    "error: configuration check-out failed",
    "[edit]\n  'firewall'\n    error: statement not found",
    "unknown command.",
    "missing argument.",
    "invalid ip address or hostname: 300.1.1.1/8 at '300.1.1.1/8'",
])
def test_error_pattern_matches_junos_errors(output: str) -> None:
    assert re.search(ERROR_PATTERN, output)


@pytest.mark.parametrize("output", [
    "[edit]\nadmin@sw1# ",
    "commit confirmed will be automatically rolled back in 5 minutes unless confirmed\ncommit complete",
    "warning: statement not found",
])
def test_error_pattern_ignores_success(output: str) -> None:
    assert not re.search(ERROR_PATTERN, output)


# ---------------------------------------------------------------------------------------------- round trip


@st.composite
def aces(draw: st.DrawFn) -> Ace:
    family = draw(st.sampled_from((4, 6)))
    bits = 32 if family == 4 else 128

    def network() -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        address = draw(st.integers(0, 2**bits - 1))
        kind = ipaddress.IPv4Network if family == 4 else ipaddress.IPv6Network
        return kind((address, draw(st.integers(0, bits))), strict=False)

    icmp = 1 if family == 4 else 58
    protocol = draw(st.one_of(st.none(), st.sampled_from((6, 17, icmp)), st.integers(0, 255)))
    src_ports = dst_ports = ANY_PORTS
    icmp_type = icmp_code = None
    if protocol in (6, 17):
        port_range = st.tuples(st.integers(0, MAX_PORT), st.integers(0, MAX_PORT)).map(lambda r: (min(r), max(r)))
        ports = st.lists(port_range, min_size=1, max_size=4).map(normalize_ports)
        src_ports, dst_ports = draw(st.one_of(st.just(ANY_PORTS), ports)), draw(st.one_of(st.just(ANY_PORTS), ports))
    elif protocol == icmp:
        icmp_type = draw(st.one_of(st.none(), st.integers(0, 255)))
        icmp_code = None if icmp_type is None else draw(st.one_of(st.none(), st.integers(0, 255)))
    # a side is one prefix or, as a compiled term holds it, a canonical list (AddressSet: collapsed, sorted)
    src, dst = ([network() for _ in range(draw(st.integers(1, 3)))] for _ in range(2))
    src, dst = AddressSet.of(src).networks, AddressSet.of(dst).networks
    flags = TcpFlags.ESTABLISHED if protocol == 6 and draw(st.booleans()) else None
    return Ace(draw(st.sampled_from(Action)), protocol, src[0], dst[0], src_ports, dst_ports,
               icmp_type, icmp_code, draw(st.booleans()), src[1:], dst[1:], flags)


@settings(max_examples=400, deadline=None)
@given(aces())
def test_round_trip_one_term(ace: Ace) -> None:
    lines = term_lines("MSEG-INGRESS", ace.family, "T10", ace)
    (acl,) = parse_filters("\n".join(lines))
    assert (acl.name, acl.family, [e.seq for e in acl.entries]) == ("MSEG-INGRESS", ace.family, ["T10"])
    assert acl.entries[0].body == ace


@settings(max_examples=100, deadline=None)
@given(st.lists(aces(), min_size=1, max_size=6))
def test_round_trip_filters_keep_term_order(items: list[Ace]) -> None:
    lines: list[str] = []
    expected: dict[tuple[str, int], list[tuple[str, Ace]]] = {}
    for index, ace in enumerate(items, start=1):
        name = f"MSEG-V{ace.family}"
        term = term_name(index)
        lines += term_lines(name, ace.family, term, ace)
        expected.setdefault((name, ace.family), []).append((term, ace))
    for (name, family), terms in expected.items():
        any_net = ANY4 if family == 4 else ANY6
        default = Ace(Action.DENY, None, any_net, any_net)
        lines += term_lines(name, family, "default", default)
        terms.append(("default", default))
    parsed = {(a.name, a.family): [(e.seq, e.body) for e in a.entries] for a in parse_filters("\n".join(lines))}
    assert parsed == expected


# ------------------------------------------------------------------ tolerant fetch (issue #14, part 1)

def test_a_line_nobody_can_read_blocks_only_the_filter_it_belongs_to() -> None:
    """``parse`` (what a fetch uses) does not raise on an unreadable line of someone else's filter: each such line
    names its filter (``display set`` lines carry their whole path) and ownership decides.  A line that names no
    filter or interface stays a ParseError: the answer is the whole configuration, and that line could be what
    is left of an owned filter or binding."""
    from drivers.juniper_junos.driver import JunosSettings
    from drivers.netacl.layout import owned_state, parse_settings
    from orchestrator.model.rules import AddressSet

    firewall = (
        "{primary:node0}\n"  # an SRX chassis cluster's banner (Juniper's cluster examples show it on every prompt)
        "set firewall family inet filter MSEG-INGRESS-V4 term T10 then accept\n"
        "set firewall family inet filter LEGACY term a from destination-port 70000\n"  # unreadable: out of range
        "set firewall family inet filter LEGACY term b then accept\n"
        "set firewall family inet filter LEGACY term c from icmp-type 300\n"
    )
    interfaces = ("set interfaces irb unit 100 family inet filter input MSEG-INGRESS-V4\n"
                  "set interfaces ge-0/0/9 unit x family inet filter input LEGACY\n")
    device = parse({FIREWALL_COMMAND: firewall, INTERFACES_COMMAND: interfaces}, point="sw1")
    assert [a.name for a in device.acls] == ["MSEG-INGRESS-V4", "LEGACY"]
    assert [(u.line_no, u.acl, u.interface, u.reason) for u in device.unread] == [
        (3, "LEGACY", None, "invalid port range 70000"),
        (5, "LEGACY", None, "300 is above 255"),
        (2, None, "ge-0/0/9.x", "unit x is not a number"),
    ]
    settings = parse_settings({"bindings": ["irb.100"]}, "sw1", "junos", AddressSet.of(["10.0.0.0/8"]),
                              model=JunosSettings, directions=frozenset({Direction.INGRESS}))
    state = owned_state(device, settings, point="sw1", driver="junos")
    assert [a["name"] for a in state["acls"]] == ["MSEG-INGRESS-V4"]
    assert {u["name"] for u in state["unread"]} == {"LEGACY", "ge-0/0/9.x"}
    # the same garbage inside the owned filter fails the fetch closed, naming filter, line and text
    owned_bad = firewall.replace("filter LEGACY term a", "filter MSEG-INGRESS-V4 term T5")
    device = parse({FIREWALL_COMMAND: owned_bad, INTERFACES_COMMAND: interfaces}, point="sw1")
    with pytest.raises(ParseError, match=r"owned ACL MSEG-INGRESS-V4 cannot be read \(`show configuration firewall "
                                         r"\| display set` line 3: invalid port range 70000: "):
        owned_state(device, settings, point="sw1", driver="junos")
    for text, problem in (("set firewall family inet filter\n", "line 6: a filter without a name"),
                          ("a banner some script printed\n", "line 6: not a `set` statement")):
        with pytest.raises(ParseError, match=problem):
            parse({FIREWALL_COMMAND: firewall + text, INTERFACES_COMMAND: interfaces})


def test_a_device_error_in_the_output_fails_the_fetch() -> None:
    """An answer that holds an error (a locked database, a refused command) is never read as a configuration."""
    text = "set firewall family inet filter F term a then accept\nerror: configuration database locked by: admin\n"
    with pytest.raises(ParseError, match="line 2: the device answered with an error: error: configuration"):
        parse({FIREWALL_COMMAND: text, INTERFACES_COMMAND: ""}, point="sw1")
