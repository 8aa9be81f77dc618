"""What the IOS and NX-OS personalities share: running state, CLI modes, ACL and interface sub-modes, pipes."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from simulators.netdev.aceparse import Cursor, parse_ace
from simulators.netdev.ciscoacl import Ace, Acl, Dialect
from simulators.netdev.personality import CliError, Personality, SessionEnd, tokenize

if TYPE_CHECKING:
    from simulators.netdev.server import DeviceSimulator

#: interface settings kept verbatim (longest keys first); anything else in interface mode is not ours
IF_SETTINGS = (
    "ip address", "ipv6 address", "ipv6 enable", "ip vrf", "description", "shutdown", "mtu", "vrf", "switchport",
    "speed", "duplex", "channel-group", "encapsulation", "bandwidth",
)  # fmt: skip
BINDINGS = {4: "ip access-group", 6: "ipv6 traffic-filter"}
Tree = dict[str, "Tree"]
PIPES: Tree = {"section": {}, "include": {}, "exclude": {}, "begin": {}}


def expand(words: list[str], tree: Tree) -> list[str]:
    """Complete abbreviated keywords (``conf t``, ``sh run``) along a keyword tree; arguments stay as typed."""
    out = list(words)
    node = tree
    for i, word in enumerate(words):
        matches = [word] if word in node else [key for key in node if key.startswith(word)]
        if len(matches) != 1:
            break
        out[i] = matches[0]
        node = node[matches[0]]
    return out


@dataclass
class Interface:
    name: str
    settings: dict[str, str] = field(default_factory=dict)  # key -> line (without indentation)
    groups: dict[tuple[int, str], str] = field(default_factory=dict)  # (family, in|out) -> ACL name


@dataclass
class Running:
    """The whole running configuration (what revert timers and checkpoints snapshot)."""

    hostname: str
    acls: dict[tuple[int, str], Acl] = field(default_factory=dict)
    interfaces: dict[str, Interface] = field(default_factory=dict)
    lines: dict[str, list[str]] = field(default_factory=dict)  # ``line vty …`` → its ``access-class`` lines


@dataclass
class CiscoState:
    running: Running
    startup: Running | None = None
    revert: Any = None  # IOS: the pending confirmed change
    checkpoints: dict[str, Running] = field(default_factory=dict)  # NX-OS


def canonical_interface(text: str, types: tuple[str, ...]) -> str | None:
    """``gi1/0/1`` -> ``GigabitEthernet1/0/1`` (unique case-insensitive prefix of a type), else None."""
    match = re.fullmatch(r"([A-Za-z][A-Za-z-]*)\s*(\d+(?:/\d+)*(?:\.\d+)?)", text)
    if not match:
        return None
    prefix = match.group(1).lower()
    exact = [t for t in types if t.lower() == prefix]
    candidates = exact or [t for t in types if t.lower().startswith(prefix)]
    return candidates[0] + match.group(2) if len(candidates) == 1 else None


def section_filter(lines: list[str], regex: re.Pattern[str]) -> list[str]:
    """IOS ``| section``: every top-level block one of whose lines matches."""
    out: list[str] = []
    block: list[str] = []
    for line in [*lines, ""]:
        if line[:1] not in (" ", "\t") or not block:
            if any(regex.search(b) for b in block):
                out += block
            block = []
        if line:
            block.append(line)
    return out


class CiscoPersonality(Personality):
    """IOS-like CLI: exec mode, global configuration, ACL and interface sub-modes that fall back to global."""

    dialect: ClassVar[Dialect]
    interface_types: ClassVar[tuple[str, ...]]
    logical_types: ClassVar[tuple[str, ...]]
    acl_modes: ClassVar[dict[tuple[int, str], str]]  # (family, kind) -> prompt mode name
    indent: ClassVar[str] = " "
    config_banner: ClassVar[str] = "Enter configuration commands, one per line.  End with CNTL/Z.\n"
    #: keywords that may be abbreviated, in exec mode and in global configuration mode
    exec_tree: ClassVar[Tree] = {}
    config_tree: ClassVar[Tree] = {}
    #: ``no shutdown`` shows in the running configuration (NX-OS) or is the silent default (IOS)
    show_no_shutdown: ClassVar[bool] = False
    vty_head: ClassVar[re.Pattern[str] | None] = None  # ``line vty …`` as the platform takes it (None: no vty lines)

    def __init__(self, device: DeviceSimulator) -> None:
        super().__init__(device)
        self.mode: tuple[Any, ...] = ("exec",)

    @classmethod
    def create_state(cls, device: DeviceSimulator) -> CiscoState:
        running = Running(device.hostname)
        for name in device.interfaces:
            canonical = canonical_interface(name, cls.interface_types)
            if canonical is None:
                raise ValueError(f"{device.hostname}: unknown interface name {name!r}")
            running.interfaces[canonical] = Interface(canonical)
        return CiscoState(running)

    @property
    def state(self) -> CiscoState:
        state: CiscoState = self.device.state
        return state

    @property
    def running(self) -> Running:
        return self.state.running

    def prompt(self) -> str:
        kind = self.mode[0]
        if kind == "acl":
            suffix = f"({self.acl_modes[(self.mode[1], self.mode[3])]})"
        else:
            suffix = {"exec": "", "config": "(config)", "if": "(config-if)", "line": "(config-line)"}[kind]
        return f"{self.running.hostname}{suffix}#"

    def in_config_mode(self) -> bool:
        return bool(self.mode[0] != "exec")

    def execute(self, line: str) -> str:
        words = line.split()
        if not words:
            return ""
        if self.mode[0] == "exec":
            return self.exec_line(line, words)
        return self.config_line(line, words)

    # -- exec mode ---------------------------------------------------------------------------
    def exec_line(self, line: str, words: list[str]) -> str:
        words = expand(words, self.exec_tree)
        if words in (["exit"], ["logout"], ["quit"]):
            raise SessionEnd
        if words[0] == "terminal":
            return self.terminal(words)
        if words[0] == "show":
            return self.show_line(line, words)
        if words == ["configure", "terminal"]:
            self.mode = ("config",)
            return self.config_banner
        if words == ["enable"]:
            return ""
        output = self.exec_extra(line, words)
        if output is None:
            raise CliError(0)
        return output

    def exec_extra(self, line: str, words: list[str]) -> str | None:
        """Platform exec commands; None = unknown command."""
        return None

    def terminal(self, words: list[str]) -> str:
        if words[1:2] in (["length"], ["width"]):
            value = Cursor(words, 2).number(0, 512)
            if len(words) > 3:
                raise CliError(3)
            if words[1] == "length":
                self.page_length = value
            return ""
        if words[1:] in (["monitor"], ["no", "monitor"]):
            return ""
        raise CliError(1, incomplete=len(words) == 1)

    def show_line(self, line: str, words: list[str]) -> str:
        if "|" not in words:
            return self.show(words)
        bar = words.index("|")
        text = self.show(words[:bar])
        tokens = tokenize(line)
        kind = expand(words[bar + 1 : bar + 2], PIPES)[0] if bar + 1 < len(words) else ""
        if bar + 2 >= len(words) or kind not in PIPES:
            raise CliError(bar + 1, incomplete=bar + 2 >= len(words))
        try:
            regex = re.compile(line[tokens[bar + 2][1] :].strip())
        except re.error:
            raise CliError(bar + 2) from None
        lines = text.splitlines()
        if kind == "section":
            lines = section_filter(lines, regex)
        elif kind == "begin":
            start = next((i for i, item in enumerate(lines) if regex.search(item)), len(lines))
            lines = lines[start:]
        else:
            lines = [item for item in lines if bool(regex.search(item)) == (kind == "include")]
        return "".join(f"{item}\n" for item in lines)

    def show(self, words: list[str]) -> str:
        if words[1:2] == ["running-config"]:
            if len(words) == 2:
                return self.running_config()
            if words[2] == "interface":
                return self.running_interfaces(words)
            raise CliError(2)
        output = self.show_extra(words)
        if output is None:
            raise CliError(1, incomplete=len(words) == 1)
        return output

    def show_extra(self, words: list[str]) -> str | None:
        """Platform show commands; None = unknown."""
        return None

    def running_config(self) -> str:
        raise NotImplementedError

    def running_interfaces(self, words: list[str]) -> str:
        raise NotImplementedError

    def interfaces_named(self, words: list[str], at: int) -> list[Interface]:
        """All interfaces, or the one named by ``words[at:]`` (CliError when unknown)."""
        if len(words) <= at:
            return list(self.running.interfaces.values())
        name = canonical_interface("".join(words[at:]), self.interface_types)
        if name is None or name not in self.running.interfaces:
            raise CliError(at)
        return [self.running.interfaces[name]]

    def interface_lines(self, iface: Interface) -> list[str]:
        out = [f"interface {iface.name}", *(self.indent + line for line in iface.settings.values())]
        for family in (4, 6):
            for direction in ("in", "out"):
                name = iface.groups.get((family, direction))
                if name is not None:
                    out.append(f"{self.indent}{BINDINGS[family]} {name} {direction}")
        return out

    # -- configuration modes -----------------------------------------------------------------
    def config_line(self, line: str, words: list[str]) -> str:
        result = None
        if self.mode[0] == "acl":
            result = self.acl_line(words)
        elif self.mode[0] == "if":
            result = self.if_line(words)
        elif self.mode[0] == "line":
            result = self.vty_line(words)
        if result is None:
            result = self.global_line(line, words)
        if result is None:
            raise CliError(0)
        return result

    def global_line(self, line: str, words: list[str]) -> str | None:
        words = expand(words, self.config_tree)
        if words == ["end"]:
            self.mode = ("exec",)
            return ""
        if words == ["exit"]:
            self.mode = ("exec",) if self.mode[0] == "config" else ("config",)
            return ""
        if words[0] == "hostname":
            if len(words) != 2:
                raise CliError(min(len(words), 2), incomplete=len(words) < 2)
            self.running.hostname = words[1]
            return ""
        if words[0] == "interface" or words[:2] == ["no", "interface"]:
            return self.interface_command(words)
        if words[:2] == ["line", "vty"] and self.vty_head is not None:
            head = " ".join(words)
            if not self.vty_head.fullmatch(head):
                raise CliError(min(len(words), 4), incomplete=len(words) < 4)
            self.running.lines.setdefault(head, [])
            self.mode = ("line", head)
            return ""
        if words[0] == "do" and len(words) > 1 and expand(words[1:3], self.exec_tree) != ["configure", "terminal"]:
            return self.exec_line(line.split("do", 1)[1], words[1:])
        return self.global_extra(line, words)

    def global_extra(self, line: str, words: list[str]) -> str | None:
        """Platform global configuration commands (ACL creation, resequence ...); None = unknown."""
        return None

    def vty_line(self, words: list[str]) -> str | None:
        """The ``line vty`` mode: its ``access-class NAME in|out`` (and ``no`` of it); None for anything else."""
        if not words or not (words[0] == "access-class" or words[:2] == ["no", "access-class"]):
            return None
        neg = words[0] == "no"
        if len(words) != 3 + neg or words[-1] not in ("in", "out"):
            raise CliError(min(len(words), 3 + neg), incomplete=len(words) < 3 + neg)
        commands = [c for c in self.running.lines[self.mode[1]] if not c.endswith(f" {words[-1]}")]
        self.running.lines[self.mode[1]] = commands if neg else [*commands, " ".join(words)]
        return ""

    def vty_config(self) -> list[str]:
        """The ``line vty`` blocks of the running configuration."""
        out: list[str] = []
        for head, commands in self.running.lines.items():
            out += [head, *(f"{self.indent}{command}" for command in commands)]
        return out

    def interface_command(self, words: list[str]) -> str:
        at = 2 if words[0] == "no" else 1
        if len(words) <= at:
            raise CliError(at, incomplete=True)
        name = canonical_interface("".join(words[at:]), self.interface_types)
        if name is None:
            raise CliError(at)
        logical = name.startswith(self.logical_types)
        known = name in self.running.interfaces
        if not known and not logical and self.device.interfaces:
            raise CliError(at)
        if at == 2:
            if not logical:
                raise CliError(at)
            self.running.interfaces.pop(name, None)
            return ""
        self.running.interfaces.setdefault(name, Interface(name))
        self.mode = ("if", name)
        return ""

    def current_interface(self) -> Interface:
        return self.running.interfaces.setdefault(self.mode[1], Interface(self.mode[1]))

    def if_line(self, words: list[str]) -> str | None:
        neg = words[0] == "no"
        rest = words[int(neg) :]
        for family, command in BINDINGS.items():
            if rest[:2] == command.split():
                return self.binding(words, family, neg, int(neg) + 2)
        key = next((k for k in IF_SETTINGS if rest[: len(k.split())] == k.split()), None)
        if key is None:
            return None
        iface = self.current_interface()
        if neg and key == "shutdown" and self.show_no_shutdown:
            iface.settings[key] = "no shutdown"
        elif neg:
            iface.settings.pop(key, None)
        elif len(rest) == len(key.split()) and key not in ("shutdown", "ipv6 enable"):
            raise CliError(len(words), incomplete=True)
        else:
            iface.settings[key] = " ".join(rest)
        return ""

    def binding(self, words: list[str], family: int, neg: bool, at: int) -> str:
        iface = self.current_interface()
        args = words[at:]
        if neg and len(args) == 1 and args[0] in ("in", "out"):
            args = ["", args[0]]
        if len(args) < 2:
            raise CliError(len(words), incomplete=True)
        if args[1] not in ("in", "out"):
            raise CliError(at + 1)
        if len(args) > 2:
            raise CliError(at + 2)
        if neg:
            iface.groups.pop((family, args[1]), None)
        else:
            iface.groups[(family, args[1])] = args[0]
        return ""

    def enter_acl(self, family: int, name: str, kind: str) -> str:
        acl = self.running.acls.setdefault((family, name), Acl(name, family, kind))
        self.mode = ("acl", family, name, acl.kind)
        return ""

    def current_acl(self) -> Acl:
        _, family, name, kind = self.mode
        return self.running.acls.setdefault((family, name), Acl(name, family, kind))

    def acl_line(self, words: list[str]) -> str | None:
        acl = self.current_acl()
        dialect = self.dialect
        neg = words[0] == "no"
        cur = Cursor(words, int(neg))
        seq = None
        keyword_seq = dialect.platform == "ios" and acl.family == 6
        if keyword_seq and cur.peek() == "sequence":
            cur.take()
            seq = cur.number(1, dialect.max_seq)
        elif not keyword_seq and (cur.peek() or "").isdigit():
            seq = cur.number(1, dialect.max_seq)
        word = cur.peek()
        if word is None and seq is not None:
            if not neg:
                raise CliError(cur.pos, incomplete=True)
            acl.entries.pop(seq, None)
            return ""
        if word == "remark":
            return self.remark(acl, words, cur.pos, seq, neg)
        if word in ("permit", "deny"):
            ace, tail = parse_ace(cur, acl, dialect)
            seq = tail if tail is not None else seq
            if neg and seq is not None:
                acl.entries.pop(seq, None)
            elif neg:
                acl.remove_matching(ace)
            else:
                acl.add(seq, ace, dialect)
            return ""
        if words[cur.pos :] == ["statistics", "per-entry"] and dialect.platform == "nxos":
            acl.statistics = not neg
            return ""
        if seq is not None:
            raise CliError(cur.pos)
        return None

    def remark(self, acl: Acl, words: list[str], at: int, seq: int | None, neg: bool) -> str:
        text = " ".join(words[at + 1 :])
        if not text and not neg:
            raise CliError(len(words), incomplete=True)
        if len(text) > 100:
            raise CliError(at + 1)
        if neg:
            if seq is not None:
                acl.entries.pop(seq, None)
            else:
                acl.remove_matching(Ace("remark", remark=text))
            return ""
        acl.add(seq, Ace("remark", remark=text), self.dialect)
        return ""

    # -- whole-state operations ----------------------------------------------------------------
    def snapshot(self) -> Running:
        return copy.deepcopy(self.running)

    def restore(self, running: Running) -> None:
        self.state.running = copy.deepcopy(running)
