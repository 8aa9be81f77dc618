"""Flow questions on a compiled policy: is this traffic allowed, and which rule of which point decides?

Answers are exact: the queried traffic (addresses × service) is a flow set,
partitioned by the rule that decides each part, at the policy level and at
every enforcement point whose protected scope the traffic enters or leaves.
End to end, traffic passes when every point on its way permits it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from orchestrator.compiler.compiler import Compilation, PreparedRule
from orchestrator.compiler.resolve import ServiceMatch, resolve_services
from orchestrator.model.errors import PolicyError
from orchestrator.model.policy import ANY_GROUP, Policy
from orchestrator.model.rules import ANY_ADDRESS, Action, AddressSet, Direction, Ordering, Rule, Ruleset
from orchestrator.model.suggest import did_you_mean
from orchestrator.packetspace.flowset import holds
from orchestrator.packetspace.packetspace import FlowSet, permitted


class Verdict(StrEnum):
    ALLOWED = "allowed"
    DENIED = "denied"
    PARTIAL = "partial"  # some of the queried flows pass, some do not
    UNENFORCED = "unenforced"  # no enforcement point sees this traffic


@dataclass(frozen=True)
class Decision:
    """Part of the queried flows, decided by one rule (or the default when ``rule`` is None)."""

    action: Action
    index: int | None
    rule: Rule | None
    example: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action.value,
            "rule_index": self.index,
            "rule": self.rule.to_dict() if self.rule else None,
            "policy_rules": list(self.rule.provenance.rules) if self.rule else [],
            "example": self.example,
        }


@dataclass(frozen=True)
class PointAnswer:
    point: str
    direction: Direction
    verdict: Verdict
    decisions: tuple[Decision, ...]


@dataclass(frozen=True)
class FlowAnswer:
    verdict: Verdict
    policy_decisions: tuple[Decision, ...]
    points: tuple[PointAnswer, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "policy": [d.to_dict() for d in self.policy_decisions],
            "points": [
                {"point": p.point, "direction": p.direction.value, "verdict": p.verdict.value,
                 "decisions": [d.to_dict() for d in p.decisions]}
                for p in self.points
            ],
        }


def parse_endpoint(text: str, compilation: Compilation,
                   workloads: Mapping[str, AddressSet] | None = None) -> AddressSet:
    """An address, a CIDR, a group name, a workload name (its addresses) or ``any`` → addresses.  Raises
    PolicyError naming the closest group or workload when ``text`` is none of them."""
    if text == ANY_GROUP:
        return ANY_ADDRESS
    try:
        return AddressSet.of([ipaddress.ip_network(text, strict=False)])
    except ValueError:
        pass
    group = compilation.groups.get(text)
    if group is not None:
        return group.addresses
    known = workloads or {}
    if text in known:
        return known[text]
    hint = did_you_mean(text, [*compilation.groups, *known])
    raise PolicyError(f"{text!r} is neither an address nor a group or workload of the policy"
                      + (f": {hint}" if hint else ""))


def query_space(src: AddressSet, dst: AddressSet, services: Sequence[ServiceMatch]) -> FlowSet:
    space = FlowSet.empty()
    for s in services:
        match = FlowSet.from_match(s.protocol, src, dst, s.src_ports, s.dst_ports, s.icmp_type, s.icmp_code)
        space = space.union(match)
    return space


def partition(space: FlowSet, rules: Sequence[Rule], default: Action, ordering: Ordering) -> list[Decision]:
    """Split ``space`` by deciding rule (first match; union of permits for allow-only sets)."""
    decisions: list[Decision] = []
    rest = space
    for index, rule in enumerate(rules):
        if rest.is_empty():
            break
        part = rest.intersection(FlowSet.from_rule(rule))
        if part.is_empty():
            continue
        sample = part.sample()
        decisions.append(Decision(rule.action, index, rule, sample.describe() if sample else ""))
        rest = rest.difference(part)
    if not rest.is_empty():
        sample = rest.sample()
        fallback = Action.DENY if ordering is Ordering.UNORDERED_ALLOW else default
        decisions.append(Decision(fallback, None, None, sample.describe() if sample else ""))
    return decisions


def _verdict(decisions: Sequence[Decision]) -> Verdict:
    actions = {d.action for d in decisions}
    if actions == {Action.PERMIT}:
        return Verdict.ALLOWED
    if actions == {Action.DENY}:
        return Verdict.DENIED
    return Verdict.PARTIAL


def _point_answers(space: FlowSet, ruleset: Ruleset, scope: AddressSet) -> tuple[list[PointAnswer], FlowSet]:
    """The point's answers per direction, and the part of ``space`` the point lets through."""
    answers: list[PointAnswer] = []
    passed = space
    for direction in (Direction.EGRESS, Direction.INGRESS):
        rules = ruleset.for_direction(direction)
        if direction is Direction.INGRESS:
            seen = space.intersection(FlowSet.from_match(None, ANY_ADDRESS, scope))
        else:
            seen = space.intersection(FlowSet.from_match(None, scope, ANY_ADDRESS))
        if seen.is_empty() or (not rules and not _filters(ruleset, direction)):
            continue
        decisions = partition(seen, rules, ruleset.default_action, ruleset.ordering)
        passed = passed.difference(seen.difference(permitted(rules, ruleset.default_action, ruleset.ordering)))
        answers.append(PointAnswer(ruleset.point, direction, _verdict(decisions), tuple(decisions)))
    return answers, passed


def _filters(ruleset: Ruleset, direction: Direction) -> bool:
    return any(r.direction is direction for r in ruleset.rules) or ruleset.default_action is Action.DENY


class SmallestGroup:
    """Names an address by the smallest of ``groups`` holding it (equal sizes: the first name), as an engineer
    names the ends of a flow; empty groups never do."""

    def __init__(self, groups: Mapping[str, AddressSet]) -> None:
        self._by_size = sorted(((n, a) for n, a in groups.items() if a), key=lambda i: (i[1].address_count(), i[0]))

    def __call__(self, family: int, value: int) -> str | None:
        return next((name for name, addresses in self._by_size if holds(addresses, family, value)), None)


def check_flow(
    compilation: Compilation,
    policy: Policy,
    prepared: Sequence[PreparedRule],
    src: AddressSet,
    dst: AddressSet,
    service_refs: Sequence[str],
) -> FlowAnswer:
    """Answer "is src → dst over these services allowed?" on the policy and on every point."""
    services = resolve_services(policy, service_refs)
    space = query_space(src, dst, services)
    if space.is_empty():
        raise PolicyError("the query matches no flow (source and destination share no address family?)")
    policy_rules = [
        Rule(pr.action, Direction.INGRESS, s.protocol, pr.src.addresses, pr.dst.addresses, s.src_ports,
             s.dst_ports, s.icmp_type, s.icmp_code, pr.rule.log, pr.provenance)
        for pr in prepared for s in pr.services
    ]
    default = Action.PERMIT if policy.defaults.action.value == "allow" else Action.DENY
    policy_decisions = partition(space, policy_rules, default, Ordering.FIRST_MATCH)
    answers: list[PointAnswer] = []
    passed = space
    for name in sorted(compilation.points):
        point = compilation.points[name]
        point_answers, point_passed = _point_answers(space, point.ruleset, point.target.scope)
        answers.extend(point_answers)
        passed = passed.intersection(point_passed)
    if not answers:
        verdict = Verdict.UNENFORCED
    elif passed.equivalent(space):
        verdict = Verdict.ALLOWED
    elif passed.is_empty():
        verdict = Verdict.DENIED
    else:
        verdict = Verdict.PARTIAL
    return FlowAnswer(verdict, tuple(policy_decisions), tuple(answers))
