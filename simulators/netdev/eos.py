"""Arista EOS personality of the SSH network-device simulator (test double): ACLs, bindings, configuration sessions."""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from simulators.netdev.eos_acl import EosIncompleteError, EosInputError, parse_rule
from simulators.netdev.eos_config import (
    DIRECTIONS,
    Acl,
    DuplicateSequenceError,
    EosConfig,
    EosDevice,
    Interface,
    PendingCommit,
    commit_expiry,
    filter_output,
    interface_name,
    short_interface_name,
    timer_seconds,
    valid_acl_name,
)
from simulators.netdev.personality import Personality, SessionEnd, register, tokenize

if TYPE_CHECKING:
    from simulators.netdev.server import DeviceSimulator

_CONFIG_KEYWORDS = ("ip", "ipv6", "interface", "no")


@dataclass
class _Mode:
    level: str = "exec"  # exec | config | acl | if | cp (system control-plane)
    session: str | None = None
    acl: tuple[str, str] | None = None
    acl_edit: Acl | None = None  # configure terminal: ACL edits apply when the ACL mode is left (as EOS does)
    interface: str | None = None


@register("eos")
class EosPersonality(Personality):
    """One SSH session on a simulated Arista EOS switch (the test user lands in privileged exec mode)."""

    invalid_message: ClassVar[str] = "% Invalid input\n"
    incomplete_message: ClassVar[str | None] = "% Incomplete command\n"

    def __init__(self, device: DeviceSimulator) -> None:
        super().__init__(device)
        self.db: EosDevice = device.state
        self.mode = _Mode()
        self.touched: set[str] = set()

    # -- framework entry points -------------------------------------------------------------------------------

    @classmethod
    def create_state(cls, device: DeviceSimulator) -> EosDevice:
        db = EosDevice()
        for name in device.interfaces:
            db.running.interfaces[interface_name([name], 0)] = Interface()
        return db

    def prompt(self) -> str:
        host = self.device.hostname
        if self.mode.level == "exec":
            return f"{host}#"
        session = f"-s-{self.mode.session[:6]}" if self.mode.session else ""
        if self.mode.level == "acl" and self.mode.acl:
            family, name = self.mode.acl
            kind = "acl" if family == "ip" else "ipv6-acl"
            return f"{host}(config{session}-{kind}-{name})#"
        if self.mode.level == "if" and self.mode.interface:
            return f"{host}(config{session}-if-{short_interface_name(self.mode.interface)})#"
        if self.mode.level == "cp":
            return f"{host}(config{session}-system-cp)#"
        return f"{host}(config{session})#"

    def in_config_mode(self) -> bool:
        return self.mode.level != "exec"

    def execute(self, line: str) -> str:
        """The answer to one line, newline-terminated when not empty (as `device.cli` and SSH show it)."""
        try:
            output = self._dispatch(line)
            return output if not output or output.endswith("\n") else output + "\n"
        except EosInputError as exc:
            return self.invalid_input(line, exc.index)
        except EosIncompleteError:
            return self.incomplete_message or ""
        except DuplicateSequenceError:
            return "% Error: Duplicate sequence number\n"

    def invalid_input(self, line: str, token_index: int) -> str:
        """EOS prints no caret: `% Invalid input`, naming the token when it is not the first."""
        tokens = tokenize(line)
        if 0 < token_index < len(tokens):
            return f"% Invalid input (at token {token_index}: '{tokens[token_index][0]}')\n"
        return self.invalid_message

    def session_lost(self) -> None:
        """A session left uncommitted by this connection is never applied: discard it."""
        for name in self.touched:
            self.db.sessions.pop(name, None)
        self.touched.clear()
        self.mode = _Mode()

    # -- dispatch ---------------------------------------------------------------------------------------------------

    def _dispatch(self, line: str) -> str:
        tokens = line.split()
        if not tokens or tokens[0].startswith("!"):
            return ""
        if tokens[0] == "show":
            return self._show(line)
        if self.mode.level == "exec":
            return self._exec(tokens)
        if tokens[0] in ("end", "commit", "abort"):
            return self._session_command(tokens)
        handler = {"acl": self._acl_command, "if": self._interface_command,
                   "cp": self._control_plane_command}.get(self.mode.level)
        if handler is not None:
            answer = handler(tokens)
            if answer is not None:
                return answer
            if tokens[0] == "exit":
                self._leave_submode()
                return ""
            if tokens[0] not in _CONFIG_KEYWORDS:
                raise EosInputError(0, tokens[0])
            self._leave_submode()
        return self._config_command(tokens)

    def _target(self) -> EosConfig:
        if self.mode.session is None:
            return self.db.running
        return self.db.sessions.setdefault(self.mode.session, self.db.running.copy())

    def _leave_submode(self) -> None:
        if self.mode.level == "acl" and self.mode.acl and self.mode.acl_edit is not None:
            self.db.running.acls[self.mode.acl] = self.mode.acl_edit
        if self.mode.level in ("acl", "if", "cp"):
            self.mode = _Mode(level="config", session=self.mode.session)

    # -- exec mode ------------------------------------------------------------------------------------------------

    def _exec(self, tokens: list[str]) -> str:
        words = tokens[:2]
        if words == ["terminal", "length"] and len(tokens) == 3 and tokens[2].isdigit():
            self.page_length = int(tokens[2])
            return "Pagination disabled." if self.page_length == 0 else ""
        if words == ["terminal", "width"] and len(tokens) == 3 and tokens[2].isdigit():
            return f"Width set to {tokens[2]} columns."
        if tokens in (["exit"], ["logout"], ["quit"]):
            raise SessionEnd
        if tokens == ["enable"]:
            return ""
        if tokens[0] in ("configure", "config", "conf") and tokens[1:] in ([], ["terminal"], ["t"]):
            self.mode = _Mode(level="config")
            return ""
        if tokens[0] in ("configure", "config", "conf") and tokens[1:2] == ["session"]:
            return self._configure_session(tokens)
        if tokens in (["write", "memory"], ["write"], ["copy", "running-config", "startup-config"]):
            self.db.startup = self.db.running.copy()
            return "Copy completed successfully."
        if tokens[:2] == ["copy", "startup-config"] and len(tokens) == 3 and tokens[2].startswith("flash:"):
            self.db.flash[tokens[2].removeprefix("flash:")] = self.db.startup.copy()
            return "Copy completed successfully."
        raise EosInputError(0, tokens[0])

    def _configure_session(self, tokens: list[str]) -> str:
        if len(tokens) == 2:
            self.db.session_counter += 1
            tokens = [*tokens, f"session{self.db.session_counter}"]
        name = tokens[2]
        if len(tokens) > 3 and tokens[3] in ("commit", "abort"):
            return self._finish_session(name, tokens[3:])
        if len(tokens) > 3:
            raise EosInputError(3, tokens[3])
        if name in self.db.pending:
            return f"% Cannot enter session {name} (commit timer pending)\n"
        self.db.sessions.setdefault(name, self.db.running.copy())
        self.touched.add(name)
        self.mode = _Mode(level="config", session=name)
        return ""

    def _finish_session(self, name: str, words: list[str]) -> str:
        """`configure session NAME commit [timer HH:MM:SS]` / `configure session NAME abort` from exec mode."""
        if words[0] == "abort" and len(words) > 1:
            raise EosInputError(4, words[1])
        seconds = timer_seconds(words, 3) if words[0] == "commit" else None
        pending = self.db.pending.pop(name, None)
        if pending is not None:
            if words[0] == "abort":
                self.db.running = pending.before
            elif seconds is not None:
                self._apply(name, self.db.running, seconds, pending.before)
            return ""
        session = self.db.sessions.pop(name, None)
        if session is None:
            return f"% Session {name} not found\n"
        if words[0] == "commit":
            self._apply(name, session, seconds)
        return ""

    def _apply(self, name: str, session: EosConfig, seconds: int | None, before: EosConfig | None = None) -> None:
        """Make ``session`` the running config; with a timer, keep what to roll back to unless confirmed."""
        self.touched.discard(name)
        if seconds is not None:
            pending = PendingCommit(before=self.db.running if before is None else before,
                                    expires_at=time.monotonic() + seconds / 60.0 * self.device.minute_seconds)
            self.db.pending[name] = pending
            self.device.after(seconds / 60.0, commit_expiry(self.db, name, pending))
        self.db.running = session

    # -- session commands (any configuration mode) ----------------------------------------------------------------

    def _session_command(self, tokens: list[str]) -> str:
        verb = tokens[0]
        if verb == "end" and len(tokens) == 1:
            self._leave_submode()
            self.mode = _Mode()
            return ""
        if verb == "abort" and len(tokens) == 1:
            if self.mode.session is None:
                if self.mode.level != "acl":
                    raise EosInputError(0, verb)
                self.mode = _Mode(level="config")
                return ""
            self.db.sessions.pop(self.mode.session, None)
            self.mode = _Mode()
            return ""
        if verb == "commit" and self.mode.session is not None:
            return self._commit(tokens)
        raise EosInputError(0 if verb != "end" else 1, verb if verb != "end" else tokens[1])

    def _commit(self, tokens: list[str]) -> str:
        """`commit` / `commit timer HH:MM:SS` inside a session: apply it and return to exec mode."""
        name = self.mode.session
        assert name is not None
        seconds = timer_seconds(tokens, 0)
        session = self._target()
        self.db.sessions.pop(name, None)
        self._apply(name, session, seconds)
        self.mode = _Mode()
        return ""

    # -- configuration mode ---------------------------------------------------------------------------------------

    def _config_command(self, tokens: list[str]) -> str:
        if tokens == ["exit"]:
            self.mode = _Mode()
            return ""
        negate = tokens[0] == "no"
        words = tokens[1:] if negate else tokens
        if len(words) >= 2 and words[0] in ("ip", "ipv6") and words[1] == "access-list":
            return self._access_list(words, negate)
        if words == ["system", "control-plane"] and not negate:
            self.mode = _Mode(level="cp", session=self.mode.session)
            return ""
        if words and words[0] == "interface":
            if len(words) < 2:
                raise EosIncompleteError
            name = interface_name(words[1:], 1 + negate)
            if negate:
                self._target().interfaces.pop(name, None)
                return ""
            self._target().interfaces.setdefault(name, Interface())
            self.mode = _Mode(level="if", session=self.mode.session, interface=name)
            return ""
        raise EosInputError(1 if negate and words else 0, words[0] if negate and words else tokens[0])

    def _access_list(self, words: list[str], negate: bool) -> str:
        base = 1 if negate else 0
        if len(words) < 3:
            raise EosIncompleteError
        if len(words) > 3 or not valid_acl_name(words[2]):
            raise EosInputError(base + min(len(words) - 1, 3), words[min(len(words) - 1, 3)])
        key = (words[0], words[2])
        target = self._target()
        if negate:
            target.acls.pop(key, None)
            return ""
        if self.mode.session is None:
            current = target.acls.get(key)
            edit = current.entries.copy() if current else {}
            acl_edit = Acl(entries=edit, counters=current.counters if current else False)
            self.mode = _Mode(level="acl", acl=key, acl_edit=acl_edit)
        else:
            target.acls.setdefault(key, Acl())
            self.mode = _Mode(level="acl", session=self.mode.session, acl=key)
        return ""

    def _current_acl(self) -> Acl:
        assert self.mode.acl is not None
        if self.mode.acl_edit is not None:
            return self.mode.acl_edit
        return self._target().acls.setdefault(self.mode.acl, Acl())

    def _acl_command(self, tokens: list[str]) -> str | None:
        """One line in ACL mode; None when the line is not an ACL-mode command."""
        assert self.mode.acl is not None
        family = self.mode.acl[0]
        acl = self._current_acl()
        first = tokens[0]
        if first.isdigit():
            acl.add(self._seq(first, 0), parse_rule(tokens[1:], family, base=1))
        elif first in ("permit", "deny", "remark"):
            acl.add(None, parse_rule(tokens, family))
        elif first == "resequence":
            acl.resequence(*self._resequence_args(tokens))
        elif tokens == ["counters", "per-entry"]:
            acl.counters = True
        elif first == "no" and len(tokens) > 1:
            return self._acl_negation(acl, tokens, family)
        else:
            return None
        return ""

    def _acl_negation(self, acl: Acl, tokens: list[str], family: str) -> str | None:
        if tokens[1].isdigit() and len(tokens) == 2:
            acl.entries.pop(self._seq(tokens[1], 1), None)
        elif tokens[1] in ("permit", "deny", "remark"):
            acl.remove_text(parse_rule(tokens[1:], family, base=1))
        elif tokens[1:] == ["counters", "per-entry"]:
            acl.counters = False
        else:
            return None
        return ""

    @staticmethod
    def _seq(word: str, index: int) -> int:
        seq = int(word)
        if not 1 <= seq <= 4294967295:
            raise EosInputError(index, word)
        return seq

    def _resequence_args(self, tokens: list[str]) -> tuple[int, int]:
        if len(tokens) > 3:
            raise EosInputError(3, tokens[3])
        values = [self._seq(word, i + 1) if word.isdigit() else -1 for i, word in enumerate(tokens[1:])]
        if -1 in values:
            index = values.index(-1) + 1
            raise EosInputError(index, tokens[index])
        start = values[0] if values else 10
        return start, values[1] if len(values) > 1 else 10

    # -- interface mode ---------------------------------------------------------------------------------------------

    def _control_plane_command(self, tokens: list[str]) -> str | None:
        """``system control-plane``: ``[no] ip|ipv6 access-group NAME in`` (the ACL that guards the switch itself;
        Arista EOS User Manual, "Control Plane ACLs" — EOS 4.23 and later; older releases said ``control-plane``)."""
        negate = tokens[0] == "no"
        words = tokens[1:] if negate else tokens
        if len(words) < 2 or words[0] not in ("ip", "ipv6") or words[1] != "access-group":
            return None
        base = 1 if negate else 0
        if len(words) not in ((2, 3, 4) if negate else (4,)):
            raise EosIncompleteError if len(words) < 4 else EosInputError(base + 4, words[-1])
        if len(words) == 4 and words[3] != "in":
            raise EosInputError(base + 3, words[3])
        groups = self._target().control_plane
        if negate:
            if len(words) == 2 or groups.get(words[0]) == words[2]:
                groups.pop(words[0], None)
        elif not valid_acl_name(words[2]):
            raise EosInputError(base + 2, words[2])
        else:
            groups[words[0]] = words[2]
        return ""

    def _interface_command(self, tokens: list[str]) -> str | None:
        assert self.mode.interface is not None
        interface = self._target().interfaces.setdefault(self.mode.interface, Interface())
        negate = tokens[0] == "no"
        words = tokens[1:] if negate else tokens
        if words[:1] == ["description"]:
            interface.description = None if negate else " ".join(words[1:]) or None
            return ""
        if len(words) < 2 or words[0] not in ("ip", "ipv6") or words[1] != "access-group":
            return None
        base = 1 if negate else 0
        if len(words) not in ((3, 4) if negate else (4,)):
            raise EosIncompleteError if len(words) < 3 else EosInputError(base + 4, words[-1])
        direction = words[-1]
        if direction not in DIRECTIONS:
            raise EosInputError(base + len(words) - 1, direction)
        key = (words[0], direction)
        if negate:
            if len(words) == 3 or interface.groups.get(key) == words[2]:
                interface.groups.pop(key, None)
        elif not valid_acl_name(words[2]):
            raise EosInputError(base + 2, words[2])
        else:
            interface.groups[key] = words[2]
        return ""

    # -- show commands ----------------------------------------------------------------------------------------------

    def _show(self, line: str) -> str:
        command, _, pipe = line.partition("|")
        tokens = command.split()
        output = self._show_output(tokens)
        return filter_output(output, pipe, len(tokens)) if pipe else output

    def _show_output(self, tokens: list[str]) -> str:
        words = tokens[1:]
        if len(words) in (2, 3) and words[0] in ("ip", "ipv6") and words[1] in ("access-lists", "access-list"):
            return self.db.running.show_access_lists(words[0], words[2] if len(words) == 3 else None,
                                                     self.device.matches)
        if words == ["running-config"]:
            return self.db.running.running_config(self.device.hostname)
        if words == ["session-config"] and self.mode.session is not None:
            return self._target().running_config(self.device.hostname)
        if len(words) == 4 and words[:2] == ["session-config", "named"] and words[3] == "diffs":
            return self._session_diffs(words[2])
        if words == ["version"]:
            return "Arista vEOS-lab\nSoftware image version: 4.31.2F (simulated)"
        index = min(len(tokens) - 1, 1)
        raise EosInputError(index, tokens[index])

    def _session_diffs(self, name: str) -> str:
        """`show session-config named NAME diffs`: the session against the running config, as a unified diff."""
        session = self.db.sessions.get(name)
        if session is None:
            return f"% Session {name} not found\n"
        host = self.device.hostname
        diff = difflib.unified_diff(self.db.running.running_config(host).splitlines(),
                                    session.running_config(host).splitlines(), "system:/running-config",
                                    f"session:/{name}-session-config", lineterm="")
        return "".join(f"{line}\n" for line in diff)
