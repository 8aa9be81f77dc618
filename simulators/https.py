"""Serving a test double over HTTPS on loopback: a throw-away trustme CA, its certificate for 127.0.0.1 and
localhost, a threading HTTP server, the CA written where the client's ``ca_bundle`` can name it."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import trustme


@contextmanager
def serving_https(handler: type[BaseHTTPRequestHandler], ca_file: Path, *, address: str = "127.0.0.1",
                  port: int = 0, name: str = "https-double") -> Iterator[str]:
    """Serve ``handler`` on ``address:port`` (default: a free port) over HTTPS until the block ends; yields the
    base URL (``https://address:port``) once the CA is written to ``ca_file``."""
    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    server = ThreadingHTTPServer((address, port), handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    ca.cert_pem.write_to_path(str(ca_file))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True)
    thread.start()
    try:
        yield f"https://{address}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
