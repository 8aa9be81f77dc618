"""Change plans: per point, the diff, the native change, the flows it opens and closes, and the safety guards.

Everything here is pure.  The executor builds a :class:`ChangePlan` from a
fetched snapshot, the normalized actual state and the compiled intent; a
:class:`Plan` (all points) serializes to JSON for ``microseg plan -o`` and is
checked against fresh fingerprints before ``apply --plan`` changes anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from orchestrator.engine.diff import RulesetDiff
from orchestrator.model.driver import NativeChange, Observed, Unmanaged
from orchestrator.model.rules import (
    ANY_ADDRESS,
    CARVE_OUT_NOTE,
    RETURN_NOTE,
    Action,
    AddressSet,
    Direction,
    Mode,
    Provenance,
    Rule,
    Ruleset,
    TcpFlags,
)
from orchestrator.packetspace.flowset import FlowSet
from orchestrator.packetspace.packetspace import permitted

PLAN_FORMAT = "microseg-plan/v1"
FLOW_SUMMARY_LIMIT = 25


@dataclass(frozen=True, slots=True)
class FlowSummary:
    """Flows the change newly allows / newly denies, as rules (first ``limit`` of each) plus totals."""

    newly_allowed: tuple[Rule, ...] = ()
    newly_denied: tuple[Rule, ...] = ()
    allowed_total: int = 0
    denied_total: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "newly_allowed": [r.to_dict(with_provenance=False) for r in self.newly_allowed],
            "newly_denied": [r.to_dict(with_provenance=False) for r in self.newly_denied],
            "allowed_total": self.allowed_total,
            "denied_total": self.denied_total,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FlowSummary:
        return cls(
            tuple(Rule.from_dict(r) for r in data["newly_allowed"]),
            tuple(Rule.from_dict(r) for r in data["newly_denied"]),
            int(data["allowed_total"]),
            int(data["denied_total"]),
        )


def effective_permitted(ruleset: Ruleset, direction: Direction) -> FlowSet:
    """What really passes in ``direction``: monitor mode drops nothing."""
    if ruleset.mode is Mode.MONITOR:
        return FlowSet.universe()
    return permitted(ruleset.for_direction(direction), ruleset.default_action, ruleset.ordering)


def summarize_flows(actual: Ruleset, intended: Ruleset, limit: int = FLOW_SUMMARY_LIMIT) -> FlowSummary:
    """Exact packet-space difference between the two rulesets, per direction."""
    allowed: list[Rule] = []
    denied: list[Rule] = []
    for direction in Direction:
        before, after = effective_permitted(actual, direction), effective_permitted(intended, direction)
        allowed += after.difference(before).to_rules(Action.PERMIT, direction)
        denied += before.difference(after).to_rules(Action.DENY, direction)
    return FlowSummary(tuple(allowed[:limit]), tuple(denied[:limit]), len(allowed), len(denied))


@dataclass(frozen=True, slots=True)
class GuardSettings:
    """Thresholds of the safety guards and which ones the operator explicitly overrode."""

    max_removal_share: float = 0.5
    min_removals: int = 3
    allow_mass_removal: bool = False
    allow_empty_groups: bool = False
    allow_lockout: bool = False


@dataclass(frozen=True, slots=True)
class GuardFinding:
    """A safety guard that refuses the plan of one point, and the flag that overrides it."""

    guard: str
    message: str
    override: str

    def to_dict(self) -> dict[str, str]:
        return {"guard": self.guard, "message": self.message, "override": self.override}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GuardFinding:
        return cls(str(data["guard"]), str(data["message"]), str(data["override"]))


_NOT_THE_RULES_OWN = (RETURN_NOTE, CARVE_OUT_NOTE)


@dataclass(frozen=True, slots=True)
class ManagementAccess:
    """The orchestrator's declared way in: from these addresses to these, on these TCP ports."""

    sources: AddressSet
    targets: AddressSet
    ports: tuple[int, ...] = (22,)


def mass_removal_guard(diff: RulesetDiff, actual: Ruleset, settings: GuardSettings) -> GuardFinding | None:
    removed, total = len(diff.removed), len(actual.rules)
    if settings.allow_mass_removal or removed < settings.min_removals or total == 0:
        return None
    share = removed / total
    if share <= settings.max_removal_share:
        return None
    return GuardFinding(
        "mass-removal",
        f"would remove {removed} of {total} rules ({share:.0%}, limit {settings.max_removal_share:.0%})",
        "--allow-mass-removal",
    )


def attributed_removals(diff: RulesetDiff, earlier: Iterable[Ruleset]) -> RulesetDiff:
    """``diff`` with each removed rule also given the policy rules an equal rule had in the point's ``earlier``
    intended rulesets (its stored plans): a device that keeps no rule names (IOS ACLs, Junos terms, ACLs written
    before remarks existed) or old ones (an NX-OS/EOS remark before a rename) still tells the empty-group guard
    whose entries a plan would remove.  Names add up — what the device says and what every earlier ruleset
    says — so the guard refuses rather than misses."""
    if not diff.removed:
        return diff
    known: dict[Rule, Provenance] = {}
    for ruleset in earlier:
        for rule in ruleset.rules:
            if rule.provenance.rules:
                known[rule] = known[rule].merge(rule.provenance) if rule in known else rule.provenance
    removed = tuple(r.with_provenance(r.provenance.merge(known[r])) if r in known else r for r in diff.removed)
    return replace(diff, removed=removed)


def empty_group_guard(diff: RulesetDiff, empty_rules: Mapping[str, Sequence[str]],
                      settings: GuardSettings) -> GuardFinding | None:
    """Refuse changes produced by (or removing rules of) policy rules whose groups resolved empty."""
    if settings.allow_empty_groups or not empty_rules:
        return None
    culprits: dict[str, Sequence[str]] = {}
    for rule in (*diff.added, *diff.removed, *diff.moved):
        for name in rule.provenance.rules:
            if name in empty_rules:
                culprits[name] = empty_rules[name]
    if not culprits:
        return None
    described = "; ".join(f"rule {r!r} (group {', '.join(map(repr, g))} resolved empty)"
                          for r, g in sorted(culprits.items()))
    return GuardFinding("empty-group", f"change driven by an empty group: {described}", "--allow-empty-groups")


def _management_flows(access: ManagementAccess, reply: bool) -> FlowSet:
    ports = tuple((p, p) for p in access.ports)
    if reply:  # every segment of a reply carries ACK: a stateless point may let only those back
        return FlowSet.from_match(6, access.targets, access.sources, src_ports=ports, tcp_flags=TcpFlags.ESTABLISHED)
    return FlowSet.from_match(6, access.sources, access.targets, dst_ports=ports)


def lockout_guard(actual: Ruleset, intended: Ruleset, access: ManagementAccess | None,
                  settings: GuardSettings) -> GuardFinding | None:
    """Refuse a change that blocks management flows the actual state lets through."""
    if settings.allow_lockout or access is None or not access.sources or not access.targets:
        return None
    checks = [(Direction.INGRESS, False)] if intended.stateful else [(Direction.INGRESS, False),
                                                                       (Direction.EGRESS, True)]
    for direction, reply in checks:
        wanted = _management_flows(access, reply)
        newly_blocked = wanted.intersection(effective_permitted(actual, direction)).difference(
            effective_permitted(intended, direction))
        sample = newly_blocked.sample()
        if sample is not None:
            return GuardFinding(
                "lockout",
                f"would block the orchestrator's management access ({direction.value}: {sample.describe()}); "
                f"add a policy rule that allows it",
                "--allow-lockout",
            )
    return None


@dataclass(frozen=True, slots=True)
class ChangePlan:
    """What will change on one point, computed from a fingerprinted actual state."""

    point: str
    driver: str
    fingerprint: str
    intended: Ruleset
    diff: RulesetDiff
    change: NativeChange
    flows: FlowSummary
    unmanaged: tuple[Unmanaged, ...] = ()
    guards: tuple[GuardFinding, ...] = ()
    hits: Mapping[str, int] = field(default_factory=dict)  # packets per policy rule, where the point counts them
    hits_epoch: str = ""  # Observed.counter_epoch: a new one means the counters started over
    log_names: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # flow-log rule name -> policy rules
    log_observers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # Observed.log_observers

    @property
    def empty(self) -> bool:
        """Nothing to send: the rules are in sync and so are their annotations (``AnnotatingDriver``)."""
        return self.diff.empty and self.change.empty

    @property
    def annotations_only(self) -> bool:
        """The rules are in sync; only the annotations beside them (remarks naming the policy rules) change."""
        return self.diff.empty and not self.change.empty

    def summary(self) -> str:
        if self.annotations_only:
            n = len(self.change.commands)
            return f"rules unchanged; annotations (remarks) out of date: a change of {n} config line{'s' * (n != 1)}"
        return self.diff.summary()

    @property
    def refused(self) -> bool:
        return bool(self.guards)

    def to_dict(self) -> dict[str, Any]:
        return {
            "point": self.point,
            "driver": self.driver,
            "fingerprint": self.fingerprint,
            "summary": self.summary(),
            "diff": self.diff.to_dict(),
            "flows": self.flows.to_dict(),
            "change": self.change.to_dict(),
            "unmanaged": [u.to_dict() for u in self.unmanaged],
            "guards": [g.to_dict() for g in self.guards],
            "hits": dict(self.hits),
            "hits_epoch": self.hits_epoch,
            "log_names": {name: list(rules) for name, rules in self.log_names.items()},
            "log_observers": {name: list(addresses) for name, addresses in self.log_observers.items()},
            "intended": self.intended.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChangePlan:
        return cls(
            point=str(data["point"]),
            driver=str(data["driver"]),
            fingerprint=str(data["fingerprint"]),
            intended=Ruleset.from_dict(data["intended"]),
            diff=RulesetDiff.from_dict(data["diff"]),
            change=NativeChange.from_dict(data["change"]),
            flows=FlowSummary.from_dict(data["flows"]),
            unmanaged=tuple(Unmanaged.from_dict(u) for u in data.get("unmanaged", ())),
            guards=tuple(GuardFinding.from_dict(g) for g in data.get("guards", ())),
            hits={str(k): int(v) for k, v in (data.get("hits") or {}).items()},
            hits_epoch=str(data.get("hits_epoch") or ""),
            log_names={str(k): tuple(str(r) for r in v) for k, v in (data.get("log_names") or {}).items()},
            log_observers={str(k): tuple(str(a) for a in v) for k, v in (data.get("log_observers") or {}).items()},
        )


def rule_hits(observed: Observed, intended: Ruleset) -> dict[str, int]:
    """The packets each policy rule's entries on a point matched so far (its counted rules only), from the
    observed counters: an observed rule carries the policy rules of the intended rule equal to it, else its
    own provenance (a comment the device keeps).  Entries the compiler added for a rule but that do not do what
    it says — a return path (its replies), a carve-out (a deny standing in for part of a permit) — are not its
    hits; an entry several policy rules share (merged) counts for each of them."""
    if not observed.hits:
        return {}
    out: dict[str, int] = {}
    for names, count in zip(_policy_rules(observed, intended, fallback=True), observed.hits, strict=True):
        if count is None:
            continue
        for name in names:
            out[name] = out.get(name, 0) + count
    return dict(sorted(out.items()))


def rule_log_names(observed: Observed, intended: Ruleset) -> dict[str, tuple[str, ...]]:
    """The policy rules each name the point's flow logs give a deciding rule stands for (``Observed.log_names``):
    those of the intended rule equal to it — an observed rule the policy does not intend (a hand edit, a
    half-done change, a catch-all whose description is no policy rule) names none; nor do entries that are not a
    rule's own (return paths, carve-outs)."""
    if not observed.log_names:
        return {}
    out: dict[str, tuple[str, ...]] = {}
    for rules, names in zip(_policy_rules(observed, intended, fallback=False), observed.log_names, strict=True):
        for name in names if rules else ():
            out[name] = tuple(sorted({*out.get(name, ()), *rules}))
    return dict(sorted(out.items()))


def _policy_rules(observed: Observed, intended: Ruleset, *, fallback: bool) -> list[tuple[str, ...]]:
    """Per observed rule, the policy rules it does what they say for: those of the intended rule equal to it (or,
    with ``fallback``, its own provenance — a comment the device keeps); none for an entry the compiler added
    that is not a rule's own (a return path, a carve-out)."""
    intended_provenance = {rule: rule.provenance for rule in intended.rules}
    return [own_policy_rules(intended_provenance.get(rule, rule.provenance if fallback else None))
            for rule in observed.ruleset.rules]


def own_policy_rules(provenance: Provenance | None) -> tuple[str, ...]:
    """The policy rules an entry of this provenance does what they say for: none for an entry the compiler added
    that is not a rule's own (a return path: its replies; a carve-out: a deny standing in for part of a permit)."""
    if provenance is None or any(note in (provenance.note or "") for note in _NOT_THE_RULES_OWN):
        return ()
    return provenance.rules


@dataclass(frozen=True)
class Plan:
    """The change plans of every selected point, plus the points that could not be planned."""

    points: Mapping[str, ChangePlan]
    failures: Mapping[str, str] = field(default_factory=dict)
    created_at: str = ""
    policy_digest: str = ""
    not_managed: Mapping[str, str] = field(default_factory=dict)  # points left out, and why

    @property
    def changes(self) -> list[ChangePlan]:
        return [p for _, p in sorted(self.points.items()) if not p.empty]

    @property
    def refused(self) -> list[ChangePlan]:
        return [p for _, p in sorted(self.points.items()) if p.refused]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "created_at": self.created_at,
            "policy_digest": self.policy_digest,
            "points": {name: p.to_dict() for name, p in sorted(self.points.items())},
            "failures": dict(sorted(self.failures.items())),
            "not_managed": dict(sorted(self.not_managed.items())),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        if data.get("format") != PLAN_FORMAT:
            raise ValueError(f"not a microseg plan (format {data.get('format')!r}, expected {PLAN_FORMAT!r})")
        return cls(
            points={str(n): ChangePlan.from_dict(p) for n, p in data["points"].items()},
            failures={str(k): str(v) for k, v in data.get("failures", {}).items()},
            created_at=str(data.get("created_at", "")),
            policy_digest=str(data.get("policy_digest", "")),
            not_managed={str(k): str(v) for k, v in data.get("not_managed", {}).items()},
        )


def guard_findings(
    diff: RulesetDiff, actual: Ruleset, intended: Ruleset, *, settings: GuardSettings,
    empty_rules: Mapping[str, Sequence[str]], access: ManagementAccess | None,
) -> tuple[GuardFinding, ...]:
    """Every guard that refuses this point's change (none when the diff is empty)."""
    if diff.empty:
        return ()
    findings = (
        mass_removal_guard(diff, actual, settings),
        empty_group_guard(diff, empty_rules, settings),
        lockout_guard(actual, intended, access, settings),
    )
    return tuple(f for f in findings if f is not None)


def management_access(sources: AddressSet, targets: AddressSet, ports: Iterable[int] = (22,)) -> ManagementAccess:
    return ManagementAccess(sources, targets if targets else ANY_ADDRESS, tuple(sorted(set(ports))))
