"""Every API error is a JSON body ``{error, message, diagnostics, change_request}`` with the right 4xx/5xx status."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrator.api.workflow import Conflict, Forbidden, Refused, TicketUnavailable, Unavailable
from orchestrator.model.errors import MicrosegError, PlanError, PolicyError
from orchestrator.store import LockTimeout, StoreError, UnknownChange

log = logging.getLogger(__name__)


class DiagnosticOut(BaseModel):
    """One problem with the input: what, where, and a hint."""

    message: str
    severity: str = "error"
    code: str = "invalid"
    hint: str | None = None
    file: str | None = Field(default=None, description="`add[i]` / `remove[i]` for the request's own rules")
    line: int | None = None
    column: int | None = None


class ErrorBody(BaseModel):
    """What every error response carries."""

    error: str = Field(description="machine-readable code, e.g. `unauthenticated`, `invalid-policy`")
    message: str
    diagnostics: list[DiagnosticOut] = Field(default_factory=list)
    change_request: str | None = Field(default=None, description="the change request recorded, if any")


class ApiError(Exception):
    """An error with its HTTP status."""

    def __init__(self, status: int, error: str, message: str, *, diagnostics: Sequence[Mapping[str, Any]] = (),
                 headers: Mapping[str, str] | None = None, change_request: str | None = None) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message
        self.diagnostics = [dict(d) for d in diagnostics]
        self.headers = dict(headers or {})
        self.change_request = change_request

    def response(self) -> JSONResponse:
        body = ErrorBody(error=self.error, message=self.message,
                         diagnostics=[DiagnosticOut.model_validate(d) for d in self.diagnostics],
                         change_request=self.change_request)
        return JSONResponse(body.model_dump(), status_code=self.status, headers=self.headers)


def from_microseg(exc: MicrosegError) -> ApiError:
    """The HTTP form of a microseg error."""
    diagnostics = [d.to_dict() for d in exc.diagnostics]
    if isinstance(exc, UnknownChange):
        return ApiError(404, "not-found", exc.message)
    if isinstance(exc, Forbidden):
        return ApiError(403, "forbidden", exc.message)
    if isinstance(exc, Conflict):
        return ApiError(409, "conflict", exc.message)
    if isinstance(exc, LockTimeout):
        return ApiError(409, "busy", exc.message, headers={"Retry-After": "30"})
    if isinstance(exc, Refused):
        return ApiError(422, "refused-by-guard", exc.message, change_request=exc.change_id)
    if isinstance(exc, TicketUnavailable):
        return ApiError(503, "ticket-system-unavailable", exc.message, headers={"Retry-After": "60"})
    if isinstance(exc, Unavailable):
        return ApiError(503, "points-unavailable", exc.message, change_request=exc.change_id)
    if isinstance(exc, PolicyError):
        return ApiError(422, "invalid-policy", exc.message, diagnostics=diagnostics)
    if isinstance(exc, PlanError):
        return ApiError(422, "refused", exc.message, diagnostics=diagnostics)
    if isinstance(exc, StoreError):
        return ApiError(503, "store-unavailable", exc.message)
    return ApiError(500, "internal", exc.message, diagnostics=diagnostics)


def _validation(exc: RequestValidationError) -> ApiError:
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return ApiError(400, "malformed-json", "the request body is not valid JSON")
    diagnostics = [{"message": str(e.get("msg", "invalid")), "code": str(e.get("type", "invalid")),
                    "file": ".".join(str(p) for p in e.get("loc", ()))} for e in errors[:50]]
    return ApiError(422, "invalid-request", "the request does not match the schema", diagnostics=diagnostics)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into an ErrorBody."""

    async def api_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return exc.response()

    async def microseg_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, MicrosegError)
        return from_microseg(exc).response()

    async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return _validation(exc).response()

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        codes = {404: "not-found", 405: "method-not-allowed"}
        return ApiError(exc.status_code, codes.get(exc.status_code, "http-error"), str(exc.detail),
                        headers=getattr(exc, "headers", None)).response()

    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error", exc_info=exc)
        return ApiError(500, "internal", f"internal error ({type(exc).__name__}); see the server log").response()

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(Exception, internal_error)
    app.add_exception_handler(MicrosegError, microseg_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed JSON"},
    401: {"model": ErrorBody, "description": "Missing, unknown or revoked bearer token"},
    403: {"model": ErrorBody, "description": "The token's role may not do this (or four eyes: own request)"},
    413: {"model": ErrorBody, "description": "Request body too large"},
    422: {"model": ErrorBody, "description": "Invalid request, invalid policy change, or refused by a guard"},
    429: {"model": ErrorBody, "description": "Too many writes by this identity; see Retry-After"},
}
