"""Cisco IOS / IOS-XE ACL driver (see docs/switch-drivers.md)."""

from drivers.cisco_ios.driver import IosDriver

__all__ = ["IosDriver"]
