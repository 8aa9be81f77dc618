"""``microseg worker`` and ``microseg workers``: the Celery side of ``--executor celery``.

A worker runs where the points of its queues are reachable (a site's jump host, a machine holding a cloud
account's role) with the same policy and inventory as the coordinator, and resolves the points' secrets
itself.  See ``orchestrator.engine.distributed``.
"""

from __future__ import annotations

import socket
import sys

import click

from orchestrator.cli.common import Settings, emit_json, handles_errors, json_option
from orchestrator.cli.render import console
from orchestrator.engine.distributed import BROKER_ENV, WorkerState, celery_app, live_workers, refuse_local_store
from orchestrator.model.errors import PlanError
from orchestrator.store import resolve_store_url


def _broker(broker: str | None) -> str:
    if not broker:
        raise PlanError(f"give the Celery broker: --broker URL or {BROKER_ENV} (amqp://… or redis://…)")
    return broker


@click.command()
@click.option("--queue", "-Q", "queues", multiple=True, default=("default",), show_default=True,
              help="Serve the points of this queue (inventory data.microseg.queue); repeatable.")
@click.option("--broker", envvar=BROKER_ENV, help=f"Celery broker URL (env {BROKER_ENV}).")
@click.option("--concurrency", "-c", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Worker processes or threads (points worked on at once).")
@click.option("--pool", type=click.Choice(["prefork", "threads"]), default="prefork", show_default=True,
              help="Celery's execution pool: processes (each builds its own engine), or threads sharing one engine "
                   "(lighter for many SSH sessions at once).")
@click.option("--name", "-n", help="Worker name, NAME or NAME@HOST (default: microseg-QUEUES@HOST).")
@click.pass_obj
@handles_errors
def worker(settings: Settings, queues: tuple[str, ...], broker: str | None, concurrency: int, pool: str,
           name: str | None) -> None:
    """Run a Celery worker that runs the per-point steps (plan, apply, restore, rollback) of the points of QUEUES
    for coordinators using `--executor celery`."""
    from orchestrator.cli.runs import engine_parts  # noqa: PLC0415  (the engine loads with this command only)

    url = _broker(broker)
    refuse_local_store(resolve_store_url(settings.store or None))
    settings.project()  # a policy or inventory error stops the worker now, not on its first task
    app = celery_app(url)
    from orchestrator.engine.distributed import register_step  # noqa: PLC0415

    register_step(app, WorkerState(lambda: engine_parts(settings)))
    node = name or f"microseg-{'-'.join(queues)}"
    node = node if "@" in node else f"{node}@{socket.gethostname()}"
    app.worker_main(["worker", "--queues", ",".join(queues), "--concurrency", str(concurrency), "--pool", pool,
                     "--hostname", node, "--loglevel", "INFO", "--without-gossip", "--without-mingle"])


@click.command()
@json_option
@click.option("--broker", envvar=BROKER_ENV, help=f"Celery broker URL (env {BROKER_ENV}).")
@click.option("--timeout", type=click.FloatRange(0.1), default=2.0, show_default=True,
              help="Seconds to wait for workers to answer.")
@handles_errors
def workers(as_json: bool, broker: str | None, timeout: float) -> None:
    """The live workers and the queues each serves."""
    found = live_workers(_broker(broker), timeout)
    if as_json:
        emit_json({"ok": True, "workers": [{"name": n, "queues": q} for n, q in found.items()]})
        return
    if not found:
        console().print("no worker answered", highlight=False)
        sys.exit(1)
    for worker_name, queues in found.items():
        console().print(f"{worker_name}: {', '.join(queues)}", highlight=False)


def register(main: click.Group) -> None:
    main.add_command(worker)
    main.add_command(workers)
