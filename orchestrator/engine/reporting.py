"""What the engine tells about a run while it goes: the reporter protocol the faces implement (cli/progress.py)."""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    """Receives the events of a run.  Called from worker threads."""

    def phase(self, title: str, total: int) -> None: ...

    def point(self, name: str, status: str, message: str = "") -> None: ...

    def done(self) -> None: ...


class SilentReporter:
    """Reports nothing (library use and tests)."""

    def phase(self, title: str, total: int) -> None:
        return None

    def point(self, name: str, status: str, message: str = "") -> None:
        return None

    def done(self) -> None:
        return None
