"""`microseg adopt` on an AWS security-group point (issue #14): the groups someone else attached to the members'
ENIs, read through the unmodified boto3 client from moto's EC2 server on loopback, proposed as policy and proven
equivalent; members whose ENIs carry different groups are named and block the proof."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from orchestrator.engine.adopt import propose
from orchestrator.engine.project import Project, load_project
from orchestrator.model.rules import Action, Direction
from orchestrator.packetspace.flowset import Flow
from orchestrator.packetspace.packetspace import decide
from tests.conftest import REPO
from tests.test_engine_switches import TODAY

if TYPE_CHECKING:
    from tests.aws_fixtures import Ec2Lab

pytest_plugins = ["tests.aws_fixtures"]

POINT = "aws-sg-dev-web"  # the worked example's point for web-dev-01/02: 10.30.1.11, 10.30.1.12 (the lab's ENIs)


@pytest.fixture(scope="module")
def project() -> Project:
    return load_project(REPO / "policies", REPO / "inventory", today=TODAY)


def legacy_group(lab: Ec2Lab) -> str:
    group = lab.ec2.create_security_group(GroupName="legacy-web", Description="hand made", VpcId=lab.vpc_id)
    lab.ec2.authorize_security_group_ingress(GroupId=group["GroupId"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "10.9.0.0/16"}]},
        {"IpProtocol": "icmp", "FromPort": 8, "ToPort": -1, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}])
    lab.ec2.authorize_security_group_ingress(GroupId=group["GroupId"], IpPermissions=[  # the members among themselves
        {"IpProtocol": "udp", "FromPort": 9999, "ToPort": 9999, "UserIdGroupPairs": [{"GroupId": group["GroupId"]}]}])
    return str(group["GroupId"])


def test_the_groups_on_the_members_are_read_and_adopted_with_proof(ec2_lab_v4: Ec2Lab, project: Project) -> None:
    lab = ec2_lab_v4
    legacy = legacy_group(lab)
    for eni in ("web1", "web2"):
        lab.ec2.modify_network_interface_attribute(NetworkInterfaceId=lab.enis[eni], Groups=[lab.default_sg, legacy])
    existing = lab.driver(point=POINT).existing()
    assert existing.unreadable == ()
    ingress = [r for r in existing.ruleset.rules if r.direction is Direction.INGRESS]

    def decided(src: str, dst: str, protocol: int, port: int) -> Action:
        return decide(ingress, Action.DENY, Flow.of(src, dst, protocol, port, src_port=40000))[0]

    assert decided("198.51.100.7", "10.30.1.12", 6, 443) is Action.PERMIT
    assert decided("10.9.4.4", "10.30.1.11", 6, 22) is Action.PERMIT
    assert decided("10.8.4.4", "10.30.1.11", 6, 22) is Action.DENY
    assert decided("10.30.1.12", "10.30.1.11", 17, 9999) is Action.PERMIT  # a reference: the group's members now
    assert decided("10.30.1.50", "10.30.1.11", 17, 9999) is Action.DENY
    assert any(o.startswith(f"security group {legacy} (legacy-web) rule sgr-") for o in existing.origins)
    assert any(r.direction is Direction.EGRESS for r in existing.ruleset.rules)  # EC2's default egress

    adoption = propose(project, POINT, existing)
    assert adoption.equivalent, adoption.to_dict()
    services = {s for rule in adoption.policy["rules"] for s in rule["services"]}
    assert {"tcp.443", "tcp.22"} <= services, adoption.policy["rules"]


def test_members_with_different_groups_are_named_and_block_the_proof(ec2_lab_v4: Ec2Lab, project: Project) -> None:
    lab = ec2_lab_v4
    legacy = legacy_group(lab)
    lab.ec2.modify_network_interface_attribute(NetworkInterfaceId=lab.enis["web1"], Groups=[lab.default_sg, legacy])
    existing = lab.driver(point=POINT).existing()
    (problem,) = existing.unreadable
    assert "do not carry one set of security groups" in problem and lab.enis["web1"] in problem
    assert legacy in problem and lab.enis["web2"] in problem
    assert not propose(project, POINT, existing).equivalent
