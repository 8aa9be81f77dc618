"""Discover: observed flows → who talks to whom on what (the application map) → a proposed policy for review.

Each stored flow is first oriented client → server.  Evidence decides where there is some: the source said who
opened the connection (a SYN, conntrack's original direction), or the other record of the same connection did
(an endpoint known to have accepted a connection on that port is a listener).  Without evidence the end with
more distinct peers on that port is the listener (fan-in); then a port below 32768 facing one at or above it
(the ephemeral range); only when nothing tells them apart is the lower port taken, and the edge is marked
``guessed``.  Protocols without ports keep the direction they were reported in.

Addresses map to workloads (and so to labels) through the inventory's workload sources; an address that is no
workload's is named by the smallest policy group of CIDRs that holds it, else ``internet`` when it is public,
else its /24 (/64) as a group of its own.  Nodes of the map are label combinations (``--by app,tier,env``).
"""

from __future__ import annotations

import ipaddress
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestrator.flows.store import FlowStore
from orchestrator.inventory import Workload
from orchestrator.model import AddressSet, protocol_name
from orchestrator.model.policy import Group, Policy

PORTED = (6, 17, 132)
EPHEMERAL = 32768
ORIENTED_SQL = """
WITH f AS (SELECT * FROM flows WHERE last_seen >= ? AND first_seen <= ?),
known AS (
    SELECT DISTINCT dst AS addr, protocol, dst_port AS port FROM f WHERE initiator = 'src' AND protocol IN (6, 17, 132)
    UNION SELECT DISTINCT src, protocol, src_port FROM f WHERE initiator = 'dst' AND protocol IN (6, 17, 132)),
ends AS (
    SELECT dst AS addr, protocol, dst_port AS port, src AS peer FROM f WHERE protocol IN (6, 17, 132)
    UNION ALL SELECT src, protocol, src_port, dst FROM f WHERE protocol IN (6, 17, 132)),
fanin AS (SELECT addr, protocol, port, count(DISTINCT peer) AS peers FROM ends GROUP BY ALL),
o AS (
    SELECT f.*,
        CASE WHEN f.protocol NOT IN (6, 17, 132) THEN 'fwd'
             WHEN f.initiator = 'src' THEN 'fwd' WHEN f.initiator = 'dst' THEN 'rev'
             WHEN kd.addr IS NOT NULL AND ks.addr IS NULL THEN 'fwd'
             WHEN ks.addr IS NOT NULL AND kd.addr IS NULL THEN 'rev'
             WHEN coalesce(fd.peers, 0) > coalesce(fs.peers, 0) THEN 'fwd'
             WHEN coalesce(fs.peers, 0) > coalesce(fd.peers, 0) THEN 'rev'
             WHEN f.dst_port < 32768 AND f.src_port >= 32768 THEN 'fwd'
             WHEN f.src_port < 32768 AND f.dst_port >= 32768 THEN 'rev'
             WHEN f.dst_port <= f.src_port THEN 'fwd' ELSE 'rev' END AS way,
        CASE WHEN f.protocol NOT IN (6, 17, 132) OR f.initiator IS NOT NULL
                  OR (kd.addr IS NULL) <> (ks.addr IS NULL) THEN 'evidence'
             WHEN coalesce(fd.peers, 0) <> coalesce(fs.peers, 0) THEN 'fan-in'
             WHEN (f.dst_port < 32768) <> (f.src_port < 32768) THEN 'ports'
             ELSE 'guess' END AS basis
    FROM f
    LEFT JOIN known kd ON kd.addr = f.dst AND kd.protocol = f.protocol AND kd.port = f.dst_port
    LEFT JOIN known ks ON ks.addr = f.src AND ks.protocol = f.protocol AND ks.port = f.src_port
    LEFT JOIN fanin fd ON fd.addr = f.dst AND fd.protocol = f.protocol AND fd.port = f.dst_port
    LEFT JOIN fanin fs ON fs.addr = f.src AND fs.protocol = f.protocol AND fs.port = f.src_port)
SELECT CASE way WHEN 'fwd' THEN src ELSE dst END AS client,
       CASE way WHEN 'fwd' THEN dst ELSE src END AS server,
       protocol,
       CASE WHEN protocol NOT IN (6, 17, 132) THEN 0 WHEN way = 'fwd' THEN dst_port ELSE src_port END AS port,
       sum(records), sum(packets), sum(bytes), min(first_seen), max(last_seen),
       list(DISTINCT observer ORDER BY observer), bool_or(basis = 'guess'),
       coalesce(sum(records) FILTER (WHERE action = 'reject'), 0),
       min(CASE WHEN way = 'fwd' THEN src_port ELSE dst_port END)
FROM o GROUP BY 1, 2, 3, 4
"""


@dataclass(frozen=True)
class Conversation:
    """Observed traffic of one client address to one server address and service (all windows together)."""

    client: str
    server: str
    protocol: int
    port: int
    records: int
    packets: int
    bytes: int
    first_seen: int
    last_seen: int
    observers: tuple[str, ...]
    guessed: bool
    rejected: int
    client_port: int = 0

    @property
    def service(self) -> str:
        name = protocol_name(self.protocol)
        if self.protocol in PORTED:
            return f"{name}/{self.port}"
        return name if not name.isdigit() else f"proto/{name}"


def conversations(store: FlowStore, since: int = 0, until: int = 2**62) -> list[Conversation]:
    """Every (client, server, service) the store saw between ``since`` and ``until`` (epoch seconds).

    Traffic to or from link-local, multicast, unspecified or loopback addresses (neighbour discovery, MLD, DHCP)
    is the network's own, not an application's: it is left out."""
    rows = store.query(ORIENTED_SQL, [since, until])
    return [Conversation(str(c), str(s), int(p), int(port), int(r), int(pk), int(b), int(first), int(last),
                         tuple(str(o) for o in observers if o), bool(guessed), int(rejected), int(cport or 0))
            for c, s, p, port, r, pk, b, first, last, observers, guessed, rejected, cport in rows
            if not (_infrastructure(str(c)) or _infrastructure(str(s)))]


def _infrastructure(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_loopback or address == "255.255.255.255"


@dataclass
class Node:
    """A vertex of the map: a label combination of workloads, a policy group of CIDRs, or an outside network."""

    name: str
    kind: str  # "labels" | "group" | "internet" | "network"
    labels: dict[str, str] = field(default_factory=dict)
    missing: tuple[str, ...] = ()  # keys of --by the node's workloads do not have (selector: exists false)
    cidrs: tuple[str, ...] = ()
    workloads: set[str] = field(default_factory=set)
    addresses: set[str] = field(default_factory=set)

    def group(self) -> dict[str, Any]:
        """The node as a policy group definition."""
        if self.kind == "labels":
            selector: dict[str, Any] = dict(self.labels)
            selector.update({key: {"exists": False} for key in self.missing})
            return {"description": f"discovered: {len(self.workloads)} workloads", "selector": selector}
        if self.kind == "internet":
            return {"description": "public Internet (discovered)", "external": "internet"}
        return {"description": "discovered outside the inventory's workloads", "cidrs": list(self.cidrs)}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "labels": self.labels, "cidrs": list(self.cidrs),
                "workloads": sorted(self.workloads), "addresses": len(self.addresses)}


@dataclass
class Edge:
    client: str
    server: str
    service: str
    records: int = 0
    packets: int = 0
    bytes: int = 0
    first_seen: int = 2**62
    last_seen: int = 0
    rejected: int = 0
    guessed: bool = False
    observers: set[str] = field(default_factory=set)
    pairs: set[tuple[str, str]] = field(default_factory=set)

    def add(self, c: Conversation) -> None:
        self.records += c.records
        self.packets += c.packets
        self.bytes += c.bytes
        self.first_seen = min(self.first_seen, c.first_seen)
        self.last_seen = max(self.last_seen, c.last_seen)
        self.rejected += c.rejected
        self.guessed |= c.guessed
        self.observers.update(c.observers)
        self.pairs.add((c.client, c.server))

    def example(self) -> str:
        client, server = min(self.pairs)
        return f"{_bracket(client)} → {_bracket(server)} {self.service}"

    def to_dict(self) -> dict[str, Any]:
        return {"from": self.client, "to": self.server, "service": self.service, "records": self.records,
                "packets": self.packets, "bytes": self.bytes, "first_seen": self.first_seen,
                "last_seen": self.last_seen, "rejected": self.rejected, "guessed": self.guessed,
                "address_pairs": len(self.pairs), "observers": sorted(self.observers), "example": self.example()}


@dataclass
class AppMap:
    """Who talks to whom on what, at one label level, with how much of the traffic it explains."""

    by: tuple[str, ...]
    nodes: dict[str, Node]
    edges: list[Edge]
    records: int
    unknown: dict[str, int]  # addresses in no workload and no policy group, by records

    @property
    def explained(self) -> int:
        """Records whose both ends are workloads or named policy groups."""
        named = {n.name for n in self.nodes.values() if n.kind in ("labels", "group")}
        return sum(e.records for e in self.edges if e.client in named and e.server in named)

    def to_dict(self) -> dict[str, Any]:
        return {"by": list(self.by), "records": self.records, "explained_records": self.explained,
                "edges_seen_once": sum(1 for e in self.edges if e.records == 1),
                "unknown_addresses": dict(sorted(self.unknown.items(), key=lambda kv: -kv[1])[:50]),
                "nodes": [n.to_dict() for n in sorted(self.nodes.values(), key=lambda n: n.name)],
                "edges": [e.to_dict() for e in self.edges]}


def _bracket(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _slug(parts: Sequence[str]) -> str:
    text = "-".join(parts).lower()
    text = re.sub(r"[^a-z0-9-]+", "-", text).strip("-")
    return text[:60] or "unlabeled"


class _Namer:
    """Address → node, through workloads (labels at the chosen level), then policy CIDR groups, then outside."""

    def __init__(self, workloads: Sequence[Workload], policy: Policy | None, by: Sequence[str]) -> None:
        self.by = tuple(by)
        self.nodes: dict[str, Node] = {}
        self.unknown: dict[str, int] = defaultdict(int)
        self._by_address: dict[str, Workload] = {}
        for workload in workloads:
            for address in workload.addresses:
                self._by_address.setdefault(str(address), workload)
        groups: list[tuple[int, str, AddressSet]] = []
        for name, group in (policy.groups.items() if policy else ()):
            if isinstance(group, Group) and group.cidrs:
                addresses = AddressSet.of(group.cidrs)
                groups.append((addresses.address_count(), name, addresses))
        self._groups = sorted(groups)

    def node(self, address: str, records: int) -> str:
        workload = self._by_address.get(address)
        if workload is not None:
            present = {k: str(workload.labels[k]) for k in self.by if k in workload.labels}
            missing = tuple(k for k in self.by if k not in workload.labels)
            name = _slug([present[k] for k in self.by if k in present]) if present else f"workload-{workload.name}"
            node = self.nodes.setdefault(name, Node(name, "labels", present, missing) if present else
                                         Node(name, "group", cidrs=tuple(f"{a}/{32 if ':' not in str(a) else 128}"
                                                                         for a in workload.addresses)))
            node.workloads.add(workload.name)
            node.addresses.add(address)
            return name
        ip = ipaddress.ip_address(address)
        host = AddressSet.of([f"{address}/{ip.max_prefixlen}"])
        for _, name, addresses in self._groups:
            if addresses.overlaps(host):  # a single address: inside
                node = self.nodes.setdefault(name, Node(name, "group", cidrs=tuple(addresses.to_list())))
                node.addresses.add(address)
                return name
        self.unknown[address] += records
        if ip.is_global:
            node = self.nodes.setdefault("internet", Node("internet", "internet"))
        else:
            network = ipaddress.ip_network(f"{address}/{24 if ip.version == 4 else 64}", strict=False)
            name = _slug(["net", str(network.network_address).replace(":", "-").replace(".", "-"),
                          str(network.prefixlen)])
            node = self.nodes.setdefault(name, Node(name, "network", cidrs=(str(network),)))
        node.addresses.add(address)
        return node.name


def build_map(found: Sequence[Conversation], workloads: Sequence[Workload], policy: Policy | None,
              by: Sequence[str]) -> AppMap:
    """The application map of ``found`` at the label level ``by``."""
    namer = _Namer(workloads, policy, by)
    edges: dict[tuple[str, str, str], Edge] = {}
    for conversation in found:
        client = namer.node(conversation.client, conversation.records)
        server = namer.node(conversation.server, conversation.records)
        key = (client, server, conversation.service)
        edges.setdefault(key, Edge(*key)).add(conversation)
    ordered = sorted(edges.values(), key=lambda e: (-e.records, e.client, e.server, e.service))
    return AppMap(tuple(by), namer.nodes, ordered, sum(c.records for c in found), dict(namer.unknown))


def _when(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def proposal(app: AppMap, policy: Policy | None = None) -> dict[str, Any]:
    """A policy document for review: a group per node (reusing a policy group of the same definition), one allow
    rule per edge whose description carries its evidence.  Never written over the policy."""
    own: dict[str, str] = {}
    for name, group in (policy.groups.items() if policy else ()):
        definition = group.model_dump(mode="json", exclude_none=True, by_alias=True, exclude={"description"})
        if definition.get("except") == []:
            definition.pop("except")
        own.setdefault(repr(sorted(definition.items())), name)
    names: dict[str, str] = {}
    groups: dict[str, Any] = {}
    for node in sorted(app.nodes.values(), key=lambda n: n.name):
        definition = node.group()
        key = repr(sorted((k, v) for k, v in definition.items() if k != "description"))
        if key in own:
            names[node.name] = own[key]
            continue
        name = node.name if not policy or node.name not in policy.groups else f"discovered-{node.name}"
        names[node.name] = name
        groups[name] = definition
    rules = []
    seen: set[str] = set()
    for edge in app.edges:
        base = _slug([names[edge.client], "to", names[edge.server], edge.service.replace("/", "-")])
        name, n = base, 2
        while name in seen:
            name, n = f"{base}-{n}", n + 1
        seen.add(name)
        evidence = (f"observed {edge.records} flow records ({len(edge.pairs)} address pairs), first "
                    f"{_when(edge.first_seen)}, last {_when(edge.last_seen)}, e.g. {edge.example()}")
        if edge.guessed:
            evidence += "; direction guessed from port numbers: check it"
        if edge.rejected:
            evidence += f"; {edge.rejected} of them were rejected where they were seen"
        rules.append({"name": name, "from": names[edge.client], "to": names[edge.server],
                      "services": [edge.service], "action": "allow", "description": evidence})
    return {"apiVersion": "microseg/v1",
            "description": (f"Proposed by `microseg discover --by {','.join(app.by)}` from {app.records} observed "
                            "flow records: review every rule before adding this file to the policy."),
            "groups": groups, "rules": rules}


def by_labels(text: str) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    if not keys:
        raise ValueError("--by needs at least one label key, e.g. app,tier,env")
    return keys


def top_talkers(app: AppMap, limit: int = 10) -> list[tuple[str, int]]:
    """Nodes by the records of the edges they are part of."""
    totals: dict[str, int] = defaultdict(int)
    for edge in app.edges:
        totals[edge.client] += edge.records
        if edge.server != edge.client:
            totals[edge.server] += edge.records
    return sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
