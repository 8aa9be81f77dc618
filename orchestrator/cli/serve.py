"""``microseg serve``: the change-request API (uvicorn) with its scheduler, and ``serve token`` to manage API tokens."""

from __future__ import annotations

import sys

import click

from orchestrator.cli.common import Settings, emit_json, handles_errors, json_option
from orchestrator.cli.progress import configure_logging, json_logs_wanted, reporter_for
from orchestrator.cli.render import console
from orchestrator.model.errors import PlanError
from orchestrator.store import DEFAULT_STORE_URL, open_service_store

ROLES = ("requester", "approver", "operator")


def register(main: click.Group) -> None:
    """Add ``serve`` (and ``serve token …``) to the ``microseg`` group."""

    @main.group(invoke_without_command=True)
    @click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
    @click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
    @click.option("--no-scheduler", is_flag=True, help="Serve the API only (no reconcile / window / expiry jobs).")
    @click.option("--tick", type=click.FloatRange(0.05, 60), default=1.0, show_default=True,
                  help="Seconds between two looks at the job schedule.")
    @click.pass_context
    @handles_errors
    def serve(ctx: click.Context, host: str, port: int, no_scheduler: bool, tick: float) -> None:
        """Run the change-request API (OpenAPI at /docs) and the scheduler from microseg.yaml's `serve:`."""
        if ctx.invoked_subcommand is not None:
            return
        import uvicorn  # noqa: PLC0415  (the web stack is loaded only to serve)

        from orchestrator.api.app import build_service, create_app  # noqa: PLC0415
        from orchestrator.api.scheduler import scheduler_for  # noqa: PLC0415

        settings: Settings = ctx.obj
        config = settings.config()
        store = open_service_store(settings.store or DEFAULT_STORE_URL)
        configure_logging()
        svc = build_service(settings.policy, settings.inventory, store, config, reporter=reporter_for(True))
        svc.project()  # a broken policy or inventory is reported now, not at the first request
        scheduler = None if no_scheduler else scheduler_for(svc, tick)
        try:
            # with JSON logs, uvicorn's own loggers go through the root's JSON handler too
            config_of_uvicorn = None if json_logs_wanted() else uvicorn.config.LOGGING_CONFIG
            uvicorn.run(create_app(svc, scheduler=scheduler), host=host, port=port, log_level="info",
                        proxy_headers=False, server_header=False, log_config=config_of_uvicorn)
        finally:
            store.close()

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
        if not name.strip() or any(ord(c) < 32 for c in name):
            raise PlanError(f"invalid identity {name!r}")
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
    @click.argument("id_or_name")
    @click.pass_obj
    @handles_errors
    def token_revoke(settings: Settings, id_or_name: str) -> None:
        """Revoke one token (by id) or every token of an identity (by name)."""
        with open_service_store(settings.store or DEFAULT_STORE_URL) as store:
            count = store.revoke_token(id_or_name)
            store.audit("token.revoked", actor=settings.actor, detail={"which": id_or_name, "count": count})
        click.echo(f"revoked {count} token{'s' if count != 1 else ''}")
        if not count:
            sys.exit(1)
