"""Juniper Junos: filter terms edited in a private candidate, `commit confirmed`, then `commit` once verified."""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any, ClassVar, Literal, cast

from pydantic import Field

from drivers.juniper_junos import syntax
from drivers.netacl.ace import Ace
from drivers.netacl.base import AclDriver, acl_capabilities
from drivers.netacl.edits import EditScript, plan_named
from drivers.netacl.errors import RejectedLine
from drivers.netacl.layout import AclSettingsModel, JunosFilterSettings
from orchestrator.model import Capabilities

COMMIT_CONFIRMED = "commit-confirmed"


class JunosSettings(JunosFilterSettings):
    """The Junos point's settings: interface names and the name prefix in the platform's grammar, and how to
    reach the device: ``cli`` (SSH, netmiko) or ``napalm`` (NETCONF over SSH through napalm's Junos driver)."""

    INTERFACE: ClassVar[str] = syntax.INTERFACE_NAME
    PREFIX: ClassVar[str] = syntax.FILTER_NAME_PREFIX

    transport: Literal["cli", "napalm"] = "cli"
    netconf_port: int = Field(default=830, ge=1, le=65535, description=(
        "NETCONF's SSH port (transport napalm; `set system services netconf ssh`); the host key is verified as "
        "for the CLI"))


class JunosDriver(AclDriver):
    """Filters ``{prefix}INGRESS-V4`` … bound as ``output`` / ``input`` filters on the configured units.

    Every change goes into a ``configure private`` candidate and is activated with ``commit confirmed N``;
    the executor sends ``commit`` only after verification, so a lost session or a failed verification
    lets Junos roll back by itself after N minutes.  A refused line or a failed commit discards the
    candidate (``rollback 0``): the device never saw the change.  Needs a login class with ``configure``
    and ``firewall``/``interface`` control permissions.
    """

    name: ClassVar[str] = "junos"
    # A term holds lists of source and destination addresses and ports (a product, all of one family): one
    # term per compiled rule, not one per prefix pair and port range.
    capabilities: ClassVar[Capabilities] = acl_capabilities(native_confirm=True, atomic_replace=True,
                                                            max_prefixes_per_rule=None, max_port_ranges_per_rule=None)
    device_type: ClassVar[str] = "juniper_junos"
    syntax: ClassVar[ModuleType] = syntax
    settings_model: ClassVar[type[AclSettingsModel]] = JunosSettings

    @property
    def junos(self) -> JunosSettings:
        """The point's settings as this platform's model (validated once, by the base class)."""
        return cast(JunosSettings, self.settings.typed)

    def make_transport(self) -> Any:
        """The CLI over SSH, or (``transport: napalm``) napalm's Junos driver over NETCONF."""
        if self.junos.transport == "cli":
            return super().make_transport()
        from drivers.juniper_junos.netconf import NapalmJunosTransport  # noqa: PLC0415  (napalm loads on first use)

        return NapalmJunosTransport(self.context.connection, point=self.point, driver=self.name,
                                    timeout=self.context.timeout, port=self.junos.netconf_port,
                                    host_keys=self.settings.host_keys,
                                    key_file=self.context.settings.get("key_file"))

    def plan_acl(self, name: str, family: int, current: Sequence[tuple[Any, Ace]] | None,
                 target: Sequence[Ace], labels: Sequence[str | None] | None = None) -> EditScript:
        """New terms are named ``T<n>``, or ``<policy rule>-return-T<n>`` / ``<policy rule>-carve-out-T<n>`` for
        the terms the compiler derived for a rule (a reader of the filter sees why it exists); kept terms keep
        their names."""
        return plan_named(name, family, current, target, new_name=syntax.term_name, labels=labels)

    def script_lines(self, script: EditScript, *, counters: bool = True) -> list[str]:
        """Deletes first (one atomic commit), then each new term, moved before the kept term it precedes;
        ``counters``: each term counts under its own name (owned filters; never someone else's written back)."""
        lines = [syntax.delete_term(script.name, script.family, str(k)) for k in script.deletes]
        for add in script.adds:
            lines += syntax.term_lines(script.name, script.family, str(add.key), add.ace, counted=counters)
            if add.before is not None:
                lines.append(syntax.insert_before(script.name, script.family, str(add.key), str(add.before)))
        return lines

    def _push(self, lines: Sequence[str]) -> str:
        minutes = self.settings.confirm_minutes
        if self.junos.transport == "napalm":  # napalm's private candidate and commit confirmed
            try:
                return str(self.transport.push(lines, minutes))
            finally:  # a commit that was sent waits for confirmation, even when its answer was lost
                self.pending = COMMIT_CONFIRMED if self.transport.commit_sent else None
        try:
            output = self.transport.configure(lines, mode_command="configure private",
                                              then=[f"commit confirmed {minutes}"])
        except RejectedLine:
            self._discard()
            raise
        self.pending = COMMIT_CONFIRMED
        return output

    def confirm(self) -> None:
        if self.pending and self.junos.transport == "napalm":
            self.transport.confirm()
        elif self.pending:
            self.transport.configure(["commit"], mode_command="configure private")
        self.pending = None

    def _settle(self) -> None:
        self.confirm()

    def _discard(self) -> None:
        self.transport.exec("rollback 0")
        self.transport.exec("exit configuration-mode")
