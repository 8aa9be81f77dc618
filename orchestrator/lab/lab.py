"""The lab: build, inspect, use and tear down a disposable network of Linux hosts in network namespaces."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.lab import network, ssh
from orchestrator.lab.plan import DEFAULT_PORTS, SSH_PORT, LabHost, LabPlan, check_prefix, nornir_endpoints, plan_lab
from orchestrator.lab.probe import ProbeResult
from orchestrator.lab.state import LabState, load_state, locked, save_state
from orchestrator.lab.status import LabStatus, Serving, lab_status
from orchestrator.lab.system import (
    LabError,
    ProcessRecord,
    alive,
    check_tools,
    netns_inode,
    pid_netns_inode,
    pids_in_netns,
    require_root,
    run_parallel,
    start_process,
    start_time,
    stop_processes,
)

if TYPE_CHECKING:
    from orchestrator.inventory.scope import Inventory

READY_TIMEOUT = 30.0  # moto and the cloud SDK models take a few seconds to load on a small machine
CLOUD_CA = "azure-ca.pem"
# a rule that uses conntrack: the kernel tracks a namespace's connections only once something needs it
TRACK_CONNECTIONS = ("add table inet observe; add chain inet observe track { type filter hook input priority -300; "
                     "ct state new counter; }")
RELAY_PORT = 9995  # inside the switch namespace: softflowd → the relay
Progress = Callable[[str], None]


def default_lab_dir() -> Path:
    """Where the lab keeps keys, configurations, logs and its state: ``.microseg/lab`` in the current directory."""
    return Path.cwd() / ".microseg" / "lab"


def plan_lab_from_directory(directory: Path, inventory: Inventory, prefix: str = "mseg",
                            ports: Iterable[int] = DEFAULT_PORTS) -> LabPlan:
    """The lab plan of an inventory directory: SSH endpoints are its Nornir hosts' hostname and port."""
    # loaded here, not at import: probes and listeners import this package and must start fast
    from orchestrator.inventory.inventory import load_nornir_inventory  # noqa: PLC0415

    return plan_lab(inventory, nornir_endpoints(load_nornir_inventory(directory).hosts), prefix=prefix, ports=ports)


def _quiet(message: str) -> None:
    """Progress sink that drops messages."""


class Lab:
    """A lab of network namespaces recorded in ``directory``; every name it creates starts with ``prefix``."""

    def __init__(self, directory: Path, prefix: str = "mseg") -> None:
        self.directory = Path(directory).absolute()
        self.prefix = check_prefix(prefix)

    @property
    def key_file(self) -> Path:
        """The private key that logs in as root on every point (``settings.key_file`` of the nftables driver)."""
        return self.directory / ssh.CLIENT_KEY

    @property
    def known_hosts(self) -> Path:
        """known_hosts naming every point's SSH endpoint with the lab's host key (written by :meth:`up`)."""
        return self.directory / ssh.KNOWN_HOSTS

    # ----------------------------------------------------------------------- lifecycle

    def up(self, plan: LabPlan, progress: Progress | None = None) -> LabStatus:
        """Build the lab of ``plan``; a healthy lab of the same plan is left as is, anything else is rebuilt."""
        say = progress or _quiet
        require_root()
        check_tools()
        if plan.prefix != self.prefix:
            raise LabError(f"the plan is for prefix {plan.prefix!r} but this lab's prefix is {self.prefix!r}")
        with locked(self.directory):
            state = load_state(self.directory)
            if state is not None:
                status = lab_status(state, self.prefix, str(self.directory))
                if state.plan == plan and status.healthy:
                    say("the lab is up and healthy: nothing to do")
                    return status
                say("tearing down the previous lab (" + ("another plan" if state.plan != plan else "not healthy") + ")")
                self._down(state)
            self._build(plan, say)
            return lab_status(load_state(self.directory), self.prefix, str(self.directory))

    def down(self) -> list[str]:
        """Remove every process and namespace the lab recorded (and nothing else); return what was removed."""
        require_root()
        with locked(self.directory):
            state = load_state(self.directory)
            return [] if state is None else self._down(state)

    def status(self) -> LabStatus:
        """Per host: namespace present, sshd / listener / forwarder serving; ``healthy`` when all are."""
        return lab_status(load_state(self.directory), self.prefix, str(self.directory))

    def _build(self, plan: LabPlan, say: Progress) -> None:
        missing = [m for m in ("moto", "trustme") if plan.clouds and importlib.util.find_spec(m) is None]
        if missing:
            raise LabError(f"the lab's cloud API simulators need {' and '.join(missing)} (the `lab` extra): "
                           "pip install 'microseg[lab]'")
        network.check_free(plan)
        _check_endpoints_free(plan)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.directory / "logs").mkdir(exist_ok=True)
        ssh.ensure_keys(self.directory)
        state = LabState(plan=plan)
        save_state(self.directory, state)

        def record(name: str, inode: int) -> None:
            state.namespaces[name] = inode
            save_state(self.directory, state)

        say(f"creating {len(plan.hosts) + 1} network namespaces ({plan.prefix}-*)")
        network.create_namespaces(plan, record)
        say(f"wiring {len(plan.hosts)} hosts to the bridge in {plan.switch}")
        network.wire(plan)
        say(f"starting sshd, listeners (ports {', '.join(map(str, plan.ports))}) and SSH forwarders")
        for host in plan.points:
            for start in (self._start_sshd, self._start_listener, self._start_forwarder):
                state.processes.append(start(state, host))
                save_state(self.directory, state)
        if plan.devices:
            say(f"starting {len(plan.devices)} switch simulators (SSH device test doubles: "
                f"{', '.join(f'{d.name} {d.personality}' for d in plan.devices)})")
            state.processes.append(self._start_simulators(state))
            save_state(self.directory, state)
        if plan.clouds:
            say(f"starting {len(plan.clouds)} cloud API simulators (test doubles: "
                f"{', '.join(f'{c.name} {c.kind} on {c.endpoint}' for c in plan.clouds)})")
            state.processes.append(self._start_clouds(state))
            save_state(self.directory, state)
        if plan.netflow and shutil.which("softflowd"):
            say(f"starting softflowd on the bridge, exporting IPFIX to {plan.netflow[0]}:{plan.netflow[1]}")
            state.processes.append(self._start_flow_relay(state))
            save_state(self.directory, state)
            state.processes.append(self._start_softflowd(state))
            save_state(self.directory, state)
        ssh.write_known_hosts(self.directory, plan.points, plan.devices)
        self._wait_ready(state, state.processes)
        say("the lab is up")

    def _down(self, state: LabState) -> list[str]:
        removed: list[str] = []
        mine = {p.pid: p for p in state.processes if alive(p)}
        stop_processes({pid: p.start for pid, p in mine.items()})
        removed += [f"{p.kind} of {p.host} (pid {pid})" for pid, p in mine.items()]
        ours = {n: i for n, i in state.namespaces.items() if netns_inode(n) == i}
        removed += [f"namespace {n}: left alone, it is no longer the one the lab created"
                    for n in state.namespaces if n not in ours and netns_inode(n) is not None]
        leftovers = {pid: start for pid in pids_in_netns(ours.values()) if (start := start_time(pid)) is not None}
        stop_processes(leftovers, group=False)  # e.g. SSH sessions still open in a point's namespace
        removed += [f"process {pid} left in a lab namespace" for pid in leftovers]
        gone = network.delete_namespaces(list(ours))
        removed += [f"namespace {n}" for n in gone]
        remaining = [n for n in ours if n not in gone]
        if remaining:
            state.namespaces = {n: ours[n] for n in remaining}
            state.processes = []
            save_state(self.directory, state)
            raise LabError(f"cannot delete namespaces {', '.join(remaining)}; still recorded in {self.directory}")
        save_state(self.directory, None)
        return removed

    # ----------------------------------------------------------------------- processes

    def _log(self, host: str, kind: str) -> Path:
        return self.directory / "logs" / f"{host}.{kind}.log"

    def _start_sshd(self, state: LabState, host: LabHost, extra_config: str = "") -> ProcessRecord:
        config = ssh.write_sshd_config(self.directory, host.name, extra_config)
        log = self._log(host.name, "sshd")
        argv = ["ip", "netns", "exec", host.namespace, *ssh.sshd_command(config, log)]
        return start_process(argv, kind="sshd", host=host.name, marker=str(config), log=log,
                             netns=state.namespaces[host.namespace])

    def _start_listener(self, state: LabState, host: LabHost) -> ProcessRecord:
        marker = f"orchestrator.lab.listener --name {host.name} "
        argv = ["ip", "netns", "exec", host.namespace, sys.executable, "-m", *marker.split(),
                *map(str, state.plan.ports)]
        return start_process(argv, kind="listener", host=host.name, marker=marker,
                             log=self._log(host.name, "listener"), netns=state.namespaces[host.namespace])

    def _start_forwarder(self, state: LabState, host: LabHost) -> ProcessRecord:
        """socat in the root namespace: SSH clients of the loopback endpoint reach the point from mgmt."""
        assert host.ssh is not None
        address, port = host.ssh
        mgmt = next(h for h in state.plan.hosts if h.role == "mgmt")
        listen = f"TCP-LISTEN:{port},bind={address},fork,reuseaddr"
        target = f'EXEC:"ip netns exec {mgmt.namespace} socat STDIO TCP:{host.ipv4[0]}:{SSH_PORT}"'
        return start_process(["socat", listen, target], kind="forwarder", host=host.name, marker=listen,
                             log=self._log(host.name, "forwarder"), netns=pid_netns_inode(os.getpid()))

    def _start_simulators(self, state: LabState) -> ProcessRecord:
        """One process serving every switch point's simulator on its loopback endpoint, the lab key authorized,
        presenting the lab's host key (so the lab's known_hosts names them too)."""
        public_key = (self.directory / (ssh.CLIENT_KEY + ".pub")).read_text().strip()
        spec = [{"name": d.name, "personality": d.personality, "hostname": d.name, "host": d.address, "port": d.port,
                 "username": "microseg", "password": "", "authorized_keys": [public_key],
                 "interfaces": list(d.interfaces), "boot_config": [], "minute_seconds": 60.0}
                for d in state.plan.devices]
        path = self.directory / "simulators.json"
        path.write_text(json.dumps(spec, indent=1))
        marker = f"simulators.netdev fleet {path}"
        argv = [sys.executable, "-m", *marker.split(), "--host-key", str(self.directory / ssh.HOST_KEY)]
        return start_process(argv, kind="simulators", host="switches",
                             marker=marker, log=self._log("switches", "simulators"), netns=pid_netns_inode(os.getpid()))

    def _start_flow_relay(self, state: LabState) -> ProcessRecord:
        """The relay from softflowd (inside the switch namespace) to the NetFlow address in the host's namespace."""
        assert state.plan.netflow is not None
        host, port = state.plan.netflow
        forward = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        marker = (f"orchestrator.lab.flowrelay --netns {state.plan.switch} --bridge {network.BRIDGE} "
                  f"--listen {RELAY_PORT} --forward {forward}")
        return start_process([sys.executable, "-m", *marker.split()], kind="flowrelay", host="netflow",
                             marker=marker, log=self._log("netflow", "relay"), netns=pid_netns_inode(os.getpid()))

    def _start_softflowd(self, state: LabState) -> ProcessRecord:
        """softflowd on the bridge: every host's traffic as IPFIX, flows expired within seconds (the lab is small)."""
        control = self.directory / "softflowd.ctl"
        marker = f"-c {control}"
        argv = ["ip", "netns", "exec", state.plan.switch, "softflowd", "-d", "-i", network.BRIDGE, "-n",
                f"127.0.0.1:{RELAY_PORT}", "-v", "10", "-6", "-t", "maxlife=30", "-t", "expint=5", "-t", "tcp.fin=5",
                "-t", "tcp.rst=5", "-t", "udp=20", "-t", "icmp=20", "-p", str(self.directory / "softflowd.pid"),
                *marker.split()]
        return start_process(argv, kind="softflowd", host="netflow", marker=marker,
                             log=self._log("netflow", "softflowd"), netns=state.namespaces[state.plan.switch])

    @property
    def ca_file(self) -> Path:
        """The CA of the HTTPS cloud simulators (Azure's ARM): the worked example's ``ca_bundle``."""
        return self.directory / CLOUD_CA

    def _start_clouds(self, state: LabState) -> ProcessRecord:
        """One process serving every cloud point's API simulator (moto, ARM, Compute) on its loopback endpoint."""
        endpoints: dict[tuple[str, str, int], list[dict[str, object]]] = {}
        for cloud in state.plan.clouds:
            endpoints.setdefault((cloud.kind, cloud.address, cloud.port), []).append(dict(cloud.seed))
        spec = {"ca_file": str(self.ca_file),
                "endpoints": [{"kind": kind, "address": address, "port": port, "points": seeds}
                              for (kind, address, port), seeds in endpoints.items()]}
        path = self.directory / "clouds.json"
        path.write_text(json.dumps(spec, indent=1))
        marker = f"simulators.clouds {path}"
        return start_process([sys.executable, "-m", *marker.split()], kind="clouds", host="clouds", marker=marker,
                             log=self._log("clouds", "simulators"), netns=pid_netns_inode(os.getpid()))

    def _wait_ready(self, state: LabState, records: Sequence[ProcessRecord]) -> None:
        """Wait until every process listens on its ports; one that dies or stays deaf raises LabError."""
        deadline = time.monotonic() + READY_TIMEOUT
        pending = list(records)
        while pending:
            dead = [r for r in pending if start_time(r.pid) != r.start]
            if dead or time.monotonic() > deadline:
                raise LabError("lab processes " + ("died" if dead else "did not start listening") + ": " +
                               "; ".join(_describe(r) for r in (dead or pending)) +
                               f" (the partial lab is recorded in {self.directory}: `down` removes it)")
            serving = Serving(state.plan)
            pending = [r for r in pending if not serving(r)]
            if pending:
                time.sleep(0.02)

    def restart_sshd(self, host: str, extra_config: str = "") -> None:
        """Restart sshd of point ``host``, with ``extra_config`` lines (e.g. a ForceCommand) or the plain config."""
        require_root()
        with locked(self.directory):
            state = self._state()
            point = state.plan.host(host)
            if point.role != "point":
                raise LabError(f"{host} is a {point.role}, not a point: it runs no sshd")
            old = state.process("sshd", host)
            if old is not None and alive(old):
                stop_processes({old.pid: old.start})
            record = self._start_sshd(state, point, extra_config)
            state.replace(record)
            save_state(self.directory, state)
            self._wait_ready(state, [record])

    # ----------------------------------------------------------------------- using the lab

    def _state(self) -> LabState:
        state = load_state(self.directory)
        if state is None:
            raise LabError(f"no lab is up in {self.directory} (run `up` first)")
        return state

    def _namespace(self, state: LabState, host: str) -> str:
        namespace = state.plan.host(host).namespace
        if netns_inode(namespace) != state.namespaces.get(namespace):
            raise LabError(f"the namespace of lab host {host} ({namespace}) is gone; run `up` again")
        return namespace

    def exec(self, host: str, command: list[str], input: str | None = None,
             timeout: float = 10) -> subprocess.CompletedProcess[str]:
        """Run ``command`` inside the namespace of ``host`` (output captured as text; the exit code is not checked)."""
        namespace = self._namespace(self._state(), host)
        try:
            return subprocess.run(["ip", "netns", "exec", namespace, *command], input=input, capture_output=True,
                                  text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"{' '.join(command)} on lab host {host} did not finish within {timeout:g} s") from exc

    def track_connections(self, host: str) -> None:
        """Make ``host``'s kernel track its connections (a table ``inet observe`` with a conntrack rule), as a
        host with Docker, firewalld or a stateful ruleset does: its conntrack table then lists them."""
        done = self.exec(host, ["nft", TRACK_CONNECTIONS])
        if done.returncode != 0:
            raise LabError(f"cannot make {host} track connections: {done.stderr.strip()}")

    def probe(self, src: str, dst: str, port: int, timeout: float = 1.0) -> ProbeResult:
        """A real TCP connect from the namespace of host ``src`` to ``dst`` (an address or a lab host) on ``port``."""
        return self.probe_many([(src, dst, port)], timeout)[0]

    def probe_many(self, checks: Sequence[tuple[str, str, int]], timeout: float = 1.0) -> list[ProbeResult]:
        """Many probes: one process per source namespace, all of them (and their checks) running concurrently."""
        state = self._state()
        by_source: dict[str, list[int]] = {}
        for index, (src, _, _) in enumerate(checks):
            by_source.setdefault(src, []).append(index)
        targets = [(c[0], _address(state.plan, c[1]), c[2]) for c in checks]
        sources = list(by_source)
        jobs = [(["ip", "netns", "exec", self._namespace(state, src), sys.executable, "-m", "orchestrator.lab.probe",
                  "--timeout", str(timeout), *(_target(targets[i][1], targets[i][2]) for i in by_source[src])], None)
                for src in sources]
        results: list[ProbeResult | None] = [None] * len(checks)
        for src, done in zip(sources, run_parallel(jobs, timeout=timeout + 30), strict=True):
            if done.returncode != 0:
                raise LabError(f"probe from {src} failed ({done.returncode}): {done.stderr.strip()}")
            for index, found in zip(by_source[src], _parse(done.stdout, src), strict=True):
                results[index] = ProbeResult(ok=bool(found["ok"]), detail=str(found["detail"]), src=src,
                                             dst=targets[index][1], port=targets[index][2],
                                             banner=str(found.get("banner", "")))
        return [r for r in results if r is not None]


def _address(plan: LabPlan, dst: str) -> str:
    """``dst`` itself, or the first address of the lab host called ``dst``."""
    host = next((h for h in plan.hosts if h.name == dst), None)
    return host.addresses[0] if host is not None else dst


def _target(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _parse(out: str, src: str) -> list[dict[str, object]]:
    try:
        found = json.loads(out)
    except ValueError as exc:
        raise LabError(f"probe from {src} printed no JSON: {out[:200]!r}") from exc
    if not isinstance(found, list):
        raise LabError(f"probe from {src} printed {out[:200]!r}, not a list")
    return found


def _describe(record: ProcessRecord) -> str:
    try:
        tail = Path(record.log).read_text(errors="replace").strip().splitlines()[-3:]
    except OSError:
        tail = []
    return f"{record.kind} of {record.host} (pid {record.pid}{'; log: ' + ' | '.join(tail) if tail else ''})"


def _check_endpoints_free(plan: LabPlan) -> None:
    """Every endpoint the lab serves in the root namespace must be free (another lab may hold it)."""
    wanted = [(h.name, h.ssh) for h in plan.points if h.ssh is not None]
    wanted += [(d.name, (d.address, d.port)) for d in plan.devices]
    wanted += [(c.name, (c.address, c.port)) for c in plan.clouds]
    busy = []
    for endpoint, name in {e: n for n, e in reversed(wanted)}.items():  # two points may share one cloud endpoint
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(endpoint)
            except OSError as exc:
                busy.append(f"{endpoint[0]}:{endpoint[1]} ({name}: {exc.strerror})")
    if busy:
        raise LabError(f"lab endpoints are in use: {', '.join(busy)} (another lab up? `microseg lab down`, or give "
                       "this lab other ports)")
