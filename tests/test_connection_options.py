"""Connection fields follow Nornir: `connection_options` under the plugin name Nornir's own plugins use
(`netmiko` for the switch drivers, `napalm` for an EOS or Junos point with `transport: napalm`, `paramiko` for
nftables) apply as they would there, and microseg's own key
(the driver's name) still works and wins when both are given."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import yaml

from orchestrator.engine.project import load_project
from orchestrator.engine.sessions import Sessions
from orchestrator.inventory.inventory import load_nornir_inventory
from tests.conftest import REPO


def sessions_for(tmp_path: Path, edit: dict[str, dict], settings: dict[str, dict] | None = None) -> Sessions:
    inventory = tmp_path / "inventory"
    shutil.copytree(REPO / "inventory", inventory)
    hosts = yaml.safe_load((inventory / "hosts.yaml").read_text())
    for name, options in edit.items():
        hosts[name]["connection_options"] = options
    for name, extra in (settings or {}).items():
        hosts[name]["data"]["microseg"]["settings"].update(extra)
    (inventory / "hosts.yaml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    project = load_project(REPO / "policies", inventory, today=date(2026, 12, 6))
    return Sessions(project.inventory, load_nornir_inventory(inventory), 5.0)


def test_nornir_plugin_names_apply_and_the_drivers_own_key_wins(tmp_path: Path) -> None:
    sessions = sessions_for(tmp_path, {
        "sw-dev-ios": {"netmiko": {"port": 2201, "username": "ops", "extras": {"secret": "enable-me"}}},
        "leaf-prod-eos": {"netmiko": {"port": 2201}, "eos": {"port": 2202, "username": "eos-admin"}},
        "web-prod-01": {"paramiko": {"hostname": "10.20.1.11", "port": 2222}},
        "db-prod-01": {},
    })
    try:
        ios = sessions.driver("sw-dev-ios").context.connection
        assert (ios.port, ios.username, ios.extras) == (2201, "ops", {"secret": "enable-me"})
        eos = sessions.driver("leaf-prod-eos").context.connection
        assert (eos.port, eos.username) == (2202, "eos-admin")  # microseg's own key (the driver) wins
        nft = sessions.driver("web-prod-01").context.connection
        assert (nft.hostname, nft.port) == ("10.20.1.11", 2222)
        plain = sessions.driver("db-prod-01").context.connection
        assert plain.hostname == "127.20.3.11" and plain.extras == {}  # the host's own fields
    finally:
        sessions.close()


def test_a_point_driven_through_napalm_reads_napalms_connection_options(tmp_path: Path) -> None:
    options = {"netmiko": {"username": "cli-user"}, "napalm": {"hostname": "10.10.0.1", "username": "netconf-user",
                                                               "password": "pw"}}
    sessions = sessions_for(tmp_path, {"fw-shared-junos": options, "sw-dev-ios": options,
                                       "leaf-prod-eos": {"netmiko": {"username": "cli-user"}}},
                            {"fw-shared-junos": {"transport": "napalm"}, "leaf-prod-eos": {"transport": "napalm"}})
    try:
        junos = sessions.driver("fw-shared-junos").context.connection
        assert (junos.hostname, junos.username, junos.password) == ("10.10.0.1", "netconf-user", "pw")
        ios = sessions.driver("sw-dev-ios").context.connection  # the CLI: netmiko's, not napalm's
        assert ios.username == "cli-user"
        eos = sessions.driver("leaf-prod-eos").context.connection  # no napalm key: netmiko's, as before
        assert eos.username == "cli-user"
    finally:
        sessions.close()

