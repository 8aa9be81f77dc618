"""Engine benchmark on the lab: plan and apply over N real nftables hosts (namespaces, sshd, SSH), timed.

For each size it builds a synthetic estate (N Linux hosts, web and db tiers,
a management rule), brings up a lab for it, then measures with the real
engine and driver over real SSH:

* plan wall time (parallel) and apply wall time (parallel, run-level transaction);
* per point: time inside SSH round trips vs. the whole task, so the framework
  overhead per host (everything that is not waiting on the host) is reported;
* a 10,000-rule ruleset applied to one host in one ``nft -f``.

Needs root (network namespaces).  Everything it creates is torn down at the end.

    .venv/bin/python benchmarks/engine.py                   # 5, 20 and 50 points, 10,000 rules
    .venv/bin/python benchmarks/engine.py --points 5 --rules 0
"""

from __future__ import annotations

import argparse
import ipaddress
import secrets
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drivers.nftables import NftablesDriver
from drivers.nftables import transport as nft_transport
from orchestrator.engine.engine import Actor, Engine, EngineOptions
from orchestrator.engine.project import load_project
from orchestrator.engine.transaction import ApplyOptions, apply_plan
from orchestrator.inventory.inventory import load_inventory, load_nornir_inventory
from orchestrator.lab import Lab, plan_lab_from_directory
from orchestrator.model.driver import Connection, PointContext, RenderRequest
from orchestrator.model.rules import Action, AddressSet, Direction, Mode, Ordering, Rule, Ruleset
from orchestrator.store import open_store

POLICY = {
    "apiVersion": "microseg/v1",
    "defaults": {"action": "deny"},
    "groups": {"web": {"selector": {"tier": "web"}}, "db": {"selector": {"tier": "db"}},
               "mgmt": {"cidrs": ["10.0.0.10/32"]}, "all": {"groups": ["web", "db"]}},
    "rules": [
        {"name": "mgmt-ssh", "from": "mgmt", "to": "all", "services": ["tcp/22"], "action": "allow"},
        {"name": "web-to-db", "from": "web", "to": "db", "services": ["tcp/5432"], "action": "allow"},
        {"name": "db-to-db", "from": "db", "to": "db", "services": ["tcp/5432", "tcp/5433"], "action": "allow"},
        {"name": "web-in", "from": "all", "to": "web", "services": ["tcp/443"], "action": "allow"},
    ],
}


def free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        port: int = probe.getsockname()[1]
        return port


def estate(directory: Path, points: int, key_file: Path) -> tuple[Path, Path]:
    """An inventory and a policy directory for ``points`` Linux hosts."""
    inv, pol = directory / "inventory", directory / "policies"
    inv.mkdir()
    pol.mkdir()
    hosts, workloads = {}, []
    for i in range(points):
        name = f"bench-{i:03d}"
        address = ipaddress.IPv4Address("10.77.0.10") + i
        hostname = str(ipaddress.IPv4Address("127.77.0.10") + i)
        hosts[name] = {"hostname": hostname, "port": free_port(hostname), "groups": ["linux-nftables"],
                       "data": {"microseg": {"protects": {"workloads": [name]}}}}
        workloads.append({"name": name, "addresses": [str(address)],
                          "labels": {"tier": "web" if i % 2 else "db"}})
    groups = {"linux-nftables": {"platform": "linux", "username": "root", "data": {"microseg": {
        "driver": "nftables", "settings": {"table": "microseg", "key_file": str(key_file)}}}}}
    defaults = {"data": {"microseg": {"directions": ["ingress", "egress"], "management": ["10.0.0.10/32"]}}}
    for file, data in (("hosts.yaml", hosts), ("groups.yaml", groups), ("defaults.yaml", defaults),
                       ("workloads.yaml", {"workloads": workloads}),
                       ("sources.yaml", {"workload_sources": [{"type": "static", "path": "workloads.yaml"}]})):
        (inv / file).write_text(yaml.safe_dump(data, sort_keys=False))
    (pol / "policy.yaml").write_text(yaml.safe_dump(POLICY, sort_keys=False))
    return inv, pol


class SshClock:
    """Time spent inside SSH commands, per thread (= per point while its task runs)."""

    def __init__(self) -> None:
        self.by_thread: dict[int, float] = defaultdict(float)
        self._original = nft_transport.SshRunner.run
        clock = self

        def timed(runner: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return clock._original(runner, *args, **kwargs)
            finally:
                clock.by_thread[threading.get_ident()] += time.perf_counter() - started

        nft_transport.SshRunner.run = timed  # type: ignore[method-assign]

    def restore(self) -> None:
        nft_transport.SshRunner.run = self._original  # type: ignore[method-assign]


def overhead_per_host(engine: Engine, names: list[str], clock: SshClock) -> tuple[float, float]:
    """Serial plan of every point: (mean task ms, mean non-SSH ms per host)."""
    totals, overheads = [], []
    for name in names:
        clock.by_thread.clear()
        started = time.perf_counter()
        engine.plan_point(name)
        total = time.perf_counter() - started
        totals.append(total)
        overheads.append(total - sum(clock.by_thread.values()))
    return statistics.mean(totals) * 1000, statistics.mean(overheads) * 1000


def run_size(points: int, workers: int, clock: SshClock) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="msbench-") as tmp:
        directory = Path(tmp)
        lab = Lab(directory / "lab", prefix=f"mb{secrets.token_hex(2)}")
        inv, pol = estate(directory, points, lab.key_file)
        started = time.perf_counter()
        lab.up(plan_lab_from_directory(inv, load_inventory(inv), prefix=lab.prefix))
        lab_up = time.perf_counter() - started
        try:
            project = load_project(pol, inv, today=date.today())
            store = open_store(f"sqlite:///{directory}/state.db")
            options = EngineOptions(workers=workers, timeout=30)
            with Engine(project, load_nornir_inventory(inv), store, Actor("bench"), options, owns_store=True) as eng:
                names = sorted(eng.compilation().points)
                started = time.perf_counter()
                plan = eng.plan(names)
                plan_wall = time.perf_counter() - started
                assert not plan.failures, plan.failures
                started = time.perf_counter()
                result = apply_plan(eng, plan, ApplyOptions(), {})
                apply_wall = time.perf_counter() - started
                assert result.status == "ok", result.to_dict()
                task_ms, overhead_ms = overhead_per_host(eng, names, clock)
                twin = eng.plan(names)
                assert not twin.changes
        finally:
            lab.down()
    return {"points": points, "lab_up_s": lab_up, "plan_s": plan_wall, "apply_s": apply_wall,
            "apply_per_point_ms": apply_wall / points * 1000, "serial_plan_task_ms": task_ms,
            "overhead_per_host_ms": overhead_ms}


def big_apply(rules: int) -> dict[str, float]:
    """``rules`` single-prefix rules on one lab host, applied in one `nft -f` over SSH."""
    with tempfile.TemporaryDirectory(prefix="msbench-") as tmp:
        directory = Path(tmp)
        lab = Lab(directory / "lab", prefix=f"mb{secrets.token_hex(2)}")
        inv, _ = estate(directory, 1, lab.key_file)
        lab.up(plan_lab_from_directory(inv, load_inventory(inv), prefix=lab.prefix))
        try:
            nornir_host = load_nornir_inventory(inv).hosts["bench-000"]
            context = PointContext("bench-000", "nftables", Connection(
                str(nornir_host.hostname), nornir_host.port, "root"), {"key_file": str(lab.key_file)}, 120.0)
            driver = NftablesDriver(context)
            host = AddressSet.of(["10.77.0.10/32"])
            mgmt = Rule(Action.PERMIT, Direction.INGRESS, 6, AddressSet.of(["10.0.0.10/32"]), host,
                        dst_ports=((22, 22),))
            body = [Rule(Action.PERMIT, Direction.INGRESS, 6, AddressSet.of([str(ipaddress.IPv4Address(
                "100.64.0.0") + i) + "/32"]), host, dst_ports=((443, 443),)) for i in range(rules)]
            ruleset = Ruleset("bench-000", Ordering.FIRST_MATCH, Action.DENY, (mgmt, *body), Mode.ENFORCE, True)
            snapshot = driver.fetch()
            started = time.perf_counter()
            change = driver.render(RenderRequest("bench-000", ruleset, driver.normalize(snapshot).ruleset, snapshot))
            render_s = time.perf_counter() - started
            started = time.perf_counter()
            driver.apply(change)
            apply_s = time.perf_counter() - started
            started = time.perf_counter()
            observed = driver.normalize(driver.fetch()).ruleset
            verify_s = time.perf_counter() - started
            assert observed == ruleset
            driver.close()
        finally:
            lab.down()
    return {"rules": rules, "render_s": render_s, "apply_s": apply_s, "fetch_normalize_s": verify_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", default="5,20,50", help="comma-separated lab sizes")
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument("--rules", type=int, default=10_000, help="rules for the one-host apply (0: skip)")
    args = parser.parse_args()
    clock = SshClock()
    try:
        print(f"{'points':>6} {'lab up':>7} {'plan':>7} {'apply':>7} {'apply/pt':>9} {'task/pt':>8} {'overhead':>9}")
        for size in (int(p) for p in args.points.split(",") if p):
            r = run_size(size, args.workers, clock)
            print(f"{r['points']:>6} {r['lab_up_s']:>6.2f}s {r['plan_s']:>6.2f}s {r['apply_s']:>6.2f}s "
                  f"{r['apply_per_point_ms']:>7.0f}ms {r['serial_plan_task_ms']:>6.1f}ms "
                  f"{r['overhead_per_host_ms']:>7.2f}ms", flush=True)
        if args.rules:
            b = big_apply(args.rules)
            print(f"\n{b['rules']:,} rules on one host: render {b['render_s']:.2f}s, apply (one nft -f over SSH) "
                  f"{b['apply_s']:.2f}s, fetch+normalize {b['fetch_normalize_s']:.2f}s")
    finally:
        clock.restore()
    print(f"\nworkers={args.workers}; 'task/pt' and 'overhead' come from a serial plan of every point: "
          "overhead = task time minus time inside SSH commands.")


if __name__ == "__main__":
    main()
