"""The Azure (VNet / NSG flow logs) and GCP (VPC Flow Logs / Firewall Rules Logging) flow sources read the
documented formats (samples in tests/data/flowlogs, provenance in PROVENANCE.md) into exact FlowRecords."""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

import pytest

from drivers.azure_nsg.flowlogs import AzureFlowLogSource, parse_json
from drivers.azure_nsg.flowlogs import FlowLogError as AzureFlowLogError
from drivers.gcp_firewall.flowlogs import FlowLogError as GcpFlowLogError
from drivers.gcp_firewall.flowlogs import GcpFlowLogSource
from orchestrator.model import FLOW_ACTIONS, Diagnostic, FlowRecord, FlowSource, MicrosegError, Severity

DATA = Path(__file__).parent / "data" / "flowlogs"
AZURE = DATA / "azure"
GCP = DATA / "gcp"


def read(source: FlowSource, path: Path) -> tuple[list[FlowRecord], list[Diagnostic]]:
    problems: list[Diagnostic] = []
    records = list(source.read(str(path), problems))
    return records, problems


def flow(start: int, src: str, dst: str, src_port: int, dst_port: int, protocol: int, packets: int, bytes_: int,
         action: str | None, initiator: str | None, observer: str, end: int | None = None,
         rule: str = "") -> FlowRecord:
    return FlowRecord(start=start, end=start if end is None else end, src=src, dst=dst, protocol=protocol,
                      src_port=src_port, dst_port=dst_port, packets=packets, bytes=bytes_, action=action,
                      initiator=initiator, observer=observer, rule=rule)  # type: ignore[arg-type]


def named(records: list[FlowRecord], *groups: tuple[int, str]) -> list[FlowRecord]:
    """``records`` with the rule each consecutive group of them was logged under (count, qualified name)."""
    rules = [rule for size, rule in groups for _ in range(size)]
    assert len(rules) == len(records)
    return [dataclasses.replace(record, rule=rule) for record, rule in zip(records, rules, strict=True)]


def where(problems: list[Diagnostic]) -> list[tuple[str, int | None]]:
    return [(d.location.file, d.location.line) for d in problems if d.location]


def assert_valid(records: list[FlowRecord]) -> None:
    """Every record is a FlowRecord that FlowRecord's own validation rebuilds unchanged (canonical addresses,
    ranges), with values of the declared types."""
    assert records
    for record in records:
        assert type(record) is FlowRecord
        assert FlowRecord(**dataclasses.asdict(record)) == record
        for name in ("start", "end", "protocol", "src_port", "dst_port", "packets", "bytes"):
            value = getattr(record, name)
            assert type(value) is int and value >= 0, (name, value)
        assert record.action in (*FLOW_ACTIONS, None)
        assert record.initiator in ("src", "dst", None)
        assert isinstance(record.observer, str)


# --- Azure: the documented samples ---------------------------------------------------------------------------------

VNET = "myVNet/00224871C205"
VNET_SAMPLE = [
    # DefaultRule_AllowInternetOutBound: B (no statistics) then E (both directions summed); ms → s
    flow(1663146003, "10.0.0.6", "52.239.184.180", 23956, 443, 6, 0, 0, "accept", "src", VNET),
    flow(1663146003, "10.0.0.6", "52.239.184.180", 23956, 443, 6, 3 + 2, 767 + 1580, "accept", None, VNET),
    flow(1663146003, "10.0.0.6", "40.74.146.17", 22730, 443, 6, 0, 0, "accept", "src", VNET),
    flow(1663146003, "10.0.0.6", "40.74.146.17", 22730, 443, 6, 3 + 4, 705 + 4569, "accept", None, VNET),
    flow(1663146004, "10.0.0.6", "40.74.146.17", 22732, 443, 6, 0, 0, "accept", "src", VNET),
    flow(1663146004, "10.0.0.6", "40.74.146.17", 22732, 443, 6, 3 + 4, 705 + 4569, "accept", None, VNET),
    flow(1663146004, "10.0.0.6", "40.74.146.17", 22734, 443, 6, 0, 0, "accept", "src", VNET),
    flow(1663146004, "10.0.0.6", "40.74.146.17", 22734, 443, 6, 2 + 1, 134 + 108, "accept", None, VNET),
    flow(1663146017, "10.0.0.6", "104.16.218.84", 36776, 443, 6, 0, 0, "accept", "src", VNET),
    flow(1663146022, "10.0.0.6", "104.16.218.84", 36776, 443, 6, 22 + 33, 2217 + 32466, "accept", None, VNET),
    # BlockHighRiskTCPPortsFromInternet and Internet: flow state D
    flow(1663145998, "101.33.218.153", "10.0.0.6", 55188, 22, 6, 0, 0, "reject", None, VNET),
    flow(1663146005, "192.241.200.164", "10.0.0.6", 35276, 119, 6, 0, 0, "reject", None, VNET),
    flow(1663145989, "20.106.221.10", "10.0.0.6", 50557, 44357, 6, 0, 0, "reject", None, VNET),
    flow(1663145989, "20.55.117.81", "10.0.0.6", 62797, 35945, 6, 0, 0, "reject", None, VNET),
    flow(1663145989, "20.55.113.5", "10.0.0.6", 51961, 65515, 6, 0, 0, "reject", None, VNET),
    flow(1663145990, "13.65.224.51", "10.0.0.6", 40497, 40129, 6, 0, 0, "reject", None, VNET),
    flow(1663145990, "20.55.117.81", "10.0.0.6", 62797, 30472, 6, 0, 0, "reject", None, VNET),
    flow(1663145990, "20.55.113.5", "10.0.0.6", 51961, 28184, 6, 0, 0, "reject", None, VNET),
    flow(1663146015, "20.106.221.10", "10.0.0.6", 50557, 31244, 6, 0, 0, "reject", None, VNET),
]
# VNet flow logs name the rule per flow group, and its NSG by resourceGuid (flows[].aclID)
VNET_SAMPLE = named(VNET_SAMPLE, (10, "00000000-1234-abcd-ef00-c1c2c3c4c5c6/DefaultRule_AllowInternetOutBound"),
                    (2, "01020304-abcd-ef00-1234-102030405060/BlockHighRiskTCPPortsFromInternet"),
                    (7, "01020304-abcd-ef00-1234-102030405060/Internet"))

NSG = "FABRIAKMVM1-NSG/000D3AF87856"
NSG_V2_SAMPLE = [
    flow(1542110402, "192.0.2.190", "10.5.16.4", 28746, 443, 17, 0, 0, "reject", "src", NSG),
    flow(1542110424, "203.0.113.10", "10.5.16.4", 56509, 59336, 6, 0, 0, "reject", "src", NSG),
    flow(1542110432, "198.51.100.8", "10.5.16.4", 48495, 8088, 6, 0, 0, "reject", "src", NSG),
    flow(1542110377, "10.5.16.4", "203.0.113.118", 59831, 443, 6, 0, 0, "accept", "src", NSG),
    flow(1542110379, "10.5.16.4", "203.0.113.117", 59932, 443, 6, 1 + 1, 66 + 66, "accept", None, NSG),
    flow(1542110379, "10.5.16.4", "203.0.113.115", 44931, 443, 6, 30 + 24, 16978 + 14008, "accept", None, NSG),
    flow(1542110406, "10.5.16.4", "198.51.100.225", 59929, 443, 6, 15 + 12, 8489 + 7054, "accept", None, NSG),
    flow(1542110437, "125.64.94.197", "10.5.16.4", 59752, 18264, 6, 0, 0, "reject", "src", NSG),
    flow(1542110475, "80.211.72.221", "10.5.16.4", 37433, 8088, 6, 0, 0, "reject", "src", NSG),
    flow(1542110487, "46.101.199.124", "10.5.16.4", 60577, 8088, 6, 0, 0, "reject", "src", NSG),
    flow(1542110490, "176.119.4.30", "10.5.16.4", 57067, 52801, 6, 0, 0, "reject", "src", NSG),
]
# NSG flow logs name the rule per flows[] item, and its NSG by resourceId (upper-cased there, lower-cased here)
NSG_ID = ("/subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e/resourcegroups/fabrikamrg/providers/"
          "microsoft.network/networksecuritygroups/fabriakmvm1-nsg")
NSG_V2_SAMPLE = named(NSG_V2_SAMPLE, (3, f"{NSG_ID}/DefaultRule_DenyAllInBound"),
                      (4, f"{NSG_ID}/DefaultRule_AllowInternetOutBound"),
                      (4, f"{NSG_ID}/DefaultRule_DenyAllInBound"))

NSG1 = "FABRIAKMVM1-NSG/000D3AF8801A"
NSG_V1_SAMPLE = [  # version 1: no flow state, no counters
    flow(1487282421, "192.0.2.95", "10.1.0.4", 51529, 5358, 6, 0, 0, "reject", None, NSG1),
    flow(1487282370, "192.0.2.17", "10.1.0.4", 61771, 3389, 6, 0, 0, "accept", None, NSG1),
    flow(1487282393, "203.0.113.34", "10.1.0.4", 58596, 3389, 6, 0, 0, "accept", None, NSG1),
    flow(1487282393, "192.0.2.154", "10.1.0.4", 61540, 3389, 6, 0, 0, "accept", None, NSG1),
    flow(1487282423, "203.0.113.229", "10.1.0.4", 53163, 3389, 6, 0, 0, "accept", None, NSG1),
    flow(1487282481, "198.51.100.194", "10.1.0.4", 53, 1732, 17, 0, 0, "reject", None, NSG1),
    flow(1487282435, "198.51.100.68", "10.1.0.4", 57776, 3389, 6, 0, 0, "accept", None, NSG1),
    flow(1487282454, "203.0.113.170", "10.1.0.4", 59085, 3389, 6, 0, 0, "accept", None, NSG1),
    flow(1487282477, "192.0.2.50", "10.1.0.4", 65078, 3389, 6, 0, 0, "accept", None, NSG1),
]
NSG_V1_SAMPLE = named(NSG_V1_SAMPLE, (1, f"{NSG_ID}/DefaultRule_DenyAllInBound"),
                      (4, f"{NSG_ID}/UserRule_default-allow-rdp"),
                      (1, f"{NSG_ID}/DefaultRule_DenyAllInBound"),
                      (3, f"{NSG_ID}/UserRule_default-allow-rdp"))


def test_azure_source_follows_the_flow_source_contract() -> None:
    source = AzureFlowLogSource()
    assert isinstance(source, FlowSource)
    assert source.name == "azure"


@pytest.mark.parametrize(("file", "expected"), [
    ("vnet_sample.json", VNET_SAMPLE), ("nsg_v2_sample.json", NSG_V2_SAMPLE), ("nsg_v1_sample.json", NSG_V1_SAMPLE),
])
def test_azure_documented_samples_map_every_field(file: str, expected: list[FlowRecord]) -> None:
    records, problems = read(AzureFlowLogSource(), AZURE / file)
    assert problems == []
    assert records == expected


def test_azure_ipv6_seconds_time_stamps_empty_counters_and_encryption_drops() -> None:
    records, problems = read(AzureFlowLogSource(), AZURE / "vnet_ipv6.json")
    assert problems == []
    app = "app/6045BD7A1B2C"  # the subnet the flow log is on, the NIC's MAC
    assert records == named([
        flow(1714979289, "2001:db8:1::4", "2001:db8:2::5", 50432, 443, 6, 0, 0, "accept", "src", app),
        flow(1714979349, "2001:db8:1::4", "2001:db8:2::5", 50432, 443, 6, 22, 55400, "accept", None, app),
        # a seconds time stamp stays as it is; the address is written in its canonical form; ICMPv6 has no ports
        flow(1714979290, "2001:db8:1::7", "2001:db8:2::5", 0, 0, 58, 8, 832, "accept", None, app),
        # NX_NOT_ACCEPTED: "If traffic encryption fails, the packet is dropped"
        flow(1714979300, "10.1.0.4", "10.2.0.5", 41000, 5432, 6, 0, 0, "reject", "src", app),
    ], (3, "00000000-1234-abcd-ef00-c1c2c3c4c5c6/AllowHttpsFromWeb"), (1, "unspecified/unspecified"))


@pytest.mark.parametrize("file", ["vnet_sample.json", "nsg_v2_sample.json"])
def test_azure_gzip_reads_as_plain(file: str) -> None:
    plain = read(AzureFlowLogSource(), AZURE / file)
    zipped = read(AzureFlowLogSource(), AZURE / f"{file}.gz")
    assert (AZURE / f"{file}.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert zipped == plain
    assert len(plain[0]) > 0


def test_azure_gzip_is_told_by_content_not_name(tmp_path: Path) -> None:
    renamed = tmp_path / "PT1H.json"
    renamed.write_bytes(gzip.compress((AZURE / "vnet_sample.json").read_bytes()))
    assert read(AzureFlowLogSource(), renamed) == (VNET_SAMPLE, [])


def test_azure_malformed_tuples_are_diagnostics_with_file_line_and_path() -> None:
    path = AZURE / "vnet_malformed.json"
    records, problems = read(AzureFlowLogSource(), path)
    vnet = "myVNet/6045BD7A1B2C"
    assert records == named([  # the good tuples around the bad ones, and the record after the bad records
        flow(1714979289, "10.1.0.4", "10.2.0.5", 50432, 443, 6, 0, 0, "accept", "src", vnet),
        flow(1714979349, "10.1.0.4", "10.2.0.5", 50432, 443, 6, 9, 4500, "accept", None, vnet),
        flow(1714979400, "10.2.0.5", "10.3.0.6", 36000, 53, 17, 0, 0, "accept", "src", "myVNet/6045BD7A1B2D"),
    ], (2, "00000000-1234-abcd-ef00-c1c2c3c4c5c6/AllowVnetInBound"),
        (1, "00000000-1234-abcd-ef00-c1c2c3c4c5c6/AllowVnetOutBound"))
    tuples = "records[0].flowRecords.flows[0].flowGroups[0].flowTuples"
    expected = [
        (19, f"{tuples}[1]: 8 fields where a VNet flow log tuple has 13"),
        (20, f"{tuples}[2]: '10.1.0.400' does not appear to be an IPv4 or IPv6 address"),
        (21, f"{tuples}[3]: port 70000 is outside 0-65535"),
        (22, f"{tuples}[4]: flow state 'Q' is not one of B, C, D, E"),
        (23, f"{tuples}[5]: is not a text tuple but 42"),
        (24, f"{tuples}[6]: packets sent 'many' is not a whole number"),
        (38, "records[1].flowRecords.flows[0].flowGroups: is missing"),
        (44, "records[2]: has neither flowRecords (VNet flow log) nor properties (NSG flow log)"),
    ]
    assert where(problems) == [(str(path), line) for line, _ in expected]
    for problem, (line, message) in zip(problems, expected, strict=True):
        assert problem.message.startswith(message), problem.message
        assert str(problem).startswith(f"{path}:{line}: error: ")
        assert problem.severity is Severity.ERROR and problem.code == "flow-log"
    lines = path.read_text().splitlines()
    assert "50434,70000" in lines[21 - 1]  # the line named is the tuple's own line
    assert "70000" in problems[2].message  # and the message quotes the tuple


def test_azure_nsg_malformed_tuples() -> None:
    path = AZURE / "nsg_v2_malformed.json"
    records, problems = read(AzureFlowLogSource(), path)
    assert records == [flow(1542110406, "10.5.16.4", "198.51.100.225", 59929, 443, 6, 27, 15543, "accept", None,
                            NSG, rule=f"{NSG_ID}/DefaultRule_AllowInternetOutBound")]
    tuples = "records[0].properties.flows[0].flows[0].flowTuples"
    assert [(d.location.line if d.location else None, d.message.split(" in tuple ")[0]) for d in problems] == [
        (18, f"{tuples}[0]: protocol 'X' is not one of T, U"),
        (19, f"{tuples}[1]: traffic decision 'Q' is not one of A, D"),
        (20, f"{tuples}[2]: 8 fields where an NSG flow log version 2 tuple has 13"),
        (21, f"{tuples}[3]: '2001:db8::zz' does not appear to be an IPv4 or IPv6 address"),
    ]


def test_azure_json_parser_keeps_values_and_positions() -> None:
    for file in ("vnet_sample.json", "nsg_v2_sample.json", "vnet_malformed.json"):
        text = (AZURE / file).read_text()
        document = parse_json(text)
        assert document == json.loads(text)
        tuples = document["records"][0]
        tuples = (tuples["flowRecords"]["flows"][0]["flowGroups"][0]["flowTuples"] if "flowRecords" in tuples
                  else tuples["properties"]["flows"][0]["flows"][0]["flowTuples"])
        for value, offset in zip(tuples, tuples.offsets, strict=True):
            assert text[offset:offset + len(json.dumps(value))] == json.dumps(value)


@pytest.mark.parametrize(("content", "message"), [
    (b"this is not JSON", ":1:1: not a JSON document: Expecting value"),
    (b'{\n  "records": [\n    {"time": 1,}\n  ]\n}', ":3:16: not a JSON document"),
    (b'{"value": []}', 'not an Azure flow log (no top-level "records" list)'),
    (b"[]", 'not an Azure flow log (no top-level "records" list)'),
    (b"\x1f\x8b\x08\x00garbage", "not a readable gzip file"),
    (b'{"records": ["\xff"]}', "not UTF-8 text"),
])
def test_azure_unreadable_file_raises_naming_it(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "flows.json"
    path.write_bytes(content)
    with pytest.raises(AzureFlowLogError) as caught:
        AzureFlowLogSource().read(str(path), [])
    assert str(path) in str(caught.value)
    assert message in str(caught.value)
    assert isinstance(caught.value, MicrosegError)


def test_azure_missing_file_and_documented_not_json_sample_raise() -> None:
    with pytest.raises(AzureFlowLogError, match=r"cannot read the flow log .*no-such-file\.json"):
        AzureFlowLogSource().read(str(AZURE / "no-such-file.json"), [])
    with pytest.raises(AzureFlowLogError, match=r"not_json\.json:1:1: not a JSON document"):
        AzureFlowLogSource().read(str(AZURE / "not_json.json"), [])


@pytest.mark.parametrize("file", ["vnet_sample.json", "nsg_v2_sample.json", "nsg_v1_sample.json", "vnet_ipv6.json",
                                  "vnet_malformed.json", "vnet_sample.json.gz"])
def test_azure_records_round_trip_through_flow_record_validation(file: str) -> None:
    records, _ = read(AzureFlowLogSource(), AZURE / file)
    assert_valid(records)


# --- GCP ---------------------------------------------------------------------------------------------------------

GCP_VPC_FLOWS = [
    # request 10.10.0.2 → 10.50.0.2 and its reply, each reported by both VMs; DEST-reported → accept
    flow(1714979401, "10.10.0.2", "10.50.0.2", 40112, 80, 6, 4, 1224, None, None, "vm-a", end=1714979404),
    flow(1714979401, "10.50.0.2", "10.10.0.2", 80, 40112, 6, 6, 5342, "accept", None, "vm-a", end=1714979404),
    flow(1714979401, "10.10.0.2", "10.50.0.2", 40112, 80, 6, 4, 1224, "accept", None, "vm-b", end=1714979404),
    flow(1714979401, "10.50.0.2", "10.10.0.2", 80, 40112, 6, 6, 5342, None, None, "vm-b", end=1714979404),
    flow(1714979460, "2001:db8:10::2", "2001:db8:ffff::1234", 51000, 443, 6, 9, 880, None, None, "vm-a",
         end=1714979490),
    # no instance metadata: the reporting VM by its address; "+02:00" stamps
    flow(1714979520, "10.10.0.2", "203.0.113.53", 35353, 53, 17, 1, 74, None, None, "10.10.0.2"),
]

GCLOUD_READ = [  # Firewall Rules Logging names the rule (rule_details.reference: network:NET/firewall:NAME)
    flow(1714982405, "10.10.0.99", "10.20.0.99", 38302, 80, 6, 0, 0, "reject", "src", "VM1", rule="rule-a"),
    flow(1714982467, "10.10.0.99", "10.20.0.99", 38304, 80, 6, 0, 0, "accept", "src", "VM2", rule="rule-b"),
    flow(1714982467, "10.10.0.99", "10.20.0.99", 38304, 80, 6, 5, 520, "accept", None, "VM2", end=1714982472),
]


def test_gcp_source_follows_the_flow_source_contract() -> None:
    source = GcpFlowLogSource()
    assert isinstance(source, FlowSource)
    assert source.name == "gcp"


def test_gcp_vpc_flow_logs_map_every_field() -> None:
    records, problems = read(GcpFlowLogSource(), GCP / "vpc_flows.ndjson")
    assert problems == []
    assert records == GCP_VPC_FLOWS


def test_gcp_gcloud_json_array_with_firewall_entries() -> None:
    records, problems = read(GcpFlowLogSource(), GCP / "gcloud_read.json")
    assert problems == []
    assert records == GCLOUD_READ


def test_gcp_gzip_reads_as_plain(tmp_path: Path) -> None:
    zipped = GCP / "vpc_flows.ndjson.gz"
    assert zipped.read_bytes()[:2] == b"\x1f\x8b"
    assert read(GcpFlowLogSource(), zipped) == read(GcpFlowLogSource(), GCP / "vpc_flows.ndjson")
    array = tmp_path / "export.json"  # the array form, zipped, under a name that does not say so
    array.write_bytes(gzip.compress((GCP / "gcloud_read.json").read_bytes()))
    assert read(GcpFlowLogSource(), array) == (GCLOUD_READ, [])


def test_gcp_malformed_lines_are_diagnostics_and_the_rest_is_read() -> None:
    path = GCP / "malformed.ndjson"
    records, problems = read(GcpFlowLogSource(), path)
    assert records == [GCP_VPC_FLOWS[0],
                       flow(1714982410, "10.10.0.99", "10.20.0.99", 38312, 80, 6, 0, 0, "reject", "src", "VM1",
                            rule="rule-a")]
    expected = [
        (2, Severity.ERROR, "not JSON (Expecting value at column 56)"),
        (3, Severity.ERROR, "jsonPayload.connection is missing"),
        (4, Severity.ERROR, "'10.10.0.256' does not appear to be an IPv4 or IPv6 address"),
        (5, Severity.ERROR, "port 70000 is outside 0-65535"),
        (6, Severity.ERROR, "start_time 'yesterday' is not an RFC 3339 time stamp"),
        (7, Severity.WARNING, "not a VPC Flow Logs or Firewall Rules Logging entry "
                              "(logName 'projects/example-proj/logs/cloudaudit.googleapis.com%2Factivity'); skipped"),
        (8, Severity.ERROR, "disposition 'MAYBE' is not one of ALLOWED, DENIED, INTERCEPTED"),
        (10, Severity.ERROR, "not a LogEntry object but 42"),
    ]
    assert [(d.location.file if d.location else None, d.location.line if d.location else None, d.severity,
             d.message) for d in problems] == [(str(path), line, severity, message)
                                               for line, severity, message in expected]
    assert all(str(d).startswith(f"{path}:") and d.code == "flow-log" for d in problems)


def test_gcp_malformed_array_entries_name_index_and_line(tmp_path: Path) -> None:
    entries = json.loads((GCP / "gcloud_read.json").read_text())
    entries[1]["jsonPayload"]["connection"]["dest_port"] = 65536
    path = tmp_path / "read.json"
    text = json.dumps(entries, indent=2)
    path.write_text(text)
    records, problems = read(GcpFlowLogSource(), path)
    assert records == [GCLOUD_READ[0], GCLOUD_READ[2]]
    second = text.index('"insertId": "fw-0002"')
    line = text.count("\n", 0, text.rindex("{", 0, second)) + 1  # the line where entry [1] starts
    assert where(problems) == [(str(path), line)]
    assert problems[0].message == "[1] port 65536 is outside 0-65535"

    path.write_text(text[:second + 40])  # cut inside entry [1]: [0] is read, the rest is reported
    records, problems = read(GcpFlowLogSource(), path)
    assert records == [GCLOUD_READ[0]]
    assert len(problems) == 1 and problems[0].location is not None
    assert problems[0].message.startswith("[1] not JSON (") and "the rest of the array cannot be read" in \
        problems[0].message


def test_gcp_icmp_numbers_and_intercepted(tmp_path: Path) -> None:
    base = json.loads((GCP / "vpc_flows.ndjson").read_text().splitlines()[0])
    icmp = json.loads(json.dumps(base))
    icmp["jsonPayload"]["connection"] = {"src_ip": "10.10.0.2", "dest_ip": "10.50.0.2", "protocol": 1}
    icmp["jsonPayload"].update(reporter="DEST", bytes_sent=84, packets_sent=1)  # int64 as JSON numbers too
    intercepted = json.loads((GCP / "gcloud_read.json").read_text())[0]
    intercepted["jsonPayload"]["disposition"] = "INTERCEPTED"
    bad_date = json.loads(json.dumps(base))
    bad_date["jsonPayload"]["end_time"] = "2024-13-01T00:00:00Z"
    path = tmp_path / "flows.ndjson"
    path.write_text("\n".join(json.dumps(e) for e in (icmp, intercepted, bad_date)) + "\n")
    records, problems = read(GcpFlowLogSource(), path)
    assert records == [
        flow(1714979401, "10.10.0.2", "10.50.0.2", 0, 0, 1, 1, 84, "accept", None, "vm-b", end=1714979404),
        flow(1714982405, "10.10.0.99", "10.20.0.99", 38302, 80, 6, 0, 0, None, "src", "VM1", rule="rule-a"),
    ]
    assert where(problems) == [(str(path), 3)]
    assert problems[0].message.startswith("end_time '2024-13-01T00:00:00Z' is not a valid time")


def test_gcp_empty_file_has_no_flows(tmp_path: Path) -> None:
    path = tmp_path / "empty.ndjson"
    path.write_text("\n\n")
    assert read(GcpFlowLogSource(), path) == ([], [])


@pytest.mark.parametrize(("content", "message"), [
    (b"\x1f\x8bnot gzip at all", "not a readable gzip file"),
    (b'[\n  {"insertId": \n', ":3: not a JSON log export: [0] not JSON"),
    (b"2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 - - ACCEPT OK\n",
     ":1: not a JSON log export: not JSON"),
])
def test_gcp_unreadable_file_raises_naming_it(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "export.json"
    path.write_bytes(content)
    with pytest.raises(GcpFlowLogError) as caught:
        list(GcpFlowLogSource().read(str(path), []))
    assert str(path) in str(caught.value)
    assert message in str(caught.value)
    assert isinstance(caught.value, MicrosegError)


def test_gcp_missing_file_and_non_json_sample_raise() -> None:
    with pytest.raises(GcpFlowLogError, match=r"cannot read the flow log .*no-such-file\.ndjson"):
        GcpFlowLogSource().read(str(GCP / "no-such-file.ndjson"), [])
    problems: list[Diagnostic] = []
    with pytest.raises(GcpFlowLogError, match=r"not_json\.ndjson:1: not a JSON log export") as caught:
        list(GcpFlowLogSource().read(str(GCP / "not_json.ndjson"), problems))
    assert problems == []  # the lines' reasons travel with the error, not as diagnostics too
    assert [d.location.line for d in caught.value.diagnostics if d.location] == [1, 2]


@pytest.mark.parametrize("file", ["vpc_flows.ndjson", "vpc_flows.ndjson.gz", "gcloud_read.json", "malformed.ndjson"])
def test_gcp_records_round_trip_through_flow_record_validation(file: str) -> None:
    records, _ = read(GcpFlowLogSource(), GCP / file)
    assert_valid(records)
