"""Pure parts of the Azure NSG driver: priority allocation, render refusals and limits, catch-all, change parsing."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from drivers.azure_nsg import AzureNsgDriver
from drivers.azure_nsg.layout import parse_settings
from drivers.azure_nsg.parse import observed, split_view
from drivers.azure_nsg.priorities import BandFull, allocate
from drivers.azure_nsg.render import native_rule, parse_change
from orchestrator.engine.project import load_project
from orchestrator.model.driver import Connection, NativeChange, PointContext, RenderRequest, Snapshot
from orchestrator.model.errors import PermanentDriverError
from orchestrator.model.rules import (
    ANY_ADDRESS,
    Action,
    AddressSet,
    Direction,
    Mode,
    Ordering,
    Provenance,
    Rule,
    Ruleset,
)

A = AddressSet.of
POINT = "azure-nsg-dev-app"
REPO = Path(__file__).resolve().parents[1]
SETTINGS = {"subscription_id": "sub", "resource_group": "rg", "nsg_name": "nsg", "location": "westeurope",
            "rule_name_prefix": "mseg-", "priority_min": 100, "priority_max": 1999}


def driver(**overrides: Any) -> AzureNsgDriver:
    return AzureNsgDriver(PointContext(POINT, "azure_nsg", Connection("x"), {**SETTINGS, **overrides}),
                          credential=object())  # type: ignore[arg-type]  # never used: no I/O here


def snapshot(rules: list[dict[str, Any]] | None = None) -> Snapshot:
    nsg = {"name": "nsg", "etag": 'W/"1"', "location": "westeurope", "properties": {"securityRules": rules or []}}
    return Snapshot(POINT, "azure_nsg", {"exists": True, "etag": 'W/"1"', "nsg": nsg})


def render(ruleset: Ruleset, drv: AzureNsgDriver | None = None, rules: list[dict[str, Any]] | None = None
           ) -> NativeChange:
    drv = drv or driver()
    snap = snapshot(rules)
    return drv.render(RenderRequest(POINT, ruleset, drv.normalize(snap).ruleset, snap))


def tcp(port: int, direction: Direction = Direction.INGRESS) -> Rule:
    return Rule(Action.PERMIT, direction, 6, A(["10.0.0.0/8"]), A(["10.30.2.11/32"]), dst_ports=((port, port),))


def rs(*rules: Rule, default: Action = Action.DENY, mode: Mode = Mode.ENFORCE) -> Ruleset:
    return Ruleset(POINT, Ordering.PRIORITY, default, rules, mode)


# --------------------------------------------------------------------------- priorities


def test_fresh_allocation_leaves_gaps_of_ten() -> None:
    assert allocate([], ["a", "b", "c"], 100, 1998).priorities == (100, 110, 120)


def test_existing_rules_keep_their_priorities_and_inserts_go_between() -> None:
    existing = [("a", 100), ("b", 110), ("c", 120)]
    alloc = allocate(existing, ["a", "m", "b", "c", "y"], 100, 1998)
    assert alloc.priorities == (100, 105, 110, 120, 130)
    assert alloc.kept == frozenset({0, 2, 3})
    squeezed = allocate(existing, ["z", "a", "b", "c"], 100, 1998)  # nothing is free below 100: "a" moves
    assert squeezed.priorities == (100, 105, 110, 120) and squeezed.kept == frozenset({2, 3})


def test_insert_before_the_first_rule_counts_down_from_it() -> None:
    alloc = allocate([("a", 150)], ["new1", "new2", "a"], 100, 1998)
    assert alloc.priorities == (130, 140, 150)


def test_a_full_gap_renumbers_the_fewest_rules() -> None:
    existing = [(f"r{i}", 100 + 10 * i) for i in range(10)]
    intended = ["r0", "r1", *(f"n{i}" for i in range(12)), *(f"r{i}" for i in range(2, 10))]
    alloc = allocate(existing, intended, 100, 1998)
    moved = [k for k, p in existing if alloc.priorities[intended.index(k)] != p]
    assert len(moved) == 1, moved  # 12 rules need a 13-slot gap: one neighbour of the 9-slot gap moves
    assert list(alloc.priorities) == sorted(set(alloc.priorities))


def test_blocked_priorities_are_skipped_and_a_full_band_is_refused() -> None:
    assert 105 not in allocate([], [str(i) for i in range(10)], 100, 110, frozenset({105})).priorities
    with pytest.raises(BandFull) as caught:
        allocate([], [str(i) for i in range(11)], 100, 110, frozenset({105}))
    assert (caught.value.wanted, caught.value.free) == (11, 10)


# --------------------------------------------------------------------------- render


def test_native_rule_shape_uses_lists_and_star_for_any() -> None:
    rule = Rule(Action.DENY, Direction.EGRESS, 17, A(["10.0.0.1", "10.0.0.3"]), ANY_ADDRESS,
                dst_ports=((53, 53), (8000, 8080)))
    assert native_rule(rule, "mseg-out-0100", 100) == {"name": "mseg-out-0100", "properties": {
        "access": "Deny", "direction": "Outbound", "priority": 100, "protocol": "Udp",
        "sourceAddressPrefixes": ["10.0.0.1/32", "10.0.0.3/32"], "destinationAddressPrefix": "*",
        "sourcePortRange": "*", "destinationPortRanges": ["53", "8000-8080"]}}


@pytest.mark.parametrize(("rule", "message"), [
    (Rule(Action.PERMIT, Direction.INGRESS, 1, A(["10.0.0.0/8"]), A(["10.30.2.11"]), icmp_type=8),
     "rule 1 .*icmp/8.*cannot match an ICMP type/code"),
    (Rule(Action.PERMIT, Direction.INGRESS, 1, A(["10.0.0.0/8"]), A(["10.30.2.11"]), icmp_type=3, icmp_code=4),
     "icmp/3/4"),
    (Rule(Action.PERMIT, Direction.INGRESS, 47, A(["10.0.0.0/8"]), A(["10.30.2.11"])),
     r"protocol gre \(47\) cannot be expressed"),
    (Rule(Action.PERMIT, Direction.INGRESS, 132, A(["10.0.0.0/8"]), A(["10.30.2.11"])), r"sctp \(132\)"),
    (Rule(Action.PERMIT, Direction.INGRESS, 58, A(["fd00::/8"]), A(["fd00::1"])), r"icmpv6 \(58\)"),
    (Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.0.0.0/8", "fd00::/8"]), A(["10.30.2.11"])), "IPv4 and IPv6"),
    (Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.0.0.0/8"]), A(["fd00::1"])), "IPv4 and IPv6"),
    (Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.0.0.0/8"]), A(["10.0.0.1"]), log=True), "log flag"),
])
def test_render_refuses_what_azure_cannot_express(rule: Rule, message: str) -> None:
    with pytest.raises(PermanentDriverError, match=message):
        render(rs(rule))


def _deny(port: int) -> Rule:
    return Rule(Action.DENY, Direction.INGRESS, 6, ANY_ADDRESS, A(["10.30.2.0/24"]), dst_ports=((port, port),),
                provenance=Provenance(rules=("no-telnet",)))


@pytest.mark.parametrize("default", [Action.DENY, Action.PERMIT])
def test_monitor_writes_would_deny_allows_and_an_allow_the_rest_catch_all(default: Action) -> None:
    """Monitor mode: each deny rule as Allow marked ``microseg monitor: would deny`` (NSG flow logs name it for
    every flow it lets through), and whatever the default an allow-everything catch-all at the band's end that
    says which default it stands for; read back it is the same monitored ruleset."""
    drv = driver()
    monitored = rs(_deny(23), tcp(22), default=default, mode=Mode.MONITOR)
    body = parse_change(render(monitored, drv), drv.settings, POINT).body
    rules = {r["name"]: r["properties"] for r in body["properties"]["securityRules"]}
    would = next(p for p in rules.values() if p.get("destinationPortRanges") == ["23"])
    assert would["access"] == "Allow" and would["description"] == "microseg monitor: would deny; no-telnet"
    rest = rules["mseg-default-deny-in"]
    assert (rest["access"], rest["priority"], rest["protocol"]) == ("Allow", 1999, "*")
    assert rest["description"] == f"microseg monitor: allows the rest (default {default.value})"
    assert "Deny" not in {p["access"] for p in rules.values()}
    read = drv.normalize(snapshot(body["properties"]["securityRules"])).ruleset
    assert read == monitored and read.mode is Mode.MONITOR and read.default_action is default
    assert read.rules[0].provenance.rules == ("no-telnet",)


def test_switching_mode_rewrites_the_denies_and_the_catch_all_and_keeps_the_permits() -> None:
    drv = driver()
    enforce = rs(_deny(23), tcp(22))
    body = parse_change(render(enforce, drv), drv.settings, POINT).body
    change = render(replace(enforce, mode=Mode.MONITOR), drv, body["properties"]["securityRules"])
    notes = [line for line in change.commands if line.startswith("# ") and not line.startswith("# NSG")]
    assert sorted(notes) == [
        "# add: mseg-default-deny-in Inbound 1999 Allow * * -> * ports *",
        "# add: mseg-default-deny-out Outbound 1999 Allow * * -> * ports *",
        "# add: mseg-in-0100 Inbound 100 Allow Tcp * -> 10.30.2.0/24 ports 23",
        "# remove: mseg-default-deny-in Inbound 1999 Deny * * -> * ports *",
        "# remove: mseg-default-deny-out Outbound 1999 Deny * * -> * ports *",
        "# remove: mseg-in-0100 Inbound 100 Deny Tcp * -> 10.30.2.0/24 ports 23",
    ]  # the permit of port 22 is the same in both modes: kept


def test_a_half_monitored_nsg_reads_as_what_it_does_so_either_plan_rewrites_it() -> None:
    """Microseg's PUT replaces the whole NSG, so only a hand edit leaves some rules monitored and others not:
    read as enforcing, with every rule as what it does now (a would-deny Allow permits)."""
    drv = driver()
    body = parse_change(render(rs(_deny(23), _deny(25), tcp(22), mode=Mode.MONITOR), drv), drv.settings,
                        POINT).body
    rules = body["properties"]["securityRules"]
    edited = [r for r in rules if r["properties"].get("destinationPortRanges") != ["25"]]
    edited.append(native_rule(_deny(25), "mseg-in-0500", 500))  # enforcing again, by hand
    read = drv.normalize(snapshot(edited)).ruleset
    assert read.mode is Mode.ENFORCE and read.default_action is Action.PERMIT
    by_port = {r.dst_ports: r.action for r in read.rules if r.protocol == 6}
    assert by_port == {((23, 23),): Action.PERMIT, ((22, 22),): Action.PERMIT, ((25, 25),): Action.DENY}
    assert any(r.protocol is None and r.action is Action.PERMIT for r in read.rules)  # the allow-the-rest rule


def test_render_refuses_a_band_too_small() -> None:
    with pytest.raises(PermanentDriverError, match=r"Inbound: 12 rules do not fit in the band 100-110 \(11 free"):
        render(rs(*(tcp(i) for i in range(12))), driver(priority_max=111))


def test_render_checks_the_nsg_limits() -> None:
    many = rs(*(tcp(i) for i in range(600)), *(tcp(i, Direction.EGRESS) for i in range(401)))
    with pytest.raises(PermanentDriverError, match="1003 security rules; Azure allows 1000"):
        render(many, driver(priority_max=4096))
    wide = A([ipaddress.ip_network((0x0A000000 + 2 * i, 32)) for i in range(2001)])
    rules = [Rule(Action.PERMIT, Direction.INGRESS, 6, wide, A(["10.30.2.11"]), dst_ports=((p, p),)) for p in (1, 2)]
    with pytest.raises(PermanentDriverError, match="4004 address prefixes; Azure allows 4000"):
        render(rs(*rules))


def test_the_catch_all_stands_for_default_deny_and_one_alone_is_an_ordinary_rule() -> None:
    drv = driver()
    change = render(rs(tcp(22)), drv)
    assert sum('"name":"mseg-default-deny-' in line for line in change.commands) == 2
    body = parse_change(change, drv.settings, POINT).body
    both = snapshot(body["properties"]["securityRules"])
    assert drv.normalize(both).ruleset == rs(tcp(22))
    inbound_only = [r for r in body["properties"]["securityRules"] if r["name"] != "mseg-default-deny-out"]
    alone = drv.normalize(snapshot(inbound_only)).ruleset
    assert alone.default_action is Action.PERMIT
    assert alone.rules[-1] == Rule(Action.DENY, Direction.INGRESS, None, ANY_ADDRESS, ANY_ADDRESS)


def test_parse_change_refuses_another_nsg_or_edited_lines() -> None:
    drv = driver()
    change = render(rs(tcp(22)), drv)
    other = driver(nsg_name="someone-elses")
    with pytest.raises(PermanentDriverError, match="not a conditional PUT of"):
        other.apply(NativeChange(POINT, "azure_nsg", "azure-arm", change.commands))
    edited = (*change.commands[:-1], "DELETE everything")
    with pytest.raises(PermanentDriverError, match=r"is not JSON|neither a comment"):
        drv.apply(NativeChange(POINT, "azure_nsg", "azure-arm", edited))


def test_settings_are_validated_without_io() -> None:
    with pytest.raises(PermanentDriverError, match="'nsg_name' is required"):
        parse_settings({k: v for k, v in SETTINGS.items() if k != "nsg_name"}, POINT)
    with pytest.raises(PermanentDriverError, match="priority_min' must be an integer in 100-4096"):
        parse_settings({**SETTINGS, "priority_min": 50}, POINT)
    with pytest.raises(PermanentDriverError, match="band 300-300 is empty"):
        parse_settings({**SETTINGS, "priority_min": 300, "priority_max": 300}, POINT)


def test_unreadable_snapshot_fails_closed() -> None:
    settings = parse_settings(SETTINGS, POINT)
    with pytest.raises(PermanentDriverError, match="no 'properties'"):
        split_view({"exists": True, "nsg": {"name": "nsg"}}, settings, POINT)
    bad = {"name": "mseg-x", "properties": {"priority": "high"}}
    with pytest.raises(PermanentDriverError, match="priority 'high' is not a number"):
        observed(split_view(snapshot([bad]).native, settings, POINT), settings, POINT)


def test_worked_example_point_compiles_to_what_azure_can_hold() -> None:
    """The worked example's ping rule (icmp type 8) is widened by the compiler (Azure cannot match ICMP types),
    with a warning; render still refuses an ICMP type if one ever reaches it."""
    project = load_project(REPO / "policies", REPO / "inventory", today=date(2025, 1, 1))
    compiled = project.compile([POINT])
    intended = compiled.points[POINT].ruleset
    assert all(r.icmp_type is None for r in intended.rules) and any(r.protocol == 1 for r in intended.rules)
    assert any(d.code == "widened" and POINT in d.message for d in compiled.diagnostics)
    assert "mseg-in-0100" in render(intended).text()
    typed = next(r for r in intended.rules if r.protocol == 1)
    ping = Rule(typed.action, typed.direction, 1, typed.src, typed.dst, icmp_type=8)
    with pytest.raises(PermanentDriverError, match=r"icmp/8.*cannot match an ICMP type/code"):
        render(Ruleset(POINT, intended.ordering, intended.default_action, (ping,)))
