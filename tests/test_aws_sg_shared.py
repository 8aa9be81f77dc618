"""What the AWS SG driver instances of one process share: the account's mutating-call bucket and VPC reads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest

from drivers.aws_sg import AwsSecurityGroupDriver
from drivers.aws_sg.ratelimit import RateLimits, TokenBucket, account_key
from drivers.aws_sg.settings import parse_settings
from drivers.aws_sg.shared import NEVER, SharedReads
from drivers.testing import plan_and_apply
from orchestrator.engine.diff import diff_rulesets
from orchestrator.model.driver import RenderRequest
from orchestrator.model.errors import PermanentDriverError, TransientDriverError
from orchestrator.model.rules import Action, AddressSet, Direction, Ordering, Rule, Ruleset

if TYPE_CHECKING:
    from tests.aws_fixtures import Ec2Lab

pytest_plugins = ["tests.aws_fixtures"]
A = AddressSet.of
SETTINGS = {"region": "eu-west-1", "vpc_id": "vpc-0a1b2c3d4e5f60718", "endpoint_url": "http://127.0.0.1:9"}


# ---------------------------------------------------------------- the account's bucket


def test_one_bucket_per_account_key_at_the_lowest_rate_of_its_live_leases() -> None:
    limits = RateLimits()
    key = account_key(parse_settings("p", SETTINGS))
    fast, slow = limits.lease(key, 20), limits.lease(key, 5, 2)
    assert fast.bucket is slow.bucket and limits.limit(key) == (5, 2)
    slow.release()
    slow.release()  # idempotent
    assert limits.limit(key) == (20, 20)  # the slow point closed: back to the lowest live rate
    elsewhere = limits.lease(account_key(parse_settings("p", {**SETTINGS, "region": "us-east-1"})), 20)
    assert elsewhere.bucket is not fast.bucket
    fast.release()
    assert limits.limit(key) is None


def test_a_throttled_account_loses_its_burst() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    bucket = TokenBucket(4.0, clock=lambda: now[0], sleep=sleep)
    assert bucket.acquire() == 0.0  # three tokens left
    bucket.drain()  # RequestLimitExceeded seen by some point of the account
    assert bucket.acquire() == pytest.approx(0.25) and bucket.acquire() == pytest.approx(0.25)


@pytest.mark.parametrize(("change", "shared"), [
    ({}, True),
    ({"security_group_name": "other", "vpc_id": "vpc-0fedcba9876543210"}, True),  # same account and region
    ({"region": "us-east-1"}, False),
    ({"account_id": "123456789012"}, False),
    ({"profile": "prod"}, False),
    ({"endpoint_url": "http://127.0.0.1:10"}, False),
])
def test_the_account_key_is_endpoint_region_and_principal(change: dict[str, Any], shared: bool) -> None:
    base = account_key(parse_settings("p", SETTINGS))
    assert (account_key(parse_settings("q", {**SETTINGS, **change})) == base) is shared


def test_settings_of_the_shared_rate_and_reads() -> None:
    parsed = parse_settings("p", {**SETTINGS, "account_id": "123456789012", "mutating_call_burst": 10})
    assert parsed.account_id == "123456789012" and parsed.mutating_call_burst == 10
    assert parsed.shared_read_ttl == 2.0 and parsed.sg_references is True
    for bad, key in [({"account_id": "12345"}, "account_id"), ({"mutating_call_burst": 0}, "mutating_call_burst"),
                     ({"shared_read_ttl": -1}, "shared_read_ttl"), ({"sg_references": "yes"}, "sg_references")]:
        with pytest.raises(PermanentDriverError, match=key):
            parse_settings("p", {**SETTINGS, **bad})


def point_ruleset(point: str, address: str, ports: range) -> Ruleset:
    member = A([f"{address}/32"])
    rules = [Rule(Action.PERMIT, Direction.INGRESS, 6, A([f"10.{k % 200}.0.0/16"]), member, dst_ports=((p, p),))
             for k, p in enumerate(ports)]
    return Ruleset(point, Ordering.UNORDERED_ALLOW, Action.DENY, tuple(sorted(rules, key=Rule.key)))


def test_points_of_one_account_hammered_from_threads_stay_under_its_rate(ec2_lab: Ec2Lab) -> None:
    lab, proxy = ec2_lab, ec2_lab.proxy
    rate, burst, count = 20.0, 4, 6
    points = []
    for i in range(count):
        address = f"10.30.1.{100 + i}"
        lab.eni(address)
        driver = lab.driver(members=A([f"{address}/32"]), point=f"aws-sg-rate-{i}", security_group_name=f"mseg-r{i}",
                            max_mutating_calls_per_second=rate, mutating_call_burst=burst)
        points.append((driver, address))
    assert len({id(d.api.limiter().bucket) for d, _ in points}) == 1

    def hammer(item: tuple[AwsSecurityGroupDriver, str]) -> None:
        driver, address = item
        for first in (1000, 2000, 3000):  # create + authorize + revoke default egress + attach; authorize + revoke × 2
            assert plan_and_apply(driver, point_ruleset(driver.point, address, range(first, first + 3)))[1]

    with ThreadPoolExecutor(count) as pool:
        list(pool.map(hammer, points))
    times = proxy.mutating_times()
    assert len(times) == count * 8
    slack = 0.4 * rate  # calls leave the bucket in order but reach the proxy up to ~0.3 s later (threads, GIL, moto)
    for window in (1.0, 2.0):  # any window: at most rate × window + burst; per-instance buckets: all 48 within ~1 s
        worst = max(sum(1 for t in times[i:] if t < start + window) for i, start in enumerate(times))
        assert worst <= rate * window + burst + slack, (window, worst)
    assert len(times) <= rate * (times[-1] - times[0]) + burst + slack  # sustained over the whole run


def test_points_of_other_accounts_or_regions_do_not_share_a_bucket(ec2_lab: Ec2Lab) -> None:
    lab = ec2_lab
    one = lab.driver(point="a", security_group_name="mseg-a")
    same = lab.driver(point="b", security_group_name="mseg-b")
    other_account = lab.driver(point="c", security_group_name="mseg-c", account_id="210987654321")
    other_region = lab.driver(point="d", security_group_name="mseg-d", region="us-east-1")
    buckets = [d.api.limiter().bucket for d in (one, same, other_account, other_region)]
    assert buckets[0] is buckets[1]
    assert len({id(b) for b in buckets}) == 3


# ---------------------------------------------------------------- shared reads (unit)


class Loads:
    """A loader that counts its calls and can hold them until released (or fail)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls = 0
        self.gate = threading.Event()
        self.error = error
        self.lock = threading.Lock()

    def __call__(self, interests: frozenset[Hashable], narrow: bool) -> str:
        with self.lock:
            self.calls += 1
            number = self.calls
        self.gate.wait(5)
        if self.error is not None:
            raise self.error
        return f"view {number}"


def concurrently(work: Callable[[int], Any], count: int, loads: Loads) -> list[Any]:
    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(work, i) for i in range(count)]
        time.sleep(0.2)  # let them all find the load in flight
        loads.gate.set()
        out = []
        for future in futures:
            try:
                out.append(future.result())
            except Exception as exc:
                out.append(exc)
        return out


def test_readers_at_the_same_time_share_one_load_and_never_get_a_view_twice() -> None:
    reads: SharedReads[str] = SharedReads()
    reads.register("i")
    loads = Loads()

    def read(i: int) -> str:
        return reads.read(f"p{i}", "i", (), NEVER, 10.0, loads, lambda v: True)

    assert concurrently(read, 8, loads) == ["view 1"] * 8 and loads.calls == 1
    again = reads.read("p0", "i", (), time.monotonic(), 10.0, loads, lambda v: True)  # p0's next fetch
    assert again == "view 2" and loads.calls == 2
    assert reads.read("p9", "i", (), NEVER, 10.0, loads, lambda v: True) == "view 2"  # a new reader: cached
    assert reads.read("p9", "i", (), NEVER, 0.0, loads, lambda v: True) == "view 3"  # ttl 0: no cache


def test_a_mutation_voids_the_views_of_readers_depending_on_the_part_it_changed() -> None:
    reads: SharedReads[str] = SharedReads()
    reads.register("i")
    loads = Loads()
    loads.gate.set()
    enis, mine = ("enis",), ("group", "mine")
    assert reads.read("a", "i", (enis, mine), NEVER, 10.0, loads, lambda v: True) == "view 1"
    reads.changed(("group", "other"))
    assert reads.read("b", "i", (enis, mine), NEVER, 10.0, loads, lambda v: True) == "view 1"
    reads.changed(mine)
    assert reads.read("c", "i", (enis, mine), NEVER, 10.0, loads, lambda v: True) == "view 2"
    reads.changed(enis)
    assert reads.read("d", "i", (enis,), NEVER, 10.0, loads, lambda v: True) == "view 3"
    assert reads.read("e", "j", (enis,), NEVER, 10.0, loads, lambda v: "3" in v) == "view 3"


def test_a_failed_shared_load_fails_every_reader_as_its_own_error() -> None:
    reads: SharedReads[str] = SharedReads()
    reads.register("i")
    loads = Loads(TransientDriverError("describe_security_groups on vpc-1 failed: RequestLimitExceeded",
                                       point="p0", driver="aws_sg", delay=3.0))
    errors = concurrently(lambda i: reads.read(f"p{i}", "i", (), NEVER, 10.0, loads, lambda v: True), 4, loads)
    assert loads.calls == 1 and all(isinstance(e, TransientDriverError) for e in errors)
    assert {e.point for e in errors} == {"p0", "p1", "p2", "p3"} and {e.delay for e in errors} == {3.0}
    follower = next(e for e in errors if e.point != "p0")
    assert follower.message.startswith(f"{follower.point} (aws_sg): describe_security_groups on vpc-1 failed")
    assert "shared with p0" in follower.message
    loads.error = None
    assert reads.read("p1", "i", (), NEVER, 10.0, loads, lambda v: True) == "view 2"  # failures are not kept


# ---------------------------------------------------------------- shared reads against moto


def vpc_point(lab: Ec2Lab, index: int, **settings: Any) -> tuple[AwsSecurityGroupDriver, Ruleset]:
    """Point ``index`` of the VPC: one ENI of its own (made once), three ingress rules."""
    address = f"10.30.1.{150 + index}"
    if f"p{index}" not in lab.enis:
        lab.enis[f"p{index}"] = lab.eni(address)
    driver = lab.driver(members=A([f"{address}/32"]), point=f"aws-sg-read-{index}",
                        security_group_name=f"mseg-read-{index}", **settings)
    return driver, point_ruleset(driver.point, address, range(3000 + index, 3003 + index))


def vpc_points(lab: Ec2Lab, count: int, **settings: Any) -> list[tuple[AwsSecurityGroupDriver, Ruleset]]:
    return [vpc_point(lab, i, **settings) for i in range(count)]


def fetch_all(points: list[tuple[AwsSecurityGroupDriver, Ruleset]]) -> list[Any]:
    barrier = threading.Barrier(len(points))

    def fetch(item: tuple[AwsSecurityGroupDriver, Ruleset]) -> Any:
        barrier.wait()
        return item[0].fetch()

    with ThreadPoolExecutor(len(points)) as pool:
        return list(pool.map(fetch, points))


def test_points_of_a_vpc_fetched_together_cost_describe_calls_per_page_not_per_point(ec2_lab: Ec2Lab) -> None:
    lab, proxy = ec2_lab, ec2_lab.proxy
    for driver, intended in vpc_points(lab, 8):
        plan_and_apply(driver, intended)
    points = vpc_points(lab, 8, shared_read_ttl=60)  # new instances, as a new run has (a slow machine: long ttl)
    proxy.reset()
    snapshots = fetch_all(points)
    assert dict(proxy.counts) == {"DescribeSecurityGroups": 1, "DescribeSecurityGroupRules": 1,
                                  "DescribeNetworkInterfaces": 1}
    for (driver, intended), snapshot in zip(points, snapshots, strict=True):
        assert diff_rulesets(driver.normalize(snapshot).ruleset, intended).empty
    proxy.reset()
    fetch_all(points)  # each instance's next fetch needs a describe begun after it asked: the first goes at once,
    assert max(proxy.counts.values()) <= 3 and len(proxy.counts) == 3  # those arriving meanwhile share the next
    proxy.reset()
    fetch_all(vpc_points(lab, 8, shared_read_ttl=0))  # no cache: the fetches still share the describe in flight
    assert proxy.counts["DescribeSecurityGroups"] <= 2


def test_drivers_made_one_after_the_other_as_the_engine_does_share_the_describe_round(ec2_lab: Ec2Lab) -> None:
    lab, proxy = ec2_lab, ec2_lab.proxy
    for driver, intended in vpc_points(lab, 6):
        plan_and_apply(driver, intended)
    for driver in lab.drivers:
        driver.close()  # as in a new process: no point of the VPC is known when the first one fetches
    proxy.reset()
    for i in range(6):  # the engine makes each point's driver when it first needs it
        driver, intended = vpc_point(lab, i, shared_read_ttl=60)
        assert diff_rulesets(driver.normalize(driver.fetch()).ruleset, intended).empty
    assert dict(proxy.counts) == {"DescribeSecurityGroups": 1, "DescribeSecurityGroupRules": 1,
                                  "DescribeNetworkInterfaces": 1}


def test_after_an_apply_no_point_of_the_vpc_reads_the_state_before_it(ec2_lab: Ec2Lab) -> None:
    lab = ec2_lab
    web1_only = A(["10.30.1.11/32", f"{lab.v6(0x11)}/128"])
    web = lab.driver(point="aws-sg-web", security_group_name="mseg-web")
    admin = lab.driver(members=web1_only, point="aws-sg-admin", security_group_name="mseg-admin")
    intended = Ruleset("aws-sg-web", Ordering.UNORDERED_ALLOW, Action.DENY, (
        Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.0.0.0/8"]), AddressSet(lab.members.v4),
             dst_ports=((443, 443),)),))
    before = {d.point: d.fetch() for d in (web, admin)}
    plan_and_apply(web, intended)  # creates mseg-web, authorizes, attaches it to web1 and web2
    gid = lab.owned_group("mseg-web")["GroupId"]  # type: ignore[index]
    # a new instance of either point (first fetch, within the cache's lifetime) sees the new state
    fresh_web = lab.driver(point="aws-sg-web", security_group_name="mseg-web")
    assert diff_rulesets(fresh_web.normalize(fresh_web.fetch()).ruleset, intended).empty
    fresh_admin = lab.driver(members=web1_only, point="aws-sg-admin", security_group_name="mseg-admin")
    web1 = next(i for i in fresh_admin.fetch().native["interfaces"] if i["id"] == lab.enis["web1"])
    assert gid in [g for g, _ in web1["groups"]]
    assert admin.fetch().fingerprint() != before["aws-sg-admin"].fingerprint()
    # a change made outside this process is seen by each instance's next fetch (no cache across its fetches)
    lab.ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    assert not diff_rulesets(web.normalize(web.fetch()).ruleset, intended).empty


def test_an_engine_like_run_over_the_points_of_a_vpc_is_current_checkpointed_and_verified(ec2_lab: Ec2Lab) -> None:
    """Plan all, check all are current, then per point on threads: observe, checkpoint, apply, verify."""
    lab, proxy = ec2_lab, ec2_lab.proxy
    points = vpc_points(lab, 6)
    plans = {}
    for driver, intended in points:
        snapshot = driver.fetch()
        observed = driver.normalize(snapshot).ruleset
        diff = diff_rulesets(observed, intended)
        plans[driver.point] = (snapshot.fingerprint(), driver.render(RenderRequest(
            driver.point, intended, observed, snapshot, diff.added, diff.removed)))
    assert all(d.fetch().fingerprint() == plans[d.point][0] for d, _ in points)  # the preflight

    def apply(item: tuple[AwsSecurityGroupDriver, Ruleset]) -> None:
        driver, intended = item
        fingerprint, change = plans[driver.point]
        assert driver.fetch().fingerprint() == fingerprint, "stale although only other points changed"
        assert driver.checkpoint().fingerprint == fingerprint
        driver.apply(change)
        assert diff_rulesets(driver.normalize(driver.fetch()).ruleset, intended).empty

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(apply, points))
    describes = proxy.describes()
    assert describes < 3 * 4 * len(points)  # per point: preflight, observe, checkpoint, verify — shared rounds
