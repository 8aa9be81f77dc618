"""nftables parse: fails closed (ParseError naming point, chain and handle), name tables, preamble drift."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from drivers.nftables import NftablesDriver
from drivers.nftables.parse import parse_observed, parse_table
from orchestrator.engine.diff import diff_rulesets
from orchestrator.model.driver import Snapshot
from orchestrator.model.errors import ParseError
from orchestrator.model.rules import ANY_ADDRESS, Action, AddressSet, Direction, Mode, Ordering, Rule, Ruleset
from tests.nft_helpers import POINT, apply_ruleset, driver_in, needs_netns, network_namespace, nft

A = AddressSet.of
V4, V6 = A(["0.0.0.0/0"]), A(["::/0"])
BASE = Ruleset(
    POINT,
    Ordering.FIRST_MATCH,
    Action.DENY,
    (
        Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.0.0.0/8"]), V4, dst_ports=((22, 22),)),
        Rule(Action.PERMIT, Direction.EGRESS, 17, V6, V6, dst_ports=((53, 53),)),
    ),
)
EMPTY = {"nftables": [{"metainfo": {"version": "1.0.6"}}]}


@pytest.fixture
def ns() -> Iterator[str]:
    with network_namespace() as name:
        yield name


@pytest.fixture
def driver(ns: str) -> Iterator[NftablesDriver]:
    drv = driver_in(ns)
    apply_ruleset(drv, BASE)
    yield drv
    drv.close()


def observe(driver: NftablesDriver) -> Ruleset:
    return driver.normalize(driver.fetch()).ruleset


def handles(ns: str, chain: str) -> list[int]:
    listing = json.loads(nft(ns, "-j", "list", "chain", "inet", "microseg", chain).stdout)["nftables"]
    return [o["rule"]["handle"] for o in listing if "rule" in o]


def assert_names_rule(error: ParseError, chain: str, handle: int) -> None:
    text = str(error)
    assert text.startswith(f"{POINT} (nftables): table inet microseg, chain {chain}, rule handle {handle}:"), text


# ------------------------------------------------------------------ bad input, no nft needed


@pytest.mark.parametrize("listing", ["{not json", "[]", '{"nftables": {}}', '{"nftables": [{"a": 1, "b": 2}]}'])
def test_bad_json_or_shape_is_a_parse_error(listing: str) -> None:
    native = {"tables": EMPTY, "chains": EMPTY, "table": listing}
    native["tables"] = {"nftables": [{"table": {"family": "inet", "name": "microseg", "handle": 1}}]}
    with pytest.raises(ParseError, match=r"^host1 \(nftables\): nft -j list table inet microseg: ") as info:
        parse_observed(native, point=POINT, table="microseg")
    assert info.value.point == POINT and info.value.driver == "nftables"


def test_snapshot_without_listings_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="lacks the tables/chains/table listings"):
        parse_observed({"tables": EMPTY}, point=POINT, table="microseg")


def test_table_listed_but_not_read_is_a_parse_error() -> None:
    tables = {"nftables": [{"table": {"family": "inet", "name": "microseg", "handle": 1}}]}
    with pytest.raises(ParseError, match="is listed but could not be read"):
        parse_observed({"tables": tables, "chains": EMPTY, "table": None}, point=POINT, table="microseg")


def test_absent_table_is_an_empty_permissive_ruleset() -> None:
    observed = parse_observed({"tables": EMPTY, "chains": EMPTY, "table": None}, point=POINT, table="microseg")
    assert observed.ruleset == Ruleset(POINT, Ordering.FIRST_MATCH, Action.PERMIT, (), Mode.ENFORCE, stateful=False)
    assert observed.unmanaged == ()


# ------------------------------------------------------------------ hand edits read from real nft


@needs_netns
@pytest.mark.parametrize(
    ("rule", "offending"),
    [
        ("tcp flags syn accept", '"field": "flags"'),
        ("meta mark 1 accept", '"key": "mark"'),
        ("ip saddr != 10.0.0.1 accept", '"op": "!="'),
        ("tcp dport 22 reject", '"reject"'),
        ("ip saddr 10.0.0.1 counter", "no accept/drop verdict"),
        ('ip saddr 10.0.0.1 log prefix "hello " accept', "log prefix 'hello '"),
        ('ip saddr 10.0.0.1 log prefix "mseg would-deny " accept', "not one microseg writes for accept in enforce"),
        ("ip saddr 10.0.0.1 ip saddr 10.0.0.2 accept", "conflicting src"),
        ("meta l4proto { tcp, udp } accept", '"set"'),
        ("icmp type { echo-request, echo-reply } accept", "one ICMP type"),
        ("meta nfproto ipv4 meta nfproto ipv6 accept", "conflicting family"),
    ],
)
def test_unknown_expression_is_a_parse_error_naming_chain_and_handle(
    ns: str, driver: NftablesDriver, rule: str, offending: str
) -> None:
    nft(ns, "-f", "-", stdin=f"add rule inet microseg ingress {rule}\n")
    handle = handles(ns, "ingress")[-1]
    with pytest.raises(ParseError) as info:
        observe(driver)
    assert_names_rule(info.value, "ingress", handle)
    assert offending in str(info.value)


@needs_netns
def test_drop_rule_in_a_monitor_table_is_a_parse_error(ns: str, driver: NftablesDriver) -> None:
    apply_ruleset(driver, Ruleset(POINT, Ordering.FIRST_MATCH, Action.DENY, BASE.rules, Mode.MONITOR))
    tail = handles(ns, "egress")[-1]  # the `log prefix "mseg would-deny "` that stands for the default deny
    nft(ns, "insert", "rule", "inet", "microseg", "egress", "position", str(tail), "ip", "daddr", "1.2.3.4", "drop")
    with pytest.raises(ParseError, match="a drop rule in a table in monitor mode") as info:
        observe(driver)
    assert_names_rule(info.value, "egress", handles(ns, "egress")[-2])


@needs_netns
@pytest.mark.parametrize(
    ("chain", "message"),
    [
        ("chain ingress { type nat hook input priority 0; }", "chain ingress: chain is not a filter chain"),
        ("chain ingress { type filter hook prerouting priority 0; policy drop; }", "not a filter chain on hook"),
        ("chain ingress { type filter hook input priority 10; policy drop; }", "at priority filter"),
        ("chain sneaky { type filter hook forward priority 0; policy drop; }", "chain sneaky: a chain microseg"),
        ("chain helper { }", "chain helper: a chain microseg does not write"),
    ],
)
def test_unknown_chain_is_a_parse_error(ns: str, driver: NftablesDriver, chain: str, message: str) -> None:
    if chain.startswith("chain ingress"):
        nft(ns, "delete", "chain", "inet", "microseg", "ingress")
    nft(ns, "-f", "-", stdin=f"table inet microseg {{\n{chain}\n}}\n")
    with pytest.raises(ParseError, match=re.escape(message)) as info:
        observe(driver)
    assert str(info.value).startswith(f"{POINT} (nftables): table inet microseg, chain ")


@needs_netns
def test_named_set_in_the_owned_table_is_a_parse_error(ns: str, driver: NftablesDriver) -> None:
    nft(ns, "add", "set", "inet", "microseg", "blocked", "{ type ipv4_addr; }")
    with pytest.raises(ParseError, match="holds a set object microseg does not write"):
        observe(driver)


@needs_netns
def test_a_missing_chain_lets_its_direction_through_and_apply_restores_it(ns: str, driver: NftablesDriver) -> None:
    """A chain of a direction the point filters can be missing (the point filtered fewer directions before, or
    someone deleted it): that direction is unfiltered, read as an explicit catch-all permit — so the plan
    shows the difference and apply adds the chain back — not a fetch that fails until someone repairs it."""
    nft(ns, "delete", "chain", "inet", "microseg", "egress")
    seen = observe(driver)
    assert seen.for_direction(Direction.INGRESS) == BASE.for_direction(Direction.INGRESS)
    assert seen.for_direction(Direction.EGRESS) == (Rule(Action.PERMIT, Direction.EGRESS, None, ANY_ADDRESS,
                                                         ANY_ADDRESS),)
    assert BASE.default_action is Action.DENY and not diff_rulesets(seen, BASE).empty
    apply_ruleset(driver, BASE)
    assert observe(driver) == BASE


# ------------------------------------------------------------------ preamble drift


@needs_netns
def test_removed_ct_preamble_reads_as_stateless(ns: str, driver: NftablesDriver) -> None:
    for chain in ("ingress", "egress"):
        for handle in handles(ns, chain)[:2]:
            nft(ns, "delete", "rule", "inet", "microseg", chain, "handle", str(handle))
    observed = observe(driver)
    assert observed.stateful is False
    assert observed.rules == BASE.rules


@needs_netns
def test_ct_preamble_in_one_chain_only_is_a_parse_error(ns: str, driver: NftablesDriver) -> None:
    for handle in handles(ns, "egress")[:2]:
        nft(ns, "delete", "rule", "inet", "microseg", "egress", "handle", str(handle))
    with pytest.raises(ParseError, match="disagree on the ct state preamble"):
        observe(driver)


@needs_netns
@pytest.mark.parametrize(("index", "expected"), [(2, 'iif "lo" accept'), (3, "icmpv6 type"), (1, "ct state invalid")])
def test_missing_preamble_rule_is_a_parse_error(ns: str, driver: NftablesDriver, index: int, expected: str) -> None:
    nft(ns, "delete", "rule", "inet", "microseg", "ingress", "handle", str(handles(ns, "ingress")[index]))
    with pytest.raises(ParseError, match=re.escape(f"expected preamble rule `{expected}")) as info:
        observe(driver)
    assert "chain ingress, rule handle" in str(info.value)


@needs_netns
def test_hand_changed_chain_policy_reads_as_a_catch_all_rule(ns: str, driver: NftablesDriver) -> None:
    nft(ns, "chain", "inet", "microseg", "egress", "{ policy accept; }")
    observed = observe(driver)
    assert observed.default_action is Action.DENY
    assert observed.for_direction(Direction.EGRESS)[-1] == Rule(
        Action.PERMIT, Direction.EGRESS, None, ANY_ADDRESS, ANY_ADDRESS
    )


# ------------------------------------------------------------------ nft's symbol tables


@needs_netns
def test_every_icmp_type_and_code_reads_back_as_its_number(ns: str) -> None:
    rules = tuple(
        Rule(Action.PERMIT, Direction.INGRESS, proto, space, space, icmp_type=n, icmp_code=(n * 7) % 256)
        for proto, space in ((1, V4), (58, V6))
        for n in range(256)
    )
    ruleset = Ruleset(POINT, Ordering.FIRST_MATCH, Action.DENY, rules)
    drv = driver_in(ns)
    apply_ruleset(drv, ruleset)
    assert observe(drv) == ruleset
    codes = Ruleset(POINT, Ordering.FIRST_MATCH, Action.DENY, tuple(
        Rule(Action.PERMIT, Direction.INGRESS, proto, space, space, icmp_type=3, icmp_code=n)
        for proto, space in ((1, V4), (58, V6)) for n in range(256)
    ))
    apply_ruleset(drv, codes)
    assert observe(drv) == codes


@needs_netns
def test_protocol_names_printed_without_numeric_flag_read_back(ns: str) -> None:
    rules = tuple(Rule(Action.PERMIT, Direction.INGRESS, n, ANY_ADDRESS, ANY_ADDRESS) for n in range(256))
    ruleset = Ruleset(POINT, Ordering.FIRST_MATCH, Action.DENY, rules)
    drv = driver_in(ns)
    apply_ruleset(drv, ruleset)
    named = json.loads(nft(ns, "-j", "list", "table", "inet", "microseg").stdout)["nftables"]
    assert any(o.get("rule", {}).get("expr", [{}])[0].get("match", {}).get("right") == "gre" for o in named)
    assert parse_table(named, point=POINT, table="microseg") == ruleset


def test_snapshot_native_is_json_serializable_and_normalize_is_pure() -> None:
    native = {"tables": EMPTY, "chains": EMPTY, "table": None}
    snapshot = Snapshot(POINT, "nftables", json.loads(json.dumps(native)))
    assert parse_observed(snapshot.native, point=POINT, table="microseg").ruleset.rules == ()
