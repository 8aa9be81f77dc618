"""`microseg adopt` on a Linux host (issue #14): someone else's nft table, loaded into a real network namespace and
read back through the nftables driver (`nft -j list ruleset`), proposed as policy and proven equivalent.

The rulesets are what hand-written host firewalls look like: an `inet` table with the usual preamble (established,
invalid, loopback) and service accepts; an iptables-nft style `ip filter` table (IPv6 passes it); and the things
adopt cannot read exactly, each named with its table, chain and rule handle.
"""

from __future__ import annotations

import pytest

from drivers.nftables.adopt import foreign_enforcement
from orchestrator.engine.adopt import propose
from orchestrator.engine.project import Project, load_project
from orchestrator.model.rules import Action, Direction
from orchestrator.packetspace.flowset import Flow
from orchestrator.packetspace.packetspace import decide
from tests.conftest import REPO
from tests.nft_helpers import driver_in, needs_netns, network_namespace, nft
from tests.test_engine_switches import TODAY

POINT = "web-prod-01"  # the worked example's host 10.20.1.11 / fd00:20:1::11, both directions filtered
JUMP_NET = "10.99.0.0/16"

CAREFUL = """table inet filter {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    ct state invalid drop
    iif "lo" accept
    icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept
    ip saddr JUMP_NET tcp dport 22 accept
    tcp dport { 80, 443 } ct state new counter accept
    ip protocol icmp accept
    udp dport 53 log prefix "dns " reject
  }
  chain output {
    type filter hook output priority filter; policy accept;
  }
}
table ip nat {
  chain post {
    type nat hook postrouting priority srcnat; policy accept;
  }
}
""".replace("JUMP_NET", JUMP_NET)

IPTABLES_NFT = """table ip filter {
  chain INPUT {
    type filter hook input priority filter; policy drop;
    ct state related,established counter accept
    iifname "lo" counter accept
    tcp dport 443 counter accept
  }
}
"""


@pytest.fixture(scope="module")
def project() -> Project:
    return load_project(REPO / "policies", REPO / "inventory", today=TODAY)


def read(ruleset: str) -> object:
    with network_namespace() as ns:
        nft(ns, "-f", "-", stdin=ruleset)
        return driver_in(ns, point=POINT).existing()


def flow(src: str, dst: str, protocol: int, port: int) -> Flow:
    return Flow.of(src, dst, protocol, port, src_port=40000 if protocol in (6, 17) else 0)


@needs_netns
def test_a_hand_written_host_firewall_is_read_and_adopted_with_proof(project: Project) -> None:
    existing = read(CAREFUL)
    assert existing.unreadable == ()
    assert existing.ruleset.stateful
    ingress = [r for r in existing.ruleset.rules if r.direction is Direction.INGRESS]

    def decided(f: Flow) -> Action:
        return decide(ingress, existing.ruleset.default_action, f)[0]

    assert decided(flow("10.99.3.4", "10.20.1.11", 6, 22)) is Action.PERMIT
    assert decided(flow("10.1.3.4", "10.20.1.11", 6, 22)) is Action.DENY
    assert decided(flow("2001:db8::1", "fd00:20:1::11", 6, 443)) is Action.PERMIT  # inet: both families
    assert decided(flow("192.0.2.1", "10.20.1.11", 17, 53)) is Action.DENY  # reject: a deny
    assert decided(flow("192.0.2.1", "10.20.1.11", 1, 0)) is Action.PERMIT
    origins = [o for o, r in zip(existing.origins, existing.ruleset.rules, strict=True)
               if r.direction is Direction.INGRESS]
    assert all(o.startswith("table inet filter chain input handle ") for o in origins)
    assert "table inet filter chain output policy accept" in existing.origins  # egress: everything, by policy

    adoption = propose(project, POINT, existing)
    assert adoption.equivalent, adoption.to_dict()
    services = {s for rule in adoption.policy["rules"] for s in rule["services"]}
    assert {"tcp.22", "udp.53"} <= services, adoption.policy["rules"]


@needs_netns
def test_an_ip_family_table_filters_ipv4_only(project: Project) -> None:
    existing = read(IPTABLES_NFT)
    assert existing.unreadable == ()
    ingress = [r for r in existing.ruleset.rules if r.direction is Direction.INGRESS]
    assert decide(ingress, Action.DENY, flow("192.0.2.1", "10.20.1.11", 6, 22))[0] is Action.DENY
    assert decide(ingress, Action.DENY, flow("2001:db8::1", "fd00:20:1::11", 6, 22))[0] is Action.PERMIT
    assert "no nft base chain filters IPv6 on hook input: unfiltered" in existing.origins
    assert propose(project, POINT, existing).equivalent


@needs_netns
def test_what_adopt_cannot_read_is_named_and_blocks_the_proof(project: Project) -> None:
    tricky = CAREFUL.replace('    udp dport 53 log prefix "dns " reject\n',
                             '    udp dport 53 log prefix "dns " reject\n    tcp dport 8080 jump extra\n'
                             '    tcp dport 9000 ct count over 10 drop\n')
    tricky = tricky.replace("  chain output {", "  chain extra {\n    accept\n  }\n  chain output {")
    existing = read(tricky)
    assert len(existing.unreadable) == 2, existing.unreadable
    jump, count = existing.unreadable
    assert jump.startswith("table inet filter chain input handle ") and "jump to chain extra" in jump
    assert count.startswith("table inet filter chain input handle ") and "ct" in count
    adoption = propose(project, POINT, existing)
    assert adoption.unreadable == existing.unreadable and not adoption.equivalent


@needs_netns
def test_two_base_chains_on_one_hook_are_not_read_as_one(project: Project) -> None:
    existing = read(CAREFUL + """table inet other {
  chain input {
    type filter hook input priority 10; policy accept;
  }
}
""")
    assert [u.split(":")[0] for u in existing.unreadable] == ["IPv4 on hook input", "IPv6 on hook input"]
    assert "(table inet filter chain input, table inet other chain input)" in existing.unreadable[0]
    assert not propose(project, POINT, existing).equivalent


def test_a_drop_chain_without_the_established_accept_is_not_adopted_blindly() -> None:
    listing = {"nftables": [
        {"table": {"family": "inet", "name": "legacy", "handle": 1}},
        {"chain": {"family": "inet", "table": "legacy", "name": "in", "handle": 1, "type": "filter",
                   "hook": "input", "prio": 0, "policy": "drop"}},
        {"rule": {"family": "inet", "table": "legacy", "chain": "in", "handle": 2, "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 22}},
            {"accept": None}]}},
        {"table": {"family": "inet", "name": "microseg", "handle": 2}},  # microseg's own table: never read here
        {"chain": {"family": "inet", "table": "microseg", "name": "ingress", "handle": 1, "type": "filter",
                   "hook": "input", "prio": 0, "policy": "drop"}},
    ]}
    existing = foreign_enforcement(listing, point=POINT, table="microseg", directions=[Direction.INGRESS])
    assert len(existing.unreadable) == 1 and "replies included" in existing.unreadable[0]
    assert "table inet legacy chain in" in existing.unreadable[0]


@needs_netns
def test_other_chains_that_drop_the_hosts_packets_and_stateless_drops_are_named(project: Project) -> None:
    """A drop adopt would not see as a rule (a prerouting filter chain, a netdev ingress chain) or one that also
    hits replies (no established accept; a drop above it) would make the proof lie: each is named instead."""
    existing = read("""table ip early {
  chain pre {
    type filter hook prerouting priority -150; policy accept;
    ip saddr 198.51.100.0/24 drop
  }
}
table netdev edge {
  chain in {
    type filter hook ingress device "lo" priority 0; policy accept;
    ip saddr 192.0.2.0/24 drop
  }
}
table inet hand {
  chain input {
    type filter hook input priority filter; policy accept;
    ip saddr 203.0.113.0/24 drop
  }
  chain output {
    type filter hook output priority filter; policy accept;
    ip daddr 203.0.113.0/24 drop
    ct state established,related accept
  }
}
""")
    reasons = "\n".join(existing.unreadable)
    assert "table ip early chain pre (type filter, hook prerouting) can drop packets" in reasons
    assert "table netdev edge chain in (type filter, hook ingress) can drop packets" in reasons
    assert "table inet hand chain input: no `ct state established,related accept`" in reasons
    assert "drops before the chain's `ct state established,related accept`" in reasons
    assert not propose(project, POINT, existing).equivalent
