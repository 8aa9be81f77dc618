"""The EC2 workload source against moto's EC2 server over HTTP (through the counting proxy)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from drivers.aws_sg.workloads import Ec2WorkloadSource
from orchestrator.model.errors import InventoryError, Severity

if TYPE_CHECKING:
    from tests.aws_fixtures import Ec2Lab

pytest_plugins = ["tests.aws_fixtures"]
AMI = "ami-12c6146b"  # one of moto's built-in images


def launch(lab: Ec2Lab, v4: str, tags: dict[str, str], v6: str | None = None) -> str:
    interface: dict[str, Any] = {"DeviceIndex": 0, "SubnetId": lab.subnet_id, "PrivateIpAddress": v4}
    spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}] if tags else []
    answer = lab.ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, NetworkInterfaces=[interface],
                                   TagSpecifications=spec)["Instances"][0]
    if v6:  # moto ignores Ipv6Addresses in run_instances; assigning them to the ENI afterwards is what EC2 does too
        lab.ec2.assign_ipv6_addresses(NetworkInterfaceId=answer["NetworkInterfaces"][0]["NetworkInterfaceId"],
                                      Ipv6Addresses=[v6])
    return str(answer["InstanceId"])


def source(lab: Ec2Lab, **config: Any) -> Ec2WorkloadSource:
    base = {"region": "eu-west-1", "endpoint_url": lab.proxy.url, "filters": {"vpc-id": lab.vpc_id}}
    return Ec2WorkloadSource({**base, **config}, Path("."))


def test_running_instances_become_workloads_with_tag_labels_and_eni_addresses(ec2_lab: Ec2Lab) -> None:
    lab = ec2_lab
    launch(lab, "10.30.1.21", {"Name": "web-dev-01", "app": "shop", "tier": "web", "env": "dev"}, lab.v6(0x21))
    launch(lab, "10.30.1.22", {"Name": "web-dev-02", "app": "shop", "tier": "web", "env": "dev"})
    unnamed = launch(lab, "10.30.1.23", {"app": "shop"})
    stopped = launch(lab, "10.30.1.24", {"Name": "old-web", "app": "shop"})
    lab.ec2.stop_instances(InstanceIds=[stopped])
    loaded = source(lab).load()
    found = {w.name: w for w in loaded.workloads}
    assert set(found) == {"web-dev-01", "web-dev-02", unnamed}
    web1 = found["web-dev-01"]
    assert web1.addresses == (ipaddress.ip_address("10.30.1.21"), ipaddress.ip_address(lab.v6(0x21)))
    assert web1.labels == {"app": "shop", "tier": "web", "env": "dev"}
    assert found[unnamed].labels == {"app": "shop"}
    assert loaded.diagnostics == ()
    assert lab.proxy.counts == {"DescribeInstances": 1}


def test_filters_and_label_tags_select_and_rename(ec2_lab: Ec2Lab) -> None:
    lab = ec2_lab
    launch(lab, "10.30.1.31", {"Name": "api-1", "Application": "shop", "Tier": "app", "cost": "42"})
    launch(lab, "10.30.1.32", {"Name": "batch-1", "Application": "billing"})
    loaded = source(lab, filters={"vpc-id": lab.vpc_id, "tag:Application": ["shop"]},
                    label_tags={"Application": "app", "Tier": "tier"}).load()
    assert [(w.name, w.labels) for w in loaded.workloads] == [("api-1", {"app": "shop", "tier": "app"})]
    listed = source(lab, label_tags=["Tier"]).load()
    assert {w.name: w.labels for w in listed.workloads} == {"api-1": {"Tier": "app"}, "batch-1": {}}


def test_bad_and_duplicate_names_are_diagnostics_not_failures(ec2_lab: Ec2Lab) -> None:
    lab = ec2_lab
    odd = launch(lab, "10.30.1.41", {"Name": "web 01/blue"})
    launch(lab, "10.30.1.42", {"Name": "twin"})
    launch(lab, "10.30.1.43", {"Name": "twin"})
    loaded = source(lab).load()
    names = sorted(w.name for w in loaded.workloads)
    assert names == sorted([odd, "twin"])
    messages = {d.code: (d.severity, d.message) for d in loaded.diagnostics}
    assert messages["name"][0] is Severity.WARNING and "using the instance id" in messages["name"][1]
    assert messages["duplicate"][0] is Severity.ERROR and "two running instances are named 'twin'" in \
        messages["duplicate"][1]


def test_throttling_is_retried_and_a_refusal_is_an_inventory_error(ec2_lab: Ec2Lab) -> None:
    lab = ec2_lab
    launch(lab, "10.30.1.51", {"Name": "web-9"})
    lab.proxy.fail("DescribeInstances", kind="throttle")
    assert [w.name for w in source(lab).load().workloads] == ["web-9"]
    assert lab.proxy.counts["DescribeInstances"] == 2
    lab.proxy.fail("DescribeInstances", kind="invalid")
    with pytest.raises(InventoryError, match="describe_instances in eu-west-1 failed: InvalidParameterValue"):
        source(lab).load()


@pytest.mark.parametrize(("config", "message"), [
    ({"regoin": "eu-west-1"}, "unknown setting 'regoin'.*did you mean 'region'"),
    ({}, "'region' is required"),
    ({"region": "eu-west-1", "filters": "tag:env=dev"}, "'filters' must map"),
    ({"region": "eu-west-1", "label_tags": [1]}, "'label_tags' must be"),
    ({"region": "eu-west-1", "endpoint_url": "127.0.0.1:5000"}, "http"),
])
def test_bad_configuration_is_refused_before_any_io(config: dict[str, Any], message: str) -> None:
    with pytest.raises(InventoryError, match=message):
        Ec2WorkloadSource(config, Path("."))


def test_plugs_into_sources_yaml_under_the_ec2_entry_point(ec2_lab: Ec2Lab, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The entry point ``ec2 = "drivers.aws_sg.workloads:Ec2WorkloadSource"`` (registered here by hand)."""
    from importlib.metadata import EntryPoint, EntryPoints

    from orchestrator.inventory import workloads as workloads_module

    group = workloads_module.WORKLOAD_SOURCE_ENTRY_POINT_GROUP
    ec2 = EntryPoint("ec2", "drivers.aws_sg.workloads:Ec2WorkloadSource", group)
    monkeypatch.setattr(workloads_module, "entry_points", lambda *, group, name=None: EntryPoints(
        [e for e in (ec2,) if e.group == group and name in (None, e.name)]))
    launch(ec2_lab, "10.30.1.61", {"Name": "web-dev-61", "tier": "web"})
    (tmp_path / "sources.yaml").write_text(
        "workload_sources:\n"
        f"  - {{type: ec2, region: eu-west-1, endpoint_url: '{ec2_lab.proxy.url}',\n"
        f"     filters: {{vpc-id: {ec2_lab.vpc_id}}}, label_tags: [tier]}}\n", encoding="utf-8")
    loaded = workloads_module.load_workload_sources(tmp_path)
    assert [(w.name, w.labels) for w in loaded.workloads] == [("web-dev-61", {"tier": "web"})]
    assert loaded.diagnostics == ()
