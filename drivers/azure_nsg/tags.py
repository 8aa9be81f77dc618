"""Service tags in the NSG rules someone else wrote, for ``microseg adopt``: what Azure says each tag stands for
at each of the point's network interfaces (pure; the ARM calls are the transport's).

A rule's ``VirtualNetwork``, ``AzureLoadBalancer``, ``Internet`` (or ``Storage`` …) is an address set the NSG does
not spell out, and it depends on where the NIC is: ``VirtualNetwork`` is the NIC's virtual network address space,
its peered networks, the networks behind its gateway, the host's virtual IP and the prefixes of user-defined
routes (learn.microsoft.com, "Virtual network service tags").  Azure publishes what it applies per NIC: the
effective security rules (``POST …/networkInterfaces/{nic}/effectiveNetworkSecurityGroups``) list, per NSG that
applies to the NIC, each rule that names a tag with its ``expandedSourceAddressPrefix`` /
``expandedDestinationAddressPrefix`` (the "security group view" example of the Network Watcher documentation,
MicrosoftDocs/azure-docs, shows ``VirtualNetwork`` as ``["10.1.0.0/24", "168.63.129.16/32"]``), and a ``tagMap``
(tag → prefixes; a JSON text in current API versions).  Both are read; where they disagree about a tag, the tag
is not resolved.

The point's members are grouped by their NIC's expansions (NICs of one subnet share them), so a rule with a tag
becomes one rule per group, each cut to its group's members — exact, because each member is filtered by what
Azure applies at its own NIC.  Member addresses no listed NIC holds, an address two NICs with different expansions
hold (virtual networks may reuse address space), NICs the NSG does not apply to, and NICs whose effective rules
Azure will not give (a NIC not attached to a running VM, an answer that cannot be read) are named: their tags
stay unknown, so no proposal is proven equivalent while a rule needs them.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.model import AddressSet, IPNetwork, PermanentDriverError, shown

# tag → its addresses, tag names lower-case (Azure compares them without case)
TagMap = Mapping[str, AddressSet]


@dataclass(frozen=True, slots=True)
class TagGroup:
    """Members whose NICs see the same expansions, and those expansions."""

    members: AddressSet
    tags: TagMap
    problems: Mapping[str, str]  # tag → why its expansion at these NICs is unknown (the sources disagree …)
    nics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ServiceTags:
    """The point's members by their tag expansions; ``unresolved`` the members whose expansions are unknown."""

    groups: tuple[TagGroup, ...]
    unresolved: tuple[tuple[AddressSet, str], ...] = ()

    def why_unknown(self, tags: Iterable[str]) -> list[str]:
        """Why these tags (as a rule names them) are not known at every member: one line per reason."""
        out = [f"members {members.abbreviated()}: {why}" for members, why in self.unresolved]
        for group in self.groups:
            for tag in tags:
                key = tag.lower()
                if key in group.tags:
                    continue
                why = group.problems.get(key, "the effective rules give no expansion of it")
                out.append(f"{tag} at NIC {', '.join(group.nics)}: {why}")
        return out


@dataclass(frozen=True, slots=True)
class Nic:
    """A network interface as listed: its resource id, name and private addresses."""

    id: str
    name: str
    addresses: tuple[str, ...]


def nics_of(models: Iterable[Any]) -> list[Nic]:
    """NIC models of azure-mgmt-network → :class:`Nic` (ip-configurations without a valid private address are
    left out: they hold no member)."""
    out: list[Nic] = []
    for nic in models:
        addresses: list[str] = []
        for config in getattr(nic, "ip_configurations", None) or []:
            try:
                addresses.append(str(ipaddress.ip_address(str(config.private_ip_address))))
            except ValueError:
                continue
        if nic.id:
            out.append(Nic(str(nic.id), str(nic.name or nic.id.rsplit("/", 1)[-1]), tuple(addresses)))
    return out


def expansions(answer: object, nsg_id: str) -> tuple[dict[str, AddressSet], dict[str, str], str | None]:
    """(tag → addresses, tag → why unknown, why nothing was read) from one NIC's effective-NSG answer, for the NSG
    ``nsg_id`` only (another NSG on the subnet or NIC expands tags the same, but is not what is adopted)."""
    entries = answer.get("value") if isinstance(answer, Mapping) else None
    if not isinstance(entries, list):
        return {}, {}, f"the effective security rules answer has no value list: {shown(answer)}"
    mine = [e for e in entries if isinstance(e, Mapping) and _id(e.get("networkSecurityGroup")) == nsg_id.lower()]
    if not mine:
        return {}, {}, "the NSG does not apply to it (Azure's effective security rules do not list it)"
    found: dict[str, AddressSet] = {}
    problems: dict[str, str] = {}

    def add(tag: str, prefixes: object, where: str) -> None:
        key = tag.lower()
        if key in problems:
            return
        try:
            addresses = _prefixes(prefixes)
        except ValueError as exc:
            problems[key] = f"{where}: {exc}"
            found.pop(key, None)
            return
        if key in found and found[key] != addresses:
            problems[key] = f"{where} disagrees with another expansion of it ({addresses.abbreviated()} vs " \
                            f"{found[key].abbreviated()})"
            del found[key]
            return
        found[key] = addresses

    for entry in mine:
        tag_map = entry.get("tagMap")
        if isinstance(tag_map, str):
            try:
                tag_map = json.loads(tag_map)
            except (ValueError, RecursionError):  # not JSON, or nested past the parser: the rules' expansions stay
                tag_map = None
        if isinstance(tag_map, Mapping):
            for tag, prefixes in tag_map.items():
                if isinstance(tag, str):
                    add(tag, prefixes, "tagMap")
        rules = entry.get("effectiveSecurityRules")
        for rule in rules if isinstance(rules, list) else ():
            if not isinstance(rule, Mapping):
                continue
            for side in ("Source", "Destination"):
                tag, expanded = rule.get(f"{side.lower()}AddressPrefix"), rule.get(f"expanded{side}AddressPrefix")
                if isinstance(tag, str) and _is_tag(tag) and isinstance(expanded, list) and expanded:
                    add(tag, expanded, f"rule {shown(rule.get('name'))}")
    return found, problems, None


def resolve(members: AddressSet, nics: Iterable[Nic], effective: Callable[[Nic], object],
            nsg_id: str) -> ServiceTags:
    """Group ``members`` by the tag expansions Azure applies at their NICs (``effective`` answers one NIC's
    effective-NSG request; a PermanentDriverError it raises names the NIC, not the run)."""
    holding: list[tuple[Nic, AddressSet]] = []
    covered = AddressSet(())
    for nic in nics:
        mine = AddressSet.of([a for a in nic.addresses if members.overlaps(AddressSet.of([a]))])
        if mine:
            holding.append((nic, mine))
            covered = covered.union(mine)
    unresolved: list[tuple[AddressSet, str]] = []
    rest = members.difference(covered)
    if rest:
        unresolved.append((rest, "no network interface listed holds them (NICs are listed in the resource groups "
                                  "of the NSG and of the configured ASGs, or with `asg_member_scope: subscription` "
                                  "in the subscription; scale-set VM NICs are not listed)"))
    by_view: dict[tuple[frozenset[tuple[str, AddressSet]], frozenset[tuple[str, str]]], list[tuple[Nic, AddressSet]]]
    by_view = {}
    for nic, mine in holding:
        try:
            answer = effective(nic)
        except PermanentDriverError as exc:
            unresolved.append((mine, f"NIC {nic.name}: {exc}"))
            continue
        found, problems, failed = expansions(answer, nsg_id)
        if failed is not None:
            unresolved.append((mine, f"NIC {nic.name}: {failed}"))
            continue
        by_view.setdefault((frozenset(found.items()), frozenset(problems.items())), []).append((nic, mine))
    views = []
    for (found_items, problem_items), held in by_view.items():
        group_members = AddressSet(())
        for _, mine in held:
            group_members = group_members.union(mine)
        views.append(TagGroup(group_members, dict(found_items), dict(problem_items), tuple(n.name for n, _ in held)))
    # an address two NICs hold (virtual networks may reuse address space) whose views differ: which NIC a packet
    # reaches is not known here, so neither view is known to apply to it
    shared = AddressSet(())
    for index, one in enumerate(views):
        for other in views[index + 1:]:
            both = one.members.intersection(other.members)
            if both:
                unresolved.append((both, f"held by NICs that see different expansions ({', '.join(one.nics)}; "
                                         f"{', '.join(other.nics)})"))
                shared = shared.union(both)
    groups = tuple(TagGroup(g.members.difference(shared), g.tags, g.problems, g.nics) for g in views
                   if g.members.difference(shared))
    return ServiceTags(groups, tuple(unresolved))


def _id(ref: object) -> str:
    value = ref.get("id") if isinstance(ref, Mapping) else None
    return value.lower() if isinstance(value, str) else ""


def _is_tag(text: str) -> bool:
    """A rule's address field that is neither ``*`` nor a prefix."""
    if text == "*":
        return False
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return True
    return False


def _prefixes(values: object) -> AddressSet:
    if not isinstance(values, list) or not values:
        raise ValueError(f"{shown(values)} is not a list of prefixes")
    networks: list[IPNetwork] = []
    for value in values:
        try:
            if not isinstance(value, str):
                raise ValueError
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ValueError(f"{shown(value)} is not an address prefix") from None
    return AddressSet.of(networks)
