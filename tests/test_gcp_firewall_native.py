"""GCP firewall driver, pure parts: settings, owned names, fail-closed normalize, render refusals, priority planning."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from drivers.gcp_firewall import GcpFirewallDriver
from drivers.gcp_firewall.plan import _spread, covers
from drivers.gcp_firewall.settings import parse_settings
from orchestrator.model.driver import Connection, NativeChange, PointContext, RenderRequest, Snapshot
from orchestrator.model.errors import ParseError, PermanentDriverError
from orchestrator.model.rules import Action, AddressSet, Direction, Mode, Ordering, Provenance, Rule, Ruleset

A = AddressSet.of
POINT = "gcp-fw-dev-db"
STEM = f"mseg-{POINT}-"
NETWORK = "projects/shop-dev-000000/global/networks/shop-dev"
MEMBERS = A(["10.30.3.11", "10.30.3.12", "fd00:30:3::11"])
SETTINGS = {"project": "shop-dev-000000", "network": "shop-dev", "target_tags": ["shop-dev-db"],
            "api_endpoint": "http://127.0.0.1:9"}  # never contacted: these tests do no I/O


def driver(**overrides: Any) -> GcpFirewallDriver:
    context = PointContext(POINT, "gcp_firewall", Connection("gcp"), {**SETTINGS, **overrides}, members=MEMBERS)
    return GcpFirewallDriver(context)


def snapshot(*owned: dict[str, Any]) -> Snapshot:
    rules = [{"network": f"https://www.googleapis.com/compute/v1/{NETWORK}", "targetTags": ["shop-dev-db"],
              "direction": "INGRESS", "priority": 1000, "sourceRanges": ["10.0.0.0/8"],
              "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}], "logConfig": {"enable": False}, **r} for r in owned]
    native = {"project": "shop-dev-000000", "network": NETWORK, "owned": rules, "unmanaged": [],
              "project_rules": len(rules)}
    return Snapshot(POINT, "gcp_firewall", native)


def test_settings_are_validated_without_io() -> None:
    settings = parse_settings(POINT, SETTINGS)
    assert settings.network == NETWORK and settings.stem == STEM and settings.priority_base == 1000
    assert settings.firewall_quota == 500 and not settings.anonymous
    assert parse_settings(POINT, {k: v for k, v in SETTINGS.items() if k != "api_endpoint"}).endpoint == (
        "https://compute.googleapis.com")
    bad: list[tuple[dict[str, Any], str]] = [
        ({"project": ""}, "project"),
        ({"target_service_accounts": ["sa@p.iam.gserviceaccount.com"]}, "exactly one of target_tags"),
        ({"target_tags": []}, "exactly one of target_tags"),
        ({"rule_name_prefix": "MSEG_"}, "rule_name_prefix"),
        ({"priority_base": 70000}, "priority_base"),
        ({"credentials": "file.json"}, "credentials"),
        ({"network": "a/b"}, "network"),
    ]
    for override, fragment in bad:
        with pytest.raises(PermanentDriverError, match=fragment):
            parse_settings(POINT, {**SETTINGS, **override})


def test_owned_names() -> None:
    settings = parse_settings(POINT, SETTINGS)
    assert settings.unit_name(Direction.INGRESS, 7) == f"{STEM}i007"
    chunk = settings.parse_name(f"{STEM}e012-2")
    assert chunk is not None and (chunk.direction, chunk.number, chunk.chunk) == (Direction.EGRESS, 12, 2)
    assert settings.parse_name(f"{STEM}deny-egress-6") is not None
    for foreign in ("mseg-gcp-fw-dev-db-2-i001", f"{STEM}i07", f"{STEM}i0007", f"{STEM}i001-1", "default-allow-ssh"):
        assert settings.parse_name(foreign) is None, foreign
    long = parse_settings("a-very-long-point-name-that-goes-on-and-on-and-on-x", SETTINGS)
    assert len(long.default_name("allow-ingress", 6)) <= 63 and long.stem.startswith("mseg-a-very-long")


@pytest.mark.parametrize(("change", "fragment"), [
    ({"sourceTags": ["web"]}, "sourceTags, which microseg never writes"),
    ({"allowed": [{"IPProtocol": "tcp"}, {"IPProtocol": "udp"}]}, "exactly one allowed or denied entry"),
    ({"allowed": [{"IPProtocol": "tcp"}], "denied": [{"IPProtocol": "udp"}]}, "exactly one allowed or denied"),
    ({"targetTags": ["other"]}, "instead of the point's targets"),
    ({"network": "projects/shop-dev-000000/global/networks/corp"}, "belongs to network"),
    ({"allowed": [{"IPProtocol": "gre2"}]}, "protocol 'gre2'"),
    ({"allowed": [{"IPProtocol": "icmp", "ports": ["8"]}]}, "ports"),
    ({"sourceRanges": ["10.0.0.0/8", "fd00::/8"]}, "one address family"),
    ({"sourceRanges": ["10.0.0.300/32"]}, "sourceRanges"),
    ({"sourceRanges": []}, "one address family"),
    ({"direction": "EGRESS"}, "named as an ingress rule"),
    ({"priority": 70000}, "priority"),
], ids=lambda v: str(v)[:40])
def test_normalize_fails_closed_on_what_it_cannot_read(change: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ParseError, match=fragment) as raised:
        driver().normalize(snapshot({"name": f"{STEM}i001", **change}))
    assert f"{STEM}i001" in str(raised.value)


def test_normalize_fails_closed_on_a_changed_default_rule_and_odd_chunks() -> None:
    default = {"name": f"{STEM}deny-egress-4", "direction": "EGRESS", "priority": 1000, "sourceRanges": [],
               "destinationRanges": ["0.0.0.0/0"], "allowed": [], "denied": [{"IPProtocol": "all"}]}
    with pytest.raises(ParseError, match="default rule was changed"):
        driver().normalize(snapshot(default))
    chunks: list[dict[str, Any]] = [{"name": f"{STEM}i001", "sourceRanges": ["10.1.0.0/16"]},
              {"name": f"{STEM}i001-2", "sourceRanges": ["10.2.0.0/16"], "priority": 1001}]
    with pytest.raises(ParseError, match="chunks of one rule"):
        driver().normalize(snapshot(*chunks))
    with pytest.raises(ParseError, match="not a snapshot"):
        driver().normalize(Snapshot(POINT, "gcp_firewall", {"owned": "?"}))


def test_normalize_reads_chunks_subsets_and_defaults() -> None:
    rules = [
        {"name": f"{STEM}i001", "sourceRanges": ["10.1.0.0/16"], "priority": 1010},
        {"name": f"{STEM}i001-2", "sourceRanges": ["10.2.0.0/16"], "priority": 1010},
        {"name": f"{STEM}i002", "sourceRanges": ["10.9.0.0/16"], "destinationRanges": ["10.30.3.12/32"],
         "denied": [{"IPProtocol": "all"}], "allowed": [], "priority": 1010},
        {"name": f"{STEM}deny-egress-4", "direction": "EGRESS", "priority": 65534, "sourceRanges": [],
         "destinationRanges": ["0.0.0.0/0"], "allowed": [], "denied": [{"IPProtocol": "all"}]},
    ]
    observed = driver().normalize(snapshot(*rules)).ruleset
    members4, members6 = A(["10.30.3.11", "10.30.3.12"]), A(["fd00:30:3::11"])
    assert observed.default_action is Action.DENY
    assert observed.rules == (
        Rule(Action.DENY, Direction.INGRESS, None, A(["10.9.0.0/16"]), A(["10.30.3.12"])),  # same priority: deny wins
        Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.1.0.0/16", "10.2.0.0/16"]), members4, dst_ports=((22, 22),)),
        Rule(Action.PERMIT, Direction.EGRESS, None, members6, A(["::/0"])),  # no deny-egress-6: GCP allows
    )


def _render(drv: GcpFirewallDriver, *rules: Rule, **fields: Any) -> None:
    intended = Ruleset(POINT, fields.get("ordering", Ordering.PRIORITY), Action.DENY, rules,
                       fields.get("mode", Mode.ENFORCE), fields.get("stateful", True))
    snap = snapshot()
    drv.render(RenderRequest(POINT, intended, drv.normalize(snap).ruleset, snap))


@pytest.mark.parametrize(("rule", "fields", "fragment"), [
    (Rule(Action.PERMIT, Direction.INGRESS, 1, A(["10.10.0.90"]), A(["10.30.3.11", "10.30.3.12"]), icmp_type=8),
     {}, "not by ICMP type/code"),
    (Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.0.0.1"]), A(["10.30.3.11"]), src_ports=((53, 53),)),
     {}, "source ports"),
    (Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.0.0.1"]), A(["10.99.0.1"])), {}, "applies to its targets only"),
    (Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.0.0.1", "fd00::1"]), A(["10.30.3.11"])), {}, "not both"),
    (Rule(Action.PERMIT, Direction.INGRESS, 58, A(["10.0.0.1"]), A(["10.30.3.11"])), {}, "does not fit IPv4"),
    (Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.0.0.1"]), A(["10.30.3.11"])), {"stateful": False},
     "stateless"),
    (Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.0.0.1"]), A(["10.30.3.11"])),
     {"ordering": Ordering.FIRST_MATCH}, "ordering first_match"),
], ids=["icmp-type", "source-ports", "not-a-member", "mixed-families", "icmpv6-on-v4", "stateless",
        "first-match"])
def test_render_refuses_what_gcp_cannot_express(rule: Rule, fields: dict[str, Any], fragment: str) -> None:
    with pytest.raises(PermanentDriverError, match=fragment):
        _render(driver(), rule, **fields)


def test_covers_and_spread() -> None:
    base = Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.0.0.0/24"]), MEMBERS, dst_ports=((22, 22),))
    wider = Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.0.0.0/16"]), MEMBERS, dst_ports=((22, 23),))
    every = Rule(Action.PERMIT, Direction.INGRESS, None, A(["10.0.0.0/8"]), MEMBERS)
    assert covers(wider, base) and covers(every, base) and not covers(base, wider) and not covers(base, every)
    assert _spread(999, 65534, 3, set(), True) == [1000, 1010, 1020]
    assert _spread(1000, 1010, 1, set(), False) == [1005]
    assert _spread(1000, 1003, 2, {1001}, False) is None
    assert _spread(1000, 1004, 2, {1001}, False) == [1002, 1003]


def test_full_gap_renumbers_make_before_break() -> None:
    owned = [{"name": f"{STEM}i001", "sourceRanges": ["10.1.0.0/16"], "priority": 1000},
             {"name": f"{STEM}i002", "sourceRanges": ["10.2.0.0/16"], "priority": 1001}]
    drv = driver()
    snap = snapshot(*owned)
    current = drv.normalize(snap).ruleset
    first, second = current.for_direction(Direction.INGRESS)
    between = Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.3.0.0/16"]), first.dst, dst_ports=((22, 22),))
    intended = Ruleset(POINT, Ordering.PRIORITY, Action.DENY, (first, between, second, *current.for_direction(
        Direction.EGRESS)))
    change = drv.render(RenderRequest(POINT, intended, current, snap))
    lines = [line.split(" ")[:2] for line in change.commands if line.split(" ")[1].startswith(f"{STEM}i")]
    assert lines == [["insert", f"{STEM}i003"], ["insert", f"{STEM}i004"], ["insert", f"{STEM}i005"],
                     ["delete", f"{STEM}i002"], ["delete", f"{STEM}i001"]]


# ---------------------------------------------------------------------------------------------- monitor mode

V4_MEMBERS = A(["10.30.3.11", "10.30.3.12"])
TELNET = Rule(Action.DENY, Direction.INGRESS, 6, A(["10.0.0.0/8"]), V4_MEMBERS, dst_ports=((23, 23),),
              provenance=Provenance(rules=("no-telnet",)))
SSH = Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.0.0.0/8"]), V4_MEMBERS, dst_ports=((22, 22),))


def _applied(before: Sequence[dict[str, Any]], change: NativeChange) -> Snapshot:
    """The owned rules after ``change``'s calls (insert/patch put a whole body here, delete removes)."""
    rules = {r["name"]: r for r in before}
    for line in change.commands:
        verb, name, *body = line.split(" ", 2)
        if verb == "delete":
            del rules[name]
        else:
            rules[name] = {**rules.get(name, {}), **json.loads(body[0])}
    native = {"project": "shop-dev-000000", "network": NETWORK, "owned": sorted(rules.values(), key=str),
              "unmanaged": [], "project_rules": len(rules)}
    return Snapshot(POINT, "gcp_firewall", native)


def _plan(drv: GcpFirewallDriver, snap: Snapshot, intended: Ruleset) -> NativeChange:
    return drv.render(RenderRequest(POINT, intended, drv.normalize(snap).ruleset, snap))


def test_monitor_writes_would_deny_logged_allows_and_allow_the_rest_rules() -> None:
    """Monitor mode: a deny rule becomes an allow whose firewall-rule log names it for every connection it lets
    through (description ``monitor, would deny``); each filtered direction and family ends in a logged
    allow-the-rest rule saying the default.  Read back, the same monitored ruleset."""
    drv = driver()
    intended = Ruleset(POINT, Ordering.PRIORITY, Action.DENY, (TELNET, SSH), Mode.MONITOR)
    change = _plan(drv, snapshot(), intended)
    inserted = {line.split(" ")[1]: json.loads(line.split(" ", 2)[2]) for line in change.commands}
    telnet = next(b for b in inserted.values() if b.get("allowed") == [{"IPProtocol": "tcp", "ports": ["23"]}])
    assert telnet["logConfig"] == {"enable": True} and "denied" not in telnet
    assert telnet["description"] == f"microseg {POINT}: monitor, would deny; no-telnet"
    defaults = sorted(name for name in inserted if "allow-" in name or "deny-" in name)
    assert defaults == [f"{STEM}allow-egress-4", f"{STEM}allow-egress-6", f"{STEM}allow-ingress-4",
                        f"{STEM}allow-ingress-6"]  # no deny-egress: nothing is dropped
    rest = inserted[f"{STEM}allow-ingress-4"]
    assert rest["logConfig"] == {"enable": True} and rest["allowed"] == [{"IPProtocol": "all"}]
    assert rest["description"] == f"microseg {POINT}: monitor, allows the rest (default deny)"
    read = drv.normalize(_applied([], change)).ruleset
    assert read.mode is Mode.MONITOR and read.default_action is Action.DENY
    assert read.for_direction(Direction.INGRESS) == (TELNET, SSH)
    assert drv.render(RenderRequest(POINT, intended, read, _applied([], change))).commands == ()


def test_switching_to_monitor_inserts_before_it_deletes_and_keeps_the_permits() -> None:
    """The API cannot turn a deny into an allow: the would-deny rule is inserted, the deny deleted after it (and
    ``deny-egress`` after the allow-the-rest rules); the permit is the same in both modes and is kept."""
    drv = driver()
    enforce = Ruleset(POINT, Ordering.PRIORITY, Action.DENY, (TELNET, SSH))
    first = _plan(drv, snapshot(), enforce)
    before = list(_applied([], first).native["owned"])
    change = _plan(drv, _applied([], first), replace(enforce, mode=Mode.MONITOR))
    calls = [line.split(" ")[:2] for line in change.commands]
    verbs = [verb for verb, _ in calls]
    assert verbs == sorted(verbs, key=lambda v: v == "delete")  # every write before any delete
    assert ["delete", f"{STEM}i001"] in calls and ["delete", f"{STEM}deny-egress-4"] in calls
    assert not any(name == f"{STEM}i002" for _, name in calls)  # the permit: kept
    after = drv.normalize(_applied(before, change)).ruleset
    assert after.mode is Mode.MONITOR and after.for_direction(Direction.INGRESS) == (TELNET, SSH)
    back = _plan(drv, _applied(before, change), enforce)
    assert drv.normalize(_applied(list(_applied(before, change).native["owned"]), back)).ruleset == enforce


def test_a_half_monitored_point_reads_as_what_it_does_so_either_plan_rewrites_it() -> None:
    """A change that stopped half-way (or a hand edit) leaves a would-deny allow beside an enforcing setup: read
    as enforcing, that rule as the logged allow it is."""
    drv = driver()
    monitored = _applied([], _plan(drv, snapshot(), Ruleset(POINT, Ordering.PRIORITY, Action.DENY, (TELNET, SSH),
                                                             Mode.MONITOR)))
    owned = [r for r in monitored.native["owned"] if "allow-" not in r["name"]]
    owned += [{**r, "name": r["name"].replace("allow-egress", "deny-egress"), "allowed": [], "denied": r["allowed"],
               "logConfig": {"enable": False}, "description": f"microseg {POINT}: default deny (egress)"}
              for r in monitored.native["owned"] if "allow-egress" in r["name"]]
    read = drv.normalize(_applied(owned, NativeChange(POINT, "gcp_firewall", "api-calls", ()))).ruleset
    assert read.mode is Mode.ENFORCE and read.default_action is Action.DENY
    telnet = next(r for r in read.rules if r.dst_ports == ((23, 23),))
    assert telnet.action is Action.PERMIT and telnet.log
    # a switch to monitor that stopped before its deletes: the allow-the-rest rules are in, deny-egress still
    # decides egress (deny wins at equal priority) — not monitoring, whatever the rules say
    leftover = [r for r in owned if "deny-egress" in r["name"]]
    stuck = drv.normalize(_applied([*monitored.native["owned"], *leftover],
                                   NativeChange(POINT, "gcp_firewall", "api-calls", ()))).ruleset
    intended = Ruleset(POINT, Ordering.PRIORITY, Action.DENY, (TELNET, SSH), Mode.MONITOR)
    assert stuck.mode is Mode.ENFORCE and stuck != intended
    assert drv.render(RenderRequest(POINT, intended, stuck, _applied([*monitored.native["owned"], *leftover],
                      NativeChange(POINT, "gcp_firewall", "api-calls", ())))).commands  # a plan finishes it
    # a would-deny rule whose logging was turned off by hand is read as what it does: a plain allow
    quiet = [{**r, "logConfig": {"enable": False}} if r["name"] == f"{STEM}i001" else r
             for r in monitored.native["owned"]]
    plain = drv.normalize(_applied(quiet, NativeChange(POINT, "gcp_firewall", "api-calls", ()))).ruleset
    assert any(r.dst_ports == ((23, 23),) and r.action is Action.PERMIT and not r.log for r in plain.rules)
    assert plain != intended  # so the next plan writes the would-deny rule again
