"""The compiler: semantics per target kind, limits, determinism, and an independent oracle."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import replace
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.compiler.compiler import Target, compile_policy
from orchestrator.model.capabilities import Capabilities
from orchestrator.model.errors import PolicyError
from orchestrator.model.policy import Policy
from orchestrator.model.rules import Action, AddressSet, Direction, Mode, Ordering, TcpFlags
from orchestrator.packetspace.packetspace import Flow, decide
from tests.conftest import workload

TODAY = date(2026, 11, 21)
BOTH = frozenset({Direction.INGRESS, Direction.EGRESS})
HOST = Capabilities()
ACL = Capabilities(stateful=False, max_prefixes_per_rule=1, max_port_ranges_per_rule=1, mixed_families_per_rule=False)
SG = Capabilities(actions=frozenset({Action.PERMIT}), ordering=Ordering.UNORDERED_ALLOW, max_prefixes_per_rule=1,
                  max_port_ranges_per_rule=1, count_families_separately=True, max_rules=60)

SHOP = {
    "groups": {
        "web": {"selector": {"tier": "web", "env": "prod"}},
        "app": {"selector": {"tier": "app", "env": "prod"}},
        "db": {"selector": {"tier": "db", "env": "prod"}},
        "dev": {"selector": {"env": "dev"}},
        "prod": {"selector": {"env": "prod"}},
    },
    "rules": [
        {"name": "web-app", "from": "web", "to": "app", "services": ["tcp/8443"], "action": "allow"},
        {"name": "web-app-metrics", "from": "web", "to": "app", "services": ["tcp/9000"], "action": "allow"},
        {"name": "app-db", "from": "app", "to": "db", "services": ["tcp/5432"], "action": "allow"},
        {"name": "no-dev", "from": "dev", "to": "prod", "services": ["any"], "action": "deny", "log": True},
    ],
}


def target(name: str, scope: list[str], caps: Capabilities, directions: frozenset[Direction] = BOTH,
           members: list[str] | None = None) -> Target:
    return Target(name, AddressSet.of(scope), directions, caps, driver="test",
                  members=None if members is None else AddressSet.of(members))


def compile_shop(shop_workloads, caps: Capabilities, scope: list[str], policy: dict | None = None):
    pol = Policy.model_validate(policy or SHOP)
    known = [str(a) for w in shop_workloads for a in w.addresses]
    members = [str(n) for n in AddressSet.of(scope).intersection(AddressSet.of(known)).networks]
    return compile_policy(pol, [target("pt", scope, caps, members=members)], shop_workloads,
                          today=TODAY).points["pt"].ruleset


def test_first_match_keeps_deny_first_and_merges_ports(shop_workloads) -> None:
    rs = compile_shop(shop_workloads, HOST, ["10.20.2.0/24", "fd00:20:2::/64"])
    ingress = rs.for_direction(Direction.INGRESS)
    assert [r.action for r in ingress] == [Action.DENY, Action.PERMIT]
    deny, permit = ingress
    assert deny.log and deny.src.to_list() == ["10.30.1.11/32"]
    assert deny.dst.to_list() == ["10.20.2.21/32", "10.20.2.22/32"]
    assert permit.dst_ports == ((8443, 8443), (9000, 9000))
    assert set(permit.provenance.rules) == {"web-app", "web-app-metrics"}
    # the IPv6 part of app1 is reached from web1's IPv6 address only
    assert permit.src.to_list() == ["10.20.1.11/32", "10.20.1.12/32", "fd00:20:1::11/128"]
    egress = rs.for_direction(Direction.EGRESS)
    assert [r.provenance.rules for r in egress] == [("app-db",)]


def test_compilation_is_deterministic(shop_workloads) -> None:
    pol = Policy.model_validate(SHOP)
    targets = [target("a", ["10.20.0.0/16"], HOST), target("b", ["10.20.3.0/24"], SG),
               target("c", ["10.20.2.0/24"], ACL)]
    one = json.dumps(compile_policy(pol, targets, shop_workloads, today=TODAY).to_dict(), sort_keys=True)
    two = json.dumps(compile_policy(pol, list(reversed(targets)), list(reversed(shop_workloads)),
                                    today=TODAY).to_dict(), sort_keys=True)
    assert one == two


def test_allow_only_target_gets_deny_carved_out(shop_workloads) -> None:
    policy = {**SHOP, "rules": [
        {"name": "no-web1", "from": "web1", "to": "db", "services": ["tcp/5432"], "action": "deny"},
        {"name": "web-db", "from": "web", "to": "db", "services": ["tcp/5432"], "action": "allow"},
    ], "groups": {**SHOP["groups"], "web1": {"cidrs": ["10.20.1.11/32"]}}}
    rs = compile_shop(shop_workloads, SG, ["10.20.3.0/24"], policy)
    assert rs.ordering is Ordering.UNORDERED_ALLOW and rs.default_action is Action.DENY
    assert all(r.action is Action.PERMIT for r in rs.rules)
    sources = sorted(n for r in rs.rules for n in r.src.to_list())
    assert sources == ["10.20.1.12/32"]  # web1 carved out, web1's IPv6 has no IPv4/IPv6 peer in db
    assert all(len(r.src.networks) == 1 and len(r.dst_ports) == 1 for r in rs.rules)


def test_allow_only_limit_is_a_compile_error(shop_workloads) -> None:
    many = {**SHOP, "rules": [
        {"name": f"r{p}", "from": "web", "to": "db", "services": [f"tcp/{p}"], "action": "allow"}
        for p in range(1000, 1080, 2)  # 40 distinct ports x 2 sources = 80 rules > 60
    ]}
    with pytest.raises(PolicyError) as err:
        compile_shop(shop_workloads, SG, ["10.20.3.0/24"], many)
    [diag] = err.value.diagnostics
    assert diag.code == "limit" and "80 IPv4 ingress rules exceed the limit of 60" in diag.message


def test_stateless_target_gets_return_path_first(shop_workloads) -> None:
    rs = compile_shop(shop_workloads, ACL, ["10.20.3.0/24"])
    egress = rs.for_direction(Direction.EGRESS)
    assert egress, "replies of app→db must be permitted on egress"
    reply = egress[0]
    assert reply.provenance.note == "return path"
    assert reply.src_ports == ((5432, 5432),) and reply.dst_ports == ((0, 65535),)
    assert reply.src.to_list() == ["10.20.3.31/32"]
    assert all(len(r.src.networks) == 1 and len(r.dst.networks) == 1 for r in rs.rules)


def test_tcp_replies_are_established_segments_where_the_platform_matches_them(shop_workloads) -> None:
    """With ``tcp_established`` a reply permit matches only segments with ACK or RST: the database answers its
    clients, but cannot open a connection from port 5432 to any port of theirs (the port-swapped permit, kept
    for platforms without it, lets it).  UDP and ICMP replies stay as they were; the result is verified."""
    plain = compile_shop(shop_workloads, ACL, ["10.20.3.0/24"])
    flagged = compile_shop(shop_workloads, ACL.merged({"tcp_established": True}), ["10.20.3.0/24"])
    replies = [r for r in flagged.rules if r.provenance.note == "return path"]
    assert replies and all(r.tcp_flags is TcpFlags.ESTABLISHED and r.src_ports == ((5432, 5432),) for r in replies)
    assert [r for r in plain.rules if r.provenance.note == "return path"] == [
        replace(r, tcp_flags=None) for r in replies]
    reply = replies[0]
    db, client = str(reply.src.networks[0].network_address), str(reply.dst.networks[0].network_address)
    answer = Flow.of(db, client, 6, dst_port=40000, src_port=5432, established=True)
    opening = Flow.of(db, client, 6, dst_port=22, src_port=5432)
    egress, old = flagged.for_direction(Direction.EGRESS), plain.for_direction(Direction.EGRESS)
    assert decide(egress, Action.DENY, answer)[0] is Action.PERMIT
    assert decide(egress, Action.DENY, opening)[0] is Action.DENY
    assert decide(old, Action.DENY, opening)[0] is Action.PERMIT  # what the port swap let through
    assert flagged.for_direction(Direction.INGRESS) == plain.for_direction(Direction.INGRESS)


def test_empty_group_is_an_error_unless_opted_in(shop_workloads) -> None:
    policy = {**SHOP, "groups": {**SHOP["groups"], "ghost": {"selector": {"tier": "nothing"}}},
              "rules": [{"name": "ghost-db", "from": "ghost", "to": "db", "services": ["tcp/5432"], "action": "deny"}]}
    with pytest.raises(PolicyError) as err:
        compile_shop(shop_workloads, HOST, ["10.20.3.0/24"], policy)
    errors = [d for d in err.value.diagnostics if d.severity.value == "error"]
    assert len(errors) == 1
    assert "'ghost' resolves to no address; a deny that vanishes widens access" in errors[0].message
    policy["rules"][0]["allow_empty"] = True
    assert compile_shop(shop_workloads, HOST, ["10.20.3.0/24"], policy).rules == ()


def test_expired_rule_is_not_compiled(shop_workloads) -> None:
    policy = {**SHOP, "rules": [{**SHOP["rules"][2], "expires": "2026-11-20"}]}
    assert compile_shop(shop_workloads, HOST, ["10.20.3.0/24"], policy).rules == ()
    policy["rules"][0]["expires"] = "2026-11-21"
    assert len(compile_shop(shop_workloads, HOST, ["10.20.3.0/24"], policy).rules) == 1


def test_monitor_mode_needs_support_and_ipv6_can_be_dropped(shop_workloads) -> None:
    policy = {**SHOP, "defaults": {"mode": "monitor"}}
    rs = compile_shop(shop_workloads, Capabilities(ipv6=False), ["10.20.2.0/24", "fd00:20:2::/64"], policy)
    assert rs.mode is Mode.MONITOR
    assert all(n.version == 4 for r in rs.rules for n in (*r.src.networks, *r.dst.networks))
    with pytest.raises(PolicyError, match="monitor mode is not supported"):
        compile_shop(shop_workloads, Capabilities(monitor_mode=False), ["10.20.2.0/24"], policy)


# --------------------------------------------------------------------------- independent oracle

V4 = [f"10.0.0.{i}" for i in range(8)]
LABELS = ["a", "b", "c"]


def _oracle(policy: dict, hosts: list, src: str, dst: str, port: int) -> Action:
    """Evaluate the abstract policy directly: first rule (priority, deny first, order) that matches."""
    def members(group: str) -> set[str]:
        if group == "any":
            return set(V4)
        role = policy["groups"][group]["selector"]["role"]
        return {str(h.addresses[0]) for h in hosts if h.labels.get("role") == role}
    ordered = sorted(enumerate(policy["rules"]), key=lambda x: (x[1].get("priority", 1000),
                                                                 x[1]["action"] != "deny", x[0]))
    for _, rule in ordered:
        lo, _, hi = rule["services"][0].split("/")[1].partition("-")
        if src in members(rule["from"]) and dst in members(rule["to"]) and int(lo) <= port <= int(hi or lo):
            return Action.PERMIT if rule["action"] == "allow" else Action.DENY
    return Action.DENY


rule_strategy = st.fixed_dictionaries({
    "from": st.sampled_from([*LABELS, "any"]),
    "to": st.sampled_from([*LABELS, "any"]),
    "port": st.tuples(st.integers(0, 3), st.integers(0, 3)).map(sorted),
    "action": st.sampled_from(["allow", "deny"]),
    "priority": st.sampled_from([100, 1000]),
})


@settings(max_examples=60, deadline=None)
@given(
    roles=st.lists(st.sampled_from(LABELS), min_size=8, max_size=8),
    rules=st.lists(rule_strategy, min_size=1, max_size=6),
    caps=st.sampled_from([HOST, SG.merged({"max_rules": 100_000}),
                          Capabilities(max_prefixes_per_rule=1, max_port_ranges_per_rule=1)]),
    scope=st.sampled_from(["10.0.0.0/29", "10.0.0.0/30", "10.0.0.4/31"]),
)
def test_compiled_point_decides_like_the_policy(roles, rules, caps, scope) -> None:
    hosts = [workload(f"h{i}", V4[i], role=role) for i, role in enumerate(roles)]
    policy = {
        "groups": {label: {"selector": {"role": label}} for label in LABELS},
        "defaults": {"allow_empty_groups": True},
        "rules": [{"name": f"r{i}", "from": r["from"], "to": r["to"], "action": r["action"],
                   "priority": r["priority"], "services": [f"tcp/{r['port'][0]}-{r['port'][1]}"]}
                  for i, r in enumerate(rules)],
    }
    rs = compile_policy(Policy.model_validate(policy), [target("pt", [scope], caps)], hosts,
                        today=TODAY).points["pt"].ruleset
    net = ipaddress.ip_network(scope)
    for src in V4:
        for dst in V4:
            for port in range(5):
                flow = Flow.of(src, dst, 6, dst_port=port)
                want = _oracle(policy, hosts, src, dst, port)
                for direction, inside in ((Direction.INGRESS, dst), (Direction.EGRESS, src)):
                    if ipaddress.ip_address(inside) not in net:
                        continue
                    rules_d = rs.for_direction(direction)
                    if rs.ordering is Ordering.UNORDERED_ALLOW:
                        got = Action.PERMIT if any(_matches(r, flow) for r in rules_d) else Action.DENY
                    else:
                        got, _ = decide(rules_d, rs.default_action, flow)
                    assert got is want, (direction, flow.describe(), rules)


def _matches(rule, flow) -> bool:
    action, _ = decide([rule], Action.DENY if rule.action is Action.PERMIT else Action.PERMIT, flow)
    return action is rule.action


SG_IMPLICIT = SG.merged({"scope_implicit": True})


def test_implicit_scope_rules_cover_all_members_and_keep_their_origin(shop_workloads) -> None:
    rs = compile_shop(shop_workloads, SG_IMPLICIT, ["10.20.3.0/24"])
    # app1 and app2 both reach db1 (the only member): one rule per source prefix, the member side implicit
    assert sorted(n for r in rs.rules for n in r.src.to_list()) == ["10.20.2.21/32", "10.20.2.22/32"]
    assert all(r.dst.to_list() == ["10.20.3.31/32"] for r in rs.rules)
    assert {n for r in rs.rules for n in r.provenance.rules} == {"app-db"}


def test_implicit_scope_refuses_members_treated_differently(shop_workloads) -> None:
    policy = {**SHOP, "groups": {**SHOP["groups"], "web1": {"cidrs": ["10.20.1.11/32"]}},
              "rules": [{"name": "one", "from": "db", "to": "web1", "services": ["tcp/443"], "action": "allow"}]}
    with pytest.raises(PolicyError) as err:
        compile_shop(shop_workloads, SG_IMPLICIT, ["10.20.1.0/24"], policy)
    [diag] = [d for d in err.value.diagnostics if d.severity.value == "error"]
    assert diag.code == "unsupported"
    assert "allowed for 10.20.1.11/32 only" in diag.message
    assert "every protected member (10.20.1.11/32,10.20.1.12/32)" in diag.message


def test_icmp_follows_its_address_family(shop_workloads) -> None:
    policy = {**SHOP, "rules": [{"name": "ping", "from": "web", "to": "app", "services": ["icmp/8", "icmpv6/128"],
                                 "action": "allow"}]}
    rs = compile_shop(shop_workloads, HOST, ["10.20.2.0/24", "fd00:20:2::/64"], policy)
    by_proto = {r.protocol: r for r in rs.rules}
    assert by_proto[1].src.families == {4} and by_proto[1].dst.families == {4}
    assert by_proto[58].src.to_list() == ["fd00:20:1::11/128"] and by_proto[58].dst.families == {6}


def test_return_path_rules_name_their_policy_rule(shop_workloads) -> None:
    rs = compile_shop(shop_workloads, ACL, ["10.20.3.0/24"])
    replies = [r for r in rs.rules if r.provenance.note == "return path"]
    assert replies and all(r.provenance.rules == ("app-db",) for r in replies)


PING = {**SHOP, "rules": [
    {"name": "ping-app", "from": "web", "to": "app", "services": ["icmp/8"], "action": "allow"},
    {"name": "gre-app", "from": "web", "to": "app", "services": ["47"], "action": "allow"},
]}


def test_icmp_types_are_widened_with_a_warning_where_the_platform_cannot_match_them(shop_workloads) -> None:
    nsg = Capabilities(ordering=Ordering.PRIORITY, icmp_types=False, mixed_families_per_rule=False)
    pol = Policy.model_validate({**PING, "rules": PING["rules"][:1]})
    compiled = compile_policy(pol, [target("pt", ["10.20.2.0/24"], nsg)], shop_workloads, today=TODAY)
    icmp = [r for r in compiled.points["pt"].ruleset.rules if r.protocol == 1]
    assert icmp and all(r.icmp_type is None for r in icmp)
    warnings = [d for d in compiled.diagnostics if d.code == "widened"]
    assert warnings and "icmp/8 widened to all of icmp" in warnings[0].message and "ping-app" in warnings[0].message
    exact = compile_policy(pol, [target("pt", ["10.20.2.0/24"], HOST)], shop_workloads, today=TODAY)
    assert {r.icmp_type for r in exact.points["pt"].ruleset.rules if r.protocol == 1} == {8}


def test_protocols_a_platform_cannot_name_are_refused(shop_workloads) -> None:
    limited = Capabilities(ordering=Ordering.PRIORITY, protocols=frozenset({1, 6, 17}))
    with pytest.raises(PolicyError) as caught:
        compile_policy(Policy.model_validate(PING), [target("pt", ["10.20.2.0/24"], limited)], shop_workloads,
                       today=TODAY)
    assert any("cannot match protocol gre" in d.message and "gre-app" in d.message for d in caught.value.diagnostics)


def test_points_alike_are_compiled_once_and_each_keeps_its_name(shop_workloads, monkeypatch) -> None:
    """An IOS and a Junos edge of one site (same scope, capabilities differing only in how a change is pushed)
    get the same rules from one compile; a point that differs only in how rules are shaped is shaped anew from
    the same decided rules; one that differs in what is decided is compiled anew."""
    from orchestrator.compiler import compiler

    calls: list[str] = []
    real = compiler.compile_point

    decided: list[str] = []
    real_decide = compiler._decide

    def counting(index, tgt, policy, run, shared=None):
        calls.append(tgt.name)
        return real(index, tgt, policy, run, shared)

    def deciding(index, tgt, *args):
        decided.append(tgt.name)
        return real_decide(index, tgt, *args)

    monkeypatch.setattr(compiler, "compile_point", counting)
    monkeypatch.setattr(compiler, "_decide", deciding)
    scope = ["10.20.2.0/24"]
    targets = [target("edge-a", scope, ACL), target("edge-b", scope, ACL.merged({"atomic_replace": True})),
               target("edge-c", scope, ACL.merged({"max_port_ranges_per_rule": 2})),
               target("edge-d", scope, ACL.merged({"logging": False}))]
    points = compile_policy(Policy.model_validate(SHOP), targets, shop_workloads, today=TODAY).points
    assert calls == ["edge-a", "edge-c", "edge-d"]
    # edge-c differs only in shaping (a Junos term takes several ports): it shapes the rules edge-a decided
    assert decided == ["edge-a", "edge-d"]
    optimized: list[tuple[str, str]] = []
    real_optimize = compiler._direction_rules

    def optimizing(candidates, tgt, direction, *args):
        optimized.append((tgt.name, direction.value))
        return real_optimize(candidates, tgt, direction, *args)

    monkeypatch.setattr(compiler, "_direction_rules", optimizing)
    host = target("host", scope, HOST)  # stateful, its own shape: the same candidate rules as edge-a's
    both = compile_policy(Policy.model_validate(SHOP), [*targets[:1], host], shop_workloads, today=TODAY).points
    assert optimized == [("edge-a", "egress"), ("edge-a", "ingress")]  # the host's ingress is edge-a's
    alone_host = compile_policy(Policy.model_validate(SHOP), [host], shop_workloads, today=TODAY).points["host"]
    assert both["host"].ruleset == alone_host.ruleset and both["host"].ruleset.rules
    assert len(points["edge-c"].ruleset.rules) < len(points["edge-a"].ruleset.rules)
    assert points["edge-a"].ruleset.rules == points["edge-b"].ruleset.rules and points["edge-a"].ruleset.rules
    assert [p.ruleset.point for p in points.values()] == ["edge-a", "edge-b", "edge-c", "edge-d"]
    assert points["edge-b"].target.name == "edge-b" and points["edge-b"].stats == points["edge-a"].stats
    alone = compile_policy(Policy.model_validate(SHOP), targets[1:2], shop_workloads, today=TODAY).points["edge-b"]
    assert alone.ruleset == points["edge-b"].ruleset


def test_points_alike_with_findings_each_get_their_own(shop_workloads) -> None:
    """Only clean compiles are reused: every point still gets its diagnostics, named after it."""
    nsg = Capabilities(ordering=Ordering.PRIORITY, icmp_types=False, mixed_families_per_rule=False)
    pol = Policy.model_validate({**PING, "rules": PING["rules"][:1]})
    targets = [target(name, ["10.20.2.0/24"], nsg) for name in ("nsg-a", "nsg-b")]
    compiled = compile_policy(pol, targets, shop_workloads, today=TODAY)
    widened = [d.message.split(":")[0] for d in compiled.diagnostics if d.code == "widened"]
    assert widened == ["nsg-a", "nsg-b"]


def test_a_split_that_changes_the_flows_stops_the_compile(shop_workloads, monkeypatch) -> None:
    """The optimized list is verified before shaping; each split after it is checked exact on its own."""
    from orchestrator.compiler import optimize

    real = optimize.shape_rule
    monkeypatch.setattr(optimize, "shape_rule", lambda rule, caps: real(rule, caps)[:1])  # loses pieces
    with pytest.raises(AssertionError, match="shaping changed the flows"):
        compile_shop(shop_workloads, ACL, ["10.20.0.0/16"])
    monkeypatch.setattr(optimize, "shape_rule", real)
    assert compile_shop(shop_workloads, ACL, ["10.20.0.0/16"]).rules


NETS = ["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/25", "192.168.0.0/16", "2001:db8::/64", "2001:db8:1::/64", "::/0",
        "0.0.0.0/0"]


@st.composite
def rule_and_pieces(draw) -> tuple:
    """A rule, and pieces that are its shaping (``shape_rule`` under random limits) or a damaged version of it."""
    from orchestrator.compiler.optimize import shape_rule
    from orchestrator.model.rules import Rule

    def addresses():
        return AddressSet.of(draw(st.lists(st.sampled_from(NETS), min_size=1, max_size=5)))

    ports = tuple(sorted(draw(st.sets(st.sampled_from([(22, 22), (80, 80), (443, 443), (8000, 8999)]), min_size=1))))
    rule = Rule(draw(st.sampled_from(Action)), Direction.INGRESS, 6, addresses(), addresses(), dst_ports=ports)
    caps = Capabilities(max_prefixes_per_rule=draw(st.sampled_from([None, 1, 2])),
                        max_port_ranges_per_rule=draw(st.sampled_from([None, 1, 2])),
                        mixed_families_per_rule=draw(st.booleans()))
    pieces = shape_rule(rule, caps)
    damage = draw(st.sampled_from(["none", "drop", "duplicate-other", "widen-port"]))
    if damage == "drop" and len(pieces) > 1:
        del pieces[draw(st.integers(0, len(pieces) - 1))]
    elif damage == "duplicate-other" and len(pieces) > 1:
        pieces[0] = pieces[-1]
    elif damage == "widen-port" and pieces:
        from dataclasses import replace

        pieces[-1] = replace(pieces[-1], dst_ports=((1, 65535),))
    return rule, pieces, damage


@settings(max_examples=300, deadline=None)
@given(rule_and_pieces())
def test_the_shaping_proof_is_never_wrong(case) -> None:
    """The O(pieces) grid proof of a split (``_is_grid``) holds for every undamaged split and never claims a
    damaged one exact: whatever it says true, the packet-space comparison says too."""
    from orchestrator.compiler.optimize import _is_grid
    from orchestrator.packetspace.flowset import FlowSet

    rule, pieces, damage = case
    proof = _is_grid(rule, pieces)
    exact = FlowSet.from_rules(pieces) == FlowSet.from_rule(rule)
    if proof:
        assert exact
    if damage == "none":
        assert proof and exact


# ------------------------------------------------------------------ carve-outs

SPECIAL = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
           "224.0.0.0/4", "240.0.0.0/4", "0.0.0.0/8", "192.0.2.0/24"]


@st.composite
def carve_lists(draw: st.DrawFn) -> list:
    from orchestrator.model.rules import Rule

    def big() -> AddressSet:  # everything but a few special-purpose ranges: many prefixes, a short complement
        return AddressSet.of(["0.0.0.0/0"]).difference(AddressSet.of(draw(st.lists(st.sampled_from(SPECIAL),
                                                                                      min_size=1, max_size=6))))

    def small() -> AddressSet:  # often inside what a big set leaves out: the flows a carve-out must not take
        return AddressSet.of(draw(st.lists(st.sampled_from([*SPECIAL, "8.8.8.0/24", "10.1.2.3/32", "0.0.0.0/0"]),
                                           min_size=1, max_size=2)))

    rules = []
    for _ in range(draw(st.integers(1, 6))):
        src, dst = (big(), small()) if draw(st.booleans()) else (small(), big())
        if draw(st.integers(0, 2)) == 0:
            src, dst = small(), small()
        port = draw(st.sampled_from([80, 443]))
        rules.append(Rule(draw(st.sampled_from(Action)), Direction.INGRESS, draw(st.sampled_from([6, 6, 17])), src,
                          dst, dst_ports=((port, port),)))
    return rules


CARVE_ADDRESSES = [str(ipaddress.ip_network(n).network_address + k) for n in [*SPECIAL, "8.8.8.0/24"] for k in (0, 1)]
CARVE_ADDRESSES += ["10.1.2.3", "203.0.113.9", "255.255.255.255"]


@settings(max_examples=80, deadline=None)
@given(carve_lists())
def test_carve_outs_decide_every_flow_as_before(rules) -> None:
    """Independent of the packet-space module: every flow between the edges of the special ranges, the sets'
    outside and a few public addresses, on every port and protocol the rules use, decided first-match by the
    oracle over the original list and over the carved one."""
    from orchestrator.compiler.optimize import carve_out
    from tests.packetspace_oracle import oracle_permits

    carved = carve_out(rules, Action.DENY)
    for src in CARVE_ADDRESSES:
        for dst in CARVE_ADDRESSES:
            for protocol in (6, 17):
                for port in (80, 443):
                    flow = Flow.of(src, dst, protocol, dst_port=port)
                    assert oracle_permits(carved, Action.DENY, Ordering.FIRST_MATCH, flow) == oracle_permits(
                        rules, Action.DENY, Ordering.FIRST_MATCH, flow), flow.describe()


def test_carve_out_shortens_a_permit_from_the_internet(shop_workloads) -> None:
    acl = Capabilities(stateful=False, max_prefixes_per_rule=1, max_port_ranges_per_rule=1,
                       mixed_families_per_rule=False)
    policy = {**SHOP, "groups": {**SHOP["groups"], "internet": {"external": "internet"}},
              "rules": [*SHOP["rules"], {"name": "public-web", "from": "internet", "to": "web",
                                         "services": ["tcp/443"], "action": "allow"}]}
    scope = ["10.20.1.0/24"]
    rs = compile_policy(Policy.model_validate(policy), [target("pt", scope, acl)], shop_workloads,
                        today=TODAY).points["pt"].ruleset
    carved = [r for r in rs.rules if r.provenance.note and "carve-out" in r.provenance.note]
    public = [r for r in rs.rules if "public-web" in r.provenance.rules]
    assert carved and all(r.action is Action.DENY and not r.log for r in carved)
    assert len(public) < 60  # 145 internet prefixes per port and direction before
    web = str(next(w for w in shop_workloads if w.labels.get("tier") == "web" and w.labels.get("env") == "prod")
              .addresses[0])
    for src, verdict in (("8.8.8.8", Action.PERMIT), ("10.99.0.1", Action.DENY), ("192.168.1.1", Action.DENY)):
        assert decide(rs.for_direction(Direction.INGRESS), rs.default_action, Flow.of(src, web, 6, dst_port=443))[0] \
            is verdict, src


# ------------------------------------------------------------------ covers

MEMBERS = [f"10.20.1.{k}" for k in range(8, 16)]  # one /29: members are drawn from it, gaps are the rest


@st.composite
def cover_lists(draw: st.DrawFn) -> list:
    """Rules whose one side names some addresses of one /29 (a point's members), the other side peers."""
    from orchestrator.model.rules import Rule

    def members() -> AddressSet:
        return AddressSet.of(draw(st.lists(st.sampled_from(MEMBERS), min_size=1, max_size=5)))

    def peers() -> AddressSet:
        return AddressSet.of(draw(st.lists(st.sampled_from(["0.0.0.0/0", "10.30.1.11", "10.0.0.0/8", *MEMBERS]),
                                           min_size=1, max_size=2)))

    direction = draw(st.sampled_from(Direction))
    rules = []
    for _ in range(draw(st.integers(1, 7))):
        src, dst = (peers(), members()) if direction is Direction.INGRESS else (members(), peers())
        port = draw(st.sampled_from([80, 443, None]))
        rules.append(Rule(draw(st.sampled_from(Action)), direction, 6 if port else None, src, dst,
                          dst_ports=((port, port),) if port else ((0, 65535),), log=draw(st.integers(0, 3)) == 0))
    return rules


@settings(max_examples=120, deadline=None)
@given(cover_lists())
def test_covers_decide_and_log_every_flow_as_before(rules) -> None:
    """Independent of the packet-space module: every flow between the /29's addresses, its edges and a few
    peers, decided first-match by the oracle over the original list and over the covered one — the same action
    and the same logging (a flow a logging rule decided is still decided by a rule that logs)."""
    from orchestrator.compiler.optimize import check_cover, cover_gaps
    from tests.packetspace_oracle import oracle_matches

    covered = cover_gaps(rules, Action.DENY, scope=AddressSet.of(["10.20.1.0/24"]) if len(rules) % 2 else None)
    if len(covered) != len(rules):
        check_cover(rules, covered, Action.DENY)

    def verdict(ruleset: list, flow: Flow) -> tuple[Action, bool]:
        deciding = next((r for r in ruleset if oracle_matches(r, flow)), None)
        return (deciding.action, deciding.log) if deciding else (Action.DENY, False)

    addresses = [*MEMBERS, "10.20.1.7", "10.20.1.16", "10.30.1.11", "10.0.0.1", "8.8.8.8"]
    for src in addresses:
        for dst in addresses:
            for port in (80, 443, 22):
                flow = Flow.of(src, dst, 6, dst_port=port)
                assert verdict(covered, flow) == verdict(rules, flow), flow.describe()


def test_a_cover_proof_refuses_a_deny_that_takes_a_permitted_flow() -> None:
    """``check_cover`` is a proof, not a formality: a leading deny over an address a permit names, or a side
    widened past the gaps, is refused."""
    from orchestrator.compiler.optimize import check_cover, cover_gaps
    from orchestrator.model.rules import ANY_OF_FAMILY, Rule

    members = AddressSet.of(["10.20.1.11", "10.20.1.12/31", "10.20.1.14"])
    rules = [Rule(Action.PERMIT, Direction.INGRESS, 6, AddressSet.of([f"10.30.1.{k}"]), members,
                  dst_ports=((443, 443),)) for k in range(4)]
    covered = cover_gaps(rules, Action.DENY)
    assert len(covered) == 5 and [str(r.dst) for r in covered] == [
        "10.20.1.8/31,10.20.1.10/32,10.20.1.15/32", *["10.20.1.8/29"] * 4]
    check_cover(rules, covered, Action.DENY)
    wrong = Rule(Action.DENY, Direction.INGRESS, None, ANY_OF_FAMILY[4], AddressSet.of(["10.20.1.12/31"]))
    with pytest.raises(AssertionError, match="which tcp/443"):
        check_cover(rules, [wrong, *covered[1:]], Action.DENY)
    wide = replace(covered[1], dst=AddressSet.of(["10.20.1.0/28"]))
    with pytest.raises(AssertionError, match="beyond the gaps"):
        check_cover(rules, [covered[0], wide, *covered[2:]], Action.DENY)
    with pytest.raises(AssertionError, match="default deny"):
        check_cover(rules, covered, Action.PERMIT)
    # a deny of one family cannot license widening in the other, nor be read as a cover of both sides
    v6 = [Rule(Action.PERMIT, Direction.INGRESS, 6, ANY_OF_FAMILY[6], AddressSet.of(["2001:db8::1"]))]
    crossed = Rule(Action.DENY, Direction.INGRESS, None, ANY_OF_FAMILY[4], AddressSet.of(["2001:db8::/33"]))
    with pytest.raises(AssertionError, match="not a plain deny"):
        check_cover(v6, [crossed, replace(v6[0], dst=AddressSet.of(["2001:db8::/32"]))], Action.DENY)
    both = Rule(Action.DENY, Direction.INGRESS, None, ANY_OF_FAMILY[6], ANY_OF_FAMILY[4])
    with pytest.raises(AssertionError, match="not a plain deny"):
        check_cover(v6, [both, replace(v6[0], src=ANY_OF_FAMILY[6])], Action.DENY)
    # in the scope it protects (the VLAN's /24), the cover is the whole subnet: stable when members come and go
    more = [*rules, *(replace(r, dst_ports=((22, 22),)) for r in rules)]  # 24 entries: the /24's 8 gaps pay
    scoped = cover_gaps(more, Action.DENY, scope=AddressSet.of(["10.20.1.0/24"]))
    check_cover(more, scoped, Action.DENY)
    assert len(scoped[0].dst.networks) == 8 and [str(r.dst) for r in scoped[1:]] == ["10.20.1.0/24"] * 8


def test_covers_are_not_tried_past_64_gap_prefixes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cover is for members scattered in a subnet: 32 members every fourth address of 10.20.1.0/25 leave 64
    gap prefixes there and are covered; 33 spill into the /24 and leave 71, which would cost a deny per gap and
    a proof of every rule against them — not tried (the limit, raised, is what stopped it: it pays then)."""
    from orchestrator.compiler import optimize
    from orchestrator.model.rules import Rule

    def rules(members: int) -> list[Rule]:
        dst = AddressSet.of([f"10.20.1.{4 * k + 1}" for k in range(members)])
        return [Rule(Action.PERMIT, Direction.INGRESS, 6, AddressSet.of([f"10.30.{p}.0/24"]), dst,
                     dst_ports=((port, port),)) for p in range(40) for port in (443, 8443)]

    def covers(ruleset: list[Rule]) -> list[Rule]:
        return [r for r in ruleset if r.provenance.note == optimize.COVER_NOTE]

    assert optimize.MAX_GAPS == 64
    at_limit = rules(32)
    covered = optimize.cover_gaps(at_limit, Action.DENY)
    optimize.check_cover(at_limit, covered, Action.DENY)
    assert len(covers(covered)) == 1 and len(covers(covered)[0].dst.networks) == 64
    assert {str(r.dst) for r in covered[1:]} == {"10.20.1.0/25"}

    past = rules(33)
    assert optimize.cover_gaps(past, Action.DENY) == past
    monkeypatch.setattr(optimize, "MAX_GAPS", 80)
    raised = optimize.cover_gaps(past, Action.DENY)
    optimize.check_cover(past, raised, Action.DENY)
    assert len(covers(raised)) == 1 and len(covers(raised)[0].dst.networks) == 71


def test_a_new_member_changes_the_covers_not_every_entry(tmp_path) -> None:
    """A host added to the leaf's VLAN (outside the block its members spanned) changes the leading denies of the
    subnet's gaps and adds what the host needs — it does not rewrite the entries that name the members (which
    the mass-removal guard would refuse as a plan that removes most of the ACL)."""
    import shutil

    import yaml

    from orchestrator.engine.diff import diff_rulesets
    from orchestrator.engine.project import load_project
    from tests.conftest import REPO

    inventory = tmp_path / "inventory"
    shutil.copytree(REPO / "inventory", inventory)
    before = load_project(REPO / "policies", inventory, today=date(2026, 12, 6)).compile()
    workloads = yaml.safe_load((inventory / "workloads.yaml").read_text())
    web = next(w for w in workloads["workloads"] if w["name"] == "web-prod-01")
    workloads["workloads"].append({**web, "name": "web-prod-05", "addresses": ["10.20.1.20"]})
    (inventory / "workloads.yaml").write_text(yaml.safe_dump(workloads, sort_keys=False))
    after = load_project(REPO / "policies", inventory, today=date(2026, 12, 6)).compile()
    old, new = before.points["leaf-prod-eos"].ruleset, after.points["leaf-prod-eos"].ruleset
    diff = diff_rulesets(old, new)
    assert diff.removed and len(diff.removed) <= len(old.rules) // 10, (len(diff.removed), len(old.rules))
    assert all(r.provenance.note == "outside the protected addresses" for r in diff.removed)


def test_the_worked_examples_switch_acls_are_a_tenth_of_what_they_were() -> None:
    """#14's goal, on the repository's own policy and inventory: the EOS leaf from 1,842 entries (one prefix per
    entry, the internet expanded) to at most 150 — carve-outs, then the gaps its members leave in its VLAN
    covered."""
    from orchestrator.engine.project import load_project
    from tests.conftest import REPO

    compiled = load_project(REPO / "policies", REPO / "inventory", today=date(2026, 12, 6)).compile()
    leaf = compiled.points["leaf-prod-eos"].ruleset
    assert len(leaf.rules) <= 150
    covers = [r for r in leaf.rules if r.provenance.note == "outside the protected addresses"]
    assert covers and all(r.action is Action.DENY and not r.log for r in covers)
    web = "10.20.1.11"  # a member; .10 is in a gap now denied by the first entry
    assert decide(leaf.for_direction(Direction.INGRESS), leaf.default_action,
                  Flow.of("8.8.8.8", web, 6, dst_port=443))[0] is Action.PERMIT
    assert decide(leaf.for_direction(Direction.INGRESS), leaf.default_action,
                  Flow.of("8.8.8.8", "10.20.1.10", 6, dst_port=443))[0] is Action.DENY


def test_mode_per_point_from_the_inventory(tmp_path) -> None:
    """`mode` in a host's data.microseg overrides the policy's defaults.mode for that point alone; a driver
    without monitor support refuses it, naming the point; an unknown mode is an inventory error naming the host."""
    import shutil

    import yaml

    from orchestrator.engine.project import load_project
    from orchestrator.model.errors import InventoryError
    from tests.conftest import REPO

    inventory = tmp_path / "inventory"
    shutil.copytree(REPO / "inventory", inventory)
    hosts = yaml.safe_load((inventory / "hosts.yaml").read_text())
    hosts["web-prod-01"]["data"]["microseg"]["mode"] = "monitor"
    (inventory / "hosts.yaml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    compiled = load_project(REPO / "policies", inventory, today=date(2026, 12, 6)).compile()
    assert compiled.points["web-prod-01"].ruleset.mode is Mode.MONITOR
    assert compiled.points["web-prod-02"].ruleset.mode is Mode.ENFORCE
    hosts["sw-dev-ios"]["data"]["microseg"]["mode"] = "monitor"  # a switch monitors with permit + log
    (inventory / "hosts.yaml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    switch = load_project(REPO / "policies", inventory, today=date(2026, 12, 6)).compile().points["sw-dev-ios"]
    assert switch.ruleset.mode is Mode.MONITOR and not any(r.log for r in switch.ruleset.rules)
    hosts["azure-nsg-dev-app"]["data"]["microseg"]["mode"] = "monitor"
    (inventory / "hosts.yaml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    with pytest.raises(PolicyError, match="azure-nsg-dev-app: monitor mode is not supported by driver azure_nsg"):
        load_project(REPO / "policies", inventory, today=date(2026, 12, 6)).compile()
    del hosts["azure-nsg-dev-app"]["data"]["microseg"]["mode"]
    hosts["sw-dev-ios"]["data"]["microseg"]["mode"] = "watch"
    (inventory / "hosts.yaml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    with pytest.raises(InventoryError) as caught:
        load_project(REPO / "policies", inventory, today=date(2026, 12, 6))
    assert "sw-dev-ios" in str(caught.value) and "mode" in str(caught.value)


def test_a_deny_rule_in_monitor_mode_logs_in_its_place_and_lets_through(shop_workloads) -> None:
    """`mode: monitor` on a deny rule (a rule set being rolled out beside enforcing ones): in its place a permit
    that logs, noted as would-deny, on every kind of point; the rules after it decide nothing it matches; an
    allow rule cannot be monitored."""
    from pydantic import ValidationError

    policy = json.loads(json.dumps(SHOP))
    policy["rules"][-1]["mode"] = "monitor"  # no-dev: deny dev → prod, logged
    rules = compile_shop(shop_workloads, HOST, ["10.20.0.0/16"], policy).rules
    watched = [r for r in rules if "no-dev" in r.provenance.rules]
    assert watched and all(r.action is Action.PERMIT and r.log for r in watched)
    assert all(r.provenance.note == "monitor: would deny" for r in watched)
    enforcing = compile_shop(shop_workloads, HOST, ["10.20.0.0/16"]).rules
    assert all(r.action is Action.DENY for r in enforcing if "no-dev" in r.provenance.rules)
    dev, prod = "10.30.1.11", "10.20.1.11"
    flow = Flow.of(dev, prod, 6, dst_port=22)
    ruleset = compile_shop(shop_workloads, HOST, ["10.20.0.0/16"], policy)
    assert decide(ruleset.for_direction(Direction.INGRESS), ruleset.default_action, flow)[0] is Action.PERMIT
    policy["rules"][0]["mode"] = "monitor"
    with pytest.raises(ValidationError, match="mode: monitor applies to deny rules"):
        Policy.model_validate(policy)
