"""The timed microseg job of ``benchmarks/aerleon.py``, in a module of its own so that the run imports only what
``microseg compile`` and ``plan --native`` would (not the harness, the estate generator or the checkers)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

TODAY = date(2026, 1, 1)


def render_microseg(policy: str, inventory: str, out: str) -> None:
    """The timed microseg job: load and compile as ``microseg compile`` does, then render every point natively
    for a device without owned ACLs/table (as ``compile --native`` does), and write the texts."""
    from orchestrator.engine.runtime import batch_gc

    batch_gc()  # as the CLI's main does before every one-shot command
    from orchestrator.engine.native import fresh_change
    from orchestrator.engine.project import load_project

    project = load_project(Path(policy), Path(inventory), today=TODAY)
    for name, compiled in project.compile().points.items():
        change = fresh_change(project, compiled)
        assert change is not None, f"{name}: its driver cannot render offline"
        Path(out, f"{name}.txt").write_text(change.text() + "\n")
