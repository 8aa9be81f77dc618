"""`microseg adopt` on an Azure NSG point (issue #14): the NSG's rules outside microseg's band, read through the
unmodified azure-mgmt-network client from the fake ARM server, in Azure's order (priority, then the default
rules), proposed as policy and proven equivalent; service tags (the default rules' and any other) read as Azure
expands them at each member's NIC (its effective security rules), and named, blocking the proof, wherever that
expansion is not known."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from drivers.azure_nsg import AzureNsgDriver
from drivers.azure_nsg.adopt import foreign_enforcement
from drivers.azure_nsg.parse import split_view
from drivers.azure_nsg.tags import expansions
from orchestrator.engine.adopt import propose
from orchestrator.engine.project import Project, load_project
from orchestrator.model.driver import Connection, PointContext
from orchestrator.model.rules import Action, AddressSet, Direction
from orchestrator.packetspace.flowset import Flow
from orchestrator.packetspace.packetspace import decide
from simulators.azure_arm import SUB, FakeArm, FakeCredential, nsg_settings, running_fake_arm
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
    assert arm.count("POST", "effective-nsgs") == 0  # so no NIC's effective rules are read

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


SUBNET = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/virtualNetworks/{vnet}/subnets/default"


def subnet(vnet: str) -> str:
    return SUBNET.format(sub=SUB, rg=RG, vnet=vnet)


def test_service_tags_are_read_as_azure_expands_them_at_each_members_nic(arm: FakeArm, project: Project) -> None:
    """No catch-all of the NSG's own: the default rules decide, with VirtualNetwork, AzureLoadBalancer and Internet
    as Azure's effective security rules expand them at the members' NICs — one rule per group of members whose
    NICs see the same expansions (app-dev-02 sits in a virtual network that is not peered)."""
    arm.add_vnet(RG, "vnet-shared", ["10.40.0.0/16"])
    arm.add_vnet(RG, "vnet-shop-dev", ["10.30.0.0/16", "fd00:30::/40"], peers=("vnet-shared",))
    arm.add_vnet(RG, "vnet-isolated", ["10.30.2.0/24"])
    arm.add_vm(RG, "app-dev-01", {}, [["10.30.2.11", "fd00:30:2::11"]], vnet="vnet-shop-dev")
    arm.add_vm(RG, "app-dev-02", {}, [["10.30.2.12"]], vnet="vnet-isolated")
    arm.seed_nsg(RG, NSG, [*LEGACY[:2], inbound("DenyInternetSsh", 2200, "Deny", "Internet", "Tcp", "22")])
    arm.attach(RG, NSG, subnet("vnet-shop-dev"))
    arm.attach(RG, NSG, subnet("vnet-isolated"))
    existing = driver(arm).existing()
    assert existing.unreadable == ()
    assert arm.count("POST", "effective-nsgs") == 2  # once per member NIC, however many rules name tags

    def decided(direction: Direction, src: str, dst: str, port: int = 22) -> Action:
        rules = [r for r in existing.ruleset.rules if r.direction is direction]
        return decide(rules, Action.DENY, Flow.of(src, dst, 6, port, src_port=40000))[0]

    ingress, egress = Direction.INGRESS, Direction.EGRESS
    assert decided(ingress, "10.30.1.5", "10.30.2.11") is Action.PERMIT  # AllowVnetInBound
    assert decided(ingress, "10.30.1.66", "10.30.2.11") is Action.DENY  # DenyOneWeb (2050) comes first
    assert decided(ingress, "10.40.3.3", "10.30.2.11") is Action.PERMIT  # a peered network is VirtualNetwork
    assert decided(ingress, "10.40.3.3", "10.30.2.12") is Action.DENY  # ... but not in app-dev-02's network
    assert decided(ingress, "10.30.2.99", "10.30.2.12") is Action.PERMIT
    assert decided(ingress, "168.63.129.16", "10.30.2.12") is Action.PERMIT  # the host's VIP (both tags)
    assert decided(ingress, "192.0.2.10", "10.30.2.11", 443) is Action.DENY  # DenyAllInBound
    assert decided(ingress, "fd00:30:1::5", "fd00:30:2::11") is Action.PERMIT
    assert decided(ingress, "2a00:1450::1", "fd00:30:2::11") is Action.DENY
    assert decided(egress, "10.30.2.12", "198.51.100.1", 443) is Action.PERMIT  # AllowInternetOutBound
    assert decided(egress, "10.30.2.12", "10.99.0.1", 443) is Action.DENY  # private, outside every tag
    assert decided(egress, "10.30.2.11", "10.40.0.5", 443) is Action.PERMIT
    assert decided(egress, "fd00:30:2::11", "2a00:1450::1", 443) is Action.PERMIT
    assert "rule AllowVnetInBound (priority 65000)" in existing.origins
    assert "rule DenyInternetSsh (priority 2200)" in existing.origins

    adoption = propose(project, POINT, existing)
    assert adoption.equivalent, adoption.to_dict()


def test_members_whose_tags_azure_does_not_give_are_named(arm: FakeArm) -> None:
    """A member no NIC holds, a NIC no VM holds, a NIC the NSG does not apply to: each named, and the rules
    with tags stay unread (the proof is blocked), while the rules without tags are read."""
    arm.add_vnet(RG, "vnet-shop-dev", ["10.30.0.0/16"])
    arm.add_vnet(RG, "vnet-other", ["10.31.0.0/16"])
    arm.add_vm(RG, "app-dev-01", {}, [["10.30.2.11"]], vnet="vnet-shop-dev")
    arm.add_nic(RG, "spare-nic", ["10.30.2.12"], None)
    arm.add_vm(RG, "app-dev-03", {}, [["10.30.2.13"]], vnet="vnet-other")
    arm.seed_nsg(RG, NSG, LEGACY[:2])
    arm.attach(RG, NSG, subnet("vnet-shop-dev"))
    members = AddressSet.of(["10.30.2.11", "10.30.2.12", "10.30.2.13", "10.30.2.14"])
    context = PointContext(POINT, "azure_nsg", Connection("management.azure.com"), nsg_settings(arm), 5.0)
    existing = AzureNsgDriver(replace(context, members=members), credential=FakeCredential()).existing()
    assert [u.split(":")[0] for u in existing.unreadable] == [
        "rule AllowVnetOutBound (priority 65000)", "rule AllowInternetOutBound (priority 65001)",
        "rule AllowVnetInBound (priority 65000)", "rule AllowAzureLoadBalancerInBound (priority 65001)"]
    why = existing.unreadable[2]
    assert "members 10.30.2.14/32: no network interface listed holds them" in why
    assert "NIC spare-nic" in why and "NicNotAttachedToRunningVm" in why
    assert "NIC app-dev-03-nic0: the NSG does not apply to it" in why
    assert "rule DenyOneWeb (priority 2050)" in existing.origins


def test_expansions_are_read_from_the_nsgs_own_entry_and_disagreements_leave_a_tag_unknown() -> None:
    nsg_id = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/networkSecurityGroups/{NSG}"

    def rule(tag: str, prefixes: list[str]) -> dict[str, Any]:
        return {"name": "defaultSecurityRules/X", "sourceAddressPrefix": tag, "expandedSourceAddressPrefix": prefixes,
                "destinationAddressPrefix": "*", "expandedDestinationAddressPrefix": []}

    answer = {"value": [
        {"networkSecurityGroup": {"id": "/subscriptions/x/other"}, "tagMap": '{"Internet": ["0.0.0.0/0"]}'},
        {"networkSecurityGroup": {"id": nsg_id.upper()},  # ARM ids compare without case
         "tagMap": '{"VirtualNetwork": ["10.1.0.0/24", "168.63.129.16/32"], "Storage": ["20.0.0.0/8"]}',
         "effectiveSecurityRules": [rule("VirtualNetwork", ["168.63.129.16/32", "10.1.0.0/24"]),
                                    rule("Storage", ["20.0.0.0/9"]), rule("Sql", ["not-a-prefix"]),
                                    rule("AzureLoadBalancer", ["168.63.129.16/32"])]}]}
    found, problems, failed = expansions(answer, nsg_id)
    assert failed is None
    assert found == {"virtualnetwork": AddressSet.of(["10.1.0.0/24", "168.63.129.16/32"]),
                     "azureloadbalancer": AddressSet.of(["168.63.129.16/32"])}
    assert set(problems) == {"storage", "sql"} and "disagrees" in problems["storage"]
    assert expansions({"value": [answer["value"][0]]}, nsg_id)[2] == (
        "the NSG does not apply to it (Azure's effective security rules do not list it)")
    assert "no value list" in str(expansions({"oops": 1}, nsg_id)[2])


def test_an_address_two_nics_with_different_expansions_hold_is_named(arm: FakeArm) -> None:
    """Virtual networks may reuse address space: 10.30.2.11 is a NIC in each of two networks, only one of them
    peered with 10.40.0.0/16.  Which NIC a packet reaches is not known here, so the tags are not known there."""
    arm.add_vnet(RG, "vnet-shared", ["10.40.0.0/16"])
    arm.add_vnet(RG, "vnet-a", ["10.30.0.0/16"])
    arm.add_vnet(RG, "vnet-b", ["10.30.0.0/16"], peers=("vnet-shared",))
    arm.add_vm(RG, "vm-a", {}, [["10.30.2.11"]], vnet="vnet-a")
    arm.add_vm(RG, "vm-b", {}, [["10.30.2.11"]], vnet="vnet-b")
    arm.add_vm(RG, "vm-c", {}, [["10.30.2.12"]], vnet="vnet-a")
    arm.seed_nsg(RG, NSG, LEGACY[:2])
    arm.attach(RG, NSG, subnet("vnet-a"))
    arm.attach(RG, NSG, subnet("vnet-b"))
    members = AddressSet.of(["10.30.2.11", "10.30.2.12"])
    context = PointContext(POINT, "azure_nsg", Connection("management.azure.com"), nsg_settings(arm), 5.0)
    existing = AzureNsgDriver(replace(context, members=members), credential=FakeCredential()).existing()
    vnet_in = next(u for u in existing.unreadable if u.startswith("rule AllowVnetInBound"))
    assert "members 10.30.2.11/32: held by NICs that see different expansions" in vnet_in
    assert "10.30.2.12" not in vnet_in  # vm-c's address alone is known


@pytest.mark.parametrize("body", [
    {"value": "x"}, {"value": [5]}, [1, 2], {"value": [{"networkSecurityGroup": 5}]},
    {"value": [{"effectiveSecurityRules": {}}]},
])
def test_an_effective_rules_answer_that_cannot_be_read_is_named_for_its_nic(arm: FakeArm, body: Any) -> None:
    """The SDK types the answer before the driver reads it: what it refuses, or what the driver cannot read,
    is named for that NIC — never an exception out of adopt."""
    arm.add_vnet(RG, "vnet-shop-dev", ["10.30.0.0/16"])
    arm.add_vm(RG, "app-dev-01", {}, [["10.30.2.11"]], vnet="vnet-shop-dev")
    arm.seed_nsg(RG, NSG, LEGACY[:2])
    arm.attach(RG, NSG, subnet("vnet-shop-dev"))
    arm.effective_answers["app-dev-01-nic0"] = body
    context = PointContext(POINT, "azure_nsg", Connection("management.azure.com"), nsg_settings(arm), 5.0)
    existing = AzureNsgDriver(replace(context, members=AddressSet.of(["10.30.2.11"])),
                              credential=FakeCredential()).existing()
    vnet_in = next(u for u in existing.unreadable if u.startswith("rule AllowVnetInBound"))
    assert "NIC app-dev-01-nic0: " in vnet_in


@pytest.mark.parametrize("answer", [
    None, 5, "x", {"value": None}, {"value": [None, 5, "x", {"networkSecurityGroup": None}]},
    {"value": [{"networkSecurityGroup": {"id": 5}}]},
    {"value": [{"networkSecurityGroup": {"id": "NSG"}, "tagMap": "[" * 100_000}]},
    {"value": [{"networkSecurityGroup": {"id": "NSG"}, "tagMap": {"A": 5, 7: ["10.0.0.0/8"], "B": [None]},
                "effectiveSecurityRules": [None, 5, {"sourceAddressPrefix": "C", "expandedSourceAddressPrefix": "x"},
                                           {"sourceAddressPrefix": 5, "expandedSourceAddressPrefix": ["1.2.3.4"]},
                                           {"destinationAddressPrefix": "D",
                                            "expandedDestinationAddressPrefix": ["10.0.0.0/33"]}]}]},
])
def test_expansions_read_any_answer_without_an_exception(answer: Any) -> None:
    found, problems, failed = expansions(answer, "nsg")
    assert failed is not None or (isinstance(found, dict) and isinstance(problems, dict))
    assert not found  # nothing valid in any of them
