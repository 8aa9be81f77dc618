"""Workloads: the model, the workload-source registry, the static YAML source and multi-source merging."""

from __future__ import annotations

import ipaddress
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from orchestrator.inventory import workloads as workloads_module
from orchestrator.inventory.scope import Workload
from orchestrator.inventory.workloads import (
    WORKLOAD_SOURCE_ENTRY_POINT_GROUP,
    StaticWorkloadSource,
    WorkloadLoad,
    WorkloadSource,
    available_sources,
    get_source,
    load_workload_sources,
)
from orchestrator.model.errors import Diagnostic, InventoryError, Severity


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load_static(directory: Path, text: str, name: str = "workloads.yaml") -> WorkloadLoad:
    write(directory, name, text)
    return StaticWorkloadSource({"path": name}, directory).load()


def messages(load: WorkloadLoad) -> list[str]:
    return [str(d) for d in load.diagnostics]


# --------------------------------------------------------------------------- the model


def test_workload_coerces_numeric_labels_and_single_address() -> None:
    w = Workload.model_validate({"name": "web-1", "addresses": "10.0.0.1", "labels": {"port": 8080, "ver": 1.5}})
    assert w.addresses == (ipaddress.IPv4Address("10.0.0.1"),)
    assert w.labels == {"port": "8080", "ver": "1.5"}
    assert w.networks.to_list() == ["10.0.0.1/32"]


def test_workload_is_frozen_and_forbids_unknown_fields() -> None:
    w = Workload.model_validate({"name": "db-1", "addresses": ["fd00::1", "10.0.0.2"]})
    assert w.networks.to_list() == ["10.0.0.2/32", "fd00::1/128"]
    with pytest.raises(ValidationError):
        w.name = "other"
    with pytest.raises(ValidationError, match="extra"):
        Workload.model_validate({"name": "x", "addresses": ["10.0.0.1"], "role": "db"})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "x", "addresses": []}, "at least 1 item"),
        ({"name": "x", "addresses": ["10.0.0.1/24"]}, "one host address, not a CIDR"),
        ({"name": "x", "addresses": ["10.0.0.1", "10.0.0.1"]}, "address 10.0.0.1 is listed twice"),
        ({"name": "x", "addresses": ["10.0.0.1"], "labels": {"prod": True}}, "quote it ('true')"),
        ({"name": "a/b", "addresses": ["10.0.0.1"]}, "invalid name 'a/b'"),
    ],
)
def test_workload_rejects(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Workload.model_validate(data)


# --------------------------------------------------------------------------- the registry


def test_registry_finds_the_static_source_through_entry_points() -> None:
    assert WORKLOAD_SOURCE_ENTRY_POINT_GROUP == "microseg.workload_sources"
    assert available_sources()["static"] is StaticWorkloadSource
    assert get_source("static") is StaticWorkloadSource


def test_unknown_source_type_names_the_known_ones() -> None:
    with pytest.raises(InventoryError) as info:
        get_source("statik")
    assert info.value.message == ("unknown workload source type 'statik' (did you mean 'static'? "
                                  "Known workload source types: azure, ec2, gcp, netbox, static)")
    with pytest.raises(InventoryError) as info:
        get_source("servicenow")
    assert info.value.message == ("unknown workload source type 'servicenow' "
                                  "(known workload source types: azure, ec2, gcp, netbox, static)")
    assert [d.code for d in info.value.diagnostics] == ["unknown-source"]


def test_static_source_follows_the_protocol(tmp_path: Path) -> None:
    source: WorkloadSource = StaticWorkloadSource({}, tmp_path)
    assert source.name == f"static:{tmp_path / 'workloads.yaml'}"
    with pytest.raises(InventoryError, match=r"unknown setting 'paht' \(did you mean 'path'\?\)"):
        StaticWorkloadSource({"paht": "w.yaml"}, tmp_path)


# --------------------------------------------------------------------------- the static source


def test_static_source_loads_workloads_in_file_order(tmp_path: Path) -> None:
    load = load_static(tmp_path, """
        workloads:
          - name: web-1
            addresses: [10.20.1.11, "fd00:20:1::11"]
            labels: {tier: web, env: prod}
          - name: db-1
            addresses: 10.20.3.11
    """)
    assert load.diagnostics == ()
    assert [w.name for w in load.workloads] == ["web-1", "db-1"]
    assert load.workloads[0].labels == {"tier": "web", "env": "prod"}
    assert load.workloads[1].labels == {}
    assert str(load.locations["db-1"]) == f"{tmp_path / 'workloads.yaml'}:5:5"


def test_static_source_reports_every_bad_entry_and_keeps_the_rest(tmp_path: Path) -> None:
    load = load_static(tmp_path, """
        workloads:
          - name: web-1
            addresses: [10.20.1.11]
          - name: web-2
            addresses: [10.20.1.300, 10.20.1.12/32]
          - name: web-3
            adresses: [10.20.1.13]
          - "just a string"
          - name: web-4
            addresses: [10.20.1.14]
            labels: {env: prod, canary: yes}
          - name: web-5
            addresses: [10.20.1.15]
    """)
    f = tmp_path / "workloads.yaml"
    assert [w.name for w in load.workloads] == ["web-1", "web-5"]
    assert messages(load) == [
        f"{f}:5:17: error: workload 'web-2': addresses[0]: invalid IP address '10.20.1.300'",
        f"{f}:5:30: error: workload 'web-2': addresses[1]: invalid IP address '10.20.1.12/32' "
        "(a workload address is one host address, not a CIDR)",
        f"{f}:6:5: error: workload 'web-3': missing required field 'addresses'",
        f"{f}:7:5: error: workload 'web-3': unknown field 'adresses' (did you mean 'addresses'?)",
        f"{f}:8:5: error: a workload must be a mapping with name, addresses and labels",
        f"{f}:11:33: error: workload 'web-4': labels.canary: label value true is a boolean: "
        "quote it ('true') to use it as text",
    ]


def test_duplicate_workload_names_both_places(tmp_path: Path) -> None:
    load = load_static(tmp_path, """
        workloads:
          - name: db-1
            addresses: [10.20.3.11]
          - name: db-2
            addresses: [10.20.3.12]
          - name: db-1
            addresses: [10.20.3.13]
    """)
    f = tmp_path / "workloads.yaml"
    assert [w.name for w in load.workloads] == ["db-1", "db-2"]
    assert load.workloads[0].addresses == (ipaddress.IPv4Address("10.20.3.11"),)
    assert messages(load) == [f"{f}:6:11: error: workload 'db-1' is defined twice: at {f}:2:5 and at {f}:6:5"]


def test_an_address_used_by_two_workloads_is_a_warning(tmp_path: Path) -> None:
    load = load_static(tmp_path, """
        workloads:
          - {name: vip-a, addresses: [10.0.0.5, 10.0.0.6]}
          - {name: vip-b, addresses: [10.0.0.7, 10.0.0.5]}
    """)
    f = tmp_path / "workloads.yaml"
    assert [w.name for w in load.workloads] == ["vip-a", "vip-b"]
    assert [d.severity for d in load.diagnostics] == [Severity.WARNING]
    assert messages(load) == [
        f"{f}:3:41: warning: address 10.0.0.5 is used by workload 'vip-a' ({f}:2:5) and by 'vip-b'"]


def test_yaml_syntax_error_is_located(tmp_path: Path) -> None:
    load = load_static(tmp_path, """
        workloads:
          - name: web-1
            addresses: [10.0.0.1
          - name: web-2
    """)
    assert load.workloads == ()
    assert len(load.diagnostics) == 1
    diag = load.diagnostics[0]
    assert diag.code == "yaml"
    assert diag.location is not None and diag.location.file == str(tmp_path / "workloads.yaml")
    assert diag.location.line == 4


def test_file_shape_problems(tmp_path: Path) -> None:
    f = tmp_path / "workloads.yaml"
    assert messages(load_static(tmp_path, "- name: x\n")) == [
        f"{f}:1:1: error: a workloads file must be a mapping with a 'workloads' list"]
    assert messages(load_static(tmp_path, "workload: []\n")) == [
        f"{f}:1:1: error: unknown top-level key 'workload' (did you mean 'workloads'?)"]
    assert messages(load_static(tmp_path, "workloads: {a: 1}\n")) == [f"{f}:1:12: error: 'workloads' must be a list"]
    empty = load_static(tmp_path, "# nothing yet\n")
    assert [(d.severity, d.message) for d in empty.diagnostics] == [(Severity.WARNING, f"{f} defines no workloads")]


def test_missing_file_is_a_diagnostic(tmp_path: Path) -> None:
    load = StaticWorkloadSource({"path": "nope.yaml"}, tmp_path).load()
    assert load.workloads == ()
    assert len(load.diagnostics) == 1
    assert load.diagnostics[0].code == "io"
    assert str(load.diagnostics[0]).startswith(f"{tmp_path / 'nope.yaml'}: error: cannot read file")


# --------------------------------------------------------------------------- every source of an inventory


def test_without_sources_yaml_the_static_default_is_used(tmp_path: Path) -> None:
    assert load_workload_sources(tmp_path) == WorkloadLoad((), (), {})
    write(tmp_path, "workloads.yaml", "workloads: [{name: a, addresses: [10.0.0.1]}]\n")
    load = load_workload_sources(tmp_path)
    assert [w.name for w in load.workloads] == ["a"]


def test_two_sources_merge_and_conflicts_are_reported(tmp_path: Path) -> None:
    write(tmp_path, "sources.yaml", """
        workload_sources:
          - type: static
            path: on-prem.yaml
          - {type: static, path: cloud.yaml}
    """)
    write(tmp_path, "on-prem.yaml", """
        workloads:
          - {name: web-1, addresses: [10.0.0.1]}
          - {name: db-1, addresses: [10.0.0.2]}
    """)
    write(tmp_path, "cloud.yaml", """
        workloads:
          - {name: web-1, addresses: [10.1.0.1]}
          - {name: api-1, addresses: [10.0.0.2]}
    """)
    load = load_workload_sources(tmp_path)
    onprem, cloud = tmp_path / "on-prem.yaml", tmp_path / "cloud.yaml"
    assert [w.name for w in load.workloads] == ["web-1", "db-1", "api-1"]
    assert load.workloads[0].addresses == (ipaddress.IPv4Address("10.0.0.1"),)
    assert [str(d) for d in load.diagnostics] == [
        f"{cloud}:2:5: error: workload 'web-1' is defined twice: by static:{onprem} at {onprem}:2:5 "
        f"and by static:{cloud} at {cloud}:2:5",
        f"{cloud}:3:5: warning: address 10.0.0.2 is used by workload 'db-1' (static:{onprem}) "
        f"and by 'api-1' (static:{cloud})",
    ]


def test_bad_source_entries_are_located_in_sources_yaml(tmp_path: Path) -> None:
    write(tmp_path, "sources.yaml", """
        workload_sources:
          - type: statik
            path: workloads.yaml
          - path: other.yaml
          - type: static
            paht: workloads.yaml
        sources: []
    """)
    s = tmp_path / "sources.yaml"
    load = load_workload_sources(tmp_path)
    assert load.workloads == ()
    assert [str(d) for d in load.diagnostics] == [
        f"{s}:7:1: error: unknown key 'sources' in sources.yaml (did you mean 'workload_sources'?)",
        f"{s}:4:5: error: a workload source needs a 'type' (e.g. type: static)",
        f"{s}:2:11: error: unknown workload source type 'statik' "
        "(did you mean 'static'? Known workload source types: azure, ec2, gcp, netbox, static)",
        f"{s}:5:5: error: static workload source: unknown setting 'paht' (did you mean 'path'?)",
    ]


class _FakeCloudSource:
    """A test double of a third-party workload source (e.g. an EC2 inventory)."""

    def __init__(self, config: Mapping[str, Any], base_dir: Path) -> None:
        self.region = str(config["region"])
        self.name = f"fake-cloud:{self.region}"

    def load(self) -> WorkloadLoad:
        w = Workload.model_validate({"name": "i-0abc", "addresses": ["10.40.0.5"], "labels": {"env": "prod"}})
        return WorkloadLoad((w,), (Diagnostic("instance i-0def has no private address", severity=Severity.WARNING),))


def test_a_third_party_source_plugs_in_through_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import EntryPoint, EntryPoints

    fake = EntryPoint("fake_cloud", f"{__name__}:_FakeCloudSource", WORKLOAD_SOURCE_ENTRY_POINT_GROUP)
    static = EntryPoint("static", "orchestrator.inventory.workloads:StaticWorkloadSource",
                        WORKLOAD_SOURCE_ENTRY_POINT_GROUP)

    def fake_entry_points(*, group: str, name: str | None = None) -> EntryPoints:
        found = [e for e in (fake, static) if e.group == group and (name is None or e.name == name)]
        return EntryPoints(found)

    monkeypatch.setattr(workloads_module, "entry_points", fake_entry_points)
    assert sorted(available_sources()) == ["fake_cloud", "static"]
    write(tmp_path, "sources.yaml", "workload_sources:\n  - {type: fake_cloud, region: eu-west-1}\n")
    load = load_workload_sources(tmp_path)
    assert [w.name for w in load.workloads] == ["i-0abc"]
    assert [str(d) for d in load.diagnostics] == [
        f"{tmp_path / 'sources.yaml'}:2:5: warning: instance i-0def has no private address"]
