"""Driver instances for the points of one run: built from the inventory and the Nornir host, closed at the end.

Secret references in the connection fields and credential settings are resolved
here, when a point's driver is first needed (once per point and run), so a
driver always receives plain values and nothing upstream (plans, the store,
the reporter) ever holds one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nornir.core.inventory import Host
from nornir.core.inventory import Inventory as NornirInventory

from orchestrator.engine.registry import driver_class
from orchestrator.engine.retry import RetryPolicy
from orchestrator.engine.secrets import SecretResolver
from orchestrator.inventory.scope import EnforcementPoint, Inventory
from orchestrator.model.driver import Connection, Driver, PointContext
from orchestrator.model.errors import InventoryError, MicrosegError
from orchestrator.model.rules import AddressSet


def point_context(point: EnforcementPoint, host: Host, timeout: float,
                  members: AddressSet | None = None, secrets: SecretResolver | None = None,
                  plugins: Sequence[str] = ()) -> PointContext:
    """What a driver needs about ``point``: its settings and the Nornir host's connection fields.

    The connection fields follow Nornir: ``connection_options`` under the driver's name (microseg's own key)
    or, when there is none, under the first of the connection plugins the driver uses as Nornir names them
    (``netmiko``, ``napalm``, ``paramiko``: ``plugins``) that has options — hostname, port, username,
    password, platform and extras there override the host's, as Nornir's own plugins read them.  References
    in ``username``, ``password`` and the credential fields of the connection extras and the driver settings
    are resolved with ``secrets`` (a resolver of its own, closed again, when None).
    """
    resolver = secrets if secrets is not None else SecretResolver()
    try:
        return _context(point, host, timeout, members, resolver, plugins)
    finally:
        if secrets is None:
            resolver.close()


def _context(point: EnforcementPoint, host: Host, timeout: float, members: AddressSet | None,
             resolver: SecretResolver, plugins: Sequence[str] = ()) -> PointContext:
    key = next((k for k in (point.driver, *plugins) if k and k in host.connection_options), None)
    params = host.get_connection_parameters(key) if key else host.get_connection_parameters()
    extras: dict[str, Any] = dict(params.extras or {}) if key else {}
    name, driver = point.name, point.driver
    connection = Connection(
        hostname=params.hostname or host.name,
        port=params.port,
        username=resolver.value(params.username, "username", point=name, driver=driver, secret=False),
        password=resolver.value(params.password, "password", point=name, driver=driver),
        platform=params.platform,
        extras=resolver.tree(extras, "extras", point=name, driver=driver),
    )
    settings = resolver.tree(dict(point.settings), "settings", point=name, driver=driver)
    return PointContext(point.name, point.driver, connection, settings, timeout,
                        members if members is not None else AddressSet(), frozenset(point.directions))


def connection_plugins(cls: Any, settings: Mapping[str, Any]) -> tuple[str, ...]:
    """The Nornir connection plugins a driver class reads a point's ``connection_options`` under, in order: its
    ``connection_plugin_for(settings)`` when it has one (the plugin depends on the point: napalm or netmiko),
    else its ``connection_plugin``; none when it names none."""
    chooser = getattr(cls, "connection_plugin_for", None)
    if callable(chooser):
        return tuple(str(name) for name in chooser(settings))
    plugin = getattr(cls, "connection_plugin", None)
    return (str(plugin),) if plugin else ()


class Sessions:
    """One driver instance per point, created on first use (thread-safe), all closed by :meth:`close`.

    Points are built in parallel (a secret backend may do I/O); the same point is built once.
    """

    def __init__(self, inventory: Inventory, nornir: NornirInventory, timeout: float = 10.0,
                 overrides: Mapping[str, type[Any]] | None = None,
                 members: Callable[[str], AddressSet] | None = None, *,
                 secrets: SecretResolver | None = None, retry: RetryPolicy | None = None) -> None:
        self._inventory = inventory
        self._nornir = nornir
        self._timeout = timeout
        self._overrides = dict(overrides or {})
        self._members = members
        self._secrets = secrets if secrets is not None else SecretResolver(retry)
        self._drivers: dict[str, Driver] = {}
        self._building: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def driver(self, name: str) -> Driver:
        with self._lock:
            if name in self._drivers:
                return self._drivers[name]
            building = self._building.setdefault(name, threading.Lock())
        with building:
            with self._lock:
                if name in self._drivers:
                    return self._drivers[name]
            driver = self._build(name)
            with self._lock:
                self._drivers[name] = driver
            return driver

    def _build(self, name: str) -> Driver:
        point = self._inventory.point(name)
        host = self._nornir.hosts.get(name)
        if host is None:
            raise InventoryError(f"{name}: not a Nornir host of the inventory")
        cls = self._overrides.get(point.driver) or driver_class(point.driver)
        members = self._members(name) if self._members is not None else None
        driver: Driver = cls(point_context(point, host, self._timeout, members, self._secrets,
                                           connection_plugins(cls, point.settings)))
        return driver

    def close(self) -> list[str]:
        """Close every session and secret backend; returns the problems met (closing never raises)."""
        problems: list[str] = []
        with self._lock:
            drivers, self._drivers = self._drivers, {}
        for name, driver in drivers.items():
            try:
                driver.close()
            except (MicrosegError, OSError) as exc:
                problems.append(f"{name}: {exc}")
        problems.extend(self._secrets.close())
        return problems
