"""The reconcile path every workflow goes through: fetch → normalize → diff → plan (→ apply, in transaction.py).

An :class:`Engine` holds one run's context: the project (policy + inventory),
the Nornir inventory the runner works on, the driver sessions, the store and
the reporter.  Planning is parallel (Nornir threaded runner); each point's
plan records the fingerprint of the actual state it was computed from.
"""

from __future__ import annotations

import hashlib
import logging
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from nornir.core.inventory import Inventory as NornirInventory

from orchestrator.compiler.compiler import Compilation, PreparedPolicy
from orchestrator.engine.diff import diff_rulesets
from orchestrator.engine.plan import (
    ChangePlan,
    GuardSettings,
    ManagementAccess,
    Plan,
    attributed_removals,
    guard_findings,
    management_access,
    rule_hits,
    rule_log_names,
    summarize_flows,
)
from orchestrator.engine.project import Project
from orchestrator.engine.registry import available_drivers
from orchestrator.engine.reporting import Reporter, SilentReporter
from orchestrator.engine.retry import RetryPolicy, with_retries
from orchestrator.engine.runner import TaskCrashed, run_on_points
from orchestrator.engine.sessions import Sessions
from orchestrator.model.driver import AnnotatingDriver, NativeChange, Observed, RenderRequest, Snapshot, fingerprint
from orchestrator.model.errors import MicrosegError, PlanError
from orchestrator.model.rules import AddressSet, Ruleset
from orchestrator.store import Store

if TYPE_CHECKING:  # the transaction builds on the engine
    from orchestrator.engine.transaction import PointOutcome, Transaction

log = logging.getLogger(__name__)


class PointExecutor(Protocol):
    """Runs the per-point steps of a run elsewhere (``orchestrator.engine.distributed.CeleryExecutor``); the
    caller keeps the run: its record, guards, canary and batches, ``--on-failure``, windows and point locks."""

    def plan_points(self, engine: Engine, points: Sequence[str], digest: str,
                    on_result: Callable[[str, ChangePlan | MicrosegError], None] | None = None,
                    ) -> Mapping[str, ChangePlan | MicrosegError]: ...

    def fingerprints(self, engine: Engine, points: Sequence[str]) -> Mapping[str, str | MicrosegError]:
        """The fingerprint of each point's actual state (a plan's staleness check)."""
        ...

    def apply_points(self, tx: Transaction, points: Sequence[str]) -> Mapping[str, PointOutcome]:
        """Checkpoint → apply → verify each point of one batch of ``tx``."""
        ...

    def restore_points(self, tx: Transaction, points: Sequence[str]) -> Mapping[str, PointOutcome]:
        """Restore points ``tx`` changed from their stored checkpoints (rollback-all)."""
        ...

    def rollback_points(self, tx: Transaction, of_run: str, points: Sequence[str],
                        force: bool) -> Mapping[str, PointOutcome]:
        """``microseg rollback``: restore the checkpoints run ``of_run`` took, as run ``tx``."""
        ...


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """Knobs of one run (CLI flags map onto these)."""

    workers: int = 10
    timeout: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    guards: GuardSettings = field(default_factory=GuardSettings)
    lock_timeout: float = 30.0
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    executor: PointExecutor | None = None  # None: Nornir's threaded runner here; else e.g. Celery workers


@dataclass(frozen=True, slots=True)
class Actor:
    """Who runs this and why: recorded with every run and audit event."""

    name: str
    ticket: str | None = None
    origin_host: str = field(default_factory=socket.gethostname)


def empty_group_rules(compilation: Compilation, project: Project) -> dict[str, tuple[str, ...]]:
    """Policy rule name → the groups it names that resolved empty."""
    empty = {name for name, group in compilation.groups.items() if group.empty}
    out: dict[str, tuple[str, ...]] = {}
    for rule in project.loaded.policy.rules:
        hit = tuple(sorted(empty & {*rule.from_, *rule.to}))
        if hit:
            out[rule.name] = hit
    return out


def policy_digest(compilation: Compilation) -> str:
    """A digest of the intended state of every compiled point (changes when the policy's effect changes)."""
    digest = hashlib.sha256()
    for name, compiled in sorted(compilation.points.items()):
        digest.update(name.encode())
        digest.update(repr(compiled.ruleset.to_dict(with_provenance=False)).encode())
    return "sha256:" + digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Context:
    """Digests of what the current intent was computed from."""

    policy: str
    inventory: str


def context_of(project: Project) -> Context:
    """Digests of the policy and of the workloads (names, addresses, labels) a plan is computed from."""
    workloads = sorted((w.name, sorted(map(str, w.addresses)), sorted(w.labels.items()))
                       for w in project.inventory.workloads)
    return Context(fingerprint(project.loaded.policy.model_dump(mode="json")), fingerprint(workloads))


def intent_digest(plan: ChangePlan) -> str:
    return fingerprint(plan.intended.to_dict(with_provenance=False))


def point_record(plan: ChangePlan, context: Context) -> dict[str, Any]:
    """What the store keeps about a planned point, so that a later reconcile can classify its drift."""
    return {"summary": plan.summary(), "fingerprint": plan.fingerprint, "intent": intent_digest(plan),
            "policy": context.policy, "inventory": context.inventory,
            "unmanaged": sorted(f"{u.kind} {u.name}" for u in plan.unmanaged)}


class Engine:
    """One run's context; use as a context manager so driver sessions are closed."""

    def __init__(self, project: Project, nornir: NornirInventory, store: Store, actor: Actor,
                 options: EngineOptions | None = None, reporter: Reporter | None = None,
                 driver_overrides: Mapping[str, type[Any]] | None = None, *, owns_store: bool = False) -> None:
        self.project = project
        self.nornir = nornir
        self.store = store
        self.actor = actor
        self.options = options or EngineOptions()
        self.reporter = reporter or SilentReporter()
        self.sessions = Sessions(project.inventory, nornir, self.options.timeout, driver_overrides,
                                 members=self._members, retry=self.options.retry)
        self._compilation: Compilation | None = None
        self._prepared: PreparedPolicy | None = None
        self._digest: str | None = None
        self._owns_store = owns_store
        self.not_managed: dict[str, str] = {}
        self._context: Context | None = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sessions.close()
        if self._owns_store:
            self.store.close()

    # ------------------------------------------------------------------ helpers shared with the transaction

    def _members(self, point: str) -> AddressSet:
        target = self.compilation().points[point].target
        return target.scope if target.members is None else target.members

    def prepared(self) -> PreparedPolicy:
        """The policy resolved against the workloads (once per engine; the compilation is built from it)."""
        if self._prepared is None:
            self._prepared = self.project.prepare()
        return self._prepared

    def compilation(self) -> Compilation:
        if self._compilation is None:
            self._compilation = self.project.compile(prepared=self.prepared())
        return self._compilation

    def policy_digest(self) -> str:
        """The digest of the compilation (once per engine): what a saved plan and a worker are checked against."""
        if self._digest is None:
            self._digest = policy_digest(self.compilation())
        return self._digest

    def select(self, names: Iterable[str] | None) -> list[str]:
        """The points to work on: by default every point whose driver is installed (the others are noted in
        ``not_managed``); named points must exist and have their driver installed."""
        compiled = self.compilation().points
        installed = available_drivers()
        if names is None:
            self.not_managed = {n: f"driver {c.target.driver!r} is not installed" for n, c in compiled.items()
                                if c.target.driver not in installed}
            return sorted(n for n in compiled if n not in self.not_managed)
        chosen = list(dict.fromkeys(names))
        unknown = [n for n in chosen if n not in compiled]
        if unknown:
            raise PlanError(f"not an enforcement point of the inventory: {', '.join(unknown)}")
        missing = [f"{n} (driver {compiled[n].target.driver!r})" for n in chosen
                   if compiled[n].target.driver not in installed]
        if missing:
            raise PlanError(f"no driver installed for: {', '.join(missing)} "
                            f"(installed: {', '.join(sorted(installed)) or 'none'})")
        return chosen

    def call(self, point: str, what: str, fn: Any) -> Any:
        """Run a driver call with the retry policy, reporting retries."""
        def on_retry(attempt: int, exc: MicrosegError, wait: float) -> None:
            self.reporter.point(point, "retry", f"{what}: {exc.message} (attempt {attempt + 1} in {wait:.1f}s)")
        return with_retries(fn, self.options.retry, on_retry)

    def observe(self, point: str) -> tuple[Snapshot, Observed]:
        driver = self.sessions.driver(point)
        snapshot: Snapshot = self.call(point, "fetch", driver.fetch)
        return snapshot, driver.normalize(snapshot)

    def access(self, point: str) -> ManagementAccess | None:
        ep = self.project.inventory.point(point)
        if not ep.management:
            return None
        ports = ep.settings.get("management_ports", [22])
        # a switch is managed through its own address (in-band: an SVI behind the ACLs it enforces), not
        # through the subnets it protects: `management_targets` names those addresses
        # (an empty list: managed out-of-band, the point's rules never carry the management session)
        if "management_targets" in ep.settings:
            target = AddressSet.of(ep.settings["management_targets"] or [])
            if not target:
                return None
        else:
            target = self.compilation().points[point].target.scope
        return management_access(ep.management, target, [int(p) for p in ports])

    # ------------------------------------------------------------------ planning

    def plan_point(self, point: str) -> ChangePlan:
        """Fetch, normalize, diff, render and guard one point."""
        compiled = self.compilation().points[point]
        intended = compiled.ruleset
        snapshot, observed = self.observe(point)
        diff = diff_rulesets(observed.ruleset, intended)
        driver = self.sessions.driver(point)
        request = RenderRequest(point, intended, observed.ruleset, snapshot, diff.added, diff.removed)
        if not diff.empty:
            change = driver.render(request)
        elif isinstance(driver, AnnotatingDriver):  # rules in sync: are the remarks naming them too?
            change = driver.annotate(request)
        else:
            change = NativeChange(point, compiled.target.driver, "none", (), 0)
        empty_rules = empty_group_rules(self.compilation(), self.project)
        guarded = diff  # what the guards judge; the plan keeps what the device says
        if diff.removed and empty_rules and not self.options.guards.allow_empty_groups:  # whose entries go?
            guarded = attributed_removals(diff, self._applied_intended(point))
        findings = guard_findings(guarded, observed.ruleset, intended, settings=self.options.guards,
                                  empty_rules=empty_rules, access=self.access(point))
        return ChangePlan(
            point=point, driver=compiled.target.driver, fingerprint=snapshot.fingerprint(), intended=intended,
            diff=diff, change=change, flows=summarize_flows(observed.ruleset, intended),
            unmanaged=observed.unmanaged, guards=findings, hits=rule_hits(observed, intended),
            hits_epoch=observed.counter_epoch, log_names=rule_log_names(observed, intended),
            log_observers=dict(observed.log_observers),
        )

    def _applied_intended(self, point: str) -> list[Ruleset]:
        """The rulesets microseg last put on the point (``Store.applied_intended``); a stored one this release
        cannot read (an older release's) is left out, with a warning."""
        out = []
        for data in self.store.applied_intended(point):
            rules = Ruleset.from_stored(data)
            if rules is None:
                log.warning("%s: a stored plan's intended rules cannot be read (left out)", point)
            else:
                out.append(rules)
        return out

    def plan(self, names: Iterable[str] | None = None) -> Plan:
        """A change plan for every selected point (fetch failures are listed, not raised)."""
        selected = self.select(names)
        self.reporter.phase("planning", len(selected))

        def report(point: str, answer: ChangePlan | MicrosegError) -> None:
            if isinstance(answer, MicrosegError):
                self.reporter.point(point, "failed", answer.message)
            else:
                status = "refused" if answer.refused else ("in_sync" if answer.empty else "planned")
                self.reporter.point(point, status, answer.summary())

        def work(point: str) -> ChangePlan | MicrosegError:
            answer: ChangePlan | MicrosegError
            try:
                answer = self.plan_point(point)
            except MicrosegError as exc:
                answer = exc
            report(point, answer)
            return answer

        if self.options.executor is not None:
            results: Mapping[str, object] = self.options.executor.plan_points(
                self, selected, self.policy_digest(), report)
        else:
            results = run_on_points(self.nornir, selected, work, self.options.workers)
        self.reporter.done()
        points: dict[str, ChangePlan] = {}
        failures: dict[str, str] = {}
        for name, result in results.items():
            if isinstance(result, ChangePlan):
                points[name] = result
            else:
                failures[name] = result.message if isinstance(result, MicrosegError) else str(result)
        return Plan(points, failures, datetime.now(UTC).isoformat(timespec="seconds"),
                    self.policy_digest(), dict(self.not_managed))

    def context(self) -> Context:
        if self._context is None:
            self._context = context_of(self.project)
        return self._context

    def record_plan(self, kind: str, plan: Plan, options: Mapping[str, Any],
                    details: Mapping[str, Mapping[str, Any]] | None = None) -> str:
        """Store ``plan`` as a run of ``kind`` (plan / drift / reconcile); returns the run id."""
        run_id = self.store.create_run(kind, actor=self.actor.name, ticket=self.actor.ticket,
                                       origin_host=self.actor.origin_host, options=dict(options))
        self.store.record_plans(run_id, {name: point_plan.to_dict() for name, point_plan in plan.points.items()})
        for name, point_plan in plan.points.items():
            state = "in_sync" if point_plan.empty else ("planned" if kind == "plan" else "drift")
            detail = {**point_record(point_plan, self.context()), **(details or {}).get(name, {})}
            self.store.record_result(run_id, name, state, detail)
        for name, message in plan.failures.items():
            self.store.record_result(run_id, name, "failed", {"error": message})
        status = "failed" if plan.failures else ("drift" if plan.changes else "in_sync")
        self.store.finish_run(run_id, status, plan_summary(plan))
        return run_id


def plan_summary(plan: Plan) -> dict[str, Any]:
    return {
        "points": len(plan.points),
        "changes": [p.point for p in plan.changes],
        "refused": [p.point for p in plan.refused],
        "failures": dict(plan.failures),
    }


def crashed(result: object) -> str | None:
    return str(result) if isinstance(result, TaskCrashed) else None


def names_of(plans: Sequence[ChangePlan]) -> list[str]:
    return [p.point for p in plans]
