"""One seeded synthetic estate, written both as a microseg project and as an Aerleon policy directory.

The estate: one enforcement point protecting 10.0.0.0/8, ingress only.  Internal groups are zones
(10.Z.0.0/16), segments (/24-/26 subnets of a zone), host lists (/32) and tiers (groups of segment
groups); external groups are partners (a few CIDRs in four non-10/8 pools), partner sets (groups of
partners) and /16 blocks that contain partners.  Rules are ordered, permit and deny interleaved over
nested, overlapping groups (so order decides); a small share is outbound (internal → partner, permit
only), whose replies a stateless ACL must let back in.  Used by ``benchmarks/aerleon.py``.
"""

from __future__ import annotations

import copy
import ipaddress
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import yaml

from orchestrator.model.rules import ANY_PORTS, Action, AddressSet, Direction, Rule, TcpFlags
from orchestrator.packetspace.flowset import Flow

Network = ipaddress.IPv4Network
INTERNAL = Network("10.0.0.0/8")
POOLS = tuple(map(Network, ("172.16.0.0/12", "192.168.0.0/16", "198.18.0.0/15", "100.64.0.0/10")))
FILTER = "MSEG-INGRESS-V4"  # the ACL / filter name on both sides
PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1}
ECHO_REQUEST, ECHO_REPLY = 8, 0


@dataclass(frozen=True)
class Service:
    """tcp/udp with port ranges, icmp with a type, or ``any`` protocol."""

    name: str
    protocol: str  # "tcp" | "udp" | "icmp" | "any"
    ports: tuple[tuple[int, int], ...] = ()
    icmp_type: int | None = None


SERVICES = {s.name: s for s in (
    Service("HTTP", "tcp", ((80, 80),)), Service("HTTPS", "tcp", ((443, 443),)),
    Service("WEB", "tcp", ((80, 80), (443, 443))), Service("SSH", "tcp", ((22, 22),)),
    Service("RDP", "tcp", ((3389, 3389),)), Service("MSSQL", "tcp", ((1433, 1434),)),
    Service("POSTGRES", "tcp", ((5432, 5432),)), Service("APP", "tcp", ((8000, 8099),)),
    Service("ALT_HTTPS", "tcp", ((8443, 8443),)), Service("NODEPORTS", "tcp", ((30000, 32767),)),
    Service("SMTP", "tcp", ((25, 25), (587, 587))), Service("LDAP", "tcp", ((389, 389), (636, 636))),
    Service("DNS", "udp", ((53, 53),)), Service("NTP", "udp", ((123, 123),)),
    Service("SNMP", "udp", ((161, 162),)), Service("SYSLOG", "udp", ((514, 514),)),
    Service("IKE", "udp", ((500, 500), (4500, 4500))), Service("PING", "icmp", icmp_type=ECHO_REQUEST),
    Service("ALL_TRAFFIC", "any"),
)}
TCP = [s for s in SERVICES.values() if s.protocol == "tcp"]
UDP = [s for s in SERVICES.values() if s.protocol == "udp"]
OUTBOUND_SERVICES = ("HTTPS", "SSH", "SMTP", "DNS", "NTP", "PING")


@dataclass(frozen=True)
class Group:
    name: str
    cidrs: tuple[Network, ...] = ()
    groups: tuple[str, ...] = ()  # nested groups (union)


@dataclass(frozen=True)
class EstateRule:
    name: str
    src: tuple[str, ...]
    dst: tuple[str, ...]
    services: tuple[str, ...]  # one protocol per rule (Aerleon crosses a term's protocols with its ports)
    action: Action
    outbound: bool = False  # internal → external: enforced by no point here, but its replies come in


@dataclass
class Estate:
    size: int
    groups: dict[str, Group]
    rules: list[EstateRule]
    _flat: dict[str, tuple[Network, ...]] = field(default_factory=dict, repr=False)

    def networks(self, name: str) -> tuple[Network, ...]:
        """The group's networks, nested groups flattened (not collapsed: as written)."""
        if name not in self._flat:
            group = self.groups[name]
            nested = [n for g in group.groups for n in self.networks(g)]
            self._flat[name] = tuple(dict.fromkeys([*group.cidrs, *nested]))
        return self._flat[name]

    def union(self, names: Sequence[str]) -> tuple[Network, ...]:
        return tuple(dict.fromkeys(n for g in names for n in self.networks(g)))

    @cached_property
    def ingress(self) -> list[EstateRule]:
        return [r for r in self.rules if not r.outbound]

    @cached_property
    def outbound(self) -> list[EstateRule]:
        return [r for r in self.rules if r.outbound]


# ------------------------------------------------------------------ generation

def _subnet(rnd: random.Random, within: Network, prefixlen: int) -> Network:
    count = 1 << (prefixlen - within.prefixlen)
    return Network((int(within.network_address) + rnd.randrange(count) * (1 << (32 - prefixlen)), prefixlen))


def _internal_groups(rnd: random.Random, zones: int) -> dict[int, list[Group]]:
    per_zone: dict[int, list[Group]] = {}
    for z in range(zones):
        zone = Network(f"10.{z + 1}.0.0/16")
        groups = [Group(f"Z{z}", (zone,))]
        segments = []
        for k in range(6):
            cidrs = tuple(sorted({_subnet(rnd, zone, rnd.choice((24, 24, 25, 26))) for _ in range(rnd.randint(1, 3))}))
            segments.append(Group(f"Z{z}_SEG{k}", cidrs))
        for k in range(3):
            base = rnd.choice(segments).cidrs[0]
            hosts = tuple(sorted({_subnet(rnd, base, 32) for _ in range(rnd.randint(2, 5))}))
            groups.append(Group(f"Z{z}_HOSTS{k}", hosts))
        tiers = [Group(f"Z{z}_TIER{k}", groups=tuple(sorted({s.name for s in rnd.sample(segments, 2)})))
                 for k in range(2)]
        per_zone[z] = groups + segments + tiers
    return per_zone


def _external_groups(rnd: random.Random, partners: int) -> tuple[list[Group], list[Group], list[Group]]:
    blocks = sorted({_subnet(rnd, rnd.choice(POOLS), 16) for _ in range(max(4, partners // 8))})
    block_groups = [Group(f"EXT_BLOCK{k}", (b,)) for k, b in enumerate(blocks)]
    partner_groups = []
    for p in range(partners):
        cidrs = set()
        for _ in range(rnd.randint(1, 3)):
            block = rnd.choice(blocks)
            cidrs.add(_subnet(rnd, block, rnd.choice((22, 24, 24, 28, 32))))
        partner_groups.append(Group(f"P{p}", tuple(sorted(cidrs))))
    sets = [Group(f"PSET{k}", groups=tuple(sorted({g.name for g in rnd.sample(partner_groups, rnd.randint(2, 4))})))
            for k in range(max(2, partners // 4))]
    return block_groups, partner_groups, sets


def _services(rnd: random.Random) -> tuple[str, ...]:
    kind = rnd.random()
    if kind < 0.08:
        return ("PING",)
    pool = UDP if kind < 0.25 else TCP
    return tuple(sorted({s.name for s in rnd.sample(pool, rnd.choice((1, 1, 2)))}))


def make_estate(size: int, seed: int = 13) -> Estate:
    """``size`` ordered policy rules (about 5% outbound), deterministic for a seed."""
    rnd = random.Random(f"{seed}:{size}")
    zones = min(250, max(4, size // 60))
    internal = _internal_groups(rnd, zones)
    blocks, partners, sets = _external_groups(rnd, max(8, size // 40))
    groups = {g.name: g for g in [*(g for gs in internal.values() for g in gs), *blocks, *partners, *sets]}
    weights = [1 / (z + 1) for z in range(zones)]  # a few busy zones, a long tail: rules meet in the busy ones
    rules = []
    for i in range(size):
        zone = internal[rnd.choices(range(zones), weights)[0]]
        name, roll = f"r{i:05d}", rnd.random()
        if roll < 0.05:  # outbound: a segment or tier reaches a partner
            src = rnd.choice([g for g in zone if "SEG" in g.name or "TIER" in g.name]).name
            dst = rnd.choice(partners + sets).name
            rules.append(EstateRule(name, (src,), (dst,), (rnd.choice(OUTBOUND_SERVICES),), Action.PERMIT, True))
        elif roll < 0.056:  # a broad deny: a whole external block to a whole zone, any protocol
            rules.append(EstateRule(name, (rnd.choice(blocks).name,), (zone[0].name,), ("ALL_TRAFFIC",), Action.DENY))
        elif roll < 0.33:  # a deny of a partner to part of a zone, often any protocol
            partner, part = rnd.choice(partners).name, rnd.choice(zone).name
            services = ("ALL_TRAFFIC",) if rnd.random() < 0.5 else _services(rnd)
            rules.append(EstateRule(name, (partner,), (part,), services, Action.DENY))
        else:  # a permit of one or two partners (or a set) to one or two groups of the zone
            sources = tuple(sorted({g.name for g in rnd.sample(partners + sets, rnd.choice((1, 1, 2)))}))
            targets = tuple(sorted({g.name for g in rnd.sample(zone[1:], rnd.choice((1, 1, 2)))}))
            rules.append(EstateRule(name, sources, targets, _services(rnd), Action.PERMIT))
    return Estate(size, groups, rules)


# ------------------------------------------------------------------ microseg project

def write_microseg(estate: Estate, root: Path) -> tuple[Path, Path]:
    """``root/policies`` (defaults, groups, services, rules) and ``root/inventory`` (three points)."""
    policies, inventory = root / "policies", root / "inventory"
    policies.mkdir(parents=True, exist_ok=True)
    inventory.mkdir(parents=True, exist_ok=True)
    _dump(policies / "00-defaults.yaml", {"defaults": {"action": "deny", "mode": "enforce"}})
    groups = {g.name: ({"groups": list(g.groups)} if g.groups else {"cidrs": [str(c) for c in g.cidrs]})
              for g in estate.groups.values()}
    _dump(policies / "groups.yaml", {"groups": groups})
    services = {}
    for s in SERVICES.values():
        spec: dict[str, object] = {"protocol": s.protocol}
        if s.ports:
            spec["ports"] = [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in s.ports]
        if s.icmp_type is not None:
            spec["type"] = s.icmp_type
        services[s.name] = spec
    _dump(policies / "services.yaml", {"services": services})
    rules = [{"name": r.name, "from": list(r.src), "to": list(r.dst), "services": list(r.services),
              "action": "allow" if r.action is Action.PERMIT else "deny", "priority": i + 1}
             for i, r in enumerate(estate.rules)]  # explicit priorities keep the written order (else deny first)
    _dump(policies / "rules.yaml", {"rules": rules})
    common = {"protects": {"subnets": [str(INTERNAL)]}, "directions": ["ingress"],
              "capabilities": {"max_rules": 10_000_000}}  # the ACL drivers' default TCAM budget is 1,000
    hosts = {
        "edge-ios": ("192.0.2.1", "ios", {"bindings": [{"interface": "GigabitEthernet0/1"}], "families": [4]}),
        "edge-junos": ("192.0.2.2", "junos", {"bindings": [{"interface": "ge-0/0/1.0"}], "families": [4]}),
        "edge-nft": ("192.0.2.3", "nftables", {"table": "microseg"}),
    }
    points = {name: {"hostname": address, "data": {"microseg": {"driver": driver, **copy.deepcopy(common),
                                                                 "settings": settings}}}
              for name, (address, driver, settings) in hosts.items()}  # copies: no YAML aliases
    (inventory / "hosts.yaml").write_text(yaml.safe_dump(points, sort_keys=False))
    return policies, inventory


def _dump(path: Path, body: dict[str, object]) -> None:
    path.write_text(yaml.safe_dump({"apiVersion": "microseg/v1", **body}, sort_keys=False, width=200))


# ------------------------------------------------------------------ Aerleon policy

def write_aerleon(estate: Estate, root: Path, *, established_replies: bool = True) -> tuple[Path, Path]:
    """``root/policies`` (one .pol per point, terms in shared .inc files) and ``root/def`` (.net, .svc).

    ``established_replies``: TCP reply terms match segments with ACK or RST only (``option:: tcp-established``),
    as microseg's return paths do; without, they are plain port-swapped permits."""
    base, definitions = root / "policies", root / "def"
    (base / "pol").mkdir(parents=True, exist_ok=True)
    (base / "includes").mkdir(parents=True, exist_ok=True)
    definitions.mkdir(parents=True, exist_ok=True)
    net = []
    for g in estate.groups.values():
        items = [str(c) for c in g.cidrs] + list(g.groups)
        net += [f"{g.name} = {items[0]}", *(f"    {item}" for item in items[1:]), ""]
    (definitions / "networks.net").write_text("\n".join(net))
    svc = []
    for s in SERVICES.values():
        ports = [f"{lo}/{s.protocol}" if lo == hi else f"{lo}-{hi}/{s.protocol}" for lo, hi in s.ports]
        if ports:
            svc += [f"{s.name} = {ports[0]}", *(f"    {p}" for p in ports[1:]), ""]
    (definitions / "services.svc").write_text("\n".join(svc))
    replies = [_term(f"{r.name}-reply", r.dst, r.src, r.services, Action.PERMIT, reply=True,
                     established=established_replies) for r in estate.outbound]
    (base / "includes" / "replies.inc").write_text("".join(replies))
    (base / "includes" / "ingress.inc").write_text(
        "".join(_term(r.name, r.src, r.dst, r.services, r.action) for r in estate.ingress))
    (base / "includes" / "ingress-nft.inc").write_text(
        "".join(_term(r.name, r.src, r.dst, r.services, r.action, nft=True) for r in estate.ingress))
    stateless = "#include 'includes/replies.inc'\n#include 'includes/ingress.inc'\n"
    headers = {
        "edge-ios": (f"cisco {FILTER} extended", stateless),
        "edge-junos": (f"juniper {FILTER} inet", stateless),
        "edge-nft": ("nftables inet input", "#include 'includes/ingress-nft.inc'\n"),
    }
    for point, (target, body) in headers.items():
        (base / "pol" / f"{point}.pol").write_text(f"header {{\n  target:: {target}\n}}\n\n{body}")
    return base, definitions


def _term(name: str, src: Sequence[str], dst: Sequence[str], services: Sequence[str], action: Action, *,
          reply: bool = False, nft: bool = False, established: bool = False) -> str:
    """One term; a reply term swaps the sides and matches the service on the source port.

    ``nft``: Aerleon 1.18.0's nftables generator crashes on a term with exactly one ``icmp-type``
    (``TypeError: can only concatenate str (not "list") to str`` in ``PortsAndProtocols``); naming the type
    twice renders ``icmp type { echo-request, echo-request }``, which nft accepts and reads as the one type.
    """
    protocol = SERVICES[services[0]].protocol
    lines = [f"term {name} {{", f"  source-address:: {' '.join(src)}", f"  destination-address:: {' '.join(dst)}"]
    if protocol == "icmp":
        kind = "echo-reply" if reply else "echo-request"
        lines += ["  protocol:: icmp", f"  icmp-type:: {kind} {kind}" if nft else f"  icmp-type:: {kind}"]
    elif protocol != "any":
        lines += [f"  protocol:: {protocol}", f"  {'source' if reply else 'destination'}-port:: {' '.join(services)}"]
        if established and protocol == "tcp":  # segments with ACK or RST: IOS `established`, Junos `tcp-established`
            lines.append("  option:: tcp-established")
    lines += [f"  action:: {'accept' if action is Action.PERMIT else 'deny'}", "}", ""]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ reference semantics and flows

def reference_rules(estate: Estate) -> list[Rule]:
    """What the ingress filter must decide, first match, default deny: the replies of the outbound permits
    (sides and ports swapped, TCP segments with ACK or RST only, echo → echo-reply), then the ingress rules in
    order, destinations within 10/8."""
    rules = []
    scope = AddressSet.of([INTERNAL])
    for r in estate.outbound:
        for spec in _service_specs(r.services, reply=True):
            rules.append(Rule(Action.PERMIT, Direction.INGRESS, spec.protocol, AddressSet.of(estate.union(r.dst)),
                              AddressSet.of(estate.union(r.src)).intersection(scope), spec.src_ports,
                              spec.dst_ports, spec.icmp_type, tcp_flags=spec.tcp_flags))
    for r in estate.ingress:
        dst = AddressSet.of(estate.union(r.dst)).intersection(scope)
        for spec in _service_specs(r.services):
            rules.append(Rule(r.action, Direction.INGRESS, spec.protocol, AddressSet.of(estate.union(r.src)), dst,
                              spec.src_ports, spec.dst_ports, spec.icmp_type, tcp_flags=spec.tcp_flags))
    return rules


class Match(NamedTuple):
    """The protocol part of one normalized rule: protocol (None: any), port sets, ICMP type, TCP flags."""

    protocol: int | None
    src_ports: tuple[tuple[int, int], ...] = ANY_PORTS
    dst_ports: tuple[tuple[int, int], ...] = ANY_PORTS
    icmp_type: int | None = None
    tcp_flags: TcpFlags | None = None


def _service_specs(names: Sequence[str], *, reply: bool = False) -> Iterator[Match]:
    """One match per port range of each service; a reply matches the service's ports as source ports."""
    for name in names:
        s = SERVICES[name]
        if s.protocol == "any":
            yield Match(None)
        elif s.protocol == "icmp":
            yield Match(1, icmp_type=ECHO_REPLY if reply else s.icmp_type)
        else:
            protocol = PROTOCOLS[s.protocol]
            flags = TcpFlags.ESTABLISHED if reply and protocol == 6 else None
            for ports in s.ports:
                yield (Match(protocol, src_ports=(ports,), tcp_flags=flags) if reply
                       else Match(protocol, dst_ports=(ports,)))


def _edge_address(rnd: random.Random, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """The first or last address of ``network``, the one just outside either end, or one inside."""
    first, last = int(network.network_address), int(network.broadcast_address)
    value = rnd.choice((first, last, first - 1, last + 1, rnd.randint(first, last)))
    return str(ipaddress.IPv4Address(min(max(value, 0), 2**32 - 1)))


def _edge_port(rnd: random.Random, ports: tuple[tuple[int, int], ...]) -> int:
    lo, hi = rnd.choice(ports)
    return min(max(rnd.choice((lo, hi, lo - 1, hi + 1, rnd.randint(lo, hi))), 0), 65535)


def sample_flows(estate: Estate, count: int, seed: int = 2026) -> list[Flow]:
    """``count`` flows towards the point, mostly on the edges of a random rule's addresses and ports."""
    rnd = random.Random(seed)
    rules = reference_rules(estate)
    flows = []
    for _ in range(count):
        if rnd.random() < 0.15:  # anything: any source, any protocol, a destination in 10/8
            protocol = rnd.choice((6, 17, 1, 47))
            src = str(ipaddress.IPv4Address(rnd.getrandbits(32)))
            dst = str(ipaddress.IPv4Address(int(INTERNAL.network_address) + rnd.getrandbits(24)))
            flows.append(_flow(rnd, src, dst, protocol, ANY_PORTS, ANY_PORTS, None, rnd.random() < 0.3))
            continue
        rule = rnd.choice(rules)
        protocol = rule.protocol if rule.protocol is not None else rnd.choice((6, 17, 1, 47))
        src = _edge_address(rnd, rnd.choice(rule.src.networks))
        dst = _edge_address(rnd, rnd.choice(rule.dst.networks))
        established = rnd.random() < (0.8 if rule.tcp_flags is TcpFlags.ESTABLISHED else 0.2)
        flows.append(_flow(rnd, src, dst, protocol, rule.src_ports, rule.dst_ports, rule.icmp_type, established))
    return flows


def _flow(rnd: random.Random, src: str, dst: str, protocol: int, sports: tuple[tuple[int, int], ...],
          dports: tuple[tuple[int, int], ...], icmp_type: int | None, established: bool = False) -> Flow:
    """One flow; ``established``: a TCP segment with ACK or RST (a reply), else a connection's first."""
    if protocol in (6, 17):
        sport = _edge_port(rnd, sports) if sports != ANY_PORTS else rnd.choice((rnd.randint(1024, 65535), 53, 443))
        dport = _edge_port(rnd, dports) if dports != ANY_PORTS else rnd.randint(0, 65535)
        return Flow.of(src, dst, protocol, dst_port=dport, src_port=sport, established=established and protocol == 6)
    if protocol == 1:
        kind = icmp_type if icmp_type is not None and rnd.random() < 0.8 else rnd.choice((0, 3, 8, 11))
        return Flow.of(src, dst, 1, icmp_type=kind, icmp_code=0)
    return Flow.of(src, dst, protocol)
