"""Switch drivers against the SSH device simulators: start a simulator, build the driver for it, sample rulesets."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import simulators.netdev.session as sim_session
from drivers.arista_eos import EosDriver
from drivers.cisco_ios import IosDriver
from drivers.cisco_nxos import NxosDriver
from drivers.juniper_junos import JunosDriver
from drivers.netacl.base import AclDriver
from orchestrator.engine.diff import diff_rulesets
from orchestrator.model.driver import Connection, NativeChange, PointContext, RenderRequest
from orchestrator.model.rules import Action, AddressSet, Direction, Mode, Ordering, Rule, Ruleset
from simulators.netdev.server import DeviceSimulator

A = AddressSet.of
PLATFORMS = ("ios", "nxos", "eos", "junos")
DRIVERS: Mapping[str, type[AclDriver]] = {"ios": IosDriver, "nxos": NxosDriver, "eos": EosDriver,
                                          "junos": JunosDriver}
INTERFACES: Mapping[str, tuple[str, ...]] = {
    "ios": ("Vlan301", "Vlan302", "GigabitEthernet0/1"),
    "nxos": ("Vlan202", "Vlan203", "Ethernet1/1"),
    "eos": ("Vlan201", "Vlan299", "Ethernet1"),
    "junos": ("irb.100", "irb.200", "ge-0/0/0.0"),
}
# Someone else's ACL, bound on an interface microseg does not manage: must survive every test untouched.
FOREIGN: Mapping[str, tuple[str, ...]] = {
    "ios": ("ip access-list extended CUSTOMER-EDGE", "10 permit tcp any host 10.1.1.1 eq 443",
            "20 deny ip any any log", "exit", "interface GigabitEthernet0/1", "ip access-group CUSTOMER-EDGE in",
            "exit"),
    "nxos": ("ip access-list CUSTOMER-EDGE", "10 permit tcp any 10.1.1.1/32 eq 443", "20 deny ip any any log", "exit",
             "interface Ethernet1/1", "ip access-group CUSTOMER-EDGE in", "exit"),
    "eos": ("ip access-list CUSTOMER-EDGE", "10 permit tcp any host 10.1.1.1 eq https", "20 deny ip any any log",
            "exit", "interface Ethernet1", "ip access-group CUSTOMER-EDGE in", "exit"),
    "junos": ("set firewall family inet filter CUSTOMER-EDGE term web from destination-address 10.1.1.1/32",
              "set firewall family inet filter CUSTOMER-EDGE term web from protocol tcp",
              "set firewall family inet filter CUSTOMER-EDGE term web from destination-port 443",
              "set firewall family inet filter CUSTOMER-EDGE term web then accept",
              "set interfaces ge-0/0/0 unit 0 family inet filter input CUSTOMER-EDGE"),
}
MEMBERS = A(["10.30.1.0/24", "fd00:30:1::/64"])


@contextmanager
def simulator(platform: str, *, minute_seconds: float = 5.0, boot: tuple[str, ...] | None = None,
              hostname: str | None = None) -> Iterator[DeviceSimulator]:
    """A started simulator of ``platform`` on 127.0.0.1 (random port), with the foreign ACL booted."""
    sim = DeviceSimulator(platform, hostname or f"sim-{platform}", username="admin", password="admin",
                          minute_seconds=minute_seconds, boot_config=FOREIGN[platform] if boot is None else boot,
                          interfaces=INTERFACES[platform])
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


def new_host_key() -> paramiko.PKey:
    """A fresh Ed25519 key, e.g. for :func:`serving_host_key`."""
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    return paramiko.Ed25519Key.from_private_key(io.StringIO(pem.decode()))


@contextmanager
def serving_host_key(sim: DeviceSimulator, key: paramiko.PKey) -> Iterator[paramiko.PKey]:
    """Within the block, SSH sessions of ``sim`` (only) present ``key`` instead of the process-wide host key.

    The simulator takes its host key from ``simulators.netdev.session.host_key()`` in each session's own
    thread; the stand-in answers ``key`` there and the original everywhere else, so every other simulator
    keeps its key.
    """
    original = sim_session.host_key

    def host_key() -> paramiko.PKey:
        session = threading.current_thread()
        return key if getattr(session, "device", None) is sim else original()

    sim_session.host_key = host_key
    try:
        yield key
    finally:
        sim_session.host_key = original


def driver_for(sim: DeviceSimulator, platform: str, point: str = "sw",
               directions: frozenset[Direction] = frozenset(Direction), **settings: Any) -> AclDriver:
    interfaces = INTERFACES[platform][:2]
    options: dict[str, Any] = {"bindings": [{"interface": i} for i in interfaces], "confirm_minutes": 1, **settings}
    context = PointContext(point, platform, Connection("127.0.0.1", sim.port, "admin", "admin", platform),
                           options, timeout=10.0, members=MEMBERS, directions=directions)
    return DRIVERS[platform](context)


def ruleset(rules: tuple[Rule, ...], default: Action = Action.DENY, point: str = "sw") -> Ruleset:
    return Ruleset(point, Ordering.FIRST_MATCH, default, rules, Mode.ENFORCE, stateful=False)


def rule(action: Action, direction: Direction, protocol: int | None, src: str, dst: str,
         ports: tuple[int, int] | None = None, **extra: Any) -> Rule:
    return Rule(action, direction, protocol, A([src]), A([dst]),
                dst_ports=(ports,) if ports else ((0, 65535),), **extra)


IN, OUT, PERMIT, DENY = Direction.INGRESS, Direction.EGRESS, Action.PERMIT, Action.DENY
SSH = rule(PERMIT, IN, 6, "10.0.0.10/32", "10.30.1.0/24", (22, 22))
APP = rule(PERMIT, IN, 6, "10.30.2.0/24", "10.30.1.5/32", (8080, 8090))
DNS_DENY = rule(DENY, IN, 17, "0.0.0.0/0", "10.30.1.0/24", (53, 53), log=True)
PING = rule(PERMIT, IN, 1, "0.0.0.0/0", "10.30.1.0/24", icmp_type=8, icmp_code=0)
WEB6 = rule(PERMIT, IN, 6, "::/0", "fd00:30:1::/64", (443, 443))
PING6 = rule(PERMIT, IN, 58, "::/0", "fd00:30:1::/64", icmp_type=128)
RESOLVER = rule(PERMIT, OUT, 17, "10.30.1.0/24", "10.10.0.53/32", (53, 53))
NO_PROD = rule(DENY, OUT, None, "10.30.1.0/24", "10.20.0.0/16")
ESP = rule(PERMIT, OUT, 50, "10.30.1.0/24", "10.99.0.0/16")

FIRST = ruleset((SSH, APP, DNS_DENY, PING, WEB6, PING6, RESOLVER, NO_PROD))
SECOND = ruleset((SSH, DNS_DENY, APP, rule(PERMIT, IN, 6, "10.30.3.0/24", "10.30.1.0/24", (5432, 5432)), WEB6,
                  NO_PROD, ESP), default=Action.PERMIT)


def render(driver: AclDriver, intended: Ruleset) -> NativeChange:
    """The driver's native change from the device's current state to ``intended`` (what plan computes)."""
    snapshot = driver.fetch()
    observed = driver.normalize(snapshot)
    diff = diff_rulesets(observed.ruleset, intended)
    return driver.render(RenderRequest(intended.point, intended, observed.ruleset, snapshot, diff.added,
                                       diff.removed))
