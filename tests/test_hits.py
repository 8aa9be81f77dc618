"""Rule hit reports from stored counter samples (pure): increases between samples, resets, last hit, never hit."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

from click.testing import CliRunner

from orchestrator.cli.main import main
from orchestrator.engine.auditreport import _action, render_html
from orchestrator.engine.hits import rule_hit_report
from orchestrator.engine.plan import rule_hits
from orchestrator.model.driver import Observed
from orchestrator.model.policy import RuleAction
from orchestrator.model.rules import ANY_ADDRESS, Action, Direction, Ordering, Provenance, Rule, Ruleset
from orchestrator.store import open_store

REPO = Path(__file__).resolve().parents[1]

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def at(hours: int) -> datetime:
    return T0 + timedelta(hours=hours)


def test_packets_are_the_increases_between_samples_and_a_reset_starts_over() -> None:
    samples = [
        (at(0), "a", {"web": 100, "ssh": 5}, "7"),  # the baseline: nothing counted for the window yet
        (at(0), "b", {"web": 7}, ""),
        (at(1), "a", {"web": 130, "ssh": 5}, "7"),  # +30
        (at(2), "a", {"web": 10, "ssh": 5}, "7"),  # lower: the counter started over, +10
        (at(2), "b", {"web": 7}, ""),  # nothing on b
        (at(3), "a", {"web": 10, "ssh": 5}, "7"),
        (at(3), "c", {"web": 900}, "2"),  # c's first sample: a baseline, not "never hit"
        (at(4), "a", {"web": 12, "ssh": 5}, "9"),  # an apply rewrote the table (new epoch): 12 since, not 2
    ]
    web, ssh, idle = rule_hit_report(samples, ["web", "ssh", "idle"])
    assert (web.packets, web.points, web.last_hit) == (52, {"a": 52, "b": 0, "c": 0}, at(4))
    assert web.never_hit == ["b"] and web.latest == {"a": 12, "b": 7, "c": 900} and web.samples == 8
    assert (ssh.packets, ssh.last_hit, ssh.never_hit) == (5, at(4), [])  # its counter restarted at 5 too
    assert not idle.counted and idle.to_dict()["packets"] == 0 and idle.to_dict()["last_hit"] is None
    assert web.to_dict()["last_hit"] == "2026-12-01T04:00:00+00:00"
    assert web.to_dict()["since_counters_started"] == 12 + 7 + 900


def test_rules_only_the_samples_name_are_reported_after_the_policys() -> None:
    report = rule_hit_report([(at(0), "a", {"gone": 1}, ""), (at(1), "a", {"gone": 4}, "")], ["web"])
    assert [r.rule for r in report] == ["web", "gone"] and report[1].packets == 3


def two_drift_samples(url: str) -> None:
    """Two drift runs' counts on web-prod-01: admin-ssh stays at 4 (no packet between), dns grows."""
    store = open_store(url)
    try:
        for counts in ({"admin-ssh": 4, "dns": 10}, {"admin-ssh": 4, "dns": 25}):
            run = store.create_run("drift", actor="t", ticket=None, origin_host="h", options={})
            store.record_plan(run, "web-prod-01", {"hits": counts})
            store.finish_run(run, "in_sync", {})
    finally:
        store.close()


def test_lint_warns_of_allow_rules_the_counters_never_saw_hit(tmp_path: Path) -> None:
    """`microseg lint` reads the stored counter samples (when the store exists; it never creates one): an allow
    rule counted twice or more without a packet in between is an ``unhit-rule`` warning naming where."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    base = ["--policy", str(REPO / "policies"), "--inventory", str(REPO / "inventory"), "--today", "2026-11-21",
            "--store", url, "lint", "--json"]
    absent = CliRunner().invoke(main, base)
    assert "unhit-rule" not in absent.stdout and not (tmp_path / "state.db").exists()
    two_drift_samples(url)
    found = json.loads(CliRunner().invoke(main, base).stdout)["findings"]
    unhit = [f for f in found if f["code"] == "unhit-rule"]
    assert len(unhit) == 1 and "'admin-ssh' matched no packet on web-prod-01 over 2 counter samples" in unhit[0][
        "message"]
    assert unhit[0]["severity"] == "warning" and unhit[0]["file"].endswith("platform.yaml") and unhit[0]["line"]


def test_the_report_shows_a_watched_deny_rule_as_monitor_not_as_deny() -> None:
    """A deny rule in ``mode: monitor`` lets traffic through: its matrix cell says monitor, in its own colour."""
    watched = SimpleNamespace(allows=False, action=Action.PERMIT, rule=SimpleNamespace(action=RuleAction.DENY))
    enforced = SimpleNamespace(allows=False, action=Action.DENY, rule=SimpleNamespace(action=RuleAction.DENY))
    assert (_action(watched), _action(enforced)) == ("monitor", "deny")
    cell = {"verdict": "monitor", "rules": [{"rule": "no-telnet", "action": "monitor", "services": ["tcp/23"]}],
            "observed": 0}
    page = render_html({"generated": "now", "policy_digest": "d", "default_action": "deny", "groups": ["a"],
                        "groups_not_drawn": [], "flows": None, "matrix": {"a": {"a": cell}}, "run": None})
    assert '<td class="monitor" data-verdict="monitor"' in page and "monitor tcp/23 (no-telnet)" in page


def test_an_entry_counts_for_the_policy_rules_it_does_what_they_say_for() -> None:
    """A return path counts replies and a carve-out counts what a deny drops in a permit's stead: neither is a hit
    of the rule they were compiled for; an entry several rules share counts for each of them."""
    def rule(action: Action, port: int, names: tuple[str, ...], note: str | None = None) -> Rule:
        return Rule(action, Direction.INGRESS, 6, ANY_ADDRESS, ANY_ADDRESS, dst_ports=((port, port),),
                    provenance=Provenance(rules=names, note=note))

    intended = Ruleset("sw", Ordering.FIRST_MATCH, Action.DENY, (
        rule(Action.PERMIT, 1, ("web",), "return path"), rule(Action.DENY, 2, ("web",), "carve-out"),
        rule(Action.PERMIT, 3, ("web", "api")), rule(Action.PERMIT, 4, ("ssh",))))
    observed = Observed(replace(intended, rules=tuple(r.with_provenance(Provenance()) for r in intended.rules)),
                        hits=(100, 50, 7, None))
    assert rule_hits(observed, intended) == {"api": 7, "web": 7}
    assert rule_hits(Observed(intended), intended) == {}  # a driver that reads no counters


def test_simulate_without_flows_judges_rules_by_the_stored_hit_counters(tmp_path: Path) -> None:
    """No flow logs, but counters: `microseg simulate` says which allow rules matched no packet (exit 0); with
    neither it says what to do first (exit 1)."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    base = ["--policy", str(REPO / "policies"), "--inventory", str(REPO / "inventory"), "--today", "2026-11-21",
            "--store", url, "simulate", "--json", "--flow-store", str(tmp_path / "flows.duckdb")]
    nothing = CliRunner().invoke(main, base)
    assert nothing.exit_code == 1 and "no rule hit counters" in nothing.output
    two_drift_samples(url)
    result = CliRunner().invoke(main, base)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["conversations"] == 0 and report["hit_samples"] == 2
    assert [f["code"] for f in report["findings"]] == ["unhit-rule"] and "'admin-ssh'" in report["findings"][0][
        "message"]


def test_flow_log_names_are_attributed_only_where_they_meant_one_thing() -> None:
    """A logged rule name is read through the stored plans' names around the flow's time: the same policy rules
    before and after → attributed; renamed in between (Azure names rules by priority, a change moves them),
    older than every sample, or after a last sample that planned a change (read before the change was made) →
    ambiguous, attributed to nothing; a name no plan gives (Azure's own default rules) → unattributed."""
    from orchestrator.engine.hits import flow_log_evidence

    def epoch(hours: float) -> int:
        return int((T0 + timedelta(hours=hours)).timestamp())

    web, ssh = "nsg/UserRule_mseg-in-0100", "nsg/UserRule_mseg-in-0110"
    samples = [(at(0), "nsg", {web: ("web",), ssh: ("ssh",)}, True),
               (at(2), "nsg", {web: ("web",), ssh: ("db", "ssh")}, True),
               (at(4), "nsg", {web: ("web",), ssh: ("db", "ssh")}, True)]
    rows = [(web, 3, 30, epoch(1), epoch(1.5)),
            (web, 2, 0, epoch(5), epoch(5.2)),  # after the last sample, which changed nothing: read with it
            (web, 6, 0, epoch(-1), epoch(-0.5)),  # older than every sample: the names meant nothing known then
            (ssh, 4, 40, epoch(1), epoch(1.2)),  # 0110 changed meaning at 2h: ambiguous
            (ssh, 1, 10, epoch(3), epoch(3.1)),  # both sides say db, ssh
            ("nsg/DefaultRule_DenyAllInBound", 7, 0, epoch(1), epoch(1))]
    evidence = flow_log_evidence(rows, samples)
    assert {rule: (use.records, use.packets, use.last_seen) for rule, use in evidence.rules.items()} == {
        "web": (5, 30, epoch(5.2)), "db": (1, 10, epoch(3.1)), "ssh": (1, 10, epoch(3.1))}
    assert evidence.ambiguous == {web: 6, ssh: 4} and evidence.unattributed == 7
    assert evidence.attributed == 3 + 2 + 1  # the db, ssh row once
    assert evidence.rules["web"].to_dict()["last_seen"] == "2026-12-01T05:12:00+00:00"

    changing = [*samples[:2], (at(4), "nsg", {web: ("web",), ssh: ("db", "ssh")}, False)]  # an apply's plan
    later = flow_log_evidence([(web, 2, 0, epoch(5), epoch(5.2)), (web, 3, 0, epoch(3), epoch(3.5))], changing)
    assert later.ambiguous == {web: 2} and later.rules["web"].records == 3  # before that plan: still known
    two = [(at(0), "a", {web: ("web",)}, True), (at(0), "b", {web: ("web",)}, True)]  # one run, two points
    assert flow_log_evidence([(web, 1, 0, epoch(0), epoch(0))], two).rules["web"].records == 1


def test_the_names_a_cloud_point_logs_stand_for_the_policy_rules_of_the_entries_they_name() -> None:
    """``rule_log_names`` gives each logged name the policy rules of the intended rule equal to the observed one; a
    rule without a policy rule of its own (a return path) or one the policy does not intend names none."""
    from orchestrator.engine.plan import rule_log_names

    web = Rule(Action.PERMIT, Direction.INGRESS, 6, ANY_ADDRESS, ANY_ADDRESS, dst_ports=((443, 443),))
    back = replace(web, direction=Direction.EGRESS)
    intended = Ruleset("p", Ordering.PRIORITY, Action.DENY, (
        web.with_provenance(Provenance(rules=("public-web", "partner-web"))),
        back.with_provenance(Provenance(rules=("public-web",), note="return path"))))
    observed = Observed(Ruleset("p", Ordering.PRIORITY, Action.DENY, (web, back)),
                        log_names=(("nsg/UserRule_mseg-in-0100", "guid/UserRule_mseg-in-0100"),
                                   ("nsg/UserRule_mseg-out-0100",)))
    assert rule_log_names(observed, intended) == {"guid/UserRule_mseg-in-0100": ("partner-web", "public-web"),
                                                  "nsg/UserRule_mseg-in-0100": ("partner-web", "public-web")}
    assert rule_log_names(Observed(observed.ruleset), intended) == {}
    stray = replace(web, dst_ports=((22, 22),)).with_provenance(Provenance(rules=("microseg default deny",)))
    hand = Observed(Ruleset("p", Ordering.PRIORITY, Action.DENY, (stray,)), log_names=(("nsg/UserRule_x",),))
    assert rule_log_names(hand, intended) == {}  # a description is no policy rule


def test_hits_never_creates_a_flow_store_and_reads_one_another_command_holds(tmp_path: Path) -> None:
    """`hits` reports the counters whatever the flow store's state: a missing one is a warning (never created), one
    a `collect` holds open for writing is a warning too."""
    from orchestrator.flows.store import FlowStore

    url = f"sqlite:///{tmp_path / 'state.db'}"
    two_drift_samples(url)
    base = ["--policy", str(REPO / "policies"), "--store", url, "hits", "--flow-store"]
    missing = tmp_path / "nowhere" / "flows.duckdb"
    result = CliRunner().invoke(main, [*base, str(missing)])
    assert result.exit_code == 0 and "no flow store at" in result.stderr and "dns" in result.stdout
    as_json = CliRunner().invoke(main, [*base[:-1], "--json", "--flow-store", str(missing)])
    assert json.loads(as_json.stdout)["flow_logs"]["attributed"] == 0  # the warning stays off stdout
    assert not missing.exists() and not missing.parent.exists()
    held = tmp_path / "flows.duckdb"
    with FlowStore(held):  # a collect writing right now
        result = CliRunner().invoke(main, [*base, str(held)])
    assert result.exit_code == 0 and "no flow-log evidence this time" in result.stderr and "dns" in result.stdout


def test_the_name_samples_start_from_each_points_last_one_before_the_window(tmp_path: Path) -> None:
    """``log_name_samples(since)`` reads from the oldest of each point's last plan at or before ``since`` on: a
    point sampled before another one is not cut off (its flows would be left without their meaning)."""
    import time

    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        run = store.create_run("drift", actor="t", ticket=None, origin_host="h", options={})
        store.record_plan(run, "nsg-a", {"log_names": {"a/UserRule_x": ["web"]}, "diff": {}})
        time.sleep(0.05)
        store.record_plan(run, "nsg-b", {"log_names": {"b/UserRule_y": ["db"]}, "diff": {"added": [{}]}})
        time.sleep(0.05)
        since = datetime.now(UTC)
        time.sleep(0.05)
        later = store.create_run("drift", actor="t", ticket=None, origin_host="h", options={})
        store.record_plan(later, "nsg-a", {"log_names": {"a/UserRule_x": ["web"]}, "diff": {}})
        samples = store.log_name_samples(since)
    finally:
        store.close()
    assert [(point, dict(names), settled) for _, point, names, settled in samples] == [
        ("nsg-a", {"a/UserRule_x": ("web",)}, True), ("nsg-b", {"b/UserRule_y": ("db",)}, False),
        ("nsg-a", {"a/UserRule_x": ("web",)}, True)]


def test_lint_and_simulate_count_a_rule_the_cloud_flow_logs_name_as_used(tmp_path: Path) -> None:
    """Cloud points keep no counters; their flow logs name the rule that decided each flow.  A policy rule those
    names stand for (through the stored plans) was used: `lint` gives it neither ``unhit-rule`` (its switch
    counters saw nothing) nor ``unused-rule`` (the replay of today's policy found no flow for it), and `simulate`
    does not list it as unused.  The same record without a rule name leaves both warnings in place."""
    import time

    from orchestrator.flows.store import FlowStore
    from orchestrator.model.flows import FlowRecord

    url = f"sqlite:///{tmp_path / 'state.db'}"
    two_drift_samples(url)  # admin-ssh counted twice on web-prod-01 without a packet in between
    store = open_store(url)
    try:
        run = store.create_run("drift", actor="t", ticket=None, origin_host="h", options={})
        store.record_plan(run, "nsg-web", {"log_names": {"nsg-web/UserRule_mseg-in-0100": ["admin-ssh"]},
                                           "diff": {}})  # settled: no change planned, the names hold after it
        store.finish_run(run, "in_sync", {})
    finally:
        store.close()
    now = int(time.time()) + 5

    def flows(name: str, rule: str) -> Path:
        path = tmp_path / name
        with FlowStore(path) as flow_store:
            flow_store.import_records("azure", "nsg-web.json", [FlowRecord(
                now, now + 10, "192.0.2.10", "192.0.2.20", 6, 40000, 22, 12, 900, "accept", "src", "nsg-web",
                rule)])
        return path

    def warned(path: Path, code: str) -> set[str]:
        result = CliRunner().invoke(main, ["--policy", str(REPO / "policies"), "--inventory", str(REPO / "inventory"),
                                           "--today", "2026-11-21", "--store", url, "lint", "--json",
                                           "--flow-store", str(path)])
        return {f["message"].split("'")[1] for f in json.loads(result.stdout)["findings"] if f["code"] == code}

    unnamed, named = flows("unnamed.duckdb", ""), flows("named.duckdb", "nsg-web/UserRule_mseg-in-0100")
    assert "admin-ssh" in warned(unnamed, "unhit-rule") and "admin-ssh" in warned(unnamed, "unused-rule")
    assert "admin-ssh" not in warned(named, "unhit-rule") and "admin-ssh" not in warned(named, "unused-rule")
    assert warned(named, "unused-rule") == warned(unnamed, "unused-rule") - {"admin-ssh"} != set()

    result = CliRunner().invoke(main, ["--policy", str(REPO / "policies"), "--inventory", str(REPO / "inventory"),
                                       "--today", "2026-11-21", "--store", url, "simulate", "--json",
                                       "--flow-store", str(named)])
    report = json.loads(result.stdout)
    assert report["conversations"] == 1 and "admin-ssh" not in report["unused_rules"] and report["unused_rules"]


def test_lint_simulate_and_discover_never_create_a_flow_store(tmp_path: Path) -> None:
    """A flow store named but missing is a warning (stderr) and no flows, never a new empty DuckDB file; the
    default one is not created either."""
    missing = tmp_path / "nowhere" / "flows.duckdb"
    base = ["--policy", str(REPO / "policies"), "--inventory", str(REPO / "inventory"), "--today", "2026-11-21",
            "--store", f"sqlite:///{tmp_path / 'state.db'}"]
    lint = CliRunner().invoke(main, [*base, "lint", "--json", "--flow-store", str(missing)])
    assert "no flow store at" in lint.stderr and json.loads(lint.stdout)["findings"] is not None
    simulate = CliRunner().invoke(main, [*base, "simulate", "--flow-store", str(missing)])
    assert simulate.exit_code == 1 and "holds no flows" in simulate.output
    discover = CliRunner().invoke(main, [*base, "discover", "--flow-store", str(missing)])
    assert discover.exit_code == 1 and "holds no flows" in discover.output
    assert not missing.exists() and not missing.parent.exists()


def test_flows_logged_at_an_interface_are_evaluated_against_the_rules_it_carried_then() -> None:
    """AWS VPC Flow Logs name no rule, only the ENI.  A record logged at an ENI the stored plans say carried the
    point's group is judged by that group's rules of then: into the ENI's address by the ingress rules, out of it
    by the egress rules; every matching allow counts (a security group is a union of allows), a return path or
    carve-out entry for nothing.  A reply (the far end opened it), a reject, a flow no owned rule matches and one
    at an ENI no plan names are unattributed; a flow older than every sample, across a change of the ENI's rules
    or after a last plan that planned a change is ambiguous, as for names."""
    from orchestrator.engine.hits import evaluated_evidence
    from orchestrator.model.rules import AddressSet

    def epoch(hours: float) -> int:
        return int((T0 + timedelta(hours=hours)).timestamp())

    def allow(direction: Direction, src: str, dst: str, port: int, names: tuple[str, ...],
              note: str | None = None) -> Rule:
        return Rule(Action.PERMIT, direction, 6, AddressSet.of([src]), AddressSet.of([dst]),
                    dst_ports=((port, port),), provenance=Provenance(rules=names, note=note))

    db = "10.0.2.5/32"
    rules = (allow(Direction.INGRESS, "10.0.1.0/24", db, 5432, ("app-db",)),
             allow(Direction.INGRESS, "10.0.1.7/32", db, 5432, ("batch-db", "app-db")),
             allow(Direction.INGRESS, "0.0.0.0/0", db, 443, ("web",), "return path"),
             allow(Direction.EGRESS, db, "10.0.9.0/24", 53, ("dns",)))
    first = Ruleset("aws-db", Ordering.UNORDERED_ALLOW, Action.DENY, rules, stateful=True)
    second = replace(first, rules=rules[:1] + rules[2:])  # batch-db gone from 2h on
    eni = {"eni-db": ("10.0.2.5",)}
    samples = [(at(0), "aws-db", eni, first.to_dict(), None, True), (at(1), "aws-db", eni, first.to_dict(), None, True),
               (at(2), "aws-db", eni, second.to_dict(), None, True),
               (at(4), "aws-db", eni, second.to_dict(), None, True)]

    def row(src: str, dst: str, sport: int, dport: int, initiator: str | None, action: str | None, records: int,
            hours: float, observer: str = "eni-db") -> tuple:
        return (observer, src, dst, 6, sport, dport, initiator, action, records, records * 10, epoch(hours),
                epoch(hours + 0.1))

    rows = [row("10.0.1.7", "10.0.2.5", 40000, 5432, "src", "accept", 3, 0.5),  # both rules match: one record each
            row("10.0.1.8", "10.0.2.5", 40001, 5432, None, "accept", 2, 2.5),  # opener unknown: judged
            row("10.0.1.7", "10.0.2.5", 40002, 5432, "src", "accept", 4, 2.5),  # batch-db is gone by then
            row("10.0.2.5", "10.0.9.9", 40003, 53, "src", None, 5, 0.5),  # out of the ENI: the egress rules
            row("10.0.1.7", "10.0.2.5", 9000, 5432, "dst", "accept", 7, 0.5),  # a reply app-db would match
            row("10.0.1.7", "10.0.2.5", 40009, 5432, "src", "reject", 11, 0.5),  # refused (a network ACL): no hit
            row("10.0.1.7", "10.0.2.5", 40000, 8080, "src", "accept", 13, 0.5),  # another group let it in
            row("198.51.100.1", "10.0.2.5", 40000, 443, "src", "accept", 17, 0.5),  # a return path: nobody's
            row("10.0.1.7", "10.0.3.3", 40000, 5432, "src", "accept", 19, 0.5, "eni-other"),  # no plan's: not read
            row("10.0.1.7", "10.0.2.5", 40000, 5432, "src", "accept", 23, -1),  # older than every sample
            row("10.0.1.7", "10.0.2.5", 40000, 5432, "src", "accept", 29, 1.5)]  # its rules changed at 2h
    rows[-1] = (*rows[-1][:10], epoch(1.5), epoch(2.5))
    evidence = evaluated_evidence(rows, samples)
    assert {rule: (use.records, use.packets) for rule, use in evidence.rules.items()} == {
        "app-db": (3 + 2 + 4, 90), "batch-db": (3, 30), "dns": (5, 50)}
    assert evidence.attributed == 3 + 2 + 4 + 5
    assert evidence.unattributed == 7 + 11 + 13 + 17
    assert evidence.ambiguous == {"eni-db": 23 + 29}
    assert evidence.rules["app-db"].to_dict()["evaluated_at"] == ["eni-db"]
    assert evidence.rules["app-db"].last_seen == epoch(2.6)

    mode = {"added": [], "removed": [], "moved": [], "settings": [{"name": "mode", "actual": "enforce",
                                                                    "intended": "monitor"}]}
    changing = [*samples[:3], (at(4), "aws-db", eni, second.to_dict(), mode, False)]  # its last plan had changes
    assert evaluated_evidence([row("10.0.1.8", "10.0.2.5", 1, 5432, "src", "accept", 1, 5)], changing).ambiguous \
        == {"eni-db": 1}


def test_an_interface_is_judged_only_by_rules_known_to_be_in_force_on_it() -> None:
    """A plan that found changes read what was enforced: for a union of allows, its intended rules less what it
    would add plus what it would remove — a drifted or not yet applied point is judged by what it had, and a flow
    across a change is ambiguous.  An ENI a plan does not list did not carry the group then (not attached yet, or
    detached): its flows are not the point's.  An ENI carrying two points' groups is judged by both.  Addresses are
    compared in one spelling whatever the log wrote.  A reject is no rule's even where the rules are unclear."""
    from orchestrator.engine.hits import _interface_timelines, evaluated_evidence
    from orchestrator.model.rules import AddressSet

    def epoch(hours: float) -> int:
        return int((T0 + timedelta(hours=hours)).timestamp())

    def allow(port: int, name: str, dst: str = "10.0.2.5/32", src: str = "10.0.1.0/24") -> Rule:
        return Rule(Action.PERMIT, Direction.INGRESS, 6, AddressSet.of([src]), AddressSet.of([dst]),
                    dst_ports=((port, port),), provenance=Provenance(rules=(name,)))

    def ruleset(point: str, *rules: Rule) -> dict:
        return Ruleset(point, Ordering.UNORDERED_ALLOW, Action.DENY, rules, stateful=True).to_dict()

    def row(hours: float, port: int = 5432, dst: str = "10.0.2.5", observer: str = "eni-db",
            action: str = "accept") -> tuple:
        return (observer, "10.0.1.7", dst, 6, 40000, port, "src", action, 1, 10, epoch(hours), epoch(hours))

    def diff(added: tuple[Rule, ...] = (), removed: tuple[Rule, ...] = ()) -> dict:
        return {"added": [r.to_dict() for r in added], "removed": [r.to_dict() for r in removed], "moved": [],
                "settings": []}

    app, ssh = allow(5432, "app-db"), allow(22, "admin-ssh")
    db = ruleset("sg-db", app)
    eni = {"eni-db": ("10.0.2.5",)}
    revoked = diff(added=(app,))  # someone revoked app-db's rule by hand: the plan would add it back
    drifted = [(at(0), "sg-db", eni, db, None, True), (at(1), "sg-db", eni, db, revoked, False),
               (at(2), "sg-db", eni, db, revoked, False), (at(3), "sg-db", eni, db, None, True)]  # repaired by 3h
    evidence = evaluated_evidence([row(0.5), row(1.5), row(2.5), row(3.5), row(0.5, action="reject")], drifted)
    assert evidence.ambiguous == {"eni-db": 2}  # 0.5 and 2.5: across the revoke and the repair
    assert evidence.unattributed == 2 and evidence.rules["app-db"].records == 1  # 1.5: nothing allowed it there

    pending = diff(added=(app,), removed=(ssh.with_provenance(Provenance(rules=("admin-ssh",))),))
    waiting = [(at(h), "sg-db", eni, db, pending, False) for h in range(4)]  # a policy change not applied yet
    evidence = evaluated_evidence([row(0.5, 22), row(1.5, 22), row(2.5, 5432)], waiting)
    assert {rule: use.records for rule, use in evidence.rules.items()} == {"admin-ssh": 2}
    assert (evidence.unattributed, evidence.ambiguous) == (1, {})

    detached = [(at(0), "sg-db", eni, db, None, True), (at(1), "sg-db", {}, db, None, True),
                (at(2), "sg-db", {}, db, None, True)]
    evidence = evaluated_evidence([row(0.5), row(1.5), row(30)], detached)
    assert (evidence.ambiguous, evidence.attributed, evidence.unattributed) == ({"eni-db": 1}, 0, 0)

    web = ruleset("sg-web", allow(443, "web"))
    both = [(at(0), "sg-db", eni, db, None, True), (at(0), "sg-web", eni, web, None, True),
            (at(1), "sg-db", eni, db, None, True), (at(1), "sg-web", eni, web, None, True)]
    evidence = evaluated_evidence([row(0.5), row(0.5, 443), row(0.5, 22)], both)
    assert {rule: use.records for rule, use in evidence.rules.items()} == {"app-db": 1, "web": 1}
    assert (evidence.attributed, evidence.unattributed, evidence.ambiguous) == (2, 1, {})

    later = [(at(0), "sg-db", eni, db, None, True), (at(5), "sg-db", eni, db, None, True),
             (at(3), "sg-web", {}, web, None, True), (at(4), "sg-web", eni, web, None, True)]  # web attached at 4h
    later.sort(key=lambda sample: sample[0])
    evidence = evaluated_evidence([row(1), row(4.5, 443)], later)
    assert {rule: use.records for rule, use in evidence.rules.items()} == {"app-db": 1, "web": 1}
    assert evidence.ambiguous == {}  # before the new group's first plan, the ENI was not its

    churn = [(at(h), "sg-db", {f"eni-{h}": ("10.0.2.5",), "eni-db": ("10.0.2.5",)}, db, None, True)
             for h in range(200)]  # one ENI replaced per sample
    timelines, _ = _interface_timelines(churn)
    entries = sum(len(t.entries) for by_point in timelines.values() for t in by_point.values())
    assert entries < 8 * 200  # a few per ENI, not one per sample for every ENI ever listed (200 × 200)

    tied = [(at(0), "sg-db", eni, db, None, True), (at(0), "sg-db", {}, db, None, True),  # detached in that instant
            (at(1), "sg-db", {}, db, None, True), (at(2), "sg-db", {}, db, None, True)]
    evidence = evaluated_evidence([row(1.5)], tied)
    assert (evidence.ambiguous, evidence.attributed, evidence.unattributed) == ({}, 0, 0)  # not the point's then

    v6 = ruleset("sg-v6", allow(5432, "v6-db", "2001:db8::5/128", "2001:db8:1::/64"))
    six = {"eni-6": ("2001:db8::5",)}
    rows = [("eni-6", "2001:db8:1::7", dst, 6, 40000, 5432, "src", "accept", 1, 1, epoch(0.5), epoch(0.5))
            for dst in ("2001:db8::5", "2001:DB8::5", "2001:0db8:0000:0000:0000:0000:0000:0005")]
    spelled = [(at(0), "sg-v6", six, v6, None, True), (at(1), "sg-v6", six, v6, None, True)]
    assert evaluated_evidence(rows, spelled).rules["v6-db"].records == 3  # as a bulk load keeps the text


def test_unnamed_flows_are_read_only_from_interface_logs_and_without_ephemeral_ports(tmp_path: Path) -> None:
    """The flow store gives evaluation only what sources logging interfaces wrote (``OBSERVER_ONLY``: AWS VPC
    Flow Logs, not conntrack), and one row per connection key rather than per ephemeral source port — unless the
    interface's rules match on source ports."""
    from orchestrator.flows.sources import observer_only_sources
    from orchestrator.flows.store import FlowStore
    from orchestrator.model.flows import FlowRecord

    assert observer_only_sources({"vpc", "conntrack", "points"}) == ({"vpc"}, set())
    start = int(T0.timestamp())
    records = [FlowRecord(start + k, start + k + 5, "10.0.1.7", "10.0.2.5", 6, 40000 + k, 5432, 2, 80, "accept",
                          "src", "eni-db") for k in range(5)]
    with FlowStore(tmp_path / "flows.duckdb") as store:
        store.import_records("vpc", "vpc.log", records)
        store.import_records("conntrack", "host", [FlowRecord(start - 9000, start - 8990, "10.0.1.7", "10.0.2.5", 6,
                                                              1, 22, 1, 1, None, None, "eni-db")])
        assert store.unnamed_extent({"vpc"}) == (start, {"eni-db"})
        assert store.unnamed_extent(set()) == (None, set())
        merged = store.unnamed_flows({"vpc"}, {"eni-db"})
        assert [(row[4], row[8], row[9]) for row in merged] == [(0, 5, 10)]  # one row: 5 records, 10 packets
        kept = store.unnamed_flows({"vpc"}, {"eni-db"}, source_ports={"eni-db"})
        assert sorted(row[4] for row in kept) == [40000 + k for k in range(5)]
        assert store.unnamed_flows({"conntrack"}, {"eni-db"})[0][5] == 22
        assert store.sources() == {"vpc", "conntrack"}
        assert store.unnamed_flows({"vpc"}, {"eni-db"}, not_before=start + 1)[0][8] == 4  # imported since: not read
