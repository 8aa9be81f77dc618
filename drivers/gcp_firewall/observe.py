"""What a fetch of a project's firewall rules means for one point: owned scope, unmanaged rules, ruleset, quota."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from drivers.gcp_firewall.native import Defaults, RenderError, Targets, Unit, stable_rule
from drivers.gcp_firewall.plan import Call
from drivers.gcp_firewall.settings import DRIVER, GCP_DEFAULT_PRIORITY, GcpSettings
from orchestrator.model import ANY_OF_FAMILY, Action, Direction, Mode, Ordering, ParseError, Rule, Ruleset, Unmanaged


def split_rules(rules: Sequence[Mapping[str, Any]], settings: GcpSettings) -> dict[str, Any]:
    """The snapshot's native part: the owned rules (stable form, by name), the unmanaged ones of the network."""
    owned = [stable_rule(r) for r in rules if settings.parse_name(str(r.get("name"))) is not None]
    others = [r for r in rules if settings.parse_name(str(r.get("name"))) is None
              and settings.network_matches(r.get("network"))]
    unmanaged = [{"name": str(r.get("name")), "detail": _detail(r, settings)} for r in others]
    return {
        "project": settings.project,
        "network": settings.network,
        "owned": sorted(owned, key=lambda r: str(r.get("name"))),
        "unmanaged": sorted(unmanaged, key=lambda u: u["name"]),
        "project_rules": len(rules),
    }


def _detail(rule: Mapping[str, Any], settings: GcpSettings) -> str:
    action = "allow" if rule.get("allowed") else "deny"
    text = f"{rule.get('direction', 'INGRESS')} {action} priority {rule.get('priority', GCP_DEFAULT_PRIORITY)}"
    if rule.get("disabled"):
        text += " (disabled)"
    named = settings.read_name(str(rule.get("name")))
    if named is not None:  # parse_name refused it: a direction the point does not filter
        text += (f" (named as this point's {named.direction.value} rule, but the point filters "
                 f"{_directions(settings)} only (inventory directions): left alone)")
    elif str(rule.get("name")).startswith(settings.prefix):
        text += f" (named with {settings.prefix} but not as a rule of this point)"
    tags, accounts = rule.get("targetTags") or [], rule.get("targetServiceAccounts") or []
    shared = sorted(set(tags) & set(settings.target_tags) | set(accounts) & set(settings.target_service_accounts))
    if not tags and not accounts:
        text += "; applies to every instance of the network, the point's members included"
    elif shared:
        text += f"; applies to the point's members too (through {', '.join(shared)})"
    return text


def _directions(settings: GcpSettings) -> str:
    return " and ".join(d.value for d in Direction if d in settings.directions)


def native_parts(native: Any, settings: GcpSettings) -> tuple[list[dict[str, Any]], list[Unmanaged], int]:
    """Owned rules, unmanaged items and the project's rule count of a snapshot; ParseError when malformed."""
    ok = (isinstance(native, Mapping) and isinstance(native.get("owned"), list)
          and isinstance(native.get("unmanaged"), list) and isinstance(native.get("project_rules"), int)
          and all(isinstance(r, Mapping) for r in native["owned"]))
    if not ok or native.get("network") != settings.network:
        raise ParseError(f"not a snapshot of network {settings.network}", point=settings.point, driver=DRIVER)
    unmanaged = [Unmanaged("firewall-rule", str(u.get("name")), str(u.get("detail", ""))) for u in native["unmanaged"]]
    return [dict(r) for r in native["owned"]], unmanaged, native["project_rules"]


def _everything(action: Action, direction: Direction, members: Any, family: int) -> Rule:
    if direction is Direction.INGRESS:
        return Rule(action, direction, None, ANY_OF_FAMILY[family], members)
    return Rule(action, direction, None, members, ANY_OF_FAMILY[family])


MONITOR_DEFAULTS: Mapping[Direction, str] = {Direction.INGRESS: "allow-ingress", Direction.EGRESS: "allow-egress"}


def monitored_default(units: Sequence[Unit], defaults: Defaults, targets: Targets,
                      directions: frozenset[Direction]) -> Action | None:
    """The default a point written for monitor mode throughout stands for (None when it is not): every filtered
    direction and family ends in an allow-the-rest rule, and every deny rule is a would-deny logged allow."""
    meanings = [defaults.get((MONITOR_DEFAULTS[d], f)) for d in directions for f in (4, 6) if targets[f]]
    enforcing_default = any(meaning is None for meaning in defaults.values())  # e.g. a deny-egress still there
    if not meanings or None in meanings or enforcing_default or any(
            u.rule.action is Action.DENY and not u.monitored for u in units if u.direction in directions):
        return None
    return Action.DENY if Action.DENY in meanings else Action.PERMIT


def observed_ruleset(point: str, units: Sequence[Unit], defaults: Defaults, targets: Targets,
                     directions: frozenset[Direction] = frozenset(Direction)) -> Ruleset:
    """The owned rules as one priority ruleset; GCP's implied defaults and microseg's default rules folded in.

    GCP denies ingress and allows egress (implied rules at 65535).  microseg writes ``deny-egress`` rules for a
    default deny and ``allow-ingress`` rules for a default permit.  Where a direction and family then still
    differ from the ruleset's default action, an explicit last rule says what really happens there.  Only the
    ``directions`` the point filters are described (a point filtering one direction says nothing of the other).

    Written for monitor mode throughout: mode ``monitor``, the would-deny rules read as the denies they stand
    for, the default the allow-the-rest rules name.  Partly (left so by a failed change or a hand edit): mode
    ``enforce`` and every rule as what it does now (a would-deny rule permits), so that either plan rewrites it.
    """
    monitoring = monitored_default(units, defaults, targets, directions)
    if monitoring is not None:
        monitored = tuple(u.rule for d in Direction if d in directions for u in units if u.direction is d)
        return Ruleset(point, Ordering.PRIORITY, monitoring, monitored, Mode.MONITOR, stateful=True)
    units = [replace(u, rule=replace(u.rule, action=Action.PERMIT, log=True)) if u.monitored else u for u in units]
    families = [f for f in (4, 6) if targets[f]]
    permit_in = {f: ("allow-ingress", f) in defaults for f in families}
    deny_out = {f: ("deny-egress", f) in defaults for f in families}
    if Direction.INGRESS not in directions:  # egress only: the default is what egress does
        default = Action.DENY if any(deny_out.values()) else Action.PERMIT
    else:  # with ingress: deny unless ingress is opened (and egress, when filtered, is not closed)
        default = Action.PERMIT if any(permit_in.values()) and not any(deny_out.values()) else Action.DENY
    rules: list[Rule] = []
    for direction in (d for d in Direction if d in directions):
        rules.extend(u.rule for u in units if u.direction is direction)
        for family in families:
            if direction is Direction.INGRESS:
                effective = Action.PERMIT if permit_in[family] else Action.DENY
            else:
                effective = Action.DENY if deny_out[family] else Action.PERMIT
            if effective is not default:
                rules.append(_everything(effective, direction, targets[family], family))
    return Ruleset(point, Ordering.PRIORITY, default, tuple(rules), Mode.ENFORCE, stateful=True)


def log_names(ruleset: Ruleset, units: Sequence[Unit]) -> tuple[tuple[str, ...], ...]:
    """The firewall rule names Firewall Rules Logging gives each rule of ``ruleset`` (``rule_details.reference``
    ends in the name): a unit's chunks; none for the rules that stand for GCP's implied or microseg's default
    rules.  A unit is found by its rule as read (a would-deny allow: as the deny or as the logged allow)."""
    by_rule: dict[Rule, tuple[str, ...]] = {}
    for unit in units:
        read = (unit.rule, replace(unit.rule, action=Action.PERMIT, log=True)) if unit.monitored else (unit.rule,)
        for rule in read:
            by_rule[rule] = tuple(dict.fromkeys((*by_rule.get(rule, ()), *unit.names)))
    return tuple(by_rule.get(rule, ()) for rule in ruleset.rules)


def check_quota(calls: Sequence[Call], project_rules: int, settings: GcpSettings) -> None:
    """Refuse a change whose peak rule count (inserts go before deletes) exceeds the project's quota."""
    inserts = sum(1 for c in calls if c.verb == "insert")
    deletes = sum(1 for c in calls if c.verb == "delete")
    peak = project_rules + inserts
    if peak > settings.firewall_quota:
        raise RenderError(
            f"the change needs {peak} firewall rules in project {settings.project} at its peak ({project_rules} now "
            f"+ {inserts} inserted before {deletes} are deleted), but the project's quota is "
            f"{settings.firewall_quota} (setting firewall_quota): raise the quota or narrow the policy",
            point=settings.point, driver=DRIVER)
