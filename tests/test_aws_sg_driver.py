"""AWS SG driver against moto's EC2 server over HTTP: round trips, idempotency, call budgets, ownership, attachments."""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

from drivers.aws_sg import AwsSecurityGroupDriver
from drivers.testing import plan_and_apply
from orchestrator.model.driver import Connection, NativeChange, PointContext
from orchestrator.model.errors import ParseError, PermanentDriverError
from orchestrator.model.rules import Action, AddressSet, Direction, Ordering, Provenance, Rule, Ruleset
from tests.aws_fixtures import INGRESS_ONLY

if TYPE_CHECKING:
    from tests.aws_fixtures import Ec2Lab

pytest_plugins = ["tests.aws_fixtures"]
POINT = "aws-sg-dev-web"  # the worked example's point and group, as tests/aws_fixtures.py builds them
GROUP_NAME = "mseg-shop-dev-web"
A = AddressSet.of


def ruleset(*rules: Rule) -> Ruleset:
    return Ruleset(POINT, Ordering.UNORDERED_ALLOW, Action.DENY, tuple(sorted(rules, key=Rule.key)))


def ingress(lab: Ec2Lab, proto: int | None, peer: str, ports: tuple[int, int] | None = None, **kw: Any) -> Rule:
    net = A([peer])
    members = AddressSet(lab.members.v4 if net.v4 else lab.members.v6)
    return Rule(Action.PERMIT, Direction.INGRESS, proto, net, members, dst_ports=(ports,) if ports else ((0, 65535),),
                **kw)


def egress(lab: Ec2Lab, proto: int | None, peer: str, ports: tuple[int, int] | None = None, **kw: Any) -> Rule:
    net = A([peer])
    members = AddressSet(lab.members.v4 if net.v4 else lab.members.v6)
    return Rule(Action.PERMIT, Direction.EGRESS, proto, members, net, dst_ports=(ports,) if ports else ((0, 65535),),
                **kw)


def native_rules(lab: Ec2Lab) -> set[tuple[Any, ...]]:
    """The owned group's rules as moto stores them, read with a separate client (not through the driver)."""
    group = lab.owned_group()
    assert group is not None
    return {(r["IsEgress"], r["IpProtocol"], r["FromPort"], r["ToPort"], r.get("CidrIpv4") or r.get("CidrIpv6"))
            for r in lab.rules(group["GroupId"])}


def test_first_apply_creates_a_tagged_group_attaches_it_and_drops_the_default_egress(ec2_lab: Ec2Lab) -> None:
    lab, proxy = ec2_lab, ec2_lab.proxy
    driver = lab.driver()
    intended = ruleset(ingress(lab, 6, "10.0.0.0/8", (443, 443), provenance=Provenance(rules=("shop-web",))),
                       egress(lab, 17, "10.10.0.53/32", (53, 53)))
    change, report = plan_and_apply(driver, intended)
    assert report is not None
    group = lab.owned_group()
    assert group is not None
    tags = {t["Key"]: t["Value"] for t in group["Tags"]}
    assert tags == {"microseg:managed": POINT, "microseg:point": POINT}
    # the default allow-all egress rules (IPv4 and, in an IPv6 VPC, IPv6) are gone: the policy does not allow them
    assert native_rules(lab) == {(False, "tcp", 443, 443, "10.0.0.0/8"), (True, "udp", 53, 53, "10.10.0.53/32")}
    gid = group["GroupId"]
    assert lab.groups_of(lab.enis["web1"]) == sorted([lab.default_sg, gid])
    assert lab.groups_of(lab.enis["web2"]) == sorted([lab.default_sg, gid])
    assert lab.groups_of(lab.enis["other"]) == [lab.default_sg]
    calls = [json.loads(c)["call"] for c in change.commands]
    assert calls == ["create_security_group", "authorize_security_group_ingress", "authorize_security_group_egress",
                     "revoke_security_group_egress", "modify_network_interface_attribute",
                     "modify_network_interface_attribute"]
    assert proxy.mutating() == report.mutating_calls == change.mutating_calls == 6
    observed = driver.normalize(driver.fetch()).ruleset
    assert observed == intended
    assert {r.provenance.rules for r in observed.rules} == {("shop-web",), ()}


def test_round_trip_ipv6_icmp_and_protocol_numbers(ec2_lab: Ec2Lab) -> None:
    lab = ec2_lab
    driver = lab.driver()
    intended = ruleset(
        ingress(lab, 1, "192.0.2.0/24", icmp_type=8, icmp_code=0),
        ingress(lab, 1, "198.51.100.7/32"),
        ingress(lab, 58, "2001:db8::/32", icmp_type=128),
        ingress(lab, 58, "2001:db8:1::/48"),
        ingress(lab, 6, "2001:db8:2::/48", (8000, 8443)),
        ingress(lab, 50, "203.0.113.0/24"),
        egress(lab, None, "::/0"),
        egress(lab, 17, "10.10.0.0/24", (123, 123)),
    )
    plan_and_apply(driver, intended)
    assert driver.normalize(driver.fetch()).ruleset == intended
    assert native_rules(lab) == {
        (False, "icmp", 8, 0, "192.0.2.0/24"), (False, "icmp", -1, -1, "198.51.100.7/32"),
        (False, "icmpv6", 128, -1, "2001:db8::/32"), (False, "icmpv6", -1, -1, "2001:db8:1::/48"),
        (False, "tcp", 8000, 8443, "2001:db8:2::/48"), (False, "50", -1, -1, "203.0.113.0/24"),
        (True, "-1", -1, -1, "::/0"), (True, "udp", 123, 123, "10.10.0.0/24"),
    }
    twin, report = plan_and_apply(driver, intended)
    assert twin.empty and report is None


def test_idempotency_twin_makes_zero_mutating_calls_and_one_describe_per_page(ec2_lab: Ec2Lab) -> None:
    lab, proxy = ec2_lab, ec2_lab.proxy
    driver = lab.driver()
    rules = [ingress(lab, 6, f"10.{i}.0.0/16", (443, 443)) for i in range(20)]
    intended = ruleset(*rules, egress(lab, 6, "2001:db8::/32", (443, 443)))
    plan_and_apply(driver, intended)
    proxy.reset()
    twin, report = plan_and_apply(lab.driver(), intended)
    assert twin.empty and report is None
    assert proxy.mutating() == 0
    # 21 rules, 3 ENIs: still one request per describe call (moto answers in one page)
    assert dict(proxy.counts) == {"DescribeSecurityGroups": 1, "DescribeSecurityGroupRules": 1,
                                  "DescribeNetworkInterfaces": 1}


def test_call_budget_for_several_adds_and_removes(ec2_lab: Ec2Lab) -> None:
    lab, proxy = ec2_lab, ec2_lab.proxy
    driver = lab.driver()
    keep_in, keep_out = ingress(lab, 6, "10.1.0.0/16", (22, 22)), egress(lab, 17, "10.10.0.53/32", (53, 53))
    old = ruleset(keep_in, keep_out, *(ingress(lab, 6, f"10.2.{i}.0/24", (80, 80)) for i in range(3)),
                  *(egress(lab, 6, f"10.3.{i}.0/24", (5432, 5432)) for i in range(3)),
                  ingress(lab, 58, "2001:db8::/32"))
    new = ruleset(keep_in, keep_out, *(ingress(lab, 6, f"10.4.{i}.0/24", (443, 443)) for i in range(4)),
                  *(egress(lab, 6, f"10.5.{i}.0/24", (8443, 8443)) for i in range(4)),
                  ingress(lab, 58, "2001:db8:9::/48"), egress(lab, 6, "2001:db8:9::/48", (443, 443)))
    plan_and_apply(driver, old)
    proxy.reset()
    change, report = plan_and_apply(driver, new)
    assert report is not None
    assert {k: v for k, v in proxy.counts.items() if not k.startswith("Describe")} == {
        "AuthorizeSecurityGroupIngress": 1, "RevokeSecurityGroupIngress": 1,
        "AuthorizeSecurityGroupEgress": 1, "RevokeSecurityGroupEgress": 1,
    }
    assert change.mutating_calls == report.mutating_calls == 4
    mutations = [a for a in proxy.log if not a.startswith("Describe")]
    assert mutations.index("AuthorizeSecurityGroupIngress") < mutations.index("RevokeSecurityGroupIngress")
    assert mutations.index("AuthorizeSecurityGroupEgress") < mutations.index("RevokeSecurityGroupEgress")
    assert driver.normalize(driver.fetch()).ruleset == new


def test_membership_changes_attach_and_detach_without_touching_rules(ec2_lab: Ec2Lab) -> None:
    lab, proxy = ec2_lab, ec2_lab.proxy
    intended_for = lambda members: Ruleset(  # noqa: E731
        POINT, Ordering.UNORDERED_ALLOW, Action.DENY,
        (Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.0.0.0/8"]), AddressSet(members.v4),
              dst_ports=((443, 443),)),))
    plan_and_apply(lab.driver(), intended_for(lab.members))
    gid = lab.owned_group()["GroupId"]  # type: ignore[index]
    web3 = lab.eni("10.30.1.13")
    grown = lab.members.union(A(["10.30.1.13/32"]))
    driver = lab.driver(members=grown)
    observed = driver.normalize(driver.fetch()).ruleset
    assert observed.rules[0].dst == lab.members.intersection(A(["0.0.0.0/0"]))  # web3 is not protected yet
    proxy.reset()
    change, _ = plan_and_apply(driver, intended_for(grown))
    assert [json.loads(c)["params"] for c in change.commands] == [
        {"NetworkInterfaceId": web3, "Groups": [lab.default_sg, gid]}]
    assert proxy.mutating() == 1
    assert lab.groups_of(web3) == sorted([lab.default_sg, gid])
    shrunk = A(["10.30.1.11/32", f"{lab.v6(0x11)}/128", "10.30.1.13/32"])
    driver = lab.driver(members=shrunk)
    assert driver.normalize(driver.fetch()).ruleset != intended_for(shrunk)  # web2 still carries the group
    change, _ = plan_and_apply(driver, intended_for(shrunk))
    assert len(change.commands) == 1 and "detach" in json.loads(change.commands[0])["note"]
    assert lab.groups_of(lab.enis["web2"]) == [lab.default_sg]
    assert plan_and_apply(driver, intended_for(shrunk))[0].empty


def test_unmanaged_group_on_a_member_eni_is_kept_listed_and_survives_rollback(ec2_lab: Ec2Lab) -> None:
    lab = ec2_lab
    legacy = lab.ec2.create_security_group(GroupName="legacy-web", Description="hand made", VpcId=lab.vpc_id)
    legacy_id = legacy["GroupId"]
    lab.ec2.authorize_security_group_ingress(GroupId=legacy_id, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "10.9.0.0/16"}]}])
    lab.ec2.modify_network_interface_attribute(NetworkInterfaceId=lab.enis["web1"], Groups=[lab.default_sg, legacy_id])
    legacy_rules = lab.rules(legacy_id)
    driver = lab.driver()
    checkpoint = driver.checkpoint()
    unmanaged = {u.name: u for u in driver.normalize(driver.fetch()).unmanaged}
    assert unmanaged[legacy_id].kind == "security-group" and "legacy-web" in unmanaged[legacy_id].detail
    plan_and_apply(driver, ruleset(ingress(lab, 6, "10.0.0.0/8", (443, 443))))
    gid = lab.owned_group()["GroupId"]  # type: ignore[index]
    assert lab.groups_of(lab.enis["web1"]) == sorted([lab.default_sg, legacy_id, gid])
    assert lab.rules(legacy_id) == legacy_rules
    driver.rollback(checkpoint)
    assert driver.fetch().fingerprint() == checkpoint.fingerprint
    assert lab.owned_group() is None
    assert lab.groups_of(lab.enis["web1"]) == sorted([lab.default_sg, legacy_id])
    assert lab.rules(legacy_id) == legacy_rules


def test_group_with_our_name_but_without_the_owner_tag_is_never_touched(ec2_lab: Ec2Lab) -> None:
    lab, proxy = ec2_lab, ec2_lab.proxy
    squatter = lab.ec2.create_security_group(GroupName=GROUP_NAME, Description="not ours", VpcId=lab.vpc_id,
                                             TagSpecifications=[{"ResourceType": "security-group",
                                                                 "Tags": [{"Key": "team", "Value": "web"}]}])
    before = lab.rules(squatter["GroupId"])
    driver = lab.driver()
    with pytest.raises(PermanentDriverError, match="without the owner tag"):
        plan_and_apply(driver, ruleset(ingress(lab, 6, "10.0.0.0/8", (443, 443))))
    assert proxy.mutating() == 0
    assert lab.rules(squatter["GroupId"]) == before
    # a shared owner tag (as in the worked example's inventory) is honoured too: this tag is not it
    other = lab.driver(owner_tag={"managed-by": "microseg"})
    with pytest.raises(PermanentDriverError, match="never edits untagged groups"):
        other.normalize(other.fetch())


def test_shared_owner_tag_of_the_inventory_finds_the_group_by_name(ec2_lab: Ec2Lab) -> None:
    lab = ec2_lab
    shared = {"managed-by": "microseg"}
    mine = lab.driver(owner_tag=shared)
    neighbour = lab.driver(owner_tag=shared, security_group_name="mseg-shop-dev-app",
                           members=A(["10.30.1.50/32"]))
    plan_and_apply(neighbour, Ruleset(POINT, Ordering.UNORDERED_ALLOW, Action.DENY, (
        Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.0.0.0/8"]), A(["10.30.1.50/32"]), dst_ports=((80, 80),)),)))
    intended = ruleset(ingress(lab, 6, "10.0.0.0/8", (443, 443)))
    plan_and_apply(mine, intended)
    assert mine.normalize(mine.fetch()).ruleset == intended
    app = lab.owned_group("mseg-shop-dev-app")
    assert app is not None and native_rules_of(lab, app["GroupId"]) == {(False, "tcp", 80, 80, "10.0.0.0/8")}


def native_rules_of(lab: Ec2Lab, group_id: str) -> set[tuple[Any, ...]]:
    return {(r["IsEgress"], r["IpProtocol"], r["FromPort"], r["ToPort"], r.get("CidrIpv4") or r.get("CidrIpv6"))
            for r in lab.rules(group_id)}


def test_hand_made_drift_is_repaired_and_a_group_reference_fails_closed(ec2_lab: Ec2Lab) -> None:
    lab = ec2_lab
    driver = lab.driver()
    intended = ruleset(ingress(lab, 6, "10.0.0.0/8", (443, 443)))
    plan_and_apply(driver, intended)
    gid = lab.owned_group()["GroupId"]  # type: ignore[index]
    lab.ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    drifted = driver.normalize(driver.fetch()).ruleset
    assert len(drifted.rules) == 2
    change, _ = plan_and_apply(driver, intended)
    assert [json.loads(c)["call"] for c in change.commands] == ["revoke_security_group_ingress"]
    assert driver.normalize(driver.fetch()).ruleset == intended
    # a reference to an unmanaged group of the VPC reads as that group's members now, is listed, and is repaired
    lab.ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "UserIdGroupPairs": [{"GroupId": lab.default_sg}]}])
    observed = driver.normalize(driver.fetch())
    ssh = [r for r in observed.ruleset.rules if r.dst_ports == ((22, 22),)]
    assert {str(n) for r in ssh for n in r.src.networks} == {  # web1 (both families), web2 and other carry it
        "10.30.1.11/32", "10.30.1.12/32", "10.30.1.50/32", f"{lab.v6(0x11)}/128"}
    listed = {u.name: u for u in observed.unmanaged if u.kind == "security-group-reference"}
    assert "does not manage" in listed[lab.default_sg].detail
    change, _ = plan_and_apply(driver, intended)
    assert [json.loads(c)["params"].get("SecurityGroupRuleIds") is not None for c in change.commands] == [True]
    assert driver.normalize(driver.fetch()).ruleset == intended
    # a reference microseg cannot read (a group of another VPC) fails closed, naming the rule and the group
    other_vpc = lab.ec2.create_vpc(CidrBlock="10.31.0.0/16")["Vpc"]["VpcId"]
    elsewhere = lab.ec2.create_security_group(GroupName="elsewhere", Description="x", VpcId=other_vpc)["GroupId"]
    lab.ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "UserIdGroupPairs": [{"GroupId": elsewhere}]}])
    with pytest.raises(ParseError, match=rf"rule sgr-\w+ of {GROUP_NAME} references {elsewhere}, which is not a "
                                         rf"security group of this VPC"):
        driver.normalize(driver.fetch())


def test_apply_refuses_calls_it_would_never_render(ec2_lab: Ec2Lab) -> None:
    lab, proxy = ec2_lab, ec2_lab.proxy
    driver: AwsSecurityGroupDriver = lab.driver()
    plan_and_apply(driver, ruleset(ingress(lab, 6, "10.0.0.0/8", (443, 443))))
    gid = lab.owned_group()["GroupId"]  # type: ignore[index]
    proxy.reset()

    def attempt(call: str, **params: Any) -> None:
        driver.fetch()
        driver.apply(NativeChange(POINT, "aws_sg", "api-calls", (json.dumps({"call": call, "params": params}),)))

    everything = [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    with pytest.raises(PermanentDriverError, match="not the owned group"):
        attempt("authorize_security_group_ingress", GroupId=lab.default_sg, IpPermissions=everything)
    with pytest.raises(PermanentDriverError, match="not a call this driver sends"):
        attempt("delete_vpc", VpcId=lab.vpc_id)
    with pytest.raises(PermanentDriverError, match="which exists already"):
        attempt("create_security_group", GroupName=GROUP_NAME, Description="x", VpcId=lab.vpc_id)
    with pytest.raises(PermanentDriverError, match="only the owned group may be attached or detached"):
        attempt("modify_network_interface_attribute", NetworkInterfaceId=lab.enis["web1"], Groups=[gid])
    with pytest.raises(PermanentDriverError, match="not an ENI of"):
        attempt("modify_network_interface_attribute", NetworkInterfaceId="eni-0000", Groups=[gid])
    assert proxy.mutating() == 0


def test_the_worked_example_point_compiles_applies_and_converges(ec2_lab: Ec2Lab) -> None:
    """The repository's policy and inventory, compiled for aws-sg-dev-web, applied to a VPC holding its members."""
    from datetime import date
    from pathlib import Path

    from orchestrator.engine.project import load_project
    from orchestrator.inventory.scope import selected_workloads

    repo = Path(__file__).resolve().parents[1]
    project = load_project(repo / "policies", repo / "inventory", today=date.today())
    compiled = project.compile([POINT]).points[POINT]
    target = compiled.target
    members = target.scope if target.members is None else target.members
    point = project.inventory.point(POINT)
    lab = ec2_lab
    vpc = lab.ec2.create_vpc(CidrBlock="10.30.0.0/16", AmazonProvidedIpv6CidrBlock=True)["Vpc"]["VpcId"]
    subnet = lab.ec2.create_subnet(VpcId=vpc, CidrBlock="10.30.1.0/24", Ipv6CidrBlock="fd00:30:1::/64")["Subnet"]
    for workload in selected_workloads(point, project.inventory.workloads):
        v4 = [str(a) for a in workload.addresses if a.version == 4]
        v6 = [{"Ipv6Address": str(a)} for a in workload.addresses if a.version == 6]
        lab.ec2.create_network_interface(SubnetId=subnet["SubnetId"], PrivateIpAddress=v4[0], Ipv6Addresses=v6)
    settings = {**point.settings, "vpc_id": vpc, "endpoint_url": lab.proxy.url}
    driver = AwsSecurityGroupDriver(PointContext(POINT, "aws_sg", Connection(POINT), settings, 5.0, members),
                                    session=lab.session)
    lab.drivers.append(driver)
    change, report = plan_and_apply(driver, compiled.ruleset)
    assert report is not None and compiled.ruleset.rules
    calls = Counter(json.loads(c)["call"] for c in change.commands)
    enis = len(selected_workloads(point, project.inventory.workloads))
    assert calls["create_security_group"] == 1 and calls["modify_network_interface_attribute"] == enis == 2
    assert all(n == 1 for call, n in calls.items() if "security_group_" in call)  # ≤ 1 call per kind and direction
    assert report.mutating_calls == change.mutating_calls == sum(calls.values())
    assert driver.normalize(driver.fetch()).ruleset == compiled.ruleset
    assert plan_and_apply(driver, compiled.ruleset)[0].empty
    group = lab.ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]},
                                                      {"Name": "group-name", "Values": ["mseg-shop-dev-web"]}])
    assert {"Key": "managed-by", "Value": "microseg"} in group["SecurityGroups"][0]["Tags"]


# ---------------------------------------------------------------- a point that filters ingress only

ALL_EGRESS_V4 = (True, "-1", -1, -1, "0.0.0.0/0")
ALL_EGRESS_V6 = (True, "-1", -1, -1, "::/0")


def calls_of(change: NativeChange) -> list[str]:
    return [json.loads(c)["call"] for c in change.commands]


@pytest.mark.parametrize("lab_fixture", ["ec2_lab", "ec2_lab_v4"])
def test_an_ingress_only_points_new_group_is_egress_neutral(request: pytest.FixtureRequest, lab_fixture: str) -> None:
    """EC2 gives a new group allow-all egress (IPv4, and IPv6 in an IPv6 VPC). An ENI's groups add up, so keeping
    it would open the egress of every member whose other groups restrict it: the group of an ingress-only point
    gives it up and carries no egress rule, leaving each member's egress exactly as its other groups make it."""
    lab: Ec2Lab = request.getfixturevalue(lab_fixture)
    ipv6 = lab_fixture == "ec2_lab"
    driver = lab.driver(directions=INGRESS_ONLY)
    rules = [ingress(lab, 6, "10.0.0.0/8", (443, 443))] + ([ingress(lab, 58, "2001:db8::/32", icmp_type=128)]
                                                           if ipv6 else [])
    intended = ruleset(*rules)
    change, report = plan_and_apply(driver, intended)
    assert report is not None
    assert calls_of(change) == ["create_security_group", "authorize_security_group_ingress",
                                "revoke_security_group_egress", "modify_network_interface_attribute",
                                "modify_network_interface_attribute"]
    assert native_rules(lab) == {(False, "tcp", 443, 443, "10.0.0.0/8")} | (
        {(False, "icmpv6", 128, -1, "2001:db8::/32")} if ipv6 else set())
    for eni in (lab.enis["web1"], lab.enis["web2"]):  # the members keep their other group: its egress rules
        assert lab.default_sg in lab.groups_of(eni)
    observed = driver.normalize(driver.fetch())
    assert observed.ruleset == intended  # the members' default group is listed unmanaged, as always
    assert not [u for u in observed.unmanaged if u.kind == "security-group-rule"]  # no egress rule left behind
    twin, twin_report = plan_and_apply(driver, intended)
    assert twin.empty and twin_report is None


def test_an_ingress_only_point_leaves_an_existing_groups_egress_as_it_is(ec2_lab: Ec2Lab) -> None:
    lab, proxy = ec2_lab, ec2_lab.proxy
    dns = egress(lab, 17, "10.10.0.53/32", (53, 53))
    plan_and_apply(lab.driver(), ruleset(ingress(lab, 6, "10.0.0.0/8", (443, 443)), dns))
    gid = lab.owned_group()["GroupId"]  # type: ignore[index]
    lab.ec2.authorize_security_group_egress(GroupId=gid, IpPermissions=[  # a hand-made egress rule: not ours either
        {"IpProtocol": "tcp", "FromPort": 25, "ToPort": 25, "PrefixListIds": [{"PrefixListId": "pl-0123"}]}])
    before = {r["SecurityGroupRuleId"]: r for r in lab.rules(gid) if r["IsEgress"]}
    assert len(before) == 2
    driver = lab.driver(directions=INGRESS_ONLY)  # the inventory now says `directions: [ingress]`
    intended = ruleset(ingress(lab, 6, "10.0.0.0/8", (8443, 8443)))
    proxy.reset()
    change, _ = plan_and_apply(driver, intended)  # a prefix-list egress rule is not read, so it cannot fail this
    assert calls_of(change) == ["authorize_security_group_ingress", "revoke_security_group_ingress"]
    assert {r["SecurityGroupRuleId"]: r for r in lab.rules(gid) if r["IsEgress"]} == before
    assert driver.normalize(driver.fetch()).ruleset == intended
    assert {"AuthorizeSecurityGroupEgress", "RevokeSecurityGroupEgress"}.isdisjoint(proxy.counts)
    # render refuses an egress rule for it (the compiler never sends one), and apply an egress call
    with pytest.raises(PermanentDriverError, match="egress rule for a point that does not filter egress"):
        plan_and_apply(driver, ruleset(ingress(lab, 6, "10.0.0.0/8", (8443, 8443)), dns))
    both = lab.driver()
    with pytest.raises(ParseError, match="prefix list 'pl-0123'"):  # the point filtering both owns it: fails closed
        both.normalize(both.fetch())
    driver.fetch()
    everything = [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    proxy.reset()
    with pytest.raises(PermanentDriverError, match="the point does not filter egress"):
        driver.apply(NativeChange(POINT, "aws_sg", "api-calls", (json.dumps(
            {"call": "authorize_security_group_egress", "params": {"GroupId": gid, "IpPermissions": everything}}),)))
    assert proxy.mutating() == 0


def test_an_ingress_only_rollback_leaves_egress_alone(ec2_lab: Ec2Lab) -> None:
    lab = ec2_lab
    driver = lab.driver(directions=INGRESS_ONLY)
    first = ruleset(ingress(lab, 6, "10.0.0.0/8", (443, 443)))
    plan_and_apply(driver, first)
    gid = lab.owned_group()["GroupId"]  # type: ignore[index]
    checkpoint = driver.checkpoint()
    assert checkpoint.fingerprint == driver.fetch().fingerprint()
    plan_and_apply(driver, ruleset(ingress(lab, 6, "10.0.0.0/8", (443, 443)), ingress(lab, 22, "10.9.0.0/16")))
    # meanwhile someone adds an egress rule to the group (not this point's to manage)
    lab.ec2.authorize_security_group_egress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "udp", "FromPort": 53, "ToPort": 53, "IpRanges": [{"CidrIp": "10.10.0.53/32"}]}])
    egress_now = {r for r in native_rules(lab) if r[0]}
    assert egress_now == {(True, "udp", 53, 53, "10.10.0.53/32")}
    left_alone = [u for u in driver.normalize(driver.fetch()).unmanaged if u.kind == "security-group-rule"]
    assert len(left_alone) == 1 and "egress traffic is not filtered by this point" in left_alone[0].detail
    driver.rollback(checkpoint)
    assert native_rules(lab) == egress_now | {(False, "tcp", 443, 443, "10.0.0.0/8")}
    assert driver.fetch().fingerprint() == checkpoint.fingerprint  # what the engine checks after a rollback
    assert driver.normalize(driver.fetch()).ruleset == first
    driver.rollback(checkpoint)  # idempotent
    assert native_rules(lab) == egress_now | {(False, "tcp", 443, 443, "10.0.0.0/8")}
    # a checkpoint of the point filtering both directions, rolled back while it filters ingress only: egress stays
    both = lab.driver()
    full = both.checkpoint()
    lab.ec2.authorize_security_group_egress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "10.20.0.0/16"}]}])
    plan_and_apply(driver, ruleset(ingress(lab, 6, "10.0.0.0/8", (80, 80))))
    egress_now = {r for r in native_rules(lab) if r[0]}
    lab.driver(directions=INGRESS_ONLY).rollback(full)
    assert native_rules(lab) == egress_now | {(False, "tcp", 443, 443, "10.0.0.0/8")}
    # and a checkpoint of the ingress-only point, rolled back by the point filtering both: egress stays too
    plan_and_apply(driver, ruleset(ingress(lab, 6, "10.0.0.0/8", (80, 80))))
    lab.driver().rollback(checkpoint)
    assert native_rules(lab) == egress_now | {(False, "tcp", 443, 443, "10.0.0.0/8")}


def test_an_ingress_only_point_rolled_back_to_before_its_group_deletes_it(ec2_lab: Ec2Lab) -> None:
    lab = ec2_lab
    driver = lab.driver(directions=INGRESS_ONLY)
    checkpoint = driver.checkpoint()
    plan_and_apply(driver, ruleset(ingress(lab, 6, "10.0.0.0/8", (443, 443))))
    assert lab.owned_group() is not None
    driver.rollback(checkpoint)
    assert lab.owned_group() is None
    assert lab.groups_of(lab.enis["web1"]) == [lab.default_sg]
    assert driver.fetch().fingerprint() == checkpoint.fingerprint


def test_a_point_switched_from_ingress_only_to_both_directions_plans_the_egress_change(ec2_lab: Ec2Lab) -> None:
    lab = ec2_lab
    inbound = ingress(lab, 6, "10.0.0.0/8", (443, 443))
    plan_and_apply(lab.driver(directions=INGRESS_ONLY), ruleset(inbound))
    assert not {r for r in native_rules(lab) if r[0]}  # egress-neutral
    driver = lab.driver()  # the inventory now says `directions: [ingress, egress]`
    intended = ruleset(inbound, egress(lab, 17, "10.10.0.53/32", (53, 53)))
    change, report = plan_and_apply(driver, intended)
    assert report is not None
    assert calls_of(change) == ["authorize_security_group_egress"]
    assert native_rules(lab) == {(False, "tcp", 443, 443, "10.0.0.0/8"), (True, "udp", 53, 53, "10.10.0.53/32")}
    assert driver.normalize(driver.fetch()).ruleset == intended
    assert plan_and_apply(driver, intended)[0].empty
