"""The shared, data-driven grammar of Cisco-like ACL entries (IOS, NX-OS, EOS): read show output, render entries."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from drivers.netacl.ace import (
    Ace,
    Acl,
    AclLine,
    Binding,
    DeviceAcls,
    Entry,
    Remark,
    Unread,
    Unsupported,
    any_network,
)
from orchestrator.model import (
    ANY_PORTS,
    ICMP_PROTOCOLS,
    MAX_PORT,
    PORT_PROTOCOLS,
    PROTOCOL_NUMBERS,
    TCP,
    Action,
    IPNetwork,
    ParseError,
    PortSet,
    TcpFlags,
    normalize_ports,
)

# Protocol keywords as the platforms print them; ``ip`` / ``ipv6`` (any) and ``icmp`` in IPv6 ACLs are special-cased.
PROTOCOLS: Mapping[str, int] = {
    **{k: v for k, v in PROTOCOL_NUMBERS.items() if k != "icmpv6"},
    "ahp": 51, "eigrp": 88, "ipinip": 4, "nos": 94, "pcp": 108, "rsvp": 46,
}

# Port keywords (TCP and UDP names merged: no name means two numbers) of IOS and NX-OS; EOS extends it.
CISCO_PORT_NAMES: Mapping[str, int] = {
    "bgp": 179, "biff": 512, "bootpc": 68, "bootps": 67, "chargen": 19, "cmd": 514, "daytime": 13, "discard": 9,
    "dnsix": 195, "domain": 53, "drip": 3949, "echo": 7, "exec": 512, "finger": 79, "ftp": 21, "ftp-data": 20,
    "gopher": 70, "hostname": 101, "http": 80, "ident": 113, "irc": 194, "isakmp": 500, "klogin": 543,
    "kshell": 544, "login": 513, "lpd": 515, "mobile-ip": 434, "msrpc": 135, "nameserver": 42, "netbios-dgm": 138,
    "netbios-ns": 137, "netbios-ss": 139, "nntp": 119, "non500-isakmp": 4500, "ntp": 123, "onep-plain": 15001,
    "onep-tls": 15002, "pim-auto-rp": 496, "pop2": 109, "pop3": 110, "rip": 520, "ripv6": 521, "smtp": 25,
    "snmp": 161, "snmptrap": 162, "ssh": 22, "sunrpc": 111, "syslog": 514, "tacacs": 49, "talk": 517,
    "telnet": 23, "tftp": 69, "time": 37, "uucp": 540, "who": 513, "whois": 43, "www": 80, "xdmcp": 177,
}

# What an exec prompt prints before any output when ``terminal exec prompt timestamp`` is on (IOS, IOS-XE, NX-OS):
# ``Load for five secs: 2%/0%; one minute: 1%; five minutes: 1%`` and ``Time source is NTP, 10:33:54.527 UTC …``
# (or ``No time source, *09:44:44.044 UTC …``).
EXEC_TIMESTAMPS: tuple[re.Pattern[str], ...] = (
    re.compile(r"Load for five secs: .*"), re.compile(r"Time source is .*"), re.compile(r"No time source, .*"),
)

# What a capture taken at the prompt holds besides the output (netmiko strips them; a pasted one has them):
# the prompt and the command echoed after it, or alone.
ECHOED: tuple[re.Pattern[str], ...] = (re.compile(r"\S+[#>]\s*(?:show\s.*)?"), re.compile(r"show\s.*"))
# What a platform may answer when a listing by name finds no such list: that list is absent, nothing to read.
NO_SUCH_LIST = re.compile(r"%\s*.*\b(?:not found|does not exist|[Nn]o such)\b.*", re.IGNORECASE)

# ICMP message names → (type, code or None for every code).
ICMP4_NAMES: Mapping[str, tuple[int, int | None]] = {
    "administratively-prohibited": (3, 13), "alternate-address": (6, None), "conversion-error": (31, None),
    "dod-host-prohibited": (3, 10), "dod-net-prohibited": (3, 9), "echo": (8, None), "echo-reply": (0, None),
    "echo-request": (8, None), "general-parameter-problem": (12, 0), "host-isolated": (3, 8),
    "host-precedence-unreachable": (3, 14), "host-redirect": (5, 1), "host-tos-redirect": (5, 3),
    "host-tos-unreachable": (3, 12), "host-unknown": (3, 7), "host-unreachable": (3, 1),
    "information-reply": (16, None), "information-request": (15, None), "mask-reply": (18, None),
    "mask-request": (17, None), "mobile-redirect": (32, None), "net-redirect": (5, 0), "net-tos-redirect": (5, 2),
    "net-tos-unreachable": (3, 11), "net-unreachable": (3, 0), "network-unknown": (3, 6),
    "no-room-for-option": (12, 2), "option-missing": (12, 1), "packet-too-big": (3, 4),
    "parameter-problem": (12, None), "port-unreachable": (3, 3), "precedence-unreachable": (3, 15),
    "protocol-unreachable": (3, 2), "reassembly-timeout": (11, 1), "redirect": (5, None),
    "router-advertisement": (9, None), "router-solicitation": (10, None), "source-quench": (4, None),
    "source-route-failed": (3, 5), "time-exceeded": (11, None), "timestamp-reply": (14, None),
    "timestamp-request": (13, None), "traceroute": (30, None), "ttl-exceeded": (11, 0), "unreachable": (3, None),
}
ICMP6_NAMES: Mapping[str, tuple[int, int | None]] = {
    "beyond-scope": (1, 2), "destination-unreachable": (1, None), "echo-reply": (129, None),
    "echo-request": (128, None), "header": (4, 0), "hop-limit": (3, 0), "mld-query": (130, None),
    "mld-reduction": (132, None), "mld-report": (131, None), "nd-na": (136, None), "nd-ns": (135, None),
    "neighbor-advertisement": (136, None), "neighbor-solicitation": (135, None), "next-header": (4, 1),
    "no-admin": (1, 1), "no-route": (1, 0), "packet-too-big": (2, None), "parameter-option": (4, 2),
    "parameter-problem": (4, None), "port-unreachable": (1, 4), "reassembly-timeout": (3, 1),
    "redirect": (137, None), "renum-command": (138, 0), "renum-result": (138, 1), "renum-seq-number": (138, 255),
    "router-advertisement": (134, None), "router-renumbering": (138, None), "router-solicitation": (133, None),
    "time-exceeded": (3, None), "unreachable": (1, None),
}

# Trailing options the model cannot express → the number of argument tokens (-1: ``[eq|gt|lt|neq] N`` / ``range A B``).
OPTION_ARITY: Mapping[str, int] = {
    "log-input": 0, "fragments": 0, "tracked": 0, "routing": 0, "undetermined-transport": 0,
    "dscp": 1, "precedence": 1, "tos": 1, "option": 1, "reflect": 1, "flow-label": 1, "routing-type": 1,
    "vlan": 1, "time-range": 1, "ttl": -1, "hop-limit": -1, "packet-length": -1,
    "auth": 0,  # IPv6: the packet carries an authentication header
}
NON_ENTRIES: Mapping[str, str] = {"dynamic": "dynamic (lock-and-key) entry",
                                  "Dynamic": "dynamic (lock-and-key) entry", "evaluate": "reflexive evaluate entry"}
ADDRESS_GROUPS = frozenset({"object-group", "addrgroup"})
PORT_GROUPS = frozenset({"portgroup", "port-group"})
PORT_OPERATORS = frozenset({"eq", "neq", "gt", "lt", "range"})
_TCP_FLAG = re.compile(r"[+-]?(?:ack|fin|psh|rst|syn|urg)|match-all|match-any")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_RESERVED = frozenset({"any", "host", "log", "established", *ADDRESS_GROUPS, *PORT_GROUPS, *PORT_OPERATORS,
                       *OPTION_ARITY})


def is_number(tok: str) -> bool:
    """A run of ASCII digits (``str.isdigit`` alone also takes ``²``, which ``int`` refuses)."""
    return tok.isascii() and tok.isdigit()


class GrammarError(ValueError):
    """Tokens that are not a Cisco-like entry at all (the platform parser turns it into a ParseError)."""


@dataclass(frozen=True, slots=True)
class Dialect:
    """What one platform writes differently: address forms, sequence position, names, listing and binding lines."""

    driver: str
    host_keyword: bool  # renders a /32 (/128) as ``host A``; otherwise ``A/32``
    wildcard: bool  # IPv4 addresses as ``A WILDCARD`` (IOS); otherwise ``A/LEN``
    v6_sequence_last: bool  # IOS IPv6: ``permit … sequence N`` (config: ``sequence N permit …``)
    multi_eq: bool  # ``eq 80 443 8080`` in one entry
    service_groups: bool  # an unknown word in protocol position is a service object-group (IOS)
    port_names: Mapping[str, int]
    protocols4: Mapping[int, str]  # rendered by keyword (ports only for these); others as numbers
    protocols6: Mapping[int, str]
    counters: re.Pattern[str]  # an entry's hit counter in a show line (read into Entry.matches)
    headers: tuple[tuple[re.Pattern[str], int, str], ...]  # (pattern with ``name``, family, kind)
    properties: tuple[re.Pattern[str], ...] = ()  # ACL-level lines that are not entries
    preamble: tuple[re.Pattern[str], ...] = ()  # unindented lines that are not access lists (status, warnings)
    bindings: tuple[tuple[str, int], ...] = ()  # interface keywords: (``ip access-group``, 4) …
    max_eq_ports: int = 10
    zero_counters_hidden: bool = False  # IOS: an entry without a counter has matched nothing yet (0, not unknown)
    remarks: bool = False  # the listing shows remarks, each with a sequence number of its own (NX-OS, EOS)


@dataclass(slots=True)
class AclDraft:
    """An ACL while its lines are read."""

    name: str
    family: int
    kind: str
    entries: list[Entry] = field(default_factory=list)
    remarks: list[str] = field(default_factory=list)
    seqs: set[int | str] = field(default_factory=set)
    top: int = 0  # the highest sequence number so far

    def add(self, entry: Entry) -> None:
        if entry.seq in self.seqs:
            raise GrammarError(f"sequence number {entry.seq} appears twice in {self.name}")
        self.seqs.add(entry.seq)
        self.entries.append(entry)
        self.top = max(self.top, int(entry.seq))

    def next_seq(self) -> int:
        """The number the device gives an entry written without one: the highest plus 10."""
        return self.top + 10

    def build(self) -> Acl:
        return Acl(self.name, self.family, tuple(self.entries), self.kind, tuple(self.remarks))


class _Cursor:
    __slots__ = ("pos", "tokens")

    def __init__(self, tokens: Sequence[str]) -> None:
        self.tokens, self.pos = tokens, 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, what: str) -> str:
        if self.pos >= len(self.tokens):
            raise GrammarError(f"entry ends where {what} was expected")
        self.pos += 1
        return self.tokens[self.pos - 1]


# ---------------------------------------------------------------------------------------------------- parsing


def parse_body(body: str, family: int, dialect: Dialect, *,
               standard: bool = False) -> Ace | Unsupported | Remark:
    """One entry without its sequence number → an Ace, a Remark, or Unsupported naming every construct the model
    lacks."""
    cur = _Cursor(body.split())
    first = cur.take("permit or deny")
    if first == "remark":
        return Remark(" ".join(cur.tokens[1:]))
    if first in NON_ENTRIES:
        return Unsupported(body, NON_ENTRIES[first])
    if first not in ("permit", "deny"):
        raise GrammarError(f"expected permit or deny, not {first!r}")
    reasons: list[str] = []
    proto: int | None = None
    sports = dports = ANY_PORTS
    icmp: tuple[int | None, int | None] = (None, None)
    if standard:
        src, dst = _standard_source(cur, family, dialect, reasons), any_network(family)
    else:
        proto = _protocol(cur, family, dialect, reasons)
        src = _address(cur, family, dialect, reasons)
        sports = _ports(cur, proto, dialect, reasons)
        dst = _address(cur, family, dialect, reasons)
        dports = _ports(cur, proto, dialect, reasons)
        icmp = _icmp(cur, proto, family)
    log, established = _options(cur, reasons)
    if established and proto != TCP:
        reasons.append(f"established on protocol {'ip' if proto is None else proto} (TCP only)")
    if reasons:
        return Unsupported(body, "; ".join(dict.fromkeys(reasons)))
    flags = TcpFlags.ESTABLISHED if established else None
    return Ace(Action(first), proto, src, dst, sports, dports, icmp[0], icmp[1], log, tcp_flags=flags)


def _protocol(cur: _Cursor, family: int, dialect: Dialect, reasons: list[str]) -> int | None:
    tok = cur.take("protocol")
    if tok == ("ip" if family == 4 else "ipv6"):
        return None
    if family == 6 and tok in ("icmp", "icmpv6"):
        return 58
    if tok in PROTOCOLS:
        return PROTOCOLS[tok]
    if is_number(tok):
        if int(tok) > 255:
            raise GrammarError(f"protocol number {tok} is outside 0-255")
        return int(tok)
    if tok == "hbh":
        reasons.append("hop-by-hop extension header (hbh)")
        return None
    if tok == "object-group":
        reasons.append(f"service object-group {cur.take('object-group name')} in protocol position")
        return None
    if dialect.service_groups and _WORD.fullmatch(tok) and tok not in _RESERVED:
        reasons.append(f"service object-group {tok} in protocol position")
        return None
    raise GrammarError(f"unknown protocol {tok!r}")


def _network(text: str, family: int, *, host: bool = False) -> IPNetwork:
    try:
        net = ipaddress.ip_network(ipaddress.ip_address(text)) if host else ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise GrammarError(f"{text!r} is not an address{'' if host else ' prefix'}") from exc
    if net.version != family:
        raise GrammarError(f"{text} is not an IPv{family} address")
    return net


def _wildcard(address: str, wildcard: str, reasons: list[str]) -> IPNetwork:
    try:
        addr, bits = int(ipaddress.IPv4Address(address)), int(ipaddress.IPv4Address(wildcard))
    except ValueError as exc:
        raise GrammarError(f"{address} {wildcard} is not an address and wildcard") from exc
    if bits & (bits + 1):
        reasons.append(f"non-contiguous wildcard {wildcard}")
        return any_network(4)
    return ipaddress.IPv4Network((addr & ~bits & 0xFFFFFFFF, 32 - bits.bit_length()))


def _address(cur: _Cursor, family: int, dialect: Dialect, reasons: list[str]) -> IPNetwork:
    tok = cur.take("an address")
    if tok == "any":
        return any_network(family)
    if tok == "host":
        return _network(cur.take("host address"), family, host=True)
    if tok in ADDRESS_GROUPS:
        reasons.append(f"{tok} reference {cur.take(tok + ' name')}")
        return any_network(family)
    if "/" in tok:
        return _network(tok, family)
    if family == 4 and (dialect.wildcard or _DOTTED.fullmatch(cur.peek() or "")):
        # NX-OS writes prefixes, but takes (and then shows) ``A WILDCARD`` entered so
        return _wildcard(tok, cur.take("wildcard bits"), reasons)
    raise GrammarError(f"expected an address, not {tok!r}")


_DOTTED = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")


def _standard_source(cur: _Cursor, family: int, dialect: Dialect, reasons: list[str]) -> IPNetwork:
    """``any`` | ``host A`` | ``A/LEN`` | ``A`` | ``A WILDCARD`` | ``A, wildcard bits WILDCARD`` (IOS show)."""
    tok = cur.take("source")
    if tok in ("any", "host") or "/" in tok or family == 6 or not dialect.wildcard:
        cur.pos -= 1
        return _address(cur, family, dialect, reasons)
    if tok.endswith(","):
        if (cur.take("'wildcard'"), cur.take("'bits'")) != ("wildcard", "bits"):
            raise GrammarError("expected 'wildcard bits' after the address")
        return _wildcard(tok[:-1], cur.take("wildcard bits"), reasons)
    nxt = cur.peek()
    if nxt is not None and re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+", nxt):
        return _wildcard(tok, cur.take("wildcard bits"), reasons)
    return _network(tok, 4, host=True)


def _port(tok: str, dialect: Dialect, reasons: list[str]) -> int:
    if is_number(tok):
        if int(tok) > MAX_PORT:
            raise GrammarError(f"port {tok} is outside 0-65535")
        return int(tok)
    if tok in dialect.port_names:
        return dialect.port_names[tok]
    if _WORD.fullmatch(tok) and tok not in _RESERVED:
        reasons.append(f"unknown port name {tok!r}")
        return 0
    raise GrammarError(f"expected a port, not {tok!r}")


def _is_port(tok: str | None, dialect: Dialect) -> bool:
    if tok is None:
        return False
    return is_number(tok) or tok in dialect.port_names or (
        _WORD.fullmatch(tok) is not None and tok not in _RESERVED and _TCP_FLAG.fullmatch(tok) is None)


def _ports(cur: _Cursor, proto: int | None, dialect: Dialect, reasons: list[str]) -> PortSet:
    op = cur.peek()
    if proto not in PORT_PROTOCOLS or op is None:
        return ANY_PORTS
    if op in PORT_GROUPS:
        cur.take(op)
        reasons.append(f"{op} reference {cur.take(op + ' name')}")
        return ANY_PORTS
    if op not in PORT_OPERATORS:
        return ANY_PORTS
    cur.take(op)
    known = len(reasons)
    first = _port(cur.take(f"a port after {op}"), dialect, reasons)
    if op == "range":
        last = _port(cur.take("the end of the port range"), dialect, reasons)
        if first > last and len(reasons) == known:
            raise GrammarError(f"port range {first} {last} is reversed")
        return ((first, last),)
    if op in ("gt", "lt"):
        lo, hi = (first + 1, MAX_PORT) if op == "gt" else (0, first - 1)
        if lo > hi:
            reasons.append(f"{op} {first} matches no port")
        return ((lo, hi),) if lo <= hi else ANY_PORTS
    values = [first]
    while _is_port(cur.peek(), dialect):
        values.append(_port(cur.take("port"), dialect, reasons))
    if op == "neq":
        reasons.append("neq port operator")
    return normalize_ports((v, v) for v in values)


def _icmp(cur: _Cursor, proto: int | None, family: int) -> tuple[int | None, int | None]:
    tok = cur.peek()
    if proto not in ICMP_PROTOCOLS or tok is None:
        return None, None
    names = ICMP4_NAMES if proto == 1 else ICMP6_NAMES
    if tok in names:
        cur.take("ICMP type")
        return names[tok]
    if not is_number(tok):
        return None, None
    icmp_type = int(cur.take("ICMP type"))
    code = cur.peek()
    icmp_code = int(cur.take("ICMP code")) if code is not None and is_number(code) else None
    if icmp_type > 255 or (icmp_code or 0) > 255:
        raise GrammarError(f"ICMP type/code {icmp_type}/{icmp_code} is outside 0-255")
    return icmp_type, icmp_code


def _options(cur: _Cursor, reasons: list[str]) -> tuple[bool, bool]:
    """The trailing options → (log, established): those two are modelled; every other one is a reason the entry
    is Unsupported."""
    log, established, flags = False, False, []
    while (tok := cur.peek()) is not None:
        cur.take("option")
        if tok in ("log", "log-input") and (cur.peek() or "").startswith("("):  # log (tag = NAME)
            group = [cur.take("log option")]
            while not group[-1].endswith(")") and cur.peek() is not None:
                group.append(cur.take("log option"))
            reasons.append(f"{tok} with options {' '.join(group)}")
        elif tok == "log":
            log = True
        elif tok == "established":
            established = True
        elif _TCP_FLAG.fullmatch(tok):
            flags.append(tok)
        elif tok in OPTION_ARITY:
            reasons.append(" ".join([tok, *_option_args(cur, OPTION_ARITY[tok])]))
        else:
            reasons.append(f"unrecognized option {tok!r}")
    if flags:
        reasons.append("TCP flags " + " ".join(flags))
    return log, established


def _option_args(cur: _Cursor, arity: int) -> list[str]:
    if arity == -1:
        nxt = cur.peek()
        arity = 2 if nxt in ("eq", "gt", "lt", "neq") else 3 if nxt == "range" else 1
    args = [cur.take("option argument") for _ in range(arity)]
    nxt = cur.peek()
    if args and nxt is not None and nxt.startswith("(") and nxt.endswith(")"):  # time-range NAME (active)
        args.append(cur.take("status"))
    return args


# ---------------------------------------------------------------------------------------------------- listings


def line_error(dialect: Dialect, point: str, lineno: int, line: str, message: object) -> ParseError:
    return ParseError(f"line {lineno}: {message}: {line.strip()!r}", point=point, driver=dialect.driver)


def split_sequence(text: str, family: int, dialect: Dialect) -> tuple[int, str]:
    """``10 permit …`` (or IOS IPv6 ``permit … sequence 10``) → (10, ``permit …``)."""
    if family == 6 and dialect.v6_sequence_last:
        m = re.fullmatch(r"(?P<body>.+) sequence (?P<seq>[0-9]+)", text)
    else:
        m = re.fullmatch(r"(?P<seq>[0-9]+) (?P<body>.+)", text)
    if m is None:
        raise GrammarError("entry has no sequence number")
    return int(m["seq"]), m["body"]


def parse_show_entry(line: str, family: int, kind: str, dialect: Dialect, *, unnumbered: int | None = None) -> Entry:
    """One entry line of a show listing → an Entry, its hit counter (``(12 matches)``, ``[match=12]`` …) taken
    out of the text into ``Entry.matches``.  ``unnumbered``: the number to give an entry printed without one
    (older IOS trains list standard ACL entries so); None: a number is required."""
    counter = dialect.counters.search(line)
    text = " ".join((line[:counter.start()] + " " + line[counter.end():] if counter else line).split())
    # the packets: EOS writes ``[match 12 bytes in 3 packets, …]`` on some releases, ``[match 3 packets, …]`` on others
    number = (re.search(r"[0-9]+(?= packets?\b)", counter.group()) or re.search(r"[0-9]+", counter.group())) \
        if counter else None
    matches = int(number.group()) if number else (0 if dialect.zero_counters_hidden else None)
    try:
        seq, body = split_sequence(text, family, dialect)
    except GrammarError:
        if unnumbered is None:
            raise
        seq, body = unnumbered, text
    if kind == "mac":
        return Entry(seq, Unsupported(body, "MAC access list entry"), matches)
    parsed = parse_body(body, family, dialect, standard=kind == "standard")
    return Entry(seq, parsed, None if isinstance(parsed, Remark) else matches)


# A header of a list kind the platform's parser does not model (reflexive, MAC, role-based …): named, so that an
# owned name in it still fails closed; its lines are skipped with it.
_OTHER_HEADER = re.compile(r"(?P<kind>.*?\S)\s+access[ -]list\s+(?P<name>\S+)(?:\s.*)?", re.IGNORECASE)
_ENTRY_START = re.compile(r"(?:[0-9]+|permit|deny|remark|dynamic|Dynamic|evaluate)\s.*")


def read_listing(text: str, dialect: Dialect, *, command: str = "",
                 asked: str | None = None) -> tuple[tuple[Acl, ...], tuple[Unread, ...]]:
    """A show-ACL output → its ACLs, plus every line that could not be read, with the list it is in.

    Never raises on content: whether an unread line matters depends on who owns its list (see
    ``drivers.netacl.layout.owned_state``).  Known preamble lines (exec-prompt timestamps, status lines) are
    skipped; a header of a list kind the platform does not model is listed once and its lines skipped with it.
    ``asked``: the one ACL the command listed by name — then every line is that ACL's, and one that could not be
    read is charged to it (a device answering garbage for an owned ACL must not read as "no such ACL").
    """
    drafts: list[AclDraft] = []
    unread: list[Unread] = []
    current: AclDraft | None = None
    other: str | None = None  # the header of the unmodelled block being skipped
    preamble = (*dialect.preamble, *ECHOED, NO_SUCH_LIST)
    for lineno, line in enumerate(_dedented(text.splitlines()), 1):
        stripped = line.strip()
        if not stripped:
            continue
        if not line[0].isspace() and not (current is not None and _ENTRY_START.fullmatch(stripped)):
            current, other = _block(stripped, dialect), None
            if current is not None:
                drafts.append(current)
            elif any(p.fullmatch(stripped) for p in preamble):
                pass
            elif m := _OTHER_HEADER.fullmatch(stripped):
                other = stripped
                unread.append(Unread(command, lineno, stripped, f"{m['kind']} access list: not modelled by "
                                     f"microseg", acl=m["name"]))
            else:
                other = stripped
                unread.append(Unread(command, lineno, stripped, "not an access list header, entry or property",
                                     acl=asked))
            continue
        if current is None:
            if other is None and not any(p.fullmatch(stripped) for p in preamble):
                unread.append(Unread(command, lineno, stripped, "entry before any access list header", acl=asked))
            continue
        if any(p.fullmatch(stripped) for p in dialect.properties):
            continue
        try:
            unnumbered = current.next_seq() if current.kind == "standard" else None
            current.add(parse_show_entry(stripped, current.family, current.kind, dialect, unnumbered=unnumbered))
        except GrammarError as exc:
            seq = re.match(r"[0-9]+", stripped)
            unread.append(Unread(command, lineno, stripped, str(exc), acl=current.name,
                                 seq=int(seq[0]) if seq else None))
    return tuple(d.build() for d in drafts), tuple(unread)


def _dedented(lines: list[str]) -> list[str]:
    """The lines without the indentation all of them share (some outputs come indented whole), an echoed prompt
    or command left out of the reckoning."""
    body = [line for line in lines if line.strip() and not any(p.fullmatch(line.strip()) for p in ECHOED)]
    indent = min((len(line) - len(line.lstrip()) for line in body), default=0)
    if not indent:
        return lines
    return [line[indent:] if not line[:indent].strip() else line.lstrip() for line in lines]


def parse_listing(text: str, dialect: Dialect, *, point: str) -> tuple[Acl, ...]:
    """A show-ACL output read strictly: any line that cannot be read is a ParseError (for one listing whose every
    list matters; a device's fetch reads tolerantly, see ``parse_outputs``)."""
    acls, unread = read_listing(text, dialect)
    if unread:
        first = unread[0]
        raise line_error(dialect, point, first.line_no, first.text, first.reason)
    return acls


def _block(line: str, dialect: Dialect) -> AclDraft | None:
    for pattern, family, kind in dialect.headers:
        if m := pattern.fullmatch(line):
            return AclDraft(m["name"], family, kind)
    return None


def read_interface_bindings(text: str, dialect: Dialect, *,
                            command: str = "") -> tuple[tuple[Binding, ...], tuple[Unread, ...]]:
    """Interface sections (``interface NAME`` + indented lines) → the ACL bindings in them, plus the binding
    lines that could not be read (with their interface: only those of the point's interfaces matter)."""
    out: list[Binding] = []
    unread: list[Unread] = []
    interface: str | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words:
            continue
        if not line[0].isspace():
            interface = words[1] if len(words) == 2 and words[0] == "interface" else None
            continue
        stripped = " ".join(words)
        for keyword, family in dialect.bindings:
            if not stripped.startswith(keyword + " "):
                continue
            m = re.fullmatch(re.escape(keyword) + r" (?P<acl>\S+) (?P<dir>in|out)", stripped)
            if m is None:
                unread.append(Unread(command, lineno, stripped, "unreadable ACL binding", interface=interface))
            elif interface is None:
                unread.append(Unread(command, lineno, stripped, "ACL binding outside an interface section"))
            else:
                out.append(Binding(interface, family, m["dir"], m["acl"]))
    return tuple(out), tuple(unread)


def parse_interface_bindings(text: str, dialect: Dialect, *, point: str) -> tuple[Binding, ...]:
    """``read_interface_bindings``, strictly: an unreadable binding line is a ParseError."""
    bindings, unread = read_interface_bindings(text, dialect)
    if unread:
        raise line_error(dialect, point, unread[0].line_no, unread[0].text, unread[0].reason)
    return bindings


def parse_outputs(outputs: Mapping[str, str], acl_commands: Sequence[str], binding_command: str,
                  dialect: Dialect, *, point: str, asked: Mapping[str, str] | None = None) -> DeviceAcls:
    """The fetch outputs keyed by command → every ACL of the listings, every interface binding, and every line
    that could not be read (never raised here: ownership decides, see ``drivers.netacl.layout.owned_state``).
    ``asked``: command → the ACL it listed by name."""
    missing = [c for c in (*acl_commands, binding_command) if c not in outputs]
    if missing:
        raise ParseError(f"no output for {', '.join(missing)}", point=point, driver=dialect.driver)
    acls: list[Acl] = []
    unread: list[Unread] = []
    seen: set[tuple[str, int]] = set()
    for command in acl_commands:
        listed, skipped = read_listing(outputs[command], dialect, command=command, asked=(asked or {}).get(command))
        unread.extend(skipped)
        for acl in listed:
            if (acl.name, acl.family) in seen:
                unread.append(Unread(command, 0, acl.name, "access list is listed twice", acl=acl.name))
                continue
            seen.add((acl.name, acl.family))
            acls.append(acl)
    bindings, skipped = read_interface_bindings(outputs[binding_command], dialect, command=binding_command)
    return DeviceAcls(tuple(acls), bindings, (*unread, *skipped))


# ---------------------------------------------------------------------------------------------------- rendering


def render_entry(seq: int, ace: AclLine, dialect: Dialect) -> str:
    """The config-mode line of one entry: ``10 permit …`` (IOS IPv6: ``sequence 10 permit …``), or of one remark
    (``15 remark …``, on platforms that number remarks).  ValueError if the platform cannot write it so."""
    if seq < 1:
        raise ValueError(f"sequence number {seq} must be positive")
    if isinstance(ace, Remark):
        if not dialect.remarks:
            raise ValueError(f"{dialect.driver} does not number remarks")
        return f"{seq} remark {check_remark(ace.text)}".rstrip()
    body = render_body(ace, dialect)
    return f"sequence {seq} {body}" if ace.family == 6 and dialect.v6_sequence_last else f"{seq} {body}"


def render_body(ace: Ace, dialect: Dialect) -> str:
    if not ace.single:
        raise ValueError(f"{dialect.driver} writes one prefix per side of an entry, not {ace.sources} → "
                         f"{ace.destinations}")
    names = dialect.protocols4 if ace.family == 4 else dialect.protocols6
    if ace.protocol == 0:
        raise ValueError("protocol 0 reads as 'any' on some platforms; refusing to write it")
    proto = ("ip" if ace.family == 4 else "ipv6") if ace.protocol is None else names.get(
        ace.protocol, str(ace.protocol))
    port_ok = ace.protocol in PORT_PROTOCOLS and ace.protocol in names
    if not port_ok and (ace.src_ports != ANY_PORTS or ace.dst_ports != ANY_PORTS):
        raise ValueError(f"{dialect.driver} cannot match ports of protocol {proto}")
    parts = [ace.action.value, proto, render_address(ace.src, dialect), *render_ports(ace.src_ports, dialect),
             render_address(ace.dst, dialect), *render_ports(ace.dst_ports, dialect)]
    if ace.icmp_type is not None or ace.icmp_code is not None:
        if ace.protocol != (1 if ace.family == 4 else 58) or ace.icmp_type is None:
            raise ValueError(f"ICMP type/code need icmp of the ACE's family and a type, not {proto}")
        parts += [str(ace.icmp_type)] + ([] if ace.icmp_code is None else [str(ace.icmp_code)])
    if ace.tcp_flags is TcpFlags.ESTABLISHED:
        parts.append("established")
    elif ace.tcp_flags is not None:
        raise ValueError(f"{dialect.driver} has no keyword for TCP segments without ACK or RST ({ace.tcp_flags})")
    if ace.log:
        parts.append("log")
    return " ".join(parts)


def render_address(net: IPNetwork, dialect: Dialect) -> str:
    return _address_text(net, dialect.host_keyword, dialect.wildcard)


@lru_cache(maxsize=65536)  # a big ACL names the same few prefixes on thousands of entries; the text is pure
def _address_text(net: IPNetwork, host_keyword: bool, wildcard: bool) -> str:
    if net.prefixlen == 0:
        return "any"
    if net.prefixlen == net.max_prefixlen:
        return f"host {net.network_address}" if host_keyword else str(net)
    if net.version == 4 and wildcard:
        return f"{net.network_address} {net.hostmask}"
    return str(net)


def render_ports(ports: PortSet, dialect: Dialect) -> list[str]:
    if ports == ANY_PORTS:
        return []
    if len(ports) == 1:
        lo, hi = ports[0]
        return ["eq", str(lo)] if lo == hi else ["range", str(lo), str(hi)]
    if dialect.multi_eq and sum(hi - lo + 1 for lo, hi in ports) <= dialect.max_eq_ports:  # {22-23, 80}: eq 22 23 80
        return ["eq", *(str(p) for lo, hi in ports for p in range(lo, hi + 1))]
    raise ValueError(f"{dialect.driver} cannot write ports {ports} in one entry")


def render_binding(b: Binding, dialect: Dialect) -> tuple[str, str]:
    """(``interface NAME``, ``ip access-group ACL in|out``) — the keyword of the binding's family on the platform."""
    keyword = {family: kw for kw, family in dialect.bindings}.get(b.family)
    if keyword is None:
        raise ValueError(f"{dialect.driver} cannot bind an ACL of family {b.family}")
    if b.direction not in ("in", "out"):
        raise ValueError(f"direction must be in or out, not {b.direction!r}")
    interface, acl = check_word("interface", b.interface), check_word("ACL name", b.acl)
    return f"interface {interface}", f"{keyword} {acl} {b.direction}"


def check_word(kind: str, value: str) -> str:
    """An ACL or interface name as one config word (no spaces, not empty); ValueError otherwise."""
    if not re.fullmatch(r"\S+", value):
        raise ValueError(f"{kind} {value!r} must be one word")
    return value


def check_remark(text: str) -> str:
    """A remark's text as one config line: printable, no line break; ValueError otherwise.  Its length is not
    checked: the ones microseg writes fit in 100 characters (``ace.remark_lines``), and one a rollback writes
    back is what the device listed, so the device took it."""
    if not text.isprintable():
        raise ValueError(f"remark {text!r} must be one line of printable characters")
    return text


def check_family(family: int) -> int:
    if family not in (4, 6):
        raise ValueError(f"address family must be 4 or 6, not {family}")
    return family


_ENTRY_LINE = re.compile(r"[0-9]+ (?:permit|deny) .*")


def cisco_acl_config(text: str, name: str, header: str) -> tuple[list[str] | None, list[str]]:
    """A Cisco-like running configuration's lines about ACL ``name``: the body of its definition (the block
    whose top line is ``header``; None when there is none) and every other line that names it as a word — as
    ``BLOCK: line`` inside a block (``interface Vlan301: ip access-group X in``, ``line vty 0 4: access-class X
    in``), else the line itself.  Comment lines (``!``) are skipped, except inside the definition, where EOS
    keeps ``!! text`` comments: those are part of it."""
    word = re.compile(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])")
    body: list[str] | None = None
    uses: list[str] = []
    block, defining = "", False
    for raw in text.splitlines():
        line = " ".join(raw.split())
        if not line or (line.startswith("!") and not (defining and raw[0].isspace())):
            continue  # a comment; inside a definition (EOS keeps `!! text` there) it is part of the definition
        if not raw[0].isspace():
            block, defining = line, line == header
            if defining:
                body = [] if body is None else body
            elif word.search(line):
                uses.append(line)
            continue
        if defining and body is not None:
            body.append(line)
        elif word.search(line):
            uses.append(f"{block}: {line}")
    return body, uses


def cisco_definition_problem(body: Sequence[str], entries: int) -> str | None:
    """Why a definition with these body lines is not written back exactly from its ``entries`` modelled entries
    (only numbered permit/deny lines are: a remark or a counting statement would be lost); None when it is."""
    other = next((line for line in body if not _ENTRY_LINE.fullmatch(line)), None)
    if other is not None:
        return f"its definition holds `{other}`, which a rollback would not write back"
    if len(body) != entries:
        return f"its definition has {len(body)} entries where {entries} were read"
    return None


def cisco_config_reader(acl_mode: Callable[[str, int], str]) -> Callable[[str, str, int], tuple[list[str] | None,
                                                                                              list[str]]]:
    """The ``acl_config`` of a platform whose ACL definitions start with ``acl_mode(name, family)``: the running
    configuration's definition body of ACL ``name`` and the other lines that name it (a name microseg would not
    write has no definition it can tell apart: nothing)."""
    def acl_config(text: str, name: str, family: int) -> tuple[list[str] | None, list[str]]:
        try:
            header = acl_mode(name, family)
        except ValueError:
            return None, []
        return cisco_acl_config(text, name, header)
    return acl_config


def ends_with_end(text: str) -> bool:
    """Whether a running configuration answer is whole: it ends with ``end`` (an answer cut short — netmiko stops
    at the first line that looks like a prompt — could hide a use of an ACL)."""
    return text.rstrip().endswith("\nend")


def answered(text: str) -> bool:
    """Whether an answer without a closing line (NX-OS ``show running-config``) can be used: it is not empty."""
    return bool(text.strip())
