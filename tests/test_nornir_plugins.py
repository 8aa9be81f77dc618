"""A team's own Nornir inventory plugin and transform_function, configured as Nornir does (``config.yaml``):
microseg reads the hosts the plugin builds, checks them like SimpleInventory's, and runs on them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from nornir.core.inventory import ConnectionOptions, Defaults, Group, Groups, Host, Hosts, Inventory, ParentGroups
from nornir.core.plugins.inventory import InventoryPluginRegister, TransformFunctionRegister

from orchestrator.cli.main import main
from orchestrator.engine.project import load_checked_inventory
from orchestrator.engine.secret_check import WHERE_RESOLVED
from orchestrator.inventory.inventory import load_inventory, load_nornir_inventory
from orchestrator.model.errors import InventoryError


class TeamInventory:
    """Hosts from a JSON export (as a CMDB would give them): name, address, role, subnet, an optional group."""

    def __init__(self, source: str) -> None:
        self.source = source

    def load(self) -> Inventory:
        rows = json.loads(Path(self.source).read_text())
        defaults = Defaults(username="ops")
        groups = Groups({"dc1": Group("dc1", data={"site": "dc1"}, defaults=defaults)})
        hosts = Hosts({
            r["name"]: Host(r["name"], hostname=r["ip"], platform="linux", defaults=defaults,
                            password=r.get("password"),
                            connection_options={k: ConnectionOptions(extras=v.get("extras"))
                                                for k, v in r.get("connection_options", {}).items()},
                            groups=ParentGroups([groups[g] for g in r.get("groups", [])]),
                            data={"role": r["role"], "subnet": r["subnet"]})
            for r in rows})
        return Inventory(hosts=hosts, groups=groups, defaults=defaults)


class BrokenInventory:
    def __init__(self, **_: Any) -> None:
        pass

    def load(self) -> Inventory:
        raise ConnectionError("the CMDB did not answer")


def microseg_from_roles(host: Host, driver: str = "nftables") -> None:
    """The team's rule: every server is an enforcement point protecting its own subnet."""
    if host.data.get("role") == "server":
        host.data["microseg"] = {"driver": driver, "protects": {"subnets": [host.data["subnet"]]},
                                 "directions": ["ingress"]}


for name, plugin in (("TeamInventory", TeamInventory), ("BrokenInventory", BrokenInventory)):
    if name not in InventoryPluginRegister.available:
        InventoryPluginRegister.register(name, plugin)
if "microseg_from_roles" not in TransformFunctionRegister.available:
    TransformFunctionRegister.register("microseg_from_roles", microseg_from_roles)

ROWS = [
    {"name": "web-01", "ip": "10.20.1.11", "role": "server", "subnet": "10.20.1.0/24", "groups": ["dc1"]},
    {"name": "db-01", "ip": "10.20.3.11", "role": "server", "subnet": "10.20.3.0/24", "groups": ["dc1"]},
    {"name": "core-rtr", "ip": "10.0.0.1", "role": "router", "subnet": "10.0.0.0/30"},
]


def team_inventory(tmp_path: Path, plugin: str = "TeamInventory", rows: list[dict[str, Any]] = ROWS) -> Path:
    directory = tmp_path / "inventory"
    directory.mkdir(parents=True, exist_ok=True)
    (tmp_path / "cmdb.json").write_text(json.dumps(rows))
    config = {"inventory": {"plugin": plugin, "options": {"source": str(tmp_path / "cmdb.json")},
                            "transform_function": "microseg_from_roles",
                            "transform_function_options": {"driver": "nftables"}}}
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    return directory


def test_the_plugins_hosts_are_the_inventory_and_only_those_with_microseg_data_are_points(tmp_path: Path) -> None:
    directory = team_inventory(tmp_path)
    inventory = load_inventory(directory)
    assert sorted(p.name for p in inventory.points) == ["db-01", "web-01"] and inventory.not_points == ("core-rtr",)
    web = inventory.point("web-01")
    assert (web.driver, web.hostname, web.groups) == ("nftables", "10.20.1.11", ("dc1",))
    assert inventory.protected_addresses("db-01").to_list() == ["10.20.3.0/24"]
    assert sorted(load_nornir_inventory(directory).hosts) == ["core-rtr", "db-01", "web-01"]  # what tasks run on
    policy = tmp_path / "policies"
    policy.mkdir()
    (policy / "policy.yaml").write_text(yaml.safe_dump({
        "apiVersion": "microseg/v1", "groups": {"web": {"cidrs": ["10.20.1.0/24"]}, "db": {"cidrs": ["10.20.3.0/24"]}},
        "rules": [{"name": "web-db", "from": "web", "to": "db", "services": ["tcp/5432"], "action": "allow"}]}))
    result = CliRunner().invoke(main, ["--policy", str(policy), "--inventory", str(directory), "--today", "2026-11-21",
                                       "validate", "-v", "--json"])
    report = json.loads(result.stdout)
    assert report["ok"] and report["points"] == 2 and report["not_points"] == ["core-rtr"], report


def test_what_the_plugin_builds_is_checked_like_the_files_and_named_by_its_config(tmp_path: Path) -> None:
    rows = [{**ROWS[0], "role": "server", "subnet": "not-a-subnet"}]
    with pytest.raises(InventoryError) as caught:
        load_inventory(team_inventory(tmp_path, rows=rows))
    messages = [f"{d.location}: {d.message}" for d in caught.value.diagnostics]
    assert any("config.yaml (Nornir inventory plugin TeamInventory)" in m and "not-a-subnet" in m
               for m in messages), messages


def test_secret_references_the_plugin_supplies_are_checked_and_named_by_its_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MSEG_T_NEVER_SET", raising=False)  # valid syntax is never resolved while validating
    rows = [{**ROWS[0], "password": "${vualt:secret/net/web#password}"},
            {**ROWS[1], "password": "${env:MSEG_T_NEVER_SET}",
             "connection_options": {"nftables": {"extras": {"key_file": "${env:KEY_FILE}"}}}},
            ROWS[2]]
    directory = team_inventory(tmp_path, rows=rows)
    load_inventory(directory)  # the inventory itself is fine: references are the engine's check
    with pytest.raises(InventoryError) as caught:
        load_checked_inventory(directory)
    where = str(directory / "config.yaml") + " (Nornir inventory plugin TeamInventory)"
    found = [(str(d.location), d.code, d.message, d.hint) for d in caught.value.diagnostics]
    assert found == [
        (where, "unknown-secret-backend", "host 'web-01': password: unknown secret backend 'vualt'",
         "did you mean 'vault'?"),
        (where, "secret-reference-place", "host 'db-01': connection_options.nftables.extras.key_file: "
         f"${{env:KEY_FILE}} would be used as written: {WHERE_RESOLVED}", None)]
    assert caught.value.message == f"inventory {directory} has 2 errors"
    fine = team_inventory(tmp_path / "fine", rows=[rows[1] | {"connection_options": {}}, ROWS[2]])
    assert load_checked_inventory(fine).point("db-01").name == "db-01"


def test_a_failing_plugin_is_an_inventory_error_naming_the_plugin_and_its_config(tmp_path: Path) -> None:
    directory = team_inventory(tmp_path, plugin="BrokenInventory")
    with pytest.raises(InventoryError, match=r"plugin 'BrokenInventory' \(configured in .*config\.yaml\) failed: "
                                             r"ConnectionError: the CMDB did not answer"):
        load_inventory(directory)
    (directory / "config.yaml").write_text("inventory: [this is not a mapping\n")
    with pytest.raises(InventoryError, match=r"Nornir cannot read .*config\.yaml"):
        load_inventory(directory)


def test_a_host_whose_name_microseg_cannot_use_is_reported_unless_it_is_a_point(tmp_path: Path) -> None:
    """A CMDB's ``Rack 12 PDU`` is a warning and not a point; the same name on a host that is a point is the
    error it always was."""
    rows = [*ROWS, {"name": "Rack 12 PDU", "ip": "10.0.9.9", "role": "pdu", "subnet": "10.0.9.0/24"}]
    inventory = load_inventory(team_inventory(tmp_path, rows=rows))
    assert sorted(p.name for p in inventory.points) == ["db-01", "web-01"]
    assert "Rack 12 PDU" in inventory.not_points
    assert any("'Rack 12 PDU'" in d.message and d.severity.value == "warning" for d in inventory.diagnostics)
    bad_point = [*ROWS, {"name": "Web Server 3", "ip": "10.20.1.13", "role": "server", "subnet": "10.20.1.0/24"}]
    with pytest.raises(InventoryError) as caught:
        load_inventory(team_inventory(tmp_path / "again", rows=bad_point))
    assert any("invalid host name 'Web Server 3'" in d.message for d in caught.value.diagnostics)


def test_simple_inventory_with_a_transform_function_reads_the_inventory_directorys_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nornir takes SimpleInventory's files relative to the working directory; microseg takes them relative to
    the inventory directory, wherever the command runs."""
    directory = tmp_path / "inventory"
    directory.mkdir()
    (directory / "hosts.yaml").write_text(yaml.safe_dump({
        "web-01": {"hostname": "10.20.1.11", "data": {"role": "server", "subnet": "10.20.1.0/24"}},
        "core-rtr": {"hostname": "10.0.0.1", "data": {"role": "router", "subnet": "10.0.0.0/30"}}}))
    (directory / "config.yaml").write_text(yaml.safe_dump({"inventory": {
        "plugin": "SimpleInventory", "transform_function": "microseg_from_roles"}}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    inventory = load_inventory(directory)
    assert [p.name for p in inventory.points] == ["web-01"] and inventory.not_points == ("core-rtr",)


def test_promote_refuses_a_plugin_inventory_instead_of_editing_a_file_it_does_not_read(tmp_path: Path) -> None:
    directory = team_inventory(tmp_path)
    result = CliRunner().invoke(main, ["--policy", str(tmp_path), "--inventory", str(directory), "promote",
                                       "-t", "web-01", "--json"])
    assert result.exit_code == 1 and "Nornir inventory plugin (config.yaml)" in result.output
