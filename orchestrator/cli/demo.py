"""``microseg demo``: the whole reconcile loop on the built-in lab, narrated, with real traffic as the proof."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click
import yaml
from rich.markup import escape
from rich.table import Table

from orchestrator.cli.common import Settings, handles_errors
from orchestrator.cli.lab import lab_dir_option, lab_plan_for
from orchestrator.cli.progress import reporter_for
from orchestrator.cli.render import console
from orchestrator.cli.render_runs import print_plan, print_run
from orchestrator.engine.diff import diff_rulesets
from orchestrator.engine.engine import Actor, Engine, EngineOptions
from orchestrator.engine.rollback import rollback_run
from orchestrator.engine.transaction import ApplyOptions, apply_plan
from orchestrator.inventory.inventory import load_nornir_inventory
from orchestrator.model.errors import MicrosegError
from orchestrator.store import open_store


@dataclass(frozen=True, slots=True)
class Check:
    """One real TCP connection the demo tries, and what the policy says should happen."""

    src: str
    dst_host: str
    dst: str
    port: int
    allowed: bool
    why: str


CHECKS = (
    Check("internet", "web-prod-01", "10.20.1.11", 443, True, "internet-to-web"),
    Check("web-prod-01", "app-prod-01", "10.20.2.11", 8443, True, "shop-web-to-app-prod"),
    Check("app-prod-01", "db-prod-01", "10.20.3.11", 5432, True, "shop-app-to-db-prod"),
    Check("jump-01", "db-prod-01", "10.20.3.11", 22, True, "admin-ssh"),
    Check("web-dev-01", "web-prod-01", "10.20.1.11", 443, False, "deny-dev-to-prod"),
    Check("web-prod-01", "db-prod-01", "10.20.3.11", 5432, False, "no rule: the web tier never talks to the db"),
    Check("internet", "db-prod-01", "10.20.3.11", 5432, False, "no rule: the Internet reaches the web tier only"),
    Check("internet", "web-prod-01", "fd00:20:1::11", 443, True, "internet-to-web (IPv6)"),
)
SWITCH_DRIVERS = ("ios", "nxos", "eos", "junos")
TAMPER = "insert rule inet microseg ingress ip saddr 10.30.1.11 tcp dport 5432 accept comment \"hotfix\""


def step(title: str) -> None:
    console().rule(f"[bold cyan]{title}")


def say(text: str) -> None:
    console().print(text, highlight=False, soft_wrap=True)


def prove(lab: Any, checks: tuple[Check, ...], *, expect_policy: bool) -> bool:
    """Run every check as a real TCP connection; True when all match the expectation."""
    results = lab.probe_many([(c.src, c.dst, c.port) for c in checks], timeout=1.0)
    table = Table(show_edge=False)
    for column in ("from", "to", "port", "result", "policy", "why"):
        table.add_column(column)
    good = True
    for check, result in zip(checks, results, strict=True):
        expected = check.allowed if expect_policy else True
        ok = result.ok == expected
        good &= ok
        mark = "[green]✓[/]" if ok else "[bold red]✗ unexpected[/]"
        table.add_row(check.src, f"{check.dst_host} {check.dst}", str(check.port),
                      f"{'connected' if result.ok else result.detail} {mark}",
                      "allow" if check.allowed else "deny", check.why)
    console().print(table)
    return good


def _apply_family(engine: Engine, points: list[str], family: str, unit: str, note: str = "") -> str | None:
    """Plan, apply and re-plan one family of points (switches, clouds): each change in one line with an example
    of its native form, the run, and an empty second plan; the run id."""
    if not points:
        return None
    plan = engine.plan(points)
    _require(not plan.failures, f"planning the {family} failed: {plan.failures}")
    for change in plan.changes:
        commands = change.change.commands
        entries = [c for c in commands if re.search(r"\b(permit|deny|from)\b", c)]  # an entry, not a header
        example = (entries or [*commands, ""])[0]
        say(f"  {change.point:18} {change.summary()}, {len(commands)} {unit}, e.g. "
            f"[dim]{escape(example if len(example) <= 80 else example[:79] + '…')}[/]")
    if note:
        say(note)
    result = apply_plan(engine, plan, ApplyOptions(), {"demo": family})
    print_run(result)
    _require(result.ok, f"the apply to the {family} did not succeed")
    twin = engine.plan(points)
    say("  a second plan is empty: " + ("yes" if not twin.changes else "[red]no[/]"))
    _require(not twin.changes, f"the second plan of the {family} is not empty")
    return result.run_id


def _switches(engine: Engine, switches: list[str]) -> str | None:
    """The same policy on the worked example's switches (SSH device simulators the lab started): the run id."""
    if switches:
        step("9. The switches: the same policy as ACLs on IOS, NX-OS, EOS and Junos (simulated devices, over SSH)")
    return _apply_family(engine, switches, "switches", "config lines",
                         "  each is pushed under its platform's safety net (revert timer, checkpoint, session "
                         "commit timer, commit confirmed) and confirmed only after verification:")


def _clouds(engine: Engine, clouds: list[str]) -> str | None:
    """The same policy on the worked example's cloud points (the lab's API simulators): the run id."""
    if clouds:
        step("10. The clouds: the same policy as an AWS security group, an Azure NSG and GCP firewall rules "
             "(simulated APIs, through the unmodified SDKs)")
    return _apply_family(engine, clouds, "cloud points", "API calls")


def _roll_back(engine: Engine, lab: Any, first_run: str, *later: str | None) -> None:
    step(f"11. microseg rollback {first_run} --force: every host back to its checkpoint, verified")
    back = rollback_run(engine, first_run, force=True)  # db-prod-01 was repaired since: on purpose
    print_run(back)
    _require(back.ok, "the rollback did not succeed")
    for run in filter(None, later):  # the switches' and the clouds' runs
        back = rollback_run(engine, run)
        print_run(back)
        _require(back.ok, f"the rollback of run {run} did not succeed")
    _require(prove(lab, CHECKS, expect_policy=False), "traffic after the rollback is not as before")


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise MicrosegError(f"demo failed: {what}")


def register(main: click.Group) -> None:
    """Add ``demo`` to the ``microseg`` group."""

    @main.command()
    @lab_dir_option
    @click.option("--keep", is_flag=True, help="Leave the lab up afterwards (default: tear it down).")
    @click.pass_obj
    @handles_errors
    def demo(settings: Settings, lab_dir: Path, keep: bool) -> None:
        """Lab up → discover the traffic → simulate the policy → plan → apply → prove flows with real TCP → drift →
        switches and clouds → rollback, narrated."""
        run_demo(settings, lab_dir, keep=keep)


def run_demo(settings: Any, lab_dir: Path, *, keep: bool = False) -> None:
    from orchestrator.lab import Lab  # noqa: PLC0415  (root-only I/O)

    lab = Lab(lab_dir)
    started = time.monotonic()
    step("1. The lab: the worked example's Linux hosts as network namespaces, each with sshd and nftables, "
         "its switches as SSH device simulators and its clouds as API simulators")
    status = lab.up(lab_plan_for(settings.inventory, "mseg"), progress=lambda m: say(f"  [dim]{m}[/]"))
    say(f"  {len(status.to_dict().get('hosts', []))} namespaces up; microseg reaches the hosts over SSH "
        "from the management station 10.0.0.10")
    try:
        _story(settings, lab, lab_dir)
    finally:
        if keep:
            say("The lab stays up (--keep): try `microseg plan`, `microseg drift`, `microseg lab down`.")
        else:
            step("Cleaning up")
            lab.down()
            say("  lab removed: no namespace or process left behind")
    say(f"\n[bold green]Demo finished in {time.monotonic() - started:.1f} s.[/]")
    say("Its runs are in the store: `microseg history`, then `microseg show RUN_ID`.\n"
        "To continue by hand: `microseg lab up`, then `microseg plan` (every point of the worked example), "
        "`microseg apply`, `microseg drift`; `microseg lab down` when done.")


DROPPED_RULE = "shop-app-to-db-prod"


def _discover(engine: Engine, lab: Any, lab_dir: Path, linux: list[str]) -> None:
    """Act one of every rollout: learn who talks to whom from the hosts' own connection tables, propose a policy
    from that evidence, and prove the real policy would break none of it (and that one rule less would)."""
    from orchestrator.cli.flows import _print_map, _print_simulation  # noqa: PLC0415  (the flow commands' output)
    from orchestrator.flows.discover import build_map, conversations, proposal, top_talkers  # noqa: PLC0415
    from orchestrator.flows.simulate import estate_of, simulate  # noqa: PLC0415
    from orchestrator.flows.sources import collect_from_points  # noqa: PLC0415
    from orchestrator.flows.store import FlowStore  # noqa: PLC0415
    from orchestrator.lab.lab import TRACK_CONNECTIONS  # noqa: PLC0415  (root-only I/O)

    step("2. Discover: the applications' traffic, read agentlessly from each host's conntrack table over SSH")
    for host in linux:  # most hosts track connections already (Docker, firewalld, a stateful rule): these now do
        lab.track_connections(host)
    say(f"  [dim]$ nft {TRACK_CONNECTIONS}[/]  (on each host: the kernel tracks connections once a rule uses "
        "conntrack)")
    needed = tuple(c for c in CHECKS if c.allowed)
    _require(prove(lab, needed, expect_policy=False), "the applications' traffic does not flow")
    path = lab_dir / "flows.duckdb"
    path.unlink(missing_ok=True)
    with FlowStore(path) as flows:
        reports = collect_from_points(engine, flows, linux)
        _require(all(r.records for r in reports if r.location.split("@")[0] in {c.dst_host for c in needed}),
                 f"a host's conntrack table was not read: {[p.message for r in reports for p in r.problems]}")
        say(f"  $ microseg collect points: {sum(r.records for r in reports)} connections from {len(reports)} hosts")
        found = conversations(flows)
    project = engine.project
    app = build_map(found, project.inventory.workloads, project.loaded.policy, ("app", "tier", "env"))
    say("  $ microseg discover --by app,tier,env")
    _print_map(app, 10, top_talkers(app))
    document = proposal(app, project.loaded.policy)
    written = lab_dir / "discovered-policy.yaml"
    written.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
    say(f"  proposed policy for review: {written} ({len(document['rules'])} rules, one per edge, with evidence)")

    step("3. microseg simulate: would the worked example's policy break any of that traffic?")
    prepared = project.prepare()
    estate = estate_of(project.inventory.workloads)
    result = simulate(found, project.compile(prepared=prepared), prepared, estate)
    _print_simulation(result, findings=False)
    _require(not result.breaks, "the worked example's policy would deny traffic the applications need")
    policy = project.loaded.policy
    without = replace(project, loaded=replace(project.loaded, policy=policy.model_copy(
        update={"rules": tuple(r for r in policy.rules if r.name != DROPPED_RULE)})))
    prepared = without.prepare()
    broken = simulate(found, without.compile(prepared=prepared), prepared, estate)
    say(f"  and without rule {DROPPED_RULE} (exit 2, a CI gate before apply):")
    _print_simulation(broken, findings=False)
    _require(broken.breaks, f"removing {DROPPED_RULE} should break app → db")


def _story(settings: Any, lab: Any, lab_dir: Path) -> None:
    project = settings.project()
    nornir = load_nornir_inventory(settings.inventory)
    linux = [p.name for p in project.inventory.points if p.driver == "nftables"]
    store = open_store(settings.store)
    try:
        with Engine(project, nornir, store, Actor(settings.actor, "DEMO-1"), EngineOptions(workers=6),
                    reporter_for(as_json=False)) as engine:
            _discover(engine, lab, lab_dir, linux)
            step("4. Before microseg: nothing is segmented — every connection goes through")
            _require(prove(lab, CHECKS, expect_policy=False), "the lab's traffic does not flow")

            step("5. microseg plan: intended (policy) vs. actual (nft on each host)")
            plan = engine.plan(linux)
            groups = {n: g.addresses for n, g in engine.compilation().groups.items() if g.addresses}
            print_plan(plan, limit=5, groups=groups)

            step("6. microseg apply: checkpoint → one atomic `nft -f` per host → verify by re-fetching")
            result = apply_plan(engine, plan, ApplyOptions(), {"demo": True})
            print_run(result)
            _require(result.ok, "the apply did not succeed")
            first_run = result.run_id

            step("7. Proof with real TCP connections: allowed flows connect, denied flows do not")
            if not prove(lab, CHECKS, expect_policy=True):
                raise MicrosegError("traffic does not match the policy")
            twin_empty = not engine.plan(linux).changes
            say("  and a second plan is empty (idempotent): " + ("yes" if twin_empty else "[red]no[/]"))
            _require(twin_empty, "the second plan is not empty")

            step("8. Drift: someone hot-fixes db-prod-01 by hand, and adds a table of their own")
            lab.exec("db-prod-01", ["nft", TAMPER])
            lab.exec("db-prod-01", ["nft", "add table inet scratch"])
            say(f"  [dim]$ nft {TAMPER}[/]")
            drift = engine.plan(["db-prod-01"])
            print_plan(drift, groups=groups)
            say("  `microseg drift` would exit 2; apply repairs it — and never touches `table inet scratch`:")
            _require(bool(drift.changes), "the hand-made change was not detected as drift")
            repaired = apply_plan(engine, drift, ApplyOptions(), {"demo": "repair"})
            print_run(repaired)
            _require(repaired.ok, "the repair did not succeed")
            tables = lab.exec("db-prod-01", ["nft", "list", "tables"]).stdout.split()
            say(f"  tables on db-prod-01 now: {' '.join(tables)}")
            after = engine.observe("db-prod-01")[1].ruleset
            intended = engine.compilation().points["db-prod-01"].ruleset
            matches = diff_rulesets(after, intended).empty
            say("  db-prod-01 matches the policy again: " + ("yes" if matches else "[red]no[/]"))
            _require(matches and "scratch" in " ".join(tables), "the repair is incomplete or touched another table")

            switch_run = _switches(engine, [p.name for p in project.inventory.points if p.driver in SWITCH_DRIVERS])
            lab_plan = lab.status().plan
            served = {c.name for c in lab_plan.clouds} if lab_plan else set()
            cloud_run = _clouds(engine, [p.name for p in project.inventory.points if p.name in served])

            _roll_back(engine, lab, first_run, switch_run, cloud_run)
    finally:
        store.close()
