"""Arista EOS configuration model for the EOS simulator: ACLs, interface bindings, show outputs."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from simulators.netdev.eos_acl import EosInputError

FAMILIES = ("ip", "ipv6")
DIRECTIONS = ("in", "out")
#: EOS interface types: long name -> short name (the one prompts use).
INTERFACE_TYPES = {
    "Ethernet": "Et", "Loopback": "Lo", "Management": "Ma", "Port-Channel": "Po", "Vlan": "Vl", "Vxlan": "Vx",
}
_TIMER = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2})\Z")
_IF_NUMBER = re.compile(r"^\d+(/\d+)*(\.\d+)?\Z")
_ACL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,99}\Z")


class DuplicateSequenceError(Exception):
    """`% Error: Duplicate sequence number`."""


@dataclass
class Acl:
    """One ACL: entries by sequence number (EOS keeps them sorted), optional per-entry counters."""

    entries: dict[int, str] = field(default_factory=dict)
    counters: bool = False

    def add(self, seq: int | None, text: str) -> None:
        if seq is None:
            seq = (max(self.entries) if self.entries else 0) + 10
        if seq in self.entries:
            raise DuplicateSequenceError
        self.entries[seq] = text
        self.entries = dict(sorted(self.entries.items()))

    def remove_text(self, text: str) -> None:
        self.entries = {seq: entry for seq, entry in self.entries.items() if entry != text}

    def resequence(self, start: int, step: int) -> None:
        self.entries = {start + i * step: entry for i, entry in enumerate(self.entries.values())}


@dataclass
class Interface:
    """The ACL-relevant part of one interface's configuration."""

    description: str | None = None
    groups: dict[tuple[str, str], str] = field(default_factory=dict)  # (family, direction) -> ACL name

    def lines(self) -> list[str]:
        out = [f"   description {self.description}"] if self.description else []
        for family in FAMILIES:
            for direction in DIRECTIONS:
                if (family, direction) in self.groups:
                    out.append(f"   {family} access-group {self.groups[family, direction]} {direction}")
        return out


def interface_name(tokens: list[str], base: int) -> str:
    """Canonical EOS interface name from `Vlan201`, `vlan 201`, `Et1/1`, `port-channel10` …"""
    word = "".join(tokens)
    match = re.match(r"^([A-Za-z-]+)(.*)\Z", word)
    if not match:
        raise EosInputError(base, tokens[0] if tokens else "")
    prefix, number = match.group(1).lower(), match.group(2)
    kinds = [long for long in INTERFACE_TYPES if long.lower().startswith(prefix)]
    if len(kinds) != 1 or not _IF_NUMBER.match(number):
        raise EosInputError(base, tokens[0])
    return kinds[0] + number


def short_interface_name(name: str) -> str:
    for long, short in INTERFACE_TYPES.items():
        if name.startswith(long):
            return short + name[len(long):]
    return name


def valid_acl_name(name: str) -> bool:
    return bool(_ACL_NAME.match(name))


def _interface_sort_key(name: str) -> tuple[str, list[int]]:
    kind = re.match(r"^[A-Za-z-]+", name)
    return (kind.group(0) if kind else name, [int(n) for n in re.findall(r"\d+", name)])


@dataclass
class EosConfig:
    """The ACL-relevant configuration of one EOS device (running config, or a configuration session's copy)."""

    acls: dict[tuple[str, str], Acl] = field(default_factory=dict)  # (family, name) -> ACL
    interfaces: dict[str, Interface] = field(default_factory=dict)
    control_plane: dict[str, str] = field(default_factory=dict)  # ip|ipv6 -> ACL (``system control-plane``)

    def copy(self) -> EosConfig:
        return copy.deepcopy(self)

    def show_access_lists(self, family: str, name: str | None = None,
                          matches: Mapping[tuple[int, str, int | str], int] | None = None) -> str:
        """`show ip access-lists [NAME]` / `show ipv6 access-lists [NAME]`; with ``counters per-entry``, an entry
        that matched something (``matches``: what tests counted with ``device.hit``) shows ``[match B bytes in N
        packets, …]``, one that matched nothing no counter (as the EOS capture with per-entry statistics shows)."""
        number = 4 if family == "ip" else 6

        def counted(acl_name: str, seq: int) -> str:
            n = (matches or {}).get((number, acl_name, seq), 0)
            return f" [match {64 * n} bytes in {n} packets, 0:00:05 ago]" if n else ""

        title = "IP Access List" if family == "ip" else "IPv6 Access List"
        blocks = []
        for acl_name in sorted(n for f, n in self.acls if f == family):
            if name is not None and acl_name != name:
                continue
            acl = self.acls[family, acl_name]
            lines = [f"{title} {acl_name}"] + (["        statistics per-entry"] if acl.counters else [])
            lines += [f"        {seq} {entry}{counted(acl_name, seq) if acl.counters else ''}"
                      for seq, entry in acl.entries.items()]
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks)

    def interface_sections(self) -> list[list[str]]:
        return [
            [f"interface {name}", *self.interfaces[name].lines()]
            for name in sorted(self.interfaces, key=_interface_sort_key)
        ]

    def running_config(self, hostname: str) -> str:
        """`show running-config`: the sections this simulator models, in EOS's order."""
        lines = ["! Command: show running-config", f"! device: {hostname} (vEOS-lab, EOS-4.31.2F)", "!"]
        lines += ["no aaa root", "!", f"hostname {hostname}", "!", "spanning-tree mode mstp", "!"]
        for section in self.interface_sections():
            lines += [*section, "!"]
        for family in FAMILIES:
            for acl_name in sorted(n for f, n in self.acls if f == family):
                acl = self.acls[family, acl_name]
                lines.append(f"{family} access-list {acl_name}")
                lines += ["   counters per-entry"] if acl.counters else []
                lines += [f"   {seq} {entry}" for seq, entry in acl.entries.items()]
                lines.append("!")
        if self.control_plane:
            lines += ["system control-plane",
                      *(f"   {family} access-group {name} in" for family, name in sorted(self.control_plane.items())),
                      "!"]
        lines += ["ip routing", "!", "end"]
        return "\n".join(lines)


def filter_output(text: str, pipe: str, base: int) -> str:
    """EOS output filters: `| section RE`, `| include RE`, `| exclude RE`, `| begin RE`, `| no-more`."""
    words = pipe.split(None, 1)
    if not words:
        raise EosInputError(base, "|")
    verb, pattern = words[0], (words[1] if len(words) > 1 else "")
    if verb == "no-more":
        return text
    if not pattern or verb not in ("section", "include", "exclude", "begin"):
        raise EosInputError(base + 1, verb)
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise EosInputError(base + 2, pattern) from exc
    lines = text.split("\n")
    if verb == "include":
        return "\n".join(line for line in lines if regex.search(line))
    if verb == "exclude":
        return "\n".join(line for line in lines if not regex.search(line))
    if verb == "begin":
        start = next((i for i, line in enumerate(lines) if regex.search(line)), len(lines))
        return "\n".join(lines[start:])
    return "\n".join(_section(lines, regex))


def _section(lines: list[str], regex: re.Pattern[str]) -> list[str]:
    blocks: list[list[str]] = []
    for line in lines:
        if line.startswith(" ") and blocks:
            blocks[-1].append(line)
        else:
            blocks.append([line])
    out: list[str] = []
    for header, *children in blocks:
        if regex.search(header):
            out += [header, *children]
        elif any(regex.search(child) for child in children):
            out += [header, *(child for child in children if regex.search(child))]
    return out


@dataclass
class PendingCommit:
    """A session committed with `commit timer`: the running config to restore unless confirmed, and when
    (``time.monotonic()``) the timer runs out."""

    before: EosConfig
    expires_at: float = 0.0


@dataclass
class EosDevice:
    """Device-wide EOS state shared by every SSH session: running config, open and timer-pending sessions."""

    running: EosConfig = field(default_factory=EosConfig)
    sessions: dict[str, EosConfig] = field(default_factory=dict)
    pending: dict[str, PendingCommit] = field(default_factory=dict)
    session_counter: int = 0
    startup: EosConfig = field(default_factory=EosConfig)  # `write memory` / `copy running-config startup-config`
    flash: dict[str, EosConfig] = field(default_factory=dict)  # `copy startup-config flash:NAME`


def commit_expiry(db: EosDevice, name: str, pending: PendingCommit) -> Callable[[], None]:
    """The `commit timer` expiry: roll back unless `configure session NAME commit` confirmed it meanwhile."""

    def expire() -> None:
        if db.pending.get(name) is pending:
            del db.pending[name]
            db.running = pending.before

    return expire


def timer_seconds(words: list[str], base: int) -> int | None:
    """Seconds of `commit timer HH:MM:SS` (None for a plain `commit`)."""
    if len(words) == 1:
        return None
    match = _TIMER.match(words[2]) if len(words) == 3 and words[1] == "timer" else None
    index = min(len(words) - 1, 2)
    if match is None:
        raise EosInputError(base + index, words[index])
    hours, minutes, secs = (int(g) for g in match.groups())
    seconds = hours * 3600 + minutes * 60 + secs
    if minutes > 59 or secs > 59 or seconds == 0:
        raise EosInputError(base + 2, words[2])
    return seconds
