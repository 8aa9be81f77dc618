"""How a run's progress is shown: a rich progress bar with per-point status on a terminal, plain lines otherwise."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from datetime import UTC, datetime
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from orchestrator.cli.style import Style
from orchestrator.engine.reporting import Reporter, SilentReporter

STATUS_STYLE = {
    "new": "green", "in_sync": "green", "planned": "cyan", "unchanged": "dim", "restored": "yellow",
    "skipped": "dim", "drift": "yellow", "failed": "red", "unknown": "bold red", "retry": "yellow",
}


class PlainReporter:
    """One line per event, timestamped: for logs, CI and pipes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._lock = threading.Lock()
        self._start = time.monotonic()

    def _line(self, text: str) -> None:
        with self._lock:
            self._stream.write(f"[{time.monotonic() - self._start:7.2f}s] {text}\n")
            self._stream.flush()

    def phase(self, title: str, total: int) -> None:
        self._line(f"== {title} ({total} point{'' if total == 1 else 's'})")

    def point(self, name: str, status: str, message: str = "") -> None:
        self._line(f"{name}: {status}" + (f" — {message}" if message else ""))

    def done(self) -> None:
        return None


class RichReporter:
    """A progress bar per phase and a coloured line per point outcome (terminal only)."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console or Console(stderr=True, no_color=Style.no_color or None)
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._lock = threading.Lock()

    def phase(self, title: str, total: int) -> None:
        with self._lock:
            self._stop()
            self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=self._console, transient=True)
            self._progress.start()
            self._task = self._progress.add_task(title, total=total)

    def point(self, name: str, status: str, message: str = "") -> None:
        style = STATUS_STYLE.get(status, "white")
        line = f"  [{style}]{status:<9}[/] {name}" + (f"  [dim]{message}[/]" if message else "")
        with self._lock:
            self._console.print(line, highlight=False)
            if self._progress is not None and self._task is not None and status not in ("retry",):
                self._progress.advance(self._task)

    def done(self) -> None:
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._task = None


class JsonLinesReporter:
    """Structured logs: one JSON object per event on stderr (for journald, Loki, CloudWatch …)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._lock = threading.Lock()
        self._phase = ""

    def _emit(self, record: dict[str, object]) -> None:
        line = json.dumps({"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), "logger": "microseg",
                           **record}, sort_keys=True)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    def phase(self, title: str, total: int) -> None:
        self._phase = title
        self._emit({"event": "phase", "phase": title, "points": total})

    def point(self, name: str, status: str, message: str = "") -> None:
        level = "error" if status in ("failed", "unknown") else ("warning" if status in ("retry", "restored")
                                                                   else "info")
        self._emit({"event": "point", "phase": self._phase, "point": name, "status": status, "message": message,
                    "level": level})

    def done(self) -> None:
        return None


def reporter_for(as_json: bool, quiet: bool = False, log_format: str | None = None) -> Reporter:
    """Rich on a terminal, plain lines when stderr is not a TTY, JSON lines with ``log_format='json'``
    (or ``MICROSEG_LOG_FORMAT=json``), nothing when quiet."""
    if quiet:
        return SilentReporter()
    if json_logs_wanted(log_format):
        return JsonLinesReporter()
    if sys.stderr.isatty() and not as_json:
        return RichReporter()
    return PlainReporter()


class JsonLogFormatter(logging.Formatter):
    """Python logging records as the same JSON objects the run reporter writes (for ``microseg serve``)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {"ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                                   "level": record.levelname.lower(), "logger": record.name,
                                   "message": record.getMessage()}
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, sort_keys=True)


def json_logs_wanted(log_format: str | None = None) -> bool:
    return (log_format or os.environ.get("MICROSEG_LOG_FORMAT", "")).lower() == "json"


def configure_logging(level: int = logging.INFO) -> None:
    """Root logging on stderr: JSON objects with ``MICROSEG_LOG_FORMAT=json``, readable lines otherwise."""
    handler = logging.StreamHandler()
    if json_logs_wanted():
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
