"""Switch benchmark: plan and apply over N simulated devices (IOS, NX-OS, EOS, Junos), and the lines a one-rule
change sends to a 2,000-entry ACL.

The devices are the SSH device simulators (test doubles) of ``simulators/netdev``, all in one separate
process on 127.0.0.1 (``python -m simulators.netdev fleet``), so their CPU is not the engine's; the
engine and the drivers run unmodified, through netmiko over real SSH.  Measured:

* plan and apply wall time over N devices with W workers (run-level transaction, verify, confirm);
* per device: apply wall / N, and the framework overhead per host — a serial plan of every device minus the
  time spent inside the device session (SSH round trips);
* a 2,000-entry ACL on one device per platform: the lines a one-rule insert sends, and its apply time;
* a point's fetch on a device that also holds someone else's 10,000-entry ACL against one that holds none
  (the owned ACLs are listed by name), beside reading the whole listings.

    .venv/bin/python benchmarks/switches.py                     # 200 devices, 50 workers, 2,000 entries
    .venv/bin/python benchmarks/switches.py --policy mesh --entries 0   # every switch carries every peer
    .venv/bin/python benchmarks/switches.py --devices 40 --entries 500
    .venv/bin/python benchmarks/switches.py --only-foreign       # fetch cost of a 10,000-entry foreign ACL
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from contextlib import ExitStack
from datetime import date
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drivers.netacl import transport as cli_transport
from drivers.testing import plan_and_apply
from orchestrator.engine.engine import Actor, Engine, EngineOptions
from orchestrator.engine.project import load_project
from orchestrator.engine.transaction import ApplyOptions, apply_plan
from orchestrator.inventory.inventory import load_nornir_inventory
from orchestrator.model.driver import Connection, PointContext
from orchestrator.model.rules import Action, AddressSet, Direction, Mode, Ordering, Rule, Ruleset
from orchestrator.store import open_store
from simulators.netdev.eapi import serving_eapi
from simulators.netdev.server import DeviceSimulator
from tests.netdev_kit import DRIVERS

PLATFORMS = ("ios", "nxos", "eos", "junos")
INTERFACE = {"ios": "Vlan100", "nxos": "Vlan100", "eos": "Vlan100", "junos": "irb.100"}
MESH_POLICY = {
    "apiVersion": "microseg/v1",
    "defaults": {"action": "deny"},
    "groups": {"web": {"selector": {"tier": "web"}}, "db": {"selector": {"tier": "db"}},
               "mgmt": {"cidrs": ["10.0.0.10/32"]}, "all": {"groups": ["web", "db"]}},
    "rules": [
        {"name": "mgmt-ssh", "from": "mgmt", "to": "all", "services": ["tcp/22"], "action": "allow"},
        {"name": "web-to-db", "from": "web", "to": "db", "services": ["tcp/5432"], "action": "allow"},
        {"name": "web-in", "from": "mgmt", "to": "web", "services": ["tcp/443"], "action": "allow"},
    ],
}


class Fleet:
    """The simulator fleet in its own process; stopped by PID."""

    def __init__(self, directory: Path, devices: int, spec: list[dict[str, Any]] | None = None, *,
                 eapi: bool = False) -> None:
        spec = spec or [{"name": f"sw-{i:03d}", "personality": PLATFORMS[i % 4], "hostname": f"sw-{i:03d}", "port": 0,
                         "username": "admin", "password": "admin", "interfaces": [INTERFACE[PLATFORMS[i % 4]]],
                         "minute_seconds": 60.0} for i in range(devices)]
        if eapi:  # the EOS switches answer eAPI too (their CAs written beside the spec)
            for entry in spec:
                if entry["personality"] == "eos":
                    entry["eapi_ca"] = str(directory / f"{entry['name']}-ca.pem")
        path = directory / "fleet.json"
        path.write_text(json.dumps(spec))
        root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.process = subprocess.Popen([sys.executable, "-m", "simulators.netdev", "fleet", str(path)],
                                        stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
        assert self.process.stdout is not None
        self.ports: dict[str, int] = json.loads(self.process.stdout.readline())
        self.eapi_ports: dict[str, int] = json.loads(self.process.stdout.readline()) if eapi else {}
        self.eapi_cas = {entry["name"]: entry["eapi_ca"] for entry in spec if entry.get("eapi_ca")}

    def stop(self) -> None:
        os.kill(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)


def site_policy(devices: int) -> dict[str, Any]:
    """Per site (one switch each): its web tier reaches its db tier; management reaches everything."""
    groups: dict[str, Any] = {"mgmt": {"cidrs": ["10.0.0.10/32"]}, "all": {"selector": {"bench": "yes"}}}
    rules: list[dict[str, Any]] = [
        {"name": "mgmt-ssh", "from": "mgmt", "to": "all", "services": ["tcp/22"], "action": "allow"}]
    for i in range(devices):
        groups[f"web-{i}"] = {"selector": {"site": f"s{i}", "tier": "web"}}
        groups[f"db-{i}"] = {"selector": {"site": f"s{i}", "tier": "db"}}
        rules.append({"name": f"site-{i}", "from": f"web-{i}", "to": f"db-{i}", "services": ["tcp/5432"],
                      "action": "allow"})
    return {"apiVersion": "microseg/v1", "defaults": {"action": "deny"}, "groups": groups, "rules": rules}


def estate(directory: Path, ports: dict[str, int], policy: str, fleet: Fleet | None = None) -> tuple[Path, Path]:
    """An inventory (one switch point per device, a /24 each with a web and a db workload) and a policy:
    ``site`` (each switch carries its own site's rules: small ACLs) or ``mesh`` (every web may reach every db:
    every switch carries an entry per peer, ~1,600 lines per device at 200 devices).  With a ``fleet`` that
    serves eAPI, EOS and Junos points use ``transport: napalm`` (eAPI; NETCONF on the SSH port)."""
    inv, pol = directory / "inventory", directory / "policies"
    inv.mkdir()
    pol.mkdir()
    hosts, workloads = {}, []
    for i, (name, port) in enumerate(sorted(ports.items())):
        subnet = ipaddress.IPv4Network(f"10.{100 + i // 250}.{i % 250}.0/24")
        platform = PLATFORMS[i % 4]
        settings: dict[str, Any] = {"bindings": [{"interface": INTERFACE[platform]}]}
        if fleet is not None and platform == "eos":
            settings.update(transport="napalm", eapi_port=fleet.eapi_ports[name], eapi_ca_file=fleet.eapi_cas[name])
        elif fleet is not None and platform == "junos":
            settings.update(transport="napalm", netconf_port=port)
        hosts[name] = {"hostname": "127.0.0.1", "port": port, "groups": [platform], "data": {"microseg": {
            "protects": {"subnets": [str(subnet)]}, "settings": settings}}}
        for offset, tier in ((11, "web"), (12, "db")):
            workloads.append({"name": f"{name}-{tier}", "addresses": [str(subnet.network_address + offset)],
                              "labels": {"tier": tier, "site": f"s{i}", "bench": "yes"}})
    acl = {"ordering": "first_match", "stateful": False, "max_prefixes_per_rule": 1, "max_port_ranges_per_rule": 1,
           "mixed_families_per_rule": False}
    groups = {p: {"platform": p, "username": "admin", "password": "admin", "data": {"microseg": {
        "driver": p, "capabilities": acl, "settings": {"confirm_minutes": 5, "management_targets": [],
                                                       "known_hosts": str(directory / "known_hosts")}}}}
        for p in PLATFORMS}
    defaults = {"data": {"microseg": {"directions": ["ingress", "egress"], "management": ["10.0.0.10/32"]}}}
    for file, data in (("hosts.yaml", hosts), ("groups.yaml", groups), ("defaults.yaml", defaults),
                       ("workloads.yaml", {"workloads": workloads}),
                       ("sources.yaml", {"workload_sources": [{"type": "static", "path": "workloads.yaml"}]})):
        (inv / file).write_text(yaml.safe_dump(data, sort_keys=False))
    chosen = MESH_POLICY if policy == "mesh" else site_policy(len(ports))
    (pol / "policy.yaml").write_text(yaml.safe_dump(chosen, sort_keys=False))
    return inv, pol


class SessionClock:
    """Time spent inside device sessions (netmiko round trips), per thread."""

    METHODS = ("show", "exec", "configure")

    def __init__(self) -> None:
        self.by_thread: dict[int, float] = defaultdict(float)
        self._originals = {m: getattr(cli_transport.CliTransport, m) for m in self.METHODS}
        for method, original in self._originals.items():
            setattr(cli_transport.CliTransport, method, self._timed(original))

    def _timed(self, original: Any) -> Any:
        def timed(transport: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(transport, *args, **kwargs)
            finally:
                self.by_thread[threading.get_ident()] += time.perf_counter() - started
        return timed

    def restore(self) -> None:
        for method, original in self._originals.items():
            setattr(cli_transport.CliTransport, method, original)


def run_fleet(devices: int, workers: int, policy: str, transport: str = "cli") -> dict[str, float]:
    """Plan and apply the estate on a fleet of simulators; ``transport="napalm"``: EOS over eAPI and Junos over
    NETCONF through napalm (IOS and NX-OS over SSH either way)."""
    with tempfile.TemporaryDirectory(prefix="msbench-sw-") as tmp:
        directory = Path(tmp)
        started = time.perf_counter()
        fleet = Fleet(directory, devices, eapi=transport == "napalm")
        fleet_up = time.perf_counter() - started
        clock = SessionClock()
        try:
            inv, pol = estate(directory, fleet.ports, policy, fleet if transport == "napalm" else None)
            project = load_project(pol, inv, today=date.today())
            options = EngineOptions(workers=workers, timeout=60)
            store = open_store(f"sqlite:///{directory}/state.db")
            with Engine(project, load_nornir_inventory(inv), store, Actor("bench"), options, owns_store=True) as eng:
                names = sorted(eng.compilation().points)
                started = time.perf_counter()
                plan = eng.plan(names)
                plan_wall = time.perf_counter() - started
                assert not plan.failures, plan.failures
                lines = sum(len(p.change.commands) for p in plan.changes)
                started = time.perf_counter()
                result = apply_plan(eng, plan, ApplyOptions(), {})
                apply_wall = time.perf_counter() - started
                assert result.status == "ok", result.to_dict()
                totals, overheads = [], []
                for name in names:  # serial, so each task's session time is its own
                    clock.by_thread.clear()
                    started = time.perf_counter()
                    assert eng.plan_point(name).empty
                    total = time.perf_counter() - started
                    totals.append(total)
                    overheads.append(total - sum(clock.by_thread.values()))
        finally:
            clock.restore()
            fleet.stop()
    return {"devices": devices, "workers": workers, "fleet_up_s": fleet_up, "plan_s": plan_wall,
            "apply_s": apply_wall, "apply_per_device_ms": apply_wall / devices * 1000, "config_lines": lines,
            "serial_plan_task_ms": statistics.mean(totals) * 1000,
            "overhead_per_host_ms": statistics.mean(overheads) * 1000}


def big_acl(platform: str, entries: int, transport: str = "cli") -> dict[str, Any]:
    """One device, ``entries`` in its ingress ACL, then one rule inserted in the middle (over SSH, or with
    ``transport="napalm"`` through napalm: EOS over the simulator's eAPI, Junos over its NETCONF subsystem)."""
    host = AddressSet.of(["10.30.1.0/24"])
    body = [Rule(Action.PERMIT, Direction.INGRESS, 6, AddressSet.of([f"{ipaddress.IPv4Address('100.64.0.0') + i}/32"]),
                 host, dst_ports=((443, 443),)) for i in range(entries)]
    extra = Rule(Action.PERMIT, Direction.INGRESS, 6, AddressSet.of(["10.30.2.0/24"]), host, dst_ports=((8080, 8080),))

    def ruleset(rules: list[Rule]) -> Ruleset:
        return Ruleset("big", Ordering.FIRST_MATCH, Action.DENY, tuple(rules), Mode.ENFORCE, stateful=False)

    with DeviceSimulator(platform, "big", interfaces=[INTERFACE[platform]]) as sim, ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        settings: dict[str, Any] = {"bindings": [INTERFACE[platform]], "families": [4],
                                    "known_hosts": str(scratch / "known_hosts")}  # this run's keys only
        if transport == "napalm" and platform == "eos":
            port = stack.enter_context(serving_eapi(sim, scratch / "ca.pem"))
            settings.update(transport="napalm", eapi_port=port, eapi_ca_file=str(scratch / "ca.pem"))
        elif transport == "napalm":
            settings.update(transport="napalm", netconf_port=sim.port)  # the `netconf` SSH subsystem
        context = PointContext("big", platform, Connection("127.0.0.1", sim.port, "admin", "admin", platform),
                               settings, timeout=60.0, members=host)
        driver = DRIVERS[platform](context)
        started = time.perf_counter()
        plan_and_apply(driver, ruleset(body))
        install = time.perf_counter() - started
        sim.counters.config_lines = 0
        started = time.perf_counter()
        change, report = plan_and_apply(driver, ruleset([*body[: entries // 2], extra, *body[entries // 2:]]))
        one = time.perf_counter() - started
        assert report is not None
        driver.close()
        return {"platform": platform, "transport": transport, "entries": entries, "install_s": install,
                "one_rule_lines": len(change.commands),
                "one_rule_device_config_lines": sim.counters.config_lines, "one_rule_plan_apply_s": one}


FOREIGN_LINE = {"ios": "{seq} permit tcp any host {address} eq 443", "nxos": "{seq} permit tcp any {address}/32 eq 443",
                "eos": "{seq} permit tcp any host {address} eq https"}


def foreign_fetch(entries: int, repeat: int = 5) -> list[dict[str, Any]]:
    """Per Cisco-like platform: a point's fetch on a device without foreign ACLs and on one whose foreign ACL
    holds ``entries`` entries (devices in their own process), against reading the whole listings as before."""
    spec: list[dict[str, Any]] = []
    for platform, line in FOREIGN_LINE.items():
        for size in (0, entries):
            lines = [line.format(seq=10 * (i + 1), address=ipaddress.IPv4Address("100.64.0.0") + i)
                     for i in range(size)]
            boot = [("ip access-list extended FOREIGN" if platform == "ios" else "ip access-list FOREIGN"), *lines,
                    "exit"] if size else []
            spec.append({"name": f"{platform}-{size}", "personality": platform, "port": 0, "username": "admin",
                         "password": "admin", "interfaces": [INTERFACE[platform]], "boot_config": boot})
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        fleet = Fleet(Path(tmp), len(spec), spec)
        try:
            for platform in FOREIGN_LINE:
                row: dict[str, Any] = {"platform": platform, "entries": entries}
                for size in (0, entries):
                    port = fleet.ports[f"{platform}-{size}"]
                    context = PointContext(f"{platform}-{size}", platform,
                                           Connection("127.0.0.1", port, "admin", "admin", platform),
                                           {"bindings": [INTERFACE[platform]]}, timeout=120.0,
                                           members=AddressSet.of(["10.30.1.0/24"]))
                    driver = DRIVERS[platform](context)
                    driver.fetch()  # log in first: the session is not what is measured
                    row[f"fetch_{size}_s"] = min(_timed(driver.fetch) for _ in range(repeat))
                    whole = (*driver.syntax.fetch_commands(()),)
                    row[f"whole_{size}_s"] = min(_timed(lambda d=driver, w=whole: d.syntax.parse(
                        {c: d.transport.show(c) for c in w})) for _ in range(repeat))
                    driver.close()
                results.append(row)
        finally:
            fleet.stop()
    return results


def _timed(call: Any) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--entries", type=int, default=2000, help="entries of the big ACL (0: skip)")
    parser.add_argument("--policy", choices=("site", "mesh"), default="site",
                        help="site: each switch its own site's rules; mesh: every web to every db (big ACLs)")
    parser.add_argument("--foreign", type=int, default=10000,
                        help="entries of someone else's ACL on the device a point's fetch reads (0: skip)")
    parser.add_argument("--only-foreign", action="store_true", help="measure the foreign-ACL fetch only")
    parser.add_argument("--napalm", action="store_true",
                        help="run the fleet again with EOS over eAPI and Junos over NETCONF (transport: napalm)")
    args = parser.parse_args()
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)  # closed sockets at teardown; errors are translated
    if args.foreign:
        print(f"a point's fetch, device without foreign ACLs vs with a {args.foreign:,}-entry foreign ACL "
              "(best of 5; 'whole': the full listings, as fetch read them before):")
        for row in foreign_fetch(args.foreign):
            fetch, whole = row[f"fetch_{args.foreign}_s"], row[f"whole_{args.foreign}_s"]
            print(f"  {row['platform']:5} fetch {row['fetch_0_s'] * 1000:.0f} ms vs {fetch * 1000:.0f} ms "
                  f"({fetch / row['fetch_0_s']:.2f}x); whole listings {row['whole_0_s'] * 1000:.0f} ms "
                  f"vs {whole * 1000:.0f} ms ({whole / row['whole_0_s']:.1f}x)")
        if args.only_foreign:
            return
    for transport in ("cli", "napalm") if args.napalm else ("cli",):
        fleet = run_fleet(args.devices, args.workers, args.policy, transport)
        print(f"{fleet['devices']} devices, {fleet['workers']} workers, {args.policy} policy, transport {transport}"
              f"{' (EOS eAPI, Junos NETCONF; IOS, NX-OS SSH)' if transport == 'napalm' else ''}: "
              f"simulators up in {fleet['fleet_up_s']:.2f} s")
        print(f"  plan   {fleet['plan_s']:.2f} s wall  ({fleet['config_lines']} config lines planned)")
        print(f"  apply  {fleet['apply_s']:.2f} s wall  ({fleet['apply_per_device_ms']:.0f} ms per device, "
              "checkpoint + push + verify + confirm)")
        if transport == "cli":  # the session clock times the CLI transport's calls only
            print(f"  serial plan task {fleet['serial_plan_task_ms']:.1f} ms per device, framework overhead "
                  f"{fleet['overhead_per_host_ms']:.1f} ms per host (everything but the device session)")
        else:
            print(f"  serial plan task {fleet['serial_plan_task_ms']:.1f} ms per device")
    if args.entries:
        print(f"\none-rule insert into a {args.entries}-entry ACL:")
        for platform, transport in [*((p, "cli") for p in PLATFORMS), ("eos", "napalm"), ("junos", "napalm")]:
            big = big_acl(platform, args.entries, transport)
            name = platform + ("/napalm" if transport == "napalm" else "")
            print(f"  {name:12} install {big['install_s']:.2f} s; one rule: {big['one_rule_lines']} lines planned, "
                  f"{big['one_rule_device_config_lines']} config lines received by the device (with the "
                  f"lifecycle), plan+apply+verify+confirm {big['one_rule_plan_apply_s'] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
