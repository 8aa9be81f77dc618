"""Azure flow logs as a flow source (``azure``): VNet flow logs and the older NSG flow logs (versions 1 and 2),
read from a local JSON file or from the blobs of a storage container (plain or gzip either way; gzip is recognized
by its magic bytes, not by the name).

Both formats are a JSON object ``{"records": [...]}`` whose records hold comma-separated *flow tuples*:

* VNet flow logs (https://learn.microsoft.com/azure/network-watcher/vnet-flow-logs-overview, "Log format"):
  ``records[].flowRecords.flows[].flowGroups[].flowTuples[]``, 13 fields: time stamp, source IP, destination IP,
  source port, destination port, protocol (IANA number), flow direction (``I``/``O``), flow state (``B`` begin,
  ``C`` continuing, ``E`` end, ``D`` deny), flow encryption (``X``, ``NX``, ``NX_…``), packets and bytes sent
  source → destination, packets and bytes sent destination → source.
* NSG flow logs (https://learn.microsoft.com/azure/network-watcher/nsg-flow-logs-overview, "Log format"):
  ``records[].properties.flows[].flows[].flowTuples[]``; version 1 has 8 fields (time stamp, source IP,
  destination IP, source port, destination port, protocol ``T``/``U``, traffic flow ``I``/``O``, traffic decision
  ``A``/``D``), version 2 adds flow state (``B``/``C``/``E``) and the same four counters.

How a tuple becomes a :class:`FlowRecord` (the choices, with the documentation they rest on):

* ``start`` = ``end`` = the tuple's time stamp: a tuple reports one moment (the counters of ``C``/``E`` tuples are
  "since the last update", whose time the tuple does not carry).  The docs say "UNIX epoch format"; the VNet sample
  record writes milliseconds (``1663146003599``) while the bandwidth example writes seconds (``1493763938``), so a
  value of 10^11 or more is read as milliseconds (10^11 seconds would be the year 5138).
* ``src``/``dst``/ports as written (IPv6 too); the direction field is relative to the NIC/NSG and only checked.
* ``packets``/``bytes``: both directions summed.  One tuple describes the whole conversation (it carries the
  source → destination and the destination → source counters, and the documented bandwidth calculation adds all
  four), so the sum is the traffic of the flow; an empty counter (``B`` tuples: "no statistics") is 0.
* ``action``: NSG logs: the traffic decision (``A`` → accept, ``D`` → reject).  VNet logs have no decision field:
  flow state ``D`` ("Deny, when a flow is denied") is a reject, and so is an encryption status the docs describe as
  dropping the packet (``NX_SW_NOT_READY``, ``NX_NOT_ACCEPTED``, ``NX_NOT_SUPPORTED``); anything else was allowed.
* ``initiator``: the docs do not say in so many words that a tuple's source opened the connection.  They do say
  that state ``B`` is logged "when a flow is created", and a tuple carries both directions' counters, so the
  source of a ``B`` tuple is the end whose packet created the flow: ``src``.  ``C``/``E``/``D`` tuples and version 1
  NSG tuples (no state) leave it None — a flow can be first seen mid-connection (flow timeouts, the stateless
  handling of non-default inbound TCP rules the NSG docs describe), and a deny may hit a late reply.
* ``observer``: where the flow was captured, as ``<resource name>/<MAC>``: the last segment of the record's
  ``targetResourceID`` (VNet; the VNet, subnet or NIC the flow log is on) or ``resourceId`` (NSG; the NSG), and the
  MAC address of the NIC (VNet ``macAddress``: "where the event was captured"; NSG ``flows[].flows[].mac``).  The
  MAC keeps the two NICs that both log one VM-to-VM flow apart (an NSG on a subnet logs it at each end), so the
  store does not add them up as one observation.  Names are kept as Azure writes them (NSG logs upper-case them).

A malformed tuple or record is a :class:`Diagnostic` naming the file, the line, and the record path
(``records[3].flowRecords.flows[0].flowGroups[0].flowTuples[2]``); the read goes on.  A file that cannot be read,
is not JSON, or has no ``records`` list raises :class:`FlowLogError` naming it.

Storage containers: Network Watcher writes flow logs as block blobs of JSON into a container of the storage account
the flow log names (VNet flow logs: ``insights-logs-flowlogflowevent``; NSG flow logs:
``insights-logs-networksecuritygroupflowevent``), one blob per hour and NIC, e.g.
``flowLogResourceID=/SUBSCRIPTIONS/…/FLOWLOGS/{name}/y=2026/m=12/d=06/h=10/m=00/macAddress={MAC}/PT1H.json``
(https://learn.microsoft.com/azure/network-watcher/vnet-flow-logs-overview).  The location
``az://CONTAINER/PREFIX`` reads every blob whose name starts with ``PREFIX`` (all of them without one), in name
order, each through the same parser as a file; a diagnostic names the blob as ``az://CONTAINER/BLOB`` and its line.
The account is the ``account_url`` option (``https://ACCOUNT.blob.core.windows.net``, or a path-style test server
``https://127.0.0.1:PORT/ACCOUNT``), read with the unmodified azure-storage-blob ``ContainerClient``.  The blobs
are listed when :meth:`AzureFlowLogSource.read` is called (a missing container, a refused credential: a one-line
:class:`FlowLogError`) and downloaded one at a time as the records are iterated; a blob that is not a flow log
(not JSON, no ``records``) or that was deleted since the listing is a diagnostic, and the other blobs are read.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

from drivers.azure_nsg.layout import rule_name
from drivers.endpoints import ANONYMOUS_REFUSAL, cleartext_origin, is_loopback_url, refused_at
from drivers.flowfiles import decode, read_bytes, skip_space
from orchestrator.model import Diagnostic, FlowLogError, FlowRecord, Location, Severity, shown

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient

MILLISECONDS_FROM = 10**11  # a time stamp this large is in milliseconds (as seconds it would be the year 5138)
VNET_FIELDS = 13
NSG_FIELDS = {1: 8, 2: 13}  # NSG flow log version → fields in a tuple
NSG_PROTOCOLS = {"T": 6, "U": 17}  # "Valid values are T for TCP and U for UDP"
NSG_DECISIONS = {"A": "accept", "D": "reject"}
DIRECTIONS = frozenset({"I", "O"})
VNET_STATES = frozenset({"B", "C", "E", "D"})
NSG_STATES = frozenset({"B", "C", "E"})
# encryption statuses whose documented meaning is "the packet is dropped"
DROPPED_ENCRYPTION = frozenset({"NX_SW_NOT_READY", "NX_NOT_ACCEPTED", "NX_NOT_SUPPORTED"})
MAX_DEPTH = 64

# --- storage containers
BLOB_SCHEME = "az://"
CREDENTIALS = ("default", "anonymous")
# container names: 3-63 lower-case letters, digits and single hyphens, starting with a letter or digit
# (https://learn.microsoft.com/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata),
# or one of the account's special containers
CONTAINER_NAME = re.compile(r"(?:\$root|\$web|\$logs|[a-z0-9](?:-?[a-z0-9]){2,62})\Z")
# the SDK's retries, as ContainerClient options: up to 3 of an answer that may pass (5xx, a broken read) and one of a
# failed connection, after 1 s, then 3 s, 5 s (the storage SDK's own default waits 15 s, then 18, 24 — and retries a
# refused connection 3 times)
RETRY: dict[str, int] = {"retry_total": 3, "retry_connect": 1, "initial_backoff": 1, "increment_base": 2,
                         "random_jitter_range": 1}
TIMEOUTS: dict[str, float] = {"connection_timeout": 20, "read_timeout": 120}
# what to do about a Blob service error code (https://learn.microsoft.com/rest/api/storageservices/
# blob-service-error-codes, .../common-rest-api-error-codes)
_PERMISSIONS = ("the credential must be allowed to list and read blobs: a SAS with the read and list permissions "
                "(sp=rl), an Entra identity with a role such as Storage Blob Data Reader")
_HINTS = {
    "ResourceNotFound": "the container does not exist, or it is private and the request carried no credential",
    "AuthenticationFailed": "the SAS token or credential was refused: wrong, expired, or for another account",
    "InvalidAuthenticationInfo": "the SAS token or credential was refused: wrong, expired, or for another account",
    "NoAuthenticationInformation": "the container is private: pass sas_token=… or credentials=default",
    "PublicAccessNotPermitted": "the account allows no anonymous access: pass sas_token=… or credentials=default",
    "AuthorizationFailure": _PERMISSIONS,
    "AuthorizationPermissionMismatch": _PERMISSIONS,
    "AuthorizationResourceTypeMismatch": _PERMISSIONS,
}


class _Bad(ValueError):
    """One tuple or record that cannot be read (the message says why)."""


# --- JSON with positions -----------------------------------------------------------------------------------------
# The standard json module does not say where a value was; a diagnostic must name the line of the tuple it is about.
# This parser builds the same values (dicts, lists, str, int, float, bool, None) — objects and arrays walked here,
# everything else read by json's own scanner — with each object and array remembering where its members start.


class _Object(dict[str, Any]):
    """A JSON object and, per key, the offset of its value."""

    __slots__ = ("offsets",)

    def __init__(self) -> None:
        super().__init__()
        self.offsets: dict[str, int] = {}


class _Array(list[Any]):
    """A JSON array and the offset of each element."""

    __slots__ = ("offsets",)

    def __init__(self) -> None:
        super().__init__()
        self.offsets: list[int] = []


_SCALARS = json.JSONDecoder()  # strings, numbers, true/false/null: the standard (C) scanner, from a given offset


def parse_json(text: str) -> Any:
    """The JSON document ``text``, objects and arrays carrying the offsets of their members.

    Raises :class:`json.JSONDecodeError` (with line and column) where the text is not JSON."""
    value, end = _value(text, skip_space(text, 0), 0)
    end = skip_space(text, end)
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return value


def _value(text: str, index: int, depth: int) -> tuple[Any, int]:
    char = text[index:index + 1]
    if char in ("{", "["):
        if depth >= MAX_DEPTH:
            raise json.JSONDecodeError(f"nested deeper than {MAX_DEPTH} levels", text, index)
        return _object(text, index, depth + 1) if char == "{" else _array(text, index, depth + 1)
    return _SCALARS.raw_decode(text, index)


def _object(text: str, index: int, depth: int) -> tuple[_Object, int]:
    result = _Object()
    index = skip_space(text, index + 1)
    if text[index:index + 1] == "}":
        return result, index + 1
    while True:
        if text[index:index + 1] != '"':
            raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, index)
        key, index = _SCALARS.raw_decode(text, index)
        index = skip_space(text, index)
        if text[index:index + 1] != ":":
            raise json.JSONDecodeError("Expecting ':' delimiter", text, index)
        index = skip_space(text, index + 1)
        result.offsets[key] = index
        result[key], index = _value(text, index, depth)
        index = skip_space(text, index)
        char = text[index:index + 1]
        if char == "}":
            return result, index + 1
        if char != ",":
            raise json.JSONDecodeError("Expecting ',' delimiter", text, index)
        index = skip_space(text, index + 1)


def _array(text: str, index: int, depth: int) -> tuple[_Array, int]:
    result = _Array()
    index = skip_space(text, index + 1)
    if text[index:index + 1] == "]":
        return result, index + 1
    while True:
        result.offsets.append(index)
        item, index = _value(text, index, depth)
        result.append(item)
        index = skip_space(text, index)
        char = text[index:index + 1]
        if char == "]":
            return result, index + 1
        if char != ",":
            raise json.JSONDecodeError("Expecting ',' delimiter", text, index)
        index = skip_space(text, index + 1)


# --- reading -----------------------------------------------------------------------------------------------------


def load_text(location: str) -> str:
    """The text of a local file, gunzipped when it is gzip."""
    return decode(location, read_bytes(location))


class _File:
    """One file being read: where its lines start, and the problems found in it."""

    def __init__(self, location: str, text: str, problems: list[Diagnostic]) -> None:
        self.location = location
        self.text = text
        self.problems = problems
        self._newlines: list[int] | None = None

    def line(self, offset: int) -> int:
        """The 1-based line of a text offset."""
        if self._newlines is None:  # computed on the first problem only
            self._newlines = [m.start() for m in re.finditer("\n", self.text)]
        return bisect.bisect_left(self._newlines, offset) + 1

    def problem(self, path: str, offset: int, message: str) -> None:
        self.problems.append(Diagnostic(f"{path}: {message}", Location(self.location, self.line(offset)),
                                        code="flow-log"))

    def children(self, parent: Any, key: str, path: str, offset: int) -> Iterator[tuple[str, int, Any]]:
        """The elements of the array ``parent[key]``, each with its path and offset; anything else is a problem."""
        where = f"{path}.{key}" if path else key
        value = parent.get(key) if isinstance(parent, Mapping) else None
        if not isinstance(value, _Array):
            found = "missing" if value is None else f"not a list but {shown(value, 60)}"
            self.problem(where, parent.offsets.get(key, offset) if isinstance(parent, _Object) else offset,
                         f"is {found}")
            return
        for index, (item, start) in enumerate(zip(value, value.offsets, strict=True)):
            yield f"{where}[{index}]", start, item


def _last_segment(resource_id: Any) -> str:
    return resource_id.rstrip("/").rsplit("/", 1)[-1] if isinstance(resource_id, str) else ""


def _field(parent: Any, key: str) -> Any:
    return parent.get(key) if isinstance(parent, Mapping) else None


def _observer(resource_id: Any, mac: Any) -> str:
    return "/".join(part for part in (_last_segment(resource_id), mac if isinstance(mac, str) else "") if part)


def _number(text: str, what: str, *, empty_is_zero: bool = False) -> int:
    if text == "" and empty_is_zero:
        return 0
    if not (text.isascii() and text.isdigit()):
        raise _Bad(f"{what} {text!r} is not a whole number")
    return int(text)


def _seconds(text: str) -> int:
    value = _number(text, "time stamp")
    return value // 1000 if value >= MILLISECONDS_FROM else value


def _one_of(text: str, allowed: frozenset[str] | Mapping[str, Any], what: str) -> str:
    if text not in allowed:
        raise _Bad(f"{what} {text!r} is not one of {', '.join(sorted(allowed))}")
    return text


def _record(fields: list[str], *, protocol: int, action: str, initiator: Literal["src"] | None, observer: str,
            counters: list[str] | None, rule: str = "") -> FlowRecord:
    """The FlowRecord of a split tuple (time stamp, addresses, ports at fields 0-4); FlowRecord checks the rest."""
    packets = bytes_ = 0
    if counters is not None:
        packets_sent, bytes_sent, packets_received, bytes_received = (
            _number(c, what, empty_is_zero=True) for c, what in zip(
                counters, ("packets sent", "bytes sent", "packets received", "bytes received"), strict=True))
        packets, bytes_ = packets_sent + packets_received, bytes_sent + bytes_received
    when = _seconds(fields[0])
    return FlowRecord(start=when, end=when, src=fields[1], dst=fields[2], protocol=protocol,
                      src_port=_number(fields[3], "source port"), dst_port=_number(fields[4], "destination port"),
                      packets=packets, bytes=bytes_, action=action, initiator=initiator, observer=observer, rule=rule)


def vnet_tuple(text: str, observer: str, rule: str = "") -> FlowRecord:
    """One VNet flow log tuple (13 comma-separated fields)."""
    fields = text.split(",")
    if len(fields) != VNET_FIELDS:
        raise _Bad(f"{len(fields)} fields where a VNet flow log tuple has {VNET_FIELDS}")
    _one_of(fields[6], DIRECTIONS, "flow direction")
    state = _one_of(fields[7], VNET_STATES, "flow state")
    encryption = fields[8]
    if not encryption:
        raise _Bad("the flow encryption field is empty")
    protocol = _number(fields[5], "protocol")
    rejected = state == "D" or encryption in DROPPED_ENCRYPTION
    return _record(fields, protocol=protocol, action="reject" if rejected else "accept",
                   initiator="src" if state == "B" else None, observer=observer, counters=fields[9:13], rule=rule)


def nsg_tuple(text: str, version: Any, observer: str, rule: str = "") -> FlowRecord:
    """One NSG flow log tuple: 8 fields (version 1) or 13 (version 2); an unknown version is told by the count."""
    fields = text.split(",")
    expected = NSG_FIELDS.get(version) if isinstance(version, int) and not isinstance(version, bool) else None
    if expected is not None and len(fields) != expected:
        raise _Bad(f"{len(fields)} fields where an NSG flow log version {version} tuple has {expected}")
    if len(fields) not in NSG_FIELDS.values():
        raise _Bad(f"{len(fields)} fields where an NSG flow log tuple has 8 (version 1) or 13 (version 2)")
    protocol = NSG_PROTOCOLS[_one_of(fields[5], NSG_PROTOCOLS, "protocol")]
    _one_of(fields[6], DIRECTIONS, "traffic flow")
    action = NSG_DECISIONS[_one_of(fields[7], NSG_DECISIONS, "traffic decision")]
    if len(fields) == NSG_FIELDS[1]:
        return _record(fields, protocol=protocol, action=action, initiator=None, observer=observer, counters=None,
                       rule=rule)
    state = _one_of(fields[8], NSG_STATES, "flow state")
    return _record(fields, protocol=protocol, action=action, initiator="src" if state == "B" else None,
                   observer=observer, counters=fields[9:13], rule=rule)


class AzureFlowLogSource:
    """Azure VNet flow logs and NSG flow logs (versions 1 and 2) from a local JSON file or the blobs under a prefix
    of a storage container (``az://CONTAINER/PREFIX``), plain or gzip.

    Options for containers (strings, as the CLI's ``-o key=value`` passes them): ``account_url`` (the Blob service
    endpoint of the storage account); ``credentials``: ``default`` (``sas_token`` when given, else azure-identity's
    DefaultAzureCredential) or ``anonymous`` (no credential: public containers of a test server on loopback only);
    ``sas_token`` (a SAS allowing read and list on the container); ``ca_bundle`` (a PEM file of CAs to trust for
    TLS)."""

    name: ClassVar[str] = "azure"

    def __init__(self, *, account_url: str | None = None, credentials: str = "default", sas_token: str | None = None,
                 ca_bundle: str | None = None) -> None:
        if credentials not in CREDENTIALS:
            raise ValueError(f"credentials must be 'default' (sas_token when given, else azure-identity's "
                             f"DefaultAzureCredential) or 'anonymous' (no credential; loopback test servers only), "
                             f"not {credentials!r}")
        if credentials == "anonymous" and sas_token:
            raise ValueError("credentials 'anonymous' sends no credential: pass sas_token or credentials=anonymous, "
                             "not both")
        self.account_url = account_url.rstrip("/") if account_url else None
        self.credentials, self.sas_token, self.ca_bundle = credentials, sas_token or None, ca_bundle or None

    def read(self, location: str, problems: list[Diagnostic]) -> Iterator[FlowRecord]:
        """The flows of ``location``; a file is read and parsed now (unreadable: :class:`FlowLogError`), the
        records are made as they are iterated, malformed ones becoming diagnostics in ``problems``.  For
        ``az://CONTAINER/PREFIX`` the blobs are listed now and each is downloaded and parsed as the records reach
        it (a blob that is not a flow log is a diagnostic; a download that fails raises :class:`FlowLogError`)."""
        if location.startswith(BLOB_SCHEME):
            return self._read_container(location, problems)
        return self._parse(location, load_text(location), problems)

    def _parse(self, location: str, text: str, problems: list[Diagnostic]) -> Iterator[FlowRecord]:
        try:
            document = parse_json(text)
        except json.JSONDecodeError as exc:
            where = Location(location, exc.lineno, exc.colno)
            raise FlowLogError(f"{where}: not a JSON document: {exc.msg}",
                               [Diagnostic(f"not a JSON document: {exc.msg}", where, code="flow-log")]) from exc
        if not isinstance(document, _Object) or not isinstance(document.get("records"), _Array):
            raise FlowLogError(f"{location}: not an Azure flow log (no top-level \"records\" list)")
        return self._records(_File(location, text, problems), document)

    # ------------------------------------------------------------------ storage containers

    def _read_container(self, location: str, problems: list[Diagnostic]) -> Iterator[FlowRecord]:
        container, _, prefix = location[len(BLOB_SCHEME):].partition("/")
        if not CONTAINER_NAME.match(container):
            raise FlowLogError(f"{location}: {container!r} is not a container name (3-63 lower-case letters, digits "
                               f"and single hyphens): write az://CONTAINER/PREFIX")
        client = self._container_client(location, container)
        what = f"cannot list {location} (container {container!r} of {self.account_url})"
        try:
            names = [blob.name for blob in client.list_blobs(name_starts_with=prefix or None)]
        except AzureError as exc:
            client.close()
            raise self._failure(exc, what) from exc
        if not names:
            problems.append(Diagnostic(self._redact(f"no blobs under {location} in {self.account_url}"),
                                       Location(location), severity=Severity.WARNING, code="flow-log"))
        return self._blobs(client, container, names, problems)

    def _blobs(self, client: ContainerClient, container: str, names: list[str],
               problems: list[Diagnostic]) -> Iterator[FlowRecord]:
        """The records of each blob in turn (downloaded as the records reach it)."""
        try:
            for name in names:
                where = f"{BLOB_SCHEME}{container}/{name}"
                try:
                    data = client.download_blob(name).readall()
                except AzureError as exc:
                    if not (isinstance(exc, ResourceNotFoundError) and _error_code(exc) == "BlobNotFound"):
                        raise self._failure(exc, f"cannot read {where} (container {container!r} of "
                                                 f"{self.account_url})") from exc
                    problems.append(Diagnostic("not read: the blob was deleted after it was listed (BlobNotFound)",
                                               Location(where), code="flow-log"))
                    continue
                try:
                    records = self._parse(where, decode(where, data), problems)
                except FlowLogError as exc:  # this blob is not a flow log: say so, read the others
                    message = exc.message.removeprefix(f"cannot read the flow log {where}: ")
                    problems.extend(exc.diagnostics or [
                        Diagnostic(message.removeprefix(f"{where}: "), Location(where), code="flow-log")])
                    continue
                yield from records
        finally:
            client.close()

    def _container_client(self, location: str, container: str) -> ContainerClient:
        """The SDK client of ``container``, every option checked first (refused: :class:`FlowLogError`, before any
        request)."""
        url = self.account_url
        if not url:
            raise FlowLogError(f"{location}: reading a storage container needs the account_url option, e.g. "
                               f"-o account_url=https://ACCOUNT.blob.core.windows.net")
        if not url.lower().startswith(("https://", "http://")):
            raise FlowLogError(f"account_url {url!r} is not an https:// URL (https://ACCOUNT.blob.core.windows.net)")
        origin = cleartext_origin(url)
        if origin is not None:
            raise FlowLogError(f"account_url {origin} is plain HTTP to a host that is not loopback: the SAS or token "
                               f"would cross the network in clear text — use https://")
        if self.ca_bundle is not None and not Path(self.ca_bundle).is_file():
            raise FlowLogError(f"ca_bundle {self.ca_bundle!r}: no such file")
        credential = self._credential(url)
        from azure.storage.blob import ContainerClient  # noqa: PLC0415  (only when reading a container)

        options: dict[str, Any] = {**RETRY, **TIMEOUTS}
        if self.ca_bundle is not None:
            options["connection_verify"] = self.ca_bundle
        try:
            return ContainerClient(url, container, credential=credential, **options)
        except ValueError as exc:  # e.g. "Token credential is only supported with HTTPS."
            raise FlowLogError(f"account_url {url!r}: {exc}") from exc

    def _credential(self, url: str) -> Any:
        if self.credentials == "anonymous":
            if not is_loopback_url(url):
                raise FlowLogError(ANONYMOUS_REFUSAL.format(setting="account_url", url=url))
            return None
        if self.sas_token:
            from azure.core.credentials import AzureSasCredential  # noqa: PLC0415

            return AzureSasCredential(self.sas_token.lstrip("?"))
        try:
            from azure.identity import DefaultAzureCredential  # noqa: PLC0415  (optional dependency)
        except ImportError as exc:
            raise FlowLogError("credentials=default needs azure-identity for DefaultAzureCredential "
                               "(pip install azure-identity: environment variables, managed identity, Azure CLI "
                               "login …), or pass sas_token=… (a SAS with read and list permission on the "
                               "container)") from exc
        return DefaultAzureCredential()

    def _failure(self, exc: AzureError, what: str) -> FlowLogError:
        """One SDK error as a one-line :class:`FlowLogError` (never the SAS signature)."""
        refused = refused_at(exc, self.account_url or "")
        if refused is not None:
            reason = refused
        elif isinstance(exc, HttpResponseError) and exc.status_code is not None:
            code = _error_code(exc)
            reason = f"HTTP {exc.status_code} {code or exc.reason or ''}: {_first_line(exc.message)}"
            hint = _HINTS.get(code or "")
            if hint:
                reason += f" ({hint})"
        else:
            reason = f"{type(exc).__name__}: {_first_line(exc.message or str(exc))}"
            if isinstance(exc, ClientAuthenticationError):  # e.g. DefaultAzureCredential found no identity
                reason += " (sign in for DefaultAzureCredential, or pass sas_token=…)"
        return FlowLogError(self._redact(f"{what}: {reason}"))

    def _redact(self, text: str) -> str:
        """``text`` without the signature of a SAS (the part that grants access)."""
        text = re.sub(r"(?i)\bsig=[^&\s'\"<>)]+", "sig=REDACTED", text)
        return text.replace(self.sas_token.lstrip("?"), "REDACTED") if self.sas_token else text

    def _records(self, file: _File, document: _Object) -> Iterator[FlowRecord]:
        for path, offset, record in file.children(document, "records", "", 0):
            if not isinstance(record, _Object):
                file.problem(path, offset, f"is not an object but {shown(record, 60)}")
            elif "flowRecords" in record:
                yield from self._vnet(file, record, path)
            elif "properties" in record:
                yield from self._nsg(file, record, path)
            else:
                category = shown(record.get("category"), 60)
                file.problem(path, offset, "has neither flowRecords (VNet flow log) nor properties (NSG flow log); "
                                           f"category {category}")

    def _vnet(self, file: _File, record: _Object, path: str) -> Iterator[FlowRecord]:
        make = partial(vnet_tuple, observer=_observer(record.get("targetResourceID"), record.get("macAddress")))
        flow_records = record["flowRecords"]
        for flow_path, flow_at, flow in file.children(flow_records, "flows", f"{path}.flowRecords",
                                                      record.offsets["flowRecords"]):
            for group_path, group_at, group in file.children(flow, "flowGroups", flow_path, flow_at):
                named = partial(make, rule=rule_name(_field(flow, "aclID"), _field(group, "rule")))
                for tuple_path, tuple_at, text in file.children(group, "flowTuples", group_path, group_at):
                    yield from self._tuple(file, tuple_path, tuple_at, text, named)

    def _nsg(self, file: _File, record: _Object, path: str) -> Iterator[FlowRecord]:
        resource = next((record[k] for k in record if k.lower() == "resourceid"), None)  # "resourceid"/"resourceId"
        properties = record["properties"]
        version = properties.get("Version") if isinstance(properties, Mapping) else None
        for rule_path, rule_at, rule in file.children(properties, "flows", f"{path}.properties",
                                                      record.offsets["properties"]):
            for nic_path, nic_at, nic in file.children(rule, "flows", rule_path, rule_at):
                make = partial(nsg_tuple, version=version,
                               observer=_observer(resource, nic.get("mac") if isinstance(nic, Mapping) else None),
                               rule=rule_name(resource, _field(rule, "rule")))
                for tuple_path, tuple_at, text in file.children(nic, "flowTuples", nic_path, nic_at):
                    yield from self._tuple(file, tuple_path, tuple_at, text, make)

    @staticmethod
    def _tuple(file: _File, path: str, offset: int, text: Any,
               make: Callable[[str], FlowRecord]) -> Iterator[FlowRecord]:
        if not isinstance(text, str):
            file.problem(path, offset, f"is not a text tuple but {shown(text, 60)}")
            return
        try:
            yield make(text)
        except ValueError as exc:  # _Bad, or FlowRecord's own check (address, port, protocol range)
            file.problem(path, offset, f"{exc} in tuple {shown(text)}")


def _error_code(exc: AzureError) -> str | None:
    """The Blob service error code the SDK read from an answer (``x-ms-error-code`` / the XML body)."""
    code = getattr(exc, "error_code", None)
    return None if code is None else str(getattr(code, "value", code))


def _first_line(text: str | None, limit: int = 300) -> str:
    """The first non-empty line of an SDK message (they go on with RequestId, Time, ErrorCode and the body)."""
    line = next((part.strip() for part in (text or "").splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[:limit - 1] + "…"
