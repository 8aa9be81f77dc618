"""A loopback fake of HashiCorp Vault's KV version 2 read API (a test double, never on the production path).

It follows the HTTP contract hvac's ``secrets.kv.v2.read_secret_version`` speaks:
``GET /v1/<mount>/data/<path>[?version=N]`` with the token in ``X-Vault-Token``
(and ``X-Vault-Namespace`` when one is set); 200 with Vault's response envelope
``{"request_id", "lease_id", "renewable", "lease_duration", "data": {"data": {…},
"metadata": {created_time, custom_metadata, deletion_time, destroyed, version}},
"wrap_info", "warnings", "auth", "mount_type"}``; 403 ``{"errors": ["permission
denied"]}`` for a missing or unknown token; 404 ``{"errors": []}`` for a secret
or version that does not exist, 404 with the version's metadata (and ``data:
null``) for a soft-deleted version; 404 "no handler for route" outside any
mount.  Faults (429 rate limit, 500, 503 sealed …) can be queued.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

FAULT_ERRORS = {
    429: ['request path "{path}": rate limit quota exceeded'],
    500: ["internal error"],
    502: ["bad gateway"],
    503: ["Vault is sealed"],
}


@dataclass
class _Version:
    data: dict[str, Any]
    created: str
    deleted: str = ""


@dataclass
class Seen:
    """One request the fake answered."""

    method: str
    path: str
    token: str | None
    namespace: str | None
    status: int


@dataclass
class FakeVault:
    """KV v2 mounts of secrets with versions, one valid token, and a queue of faults to answer with."""

    token: str = "s.fake-root-token"
    mounts: dict[str, dict[str, list[_Version]]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    _faults: list[tuple[int, list[str]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ set up

    def put(self, mount: str, path: str, data: dict[str, Any]) -> int:
        """Write a new version of ``mount/path`` (like ``vault kv put -mount=MOUNT PATH k=v``); its number."""
        with self._lock:
            versions = self.mounts.setdefault(mount, {}).setdefault(path, [])
            versions.append(_Version(dict(data), _now()))
            return len(versions)

    def delete_latest(self, mount: str, path: str) -> None:
        """Soft-delete the latest version (like ``vault kv delete``)."""
        with self._lock:
            self.mounts[mount][path][-1].deleted = _now()

    def fail(self, status: int, times: int = 1, errors: list[str] | None = None) -> None:
        """Answer the next ``times`` reads with ``status`` (Vault's error body for it)."""
        with self._lock:
            self._faults.extend([(status, errors if errors is not None else FAULT_ERRORS.get(status, []))] * times)

    def reads(self) -> int:
        return len(self.seen)

    # ------------------------------------------------------------------ serving

    def __enter__(self) -> FakeVault:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        token = request.headers.get("X-Vault-Token")
        status, body = self._respond(parts.path, parse_qs(parts.query), token)
        with self._lock:
            self.seen.append(Seen("GET", request.path, token, request.headers.get("X-Vault-Namespace"), status))
        raw = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(raw)))
        if status == 429:
            request.send_header("Retry-After", "1")
        request.end_headers()
        request.wfile.write(raw)

    def _respond(self, path: str, query: dict[str, list[str]], token: str | None) -> tuple[int, Any]:
        with self._lock:
            if self._faults:
                status, errors = self._faults.pop(0)
                return status, {"errors": [e.format(path=path.removeprefix("/v1/")) for e in errors]}
        if token != self.token:
            return 403, {"errors": ["permission denied"]}
        route = path.removeprefix("/v1/")
        mount = next((m for m in sorted(self.mounts, key=len, reverse=True) if route.startswith(f"{m}/data/")), None)
        if not path.startswith("/v1/") or mount is None:
            return 404, {"errors": [f'no handler for route "{route}". route entry not found.']}
        with self._lock:
            versions = self.mounts[mount].get(route.removeprefix(f"{mount}/data/"), [])
            wanted = int(query["version"][0]) if query.get("version") else len(versions)
            if not versions or not 1 <= wanted <= len(versions):
                return 404, {"errors": []}
            version = versions[wanted - 1]
        metadata = {"created_time": version.created, "custom_metadata": None, "deletion_time": version.deleted,
                    "destroyed": False, "version": wanted}
        if version.deleted:
            return 404, {"data": {"data": None, "metadata": metadata}}
        return 200, {
            "request_id": str(uuid.uuid4()), "lease_id": "", "renewable": False, "lease_duration": 0,
            "data": {"data": version.data, "metadata": metadata},
            "wrap_info": None, "warnings": None, "auth": None, "mount_type": "kv",
        }


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


VAULT_VARIABLES = ("VAULT_ADDR", "VAULT_TOKEN", "VAULT_NAMESPACE", "VAULT_CACERT", "VAULT_CAPATH", "VAULT_CLIENT_CERT",
                   "VAULT_CLIENT_KEY", "VAULT_CLIENT_TIMEOUT")
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture
def vault(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeVault]:
    """A running fake Vault the environment points at (VAULT_ADDR, VAULT_TOKEN); no ~/.vault-token is read."""
    with FakeVault() as fake:
        for name in (*VAULT_VARIABLES, *PROXY_VARIABLES):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("VAULT_ADDR", fake.url)
        monkeypatch.setenv("VAULT_TOKEN", fake.token)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
        yield fake
