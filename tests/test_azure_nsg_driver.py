"""The Azure NSG driver through the unmodified azure-mgmt-network client against the fake ARM server: round trips,
call budgets, stable priorities, ownership, concurrency (ETag), throttling and failures mid-apply."""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from drivers.azure_nsg import AzureNsgDriver
from drivers.testing import plan_and_apply
from orchestrator.engine.diff import diff_rulesets
from orchestrator.engine.retry import RetryPolicy, with_retries
from orchestrator.model.driver import Connection, PointContext, RenderRequest, Snapshot
from orchestrator.model.errors import ParseError, PermanentDriverError, TransientDriverError
from orchestrator.model.rules import Action, AddressSet, Direction, Ordering, Rule, Ruleset
from simulators.azure_arm import FakeArm, FakeCredential, nsg_settings, running_fake_arm

A = AddressSet.of
POINT = "azure-nsg-dev-app"
RG, NSG = "rg-shop-dev", "nsg-shop-dev-app"


@pytest.fixture
def arm(tmp_path: Path) -> Iterator[FakeArm]:
    with running_fake_arm(tmp_path) as fake:
        yield fake


def make_driver(arm: FakeArm, timeout: float = 5.0, *, directions: frozenset[Direction] | None = None,
                **overrides: Any) -> AzureNsgDriver:
    context = PointContext(POINT, "azure_nsg", Connection("management.azure.com"), nsg_settings(arm, **overrides),
                           timeout)
    if directions is not None:
        context = replace(context, directions=directions)
    return AzureNsgDriver(context, credential=FakeCredential())


@pytest.fixture
def driver(arm: FakeArm) -> Iterator[AzureNsgDriver]:
    drv = make_driver(arm)
    yield drv
    drv.close()


def tcp_in(port: int, src: str = "10.30.1.11/32", dst: str = "10.30.2.11/32",
           action: Action = Action.PERMIT) -> Rule:
    return Rule(action, Direction.INGRESS, 6, A([src]), A([dst]), dst_ports=((port, port),))


def ruleset(*rules: Rule, default: Action = Action.DENY) -> Ruleset:
    return Ruleset(POINT, Ordering.PRIORITY, default, rules)


def owned_priorities(arm: FakeArm) -> dict[str, int]:
    """Owned ordinary rules by content (properties without name/priority/state) → priority."""
    nsg = arm.nsg(RG, NSG)
    assert nsg is not None
    out: dict[str, int] = {}
    for rule in nsg["properties"]["securityRules"]:
        props = dict(rule["properties"])
        if rule["name"].startswith("mseg-") and "default-deny" not in rule["name"]:
            priority = props.pop("priority")
            props.pop("provisioningState")
            out[repr(sorted(props.items()))] = priority
    return out


UNMANAGED = [
    {"name": "AllowBastionSsh", "properties": {
        "protocol": "Tcp", "sourceAddressPrefix": "VirtualNetwork", "sourcePortRange": "*",
        "destinationAddressPrefix": "*", "destinationPortRanges": ["22", "3389"], "access": "Allow",
        "priority": 150, "direction": "Inbound", "description": "bastion, owned by team-platform"}},
    {"name": "mseg-legacy", "properties": {
        "protocol": "*", "sourceAddressPrefix": "Internet", "sourcePortRange": "*", "destinationAddressPrefix": "*",
        "destinationPortRange": "*", "access": "Deny", "priority": 3000, "direction": "Inbound"}},
    {"name": "corp-in-band", "properties": {
        "protocol": "Udp", "sourceAddressPrefixes": ["192.0.2.0/24"], "sourcePortRange": "*",
        "destinationAddressPrefix": "*", "destinationPortRange": "161", "access": "Allow",
        "priority": 210, "direction": "Inbound"}},
]


def test_round_trip_with_ipv6_deny_rules_and_priorities(arm: FakeArm, driver: AzureNsgDriver) -> None:
    block = Rule(Action.DENY, Direction.INGRESS, None, A(["203.0.113.0/24"]), A(["10.30.2.0/24"]))
    web6 = Rule(Action.PERMIT, Direction.INGRESS, 6, A(["fd00:30:1::11/128"]), A(["fd00:30:2::11/128"]),
                dst_ports=((8443, 8443),))
    dns = Rule(Action.PERMIT, Direction.EGRESS, 17, A(["10.30.2.11/32", "10.30.2.12/32"]), A(["10.10.0.53/32"]),
               dst_ports=((53, 53),), src_ports=((1024, 65535),))
    intended = ruleset(block, tcp_in(22), web6, dns)
    change, report = plan_and_apply(driver, intended)
    assert report is not None and report.mutating_calls == 1
    observed = driver.normalize(driver.fetch())
    assert observed.ruleset == intended and observed.unmanaged == ()
    nsg = arm.nsg(RG, NSG)
    assert nsg is not None
    rules = {r["name"]: r["properties"] for r in nsg["properties"]["securityRules"]}
    assert {n: p["priority"] for n, p in rules.items()} == {
        "mseg-in-0100": 100, "mseg-in-0110": 110, "mseg-in-0120": 120, "mseg-out-0100": 100,
        "mseg-default-deny-in": 1999, "mseg-default-deny-out": 1999}
    assert rules["mseg-in-0100"]["access"] == "Deny" and rules["mseg-in-0100"]["protocol"] == "*"
    assert rules["mseg-in-0120"]["sourceAddressPrefixes"] == ["fd00:30:1::11/128"]
    assert rules["mseg-out-0100"]["sourcePortRanges"] == ["1024-65535"]
    assert rules["mseg-out-0100"]["destinationPortRanges"] == ["53"]
    assert rules["mseg-default-deny-out"]["sourceAddressPrefix"] == "*"
    assert "If-Match" in change.commands[0] or "If-None-Match" in change.commands[0]


def test_idempotency_twin_and_call_budget(arm: FakeArm, driver: AzureNsgDriver) -> None:
    arm.seed_nsg(RG, NSG, [])
    before_puts, before_polls = arm.count("PUT", "nsg"), arm.count("GET", "operation")
    plan_and_apply(driver, ruleset(tcp_in(22), tcp_in(443)))
    assert arm.count("PUT", "nsg") - before_puts == 1, "exactly one NSG write per change"
    assert arm.count("GET", "operation") - before_polls == 2, "the operation is polled: InProgress, then Succeeded"
    assert arm.count("DELETE", "nsg") == 0
    writes, gets = arm.writes(), arm.count("GET", "nsg")
    twin, twin_report = plan_and_apply(driver, ruleset(tcp_in(22), tcp_in(443)))
    assert twin.empty and twin_report is None
    assert arm.writes() == writes, "the idempotency twin makes zero mutating calls"
    assert arm.count("GET", "nsg") == gets + 1, "planning costs one GET"


def test_insert_in_the_middle_of_fifty_rules_renumbers_nothing(arm: FakeArm, driver: AzureNsgDriver) -> None:
    rules = [tcp_in(1000 + i) for i in range(50)]
    plan_and_apply(driver, ruleset(*rules))
    before = owned_priorities(arm)
    assert sorted(before.values()) == list(range(100, 600, 10))
    puts = arm.count("PUT", "nsg")
    plan_and_apply(driver, ruleset(*rules[:25], tcp_in(8080), *rules[25:]))
    after = owned_priorities(arm)
    renumbered = [key for key, priority in before.items() if after[key] != priority]
    assert renumbered == [], f"{len(renumbered)} rules renumbered"
    assert len(after) == 51 and sorted(set(after.values()) - set(before.values())) == [345]
    assert arm.count("PUT", "nsg") == puts + 1
    assert driver.normalize(driver.fetch()).ruleset.rules[25] == tcp_in(8080)


def test_inserting_more_rules_than_a_gap_holds_renumbers_few(arm: FakeArm) -> None:
    driver = make_driver(arm, priority_max=400)
    rules = [tcp_in(1000 + i) for i in range(20)]
    plan_and_apply(driver, ruleset(*rules))
    before = owned_priorities(arm)
    new = [tcp_in(2000 + i) for i in range(15)]  # 15 rules between 110 and 120: 9 free priorities
    plan_and_apply(driver, ruleset(*rules[:2], *new, *rules[2:]))
    after = owned_priorities(arm)
    renumbered = [key for key, priority in before.items() if after[key] != priority]
    assert 1 <= len(renumbered) <= 2, f"{len(renumbered)} rules renumbered"
    assert driver.normalize(driver.fetch()).ruleset == ruleset(*rules[:2], *new, *rules[2:])
    driver.close()


def test_unmanaged_rules_survive_byte_for_byte(arm: FakeArm) -> None:
    seeded = arm.seed_nsg(RG, NSG, UNMANAGED, tags={"owner": "team-platform", "cost-center": "42"})
    driver = make_driver(arm, priority_min=200)
    observed = driver.normalize(driver.fetch())
    assert observed.ruleset.rules == () and [u.name for u in observed.unmanaged] == [
        "AllowBastionSsh", "mseg-legacy", "corp-in-band"]
    assert "before the owned band" in observed.unmanaged[0].detail
    assert "inside the owned band" in observed.unmanaged[2].detail
    plan_and_apply(driver, ruleset(*(tcp_in(1000 + i) for i in range(3))))
    plan_and_apply(driver, ruleset(tcp_in(5), default=Action.PERMIT))
    after = arm.nsg(RG, NSG)
    assert after is not None and after["tags"] == {"owner": "team-platform", "cost-center": "42"}

    def without_etag(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "etag"} for r in rules if r["name"] in
                {u["name"] for u in UNMANAGED}]

    assert without_etag(after["properties"]["securityRules"]) == without_etag(seeded["properties"]["securityRules"])
    owned = [r["properties"]["priority"] for r in after["properties"]["securityRules"] if r["name"] == "mseg-in-0200"]
    assert owned == [200]
    driver.close()


def test_unmanaged_priority_inside_the_band_is_skipped(arm: FakeArm) -> None:
    arm.seed_nsg(RG, NSG, [UNMANAGED[2]])
    driver = make_driver(arm, priority_min=200)
    plan_and_apply(driver, ruleset(tcp_in(1), tcp_in(2), tcp_in(3)))
    assert sorted(owned_priorities(arm).values()) == [200, 211, 221]  # 210 belongs to corp-in-band: skipped
    driver.close()


def test_etag_conflict_is_permanent_and_changes_nothing(arm: FakeArm, driver: AzureNsgDriver) -> None:
    arm.seed_nsg(RG, NSG, [])
    snapshot = driver.fetch()
    intended = ruleset(tcp_in(22))
    change = driver.render(RenderRequest(POINT, intended, driver.normalize(snapshot).ruleset, snapshot))
    concurrent = arm.seed_nsg(RG, NSG, [UNMANAGED[0]])  # someone else writes the NSG meanwhile
    with pytest.raises(PermanentDriverError, match="changed since it was fetched"):
        driver.apply(change)
    assert arm.nsg(RG, NSG) == concurrent
    assert driver.fetch().fingerprint() != snapshot.fingerprint(), "the plan is stale for the engine too"


def test_throttled_fetch_is_transient_with_retry_after_then_succeeds(arm: FakeArm, driver: AzureNsgDriver) -> None:
    arm.seed_nsg(RG, NSG, [])
    arm.fail("GET", "nsg", fault="429", retry_after=7)
    with pytest.raises(TransientDriverError) as caught:
        driver.fetch()
    assert caught.value.delay == 7.0
    arm.fail("GET", "nsg", fault="429", retry_after=3)
    waits: list[float] = []
    snapshot = with_retries(driver.fetch, RetryPolicy(attempts=3), sleep=waits.append)
    assert snapshot.native["exists"] and len(waits) == 1 and waits[0] >= 3 * 0.75
    assert arm.count("GET", "nsg") == 3


def test_throttled_put_changes_nothing_and_the_retry_applies(arm: FakeArm, driver: AzureNsgDriver) -> None:
    arm.seed_nsg(RG, NSG, [])
    snapshot = driver.fetch()
    intended = ruleset(tcp_in(22))
    change = driver.render(RenderRequest(POINT, intended, driver.normalize(snapshot).ruleset, snapshot))
    arm.fail("PUT", "nsg", fault="429", retry_after=2)
    with pytest.raises(TransientDriverError) as caught:
        driver.apply(change)
    assert caught.value.delay == 2.0
    assert driver.fetch().fingerprint() == snapshot.fingerprint()
    report = with_retries(lambda: driver.apply(change), RetryPolicy(attempts=2), sleep=lambda _: None)
    assert report.mutating_calls == 1 and arm.count("PUT", "nsg") == 2  # throttled, applied (seeding is no PUT)
    assert driver.normalize(driver.fetch()).ruleset == intended


def test_server_error_and_hang_are_transient(arm: FakeArm) -> None:
    arm.seed_nsg(RG, NSG, [])
    driver = make_driver(arm, timeout=0.5)
    arm.fail("GET", "nsg", fault="500")
    with pytest.raises(TransientDriverError, match="HTTP 500 InternalServerError"):
        driver.fetch()
    arm.fail("GET", "nsg", fault="hang")
    with pytest.raises(TransientDriverError, match="GET NSG"):
        driver.fetch()
    assert driver.fetch().native["exists"]
    driver.close()


@pytest.mark.parametrize(("method", "kind", "fault", "error"), [
    ("PUT", "nsg", "fail-operation", PermanentDriverError),  # accepted, then the operation reports Failed
    ("GET", "operation", "500", TransientDriverError),  # accepted, then polling the operation fails
    ("PUT", "nsg", "500", TransientDriverError),  # refused outright
])
def test_failure_mid_apply_then_rollback_restores_the_fetch(arm: FakeArm, driver: AzureNsgDriver, method: str,
                                                            kind: str, fault: str, error: type[Exception]) -> None:
    arm.seed_nsg(RG, NSG, [UNMANAGED[0]])
    plan_and_apply(driver, ruleset(tcp_in(22), tcp_in(80)))
    before = driver.fetch()
    checkpoint = driver.checkpoint()
    assert checkpoint.fingerprint == before.fingerprint()
    arm.fail(method, kind, fault=fault)
    with pytest.raises(error):
        plan_and_apply(driver, ruleset(tcp_in(443), tcp_in(22, action=Action.DENY), default=Action.PERMIT))
    puts = arm.count("PUT", "nsg")
    driver.rollback(checkpoint)
    assert driver.fetch().fingerprint() == before.fingerprint()
    assert driver.normalize(driver.fetch()).ruleset == driver.normalize(before).ruleset
    expected = 0 if fault == "500" and method == "PUT" else 1
    assert arm.count("PUT", "nsg") - puts == expected, "rollback is one whole-NSG write, none when untouched"
    driver.rollback(checkpoint)
    assert arm.count("PUT", "nsg") - puts == expected, "a second rollback writes nothing"


def test_missing_nsg_is_created_and_rollback_deletes_it(arm: FakeArm, driver: AzureNsgDriver) -> None:
    empty = driver.fetch()
    assert not empty.native["exists"]
    checkpoint = driver.checkpoint()
    plan_and_apply(driver, ruleset(tcp_in(22)))
    created = arm.nsg(RG, NSG)
    assert created is not None and created["location"] == "westeurope"
    driver.rollback(checkpoint)
    assert arm.nsg(RG, NSG) is None and arm.count("DELETE", "nsg") == 1
    assert driver.fetch().fingerprint() == empty.fingerprint()
    nowhere = make_driver(arm, location=None)
    with pytest.raises(PermanentDriverError, match="set 'location'"):
        nowhere.render(RenderRequest(POINT, ruleset(tcp_in(22)), ruleset(), empty))
    nowhere.close()


@pytest.mark.parametrize(("props", "message"), [
    ({"sourceAddressPrefix": "VirtualNetwork"}, "service tag"),
    ({"protocol": "*", "destinationPortRange": "80"}, "ports on protocol"),
    ({"protocol": "Icmp", "destinationPortRange": "*", "sourceAddressPrefixes": ["fd00::/64"],
      "sourceAddressPrefix": None, "destinationAddressPrefixes": ["fd00:1::/64"]}, "ICMPv6"),
])
def test_normalize_fails_closed_on_owned_rules_it_cannot_read(arm: FakeArm, driver: AzureNsgDriver,
                                                              props: dict[str, Any], message: str) -> None:
    rule: dict[str, Any] = {"name": "mseg-in-0100", "properties": {
        "protocol": "Tcp", "sourceAddressPrefix": "10.0.0.0/8", "sourcePortRange": "*",
        "destinationAddressPrefix": "*", "destinationPortRange": "22", "access": "Allow", "priority": 100,
        "direction": "Inbound"}}
    rule["properties"].update({k: v for k, v in props.items() if v is not None})
    for key in [k for k, v in props.items() if v is None]:
        rule["properties"].pop(key)
    if "destinationAddressPrefixes" in props:
        rule["properties"].pop("destinationAddressPrefix")
    arm.seed_nsg(RG, NSG, [rule])
    with pytest.raises(ParseError, match=rf"mseg-in-0100.*{message}"):
        driver.normalize(driver.fetch())
    unowned = copy.deepcopy(rule)
    unowned["name"] = "hand-made"
    arm.seed_nsg(RG, NSG, [unowned])
    assert [u.name for u in driver.normalize(driver.fetch()).unmanaged] == ["hand-made"]


def test_without_a_credential_the_missing_azure_identity_is_a_clear_error(arm: FakeArm) -> None:
    if importlib.util.find_spec("azure.identity") is not None:
        pytest.skip("azure-identity is installed here")
    context = PointContext(POINT, "azure_nsg", Connection("x"), nsg_settings(arm), 5.0)
    driver = AzureNsgDriver(context)  # no I/O, no import yet
    with pytest.raises(PermanentDriverError, match="install azure-identity"):
        driver.fetch()
    assert arm.count("GET", "nsg") == 0


def test_engine_diff_after_failed_operation_shows_the_half_state(arm: FakeArm, driver: AzureNsgDriver) -> None:
    """An operation that fails after ARM accepted the PUT leaves the new rules in place: the driver says so."""
    arm.seed_nsg(RG, NSG, [])
    arm.fail("PUT", "nsg", fault="fail-operation")
    with pytest.raises(PermanentDriverError, match="The fake operation failed half-way"):
        plan_and_apply(driver, ruleset(tcp_in(22)))
    nsg = arm.nsg(RG, NSG)
    assert nsg is not None and nsg["properties"]["provisioningState"] == "Failed"
    assert diff_rulesets(driver.normalize(driver.fetch()).ruleset, ruleset(tcp_in(22))).empty


# ---------------------------------------------------------------- directions: an ingress-only point owns no Outbound

INGRESS_ONLY = frozenset({Direction.INGRESS})
# in the band, with the prefix: microseg's rule when the point filters egress, left alone when it does not
DNS_OUT: dict[str, Any] = {"name": "mseg-out-0100", "properties": {
    "protocol": "Udp", "sourceAddressPrefix": "10.30.2.11/32", "sourcePortRange": "*",
    "destinationAddressPrefix": "10.10.0.53/32", "destinationPortRange": "53", "access": "Allow", "priority": 100,
    "direction": "Outbound"}}
DNS = Rule(Action.PERMIT, Direction.EGRESS, 17, A(["10.30.2.11/32"]), A(["10.10.0.53/32"]), dst_ports=((53, 53),))


def outbound(arm: FakeArm) -> list[dict[str, Any]]:
    """The NSG's Outbound security rules as written (per-write fields left out), by name."""
    nsg = arm.nsg(RG, NSG)
    assert nsg is not None
    return sorted(({"name": r["name"], "properties": {k: v for k, v in r["properties"].items()
                                                      if k != "provisioningState"}}
                   for r in nsg["properties"]["securityRules"] if r["properties"]["direction"] == "Outbound"),
                  key=lambda r: r["name"])


def test_an_ingress_only_point_writes_no_outbound_rule_and_no_outbound_catch_all(arm: FakeArm) -> None:
    other = arm.add_asg(RG, "asg-other")  # not configured: an owned rule using it would fail closed
    by_asg = {"name": "mseg-out-0200", "properties": {
        **{k: v for k, v in DNS_OUT["properties"].items() if k != "destinationAddressPrefix"},
        "destinationApplicationSecurityGroups": [{"id": other}], "priority": 200}}
    arm.seed_nsg(RG, NSG, [DNS_OUT, by_asg, UNMANAGED[0]])
    before = outbound(arm)
    driver = make_driver(arm, directions=INGRESS_ONLY)
    seen = driver.normalize(driver.fetch())
    assert seen.ruleset.rules == () and seen.ruleset.default_action is Action.PERMIT
    assert [u.name for u in seen.unmanaged] == ["mseg-out-0100", "mseg-out-0200", "AllowBastionSsh"]
    assert "not filtered by this point" in seen.unmanaged[0].detail
    intended = ruleset(tcp_in(22), tcp_in(443))
    change, report = plan_and_apply(driver, intended)
    assert report is not None and report.mutating_calls == 1
    assert not [line for line in change.commands if line.startswith("# ") and "Outbound" in line]
    assert "mseg-default-deny-out" not in change.text()
    assert outbound(arm) == before, "the Outbound rules are carried through the whole-NSG PUT unchanged"
    nsg = arm.nsg(RG, NSG)
    assert nsg is not None
    assert {r["name"] for r in nsg["properties"]["securityRules"]} == {
        "mseg-out-0100", "mseg-out-0200", "AllowBastionSsh", "mseg-in-0100", "mseg-in-0110", "mseg-default-deny-in"}
    after = driver.normalize(driver.fetch())
    assert after.ruleset == intended
    assert [u.name for u in after.unmanaged] == ["mseg-out-0100", "mseg-out-0200", "AllowBastionSsh"]
    writes = arm.writes()
    twin, twin_report = plan_and_apply(driver, intended)
    assert twin.empty and twin_report is None and arm.writes() == writes, "a second plan is empty"
    both = make_driver(arm)  # the same NSG seen by a point filtering both directions owns the Outbound rules
    with pytest.raises(ParseError, match=r"mseg-out-0200.*asg-other"):
        both.normalize(both.fetch())
    driver.close()
    both.close()


def test_an_ingress_only_point_refuses_egress_rules_before_any_call(arm: FakeArm) -> None:
    arm.seed_nsg(RG, NSG, [])
    driver = make_driver(arm, directions=INGRESS_ONLY)
    snapshot = driver.fetch()
    writes = arm.writes()
    with pytest.raises(PermanentDriverError, match="does not filter egress"):
        driver.render(RenderRequest(POINT, ruleset(tcp_in(22), DNS), ruleset(), snapshot))
    assert arm.writes() == writes
    driver.close()


def test_an_ingress_only_point_still_owns_a_prefixed_rule_whose_direction_it_cannot_read(arm: FakeArm) -> None:
    sideways = copy.deepcopy(DNS_OUT)
    sideways["properties"]["direction"] = "Sideways"
    native = {"exists": True, "etag": None, "nsg": {"properties": {"securityRules": [sideways]}}}
    driver = make_driver(arm, directions=INGRESS_ONLY)
    with pytest.raises(ParseError, match=r"mseg-out-0100.*direction"):
        driver.normalize(Snapshot(POINT, "azure_nsg", native))
    driver.close()


def test_the_rollback_of_an_ingress_only_point_leaves_outbound_rules_alone(arm: FakeArm) -> None:
    arm.seed_nsg(RG, NSG, [DNS_OUT])
    driver = make_driver(arm, directions=INGRESS_ONLY)
    plan_and_apply(driver, ruleset(tcp_in(22)))
    checkpoint = driver.checkpoint()
    assert [r["name"] for r in checkpoint.native["owned"]] == ["mseg-in-0100", "mseg-default-deny-in"]
    plan_and_apply(driver, ruleset(tcp_in(443), default=Action.PERMIT))
    nsg = arm.nsg(RG, NSG)
    assert nsg is not None
    moved = copy.deepcopy(DNS_OUT)
    moved["properties"]["destinationPortRange"] = "853"  # someone changes the Outbound rule meanwhile
    rules = [r for r in nsg["properties"]["securityRules"] if r["name"] != "mseg-out-0100"] + [moved]
    arm.seed_nsg(RG, NSG, rules)
    current = outbound(arm)
    driver.rollback(checkpoint)
    assert driver.normalize(driver.fetch()).ruleset == ruleset(tcp_in(22))
    assert outbound(arm) == current, "the rollback neither restored nor removed an Outbound rule"
    both = make_driver(arm)
    stale = both.checkpoint()  # a checkpoint holding Outbound rules is not put back by an ingress-only point
    arm.seed_nsg(RG, NSG, [r for r in rules if r["properties"]["direction"] == "Inbound"])
    driver.rollback(stale)
    assert outbound(arm) == []
    both.close()
    driver.close()


def test_an_nsg_an_ingress_only_point_created_keeps_its_outbound_rules_at_rollback(arm: FakeArm) -> None:
    driver = make_driver(arm, directions=INGRESS_ONLY)
    checkpoint = driver.checkpoint()
    plan_and_apply(driver, ruleset(tcp_in(22)))
    nsg = arm.nsg(RG, NSG)
    assert nsg is not None
    arm.seed_nsg(RG, NSG, [*nsg["properties"]["securityRules"], DNS_OUT])
    driver.rollback(checkpoint)
    assert arm.count("DELETE", "nsg") == 0, "an NSG holding rules the point leaves alone is not deleted"
    assert [r["name"] for r in outbound(arm)] == ["mseg-out-0100"]
    assert driver.normalize(driver.fetch()).ruleset.rules == ()
    driver.close()


def test_switching_the_point_to_both_directions_plans_the_outbound_change(arm: FakeArm) -> None:
    arm.seed_nsg(RG, NSG, [DNS_OUT])
    ingress = make_driver(arm, directions=INGRESS_ONLY)
    plan_and_apply(ingress, ruleset(tcp_in(22)))
    both = make_driver(arm)
    seen = both.normalize(both.fetch())
    assert seen.ruleset.for_direction(Direction.EGRESS) == (DNS,) and seen.unmanaged == ()
    assert seen.ruleset.default_action is Action.PERMIT, "no Outbound catch-all: egress is not denied yet"
    change, report = plan_and_apply(both, ruleset(tcp_in(22), DNS))
    assert report is not None
    notes = [line for line in change.commands if line.startswith("# ") and not line.startswith("# NSG")]
    assert notes == ["# add: mseg-default-deny-out Outbound 1999 Deny * * -> * ports *"]
    assert both.normalize(both.fetch()).ruleset == ruleset(tcp_in(22), DNS)
    assert [r["name"] for r in outbound(arm)] == ["mseg-default-deny-out", "mseg-out-0100"]
    change, _ = plan_and_apply(both, ruleset(tcp_in(22)))
    assert "# remove: mseg-out-0100 Outbound 100 Allow Udp 10.30.2.11/32 -> 10.10.0.53/32 ports 53" in change.commands
    ingress.close()
    both.close()
