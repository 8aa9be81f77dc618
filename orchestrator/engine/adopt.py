"""Brownfield adoption: turn a point's existing enforcement into a policy file for review, with proof.

``propose`` takes what a driver read (:class:`~orchestrator.model.driver.Existing`: the rules someone else's
ACL decides, in order, each with its device line) and writes a policy document that reproduces it — one rule
per entry in the entry's order (``priority``), address sets named after the policy's own groups where one
resolves to exactly that set (label groups included), otherwise CIDR groups; services named by what they
match.  Then it compiles that document for the point, exactly as ``plan`` would, and compares, per
direction, the flows the existing enforcement and the compiled proposal decide differently — by packet
space, exactly.  Traffic between two protected addresses never crosses the point's interfaces and is left
out of the comparison.  Any difference comes with example flows and the device line that decides them; an
entry that cannot be read as a rule (``established``, an object-group …) makes equivalence unprovable, and
the proposal says so.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from orchestrator.compiler.compiler import Target, compile_policy
from orchestrator.engine.engine import Engine
from orchestrator.engine.project import Project
from orchestrator.model.driver import AdoptingDriver, Existing
from orchestrator.model.errors import PlanError, PolicyError
from orchestrator.model.policy import ANY_GROUP, Policy, is_inline_service
from orchestrator.model.rules import (
    ANY_ADDRESS,
    ANY_OF_FAMILY,
    ANY_PORTS,
    PORT_PROTOCOLS,
    Action,
    AddressSet,
    Direction,
    Rule,
    format_ports,
    protocol_name,
)
from orchestrator.packetspace.flowset import Flow
from orchestrator.packetspace.packetspace import decide, difference_witness

MAX_WITNESSES = 5


@dataclass(frozen=True)
class Difference:
    """One flow the existing enforcement and the proposal decide differently, and who decides it."""

    direction: Direction
    flow: str
    existing: Action
    proposed: Action
    decided_by: str  # the device line (or "the implicit deny")
    witness: Flow | None = field(default=None, compare=False)  # the flow itself (``flow`` is its description)

    def to_dict(self) -> dict[str, str]:
        return {"direction": self.direction.value, "flow": self.flow, "existing": self.existing.value,
                "proposed": self.proposed.value, "decided_by": self.decided_by}


@dataclass(frozen=True)
class Adoption:
    """The proposal for one point and what the proof found."""

    point: str
    policy: dict[str, Any]
    adopted: int  # entries turned into rules
    skipped: tuple[str, ...]  # entries that do not concern the protected addresses (nothing to adopt)
    unreadable: tuple[str, ...] = ()  # entries that cannot be read as rules: equivalence cannot be proven
    differences: tuple[Difference, ...] = field(default=())
    uses_selectors: bool = False  # some address set is named by a label selector

    @property
    def equivalent(self) -> bool:
        """Proven: every entry was read and the proposal decides every crossing flow as they do."""
        return not self.differences and not self.unreadable

    def to_dict(self) -> dict[str, Any]:
        return {"point": self.point, "equivalent": self.equivalent, "adopted": self.adopted,
                "skipped": list(self.skipped), "unreadable": list(self.unreadable),
                "differences": [d.to_dict() for d in self.differences], "policy": self.policy}


def propose(project: Project, point: str, existing: Existing) -> Adoption:
    """A policy document reproducing ``existing`` on ``point``, compiled and compared with it.

    Address sets are named, in this order of preference, after the policy's own groups, after a label selector
    whose workloads have exactly those addresses (of the set's address families), or as CIDR groups.  A
    proposal that uses selectors and is not proven equivalent (a selector's members of the other family
    widening a rule) is made again with CIDR groups instead, and the proven one is kept.
    """
    selectors = _selector_groups(project.inventory.workloads)
    target, known = project.targets([point])[0], _resolved_groups(project)
    adoption = _propose(project, target, known, existing, selectors)
    if selectors and not adoption.equivalent and adoption.uses_selectors:
        plain = _propose(project, target, known, existing, {})
        if plain.equivalent:
            return plain
    return adoption


MAX_SELECTORS = 20_000  # label combinations tried (one and two labels; three when there are few)


def _selector_groups(workloads: Sequence[Any]) -> dict[tuple[int, AddressSet], dict[str, str]]:
    """Per (address family, address set), the smallest label selector whose workloads hold exactly those
    addresses of that family (ties: the first in sorted order)."""
    pairs = sorted({(k, v) for w in workloads for k, v in w.labels.items()})
    combos: list[tuple[tuple[str, str], ...]] = [(p,) for p in pairs]
    for size in (2, 3):
        more = [c for c in itertools.combinations(pairs, size) if len({k for k, _ in c}) == size]
        if len(combos) + len(more) > MAX_SELECTORS:
            break
        combos += more
    holding: dict[tuple[str, str], set[int]] = {}
    for i, w in enumerate(workloads):
        for pair in w.labels.items():
            holding.setdefault(pair, set()).add(i)
    networks = [w.networks.networks for w in workloads]  # parsed once, not per label combination
    out: dict[tuple[int, AddressSet], dict[str, str]] = {}
    for combo in combos:
        members = set.intersection(*(holding[pair] for pair in combo))
        if not members:
            continue
        addresses = AddressSet.of(n for i in members for n in networks[i])
        for family in addresses.families:
            key = (family, AddressSet(tuple(n for n in addresses.networks if n.version == family)))
            out.setdefault(key, dict(combo))
    return out


def _propose(project: Project, target: Target, known: Mapping[AddressSet, str], existing: Existing,
             selectors: Mapping[tuple[int, AddressSet], dict[str, str]]) -> Adoption:
    point = target.name
    names = _GroupNames(point, known, selectors)
    services: dict[str, dict[str, Any]] = {}
    rules: list[dict[str, Any]] = []
    skipped: list[str] = []
    for index, (rule, origin) in enumerate(zip(existing.ruleset.rules, existing.origins, strict=True)):
        inside = _protected_side(rule, target.scope)
        if not inside:
            skipped.append(f"{origin}: does not concern the protected addresses ({target.scope.abbreviated()})")
            continue
        if rule.tcp_flags is not None:  # a policy says which flows, not which segments
            why = ("the compiled return paths let the replies of the policy's TCP permits back"
                   if rule.action is Action.PERMIT else "leaving it out changes what the proposal denies")
            skipped.append(f"{origin}: {rule.action.value} of {rule.tcp_flags.value} TCP segments only, which a "
                           f"policy rule cannot say ({why})")
            continue
        src, dst = (rule.src, inside) if rule.direction is Direction.INGRESS else (inside, rule.dst)
        service = _service_name(rule, services)
        rules.append({
            "name": f"adopted-{point}-{rule.direction.value}-{index + 1:03d}",
            "from": names.of(src), "to": names.of(dst), "services": [service],
            "action": "allow" if rule.action is Action.PERMIT else "deny", "log": rule.log,
            "priority": index + 1, "description": f"adopted from {origin}",
        })
    document: dict[str, Any] = {
        "apiVersion": "microseg/v1",
        "description": f"Adopted from the existing enforcement of {point}: review, then merge into the policy",
        "groups": names.groups, "services": services, "rules": rules,
    }
    differences = _prove(project, target, document, existing)
    return Adoption(point, document, len(rules), tuple(skipped), existing.unreadable, differences,
                    uses_selectors=names.used_selectors)


def _protected_side(rule: Rule, scope: AddressSet) -> AddressSet:
    """The rule's protected side (destination of ingress, source of egress) within the point's scope."""
    side = rule.dst if rule.direction is Direction.INGRESS else rule.src
    return side.intersection(scope)


def _resolved_groups(project: Project) -> dict[AddressSet, str]:
    """The policy's groups by the addresses they resolve to (first name wins), to name address sets."""
    try:
        groups = project.prepare().groups
    except PolicyError:
        return {}
    out: dict[AddressSet, str] = {}
    for name in sorted(groups):
        if groups[name].addresses and groups[name].addresses not in out:
            out[groups[name].addresses] = name
    return out


class _GroupNames:
    def __init__(self, point: str, known: Mapping[AddressSet, str],
                 selectors: Mapping[tuple[int, AddressSet], dict[str, str]] | None = None) -> None:
        self.point = point
        self.known = known
        self.selectors = selectors or {}
        self.groups: dict[str, dict[str, Any]] = {}
        self._made: dict[AddressSet, str] = {}
        self.used_selectors = False

    def of(self, addresses: AddressSet) -> str:
        if addresses == ANY_ADDRESS:
            return ANY_GROUP
        if addresses in self.known:
            return self.known[addresses]
        families = addresses.families
        selector = self.selectors.get((next(iter(families)), addresses)) if len(families) == 1 else None
        if selector is not None and addresses not in self._made:
            name = "adopted-" + "-".join(_safe_name(f"{k}-{v}") for k, v in sorted(selector.items()))
            self._made[addresses] = name
            self.groups[name] = {"description": f"the workloads labelled {selector} (exactly the addresses found "
                                                f"on {self.point})", "selector": dict(sorted(selector.items()))}
            self.used_selectors = True
        if addresses not in self._made:
            family = next((f for f, every in ANY_OF_FAMILY.items() if addresses == every), None)
            name = f"adopted-any-ipv{family}" if family else f"adopted-{self.point}-" + "_".join(
                str(n).replace("/", "-").replace(":", ".") for n in addresses.networks[:2])
            if len(addresses.networks) > 2 and not family:
                name += f"_and-{len(addresses.networks) - 2}-more"
            self._made[addresses] = name
            found = f"every IPv{family} address" if family else f"found on {self.point}"
            self.groups[name] = {"description": found, "cidrs": addresses.to_list()}
        return self._made[addresses]


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _service_name(rule: Rule, services: dict[str, dict[str, Any]]) -> str:
    name = protocol_name(rule.protocol)
    spec: dict[str, Any] = {"protocol": name}
    if rule.protocol in PORT_PROTOCOLS:
        if rule.dst_ports != ANY_PORTS:
            spec["ports"] = format_ports(rule.dst_ports).split(",")
            name += "." + format_ports(rule.dst_ports).replace(",", "_")
        if rule.src_ports != ANY_PORTS:
            spec["source_ports"] = format_ports(rule.src_ports).split(",")
            name += ".from." + format_ports(rule.src_ports).replace(",", "_")
    elif rule.icmp_type is not None:
        spec["type"] = rule.icmp_type
        name += f".{rule.icmp_type}"
        if rule.icmp_code is not None:
            spec["code"] = rule.icmp_code
            name += f".{rule.icmp_code}"
    if is_inline_service(name):  # "any", "tcp", "47" would be read as inline specs, not as this service
        name = f"svc-{name}"
    services[name] = spec
    return name


def proposal_policy(project: Project, document: Mapping[str, Any]) -> Policy:
    """The proposal as the policy it is proven as: its rules and groups beside the policy's own groups and
    services (which it names), default deny."""
    own = project.loaded.policy
    return Policy.model_validate({
        "defaults": {"action": "deny", "allow_empty_groups": True},
        "groups": {**own.groups, **document["groups"]}, "services": {**own.services, **document["services"]},
        "service_groups": own.service_groups, "rules": document["rules"],
    })


def _prove(project: Project, target: Target, document: Mapping[str, Any], existing: Existing) -> tuple[Difference, ...]:
    policy = proposal_policy(project, document)
    compiled = compile_policy(policy, [target], project.inventory.workloads, today=project.today)
    proposed = compiled.points[target.name].ruleset
    differences: list[Difference] = []
    for direction in sorted(target.directions, key=lambda d: d.value):
        outside = ANY_ADDRESS.difference(target.scope)
        src, dst = (outside, target.scope) if direction is Direction.INGRESS else (target.scope, outside)
        mine = [(r, o) for r, o in zip(existing.ruleset.rules, existing.origins, strict=True)
                if r.direction is direction]
        have = _within(mine, src, dst)  # (rule, device line) pairs, so a witness names its line
        want = _within([(r, "") for r in proposed.for_direction(direction)], src, dst)
        for _ in range(MAX_WITNESSES):
            flow = difference_witness([r for r, _ in have], existing.ruleset.default_action,
                                      [r for r, _ in want], proposed.default_action)
            if flow is None:
                break
            old, index = decide([r for r, _ in have], existing.ruleset.default_action, flow)
            new, _ = decide([r for r, _ in want], proposed.default_action, flow)
            decided_by = have[index][1] if index is not None else "the implicit deny"
            differences.append(Difference(direction, flow.describe(), old, new, decided_by, flow))
            # look for another: leave this flow's source address out on both sides
            have, want = _without(have, flow), _without(want, flow)
    return tuple(differences)


def _within(rules: Sequence[tuple[Rule, str]], src: AddressSet, dst: AddressSet) -> list[tuple[Rule, str]]:
    """The rules cut down to flows from ``src`` to ``dst`` (outside them both lists fall to their defaults)."""
    out = []
    for rule, origin in rules:
        cut_src, cut_dst = rule.src.intersection(src), rule.dst.intersection(dst)
        if cut_src and cut_dst:
            out.append((replace(rule, src=cut_src, dst=cut_dst), origin))
    return out


def _without(rules: list[tuple[Rule, str]], flow: Flow) -> list[tuple[Rule, str]]:
    """``rules`` with the flow's source address removed from every rule (so the next witness is another one)."""
    gone = AddressSet.of([ipaddress.IPv4Network((flow.src, 32)) if flow.family == 4
                          else ipaddress.IPv6Network((flow.src, 128))])
    out = []
    for rule, origin in rules:
        src = rule.src.difference(gone)
        if src:
            out.append((replace(rule, src=src), origin))
    return out


def adopt(engine: Engine, points: Sequence[str]) -> list[Adoption]:
    """Read each point's existing enforcement through its driver and propose a policy for it (read-only)."""
    selected = engine.select(list(points)) or []
    out = []
    for name in selected:
        driver = engine.sessions.driver(name)
        if not isinstance(driver, AdoptingDriver):
            raise PlanError(f"{name}: driver {engine.project.inventory.point(name).driver} cannot read a point's "
                            "existing enforcement (it implements no `existing()`)")
        out.append(propose(engine.project, name, driver.existing()))
    return out
