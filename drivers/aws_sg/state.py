"""What the driver reads from EC2 (the owned group, its rules, the members' ENIs) and its normalized meaning."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from drivers.aws_sg.permissions import DRIVER, Permission, Unrepresentable, family_part, permission_from_row, rule_of
from drivers.aws_sg.settings import AwsSettings
from drivers.aws_sg.transport import Ec2Api
from orchestrator.driver import Observed, Snapshot, Unmanaged, canonical_json
from orchestrator.errors import ParseError, PermanentDriverError
from orchestrator.rules import Action, AddressSet, Mode, Ordering, Rule, Ruleset

RULE_FIELDS = ("SecurityGroupRuleId", "IsEgress", "IpProtocol", "FromPort", "ToPort", "CidrIpv4", "CidrIpv6",
               "ReferencedGroupInfo", "PrefixListId", "Description")


@dataclass(frozen=True, slots=True)
class Interface:
    """One ENI: its security groups (id → name) and every private IPv4/IPv6 address it holds."""

    id: str
    groups: tuple[tuple[str, str], ...]
    addresses: tuple[str, ...]

    @property
    def group_ids(self) -> tuple[str, ...]:
        return tuple(g for g, _ in self.groups)

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> Interface:
        groups = sorted((str(g["GroupId"]), str(g.get("GroupName", ""))) for g in item.get("Groups", []))
        v4 = [str(a["PrivateIpAddress"]) for a in item.get("PrivateIpAddresses", []) if a.get("PrivateIpAddress")]
        v6 = [str(a["Ipv6Address"]) for a in item.get("Ipv6Addresses", []) if a.get("Ipv6Address")]
        return cls(str(item["NetworkInterfaceId"]), tuple(groups), tuple(sorted(set(v4 + v6))))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "groups": [list(g) for g in self.groups], "addresses": list(self.addresses)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Interface:
        return cls(str(data["id"]), tuple((str(g), str(n)) for g, n in data["groups"]),
                   tuple(str(a) for a in data["addresses"]))

    def inside(self, members: AddressSet) -> list[str]:
        """The addresses of this ENI that are members."""
        return [a for a in self.addresses if AddressSet.of([a]).overlaps(members)]


@dataclass(frozen=True, slots=True)
class Observation:
    """One fetch: the snapshot's native JSON plus every ENI of the VPC (rollback needs ENIs no longer relevant)."""

    native: dict[str, Any]
    enis: Mapping[str, Interface]


def _vpc_has_ipv6(api: Ec2Api, settings: AwsSettings) -> bool:
    vpcs = api.read("describe_vpcs", settings.vpc_id, VpcIds=[settings.vpc_id]).get("Vpcs", [])
    if not vpcs:
        raise PermanentDriverError(f"vpc {settings.vpc_id} not found in {settings.region}", point=api.point,
                                   driver=DRIVER)
    states = [a.get("Ipv6CidrBlockState", {}).get("State") for a in vpcs[0].get("Ipv6CidrBlockAssociationSet", [])]
    return any(s in ("associated", "associating") for s in states)


def observe(api: Ec2Api, settings: AwsSettings, members: AddressSet) -> Observation:
    """Describe the group named ``security_group_name`` in the VPC, its rules, and the VPC's ENIs (all paginated)."""
    vpc = {"Name": "vpc-id", "Values": [settings.vpc_id]}
    named = list(api.pages("describe_security_groups", "SecurityGroups", settings.group_name,
                           Filters=[vpc, {"Name": "group-name", "Values": [settings.group_name]}]))
    group: dict[str, Any] | None = None
    foreign: dict[str, Any] | None = None
    for item in named:
        tags = {str(t["Key"]): str(t["Value"]) for t in item.get("Tags", [])}
        entry = {"id": str(item["GroupId"]), "name": str(item["GroupName"]), "tags": tags}
        owned = all(tags.get(k) == v for k, v in settings.owner_tag.items())
        if owned:
            group = entry
        else:
            foreign = entry
    rows: list[dict[str, Any]] = []
    vpc_ipv6: bool | None = None
    if group is not None:
        found = api.pages("describe_security_group_rules", "SecurityGroupRules", group["id"],
                          Filters=[{"Name": "group-id", "Values": [group["id"]]}])
        rows = [{k: r[k] for k in RULE_FIELDS if k in r} for r in found]
    else:
        vpc_ipv6 = _vpc_has_ipv6(api, settings)
    enis = {i.id: i for i in map(Interface.from_api, api.pages("describe_network_interfaces", "NetworkInterfaces",
                                                               settings.vpc_id, Filters=[vpc]))}
    gid = group["id"] if group else None
    relevant = [e.to_json() for _, e in sorted(enis.items()) if e.inside(members) or (gid and gid in e.group_ids)]
    native = {"vpc_id": settings.vpc_id, "group_name": settings.group_name, "group": group, "foreign": foreign,
              "vpc_ipv6": vpc_ipv6, "rules": rows, "interfaces": relevant}
    return Observation(native, enis)


def permissions(rows: Iterable[Mapping[str, Any]], point: str) -> list[Permission]:
    """The rows of the owned group as Permissions; a rule microseg cannot model raises ParseError (fail closed)."""
    try:
        return [permission_from_row(r) for r in rows]
    except Unrepresentable as exc:
        raise ParseError(f"owned security group: {exc}", point=point, driver=DRIVER) from None


def stable(native: Mapping[str, Any]) -> dict[str, Any]:
    """The fingerprinted part: group identity, rules without ids/descriptions, the relevant ENIs' groups."""
    rules: list[Any] = []
    for row in native["rules"]:
        try:
            rules.append(permission_from_row(row).stable())
        except Unrepresentable:
            rules.append({k: v for k, v in row.items() if k not in ("SecurityGroupRuleId", "Description")})
    group = native["group"]
    return {
        "vpc": native["vpc_id"],
        "group": {"id": group["id"], "name": group["name"]} if group else None,
        "foreign": native["foreign"]["id"] if native["foreign"] else None,
        "vpc_ipv6": native["vpc_ipv6"],
        "rules": sorted(rules, key=canonical_json),
        "interfaces": [{"id": i["id"], "groups": sorted(g for g, _ in i["groups"]), "addresses": i["addresses"]}
                       for i in native["interfaces"]],
    }


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
    rules = [rule_of(p, family_part(scope, p.family)) for p in permissions(native["rules"], point)]
    ruleset = Ruleset(point, Ordering.UNORDERED_ALLOW, Action.DENY, tuple(sorted(rules, key=Rule.key)),
                      Mode.ENFORCE, stateful=True)
    return Observed(ruleset, _unmanaged(native, members))
