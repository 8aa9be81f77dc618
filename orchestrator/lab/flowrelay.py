"""``python -m orchestrator.lab.flowrelay``: carries the NetFlow/IPFIX that softflowd exports inside the lab's
switch namespace out to a collector address in the host's own namespace, and keeps softflowd's capture moving.

Started by the lab in the host's namespace as ``python -m orchestrator.lab.flowrelay --netns <switch> --bridge br0
--listen PORT --forward HOST:PORT``: it enters the switch namespace to bind the receiving socket (127.0.0.1:PORT,
where softflowd sends) and a raw socket on the bridge, returns, and opens the sending socket — each socket keeps
the namespace it was made in.

softflowd 1.1.0 hands packets to its flow table only when libpcap returns a full capture block (no immediate
mode; https://github.com/irino/softflowd/pull/71), which a quiet lab never fills.  Every ``--flush`` seconds the
relay puts a burst of frames of the local experimental EtherType 0x88B5 (IEEE 802 "local experimental") on the
bridge: softflowd counts them as non-IP and ignores them, and the block they fill carries the lab's real
packets with it; with each flush it also repeats the exporter's last IPFIX templates.  Runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import select
import signal
import socket
import struct
import sys
import time

CLONE_NEWNET = 0x40000000
FLUSH_FRAME = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + b"\x00" * 46  # broadcast, local ethertype
FLUSH_FRAMES = 4000


def template_message(datagram: bytes) -> bytes | None:
    """An IPFIX message holding only ``datagram``'s template and options-template sets (ids 2 and 3), or None.

    Over UDP an exporter must resend its templates now and then (RFC 7011, section 8.4); softflowd does so every
    few messages, which on a quiet lab can be minutes.  The relay repeats the last ones with every flush, so a
    collector started after the lab learns them within seconds."""
    if len(datagram) < 16 or datagram[:2] != b"\x00\x0a":
        return None
    sets, offset = [], 16
    while offset + 4 <= len(datagram):
        set_id, length = struct.unpack_from("!HH", datagram, offset)
        if length < 4 or offset + length > len(datagram):
            break
        if set_id in (2, 3):
            sets.append(datagram[offset:offset + length])
        offset += length
    if not sets:
        return None
    body = b"".join(sets)
    return datagram[:2] + struct.pack("!H", 16 + len(body)) + datagram[4:16] + body


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns failed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.lab.flowrelay", description=__doc__)
    parser.add_argument("--netns", required=True, help="the switch namespace (as `ip netns` names it)")
    parser.add_argument("--bridge", required=True)
    parser.add_argument("--listen", type=int, required=True, help="UDP port on 127.0.0.1 (switch namespace)")
    parser.add_argument("--forward", required=True, help="HOST:PORT in the host's namespace")
    parser.add_argument("--flush", type=float, default=5.0, help="seconds between capture flushes")
    args = parser.parse_args(argv)
    host, _, port = args.forward.rpartition(":")
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    switch = os.open(f"/run/netns/{args.netns}", os.O_RDONLY)
    _setns(switch)  # the receiving and the raw socket belong to the switch namespace …
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", args.listen))
    flusher = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    flusher.bind((args.bridge, 0))
    _setns(home)  # … the sending one to the host's
    os.close(home)
    os.close(switch)
    sender = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    target = (host.strip("[]"), int(port))
    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"relaying 127.0.0.1:{args.listen} (switch namespace) to {args.forward}", flush=True)
    next_flush = time.monotonic() + args.flush
    templates: bytes | None = None
    while running:
        ready, _, _ = select.select([receiver], [], [], 0.5)
        if ready:
            datagram = receiver.recv(65535)
            templates = template_message(datagram) or templates
            with contextlib.suppress(OSError):  # no collector listening there now: NetFlow is fire-and-forget
                sender.sendto(datagram, target)
        if time.monotonic() >= next_flush:
            if templates:
                with contextlib.suppress(OSError):
                    sender.sendto(templates, target)
            for _ in range(FLUSH_FRAMES):
                flusher.send(FLUSH_FRAME)
            next_flush = time.monotonic() + args.flush
    return 0


if __name__ == "__main__":
    sys.exit(main())
