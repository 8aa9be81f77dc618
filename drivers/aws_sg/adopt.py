"""The security groups someone else attached to a point's members, as rules, for ``microseg adopt`` (read-only).

EC2 allows a packet when any group of the ENI allows it (groups add up, allow-only, stateful; what none allows is
denied), so the existing enforcement of a point is the union of the rules of every group on its members' ENIs
but microseg's own: permits in any order, then the implicit deny.  A reference to another group of the VPC stands
for that group's members now (as for the owned group, :mod:`drivers.aws_sg.references`).

What cannot be read exactly is listed in ``unreadable`` with the group and rule id — a prefix-list rule, a
reference to a group outside the VPC or with delegated prefixes, members whose ENIs do not carry one set of
groups (each set is its own enforcement: adopt them as separate points) — so no proposal is proven equivalent
while there is any.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from drivers.aws_sg.permissions import Permission, Unrepresentable, family_part, permission_from_row, rule_of
from drivers.aws_sg.references import expand, families_of
from drivers.aws_sg.vpcview import Interface, VpcView
from orchestrator.model import Action, AddressSet, Direction, Existing, Mode, Ordering, Rule, Ruleset


def member_interfaces(view: VpcView, members: AddressSet) -> list[Interface]:
    """The ENIs that hold a member."""
    return [e for e in view.relevant(members, None) if e.inside(members)]


def foreign_groups(view: VpcView, enis: Sequence[Interface], owned: str | None) -> tuple[list[str], list[str]]:
    """(the groups other than ``owned`` on the members' ENIs, what keeps them from being one set)."""
    if not enis:
        return [], [f"no network interface of {view.vpc_id} holds a member: nothing enforces anything there yet"]
    sets = {e.id: tuple(sorted(g for g in e.group_ids if g != owned)) for e in enis}
    if len(set(sets.values())) > 1:
        where = "; ".join(f"{eni}: {', '.join(groups) or 'none'}" for eni, groups in sorted(sets.items()))
        return [], [f"the members' network interfaces do not carry one set of security groups ({where}): adopt "
                    "them as one point per set"]
    return list(next(iter(sets.values()))), []


def foreign_enforcement(view: VpcView, rows: Mapping[str, Sequence[Mapping[str, Any]]], members: AddressSet,
                        enis: Sequence[Interface], groups: Sequence[str], directions: frozenset[Direction],
                        point: str, unreadable: Sequence[str] = ()) -> Existing:
    """What ``groups`` (their rule rows in ``rows``) allow for the point's ``members`` (on ``enis``) in its
    ``directions``."""
    present = families_of(a for e in enis for a in e.addresses)
    rules: list[Rule] = []
    origins: list[str] = []
    problems = list(unreadable)
    for gid in groups:
        name = view.groups[gid].name if gid in view.groups else "?"
        for row in rows.get(gid, ()):
            where = f"security group {gid} ({name}) rule {row.get('SecurityGroupRuleId', '?')}"
            try:
                permission = permission_from_row(row)
                for one in _expanded(view, permission, members, present, name):
                    protected = family_part(members, one.family)
                    rule = rule_of(one, protected) if protected else None  # no member of that family: moot
                    if rule is not None and rule.direction in directions:
                        rules.append(rule)
                        origins.append(where)
            except Unrepresentable as exc:
                problems.append(f"{where}: {exc}")
    ruleset = Ruleset(point, Ordering.FIRST_MATCH, Action.DENY, tuple(rules), Mode.ENFORCE, stateful=True)
    return Existing(ruleset, tuple(origins), tuple(problems))


def _expanded(view: VpcView, permission: Permission, members: AddressSet, present: set[int],
              name: str) -> list[Permission]:
    if not permission.group:
        return [permission]
    ref = permission.group
    info = ({"missing": True} if ref not in view.groups
            else {"addresses": view.members(ref), "delegated": view.delegated(ref)})
    return expand(permission, info, members, present, name)
