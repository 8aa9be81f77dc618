"""Juniper Junos firewall filter driver (see docs/switch-drivers.md)."""

from drivers.juniper_junos.driver import JunosDriver

__all__ = ["JunosDriver"]
