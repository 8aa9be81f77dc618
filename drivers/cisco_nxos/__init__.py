"""Cisco NX-OS ACL driver (see docs/switch-drivers.md)."""

from drivers.cisco_nxos.driver import NxosDriver

__all__ = ["NxosDriver"]
