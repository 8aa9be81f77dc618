"""``microseg validate|compile|check-flow|lint|schema``: the commands that read the policy and compile it.

Every command takes ``--json`` for machine-readable output on stdout.  Errors
in user input never show a traceback: they print what is wrong and where
(``file:line:column``) and exit 1.

Exit codes: 0 success; 1 invalid input or errors found; 2 check-flow: the
flow is not (fully) allowed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from orchestrator.cli.common import Settings, emit_json, handles_errors, json_option
from orchestrator.cli.render import (
    console,
    print_compilation,
    print_compilation_summary,
    print_diagnostics,
    print_flow_answer,
    print_summary,
)
from orchestrator.compiler.flows import check_flow, parse_endpoint
from orchestrator.compiler.lint import lint_policy
from orchestrator.model.errors import Diagnostic, Severity
from orchestrator.model.rules import AddressSet
from orchestrator.policy.schema import policy_json_schema


@click.command()
@json_option
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
@click.option("--verbose", "-v", is_flag=True, help="Also list the hosts that are not enforcement points.")
@click.pass_obj
@handles_errors
def validate(settings: Settings, as_json: bool, strict: bool, verbose: bool) -> None:
    """Load and check the policy and the inventory, and compile every point.  Hosts of the Nornir inventory
    without data.microseg (on the host, its groups or the defaults) are not enforcement points."""
    project = settings.project()
    compilation = project.compile()
    diagnostics = [*project.diagnostics, *compilation.diagnostics]
    failed = any(d.severity is Severity.ERROR or strict for d in diagnostics)
    summary = {
        "ok": not failed,
        "files": list(project.loaded.files),
        "groups": len(project.loaded.policy.groups),
        "services": len(project.loaded.policy.services),
        "rules": len(project.loaded.policy.rules),
        "points": len(project.inventory.points),
        "not_points": list(project.inventory.not_points),
        "workloads": len(project.inventory.workloads),
        "diagnostics": [d.to_dict() for d in diagnostics],
    }
    if as_json:
        emit_json(summary)
    else:
        print_diagnostics(diagnostics)
        print_summary(summary)
        others = project.inventory.not_points
        if others and verbose:
            console().print(f"not enforcement points (no data.microseg): {', '.join(others)}", highlight=False)
        elif others:
            console().print(f"{len(others)} hosts without data.microseg are not enforcement points (-v lists them)",
                            highlight=False)
    sys.exit(1 if failed else 0)


@click.command(name="compile")
@json_option
@click.option("--target", "-t", "targets", multiple=True, metavar="NAME", help="Only this point (repeatable).")
@click.option("--no-provenance", is_flag=True, help="Leave out which policy rules produced each rule.")
@click.option("--summary", is_flag=True,
              help="Per point only semantics, rules per direction and sizes (no rules): for review of big estates.")
@click.option("--native", "native_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also write DIR/POINT.txt: what each point's driver would send to a point where microseg owns "
                   "nothing yet (switches, nftables; a cloud point needs its account: plan --native).")
@click.pass_obj
@handles_errors
def compile_command(settings: Settings, as_json: bool, targets: tuple[str, ...], no_provenance: bool,
                    summary: bool, native_dir: Path | None) -> None:
    """Show the intended ruleset of every enforcement point."""
    project = settings.project()
    compilation = project.compile(targets or None)
    if native_dir is not None:
        _write_native(project, compilation, native_dir, quiet=as_json)
    if summary:
        if as_json:
            emit_json(compilation.summary())
        else:
            print_diagnostics(compilation.diagnostics)
            print_compilation_summary(compilation.summary())
    elif as_json:
        emit_json(compilation.to_dict(with_provenance=not no_provenance))
    else:
        print_diagnostics(compilation.diagnostics)
        print_compilation(compilation, provenance=not no_provenance)


def _write_native(project: Any, compilation: Any, directory: Path, *, quiet: bool) -> None:
    from orchestrator.engine.native import fresh_change  # noqa: PLC0415  (drivers load with --native only)

    directory.mkdir(parents=True, exist_ok=True)
    written, offline = [], []
    for name, compiled in sorted(compilation.points.items()):
        change = fresh_change(project, compiled)
        if change is None:
            offline.append(name)
            continue
        (directory / f"{name}.txt").write_text(change.text() + "\n", encoding="utf-8")
        written.append(name)
    if not quiet:
        console(stderr=True).print(f"native text of {len(written)} points in {directory}/"
                                   + (f"; needs its account (`microseg plan --native -t …`): {', '.join(offline)}"
                                      if offline else ""), highlight=False)


@click.command(name="check-flow")
@json_option
@click.option("--from", "source", required=True, metavar="ADDR|GROUP|WORKLOAD",
              help="Source address, CIDR, group or workload name.")
@click.option("--to", "destination", required=True, metavar="ADDR|GROUP|WORKLOAD",
              help="Destination address, CIDR, group or workload name.")
@click.option("--service", "-s", "services", multiple=True, required=True, metavar="SERVICE",
              help="tcp/5432, udp/53, icmp/8, any, or a service name (repeatable).")
@click.pass_obj
@handles_errors
def check_flow_command(settings: Settings, as_json: bool, source: str, destination: str,
                       services: tuple[str, ...]) -> None:
    """Is this traffic allowed, and which rule of which point decides? Exit 0 allowed, 2 not."""
    project = settings.project()
    prepared = project.prepare()
    compilation = project.compile(prepared=prepared)
    workloads = {w.name: AddressSet.of(str(a) for a in w.addresses) for w in project.inventory.workloads}
    src = parse_endpoint(source, compilation, workloads)
    dst = parse_endpoint(destination, compilation, workloads)
    answer = check_flow(compilation, project.loaded.policy, prepared.rules, src, dst, services)
    if as_json:
        emit_json({"from": source, "to": destination, "services": list(services), **answer.to_dict()})
    else:
        print_flow_answer(source, destination, services, answer)
    sys.exit(0 if answer.verdict.value == "allowed" else 2)


@click.command()
@json_option
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
@click.option("--flow-store", "flow_store", type=click.Path(path_type=Path), default=None,
              help="Observed flows to judge rules by (default: .microseg/flows.duckdb when it exists): adds "
                   "unused-rule and over-broad-rule findings.")
@click.option("--hits-since", metavar="AGE|DATE", default=None,
              help="Judge allow rules by the points' own hit counters stored since then (default: every sample "
                   "the store holds, when it exists): adds unhit-rule findings.")
@click.pass_obj
@handles_errors
def lint(settings: Settings, as_json: bool, strict: bool, flow_store: Path | None, hits_since: str | None) -> None:
    """Shadowed, overly broad, unused, expired and soon-expiring rules; with observed flows, rules no flow used
    and rules used for a sliver of what they allow; with stored hit counters, allow rules no packet matched.
    Exit 1 on errors."""
    project = settings.project()
    prepared = project.prepare()
    findings: list[Diagnostic] = lint_policy(prepared, project.loaded.sources)
    from orchestrator.cli.flows import logged_use, unhit_rules  # noqa: PLC0415  (the store only when it exists)
    from orchestrator.flows.store import default_path  # noqa: PLC0415  (no database driver loaded by this)

    store = flow_store or default_path()
    logged = logged_use(settings, flow_store, hits_since)
    findings += unhit_rules(settings, prepared, project.loaded.sources, hits_since, logged)[0]
    if flow_store is not None or store.exists():
        from orchestrator.cli.flows import observed_conversations  # noqa: PLC0415  (duckdb only with flow data)
        from orchestrator.flows.simulate import estate_of, simulate  # noqa: PLC0415

        found = observed_conversations(flow_store)
        if found:
            compilation = project.compile(prepared=prepared)
            findings += simulate(found, compilation, prepared, estate_of(project.inventory.workloads)
                                 ).used_by(logged).findings()
    failed = any(d.severity is Severity.ERROR or strict for d in findings)
    if as_json:
        emit_json({"ok": not failed, "findings": [d.to_dict() for d in findings]})
    else:
        print_diagnostics(findings)
        errors = sum(d.severity is Severity.ERROR for d in findings)
        console().print(f"lint: {errors} errors, {len(findings) - errors} warnings", highlight=False)
    sys.exit(1 if failed else 0)


@click.command()
@json_option
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write to this file instead of stdout.")
def schema(as_json: bool, output: Path | None) -> None:
    """Write the JSON Schema of a policy file (for editors: yaml-language-server).  The schema is JSON
    either way; with --output, --json reports where it went."""
    text = json.dumps(policy_json_schema(), indent=2, sort_keys=True)
    if output:
        output.write_text(text + "\n", encoding="utf-8")
        if as_json:
            emit_json({"ok": True, "written": str(output)})
        else:
            click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text)


EXIT_NOT_CARRIED = 2


@click.group(name="import")
def import_group() -> None:
    """Convert another tool's policy into microseg policy files for review."""


@import_group.command(name="aerleon")
@json_option
@click.argument("policy_file", metavar="POLICY.pol|.yaml", type=click.Path(path_type=Path))
@click.option("--defs", "definitions", required=True, type=click.Path(path_type=Path),
              help="Aerleon/Capirca naming definitions directory (NETWORK and SERVICES files).")
@click.option("--base-dir", type=click.Path(path_type=Path),
              help="Where #include paths start (default: the policies directory above pol/, else the file's).")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=Path("imported"), show_default=True,
              help="Directory to write one policy directory per filter into (OUT/FILTER/policy.yaml).")
@handles_errors
def import_aerleon_command(as_json: bool, policy_file: Path, definitions: Path, base_dir: Path | None,
                           output: Path) -> None:
    """An Aerleon/Capirca policy as microseg policies, one per filter (each filter is one ACL: put each policy
    on the points that filter applied to), with every term that was not carried over and why.

    Exit codes: 0 every term carried over (notes allowed), 2 some terms were left out (listed), 1 error."""
    import yaml  # noqa: PLC0415

    from orchestrator.policy.aerleon import import_aerleon  # noqa: PLC0415  (Aerleon loads with this command only)

    filters = import_aerleon(policy_file, definitions, base_dir=base_dir)
    written: list[dict[str, object]] = []
    for imported in filters:
        directory = output / imported.name
        directory.mkdir(parents=True, exist_ok=True)
        header = [f"# imported from {policy_file} (filter {imported.name}, targets {', '.join(imported.targets)})",
                  "# by `microseg import aerleon`: review it, then put it on the points this filter applied to",
                  *(f"# {f.describe()}" for f in imported.findings)]
        body = yaml.safe_dump(imported.document, sort_keys=False, allow_unicode=True, width=120)
        (directory / "policy.yaml").write_text("\n".join(header) + "\n" + body, encoding="utf-8")
        written.append({"filter": imported.name, "targets": list(imported.targets), "rules": imported.rules,
                        "path": str(directory / "policy.yaml"),
                        "findings": [f.to_dict() for f in imported.findings]})
    left_out = sum(1 for f in filters for finding in f.findings if not finding.carried)
    if as_json:
        emit_json({"ok": True, "filters": written, "left_out": left_out})
    else:
        for item, imported in zip(written, filters, strict=True):
            console().print(f"{imported.name}: {imported.rules} rules → {item['path']}", highlight=False)
            for finding in imported.findings:
                console().print(f"  {'note' if finding.carried else 'left out'}: {finding.term}: {finding.reason}",
                                highlight=False)
    sys.exit(EXIT_NOT_CARRIED if left_out else 0)


def register(main: click.Group) -> None:
    """Add the policy commands to the ``microseg`` group."""
    for command in (validate, compile_command, check_flow_command, lint, schema, import_group):
        main.add_command(command)
