"""SG-to-SG references between managed groups: chosen by render where they save rules, read back as addresses.

The core's rules carry addresses only.  When the peers of one service (direction, protocol, ports) of the
intended rules include exactly the networks of another managed group's members, render writes one rule that
references that group (``UserIdGroupPairs``) in place of those CIDR rules; normalize expands a reference back
into one CIDR rule per network of the referenced group's current members, so the diff stays address-based.

EC2 matches a reference against every private address of the ENIs carrying the group, IPv4 and IPv6: a
reference is only written when the intended rules hold its members of both families — except a family that
the protected ENIs do not have at all (where that half of the reference cannot match anything).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from drivers.aws_sg.permissions import Permission, Unrepresentable, family_part, merged_description
from orchestrator.model import AddressSet

MIN_REPLACED = 2
"""A reference is written only where it stands for at least this many CIDR rules (else it saves nothing and
ties the point's state to another group's membership)."""
FAMILIES = (4, 6)


def families_of(addresses: Iterable[str]) -> set[int]:
    """The address families present among ``addresses`` (ENI addresses, without prefix length)."""
    return {6 if ":" in a else 4 for a in addresses}


def _applies(family: int, protected: AddressSet, present: Collection[int]) -> bool:
    """Whether a reference's half of ``family`` can match: the group protects addresses of that family."""
    return bool(family_part(protected, family)) or family in present


def reference_networks(addresses: Sequence[str], protected: AddressSet, present: Collection[int]) -> list[str]:
    """The CIDRs a reference to a group with these member ``addresses`` stands for, on ENIs as described."""
    members = AddressSet.of(list(addresses))
    out: list[str] = []
    for family in FAMILIES:
        if _applies(family, protected, present):
            out += [str(n) for n in family_part(members, family).networks]
    return out


def expand(permission: Permission, info: Mapping[str, Any] | None, protected: AddressSet,
           present: Collection[int], group_name: str) -> list[Permission]:
    """The CIDR permissions a reference stands for now; a reference microseg cannot read raises Unrepresentable."""
    where = f"rule {permission.rule_id or '?'} of {group_name} references {permission.group}"
    if info is None or info.get("missing"):
        raise Unrepresentable(f"{where}, which is not a security group of this VPC (another VPC or account, or "
                              f"deleted): its members cannot be read, so what it allows is unknown — remove it")
    if info.get("delegated"):
        raise Unrepresentable(f"{where}, whose ENIs have delegated prefixes (not modelled): remove the rule")
    networks = reference_networks(info["addresses"], protected, present)
    return [replace(permission, peer=network) for network in networks]


def _needed(peer: Mapping[str, Any], protected: AddressSet, present: Collection[int]) -> list[str]:
    """What a reference to ``peer`` matches on the protected ENIs: its member networks of each family that applies."""
    return [n for family, key in ((4, "v4"), (6, "v6")) if _applies(family, protected, present) for n in peer[key]]


def compress(want: Mapping[tuple[Any, ...], Permission], peers: Sequence[Mapping[str, Any]], protected: AddressSet,
             present: Collection[int], own: str | None) -> tuple[dict[tuple[Any, ...], Permission],
                                                              dict[str, list[str]]]:
    """``want`` with a reference in place of the CIDR rules of each service that hold a peer group's members.

    ``peers``: the managed groups of the VPC (``id``, ``addresses``, member networks ``v4`` / ``v6``); ``own``:
    this point's group (never referenced: its members change with this very change).  Returns the permissions
    and, per referenced group, the members it was chosen for (apply checks they are still the members).
    Larger groups are tried first; each CIDR rule is replaced at most once.
    """
    services: dict[tuple[bool, str, int, int], dict[str, Permission]] = {}
    for permission in want.values():
        if not permission.group:
            services.setdefault(permission.service(), {})[str(permission.network)] = permission
    wanted = {n for available in services.values() for n in available}
    out = dict(want)
    chosen: dict[str, list[str]] = {}
    for peer in sorted(peers, key=lambda p: (-len(p["addresses"]), str(p["id"]))):
        needed = _needed(peer, protected, present)
        if peer["id"] == own or len(needed) < MIN_REPLACED or not wanted.issuperset(needed):
            continue
        for service, available in sorted(services.items()):
            if not all(n in available for n in needed):
                continue
            replaced = [available.pop(n) for n in needed]
            for permission in replaced:
                del out[permission.key()]
            reference = Permission(*service, str(peer["id"]), merged_description(replaced))
            out[reference.key()] = reference
            chosen[str(peer["id"])] = list(peer["addresses"])
    return out, chosen
