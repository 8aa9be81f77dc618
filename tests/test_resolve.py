"""Group and service resolution against workloads."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.compiler.resolve import (
    GroupResolver,
    LabelIndex,
    external_addresses,
    resolve_services,
    select_workloads,
)
from orchestrator.model.errors import PolicyError
from orchestrator.model.policy import ExternalName, Policy, Selector
from orchestrator.model.rules import AddressSet
from orchestrator.packetspace.addressindex import AddressIndex
from tests.conftest import FakeWorkload


def _policy(**sections: object) -> Policy:
    return Policy.model_validate(sections)


def test_selector_resolves_to_collapsed_addresses(shop_workloads) -> None:
    policy = _policy(groups={"web": {"selector": {"tier": "web", "env": "prod"}}})
    web = GroupResolver(policy.groups, shop_workloads).resolve("web")
    assert web.workloads == ("web1", "web2")
    assert [str(n) for n in web.addresses.networks] == ["10.20.1.11/32", "10.20.1.12/32", "fd00:20:1::11/128"]
    assert len(web.raw) == 3


def test_selector_forms(shop_workloads) -> None:
    policy = _policy(groups={
        "not-db": {"selector": {"app": "shop", "tier": {"not": ["db", "app"]}}},
        "no-env": {"selector": {"env": {"exists": False}}},
        "in": {"selector": {"tier": ["app", "db"], "env": "prod"}},
    })
    resolver = GroupResolver(policy.groups, shop_workloads)
    assert resolver.resolve("not-db").workloads == ("devweb", "web1", "web2")
    assert resolver.resolve("no-env").empty
    assert resolver.resolve("in").workloads == ("app1", "app2", "db1")


def test_groups_of_groups_with_except(shop_workloads) -> None:
    policy = _policy(groups={
        "web": {"selector": {"tier": "web"}},
        "db": {"selector": {"tier": "db"}},
        "both": {"groups": ["web", "db"], "except": ["10.30.0.0/16"]},
        "nets": {"cidrs": ["10.0.0.0/8"], "except": ["10.128.0.0/9"]},
    })
    resolver = GroupResolver(policy.groups, shop_workloads)
    both = resolver.resolve("both")
    assert "10.30.1.11/32" not in both.addresses.to_list()
    assert "10.20.3.31/32" in both.addresses.to_list()
    assert resolver.resolve("nets").addresses.to_list() == ["10.0.0.0/9"]


def test_cycle_is_an_error(shop_workloads) -> None:
    policy = _policy(groups={"a": {"groups": ["b"]}, "b": {"groups": ["a"]}})
    with pytest.raises(PolicyError, match="group cycle: a → b → a"):
        GroupResolver(policy.groups, shop_workloads).resolve("a")


def test_internet_excludes_private_space() -> None:
    internet = external_addresses(ExternalName.INTERNET)
    assert not internet.intersection(AddressSet.of(["10.0.0.0/8", "192.168.1.0/24", "fd00::/8"]))
    assert internet.intersection(AddressSet.of(["8.8.8.8/32", "2001:4860::/32"])).to_list() == [
        "8.8.8.8/32", "2001:4860::/32"]


def test_services_expand_groups_and_inline_specs() -> None:
    policy = _policy(
        services={"https": {"protocol": "tcp", "ports": [443]}, "dns": {"protocol": "udp", "ports": [53]}},
        service_groups={"edge": ["https", "tcp/80"], "all": ["edge", "dns", "https"]},
    )
    matches = resolve_services(policy, ["all", "icmp/8"])
    assert [(m.protocol, m.dst_ports, m.icmp_type) for m in matches] == [
        (6, ((443, 443),), None), (6, ((80, 80),), None), (17, ((53, 53),), None), (1, ((0, 65535),), 8)]
    with pytest.raises(PolicyError, match="unknown service 'ssh'"):
        resolve_services(policy, ["ssh"])


@settings(max_examples=200, deadline=None)
@given(
    labels=st.lists(st.dictionaries(st.sampled_from(["a", "b", "c"]), st.sampled_from(["x", "y", "z"])),
                    min_size=0, max_size=12),
    selector=st.dictionaries(
        st.sampled_from(["a", "b", "c"]),
        st.one_of(st.sampled_from(["x", "y"]), st.lists(st.sampled_from(["x", "y", "z"]), min_size=1).map(tuple),
                  st.builds(lambda e: {"exists": e}, st.booleans()),
                  st.builds(lambda v: {"not": v}, st.sampled_from(["x", "z"]))),
        min_size=1),
)
def test_label_index_selects_exactly_like_a_scan(labels, selector) -> None:
    hosts = [FakeWorkload(f"w{i}", (), lab) for i, lab in enumerate(labels)]
    sel = Selector.model_validate(selector)
    assert LabelIndex(hosts).select(sel) == select_workloads(sel, hosts)


@settings(max_examples=100, deadline=None)
@given(
    sets=st.lists(st.lists(st.sampled_from(
        ["10.0.0.0/8", "10.1.2.0/24", "10.1.2.7/32", "10.200.0.0/16", "192.168.1.0/24", "fd00::/8", "fd00:1::/64",
         "0.0.0.0/0"]), max_size=3), max_size=8),
    query=st.lists(st.sampled_from(["10.1.2.0/24", "10.1.0.0/16", "192.168.0.0/16", "fd00:1::/64", "8.8.8.0/24"]),
                   min_size=1, max_size=2),
)
def test_address_index_never_misses_an_overlap(sets, query) -> None:
    address_sets = [AddressSet.of(s) for s in sets]
    q = AddressSet.of(query)
    found = set(AddressIndex(address_sets).overlapping(q))
    for i, s in enumerate(address_sets):
        assert s.overlaps(q) == bool(s.intersection(q))
        if s.overlaps(q):
            assert i in found
