"""NetFlow v5, NetFlow v9 (RFC 3954) and IPFIX (RFC 7011): a pure decoder, a UDP collector, and a reader for
the CSV that ``nfdump -o csv`` prints from files an ``nfcapd`` collector wrote.

Decoding choices (the module's contract):

* **Templates** are kept per (exporter address, observation domain / source id, template id).  A data set that
  arrives before its template is *buffered* (bounded: ``max_pending`` sets in all, 256 by default; the oldest is
  dropped with a warning when full) and decoded as soon as the template arrives — exporters send templates
  periodically, and a collector started mid-stream would otherwise lose the first minutes of every exporter.
  :meth:`NetflowDecoder.flush` reports the sets still waiting (the collector calls it when it stops).
  Options templates (v9 flowset 1, IPFIX set 3) are learned so that their data is recognised and skipped; the one
  option value read is IPFIX ``systemInitTimeMilliseconds`` (160), needed to turn sysUpTime stamps into epoch.
* **Time**: ``flowStart/EndMilliseconds`` (152/153), ``…Seconds`` (150/151), ``…Microseconds`` /
  ``…Nanoseconds`` (154-157, NTP format) are absolute.  ``flowStart/EndSysUpTime`` (22/21) are milliseconds
  since the exporter booted: in v5/v9 the header's sysUpTime and unix seconds anchor them (the 32-bit uptime may
  wrap); IPFIX has no uptime in its header, so they need ``systemInitTimeMilliseconds`` (in the record or in
  options data of the same domain) — without it the export time stands in, with one warning per domain.  A
  missing end is start + ``flowDurationMilliseconds`` (161) or the start; a record without any time gets the
  packet's export time.  :class:`FlowRecord` keeps whole epoch seconds (rounded down); an end before the start
  is raised to the start.
* **Initiator**: ``tcpControlBits`` (6) is the union of the flags of *all* packets of a flow, so a normal client
  flow carries SYN *and* ACK just as the server's does.  Hence only SYN without ACK means ``src`` opened (the
  client's half, or an unanswered attempt); SYN+ACK means ``dst`` opened only for a one-packet flow (the lone
  SYN-ACK); anything else is None.  An explicit ``biflowDirection`` (239: 1 initiator, 2 reverse initiator)
  wins.  Flows of other protocols have no initiator.
* **Ports** are kept for TCP, UDP and SCTP only and are 0 otherwise: ICMP type/code (``icmpTypeCodeIPv4`` 32,
  ``icmpTypeCodeIPv6`` 139, or the type*256+code some exporters put into the destination port) is not kept.
* **Counters**: ``packetDeltaCount`` (2) / ``octetDeltaCount`` (1), else the total counts (86/85); sampling
  rates are not applied (a record says what the exporter counted).
* A record without source/destination address or protocol (e.g. a layer-2 template) is skipped, with one
  warning per template.  Fields of other information elements and all enterprise-specific fields are skipped by
  their length.
* ``observer`` is the exporter address, followed by ``#domain`` when the observation domain (IPFIX) or source id
  (v9) is not 0.
* A truncated or inconsistent packet never raises: the records decoded before the damage are kept and a
  :class:`Diagnostic` (location: the exporter; message: what and at which byte offset) goes to ``problems``.
"""

from __future__ import annotations

import contextlib
import csv
import ipaddress
import math
import os
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import ClassVar, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from orchestrator.model import (
    PORT_PROTOCOLS,
    PROTOCOL_NUMBERS,
    Diagnostic,
    FlowRecord,
    Location,
    Severity,
)

__all__ = ["NetflowDecoder", "NfdumpCsvSource", "collect", "tcp_initiator"]

InitiatorSide = Literal["src", "dst"]

# -- information elements (RFC 7012 / IANA "IPFIX Information Elements"; v9 field types 1-127 are the same) --
IE_OCTET_DELTA: Final = 1
IE_PACKET_DELTA: Final = 2
IE_PROTOCOL: Final = 4
IE_TCP_FLAGS: Final = 6
IE_SRC_PORT: Final = 7
IE_SRC_V4: Final = 8
IE_DST_PORT: Final = 11
IE_DST_V4: Final = 12
IE_END_UPTIME: Final = 21
IE_START_UPTIME: Final = 22
IE_SRC_V6: Final = 27
IE_DST_V6: Final = 28
IE_OCTET_TOTAL: Final = 85
IE_PACKET_TOTAL: Final = 86
IE_START_SECONDS: Final = 150
IE_END_SECONDS: Final = 151
IE_START_MILLIS: Final = 152
IE_END_MILLIS: Final = 153
IE_START_MICROS: Final = 154
IE_END_MICROS: Final = 155
IE_START_NANOS: Final = 156
IE_END_NANOS: Final = 157
IE_SYSTEM_INIT_MILLIS: Final = 160
IE_DURATION_MILLIS: Final = 161
IE_BIFLOW_DIRECTION: Final = 239

WANTED: Final = frozenset({
    IE_OCTET_DELTA, IE_PACKET_DELTA, IE_PROTOCOL, IE_TCP_FLAGS, IE_SRC_PORT, IE_SRC_V4, IE_DST_PORT, IE_DST_V4,
    IE_END_UPTIME, IE_START_UPTIME, IE_SRC_V6, IE_DST_V6, IE_OCTET_TOTAL, IE_PACKET_TOTAL, IE_START_SECONDS,
    IE_END_SECONDS, IE_START_MILLIS, IE_END_MILLIS, IE_START_MICROS, IE_END_MICROS, IE_START_NANOS, IE_END_NANOS,
    IE_SYSTEM_INIT_MILLIS, IE_DURATION_MILLIS, IE_BIFLOW_DIRECTION,
})

VARIABLE_LENGTH: Final = 65535  # IPFIX field length meaning "the record says" (RFC 7011 §7)
ENTERPRISE_BIT: Final = 0x8000
NTP_EPOCH_OFFSET: Final = 2_208_988_800  # seconds from 1900-01-01 (NTP) to 1970-01-01
TCP_SYN: Final = 0x02
TCP_ACK: Final = 0x10
UPTIME_WRAP: Final = 1 << 32  # sysUpTime is a 32-bit millisecond counter (wraps after ~49.7 days)

V5_HEADER: Final = struct.Struct("!HHIIIIBBH")  # version count sysUptime unix_secs unix_nsecs seq engine ×2 sampling
V5_RECORD: Final = struct.Struct("!4s4s4sHHIIIIHHxBBBHHBBxx")  # RFC-less but fixed: Cisco's 48-byte v5 record
V9_HEADER: Final = struct.Struct("!HHIIII")  # version count sysUptime unix_secs sequence source_id
IPFIX_HEADER: Final = struct.Struct("!HHIII")  # version length export_time sequence observation_domain
SET_HEADER: Final = struct.Struct("!HH")  # set / flowset id, length (including this header)

V9_TEMPLATE_SET: Final = 0
V9_OPTIONS_SET: Final = 1
IPFIX_TEMPLATE_SET: Final = 2
IPFIX_OPTIONS_SET: Final = 3
FIRST_DATA_SET: Final = 256


# --------------------------------------------------------------------------------------------------- decoder --


@dataclass(frozen=True, slots=True)
class _Field:
    ie: int
    length: int  # VARIABLE_LENGTH: variable (IPFIX only)
    enterprise: int = 0


@dataclass(frozen=True, slots=True)
class _Template:
    fields: tuple[_Field, ...]
    options: bool
    min_length: int  # the shortest record (a variable-length field counts its 1-byte length prefix)

    @classmethod
    def of(cls, fields: tuple[_Field, ...], *, options: bool) -> _Template:
        return cls(fields, options, sum(1 if f.length == VARIABLE_LENGTH else f.length for f in fields))


@dataclass(frozen=True, slots=True)
class _Packet:
    """What a data set needs from the packet it came in: who sent it, and the header's clocks."""

    version: int
    exporter: str
    domain: int
    export_ms: int  # the header's unix time, in milliseconds
    uptime_ms: int | None  # v5 / v9 header sysUpTime; None for IPFIX

    @property
    def observer(self) -> str:
        return self.exporter if self.domain == 0 else f"{self.exporter}#{self.domain}"

    @property
    def label(self) -> str:
        return "IPFIX" if self.version == 10 else f"NetFlow v{self.version}"


class _Damaged(Exception):
    """A set or record runs past its end; carries the byte offset (in the datagram) where decoding stopped."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


_TemplateKey = tuple[str, int, int]  # exporter, domain, template id
_DomainKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class _PendingSet:
    key: _TemplateKey
    packet: _Packet
    body: bytes
    offset: int  # of body in its datagram, for diagnostics


def _problem(problems: list[Diagnostic], exporter: str, message: str, offset: int | None = None, *,
             severity: Severity = Severity.ERROR, code: str = "netflow") -> None:
    where = f" at byte {offset}" if offset is not None else ""
    problems.append(Diagnostic(f"{message}{where}", Location(exporter), severity, code))


def _uint(data: bytes) -> int:
    return int.from_bytes(data, "big")


def _ntp_seconds(data: bytes) -> float:
    """dateTimeMicroseconds / dateTimeNanoseconds (RFC 7011 §6.1.9-10): NTP seconds and a binary fraction."""
    value = _uint(data)
    return (value >> 32) - NTP_EPOCH_OFFSET + (value & 0xFFFFFFFF) / UPTIME_WRAP


def _since_uptime(export_ms: int, uptime_ms: int, stamp_ms: int) -> float:
    """Epoch seconds of a sysUpTime stamp, anchored by a header's (unix time, sysUpTime) pair; a stamp a little
    after the header's uptime (clock skew) stays a little after, a wrapped counter is unwrapped."""
    ago = (uptime_ms - stamp_ms) % UPTIME_WRAP
    if ago >= UPTIME_WRAP // 2:
        ago -= UPTIME_WRAP
    return (export_ms - ago) / 1000


def tcp_initiator(flags: int | None, packets: int) -> InitiatorSide | None:
    """Which end opened a TCP flow, from the union of its packets' flags (see the module docstring)."""
    if flags is None:
        return None
    if flags & TCP_SYN and not flags & TCP_ACK:
        return "src"
    if flags & TCP_SYN and flags & TCP_ACK and packets == 1:
        return "dst"
    return None


class NetflowDecoder:
    """Decodes NetFlow v5 / v9 and IPFIX datagrams into :class:`FlowRecord`\\ s; keeps the templates (and the data
    waiting for one) between datagrams.  Not thread-safe: one decoder per receiving thread."""

    def __init__(self, *, max_pending: int = 256, max_templates: int = 65536) -> None:
        self.max_pending = max_pending
        self.max_templates = max_templates
        self._templates: dict[_TemplateKey, _Template] = {}
        self._system_init_ms: dict[_DomainKey, int] = {}
        self._pending: deque[_PendingSet] = deque()
        self._warned: set[tuple[str, object]] = set()

    # -- public ------------------------------------------------------------------------------------------

    def decode(self, datagram: bytes, exporter: str, problems: list[Diagnostic]) -> list[FlowRecord]:
        """The flow records in one datagram from ``exporter``; anything malformed is a Diagnostic in
        ``problems``, never an exception.  Records buffered for a template this datagram brings come back too."""
        out: list[FlowRecord] = []
        try:
            if len(datagram) < 2:
                _problem(problems, exporter, f"a {len(datagram)}-byte datagram is no NetFlow/IPFIX packet", 0)
                return out
            version = int.from_bytes(datagram[:2], "big")
            if version == 5:
                self._decode_v5(datagram, exporter, out, problems)
            elif version == 9:
                self._decode_v9(datagram, exporter, out, problems)
            elif version == 10:
                self._decode_ipfix(datagram, exporter, out, problems)
            else:
                _problem(problems, exporter, f"version {version} is not NetFlow v5, v9 or IPFIX (10)", 0,
                         code="netflow-version")
        except Exception as exc:  # a decoder bug must not stop a collector: report it like bad input
            _problem(problems, exporter, f"undecodable datagram ({type(exc).__name__}: {exc})")
        return out

    def flush(self, problems: list[Diagnostic]) -> None:
        """Drops the data sets still waiting for their template, one warning per (exporter, domain, template)."""
        counts: dict[_TemplateKey, int] = {}
        for item in self._pending:
            counts[item.key] = counts.get(item.key, 0) + 1
        self._pending.clear()
        for (exporter, domain, template_id), count in counts.items():
            _problem(problems, exporter, f"{count} data set(s) for template {template_id} (domain {domain}) never "
                     "got their template and were dropped", severity=Severity.WARNING, code="netflow-template")

    @property
    def pending(self) -> int:
        """How many data sets wait for their template."""
        return len(self._pending)

    # -- NetFlow v5 -------------------------------------------------------------------------------------

    def _decode_v5(self, data: bytes, exporter: str, out: list[FlowRecord], problems: list[Diagnostic]) -> None:
        if len(data) < V5_HEADER.size:
            _problem(problems, exporter, f"NetFlow v5 header truncated ({len(data)} of {V5_HEADER.size} bytes)",
                     len(data))
            return
        _, count, uptime, secs, nsecs, _, _, _, _ = V5_HEADER.unpack_from(data)
        packet = _Packet(5, exporter, 0, secs * 1000 + nsecs // 1_000_000, uptime)
        for index in range(count):
            offset = V5_HEADER.size + index * V5_RECORD.size
            if offset + V5_RECORD.size > len(data):
                _problem(problems, exporter, f"NetFlow v5 packet truncated: header announces {count} records, "
                         f"record {index + 1} is cut off", offset)
                return
            (src, dst, _, _, _, packets, octets, first, last, sport, dport, flags, protocol, *_) = \
                V5_RECORD.unpack_from(data, offset)
            values: dict[int, bytes | int] = {
                IE_SRC_V4: src, IE_DST_V4: dst, IE_PACKET_DELTA: packets, IE_OCTET_DELTA: octets,
                IE_START_UPTIME: first, IE_END_UPTIME: last, IE_SRC_PORT: sport, IE_DST_PORT: dport,
                IE_TCP_FLAGS: flags, IE_PROTOCOL: protocol}
            self._record(values, packet, offset, out, problems)

    # -- NetFlow v9 -------------------------------------------------------------------------------------

    def _decode_v9(self, data: bytes, exporter: str, out: list[FlowRecord], problems: list[Diagnostic]) -> None:
        if len(data) < V9_HEADER.size:
            _problem(problems, exporter, f"NetFlow v9 header truncated ({len(data)} of {V9_HEADER.size} bytes)",
                     len(data))
            return
        _, _, uptime, secs, _, source_id = V9_HEADER.unpack_from(data)
        packet = _Packet(9, exporter, source_id, secs * 1000, uptime)
        self._sets(data, V9_HEADER.size, len(data), packet, out, problems)

    # -- IPFIX ------------------------------------------------------------------------------------------

    def _decode_ipfix(self, data: bytes, exporter: str, out: list[FlowRecord], problems: list[Diagnostic]) -> None:
        if len(data) < IPFIX_HEADER.size:
            _problem(problems, exporter, f"IPFIX header truncated ({len(data)} of {IPFIX_HEADER.size} bytes)",
                     len(data))
            return
        _, length, export_time, _, domain = IPFIX_HEADER.unpack_from(data)
        end = len(data)
        if length < IPFIX_HEADER.size or length > len(data):
            _problem(problems, exporter, f"IPFIX message length {length} disagrees with the {len(data)}-byte "
                     "datagram; decoding what arrived", 2)
        else:
            end = length
        packet = _Packet(10, exporter, domain, export_time * 1000, None)
        self._sets(data, IPFIX_HEADER.size, end, packet, out, problems)

    # -- sets, templates, records ----------------------------------------------------------------------

    def _sets(self, data: bytes, offset: int, end: int, packet: _Packet, out: list[FlowRecord],
              problems: list[Diagnostic]) -> None:
        learned: set[_TemplateKey] = set()
        while end - offset >= SET_HEADER.size:
            set_id, length = SET_HEADER.unpack_from(data, offset)
            if length < SET_HEADER.size:
                if set_id == 0 and length == 0 and not any(data[offset:end]):
                    break  # zero padding after the last set
                _problem(problems, packet.exporter, f"{packet.label} set {set_id} claims {length} bytes", offset)
                break
            if offset + length > end:
                _problem(problems, packet.exporter, f"{packet.label} set {set_id} of {length} bytes runs past the "
                         f"end of the packet ({end - offset} bytes left)", offset)
                break
            body = data[offset + SET_HEADER.size: offset + length]
            body_offset = offset + SET_HEADER.size
            try:
                if set_id >= FIRST_DATA_SET:
                    self._data_set(set_id, body, body_offset, packet, out, problems)
                elif packet.version == 9 and set_id == V9_TEMPLATE_SET:
                    self._templates_v9(body, body_offset, packet, learned, problems)
                elif packet.version == 9 and set_id == V9_OPTIONS_SET:
                    self._options_v9(body, body_offset, packet, learned, problems)
                elif packet.version == 10 and set_id in (IPFIX_TEMPLATE_SET, IPFIX_OPTIONS_SET):
                    self._templates_ipfix(set_id, body, body_offset, packet, learned, problems)
                else:
                    _problem(problems, packet.exporter, f"{packet.label} set id {set_id} is reserved; skipped",
                             offset, severity=Severity.WARNING)
            except _Damaged as damage:
                _problem(problems, packet.exporter, f"{packet.label} set {set_id}: {damage}", damage.offset)
            offset += length
        if learned and self._pending:
            self._replay(learned, out, problems)

    def _learn(self, key: _TemplateKey, template: _Template, learned: set[_TemplateKey],
               problems: list[Diagnostic], offset: int) -> None:
        if key not in self._templates and len(self._templates) >= self.max_templates:
            _problem(problems, key[0], f"template {key[2]} ignored: {self.max_templates} templates are known "
                     "already", offset, severity=Severity.WARNING, code="netflow-template")
            return
        self._templates[key] = template
        learned.add(key)

    def _templates_v9(self, body: bytes, base: int, packet: _Packet, learned: set[_TemplateKey],
                      problems: list[Diagnostic]) -> None:
        pos = 0
        while len(body) - pos >= 4:
            template_id, count = struct.unpack_from("!HH", body, pos)
            if template_id == 0 and count == 0:
                return  # padding
            if template_id < FIRST_DATA_SET:
                raise _Damaged(f"template id {template_id} is below 256", base + pos)
            if count == 0:
                raise _Damaged(f"template {template_id} has no fields", base + pos)
            if pos + 4 + 4 * count > len(body):
                raise _Damaged(f"template {template_id} announces {count} fields, the set ends first", base + pos)
            fields = tuple(_Field(*struct.unpack_from("!HH", body, pos + 4 + 4 * i)) for i in range(count))
            self._checked_learn(packet, template_id, fields, False, learned, problems, base + pos)
            pos += 4 + 4 * count

    def _options_v9(self, body: bytes, base: int, packet: _Packet, learned: set[_TemplateKey],
                    problems: list[Diagnostic]) -> None:
        pos = 0
        while len(body) - pos >= 6:
            template_id, scope_length, option_length = struct.unpack_from("!HHH", body, pos)
            if template_id == 0:
                return  # padding
            if template_id < FIRST_DATA_SET:
                raise _Damaged(f"options template id {template_id} is below 256", base + pos)
            if scope_length % 4 or option_length % 4:
                raise _Damaged(f"options template {template_id}: scope/option lengths {scope_length}/"
                               f"{option_length} are not multiples of 4", base + pos)
            if pos + 6 + scope_length + option_length > len(body):
                raise _Damaged(f"options template {template_id} runs past the end of its set", base + pos)
            count = (scope_length + option_length) // 4
            fields = tuple(_Field(*struct.unpack_from("!HH", body, pos + 6 + 4 * i)) for i in range(count))
            # v9 scope field types are not information elements: only their lengths matter (the data is skipped)
            fields = tuple(_Field(0, f.length) if i < scope_length // 4 else f for i, f in enumerate(fields))
            self._checked_learn(packet, template_id, fields, True, learned, problems, base + pos)
            pos += 6 + scope_length + option_length

    def _templates_ipfix(self, set_id: int, body: bytes, base: int, packet: _Packet, learned: set[_TemplateKey],
                         problems: list[Diagnostic]) -> None:
        options = set_id == IPFIX_OPTIONS_SET
        pos = 0
        while len(body) - pos >= 4:
            template_id, count = struct.unpack_from("!HH", body, pos)
            if template_id == 0 and count == 0:
                return  # padding
            if count == 0:  # withdrawal (RFC 7011 §8.1): one template, or all of this kind when id == set id
                self._withdraw(packet, template_id if template_id != set_id else None, options)
                pos += 4
                continue
            if template_id < FIRST_DATA_SET:
                raise _Damaged(f"template id {template_id} is below 256", base + pos)
            start = pos
            pos += 4
            if options:
                if len(body) - pos < 2:
                    raise _Damaged(f"options template {template_id} has no scope field count", base + start)
                scope_count = struct.unpack_from("!H", body, pos)[0]
                pos += 2
                if not 0 < scope_count <= count:
                    raise _Damaged(f"options template {template_id}: scope field count {scope_count} of {count} "
                                   "fields", base + start)
            fields: list[_Field] = []
            for _ in range(count):
                if len(body) - pos < 4:
                    raise _Damaged(f"template {template_id} announces {count} fields, the set ends first",
                                   base + start)
                ie, length = struct.unpack_from("!HH", body, pos)
                pos += 4
                enterprise = 0
                if ie & ENTERPRISE_BIT:
                    if len(body) - pos < 4:
                        raise _Damaged(f"template {template_id}: enterprise number cut off", base + pos)
                    enterprise = struct.unpack_from("!I", body, pos)[0]
                    pos += 4
                    ie &= ~ENTERPRISE_BIT
                fields.append(_Field(ie, length, enterprise))
            self._checked_learn(packet, template_id, tuple(fields), options, learned, problems, base + start)

    def _checked_learn(self, packet: _Packet, template_id: int, fields: tuple[_Field, ...], options: bool,
                       learned: set[_TemplateKey], problems: list[Diagnostic], offset: int) -> None:
        if packet.version == 9 and any(f.length == VARIABLE_LENGTH for f in fields):
            raise _Damaged(f"template {template_id}: NetFlow v9 has no variable-length fields", offset)
        template = _Template.of(fields, options=options)
        if template.min_length == 0:
            raise _Damaged(f"template {template_id}: its records would be 0 bytes long", offset)
        self._learn((packet.exporter, packet.domain, template_id), template, learned, problems, offset)

    def _withdraw(self, packet: _Packet, template_id: int | None, options: bool) -> None:
        if template_id is not None:
            self._templates.pop((packet.exporter, packet.domain, template_id), None)
            return
        for key in [k for k, t in self._templates.items()
                    if k[:2] == (packet.exporter, packet.domain) and t.options == options]:
            del self._templates[key]

    def _data_set(self, template_id: int, body: bytes, base: int, packet: _Packet, out: list[FlowRecord],
                  problems: list[Diagnostic]) -> None:
        key = (packet.exporter, packet.domain, template_id)
        template = self._templates.get(key)
        if template is None:
            self._buffer(_PendingSet(key, packet, body, base), problems)
            return
        for values, offset in self._records(template, body, base):
            if template.options:
                init = values.get(IE_SYSTEM_INIT_MILLIS)
                if init is not None:
                    self._system_init_ms[(packet.exporter, packet.domain)] = _uint(init)
            else:
                self._record(values, packet, offset, out, problems, template_id)

    def _records(self, template: _Template, body: bytes, base: int) -> Iterator[tuple[dict[int, bytes], int]]:
        """(values of the wanted, non-enterprise fields; offset) per record; stops at padding (fewer bytes left
        than the shortest record); raises _Damaged where a record runs past the set."""
        pos = 0
        end = len(body)
        while end - pos >= template.min_length:
            start = pos
            values: dict[int, bytes] = {}
            for field in template.fields:
                length = field.length
                if length == VARIABLE_LENGTH:
                    if pos >= end:
                        raise _Damaged("a variable-length field's length is cut off", base + pos)
                    length = body[pos]
                    pos += 1
                    if length == 255:
                        if end - pos < 2:
                            raise _Damaged("a variable-length field's 3-byte length is cut off", base + pos)
                        length = struct.unpack_from("!H", body, pos)[0]
                        pos += 2
                if end - pos < length:
                    raise _Damaged(f"field {field.ie} ({length} bytes) runs past the end of the set", base + pos)
                if field.enterprise == 0 and field.ie in WANTED and field.ie not in values:
                    values[field.ie] = body[pos:pos + length]
                pos += length
            yield values, base + start

    def _buffer(self, item: _PendingSet, problems: list[Diagnostic]) -> None:
        if self.max_pending <= 0:
            _problem(problems, item.packet.exporter, f"data set for unknown template {item.key[2]} dropped",
                     item.offset - SET_HEADER.size, severity=Severity.WARNING, code="netflow-template")
            return
        if len(self._pending) >= self.max_pending:
            old = self._pending.popleft()
            _problem(problems, old.packet.exporter, f"a data set for template {old.key[2]} waited too long for "
                     "its template and was dropped", severity=Severity.WARNING, code="netflow-template")
        self._pending.append(item)

    def _replay(self, learned: set[_TemplateKey], out: list[FlowRecord], problems: list[Diagnostic]) -> None:
        ready = [item for item in self._pending if item.key in learned]
        if not ready:
            return
        self._pending = deque(item for item in self._pending if item.key not in learned)
        for item in ready:
            try:
                self._data_set(item.key[2], item.body, item.offset, item.packet, out, problems)
            except _Damaged as damage:
                _problem(problems, item.packet.exporter, f"{item.packet.label} set {item.key[2]} (buffered): "
                         f"{damage}", damage.offset)

    # -- one flow record -------------------------------------------------------------------------------

    def _warn_once(self, problems: list[Diagnostic], exporter: str, what: object, message: str) -> None:
        if (exporter, what) not in self._warned:
            self._warned.add((exporter, what))
            _problem(problems, exporter, message, severity=Severity.WARNING, code="netflow-template")

    def _record(self, values: Mapping[int, bytes | int], packet: _Packet, offset: int, out: list[FlowRecord],
                problems: list[Diagnostic], template_id: int = 0) -> None:
        def number(ie: int) -> int | None:
            value = values.get(ie)
            return None if value is None else value if isinstance(value, int) else _uint(value)

        def raw(ie: int) -> bytes | None:
            value = values.get(ie)
            return value if isinstance(value, bytes) else None

        src, dst = raw(IE_SRC_V4), raw(IE_DST_V4)
        if src is None or dst is None:
            src, dst = raw(IE_SRC_V6), raw(IE_DST_V6)
        protocol = number(IE_PROTOCOL)
        if src is None or dst is None or protocol is None:
            self._warn_once(problems, packet.exporter, (packet.domain, template_id),
                            f"{packet.label} template {template_id} (domain {packet.domain}) has no source/"
                            "destination address or no protocol; its records are skipped")
            return
        if len(src) not in (4, 16) or len(dst) != len(src):
            _problem(problems, packet.exporter, f"{packet.label} record with {len(src)}/{len(dst)}-byte addresses",
                     offset)
            return
        packets = number(IE_PACKET_DELTA)
        octets = number(IE_OCTET_DELTA)
        packets = number(IE_PACKET_TOTAL) if packets is None else packets
        octets = number(IE_OCTET_TOTAL) if octets is None else octets
        start, end = self._times(values, number, packet, problems)
        ports = protocol in PORT_PROTOCOLS
        initiator: InitiatorSide | None = None
        if protocol == 6:
            initiator = tcp_initiator(number(IE_TCP_FLAGS), packets or 0)
        direction = number(IE_BIFLOW_DIRECTION)
        if direction in (1, 2):
            initiator = "src" if direction == 1 else "dst"
        try:
            out.append(FlowRecord(
                start=math.floor(start), end=max(math.floor(end), math.floor(start)),
                src=str(ipaddress.ip_address(src)), dst=str(ipaddress.ip_address(dst)), protocol=protocol,
                src_port=(number(IE_SRC_PORT) or 0) if ports else 0,
                dst_port=(number(IE_DST_PORT) or 0) if ports else 0,
                packets=packets or 0, bytes=octets or 0, initiator=initiator, observer=packet.observer,
            ))
        except ValueError as exc:
            _problem(problems, packet.exporter, f"{packet.label} record refused: {exc}", offset)

    def _times(self, values: Mapping[int, bytes | int], number: Callable[[int], int | None], packet: _Packet,
               problems: list[Diagnostic]) -> tuple[float, float]:
        def absolute(ie_seconds: int, ie_millis: int, ie_micros: int, ie_nanos: int) -> float | None:
            if (value := number(ie_millis)) is not None:
                return value / 1000
            if (value := number(ie_seconds)) is not None:
                return float(value)
            for ie in (ie_micros, ie_nanos):
                if isinstance(data := values.get(ie), bytes) and len(data) == 8:
                    return _ntp_seconds(data)
            return None

        def since_boot(ie: int) -> float | None:
            stamp = number(ie)
            if stamp is None:
                return None
            if packet.uptime_ms is not None:
                return _since_uptime(packet.export_ms, packet.uptime_ms, stamp)
            init = number(IE_SYSTEM_INIT_MILLIS)
            if init is None:
                init = self._system_init_ms.get((packet.exporter, packet.domain))
            if init is None:
                self._warn_once(problems, packet.exporter, ("init", packet.domain),
                                f"IPFIX domain {packet.domain} sends sysUpTime stamps but no "
                                "systemInitTimeMilliseconds (yet): the export time stands in for flow times")
                return None
            return (init + stamp) / 1000

        start = absolute(IE_START_SECONDS, IE_START_MILLIS, IE_START_MICROS, IE_START_NANOS)
        if start is None:
            start = since_boot(IE_START_UPTIME)
        end = absolute(IE_END_SECONDS, IE_END_MILLIS, IE_END_MICROS, IE_END_NANOS)
        if end is None:
            end = since_boot(IE_END_UPTIME)
        duration = number(IE_DURATION_MILLIS)
        if end is None and start is not None and duration is not None:
            end = start + duration / 1000
        if start is None and end is not None and duration is not None:
            start = end - duration / 1000
        export = packet.export_ms / 1000
        start = start if start is not None else end if end is not None else export
        end = end if end is not None else start
        return start, end


# ------------------------------------------------------------------------------------------------- collector --


def _exporter_text(address: str) -> str:
    """An exporter address as text: no IPv6 zone, IPv4-mapped IPv6 (a dual-stack socket) as plain IPv4."""
    address = address.split("%", 1)[0]
    with contextlib.suppress(ValueError):
        parsed = ipaddress.ip_address(address)
        if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(parsed)
    return address


def _listening_socket(listen: tuple[str, int]) -> socket.socket:
    host, port = listen
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host or "0.0.0.0").version == 6 else socket.AF_INET
        address: tuple[str, int] = (host or "0.0.0.0", port)
    except ValueError:  # a host name
        family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM,
                                                       flags=socket.AI_PASSIVE)[0]
        address = (str(sockaddr[0]), int(sockaddr[1]))
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        with contextlib.suppress(OSError):  # a bigger queue survives bursts (best effort: capped by the kernel)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


MAX_DATAGRAM: Final = 65535
PROBLEMS_PER_EXPORTER: Final = 100


class _Collector:
    """The state of one :func:`collect` run: the decoder, the batch not yet delivered, the problem counts."""

    def __init__(self, sink: Callable[[list[FlowRecord]], None], problems: list[Diagnostic],
                 allowed: Callable[[str], bool] | None) -> None:
        self.sink = sink
        self.problems = problems
        self.allowed = allowed
        self.decoder = NetflowDecoder()
        self.batch: list[FlowRecord] = []
        self.total = 0
        self.refused: set[str] = set()
        self.reported: dict[str, int] = {}
        self.delivered = time.monotonic()

    def receive(self, datagram: bytes, sender: str) -> None:
        exporter = _exporter_text(sender)
        if self.allowed is not None and not self.allowed(exporter):
            if exporter not in self.refused:
                self.refused.add(exporter)
                _problem(self.problems, exporter, "datagrams from this exporter are refused (not allowed)",
                         severity=Severity.WARNING, code="netflow-exporter")
            return
        found: list[Diagnostic] = []
        if len(datagram) > MAX_DATAGRAM:
            _problem(found, exporter, f"datagram longer than {MAX_DATAGRAM} bytes dropped")
        else:
            self.batch.extend(self.decoder.decode(datagram, exporter, found))
        for problem in found:
            count = self.reported[exporter] = self.reported.get(exporter, 0) + 1
            if count <= PROBLEMS_PER_EXPORTER:
                self.problems.append(problem)
            elif count == PROBLEMS_PER_EXPORTER + 1:
                _problem(self.problems, exporter, f"more than {PROBLEMS_PER_EXPORTER} problems: further ones are "
                         "not reported", severity=Severity.WARNING)

    def deliver(self) -> None:
        if self.batch:
            records, self.batch = self.batch, []
            self.sink(records)
            self.total += len(records)
        self.delivered = time.monotonic()


def collect(listen: tuple[str, int], sink: Callable[[list[FlowRecord]], None], stop: threading.Event,
            problems: list[Diagnostic], *, allowed: Callable[[str], bool] | None = None, batch: int = 1000,
            interval: float = 1.0) -> int:
    """Receives NetFlow v5/v9/IPFIX datagrams on UDP ``listen`` (host, port; IPv6 when the host is an IPv6
    address) until ``stop`` is set, and hands the decoded records to ``sink`` in batches (``batch`` records, or
    whatever arrived within ``interval`` seconds).  Returns how many records ``sink`` received.

    ``allowed(exporter)`` may refuse an exporter: its datagrams are dropped, with one warning per exporter.
    Malformed datagrams are Diagnostics (at most 100 per exporter, then one note that more were suppressed);
    nothing a sender does stops the collector.  Data still waiting for a template when it stops is reported.
    Raises OSError when ``listen`` cannot be bound."""
    sock = _listening_socket(listen)
    state = _Collector(sink, problems, allowed)
    try:
        sock.settimeout(min(0.2, max(interval, 0.01)))
        while not stop.is_set():
            try:
                datagram, sender = sock.recvfrom(MAX_DATAGRAM + 1)
            except TimeoutError:
                pass
            except OSError as exc:  # e.g. an ICMP error queued on the socket: not the collector's end
                problems.append(Diagnostic(f"receiving failed: {exc}", Location(f"{listen[0]}:{listen[1]}"),
                                           Severity.WARNING, "netflow"))
            else:
                state.receive(datagram, str(sender[0]))
            if len(state.batch) >= batch or time.monotonic() - state.delivered >= interval:
                state.deliver()
        state.deliver()
        state.decoder.flush(problems)
    finally:
        sock.close()
    return state.total


# ---------------------------------------------------------------------------------------------- nfdump CSV --

# nfdump's protocol names (libnffile ProtoString: index = protocol number), as ``-o csv`` prints them
_NFDUMP_PROTOCOL_NAMES: Final = (
    "0 ICMP IGMP GGP IPIP ST TCP CBT EGP IGP BBN NVPII PUP ARGUS ENCOM XNET CHAOS UDP MUX DCN HMP PRM XNS Trnk1 "
    "Trnk2 Leaf1 Leaf2 RDP IRTP ISO-4 NETBK MFESP MEINP DCCP 3PC IDPR XTP DDP IDPR TP++ IL IPv6 SDRP Rte6 Frag6 "
    "IDRP RSVP GRE MHRP BNA ESP AH INLSP SWIPE NARP MOBIL TLSP SKIP ICMP6 NOHE6 OPTS6 HOST CFTP NET SATNT KLAN RVD "
    "IPPC FS SATM VISA IPCV CPNX CPHB WSN PVP BSATM SUNND WBMON WBEXP ISOIP VMTP SVMTP VINES TTP NSIGP DGP TCF "
    "EIGRP OSPF S-RPC LARP MTP AX.25 OS MICP SCCSP ETHIP ENCAP 99 GMTP IFMP PNNI PIM ARIS SCPS QNX A/N IPcmp SNP "
    "CpqPP IPXIP VRRP PGM 0hop L2TP DDX IATP STP SRP UTI SMP SM PTP ISIS4 FIRE CRTP CRUDP 128 IPLT SPS PIPE SCTP FC "
    "134 MHEAD UDP-L MPLS"
)
NFDUMP_PROTOCOLS: Final = tuple(_NFDUMP_PROTOCOL_NAMES.split())
_PROTOCOL_BY_NAME: Final[dict[str, int]] = {
    **{name.upper(): number for number, name in reversed(list(enumerate(NFDUMP_PROTOCOLS)))},
    **{name.upper(): number for name, number in PROTOCOL_NUMBERS.items()},
}

# the columns ``nfdump -o csv`` (1.6 / 1.7.0-1.7.4) prints, used for a file without its header line (``-q``)
_NFDUMP_CSV_HEADER: Final = (
    "ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt,in,out,sas,das,smk,dmk,dtos,dir,nh,nhb,svln,dvln,"
    "ismc,odmc,idmc,osmc,mpls1,mpls2,mpls3,mpls4,mpls5,mpls6,mpls7,mpls8,mpls9,mpls10,cl,sl,al,ra,eng,exid,tr"
)
NFDUMP_CSV_COLUMNS: Final = tuple(_NFDUMP_CSV_HEADER.split(","))
# our field -> the column names nfdump versions use for it (1.7.1 ``-o csv``; newer csv formats; ``csv-fast``)
_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "start": ("ts", "firstseen"), "end": ("te", "lastseen"), "duration": ("td", "duration"),
    "src": ("sa", "srcaddr"), "dst": ("da", "dstaddr"), "src_port": ("sp", "srcport"),
    "dst_port": ("dp", "dstport"), "protocol": ("pr", "proto"), "packets": ("ipkt", "packets", "inpackets", "pkt"),
    "bytes": ("ibyt", "bytes", "inbytes", "byt"), "flags": ("flg", "flags"), "observer": ("ra",),
}
_REQUIRED: Final = ("start", "src", "dst", "protocol")
_NFCAPD_MAGIC: Final = b"\x0c\xa5"  # 0xA50C, little-endian, opens every nfcapd file (layout 1 and 2)
_TCP_FLAG_LETTERS: Final = {"C": 0x80, "E": 0x40, "U": 0x20, "A": 0x10, "P": 0x08, "R": 0x04, "S": 0x02, "F": 0x01}


class _BadRow(ValueError):
    pass


def _parse_time(text: str, zone: tzinfo | None) -> float:
    text = text.strip()
    if not text:
        raise _BadRow("empty time")
    try:
        number = float(text)
    except ValueError:
        pass
    else:  # csv-fast prints epoch milliseconds; %tsr epoch seconds
        if not math.isfinite(number):
            raise _BadRow(f"time {text!r}")
        return number / 1000 if number > 1e11 else number
    for pattern in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            moment = datetime.strptime(text, pattern)
        except ValueError:
            continue
        return (moment if zone is None else moment.replace(tzinfo=zone)).timestamp()
    raise _BadRow(f"time {text!r} is not YYYY-MM-DD HH:MM:SS[.mmm]")


def _parse_protocol(text: str) -> int:
    text = text.strip()
    if text.isdigit():
        return int(text)
    number = _PROTOCOL_BY_NAME.get(text.upper())
    if number is None:
        raise _BadRow(f"unknown protocol {text!r}")
    return number


def _parse_flags(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if text.lower().startswith("0x"):
        return int(text, 16)
    if text.isdigit():
        return int(text)
    flags = 0
    for letter in text:
        if letter != ".":
            if letter not in _TCP_FLAG_LETTERS:
                raise _BadRow(f"TCP flags {text!r}")
            flags |= _TCP_FLAG_LETTERS[letter]
    return flags


def _parse_count(text: str, what: str) -> int:
    text = text.strip()
    if not text:
        return 0
    try:
        return int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            raise _BadRow(f"{what} {text!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise _BadRow(f"{what} {text!r} is not a count") from None
        return int(value)


class NfdumpCsvSource:
    """Flows from ``nfdump -r FILE -o csv`` output (nfdump 1.6 / 1.7: header ``ts,te,td,sa,da,sp,dp,pr,flg,…``;
    newer spellings ``firstSeen,…,srcAddr,…`` are understood too), or straight from a binary ``nfcapd`` file, which
    it runs ``nfdump`` on — so what an nfcapd collector captured is read without a listener of our own.

    nfdump prints times in the local time zone of the machine it ran on: ``timezone`` (an IANA name such as
    ``UTC``) says which that was for a CSV file (default: this machine's); nfcapd files are read through
    ``TZ=UTC``, exactly.  The header line is optional (``-q``: the nfdump 1.7 column order is assumed); the
    summary nfdump appends is ignored.  A malformed row is a Diagnostic (file, line) and reading goes on."""

    name: ClassVar[str] = "nfdump"

    def __init__(self, nfdump: str = "nfdump", timezone: str | None = None) -> None:
        self.nfdump = nfdump
        try:
            self.zone: tzinfo | None = ZoneInfo(timezone) if timezone else None
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {timezone!r}") from exc

    def read(self, location: str, problems: list[Diagnostic]) -> Iterator[FlowRecord]:
        """The flows in ``location`` (nfdump CSV text, or an nfcapd file)."""
        try:
            with open(location, "rb") as handle:
                binary = handle.read(2) == _NFCAPD_MAGIC
        except OSError as exc:
            problems.append(Diagnostic(f"cannot read: {exc.strerror or exc}", Location(location), code="io"))
            return
        if binary:
            yield from self._read_nfcapd(location, problems)
            return
        try:
            with open(location, encoding="utf-8", errors="replace", newline="") as text:
                yield from self.rows(location, text, self.zone, problems)
        except OSError as exc:
            problems.append(Diagnostic(f"cannot read: {exc.strerror or exc}", Location(location), code="io"))

    def _read_nfcapd(self, location: str, problems: list[Diagnostic]) -> Iterator[FlowRecord]:
        command = [self.nfdump, "-r", location, "-o", "csv"]
        with tempfile.TemporaryFile() as errors:  # a file, not a pipe: nfdump never blocks on what it complains
            try:
                process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True,
                                           encoding="utf-8", errors="replace", env={**os.environ, "TZ": "UTC"})
            except OSError as exc:
                problems.append(Diagnostic(f"cannot run {self.nfdump}: {exc.strerror or exc}", Location(location),
                                           code="io", hint="install nfdump, or give its path as option 'nfdump'"))
                return
            with process:
                finished = False
                try:
                    yield from self.rows(location, process.stdout or (), ZoneInfo("UTC"), problems)
                    finished = True
                finally:
                    if not finished:  # the reader stopped early
                        process.kill()
            if finished and process.returncode != 0:
                errors.seek(0)
                lines = errors.read().decode("utf-8", "replace").strip().splitlines()
                problems.append(Diagnostic(f"nfdump failed (exit {process.returncode})"
                                           f"{': ' + lines[-1] if lines else ''}", Location(location), code="io"))

    @staticmethod
    def rows(location: str, lines: Iterable[str], zone: tzinfo | None,
             problems: list[Diagnostic]) -> Iterator[FlowRecord]:
        """The flows in nfdump CSV ``lines`` (times in ``zone``, None: local time).  Several nfdump outputs
        one after the other (each header … summary) are fine: a summary is skipped up to the next header."""
        reader = csv.reader(lines)
        columns: Mapping[str, int] | None = None
        in_summary = False
        for row in reader:
            cells = [cell.strip() for cell in row]
            if not any(cells) or cells[0] == "No matching flows":
                continue
            if cells[0] == "Summary":
                in_summary = True
                continue
            header = NfdumpCsvSource._header(cells)
            if header is not None:
                columns, in_summary = header, False
                continue
            if in_summary:
                continue
            if columns is None:
                if not cells[0][:1].isdigit():
                    problems.append(Diagnostic(f"not nfdump CSV: the first line names none of "
                                               f"{', '.join(_REQUIRED)}", Location(location, reader.line_num)))
                    return
                columns = {field: NFDUMP_CSV_COLUMNS.index(aliases[0]) for field, aliases in _COLUMNS.items()
                           if aliases[0] in NFDUMP_CSV_COLUMNS}
            try:
                yield NfdumpCsvSource._row(cells, columns, zone)
            except (ValueError, OverflowError) as exc:
                problems.append(Diagnostic(f"unreadable nfdump row: {exc}", Location(location, reader.line_num),
                                           code="flow-log"))

    @staticmethod
    def _header(cells: list[str]) -> dict[str, int] | None:
        """Field -> column index when ``cells`` is a header line naming at least the required columns."""
        names = [cell.lower() for cell in cells]
        columns = {field: names.index(name) for field, aliases in _COLUMNS.items()
                   for name in reversed(aliases) if name in names}
        return columns if all(field in columns for field in _REQUIRED) else None

    @staticmethod
    def _row(cells: list[str], columns: Mapping[str, int], zone: tzinfo | None) -> FlowRecord:
        def cell(field: str) -> str:
            index = columns.get(field)
            return "" if index is None or index >= len(cells) else cells[index]

        if len(cells) <= max(columns[field] for field in _REQUIRED):
            raise _BadRow(f"{len(cells)} columns are too few")
        start = _parse_time(cell("start"), zone)
        if cell("end"):
            end = _parse_time(cell("end"), zone)
        elif cell("duration"):
            duration = float(cell("duration"))
            if not math.isfinite(duration):
                raise _BadRow(f"duration {cell('duration')!r}")
            end = start + duration
        else:
            end = start
        protocol = _parse_protocol(cell("protocol"))
        ports = protocol in PORT_PROTOCOLS
        packets = _parse_count(cell("packets"), "packets")
        observer = cell("observer")
        if observer in ("0.0.0.0", "::"):
            observer = ""
        return FlowRecord(
            start=math.floor(start), end=max(math.floor(end), math.floor(start)), src=cell("src"), dst=cell("dst"),
            protocol=protocol, src_port=_parse_count(cell("src_port"), "port") if ports else 0,
            dst_port=_parse_count(cell("dst_port"), "port") if ports else 0, packets=packets,
            bytes=_parse_count(cell("bytes"), "bytes"),
            initiator=tcp_initiator(_parse_flags(cell("flags")), packets) if protocol == 6 else None,
            observer=observer,
        )
