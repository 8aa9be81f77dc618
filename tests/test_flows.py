"""Observed flows end to end: the VPC Flow Logs source (files, gzip, S3 on moto), the DuckDB flow store (bulk and
record paths agree), discover (orientation, the map, a proposal that is a valid policy allowing exactly what was
seen) and simulate (what the worked example's policy would break; one rule removed, it breaks)."""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from click.testing import CliRunner

from drivers.aws_sg.flowlogs import FlowLogError, VpcFlowLogSource
from orchestrator.cli.main import main
from orchestrator.engine.project import load_project
from orchestrator.flows.discover import build_map, conversations, proposal
from orchestrator.flows.simulate import simulate
from orchestrator.flows.sources import import_location, import_locations
from orchestrator.flows.store import FlowStore
from orchestrator.model import Diagnostic, FlowRecord
from orchestrator.model.errors import PlanError
from tests.aws_fixtures import aws_env, moto_endpoint
from tests.conftest import REPO

__all__ = ["aws_env", "moto_endpoint"]  # pytest fixtures, used by name

DATA = REPO / "tests" / "data" / "flowlogs" / "aws"
TODAY = date(2026, 12, 6)
HEADER = ("version interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action tcp-flags "
          "log-status")
# what the worked example's applications do (every one allowed by its policy)
ALLOWED = [("10.20.1.11", "10.20.2.11", 8443, 6), ("10.20.1.12", "10.20.2.12", 8443, 6),
           ("10.20.2.11", "10.20.3.11", 5432, 6), ("10.20.2.12", "10.20.3.12", 5432, 6),
           ("10.10.0.21", "10.20.3.11", 22, 6), ("10.10.0.90", "10.20.1.11", 9100, 6),
           ("10.20.1.11", "10.10.0.53", 53, 17), ("81.2.69.142", "10.20.1.11", 443, 6)]
WEB_TO_DB = ("10.20.1.11", "10.20.3.11", 5432, 6)  # no rule allows it


def vpc_lines(conversations: list[tuple[str, str, int, int]], *, flags: bool = True, start: int = 1765000000,
              repeat: int = 3) -> list[str]:
    """Both directions of each conversation, as VPC flow-log records with (or without) TCP flags."""
    lines = [HEADER]
    for n in range(repeat):
        for index, (client, server, port, protocol) in enumerate(conversations):
            ephemeral = 40000 + 97 * index + n
            at = start + 60 * n
            syn, syn_ack = ("2", "18") if flags and protocol == 6 else ("-", "-")
            lines.append(f"5 eni-{index:04x} {client} {server} {ephemeral} {port} {protocol} 10 900 {at} {at + 59} "
                         f"ACCEPT {syn} OK")
            lines.append(f"5 eni-{index:04x} {server} {client} {port} {ephemeral} {protocol} 8 700 {at} {at + 59} "
                         f"ACCEPT {syn_ack} OK")
    return lines


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def store() -> Iterator[FlowStore]:
    with FlowStore(":memory:") as opened:
        yield opened


def read(path: Path) -> tuple[list[FlowRecord], list[Diagnostic]]:
    problems: list[Diagnostic] = []
    return list(VpcFlowLogSource().read(str(path), problems)), problems


# --------------------------------------------------------------------------- the VPC Flow Logs source


def test_the_default_format_reads_the_documented_examples_and_skips_windows_without_data() -> None:
    records, problems = read(DATA / "default-v2.log")
    assert problems == []
    assert records == [
        FlowRecord(1418530010, 1418530070, "172.31.16.139", "172.31.16.21", 6, 20641, 22, 20, 4249, "accept",
                   None, "eni-1235b8ca123456789"),
        FlowRecord(1418530010, 1418530070, "172.31.9.69", "172.31.9.12", 6, 49761, 3389, 20, 4249, "reject",
                   None, "eni-1235b8ca123456789"),
    ]  # the NODATA and SKIPDATA rows are windows, not flows


def test_a_custom_format_in_any_order_with_tcp_flags_packet_addresses_and_ipv6() -> None:
    records, problems = read(DATA / "custom-v5.log")
    assert problems == []
    syn, syn_ack, fin, nat, v6 = records
    assert (syn.src, syn.dst, syn.src_port, syn.dst_port, syn.initiator) == ("52.213.180.42", "10.0.0.62", 43416,
                                                                            5001, "src")
    assert (syn.bytes, syn.packets) == (568, 8)  # bytes before packets in this format: read by name
    assert syn_ack.initiator == "dst" and fin.initiator is None  # the listener's reply; a FIN says nothing
    assert (nat.src, nat.dst) == ("10.20.33.164", "10.40.2.236")  # pkt-srcaddr: the packet's own source
    assert (v6.src, v6.dst, v6.observer) == ("2001:db8:1234:a100:8d6e:3477:df66:f105",
                                             "2001:db8:1234:a102:3304:8879:34cf:4071", "eni-0a1b2c3d4e5f67890")
    assert read(DATA / "custom-v5.log.gz")[0] == records


def test_malformed_records_are_reported_with_their_line_and_the_rest_is_read(tmp_path: Path) -> None:
    lines = vpc_lines(ALLOWED[:1], repeat=1)
    lines[1:1] = ["5 eni-1 10.0.0.1 garbage", "5 eni-1 10.0.0.1 10.0.0.2 1 notaport 6 1 1 1 2 ACCEPT - OK",
                  "5 eni-1 10.0.0.999 10.0.0.2 1 80 6 1 1 1 2 ACCEPT - OK",
                  "5 eni-1 10.0.0.1 10.0.0.2 1 80 6 1 1 9 2 ACCEPT - OK"]  # ends before it starts
    path = write(tmp_path / "bad.log", lines)
    records, problems = read(path)
    assert len(records) == 2
    where = [(p.location.file, p.location.line) for p in problems if p.location]
    assert where == [(str(path), n) for n in (2, 3, 4, 5)]
    assert "4 fields where the format has 14" in problems[0].message
    assert "notaport" in problems[1].message and "10.0.0.999" in problems[2].message


def test_a_header_without_addresses_and_an_unreadable_file_are_errors_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "odd.log", ["version interface-id packets", "5 eni-1 3"])
    with pytest.raises(FlowLogError, match=r"odd.log:1: the header names no srcaddr, dstaddr, protocol"):
        read(path)
    with pytest.raises(FlowLogError, match=r"cannot read the flow log .*missing.log"):
        read(tmp_path / "missing.log")


def test_s3_objects_under_a_prefix_are_read_through_boto3_from_moto(aws_env: None, moto_endpoint: str) -> None:
    s3 = boto3.client("s3", region_name="eu-west-1", endpoint_url=moto_endpoint)
    s3.create_bucket(Bucket="flowlogs", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    prefix = "AWSLogs/123456789012/vpcflowlogs/eu-west-1/2026/12/06/"
    s3.put_object(Bucket="flowlogs", Key=prefix + "a.log.gz", Body=gzip.compress((DATA / "custom-v5.log").read_bytes()))
    s3.put_object(Bucket="flowlogs", Key=prefix + "b.log", Body=(DATA / "default-v2.log").read_bytes())
    s3.put_object(Bucket="flowlogs", Key="elsewhere/c.log", Body=(DATA / "default-v2.log").read_bytes())
    problems: list[Diagnostic] = []
    source = VpcFlowLogSource(endpoint_url=moto_endpoint, region="eu-west-1", credentials="anonymous")
    records = list(source.read(f"s3://flowlogs/{prefix}", problems))
    assert problems == [] and records == read(DATA / "custom-v5.log")[0] + read(DATA / "default-v2.log")[0]
    with pytest.raises(FlowLogError, match="NoSuchBucket"):
        list(source.read("s3://no-such-bucket/x", problems))
    with pytest.raises(FlowLogError, match="loopback only"):
        list(VpcFlowLogSource(endpoint_url="https://s3.amazonaws.com", credentials="anonymous").read("s3://b/", []))


# --------------------------------------------------------------------------- the flow store


def _rows(store: FlowStore) -> list[tuple[Any, ...]]:
    return store.query("SELECT window_start, src, dst, protocol, src_port, dst_port, initiator, action, observer, "
                       "packets, bytes, records, first_seen, last_seen FROM flows ORDER BY ALL")


@pytest.mark.parametrize("name", ["default-v2.log", "custom-v5.log", "custom-v5.log.gz"])
def test_bulk_loading_and_record_by_record_loading_store_the_same_flows(name: str) -> None:
    with FlowStore(":memory:") as bulk, FlowStore(":memory:") as python:
        a = import_location(bulk, "vpc", VpcFlowLogSource(), str(DATA / name))
        b = import_location(python, "vpc", VpcFlowLogSource(), str(DATA / name), bulk=False)
        assert (a.records, a.problems, b.problems) == (b.records, [], [])
        assert _rows(bulk) == _rows(python) and _rows(bulk)


def test_bulk_loading_reports_bad_rows_by_line_and_loads_the_good_ones(tmp_path: Path, store: FlowStore) -> None:
    lines = vpc_lines(ALLOWED[:1], repeat=1)
    lines[1:1] = ["5 eni-1 10.0.0.1 garbage", "5 eni-1 10.0.0.1 10.0.0.2 1 notaport 6 1 1 1 2 ACCEPT - OK",
                  "5 eni-1 10.0.0.999 10.0.0.2 1 80 6 1 1 1 2 ACCEPT - OK"]
    report = import_location(store, "vpc", VpcFlowLogSource(), str(write(tmp_path / "bad.log", lines)))
    assert report.records == 2 and report.skipped == 3
    assert [p.location.line for p in report.problems if p.location] == [2, 3, None]
    assert "1 record with an invalid address" in report.problems[-1].message


def test_an_import_happens_once_and_force_replaces_it(tmp_path: Path, store: FlowStore) -> None:
    path = str(write(tmp_path / "a.log", vpc_lines(ALLOWED, repeat=1)))
    first = import_location(store, "vpc", VpcFlowLogSource(), path)
    again = import_location(store, "vpc", VpcFlowLogSource(), path)
    assert first.records == 16 and again.already_imported and store.summary()["records"] == 16
    forced = import_location(store, "vpc", VpcFlowLogSource(), path, force=True)
    assert forced.records == 16 and store.summary()["records"] == 16  # replaced, never doubled


def test_an_unknown_source_suggests_the_closest(store: FlowStore) -> None:
    with pytest.raises(PlanError, match="unknown flow source 'vcp' \\(did you mean 'vpc'\\?"):
        import_locations(store, "vcp", ["x"])


# --------------------------------------------------------------------------- discover


def _store_with(store: FlowStore, tmp_path: Path, lines: list[str], name: str = "f.log") -> FlowStore:
    import_location(store, "vpc", VpcFlowLogSource(), str(write(tmp_path / name, lines)))
    return store


def test_orientation_uses_flags_then_fan_in_then_the_ephemeral_range_and_marks_a_guess(tmp_path: Path,
                                                                                       store: FlowStore) -> None:
    lines = vpc_lines([("10.0.0.1", "10.0.0.2", 5432, 6)], flags=True, repeat=1)
    # no flags: 10.0.0.9:7000 is reached by three peers (fan-in) from ports below 32768
    lines += [f"5 eni-x 10.0.1.{n} 10.0.0.9 {3000 + n} 7000 6 1 1 1765000000 1765000059 ACCEPT - OK"
              for n in (1, 2, 3)]
    lines += [f"5 eni-x 10.0.0.9 10.0.1.{n} 7000 {3000 + n} 6 1 1 1765000000 1765000059 ACCEPT - OK"
              for n in (1, 2, 3)]
    # no flags, one peer: the port below 32768 listens, even though it is the higher number here
    lines += ["5 eni-y 10.0.2.1 10.0.2.2 50000 30000 17 1 1 1765000000 1765000059 ACCEPT - OK"]
    # nothing tells them apart: the lower port is taken, and marked as a guess
    lines += ["5 eni-z 10.0.3.1 10.0.3.2 2000 1000 6 1 1 1765000000 1765000059 ACCEPT - OK"]
    found = {(c.client, c.server, c.service): c for c in conversations(_store_with(store, tmp_path, lines))}
    assert set(found) == {("10.0.0.1", "10.0.0.2", "tcp/5432"), ("10.0.1.1", "10.0.0.9", "tcp/7000"),
                          ("10.0.1.2", "10.0.0.9", "tcp/7000"), ("10.0.1.3", "10.0.0.9", "tcp/7000"),
                          ("10.0.2.1", "10.0.2.2", "udp/30000"), ("10.0.3.1", "10.0.3.2", "tcp/1000")}
    assert found[("10.0.0.1", "10.0.0.2", "tcp/5432")].records == 2  # both directions: one conversation
    assert [k for k, c in found.items() if c.guessed] == [("10.0.3.1", "10.0.3.2", "tcp/1000")]


def test_the_map_names_workloads_by_labels_policy_groups_and_the_outside(tmp_path: Path, store: FlowStore) -> None:
    project = load_project(REPO / "policies", REPO / "inventory", today=TODAY)
    traffic = [*ALLOWED, ("10.0.0.10", "10.20.1.11", 22, 6), ("10.99.0.7", "10.20.1.11", 443, 6)]
    found = conversations(_store_with(store, tmp_path, vpc_lines(traffic)))
    app = build_map(found, project.inventory.workloads, project.loaded.policy, ("app", "tier", "env"))
    edges = {(e.client, e.server, e.service): e for e in app.edges}
    assert ("shop-web-prod", "shop-app-prod", "tcp/8443") in edges
    assert edges[("shop-web-prod", "shop-app-prod", "tcp/8443")].pairs == {("10.20.1.11", "10.20.2.11"),
                                                                          ("10.20.1.12", "10.20.2.12")}
    assert ("internet", "shop-web-prod", "tcp/443") in edges  # a public address outside the estate
    assert ("microseg-management", "shop-web-prod", "tcp/22") in edges  # the policy's CIDR group
    assert ("net-10-99-0-0-24", "shop-web-prod", "tcp/443") in edges  # private, no group: its /24
    assert app.unknown == {"81.2.69.142": 6, "10.99.0.7": 6}
    assert app.nodes["platform-shared"].missing == ("tier",)  # dns, jump, monitoring have no tier label


def test_the_proposal_is_a_policy_that_allows_exactly_the_observed_traffic(tmp_path: Path, store: FlowStore) -> None:
    """Proof by replay: with the proposal as the whole policy (default deny), simulate finds nothing broken, and
    every proposed rule is used."""
    project = load_project(REPO / "policies", REPO / "inventory", today=TODAY)
    found = conversations(_store_with(store, tmp_path, vpc_lines([*ALLOWED, WEB_TO_DB])))
    document = proposal(build_map(found, project.inventory.workloads, project.loaded.policy,
                                  ("app", "tier", "env")), project.loaded.policy)
    assert "web-prod" not in document["groups"]  # the policy's group of that selector is reused, not copied
    assert {r["name"] for r in document["rules"]} >= {"web-prod-to-db-prod-tcp-5432", "app-prod-to-db-prod-tcp-5432"}
    assert all("observed" in r["description"] for r in document["rules"])
    policy_dir = tmp_path / "proposed"
    policy_dir.mkdir()
    shutil.copy(REPO / "policies" / "groups.yaml", policy_dir)
    shutil.copy(REPO / "policies" / "services.yaml", policy_dir)
    shutil.copy(REPO / "policies" / "00-defaults.yaml", policy_dir)
    (policy_dir / "proposal.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    proposed = load_project(policy_dir, REPO / "inventory", today=TODAY)
    prepared = proposed.prepare()
    result = simulate(found, proposed.compile(prepared=prepared), prepared)
    assert not result.breaks and result.unused_rules == [], result.to_dict()


# --------------------------------------------------------------------------- simulate


def _simulation(tmp_path: Path, store: FlowStore, traffic: list[tuple[str, str, int, int]],
                policy: Path = REPO / "policies") -> Any:
    project = load_project(policy, REPO / "inventory", today=TODAY)
    prepared = project.prepare()
    found = conversations(_store_with(store, tmp_path, vpc_lines(traffic)))
    return simulate(found, project.compile(prepared=prepared), prepared)


def test_the_worked_example_breaks_none_of_its_traffic(tmp_path: Path, store: FlowStore) -> None:
    result = _simulation(tmp_path, store, ALLOWED)
    assert not result.breaks and result.conversations == len(ALLOWED), result.to_dict()
    assert "shop-app-to-db-dev" in result.unused_rules and "shop-app-to-db-prod" not in result.unused_rules
    assert result.over_broad == []  # open to the Internet is judged by the workloads it opens: 4 web servers


def test_a_rule_used_for_a_sliver_of_what_it_allows_is_over_broad(tmp_path: Path, store: FlowStore) -> None:
    policy = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policy)
    shop = yaml.safe_load((policy / "shop.yaml").read_text())
    for rule in shop["rules"]:
        if rule["name"] == "shop-app-to-db-prod":
            rule["services"] = ["tcp/1-65535"]  # the database tier opened wide for one port
    (policy / "shop.yaml").write_text(yaml.safe_dump(shop, sort_keys=False))
    result = _simulation(tmp_path, store, ALLOWED, policy)
    assert [item["rule"] for item in result.over_broad] == ["shop-app-to-db-prod"]
    assert result.over_broad[0]["observed"] == 2  # two (client, server, port) triples of 4 × 3 × 65535
    assert any(d.code == "over-broad-rule" and "shop-app-to-db-prod" in d.message for d in result.findings())


def test_removing_one_rule_breaks_its_traffic_and_says_where(tmp_path: Path, store: FlowStore) -> None:
    policy = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policy)
    shop = yaml.safe_load((policy / "shop.yaml").read_text())
    shop["rules"] = [r for r in shop["rules"] if r["name"] != "shop-app-to-db-prod"]
    (policy / "shop.yaml").write_text(yaml.safe_dump(shop, sort_keys=False))
    result = _simulation(tmp_path, store, ALLOWED, policy)
    assert result.breaks
    [gap] = result.denied
    assert (gap.source, gap.destination, gap.service, gap.conversations) == ("app-prod", "db-prod", "tcp/5432", 2)
    assert {d.describe() for d in gap.denials} >= {"db-prod-01 (ingress) by the default deny",
                                                   "db-prod-02 (ingress) by the default deny"}


def test_an_explicit_deny_is_named_by_its_rule(tmp_path: Path, store: FlowStore) -> None:
    result = _simulation(tmp_path, store, [("10.30.1.11", "10.20.1.11", 443, 6)])  # dev → prod
    [gap] = result.denied
    assert (gap.source, gap.destination, gap.service) == ("web-dev", "web-prod", "tcp/443")
    assert "web-prod-01 (ingress) by rule deny-dev-to-prod" in {d.describe() for d in gap.denials}


# --------------------------------------------------------------------------- the CLI


def test_collect_discover_and_simulate_through_the_cli(tmp_path: Path) -> None:
    flows = tmp_path / "flows.duckdb"
    base = ["--policy", str(REPO / "policies"), "--inventory", str(REPO / "inventory"), "--today", TODAY.isoformat(),
            "--store", f"sqlite:///{tmp_path / 'state.db'}"]  # its own (empty) store: no rule hit counters either

    def cli(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, [*base, *args, "--flow-store", str(flows)])
        return result.exit_code, result.stdout if "--json" in args else result.output

    good = write(tmp_path / "good.log", vpc_lines([*ALLOWED, WEB_TO_DB]))
    code, out = cli("collect", "vpc", str(good), str(DATA / "default-v2.log"), "--json")
    assert code == 0 and json.loads(out)["store"]["records"] == 54 + 2, out
    code, out = cli("collect", "vpc", str(tmp_path / "missing.log"))
    assert code == 1 and "missing.log" in out
    code, out = cli("simulate")
    assert code == 2 and "web-prod → db-prod tcp/5432" in out, out
    code, out = cli("simulate", "--json")
    assert code == 2 and json.loads(out)["denied"][0]["from"] == "web-prod"
    proposal_file = tmp_path / "proposed.yaml"
    code, out = cli("discover", "-o", str(proposal_file))
    assert code == 0 and "shop-web-prod" in out and proposal_file.exists(), out
    assert yaml.safe_load(proposal_file.read_text())["apiVersion"] == "microseg/v1"
    code, out = cli("discover", "-o", str(REPO / "policies" / "discovered.yaml"))
    assert code == 64 and "inside the policy directory" in out
    assert not (REPO / "policies" / "discovered.yaml").exists()
    code, out = cli("simulate", "--since", "1w")  # the sample traffic is from 2025: nothing in the last week
    assert code == 1 and "holds no flows" in out


def test_lint_adds_unused_and_over_broad_rules_when_flow_data_is_present(tmp_path: Path) -> None:
    flows = tmp_path / "flows.duckdb"
    base = ["--policy", str(REPO / "policies"), "--inventory", str(REPO / "inventory"), "--today", TODAY.isoformat()]
    plain = CliRunner().invoke(main, [*base, "lint", "--json"])
    assert "unused-rule" not in plain.stdout  # no flow data: lint judges the text alone
    with FlowStore(flows) as store:
        import_location(store, "vpc", VpcFlowLogSource(), str(write(tmp_path / "a.log", vpc_lines(ALLOWED))))
    result = CliRunner().invoke(main, [*base, "lint", "--json", "--flow-store", str(flows)])
    unused = {f["message"].split("'")[1] for f in json.loads(result.stdout)["findings"] if f["code"] == "unused-rule"}
    assert "shop-app-to-db-dev" in unused and "shop-app-to-db-prod" not in unused, result.stdout


def test_collect_netflow_through_the_cli_keeps_to_its_exporters(tmp_path: Path) -> None:
    """`collect netflow --listen` for a while: records from the allowed exporter land in the store, another
    exporter's are refused (NetFlow v5 datagrams built as the format is documented)."""
    import socket
    import threading
    import time as clock

    from tests.test_netflow import free_udp_port, v5_packet, v5_record

    port = free_udp_port("127.0.0.1")
    flows = tmp_path / "flows.duckdb"
    result: dict[str, Any] = {}

    def run() -> None:
        result["cli"] = CliRunner().invoke(main, ["collect", "netflow", "--listen", f"127.0.0.1:{port}",
                                                  "--duration", "2", "--exporter", "127.0.0.2", "--json",
                                                  "--flow-store", str(flows)])

    thread = threading.Thread(target=run)
    thread.start()
    packet = v5_packet([v5_record("10.20.2.11", "10.20.3.11", 40001, 5432, 6)])
    deadline = clock.monotonic() + 1.5
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as allowed, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        allowed.bind(("127.0.0.2", 0))
        other.bind(("127.0.0.3", 0))
        while clock.monotonic() < deadline:  # until the listener is bound: datagrams before it are lost
            allowed.sendto(packet, ("127.0.0.1", port))
            other.sendto(packet, ("127.0.0.1", port))
            clock.sleep(0.1)
    thread.join(timeout=10)
    out = result["cli"]
    assert out.exit_code == 0, out.output
    with FlowStore(flows) as store:
        observers = {row[0] for row in store.query("SELECT DISTINCT observer FROM flows")}
        assert observers == {"127.0.0.2"} and store.summary()["records"] > 0


SAMPLES = {"vpc": "vpc-flow-logs.log", "azure": "azure-vnet-flow-logs.json", "gcp": "gcp-vpc-flow-logs.ndjson"}


@pytest.mark.parametrize("source", sorted(SAMPLES))
def test_the_worked_examples_samples_discover_and_simulate(source: str, tmp_path: Path) -> None:
    """Each cloud format's sample (the lab's real traffic, mapped onto the dev workloads): read without a
    problem, mapped onto the dev tiers, and the policy would deny exactly one thing — the Internet reaching the dev
    web tier, which only the production web tier may (edge.yaml)."""
    project = load_project(REPO / "policies", REPO / "inventory", today=TODAY)
    with FlowStore(":memory:") as store:
        [report] = import_locations(store, source, [str(REPO / "inventory" / "flows" / SAMPLES[source])])
        assert report.problems == [] and report.records >= 10
        found = conversations(store)
    assert len(found) == 10 and not any(c.guessed for c in found)
    app = build_map(found, project.inventory.workloads, project.loaded.policy, ("app", "tier", "env"))
    edges = {(e.client, e.server, e.service) for e in app.edges}
    assert {("shop-web-dev", "shop-app-dev", "tcp/8443"), ("shop-app-dev", "shop-db-dev", "tcp/5432"),
            ("internet", "shop-web-dev", "tcp/443"), ("platform-shared", "shop-db-dev", "tcp/22")} <= edges
    prepared = project.prepare()
    result = simulate(found, project.compile(prepared=prepared), prepared)
    assert [(g.source, g.destination, g.service, g.conversations) for g in result.denied] == [
        ("internet", "web-dev", "tcp/443", 2)]


def test_the_networks_own_traffic_is_left_out_of_conversations(tmp_path: Path, store: FlowStore) -> None:
    lines = vpc_lines([("10.0.0.1", "10.0.0.2", 5432, 6)], repeat=1)
    lines += ["5 eni-x fe80::1 ff02::16 0 0 58 1 90 1765000000 1765000059 ACCEPT - OK",  # MLD report
              "5 eni-x 0.0.0.0 255.255.255.255 68 67 17 1 300 1765000000 1765000059 ACCEPT - OK",  # DHCP discover
              "5 eni-x 10.0.0.1 224.0.0.251 5353 5353 17 1 80 1765000000 1765000059 ACCEPT - OK"]  # mDNS
    found = conversations(_store_with(store, tmp_path, lines))
    assert [(c.client, c.server, c.service) for c in found] == [("10.0.0.1", "10.0.0.2", "tcp/5432")]


def test_a_flow_store_of_an_earlier_release_gains_the_rule_column_and_keeps_its_flows(tmp_path: Path) -> None:
    """A store written before flows carried the rule that decided them is opened as it is: the column is added
    (empty for the old rows), and rule names imported since are kept apart per name and window."""
    import duckdb

    path = tmp_path / "flows.duckdb"
    old = duckdb.connect(str(path))
    old.execute("""CREATE TABLE flows (
        window_start BIGINT NOT NULL, src VARCHAR NOT NULL, dst VARCHAR NOT NULL, protocol INTEGER NOT NULL,
        src_port INTEGER NOT NULL, dst_port INTEGER NOT NULL, initiator VARCHAR, action VARCHAR,
        observer VARCHAR NOT NULL, source VARCHAR NOT NULL, packets BIGINT NOT NULL, bytes BIGINT NOT NULL,
        records BIGINT NOT NULL, first_seen BIGINT NOT NULL, last_seen BIGINT NOT NULL,
        import_digest VARCHAR NOT NULL)""")
    old.execute("INSERT INTO flows VALUES (0, '10.0.0.1', '10.0.0.2', 6, 1, 2, NULL, 'accept', 'x', 'vpc', 1, 60, "
                "1, 10, 10, 'old')")
    old.close()
    with FlowStore(path, read_only=True) as reader:  # `microseg hits` reads as it is: no rule names, no change
        assert reader.logged_rules() == [] and reader.summary()["records"] == 1
    with FlowStore(path) as store:
        assert store.query("SELECT rule FROM flows") == [("",)]
        named = [FlowRecord(start=7200 + k, end=7200 + k, src="10.0.0.1", dst="10.0.0.2", protocol=6, dst_port=443,
                            packets=2, action="accept", observer="nsg/AA", rule="nsg/UserRule_mseg-in-0100")
                 for k in range(3)]
        store.import_records("azure", "logs.json", [*named, FlowRecord(start=7300, end=7300, src="10.0.0.9",
                                                                       dst="10.0.0.2", protocol=6, rule="")])
        assert store.logged_rules() == [("nsg/UserRule_mseg-in-0100", 3, 6, 7200, 7202)]
        assert store.logged_rules(since=7203) == []
        assert store.summary()["records"] == 5
