"""The normalized rule and ruleset: the one language between the core and the drivers.

A :class:`Rule` is identified by its canonical match fields (action, direction,
protocol, address sets, port sets, ICMP type/code, TCP flags, log).  Its
:class:`Provenance` (which policy rules produced it, tickets, expiry) travels
beside it and never changes its identity: two rules that match the same
packets the same way are equal whatever produced them.

Direction is relative to the *protected scope* of the enforcement point:
``ingress`` is traffic towards the workloads/subnets the point protects,
``egress`` is traffic leaving them.  Drivers map this onto their native notion
(nft input/output chains, ACL in/out on an SVI, SG inbound/outbound).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from functools import cached_property, lru_cache
from typing import Any, TypeAlias

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
PortRange: TypeAlias = tuple[int, int]
PortSet: TypeAlias = tuple[PortRange, ...]

MAX_PORT = 65535
ANY_PORTS: PortSet = ((0, MAX_PORT),)

PROTOCOL_NUMBERS: Mapping[str, int] = {
    "icmp": 1,
    "igmp": 2,
    "tcp": 6,
    "udp": 17,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "icmpv6": 58,
    "ospf": 89,
    "pim": 103,
    "vrrp": 112,
    "sctp": 132,
}
PROTOCOL_NAMES: Mapping[int, str] = {v: k for k, v in PROTOCOL_NUMBERS.items()}
PORT_PROTOCOLS = frozenset({6, 17, 132})
TCP = PROTOCOL_NUMBERS["tcp"]
ICMP_PROTOCOLS = frozenset({1, 58})


class Action(StrEnum):
    """What a rule does with the packets it matches."""

    PERMIT = "permit"
    DENY = "deny"


class Direction(StrEnum):
    """Relative to the protected scope: ingress goes towards it, egress leaves it."""

    INGRESS = "ingress"
    EGRESS = "egress"


class Ordering(StrEnum):
    """How an enforcement point evaluates its rules."""

    FIRST_MATCH = "first_match"  # ACLs, nftables chains: the first matching rule decides
    PRIORITY = "priority"  # Azure NSG, GCP: lowest priority number decides (order = priority)
    UNORDERED_ALLOW = "unordered_allow"  # AWS SG: union of allows, everything else denied


class TcpFlags(StrEnum):
    """Which TCP segments a rule matches by their flags (None on a rule: all of them).

    ``established`` is a segment with ACK or RST set — what ``established`` matches on IOS, NX-OS and EOS
    ACLs and ``tcp-established`` on Junos: a reply or a later segment of a connection, never the SYN that
    opens one.  ``initial`` is the rest (neither ACK nor RST set); it exists so that every set of flows has
    rules, and no renderer writes it (Junos ``tcp-flags "!ack & !rst"`` or IOS ``match-all -ack -rst`` could).
    """

    ESTABLISHED = "established"
    INITIAL = "initial"


class Mode(StrEnum):
    """``enforce`` drops what is denied; ``monitor`` only logs what would be dropped."""

    ENFORCE = "enforce"
    MONITOR = "monitor"


def protocol_name(protocol: int | None) -> str:
    """``tcp``, ``udp`` …, the number for unnamed protocols, ``any`` for None."""
    if protocol is None:
        return "any"
    return PROTOCOL_NAMES.get(protocol, str(protocol))


def parse_protocol(text: str | int) -> int | None:
    """A protocol name or number (0-255) → number; ``any`` → None.  Raises ValueError."""
    if isinstance(text, int):
        value = text
    else:
        key = text.strip().lower()
        if key in ("any", "all", "ip"):
            return None
        if key in PROTOCOL_NUMBERS:
            return PROTOCOL_NUMBERS[key]
        if not key.isdigit():
            raise ValueError(f"unknown protocol {text!r}")
        value = int(key)
    if not 0 <= value <= 255:
        raise ValueError(f"protocol number {value} is outside 0-255")
    return value


def normalize_ports(ranges: Iterable[PortRange]) -> PortSet:
    """Sorted, merged (adjacent and overlapping) port ranges.  Raises ValueError."""
    items = sorted(ranges)
    merged: list[list[int]] = []
    for lo, hi in items:
        if not 0 <= lo <= hi <= MAX_PORT:
            raise ValueError(f"invalid port range {lo}-{hi}")
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return tuple((lo, hi) for lo, hi in merged)


def format_ports(ports: PortSet) -> str:
    """``any``, ``443`` or ``80,8000-8080``."""
    if ports == ANY_PORTS:
        return "any"
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ports)


def parse_ports(text: str) -> PortSet:
    """Inverse of :func:`format_ports`."""
    if text == "any":
        return ANY_PORTS
    out: list[PortRange] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.append((int(lo), int(hi or lo)))
    return normalize_ports(out)


def _intersect_intervals(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _subtract_intervals(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    j = 0
    for lo, hi in a:
        while j < len(b) and b[j][1] < lo:
            j += 1
        k, cur = j, lo
        while k < len(b) and b[k][0] <= hi:
            if b[k][0] > cur:
                out.append((cur, b[k][0] - 1))
            cur = max(cur, b[k][1] + 1)
            k += 1
        if cur <= hi:
            out.append((cur, hi))
    return out


def _network_key(net: IPNetwork) -> tuple[int, int, int]:
    return (net.version, int(net.network_address), net.prefixlen)


def _is_canonical(nets: Sequence[IPNetwork]) -> bool:
    """Whether collapsing and sorting would give ``nets`` back as they are — checked in one pass.

    True when IPv4 comes before IPv6, each family ascends with every network starting after the previous
    one ends (disjoint: none holds another), and no two neighbours are the lower and upper half of one
    prefix.  Collapsing merges only such halves, and the two halves of a prefix are neighbours in a sorted
    disjoint list (nothing fits between them), so a list passing this check is its own collapse.
    """
    prev_version, prev_start, prev_end, prev_len = 0, -1, -1, -1
    for net in nets:
        version, start = net.version, int(net.network_address)
        if version == prev_version:
            if start <= prev_end:
                return False
            size = 1 << (net.max_prefixlen - net.prefixlen)
            if net.prefixlen == prev_len and start == prev_start + size and not prev_start & size:
                return False  # the two halves of one prefix
        elif version < prev_version:
            return False
        prev_version, prev_start, prev_end, prev_len = version, start, int(net.broadcast_address), net.prefixlen
    return True


@dataclass(frozen=True)
class AddressSet:
    """A canonical set of IPv4 and IPv6 networks: collapsed, IPv4 first, sorted."""

    networks: tuple[IPNetwork, ...] = ()

    def __hash__(self) -> int:  # once per set: sets key caches (compile keys, cached intervals) on hot paths
        return self._hash

    @cached_property
    def _hash(self) -> int:
        return hash(self.networks)

    @classmethod
    def of(cls, networks: Iterable[IPNetwork | str]) -> AddressSet:
        nets = [n if not isinstance(n, str) else ipaddress.ip_network(n, strict=False) for n in networks]
        if _is_canonical(nets):  # most inputs already are (a set's own networks, checked or joined again)
            return cls(tuple(nets))
        v4 = ipaddress.collapse_addresses(n for n in nets if n.version == 4)
        v6 = ipaddress.collapse_addresses(n for n in nets if n.version == 6)
        return cls(tuple(sorted([*v4, *v6], key=_network_key)))

    @classmethod
    def any(cls) -> AddressSet:
        return cls.of([ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")])

    def __bool__(self) -> bool:
        return bool(self.networks)

    @property
    def v4(self) -> tuple[ipaddress.IPv4Network, ...]:
        return tuple(n for n in self.networks if isinstance(n, ipaddress.IPv4Network))

    @property
    def v6(self) -> tuple[ipaddress.IPv6Network, ...]:
        return tuple(n for n in self.networks if isinstance(n, ipaddress.IPv6Network))

    @cached_property
    def families(self) -> frozenset[int]:
        return frozenset(n.version for n in self.networks)

    def union(self, other: AddressSet) -> AddressSet:
        return AddressSet.of([*self.networks, *other.networks])

    def intervals(self, version: int) -> list[tuple[int, int]]:
        """Sorted, disjoint, closed integer intervals of one address family."""
        return self._intervals[version]

    @cached_property
    def _intervals(self) -> dict[int, list[tuple[int, int]]]:
        out: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
        for n in self.networks:
            out[n.version].append((int(n.network_address), int(n.broadcast_address)))
        return out

    def overlaps(self, other: AddressSet) -> bool:
        """Whether the two sets share at least one address."""
        return any(_intersect_intervals(self.intervals(v), other.intervals(v)) for v in (4, 6))

    def intersection(self, other: AddressSet) -> AddressSet:
        return self._combine(other, _intersect_intervals)

    def difference(self, other: AddressSet) -> AddressSet:
        return self._combine(other, _subtract_intervals)

    def _combine(
        self,
        other: AddressSet,
        op: Callable[[list[tuple[int, int]], list[tuple[int, int]]], list[tuple[int, int]]],
    ) -> AddressSet:
        results = {version: op(self.intervals(version), other.intervals(version)) for version in (4, 6)}
        for operand in (self, other):  # the result is often an operand whole (rules inside a point's scope)
            if all(results[version] == operand.intervals(version) for version in (4, 6)):
                return operand
        nets: list[IPNetwork] = []
        for version in (4, 6):
            for lo, hi in results[version]:
                nets.extend(range_networks(version, lo, hi))
        return AddressSet(tuple(sorted(nets, key=_network_key)))

    def address_count(self) -> int:
        return sum(n.num_addresses for n in self.networks)

    def to_list(self) -> list[str]:
        return [str(n) for n in self.networks]

    def __str__(self) -> str:
        if self == ANY_ADDRESS:
            return "any"
        return ",".join(self.to_list()) or "(empty)"

    def abbreviated(self, keep: int = 3) -> str:
        """``a,b,c (+N more)``: address lists stay readable on a terminal or a ticket; --json has them all."""
        if self == ANY_ADDRESS or len(self.networks) <= keep:
            return str(self)
        return ",".join(self.to_list()[:keep]) + f" (+{len(self.networks) - keep} more)"


ANY_ADDRESS = AddressSet.any()
# every address of one family ("any" of IPv4, of IPv6), where policy "any" (both families) would be too wide
ANY_OF_FAMILY: Mapping[int, AddressSet] = {4: AddressSet.of(["0.0.0.0/0"]), 6: AddressSet.of(["::/0"])}


RETURN_NOTE = "return path"  # the note of the replies the compiler lets back on a stateless point
CARVE_OUT_NOTE = "carve-out"  # the note of the denies the compiler puts before a wider permit


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a compiled rule came from.  Never part of a rule's identity."""

    rules: tuple[str, ...] = ()
    tickets: tuple[str, ...] = ()
    owners: tuple[str, ...] = ()
    expires: date | None = None
    note: str | None = None

    def derived(self) -> str | None:
        """``"return"`` for a reply the compiler lets back, ``"carve-out"`` for a deny it puts before a wider
        permit (entries that exist for ``rules`` without being what those rules say), else None."""
        note = self.note or ""
        return "return" if RETURN_NOTE in note else "carve-out" if CARVE_OUT_NOTE in note else None

    def merge(self, other: Provenance) -> Provenance:
        expiries = [e for e in (self.expires, other.expires) if e is not None]
        notes = sorted({n for n in (self.note, other.note) if n})
        return Provenance(
            rules=tuple(sorted(set(self.rules) | set(other.rules))),
            tickets=tuple(sorted(set(self.tickets) | set(other.tickets))),
            owners=tuple(sorted(set(self.owners) | set(other.owners))),
            expires=min(expiries) if expiries else None,
            note="; ".join(notes) or None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "rules": list(self.rules),
            "tickets": list(self.tickets),
            "owners": list(self.owners),
            "expires": self.expires.isoformat() if self.expires else None,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Provenance:
        exp = data.get("expires")
        return cls(
            rules=tuple(data.get("rules", ())),
            tickets=tuple(data.get("tickets", ())),
            owners=tuple(data.get("owners", ())),
            expires=date.fromisoformat(exp) if exp else None,
            note=data.get("note"),
        )


_FAMILY_BITS = {4: 32, 6: 128}


def range_networks(version: int, lo: int, hi: int) -> list[IPNetwork]:
    """The CIDR prefixes covering exactly the addresses ``lo``..``hi`` (integers of IP ``version``), in order:
    what ``ipaddress.summarize_address_range`` yields, worked out on integers, each prefix built once per
    process (a compile's set operations make the same gaps and halves over and over)."""
    bits = _FAMILY_BITS[version]
    if not 0 <= lo <= hi < 1 << bits:
        raise ValueError(f"not an IPv{version} address range: {lo}..{hi}")
    out: list[IPNetwork] = []
    while lo <= hi:
        aligned = (lo & -lo).bit_length() - 1 if lo else bits  # trailing zero bits of lo
        span = (hi - lo + 1).bit_length() - 1  # the largest power of two that fits in what is left
        size = min(aligned, span)
        out.append(_prefix(version, lo, bits - size))
        lo += 1 << size
    return out


@lru_cache(maxsize=16384)  # bounded for long-running processes: ~9 MB when full of IPv6 prefixes
def _prefix(version: int, start: int, prefixlen: int) -> IPNetwork:
    return ipaddress.IPv4Network((start, prefixlen)) if version == 4 else ipaddress.IPv6Network((start, prefixlen))


@lru_cache(maxsize=65536)
def _network_of(text: str) -> IPNetwork:
    """A stored network, parsed once (sets of one plan share most of their networks; networks are immutable)."""
    return ipaddress.ip_network(text, strict=False)


@lru_cache(maxsize=8192)
def _addresses_of(texts: tuple[str, ...]) -> AddressSet:
    """``AddressSet.of`` for the address lists of stored rules (plans read back from a worker or a file repeat
    the same few sets on every rule: parsed once; the sets are immutable, so sharing them is exact).

    A stored list is usually canonical already (written by :meth:`AddressSet.to_list`), which ``AddressSet.of``
    takes as it is after a linear check."""
    return AddressSet.of([_network_of(t) for t in texts])


@dataclass(frozen=True, slots=True)
class Rule:
    """One normalized match → action rule of an enforcement point."""

    action: Action
    direction: Direction
    protocol: int | None
    src: AddressSet
    dst: AddressSet
    src_ports: PortSet = ANY_PORTS
    dst_ports: PortSet = ANY_PORTS
    icmp_type: int | None = None
    icmp_code: int | None = None
    log: bool = False
    provenance: Provenance = field(default_factory=Provenance, compare=False, hash=False)
    tcp_flags: TcpFlags | None = None

    def __post_init__(self) -> None:
        if self.tcp_flags is not None and self.protocol != TCP:
            raise ValueError(f"TCP flags ({self.tcp_flags.value}) need tcp, not {protocol_name(self.protocol)}")
        if self.protocol not in PORT_PROTOCOLS and (self.src_ports != ANY_PORTS or self.dst_ports != ANY_PORTS):
            raise ValueError(f"ports need tcp, udp or sctp, not {protocol_name(self.protocol)}")
        if self.protocol not in ICMP_PROTOCOLS and (self.icmp_type is not None or self.icmp_code is not None):
            raise ValueError(f"ICMP type/code need icmp or icmpv6, not {protocol_name(self.protocol)}")
        if self.icmp_code is not None and self.icmp_type is None:
            raise ValueError("an ICMP code needs an ICMP type")

    def key(self) -> tuple[Any, ...]:
        """Canonical sortable identity (provenance excluded)."""
        return (
            self.direction.value,
            -1 if self.protocol is None else self.protocol,
            tuple(_network_key(n) for n in self.src.networks),
            tuple(_network_key(n) for n in self.dst.networks),
            self.src_ports,
            self.dst_ports,
            -1 if self.icmp_type is None else self.icmp_type,
            -1 if self.icmp_code is None else self.icmp_code,
            self.action.value,
            self.log,
            "" if self.tcp_flags is None else self.tcp_flags.value,
        )

    def with_match(self, src: AddressSet, dst: AddressSet, src_ports: PortSet, dst_ports: PortSet) -> Rule:
        """This rule over other addresses and ports (what ``dataclasses.replace`` does, without its generic field
        walk: a platform's shape splits big filters into tens of thousands of pieces)."""
        return Rule(
            self.action, self.direction, self.protocol, src, dst,
            src_ports, dst_ports, self.icmp_type, self.icmp_code, self.log, self.provenance, self.tcp_flags,
        )

    def with_provenance(self, provenance: Provenance) -> Rule:
        return Rule(
            self.action, self.direction, self.protocol, self.src, self.dst,
            self.src_ports, self.dst_ports, self.icmp_type, self.icmp_code, self.log, provenance, self.tcp_flags,
        )

    def service_text(self) -> str:
        """``tcp/443``, ``icmp/8/0``, ``udp/any``, ``any``."""
        name = protocol_name(self.protocol)
        if self.protocol in PORT_PROTOCOLS:
            text = f"{name}/{format_ports(self.dst_ports)}"
            if self.src_ports != ANY_PORTS:
                text += f" from-port {format_ports(self.src_ports)}"
            if self.tcp_flags is not None:
                text += f" {self.tcp_flags.value}"
            return text
        if self.icmp_type is not None:
            code = f"/{self.icmp_code}" if self.icmp_code is not None else ""
            return f"{name}/{self.icmp_type}{code}"
        return name

    def to_dict(self, *, with_provenance: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "action": self.action.value,
            "direction": self.direction.value,
            "protocol": protocol_name(self.protocol),
            "src": self.src.to_list(),
            "dst": self.dst.to_list(),
            "src_ports": format_ports(self.src_ports),
            "dst_ports": format_ports(self.dst_ports),
            "icmp_type": self.icmp_type,
            "icmp_code": self.icmp_code,
            "log": self.log,
        }
        if self.tcp_flags is not None:  # absent when every segment matches: older plans read the same
            out["tcp_flags"] = self.tcp_flags.value
        if with_provenance:
            out["provenance"] = self.provenance.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rule:
        return cls(
            action=Action(data["action"]),
            direction=Direction(data["direction"]),
            protocol=parse_protocol(data["protocol"]),
            src=_addresses_of(tuple(data["src"])),
            dst=_addresses_of(tuple(data["dst"])),
            src_ports=parse_ports(data.get("src_ports", "any")),
            dst_ports=parse_ports(data.get("dst_ports", "any")),
            icmp_type=data.get("icmp_type"),
            icmp_code=data.get("icmp_code"),
            log=bool(data.get("log", False)),
            provenance=Provenance.from_dict(data.get("provenance") or {}),
            tcp_flags=TcpFlags(data["tcp_flags"]) if data.get("tcp_flags") else None,
        )


@dataclass(frozen=True, slots=True)
class Ruleset:
    """The rules of one enforcement point, in evaluation order, plus its semantics.

    For ``first_match`` and ``priority`` the tuple order is the evaluation
    order (drivers turn it into sequence numbers or priorities).  For
    ``unordered_allow`` every rule permits and the order is canonical (sorted).
    Packets no rule matches get ``default_action``.
    """

    point: str
    ordering: Ordering
    default_action: Action
    rules: tuple[Rule, ...]
    mode: Mode = Mode.ENFORCE
    stateful: bool = True

    def for_direction(self, direction: Direction) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.direction is direction)

    def to_dict(self, *, with_provenance: bool = True) -> dict[str, Any]:
        return {
            "point": self.point,
            "ordering": self.ordering.value,
            "default_action": self.default_action.value,
            "mode": self.mode.value,
            "stateful": self.stateful,
            "rules": [r.to_dict(with_provenance=with_provenance) for r in self.rules],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Ruleset:
        return cls(
            point=data["point"],
            ordering=Ordering(data["ordering"]),
            default_action=Action(data["default_action"]),
            rules=tuple(Rule.from_dict(r) for r in data["rules"]),
            mode=Mode(data.get("mode", "enforce")),
            stateful=bool(data.get("stateful", True)),
        )

    @classmethod
    def from_stored(cls, data: object) -> Ruleset | None:
        """A ruleset as a store row keeps it, or None when there is none or this release cannot read it (a row an
        older release wrote): the caller says what it does without."""
        if not isinstance(data, Mapping):
            return None
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError):
            return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is on this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
