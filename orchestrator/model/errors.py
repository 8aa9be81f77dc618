"""The microseg error tree: every failure a user can see is one of these.

::

    MicrosegError
    ├── PolicyError            user input: validation (with file:line), unresolved
    │                          reference, unsupported on target
    ├── InventoryError         enforcement points / workloads that cannot be loaded
    ├── DriverError            carries enforcement point + driver
    │   ├── TransientDriverError(delay)   connect / timeout / throttled → retried
    │   └── PermanentDriverError          auth, parse, rejected by device/API
    │       └── ParseError                native state the driver cannot model
    ├── PlanError              stale plan, safety limit (blast radius, lockout guard)
    ├── VerifyError            post-apply state ≠ intended → triggers rollback
    └── RollbackError          critical: state unknown, a human must look

Errors that come from user input carry a list of :class:`Diagnostic` so that
*all* problems of one run are reported together, each with its location
(``file:line:column``) and, where one exists, the closest valid name.
Foreign exceptions (netmiko, botocore, Azure, Google …) are translated once, at
the driver boundary, with ``raise … from exc``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    """How bad a diagnostic is: errors stop the run, warnings are reported."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Location:
    """Where something was written: a file and, when known, a 1-based line/column."""

    file: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        parts = [self.file]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One finding about user input: what, where, and what to do."""

    message: str
    location: Location | None = None
    severity: Severity = Severity.ERROR
    code: str = "invalid"
    hint: str | None = None

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}{self.severity.value}: {self.message}{hint}"

    def to_dict(self) -> dict[str, object]:
        loc = self.location
        return {
            "severity": self.severity.value,
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
            "file": loc.file if loc else None,
            "line": loc.line if loc else None,
            "column": loc.column if loc else None,
        }


class MicrosegError(Exception):
    """Base of every error microseg raises on purpose."""

    def __init__(self, message: str, diagnostics: Sequence[Diagnostic] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)

    def __str__(self) -> str:
        if not self.diagnostics:
            return self.message
        lines = [self.message, *(f"  {d}" for d in self.diagnostics)]
        return "\n".join(lines)


class PolicyError(MicrosegError):
    """The policy is invalid, references something unknown, or cannot be compiled for a target."""


class InventoryError(MicrosegError):
    """The inventory (enforcement points, workloads, workload sources) cannot be loaded."""


class DriverError(MicrosegError):
    """A driver failed while talking to an enforcement point."""

    def __init__(self, message: str, *, point: str, driver: str) -> None:
        super().__init__(f"{point} ({driver}): {message}")
        self.point = point
        self.driver = driver


class TransientDriverError(DriverError):
    """Connect timeout, throttling, 5xx: worth retrying after ``delay`` seconds."""

    def __init__(self, message: str, *, point: str, driver: str, delay: float = 1.0) -> None:
        super().__init__(message, point=point, driver=driver)
        self.delay = delay


class PermanentDriverError(DriverError):
    """Authentication failure, rejected change, unparsable state: retrying will not help."""


class ParseError(PermanentDriverError):
    """The enforcement point returned native state the driver cannot model (fail closed)."""


class PlanError(MicrosegError):
    """A plan cannot be executed: stale, or refused by a safety guard."""


class VerifyError(MicrosegError):
    """After apply, the actual state is not the intended one."""


class RollbackError(MicrosegError):
    """A rollback failed: the enforcement point is in an unknown state and needs a human."""


def collect_errors(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """The diagnostics that are errors, in order."""
    return [d for d in diagnostics if d.severity is Severity.ERROR]


SHOWN_MAX = 200


def shown(value: Any, limit: int = SHOWN_MAX) -> str:
    """A value from outside (device output, an API answer) for an error message: a string quoted, anything
    else as compact JSON; at most ``limit`` characters, whatever its size or depth, and it never raises."""
    if isinstance(value, str):
        text = repr(value)
    else:
        try:
            text = json.dumps(value, sort_keys=True, default=str)
        except (TypeError, ValueError, RecursionError):  # nested deeper than the encoder can go
            text = f"<unprintable {type(value).__name__}>"
    return text if len(text) <= limit else f"{text[:limit]}…"
