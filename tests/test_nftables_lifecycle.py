"""nftables lifecycle on real nft: drift, unmanaged tables, checkpoint → apply → rollback, atomic failure, 10k rules."""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Iterator

import pytest

from drivers.nftables import NftablesDriver
from orchestrator.engine.diff import diff_rulesets
from orchestrator.model.driver import Checkpoint, Connection, NativeChange, PointContext, RenderRequest, Unmanaged
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
from tests.nft_helpers import POINT, apply_ruleset, driver_in, needs_netns, network_namespace, nft

pytestmark = needs_netns

A = AddressSet.of
V4, V6 = A(["0.0.0.0/0"]), A(["::/0"])
SSH = Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.0.0.0/8"]), V4, dst_ports=((22, 22),),
           provenance=Provenance(rules=("admin-ssh",)))
DNS = Rule(Action.PERMIT, Direction.EGRESS, 17, V6, A(["fd00::53"]), dst_ports=((53, 53),))
WEB = Rule(Action.PERMIT, Direction.INGRESS, 6, V4, A(["10.1.1.1"]), dst_ports=((80, 80), (443, 443)), log=True)
FIRST = Ruleset(POINT, Ordering.FIRST_MATCH, Action.DENY, (SSH, DNS))
SECOND = Ruleset(POINT, Ordering.FIRST_MATCH, Action.DENY, (WEB, SSH), Mode.MONITOR, stateful=False)
OTHER_TABLE = """table inet other {
    chain input {
        type filter hook input priority 10; policy drop;
        tcp dport 22 counter accept
    }
}
table ip filter {
}
"""


@pytest.fixture
def ns() -> Iterator[str]:
    with network_namespace() as name:
        yield name


@pytest.fixture
def driver(ns: str) -> Iterator[NftablesDriver]:
    drv = driver_in(ns)
    yield drv
    drv.close()


def observe(driver: NftablesDriver) -> Ruleset:
    return driver.normalize(driver.fetch()).ruleset


def tables(ns: str) -> list[str]:
    return nft(ns, "list", "tables").stdout.split("\n")


def test_hand_added_rule_is_drift_not_dropped(ns: str, driver: NftablesDriver) -> None:
    apply_ruleset(driver, FIRST)
    nft(ns, "add", "rule", "inet", "microseg", "ingress", "ip", "saddr", "1.2.3.4", "accept")
    actual = observe(driver)
    extra = Rule(Action.PERMIT, Direction.INGRESS, None, A(["1.2.3.4/32"]), V4)
    assert actual.for_direction(Direction.INGRESS) == (SSH, extra)
    diff = diff_rulesets(actual, FIRST)
    assert diff.removed == (extra,) and not diff.added
    apply_ruleset(driver, FIRST)  # repair, then the idempotency twin: nothing left to change
    assert diff_rulesets(observe(driver), FIRST).empty


def test_other_tables_are_unmanaged_and_survive_apply_and_rollback(ns: str, driver: NftablesDriver) -> None:
    nft(ns, "-f", "-", stdin=OTHER_TABLE)
    before = nft(ns, "list", "ruleset").stdout
    observed = driver.normalize(driver.fetch())
    assert observed.unmanaged == (
        Unmanaged("table", "inet other", "warning: base chain input (hook input, priority 10) has policy drop: "
                  "it drops traffic whatever microseg permits"),
        Unmanaged("table", "ip filter", ""),
    )
    checkpoint = driver.checkpoint()
    apply_ruleset(driver, FIRST)
    assert observe(driver) == FIRST
    assert nft(ns, "list", "table", "inet", "other").stdout in nft(ns, "list", "ruleset").stdout
    driver.rollback(checkpoint)
    assert nft(ns, "list", "ruleset").stdout == before


def test_rollback_restores_the_exact_previous_table(ns: str, driver: NftablesDriver) -> None:
    apply_ruleset(driver, FIRST)
    nft(ns, "add", "rule", "inet", "microseg", "egress", "ip", "daddr", "192.0.2.1", "counter", "drop")  # drift too
    before = driver.fetch()
    checkpoint = driver.checkpoint()
    assert checkpoint.native["exists"] is True
    assert checkpoint.fingerprint == before.fingerprint()
    apply_ruleset(driver, SECOND)
    assert observe(driver) == SECOND
    assert driver.fetch().fingerprint() != before.fingerprint()
    restored = Checkpoint.from_dict(json.loads(json.dumps(checkpoint.to_dict())))  # as the state store keeps it
    driver.rollback(restored)
    after = driver.fetch()
    assert after.fingerprint() == before.fingerprint()
    assert driver.normalize(after) == driver.normalize(before)
    driver.rollback(restored)  # idempotent
    assert driver.fetch().fingerprint() == before.fingerprint()


def test_rollback_removes_a_table_that_did_not_exist(ns: str, driver: NftablesDriver) -> None:
    before = driver.fetch()
    checkpoint = driver.checkpoint()
    assert checkpoint.native == {"exists": False, "script": ""}
    assert checkpoint.fingerprint == before.fingerprint()
    apply_ruleset(driver, FIRST)
    assert "table inet microseg" in tables(ns)
    driver.rollback(checkpoint)
    assert "table inet microseg" not in tables(ns)
    assert driver.fetch().fingerprint() == before.fingerprint()
    driver.rollback(checkpoint)
    assert "table inet microseg" not in tables(ns)


def test_failing_script_changes_nothing_and_reports_nft_error(ns: str, driver: NftablesDriver) -> None:
    apply_ruleset(driver, FIRST)
    before = driver.fetch()
    change = driver.render(RenderRequest(POINT, SECOND, FIRST, before))
    lines = list(change.commands)
    target = next(i for i, line in enumerate(lines) if "tcp dport { 80, 443 }" in line)
    lines[target] = lines[target].replace("tcp dport", "tcp dpotr")
    broken = NativeChange(POINT, "nftables", change.format, tuple(lines))
    with pytest.raises(PermanentDriverError) as info:
        driver.apply(broken)
    message = str(info.value)
    assert message.startswith(f"{POINT} (nftables): command `nft -f -` failed (exit 1): /dev/stdin:{target + 1}:")
    assert "Error: syntax error" in message and "dpotr" in message
    assert driver.fetch().fingerprint() == before.fingerprint()


@pytest.mark.parametrize(
    "line",
    ["flush ruleset", "delete table ip filter", "\tip saddr 1.2.3.4 accept; delete table inet other", "table ip x {"],
)
def test_apply_refuses_a_change_reaching_beyond_the_owned_table(ns: str, driver: NftablesDriver, line: str) -> None:
    apply_ruleset(driver, FIRST)
    before = driver.fetch()
    change = driver.render(RenderRequest(POINT, FIRST, FIRST, before))
    tampered = NativeChange(POINT, "nftables", change.format, (*change.commands[:-1], line, "}"))
    with pytest.raises(PermanentDriverError, match="touches something but table inet microseg"):
        driver.apply(tampered)
    assert driver.fetch().fingerprint() == before.fingerprint()


def test_apply_reports_one_call_and_the_lines_sent(driver: NftablesDriver) -> None:
    snapshot = driver.fetch()
    change = driver.render(RenderRequest(POINT, FIRST, driver.normalize(snapshot).ruleset, snapshot))
    assert change.format == "nft-script" and change.mutating_calls == 1
    report = driver.apply(change)
    # first install: one call loads the conntrack rules (permit-all), then the change itself
    assert (report.mutating_calls, report.lines_sent) == (2, len(change.commands))
    again = driver.render(RenderRequest(POINT, FIRST, driver.normalize(driver.fetch()).ruleset, driver.fetch()))
    assert driver.apply(again).mutating_calls == 1  # the table (and conntrack) is there: one transaction


def ten_thousand_rules(*, with_sets: bool) -> Ruleset:
    """10,000 rules: IPv4 ingress permits and IPv6 egress denies; ``with_sets`` gives each an address set."""
    rules = []
    for i in range(10_000):
        port = ((1000 + i % 5000, 1000 + i % 5000),)
        if i % 10 == 9:
            dst = A([ipaddress.IPv6Network((0xFD00 << 112 | i << 16, 112))])
            rules.append(Rule(Action.DENY, Direction.EGRESS, 17, V6, dst, dst_ports=port, log=i % 20 == 9))
        else:
            source = f"{ipaddress.IPv4Address(0x0A000000 + i * 4)}/30"
            src = A([source, f"172.16.{i % 256}.{i // 256}"] if with_sets else [source])
            rules.append(Rule(Action.PERMIT, Direction.INGRESS, 6, src, V4, dst_ports=port))
    ordered = tuple(sorted(rules, key=lambda r: r.direction is Direction.EGRESS))
    return Ruleset(POINT, Ordering.FIRST_MATCH, Action.DENY, ordered)


def run_ten_thousand(driver: NftablesDriver, ruleset: Ruleset) -> dict[str, float]:
    started = time.monotonic()
    snapshot = driver.fetch()
    change = driver.render(RenderRequest(POINT, ruleset, driver.normalize(snapshot).ruleset, snapshot))
    rendered = time.monotonic()
    driver.apply(change)
    applied = time.monotonic()
    observed = observe(driver)
    done = time.monotonic()
    assert observed == ruleset
    return {"render": rendered - started, "apply": applied - rendered, "fetch+normalize": done - applied}


def test_ten_thousand_single_prefix_rules(driver: NftablesDriver, record_property: pytest.RecordProperty) -> None:
    timings = run_ten_thousand(driver, ten_thousand_rules(with_sets=False))
    record_property("timings", timings)
    print("10k single-prefix rules:", {k: round(v, 2) for k, v in timings.items()})


@pytest.mark.slow
def test_ten_thousand_rules_with_address_sets(driver: NftablesDriver, record_property: pytest.RecordProperty) -> None:
    """9,000 anonymous sets: nft 1.0.6 and the kernel look sets up by walking the table's set list (quadratic)."""
    timings = run_ten_thousand(driver, ten_thousand_rules(with_sets=True))
    record_property("timings", timings)
    print("10k rules with address sets:", {k: round(v, 2) for k, v in timings.items()})


def _ingress_only(ns: str) -> NftablesDriver:
    context = PointContext(POINT, "nftables", Connection("localhost"), {"transport": "local", "netns": ns}, 30.0,
                           directions=frozenset({Direction.INGRESS}))
    return NftablesDriver(context)


@needs_netns
def test_a_point_that_filters_ingress_only_gets_no_output_chain(ns: str, driver: NftablesDriver) -> None:
    """Before: an ingress-only point got an `output` chain with policy drop, cutting every new outbound
    connection of the host. Now it owns only the chain of the direction it filters; a chain left from an
    earlier configuration is read as a change, and apply removes it (one atomic table rewrite)."""
    web = Rule(Action.PERMIT, Direction.INGRESS, 6, AddressSet.of(["10.0.0.0/8"]), AddressSet.of(["0.0.0.0/0"]),
               dst_ports=((443, 443),))
    both = Ruleset(POINT, Ordering.FIRST_MATCH, Action.DENY, (web,))
    apply_ruleset(driver, both)  # as a point that filtered both directions left it
    assert "hook output" in nft(ns, "list", "table", "inet", "microseg").stdout
    only = _ingress_only(ns)
    stale = only.normalize(only.fetch()).ruleset
    assert Rule(Action.DENY, Direction.EGRESS, None, ANY_ADDRESS, ANY_ADDRESS) in stale.rules  # seen, so planned
    apply_ruleset(only, both)
    listing = nft(ns, "list", "table", "inet", "microseg").stdout
    assert "hook input" in listing and "hook output" not in listing and "chain egress" not in listing
    assert only.normalize(only.fetch()).ruleset == both  # the twin: nothing left to change
