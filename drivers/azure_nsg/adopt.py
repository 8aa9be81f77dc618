"""The NSG rules someone else wrote (outside microseg's band) and Azure's default rules, as first-match rules, for
``microseg adopt`` (read-only).

Azure evaluates the rules of one direction of an NSG by priority (the lowest first; a priority is unique per
direction), first match, then the NSG's default rules (``AllowVnetInBound`` 65000, ``AllowAzureLoadBalancerInBound``
65001, ``DenyAllInBound`` 65500 and their outbound twins); flows are stateful.  The NSG applies to the network
interfaces and subnets it is associated with: the point's members (the driver's own assumption).  Each rule
becomes a rule with its protected side cut to the members.  A rule that matches everything (any protocol,
address and port) decides whatever is left, so nothing after it is read.

Service tags (``VirtualNetwork``, ``AzureLoadBalancer``, ``Internet`` — the default rules' — or any other) are
address sets the NSG does not spell out and that depend on the NIC: they are read as Azure expands them at each
member's NIC (its effective security rules, see :mod:`drivers.azure_nsg.tags`), one rule per group of members
that see the same expansions.

What cannot be read exactly is listed in ``unreadable`` with the rule's name and priority — a tag not known at
every member (with why: no NIC holds the address, the NSG does not apply to the NIC, Azure gave no effective
rules), an application security group microseg does not resolve, ports on a protocol without ports — so no
proposal is proven equivalent while there is any.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from drivers.azure_nsg.layout import DIRECTION_OF, NsgSettings, Unreadable
from drivers.azure_nsg.parse import NsgView, ServiceTag, lookup, rule_from_props
from drivers.azure_nsg.tags import ServiceTags
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
                        point: str, service_tags: Callable[[], ServiceTags] | None = None) -> Existing:
    """What the NSG's other rules and its default rules decide for the members (see the module docstring);
    ``service_tags`` reads what the tags mean at the members' NICs, called once, when the first rule naming a tag
    is reached (None: such rules are unreadable)."""
    rules: list[Rule] = []
    origins: list[str] = []
    unreadable: list[str] = []
    expanded: list[ServiceTags | None] = []

    def tags() -> ServiceTags | None:
        if not expanded:
            expanded.append(service_tags() if service_tags is not None else None)
        return expanded[0]

    if not view.exists or view.nsg is None:
        for direction in sorted(directions, key=lambda d: d.value):
            for family in (4, 6):
                rules.append(Rule(Action.PERMIT, direction, None, ANY_OF_FAMILY[family], ANY_OF_FAMILY[family]))
                origins.append(f"no NSG {settings.nsg_name}: nothing filters")
        return Existing(Ruleset(point, Ordering.FIRST_MATCH, Action.DENY, tuple(rules), Mode.ENFORCE, stateful=True),
                        tuple(origins), ())
    properties = view.nsg.get("properties")
    defaults = properties.get("defaultSecurityRules") if isinstance(properties, Mapping) else None
    if not isinstance(defaults, list) or not defaults:  # Azure always applies them: what they say is unknown
        unreadable.append(f"NSG {settings.nsg_name}: the answer lists no defaultSecurityRules, which Azure applies "
                          "after the NSG's own rules")
        defaults = []
    ordered = _in_order([*view.unmanaged, *defaults], unreadable)
    for direction in sorted(directions, key=lambda d: d.value):
        for priority, name, props in (item[1:] for item in ordered if item[0] is direction):
            where = f"rule {name} (priority {priority})"
            try:
                try:
                    parts = [(rule_from_props(props, direction, view.asgs), members)]
                except ServiceTag as exc:
                    parts = _per_group(props, direction, view, exc, tags(), name in DEFAULT_RULES)
            except Unreadable as exc:
                unreadable.append(f"{where}: {exc}")
                continue
            if parts and parts[0][0].protocol == 1 and members.v6:  # what parse refuses for IPv6 prefixes, `*`
                unreadable.append(f"{where}: protocol Icmp with IPv6 members (ICMPv6 semantics are not modelled)")
                continue  # must not let in
            for rule, group in parts:
                for one in _for_members(rule, group):
                    rules.append(one)
                    origins.append(where)
            if len(parts) == 1 and parts[0][1] == members and _matches_everything(parts[0][0]):
                break  # it decides everything left: the rules after it are never reached
    ruleset = Ruleset(point, Ordering.FIRST_MATCH, Action.DENY, tuple(rules), Mode.ENFORCE, stateful=True)
    return Existing(ruleset, tuple(origins), tuple(unreadable))


def _per_group(props: Mapping[str, Any], direction: Direction, view: NsgView, tagged: ServiceTag,
               resolved: ServiceTags | None, default: bool) -> list[tuple[Rule, AddressSet]]:
    """A rule naming service tags as one rule per group of members whose NICs see the same expansions; Unreadable
    when a tag is unknown at any member."""
    hint = " — an explicit catch-all rule of the NSG's own before the default rules makes them moot" if default else ""
    if resolved is None:
        raise Unreadable(f"{tagged}{hint}")
    why = resolved.why_unknown(tagged.tags)
    if why:
        raise Unreadable(f"service tag {', '.join(tagged.tags)}: not known at every member ({'; '.join(why)}){hint}")
    return [(rule_from_props(props, direction, view.asgs, group.tags), group.members) for group in resolved.groups]


def _matches_everything(rule: Rule) -> bool:
    return (rule.protocol is None and rule.src == ANY_ADDRESS and rule.dst == ANY_ADDRESS
            and rule.src_ports == ANY_PORTS and rule.dst_ports == ANY_PORTS)


def _in_order(raws: list[Any], unreadable: list[str]) -> list[tuple[Direction, int, str, Mapping[str, Any]]]:
    """(direction, priority, name, properties) of every rule, by priority; each rule that cannot be placed is
    reported once."""
    out: list[tuple[Direction, int, str, Mapping[str, Any]]] = []
    for raw in raws:
        props = raw.get("properties") if isinstance(raw, Mapping) else None
        name = str(raw.get("name")) if isinstance(raw, Mapping) else "?"
        if not isinstance(props, Mapping):
            unreadable.append(f"rule {name}: no properties object")
            continue
        try:
            direction = lookup(DIRECTION_OF, props.get("direction"), "direction")
        except Unreadable as exc:
            unreadable.append(f"rule {name}: {exc}")
            continue
        priority = props.get("priority")
        if isinstance(priority, bool) or not isinstance(priority, int):
            unreadable.append(f"rule {name}: priority {priority!r} is not a number")
            continue
        out.append((direction, priority, name, props))
    return sorted(out, key=lambda item: item[1:3])


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
