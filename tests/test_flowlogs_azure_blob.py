"""The ``azure`` flow source reads the blobs Network Watcher writes to a storage container (``az://CONTAINER/PREFIX``)
through the unmodified azure-storage-blob client, here against simulators/azure_blob.py (a loopback HTTPS Blob
service): the same records as reading the same files locally, every page of the listing, only the prefix,
malformed blobs as diagnostics, clear one-line errors, credentials only where they may go."""

from __future__ import annotations

import gzip
import socket
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ServiceRequestError
from azure.storage.blob import ContainerClient

from drivers.azure_nsg import flowlogs
from drivers.azure_nsg.flowlogs import AzureFlowLogSource, FlowLogError
from drivers.endpoints import ANONYMOUS_REFUSAL
from orchestrator.flows.sources import import_locations
from orchestrator.flows.store import FlowStore
from orchestrator.model import Diagnostic, FlowRecord, PlanError, Severity
from simulators.azure_blob import FakeBlobService, running_fake_blob

AZURE = Path(__file__).parent / "data" / "flowlogs" / "azure"
VNET_CONTAINER = "insights-logs-flowlogflowevent"
NSG_CONTAINER = "insights-logs-networksecuritygroupflowevent"
SUB = "00000000-0000-0000-0000-000000000000"
WATCHER = (f"{SUB}/RESOURCEGROUPS/NETWORKWATCHERRG/PROVIDERS/MICROSOFT.NETWORK/NETWORKWATCHERS/"
           "NETWORKWATCHER_EASTUS2EUAP")
FLOWLOG = f"flowLogResourceID=/SUBSCRIPTIONS/{WATCHER}/FLOWLOGS/VNETFLOWLOG"
OTHER_FLOWLOG = f"flowLogResourceID=/SUBSCRIPTIONS/{WATCHER}/FLOWLOGS/VNETFLOWLOG2"  # shares FLOWLOG's text prefix
NSG_LOG = ("resourceId=/SUBSCRIPTIONS/AAAA0A0A-BB1B-CC2C-DD3D-EEEEEE4E4E4E/RESOURCEGROUPS/FABRIKAMRG/PROVIDERS/"
           "MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/FABRIAKMVM1-NSG")
SIG = "c2VjcmV0LXNpZ25hdHVyZQ%3D%3D"
SAS = f"sv=2025-11-05&sr=c&sp=rl&se=2030-01-01T00%3A00%3A00Z&spr=https&sig={SIG}"
WRONG_SAS = "sv=2025-11-05&sr=c&sp=rl&se=2030-01-01T00%3A00%3A00Z&spr=https&sig=d3JvbmctZ3Vlc3M%3D"


def hour(log: str, h: int, mac: str, day: int = 6) -> str:
    """A blob name as Network Watcher writes it: one blob per hour and NIC."""
    return f"{log}/y=2026/m=12/d={day:02d}/h={h:02d}/m=00/macAddress={mac}/PT1H.json"


# blob name → the sample file whose bytes it holds (a gzip one among them)
VNET_BLOBS = {
    hour(FLOWLOG, 8, "00224871C205"): "vnet_sample.json",
    hour(FLOWLOG, 9, "00224871C205"): "vnet_sample.json.gz",
    hour(FLOWLOG, 9, "6045BD7A1B2C"): "vnet_ipv6.json",
    hour(FLOWLOG, 10, "00224871C205"): "vnet_ipv6.json",
    hour(FLOWLOG, 10, "6045BD7A1B2C", day=7): "vnet_sample.json",
}


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's retries as the source configures them, without the waits between them."""
    for key in ("initial_backoff", "increment_base", "random_jitter_range"):
        monkeypatch.setitem(flowlogs.RETRY, key, 0)


@pytest.fixture
def blob(tmp_path: Path) -> Iterator[FakeBlobService]:
    """A fake Blob service needing SAS, paging 2 blobs at a time, with the VNet samples under FLOWLOG and a
    malformed blob of another flow log whose name shares FLOWLOG's text (outside the prefix FLOWLOG + "/")."""
    with running_fake_blob(tmp_path, page_size=2, sas_token=SAS) as fake:
        for name, sample in VNET_BLOBS.items():
            fake.put_blob(VNET_CONTAINER, name, (AZURE / sample).read_bytes())
        fake.put_blob(VNET_CONTAINER, hour(OTHER_FLOWLOG, 8, "00224871C205"), (AZURE / "not_json.json").read_bytes())
        yield fake


def options(fake: FakeBlobService, **overrides: str) -> dict[str, str]:
    return {"account_url": fake.account_url, "sas_token": SAS, "ca_bundle": fake.ca_file, **overrides}


def read(location: str, **opts: str) -> tuple[list[FlowRecord], list[Diagnostic]]:
    problems: list[Diagnostic] = []
    return list(AzureFlowLogSource(**opts).read(location, problems)), problems


def read_local(*files: str) -> list[FlowRecord]:
    records: list[FlowRecord] = []
    for file in files:
        problems: list[Diagnostic] = []
        records += AzureFlowLogSource().read(str(AZURE / file), problems)
        assert problems == []
    return records


def one_line(error: FlowLogError) -> str:
    text = str(error)
    assert "\n" not in text and "Traceback" not in text, text
    assert "c2VjcmV0" not in text and SIG not in text, text  # the SAS signature never appears
    return text


# --- reading ---------------------------------------------------------------------------------------------------------


def test_every_blob_under_the_prefix_is_read_page_by_page_like_the_local_files(blob: FakeBlobService) -> None:
    records, problems = read(f"az://{VNET_CONTAINER}/{FLOWLOG}/", **options(blob))
    assert problems == []
    assert records == read_local(*(VNET_BLOBS[name] for name in sorted(VNET_BLOBS)))
    assert len(records) > 40
    lists = blob.of_kind("list")  # 5 blobs, 2 a page: the client followed NextMarker twice
    assert len(lists) == 3
    assert [r.query.get("prefix") for r in lists] == [f"{FLOWLOG}/"] * 3
    assert "marker" not in lists[0].query and all(r.query["marker"].startswith("2!") for r in lists[1:])
    # only the blobs under the prefix were downloaded (not VNETFLOWLOG2's), each once, with the SAS
    gets = blob.of_kind("get")
    assert sorted(r.path.split("/", 3)[3] for r in gets) == sorted(VNET_BLOBS)
    assert all(r.query.get("sig") == "c2VjcmV0LXNpZ25hdHVyZQ==" and r.query.get("sp") == "rl" for r in gets)


def test_a_narrower_prefix_reads_only_its_blobs_and_the_gzip_one_reads_as_plain(blob: FakeBlobService) -> None:
    records, problems = read(f"az://{VNET_CONTAINER}/{FLOWLOG}/y=2026/m=12/d=06/h=09/", **options(blob))
    assert problems == []
    assert records == read_local("vnet_sample.json", "vnet_ipv6.json")  # the .gz blob, then the other NIC's
    assert len(blob.of_kind("get")) == 2


def test_nsg_flow_logs_from_their_container(tmp_path: Path) -> None:
    with running_fake_blob(tmp_path, page_size=1) as fake:
        fake.put_blob(NSG_CONTAINER, hour(NSG_LOG, 11, "000D3AF87856"), (AZURE / "nsg_v2_sample.json").read_bytes())
        fake.put_blob(NSG_CONTAINER, hour(NSG_LOG, 12, "000D3AF87856"),
                      gzip.compress((AZURE / "nsg_v1_sample.json").read_bytes()))
        records, problems = read(f"az://{NSG_CONTAINER}/resourceId=/", account_url=fake.account_url,
                                 credentials="anonymous", ca_bundle=fake.ca_file)
    assert problems == []
    assert records == read_local("nsg_v2_sample.json", "nsg_v1_sample.json")


def test_malformed_blobs_are_diagnostics_naming_blob_and_line_and_the_others_are_read(
        blob: FakeBlobService) -> None:
    bad = hour(FLOWLOG, 8, "00224871C206")
    not_json = hour(FLOWLOG, 8, "00224871C207")
    empty = hour(FLOWLOG, 8, "00224871C208")
    no_records = hour(FLOWLOG, 8, "00224871C209")
    blob.put_blob(VNET_CONTAINER, bad, (AZURE / "vnet_malformed.json").read_bytes())
    blob.put_blob(VNET_CONTAINER, not_json, (AZURE / "not_json.json").read_bytes())
    blob.put_blob(VNET_CONTAINER, empty, b"")
    blob.put_blob(VNET_CONTAINER, no_records, b'{"value": []}')
    records, problems = read(f"az://{VNET_CONTAINER}/{FLOWLOG}/y=2026/m=12/d=06/h=08/", **options(blob))

    local: list[Diagnostic] = []
    good_of_bad = list(AzureFlowLogSource().read(str(AZURE / "vnet_malformed.json"), local))
    assert records == read_local("vnet_sample.json") + good_of_bad  # name order: …C205, …C206 (the malformed one)
    where = f"az://{VNET_CONTAINER}/"
    malformed = [p for p in problems if p.location and p.location.file == where + bad]
    assert [(p.location.line if p.location else None, p.message) for p in malformed] == [
        (p.location.line if p.location else None, p.message) for p in local]
    assert [p.location.line for p in malformed if p.location][:3] == [19, 20, 21]
    assert str(malformed[0]).startswith(f"{where}{bad}:19: error: records[0].flowRecords.flows[0]")
    others = [(p.location.file, p.location.line, p.message) for p in problems if p.location and p not in malformed]
    assert others == [
        (where + not_json, 1, "not a JSON document: Expecting value"),
        (where + empty, 1, "not a JSON document: Expecting value"),  # a 416 for the range, then a plain GET
        (where + no_records, None, 'not an Azure flow log (no top-level "records" list)'),
    ]
    assert all(p.code == "flow-log" and p.severity is Severity.ERROR for p in problems)
    assert [r.headers.get("x-ms-range") for r in blob.of_kind("get") if r.path.endswith(empty)] == [
        "bytes=0-33554431", None]


def test_a_blob_deleted_after_the_listing_is_a_diagnostic(blob: FakeBlobService) -> None:
    problems: list[Diagnostic] = []
    records = AzureFlowLogSource(**options(blob)).read(f"az://{VNET_CONTAINER}/{FLOWLOG}/y=2026/m=12/d=06/h=09/",
                                                        problems)
    gone = hour(FLOWLOG, 9, "00224871C205")
    blob.delete_blob(VNET_CONTAINER, gone)  # listed by read(), downloaded only when iterated
    assert list(records) == read_local("vnet_ipv6.json")
    assert [(p.location.file if p.location else None, p.message) for p in problems] == [
        (f"az://{VNET_CONTAINER}/{gone}", "not read: the blob was deleted after it was listed (BlobNotFound)")]


def test_an_empty_prefix_warns(blob: FakeBlobService) -> None:
    records, problems = read(f"az://{VNET_CONTAINER}/{FLOWLOG}/y=2025/", **options(blob))
    assert records == []
    assert [(p.severity, p.message) for p in problems] == [
        (Severity.WARNING, f"no blobs under az://{VNET_CONTAINER}/{FLOWLOG}/y=2025/ in {blob.account_url}")]
    assert blob.of_kind("get") == []


def test_a_transient_server_error_is_retried_by_the_sdk_and_a_lasting_one_is_a_one_line_error(
        blob: FakeBlobService) -> None:
    location = f"az://{VNET_CONTAINER}/{FLOWLOG}/y=2026/m=12/d=06/h=09/"
    blob.fail("get", 500)
    blob.fail("list", 503)
    assert read(location, **options(blob)) == (read_local("vnet_sample.json", "vnet_ipv6.json"), [])
    for nth in range(1, 5):  # the first try and 3 retries
        blob.fail("get", 500, nth=nth)
    with pytest.raises(FlowLogError) as caught:
        read(location, **options(blob))
    assert one_line(caught.value) == (
        f"cannot read az://{VNET_CONTAINER}/{hour(FLOWLOG, 9, '00224871C205')} (container '{VNET_CONTAINER}' of "
        f"{blob.account_url}): HTTP 500 InternalError: The server encountered an internal error. Please retry the "
        f"request.")


# --- errors and credentials ------------------------------------------------------------------------------------------


def test_a_missing_container_is_a_one_line_error_naming_it(blob: FakeBlobService) -> None:
    with pytest.raises(FlowLogError) as caught:
        read("az://insights-logs-nosuchcontainer/flowLogResourceID=/", **options(blob))
    assert one_line(caught.value) == (
        f"cannot list az://insights-logs-nosuchcontainer/flowLogResourceID=/ (container "
        f"'insights-logs-nosuchcontainer' of {blob.account_url}): HTTP 404 ContainerNotFound: The specified "
        f"container does not exist.")


def test_a_wrong_sas_is_a_one_line_error_without_the_signature(blob: FakeBlobService) -> None:
    with pytest.raises(FlowLogError) as caught:
        read(f"az://{VNET_CONTAINER}/{FLOWLOG}/", **options(blob, sas_token=WRONG_SAS))
    text = one_line(caught.value)
    assert text.startswith(f"cannot list az://{VNET_CONTAINER}/{FLOWLOG}/ (container '{VNET_CONTAINER}' of ")
    assert text.endswith("HTTP 403 AuthenticationFailed: Server failed to authenticate the request. Make sure the "
                         "value of Authorization header is formed correctly including the signature. (the SAS token "
                         "or credential was refused: wrong, expired, or for another account)")
    assert "d3JvbmctZ3Vlc3M" not in text
    assert blob.of_kind("get") == []


def test_no_credential_for_a_private_container_is_answered_as_azure_does(blob: FakeBlobService) -> None:
    with pytest.raises(FlowLogError) as caught:
        read(f"az://{VNET_CONTAINER}/{FLOWLOG}/", account_url=blob.account_url, credentials="anonymous",
             ca_bundle=blob.ca_file)
    assert one_line(caught.value).endswith(
        "HTTP 404 ResourceNotFound: The specified resource does not exist. (the container does not exist, or it is "
        "private and the request carried no credential)")


def test_untrusted_tls_fails_without_leaking_the_sas(blob: FakeBlobService) -> None:
    with pytest.raises(FlowLogError) as caught:
        read(f"az://{VNET_CONTAINER}/{FLOWLOG}/", account_url=blob.account_url, sas_token=SAS)  # no ca_bundle
    text = one_line(caught.value)
    assert "CERTIFICATE_VERIFY_FAILED" in text and "ServiceRequestError" in text
    assert len(blob.of_kind("list")) == 0  # the handshake failed: the fake saw no request


def test_sdk_messages_lose_the_sas_signature() -> None:
    """requests words a failed connection with the URL, query and all; azure-core passes such text on."""
    source = AzureFlowLogSource(account_url="https://flowlogs.blob.core.windows.net", sas_token=f"?{SAS}")
    raw = (f"HTTPSConnectionPool(host='flowlogs.blob.core.windows.net', port=443): Max retries exceeded with url: "
           f"/{VNET_CONTAINER}?restype=container&comp=list&{SAS} (Caused by NewConnectionError('boom'))\nmore")
    error = source._failure(ServiceRequestError(raw), "cannot list az://c/x")
    assert one_line(error) == (
        f"cannot list az://c/x: ServiceRequestError: HTTPSConnectionPool(host='flowlogs.blob.core.windows.net', "
        f"port=443): Max retries exceeded with url: /{VNET_CONTAINER}?restype=container&comp=list&sv=2025-11-05&"
        f"sr=c&sp=rl&se=2030-01-01T00%3A00%3A00Z&spr=https&sig=REDACTED (Caused by NewConnectionError('boom'))")


def test_nothing_listening_is_said_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(FlowLogError) as caught:
        read(f"az://{VNET_CONTAINER}/x", account_url=f"https://127.0.0.1:{port}/devstoreaccount1", sas_token=SAS)
    assert one_line(caught.value) == (
        f"cannot list az://{VNET_CONTAINER}/x (container '{VNET_CONTAINER}' of https://127.0.0.1:{port}/"
        f"devstoreaccount1): cannot connect to 127.0.0.1:{port}: connection refused (nothing listens there)")
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("url", ["https://flowlogs.blob.core.windows.net", "https://127.0.0.1.nip.io/acct",
                                 "https://user@127.0.0.1/acct"])
def test_anonymous_is_refused_for_an_account_not_on_loopback_before_any_request(
        url: str, no_connections: list[Any]) -> None:
    with pytest.raises(FlowLogError) as caught:
        read(f"az://{VNET_CONTAINER}/{FLOWLOG}/", account_url=url, credentials="anonymous")
    assert str(caught.value) == ANONYMOUS_REFUSAL.format(setting="account_url", url=url)


def test_a_credential_is_never_sent_over_plain_http_to_another_host(no_connections: list[Any]) -> None:
    with pytest.raises(FlowLogError, match=r"account_url http://198\.51\.100\.7:10000 is plain HTTP to a host that "
                                           r"is not loopback"):
        read(f"az://{VNET_CONTAINER}/x", account_url="http://198.51.100.7:10000/acct", sas_token=SAS)


def test_default_credentials_need_azure_identity(monkeypatch: pytest.MonkeyPatch, no_connections: list[Any]) -> None:
    monkeypatch.setitem(sys.modules, "azure.identity", None)  # not installed
    with pytest.raises(FlowLogError) as caught:
        read(f"az://{VNET_CONTAINER}/x", account_url="https://flowlogs.blob.core.windows.net")
    text = one_line(caught.value)
    assert "needs azure-identity" in text and "pip install azure-identity" in text and "sas_token" in text


class DefaultAzureCredential:
    """Stands in for azure-identity's (not a dependency): a token for whatever scope is asked, the scopes kept."""

    scopes: ClassVar[list[tuple[str, ...]]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken("entra-token", int(time.time()) + 3600)


@pytest.fixture
def identity(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """An ``azure.identity`` module with the stand-in DefaultAzureCredential; the scopes it was asked for."""
    scopes: list[tuple[str, ...]] = []
    monkeypatch.setattr(DefaultAzureCredential, "scopes", scopes)
    module = types.SimpleNamespace(DefaultAzureCredential=DefaultAzureCredential)
    monkeypatch.setitem(sys.modules, "azure.identity", module)
    return scopes


def test_default_credentials_use_default_azure_credential(blob: FakeBlobService,
                                                          identity: list[tuple[str, ...]]) -> None:
    scopes = identity
    blob.sas_token = None
    records, problems = read(f"az://{VNET_CONTAINER}/{FLOWLOG}/y=2026/m=12/d=07/", account_url=blob.account_url,
                             ca_bundle=blob.ca_file)
    assert (records, problems) == (read_local("vnet_sample.json"), [])
    assert scopes and all(s == ("https://storage.azure.com/.default",) for s in scopes)
    assert {r.headers.get("authorization") for r in blob.requests} == {"Bearer entra-token"}


@pytest.mark.parametrize(("opts", "message"), [
    ({"credentials": "sas"}, "credentials must be 'default'"),
    ({"credentials": "anonymous", "sas_token": SAS}, "not both"),
    ({"region": "westeurope"}, "region"),
])
def test_wrong_options_are_plan_errors(opts: dict[str, str], message: str) -> None:
    with FlowStore(":memory:") as store, pytest.raises(PlanError, match=message):
        import_locations(store, "azure", ["az://c1c/x"], options=opts)


@pytest.mark.parametrize(("location", "opts", "message"), [
    ("az://insights-logs-flowlogflowevent/x", {}, "needs the account_url option"),
    ("az://Insights/x", {"account_url": "https://a.blob.core.windows.net"}, "'Insights' is not a container name"),
    ("az:///x", {"account_url": "https://a.blob.core.windows.net"}, "'' is not a container name"),
    ("az://logs/x", {"account_url": "ftp://a.blob.core.windows.net"}, "is not an https:// URL"),
    ("az://logs/x", {"account_url": "https://a.blob.core.windows.net", "sas_token": SAS, "ca_bundle": "/nonexistent"},
     "ca_bundle '/nonexistent': no such file"),
    ("az://logs/x", {"account_url": "http://127.0.0.1:1/acct"}, "Token credential is only supported with HTTPS"),
])
def test_options_are_checked_before_any_request(location: str, opts: dict[str, str], message: str,
                                                 no_connections: list[Any], identity: list[Any]) -> None:
    with pytest.raises(FlowLogError, match=message):
        read(location, **opts)


def test_files_are_still_read_without_any_container_option() -> None:
    assert read(str(AZURE / "vnet_sample.json"), credentials="anonymous") == (read_local("vnet_sample.json"), [])


# --- end to end ------------------------------------------------------------------------------------------------------


def test_import_locations_loads_a_container_prefix_into_the_flow_store(blob: FakeBlobService,
                                                                      tmp_path: Path) -> None:
    location = f"az://{VNET_CONTAINER}/{FLOWLOG}/"
    keys = "window_start, src, dst, protocol, src_port, dst_port, initiator, action, observer, source"
    totals = (f"SELECT {keys}, sum(packets), sum(bytes), sum(records), min(first_seen), max(last_seen) FROM flows "
              f"GROUP BY ALL ORDER BY ALL")  # one import adds up a flow's records, separate imports keep a row each
    with FlowStore(":memory:") as store, FlowStore(":memory:") as local:
        reports = import_locations(store, "azure", [location], options=options(blob))
        assert [(r.source, r.location, r.records, r.skipped, r.problems) for r in reports] == [
            ("azure", location, len(read_local(*VNET_BLOBS.values())), 0, [])]
        files = []
        for n, name in enumerate(sorted(VNET_BLOBS)):  # the same samples as local files, each its own copy (a
            copy = tmp_path / f"{n}-{VNET_BLOBS[name]}"  # store imports a file once)
            copy.write_bytes((AZURE / VNET_BLOBS[name]).read_bytes())
            files.append(str(copy))
        import_locations(local, "azure", files)
        rows = store.query(totals)
        assert rows == local.query(totals)
        assert len(rows) > 20 and sum(row[-3] for row in rows) == reports[0].records
        assert store.summary()["records"] == reports[0].records and store.summary()["sources"] == {
            "azure": reports[0].records}


def test_import_locations_reports_a_malformed_blob_with_its_lines(blob: FakeBlobService) -> None:
    bad = hour(FLOWLOG, 11, "00224871C205")
    blob.put_blob(VNET_CONTAINER, bad, (AZURE / "vnet_malformed.json").read_bytes())
    with FlowStore(":memory:") as store:
        [report] = import_locations(store, "azure", [f"az://{VNET_CONTAINER}/{FLOWLOG}/y=2026/m=12/d=06/h=11/"],
                                    options=options(blob))
    assert report.records == 3 and report.skipped == 8
    assert [p.location.line for p in report.problems if p.location] == [19, 20, 21, 22, 23, 24, 38, 44]
    assert {p.location.file for p in report.problems if p.location} == {f"az://{VNET_CONTAINER}/{bad}"}


# --- the simulator follows the REST contract the SDK relies on ------------------------------------------------------


def test_fake_answers_ranged_chunked_downloads_and_listing_parameters(tmp_path: Path) -> None:
    with running_fake_blob(tmp_path) as fake:
        data = bytes(range(256)) * 9000  # 2.3 MB: three 1 MiB chunks
        fake.put_blob("logs", "a/big", data, content_type="application/octet-stream")
        fake.put_blob("logs", "a/empty", b"")
        for n in range(7):
            fake.put_blob("logs", f"b/{n}", b"x" * n)
        client = ContainerClient(fake.account_url, "logs", connection_verify=fake.ca_file,
                                 max_single_get_size=1 << 20, max_chunk_get_size=1 << 20)
        with client:
            download = client.download_blob("a/big")
            assert download.size == len(data) and download.properties.blob_type == "BlockBlob"
            assert download.properties.etag == fake.containers["logs"]["a/big"].etag
            assert download.readall() == data
            assert client.download_blob("a/empty").readall() == b""
            pages = client.list_blobs(name_starts_with="b/", results_per_page=3).by_page()
            listed = [[(b.name, b.size) for b in page] for page in pages]
            assert listed == [[("b/0", 0), ("b/1", 1), ("b/2", 2)], [("b/3", 3), ("b/4", 4), ("b/5", 5)],
                              [("b/6", 6)]]
            assert [b.name for b in client.list_blobs()] == ["a/big", "a/empty", *(f"b/{n}" for n in range(7))]
    ranges = [r.headers.get("x-ms-range") for r in fake.of_kind("get")]
    assert ranges == ["bytes=0-1048575", "bytes=1048576-2097151", "bytes=2097152-2303999",
                      "bytes=0-1048575", None]  # the empty blob: 416 for the range, then the whole (empty) blob
    assert [r.query.get("maxresults") for r in fake.of_kind("list")] == ["3", "3", "3", None]
