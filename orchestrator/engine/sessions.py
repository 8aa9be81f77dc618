"""Driver instances for the points of one run: built from the inventory and the Nornir host, closed at the end."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from nornir.core.inventory import Host
from nornir.core.inventory import Inventory as NornirInventory

from orchestrator.engine.registry import driver_class
from orchestrator.inventory.scope import EnforcementPoint, Inventory
from orchestrator.model.driver import Connection, Driver, PointContext
from orchestrator.model.errors import InventoryError, MicrosegError
from orchestrator.model.rules import AddressSet


def point_context(point: EnforcementPoint, host: Host, timeout: float,
                  members: AddressSet | None = None) -> PointContext:
    """What a driver needs about ``point``: its settings and the Nornir host's connection fields."""
    extras: dict[str, Any] = {}
    options = host.get_connection_parameters(point.driver) if point.driver in host.connection_options else None
    if options is not None and options.extras:
        extras = dict(options.extras)
    connection = Connection(
        hostname=host.hostname or host.name,
        port=host.port,
        username=host.username,
        password=host.password,
        platform=host.platform,
        extras=extras,
    )
    return PointContext(point.name, point.driver, connection, dict(point.settings), timeout,
                        members if members is not None else AddressSet(), frozenset(point.directions))


class Sessions:
    """One driver instance per point, created on first use (thread-safe), all closed by :meth:`close`."""

    def __init__(self, inventory: Inventory, nornir: NornirInventory, timeout: float = 10.0,
                 overrides: Mapping[str, type[Any]] | None = None,
                 members: Callable[[str], AddressSet] | None = None) -> None:
        self._inventory = inventory
        self._nornir = nornir
        self._timeout = timeout
        self._overrides = dict(overrides or {})
        self._members = members
        self._drivers: dict[str, Driver] = {}
        self._lock = threading.Lock()

    def driver(self, name: str) -> Driver:
        with self._lock:
            if name in self._drivers:
                return self._drivers[name]
            point = self._inventory.point(name)
            host = self._nornir.hosts.get(name)
            if host is None:
                raise InventoryError(f"{name}: not a Nornir host of the inventory")
            cls = self._overrides.get(point.driver) or driver_class(point.driver)
            members = self._members(name) if self._members is not None else None
            driver: Driver = cls(point_context(point, host, self._timeout, members))
            self._drivers[name] = driver
            return driver

    def close(self) -> list[str]:
        """Close every session; returns the problems met (closing never raises)."""
        problems: list[str] = []
        with self._lock:
            drivers, self._drivers = self._drivers, {}
        for name, driver in drivers.items():
            try:
                driver.close()
            except (MicrosegError, OSError) as exc:
                problems.append(f"{name}: {exc}")
        return problems
