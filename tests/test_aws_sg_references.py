"""SG-to-SG references between managed groups, against moto's EC2 server over HTTP."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from drivers.aws_sg import AwsSecurityGroupDriver
from drivers.aws_sg.permissions import Permission
from drivers.aws_sg.references import compress
from drivers.testing import plan_and_apply
from orchestrator.engine.diff import diff_rulesets
from orchestrator.model.driver import NativeChange, RenderRequest
from orchestrator.model.errors import PermanentDriverError
from orchestrator.model.rules import Action, AddressSet, Direction, Ordering, Provenance, Rule, Ruleset

if TYPE_CHECKING:
    from tests.aws_fixtures import Ec2Lab

pytest_plugins = ["tests.aws_fixtures"]
A = AddressSet.of
WEB, APP = "aws-sg-ref-web", "aws-sg-ref-app"
APP_ADDRESS = "10.30.1.50"  # the lab's 'other' ENI: IPv4 only


def ruleset(point: str, *rules: Rule) -> Ruleset:
    return Ruleset(point, Ordering.UNORDERED_ALLOW, Action.DENY, tuple(sorted(rules, key=Rule.key)))


def from_web(lab: Ec2Lab, app_members: AddressSet, port: int = 8443, families: tuple[int, ...] = (4,)) -> Ruleset:
    """app allows ``port`` from every member of web, one rule per network (as the compiler shapes them)."""
    rules = []
    for family in families:
        peers = lab.members.v4 if family == 4 else lab.members.v6
        protected = AddressSet(app_members.v4 if family == 4 else app_members.v6)
        rules += [Rule(Action.PERMIT, Direction.INGRESS, 6, AddressSet((net,)), protected, dst_ports=((port, port),),
                       provenance=Provenance(rules=(f"web-to-app-{family}",))) for net in peers]
    return ruleset(APP, *rules)


@pytest.fixture
def web(ec2_lab: Ec2Lab) -> AwsSecurityGroupDriver:
    """The referenced point: its group is on web1 (IPv4 + IPv6) and web2 (IPv4)."""
    driver = ec2_lab.driver(point=WEB, security_group_name="mseg-ref-web")
    intended = ruleset(WEB, Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.0.0.0/8"]),
                                 AddressSet(ec2_lab.members.v4), dst_ports=((443, 443),)))
    plan_and_apply(driver, intended)
    return driver


def app(lab: Ec2Lab, members: AddressSet | None = None, **settings: Any) -> AwsSecurityGroupDriver:
    return lab.driver(members=members or A([f"{APP_ADDRESS}/32"]), point=APP, security_group_name="mseg-ref-app",
                      **settings)


def group_id(lab: Ec2Lab, name: str) -> str:
    group = lab.owned_group(name)
    assert group is not None
    return str(group["GroupId"])


def peers_of(lab: Ec2Lab, name: str) -> list[Any]:
    """The owned group's rules as moto stores them: (egress, protocol, ports, peer)."""
    return sorted((r["IsEgress"], r["IpProtocol"], r["FromPort"], r["ToPort"],
                   r.get("ReferencedGroupInfo", {}).get("GroupId") or r.get("CidrIpv4") or r.get("CidrIpv6"))
                  for r in lab.rules(group_id(lab, name)))


def render(driver: AwsSecurityGroupDriver, intended: Ruleset) -> NativeChange:
    snapshot = driver.fetch()
    observed = driver.normalize(snapshot).ruleset
    diff = diff_rulesets(observed, intended)
    return driver.render(RenderRequest(intended.point, intended, observed, snapshot, diff.added, diff.removed))


def test_a_rule_allowing_another_managed_groups_members_is_one_reference(ec2_lab: Ec2Lab,
                                                                          web: AwsSecurityGroupDriver) -> None:
    lab, proxy = ec2_lab, ec2_lab.proxy
    driver = app(lab)
    intended = from_web(lab, driver.members)
    change, report = plan_and_apply(driver, intended)
    assert report is not None
    web_id = group_id(lab, "mseg-ref-web")
    authorize = next(json.loads(c) for c in change.commands if "authorize_security_group_ingress" in c)
    assert authorize["params"]["IpPermissions"] == [{
        "IpProtocol": "tcp", "FromPort": 8443, "ToPort": 8443,
        "UserIdGroupPairs": [{"GroupId": web_id, "Description": "microseg:web-to-app-4"}]}]
    assert authorize["references"] == {web_id: sorted(["10.30.1.11", "10.30.1.12", lab.v6(0x11)])}
    # one rule instead of two; web's IPv6 member cannot match: the app ENI has no IPv6 address
    assert peers_of(lab, "mseg-ref-app") == [(False, "tcp", 8443, 8443, web_id)]
    assert driver.normalize(driver.fetch()).ruleset == intended
    proxy.reset()
    twin, twin_report = plan_and_apply(app(lab), intended)
    assert twin.empty and twin_report is None and proxy.mutating() == 0


def test_no_reference_when_it_would_allow_more_than_the_policy(ec2_lab: Ec2Lab, web: AwsSecurityGroupDriver) -> None:
    lab = ec2_lab
    v6 = lab.v6(0x60)
    lab.eni("10.30.1.60", v6)
    members = A(["10.30.1.60/32", f"{v6}/128"])
    only_v4 = from_web(lab, members)  # the app ENI has IPv6: a reference would let web1's IPv6 address in too
    plan_and_apply(app(lab, members), only_v4)
    assert peers_of(lab, "mseg-ref-app") == [(False, "tcp", 8443, 8443, "10.30.1.11/32"),
                                             (False, "tcp", 8443, 8443, "10.30.1.12/32")]
    both = from_web(lab, members, families=(4, 6))  # with web's IPv6 member allowed as well: exactly the group
    driver = app(lab, members)
    plan_and_apply(driver, both)
    assert peers_of(lab, "mseg-ref-app") == [(False, "tcp", 8443, 8443, group_id(lab, "mseg-ref-web"))]
    assert driver.normalize(driver.fetch()).ruleset == both
    assert plan_and_apply(app(lab, members), both)[0].empty


def test_sg_references_false_writes_cidrs(ec2_lab: Ec2Lab, web: AwsSecurityGroupDriver) -> None:
    lab = ec2_lab
    driver = app(lab, sg_references=False)
    intended = from_web(lab, driver.members)
    plan_and_apply(driver, intended)
    assert [p[-1] for p in peers_of(lab, "mseg-ref-app")] == ["10.30.1.11/32", "10.30.1.12/32"]
    assert "peers" not in driver.fetch().native


def test_a_membership_change_of_the_referenced_group_is_drift(ec2_lab: Ec2Lab, web: AwsSecurityGroupDriver) -> None:
    lab = ec2_lab
    driver = app(lab)
    intended = from_web(lab, driver.members)
    plan_and_apply(driver, intended)
    before = driver.fetch()
    web_id = group_id(lab, "mseg-ref-web")
    web3 = lab.eni("10.30.1.13")
    lab.ec2.modify_network_interface_attribute(NetworkInterfaceId=web3, Groups=[lab.default_sg, web_id])  # by hand
    after = driver.fetch()
    assert after.fingerprint() != before.fingerprint()
    drifted = driver.normalize(after).ruleset
    assert {str(r.src) for r in drifted.rules} == {"10.30.1.11/32", "10.30.1.12/31"}  # .12 + .13
    change, _ = plan_and_apply(driver, intended)  # the reference no longer says what the policy says: CIDRs
    calls = [json.loads(c) for c in change.commands]
    assert [c["call"] for c in calls] == ["authorize_security_group_ingress", "revoke_security_group_ingress"]
    assert calls[1]["revokes"] == [{"egress": False, "protocol": "tcp", "from": 8443, "to": 8443, "group": web_id}]
    assert peers_of(lab, "mseg-ref-app") == [(False, "tcp", 8443, 8443, "10.30.1.11/32"),
                                             (False, "tcp", 8443, 8443, "10.30.1.12/32")]
    assert driver.normalize(driver.fetch()).ruleset == intended


def test_apply_refuses_a_reference_whose_members_changed_since_the_plan(ec2_lab: Ec2Lab,
                                                                         web: AwsSecurityGroupDriver) -> None:
    lab, proxy = ec2_lab, ec2_lab.proxy
    driver = app(lab)
    change = render(driver, from_web(lab, driver.members))
    web3 = lab.eni("10.30.1.13")
    lab.ec2.modify_network_interface_attribute(NetworkInterfaceId=web3,
                                               Groups=[lab.default_sg, group_id(lab, "mseg-ref-web")])
    proxy.reset()
    driver.fetch()  # what the engine's checkpoint does before apply
    with pytest.raises(PermanentDriverError, match=r"whose members changed since the plan"):
        driver.apply(change)
    assert proxy.mutating() == 0


def test_the_quota_counts_a_reference_as_one_rule(ec2_lab: Ec2Lab, web: AwsSecurityGroupDriver) -> None:
    lab = ec2_lab
    intended = from_web(lab, A([f"{APP_ADDRESS}/32"]))
    assert not render(app(lab, rules_per_sg=1), intended).empty
    with pytest.raises(PermanentDriverError, match=r"needs 2 IPv4 ingress rules .* the quota is 1"):
        render(app(lab, rules_per_sg=1, sg_references=False), intended)


def test_rollback_puts_a_reference_back(ec2_lab: Ec2Lab, web: AwsSecurityGroupDriver) -> None:
    lab = ec2_lab
    driver = app(lab)
    plan_and_apply(driver, from_web(lab, driver.members))
    checkpoint = driver.checkpoint()
    assert "peers" not in checkpoint.native
    plan_and_apply(driver, from_web(lab, driver.members, port=9443))
    assert peers_of(lab, "mseg-ref-app") == [(False, "tcp", 9443, 9443, group_id(lab, "mseg-ref-web"))]
    driver.rollback(checkpoint)
    assert driver.fetch().fingerprint() == checkpoint.fingerprint
    assert peers_of(lab, "mseg-ref-app") == [(False, "tcp", 8443, 8443, group_id(lab, "mseg-ref-web"))]


def test_compress_replaces_each_cidr_rule_once_and_keeps_the_rest() -> None:
    def cidr(peer: str, port: int = 443) -> Permission:
        return Permission(False, "tcp", port, port, peer, f"microseg:r-{peer}")

    want = {p.key(): p for p in [cidr("10.0.0.1/32"), cidr("10.0.0.2/32"), cidr("10.9.0.0/16"),
                                 cidr("10.0.0.1/32", 80)]}
    peers = [{"id": "sg-small", "addresses": ["10.0.0.1"], "v4": ["10.0.0.1/32"], "v6": []},  # nothing to save
             {"id": "sg-web", "addresses": ["10.0.0.1", "10.0.0.2"], "v4": ["10.0.0.1/32", "10.0.0.2/32"], "v6": []},
             {"id": "sg-own", "addresses": ["10.0.0.1", "10.0.0.2"], "v4": ["10.0.0.1/32", "10.0.0.2/32"], "v6": []}]
    out, chosen = compress(want, peers, A(["10.30.1.50/32"]), {4}, "sg-own")
    assert sorted(p.peer for p in out.values()) == ["10.0.0.1/32", "10.9.0.0/16", "sg-web"]
    reference = next(p for p in out.values() if p.group)
    assert reference.from_port == 443 and reference.description == "microseg:r-10.0.0.1/32,r-10.0.0.2/32"
    assert chosen == {"sg-web": ["10.0.0.1", "10.0.0.2"]}
