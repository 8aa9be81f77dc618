"""The FastAPI application of ``microseg serve``: routes, error handlers, limits, and the scheduler's lifetime."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from orchestrator import __version__
from orchestrator.api import errors
from orchestrator.api.auth import Identity, RateLimiter, allowed
from orchestrator.api.limits import BodyLimit
from orchestrator.api.notify import Notifier, NullNotifier, WebhookNotifier
from orchestrator.api.routes import router
from orchestrator.api.scheduler import Scheduler
from orchestrator.api.workflow import ChangeService, ServiceContext
from orchestrator.config import Config
from orchestrator.engine.engine import PointExecutor
from orchestrator.engine.reporting import Reporter, SilentReporter
from orchestrator.engine.retry import RetryPolicy
from orchestrator.store import ServiceStore

DESCRIPTION = """Ticket-triggered microsegmentation changes.

A change request (a ticket, a requester, rules to add and remove) is validated and planned against the
enforcement points; another identity approves it (four eyes); it is applied in the points' change window
through the same plan → checkpoint → apply → verify → rollback path as the CLI, and the evidence is posted
back to the ticket. Every endpoint but `/healthz` needs `Authorization: Bearer <token>` (this document and
`/docs`, `/redoc` too, unless `serve.public_docs` is true)."""


Reader = Annotated[Identity, Depends(allowed("read"))]


def notifier_for(config: Config) -> Notifier:
    """The webhook notifier when a URL is configured, else one that posts nothing."""
    cfg = config.serve.notifier
    return WebhookNotifier(cfg) if cfg.url or cfg.servicenow_url or cfg.jira_url else NullNotifier()


def build_service(policy: Path, inventory: Path, store: ServiceStore, config: Config, *,
                  notifier: Notifier | None = None, clock: Callable[[], datetime] | None = None,
                  retry: RetryPolicy | None = None, reporter: Reporter | None = None,
                  instance: str | None = None, executor: PointExecutor | None = None) -> ChangeService:
    """The change service over a policy, an inventory and a store (``None`` options take the defaults)."""
    ctx = ServiceContext(policy, inventory, store, config, notifier or notifier_for(config),
                         public_url=config.serve.public_url or "", reporter=reporter or SilentReporter(),
                         executor=executor)
    if clock is not None:
        ctx.clock = clock
    if retry is not None:
        ctx.retry = retry
    if instance is not None:
        ctx.instance = instance
    return ChangeService(ctx)


def _authenticated_docs(app: FastAPI) -> None:
    """``/openapi.json``, ``/docs`` and ``/redoc`` for callers with a token (any role: they only read)."""
    @app.get("/openapi.json", include_in_schema=False)
    def openapi(_who: Reader) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    def docs(_who: Reader) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="microseg API")

    @app.get("/redoc", include_in_schema=False)
    def redoc(_who: Reader) -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title="microseg API")


def create_app(svc: ChangeService, *, scheduler: Scheduler | None = None,
               limiter_clock: Callable[[], float] = time.monotonic) -> FastAPI:
    """The ASGI application; the scheduler (if any) runs while the application does."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if scheduler is not None:
            scheduler.start()
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.stop()

    serve = svc.ctx.config.serve
    public = serve.public_docs
    app = FastAPI(title="microseg", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url="/docs" if public else None, redoc_url="/redoc" if public else None,
                  openapi_url="/openapi.json" if public else None)
    if not serve.public_docs:
        _authenticated_docs(app)
    app.state.service = svc
    app.state.limiter = RateLimiter(serve.rate_limit.writes, serve.rate_limit.per_seconds, limiter_clock)
    app.state.auth_failures = RateLimiter(serve.auth_failures.attempts, serve.auth_failures.per_seconds,
                                          limiter_clock)
    app.state.started = datetime.now(UTC)
    errors.install(app)
    app.include_router(router)
    app.add_middleware(BodyLimit, max_bytes=serve.max_body_bytes)
    return app
