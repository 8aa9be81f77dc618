"""The lab's service listener: ``python -m orchestrator.lab.listener --name HOST PORT …`` (dual-stack TCP)."""

from __future__ import annotations

import argparse
import contextlib
import selectors
import signal
import socket
import sys
from types import FrameType


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def serve(name: str, ports: list[int]) -> None:
    """Accept on every port (IPv4 and IPv6), send one line naming the host and port, close; forever."""
    selector = selectors.DefaultSelector()
    for port in ports:
        server = socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=128)
        server.setblocking(False)
        selector.register(server, selectors.EVENT_READ, f"microseg-lab {name} {port}\n".encode())
    while True:
        for key, _ in selector.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            with contextlib.suppress(BlockingIOError, InterruptedError):
                connection, _ = sock.accept()
                with connection, contextlib.suppress(OSError):
                    connection.sendall(key.data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.lab.listener", description=__doc__)
    parser.add_argument("--name", required=True, help="the host name written in the banner")
    parser.add_argument("ports", nargs="+", type=int, metavar="PORT")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    serve(args.name, args.ports)
    return 0


if __name__ == "__main__":
    sys.exit(main())
