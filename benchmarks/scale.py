"""Scale-out benchmark: plan and apply over N simulated switches through Celery workers vs the local runner.

The switches are the SSH device simulators (test doubles) of ``simulators/netdev``, all in one separate process
on 127.0.0.1, as in ``benchmarks/switches.py`` (same estate: one /24 per switch, each switch its own site's
rules).  The points are split over two queues; four ``microseg worker`` processes (two per queue, a thread pool
each) run their steps; RabbitMQ (or Redis) and PostgreSQL on loopback.  In one run, per size:

* the local runner: plan, apply (stale check, checkpoint, push, verify, confirm), then a rollback to reset;
* the same through the workers (``--executor celery``): plan, apply, and the outcomes checked equal to the
  local runner's point for point (same state, same fingerprint after);
* the coordinator's CPU time per point (what the CLI or ``serve`` spends per point: messages, store polls,
  outcomes), messages sent per point, and how wall time grows from the smallest size to the largest;
* a paper estimate for 20,000 points across 40 workers from the measured per-point costs.

    .venv/bin/python benchmarks/scale.py                          # 250 and 1,000 switches, RabbitMQ
    .venv/bin/python benchmarks/scale.py --sizes 100 400 --broker redis://127.0.0.1:6379/15

Everything shares this machine's cores (simulators, four workers, the coordinator): the ratios, not the
absolute times, carry over.  Needs PostgreSQL on 127.0.0.1 (``MICROSEG_TEST_POSTGRES``) and the broker.
"""

from __future__ import annotations

import argparse
import cProfile
import faulthandler
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.switches import Fleet, estate
from orchestrator.engine import distributed
from orchestrator.engine.distributed import CeleryExecutor, live_workers
from orchestrator.engine.engine import Actor, Engine, EngineOptions, PointExecutor
from orchestrator.engine.project import load_project
from orchestrator.engine.rollback import rollback_run
from orchestrator.engine.runtime import batch_gc
from orchestrator.engine.transaction import ApplyOptions, RunResult, apply_plan
from orchestrator.inventory.inventory import load_nornir_inventory
from orchestrator.store import open_store
from tests.store_fixtures import POSTGRES_URL, postgres_schema
from tests.test_celery_executor import stop as stop_workers

MICROSEG = Path(sys.executable).with_name("microseg")
QUEUES = ("site-a", "site-b")


class Counted:
    """Counts the tasks the coordinator sends (wraps ``Celery.send_task`` of the executor's app)."""

    def __init__(self, broker: str) -> None:
        self.app = distributed.celery_app(broker)
        self.original = self.app.send_task
        self.sent = 0

        def send_task(*args: Any, **kwargs: Any) -> Any:
            self.sent += 1
            return self.original(*args, **kwargs)

        self.app.send_task = send_task  # type: ignore[method-assign]

    def restore(self) -> None:
        self.app.send_task = self.original  # type: ignore[method-assign]


class StatementCount:
    """Counts the SQL statements the coordinator's store sends (a deterministic companion to its CPU time)."""

    def __init__(self, eng: Engine) -> None:
        from sqlalchemy import event

        self.count = 0
        self._engine = eng.store._engine
        event.listen(self._engine, "before_cursor_execute", self._one)

    def _one(self, *_: Any) -> None:
        self.count += 1

    def stop(self) -> None:
        from sqlalchemy import event

        event.remove(self._engine, "before_cursor_execute", self._one)


def queued(inventory: Path, tag: str) -> None:
    """Every other switch on the second queue (a queue per site); host keys trusted into this run's own file
    (each run's simulators have new keys, maybe on ports an earlier run used)."""
    hosts_file = inventory / "hosts.yaml"
    hosts = yaml.safe_load(hosts_file.read_text())
    for i, host in enumerate(hosts.values()):
        host["data"]["microseg"]["queue"] = f"{QUEUES[i % 2]}-{tag}"
        host["data"]["microseg"]["settings"]["known_hosts"] = str(inventory / "known_hosts")
    hosts_file.write_text(yaml.safe_dump(hosts, sort_keys=False))


def start_workers(broker: str, store: str, policy: Path, inventory: Path, tag: str, threads: int,
                  log_dir: Path) -> list[subprocess.Popen[bytes]]:
    processes = []
    for i in range(4):
        queue = f"{QUEUES[i % 2]}-{tag}"
        log = (log_dir / f"worker-{i}.log").open("wb")
        processes.append(subprocess.Popen(
            [str(MICROSEG), "--policy", str(policy), "--inventory", str(inventory), "--store", store, "worker",
             "--broker", broker, "--queue", queue, "--pool", "threads", "--concurrency", str(threads),
             "--name", f"bench{i}-{tag}"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "NO_COLOR": "1"}))
    deadline = time.monotonic() + 120
    names = {f"bench{i}-{tag}" for i in range(4)}
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            raise SystemExit(f"a worker exited: {(log_dir / 'worker-0.log').read_text()[-2000:]}")
        if names <= {n.split("@")[0] for n in live_workers(broker, timeout=1.0)}:
            return processes
    raise SystemExit("the workers did not come up")


def engine(policy: Path, inventory: Path, store: str, executor: PointExecutor | None, workers: int) -> Engine:
    project = load_project(policy, inventory, today=date.today())
    options = EngineOptions(workers=workers, timeout=60, executor=executor)
    return Engine(project, load_nornir_inventory(inventory), open_store(store), Actor("bench"), options,
                  owns_store=True)


def timed_run(eng: Engine) -> tuple[float, float, float, RunResult, float]:
    """Plan and apply every point: (plan wall, apply wall, coordinator CPU of both, result, worker seconds)."""
    names = sorted(eng.compilation().points)
    cpu = time.process_time()
    started = time.perf_counter()
    plan = eng.plan(names)
    plan_wall = time.perf_counter() - started
    assert not plan.failures, dict(list(plan.failures.items())[:3])
    started = time.perf_counter()
    result = apply_plan(eng, plan, ApplyOptions(), {})
    apply_wall = time.perf_counter() - started
    assert result.status == "ok", dict(list(result.to_dict()["points"].items())[:3])
    step_seconds = sum(o.seconds for o in result.outcomes.values())
    return plan_wall, apply_wall, time.process_time() - cpu, result, step_seconds


def run_size(devices: int, broker: str, threads: int, local_workers: int,
             profile: Path | None = None) -> dict[str, Any]:
    tag = f"{devices}-{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="msbench-scale-") as tmp, postgres_schema() as schema:
        directory = Path(tmp)
        store = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
        fleet = Fleet(directory, devices)
        workers: list[subprocess.Popen[bytes]] = []
        try:
            inventory, policy = estate(directory, fleet.ports, "site")
            queued(inventory, tag)
            with engine(policy, inventory, store, None, local_workers) as local:
                plan_l, apply_l, cpu_l, here, _ = timed_run(local)
                back = rollback_run(local, here.run_id)
                again = [p for p, o in back.outcomes.items() if o.state.value != "restored"]
                if again:  # a few sessions of 1,000 may time out on 2 shared cores: reset those once more
                    print(f"local rollback left {len(again)} of {devices} switches (retried): "
                          f"{back.outcomes[again[0]].error}", file=sys.stderr)
                    back = rollback_run(local, here.run_id, again)
                    assert back.status == "ok", back.by_state()
            workers = start_workers(broker, store, policy, inventory, tag, threads, directory)
            counted = Counted(broker)
            try:
                executor = CeleryExecutor(broker, queue_timeout=600, lease=30.0)
                with engine(policy, inventory, store, executor, local_workers) as remote:
                    statements = StatementCount(remote)
                    profiler = cProfile.Profile(time.thread_time) if profile is not None else None
                    if profiler is not None:
                        profiler.enable()
                    plan_c, apply_c, cpu_c, there, worker_s = timed_run(remote)
                    if profiler is not None:
                        profiler.disable()
                        profiler.dump_stats(str(profile.with_suffix(f".{devices}.prof")))
                    statements.stop()
            finally:
                counted.restore()
            same = all(there.outcomes[p].state == o.state and there.outcomes[p].fingerprint_after == o.fingerprint_after
                       for p, o in here.outcomes.items())
        finally:
            stop_workers(workers)
            fleet.stop()
    return {"devices": devices, "local_plan_s": plan_l, "local_apply_s": apply_l, "celery_plan_s": plan_c,
            "celery_apply_s": apply_c, "local_coordinator_cpu_ms_per_point": cpu_l / devices * 1000,
            "coordinator_cpu_ms_per_point": cpu_c / devices * 1000, "messages_per_point": counted.sent / devices,
            "statements_per_point": statements.count / devices,
            "worker_seconds_per_point": worker_s / devices, "same_outcomes": same}


def main() -> None:
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID` prints where every thread is
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 1000])
    parser.add_argument("--broker", default="amqp://guest:guest@127.0.0.1:5672//")
    parser.add_argument("--threads", type=int, default=12, help="threads per worker process (4 processes)")
    parser.add_argument("--local-workers", type=int, default=48, help="Nornir threads of the local runner")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="cProfile (CPU time) the coordinator's thread during the Celery plan and apply; stats to "
                             "FILE.SIZE.prof (read with python -m pstats); the profiler inflates the CPU figure")
    parser.add_argument("--gc", choices=("cli", "serve"), default="cli",
                        help="the coordinator's garbage collection: as `microseg apply` (default; "
                             "orchestrator.engine.runtime.batch_gc) or as `serve` (CPython's default)")
    args = parser.parse_args()
    if args.gc == "cli":
        batch_gc()
    rows = [run_size(n, args.broker, args.threads, args.local_workers, args.profile) for n in args.sizes]
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"broker {args.broker.split('@')[-1]}, 4 worker processes x {args.threads} threads on 2 queues; "
          f"local runner {args.local_workers} threads")
    print("| switches | plan local | plan celery | apply local | apply celery | apply celery/local | coordinator CPU "
          "per point | messages per point | store statements per point | same outcomes |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['devices']:,} | {r['local_plan_s']:.1f} s | {r['celery_plan_s']:.1f} s "
              f"| {r['local_apply_s']:.1f} s | {r['celery_apply_s']:.1f} s "
              f"| {r['celery_apply_s'] / r['local_apply_s']:.2f}x "
              f"| {r['coordinator_cpu_ms_per_point']:.1f} ms (local runner: "
              f"{r['local_coordinator_cpu_ms_per_point']:.1f} ms) | {r['messages_per_point']:.1f} "
              f"| {r['statements_per_point']:.1f} | {'yes' if r['same_outcomes'] else 'NO'} |")
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        scale = last["devices"] / first["devices"]
        for key, label in (("celery_plan_s", "plan"), ("celery_apply_s", "apply")):
            exponent = math.log(last[key] / first[key]) / math.log(scale)
            print(f"celery {label}: {first['devices']} -> {last['devices']} switches, "
                  f"time x{last[key] / first[key]:.2f} (growth exponent {exponent:.2f})")
    last = rows[-1]
    per_point = last["worker_seconds_per_point"]
    coordinator = last["coordinator_cpu_ms_per_point"] / 1000
    spread = 20_000 * per_point / (40 * args.threads)
    estimate = max(spread, 20_000 * coordinator)
    bound = "the workers" if spread >= 20_000 * coordinator else "the coordinator"
    print(f"paper estimate, 20,000 points on 40 workers x {args.threads} threads: worker time "
          f"{per_point * 1000:.0f} ms per point -> {spread:.0f} s of apply; the coordinator's "
          f"{coordinator * 1000:.1f} ms per point -> {20_000 * coordinator:.0f} s of its CPU; about "
          f"{estimate / 60:.1f} min, bounded by {bound}")


if __name__ == "__main__":
    main()
