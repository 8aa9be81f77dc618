"""The shared driver contract suite (drivers/testing.py) run against the nftables driver in a test namespace."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from drivers.nftables import NftablesDriver
from drivers.testing import DriverContract
from orchestrator.model.rules import Action, AddressSet, Direction, Mode, Ordering, Rule, Ruleset
from tests.nft_helpers import POINT, driver_in, needs_netns, network_namespace

A = AddressSet.of


@pytest.fixture
def ns() -> Iterator[str]:
    with network_namespace() as name:
        yield name


@pytest.fixture
def driver(ns: str) -> Iterator[NftablesDriver]:
    drv = driver_in(ns)
    yield drv
    drv.close()


@pytest.fixture
def ingress_only_driver(ns: str) -> Iterator[NftablesDriver]:
    drv = driver_in(ns, directions=frozenset({Direction.INGRESS}))
    yield drv
    drv.close()


@pytest.fixture
def intended() -> list[Ruleset]:
    web = Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.0.0.0/8", "192.0.2.7"]), A(["0.0.0.0/0"]),
               dst_ports=((80, 80), (443, 443)))
    dns = Rule(Action.PERMIT, Direction.EGRESS, 17, A(["::/0"]), A(["fd00::53"]), dst_ports=((53, 53),), log=True)
    block = Rule(Action.DENY, Direction.INGRESS, None, A(["203.0.113.0/24"]), A(["0.0.0.0/0"]))
    return [
        Ruleset(POINT, Ordering.FIRST_MATCH, Action.DENY, (web, dns)),
        Ruleset(POINT, Ordering.FIRST_MATCH, Action.PERMIT, (block, web), Mode.MONITOR, stateful=False),
    ]


@needs_netns
class TestNftablesContract(DriverContract):
    """fetch/normalize/render/checkpoint/apply/rollback as every driver must behave."""
