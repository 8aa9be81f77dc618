"""Resolution of policy references: groups → concrete address sets, service names → matches.

Pure: takes the merged policy and the workloads, returns resolved values.
Cycles and unknown names are reported by the loader; this module still fails
cleanly (PolicyError) if handed a policy that was not loaded through it.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from orchestrator.model.errors import PolicyError
from orchestrator.model.policy import (
    ANY_GROUP,
    NOT_INTERNET,
    PRIVATE_V4,
    PRIVATE_V6,
    ExternalName,
    Group,
    Policy,
    PolicyRule,
    Selector,
    Service,
    is_inline_service,
    parse_service_spec,
)
from orchestrator.model.rules import ANY_ADDRESS, AddressSet, IPNetwork, PortSet


class LabelledWorkload(Protocol):
    """What resolution needs of a workload (see ``orchestrator.inventory.workloads.Workload``)."""

    @property
    def name(self) -> str: ...

    @property
    def addresses(self) -> Sequence[object]: ...

    @property
    def labels(self) -> Mapping[str, str]: ...


@dataclass(frozen=True, slots=True)
class ResolvedGroup:
    """A group turned into addresses; ``raw`` keeps the un-collapsed entries (for naive sizing)."""

    name: str
    addresses: AddressSet
    workloads: tuple[str, ...]
    external: bool
    raw: tuple[IPNetwork, ...]

    @property
    def empty(self) -> bool:
        return not self.addresses

    def raw_count_within(self, scope: AddressSet) -> int:
        """How many raw entries overlap ``scope`` (each workload address, CIDR … counted once)."""
        bounds = {4: scope.intervals(4), 6: scope.intervals(6)}
        starts = {v: [lo for lo, _ in iv] for v, iv in bounds.items()}
        count = 0
        for net in self.raw:
            iv, lo, hi = bounds[net.version], int(net.network_address), int(net.broadcast_address)
            i = bisect_right(starts[net.version], hi) - 1
            if i >= 0 and iv[i][1] >= lo:
                count += 1
        return count


@dataclass(frozen=True, slots=True)
class ServiceMatch:
    """One protocol-level match a service stands for."""

    protocol: int | None
    src_ports: PortSet
    dst_ports: PortSet
    icmp_type: int | None
    icmp_code: int | None

    @classmethod
    def of(cls, service: Service) -> ServiceMatch:
        return cls(service.protocol, service.src_ports, service.dst_ports, service.type, service.code)


def external_addresses(name: ExternalName) -> AddressSet:
    """The addresses of a built-in external group."""
    if name is ExternalName.ANY:
        return ANY_ADDRESS
    if name is ExternalName.PRIVATE:
        return AddressSet.of([*PRIVATE_V4, *PRIVATE_V6])
    return ANY_ADDRESS.difference(AddressSet.of(NOT_INTERNET))


def workload_addresses(workloads: Iterable[LabelledWorkload]) -> tuple[AddressSet, tuple[IPNetwork, ...]]:
    nets = tuple(ipaddress.ip_network(str(a)) for workload in workloads for a in workload.addresses)
    return AddressSet.of(nets), nets


def select_workloads(selector: Selector, workloads: Iterable[LabelledWorkload]) -> list[LabelledWorkload]:
    return [w for w in workloads if selector.matches(w.labels)]


class LabelIndex:
    """Workloads by label value, so a selector only tests the workloads its equalities allow."""

    def __init__(self, workloads: Sequence[LabelledWorkload]) -> None:
        self._workloads = workloads
        self._by_value: dict[tuple[str, str], set[int]] = {}
        for index, workload in enumerate(workloads):
            for key, value in workload.labels.items():
                self._by_value.setdefault((key, value), set()).add(index)

    def select(self, selector: Selector) -> list[LabelledWorkload]:
        """Exactly ``select_workloads(selector, workloads)``, in workload order."""
        candidates: set[int] | None = None
        for key, cond in selector.root.items():
            if isinstance(cond, str):
                allowed = self._by_value.get((key, cond), set())
            elif isinstance(cond, tuple):
                allowed = set().union(*(self._by_value.get((key, v), set()) for v in cond))
            else:
                continue  # exists / not: checked on the candidates below
            candidates = allowed if candidates is None else candidates & allowed
        pool = range(len(self._workloads)) if candidates is None else sorted(candidates)
        return [self._workloads[i] for i in pool if selector.matches(self._workloads[i].labels)]


class GroupResolver:
    """Resolves group names to :class:`ResolvedGroup`, memoized, detecting cycles."""

    def __init__(self, groups: Mapping[str, Group], workloads: Sequence[LabelledWorkload]) -> None:
        self._groups = groups
        self._labels = LabelIndex(workloads)
        self._done: dict[str, ResolvedGroup] = {
            ANY_GROUP: ResolvedGroup(ANY_GROUP, ANY_ADDRESS, (), external=True, raw=ANY_ADDRESS.networks)
        }
        self._active: list[str] = []

    def resolve(self, name: str) -> ResolvedGroup:
        if name in self._done:
            return self._done[name]
        if name in self._active:
            cycle = " → ".join([*self._active[self._active.index(name) :], name])
            raise PolicyError(f"group cycle: {cycle}")
        group = self._groups.get(name)
        if group is None:
            raise PolicyError(f"unknown group {name!r}")
        self._active.append(name)
        try:
            resolved = self._resolve_group(name, group)
        finally:
            self._active.pop()
        self._done[name] = resolved
        return resolved

    def _resolve_group(self, name: str, group: Group) -> ResolvedGroup:
        members: tuple[str, ...] = ()
        external = False
        if group.selector is not None:
            chosen = self._labels.select(group.selector)
            addresses, raw = workload_addresses(chosen)
            members = tuple(sorted(w.name for w in chosen))
        elif group.cidrs is not None:
            addresses, raw = AddressSet.of(group.cidrs), tuple(group.cidrs)
        elif group.external is not None:
            addresses, external = external_addresses(group.external), True
            raw = addresses.networks
        else:
            parts = [self.resolve(member) for member in group.groups or ()]
            addresses = AddressSet.of([n for part in parts for n in part.addresses.networks])
            raw = tuple(n for p in parts for n in p.raw)
            members = tuple(sorted({w for p in parts for w in p.workloads}))
            external = any(p.external for p in parts)
        if group.except_:
            addresses = addresses.difference(AddressSet.of(group.except_))
        return ResolvedGroup(name, addresses, members, external, raw)

    def resolve_all(self) -> dict[str, ResolvedGroup]:
        return {name: self.resolve(name) for name in sorted(self._groups)}

    def union(self, names: Iterable[str]) -> ResolvedGroup:
        """The union of several groups (a rule's ``from`` or ``to`` list)."""
        parts = [self.resolve(n) for n in names]
        if len(parts) == 1:
            return parts[0]
        addresses = AddressSet.of([n for part in parts for n in part.addresses.networks])  # one collapse for all
        return ResolvedGroup(
            "+".join(p.name for p in parts),
            addresses,
            tuple(sorted({w for p in parts for w in p.workloads})),
            any(p.external for p in parts),
            tuple(n for p in parts for n in p.raw),
        )


def resolve_services(policy: Policy, refs: Iterable[str]) -> tuple[ServiceMatch, ...]:
    """Service, service-group and inline references → distinct matches, in first-seen order."""
    out: dict[ServiceMatch, None] = {}
    stack: list[str] = []

    def visit(ref: str) -> None:
        if ref in policy.services:
            out.setdefault(ServiceMatch.of(policy.services[ref]))
        elif ref in policy.service_groups:
            if ref in stack:
                raise PolicyError(f"service group cycle: {' → '.join([*stack, ref])}")
            stack.append(ref)
            for member in policy.service_groups[ref]:
                visit(member)
            stack.pop()
        elif is_inline_service(ref):
            try:
                out.setdefault(ServiceMatch.of(parse_service_spec(ref)))
            except ValueError as exc:
                raise PolicyError(str(exc)) from exc
        else:
            raise PolicyError(f"unknown service {ref!r}")

    for ref in refs:
        visit(ref)
    return tuple(out)


def rule_services(policy: Policy, rule: PolicyRule) -> tuple[ServiceMatch, ...]:
    return resolve_services(policy, rule.services)
