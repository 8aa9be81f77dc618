"""Cloud driver benchmark: plan + apply at scale through the real drivers and unmodified SDKs, on loopback doubles.

Each cloud's driver runs the engine's path for every point (fetch → normalize → diff → render, then apply),
in parallel like the engine (``--workers``), against the test counterparts of ``tests/`` — all on 127.0.0.1:

* AWS: boto3 → the counting proxy of ``tests/aws_fixtures.py`` → moto's EC2 server (ThreadedMotoServer).
  N security groups (one point each; members = one ENI each, all in one VPC) holding R rules in total; the
  points share the account's mutating-call bucket (``--aws-rate``, default 100/s: moto has no bucket) and
  the describe rounds of their VPC;
* Azure: azure-mgmt-network → the fake ARM server of ``simulators/azure_arm.py`` (HTTPS): N NSGs × R rules;
* GCP: google-cloud-compute → FakeCompute of ``simulators/gcp_compute.py``: R firewall rules over P points.

Per cloud it times the plan, the apply and a second plan (the idempotency twin, which must be empty), counts
the requests the counterpart saw per phase, and sets them beside what a Terraform-style approach with one
resource per rule needs at least (one create call per rule resource, one read per rule resource on refresh).
moto's server runs in a child process (its own GIL); the proxy, the other doubles, the SDK clients and the
drivers share this process.  Only 127.0.0.1 is ever contacted.

    .venv/bin/python benchmarks/cloud.py                 # 300 SGs / 1,400 rules, 50 NSGs × 100 rules, 400 GCP rules
    .venv/bin/python benchmarks/cloud.py --quick         # 20 SGs / 90 rules, 5 NSGs × 20 rules, 40 GCP rules
    .venv/bin/python benchmarks/cloud.py --only aws --aws-sgs 100 --aws-rules 470
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drivers.aws_sg import AwsSecurityGroupDriver
from drivers.azure_nsg import AzureNsgDriver
from drivers.gcp_firewall import GcpFirewallDriver
from orchestrator.engine.diff import diff_rulesets
from orchestrator.model.driver import Connection, NativeChange, PointContext, RenderRequest
from orchestrator.model.rules import Action, AddressSet, Direction, Ordering, Rule, Ruleset

A = AddressSet.of
LOOPBACK = "http://127.0.0.1:"
AWS_REGION = "eu-west-1"
AWS_READ_TTL = 2.0  # the driver's default shared_read_ttl
GCP_PROJECT = "shop-dev-000000"
PHASES = ("plan", "apply", "twin")
SLOW_SECONDS = 60.0  # above this, a moto-bound AWS run says so
QUICK = {"aws_sgs": 20, "aws_rules": 90, "azure_nsgs": 5, "azure_rules": 20, "gcp_rules": 40, "gcp_points": 4}


# ---------------------------------------------------------------------------------------------------- harness


@dataclass
class Point:
    """One point of a run: its driver, its intended ruleset, and the change the plan rendered."""

    driver: Any
    intended: Ruleset
    change: NativeChange | None = None


@dataclass
class Phases:
    """Wall time and the counterpart's request counts (by kind) of plan, apply and the twin plan."""

    seconds: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # this process (drivers, SDKs, in-process doubles)
    other_cpu: dict[str, float] = field(default_factory=dict)  # a double in its own process (moto)
    requests: dict[str, Counter[str]] = field(default_factory=dict)
    changes: int = 0
    commands: int = 0
    reported_calls: int = 0
    twin_changes: int = 0


def plan_point(point: Point) -> NativeChange:
    """drivers.testing.plan_and_apply's plan half: fetch, normalize, diff, render (nothing sent)."""
    driver, intended = point.driver, point.intended
    snapshot = driver.fetch()
    observed = driver.normalize(snapshot)
    diff = diff_rulesets(observed.ruleset, intended)
    if diff.empty:
        return NativeChange(intended.point, driver.name, "none", (), 0)
    return driver.render(RenderRequest(intended.point, intended, observed.ruleset, snapshot, diff.added,
                                       diff.removed))


def parallel(work: Callable[[Point], Any], points: Sequence[Point], workers: int) -> tuple[list[Any], float]:
    """``work`` over every point on ``workers`` threads (the engine's way); results in order, wall seconds."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(work, points))
    return results, time.perf_counter() - started


def run_phases(points: Sequence[Point], workers: int, counts: Callable[[], Counter[str]],
               other_cpu: Callable[[], float] | None = None) -> Phases:
    """Plan every point, apply every change, plan again; each phase timed and its requests counted."""
    out = Phases()

    def phase(name: str, work: Callable[[Point], Any]) -> list[Any]:
        requests, cpu, other = counts(), time.process_time(), other_cpu() if other_cpu else 0.0
        results, out.seconds[name] = parallel(work, points, workers)
        out.cpu[name] = time.process_time() - cpu
        out.other_cpu[name] = other_cpu() - other if other_cpu else 0.0
        out.requests[name] = counts() - requests
        return results

    def apply(point: Point) -> int:
        assert point.change is not None
        return 0 if point.change.empty else int(point.driver.apply(point.change).mutating_calls)

    changes = phase("plan", plan_point)
    for point, change in zip(points, changes, strict=True):
        point.change = change
    out.changes = sum(1 for c in changes if not c.empty)
    out.commands = sum(len(c.commands) for c in changes)
    out.reported_calls = sum(phase("apply", apply))
    out.twin_changes = sum(1 for c in phase("twin", plan_point) if not c.empty)
    return out


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process of ours has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def close_all(points: Sequence[Point]) -> None:
    for point in points:
        point.driver.close()


def table(title: str, rows: Sequence[tuple[str, ...]], header: tuple[str, ...]) -> None:
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    print(f"\n{title}")
    print("  " + "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths,
                                                                                               strict=True))))
    for row in rows:
        print("  " + "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True))))


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` items over ``parts`` buckets, the first ``total % parts`` one larger."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def permit(direction: Direction, proto: int, src: str | AddressSet, dst: str | AddressSet, port: int) -> Rule:
    src_set = src if isinstance(src, AddressSet) else A([src])
    dst_set = dst if isinstance(dst, AddressSet) else A([dst])
    return Rule(Action.PERMIT, direction, proto, src_set, dst_set, dst_ports=((port, port),))


def loopback_only() -> None:
    """No proxies, no instance metadata, no shared AWS config: every client talks to 127.0.0.1 only."""
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy", "AWS_PROFILE",
                "AWS_ENDPOINT_URL_EC2", "GOOGLE_APPLICATION_CREDENTIALS"):
        os.environ.pop(key, None)
    os.environ.update({"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
                       "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull,
                       "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"})


# ---------------------------------------------------------------------------------------------------- AWS


def aws_rules(index: int, count: int, members: AddressSet) -> list[Rule]:
    """``count`` distinct permits of security group ``index`` (ingress and egress, IPv4)."""
    templates = [
        (Direction.INGRESS, 6, "10.0.0.0/8", 443),
        (Direction.INGRESS, 6, "10.250.0.21/32", 22),
        (Direction.EGRESS, 6, f"10.40.{index % 256}.0/24", 5432),
        (Direction.EGRESS, 17, "10.10.0.53/32", 53),
        (Direction.INGRESS, 6, f"10.{100 + index // 256 % 100}.{index % 256}.0/24", 8443),
    ]
    templates += [(Direction.INGRESS if k % 2 else Direction.EGRESS, 6, f"10.{k % 250}.{k // 250}.0/24", 9000 + k)
                  for k in range(len(templates), count)]
    out = []
    for direction, proto, peer, port in templates[:count]:
        src, dst = (peer, members) if direction is Direction.INGRESS else (members, peer)
        out.append(permit(direction, proto, src, dst, port))
    return out


def serve_moto(ready: Any, stop: Any) -> None:
    """In a child process: moto's ThreadedMotoServer on a free loopback port until ``stop`` is set."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    ready.put(server.get_host_and_port())
    stop.wait()
    server.stop()


def aws_driver(context: PointContext, session: Any) -> AwsSecurityGroupDriver:
    driver = AwsSecurityGroupDriver(context, session=session)
    _ = driver.api.client  # boto3 sessions are not thread-safe: create each client here, serially
    return driver


def aws_lab(ec2: Any, sgs: int, rules: int, base: dict[str, Any], session: Any, timeout: float) -> list[Point]:
    """One VPC with one ENI per point, and the points (driver + intended ruleset)."""
    vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.30.0.0/18")["Subnet"]["SubnetId"]
    groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["SecurityGroups"]
    default_sg = next(g["GroupId"] for g in groups if g["GroupName"] == "default")
    points = []
    for i, count in enumerate(split_evenly(rules, sgs)):
        address = str(ipaddress.IPv4Address("10.30.0.10") + i)
        ec2.create_network_interface(SubnetId=subnet, PrivateIpAddress=address, Groups=[default_sg])
        name, members = f"aws-sg-bench-{i:04d}", A([f"{address}/32"])
        settings = {**base, "vpc_id": vpc, "security_group_name": f"mseg-{name}"}
        context = PointContext(name, "aws_sg", Connection(hostname=name, platform="aws"), settings, timeout, members)
        intended = Ruleset(name, Ordering.UNORDERED_ALLOW, Action.DENY,
                           tuple(sorted(aws_rules(i, count, members), key=Rule.key)))
        points.append(Point(aws_driver(context, session), intended))
    return points


def aws_new_run(points: Sequence[Point], session: Any, workers: int, counts: Callable[[], Counter[str]]
                ) -> dict[str, Any]:
    """Plan again with new driver instances, as the next ``microseg plan`` (a new run, a new process) does."""
    fresh = [Point(aws_driver(p.driver.context, session), p.intended) for p in points]
    time.sleep(AWS_READ_TTL + 0.1)  # a new process starts cold: let the process's last describe round expire
    try:
        before = counts()
        changes, seconds = parallel(plan_point, fresh, workers)
        return {"seconds": seconds, "requests": counts() - before, "changes": sum(1 for c in changes if not c.empty)}
    finally:
        close_all(fresh)


def bench_aws(sgs: int, rules: int, workers: int, timeout: float, rate: float) -> dict[str, Any]:
    import boto3

    from tests.aws_fixtures import Ec2Proxy, ec2_client

    if rules > sgs * 120:
        raise SystemExit(f"--aws-rules {rules} does not fit {sgs} groups (60 per direction each)")
    spawn = multiprocessing.get_context("spawn")
    ready, stop = spawn.Queue(), spawn.Event()
    moto = spawn.Process(target=serve_moto, args=(ready, stop), name="moto-ec2", daemon=True)
    moto.start()
    host, port = ready.get(timeout=120)
    upstream = f"http://{host}:{port}"
    assert upstream.startswith(LOOPBACK), upstream
    proxy = Ec2Proxy(upstream).start()
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                    aws_session_token="testing", region_name=AWS_REGION)
    points: list[Point] = []
    try:
        started = time.perf_counter()
        ec2 = ec2_client(upstream, session)  # the lab is built straight on moto, not through the counting proxy
        base = {"region": AWS_REGION, "endpoint_url": proxy.url, "max_mutating_calls_per_second": rate}
        points = aws_lab(ec2, sgs, rules, base, session, timeout)
        setup = time.perf_counter() - started
        proxy.reset()
        assert moto.pid is not None
        phases = run_phases(points, workers, lambda: Counter(proxy.counts), partial(process_cpu, moto.pid))
        new_run = aws_new_run(points, session, workers, lambda: Counter(proxy.counts))
    finally:
        close_all(points)
        proxy.stop()
        stop.set()
        moto.join(timeout=30)
        if moto.is_alive():
            moto.terminate()
    return {"sgs": sgs, "rules": rules, "setup": setup, "phases": phases, "rate": rate, "new_run": new_run}


def breakdown(p: Phases) -> None:
    for phase in PHASES:
        print(f"  {phase} requests: " + (", ".join(f"{k} {n}" for k, n in sorted(p.requests[phase].items())) or "—"))


def report_aws(r: dict[str, Any]) -> tuple[tuple[str, ...], str]:
    p: Phases = r["phases"]
    sgs, rules = r["sgs"], r["rules"]

    def describes(c: Counter[str]) -> int:
        return sum(n for k, n in c.items() if k.startswith("Describe"))

    def mutating(c: Counter[str]) -> int:
        return sum(n for k, n in c.items() if not k.startswith("Describe"))

    rows = [(phase, f"{p.seconds[phase]:.2f} s", f"{p.cpu[phase]:.1f} s", f"{p.other_cpu[phase]:.1f} s",
             str(describes(p.requests[phase])), str(mutating(p.requests[phase]))) for phase in PHASES]
    table(f"AWS — {sgs} security groups, {rules} rules, {sgs} ENIs in one moto VPC (lab setup {r['setup']:.1f} s)",
          rows, ("phase", "wall", "CPU here", "moto CPU", "describe", "mutating"))
    breakdown(p)
    print(f"  changes: {p.changes} points, {p.commands} calls rendered, {p.reported_calls} reported by apply; "
          f"twin plan: {p.twin_changes} non-empty changes")
    twin_requests = max(1, describes(p.requests["twin"]))
    apply_calls = mutating(p.requests["apply"])
    new_run = r["new_run"]
    listed = ", ".join(f"{k} {n}" for k, n in sorted(new_run["requests"].items()))
    print(f"  plan of a new run (new driver instances, as the next `microseg plan`): {new_run['seconds']:.2f} s, "
          f"{describes(new_run['requests'])} describe ({listed}), {new_run['changes']} non-empty changes.  The twin "
          f"above re-plans with the same instances: each later "
          f"fetch of an instance waits for a describe begun after it asked (those asking meanwhile share it).")
    print(f"  'CPU here' = drivers + boto3 + counting proxy; moto runs in its own process.  The points of the VPC "
          f"share describe rounds (every SG, the owned SGs' rules, every ENI — paginated), so a plan costs describe "
          f"calls per page and round, not per point; moto spent {1000 * p.other_cpu['twin'] / twin_requests:.0f} ms "
          f"CPU per twin-plan request on average.  Mutating calls shared one bucket of {r['rate']:g}/s: at EC2's "
          f"default of 5/s this apply needs ≥ {apply_calls / 5:.0f} s whatever the tool.")
    moto_bound = p.other_cpu["plan"] + p.other_cpu["twin"] > p.cpu["plan"] + p.cpu["twin"]
    if moto_bound and sum(p.seconds.values()) > SLOW_SECONDS:
        print(f"  NOTE: moto is the bottleneck at this size ({sum(p.seconds.values()):.0f} s wall for plan + apply + "
              f"twin): mostly moto serializing {sgs} SGs and ENIs per describe, in one GIL-bound server "
              f"process, so more workers do not help.  The sizes were not reduced.")
    return (("AWS", f"{mutating(p.requests['apply'])} calls", f"≥ {rules + sgs} ({rules + 3 * sgs})",
             f"{describes(p.requests['twin'])} describe", f"≥ {rules}"),
            "AWS per rule: 1 authorize per rule + 1 create per SG; in brackets with the default-egress revoke and "
            "the ENI attach per SG that microseg's count includes; refresh: 1 describe per rule resource")


# ---------------------------------------------------------------------------------------------------- Azure


def azure_rules(index: int, count: int) -> list[Rule]:
    """``count`` distinct, ordered rules of NSG ``index``: 70 % inbound to its subnet, the rest outbound."""
    subnet = f"10.70.{index % 256}.0/24"
    inbound = count * 7 // 10
    out = [permit(Direction.INGRESS, 6, f"10.61.{k % 256}.0/24", subnet, 1000 + k) for k in range(inbound)]
    out += [permit(Direction.EGRESS, 17 if k % 3 == 0 else 6, subnet, f"10.62.{k % 256}.0/24", 2000 + k)
            for k in range(count - inbound)]
    return out


def bench_azure(nsgs: int, rules: int, workers: int, timeout: float) -> dict[str, Any]:
    from simulators.azure_arm import FakeCredential, nsg_settings, running_fake_arm

    points: list[Point] = []
    with tempfile.TemporaryDirectory(prefix="msbench-arm-") as tmp, running_fake_arm(Path(tmp)) as arm:
        assert arm.base_url.startswith("https://127.0.0.1:"), arm.base_url
        try:
            started = time.perf_counter()
            for i in range(nsgs):
                name = f"azure-nsg-bench-{i:03d}"
                context = PointContext(name, "azure_nsg", Connection("management.azure.com"),
                                       nsg_settings(arm, nsg_name=f"nsg-bench-{i:03d}"), timeout)
                intended = Ruleset(name, Ordering.PRIORITY, Action.DENY, tuple(azure_rules(i, rules)))
                points.append(Point(AzureNsgDriver(context, credential=FakeCredential()), intended))
            setup = time.perf_counter() - started
            arm.calls.clear()
            phases = run_phases(points, workers, lambda: Counter({f"{m} {k}": n for (m, k), n in arm.calls.items()}))
            stored = [arm.nsg("rg-shop-dev", f"nsg-bench-{i:03d}") for i in range(nsgs)]
        finally:
            close_all(points)
    native = [len(n["properties"]["securityRules"]) for n in stored if n is not None]
    return {"nsgs": nsgs, "rules": rules, "setup": setup, "phases": phases, "native": native}


def report_azure(r: dict[str, Any]) -> tuple[tuple[str, ...], str]:
    p: Phases = r["phases"]
    nsgs, rules = r["nsgs"], r["rules"]
    rows = [(phase, f"{p.seconds[phase]:.2f} s", f"{p.cpu[phase]:.1f} s", str(p.requests[phase]["PUT nsg"]),
             str(p.requests[phase].total())) for phase in PHASES]
    table(f"Azure — {nsgs} NSGs × {rules} rules = {nsgs * rules} rules, fake ARM over HTTPS", rows,
          ("phase", "wall", "CPU", "PUT", "requests"))
    breakdown(p)
    puts = p.requests["apply"]["PUT nsg"]
    polls = p.requests["apply"]["GET operation"]
    stored = sorted(set(r["native"]))
    verdict = "ok" if puts == nsgs == p.changes else "NOT 1 — FAILED"
    print(f"  PUTs per NSG: {puts / nsgs:g} ({verdict}); operation polls per PUT: {polls / max(puts, 1):g}; "
          f"stored rules per NSG: {', '.join(map(str, stored))} ({rules} + 2 owned default-deny rules + 6 ARM "
          f"defaults); 'CPU' includes the in-process fake ARM; twin plan: {p.twin_changes} non-empty changes")
    per_put = 1 + polls / max(puts, 1)  # one PUT plus the operation polls the same fake asks for
    per_rule_puts = nsgs * rules + nsgs
    return (("Azure", f"{puts} PUT / {p.requests['apply'].total()} req",
             f"≥ {per_rule_puts} PUT / {per_rule_puts * per_put:.0f} req",
             f"{p.requests['twin'].total()} GET", f"≥ {nsgs * rules + nsgs} GET"),
            f"Azure per rule: 1 PUT per security rule + 1 per NSG, each a long-running operation polled like "
            f"microseg's ({per_put - 1:g} polls per PUT here); refresh: 1 GET per rule + 1 per NSG")


# ---------------------------------------------------------------------------------------------------- GCP


def gcp_rules(index: int, count: int, members: AddressSet) -> list[Rule]:
    """``count`` distinct, ordered rules of point ``index``: 70 % ingress to its members, the rest egress."""
    inbound = count * 7 // 10
    out = [permit(Direction.INGRESS, 6, f"10.{90 + k // 256 % 100}.{k % 256}.0/24", members, 3000 + k)
           for k in range(inbound)]
    out += [permit(Direction.EGRESS, 6, members, f"10.20.{(index + k) % 256}.0/24", 4000 + k)
            for k in range(count - inbound)]
    return out


def bench_gcp(rules: int, point_count: int, workers: int, timeout: float) -> dict[str, Any]:
    from google.auth.credentials import AnonymousCredentials

    from simulators.gcp_compute import MUTATIONS, FakeCompute

    points: list[Point] = []
    quota = max(500, 2 * (rules + 2 * point_count))  # the real default is 500 per project
    with FakeCompute() as fake:
        assert fake.url.startswith(LOOPBACK), fake.url
        try:
            started = time.perf_counter()
            for i, count in enumerate(split_evenly(rules, point_count)):
                name = f"gcp-fw-bench-{i:03d}"
                members = A([f"10.80.{i % 256}.0/24"])
                settings = {"project": GCP_PROJECT, "network": "bench", "target_tags": [f"bench-{i:03d}"],
                            "api_endpoint": fake.url, "firewall_quota": quota}
                context = PointContext(name, "gcp_firewall", Connection("compute.googleapis.com"), settings,
                                       timeout=timeout, members=members)
                driver = GcpFirewallDriver(context, credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
                intended = Ruleset(name, Ordering.PRIORITY, Action.DENY, tuple(gcp_rules(i, count, members)))
                points.append(Point(driver, intended))
            setup = time.perf_counter() - started
            fake.reset_counts()
            phases = run_phases(points, workers, lambda: Counter({k: n for (_, k), n in fake.counts.items()}))
            native = len(fake.rules(GCP_PROJECT))
        finally:
            close_all(points)
    return {"rules": rules, "points": point_count, "setup": setup, "phases": phases, "native": native,
            "quota": quota, "mutations": MUTATIONS}


def report_gcp(r: dict[str, Any]) -> tuple[tuple[str, ...], str]:
    p: Phases = r["phases"]
    rules, native = r["rules"], r["native"]

    def mutating(c: Counter[str]) -> int:
        return sum(c[k] for k in r["mutations"])

    rows = [(phase, f"{p.seconds[phase]:.2f} s", f"{p.cpu[phase]:.1f} s", str(mutating(p.requests[phase])),
             str(p.requests[phase]["operations.wait"] + p.requests[phase]["operations.get"]),
             str(p.requests[phase]["firewalls.list"])) for phase in PHASES]
    table(f"GCP — {rules} policy rules over {r['points']} points → {native} firewall rules in one project "
          f"(firewall_quota {r['quota']})", rows, ("phase", "wall", "CPU", "mutating", "op waits", "lists"))
    breakdown(p)
    print(f"  {native - rules} of the firewall rules are the points' default-deny egress rules (IPv4, IPv6); "
          f"'CPU' includes the in-process FakeCompute; twin plan: "
          f"{p.twin_changes} non-empty changes")
    apply = p.requests["apply"]
    return (("GCP", f"{mutating(apply)} calls + {apply['operations.wait']} waits",
             f"≥ {native} calls + {native} waits", f"{p.requests['twin']['firewalls.list']} list",
             f"≥ {native} GET"),
            "GCP per rule: 1 insert per firewall rule and ≥ 1 operation wait or poll each — the API has no "
            "batch, so the apply counts are the same; refresh: 1 GET per rule resource vs. 1 list page per point")


# ---------------------------------------------------------------------------------------------------- main


def machine_note(workers: int) -> str:
    versions = []
    for dist in ("moto", "boto3", "azure-mgmt-network", "google-cloud-compute"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{dist} ?")
    return (f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}; {', '.join(versions)}; workers={workers}; {date.today()}.\n"
            "Everything runs on 127.0.0.1 on these cores: moto's EC2 server in a child process; the counting "
            "proxy, fake ARM, FakeCompute, the SDK clients and the drivers in this process (one GIL).  Wall times "
            "are the doubles' cost plus the drivers' — no network latency, no cloud-side rate limits or "
            "propagation delays.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--aws-sgs", type=int, default=300)
    parser.add_argument("--aws-rules", type=int, default=1400, help="rules over all security groups")
    parser.add_argument("--aws-rate", type=float, default=100.0,
                        help="mutating calls per second of the (one) account, shared by all AWS points")
    parser.add_argument("--azure-nsgs", type=int, default=50)
    parser.add_argument("--azure-rules", type=int, default=100, help="rules per NSG")
    parser.add_argument("--gcp-rules", type=int, default=400, help="policy rules over all GCP points")
    parser.add_argument("--gcp-points", type=int, default=40)
    parser.add_argument("--workers", type=int, default=10, help="points in parallel (the engine's default)")
    parser.add_argument("--timeout", type=float, default=60.0, help="per-request timeout of the drivers")
    parser.add_argument("--only", choices=("aws", "azure", "gcp"), action="append", help="run only these clouds")
    parser.add_argument("--quick", action="store_true", help="small sizes: " + ", ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items()))
    args = parser.parse_args()
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    clouds = args.only or ["aws", "azure", "gcp"]
    loopback_only()
    comparison: list[tuple[tuple[str, ...], str]] = []
    started = time.perf_counter()
    if "aws" in clouds:
        comparison.append(report_aws(bench_aws(args.aws_sgs, args.aws_rules, args.workers, args.timeout,
                                               args.aws_rate)))
    if "azure" in clouds:
        comparison.append(report_azure(bench_azure(args.azure_nsgs, args.azure_rules, args.workers, args.timeout)))
    if "gcp" in clouds:
        comparison.append(report_gcp(bench_gcp(args.gcp_rules, args.gcp_points, args.workers, args.timeout)))
    table("Calls: microseg (measured) vs. one resource per rule (Terraform-style, computed lower bound)",
          [row for row, _ in comparison],
          ("cloud", "first apply", "per-rule first apply", "plan reads (twin)", "per-rule refresh reads"))
    for _, note in comparison:
        print(f"  {note}")
    print(f"\ntotal {time.perf_counter() - started:.1f} s")
    print(machine_note(args.workers))


if __name__ == "__main__":
    main()
