"""Diff (order-aware and set-based), flow summaries, safety guards and plan serialization — all pure."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.engine.diff import diff_rulesets
from orchestrator.engine.plan import (
    ChangePlan,
    FlowSummary,
    GuardSettings,
    Plan,
    attributed_removals,
    empty_group_guard,
    guard_findings,
    lockout_guard,
    management_access,
    mass_removal_guard,
    summarize_flows,
)
from orchestrator.model.driver import NativeChange
from orchestrator.model.rules import Action, AddressSet, Direction, Mode, Ordering, Provenance, Rule, Ruleset
from orchestrator.packetspace.flowset import Flow, FlowSet

MGMT = AddressSet.of(["10.0.0.10/32"])
HOST = AddressSet.of(["10.20.1.11/32"])


def rule(src: str, port: int, action: Action = Action.PERMIT, direction: Direction = Direction.INGRESS,
         origin: str = "r") -> Rule:
    return Rule(action, direction, 6, AddressSet.of([src]), HOST, dst_ports=((port, port),),
                provenance=Provenance(rules=(origin,)))


def ruleset(*rules: Rule, ordering: Ordering = Ordering.FIRST_MATCH, mode: Mode = Mode.ENFORCE) -> Ruleset:
    return Ruleset("p", ordering, Action.DENY, tuple(rules), mode)


A, B, C, D = rule("10.1.0.0/16", 80), rule("10.2.0.0/16", 443), rule("10.3.0.0/16", 22), rule("10.4.0.0/16", 53)


def test_identical_rulesets_have_an_empty_diff():
    diff = diff_rulesets(ruleset(A, B), ruleset(A, B))
    assert diff.empty and diff.unchanged == 2 and diff.summary() == "no changes"


def test_first_match_diff_sees_a_swap_as_a_move_not_add_and_remove():
    diff = diff_rulesets(ruleset(A, B, C), ruleset(B, A, C))
    assert not diff.added and not diff.removed and len(diff.moved) == 1


def test_insert_and_remove_in_the_middle():
    diff = diff_rulesets(ruleset(A, B, C), ruleset(A, D, C))
    assert diff.added == (D,) and diff.removed == (B,) and not diff.moved and diff.unchanged == 2


def test_unordered_diff_ignores_order_but_not_membership():
    unordered = Ordering.UNORDERED_ALLOW
    actual, intended = ruleset(A, B, ordering=unordered), ruleset(B, A, ordering=unordered)
    assert diff_rulesets(actual, intended).empty
    diff = diff_rulesets(actual, ruleset(B, C, ordering=Ordering.UNORDERED_ALLOW))
    assert diff.added == (C,) and diff.removed == (A,)


def test_settings_changes_are_part_of_the_diff():
    diff = diff_rulesets(ruleset(A), ruleset(A, mode=Mode.MONITOR))
    assert diff.settings == (("mode", "enforce", "monitor"),) and not diff.empty


def test_provenance_never_makes_a_difference():
    relabelled = A.with_provenance(Provenance(rules=("other",)))
    assert diff_rulesets(ruleset(A), ruleset(relabelled)).empty


POOL = [A, B, C, D, rule("10.5.0.0/16", 80, Action.DENY), rule("10.1.0.0/16", 80, direction=Direction.EGRESS)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(POOL), max_size=8), st.lists(st.sampled_from(POOL), max_size=8))
def test_diff_accounts_for_every_rule(actual_rules, intended_rules):
    actual, intended = ruleset(*actual_rules), ruleset(*intended_rules)
    diff = diff_rulesets(actual, intended)
    have, want = Counter(r.key() for r in actual_rules), Counter(r.key() for r in intended_rules)
    assert Counter(r.key() for r in diff.added) == want - have
    assert Counter(r.key() for r in diff.removed) == have - want
    assert diff.unchanged + len(diff.moved) + len(diff.added) == len(intended_rules)
    same_sequences = all(actual.for_direction(d) == intended.for_direction(d) for d in Direction)
    assert diff.empty == same_sequences  # directions are separate chains: only the order within one matters


def test_flow_summary_is_the_exact_packet_space_difference():
    summary = summarize_flows(ruleset(A), ruleset(A, B))
    assert summary.allowed_total == 1 and summary.denied_total == 0
    allowed = summary.newly_allowed[0]
    assert allowed.src == B.src and allowed.dst_ports == ((443, 443),)
    back = summarize_flows(ruleset(A, B), ruleset(A))
    assert back.denied_total == 1 and back.newly_denied[0].src == B.src


def test_leaving_monitor_mode_newly_denies_everything_but_what_is_allowed():
    summary = summarize_flows(ruleset(A, mode=Mode.MONITOR), ruleset(A))
    assert summary.allowed_total == 0 and summary.denied_total > 0
    denied = FlowSet.from_rules(summary.newly_denied)
    assert Flow.of("10.9.9.9", "10.20.1.11", 6, 22) in denied  # monitor let it through, enforce drops it
    assert Flow.of("10.1.2.3", "10.20.1.11", 6, 80) not in denied  # A still allows it
    assert summarize_flows(ruleset(A), ruleset(A, mode=Mode.MONITOR)).denied_total == 0


def test_mass_removal_guard_has_a_threshold_and_an_override():
    actual, intended = ruleset(A, B, C, D), ruleset(A)
    diff = diff_rulesets(actual, intended)
    finding = mass_removal_guard(diff, actual, GuardSettings())
    assert finding is not None and "3 of 4" in finding.message and finding.override == "--allow-mass-removal"
    assert mass_removal_guard(diff, actual, GuardSettings(allow_mass_removal=True)) is None
    assert mass_removal_guard(diff, actual, GuardSettings(max_removal_share=0.8)) is None
    small = diff_rulesets(ruleset(A, B), ruleset(A))
    assert mass_removal_guard(small, ruleset(A, B), GuardSettings()) is None  # fewer than min_removals


def test_lockout_guard_refuses_cutting_management_ssh():
    ssh = rule("10.0.0.10/32", 22)
    access = management_access(MGMT, HOST, [22])
    finding = lockout_guard(ruleset(ssh, A), ruleset(A), access, GuardSettings())
    assert finding is not None and "10.0.0.10" in finding.message and finding.override == "--allow-lockout"
    assert lockout_guard(ruleset(ssh, A), ruleset(ssh), access, GuardSettings()) is None
    assert lockout_guard(ruleset(ssh), ruleset(A), access, GuardSettings(allow_lockout=True)) is None
    # already blocked before: this change does not newly lock anybody out
    assert lockout_guard(ruleset(A), ruleset(B), access, GuardSettings()) is None
    # monitor mode drops nothing, so it cannot lock out
    assert lockout_guard(ruleset(ssh), ruleset(A, mode=Mode.MONITOR), access, GuardSettings()) is None


def test_lockout_guard_checks_the_reply_path_of_stateless_points():
    ssh_in = rule("10.0.0.10/32", 22)
    reply = Rule(Action.PERMIT, Direction.EGRESS, 6, HOST, MGMT, src_ports=((22, 22),))
    stateless = lambda *rules: Ruleset("p", Ordering.FIRST_MATCH, Action.DENY, rules, Mode.ENFORCE, False)  # noqa: E731
    access = management_access(MGMT, HOST, [22])
    finding = lockout_guard(stateless(ssh_in, reply), stateless(ssh_in), access, GuardSettings())
    assert finding is not None and "egress" in finding.message


def test_empty_group_guard_names_the_rule_and_group():
    driven = rule("10.9.0.0/16", 80, origin="web-from-partners")
    diff = diff_rulesets(ruleset(A, driven), ruleset(A))
    finding = empty_group_guard(diff, {"web-from-partners": ("partners",)}, GuardSettings())
    assert finding is not None and "'web-from-partners'" in finding.message and "'partners'" in finding.message
    assert empty_group_guard(diff, {"other": ("x",)}, GuardSettings()) is None
    assert empty_group_guard(diff, {"web-from-partners": ("partners",)}, GuardSettings(allow_empty_groups=True)) is None


def test_no_guard_fires_on_an_empty_diff():
    diff = diff_rulesets(ruleset(A), ruleset(A))
    assert guard_findings(diff, ruleset(A), ruleset(A), settings=GuardSettings(), empty_rules={"r": ("g",)},
                          access=management_access(MGMT, HOST)) == ()


def test_plan_round_trips_through_json():
    actual, intended = ruleset(A), ruleset(A, B)
    diff = diff_rulesets(actual, intended)
    change = NativeChange("p", "nftables", "nft-script", ("add table inet microseg",), 1)
    point = ChangePlan("p", "nftables", "sha256:x", intended, diff, change, summarize_flows(actual, intended))
    plan = Plan({"p": point}, {"q": "unreachable"}, "2026-11-21T00:00:00+00:00", "sha256:y")
    again = Plan.from_dict(plan.to_dict())
    assert again.to_dict() == plan.to_dict()
    assert again.points["p"].intended == intended and again.changes[0].point == "p"
    assert isinstance(again.points["p"].flows, FlowSummary)


def test_flow_membership_of_summaries_is_exact():
    summary = summarize_flows(ruleset(), ruleset(B))
    flow = Flow.of("10.2.3.4", "10.20.1.11", 6, 443)
    from orchestrator.packetspace.flowset import FlowSet
    assert flow in FlowSet.from_rules(summary.newly_allowed)
    assert Flow.of("10.2.3.4", "10.20.1.11", 6, 444) not in FlowSet.from_rules(summary.newly_allowed)


def test_setting_changes_read_in_one_format() -> None:
    from orchestrator.engine.diff import diff_rulesets
    from orchestrator.model.rules import Action, Mode, Ordering, Ruleset

    before = Ruleset("p", Ordering.FIRST_MATCH, Action.PERMIT, (), Mode.ENFORCE, stateful=False)
    after = Ruleset("p", Ordering.FIRST_MATCH, Action.DENY, (), Mode.ENFORCE, stateful=True)
    assert diff_rulesets(before, after).summary() == "+0 -0; default: permit → deny; stateful: no → yes"


def test_removals_a_device_does_not_name_take_their_names_from_the_points_earlier_intended_rules() -> None:
    """IOS ACLs and Junos terms keep no policy rule names, a remark may name a rule by its old name: a removed
    rule equal to one the point's stored plans intended gets that rule's names too (all of them, where several
    plans name it), so the empty-group guard sees whose entries would go; one no earlier plan had stays as it
    is."""
    def r(port: int, *names: str) -> Rule:
        return Rule(Action.PERMIT, Direction.INGRESS, 6, AddressSet.of(["10.0.0.0/8"]),
                    AddressSet.of(["10.1.0.5/32"]), dst_ports=((port, port),), provenance=Provenance(rules=names))

    earlier = [Ruleset("sw", Ordering.FIRST_MATCH, Action.DENY, (r(22, "admin-ssh"), r(80, "web")), Mode.ENFORCE),
               Ruleset("sw", Ordering.FIRST_MATCH, Action.DENY, (r(22, "break-glass"),), Mode.ENFORCE)]
    actual = Ruleset("sw", Ordering.FIRST_MATCH, Action.DENY, (r(22), r(80, "named-on-device"), r(443)), Mode.ENFORCE)
    intended = Ruleset("sw", Ordering.FIRST_MATCH, Action.DENY, (), Mode.ENFORCE)
    diff = attributed_removals(diff_rulesets(actual, intended), earlier)
    assert {r.dst_ports[0][0]: r.provenance.rules for r in diff.removed} == {
        22: ("admin-ssh", "break-glass"), 80: ("named-on-device", "web"), 443: ()}
    found = empty_group_guard(diff, {"break-glass": ("jump-hosts",)}, GuardSettings())
    assert found is not None and "'break-glass'" in found.message
    plain = diff_rulesets(actual, actual)
    assert attributed_removals(plain, earlier) is plain  # nothing removed: nothing read
