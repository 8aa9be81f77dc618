"""Linux connection tracking tables as flows: ``conntrack -L`` output, read over the nftables driver's SSH session
(:meth:`drivers.nftables.NftablesDriver.read_flows`) or from a saved file (:class:`ConntrackFileSource`, ``conntrack``).

One line per tracked connection, as conntrack-tools prints it (libnetfilter_conntrack's default output)::

    ipv4     2 tcp      6 119 TIME_WAIT src=10.99.0.1 dst=10.99.0.2 sport=32942 dport=5432 packets=6 bytes=325 \
src=10.99.0.2 dst=10.99.0.1 sport=5432 dport=32942 packets=5 bytes=270 [ASSURED] mark=0 use=1

``-o extended`` prints the layer-3 name and number first (``ipv4 2`` / ``ipv6 10``); plain ``conntrack -L`` starts
at the layer-4 name and number.  Then the seconds to expiry, the TCP/SCTP/DCCP state, and two tuples: the
*original* direction (the packet that created the entry: its sender opened the connection) and the *reply*
direction, each ``src= dst=`` plus ``sport= dport=`` (TCP, UDP, UDP-Lite, SCTP, DCCP), ``type= code= id=`` (ICMP,
ICMPv6), ``srckey= dstkey=`` (GRE) or nothing (other protocols), and ``packets= bytes=`` only when accounting is on
(sysctl ``net.netfilter.nf_conntrack_acct=1``).  ``[UNREPLIED]`` after the original tuple means no reply was seen.
What follows the reply tuple — ``[ASSURED]``, ``mark=``, ``zone=``, ``delta-time=`` (with
``nf_conntrack_timestamp=1``), ``[start=<ctime>]`` (``-o ktimestamp``), ``use=``, ``id=`` (``-o id``),
``labels=`` — is ignored except ``delta-time``.  The summary conntrack writes to stderr ("conntrack v1.4.7
(conntrack-tools): 3 flow entries have been shown.") is skipped should it be in the text.  Event lines
(``conntrack -E``: ``[NEW]``, ``[UPDATE]``, ``[DESTROY]``, with ``-o timestamp`` an epoch first) are not a
listing — the same connection appears once per event — and are reported, not read.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from orchestrator.model import TCP, Diagnostic, FlowLogError, FlowRecord, Location

CODE = "conntrack"
L3_NUMBERS = {"ipv4": 2, "ipv6": 10}  # the address family numbers -o extended prints after the name
L3_VERSIONS = {"ipv4": 4, "ipv6": 6}
PORT_PROTOCOLS = frozenset({6, 17, 33, 132, 136})  # tcp, udp, dccp, sctp, udplite: sport= dport=
# what one tuple may hold after src= dst= (each at most once; the first other key ends it: id= is also the
# entry id `-o id` prints at the end of the line, after use=)
TUPLE_KEYS = frozenset({"sport", "dport", "type", "code", "id", "srckey", "dstkey", "zone-orig", "zone-reply",
                        "packets", "bytes"})
SUMMARY = re.compile(r"^conntrack v\S+ \(conntrack-tools\):")
# `[start=Sun Dec  6 11:05:45 2026]` / `[stop=…]` (-o ktimestamp): ctime text with spaces, in the host's time zone
CTIME = re.compile(r"\[(?:start|stop)=[^\]]*\]")
EVENT = re.compile(r"^(?:\[\d+\.\d+\]\s*)?\[(?:NEW|UPDATE|DESTROY)\]")


PRIVILEGED = 1024  # a port below it is a service's (IANA system ports)
EPHEMERAL = 32768  # Linux's default ip_local_port_range starts here


class _Unreadable(ValueError):
    """One line that is not a conntrack entry (the message says why)."""


def parse_conntrack(text: str, observer: str, problems: list[Diagnostic], *, source: str = "conntrack",
                    now: int | None = None) -> list[FlowRecord]:
    """The flows of a ``conntrack -L [-o extended[,id,ktimestamp,…]]`` listing seen at ``observer``.

    Every entry is a flow opened by its original tuple's source (``initiator='src'``, addresses and ports from
    that tuple; with NAT the reply tuple holds the translated ends, not used).  ``packets``/``bytes`` are both
    directions added up, 0 when accounting is off.  conntrack keeps no start time unless timestamps are on:
    ``start``/``end`` are ``now`` (default: this machine's clock), and ``start`` is ``now - delta-time`` when the
    entry has one (the kernel's start timestamp as an age: the ``[start=…]`` text of ``-o ktimestamp`` is the same
    value as local time of an unknown time zone, so it is not read).

    A line that is not an entry is a Diagnostic in ``problems`` at ``source`` (the file, or the point) and its line
    number; the other lines are still read.
    """
    when = int(time.time()) if now is None else now
    records: list[FlowRecord] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or SUMMARY.match(line):
            continue
        try:
            records.append(_entry(line, observer, when))
        except _Unreadable as exc:
            problems.append(Diagnostic(f"unreadable conntrack entry: {exc}", Location(source, number), code=CODE))
    return records


def _entry(line: str, observer: str, now: int) -> FlowRecord:
    if EVENT.match(line):
        raise _Unreadable("an event (conntrack -E), not a table entry: save `conntrack -L -o extended` instead")
    words = CTIME.sub(" ", line).split()
    starts = [i for i, word in enumerate(words) if word.startswith("src=")]
    if len(starts) < 2:
        raise _Unreadable(f"expected an original and a reply tuple (two src=), found {len(starts)}: {line[:120]!r}")
    version, protocol = _header(words[:starts[0]])
    original, end = _tuple(words, starts[0])
    if end != starts[1]:
        raise _Unreadable(f"unexpected {words[end]!r} between the original and the reply tuple")
    reply, tail = _tuple(words, end)
    src, dst = (_address(original, key, version) for key in ("src", "dst"))
    for key in ("src", "dst"):
        _address(reply, key, version)
    if protocol in PORT_PROTOCOLS:
        src_port, dst_port = (_number(original, key, 65535, required=True) for key in ("sport", "dport"))
    else:
        src_port = dst_port = 0  # ICMP type/code/id, GRE keys: not ports
    packets = sum(_number(t, "packets", None) for t in (original, reply))
    size = sum(_number(t, "bytes", None) for t in (original, reply))
    trailing = {name: value for name, sep, value in (w.partition("=") for w in words[tail:]) if sep}
    delta = _number(trailing, "delta-time", None)
    # Listed entries are confirmed ones: conntrack confirms an entry only once its first packet got through every
    # hook of this host (input or postrouting), after the filter chains — so the host accepted the flow.
    # [UNREPLIED]: nothing came back. The host let it out (or in), but whether the flow was allowed end to end
    # (a firewall further on dropping it, a port nobody listens on) is unknown: no action rather than a guess.
    action = None if "[UNREPLIED]" in words else "accept"
    # The original direction is the first packet conntrack saw. A TCP connection already open when tracking
    # began (a ct rule added under a running session) is picked up mid-stream (nf_conntrack_tcp_loose), quite
    # possibly from the listener's side: a privileged source port talking to an ephemeral one says that happened,
    # so who opened it is left to discover's other evidence rather than asserted backwards.
    backwards = protocol == TCP and src_port < PRIVILEGED and dst_port >= EPHEMERAL
    try:
        return FlowRecord(max(now - delta, 0), now, src, dst, protocol, src_port, dst_port, packets, size,
                          action=action, initiator=None if backwards else "src", observer=observer)
    except ValueError as exc:
        raise _Unreadable(str(exc)) from exc


def _header(words: list[str]) -> tuple[int | None, int]:
    """(IP version or None, protocol number) from what precedes the first tuple."""
    version = None
    if words and words[0] in L3_NUMBERS:  # -o extended: "ipv4 2 tcp 6 …"
        if len(words) < 2 or words[1] != str(L3_NUMBERS[words[0]]):
            raise _Unreadable(f"layer 3 {' '.join(words[:2])!r} is not ipv4 2 or ipv6 10")
        version = L3_VERSIONS[words[0]]
        words = words[2:]
    if len(words) < 2 or not words[1].isdigit() or int(words[1]) > 255:
        raise _Unreadable(f"expected the protocol name and number first, not {' '.join(words[:2])!r}")
    return version, int(words[1])


def _tuple(words: list[str], start: int) -> tuple[dict[str, str], int]:
    """The key=value fields of the tuple at ``words[start]`` (``src=`` first, then ``dst=``) and where it ends."""
    fields: dict[str, str] = {}
    index = start
    for key in ("src", "dst"):
        name, sep, value = words[index].partition("=") if index < len(words) else ("", "", "")
        if name != key or not sep:
            got = repr(words[index]) if index < len(words) else "the end of the line"
            raise _Unreadable(f"expected {key}= at word {index + 1}, found {got}")
        fields[key] = value
        index += 1
    while index < len(words):
        word = words[index]
        if word == "[UNREPLIED]":  # between the original tuple and the reply tuple
            index += 1
            continue
        name, sep, value = word.partition("=")
        if not sep or name not in TUPLE_KEYS or name in fields:
            break
        fields[name] = value
        index += 1
    return fields, index


def _address(fields: dict[str, str], key: str, version: int | None) -> str:
    text = fields[key]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise _Unreadable(f"{key}={text!r} is not an IP address") from None
    if version is not None and address.version != version:
        raise _Unreadable(f"{key}={text} is not an IPv{version} address (the entry says ipv{version})")
    return str(address)


def _number(fields: dict[str, str], key: str, maximum: int | None, *, required: bool = False) -> int:
    """``fields[key]`` as a decimal number (0 when absent and not ``required``) at most ``maximum``."""
    text = fields.get(key)
    if text is None:
        if required:
            raise _Unreadable(f"no {key}=")
        return 0
    if not text.isascii() or not text.isdigit() or (maximum is not None and int(text) > maximum):
        raise _Unreadable(f"{key}={text!r} is not a number" + (f" up to {maximum}" if maximum is not None else ""))
    return int(text)


class ConntrackFileSource:
    """A saved ``conntrack -L -o extended`` listing (plain ``conntrack -L`` works too), one file per host.

    The observer is the file's stem (``web1.txt`` → ``web1``) and the entries' time is the file's modification
    time (when the listing was saved; ``delta-time`` counts back from it).
    """

    name: ClassVar[str] = "conntrack"

    def read(self, location: str, problems: list[Diagnostic]) -> Iterator[FlowRecord]:
        """The entries of the file at ``location``; an unreadable line is a Diagnostic (file, line)."""
        path = Path(location)
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
            saved = int(path.stat().st_mtime)
        except OSError as exc:
            raise FlowLogError(f"cannot read the conntrack listing {location}: {exc.strerror or exc}") from exc
        yield from parse_conntrack(text, path.stem, problems, source=location, now=saved)
