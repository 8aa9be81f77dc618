"""The engine over the worked example's four switch points at once, against the SSH device simulators.

Through unmodified netmiko over real SSH on 127.0.0.1: plan, apply, verify and
confirm, an empty second plan that sends no configuration line, drift made by
hand found and repaired, a run rolled back, a session lost mid-change on each
platform ending old or new (never in between), and the lockout guard on the
switch that is managed in-band.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
import yaml
from netmiko import ConnectHandler

from drivers.arista_eos import syntax as eos_syntax
from drivers.cisco_ios import syntax as ios_syntax
from drivers.cisco_nxos import syntax as nxos_syntax
from orchestrator.engine.engine import Actor, Engine, EngineOptions, PointExecutor
from orchestrator.engine.plan import GuardSettings
from orchestrator.engine.project import load_project
from orchestrator.engine.reconcile import DriftKind, reconcile
from orchestrator.engine.retry import RetryPolicy
from orchestrator.engine.rollback import rollback_run
from orchestrator.engine.transaction import ApplyOptions, apply_plan
from orchestrator.inventory.inventory import load_nornir_inventory
from orchestrator.model.errors import PolicyError
from orchestrator.store import open_store
from simulators.netdev.server import DeviceSimulator
from tests.conftest import REPO

SWITCHES = {"sw-dev-ios": "ios", "dc-prod-nxos": "nxos", "leaf-prod-eos": "eos", "fw-shared-junos": "junos"}
NETMIKO = {"ios": "cisco_ios", "nxos": "cisco_nxos", "eos": "arista_eos", "junos": "juniper_junos"}
TODAY = date(2026, 11, 21)
SYNTAXES = {"sw-dev-ios": ios_syntax, "dc-prod-nxos": nxos_syntax, "leaf-prod-eos": eos_syntax}


@dataclass
class Fleet:
    inventory: Path
    sims: dict[str, DeviceSimulator]

    def engine(self, store: str, workers: int = 4, policies: Path | None = None,
               executor: PointExecutor | None = None, lock_timeout: float = 30.0,
               guards: GuardSettings | None = None) -> Engine:
        project = load_project(policies or REPO / "policies", self.inventory, today=TODAY)
        options = EngineOptions(workers=workers, retry=RetryPolicy(attempts=3, base=0.05), executor=executor,
                                lock_timeout=lock_timeout, guards=guards or GuardSettings())
        return Engine(project, load_nornir_inventory(self.inventory), open_store(store), Actor("tester"), options,
                      owns_store=True)

    def config_lines(self) -> dict[str, int]:
        return {name: sim.counters.config_lines for name, sim in self.sims.items()}

    def show(self, point: str, command: str) -> str:
        """What a person reading the device sees, in a separate SSH session."""
        sim = self.sims[point]
        with ConnectHandler(device_type=NETMIKO[SWITCHES[point]], host="127.0.0.1", port=sim.port,
                            username="admin", password="admin") as conn:
            return str(conn.send_command(command))

    def cli(self, point: str, lines: list[str]) -> None:
        """A person's hand edit, in a separate SSH session."""
        sim = self.sims[point]
        with ConnectHandler(device_type=NETMIKO[SWITCHES[point]], host="127.0.0.1", port=sim.port,
                            username="admin", password="admin") as conn:
            conn.send_config_set(lines)
            if SWITCHES[point] == "junos":
                conn.commit()


def switch_inventory(target: Path, sims: dict[str, DeviceSimulator]) -> Path:
    shutil.copytree(REPO / "inventory", target)
    hosts = yaml.safe_load((target / "hosts.yaml").read_text())
    hosts = {name: hosts[name] for name in SWITCHES}
    for name, host in hosts.items():
        host.update(hostname="127.0.0.1", port=sims[name].port, username="admin", password="admin")
        # the worked example trusts keys into .microseg/lab/known_hosts (relative to the working directory):
        # the checkout's own file, where simulators on reused random ports would meet an old key
        host["data"]["microseg"]["settings"].update(confirm_minutes=1, key_file=None,
                                                    known_hosts=str(target / "known_hosts"))
    (target / "hosts.yaml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    return target


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    hosts = yaml.safe_load((REPO / "inventory" / "hosts.yaml").read_text())
    with ExitStack() as stack:
        sims = {}
        for name, personality in SWITCHES.items():
            interfaces = [b["interface"] for b in hosts[name]["data"]["microseg"]["settings"]["bindings"]]
            sim = DeviceSimulator(personality, name, username="admin", password="admin", minute_seconds=3.0,
                                  interfaces=interfaces)
            sims[name] = stack.enter_context(sim.start())
        yield Fleet(switch_inventory(tmp_path / "inventory", sims), sims)


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/state.db"


def test_plan_apply_verify_twin_and_rollback_across_four_platforms(fleet: Fleet, store: str) -> None:
    with fleet.engine(store) as engine:
        plan = engine.plan(list(SWITCHES))
        assert not plan.failures, plan.failures
        assert {p.point for p in plan.changes} == set(SWITCHES)
        assert all(v == 0 for v in fleet.config_lines().values())  # planning never configures
        result = apply_plan(engine, plan, ApplyOptions(), {})
        assert result.status == "ok" and result.by_state() == {"new": sorted(SWITCHES)}, result.to_dict()
        sent = fleet.config_lines()
        twin = engine.plan(list(SWITCHES))
        assert not twin.changes and not twin.failures
        assert fleet.config_lines() == sent  # the twin configured nothing
        back = rollback_run(engine, result.run_id)
        assert back.by_state() == {"restored": sorted(SWITCHES)}, back.to_dict()
        again = engine.plan(list(SWITCHES))
        assert {p.point for p in again.changes} == set(SWITCHES)  # back to nothing installed


def test_a_hand_edit_is_drift_and_is_repaired(fleet: Fleet, store: str) -> None:
    with fleet.engine(store) as engine:
        assert apply_plan(engine, engine.plan(list(SWITCHES)), ApplyOptions(), {}).ok
        fleet.cli("dc-prod-nxos", ["ip access-list MSEG-INGRESS-V4", "5 permit tcp any any eq 3389"])
        drift = engine.plan(list(SWITCHES))
        assert [p.point for p in drift.changes] == ["dc-prod-nxos"]
        removed = drift.points["dc-prod-nxos"].diff.removed
        assert [(r.protocol, r.dst_ports) for r in removed] == [(6, ((3389, 3389),))]
        assert drift.points["dc-prod-nxos"].change.commands == (
            "ip access-list MSEG-INGRESS-V4", "statistics per-entry", "no 5")
        assert apply_plan(engine, drift, ApplyOptions(), {}).ok
        assert not engine.plan(list(SWITCHES)).changes


@pytest.mark.parametrize("point", list(SWITCHES))
def test_a_session_lost_mid_change_ends_old_or_new(fleet: Fleet, store: str, point: str) -> None:
    with fleet.engine(store, workers=1) as engine:
        plan = engine.plan(list(SWITCHES))
        fleet.sims[point].faults.drop_after_config_lines = 3
        result = apply_plan(engine, plan, ApplyOptions(), {})
        state = result.outcomes[point].state.value
        assert state in ("new", "restored", "unchanged"), result.to_dict()
        after = engine.plan([point])
        if state == "new":  # the platform threw the half-sent change away (session, candidate) and it was re-sent
            assert not after.changes
        else:  # the device reverted / was rolled back: exactly as before the run (nothing installed)
            assert after.points[point].diff.summary() == plan.points[point].diff.summary()
        assert not fleet.sims[point].faults.drop_after_config_lines  # the fault did fire


def test_lockout_guard_on_the_in_band_managed_switch(fleet: Fleet, store: str, tmp_path: Path) -> None:
    with fleet.engine(store) as engine:
        assert apply_plan(engine, engine.plan(["sw-dev-ios"]), ApplyOptions(), {}).ok
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    platform = yaml.safe_load((policies / "platform.yaml").read_text())
    platform["rules"] = [r for r in platform["rules"] if r["name"] != "microseg-management"]
    (policies / "platform.yaml").write_text(yaml.safe_dump(platform, sort_keys=False))
    with fleet.engine(store, policies=policies) as engine:
        plan = engine.plan(["sw-dev-ios"])
        guards = [g.guard for g in plan.points["sw-dev-ios"].guards]
        assert "lockout" in guards, plan.points["sw-dev-ios"].guards


def test_a_line_the_device_refuses_rolls_the_run_back_and_names_device_and_line(fleet: Fleet, store: str) -> None:
    with fleet.engine(store, workers=1) as engine:
        plan = engine.plan(list(SWITCHES))
        fleet.sims["leaf-prod-eos"].faults.reject = r"eq (https|443)"
        result = apply_plan(engine, plan, ApplyOptions(), {})
        outcome = result.outcomes["leaf-prod-eos"]
        assert result.status == "failed" and outcome.state.value == "unchanged", result.to_dict()
        assert "leaf-prod-eos" in (outcome.error or "") and "refused" in (outcome.error or "")
        assert "443" in (outcome.error or "") or "https" in (outcome.error or "")
        # the points before it in the run were rolled back, the ones after it never started
        assert {n: o.state.value for n, o in result.outcomes.items()} == {
            "sw-dev-ios": "restored", "dc-prod-nxos": "restored", "leaf-prod-eos": "unchanged",
            "fw-shared-junos": "skipped"}
        again = engine.plan(list(SWITCHES))
        assert {p.point for p in again.changes} == set(SWITCHES)  # all four exactly as before the run


def test_an_acl_over_the_device_limit_is_refused_at_plan_time(fleet: Fleet, store: str) -> None:
    hosts = yaml.safe_load((fleet.inventory / "hosts.yaml").read_text())
    hosts["leaf-prod-eos"]["data"]["microseg"]["capabilities"] = {"max_rules": 18}  # a small TCAM
    (fleet.inventory / "hosts.yaml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    with pytest.raises(PolicyError) as caught, fleet.engine(store) as engine:
        engine.plan(list(SWITCHES))
    text = "\n".join(d.message for d in caught.value.diagnostics)
    assert "leaf-prod-eos" in text and "exceed the limit of 18" in text and "19 IPv6 ingress" in text
    assert "IPv6 egress" not in text  # 17 entries fit
    assert all(str(d.location).startswith(str(fleet.inventory / "hosts.yaml")) for d in caught.value.diagnostics)
    assert all(v == 0 for v in fleet.config_lines().values())  # nothing was sent anywhere


def test_plan_detailed_exitcode_says_whether_anything_would_change(fleet: Fleet, store: str) -> None:
    """Like Terraform: 2 while a change is pending, 0 once applied, 1 when a point cannot be planned."""
    from click.testing import CliRunner

    from orchestrator.cli.main import main

    base = ["--policy", str(REPO / "policies"), "--inventory", str(fleet.inventory), "--today", TODAY.isoformat(),
            "--store", store]

    def plan(*extra: str) -> int:
        return CliRunner().invoke(main, [*base, "plan", "-t", "leaf-prod-eos", *extra]).exit_code

    assert plan() == 0 and plan("--detailed-exitcode") == 2
    applied = CliRunner().invoke(main, [*base, "apply", "-t", "leaf-prod-eos", "--auto-approve"])
    assert applied.exit_code == 0, applied.output
    assert plan("--detailed-exitcode") == 0
    fleet.sims["leaf-prod-eos"].stop()
    assert plan("--detailed-exitcode") == 1


def test_selection_exclude_label_and_rollback_by_target(fleet: Fleet, store: str) -> None:
    """-x leaves points out, --label selects by Nornir data on every selecting command, rollback takes -t."""
    import json

    from click.testing import CliRunner

    from orchestrator.cli.main import main

    base = ["--policy", str(REPO / "policies"), "--inventory", str(fleet.inventory), "--today", TODAY.isoformat(),
            "--store", store]

    def run(*args: str) -> tuple[int, dict]:
        result = CliRunner().invoke(main, [*base, *args, "--json"])
        return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else {}

    code, plan = run("plan", "-x", "leaf-prod-eos", "-x", "fw-shared-junos")
    assert code == 0 and set(plan["points"]) == {"sw-dev-ios", "dc-prod-nxos"}
    code, plan = run("drift", "--label", "env=prod", "-x", "dc-prod-nxos")
    assert code == 2 and set(plan["points"]) == {"leaf-prod-eos"}  # prod: leaf-prod-eos and dc-prod-nxos
    code, error = run("plan", "-x", "no-such-point")
    assert code == 1 and "--exclude names no enforcement point: no-such-point" in error["error"]
    code, applied = run("apply", "--label", "env=prod", "--auto-approve")
    assert code == 0 and set(applied["states"]["new"]) == {"leaf-prod-eos", "dc-prod-nxos"}, applied
    code, back = run("rollback", applied["run_id"], "-t", "dc-prod-nxos", "--auto-approve")
    assert code == 0 and back["states"] == {"restored": ["dc-prod-nxos"]}, back


@pytest.mark.parametrize(("point", "entry"), [("sw-dev-ios", None), ("dc-prod-nxos", None), ("leaf-prod-eos", None),
                                              ("fw-shared-junos", lambda i: f"T{10 * i}")])
def test_the_counters_a_switch_lists_are_a_plans_hit_evidence(fleet: Fleet, store: str, point: str,
                                                               entry: Callable[[int], int | str] | None) -> None:
    """Issue #17 through the real path (SSH, netmiko, the parsers): IOS prints ``(N matches)`` beside an entry
    that matched; NX-OS (``[match=N]``) and EOS (``[match B bytes in N packets, …]``) once microseg wrote
    ``statistics per-entry`` / ``counters per-entry`` into the ACL; Junos counts each term microseg writes
    (``then count T10``) and lists the counters with ``show firewall filter``.  The plan sums them per policy
    rule (return paths and carve-outs aside), and they never make the state look changed."""
    with fleet.engine(store) as engine:
        plan = engine.plan([point])
        lines = plan.points[point].change.commands
        counting = {"dc-prod-nxos": "statistics per-entry", "leaf-prod-eos": "counters per-entry"}.get(point)
        assert counting is None or counting in [line.strip() for line in lines]
        assert apply_plan(engine, plan, ApplyOptions(), {}).ok
        quiet = engine.plan([point]).points[point]
        assert quiet.empty
        # EOS prints no counter on an entry that matched nothing: unknown, not 0 (no document says it means 0)
        assert set(quiet.hits.values()) == (set() if point == "leaf-prod-eos" else {0}), quiet.hits
        intended = quiet.intended
        first = next(r for r in intended.rules if r.provenance.rules and r.provenance.note is None)
        direction = "INGRESS" if first.direction.value == "ingress" else "EGRESS"
        family = first.src.networks[0].version
        acl = f"MSEG-{direction}-V{family}"
        rules = [r for r in intended.rules if r.direction is first.direction
                 and {n.version for n in (*r.src.networks, *r.dst.networks)} == {family}]
        if entry is None:  # the number of the n-th permit/deny the device lists (NX-OS and EOS number remarks too)
            command = SYNTAXES[point].SYNTAX.acl_by_name[family].format(name=acl)
            numbers = [int(m[1]) for line in fleet.show(point, command).splitlines()
                       if (m := re.match(r"\s+(\d+) (?:permit|deny) ", line))]
            key: int | str = numbers[rules.index(first)]
        else:
            key = entry(rules.index(first) + 1)
        fleet.sims[point].hit(family, acl, key, 42)
        counted = engine.plan([point]).points[point]
        assert counted.empty and counted.fingerprint == quiet.fingerprint  # a ticking counter is no change
        assert {name: n for name, n in counted.hits.items() if n} == dict.fromkeys(first.provenance.rules, 42)


def test_remarks_name_each_rules_entries_and_feed_the_empty_group_guard(fleet: Fleet, store: str,
                                                                         tmp_path: Path) -> None:
    """NX-OS and EOS list a remark before each policy rule's run of entries (``mseg: admin-ssh``); read back, it
    is the provenance of what a plan would remove, so the empty-group guard refuses a switch change driven by
    an empty group — on IOS and Junos, which keep no rule names, the runs that last changed the point say it
    (an unreadable record of an older release among them is left out); a rollback writes the remarks back with
    the entries."""
    points = ["dc-prod-nxos", "leaf-prod-eos"]
    listing = {"dc-prod-nxos": "show ip access-lists MSEG-INGRESS-V4", "leaf-prod-eos": "show ip access-lists"}
    with fleet.engine(store) as engine:
        assert apply_plan(engine, engine.plan(list(SWITCHES)), ApplyOptions(), {}).ok
    before = {p: fleet.show(p, listing[p]) for p in points}
    for point in points:
        lines = before[point].splitlines()
        remarks = [line.split(" remark ", 1)[1] for line in lines if " remark " in line]
        entries = [line for line in lines if " permit " in line or " deny " in line]
        assert "mseg: admin-ssh" in remarks and "mseg: microseg-management" in remarks, before[point]
        assert len(remarks) < len(entries) / 2  # one remark per run of a rule's entries, not one per entry
    # a workload source lost the jump hosts: admin-ssh's entries would go
    policy = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policy)
    groups = yaml.safe_load((policy / "groups.yaml").read_text())
    groups["groups"]["jump-hosts"]["selector"] = {"role": "decommissioned"}
    (policy / "groups.yaml").write_text(yaml.safe_dump(groups, sort_keys=False))
    platform = yaml.safe_load((policy / "platform.yaml").read_text())
    for rule in platform["rules"]:
        if rule["name"] == "admin-ssh":
            rule["allow_empty"] = True
    (policy / "platform.yaml").write_text(yaml.safe_dump(platform, sort_keys=False))
    with open_store(store) as records:  # an older release's record this one cannot read is left out, not fatal
        run = records.create_run("apply", actor="t", ticket=None, origin_host="h", options={})
        records.record_plan(run, "sw-dev-ios", {"intended": {"point": "sw-dev-ios", "rules": []}})
        records.record_result(run, "sw-dev-ios", "new", {})
    with fleet.engine(store, policies=policy) as engine:
        plan = engine.plan(list(SWITCHES))
        # NX-OS and EOS say whose entries they are (remarks); IOS and Junos do not: the run that put them there
        # does (the plan keeps what the device says)
        for point in SWITCHES:
            removed = plan.points[point].diff.removed
            named = [r.provenance.rules for r in removed]
            assert removed and all(("admin-ssh" in n) == (point in points) for n in named), named
            assert [g.guard for g in plan.points[point].guards] == ["empty-group"]
            assert "'admin-ssh'" in plan.points[point].guards[0].message
    with fleet.engine(store, policies=policy, guards=GuardSettings(allow_empty_groups=True)) as engine:
        result = apply_plan(engine, engine.plan(points), ApplyOptions(), {})
        assert result.ok, result.to_dict()
        for point in points:
            assert "mseg: admin-ssh" not in fleet.show(point, listing[point])
        back = rollback_run(engine, result.run_id)
        assert back.by_state() == {"restored": points}, back.to_dict()
    assert {p: fleet.show(p, listing[p]) for p in points} == before  # remarks and numbers as they were


def _remark_lines(listing: str) -> dict[str, list[int]]:
    """The numbers of the remark lines of each ACL in a ``show ip access-lists`` listing (NX-OS, EOS)."""
    out: dict[str, list[int]] = {}
    acl = ""
    for line in listing.splitlines():
        if header := re.match(r"(?i)ip(?:v6)? access list (\S+)", line.strip()):
            acl = header[1]
        elif found := re.match(r"\s+(\d+) remark ", line):
            out.setdefault(acl, []).append(int(found[1]))
    return out


def _unnumbered(listing: str) -> list[str]:
    return [re.sub(r"^\s*\d+ ", "", re.sub(r"\s*\[match=\d+\]|\s*\(\d+ matches\)", "", line))
            for line in listing.splitlines() if line.strip()]


def test_an_acl_in_sync_without_its_remarks_gets_a_remark_only_change(fleet: Fleet, store: str) -> None:
    """Issue #14: ACLs whose rules are in sync but whose remarks are missing (written by a release without them)
    or someone else's get a plan that writes and deletes remark lines only: drift of kind ``annotations``,
    applied and verified like any change, nothing to do after it, rolled back exactly.  IOS and Junos, which
    write no remarks, stay in sync."""
    points = ["dc-prod-nxos", "leaf-prod-eos"]
    listing = "show ip access-lists"  # every ACL, on both platforms
    with fleet.engine(store) as engine:
        assert apply_plan(engine, engine.plan(list(SWITCHES)), ApplyOptions(), {}).ok
    full = {p: fleet.show(p, listing) for p in points}
    for point in points:  # what an older release left: the entries without remarks, and a person's remark
        numbered = _remark_lines(full[point])
        assert numbered, full[point]
        for acl, seqs in numbered.items():
            fleet.cli(point, [f"ip access-list {acl}", *(f"no {s}" for s in seqs)])
        first = min(numbered)
        fleet.cli(point, [f"ip access-list {first}", "1 remark hand-written note"])
    stripped = {p: fleet.show(p, listing) for p in points}
    assert all(_remark_lines(stripped[p]) == {min(_remark_lines(full[p])): [1]} for p in points), stripped
    sent = fleet.config_lines()
    with fleet.engine(store) as engine:
        report = reconcile(engine, list(SWITCHES), repair=False)
        for point in SWITCHES:
            finding = report.findings[point]
            if point in points:
                # the hand edit is tampering too; a release that wrote no remarks leaves only `annotations`
                assert not finding.in_sync and finding.kinds == (DriftKind.ANNOTATIONS, DriftKind.TAMPERED), finding
                assert finding.summary.startswith("rules unchanged; annotations (remarks) out of date")
            else:
                assert finding.in_sync and finding.kinds == (), finding
        plan = engine.plan(list(SWITCHES))
        assert sorted(p.point for p in plan.changes) == points
        for point in points:
            change = plan.points[point]
            assert change.annotations_only and change.diff.empty and not change.guards
            body = [c for c in change.change.commands if not re.fullmatch(r"ip access-list \S+|statistics per-entry|"
                                                                          r"(no )?counters per-entry", c)]
            assert "no 1" in body and all(re.fullmatch(r"\d+ remark mseg[:+] .*|no 1", c) for c in body), body
        assert fleet.config_lines() == sent  # planning configured nothing
        result = apply_plan(engine, plan, ApplyOptions(), {})
        others = sorted(set(SWITCHES) - set(points))
        assert result.by_state() == {"new": points, "unchanged": others}, result.to_dict()
        assert not engine.plan(list(SWITCHES)).changes  # the remarks read back as written
        for point in points:  # the rules cannot tell old from new here: a restore is judged by the raw state alone
            checkpoint = engine.store.checkpoint_of(result.run_id, point)
            assert checkpoint is not None and checkpoint["before"] is None
        after = {p: fleet.show(p, listing) for p in points}
        assert {p: _unnumbered(after[p]) for p in points} == {p: _unnumbered(full[p]) for p in points}
        back = rollback_run(engine, result.run_id)
        assert back.by_state() == {"restored": points}, back.to_dict()
    assert {p: fleet.show(p, listing) for p in points} == stripped  # exactly as it was, the hand note too
    # the session drops in the middle of writing the remarks: the point ends fully old or fully new, never with
    # some of them (its rules are in sync throughout, so only the remarks can tell)
    point = "dc-prod-nxos"
    with fleet.engine(store, workers=1) as engine:
        plan = engine.plan([point])
        assert plan.points[point].annotations_only and len(plan.points[point].change.commands) > 4
        fleet.sims[point].faults.drop_after_config_lines = 3
        result = apply_plan(engine, plan, ApplyOptions(), {})
        state = result.outcomes[point].state.value
        assert state in ("new", "restored"), result.to_dict()
        assert not fleet.sims[point].faults.drop_after_config_lines  # the fault did fire
        now = fleet.show(point, listing)
        if state == "new":  # re-sent whole after the drop
            assert _unnumbered(now) == _unnumbered(full[point]) and not engine.plan([point]).changes
        else:
            assert now == stripped[point]
