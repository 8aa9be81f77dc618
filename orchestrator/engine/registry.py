"""Driver discovery through entry points, so a third party can ship a driver as its own package.

A driver package declares, in its ``pyproject.toml``::

    [project.entry-points."microseg.drivers"]
    my_firewall = "my_package.driver:MyFirewallDriver"

The class exposes ``capabilities`` (an :class:`~orchestrator.model.capabilities.Capabilities`)
as a class attribute; the compiler reads it without instantiating the driver
(no I/O).  The built-in drivers in ``drivers/`` register the same way.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import BaseModel

from orchestrator.model.capabilities import Capabilities
from orchestrator.model.errors import InventoryError

DRIVER_ENTRY_POINT_GROUP = "microseg.drivers"


def available_drivers() -> dict[str, EntryPoint]:
    """Installed drivers by name."""
    return dict(_installed_drivers())


@cache
def _installed_drivers() -> dict[str, EntryPoint]:
    # One scan per process: entry_points() reads the metadata of every installed distribution (about
    # 10 ms each time here), and a run asks several times per point.
    return {ep.name: ep for ep in entry_points(group=DRIVER_ENTRY_POINT_GROUP)}


@cache
def driver_capabilities(name: str) -> Capabilities | None:
    """The capabilities a driver declares, or None when no driver of that name is installed."""
    ep = available_drivers().get(name)
    if ep is None:
        return None
    try:
        driver = ep.load()
    except (ImportError, AttributeError) as exc:
        raise InventoryError(f"driver {name!r} ({ep.value}) cannot be loaded: {exc}") from exc
    caps = getattr(driver, "capabilities", None)
    if not isinstance(caps, Capabilities):
        raise InventoryError(f"driver {name!r} ({ep.value}) declares no Capabilities")
    return caps


def driver_settings_model(name: str) -> type[BaseModel] | None:
    """The pydantic model a driver declares for its points' settings (``settings_model``), or None (none
    declared, or no driver of that name installed)."""
    if name not in available_drivers():
        return None
    model = getattr(driver_class(name), "settings_model", None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


@cache
def driver_class(name: str) -> type[Any]:
    """The driver class registered as ``name``; InventoryError naming the installed ones otherwise."""
    ep = available_drivers().get(name)
    if ep is None:
        installed = ", ".join(sorted(available_drivers())) or "none"
        raise InventoryError(f"no driver named {name!r} is installed (installed: {installed})")
    try:
        loaded = ep.load()
    except (ImportError, AttributeError) as exc:
        raise InventoryError(f"driver {name!r} ({ep.value}) cannot be loaded: {exc}") from exc
    if not isinstance(loaded, type):
        raise InventoryError(f"driver {name!r} ({ep.value}) is not a class")
    return loaded
