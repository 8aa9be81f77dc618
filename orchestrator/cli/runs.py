"""The ``microseg`` commands that touch enforcement points: plan, apply, drift, rollback, history, show.

Exit codes: 0 success / in sync; 1 error (bad input, refused plan, a point
failed and was restored); 2 ``drift``: at least one point differs from the
policy; 3 a rollback failed and some point is in an UNKNOWN state.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import Any

import click
import yaml

from orchestrator.cli.common import F, Settings, emit_json, handles_errors, json_option
from orchestrator.cli.completion import complete_groups, complete_points
from orchestrator.cli.progress import reporter_for
from orchestrator.cli.render import console
from orchestrator.cli.render_runs import (
    print_adoptions,
    print_history,
    print_plan,
    print_reconciliation,
    print_run,
    print_run_record,
)
from orchestrator.engine.adopt import Adoption, adopt
from orchestrator.engine.distributed import BROKER_ENV
from orchestrator.engine.engine import Actor, Engine, EngineOptions
from orchestrator.engine.plan import GuardSettings, Plan
from orchestrator.engine.reconcile import adoption, reconcile
from orchestrator.engine.rollback import rollback_run
from orchestrator.engine.transaction import ApplyOptions, OnFailure, RunResult, apply_plan, check_guards, record_refusal
from orchestrator.engine.windows import WindowRule, check_point
from orchestrator.inventory.inventory import load_nornir_inventory
from orchestrator.model.errors import PlanError
from orchestrator.model.rules import AddressSet
from orchestrator.store import open_store, resolve_store_url

EXIT_DRIFT = 2
EXIT_UNKNOWN = 3


@contextmanager
def engine_for(settings: Settings, *, as_json: bool, workers: int = 10, guards: GuardSettings | None = None,
               ticket: str | None = None, lock_timeout: float = 30.0,
               executor: ExecutorChoice | None = None) -> Iterator[Engine]:
    """An engine over the project, its Nornir inventory and the store; everything closed afterwards."""
    remote = None
    if executor is not None and executor.kind == "celery":
        from orchestrator.engine.distributed import CeleryExecutor, refuse_local_store  # noqa: PLC0415

        if not executor.broker:
            raise PlanError(f"--executor celery needs --broker URL (or {BROKER_ENV}): amqp://… or redis://…")
        refuse_local_store(resolve_store_url(settings.store or None))
        remote = CeleryExecutor(executor.broker, executor.queue_timeout, executor.worker_lease)
    project = settings.project()
    nornir = load_nornir_inventory(settings.inventory)
    store = open_store(settings.store)
    options = EngineOptions(workers=workers, guards=guards or GuardSettings(), lock_timeout=lock_timeout,
                            executor=remote)
    try:
        reporter = reporter_for(as_json, quiet=settings.quiet)
        with Engine(project, nornir, store, Actor(settings.actor, ticket), options, reporter) as engine:
            yield engine
    finally:
        store.close()


def engine_parts(settings: Settings) -> Engine:
    """A long-lived engine (a worker's): the project, its Nornir inventory and the store, which closing the
    engine closes."""
    return Engine(settings.project(), load_nornir_inventory(settings.inventory), open_store(settings.store),
                  Actor(settings.actor, None), EngineOptions(), owns_store=True)


@dataclass(frozen=True)
class Selection:
    """The points a command works on: ``-t`` names, ``-g`` Nornir groups, ``--label KEY=VALUE`` (all must
    match), less ``-x`` names; nothing given = every point."""

    targets: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()

    @property
    def narrowed(self) -> bool:
        return bool(self.targets or self.groups or self.labels)

    def to_dict(self) -> dict[str, list[str]]:
        return {"targets": list(self.targets), "groups": list(self.groups), "labels": list(self.labels),
                "exclude": list(self.excludes)}


def selected_points(engine: Engine, selection: Selection) -> list[str] | None:
    """The points of ``selection``; None = every point."""
    if not selection.narrowed and not selection.excludes:
        return None
    names = list(selection.targets)
    if selection.labels:
        wanted = [_label(text) for text in selection.labels]
        candidates = engine.select(None)
        names += [n for n in candidates
                  if all(str(engine.nornir.hosts[n].get(k, "")) == v for k, v in wanted)]
        if not names:
            raise PlanError(f"no managed point has {' and '.join(selection.labels)}")
    known_groups = set(engine.project.inventory.groups)
    for group in selection.groups:
        if group not in known_groups:
            raise PlanError(f"no Nornir group named {group!r} (groups: {', '.join(sorted(known_groups))})")
        names += [p.name for p in engine.project.inventory.points if group in p.all_groups]
    chosen = engine.select(names if selection.narrowed else None)
    unknown = [x for x in selection.excludes if x not in engine.compilation().points]
    if unknown:
        raise PlanError(f"--exclude names no enforcement point: {', '.join(unknown)}")
    left = [n for n in chosen if n not in set(selection.excludes)]
    if not left:
        raise PlanError("the selection leaves no point once --exclude is applied")
    return left


def selection_options(func: F) -> F:
    """-t/-g/--label/-x, handed to the command as one ``selection: Selection`` argument."""

    @wraps(func)
    def command(*args: Any, targets: tuple[str, ...], groups: tuple[str, ...], labels: tuple[str, ...],
                excludes: tuple[str, ...], **kwargs: Any) -> Any:
        return func(*args, selection=Selection(targets, groups, labels, excludes), **kwargs)

    options = (
        click.option("--exclude", "-x", "excludes", multiple=True, metavar="NAME", shell_complete=complete_points,
                     help="Leave this point out (repeatable)."),
        click.option("--label", "labels", multiple=True, metavar="KEY=VALUE",
                     help="Points whose Nornir data has KEY=VALUE, e.g. env=prod (repeatable: all must match)."),
        click.option("--group", "-g", "groups", multiple=True, metavar="GROUP", shell_complete=complete_groups,
                     help="Every point of this Nornir group (repeatable)."),
        click.option("--target", "-t", "targets", multiple=True, metavar="NAME", shell_complete=complete_points,
                     help="Only this point (repeatable)."),
    )
    decorated: Any = command
    for option in options:
        decorated = option(decorated)
    return decorated  # type: ignore[no-any-return]


def policy_groups(engine: Engine) -> dict[str, AddressSet]:
    """The policy's groups by name (to name the ends of flows in plan output)."""
    return {name: group.addresses for name, group in engine.compilation().groups.items() if group.addresses}


@dataclass(frozen=True)
class ExecutorChoice:
    """``--executor local|celery`` with its broker, how long a queue may keep a point waiting, and how long a
    worker's step may go silent before it counts as lost."""

    kind: str = "local"
    broker: str | None = None
    queue_timeout: float = 120.0
    worker_lease: float = 30.0

    def to_dict(self) -> dict[str, Any]:  # recorded with the run (the broker URL may carry a password: not it)
        return {"executor": self.kind, "queue_timeout": self.queue_timeout, "worker_lease": self.worker_lease}


def executor_options(func: F) -> F:
    """--executor/--broker/--queue-timeout/--worker-lease, handed to the command as one ``executor:
    ExecutorChoice`` argument (checked when the engine is made)."""

    @wraps(func)
    def command(*args: Any, executor: str, broker: str | None, queue_timeout: float, worker_lease: float,
                **kwargs: Any) -> Any:
        return func(*args, executor=ExecutorChoice(executor, broker, queue_timeout, worker_lease), **kwargs)

    options = [
        click.option("--executor", type=click.Choice(["local", "celery"]), default="local", show_default=True,
                     help="Where per-point steps run: here (Nornir's threads) or on Celery workers "
                     "by each point's inventory `queue` (`microseg worker`)."),
        click.option("--broker", envvar=BROKER_ENV,
                     help=f"Celery broker URL, amqp://… or redis://… (env {BROKER_ENV})."),
        click.option("--queue-timeout", type=click.FloatRange(0.1), default=120.0, show_default=True,
                     help="Seconds a point waits for a worker of its queue before it fails, naming the queue."),
        click.option("--worker-lease", type=click.FloatRange(1.0), default=30.0, show_default=True,
                     help="Seconds a worker's step may go without renewing its lease before the worker counts "
                     "as lost and the point is restored from its checkpoint by another worker."),
    ]
    decorated: Any = command
    for option in reversed(options):
        decorated = option(decorated)
    return decorated  # type: ignore[no-any-return]


def workers_option(func: F) -> F:
    return click.option("--workers", "-w", type=click.IntRange(1, 500), default=10, show_default=True,
                        help="Points worked on in parallel (Nornir threaded runner).")(func)


def report_run(result: RunResult, as_json: bool) -> None:
    """Print a run's outcome (JSON or human) and exit with its code."""
    if as_json:
        emit_json({"ok": result.ok, **result.to_dict()})
    else:
        print_run(result)
    if result.status == "unknown":
        sys.exit(EXIT_UNKNOWN)
    if result.status != "ok":
        sys.exit(1)


def write_adoptions(adoptions: list[Adoption], output: Path) -> dict[str, str]:
    """Each proposal as YAML: ``output`` itself for one point, ``output/adopted-POINT.yaml`` for several."""
    paths = {a.point: output if len(adoptions) == 1 and output.suffix in (".yaml", ".yml")
             else output / f"adopted-{a.point}.yaml" for a in adoptions}
    for proposal in adoptions:
        path = paths[proposal.point]
        path.parent.mkdir(parents=True, exist_ok=True)
        verdict = "proven equivalent" if proposal.equivalent else "NOT proven equivalent"
        path.write_text(f"# proposed by `microseg adopt {proposal.point}` — {verdict} to the existing "
                        "enforcement; review before merging\n" + yaml.safe_dump(proposal.policy, sort_keys=False))
    return {point: str(path) for point, path in paths.items()}


def register(main: click.Group) -> None:  # noqa: PLR0915
    """Add the engine commands to the ``microseg`` group."""

    @main.command()
    @json_option
    @selection_options
    @workers_option
    @executor_options
    @click.option("--output", "-o", type=click.Path(path_type=Path), help="Save the plan (JSON) for `apply --plan`.")
    @click.option("--native", is_flag=True, help="Also show the exact native change (nft script, CLI lines …).")
    @click.option("--detailed-exitcode", is_flag=True,
                  help="Exit 0 when nothing would change, 2 when something would, 1 on error (like Terraform).")
    @click.pass_obj
    @handles_errors
    def plan(settings: Settings, as_json: bool, selection: Selection, workers: int, executor: ExecutorChoice,
             output: Path | None, native: bool, detailed_exitcode: bool) -> None:
        """Compare every point with the policy and show what apply would change (changes nothing)."""
        with engine_for(settings, as_json=as_json, workers=workers, executor=executor) as engine:
            result = engine.plan(selected_points(engine, selection))
            run_id = engine.record_plan("plan", result, selection.to_dict())
        if output:
            output.write_text(json.dumps(result.to_dict(), indent=1, sort_keys=True) + "\n")
        if as_json:
            emit_json({"ok": not result.failures, "run_id": run_id, **result.to_dict()})
        else:
            print_plan(result, native=native, groups=policy_groups(engine))
            if output:
                console().print(f"Plan saved to {output}: apply it with `microseg apply --plan {output}`.")
        if result.failures:
            sys.exit(1)
        if detailed_exitcode and result.changes:
            sys.exit(EXIT_DRIFT)

    @main.command()
    @json_option
    @selection_options
    @workers_option
    @executor_options
    @click.option("--plan", "plan_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                  help="Apply this saved plan; refused if any point changed since it was made.")
    @click.option("--auto-approve", is_flag=True, help="Do not ask for confirmation.")
    @click.option("--on-failure", type=click.Choice([o.value for o in OnFailure]), default="rollback-all",
                  show_default=True, help="What a failed point does to the rest of the run.")
    @click.option("--canary", type=click.IntRange(0), default=0, help="Apply to N points first, verify, then the rest.")
    @click.option("--batch-size", type=click.IntRange(0), default=0,
                  help="After the canary, points per batch (0: all).")
    @click.option("--ticket", help="Change ticket recorded with the run.")
    @click.option("--lock-timeout", type=float, default=30.0, show_default=True,
                  help="Seconds to wait for a point another run is changing.")
    @click.option("--allow-mass-removal", is_flag=True, help="Override the mass-removal guard.")
    @click.option("--allow-empty-groups", is_flag=True, help="Override the empty-group guard.")
    @click.option("--allow-lockout", is_flag=True, help="Override the management lockout guard (dangerous).")
    @click.option("--max-removal-share", type=click.FloatRange(0, 1), default=0.5, show_default=True,
                  help="Mass-removal guard: largest share of a point's rules one run may remove.")
    @click.option("--emergency", metavar="REASON", help="Apply outside the change windows (the reason is recorded).")
    @click.pass_obj
    @handles_errors
    def apply(settings: Settings, as_json: bool, selection: Selection, workers: int, executor: ExecutorChoice,
              plan_file: Path | None, auto_approve: bool, on_failure: str, canary: int, batch_size: int,
              ticket: str | None, lock_timeout: float, allow_mass_removal: bool, allow_empty_groups: bool,
              allow_lockout: bool, max_removal_share: float, emergency: str | None) -> None:
        """Plan (or load a saved plan), confirm, then change the points: checkpoint → apply → verify → rollback."""
        if plan_file and (selection.narrowed or selection.excludes):
            raise PlanError("--plan applies the saved plan as it is: choose the points when you make it "
                            "(`microseg plan -t NAME -o FILE`)")
        guards = GuardSettings(max_removal_share=max_removal_share, allow_mass_removal=allow_mass_removal,
                               allow_empty_groups=allow_empty_groups, allow_lockout=allow_lockout)
        with engine_for(settings, as_json=as_json, workers=workers, guards=guards, ticket=ticket,
                        lock_timeout=lock_timeout, executor=executor) as engine:
            plan = _load_plan(plan_file) if plan_file else engine.plan(selected_points(engine, selection))
            if plan_file and plan.policy_digest != engine.policy_digest():
                console(stderr=True).print("[yellow]warning:[/] the policy or inventory changed since this plan "
                                           "was made; applying the plan as it was reviewed", highlight=False)
            if plan.failures:
                raise PlanError("cannot plan every point, nothing applied: "
                                + "; ".join(f"{k}: {v}" for k, v in sorted(plan.failures.items())))
            if not as_json:
                print_plan(plan, groups=policy_groups(engine))
            if not plan.changes:
                if as_json:
                    emit_json({"ok": True, "run_id": None, "status": "ok", "states": {}, "points": {}})
                else:
                    console().print("Nothing to do: every point matches the policy.")
                return
            run_options = {"plan_file": str(plan_file) if plan_file else None, "on_failure": on_failure,
                           "canary": canary, "batch_size": batch_size, "workers": workers, "guards": repr(guards),
                           "emergency": emergency, **executor.to_dict()}
            try:
                check_guards(plan, engine)
                deadline = window_deadline(engine, plan, settings.config().window_rules(), emergency)
                _confirm(auto_approve, len(plan.changes))
            except PlanError as exc:
                record_refusal(engine, "apply", exc.message, run_options)
                raise
            options = ApplyOptions(OnFailure(on_failure), canary, batch_size)
            result = apply_plan(engine, plan, options, run_options, deadline)
        report_run(result, as_json)

    @main.command()
    @json_option
    @selection_options
    @workers_option
    @executor_options
    @click.pass_obj
    @handles_errors
    def drift(settings: Settings, as_json: bool, selection: Selection, workers: int,
              executor: ExecutorChoice) -> None:
        """Report points whose actual state differs from the policy (exit 0 in sync, 2 drift, 1 error)."""
        with engine_for(settings, as_json=as_json, workers=workers, executor=executor) as engine:
            result = engine.plan(selected_points(engine, selection))
            run_id = engine.record_plan("drift", result, selection.to_dict())
        if as_json:
            emit_json({"ok": not result.failures, "run_id": run_id, "drift": [p.point for p in result.changes],
                       **result.to_dict()})
        else:
            print_plan(result, groups=policy_groups(engine))
        if result.failures:
            sys.exit(1)
        if result.changes:
            sys.exit(EXIT_DRIFT)

    @main.command(name="force-unlock")
    @json_option
    @click.argument("point", shell_complete=complete_points)
    @click.option("--reason", required=True, help="Why (recorded in the audit trail with the former holder).")
    @click.pass_obj
    @handles_errors
    def force_unlock(settings: Settings, as_json: bool, point: str, reason: str) -> None:
        """Clear the lock a crashed run left on POINT (a lease otherwise expires by itself), audited. Only for a
        run that is really gone: the lock is what keeps two runs from changing one point at once."""
        store = open_store(settings.store)
        try:
            holder = store.force_unlock(point, actor=settings.actor, reason=reason)
        finally:
            store.close()
        if as_json:
            emit_json({"ok": True, "point": point, "released": holder is not None,
                       "holder": None if holder is None else {"owner": holder.owner,
                                                              "acquired_at": holder.acquired_at.isoformat(),
                                                              "expires_at": holder.expires_at.isoformat()}})
        elif holder is None:
            console().print(f"{point} was not locked: nothing to do.", highlight=False)
        else:
            console().print(f"Released the lock of {point} held by {holder.owner} since "
                            f"{holder.acquired_at:%Y-%m-%d %H:%M:%S} (lease until {holder.expires_at:%H:%M:%S}); "
                            "recorded in the audit trail.", highlight=False)

    @main.command(name="adopt")
    @json_option
    @click.argument("points", nargs=-1, required=True, shell_complete=complete_points)
    @click.option("--output", "-o", type=click.Path(path_type=Path),
                  help="Write the proposal here: a YAML file for one point, a directory (one file per point) for "
                       "several. Nothing is written into the policy directory.")
    @click.pass_obj
    @handles_errors
    def adopt_command(settings: Settings, as_json: bool, points: tuple[str, ...], output: Path | None) -> None:
        """Read the ACLs someone else bound on each point's interfaces and propose a policy file that reproduces
        them, proven equivalent by packet space (read-only; exit 0 every proposal equivalent, 2 a proposal
        differs — example flows and device lines are printed — 1 error)."""
        with engine_for(settings, as_json=as_json) as engine:
            adoptions = adopt(engine, points)
        written = write_adoptions(adoptions, output) if output is not None else {}
        if as_json:
            emit_json({"ok": all(a.equivalent for a in adoptions),
                       "points": [{**a.to_dict(), "written": written.get(a.point)} for a in adoptions]})
        else:
            print_adoptions(adoptions, written)
        if not all(a.equivalent for a in adoptions):
            sys.exit(EXIT_DRIFT)

    @main.command(name="reconcile")
    @json_option
    @selection_options
    @workers_option
    @executor_options
    @click.option("--mode", type=click.Choice(["report", "repair"]), default="report", show_default=True,
                  help="report: record and classify drift; repair: also apply through the safety guards.")
    @click.option("--adopt", "adopt_file", type=click.Path(dir_okay=False, path_type=Path),
                  help="Write the rules found on the points but not in the policy as a policy file, for review.")
    @click.pass_obj
    @handles_errors
    def reconcile_command(settings: Settings, as_json: bool, selection: Selection, workers: int,
                          executor: ExecutorChoice, mode: str, adopt_file: Path | None) -> None:
        """Classify every point's drift (tampered, unmanaged, policy or inventory changed); repair on request.

        Exit 0 when everything is (now) in sync, 2 when drift remains (report mode, or refused by a guard),
        1 on errors — for cron, systemd timers and Kubernetes CronJobs."""
        with engine_for(settings, as_json=as_json, workers=workers, executor=executor) as engine:
            names = selected_points(engine, selection)
            if adopt_file and mode == "repair":
                raise PlanError("--adopt and --mode repair exclude each other: adopt what you find, or revert it")
            result = reconcile(engine, names, repair=mode == "repair", options=selection.to_dict())
        if adopt_file:
            proposal = adoption(result.plan)
            adopt_file.write_text(yaml.safe_dump(proposal, sort_keys=False))
            console(stderr=True).print(f"{len(proposal['rules'])} rules proposed for adoption in {adopt_file}: review, "
                                       "then move it into the policy directory", highlight=False)
        if as_json:
            emit_json({"ok": not result.plan.failures, **result.to_dict()})
        else:
            print_reconciliation(result)
        if result.plan.failures or (result.repair is not None and result.repair.status != "ok"):
            sys.exit(EXIT_UNKNOWN if result.repair is not None and result.repair.status == "unknown" else 1)
        if result.drifted:
            sys.exit(EXIT_DRIFT)

    @main.command()
    @json_option
    @workers_option
    @executor_options
    @click.argument("run_id")
    @click.option("--target", "-t", "--point", "points", multiple=True, metavar="NAME", shell_complete=complete_points,
                  help="Only this point (repeatable; --point is the older spelling).")
    @click.option("--auto-approve", is_flag=True, help="Do not ask for confirmation.")
    @click.option("--force", is_flag=True, help="Also roll back points changed since that run (discards those).")
    @click.pass_obj
    @handles_errors
    def rollback(settings: Settings, as_json: bool, workers: int, executor: ExecutorChoice, run_id: str,
                 points: tuple[str, ...], auto_approve: bool, force: bool) -> None:
        """Restore the checkpoints taken by run RUN_ID (the points it left new or unknown, or -t)."""
        with engine_for(settings, as_json=as_json, workers=workers, executor=executor) as engine:
            record = engine.store.run(run_id)
            count = len(points) or sum(r.state in ("new", "unknown") for r in record.results.values())
            _confirm(auto_approve, count)
            result = rollback_run(engine, record.id, list(points) or None, force=force)
        report_run(result, as_json)

    @main.command()
    @json_option
    @click.option("--limit", "-n", type=click.IntRange(1), default=20, show_default=True)
    @click.option("--kind", type=click.Choice(["plan", "apply", "drift", "rollback", "reconcile"]),
                  help="Only runs of this kind.")
    @click.pass_obj
    @handles_errors
    def history(settings: Settings, as_json: bool, limit: int, kind: str | None) -> None:
        """The latest runs recorded in the store."""
        store = open_store(settings.store)
        try:
            runs = [r.to_dict() for r in store.runs(limit=limit, kind=kind)]
        finally:
            store.close()
        if as_json:
            emit_json({"ok": True, "runs": runs})
        else:
            print_history(runs)

    @main.command()
    @json_option
    @click.argument("run_id")
    @click.pass_obj
    @handles_errors
    def show(settings: Settings, as_json: bool, run_id: str) -> None:
        """One run: who, when, why, and the state every point ended in (RUN_ID or a unique prefix)."""
        store = open_store(settings.store)
        try:
            record = store.run(run_id).to_dict()
        finally:
            store.close()
        if as_json:
            emit_json({"ok": True, "run": record})
        else:
            print_run_record(record)


def window_deadline(engine: Engine, plan: Plan, rules: list[WindowRule], emergency: str | None) -> datetime | None:
    """When the change windows of the points to change close; PlanError when one is closed now.

    ``--emergency REASON`` applies anyway (no deadline); the reason is recorded with the run."""
    if not rules or emergency:
        return None
    now = engine.options.clock()
    checks = [check_point(p.point, engine.project.inventory.point(p.point).all_groups, rules, now)
              for p in plan.changes]
    closed = [c for c in checks if not c.allowed]
    if closed:
        listed = "; ".join(f"{c.point} (next window opens {c.next_opening.isoformat(timespec='minutes')})"
                           for c in closed if c.next_opening is not None)
        raise PlanError(f"outside the change window, nothing applied: {listed} — wait, or pass --emergency REASON")
    ends = [c.open_until for c in checks if c.open_until is not None]
    return min(ends) if ends else None


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise PlanError(f"--label {text!r}: expected KEY=VALUE (e.g. env=prod)")
    return key, value


def _load_plan(path: Path) -> Plan:
    try:
        return Plan.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PlanError(f"{path}: not a readable microseg plan: {exc}") from exc


def _confirm(auto_approve: bool, count: int) -> None:
    if auto_approve:
        return
    if not sys.stdin.isatty():
        raise PlanError("refusing to change points without confirmation: stdin is not a terminal "
                        "(review the plan, then pass --auto-approve)")
    if not click.confirm(f"Apply these changes to {count} points?", default=False, err=True):
        raise PlanError("cancelled: nothing changed")
