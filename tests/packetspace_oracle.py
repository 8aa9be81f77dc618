"""A brute-force packet-space oracle for the tests: a small explicit universe of flows, rules evaluated from
their fields alone (independently of orchestrator.packetspace.packetspace), sets as bit masks over the universe."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import cache

from orchestrator.model.rules import Action, AddressSet, Ordering, Rule, TcpFlags
from orchestrator.packetspace.flowset import Flow

# --- the brute-force oracle: an explicit finite universe, evaluated from rule fields only ----------------------
# Every set built from the generated rules is a union of cells of this grid, and the grid holds a flow of every
# cell: all v4 addresses of 10.0.0.0/29 plus one outside it, likewise ::a00:0/126 (the *same integers* as
# 10.0.0.0-3, so any confusion of the families shows); the rules' protocols plus two
# others; the port and ICMP type/code values rules use plus one more in each gap; TCP segments without ACK/RST and
# with.  Port and ICMP values also vary for protocols that do not carry them.

V4 = [int(ipaddress.IPv4Address("10.0.0.0")) + i for i in range(9)]
V6 = [int(ipaddress.IPv6Address("::a00:0")) + i for i in range(5)]
assert V6[:4] == V4[:4]
RULE_SRC_PORTS, RULE_DST_PORTS = [0, 1, 2, 65535], [*range(8), 65534, 65535]  # rules' port range ends
RULE_ICMP_TYPES, RULE_ICMP_CODES = [0, 1, 2, 255], [0, 1, 255]
SRC_PORTS, DST_PORTS = [0, 1, 2, 3, 65535], [*range(9), 65534, 65535]
ICMP_VALUES = [t * 256 + c for t in (*RULE_ICMP_TYPES, 3) for c in (*RULE_ICMP_CODES, 2)]


TCP_FLAG_VALUES = [0, 1, 513]  # a TCP segment without ACK/RST (0), and two with (any value from 1 up)


def _service_points(protocol: int) -> list[tuple[int, int, int]]:
    if protocol == 6:
        return [(sp, dp, flags) for sp in SRC_PORTS for dp in DST_PORTS for flags in TCP_FLAG_VALUES]
    if protocol == 17:
        return [(sp, dp, 0) for sp in SRC_PORTS for dp in DST_PORTS]
    if protocol in (1, 58):
        return [(0, dp, icmp) for icmp in ICMP_VALUES for dp in (0, 5)]
    return [(0, dp, icmp) for dp in (0, 5) for icmp in (0, 513)]


UNIVERSE = [
    Flow(family, protocol, src, dst, sp, dp, icmp)
    for family, values in ((4, V4), (6, V6))
    for src in values
    for dst in values
    for protocol in (0, 1, 6, 17, 47, 58, 99)
    for sp, dp, icmp in _service_points(protocol)
]
FULL = (1 << len(UNIVERSE)) - 1


@cache
def _value_mask(dimension: str, value: tuple[int, ...] | int) -> int:
    """Flows of the universe whose ``dimension`` has ``value`` (addresses: (family, address))."""
    def pick(flow: Flow) -> tuple[int, ...] | int:
        if dimension in ("src", "dst"):
            return (flow.family, getattr(flow, dimension))
        return int(getattr(flow, dimension))
    return sum(1 << i for i, flow in enumerate(UNIVERSE) if pick(flow) == value)


def _any_of(dimension: str, values: Iterable[tuple[int, ...] | int]) -> int:
    mask = 0
    for value in values:
        mask |= _value_mask(dimension, value)
    return mask


def _address_holds(addresses: AddressSet, family: int, value: int) -> bool:
    address = ipaddress.IPv4Address(value) if family == 4 else ipaddress.IPv6Address(value)
    return any(net.version == family and address in net for net in addresses.networks)


def oracle_rule_mask(rule: Rule) -> int:
    """The universe flows ``rule`` matches, computed from its fields alone."""
    mask = 0
    for family, values in ((4, V4), (6, V6)):
        srcs = _any_of("src", ((family, v) for v in values if _address_holds(rule.src, family, v)))
        dsts = _any_of("dst", ((family, v) for v in values if _address_holds(rule.dst, family, v)))
        mask |= srcs & dsts
    if rule.protocol is not None:
        mask &= _value_mask("protocol", rule.protocol)
    if rule.protocol in (6, 17, 132):
        mask &= _any_of("src_port", (p for p in SRC_PORTS if any(lo <= p <= hi for lo, hi in rule.src_ports)))
        mask &= _any_of("dst_port", (p for p in DST_PORTS if any(lo <= p <= hi for lo, hi in rule.dst_ports)))
    if rule.protocol in (1, 58) and rule.icmp_type is not None:
        wanted = [v for v in ICMP_VALUES if v >> 8 == rule.icmp_type and rule.icmp_code in (None, v & 0xFF)]
        mask &= _any_of("icmp", wanted)
    if rule.tcp_flags is not None:
        established = rule.tcp_flags is TcpFlags.ESTABLISHED
        mask &= _any_of("icmp", (v for v in TCP_FLAG_VALUES if (v != 0) == established))
    return mask


def oracle_matches(rule: Rule, flow: Flow) -> bool:
    """Whether ``rule`` matches ``flow``, from its fields alone (any flow, not only universe ones)."""
    if not (_address_holds(rule.src, flow.family, flow.src) and _address_holds(rule.dst, flow.family, flow.dst)):
        return False
    if rule.protocol is None:
        return True
    if rule.protocol != flow.protocol:
        return False
    if rule.protocol in (6, 17, 132):
        if rule.tcp_flags is not None and (flow.icmp != 0) != (rule.tcp_flags is TcpFlags.ESTABLISHED):
            return False
        return any(lo <= flow.src_port <= hi for lo, hi in rule.src_ports) and any(
            lo <= flow.dst_port <= hi for lo, hi in rule.dst_ports)
    if rule.protocol in (1, 58) and rule.icmp_type is not None:
        return flow.icmp >> 8 == rule.icmp_type and rule.icmp_code in (None, flow.icmp & 0xFF)
    return True


def oracle_decisions(rules: Sequence[Rule], default: Action, ordering: Ordering) -> int:
    """The universe flows permitted, by first-match over rule masks (unordered: union of permits)."""
    masks = [oracle_rule_mask(rule) for rule in rules]
    if ordering is Ordering.UNORDERED_ALLOW:
        return union_of(m for m, r in zip(masks, rules, strict=True) if r.action is Action.PERMIT)
    allowed, seen = 0, 0
    for mask, rule in zip(masks, rules, strict=True):
        if rule.action is Action.PERMIT:
            allowed |= mask & ~seen
        seen |= mask
    return allowed | (FULL & ~seen if default is Action.PERMIT else 0)


def oracle_permits(rules: Sequence[Rule], default: Action, ordering: Ordering, flow: Flow) -> bool:
    if ordering is Ordering.UNORDERED_ALLOW:
        return any(r.action is Action.PERMIT and oracle_matches(r, flow) for r in rules)
    deciding = next((r for r in rules if oracle_matches(r, flow)), None)
    return (deciding.action if deciding else default) is Action.PERMIT


def union_of(masks: Iterable[int]) -> int:
    out = 0
    for mask in masks:
        out |= mask
    return out
