"""``microseg report``: write the audit report (:mod:`orchestrator.engine.auditreport`) — one self-contained HTML
file with the segmentation matrix and what a run did, point by point."""

from __future__ import annotations

from pathlib import Path

import click

from orchestrator.cli.common import Settings, emit_json, handles_errors, json_option
from orchestrator.cli.render import console
from orchestrator.cli.runs import engine_for
from orchestrator.engine.auditreport import render_html, report_data
from orchestrator.model.errors import PlanError


@click.command()
@json_option
@click.option("--run", "run_id", metavar="RUN_ID", help="The run to report (default: the latest one stored).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=Path("report.html"),
              show_default=True, help="Where to write the HTML file.")
@click.option("--flow-store", type=click.Path(path_type=Path), default=None,
              help="Observed flows for the matrix (default: .microseg/flows.duckdb when it exists).")
@click.pass_obj
@handles_errors
def report(settings: Settings, as_json: bool, run_id: str | None, output: Path, flow_store: Path | None) -> None:
    """Write one self-contained HTML report (no server, no external assets): the segmentation matrix — policy
    groups × groups, allowed / denied / observed — and, for a run, per point what changed, the native change,
    the end state, the guards and the audit trail."""
    from orchestrator.flows.discover import conversations  # noqa: PLC0415
    from orchestrator.flows.store import FlowStore, default_path  # noqa: PLC0415

    path = flow_store or default_path()
    found = None
    if path.exists():
        with FlowStore(path) as flows:
            found = conversations(flows)
    elif flow_store is not None:
        raise PlanError(f"no flow store at {flow_store}")
    with engine_for(settings, as_json=as_json) as engine:
        data = report_data(engine, run_id, found)
    output.write_text(render_html(data), encoding="utf-8")
    if as_json:
        emit_json({**data, "output": str(output)})
        return
    run = data["run"]["id"] if data["run"] else "no run"
    console().print(f"wrote {output} ({len(data['groups'])} groups, {run})", highlight=False)


def register(main: click.Group) -> None:
    main.add_command(report)
