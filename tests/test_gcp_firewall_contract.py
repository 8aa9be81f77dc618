"""The shared driver contract suite (drivers/testing.py) run against the GCP firewall driver and FakeCompute."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from google.auth.credentials import AnonymousCredentials

from drivers.gcp_firewall import GcpFirewallDriver
from drivers.testing import DriverContract
from orchestrator.model.driver import Connection, PointContext
from orchestrator.model.rules import Action, AddressSet, Direction, Ordering, Rule, Ruleset
from simulators.gcp_compute import FakeCompute, serve

A = AddressSet.of
POINT = "gcp-fw-dev-db"
MEMBERS4 = A(["10.30.3.11", "10.30.3.12"])
MEMBERS6 = A(["fd00:30:3::11"])


@pytest.fixture
def fake() -> Iterator[FakeCompute]:
    yield from serve()


def make_driver(fake: FakeCompute, directions: frozenset[Direction] = frozenset(Direction)) -> GcpFirewallDriver:
    settings = {"project": "shop-dev-000000", "network": "shop-dev", "target_tags": ["shop-dev-db"],
                "rule_name_prefix": "mseg-", "api_endpoint": fake.url}
    context = PointContext(POINT, "gcp_firewall", Connection("compute.googleapis.com"), settings, timeout=5.0,
                           members=MEMBERS4.union(MEMBERS6), directions=directions)
    return GcpFirewallDriver(context, credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]


@pytest.fixture
def driver(fake: FakeCompute) -> Iterator[GcpFirewallDriver]:
    drv = make_driver(fake)
    yield drv
    drv.close()


@pytest.fixture
def ingress_only_driver(fake: FakeCompute) -> Iterator[GcpFirewallDriver]:
    drv = make_driver(fake, frozenset({Direction.INGRESS}))
    yield drv
    drv.close()


@pytest.fixture
def intended() -> list[Ruleset]:
    block = Rule(Action.DENY, Direction.INGRESS, None, A(["203.0.113.0/24"]), MEMBERS4, log=True)
    db = Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.30.2.0/24", "10.0.0.10"]), MEMBERS4,
              dst_ports=((22, 22), (5432, 5432)))
    dns = Rule(Action.PERMIT, Direction.EGRESS, 17, MEMBERS6, A(["fd00:10::53"]), dst_ports=((53, 53),))
    prod = Rule(Action.DENY, Direction.EGRESS, None, MEMBERS4, A(["10.20.0.0/16"]), log=True)
    one_member = Rule(Action.DENY, Direction.INGRESS, 6, A(["10.66.0.0/16"]), A(["10.30.3.11"]))
    ping6 = Rule(Action.PERMIT, Direction.EGRESS, 58, MEMBERS6, A(["::/0"]))
    return [
        Ruleset(POINT, Ordering.PRIORITY, Action.DENY, (block, db, dns, prod)),
        Ruleset(POINT, Ordering.PRIORITY, Action.PERMIT, (one_member, db, ping6)),
    ]


class TestGcpFirewallContract(DriverContract):
    """fetch/normalize/render/checkpoint/apply/rollback as every driver must behave."""
