"""The lab's state file (lab.json): what it created, so that only that is ever removed."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.lab.plan import LabPlan
from orchestrator.lab.system import LabError, ProcessRecord

STATE_FILE = "lab.json"
LOCK_FILE = "lab.lock"
VERSION = 1


@dataclass
class LabState:
    """Namespaces (name -> inode) and processes the lab created, with the plan it was built from."""

    plan: LabPlan
    namespaces: dict[str, int] = field(default_factory=dict)
    processes: list[ProcessRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"version": VERSION, "plan": self.plan.to_dict(), "namespaces": dict(self.namespaces),
                "processes": [p.to_dict() for p in self.processes]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabState:
        return cls(plan=LabPlan.from_dict(data["plan"]),
                   namespaces={str(k): int(v) for k, v in data["namespaces"].items()},
                   processes=[ProcessRecord.from_dict(p) for p in data["processes"]])

    def process(self, kind: str, host: str) -> ProcessRecord | None:
        return next((p for p in self.processes if p.kind == kind and p.host == host), None)

    def replace(self, record: ProcessRecord) -> None:
        """Record ``record`` in place of the process of the same kind and host."""
        self.processes = [p for p in self.processes if (p.kind, p.host) != (record.kind, record.host)]
        self.processes.append(record)


def load_state(directory: Path) -> LabState | None:
    """The recorded state, None when there is none; an unreadable file raises LabError."""
    path = directory / STATE_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LabError(f"cannot read the lab state {path}: {exc}") from exc
    try:
        data = json.loads(text)
        if data.get("version") != VERSION:
            raise ValueError(f"unknown version {data.get('version')!r}")
        return LabState.from_dict(data)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LabError(f"the lab state {path} is damaged ({exc}); inspect it and remove what it lists by hand "
                       "(ip netns del …), then delete it") from exc


def save_state(directory: Path, state: LabState | None) -> None:
    """Write the state atomically (None deletes the file)."""
    path = directory / STATE_FILE
    if state is None:
        path.unlink(missing_ok=True)
        return
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(state.to_dict(), indent=2) + "\n")
    os.replace(temporary, path)


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold the lab directory's lock: one up/down/restart at a time per lab."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (directory / LOCK_FILE).open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
