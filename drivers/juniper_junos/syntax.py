"""Junos firewall filters and their bindings: ``display set`` output → DeviceAcls, Ace → config-mode lines (pure)."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from drivers.netacl.ace import Ace, Acl, Binding, DeviceAcls, Entry, Unread, Unsupported, any_network
from orchestrator.model import (
    ANY_PORTS,
    MAX_PORT,
    TCP,
    Action,
    AddressSet,
    IPNetwork,
    ParseError,
    PortRange,
    PortSet,
    TcpFlags,
    normalize_ports,
)

DRIVER = "junos"
FIREWALL_COMMAND = "show configuration firewall | display set"
INTERFACES_COMMAND = "show configuration interfaces | display set"
FETCH_COMMANDS = (FIREWALL_COMMAND, INTERFACES_COMMAND)
#: the configuration hierarchy each fetch command shows: what ``transport: napalm`` reads over NETCONF instead
#: (``<get-configuration format="set">`` with that subtree filter answers the same ``set`` lines)
CONFIG_SECTIONS: dict[str, tuple[str, ...]] = {FIREWALL_COMMAND: ("firewall",), INTERFACES_COMMAND: ("interfaces",)}
DEFAULT_TERM = "default"
# What Junos answers a bad line or a failed commit with (``syntax error.``, ``error: …``, ``unknown command.`` …).
# A string (netmiko's ``error_pattern`` is searched with flags of its own), flags inline.
ERROR_PATTERN = r"(?im)syntax error|\berror:|unknown command|missing argument|^\s*invalid\b|\bis ambiguous\b"

FAMILIES: Mapping[str, int] = {"inet": 4, "inet6": 6}
FAMILY_WORDS: Mapping[int, str] = {4: "inet", 6: "inet6"}
PROTOCOL_WORD: Mapping[int, str] = {4: "protocol", 6: "next-header"}
DIRECTIONS: Mapping[str, str] = {"input": "in", "output": "out"}
DIRECTION_WORDS: Mapping[str, str] = {"in": "input", "out": "output"}
ICMP_PROTOCOL: Mapping[int, int] = {4: 1, 6: 58}
TCP_UDP = frozenset({TCP, 17})
INACTIVE = "inactive (deactivated)"

# The protocol / next-header keywords Junos accepts (numbers 0-255 too); rendered: these four by name.
PROTOCOLS: Mapping[str, int] = {
    "hop-by-hop": 0, "icmp": 1, "igmp": 2, "ipip": 4, "tcp": 6, "egp": 8, "udp": 17, "ipv6": 41, "routing": 43,
    "fragment": 44, "rsvp": 46, "gre": 47, "esp": 50, "ah": 51, "icmp6": 58, "icmpv6": 58, "no-next-header": 59,
    "dstopts": 60, "ospf": 89, "pim": 103, "vrrp": 112, "sctp": 132, "mobility": 135,
}
PROTOCOL_RENDER: Mapping[int, str] = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp6"}
# Junos port keywords (``from destination-port https``); rendered as numbers.
PORTS: Mapping[str, int] = {
    "afs": 1483, "bgp": 179, "biff": 512, "bootpc": 68, "bootps": 67, "cmd": 514, "cvspserver": 2401, "dhcp": 67,
    "domain": 53, "eklogin": 2105, "ekshell": 2106, "exec": 512, "finger": 79, "ftp": 21, "ftp-data": 20, "http": 80,
    "https": 443, "ident": 113, "imap": 143, "kerberos-sec": 88, "klogin": 543, "kpasswd": 761, "krb-prop": 754,
    "krbupdate": 760, "kshell": 544, "ldap": 389, "ldp": 646, "login": 513, "mobileip-agent": 434, "mobilip-mn": 435,
    "msdp": 639, "netbios-dgm": 138, "netbios-ns": 137, "netbios-ssn": 139, "nfsd": 2049, "nntp": 119, "ntalk": 518,
    "ntp": 123, "pop3": 110, "pptp": 1723, "printer": 515, "radacct": 1813, "radius": 1812, "rip": 520, "rkinit": 2108,
    "smtp": 25, "snmp": 161, "snmptrap": 162, "snpp": 444, "socks": 1080, "ssh": 22, "sunrpc": 111, "syslog": 514,
    "tacacs": 49, "tacacs-ds": 65, "talk": 517, "telnet": 23, "tftp": 69, "timed": 525, "who": 513, "xdmcp": 177,
    "zephyr-clt": 2103, "zephyr-hm": 2104, "zephyr-srv": 2102,
}
# icmp-type keywords per family (inet: ICMP, inet6: ICMPv6); rendered by name.
ICMP_TYPES: Mapping[int, Mapping[str, int]] = {
    4: {"echo-reply": 0, "unreachable": 3, "source-quench": 4, "redirect": 5, "echo-request": 8,
        "router-advertisement": 9, "router-solicit": 10, "time-exceeded": 11, "parameter-problem": 12, "timestamp": 13,
        "timestamp-reply": 14, "info-request": 15, "info-reply": 16, "mask-request": 17, "mask-reply": 18},
    6: {"destination-unreachable": 1, "packet-too-big": 2, "time-exceeded": 3, "parameter-problem": 4,
        "echo-request": 128, "echo-reply": 129, "membership-query": 130, "membership-report": 131,
        "membership-termination": 132, "router-solicit": 133, "router-advertisement": 134, "neighbor-solicit": 135,
        "neighbor-advertisement": 136, "redirect": 137, "router-renumbering": 138, "node-information-request": 139,
        "node-information-reply": 140},
}
ICMP_TYPE_NAMES: Mapping[int, Mapping[int, str]] = {f: {v: k for k, v in t.items()} for f, t in ICMP_TYPES.items()}
# Common icmp-code keywords per family (Junos has more, type-specific; unknown ones make a term Unsupported).
ICMP_CODES: Mapping[int, Mapping[str, int]] = {
    4: {"network-unreachable": 0, "host-unreachable": 1, "protocol-unreachable": 2, "port-unreachable": 3,
        "fragmentation-needed": 4, "communication-prohibited-by-filtering": 13, "ttl-eq-zero-during-transit": 0,
        "ttl-eq-zero-during-reassembly": 1},
    6: {"no-route-to-destination": 0, "administratively-prohibited": 1, "address-unreachable": 3, "port-unreachable": 4,
        "ttl-eq-zero-during-transit": 0, "fragment-reassembly-time-exceeded": 1},
}
_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|(\S+)')
# comments; the ``{master:0}`` banner of a virtual chassis, ``{primary:node0}`` of an SRX chassis cluster
_NOISE = re.compile(r"#.*|\{\w+(?::\w+)?\}")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]*")
_PORT = re.compile(r"([0-9]+)(?:-([0-9]+))?")
_COUNTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # letters, digits, - and _: what every release takes


@dataclass
class _Term:
    """One term's statements as read so far, in the model's terms; ``why`` lists what the model cannot hold."""

    text: list[str] = field(default_factory=list)
    src: list[IPNetwork] = field(default_factory=list)
    dst: list[IPNetwork] = field(default_factory=list)
    protocols: list[int] = field(default_factory=list)
    src_ports: list[PortRange] = field(default_factory=list)
    dst_ports: list[PortRange] = field(default_factory=list)
    icmp_types: list[int] = field(default_factory=list)
    icmp_codes: list[int] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    log: bool = False
    counter: str | None = None  # ``then count C``: an action modifier, read for hit evidence
    counters: int = 0  # how many ``then count`` statements (Junos allows one per term)
    established: bool = False  # ``from tcp-established`` (Junos: an alias of ``tcp-flags "(ack | rst)"``)
    why: list[str] = field(default_factory=list)


@dataclass
class _Filter:
    """One filter as read so far: its terms in order of first appearance and its filter-level statements."""

    family_word: str
    terms: dict[str, _Term] = field(default_factory=dict)
    remarks: list[str] = field(default_factory=list)
    inactive: bool = False

    @property
    def family(self) -> int:
        return FAMILIES.get(self.family_word, 0)


def _tokens(line: str) -> list[str]:
    """Junos words: double-quoted strings (backslash escapes) or runs of non-blanks."""
    return [re.sub(r"\\(.)", r"\1", m[1]) if m[1] is not None else m[2] for m in _TOKEN.finditer(line)]


_DEVICE_ERROR = re.compile(ERROR_PATTERN)


def _statements(text: str, what: str, point: str) -> Iterator[tuple[int, str, str, list[str]]]:
    """(line number, line, ``set``/``deactivate``, the words after it) of each statement.  Any other line is a
    ParseError — the answer is a whole configuration, and such a line could hide owned state — named as the
    device's error where it is one."""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or _NOISE.fullmatch(line):
            continue
        words = _tokens(line)
        if words[0] not in ("set", "deactivate") or len(words) < 2:
            problem = "the device answered with an error" if _DEVICE_ERROR.search(line) else "not a `set` statement"
            raise _error(what, number, line, problem, point)
        yield number, line, words[0], words[1:]


def _error(what: str, number: int, line: str, problem: str, point: str) -> ParseError:
    return ParseError(f"{what}: line {number}: {problem}: {line}", point=point, driver=DRIVER)


def _filter_statement(words: Sequence[str]) -> tuple[str, str, list[str]] | None:
    """(family word, filter name, the rest) of a firewall filter statement; None for other firewall statements."""
    if words[0] != "firewall":
        raise ValueError("not a firewall statement")
    if words[1:2] == ["filter"]:
        family, rest = "inet", list(words[2:])
    elif words[1:2] == ["family"] and words[3:4] == ["filter"]:
        family, rest = words[2], list(words[4:])
    else:
        return None  # policers, prefix-actions, service/simple filters …: not filters the model reads
    if not rest:
        raise ValueError("a filter without a name")
    return family, rest[0], rest[1:]


def _network(value: str, family: int) -> IPNetwork:
    net = ipaddress.ip_network(value, strict=False)
    if net.version != family:
        raise ValueError(f"{value} is not an {FAMILY_WORDS[family]} prefix")
    return net


def _port_range(value: str) -> PortRange | None:
    """A port, ``lo-hi`` range or port keyword; None for an unknown keyword; ValueError when out of range."""
    if value in PORTS:
        return PORTS[value], PORTS[value]
    match = _PORT.fullmatch(value)
    if match is None:
        return None
    lo, hi = int(match[1]), int(match[2] or match[1])
    if not lo <= hi <= MAX_PORT:
        raise ValueError(f"invalid port range {value}")
    return lo, hi


def _number(value: str, names: Mapping[str, int], limit: int) -> int | None:
    """A keyword from ``names`` or a number up to ``limit``; None for an unknown keyword."""
    if value in names:
        return names[value]
    if not (value.isascii() and value.isdigit()):  # not str.isdigit alone: it takes ``²``, which int refuses
        return None
    if int(value) > limit:
        raise ValueError(f"{value} is above {limit}")
    return int(value)


def _read_from(term: _Term, condition: str, values: list[str], family: int) -> None:
    """One ``from CONDITION VALUE…`` statement into ``term``; ValueError when it cannot be read."""
    modelled = ("source-address", "destination-address", "source-port", "destination-port", "icmp-type", "icmp-code",
                PROTOCOL_WORD[family])
    if condition == "tcp-established" and not values:
        term.established = True
        return
    if condition not in modelled:
        term.why.append(f"from {condition}")
        return
    if not values:
        raise ValueError(f"from {condition} without a value")
    if condition in ("source-address", "destination-address"):
        if values[1:] == ["except"]:
            term.why.append(f"{condition} … except")
        elif len(values) > 1:
            raise ValueError(f"unexpected words after {condition} {values[0]}")
        (term.src if condition == "source-address" else term.dst).append(_network(values[0], family))
        return
    for value in values:
        _read_value(term, condition, value, family)


def _read_value(term: _Term, condition: str, value: str, family: int) -> None:
    if condition in ("source-port", "destination-port"):
        ports = _port_range(value)
        if ports is not None:
            (term.src_ports if condition == "source-port" else term.dst_ports).append(ports)
            return
    else:
        known, target = {
            "icmp-type": (ICMP_TYPES[family], term.icmp_types),
            "icmp-code": (ICMP_CODES[family], term.icmp_codes),
        }.get(condition, (PROTOCOLS, term.protocols))
        number = _number(value, known, 255)
        if number is not None:
            target.append(number)
            return
    term.why.append(f"unknown {condition} {value}")


def _read_then(term: _Term, action: str, values: list[str]) -> None:
    if action in ("accept", "discard") and not values:
        term.actions.append(action)
    elif action in ("log", "syslog") and not values:
        term.log = True
    elif action == "count" and len(values) == 1:  # counts what the term matches; decides nothing
        term.counter, term.counters = values[0], term.counters + 1
    elif action == "next":
        term.why.append(f"then next {' '.join(values)}".rstrip())
    else:
        term.why.append(f"then {action}")


def _read_term(flt: _Filter, name: str, words: list[str], line: str) -> None:
    term = flt.terms.setdefault(name, _Term())
    term.text.append(line)
    words = [w for w in words if w not in ("[", "]")]
    if not words or not flt.family:
        return
    if words[0] in ("from", "then") and len(words) < 2:
        raise ValueError(f"`{words[0]}` without a statement")
    if words[0] == "from":
        _read_from(term, words[1], words[2:], flt.family)
    elif words[0] == "then":
        _read_then(term, words[1], words[2:])
    else:
        term.why.append(f"term statement {words[0]}")


def _read_filter_line(filters: dict[tuple[str, str], _Filter], verb: str, words: list[str], line: str) -> None:
    found = _filter_statement(words)
    if found is None:
        return
    family, name, rest = found
    flt = filters.setdefault((family, name), _Filter(family))
    if rest[:1] == ["term"] and len(rest) < 2:
        raise ValueError("a term without a name")
    if verb == "deactivate":
        if not rest:
            flt.inactive = True
        elif rest[0] == "term":
            term = flt.terms.setdefault(rest[1], _Term())
            term.text.append(line)
            term.why.append(INACTIVE)
        else:
            flt.remarks.append(f"inactive: {' '.join(rest)}")
    elif rest[:1] == ["term"]:
        _read_term(flt, rest[1], rest[2:], line)
    elif rest:
        flt.remarks.append(" ".join(rest))


def _match_why(term: _Term, family: int) -> list[str]:
    """Why the term's match conditions do not fit one Ace (empty when they do)."""
    why: list[str] = []
    if len(set(term.protocols)) > 1:
        why.append(f"several protocols in one term ({PROTOCOL_WORD[family]})")
    protocol = term.protocols[0] if term.protocols else None
    if (term.src_ports or term.dst_ports) and protocol not in TCP_UDP:
        why.append("source-port/destination-port without protocol tcp or udp")
    if len(set(term.icmp_types)) > 1 or len(set(term.icmp_codes)) > 1:
        why.append("several icmp-types or icmp-codes in one term")
    if (term.icmp_types or term.icmp_codes) and protocol != ICMP_PROTOCOL[family]:
        why.append(f"icmp-type/icmp-code without {PROTOCOL_WORD[family]} {PROTOCOL_RENDER[ICMP_PROTOCOL[family]]}")
    if term.icmp_codes and not term.icmp_types:
        why.append("icmp-code without icmp-type")
    if term.established and protocol != TCP:
        why.append(f"tcp-established without {PROTOCOL_WORD[family]} tcp")
    if not term.actions:
        why.append("no terminating action (accept or discard)")
    elif len(set(term.actions)) > 1:
        why.append("several terminating actions")
    return why


def _term_body(flt: _Filter, term: _Term) -> Ace | Unsupported:
    family = flt.family
    why = [f"family {flt.family_word} filter"] if not family else []
    if flt.inactive:
        why.append(INACTIVE)
    why += term.why
    if family:
        why += _match_why(term, family)
    if why:
        return Unsupported("\n".join(term.text), "; ".join(dict.fromkeys(why)))
    any_net = (any_network(family),)
    # a term's address lists as one canonical set per side (collapsed, sorted): what the compiler writes
    src = AddressSet.of(term.src).networks if term.src else any_net
    dst = AddressSet.of(term.dst).networks if term.dst else any_net
    return Ace(Action.PERMIT if term.actions[0] == "accept" else Action.DENY,
               term.protocols[0] if term.protocols else None, src[0], dst[0],
               normalize_ports(term.src_ports) if term.src_ports else ANY_PORTS,
               normalize_ports(term.dst_ports) if term.dst_ports else ANY_PORTS,
               term.icmp_types[0] if term.icmp_types else None, term.icmp_codes[0] if term.icmp_codes else None,
               term.log, src[1:], dst[1:], TcpFlags.ESTABLISHED if term.established else None)


def read_filters(text: str, *, point: str = "?") -> tuple[tuple[Acl, ...], tuple[Unread, ...]]:
    """Every firewall filter of ``show configuration firewall | display set``, terms in evaluation order, and
    the lines of a filter that could not be read — each naming its filter (``display set`` lines carry their
    whole path), so that ownership decides whether it matters (see ``layout.owned_state``).  A line that names
    no filter is a ParseError: the answer is the whole firewall configuration, and such a line could be what
    is left of an owned filter (garbage must never read as "no such filter").

    Filters of other families (``ethernet-switching`` …) are kept with family 0 and every term Unsupported;
    filter-level statements (``interface-specific`` …) are kept as remarks.
    """
    filters: dict[tuple[str, str], _Filter] = {}
    unread: list[Unread] = []
    for number, line, verb, words in _statements(text, FIREWALL_COMMAND, point):
        try:
            _read_filter_line(filters, verb, words, line)
        except ValueError as exc:
            name = _filter_named(words)
            if name is None:  # the answer is the whole firewall configuration: this line may hide an owned filter
                raise _error(FIREWALL_COMMAND, number, line, str(exc), point) from exc
            unread.append(Unread(FIREWALL_COMMAND, number, line, str(exc), acl=name))
    acls = []
    for (_, name), flt in filters.items():
        own = _own_counters(flt)
        entries = tuple(Entry(t, _term_body(flt, term), counter=own.get(t)) for t, term in flt.terms.items())
        acls.append(Acl(name, flt.family, entries, kind="filter" if flt.family else flt.family_word,
                        remarks=tuple(flt.remarks)))
    return tuple(acls), tuple(unread)


def _own_counters(flt: _Filter) -> dict[str, str]:
    """Term → its counter, for the terms that count alone (a counter several terms share tells none of them);
    one pass over the filter."""
    uses = Counter(t.counter for t in flt.terms.values() if t.counter is not None)
    return {name: t.counter for name, t in flt.terms.items()
            if t.counter is not None and t.counters == 1 and uses[t.counter] == 1}


def _filter_named(words: Sequence[str]) -> str | None:
    """The filter a statement is about, if it names one."""
    try:
        found = _filter_statement(words)
    except (ValueError, IndexError):
        return None
    return found[1] if found else None


def parse_filters(text: str, *, point: str = "?") -> tuple[Acl, ...]:
    """:func:`read_filters`, strict: ParseError (command, line number, problem, line) on the first unread line."""
    acls, unread = read_filters(text, point=point)
    if unread:
        raise _error(FIREWALL_COMMAND, unread[0].line_no, unread[0].text, unread[0].reason, point)
    return acls


def read_bindings(text: str, *, point: str = "?") -> tuple[tuple[Binding, ...], tuple[Unread, ...]]:
    """The ``family inet|inet6 filter input|output NAME`` of every unit in ``show configuration interfaces``, and
    the binding lines that could not be read, naming their interface ``IFD.UNIT``; a line that names no
    interface is a ParseError (it could hide a binding of the point's interfaces).

    Everything else (addresses, descriptions, ``input-list``, interface-ranges …) is ignored; a binding that is
    deactivated (itself or an enclosing statement) is not in effect and is left out.
    """
    found: list[tuple[tuple[str, ...], Binding]] = []
    inactive: list[tuple[str, ...]] = []
    unread: list[Unread] = []
    for number, line, verb, words in _statements(text, INTERFACES_COMMAND, point):
        if words[0] != "interfaces":  # the answer is every interface's configuration: this line may hide one
            raise _error(INTERFACES_COMMAND, number, line, "not an interfaces statement", point)
        if verb == "deactivate":
            inactive.append(tuple(words))
            continue
        if len(words) != 9 or words[2] != "unit" or words[4] != "family" or words[6] != "filter":
            continue
        family, direction = FAMILIES.get(words[5]), DIRECTIONS.get(words[7])
        if family is None or direction is None:
            continue
        if not (words[3].isascii() and words[3].isdigit()):
            unread.append(Unread(INTERFACES_COMMAND, number, line, f"unit {words[3]} is not a number",
                                 interface=f"{words[1]}.{words[3]}"))
            continue
        found.append((tuple(words), Binding(f"{words[1]}.{words[3]}", family, direction, words[8])))
    bindings = tuple(b for path, b in found if not any(path[: len(off)] == off for off in inactive))
    return bindings, tuple(unread)


def parse_bindings(text: str, *, point: str = "?") -> tuple[Binding, ...]:
    """:func:`read_bindings`, strict: ParseError on the first unread line."""
    bindings, unread = read_bindings(text, point=point)
    if unread:
        raise _error(INTERFACES_COMMAND, unread[0].line_no, unread[0].text, unread[0].reason, point)
    return bindings


COUNTERS_COMMAND = "show firewall filter {name}"
_COUNTERS_PREFIX = COUNTERS_COMMAND.format(name="")  # what a counters command starts with before the filter name
_COUNTERS_HEADER = re.compile(r"\s*Name\s+Bytes\s+Packets\s*")
_COUNTER_ROW = re.compile(r"\s*(\S+)\s+([0-9]+)\s+([0-9]+)\s*")


def counter_commands(device: DeviceAcls, acls: Iterable[tuple[str, int]]) -> tuple[str, ...]:
    """What reads the hit counters of the filters ``acls`` that exist on the device and count a term
    (``show firewall filter NAME``; a filter name is one word, so it needs no quoting)."""
    names = {name for name, _ in acls}
    return tuple(dict.fromkeys(COUNTERS_COMMAND.format(name=a.name) for a in device.acls
                               if a.name in names and any(e.counter for e in a.entries)))


def read_counters(text: str, command: str, *, point: str = "?") -> dict[str, int]:
    """Counter name → packets of the filter ``command`` asks about (``show firewall filter NAME``)::

        Filter: NAME
        Counters:
        Name                                                Bytes              Packets
        C1                                                   1234                   12

    Only that filter's ``Counters:`` block counts (``Policers:`` rows are no term counters; blocks of other
    filters, as ``show firewall`` prints them, are skipped); an echoed command line before the first block and
    ``{master:0}`` lines are skipped.  Any other line is a ParseError naming the command and line (the driver
    then leaves the counters unknown: they are evidence, and never stop a fetch).
    """
    wanted = command.removeprefix(_COUNTERS_PREFIX)
    found: dict[str, int] = {}
    current, block = None, ""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or _NOISE.fullmatch(line) or (current is None and line.startswith("show ")):
            continue  # blank, ``{master:0}``, an echoed command
        if line.startswith("Filter:"):
            current, block = line.removeprefix("Filter:").strip(), "filter"
        elif line in ("Counters:", "Policers:") and current is not None:
            block = line[:-1].lower()
        elif block == "policers" or (block == "counters" and _COUNTERS_HEADER.fullmatch(line)):
            continue  # the header; policers are no term counters, in whatever columns the release prints them
        elif block == "counters" and (row := _COUNTER_ROW.fullmatch(line)):
            if current == wanted:
                found[row[1]] = int(row[3])
        else:
            problem = "the device answered with an error" if _DEVICE_ERROR.search(line) else "not a counter row"
            raise _error(command, number, line, problem, point)
    return found


def with_counters(device: DeviceAcls, outputs: Mapping[str, str], *, point: str = "?") -> DeviceAcls:
    """``device`` with each counted term's packets (``Entry.matches``) from the :func:`counter_commands`'
    answers; a term whose counter the answer does not list stays unknown (None)."""
    counts = {command.removeprefix(_COUNTERS_PREFIX): read_counters(text, command, point=point)
              for command, text in outputs.items()}
    acls = tuple(
        replace(acl, entries=tuple(replace(e, matches=counts[acl.name].get(e.counter)) if e.counter else e
                                   for e in acl.entries)) if acl.name in counts else acl
        for acl in device.acls)
    return replace(device, acls=acls)


def fetch_commands(acls: Iterable[tuple[str, int]] = ()) -> tuple[str, ...]:
    """What a point's fetch sends: the firewall and interface configuration (filters are read whole)."""
    return FETCH_COMMANDS


def parse(outputs: Mapping[str, str], *, point: str = "?") -> DeviceAcls:
    """The filters, bindings and unread lines from the outputs of :data:`FETCH_COMMANDS` (keyed by command):
    tolerant — whether an unread line matters is decided by ownership (``layout.owned_state``)."""
    missing = [c for c in FETCH_COMMANDS if c not in outputs]
    if missing:
        raise ParseError(f"missing output of {', '.join(missing)}", point=point, driver=DRIVER)
    acls, unread_filters = read_filters(outputs[FIREWALL_COMMAND], point=point)
    bindings, unread_bindings = read_bindings(outputs[INTERFACES_COMMAND], point=point)
    return DeviceAcls(acls, bindings, (*unread_filters, *unread_bindings))


def _name(value: str, what: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"{what} {value!r} is not a name microseg writes")
    return value


def _filter_path(filter_name: str, family: int) -> str:
    if family not in FAMILY_WORDS:
        raise ValueError(f"family {family} is not inet (4) or inet6 (6)")
    return f"firewall family {FAMILY_WORDS[family]} filter {_name(filter_name, 'filter')}"


def _term_path(filter_name: str, family: int, term: str) -> str:
    return f"{_filter_path(filter_name, family)} term {_name(term, 'term')}"


def _port_values(ports: PortSet) -> list[str]:
    if not ports:
        raise ValueError("an empty port set matches nothing")
    return [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ports]


def _match_clauses(ace: Ace, family: int) -> list[str]:
    """The ``from …`` clauses of an Ace (any-address and any-port clauses omitted); ValueError if Junos cannot."""
    clauses = [f"{side} {net}" for side, nets in (("source-address", ace.sources),
                                                   ("destination-address", ace.destinations))
               if len(nets) > 1 or nets[0].prefixlen for net in nets]
    if ace.protocol is not None:
        clauses.append(f"{PROTOCOL_WORD[family]} {PROTOCOL_RENDER.get(ace.protocol, ace.protocol)}")
    for side, ports in (("source-port", ace.src_ports), ("destination-port", ace.dst_ports)):
        if ports != ANY_PORTS:
            if ace.protocol not in TCP_UDP:
                raise ValueError(f"ports need protocol tcp or udp in a Junos term, not {ace.protocol}")
            clauses += [f"{side} {value}" for value in _port_values(ports)]
    if ace.icmp_type is not None or ace.icmp_code is not None:
        if ace.protocol != ICMP_PROTOCOL[family] or ace.icmp_type is None:
            raise ValueError(f"icmp-type/code need {PROTOCOL_RENDER[ICMP_PROTOCOL[family]]} and a type: {ace}")
        clauses.append(f"icmp-type {ICMP_TYPE_NAMES[family].get(ace.icmp_type, ace.icmp_type)}")
        if ace.icmp_code is not None:
            clauses.append(f"icmp-code {ace.icmp_code}")
    if ace.tcp_flags is TcpFlags.ESTABLISHED:
        clauses.append("tcp-established")
    elif ace.tcp_flags is not None:
        raise ValueError(f"Junos has no match for exactly the TCP segments without ACK or RST ({ace.tcp_flags})")
    return clauses


def term_lines(filter_name: str, family: int, term: str, ace: Ace, *, counted: bool = True) -> tuple[str, ...]:
    """Every ``set firewall family … filter F term T …`` line of one term: from-clauses, ``count T`` (the
    term's hit counter; not with ``counted`` false: someone else's term written back as it was), ``log``, the
    action."""
    if ace.family != family:
        raise ValueError(f"an IPv{ace.family} Ace in a family {FAMILY_WORDS.get(family, family)} filter")
    base = f"set {_term_path(filter_name, family, term)}"
    # every term counts what it matches, under its own name (``show firewall filter`` lists it: hit evidence) —
    # when that name is a plain counter name (a term restored under a foreign name with `.` `:` `/` counts not)
    actions = [*([f"count {term}"] if counted and _COUNTER_NAME.fullmatch(term) else []),
               *(["log"] if ace.log else [])]
    actions.append("accept" if ace.action is Action.PERMIT else "discard")
    return (*(f"{base} from {c}" for c in _match_clauses(ace, family)), *(f"{base} then {a}" for a in actions))


def delete_term(filter_name: str, family: int, term: str) -> str:
    return f"delete {_term_path(filter_name, family, term)}"


def insert_before(filter_name: str, family: int, term: str, before_term: str) -> str:
    """Moves the (already set) ``term`` in front of ``before_term``: a new term is otherwise appended last."""
    return f"insert {_term_path(filter_name, family, term)} before term {_name(before_term, 'term')}"


def delete_filter(filter_name: str, family: int) -> str:
    return f"delete {_filter_path(filter_name, family)}"


delete_acl = delete_filter  # the name the shared ACL driver skeleton calls

RUNNING_CONFIG = "show configuration | display set"  # read for delete_replaced: every place that names the filter
_RESTORABLE_TERM_LINE = re.compile(r"term \S+ (?:from .+|then (?:accept|discard|log))")


def acl_config(text: str, name: str, family: int) -> tuple[list[str] | None, list[str]]:
    """The ``set`` lines of filter ``name`` (after its path; None when there are none) and every other line that
    names it as a word (a ``deactivate`` of the filter counts as part of it)."""
    try:
        path = _filter_path(name, family)
    except ValueError:
        return None, []
    word = re.compile(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])")
    body: list[str] | None = None
    uses: list[str] = []
    for raw in text.splitlines():
        line = " ".join(raw.split())
        for verb in ("set", "deactivate"):
            if line == f"{verb} {path}" or line.startswith(f"{verb} {path} "):
                body = [*(body or []), line[len(verb) + len(path) + 2:] if verb == "set" else line]
                break
        else:
            if word.search(line):
                uses.append(line)
    return body, uses


def complete_config(text: str) -> bool:
    """Whether a ``display set`` answer can be used (it prints no closing line: not empty)."""
    return bool(text.strip())


def comments_command(name: str, family: int) -> str:
    """The filter in text form, the only one that shows its annotations (``/* … */``; ``display set`` drops
    them) — which a rollback could not write back."""
    return f"show configuration {_filter_path(name, family)}"


def definition_problem(body: Sequence[str], entries: int) -> str | None:
    """Why a filter with these ``set`` lines is not written back exactly from its ``entries`` modelled terms
    (only from-clauses and ``then accept|discard|log`` are: a count, a syslog, a policer or a filter-level
    statement would be lost); None when it is."""
    other = next((line for line in body if not _RESTORABLE_TERM_LINE.fullmatch(line)), None)
    if other is not None:
        return f"its definition holds `{other}`, which a rollback would not write back"
    terms = {line.split()[1] for line in body}
    if len(terms) != entries:
        return f"its definition has {len(terms)} terms where {entries} were read"
    return None


def _binding_path(b: Binding) -> str:
    device, _, unit = b.interface.rpartition(".")
    if not device or not unit.isdigit():
        raise ValueError(f"{b.interface!r} is not a Junos logical interface (IFD.UNIT, e.g. irb.100)")
    if b.direction not in DIRECTION_WORDS or b.family not in FAMILY_WORDS:
        raise ValueError(f"cannot bind {b}")
    return (f"interfaces {_name(device, 'interface')} unit {unit} family {FAMILY_WORDS[b.family]} "
            f"filter {DIRECTION_WORDS[b.direction]} {_name(b.acl, 'filter')}")


def bind(b: Binding) -> tuple[str, ...]:
    return (f"set {_binding_path(b)}",)


def unbind(b: Binding) -> tuple[str, ...]:
    return (f"delete {_binding_path(b)}",)


def term_name(index: int, label: str | None = None) -> str:
    """The name of the ``index``-th term microseg names (1, 2 …): ``T10``, ``T20`` …, or with a label (why the
    term exists: ``web-to-db-return``) ``web-to-db-return-T10`` (the catch-all: ``default``)."""
    if index <= 0:
        raise ValueError(f"term indexes start at 1, not {index}")
    return f"{label}-T{10 * index}" if label else f"T{10 * index}"

# Tokens the inventory puts into configuration lines (settings, checked when the inventory loads): a
# logical interface (ge-0/0/0.0, xe-0/0/1:2.100, irb.301, ae0.0) and a firewall filter name prefix.
INTERFACE_NAME = r"[a-z]{2,8}(?:-\d+/\d+/\d+(?::\d+)?|\d+)?(?:\.\d+)?"
FILTER_NAME_PREFIX = r"[A-Za-z][A-Za-z0-9_.-]{0,39}"
