"""Cisco IOS / IOS-XE: in-place sequence-numbered edits under ``configure terminal revert timer``."""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import ClassVar

from drivers.cisco_ios import syntax
from drivers.netacl.base import AclDriver, acl_capabilities
from drivers.netacl.errors import RejectedLine
from drivers.netacl.layout import AclSettingsModel, CiscoAclSettings
from orchestrator.model import Capabilities

REVERT_TIMER = "revert-timer"


class IosSettings(CiscoAclSettings):
    """The Ios point's settings: interface names and the name prefix in the platform's grammar."""

    INTERFACE: ClassVar[str] = syntax.INTERFACE_NAME
    PREFIX: ClassVar[str] = syntax.ACL_NAME_PREFIX


class IosDriver(AclDriver):
    """IOS-XE config rollback: every change is pushed under a revert timer and confirmed after verification.

    Needs ``archive`` configured on the device (``archive`` / ``path flash:mseg`` / ``maximum 14``) and
    privilege 15.  A lost session or a failed verification lets the timer revert the device by itself;
    a refused line reverts it at once (``configure revert now``).
    """

    name: ClassVar[str] = "ios"
    capabilities: ClassVar[Capabilities] = acl_capabilities(native_confirm=True)
    device_type: ClassVar[str] = "cisco_ios"
    syntax: ClassVar[ModuleType] = syntax
    settings_model: ClassVar[type[AclSettingsModel]] = IosSettings

    def _push(self, lines: Sequence[str]) -> str:
        self.pending = REVERT_TIMER  # the timer runs from the mode command on, whatever happens next
        try:
            return self.transport.configure(
                lines, mode_command=f"configure terminal revert timer {self.settings.confirm_minutes}")
        except RejectedLine:
            self.transport.session().exit_config_mode()
            self._revert_now()
            raise

    def confirm(self) -> None:
        if self.pending:
            self.transport.exec("configure confirm")
            self.pending = None

    def _settle(self) -> None:
        if self.pending:
            self._revert_now()

    def _revert_now(self) -> None:
        self.transport.exec("configure revert now")
        self.pending = None
