"""The lab: real network namespaces, sshd and TCP for the worked example's nftables hosts (root only)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import yaml
from click.testing import CliRunner

from orchestrator.cli.main import main
from orchestrator.flows import netflow
from orchestrator.inventory.inventory import load_inventory, load_nornir_inventory
from orchestrator.lab import Lab, LabError, LabPlan, check_tools, nornir_endpoints, plan_lab, require_root
from orchestrator.lab import system as lab_system
from orchestrator.lab.state import load_state
from orchestrator.model import Diagnostic, FlowRecord
from orchestrator.model.driver import Connection, PointContext
from orchestrator.model.rules import AddressSet
from tests.conftest import REPO
from tests.netdev_kit import DRIVERS

INVENTORY = REPO / "inventory"
POINTS = {"web-prod-01", "web-prod-02", "app-prod-01", "db-prod-01", "db-prod-02", "jump-01"}
CLOUDS = ("aws-sg-dev-web", "azure-nsg-dev-app", "gcp-fw-dev-db")


def _can_build_labs() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces)"
    try:
        check_tools()
    except LabError as exc:
        return str(exc)
    return None


needs_root = pytest.mark.skipif(_can_build_labs() is not None, reason=str(_can_build_labs()))


def _free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        port: int = probe.getsockname()[1]
        return port


def _test_plan(prefix: str) -> LabPlan:
    """The worked example's lab, its SSH forwarders, switches and cloud APIs on free loopback ports (a user's lab
    may hold 2222, 2230 and 4566-4568)."""
    endpoints = nornir_endpoints(load_nornir_inventory(INVENTORY).hosts)
    mine = {name: (address, _free_port(address)) for name, (address, _) in endpoints.items()}
    mine.update({name: ("127.0.0.1", _free_port("127.0.0.1")) for name in CLOUDS})
    return plan_lab(load_inventory(INVENTORY), mine, prefix=prefix, netflow=("127.0.0.1", _free_udp_port()))


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _ssh(lab: Lab, plan: LabPlan, host: str, command: str) -> subprocess.CompletedProcess[str]:
    address, port = plan.host(host).ssh or ("", 0)
    return subprocess.run(
        ["ssh", "-i", str(lab.key_file), "-p", str(port), "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
         f"root@{address}", command], capture_output=True, text=True, timeout=20, check=False)


@pytest.fixture(scope="session")
def lab_plan() -> LabPlan:
    return _test_plan(f"mt{secrets.token_hex(2)}")


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory, lab_plan: LabPlan) -> Iterator[Lab]:
    """One lab for the session, torn down at the end whatever happens."""
    if _can_build_labs() is not None:
        pytest.skip(str(_can_build_labs()))
    built = Lab(tmp_path_factory.mktemp("lab"), prefix=lab_plan.prefix)
    try:
        started = time.monotonic()
        built.up(lab_plan)
        print(f"\nlab up: {time.monotonic() - started:.2f} s")
        yield built
    finally:
        started = time.monotonic()
        built.down()
        print(f"\nlab down: {time.monotonic() - started:.2f} s")


# --------------------------------------------------------------------------- pure: the plan and the checks


def test_plan_of_the_worked_example() -> None:
    plan = plan_lab(load_inventory(INVENTORY), nornir_endpoints(load_nornir_inventory(INVENTORY).hosts))
    roles = {h.name: h.role for h in plan.hosts}
    assert {n for n, r in roles.items() if r == "point"} == POINTS
    assert roles["web-dev-01"] == roles["dns-01"] == roles["mon-01"] == roles["web-prod-03"] == "client"
    assert "web-prod-01" in roles and "sw-dev-ios" not in roles
    web = plan.host("web-prod-01")
    assert (web.namespace, web.ipv4, web.ipv6, web.ssh) == (
        "mseg-web-prod-01", ("10.20.1.11",), ("fd00:20:1::11",), ("127.20.1.11", 2222))
    assert plan.host("mgmt").ipv4 == ("10.0.0.10",) and plan.host("mgmt").namespace == "mseg-mgmt"
    assert plan.host("internet").addresses == ("81.2.69.142", "2a02:6b8::7")
    assert plan.switch == "mseg-sw" and plan.ports == (80, 443, 8443, 5432, 9100, 53)
    assert all(len(name) <= 15 for i in range(len(plan.hosts)) for name in plan.interfaces(i))
    assert LabPlan.from_dict(plan.to_dict()) == plan
    devices = {d.name: (d.personality, d.address, d.port, d.interfaces) for d in plan.devices}
    assert devices == {  # the switch points, as SSH device simulators on their inventory endpoints
        "sw-dev-ios": ("ios", "127.30.0.2", 2230, ("Vlan301", "Vlan302", "Vlan303")),
        "dc-prod-nxos": ("nxos", "127.20.0.2", 2230, ("Vlan202", "Vlan203")),
        "leaf-prod-eos": ("eos", "127.20.0.3", 2230, ("Vlan201",)),
        "fw-shared-junos": ("junos", "127.10.0.1", 2230, ("irb.100",)),
    }
    clouds = {c.name: (c.kind, c.endpoint) for c in plan.clouds}
    assert clouds == {"aws-sg-dev-web": ("aws", "127.0.0.1:4566"), "azure-nsg-dev-app": ("azure", "127.0.0.1:4567"),
                      "gcp-fw-dev-db": ("gcp", "127.0.0.1:4568")}  # the inventory's endpoint settings
    aws = next(c for c in plan.clouds if c.kind == "aws").seed
    assert (aws["region"], aws["vpc_id"]) == ("eu-west-1", "vpc-0a1b2c3d4e5f60718")
    assert {w["name"]: w["addresses"] for w in aws["workloads"]} == {  # the members of its selector
        "web-dev-01": ["10.30.1.11", "fd00:30:1::11"], "web-dev-02": ["10.30.1.12"]}
    gcp = next(c for c in plan.clouds if c.kind == "gcp").seed
    assert (gcp["project"], gcp["network"], gcp["target_tags"]) == ("shop-dev-000000", "shop-dev", ["shop-dev-db"])
    assert {w["name"] for w in gcp["workloads"]} == {"db-dev-01", "db-dev-02"}


def test_cloud_points_with_real_endpoints_are_left_alone_and_odd_loopback_ones_refused(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory"
    shutil.copytree(INVENTORY, inventory)
    hosts = yaml.safe_load((inventory / "hosts.yaml").read_text())
    for name in CLOUDS:
        hosts[name]["data"]["microseg"]["settings"].pop("credentials", None)
    del hosts["aws-sg-dev-web"]["data"]["microseg"]["settings"]["endpoint_url"]  # the real EC2 endpoint
    hosts["gcp-fw-dev-db"]["data"]["microseg"]["settings"]["api_endpoint"] = "https://compute.googleapis.com"
    (inventory / "hosts.yaml").write_text(yaml.safe_dump(hosts))
    endpoints = nornir_endpoints(load_nornir_inventory(inventory).hosts)
    plan = plan_lab(load_inventory(inventory), endpoints)
    assert [c.name for c in plan.clouds] == ["azure-nsg-dev-app"]  # the real accounts are not the lab's
    hosts["azure-nsg-dev-app"]["data"]["microseg"]["settings"]["base_url"] = "https://127.0.0.1"  # no port
    hosts["gcp-fw-dev-db"]["data"]["microseg"]["settings"]["api_endpoint"] = "http://127.30.0.2:2230"  # sw-dev-ios
    (inventory / "hosts.yaml").write_text(yaml.safe_dump(hosts))
    with pytest.raises(LabError) as caught:
        plan_lab(load_inventory(inventory), endpoints)
    text = " ".join(d.message for d in caught.value.diagnostics)
    assert "'azure-nsg-dev-app': setting 'base_url' 'https://127.0.0.1' is on loopback but not https://127" in text
    assert "gcp-fw-dev-db: API endpoint 127.30.0.2:2230 is also a host's or switch's SSH endpoint" in text


def test_plan_refuses_endpoints_outside_loopback_and_missing_ones() -> None:
    endpoints = nornir_endpoints(load_nornir_inventory(INVENTORY).hosts)
    endpoints["web-prod-01"] = ("192.0.2.1", 22)
    del endpoints["jump-01"]
    with pytest.raises(LabError) as caught:
        plan_lab(load_inventory(INVENTORY), endpoints, prefix="mt0")
    text = str(caught.value)
    assert "192.0.2.1:22 is not an IPv4 loopback" in text and "'jump-01' has no SSH endpoint" in text
    with pytest.raises(LabError, match="invalid lab prefix"):
        plan_lab(load_inventory(INVENTORY), endpoints, prefix="Bad-Prefix")
    with pytest.raises(LabError, match="22 is sshd's"):
        plan_lab(load_inventory(INVENTORY), nornir_endpoints(load_nornir_inventory(INVENTORY).hosts), ports=[22])


def test_not_root_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(LabError) as caught:
        require_root()
    assert str(caught.value) == "microseg lab needs root (network namespaces); run it with sudo"
    with pytest.raises(LabError, match="needs root"):
        Lab(Path("/nonexistent/lab")).down()


def test_missing_tools_are_named_with_their_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None if name in ("nft", "socat") else f"/bin/{name}")
    with pytest.raises(LabError) as caught:
        check_tools()
    assert str(caught.value) == "missing tools: nft (apt install nftables), socat (apt install socat)"


def test_a_lab_that_is_not_up(tmp_path: Path) -> None:
    lab = Lab(tmp_path, prefix="mtnone")
    status = lab.status()
    assert not status.up and not status.healthy and status.to_dict()["hosts"] == []
    with pytest.raises(LabError, match="no lab is up"):
        lab.exec("web-prod-01", ["true"])


# --------------------------------------------------------------------------- real namespaces


@needs_root
def test_up_builds_the_worked_example(lab: Lab, lab_plan: LabPlan) -> None:
    status = lab.status()
    assert status.healthy, status.problems
    assert {h.host.name for h in status.hosts if h.host.role == "point"} == POINTS
    assert all(h.sshd and h.listener and h.forwarder for h in status.hosts if h.host.role == "point")
    expected = {lab_plan.switch, *(h.namespace for h in lab_plan.hosts)}
    assert expected <= _namespaces()
    assert {f"{lab_plan.prefix}-internet", f"{lab_plan.prefix}-mgmt", f"{lab_plan.prefix}-web-dev-01"} <= expected
    addresses = lab.exec("web-prod-01", ["ip", "-brief", "address"]).stdout
    assert "10.20.1.11/32" in addresses and "fd00:20:1::11/128" in addresses
    known = lab.known_hosts.read_text()
    assert known.count("ssh-ed25519") == len(POINTS) + len(lab_plan.devices)  # hosts and switch simulators
    assert all(f"[{d.address}]:{d.port} ssh-ed25519" in known for d in lab_plan.devices)
    assert status.to_dict()["healthy"] is True


@needs_root
def test_the_switch_points_are_simulators_reachable_with_the_lab_key(lab: Lab, lab_plan: LabPlan,
                                                                     tmp_path: Path) -> None:
    assert lab.status().simulators is True
    known_hosts = str(tmp_path / "known_hosts")  # the fleet's host key is new with every `lab up` on fixed endpoints
    for device in lab_plan.devices:
        driver = DRIVERS[device.personality](PointContext(
            device.name, device.personality, Connection(device.address, device.port, "microseg", None),
            {"bindings": list(device.interfaces), "key_file": str(lab.key_file), "known_hosts": known_hosts},
            timeout=10.0,
            members=AddressSet.of(["10.99.0.0/24"])))
        assert driver.normalize(driver.fetch()).ruleset.rules == (), device.name  # a fresh device
        driver.close()


@needs_root
def test_up_twice_is_a_no_op(lab: Lab, lab_plan: LabPlan) -> None:
    before = load_state(lab.directory)
    started = time.monotonic()
    assert lab.up(lab_plan).healthy
    assert time.monotonic() - started < 2
    assert load_state(lab.directory) == before


@needs_root
def test_real_tcp_reaches_a_listener_and_a_closed_port_is_refused(lab: Lab) -> None:
    results = lab.probe_many([("web-dev-01", "10.20.1.11", 80), ("web-dev-01", "10.20.1.11", 81),
                              ("internet", "10.20.3.11", 5432), ("mon-01", "db-prod-02", 9100)])
    assert [(r.ok, r.detail) for r in results] == [(True, "connected"), (False, "refused"), (True, "connected"),
                                                   (True, "connected")]
    assert results[0].banner == "microseg-lab web-prod-01 80"
    assert results[3].dst == "10.20.3.12" and results[3].banner == "microseg-lab db-prod-02 9100"
    single = lab.probe("dns-01", "10.10.0.21", 53)
    assert single.ok and single.src == "dns-01" and single.banner == "microseg-lab jump-01 53"


@needs_root
def test_ipv6_between_namespaces(lab: Lab) -> None:
    results = lab.probe_many([("web-dev-01", "fd00:20:1::11", 443), ("internet", "fd00:20:2::11", 8443),
                              ("web-prod-01", "fd00:20:1::12", 80), ("db-dev-01", "fd00:20:1::11", 443)])
    assert [r.ok for r in results] == [True, True, True, False]
    assert results[0].banner == "microseg-lab web-prod-01 443"
    assert results[3].detail.startswith("unreachable")  # db-dev-01 has no IPv6 address, so no IPv6 route


@needs_root
def test_ssh_from_the_root_namespace_arrives_from_mgmt(lab: Lab, lab_plan: LabPlan) -> None:
    done = _ssh(lab, lab_plan, "web-prod-01", "ip -4 addr; nft --version; echo client=$SSH_CLIENT")
    assert done.returncode == 0, done.stderr
    assert "inet 10.20.1.11/32" in done.stdout and "nftables v" in done.stdout
    assert "client=10.0.0.10 " in done.stdout


@needs_root
def test_nft_in_a_point_namespace_filters_real_traffic(lab: Lab) -> None:
    ruleset = "table inet labtest {\n chain input {\n  type filter hook input priority 0;\n" \
              "  tcp dport 8443 drop\n  tcp dport 9100 reject with tcp reset\n }\n}\n"
    assert lab.exec("app-prod-01", ["nft", "-f", "-"], input=ruleset).returncode == 0
    try:
        results = lab.probe_many([("web-prod-01", "app-prod-01", 8443), ("web-prod-01", "app-prod-01", 9100),
                                  ("web-prod-01", "app-prod-01", 443)], timeout=0.5)
        assert [r.detail for r in results] == ["timed out", "refused", "connected"]
    finally:
        lab.exec("app-prod-01", ["nft", "delete", "table", "inet", "labtest"])
    assert lab.probe("web-prod-01", "app-prod-01", 8443).ok


@needs_root
def test_restart_sshd_with_extra_config_and_back(lab: Lab, lab_plan: LabPlan) -> None:
    lab.restart_sshd("db-prod-01", "ForceCommand echo forced-by-test")
    try:
        assert _ssh(lab, lab_plan, "db-prod-01", "hostname").stdout.strip() == "forced-by-test"
    finally:
        lab.restart_sshd("db-prod-01")
    done = _ssh(lab, lab_plan, "db-prod-01", "echo plain")
    assert done.stdout.strip() == "plain" and lab.status().healthy
    with pytest.raises(LabError, match="not a point"):
        lab.restart_sshd("mgmt")


@needs_root
def test_partial_lab_is_rebuilt_and_down_removes_everything(tmp_path: Path) -> None:
    """A second lab of its own: foreign namespaces refused, a broken lab rebuilt, down leaves nothing behind."""
    plan = _test_plan(f"mt{secrets.token_hex(2)}")
    lab = Lab(tmp_path / "lab", prefix=plan.prefix)
    busy = r"lab endpoints are in use: 127\.10\.0\.21:\d+ \(jump-01"
    with socket.create_server(plan.host("jump-01").ssh or ("", 0)), pytest.raises(LabError, match=busy):
        lab.up(plan)
    assert not lab.status().up and plan.switch not in _namespaces()
    subprocess.run(["ip", "netns", "add", plan.switch], check=True)
    try:
        with pytest.raises(LabError, match="exist but this lab did not create them"):
            lab.up(plan)
    finally:
        subprocess.run(["ip", "netns", "delete", plan.switch], check=True)
    try:
        assert lab.up(plan).healthy
        state = load_state(lab.directory)
        assert state is not None
        listener = state.process("listener", "jump-01")
        assert listener is not None
        os.kill(listener.pid, 15)
        deadline = time.monotonic() + 5
        while lab.status().healthy and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lab.status().problems == ("jump-01: listener is not serving",)
        assert lab.up(plan).healthy
        state = load_state(lab.directory)
        assert state is not None
    finally:
        removed = lab.down()
    assert not set(state.namespaces) & _namespaces()
    assert all(lab_system.start_time(p.pid) != p.start for p in state.processes)
    sshd = state.process("sshd", "jump-01")
    assert sshd is not None and f"sshd of jump-01 (pid {sshd.pid})" in removed
    assert f"namespace {plan.switch}" in removed
    assert lab.down() == [] and not lab.status().up


def _cloud_inventory(target: Path, lab: Lab, plan: LabPlan) -> Path:
    """The worked example's inventory, its cloud endpoints moved to where this test lab serves them."""
    shutil.copytree(INVENTORY, target)
    hosts = yaml.safe_load((target / "hosts.yaml").read_text())
    served = {c.name: c.endpoint for c in plan.clouds}
    hosts["aws-sg-dev-web"]["data"]["microseg"]["settings"]["endpoint_url"] = f"http://{served['aws-sg-dev-web']}"
    hosts["azure-nsg-dev-app"]["data"]["microseg"]["settings"].update(
        base_url=f"https://{served['azure-nsg-dev-app']}", ca_bundle=str(lab.ca_file))
    hosts["gcp-fw-dev-db"]["data"]["microseg"]["settings"]["api_endpoint"] = f"http://{served['gcp-fw-dev-db']}"
    (target / "hosts.yaml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    return target


@needs_root
def test_the_cloud_points_plan_apply_drift_and_roll_back_in_the_lab(lab: Lab, lab_plan: LabPlan,
                                                                     tmp_path: Path) -> None:
    """The three cloud points of the worked example against the lab's own cloud simulators, through the CLI and
    the unmodified SDKs, with nothing but the endpoints changed (credentials: anonymous, as shipped)."""
    inventory = _cloud_inventory(tmp_path / "inventory", lab, lab_plan)
    base = ["--policy", str(REPO / "policies"), "--inventory", str(inventory), "--store",
            f"sqlite:///{tmp_path}/state.db", "--actor", "tester"]
    targets = [arg for name in CLOUDS for arg in ("-t", name)]

    def cli(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, [*base, *args])
        return result.exit_code, (result.stdout if "--json" in args else result.output)

    code, out = cli("plan", "--detailed-exitcode", *targets)
    assert code == 2, out  # everything to create
    code, out = cli("apply", "--auto-approve", "--json", *targets)
    assert code == 0, out
    applied = json.loads(out)
    assert applied["states"] == {"new": sorted(CLOUDS)}, applied
    assert cli("drift", *targets)[0] == 0

    aws = next(c for c in lab_plan.clouds if c.kind == "aws")
    ec2 = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="x").client(
        "ec2", region_name="eu-west-1", endpoint_url=f"http://{aws.endpoint}")
    group = ec2.describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": ["vpc-0a1b2c3d4e5f60718"]},  # the inventory's VPC id, as the lab seeded it
        {"Name": "group-name", "Values": ["mseg-shop-dev-web"]}])["SecurityGroups"][0]
    enis = ec2.describe_network_interfaces(Filters=[{"Name": "group-id", "Values": [group["GroupId"]]}])
    assert sorted(e["PrivateIpAddress"] for e in enis["NetworkInterfaces"]) == ["10.30.1.11", "10.30.1.12"]
    ec2.authorize_security_group_ingress(GroupId=group["GroupId"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 3389, "ToPort": 3389, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    code, out = cli("drift", *targets)
    assert code == 2 and "tcp/3389" in out, out  # a hand edit in the cloud is drift

    code, out = cli("rollback", applied["run_id"], "--auto-approve", "--force")
    assert code == 0 and "3 restored" in out, out
    assert not ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["mseg-shop-dev-web"]}])[
        "SecurityGroups"]  # the group the apply created is gone again
    code, out = cli("plan", "--detailed-exitcode", "--json", *targets)
    assert code == 2 and {n for n, p in json.loads(out)["points"].items() if p["summary"] != "no changes"} == set(
        CLOUDS), out  # all three are back to where they started


@needs_root
def test_the_bridge_exports_the_labs_real_traffic_as_ipfix(lab: Lab, lab_plan: LabPlan) -> None:
    """softflowd on the lab's bridge, relayed to the host's namespace: a collector there receives the flows of
    real connections between the namespaces within seconds."""
    assert lab_plan.netflow is not None and lab.status().netflow is True
    received: list[FlowRecord] = []
    problems: list[Diagnostic] = []
    stop = threading.Event()
    collector = threading.Thread(target=netflow.collect, args=(lab_plan.netflow, received.extend, stop, problems),
                                 kwargs={"interval": 0.2})
    collector.start()
    try:
        deadline = time.monotonic() + 40
        wanted = {("10.20.1.11", "10.20.2.11", 8443), ("10.20.2.11", "10.20.3.11", 5432)}
        seen: set[tuple[str, str, int]] = set()
        while not wanted <= seen and time.monotonic() < deadline:
            lab.probe_many([("web-prod-01", "app-prod-01", 8443), ("app-prod-01", "db-prod-01", 5432)])
            time.sleep(2)
            seen = {(r.src, r.dst, r.dst_port) for r in list(received) if r.protocol == 6}
    finally:
        stop.set()
        collector.join(timeout=10)
    assert wanted <= seen, (seen, problems)
    assert all(r.observer.startswith("127.0.0.1") for r in received)  # the relay's address, as exporter
