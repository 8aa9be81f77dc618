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

import os

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
from orchestrator.store.engine import create_store_engine, migrate, normalize_url
from orchestrator.store.errors import LockTimeout, StoreError
from orchestrator.store.records import RESULT_STATES, AuditEvent, PointResult, RunRecord, RunSummary
from orchestrator.store.store import Store

DEFAULT_STORE_URL = "sqlite:///.microseg/state.db"
STORE_URL_ENV = "MICROSEG_STORE"

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
    raw = url if url is not None else os.environ.get(STORE_URL_ENV) or DEFAULT_STORE_URL
    engine = create_store_engine(normalize_url(raw), schema=schema)
    try:
        migrate(engine, schema=schema)
    except BaseException:
        engine.dispose()
        raise
    return Store(engine)
