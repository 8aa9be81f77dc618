"""Connecting to the state store: URL normalization, engine setup per backend, and migration to head."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
import zlib
from datetime import date, datetime
from enum import Enum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path, PurePath
from typing import Any
from uuid import UUID

from alembic import command
from alembic.config import Config
from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from orchestrator.store.errors import StoreError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 15_000
# One key for "migrating the microseg store", shared by every process on the PostgreSQL server.
MIGRATION_LOCK_KEY = zlib.crc32(b"microseg.store.migrate")

_POSTGRES_SCHEMES = {"postgres": "postgresql+psycopg", "postgresql": "postgresql+psycopg"}
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_STR_LIKE = (IPv4Address, IPv6Address, IPv4Network, IPv6Network, PurePath, UUID)


def normalize_url(raw: str) -> URL:
    """The SQLAlchemy URL for ``raw``: a bare path means SQLite; ``postgres(ql)://`` means psycopg 3."""
    text_url = raw.strip()
    if not text_url:
        raise StoreError("empty state store URL")
    if "://" not in text_url:
        text_url = f"sqlite:///{text_url}"
    scheme, sep, rest = text_url.partition("://")
    text_url = _POSTGRES_SCHEMES.get(scheme, scheme) + sep + rest
    try:
        url = make_url(text_url)
    except ArgumentError as exc:
        raise StoreError(f"invalid state store URL {raw!r}: {exc}") from exc
    backend = url.get_backend_name()
    if backend not in {"sqlite", "postgresql"}:
        raise StoreError(f"unsupported state store {mask(url)}: use sqlite:///path or postgresql://…")
    if backend == "sqlite" and url.database in {None, "", ":memory:"}:
        raise StoreError("an in-memory SQLite store is not shared between connections: give a file path")
    return url


def mask(url: URL) -> str:
    """The URL as text with its password (if any) replaced by ``***``."""
    return url.render_as_string(hide_password=True)


def _json_default(value: object) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, _STR_LIKE):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: object) -> str:
    """JSON text of ``value``; datetimes, enums, addresses, networks, paths, UUIDs and sets are converted."""
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def _private_file(database: str | None) -> None:
    """Create the SQLite file 0600 in a directory created 0700: it holds token digests and every checkpoint."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database).expanduser()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return  # an existing store keeps the mode its owner gave it
    except OSError as exc:
        raise StoreError(f"cannot create the state store {path}: {exc.strerror}") from exc


def create_store_engine(url: URL, *, schema: str | None = None) -> Engine:
    """An engine for ``url``: WAL + busy timeout + foreign keys on SQLite, a search_path on PostgreSQL."""
    if url.get_backend_name() == "sqlite":
        if sqlite3.sqlite_version_info < (3, 35):
            raise StoreError(f"the state store needs SQLite 3.35 or later (this Python has {sqlite3.sqlite_version})")
        if schema is not None:
            raise StoreError("a schema can only be given for a PostgreSQL state store")
        _private_file(url.database)
        engine = create_engine(url, json_serializer=dumps, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    connect_args: dict[str, Any] = {}
    if schema is not None:
        if not _SCHEMA_NAME.fullmatch(schema):
            raise StoreError(f"invalid schema name {schema!r}: use lower-case letters, digits and underscores")
        connect_args["options"] = f"-csearch_path={schema}"
    return create_engine(url, json_serializer=dumps, pool_pre_ping=True, connect_args=connect_args)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy (not the sqlite3 module) decide when transactions begin: see _sqlite_begin.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        _enable_wal(cursor)
    finally:
        cursor.close()


def _enable_wal(cursor: Any) -> None:
    # Switching a new file to WAL needs it to itself, and SQLite answers "database is locked" at
    # once, without its busy handler, while another connection is creating the schema: retry.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _sqlite_begin(connection: Connection) -> None:
    # Take the write lock up front: a deferred transaction that later writes can fail with
    # SQLITE_BUSY at once instead of waiting, and migrations must be serialized between processes.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def migrate(engine: Engine, *, schema: str | None = None) -> None:
    """Bring the schema to head, serialized between processes (advisory lock / SQLite write lock)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                if schema is not None:
                    conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot open the state store {mask(engine.url)}: {describe(exc)}") from exc


def describe(exc: SQLAlchemyError) -> str:
    """The driver's own message of a database error, on one line, without SQLAlchemy's boilerplate."""
    orig = getattr(exc, "orig", None)
    message = str(orig) if orig is not None else str(exc)
    return " ".join(message.split())
