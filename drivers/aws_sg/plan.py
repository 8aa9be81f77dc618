"""Pure rendering: the exact EC2 calls that turn the observed owned group into the intended one, quota-checked."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from drivers.aws_sg.permissions import (
    DRIVER,
    Permission,
    Unrepresentable,
    ip_permissions,
    monitor_permissions,
    permission_of,
)
from drivers.aws_sg.references import compress, families_of
from drivers.aws_sg.settings import EC2_RULE_QUOTA, AwsSettings
from drivers.aws_sg.state import BOTH, direction_of, interfaces, permissions
from drivers.aws_sg.vpcview import Interface
from orchestrator.model import AddressSet, Direction, Mode, PermanentDriverError, Ruleset, canonical_json

NEW_GROUP = "${created-security-group}"
"""Stands for the id ``create_security_group`` returns, in the calls that follow it."""
FAMILY = {4: "IPv4", 6: "IPv6"}
Call = dict[str, Any]


def encode(call: Call) -> str:
    """One call as one JSON line (keys sorted)."""
    return json.dumps(call, sort_keys=True)


def revoke_call(point: str, gid: str, egress: bool, remove: Sequence[Permission]) -> Call:
    """One revoke of ``remove``: by rule id (exact, whatever the peer or description), or by content for the
    default rules of a group created in the same change (whose ids nobody has seen yet)."""
    suffix = "egress" if egress else "ingress"
    ids = sorted(p.rule_id for p in remove if p.rule_id)
    if len(ids) == len(remove):
        return {"call": f"revoke_security_group_{suffix}", "params": {"GroupId": gid, "SecurityGroupRuleIds": ids},
                "revokes": sorted((p.stable() for p in remove), key=canonical_json)}
    if ids:
        raise PermanentDriverError(f"cannot revoke rules of {gid} with and without rule ids in one call",
                                   point=point, driver=DRIVER)
    return {"call": f"revoke_security_group_{suffix}",
            "params": {"GroupId": gid, "IpPermissions": ip_permissions(replace(p, description="") for p in remove)}}


def new_group_defaults(vpc_ipv6: bool) -> list[Permission]:
    """The rules EC2 gives a new group: allow all egress to 0.0.0.0/0, and to ::/0 when the VPC has IPv6."""
    out = [Permission(True, "-1", -1, -1, "0.0.0.0/0")]
    if vpc_ipv6:
        out.append(Permission(True, "-1", -1, -1, "::/0"))
    return out


class Planner:
    """Renders one point's change; every refusal is a PermanentDriverError that says what and why.

    ``directions``: those the point filters; the group's rules of the others are neither rendered nor revoked —
    except that a group created for a point that does not filter egress gives up EC2's default allow-all
    egress at once: an ENI's security groups add up, so that default would open the egress of every member
    whose other groups restrict it.  Without egress rules the group leaves each member's egress exactly as its
    other groups make it (an ENI always has at least one other group).
    """

    def __init__(self, point: str, settings: AwsSettings, members: AddressSet,
                 directions: frozenset[Direction] = BOTH) -> None:
        self.point = point
        self.settings = settings
        self.members = members
        self.directions = directions

    def fail(self, message: str) -> PermanentDriverError:
        return PermanentDriverError(message, point=self.point, driver=DRIVER)

    def intended(self, ruleset: Ruleset) -> dict[tuple[Any, ...], Permission]:
        out: dict[tuple[Any, ...], Permission] = {}
        for rule in ruleset.rules:
            if rule.direction not in self.directions:
                names = ", ".join(rule.provenance.rules) or "unnamed"
                raise self.fail(f"policy rule(s) {names}: {rule.direction} rule for a point that does not filter "
                                f"{rule.direction} (inventory directions)")
            try:
                permission = permission_of(rule, self.members)
            except Unrepresentable as exc:
                names = ", ".join(rule.provenance.rules) or "unnamed"
                raise self.fail(f"policy rule(s) {names}: {exc}") from None
            out[permission.key()] = permission
        if ruleset.mode is Mode.MONITOR:
            flags = [direction is Direction.EGRESS for direction in sorted(self.directions, key=lambda d: d.value)]
            for marker in monitor_permissions(flags, self.members.families):
                out[marker.key()] = marker  # a policy rule allowing everything already is one: the marker names it
        return out

    def wanted(self, native: Mapping[str, Any], ruleset: Ruleset) -> tuple[dict[tuple[Any, ...], Permission],
                                                                           dict[str, list[str]]]:
        """The intended permissions, with references to managed groups where they save rules; quota-checked."""
        want = self.intended(ruleset)
        chosen: dict[str, list[str]] = {}
        peers = native.get("peers")
        if self.settings.sg_references and peers:
            own = native["group"]["id"] if native["group"] else None
            present = families_of(a for e in interfaces(native) if e.inside(self.members) for a in e.addresses)
            want, chosen = compress(want, peers, self.members, present, own)
        self.check_rule_quota(want.values(), "the intended ruleset needs")
        return want, chosen

    def check_rule_quota(self, rules: Iterable[Permission], what: str) -> None:
        """Rules per direction and family; a reference counts once in each family."""
        counts: dict[tuple[bool, int], int] = {}
        for p in rules:
            for family in p.families:
                counts[(p.egress, family)] = counts.get((p.egress, family), 0) + 1
        for (egress, family), count in sorted(counts.items()):
            if count > self.settings.rules_per_sg:
                direction = "egress" if egress else "ingress"
                raise self.fail(f"{what} {count} {FAMILY[family]} {direction} rules in security group "
                                f"{self.settings.group_name}; the quota is {self.settings.rules_per_sg} per "
                                f"direction and family (rules_per_sg) — raise the quota or narrow the policy")

    def render(self, native: Mapping[str, Any], intended: Ruleset) -> list[Call]:
        """Create (when absent), authorize/revoke per direction (adds first), then attach/detach ENIs."""
        if native.get("foreign"):
            raise self.fail(f"security group {self.settings.group_name!r} exists without the owner tag")
        want, chosen = self.wanted(native, intended)
        group = native["group"]
        calls: list[Call] = []
        if group is None:
            gid = NEW_GROUP
            have = {p.key(): p for p in new_group_defaults(bool(native["vpc_ipv6"]))}
            calls.append(self.create_call())
        else:
            gid = group["id"]
            have = {p.key(): p for p in permissions(native["rules"], self.point)}
        for egress in (False, True):
            if direction_of(egress) not in self.directions:
                if group is None:  # a new group carries no rules of that direction: see neutral_defaults
                    defaults = [p for p in have.values() if p.egress is egress]
                    calls += self.rule_calls(gid, egress, [], defaults, defaults, chosen)
                continue  # an existing group's rules of that direction are not this point's: they stay
            add = [p for k, p in want.items() if k not in have and p.egress is egress]
            remove = [p for k, p in have.items() if k not in want and p.egress is egress]
            current = [p for p in have.values() if p.egress is egress]
            calls += self.rule_calls(gid, egress, add, remove, current, chosen)
        calls += self.attachment_calls(gid, interfaces(native))
        return calls

    def create_call(self) -> Call:
        tags = [{"Key": k, "Value": v} for k, v in sorted({**self.settings.owner_tag,
                                                           "microseg:point": self.point}.items())]
        params = {"GroupName": self.settings.group_name, "Description": self.settings.description,
                  "VpcId": self.settings.vpc_id,
                  "TagSpecifications": [{"ResourceType": "security-group", "Tags": tags}]}
        return {"call": "create_security_group", "params": params}

    def rule_calls(self, gid: str, egress: bool, add: Sequence[Permission], remove: Sequence[Permission],
                   current: Sequence[Permission], chosen: Mapping[str, list[str]]) -> list[Call]:
        """At most one authorize (every add) and one revoke (every removal) — adds first unless the quota forbids.

        An authorize that writes references names the members each was chosen for: apply refuses it when
        they are not the members any more.
        """
        suffix = "egress" if egress else "ingress"
        authorize: list[Call] = []
        revoke = [revoke_call(self.point, gid, egress, remove)] if remove else []
        if add:
            call: Call = {"call": f"authorize_security_group_{suffix}",
                          "params": {"GroupId": gid, "IpPermissions": ip_permissions(add)}}
            references = {p.group: chosen[p.group] for p in add if p.group}
            if references:
                call["references"] = dict(sorted(references.items()))
            authorize = [call]
        peak = self.peak_over_quota([*current, *add])
        if peak and revoke:
            revoke[0]["note"] = f"revoke first: {peak}"
            return revoke + authorize
        return authorize + revoke

    def peak_over_quota(self, rules: Sequence[Permission]) -> str:
        """Why adding before removing would overflow the rules quota mid-change ('' when it would not)."""
        for family in (4, 6):
            count = sum(1 for p in rules if family in p.families)
            if count > self.settings.rules_per_sg:
                return (f"current plus added {FAMILY[family]} rules ({count}) exceed rules_per_sg "
                        f"({self.settings.rules_per_sg}) before the removals")
        return ""

    def attachment_calls(self, gid: str, enis: Sequence[Interface]) -> list[Call]:
        """Attach the group to member ENIs that lack it (keeping their groups); detach it from non-members."""
        calls: list[Call] = []
        for eni in enis:
            inside = eni.inside(self.members)
            attached = gid in eni.group_ids
            if inside and not attached:
                groups = [*eni.group_ids, gid]
                self.check_eni_quota(eni, len(groups), inside)
                calls.append(self.modify_call(eni, groups, f"attach {gid}"))
            elif attached and not inside:
                groups = [g for g in eni.group_ids if g != gid]
                if not groups:
                    raise self.fail(f"{eni.id} ({', '.join(eni.addresses)}) is no member any more but carries only "
                                    f"{gid}: give it another security group first (an ENI needs one)")
                calls.append(self.modify_call(eni, groups, f"detach {gid}: holds no member"))
        return calls

    @staticmethod
    def modify_call(eni: Interface, groups: Sequence[str], note: str) -> Call:
        return {"call": "modify_network_interface_attribute", "note": note,
                "params": {"NetworkInterfaceId": eni.id, "Groups": list(groups)}}

    def check_eni_quota(self, eni: Interface, count: int, inside: Sequence[str]) -> None:
        where = f"{eni.id} ({', '.join(inside)})"
        if count > self.settings.security_groups_per_eni:
            raise self.fail(f"{where} would carry {count} security groups; the quota is "
                            f"{self.settings.security_groups_per_eni} per network interface "
                            f"(security_groups_per_eni)")
        total = count * self.settings.rules_per_sg
        if total > EC2_RULE_QUOTA:
            raise self.fail(f"{where} would carry {count} security groups × {self.settings.rules_per_sg} rules "
                            f"(rules_per_sg) = {total} rules; EC2 allows at most {EC2_RULE_QUOTA} per network "
                            f"interface")
