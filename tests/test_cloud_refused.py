"""Nothing listening at a cloud API endpoint (a lab that is not up, a wrong port): one line per point naming the
address, not retried, and the CLI's hint when the address is a loopback one the lab would serve."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from click.testing import CliRunner

from drivers.aws_sg import AwsSecurityGroupDriver
from drivers.azure_nsg import AzureNsgDriver
from drivers.gcp_firewall import GcpFirewallDriver
from orchestrator.cli.main import main
from orchestrator.model.driver import Connection, PointContext
from orchestrator.model.errors import PermanentDriverError
from orchestrator.model.rules import AddressSet
from tests.conftest import REPO

CLOUDS = ("aws-sg-dev-web", "azure-nsg-dev-app", "gcp-fw-dev-db")
SETTINGS: dict[str, tuple[Any, str, dict[str, Any]]] = {
    "aws_sg": (AwsSecurityGroupDriver, "http", {"region": "eu-west-1", "vpc_id": "vpc-0a1b2c3d4e5f60718"}),
    "azure_nsg": (AzureNsgDriver, "https", {"subscription_id": "00000000-0000-4000-8000-000000000000",
                                            "resource_group": "rg-shop-dev", "nsg_name": "nsg-shop-dev-app"}),
    "gcp_firewall": (GcpFirewallDriver, "http", {"project": "shop-dev-000000", "network": "shop-dev",
                                                 "target_tags": ["shop-dev-db"]}),
}
ENDPOINT_KEY = {"aws_sg": "endpoint_url", "azure_nsg": "base_url", "gcp_firewall": "api_endpoint"}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # closed again: nothing listens there


@pytest.mark.parametrize("driver", sorted(SETTINGS))
def test_a_refused_cloud_endpoint_is_one_line_naming_it_and_not_retried(driver: str) -> None:
    cls, scheme, settings = SETTINGS[driver]
    port = closed_port()
    settings = {**settings, ENDPOINT_KEY[driver]: f"{scheme}://127.0.0.1:{port}", "credentials": "anonymous"}
    context = PointContext("cloud", driver, Connection(hostname="cloud"), settings, 10.0,
                           AddressSet.of(["10.30.1.11/32"]))
    started = time.monotonic()
    with pytest.raises(PermanentDriverError) as caught:  # permanent: the engine does not retry it
        cls(context).fetch()
    assert time.monotonic() - started < 5
    message = caught.value.message
    assert f"cannot connect to 127.0.0.1:{port}: connection refused (nothing listens there)" in message, message
    assert "\n" not in message and caught.value.point == "cloud"


def test_the_cli_names_the_address_once_per_point_and_asks_whether_the_lab_is_up(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory"
    shutil.copytree(REPO / "inventory", inventory)
    hosts = yaml.safe_load((inventory / "hosts.yaml").read_text())
    ports = {}
    for name in CLOUDS:
        settings = hosts[name]["data"]["microseg"]["settings"]
        key = next(k for k in ("endpoint_url", "base_url", "api_endpoint") if k in settings)
        ports[name] = closed_port()
        settings[key] = f"{settings[key].split('://')[0]}://127.0.0.1:{ports[name]}"
    ca = tmp_path / "ca.pem"  # the lab's CA is not there on a fresh clone: any CA file does, nothing answers
    trustme.CA().cert_pem.write_to_path(str(ca))
    hosts["azure-nsg-dev-app"]["data"]["microseg"]["settings"]["ca_bundle"] = str(ca)
    (inventory / "hosts.yaml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    started = time.monotonic()
    result = CliRunner().invoke(main, ["--policy", str(REPO / "policies"), "--inventory", str(inventory), "--store",
                                       f"sqlite:///{tmp_path}/state.db", "--quiet", "plan",
                                       *[arg for name in CLOUDS for arg in ("-t", name)]])
    assert result.exit_code == 1, result.output
    assert time.monotonic() - started < 15  # no retries with back-off
    for name in CLOUDS:
        lines = [line for line in result.output.splitlines() if line.startswith(f"{name}  could not be planned")]
        assert len(lines) == 1, result.output
        assert f"cannot connect to 127.0.0.1:{ports[name]}: connection refused" in lines[0]
        assert "is the lab up? `microseg lab up`" in lines[0]


def test_a_missing_ca_bundle_is_named_with_a_lab_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worked example's Azure point names the CA `microseg lab up` writes (relative to the working
    directory): where the lab never ran, plan says which file is missing and asks whether the lab is up."""
    monkeypatch.chdir(tmp_path)  # a project directory without .microseg/lab
    result = CliRunner().invoke(main, ["--policy", str(REPO / "policies"), "--inventory", str(REPO / "inventory"),
                                       "--store", f"sqlite:///{tmp_path}/state.db", "--quiet", "plan", "-t",
                                       "azure-nsg-dev-app"], catch_exceptions=False)
    assert result.exit_code == 1
    line = next(x for x in result.output.splitlines() if x.startswith("azure-nsg-dev-app  could not be planned"))
    assert "setting 'ca_bundle': no such file .microseg/lab/azure-ca.pem" in line
    assert f"relative to the working directory, {tmp_path}" in line
    assert "is the lab up? `microseg lab up`" in line
