"""The NetBox workload source through the unmodified pynetbox client, against a loopback server that follows
NetBox's REST contract (simulators/netbox.py): pagination with `next`, filters, tags and custom fields as
labels, and NetBox's 4xx/5xx answers turned into errors that say what and where."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from orchestrator.inventory.inventory import load_inventory, load_nornir_inventory
from orchestrator.inventory.netbox import NetBoxWorkloadSource
from orchestrator.inventory.workloads import load_workload_sources
from orchestrator.model.errors import InventoryError
from simulators.netbox import NetBoxData, netbox_server


@pytest.fixture
def netbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, NetBoxData]]:
    with netbox_server(NetBoxData(max_page=3)) as (base, data):  # three per page: pagination is exercised
        for i in range(8):
            data.add_machine("virtual-machines", f"web-{i}", base=base, site="dc1" if i < 6 else "dc2", role="web",
                             ip4=f"10.1.0.{i + 1}/24", ip6=f"fd00:1::{i + 1}/64" if i % 2 else None,
                             tags=("prod", "pci") if i < 2 else ("prod",),
                             custom_fields={"application": "shop", "tier": "web", "owner": None})
        data.add_machine("devices", "db-1", base=base, site="dc1", role="db", tenant="shop", ip4="10.2.0.5/24",
                         platform="linux", custom_fields={"application": "shop", "tier": "db"})
        data.add_machine("devices", None, base=base, site="dc1", ip4="10.2.0.6/24")  # an unnamed device
        data.add_machine("devices", "spare", base=base, site="dc1", status="offline")  # no primary address
        monkeypatch.setenv("NETBOX_TOKEN", data.token)
        yield base, data


def write_sources(directory: Path, **config: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sources.yaml").write_text(yaml.safe_dump({"workload_sources": [{"type": "netbox", **config}]}))
    return directory


def test_machines_become_workloads_with_netbox_labels(netbox: tuple[str, NetBoxData], tmp_path: Path) -> None:
    base, data = netbox
    loaded = load_workload_sources(write_sources(tmp_path, url=base, custom_fields={"application": "app"}))
    by_name = {w.name: w for w in loaded.workloads}
    assert sorted(by_name) == ["db-1", *(f"web-{i}" for i in range(8))]
    assert [str(a) for a in by_name["web-1"].addresses] == ["10.1.0.2", "fd00:1::2"]
    assert by_name["web-1"].labels == {"netbox.kind": "virtual-machine", "site": "dc1", "role": "web",
                                       "status": "active", "tag.prod": "true", "tag.pci": "true", "app": "shop"}
    assert by_name["db-1"].labels == {"netbox.kind": "device", "site": "dc1", "tenant": "shop", "role": "db",
                                      "platform": "linux", "status": "active", "app": "shop"}
    warnings = sorted(d.message for d in loaded.diagnostics)
    assert warnings == ["netbox device #2 has no name: left out",
                        "netbox device 'spare' has no primary IPv4 or IPv6 address: left out"]
    pages = [r for r in data.requests if r.startswith("/api/virtualization/virtual-machines/")]
    assert len(pages) == 3 and "offset=3" in pages[1] and "offset=6" in pages[2], pages  # 8 machines, 3 a page


def test_filters_are_netboxs_own(netbox: tuple[str, NetBoxData], tmp_path: Path) -> None:
    base, data = netbox
    source = NetBoxWorkloadSource({"url": base, "kinds": ["virtual-machines"], "filters": {"site": "dc2"},
                                   "tags": False, "custom_fields": []}, tmp_path)
    loaded = source.load()
    assert [w.name for w in loaded.workloads] == ["web-6", "web-7"]
    assert all(not any(k.startswith("tag.") for k in w.labels) and "tier" not in w.labels for w in loaded.workloads)
    assert any("site=dc2" in r for r in data.requests)


@pytest.mark.parametrize(("change", "message"), [
    ({"token": "wrong"}, r"GET http://127\.0\.0\.1:\d+/api/virtualization/virtual-machines/.* answered 403: "
                         r"Invalid token"),
    ({"filters": {"site": "nowhere"}}, r"GET .*site=nowhere.* answered 400: \{'site': \['Select a valid choice\. "
                                       r"nowhere is not one"),
    ({"fail_next": 1}, r"GET .* answered 500: Server Error \(500\)"),
])
def test_netbox_refusals_say_what_and_where(netbox: tuple[str, NetBoxData], tmp_path: Path, change: dict,
                                            message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    base, data = netbox
    config: dict[str, object] = {"url": base}
    if "token" in change:
        monkeypatch.setenv("NETBOX_TOKEN", str(change["token"]))
    if "filters" in change:
        config["filters"] = change["filters"]
    data.fail_next = int(change.get("fail_next", 0))  # type: ignore[call-overload]
    with pytest.raises(InventoryError, match=r"netbox workload source: " + message):
        NetBoxWorkloadSource(config, tmp_path).load()


def test_bad_settings_and_unreachable_servers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for config, message in (
        ({"url": "http://netbox.example.com"}, "plain HTTP to a host that is not loopback"),
        ({"url": "netbox"}, "'url' must be the NetBox URL"),
        ({"url": "https://nb", "kinds": ["routers"]}, "'kinds' must be a list of virtual-machines, devices"),
        ({"url": "https://nb", "filter": {}}, "unknown setting 'filter' (did you mean 'filters'?)"),
    ):
        with pytest.raises(InventoryError, match=re.escape(message)):
            NetBoxWorkloadSource(config, tmp_path)
    monkeypatch.delenv("NETBOX_TOKEN", raising=False)
    with pytest.raises(InventoryError, match="environment variable NETBOX_TOKEN is empty"):
        NetBoxWorkloadSource({"url": "http://127.0.0.1:9"}, tmp_path).load()
    monkeypatch.setenv("NETBOX_TOKEN", "t")
    with pytest.raises(InventoryError, match=r"cannot reach http://127\.0\.0\.1:9: ConnectionError"):
        NetBoxWorkloadSource({"url": "http://127.0.0.1:9", "timeout": 2}, tmp_path).load()


def test_the_nornir_inventory_plugin_makes_points_of_the_machines_with_a_microseg_config_context(
        netbox: tuple[str, NetBoxData], tmp_path: Path) -> None:
    """``microseg.NetBoxInventory`` (registered through Nornir's plugin entry points), configured in the inventory
    directory's config.yaml: NetBox's machines are the Nornir hosts, grouped by site and role, and those whose
    rendered config context holds ``microseg`` are enforcement points — NetBox's own layered settings."""
    base, data = netbox
    context = {"microseg": {"driver": "nftables", "protects": {"subnets": ["10.3.0.0/24"]}, "directions": ["ingress"]}}
    data.add_machine("devices", "fw-edge", base=base, site="dc1", role="edge", ip4="10.3.0.1/24", platform="linux",
                     tags=("microseg",), config_context=context)
    directory = tmp_path / "inventory"
    directory.mkdir()
    (directory / "config.yaml").write_text(yaml.safe_dump({"inventory": {
        "plugin": "microseg.NetBoxInventory",
        "options": {"url": base, "kinds": ["devices"], "filters": {"site": "dc1"}, "group_by": ["site", "role"]}}}))
    inventory = load_inventory(directory)
    assert [p.name for p in inventory.points] == ["fw-edge"]
    assert sorted(inventory.not_points) == ["db-1", "spare"]  # no microseg context; the unnamed device left out
    point = inventory.point("fw-edge")
    assert (point.hostname, point.platform, point.groups) == ("10.3.0.1", "linux", ("site-dc1", "role-edge"))
    hosts = load_nornir_inventory(directory).hosts
    assert hosts["db-1"].data["netbox"] == {"id": 1, "kind": "device", "tags": [], "site": "dc1", "tenant": "shop",
                                            "role": "db", "platform": "linux", "status": "active"}
    assert hosts["spare"].hostname == "spare"  # no primary address: its name
    (directory / "config.yaml").write_text(yaml.safe_dump({"inventory": {
        "plugin": "microseg.NetBoxInventory", "options": {"url": base, "token_env": "NO_SUCH_TOKEN"}}}))
    with pytest.raises(InventoryError, match=r"microseg\.NetBoxInventory.*netbox inventory: the API token is not set"):
        load_inventory(directory)
