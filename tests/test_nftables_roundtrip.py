"""nftables round trip: generated Rulesets → render → real nft in a namespace → fetch → normalize → the same Ruleset."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.nftables.layout import EVERYTHING
from drivers.nftables.parse import parse_table
from drivers.nftables.render import render_script
from orchestrator.model.rules import (
    ANY_ADDRESS,
    ANY_PORTS,
    MAX_PORT,
    Action,
    AddressSet,
    Direction,
    Mode,
    Ordering,
    Provenance,
    Rule,
    Ruleset,
    normalize_ports,
)
from tests.nft_helpers import POINT, apply_ruleset, driver_in, needs_netns, network_namespace

pytestmark = needs_netns


@st.composite
def networks(draw: st.DrawFn, version: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    bits = 32 if version == 4 else 128
    prefix = draw(st.integers(min_value=1, max_value=bits))
    address = draw(st.integers(min_value=0, max_value=2**bits - 1))
    if version == 4:
        return ipaddress.IPv4Network((address, prefix), strict=False)
    return ipaddress.IPv6Network((address, prefix), strict=False)


def address_sets(version: int) -> st.SearchStrategy[AddressSet]:
    listed = st.lists(networks(version), min_size=1, max_size=6).map(AddressSet.of)
    many = st.lists(networks(version), min_size=20, max_size=60).map(AddressSet.of)
    return st.one_of(st.just(EVERYTHING[version]), listed, listed, many)


port_ranges = st.tuples(st.integers(0, MAX_PORT), st.integers(0, 400)).map(lambda t: (t[0], min(MAX_PORT, t[0] + t[1])))
port_sets = st.one_of(st.just(ANY_PORTS), st.lists(port_ranges, min_size=1, max_size=5).map(normalize_ports))


@st.composite
def rules(draw: st.DrawFn) -> Rule:
    kind = draw(st.sampled_from(["any", "ports", "icmp", "number"]))
    family = draw(st.sampled_from([4, 6, None]))
    protocol: int | None = None
    src_ports = dst_ports = ANY_PORTS
    icmp_type = icmp_code = None
    if kind == "ports":
        protocol = draw(st.sampled_from([6, 17, 132]))
        src_ports, dst_ports = draw(port_sets), draw(port_sets)
    elif kind == "icmp":
        protocol = draw(st.sampled_from([1, 58]))
        if family is not None and draw(st.booleans()):
            icmp_type = draw(st.integers(0, 255))
            icmp_code = draw(st.none() | st.integers(0, 255))
    elif kind == "number":
        protocol = draw(st.integers(0, 255))
    if family is None:
        src = dst = ANY_ADDRESS
    else:
        src, dst = draw(address_sets(family)), draw(address_sets(family))
    names = draw(st.lists(st.text(min_size=1, max_size=30), max_size=3))
    return Rule(
        action=draw(st.sampled_from(Action)),
        direction=draw(st.sampled_from(Direction)),
        protocol=protocol,
        src=src,
        dst=dst,
        src_ports=src_ports,
        dst_ports=dst_ports,
        icmp_type=icmp_type,
        icmp_code=icmp_code,
        log=draw(st.booleans()),
        provenance=Provenance(rules=tuple(names)),
    )


@st.composite
def rulesets(draw: st.DrawFn) -> Ruleset:
    drawn = draw(st.lists(rules(), max_size=14))
    ordered = tuple(sorted(drawn, key=lambda r: r.direction is Direction.EGRESS))  # parse lists ingress first
    return Ruleset(
        point=POINT,
        ordering=Ordering.FIRST_MATCH,
        default_action=draw(st.sampled_from(Action)),
        rules=ordered,
        mode=draw(st.sampled_from(Mode)),
        stateful=draw(st.booleans()),
    )


@pytest.fixture(scope="module")
def ns() -> Iterator[str]:
    with network_namespace() as name:
        yield name


def assert_same(actual: Ruleset, intended: Ruleset) -> None:
    assert actual.ordering is intended.ordering
    assert (actual.default_action, actual.mode, actual.stateful) == (
        intended.default_action, intended.mode, intended.stateful)
    for direction in Direction:
        assert actual.for_direction(direction) == intended.for_direction(direction)
    assert actual == intended


@settings(max_examples=70, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ruleset=rulesets())
def test_render_apply_fetch_normalize_is_identity(ns: str, ruleset: Ruleset) -> None:
    driver = driver_in(ns)
    apply_ruleset(driver, ruleset)
    snapshot = driver.fetch()
    assert_same(driver.normalize(snapshot).ruleset, ruleset)
    again = driver.fetch()
    assert again.fingerprint() == snapshot.fingerprint()


def test_render_twice_is_identical(ns: str) -> None:
    ruleset = Ruleset(POINT, Ordering.FIRST_MATCH, Action.DENY, (
        Rule(Action.PERMIT, Direction.INGRESS, 6, AddressSet.of(["10.0.0.0/8"]), EVERYTHING[4]),))
    assert render_script(ruleset, table="microseg") == render_script(ruleset, table="microseg")
    driver = driver_in(ns)
    apply_ruleset(driver, ruleset)
    listing = driver.fetch().native["table"]["nftables"]
    assert parse_table(listing, point=POINT, table="microseg") == ruleset
