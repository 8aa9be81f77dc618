"""GCP firewall driver under faults: throttling, 5xx, lost answers, rejected calls, failure mid-apply, rollback."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from drivers.gcp_firewall.plan import Call
from drivers.testing import assert_matches, plan_and_apply
from orchestrator.model.errors import PermanentDriverError, TransientDriverError
from orchestrator.model.rules import Action
from simulators.gcp_compute import FakeCompute, serve
from tests.test_gcp_firewall_driver import FULL, ONE, PROD, PROJECT, STEM, make_driver, render_for, ruleset, ssh

TARGET = ruleset(ONE, ssh("10.0.0.1"), PROD, default=Action.PERMIT)  # from FULL: 4 inserts, 8 deletes


@pytest.fixture
def fake() -> Iterator[FakeCompute]:
    yield from serve()


class LoopbackGuard:
    """Refuses (and records) every name lookup but 127.0.0.1: proof that nothing left the loopback."""

    def __init__(self) -> None:
        self.refused: list[str] = []
        self._real = socket.getaddrinfo

    def __call__(self, host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in ("127.0.0.1", b"127.0.0.1"):
            self.refused.append(str(host))
            raise socket.gaierror(socket.EAI_NONAME, f"test guard: {host} is not the fake")
        return self._real(host, *args, **kwargs)


def test_throttled_call_is_retried_after_retry_after(fake: FakeCompute) -> None:
    sleeps: list[float] = []
    driver = make_driver(fake, sleeps=sleeps)
    fake.fail("firewalls.insert", nth=2, status=429, retry_after="7")
    fake.fail("operations.wait", nth=3, status=503)
    _, report = plan_and_apply(driver, FULL)
    assert report is not None and report.mutating_calls == 9
    assert sleeps == [7.0, 1.0]  # Retry-After honoured; 1 s when a 5xx gives none
    assert fake.calls("firewalls.insert") == 10 and fake.calls("operations.wait") == 10
    assert_matches(driver, FULL)
    assert len(fake.rules(PROJECT)) == 9  # nothing twice


@pytest.mark.parametrize(("status", "delay"), [(429, 2.0), (500, 1.0), (503, 1.0)])
def test_failing_fetch_is_transient(fake: FakeCompute, status: int, delay: float) -> None:
    fake.fail("firewalls.list", status=status, retry_after="2" if status == 429 else None)
    driver = make_driver(fake)
    with pytest.raises(TransientDriverError) as raised:
        driver.fetch()
    assert raised.value.delay == delay and str(status) in str(raised.value)
    assert driver.fetch().native["owned"] == []  # the engine's retry then succeeds


def test_hung_list_times_out_as_transient(fake: FakeCompute) -> None:
    fake.fail("firewalls.list", hang=0.6)
    with pytest.raises(TransientDriverError, match="list the firewall rules"):
        make_driver(fake, timeout=0.2).fetch()


def test_lost_answer_is_retried_once_with_the_same_request_id(fake: FakeCompute) -> None:
    driver = make_driver(fake, timeout=0.3)
    fake.fail("firewalls.insert", nth=3, hang=0.6)  # served, but the answer never reaches the driver in time
    _, report = plan_and_apply(driver, FULL)
    assert report is not None and fake.calls("firewalls.insert") == 10
    assert len(fake.operations) == 9  # the retry got the first attempt's operation back: inserted once
    assert_matches(driver, FULL)


@pytest.mark.parametrize("fault", [
    {"kind": "firewalls.insert", "nth": 2, "status": 400},
    {"kind": "firewalls.delete", "nth": 3, "operation_error": "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE"},
    {"kind": "firewalls.delete", "nth": 5, "status": 500, "times": 4},
], ids=["rejected-insert", "failed-operation", "5xx-exhausted"])
def test_failure_mid_apply_then_rollback_restores_the_fetch(fake: FakeCompute, fault: dict[str, Any]) -> None:
    driver = make_driver(fake)
    plan_and_apply(driver, FULL)
    before = driver.fetch()
    checkpoint = driver.checkpoint()
    assert checkpoint.fingerprint == before.fingerprint()
    change = render_for(driver, TARGET)
    fake.fail(**fault)
    with pytest.raises((PermanentDriverError, TransientDriverError)) as raised:
        driver.apply(change)
    assert STEM in str(raised.value)  # the failed call names its rule
    assert driver.fetch().fingerprint() != before.fingerprint()  # half-way: neither old nor new
    driver.rollback(checkpoint)
    assert driver.fetch().fingerprint() == before.fingerprint()
    assert driver.normalize(driver.fetch()).ruleset == driver.normalize(before).ruleset
    fake.reset_counts()
    driver.rollback(checkpoint)  # idempotent: nothing left to do
    assert fake.mutating_calls() == 0


def test_rollback_replaces_what_a_patch_cannot_clear(fake: FakeCompute) -> None:
    driver = make_driver(fake)
    plan_and_apply(driver, ruleset(ssh("10.0.0.1")))
    checkpoint = driver.checkpoint()
    name = f"{STEM}i001"
    fake.firewalls[PROJECT][name]["destinationRanges"] = ["10.30.3.11/32"]  # a hand edit adds a field
    fake.reset_counts()
    driver.rollback(checkpoint)
    assert fake.calls("firewalls.update") == 1 and fake.calls("firewalls.patch") == 0
    assert driver.fetch().fingerprint() == checkpoint.fingerprint


def test_conflict_is_permanent_and_names_the_rule(fake: FakeCompute) -> None:
    driver = make_driver(fake)
    change = render_for(driver, ruleset(ssh("10.0.0.1")))
    first = json.loads(change.commands[0].split(" ", 2)[2])
    fake.seed(PROJECT, first)  # someone else created it between plan and apply
    with pytest.raises(PermanentDriverError, match=rf"insert firewall rule {STEM}i001: the rule already exists"):
        driver.apply(change)


def test_invalid_name_is_permanent_and_names_the_rule(fake: FakeCompute) -> None:
    driver = make_driver(fake)
    body = {"name": "Bad_Name", "network": f"projects/{PROJECT}/global/networks/shop-dev",
            "allowed": [{"IPProtocol": "tcp"}], "sourceRanges": ["10.0.0.0/8"]}
    with pytest.raises(PermanentDriverError) as raised:
        driver.session.send(Call("insert", "Bad_Name", 1000, body))
    assert "insert firewall rule Bad_Name" in str(raised.value) and "resource.name" in str(raised.value)
    assert not isinstance(raised.value, TransientDriverError)


def test_forbidden_is_permanent_with_the_permission_needed(fake: FakeCompute) -> None:
    fake.fail("firewalls.list", status=403)
    with pytest.raises(PermanentDriverError, match=r"permission denied .*compute\.firewalls"):
        make_driver(fake).fetch()


def test_operations_are_polled_on_the_fake_only(fake: FakeCompute, monkeypatch: pytest.MonkeyPatch) -> None:
    guard = LoopbackGuard()
    monkeypatch.setattr(socket, "getaddrinfo", guard)
    driver = make_driver(fake)
    _, report = plan_and_apply(driver, FULL)
    assert report is not None and fake.calls("operations.wait") == fake.mutating_calls() == 9
    assert guard.refused == []
    # the trap the driver avoids: the SDK's own operation object polls the public endpoint
    client = compute_v1.FirewallsClient(credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                                        transport="rest", client_options={"api_endpoint": fake.url})
    body = compute_v1.Firewall(name="probe", allowed=[compute_v1.Allowed(I_p_protocol="tcp")],
                               source_ranges=["10.0.0.0/8"])
    operation = client.insert(project=PROJECT, firewall_resource=body)
    with pytest.raises(requests.ConnectionError):
        operation.result(timeout=2)  # type: ignore[no-untyped-call]
    assert guard.refused and all(host == "compute.googleapis.com" for host in guard.refused)
    client.transport.close()  # type: ignore[no-untyped-call]
