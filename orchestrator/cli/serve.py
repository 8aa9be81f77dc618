"""``microseg serve``: the change-request API (uvicorn) with its scheduler, and ``serve token`` to manage API tokens."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from orchestrator.cli.common import Settings, emit_json, handles_errors, json_option
from orchestrator.cli.progress import configure_logging, json_logs_wanted, reporter_for
from orchestrator.cli.render import console
from orchestrator.config import Config
from orchestrator.engine.distributed import BROKER_ENV
from orchestrator.model.errors import PlanError
from orchestrator.model.rules import is_loopback
from orchestrator.store import DEFAULT_STORE_URL, open_service_store, resolve_store_url

if TYPE_CHECKING:
    from orchestrator.engine.engine import PointExecutor

ROLES = ("requester", "approver", "operator")
log = logging.getLogger(__name__)


def register(main: click.Group) -> None:
    """Add ``serve`` (and ``serve token …``) to the ``microseg`` group."""

    @main.group(invoke_without_command=True)
    @click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
    @click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
    @click.option("--no-scheduler", is_flag=True, help="Serve the API only (no reconcile / window / expiry jobs).")
    @click.option("--tick", type=click.FloatRange(0.05, 60), default=1.0, show_default=True,
                  help="Seconds between two looks at the job schedule.")
    @click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                  help="Serve HTTPS with this certificate (PEM, chain included); needs --tls-key.")
    @click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                  help="The certificate's private key (PEM).")
    @click.option("--executor", type=click.Choice(["local", "celery"]),
                  help="Where per-point steps of applies and reconciles run (default: serve.executor, else local).")
    @click.option("--broker", envvar=BROKER_ENV,
                  help=f"Celery broker URL for --executor celery (env {BROKER_ENV}; else serve.broker).")
    @click.pass_context
    @handles_errors
    def serve(ctx: click.Context, host: str, port: int, no_scheduler: bool, tick: float,
              tls_cert: Path | None, tls_key: Path | None, executor: str | None, broker: str | None) -> None:
        """Run the change-request API (OpenAPI at /docs) and the scheduler from microseg.yaml's `serve:`.

        Tokens travel in every request: serve HTTPS (--tls-cert/--tls-key) or listen on loopback behind a
        TLS-terminating reverse proxy.
        """
        if ctx.invoked_subcommand is not None:
            return
        _run(ctx.obj, host, port, no_scheduler, tick, tls_cert, tls_key, executor, broker)

    @serve.group()
    def token() -> None:
        """API bearer tokens (kept as salted SHA-256 digests; the token is printed once)."""

    @token.command("add")
    @json_option
    @click.argument("name")
    @click.option("--role", type=click.Choice(ROLES), required=True, help="What the token may do.")
    @click.pass_obj
    @handles_errors
    def token_add(settings: Settings, as_json: bool, name: str, role: str) -> None:
        """Create a token for identity NAME and print it (only now: it is not kept)."""
        with open_service_store(settings.store or DEFAULT_STORE_URL) as store:
            record, text = store.add_token(name, role)
            store.audit("token.created", actor=settings.actor, detail={"token": record.id, "name": name,
                                                                       "role": role})
        if as_json:
            emit_json({"ok": True, **record.to_dict(), "secret": text})
            return
        click.echo(text)
        console(stderr=True).print(f"token {record.id} for {name} ({role}); store it now, it is not shown again",
                                   highlight=False)

    @token.command("list")
    @json_option
    @click.pass_obj
    @handles_errors
    def token_list(settings: Settings, as_json: bool) -> None:
        """The tokens (id, identity, role, created, revoked) — never their secrets."""
        with open_service_store(settings.store or DEFAULT_STORE_URL) as store:
            tokens = [t.to_dict() for t in store.tokens()]
        if as_json:
            emit_json({"ok": True, "tokens": tokens})
            return
        for t in tokens:
            state = f"revoked {t['revoked_at']}" if t["revoked_at"] else "active"
            click.echo(f"{t['id']}  {t['name']:<24} {t['role']:<10} {t['created_at']}  {state}")

    @token.command("revoke")
    @json_option
    @click.argument("id_or_name")
    @click.pass_obj
    @handles_errors
    def token_revoke(settings: Settings, as_json: bool, id_or_name: str) -> None:
        """Revoke one token (by id) or every token of an identity (by name); exit 1 when none matched."""
        with open_service_store(settings.store or DEFAULT_STORE_URL) as store:
            count = store.revoke_token(id_or_name)
            store.audit("token.revoked", actor=settings.actor, detail={"which": id_or_name, "count": count})
        if as_json:
            emit_json({"ok": bool(count), "revoked": count, "which": id_or_name})
        else:
            click.echo(f"revoked {count} token{'s' if count != 1 else ''}")
        if not count:
            sys.exit(1)


def executor_for(settings: Settings, config: Config, executor: str | None, broker: str | None) -> PointExecutor | None:
    """The Celery executor when ``--executor``/``serve.executor`` asks for it (None: the local runner)."""
    serve = config.serve
    if (executor or serve.executor) != "celery":
        return None
    from orchestrator.engine.distributed import CeleryExecutor, refuse_local_store  # noqa: PLC0415

    url = broker or serve.broker
    if not url:
        raise PlanError(f"--executor celery needs a broker: --broker URL, {BROKER_ENV} or serve.broker in "
                        "microseg.yaml (amqp://… or redis://…)")
    refuse_local_store(resolve_store_url(settings.store or None))
    return CeleryExecutor(url, serve.queue_timeout, serve.worker_lease)


def _run(settings: Settings, host: str, port: int, no_scheduler: bool, tick: float,
         tls_cert: Path | None, tls_key: Path | None, executor: str | None = None, broker: str | None = None) -> None:
    """Serve the API (and its scheduler) until interrupted."""
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    remote = executor_for(settings, settings.config(), executor, broker)
    if tls_cert is None and not is_loopback(host):
        log.warning("serving plain HTTP on %s: bearer tokens cross the network in clear text; use "
                    "--tls-cert/--tls-key, or listen on 127.0.0.1 behind a TLS reverse proxy", host)
    import uvicorn  # noqa: PLC0415  (the web stack is loaded only to serve)

    from orchestrator.api.app import build_service, create_app  # noqa: PLC0415
    from orchestrator.api.scheduler import scheduler_for  # noqa: PLC0415

    config = settings.config()
    store = open_service_store(settings.store or DEFAULT_STORE_URL)
    configure_logging()
    svc = build_service(settings.policy, settings.inventory, store, config, reporter=reporter_for(True),
                        executor=remote)
    svc.project()  # a broken policy or inventory is reported now, not at the first request
    scheduler = None if no_scheduler else scheduler_for(svc, tick)
    try:
        # with JSON logs, uvicorn's own loggers go through the root's JSON handler too
        config_of_uvicorn = None if json_logs_wanted() else uvicorn.config.LOGGING_CONFIG
        uvicorn.run(create_app(svc, scheduler=scheduler), host=host, port=port, log_level="info",
                    proxy_headers=False, server_header=False, log_config=config_of_uvicorn,
                    ssl_certfile=str(tls_cert) if tls_cert else None,
                    ssl_keyfile=str(tls_key) if tls_key else None)
    finally:
        store.close()
