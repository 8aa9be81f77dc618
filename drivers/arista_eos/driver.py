"""Arista EOS: in-place sequence-numbered edits in a configuration session committed with a timer."""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import ClassVar

from drivers.arista_eos import syntax
from drivers.netacl.base import AclDriver, acl_capabilities
from drivers.netacl.errors import RejectedLine
from drivers.netacl.layout import AclSettingsModel, CiscoAclSettings
from orchestrator.model import Capabilities


class EosSettings(CiscoAclSettings):
    """The Eos point's settings: interface names and the name prefix in the platform's grammar."""

    INTERFACE: ClassVar[str] = syntax.INTERFACE_NAME
    PREFIX: ClassVar[str] = syntax.ACL_NAME_PREFIX


class EosDriver(AclDriver):
    """``configure session`` + ``commit timer``: nothing is active before the commit, and an unconfirmed
    commit rolls back by itself.  A refused line aborts the session (the device never saw the change)."""

    name: ClassVar[str] = "eos"
    capabilities: ClassVar[Capabilities] = acl_capabilities(native_confirm=True, atomic_replace=True)
    device_type: ClassVar[str] = "arista_eos"
    syntax: ClassVar[ModuleType] = syntax
    settings_model: ClassVar[type[AclSettingsModel]] = EosSettings

    def _push(self, lines: Sequence[str]) -> str:
        session = self.change_name()
        minutes = self.settings.confirm_minutes
        try:
            output = self.transport.configure([*lines], mode_command=f"configure session {session}",
                                              exit_mode=False)
        except RejectedLine:
            self.transport.exec("abort")
            raise
        self.pending = session
        return output + self.transport.exec(f"commit timer {minutes // 60:02d}:{minutes % 60:02d}:00")

    def confirm(self) -> None:
        if self.pending:
            self.transport.exec(f"configure session {self.pending} commit")
            self.pending = None

    def _settle(self) -> None:
        self.confirm()
