"""The NSG rules someone else wrote (outside microseg's band) and Azure's default rules, as first-match rules, for
``microseg adopt`` (read-only).

Azure evaluates the rules of one direction of an NSG by priority (the lowest first; a priority is unique per
direction), first match, then the NSG's default rules (``AllowVnetInBound`` 65000, ``AllowAzureLoadBalancerInBound``
65001, ``DenyAllInBound`` 65500 and their outbound twins); flows are stateful.  The NSG applies to the network
interfaces and subnets it is associated with: the point's members (the driver's own assumption).  Each rule
becomes a rule with its protected side cut to the members.  A rule that matches everything (any protocol,
address and port) decides whatever is left, so nothing after it is read — which is how an NSG whose own rules
end in a catch-all is read whole: the default rules match service tags (``VirtualNetwork``,
``AzureLoadBalancer``, ``Internet``), address sets the NSG does not spell out.

What cannot be read exactly is listed in ``unreadable`` with the rule's name and priority — a service tag, an
application security group microseg does not resolve, ports on a protocol without ports — so no proposal is
proven equivalent while there is any.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from drivers.azure_nsg.layout import DIRECTION_OF, NsgSettings, Unreadable
from drivers.azure_nsg.parse import NsgView, lookup, rule_from_props
from orchestrator.model import (
    ANY_ADDRESS,
    ANY_OF_FAMILY,
    ANY_PORTS,
    Action,
    AddressSet,
    Direction,
    Existing,
    Mode,
    Ordering,
    Rule,
    Ruleset,
)

DEFAULT_RULES = frozenset({"AllowVnetInBound", "AllowAzureLoadBalancerInBound", "DenyAllInBound",
                           "AllowVnetOutBound", "AllowInternetOutBound", "DenyAllOutBound"})


def foreign_enforcement(view: NsgView, settings: NsgSettings, members: AddressSet, directions: frozenset[Direction],
                        point: str) -> Existing:
    """What the NSG's other rules and its default rules decide for the members (see the module docstring)."""
    rules: list[Rule] = []
    origins: list[str] = []
    unreadable: list[str] = []
    if not view.exists or view.nsg is None:
        for direction in sorted(directions, key=lambda d: d.value):
            for family in (4, 6):
                rules.append(Rule(Action.PERMIT, direction, None, ANY_OF_FAMILY[family], ANY_OF_FAMILY[family]))
                origins.append(f"no NSG {settings.nsg_name}: nothing filters")
        return Existing(Ruleset(point, Ordering.FIRST_MATCH, Action.DENY, tuple(rules), Mode.ENFORCE, stateful=True),
                        tuple(origins), ())
    properties = view.nsg.get("properties")
    defaults = properties.get("defaultSecurityRules") if isinstance(properties, Mapping) else None
    raws = [*view.unmanaged, *(defaults if isinstance(defaults, list) else [])]
    for direction in sorted(directions, key=lambda d: d.value):
        for priority, name, props in _in_order(raws, direction, unreadable):
            where = f"rule {name} (priority {priority})"
            try:
                rule = rule_from_props(props, direction, view.asgs)
            except Unreadable as exc:
                hint = (" — an explicit catch-all rule of the NSG's own before the default rules makes them moot"
                        if name in DEFAULT_RULES else "")
                unreadable.append(f"{where}: {exc}{hint}")
                continue
            for one in _for_members(rule, members):
                rules.append(one)
                origins.append(where)
            if (rule.protocol is None and rule.src == ANY_ADDRESS and rule.dst == ANY_ADDRESS
                    and rule.src_ports == ANY_PORTS and rule.dst_ports == ANY_PORTS):
                break  # it decides everything left: the rules after it are never reached
    ruleset = Ruleset(point, Ordering.FIRST_MATCH, Action.DENY, tuple(rules), Mode.ENFORCE, stateful=True)
    return Existing(ruleset, tuple(origins), tuple(unreadable))


def _in_order(raws: list[Any], direction: Direction, unreadable: list[str]) -> list[tuple[int, str, Mapping[str, Any]]]:
    """(priority, name, properties) of the rules of one direction, by priority."""
    out: list[tuple[int, str, Mapping[str, Any]]] = []
    for raw in raws:
        props = raw.get("properties") if isinstance(raw, Mapping) else None
        name = str(raw.get("name")) if isinstance(raw, Mapping) else "?"
        if not isinstance(props, Mapping):
            unreadable.append(f"rule {name}: no properties object")
            continue
        try:
            if lookup(DIRECTION_OF, props.get("direction"), "direction") is not direction:
                continue
        except Unreadable as exc:
            unreadable.append(f"rule {name}: {exc}")
            continue
        priority = props.get("priority")
        if isinstance(priority, bool) or not isinstance(priority, int):
            unreadable.append(f"rule {name}: priority {priority!r} is not a number")
            continue
        out.append((priority, name, props))
    return sorted(out, key=lambda item: item[:2])


def _for_members(rule: Rule, members: AddressSet) -> list[Rule]:
    """The rule with its protected side (destination of an inbound rule, source of an outbound one) cut to the
    members, one per address family that has any."""
    out: list[Rule] = []
    for family in (4, 6):
        mine = AddressSet(members.v4 if family == 4 else members.v6)
        if rule.direction is Direction.INGRESS:
            src, dst = rule.src.intersection(ANY_OF_FAMILY[family]), rule.dst.intersection(mine)
        else:
            src, dst = rule.src.intersection(mine), rule.dst.intersection(ANY_OF_FAMILY[family])
        if src and dst:
            out.append(replace(rule, src=src, dst=dst))
    return out
