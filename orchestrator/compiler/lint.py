"""Policy lint: shadowed and overly broad rules, unused names, expired and soon-expiring rules.

Findings are :class:`~orchestrator.model.errors.Diagnostic` values with a ``code``:

=================  ========  ==========================================================
code               severity  meaning
=================  ========  ==========================================================
shadowed           warning   the rule never decides a flow: earlier rules cover it
shadowed-conflict  error     …and an earlier rule with the *other* action covers part of it
any-to-any         error     allow from everything to everything on every service
internet-exposed   error     allow from an external group to internal addresses on all ports
unused-group       warning   a group no rule or group uses
unused-service     warning   a service / service group no rule or service group uses
expired            error     the rule's ``expires`` date has passed (it is not compiled)
expiring           warning   the rule expires within ``defaults.expiry_warning_days``
empty-group        warning   the group resolves to no address (error when a rule then vanishes)
=================  ========  ==========================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from orchestrator.compiler.compiler import PreparedPolicy, PreparedRule, SourceLocator
from orchestrator.model.errors import Diagnostic, Severity
from orchestrator.model.policy import Policy
from orchestrator.model.rules import ANY_ADDRESS, ANY_PORTS, PORT_PROTOCOLS, Direction, Rule
from orchestrator.packetspace.packetspace import FlowSet


def _rule_flows(pr: PreparedRule) -> list[Rule]:
    return [
        Rule(pr.action, Direction.INGRESS, s.protocol, pr.src.addresses, pr.dst.addresses, s.src_ports, s.dst_ports,
             s.icmp_type, s.icmp_code)
        for s in pr.services
    ]


def shadowing(prepared: Sequence[PreparedRule], sources: SourceLocator | None) -> list[Diagnostic]:
    """Policy rules that can never decide a flow, given everything evaluated before them."""
    findings: list[Diagnostic] = []
    covered = FlowSet.empty()
    seen: list[tuple[PreparedRule, FlowSet]] = []
    for pr in prepared:
        space = FlowSet.from_rules(_rule_flows(pr))
        if space.is_subset(covered):
            by = [p for p, s in seen if not s.intersection(space).is_empty()]
            conflict = [p.rule.name for p in by if p.action is not pr.action]
            names = ", ".join(repr(p.rule.name) for p in by)
            loc = sources.locate("rule", pr.rule.name) if sources else None
            if conflict:
                findings.append(Diagnostic(
                    f"rule {pr.rule.name!r} ({pr.rule.action.value}) never takes effect: "
                    f"{', '.join(map(repr, conflict))} with the opposite action decide(s) its flows first",
                    loc, Severity.ERROR, "shadowed-conflict",
                    "give it a lower priority number, or remove it"))
            else:
                findings.append(Diagnostic(
                    f"rule {pr.rule.name!r} is redundant: {names} already decide all its flows",
                    loc, Severity.WARNING, "shadowed", "remove it, or narrow the earlier rules"))
        seen.append((pr, space))
        covered = covered.union(space)
    return findings


def _all_ports(pr: PreparedRule) -> bool:
    return any(s.protocol is None or (s.protocol in PORT_PROTOCOLS and s.dst_ports == ANY_PORTS) for s in pr.services)


def broad_rules(prepared: Sequence[PreparedRule], sources: SourceLocator | None) -> list[Diagnostic]:
    findings: list[Diagnostic] = []
    for pr in prepared:
        if not pr.allows:
            continue
        loc = sources.locate("rule", pr.rule.name) if sources else None
        everything = any(s.protocol is None for s in pr.services)
        if pr.src.addresses == ANY_ADDRESS and pr.dst.addresses == ANY_ADDRESS and everything:
            findings.append(Diagnostic(f"rule {pr.rule.name!r} allows any to any on every service", loc,
                                       Severity.ERROR, "any-to-any", "name the groups and services it is for"))
        elif pr.src.external and not pr.dst.external and _all_ports(pr):
            findings.append(Diagnostic(
                f"rule {pr.rule.name!r} exposes internal addresses ({pr.dst.name}) to {pr.src.name} on all ports",
                loc, Severity.ERROR, "internet-exposed", "allow only the service ports the workload serves"))
    return findings


def unused_names(policy: Policy, sources: SourceLocator | None) -> list[Diagnostic]:
    used_groups = {g for r in policy.rules for g in (*r.from_, *r.to)}
    used_groups |= {m for g in policy.groups.values() for m in g.groups or ()}
    used_services = {s for r in policy.rules for s in r.services}
    used_services |= {m for members in policy.service_groups.values() for m in members}
    findings: list[Diagnostic] = []
    for kind, names, used in (
        ("group", policy.groups, used_groups),
        ("service", policy.services, used_services),
        ("service_group", policy.service_groups, used_services),
    ):
        for name in sorted(set(names) - used):
            loc = sources.locate(kind, name) if sources else None
            code = "unused-group" if kind == "group" else "unused-service"
            findings.append(Diagnostic(f"{kind.replace('_', ' ')} {name!r} is not used by any rule", loc,
                                       Severity.WARNING, code))
    return findings


def expiry(policy: Policy, today: date, sources: SourceLocator | None) -> list[Diagnostic]:
    horizon = today + timedelta(days=policy.defaults.expiry_warning_days)
    findings: list[Diagnostic] = []
    for rule in policy.rules:
        if rule.expires is None:
            continue
        loc = sources.locate("rule", rule.name) if sources else None
        if rule.expires < today:
            findings.append(Diagnostic(f"rule {rule.name!r} expired on {rule.expires}: it is not compiled", loc,
                                       Severity.ERROR, "expired", "remove it, or extend expires"))
        elif rule.expires <= horizon:
            days = (rule.expires - today).days
            findings.append(Diagnostic(f"rule {rule.name!r} expires on {rule.expires} (in {days} days)", loc,
                                       Severity.WARNING, "expiring", f"ticket: {rule.ticket or 'none'}"))
    return findings


def lint_policy(prepared: PreparedPolicy, sources: SourceLocator | None = None) -> list[Diagnostic]:
    """Every lint finding (plus the resolution findings), errors first, then by location."""
    findings = [
        *prepared.diagnostics,
        *shadowing(prepared.rules, sources),
        *broad_rules(prepared.rules, sources),
        *unused_names(prepared.policy, sources),
        *expiry(prepared.policy, prepared.today, sources),
    ]
    return sorted(findings, key=lambda d: (d.severity is not Severity.ERROR, str(d.location or ""), d.message))
