"""One describe round of a VPC, shared by its points: every security group, the rules of the groups points own,
every ENI — each describe paginated, so the cost is calls per page, not per point."""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from drivers.aws_sg.permissions import DRIVER
from drivers.aws_sg.settings import AwsSettings
from orchestrator.model import AddressSet, PermanentDriverError

if TYPE_CHECKING:  # boto3 loads when a driver is made, not for validate
    from drivers.aws_sg.transport import Ec2Api

RULE_FIELDS = ("SecurityGroupRuleId", "IsEgress", "IpProtocol", "FromPort", "ToPort", "CidrIpv4", "CidrIpv6",
               "ReferencedGroupInfo", "PrefixListId", "Description")
FILTER_VALUES = 200
"""Group ids per ``group-id`` filter of one describe_security_group_rules request (EC2 caps filter values)."""
CREATED_TAG = "microseg:point"
"""Set on every group microseg creates: such a group is managed whatever owner tag its point uses."""
Interest = tuple[str, frozenset[tuple[str, str]]]
"""(security group name, owner tag items) of a point: the group whose rules a load must describe for it."""


def interest_of(settings: AwsSettings) -> Interest:
    return settings.group_name, frozenset(settings.owner_tag.items())


@dataclass(frozen=True, slots=True)
class Interface:
    """One ENI: its security groups (id → name) and every private IPv4/IPv6 address it holds.

    ``delegated``: the ENI has delegated IPv4/IPv6 prefixes, which a reference to its groups covers too
    (microseg does not model them, so such groups are never referenced).
    """

    id: str
    groups: tuple[tuple[str, str], ...]
    addresses: tuple[str, ...]
    delegated: bool = False

    @property
    def group_ids(self) -> tuple[str, ...]:
        return tuple(g for g, _ in self.groups)

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> Interface:
        groups = sorted((str(g["GroupId"]), str(g.get("GroupName", ""))) for g in item.get("Groups", []))
        v4 = [str(a["PrivateIpAddress"]) for a in item.get("PrivateIpAddresses", []) if a.get("PrivateIpAddress")]
        v6 = [str(a["Ipv6Address"]) for a in item.get("Ipv6Addresses", []) if a.get("Ipv6Address")]
        delegated = bool(item.get("Ipv4Prefixes") or item.get("Ipv6Prefixes"))
        return cls(str(item["NetworkInterfaceId"]), tuple(groups), tuple(sorted(set(v4 + v6))), delegated)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "groups": [list(g) for g in self.groups],
                               "addresses": list(self.addresses)}
        if self.delegated:
            out["delegated"] = True
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Interface:
        return cls(str(data["id"]), tuple((str(g), str(n)) for g, n in data["groups"]),
                   tuple(str(a) for a in data["addresses"]), bool(data.get("delegated")))

    def inside(self, members: AddressSet) -> list[str]:
        """The addresses of this ENI that are members."""
        return [a for a in self.addresses if AddressSet.of([a]).overlaps(members)]


@dataclass(frozen=True, slots=True)
class Group:
    """A security group of the VPC as describe_security_groups lists it (rules aside)."""

    id: str
    name: str
    tags: Mapping[str, str]

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> Group:
        tags = {str(t["Key"]): str(t["Value"]) for t in item.get("Tags", [])}
        return cls(str(item["GroupId"]), str(item["GroupName"]), tags)

    def carries(self, tags: Iterable[tuple[str, str]]) -> bool:
        return all(self.tags.get(k) == v for k, v in tags)

    def managed(self, owner_tag: Mapping[str, str]) -> bool:
        """Created by microseg, or carrying the owner tag of the point that asks."""
        return CREATED_TAG in self.tags or self.carries(owner_tag.items())

    def entry(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "tags": dict(self.tags)}


@dataclass(eq=False)
class VpcView:
    """What one load saw; read-only once built (derived indexes are computed once, on first use)."""

    vpc_id: str
    groups: Mapping[str, Group]
    rules: Mapping[str, tuple[dict[str, Any], ...]]
    """Rule rows of the managed groups (see :func:`described_ids`; others are not read)."""
    enis: Mapping[str, Interface]
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _ipv6: bool | None = None
    _members: dict[str, tuple[str, ...]] | None = None
    _delegated: frozenset[str] = frozenset()
    _holders: dict[str, list[Interface]] = field(default_factory=dict, repr=False)
    _candidates: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    _peers: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    def named(self, name: str) -> list[Group]:
        return sorted((g for g in self.groups.values() if g.name == name), key=lambda g: g.id)

    def _index(self) -> dict[str, tuple[str, ...]]:
        with self._lock:
            if self._members is None:
                members: dict[str, set[str]] = {}
                delegated: set[str] = set()
                for eni in self.enis.values():
                    for address in eni.addresses:
                        self._holders.setdefault(address, []).append(eni)
                    for gid in eni.group_ids:
                        members.setdefault(gid, set()).update(eni.addresses)
                        if eni.delegated:
                            delegated.add(gid)
                self._delegated = frozenset(delegated)
                self._members = {g: tuple(sorted(a)) for g, a in members.items()}
            return self._members

    def relevant(self, members: AddressSet, group_id: str | None) -> list[Interface]:
        """The ENIs holding a member or carrying the group, by id (an index lookup for host members)."""
        self._index()
        found: dict[str, Interface] = {}
        for network in members.networks:
            if network.num_addresses == 1:
                found.update((e.id, e) for e in self._holders.get(str(network.network_address), ()))
            else:  # a member subnet: look at every ENI
                found.update((e.id, e) for e in self.enis.values() if e.inside(AddressSet((network,))))
        if group_id is not None:
            found.update((e.id, e) for e in self.enis.values() if group_id in e.group_ids)
        return [found[k] for k in sorted(found)]

    def members(self, group_id: str) -> tuple[str, ...]:
        """Every private address of the ENIs that carry the group (what a reference to it matches)."""
        return self._index().get(group_id, ())

    def delegated(self, group_id: str) -> bool:
        self._index()
        return group_id in self._delegated

    def peers(self, owner_tag: Mapping[str, str]) -> list[dict[str, Any]]:
        """Managed groups with members and no delegated prefixes: what a rule may reference.

        Groups microseg created are one list for every point (shared, never copied); a point whose owner tag
        also marks hand-over groups gets its own list.
        """
        members = self._index()
        with self._lock:
            if "" not in self._peers:
                ordered = sorted(self.groups.values(), key=lambda g: g.id)
                self._candidates = {g.id: _peer(g, members[g.id]) for g in ordered
                                    if members.get(g.id) and g.id not in self._delegated}
                self._peers[""] = [e for gid, e in self._candidates.items() if CREATED_TAG in self.groups[gid].tags]
            extra = [gid for gid in self._candidates
                     if CREATED_TAG not in self.groups[gid].tags and self.groups[gid].carries(owner_tag.items())]
            if not extra:
                return self._peers[""]
            key = ",".join(extra)
            if key not in self._peers:
                self._peers[key] = [e for gid, e in self._candidates.items() if gid in extra
                                    or CREATED_TAG in self.groups[gid].tags]
            return self._peers[key]

    def vpc_ipv6(self, api: Ec2Api) -> bool:
        """Whether the VPC has an IPv6 block (a new group then gets a ::/0 egress rule too); described once."""
        with self._lock:
            if self._ipv6 is None:
                vpcs = api.read("describe_vpcs", self.vpc_id, VpcIds=[self.vpc_id]).get("Vpcs", [])
                if not vpcs:
                    raise PermanentDriverError(f"vpc {self.vpc_id} not found in {api.settings.region}",
                                               point=api.point, driver=DRIVER)
                states = [a.get("Ipv6CidrBlockState", {}).get("State")
                          for a in vpcs[0].get("Ipv6CidrBlockAssociationSet", [])]
                self._ipv6 = any(s in ("associated", "associating") for s in states)
            return self._ipv6


def _peer(group: Group, addresses: tuple[str, ...]) -> dict[str, Any]:
    """A group a rule may reference: its members, and their networks per family (what the reference matches)."""
    members = AddressSet.of(list(addresses))
    return {"id": group.id, "name": group.name, "addresses": list(addresses),
            "v4": [str(n) for n in members.v4], "v6": [str(n) for n in members.v6]}


def described_ids(groups: Iterable[Group], interests: Collection[Interest], narrow: bool = False) -> list[str]:
    """The groups whose rules a load describes: the groups of ``interests`` (by name and owner tag) when
    ``narrow``; else every group microseg created and every group carrying the owner tag of a point of this
    process — so that a point whose driver is made after the load began is served by it too."""
    if narrow:
        return sorted(g.id for g in groups if any(g.name == name and g.carries(t) for name, t in interests))
    tags = {t for _, t in interests}
    return sorted(g.id for g in groups if CREATED_TAG in g.tags or any(g.carries(t) for t in tags))


def group_rules(api: Ec2Api, ids: Sequence[str], vpc_id: str) -> dict[str, list[dict[str, Any]]]:
    """The rule rows of the groups ``ids`` (≤ FILTER_VALUES ids a request, each paginated), by group id."""
    rows: dict[str, list[dict[str, Any]]] = {gid: [] for gid in ids}
    for start in range(0, len(ids), FILTER_VALUES):
        chunk = list(ids[start:start + FILTER_VALUES])
        subject = chunk[0] if len(chunk) == 1 else f"{len(chunk)} security groups of {vpc_id}"
        found = api.pages("describe_security_group_rules", "SecurityGroupRules", subject,
                          Filters=[{"Name": "group-id", "Values": chunk}])
        for row in found:
            if row.get("GroupId") in rows:
                rows[row["GroupId"]].append({k: row[k] for k in RULE_FIELDS if k in row})
    return rows


def load_view(api: Ec2Api, vpc_id: str, interests: Collection[Interest], narrow: bool = False) -> VpcView:
    """Describe the VPC's groups, the managed groups' rules (≤ FILTER_VALUES ids a request) and its ENIs."""
    vpc = [{"Name": "vpc-id", "Values": [vpc_id]}]
    groups = {g.id: g for g in map(Group.from_api, api.pages("describe_security_groups", "SecurityGroups", vpc_id,
                                                             Filters=vpc))}
    rows = group_rules(api, described_ids(groups.values(), interests, narrow), vpc_id)
    enis = {i.id: i for i in map(Interface.from_api, api.pages("describe_network_interfaces", "NetworkInterfaces",
                                                               vpc_id, Filters=vpc))}
    return VpcView(vpc_id, groups, {g: tuple(r) for g, r in rows.items()}, enis)
