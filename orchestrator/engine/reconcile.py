"""Scheduled reconciliation: plan every point, classify its drift against the last known state, optionally repair.

Drift of a point is classified from what the store remembers about it (the
latest run that left it verified: its state fingerprint, the intent it was
given, the policy and inventory it was computed from, what was unmanaged):

* ``tampered`` — the owned scope changed outside microseg (a hotfix, a hand edit);
* ``unmanaged-appeared`` — something microseg does not own appeared beside it;
* ``policy-changed`` / ``inventory-changed`` — the intent moved (a policy edit, workloads that moved);
* ``annotations`` — the rules are in sync, the annotations naming them (NX-OS/EOS remarks) are not;
* ``no-baseline`` — microseg has no verified state of the point on record.

``repair`` applies the plan through the normal transaction and its safety
guards; a point a guard refuses is reported, never forced.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from orchestrator.engine.engine import Context, Engine, intent_digest
from orchestrator.engine.plan import ChangePlan, Plan
from orchestrator.engine.transaction import ApplyOptions, RunResult, Transaction
from orchestrator.store.records import PointResult

VERIFIED_STATES = ("new", "restored", "in_sync")


class DriftKind(StrEnum):
    TAMPERED = "tampered"
    UNMANAGED_APPEARED = "unmanaged-appeared"
    POLICY_CHANGED = "policy-changed"
    INVENTORY_CHANGED = "inventory-changed"
    NO_BASELINE = "no-baseline"
    ANNOTATIONS = "annotations"  # rules in sync, the remarks naming them are not (ChangePlan.annotations_only)


@dataclass(frozen=True, slots=True)
class Baseline:
    """The last verified state of a point: which run, its fingerprint and what it was computed from."""

    run_id: str
    fingerprint: str
    intent: str | None
    policy: str | None
    inventory: str | None
    unmanaged: tuple[str, ...]

    @classmethod
    def from_result(cls, run_id: str, result: PointResult) -> Baseline | None:
        detail = result.detail or {}
        state_fp = detail.get("fingerprint_after") or detail.get("fingerprint")
        verified = result.state in VERIFIED_STATES or (result.state == "unchanged" and not detail.get("error"))
        if not verified or not state_fp:
            return None
        return cls(run_id, str(state_fp), detail.get("intent"), detail.get("policy"), detail.get("inventory"),
                   tuple(detail.get("unmanaged") or ()))


@dataclass(frozen=True, slots=True)
class Finding:
    """One point's reconciliation result."""

    point: str
    in_sync: bool
    kinds: tuple[DriftKind, ...] = ()
    summary: str = ""
    baseline_run: str | None = None
    refused: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"point": self.point, "in_sync": self.in_sync, "kinds": [k.value for k in self.kinds],
                "summary": self.summary, "baseline_run": self.baseline_run, "refused": list(self.refused)}


def baseline(engine: Engine, point: str) -> Baseline | None:
    for run_id, _, result in engine.store.point_history(point, limit=100):
        found = Baseline.from_result(run_id, result)
        if found is not None:
            return found
    return None


def classify(plan: ChangePlan, base: Baseline | None, context: Context) -> tuple[DriftKind, ...]:
    kinds: list[DriftKind] = []
    unmanaged_now = {f"{u.kind} {u.name}" for u in plan.unmanaged}
    if plan.annotations_only:
        kinds.append(DriftKind.ANNOTATIONS)
    if base is None:
        return (*kinds, DriftKind.NO_BASELINE) if not plan.empty else ()
    if plan.fingerprint != base.fingerprint:
        kinds.append(DriftKind.TAMPERED)
    if unmanaged_now - set(base.unmanaged):
        kinds.append(DriftKind.UNMANAGED_APPEARED)
    if not plan.empty and base.intent is not None and intent_digest(plan) != base.intent:
        if base.policy is not None and base.policy != context.policy:
            kinds.append(DriftKind.POLICY_CHANGED)
        if base.inventory is not None and base.inventory != context.inventory:
            kinds.append(DriftKind.INVENTORY_CHANGED)
    return tuple(kinds)


@dataclass
class Reconciliation:
    """A reconcile run: the plan, a finding per point, and (in repair mode) the apply that followed."""

    run_id: str
    plan: Plan
    findings: dict[str, Finding] = field(default_factory=dict)
    repair: RunResult | None = None

    @property
    def drifted(self) -> list[str]:
        return sorted(n for n, f in self.findings.items() if not f.in_sync)

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "drifted": self.drifted, "failures": dict(self.plan.failures),
                "findings": {n: f.to_dict() for n, f in sorted(self.findings.items())},
                "repair": self.repair.to_dict() if self.repair else None}


def reconcile(engine: Engine, names: Iterable[str] | None, *, repair: bool,
              options: Mapping[str, Any] | None = None) -> Reconciliation:
    """Plan, classify, record; in repair mode apply what no guard refuses and re-check it."""
    plan = engine.plan(names)
    context = engine.context()
    bases = {name: baseline(engine, name) for name in plan.points}
    findings: dict[str, Finding] = {}
    for name, point_plan in plan.points.items():
        base = bases[name]
        findings[name] = Finding(name, point_plan.empty, classify(point_plan, base, context),
                                 point_plan.summary(), base.run_id if base else None,
                                 tuple(g.guard for g in point_plan.guards))
    run_id = engine.record_plan("reconcile", plan, {"mode": "repair" if repair else "report", **(options or {})},
                                details={n: findings[n].to_dict() for n in plan.points})
    result = Reconciliation(run_id, plan, findings)
    if repair:
        fixable = {n: p for n, p in plan.points.items() if not p.refused}
        if any(not p.empty for p in fixable.values()):
            repair_plan = Plan(fixable, {}, plan.created_at, plan.policy_digest, dict(plan.not_managed))
            tx = Transaction(engine, repair_plan, ApplyOptions(), kind="apply")
            result.repair = tx.run({"reconcile_run": run_id, "mode": "repair"})
            for name, outcome in result.repair.outcomes.items():
                if outcome.state.value == "new":
                    findings[name] = Finding(name, True, findings[name].kinds, "repaired", findings[name].baseline_run)
    return result


def adoption(plan: Plan) -> dict[str, Any]:
    """A policy file (for review, never written into the policy silently) that would make the rules found on the
    points but not in the policy part of it: one group per address list, one rule per found rule."""
    groups: dict[str, dict[str, Any]] = {}
    rules: list[dict[str, Any]] = []
    for name, point_plan in sorted(plan.points.items()):
        for index, rule in enumerate(point_plan.diff.removed, start=1):
            stem = f"adopted-{name}-{index}"
            groups[f"{stem}-from"] = {"description": f"found on {name}", "cidrs": rule.src.to_list()}
            groups[f"{stem}-to"] = {"description": f"found on {name}", "cidrs": rule.dst.to_list()}
            rules.append({
                "name": stem, "from": f"{stem}-from", "to": f"{stem}-to", "services": [rule.service_text()],
                "action": "allow" if rule.action.value == "permit" else "deny", "log": rule.log,
                "description": f"adopted from {name} ({rule.direction.value}); review before merging",
            })
    return {"apiVersion": "microseg/v1", "description": "Rules found on enforcement points, proposed for adoption",
            "groups": groups, "rules": rules}
