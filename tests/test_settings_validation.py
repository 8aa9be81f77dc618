"""Driver settings and connection fields are typed when the inventory loads: file:line, never a traceback.

Security findings 5 and 11: interface names and name prefixes become CLI tokens, so they must match the
platform's grammar; values that passed `validate` used to crash `plan` (a list as password, a word for a
number, whitespace in an interface name).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from drivers.arista_eos.driver import EosSettings
from drivers.cisco_ios.driver import IosSettings
from drivers.cisco_nxos.driver import NxosSettings
from drivers.juniper_junos.driver import JunosSettings
from drivers.nftables import NftablesDriver, NftSettings
from orchestrator.cli.main import main
from orchestrator.engine.project import load_checked_inventory
from orchestrator.model import AddressSet, Connection, PermanentDriverError, PointContext
from orchestrator.model.errors import InventoryError
from tests.conftest import REPO

HOSTILE = ["Vlan301; reload", "Vlan301 ", "Vlan$(reboot)", "Vlan301?", "Vlan\x07301", "Gi0/1\nreload", ""]


def inventory_with(tmp_path: Path, host: str, **changes: Any) -> Path:
    """The worked example's inventory with ``changes`` applied to ``host`` (``settings`` merged in)."""
    target = tmp_path / "inventory"
    shutil.copytree(REPO / "inventory", target)
    hosts = yaml.safe_load((target / "hosts.yaml").read_text())
    settings = changes.pop("settings", None)
    hosts[host].update(changes)
    if settings is not None:
        hosts[host]["data"]["microseg"].setdefault("settings", {}).update(settings)
    (target / "hosts.yaml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    return target


def problems(directory: Path) -> list[str]:
    with pytest.raises(InventoryError) as caught:
        load_checked_inventory(directory)
    return [f"{d.location}: {d.message}" for d in caught.value.diagnostics if d.severity.value == "error"]


@pytest.mark.parametrize("interface", HOSTILE)
@pytest.mark.parametrize("model", [IosSettings, NxosSettings, EosSettings, JunosSettings])
def test_interface_names_must_be_the_platforms_tokens(model: Any, interface: str) -> None:
    with pytest.raises(ValueError, match=r"interface|string"):
        model.model_validate({"bindings": [{"interface": interface}]})


@pytest.mark.parametrize(("model", "names"), [
    (IosSettings, ["Vlan301", "GigabitEthernet1/0/1", "TenGigabitEthernet1/1/1.100", "Port-channel10"]),
    (NxosSettings, ["Vlan202", "Ethernet1/1", "port-channel10", "Ethernet101/1/1"]),
    (EosSettings, ["Vlan201", "Ethernet1", "Ethernet3/1/1.100", "Port-Channel10"]),
    (JunosSettings, ["irb.100", "ge-0/0/0.0", "xe-0/0/1:2.100", "ae0.0", "lo0.0"]),
])
def test_real_interface_names_pass(model: Any, names: list[str]) -> None:
    typed = model.model_validate({"bindings": [{"interface": n} for n in names]})
    assert typed.interfaces() == tuple(names)


@pytest.mark.parametrize("prefix", ["MSEG ", "ms;eg-", "$(x)", "9mseg", "MSEG-\n", "M?"])
def test_name_prefixes_must_be_the_platforms_tokens(prefix: str) -> None:
    with pytest.raises(ValueError, match="name prefix"):
        IosSettings.model_validate({"bindings": ["Vlan301"], "acl_name_prefix": prefix})
    with pytest.raises(ValueError, match="name prefix"):
        JunosSettings.model_validate({"bindings": ["irb.1"], "filter_name_prefix": prefix})


def test_a_driver_built_with_bad_settings_fails_permanently_naming_the_setting() -> None:
    context = PointContext("fw1", "nftables", Connection("127.0.0.1"), {"table": "my table", "sudo": True,
                                                                        "nft": "bin/nft"})
    with pytest.raises(PermanentDriverError, match=r"fw1: settings: .*table.*table name 'my table'"):
        NftablesDriver(context)
    with pytest.raises(ValueError, match="absolute path"):
        NftSettings.model_validate({"sudo": True, "nft": "bin/nft"})
    assert NftSettings.model_validate({"sudo": True, "nft": "/usr/sbin/nft"}).sudo
    from drivers.cisco_ios.driver import IosDriver
    switch = PointContext("sw1", "ios", Connection("127.0.0.1"), {"bindings": ["Vlan1; reload"]},
                          members=AddressSet.of(["10.0.0.0/24"]))
    with pytest.raises(PermanentDriverError, match=r"sw1: settings: bindings: .*not an interface name"):
        IosDriver(switch)


def test_the_worked_example_is_valid_under_the_drivers_settings_models() -> None:
    inventory = load_checked_inventory(REPO / "inventory")
    assert len(inventory.points) == 13


def test_wrong_driver_settings_are_located_errors_at_load(tmp_path: Path) -> None:
    directory = inventory_with(tmp_path, "sw-dev-ios", settings={
        "confirm_minutes": "five", "families": [4, "x"], "acl_name_prefx": "MSEG-",
        "bindings": [{"interface": "Vlan301 reload"}]})
    found = problems(directory)
    hosts = str(directory / "hosts.yaml")
    for needle in ("microseg.settings.confirm_minutes", "microseg.settings.families[1]",
                   "unknown field 'microseg.settings.acl_name_prefx'", "'Vlan301 reload' is not an interface name"):
        assert any(needle in p and p.startswith(hosts + ":") for p in found), (needle, found)
    assert any("did you mean 'acl_name_prefix'" in p or "acl_name_prefx" in p for p in found)


def test_connection_fields_must_have_the_types_ssh_expects_and_passwords_are_not_echoed(tmp_path: Path) -> None:
    directory = inventory_with(tmp_path, "sw-dev-ios", password=["hunter2", "x"], port="twenty",
                               username="ad\x00min")
    found = problems(directory)
    assert any("password must be one line of text" in p for p in found)
    assert any("port must be a TCP port number" in p for p in found)
    assert any("username must be one line of text" in p for p in found)
    assert not any("hunter2" in p for p in found)


def test_plan_reports_bad_input_without_a_traceback(tmp_path: Path) -> None:
    directory = inventory_with(tmp_path, "web-prod-01", password=["a"], settings={"table": "bad name!",
                                                                                   "families": "four"})
    result = CliRunner().invoke(main, ["--inventory", str(directory), "--store", f"sqlite:///{tmp_path}/s.db",
                                       "plan", "-t", "web-prod-01"])
    assert result.exit_code == 1, result.output
    assert ("Traceback" not in result.output and result.exception is None) or isinstance(result.exception, SystemExit)
    assert "hosts.yaml:" in result.output and "table name 'bad name!'" in result.output
    assert "unknown field 'microseg.settings.families'" in result.output


@pytest.mark.parametrize(("host", "settings", "expected"), [
    ("aws-sg-dev-web", {"regoin": "eu-west-1"}, "unknown field 'microseg.settings.regoin'"),
    ("aws-sg-dev-web", {"region": "Mars"}, "region"),
    ("aws-sg-dev-web", {"endpoint_url": "http://198.51.100.7:4566"}, "plain HTTP to a host that is not loopback"),
    ("gcp-fw-dev-db", {"owner_tag": {"a": "b"}}, "unknown field 'microseg.settings.owner_tag'"),
    ("gcp-fw-dev-db", {"priority_base": "high"}, "priority_base"),
    ("azure-nsg-dev-app", {"base_url": "http://127.0.0.1:4567"}, "base_url"),
    ("azure-nsg-dev-app", {"priority_min": 5000, "priority_max": 100}, "priority"),
])
def test_cloud_settings_are_checked_by_the_drivers_own_rules_when_the_inventory_loads(
        tmp_path: Path, host: str, settings: dict[str, Any], expected: str) -> None:
    directory = inventory_with(tmp_path, host, settings=settings)
    found = problems(directory)
    assert any(expected in p and p.startswith(str(directory / "hosts.yaml") + ":") for p in found), found
