"""Juniper Junos personality of the SSH network-device simulator (test double): candidates, commit confirmed."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from simulators.netdev.junos_config import (
    JunosCliError,
    Node,
    Step,
    braces,
    check_commit,
    clone,
    commit_options,
    compare,
    delete_path,
    display_set,
    insert_path,
    leaf_paths,
    parse_path,
    same,
    set_path,
    split_pipes,
    walk,
)
from simulators.netdev.junos_schema import ROOT
from simulators.netdev.personality import Personality, SessionEnd, register

if TYPE_CHECKING:
    from simulators.netdev.server import DeviceSimulator

_TOKEN = re.compile(r'"[^"]*"|\S+')
HISTORY = 49  # rollback 1 … 49


@dataclass
class _Confirm:
    """A pending `commit confirmed`: what the device rolls back to unless a `commit` follows in time."""

    rollback_to: Node
    deadline: float
    timer: Any = None


@dataclass
class JunosDevice:
    """Device-wide Junos state: the active configuration, its rollback history, the shared candidate."""

    active: Node = field(default_factory=dict)
    history: list[Node] = field(default_factory=list)  # history[0] is `rollback 1`
    shared: Node = field(default_factory=dict)
    confirm: _Confirm | None = None
    exclusive: object | None = None  # the session holding `configure exclusive`


def _tokens(line: str) -> list[tuple[str, int]]:
    return [(m.group(0), m.start()) for m in _TOKEN.finditer(line)]


@register("junos")
class JunosPersonality(Personality):
    """One CLI session on a simulated Junos router/switch (`configure`, `configure private|exclusive`)."""

    boot_enter: ClassVar[str] = "configure"
    boot_leave: ClassVar[str] = "commit and-quit"

    def __init__(self, device: DeviceSimulator) -> None:
        super().__init__(device)
        self.db: JunosDevice = device.state
        self.config = False
        self.database = "shared"  # shared | private | exclusive
        self.private: Node = {}
        self.private_base: Node = {}
        self.context: list[list[str]] = [[]]  # `edit` levels; the last one is current
        self.question: Callable[[str], str] | None = None

    # -- framework entry points -------------------------------------------------------------------------------

    @classmethod
    def create_state(cls, device: DeviceSimulator) -> JunosDevice:
        """The device's interfaces (``ge-0/0/0`` or, with a unit, ``irb.100``) appear in the configuration."""
        db = JunosDevice()
        for name in device.interfaces:
            ifd, _, unit = name.partition(".")
            try:
                set_path(db.active, parse_path(["interfaces", ifd, *(["unit", unit] if unit else [])]))
            except JunosCliError as exc:
                raise ValueError(f"{device.hostname}: not a Junos interface name: {name!r}") from exc
        db.shared = clone(db.active)
        return db

    def banner(self) -> str:
        return "--- JUNOS 21.4R3-S3.4 Kernel 64-bit (simulated device, a test double)"

    def prompt(self) -> str:
        if self.question is not None:
            return "Exit with uncommitted changes? [yes,no] (yes) "
        who = f"{self.device.username}@{self.device.hostname}"
        if not self.config:
            return f"\n{who}> "
        level = " ".join(self.context[-1])
        edit = f"[edit {level}]" if level else "[edit]"
        pending = self.db.confirm
        if pending is not None:
            left = max(1, math.ceil((pending.deadline - time.monotonic()) / self.device.minute_seconds))
            edit = f"# commit confirmed will be rolled back in {left} minutes\n{edit}"
        return f"\n{edit}\n{who}# "

    def in_config_mode(self) -> bool:
        return self.config

    def execute(self, line: str) -> str:
        """The answer to one line, newline-terminated when not empty (as `device.cli` and SSH show it)."""
        output = self._answer(line)
        return output if not output or output.endswith("\n") else output + "\n"

    def _answer(self, line: str) -> str:
        if self.question is not None:
            answer, self.question = self.question, None
            return answer(line.strip())
        tokens = _tokens(line)
        words = [t for t, _ in tokens]
        if not words:
            return ""
        try:
            return self._config(words) if self.config else self._exec(words)
        except JunosCliError as exc:
            return self._pointer(tokens, line, exc.index) + exc.message

    def invalid_input(self, line: str, token_index: int) -> str:
        return self._pointer(_tokens(line), line, token_index) + "syntax error.\n"

    def session_lost(self) -> None:
        """A private candidate dies with its session; an exclusive one is discarded; a confirm timer runs on."""
        if self.config:
            self._leave(discard=self.database != "shared")
        self.question = None

    def boot(self, lines: Iterable[str]) -> None:
        """`configure`, the `set` lines, `commit and-quit`; ValueError on any answer (a refused line or commit)."""
        self.respond(self.boot_enter)
        for line in lines:
            if line.strip():
                output = self.respond(line.strip())
                if output.strip():
                    raise ValueError(f"{self.device.hostname}: boot line {line!r} rejected: {output.strip()}")
        output = self.respond(self.boot_leave)
        if "commit complete" not in output:
            raise ValueError(f"{self.device.hostname}: boot configuration does not commit: {output.strip()}")

    def _pointer(self, tokens: list[tuple[str, int]], line: str, index: int) -> str:
        column = tokens[index][1] if index < len(tokens) else len(line.rstrip()) + 1
        return " " * (len(self.prompt().split("\n")[-1]) + column) + "^\n"

    # -- operational mode -------------------------------------------------------------------------------------

    def _exec(self, words: list[str]) -> str:
        if words[:2] == ["set", "cli"] and len(words) == 4 and words[2] in ("screen-length", "screen-width"):
            if not words[3].isdigit():
                raise JunosCliError(3)
            if words[2] == "screen-length":
                self.page_length = int(words[3])
                return f"Screen length set to {words[3]}"
            return f"Screen width set to {words[3]}"
        if words[:3] == ["set", "cli", "complete-on-space"] and words[3:] in (["on"], ["off"]):
            return "Disabling complete-on-space" if words[3] == "off" else "Enabling complete-on-space"
        if words[0] in ("exit", "quit", "logout") and len(words) == 1:
            raise SessionEnd
        if words[0] == "configure":
            return self._configure(words)
        if words[0] == "show":
            return self._show_operational(words)
        raise JunosCliError(0, "unknown command.")

    def _configure(self, words: list[str]) -> str:
        if len(words) > 2 or words[1:] not in ([], ["private"], ["exclusive"]):
            raise JunosCliError(1)
        database = words[1] if len(words) == 2 else "shared"
        modified = not same(self.db.shared, self.db.active)
        if database == "private" and modified:
            return "error: shared configuration database modified"
        if database == "exclusive" and self.db.exclusive is not None:
            return "error: configuration database locked by another user"
        self.config, self.database, self.context = True, database, [[]]
        lines = ["Entering configuration mode"]
        if database == "private":
            self.private, self.private_base = clone(self.db.active), clone(self.db.active)
        if database != "shared":
            lines.insert(0, "warning: uncommitted changes will be discarded on exit")
        if database == "exclusive":
            self.db.exclusive = self
        if modified:
            lines.append("The configuration has been changed but not committed")
        return "\n".join(lines)

    def _show_operational(self, words: list[str]) -> str:
        command, pipes = split_pipes(words)
        if command[1:2] == ["version"] and len(command) == 2:
            return f"Hostname: {self.device.hostname}\nModel: vmx\nJunos: 21.4R3-S3.4"
        if command[1:3] == ["firewall", "filter"] and len(command) == 4 and not pipes:
            return self._show_firewall_filter(command[3])
        if command[1:2] != ["configuration"]:
            raise JunosCliError(min(len(command), 1) if len(command) < 2 else 1)
        return self._show_tree(self.db.active, command[2:], pipes, base=2)

    def _show_firewall_filter(self, name: str) -> str:
        """``show firewall filter NAME``: the active filter's ``then count`` counters, sorted by name, in the
        layout of real captures (genieparser's Junos ``ShowFirewall`` fixtures; see tests/data/captures).
        Packets are what tests counted with ``device.hit(family, filter, term, n)`` (this double carries no
        traffic); bytes are 64 per packet.  A filter without counters prints its ``Filter:`` line alone."""
        counted: dict[str, int] = {}
        for path in leaf_paths(self.db.active):
            where = path[1:3] if path[1].startswith("family ") else ("family inet", *path[1:2])
            rest = path[3:] if path[1].startswith("family ") else path[2:]
            if path[0] != "firewall" or where[1] != f"filter {name}" or len(rest) != 3 or rest[1] != "then" \
                    or not rest[2].startswith("count "):
                continue
            family = 6 if where[0] == "family inet6" else 4
            term, counter = rest[0].removeprefix("term "), rest[2].removeprefix("count ")
            counted[counter] = counted.get(counter, 0) + self.device.matches.get((family, name, term), 0)
        lines = [f"Filter: {name}".ljust(71)]
        if counted:
            lines += ["Counters:", f"{'Name':<52}Bytes{'Packets':>21}"]
            lines += [f"{c:<40}{64 * n:>17}{n:>21}" for c, n in sorted(counted.items())]
        return "\n" + "\n".join(lines)

    # -- configuration mode -----------------------------------------------------------------------------------

    def _candidate(self) -> Node:
        return self.private if self.database == "private" else self.db.shared

    def _path(self, words: list[str], base: int, *, partial: bool = False) -> list[Step]:
        context = self.context[-1]
        try:
            return parse_path(context + words, partial=partial)
        except JunosCliError as exc:
            raise JunosCliError(max(exc.index - len(context), 0) + base, exc.message) from exc

    def _config(self, words: list[str]) -> str:
        verb = words[0]
        handlers: dict[str, Callable[[list[str]], str]] = {
            "set": self._set, "delete": self._delete, "insert": self._insert, "edit": self._edit,
            "show": self._show_candidate, "commit": self._commit, "rollback": self._rollback,
            "exit": self._exit, "quit": self._exit, "up": self._up, "top": self._top, "run": self._run,
        }
        if verb not in handlers:
            raise JunosCliError(0, "unknown command.")
        return handlers[verb](words)

    def _set(self, words: list[str]) -> str:
        if len(words) == 1:
            raise JunosCliError(1, "missing argument.")
        set_path(self._candidate(), self._path(words[1:], 1))
        return ""

    def _delete(self, words: list[str]) -> str:
        if len(words) == 1:
            raise JunosCliError(1, "missing argument.")
        found = delete_path(self._candidate(), self._path(words[1:], 1, partial=True))
        return "" if found else "warning: statement not found"

    def _insert(self, words: list[str]) -> str:
        if len(words) < 5:
            raise JunosCliError(len(words), "missing argument.")
        split = len(words) - 3
        steps = self._path(words[1:split], 1)
        insert_path(self._candidate(), steps, words[split], words[split + 1 :], split)
        return ""

    def _edit(self, words: list[str]) -> str:
        steps = self._path(words[1:], 1)
        if steps and (steps[-1].element is None or steps[-1].stmt.kind not in ("container", "named")):
            raise JunosCliError(len(words) - 1)
        self.context.append([word for step in steps for word in (step.element or "").split()])
        return ""

    def _up(self, words: list[str]) -> str:
        levels = int(words[1]) if len(words) == 2 and words[1].isdigit() else 1
        steps = self._path([], 0)
        keep = steps[: max(len(steps) - levels, 0)]
        self.context.append([word for step in keep for word in (step.element or "").split()])
        return ""

    def _top(self, words: list[str]) -> str:
        self.context.append([])
        return ""

    def _run(self, words: list[str]) -> str:
        if len(words) == 1:
            raise JunosCliError(1, "missing argument.")
        if words[1] == "configure":
            raise JunosCliError(1)
        return self._exec(words[1:])

    def _show_candidate(self, words: list[str]) -> str:
        command, pipes = split_pipes(words)
        if ["compare"] in pipes:
            return compare(self.db.active, self._candidate())
        return self._show_tree(self._candidate(), self.context[-1] + command[1:], pipes, base=1 - len(self.context[-1]))

    def _show_tree(self, tree: Node, path: list[str], pipes: list[list[str]], base: int) -> str:
        try:
            steps = parse_path(path, partial=True)
        except JunosCliError as exc:
            raise JunosCliError(exc.index + base, exc.message) from exc
        for pipe in pipes:
            if pipe not in (["display", "set"], ["no-more"]):
                raise JunosCliError(len(path) + base + 1)
        if ["display", "set"] in pipes:
            return display_set(tree, steps)
        node = walk(tree, steps)
        if node is None or (steps and steps[-1].element is None):
            return ""
        return "\n".join(braces(node, steps[-1].stmt if steps else ROOT))

    def _rollback(self, words: list[str]) -> str:
        number = words[1] if len(words) > 1 else "0"
        if len(words) > 2 or not number.isdigit() or int(number) > HISTORY:
            raise JunosCliError(min(len(words) - 1, 2))
        if int(number) > len(self.db.history):
            return f"error: rollback {number} does not exist"
        source = self.db.active if number == "0" else self.db.history[int(number) - 1]
        self._replace_candidate(clone(source))
        return "load complete"

    def _replace_candidate(self, tree: Node) -> None:
        if self.database == "private":
            self.private = tree
        else:
            self.db.shared = tree

    def _exit(self, words: list[str]) -> str:
        if words[1:] not in ([], ["configuration-mode"]):
            raise JunosCliError(1)
        if not words[1:] and len(self.context) > 1:
            self.context.pop()
            return ""
        if same(self._candidate(), self.db.active) or self.database == "private":
            return self._leave(discard=True)
        self.question = self._answer_exit
        return "The configuration has been changed but not committed"

    def _answer_exit(self, answer: str) -> str:
        if answer not in ("", "yes", "y"):
            return ""
        return self._leave(discard=self.database == "exclusive")

    def _leave(self, *, discard: bool) -> str:
        """Back to operational mode; private/exclusive changes are discarded."""
        lines = []
        if discard and not same(self._candidate(), self.db.active):
            lines.append("warning: uncommitted changes will be discarded on exit")
            if self.database != "private":
                self.db.shared = clone(self.db.active)
        if self.db.exclusive is self:
            self.db.exclusive = None
        self.config, self.database, self.context, self.private = False, "shared", [[]], {}
        return "\n".join([*lines, "Exiting configuration mode"])

    # -- commit -------------------------------------------------------------------------------------------------

    def _commit(self, words: list[str]) -> str:
        options = commit_options(words)
        candidate = self._candidate()
        errors = check_commit(candidate)
        if errors:
            return "\n".join([*errors, "error: configuration check-out failed"])
        if "check" in options:
            return "configuration check succeeds"
        if self.db.exclusive not in (None, self):
            return "error: configuration database locked by another user\nerror: commit failed"
        if self.database == "private" and not same(self.db.active, self.private_base):
            return "error: configuration database modified\nerror: commit failed"
        previous = self.db.active
        self.db.history.insert(0, previous)
        del self.db.history[HISTORY:]
        self.db.active = clone(candidate)
        if self.database == "private":
            self.private_base = clone(self.db.active)
            if same(self.db.shared, previous):
                self.db.shared = clone(self.db.active)
        lines = self._arm_confirm(previous, options.get("confirmed"))
        lines.append("commit complete")
        if "and-quit" in options:
            lines.append(self._leave(discard=False))
        return "\n".join(lines)

    def _arm_confirm(self, previous: Node, minutes: str | None) -> list[str]:
        """Start (or restart) the rollback timer of `commit confirmed`; a plain commit confirms."""
        pending = self.db.confirm
        if pending is not None:
            self.device.cancel(pending.timer)
            self.db.confirm = None
        if minutes is None:
            return []
        rollback_to = pending.rollback_to if pending is not None else previous
        deadline = time.monotonic() + int(minutes) * self.device.minute_seconds
        confirm = _Confirm(rollback_to, deadline)
        confirm.timer = self.device.after(int(minutes), _expiry(self.device, confirm))
        self.db.confirm = confirm
        return [f"commit confirmed will be automatically rolled back in {minutes} minutes unless confirmed"]


def _expiry(device: DeviceSimulator, confirm: _Confirm) -> Callable[[], None]:
    """The unconfirmed `commit confirmed`: back to the configuration before it, shared candidate reset."""

    def expire() -> None:
        db: JunosDevice = device.state
        if db.confirm is confirm:
            db.history.insert(0, db.active)
            del db.history[HISTORY:]
            db.active = clone(confirm.rollback_to)
            db.shared = clone(db.active)
            db.confirm = None

    return expire

