"""The API's endpoints: change requests, approval, ticket webhooks, health and metrics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Response
from fastapi.responses import HTMLResponse, JSONResponse

from orchestrator import __version__
from orchestrator.api import metrics
from orchestrator.api.auth import Identity, allowed, service
from orchestrator.api.errors import ERROR_RESPONSES, ApiError, ErrorBody
from orchestrator.api.schemas import (
    ApproveIn,
    ChangeId,
    ChangeRequestIn,
    ChangeRequestList,
    ChangeRequestOut,
    Health,
    Ignored,
    Status,
)
from orchestrator.api.webhooks import JiraEvent, ServiceNowChange, TicketChange, from_jira, from_servicenow
from orchestrator.api.workflow import ChangeService
from orchestrator.engine.auditreport import SCRIPT_HASH
from orchestrator.model.identity import same_identity
from orchestrator.store import ChangeRecord

router = APIRouter()
Service = Annotated[ChangeService, Depends(service)]
Reader = Annotated[Identity, Depends(allowed("read"))]
Requester = Annotated[Identity, Depends(allowed("request"))]
Approver = Annotated[Identity, Depends(allowed("approve"))]
IdPath = Annotated[ChangeId, Path(description="change request id")]
CREATED: dict[int | str, dict[str, Any]] = {201: {"model": ChangeRequestOut, "description": "Planned (see Location)"},
           200: {"model": ChangeRequestOut, "description": "The same change for this ticket exists already"},
           422: {"model": ErrorBody, "description": "Invalid request or policy change, or refused by a guard"},
           503: {"model": ErrorBody, "description": "Enforcement points could not be planned"}}


def _out(svc: ChangeService, record: ChangeRecord, status: int) -> JSONResponse:
    body = ChangeRequestOut.of(record, svc.ctx.public_url)
    return JSONResponse(body.model_dump(), status_code=status, headers={"Location": body.links.self})


def _created(svc: ChangeService, record: ChangeRecord, new: bool) -> JSONResponse:
    return _out(svc, record, 201 if new else 200)


@router.get("/healthz", response_model=Health, tags=["service"])
def healthz() -> Health:
    """Liveness; the only endpoint without authentication."""
    return Health(status="ok", version=__version__)


METRICS: dict[int | str, dict[str, Any]] = {**ERROR_RESPONSES, 200: {
    "content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format"}}


@router.get("/metrics", tags=["service"], responses=METRICS)
def get_metrics(svc: Service, _who: Reader) -> Response:
    """Points in sync / drifted / failed, last run time and duration per kind, changes applied, rollbacks."""
    return Response(metrics.render(svc.store), media_type="text/plain; version=0.0.4; charset=utf-8")


@router.post("/v1/change-requests", status_code=201, tags=["change requests"],
             responses={**ERROR_RESPONSES, **CREATED})
def create_change_request(svc: Service, who: Requester, body: ChangeRequestIn) -> JSONResponse:
    """Validate, compile and plan a policy change; the response holds the plan summary and a link.

    The requester is the authenticated caller: ``requester``, if given, must name the caller."""
    if body.requester is not None and not same_identity(body.requester, who.name):
        raise ApiError(403, "forbidden", f"{who.name} cannot request a change as {body.requester!r}: the requester "
                       "of a change request is the caller (leave out requester)")
    record, new = svc.submit(ticket=body.ticket, requester=who.name, submitted_by=who.name,
                             source="api", spec=body.change)
    return _created(svc, record, new)


@router.get("/v1/change-requests", response_model=ChangeRequestList, tags=["change requests"],
            responses=ERROR_RESPONSES)
def list_change_requests(svc: Service, _who: Reader, status: Annotated[Status | None, Query()] = None,
                         ticket: Annotated[str | None, Query(max_length=128)] = None) -> ChangeRequestList:
    """Change requests, oldest first (of one status, of one ticket)."""
    records = svc.store.changes([status] if status else None, ticket=ticket)
    return ChangeRequestList(items=[ChangeRequestOut.of(r, svc.ctx.public_url) for r in records])


@router.get("/v1/change-requests/{change_id}", response_model=ChangeRequestOut, tags=["change requests"],
            responses={**ERROR_RESPONSES, 404: {"model": ErrorBody, "description": "No such change request"}})
def get_change_request(svc: Service, _who: Reader, change_id: IdPath) -> ChangeRequestOut:
    """Status, plan summary, approval, runs, per-point result, verification."""
    return ChangeRequestOut.of(svc.store.change(change_id), svc.ctx.public_url)


# The report is inert outside its own page: its inline style and its one script (by hash), nothing fetched,
# framed or submitted.
REPORT_POLICY = (f"default-src 'none'; style-src 'unsafe-inline'; script-src '{SCRIPT_HASH}'; base-uri 'none'; "
                 "form-action 'none'; frame-ancestors 'none'")


def _json_errors(responses: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """Error responses documented as JSON on a route whose own media type is another (FastAPI would otherwise
    document a ``model`` in the route's media type): the same ErrorBody, by reference."""
    body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    return {code: {"description": r["description"], "content": body} for code, r in responses.items()}


@router.get("/v1/change-requests/{change_id}/report", tags=["change requests"], response_class=HTMLResponse,
            responses={**_json_errors({**ERROR_RESPONSES, 404: {"description": "No such change request"}}),
                       200: {"content": {"text/html": {"schema": {"type": "string"}}},
                             "description": "The audit report, one self-contained HTML page"}})
def get_change_request_report(svc: Service, who: Reader, change_id: IdPath) -> HTMLResponse:
    """The audit report of a change request (what ticket notes link to): ticket, requester, approver, the
    request's latest run point by point — native change, guards, end state, audit trail — and the segmentation
    matrix of the policy with the request's rules (pending) or in force (applied, failed, expired)."""
    page = svc.report(change_id, who.name)
    return HTMLResponse(page, headers={"Content-Security-Policy": REPORT_POLICY, "X-Content-Type-Options": "nosniff",
                                       "Content-Disposition": f'inline; filename="change-{change_id}-report.html"'})


@router.post("/v1/change-requests/{change_id}/approve", tags=["change requests"], responses={
    **ERROR_RESPONSES, 200: {"model": ChangeRequestOut, "description": "Approved and applied (or failed)"},
    202: {"model": ChangeRequestOut, "description": "Approved; applied when the change window opens"},
    404: {"model": ErrorBody, "description": "No such change request"},
    409: {"model": ErrorBody, "description": "Not in status planned"}})
def approve_change_request(svc: Service, who: Approver, change_id: IdPath,
                           body: Annotated[ApproveIn | None, Body()] = None) -> JSONResponse:
    """Approve (four eyes: not the requester); applies now when every point's change window is open."""
    record = svc.approve(change_id, who.name)
    if body is not None and body.comment:
        svc.store.audit("change.comment", actor=who.name, detail={"change_request": change_id,
                                                                 "comment": body.comment})
    return _out(svc, record, 202 if record.status == "approved" else 200)


def _from_ticket(svc: Service, who: Identity, found: TicketChange | str, source: str) -> JSONResponse:
    if isinstance(found, str):
        return JSONResponse(Ignored(ignored=found).model_dump(), status_code=202)
    record, new = svc.submit(ticket=found.ticket, requester=found.requester, submitted_by=who.name,
                             source=source, spec=found.spec, origin=found.origin, ticket_user=found.ticket_user)
    return _created(svc, record, new)


WEBHOOK: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES, **CREATED, 202: {"model": Ignored, "description": "Nothing asked of microseg"}}


@router.post("/v1/webhooks/servicenow", status_code=201, tags=["webhooks"], responses=WEBHOOK)
def servicenow_webhook(svc: Service, who: Requester, record: ServiceNowChange) -> JSONResponse:
    """A ServiceNow change_request record; the policy change is in `u_microseg_change` (configurable)."""
    serve = svc.ctx.config.serve
    return _from_ticket(svc, who, from_servicenow(record, serve.servicenow_change_field, serve.ticket_users),
                        "servicenow")


@router.post("/v1/webhooks/jira", status_code=201, tags=["webhooks"], responses=WEBHOOK)
def jira_webhook(svc: Service, who: Requester, event: JiraEvent) -> JSONResponse:
    """A Jira issue event; the policy change is in `issue.fields.customfield_10100` (configurable)."""
    serve = svc.ctx.config.serve
    return _from_ticket(svc, who, from_jira(event, serve.jira_change_field, serve.ticket_users), "jira")
