"""The lab's topology, derived purely from an inventory: namespaces, addresses and SSH endpoints."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import urlsplit

from orchestrator.lab.system import LabError
from orchestrator.model.errors import Diagnostic

if TYPE_CHECKING:
    from orchestrator.inventory.scope import EnforcementPoint, Inventory

Role = Literal["point", "client", "internet", "mgmt"]
LAB_DRIVER = "nftables"
SIMULATED_DRIVERS = ("ios", "nxos", "eos", "junos")  # switch points: served by the device simulators (test doubles)
# cloud points whose API endpoint is on loopback: served by the cloud simulators (test doubles), as
# driver -> (kind, the setting naming the endpoint, its scheme, the settings the simulator seeds from)
CLOUD_DRIVERS: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "aws_sg": ("aws", "endpoint_url", "http", ("region", "vpc_id")),
    "azure_nsg": ("azure", "base_url", "https", ("subscription_id", "resource_group", "location")),
    "gcp_firewall": ("gcp", "api_endpoint", "http", ("project", "network", "target_tags")),
}
DEFAULT_PORTS: tuple[int, ...] = (80, 443, 8443, 5432, 9100, 53)
# A public address, so the policy's `internet` group (which excludes documentation and other special ranges)
# matches it; it exists only inside the lab's Internet namespace, which has no way out.
INTERNET_ADDRESSES = ("81.2.69.142", "2a02:6b8::7")
SSH_PORT = 22
NETFLOW = ("127.0.0.1", 2055)  # the lab's bridge exports IPFIX here: `microseg collect netflow --listen 127.0.0.1:2055`
_PREFIX_RE = re.compile(r"[a-z][a-z0-9]{0,11}")


@dataclass(frozen=True)
class LabHost:
    """One network namespace of the lab with its addresses; points also have an SSH endpoint in the root namespace."""

    name: str
    namespace: str
    role: Role
    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...] = ()
    ssh: tuple[str, int] | None = None

    @property
    def addresses(self) -> tuple[str, ...]:
        return (*self.ipv4, *self.ipv6)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "namespace": self.namespace, "role": self.role, "ipv4": list(self.ipv4),
                "ipv6": list(self.ipv6), "ssh": list(self.ssh) if self.ssh else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabHost:
        ssh = data.get("ssh")
        return cls(name=str(data["name"]), namespace=str(data["namespace"]), role=cast(Role, data["role"]),
                   ipv4=tuple(data["ipv4"]), ipv6=tuple(data["ipv6"]),
                   ssh=(str(ssh[0]), int(ssh[1])) if ssh else None)


@dataclass(frozen=True)
class LabDevice:
    """A switch point of the inventory, served by an SSH device simulator on its loopback endpoint."""

    name: str
    personality: str
    address: str
    port: int
    interfaces: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "personality": self.personality, "address": self.address, "port": self.port,
                "interfaces": list(self.interfaces)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabDevice:
        return cls(str(data["name"]), str(data["personality"]), str(data["address"]), int(data["port"]),
                   tuple(data["interfaces"]))


@dataclass(frozen=True)
class LabCloud:
    """A cloud point of the inventory whose API endpoint is a loopback address: served by a cloud simulator,
    seeded with what the point needs (its VPC / resource group / project and its member workloads)."""

    name: str
    kind: str
    address: str
    port: int
    seed: Mapping[str, Any]

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "address": self.address, "port": self.port,
                "seed": dict(self.seed)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabCloud:
        return cls(str(data["name"]), str(data["kind"]), str(data["address"]), int(data["port"]), dict(data["seed"]))


@dataclass(frozen=True)
class LabPlan:
    """The whole lab: a switch namespace plus one namespace per host, and the service ports points listen on."""

    prefix: str
    hosts: tuple[LabHost, ...]
    ports: tuple[int, ...] = DEFAULT_PORTS
    devices: tuple[LabDevice, ...] = ()
    clouds: tuple[LabCloud, ...] = ()
    netflow: tuple[str, int] | None = None  # where softflowd on the bridge exports to (the host's namespace)

    @property
    def switch(self) -> str:
        """The namespace holding the bridge every host is attached to."""
        return f"{self.prefix}-sw"

    @property
    def points(self) -> tuple[LabHost, ...]:
        return tuple(h for h in self.hosts if h.role == "point")

    def host(self, name: str) -> LabHost:
        """The host called ``name``; an unknown name raises LabError listing the known ones."""
        for host in self.hosts:
            if host.name == name:
                return host
        raise LabError(f"the lab has no host {name!r} (hosts: {', '.join(h.name for h in self.hosts)})")

    def interfaces(self, index: int) -> tuple[str, str]:
        """(host end, bridge end) of the veth pair of host number ``index``: at most 15 characters each."""
        short = self.prefix[:10]
        return f"{short}h{index}", f"{short}b{index}"

    def to_dict(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "ports": list(self.ports), "hosts": [h.to_dict() for h in self.hosts],
                "devices": [d.to_dict() for d in self.devices], "clouds": [c.to_dict() for c in self.clouds],
                "netflow": list(self.netflow) if self.netflow else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabPlan:
        return cls(prefix=str(data["prefix"]), ports=tuple(int(p) for p in data["ports"]),
                   hosts=tuple(LabHost.from_dict(h) for h in data["hosts"]),
                   devices=tuple(LabDevice.from_dict(d) for d in data.get("devices", ())),
                   clouds=tuple(LabCloud.from_dict(c) for c in data.get("clouds", ())),
                   netflow=(str(data["netflow"][0]), int(data["netflow"][1])) if data.get("netflow") else None)


def check_prefix(prefix: str) -> str:
    """A lab prefix is short and plain (it starts namespace and interface names)."""
    if not _PREFIX_RE.fullmatch(prefix):  # the whole text: a "$" anchor would let "lab\n" through
        raise LabError(f"invalid lab prefix {prefix!r}: use 1-12 lowercase letters and digits, starting with a letter")
    return prefix


def nornir_endpoints(hosts: Mapping[str, Any]) -> dict[str, tuple[str, int]]:
    """``name -> (hostname, port)`` of Nornir hosts (``nornir_inventory.hosts``) that have a hostname."""
    return {name: (str(host.hostname), int(host.port or SSH_PORT))
            for name, host in hosts.items() if host.hostname is not None}


def _host_addresses(networks: Iterable[Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(IPv4, IPv6) host addresses among ``networks`` (/32 and /128 only)."""
    hosts = [str(n.network_address) for n in networks if n.prefixlen == n.max_prefixlen]
    return (tuple(a for a in hosts if ipaddress.ip_address(a).version == 4),
            tuple(a for a in hosts if ipaddress.ip_address(a).version == 6))


def _endpoint(point: EnforcementPoint, endpoints: Mapping[str, tuple[str, int]], problems: list[str]
              ) -> tuple[str, int] | None:
    endpoint = endpoints.get(point.name)
    if endpoint is None:
        problems.append(f"enforcement point {point.name!r} has no SSH endpoint (a Nornir hostname and port)")
        return None
    host, port = endpoint
    try:
        loopback = ipaddress.ip_address(host).version == 4 and ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback or not 0 < port < 65536:
        problems.append(f"enforcement point {point.name!r}: SSH endpoint {host}:{port} is not an IPv4 loopback "
                        "address and port (the lab only listens on 127.x in the root namespace)")
        return None
    return host, int(port)


def _point_host(point: EnforcementPoint, inventory: Inventory, prefix: str,
                endpoints: Mapping[str, tuple[str, int]], problems: list[str]) -> LabHost | None:
    ipv4, ipv6 = _host_addresses(inventory.protected_addresses(point).networks)
    if not ipv4:
        problems.append(f"enforcement point {point.name!r} protects no IPv4 host address: the lab has none to give it")
    endpoint = _endpoint(point, endpoints, problems)
    if not ipv4 or endpoint is None:
        return None
    return LabHost(point.name, f"{prefix}-{point.name}", "point", ipv4, ipv6, endpoint)


def _management_address(points: Iterable[EnforcementPoint], problems: list[str]) -> str | None:
    """The first IPv4 host address of the points' management sets: where the orchestrator's SSH comes from."""
    for point in points:
        ipv4, _ = _host_addresses(point.management.networks)
        if ipv4:
            return ipv4[0]
    problems.append("no nftables point has a management address (microseg.management, e.g. [10.0.0.10/32])")
    return None


def _check_unique(hosts: Iterable[LabHost], problems: list[str]) -> None:
    names: set[str] = {"sw"}
    owners: dict[str, str] = {}
    for host in hosts:
        if host.name in names:
            problems.append(f"two lab hosts are called {host.name!r} ('sw' is the switch)")
        names.add(host.name)
        for address in (*host.addresses, *((host.ssh[0] + f":{host.ssh[1]}",) if host.ssh else ())):
            if address in owners:
                problems.append(f"{address} is used by both {owners[address]!r} and {host.name!r}")
            owners[address] = host.name


def _check_ports(ports: tuple[int, ...]) -> list[str]:
    bad = [p for p in ports if not 0 < p < 65536 or p == SSH_PORT]
    problems = [f"invalid service ports {bad} (1-65535, and 22 is sshd's)"] if bad else []
    if len(set(ports)) != len(ports):
        problems.append(f"service ports are listed twice: {list(ports)}")
    return problems


def plan_lab(inventory: Inventory, endpoints: Mapping[str, tuple[str, int]], prefix: str = "mseg",
             ports: Iterable[int] = DEFAULT_PORTS, netflow: tuple[str, int] | None = NETFLOW) -> LabPlan:
    """The lab for ``inventory``: a namespace per nftables point, per unprotected workload, the Internet and mgmt.

    ``endpoints`` maps point names to the ``(hostname, port)`` their SSH forwarder listens on in the root
    namespace (:func:`nornir_endpoints` gives the Nornir inventory's; tests pass their own free ports).
    Every problem is reported at once in one LabError.
    """
    check_prefix(prefix)
    service_ports = tuple(ports)
    problems = _check_ports(service_ports)
    points = [p for p in inventory.points if p.driver == LAB_DRIVER]
    if not points:
        problems.append(f"the inventory has no {LAB_DRIVER} enforcement point: the lab has nothing to manage")
    hosts = [h for h in (_point_host(p, inventory, prefix, endpoints, problems) for p in points) if h is not None]
    taken = {a for h in hosts for a in h.addresses}
    for workload in inventory.workloads:
        ipv4, ipv6 = _host_addresses(workload.networks.networks)
        if not taken.intersection((*ipv4, *ipv6)):
            hosts.append(LabHost(workload.name, f"{prefix}-{workload.name}", "client", ipv4, ipv6))
    hosts.append(LabHost("internet", f"{prefix}-internet", "internet", INTERNET_ADDRESSES[:1],
                         INTERNET_ADDRESSES[1:]))
    mgmt = _management_address(points, problems)
    if mgmt is not None:
        hosts.append(LabHost("mgmt", f"{prefix}-mgmt", "mgmt", (mgmt,)))
    devices = _devices(inventory, endpoints, problems)
    clouds = _clouds(inventory, endpoints, problems)
    _check_unique(hosts, problems)
    taken_endpoints = {h.ssh for h in hosts if h.ssh}
    problems += [f"{d.name}: endpoint {d.address}:{d.port} is also a host's SSH endpoint" for d in devices
                 if (d.address, d.port) in taken_endpoints]
    taken_endpoints |= {(d.address, d.port) for d in devices}
    problems += [f"{c.name}: API endpoint {c.endpoint} is also a host's or switch's SSH endpoint" for c in clouds
                 if (c.address, c.port) in taken_endpoints]
    if problems:
        raise LabError(f"cannot plan the lab: {len(problems)} problem{'s' if len(problems) > 1 else ''}",
                       [Diagnostic(p, code="lab") for p in problems])
    return LabPlan(prefix=prefix, hosts=tuple(hosts), ports=service_ports, devices=devices, clouds=clouds,
                   netflow=netflow)


def _devices(inventory: Inventory, endpoints: Mapping[str, tuple[str, int]],
             problems: list[str]) -> tuple[LabDevice, ...]:
    """A simulated device per switch point (its SSH endpoint, the interfaces its ACLs are bound to)."""
    out = []
    for point in inventory.points:
        if point.driver not in SIMULATED_DRIVERS:
            continue
        endpoint = _endpoint(point, endpoints, problems)
        bindings = point.settings.get("bindings") or []
        interfaces = [str(b["interface"]) if isinstance(b, Mapping) else str(b) for b in bindings]
        if endpoint is not None:
            out.append(LabDevice(point.name, point.driver, endpoint[0], endpoint[1], tuple(interfaces)))
    return tuple(out)


def _clouds(inventory: Inventory, endpoints: Mapping[str, tuple[str, int]],
            problems: list[str]) -> tuple[LabCloud, ...]:
    """A simulated cloud API per cloud point whose endpoint setting is a loopback address (a point without one,
    or with a remote one, is a real account: the lab leaves it alone); ``endpoints`` may move it (tests)."""
    # loaded here: the lab's probes import this package and must start fast
    from orchestrator.inventory.scope import selected_workloads  # noqa: PLC0415

    out: list[LabCloud] = []
    kinds: dict[tuple[str, int], str] = {}
    for point in inventory.points:
        if point.driver not in CLOUD_DRIVERS:
            continue
        kind, key, scheme, keys = CLOUD_DRIVERS[point.driver]
        url = point.settings.get(key)
        if not isinstance(url, str):
            continue
        parts = urlsplit(url)
        try:
            host = ipaddress.ip_address(parts.hostname or "")
            port = parts.port
        except ValueError:
            continue  # a name or an unreadable port: not a lab endpoint
        if not host.is_loopback:
            continue
        if host.version != 4 or parts.scheme != scheme or port is None:
            problems.append(f"cloud point {point.name!r}: setting {key!r} {url!r} is on loopback but not "
                            f"{scheme}://127.x.x.x:PORT, where the lab serves its {kind} simulator")
            continue
        address, port = endpoints.get(point.name, (str(host), port))
        if kinds.setdefault((address, port), kind) != kind:
            problems.append(f"cloud point {point.name!r}: {address}:{port} is already the lab's "
                            f"{kinds[(address, port)]} endpoint")
            continue
        workloads = [{"name": w.name, "addresses": [str(a) for a in w.addresses],
                      "labels": {str(k): str(v) for k, v in w.labels.items()}}
                     for w in selected_workloads(point, inventory.workloads)]
        seed = {"point": point.name, **{k: point.settings[k] for k in keys if k in point.settings},
                "workloads": workloads}
        if kind == "gcp" and isinstance(seed.get("network"), str):
            seed["network"] = str(seed["network"]).rstrip("/").rsplit("/", 1)[-1]
        out.append(LabCloud(point.name, kind, address, port, seed))
    return tuple(out)
