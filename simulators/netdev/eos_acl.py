"""Arista EOS ACL entry grammar for the EOS simulator: parse an entry, print it as `show ip access-lists` does."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

#: Port names as EOS prints them (tcp), number -> name; every other port prints as its number.  The keywords of
#: EOS's own default-control-plane-acl print under the protocols Arista's manual shows them with (`show
#: access-lists`, tests/data/captures/eos; numbers: see drivers/arista_eos/syntax.py PORT_NAMES).  Every name here
#: is one the EOS driver reads back (a test holds them equal); a keyword without a citable number is left out.
TCP_PORTS: dict[int, str] = {
    7: "echo", 9: "discard", 13: "daytime", 19: "chargen", 20: "ftp-data", 21: "ftp", 22: "ssh", 23: "telnet",
    25: "smtp", 37: "time", 43: "whois", 49: "tacacs", 53: "domain", 70: "gopher", 79: "finger", 80: "www",
    88: "kerberos", 101: "hostname", 109: "pop2", 110: "pop3", 111: "sunrpc", 113: "ident", 119: "nntp",
    123: "ntp", 139: "netbios-ss", 161: "snmp", 162: "snmptrap", 175: "vmnet", 179: "bgp",
    194: "irc", 210: "z39-50", 389: "ldap", 401: "ups", 443: "https", 445: "microsoft-ds", 512: "exec",
    513: "login", 514: "cmd", 515: "lpd", 540: "uucp", 543: "klogin", 544: "kshell", 548: "afpovertcp",
    604: "tunnel", 636: "ldaps", 639: "msdp", 674: "acap", 2049: "nfs",
    646: "ldp", 830: "netconf-ssh", 3784: "bfd", 3785: "bfd-echo", 4432: "mlag", 4532: "nat",
}
#: Port names as EOS prints them (udp).
UDP_PORTS: dict[int, str] = {
    7: "echo", 9: "discard", 37: "time", 42: "nameserver", 49: "tacacs", 53: "domain", 67: "bootps",
    68: "bootpc", 69: "tftp", 88: "kerberos", 111: "sunrpc", 123: "ntp", 137: "netbios-ns", 138: "netbios-dgm",
    161: "snmp", 162: "snmptrap", 175: "vmnet", 177: "xdmcp", 195: "dnsix", 401: "ups", 434: "mobile-ip",
    500: "isakmp", 512: "biff", 513: "who", 514: "syslog", 517: "talk", 520: "rip", 2049: "nfs",
    319: "ptp-event", 320: "ptp-general", 646: "ldp", 3503: "lsp-ping", 3784: "bfd", 3785: "bfd-echo", 4432: "mlag",
    4532: "nat", 4784: "multihop-bfd", 6784: "micro-bfd", 7784: "sbfd",
}
PORT_NAMES: dict[str, dict[int, str]] = {"tcp": TCP_PORTS, "udp": UDP_PORTS, "sctp": {}}
PROTOCOLS_V4: dict[int, str] = {
    1: "icmp", 2: "igmp", 6: "tcp", 17: "udp", 47: "gre", 51: "ahp", 89: "ospf", 103: "pim", 112: "vrrp", 132: "sctp",
}
PROTOCOLS_V6: dict[int, str] = {6: "tcp", 17: "udp", 58: "icmpv6", 89: "ospf", 103: "pim", 132: "sctp"}
ICMP_TYPES: dict[int, str] = {
    0: "echo-reply", 3: "unreachable", 4: "source-quench", 5: "redirect", 6: "alternate-address", 8: "echo",
    9: "router-advertisement", 10: "router-solicitation", 11: "time-exceeded", 12: "parameter-problem",
    13: "timestamp-request", 14: "timestamp-reply", 15: "information-request", 16: "information-reply",
    17: "mask-request", 18: "mask-reply", 30: "traceroute", 31: "conversion-error", 32: "mobile-redirect",
}
ICMPV6_TYPES: dict[int, str] = {
    1: "unreachable", 2: "packet-too-big", 3: "time-exceeded", 4: "parameter-problem", 128: "echo-request",
    129: "echo-reply", 133: "router-solicitation", 134: "router-advertisement", 135: "neighbor-solicitation",
    136: "neighbor-advertisement", 137: "redirect-message",
}
#: ICMP messages EOS names by type and code.
ICMP_CODES: dict[tuple[int, int], str] = {
    (3, 0): "net-unreachable", (3, 1): "host-unreachable", (3, 2): "protocol-unreachable", (3, 3): "port-unreachable",
    (3, 4): "packet-too-big", (3, 13): "administratively-prohibited", (11, 0): "ttl-exceeded",
    (11, 1): "reassembly-timeout",
}
ICMPV6_CODES: dict[tuple[int, int], str] = {(1, 4): "port-unreachable", (3, 0): "hop-limit", (1, 0): "no-route"}
TCP_FLAGS = ("ack", "fin", "psh", "rst", "syn", "urg", "established")
COMPARATORS = ("eq", "neq", "gt", "lt")


class EosInputError(Exception):
    """`% Invalid input` at one token (index into the line's tokens)."""

    def __init__(self, index: int, token: str) -> None:
        super().__init__(f"at token {index}: '{token}'")
        self.index = index
        self.token = token


class EosIncompleteError(Exception):
    """`% Incomplete command`: the line ended where EOS needs more."""


@dataclass
class _Cursor:
    tokens: list[str]
    pos: int
    base: int = 0  # index of tokens[0] in the whole input line (for error messages)

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        if self.pos >= len(self.tokens):
            raise EosIncompleteError
        self.pos += 1
        return self.tokens[self.pos - 1]

    def fail(self, back: int = 1) -> EosInputError:
        index = max(self.pos - back, 0)
        token = self.tokens[index] if index < len(self.tokens) else ""
        return EosInputError(self.base + index, token)


def _lookup(table: dict[int, str], word: str) -> int | None:
    if word.isdigit():
        return int(word)
    for number, name in table.items():
        if name == word:
            return number
    return None


def _protocol(cur: _Cursor, family: str) -> str:
    word = cur.take().lower()
    table = PROTOCOLS_V4 if family == "ip" else PROTOCOLS_V6
    if word == family:
        return word
    number = _lookup(table, word)
    if number is None or number > 255:
        raise cur.fail()
    return table.get(number, str(number))


def _address(cur: _Cursor, family: str) -> str:
    word = cur.take()
    if word == "any":
        return "any"
    try:
        if word == "host":
            host = ipaddress.ip_address(cur.take())
            if (host.version == 4) != (family == "ip"):
                raise cur.fail()
            return f"host {host}"
        if "/" not in word and family == "ip" and _is_wildcard(cur.peek()):
            return _wildcard(ipaddress.IPv4Address(word), ipaddress.IPv4Address(cur.take()))
        net = ipaddress.ip_network(word, strict=False)
    except ValueError as exc:
        raise cur.fail() from exc
    if (net.version == 4) != (family == "ip") or "/" not in word:
        raise cur.fail()
    return f"host {net.network_address}" if net.prefixlen == net.max_prefixlen else str(net)


def _is_wildcard(word: str | None) -> bool:
    if word is None or word.count(".") != 3:
        return False
    try:
        ipaddress.IPv4Address(word)
    except ValueError:
        return False
    return True


def _wildcard(addr: ipaddress.IPv4Address, wild: ipaddress.IPv4Address) -> str:
    inverted = int(wild) ^ 0xFFFFFFFF
    length = bin(inverted).count("1")
    if inverted == (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF:
        net = ipaddress.IPv4Network((int(addr) & inverted, length))
        return f"host {net.network_address}" if length == 32 else str(net)
    return f"{ipaddress.IPv4Address(int(addr) & inverted)} {wild}"


def _port(cur: _Cursor, proto: str) -> int:
    word = cur.take()
    number = _lookup(PORT_NAMES[proto], word)
    if number is None or number > 65535:
        raise cur.fail()
    return number


def _is_port(word: str | None, proto: str) -> bool:
    return word is not None and _lookup(PORT_NAMES[proto], word) is not None


def _ports(cur: _Cursor, proto: str) -> str:
    if proto not in PORT_NAMES or cur.peek() not in ("eq", "neq", "gt", "lt", "range"):
        return ""
    op = cur.take()
    names = PORT_NAMES[proto]
    if op == "range":
        low, high = _port(cur, proto), _port(cur, proto)
        if low > high:
            raise cur.fail()
        return f" range {names.get(low, low)} {names.get(high, high)}"
    ports = [_port(cur, proto)]
    while op in ("eq", "neq") and _is_port(cur.peek(), proto):
        ports.append(_port(cur, proto))
    return f" {op} " + " ".join(str(names.get(p, p)) for p in ports)


def _icmp(cur: _Cursor, proto: str) -> str:
    """`TYPE-NAME`, `TYPE [CODE]` (numbers) or a type+code name; a code prints numerically with its type."""
    word = cur.peek()
    if proto not in ("icmp", "icmpv6") or word is None:
        return ""
    types, codes = (ICMP_TYPES, ICMP_CODES) if proto == "icmp" else (ICMPV6_TYPES, ICMPV6_CODES)
    if word in codes.values():
        cur.take()
        return f" {word}"
    icmp_type = _lookup(types, word)
    if icmp_type is None:
        return ""
    cur.take()
    following = cur.peek()
    if not word.isdigit() or following is None or not following.isdigit():
        if icmp_type > 255:
            raise cur.fail()
        return f" {types.get(icmp_type, icmp_type)}"
    code = int(cur.take())
    if icmp_type > 255 or code > 255:
        raise cur.fail(2 if icmp_type > 255 else 1)
    return f" {codes.get((icmp_type, code), f'{icmp_type} {code}')}"


def _options(cur: _Cursor, proto: str, family: str) -> str:
    flags: list[str] = []
    ttl = ""
    singles: set[str] = set()
    while cur.peek() is not None:
        word = cur.take()
        if word in TCP_FLAGS and proto == "tcp" and word not in flags:
            flags.append(word)
        elif word == "ttl" and not ttl:
            op = cur.take()
            value = cur.take()
            if op not in COMPARATORS or not value.isdigit() or int(value) > 255:
                raise cur.fail()
            ttl = f"ttl {op} {int(value)}"
        elif word in ("fragments", "tracked", "log") and word not in singles:
            if word == "fragments" and family != "ip":
                raise cur.fail()
            singles.add(word)
        else:
            raise cur.fail()
    ordered = [f for f in TCP_FLAGS if f in flags] + ([ttl] if ttl else [])
    ordered += [w for w in ("fragments", "tracked", "log") if w in singles]
    return "".join(f" {w}" for w in ordered)


def parse_rule(tokens: list[str], family: str, base: int = 0) -> str:
    """Parse `permit|deny PROTO SRC [PORTS] DST [PORTS] [ICMP] [OPTIONS]` (or `remark TEXT`); return EOS's text."""
    cur = _Cursor(tokens, 0, base)
    action = cur.take()
    if action == "remark":
        if len(tokens) < 2:
            raise EosIncompleteError
        return "remark " + " ".join(tokens[1:])
    if action not in ("permit", "deny"):
        raise cur.fail()
    proto = _protocol(cur, family)
    steps: list[Callable[[], str]] = [
        lambda: " " + _address(cur, family),
        lambda: _ports(cur, proto),
        lambda: " " + _address(cur, family),
        lambda: _ports(cur, proto),
        lambda: _icmp(cur, proto),
        lambda: _options(cur, proto, family),
    ]
    return f"{action} {proto}" + "".join(step() for step in steps)
