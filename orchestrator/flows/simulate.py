"""Simulate: replay observed flows through the compiled policy — what would this policy break?

Every observed conversation (client → server on a service, oriented as :mod:`orchestrator.flows.discover` does)
becomes one concrete packet, decided exactly as each enforcement point on its path would decide it: the egress
rules of every point whose scope holds the client, the ingress rules of every point whose scope holds the
server, each under its own evaluation order (first match, priority, union of allows).  A conversation passes
when every one of them permits it.  What would be denied is grouped the way an engineer reads a policy gap (the
smallest policy group holding each end, and the service); policy rules no conversation used in the window are
listed (``unused-rule``), and allow rules whose observed use is a sliver of what they allow (over-broad).
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.compiler.compiler import Compilation, PreparedPolicy
from orchestrator.compiler.flows import SmallestGroup
from orchestrator.flows.discover import Conversation
from orchestrator.inventory import Workload
from orchestrator.model import Action, AddressSet, Diagnostic, Direction, Ordering, Rule, Severity
from orchestrator.packetspace.flowset import Flow, holds
from orchestrator.packetspace.packetspace import rule_matches

PORTED = (6, 17, 132)
OVER_BROAD_SHARE = 0.01  # observed (client, server, port) triples below this share of what a rule allows
OVER_BROAD_MIN = 1024  # … of at least this many triples


@dataclass(frozen=True)
class Denial:
    """Where a conversation would be denied: the point, the direction, and the deciding rule (None: default)."""

    point: str
    direction: str
    rules: tuple[str, ...]  # the policy rules behind the deciding entry (empty: the point's default)

    def describe(self) -> str:
        by = f"rule {', '.join(self.rules)}" if self.rules else "the default deny"
        return f"{self.point} ({self.direction}) by {by}"


@dataclass
class Gap:
    """Conversations the policy would deny, of one group pair and service."""

    source: str
    destination: str
    service: str
    conversations: int = 0
    records: int = 0
    examples: list[str] = field(default_factory=list)
    denials: set[Denial] = field(default_factory=set)

    def to_dict(self) -> dict[str, Any]:
        return {"from": self.source, "to": self.destination, "service": self.service,
                "conversations": self.conversations, "records": self.records, "examples": self.examples[:3],
                "denied_at": sorted(d.describe() for d in self.denials)}


@dataclass
class Simulation:
    conversations: int
    records: int
    denied: list[Gap]
    unused_rules: list[str]
    over_broad: list[dict[str, Any]]
    unenforced: int  # conversations no point sees

    @property
    def breaks(self) -> bool:
        return bool(self.denied)

    def used_by(self, logged: Collection[str]) -> Simulation:
        """Without the ``unused-rule`` findings of the rules in ``logged`` — those cloud flow logs show deciding
        flows (the rules running then, which may differ from the policy replayed here)."""
        if logged:
            self.unused_rules = [name for name in self.unused_rules if name not in logged]
        return self

    def findings(self) -> list[Diagnostic]:
        """``unused-rule`` and ``over-broad-rule`` findings in lint's form (warnings)."""
        out = [Diagnostic(f"rule {name!r}: no observed flow used it in the window", code="unused-rule",
                          severity=Severity.WARNING, hint="remove it, or check that its traffic was observed")
               for name in self.unused_rules]
        out += [Diagnostic(f"rule {item['rule']!r}: observed traffic used {item['observed']} of the "
                           f"{item['allowed']} address pairs × ports it allows", code="over-broad-rule",
                           severity=Severity.WARNING, hint="narrow it to what is used")
                for item in self.over_broad]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"breaks": self.breaks, "conversations": self.conversations, "records": self.records,
                "unenforced_conversations": self.unenforced,
                "denied": [g.to_dict() for g in self.denied],
                "denied_conversations": sum(g.conversations for g in self.denied),
                "unused_rules": self.unused_rules, "over_broad_rules": self.over_broad}


def _flow(conversation: Conversation) -> Flow:
    return Flow.logged(conversation.client, conversation.server, conversation.protocol, conversation.client_port,
                       conversation.port)


def _decide(rules: Sequence[Rule], default: Action, ordering: Ordering, flow: Flow) -> tuple[Action, Rule | None]:
    if ordering is Ordering.UNORDERED_ALLOW:
        hit = next((r for r in rules if r.action is Action.PERMIT and rule_matches(r, flow)), None)
        return (Action.PERMIT, hit) if hit is not None else (Action.DENY, None)
    hit = next((r for r in rules if rule_matches(r, flow)), None)
    return (default, None) if hit is None else (hit.action, hit)


def simulate(found: Sequence[Conversation], compilation: Compilation, prepared: PreparedPolicy,
             estate: AddressSet | None = None) -> Simulation:
    """Replay ``found`` through every point of ``compilation`` (the intended state); ``estate``: the workloads'
    addresses (:func:`estate_of`, for judging over-broad rules; default: what the points protect)."""
    points = []
    for name in sorted(compilation.points):
        compiled = compilation.points[name]
        ruleset = compiled.ruleset
        points.append((name, compiled.target.scope, compiled.target.directions, ruleset,
                       {d: ruleset.for_direction(d) for d in (Direction.EGRESS, Direction.INGRESS)}))
    smallest = SmallestGroup({n: g.addresses for n, g in compilation.groups.items()})

    def namer(address: str) -> str:
        ip = ipaddress.ip_address(address)
        return smallest(ip.version, int(ip)) or address

    gaps: dict[tuple[str, str, str], Gap] = {}
    used: dict[str, set[tuple[str, str, int, int]]] = defaultdict(set)
    unenforced = 0
    for conversation in found:
        flow = _flow(conversation)
        denials: list[Denial] = []
        seen = False
        for name, scope, directions, ruleset, by_direction in points:
            for direction, address in ((Direction.EGRESS, flow.src), (Direction.INGRESS, flow.dst)):
                if direction not in directions or not holds(scope, flow.family, address):
                    continue
                seen = True
                action, rule = _decide(by_direction[direction], ruleset.default_action, ruleset.ordering, flow)
                names = rule.provenance.rules if rule is not None else ()
                if action is Action.PERMIT:
                    for policy_rule in names:
                        used[policy_rule].add((conversation.client, conversation.server, flow.protocol, flow.dst_port))
                else:
                    denials.append(Denial(name, direction.value, tuple(names)))
        unenforced += not seen
        if denials:
            key = (namer(conversation.client), namer(conversation.server), conversation.service)
            gap = gaps.setdefault(key, Gap(*key))
            gap.conversations += 1
            gap.records += conversation.records
            if len(gap.examples) < 3:
                client = f"[{conversation.client}]" if ":" in conversation.client else conversation.client
                server = f"[{conversation.server}]" if ":" in conversation.server else conversation.server
                gap.examples.append(f"{client} → {server} {conversation.service}")
            gap.denials.update(denials)
    return Simulation(
        conversations=len(found), records=sum(c.records for c in found),
        denied=sorted(gaps.values(), key=lambda g: (-g.records, g.source, g.destination, g.service)),
        unused_rules=sorted(pr.rule.name for pr in prepared.rules if pr.allows and pr.rule.name not in used),
        over_broad=_over_broad(prepared, used, estate if estate is not None else _scopes(compilation)),
        unenforced=unenforced)


def estate_of(workloads: Iterable[Workload]) -> AddressSet:
    """Every workload address (host networks): the estate's side of a rule, for judging over-broad rules."""
    return AddressSet.of(f"{a}/{a.max_prefixlen}" for w in workloads for a in w.addresses)


def _scopes(compilation: Compilation) -> AddressSet:
    every = AddressSet()
    for point in compilation.points.values():
        every = every.union(point.target.scope)
    return every


def _over_broad(prepared: PreparedPolicy, used: Mapping[str, set[tuple[str, str, int, int]]],
                estate: AddressSet) -> list[dict[str, Any]]:
    """Allow rules whose observed (client, server, port) triples are a sliver of the triples they allow.

    Only the estate's side counts: an end outside the inventory's workloads (the Internet, a partner) counts as
    one, so a rule open to the Internet is judged by the workloads and ports it opens, not by the Internet."""
    out = []
    for pr in prepared.rules:
        if not pr.allows or pr.rule.name not in used:
            continue
        ends = [max(1, side.intersection(estate).address_count()) for side in (pr.src.addresses, pr.dst.addresses)]
        ports = sum(sum(hi - lo + 1 for lo, hi in s.dst_ports) if s.protocol in PORTED else 1
                    for s in pr.services) or 1
        allowed = ends[0] * ends[1] * ports
        observed = len(used[pr.rule.name])
        if allowed >= OVER_BROAD_MIN and observed / allowed < OVER_BROAD_SHARE:
            out.append({"rule": pr.rule.name, "observed": observed, "allowed": allowed})
    return sorted(out, key=lambda item: item["observed"] / item["allowed"])
