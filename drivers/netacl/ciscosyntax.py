"""The syntax-module API every Cisco-like platform exposes, once: a dialect plus the show commands it reads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from drivers.netacl.ace import Ace, Acl, Binding, DeviceAcls
from drivers.netacl.ciscolike import (
    Dialect,
    parse_interface_bindings,
    parse_listing,
    parse_outputs,
    render_binding,
    render_entry,
)


@dataclass(frozen=True, slots=True)
class CiscoSyntax:
    """Parsers and renderers of one platform; its syntax module exports these bound methods by name."""

    dialect: Dialect
    acl_commands: Sequence[str]
    binding_command: str

    def parse(self, outputs: Mapping[str, str], *, point: str = "-") -> DeviceAcls:
        """The outputs of the fetch commands (keyed by command) → every ACL and every interface binding."""
        return parse_outputs(outputs, self.acl_commands, self.binding_command, self.dialect, point=point)

    def parse_acls(self, text: str, *, point: str = "-") -> tuple[Acl, ...]:
        """One ACL listing (``show … access-list(s)``) → its ACLs."""
        return parse_listing(text, self.dialect, point=point)

    def parse_bindings(self, text: str, *, point: str = "-") -> tuple[Binding, ...]:
        """Interface sections of the running configuration → the ACL bindings in them."""
        return parse_interface_bindings(text, self.dialect, point=point)

    def format_entry(self, seq: int, ace: Ace) -> str:
        """The config-mode line of one entry (ValueError when the platform cannot write it in one entry)."""
        return render_entry(seq, ace, self.dialect)

    def bind(self, b: Binding) -> tuple[str, ...]:
        """``("interface Vlan301", "ip access-group MSEG-INGRESS-V4 out")`` in the platform's IPv6 keyword."""
        return render_binding(b, self.dialect)

    def unbind(self, b: Binding) -> tuple[str, ...]:
        interface, line = render_binding(b, self.dialect)
        return interface, f"no {line}"
