"""Tables of the state store (SQLAlchemy 2 typed declarative); migrations/ creates them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, ForeignKey, Index, Integer, MetaData, String, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from orchestrator.store.names import CHANGE_REQUESTS_TABLE

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite stores it as naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the state store only accepts timezone-aware timestamps")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


ID = BigInteger().with_variant(Integer(), "sqlite")  # SQLite only auto-increments INTEGER PRIMARY KEY


class Base(DeclarativeBase):
    """Declarative base with a naming convention, so constraint names match the migrations."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class RunRow(Base):
    """One run: plan, apply, reconcile, rollback … started by an actor, maybe for a ticket."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(255))
    ticket: Mapped[str | None] = mapped_column(String(255))
    origin_host: Mapped[str] = mapped_column(String(255))
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PlanRow(Base):
    """The serialized change plan of one enforcement point in one run (written once)."""

    __tablename__ = "point_plans"
    __table_args__ = (Index("ix_point_plans_point", "point", "recorded_at"),)  # a point's plans by time

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    point: Mapped[str] = mapped_column(String(255), primary_key=True)
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CheckpointRow(Base):
    """The restorable copy of one enforcement point taken before a run changed it (written once)."""

    __tablename__ = "checkpoints"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    point: Mapped[str] = mapped_column(String(255), primary_key=True)
    checkpoint: Mapped[dict[str, Any]] = mapped_column(JSON)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ResultRow(Base):
    """The latest state of one enforcement point in one run."""

    __tablename__ = "point_results"
    __table_args__ = (Index("ix_point_results_point", "point", "updated_at"),)  # a point's history

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    point: Mapped[str] = mapped_column(String(255), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditRow(Base):
    """One audit event, optionally tied to a run and an enforcement point."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    event: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(255))
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"), index=True)
    point: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)


class LockRow(Base):
    """A held enforcement-point lock: one row per point, leased until ``expires_at``."""

    __tablename__ = "point_locks"

    point: Mapped[str] = mapped_column(String(255), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255))
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class StepRow(Base):
    """One per-point step of a run executed by a worker (``--executor celery``): who claimed it, its lease, and
    its answer once done — so a redelivered message finds the step taken and never runs it twice."""

    __tablename__ = "point_steps"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    point: Mapped[str] = mapped_column(String(255), primary_key=True)
    step: Mapped[str] = mapped_column(String(16), primary_key=True)
    worker: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))  # running, done, abandoned
    answer: Mapped[dict[str, Any]] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ChangeRequestRow(Base):
    """A ticket's change request: the policy change, its plan summary, who asked and approved, and its runs."""

    __tablename__ = CHANGE_REQUESTS_TABLE

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    ticket: Mapped[str] = mapped_column(String(255), index=True)
    requester: Mapped[str] = mapped_column(String(255))
    submitted_by: Mapped[str] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    change: Mapped[dict[str, Any]] = mapped_column(JSON)
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    origin: Mapped[dict[str, Any]] = mapped_column(JSON)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    run_ids: Mapped[list[str]] = mapped_column(JSON)
    approver: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class TokenRow(Base):
    """An API bearer token: only a salted SHA-256 digest of its secret is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), index=True)
    role: Mapped[str] = mapped_column(String(16))
    salt: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class JobSlotRow(Base):
    """One scheduled job run: the instance that inserted (job, slot) first is the one that runs it."""

    __tablename__ = "job_slots"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    instance: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
