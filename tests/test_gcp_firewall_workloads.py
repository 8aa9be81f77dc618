"""GcpWorkloadSource against the fake Compute API: zone lists, aggregated list, paging, labels, faults."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.auth.credentials import AnonymousCredentials

import orchestrator.inventory.workloads as workload_sources
from drivers.gcp_firewall.workloads import GcpWorkloadSource
from orchestrator.model.errors import InventoryError, Severity
from simulators.gcp_compute import FakeCompute

PROJECT = "shop-dev-000000"


@pytest.fixture
def fake() -> Iterator[FakeCompute]:
    compute = FakeCompute()
    compute.add_instance(PROJECT, "europe-west1-b", "db-dev-1", labels={"app": "shop", "env": "dev", "tier": "db",
                                                                        "cost-center": "42"},
                         interfaces=[{"networkIP": "10.30.3.11", "ipv6Address": "fd00:30:3::11"}])
    compute.add_instance(PROJECT, "europe-west1-b", "db-dev-2", labels={"app": "shop", "env": "dev", "tier": "db"},
                         interfaces=[{"networkIP": "10.30.3.12"}, {"networkIP": "192.168.7.12"}])
    compute.add_instance(PROJECT, "europe-west1-c", "web-dev-1", labels={"app": "shop", "env": "dev", "tier": "web"},
                         interfaces=[{"networkIP": "10.30.1.11"}], status="TERMINATED")
    compute.add_instance(PROJECT, "europe-west1-d", "no-nic")
    compute.instances[(PROJECT, "us-east1-b")] = []  # a zone without instances
    with compute:
        yield compute


def source(fake: FakeCompute, sleeps: list[float] | None = None, **config: Any) -> GcpWorkloadSource:
    record = sleeps if sleeps is not None else []
    return GcpWorkloadSource({"project": PROJECT, "api_endpoint": fake.url, **config}, Path("."),
                             credentials=AnonymousCredentials(), sleep=record.append)  # type: ignore[no-untyped-call]


def test_aggregated_list_pages_through_every_zone(fake: FakeCompute) -> None:
    loaded = source(fake, page_size=2).load()
    by_name = {w.name: w for w in loaded.workloads}
    assert sorted(by_name) == ["db-dev-1", "db-dev-2", "web-dev-1"]
    assert by_name["db-dev-1"].addresses == (ipaddress.ip_address("10.30.3.11"), ipaddress.ip_address("fd00:30:3::11"))
    assert [str(a) for a in by_name["db-dev-2"].addresses] == ["10.30.3.12", "192.168.7.12"]
    assert by_name["db-dev-1"].labels == {"app": "shop", "env": "dev", "tier": "db", "cost-center": "42"}
    assert fake.calls("instances.aggregatedList") == 2  # 4 instances, 2 per page
    assert [(d.severity, d.code) for d in loaded.diagnostics] == [(Severity.WARNING, "no-address")]
    assert "no-nic" in loaded.diagnostics[0].message


def test_zone_lists_and_label_keys(fake: FakeCompute) -> None:
    loaded = source(fake, zones=["europe-west1-b", "europe-west1-c"], label_keys=["app", "tier"], page_size=1).load()
    assert [w.name for w in loaded.workloads] == ["db-dev-1", "db-dev-2", "web-dev-1"]
    assert all(set(w.labels) == {"app", "tier"} for w in loaded.workloads)
    assert fake.calls("instances.list") == 3 and fake.calls("instances.aggregatedList") == 0
    assert loaded.diagnostics == ()


def test_duplicate_instance_names_across_zones(fake: FakeCompute) -> None:
    fake.add_instance(PROJECT, "europe-west1-c", "db-dev-1", interfaces=[{"networkIP": "10.99.0.1"}])
    loaded = source(fake, zones=["europe-west1-b", "europe-west1-c"]).load()
    assert [str(a) for w in loaded.workloads if w.name == "db-dev-1" for a in w.addresses] == [
        "10.30.3.11", "fd00:30:3::11"]
    assert any(d.code == "duplicate" and d.severity is Severity.ERROR for d in loaded.diagnostics)


def test_throttling_is_retried_and_failures_are_inventory_errors(fake: FakeCompute) -> None:
    sleeps: list[float] = []
    fake.fail("instances.aggregatedList", status=429, retry_after="3")
    assert len(source(fake, sleeps).load().workloads) == 3
    assert sleeps == [3.0]
    fake.fail("instances.list", status=403)
    with pytest.raises(InventoryError, match="permission denied"):
        source(fake, zone="europe-west1-b").load()
    with pytest.raises(InventoryError, match="was not found"):
        source(fake, zone="mars-north1-a").load()
    fake.fail("instances.aggregatedList", status=503, times=3)
    with pytest.raises(InventoryError, match="503"):
        source(fake).load()


@pytest.mark.parametrize(("config", "fragment"), [
    ({"projet": "x"}, "unknown setting 'projet'"),
    ({"project": ""}, "'project'"),
    ({"zone": "a", "zones": ["b"]}, "not both"),
    ({"label_keys": "app,tier"}, None),
    ({"label_keys": [1]}, "label_keys"),
    ({"page_size": 0}, "page_size"),
    ({"credentials": "key.json"}, "credentials"),
])
def test_config_is_checked_without_io(config: dict[str, Any], fragment: str | None) -> None:
    full = {"project": PROJECT, "api_endpoint": "http://127.0.0.1:9", **config}
    if fragment is None:
        assert GcpWorkloadSource(full, Path(".")).label_keys == ("app,tier",)
        return
    with pytest.raises(InventoryError, match=fragment):
        GcpWorkloadSource(full, Path("."))


def test_runs_as_a_registered_workload_source(fake: FakeCompute, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the inventory's sources.yaml, as the pyproject entry point ``gcp`` will register it."""
    entry = {"type": "gcp", "project": PROJECT, "api_endpoint": fake.url, "credentials": "anonymous",
             "zones": ["europe-west1-b"], "label_keys": ["app", "env", "tier"]}
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump({"workload_sources": [entry]}))
    real = workload_sources.get_source
    monkeypatch.setattr(workload_sources, "get_source",
                        lambda name: GcpWorkloadSource if name == "gcp" else real(name))
    loaded = workload_sources.load_workload_sources(tmp_path)
    assert [w.name for w in loaded.workloads] == ["db-dev-1", "db-dev-2"]
    assert loaded.workloads[0].labels == {"app": "shop", "env": "dev", "tier": "db"}
    assert loaded.diagnostics == ()
