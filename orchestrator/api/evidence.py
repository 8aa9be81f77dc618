"""Evidence of a change request, as data and as a ticket note: plan summary, run result, verification, rollback."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.engine.plan import ChangePlan, Plan
from orchestrator.engine.transaction import RunResult
from orchestrator.model.driver import fingerprint
from orchestrator.model.rules import Rule

EXAMPLES = 10


def flow_text(rule: Rule) -> str:
    """``ingress tcp/8443 10.30.1.11 → 10.20.2.11``: a flow region, readable in a ticket."""
    return f"{rule.direction.value} {rule.service_text()} {rule.src.abbreviated()} → {rule.dst.abbreviated()}"


def point_summary(plan: ChangePlan) -> dict[str, Any]:
    """What changes on one point: rule diff, flows newly allowed / denied, native change size, guards."""
    return {
        "driver": plan.driver,
        "summary": plan.summary(),
        "rules_added": len(plan.diff.added),
        "rules_removed": len(plan.diff.removed),
        "native_change": {"format": plan.change.format, "lines": len(plan.change.commands),
                          "mutating_calls": plan.change.mutating_calls if plan.change.commands else 0},
        "newly_allowed": [flow_text(r) for r in plan.flows.newly_allowed[:EXAMPLES]],
        "newly_denied": [flow_text(r) for r in plan.flows.newly_denied[:EXAMPLES]],
        "allowed_total": plan.flows.allowed_total,
        "denied_total": plan.flows.denied_total,
        "guards": [g.to_dict() for g in plan.guards],
    }


def plan_summary(plan: Plan, not_managed: Mapping[str, str], run_id: str | None) -> dict[str, Any]:
    """The plan of a change request as the API and the ticket show it."""
    return {
        "run_id": run_id,
        "points": {p.point: point_summary(p) for p in plan.changes},
        "in_sync": sorted(n for n, p in plan.points.items() if p.empty),
        "failures": dict(sorted(plan.failures.items())),
        "not_managed": dict(sorted(not_managed.items())),
    }


def flows_digest(summary: Mapping[str, Any]) -> str:
    """A digest of the flows a plan opens and closes per point: what the approver saw."""
    points = summary.get("points", {})
    return fingerprint({name: [p.get("newly_allowed"), p.get("allowed_total"), p.get("newly_denied"),
                               p.get("denied_total")] for name, p in sorted(points.items())})


def run_evidence(result: RunResult) -> dict[str, Any]:
    """The outcome of an apply: run id, status, each point's end state; which points were rolled back."""
    return {
        "run_id": result.run_id,
        "status": result.status,
        "states": result.by_state(),
        "errors": {n: o.error or o.rollback_error for n, o in sorted(result.outcomes.items())
                   if o.error or o.rollback_error},
        "rolled_back": sorted(n for n, o in result.outcomes.items() if o.state.value == "restored"),
    }


def verification(plan: Plan) -> dict[str, Any]:
    """A re-plan after apply: every point must be in sync with the intent (re-fetched from the point)."""
    return {"in_sync": sorted(n for n, p in plan.points.items() if p.empty),
            "differs": {p.point: p.summary() for p in plan.changes},
            "failures": dict(sorted(plan.failures.items()))}


def _plan_lines(plan: Mapping[str, Any]) -> list[str]:
    lines = []
    for name, point in sorted(plan.get("points", {}).items()):
        native = point.get("native_change", {})
        lines.append(f"- {name}: {point.get('summary')} ({native.get('format')}, {native.get('lines')} lines)")
        lines += [f"    newly allowed: {flow}" for flow in point.get("newly_allowed", ())]
        lines += [f"    newly denied: {flow}" for flow in point.get("newly_denied", ())]
        lines += [f"    REFUSED ({g['guard']}): {g['message']}" for g in point.get("guards", ())]
    lines += [f"- {name}: could not be planned: {why}" for name, why in sorted(plan.get("failures", {}).items())]
    return lines


def note_text(event: str, ticket: str, change_id: str | None, detail: Mapping[str, Any],
              link: str | None) -> str:
    """The evidence as a plain-text ticket note (ServiceNow work note, Jira comment)."""
    title = f"[microseg] change request {change_id or '(not created)'} for {ticket}: {event}"
    lines = [title]
    if detail.get("message"):
        lines.append(str(detail["message"]))
    if detail.get("plan"):
        lines += ["Plan:", *_plan_lines(detail["plan"])]
    result = detail.get("result")
    if result:
        lines.append(f"Result: run {result['run_id']} {result['status']}; "
                     + "; ".join(f"{state}: {', '.join(points)}" for state, points in sorted(result["states"].items())))
        lines += [f"  {name}: {error}" for name, error in sorted(result.get("errors", {}).items())]
        if result.get("rolled_back"):
            lines.append(f"Rollback: restored and verified {', '.join(result['rolled_back'])}")
    check = detail.get("verification")
    if check:
        lines.append(f"Verification (re-fetched): in sync {', '.join(check['in_sync']) or 'none'}"
                     + (f"; still differs: {check['differs']}" if check.get("differs") else ""))
    if link:
        lines += [f"Details: {link}", f"Report: {link}/report"]
    return "\n".join(lines)
