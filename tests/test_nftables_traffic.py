"""nftables enforcement proven with real TCP over a veth pair between two test namespaces (IPv4 and IPv6)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest

from orchestrator.engine.plan import rule_hits
from orchestrator.model.rules import Action, AddressSet, Direction, Mode, Ordering, Provenance, Rule, Ruleset
from tests.nft_helpers import POINT, apply_ruleset, driver_in, needs_netns, network_namespace

pytestmark = needs_netns

SERVER_V4, CLIENT_V4 = "10.99.0.1", "10.99.0.2"
SERVER_V6, CLIENT_V6 = "fd99::1", "fd99::2"
OPEN, CLOSED = 8080, 8081
LISTENER = f"""
import socket, threading
def serve(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port)); s.listen(16)
    while True:
        c, _ = s.accept(); c.sendall(b"hi"); c.close()
for p in ({OPEN}, {CLOSED}):
    threading.Thread(target=serve, args=(p,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""
CONNECT = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5) as s:
        sys.exit(0 if s.recv(2) == b"hi" else 2)
except OSError:
    sys.exit(1)
"""


@dataclass(frozen=True)
class Lab:
    server: str
    client: str


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with network_namespace() as server, network_namespace() as client:
        ip("-n", server, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", client)
        for ns, dev, v4, v6 in ((server, "va", SERVER_V4, SERVER_V6), (client, "vb", CLIENT_V4, CLIENT_V6)):
            ip("-n", ns, "addr", "add", f"{v4}/24", "dev", dev)
            ip("-n", ns, "-6", "addr", "add", f"{v6}/64", "dev", dev, "nodad")
            ip("-n", ns, "link", "set", dev, "up")
        listener = subprocess.Popen(
            ["ip", "netns", "exec", server, sys.executable, "-c", LISTENER], stdout=subprocess.PIPE, text=True
        )
        try:
            assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
            yield Lab(server, client)
        finally:
            listener.kill()
            listener.wait(timeout=10)


def connects(lab: Lab, host: str, port: int) -> bool:
    done = subprocess.run(["ip", "netns", "exec", lab.client, sys.executable, "-c", CONNECT, host, str(port)],
                          check=False, capture_output=True, timeout=20)
    return done.returncode == 0


def web_only(mode: Mode = Mode.ENFORCE, *, stateful: bool = True) -> Ruleset:
    rules = tuple(
        Rule(Action.PERMIT, Direction.INGRESS, 6, AddressSet.of([client]), AddressSet.of([server]),
             dst_ports=((OPEN, OPEN),))
        for client, server in ((CLIENT_V4, SERVER_V4), (CLIENT_V6, SERVER_V6))
    )
    return Ruleset(POINT, Ordering.FIRST_MATCH, Action.DENY, rules, mode, stateful)


def reachable(lab: Lab) -> dict[tuple[str, int], bool]:
    return {(h, p): connects(lab, h, p) for h in (SERVER_V4, SERVER_V6) for p in (OPEN, CLOSED)}


def test_enforce_allows_only_the_permitted_port_on_both_families(lab: Lab) -> None:
    driver = driver_in(lab.server)
    apply_ruleset(driver, web_only())
    assert reachable(lab) == {(SERVER_V4, OPEN): True, (SERVER_V4, CLOSED): False,
                              (SERVER_V6, OPEN): True, (SERVER_V6, CLOSED): False}


def test_monitor_mode_drops_nothing(lab: Lab) -> None:
    driver = driver_in(lab.server)
    apply_ruleset(driver, web_only(Mode.MONITOR))
    assert all(reachable(lab).values())


def test_stateless_ruleset_needs_explicit_replies(lab: Lab) -> None:
    driver = driver_in(lab.server)
    apply_ruleset(driver, web_only(stateful=False))  # egress is default deny and nothing lets the SYN-ACK out
    assert not connects(lab, SERVER_V4, OPEN)
    replies = Rule(Action.PERMIT, Direction.EGRESS, 6, AddressSet.of([SERVER_V4]), AddressSet.of([CLIENT_V4]),
                   src_ports=((OPEN, OPEN),))
    ruleset = web_only(stateful=False)
    apply_ruleset(driver, Ruleset(POINT, ruleset.ordering, ruleset.default_action, (*ruleset.rules, replies),
                                  stateful=False))
    assert connects(lab, SERVER_V4, OPEN)


def test_an_ingress_only_host_still_opens_outbound_connections(lab: Lab) -> None:
    """Issue #14 part 4, with real traffic: the client namespace is a point that filters ingress only, default
    deny. Its own connections out still work (no output chain; the replies come back as established); the same
    ruleset on a point that filters both directions cuts them — which is what an ingress-only point used to get."""
    inbound_ssh = Rule(Action.PERMIT, Direction.INGRESS, 6, AddressSet.of([SERVER_V4]), AddressSet.of([CLIENT_V4]),
                       dst_ports=((22, 22),))
    ruleset = Ruleset(POINT, Ordering.FIRST_MATCH, Action.DENY, (inbound_ssh,), Mode.ENFORCE, stateful=True)
    for ns in (lab.server, lab.client):  # the server unfiltered: earlier tests leave their rulesets there
        subprocess.run(["ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "microseg"], check=False,
                       capture_output=True)
    assert connects(lab, SERVER_V4, OPEN) and connects(lab, SERVER_V6, OPEN)
    both = driver_in(lab.client)
    try:
        apply_ruleset(both, ruleset)
        assert not connects(lab, SERVER_V4, OPEN) and not connects(lab, SERVER_V6, OPEN)
        apply_ruleset(driver_in(lab.client, directions=frozenset({Direction.INGRESS})), ruleset)
        assert connects(lab, SERVER_V4, OPEN) and connects(lab, SERVER_V6, OPEN)
    finally:
        subprocess.run(["ip", "netns", "exec", lab.client, "nft", "delete", "table", "inet", "microseg"],
                       check=False, capture_output=True)


def test_rule_counters_count_real_connections_per_policy_rule(lab: Lab) -> None:
    """Issue #17, hit evidence: every owned rule carries an nft counter, read back beside the rules (never part
    of the state: same ruleset, same fingerprint) and summed per policy rule by the plan."""
    web = Provenance(rules=("web-in",))
    rules = tuple(replace(r, provenance=web) for r in web_only().rules)
    telnet = Rule(Action.DENY, Direction.INGRESS, 6, AddressSet.of([CLIENT_V4]), AddressSet.of([SERVER_V4]),
                  dst_ports=((CLOSED, CLOSED),), provenance=Provenance(rules=("no-8081",)))
    ruleset = Ruleset(POINT, Ordering.FIRST_MATCH, Action.DENY, (telnet, *rules))
    driver = driver_in(lab.server)
    subprocess.run(["ip", "netns", "exec", lab.server, "nft", "delete", "table", "inet", "microseg"], check=False,
                   capture_output=True)
    apply_ruleset(driver, ruleset)
    before = driver.fetch()
    observed = driver.normalize(before)
    assert observed.ruleset == ruleset and observed.hits == (0, 0, 0)
    for _ in range(3):
        assert connects(lab, SERVER_V4, OPEN)
    assert not connects(lab, SERVER_V4, CLOSED)
    after = driver.fetch()
    counted = driver.normalize(after)
    assert counted.ruleset == ruleset and after.fingerprint() == before.fingerprint()
    denied, v4, v6 = counted.hits
    assert v4 == 3 and v6 == 0  # one SYN per connection: the rest of each is established, accepted before
    assert denied is not None and denied >= 1  # the SYN and its retransmissions
    assert rule_hits(counted, ruleset) == {"no-8081": denied, "web-in": 3}
    assert counted.counter_epoch and counted.counter_epoch == observed.counter_epoch  # the same table throughout
    subprocess.run(["ip", "netns", "exec", lab.server, "nft", "delete", "table", "inet", "microseg"], check=True,
                   capture_output=True)
    apply_ruleset(driver, ruleset)  # a rewritten table: the counters start over, under a new epoch
    again = driver.normalize(driver.fetch())
    assert again.hits == (0, 0, 0) and again.counter_epoch != counted.counter_epoch
