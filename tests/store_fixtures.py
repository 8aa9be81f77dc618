"""Fixtures for the state store tests: the same tests on a SQLite file and on the PostgreSQL server."""

from __future__ import annotations

import os
import secrets
import select
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from orchestrator.store import Store, open_store

POSTGRES_URL = os.environ.get("MICROSEG_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TABLES = ("runs", "point_plans", "checkpoints", "point_results", "audit_events", "point_locks", "point_steps")
_WIPE_ORDER = ("audit_events", "point_steps", "point_results", "checkpoints", "point_plans", "point_locks", "runs")


@dataclass
class Backend:
    """Where a store lives: a URL, and for PostgreSQL the schema of this test module."""

    name: str
    url: str
    schema: str | None = None
    _raw: Engine | None = field(default=None, repr=False)

    def open(self) -> Store:
        return open_store(self.url, schema=self.schema)

    @property
    def raw(self) -> Engine:
        """A plain SQLAlchemy engine on the same tables, to look behind the store's back."""
        if self._raw is None:
            args = {"options": f"-csearch_path={self.schema}"} if self.schema else {}
            self._raw = create_engine(self.url, connect_args=args)
        return self._raw

    def wipe(self) -> None:
        with self.raw.begin() as conn:
            for table in _WIPE_ORDER:
                conn.execute(text(f"DELETE FROM {table}"))

    def dump(self) -> str:
        """Every row of every store table, as text."""
        with self.raw.connect() as conn:
            # tuple(row): every column in full (a Row's own repr shortens long values, which could hide a secret)
            return "\n".join(repr([tuple(row) for row in conn.execute(text(f"SELECT * FROM {table}"))])
                             for table in TABLES)

    def dispose(self) -> None:
        if self._raw is not None:
            self._raw.dispose()


def _postgres_admin() -> Engine:
    engine = create_engine(POSTGRES_URL)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = " ".join(str(exc.orig or exc).split())
    else:
        return engine
    engine.dispose()
    pytest.fail(
        f"PostgreSQL is unreachable at {POSTGRES_URL} ({reason}). "
        "The state store tests need it: start the server or set MICROSEG_TEST_POSTGRES.",
        pytrace=False,
    )


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh, empty schema on the PostgreSQL server, dropped afterwards."""
    admin = _postgres_admin()
    schema = f"mstore_{secrets.token_hex(4)}"
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        yield schema
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()


@contextmanager
def fresh_backend(name: str, directory: Path) -> Iterator[Backend]:
    """An empty store location of the given kind (nothing created yet)."""
    if name == "sqlite":
        backend = Backend("sqlite", f"sqlite:///{directory / 'nested' / 'state.db'}")
        try:
            yield backend
        finally:
            backend.dispose()
        return
    with postgres_schema() as schema:
        backend = Backend("postgresql", POSTGRES_URL, schema)
        try:
            yield backend
        finally:
            backend.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """One store location per test module and backend, migrated once."""
    with fresh_backend(request.param, tmp_path_factory.mktemp("store")) as location:
        location.open().close()
        yield location


@pytest.fixture
def empty_location(backend: Backend, tmp_path: Path) -> Iterator[Backend]:
    """A location of the same backend where no store exists yet."""
    with fresh_backend(backend.name, tmp_path) as location:
        yield location


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    """An open store with empty tables."""
    opened = backend.open()
    try:
        yield opened
    finally:
        opened.close()
        backend.wipe()


_HOLDER = textwrap.dedent(
    """
    import sys
    from orchestrator.store import open_store

    url, schema, point, owner, ttl = sys.argv[1:6]
    store = open_store(url, schema=schema or None)
    with store.point_lock(point, owner=owner, timeout=10, ttl=float(ttl)):
        print("locked", flush=True)
        sys.stdin.readline()
    print("released", flush=True)
    store.close()
    """
)


class LockHolderProcess:
    """A separate Python process that holds a point lock until told to release it (or is killed)."""

    def __init__(self, backend: Backend, point: str, owner: str, ttl: float = 900.0) -> None:
        args = [backend.url, backend.schema or "", point, owner, str(ttl)]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def expect(self, line: str, timeout: float = 20.0) -> None:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        got = self.proc.stdout.readline().strip() if ready else "(nothing)"
        if got != line:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError(f"lock holder process said {got!r}, expected {line!r}; stderr:\n{err}")

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("release\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        self.proc.communicate()


@pytest.fixture
def lock_holder(backend: Backend) -> Iterator[Callable[..., LockHolderProcess]]:
    """Start processes that hold a point lock of the test's store; all are stopped afterwards."""
    started: list[LockHolderProcess] = []

    def start(point: str, owner: str, ttl: float = 900.0) -> LockHolderProcess:
        holder = LockHolderProcess(backend, point, owner, ttl)
        started.append(holder)
        return holder

    yield start
    for holder in started:
        holder.close()
