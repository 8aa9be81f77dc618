"""The fake ARM server keeps the REST contract the SDK relies on (checked through the unmodified SDK and raw HTTPS)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.network import NetworkManagementClient

from drivers.azure_nsg import AzureNsgDriver
from drivers.testing import plan_and_apply
from orchestrator.model.driver import Connection, PointContext
from orchestrator.model.rules import Action, AddressSet, Direction, Ordering, Rule, Ruleset
from simulators.azure_arm import SUB, FakeArm, FakeCredential, nsg_settings, running_fake_arm

RG, NSG = "rg-shop-dev", "nsg-shop-dev-app"
RULE: dict[str, Any] = {"name": "r1", "properties": {
    "protocol": "Tcp", "sourceAddressPrefix": "*", "sourcePortRange": "*", "destinationAddressPrefix": "10.0.0.1",
    "destinationPortRange": "22", "access": "Allow", "priority": 100, "direction": "Inbound"}}


@pytest.fixture
def arm(tmp_path: Path) -> Iterator[FakeArm]:
    with running_fake_arm(tmp_path, polls_in_progress=2) as fake:
        yield fake


@pytest.fixture
def client(arm: FakeArm) -> Iterator[NetworkManagementClient]:
    with NetworkManagementClient(FakeCredential(), SUB, base_url=arm.base_url, connection_verify=arm.ca_file,
                                 retry_total=0, polling_interval=0.01,
                                 credential_scopes=[f"{arm.base_url}/.default"]) as sdk:
        yield sdk


def raw(arm: FakeArm, path: str, token: bool = True) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(arm.base_url + path, headers={"Authorization": "Bearer x"} if token else {})
    try:
        with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=arm.ca_file)) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_api_version_and_bearer_token_are_required(arm: FakeArm) -> None:
    path = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/networkSecurityGroups/{NSG}"
    assert raw(arm, path) == (400, {"error": {"code": "MissingApiVersionParameter", "message":
                                    "The api-version query parameter (?api-version=) is required for all requests."}})
    status, body = raw(arm, path + "?api-version=2025-05-01", token=False)
    assert status == 401 and body["error"]["code"] == "AuthenticationFailed"


def test_put_is_a_long_running_operation_polled_to_success(arm: FakeArm, client: NetworkManagementClient) -> None:
    with pytest.raises(ResourceNotFoundError, match="ResourceNotFound"):
        client.network_security_groups.get(RG, NSG)
    body = {"location": "westeurope", "properties": {"securityRules": [RULE]}}
    poller = client.network_security_groups.begin_create_or_update(RG, NSG, body)
    assert poller.result().provisioning_state == "Succeeded"
    assert arm.count("GET", "operation") == 3  # InProgress, InProgress, Succeeded
    listed = list(client.security_rules.list(RG, NSG))
    assert [r.name for r in listed] == ["r1"] and listed[0].source_address_prefixes == []
    stale = client.network_security_groups.get(RG, NSG).etag
    client.network_security_groups.begin_create_or_update(RG, NSG, body).result()
    with pytest.raises(HttpResponseError) as caught:
        client.network_security_groups.begin_create_or_update(RG, NSG, body, headers={"If-Match": stale})
    assert caught.value.status_code == 412 and "does not match etag" in str(caught.value)


@pytest.mark.parametrize(("change", "code"), [
    ({"name": "r2"}, "SecurityRuleConflict"),
    ({"name": "r2", "properties": {**RULE["properties"], "priority": 101, "sourceAddressPrefix": None,
                                   "sourceAddressPrefixes": ["*"]}}, "SecurityRuleParameterContainsUnsupportedValue"),
    ({"name": "r2", "properties": {**RULE["properties"], "priority": 99}}, "SecurityRuleInvalidPriority"),
    ({"name": "r2", "properties": {**RULE["properties"], "priority": 101, "destinationPortRange": "70000"}},
     "SecurityRuleInvalidPortRange"),
])
def test_invalid_rules_are_refused_like_arm(client: NetworkManagementClient, change: dict[str, Any],
                                            code: str) -> None:
    second = {**RULE, **change}
    second["properties"] = {k: v for k, v in second["properties"].items() if v is not None}
    body = {"location": "westeurope", "properties": {"securityRules": [RULE, second]}}
    with pytest.raises(HttpResponseError) as caught:
        client.network_security_groups.begin_create_or_update(RG, NSG, body)
    assert caught.value.status_code == 400 and caught.value.error is not None and caught.value.error.code == code


def test_rollback_never_deletes_an_nsg_that_got_attached(arm: FakeArm) -> None:
    context = PointContext("azure-nsg-dev-app", "azure_nsg", Connection("x"), nsg_settings(arm), 5.0)
    driver = AzureNsgDriver(context, credential=FakeCredential())
    checkpoint = driver.checkpoint()  # no NSG yet
    rule = Rule(Action.PERMIT, Direction.INGRESS, 6, AddressSet.of(["10.0.0.0/8"]), AddressSet.of(["10.0.0.1"]))
    plan_and_apply(driver, Ruleset("azure-nsg-dev-app", Ordering.PRIORITY, Action.DENY, (rule,)))
    arm.attach(RG, NSG, f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/virtualNetworks/v/"
                        f"subnets/app")
    driver.rollback(checkpoint)
    nsg = arm.nsg(RG, NSG)
    assert nsg is not None and nsg["properties"]["securityRules"] == [] and arm.count("DELETE", "nsg") == 0
    assert driver.normalize(driver.fetch()).ruleset.rules == ()
    driver.close()
