"""The state store: where runs, plans, checkpoints, results, the audit trail and point locks are kept.
Uses only ``orchestrator.model``; the engine records each run through it.

SQLite (a file, the default) or PostgreSQL, behind one synchronous, thread-safe API::

    store = open_store()                      # $MICROSEG_STORE or sqlite:///.microseg/state.db
    run_id = store.create_run("apply", actor="alice", ticket="CHG-1", origin_host="jump1", options={})
    with store.point_lock("sw1", owner=run_id):
        store.record_checkpoint(run_id, "sw1", checkpoint)
        ...
    store.finish_run(run_id, "succeeded", {"changed": 1})

Opening a store migrates it to the latest schema.  Every document written passes through
:func:`redact`, so secrets never reach the database.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.store.names import CHANGE_REQUESTS_TABLE

if TYPE_CHECKING:
    from orchestrator.model.redaction import REDACTED, redact
    from orchestrator.store.changes import (
        ChangeRecord,
        ServiceStore,
        SlotRecord,
        TokenRecord,
        UnknownChange,
        has_applied_changes,
        open_service_store,
    )
    from orchestrator.store.errors import LockTimeout, StoreError
    from orchestrator.store.records import RESULT_STATES, AuditEvent, PointResult, RunRecord, RunSummary
    from orchestrator.store.store import Store

DEFAULT_STORE_URL = "sqlite:///.microseg/state.db"
STORE_URL_ENV = "MICROSEG_STORE"

# The database layer (SQLAlchemy, Alembic) takes ~0.4 s to import: the names below load on first use, so that
# commands that never open a store (validate, compile) start fast.
_LAZY = {
    "REDACTED": "orchestrator.model.redaction", "redact": "orchestrator.model.redaction",
    **dict.fromkeys(("ChangeRecord", "ServiceStore", "SlotRecord", "TokenRecord", "UnknownChange",
                     "has_applied_changes", "open_service_store"), "orchestrator.store.changes"),
    "LockTimeout": "orchestrator.store.errors", "StoreError": "orchestrator.store.errors",
    **dict.fromkeys(("RESULT_STATES", "AuditEvent", "PointResult", "RunRecord", "RunSummary"),
                    "orchestrator.store.records"),
    "Store": "orchestrator.store.store",
}


def sqlite_without_applied_changes(url: str) -> bool:
    """Whether ``url`` is an SQLite store that certainly holds no applied change request (no file, no table, or
    none applied), read with the standard library — without loading SQLAlchemy (~0.7 s).  False when unsure
    (PostgreSQL, an unreadable file): the caller then asks the store itself."""
    url = url.strip()
    for prefix in ("sqlite:///", ""):
        if not url.startswith(prefix) or "://" in url[len(prefix):]:
            continue
        path = url[len(prefix):].split("?", 1)[0]
        if not path or path == ":memory:":
            return False
        file = Path(path).expanduser()
        if not file.exists():
            return True
        try:
            with contextlib.closing(sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)) as conn:
                if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                    (CHANGE_REQUESTS_TABLE,)).fetchone():
                    return True
                query = f"SELECT COUNT(*) FROM {CHANGE_REQUESTS_TABLE} WHERE status = 'applied'"
                return int(conn.execute(query).fetchone()[0]) == 0
        except sqlite3.Error:
            return False
    return False


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_STORE_URL",
    "REDACTED",
    "RESULT_STATES",
    "STORE_URL_ENV",
    "AuditEvent",
    "ChangeRecord",
    "LockTimeout",
    "PointResult",
    "RunRecord",
    "RunSummary",
    "ServiceStore",
    "SlotRecord",
    "Store",
    "StoreError",
    "TokenRecord",
    "UnknownChange",
    "has_applied_changes",
    "open_service_store",
    "open_store",
    "redact",
    "resolve_store_url",
    "stored_url",
]


def resolve_store_url(url: str | None) -> str:
    """The store URL a command means: ``url``, else ``$MICROSEG_STORE``, else the default SQLite file."""
    return url if url is not None else os.environ.get(STORE_URL_ENV) or DEFAULT_STORE_URL


def stored_url(url: str | None) -> str | None:
    """The resolved store URL when there is a store to read — a database server, or a SQLite file that exists —
    else None: for readers that must not create one (``open_store`` would)."""
    resolved = resolve_store_url(url).strip()
    if "://" in resolved and not resolved.startswith("sqlite:///"):
        return resolved
    return resolved if Path(resolved.removeprefix("sqlite:///")).exists() else None


def open_store(url: str | None = None, *, schema: str | None = None) -> Store:
    """Open (and migrate to head) the store at ``url``; None means ``$MICROSEG_STORE`` or the default.

    ``url`` is ``sqlite:///path`` (or a bare file path) or ``postgresql://…`` (driven by psycopg 3).
    ``schema`` (PostgreSQL only) keeps the store's tables in that schema, created if missing.
    """
    from orchestrator.store.engine import create_store_engine, migrate, normalize_url  # noqa: PLC0415  (loaded on first use)
    from orchestrator.store.store import Store  # noqa: PLC0415  (loaded on first use)

    engine = create_store_engine(normalize_url(resolve_store_url(url)), schema=schema)
    try:
        migrate(engine, schema=schema)
    except BaseException:
        engine.dispose()
        raise
    return Store(engine)
