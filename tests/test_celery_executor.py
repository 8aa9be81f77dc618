"""`--executor celery`: per-point steps on Celery workers, against the real brokers on loopback.

RabbitMQ and Redis (both running on 127.0.0.1), real `microseg worker` processes (three, on two queues, plus
one with another policy), the four switch simulators of the worked example as points, a PostgreSQL store.
A plan made through the workers equals the local runner's point for point; a queue nobody serves fails its
points by name after the timeout; a worker with another policy refuses, naming both digests; a SQLite store
is refused.  Apply, verify and rollback through the workers end exactly as the local runner's; a worker
SIGKILLed mid-apply is restored from its checkpoint by another worker of its queue; a redelivered step does not
apply twice; a second coordinator never interleaves on a point the first one is changing.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from orchestrator.cli.main import main
from orchestrator.engine import distributed
from orchestrator.engine.distributed import (
    STEP_TASK,
    CeleryExecutor,
    StepLease,
    WorkerState,
    WorkerTransaction,
    celery_app,
    live_workers,
)
from orchestrator.engine.engine import Engine, policy_digest
from orchestrator.engine.rollback import rollback_run
from orchestrator.engine.transaction import ApplyOptions, GivenUp, RunResult, Transaction, apply_plan
from orchestrator.model.errors import PlanError
from tests.conftest import REPO
from tests.store_fixtures import POSTGRES_URL, postgres_schema
from tests.test_engine_switches import SWITCHES, TODAY, Fleet, fleet  # noqa: F401  (the switch simulators)

BROKERS = {"redis": "redis://127.0.0.1:6379/15", "rabbitmq": "amqp://guest:guest@127.0.0.1:5672//"}
MICROSEG = Path(sys.executable).with_name("microseg")


def queue_inventory(switches: Fleet, queues: dict[str, str]) -> Path:
    """The fleet's inventory with each switch on its queue."""
    hosts_file = switches.inventory / "hosts.yaml"
    hosts = yaml.safe_load(hosts_file.read_text())
    for name, queue in queues.items():
        hosts[name]["data"]["microseg"]["queue"] = queue
    hosts_file.write_text(yaml.safe_dump(hosts, sort_keys=False))
    return switches.inventory


def start_worker(broker: str, store: str, inventory: Path, queue: str, name: str, log: Path,
                 policy: Path = REPO / "policies") -> subprocess.Popen[bytes]:
    command = [str(MICROSEG), "--policy", str(policy), "--inventory", str(inventory), "--today", TODAY.isoformat(),
               "--store", store, "worker", "--broker", broker, "--queue", queue, "--concurrency", "1",
               "--name", name]
    with log.open("wb") as sink:
        return subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "NO_COLOR": "1"})


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """Every worker we started, and its pool processes (its own session), by PID."""
    for proc in processes:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in processes:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def wait_for(broker: str, names: set[str], processes: list[subprocess.Popen[bytes]], logs: list[Path]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        dead = [log for proc, log in zip(processes, logs, strict=True) if proc.poll() is not None]
        if dead:
            pytest.fail(f"a worker exited: {dead[0].read_text()[-3000:]}")
        if names <= {n.split("@")[0] for n in live_workers(broker, timeout=1.0)}:
            return
    pytest.fail(f"workers {sorted(names)} did not come up: {logs[0].read_text()[-3000:]}")


@pytest.fixture
def store_url() -> Iterator[str]:
    with postgres_schema() as schema:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"


@pytest.mark.parametrize("broker_name", list(BROKERS))
def test_plans_made_by_workers_equal_the_local_runners(broker_name: str, fleet: Fleet, store_url: str,  # noqa: F811
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = BROKERS[broker_name]
    tag = secrets.token_hex(3)  # queues of this run only: nothing another run left in the broker reaches them
    site_a, site_b, nobody, other = (f"{q}-{tag}" for q in ("site-a", "site-b", "nobody", "other"))
    queues = {"sw-dev-ios": site_a, "dc-prod-nxos": site_a, "leaf-prod-eos": site_b, "fw-shared-junos": site_b}
    inventory = queue_inventory(fleet, queues)
    changed = tmp_path / "other-policy"  # a worker deployed with another policy (one port changed)
    shutil.copytree(REPO / "policies", changed)
    for path in changed.rglob("*.yaml"):
        text = path.read_text()
        if "5432" in text:
            path.write_text(text.replace("5432", "5433", 1))
            break
    specs = [(site_a, f"wa-{tag}", REPO / "policies"), (site_b, f"wb1-{tag}", REPO / "policies"),
             (site_b, f"wb2-{tag}", REPO / "policies"), (other, f"wo-{tag}", changed)]
    logs = [tmp_path / f"worker-{i}.log" for i in range(len(specs))]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for (queue, name, policy), log in zip(specs, logs, strict=True):
            processes.append(start_worker(broker, store_url, inventory, queue, name, log, policy))
        wait_for(broker, {name for _, name, _ in specs}, processes, logs)
        found = live_workers(broker)
        assert {q for n, qs in found.items() if n.startswith(f"wb1-{tag}@") for q in qs} == {site_b}

        with fleet.engine(store_url) as local:
            here = local.plan(list(SWITCHES))
        assert not here.failures and len(here.changes) == 4
        with fleet.engine(store_url, executor=CeleryExecutor(broker, queue_timeout=60)) as remote:
            there = remote.plan(list(SWITCHES))
        assert not there.failures, there.failures
        assert {p: c.to_dict() for p, c in there.points.items()} == {p: c.to_dict() for p, c in here.points.items()}
        assert all(v == 0 for v in fleet.config_lines().values())  # planning through workers configures nothing

        # read-only steps in chunks (a large run's; here every queue's points in one message): the same plans,
        # and each point of a chunk a worker refuses gets its own refusal
        sent: list[dict[str, object]] = []
        app = celery_app(broker)
        send = app.send_task
        try:
            monkeypatch.setattr(distributed, "READ_CHUNK_SPREAD", 1)
            monkeypatch.setattr(app, "send_task", lambda *a, **k: sent.append(k["kwargs"]) or send(*a, **k))
            with fleet.engine(store_url, executor=CeleryExecutor(broker, queue_timeout=60)) as remote:
                chunked = remote.plan(list(SWITCHES))
            assert sorted(sorted(k.get("points") or [k["point"]]) for k in sent) == sorted(  # type: ignore[arg-type]
                [sorted(p for p, q in queues.items() if q == queue) for queue in (site_a, site_b)])
            assert {p: c.to_dict() for p, c in chunked.points.items()} == {
                p: c.to_dict() for p, c in here.points.items()}
            queue_inventory(fleet, {"fw-shared-junos": other, "leaf-prod-eos": other})
            with fleet.engine(store_url, executor=CeleryExecutor(broker, queue_timeout=60)) as remote:
                refused_both = remote.plan(["fw-shared-junos", "leaf-prod-eos"])
            assert sorted(refused_both.failures) == ["fw-shared-junos", "leaf-prod-eos"]
            assert all("the worker's policy differs" in m for m in refused_both.failures.values())
        finally:
            monkeypatch.undo()
            queue_inventory(fleet, queues)

        # the CLI: drift through the workers, JSON
        cli = CliRunner().invoke(main, ["--policy", str(REPO / "policies"), "--inventory", str(inventory),
                                        "--today", TODAY.isoformat(), "--store", store_url, "drift", "--json",
                                        "--executor", "celery", "--broker", broker])
        assert cli.exit_code == 2, cli.output  # nothing installed yet: every point drifts
        assert sorted(json.loads(cli.stdout)["drift"]) == sorted(SWITCHES)
        report = CliRunner().invoke(main, ["--policy", str(REPO / "policies"), "--inventory", str(inventory),
                                           "--today", TODAY.isoformat(), "--store", store_url, "reconcile", "--json",
                                           "--executor", "celery", "--broker", broker])
        assert report.exit_code == 2, report.output  # reconcile --mode report plans through the workers too

        # a queue no worker serves: its point fails by name after the timeout, the others are planned
        queue_inventory(fleet, {"fw-shared-junos": nobody})
        with fleet.engine(store_url, executor=CeleryExecutor(broker, queue_timeout=3)) as remote:
            started = time.monotonic()
            partial = remote.plan(list(SWITCHES))
            assert time.monotonic() - started < 30
        assert set(partial.points) == set(SWITCHES) - {"fw-shared-junos"}
        assert f"no worker of queue '{nobody}' answered within 3 s" in partial.failures["fw-shared-junos"]

        # the workers of a queue vanish between the staleness check and the apply: the point ends skipped,
        # naming the queue, its step abandoned (a worker that shows up later never runs it), nothing sent
        with fleet.engine(store_url, executor=CeleryExecutor(broker, queue_timeout=3)) as remote:
            tx = Transaction(remote, here, ApplyOptions())
            tx.result.run_id = remote.store.create_run("apply", actor="tester", ticket=None, origin_host="here",
                                                       options={})
            remote.store.record_plan(tx.result.run_id, "fw-shared-junos", here.points["fw-shared-junos"].to_dict())
            try:
                outcome = CeleryExecutor(broker, queue_timeout=3).apply_points(tx, ["fw-shared-junos"])
            finally:
                tx.locks.close()
            skipped = outcome["fw-shared-junos"]
            assert skipped.state.value == "skipped"
            assert f"no worker of queue '{nobody}' took it" in (skipped.error or "")
            record = remote.store.steps.get(tx.result.run_id, "fw-shared-junos", "apply")
            assert record is not None and record.status == "abandoned" and record.worker == "coordinator"
        assert fleet.config_lines()["fw-shared-junos"] == 0

        # a worker with another policy refuses, naming both digests
        queue_inventory(fleet, {"fw-shared-junos": other})
        with fleet.engine(store_url, executor=CeleryExecutor(broker, queue_timeout=60)) as remote:
            digest = policy_digest(remote.compilation())
            refused = remote.plan(["fw-shared-junos"])
        message = refused.failures["fw-shared-junos"]
        assert "the worker's policy differs from the coordinator's" in message and digest[:12] in message
    finally:
        stop(processes)
    assert all(p.returncode is not None for p in processes)


def test_sqlite_is_refused_with_celery(tmp_path: Path) -> None:
    base = ["--today", TODAY.isoformat(), "--store", f"sqlite:///{tmp_path}/state.db"]
    for args in (["plan", "--executor", "celery", "--broker", BROKERS["redis"]],
                 ["worker", "--broker", BROKERS["redis"]]):
        result = CliRunner().invoke(main, [*base, *args])
        assert result.exit_code == 1 and "not a SQLite file" in result.output, result.output
    for args in (["apply", "--auto-approve"], ["rollback", "20261121T000000Z-000000"],
                 ["reconcile", "--mode", "repair"]):
        refused = CliRunner().invoke(main, [*base, *args, "--executor", "celery", "--broker", BROKERS["redis"]])
        assert refused.exit_code == 1 and "not a SQLite file" in refused.output, (args, refused.output)
    result = CliRunner().invoke(main, ["plan", "--executor", "celery"], env={"MICROSEG_BROKER": ""})
    assert result.exit_code == 1 and "--executor celery needs --broker" in result.output
    with pytest.raises(PlanError, match="SQLite"):
        from orchestrator.engine.distributed import refuse_local_store

        refuse_local_store("sqlite:///x.db")


def states(engine: Engine) -> dict[str, str]:
    """The fingerprint of every switch's actual state (what a run leaves behind)."""
    return {point: engine.sessions.driver(point).fetch().fingerprint() for point in SWITCHES}


def test_a_worker_restore_judges_the_owned_rules_when_something_else_moved(fleet: Fleet,  # noqa: F811
                                                                          store_url: str) -> None:
    """A worker restoring a point (its first worker lost) judges the result by the normalized state stored with the
    checkpoint, as the local runner does: someone bound an IPv6 ACL on the point's interface meanwhile (a slot this
    IPv4-only point does not manage), so the raw state can never match the checkpoint again — the owned ACLs can."""
    point = "sw-dev-ios"
    hosts_file = fleet.inventory / "hosts.yaml"
    hosts = yaml.safe_load(hosts_file.read_text())
    protects = hosts[point]["data"]["microseg"]["protects"]  # an IPv4-only point: its ACLs are IPv4 only
    protects["subnets"] = [net for net in protects["subnets"] if ":" not in net]
    hosts_file.write_text(yaml.safe_dump(hosts, sort_keys=False))
    with fleet.engine(store_url) as engine:
        driver = engine.sessions.driver(point)
        untouched = driver.fetch()
        run_id = engine.store.create_run("apply", actor="tester", ticket=None, origin_host="test", options={})
        with engine.store.point_lock(point, owner=run_id):  # the coordinator's lock, held for the run
            plan = engine.plan([point])
            assert point in plan.points, plan.failures
            tx = WorkerTransaction(engine, plan, ApplyOptions(), kind="apply", run_id=run_id)
            assert tx.apply_point(point).state.value == "new"
            fleet.cli(point, ["ipv6 access-list LEGACY-V6", "permit ipv6 any any", "interface Vlan301",
                              "ipv6 traffic-filter LEGACY-V6 in"])
            answer = WorkerState(lambda: engine).run("restore", point, engine.policy_digest(), run_id, lease=10.0)
        assert answer["outcome"]["state"] == "restored", answer
        after = driver.fetch()
        assert after.fingerprint() != untouched.fingerprint()  # the foreign binding stays, untouched
        assert after.native["acls"] == untouched.native["acls"] == []  # the owned ACLs are gone again
        assert [b for b in after.native["bindings"] if b["acl"] != "LEGACY-V6"] == untouched.native["bindings"]


def test_a_worker_whose_step_was_given_up_does_not_push(fleet: Fleet, store_url: str) -> None:  # noqa: F811
    """A worker that outlived its step's lease (stalled between claim and push) finds, right before the push, that
    the coordinator gave the step up — another worker may be restoring the point — and sends nothing: the device
    got no configuration line, and the worker leaves the point's outcome to the coordinator (its verdict stays).
    Given up between push and confirm, the worker does not confirm: the device's own timer puts the old state
    back.  The same worker with a live lease pushes and confirms."""
    point = "sw-dev-ios"
    hosts_file = fleet.inventory / "hosts.yaml"
    hosts = yaml.safe_load(hosts_file.read_text())
    hosts[point]["data"]["microseg"].setdefault("settings", {})["confirm_minutes"] = 1  # the simulator: 3 s
    hosts_file.write_text(yaml.safe_dump(hosts, sort_keys=False))
    with fleet.engine(store_url) as engine:
        steps = engine.store.steps
        untouched = engine.sessions.driver(point).fetch().fingerprint()
        run_id = engine.store.create_run("apply", actor="tester", ticket=None, origin_host="test", options={})
        with engine.store.point_lock(point, owner=run_id):
            plan = engine.plan([point])
            assert steps.claim(run_id, point, "apply", worker="stalled", ttl=0.05) is None
            time.sleep(0.3)
            assert steps.abandon(run_id, point, "apply", by="coordinator", reason="lost") is None
            engine.store.record_result(run_id, point, "restored", {"error": "the coordinator's verdict"})
            sent = fleet.config_lines()[point]
            tx = WorkerTransaction(engine, plan, ApplyOptions(), kind="apply", run_id=run_id,
                                   lease=StepLease("stalled", 10.0))
            outcome = tx.apply_point(point)
            assert outcome.state.value == "unchanged" and "gave up this worker's apply step" in (outcome.error or "")
            assert "before the push" in (outcome.error or "")
            assert fleet.config_lines()[point] == sent
            assert engine.store.run(run_id).results[point].state == "restored"  # not overwritten by the worker

        late = engine.store.create_run("apply", actor="tester", ticket=None, origin_host="test", options={})
        with engine.store.point_lock(point, owner=late):
            assert steps.claim(late, point, "apply", worker="slow", ttl=0.2) is None
            tx = WorkerTransaction(engine, engine.plan([point]), ApplyOptions(), kind="apply", run_id=late,
                                   lease=StepLease("slow", 0.2))
            checked = tx.guard

            def guard(at: str, what: str) -> None:
                if what == "confirm":  # pushed and verified, then stalled: the coordinator gives the step up
                    time.sleep(0.5)
                    assert steps.abandon(late, at, "apply", by="coordinator", reason="lost") is None
                checked(at, what)

            tx.guard = guard  # type: ignore[method-assign]
            outcome = tx.apply_point(point)
            assert outcome.state.value == "unknown" and "before the confirm" in (outcome.error or "")
            assert fleet.config_lines()[point] > sent  # the change went out …
            deadline = time.monotonic() + 15
            while engine.sessions.driver(point).fetch().fingerprint() != untouched:  # … and the device reverts it
                assert time.monotonic() < deadline, "the unconfirmed change was never reverted"
                time.sleep(0.5)

        live = engine.store.create_run("apply", actor="tester", ticket=None, origin_host="test", options={})
        with engine.store.point_lock(point, owner=live):
            assert steps.claim(live, point, "apply", worker="healthy", ttl=10.0) is None
            tx = WorkerTransaction(engine, engine.plan([point]), ApplyOptions(), kind="apply", run_id=live,
                                   lease=StepLease("healthy", 10.0))
            assert tx.apply_point(point).state.value == "new"
        assert fleet.sims[point].state.revert is None  # confirmed: no revert timer runs
        assert engine.sessions.driver(point).fetch().fingerprint() != untouched


def test_a_worker_whose_restore_or_rollback_step_was_given_up_does_not_roll_back(fleet: Fleet,  # noqa: F811
                                                                                  store_url: str) -> None:
    """Restore and rollback steps are guarded like the apply step: a worker that finds its step given up right
    before the rollback goes out (the coordinator has told a human to look at the point, or restores it through
    another worker) sends nothing and records nothing.  With a live lease the same steps roll the point back."""
    point = "sw-dev-ios"
    with fleet.engine(store_url) as engine:
        steps = engine.store.steps
        untouched = engine.sessions.driver(point).fetch().fingerprint()
        run_id = engine.store.create_run("apply", actor="tester", ticket=None, origin_host="test", options={})
        worker = WorkerState(lambda: engine)
        with engine.store.point_lock(point, owner=run_id):
            assert steps.claim(run_id, point, "apply", worker="applier", ttl=10.0) is None
            tx = WorkerTransaction(engine, engine.plan([point]), ApplyOptions(), kind="apply", run_id=run_id,
                                   lease=StepLease("applier", 10.0))
            assert tx.apply_point(point).state.value == "new"
            changed = engine.sessions.driver(point).fetch().fingerprint()
            assert changed != untouched

            # rollback-all's restore step, given up before the rollback
            assert steps.claim(run_id, point, "restore", worker="stalled", ttl=0.05) is None
            time.sleep(0.3)
            assert steps.abandon(run_id, point, "restore", by="coordinator", reason="lost") is None
            sent = fleet.config_lines()[point]
            with pytest.raises(GivenUp, match=r"gave up this worker's restore step .* before the rollback"):
                worker._change(engine, "restore", point, run_id, {"failed_here": False}, StepLease("stalled", 10.0))
            assert fleet.config_lines()[point] == sent
            assert engine.sessions.driver(point).fetch().fingerprint() == changed

        # `microseg rollback` of that run, given up before the rollback
        undo = engine.store.create_run("rollback", actor="tester", ticket=None, origin_host="test", options={})
        with engine.store.point_lock(point, owner=undo):
            assert steps.claim(undo, point, "rollback", worker="stalled", ttl=0.05) is None
            time.sleep(0.3)
            assert steps.abandon(undo, point, "rollback", by="coordinator", reason="lost") is None
            sent = fleet.config_lines()[point]
            outcome = worker._change(engine, "rollback", point, undo, {"of_run": run_id, "force": False},
                                     StepLease("stalled", 10.0))
            assert outcome.state.value == "unknown"
            assert "gave up this worker's rollback step" in (outcome.error or "")
            assert fleet.config_lines()[point] == sent
            assert engine.sessions.driver(point).fetch().fingerprint() == changed

        # the same rollback with a live lease puts the checkpoint back
        live = engine.store.create_run("rollback", actor="tester", ticket=None, origin_host="test", options={})
        with engine.store.point_lock(point, owner=live):
            assert steps.claim(live, point, "rollback", worker="healthy", ttl=10.0) is None
            outcome = worker._change(engine, "rollback", point, live, {"of_run": run_id, "force": False},
                                     StepLease("healthy", 10.0))
            assert outcome.state.value == "restored", outcome.error
        assert engine.sessions.driver(point).fetch().fingerprint() == untouched


def apply_in_thread(engine: Engine, results: list[RunResult | BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            results.append(apply_plan(engine, engine.plan(list(SWITCHES)), ApplyOptions(), {}))
        except BaseException as exc:  # handed to the test thread
            results.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("broker_name", list(BROKERS))
def test_apply_and_rollback_through_workers_survive_a_killed_worker(broker_name: str, fleet: Fleet,  # noqa: F811
                                                                     store_url: str, tmp_path: Path) -> None:
    broker = BROKERS[broker_name]
    tag = secrets.token_hex(3)
    site_a, site_b = f"site-a-{tag}", f"site-b-{tag}"
    inventory = queue_inventory(fleet, {"sw-dev-ios": site_a, "dc-prod-nxos": site_a, "leaf-prod-eos": site_b,
                                        "fw-shared-junos": site_b})
    specs = [(site_a, f"wa1-{tag}"), (site_a, f"wa2-{tag}"), (site_b, f"wb-{tag}")]
    logs = [tmp_path / f"worker-{i}.log" for i in range(len(specs))]
    processes: list[subprocess.Popen[bytes]] = []
    thread: threading.Thread | None = None
    remote_executor = CeleryExecutor(broker, queue_timeout=60, lease=3.0)
    try:
        for (queue, name), log in zip(specs, logs, strict=True):
            processes.append(start_worker(broker, store_url, inventory, queue, name, log))
        wait_for(broker, {name for _, name in specs}, processes, logs)

        # the local runner's result, then undone: the reference the workers must reproduce point for point
        with fleet.engine(store_url) as local:
            before = states(local)
            here = apply_plan(local, local.plan(list(SWITCHES)), ApplyOptions(), {})
            assert here.by_state() == {"new": sorted(SWITCHES)}, here.to_dict()
            after = states(local)
            assert rollback_run(local, here.run_id).by_state() == {"restored": sorted(SWITCHES)}
            assert states(local) == before

        # apply through the workers: the same end state on every point, the same outcome per point
        sent_here = fleet.config_lines()
        with fleet.engine(store_url, executor=remote_executor) as remote:
            there = apply_plan(remote, remote.plan(list(SWITCHES)), ApplyOptions(), {})
            assert there.by_state() == here.by_state(), there.to_dict()
            assert {p: o.fingerprint_after for p, o in there.outcomes.items()} == after
            assert states(remote) == after
            assert remote.store.checkpoints(there.run_id).keys() == set(SWITCHES)  # taken by the workers

            # a redelivered apply message finds its step done and returns that answer: nothing sent twice
            lines = fleet.config_lines()
            answer = celery_app(broker).send_task(STEP_TASK, queue=site_b, kwargs={
                "step": "apply", "point": "leaf-prod-eos", "digest": remote.policy_digest(),
                "run_id": there.run_id, "lease": 3.0, "options": {}}).get(timeout=60)
            assert answer["outcome"]["state"] == "new" and answer["outcome"]["fingerprint_after"] == after[
                "leaf-prod-eos"]
            assert fleet.config_lines() == lines

            # rollback through the workers
            back = rollback_run(remote, there.run_id)
            assert back.by_state() == {"restored": sorted(SWITCHES)}, back.to_dict()
            assert states(remote) == before
        assert sum(fleet.config_lines().values()) > sum(sent_here.values())

        # SIGKILL of the worker mid-apply (its third configuration line held by the simulator, two sent) while a
        # second coordinator tries the same point: it never interleaves, and another worker restores the point
        ios = fleet.sims["sw-dev-ios"].faults
        ios.pause_after_config_lines = 2
        # the victim's revert timer must not fire while its line is held (it would change the point under the
        # rival's feet: its plan and its pre-flight check would see different states); 30 s outlasts the scenario
        fleet.sims["sw-dev-ios"].minute_seconds = 30.0
        results: list[RunResult | BaseException] = []
        with fleet.engine(store_url, executor=remote_executor) as remote, \
                fleet.engine(store_url, executor=remote_executor, lock_timeout=1.0) as second:
            thread = apply_in_thread(remote, results)
            assert ios.paused.wait(60), "the apply never reached the switch"
            rival_plan = second.plan(["sw-dev-ios"])  # of the half-changed state: current while the line is held
            assert rival_plan.points["sw-dev-ios"].fingerprint != before["sw-dev-ios"]
            rival = apply_plan(second, rival_plan, ApplyOptions(), {})
            assert rival.outcomes["sw-dev-ios"].state.value == "unchanged"
            assert "lock" in (rival.outcomes["sw-dev-ios"].error or ""), rival.to_dict()
            run_id = next(r.id for r in remote.store.runs(limit=5, kind="apply") if r.status == "running")
            holder = remote.store.steps.get(run_id, "sw-dev-ios", "apply")
            assert holder is not None and holder.status == "running"
            victim = next(proc for proc, (_, name) in zip(processes, specs, strict=True)
                          if holder.worker.startswith(f"{name}@"))
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait(timeout=10)
            ios.resume.set()  # the held line now reaches the switch: the point is half changed
            thread.join(timeout=120)
            assert not thread.is_alive()
            result = results[0]
            assert isinstance(result, RunResult), result
            killed = result.outcomes["sw-dev-ios"]
            assert killed.state.value == "restored", result.to_dict()
            assert "was lost mid-apply" in (killed.error or "") and "another worker restored" in (killed.error or "")
            assert set(result.by_state()) <= {"restored", "unchanged"}, result.to_dict()  # rollback-all: all old
            assert states(remote) == before
            events = [e.event for e in remote.store.audit_events(result.run_id, limit=500)]
            assert "point.restored" in events and "apply.finish" in events
    finally:
        stop(processes)
        if thread is not None:  # a failed assertion left the coordinator waiting: it gives up, then ends
            thread.join(timeout=180)
    assert all(p.returncode is not None for p in processes)


def test_serve_changes_points_through_the_executor_its_configuration_names(tmp_path: Path) -> None:
    """`serve.executor: celery` (or --executor celery): the change service's engines send their steps to the
    workers; a SQLite store or a missing broker is refused before serving."""
    from types import SimpleNamespace

    from orchestrator.api.app import build_service
    from orchestrator.cli.serve import executor_for
    from orchestrator.config import Config
    from orchestrator.store import open_service_store

    config = Config.model_validate({"serve": {"executor": "celery", "broker": BROKERS["redis"], "queue_timeout": 9,
                                              "worker_lease": 5}})
    chosen = executor_for(SimpleNamespace(store=POSTGRES_URL), config, None, None)  # type: ignore[arg-type]
    assert chosen == CeleryExecutor(BROKERS["redis"], queue_timeout=9, lease=5)
    assert executor_for(SimpleNamespace(store=POSTGRES_URL), config, "local", None) is None  # type: ignore[arg-type]
    with pytest.raises(PlanError, match="not a SQLite file"):
        executor_for(SimpleNamespace(store=f"sqlite:///{tmp_path}/s.db"), config, None, None)  # type: ignore[arg-type]
    with pytest.raises(PlanError, match="needs a broker"):
        executor_for(SimpleNamespace(store=POSTGRES_URL), Config(), "celery", None)  # type: ignore[arg-type]
    with open_service_store(f"sqlite:///{tmp_path}/state.db") as store:
        svc = build_service(REPO / "policies", REPO / "inventory", store, config, executor=chosen)
        with svc.engine(svc.project(today=TODAY), "alice", "CHG-1") as engine:
            assert engine.options.executor is chosen
    refused = CliRunner().invoke(main, ["--store", f"sqlite:///{tmp_path}/state.db", "serve", "--executor", "celery",
                                        "--broker", BROKERS["redis"]])
    assert refused.exit_code == 1 and "not a SQLite file" in refused.output, refused.output


class _Sent:
    """A message the fake app below sent, and what its (fake) worker answers."""

    count = 0

    def __init__(self, kwargs: dict[str, Any]) -> None:
        _Sent.count += 1
        self.id, self.kwargs = f"task-{_Sent.count}", kwargs

    def revoke(self) -> None:
        self.kwargs["revoked"] = True


def test_each_point_of_a_chunk_gets_its_own_answer_or_its_chunks_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """``CeleryExecutor._ask`` without a broker: a chunk's answers go to their points; a chunk that failed (an
    error answer, the exception of a task that raised, an answer without one per point, a point left out, no
    answer in time) is each of its points' error, naming it — never another point's answer."""
    sent: list[_Sent] = []
    answer: dict[str, Any] = {}

    class App:
        def send_task(self, name: str, kwargs: dict[str, Any], queue: str) -> _Sent:
            sent.append(_Sent({**kwargs, "queue": queue}))
            return sent[-1]

    class ResultSet:
        def __init__(self, results: list[_Sent], app: object) -> None:
            self.results = results

        def join_native(self, timeout: float, propagate: bool, callback: Any) -> None:
            for result in self.results:
                points = result.kwargs.get("points") or [result.kwargs["point"]]
                reply = answer["reply"](points)
                if reply is not None:
                    callback(result.id, reply)

    import celery.result

    monkeypatch.setattr(distributed, "celery_app", lambda broker: App())
    monkeypatch.setattr(celery.result, "ResultSet", ResultSet)
    points = [f"sw{i:02}" for i in range(40)]  # one queue: 40 // 16 = chunks of 2
    engine = SimpleNamespace(project=SimpleNamespace(inventory=SimpleNamespace(
        point=lambda p: SimpleNamespace(queue="site-a"))))
    executor = CeleryExecutor("redis://127.0.0.1:6379/15", queue_timeout=5)

    def ask(reply: Any) -> dict[str, Any]:
        sent.clear()
        answer["reply"] = reply
        return executor._ask(engine, "fingerprint", points, "digest")  # type: ignore[arg-type]

    good = ask(lambda ps: {"ok": True, "answers": {p: {"ok": True, "fingerprint": f"fp-{p}"} for p in ps}})
    assert len(sent) == 20 and all(len(m.kwargs["points"]) == 2 for m in sent)
    assert list(good) == points and all(good[p] == {"ok": True, "fingerprint": f"fp-{p}"} for p in points)
    for reply, says in [
        (lambda ps: {"ok": False, "error": "refused here"}, "refused here"),
        (lambda ps: TypeError("step() got an unexpected keyword argument 'points'"), "TypeError"),
        (lambda ps: {"ok": True, "fingerprint": "one for all"}, "without an answer per point"),
        (lambda ps: {"ok": True, "answers": {ps[0]: {"ok": True, "fingerprint": "x"}}}, "left"),
        (lambda ps: None, "answered the message for it and 1 more points"),
    ]:
        out = ask(reply)
        failed = [p for p in points if isinstance(out[p], PlanError)]
        if says == "left":  # only the point the answer left out fails, naming itself
            assert failed == points[1::2] and all(f"left {p} out" in out[p].message for p in failed)
            continue
        assert failed == points, says
        assert all(says in out[p].message and out[p].message.startswith(f"{p}") for p in points), out[points[0]]
    assert all(m.kwargs.get("revoked") for m in sent)  # no answer in time: revoked


def test_a_worker_runs_a_chunk_point_by_point_and_a_bug_on_one_fails_only_that_one() -> None:
    state = WorkerState(lambda: None)  # type: ignore[arg-type, return-value]
    calls: list[str] = []

    def run(step: str, point: str, digest: str, *rest: object) -> dict[str, Any]:
        calls.append(point)
        if point == "b":
            raise KeyError("a parser bug")
        return {"ok": True, "fingerprint": point}

    state.run = run  # type: ignore[method-assign]
    answer = state.run_many("fingerprint", ["a", "b", "c"], "digest")
    assert calls == ["a", "b", "c"]
    assert answer["answers"]["a"] == {"ok": True, "fingerprint": "a"} and answer["answers"]["c"]["fingerprint"] == "c"
    assert answer["answers"]["b"]["ok"] is False and "KeyError" in answer["answers"]["b"]["error"]
    assert state.run_many("apply", ["a", "b"], "digest")["ok"] is False  # changing steps go one point at a time
