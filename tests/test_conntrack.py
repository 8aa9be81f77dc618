"""Conntrack tables as flows: the parser against real ``conntrack -L`` output of this machine's kernel and
conntrack-tools, saved captures (tests/data/conntrack, see PROVENANCE.md), and the nftables driver's
``read_flows`` over a real SSH session (as root and through sudo) and the local transport.

Real traffic runs between two network namespaces (``ctf<hex>a`` ↔ ``ctf<hex>b``, a veth pair) where a table
``inet cttest`` with a ``ct state`` rule makes the kernel track connections (it does not otherwise in a fresh
namespace); everything started here is stopped by PID and every namespace deleted.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from drivers.nftables import NftablesDriver
from drivers.nftables.conntrack import ConntrackFileSource, parse_conntrack
from drivers.nftables.transport import CommandResult, SshRunner
from orchestrator.model import (
    Connection,
    Diagnostic,
    FlowLogError,
    FlowReadingDriver,
    FlowRecord,
    FlowSource,
    Location,
    PermanentDriverError,
    PointContext,
)
from tests.conftest import REPO
from tests.nft_helpers import (
    POINT,
    SshdNamespace,
    _free_loopback_port,
    driver_in,
    fake_sudo,
    netns_available,
    network_namespace,
    ssh_keygen,
    sshd_available,
    stop_process,
)
from tests.test_ssh_trust import recording_sshd

DATA = REPO / "tests" / "data" / "conntrack"
PREFIX = "ctf"  # this module's namespaces: ctf<8 hex><role>
NOW = 1_750_000_000
needs_conntrack = pytest.mark.skipif(not (netns_available() and shutil.which("conntrack")),
                                     reason="needs root, iproute2, nft and conntrack (conntrack-tools)")
needs_sshd = pytest.mark.skipif(not (sshd_available() and shutil.which("conntrack")),
                                reason="needs root, nft, conntrack, sshd, socat and ssh-keygen")
CT_TABLE = "table inet cttest { chain c { type filter hook input priority 0; ct state established accept; }; }\n"

A4, B4, A6, B6 = "10.77.0.1", "10.77.0.2", "fd77::1", "fd77::2"
TCP_SPORT, UDP6_SPORT, UDP4_SPORT, ICMP_ID = 40001, 40053, 40099, 4660

# ------------------------------------------------------------------ real traffic (code run inside a namespace)

TCP_SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(); print("ready", flush=True)
s.settimeout(20); c, _ = s.accept(); c.settimeout(5); c.recv(100); c.sendall(b"pong"); c.close()
"""
TCP_CLIENT = """
import socket, sys
c = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); c.settimeout(5)
c.bind((sys.argv[3], int(sys.argv[4]))); c.connect((sys.argv[1], int(sys.argv[2])))
c.sendall(b"ping"); assert c.recv(100) == b"pong"; c.close()
"""
UDP_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2]))); print("ready", flush=True)
s.settimeout(20); data, peer = s.recvfrom(100); s.sendto(data, peer)
"""
UDP_CLIENT = """
import socket, sys
c = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)
c.bind((sys.argv[3], int(sys.argv[4]))); c.sendto(b"hello", (sys.argv[1], int(sys.argv[2])))
if sys.argv[5] == "reply":
    c.settimeout(5); assert c.recv(100) == b"hello"
"""
PING = """
import socket, struct, sys
def checksum(b):
    total = sum(struct.unpack(f"!{len(b) // 2}H", b)); total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
target, ident = sys.argv[1], int(sys.argv[2])
if ":" in target:  # ICMPv6 echo request: the kernel fills in the checksum
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    packet, reply = struct.pack("!BBHHH", 128, 0, 0, ident, 1) + b"microseg", 129
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"microseg"
    packet, reply = body[:2] + struct.pack("!H", checksum(body)) + body[4:], 0
s.settimeout(5); s.sendto(packet, (target, 0))
while True:
    data, _ = s.recvfrom(1500)
    kind = data[0] if ":" in target else data[(data[0] & 15) * 4]
    if kind == reply:
        break
"""


def in_ns(ns: str, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``argv`` inside namespace ``ns`` (only this module's namespaces)."""
    assert ns.startswith(PREFIX), "runs only inside this module's namespaces"
    return subprocess.run(["ip", "netns", "exec", ns, *argv], input=stdin, capture_output=True, text=True,
                          check=True, timeout=30)


def python_in(ns: str, code: str, *args: object) -> None:
    in_ns(ns, sys.executable, "-c", code, *map(str, args))


@contextmanager
def serving(ns: str, code: str, *args: object) -> Iterator[subprocess.Popen[str]]:
    """A one-shot server (``code``) in ``ns`` that printed ``ready``; waited for, else stopped by PID."""
    server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", code, *map(str, args)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready", server.stderr
        yield server
        assert server.wait(timeout=10) == 0
    finally:
        stop_process(server)


def namespace(role: str) -> AbstractContextManager[str]:
    """A fresh namespace ``ctf<hex><role>`` with lo up, deleted on exit."""
    return network_namespace(PREFIX, role)


def track(ns: str, *, acct: bool = True, timestamp: bool = False) -> None:
    """Make the kernel track connections in ``ns`` (a ``ct state`` rule), with or without counters/timestamps."""
    in_ns(ns, "sysctl", "-qw", f"net.netfilter.nf_conntrack_acct={int(acct)}",
          f"net.netfilter.nf_conntrack_timestamp={int(timestamp)}")
    in_ns(ns, "nft", "-f", "-", stdin=CT_TABLE)


@contextmanager
def veth_pair(a: str, b: str, a_addresses: tuple[str, str], b_addresses: tuple[str, str]) -> Iterator[None]:
    """Namespaces ``a`` and ``b`` joined by a veth pair with one IPv4 /24 and one IPv6 /64 address each (the
    pair goes with the namespaces)."""
    tag = secrets.token_hex(3)
    subprocess.run(["ip", "link", "add", f"ctv{tag}a", "netns", a, "type", "veth", "peer", "name", f"ctv{tag}b",
                    "netns", b], check=True, capture_output=True)
    for ns, device, (v4, v6) in ((a, f"ctv{tag}a", a_addresses), (b, f"ctv{tag}b", b_addresses)):
        for command in (["link", "set", device, "up"], ["addr", "add", f"{v4}/24", "dev", device],
                        ["addr", "add", f"{v6}/64", "dev", device, "nodad"]):
            subprocess.run(["ip", "-n", ns, *command], check=True, capture_output=True)
    yield


def make_traffic(a: str, b: str) -> None:
    """From ``a`` to ``b``: TCP (IPv4) and UDP (IPv6) with replies, UDP (IPv4) to a closed port, ICMP echo on
    both families; fixed client ports and ICMP id so that the entries are known in advance."""
    with serving(b, TCP_SERVER, B4, 5432):
        python_in(a, TCP_CLIENT, B4, 5432, A4, TCP_SPORT)
    with serving(b, UDP_ECHO, B6, 53):
        python_in(a, UDP_CLIENT, B6, 53, A6, UDP6_SPORT, "reply")
    python_in(a, UDP_CLIENT, B4, 9999, A4, UDP4_SPORT, "none")
    python_in(a, PING, B4, ICMP_ID)
    python_in(a, PING, B6, ICMP_ID)


@dataclass
class Captures:
    """What ``conntrack`` printed (stdout, stderr) in the initiator's namespace ``a`` and the responder's ``b``."""

    a: str
    b: str
    output: dict[str, tuple[str, str]] = field(default_factory=dict)


COMMANDS = {  # capture name -> (side, conntrack arguments)
    "extended": ("a", ("-L", "-o", "extended")),
    "plain": ("a", ("-L",)),
    "responder-id-ktimestamp": ("b", ("-L", "-o", "extended,id,ktimestamp")),
}


@contextmanager
def real_conntrack() -> Iterator[Captures]:
    """Two namespaces after :func:`make_traffic`: ``a`` counts (acct=1, no timestamps), ``b`` keeps timestamps
    but no counters (acct=0, timestamp=1); the listings of :data:`COMMANDS`."""
    with namespace("a") as a, namespace("b") as b, veth_pair(a, b, (A4, A6), (B4, B6)):
        track(a, acct=True, timestamp=False)
        track(b, acct=False, timestamp=True)
        make_traffic(a, b)
        captures = Captures(a, b)
        for name, (side, args) in COMMANDS.items():
            done = in_ns(a if side == "a" else b, "conntrack", *args)
            captures.output[name] = (done.stdout, done.stderr)
        yield captures


def write_captures(directory: str | Path) -> None:
    """Regenerate tests/data/conntrack (see PROVENANCE.md): ``python -c 'from tests.test_conntrack import
    write_captures; write_captures("tests/data/conntrack")'`` as root."""
    with real_conntrack() as captures:
        for name, (stdout, _) in captures.output.items():
            Path(directory, f"{name}.txt").write_text(stdout)


@pytest.fixture(scope="module")
def live() -> Iterator[Captures]:
    if not (netns_available() and shutil.which("conntrack")):
        pytest.skip("needs root, iproute2, nft and conntrack (conntrack-tools)")
    with real_conntrack() as captures:
        yield captures


def key(record: FlowRecord) -> tuple[Any, ...]:
    return (record.src, record.dst, record.protocol, record.src_port, record.dst_port, record.action,
            record.initiator)


EXPECTED_KEYS = {  # what make_traffic leaves in both tables: the client (a) opened every flow
    (A4, B4, 6, TCP_SPORT, 5432, "accept", "src"),
    (A6, B6, 17, UDP6_SPORT, 53, "accept", "src"),
    (A4, B4, 17, UDP4_SPORT, 9999, None, "src"),  # [UNREPLIED]: nobody listens
    (A4, B4, 1, 0, 0, "accept", "src"),
    (A6, B6, 58, 0, 0, "accept", "src"),
}

# ------------------------------------------------------------------ live output of this machine


@needs_conntrack
def test_live_extended_listing_of_the_initiator(live: Captures) -> None:
    stdout, stderr = live.output["extended"]
    assert "flow entries have been shown" in stderr  # the summary goes to stderr ...
    problems: list[Diagnostic] = []
    records = parse_conntrack(stderr + stdout, "a", problems, now=NOW)  # ... and is no entry where merged
    assert problems == []
    assert {key(r) for r in records} == EXPECTED_KEYS
    assert all(r.observer == "a" and r.start == r.end == NOW for r in records)
    assert all(r.packets > 0 and r.bytes > 0 for r in records)  # nf_conntrack_acct=1 in namespace a
    tcp = next(r for r in records if r.protocol == 6)
    assert tcp.packets >= 6  # handshake, data both ways, FIN/ACK: original and reply counters added up


@needs_conntrack
def test_live_plain_listing_reads_like_extended(live: Captures) -> None:
    problems: list[Diagnostic] = []
    plain = parse_conntrack(live.output["plain"][0], "a", problems, now=NOW)
    extended = parse_conntrack(live.output["extended"][0], "a", problems, now=NOW)
    assert problems == [] and sorted(plain, key=key) == sorted(extended, key=key)


@needs_conntrack
def test_live_responder_without_counters_with_timestamps(live: Captures) -> None:
    stdout, _ = live.output["responder-id-ktimestamp"]
    assert "delta-time=" in stdout and "[start=" in stdout and " id=" in stdout and "packets=" not in stdout
    problems: list[Diagnostic] = []
    records = parse_conntrack(stdout, "b", problems, now=NOW)
    assert problems == []
    assert {key(r) for r in records} == EXPECTED_KEYS  # seen from b, a still opened them
    assert all(r.packets == r.bytes == 0 for r in records)  # nf_conntrack_acct=0 in namespace b
    assert all(NOW - 60 <= r.start <= r.end == NOW for r in records)  # start = now - delta-time


# ------------------------------------------------------------------ saved captures (exact records)


def test_saved_extended_capture_exact() -> None:
    problems: list[Diagnostic] = []
    records = parse_conntrack((DATA / "extended.txt").read_text(), "host-a", problems, now=NOW)
    assert problems == []

    def flow(src: str, dst: str, protocol: int, ports: tuple[int, int], packets: int, size: int,
             action: str | None = "accept") -> FlowRecord:
        return FlowRecord(NOW, NOW, src, dst, protocol, *ports, packets, size, action, "src", "host-a")

    assert sorted(records, key=key) == sorted([
        flow(A4, B4, 6, (TCP_SPORT, 5432), 5 + 5, 272 + 272),  # original + reply counters
        flow(A6, B6, 17, (UDP6_SPORT, 53), 1 + 1, 53 + 53),
        flow(A4, B4, 17, (UDP4_SPORT, 9999), 1 + 0, 33 + 0, action=None),  # [UNREPLIED]
        flow(A4, B4, 1, (0, 0), 1 + 1, 36 + 36),
        flow(A6, B6, 58, (0, 0), 1 + 1, 56 + 56),
    ], key=key)


def test_saved_plain_capture_reads_like_extended() -> None:
    problems: list[Diagnostic] = []
    plain = parse_conntrack((DATA / "plain.txt").read_text(), "host-a", problems, now=NOW)
    extended = parse_conntrack((DATA / "extended.txt").read_text(), "host-a", problems, now=NOW)
    assert problems == [] and sorted(plain, key=key) == sorted(extended, key=key)


def test_saved_responder_capture_exact() -> None:
    """acct=0: no packets=/bytes=; timestamp=1 and -o id,ktimestamp: delta-time, [start=<ctime>], id=."""
    problems: list[Diagnostic] = []
    records = parse_conntrack((DATA / "responder-id-ktimestamp.txt").read_text(), "host-b", problems, now=NOW)
    assert problems == []

    def flow(src: str, dst: str, protocol: int, ports: tuple[int, int], delta: int,
             action: str | None = "accept") -> FlowRecord:
        return FlowRecord(NOW - delta, NOW, src, dst, protocol, *ports, 0, 0, action, "src", "host-b")

    assert records == [  # file order
        flow(A4, B4, 6, (TCP_SPORT, 5432), 1),
        flow(A6, B6, 58, (0, 0), 0),
        flow(A4, B4, 17, (UDP4_SPORT, 9999), 1, action=None),
        flow(A4, B4, 1, (0, 0), 1),
        flow(A6, B6, 17, (UDP6_SPORT, 53), 1),
    ]


def test_file_source_reads_a_saved_listing(tmp_path: Path) -> None:
    saved = tmp_path / "web1.txt"
    shutil.copy(DATA / "extended.txt", saved)
    os.utime(saved, (NOW, NOW))
    source = ConntrackFileSource()
    assert isinstance(source, FlowSource) and source.name == "conntrack"
    problems: list[Diagnostic] = []
    records = list(source.read(str(saved), problems))
    assert problems == []
    expected = parse_conntrack(saved.read_text(), "web1", [], now=NOW)  # observer: the stem; time: saved at
    assert records == expected and len(records) == 5
    with pytest.raises(FlowLogError, match=r"cannot read the conntrack listing .*nope\.txt"):
        list(source.read(str(tmp_path / "nope.txt"), problems))


# ------------------------------------------------------------------ malformed lines


def test_malformed_lines_are_diagnostics_with_line_numbers() -> None:
    good = (DATA / "extended.txt").read_text().splitlines()
    tcp = next(line for line in good if " tcp " in line)
    lines = [
        good[0],
        "garbage",
        tcp.replace(f"dst={B4} ", "", 1),  # the original tuple without dst=
        tcp.replace(f"src={A4}", "src=10.77.0.300", 1),  # not an address
        tcp.replace(f"src={A4}", f"src={A6}", 1),  # an IPv6 address in an ipv4 entry
        tcp.replace(f"sport={TCP_SPORT}", "sport=70000", 1),  # not a port
        tcp.replace(" packets=5 bytes=272 src=", " packets=5 bytes=272 bogus src=", 1),  # between the tuples
        "[1796555151.361438]\t    [NEW] ipv4     2 icmp     1 30 src=127.0.0.1 dst=127.0.0.1 type=8 code=0 id=1"
        " [UNREPLIED] src=127.0.0.1 dst=127.0.0.1 type=0 code=0 id=1",  # conntrack -E -o timestamp
        "",
        *good[1:],
    ]
    problems: list[Diagnostic] = []
    records = parse_conntrack("\n".join(lines) + "\n", "host-a", problems, source="saved.txt", now=NOW)
    assert len(records) == len(good)  # the rest parsed
    assert [(p.location, p.code) for p in problems] == [(Location("saved.txt", n), "conntrack") for n in range(2, 9)]
    messages = [p.message for p in problems]
    assert "two src=" in messages[0] and "expected dst=" in messages[1]
    assert "'10.77.0.300' is not an IP address" in messages[2] and "not an IPv4 address" in messages[3]
    assert "sport='70000' is not a number up to 65535" in messages[4]
    assert "unexpected 'bogus' between the original and the reply tuple" in messages[5]
    assert "conntrack -E" in messages[6]


def test_icmp_and_other_protocols_have_no_ports() -> None:
    text = (
        "ipv4     2 gre      47 179 src=192.0.2.1 dst=192.0.2.2 srckey=0x0 dstkey=0x0 "
        "src=192.0.2.2 dst=192.0.2.1 srckey=0x0 dstkey=0x0 [ASSURED] mark=0 use=1\n"
        "ipv4     2 unknown  253 599 src=192.0.2.1 dst=192.0.2.2 src=192.0.2.2 dst=192.0.2.1 mark=0 use=1\n"
        "ipv6     10 sctp     132 3 ESTABLISHED src=2001:db8::1 dst=2001:db8::2 sport=1000 dport=2000 "
        "src=2001:db8::2 dst=2001:db8::1 sport=2000 dport=1000 [ASSURED] mark=0 use=1\n"
    )
    problems: list[Diagnostic] = []
    records = parse_conntrack(text, "h", problems, now=NOW)
    assert problems == []
    assert [(r.protocol, r.src_port, r.dst_port) for r in records] == [(47, 0, 0), (253, 0, 0), (132, 1000, 2000)]


# ------------------------------------------------------------------ the driver: read_flows


class FakeRunner:
    """A runner that answers every command with one result (for the error paths)."""

    def __init__(self, result: CommandResult) -> None:
        self.result = result
        self.commands: list[str] = []

    def run(self, command: str, *, stdin: str | None = None, timeout: float, check: bool = True) -> CommandResult:
        self.commands.append(command)
        return self.result

    def close(self) -> None:
        return None


def fake_driver(result: CommandResult) -> NftablesDriver:
    context = PointContext(POINT, "nftables", Connection("192.0.2.10", 22, "root"), {}, 5.0)
    return NftablesDriver(context, runner=FakeRunner(result))


@pytest.mark.parametrize("result", [
    CommandResult(127, "", "sh: 1: conntrack: not found\n"),
    CommandResult(1, "", "sudo: /usr/sbin/conntrack: command not found\n"),
])
def test_missing_conntrack_names_the_point_and_the_package(result: CommandResult) -> None:
    driver = fake_driver(result)
    assert isinstance(driver, FlowReadingDriver)
    with pytest.raises(PermanentDriverError, match=rf"conntrack not found on {POINT}: install conntrack-tools "
                                                   r"\(Debian: conntrack\)"):
        driver.read_flows([])


def test_conntrack_failure_is_permanent_with_its_message() -> None:
    driver = fake_driver(CommandResult(1, "", "conntrack v1.4.7 (conntrack-tools): Operation not permitted\n"))
    with pytest.raises(PermanentDriverError, match="Operation not permitted"):
        driver.read_flows([])
    assert driver.runner.commands == ["conntrack -L -o extended"]  # type: ignore[attr-defined]


@needs_conntrack
def test_read_flows_local_transport_without_conntrack_on_path(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bin").mkdir()
    for tool in ("ip", "sh"):  # a PATH with what the local transport needs, but no conntrack
        (tmp_path / "bin" / tool).symlink_to(shutil.which(tool) or tool)
    with namespace("l") as ns, monkeypatch.context() as patch:
        driver = driver_in(ns)
        patch.setenv("PATH", str(tmp_path / "bin"))
        with pytest.raises(PermanentDriverError, match=f"conntrack not found on {POINT}: install conntrack-tools"):
            driver.read_flows([])


@needs_conntrack
def test_read_flows_local_transport_with_sudo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Local transport as a user who is not root: conntrack runs as ``sudo -n ip netns exec NS
    /usr/sbin/conntrack -L -o extended`` — a fixed command line — and nothing else runs under sudo."""
    sudo_log = fake_sudo(tmp_path, monkeypatch)
    with namespace("a") as a, namespace("b") as b, veth_pair(a, b, (A4, A6), (B4, B6)):
        track(b)
        with serving(b, TCP_SERVER, B4, 5432):
            python_in(a, TCP_CLIENT, B4, 5432, A4, TCP_SPORT)
        with monkeypatch.context() as patch:
            patch.setattr(os, "geteuid", lambda: 1000)  # as a user that is not root: the sudo path
            driver = driver_in(b, point="host-b", sudo=True)
        problems: list[Diagnostic] = []
        records = driver.read_flows(problems)
    assert problems == []
    assert [key(r) for r in records] == [(A4, B4, 6, TCP_SPORT, 5432, "accept", "src")]
    assert records[0].observer == "host-b" and records[0].packets > 0
    assert sudo_log.read_text().splitlines() == [f"-n ip netns exec {b} /usr/sbin/conntrack -L -o extended"]


# ------------------------------------------------------------------ over real SSH


@contextmanager
def sshd_in(ns: str, directory: Path) -> Iterator[SshdNamespace]:
    """sshd (root login with a fresh key) in this module's namespace ``ns``, reached on a loopback port through a
    socat forwarder; both stopped by PID on exit (what tests.nft_helpers.sshd_namespace does in its own)."""
    client_key = ssh_keygen(directory / "client_key")
    host_key = ssh_keygen(directory / "host_key")
    port = _free_loopback_port()
    target = f"EXEC:ip netns exec {ns} socat STDIO TCP\\:127.0.0.1\\:22"
    forwarder = subprocess.Popen(["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr", target],
                                 start_new_session=True, stderr=subprocess.DEVNULL)
    lab = SshdNamespace(ns, port, directory, client_key, host_key)
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()
        stop_process(forwarder, group=True)


@dataclass
class SshHost:
    """A host ``host-s`` (namespace ``ns`` with sshd and conntrack on) and a peer namespace on a veth pair."""

    sshd: SshdNamespace
    peer: str


@pytest.fixture
def ssh_host(tmp_path: Path) -> Iterator[SshHost]:
    if not (sshd_available() and shutil.which("conntrack")):
        pytest.skip("needs root, nft, conntrack, sshd, socat and ssh-keygen")
    with namespace("s") as host, namespace("p") as peer, veth_pair(host, peer, (B4, B6), (A4, A6)), \
            sshd_in(host, tmp_path) as sshd:
        track(host)
        yield SshHost(sshd, peer)


def ssh_driver(sshd: SshdNamespace, **settings: Any) -> NftablesDriver:
    connection = Connection("127.0.0.1", sshd.port, "root")
    context = PointContext("host-s", "nftables", connection, {"key_file": str(sshd.client_key), **settings}, 10.0)
    return NftablesDriver(context)


def inbound_and_outbound(host: str, peer: str) -> None:
    """The peer opens TCP to the host (5432), the host opens TCP to the peer (8080) and pings it over IPv6."""
    with serving(host, TCP_SERVER, B4, 5432):
        python_in(peer, TCP_CLIENT, B4, 5432, A4, TCP_SPORT)
    with serving(peer, TCP_SERVER, A6, 8080):
        python_in(host, TCP_CLIENT, A6, 8080, B6, 40080)
    python_in(host, PING, A6, ICMP_ID)


@needs_sshd
def test_read_flows_over_the_drivers_ssh_session(ssh_host: SshHost) -> None:
    inbound_and_outbound(ssh_host.sshd.ns, ssh_host.peer)
    driver = ssh_driver(ssh_host.sshd)
    try:
        driver.fetch()
        runner = driver.runner
        assert isinstance(runner, SshRunner)
        transport = runner._client.get_transport()
        problems: list[Diagnostic] = []
        records = driver.read_flows(problems)
        assert runner._client.get_transport() is transport  # the driver's one SSH session, no second connection
    finally:
        driver.close()
    assert problems == []
    found = {key(r) for r in records}
    assert {
        (A4, B4, 6, TCP_SPORT, 5432, "accept", "src"),  # inbound: the peer opened it
        (B6, A6, 6, 40080, 8080, "accept", "src"),  # outbound: the host opened it
        (B6, A6, 58, 0, 0, "accept", "src"),
    } <= found
    ssh = [r for r in records if r.dst_port == 22]  # the session itself (socat → sshd on the host's loopback)
    assert ssh and all(r.src == r.dst == "127.0.0.1" and r.initiator == "src" for r in ssh)
    assert all(r.observer == "host-s" and r.packets > 0 for r in records)


@needs_sshd
def test_read_flows_through_sudo_runs_one_fixed_conntrack_line(ssh_host: SshHost, tmp_path: Path) -> None:
    inbound_and_outbound(ssh_host.sshd.ns, ssh_host.peer)
    sudo_log, commands = recording_sshd(ssh_host.sshd)
    driver = ssh_driver(ssh_host.sshd, sudo=True)
    driver.runner.sudo = True  # type: ignore[attr-defined]  # the namespace's sshd logs in as root: force sudo
    try:
        problems: list[Diagnostic] = []
        records = driver.read_flows(problems)
    finally:
        driver.close()
    assert problems == [] and (A4, B4, 6, TCP_SPORT, 5432, "accept", "src") in {key(r) for r in records}
    assert sudo_log.read_text().splitlines() == ["-n /usr/sbin/conntrack -L -o extended"]  # the sudoers line
    sent = [path.read_text() for path in commands.iterdir()]
    assert len(sent) == 1 and sent[0].startswith("sh -c ")  # the shell runs as the login user
    assert 'conntrack() { sudo -n /usr/sbin/conntrack "$@"; }' in sent[0]


@needs_conntrack
def test_nothing_is_tracked_without_a_conntrack_rule() -> None:
    """Why the tests install ``inet cttest``: a fresh namespace tracks nothing until a rule uses conntrack."""
    with namespace("n") as ns:
        python_in(ns, PING, "127.0.0.1", ICMP_ID)
        assert in_ns(ns, "conntrack", "-L", "-o", "extended").stdout == ""
        in_ns(ns, "nft", "-f", "-", stdin=CT_TABLE)
        python_in(ns, PING, "127.0.0.1", ICMP_ID)
        problems: list[Diagnostic] = []
        records = parse_conntrack(in_ns(ns, "conntrack", "-L", "-o", "extended").stdout, "n", problems, now=NOW)
    assert problems == [] and [key(r) for r in records] == [("127.0.0.1", "127.0.0.1", 1, 0, 0, "accept", "src")]


def test_a_connection_picked_up_mid_stream_from_the_listeners_side_has_no_initiator() -> None:
    """conntrack's original direction is the first packet it saw: an SSH session already open when tracking
    began may be recorded listener first (sport 22 → an ephemeral port). It is not asserted backwards."""
    line = ("ipv4     2 tcp      6 431999 ESTABLISHED src=10.20.3.11 dst=10.0.0.10 sport=22 dport=34752 "
            "src=10.0.0.10 dst=10.20.3.11 sport=34752 dport=22 [ASSURED] mark=0 use=1")
    forward = ("ipv4     2 tcp      6 431999 ESTABLISHED src=10.0.0.10 dst=10.20.3.11 sport=34752 dport=22 "
               "src=10.20.3.11 dst=10.0.0.10 sport=22 dport=34752 [ASSURED] mark=0 use=1")
    problems: list[Diagnostic] = []
    backwards, opened = parse_conntrack(f"{line}\n{forward}\n", "db-prod-01", problems, now=1_800_000_000)
    assert problems == [] and backwards.initiator is None and opened.initiator == "src"
