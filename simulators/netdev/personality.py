"""The Personality base class and registry: how one platform's CLI plugs into the SSH device framework."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    from simulators.netdev.server import DeviceSimulator

__all__ = [
    "CliError",
    "Personality",
    "SessionEnd",
    "personality_class",
    "register",
    "registered",
    "tokenize",
]


class SessionEnd(Exception):
    """Raised by `Personality.execute` to end the session (``exit``/``logout`` from exec mode)."""


class CliError(Exception):
    """A command the platform refuses; `Personality.error_output` turns it into the platform's text.

    ``index`` is the token the caret goes under (``len(tokens)`` points just past the line);
    ``incomplete`` selects the platform's "incomplete command" message instead of "invalid input";
    ``message`` replaces both with a literal text (e.g. ``% Duplicate sequence number``).
    """

    def __init__(self, index: int = 0, *, incomplete: bool = False, message: str | None = None) -> None:
        super().__init__(message or f"invalid input at token {index}")
        self.index = index
        self.incomplete = incomplete
        self.message = message


def tokenize(line: str) -> list[tuple[str, int]]:
    """Whitespace-separated tokens of ``line`` with their character offsets (for the caret)."""
    return [(m.group(0), m.start()) for m in re.finditer(r"\S+", line)]


class Personality:
    """One CLI session's view of a simulated device; subclass it and decorate with `register`.

    The framework (`simulators.netdev.server`) creates one instance per SSH session, calls
    `prompt` to paint the prompt, and `execute` once per input line (already echoed; without the
    line terminator) through `respond`, which renders a raised `CliError`.  Every call into a
    personality -- `execute`, `prompt`, `in_config_mode`, `session_lost`, `boot` -- is made while
    holding ``device.lock``, and so are the callbacks of ``device.after(...)`` timers:
    personalities never lock anything themselves.

    Device-wide state (running configuration, pending commits, checkpoints ...) lives in
    ``device.state``, created once per device by the class method `create_state`; per-session state
    (CLI mode, pagination, a private candidate) lives on the instance.  A timer callback must reach
    the state through ``device.state``, never through a session (the session may be gone).

    What a subclass must provide: `prompt`, `execute`, usually `create_state`, `in_config_mode`,
    and the class attributes ``invalid_message`` / ``incomplete_message`` used by `error_output`.
    Output strings use ``\\n``; the framework converts to ``\\r\\n``, paginates (`page_length`),
    appends a missing final newline and then the new prompt.
    """

    name: ClassVar[str] = ""
    #: text printed after the caret line for `CliError` (IOS style); a trailing blank line is kept
    invalid_message: ClassVar[str] = "% Invalid input detected at '^' marker.\n\n"
    #: text for an incomplete command; ``None`` = the invalid message with the caret past the line
    incomplete_message: ClassVar[str | None] = "% Incomplete command.\n\n"
    #: command that enters configuration mode for `boot`, and the one that leaves it
    boot_enter: ClassVar[str] = "configure terminal"
    boot_leave: ClassVar[str] = "end"
    #: a `boot` line whose output matches this is a broken boot configuration (ValueError)
    boot_error: ClassVar[re.Pattern[str]] = re.compile(r"(?m)^\s*(% |%[A-Z]|ERROR|Error:|error:|syntax error)")

    def __init__(self, device: DeviceSimulator) -> None:
        self.device = device
        #: lines per page before ``--More--``; 0 = no pagination (``terminal length 0``)
        self.page_length = 24

    # -- what the framework calls -------------------------------------------------------------
    @classmethod
    def create_state(cls, device: DeviceSimulator) -> Any:
        """The device-wide state object, created once per device (``device.state``)."""
        return {}

    def banner(self) -> str:
        """Text sent once when the shell opens, before the first prompt."""
        return ""

    def prompt(self) -> str:
        """The prompt for the session's current mode, e.g. ``leaf1(config-if)#``."""
        raise NotImplementedError

    def execute(self, line: str) -> str:
        """Output for one input line (no echo, no prompt); raise `SessionEnd` to end the session."""
        raise NotImplementedError

    def in_config_mode(self) -> bool:
        """True while lines typed now are configuration lines (fault injection counts them)."""
        return False

    def session_lost(self) -> None:
        """The session ended (dropped connection, exit, server stop): discard per-session state."""

    def boot(self, lines: Iterable[str]) -> None:
        """Apply boot configuration lines as if typed in configuration mode, without output.

        Default: `execute` ``boot_enter``, every line, then ``boot_leave``; raises ValueError
        when a line's output matches ``boot_error``.
        """
        self.respond(self.boot_enter)
        for line in lines:
            if not line.strip():
                continue
            output = self.respond(line)
            if self.boot_error.search(output):
                raise ValueError(f"{self.device.hostname}: boot line {line!r} rejected: {output.strip()}")
        self.respond(self.boot_leave)

    # -- helpers ------------------------------------------------------------------------------
    def respond(self, line: str) -> str:
        """`execute`, with a raised `CliError` rendered by `error_output` (what the framework calls)."""
        try:
            return self.execute(line)
        except CliError as error:
            return self.error_output(line, error)

    def invalid_input(self, line: str, token_index: int) -> str:
        """The platform's caret line + invalid-input text for ``line`` (caret under that token)."""
        return self._caret(line, token_index) + self.invalid_message

    def error_output(self, line: str, error: CliError) -> str:
        """Render a `CliError` raised while executing ``line``."""
        if error.message is not None:
            return error.message if error.message.endswith("\n") else error.message + "\n"
        if error.incomplete and self.incomplete_message is not None:
            return self.incomplete_message
        return self.invalid_input(line, error.index)

    def _caret(self, line: str, token_index: int) -> str:
        tokens = tokenize(line)
        column = tokens[token_index][1] if token_index < len(tokens) else len(line.rstrip()) + 1
        return " " * (len(self.prompt()) + column) + "^\n"


_REGISTRY: dict[str, type[Personality]] = {}
#: personalities that live in this package, imported on first use
BUILTIN_MODULES = {
    "ios": "simulators.netdev.ios",
    "nxos": "simulators.netdev.nxos",
    "eos": "simulators.netdev.eos",
    "junos": "simulators.netdev.junos",
}

P = TypeVar("P", bound=type[Personality])


def register(name: str) -> Callable[[P], P]:
    """Class decorator: make a `Personality` subclass available as ``DeviceSimulator(name, ...)``."""

    def decorate(cls: P) -> P:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def personality_class(name: str) -> type[Personality]:
    """The registered class for ``name`` (importing the built-in module on first use)."""
    if name not in _REGISTRY and name in BUILTIN_MODULES:
        importlib.import_module(BUILTIN_MODULES[name])
    try:
        return _REGISTRY[name]
    except KeyError:
        known = sorted(set(_REGISTRY) | set(BUILTIN_MODULES))
        raise ValueError(f"unknown device personality {name!r} (known: {', '.join(known)})") from None


def registered() -> list[str]:
    """Names registered so far (built-ins appear once imported)."""
    return sorted(_REGISTRY)
