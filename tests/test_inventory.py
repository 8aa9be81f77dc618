"""The inventory: enforcement points from a Nornir SimpleInventory, their checks, and the worked example."""

from __future__ import annotations

import ipaddress
import textwrap
from datetime import date
from pathlib import Path

import pytest
import yaml

from orchestrator.engine.project import capabilities_for
from orchestrator.engine.registry import driver_capabilities, driver_settings_model
from orchestrator.inventory.inventory import EnforcementPoint, Inventory, load_inventory, load_nornir_inventory
from orchestrator.inventory.scope import Protects, Workload, protected_addresses
from orchestrator.model.capabilities import GENERIC, Capabilities
from orchestrator.model.errors import InventoryError, Severity
from orchestrator.model.policy import PolicyFile, RuleAction, Selector
from orchestrator.model.rules import Action, AddressSet, Direction, Ordering

REPO = Path(__file__).resolve().parents[1]

DEFAULTS = """
    username: microseg
    data:
      microseg:
        management: [10.0.0.10/32]
"""
GROUPS = """
    linux:
      platform: linux
      data:
        microseg:
          driver: nftables
          settings: {table: microseg}
"""
WORKLOADS = """
    workloads:
      - {name: web-01, addresses: [10.20.1.11, "fd00:20:1::11"], labels: {tier: web, env: prod}}
      - {name: db-01, addresses: [10.20.3.11], labels: {tier: db, env: prod}}
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def make(directory: Path, hosts: str, *, groups: str = GROUPS, defaults: str = DEFAULTS,
         workloads: str = WORKLOADS) -> Path:
    write(directory, "hosts.yaml", hosts)
    write(directory, "groups.yaml", groups)
    write(directory, "defaults.yaml", defaults)
    write(directory, "workloads.yaml", workloads)
    return directory


def errors_of(directory: Path) -> list[str]:
    with pytest.raises(InventoryError) as info:
        load_inventory(directory)
    return [str(d) for d in info.value.diagnostics]


# --------------------------------------------------------------------------- a good inventory


def test_a_host_becomes_an_enforcement_point(tmp_path: Path) -> None:
    make(tmp_path, """
        web-01:
          hostname: 127.0.0.11
          groups: [linux]
          data:
            microseg:
              protects: {workloads: [web-01]}
    """)
    inv = load_inventory(tmp_path)
    point = inv.point("web-01")
    assert point == EnforcementPoint(
        name="web-01", hostname="127.0.0.11", platform="linux", driver="nftables", groups=("linux",),
        all_groups=("linux",), protects=Protects(workloads=("web-01",)),
        directions=frozenset({Direction.INGRESS, Direction.EGRESS}), management=AddressSet.of(["10.0.0.10/32"]),
        capabilities_overrides={}, settings={"table": "microseg"},
    )
    assert str(point.location) == f"{tmp_path / 'hosts.yaml'}:1:1"
    assert [w.name for w in inv.workloads] == ["db-01", "web-01"]
    assert inv.diagnostics == ()
    assert inv.groups == ("linux",)
    assert inv.protected_addresses("web-01").to_list() == ["10.20.1.11/32", "fd00:20:1::11/128"]


def test_settings_are_deep_merged_defaults_then_groups_then_host(tmp_path: Path) -> None:
    defaults = """
        data:
          microseg:
            management: [10.0.0.10/32]
            directions: [ingress]
            settings: {table: from-defaults, family: inet, log_prefix: mseg}
            capabilities: {max_rules: 100}
    """
    groups = """
        base:
          data:
            microseg:
              driver: base-driver
              settings: {table: from-base, chain_priority: -10}
        linux:
          groups: [base]
          platform: linux
          data:
            microseg:
              driver: nftables
              settings: {table: from-linux}
              capabilities: {stateful: false}
        prod:
          data:
            microseg:
              driver: prod-driver
              settings: {table: from-prod, owner: prod-team, chain_priority: 5}
              capabilities: {max_rules: 200, max_prefixes_per_rule: 8}
    """
    make(tmp_path, """
        web-01:
          groups: [linux, prod]
          data:
            microseg:
              protects: {subnets: [10.20.1.0/24]}
              settings: {family: ip}
              capabilities: {max_rules: 300}
    """, groups=groups, defaults=defaults)
    point = load_inventory(tmp_path).point("web-01")
    assert point.all_groups == ("linux", "base", "prod")  # Nornir's order: a parent right below its child
    assert point.groups == ("linux", "prod")
    assert point.driver == "nftables"  # the first group wins over its parent and over later groups
    assert point.platform == "linux"
    assert point.settings == {"table": "from-linux", "family": "ip", "log_prefix": "mseg", "chain_priority": -10,
                              "owner": "prod-team"}
    assert point.capabilities_overrides == {"max_rules": 300, "stateful": False, "max_prefixes_per_rule": 8}
    assert point.directions == frozenset({Direction.INGRESS})
    assert point.management.to_list() == ["10.0.0.10/32"]


def test_lists_are_replaced_not_appended(tmp_path: Path) -> None:
    make(tmp_path, """
        web-01:
          groups: [linux]
          data:
            microseg:
              protects: {subnets: [10.20.1.0/24]}
              management: ["fd00::10/128"]
              directions: egress
    """)
    point = load_inventory(tmp_path).point("web-01")
    assert point.management.to_list() == ["fd00::10/128"]
    assert point.directions == frozenset({Direction.EGRESS})


def test_nornir_sees_the_same_hosts(tmp_path: Path) -> None:
    make(tmp_path, """
        web-01:
          hostname: 127.0.0.11
          groups: [linux]
          data: {microseg: {protects: {workloads: [web-01]}}, site: dc1}
    """)
    nornir = load_nornir_inventory(tmp_path)
    host = nornir.hosts["web-01"]
    assert host.hostname == "127.0.0.11"
    assert host.platform == "linux"
    assert host.username == "microseg"
    assert host["site"] == "dc1"
    assert [p.name for p in load_inventory(tmp_path).points] == list(nornir.hosts)


# --------------------------------------------------------------------------- bad input, located


def test_bad_cidr_in_protects(tmp_path: Path) -> None:
    make(tmp_path, """
        web-01:
          groups: [linux]
          data:
            microseg:
              protects:
                subnets: [10.20.1.0/24, 10.20.1.1/24, 10.20.300.0/24]
    """)
    h = tmp_path / "hosts.yaml"
    with pytest.raises(InventoryError) as info:
        load_inventory(tmp_path)
    assert info.value.message == f"inventory {tmp_path} has 2 errors"
    assert [str(d) for d in info.value.diagnostics] == [
        f"{h}:6:33: error: host 'web-01': microseg.protects.subnets[1]: invalid CIDR '10.20.1.1/24': "
        "host bits set (did you mean 10.20.1.0/24?)",
        f"{h}:6:47: error: host 'web-01': microseg.protects.subnets[2]: invalid CIDR '10.20.300.0/24': "
        "'10.20.300.0/24' does not appear to be an IPv4 or IPv6 network",
    ]


def test_unknown_fields_get_a_did_you_mean(tmp_path: Path) -> None:
    make(tmp_path, """
        web-01:
          groups: [linux]
          data:
            microseg:
              protects: {workloads: [web-01]}
              direction: [ingress]
              capabilities: {max_rule: 10, stateful: maybe}
    """)
    h = tmp_path / "hosts.yaml"
    assert errors_of(tmp_path) == [
        f"{h}:6:7: error: host 'web-01': unknown field 'microseg.direction' (did you mean 'directions'?)",
        f"{h}:7:46: error: host 'web-01': microseg.capabilities.stateful: "
        "Input should be a valid boolean, unable to interpret input, got 'maybe'",
        f"{h}:7:22: error: host 'web-01': unknown field 'microseg.capabilities.max_rule' (did you mean 'max_rules'?)",
    ]


def test_an_unknown_field_in_a_group_is_located_in_groups_yaml(tmp_path: Path) -> None:
    groups = """
        linux:
          data:
            microseg:
              driver: nftables
              protect: {subnets: [10.0.0.0/8]}
    """
    make(tmp_path, """
        web-01:
          groups: [linux]
          data: {microseg: {protects: {workloads: [web-01]}}}
    """, groups=groups)
    assert errors_of(tmp_path) == [
        f"{tmp_path / 'groups.yaml'}:5:7: error: host 'web-01': unknown field 'microseg.protect' "
        "(did you mean 'protects'?)"]


def test_unknown_workload_name(tmp_path: Path) -> None:
    make(tmp_path, """
        web-01:
          groups: [linux]
          data:
            microseg:
              protects:
                workloads: [web-01, web-1]
    """)
    assert errors_of(tmp_path) == [
        f"{tmp_path / 'hosts.yaml'}:6:29: error: host 'web-01': microseg.protects.workloads[1]: "
        "unknown workload 'web-1' (did you mean 'web-01'?)"]


def test_missing_driver_and_missing_settings_point_at_the_host(tmp_path: Path) -> None:
    make(tmp_path, """
        web-01:
          data:
            microseg:
              protects: {workloads: [web-01]}
        db-01:
          hostname: 127.0.0.12
        app-01:
          groups: [linux]
          data: {microseg: {}}
        cache-01:
          data: {microseg: {}}
    """, defaults="username: microseg\n")
    h = tmp_path / "hosts.yaml"
    assert errors_of(tmp_path) == [  # db-01 has no data.microseg at all: not a point, no error (see below)
        f"{h}:1:1: error: host 'web-01': missing required field 'microseg.driver'",
        f"{h}:7:1: error: host 'app-01': missing required field 'microseg.protects'",
        f"{h}:10:1: error: host 'cache-01' has an empty data.microseg (driver and protects missing) (add "
        "data.microseg (driver, protects) to it, a group or defaults — or remove data.microseg: a host without it "
        "is not an enforcement point)",
    ]


def test_hosts_without_microseg_data_are_not_points(tmp_path: Path) -> None:
    """A team's existing Nornir inventory works unchanged: hosts without data.microseg anywhere (host, groups,
    defaults) are simply not enforcement points, and are listed as such."""
    make(tmp_path, """
        web-01:
          groups: [linux]
          data:
            microseg:
              protects: {workloads: [web-01]}
        core-router:
          hostname: 127.0.0.12
          platform: ios
        printer:
          data: {site: hq}
    """)
    inventory = load_inventory(tmp_path)
    assert [p.name for p in inventory.points] == ["web-01"]
    assert inventory.not_points == ("core-router", "printer")
    assert not any("core-router" in str(d) or "printer" in str(d) for d in inventory.diagnostics)


def test_protects_needs_something(tmp_path: Path) -> None:
    make(tmp_path, """
        web-01:
          groups: [linux]
          data:
            microseg:
              protects: {subnets: []}
              directions: []
    """)
    h = tmp_path / "hosts.yaml"
    assert errors_of(tmp_path) == [
        f"{h}:5:17: error: host 'web-01': microseg.protects: "
        "protects needs at least one of subnets, selector, workloads",
        f"{h}:6:19: error: host 'web-01': microseg.directions: must not be empty",
    ]


def test_duplicate_workload_in_the_inventory(tmp_path: Path) -> None:
    make(tmp_path, """
        web-01:
          groups: [linux]
          data: {microseg: {protects: {workloads: [web-01]}}}
    """, workloads="""
        workloads:
          - {name: web-01, addresses: [10.20.1.11]}
          - {name: web-01, addresses: [10.20.1.12]}
    """)
    w = tmp_path / "workloads.yaml"
    assert errors_of(tmp_path) == [f"{w}:3:12: error: workload 'web-01' is defined twice: at {w}:2:5 and at {w}:3:5"]


def test_bad_yaml_in_hosts_yaml(tmp_path: Path) -> None:
    make(tmp_path, """
        web-01:
          groups: [linux
          data: {}
    """)
    errors = errors_of(tmp_path)
    assert len(errors) == 1
    assert errors[0].startswith(f"{tmp_path / 'hosts.yaml'}:3:7: error: YAML syntax error")


def test_unknown_source_type(tmp_path: Path) -> None:
    make(tmp_path, """
        web-01:
          groups: [linux]
          data: {microseg: {protects: {subnets: [10.20.1.0/24]}}}
    """)
    write(tmp_path, "sources.yaml", """
        workload_sources:
          - type: netbx
    """)
    assert errors_of(tmp_path) == [
        f"{tmp_path / 'sources.yaml'}:2:11: error: unknown workload source type 'netbx' "
        "(did you mean 'netbox'? Known workload source types: azure, ec2, gcp, netbox, static)"]


def test_nornir_shape_problems(tmp_path: Path) -> None:
    groups = """
        linux:
          data: {microseg: {driver: nftables}}
        a:
          groups: [b]
        b:
          groups: [a]
    """
    make(tmp_path, """
        web-01:
          groups: [linx]
          microseg: {driver: nftables}
        db-01:
          groups: linux
        app-01: just-a-string
        ok-01:
          groups: [linux]
          data: {microseg: {protects: {subnet: [10.20.2.0/24]}}}
    """, groups=groups)
    h, g = tmp_path / "hosts.yaml", tmp_path / "groups.yaml"
    assert errors_of(tmp_path) == [
        f"{h}:3:3: error: host 'web-01': unknown key 'microseg' (Nornir would ignore it) "
        "(move it under data:, as data.microseg)",
        f"{h}:2:12: error: host 'web-01': unknown group 'linx' (did you mean 'linux'?)",
        f"{h}:5:11: error: host 'db-01': groups must be a list of group names",
        f"{h}:6:1: error: host 'app-01' must be a mapping (hostname, groups, data …)",
        f"{g}:4:11: error: group 'a' is its own parent: a -> b -> a",
        f"{g}:6:11: error: group 'b' is its own parent: b -> a -> b",
        # the well-formed host is still checked in the same run; the broken ones are not checked further
        f"{h}:9:32: error: host 'ok-01': unknown field 'microseg.protects.subnet' (did you mean 'subnets'?)",
    ]


def test_no_hosts_file(tmp_path: Path) -> None:
    assert errors_of(tmp_path) == [
        f"{tmp_path / 'hosts.yaml'}: error: inventory {tmp_path}: no hosts.yaml "
        "(a Nornir SimpleInventory host file is needed)"]


def test_all_errors_of_one_run_are_reported_together(tmp_path: Path) -> None:
    make(tmp_path, """
        web-01:
          groups: [linux]
          data:
            microseg:
              protects: {subnets: [10.20.1.0/33]}
        db-01:
          groups: [linux]
          data:
            microseg:
              protects: {workloads: [db-1]}
        app-01:
          data:
            microseg:
              protects: {workloads: [web-01]}
    """, workloads="""
        workloads:
          - {name: web-01, addresses: [10.20.1.11]}
          - {name: db-01, addresses: [10.20.3.999]}
    """)
    h, w = tmp_path / "hosts.yaml", tmp_path / "workloads.yaml"
    with pytest.raises(InventoryError) as info:
        load_inventory(tmp_path)
    assert info.value.message == f"inventory {tmp_path} has 4 errors"
    assert [str(d) for d in info.value.diagnostics] == [
        f"{h}:5:28: error: host 'web-01': microseg.protects.subnets[0]: invalid CIDR '10.20.1.0/33': "
        "'10.20.1.0/33' does not appear to be an IPv4 or IPv6 network",
        f"{h}:11:1: error: host 'app-01': missing required field 'microseg.driver'",
        f"{w}:3:31: error: workload 'db-01': addresses[0]: invalid IP address '10.20.3.999'",
        # db-01 itself was refused above, so the closest valid name is another one
        f"{h}:10:30: error: host 'db-01': microseg.protects.workloads[0]: unknown workload 'db-1' "
        "(did you mean 'web-01'?)",
    ]


def test_a_selector_that_matches_nothing_is_a_warning(tmp_path: Path) -> None:
    make(tmp_path, """
        web-01:
          groups: [linux]
          data:
            microseg:
              protects:
                subnets: [10.20.1.0/24]
                selector: {tier: wbe}
    """)
    inv = load_inventory(tmp_path)
    assert [(d.severity, str(d)) for d in inv.diagnostics] == [
        (Severity.WARNING, f"{tmp_path / 'hosts.yaml'}:7:19: warning: host 'web-01': microseg.protects.selector "
                           "(tier=wbe) matches no workload")]
    assert inv.protected_addresses("web-01").to_list() == ["10.20.1.0/24"]


# --------------------------------------------------------------------------- looking points up


@pytest.fixture
def estate() -> Inventory:
    return load_inventory(REPO / "inventory")


def test_point_lookup_suggests_a_name(estate: Inventory) -> None:
    assert estate.point("jump-01").driver == "nftables"
    with pytest.raises(InventoryError, match=r"unknown enforcement point 'jump01' \(did you mean 'jump-01'\?\)"):
        estate.point("jump01")
    assert estate.workload_by_name("db-prod-02").addresses == (ipaddress.IPv4Address("10.20.3.12"),)
    with pytest.raises(InventoryError, match=r"unknown workload 'db-prod-2' \(did you mean 'db-prod-02'\?\)"):
        estate.workload_by_name("db-prod-2")


def test_select_by_name_and_group(estate: Inventory) -> None:
    assert [p.name for p in estate.select()] == [p.name for p in estate.points]
    assert [p.name for p in estate.select(names=["sw-dev-ios", "jump-01"])] == ["jump-01", "sw-dev-ios"]
    assert [p.name for p in estate.select(groups=["network-acl"])] == [
        "dc-prod-nxos", "fw-shared-junos", "leaf-prod-eos", "sw-dev-ios"]
    assert [p.name for p in estate.select(groups=["cloud"])] == ["aws-sg-dev-web", "azure-nsg-dev-app", "gcp-fw-dev-db"]
    assert [p.name for p in estate.select(names=["jump-01"], groups=["dev"])] == [
        "aws-sg-dev-web", "azure-nsg-dev-app", "gcp-fw-dev-db", "jump-01", "sw-dev-ios"]
    assert estate.select(names=[]) == ()
    with pytest.raises(InventoryError) as info:
        estate.select(names=["jump-1"], groups=["prd"])
    assert [str(d) for d in info.value.diagnostics] == [
        "error: unknown enforcement point 'jump-1' (did you mean 'jump-01'?)",
        "error: unknown group 'prd' (did you mean 'prod'?)",
    ]


# --------------------------------------------------------------------------- the protected scope (pure)


def test_protected_addresses_is_the_union_of_subnets_selected_and_named_workloads() -> None:
    workloads = [
        Workload.model_validate({"name": "a", "addresses": ["10.0.1.5", "fd00::5"], "labels": {"tier": "web"}}),
        Workload.model_validate({"name": "b", "addresses": ["10.0.2.5"], "labels": {"tier": "db"}}),
        Workload.model_validate({"name": "c", "addresses": ["10.0.3.5"], "labels": {"tier": "db"}}),
        Workload.model_validate({"name": "d", "addresses": ["10.0.0.7"]}),
    ]
    point = EnforcementPoint(name="p", driver="x", protects=Protects(
        subnets=(ipaddress.ip_network("10.0.0.0/29"),), selector=Selector.model_validate({"tier": "web"}),
        workloads=("b",)))
    assert protected_addresses(point, workloads).to_list() == ["10.0.0.0/29", "10.0.1.5/32", "10.0.2.5/32",
                                                               "fd00::5/128"]
    only_subnet = EnforcementPoint(name="q", driver="x", protects=Protects.model_validate({"subnets": "10.9.0.0/16"}))
    assert protected_addresses(only_subnet, workloads).to_list() == ["10.9.0.0/16"]


# --------------------------------------------------------------------------- the worked example


def test_the_worked_example_inventory_loads_clean(estate: Inventory) -> None:
    assert estate.diagnostics == ()
    assert len(estate.points) >= 12
    assert len(estate.workloads) >= 20
    drivers = {p.driver for p in estate.points}
    assert drivers == {"nftables", "ios", "nxos", "eos", "junos", "aws_sg", "azure_nsg", "gcp_firewall"}
    assert {p.platform for p in estate.points} == {"linux", "ios", "nxos", "eos", "junos", "aws", "azure", "gcp"}
    for point in estate.points:
        assert protected_addresses(point, estate.workloads), point.name
        assert point.management == AddressSet.of(["10.0.0.10/32"]), point.name
        assert point.directions == frozenset(Direction), point.name
        GENERIC.merged(point.capabilities_overrides)  # every override is a valid Capabilities field


def test_the_worked_example_scopes(estate: Inventory) -> None:
    scope = {p.name: estate.protected_addresses(p).to_list() for p in estate.points}
    assert scope["web-prod-01"] == ["10.20.1.11/32", "fd00:20:1::11/128"]
    assert scope["db-prod-02"] == ["10.20.3.12/32"]
    assert scope["leaf-prod-eos"] == ["10.20.1.0/24", "fd00:20:1::/64"]
    assert scope["dc-prod-nxos"] == ["10.20.2.0/23", "fd00:20:2::/64", "fd00:20:3::/64"]
    assert scope["fw-shared-junos"] == ["10.10.0.0/24"]
    assert scope["aws-sg-dev-web"] == ["10.30.1.11/32", "10.30.1.12/32", "fd00:30:1::11/128"]
    assert scope["gcp-fw-dev-db"] == ["10.30.3.11/32", "10.30.3.12/32"]
    addresses = {str(a) for w in estate.workloads for a in w.addresses}
    assert {"10.10.0.53", "10.10.0.123", "10.10.0.90", "10.10.0.21", "10.10.0.22"} <= addresses


def test_the_worked_example_capabilities(estate: Inventory) -> None:
    def caps(name: str) -> Capabilities:
        return GENERIC.merged(estate.point(name).capabilities_overrides)

    aws = caps("aws-sg-dev-web")
    assert (aws.ordering, aws.actions, aws.max_rules, aws.count_families_separately) == (
        Ordering.UNORDERED_ALLOW, frozenset({Action.PERMIT}), 60, True)
    assert (aws.max_prefixes_per_rule, aws.max_port_ranges_per_rule) == (1, 1)
    for switch in ("sw-dev-ios", "dc-prod-nxos", "leaf-prod-eos", "fw-shared-junos"):
        acl = caps(switch)
        per_entry = (None, None) if switch == "fw-shared-junos" else (1, 1)  # a Junos term takes many
        assert (acl.ordering, acl.stateful, acl.max_rules, acl.max_prefixes_per_rule,
                acl.max_port_ranges_per_rule, acl.mixed_families_per_rule) == (
            Ordering.FIRST_MATCH, False, 1000, *per_entry, False), switch
        point = estate.point(switch)  # the name prefix each platform's driver reads (its own key, default MSEG-)
        model = driver_settings_model(point.driver)
        assert model is not None and model.model_validate(point.settings).prefix() == "MSEG-"  # type: ignore[attr-defined]
    assert "acl_name_prefix" not in estate.point("fw-shared-junos").settings
    azure = caps("azure-nsg-dev-app")
    assert (azure.ordering, azure.max_rules, azure.max_prefixes_per_rule) == (Ordering.PRIORITY, 1000, 4000)
    assert estate.point("azure-nsg-dev-app").settings["rule_name_prefix"] == "mseg-"
    assert (estate.point("azure-nsg-dev-app").settings["priority_min"],
            estate.point("azure-nsg-dev-app").settings["priority_max"]) == (100, 1999)
    gcp = caps("gcp-fw-dev-db")
    assert (gcp.ordering, gcp.max_prefixes_per_rule, gcp.mixed_families_per_rule) == (Ordering.PRIORITY, 256, False)
    nft = caps("web-prod-01")
    assert (nft.ordering, nft.stateful, nft.max_prefixes_per_rule) == (Ordering.FIRST_MATCH, True, None)
    assert estate.point("web-prod-01").settings == {"family": "inet", "table": "microseg", "sudo": False,
                                                    "key_file": ".microseg/lab/id_ed25519",
                                                    "known_hosts": ".microseg/lab/known_hosts",
                                                    "host_key_policy": "accept-new"}


POLICY_FILES = sorted((REPO / "policies").glob("*.yaml"))


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.name)
def test_each_worked_example_policy_file_validates(path: Path) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    policy = PolicyFile.model_validate(data)
    assert policy.api_version == "microseg/v1"
    for rule in policy.rules:
        assert rule.description and rule.owner, rule.name


def test_the_worked_example_policy_covers_the_showcase() -> None:
    files = {p.name: PolicyFile.model_validate(yaml.safe_load(p.read_text(encoding="utf-8"))) for p in POLICY_FILES}
    assert set(files) == {"00-defaults.yaml", "groups.yaml", "services.yaml", "shop.yaml", "platform.yaml",
                          "edge.yaml", "temporary.yaml"}
    defaults = files["00-defaults.yaml"].defaults
    assert defaults is not None and defaults.action is RuleAction.DENY
    rules = {r.name: r for f in files.values() for r in f.rules}
    deny = rules["deny-dev-to-prod"]
    assert deny.action is RuleAction.DENY
    assert all(deny.priority < r.priority for r in rules.values() if r.action is RuleAction.ALLOW)
    temporary = rules["vendor-acme-api-tests"]
    assert temporary.ticket == "CHG-2741" and temporary.expires == date(2027, 6, 30)
    assert rules["internet-to-web"].from_ == ("internet",) and rules["internet-to-web"].to == ("web-prod",)
    groups = files["groups.yaml"].groups
    assert groups["internet"].external is not None and groups["internet"].external.value == "internet"
    services = files["services.yaml"].services
    assert [(services[n].protocol, services[n].ports) for n in ("shop-api", "postgres", "node-exporter", "ntp")] == [
        (6, ((8443, 8443),)), (6, ((5432, 5432),)), (6, ((9100, 9100),)), (17, ((123, 123),))]


def test_validate_lists_the_hosts_that_are_not_points(tmp_path: Path) -> None:
    import shutil

    import yaml
    from click.testing import CliRunner

    from orchestrator.cli.main import main

    inventory = tmp_path / "inventory"
    shutil.copytree(REPO / "inventory", inventory)
    hosts = yaml.safe_load((inventory / "hosts.yaml").read_text())
    hosts["core-router"] = {"hostname": "127.0.0.99", "platform": "ios"}  # the team's own host, not a point
    (inventory / "hosts.yaml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    base = ["--policy", str(REPO / "policies"), "--inventory", str(inventory), "--today", "2026-12-06", "validate"]
    quiet = CliRunner().invoke(main, base)
    assert quiet.exit_code == 0, quiet.output
    assert "1 hosts without data.microseg are not enforcement points (-v lists them)" in quiet.output
    verbose = CliRunner().invoke(main, [*base, "-v"])
    assert "not enforcement points (no data.microseg): core-router" in verbose.output
    as_json = CliRunner().invoke(main, [*base, "--json"])
    import json

    assert json.loads(as_json.stdout)["not_points"] == ["core-router"]


def test_a_capability_the_driver_cannot_write_is_only_turned_off(tmp_path: Path) -> None:
    """Limits may be raised or lowered per point; ``tcp_established`` is what a driver can write, so an inventory
    may turn it off (port-swapped TCP replies on a switch) but not on where the driver has no words for it."""
    make(tmp_path, """
        sw-01:
          data:
            microseg:
              driver: ios
              protects: {subnets: [10.20.1.0/24]}
              capabilities: {tcp_established: false}
        web-01:
          data:
            microseg:
              driver: nftables
              protects: {subnets: [10.20.2.0/24]}
              capabilities: {tcp_established: true}
    """)
    inv = load_inventory(tmp_path)
    assert capabilities_for(inv.point("sw-01")).tcp_established is False
    assert driver_capabilities("ios").tcp_established is True  # type: ignore[union-attr]
    with pytest.raises(InventoryError, match=r"web-01: invalid capabilities override: capabilities\.tcp_established: "
                                             r"driver nftables cannot write it"):
        capabilities_for(inv.point("web-01"))
