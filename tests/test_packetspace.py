"""The packet-space algebra against a brute-force evaluator on a small universe, plus readable examples."""

from __future__ import annotations

import ipaddress
import itertools
import random
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.model.rules import (
    ANY_ADDRESS,
    ANY_PORTS,
    Action,
    AddressSet,
    Direction,
    Ordering,
    Rule,
    Ruleset,
    TcpFlags,
    normalize_ports,
    range_networks,
)
from orchestrator.packetspace.cubeindex import CubeIndex
from orchestrator.packetspace.cubes import Cube, cube_intersection, cubes_meet
from orchestrator.packetspace.packetspace import (
    Flow,
    FlowSet,
    Shadowing,
    decide,
    difference_witness,
    effective_regions,
    equivalent,
    first_match,
    overlapped_by_later,
    overlapping_rules,
    permitted,
    rule_matches,
    ruleset_difference_witness,
    ruleset_equivalent,
    shadowed_rules,
)
from tests.packetspace_oracle import (
    RULE_DST_PORTS,
    RULE_ICMP_CODES,
    RULE_ICMP_TYPES,
    RULE_SRC_PORTS,
    UNIVERSE,
    V6,
    oracle_decisions,
    oracle_matches,
    oracle_permits,
    oracle_rule_mask,
    union_of,
)


def mask_of(flows: FlowSet) -> int:
    """The universe flows in ``flows``, read through its exact rule form (to_rules) and the oracle."""
    return union_of(oracle_rule_mask(r) for r in flows.to_rules(Action.PERMIT, Direction.INGRESS))


def assert_members(flows: FlowSet, expected: int, seed: int) -> None:
    """``in`` agrees with the expected mask on a sample of the universe."""
    for i in random.Random(seed).sample(range(len(UNIVERSE)), 150):
        assert (UNIVERSE[i] in flows) == bool(expected >> i & 1), UNIVERSE[i]


# --- strategies ---------------------------------------------------------------------------------------------------

@st.composite
def address_sets(draw: st.DrawFn) -> AddressSet:
    roll = draw(st.integers(0, 9))
    if roll == 0:
        return ANY_ADDRESS
    if roll == 1:
        return AddressSet.of([draw(st.sampled_from(["0.0.0.0/0", "::/0"]))])
    networks: list[str] = []
    for _ in range(draw(st.integers(1 if roll > 2 else 0, 2))):
        if draw(st.booleans()):
            length = draw(st.integers(29, 32))
            networks.append(f"10.0.0.{draw(st.integers(0, 2 ** (length - 29) - 1)) << (32 - length)}/{length}")
        else:
            length = draw(st.integers(126, 128))
            offset = draw(st.integers(0, 2 ** (length - 126) - 1)) << (128 - length)
            networks.append(f"{ipaddress.IPv6Address(V6[0] + offset)}/{length}")
    if roll == 3:  # dual stack with twin numbers: 10.0.0.0/30 also as ::a00:0/126
        twins = [ipaddress.IPv4Network(n) for n in networks if ipaddress.ip_network(n).version == 4]
        networks += [f"{ipaddress.IPv6Address(int(n.network_address))}/{n.prefixlen + 96}" for n in twins
                     if n.subnet_of(ipaddress.IPv4Network("10.0.0.0/30"))]
    return AddressSet.of(networks)


def port_ranges(ends: list[int]) -> st.SearchStrategy[tuple[int, int]]:
    return st.tuples(st.sampled_from(ends), st.sampled_from(ends)).map(lambda t: (min(t), max(t)))


@st.composite
def rules(draw: st.DrawFn) -> Rule:
    protocol = draw(st.sampled_from([1, 6, 17, 47, 58, None]))
    src_ports = dst_ports = ANY_PORTS
    icmp_type = icmp_code = None
    if protocol in (6, 17):
        if draw(st.booleans()):
            dst_ports = normalize_ports(draw(st.lists(port_ranges(RULE_DST_PORTS), min_size=1, max_size=2)))
        if draw(st.integers(0, 3)) == 0:
            src_ports = normalize_ports([draw(port_ranges(RULE_SRC_PORTS))])
    if protocol in (1, 58) and draw(st.booleans()):
        icmp_type = draw(st.sampled_from(RULE_ICMP_TYPES))
        icmp_code = draw(st.none() | st.sampled_from(RULE_ICMP_CODES))
    flags = draw(st.none() | st.sampled_from(TcpFlags)) if protocol == 6 else None
    src = draw(address_sets())
    dst = src if draw(st.integers(0, 5)) == 0 else draw(address_sets())  # "within the subnet" rules
    return Rule(draw(st.sampled_from(Action)), Direction.INGRESS, protocol, src, dst, src_ports, dst_ports,
                icmp_type, icmp_code, tcp_flags=flags)


rule_lists = st.lists(rules(), max_size=6)
orderings = st.sampled_from(Ordering)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- properties -------------------------------------------------------------------------------------------------

@FAST
@given(rule_lists, rule_lists)
def test_set_operations_match_brute_force(a_rules: list[Rule], b_rules: list[Rule]) -> None:
    a, b = FlowSet.from_rules(a_rules), FlowSet.from_rules(b_rules)
    ma = union_of(oracle_rule_mask(r) for r in a_rules)
    mb = union_of(oracle_rule_mask(r) for r in b_rules)
    assert mask_of(a) == ma
    assert mask_of(a.union(b)) == ma | mb
    assert mask_of(a.intersection(b)) == ma & mb
    assert a.overlaps(b) == bool(ma & mb)
    difference = a.difference(b)
    assert mask_of(difference) == ma & ~mb
    assert_members(difference, ma & ~mb, len(a_rules))
    assert difference.is_empty() == (ma & ~mb == 0)
    assert a.is_subset(b) == (ma & ~mb == 0)
    assert (a == b) == a.equivalent(b) == (ma == mb)
    assert a.union(b).difference(b).equivalent(difference)
    sample = difference.sample()
    assert (sample is None) == difference.is_empty()
    assert sample is None or (sample in difference and oracle_matches_any(a_rules, sample)
                              and not oracle_matches_any(b_rules, sample))


@FAST
@given(st.sampled_from([4, 6]), st.data())
def test_range_networks_are_the_standard_librarys_summary(version: int, data: st.DataObject) -> None:
    """``range_networks`` (integer arithmetic, prefixes built once) yields exactly what
    ``ipaddress.summarize_address_range`` does, in order, for any range: near the ends of the family, aligned
    and not, one address or all of them."""
    top = (1 << (32 if version == 4 else 128)) - 1
    edge = st.one_of(st.integers(0, top), st.integers(0, 300), st.integers(top - 300, top))
    lo = data.draw(edge)
    hi = data.draw(st.one_of(st.integers(lo, top), st.integers(lo, min(top, lo + 600))))
    address = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    assert range_networks(version, lo, hi) == list(ipaddress.summarize_address_range(address(lo), address(hi)))
    with pytest.raises(ValueError, match="not an IPv"):
        range_networks(version, hi + 1, hi) if hi < top else range_networks(version, lo, top + 1)


def oracle_matches_any(rules_: Sequence[Rule], flow: Flow) -> bool:
    return any(oracle_matches(r, flow) for r in rules_)


@FAST
@given(rule_lists, rule_lists, st.sampled_from(Action))
def test_to_rules_round_trips_exactly_with_valid_rules(a_rules: list[Rule], b_rules: list[Rule],
                                                       action: Action) -> None:
    flows = FlowSet.from_rules(a_rules).difference(FlowSet.from_rules(b_rules))
    produced = flows.to_rules(action, Direction.EGRESS)
    assert FlowSet.from_rules(produced) == flows
    assert produced == sorted(produced, key=Rule.key)
    for rule in produced:
        assert (rule.action, rule.direction) == (action, Direction.EGRESS)
        assert rule.src == AddressSet.of(rule.src.networks) and rule.dst == AddressSet.of(rule.dst.networks)
        assert rule.src_ports == normalize_ports(rule.src_ports)
        assert rule.dst_ports == normalize_ports(rule.dst_ports)
        assert Rule.from_dict(rule.to_dict()) == rule
    assert produced == flows.to_rules(action, Direction.EGRESS)  # deterministic


@settings(max_examples=25, deadline=None)
@given(rule_lists, st.sampled_from(Action), st.integers(0, 2**32))
def test_first_match_and_decide_match_brute_force(rules_: list[Rule], default: Action, seed: int) -> None:
    masks = [oracle_rule_mask(r) for r in rules_]
    for i, flow in enumerate(UNIVERSE):
        expected = next((k for k, mask in enumerate(masks) if mask >> i & 1), None)
        assert first_match(rules_, flow) == expected, flow
        assert decide(rules_, default, flow) == (default if expected is None else rules_[expected].action, expected)
    flow = random.Random(seed).choice(UNIVERSE)
    assert all(rule_matches(r, flow) == oracle_matches(r, flow) for r in rules_)


@FAST
@given(rule_lists, st.sampled_from(Action), orderings)
def test_effective_regions_and_permitted_match_brute_force(rules_: list[Rule], default: Action,
                                                           ordering: Ordering) -> None:
    seen = 0
    for rule, region in zip(rules_, effective_regions(rules_), strict=True):
        mask = oracle_rule_mask(rule)
        assert mask_of(region) == mask & ~seen
        seen |= mask
    allowed = permitted(rules_, default, ordering)
    expected = oracle_decisions(rules_, default, ordering)
    assert mask_of(allowed) == expected
    assert_members(allowed, expected, len(rules_))


@FAST
@given(rule_lists)
def test_shadowed_rules_match_brute_force(rules_: list[Rule]) -> None:
    masks = [oracle_rule_mask(r) for r in rules_]
    expected: list[Shadowing] = []
    for i, (rule, mask) in enumerate(zip(rules_, masks, strict=True)):
        if mask & ~union_of(masks[:i]):
            continue
        overlapping = tuple(j for j in range(i) if masks[j] & mask)
        conflicting = any(rules_[j].action is not rule.action for j in overlapping)
        expected.append(Shadowing(i, overlapping, conflicting))
    assert shadowed_rules(rules_) == expected


@FAST
@given(rule_lists, rule_lists)
def test_overlapping_rules_match_brute_force(rules_: list[Rule], sources: list[Rule]) -> None:
    source_masks = [oracle_rule_mask(s) for s in sources]
    expected = [[j for j, mask in enumerate(source_masks) if mask & oracle_rule_mask(r)] for r in rules_]
    assert overlapping_rules(rules_, sources) == expected


@FAST
@given(rule_lists, st.sampled_from(Action))
def test_overlapped_by_later_matches_brute_force(rules_: list[Rule], action: Action) -> None:
    masks = [oracle_rule_mask(r) for r in rules_]
    expected = [rule.action is action and any(masks[j] & masks[i] for j in range(i + 1, len(rules_))
                                              if rules_[j].action is not action)
                for i, rule in enumerate(rules_)]
    assert overlapped_by_later(rules_, action) == expected


@st.composite
def comparable_pairs(draw: st.DrawFn) -> tuple[list[Rule], Action, Ordering, list[Rule], Action, Ordering]:
    """Two rule lists that are often equivalent: reorderings, allow-only compilations, or unrelated lists."""
    a, a_default, a_ordering = draw(rule_lists), draw(st.sampled_from(Action)), draw(orderings)
    how = draw(st.sampled_from(["compiled", "reordered", "other", "tweaked"]))
    if how == "compiled":
        b = permitted(a, a_default, a_ordering).to_rules(Action.PERMIT, Direction.INGRESS)
        return a, a_default, a_ordering, b, Action.DENY, Ordering.UNORDERED_ALLOW
    if how == "reordered":  # within each run of same-action rules: the same decisions
        runs = [sorted(run, key=Rule.key, reverse=True) for _, run in itertools.groupby(a, key=lambda r: r.action)]
        return a, a_default, a_ordering, [r for run in runs for r in run], a_default, a_ordering
    b = draw(rule_lists) if how == "other" else [*a, draw(rules())]
    return a, a_default, a_ordering, b, draw(st.sampled_from(Action)), draw(orderings)


@FAST
@given(comparable_pairs())
def test_equivalence_and_witness_match_brute_force(
    pair: tuple[list[Rule], Action, Ordering, list[Rule], Action, Ordering],
) -> None:
    a, a_default, a_ordering, b, b_default, b_ordering = pair
    same = oracle_decisions(a, a_default, a_ordering) == oracle_decisions(b, b_default, b_ordering)
    witness = difference_witness(a, a_default, b, b_default, a_ordering, b_ordering)
    if witness is None:
        assert same
    else:
        assert oracle_permits(a, a_default, a_ordering, witness) != oracle_permits(b, b_default, b_ordering, witness)
    assert equivalent(a, a_default, b, b_default, a_ordering, b_ordering) == (witness is None)
    assert permitted(a, a_default, a_ordering).equivalent(permitted(b, b_default, b_ordering)) == (witness is None)


# --- the cube index and larger rulesets (beyond the brute-force universe) ------------------------------------

@st.composite
def clustered_cubes(draw: st.DrawFn) -> Cube:
    """A cube whose address ranges are prefixes of many lengths (or unaligned) in a few crowded regions."""
    family = draw(st.sampled_from([4, 6]))
    bits = 32 if family == 4 else 128
    lengths = [0, 1, 8, 12, 15, 16, 17, 24, 31, 32] if family == 4 else [0, 16, 48, 64, 100, 127, 128]

    def address_range() -> tuple[tuple[int, int], ...]:
        address = draw(st.sampled_from([0, 1, 0xA00])) << (bits - 12) | draw(st.integers(0, 2 ** (bits - 12) - 1))
        length = draw(st.sampled_from(lengths))
        low = address >> (bits - length) << (bits - length)
        high = low + (1 << (bits - length)) - 1
        if draw(st.integers(0, 4)) == 0:
            high = min(high + draw(st.integers(1, 1 << 20)), (1 << bits) - 1)
        return ((low, low), (high, high)) if high - low > 1 and draw(st.booleans()) else ((low, high),)

    protocol = draw(st.sampled_from([6, 17]))
    return ((family, family),), ((protocol, protocol),), address_range(), address_range(), ((0, 65535),), (
        (draw(st.integers(0, 3)), 3),), ((0, 65535),)


@settings(max_examples=40, deadline=None)
@given(st.lists(clustered_cubes(), min_size=0, max_size=150), st.lists(clustered_cubes(), min_size=1, max_size=30))
def test_cube_index_finds_exactly_the_meeting_cubes(filed: list[Cube], queries: list[Cube]) -> None:
    from orchestrator.packetspace import cubeindex

    default = cubeindex._INTERSECT_FROM
    for intersect_from in (default, 0):  # 0: every query tests only the cubes found on both sides
        cubeindex._INTERSECT_FROM = intersect_from
        try:
            index = CubeIndex(filed)
            for query in queries * 2:  # the second round runs after the index has been built
                expected = [i for i, cube in enumerate(filed) if cube_intersection(query, cube) is not None]
                assert index.meeting(query) == expected
                assert [cubes_meet(query, cube) for cube in filed] == [i in expected for i in range(len(filed))]
        finally:
            cubeindex._INTERSECT_FROM = default


def _clustered_rule(rng: random.Random) -> Rule:
    def addresses() -> AddressSet:
        length = rng.choice([32, 32, 32, 30, 28, 24, 16])
        return AddressSet.of([ipaddress.ip_network((f"10.{rng.randrange(2)}.0.{rng.randrange(64)}", length),
                                                   strict=False)])
    protocol = rng.choice([6, 6, 17, 1, None])
    ports = ((p := rng.randrange(16), p + rng.choice([0, 0, 3])),) if protocol in (6, 17) else ANY_PORTS
    icmp_type = rng.choice([0, 8]) if protocol == 1 and rng.random() < 0.5 else None
    action = Action.PERMIT if rng.random() < 0.75 else Action.DENY
    return Rule(action, Direction.INGRESS, protocol, addresses(), addresses(), dst_ports=ports, icmp_type=icmp_type)


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 2**32))
def test_large_rulesets_agree_with_direct_evaluation(seed: int) -> None:
    rng = random.Random(seed)
    rules_ = [_clustered_rule(rng) for _ in range(250)]
    allowed = permitted(rules_, Action.DENY, Ordering.FIRST_MATCH)
    regions = effective_regions(rules_)
    shadowed = {s.index for s in shadowed_rules(rules_)}
    for index, (rule_, region) in enumerate(zip(rules_, regions, strict=True)):
        assert region.is_empty() == (index in shadowed)
        flow = region.sample() or FlowSet.from_rule(rule_).sample()
        assert flow is not None and rule_matches(rule_, flow)
        decider = first_match(rules_, flow)
        assert decider == index if index not in shadowed else decider is not None and decider < index
        assert (flow in allowed) == (decide(rules_, Action.DENY, flow)[0] is Action.PERMIT)
    compiled = allowed.to_rules(Action.PERMIT, Direction.INGRESS)
    assert equivalent(rules_, Action.DENY, compiled, Action.DENY, Ordering.FIRST_MATCH, Ordering.UNORDERED_ALLOW)
    swapped = [*rules_[:100], rules_[101], rules_[100], *rules_[102:]]  # changes exactly region 100 ∩ rule 101
    contested = regions[100].intersection(FlowSet.from_rule(rules_[101]))
    witness = difference_witness(rules_, Action.DENY, swapped, Action.DENY)
    assert (witness is None) == (contested.is_empty() or rules_[100].action is rules_[101].action)
    if witness is not None:
        assert witness in contested
        assert decide(rules_, Action.DENY, witness)[0] is not decide(swapped, Action.DENY, witness)[0]


# --- readable examples ------------------------------------------------------------------------------------------

def rule(action: str, src: str, dst: str, protocol: int | None = None, dst_ports: str = "any",
         icmp_type: int | None = None, icmp_code: int | None = None) -> Rule:
    """A readable rule: addresses and ports as text, ``any`` for everything."""
    ports = ANY_PORTS if dst_ports == "any" else normalize_ports(
        (int(p.split("-")[0]), int(p.split("-")[-1])) for p in dst_ports.split(","))
    return Rule(Action(action), Direction.INGRESS, protocol,
                ANY_ADDRESS if src == "any" else AddressSet.of(src.split(",")),
                ANY_ADDRESS if dst == "any" else AddressSet.of(dst.split(",")), dst_ports=ports,
                icmp_type=icmp_type, icmp_code=icmp_code)


def test_deny_a_host_then_permit_its_subnet_permits_the_subnet_minus_the_host() -> None:
    rules_ = [rule("deny", "10.0.0.5", "any"), rule("permit", "10.0.0.0/24", "any")]
    allowed = permitted(rules_, Action.DENY, Ordering.FIRST_MATCH)
    assert Flow.of("10.0.0.6", "192.0.2.1", 6, 443) in allowed
    assert Flow.of("10.0.0.5", "192.0.2.1", 6, 443) not in allowed
    assert Flow.of("10.0.1.1", "192.0.2.1", 6, 443) not in allowed
    (only,) = allowed.to_rules(Action.PERMIT, Direction.INGRESS)
    assert only.protocol is None and only.dst == AddressSet.of(["0.0.0.0/0"])
    assert only.src.to_list() == ["10.0.0.0/30", "10.0.0.4/32", "10.0.0.6/31", "10.0.0.8/29", "10.0.0.16/28",
                                  "10.0.0.32/27", "10.0.0.64/26", "10.0.0.128/25"]
    assert allowed == FlowSet.from_rule(rules_[1]).difference(FlowSet.from_rule(rules_[0]))


def test_ipv6_flows_and_descriptions() -> None:
    web = rule("permit", "fd00:1::/64", "fd00:2::10", 6, "443,8443")
    assert rule_matches(web, Flow.of("fd00:1::7", "fd00:2::10", 6, 8443))
    assert not rule_matches(web, Flow.of("fd00:1::7", "fd00:2::11", 6, 443))
    assert Flow.of("fd00:1::7", "fd00:2::10", 6, 443, 40000).describe() == "[fd00:1::7]:40000 → [fd00:2::10]:443/tcp"
    assert Flow.of("10.0.0.1", "10.0.0.2", 6, 443, 40000).describe() == "10.0.0.1:40000 → 10.0.0.2:443/tcp"
    assert Flow.of("10.0.0.1", "10.0.0.2", 1, icmp_type=8).describe() == "10.0.0.1 → 10.0.0.2 icmp type 8 code 0"
    assert Flow.of("10.0.0.1", "10.0.0.2", 47).describe() == "10.0.0.1 → 10.0.0.2 gre"
    with pytest.raises(ValueError, match="different address families"):
        Flow.of("10.0.0.1", "fd00::1", 6, 443)


def test_icmp_type_and_code() -> None:
    echo_any_code = FlowSet.from_match(1, ANY_ADDRESS, ANY_ADDRESS, icmp_type=8)
    echo = FlowSet.from_match(1, ANY_ADDRESS, ANY_ADDRESS, icmp_type=8, icmp_code=0)
    assert Flow.of("10.0.0.1", "10.0.0.2", 1, icmp_type=8, icmp_code=5) in echo_any_code
    assert Flow.of("10.0.0.1", "10.0.0.2", 1, icmp_type=8, icmp_code=5) not in echo
    assert Flow.of("10.0.0.1", "10.0.0.2", 1, icmp_type=0) not in echo_any_code
    assert Flow.of("fd00::1", "fd00::2", 58, icmp_type=8) not in echo_any_code  # icmpv6 is another protocol
    assert echo.is_subset(echo_any_code) and not echo_any_code.is_subset(echo)
    (whole_type,) = echo_any_code.to_rules(Action.PERMIT, Direction.INGRESS)
    assert (whole_type.icmp_type, whole_type.icmp_code) == (8, None)
    # A deny of echo before a permit of all ICMP: allow-only needs every other type and every other echo code.
    allowed = permitted([rule("deny", "any", "any", 1, icmp_type=8, icmp_code=0), rule("permit", "any", "any", 1)],
                        Action.DENY, Ordering.FIRST_MATCH)
    produced = allowed.to_rules(Action.PERMIT, Direction.INGRESS)
    assert len(produced) == 255 + 255 and FlowSet.from_rules(produced) == allowed
    with pytest.raises(ValueError):
        FlowSet.from_match(1, ANY_ADDRESS, ANY_ADDRESS, dst_ports=((22, 22),))


def test_established_segments_are_tcp_replies_only() -> None:
    """``established`` (ACK or RST set) matches a connection's later segments, never its opening SYN; what a
    set holds of TCP is told by that class alone, so a set with only opening segments is ``initial``."""
    replies = Rule(Action.PERMIT, Direction.INGRESS, 6, AddressSet.of(["10.0.0.5/32"]), ANY_ADDRESS,
                   src_ports=((5432, 5432),), tcp_flags=TcpFlags.ESTABLISHED)
    opening = Flow.of("10.0.0.5", "10.1.0.7", 6, dst_port=40000, src_port=5432)
    answer = Flow.of("10.0.0.5", "10.1.0.7", 6, dst_port=40000, src_port=5432, established=True)
    assert answer.describe() == "10.0.0.5:5432 → 10.1.0.7:40000/tcp established"
    assert rule_matches(replies, answer) and not rule_matches(replies, opening)
    space = FlowSet.from_rule(replies)
    assert answer in space and opening not in space
    everything = FlowSet.from_match(6, AddressSet.of(["10.0.0.5/32"]), ANY_ADDRESS, src_ports=((5432, 5432),))
    (initial,) = everything.difference(space).to_rules(Action.PERMIT, Direction.INGRESS)
    assert initial.tcp_flags is TcpFlags.INITIAL and initial.service_text() == "tcp/any from-port 5432 initial"
    assert space.union(FlowSet.from_rule(initial)) == everything
    (whole,) = everything.to_rules(Action.PERMIT, Direction.INGRESS)
    assert whole.tcp_flags is None and "tcp_flags" not in whole.to_dict()  # plans stored before read the same
    assert replies.to_dict()["tcp_flags"] == "established" and Rule.from_dict(replies.to_dict()) == replies
    assert replies.with_provenance(initial.provenance).tcp_flags is TcpFlags.ESTABLISHED
    with pytest.raises(ValueError, match="need tcp"):
        Rule(Action.PERMIT, Direction.INGRESS, 17, ANY_ADDRESS, ANY_ADDRESS, tcp_flags=TcpFlags.ESTABLISHED)
    with pytest.raises(ValueError, match="only a TCP segment"):
        Flow.of("10.0.0.5", "10.1.0.7", 17, established=True)
    # first match: the replies are let in, a new connection from the same source port is not
    decided = permitted([replies, Rule(Action.DENY, Direction.INGRESS, None, ANY_ADDRESS, ANY_ADDRESS)],
                        Action.DENY, Ordering.FIRST_MATCH)
    assert answer in decided and opening not in decided


def test_a_rule_with_both_families_covers_no_cross_family_flow() -> None:
    both = rule("permit", "10.0.0.0/8,fd00::/8", "10.0.0.0/8,fd00::/8")
    flows = FlowSet.from_rule(both)
    assert Flow.of("10.1.1.1", "10.2.2.2", 6, 22) in flows and Flow.of("fd00::1", "fd00::2", 17, 53) in flows
    assert flows.cube_count == 2
    assert FlowSet.from_rule(rule("permit", "10.0.0.0/8", "fd00::/8")).is_empty()
    assert flows.to_rules(Action.PERMIT, Direction.INGRESS) == [both]
    universe = FlowSet.universe()
    assert universe.to_rules(Action.PERMIT, Direction.INGRESS) == [rule("permit", "any", "any")]
    assert universe.difference(flows).union(flows) == universe


def test_ipv4_and_ipv6_sets_with_equal_numbers_stay_apart() -> None:
    # 0.0.0.0/24 and ::/120 are the same integers 0-255: a representation must never confuse the families.
    low_v4 = rule("permit", "0.0.0.0/24", "0.0.0.0/24", 6, "443")
    low_v6 = rule("permit", "::/120", "::/120", 6, "443")
    both = FlowSet.from_rules([low_v4, low_v6])
    assert Flow.of("0.0.0.1", "0.0.0.2", 6, 443) in both and Flow.of("::1", "::2", 6, 443) in both
    (merged,) = both.to_rules(Action.PERMIT, Direction.INGRESS)
    assert merged.src.to_list() == ["0.0.0.0/24", "::/120"]
    assert FlowSet.from_rules([merged]) == both
    assert both.difference(FlowSet.from_rule(low_v6)) == FlowSet.from_rule(low_v4)


def test_everything_but_telnet_needs_a_rule_per_other_protocol() -> None:
    telnet = FlowSet.from_match(6, ANY_ADDRESS, ANY_ADDRESS, dst_ports=((23, 23),))
    rest = FlowSet.universe().difference(telnet).to_rules(Action.PERMIT, Direction.INGRESS)
    assert len(rest) == 256
    tcp = next(r for r in rest if r.protocol == 6)
    assert tcp.dst_ports == ((0, 22), (24, 65535))
    assert FlowSet.from_rules(rest) == FlowSet.universe().difference(telnet)


def test_shadowed_rules_explain_redundancy_and_conflict() -> None:
    rules_ = [rule("permit", "10.0.0.0/24", "any", 6, "443"), rule("permit", "10.0.0.5", "any", 6, "443"),
              rule("deny", "10.0.0.6", "10.9.9.9", 6, "443"), rule("deny", "10.0.0.7", "any", 6, "443,80"),
              rule("deny", "10.0.0.0/8", "fd00::/8")]
    assert shadowed_rules(rules_) == [Shadowing(1, (0,), False), Shadowing(2, (0,), True), Shadowing(4, (), False)]
    region = effective_regions(rules_)[3]
    assert Flow.of("10.0.0.7", "1.1.1.1", 6, 80) in region and Flow.of("10.0.0.7", "1.1.1.1", 6, 443) not in region


def test_equivalence_across_orderings_and_defaults_with_witness() -> None:
    acl = [rule("deny", "10.0.0.5", "any", 6, "22"), rule("permit", "10.0.0.0/24", "any", 6, "22"),
           rule("deny", "any", "any")]
    compiled = permitted(acl, Action.PERMIT, Ordering.FIRST_MATCH).to_rules(Action.PERMIT, Direction.INGRESS)
    assert equivalent(acl, Action.PERMIT, compiled, Action.DENY, Ordering.FIRST_MATCH, Ordering.UNORDERED_ALLOW)
    assert equivalent(acl[:2], Action.DENY, acl, Action.PERMIT)
    assert difference_witness(acl[:2], Action.DENY, acl[:2], Action.DENY) is None
    witness = difference_witness(acl[1:], Action.DENY, acl, Action.DENY)
    assert witness is not None and witness.describe().startswith("10.0.0.5:")
    assert decide(acl, Action.DENY, witness) == (Action.DENY, 0)
    assert decide(acl[1:], Action.DENY, witness) == (Action.PERMIT, 0)


def test_ruleset_equivalence_is_per_direction() -> None:
    inbound = rule("permit", "any", "10.0.0.0/24", 6, "443")
    outbound = Rule(Action.PERMIT, Direction.EGRESS, 17, AddressSet.of(["10.0.0.0/24"]), ANY_ADDRESS,
                    dst_ports=((53, 53),))
    acl = Ruleset("edge", Ordering.FIRST_MATCH, Action.DENY, (outbound, inbound))
    sg = Ruleset("sg", Ordering.UNORDERED_ALLOW, Action.DENY, (inbound, outbound))
    assert ruleset_equivalent(acl, sg) and ruleset_difference_witness(acl, sg) is None
    swapped = Ruleset("sg", Ordering.UNORDERED_ALLOW, Action.DENY,
                      (inbound, Rule(Action.PERMIT, Direction.INGRESS, 17, outbound.src, ANY_ADDRESS,
                                     dst_ports=((53, 53),))))
    found = ruleset_difference_witness(acl, swapped)
    assert found is not None and found[0] is Direction.INGRESS


interval_lists = st.lists(st.integers(0, 300), min_size=2, max_size=40, unique=True).map(
    lambda points: tuple(zip(sorted(points)[::2], sorted(points)[1::2], strict=False)))


@settings(max_examples=400, deadline=None)
@given(interval_lists, interval_lists)
def test_interval_overlap_leapfrog_matches_brute_force(a: tuple[tuple[int, int], ...],
                                                        b: tuple[tuple[int, int], ...]) -> None:
    from orchestrator.packetspace import intervals

    assert intervals.overlaps(a, b) == any(lo <= b_hi and b_lo <= hi for lo, hi in a for b_lo, b_hi in b)


_stored_networks = st.lists(st.one_of(
    st.builds(lambda a, n: f"{ipaddress.IPv4Address(a)}/{n}", st.integers(0, 2**32 - 1), st.integers(0, 32)),
    st.builds(lambda a, n: f"10.0.{a}.0/{n}", st.integers(0, 3), st.integers(22, 26)),  # siblings and overlaps
    st.builds(lambda a, n: f"{ipaddress.IPv6Address(a)}/{n}", st.integers(0, 2**128 - 1), st.integers(0, 128)),
), max_size=8)


@given(_stored_networks, st.booleans())
@settings(max_examples=400, deadline=None)
def test_stored_address_lists_read_back_exactly_as_collapsing_them_would(texts: list[str], canonical: bool) -> None:
    """Rules read back from a plan take a canonical address list as it is (no collapsing); the result must be
    what collapsing gives, for canonical lists and for any other list (siblings, overlaps, disorder, families)."""
    from orchestrator.model.rules import AddressSet, _addresses_of

    stored = tuple(AddressSet.of(texts).to_list()) if canonical else tuple(texts)
    read = _addresses_of.__wrapped__(stored)
    assert read == AddressSet.of(stored)
    assert read.networks == AddressSet.of(stored).networks


# aligned neighbouring blocks of one /24: sibling halves, runs that collapse in several steps, overlaps
_neighbour_blocks = st.lists(st.builds(lambda a, n: f"{ipaddress.IPv4Address(0x0A000000 + (a << (32 - n)))}/{n}",
                                       st.integers(0, 7), st.integers(26, 32)), max_size=8)


@given(st.one_of(_stored_networks, _neighbour_blocks), st.sampled_from(["as drawn", "sorted", "canonical, shuffled"]),
       st.randoms(use_true_random=False))
@settings(max_examples=600, deadline=None)
def test_address_sets_are_what_collapsing_and_sorting_give(texts: list[str], form: str, rng: random.Random) -> None:
    """``AddressSet.of`` takes an already canonical list as it is (a one-pass check instead of collapsing): for
    lists as drawn, sorted but not collapsed (siblings and overlaps side by side), and canonical lists shuffled,
    the result must be exactly ``collapse_addresses`` per family, IPv4 first, sorted."""
    from orchestrator.model.rules import AddressSet

    nets = [ipaddress.ip_network(t, strict=False) for t in texts]
    if form == "sorted":
        nets.sort(key=lambda n: (n.version, int(n.network_address), n.prefixlen))
    elif form == "canonical, shuffled":
        nets = list(AddressSet.of(nets).networks)
        rng.shuffle(nets)
    expected = tuple(sorted([*ipaddress.collapse_addresses(n for n in nets if n.version == 4),
                             *ipaddress.collapse_addresses(n for n in nets if n.version == 6)],
                            key=lambda n: (n.version, int(n.network_address), n.prefixlen)))
    assert AddressSet.of(nets).networks == expected
    assert AddressSet.of(expected).networks == expected


def test_address_sets_merge_sibling_halves_and_drop_what_a_neighbour_holds() -> None:
    from orchestrator.model.rules import AddressSet

    assert AddressSet.of(["10.0.0.0/25", "10.0.0.128/25"]).to_list() == ["10.0.0.0/24"]
    assert AddressSet.of(["10.0.0.128/25", "10.0.1.0/25"]).to_list() == ["10.0.0.128/25", "10.0.1.0/25"]
    assert AddressSet.of(["10.0.0.0/24", "10.0.0.5/32"]).to_list() == ["10.0.0.0/24"]
    assert AddressSet.of(["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/23"]).to_list() == ["10.0.0.0/22"]
    assert AddressSet.of(["::/0", "0.0.0.0/0"]).to_list() == ["0.0.0.0/0", "::/0"]
