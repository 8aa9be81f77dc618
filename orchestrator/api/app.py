"""The FastAPI application of ``microseg serve``: routes, error handlers, limits, and the scheduler's lifetime."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from fastapi import FastAPI

from orchestrator import __version__
from orchestrator.api import errors
from orchestrator.api.auth import RateLimiter
from orchestrator.api.limits import BodyLimit
from orchestrator.api.notify import Notifier, NullNotifier, WebhookNotifier
from orchestrator.api.routes import router
from orchestrator.api.scheduler import Scheduler
from orchestrator.api.workflow import ChangeService, ServiceContext
from orchestrator.config import Config
from orchestrator.engine.reporting import Reporter, SilentReporter
from orchestrator.engine.retry import RetryPolicy
from orchestrator.store import ServiceStore

DESCRIPTION = """Ticket-triggered microsegmentation changes.

A change request (a ticket, a requester, rules to add and remove) is validated and planned against the
enforcement points; another identity approves it (four eyes); it is applied in the points' change window
through the same plan → checkpoint → apply → verify → rollback path as the CLI, and the evidence is posted
back to the ticket. Every endpoint but `/healthz` needs `Authorization: Bearer <token>`."""


def notifier_for(config: Config) -> Notifier:
    """The webhook notifier when a URL is configured, else one that posts nothing."""
    cfg = config.serve.notifier
    return WebhookNotifier(cfg) if cfg.url or cfg.servicenow_url or cfg.jira_url else NullNotifier()


def build_service(policy: Path, inventory: Path, store: ServiceStore, config: Config, *,
                  notifier: Notifier | None = None, clock: Callable[[], datetime] | None = None,
                  retry: RetryPolicy | None = None, reporter: Reporter | None = None,
                  instance: str | None = None) -> ChangeService:
    """The change service over a policy, an inventory and a store (``None`` options take the defaults)."""
    ctx = ServiceContext(policy, inventory, store, config, notifier or notifier_for(config),
                         public_url=config.serve.public_url or "", reporter=reporter or SilentReporter())
    if clock is not None:
        ctx.clock = clock
    if retry is not None:
        ctx.retry = retry
    if instance is not None:
        ctx.instance = instance
    return ChangeService(ctx)


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

    app = FastAPI(title="microseg", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    serve = svc.ctx.config.serve
    app.state.service = svc
    app.state.limiter = RateLimiter(serve.rate_limit.writes, serve.rate_limit.per_seconds, limiter_clock)
    app.state.started = datetime.now(UTC)
    errors.install(app)
    app.include_router(router)
    app.add_middleware(BodyLimit, max_bytes=serve.max_body_bytes)
    return app
