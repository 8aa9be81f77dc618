"""Arista EOS ACL driver (see docs/switch-drivers.md)."""

from drivers.arista_eos.driver import EosDriver

__all__ = ["EosDriver"]
