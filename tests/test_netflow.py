"""NetFlow v5 / v9 / IPFIX decoding (hand-built packets after the RFC layouts), the UDP collector on loopback, the
nfdump CSV source, and end to end: softflowd capturing real TCP/UDP traffic between two throwaway network
namespaces, exporting to :func:`collect` (and to nfcapd, read back through nfdump)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from orchestrator.flows.netflow import NetflowDecoder, NfdumpCsvSource, collect, tcp_initiator
from orchestrator.model import Diagnostic, FlowRecord, FlowSource, Severity

T = TypeVar("T")
EXPORTER = "192.0.2.7"
SECS = 1_700_000_000  # the exporters' unix time in the hand-built headers
UPTIME = 3_600_000  # their sysUpTime (ms): booted an hour before SECS


# -------------------------------------------------------------------------------------- packet builders --


def v5_packet(records: list[bytes], *, count: int | None = None, uptime: int = UPTIME, secs: int = SECS,
              nsecs: int = 0) -> bytes:
    header = struct.pack("!HHIIIIBBH", 5, len(records) if count is None else count, uptime, secs, nsecs, 1, 0, 0, 0)
    return header + b"".join(records)


def v5_record(src: str, dst: str, sport: int, dport: int, protocol: int, *, packets: int = 3, octets: int = 180,
              first: int = UPTIME - 5000, last: int = UPTIME - 1000, flags: int = 0) -> bytes:
    return struct.pack("!4s4s4sHHIIIIHHxBBBHHBBxx", socket.inet_aton(src), socket.inet_aton(dst), bytes(4), 1, 2,
                       packets, octets, first, last, sport, dport, flags, protocol, 0, 0, 0, 24, 24)


def a_set(set_id: int, body: bytes) -> bytes:
    return struct.pack("!HH", set_id, 4 + len(body)) + body


def v9_packet(*sets: bytes, uptime: int = UPTIME, secs: int = SECS, source_id: int = 0) -> bytes:
    return struct.pack("!HHIIII", 9, len(sets), uptime, secs, 7, source_id) + b"".join(sets)


def v9_template(template_id: int, fields: list[tuple[int, int]]) -> bytes:
    return struct.pack("!HH", template_id, len(fields)) + b"".join(struct.pack("!HH", *f) for f in fields)


def ipfix_packet(*sets: bytes, export: int = SECS, domain: int = 0) -> bytes:
    body = b"".join(sets)
    return struct.pack("!HHIII", 10, 16 + len(body), export, 3, domain) + body


def ipfix_template(template_id: int, fields: list[tuple[int, ...]], *, scope: int | None = None) -> bytes:
    head = struct.pack("!HH", template_id, len(fields))
    if scope is not None:
        head += struct.pack("!H", scope)
    specs = b""
    for ie, length, *enterprise in fields:
        specs += struct.pack("!HH", ie | (0x8000 if enterprise else 0), length)
        if enterprise:
            specs += struct.pack("!I", enterprise[0])
    return head + specs


V9_FIELDS = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (6, 1), (2, 4), (1, 4), (22, 4), (21, 4)]


def v9_data(src: str, dst: str, sport: int, dport: int, protocol: int, flags: int, packets: int, octets: int,
            first: int, last: int) -> bytes:
    return struct.pack("!4s4sHHBBIIII", socket.inet_aton(src), socket.inet_aton(dst), sport, dport, protocol, flags,
                       packets, octets, first, last)


def decode(decoder: NetflowDecoder, datagram: bytes, exporter: str = EXPORTER) -> tuple[list[FlowRecord],
                                                                                         list[Diagnostic]]:
    problems: list[Diagnostic] = []
    return decoder.decode(datagram, exporter, problems), problems


# ------------------------------------------------------------------------------------------------- NetFlow v5 --


def test_v5_records_with_times_from_the_uptime_and_the_initiator_from_a_lone_syn() -> None:
    packet = v5_packet([
        v5_record("10.0.0.1", "10.0.0.2", 40000, 443, 6, flags=0x02, packets=1, octets=60),  # an unanswered SYN
        v5_record("10.0.0.2", "10.0.0.9", 0, 771, 1),  # ICMP: type/code in the port is dropped
        v5_record("10.0.0.3", "10.0.0.2", 5353, 53, 17, first=UPTIME - 61_000, last=UPTIME),
    ], nsecs=500_000_000)
    records, problems = decode(NetflowDecoder(), packet)
    assert problems == []
    syn, icmp, udp = records
    assert syn == FlowRecord(SECS - 5, SECS - 1, "10.0.0.1", "10.0.0.2", 6, 40000, 443, 1, 60, initiator="src",
                             observer=EXPORTER)
    assert (icmp.protocol, icmp.src_port, icmp.dst_port, icmp.initiator) == (1, 0, 0, None)
    assert (udp.start, udp.end, udp.src_port, udp.dst_port, udp.packets, udp.bytes) == (SECS - 61, SECS, 5353, 53,
                                                                                        3, 180)


def test_v5_uptime_that_wrapped_since_the_flow_started() -> None:
    record = v5_record("10.0.0.1", "10.0.0.2", 1, 2, 17, first=(1 << 32) - 2000, last=500)
    (flow,), problems = decode(NetflowDecoder(), v5_packet([record], uptime=1000))
    assert problems == []
    assert (flow.start, flow.end) == (SECS - 3, SECS - 1)  # started 3 s before the header (across the wrap)


def test_v5_truncated_keeps_the_whole_records_and_names_exporter_and_offset() -> None:
    packet = v5_packet([v5_record("10.0.0.1", "10.0.0.2", 1, 2, 6), v5_record("10.0.0.1", "10.0.0.3", 1, 2, 6)])
    records, problems = decode(NetflowDecoder(), packet[:-10])
    assert [r.dst for r in records] == ["10.0.0.2"]
    (problem,) = problems
    assert problem.location is not None and problem.location.file == EXPORTER
    assert "record 2 is cut off at byte 72" in problem.message


# ------------------------------------------------------------------------------------------------- NetFlow v9 --


def test_v9_template_then_data_in_one_packet_and_data_alone_later() -> None:
    decoder = NetflowDecoder()
    template = a_set(0, v9_template(256, V9_FIELDS))
    client = v9_data("10.1.0.1", "10.1.0.2", 51000, 8080, 6, 0x1B, 6, 400, UPTIME - 4000, UPTIME - 2000)
    records, problems = decode(decoder, v9_packet(template, a_set(256, client + b"\0\0")))  # 2 bytes padding
    assert problems == []
    assert records == [FlowRecord(SECS - 4, SECS - 2, "10.1.0.1", "10.1.0.2", 6, 51000, 8080, 6, 400,
                                  observer=EXPORTER)]  # SYN+ACK over 6 packets: no initiator
    synack = v9_data("10.1.0.2", "10.1.0.1", 8080, 51000, 6, 0x12, 1, 60, UPTIME - 3900, UPTIME - 3900)
    records, problems = decode(decoder, v9_packet(a_set(256, synack), source_id=0))
    assert problems == []
    assert records[0].initiator == "dst"  # a lone SYN-ACK: the destination opened
    other, problems = decode(decoder, v9_packet(a_set(256, synack)), exporter="192.0.2.8")
    assert other == []  # templates are per exporter: this one has none yet
    assert decoder.pending == 1


def test_v9_data_before_its_template_is_buffered_and_decoded_when_the_template_comes() -> None:
    decoder = NetflowDecoder()
    data = v9_data("10.1.0.1", "10.1.0.2", 51000, 22, 6, 0x02, 1, 60, UPTIME - 1000, UPTIME - 1000)
    records, problems = decode(decoder, v9_packet(a_set(300, data), source_id=42))
    assert (records, problems, decoder.pending) == ([], [], 1)
    # the template arrives in a later packet with another header time: the buffered set keeps its own clocks
    records, problems = decode(decoder, v9_packet(a_set(0, v9_template(300, V9_FIELDS)), secs=SECS + 100,
                                                  uptime=UPTIME + 100_000, source_id=42))
    assert problems == []
    assert records == [FlowRecord(SECS - 1, SECS - 1, "10.1.0.1", "10.1.0.2", 6, 51000, 22, 1, 60, initiator="src",
                                  observer=f"{EXPORTER}#42")]
    assert decoder.pending == 0


def test_v9_data_whose_template_never_comes_is_reported_by_flush_and_the_buffer_is_bounded() -> None:
    decoder = NetflowDecoder(max_pending=2)
    data = a_set(999, b"\1" * 24)
    for _ in range(3):
        records, problems = decode(decoder, v9_packet(data))
        assert records == []
    assert decoder.pending == 2
    assert [p.severity for p in problems] == [Severity.WARNING]  # the third pushed the first out
    problems = []
    decoder.flush(problems)
    assert decoder.pending == 0
    (problem,) = problems
    assert "2 data set(s) for template 999" in problem.message and problem.location is not None
    assert problem.location.file == EXPORTER


def test_v9_options_template_and_its_data_are_skipped() -> None:
    decoder = NetflowDecoder()
    options = struct.pack("!HHH", 257, 4, 8) + struct.pack("!HHHHHH", 1, 4, 34, 4, 35, 1) + b"\0\0"  # + padding
    option_data = struct.pack("!IIB", 1, 100, 2) + b"\0\0\0"
    flow = v9_data("10.1.0.1", "10.1.0.2", 1, 2, 17, 0, 1, 10, UPTIME, UPTIME)
    records, problems = decode(decoder, v9_packet(a_set(0, v9_template(256, V9_FIELDS)), a_set(1, options),
                                                  a_set(257, option_data), a_set(256, flow)))
    assert problems == []
    assert [(r.protocol, r.start) for r in records] == [(17, SECS)]


def test_v9_template_without_addresses_skips_its_records_with_one_warning() -> None:
    decoder = NetflowDecoder()
    template = a_set(0, v9_template(260, [(56, 6), (80, 6), (2, 4)]))  # MAC addresses only
    body = a_set(260, (bytes(6) * 2 + struct.pack("!I", 1)) * 3)
    records, problems = decode(decoder, v9_packet(template, body, body))
    assert records == []
    assert len(problems) == 1 and problems[0].severity is Severity.WARNING


# ------------------------------------------------------------------------------------------------------ IPFIX --


def test_ipfix_variable_length_and_enterprise_fields_are_skipped_and_ipv6_decoded() -> None:
    decoder = NetflowDecoder()
    fields: list[tuple[int, ...]] = [
        (27, 16), (28, 16), (7, 2), (11, 2), (4, 1),
        (82, 65535),  # interfaceName: variable length
        (1, 4, 29305),  # an enterprise field (reverse octetDeltaCount): skipped, not taken for octetDeltaCount
        (2, 8), (1, 8), (152, 8), (153, 8), (6, 2),
    ]
    src, dst = socket.inet_pton(socket.AF_INET6, "2001:db8::1"), socket.inet_pton(socket.AF_INET6, "2001:db8::2")

    def record(name: bytes, flags: int) -> bytes:
        length = bytes([len(name)]) if len(name) < 255 else b"\xff" + struct.pack("!H", len(name))
        return (src + dst + struct.pack("!HHB", 443, 55000, 6) + length + name + struct.pack("!I", 999999)
                + struct.pack("!QQQQH", 10, 5000, SECS * 1000 + 250, SECS * 1000 + 2750, flags))

    data = record(b"eth0", 0x12) + record(b"x" * 300, 0x02)  # 300 bytes: the 3-byte length form
    records, problems = decode(decoder, ipfix_packet(a_set(2, ipfix_template(400, fields)), a_set(400, data),
                                                     domain=5))
    assert problems == []
    assert records == [
        FlowRecord(SECS, SECS + 2, "2001:db8::1", "2001:db8::2", 6, 443, 55000, 10, 5000, observer=f"{EXPORTER}#5"),
        FlowRecord(SECS, SECS + 2, "2001:db8::1", "2001:db8::2", 6, 443, 55000, 10, 5000, initiator="src",
                   observer=f"{EXPORTER}#5"),
    ]


def test_ipfix_uptime_stamps_use_system_init_time_from_options_data() -> None:
    decoder = NetflowDecoder()
    boot_ms = (SECS - 3600) * 1000
    options = a_set(3, ipfix_template(258, [(144, 4), (160, 8)], scope=1))
    option_data = a_set(258, struct.pack("!IQ", 1, boot_ms))
    template = a_set(2, ipfix_template(256, [(8, 4), (12, 4), (4, 1), (22, 4), (21, 4), (239, 1)]))
    flow = a_set(256, socket.inet_aton("10.2.0.1") + socket.inet_aton("10.2.0.2")
                 + struct.pack("!BIIB", 17, 3_590_000, 3_595_000, 2))
    # the data comes first: buffered, then decoded once template and options data of this packet are known
    records, problems = decode(decoder, ipfix_packet(flow, template, options, option_data))
    assert problems == []
    assert [(r.start, r.end, r.protocol, r.src_port, r.initiator) for r in records] == [
        (SECS - 10, SECS - 5, 17, 0, "dst")]  # biflowDirection 2: the reverse initiator


def test_ipfix_uptime_without_system_init_time_falls_back_to_export_time_with_one_warning() -> None:
    decoder = NetflowDecoder()
    template = a_set(2, ipfix_template(256, [(8, 4), (12, 4), (4, 1), (22, 4)]))
    flow = socket.inet_aton("10.2.0.1") + socket.inet_aton("10.2.0.2") + struct.pack("!BI", 6, 10)
    records, problems = decode(decoder, ipfix_packet(template, a_set(256, flow + flow)))
    assert [(r.start, r.end) for r in records] == [(SECS, SECS)] * 2
    assert [p.severity for p in problems] == [Severity.WARNING]


def test_ipfix_template_withdrawal() -> None:
    decoder = NetflowDecoder()
    template = a_set(2, ipfix_template(256, [(8, 4), (12, 4), (4, 1)]))
    flow = a_set(256, socket.inet_aton("10.2.0.1") + socket.inet_aton("10.2.0.2") + b"\x11")
    assert len(decode(decoder, ipfix_packet(template, flow))[0]) == 1
    decode(decoder, ipfix_packet(a_set(2, struct.pack("!HH", 256, 0))))
    assert decode(decoder, ipfix_packet(flow)) == ([], [])
    assert decoder.pending == 1


def test_ipfix_seconds_and_ntp_microseconds_times() -> None:
    decoder = NetflowDecoder()
    template = a_set(2, ipfix_template(256, [(8, 4), (12, 4), (4, 1), (150, 4), (155, 8)]))
    ntp_end = ((SECS + 2_208_988_800 + 9) << 32) | (1 << 31)  # SECS + 9.5 in NTP format
    flow = a_set(256, socket.inet_aton("10.2.0.1") + socket.inet_aton("10.2.0.2")
                 + struct.pack("!BIQ", 17, SECS + 1, ntp_end))
    (record,), problems = decode(decoder, ipfix_packet(template, flow))
    assert problems == []
    assert (record.start, record.end) == (SECS + 1, SECS + 9)


# --------------------------------------------------------------------------------------- damaged datagrams --


def test_damaged_sets_are_diagnostics_naming_the_exporter_and_the_offset() -> None:
    decoder = NetflowDecoder()
    template = a_set(2, ipfix_template(256, [(8, 4), (12, 4), (4, 1)]))
    good = socket.inet_aton("10.2.0.1") + socket.inet_aton("10.2.0.2") + b"\x06"
    long_set = struct.pack("!HH", 256, 200) + good  # claims 200 bytes
    records, problems = decode(decoder, ipfix_packet(template, a_set(256, good), long_set))
    assert len(records) == 1
    (problem,) = problems
    assert problem.location is not None and problem.location.file == EXPORTER
    assert "runs past the end of the packet" in problem.message and "at byte 49" in problem.message

    varlen = a_set(2, ipfix_template(257, [(8, 4), (12, 4), (4, 1), (82, 65535)]))
    cut = a_set(257, good + b"\x10abc")  # announces 16 bytes, has 3
    records, problems = decode(decoder, ipfix_packet(varlen, cut))
    assert records == [] and "field 82 (16 bytes) runs past the end of the set" in problems[0].message

    records, problems = decode(decoder, b"\x00\x07" + bytes(30))
    assert records == [] and "version 7" in problems[0].message


def test_every_truncation_and_random_garbage_never_raise() -> None:
    decoder = NetflowDecoder()
    packets = [
        v5_packet([v5_record("10.0.0.1", "10.0.0.2", 1, 2, 6)] * 2),
        v9_packet(a_set(0, v9_template(256, V9_FIELDS)),
                  a_set(256, v9_data("10.1.0.1", "10.1.0.2", 1, 2, 6, 2, 1, 1, UPTIME, UPTIME))),
        ipfix_packet(a_set(2, ipfix_template(256, [(8, 4), (12, 4), (4, 1), (82, 65535), (5, 1, 9)])),
                     a_set(256, bytes(9) + b"\x03abc" + b"\x01")),
    ]
    rng = random.Random(7)
    seen: list[Diagnostic] = []  # decode() turns its own bugs into "undecodable datagram": there must be none
    for packet in packets:
        for cut in range(len(packet)):
            problems: list[Diagnostic] = []
            decoder.decode(packet[:cut], EXPORTER, problems)
            assert problems or packet[:2] == b"\x00\x09", cut  # v9 has no total length to check
            seen += problems
        for _ in range(300):
            noise = bytearray(packet)
            for _ in range(rng.randint(1, 6)):
                noise[rng.randrange(len(noise))] = rng.randrange(256)
            decoder.decode(bytes(noise), EXPORTER, seen)
    for _ in range(300):
        decoder.decode(rng.choice([b"\x00\x05", b"\x00\x09", b"\x00\x0a"]) + rng.randbytes(rng.randrange(200)),
                       EXPORTER, seen)
    assert seen and not [p for p in seen if "undecodable" in p.message]


def test_tcp_initiator_rules() -> None:
    assert tcp_initiator(0x02, 3) == "src"  # SYN, never ACK: the source tried to open
    assert tcp_initiator(0x12, 1) == "dst"  # one SYN-ACK: the destination opened
    assert tcp_initiator(0x1B, 5) is None  # SYN and ACK over a whole connection: either side's half
    assert tcp_initiator(0x11, 2) is None
    assert tcp_initiator(None, 2) is None


# -------------------------------------------------------------------------------------------- the collector --


def free_udp_port(host: str, family: socket.AddressFamily = socket.AF_INET) -> int:
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass
class Running:
    thread: threading.Thread
    stop: threading.Event
    batches: list[list[FlowRecord]]
    problems: list[Diagnostic]
    result: list[int]

    def records(self) -> list[FlowRecord]:
        return [r for batch in list(self.batches) for r in batch]

    def finish(self) -> int:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()
        return self.result[0]


def start_collector(listen: tuple[str, int], *, allowed: Callable[[str], bool] | None = None,
                    namespace: str | None = None) -> Running:
    """``collect`` in a thread (which first enters ``namespace``), returned once its socket is bound."""
    stop, result = threading.Event(), []
    batches: list[list[FlowRecord]] = []
    problems: list[Diagnostic] = []
    bound = threading.Event()

    def run() -> None:
        if namespace is not None:
            enter_namespace(namespace)
        bound.set()
        result.append(collect(listen, batches.append, stop, problems, allowed=allowed, interval=0.2))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert bound.wait(5)
    port = f":{listen[1]:04X} "
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the thread's own view of its namespace's sockets
        tables = [Path(f"/proc/{thread.native_id}/net/{name}") for name in ("udp", "udp6")]
        if any(port in table.read_text() for table in tables if table.exists()):
            break
        time.sleep(0.02)
    return Running(thread, stop, batches, problems, result)


def test_collect_batches_refuses_exporters_and_survives_garbage_on_loopback() -> None:
    port = free_udp_port("127.0.0.1")
    refused: list[str] = []

    def allowed(exporter: str) -> bool:
        refused.append(exporter)
        return False

    running = start_collector(("127.0.0.1", port))
    template = a_set(0, v9_template(256, V9_FIELDS))
    flows = [v9_data("10.1.0.1", "10.1.0.2", 1000 + i, 80, 6, 0x1B, 5, 500, UPTIME, UPTIME) for i in range(3)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(b"\x00", ("127.0.0.1", port))
        sender.sendto(b"\xff\xff" + os.urandom(1500), ("127.0.0.1", port))
        sender.sendto(v9_packet(template, a_set(256, b"".join(flows))), ("127.0.0.1", port))
        sender.sendto(v9_packet(a_set(256, flows[0])), ("127.0.0.1", port))
        deadline = time.monotonic() + 5
        while len(running.records()) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
    total = running.finish()
    assert total == 4 and sorted(r.src_port for r in running.records()) == [1000, 1000, 1001, 1002]
    assert all(r.observer == "127.0.0.1" for r in running.records())
    assert len(running.problems) >= 2 and all(p.location and p.location.file == "127.0.0.1"
                                              for p in running.problems)

    port = free_udp_port("127.0.0.1")
    running = start_collector(("127.0.0.1", port), allowed=allowed)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for _ in range(3):
            sender.sendto(v9_packet(template), ("127.0.0.1", port))
        deadline = time.monotonic() + 5
        while len(refused) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert running.finish() == 0
    assert len(running.problems) == 1 and "refused" in running.problems[0].message


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_collect_on_ipv6_loopback() -> None:
    try:
        port = free_udp_port("::1", socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback address")
    running = start_collector(("::1", port))
    packet = v5_packet([v5_record("10.0.0.1", "10.0.0.2", 1, 2, 17)])
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sender:
        sender.sendto(packet, ("::1", port))
        deadline = time.monotonic() + 5
        while not running.records() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert running.finish() == 1
    assert running.records()[0].observer == "::1"


# ------------------------------------------------------------------------------------------ nfdump CSV file --

# a row as nfdump 1.7.1 `-o csv` printed it on this machine (nfcapd fed by softflowd -v 9)
NFDUMP_171_HEADER = ("ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt,in,out,sas,das,smk,dmk,dtos,dir,nh,"
                     "nhb,svln,dvln,ismc,odmc,idmc,osmc,mpls1,mpls2,mpls3,mpls4,mpls5,mpls6,mpls7,mpls8,mpls9,mpls10,"
                     "cl,sl,al,ra,eng,exid,tr")
NFDUMP_171_ROW = ("2026-12-06 11:04:36,2026-12-06 11:04:36,0.000,10.99.0.1,10.99.0.2,43494,8080,TCP,...AP.SF,0,0,5,273,"
                  "0,0,0,0,0,0,0,0,0,0,0.0.0.0,0.0.0.0,0,0,00:00:00:00:00:00,00:00:00:00:00:00,00:00:00:00:00:00,"
                  "00:00:00:00:00:00,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,    0.000,    0.000,"
                  "    0.000,127.0.0.1,0/0,1,2026-12-06 11:05:09.817")


def nfdump_row(**changes: str) -> str:
    cells = NFDUMP_171_ROW.split(",")
    names = NFDUMP_171_HEADER.split(",")
    assert len(cells) == len(names)
    for name, value in changes.items():
        cells[names.index(name)] = value
    return ",".join(cells)


def test_nfdump_csv_source_reads_rows_and_reports_malformed_ones(tmp_path: Path) -> None:
    lines = [
        NFDUMP_171_HEADER,
        nfdump_row(te="2026-12-06 11:04:38", flg="......S.", ipkt="1", ibyt="60"),
        nfdump_row(te="2026-12-06 11:05:08", sa="10.99.0.2", da="10.99.0.1", sp="0", dp="771", pr="ICMP",
                   flg="........", ipkt="7", ibyt="399"),
        nfdump_row(sa="fe80::1", da="ff02::2", sp="0", dp="0", pr="ICMP6", flg="........", ipkt="4", ibyt="224"),
        nfdump_row(sa="10.99.0.300"),
        "garbage",
        nfdump_row(te="2026-12-06 11:04:37", sp="5353", dp="53", pr="UDP", flg="........", ipkt="2", ibyt="90"),
        "",
        "Summary",
        "flows,bytes,packets,avg_bps,avg_pps,avg_bpp",
        "4,600,5,13411,56,29",
        NFDUMP_171_HEADER,  # a second nfdump output appended
        nfdump_row(pr="ICMP", ra="0.0.0.0"),
    ]
    path = tmp_path / "flows.csv"
    path.write_text("\n".join(lines) + "\n")
    source = NfdumpCsvSource(timezone="UTC")
    assert isinstance(source, FlowSource) and source.name == "nfdump"
    problems: list[Diagnostic] = []
    records = list(source.read(str(path), problems))
    start = 1796555076  # 2026-12-06 11:04:36 UTC
    assert records == [
        FlowRecord(start, start + 2, "10.99.0.1", "10.99.0.2", 6, 43494, 8080, 1, 60, initiator="src",
                   observer="127.0.0.1"),
        FlowRecord(start, start + 32, "10.99.0.2", "10.99.0.1", 1, 0, 0, 7, 399, observer="127.0.0.1"),
        FlowRecord(start, start, "fe80::1", "ff02::2", 58, 0, 0, 4, 224, observer="127.0.0.1"),
        FlowRecord(start, start + 1, "10.99.0.1", "10.99.0.2", 17, 5353, 53, 2, 90, observer="127.0.0.1"),
        FlowRecord(start, start, "10.99.0.1", "10.99.0.2", 1, 0, 0, 5, 273),
    ]
    assert [(p.location.file, p.location.line) for p in problems if p.location] == [(str(path), 5), (str(path), 6)]

    headerless = tmp_path / "quiet.csv"  # nfdump -q: no header, no summary
    headerless.write_text(NFDUMP_171_ROW + "\n")
    assert [r.dst_port for r in source.read(str(headerless), problems)] == [8080]
    newer = tmp_path / "newer.csv"  # newer nfdump: firstSeen,duration,... with milliseconds, no lastSeen
    newer.write_text("firstSeen,duration,proto,srcAddr,srcPort,dstAddr,dstPort,packets,bytes,flows\n"
                     "2026-12-06 11:04:36.250,3.500,UDP,10.0.0.1,1,10.0.0.2,53,2,100,1\n")
    assert [(r.start, r.end) for r in source.read(str(newer), problems)] == [(start, start + 3)]
    missing: list[Diagnostic] = []
    assert list(source.read(str(tmp_path / "absent"), missing)) == [] and missing[0].code == "io"
    capture = tmp_path / "nfcapd.202612061104"  # an nfcapd file (magic 0xA50C) but no nfdump to read it
    capture.write_bytes(b"\x0c\xa5\x02\x00" + bytes(60))
    no_tool: list[Diagnostic] = []
    assert list(NfdumpCsvSource(nfdump=str(tmp_path / "no-nfdump")).read(str(capture), no_tool)) == []
    assert no_tool[0].code == "io" and "cannot run" in no_tool[0].message


# ------------------------------------------------------------------------------- end to end with softflowd --

CLONE_NEWNET = 0x40000000


def enter_namespace(name: str) -> None:
    """Moves the *calling thread* (only it: setns is per thread for network namespaces) into namespace ``name``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {name}")
    finally:
        os.close(fd)


def in_namespace(name: str, action: Callable[[], T]) -> T:
    """``action()`` run by a short-lived thread inside namespace ``name``; sockets it creates stay there."""
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            enter_namespace(name)
            results.append(action())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return results[0]


E2E_TOOLS = ("ip", "softflowd", "softflowctl")
needs_softflowd = pytest.mark.skipif(
    os.geteuid() != 0 or any(shutil.which(tool) is None for tool in E2E_TOOLS),
    reason="needs root, iproute2 and softflowd (network namespaces and packet capture)")


@dataclass
class Lab:
    """Namespace ``a`` (10.99.0.1, fd00:99::1 on veth ``va``) and ``b`` (10.99.0.2, fd00:99::2), joined."""

    a: str
    b: str
    tmp: Path
    processes: list[subprocess.Popen[bytes]]

    def start(self, namespace: str, *command: str, log: str) -> subprocess.Popen[bytes]:
        with open(self.tmp / log, "wb") as output:
            process = subprocess.Popen(["ip", "netns", "exec", namespace, *command], stdout=output,
                                       stderr=subprocess.STDOUT)
        self.processes.append(process)  # `ip netns exec` execs the command: this PID is softflowd/nfcapd itself
        return process

    def stop(self, process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    prefix = f"nf{secrets.token_hex(4)}"
    a, b = f"{prefix}a", f"{prefix}b"
    made: list[str] = []
    lab = Lab(a, b, tmp_path_factory.mktemp("netflow"), [])
    try:
        for name in (a, b):
            ip("netns", "add", name)
            made.append(name)
            ip("-n", name, "link", "set", "lo", "up")
        ip("-n", a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b)
        for name, dev, v4, v6 in ((a, "va", "10.99.0.1/24", "fd00:99::1/64"), (b, "vb", "10.99.0.2/24",
                                                                                 "fd00:99::2/64")):
            ip("-n", name, "addr", "add", v4, "dev", dev)
            ip("-n", name, "addr", "add", v6, "dev", dev, "nodad")
            ip("-n", name, "link", "set", dev, "up")
        yield lab
    finally:
        for process in lab.processes:
            with contextlib.suppress(Exception):
                lab.stop(process, signal.SIGKILL)
        for name in made:
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def softflowd(lab: Lab, version: int, port: int, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    """softflowd in namespace a, capturing on veth va, exporting to a's loopback; running once its control
    socket answers (the capture is set up before the socket)."""
    control = lab.tmp / f"{name}.ctl"
    process = lab.start(lab.a, "softflowd", "-d", "-i", "va", "-n", f"127.0.0.1:{port}", "-v", str(version),
                        *(["-6"] if version != 5 else []), "-p", str(lab.tmp / f"{name}.pid"), "-c", str(control),
                        log=f"{name}.log")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert process.poll() is None, (lab.tmp / f"{name}.log").read_text()
        if control.exists() and subprocess.run(["softflowctl", "-c", str(control), "statistics"], check=False,
                                               capture_output=True).returncode == 0:
            return process, control
        time.sleep(0.05)
    raise AssertionError("softflowd did not start")


def tcp_exchange(lab: Lab, family: socket.AddressFamily, server: str) -> tuple[str, int]:
    """A real TCP connection from a to b (8080) with a request and an echo; the client's (address, port)."""
    listener = in_namespace(lab.b, lambda: socket.socket(family, socket.SOCK_STREAM))
    client = in_namespace(lab.a, lambda: socket.socket(family, socket.SOCK_STREAM))
    with listener, client:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((server, 8080))
        listener.listen()
        client.settimeout(5)
        client.connect((server, 8080))
        accepted, _ = listener.accept()
        with accepted:
            client.sendall(b"hello netflow")
            accepted.sendall(accepted.recv(100))
            assert client.recv(100) == b"hello netflow"
        name = client.getsockname()
    return str(name[0]), int(name[1])


def flood(lab: Lab, count: int = 2500) -> None:
    """Tiny UDP datagrams a -> b:9: softflowd's libpcap (TPACKET_V3, no immediate mode) hands a ring block over
    only when it is full (~1900 small packets), so a quiet link's flows are never processed without this."""
    sender = in_namespace(lab.a, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    with sender:
        for _ in range(count):
            sender.sendto(b"x", ("10.99.0.2", 9))


def processed(control: Path) -> int:
    """softflowd's count of packets it has taken from the capture ring."""
    stats = subprocess.run(["softflowctl", "-c", str(control), "statistics"], check=False, capture_output=True,
                           text=True).stdout
    found = re.search(r"Packets processed: (\d+)", stats)
    return int(found.group(1)) if found else 0


def export_all(lab: Lab, control: Path, arrived: Callable[[], bool] | None = None) -> None:
    """Makes softflowd process what it captured (flooding until a ring block full of the flood was processed: the
    blocks before it, with the test's traffic, came first) and expire (export) every flow — again, up to 6 times,
    until ``arrived()`` when given."""
    for _ in range(6):
        before = processed(control)
        flood(lab)
        deadline = time.monotonic() + 3
        while processed(control) < before + 1000 and time.monotonic() < deadline:
            time.sleep(0.05)
        subprocess.run(["softflowctl", "-c", str(control), "expire-all"], capture_output=True, check=True)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            if arrived is not None and arrived():
                return
            time.sleep(0.05)
        if arrived is None:
            return


def tcp_flow(records: list[FlowRecord], client: tuple[str, int], server: str) -> FlowRecord | None:
    for record in records:
        if (record.src, record.src_port, record.dst, record.dst_port, record.protocol) == (*client, server, 8080, 6):
            return record
    return None


@needs_softflowd
@pytest.mark.parametrize("version", [5, 9, 10])
def test_softflowd_exports_real_tcp_flows_to_the_collector(lab: Lab, version: int) -> None:
    port = 2055 + version  # on namespace a's own loopback: no clash with anything outside
    running = start_collector(("127.0.0.1", port), namespace=lab.a)
    process, control = softflowd(lab, version, port, f"softflowd-v{version}")
    try:
        began = time.time()
        clients = [(tcp_exchange(lab, socket.AF_INET, "10.99.0.2"), "10.99.0.2")]
        if version != 5:  # v5 has no IPv6
            clients.append((tcp_exchange(lab, socket.AF_INET6, "fd00:99::2"), "fd00:99::2"))
        export_all(lab, control, lambda: all(tcp_flow(running.records(), c, s) for c, s in clients))
        ended = time.time()
    finally:
        lab.stop(process)
        running.finish()
    records = running.records()
    assert running.problems == []
    for client, server in clients:
        flow = tcp_flow(records, client, server)
        assert flow is not None, (client, records)
        assert flow.packets >= 3 and flow.bytes > len(b"hello netflow")
        assert began - 2 <= flow.start <= flow.end <= ended + 1
        assert flow.observer == "127.0.0.1"
        reply = [r for r in records if (r.src, r.src_port, r.dst, r.dst_port) == (server, 8080, *client)]
        assert reply and reply[0].packets >= 2
    assert any(r.protocol == 17 and r.dst_port == 9 for r in records)  # the UDP traffic too


@needs_softflowd
@pytest.mark.skipif(shutil.which("nfcapd") is None or shutil.which("nfdump") is None, reason="needs nfcapd and nfdump")
def test_nfcapd_capture_read_through_nfdump(lab: Lab) -> None:
    port = 9995
    spool = lab.tmp / "nfcapd"
    spool.mkdir()
    collector = lab.start(lab.a, "nfcapd", "-w", str(spool), "-b", "127.0.0.1", "-p", str(port), log="nfcapd.log")
    deadline = time.monotonic() + 10
    while f":{port:04X} " not in Path(f"/proc/{collector.pid}/net/udp").read_text():
        assert collector.poll() is None and time.monotonic() < deadline, (lab.tmp / "nfcapd.log").read_text()
        time.sleep(0.05)
    process, control = softflowd(lab, 9, port, "softflowd-nfcapd")
    try:
        began = time.time()
        client = tcp_exchange(lab, socket.AF_INET, "10.99.0.2")
        export_all(lab, control)  # nfcapd tells nothing until it closes its file: one round, 2 s for the export
    finally:
        lab.stop(process)
        lab.stop(collector)  # SIGTERM: nfcapd closes its current file under its final name
    files = sorted(str(p) for p in spool.glob("nfcapd.2*"))
    assert files, (lab.tmp / "nfcapd.log").read_text()
    source = NfdumpCsvSource()
    problems: list[Diagnostic] = []
    records = [r for f in files for r in source.read(f, problems)]  # binary files: the source runs nfdump
    assert problems == []
    flow = tcp_flow(records, client, "10.99.0.2")
    assert flow is not None, records
    assert flow.packets >= 3 and began - 2 <= flow.start <= flow.end <= time.time()
    assert flow.observer == "127.0.0.1"
    # the same through a CSV file written by `nfdump -o csv` (times in UTC: TZ pinned for nfdump and the reader)
    text = lab.tmp / "flows.csv"
    with open(text, "w") as out:
        for f in files:
            subprocess.run(["nfdump", "-r", f, "-o", "csv"], stdout=out, check=True, env={**os.environ, "TZ": "UTC"})
    from_csv = list(NfdumpCsvSource(timezone="UTC").read(str(text), problems))
    assert problems == [] and tcp_flow(from_csv, client, "10.99.0.2") == flow


def test_the_lab_relay_repeats_only_the_templates_of_an_ipfix_message() -> None:
    """What the lab's relay resends: the message's template sets alone (a collector started late learns them),
    never its data (which would count flows twice)."""
    from orchestrator.lab.flowrelay import template_message

    template = a_set(2, ipfix_template(256, [(8, 4), (12, 4), (4, 1), (150, 4), (151, 4)]))
    flow = a_set(256, socket.inet_aton("10.2.0.1") + socket.inet_aton("10.2.0.2") + struct.pack("!BII", 6, SECS,
                                                                                                 SECS + 3))
    repeated = template_message(ipfix_packet(template, flow))
    assert repeated is not None and repeated == ipfix_packet(template)
    late = NetflowDecoder()
    assert decode(late, repeated) == ([], [])  # templates only: no records
    (record,), problems = decode(late, ipfix_packet(flow))  # the data that follows now decodes
    assert problems == [] and (record.src, record.dst, record.protocol) == ("10.2.0.1", "10.2.0.2", 6)
    assert template_message(ipfix_packet(flow)) is None and template_message(b"\x00\x09" + b"\x00" * 18) is None
