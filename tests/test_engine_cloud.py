"""The engine over the worked example's three cloud points at once: moto (AWS), the ARM fake, the Compute fake.

Through the unmodified SDKs over real loopback HTTP: plan, apply, verify, an
empty second plan with zero mutating calls, drift repaired, throttling
retried, and a failure on the last cloud rolling the other two back.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from drivers.aws_sg import AwsSecurityGroupDriver
from drivers.azure_nsg import AzureNsgDriver
from orchestrator.engine.engine import Actor, Engine, EngineOptions
from orchestrator.engine.project import load_project
from orchestrator.engine.retry import RetryPolicy
from orchestrator.engine.rollback import rollback_run
from orchestrator.engine.transaction import ApplyOptions, apply_plan
from orchestrator.inventory.inventory import load_nornir_inventory
from orchestrator.store import open_store
from simulators.azure_arm import FakeArm, FakeCredential, running_fake_arm
from simulators.gcp_compute import FakeCompute
from tests.aws_fixtures import Ec2Lab, Ec2Proxy, aws_env, boto_session, ec2_client, ec2_proxy, moto_endpoint
from tests.conftest import REPO

__all__ = ["aws_env", "boto_session", "ec2_proxy", "moto_endpoint"]  # pytest fixtures, used by name

CLOUD = ("aws-sg-dev-web", "azure-nsg-dev-app", "gcp-fw-dev-db")  # hosts.yaml order: the order they run in
TODAY = date(2026, 11, 21)


@dataclass
class Clouds:
    inventory: Path
    aws: Ec2Lab
    proxy: Ec2Proxy
    arm: FakeArm
    gcp: FakeCompute
    session: Any

    def mutating(self) -> tuple[int, int, int]:
        return self.proxy.mutating(), self.arm.writes(), self.gcp.mutating_calls()

    def engine(self, store: str, workers: int = 3) -> Engine:
        project = load_project(REPO / "policies", self.inventory, today=TODAY)
        overrides = {"azure_nsg": functools.partial(AzureNsgDriver, credential=FakeCredential()),
                     "aws_sg": functools.partial(AwsSecurityGroupDriver, session=self.session)}
        options = EngineOptions(workers=workers, retry=RetryPolicy(attempts=3, base=0.05))
        return Engine(project, load_nornir_inventory(self.inventory), open_store(store), Actor("tester"), options,
                      driver_overrides=overrides, owns_store=True)  # type: ignore[arg-type]


def cloud_inventory(target: Path, aws: Ec2Lab, arm: FakeArm, gcp: FakeCompute) -> Path:
    """The worked example's inventory, its cloud points only, their endpoints on the loopback counterparts."""
    shutil.copytree(REPO / "inventory", target)
    hosts = yaml.safe_load((target / "hosts.yaml").read_text())
    hosts = {name: hosts[name] for name in CLOUD}
    settings = {name: hosts[name]["data"]["microseg"]["settings"] for name in CLOUD}
    settings["aws-sg-dev-web"].update(endpoint_url=aws.proxy.url, vpc_id=aws.vpc_id, retry_base_seconds=0.01,
                                      max_mutating_calls_per_second=50)
    settings["azure-nsg-dev-app"].update(base_url=arm.base_url, ca_bundle=arm.ca_file, poll_interval=0.01)
    settings["gcp-fw-dev-db"].update(api_endpoint=gcp.url, credentials="anonymous")
    (target / "hosts.yaml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    workloads = yaml.safe_load((target / "workloads.yaml").read_text())
    for workload in workloads["workloads"]:
        if workload["name"] == "web-dev-01":  # moto hands out its own IPv6 block: the member lives there
            workload["addresses"] = ["10.30.1.11", aws.v6(0x11)]
    (target / "workloads.yaml").write_text(yaml.safe_dump(workloads, sort_keys=False))
    return target


@pytest.fixture
def clouds(tmp_path: Path, aws_env: None, moto_endpoint: str, ec2_proxy: Ec2Proxy,
           boto_session: Any) -> Iterator[Clouds]:
    aws = Ec2Lab(ec2_client(moto_endpoint, boto_session), ec2_proxy, boto_session).build()
    with running_fake_arm(tmp_path) as arm, FakeCompute() as gcp:
        inventory = cloud_inventory(tmp_path / "inventory", aws, arm, gcp)
        ec2_proxy.reset()
        yield Clouds(inventory, aws, ec2_proxy, arm, gcp, boto_session)
    aws.close()


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/state.db"


def test_plan_apply_verify_and_an_empty_second_plan_across_three_clouds(clouds: Clouds, store: str) -> None:
    with clouds.engine(store) as engine:
        plan = engine.plan(CLOUD)
        assert not plan.failures, plan.failures
        assert {p.point for p in plan.changes} == set(CLOUD)
        assert clouds.mutating() == (0, 0, 0)  # planning never writes
        result = apply_plan(engine, plan, ApplyOptions(), {})
        assert result.status == "ok" and result.by_state() == {"new": sorted(CLOUD)}, result.to_dict()
        aws_calls, azure_writes, gcp_calls = clouds.mutating()
        assert azure_writes == 1  # one whole-NSG write
        assert aws_calls <= 7 and gcp_calls == len(plan.points["gcp-fw-dev-db"].change.commands)
        twin = engine.plan(CLOUD)
        assert not twin.changes and not twin.failures
        assert clouds.mutating() == (aws_calls, azure_writes, gcp_calls)  # the twin wrote nothing
    group = clouds.aws.owned_group("mseg-shop-dev-web")
    assert group is not None and group["GroupId"] in clouds.aws.groups_of(clouds.aws.enis["web1"])


def test_a_failure_on_the_last_cloud_rolls_the_other_two_back(clouds: Clouds, store: str) -> None:
    clouds.gcp.fail("firewalls.insert", nth=2, status=400)
    nsg_before = clouds.arm.nsg("rg-shop-dev", "nsg-shop-dev-app")
    with clouds.engine(store, workers=1) as engine:
        result = apply_plan(engine, engine.plan(CLOUD), ApplyOptions(), {})
    assert result.status == "failed", result.to_dict()
    assert result.outcomes["aws-sg-dev-web"].state.value == "restored"
    assert result.outcomes["azure-nsg-dev-app"].state.value == "restored"
    assert result.outcomes["gcp-fw-dev-db"].state.value in ("restored", "unchanged")
    assert "gcp-fw-dev-db" in (result.outcomes["gcp-fw-dev-db"].error or "")
    assert clouds.aws.owned_group("mseg-shop-dev-web") is None  # the SG the run created is gone again
    assert clouds.aws.groups_of(clouds.aws.enis["web1"]) == [clouds.aws.default_sg]
    assert clouds.arm.nsg("rg-shop-dev", "nsg-shop-dev-app") == nsg_before
    assert not [name for name in clouds.gcp.rules("shop-dev-000000") if name.startswith("mseg-")]


def test_drift_made_by_hand_is_found_and_repaired(clouds: Clouds, store: str) -> None:
    with clouds.engine(store) as engine:
        assert apply_plan(engine, engine.plan(CLOUD), ApplyOptions(), {}).ok
        group = clouds.aws.owned_group("mseg-shop-dev-web")
        assert group is not None
        clouds.aws.ec2.authorize_security_group_ingress(GroupId=group["GroupId"], IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 3389, "ToPort": 3389, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
        drift = engine.plan(CLOUD)
        assert [p.point for p in drift.changes] == ["aws-sg-dev-web"]
        removed = drift.points["aws-sg-dev-web"].diff.removed
        assert [(r.protocol, r.dst_ports) for r in removed] == [(6, ((3389, 3389),))]
        assert apply_plan(engine, drift, ApplyOptions(), {}).ok
        assert not engine.plan(CLOUD).changes


def test_throttling_on_two_clouds_is_retried(clouds: Clouds, store: str) -> None:
    clouds.proxy.fail("DescribeSecurityGroups", kind="throttle", delay=0.05)
    clouds.arm.fail("GET", "nsg", fault="429", retry_after=0)
    with clouds.engine(store) as engine:
        plan = engine.plan(CLOUD)
        assert not plan.failures, plan.failures
        assert not clouds.proxy.faults and not clouds.arm.faults  # both throttles were met, and retried
        assert clouds.proxy.counts["DescribeSecurityGroups"] == 2 and clouds.arm.count("GET", "nsg") >= 2
        assert apply_plan(engine, plan, ApplyOptions(), {}).ok


def test_rollback_of_a_run_restores_all_three_clouds(clouds: Clouds, store: str) -> None:
    with clouds.engine(store) as engine:
        before = {p: engine.observe(p)[0].fingerprint() for p in CLOUD}
        result = apply_plan(engine, engine.plan(CLOUD), ApplyOptions(), {})
        assert result.ok
        back = rollback_run(engine, result.run_id)
        assert back.by_state() == {"restored": sorted(CLOUD)}, back.to_dict()
        after = engine.plan(CLOUD)
        assert {p.point for p in after.changes} == set(CLOUD)  # the policy is no longer in place …
        for point in CLOUD:  # … and every point is exactly as before the run
            assert engine.observe(point)[0].fingerprint() == before[point]


def test_flow_logs_naming_the_cloud_rules_are_hit_evidence_for_their_policy_rules(clouds: Clouds, store: str,
                                                                                   tmp_path: Path) -> None:
    """#17: Azure NSG flow logs and GCP Firewall Rules Logging name the rule that decided each flow.  After an
    apply and a drift run (which samples what each owned rule is called), flow-log records under microseg's rule
    names count for the policy rules those rules stand for — the same rules the cloud's own descriptions name —
    and records under Azure's default rules are counted apart, as not microseg's."""
    import json
    import time

    from click.testing import CliRunner

    from drivers.azure_nsg.flowlogs import AzureFlowLogSource
    from drivers.gcp_firewall.flowlogs import GcpFlowLogSource
    from orchestrator.cli.main import main
    from orchestrator.flows.store import FlowStore

    points = ["azure-nsg-dev-app", "gcp-fw-dev-db"]
    with clouds.engine(store) as engine:
        assert apply_plan(engine, engine.plan(points), ApplyOptions(), {}).ok
        drift = engine.plan(points)
        assert not drift.changes
        engine.record_plan("drift", drift, {})
    azure_names, gcp_names = drift.points[points[0]].log_names, drift.points[points[1]].log_names
    nsg = clouds.arm.nsg("rg-shop-dev", "nsg-shop-dev-app")
    assert nsg is not None
    described = {r["name"]: r["properties"].get("description", "") for r in nsg["properties"]["securityRules"]}
    nsg_id = ("/subscriptions/00000000-0000-4000-8000-000000000000/resourcegroups/rg-shop-dev/providers/"
              "microsoft.network/networksecuritygroups/nsg-shop-dev-app")
    azure_rule, azure_policy = next((name.split("/UserRule_")[1], rules) for name, rules in azure_names.items()
                                    if name.startswith(f"{nsg_id}/"))
    assert set(described[azure_rule].split(", ")) == set(azure_policy)  # what the NSG itself says the rule is for
    guid = nsg["properties"]["resourceGuid"]
    assert azure_names[f"{guid}/UserRule_{azure_rule}"] == azure_policy  # VNet flow logs name the NSG by its GUID
    assert azure_names[f"{guid}/{azure_rule}"] == azure_policy  # … and perhaps the rule by its bare name
    gcp_rule, gcp_policy = next(iter(gcp_names.items()))
    assert all(policy in clouds.gcp.rules("shop-dev-000000")[gcp_rule]["description"] for policy in gcp_policy)

    now = int(time.time()) + 2  # logged after the drift run sampled the names
    nsg_log = tmp_path / "PT1H.json"
    resource = ("/SUBSCRIPTIONS/00000000-0000-4000-8000-000000000000/RESOURCEGROUPS/RG-SHOP-DEV/PROVIDERS/"
                "MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/NSG-SHOP-DEV-APP")  # NSG flow logs upper-case it
    tuples = [f"{now + k},10.30.1.11,10.30.2.11,5000{k},8443,T,I,A,B,,,," for k in range(3)]
    nsg_log.write_text(json.dumps({"records": [{
        "time": "2026-12-07T10:00:00Z", "category": "NetworkSecurityGroupFlowEvent", "resourceId": resource,
        "operationName": "NetworkSecurityGroupFlowEvents", "properties": {"Version": 2, "flows": [
            {"rule": f"UserRule_{azure_rule}", "flows": [{"mac": "000D3AF87856", "flowTuples": tuples}]},
            {"rule": "DefaultRule_DenyAllInBound",
             "flows": [{"mac": "000D3AF87856", "flowTuples": [f"{now},192.0.2.7,10.30.2.11,4000,22,T,I,D,B,,,,"]}]},
        ]}}]}))
    gcp_log = tmp_path / "firewall.json"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    gcp_log.write_text(json.dumps([{
        "insertId": "fw-1", "logName": "projects/shop-dev-000000/logs/compute.googleapis.com%2Ffirewall",
        "timestamp": stamp, "jsonPayload": {
            "connection": {"src_ip": "10.30.2.11", "src_port": 40000, "dest_ip": "10.30.3.11", "dest_port": 5432,
                           "protocol": 6},
            "disposition": "ALLOWED", "rule_details": {"reference": f"network:shop-dev/firewall:{gcp_rule}"},
            "instance": {"vm_name": "db-dev-01"}}}]))
    flows = tmp_path / "flows.duckdb"
    with FlowStore(flows) as flow_store:
        for source, path in ((AzureFlowLogSource(), nsg_log), (GcpFlowLogSource(), gcp_log)):
            problems: list[Any] = []
            report = flow_store.import_records(source.name, str(path), source.read(str(path), problems), problems)
            assert not report.problems, report.problems

    result = CliRunner().invoke(main, ["--policy", str(REPO / "policies"), "--store", store, "hits", "--json",
                                       "--flow-store", str(flows)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    logged = {r["rule"]: r["flow_logs"]["records"] for r in report["rules"] if r["flow_logs"]}
    expected: dict[str, int] = {}
    for rules, records in ((azure_policy, 3), (gcp_policy, 1)):
        for rule in rules:
            expected[rule] = expected.get(rule, 0) + records
    assert logged == expected
    assert report["flow_logs"] == {"attributed": 4, "unattributed": 1, "ambiguous": {}}
    table = CliRunner().invoke(main, ["--policy", str(REPO / "policies"), "--store", store, "hits",
                                      "--flow-store", str(flows)])
    assert "flow logs: 4 records attributed to policy rules, 1 record under rules no stored plan names" in \
        table.stdout


def test_vpc_flow_logs_are_evaluated_against_the_rules_the_enis_carried(clouds: Clouds, store: str,
                                                                        tmp_path: Path) -> None:
    """#17: AWS VPC Flow Logs name no rule, only the ENI that logged the flow.  A drift run stores which ENIs carry
    the owned group (and their addresses) beside the rules it enforced; `hits` then evaluates each accepted flow
    logged at one of them against those rules, crediting the policy rules the security group's own rule
    descriptions name.  A reject, a reply (SYN-ACK in ``tcp-flags``) and a flow no owned rule allows count for
    nothing; an ENI without the group is not read."""
    import ipaddress
    import json
    import time

    from click.testing import CliRunner

    from orchestrator.cli.main import main

    point = "aws-sg-dev-web"
    with clouds.engine(store) as engine:
        assert apply_plan(engine, engine.plan([point]), ApplyOptions(), {}).ok
        drift = engine.plan([point])
        assert not drift.changes
        engine.record_plan("drift", drift, {})
    web1, other = clouds.aws.enis["web1"], clouds.aws.enis["other"]
    observers = drift.points[point].log_observers
    assert set(observers) == {web1, clouds.aws.enis["web2"]} and "10.30.1.11" in observers[web1]
    group = clouds.aws.owned_group("mseg-shop-dev-web")
    assert group is not None
    ingress = [r for r in clouds.aws.rules(group["GroupId"]) if not r["IsEgress"] and r["IpProtocol"] == "tcp"
               and r.get("CidrIpv4")]
    assert ingress
    sg_rule = ingress[0]
    client = str(next(iter(ipaddress.ip_network(sg_rule["CidrIpv4"]).hosts()), None)
                 or ipaddress.ip_network(sg_rule["CidrIpv4"]).network_address)
    port = int(sg_rule["FromPort"])
    described = set(sg_rule["Description"].removeprefix("microseg:").split(","))  # what the group says it is for

    now = int(time.time()) + 2  # logged after the drift run stored the rules
    head = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end " \
           "action log-status tcp-flags"  # a custom format with tcp-flags, as S3 delivery heads each file
    lines = [head,
             f"2 123456789010 {web1} {client} 10.30.1.11 40000 {port} 6 10 840 {now} {now + 60} ACCEPT OK 2",
             f"2 123456789010 {web1} {client} 10.30.1.11 40001 {port} 6 12 900 {now} {now + 60} ACCEPT OK 3",
             f"2 123456789010 {web1} {client} 10.30.1.11 40002 {port} 6 1 40 {now} {now + 60} REJECT OK 2",
             f"2 123456789010 {web1} 192.0.2.99 10.30.1.11 40003 {port} 6 1 40 {now} {now + 60} ACCEPT OK 2",
             # SYN-ACK: the listener's answer (web1 opened it from that port), let in by the connection state
             f"2 123456789010 {web1} {client} 10.30.1.11 9000 {port} 6 1 40 {now} {now + 60} ACCEPT OK 18",
             f"2 123456789010 {other} {client} 10.30.1.50 40004 {port} 6 1 40 {now} {now + 60} ACCEPT OK 2"]
    log = tmp_path / "vpc.log"
    log.write_text("\n".join(lines) + "\n")
    flows = tmp_path / "flows.duckdb"
    collected = CliRunner().invoke(main, ["collect", "vpc", str(log), "--flow-store", str(flows), "--json"])
    assert collected.exit_code == 0, collected.output  # the bulk path: the database reads the file itself
    assert json.loads(collected.stdout)["imports"][0]["records"] == 6

    result = CliRunner().invoke(main, ["--policy", str(REPO / "policies"), "--store", store, "hits", "--json",
                                       "--flow-store", str(flows)])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    logged = {r["rule"]: r["flow_logs"] for r in answer["rules"] if r["flow_logs"]}
    assert set(logged) == described and all(use["records"] == 2 and use["packets"] == 22 and
                                            use["evaluated_at"] == [web1] for use in logged.values())
    assert answer["flow_logs"] == {"attributed": 2, "unattributed": 3, "ambiguous": {}}
