"""The ``vault`` secret backend: a key of a HashiCorp Vault KV version 2 secret, read with hvac.

Reference syntax (the part after ``${vault:``)::

    MOUNT/PATH#KEY               secret/net/sw1#password   mount "secret", secret "net/sw1", key "password"
    MOUNT/data/PATH#KEY          secret/data/net/sw1#password   the API path: the same secret; a mount
                                 with '/' in its name is written this way (teams/net/data/sw1#password)
    MOUNT/PATH?version=N#KEY     a pinned version (default: the latest)

Where Vault is and who microseg is come from the environment, like the vault
CLI: ``VAULT_ADDR`` (required), ``VAULT_TOKEN`` (else the token file
``~/.vault-token`` that ``vault login`` writes), ``VAULT_NAMESPACE``,
``VAULT_CACERT`` / ``VAULT_CAPATH`` (TLS trust), ``VAULT_CLIENT_CERT`` +
``VAULT_CLIENT_KEY`` (TLS client certificate), ``VAULT_CLIENT_TIMEOUT``
(seconds, default 10).  Each secret is read once per run (all its keys serve
every point that names it).  A denied token, a missing secret or key is
permanent; throttling (429), a sealed or failing server (5xx) and an
unreachable one are transient (retried).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac  # type: ignore[import-untyped]
import requests
from hvac import exceptions as vault_errors

from orchestrator.engine.secrets import SecretLookupError

DEFAULT_TIMEOUT = 10.0
TOKEN_FILE = ".vault-token"
_REFERENCE = re.compile(r"(?P<location>[^?#]+)(?:\?version=(?P<version>[1-9][0-9]{0,9}))?#(?P<key>[^#?]+)")
_TRANSIENT = (vault_errors.RateLimitExceeded, vault_errors.InternalServerError, vault_errors.BadGateway,
              vault_errors.VaultDown, vault_errors.UnexpectedError)
_STATUS = {vault_errors.Unauthorized: 401, vault_errors.Forbidden: 403, vault_errors.InvalidPath: 404,
           vault_errors.InvalidRequest: 400, vault_errors.RateLimitExceeded: 429, vault_errors.InternalServerError: 500,
           vault_errors.VaultNotInitialized: 501, vault_errors.BadGateway: 502, vault_errors.VaultDown: 503}


@dataclass(frozen=True, slots=True)
class VaultReference:
    """One key of one KV v2 secret."""

    mount: str
    path: str
    key: str
    version: int | None = None

    @property
    def api_path(self) -> str:
        return f"{self.mount}/data/{self.path}" + (f"?version={self.version}" if self.version else "")


def parse_vault_reference(reference: str) -> VaultReference:
    """``MOUNT/PATH[?version=N]#KEY`` (or ``MOUNT/data/PATH…``); ValueError saying what is wrong."""
    match = _REFERENCE.fullmatch(reference)
    if match is None:
        raise ValueError(f"{reference!r} is not MOUNT/PATH#KEY (e.g. secret/net/sw1#password; "
                         f"?version=N before '#' pins a version)")
    location = match["location"].strip("/")
    if "/data/" in f"/{location}/":
        mount, _, path = f"/{location}/".partition("/data/")
        mount, path = mount.strip("/"), path.strip("/")
    else:
        mount, _, path = location.partition("/")
    if not mount or not path or "//" in location or any(p in (".", "..") for p in location.split("/")):
        raise ValueError(f"{reference!r} does not name a secret: MOUNT/PATH#KEY needs a mount and a path "
                         f"(e.g. secret/net/sw1#password)")
    version = match["version"]
    return VaultReference(mount, path, match["key"], int(version) if version else None)


class VaultBackend:
    """Reads KV v2 secrets through the unmodified hvac client; one client and one read per secret per run."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        self._client: hvac.Client | None = None
        self._lock = threading.Lock()
        self._secrets: dict[tuple[str, str, int | None], Mapping[str, Any]] = {}
        self._reading: dict[tuple[str, str, int | None], threading.Lock] = {}

    def check(self, reference: str) -> str | None:
        try:
            parse_vault_reference(reference)
        except ValueError as exc:
            return str(exc)
        return None

    def resolve(self, reference: str) -> str:
        try:
            ref = parse_vault_reference(reference)
        except ValueError as exc:
            raise SecretLookupError(str(exc)) from exc
        data = self._secret(ref)
        if ref.key not in data:
            keys = ", ".join(sorted(map(str, data))) or "none"
            raise SecretLookupError(f"Vault secret {ref.api_path} has no key {ref.key!r} (its keys: {keys})")
        value = data[ref.key]
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise SecretLookupError(f"key {ref.key!r} of Vault secret {ref.api_path} is not text")
        return str(value)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            self._secrets.clear()
        if client is not None:
            client.adapter.close()

    # ------------------------------------------------------------------ internals

    def _secret(self, ref: VaultReference) -> Mapping[str, Any]:
        """The key/value data of one secret version, read once per run (concurrent readers wait for the first)."""
        slot = (ref.mount, ref.path, ref.version)
        with self._lock:
            reading = self._reading.setdefault(slot, threading.Lock())
        with reading:
            with self._lock:
                cached = self._secrets.get(slot)
            if cached is not None:
                return cached
            data = self._read(ref)
            with self._lock:
                self._secrets[slot] = data
            return data

    def _read(self, ref: VaultReference) -> Mapping[str, Any]:
        client = self._connected()
        where = f"{self._environ.get('VAULT_ADDR', '')}/v1/{ref.api_path}"
        try:
            response = client.secrets.kv.v2.read_secret_version(
                path=ref.path, version=ref.version, mount_point=ref.mount, raise_on_deleted_version=True)
        except vault_errors.VaultError as exc:
            raise _translated(exc, ref, where) from exc
        except requests.exceptions.SSLError as exc:
            raise SecretLookupError(f"TLS with Vault at {self._environ.get('VAULT_ADDR')} failed: check "
                                    f"VAULT_CACERT / VAULT_CAPATH") from exc
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise SecretLookupError(f"cannot reach Vault at {self._environ.get('VAULT_ADDR')} "
                                    f"({type(exc).__name__})", transient=True) from exc
        except requests.exceptions.RequestException as exc:
            raise SecretLookupError(f"request to Vault failed ({type(exc).__name__})") from exc
        body = response.get("data") if isinstance(response, Mapping) else None
        data = body.get("data") if isinstance(body, Mapping) else None
        if not isinstance(data, Mapping):
            raise SecretLookupError(f"{where} did not answer with a KV version 2 secret (data.data): "
                                    f"is {ref.mount!r} a KV v2 mount?")
        return data

    def _connected(self) -> hvac.Client:
        with self._lock:
            if self._client is None:
                self._client = self._new_client()
            return self._client

    def _new_client(self) -> hvac.Client:
        env = self._environ
        address = env.get("VAULT_ADDR")
        if not address:
            raise SecretLookupError("VAULT_ADDR is not set (the Vault server's address, e.g. https://vault.example:8200)")
        if not address.startswith(("https://", "http://")):
            raise SecretLookupError(f"VAULT_ADDR {address!r} is not an http(s) URL")
        cert = (env["VAULT_CLIENT_CERT"], env["VAULT_CLIENT_KEY"]) if env.get("VAULT_CLIENT_CERT") else None
        if cert is not None and not cert[1]:
            raise SecretLookupError("VAULT_CLIENT_CERT is set but VAULT_CLIENT_KEY is not")
        verify: bool | str = env.get("VAULT_CACERT") or env.get("VAULT_CAPATH") or True
        return hvac.Client(url=address, token=self._token(), namespace=env.get("VAULT_NAMESPACE") or None,
                           verify=verify, cert=cert, timeout=self._timeout())

    def _token(self) -> str:
        token = self._environ.get("VAULT_TOKEN")
        if token:
            return token
        home = self._environ.get("HOME")
        path = Path(home) / TOKEN_FILE if home else None
        try:
            token = path.read_text(encoding="utf-8").strip() if path is not None and path.is_file() else ""
        except (OSError, UnicodeDecodeError) as exc:
            raise SecretLookupError(f"the Vault token file {path} cannot be read") from exc
        if not token:
            raise SecretLookupError("no Vault token: set VAULT_TOKEN (or run `vault login`: it writes ~/.vault-token)")
        return token

    def _timeout(self) -> float:
        raw = self._environ.get("VAULT_CLIENT_TIMEOUT")
        if not raw:
            return DEFAULT_TIMEOUT
        try:
            seconds = float(raw.rstrip("s"))
        except ValueError as exc:
            raise SecretLookupError(f"VAULT_CLIENT_TIMEOUT {raw!r} is not a number of seconds") from exc
        if seconds <= 0:
            raise SecretLookupError(f"VAULT_CLIENT_TIMEOUT {raw!r} must be positive")
        return seconds


def _translated(exc: vault_errors.VaultError, ref: VaultReference, where: str) -> SecretLookupError:
    """hvac's exception as a SecretLookupError: what Vault said (its error strings, never a body's data)."""
    status = _STATUS.get(type(exc))
    detail = "; ".join(str(e) for e in (exc.errors or []) if e)
    said = ", ".join(p for p in (f"HTTP {status}" if status else type(exc).__name__, detail) if p)
    if isinstance(exc, vault_errors.Forbidden | vault_errors.Unauthorized):
        return SecretLookupError(f"Vault refused the token ({said}): check VAULT_TOKEN and that its policy "
                                 f"allows read on {ref.mount}/data/{ref.path}")
    if isinstance(exc, vault_errors.InvalidPath):
        return SecretLookupError(f"no secret at {where} ({said})")
    if isinstance(exc, _TRANSIENT):
        return SecretLookupError(f"Vault is unavailable ({said})", transient=True)
    return SecretLookupError(f"Vault refused the read of {where} ({said})")
