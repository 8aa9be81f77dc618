"""Exact packet-space analysis of rulesets: which rule decides a flow, shadowed rules, permitted sets, equivalence.

Built on :class:`~orchestrator.packetspace.flowset.FlowSet` (exact sets of flows as
disjoint cubes; see :mod:`orchestrator.packetspace.flowset` for why cubes of interval
sets).  The analyses never compare every rule with every other: earlier rules
live in a :class:`~orchestrator.packetspace.cubes.CubeIndex` that returns only the ones
that can meet the rule at hand, and coverage questions stop at the first
uncovered piece.  Equivalence needs no complement: with the same default
action, two rulesets agree iff the flows each one decides *against* its
default are the same, and those are, per rule, its match minus the earlier
rules of the other action (overlaps between same-action rules are harmless).

All functions ignore rule direction; callers filter by direction first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.model.rules import (
    ANY_ADDRESS,
    ANY_PORTS,
    ICMP_PROTOCOLS,
    PORT_PROTOCOLS,
    Action,
    Direction,
    Ordering,
    Rule,
    Ruleset,
    TcpFlags,
)
from orchestrator.packetspace.cubeindex import CubeIndex
from orchestrator.packetspace.cubes import Cube, is_covered, subtract_all
from orchestrator.packetspace.flowset import (
    Flow,
    FlowSet,
    address_intervals,
    corner_flow,
    first_uncovered,
    rule_cubes,
)
from orchestrator.packetspace.intervals import contains

__all__ = [
    "Flow",
    "FlowSet",
    "Shadowing",
    "decide",
    "difference_witness",
    "effective_regions",
    "equivalent",
    "first_match",
    "permitted",
    "rule_matches",
    "ruleset_difference_witness",
    "ruleset_equivalent",
    "shadowed_rules",
]


def rule_matches(rule: Rule, flow: Flow) -> bool:
    """Whether ``rule``'s match fields hold ``flow`` (action and direction play no part)."""
    protocol = rule.protocol
    if protocol is not None:
        if protocol != flow.protocol:
            return False
        if protocol in PORT_PROTOCOLS:
            if rule.dst_ports is not ANY_PORTS and not _in_ports(rule.dst_ports, flow.dst_port):
                return False
            if rule.src_ports is not ANY_PORTS and not _in_ports(rule.src_ports, flow.src_port):
                return False
            if rule.tcp_flags is not None and (rule.tcp_flags is TcpFlags.ESTABLISHED) != (flow.icmp != 0):
                return False
        elif protocol in ICMP_PROTOCOLS and rule.icmp_type is not None:
            if flow.icmp >> 8 != rule.icmp_type:
                return False
            if rule.icmp_code is not None and flow.icmp & 0xFF != rule.icmp_code:
                return False
    sources = address_intervals(rule.src).get(flow.family)
    if sources is None or not contains(sources, flow.src):
        return False
    destinations = address_intervals(rule.dst).get(flow.family)
    return destinations is not None and contains(destinations, flow.dst)


def _in_ports(ports: tuple[tuple[int, int], ...], port: int) -> bool:
    return any(low <= port <= high for low, high in ports)


def first_match(rules: Sequence[Rule], flow: Flow) -> int | None:
    """The index of the first rule matching ``flow`` (the one that decides it), or None."""
    return next((index for index, rule in enumerate(rules) if rule_matches(rule, flow)), None)


def decide(rules: Sequence[Rule], default: Action, flow: Flow) -> tuple[Action, int | None]:
    """What first-match evaluation does with ``flow``, and the index of the deciding rule (None: default)."""
    index = first_match(rules, flow)
    return (default, None) if index is None else (rules[index].action, index)


def effective_regions(rules: Sequence[Rule]) -> list[FlowSet]:
    """Per rule, the flows it decides under first-match: its match minus every earlier rule's."""
    earlier = CubeIndex()
    regions: list[FlowSet] = []
    for rule in rules:
        cubes = rule_cubes(rule)
        regions.append(FlowSet(piece for cube in cubes for piece in subtract_all(cube, earlier.meeting_cubes(cube))))
        for cube in cubes:
            earlier.add(cube)
    return regions


def permitted(rules: Sequence[Rule], default: Action, ordering: Ordering = Ordering.FIRST_MATCH) -> FlowSet:
    """The flows the rules let through.  ``unordered_allow``: the union of permit rules (default: deny)."""
    rules, default = _as_first_match(rules, default, ordering)
    against_default = FlowSet.from_cubes(_against_default(rules, _opposite(default)))
    if default is Action.DENY:
        return against_default
    return FlowSet.universe().difference(against_default)


@dataclass(frozen=True, slots=True)
class Shadowing:
    """Rule ``index`` never decides a flow: earlier rules match all it matches.

    ``covered_by`` lists the earlier rules that overlap it; ``conflicting`` is
    true when one of them has another action (the later rule's intent is
    contradicted, not merely redundant).  A rule that matches nothing (e.g.
    IPv4 sources with IPv6 destinations) is reported with no ``covered_by``.
    """

    index: int
    covered_by: tuple[int, ...]
    conflicting: bool


def shadowed_rules(rules: Sequence[Rule]) -> list[Shadowing]:
    """The rules that can never decide a flow under first-match, in order."""
    earlier = CubeIndex()
    owner: list[int] = []
    found: list[Shadowing] = []
    for index, rule in enumerate(rules):
        cubes = rule_cubes(rule)
        overlapping: set[int] = set()
        covered = True
        for cube in cubes:
            positions = earlier.meeting(cube)
            overlapping.update(owner[position] for position in positions)
            covered = covered and is_covered(cube, [earlier[position] for position in positions])
        if covered:
            covered_by = tuple(sorted(overlapping))
            conflicting = any(rules[other].action is not rule.action for other in covered_by)
            found.append(Shadowing(index, covered_by, conflicting))
        for cube in cubes:
            earlier.add(cube)
            owner.append(index)
    return found


def overlapping_rules(rules: Sequence[Rule], sources: Sequence[Rule]) -> list[list[int]]:
    """Per rule of ``rules``, the positions (ascending) of the ``sources`` rules whose flows it shares any of."""
    index = CubeIndex()
    owner: list[int] = []
    for position, source in enumerate(sources):
        for cube in rule_cubes(source):
            index.add(cube)
            owner.append(position)
    return [sorted({owner[hit] for cube in rule_cubes(rule) for hit in index.meeting(cube)}) for rule in rules]


def overlapped_by_later(rules: Sequence[Rule], action: Action) -> list[bool]:
    """Per rule, whether a later rule whose action is not ``action`` shares a flow with it.

    One backward pass over an append-only index of the later rules of the other action: no union of
    flow sets is ever built, so the cost grows with the rules' overlaps, not with their count squared.
    """
    later_other = CubeIndex()
    found = [False] * len(rules)
    for position in range(len(rules) - 1, -1, -1):
        rule = rules[position]
        cubes = rule_cubes(rule)
        if rule.action is action:
            found[position] = any(later_other.meeting(cube) for cube in cubes)
        else:
            for cube in cubes:
                later_other.add(cube)
    return found


def equivalent(
    a: Sequence[Rule], a_default: Action, b: Sequence[Rule], b_default: Action,
    ordering_a: Ordering = Ordering.FIRST_MATCH, ordering_b: Ordering = Ordering.FIRST_MATCH,
) -> bool:
    """Whether the two rule lists decide every flow the same way."""
    return difference_witness(a, a_default, b, b_default, ordering_a, ordering_b) is None


def difference_witness(
    a: Sequence[Rule], a_default: Action, b: Sequence[Rule], b_default: Action,
    ordering_a: Ordering = Ordering.FIRST_MATCH, ordering_b: Ordering = Ordering.FIRST_MATCH,
) -> Flow | None:
    """A flow the two rule lists decide differently, or None if they are equivalent."""
    a, a_default = _as_first_match(a, a_default, ordering_a)
    b, b_default = _as_first_match(b, b_default, ordering_b)
    a, b, default = _with_same_default(a, a_default, b, b_default)
    against = _opposite(default)
    a_cubes = _against_default(a, against)
    b_cubes = _against_default(b, against)
    a_only, b_only = _not_shared(a_cubes, b_cubes)
    piece = first_uncovered(a_only, b_cubes) or first_uncovered(b_only, a_cubes)
    return None if piece is None else corner_flow(piece)


def _not_shared(a: list[Cube], b: list[Cube]) -> tuple[list[Cube], list[Cube]]:
    """The cubes of each list that the other does not hold verbatim (usually few: they need checking)."""
    a_set, b_set = set(a), set(b)
    return [cube for cube in a if cube not in b_set], [cube for cube in b if cube not in a_set]


def _against_default(rules: Sequence[Rule], action: Action) -> list[Cube]:
    """Cubes (overlapping allowed) whose union is the flows decided with ``action``: each such rule's
    match minus the earlier rules of the other action."""
    others = CubeIndex()
    out: list[Cube] = []
    for rule in rules:
        cubes = rule_cubes(rule)
        if rule.action is action:
            out.extend(piece for cube in cubes for piece in subtract_all(cube, others.meeting_cubes(cube)))
        else:
            for cube in cubes:
                others.add(cube)
    return out


def _with_same_default(
    a: Sequence[Rule], a_default: Action, b: Sequence[Rule], b_default: Action
) -> tuple[Sequence[Rule], Sequence[Rule], Action]:
    """Both lists with one shared default: one side gets a final catch-all rule carrying its own default.

    The catch-all goes to the side with fewer rules against its default: only those are subtracted from it.
    """
    if a_default is b_default:
        return a, b, a_default
    if _count_against(a, a_default) <= _count_against(b, b_default):
        return (*a, _catch_all(a_default)), b, b_default
    return a, (*b, _catch_all(b_default)), a_default


def _count_against(rules: Sequence[Rule], default: Action) -> int:
    return sum(rule.action is not default for rule in rules)


def _catch_all(action: Action) -> Rule:
    return Rule(action, Direction.INGRESS, None, ANY_ADDRESS, ANY_ADDRESS)


def _opposite(action: Action) -> Action:
    return Action.DENY if action is Action.PERMIT else Action.PERMIT


def _as_first_match(rules: Sequence[Rule], default: Action, ordering: Ordering) -> tuple[Sequence[Rule], Action]:
    """Rules and default of an equivalent first-match list (priority lists are already in evaluation order)."""
    if ordering is Ordering.UNORDERED_ALLOW:
        return [rule for rule in rules if rule.action is Action.PERMIT], Action.DENY
    return rules, default


def ruleset_difference_witness(a: Ruleset, b: Ruleset) -> tuple[Direction, Flow] | None:
    """A direction and flow the two rulesets decide differently, or None if they are equivalent."""
    for direction in Direction:
        flow = difference_witness(
            a.for_direction(direction), a.default_action, b.for_direction(direction), b.default_action,
            a.ordering, b.ordering,
        )
        if flow is not None:
            return direction, flow
    return None


def ruleset_equivalent(a: Ruleset, b: Ruleset) -> bool:
    """Whether the rulesets decide every flow the same way in both directions, each under its own ordering."""
    return ruleset_difference_witness(a, b) is None
