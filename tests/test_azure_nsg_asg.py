"""Application security groups in the Azure NSG driver, through the unmodified azure-mgmt-network client against the
fake ARM server: written where a rule side is exactly an ASG's members, read back as addresses, membership is
drift, unresolvable references fail closed; and the fake's ASG / NIC contract."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.network import NetworkManagementClient

from drivers.azure_nsg import AzureNsgDriver
from drivers.azure_nsg.layout import parse_settings
from drivers.testing import DriverContract, plan_and_apply
from orchestrator.model.driver import Connection, PointContext
from orchestrator.model.errors import ParseError, PermanentDriverError, TransientDriverError
from orchestrator.model.rules import ANY_ADDRESS, Action, AddressSet, Direction, Ordering, Provenance, Rule, Ruleset
from simulators.azure_arm import SUB, FakeArm, FakeCredential, nsg_settings, running_fake_arm

A = AddressSet.of
POINT = "azure-nsg-dev-app"
RG, NSG = "rg-shop-dev", "nsg-shop-dev-app"
WEB = ["10.30.1.11", "10.30.1.12"]
APP = ["10.30.2.11", "10.30.2.12"]


def asg_id(name: str, rg: str = RG) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Network/applicationSecurityGroups/{name}"


def populate(arm: FakeArm) -> None:
    """asg-web and asg-app with two NICs each, asg-dual (IPv4 + IPv6), asg-empty, asg-other (not configured),
    asg-east (another region), and a NIC in no ASG."""
    for name in ("asg-web", "asg-app", "asg-dual", "asg-empty", "asg-other"):
        arm.add_asg(RG, name)
    arm.add_asg(RG, "asg-east", location="eastus")
    for i, ip in enumerate(WEB):
        arm.add_nic(RG, f"web-{i}", [ip], None, asgs=(asg_id("asg-web"),))
    for i, ip in enumerate(APP):
        arm.add_nic(RG, f"app-{i}", [ip], None, asgs=(asg_id("asg-app"), asg_id("asg-east")))
    arm.add_nic(RG, "dual-0", ["10.30.5.11", "fd00:30:5::11"], None, asgs=(asg_id("asg-dual"),))
    arm.add_nic(RG, "db-0", ["10.30.3.11"], None)


@pytest.fixture
def arm(tmp_path: Path) -> Iterator[FakeArm]:
    with running_fake_arm(tmp_path, page_size=2) as fake:
        populate(fake)
        yield fake


CONFIGURED = ["asg-web", asg_id("asg-app"), "asg-dual", "asg-empty", "asg-east"]


def make_driver(arm: FakeArm, **overrides: Any) -> AzureNsgDriver:
    settings = nsg_settings(arm, **{"application_security_groups": CONFIGURED, **overrides})
    return AzureNsgDriver(PointContext(POINT, "azure_nsg", Connection("management.azure.com"), settings, 5.0),
                          credential=FakeCredential())


@pytest.fixture
def driver(arm: FakeArm) -> Iterator[AzureNsgDriver]:
    drv = make_driver(arm)
    yield drv
    drv.close()


def tcp(port: int, src: Any, dst: Any, direction: Direction = Direction.INGRESS) -> Rule:
    def side(value: Any) -> AddressSet:
        return value if isinstance(value, AddressSet) else A(value)
    return Rule(Action.PERMIT, direction, 6, side(src), side(dst), dst_ports=((port, port),))


def ruleset(*rules: Rule) -> Ruleset:
    return Ruleset(POINT, Ordering.PRIORITY, Action.DENY, rules)


def stored(arm: FakeArm) -> dict[str, dict[str, Any]]:
    nsg = arm.nsg(RG, NSG)
    assert nsg is not None
    return {r["name"]: r["properties"] for r in nsg["properties"]["securityRules"]}


def asgs_of(props: dict[str, Any], side: str) -> list[str]:
    return [a["id"].rsplit("/", 1)[-1] for a in props.get(f"{side}ApplicationSecurityGroups", [])]


def test_rule_sides_that_are_an_asgs_members_are_written_with_the_asg(arm: FakeArm, driver: AzureNsgDriver) -> None:
    both = tcp(443, WEB, APP)
    src_only = tcp(8080, WEB, ["10.30.3.11"])
    superset = tcp(22, [*WEB, "10.30.1.13"], APP[:1])
    intended = ruleset(both, src_only, superset)
    change, report = plan_and_apply(driver, intended)
    assert report is not None and report.mutating_calls == 1 and arm.count("PUT", "nsg") == 1
    rules = stored(arm)
    first = rules["mseg-in-0100"]
    assert (asgs_of(first, "source"), asgs_of(first, "destination")) == (["asg-web"], ["asg-app"])
    assert "sourceAddressPrefix" not in first and first["sourceAddressPrefixes"] == []  # ARM's empty lists
    assert first["destinationAddressPrefixes"] == [] and first["destinationPortRanges"] == ["443"]
    second = rules["mseg-in-0110"]
    assert asgs_of(second, "source") == ["asg-web"] and second["destinationAddressPrefixes"] == ["10.30.3.11/32"]
    assert asgs_of(rules["mseg-in-0120"], "source") == [] and asgs_of(rules["mseg-in-0120"], "destination") == []
    assert "asg:asg-web -> asg:asg-app ports 443" in change.text()
    assert driver.normalize(driver.fetch()).ruleset == intended
    writes = arm.writes()
    twin, twin_report = plan_and_apply(driver, intended)
    assert twin.empty and twin_report is None and arm.writes() == writes, "the twin writes nothing"


def test_fetch_reads_each_asg_once_and_the_nics_page_by_page(arm: FakeArm, driver: AzureNsgDriver) -> None:
    snapshot = driver.fetch()
    assert arm.count("GET", "nsg") == 1 and arm.count("GET", "asg") == len(CONFIGURED)
    assert arm.count("GET", "nics") == 3, "6 NICs in pages of 2: the SDK follows nextLink"
    members = {a["id"].rsplit("/", 1)[-1]: a["members"] for a in snapshot.native["asgs"]}
    assert members == {"asg-web": WEB, "asg-app": APP, "asg-dual": ["10.30.5.11", "fd00:30:5::11"],
                       "asg-empty": [], "asg-east": APP}
    assert snapshot.fingerprint() == driver.fetch().fingerprint()


def test_a_nic_joining_the_asg_is_drift_and_the_next_plan_writes_prefixes(arm: FakeArm,
                                                                          driver: AzureNsgDriver) -> None:
    intended = ruleset(tcp(443, WEB, ["10.30.3.11"]))
    plan_and_apply(driver, intended)
    before = driver.fetch()
    arm.add_nic(RG, "web-new", ["10.30.1.13"], None, asgs=(asg_id("asg-web"),))
    after = driver.fetch()
    assert after.fingerprint() != before.fingerprint(), "a membership change is drift"
    assert driver.normalize(after).ruleset.rules[0].src == A([*WEB, "10.30.1.13"])
    plan_and_apply(driver, intended)  # the ASG now matches more than intended: prefixes instead
    rule = stored(arm)["mseg-in-0100"]
    assert asgs_of(rule, "source") == [] and rule["sourceAddressPrefixes"] == [f"{ip}/32" for ip in WEB]
    assert driver.normalize(driver.fetch()).ruleset == intended
    widened = ruleset(tcp(443, [*WEB, "10.30.1.13"], ["10.30.3.11"]))
    plan_and_apply(driver, widened)
    assert asgs_of(stored(arm)["mseg-in-0100"], "source") == ["asg-web"]


def test_an_asg_that_lost_its_members_reads_as_matching_nothing(arm: FakeArm, driver: AzureNsgDriver) -> None:
    intended = ruleset(tcp(443, ["10.30.3.11"], APP))
    plan_and_apply(driver, intended)
    assert asgs_of(stored(arm)["mseg-in-0100"], "destination") == ["asg-app"]
    arm.nics[:] = [n for n in arm.nics if not n["name"].startswith("app-")]
    assert driver.normalize(driver.fetch()).ruleset.rules[0].dst == AddressSet()
    plan_and_apply(driver, intended)
    assert stored(arm)["mseg-in-0100"]["destinationAddressPrefixes"] == [f"{ip}/32" for ip in APP]


def test_families_regions_and_virtual_networks_limit_where_an_asg_is_used(arm: FakeArm,
                                                                          driver: AzureNsgDriver) -> None:
    arm.add_asg(RG, "asg-far")
    arm.add_nic(RG, "far-0", ["10.40.0.5"], None, asgs=(asg_id("asg-far"),), vnet="vnet-other")
    far = make_driver(arm, application_security_groups=[*CONFIGURED, "asg-far"])
    dual_pinned = tcp(443, ["10.30.3.0/24"], ["10.30.5.11"])  # a prefix side pins IPv4: asg-dual is exact
    dual_open = tcp(444, ANY_ADDRESS, ["10.30.5.11"])  # from anywhere: asg-dual would also admit its IPv6 address
    two_vnets = tcp(445, ["10.40.0.5"], APP)  # asg-far and asg-app are in different virtual networks
    ping = Rule(Action.PERMIT, Direction.INGRESS, 1, ANY_ADDRESS, A(WEB))  # ICMP only opposite a prefix side
    intended = ruleset(dual_pinned, dual_open, two_vnets, ping)
    plan_and_apply(far, intended)
    rules = stored(arm)
    assert asgs_of(rules["mseg-in-0100"], "destination") == ["asg-dual"]
    assert asgs_of(rules["mseg-in-0110"], "destination") == [] and rules["mseg-in-0110"]["sourceAddressPrefix"] == "*"
    assert (asgs_of(rules["mseg-in-0120"], "source"), asgs_of(rules["mseg-in-0120"], "destination")) == (
        ["asg-far"], [])  # one side only; asg-east (same members as asg-app) is in another region: never used
    assert asgs_of(rules["mseg-in-0130"], "destination") == []
    assert far.normalize(far.fetch()).ruleset == intended
    assert plan_and_apply(far, intended)[1] is None
    far.close()


def test_without_the_setting_prefixes_are_written_and_no_asg_is_read(arm: FakeArm) -> None:
    plain = make_driver(arm, application_security_groups=None)
    intended = ruleset(tcp(443, WEB, APP))
    plan_and_apply(plain, intended)
    rule = stored(arm)["mseg-in-0100"]
    assert rule["sourceAddressPrefixes"] == [f"{ip}/32" for ip in WEB] and "sourceApplicationSecurityGroups" not in rule
    assert arm.count("GET", "asg") == 0 and arm.count("GET", "nics") == 0
    assert "asgs" not in plain.fetch().native
    plain.close()


def owned_rule(**props: Any) -> dict[str, Any]:
    base = {"protocol": "Tcp", "sourcePortRange": "*", "destinationAddressPrefix": "10.30.3.11",
            "destinationPortRange": "22", "access": "Allow", "priority": 100, "direction": "Inbound"}
    return {"name": "mseg-in-0100", "properties": {**base, **props}}


def test_an_unresolvable_asg_reference_in_an_owned_rule_fails_closed(arm: FakeArm, driver: AzureNsgDriver) -> None:
    arm.seed_nsg(RG, NSG, [owned_rule(sourceApplicationSecurityGroups=[{"id": asg_id("asg-other")}])])
    with pytest.raises(ParseError, match=r"mseg-in-0100.*asg-other is not in the setting application_security"):
        driver.normalize(driver.fetch())
    arm.seed_nsg(RG, NSG, [owned_rule(sourceApplicationSecurityGroups=[{"id": asg_id("asg-web")}])])
    assert driver.normalize(driver.fetch()).ruleset.rules[0].src == A(WEB)
    del arm.asgs[asg_id("asg-web").lower()]
    with pytest.raises(ParseError, match=r"mseg-in-0100.*asg-web was not found"):
        driver.normalize(driver.fetch())
    hand_made = owned_rule(sourceApplicationSecurityGroups=[{"id": asg_id("asg-other")}])
    hand_made["name"] = "team-rule"
    arm.seed_nsg(RG, NSG, [hand_made])
    assert [u.name for u in driver.normalize(driver.fetch()).unmanaged] == ["team-rule"]  # not owned: not read


def test_member_scope_subscription_sees_nics_of_other_resource_groups(arm: FakeArm) -> None:
    arm.add_nic("rg-other", "web-elsewhere", ["10.30.1.13"], None, asgs=(asg_id("asg-web"),))
    group = make_driver(arm, application_security_groups=["asg-web"])
    whole = make_driver(arm, application_security_groups=["asg-web"], asg_member_scope="subscription")
    assert group.fetch().native["asgs"][0]["members"] == WEB
    assert whole.fetch().native["asgs"][0]["members"] == [*WEB, "10.30.1.13"]
    group.close()
    whole.close()


def test_throttled_asg_read_is_transient(arm: FakeArm, driver: AzureNsgDriver) -> None:
    arm.fail("GET", "asg", fault="429", retry_after=4)
    with pytest.raises(TransientDriverError, match="application security group") as caught:
        driver.fetch()
    assert caught.value.delay == 4.0
    arm.fail("GET", "nics", fault="500")
    with pytest.raises(TransientDriverError, match="list network interfaces"):
        driver.fetch()


def test_settings_name_resolution_and_refusals() -> None:
    base = {"subscription_id": SUB, "resource_group": RG, "nsg_name": NSG}
    settings = parse_settings({**base, "application_security_groups": ["asg-web", asg_id("ASG-WEB"),
                                                                      asg_id("asg-x", "rg-net")]}, POINT)
    assert settings.application_security_groups == (asg_id("asg-web"), asg_id("asg-x", "rg-net"))
    assert settings.nic_groups == (RG, "rg-net")
    with pytest.raises(PermanentDriverError, match="neither an application security group name nor"):
        parse_settings({**base, "application_security_groups": ["a/b"]}, POINT)
    other = asg_id("asg-web").replace(SUB, "11111111-0000-4000-8000-000000000000")
    with pytest.raises(PermanentDriverError, match="not the NSG's"):
        parse_settings({**base, "application_security_groups": [other]}, POINT)
    with pytest.raises(PermanentDriverError, match="must be a list"):
        parse_settings({**base, "application_security_groups": "asg-web"}, POINT)
    with pytest.raises(PermanentDriverError, match="asg_member_scope"):
        parse_settings({**base, "asg_member_scope": "tenant"}, POINT)


# --------------------------------------------------------------------------- the fake's ASG / NIC contract


@pytest.fixture
def client(arm: FakeArm) -> Iterator[NetworkManagementClient]:
    with NetworkManagementClient(FakeCredential(), SUB, base_url=arm.base_url, connection_verify=arm.ca_file,
                                 retry_total=0, polling_interval=0.01,
                                 credential_scopes=[f"{arm.base_url}/.default"]) as sdk:
        yield sdk


def test_fake_asg_get_nic_listing_and_reference_checks(arm: FakeArm, client: NetworkManagementClient) -> None:
    assert client.application_security_groups.get(RG, "asg-web").location == "westeurope"
    with pytest.raises(ResourceNotFoundError, match="ResourceNotFound"):
        client.application_security_groups.get(RG, "asg-missing")
    nics: list[Any] = list(client.network_interfaces.list(RG))
    assert len(nics) == 6 and arm.count("GET", "nics") == 3
    config = nics[0].ip_configurations[0]
    assert config.application_security_groups[0].id == asg_id("asg-web") and config.subnet.id.endswith("/default")
    rule = owned_rule(sourceApplicationSecurityGroups=[{"id": asg_id("asg-missing")}])
    body: Any = {"location": "westeurope", "properties": {"securityRules": [rule]}}
    for refs, code in (([{"id": asg_id("asg-missing")}], "InvalidResourceReference"),
                       ([{"id": asg_id("asg-east")}], "InvalidResourceReference"),
                       ([{"id": asg_id("asg-web")}] * 11, "NumberOfApplicationSecurityGroupsReferencedInSecurity")):
        rule["properties"]["sourceApplicationSecurityGroups"] = refs
        with pytest.raises(HttpResponseError) as caught:
            client.network_security_groups.begin_create_or_update(RG, NSG, body)
        assert caught.value.status_code == 400 and caught.value.error is not None
        assert caught.value.error.code is not None and caught.value.error.code.startswith(code)
    rule["properties"].update(sourceApplicationSecurityGroups=[{"id": asg_id("asg-web")}], sourceAddressPrefix="*")
    with pytest.raises(HttpResponseError, match="cannot be combined"):
        client.network_security_groups.begin_create_or_update(RG, NSG, body)
    del rule["properties"]["sourceAddressPrefix"]
    client.network_security_groups.begin_create_or_update(RG, NSG, body).result()
    echoed: Any = client.network_security_groups.get(RG, NSG)
    assert [a.id for a in echoed.security_rules[0].source_application_security_groups] == [asg_id("asg-web")]


# --------------------------------------------------------------------------- the contract suite, ASGs in use


@pytest.fixture
def contract_driver(tmp_path: Path) -> Iterator[AzureNsgDriver]:
    with running_fake_arm(tmp_path) as fake:
        fake.seed_nsg(RG, NSG, [])
        admins, app = fake.add_asg(RG, "asg-admins"), fake.add_asg(RG, "asg-app")
        fake.add_nic(RG, "admin-0", ["10.0.0.10"], None, asgs=(admins,))
        fake.add_nic(RG, "admin-1", ["10.10.0.21"], None, asgs=(admins,))
        fake.add_nic(RG, "app-0", ["10.30.2.11"], None, asgs=(app,))
        drv = make_driver(fake, application_security_groups=["asg-admins", "asg-app"])
        yield drv
        drv.close()


class TestAzureNsgContractWithAsgs(DriverContract):
    """The shared contract with ASGs configured and matching some rule sides (admins → app, app → DNS)."""

    @pytest.fixture
    def driver(self, contract_driver: AzureNsgDriver) -> AzureNsgDriver:
        return contract_driver

    @pytest.fixture
    def ingress_only_driver(self, contract_driver: AzureNsgDriver) -> Iterator[AzureNsgDriver]:
        """The same NSG and ASGs, for a point whose inventory `directions` is ingress only."""
        drv = AzureNsgDriver(replace(contract_driver.context, directions=frozenset({Direction.INGRESS})),
                             credential=FakeCredential())
        yield drv
        drv.close()

    @pytest.fixture
    def intended(self) -> list[Ruleset]:
        ssh = Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.0.0.10/32", "10.10.0.21/32"]), A(["10.30.2.11/32"]),
                   dst_ports=((22, 22),), provenance=Provenance(rules=("admin-ssh",)))
        block = Rule(Action.DENY, Direction.INGRESS, None, A(["203.0.113.0/24"]), A(["0.0.0.0/0"]))
        dns = tcp(53, ["10.30.2.11/32"], ["10.10.0.53/32"], Direction.EGRESS)
        return [Ruleset(POINT, Ordering.PRIORITY, Action.DENY, (block, ssh, dns)),
                Ruleset(POINT, Ordering.PRIORITY, Action.PERMIT, (ssh, block))]

    def test_the_asgs_are_in_use(self, driver: AzureNsgDriver, intended: list[Ruleset]) -> None:
        change, _ = plan_and_apply(driver, intended[0])
        assert "asg:asg-admins -> asg:asg-app ports 22" in change.text()
        assert "Outbound 100 Allow Tcp asg:asg-app -> 10.10.0.53/32" in change.text()
