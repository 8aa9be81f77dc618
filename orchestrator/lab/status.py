"""Health of a lab: per host, whether its namespace and processes are the ones the lab created and still serve."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.lab.plan import SSH_PORT, LabHost, LabPlan
from orchestrator.lab.state import LabState
from orchestrator.lab.system import ProcessRecord, alive, listening_ports, netns_inode


@dataclass(frozen=True)
class HostStatus:
    """One lab host: its namespace, and for points whether sshd, the listener and the SSH forwarder serve."""

    host: LabHost
    namespace_exists: bool
    sshd: bool | None = None
    listener: bool | None = None
    forwarder: bool | None = None

    @property
    def healthy(self) -> bool:
        return self.namespace_exists and all(v is not False for v in (self.sshd, self.listener, self.forwarder))

    def to_dict(self) -> dict[str, Any]:
        return {**self.host.to_dict(), "healthy": self.healthy, "namespace_exists": self.namespace_exists,
                "sshd": self.sshd, "listener": self.listener, "forwarder": self.forwarder}


@dataclass(frozen=True)
class LabStatus:
    """The lab as it is: ``up`` when something is recorded, ``healthy`` when all of it exists and serves."""

    prefix: str
    directory: str
    up: bool
    switch: bool = False
    hosts: tuple[HostStatus, ...] = ()
    ports: tuple[int, ...] = ()
    simulators: bool | None = None  # the switch simulators serve (None: the lab has no switch points)
    clouds: bool | None = None  # the cloud API simulators serve (None: the lab has no cloud points)
    netflow: bool | None = None  # softflowd on the bridge and its relay run (None: not started)
    plan: LabPlan | None = None

    @property
    def healthy(self) -> bool:
        return (self.up and self.switch and all(h.healthy for h in self.hosts) and self.simulators is not False
                and self.clouds is not False and self.netflow is not False)

    @property
    def problems(self) -> tuple[str, ...]:
        """One line per thing that is missing or not serving."""
        out = [] if self.switch or not self.up else ["the switch namespace is missing"]
        for status in self.hosts:
            if not status.namespace_exists:
                out.append(f"{status.host.name}: namespace {status.host.namespace} is missing")
            out += [f"{status.host.name}: {what} is not serving" for what, ok in
                    (("sshd", status.sshd), ("listener", status.listener), ("SSH forwarder", status.forwarder))
                    if ok is False]
        if self.simulators is False:
            out.append("the switch simulators are not serving")
        if self.clouds is False:
            out.append("the cloud API simulators are not serving")
        if self.netflow is False:
            out.append("the NetFlow exporter (softflowd on the bridge, or its relay) is not running")
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "directory": self.directory, "up": self.up, "healthy": self.healthy,
                "switch": self.switch, "ports": list(self.ports), "problems": list(self.problems),
                "simulators": self.simulators, "clouds": self.clouds, "netflow": self.netflow,
                "netflow_to": list(self.plan.netflow) if self.plan and self.plan.netflow else None,
                "hosts": [h.to_dict() for h in self.hosts],
                "devices": [d.to_dict() for d in self.plan.devices] if self.plan else [],
                "cloud_points": [{k: v for k, v in c.to_dict().items() if k != "seed"} | {"endpoint": c.endpoint}
                                 for c in self.plan.clouds] if self.plan else []}


def expected_ports(record: ProcessRecord, plan: LabPlan) -> set[int]:
    """The TCP ports a lab process must be listening on to count as serving."""
    if record.kind == "sshd":
        return {SSH_PORT}
    if record.kind == "listener":
        return set(plan.ports)
    if record.kind == "simulators":
        return {d.port for d in plan.devices}
    if record.kind == "clouds":
        return {c.port for c in plan.clouds}
    if record.kind in ("softflowd", "flowrelay"):
        return set()  # UDP senders: running is serving
    ssh = plan.host(record.host).ssh
    return {ssh[1]} if ssh else set()


class Serving:
    """Whether lab processes serve; reads each namespace's socket table once (reading one takes milliseconds)."""

    def __init__(self, plan: LabPlan) -> None:
        self.plan = plan
        self._tables: dict[tuple[int | None, str], set[int]] = {}

    def __call__(self, record: ProcessRecord | None) -> bool:
        """The recorded process is the one the lab started and listens on every port it should."""
        if record is None or not alive(record):
            return False
        # sshd and the listener listen on :: (dual-stack), the forwarders on a 127.x address
        table = "tcp" if record.kind in ("forwarder", "simulators", "clouds") else "tcp6"
        key = (record.netns, table)
        if key not in self._tables:
            self._tables[key] = listening_ports(record.pid, table)
        return expected_ports(record, self.plan) <= self._tables[key]


def lab_status(state: LabState | None, prefix: str, directory: str) -> LabStatus:
    """The status of the recorded lab (a lab with nothing recorded is not up)."""
    if state is None:
        return LabStatus(prefix=prefix, directory=directory, up=False)

    def exists(namespace: str) -> bool:
        inode = netns_inode(namespace)
        return inode is not None and state.namespaces.get(namespace) == inode

    plan = state.plan
    serving = Serving(plan)
    hosts = []
    for host in plan.hosts:
        point = host.role == "point"
        hosts.append(HostStatus(
            host=host, namespace_exists=exists(host.namespace),
            sshd=serving(state.process("sshd", host.name)) if point else None,
            listener=serving(state.process("listener", host.name)) if point else None,
            forwarder=serving(state.process("forwarder", host.name)) if point else None))
    simulators = serving(state.process("simulators", "switches")) if plan.devices else None
    clouds = serving(state.process("clouds", "clouds")) if plan.clouds else None
    started = [state.process(kind, "netflow") for kind in ("softflowd", "flowrelay")]
    netflow = all(serving(r) for r in started) if any(started) else None
    return LabStatus(prefix=plan.prefix, directory=directory, up=True, switch=exists(plan.switch),
                     hosts=tuple(hosts), ports=plan.ports, simulators=simulators, clouds=clouds, netflow=netflow,
                     plan=plan)
