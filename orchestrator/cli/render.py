"""Human output of the CLI: tables and diagnostics with rich (plain text when not a terminal)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from orchestrator.cli.style import Style
from orchestrator.compiler.compiler import Compilation
from orchestrator.compiler.flows import Decision, FlowAnswer
from orchestrator.model.errors import Diagnostic, Severity
from orchestrator.model.rules import Rule

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow"}


def console(*, stderr: bool = False) -> Console:
    """Long lines are not wrapped, so ``file:line:column`` stays greppable; when the output is not a terminal
    (a pipe, a file, a CI log) tables take the width their content needs, so a run id or an address is never
    cut or split over two lines."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 4096
    return Console(stderr=stderr, highlight=False, soft_wrap=True, no_color=Style.no_color or None, width=width)


def print_diagnostics(diagnostics: Iterable[Diagnostic], *, stderr: bool = False) -> None:
    out = console(stderr=stderr)
    for d in diagnostics:
        where = f"{d.location}: " if d.location else ""
        hint = f" [dim]({d.hint})[/]" if d.hint else ""
        out.print(f"{where}[{_STYLE[d.severity]}]{d.severity.value}[/]: {d.message}{hint} [dim]\\[{d.code}][/]")


def print_summary(summary: Mapping[str, Any]) -> None:
    status = "[green]valid[/]" if summary["ok"] else "[bold red]invalid[/]"
    console().print(
        f"{status}: {len(summary['files'])} policy files, {summary['groups']} groups, {summary['services']} services, "
        f"{summary['rules']} rules; {summary['points']} enforcement points, {summary['workloads']} workloads"
    )


def print_compilation_summary(summary: Mapping[str, Any]) -> None:
    """One line per point: semantics, rules per direction, emitted vs. naive; then the totals."""
    table = Table(title="compiled points", title_justify="left")
    numbers = ("ingress", "egress", "emitted", "naive", "vs naive")
    for column in ("point", "driver", "semantics", *numbers):
        table.add_column(column, justify="right" if column in numbers else "left")
    for name, point in summary["points"].items():
        stats = point["stats"]
        change = f"{100 * (stats['emitted'] / stats['naive'] - 1):+.0f}%" if stats["naive"] else "—"
        semantics = (f"{point['ordering']}, default {point['default_action']}, "
                     f"{'stateful' if point['stateful'] else 'stateless'}, {point['mode']}")
        table.add_row(name, point["driver"], semantics, str(point["rules"]["ingress"]), str(point["rules"]["egress"]),
                      str(stats["emitted"]), str(stats["naive"]), change)
    out = console()
    out.print(table)
    totals = summary["totals"]
    out.print(f"{totals['points']} points: {totals['emitted']} rules emitted "
              f"(naive source×destination×service rendering: {totals['naive']})", highlight=False)


def _rule_row(index: int, rule: Rule, provenance: bool) -> list[str]:
    row = [
        str(index),
        rule.direction.value,
        "[green]permit[/]" if rule.action.value == "permit" else "[red]deny[/]",
        rule.service_text(),
        str(rule.src),
        str(rule.dst),
        "log" if rule.log else "",
    ]
    if provenance:
        note = f" ({rule.provenance.note})" if rule.provenance.note else ""
        row.append(",".join(rule.provenance.rules) + note)
    return row


def print_compilation(compilation: Compilation, *, provenance: bool = True) -> None:
    out = console()
    total_naive = total_emitted = 0
    for name, point in sorted(compilation.points.items()):
        rs = point.ruleset
        title = (
            f"{name}  [dim]driver={point.target.driver} ordering={rs.ordering.value} default={rs.default_action.value}"
            f" mode={rs.mode.value} stateful={str(rs.stateful).lower()}[/]"
        )
        table = Table(title=title, title_justify="left", show_lines=False, expand=False)
        for column in ("#", "dir", "action", "service", "source", "destination", "log"):
            table.add_column(column, overflow="fold")
        if provenance:
            table.add_column("from policy rule", overflow="fold")
        for i, rule in enumerate(rs.rules, 1):
            table.add_row(*_rule_row(i, rule, provenance))
        out.print(table)
        s = point.stats
        out.print(f"  [dim]{s.emitted} rules emitted ({s.candidates} before optimization, {s.naive} naive)[/]\n")
        total_naive += s.naive
        total_emitted += s.emitted
    saved = 100 * (1 - total_emitted / total_naive) if total_naive else 0.0
    out.print(
        f"{len(compilation.points)} points, {total_emitted} rules emitted; a naive source×destination×service "
        f"rendering needs {total_naive} ({saved:.0f}% fewer)"
    )


def _decision_text(d: Decision, *, numbered: bool = True) -> str:
    """Rich markup: the example flow, rule names and notes are escaped (``[fd00::1]:443`` is not a tag)."""
    action = "[green]permit[/]" if d.action.value == "permit" else "[red]deny[/]"
    example = escape(str(d.example))
    if d.rule is None:
        return f"{action} by the default action (e.g. {example})"
    names = escape(",".join(d.rule.provenance.rules) or "?")
    if not numbered:
        return f"{action} by policy rule {names} (e.g. {example})"
    note = escape(f", {d.rule.provenance.note}") if d.rule.provenance.note else ""
    return f"{action} by rule #{(d.index or 0) + 1} [dim](policy rule {names}{note})[/] (e.g. {example})"


def print_flow_answer(source: str, destination: str, services: Sequence[str], answer: FlowAnswer) -> None:
    out = console()
    colour = {"allowed": "green", "denied": "red", "partial": "yellow", "unenforced": "yellow"}[answer.verdict.value]
    out.print(f"{escape(source)} → {escape(destination)} over {escape(', '.join(services))}: "
              f"[bold {colour}]{answer.verdict.value}[/]")
    out.print("  policy:")
    for d in answer.policy_decisions:
        out.print(f"    {_decision_text(d, numbered=False)}")
    for p in answer.points:
        out.print(f"  {p.point} ({p.direction.value}): {p.verdict.value}")
        for d in p.decisions:
            out.print(f"    {_decision_text(d)}")
    if not answer.points:
        out.print("  no enforcement point protects either end of this traffic")
