"""AWS SG driver under injected faults (throttling, 5xx, timeouts, refused calls) and quota refusals, over HTTP."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from drivers.testing import plan_and_apply
from orchestrator.engine.diff import diff_rulesets
from orchestrator.engine.retry import RetryPolicy, with_retries
from orchestrator.model.driver import Checkpoint, RenderRequest
from orchestrator.model.errors import PermanentDriverError, TransientDriverError
from orchestrator.model.rules import Action, AddressSet, Direction, Ordering, Rule, Ruleset

if TYPE_CHECKING:
    from tests.aws_fixtures import Ec2Lab

pytest_plugins = ["tests.aws_fixtures"]
POINT = "aws-sg-dev-web"  # the worked example's point, as tests/aws_fixtures.py builds it
A = AddressSet.of


def web_rules(lab: Ec2Lab, first_octet: int, count: int, port: int = 443, egress: bool = False) -> list[Rule]:
    v4 = AddressSet(lab.members.v4)
    out = []
    for i in range(count):
        peer = A([f"{first_octet}.{i}.0.0/16"])
        src, dst = (v4, peer) if egress else (peer, v4)
        out.append(Rule(Action.PERMIT, Direction.EGRESS if egress else Direction.INGRESS, 6, src, dst,
                        dst_ports=((port, port),)))
    return out


def ruleset(rules: list[Rule]) -> Ruleset:
    return Ruleset(POINT, Ordering.UNORDERED_ALLOW, Action.DENY, tuple(sorted(rules, key=Rule.key)))


def render(driver: Any, intended: Ruleset) -> Any:
    snapshot = driver.fetch()
    observed = driver.normalize(snapshot).ruleset
    diff = diff_rulesets(observed, intended)
    return driver.render(RenderRequest(POINT, intended, observed, snapshot, diff.added, diff.removed))


def no_sleep(_: float) -> None:
    return None


# ---------------------------------------------------------------- transient errors and retries


def test_throttled_fetch_is_transient_and_the_retry_succeeds(ec2_lab: Ec2Lab) -> None:
    lab, proxy = ec2_lab, ec2_lab.proxy
    driver = lab.driver()
    proxy.fail("DescribeNetworkInterfaces", kind="throttle")
    with pytest.raises(TransientDriverError, match="RequestLimitExceeded") as caught:
        driver.fetch()
    assert caught.value.delay > 0 and "describe_network_interfaces" in caught.value.message
    assert proxy.counts["DescribeNetworkInterfaces"] == 1  # no hidden SDK retries: the engine decides
    proxy.fail("DescribeSecurityGroups", kind="throttle")
    snapshot = with_retries(driver.fetch, RetryPolicy(attempts=3, base=0.01), sleep=no_sleep)
    assert snapshot.native["group"] is None
    assert proxy.counts["DescribeSecurityGroups"] == 3  # failed once before, once now, then answered


@pytest.mark.parametrize(("kind", "expected"), [("unavailable", "Unavailable"), ("internal", "InternalError")])
def test_5xx_is_transient(ec2_lab: Ec2Lab, kind: str, expected: str) -> None:
    ec2_lab.proxy.fail("DescribeSecurityGroups", kind=kind)
    with pytest.raises(TransientDriverError, match=expected):
        ec2_lab.driver().fetch()


def test_timeout_is_transient(ec2_lab: Ec2Lab) -> None:
    ec2_lab.proxy.fail("DescribeSecurityGroups", kind="timeout", delay=1.0)
    with pytest.raises(TransientDriverError, match="ReadTimeout"):
        ec2_lab.driver(timeout=0.3).fetch()
    assert ec2_lab.proxy.counts["DescribeSecurityGroups"] == 1


def test_refused_describe_is_permanent_and_names_the_call(ec2_lab: Ec2Lab) -> None:
    ec2_lab.proxy.fail("DescribeSecurityGroups", kind="invalid")
    with pytest.raises(PermanentDriverError, match=r"describe_security_groups on vpc-\w+ failed: "
                                                   r"InvalidParameterValue"):
        ec2_lab.driver().fetch()


def test_throttled_mutating_call_is_sent_again_within_apply(ec2_lab: Ec2Lab) -> None:
    lab, proxy = ec2_lab, ec2_lab.proxy
    driver = lab.driver()
    intended = ruleset(web_rules(lab, 10, 3))
    proxy.fail("AuthorizeSecurityGroupIngress", nth=1, kind="throttle")
    proxy.fail("AuthorizeSecurityGroupIngress", nth=2, kind="throttle")
    change, report = plan_and_apply(driver, intended)
    assert report is not None and report.mutating_calls == change.mutating_calls
    assert proxy.counts["AuthorizeSecurityGroupIngress"] == 3
    assert proxy.counts["CreateSecurityGroup"] == 1
    assert driver.normalize(driver.fetch()).ruleset == intended


def test_throttling_that_outlasts_the_retries_is_transient_and_rollback_restores(ec2_lab: Ec2Lab) -> None:
    lab, proxy = ec2_lab, ec2_lab.proxy
    driver = lab.driver(throttle_retries=1)
    before = driver.fetch()
    checkpoint = driver.checkpoint()
    proxy.fail("RevokeSecurityGroupEgress", nth=1, kind="throttle")
    proxy.fail("RevokeSecurityGroupEgress", nth=2, kind="throttle")
    with pytest.raises(TransientDriverError, match="revoke_security_group_egress on sg-"):
        plan_and_apply(driver, ruleset(web_rules(lab, 10, 2)))
    assert proxy.counts["RevokeSecurityGroupEgress"] == 2
    assert lab.owned_group() is not None  # half-done: the group was created
    driver.rollback(checkpoint)
    assert driver.fetch().fingerprint() == before.fingerprint()
    assert lab.owned_group() is None
    assert lab.groups_of(lab.enis["web1"]) == [lab.default_sg]


# ---------------------------------------------------------------- failure mid-apply → rollback


def test_revoke_refused_mid_apply_then_rollback_restores_the_fingerprint(ec2_lab: Ec2Lab) -> None:
    lab, proxy = ec2_lab, ec2_lab.proxy
    driver = lab.driver()
    old = ruleset(web_rules(lab, 10, 3) + web_rules(lab, 20, 2, egress=True))
    new = ruleset(web_rules(lab, 30, 3) + web_rules(lab, 20, 1, egress=True))
    plan_and_apply(driver, old)
    before = driver.fetch()
    checkpoint = Checkpoint.from_dict(json.loads(json.dumps(driver.checkpoint().to_dict())))  # as the store keeps it
    assert checkpoint.fingerprint == before.fingerprint()
    proxy.fail("RevokeSecurityGroupIngress", kind="invalid")
    with pytest.raises(PermanentDriverError, match=r"revoke_security_group_ingress on sg-\w+ \(mseg-shop-dev-web\)"):
        plan_and_apply(driver, new)
    assert proxy.counts["AuthorizeSecurityGroupIngress"] == 2  # the authorize went through: neither old nor new
    assert driver.fetch().fingerprint() != before.fingerprint()
    driver.rollback(checkpoint)
    assert driver.fetch().fingerprint() == before.fingerprint()
    assert driver.normalize(driver.fetch()).ruleset == old
    proxy.reset()
    driver.rollback(checkpoint)  # idempotent: nothing left to do
    assert proxy.mutating() == 0


def test_attach_failing_on_first_apply_then_rollback_deletes_the_new_group(ec2_lab: Ec2Lab) -> None:
    lab, proxy = ec2_lab, ec2_lab.proxy
    driver = lab.driver()
    before = driver.fetch()
    checkpoint = driver.checkpoint()
    proxy.fail("ModifyNetworkInterfaceAttribute", nth=2, kind="unavailable")
    with pytest.raises(TransientDriverError, match="modify_network_interface_attribute on eni-"):
        plan_and_apply(driver, ruleset(web_rules(lab, 10, 1)))
    attached = [e for e in ("web1", "web2") if len(lab.groups_of(lab.enis[e])) == 2]
    assert len(attached) == 1
    driver.rollback(checkpoint)
    assert driver.fetch().fingerprint() == before.fingerprint()
    assert lab.owned_group() is None
    assert all(lab.groups_of(lab.enis[e]) == [lab.default_sg] for e in ("web1", "web2"))


# ---------------------------------------------------------------- quotas, refused at render (plan) time


def test_rules_per_sg_quota_is_refused_at_plan_time(ec2_lab: Ec2Lab) -> None:
    lab, proxy = ec2_lab, ec2_lab.proxy
    driver = lab.driver(rules_per_sg=3)
    with pytest.raises(PermanentDriverError, match=r"needs 4 IPv4 ingress rules .* the quota is 3 per direction"):
        render(driver, ruleset(web_rules(lab, 10, 4)))
    render(driver, ruleset(web_rules(lab, 10, 3) + web_rules(lab, 20, 3, egress=True)))  # per direction: fits
    assert proxy.mutating() == 0


def test_groups_times_rules_per_eni_quota_is_refused_at_plan_time(ec2_lab: Ec2Lab) -> None:
    lab, proxy = ec2_lab, ec2_lab.proxy
    extra = [lab.ec2.create_security_group(GroupName=f"extra-{i}", Description="x", VpcId=lab.vpc_id)["GroupId"]
             for i in range(3)]
    lab.ec2.modify_network_interface_attribute(NetworkInterfaceId=lab.enis["web1"], Groups=[lab.default_sg, *extra])
    intended = ruleset(web_rules(lab, 10, 1))
    with pytest.raises(PermanentDriverError, match=r"would carry 5 security groups × 250 rules \(rules_per_sg\) = "
                                                   r"1250 rules; EC2 allows at most 1000"):
        render(lab.driver(rules_per_sg=250), intended)
    with pytest.raises(PermanentDriverError, match=r"would carry 5 security groups; the quota is 4 per network"):
        render(lab.driver(security_groups_per_eni=4), intended)
    assert proxy.mutating() == 0


def test_adds_that_would_overflow_the_quota_mid_change_revoke_first(ec2_lab: Ec2Lab) -> None:
    lab, proxy = ec2_lab, ec2_lab.proxy
    driver = lab.driver(rules_per_sg=3)
    plan_and_apply(driver, ruleset(web_rules(lab, 10, 3)))
    proxy.reset()
    new = ruleset(web_rules(lab, 10, 1) + web_rules(lab, 20, 2))
    change, _ = plan_and_apply(driver, new)
    calls: list[dict[str, Any]] = [json.loads(c) for c in change.commands]
    assert [c["call"] for c in calls] == ["revoke_security_group_ingress", "authorize_security_group_ingress"]
    assert "exceed rules_per_sg (3)" in calls[0]["note"]
    assert [a for a in proxy.log if not a.startswith("Describe")] == ["RevokeSecurityGroupIngress",
                                                                      "AuthorizeSecurityGroupIngress"]
    assert driver.normalize(driver.fetch()).ruleset == new


def test_rules_a_security_group_cannot_hold_are_refused_with_the_policy_rule_name(ec2_lab: Ec2Lab) -> None:
    from orchestrator.model.rules import Provenance

    lab = ec2_lab
    driver = lab.driver()
    narrow = Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.0.0.0/8"]), A(["10.30.1.11/32"]),
                  dst_ports=((22, 22),), provenance=Provenance(rules=("ssh-to-web1",)))
    with pytest.raises(PermanentDriverError, match=r"ssh-to-web1: .*applies to exactly the IPv4 members"):
        render(driver, ruleset([narrow]))
