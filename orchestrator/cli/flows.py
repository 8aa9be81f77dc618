"""``microseg collect|discover|simulate``: observed flows in, an application map and a proposed policy out, and
"what would this policy break?" before it is enforced."""

from __future__ import annotations

import difflib
import itertools
import re
import signal
import sys
import threading
import time
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import yaml
from rich.markup import escape
from rich.table import Table

from orchestrator.cli.common import Settings, emit_json, handles_errors, json_option
from orchestrator.cli.render import console, print_diagnostics
from orchestrator.cli.render_runs import count
from orchestrator.cli.runs import Selection, engine_for, selected_points, selection_options
from orchestrator.model.errors import Diagnostic, MicrosegError, PlanError, Severity

if TYPE_CHECKING:
    from orchestrator.engine.hits import FlowLogEvidence

EXIT_BREAKS = 2
DURATION = re.compile(r"(\d+)\s*([smhdw])")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _flow_store_option(func: Any) -> Any:
    return click.option("--flow-store", "flow_store", type=click.Path(path_type=Path), default=None,
                        help="The flow database (default: .microseg/flows.duckdb).")(func)


def _since_option(func: Any) -> Any:
    return click.option("--since", default=None, metavar="AGE|DATE",
                        help="Only flows seen in the last AGE (30m, 24h, 7d, 2w) or since DATE (2026-12-01).")(func)


def parse_since(text: str | None, now: float | None = None) -> int:
    """Epoch seconds of ``--since``: an age (``7d``) or a date/time (ISO 8601, UTC when no zone)."""
    if not text:
        return 0
    now = time.time() if now is None else now
    if match := DURATION.fullmatch(text.strip()):
        return int(now) - int(match.group(1)) * UNITS[match.group(2)]
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise click.BadParameter(f"{text!r}: use an age such as 24h or 7d, or a date such as 2026-12-01",
                                 param_hint="--since") from exc
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())


def _options(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r}: use KEY=VALUE", param_hint="--option")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def _print_report(report: Any) -> None:
    out = console()
    if report.already_imported:
        out.print(f"  {escape(report.location)}: already imported (--force imports it again)", highlight=False)
        return
    skipped = f", {report.skipped} skipped" if report.skipped else ""
    out.print(f"  {escape(report.location)}: {report.records:,} records{skipped} in {report.seconds:.1f} s",
              highlight=False)
    if report.problems:
        print_diagnostics(report.problems[:10], stderr=True)
        if len(report.problems) > 10:
            console(stderr=True).print(f"  … {len(report.problems) - 10} more (use --json for all)", highlight=False)


@click.command()
@json_option
@click.argument("source")
@click.argument("locations", nargs=-1)
@click.option("--option", "-o", "options", multiple=True, metavar="KEY=VALUE",
              help="An option of the flow source (e.g. endpoint_url=http://127.0.0.1:4566 for vpc from S3).")
@click.option("--force", is_flag=True, help="Import a file again although it was imported before.")
@click.option("--listen", metavar="ADDRESS:PORT", help="netflow: the UDP address to receive NetFlow/IPFIX on.")
@click.option("--duration", type=click.FloatRange(min=0.1), default=None,
              help="netflow: stop after this many seconds (default: until interrupted).")
@click.option("--exporter", "exporters", multiple=True, metavar="ADDRESS",
              help="netflow: accept datagrams only from this exporter (repeatable; default: any that reaches it).")
@selection_options
@_flow_store_option
@click.pass_obj
@handles_errors
def collect(settings: Settings, as_json: bool, source: str, locations: tuple[str, ...], options: tuple[str, ...],
            force: bool, listen: str | None, duration: float | None, exporters: tuple[str, ...],
            selection: Selection, flow_store: Path | None) -> None:
    """Import observed flows into the flow store.

    SOURCE is a flow source reading LOCATIONS (vpc, azure, gcp, conntrack, nfdump: files; s3://bucket/prefix for
    vpc, az://container/prefix with -o account_url=… for azure); `points` has each selected point's driver read
    the flows it sees over its own connection (nftables hosts: their conntrack table over SSH); `netflow`
    receives NetFlow v5/v9/IPFIX on --listen.  Malformed records are reported with file and line and skipped."""
    from orchestrator.flows.sources import collect_from_points, import_locations  # noqa: PLC0415
    from orchestrator.flows.store import FlowStore  # noqa: PLC0415

    say = (lambda r: None) if as_json or settings.quiet else _print_report
    with FlowStore(flow_store) as store:
        if source == "points":
            if locations:
                raise click.UsageError("`collect points` takes no locations: select points with -t/-g/--label")
            with engine_for(settings, as_json=as_json) as engine:
                names = selected_points(engine, selection) or engine.select(None)
                reports = collect_from_points(engine, store, names, progress=say)
        elif source == "netflow":
            reports = _collect_netflow(store, listen, duration, say, set(exporters))
        else:
            if not locations:
                raise click.UsageError(f"`collect {source}` needs at least one file or location")
            reports = import_locations(store, source, locations, options=_options(options), force=force,
                                       progress=say)
        summary = store.summary()
    failed = [r for r in reports if not r.records and r.problems and not r.already_imported]
    if as_json:
        emit_json({"ok": not failed, "imports": [r.to_dict() for r in reports], "store": summary})
    elif not settings.quiet:
        console().print(f"flow store {summary['path']}: {summary['records']:,} records from "
                        f"{', '.join(f'{k} ({v:,})' for k, v in summary['sources'].items()) or 'no source'}",
                        highlight=False)
    sys.exit(1 if failed else 0)


def _collect_netflow(store: Any, listen: str | None, duration: float | None, say: Any,
                     exporters: set[str]) -> list[Any]:
    from orchestrator.flows import netflow  # noqa: PLC0415

    if not listen:
        raise click.UsageError("`collect netflow` needs --listen ADDRESS:PORT (e.g. 127.0.0.1:2055)")
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"{listen!r}: use ADDRESS:PORT", param_hint="--listen")
    stop = threading.Event()
    problems: list[Diagnostic] = []
    reports: list[Any] = []
    batches = itertools.count(1)

    def sink(records: list[Any]) -> None:
        location = f"netflow@{listen}#{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{next(batches)}"
        report = store.import_records("netflow", location, records, [], force=True)
        reports.append(report)
        say(report)

    main_thread = threading.current_thread() is threading.main_thread()  # signals: the main thread's only
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set()) if main_thread else None
    timer = threading.Timer(duration, stop.set) if duration else None
    if timer is not None:
        timer.start()
    try:
        netflow.collect((host.strip("[]"), int(port)), sink, stop, problems,
                        allowed=(lambda exporter: exporter in exporters) if exporters else None)
    except OSError as exc:
        raise MicrosegError(f"cannot listen on {listen}: {exc.strerror or exc}") from exc
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)
        if timer is not None:
            timer.cancel()
    if problems:
        print_diagnostics(problems[:20], stderr=True)
    return reports


@click.command()
@json_option
@click.option("--by", "by", default="app,tier,env", show_default=True, metavar="KEYS",
              help="The label keys that name a node of the map (comma-separated).")
@_since_option
@click.option("--output", "-o", type=click.Path(path_type=Path), default=Path("discovered-policy.yaml"),
              show_default=True, help="Where to write the proposed policy (never inside the policy directory).")
@click.option("--limit", type=click.IntRange(min=1), default=15, show_default=True, help="Edges shown.")
@_flow_store_option
@click.pass_obj
@handles_errors
def discover(settings: Settings, as_json: bool, by: str, since: str | None, output: Path, limit: int,
             flow_store: Path | None) -> None:
    """The application map of the observed flows — who talks to whom on what, at the label level --by — and a
    proposed policy for review (one allow rule per edge, its evidence in the description)."""
    from orchestrator.engine.adopt import proposal_policy  # noqa: PLC0415
    from orchestrator.flows.discover import build_map, proposal, top_talkers  # noqa: PLC0415

    keys = _keys(by)
    output = output.absolute()
    if output.is_relative_to(settings.policy.absolute()):
        raise click.BadParameter(f"{output} is inside the policy directory {settings.policy}: the proposal is for "
                                 "review, write it elsewhere and move the rules you accept", param_hint="--output")
    project = settings.project()
    found = observed_conversations(flow_store, parse_since(since))
    if not found:
        raise PlanError("the flow store holds no flows (in that window): `microseg collect …` first")
    app = build_map(found, project.inventory.workloads, project.loaded.policy, keys)
    document = proposal(app, project.loaded.policy)
    try:
        proposal_policy(project, {"services": {}, **document})  # a valid policy beside the policy's own groups
    except ValueError as exc:
        raise PlanError(f"the proposal is not a valid policy (a bug: please report it): {exc}") from exc
    output.write_text("# Proposed by `microseg discover`: review before adding it to the policy.\n"
                      + yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
    if as_json:
        emit_json({"ok": True, "written": str(output), **app.to_dict()})
        return
    _print_map(app, limit, top_talkers(app))
    console().print(f"proposed policy: {output} ({len(document['rules'])} rules, {len(document['groups'])} new "
                    "groups) — review it, then move what you accept into the policy", highlight=False)


def _keys(by: str) -> tuple[str, ...]:
    from orchestrator.flows.discover import by_labels  # noqa: PLC0415

    try:
        return by_labels(by)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--by") from exc


def _print_map(app: Any, limit: int, talkers: list[tuple[str, int]]) -> None:
    out = console()
    share = app.explained / app.records if app.records else 0.0
    out.print(f"{app.records:,} flow records, {share:.0%} explained (both ends a workload or a policy group); "
              f"{len(app.unknown)} unknown addresses; {sum(1 for e in app.edges if e.records == 1)} edges seen once",
              highlight=False)
    out.print("top talkers: " + ", ".join(f"{name} ({records:,})" for name, records in talkers), highlight=False)
    table = Table(title=f"application map by {','.join(app.by)}", title_justify="left")
    for column in ("from", "to", "service", "records", "pairs", "last seen", "note"):
        table.add_column(column)
    for edge in app.edges[:limit]:
        note = "; ".join(x for x in ("direction guessed" if edge.guessed else "",
                                     f"{edge.rejected} rejected" if edge.rejected else "") if x)
        table.add_row(edge.client, edge.server, edge.service, f"{edge.records:,}", str(len(edge.pairs)),
                      datetime.fromtimestamp(edge.last_seen, UTC).strftime("%Y-%m-%d %H:%M"), note)
    out.print(table)
    if len(app.edges) > limit:
        out.print(f"… {len(app.edges) - limit} more edges (--limit, or --json for all)", highlight=False)


@click.command()
@json_option
@_since_option
@_flow_store_option
@click.pass_obj
@handles_errors
def simulate(settings: Settings, as_json: bool, since: str | None, flow_store: Path | None) -> None:
    """Replay the observed flows through the compiled policy: what would it deny that the traffic needs?
    Also policy rules no flow used (unused-rule) and allow rules used for a sliver of what they allow."""
    from orchestrator.flows.simulate import estate_of  # noqa: PLC0415
    from orchestrator.flows.simulate import simulate as run_simulation  # noqa: PLC0415

    project = settings.project()
    prepared = project.prepare()
    compilation = project.compile(prepared=prepared)
    found = observed_conversations(flow_store, parse_since(since))
    logged = logged_use(settings, flow_store, since)
    if not found:  # no flows: what the points' own counters say is the evidence there is
        unhit, samples = unhit_rules(settings, prepared, project.loaded.sources, since, logged)
        if not samples:
            raise PlanError("the flow store holds no flows (in that window), and the state store no rule hit "
                            "counters: `microseg collect …` first, or schedule `microseg drift`")
        if as_json:
            emit_json({"ok": True, "conversations": 0, "hit_samples": samples,
                       "findings": [d.to_dict() for d in unhit]})
        else:
            console().print(f"no observed flows; from {count(samples, 'point sample')} of the points' rule hit "
                            f"counters: {count(len(unhit), 'allow rule')} matched no packet", highlight=False)
            print_diagnostics(unhit)
        sys.exit(0)
    result = run_simulation(found, compilation, prepared, estate_of(project.inventory.workloads)).used_by(logged)
    if as_json:
        emit_json({"ok": True, **result.to_dict(), "findings": [d.to_dict() for d in result.findings()]})
    else:
        _print_simulation(result)
    sys.exit(EXIT_BREAKS if result.breaks else 0)


def unhit_rules(settings: Settings, prepared: Any, sources: Any, since: str | None,
                logged: Collection[str] = ()) -> tuple[list[Diagnostic], int]:
    """``unhit-rule`` warnings: allow rules the points count (``microseg hits``) that matched no packet between
    two samples of the window — read from the store only when it exists (never created here) — and how many
    point samples there were.  A rule in ``logged`` (cloud flow logs say its rules decided flows) was used."""

    from orchestrator.store import stored_url  # noqa: PLC0415

    url = stored_url(settings.store or None)
    if url is None:
        return [], 0
    from orchestrator.engine.hits import rule_hit_report  # noqa: PLC0415

    samples = _hit_samples(url, since)
    allows = [pr.rule.name for pr in prepared.rules if pr.allows]
    out: list[Diagnostic] = []
    for entry in rule_hit_report(samples, allows):
        if entry.rule in allows and entry.judged and entry.packets == 0 and entry.rule not in logged:
            where = ", ".join(sorted(entry.points))
            out.append(Diagnostic(
                f"rule {entry.rule!r} matched no packet on {where} over {entry.samples} counter samples "
                f"({'since ' + since if since else 'every stored sample'})",
                sources.locate("rule", entry.rule) if sources is not None else None, Severity.WARNING, "unhit-rule",
                hint="no traffic used it while counted: remove it, or keep it if it serves rare traffic"))
    return out, len(samples)


def observed_conversations(flow_store: Path | None, since: int = 0) -> list[Any]:
    """The flow store's conversations (``discover``'s orientation) for ``discover``, ``simulate``, ``promote`` and
    ``lint``: read-only, never created — a missing store has none (a warning when it was named), one a
    ``collect`` holds open is a warning."""
    from orchestrator.flows.discover import conversations  # noqa: PLC0415
    from orchestrator.flows.store import FlowStore, FlowStoreError, default_path  # noqa: PLC0415

    path = flow_store or default_path()
    if not path.exists():
        if flow_store is not None:
            console(stderr=True).print(f"[yellow]warning:[/] no flow store at {escape(str(path))}: no observed "
                                       "flows", highlight=False)
        return []
    try:
        with FlowStore(path, read_only=True) as store:
            return list(conversations(store, since))
    except FlowStoreError as exc:
        console(stderr=True).print(f"[yellow]warning:[/] {escape(exc.message)}: no observed flows this time",
                                   highlight=False)
        return []


def logged_use(settings: Settings, flow_store: Path | None, since: str | None) -> set[str]:
    """The policy rules cloud flow logs show deciding flows in the window (Azure NSG/VNet flow logs, GCP Firewall
    Rules Logging: the deciding rule's name, read through the stored plans' names; ``microseg hits``).  Evidence
    of use that no counter gives on those platforms, for ``lint`` and ``simulate``.  Empty without a state store
    or a flow store (neither is created here)."""
    from orchestrator.flows.store import default_path  # noqa: PLC0415
    from orchestrator.store import stored_url  # noqa: PLC0415

    url = stored_url(settings.store or None)
    if url is None or not (flow_store or default_path()).exists():  # a missing store: its reader says so once
        return set()
    return set(_logged(url, flow_store, parse_since(since) if since else None).rules)


def _hit_samples(url: str | None, since: str | None) -> list[Any]:
    """The stored rule hit counter samples of the window (``microseg hits``, lint, simulate)."""
    from datetime import UTC, datetime  # noqa: PLC0415

    from orchestrator.store import open_store  # noqa: PLC0415  (SQLAlchemy only when there are samples to read)

    store = open_store(url)
    try:
        return store.hit_samples(datetime.fromtimestamp(parse_since(since), UTC) if since else None)
    finally:
        store.close()


def _print_simulation(result: Any, *, findings: bool = True) -> None:
    out = console()
    denied = sum(g.conversations for g in result.denied)
    verdict = "[bold red]would break[/]" if result.breaks else "[green]breaks nothing observed[/]"
    out.print(f"{result.conversations:,} observed conversations ({result.records:,} flow records): the policy "
              f"{verdict}" + (f" — {count(denied, 'conversation')} denied" if denied else ""), highlight=False)
    for gap in result.denied[:20]:
        out.print(f"  [red]denied[/] {escape(gap.source)} → {escape(gap.destination)} {gap.service}: "
                  f"{count(gap.conversations, 'conversation')}, {count(gap.records, 'record')}, "
                  f"e.g. {escape(gap.examples[0])}; "
                  f"at {escape(', '.join(sorted(d.describe() for d in gap.denials))[:300])}",
                  highlight=False, soft_wrap=True)
    if len(result.denied) > 20:
        out.print(f"  … {len(result.denied) - 20} more gaps (--json for all)", highlight=False)
    if result.unenforced:
        out.print(f"  {count(result.unenforced, 'conversation')} pass no enforcement point", highlight=False)
    if findings:
        print_diagnostics(result.findings())
    elif result.unused_rules or result.over_broad:
        out.print(f"  {count(len(result.unused_rules), 'rule')} no observed flow used, "
                  f"{count(len(result.over_broad), 'over-broad rule')} (`microseg simulate` lists them)",
                  highlight=False)


@click.command()
@json_option
@selection_options
@_since_option
@_flow_store_option
@click.option("--force", "force_reason", metavar="REASON",
              help="Promote although the flows say enforcement would deny some (recorded with REASON).")
@click.pass_obj
@handles_errors
def promote(settings: Settings, as_json: bool, selection: Selection, since: str | None, flow_store: Path | None,
            force_reason: str | None) -> None:
    """Move points from monitor to enforce — only when replaying the observed flows (``--since``, default the
    last 7 days) through their policy denies nothing they carried; sets ``mode: enforce`` on each host in the
    inventory's hosts.yaml (one line each, nothing else touched) and records it in the audit trail.  Apply to
    enforce: the plan shows ``mode: monitor → enforce``."""
    from orchestrator.flows.simulate import estate_of  # noqa: PLC0415
    from orchestrator.flows.simulate import simulate as run_simulation  # noqa: PLC0415
    from orchestrator.inventory.edit import set_point_mode  # noqa: PLC0415
    from orchestrator.inventory.inventory import load_inventory, nornir_config  # noqa: PLC0415
    from orchestrator.model.rules import Mode  # noqa: PLC0415

    if not selection.narrowed:
        raise PlanError("name the points to promote: -t POINT, -g GROUP or --label KEY=VALUE")
    if nornir_config(settings.inventory) is not None:
        raise PlanError(f"promote writes mode: enforce into {settings.inventory / 'hosts.yaml'}, but this inventory "
                        "comes from a Nornir inventory plugin (config.yaml): set data.microseg.mode where the "
                        "plugin's data comes from (for NetBox: the config context), after `microseg simulate` says "
                        "enforcing breaks nothing")
    window = since or "7d"
    with engine_for(settings, as_json=as_json) as engine:
        points = selected_points(engine, selection) or []
        compiled = engine.compilation().points
        enforcing = [p for p in points if compiled[p].ruleset.mode is not Mode.MONITOR]
        if enforcing:
            raise PlanError(f"not in monitor mode: {', '.join(enforcing)} (promote moves monitor → enforce)")
        found = observed_conversations(flow_store, parse_since(window))
        if not found and not force_reason:
            raise PlanError(f"no observed flows since {window}: nothing shows what enforcement would break — "
                            "`microseg collect …` first, or --force REASON")
        result = run_simulation(found, engine.compilation(), engine.prepared(),
                                estate_of(engine.project.inventory.workloads))
        breaking = [g for g in result.denied if any(d.point in points for d in g.denials)]
        options = {"points": points, "since": window, "conversations": result.conversations,
                   "would_deny": [g.to_dict() for g in breaking], "forced": force_reason}
        run_id = engine.store.create_run("promote", actor=engine.actor.name, ticket=engine.actor.ticket,
                                         origin_host=engine.actor.origin_host, options=options)
        if breaking and not force_reason:
            engine.store.finish_run(run_id, "refused", {"error": "observed flows would be denied"})
            engine.store.audit("promote.refused", actor=engine.actor.name, run_id=run_id,
                               detail={"points": points, "would_deny": len(breaking)})
            _report_promotion(as_json, points, breaking, result.conversations, window, promoted=False)
            sys.exit(EXIT_BREAKS)

        for point in points:
            def read_back(point: str = point) -> Mode | None:  # the inventory alone: the policy did not change
                return load_inventory(settings.inventory).point(point).mode

            old, new = set_point_mode(settings.inventory, point, Mode.ENFORCE, read_back)
            edit = [line for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
                    if line[:1] in "+-" and not line.startswith(("+++", "---"))]
            engine.store.audit("promote.point", actor=engine.actor.name, run_id=run_id, point=point,
                               detail={"mode": "enforce", "forced": force_reason, "hosts.yaml": edit,
                                       "would_deny": sum(1 for g in breaking
                                                         for d in g.denials if d.point == point)})
        engine.store.finish_run(run_id, "ok", {"promoted": points, "forced": force_reason})
    _report_promotion(as_json, points, breaking, result.conversations, window, promoted=True, run_id=run_id,
                      forced=force_reason)


def _report_promotion(as_json: bool, points: list[str], breaking: list[Any], conversations: int, window: str, *,
                      promoted: bool, run_id: str | None = None, forced: str | None = None) -> None:
    if as_json:
        emit_json({"ok": promoted, "promoted": points if promoted else [], "run_id": run_id, "forced": forced,
                   "conversations": conversations, "would_deny": [g.to_dict() for g in breaking]})
        return
    out = console()
    for gap in breaking[:20]:
        where = ", ".join(sorted(d.describe() for d in gap.denials))
        out.print(f"  [red]would deny[/] {escape(gap.source)} → {escape(gap.destination)} {gap.service}: "
                  f"{count(gap.conversations, 'conversation')} at {where}", highlight=False)
    if promoted:
        how = f" despite {count(sum(g.conversations for g in breaking), 'conversation')} it would deny " \
              f"(forced: {forced})" if breaking else ""
        out.print(f"promoted to enforce{how}: {', '.join(points)} — {conversations:,} conversations since {window} "
                  f"replayed; apply to enforce (`microseg apply -t …`)", highlight=False)
    else:
        out.print(f"[bold red]not promoted[/]: enforcing {', '.join(points)} would deny observed traffic (above); "
                  "fix the policy, or --force REASON", highlight=False)


@click.command()
@json_option
@click.option("--since", default=None, metavar="AGE|DATE",
              help="The window: samples recorded in the last AGE (24h, 7d) or since DATE (default: all stored).")
@_flow_store_option
@click.pass_obj
@handles_errors
def hits(settings: Settings, as_json: bool, since: str | None, flow_store: Path | None) -> None:
    """Rule hit evidence from the points' own counters (nftables ``counter`` on every owned rule; the match
    counts IOS, NX-OS and EOS list), sampled by every plan, drift and reconcile run: per policy rule, the packets
    matched in the window, the last hit, the points that count it but never saw it hit.  Schedule ``drift`` or
    ``reconcile`` to collect samples.  Where flow logs name the rule that decided each flow (Azure NSG and VNet
    flow logs, GCP Firewall Rules Logging, imported with ``collect``), the records each policy rule's cloud rules
    decided, through the names the stored plans read; where they name only the interface (AWS VPC Flow Logs), the
    records the owned rules that interface carried then allowed, by evaluating each flow against them."""
    from orchestrator.engine.hits import rule_hit_report  # noqa: PLC0415
    from orchestrator.policy.loader import load_policy  # noqa: PLC0415

    start = datetime.fromtimestamp(parse_since(since), UTC) if since else None
    names = [rule.name for rule in load_policy(settings.policy, today=settings.today).policy.rules]
    samples = _hit_samples(settings.store or None, since)  # the policy and the store: no inventory, no devices
    report = rule_hit_report(samples, names)
    logged = _logged(settings.store or None, flow_store, parse_since(since) if since else None)
    if as_json:
        emit_json({"since": start.isoformat(timespec="seconds") if start else None, "samples": len(samples),
                   "rules": [{**r.to_dict(), "flow_logs": logged.rules[r.rule].to_dict() if r.rule in logged.rules
                              else None} for r in report],
                   "flow_logs": {"attributed": logged.attributed, "unattributed": logged.unattributed,
                                 "ambiguous": dict(sorted(logged.ambiguous.items()))}})
        return
    table = Table(box=None, header_style="bold")
    for column in ("policy rule", "packets", "last hit", "counted on", "never hit on", "logged", "last logged"):
        table.add_column(column, justify="right" if column in ("packets", "logged") else "left")
    for entry in report:
        use = logged.rules.get(entry.rule)
        flows = (f"{use.records:,}", datetime.fromtimestamp(use.last_seen, UTC).strftime("%Y-%m-%d %H:%M")
                 if use.last_seen is not None else "-") if use else ("-", "-")
        if not entry.counted:
            table.add_row(escape(entry.rule), "-", "-", "no counters", "", *flows)
            continue
        last = entry.last_hit.strftime("%Y-%m-%d %H:%M") if entry.last_hit else "-"
        table.add_row(escape(entry.rule), f"{entry.packets:,}", last, count(len(entry.points), "point"),
                      escape(", ".join(entry.never_hit)), *flows)
    console().print(table)
    window = f"since {start:%Y-%m-%d %H:%M}" if start else "over every stored sample"
    console().print(f"{count(len(samples), 'point sample')} {window}; packets are counted between samples (a "
                    "point's first sample is the baseline)", highlight=False)
    if logged.attributed or logged.unattributed or logged.ambiguous:
        unclear = sum(logged.ambiguous.values())
        console().print(f"flow logs: {count(logged.attributed, 'record')} attributed to policy rules, "
                        f"{count(logged.unattributed, 'record')} under rules no stored plan names (the platform's "
                        "defaults, rules microseg does not own, its catch-alls; at AWS ENIs: rejects, replies, flows "
                        "no owned rule allows)"
                        + (f", {count(unclear, 'record')} under names (or ENIs) the stored plans cannot tell the "
                           f"meaning of then ({escape(', '.join(sorted(logged.ambiguous)))}: run drift after a change)"
                           if unclear else "") + "; a record is a log entry (a flow logged at two NICs, or in both "
                        "Azure formats, counts at each)", highlight=False)


def _logged(url: str | None, flow_store: Path | None, since: int | None) -> FlowLogEvidence:
    """What the flow logs in the flow store (when it exists; read-only, never created here) say of the policy
    rules: records under rule names, through the stored plans' names around them (Azure, GCP), and records logged
    at an interface only, evaluated against the rules the stored plans put there (AWS).  A flow store that cannot
    be read (another command holds it) is a warning: the counters are reported all the same."""
    from orchestrator.engine.hits import (  # noqa: PLC0415
        FlowLogEvidence,
        evaluated_evidence,
        flow_log_evidence,
        matches_source_ports,
    )
    from orchestrator.flows.store import FlowStore, FlowStoreError, default_path  # noqa: PLC0415

    evidence = FlowLogEvidence()
    path = flow_store or default_path()
    if not path.exists():
        if flow_store is not None:
            console(stderr=True).print(f"[yellow]warning:[/] no flow store at {escape(str(path))}: no flow-log "
                                       "evidence", highlight=False)
        return evidence
    from orchestrator.flows.sources import observer_only_sources  # noqa: PLC0415
    from orchestrator.store import open_store  # noqa: PLC0415

    try:  # the flow store is held only while it is read: a `collect` may write to it in between
        with FlowStore(path, read_only=True) as flows:
            rows = flows.logged_rules(since)
            sources, broken = observer_only_sources(flows.sources())
            first, seen = flows.unnamed_extent(sources, since)
    except FlowStoreError as exc:
        console(stderr=True).print(f"[yellow]warning:[/] {escape(exc.message)}: no flow-log evidence this time",
                                   highlight=False)
        return evidence
    for name in sorted(broken):
        console(stderr=True).print(f"[yellow]warning:[/] the flow source {escape(name)!r} cannot be loaded: its "
                                   "records are not judged this time", highlight=False)
    plans = open_store(url)
    try:
        if rows:
            flow_log_evidence(rows, plans.log_name_samples(datetime.fromtimestamp(min(r[3] for r in rows), UTC)),
                              evidence)
        samples = plans.observer_samples(seen, datetime.fromtimestamp(first, UTC)) if seen and first is not None \
            else []
    finally:
        plans.close()
    if not samples:
        return evidence
    ports = {o for sample in samples if matches_source_ports(sample[3]) for o in sample[2] or ()}
    try:
        with FlowStore(path, read_only=True) as flows:
            unnamed = flows.unnamed_flows(sources, {o for sample in samples for o in sample[2] or ()}, since,
                                          source_ports=ports, not_before=first)
    except FlowStoreError as exc:
        console(stderr=True).print(f"[yellow]warning:[/] {escape(exc.message)}: the flows logged at interfaces "
                                   "only (AWS VPC Flow Logs) are not judged this time", highlight=False)
        return evidence
    return evaluated_evidence(unnamed, samples, evidence)


def register(main: click.Group) -> None:
    for command in (collect, discover, simulate, promote, hits):
        main.add_command(command)
