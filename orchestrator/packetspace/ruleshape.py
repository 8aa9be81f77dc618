"""Exact sets of flows (as disjoint cubes) turned back into few normalized rules.

A rule holds one protocol (or all), port sets, one ICMP type/code, and one
address set per side whose IPv4 and IPv6 parts pair up (v4→v4, v6→v6).  So a
cube becomes one rule per protocol it holds (one rule in all when it holds
every protocol with no port or ICMP limit), one per ICMP type or code block;
rules that share a service are then fused on equal sources or destinations,
and an IPv4 part and an IPv6 part share one rule.

For a protocol without ports the port dimensions are dropped (and the
seventh dimension for a protocol other than ICMP/ICMPv6 and TCP; for TCP only
its flag class counts: a cube holding only class 0 is ``initial``, one holding
no class 0 ``established``, one holding both every segment).  That is exact
because sets built from rules never depend on more than that.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import lru_cache
from itertools import zip_longest
from typing import TypeAlias

from orchestrator.model.rules import (
    ANY_PORTS,
    ICMP_PROTOCOLS,
    PORT_PROTOCOLS,
    TCP,
    Action,
    AddressSet,
    Direction,
    IPNetwork,
    Provenance,
    Rule,
    TcpFlags,
    range_networks,
)
from orchestrator.packetspace import intervals
from orchestrator.packetspace.cubeindex import CubeIndex, meeting_function
from orchestrator.packetspace.cubes import (
    ALL_ICMP,
    ALL_PORTS,
    ALL_PROTOCOLS,
    DST,
    DST_PORT,
    ICMP,
    PROTOCOL,
    SRC,
    SRC_PORT,
    Cube,
    cube_volume,
    cubes_meet,
    family_of,
    is_covered,
    widen,
)
from orchestrator.packetspace.intervals import Intervals

Service: TypeAlias = tuple[int | None, Intervals, Intervals, int | None, int | None, TcpFlags | None]
AddressPair: TypeAlias = tuple[Intervals, Intervals]
_ANY_SERVICE: Service = (None, ANY_PORTS, ANY_PORTS, None, None, None)
# a TCP cube's seventh dimension as rules write it: established, initial (one rule each, never awkward)
_TCP_CLASSES = (((1, 0xFFFF),), ((0, 0),))


def rules_of_cubes(
    cubes: Sequence[Cube], action: Action, direction: Direction, provenance: Provenance
) -> list[Rule]:
    """Rules whose union is exactly the union of ``cubes``, sorted by :meth:`Rule.key`."""
    by_service: dict[Service, dict[int, list[AddressPair]]] = {}
    for cube in covering_cubes(cubes):
        pair = (cube[SRC], cube[DST])
        for service in services(cube):
            by_service.setdefault(service, {}).setdefault(family_of(cube), []).append(pair)
    rules: list[Rule] = []
    for service, by_family in by_service.items():
        protocol, sports, dports, icmp_type, icmp_code, flags = service
        v4_pairs = fuse_address_pairs(by_family.get(4, []))
        v6_pairs = fuse_address_pairs(by_family.get(6, []))
        for v4, v6 in zip_longest(v4_pairs, v6_pairs):
            src = _address_set(v4[0] if v4 else None, v6[0] if v6 else None)
            dst = _address_set(v4[1] if v4 else None, v6[1] if v6 else None)
            rules.append(Rule(action, direction, protocol, src, dst, sports, dports, icmp_type, icmp_code, False,
                              provenance, flags))
    return sorted(rules, key=Rule.key)


def covering_cubes(cubes: Sequence[Cube]) -> list[Cube]:
    """Few, possibly overlapping cubes with the union of the disjoint ``cubes``.

    Disjoint pieces whose protocols or ICMP values would need several rules
    are regrown inside the set (e.g. "ICMP except echo" next to an "echo"
    piece becomes all ICMP again); pieces then covered by others are dropped.
    """
    if len(cubes) <= 1:
        return list(cubes)
    meeting = meeting_function(cubes)
    regrown = {cube: widen(cube, meeting, dims) for cube in cubes if (dims := _awkward_dimensions(cube))}
    grown = [new for old, new in regrown.items() if new != old]
    if not grown:
        return list(cubes)
    current = sorted({regrown.get(cube, cube) for cube in cubes}, key=lambda cube: (-cube_volume(cube), cube))
    index = CubeIndex(current)
    dropped: set[int] = set()
    for position in reversed(range(len(current))):
        cube = current[position]
        if not any(cubes_meet(cube, other) for other in grown if other is not cube):
            continue
        others = [index[other] for other in index.meeting(cube) if other != position and other not in dropped]
        if is_covered(cube, others):
            dropped.add(position)
    return [cube for position, cube in enumerate(current) if position not in dropped]


def _awkward_dimensions(cube: Cube) -> list[int]:
    """The dimensions in which ``cube`` needs more than one rule: several (not all) protocols or ICMP types (a
    TCP cube's seventh dimension is one rule when it is one flag class)."""
    dims: list[int] = []
    icmp = cube[ICMP]
    low, high = icmp[0]
    one_type_or_code = len(icmp) == 1 and (low == high or (low & 0xFF == 0 and high == low | 0xFF))
    one_tcp_class = cube[PROTOCOL] == ((TCP, TCP),) and icmp in _TCP_CLASSES
    if icmp != ALL_ICMP and not one_type_or_code and not one_tcp_class:
        dims.append(ICMP)
    protocols = cube[PROTOCOL]
    if protocols != ALL_PROTOCOLS and (len(protocols) > 1 or protocols[0][0] != protocols[0][1]):
        dims.append(PROTOCOL)
    return dims


def services(cube: Cube) -> Iterator[Service]:
    """(protocol, src ports, dst ports, ICMP type, ICMP code, TCP flags) of the rules needed for ``cube``."""
    protocols, sports, dports, icmp = cube[PROTOCOL], cube[SRC_PORT], cube[DST_PORT], cube[ICMP]
    if protocols == ALL_PROTOCOLS and sports == ALL_PORTS and dports == ALL_PORTS and icmp == ALL_ICMP:
        yield _ANY_SERVICE
        return
    for low, high in protocols:
        for protocol in range(low, high + 1):
            if protocol == TCP:
                yield (protocol, sports, dports, None, None, tcp_flags(icmp))
            elif protocol in PORT_PROTOCOLS:
                yield (protocol, sports, dports, None, None, None)
            elif protocol in ICMP_PROTOCOLS:
                for icmp_type, icmp_code in icmp_type_codes(icmp):
                    yield (protocol, ANY_PORTS, ANY_PORTS, icmp_type, icmp_code, None)
            else:
                yield (protocol, ANY_PORTS, ANY_PORTS, None, None, None)


def tcp_flags(values: Intervals) -> TcpFlags | None:
    """The TCP flags match of a seventh dimension: its classes (0, and 1 or more) are all that counts for TCP."""
    initial = values[0][0] == 0
    established = values[-1][1] > 0
    if initial and established:
        return None
    return TcpFlags.INITIAL if initial else TcpFlags.ESTABLISHED


def icmp_type_codes(icmp: Intervals) -> list[tuple[int | None, int | None]]:
    """The fewest (type, code) matches for an icmp dimension: whole types get code None."""
    if icmp == ALL_ICMP:
        return [(None, None)]
    out: list[tuple[int | None, int | None]] = []
    for low, high in icmp:
        value = low
        while value <= high:
            if value & 0xFF == 0 and value + 0xFF <= high:
                out.append((value >> 8, None))
                value += 0x100
            else:
                out.append((value >> 8, value & 0xFF))
                value += 1
    return out


def fuse_address_pairs(pairs: list[AddressPair]) -> list[AddressPair]:
    """The same union of (sources × destinations) products in fewer pairs, sorted.

    Pairs with equal sources fuse their destinations and vice versa, until neither changes anything.
    """
    current = sorted(set(pairs))
    while len(current) > 1:
        by_src: dict[Intervals, Intervals] = {}
        for src, dst in current:
            by_src[src] = intervals.union(by_src[src], dst) if src in by_src else dst
        by_dst: dict[Intervals, Intervals] = {}
        for src, dst in by_src.items():
            by_dst[dst] = intervals.union(by_dst[dst], src) if dst in by_dst else src
        fused = sorted((src, dst) for dst, src in by_dst.items())
        if len(fused) == len(current):
            return fused
        current = fused
    return current


@lru_cache(maxsize=1 << 12)
def _address_set(v4: Intervals | None, v6: Intervals | None) -> AddressSet:
    networks: list[IPNetwork] = []
    if v4:
        networks.extend(_networks(4, v4))
    if v6:
        networks.extend(_networks(6, v6))
    return AddressSet.of(networks)


@lru_cache(maxsize=1 << 14)
def _networks(family: int, values: Intervals) -> tuple[IPNetwork, ...]:
    """The CIDR prefixes covering exactly ``values`` (integers of ``family``)."""
    return tuple(net for low, high in values for net in range_networks(family, low, high))
