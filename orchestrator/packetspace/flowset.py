"""Exact sets of flows (packets) and their conversion from and to normalized rules.

A :class:`FlowSet` is a sorted tuple of pairwise-disjoint cubes (see
:mod:`orchestrator.packetspace.cubes`).  Per dimension a cube holds a *set* of intervals
rather than one interval, so the usual results of policy work stay one cube:
a /24 minus ten /32s, "tcp except 22", "any protocol except tcp" never
fragment.  Disjointness makes emptiness, sampling and counting trivial and
lets subset tests stop at the first uncovered piece; results are re-fused
(:func:`orchestrator.packetspace.cubes.merge_cubes`) so cube counts stay small.

The seventh dimension holds an ICMP/ICMPv6 packet's type*256+code and a TCP
segment's flag class: 0 when neither ACK nor RST is set (a connection's
opening SYN), 1 and above when either is (:class:`~orchestrator.model.rules.TcpFlags`:
``established`` is 1-65535, ``initial`` is 0).

Sets are only ever built from rules and closed under union, intersection and
difference, so for protocols that carry no ports (or no ICMP type or TCP
flags) membership never depends on the port (or seventh) dimensions, and for
TCP it depends on the seventh only through its class (0 or not): equality in
the full seven-dimensional space is exactly equality of rule semantics.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from orchestrator.model.rules import (
    ANY_PORTS,
    ICMP_PROTOCOLS,
    MAX_PORT,
    PORT_PROTOCOLS,
    TCP,
    Action,
    AddressSet,
    Direction,
    PortSet,
    Provenance,
    Rule,
    TcpFlags,
    protocol_name,
)
from orchestrator.packetspace import intervals
from orchestrator.packetspace.cubeindex import CubeIndex, meeting_function
from orchestrator.packetspace.cubes import (
    ADDRESS_BITS,
    ALL_ADDRESSES,
    ALL_ICMP,
    ALL_PORTS,
    ALL_PROTOCOLS,
    FAMILY_DIMENSION,
    Cube,
    cube_contains,
    cube_intersection,
    cube_volume,
    merge_cubes,
    subtract_all,
)
from orchestrator.packetspace.intervals import Intervals
from orchestrator.packetspace.ruleshape import rules_of_cubes

ECHO_REQUEST = {1: 8 << 8, 58: 128 << 8}  # ICMP and ICMPv6 echo request, as type*256+code
# the seventh dimension of a TCP segment (see the module docstring)
TCP_FLAG_CLASSES: Mapping[TcpFlags, Intervals] = {TcpFlags.ESTABLISHED: ((1, 0xFFFF),), TcpFlags.INITIAL: ((0, 0),)}
_FUSE_FROM = 16  # cubes to check
_FUSE_COVER_FROM = 100_000  # cubes to check × cubes of the cover


@dataclass(frozen=True, slots=True)
class Flow:
    """One concrete packet: a point of the flow space (``icmp`` is type*256+code for ICMP; for TCP 0 is a
    segment without ACK or RST — a connection's first packet, what a flow record stands for — and 1 one with)."""

    family: int
    protocol: int
    src: int
    dst: int
    src_port: int = 0
    dst_port: int = 0
    icmp: int = 0

    @classmethod
    def of(
        cls, src: str, dst: str, protocol: int, dst_port: int = 0, src_port: int = 0,
        icmp_type: int | None = None, icmp_code: int | None = None, *, established: bool = False,
    ) -> Flow:
        """A flow from readable parts (``established``: a TCP segment with ACK or RST set).  Raises ValueError on
        mixed families or out-of-range values."""
        source, destination = ipaddress.ip_address(src), ipaddress.ip_address(dst)
        if source.version != destination.version:
            raise ValueError(f"{src} and {dst} are of different address families")
        if icmp_code is not None and icmp_type is None:
            raise ValueError("an ICMP code needs an ICMP type")
        for name, value in (("ICMP type", icmp_type), ("ICMP code", icmp_code)):
            if value is not None and not 0 <= value <= 255:
                raise ValueError(f"{name} {value} is outside 0-255")
        if established and protocol != TCP:
            raise ValueError(f"only a TCP segment can be established, not {protocol_name(protocol)}")
        icmp = 1 if established else ((icmp_type or 0) << 8) | (icmp_code or 0)
        return cls(source.version, protocol, int(source), int(destination), src_port, dst_port, icmp)

    @classmethod
    def logged(cls, src: str, dst: str, protocol: int, src_port: int = 0, dst_port: int = 0) -> Flow:
        """The packet a flow record stands for: the first of its connection, ports only where the protocol has
        them, and — flow logs carry no ICMP type — an ICMP flow taken as a ping (echo request)."""
        source, destination = ipaddress.ip_address(src), ipaddress.ip_address(dst)
        ported = protocol in PORT_PROTOCOLS
        return cls(source.version, protocol, int(source), int(destination), src_port if ported else 0,
                   dst_port if ported else 0, ECHO_REQUEST.get(protocol, 0))

    def __post_init__(self) -> None:
        if self.family not in ADDRESS_BITS:
            raise ValueError(f"address family {self.family} is neither 4 nor 6")
        top = (1 << ADDRESS_BITS[self.family]) - 1
        if not (0 <= self.src <= top and 0 <= self.dst <= top and 0 <= self.protocol <= 255):
            raise ValueError("address or protocol out of range")
        if not (0 <= self.src_port <= MAX_PORT and 0 <= self.dst_port <= MAX_PORT and 0 <= self.icmp <= 0xFFFF):
            raise ValueError("port or ICMP value out of range")

    @property
    def point(self) -> tuple[int, ...]:
        """The coordinates in dimension order (family, protocol, src, dst, src_port, dst_port, icmp)."""
        return (self.family, self.protocol, self.src, self.dst, self.src_port, self.dst_port, self.icmp)

    def describe(self, *, any_src_port: bool = False, any_dst_port: bool = False) -> str:
        """One format everywhere: ``10.0.0.1:40000 → 10.0.0.2:443/tcp``, ``[fd00::1]:any → [fd00::2]:443/tcp``
        (``any_*_port``: the port stands for every port), ``fd00::1 → fd00::2 icmpv6 type 128 code 0``."""
        address = ipaddress.IPv4Address if self.family == 4 else ipaddress.IPv6Address
        src, dst = str(address(self.src)), str(address(self.dst))
        name = protocol_name(self.protocol)
        if self.protocol in PORT_PROTOCOLS:
            if self.family == 6:
                src, dst = f"[{src}]", f"[{dst}]"
            sport = "any" if any_src_port else str(self.src_port)
            dport = "any" if any_dst_port else str(self.dst_port)
            flags = " established" if self.protocol == TCP and self.icmp else ""
            return f"{src}:{sport} → {dst}:{dport}/{name}{flags}"
        if self.protocol in ICMP_PROTOCOLS:
            return f"{src} → {dst} {name} type {self.icmp >> 8} code {self.icmp & 0xFF}"
        return f"{src} → {dst} {'proto ' + name if name.isdigit() else name}"


@lru_cache(maxsize=1 << 14)
def address_intervals(addresses: AddressSet) -> Mapping[int, Intervals]:
    """Per family, the address set as integer intervals (families without networks are absent).  Cached."""
    by_family: dict[int, list[tuple[int, int]]] = {}
    for network in addresses.networks:
        low = int(network.network_address)
        high = low | ((1 << (network.max_prefixlen - network.prefixlen)) - 1)
        spans = by_family.setdefault(network.version, [])
        if spans and spans[-1][1] + 1 >= low:  # adjacent, or a hand-made set out of canonical order
            spans.append((low, high))
            by_family[network.version] = list(intervals.normalize(spans))
        else:
            spans.append((low, high))
    return {family: tuple(spans) for family, spans in by_family.items()}


def holds(addresses: AddressSet, family: int, value: int) -> bool:
    """Whether ``addresses`` holds the address ``value`` of ``family`` (cached intervals, a binary search)."""
    spans = address_intervals(addresses).get(family)
    return spans is not None and intervals.contains(spans, value)


def icmp_intervals(icmp_type: int | None, icmp_code: int | None) -> Intervals:
    """The icmp dimension (type*256+code) of a rule's ICMP type/code."""
    if icmp_type is None:
        return ALL_ICMP
    if icmp_code is None:
        return ((icmp_type << 8, (icmp_type << 8) | 0xFF),)
    value = (icmp_type << 8) | icmp_code
    return ((value, value),)


def match_cubes(
    protocol: int | None, src: AddressSet, dst: AddressSet, src_ports: PortSet = ANY_PORTS,
    dst_ports: PortSet = ANY_PORTS, *, icmp_type: int | None = None, icmp_code: int | None = None,
    tcp_flags: TcpFlags | None = None,
) -> list[Cube]:
    """The disjoint cubes (at most one per family) of a rule's match fields."""
    protocols = ALL_PROTOCOLS if protocol is None else ((protocol, protocol),)
    sports = src_ports if src_ports is ANY_PORTS else _port_intervals(src_ports)
    dports = dst_ports if dst_ports is ANY_PORTS else _port_intervals(dst_ports)
    icmp = icmp_intervals(icmp_type, icmp_code) if tcp_flags is None else TCP_FLAG_CLASSES[tcp_flags]
    if not (sports and dports):
        return []
    sources, destinations = address_intervals(src), address_intervals(dst)
    return [
        (FAMILY_DIMENSION[family], protocols, sources[family], destinations[family], sports, dports, icmp)
        for family in (4, 6)
        if family in sources and family in destinations
    ]


def _port_intervals(ports: PortSet) -> Intervals:
    if len(ports) == 1 and ports[0][0] <= ports[0][1]:
        return ports
    return intervals.normalize(ports)


def rule_cubes(rule: Rule) -> list[Cube]:
    """The cubes of the flows ``rule`` matches (action, direction, log and provenance play no part)."""
    return match_cubes(
        rule.protocol, rule.src, rule.dst, rule.src_ports, rule.dst_ports,
        icmp_type=rule.icmp_type, icmp_code=rule.icmp_code, tcp_flags=rule.tcp_flags,
    )


def disjoint_union(cubes: Iterable[Cube]) -> list[Cube]:
    """The union of possibly overlapping cubes as disjoint cubes (earlier cubes are kept whole)."""
    index = CubeIndex()
    for cube in cubes:
        for piece in subtract_all(cube, index.meeting_cubes(cube)):
            index.add(piece)
    return [index[position] for position in range(len(index))]


class FlowSet:
    """An immutable, exact set of flows; ``==`` compares the flows, not the representation."""

    __slots__ = ("_cubes",)

    def __init__(self, disjoint_cubes: Iterable[Cube] = ()) -> None:
        """Internal: ``disjoint_cubes`` must be pairwise disjoint.  Use the class methods."""
        self._cubes: tuple[Cube, ...] = tuple(sorted(merge_cubes(disjoint_cubes)))

    @classmethod
    def empty(cls) -> FlowSet:
        return cls()

    @classmethod
    def universe(cls) -> FlowSet:
        return cls(
            (FAMILY_DIMENSION[f], ALL_PROTOCOLS, ALL_ADDRESSES[f], ALL_ADDRESSES[f], ALL_PORTS, ALL_PORTS, ALL_ICMP)
            for f in (4, 6)
        )

    @classmethod
    def from_match(
        cls, protocol: int | None, src: AddressSet, dst: AddressSet, src_ports: PortSet = ANY_PORTS,
        dst_ports: PortSet = ANY_PORTS, icmp_type: int | None = None, icmp_code: int | None = None,
        tcp_flags: TcpFlags | None = None,
    ) -> FlowSet:
        """The flows a rule with these match fields matches.  Raises ValueError where a Rule would."""
        return cls.from_rule(Rule(Action.PERMIT, Direction.INGRESS, protocol, src, dst, src_ports, dst_ports,
                                  icmp_type, icmp_code, tcp_flags=tcp_flags))

    @classmethod
    def from_cubes(cls, cubes: Iterable[Cube]) -> FlowSet:
        """The union of possibly overlapping cubes.  Broad cubes are kept whole, narrower ones carved."""
        return cls(disjoint_union(sorted(merge_cubes(cubes), key=cube_volume, reverse=True)))

    @classmethod
    def from_rule(cls, rule: Rule) -> FlowSet:
        return cls(rule_cubes(rule))

    @classmethod
    def from_rules(cls, rules: Iterable[Rule]) -> FlowSet:
        """The flows any of ``rules`` matches."""
        return cls.from_cubes(cube for rule in rules for cube in rule_cubes(rule))

    @property
    def cubes(self) -> tuple[Cube, ...]:
        """The disjoint cubes (sorted), for the analyses built on this module."""
        return self._cubes

    @property
    def cube_count(self) -> int:
        return len(self._cubes)

    def __len__(self) -> int:
        """The number of cubes (a size diagnostic, not the number of flows)."""
        return len(self._cubes)

    def __repr__(self) -> str:
        return f"FlowSet(<{len(self._cubes)} cubes>)"

    def is_empty(self) -> bool:
        return not self._cubes

    def __contains__(self, flow: object) -> bool:
        if not isinstance(flow, Flow):
            return False
        point = flow.point
        return any(
            all(intervals.contains(values, value) for values, value in zip(cube, point, strict=True))
            for cube in self._cubes
        )

    def union(self, other: FlowSet) -> FlowSet:
        return FlowSet((*self._cubes, *_minus(other._cubes, self._cubes)))

    def intersection(self, other: FlowSet) -> FlowSet:
        small, large = sorted((self._cubes, other._cubes), key=len)
        meeting = meeting_function(large)
        found = (cube_intersection(cube, other_cube) for cube in small for other_cube in meeting(cube))
        return FlowSet(cube for cube in found if cube is not None)

    def overlaps(self, other: FlowSet) -> bool:
        """Whether the sets share a flow (``not intersection(other).is_empty()``, without building it)."""
        small, large = sorted((self._cubes, other._cubes), key=len)
        meeting = meeting_function(large)
        return any(meeting(cube) for cube in small)

    def difference(self, other: FlowSet) -> FlowSet:
        return FlowSet(_minus(self._cubes, other._cubes))

    def is_subset(self, other: FlowSet) -> bool:
        return first_uncovered(self._cubes, other._cubes) is None

    def equivalent(self, other: FlowSet) -> bool:
        return self.is_subset(other) and other.is_subset(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FlowSet):
            return NotImplemented
        return self._cubes == other._cubes or self.equivalent(other)

    __hash__ = None  # type: ignore[assignment]  # mutable-free but compared semantically

    def sample(self) -> Flow | None:
        """The lowest corner of the first cube: a deterministic member, or None if empty."""
        return corner_flow(self._cubes[0]) if self._cubes else None

    def to_rules(
        self, action: Action, direction: Direction, provenance: Provenance = Provenance()  # noqa: B008
    ) -> list[Rule]:
        """Normalized rules whose union is exactly this set, sorted by :meth:`Rule.key`."""
        return rules_of_cubes(self._cubes, action, direction, provenance)


def corner_flow(cube: Cube) -> Flow:
    """The flow at the lowest value of every dimension of ``cube``."""
    return Flow(*(values[0][0] for values in cube))


def _minus(cubes: Iterable[Cube], removed: Sequence[Cube]) -> list[Cube]:
    meeting = meeting_function(removed)
    return [piece for cube in cubes for piece in subtract_all(cube, meeting(cube))]


def first_uncovered(cubes: Sequence[Cube], cover: Sequence[Cube]) -> Cube | None:
    """A piece of ``cubes`` outside the union of ``cover``, or None if they are all covered.

    Many cubes (say one rule per protocol) are first fused into fewer; so is a large cover
    when there are many cubes to check against it.
    """
    if len(cubes) > _FUSE_FROM:
        cubes = merge_cubes(cubes)
        if len(cubes) * len(cover) > _FUSE_COVER_FROM:
            cover = merge_cubes(cover)
    meeting = meeting_function(cover)
    for cube in cubes:
        candidates = meeting(cube)
        if any(cube_contains(other, cube) for other in candidates):
            continue
        pieces = subtract_all(cube, candidates, first_only=True)
        if pieces:
            return pieces[0]
    return None
