"""Pure inventory data: workloads, enforcement points, and the address scope each point protects."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeAlias, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from orchestrator.model.errors import Diagnostic, InventoryError, Location
from orchestrator.model.policy import Name, Network, Selector
from orchestrator.model.rules import AddressSet, Direction, IPNetwork, Mode
from orchestrator.model.suggest import name_hint

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
BOTH_DIRECTIONS: frozenset[Direction] = frozenset({Direction.INGRESS, Direction.EGRESS})


# --------------------------------------------------------------------------- workloads


def _parse_address(value: object) -> IPAddress:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected an IP address string, got {type(value).__name__}")
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        hint = " (a workload address is one host address, not a CIDR)" if "/" in value else ""
        raise ValueError(f"invalid IP address {value!r}{hint}") from None


def _one_or_many(value: object) -> object:
    return (value,) if isinstance(value, str) else value


def _label_value(value: object) -> object:
    if isinstance(value, bool):
        text = str(value).lower()
        raise ValueError(f"label value {text} is a boolean: quote it ('{text}') to use it as text")
    if isinstance(value, int | float):
        return str(value)
    return value


Address = Annotated[IPAddress, BeforeValidator(_parse_address)]
LabelText = Annotated[str, BeforeValidator(_label_value)]


class Workload(BaseModel):
    """A named thing with addresses and labels that policy selectors match."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name
    addresses: Annotated[tuple[Address, ...], BeforeValidator(_one_or_many)] = Field(min_length=1)
    labels: dict[LabelText, LabelText] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique_addresses(self) -> Workload:
        seen: list[IPAddress] = []
        for address in self.addresses:
            if address in seen:
                raise ValueError(f"address {address} is listed twice")
            seen.append(address)
        return self

    @property
    def networks(self) -> AddressSet:
        """The workload's addresses as host networks (/32, /128)."""
        return AddressSet.of(ipaddress.ip_network(a) for a in self.addresses)


# --------------------------------------------------------------------------- enforcement points


class Protects(BaseModel):
    """What an enforcement point protects: subnets, a label selector and/or named workloads (union)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subnets: Annotated[tuple[Network, ...], BeforeValidator(_one_or_many)] = ()
    selector: Selector | None = None
    workloads: Annotated[tuple[Name, ...], BeforeValidator(_one_or_many)] = ()

    @model_validator(mode="after")
    def _not_empty(self) -> Protects:
        if not self.subnets and self.selector is None and not self.workloads:
            raise ValueError("protects needs at least one of subnets, selector, workloads")
        return self


@dataclass(frozen=True, slots=True, kw_only=True)
class EnforcementPoint:
    """One place where microseg enforces policy (a host firewall, a switch ACL, a cloud control)."""

    name: str
    driver: str
    protects: Protects = field(hash=False)
    hostname: str | None = None
    platform: str | None = None
    groups: tuple[str, ...] = ()
    """The Nornir groups the host lists itself, in its order."""
    all_groups: tuple[str, ...] = ()
    """Every Nornir group the host belongs to (parents included), in Nornir precedence order."""
    directions: frozenset[Direction] = BOTH_DIRECTIONS
    mode: Mode | None = None
    """``enforce`` or ``monitor`` for this point alone (inventory ``mode``); None: the policy's ``defaults.mode``."""
    queue: str = "default"
    """The Celery queue whose workers reach this point (inventory ``queue``; ``--executor celery``)."""
    management: AddressSet = field(default_factory=AddressSet)
    capabilities_overrides: dict[str, Any] = field(default_factory=dict, hash=False)
    settings: dict[str, Any] = field(default_factory=dict, hash=False)
    location: Location | None = field(default=None, compare=False)


def selected_workloads(point: EnforcementPoint, workloads: Iterable[Workload]) -> tuple[Workload, ...]:
    """The workloads inside the point's scope: matched by its selector or named in it."""
    names = set(point.protects.workloads)
    selector = point.protects.selector
    return tuple(
        w for w in workloads if w.name in names or (selector is not None and selector.matches(w.labels))
    )


def protected_addresses(point: EnforcementPoint, workloads: Iterable[Workload]) -> AddressSet:
    """The protected scope of ``point``: its subnets plus the addresses of its selected and named workloads."""
    networks: list[IPNetwork] = list(point.protects.subnets)
    for workload in selected_workloads(point, workloads):
        networks.extend(workload.networks.networks)
    return AddressSet.of(networks)


# --------------------------------------------------------------------------- the inventory


def _by_name(items: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(sorted(items, key=lambda item: item.name))


_Named = TypeVar("_Named", EnforcementPoint, Workload)


def _named(items: tuple[_Named, ...], name: str, noun: str, code: str) -> _Named:
    for item in items:
        if item.name == name:
            return item
    hint = name_hint(name, [i.name for i in items], noun=f"{noun}s")
    raise InventoryError(f"unknown {noun} {name!r} ({hint})", [Diagnostic(f"unknown {noun} {name!r}", code=code,
                                                                          hint=hint)])


@dataclass(frozen=True, slots=True)
class PluginData:
    """What a Nornir inventory plugin built, in the shape of the SimpleInventory files (hosts, groups and
    defaults by file name), and where it comes from (``config.yaml (Nornir inventory plugin NAME)``): read once,
    checked like the files (secret references too), with no lines to point at."""

    origin: str
    files: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Inventory:
    """Every enforcement point and workload of an estate, sorted by name, with the warnings of loading."""

    points: tuple[EnforcementPoint, ...] = ()
    workloads: tuple[Workload, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()
    groups: tuple[str, ...] = ()
    """Every Nornir group name defined in the inventory."""
    not_points: tuple[str, ...] = ()
    """Hosts of the Nornir inventory without ``data.microseg`` (anywhere: host, groups, defaults): not points."""
    plugin_data: PluginData | None = field(default=None, compare=False, repr=False)  # may hold credentials
    """The data a Nornir inventory plugin (``config.yaml``) built; None for the SimpleInventory files."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", _by_name(self.points))
        object.__setattr__(self, "not_points", tuple(sorted(self.not_points)))
        object.__setattr__(self, "workloads", _by_name(self.workloads))
        object.__setattr__(self, "groups", tuple(sorted(self.groups)))

    def point(self, name: str) -> EnforcementPoint:
        """The enforcement point called ``name``; an unknown name raises InventoryError with a hint."""
        return _named(self.points, name, "enforcement point", "unknown-point")

    def workload_by_name(self, name: str) -> Workload:
        """The workload called ``name``; an unknown name raises InventoryError with a hint."""
        return _named(self.workloads, name, "workload", "unknown-workload")

    def select(
        self, names: Iterable[str] | None = None, groups: Iterable[str] | None = None
    ) -> tuple[EnforcementPoint, ...]:
        """Points named in ``names`` plus points in any of ``groups`` (parents count); all when both are None.

        Unknown point or group names raise InventoryError (all of them at once, each with a hint).
        """
        if names is None and groups is None:
            return self.points
        wanted_names = set(names or ())
        wanted_groups = set(groups or ())
        problems = [
            Diagnostic(f"unknown enforcement point {n!r}", code="unknown-point",
                       hint=name_hint(n, [p.name for p in self.points], noun="enforcement points"))
            for n in sorted(wanted_names - {p.name for p in self.points})
        ]
        problems += [
            Diagnostic(f"unknown group {g!r}", code="unknown-group", hint=name_hint(g, self.groups, noun="groups"))
            for g in sorted(wanted_groups - set(self.groups))
        ]
        if problems:
            raise InventoryError(f"cannot select enforcement points: {len(problems)} unknown names", problems)
        return tuple(
            p for p in self.points if p.name in wanted_names or wanted_groups.intersection(p.all_groups)
        )

    def protected_addresses(self, point: EnforcementPoint | str) -> AddressSet:
        """The protected scope of a point (by object or name) over this inventory's workloads."""
        target = self.point(point) if isinstance(point, str) else point
        return protected_addresses(target, self.workloads)
