"""Exact sets of flows (as disjoint cubes) turned back into few normalized rules.

A rule holds one protocol (or all), port sets, one ICMP type/code, and one
address set per side whose IPv4 and IPv6 parts pair up (v4→v4, v6→v6).  So a
cube becomes one rule per protocol it holds (one rule in all when it holds
every protocol with no port or ICMP limit), one per ICMP type or code block;
rules that share a service are then fused on equal sources or destinations,
and an IPv4 part and an IPv6 part share one rule.

For a protocol without ports the port dimensions are dropped (and the ICMP
dimension for a protocol other than ICMP/ICMPv6).  That is exact because sets
built from rules never depend on those dimensions for such protocols.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from functools import lru_cache
from itertools import zip_longest
from typing import TypeAlias

from orchestrator import intervals
from orchestrator.cubes import (
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
    family_of,
)
from orchestrator.intervals import Intervals
from orchestrator.rules import (
    ANY_PORTS,
    ICMP_PROTOCOLS,
    PORT_PROTOCOLS,
    Action,
    AddressSet,
    Direction,
    IPNetwork,
    Provenance,
    Rule,
)

Service: TypeAlias = tuple[int | None, Intervals, Intervals, int | None, int | None]
AddressPair: TypeAlias = tuple[Intervals, Intervals]
_ANY_SERVICE: Service = (None, ANY_PORTS, ANY_PORTS, None, None)


def rules_of_cubes(
    cubes: Sequence[Cube], action: Action, direction: Direction, provenance: Provenance
) -> list[Rule]:
    """Rules whose union is exactly the union of ``cubes``, sorted by :meth:`Rule.key`."""
    by_service: dict[Service, dict[int, list[AddressPair]]] = {}
    for cube in cubes:
        pair = (cube[SRC], cube[DST])
        for service in services(cube):
            by_service.setdefault(service, {}).setdefault(family_of(cube), []).append(pair)
    rules: list[Rule] = []
    for service, by_family in by_service.items():
        protocol, sports, dports, icmp_type, icmp_code = service
        v4_pairs = fuse_address_pairs(by_family.get(4, []))
        v6_pairs = fuse_address_pairs(by_family.get(6, []))
        for v4, v6 in zip_longest(v4_pairs, v6_pairs):
            src = _address_set(v4[0] if v4 else None, v6[0] if v6 else None)
            dst = _address_set(v4[1] if v4 else None, v6[1] if v6 else None)
            rules.append(
                Rule(action, direction, protocol, src, dst, sports, dports, icmp_type, icmp_code, False, provenance)
            )
    return sorted(rules, key=Rule.key)


def services(cube: Cube) -> Iterator[Service]:
    """(protocol, src ports, dst ports, ICMP type, ICMP code) of the rules needed for ``cube``."""
    protocols, sports, dports, icmp = cube[PROTOCOL], cube[SRC_PORT], cube[DST_PORT], cube[ICMP]
    if protocols == ALL_PROTOCOLS and sports == ALL_PORTS and dports == ALL_PORTS and icmp == ALL_ICMP:
        yield _ANY_SERVICE
        return
    for low, high in protocols:
        for protocol in range(low, high + 1):
            if protocol in PORT_PROTOCOLS:
                yield (protocol, sports, dports, None, None)
            elif protocol in ICMP_PROTOCOLS:
                for icmp_type, icmp_code in icmp_type_codes(icmp):
                    yield (protocol, ANY_PORTS, ANY_PORTS, icmp_type, icmp_code)
            else:
                yield (protocol, ANY_PORTS, ANY_PORTS, None, None)


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
    address = ipaddress.IPv4Address if family == 4 else ipaddress.IPv6Address
    out: list[IPNetwork] = []
    for low, high in values:
        out.extend(ipaddress.summarize_address_range(address(low), address(high)))
    return tuple(out)
