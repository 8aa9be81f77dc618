"""What ``microseg serve`` keeps beside the runs: change requests, hashed API tokens and scheduler job slots."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, inspect, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from orchestrator.model.identity import identity_problem
from orchestrator.store.engine import create_store_engine, describe, migrate, normalize_url
from orchestrator.store.errors import StoreError
from orchestrator.store.models import ChangeRequestRow, JobSlotRow, ResultRow, RunRow, TokenRow
from orchestrator.store.records import iso
from orchestrator.store.store import Store, document

TOKEN_PREFIX = "mst"
CHANGE_FIELDS = frozenset({"status", "plan", "detail", "run_ids", "approver", "approved_at", "applied_at"})


class UnknownChange(StoreError):
    """No change request with that id."""


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    """A change request as stored."""

    id: str
    ticket: str
    requester: str
    submitted_by: str
    source: str
    status: str
    change: dict[str, Any]
    plan: dict[str, Any]
    origin: dict[str, Any]
    detail: dict[str, Any]
    run_ids: tuple[str, ...]
    approver: str | None
    created_at: datetime
    updated_at: datetime
    approved_at: datetime | None
    applied_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "ticket": self.ticket, "requester": self.requester, "submitted_by": self.submitted_by,
            "source": self.source, "status": self.status, "change": self.change, "plan": self.plan,
            "detail": self.detail, "run_ids": list(self.run_ids), "approver": self.approver,
            "created_at": iso(self.created_at), "updated_at": iso(self.updated_at),
            "approved_at": iso(self.approved_at), "applied_at": iso(self.applied_at),
        }


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """An API token without its secret: id, identity, role, and when it was made or revoked."""

    id: str
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "role": self.role, "created_at": iso(self.created_at),
                "revoked_at": iso(self.revoked_at)}


@dataclass(frozen=True, slots=True)
class SlotRecord:
    """One claimed run of a scheduled job."""

    job: str
    slot: datetime
    instance: str
    status: str
    detail: dict[str, Any]
    claimed_at: datetime
    finished_at: datetime | None


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()


def _change(row: ChangeRequestRow) -> ChangeRecord:
    return ChangeRecord(row.id, row.ticket, row.requester, row.submitted_by, row.source, row.status, row.change,
                        row.plan, row.origin, row.detail, tuple(row.run_ids), row.approver, row.created_at,
                        row.updated_at, row.approved_at, row.applied_at)


class ServiceStore(Store):
    """The state store with the tables of the API service."""

    def __enter__(self) -> ServiceStore:
        return self

    # -- change requests --------------------------------------------------------------------------

    def create_change(self, *, ticket: str, requester: str, submitted_by: str, source: str, status: str,
                      change: dict[str, Any], plan: dict[str, Any], origin: dict[str, Any],
                      detail: dict[str, Any], run_ids: Iterable[str] = ()) -> ChangeRecord:
        """Record a new change request; it gets a fresh id."""
        now = datetime.now(UTC)
        row = ChangeRequestRow(
            id=f"cr-{now:%Y%m%d%H%M%S}-{secrets.token_hex(4)}", ticket=ticket, requester=requester,
            submitted_by=submitted_by, source=source, status=status, change=document(change, "a change"),
            plan=document(plan, "a plan summary"), origin=document(origin, "a ticket origin"),
            detail=document(detail, "a change request detail"), run_ids=list(run_ids), approver=None,
            created_at=now, updated_at=now, approved_at=None, applied_at=None)
        with self._session(f"record change request for {ticket}") as session:
            session.add(row)
        return _change(row)

    def change(self, change_id: str) -> ChangeRecord:
        """One change request by id."""
        with self._session(f"read change request {change_id}") as session:
            row = session.get(ChangeRequestRow, change_id)
            if row is None:
                raise UnknownChange(f"no change request {change_id!r}")
            return _change(row)

    def changes(self, statuses: Collection[str] | None = None, *, ticket: str | None = None,
                limit: int = 500) -> list[ChangeRecord]:
        """Change requests (of these statuses, of this ticket), oldest first: the order they apply in."""
        query = select(ChangeRequestRow).order_by(ChangeRequestRow.created_at, ChangeRequestRow.id).limit(limit)
        if statuses is not None:
            query = query.where(ChangeRequestRow.status.in_(list(statuses)))
        if ticket is not None:
            query = query.where(ChangeRequestRow.ticket == ticket)
        with self._session("list change requests") as session:
            return [_change(row) for row in session.scalars(query)]

    def update_change(self, change_id: str, *, expect: Collection[str] | None = None,
                      **values: Any) -> ChangeRecord | None:
        """Set fields of a change request, only when its status is in ``expect`` (None when it is not)."""
        unknown = set(values) - CHANGE_FIELDS
        if unknown:
            raise StoreError(f"change request fields cannot be set: {', '.join(sorted(unknown))}")
        with self._session(f"update change request {change_id}") as session:
            row = session.get(ChangeRequestRow, change_id, with_for_update=True)
            if row is None:
                raise UnknownChange(f"no change request {change_id!r}")
            if expect is not None and row.status not in expect:
                return None
            for name, value in values.items():
                if name in ("plan", "detail"):
                    setattr(row, name, document(value, f"the {name} of change request {change_id}"))
                else:
                    setattr(row, name, list(value) if name == "run_ids" else value)
            row.updated_at = datetime.now(UTC)
            return _change(row)

    # -- API tokens -------------------------------------------------------------------------------

    def add_token(self, name: str, role: str) -> tuple[TokenRecord, str]:
        """A new token for identity ``name``: its record and the token text (shown once, never stored).

        ``name`` must be a canonical identity (:mod:`orchestrator.model.identity`): a second spelling of
        someone (``Alice``, ``alice ``) could otherwise approve that person's own change.
        """
        problem = identity_problem(name)
        if problem is not None:
            raise StoreError(f"token name {name!r} is not a valid identity: {problem}")
        token_id, secret, salt = secrets.token_hex(6), secrets.token_urlsafe(32), secrets.token_hex(16)
        row = TokenRow(id=token_id, name=name, role=role, salt=salt, digest=_digest(salt, secret),
                       created_at=datetime.now(UTC), revoked_at=None)
        with self._session(f"add a token for {name}") as session:
            session.add(row)
        return TokenRecord(token_id, name, role, row.created_at, None), f"{TOKEN_PREFIX}_{token_id}_{secret}"

    def verify_token(self, text: str) -> TokenRecord | None:
        """The live token ``text`` is, or None (unknown, revoked, malformed or a wrong secret)."""
        prefix, _, rest = text.partition("_")
        token_id, _, secret = rest.partition("_")
        if prefix != TOKEN_PREFIX or not token_id or not secret or len(token_id) > 32:
            return None
        with self._session("check a token") as session:
            row = session.get(TokenRow, token_id)
            if row is None or row.revoked_at is not None:
                return None
            if not hmac.compare_digest(row.digest, _digest(row.salt, secret)):
                return None
            return TokenRecord(row.id, row.name, row.role, row.created_at, row.revoked_at)

    def tokens(self) -> list[TokenRecord]:
        """Every token, oldest first (secrets are not kept, so none are shown)."""
        with self._session("list tokens") as session:
            rows = session.scalars(select(TokenRow).order_by(TokenRow.created_at, TokenRow.id))
            return [TokenRecord(r.id, r.name, r.role, r.created_at, r.revoked_at) for r in rows]

    def revoke_token(self, id_or_name: str) -> int:
        """Revoke the token with this id, or every token of this identity; how many were revoked."""
        with self._session(f"revoke {id_or_name}") as session:
            query = select(TokenRow).where((TokenRow.id == id_or_name) | (TokenRow.name == id_or_name),
                                           TokenRow.revoked_at.is_(None))
            rows = list(session.scalars(query))
            for row in rows:
                row.revoked_at = datetime.now(UTC)
            return len(rows)

    # -- scheduler job slots ----------------------------------------------------------------------

    def claim_slot(self, job: str, slot: datetime, instance: str) -> bool:
        """Insert (job, slot); True only for the one caller whose insert won (the unique key decides)."""
        row = JobSlotRow(job=job, slot=slot, instance=instance, status="running", detail={},
                         claimed_at=datetime.now(UTC), finished_at=None)
        try:
            with self._sessions.begin() as session:
                session.add(row)
        except IntegrityError:
            return False
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot claim {job} at {slot} in {self.url_display}: {describe(exc)}") from exc
        return True

    def finish_slot(self, job: str, slot: datetime, status: str, detail: dict[str, Any]) -> None:
        """Record how a claimed job run ended."""
        with self._session(f"finish {job} at {slot}") as session:
            row = session.get(JobSlotRow, (job, slot))
            if row is None:
                raise StoreError(f"no claimed slot {job} at {slot}")
            row.status, row.detail, row.finished_at = status, document(detail, "a job result"), datetime.now(UTC)

    def slots(self, job: str | None = None) -> list[SlotRecord]:
        """Claimed job runs, oldest first."""
        query = select(JobSlotRow).order_by(JobSlotRow.slot, JobSlotRow.job)
        if job is not None:
            query = query.where(JobSlotRow.job == job)
        with self._session("list job slots") as session:
            return [SlotRecord(r.job, r.slot, r.instance, r.status, r.detail, r.claimed_at, r.finished_at)
                    for r in session.scalars(query)]

    # -- figures for /metrics ---------------------------------------------------------------------

    def result_totals(self) -> dict[tuple[str, str], int]:
        """How many point results each (run kind, state) has, over every run."""
        query = (select(RunRow.kind, ResultRow.state, func.count())
                 .join(ResultRow, ResultRow.run_id == RunRow.id).group_by(RunRow.kind, ResultRow.state))
        with self._session("count point results") as session:
            return {(kind, state): int(n) for kind, state, n in session.execute(query)}

    def change_counts(self) -> dict[str, int]:
        """How many change requests are in each status."""
        query = select(ChangeRequestRow.status, func.count()).group_by(ChangeRequestRow.status)
        with self._session("count change requests") as session:
            return {status: int(n) for status, n in session.execute(query)}


def open_service_store(url: str, *, schema: str | None = None) -> ServiceStore:
    """Open (and migrate to head) the store at ``url`` with the service's tables."""
    engine = create_store_engine(normalize_url(url), schema=schema)
    try:
        migrate(engine, schema=schema)
    except BaseException:
        engine.dispose()
        raise
    return ServiceStore(engine)


def has_applied_changes(url: str, *, schema: str | None = None) -> bool:
    """Whether the store at ``url`` holds applied change requests — cheap: no migration, no file created."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").expanduser().exists():
        return False
    engine = create_store_engine(parsed, schema=schema)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table(ChangeRequestRow.__tablename__):
                return False
            query = select(func.count()).select_from(ChangeRequestRow).where(ChangeRequestRow.status == "applied")
            return bool(conn.execute(query).scalar_one())
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read change requests from {parsed.render_as_string(hide_password=True)}: "
                         f"{describe(exc)}") from exc
    finally:
        engine.dispose()
