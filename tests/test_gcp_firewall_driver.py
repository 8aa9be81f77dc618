"""GCP firewall driver lifecycle against the fake Compute API through the unmodified google-cloud-compute client."""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials

from drivers.gcp_firewall import GcpFirewallDriver
from drivers.testing import assert_matches, plan_and_apply
from orchestrator.engine.diff import diff_rulesets
from orchestrator.engine.project import load_project
from orchestrator.model.driver import Checkpoint, Connection, NativeChange, PointContext, RenderRequest
from orchestrator.model.errors import PermanentDriverError
from orchestrator.model.rules import Action, AddressSet, Direction, Ordering, Rule, Ruleset
from simulators.gcp_compute import FakeCompute, serve
from tests.conftest import REPO

A = AddressSet.of
POINT = "gcp-fw-dev-db"
PROJECT = "shop-dev-000000"
STEM = f"mseg-{POINT}-"
MEMBERS4 = A(["10.30.3.11", "10.30.3.12"])
MEMBERS6 = A(["fd00:30:3::11"])
NETWORK_URL = f"https://www.googleapis.com/compute/v1/projects/{PROJECT}/global/networks/shop-dev"


@pytest.fixture
def fake() -> Iterator[FakeCompute]:
    yield from serve()


def make_driver(fake: FakeCompute, *, members: AddressSet | None = None, timeout: float = 5.0,
                sleeps: list[float] | None = None, directions: frozenset[Direction] = frozenset(Direction),
                **overrides: Any) -> GcpFirewallDriver:
    settings = {"project": PROJECT, "network": "shop-dev", "target_tags": ["shop-dev-db"], "api_endpoint": fake.url,
                **overrides}
    context = PointContext(POINT, "gcp_firewall", Connection("compute.googleapis.com"), settings, timeout=timeout,
                           members=MEMBERS4.union(MEMBERS6) if members is None else members, directions=directions)
    record = sleeps if sleeps is not None else []
    return GcpFirewallDriver(context, credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                             sleep=record.append)


@pytest.fixture
def driver(fake: FakeCompute) -> Iterator[GcpFirewallDriver]:
    drv = make_driver(fake)
    yield drv
    drv.close()


def render_for(driver: GcpFirewallDriver, intended: Ruleset) -> NativeChange:
    """What the engine would plan: fetch, normalize, diff, render (even when the diff is empty)."""
    snapshot = driver.fetch()
    actual = driver.normalize(snapshot).ruleset
    diff = diff_rulesets(actual, intended)
    return driver.render(RenderRequest(POINT, intended, actual, snapshot, diff.added, diff.removed))


def verbs(change: NativeChange) -> Counter[str]:
    return Counter(line.split(" ", 1)[0] for line in change.commands)


def ruleset(*rules: Rule, default: Action = Action.DENY) -> Ruleset:
    return Ruleset(POINT, Ordering.PRIORITY, default, rules)


def ssh(src: str, ports: tuple[tuple[int, int], ...] = ((22, 22),), to: AddressSet = MEMBERS4) -> Rule:
    return Rule(Action.PERMIT, Direction.INGRESS, 6, A([src]), to, dst_ports=ports)


MANY = A([ipaddress.ip_network(f"10.40.{i // 128}.{(i % 128) * 2}/32") for i in range(300)])  # 300 separate /32s
BLOCK = Rule(Action.DENY, Direction.INGRESS, None, A(["203.0.113.0/24"]), MEMBERS4, log=True)
PG = Rule(Action.PERMIT, Direction.INGRESS, 6, MANY, MEMBERS4, dst_ports=((5432, 5432),))
SSH6 = Rule(Action.PERMIT, Direction.INGRESS, 6, A(["fd00:10::/64"]), MEMBERS6, dst_ports=((22, 22),))
ONE = Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.0.0.0/8"]), A(["10.30.3.11"]), dst_ports=((8080, 8080),))
PROD = Rule(Action.DENY, Direction.EGRESS, None, MEMBERS4, A(["10.20.0.0/16"]), log=True)
DNS6 = Rule(Action.PERMIT, Direction.EGRESS, 17, MEMBERS6, A(["fd00:10::53"]), dst_ports=((53, 53),))
FULL = ruleset(BLOCK, PG, SSH6, ONE, PROD, DNS6)


def test_round_trip_ipv6_deny_priorities_and_packing(fake: FakeCompute, driver: GcpFirewallDriver) -> None:
    assert len(MANY.networks) == 300
    change, report = plan_and_apply(driver, FULL)
    assert report is not None and report.mutating_calls == len(change.commands) == 9
    assert_matches(driver, FULL)
    rules = fake.rules(PROJECT)
    i = {n.removeprefix(STEM): r for n, r in rules.items()}
    assert sorted(i) == ["deny-egress-4", "deny-egress-6", "e001", "e002", "i001", "i002", "i002-2", "i003", "i004"]
    assert [len(i["i002"]["sourceRanges"]), len(i["i002-2"]["sourceRanges"])] == [256, 44]  # packed per 256
    assert i["i002"]["priority"] == i["i002-2"]["priority"]
    assert i["i001"]["priority"] < i["i002"]["priority"] < i["i003"]["priority"] < i["i004"]["priority"] < 65534
    assert i["e001"]["priority"] < i["e002"]["priority"] < i["deny-egress-4"]["priority"] == 65534
    assert i["i001"]["denied"] == [{"IPProtocol": "all"}] and i["i001"]["logConfig"] == {"enable": True}
    assert "destinationRanges" not in i["i001"]  # the targets are the members
    assert i["i004"]["destinationRanges"] == ["10.30.3.11/32"]  # a subset of the members is written out
    assert i["i003"]["sourceRanges"] == ["fd00:10::/64"] and i["e002"]["allowed"] == [
        {"IPProtocol": "udp", "ports": ["53"]}]
    assert i["deny-egress-6"]["denied"] == [{"IPProtocol": "all"}] and i["deny-egress-6"]["destinationRanges"] == [
        "::/0"]
    assert all(r["targetTags"] == ["shop-dev-db"] and r["network"] == NETWORK_URL for r in rules.values())
    twin, twin_report = plan_and_apply(driver, FULL)
    assert twin.empty and twin_report is None


def test_idempotency_twin_makes_no_mutating_call(fake: FakeCompute, driver: GcpFirewallDriver) -> None:
    plan_and_apply(driver, FULL)
    fake.reset_counts()
    change, report = plan_and_apply(driver, FULL)
    assert change.empty and report is None
    assert render_for(driver, FULL).empty  # even rendered regardless of the diff: nothing to send
    assert fake.mutating_calls() == 0 and fake.calls("operations.wait") == 0
    assert fake.calls("firewalls.list") == 2


def test_empty_state_reads_as_gcp_implied_defaults(driver: GcpFirewallDriver) -> None:
    observed = driver.normalize(driver.fetch()).ruleset
    assert observed.default_action is Action.DENY  # implied ingress deny …
    assert observed.rules == (  # … and implied egress allow, said explicitly
        Rule(Action.PERMIT, Direction.EGRESS, None, MEMBERS4, A(["0.0.0.0/0"])),
        Rule(Action.PERMIT, Direction.EGRESS, None, MEMBERS6, A(["::/0"])),
    )


def test_default_permit_writes_ingress_allow_all(fake: FakeCompute, driver: GcpFirewallDriver) -> None:
    plan_and_apply(driver, ruleset(PROD, default=Action.DENY))
    change, _ = plan_and_apply(driver, ruleset(PROD, default=Action.PERMIT))
    assert verbs(change) == Counter({"insert": 2, "delete": 2})
    names = set(fake.rules(PROJECT))
    assert {f"{STEM}allow-ingress-4", f"{STEM}allow-ingress-6"} <= names
    assert not {f"{STEM}deny-egress-4", f"{STEM}deny-egress-6"} & names
    assert_matches(driver, ruleset(PROD, default=Action.PERMIT))


def test_one_call_per_changed_rule(fake: FakeCompute, driver: GcpFirewallDriver) -> None:
    r1, r2, r3 = ssh("10.0.0.1"), ssh("10.0.0.2"), ssh("10.0.0.3")
    before = ruleset(r1, r2, r3, PROD, DNS6)
    plan_and_apply(driver, before)
    old = fake.rules(PROJECT)
    wider = ssh("10.0.0.2", ((22, 22), (2222, 2222)))
    new = ssh("10.0.0.9")
    after = ruleset(r1, new, wider, r3, PROD)  # insert one, widen one, drop DNS6
    fake.reset_counts()
    change = render_for(driver, after)
    assert verbs(change) == Counter({"insert": 1, "patch": 1, "delete": 1})
    driver.apply(change)
    assert fake.calls("firewalls.insert") == fake.calls("firewalls.patch") == fake.calls("firewalls.delete") == 1
    assert fake.calls("operations.wait") == 3 and fake.calls("firewalls.update") == 0
    assert_matches(driver, after)
    now = fake.rules(PROJECT)
    for name in (f"{STEM}i001", f"{STEM}i003", f"{STEM}e001", f"{STEM}deny-egress-4"):
        assert now[name] == old[name]  # untouched: same id, same creation time, same content
    assert now[f"{STEM}i002"]["allowed"] == [{"IPProtocol": "tcp", "ports": ["22", "2222"]}]
    assert now[f"{STEM}i002"]["id"] == old[f"{STEM}i002"]["id"]  # patched in place
    inserted = now[f"{STEM}i004"]
    assert old[f"{STEM}i001"]["priority"] < inserted["priority"] < old[f"{STEM}i002"]["priority"]
    assert f"{STEM}e002" not in now


def test_narrowing_an_allow_is_insert_then_delete(fake: FakeCompute, driver: GcpFirewallDriver) -> None:
    wide = ssh("10.0.0.2", ((22, 22), (2222, 2222)))
    plan_and_apply(driver, ruleset(ssh("10.0.0.1"), wide))
    change = render_for(driver, ruleset(ssh("10.0.0.1"), ssh("10.0.0.2")))
    assert [line.split(" ")[0] for line in change.commands] == ["insert", "delete"]  # make before break
    driver.apply(change)
    assert_matches(driver, ruleset(ssh("10.0.0.1"), ssh("10.0.0.2")))
    deny_wide = Rule(Action.DENY, Direction.INGRESS, 6, A(["10.9.0.0/16"]), MEMBERS4)
    plan_and_apply(driver, ruleset(deny_wide, ssh("10.0.0.1")))
    narrower = Rule(Action.DENY, Direction.INGRESS, 6, A(["10.9.1.0/24"]), MEMBERS4)
    assert verbs(render_for(driver, ruleset(narrower, ssh("10.0.0.1")))) == Counter({"patch": 1})  # a deny: safe


def test_paging_is_followed(fake: FakeCompute) -> None:
    for n in range(5):
        fake.seed(PROJECT, {"name": f"team-rule-{n}", "network": NETWORK_URL, "sourceRanges": ["10.1.0.0/16"],
                            "allowed": [{"IPProtocol": "tcp", "ports": [str(8000 + n)]}]})
    driver = make_driver(fake, page_size=4)
    plan_and_apply(driver, FULL)
    total = len(fake.rules(PROJECT))
    assert total == 14
    fake.reset_counts()
    observed = driver.normalize(driver.fetch())
    assert fake.calls("firewalls.list") == 4  # ceil(14 / 4) pages
    assert not diff_rulesets(observed.ruleset, FULL).settings and len(observed.unmanaged) == 5
    assert_matches(driver, FULL)
    driver.close()


def test_unmanaged_rules_are_never_touched(fake: FakeCompute, driver: GcpFirewallDriver) -> None:
    theirs: dict[str, dict[str, Any]] = {
        "default-allow-internal": {"network": NETWORK_URL, "sourceRanges": ["10.128.0.0/9"], "priority": 65534,
                                   "allowed": [{"IPProtocol": "all"}]},
        "mseg-gcp-fw-dev-web-i001": {"network": NETWORK_URL, "sourceRanges": ["10.0.0.0/8"],
                                     "targetTags": ["shop-dev-web"], "allowed": [{"IPProtocol": "tcp"}]},
        "corp-deny-egress": {"network": f"projects/{PROJECT}/global/networks/corp", "direction": "EGRESS",
                             "destinationRanges": ["0.0.0.0/0"], "denied": [{"IPProtocol": "all"}]},
    }
    for name, body in theirs.items():
        fake.seed(PROJECT, {"name": name, **body})
    seeded = fake.rules(PROJECT)
    plan_and_apply(driver, FULL)
    checkpoint = driver.checkpoint()
    plan_and_apply(driver, ruleset(ONE, default=Action.PERMIT))
    driver.rollback(checkpoint)
    now = fake.rules(PROJECT)
    assert all(now[name] == seeded[name] for name in theirs)
    observed = driver.normalize(driver.fetch())
    assert sorted(u.name for u in observed.unmanaged) == ["default-allow-internal", "mseg-gcp-fw-dev-web-i001"]
    details = {u.name: u.detail for u in observed.unmanaged}
    assert "not as a rule of this point" in details["mseg-gcp-fw-dev-web-i001"]
    assert "the point's members included" in details["default-allow-internal"]


def test_quota_is_checked_at_render_with_the_numbers(fake: FakeCompute) -> None:
    for n in range(8):
        fake.seed(PROJECT, {"name": f"other-{n}", "network": NETWORK_URL, "sourceRanges": ["10.1.0.0/16"],
                            "allowed": [{"IPProtocol": "tcp"}]})
    driver = make_driver(fake, firewall_quota=10)
    with pytest.raises(PermanentDriverError) as raised:
        render_for(driver, ruleset(ssh("10.0.0.1"), PROD))  # 2 rules + 2 default-deny egress rules
    message = str(raised.value)
    assert "needs 12 firewall rules" in message and "(8 now + 4 inserted before 0 are deleted)" in message
    assert "quota is 10" in message and "firewall_quota" in message
    assert fake.mutating_calls() == 0
    assert render_for(make_driver(fake, firewall_quota=12), ruleset(ssh("10.0.0.1"), PROD)).mutating_calls == 4


def test_disabled_owned_rule_counts_as_absent(fake: FakeCompute, driver: GcpFirewallDriver) -> None:
    plan_and_apply(driver, ruleset(ssh("10.0.0.1"), ssh("10.0.0.2")))
    fake.firewalls[PROJECT][f"{STEM}i002"]["disabled"] = True  # someone switched it off in the console
    observed = driver.normalize(driver.fetch()).ruleset
    assert observed.for_direction(Direction.INGRESS) == (ssh("10.0.0.1"),)
    change, _ = plan_and_apply(driver, ruleset(ssh("10.0.0.1"), ssh("10.0.0.2")))
    assert verbs(change) == Counter({"insert": 1, "delete": 1})
    assert_matches(driver, ruleset(ssh("10.0.0.1"), ssh("10.0.0.2")))
    assert not any(r.get("disabled") for r in fake.rules(PROJECT).values())


def test_apply_refuses_calls_outside_the_owned_scope(driver: GcpFirewallDriver) -> None:
    for line in ("delete default-allow-internal", f"update {STEM}i001 {{}}", f"insert {STEM}i001 {{}}"):
        with pytest.raises(PermanentDriverError, match="not a call on a rule of this point"):
            driver.apply(NativeChange(POINT, "gcp_firewall", "api-calls", (line,), 1))
    with pytest.raises(PermanentDriverError, match="cannot apply"):
        driver.apply(NativeChange("other", "gcp_firewall", "api-calls", (f"delete {STEM}i001",), 1))


def test_worked_example_point(fake: FakeCompute) -> None:
    """gcp-fw-dev-db from the example inventory round-trips; its ping rule (icmp type 8) arrives widened to icmp
    (the compiler knows GCP cannot match ICMP types), and an ICMP type that reached render would be refused."""
    project = load_project(REPO / "policies", REPO / "inventory", today=date(2025, 1, 1))
    compiled = project.compile([POINT]).points[POINT]
    target = compiled.target
    point = project.inventory.point(POINT)
    settings = {**point.settings, "api_endpoint": fake.url, "credentials": "anonymous"}  # no keyword: as the engine
    context = PointContext(POINT, point.driver, Connection("compute.googleapis.com"), settings,
                           members=target.scope if target.members is None else target.members)
    driver = GcpFirewallDriver(context)
    intended = compiled.ruleset
    assert all(r.icmp_type is None for r in intended.rules) and any(r.protocol == 1 for r in intended.rules)
    typed = next(r for r in intended.rules if r.protocol == 1)
    ping = Rule(typed.action, typed.direction, 1, typed.src, typed.dst, icmp_type=8)
    with pytest.raises(PermanentDriverError, match=r"icmp/8 .*not by ICMP type/code"):
        plan_and_apply(driver, Ruleset(POINT, intended.ordering, intended.default_action, (ping,)))
    assert fake.mutating_calls() == 0
    writable = intended
    change, report = plan_and_apply(driver, writable)
    assert report is not None and report.mutating_calls == len(writable.rules) + 2  # + default-deny egress v4/v6
    assert all(f"{STEM}" in line for line in change.commands)
    assert_matches(driver, writable)
    twin, _ = plan_and_apply(driver, writable)
    assert twin.empty
    driver.close()


# ---------------------------------------------------------------------------------------------------- directions

INGRESS_ONLY = frozenset({Direction.INGRESS})
INBOUND = ruleset(BLOCK, ssh("10.0.0.1"), SSH6)
THEIR_EGRESS: dict[str, dict[str, Any]] = {  # egress rules named as the point's, written before it was ingress-only
    f"{STEM}e001": {"network": NETWORK_URL, "direction": "EGRESS", "priority": 1000, "targetTags": ["shop-dev-db"],
                    "destinationRanges": ["10.20.0.0/16"], "denied": [{"IPProtocol": "all"}]},
    f"{STEM}deny-egress-4": {"network": NETWORK_URL, "direction": "EGRESS", "priority": 65534,
                             "targetTags": ["shop-dev-db"], "destinationRanges": ["0.0.0.0/0"],
                             "denied": [{"IPProtocol": "all"}]},
}


def seed_egress(fake: FakeCompute) -> dict[str, dict[str, Any]]:
    for name, body in THEIR_EGRESS.items():
        fake.seed(PROJECT, {"name": name, **body})
    return {name: fake.rules(PROJECT)[name] for name in THEIR_EGRESS}


def egress_names(fake: FakeCompute) -> set[str]:
    return {n for n, r in fake.rules(PROJECT).items() if r.get("direction") == "EGRESS"}


def test_ingress_only_point_writes_no_egress_rule_and_leaves_its_egress_alone(fake: FakeCompute) -> None:
    seeded = seed_egress(fake)
    driver = make_driver(fake, directions=INGRESS_ONLY)
    change, report = plan_and_apply(driver, INBOUND)  # a default deny: no deny-egress rule for it
    assert report is not None and verbs(change) == Counter({"insert": 3})
    assert all(f" {STEM}i" in f" {line.split(' ')[1]}" for line in change.commands), change.commands
    assert egress_names(fake) == set(THEIR_EGRESS)  # no EGRESS rule created, none deleted …
    assert all(fake.rules(PROJECT)[name] == body for name, body in seeded.items())  # … nor changed
    assert_matches(driver, INBOUND)
    observed = driver.normalize(driver.fetch())
    assert observed.ruleset.for_direction(Direction.EGRESS) == ()  # nothing said of egress: not the point's
    details = {u.name: u.detail for u in observed.unmanaged}
    assert sorted(details) == sorted(THEIR_EGRESS)  # reported as unmanaged, as any foreign rule
    assert all("egress rule, but the point filters ingress only" in d for d in details.values()), details
    assert driver.fetch().native["owned"] and all(r["direction"] != "EGRESS" for r in driver.fetch().native["owned"])
    fake.reset_counts()
    twin, twin_report = plan_and_apply(driver, INBOUND)
    assert twin.empty and twin_report is None
    assert render_for(driver, INBOUND).empty and fake.mutating_calls() == 0
    driver.close()


def test_ingress_only_point_refuses_egress_in_render_and_apply(fake: FakeCompute) -> None:
    seed_egress(fake)
    driver = make_driver(fake, directions=INGRESS_ONLY)
    with pytest.raises(PermanentDriverError, match="egress rules on a point that does not filter egress"):
        render_for(driver, ruleset(BLOCK, PROD))
    for line in (f"delete {STEM}e001", f"delete {STEM}deny-egress-4"):
        with pytest.raises(PermanentDriverError, match="not a call on a rule of this point"):
            driver.apply(NativeChange(POINT, "gcp_firewall", "api-calls", (line,), 1))
    assert fake.mutating_calls() == 0 and egress_names(fake) == set(THEIR_EGRESS)
    driver.close()


def test_ingress_only_default_permit_and_quota_count_no_egress(fake: FakeCompute) -> None:
    for n in range(8):
        fake.seed(PROJECT, {"name": f"other-{n}", "network": NETWORK_URL, "sourceRanges": ["10.1.0.0/16"],
                            "allowed": [{"IPProtocol": "tcp"}]})
    with pytest.raises(PermanentDriverError, match="needs 11 firewall rules"):  # 1 rule + deny-egress v4/v6
        render_for(make_driver(fake, firewall_quota=10), ruleset(ssh("10.0.0.1")))
    driver = make_driver(fake, firewall_quota=10, directions=INGRESS_ONLY)
    assert render_for(driver, ruleset(ssh("10.0.0.1"))).mutating_calls == 1  # 9 rules: fits
    opened = ruleset(ONE, default=Action.PERMIT)
    change, _ = plan_and_apply(make_driver(fake, firewall_quota=20, directions=INGRESS_ONLY), opened)
    assert verbs(change) == Counter({"insert": 3})  # i001 + allow-ingress v4/v6
    assert {f"{STEM}allow-ingress-4", f"{STEM}allow-ingress-6"} <= set(fake.rules(PROJECT))
    assert not egress_names(fake)
    assert_matches(driver, opened)
    driver.close()


def test_ingress_only_rollback_leaves_egress_rules_alone(fake: FakeCompute) -> None:
    seed_egress(fake)
    driver = make_driver(fake, directions=INGRESS_ONLY)
    plan_and_apply(driver, INBOUND)
    checkpoint = driver.checkpoint()
    assert all(r["direction"] != "EGRESS" for r in checkpoint.native["owned"])
    plan_and_apply(driver, ruleset(ONE, default=Action.PERMIT))
    fake.firewalls[PROJECT][f"{STEM}e001"]["priority"] = 1200  # someone else changes the point's egress …
    fake.seed(PROJECT, {"name": f"{STEM}e002", **THEIR_EGRESS[f"{STEM}e001"], "destinationRanges": ["10.9.0.0/16"]})
    egress = {n: fake.rules(PROJECT)[n] for n in egress_names(fake)}
    driver.rollback(checkpoint)
    assert driver.checkpoint().fingerprint == checkpoint.fingerprint  # the ingress rules are back …
    assert {n: fake.rules(PROJECT)[n] for n in egress_names(fake)} == egress  # … and egress is as it was
    fake.reset_counts()
    driver.rollback(checkpoint)  # idempotent
    assert fake.mutating_calls() == 0
    both = make_driver(fake).checkpoint()  # holds the egress rules: not this point's to restore any more
    wider = Checkpoint(POINT, "gcp_firewall", both.native, both.fingerprint)
    with pytest.raises(PermanentDriverError, match=r"no longer filters .*e001"):
        driver.rollback(wider)
    assert fake.mutating_calls() == 0
    driver.close()


def test_switching_to_both_directions_plans_the_egress_rules(fake: FakeCompute) -> None:
    ingress_only = make_driver(fake, directions=INGRESS_ONLY)
    plan_and_apply(ingress_only, INBOUND)
    both = make_driver(fake)
    observed = both.normalize(both.fetch()).ruleset
    assert not diff_rulesets(observed, INBOUND).empty  # GCP's implied egress allow is now the point's to close
    assert observed.for_direction(Direction.EGRESS)
    target = ruleset(BLOCK, ssh("10.0.0.1"), SSH6, PROD, DNS6)
    change = render_for(both, target)
    assert verbs(change) == Counter({"insert": 4})  # e001, e002, deny-egress v4/v6; the ingress rules are kept
    assert {line.split(" ")[1].removeprefix(STEM) for line in change.commands} == {
        "e001", "e002", "deny-egress-4", "deny-egress-6"}
    both.apply(change)
    assert_matches(both, target)
    assert egress_names(fake) == {f"{STEM}e001", f"{STEM}e002", f"{STEM}deny-egress-4", f"{STEM}deny-egress-6"}
    ingress_only.close()
    both.close()


def test_egress_only_point_round_trips(fake: FakeCompute) -> None:
    driver = make_driver(fake, directions=frozenset({Direction.EGRESS}))
    for default in (Action.PERMIT, Action.DENY, Action.PERMIT):
        target = ruleset(PROD, DNS6, default=default)
        plan_and_apply(driver, target)
        assert_matches(driver, target)
        assert plan_and_apply(driver, target)[0].empty
        assert all(r.get("direction") == "EGRESS" for r in fake.rules(PROJECT).values())  # never allow-ingress
    driver.close()


def test_a_point_filtering_no_direction_is_refused(fake: FakeCompute) -> None:
    with pytest.raises(PermanentDriverError, match="filters no direction"):
        make_driver(fake, directions=frozenset())
