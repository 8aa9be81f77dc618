"""Per-point steps on Celery workers (``--executor celery``), the local Nornir runner staying the default.

A site's switches are often reachable only from a machine inside that site, a cloud account only from a
worker holding its role.  Each point names its ``queue`` (inventory ``data.microseg.queue``, per host or
Nornir group; default ``default``); ``microseg worker --queue SITE…`` serves those queues.  The coordinator
(the CLI) sends one task per point and step and waits for its answer; what a task carries is the point's
name, the step and the digest of the compiled policy — never a secret: credentials resolve on the worker,
from its own inventory and secret backends (a site's credentials can live only there).

A worker loads the same policy and inventory as the coordinator (deployed beside it); a task whose policy
digest differs from the worker's is refused with both digests, so a worker never plans from another
policy.  Tasks are acknowledged late (a worker that dies mid-step leaves its message to another worker of the
queue).  A queue no worker serves: the point waits up to ``--queue-timeout`` seconds, then fails naming the
queue.

Implemented step: ``plan`` (fetch, normalize, diff, render, guard: read-only).  Applying through workers
(checkpoint → apply → verify with per-point leases) is not implemented yet: ``apply``/``rollback`` run
locally (issue #18).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.model.errors import MicrosegError, PlanError

if TYPE_CHECKING:  # Celery loads only for --executor celery and `microseg worker`
    from celery import Celery

    from orchestrator.engine.engine import Engine
    from orchestrator.engine.plan import ChangePlan

STEP_TASK = "microseg.step"
STEPS = ("plan",)
DEFAULT_QUEUE = "default"
BROKER_ENV = "MICROSEG_BROKER"


def backend_for(broker: str) -> str:
    """Where answers go back: the same Redis for a Redis broker; RabbitMQ's reply queues (``rpc://``) else."""
    return broker if broker.startswith(("redis://", "rediss://")) else "rpc://"


def celery_app(broker: str) -> Celery:
    """The Celery app both sides use: JSON only (no pickle: a message never runs code), late acks, one task
    prefetched per worker process."""
    from celery import Celery  # noqa: PLC0415

    app = Celery("microseg", broker=broker, backend=backend_for(broker))
    app.conf.update(
        task_serializer="json", result_serializer="json", accept_content=["json"], result_accept_content=["json"],
        task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
        task_default_queue=DEFAULT_QUEUE, broker_connection_retry_on_startup=True, result_expires=3600,
        worker_hijack_root_logger=False,
    )
    return app


def refuse_local_store(store_url: str) -> None:
    """Workers on other machines share the coordinator's store: a SQLite file cannot be that."""
    if store_url.startswith("sqlite"):
        raise PlanError("--executor celery needs a store every worker can reach: PostgreSQL (--store "
                        "postgresql+psycopg://…), not a SQLite file")


@dataclass(frozen=True)
class CeleryExecutor:
    """Sends each point's step to its queue and collects the answers (the coordinator's side)."""

    broker: str
    queue_timeout: float = 120.0

    def plan_points(self, engine: Engine, points: Sequence[str], digest: str,
                    on_result: Callable[[str, ChangePlan | MicrosegError], None] | None = None,
                    ) -> dict[str, ChangePlan | MicrosegError]:
        """The plan of every point, made by a worker of the point's queue."""
        from celery.exceptions import TimeoutError as CeleryTimeout  # noqa: PLC0415

        app = celery_app(self.broker)
        pending: dict[str, tuple[str, Any]] = {}
        for point in points:
            queue = engine.project.inventory.point(point).queue
            result = app.send_task(STEP_TASK, kwargs={"step": "plan", "point": point, "digest": digest},
                                   queue=queue)
            pending[point] = (queue, result)
        deadline = time.monotonic() + self.queue_timeout
        out: dict[str, ChangePlan | MicrosegError] = {}
        for point, (queue, result) in pending.items():
            answer: ChangePlan | MicrosegError
            try:
                data = result.get(timeout=max(0.1, deadline - time.monotonic()), propagate=False)
            except CeleryTimeout:
                result.revoke()  # a worker that shows up later does not run it
                answer = PlanError(f"{point}: no worker of queue {queue!r} answered within {self.queue_timeout:g} s "
                                   f"(start one: microseg worker --queue {queue})")
            else:
                answer = _answer(point, queue, data)
            out[point] = answer
            if on_result is not None:
                on_result(point, answer)
        return out


def _answer(point: str, queue: str, data: Any) -> ChangePlan | MicrosegError:
    from orchestrator.engine.plan import ChangePlan  # noqa: PLC0415

    if isinstance(data, Mapping) and data.get("ok") and isinstance(data.get("plan"), Mapping):
        return ChangePlan.from_dict(data["plan"])
    if isinstance(data, Mapping) and isinstance(data.get("error"), str):
        return PlanError(f"{point} (worker of queue {queue!r}): {data['error']}")
    return PlanError(f"{point}: the worker of queue {queue!r} failed: {data!r}"[:2000])


class WorkerState:
    """One worker process's engine, built on its first task (project, Nornir inventory, store)."""

    def __init__(self, make_engine: Callable[[], Engine]) -> None:
        self.make_engine = make_engine
        self._engine: Engine | None = None

    def engine(self, *, fresh: bool = False) -> Engine:
        if self._engine is None or fresh:
            if self._engine is not None:
                self._engine.__exit__(None, None, None)
            self._engine = self.make_engine()
        return self._engine

    def run(self, step: str, point: str, digest: str) -> dict[str, Any]:
        """One step for one point, as a JSON-able answer (errors are answers too, never exceptions)."""
        if step not in STEPS:
            return {"ok": False, "error": f"this worker does not run step {step!r} (it runs: {', '.join(STEPS)})"}
        try:
            engine = self.engine()
            if engine.policy_digest() != digest:  # the files may have changed since this process started: reread
                engine = self.engine(fresh=True)
            mine = engine.policy_digest()
            if mine != digest:
                return {"ok": False, "error": f"the worker's policy differs from the coordinator's (worker "
                                              f"{mine[:12]}, coordinator {digest[:12]}): deploy the same policy "
                                              "and inventory to every worker"}
            if point not in engine.compilation().points:
                return {"ok": False, "error": f"{point} is not an enforcement point of the worker's inventory"}
            return {"ok": True, "plan": engine.plan_point(point).to_dict()}
        except MicrosegError as exc:
            return {"ok": False, "error": exc.message}


def register_step(app: Celery, state: WorkerState) -> None:
    """The task a worker runs for every step message."""

    @app.task(name=STEP_TASK)  # type: ignore[untyped-decorator]
    def step(step: str, point: str, digest: str) -> dict[str, Any]:
        return state.run(step, point, digest)


def live_workers(broker: str, timeout: float = 2.0) -> dict[str, list[str]]:
    """Each live worker and the queues it serves (asked over the broker)."""
    app = celery_app(broker)
    replies = app.control.inspect(timeout=timeout).active_queues() or {}
    return {worker: sorted(str(q.get("name")) for q in queues) for worker, queues in sorted(replies.items())}
