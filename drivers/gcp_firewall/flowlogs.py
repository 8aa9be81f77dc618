"""GCP flow logs as a flow source (``gcp``): VPC Flow Logs and Firewall Rules Logging entries as exported from Cloud
Logging, read from a local file (plain or gzip; gzip is recognized by its magic bytes, not by the file name).

A file is either newline-delimited JSON, one ``LogEntry`` per line (what a Cloud Logging sink writes to Cloud
Storage), or one JSON array of entries (what ``gcloud logging read --format=json`` prints).  Each entry's record
is its ``jsonPayload``:

* VPC Flow Logs (https://cloud.google.com/vpc/docs/about-flow-logs-records): ``connection`` (``IpConnection``:
  ``src_ip``, ``dest_ip``, ``src_port``, ``dest_port``, ``protocol`` as an IANA number), ``reporter`` (``SRC``,
  ``DEST``, ``SRC_GATEWAY``, ``DEST_GATEWAY``), ``bytes_sent``/``packets_sent`` (source → destination; int64, which
  Cloud Logging's JSON writes as a string), ``start_time``/``end_time`` (RFC 3339: first and last packet observed in
  the aggregation interval), and metadata such as ``src_instance``/``dest_instance`` (``InstanceDetails``:
  ``project_id``, ``region``, ``zone``, ``vm_name``).
* Firewall Rules Logging (https://cloud.google.com/firewall/docs/firewall-rules-logging, record format pages
  https://cloud.google.com/firewall/docs/vpc-log-format and .../firewall-policy-log-format): ``connection``
  (the same ``IpConnection``), ``disposition`` (``ALLOWED``, ``DENIED``, and for firewall policies
  ``INTERCEPTED``), ``rule_details`` (its ``reference`` names the rule: ``rule``), ``instance`` (the VM the rule
  applied to), ``remote_instance``, ...; the record
  has no times of its own, so the entry's ``timestamp`` is used.

How an entry becomes a :class:`FlowRecord` (the choices, with the documentation they rest on):

* VPC Flow Logs: ``start``/``end`` = ``start_time``/``end_time`` in whole epoch seconds (rounded down);
  ``packets``/``bytes`` = ``packets_sent``/``bytes_sent``.  A record is one direction: "about traffic flows"
  (https://cloud.google.com/vpc/docs/about-traffic-flows) shows a request and its reply as two records with
  ``src_ip``/``dest_ip`` swapped, each counting what its source sent.
* ``initiator``: None for VPC Flow Logs — a record is the packets from ``src`` to ``dest``, request or reply alike,
  and no field (no TCP flags) tells which end opened the connection.  Firewall Rules Logging: ``src`` — a record
  is a *connection record* (a rule "generates at most one log entry per connection" from a VM), its ``connection``
  the 5-tuple "of this connection", and in the documented egress deny example
  (https://cloud.google.com/firewall/docs/vpc-firewall-rules-log-examples) VM1 connecting to VM2 on TCP 80 is
  logged as ``src_ip`` VM1 (ephemeral port) → ``dest_ip`` VM2, port 80: the source is the end that connected.
* ``action``: Firewall Rules Logging: ``ALLOWED`` → accept, ``DENIED`` → reject, ``INTERCEPTED`` (sent to
  inspection; the outcome is not in the record) → None.  VPC Flow Logs have no action field, but the "key
  properties" of https://cloud.google.com/vpc/docs/flow-logs say that ingress packets are sampled after the ingress
  firewall rules (a packet they deny is not sampled) and egress packets before the egress firewall rules (a packet
  an egress rule denies can still be sampled).  So a record the destination VM reported (``DEST``) is accept; one
  the source or a gateway reported leaves the action None.
* ``observer``: the reporting VM: ``src_instance.vm_name`` for ``SRC``, ``dest_instance.vm_name`` for ``DEST``
  (``InstanceDetails``, metadata), else that side's address when the metadata was left out; "" for the gateway
  reporters ``SRC_GATEWAY``/``DEST_GATEWAY`` (a VLAN attachment or VPN tunnel reported it; the record's addresses
  are not the gateway's).  Firewall entries: ``instance.vm_name`` (the VM whose rule logged it), else "".

A malformed line or entry (not JSON, no ``connection``, a bad address, a port out of range, ...) is a
:class:`Diagnostic` naming the file and the line (and, in a JSON array, the entry's index); the read goes on.  An
entry that is neither kind of record (another log in the same export) is a warning.  A file that cannot be read, or
that has content but not one JSON entry, raises :class:`FlowLogError` naming it.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from drivers.flowfiles import gunzip, read_bytes, skip_space
from orchestrator.model import Diagnostic, FlowLogError, FlowRecord, Location, Severity, shown

FIREWALL_ACTIONS: dict[str, str | None] = {"ALLOWED": "accept", "DENIED": "reject", "INTERCEPTED": None}
REPORTER_SIDES = {"SRC": "src", "DEST": "dest"}  # VM reporters → the *_instance field of the reporting VM
FLOW_LOG_NAMES = ("%2Fvpc_flows", "/vpc_flows", "%2Ffirewall", "/firewall")  # logName endings of the two logs
_RFC3339 = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})")


class _Bad(ValueError):
    """One entry that cannot be read (the message says why)."""


def rfc3339_seconds(value: Any, what: str) -> int:
    """Whole epoch seconds (rounded down) of an RFC 3339 time stamp such as ``2019-06-14T03:45:37.186193305Z``."""
    match = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise _Bad(f"{what} {shown(value, 60)} is not an RFC 3339 time stamp")
    date, clock, _fraction, zone = match.groups()
    try:
        moment = datetime.fromisoformat(f"{date}T{clock}")
        if zone not in ("Z", "z"):
            sign = 1 if zone[0] == "+" else -1
            offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
            moment -= sign * offset
    except ValueError as exc:
        raise _Bad(f"{what} {shown(value, 60)} is not a valid time ({exc})") from exc
    return int(moment.replace(tzinfo=UTC).timestamp())  # the fraction only rounds down: dropped


def _count(value: Any, what: str, *, default: int | None = None) -> int:
    """A whole number written as a JSON number or, as proto3 JSON writes int64, as a decimal string."""
    if value is None and default is not None:
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise _Bad(f"{what} {shown(value, 60)} is not a whole number")


def _address(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise _Bad(f"{what} is {'missing' if value is None else f'not an address but {shown(value, 60)}'}")
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _connection(payload: Mapping[str, Any]) -> tuple[str, str, int, int, int]:
    connection = payload.get("connection")
    if not isinstance(connection, Mapping):
        raise _Bad("jsonPayload.connection is missing" if connection is None
                   else f"jsonPayload.connection is not an object but {shown(connection, 60)}")
    # ports are set for TCP and UDP only; a protocol without ports has none (0)
    return (_address(connection.get("src_ip"), "connection.src_ip"),
            _address(connection.get("dest_ip"), "connection.dest_ip"),
            _count(connection.get("protocol"), "connection.protocol"),
            _count(connection.get("src_port"), "connection.src_port", default=0),
            _count(connection.get("dest_port"), "connection.dest_port", default=0))


def _name(details: Any, key: str) -> str:
    return _text(details.get(key)) if isinstance(details, Mapping) else ""


def vpc_flow(payload: Mapping[str, Any]) -> FlowRecord:
    """The FlowRecord of one VPC Flow Logs record (an entry's ``jsonPayload``)."""
    src, dst, protocol, src_port, dst_port = _connection(payload)
    reporter = payload.get("reporter")
    side = REPORTER_SIDES.get(reporter) if isinstance(reporter, str) else None
    observer = ""
    if reporter in ("SRC", "DEST"):  # a VM reported it: that VM, by name, else by its address
        observer = _name(payload.get(f"{side}_instance"), "vm_name") or (src if side == "src" else dst)
    return FlowRecord(start=rfc3339_seconds(payload.get("start_time"), "start_time"),
                      end=rfc3339_seconds(payload.get("end_time"), "end_time"),
                      src=src, dst=dst, protocol=protocol, src_port=src_port, dst_port=dst_port,
                      packets=_count(payload.get("packets_sent"), "packets_sent", default=0),
                      bytes=_count(payload.get("bytes_sent"), "bytes_sent", default=0),
                      action="accept" if reporter == "DEST" else None, initiator=None, observer=observer)


def firewall_flow(entry: Mapping[str, Any], payload: Mapping[str, Any]) -> FlowRecord:
    """The FlowRecord of one Firewall Rules Logging record (``payload``, the ``jsonPayload`` of ``entry``)."""
    src, dst, protocol, src_port, dst_port = _connection(payload)
    disposition = payload.get("disposition")
    if not isinstance(disposition, str) or disposition not in FIREWALL_ACTIONS:
        raise _Bad(f"disposition {shown(disposition, 60)} is not one of {', '.join(FIREWALL_ACTIONS)}")
    when = rfc3339_seconds(entry.get("timestamp"), "timestamp")
    return FlowRecord(start=when, end=when, src=src, dst=dst, protocol=protocol, src_port=src_port,
                      dst_port=dst_port, action=FIREWALL_ACTIONS[disposition], initiator="src",
                      observer=_name(payload.get("instance"), "vm_name"),
                      rule=rule_name(_name(payload.get("rule_details"), "reference")))


def rule_name(reference: str) -> str:
    """The firewall rule a ``rule_details.reference`` names: ``network:NET/firewall:NAME`` (VPC firewall rules,
    https://cloud.google.com/firewall/docs/vpc-log-format) is ``NAME`` — unique in its project; any other reference
    (a firewall policy's rule) is kept whole."""
    network, _, firewall = reference.partition("/firewall:")
    return firewall if network.startswith("network:") and firewall else reference


class _Entries:
    """The entries of one file with where each starts (line, and index in a JSON array); bad ones are problems."""

    def __init__(self, location: str, data: bytes, problems: list[Diagnostic]) -> None:
        self.location = location
        self.data = data
        self.problems = problems
        self.good = 0
        self.held: list[Diagnostic] = []  # problems seen before the first good entry: the file may not be JSON

    def problem(self, line: int, message: str, severity: Severity = Severity.ERROR) -> None:
        diagnostic = Diagnostic(message, Location(self.location, line), severity=severity, code="flow-log")
        (self.problems if self.good else self.held).append(diagnostic)

    def _found(self) -> None:
        if not self.good:
            self.problems.extend(self.held)
            self.held.clear()
        self.good += 1

    def __iter__(self) -> Iterator[tuple[int, str, Any]]:
        """(line, label, entry) for each entry that is JSON; label is "" for a line, "[i] " in an array."""
        if self.data.lstrip()[:1] == b"[":
            yield from self._array()
        else:
            yield from self._lines()
        if self.held:  # there was content, and none of it was JSON
            first = self.held[0]
            raise FlowLogError(f"{first.location}: not a JSON log export: {first.message}", self.held)

    def _lines(self) -> Iterator[tuple[int, str, Any]]:
        for number, raw in enumerate(self.data.split(b"\n"), start=1):
            if not raw.strip():
                continue
            try:
                entry = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                self.problem(number, f"not UTF-8 text (byte {exc.start} of the line)")
                continue
            except json.JSONDecodeError as exc:
                self.problem(number, f"not JSON ({exc.msg} at column {exc.colno})")
                continue
            self._found()
            yield number, "", entry

    def _array(self) -> Iterator[tuple[int, str, Any]]:
        try:
            text = self.data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FlowLogError(f"cannot read the flow log {self.location}: not UTF-8 text (byte {exc.start})") from exc
        newlines = [m.start() for m in re.finditer("\n", text)]

        def line(offset: int) -> int:
            return bisect.bisect_left(newlines, offset) + 1

        decoder = json.JSONDecoder()
        index = skip_space(text, text.index("[") + 1)
        if text[index:index + 1] == "]":
            self._found()  # an empty array is an empty export
            return
        number = 0
        while True:
            try:
                entry, end = decoder.raw_decode(text, index)
            except json.JSONDecodeError as exc:
                self.problem(exc.lineno, f"[{number}] not JSON ({exc.msg} at column {exc.colno}); the rest of the "
                                         "array cannot be read")
                return
            self._found()
            yield line(index), f"[{number}] ", entry
            index = skip_space(text, end)
            char = text[index:index + 1]
            if char == "]":
                if text[index + 1:].strip():
                    self.problem(line(index + 1), "text after the end of the JSON array (not read)")
                return
            if char != ",":
                self.problem(line(index), f"[{number}] is followed by {shown(char or 'the end of the file')} "
                                          "where the array needs ',' or ']'; the rest cannot be read")
                return
            index = skip_space(text, index + 1)
            number += 1


class GcpFlowLogSource:
    """GCP VPC Flow Logs and Firewall Rules Logging entries exported from Cloud Logging (newline-delimited JSON,
    or a JSON array), from a local file, plain or gzip."""

    name: ClassVar[str] = "gcp"

    def read(self, location: str, problems: list[Diagnostic]) -> Iterator[FlowRecord]:
        """The flows of ``location``; the file is read now (unreadable: :class:`FlowLogError`), the entries as they
        are iterated, a malformed one becoming a diagnostic in ``problems``."""
        data = gunzip(location, read_bytes(location)).removeprefix(b"\xef\xbb\xbf")  # a byte-order mark: not JSON
        return self._records(_Entries(location, data, problems))

    @staticmethod
    def _records(entries: _Entries) -> Iterator[FlowRecord]:
        for line, label, entry in entries:
            try:
                record = _flow(entry)
            except ValueError as exc:  # _Bad, or FlowRecord's own check (address, port, protocol range)
                entries.problem(line, f"{label}{exc}")
                continue
            if record is None:
                log = _text(entry.get("logName")) if isinstance(entry, Mapping) else ""
                entries.problem(line, f"{label}not a VPC Flow Logs or Firewall Rules Logging entry "
                                      f"(logName {shown(log or None, 120)}); skipped", Severity.WARNING)
                continue
            yield record


def _flow(entry: Any) -> FlowRecord | None:
    """The FlowRecord of one LogEntry; None when the entry is neither kind of flow record."""
    if not isinstance(entry, Mapping):
        raise _Bad(f"not a LogEntry object but {shown(entry, 60)}")
    payload = entry.get("jsonPayload")
    log_name = _text(entry.get("logName"))
    is_flow_log = log_name.endswith(FLOW_LOG_NAMES)
    if not isinstance(payload, Mapping):
        if is_flow_log:
            raise _Bad(f"a {log_name.rsplit('/', 1)[-1]} entry without a jsonPayload object")
        return None
    if "disposition" in payload:
        return firewall_flow(entry, payload)
    if "connection" in payload or is_flow_log:
        return vpc_flow(payload)
    return None
