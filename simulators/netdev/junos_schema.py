"""The slice of the Junos configuration schema the Junos simulator models: statements, their order, value checks."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Stmt:
    """One statement kind: ``container`` (keyword), ``named`` (keyword NAME, a list), ``leaf`` (keyword VALUE,
    one), ``list`` (keyword VALUE, several), ``flag`` (keyword), ``optleaf`` (keyword [VALUE]).  ``children`` are
    in Junos display order; a keyword ``*`` is a named entry without a keyword (``interfaces ge-0/0/0``)."""

    kind: str
    value: str = ""
    children: tuple[tuple[str, Stmt], ...] = ()
    variants: tuple[tuple[str, Stmt], ...] = ()  # named entries whose children depend on the name (family)
    choice: str = ""  # statements of one choice replace each other (accept / discard / reject)
    style: str = "fold"  # brace form of a list: ``kw [ a b ];`` (fold), ``kw { a; b; }`` (block), ``kw a;`` (lines)

    def child(self, word: str) -> tuple[int, str, Stmt] | None:
        """(display rank, keyword, statement) of the child keyword ``word`` (or of the ``*`` entry it names)."""
        for rank, (keyword, stmt) in enumerate(self.children):
            if keyword == word:
                return rank, keyword, stmt
        for rank, (keyword, stmt) in enumerate(self.children):
            if keyword == "*" and accepts(stmt.value, word):
                return rank, keyword, stmt
        return None

    def variant(self, name: str) -> tuple[int, Stmt] | None:
        for rank, (variant, stmt) in enumerate(self.variants):
            if variant == name:
                return rank, stmt
        return None


def container(*children: tuple[str, Stmt]) -> Stmt:
    return Stmt("container", children=children)


def named(value: str, *children: tuple[str, Stmt]) -> Stmt:
    return Stmt("named", value=value, children=children)


def leaf(value: str, choice: str = "") -> Stmt:
    return Stmt("leaf", value=value, choice=choice)


def values(value: str, *children: tuple[str, Stmt], style: str = "fold") -> Stmt:
    return Stmt("list", value=value, children=children, style=style)


def flag(choice: str = "") -> Stmt:
    return Stmt("flag", choice=choice)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


class ValueCheckError(ValueError):
    """A value Junos refuses: ``syntax error.`` when ``message`` is empty, else that ``error: …`` text."""


PORT_NAMES = _words(
    "afs bgp biff bootpc bootps cmd cvspserver dhcp domain eklogin ekshell exec finger ftp ftp-data http https ident "
    "imap kerberos-sec klogin kpasswd krb-prop krbupdate kshell ldap ldp login mobileip-agent mobilip-mn msdp "
    "netbios-dgm netbios-ns netbios-ssn nfsd nntp ntalk ntp pop3 pptp printer radacct radius rip rkinit smtp snmp "
    "snmptrap snpp socks ssh sunrpc syslog tacacs tacacs-ds talk telnet tftp timed who xdmcp zephyr-clt zephyr-hm "
    "zephyr-srv"
)
PROTOCOLS4 = _words("ah dstopts egp esp gre icmp icmp6 igmp ipip ipv6 ospf pim rsvp sctp tcp udp vrrp")
PROTOCOLS6 = _words(
    "ah dstopts egp esp fragment gre hop-by-hop icmp icmp6 igmp ipip ipv6 mobility no-next-header ospf pim "
    "routing rsvp sctp tcp udp vrrp"
)
ICMP4 = _words(
    "echo-reply echo-request info-reply info-request mask-reply mask-request parameter-problem redirect "
    "router-advertisement router-solicit source-quench time-exceeded timestamp timestamp-reply unreachable"
)
ICMP6 = _words(
    "destination-unreachable echo-reply echo-request membership-query membership-report membership-termination "
    "neighbor-advertisement neighbor-solicit node-information-reply node-information-request packet-too-big "
    "parameter-problem redirect router-advertisement router-renumbering router-solicit time-exceeded"
)
ICMP_CODES = _words(
    "network-unreachable host-unreachable protocol-unreachable port-unreachable fragmentation-needed "
    "communication-prohibited-by-filtering ttl-eq-zero-during-transit ttl-eq-zero-during-reassembly "
    "no-route-to-destination administratively-prohibited address-unreachable "
    "fragment-reassembly-time-exceeded"
)
REJECT_TYPES = _words(
    "administratively-prohibited bad-host-tos bad-network-tos host-prohibited host-unknown host-unreachable "
    "network-prohibited network-unknown network-unreachable port-unreachable precedence-cutoff "
    "precedence-violation protocol-unreachable source-host-isolated source-route-failed tcp-reset"
)
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/\-]{0,63}\Z")
_IFD = re.compile(
    r"^(?:(?:ge|xe|et|fe|mge|gr|ip|lt|ms|sp)-\d+/\d+/\d+(?::\d+)?|ae\d+|reth\d+|irb|vlan|lo0|em\d+|fxp\d+|me\d+|vme)\Z"
)


def _number(value: str, low: int, high: int) -> int | None:
    return int(value) if value.isdigit() and low <= int(value) <= high else None


def _prefix(version: int, value: str, keep_host: bool = False) -> str:
    try:
        if keep_host:
            iface = ipaddress.ip_interface(value)
            ok, text = iface.version == version and "/" in value, str(iface)
        else:
            net = ipaddress.ip_network(value, strict=False)
            ok, text = net.version == version, str(net)
    except ValueError:
        ok, text = False, ""
    if not ok:
        kind = "IPv4" if version == 4 else "IPv6"
        raise ValueCheckError(f"error: invalid {kind} prefix: '{value}'")
    return text


def _port(value: str) -> str:
    if value in PORT_NAMES:
        return value
    low, _, high = value.partition("-")
    ends = [_number(low, 0, 65535), _number(high, 0, 65535) if high else 0]
    if None in ends or (high and int(low) > int(high)):
        raise ValueCheckError(f"error: invalid port or port range: '{value}'")
    return value


def _choice(names: frozenset[str], high: int) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value in names or _number(value, 0, high) is not None:
            return value
        raise ValueCheckError("")

    return check


def _pattern(regex: re.Pattern[str]) -> Callable[[str], str]:
    def check(value: str) -> str:
        if regex.match(value):
            return value
        raise ValueCheckError("")

    return check


def _text(value: str) -> str:
    inner = value[1:-1] if len(value) > 1 and value[0] == value[-1] == '"' else value
    return f'"{inner}"' if " " in inner or not inner else inner


def _range(low: int, high: int) -> Callable[[str], str]:
    def check(value: str) -> str:
        if _number(value, low, high) is None:
            raise ValueCheckError(f"error: value {value} is outside range {low}..{high}")
        return str(int(value))

    return check


CHECKS: dict[str, Callable[[str], str]] = {
    "name": _pattern(_NAME),
    "ifd": _pattern(_IFD),
    "prefix4": lambda v: _prefix(4, v),
    "prefix6": lambda v: _prefix(6, v),
    "ifaddr4": lambda v: _prefix(4, v, keep_host=True),
    "ifaddr6": lambda v: _prefix(6, v, keep_host=True),
    "port": _port,
    "proto4": _choice(PROTOCOLS4, 255),
    "proto6": _choice(PROTOCOLS6, 255),
    "icmp4": _choice(ICMP4, 255),
    "icmp6": _choice(ICMP6, 255),
    "icmpcode": _choice(ICMP_CODES, 255),
    "reject": _choice(REJECT_TYPES, -1),
    "next": _pattern(re.compile(r"^term\Z")),
    "unit": _range(0, 16385),
    "vlan": _range(1, 4094),
    "text": _text,
}


def check_value(kind: str, value: str) -> str:
    """The value as Junos stores it; ValueCheckError when Junos refuses it."""
    return CHECKS[kind](value)


def accepts(kind: str, value: str) -> bool:
    try:
        check_value(kind, value)
    except ValueCheckError:
        return False
    return True


def _family_filter(version: int) -> Stmt:
    prefix, icmp = f"prefix{version}", f"icmp{version}"
    proto = ("protocol", "proto4") if version == 4 else ("next-header", "proto6")
    address, names = values(prefix, ("except", flag()), style="block"), values("name", style="block")
    source = [
        ("source-address", address), ("destination-address", address), ("address", address),
        ("source-prefix-list", names), ("destination-prefix-list", names), ("prefix-list", names),
        (proto[0], values(proto[1])),
        ("source-port", values("port")), ("destination-port", values("port")), ("port", values("port")),
        ("icmp-type", values(icmp)), ("icmp-code", values("icmpcode")), ("tcp-established", flag()),
        ("tcp-initial", flag()), ("tcp-flags", leaf("text")),
    ]
    if version == 4:
        source.append(("is-fragment", flag()))
    then = container(
        ("count", leaf("name")), ("log", flag()), ("syslog", flag()), ("accept", flag("action")),
        ("discard", flag("action")), ("reject", Stmt("optleaf", value="reject", choice="action")),
        ("next", leaf("next", choice="action")),
    )
    term = named("name", ("from", container(*source)), ("then", then))
    return named("name", ("interface-specific", flag()), ("term", term))


FILTER4, FILTER6 = _family_filter(4), _family_filter(6)


def _interface_family(version: int) -> Stmt:
    filters = container(("input", leaf("name")), ("output", leaf("name")))
    return container(("filter", filters), ("address", values(f"ifaddr{version}", style="lines")))


UNIT = named(
    "unit", ("description", leaf("text")), ("vlan-id", leaf("vlan")),
    ("family", Stmt("named", variants=(("inet", _interface_family(4)), ("inet6", _interface_family(6))))),
)
ROOT = container(
    ("system", container(("host-name", leaf("name")))),
    ("interfaces", container(("*", named("ifd", ("description", leaf("text")), ("vlan-tagging", flag()),
                                             ("unit", UNIT))))),
    ("firewall", container(
        ("family", Stmt("named", variants=(("inet", container(("filter", FILTER4))),
                                           ("inet6", container(("filter", FILTER6)))))),
        ("filter", FILTER4),
    )),
)
