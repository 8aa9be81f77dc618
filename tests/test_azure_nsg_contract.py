"""The shared driver contract suite (drivers/testing.py) run against the Azure NSG driver and the fake ARM server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from drivers.azure_nsg import AzureNsgDriver
from drivers.testing import DriverContract
from orchestrator.model.driver import Connection, PointContext
from orchestrator.model.rules import Action, AddressSet, Direction, Ordering, Provenance, Rule, Ruleset
from simulators.azure_arm import FakeCredential, nsg_settings, running_fake_arm

A = AddressSet.of
POINT = "azure-nsg-dev-app"


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[AzureNsgDriver]:
    with running_fake_arm(tmp_path) as arm:
        arm.seed_nsg("rg-shop-dev", "nsg-shop-dev-app", [])
        context = PointContext(POINT, "azure_nsg", Connection("management.azure.com"), nsg_settings(arm), 5.0)
        drv = AzureNsgDriver(context, credential=FakeCredential())
        yield drv
        drv.close()


@pytest.fixture
def ingress_only_driver(driver: AzureNsgDriver) -> Iterator[AzureNsgDriver]:
    """The same NSG and band, for a point whose inventory `directions` is ingress only."""
    context = replace(driver.context, directions=frozenset({Direction.INGRESS}))
    drv = AzureNsgDriver(context, credential=FakeCredential())
    yield drv
    drv.close()


@pytest.fixture
def intended() -> list[Ruleset]:
    ssh = Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.0.0.10/32", "10.10.0.21/32"]), A(["10.30.2.11/32"]),
               dst_ports=((22, 22),), provenance=Provenance(rules=("admin-ssh",)))
    web6 = Rule(Action.PERMIT, Direction.INGRESS, 6, A(["fd00:30:1::/64"]), A(["fd00:30:2::11/128"]),
                dst_ports=((8443, 8443), (9000, 9100)))
    block = Rule(Action.DENY, Direction.INGRESS, None, A(["203.0.113.0/24"]), A(["0.0.0.0/0"]))
    dns = Rule(Action.PERMIT, Direction.EGRESS, 17, A(["10.30.2.11/32"]), A(["10.10.0.53/32"]), dst_ports=((53, 53),))
    esp = Rule(Action.PERMIT, Direction.EGRESS, 50, A(["10.30.2.0/24"]), A(["198.51.100.1/32"]))
    return [
        Ruleset(POINT, Ordering.PRIORITY, Action.DENY, (block, ssh, web6, dns)),
        Ruleset(POINT, Ordering.PRIORITY, Action.PERMIT, (ssh, block, esp)),
    ]


class TestAzureNsgContract(DriverContract):
    """fetch/normalize/render/checkpoint/apply/rollback as every driver must behave."""
