"""One point's part of a VPC view (its group, its rules, the ENIs that matter to it) and its normalized meaning."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from drivers.aws_sg.permissions import (
    DRIVER,
    Permission,
    Unrepresentable,
    family_part,
    is_monitor_marker,
    permission_from_row,
    rule_of,
    shown,
)
from drivers.aws_sg.references import expand, families_of
from drivers.aws_sg.settings import AwsSettings
from drivers.aws_sg.vpcview import Interface, VpcView
from orchestrator.model import (
    Action,
    AddressSet,
    Direction,
    Mode,
    Observed,
    Ordering,
    ParseError,
    PermanentDriverError,
    Rule,
    Ruleset,
    Snapshot,
    Unmanaged,
    canonical_json,
)

BOTH = frozenset({Direction.INGRESS, Direction.EGRESS})
OTHER_DIRECTIONS = "other_directions"
"""The native key of the group's rules of the directions the point does not filter (present only for such a
point): kept for the record and reported as unmanaged, never fingerprinted, normalized, rendered or restored."""


def direction_of(egress: bool) -> Direction:
    return Direction.EGRESS if egress else Direction.INGRESS


def row_direction(row: Any) -> Direction | None:
    """A rule row's direction, or None when it cannot be told (such a row counts as owned: parsing it fails)."""
    egress = row.get("IsEgress", False) if isinstance(row, Mapping) else None
    return direction_of(egress) if isinstance(egress, bool) else None


def split_rows(rows: Iterable[Any], directions: frozenset[Direction]) -> tuple[list[Any], list[Any]]:
    """The rows of the directions the point filters (and those whose direction is unreadable), and the others."""
    owned: list[Any] = []
    others: list[Any] = []
    for row in rows:
        direction = row_direction(row)
        (others if direction is not None and direction not in directions else owned).append(row)
    return owned, others


@dataclass(frozen=True, slots=True)
class Observation:
    """One fetch: the snapshot's native JSON plus every ENI of the VPC (rollback needs ENIs no longer relevant)."""

    native: dict[str, Any]
    enis: Mapping[str, Interface]

    def members(self, group_id: str) -> list[str]:
        """The private addresses of the ENIs carrying ``group_id`` now."""
        return sorted({a for e in self.enis.values() if group_id in e.group_ids for a in e.addresses})


def _references(view: VpcView, rows: Iterable[Mapping[str, Any]], owner_tag: Mapping[str, str]) -> dict[str, Any]:
    """Per group the owned rules reference: its current members (fingerprinted: a change of them is drift)."""
    out: dict[str, Any] = {}
    for row in rows:
        info = row.get("ReferencedGroupInfo")
        gid = info.get("GroupId") if isinstance(info, Mapping) else None
        if not isinstance(gid, str) or gid in out:
            continue
        group = view.groups.get(gid)
        if group is None:
            out[gid] = {"missing": True}
            continue
        out[gid] = {"name": group.name, "managed": group.managed(owner_tag), "addresses": list(view.members(gid))}
        if view.delegated(gid):
            out[gid]["delegated"] = True
    return out


def observation_of(view: VpcView, settings: AwsSettings, members: AddressSet, vpc_ipv6: bool | None,
                   directions: frozenset[Direction] = BOTH) -> Observation:
    """This point's part of a VPC view: its group (by name + owner tag), its rules, the ENIs that matter to it.

    ``vpc_ipv6`` is only needed (and only read) while the group does not exist yet.  ``directions``: those the
    point filters; the group's rules of the others go under ``OTHER_DIRECTIONS``, out of ``rules``.
    """
    group: dict[str, Any] | None = None
    foreign: dict[str, Any] | None = None
    for candidate in view.named(settings.group_name):
        if candidate.carries(settings.owner_tag.items()):
            group = group or candidate.entry()
        else:
            foreign = candidate.entry()
    rows, others = split_rows([dict(r) for r in view.rules.get(group["id"], ())] if group else [], directions)
    gid = group["id"] if group else None
    relevant = [e.to_json() for e in view.relevant(members, gid)]
    native = {"vpc_id": settings.vpc_id, "group_name": settings.group_name, "group": group, "foreign": foreign,
              "vpc_ipv6": vpc_ipv6, "rules": rows, "interfaces": relevant,
              "references": _references(view, rows, settings.owner_tag)}
    if directions != BOTH:  # only then: a point filtering both directions keeps its native state as before
        native["directions"] = sorted(d.value for d in directions)
        native[OTHER_DIRECTIONS] = others
    if settings.sg_references:
        native["peers"] = view.peers(settings.owner_tag)  # not fingerprinted: apply re-checks what render used
    return Observation(native, view.enis)


def permissions(rows: Iterable[Mapping[str, Any]], point: str) -> list[Permission]:
    """The rows of the owned group as Permissions; a rule microseg cannot model raises ParseError (fail closed)."""
    if not isinstance(rows, list | tuple):
        raise ParseError(f"owned security group: its rules are {shown(rows)}, not a list", point=point, driver=DRIVER)
    try:
        return [permission_from_row(r) for r in rows]
    except Unrepresentable as exc:
        raise ParseError(f"owned security group: {exc}", point=point, driver=DRIVER) from None


def stable(native: Mapping[str, Any]) -> dict[str, Any]:
    """The fingerprinted part: group identity, rules without ids/descriptions, the relevant ENIs' groups.

    Only the rules of the directions the point filters: a change to the others is nobody's drift here (the
    point never edits them, and revokes name rules by id), nor does a rollback have to undo it.
    """
    rules: list[Any] = []
    rows = native["rules"] if isinstance(native["rules"], list | tuple) else [native["rules"]]
    for row in rows:
        try:
            rules.append(permission_from_row(row).stable())
        except Unrepresentable:  # fingerprinted as it is (normalize refuses it, naming the rule)
            rules.append({k: v for k, v in row.items() if k not in ("SecurityGroupRuleId", "Description")}
                         if isinstance(row, Mapping) else {"unreadable": shown(row)})
    group = native["group"]
    out = {
        "vpc": native["vpc_id"],
        "group": {"id": group["id"], "name": group["name"]} if group else None,
        "foreign": native["foreign"]["id"] if native["foreign"] else None,
        "vpc_ipv6": native["vpc_ipv6"],
        "rules": sorted(rules, key=canonical_json),
        "interfaces": [{"id": i["id"], "groups": sorted(g for g, _ in i["groups"]), "addresses": i["addresses"]}
                       for i in native["interfaces"]],
    }
    references = {g: {k: v for k, v in info.items() if k not in ("name", "managed")}
                  for g, info in native.get("references", {}).items()}
    if references:  # only then: snapshots without references fingerprint as before
        out["references"] = references
    return out


def snapshot_of(point: str, observation: Observation) -> Snapshot:
    return Snapshot(point, DRIVER, observation.native, stable=stable(observation.native))


def interfaces(native: Mapping[str, Any]) -> list[Interface]:
    return [Interface.from_json(i) for i in native["interfaces"]]


def protected_scope(native: Mapping[str, Any], members: AddressSet) -> AddressSet:
    """The addresses the owned group really applies to: members minus those on ENIs without it, plus strays.

    A member whose ENI lacks the group is not protected by it (so the diff sees the missing attachment);
    an ENI that carries the group without holding a member puts all its addresses under the rules.
    Members that no ENI of the VPC holds stay in scope: there is nothing there to attach to.
    """
    gid = native["group"]["id"] if native["group"] else None
    unprotected: list[str] = []
    strays: list[str] = []
    for eni in interfaces(native):
        inside = eni.inside(members)
        attached = gid is not None and gid in eni.group_ids
        if inside and not attached:
            unprotected += inside
        elif attached and not inside:
            strays += eni.addresses
    return members.difference(AddressSet.of(unprotected)).union(AddressSet.of(strays))


def _unmanaged(native: Mapping[str, Any], members: AddressSet) -> tuple[Unmanaged, ...]:
    gid = native["group"]["id"] if native["group"] else None
    others: dict[tuple[str, str], list[str]] = {}
    held: list[str] = []
    for eni in interfaces(native):
        inside = eni.inside(members)
        held += inside
        for group_id, name in eni.groups if inside else ():
            if group_id != gid:
                others.setdefault((group_id, name), []).append(eni.id)
    out = [Unmanaged("security-group", g, f"{n} on {', '.join(e)} (kept: not owned by microseg)")
           for (g, n), e in sorted(others.items())]
    hosts = {ipaddress.ip_address(a) for a in held}
    for net in members.networks:
        if net.num_addresses == 1 and net.network_address not in hosts:
            out.append(Unmanaged("member", str(net.network_address),
                                 f"no network interface in {native['vpc_id']} holds it: nothing to attach to"))
    return tuple(out)


def normalize_native(native: Mapping[str, Any], members: AddressSet, point: str) -> Observed:
    """Pure: the owned group's rules as normalized allow rules over the protected scope, plus what is not ours."""
    foreign = native.get("foreign")
    if foreign:
        raise PermanentDriverError(
            f"security group {native['group_name']!r} ({foreign['id']}) exists in {native['vpc_id']} without the "
            f"owner tag (tags: {foreign['tags']}): microseg never edits untagged groups — tag it to hand it over, "
            f"or set another security_group_name", point=point, driver=DRIVER)
    scope = protected_scope(native, members)
    found = expanded(native, scope, point)
    markers = [p for p in found if is_monitor_marker(p)]  # monitor mode: allow-all rules beside the policy's
    rules = [rule_of(p, family_part(scope, p.family)) for p in found if not is_monitor_marker(p)]
    ruleset = Ruleset(point, Ordering.UNORDERED_ALLOW, Action.DENY, tuple(sorted(rules, key=Rule.key)),
                      Mode.MONITOR if markers else Mode.ENFORCE, stateful=True)
    return Observed(ruleset, _unmanaged(native, members) + _unmanaged_references(native) + _other_directions(native),
                    log_observers=log_observers(native))


def log_observers(native: Mapping[str, Any]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The ENIs carrying the owned group, with their addresses: VPC Flow Logs name no rule, only the ENI that
    logged a flow (``interface-id``), so a flow logged at one of these is evaluated against the group's rules."""
    gid = native["group"]["id"] if native["group"] else None
    return tuple((e.id, e.addresses) for e in interfaces(native) if gid is not None and gid in e.group_ids)


def carried_families(native: Mapping[str, Any]) -> set[int]:
    """The address families on the ENIs that carry the owned group now."""
    gid = native["group"]["id"] if native["group"] else None
    return families_of(a for e in interfaces(native) if gid in e.group_ids for a in e.addresses)


def expanded(native: Mapping[str, Any], scope: AddressSet, point: str) -> list[Permission]:
    """The owned group's rules with every reference replaced by CIDR rules for its group's current members."""
    present = carried_families(native)
    out: list[Permission] = []
    for permission in permissions(native["rules"], point):
        if not permission.group:
            out.append(permission)
            continue
        info = native.get("references", {}).get(permission.group)
        try:
            out += expand(permission, info, scope, present, native["group_name"])
        except Unrepresentable as exc:
            raise ParseError(f"owned security group: {exc}", point=point, driver=DRIVER) from None
    return out


def _unmanaged_references(native: Mapping[str, Any]) -> tuple[Unmanaged, ...]:
    return tuple(Unmanaged("security-group-reference", gid,
                           f"a rule of {native['group_name']} references {info['name']}, which microseg does not "
                           f"manage: read as its current members ({', '.join(info['addresses']) or 'none'}); "
                           f"apply replaces it by the policy's rules")
                 for gid, info in sorted(native.get("references", {}).items())
                 if not info.get("missing") and not info.get("managed"))


def _other_directions(native: Mapping[str, Any]) -> tuple[Unmanaged, ...]:
    """The owned group's rules of the directions the point does not filter: left as they are."""
    out: list[Unmanaged] = []
    for row in native.get(OTHER_DIRECTIONS, ()):
        direction = row_direction(row)
        if direction is None:  # observation_of never puts such a row here
            continue
        fields = {k: v for k, v in row.items() if k not in ("SecurityGroupRuleId", "IsEgress", "Description")}
        out.append(Unmanaged("security-group-rule", str(row.get("SecurityGroupRuleId", "?")),
                             f"{direction} rule {shown(fields)} of {native['group_name']}: {direction} traffic is "
                             f"not filtered by this point (inventory directions), left alone"))
    return tuple(out)
