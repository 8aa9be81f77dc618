"""The scheduler of ``microseg serve``: cron jobs, each slot run by exactly one instance sharing the store.

A job's *slot* is the latest time its cron expression fired.  Before running
a slot, an instance inserts ``(job, slot)`` into the store's ``job_slots``
table, whose primary key is that pair: only the instance whose insert wins
runs it; the others see it taken and move on.  Slots that fired before the
instance started are not run (like cron, a restart does not replay them).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from orchestrator.api.workflow import ChangeService
from orchestrator.engine.cron import latest_slot
from orchestrator.engine.reconcile import reconcile
from orchestrator.model.errors import MicrosegError
from orchestrator.store import ServiceStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Job:
    """A named cron job; ``run`` returns what is recorded with its slot."""

    name: str
    cron: str
    run: Callable[[], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one tick did with one job's slot."""

    job: str
    slot: datetime
    ran: bool
    status: str  # done | failed | taken
    detail: dict[str, Any]


class Scheduler:
    """Runs due jobs on :meth:`tick`; :meth:`start` ticks in a background thread every ``interval`` seconds."""

    def __init__(self, store: ServiceStore, jobs: list[Job], *, instance: str,
                 clock: Callable[[], datetime], zone: str = "UTC", interval: float = 1.0) -> None:
        self.store, self.jobs, self.instance = store, jobs, instance
        self.clock, self.zone, self.interval = clock, zone, interval
        self.started = clock()
        self._seen: dict[str, datetime] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> list[Outcome]:
        """Claim and run every job whose latest slot is new to this instance."""
        now = self.clock()
        outcomes = []
        for job in self.jobs:
            slot = latest_slot(job.cron, now, self.zone).astimezone(UTC)
            if slot < self.started or self._seen.get(job.name) == slot:
                continue
            self._seen[job.name] = slot
            outcomes.append(self._run(job, slot))
        return outcomes

    def _run(self, job: Job, slot: datetime) -> Outcome:
        if not self.store.claim_slot(job.name, slot, self.instance):
            log.info("%s at %s: taken by another instance", job.name, slot.isoformat())
            return Outcome(job.name, slot, False, "taken", {})
        log.info("%s at %s: running", job.name, slot.isoformat())
        try:
            detail = job.run()
        except MicrosegError as exc:
            detail, status = {"error": exc.message}, "failed"
        except Exception as exc:  # a job must never stop the scheduler: record it and carry on
            log.exception("%s at %s failed", job.name, slot.isoformat())
            detail, status = {"error": f"{type(exc).__name__}: {exc}"}, "failed"
        else:
            status = "done"
        self.store.finish_slot(job.name, slot, status, detail)
        return Outcome(job.name, slot, True, status, detail)

    def start(self) -> None:
        """Tick in a daemon thread until :meth:`stop`."""
        def loop() -> None:
            while not self._stop.wait(self.interval):
                try:
                    self.tick()
                except MicrosegError as exc:  # the store is unreachable: try again next tick
                    log.warning("scheduler tick failed: %s", exc.message)

        self._thread = threading.Thread(target=loop, name="microseg-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop ticking; a job that is running finishes first."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)


def service_jobs(svc: ChangeService) -> list[Job]:
    """Reconcile (when configured), apply approved requests whose window opened, remove expired ticket rules."""
    cfg = svc.ctx.config.serve
    jobs = [Job("apply-pending", cfg.pending_cron, svc.apply_pending), Job("expire", cfg.expiry_cron, svc.expire_due)]
    if cfg.reconcile_cron:
        def run_reconcile() -> dict[str, Any]:
            project = svc.project()
            with svc.engine(project, "microseg-scheduler", None) as engine:
                result = reconcile(engine, None, repair=cfg.reconcile_mode == "repair",
                                   options={"scheduled": True, "instance": svc.ctx.instance})
            return {"run_id": result.run_id, "drifted": result.drifted,
                    "repair": result.repair.run_id if result.repair else None}
        jobs.insert(0, Job("reconcile", cfg.reconcile_cron, run_reconcile))
    return jobs


def scheduler_for(svc: ChangeService, interval: float = 1.0) -> Scheduler:
    """The scheduler of a service, with its jobs from the configuration."""
    return Scheduler(svc.store, service_jobs(svc), instance=svc.ctx.instance, clock=svc.ctx.clock,
                     zone=svc.ctx.config.serve.cron_timezone, interval=interval)
