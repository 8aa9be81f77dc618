"""Application security groups (ASGs), address-based: an ASG stands for the private addresses of its members.

fetch reads each configured ASG (``application_security_groups.get``) and its members: the private addresses of
the NIC ip-configurations that reference it (``network_interfaces.list``, paged).  normalize expands an ASG in an
owned rule to those addresses, so the diff stays address-based; render writes an ASG where a rule side's
addresses are exactly its members.  An Azure rule with an ASG matches every member address of the packet's
family, so each side is only widened to the families the other side can match (a prefix side pins its family).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from drivers.azure_nsg.layout import DRIVER, NsgSettings, Unreadable, asg_part
from orchestrator.model import ANY_ADDRESS, AddressSet, ParseError, Rule, shown

FAMILIES = frozenset({4, 6})


@dataclass(frozen=True, slots=True)
class Asg:
    """One configured ASG as fetched: whether ARM has it, its region, members and their virtual networks."""

    id: str
    found: bool
    location: str | None
    members: AddressSet
    vnets: tuple[str, ...] = ()  # lower-case ids of the virtual networks of the members' subnets

    @property
    def name(self) -> str:
        return asg_part(self.id, 3) or self.id.rsplit("/", 1)[-1]

    def family(self, version: int) -> AddressSet:
        return AddressSet(self.members.v4 if version == 4 else self.members.v6)


def only(addresses: AddressSet, families: Iterable[int]) -> AddressSet:
    """The networks of ``addresses`` of the given families."""
    keep = set(families)
    return AddressSet(tuple(n for n in addresses.networks if n.version in keep))


def same_region(a: str | None, b: str | None) -> bool:
    """ARM region names compare without case and spaces ("West Europe" is "westeurope")."""
    return a is not None and b is not None and a.replace(" ", "").lower() == b.replace(" ", "").lower()


class AsgIndex:
    """The configured ASGs of a snapshot, by resource id (case-insensitive, as ARM ids are)."""

    def __init__(self, asgs: Iterable[Asg] = ()) -> None:
        self._by_id = {a.id.lower(): a for a in asgs}

    def __bool__(self) -> bool:
        return bool(self._by_id)

    @classmethod
    def from_native(cls, entries: Any, point: str) -> AsgIndex:
        """Decode a snapshot's ``asgs`` list (absent: no ASG configured); a malformed one raises ParseError."""
        if entries is None:
            return cls()
        try:
            return cls(Asg(str(e["id"]), bool(e["found"]), e.get("location"), AddressSet.of(e["members"]),
                           tuple(e.get("vnets") or ())) for e in entries)
        except (AttributeError, TypeError, KeyError, ValueError) as exc:
            raise ParseError(f"the snapshot's application security groups are unreadable: {exc}", point=point,
                             driver=DRIVER) from exc

    def resolve(self, reference: object, side: str) -> Asg:
        """The ASG a rule references; one microseg cannot read raises Unreadable (fail closed)."""
        ref_id = reference.get("id") if isinstance(reference, Mapping) else None
        if not isinstance(ref_id, str) or not ref_id:
            raise Unreadable(f"{side}ApplicationSecurityGroups entry {shown(reference)} has no id")
        asg = self._by_id.get(ref_id.lower())
        if asg is None:
            raise Unreadable(f"{side} application security group {ref_id} is not in the setting "
                             f"application_security_groups: its members are unknown (list it, or remove the rule)")
        if not asg.found:
            raise Unreadable(f"{side} application security group {ref_id} was not found in Azure: what the rule "
                             f"matches is unknown")
        return asg

    def matching(self, addresses: AddressSet, version: int, location: str | None) -> Asg | None:
        """The found ASG in ``location`` whose ``version`` members are exactly ``addresses`` (non-empty)."""
        for asg in sorted(self._by_id.values(), key=lambda a: a.id.lower()):
            if asg.found and same_region(asg.location, location) and addresses and asg.family(version) == addresses:
                return asg
        return None


def side_members(props: Mapping[str, Any], side: str, index: AsgIndex) -> AddressSet | None:
    """The members of the ASGs on one side of a rule (None: the side holds prefixes, not ASGs)."""
    refs = props.get(f"{side}ApplicationSecurityGroups")
    if not refs:
        return None
    if not isinstance(refs, list):
        raise Unreadable(f"{side}ApplicationSecurityGroups is not a list")
    if props.get(f"{side}AddressPrefix") or props.get(f"{side}AddressPrefixes"):
        raise Unreadable(f"both {side}ApplicationSecurityGroups and {side} address prefixes are set")
    members = AddressSet()
    for ref in refs:
        members = members.union(index.resolve(ref, side).members)
    return members


def effective(src: AddressSet, dst: AddressSet, src_asg: bool, dst_asg: bool) -> tuple[AddressSet, AddressSet]:
    """An ASG side narrowed to the families the other side can match (a packet is of one family)."""
    def families(side: AddressSet) -> frozenset[int]:
        return FAMILIES if side == ANY_ADDRESS else side.families

    common = families(src) & families(dst)
    return (only(src, common) if src_asg else src), (only(dst, common) if dst_asg else dst)


def choices(rule: Rule, index: AsgIndex, location: str | None) -> list[dict[str, Asg]]:
    """Ways to write ``rule`` with ASGs (side → ASG), best first; render keeps the first that reads back exactly.

    At most one ASG per side; two in one rule only from one virtual network (ARM's rule).  An ICMP rule takes an
    ASG only opposite a prefix side, which pins IPv4 (Azure's Icmp on IPv6 is not modelled: a member gaining an
    IPv6 address must not make the rule unreadable).
    """
    family = next((f for side in (rule.src, rule.dst) if side != ANY_ADDRESS for f in side.families), None)
    if family is None or not index:
        return []
    picks: dict[str, Asg] = {}
    for side, addresses, other in (("source", rule.src, rule.dst), ("destination", rule.dst, rule.src)):
        if addresses == ANY_ADDRESS or (rule.protocol == 1 and other == ANY_ADDRESS):
            continue
        asg = index.matching(addresses, family, location)
        if asg is not None:
            picks[side] = asg
    out: list[dict[str, Asg]] = []
    if len(picks) == 2 and rule.protocol != 1 and _one_vnet(picks.values()):
        out.append(picks)
    return out + [{side: asg} for side, asg in picks.items()]


def _one_vnet(asgs: Iterable[Asg]) -> bool:
    vnets = {v for asg in asgs for v in asg.vnets}
    return len(vnets) == 1 and all(asg.vnets for asg in asgs)


def collect_members(nics: Iterable[Any], wanted: Iterable[str], point: str) -> dict[str, tuple[list[str], set[str]]]:
    """ASG id (lower case) → (member addresses, virtual network ids) from NIC models of azure-mgmt-network."""
    out: dict[str, tuple[list[str], set[str]]] = {w.lower(): ([], set()) for w in wanted}
    for nic in nics:
        for config in getattr(nic, "ip_configurations", None) or []:
            for ref in config.application_security_groups or []:
                found = out.get(str(ref.id or "").lower())
                if found is None or not config.private_ip_address:
                    continue
                try:
                    found[0].append(str(ipaddress.ip_address(config.private_ip_address)))
                except ValueError as exc:
                    raise ParseError(f"NIC {nic.name}: private address {config.private_ip_address!r} is not an IP "
                                     f"address", point=point, driver=DRIVER) from exc
                subnet = config.subnet.id if config.subnet is not None else None
                if subnet:
                    found[1].add(subnet.lower().split("/subnets/")[0])
    return out


def native_entries(settings: NsgSettings, fetched: Mapping[str, Mapping[str, Any] | None],
                   members: Mapping[str, tuple[Sequence[str], set[str]]]) -> list[dict[str, Any]]:
    """The snapshot's ``asgs`` list: per configured ASG, in settings order, everything the fingerprint covers."""
    out: list[dict[str, Any]] = []
    for asg_id in settings.application_security_groups:
        found = fetched.get(asg_id)
        addresses, vnets = members.get(asg_id.lower(), ([], set()))
        ordered = sorted(set(addresses), key=lambda a: (ipaddress.ip_address(a).version, ipaddress.ip_address(a)))
        out.append({"id": asg_id, "found": found is not None, "location": (found or {}).get("location"),
                    "members": ordered if found else [], "vnets": sorted(vnets) if found else []})
    return out
