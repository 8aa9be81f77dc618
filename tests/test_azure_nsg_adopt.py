"""`microseg adopt` on an Azure NSG point (issue #14): the NSG's rules outside microseg's band, read through the
unmodified azure-mgmt-network client from the fake ARM server, in Azure's order (priority, then the default
rules), proposed as policy and proven equivalent; the default rules' service tags are named and block the proof
unless a catch-all rule of the NSG's own comes first."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from drivers.azure_nsg import AzureNsgDriver
from drivers.azure_nsg.adopt import foreign_enforcement
from drivers.azure_nsg.parse import split_view
from orchestrator.engine.adopt import propose
from orchestrator.engine.project import Project, load_project
from orchestrator.model.driver import Connection, PointContext
from orchestrator.model.rules import Action, AddressSet, Direction
from orchestrator.packetspace.flowset import Flow
from orchestrator.packetspace.packetspace import decide
from simulators.azure_arm import FakeArm, FakeCredential, nsg_settings, running_fake_arm
from tests.conftest import REPO
from tests.test_engine_switches import TODAY

POINT = "azure-nsg-dev-app"  # the worked example's point for app-dev-01/02
RG, NSG = "rg-shop-dev", "nsg-shop-dev-app"
MEMBERS = AddressSet.of(["10.30.2.11", "10.30.2.12", "fd00:30:2::11"])


def inbound(name: str, priority: int, access: str, source: str, protocol: str = "*", port: str = "*") -> dict[str, Any]:
    return {"name": name, "properties": {
        "protocol": protocol, "sourceAddressPrefix": source, "sourcePortRange": "*", "destinationAddressPrefix": "*",
        "destinationPortRange": port, "access": access, "priority": priority, "direction": "Inbound"}}


LEGACY = [
    inbound("AllowAppFromWeb", 2100, "Allow", "10.30.1.0/24", "Tcp", "8443"),
    inbound("DenyOneWeb", 2050, "Deny", "10.30.1.66/32"),
    inbound("DenyEverythingElse", 4096, "Deny", "*"),
    {"name": "AllowAllOut", "properties": {
        "protocol": "*", "sourceAddressPrefix": "*", "sourcePortRange": "*", "destinationAddressPrefix": "*",
        "destinationPortRange": "*", "access": "Allow", "priority": 4096, "direction": "Outbound"}},
]


@pytest.fixture(scope="module")
def project() -> Project:
    return load_project(REPO / "policies", REPO / "inventory", today=TODAY)


@pytest.fixture
def arm(tmp_path: Path) -> Iterator[FakeArm]:
    with running_fake_arm(tmp_path) as fake:
        yield fake


def driver(arm: FakeArm) -> AzureNsgDriver:
    context = PointContext(POINT, "azure_nsg", Connection("management.azure.com"), nsg_settings(arm), 5.0)
    return AzureNsgDriver(replace(context, members=MEMBERS), credential=FakeCredential())


def test_the_nsgs_own_rules_are_read_in_azure_order_and_adopted_with_proof(arm: FakeArm, project: Project) -> None:
    arm.seed_nsg(RG, NSG, LEGACY)
    existing = driver(arm).existing()
    assert existing.unreadable == ()  # the catch-alls at 4096 make the default rules (service tags) moot

    def decided(direction: Direction, src: str, dst: str, protocol: int, port: int) -> Action:
        rules = [r for r in existing.ruleset.rules if r.direction is direction]
        return decide(rules, Action.DENY, Flow.of(src, dst, protocol, port, src_port=40000))[0]

    assert decided(Direction.INGRESS, "10.30.1.5", "10.30.2.11", 6, 8443) is Action.PERMIT
    assert decided(Direction.INGRESS, "10.30.1.66", "10.30.2.11", 6, 8443) is Action.DENY  # priority 2050 first
    assert decided(Direction.INGRESS, "10.30.1.5", "10.30.2.11", 6, 22) is Action.DENY
    assert decided(Direction.EGRESS, "10.30.2.12", "198.51.100.1", 6, 443) is Action.PERMIT
    first_in = next(o for o, r in zip(existing.origins, existing.ruleset.rules, strict=True)
                    if r.direction is Direction.INGRESS)
    assert first_in == "rule DenyOneWeb (priority 2050)"
    assert not any("AllowVnet" in o for o in existing.origins)

    adoption = propose(project, POINT, existing)
    assert adoption.equivalent, adoption.to_dict()


def test_default_rules_with_service_tags_are_named_and_block_the_proof(arm: FakeArm, project: Project) -> None:
    arm.seed_nsg(RG, NSG, LEGACY[:2])  # no catch-all of its own: the default rules decide the rest
    existing = driver(arm).existing()
    named = [u.split(":")[0] for u in existing.unreadable]
    assert named == ["rule AllowVnetOutBound (priority 65000)", "rule AllowInternetOutBound (priority 65001)",
                     "rule AllowVnetInBound (priority 65000)", "rule AllowAzureLoadBalancerInBound (priority 65001)"]
    assert "service tag" in existing.unreadable[0] and "catch-all" in existing.unreadable[0]
    assert {"rule DenyAllInBound (priority 65500)", "rule DenyAllOutBound (priority 65500)"} <= set(existing.origins)
    assert not propose(project, POINT, existing).equivalent


def test_icmp_for_ipv6_members_and_missing_default_rules_are_named(arm: FakeArm) -> None:
    arm.seed_nsg(RG, NSG, [inbound("AllowPing", 2000, "Allow", "*", "Icmp"), *LEGACY[2:]])
    nsg_driver = driver(arm)
    existing = nsg_driver.existing()
    assert existing.unreadable == (
        "rule AllowPing (priority 2000): protocol Icmp with IPv6 members (ICMPv6 semantics are not modelled)",)
    native = nsg_driver.fetch().native
    del native["nsg"]["properties"]["defaultSecurityRules"]
    view = split_view(native, nsg_driver.settings, POINT)
    without = foreign_enforcement(view, nsg_driver.settings, MEMBERS, frozenset(Direction), POINT)
    assert any("lists no defaultSecurityRules" in u for u in without.unreadable)
