"""Parse Cisco IOS / NX-OS ACL entry lines (configuration-mode syntax) into the simulators' ACL model."""

from __future__ import annotations

import ipaddress
from typing import NoReturn

from simulators.netdev.ciscoacl import (
    ANY,
    DSCP_NAMES,
    ICMP4_NAMES,
    ICMP6_NAMES,
    IP,
    OPTION_ORDER,
    PRECEDENCE_NAMES,
    TCP_FLAGS,
    Ace,
    Acl,
    Address,
    Dialect,
    PortMatch,
    reverse,
)
from simulators.netdev.personality import CliError


class Cursor:
    """Walks the words of one line; errors point at the offending word."""

    def __init__(self, words: list[str], pos: int = 0) -> None:
        self.words = words
        self.pos = pos

    def peek(self) -> str | None:
        return self.words[self.pos] if self.pos < len(self.words) else None

    def take(self) -> str:
        if self.pos >= len(self.words):
            raise CliError(self.pos, incomplete=True)
        self.pos += 1
        return self.words[self.pos - 1]

    def fail(self, at: int | None = None) -> NoReturn:
        raise CliError(self.pos if at is None else at)

    def number(self, low: int, high: int) -> int:
        word = self.take()
        if not word.isdigit() or not low <= int(word) <= high:
            self.fail(self.pos - 1)
        return int(word)


def parse_seq(word: str, dialect: Dialect) -> int | None:
    """``word`` as a sequence number, None when it is not a number at all (CliError when out of range)."""
    if not word.isdigit():
        return None
    value = int(word)
    if not 1 <= value <= dialect.max_seq:
        raise CliError(0)
    return value


def parse_ace(cur: Cursor, acl: Acl, dialect: Dialect) -> tuple[Ace, int | None]:
    """One ``permit|deny …`` from the cursor; returns the entry and a trailing ``sequence N`` (IOS IPv6)."""
    action = cur.take()
    if action not in ("permit", "deny"):
        cur.fail(cur.pos - 1)
    if acl.kind == "standard":
        src = standard_address(cur)
        options = parse_options(cur, acl, dialect, "", {"log"})[1]
        return Ace(action, src=src, options=options), None
    protocol = parse_protocol(cur, acl.family, dialect)
    src = parse_address(cur, acl.family, dialect)
    src_ports = parse_ports(cur, protocol, dialect)
    dst = parse_address(cur, acl.family, dialect)
    dst_ports = parse_ports(cur, protocol, dialect)
    icmp = parse_icmp(cur, acl.family) if protocol == "icmp" else ()
    allowed = {"dscp", "log"}
    allowed |= {"precedence", "fragments"} if acl.family == 4 else set()
    allowed |= {"log-input"} if dialect.platform == "ios" and acl.family == 4 else set()
    allowed |= {"ttl"} if dialect.platform == "nxos" and acl.family == 4 else set()
    allowed |= {"sequence"} if dialect.platform == "ios" and acl.family == 6 else set()
    flags, options, seq = parse_options(cur, acl, dialect, protocol, allowed)
    ace = Ace(action, protocol, src, src_ports, dst, dst_ports, icmp, flags, options)
    return ace, seq


def parse_protocol(cur: Cursor, family: int, dialect: Dialect) -> str:
    at = cur.pos
    word = cur.take()
    names = dialect.protocols(family)
    if word == ("ip" if family == 4 else "ipv6") or word in names:
        return word
    if word.isdigit() and 0 <= int(word) <= 255:
        return reverse(names).get(int(word), word)
    raise CliError(at)


def _ip(word: str, family: int) -> IP | None:
    try:
        address = ipaddress.ip_address(word)
    except ValueError:
        return None
    return address if address.version == family else None


def parse_address(cur: Cursor, family: int, dialect: Dialect) -> Address:
    at = cur.pos
    word = cur.take()
    bits = 32 if family == 4 else 128
    if word == "any":
        return ANY
    if word == "addrgroup" and dialect.platform == "nxos":
        return Address(group=cur.take())
    if word == "host":
        host = _ip(cur.take(), family)
        return Address(host) if host is not None else cur.fail(cur.pos - 1)
    if "/" in word and (family == 6 or dialect.prefix_v4):
        try:
            network = ipaddress.ip_interface(word)
        except ValueError:
            cur.fail(at)
        if network.version != family:
            cur.fail(at)
        wildcard = (1 << (bits - network.network.prefixlen)) - 1
        return _masked(network.ip, wildcard, dialect)
    if family == 6 or (ip := _ip(word, 4)) is None:
        cur.fail(at)
    wildcard_ip = _ip(cur.take(), 4)
    if wildcard_ip is None:
        cur.fail(cur.pos - 1)
    wildcard = int(wildcard_ip)
    if dialect.platform == "ios" and wildcard == 0xFFFFFFFF:
        return ANY
    return _masked(ip, wildcard, dialect)


def _masked(ip: IP, wildcard: int, dialect: Dialect) -> Address:
    if dialect.mask_host_bits:
        ip = ipaddress.ip_address(int(ip) & ~wildcard & ((1 << ip.max_prefixlen) - 1))
    return Address(ip, wildcard)


def standard_address(cur: Cursor) -> Address:
    """IOS standard ACL source: ``any``, ``host A``, ``A`` or ``A WILDCARD``."""
    at = cur.pos
    word = cur.take()
    if word == "any":
        return ANY
    if word == "host":
        host = _ip(cur.take(), 4)
        return Address(host) if host is not None else cur.fail(cur.pos - 1)
    ip = _ip(word, 4)
    if ip is None:
        cur.fail(at)
    nxt = cur.peek()
    wildcard_ip = _ip(nxt, 4) if nxt is not None else None
    if wildcard_ip is None:
        return Address(ip)
    cur.pos += 1
    if int(wildcard_ip) == 0xFFFFFFFF:
        return ANY
    return Address(ipaddress.IPv4Address(int(ip) & ~int(wildcard_ip) & 0xFFFFFFFF), int(wildcard_ip))


def _port(word: str | None, names: dict[str, int]) -> int | None:
    if word is None:
        return None
    if word.isdigit():
        return int(word) if int(word) <= 65535 else None
    return names.get(word)


def parse_ports(cur: Cursor, protocol: str, dialect: Dialect) -> PortMatch | None:
    op = cur.peek()
    if protocol not in ("tcp", "udp") or op not in ("eq", "neq", "gt", "lt", "range"):
        return None
    cur.take()
    names = dialect.ports(protocol)
    count = {"range": 2}.get(op, 1)
    ports: list[int] = []
    for _ in range(count):
        at = cur.pos
        port = _port(cur.take(), names)
        if port is None:
            cur.fail(at)
        ports.append(port)
    if op == "range" and ports[0] > ports[1]:
        cur.fail(cur.pos - 1)
    while op in ("eq", "neq") and dialect.multi_port and len(ports) < 10:
        port = _port(cur.peek(), names)
        if port is None:
            break
        ports.append(port)
        cur.pos += 1
    return PortMatch(op, tuple(ports))


def parse_icmp(cur: Cursor, family: int) -> tuple[str, ...]:
    """An optional ICMP message: a name, or a type number and an optional code; shown by name when known."""
    names = ICMP4_NAMES if family == 4 else ICMP6_NAMES
    word = cur.peek()
    if word in names:
        cur.pos += 1
        return (word,)
    if word is None or not word.isdigit():
        return ()
    icmp_type = cur.number(0, 255)
    code = cur.number(0, 255) if (cur.peek() or "").isdigit() else None
    by_number = {value: name for name, value in reversed(names.items())}
    name = by_number.get((icmp_type, code))
    if name is not None:
        return (name,)
    return (str(icmp_type),) if code is None else (str(icmp_type), str(code))


def _option_value(cur: Cursor, name: str) -> str:
    if name == "dscp":
        at = cur.pos
        word = cur.take()
        if word in DSCP_NAMES:
            return word
        if word.isdigit() and int(word) <= 63:
            return reverse(DSCP_NAMES).get(int(word), word)
        cur.fail(at)
    if name == "precedence":
        at = cur.pos
        word = cur.take()
        if word in PRECEDENCE_NAMES:
            return word
        if word.isdigit() and int(word) <= 7:
            return reverse(PRECEDENCE_NAMES)[int(word)]
        cur.fail(at)
    if name == "ttl":
        return str(cur.number(0, 255))
    return ""


def _logs(options: dict[str, str]) -> bool:
    return any(name.startswith("log") for name in options)


def parse_options(
    cur: Cursor, acl: Acl, dialect: Dialect, protocol: str, allowed: set[str]
) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...], int | None]:
    """Trailing keywords: TCP flags (typed order kept), options (shown in `OPTION_ORDER`), ``sequence N``."""
    flags: list[str] = []
    options: dict[str, str] = {}
    seq = None
    while (word := cur.peek()) is not None:
        at = cur.pos
        cur.pos += 1
        if protocol == "tcp" and word in TCP_FLAGS and word not in flags:
            flags.append(word)
        elif word == "sequence" and word in allowed and seq is None:
            seq = cur.number(1, dialect.max_seq)
        elif word in allowed and word not in options and not (word.startswith("log") and _logs(options)):
            options[word] = _option_value(cur, word)
        else:
            cur.fail(at)
    ordered = tuple((name, options[name]) for name in OPTION_ORDER if name in options)
    return tuple(flags), ordered, seq
