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

import importlib
import os
from typing import TYPE_CHECKING, Any

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
]


def open_store(url: str | None = None, *, schema: str | None = None) -> Store:
    """Open (and migrate to head) the store at ``url``; None means ``$MICROSEG_STORE`` or the default.

    ``url`` is ``sqlite:///path`` (or a bare file path) or ``postgresql://…`` (driven by psycopg 3).
    ``schema`` (PostgreSQL only) keeps the store's tables in that schema, created if missing.
    """
    from orchestrator.store.engine import create_store_engine, migrate, normalize_url  # noqa: PLC0415  (loaded on first use)
    from orchestrator.store.store import Store  # noqa: PLC0415  (loaded on first use)

    raw = url if url is not None else os.environ.get(STORE_URL_ENV) or DEFAULT_STORE_URL
    engine = create_store_engine(normalize_url(raw), schema=schema)
    try:
        migrate(engine, schema=schema)
    except BaseException:
        engine.dispose()
        raise
    return Store(engine)
