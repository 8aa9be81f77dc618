"""Cisco NX-OS: in-place sequence-numbered edits between ``checkpoint`` and ``rollback running-config checkpoint``."""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import ClassVar

from drivers.cisco_nxos import syntax
from drivers.netacl.base import AclDriver, acl_capabilities
from drivers.netacl.errors import RejectedLine
from drivers.netacl.layout import AclSettingsModel, CountingAclSettings
from orchestrator.model import Capabilities


class NxosSettings(CountingAclSettings):
    """The Nxos point's settings: interface names and the name prefix in the platform's grammar."""

    INTERFACE: ClassVar[str] = syntax.INTERFACE_NAME
    PREFIX: ClassVar[str] = syntax.ACL_NAME_PREFIX


class NxosDriver(AclDriver):
    """A named device checkpoint before every change; a refused line rolls the device back to it at once.

    NX-OS has no auto-revert timer: a lost session leaves the change half-sent, and the executor rolls
    the point back (``rollback running-config checkpoint`` while the checkpoint exists, else in-place
    edits back to the stored checkpoint).  Needs network-admin (``checkpoint`` and ``rollback``).
    """

    name: ClassVar[str] = "nxos"
    capabilities: ClassVar[Capabilities] = acl_capabilities(native_confirm=False)
    device_type: ClassVar[str] = "cisco_nxos"
    syntax: ClassVar[ModuleType] = syntax
    settings_model: ClassVar[type[AclSettingsModel]] = NxosSettings

    def _push(self, lines: Sequence[str]) -> str:
        checkpoint = self.change_name()
        self.transport.exec(f"checkpoint {checkpoint}")
        self.pending = checkpoint
        try:
            return self.transport.configure(lines)
        except RejectedLine:
            self.transport.session().exit_config_mode()
            self._settle()
            raise

    def confirm(self) -> None:
        if self.pending:
            self.transport.exec(f"no checkpoint {self.pending}")
            self.pending = None

    def _settle(self) -> None:
        if self.pending:
            self.transport.exec(f"rollback running-config checkpoint {self.pending}")
            self.confirm()
