"""The shared driver contract suite (drivers/testing.py) run against the AWS SG driver on moto's EC2 server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from drivers.aws_sg import AwsSecurityGroupDriver
from drivers.testing import DriverContract
from orchestrator.model.rules import Action, AddressSet, Direction, Ordering, Provenance, Rule, Ruleset

if TYPE_CHECKING:
    from tests.aws_fixtures import Ec2Lab

pytest_plugins = ["tests.aws_fixtures"]
POINT = "aws-sg-dev-web"
A = AddressSet.of


@pytest.fixture
def driver(ec2_lab: Ec2Lab) -> Iterator[AwsSecurityGroupDriver]:
    yield ec2_lab.driver()


@pytest.fixture
def ingress_only_driver(ec2_lab: Ec2Lab) -> Iterator[AwsSecurityGroupDriver]:
    """The same point filtering ingress only (inventory ``directions: [ingress]``)."""
    yield ec2_lab.driver(directions=frozenset({Direction.INGRESS}))


@pytest.fixture
def intended(ec2_lab: Ec2Lab) -> list[Ruleset]:
    v4, v6 = AddressSet(ec2_lab.members.v4), AddressSet(ec2_lab.members.v6)
    why = Provenance(rules=("shop-web",))
    https = Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.0.0.0/8"]), v4, dst_ports=((443, 443),), provenance=why)
    https6 = Rule(Action.PERMIT, Direction.INGRESS, 6, A(["2001:db8::/32"]), v6, dst_ports=((443, 443),))
    ping6 = Rule(Action.PERMIT, Direction.INGRESS, 58, A(["2001:db8::/32"]), v6, icmp_type=128)
    dns = Rule(Action.PERMIT, Direction.EGRESS, 17, v4, A(["10.10.0.53/32"]), dst_ports=((53, 53),))
    app = Rule(Action.PERMIT, Direction.EGRESS, 6, v4, A(["10.30.2.0/24"]), dst_ports=((8000, 8443),))
    ping = Rule(Action.PERMIT, Direction.INGRESS, 1, A(["192.0.2.0/24"]), v4, icmp_type=8, icmp_code=0)
    anything = Rule(Action.PERMIT, Direction.EGRESS, None, v6, A(["::/0"]))
    return [
        Ruleset(POINT, Ordering.UNORDERED_ALLOW, Action.DENY, tuple(sorted([https, https6, ping6, dns],
                                                                          key=Rule.key))),
        Ruleset(POINT, Ordering.UNORDERED_ALLOW, Action.DENY, tuple(sorted([https, app, ping, anything],
                                                                          key=Rule.key))),
    ]


class TestAwsSecurityGroupContract(DriverContract):
    """fetch/normalize/render/checkpoint/apply/rollback as every driver must behave, against moto over HTTP."""


@pytest.fixture
def additive_attachments() -> bool:
    """An ENI's security groups add up: an ingress-only point's group is egress-neutral by holding no egress rule."""
    return True
