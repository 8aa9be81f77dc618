"""microseg as Nornir tasks, for a team's own ``nr.run(...)``.

::

    from nornir import InitNornir
    from orchestrator.engine.nornir_tasks import microseg_engine, microseg_plan

    nr = InitNornir(config_file="config.yaml")
    with microseg_engine("policies", "inventory") as engine:
        result = nr.run(task=microseg_plan, engine=engine)

Every task works on the host's enforcement point and returns a Nornir ``Result`` whose ``result`` is
JSON-able data (the plan or the run, as ``microseg plan --json`` / ``apply --json`` give it), ``changed``
says whether the point differs from the policy (or was changed), ``failed`` whether a guard refused it or
the run failed, and ``diff`` holds the native change (CLI lines, nft script, API calls).  A host that is
not an enforcement point (no ``data.microseg``) gets ``{"point": false}``, unchanged.  Planning never
changes a device; ``microseg_apply`` runs the same transaction as ``microseg apply`` (checkpoint → apply →
verify, restored on failure), one run per host.  See ``docs/nornir_example.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from nornir.core.task import Result, Task

from orchestrator.engine.engine import Actor, Engine, EngineOptions
from orchestrator.engine.plan import ChangePlan, Plan
from orchestrator.engine.project import load_project
from orchestrator.engine.transaction import ApplyOptions, OnFailure, apply_plan
from orchestrator.inventory.inventory import load_nornir_inventory
from orchestrator.model.identity import login_name
from orchestrator.store import open_store

__all__ = ["microseg_apply", "microseg_drift", "microseg_engine", "microseg_plan"]


@contextmanager
def microseg_engine(policy: str | Path, inventory: str | Path, *, store: str | None = None,
                    today: date | None = None, actor: str | None = None, ticket: str | None = None,
                    options: EngineOptions | None = None) -> Iterator[Engine]:
    """The engine the tasks share: the policy and inventory directories, the state store (default
    ``$MICROSEG_STORE``, else ``sqlite:///.microseg/state.db``); closed (driver sessions, store) on exit."""
    project = load_project(Path(policy), Path(inventory), today=today or date.today())
    engine = Engine(project, load_nornir_inventory(Path(inventory)), open_store(store),
                    Actor(actor or login_name(), ticket), options or EngineOptions(), owns_store=True)
    with engine:
        yield engine


def _not_a_point(task: Task, engine: Engine) -> Result | None:
    if task.host.name in engine.compilation().points:
        return None
    return Result(host=task.host, result={"point": False}, changed=False)


def _plan_result(task: Task, plan: ChangePlan, **extra: Any) -> Result:
    return Result(host=task.host, result={**plan.to_dict(), **extra}, changed=not plan.empty,
                  failed=plan.refused, diff="\n".join(plan.change.commands))


def microseg_plan(task: Task, engine: Engine) -> Result:
    """The change plan of the host's point (changes nothing)."""
    return _not_a_point(task, engine) or _plan_result(task, engine.plan_point(task.host.name))


def microseg_drift(task: Task, engine: Engine) -> Result:
    """The plan of the host's point, recorded in the store as a drift run (``run_id`` in the result)."""
    skipped = _not_a_point(task, engine)
    if skipped is not None:
        return skipped
    plan = engine.plan_point(task.host.name)
    run_id = engine.record_plan("drift", _single(engine, plan), {"targets": [task.host.name], "via": "nornir"})
    return _plan_result(task, plan, run_id=run_id)


def microseg_apply(task: Task, engine: Engine, on_failure: str = OnFailure.ROLLBACK_ALL.value) -> Result:
    """Plan the host's point and apply the plan as one run (checkpoint → apply → verify; restored on failure).
    A plan a guard refuses is not applied (``failed``); an empty plan is a no-op."""
    skipped = _not_a_point(task, engine)
    if skipped is not None:
        return skipped
    plan = engine.plan_point(task.host.name)
    if plan.empty or plan.refused:
        return _plan_result(task, plan)
    run = apply_plan(engine, _single(engine, plan), ApplyOptions(OnFailure(on_failure)),
                     {"targets": [task.host.name], "via": "nornir"})
    return Result(host=task.host, result=run.to_dict(), changed=True, failed=not run.ok,
                  diff="\n".join(plan.change.commands))


def _single(engine: Engine, plan: ChangePlan) -> Plan:
    return Plan({plan.point: plan}, {}, datetime.now(UTC).isoformat(timespec="seconds"), engine.policy_digest())
