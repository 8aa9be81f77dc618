"""Cisco-like ACL grammar (IOS, NX-OS, EOS): entry details, fail-closed errors, render → show → parse round trips."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.arista_eos import syntax as eos
from drivers.cisco_ios import syntax as ios
from drivers.cisco_nxos import syntax as nxos
from drivers.netacl.ace import Ace, Acl, Unsupported
from drivers.netacl.ciscolike import Dialect, GrammarError, parse_body
from orchestrator.model.errors import ParseError
from orchestrator.model.rules import ANY_PORTS, Action, Direction, PortSet, TcpFlags, normalize_ports

CAPTURES = Path(os.environ.get("MICROSEG_DEVICE_OUTPUTS",
                               Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "device-outputs"))
PLATFORMS = (ios, nxos, eos)
N = ipaddress.ip_network


def capture(name: str) -> str:
    """One real device capture (read-only test input shared by the project)."""
    return (CAPTURES / name).read_text()


def outline(acls: Sequence[Acl]) -> list[tuple[str, int | str, str]]:
    """(ACL, seq, ``ace`` or the Unsupported reason) of every entry, in order."""
    return [(a.name, e.seq, "ace" if isinstance(e.body, Ace) else e.body.reason) for a in acls for e in a.entries]


def check_outline(acls: Sequence[Acl], expected: Sequence[tuple[str, int, str]]) -> None:
    """Exactly the expected (ACL, seq) list; ``ace`` entries modelled, others Unsupported with the named reason."""
    got = outline(acls)
    assert [(name, seq) for name, seq, _ in got] == [(name, seq) for name, seq, _ in expected]
    for (name, seq, reason), (_, _, want) in zip(got, expected, strict=True):
        if want == "ace":
            assert reason == "ace", (name, seq, reason)
        else:
            assert want in reason, (name, seq, reason, want)
            assert "unrecognized" not in reason and "unknown port" not in reason, (name, seq, reason)


def count_show_entries(text: str) -> dict[str, int]:
    """Entry lines per ACL, classified without the parser: an indented line starting with a number."""
    counts: dict[str, int] = {}
    name = ""
    for line in text.splitlines():
        if line.strip() and not line[0].isspace():
            name = line.split()[-1] if not line.endswith("]") else line.split()[-2]
            counts[name] = 0
        elif re.match(r"\s+\d+ ", line):
            counts[name] += 1
    return counts


def entry(acls: Sequence[Acl], name: str, seq: int) -> Ace | Unsupported:
    acl = next(a for a in acls if a.name == name)
    return next(e.body for e in acl.entries if e.seq == seq)


def ports(*values: int | tuple[int, int]) -> PortSet:
    return tuple((v, v) if isinstance(v, int) else v for v in values)


# ---------------------------------------------------------------------------------------------------- entries


@pytest.mark.parametrize(("body", "src_ports", "dst_ports"), [
    ("permit tcp any gt 1023 any lt 1024", ((1024, 65535),), ((0, 1023),)),
    ("permit udp any eq 53 any range 0 65535", ((53, 53),), ANY_PORTS),
    ("permit tcp any any eq www 443 8080 telnet", ANY_PORTS, ports(23, 80, 443, 8080)),
    ("permit sctp any any eq 2905", ANY_PORTS, ports(2905)),
])
def test_port_operators(body: str, src_ports: PortSet, dst_ports: PortSet) -> None:
    ace = parse_body(body, 4, ios.DIALECT)
    assert isinstance(ace, Ace)
    assert (ace.src_ports, ace.dst_ports) == (src_ports, dst_ports)


@pytest.mark.parametrize(("body", "family", "icmp"), [
    ("permit icmp any any echo", 4, (8, None)),
    ("permit icmp any any echo-reply", 4, (0, None)),
    ("permit icmp any any unreachable", 4, (3, None)),
    ("permit icmp any any port-unreachable", 4, (3, 3)),
    ("permit icmp any any time-exceeded", 4, (11, None)),
    ("permit icmp any any 3 4 log", 4, (3, 4)),
    ("permit icmp any any 13", 4, (13, None)),
    ("permit icmp any any router-advertisement", 4, (9, None)),
    ("permit icmp any any router-advertisement", 6, (134, None)),
    ("permit icmp any any router-solicitation", 6, (133, None)),
    ("permit icmp any any echo-request", 6, (128, None)),
    ("permit icmp any any nd-ns", 6, (135, None)),
])
def test_icmp_names_and_numbers(body: str, family: int, icmp: tuple[int, int | None]) -> None:
    ace = parse_body(body, family, ios.DIALECT)
    assert isinstance(ace, Ace)
    assert ace.protocol == (1 if family == 4 else 58)
    assert (ace.icmp_type, ace.icmp_code) == icmp


@pytest.mark.parametrize(("name", "number"), [
    ("ahp", 51), ("eigrp", 88), ("pim", 103), ("ospf", 89), ("gre", 47), ("esp", 50), ("igmp", 2), ("tcp", 6),
    ("udp", 17), ("sctp", 132), ("ip", None), ("112", 112),
])
def test_protocol_names(name: str, number: int | None) -> None:
    ace = parse_body(f"permit {name} any any", 4, nxos.DIALECT)
    assert isinstance(ace, Ace) and ace.protocol == number


def test_ipv6_protocol_words() -> None:
    for word in ("icmp", "icmpv6", "58"):
        ace = parse_body(f"deny {word} any any", 6, eos.DIALECT)
        assert isinstance(ace, Ace) and ace.protocol == 58
    ace = parse_body("deny ipv6 any any", 6, eos.DIALECT)
    assert isinstance(ace, Ace) and ace.protocol is None and ace.is_catch_all()


@pytest.mark.parametrize(("address", "network"), [
    ("10.1.2.3 0.0.0.0", "10.1.2.3/32"),
    ("10.1.2.0 0.0.0.255", "10.1.2.0/24"),
    ("10.1.2.77 0.0.0.255", "10.1.2.0/24"),  # host bits under the wildcard: the device matches the network
    ("0.0.0.0 255.255.255.255", "0.0.0.0/0"),
])
def test_contiguous_wildcards(address: str, network: str) -> None:
    ace = parse_body(f"permit ip {address} any", 4, ios.DIALECT)
    assert isinstance(ace, Ace) and ace.src == N(network)


@pytest.mark.parametrize(("body", "reason"), [
    ("permit ip 10.0.0.0 0.255.0.255 any", "non-contiguous wildcard 0.255.0.255"),
    ("permit tcp any neq 22 any", "neq"),
    ("permit ip any any established", "established on protocol ip (TCP only)"),
    ("permit udp any any established", "established on protocol 17 (TCP only)"),
    ("permit tcp any any eq 22 syn", "TCP flags syn"),
    ("permit tcp any any rst fin", "TCP flags rst fin"),
    ("permit ip any any dscp ef", "dscp ef"),
    ("permit ip any any precedence critical", "precedence critical"),
    ("permit ip any any fragments", "fragments"),
    ("permit ip any any log-input", "log-input"),
    ("permit ip any any time-range office (active)", "time-range office (active)"),
    ("permit ip any any ttl eq 2", "ttl eq 2"),
    ("permit object-group WEB any any", "service object-group WEB"),
    ("permit tcp object-group SRC any", "object-group reference SRC"),
    ("permit tcp any any eq notaport", "unknown port name 'notaport'"),
    ("permit ip any any log frobnicate", "unrecognized option 'frobnicate'"),
    ("dynamic testlist permit ip any any", "dynamic"),
])
def test_unsupported_constructs_keep_text_and_name_the_reason(body: str, reason: str) -> None:
    got = parse_body(body, 4, ios.DIALECT)
    assert isinstance(got, Unsupported)
    assert got.text == body and reason in got.reason


def test_ipv6_hop_by_hop_is_unsupported() -> None:
    got = parse_body("permit hbh any any", 6, ios.DIALECT)
    assert isinstance(got, Unsupported) and got.reason == "hop-by-hop extension header (hbh)"


def test_portgroup_and_addrgroup_are_unsupported_on_nxos() -> None:
    got = parse_body("permit tcp addrgroup A portgroup P any", 4, nxos.DIALECT)
    assert isinstance(got, Unsupported)
    assert "addrgroup reference A" in got.reason and "portgroup reference P" in got.reason


def test_nxos_prefix_with_host_bits_is_the_masked_network() -> None:
    ace = parse_body("permit ip 1.1.1.1/24 any", 4, nxos.DIALECT)
    assert isinstance(ace, Ace) and ace.src == N("1.1.1.0/24")


@pytest.mark.parametrize(("body", "family", "dialect"), [
    ("frobnicate ip any any", 4, ios.DIALECT),
    ("permit", 4, ios.DIALECT),
    ("permit tcp any", 4, ios.DIALECT),
    ("permit tcp 999.1.1.1/24 any", 4, nxos.DIALECT),
    ("permit tcp 10.0.0.0 any", 4, nxos.DIALECT),  # no wildcards on NX-OS
    ("permit tcp 2001:db8::/32 any", 4, eos.DIALECT),  # wrong family
    ("permit ip 10.0.0.0/8 any", 6, eos.DIALECT),
    ("permit bogus any any", 4, eos.DIALECT),  # no service object-groups on EOS
    ("permit 256 any any", 4, eos.DIALECT),
    ("permit tcp any any eq 70000", 4, eos.DIALECT),
    ("permit tcp any any range 90 80", 4, eos.DIALECT),
    ("permit tcp any eq 80 10.0.0.0", 4, ios.DIALECT),
    ("permit icmp any any 300", 4, ios.DIALECT),
    ("permit ip any any ttl", 4, eos.DIALECT),
])
def test_unreadable_entries_are_grammar_errors(body: str, family: int, dialect: Dialect) -> None:
    with pytest.raises(GrammarError):
        parse_body(body, family, dialect)


@pytest.mark.parametrize(("platform", "text", "lineno"), [
    (ios, "Extended IP access list A\n    10 permit ip any any\nthis is not an ACL\n", 3),
    (ios, "    10 permit ip any any\n", 1),
    (ios, "Extended IP access list A\n    permit ip any any\n", 2),
    (ios, "IPv6 access list A\n    permit ipv6 any any\n", 2),  # IOS IPv6 needs its trailing sequence
    (ios, "Extended IP access list A\n    10 permit ip any any\n    10 deny ip any any\n", 3),
    (nxos, "IP access list A\n        10 permit ip any any\n        statistics per-entry junk\n", 3),
    (nxos, "IP access list A\n\n        10 permit tcp any anywhere\n", 3),
    (eos, "IP Access List A [readonly]\n        10 permit ip any any\n        hello\n", 3),
    (eos, "IP Access List\n", 1),
    (eos, "Reflexive IP Access List A\n", 1),
])
def test_garbage_lines_raise_parse_error_naming_the_line(platform: ModuleType, text: str, lineno: int) -> None:
    with pytest.raises(ParseError) as caught:
        platform.parse_acls(text, point="sw1")
    assert f"line {lineno}:" in caught.value.message
    assert text.splitlines()[lineno - 1].strip() in caught.value.message
    assert caught.value.point == "sw1" and caught.value.driver == platform.DRIVER


@pytest.mark.parametrize("platform", PLATFORMS)
def test_parse_needs_every_fetch_output(platform: ModuleType) -> None:
    outputs = dict.fromkeys(platform.FETCH_COMMANDS, "")
    assert platform.parse(outputs).acls == ()
    del outputs[platform.FETCH_COMMANDS[-1]]
    with pytest.raises(ParseError, match="no output for"):
        platform.parse(outputs)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_error_pattern_matches_the_documented_rejection_only(platform: ModuleType) -> None:
    rejection = {ios: "% Invalid input detected at '^' marker.", nxos: "% Invalid command at '^' marker.",
                 eos: "% Invalid input"}[platform]
    output = f"sw1(config)#10 permit tcp any any eq 99999\n                        ^\n{rejection}\nsw1(config)#"
    assert re.search(platform.ERROR_PATTERN, output, flags=re.M)
    duplicate = {ios: "% Duplicate sequence number", nxos: "Duplicate sequence number",
                 eos: "% Error: Duplicate sequence number"}[platform]
    assert re.search(platform.ERROR_PATTERN, f"sw1(config-acl)#10 permit ip any any\n{duplicate}\n", flags=re.M)
    fine = ("sw1(config)#ip access-list MSEG-ERRORS-V4\nsw1(config-acl)#10 permit ip any any\n"
            "%SYS-5-CONFIG_I: Configured from console by admin\n% Warning: the ACL is not applied\nsw1(config-acl)#")
    assert not re.search(platform.ERROR_PATTERN, fine, flags=re.M)


# ---------------------------------------------------------------------------------------------------- rendering

EXAMPLE = Ace(Action.PERMIT, 6, N("10.0.0.0/24"), N("10.1.1.1/32"), dst_ports=ports(443), log=True)
EXAMPLE6 = Ace(Action.PERMIT, 6, N("2001:db8::/64"), N("::/0"), dst_ports=ports(443))


def test_format_entry_examples() -> None:
    assert ios.format_entry(10, EXAMPLE) == "10 permit tcp 10.0.0.0 0.0.0.255 host 10.1.1.1 eq 443 log"
    assert ios.format_entry(10, EXAMPLE6) == "sequence 10 permit tcp 2001:db8::/64 any eq 443"
    assert nxos.format_entry(10, EXAMPLE) == "10 permit tcp 10.0.0.0/24 10.1.1.1/32 eq 443 log"
    assert nxos.format_entry(10, EXAMPLE6) == "10 permit tcp 2001:db8::/64 any eq 443"
    assert eos.format_entry(10, EXAMPLE) == "10 permit tcp 10.0.0.0/24 host 10.1.1.1 eq 443 log"
    assert eos.format_entry(10, EXAMPLE6) == "10 permit tcp 2001:db8::/64 any eq 443"


def test_established_is_read_and_written_after_the_ports_before_log() -> None:
    """``established`` (ACK or RST set) is modelled on TCP entries of every Cisco-like platform, IPv4 and IPv6;
    IOS's own documented example: ``permit tcp any 172.16.0.0 0.0.255.255 established``."""
    ace = Ace(Action.PERMIT, 6, N("10.0.0.5/32"), N("10.1.0.0/24"), src_ports=ports(5432), log=True,
              tcp_flags=TcpFlags.ESTABLISHED)
    assert ios.format_entry(10, ace) == "10 permit tcp host 10.0.0.5 eq 5432 10.1.0.0 0.0.0.255 established log"
    assert nxos.format_entry(10, ace) == "10 permit tcp 10.0.0.5/32 eq 5432 10.1.0.0/24 established log"
    assert eos.format_entry(10, ace) == "10 permit tcp host 10.0.0.5 eq 5432 10.1.0.0/24 established log"
    documented = parse_body("permit tcp any 172.16.0.0 0.0.255.255 established", 4, ios.DIALECT)
    assert documented == Ace(Action.PERMIT, 6, N("0.0.0.0/0"), N("172.16.0.0/16"), tcp_flags=TcpFlags.ESTABLISHED)
    assert documented.to_rule(Direction.INGRESS).tcp_flags is TcpFlags.ESTABLISHED
    initial = Ace(Action.PERMIT, 6, N("0.0.0.0/0"), N("0.0.0.0/0"), tcp_flags=TcpFlags.INITIAL)
    with pytest.raises(ValueError, match="no keyword"):
        ios.format_entry(10, initial)


def test_format_entry_catch_all_icmp_and_ranges() -> None:
    deny4 = Ace(Action.DENY, None, N("0.0.0.0/0"), N("0.0.0.0/0"))
    deny6 = Ace(Action.DENY, None, N("::/0"), N("::/0"))
    assert [p.format_entry(990, deny4) for p in PLATFORMS] == ["990 deny ip any any"] * 3
    assert [p.format_entry(990, deny6) for p in PLATFORMS] == [
        "sequence 990 deny ipv6 any any", "990 deny ipv6 any any", "990 deny ipv6 any any"]
    echo6 = Ace(Action.PERMIT, 58, N("2001:db8::1/128"), N("::/0"), icmp_type=128, icmp_code=0)
    assert eos.format_entry(20, echo6) == "20 permit icmpv6 host 2001:db8::1 any 128 0"
    assert nxos.format_entry(20, echo6) == "20 permit icmp 2001:db8::1/128 any 128 0"
    web = Ace(Action.PERMIT, 17, N("10.0.0.0/8"), N("10.2.0.0/16"), src_ports=((1024, 65535),),
              dst_ports=ports(53, 123))
    assert ios.format_entry(30, web) == (
        "30 permit udp 10.0.0.0 0.255.255.255 range 1024 65535 10.2.0.0 0.0.255.255 eq 53 123")
    assert eos.format_entry(30, web) == "30 permit udp 10.0.0.0/8 range 1024 65535 10.2.0.0/16 eq 53 123"
    adjacent = Ace(Action.PERMIT, 6, N("0.0.0.0/0"), N("0.0.0.0/0"), dst_ports=ports((22, 23), 80))
    assert ios.format_entry(35, adjacent) == "35 permit tcp any any eq 22 23 80"
    gre = Ace(Action.PERMIT, 47, N("10.0.0.1/32"), N("10.0.0.2/32"))
    assert nxos.format_entry(40, gre) == "40 permit 47 10.0.0.1/32 10.0.0.2/32"


@pytest.mark.parametrize(("platform", "ace"), [
    (nxos, Ace(Action.PERMIT, 6, N("0.0.0.0/0"), N("0.0.0.0/0"), dst_ports=ports(80, 443))),
    (ios, Ace(Action.PERMIT, 6, N("0.0.0.0/0"), N("0.0.0.0/0"), dst_ports=ports(80, (8000, 8080)))),
    (ios, Ace(Action.PERMIT, 6, N("0.0.0.0/0"), N("0.0.0.0/0"), dst_ports=ports((20, 25), (80, 84)))),
    (eos, Ace(Action.PERMIT, 6, N("0.0.0.0/0"), N("0.0.0.0/0"), dst_ports=ports(*range(1, 23, 2)))),
    (ios, Ace(Action.PERMIT, 132, N("0.0.0.0/0"), N("0.0.0.0/0"), dst_ports=ports(2905))),
    (eos, Ace(Action.PERMIT, None, N("0.0.0.0/0"), N("0.0.0.0/0"), dst_ports=ports(80))),
    (eos, Ace(Action.PERMIT, 6, N("0.0.0.0/0"), N("0.0.0.0/0"), icmp_type=8)),
    (eos, Ace(Action.PERMIT, 58, N("0.0.0.0/0"), N("0.0.0.0/0"), icmp_type=8)),
    (ios, Ace(Action.PERMIT, 1, N("0.0.0.0/0"), N("0.0.0.0/0"), icmp_code=1)),
    (ios, Ace(Action.PERMIT, 0, N("0.0.0.0/0"), N("0.0.0.0/0"))),
])
def test_format_entry_refuses_what_one_entry_cannot_say(platform: ModuleType, ace: Ace) -> None:
    with pytest.raises(ValueError):
        platform.format_entry(10, ace)


def test_format_entry_refuses_bad_sequence_numbers() -> None:
    with pytest.raises(ValueError):
        eos.format_entry(0, EXAMPLE)


# ---------------------------------------------------------------------------------------------------- round trip

SHOW_PORT_NAMES = {80: "www", 23: "telnet", 53: "domain", 179: "bgp", 161: "snmp"}
SHOW_PROTOCOL_NAMES = {47: "gre", 89: "ospf", 103: "pim", 2: "igmp", 51: "ahp", 88: "eigrp"}
HEADERS: dict[ModuleType, tuple[str, str, str]] = {  # (IPv4 header, IPv6 header, indent)
    ios: ("Extended IP access list T", "IPv6 access list T", " " * 4),
    nxos: ("IP access list T", "IPv6 access list T", " " * 8),
    eos: ("IP Access List T", "IPv6 Access List T", " " * 8),
}
COUNTERS = {ios: "(12 matches)", nxos: "[match=12]", eos: "[match 12 packets, 0:00:05 ago]"}


def show_line(platform: ModuleType, config_line: str, *, counters: bool) -> str:
    """The config line as the device lists it: port/protocol names, counters, IOS IPv6 ``sequence N`` last."""
    line = re.sub(r"\b(eq|range)((?: \d+(?![\d.:/]))+)", lambda m: m[1] + "".join(
        " " + SHOW_PORT_NAMES.get(int(p), p) for p in m[2].split()), config_line)
    line = re.sub(r"\b(permit|deny) (\d+) ", lambda m: f"{m[1]} {SHOW_PROTOCOL_NAMES.get(int(m[2]), m[2])} ", line)
    if counters:
        line += " " + COUNTERS[platform]
    if m := re.fullmatch(r"sequence (\d+) (.+)", line):
        line = f"{m[2]} sequence {m[1]}"
    return line


@st.composite
def networks(draw: st.DrawFn, family: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    bits = 32 if family == 4 else 128
    prefix = draw(st.sampled_from((0, bits)) | st.integers(0, bits))
    address = draw(st.integers(0, 2**bits - 1))
    cls = ipaddress.IPv4Network if family == 4 else ipaddress.IPv6Network
    return cls((address >> (bits - prefix) << (bits - prefix), prefix))


def port_sets(multi_eq: bool) -> st.SearchStrategy[PortSet]:
    port = st.sampled_from((22, 23, 53, 80, 161, 179, 443, 8080)) | st.integers(0, 65535)
    single = port.map(lambda p: ((p, p),))
    ranged = st.tuples(port, port).map(lambda t: ((min(t), max(t)),))
    several = st.lists(port, min_size=2, max_size=10, unique=True).map(lambda ps: normalize_ports((p, p) for p in ps))
    return st.one_of([st.just(ANY_PORTS), single, ranged] + ([several] if multi_eq else []))


@st.composite
def aces(draw: st.DrawFn, platform: ModuleType) -> Ace:
    family = draw(st.sampled_from((4, 6)))
    icmp = 1 if family == 4 else 58
    protocol = draw(st.sampled_from((None, icmp, 6, 17, 2, 47, 51, 88, 89, 103, 132, 250)))
    src, dst = draw(networks(family)), draw(networks(family))
    multi = platform.DIALECT.multi_eq
    sp = dp = ANY_PORTS
    if protocol in (6, 17):
        sp, dp = draw(port_sets(multi)), draw(port_sets(multi))
    icmp_type = icmp_code = None
    if protocol == icmp:
        icmp_type = draw(st.none() | st.integers(0, 255))
        icmp_code = draw(st.none() | st.integers(0, 255)) if icmp_type is not None else None
    action = draw(st.sampled_from(tuple(Action)))
    flags = TcpFlags.ESTABLISHED if protocol == 6 and draw(st.booleans()) else None
    return Ace(action, protocol, src, dst, sp, dp, icmp_type, icmp_code, draw(st.booleans()), tcp_flags=flags)


def round_trip(platform: ModuleType, seq: int, ace: Ace, *, counters: bool) -> Ace | Unsupported:
    header4, header6, indent = HEADERS[platform]
    line = show_line(platform, platform.format_entry(seq, ace), counters=counters)
    acls: tuple[Acl, ...] = platform.parse_acls(f"{header4 if ace.family == 4 else header6}\n{indent}{line}\n")
    assert len(acls) == 1 and acls[0].family == ace.family and len(acls[0].entries) == 1
    assert acls[0].entries[0].seq == seq
    shown_zero = 0 if platform.DIALECT.zero_counters_hidden else None  # IOS lists no counter until a match
    assert acls[0].entries[0].matches == (12 if counters else shown_zero)  # the hit counter, as the device shows it
    return acls[0].entries[0].body


@pytest.mark.parametrize("platform", PLATFORMS)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_render_show_parse_round_trip(platform: ModuleType, data: st.DataObject) -> None:
    ace = data.draw(aces(platform), label="ace")
    seq = data.draw(st.integers(1, 2**31 - 1), label="seq")
    assert round_trip(platform, seq, ace, counters=data.draw(st.booleans(), label="counters")) == ace


def test_show_line_builder_moves_the_ios_ipv6_sequence_last() -> None:
    assert show_line(ios, "sequence 10 permit tcp any 2001:db8::/64 eq 80", counters=True) == (
        "permit tcp any 2001:db8::/64 eq www (12 matches) sequence 10")
    assert show_line(eos, "20 permit 89 any any log", counters=False) == "20 permit ospf any any log"
    assert show_line(nxos, "30 permit tcp any eq 80 23.1.0.0/16 eq 23", counters=False) == (
        "30 permit tcp any eq www 23.1.0.0/16 eq telnet")
