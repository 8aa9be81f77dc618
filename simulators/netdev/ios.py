"""Cisco IOS / IOS-XE personality: named ACLs, interface bindings, configure-replace revert timer."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from simulators.netdev.aceparse import Cursor
from simulators.netdev.cisco import CiscoPersonality, CiscoState, Running, Tree
from simulators.netdev.ciscoacl import IOS, Ace, Acl, render_body
from simulators.netdev.personality import CliError, register

if TYPE_CHECKING:
    from simulators.netdev.server import DeviceSimulator

ARCHIVE = "nvram:rollback-config"


@dataclass
class PendingRevert:
    """A ``configure terminal revert timer`` change not yet confirmed."""

    snapshot: Running
    timer: threading.Timer | None = None


def ios_acl_kind(name: str, kind: str) -> bool:
    """IOS naming rules: numbered lists must be in their type's range; names start with a letter."""
    if name.isdigit():
        number = int(name)
        if kind == "standard":
            return 1 <= number <= 99 or 1300 <= number <= 1999
        return 100 <= number <= 199 or 2000 <= number <= 2699
    return name[:1].isalpha()


def revert_now(device: DeviceSimulator, pending: PendingRevert) -> None:
    """Restore the snapshot of a pending confirmed change (timer expiry or ``configure revert now``)."""
    state: CiscoState = device.state
    if state.revert is not pending:
        return
    device.cancel(pending.timer)
    state.running = pending.snapshot
    state.revert = None


@register("ios")
class IosPersonality(CiscoPersonality):
    """``cisco_ios``: prompts ``HOST#``, ``HOST(config)#``, ``HOST(config-ext-nacl)#`` ..."""

    dialect = IOS
    interface_types = (
        "GigabitEthernet", "TenGigabitEthernet", "TwentyFiveGigE", "FortyGigabitEthernet", "HundredGigE",
        "FastEthernet", "AppGigabitEthernet", "Ethernet", "Vlan", "Loopback", "Port-channel", "Tunnel",
    )  # fmt: skip
    logical_types = ("Vlan", "Loopback", "Port-channel", "Tunnel")
    acl_modes: ClassVar[dict[tuple[int, str], str]] = {
        (4, "extended"): "config-ext-nacl",
        (4, "standard"): "config-std-nacl",
        (6, "extended"): "config-ipv6-acl",
    }

    exec_tree: ClassVar[Tree] = {
        "show": {
            "running-config": {"interface": {}},
            "ip": {"access-lists": {}},
            "ipv6": {"access-list": {}},
            "access-lists": {},
            "version": {},
        },
        "configure": {"terminal": {"revert": {"timer": {}}}, "confirm": {}, "revert": {"now": {}, "timer": {}}},
        "terminal": {"length": {}, "width": {}, "monitor": {}, "no": {"monitor": {}}},
        "write": {"memory": {}},
    }
    vty_head = re.compile(r"line vty \d+ \d+")
    config_tree: ClassVar[Tree] = {
        "interface": {},
        "ip": {"access-list": {"extended": {}, "standard": {}, "resequence": {}}},
        "ipv6": {"access-list": {}},
        "hostname": {},
        "line": {"vty": {}},
        "no": {"interface": {}, "ip": {"access-list": {"extended": {}, "standard": {}}}, "ipv6": {"access-list": {}}},
    }

    # -- exec --------------------------------------------------------------------------------
    def exec_extra(self, line: str, words: list[str]) -> str | None:
        if words[:4] == ["configure", "terminal", "revert", "timer"]:
            minutes = Cursor(words, 4).number(1, 120)
            if len(words) > 5:
                raise CliError(5)
            self.schedule_revert(minutes)
            self.mode = ("config",)
            return f"Rollback Confirmed Change: Backing up current running config to {ARCHIVE}\n" + self.config_banner
        if words == ["configure", "confirm"]:
            pending = self.state.revert
            if pending is not None:
                self.device.cancel(pending.timer)
                self.state.revert = None
            return ""
        if words == ["configure", "revert", "now"]:
            return self.revert_pending(lambda pending: revert_now(self.device, pending))
        if words[:3] == ["configure", "revert", "timer"]:
            minutes = Cursor(words, 3).number(1, 120)
            return self.revert_pending(lambda pending: self.schedule_revert(minutes))
        if words in (["write"], ["write", "memory"]):
            self.state.startup = self.snapshot()
            return "Building configuration...\n[OK]\n"
        if words[0] == "configure":
            raise CliError(1, incomplete=len(words) == 1)
        return None

    def revert_pending(self, action: Callable[[PendingRevert], None]) -> str:
        pending = self.state.revert
        if pending is None:
            return "% No Rollback Confirmed Change pending\n"
        action(pending)
        return ""

    def schedule_revert(self, minutes: int) -> None:
        """Start (or restart) the revert timer; the snapshot is the last confirmed configuration."""
        pending: PendingRevert | None = self.state.revert
        if pending is not None:
            self.device.cancel(pending.timer)
            job = PendingRevert(pending.snapshot)
        else:
            job = PendingRevert(self.snapshot())
        device = self.device
        job.timer = device.after(minutes, lambda: revert_now(device, job))
        self.state.revert = job

    # -- show --------------------------------------------------------------------------------
    def show_extra(self, words: list[str]) -> str | None:
        if words[1:3] in (["ip", "access-lists"], ["ip", "access-list"]):
            return self.show_acls(4, words[3:], 3)
        if words[1:3] in (["ipv6", "access-list"], ["ipv6", "access-lists"]):
            return self.show_acls(6, words[3:], 3)
        if words[1:2] in (["access-lists"], ["access-list"]):
            return self.show_acls(4, words[2:], 2) + self.show_acls(6, words[2:], 2)
        if words == ["show", "version"]:
            return (
                "Cisco IOS XE Software, Version 17.09.04a\n"
                "Cisco IOS Software [Cupertino], Catalyst L3 Switch Software (CAT9K_IOSXE), Version 17.9.4a\n"
                f"{self.running.hostname} uptime is 1 day, 2 hours, 3 minutes\n"
            )
        return None

    def show_acls(self, family: int, rest: list[str], at: int) -> str:
        if len(rest) > 1:
            raise CliError(at + 1)
        out: list[str] = []
        for (fam, name), acl in self.running.acls.items():
            if fam == family and (not rest or rest[0] == name):
                out += self.show_acl(acl)
        return "".join(f"{line}\n" for line in out)

    def show_acl(self, acl: Acl) -> list[str]:
        def counted(seq: int) -> str:  # IOS shows a counter only once an entry matched something
            n = self.device.matches.get((acl.family, acl.name, seq), 0)
            return f" ({n} match{'es' if n != 1 else ''})" if n else ""

        if acl.family == 6:
            entries = [f"    {render_body(ace, acl, IOS)}{counted(seq)} sequence {seq}" for seq, ace in self.shown(acl)]
            return [f"IPv6 access list {acl.name}", *entries]
        entries = [f"    {seq} {render_body(ace, acl, IOS)}{counted(seq)}" for seq, ace in self.shown(acl)]
        return [f"{acl.kind.capitalize()} IP access list {acl.name}", *entries]

    @staticmethod
    def shown(acl: Acl) -> list[tuple[int, Ace]]:
        """IOS ``show … access-list`` leaves remarks out."""
        return [(seq, ace) for seq, ace in acl.ordered() if ace.action != "remark"]

    # -- running configuration ---------------------------------------------------------------
    def acl_config(self, acl: Acl) -> list[str]:
        if acl.family == 6:
            return [f"ipv6 access-list {acl.name}"] + [
                f" sequence {seq} {render_body(ace, acl, IOS)}" for seq, ace in acl.ordered()
            ]
        head = f"ip access-list {acl.kind} {acl.name}"
        return [head] + [f" {seq} {render_body(ace, acl, IOS, config=True)}" for seq, ace in acl.ordered()]

    def running_config(self) -> str:
        body = ["!", "version 17.9", f"hostname {self.running.hostname}", "!"]
        for iface in self.running.interfaces.values():
            body += [*self.interface_lines(iface), "!"]
        for acl in self.running.acls.values():
            body += self.acl_config(acl)
        if self.running.lines:  # as IOS prints them: after the ACLs, before `end`
            body += ["!", *self.vty_config()]
        body += ["!", "end"]
        return self.with_header(body)

    def running_interfaces(self, words: list[str]) -> str:
        if len(words) <= 3:
            raise CliError(3, incomplete=True)
        body = ["!"]
        for iface in self.interfaces_named(words, 3):
            body += self.interface_lines(iface)
        return self.with_header([*body, "end"])

    @staticmethod
    def with_header(body: list[str]) -> str:
        text = "".join(f"{line}\n" for line in body)
        return f"Building configuration...\n\nCurrent configuration : {len(text)} bytes\n{text}"

    # -- global configuration ----------------------------------------------------------------
    def global_extra(self, line: str, words: list[str]) -> str | None:
        neg = words[0] == "no"
        rest = words[int(neg) :]
        if rest[:2] == ["ip", "access-list"]:
            return self.ip_access_list(words, int(neg) + 2, neg)
        if rest[:2] == ["ipv6", "access-list"]:
            return self.ipv6_access_list(words, int(neg) + 2, neg)
        return None

    def ip_access_list(self, words: list[str], at: int, neg: bool) -> str:
        cur = Cursor(words, at)
        kind = cur.take()
        if kind == "resequence" and not neg:
            name = cur.take()
            start, step = cur.number(1, IOS.max_seq), cur.number(1, IOS.max_seq)
            if cur.peek() is not None:
                cur.fail()
            acl = self.running.acls.get((4, name))
            if acl is None:
                return f"% Access list {name} does not exist\n"
            acl.resequence(start, step)
            return ""
        if kind not in ("extended", "standard"):
            cur.fail(at)
        name = cur.take()
        if cur.peek() is not None or not ios_acl_kind(name, kind):
            cur.fail(cur.pos if cur.peek() is not None else cur.pos - 1)
        existing = self.running.acls.get((4, name))
        if neg:
            if existing is not None and existing.kind == kind:
                del self.running.acls[(4, name)]
            return ""
        if existing is not None and existing.kind != kind:
            return f"% {name} access-list type mismatch\n"
        return self.enter_acl(4, name, kind)

    def ipv6_access_list(self, words: list[str], at: int, neg: bool) -> str:
        cur = Cursor(words, at)
        name = cur.take()
        if cur.peek() is not None:
            cur.fail()
        if not name[:1].isalpha():
            cur.fail(at)
        if neg:
            self.running.acls.pop((6, name), None)
            return ""
        return self.enter_acl(6, name, "extended")
