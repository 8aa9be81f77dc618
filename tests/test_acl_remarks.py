"""Remarks on numbered switch ACLs (NX-OS, EOS): one before each policy rule's run of entries, read back as the
entries' provenance, kept apart from what decides a packet; a person's remark in an owned ACL no longer stops a
fetch, nor one in an ACL being adopted."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.arista_eos import syntax as eos
from drivers.cisco_ios import syntax as ios
from drivers.cisco_nxos import syntax as nxos
from drivers.netacl.ace import (
    NO_RULE_REMARK,
    REMARK_LENGTH,
    Ace,
    Acl,
    Binding,
    DeviceAcls,
    Entry,
    Remark,
    any_network,
    remark_continues,
    remark_kind,
    remark_lines,
    remark_rules,
)
from drivers.netacl.edits import plan_exact, plan_numbered
from drivers.netacl.layout import (
    existing_enforcement,
    observed_ruleset,
    owned_state,
    parse_settings,
    target_aces,
    with_remarks,
)
from orchestrator.engine.diff import diff_rulesets
from orchestrator.engine.native import fresh_change
from orchestrator.engine.project import load_project
from orchestrator.engine.registry import driver_class
from orchestrator.model.driver import AnnotatingDriver, Connection, PointContext, RenderRequest, Snapshot
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
from tests.test_device_captures import CAPTURES
from tests.test_engine_switches import TODAY

MEMBERS = AddressSet.of(["10.30.1.0/24"])
NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", fullmatch=True)


def settings(driver: str = "nxos"):
    return parse_settings({"bindings": ["Vlan301"], "families": [4]}, "sw", driver, MEMBERS,
                          directions=[Direction.INGRESS])


def web(port: int, rules: tuple[str, ...] = (), note: str | None = None) -> Rule:
    return Rule(Action.PERMIT, Direction.INGRESS, 6, AddressSet.of(["0.0.0.0/0"]), AddressSet.of(["10.30.1.5/32"]),
                dst_ports=((port, port),), provenance=Provenance(rules=rules, note=note))


# ---------------------------------------------------------------- the text

@given(st.lists(NAMES, min_size=1, max_size=12, unique=True), st.sampled_from([None, "return", "carve-out"]))
def test_a_remark_fits_the_platforms_and_reads_back_every_rule_it_names(names: list[str], kind: str | None) -> None:
    lines = remark_lines(tuple(names), kind)
    assert lines and all(len(line) <= REMARK_LENGTH and line.isprintable() for line in lines)
    assert [nxos.format_entry(15 + i, Remark(line)) for i, line in enumerate(lines)] == [
        f"{15 + i} remark {line}" for i, line in enumerate(lines)]
    assert not remark_continues(lines[0]) and all(remark_continues(line) for line in lines[1:])
    assert tuple(n for line in lines for n in remark_rules(line)) == tuple(names)  # every name, in order
    assert remark_kind(lines[0]) == kind


def test_remark_texts_read() -> None:
    assert remark_lines(("web-to-db",)) == ("mseg: web-to-db",)
    assert remark_lines(("dns",), "return") == ("mseg: dns (return)",)
    assert remark_lines(("a", "b.c"), "carve-out") == ("mseg: a,b.c (carve-out)",)
    assert remark_lines(()) == ()
    many = tuple(f"rule-{i:03}" for i in range(20))  # 20 × 9 characters: two lines
    assert remark_lines(many) == ("mseg: " + ",".join(many[:10]), "mseg+ " + ",".join(many[10:]))
    (cut,) = remark_lines(("x" * 120,))
    assert len(cut) == REMARK_LENGTH and cut.endswith("~") and remark_rules(cut) == ()  # names nothing
    (cut,) = remark_lines(("y" * 90,), "carve-out")  # fits alone, not with its kind: the name is cut
    assert len(cut) == REMARK_LENGTH and remark_kind(cut) == "carve-out" and remark_rules(cut) == ()
    assert remark_rules("mseg: a,b.c (carve-out)") == ("a", "b.c")
    assert remark_rules(NO_RULE_REMARK) == ()  # entries of no one rule: a default, a cover deny
    assert remark_rules("allow the web tier") == ()  # a person's remark names no policy rule
    assert remark_rules("mseg: (hand written)") == ()
    assert [remark_kind(t) for t in ("mseg: a (return)", "mseg: a,b (carve-out)", "mseg: a", "x (return)",
                                     "mseg: a (other)")] == ["return", "carve-out", None, None, None]


def test_a_remark_goes_before_each_run_of_one_rules_entries() -> None:
    aces = [Ace(Action.PERMIT, 6, any_network(4), any_network(4), dst_ports=((p, p),)) for p in (1, 2, 3, 4, 5)]
    a, b = ("mseg: a",), ("mseg: b", "mseg+ c")
    got = with_remarks(aces, [a, a, b, (), a])
    assert got == [Remark("mseg: a"), aces[0], aces[1], Remark("mseg: b"), Remark("mseg+ c"), aces[2],
                   Remark(NO_RULE_REMARK), aces[3], Remark("mseg: a"), aces[4]]
    assert with_remarks(aces[:2], [(), ()]) == aces[:2]  # nothing names a rule: nothing to say


def test_the_platforms_refuse_a_remark_they_cannot_write() -> None:
    with pytest.raises(ValueError, match="printable"):
        eos.format_entry(10, Remark("two\nlines"))
    # what a rollback writes back is what the device listed: an empty remark, a long one
    assert nxos.format_entry(10, Remark("")) == "10 remark"
    assert eos.format_entry(10, Remark("y" * 150)) == "10 remark " + "y" * 150
    with pytest.raises(ValueError, match="does not number remarks"):
        ios.format_entry(10, Remark("mseg: a"))  # IOS lists no remarks: microseg writes none there


# ---------------------------------------------------------------- reading

def test_the_nxos_capture_reads_its_remarks_as_remarks() -> None:
    text = (CAPTURES / "nxos/show_access_lists__cisco_nxos_show_access-lists2.txt").read_text()
    device = nxos.parse({nxos.SHOW_ACLS: text, nxos.SHOW_INTERFACES: ""}, point="sw")
    assert not device.unread
    (acl,) = device.acls
    remarks = [(e.seq, e.body.text) for e in acl.entries if isinstance(e.body, Remark)]
    assert remarks[:2] == [(10, "established connections"), (30, "Test")]
    assert (150, "addTest: dont \"miss\" 'me'") in remarks
    assert all(e.matches is None for e in acl.entries if isinstance(e.body, Remark))  # a remark counts nothing
    assert [e.matches for e in acl.entries if isinstance(e.body, Ace)][:2] == [66, 0]


OWNED_LISTING = """\
IP access list MSEG-INGRESS-V4
        statistics per-entry
        10 remark mseg: web
        20 permit tcp any 10.30.1.5/32 eq 443 [match=7]
        30 permit tcp any 10.30.1.5/32 eq 80 [match=0]
        40 remark checked by jane, change 4711
        50 permit tcp any 10.30.1.5/32 eq 22 [match=0]
        60 remark mseg: dns,ntp (return)
        70 permit udp any 10.30.1.5/32 eq 53 [match=0]
        75 permit udp any 10.30.1.5/32 eq 123 [match=0]
        77 remark mseg+ syslog
        78 permit udp any 10.30.1.5/32 eq 514 [match=0]
        80 remark mseg: -
        90 deny ip any any [match=3]
"""


def test_an_owned_acl_reads_remarks_as_the_provenance_of_the_entries_after_them() -> None:
    s = settings()
    device = nxos.parse({nxos.SHOW_ACLS: OWNED_LISTING,
                         nxos.SHOW_INTERFACES: "interface Vlan301\n  ip access-group MSEG-INGRESS-V4 out\n"},
                        point="sw")
    hits: list[int | None] = []
    ruleset, _ = observed_ruleset(owned_state(device, s), s, "sw", "nxos", hits)
    assert [(r.dst_ports, r.provenance.rules, r.provenance.derived()) for r in ruleset.rules] == [
        (((443, 443),), ("web",), None), (((80, 80),), ("web",), None), (((22, 22),), (), None),
        (((53, 53),), ("dns", "ntp"), "return"), (((123, 123),), ("dns", "ntp"), "return"),
        # a continuation line after an entry (someone added one between) still adds to its remark's names
        (((514, 514),), ("dns", "ntp", "syslog"), "return"), (((0, 65535),), (), None)]
    assert hits == [7, 0, 0, 0, 0, 0, 3]  # the counters line up with the entries, remarks left out
    assert ruleset.default_action is Action.DENY


def test_adopting_an_acl_with_remarks_reads_its_entries() -> None:
    """A person's ACL with remarks (most have them) can be adopted: a remark decides nothing, and the entries
    after it carry it into the proposal's descriptions and difference reports."""
    s = settings()
    legacy = Acl("LEGACY", 4, (Entry(10, Remark("web servers")),
                               Entry(20, Ace(Action.PERMIT, 6, any_network(4), any_network(4), dst_ports=((80, 80),)))))
    found = existing_enforcement(DeviceAcls((legacy,), (Binding("Vlan301", 4, "out", "LEGACY"),)), s, "sw")
    assert not found.unreadable
    assert [r.dst_ports for r in found.ruleset.rules] == [((80, 80),)]
    assert found.origins[0] == "ACL LEGACY 20 on Vlan301 out (remark: web servers)"  # the proposal says it


# ---------------------------------------------------------------- writing

def test_targets_say_which_policy_rule_each_entry_is_for() -> None:
    s = settings()
    intended = Ruleset("sw", Ordering.FIRST_MATCH, Action.DENY,
                       (web(443, ("web",)), web(80, ("web",)), web(53, ("dns",), RETURN_NOTE),
                        replace(web(22, ("web", "admin"), f"{CARVE_OUT_NOTE} of internet"), action=Action.DENY)),
                       Mode.ENFORCE, stateful=False)
    remarks: dict[str, list[tuple[str, ...]]] = {}
    targets = target_aces(intended, s, None, remarks)
    assert remarks["MSEG-INGRESS-V4"] == [("mseg: web",), ("mseg: web",), ("mseg: dns (return)",),
                                          ("mseg: web,admin (carve-out)",)]
    lines = with_remarks(targets["MSEG-INGRESS-V4"], remarks["MSEG-INGRESS-V4"])
    assert [x.text for x in lines if isinstance(x, Remark)] == ["mseg: web", "mseg: dns (return)",
                                                                "mseg: web,admin (carve-out)"]


def test_an_acl_written_without_remarks_gets_them_and_one_with_them_is_left_alone() -> None:
    aces = [Ace(Action.PERMIT, 6, any_network(4), any_network(4), dst_ports=((p, p),)) for p in (1, 2, 3)]
    target = with_remarks(aces, [("mseg: a",), ("mseg: a",), ("mseg: b",)])
    script = plan_numbered("A", 4, [(10, aces[0]), (20, aces[1]), (30, aces[2])], target, max_seq=2**31 - 1,
                           can_resequence=True)
    assert not script.deletes and [(a.key, a.ace) for a in script.adds] == [(5, Remark("mseg: a")),
                                                                         (25, Remark("mseg: b"))]
    again = plan_numbered("A", 4, [(5, target[0]), (10, aces[0]), (20, aces[1]), (25, target[3]), (30, aces[2])],
                          target, max_seq=2**31 - 1, can_resequence=True)
    assert again.empty
    back = plan_exact("A", 4, [(10, aces[0])], [(5, Remark("mseg: a")), (10, aces[0])])
    assert [(a.key, a.ace) for a in back.adds] == [(5, Remark("mseg: a"))]


@pytest.mark.parametrize(("point", "remarks"), [("dc-prod-nxos", True), ("leaf-prod-eos", True),
                                                ("sw-dev-ios", False), ("fw-shared-junos", False)])
def test_the_worked_example_marks_its_nxos_and_eos_entries_with_their_rules(point: str, remarks: bool) -> None:
    project = load_project(REPO / "policies", REPO / "inventory", today=TODAY)
    compiled = project.compile().points[point]
    change = fresh_change(project, compiled)
    assert change is not None
    named = [m[1] for line in change.commands if (m := re.fullmatch(r"\d+ remark (.*)", line))]
    if not remarks:  # IOS lists no remarks; Junos names its terms instead
        assert not named and not any("remark" in line or "mseg:" in line for line in change.commands)
        return
    policy_rules = {r.name for r in project.loaded.policy.rules}
    read = {n for text in named for n in remark_rules(text)}
    assert read and read <= policy_rules
    expected = {n for r in compiled.ruleset.rules for n in r.provenance.rules}
    assert read == expected  # every rule with an entry on the point is named, nothing else
    entries = [line for line in change.commands if re.fullmatch(r"\d+ (?:permit|deny) .*", line)]
    assert len(named) < len(entries)


@pytest.mark.parametrize("mode", [Mode.ENFORCE, Mode.MONITOR])
def test_what_microseg_writes_reads_back_with_every_rules_name(mode: Mode) -> None:
    """Target → remarks → device → read back: the same rules, each with the policy rules (and derived kind) it
    was written for — in monitor mode too, and with more names than one remark line holds."""
    s = settings()
    many = tuple(f"merged-rule-{i:02}" for i in range(12))  # 12 × 15 characters: two remark lines
    rules = (web(443, ("web",)), web(80, ("web",)), web(8443, many),
             replace(web(22, ("admin",), f"{CARVE_OUT_NOTE} of internet"), action=Action.DENY),
             web(53, ("dns", "ntp"), RETURN_NOTE))
    intended = Ruleset("sw", Ordering.FIRST_MATCH, Action.DENY, rules, mode, stateful=False)
    remarks: dict[str, list[tuple[str, ...]]] = {}
    targets = target_aces(intended, s, None, remarks)
    acls = tuple(Acl(name, 4, tuple(Entry(10 * (i + 1), line)
                                    for i, line in enumerate(with_remarks(aces, remarks[name]))))
                 for name, aces in targets.items())
    # web; many (two lines); admin; dns — and in monitor mode `mseg: -` before the last `permit ip any any log`
    assert sum(isinstance(e.body, Remark) for e in acls[0].entries) == (5 if mode is Mode.ENFORCE else 6)
    device = DeviceAcls(acls, tuple(s.wanted_bindings(mode)))
    ruleset, _ = observed_ruleset(owned_state(device, s), s, "sw", "nxos")
    assert ruleset == intended
    assert [(r.provenance.rules, r.provenance.derived()) for r in ruleset.rules] == [
        (("web",), None), (("web",), None), (many, None), (("admin",), "carve-out"), (("dns", "ntp"), "return")]


@pytest.mark.parametrize("point", ["dc-prod-nxos", "leaf-prod-eos", "sw-dev-ios", "fw-shared-junos"])
def test_a_remark_only_change_writes_remarks_into_gaps_and_never_moves_an_entry(point: str) -> None:
    """``annotate`` (asked when a point's rules are in sync): the worked example's ACLs written without remarks
    get remark lines only, into the gaps between entries; written without gaps, they get nothing (that would
    renumber entries: the next rule change writes the remarks); platforms without remarks never get any."""
    project = load_project(REPO / "policies", REPO / "inventory", today=TODAY)
    compiled = project.compile().points[point]
    spec = project.inventory.point(point)
    cls = driver_class(spec.driver)
    context = PointContext(point, spec.driver, Connection(hostname=point), dict(spec.settings),
                           members=compiled.target.members or compiled.target.scope,
                           directions=frozenset(spec.directions))
    driver = cls(context)
    s = driver.settings
    targets = target_aces(compiled.ruleset, s, None, None)
    families = {name: family for name, (_, family) in s.owned_names().items()}

    def without_remarks(step: int) -> Snapshot:
        acls = tuple(Acl(name, families[name], tuple(Entry(step * (i + 1), a) for i, a in enumerate(aces)))
                     for name, aces in targets.items() if aces)
        return Snapshot(point, spec.driver, owned_state(DeviceAcls(acls, tuple(s.wanted_bindings(Mode.ENFORCE))), s))

    if spec.driver == "junos":  # named terms, no remarks
        change = driver.annotate(RenderRequest(point, compiled.ruleset, compiled.ruleset, cls.fresh_snapshot(point)))
        assert isinstance(driver, AnnotatingDriver) and not change.commands
        return
    for step, wanted in ((10, point in ("dc-prod-nxos", "leaf-prod-eos")), (1, False)):
        snapshot = without_remarks(step)
        assert diff_rulesets(driver.normalize(snapshot).ruleset, compiled.ruleset).empty  # rules in sync
        change = driver.annotate(RenderRequest(point, compiled.ruleset, compiled.ruleset, snapshot))
        assert bool(change.commands) == wanted, (step, change.commands[:5])
        assert all(re.fullmatch(r"(ip|ipv6) access-list \S+|statistics per-entry|counters per-entry|"
                                r"\d+ remark mseg[:+] .*", c) for c in change.commands), change.commands
