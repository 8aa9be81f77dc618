"""Arista EOS: in-place sequence-numbered edits in a configuration session committed with a timer."""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any, ClassVar, Literal, cast

from pydantic import Field

from drivers.arista_eos import syntax
from drivers.netacl.base import AclDriver, acl_capabilities
from drivers.netacl.errors import RejectedLine
from drivers.netacl.layout import AclSettingsModel, CountingAclSettings
from orchestrator.model import Capabilities


class EosSettings(CountingAclSettings):
    """The Eos point's settings: interface names and the name prefix in the platform's grammar, and how to
    reach the switch: ``cli`` (SSH, netmiko) or ``napalm`` (eAPI over HTTPS through napalm's EOS driver)."""

    INTERFACE: ClassVar[str] = syntax.INTERFACE_NAME
    PREFIX: ClassVar[str] = syntax.ACL_NAME_PREFIX

    transport: Literal["cli", "napalm"] = "cli"
    eapi_port: int = Field(default=443, ge=1, le=65535, description="eAPI's HTTPS port (transport napalm)")
    eapi_ca_file: str | None = Field(default=None, description=(
        "CA bundle that signed eAPI's certificate (transport napalm); default: the system's trust store. The "
        "certificate is always verified"))


class EosDriver(AclDriver):
    """``configure session`` + ``commit timer``: nothing is active before the commit, and an unconfirmed
    commit rolls back by itself.  A refused line aborts the session (the device never saw the change)."""

    name: ClassVar[str] = "eos"
    capabilities: ClassVar[Capabilities] = acl_capabilities(native_confirm=True, atomic_replace=True)
    device_type: ClassVar[str] = "arista_eos"
    syntax: ClassVar[ModuleType] = syntax
    settings_model: ClassVar[type[AclSettingsModel]] = EosSettings

    @property
    def eos(self) -> EosSettings:
        """The point's settings as this platform's model (validated once, by the base class)."""
        return cast(EosSettings, self.settings.typed)

    def make_transport(self) -> Any:
        """The CLI over SSH, or (``transport: napalm``) napalm's EOS driver over eAPI."""
        if self.eos.transport == "cli":
            return super().make_transport()
        from drivers.arista_eos.eapi import NapalmEosTransport  # noqa: PLC0415  (napalm loads on first use)

        return NapalmEosTransport(self.context.connection, point=self.point, driver=self.name,
                                  timeout=self.context.timeout, port=self.eos.eapi_port, ca_file=self.eos.eapi_ca_file)

    def _push(self, lines: Sequence[str]) -> str:
        if self.eos.transport == "napalm":  # napalm's session, commit timer and confirm
            self.pending = "napalm"  # set first: a commit whose answer is lost is confirmed all the same
            return str(self.transport.push(lines, self.settings.confirm_minutes))
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
        if self.pending and self.eos.transport == "napalm":
            self.transport.confirm()
        elif self.pending:
            self.transport.exec(f"configure session {self.pending} commit")
        self.pending = None

    def _settle(self) -> None:
        self.confirm()
