"""Compilation: policy × workloads × enforcement points → the intended Ruleset of every point.

Pure and deterministic: the same input gives byte-identical output.  For
each point and each direction it enforces, the policy rules (in evaluation
order) are restricted to the point's protected scope, expanded per service,
then

* first-match / priority targets keep the deny/allow order and are optimized
  (merged, shadowed rules dropped);
* allow-only targets (AWS SG) get the exact permitted flow space — denies are
  carved out of allows by set subtraction;

then split into the shapes the platform accepts and checked against its
limits.  Every optimized ruleset is verified equivalent to the unoptimized
one with the packet-space module.  Problems of every point are collected and
reported together.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Protocol

from orchestrator.compiler.optimize import (
    attribute,
    carve_out,
    check_cover,
    cover_gaps,
    merge_set,
    optimize_first_match,
    shape_rules,
    shape_rules_proved,
)
from orchestrator.compiler.resolve import GroupResolver, LabelledWorkload, ResolvedGroup, ServiceMatch, rule_services
from orchestrator.compiler.returnpath import opposite, with_return_rules
from orchestrator.model.capabilities import Capabilities
from orchestrator.model.errors import Diagnostic, Location, PolicyError, Severity
from orchestrator.model.policy import Policy, PolicyRule, RuleAction
from orchestrator.model.rules import (
    ANY_ADDRESS,
    Action,
    AddressSet,
    Direction,
    Mode,
    Ordering,
    Provenance,
    Rule,
    Ruleset,
    protocol_name,
)
from orchestrator.packetspace.addressindex import AddressIndex
from orchestrator.packetspace.packetspace import FlowSet, difference_witness, permitted


class SourceLocator(Protocol):
    """Where policy objects were written (``orchestrator.policy.loader.SourceIndex``)."""

    def locate(self, kind: Any, name: str) -> Location | None: ...


@dataclass(frozen=True, slots=True)
class Target:
    """What the compiler needs to know of one enforcement point."""

    name: str
    scope: AddressSet
    directions: frozenset[Direction]
    capabilities: Capabilities
    driver: str = ""
    location: Location | None = None
    members: AddressSet | None = None  # known workload addresses inside the scope (None: the scope itself)
    mode: Mode | None = None  # the point's own mode (inventory); None: the policy's defaults.mode


@dataclass(frozen=True, slots=True)
class PointStats:
    """Sizes for one point: naive src×dst×service rendering vs. candidates vs. emitted rules."""

    naive: int
    candidates: int
    emitted: int


@dataclass(frozen=True, slots=True)
class CompiledPoint:
    target: Target
    ruleset: Ruleset
    stats: PointStats


@dataclass(frozen=True)
class Compilation:
    """The intended state of every point, plus what was found on the way."""

    points: Mapping[str, CompiledPoint]
    groups: Mapping[str, ResolvedGroup]
    diagnostics: tuple[Diagnostic, ...] = ()

    def to_dict(self, *, with_provenance: bool = True) -> dict[str, Any]:
        return {
            "points": {
                name: {
                    "driver": cp.target.driver,
                    "stats": {"naive": cp.stats.naive, "candidates": cp.stats.candidates, "emitted": cp.stats.emitted},
                    "ruleset": cp.ruleset.to_dict(with_provenance=with_provenance),
                }
                for name, cp in sorted(self.points.items())
            },
            "diagnostics": [d.to_dict() for d in self.diagnostics],
        }

    def summary(self) -> dict[str, Any]:
        """Per point what a reviewer needs first — semantics, rules per direction, sizes — without the rules."""
        points: dict[str, dict[str, Any]] = {
            name: {
                "driver": cp.target.driver,
                "ordering": cp.ruleset.ordering.value,
                "default_action": cp.ruleset.default_action.value,
                "mode": cp.ruleset.mode.value,
                "stateful": cp.ruleset.stateful,
                "rules": {d.value: len(cp.ruleset.for_direction(d)) for d in sorted(Direction, key=lambda d: d.value)},
                "stats": {"naive": cp.stats.naive, "candidates": cp.stats.candidates, "emitted": cp.stats.emitted},
            }
            for name, cp in sorted(self.points.items())
        }
        totals = {key: sum(getattr(cp.stats, key) for cp in self.points.values())
                  for key in ("naive", "candidates", "emitted")}
        return {"points": points, "totals": {"points": len(points), **totals},
                "diagnostics": [d.to_dict() for d in self.diagnostics]}


@dataclass(frozen=True, slots=True)
class PreparedRule:
    """A policy rule with its groups and services resolved (point-independent)."""

    rule: PolicyRule
    src: ResolvedGroup
    dst: ResolvedGroup
    services: tuple[ServiceMatch, ...]
    action: Action  # what the rule does at a point: a deny rule being monitored lets through (PERMIT)
    provenance: Provenance

    @property
    def log(self) -> bool:
        """Whether its traffic is logged: its own ``log``, and always while monitored (that is its evidence)."""
        return self.rule.log or self.rule.mode is Mode.MONITOR

    @property
    def allows(self) -> bool:
        """Whether the policy rule is an allow rule (a monitored deny rule permits, but is none)."""
        return self.rule.action is RuleAction.ALLOW


class Checks(Protocol):
    """Where a compilation's exact proofs run: each ``check`` returns None, or what it found wrong.  ``check``
    may run one now or later (a caller with spare cores runs big ones beside the compilation); ``finish`` has
    every check run and raises ``AssertionError`` with the first problem found; ``abandon`` drops those not
    run yet (the compilation failed)."""

    def check(self, size: int, check: Callable[[], str | None]) -> None: ...

    def finish(self) -> None: ...

    def abandon(self) -> None: ...


class InlineChecks:
    """Every check runs at once, in this process (the default: no I/O of any kind)."""

    def check(self, size: int, check: Callable[[], str | None]) -> None:
        problem = check()
        if problem is not None:
            raise AssertionError(problem)

    def finish(self) -> None:
        return None

    def abandon(self) -> None:
        return None


@dataclass
class _Run:
    """Mutable collector of diagnostics during one compilation, and where its proofs run."""

    sources: SourceLocator | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    checks: Checks = field(default_factory=InlineChecks)

    def report(self, message: str, *, rule: str | None = None, target: Target | None = None,
               severity: Severity = Severity.ERROR, code: str = "compile", hint: str | None = None) -> None:
        location = None
        if rule and self.sources is not None:
            location = self.sources.locate("rule", rule)
        if location is None and target is not None:
            location = target.location
        self.diagnostics.append(Diagnostic(message, location, severity, code, hint))


MONITOR_NOTE = "monitor: would deny"


def _provenance(rule: PolicyRule) -> Provenance:
    return Provenance(
        rules=(rule.name,),
        tickets=(rule.ticket,) if rule.ticket else (),
        owners=(rule.owner,) if rule.owner else (),
        expires=rule.expires,
    )


def prepare_rules(policy: Policy, resolver: GroupResolver, today: date, run: _Run) -> list[PreparedRule]:
    """Resolve every active rule; rules whose side resolves empty are errors unless opted in."""
    prepared: list[PreparedRule] = []
    for rule in policy.active_rules(today):
        try:
            src, dst = resolver.union(rule.from_), resolver.union(rule.to)
            services = rule_services(policy, rule)
        except PolicyError as exc:
            run.report(f"rule {rule.name!r}: {exc.message}", rule=rule.name, code="reference")
            continue
        empty = [g.name for g in (src, dst) if g.empty]
        if empty:
            opted_in = rule.allow_empty if rule.allow_empty is not None else policy.defaults.allow_empty_groups
            what = "a deny that vanishes widens access" if rule.action is RuleAction.DENY else "it would vanish"
            run.report(
                f"rule {rule.name!r}: group {', '.join(map(repr, empty))} resolves to no address; {what}",
                rule=rule.name,
                severity=Severity.WARNING if opted_in else Severity.ERROR,
                code="empty-group",
                hint=None if opted_in else "fix the selector/inventory, or set allow_empty: true on the rule",
            )
            continue
        action = Action.PERMIT if rule.action is RuleAction.ALLOW else Action.DENY
        provenance = _provenance(rule)
        if rule.mode is Mode.MONITOR:  # a deny rule being watched: logged in its place, let through
            action, provenance = Action.PERMIT, replace(provenance, note=MONITOR_NOTE)
        prepared.append(PreparedRule(rule, src, dst, services, action, provenance))
    return prepared


def _restrict(src: AddressSet, dst: AddressSet, scope: AddressSet, direction: Direction,
              ipv6: bool) -> tuple[AddressSet, AddressSet]:
    if direction is Direction.INGRESS:
        dst = dst.intersection(scope)
    else:
        src = src.intersection(scope)
    families = src.families & dst.families
    if not ipv6:
        families -= {6}
    if families != src.families:
        src = AddressSet(tuple(n for n in src.networks if n.version in families))
    if families != dst.families:
        dst = AddressSet(tuple(n for n in dst.networks if n.version in families))
    return src, dst


class RuleIndex:
    """Finds the prepared rules whose destination (ingress) or source (egress) touches a scope."""

    def __init__(self, prepared: Sequence[PreparedRule]) -> None:
        self.rules = tuple(prepared)
        self._by_side = {
            Direction.INGRESS: AddressIndex([pr.dst.addresses for pr in prepared]),
            Direction.EGRESS: AddressIndex([pr.src.addresses for pr in prepared]),
        }

    def touching(self, scope: AddressSet, direction: Direction) -> list[PreparedRule]:
        """In evaluation order."""
        return [self.rules[i] for i in self._by_side[direction].overlapping(scope)]


def candidate_rules(index: RuleIndex, target: Target, direction: Direction,
                    logging: bool) -> tuple[list[Rule], int]:
    """The policy restricted to one point and direction, one rule per policy rule × service (``logging``: whether
    rules keep their log flags)."""
    caps = target.capabilities
    out: list[Rule] = []
    naive = 0
    for pr in index.touching(target.scope, direction):
        src, dst = _restrict(pr.src.addresses, pr.dst.addresses, target.scope, direction, caps.ipv6)
        if not src or not dst:
            continue
        log = pr.log and logging
        for svc in pr.services:
            family = ICMP_FAMILY.get(svc.protocol or 0)
            s_src, s_dst = (src, dst) if family is None else (_only(src, family), _only(dst, family))
            if s_src and s_dst:
                out.append(Rule(pr.action, direction, svc.protocol, s_src, s_dst, svc.src_ports, svc.dst_ports,
                                svc.icmp_type, svc.icmp_code, log, pr.provenance))
        if direction is Direction.INGRESS:
            naive += len(pr.src.raw) * pr.dst.raw_count_within(target.scope) * len(pr.services)
        else:
            naive += pr.src.raw_count_within(target.scope) * len(pr.dst.raw) * len(pr.services)
    return out, naive


ICMP_FAMILY = {1: 4, 58: 6}  # ICMP only travels in IPv4, ICMPv6 only in IPv6


def _only(addresses: AddressSet, version: int) -> AddressSet:
    return AddressSet(tuple(n for n in addresses.networks if n.version == version))


def _cylinder(scope: AddressSet, direction: Direction) -> FlowSet:
    if direction is Direction.INGRESS:
        return FlowSet.from_match(None, ANY_ADDRESS, scope)
    return FlowSet.from_match(None, scope, ANY_ADDRESS)


def _implicit_scope(rules: list[Rule], target: Target, direction: Direction, run: _Run) -> list[Rule]:
    """On a platform whose rules always apply to all members, every rule must cover the whole scope."""
    ok: list[Rule] = []
    for rule in rules:
        side = rule.dst if direction is Direction.INGRESS else rule.src
        whole = target.scope if target.members is None else target.members
        for version in (4, 6):
            if version not in side.families:
                whole = whole.difference(_only(whole, version))
        if not whole.difference(side):
            ok.append(rule)
            continue
        peer = rule.src if direction is Direction.INGRESS else rule.dst
        run.report(
            f"{target.name}: {rule.service_text()} {direction.value} with {peer} is allowed for {side} only, but a "
            f"{target.driver} rule applies to every protected member ({whole})",
            target=target, code="unsupported",
            hint="split the point so that each one protects members the policy treats alike",
        )
    return ok


def _direction_rules(candidates: list[Rule], target: Target, direction: Direction, default: Action,
                     run: _Run) -> list[Rule]:
    """Optimized, shaped rules of one direction, verified equivalent to ``candidates``."""
    caps = target.capabilities
    if caps.allow_only:
        space = permitted(candidates, default, Ordering.FIRST_MATCH).intersection(_cylinder(target.scope, direction))
        allowed = merge_set(space.to_rules(Action.PERMIT, direction))
        expressible = _implicit_scope(allowed, target, direction, run) if caps.scope_implicit else allowed
        refused = len(expressible) != len(allowed)
        allowed = expressible
        permits = [r for r in candidates if r.action is Action.PERMIT]
        rules = sorted(shape_rules(attribute(allowed, permits), caps), key=Rule.key)
        final_space = permitted(rules, Action.DENY, Ordering.UNORDERED_ALLOW)
        if not refused and not final_space.equivalent(space):
            raise AssertionError(f"allow-only compilation of {target.name} changed the permitted flows")
        return rules
    optimized = optimize_first_match(candidates, default)
    run.checks.check(len(candidates) + len(optimized),
                     _equivalence(f"optimizing {target.name}", candidates, optimized, default))
    return optimized  # shaped by compile_point, after return paths and carve-outs


def _equivalence(what: str, before: list[Rule], after: list[Rule], default: Action) -> Callable[[], str | None]:
    """The proof that ``after`` decides every flow as ``before`` does (first match, one default)."""
    def check() -> str | None:
        witness = difference_witness(before, default, after, default)
        return None if witness is None else f"{what} changed the decision for {witness.describe()}"
    return check


def _carved(rules: list[Rule], target: Target, default: Action, run: _Run) -> list[Rule]:
    """``rules`` with big permits carved out (``deny`` the complement, ``permit`` the superset) where that takes
    fewer entries on a platform that pays per prefix; verified equivalent."""
    caps = target.capabilities
    if caps.max_prefixes_per_rule is None or caps.ordering is Ordering.UNORDERED_ALLOW:
        return rules
    carved = carve_out(rules, default, caps.max_prefixes_per_rule)
    if len(carved) != len(rules):
        run.checks.check(len(rules) + len(carved), _equivalence(f"carving out {target.name}", rules, carved, default))
    return carved


def _covered(rules: list[Rule], target: Target, default: Action, run: _Run) -> list[Rule]:
    """``rules`` with the gaps between one side's prefixes denied first and that side widened over them, where
    that takes fewer entries on a platform that pays per prefix (see ``cover_gaps``); proven exact."""
    caps = target.capabilities
    if caps.max_prefixes_per_rule is None or caps.ordering is not Ordering.FIRST_MATCH:
        return rules  # priority platforms (GCP, Azure) write the members as targets, and pay nothing for them
    covered = cover_gaps(rules, default, caps.max_prefixes_per_rule, caps.max_port_ranges_per_rule, target.scope)
    if len(covered) != len(rules):
        def check() -> str | None:
            try:
                check_cover(rules, covered, default)
            except AssertionError as exc:
                return str(exc)
            return None
        run.checks.check(len(rules) + len(covered), check)
    return covered


def _check_limits(rules: Sequence[Rule], target: Target, direction: Direction, run: _Run) -> None:
    caps = target.capabilities
    if caps.max_rules is None:
        return
    counts: dict[str, int] = {}
    if caps.count_families_separately:
        per_family = {4: 0, 6: 0}
        for rule in rules:
            src, dst = rule.src.networks, rule.dst.networks
            if len(src) == 1 and len(dst) == 1:  # the shape of one ACL entry: counted without building sets
                per_family[src[0].version] += 1
                continue
            for version in rule.src.families | rule.dst.families:
                per_family[version] += 1
        counts.update((f"IPv{version} ", count) for version, count in per_family.items() if count)
    else:
        counts[""] = len(rules)
    for family, count in sorted(counts.items()):
        if count > caps.max_rules:
            run.report(
                f"{target.name}: {count} {family}{direction.value} rules exceed the limit of {caps.max_rules}",
                target=target, code="limit",
                hint="raise capabilities.max_rules for this point if the platform allows it, or narrow the policy",
            )


def _expressible(rules: list[Rule], target: Target, run: _Run) -> list[Rule]:
    """Rules in the terms the platform has: ICMP types widened to the protocol (with a warning) where it
    cannot match them; protocols it cannot name refused."""
    caps = target.capabilities
    out: list[Rule] = []
    for rule in rules:
        if caps.protocols is not None and rule.protocol is not None and rule.protocol not in caps.protocols:
            run.report(f"{target.name}: driver {target.driver} cannot match protocol {rule.service_text()} "
                       f"({', '.join(rule.provenance.rules)})", target=target, code="unsupported")
            continue
        if not caps.icmp_types and rule.icmp_type is not None:
            run.report(f"{target.name}: {rule.service_text()} widened to all of {protocol_name(rule.protocol)}: "
                       f"driver {target.driver} cannot match ICMP types ({', '.join(rule.provenance.rules)}, "
                       f"{rule.action.value})", target=target, code="widened", severity=Severity.WARNING)
            rule = replace(rule, icmp_type=None, icmp_code=None)  # noqa: PLW2901
        out.append(rule)
    return out


@dataclass
class _Shared:
    """Work that points of one compilation share: decided rules per :func:`_decide_key`, and optimized
    first-match rules per (scope, direction, what the candidates depend on, default) — the same candidate
    rules whatever the platform does with them afterwards (an ACL point and a host firewall protecting one
    block: stateless or not, shaped or not)."""

    decided: dict[tuple[object, ...], _Decided] = field(default_factory=dict)
    optimized: dict[tuple[object, ...], list[Rule]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Decided:
    """What a point's rules are before platform shaping: verified-optimized rules per enforced direction (return
    paths included), and the sizes.  Shared by points that differ only in how rules are shaped."""

    per_direction: Mapping[Direction, list[Rule]]
    naive: int
    candidates: int


def compile_point(index: RuleIndex, target: Target, policy: Policy, run: _Run,
                  shared: _Shared | None = None) -> CompiledPoint | None:
    caps = target.capabilities
    mode = target.mode or policy.defaults.mode
    if mode is Mode.MONITOR and not caps.monitor_mode:
        run.report(f"{target.name}: monitor mode is not supported by driver {target.driver}", target=target)
        return None
    unsupported = target.directions - caps.directions
    for direction in sorted(unsupported, key=lambda d: d.value):
        run.report(f"{target.name}: driver {target.driver} cannot enforce {direction.value}", target=target)
    enforced = target.directions & caps.directions
    default = Action.PERMIT if policy.defaults.action is RuleAction.ALLOW else Action.DENY
    effective_default = Action.DENY if caps.allow_only else default
    shared = shared if shared is not None else _Shared()
    key = _decide_key(target)
    found = shared.decided.get(key)
    if found is None:
        reported = len(run.diagnostics)
        logging = caps.logging and not (mode is Mode.MONITOR and caps.monitor_by_log)
        found = _decide(index, target, enforced, default, run, shared.optimized, logging)
        if len(run.diagnostics) == reported:  # only clean work is shared (see compile_prepared)
            shared.decided[key] = found
    per_direction, naive, candidates_total = found.per_direction, found.naive, found.candidates
    ordered: list[Rule] = []
    for direction in sorted(enforced, key=lambda d: d.value):
        rules = _covered(_carved(per_direction[direction], target, effective_default, run), target,
                         effective_default, run)
        rules, proof, pieces = shape_rules_proved(rules, caps)  # the return-path rules are not shaped yet
        run.checks.check(pieces, proof)
        _check_limits(rules, target, direction, run)
        ordered.extend(rules)
    ruleset = Ruleset(target.name, caps.ordering, effective_default, tuple(ordered), mode, caps.stateful)
    return CompiledPoint(target, ruleset, PointStats(naive, candidates_total, len(ordered)))


def _decide(index: RuleIndex, target: Target, enforced: frozenset[Direction], default: Action,
            run: _Run, optimized: dict[tuple[object, ...], list[Rule]], logging: bool) -> _Decided:
    caps = target.capabilities
    # A stateless point also needs the opposite direction's permits, to let their replies back.
    needed = enforced if caps.stateful else enforced | {opposite(d) for d in enforced}
    per_direction: dict[Direction, list[Rule]] = {}
    naive = candidates_total = 0
    for direction in sorted(needed, key=lambda d: d.value):
        candidates, direction_naive = candidate_rules(index, target, direction, logging)
        candidates = _expressible(candidates, target, run)
        if caps.allow_only:
            rules = _direction_rules(candidates, target, direction, default, run)
        else:  # first-match optimization reads nothing of the target but the candidates (and reports nothing)
            same = (target.scope, direction, caps.ipv6, logging, caps.protocols, caps.icmp_types, default)
            if same not in optimized:
                optimized[same] = _direction_rules(candidates, target, direction, default, run)
            rules = optimized[same]
        per_direction[direction] = rules
        if direction in enforced:
            naive += direction_naive
            candidates_total += len(candidates)
    if not caps.stateful:
        per_direction = with_return_rules(per_direction, frozenset(enforced), default,
                                          established=caps.tcp_established)
    return _Decided(per_direction, naive, candidates_total)


@dataclass(frozen=True)
class PreparedPolicy:
    """A policy with its groups and active rules resolved against the workloads (point-independent)."""

    policy: Policy
    groups: Mapping[str, ResolvedGroup]
    rules: tuple[PreparedRule, ...]
    diagnostics: tuple[Diagnostic, ...]
    today: date


def prepare_policy(
    policy: Policy, workloads: Sequence[LabelledWorkload], *, today: date, sources: SourceLocator | None = None
) -> PreparedPolicy:
    """Resolve groups and rules; problems are collected in ``diagnostics``, never raised."""
    run = _Run(sources)
    resolver = GroupResolver(policy.groups, workloads)
    groups = _resolve_groups(resolver, policy, run)
    prepared = prepare_rules(policy, resolver, today, run)
    return PreparedPolicy(policy, groups, tuple(prepared), tuple(run.diagnostics), today)


def compile_policy(
    policy: Policy,
    targets: Sequence[Target],
    workloads: Sequence[LabelledWorkload],
    *,
    today: date,
    sources: SourceLocator | None = None,
) -> Compilation:
    """Compile ``policy`` for every target; raises PolicyError with every problem found."""
    return compile_prepared(prepare_policy(policy, workloads, today=today, sources=sources), targets, sources)


# Fields of Capabilities that only shape how a change is pushed, never which rules a point gets.
_TRANSACTION_ONLY = frozenset({"atomic_replace", "native_confirm"})
# Fields that only decide how decided rules are cut into the platform's entries (carve-outs, shaping, limits).
_SHAPING_ONLY = frozenset({"max_prefixes_per_rule", "max_port_ranges_per_rule", "mixed_families_per_rule",
                           "max_rules", "count_families_separately"})


def _compile_key(target: Target, ignored: frozenset[str] = _TRANSACTION_ONLY) -> tuple[object, ...]:
    """What ``compile_point`` reads of a target besides its name, driver and location (which only appear in
    messages): points with equal keys get the same rules."""
    caps = target.capabilities
    shaping = tuple((name, getattr(caps, name)) for name in type(caps).model_fields if name not in ignored)
    return target.scope, target.members, target.directions, target.mode, shaping


def _decide_key(target: Target) -> tuple[object, ...]:
    """What ``_decide`` reads of a target: points with equal keys decide the same rules before shaping (an IOS
    and a Junos edge of one site).  An allow-only platform shapes while deciding: all of it counts there."""
    if target.capabilities.allow_only:
        return _compile_key(target)
    return _compile_key(target, _TRANSACTION_ONLY | _SHAPING_ONLY)


def compile_prepared(prepared: PreparedPolicy, targets: Sequence[Target],
                     sources: SourceLocator | None = None, checks: Checks | None = None) -> Compilation:
    """Compile every target.  Every optimization is proven exact by ``checks`` (inline unless the caller hands
    checks that run beside the compilation); all of them have passed before this returns."""
    run = _Run(sources, list(prepared.diagnostics), checks or InlineChecks())
    try:
        points = _compile_targets(prepared, targets, run)
    except BaseException:
        run.checks.abandon()
        raise
    run.checks.finish()
    diagnostics = tuple(run.diagnostics)
    errors = [d for d in diagnostics if d.severity is Severity.ERROR]
    if errors:
        raise PolicyError(f"compilation failed with {len(errors)} errors", diagnostics)
    return Compilation(points, prepared.groups, diagnostics)


def _compile_targets(prepared: PreparedPolicy, targets: Sequence[Target], run: _Run) -> dict[str, CompiledPoint]:
    points: dict[str, CompiledPoint] = {}
    index = RuleIndex(prepared.rules)
    # Points that protect the same addresses with the same capabilities (an IOS and a Junos edge of one
    # site) get the same rules: compile them once.  Only clean compiles are reused, so that every point
    # still gets its own diagnostics, named after it.
    clean: dict[tuple[object, ...], CompiledPoint] = {}
    shared = _Shared()  # and points alike but for shaping share the deciding, points of one scope the optimizing
    for target in sorted(targets, key=lambda t: t.name):
        if not target.scope:
            run.report(f"{target.name}: protects no address (empty scope)", target=target, code="empty-scope",
                       severity=Severity.WARNING)
        key = _compile_key(target)
        same = clean.get(key)
        if same is not None:
            points[target.name] = CompiledPoint(target, replace(same.ruleset, point=target.name), same.stats)
            continue
        reported = len(run.diagnostics)
        compiled = compile_point(index, target, prepared.policy, run, shared)
        if compiled is not None:
            points[target.name] = compiled
            if len(run.diagnostics) == reported:
                clean[key] = compiled
    return points


def _resolve_groups(resolver: GroupResolver, policy: Policy, run: _Run) -> dict[str, ResolvedGroup]:
    groups: dict[str, ResolvedGroup] = {}
    for name in sorted(policy.groups):
        try:
            groups[name] = resolver.resolve(name)
        except PolicyError as exc:
            run.report(f"group {name!r}: {exc.message}", code="reference")
            continue
        if groups[name].empty:
            location = run.sources.locate("group", name) if run.sources else None
            run.diagnostics.append(Diagnostic(
                f"group {name!r} resolves to no address", location, Severity.WARNING, "empty-group"))
    return groups
