"""Request and response bodies of the API (they make its OpenAPI document)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from orchestrator.engine.changes import ChangeSpec
from orchestrator.store import ChangeRecord

Ticket = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:#/-]*$")]
Person = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$")]
ChangeId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
Status = Literal["planned", "approved", "applied", "failed", "refused", "expired"]


class ChangeRequestIn(BaseModel):
    """A change request: the ticket it belongs to, who asks, and the policy change."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "ticket": "CHG0031337",
        "change": {"add": [{"name": "chg0031337-dev-api", "from": "web-dev", "to": "app-prod",
                            "services": ["shop-api"], "action": "allow", "priority": 50,
                            "expires": "2026-12-31"}], "remove": []}}]})

    ticket: Ticket
    requester: Person | None = Field(default=None, description="who asks: always the caller; if given, it must "
                                     "name the caller (a request on someone else's behalf is refused)")
    change: ChangeSpec


class ApproveIn(BaseModel):
    """An approval, with an optional comment for the audit trail."""

    model_config = ConfigDict(extra="forbid")

    comment: Annotated[str, StringConstraints(max_length=2000)] | None = None


class Links(BaseModel):
    """Where the request is, and where to approve it."""

    self: str
    approve: str
    report: str  # the audit report (HTML)


class ChangeRequestOut(BaseModel):
    """A change request: its status, plan summary, approval, runs and evidence."""

    id: str
    ticket: str
    requester: str
    submitted_by: str
    source: str
    status: Status
    change: dict[str, Any]
    plan: dict[str, Any] = Field(description="per point: rule diff, flows newly allowed/denied, native change size")
    approver: str | None
    run_ids: list[str]
    created_at: str | None
    updated_at: str | None
    approved_at: str | None
    applied_at: str | None
    scheduled_for: str | None = None
    expired_rules: list[str] = Field(default_factory=list)
    result: dict[str, Any] | None = None
    verification: dict[str, Any] | None = None
    message: str | None = None
    links: Links

    @classmethod
    def of(cls, record: ChangeRecord, base: str = "") -> ChangeRequestOut:
        """The API form of a stored change request; links start at ``base``."""
        data = record.to_dict()
        detail = data.pop("detail")
        link = f"{base.rstrip('/')}/v1/change-requests/{record.id}"
        return cls.model_validate({**data, "scheduled_for": detail.get("scheduled_for"),
                                   "expired_rules": detail.get("expired_rules", []), "result": detail.get("result"),
                                   "verification": detail.get("verification"), "message": detail.get("message"),
                                   "links": {"self": link, "approve": f"{link}/approve",
                                             "report": f"{link}/report"}})


class ChangeRequestList(BaseModel):
    """Change requests, oldest first."""

    items: list[ChangeRequestOut]


class Ignored(BaseModel):
    """A webhook that asks microseg for nothing (another event, or no policy change in it)."""

    ignored: str


class Health(BaseModel):
    """The service is up."""

    status: Literal["ok"]
    version: str
