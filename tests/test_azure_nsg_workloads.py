"""The Azure VM/NIC workload source against the fake ARM server (paged listings, tags → labels, problems reported)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.azure_nsg.workloads import AzureWorkloadSource
from orchestrator.model.errors import InventoryError, Severity
from simulators.azure_arm import SUB, FakeArm, FakeCredential, running_fake_arm


@pytest.fixture
def arm(tmp_path: Path) -> Iterator[FakeArm]:
    with running_fake_arm(tmp_path, page_size=2) as fake:
        fake.add_vm("rg-shop-dev", "dev-app-1", {"app": "shop", "tier": "app", "env": "dev", "owner": "team-shop"},
                    [["10.30.2.11", "fd00:30:2::11"]])
        fake.add_vm("rg-shop-dev", "dev-app-2", {"app": "shop", "tier": "app", "env": "dev"},
                    [["10.30.2.12"], ["10.30.9.12"]])
        fake.add_vm("rg-shop-dev", "dev-db-1", {"app": "shop", "tier": "db", "env": "dev"}, [["10.30.3.11"]])
        fake.add_vm("rg-shop-dev", "no-nic", {"app": "shop"}, [])
        fake.add_nic("rg-shop-dev", "orphan-nic", ["10.30.2.99"], None)
        fake.add_vm("rg-other", "other-web", {"app": "other"}, [["10.40.0.5"]])
        yield fake


def source(arm: FakeArm, **config: Any) -> AzureWorkloadSource:
    settings = {"subscription_id": SUB, "base_url": arm.base_url, "ca_bundle": arm.ca_file, **config}
    return AzureWorkloadSource(settings, Path("."), credential=FakeCredential())


def test_each_vm_is_a_workload_with_its_nics_addresses_and_tags(arm: FakeArm) -> None:
    loaded = source(arm, resource_group="rg-shop-dev").load()
    by_name = {w.name: w for w in loaded.workloads}
    assert sorted(by_name) == ["dev-app-1", "dev-app-2", "dev-db-1"]
    assert [str(a) for a in by_name["dev-app-1"].addresses] == ["10.30.2.11", "fd00:30:2::11"]
    assert [str(a) for a in by_name["dev-app-2"].addresses] == ["10.30.2.12", "10.30.9.12"]  # two NICs, one VM
    assert by_name["dev-app-1"].labels == {"app": "shop", "tier": "app", "env": "dev", "owner": "team-shop"}
    assert [(d.severity, d.code) for d in loaded.diagnostics] == [(Severity.WARNING, "no-address")]
    assert "'no-nic'" in loaded.diagnostics[0].message
    # 4 VMs and 5 NICs in the group, in pages of 2: 2 + 3 listing requests, nothing else
    assert arm.count("GET", "vms") == 2 and arm.count("GET", "nics") == 3 and arm.writes() == 0


def test_label_tags_select_and_rename_tags(arm: FakeArm) -> None:
    only = {w.name: w.labels for w in source(arm, label_tags=["app", "tier"]).load().workloads}
    assert only["dev-db-1"] == {"app": "shop", "tier": "db"} and only["other-web"] == {"app": "other"}
    renamed = {w.name: w.labels for w in source(arm, label_tags={"tier": "role"}).load().workloads}
    assert renamed["dev-app-1"] == {"role": "app"}


def test_whole_subscription_and_bad_entries_are_reported_not_fatal(arm: FakeArm) -> None:
    arm.add_vm("rg-other", "bad_tags", {"app": "x"}, [["10.40.0.6"]])
    arm.vms[-1]["tags"] = {"app": True}
    loaded = source(arm).load()
    assert "other-web" in {w.name for w in loaded.workloads}
    assert any("bad_tags" in d.message and d.severity is Severity.ERROR for d in loaded.diagnostics)


def test_a_failing_listing_fails_the_source_clearly(arm: FakeArm) -> None:
    arm.fail("GET", "vms", fault="500")
    with pytest.raises(InventoryError, match="HTTP 500 InternalServerError"):
        source(arm).load()


def test_config_is_checked_without_io(arm: FakeArm) -> None:
    with pytest.raises(InventoryError, match="unknown setting 'resourcegroup'"):
        source(arm, resourcegroup="x")
    with pytest.raises(InventoryError, match="'label_tags' must be"):
        source(arm, label_tags="app")
    with pytest.raises(InventoryError, match="'subscription_id' is required"):
        AzureWorkloadSource({}, Path("."))
    assert arm.count("GET", "vms") == 0
