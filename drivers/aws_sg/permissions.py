"""Security group rules as EC2 sees them (one CIDR peer per rule) and their mapping to normalized rules."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.model import (
    ANY_PORTS,
    ICMP_PROTOCOLS,
    Action,
    AddressSet,
    Direction,
    IPNetwork,
    Provenance,
    Rule,
    parse_protocol,
    shown,
)

DRIVER = "aws_sg"
EC2_PORT_PROTOCOLS = frozenset({6, 17})
"""Protocols whose EC2 rules carry a port range (for every other protocol EC2 ignores ports)."""
PROTOCOL_TEXT = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}
DESCRIPTION_PREFIX = "microseg:"
GROUP_PREFIX = "sg-"
MAX_DESCRIPTION = 255


class Unrepresentable(ValueError):
    """A native rule or an intended rule that has no exact counterpart on the other side."""


@dataclass(frozen=True, slots=True)
class Permission:
    """One EC2 security group rule: direction, protocol, port range (or ICMP type/code) and one peer.

    The peer is a CIDR (``peer`` keeps EC2's text: a rule is named as EC2 stores it; identity uses the
    canonical network) or a security group id (``sg-…``: a reference to the members of that group).
    The description and the rule id are never identity.
    """

    egress: bool
    protocol: str  # "-1", "tcp", "udp", "icmp", "icmpv6" or a protocol number
    from_port: int  # -1 when the protocol has no ports; ICMP type (-1 = any) for icmp/icmpv6
    to_port: int  # -1 when the protocol has no ports; ICMP code (-1 = any) for icmp/icmpv6
    peer: str
    description: str = field(default="", compare=False)
    rule_id: str = field(default="", compare=False)

    @property
    def group(self) -> str | None:
        """The referenced security group's id, or None for a CIDR rule."""
        return self.peer if self.peer.startswith(GROUP_PREFIX) else None

    @property
    def cidr(self) -> str:
        return "" if self.group else self.peer

    @property
    def network(self) -> IPNetwork:
        return ipaddress.ip_network(self.peer, strict=False)

    @property
    def family(self) -> int:
        """4 or 6 for a CIDR rule; 0 for a reference (which matches members of both families)."""
        return 0 if self.group else self.network.version

    @property
    def families(self) -> tuple[int, ...]:
        """The families whose rules quota this rule counts against (a reference: both, to be safe)."""
        return (4, 6) if self.group else (self.network.version,)

    def service(self) -> tuple[bool, str, int, int]:
        return (self.egress, self.protocol, self.from_port, self.to_port)

    def key(self) -> tuple[bool, str, int, int, str]:
        """Identity: what EC2 itself treats as the same rule."""
        return (*self.service(), self.group or str(self.network))

    def stable(self) -> dict[str, Any]:
        """The fingerprinted form: no rule id, no description."""
        peer = {"group": self.group} if self.group else {"cidr": str(self.network)}
        return {"egress": self.egress, "protocol": self.protocol, "from": self.from_port, "to": self.to_port, **peer}

    def ip_permission(self) -> dict[str, Any]:
        """The ``IpPermissions`` item of an authorize/revoke call for this rule alone."""
        item: dict[str, Any] = {"IpProtocol": self.protocol}
        if self.protocol != "-1":
            item["FromPort"] = self.from_port
            item["ToPort"] = self.to_port
        if self.group:
            field_name, peer = "UserIdGroupPairs", {"GroupId": self.group}
        elif self.family == 4:
            field_name, peer = "IpRanges", {"CidrIp": self.peer}
        else:
            field_name, peer = "Ipv6Ranges", {"CidrIpv6": self.peer}
        if self.description:
            peer["Description"] = self.description
        item[field_name] = [peer]
        return item


MONITOR_DESCRIPTION = "microseg monitor: allows everything while the point is monitored"
EVERYWHERE = {4: "0.0.0.0/0", 6: "::/0"}


def monitor_permissions(egress_flags: Iterable[bool], families: Iterable[int]) -> list[Permission]:
    """Monitor mode: an allow-all rule per filtered direction and family beside the policy's rules, so the group
    blocks nothing (rules of security groups add up); its description marks it (evidence of what enforcement
    would deny comes from VPC Flow Logs through ``simulate``)."""
    return [Permission(egress, "-1", -1, -1, EVERYWHERE[family], MONITOR_DESCRIPTION)
            for egress in egress_flags for family in sorted(set(families))]


def is_monitor_marker(permission: Permission) -> bool:
    return (permission.description == MONITOR_DESCRIPTION and permission.protocol == "-1"
            and permission.peer in EVERYWHERE.values())


def canonical_protocol(number: int | None) -> str:
    """EC2's spelling of a protocol: ``-1`` for any, names for tcp/udp/icmp/icmpv6, else the number."""
    if number is None:
        return "-1"
    return PROTOCOL_TEXT.get(number, str(number))





def _port(value: Any, what: str) -> int:
    if value is None:
        return -1
    if isinstance(value, bool) or not isinstance(value, int):
        raise Unrepresentable(f"{what} {shown(value)} is not a number")
    return value


def _text(row: Mapping[str, Any], key: str, default: str) -> str:
    value = row.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Unrepresentable(f"{key} {shown(value)} is not text")
    return str(value)


def permission_from_row(row: Mapping[str, Any]) -> Permission:
    """A ``describe_security_group_rules`` item → Permission; anything microseg cannot model raises."""
    if not isinstance(row, Mapping):
        raise Unrepresentable(f"a rule {shown(row)} is not an object")
    rule_id = _text(row, "SecurityGroupRuleId", "?")
    if row.get("PrefixListId"):
        raise Unrepresentable(f"rule {rule_id} references prefix list {shown(row['PrefixListId'])}: not modelled")
    egress = row.get("IsEgress", False)
    if not isinstance(egress, bool):
        raise Unrepresentable(f"rule {rule_id}: IsEgress {shown(egress)} is not true or false")
    peer = _peer_of(row, rule_id)
    try:
        text = _text(row, "IpProtocol", "")
        number = None if text == "-1" else parse_protocol(text)
    except ValueError as exc:
        raise Unrepresentable(f"rule {rule_id}: {exc}") from None
    low, high = _port(row.get("FromPort"), "FromPort"), _port(row.get("ToPort"), "ToPort")
    if number in EC2_PORT_PROTOCOLS:
        if not 0 <= low <= high <= 65535:
            raise Unrepresentable(f"rule {rule_id}: port range {low}-{high} is not a range")
    elif number in ICMP_PROTOCOLS:
        if not (-1 <= low <= 255 and -1 <= high <= 255) or (low == -1 and high != -1):
            raise Unrepresentable(f"rule {rule_id}: ICMP type {low} code {high} cannot be modelled")
    else:
        low = high = -1
    description = _text(row, "Description", "")
    return Permission(egress, canonical_protocol(number), low, high, peer, description,
                      rule_id if rule_id != "?" else "")


def _peer_of(row: Mapping[str, Any], rule_id: str) -> str:
    """The CIDR or the referenced group's id of a rule row."""
    reference = row.get("ReferencedGroupInfo")
    if reference:
        group = reference.get("GroupId") if isinstance(reference, Mapping) else None
        if not isinstance(group, str) or not group.startswith(GROUP_PREFIX):
            raise Unrepresentable(f"rule {rule_id} references {shown(reference)}, not a security group id")
        return group
    cidr = row.get("CidrIpv4") or row.get("CidrIpv6")
    if not isinstance(cidr, str):
        raise Unrepresentable(f"rule {rule_id} has no CIDR peer")
    try:
        ipaddress.ip_network(cidr, strict=False)
    except ValueError as exc:
        raise Unrepresentable(f"rule {rule_id}: {exc}") from None
    return cidr


def provenance_of(description: str) -> Provenance:
    """The policy rule names a description written by microseg carries (other text becomes a note)."""
    if description.startswith(DESCRIPTION_PREFIX):
        names = tuple(n for n in description[len(DESCRIPTION_PREFIX):].split(",") if n)
        return Provenance(rules=names)
    return Provenance(note=description or None)


def merged_description(permissions: Iterable[Permission]) -> str:
    """The description of one rule standing for ``permissions``: their policy rule names, in order, once each."""
    names: dict[str, None] = {}
    for permission in permissions:
        names.update(dict.fromkeys(provenance_of(permission.description).rules))
    return description_of(Provenance(rules=tuple(names)))


def description_of(provenance: Provenance) -> str:
    """``microseg:rule-a,rule-b`` (EC2 allows 255 characters; longer lists are cut at a name boundary)."""
    text = DESCRIPTION_PREFIX
    for name in provenance.rules:
        candidate = f"{text}{name}," if len(text) + len(name) + 1 <= MAX_DESCRIPTION else None
        if candidate is None:
            break
        text = candidate
    return text.rstrip(",") if provenance.rules else ""


def rule_of(permission: Permission, protected: AddressSet) -> Rule:
    """The normalized rule of one CIDR rule; ``protected`` is the members it applies to (same family)."""
    if permission.group:
        raise ValueError(f"a reference to {permission.group} stands for several rules: expand it first")
    number = None if permission.protocol == "-1" else parse_protocol(permission.protocol)
    peer = AddressSet.of([permission.network])
    ports = ANY_PORTS
    icmp_type = icmp_code = None
    if number in EC2_PORT_PROTOCOLS:
        ports = ((permission.from_port, permission.to_port),)
    elif number in ICMP_PROTOCOLS and permission.from_port != -1:
        icmp_type = permission.from_port
        icmp_code = None if permission.to_port == -1 else permission.to_port
    direction = Direction.EGRESS if permission.egress else Direction.INGRESS
    src, dst = (protected, peer) if permission.egress else (peer, protected)
    return Rule(Action.PERMIT, direction, number, src, dst, dst_ports=ports, icmp_type=icmp_type,
                icmp_code=icmp_code, provenance=provenance_of(permission.description))


def family_part(addresses: AddressSet, version: int) -> AddressSet:
    """The networks of one address family."""
    return AddressSet(addresses.v4 if version == 4 else addresses.v6)


def permission_of(rule: Rule, members: AddressSet) -> Permission:
    """The one EC2 rule an intended rule becomes; rules EC2 cannot hold exactly raise Unrepresentable."""
    what = f"{rule.direction.value} {rule.service_text()}"
    if rule.action is not Action.PERMIT:
        raise Unrepresentable(f"{what}: a security group can only allow, not {rule.action.value}")
    if rule.log:
        raise Unrepresentable(f"{what}: security groups cannot log per rule")
    if rule.src_ports != ANY_PORTS:
        raise Unrepresentable(f"{what}: security groups cannot match source ports")
    egress = rule.direction is Direction.EGRESS
    peer, protected = (rule.dst, rule.src) if egress else (rule.src, rule.dst)
    if len(peer.networks) != 1:
        raise Unrepresentable(f"{what}: an EC2 rule names exactly one CIDR peer, not {peer}")
    network = peer.networks[0]
    expected = family_part(members, network.version)
    if protected != expected:
        raise Unrepresentable(f"{what} with {network}: a security group rule applies to exactly the IPv"
                              f"{network.version} members ({expected or 'none'}), not to {protected or 'none'}")
    low = high = -1
    if rule.protocol in EC2_PORT_PROTOCOLS:
        if len(rule.dst_ports) != 1:
            raise Unrepresentable(f"{what}: an EC2 rule holds one port range")
        low, high = rule.dst_ports[0]
    elif rule.dst_ports != ANY_PORTS:
        raise Unrepresentable(f"{what}: EC2 ignores ports for this protocol")
    elif rule.protocol in ICMP_PROTOCOLS and rule.icmp_type is not None:
        low = rule.icmp_type
        high = -1 if rule.icmp_code is None else rule.icmp_code
    return Permission(egress, canonical_protocol(rule.protocol), low, high, str(network),
                      description_of(rule.provenance))


def ip_permissions(permissions: Iterable[Permission]) -> list[dict[str, Any]]:
    """``IpPermissions`` for one authorize/revoke call: one item per rule, in canonical order."""
    return [p.ip_permission() for p in sorted(permissions, key=Permission.key)]
