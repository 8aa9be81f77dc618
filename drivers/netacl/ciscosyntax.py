"""The syntax-module API every Cisco-like platform exposes, once: a dialect plus the show commands it reads."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from drivers.netacl.ace import Acl, AclLine, Binding, DeviceAcls
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
    # family → the command listing one ACL by name (``show ip access-lists {name}``), where the platform has one
    acl_by_name: Mapping[int, str] = field(default_factory=dict)

    def fetch_commands(self, acls: Iterable[tuple[str, int]] = ()) -> tuple[str, ...]:
        """What a point's fetch sends: each of ``acls`` (name, family) listed by name where the platform can,
        so that a device holding thousands of someone else's entries costs no more to read than an empty one;
        the whole listings otherwise (or when ``acls`` is empty); then the interface sections."""
        wanted = list(acls)
        if wanted and all(family in self.acl_by_name for _, family in wanted):
            listings = tuple(dict.fromkeys(self.acl_by_name[family].format(name=name) for name, family in wanted))
        else:
            listings = tuple(self.acl_commands)
        return (*listings, self.binding_command)

    def parse(self, outputs: Mapping[str, str], *, point: str = "-") -> DeviceAcls:
        """The outputs of the fetch commands (keyed by command) → every ACL, every interface binding, and the
        lines that could not be read (see ``fetch_commands``: every key but the binding command is a listing)."""
        listings = [command for command in outputs if command != self.binding_command] or list(self.acl_commands)
        asked = {command: name for command in listings if (name := self.asked_name(command)) is not None}
        return parse_outputs(outputs, listings, self.binding_command, self.dialect, point=point, asked=asked)

    def asked_name(self, command: str) -> str | None:
        """The ACL a by-name listing command asks for (None for a whole listing)."""
        for template in self.acl_by_name.values():
            prefix = template.format(name="")
            if command.startswith(prefix) and " " not in command[len(prefix):]:
                return command[len(prefix):] or None
        return None

    def parse_acls(self, text: str, *, point: str = "-") -> tuple[Acl, ...]:
        """One ACL listing (``show … access-list(s)``) → its ACLs; any line it cannot read is a ParseError."""
        return parse_listing(text, self.dialect, point=point)

    def parse_bindings(self, text: str, *, point: str = "-") -> tuple[Binding, ...]:
        """Interface sections of the running configuration → the ACL bindings in them."""
        return parse_interface_bindings(text, self.dialect, point=point)

    def format_entry(self, seq: int, ace: AclLine) -> str:
        """The config-mode line of one entry (ValueError when the platform cannot write it in one entry)."""
        return render_entry(seq, ace, self.dialect)

    def bind(self, b: Binding) -> tuple[str, ...]:
        """``("interface Vlan301", "ip access-group MSEG-INGRESS-V4 out")`` in the platform's IPv6 keyword."""
        return render_binding(b, self.dialect)

    def unbind(self, b: Binding) -> tuple[str, ...]:
        interface, line = render_binding(b, self.dialect)
        return interface, f"no {line}"
