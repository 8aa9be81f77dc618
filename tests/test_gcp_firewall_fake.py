"""The fake Compute API speaks the contract the unmodified google-cloud-compute REST client expects."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from google.api_core import exceptions as api
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from simulators.gcp_compute import FakeCompute

PROJECT = "p-000"


@pytest.fixture
def fake() -> Iterator[FakeCompute]:
    with FakeCompute(op_seconds=0.2, page_cap=2) as compute:
        yield compute


@pytest.fixture
def clients(fake: FakeCompute) -> Iterator[tuple[compute_v1.FirewallsClient, compute_v1.GlobalOperationsClient]]:
    options = {"api_endpoint": fake.url}
    credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
    firewalls = compute_v1.FirewallsClient(credentials=credentials, transport="rest", client_options=options)
    operations = compute_v1.GlobalOperationsClient(credentials=credentials, transport="rest", client_options=options)
    yield firewalls, operations
    firewalls.transport.close()  # type: ignore[no-untyped-call]
    operations.transport.close()  # type: ignore[no-untyped-call]


def rule(name: str) -> compute_v1.Firewall:
    return compute_v1.Firewall(name=name, source_ranges=["10.0.0.0/8"], target_tags=["db"],
                               allowed=[compute_v1.Allowed(I_p_protocol="tcp", ports=["22", "8000-8080"])])


def test_operation_lifecycle_and_effect(fake: FakeCompute, clients: tuple[compute_v1.FirewallsClient,
                                                                          compute_v1.GlobalOperationsClient]) -> None:
    firewalls, operations = clients
    operation = firewalls.insert_unary(project=PROJECT, firewall_resource=rule("web"))
    status = compute_v1.Operation.Status
    assert operation.status == status.PENDING and operation.id > 0 and operation.operation_type == "insert"
    assert operation.target_link.endswith(f"/projects/{PROJECT}/global/firewalls/web")
    assert operations.get(project=PROJECT, operation=operation.name).status == status.RUNNING
    with pytest.raises(api.NotFound):  # the effect lands when the operation is DONE
        firewalls.get(project=PROJECT, firewall="web")
    started = time.monotonic()
    done = operations.wait(project=PROJECT, operation=operation.name)
    assert done.status == status.DONE and time.monotonic() - started < 1
    got = firewalls.get(project=PROJECT, firewall="web")
    assert got.priority == 1000 and got.direction == "INGRESS" and got.allowed[0].ports == ["22", "8000-8080"]
    assert got.network.endswith(f"/projects/{PROJECT}/global/networks/default") and got.id > 0


def test_errors_have_the_api_shape(fake: FakeCompute, clients: tuple[compute_v1.FirewallsClient,
                                                                     compute_v1.GlobalOperationsClient]) -> None:
    firewalls, operations = clients
    fake.seed(PROJECT, {"name": "web", "sourceRanges": ["10.0.0.0/8"], "allowed": [{"IPProtocol": "tcp"}]})
    with pytest.raises(api.Conflict, match="already exists") as conflict:
        firewalls.insert_unary(project=PROJECT, firewall_resource=rule("web"))
    assert conflict.value.errors[0]["reason"] == "alreadyExists"
    for bad in ("Web", "1web", "web-", "w" * 64):
        with pytest.raises(api.BadRequest, match=r"resource\.name"):
            firewalls.insert_unary(project=PROJECT, firewall_resource=rule(bad))
    with pytest.raises(api.BadRequest, match="mixed"):
        firewalls.insert_unary(project=PROJECT, firewall_resource=compute_v1.Firewall(
            name="mixed", source_ranges=["10.0.0.0/8", "fd00::/8"], allowed=[compute_v1.Allowed(I_p_protocol="all")]))
    with pytest.raises(api.NotFound):
        firewalls.delete_unary(project=PROJECT, firewall="nope")
    with pytest.raises(api.NotFound):
        operations.get(project=PROJECT, operation="operation-0-0")
    fake.fail("firewalls.get", status=429, retry_after="5")
    with pytest.raises(api.TooManyRequests) as throttled:
        firewalls.get(project=PROJECT, firewall="web", retry=None)
    assert throttled.value.response.headers["Retry-After"] == "5"


def test_paging_patch_and_counts(fake: FakeCompute, clients: tuple[compute_v1.FirewallsClient,
                                                                   compute_v1.GlobalOperationsClient]) -> None:
    firewalls, operations = clients
    for n in range(5):
        fake.seed(PROJECT, {"name": f"r{n}", "sourceRanges": ["10.0.0.0/8"], "allowed": [{"IPProtocol": "tcp"}]})
    names = [r.name for r in firewalls.list(request=compute_v1.ListFirewallsRequest(project=PROJECT, max_results=500))]
    assert names == ["r0", "r1", "r2", "r3", "r4"] and fake.counts[("GET", "firewalls.list")] == 3  # cap 2 a page
    patch = compute_v1.Firewall(priority=7, allowed=[compute_v1.Allowed(I_p_protocol="udp")])
    operation = firewalls.patch_unary(project=PROJECT, firewall="r1", firewall_resource=patch)
    operations.wait(project=PROJECT, operation=operation.name)
    patched = fake.rules(PROJECT)["r1"]
    assert patched["priority"] == 7 and patched["allowed"] == [{"IPProtocol": "udp"}]
    assert patched["sourceRanges"] == ["10.0.0.0/8"]  # merge patch: what the body leaves out stays
    assert fake.counts[("PATCH", "firewalls.patch")] == 1 and fake.counts[("POST", "operations.wait")] == 1
