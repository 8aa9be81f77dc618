"""The vendor-neutral ACL edit planner and layout: lines grow with the delta, order is kept, defaults round trip."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.cisco_ios import syntax as ios
from drivers.netacl.ace import Ace, Acl, Binding, DeviceAcls, Entry, Unread, Unsupported
from drivers.netacl.edits import STEP, plan_exact, plan_named, plan_numbered
from drivers.netacl.layout import (
    entry_label,
    existing_enforcement,
    observed_ruleset,
    owned_state,
    parse_settings,
    target_aces,
    without_counters,
)
from orchestrator.engine.native import fresh_change
from orchestrator.engine.project import load_project
from orchestrator.model.errors import ParseError, PermanentDriverError
from orchestrator.model.rules import (
    CARVE_OUT_NOTE,
    RETURN_NOTE,
    Action,
    AddressSet,
    Direction,
    Mode,
    Ordering,
    Provenance,
    Rule,
    Ruleset,
)
from tests.conftest import REPO
from tests.test_engine_switches import TODAY


def ace(n: int, action: Action = Action.PERMIT) -> Ace:
    return Ace(action, 6, ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network(f"10.1.{n // 256}.{n % 256}/32"),
               dst_ports=((443, 443),))


def apply_numbered(current: list[tuple[int, Ace]], script_target: list[Ace], *, can_resequence: bool = True,
                   max_seq: int = 2147483647) -> tuple[list[tuple[int, Ace]], int]:
    """What a device does with the script: the resulting (seq, ace) list and the number of entry lines."""
    script = plan_numbered("A", 4, current, script_target, max_seq=max_seq, can_resequence=can_resequence)
    entries = dict(current)
    if script.resequence:
        entries = {STEP * (i + 1): a for i, (_, a) in enumerate(sorted(entries.items()))}
    for add in script.adds:
        assert add.key not in entries, f"sequence {add.key} is still taken"
        entries[int(add.key)] = add.ace
    for seq in script.deletes:
        del entries[int(seq)]
    return sorted(entries.items()), len(script.adds) + len(script.deletes)


def test_fresh_acl_numbers_by_ten() -> None:
    script = plan_numbered("A", 4, None, [ace(1), ace(2)], max_seq=100, can_resequence=True)
    assert script.create and [a.key for a in script.adds] == [10, 20] and not script.deletes


def test_one_insert_into_two_thousand_entries_is_one_line() -> None:
    current = [(STEP * (i + 1), ace(i)) for i in range(2000)]
    target = [a for _, a in current]
    target.insert(1234, ace(5000))
    result, lines = apply_numbered(current, target)
    assert lines == 1
    assert [a for _, a in result] == target
    assert dict(result)[STEP * 1234] == ace(1233) and dict(result)[STEP * 1235] == ace(1234)  # neighbours kept


def test_removal_and_reorder_are_deletes_and_adds() -> None:
    current = [(10, ace(1)), (20, ace(2)), (30, ace(3))]
    result, lines = apply_numbered(current, [ace(3), ace(1)])
    assert [a for _, a in result] == [ace(3), ace(1)]
    assert lines == 3  # add ace(3) before 10, delete 20 and the old 30


def test_full_gap_resequences_then_inserts() -> None:
    current = [(1, ace(1)), (2, ace(2)), (3, ace(3))]
    target = [ace(1), ace(9), ace(2), ace(3)]
    script = plan_numbered("A", 4, current, target, max_seq=1000, can_resequence=True)
    assert script.resequence
    result, _ = apply_numbered(current, target, max_seq=1000)
    assert [a for _, a in result] == target


def test_full_gap_without_resequence_rebuilds_after_the_old_entries() -> None:
    current = [(1, ace(1)), (2, ace(2))]
    target = [ace(1), ace(9), ace(2)]
    script = plan_numbered("A", 6, current, target, max_seq=1000, can_resequence=False)
    assert not script.resequence and set(script.deletes) == {1, 2} and min(a.key for a in script.adds) > 2
    result, _ = apply_numbered(current, target, can_resequence=False, max_seq=1000)
    assert [a for _, a in result] == target


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 30), max_size=25, unique=True), st.lists(st.integers(0, 30), max_size=25, unique=True),
       st.lists(st.integers(1, 40), min_size=25, max_size=25, unique=True))
def test_any_edit_reaches_the_target_in_order(before: list[int], after: list[int], seqs: list[int]) -> None:
    current = list(zip(sorted(seqs)[:len(before)], [ace(n) for n in before], strict=True))
    target = [ace(n) for n in after]
    result, lines = apply_numbered(current, target, max_seq=1000)
    assert [a for _, a in result] == target
    assert lines <= len(before) + len(after) + len(target) * 2  # bounded: resequence/rebuild at worst


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 30), max_size=25, unique=True), st.lists(st.integers(0, 30), max_size=25, unique=True))
def test_named_terms_reach_the_target_in_order(before: list[int], after: list[int]) -> None:
    current = [(f"T{10 * (i + 1)}", ace(n)) for i, n in enumerate(before)]
    script = plan_named("F", 4, current, [ace(n) for n in after], new_name=lambda n, _label: f"T{n}")
    terms = [(k, a) for k, a in current if k not in script.deletes]
    for add in script.adds:  # Junos: `set` appends, `insert … before` moves
        assert add.key not in dict(terms)
        terms.append((add.key, add.ace))
        if add.before is not None:
            terms.pop()
            terms.insert([k for k, _ in terms].index(add.before), (add.key, add.ace))
    assert [a for _, a in terms] == [ace(n) for n in after]
    kept = len(set(before) & set(after))
    assert len(script.adds) + len(script.deletes) <= len(before) + len(after) - 2 * kept + 2 * len(after)


# ---------------------------------------------------------------- layout

MEMBERS = AddressSet.of(["10.30.1.0/24", "fd00:30:1::/64"])


def acl_settings(**extra: object):
    return parse_settings({"bindings": [{"interface": "Vlan301"}], **extra}, "sw", "ios", MEMBERS)


def rule(direction: Direction, dst: str, action: Action = Action.PERMIT) -> Rule:
    src = "0.0.0.0/0" if ":" not in dst else "::/0"
    return Rule(action, direction, 6, AddressSet.of([src]), AddressSet.of([dst]), dst_ports=((443, 443),))


def test_target_aces_split_by_direction_and_family_with_defaults() -> None:
    s = acl_settings()
    intended = Ruleset("sw", Ordering.FIRST_MATCH, Action.DENY,
                       (rule(Direction.INGRESS, "10.30.1.5/32"), rule(Direction.INGRESS, "fd00:30:1::5/128")),
                       Mode.ENFORCE, stateful=False)
    targets = target_aces(intended, s)
    assert [a.dst for a in targets["MSEG-INGRESS-V4"]] == [ipaddress.ip_network("10.30.1.5/32")]
    assert [a.dst for a in targets["MSEG-INGRESS-V6"]] == [ipaddress.ip_network("fd00:30:1::5/128")]
    for empty in ("MSEG-EGRESS-V4", "MSEG-EGRESS-V6"):  # no rules: an explicit deny (an empty ACL permits on IOS)
        assert len(targets[empty]) == 1 and targets[empty][0].is_catch_all()
        assert targets[empty][0].action is Action.DENY


def device_for(targets: dict[str, list[Ace]], bindings: list[Binding], extra: tuple[Acl, ...] = ()) -> DeviceAcls:
    acls = tuple(Acl(name, 6 if "-V6" in name else 4,
                     tuple(Entry(10 * (i + 1), a) for i, a in enumerate(aces))) for name, aces in targets.items())
    return DeviceAcls(acls + extra, tuple(bindings))


@pytest.mark.parametrize("default", [Action.DENY, Action.PERMIT])
def test_target_read_back_is_the_intent(default: Action) -> None:
    s = acl_settings()
    intended = Ruleset("sw", Ordering.FIRST_MATCH, default,
                       (rule(Direction.INGRESS, "10.30.1.5/32"), rule(Direction.EGRESS, "10.9.0.0/16", Action.DENY)),
                       Mode.ENFORCE, stateful=False)
    foreign = Acl("CUSTOMER", 4, (Entry(10, Unsupported("permit tcp any any established", "established")),))
    device = device_for(target_aces(intended, s), list(s.wanted_bindings()), (foreign,))
    ruleset, notes = observed_ruleset(owned_state(device, s), s, "sw", "ios")
    assert ruleset == intended
    assert [n.name for n in notes] == ["CUSTOMER"]


@pytest.mark.parametrize("default", [Action.DENY, Action.PERMIT])
def test_monitor_acls_block_nothing_and_read_back_as_the_intent(default: Action) -> None:
    """Monitor mode: the ``…-MONITOR`` ACLs hold ``permit … log`` where the denies would be, permits stay
    permits, a deny default is a last ``permit any any log``; read back, that is the monitor intent again."""
    s = acl_settings()
    intended = Ruleset("sw", Ordering.FIRST_MATCH, default,
                       (rule(Direction.INGRESS, "10.30.1.5/32", Action.DENY), rule(Direction.INGRESS, "10.30.1.0/24"),
                        rule(Direction.EGRESS, "10.9.0.0/16", Action.DENY)), Mode.MONITOR, stateful=False)
    targets = target_aces(intended, s)
    assert set(targets) == {"MSEG-INGRESS-V4-MONITOR", "MSEG-INGRESS-V6-MONITOR", "MSEG-EGRESS-V4-MONITOR",
                            "MSEG-EGRESS-V6-MONITOR"}
    assert all(a.action is Action.PERMIT for aces in targets.values() for a in aces), "monitor never blocks"
    ingress = targets["MSEG-INGRESS-V4-MONITOR"]
    assert [(a.log, str(a.dst)) for a in ingress] == [(True, "10.30.1.5/32"), (False, "10.30.1.0/24"),
                                                     (default is Action.DENY, "0.0.0.0/0")]
    bindings = list(s.wanted_bindings(Mode.MONITOR))
    assert {b.acl for b in bindings} == set(targets)
    ruleset, _ = observed_ruleset(owned_state(device_for(targets, bindings), s), s, "sw", "ios")
    assert ruleset == intended and ruleset.mode is Mode.MONITOR
    # an enforcing ACL left behind (a switch that did not finish) keeps the read from equalling the intent
    enforcing = target_aces(replace(intended, mode=Mode.ENFORCE), s)
    both = device_for({**targets, **enforcing}, bindings)
    assert observed_ruleset(owned_state(both, s), s, "sw", "ios")[0] != intended
    # a monitor ACL with a deny in it blocks something: it is not read as monitoring
    anywhere = ipaddress.ip_network("0.0.0.0/0")
    blocking = {**targets, "MSEG-INGRESS-V4-MONITOR": [Ace(Action.DENY, None, anywhere, anywhere)]}
    assert observed_ruleset(owned_state(device_for(blocking, bindings), s), s, "sw", "ios")[0].mode is Mode.ENFORCE


@pytest.mark.parametrize("mode", [Mode.ENFORCE, Mode.MONITOR])
def test_hit_counters_the_listing_shows_are_read_per_rule_and_left_out_of_the_fingerprint(mode: Mode) -> None:
    """Issue #17: IOS lists ``(N matches)`` per entry (NX-OS ``[match=N]``, EOS ``[match N packets, …]``); read
    with the entries, they come out per normalized rule in the ruleset's order (the catch-all default and a
    monitor ACL's last ``permit any any log`` are no rule), and the fingerprint does not move when they tick."""
    s = acl_settings()
    intended = Ruleset("sw", Ordering.FIRST_MATCH, Action.DENY,
                       (rule(Direction.INGRESS, "10.30.1.5/32", Action.DENY), rule(Direction.INGRESS, "10.30.1.0/24"),
                        rule(Direction.EGRESS, "10.9.0.0/16")), mode, stateful=False)
    targets = target_aces(intended, s)
    lines = []
    for name, aces in targets.items():
        family = aces[0].family
        lines.append(f"{'Extended IP' if family == 4 else 'IPv6'} access list {name}")
        for index, one in enumerate(aces, start=1):
            text = ios.format_entry(index * 10, one)
            if family == 6:  # IOS lists IPv6 entries with their sequence last
                text = re.sub(r"sequence (\d+) (.+)", r"\2 sequence \1", text)
                text = text.replace(" sequence", f" ({index * 7} matches) sequence")
            else:
                text += f" ({index * 7} matches)"
            lines.append("    " + text)
    acls = ios.parse_acls("\n".join(lines) + "\n")
    device = DeviceAcls(acls, tuple(s.wanted_bindings(mode)))
    state = owned_state(device, s)
    hits: list[int | None] = []
    ruleset, _ = observed_ruleset(state, s, "sw", "ios", hits)
    assert ruleset == intended
    assert hits == [7, 14, 7]  # ingress: the deny (or its would-deny permit) and the permit; egress: the permit
    ticked = ios.parse_acls("\n".join(lines).replace("(7 matches)", "(9 matches)") + "\n")
    moved = owned_state(DeviceAcls(ticked, tuple(s.wanted_bindings(mode))), s)
    assert moved != state and without_counters(moved) == without_counters(state)


def test_missing_binding_reads_as_nothing_enforced() -> None:
    s = acl_settings()
    intended = Ruleset("sw", Ordering.FIRST_MATCH, Action.DENY, (rule(Direction.INGRESS, "10.30.1.5/32"),),
                       Mode.ENFORCE, stateful=False)
    device = device_for(target_aces(intended, s), list(s.wanted_bindings())[1:])
    ruleset, notes = observed_ruleset(owned_state(device, s), s, "sw", "ios")
    assert ruleset.rules == () and ruleset.default_action is Action.PERMIT
    assert any(n.kind == "binding" for n in notes)


def test_unsupported_entry_in_an_owned_acl_fails_closed() -> None:
    s = acl_settings()
    bad = Acl("MSEG-INGRESS-V4", 4, (Entry(10, Unsupported("permit tcp any any established", "established")),))
    with pytest.raises(ParseError, match=r"MSEG-INGRESS-V4 entry 10 .*established"):
        observed_ruleset(owned_state(DeviceAcls((bad,)), s), s, "sw", "ios")


def test_settings_errors_name_the_point() -> None:
    with pytest.raises(PermanentDriverError, match="sw: settings: bindings: Field required"):
        parse_settings({}, "sw", "ios", MEMBERS)
    with pytest.raises(PermanentDriverError, match="families"):
        parse_settings({"bindings": ["Vlan1"], "families": [5]}, "sw", "ios", MEMBERS)
    assert parse_settings({"bindings": ["Vlan1"]}, "sw", "ios", AddressSet.of(["10.0.0.0/8"])).families == (4,)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.integers(1, 60), st.integers(0, 9), max_size=15),
       st.dictionaries(st.integers(1, 60), st.integers(0, 9), max_size=15))
def test_exact_restore_brings_back_the_same_numbers(now: dict[int, int], saved: dict[int, int]) -> None:
    current = sorted((k, ace(v)) for k, v in now.items())
    target = sorted((k, ace(v)) for k, v in saved.items())
    script = plan_exact("A", 4, current, target)
    entries = dict(current)
    for seq in script.deletes:  # deletes first: numbers are reused
        del entries[int(seq)]
    for add in script.adds:
        assert add.key not in entries
        entries[int(add.key)] = add.ace
    assert sorted(entries.items()) == target
    unchanged = len(set(current) & set(target))
    assert len(script.adds) + len(script.deletes) <= len(current) + len(target) - 2 * unchanged


def test_a_point_filtering_one_direction_owns_only_its_acls() -> None:
    s = parse_settings({"bindings": ["Vlan301"]}, "sw", "ios", MEMBERS, directions=[Direction.INGRESS])
    assert set(s.owned_names(Mode.ENFORCE)) == {"MSEG-INGRESS-V4", "MSEG-INGRESS-V6"}
    assert set(s.owned_names()) == {"MSEG-INGRESS-V4", "MSEG-INGRESS-V6", "MSEG-INGRESS-V4-MONITOR",
                                    "MSEG-INGRESS-V6-MONITOR"}  # a point switching mode owns both kinds
    assert {b.direction for b in s.wanted_bindings()} == {"out"}


def test_adoption_names_the_lines_of_a_bound_foreign_acl_it_could_not_read() -> None:
    """A line of the bound foreign ACL that the parser could not read would be missing from an adoption
    proposal: ``existing`` lists it (with command and line) instead of proposing the rest as the whole ACL."""
    any4 = AddressSet.of(["0.0.0.0/0"]).networks[0]
    legacy = Acl("LEGACY", 4, (Entry(10, Ace(Action.PERMIT, 6, any4, any4, dst_ports=((443, 443),))),))
    device = DeviceAcls((legacy,), (Binding("Vlan301", 4, "out", "LEGACY"),),
                        (Unread("show ip access-lists", 7, "20 permit tcp any any eq 22 ttl gt 3", "ttl", acl="LEGACY"),
                         Unread("show ip access-lists", 9, "garbage", "not an entry", acl="OTHER")))
    s = parse_settings({"bindings": ["Vlan301"], "families": [4]}, "sw", "ios", MEMBERS,
                       directions=[Direction.INGRESS])
    found = existing_enforcement(device, s, "sw")
    assert found.unreadable == ("ACL LEGACY on Vlan301 out: `show ip access-lists` line 7: ttl: "
                                "'20 permit tcp any any eq 22 ttl gt 3'",)
    assert len(found.ruleset.rules) == 1


def test_a_derived_entry_is_labelled_with_its_policy_rule() -> None:
    def labelled(rules: tuple[str, ...], note: str | None) -> str | None:
        provenance = Provenance(rules=rules, note=note)
        return entry_label(replace(rule(Direction.INGRESS, "10.30.1.5/32"), provenance=provenance))

    assert labelled(("web-to-db",), RETURN_NOTE) == "web-to-db-return"
    assert labelled(("web-to-db", "zz"), f"{CARVE_OUT_NOTE} of internet") == "web-to-db-carve-out"
    assert labelled(("web-to-db",), None) is None  # an entry that is what its rule says
    assert labelled((), RETURN_NOTE) is None
    long = labelled(("a.very long/name" * 5,), RETURN_NOTE)
    assert long is not None and len(long) <= 40 and long.endswith("-return") and re.fullmatch(r"[A-Za-z0-9_-]+", long)


def test_new_terms_carry_their_label_and_kept_terms_keep_their_names() -> None:
    current = [("T10", ace(1))]
    script = plan_named("F", 4, current, [ace(0), ace(1), ace(2)], labels=["web-return", None, None],
                        new_name=lambda n, label: f"{label}-T{n}" if label else f"T{n}")
    assert [(a.key, a.ace, a.before) for a in script.adds] == [("web-return-T1", ace(0), "T10"),
                                                            ("T2", ace(2), None)]
    assert not script.deletes


def test_the_worked_example_names_its_junos_return_terms_after_their_rules() -> None:
    project = load_project(REPO / "policies", REPO / "inventory", today=TODAY)
    compiled = project.compile().points["fw-shared-junos"]
    change = fresh_change(project, compiled)
    assert change is not None
    terms = {m[1] for line in change.commands if (m := re.search(r" term (\S+) then (accept|discard)", line))}
    returns = {t for t in terms if "-return-T" in t}
    returning = {r.provenance.rules[0] for r in compiled.ruleset.rules
                 if r.provenance.derived() == "return" and r.provenance.rules}
    assert returns and {t.split("-return-T")[0] for t in returns} == returning
    policy_rules = {r.name for r in project.loaded.policy.rules}
    assert returning <= policy_rules
