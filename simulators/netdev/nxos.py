"""Cisco NX-OS personality: IP/IPv6 ACLs, interface bindings, named checkpoints and rollback."""

from __future__ import annotations

import re
import time
from typing import ClassVar

from simulators.netdev.aceparse import Cursor
from simulators.netdev.cisco import CiscoPersonality, Tree
from simulators.netdev.ciscoacl import NXOS, Acl, render_body
from simulators.netdev.personality import CliError, register

ROLLBACK_OUTPUT = (
    "Note: Applying config parallelly may fail Rollback verification\n"
    "Collecting Running-Config\n"
    "#Generating Rollback Patch\n"
    "Executing Rollback Patch\n"
    "Generating Running-config for verification\n"
    "#Generating Patch for verification\n"
    "Verification is Successful.\n"
    "\n"
    "Rollback completed successfully.\n"
)
COPY_OUTPUT = (
    "[########################################] 100%\n"
    "Copy complete, now saving to disk (please wait)...\n"
    "Copy complete.\n"
)


@register("nxos")
class NxosPersonality(CiscoPersonality):
    """``cisco_nxos``: prompts ``HOST#``, ``HOST(config)#``, ``HOST(config-acl)#`` ..."""

    dialect = NXOS
    interface_types = ("Ethernet", "Vlan", "loopback", "port-channel", "mgmt", "tunnel", "nve")
    logical_types = ("Vlan", "loopback", "port-channel", "tunnel", "nve")
    acl_modes: ClassVar[dict[tuple[int, str], str]] = {
        (4, "extended"): "config-acl",
        (6, "extended"): "config-ipv6-acl",
    }
    indent = "  "
    invalid_message = "% Invalid command at '^' marker.\n"
    incomplete_message = None
    config_banner = "Enter configuration commands, one per line. End with CNTL/Z.\n"
    show_no_shutdown = True
    exec_tree: ClassVar[Tree] = {
        "show": {
            "running-config": {"interface": {}},
            "ip": {"access-lists": {}},
            "ipv6": {"access-lists": {}},
            "access-lists": {},
            "version": {},
            "checkpoint": {"summary": {}},
        },
        "configure": {"terminal": {}},
        "terminal": {"length": {}, "width": {}, "monitor": {}, "no": {"monitor": {}}},
        "checkpoint": {},
        "rollback": {"running-config": {"checkpoint": {}}},
        "copy": {"running-config": {"startup-config": {}}},
        "no": {"checkpoint": {}},
    }
    # one vty block: `line vty` / `access-class NAME in` (Cisco Nexus 9000 NX-OS Security Configuration Guide,
    # "Configuring ACLs on VTY Lines")
    vty_head = re.compile(r"line vty")
    config_tree: ClassVar[Tree] = {
        "line": {"vty": {}},
        "interface": {},
        "ip": {"access-list": {}},
        "ipv6": {"access-list": {}},
        "resequence": {"ip": {"access-list": {}}, "ipv6": {"access-list": {}}},
        "hostname": {},
        "show": exec_tree["show"],
        "no": {"interface": {}, "ip": {"access-list": {}}, "ipv6": {"access-list": {}}},
    }

    def error_output(self, line: str, error: CliError) -> str:
        if error.incomplete and error.message is None:
            return self._caret(line, len(line.split())) + "% Incomplete command at '^' marker.\n"
        return super().error_output(line, error)

    # -- exec --------------------------------------------------------------------------------
    def exec_extra(self, line: str, words: list[str]) -> str | None:
        checkpoints = self.state.checkpoints
        if words[0] == "checkpoint":
            name = self.checkpoint_name(words, 1)
            if name in checkpoints:
                return f"ERROR: Checkpoint name {name} is already in use\n"
            checkpoints[name] = self.snapshot()
            return "Done\n"
        if words[:2] == ["no", "checkpoint"]:
            name = self.checkpoint_name(words, 2)
            if checkpoints.pop(name, None) is None:
                return f"ERROR: Checkpoint {name} does not exist\n"
            return ""
        if words[:3] == ["rollback", "running-config", "checkpoint"]:
            name = self.checkpoint_name(words, 3, ("atomic", "best-effort", "stop-at-first-failure", "verbose"))
            if name not in checkpoints:
                return f"ERROR: Checkpoint {name} does not exist\n"
            self.restore(checkpoints[name])
            return ROLLBACK_OUTPUT
        if words == ["copy", "running-config", "startup-config"]:
            self.state.startup = self.snapshot()
            return COPY_OUTPUT
        if words[0] in ("rollback", "copy"):
            raise CliError(1, incomplete=len(words) == 1)
        return None

    @staticmethod
    def checkpoint_name(words: list[str], at: int, options: tuple[str, ...] = ()) -> str:
        cur = Cursor(words, at)
        name = cur.take()
        if len(name) > 80:
            cur.fail(at)
        if cur.peek() is not None and (cur.peek() not in options or cur.pos + 1 < len(words)):
            cur.fail()
        return name

    # -- show --------------------------------------------------------------------------------
    def show_extra(self, words: list[str]) -> str | None:
        if words[1:2] == ["access-lists"]:
            return self.show_acls((4, 6), words[2:], 2)
        if words[1:3] == ["ip", "access-lists"]:
            return self.show_acls((4,), words[3:], 3)
        if words[1:3] == ["ipv6", "access-lists"]:
            return self.show_acls((6,), words[3:], 3)
        if words == ["show", "version"]:
            return (
                "Cisco Nexus Operating System (NX-OS) Software\n"
                "Software\n  NXOS: version 9.3(8)\n"
                f"Hardware\n  cisco Nexus9000 C93180YC-EX chassis\n  Device name: {self.running.hostname}\n"
            )
        if words == ["show", "checkpoint", "summary"]:
            names = "".join(f"{i}) {name}:\n" for i, name in enumerate(self.state.checkpoints, 1))
            return f"User Checkpoints:\n--------------------------------------\n{names}"
        return None

    def show_acls(self, families: tuple[int, ...], rest: list[str], at: int) -> str:
        if len(rest) > 1:
            raise CliError(at + 1)
        acls = sorted(
            (acl for (family, name), acl in self.running.acls.items() if family in families and rest in ([], [name])),
            key=lambda acl: (acl.name, acl.family),
        )
        lines: list[str] = []
        for acl in acls:  # with `statistics per-entry`, as the capture nxos/…access-lists2 shows it: every entry
            lines.append(f"{'IP' if acl.family == 4 else 'IPv6'} access list {acl.name}")
            lines += ["        statistics per-entry"] if acl.statistics else []
            lines += [f"        {seq} {render_body(ace, acl, NXOS)}"
                      + (self.counted(acl, seq) if ace.action != "remark" else "")  # a remark counts nothing
                      for seq, ace in acl.ordered()]
        return "".join(f"{line}\n" for line in lines) + ("\n" if lines else "")

    def counted(self, acl: Acl, seq: int) -> str:
        """`` [match=N]`` (what tests counted with ``device.hit``) when the ACL keeps per-entry statistics."""
        return f" [match={self.device.matches.get((acl.family, acl.name, seq), 0)}]" if acl.statistics else ""

    # -- running configuration ---------------------------------------------------------------
    def header(self, command: str) -> list[str]:
        now = time.strftime("%a %b %d %H:%M:%S %Y")
        return [
            "",
            f"!Command: {command}",
            f"!Running configuration last done at: {now}",
            f"!Time: {now}",
            "",
            "version 9.3(8) Bios:version  ",
        ]

    def acl_config(self, acl: Acl) -> list[str]:
        head = f"{'ip' if acl.family == 4 else 'ipv6'} access-list {acl.name}"
        return [head, *(["  statistics per-entry"] if acl.statistics else []),
                *(f"  {seq} {render_body(ace, acl, NXOS)}" for seq, ace in acl.ordered())]

    def running_config(self) -> str:
        lines = [*self.header("show running-config"), f"hostname {self.running.hostname}", ""]
        for acl in self.running.acls.values():
            lines += self.acl_config(acl)
        for iface in self.running.interfaces.values():
            lines += ["", *self.interface_lines(iface)]
        if self.running.lines:
            lines += ["", *self.vty_config()]
        return "".join(f"{line}\n" for line in lines)

    def running_interfaces(self, words: list[str]) -> str:
        lines = self.header(" ".join(words))
        for iface in self.interfaces_named(words, 3):
            lines += ["", *self.interface_lines(iface)]
        return "".join(f"{line}\n" for line in lines)

    # -- global configuration ----------------------------------------------------------------
    def global_extra(self, line: str, words: list[str]) -> str | None:
        neg = words[0] == "no"
        rest = words[int(neg) :]
        if words[0] == "show":
            return self.show_line(line, words)
        for family, keyword in ((4, "ip"), (6, "ipv6")):
            if rest[:2] == [keyword, "access-list"]:
                return self.access_list(words, family, int(neg) + 2, neg)
            if words[:3] == ["resequence", keyword, "access-list"]:
                return self.resequence(words, family)
        return None

    def access_list(self, words: list[str], family: int, at: int, neg: bool) -> str:
        cur = Cursor(words, at)
        name = cur.take()
        if cur.peek() is not None:
            cur.fail()
        if len(name) > 64:
            cur.fail(at)
        if neg:
            self.running.acls.pop((family, name), None)
            return ""
        return self.enter_acl(family, name, "extended")

    def resequence(self, words: list[str], family: int) -> str:
        cur = Cursor(words, 3)
        name = cur.take()
        start = cur.number(1, NXOS.max_seq)
        step = cur.number(1, NXOS.max_seq) if cur.peek() is not None else 10
        if cur.peek() is not None:
            cur.fail()
        acl = self.running.acls.get((family, name))
        if acl is None:
            return f"ERROR: ACL {name} does not exist\n"
        acl.resequence(start, step)
        return ""
