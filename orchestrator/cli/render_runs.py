"""Human output of plans, runs and history (rich); the JSON forms come from the values' ``to_dict``."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from rich.markup import escape
from rich.table import Table

from orchestrator.cli.render import console
from orchestrator.compiler.flows import SmallestGroup
from orchestrator.engine.adopt import Adoption
from orchestrator.engine.plan import ChangePlan, Plan
from orchestrator.engine.reconcile import Reconciliation
from orchestrator.engine.transaction import RunResult
from orchestrator.model.rules import ANY_PORTS, AddressSet, Rule
from orchestrator.packetspace.flowset import FlowSet


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``1 point``, ``2 points``, ``0 points``."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"


STATE_STYLE = {"new": "green", "restored": "yellow", "unchanged": "dim", "skipped": "dim", "unknown": "bold red",
               "in_sync": "green", "drift": "yellow", "planned": "cyan", "failed": "red"}


def _rule_line(sign: str, rule: Rule) -> str:
    """One rule of a plan; its origin as ``compile`` shows it (policy rules, and a note: return path,
    carve-out)."""
    parts = [", ".join(rule.provenance.rules)] if rule.provenance.rules else []
    parts += [rule.provenance.note] if rule.provenance.note else []
    origin = f"  ({'; '.join(parts)})" if parts else ""
    log = " log" if rule.log else ""
    return (f"{sign} {rule.direction.value:<7} {rule.action.value:<6} {rule.service_text():<14} "
            f"{rule.src.abbreviated()} → {rule.dst.abbreviated()}{log}{origin}")


def _lab_refused(message: str) -> bool:
    """A refused connection to a loopback address (where ``microseg lab up`` serves hosts, switches and clouds),
    or a file the lab writes that is not there."""
    refused = "connection refused" in message and re.search(r"to 127\.\d+\.\d+\.\d+:", message) is not None
    return refused or ("no such file" in message and ".microseg/lab/" in message)


def flow_summary(regions: Sequence[Rule], groups: Mapping[str, AddressSet], limit: int = 5) -> list[str]:
    """Flow regions the way an engineer reads them: per pair of policy groups (the smallest group holding
    each end's example address; the addresses when none does) and service, with one example flow each.

    ``web-prod → db-prod tcp/5432 (ingress, 3 regions), e.g. 10.20.1.11:any → 10.20.3.11:5432/tcp``
    """
    named = SmallestGroup(groups)
    pairs: dict[tuple[str, str, str, str], list[str]] = {}
    for region in regions:
        flow = FlowSet.from_rule(region).sample()
        if flow is None:
            continue
        src = named(flow.family, flow.src) or region.src.abbreviated()
        dst = named(flow.family, flow.dst) or region.dst.abbreviated()
        example = flow.describe(any_src_port=region.src_ports == ANY_PORTS, any_dst_port=region.dst_ports == ANY_PORTS)
        service = region.service_text()
        if service.isdigit():  # one region per unnamed protocol number: read together, as engineers say it
            service = "other IP protocols"
        pairs.setdefault((src, dst, service, region.direction.value), []).append(example)
    ranked = sorted(pairs.items(), key=lambda item: (-len(item[1]), item[0]))
    lines = [f"{src} → {dst} {service} ({direction}{'' if len(examples) == 1 else f', {len(examples)} regions'}), "
             f"e.g. {examples[0]}" for (src, dst, service, direction), examples in ranked[:limit]]
    if len(ranked) > limit:
        lines.append(f"… {len(ranked) - limit} more group pairs (use --json for every region)")
    return lines


def print_point_plan(plan: ChangePlan, *, native: bool, limit: int = 40,
                     groups: Mapping[str, AddressSet] | None = None) -> None:
    out = console()
    style = "green" if plan.empty else ("red" if plan.refused else "yellow")
    out.print(f"[bold]{plan.point}[/] [dim]({plan.driver})[/]  [{style}]{plan.summary()}[/]", highlight=False)
    lines = [_rule_line("+", r) for r in plan.diff.added] + [_rule_line("-", r) for r in plan.diff.removed]
    lines += [_rule_line("~", r) for r in plan.diff.moved]
    for line in lines[:limit]:
        colour = {"+": "green", "-": "red", "~": "cyan"}[line[0]]
        out.print(f"  [{colour}]{escape(line)}[/]", highlight=False, soft_wrap=True)
    if len(lines) > limit:
        out.print(f"  … {len(lines) - limit} more (use --json for all)", highlight=False)
    for title, rules, total in (("newly allowed", plan.flows.newly_allowed, plan.flows.allowed_total),
                                ("newly denied", plan.flows.newly_denied, plan.flows.denied_total)):
        if total:
            out.print(f"  [dim]{title}:[/] {count(total, 'flow region')}", highlight=False)
            for line in flow_summary(rules, groups or {}):
                out.print(f"    {escape(line)}", highlight=False, soft_wrap=True)
    for item in plan.unmanaged:
        out.print(f"  [dim]unmanaged {item.kind} {item.name}: {item.detail or 'left untouched'}[/]", highlight=False)
    for guard in plan.guards:
        out.print(f"  [bold red]refused ({guard.guard}):[/] {guard.message} — override with {guard.override}",
                  highlight=False, soft_wrap=True)
    if native and not plan.change.empty:
        out.print(f"  [dim]native change ({plan.change.format}, {len(plan.change.commands)} lines):[/]")
        for command in plan.change.commands:
            out.print(f"    {command}", highlight=False, markup=False, soft_wrap=True)


def print_plan(plan: Plan, *, native: bool = False, show_in_sync: bool = False, limit: int = 40,
               groups: Mapping[str, AddressSet] | None = None) -> None:
    """``groups``: the policy's groups by name, to name the ends of the flows a change allows or denies."""
    out = console()
    for _, point_plan in sorted(plan.points.items()):
        if point_plan.empty and not show_in_sync:
            continue
        print_point_plan(point_plan, native=native, limit=limit, groups=groups)
    for name, message in sorted(plan.failures.items()):
        hint = " [dim](a lab address: is the lab up? `microseg lab up`)[/]" if _lab_refused(message) else ""
        out.print(f"[bold]{name}[/]  [red]could not be planned:[/] {escape(message)}{hint}", highlight=False,
                  soft_wrap=True)
    if plan.not_managed:
        names = ", ".join(sorted(plan.not_managed))
        out.print(f"[dim]not managed (no driver installed yet): {names}[/]", highlight=False, soft_wrap=True)
    in_sync = sum(1 for p in plan.points.values() if p.empty)
    out.print(f"\nPlan: {count(len(plan.changes), 'point')} to change, {in_sync} in sync, "
              f"{len(plan.refused)} refused by guards, {len(plan.failures)} failed.", highlight=False)


def print_run(result: RunResult) -> None:
    out = console()
    for name, outcome in sorted(result.outcomes.items()):
        style = STATE_STYLE.get(outcome.state.value, "white")
        detail = outcome.rollback_error or outcome.error or ""
        out.print(f"  [{style}]{outcome.state.value:<9}[/] {name}  [dim]{detail}[/]", highlight=False, soft_wrap=True)
    status_style = {"ok": "green", "partial": "yellow", "failed": "red", "unknown": "bold red"}[result.status]
    counts = ", ".join(f"{len(v)} {k}" for k, v in sorted(result.by_state().items()))
    out.print(f"\nRun {result.run_id}: [{status_style}]{result.status}[/] ({counts or 'nothing to do'})",
              highlight=False)
    if result.status == "unknown":
        out.print("[bold red]Some points are in an UNKNOWN state: inspect them before anything else "
                  f"(microseg show {result.run_id}).[/]", highlight=False)


def print_history(runs: list[dict[str, Any]]) -> None:
    table = Table(show_edge=False)
    for column in ("run", "kind", "status", "actor", "ticket", "started", "points"):
        table.add_column(column, no_wrap=True)
    for run in runs:
        table.add_row(run["id"], run["kind"], run["status"] or "running", run["actor"], run.get("ticket") or "",
                      str(run["started_at"])[:19], str(sum((run.get("result_counts") or {}).values())))
    console().print(table)


def print_run_record(record: dict[str, Any]) -> None:
    out = console()
    out.print(f"[bold]run {record['id']}[/]  {record['kind']}  status={record['status']}  actor={record['actor']}"
              f"  ticket={record.get('ticket') or '-'}  from={record.get('origin_host')}", highlight=False)
    out.print(f"started {record['started_at']}  finished {record.get('finished_at') or '-'}", highlight=False)
    results = record.get("results") or {}
    items = results.items() if isinstance(results, dict) else ((r["point"], r) for r in results)
    for name, result in sorted(items):
        style = STATE_STYLE.get(result["state"], "white")
        detail = result.get("detail") or {}
        why = detail.get("rollback_error") or detail.get("error") or detail.get("summary") or ""
        out.print(f"  [{style}]{result['state']:<9}[/] {name}  [dim]{why}[/]", highlight=False, soft_wrap=True)
    for event in record.get("audit", []) or record.get("events", []):
        out.print(f"  [dim]{event['at'] if 'at' in event else event.get('created_at')} {event['event']} "
                  f"{event.get('point') or ''} by {event['actor']}[/]", highlight=False, soft_wrap=True)


def print_reconciliation(result: Reconciliation) -> None:
    out = console()
    for name, finding in sorted(result.findings.items()):
        if finding.in_sync and not finding.kinds:
            continue
        kinds = ", ".join(k.value for k in finding.kinds) or "drift"
        style = "green" if finding.in_sync else "yellow"
        refused = f" — refused by {', '.join(finding.refused)}" if finding.refused else ""
        since = f" (last verified by run {finding.baseline_run})" if finding.baseline_run else ""
        out.print(f"  [{style}]{kinds:<28}[/] {name}: {finding.summary}{refused}[dim]{since}[/]", highlight=False,
                  soft_wrap=True)
    for name, message in sorted(result.plan.failures.items()):
        out.print(f"  [red]{'failed':<28}[/] {name}: {message}", highlight=False, soft_wrap=True)
    if result.repair is not None:
        print_run(result.repair)
    in_sync = len(result.findings) - len(result.drifted)
    out.print(f"\nReconcile {result.run_id}: {in_sync} in sync, {len(result.drifted)} drifted, "
              f"{len(result.plan.failures)} failed.", highlight=False)


def print_adoptions(adoptions: list[Adoption], written: dict[str, str]) -> None:
    out = console()
    for adoption in adoptions:
        verdict = ("[green]equivalent[/] to the existing enforcement (proved by packet space)" if adoption.equivalent
                   else "[red]not proven equivalent[/]: " + (
                       f"{len(adoption.unreadable)} entries could not be read" if adoption.unreadable
                       else "it decides some flows differently"))
        entries = "entry" if adoption.adopted == 1 else "entries"
        out.print(f"[bold]{escape(adoption.point)}[/]: {adoption.adopted} {entries} adopted, "
                  f"{len(adoption.skipped)} skipped — proposal {verdict}", highlight=False, soft_wrap=True)
        for line in adoption.unreadable:
            out.print(f"  [red]cannot read[/]: {escape(line)}", highlight=False, soft_wrap=True)
        for line in adoption.skipped:
            out.print(f"  skipped: {escape(line)}", highlight=False, soft_wrap=True)
        for difference in adoption.differences:
            out.print(f"  {difference.direction.value} {escape(difference.flow)}: existing "
                      f"{difference.existing.value} ({escape(difference.decided_by)}), proposal "
                      f"{difference.proposed.value}", highlight=False, soft_wrap=True)
        if adoption.point in written:
            out.print(f"  written: {escape(written[adoption.point])}", highlight=False, soft_wrap=True)
    if not written:
        out.print("\nNothing written: add --output FILE (or DIR) to save the proposals for review.", highlight=False)
