"""Which SSH host keys a driver trusts: one host-key policy (strict, accept-new, insecure) for every SSH driver."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, ValidationError

from drivers.endpoints import causes
from orchestrator.model import DriverSettings, PermanentDriverError, is_secret_key

if TYPE_CHECKING:  # paramiko loads on first connection, not with the driver (validate and compile never connect)
    import paramiko

STRICT, ACCEPT_NEW, INSECURE = "strict", "accept-new", "insecure"
POLICIES = (ACCEPT_NEW, STRICT, INSECURE)
DEFAULT_POLICY = ACCEPT_NEW
Path_ = Annotated[str, Field(min_length=1, pattern=r"^[^\x00-\x1f\x7f]+$")]


class SshSettings(DriverSettings):
    """Settings every SSH driver reads: how it logs in and how it verifies the host (this module)."""

    key_file: Path_ | None = None
    known_hosts: Path_ | None = None
    host_key_policy: Literal["accept-new", "strict", "insecure"] = DEFAULT_POLICY


def refuse_connection_host_key_policy(connection: Any, *, point: str, driver: str) -> None:
    """The old, undocumented place of ``host_key_policy`` (a connection option): refused, never silently ignored."""
    if "host_key_policy" in connection.extras:
        raise PermanentDriverError(f"{point}: the connection option host_key_policy is not read: set "
                                   "data.microseg.settings.host_key_policy (and known_hosts) instead",
                                   point=point, driver=driver)


def settings_error(exc: ValidationError, *, point: str, driver: str) -> PermanentDriverError:
    """A settings model's validation error as the driver's permanent error, naming each bad setting and the
    value it got (shortened; never the value of a secret-named setting)."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "settings"
        got = ""
        if error["type"] != "missing" and not any(is_secret_key(p) for p in error["loc"] if isinstance(p, str)):
            shown = repr(error.get("input"))
            got = f" (got {shown[:77] + '...' if len(shown) > 80 else shown})"
        problems.append(f"{where}: {error['msg']}{got}")
    return PermanentDriverError(f"{point}: settings: {'; '.join(problems)}", point=point, driver=driver)
KNOWN_HOSTS_ENV = "MICROSEG_KNOWN_HOSTS"  # where accept-new records keys when settings.known_hosts is not set
DEFAULT_KNOWN_HOSTS = Path(".microseg") / "known_hosts"  # … and when the variable is not set either (cwd-relative)
USER_KNOWN_HOSTS = "~/.ssh/known_hosts"  # what strict reads when settings.known_hosts is not set
DEFAULT_SSH_PORT = 22

log = logging.getLogger(__name__)
_RECORD_LOCK = threading.Lock()  # one writer per process; the directory flock covers other processes


class HostKeyRefused(Exception):
    """The host's key is not the one known_hosts holds, or is unknown under ``strict``, or cannot be checked.

    Deliberately neither a ``paramiko.SSHException`` nor an ``OSError``: netmiko reports those as timeouts,
    and a refusal must reach the driver boundary as itself, to become a PermanentDriverError (never retried).
    """


def fingerprint(key: paramiko.PKey) -> str:
    """The key's fingerprint as OpenSSH prints it: ``SHA256:`` and the unpadded base64 of the digest."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(host: str, port: int) -> str:
    """How OpenSSH names an endpoint in known_hosts: ``host`` on port 22, ``[host]:port`` otherwise."""
    return host if port == DEFAULT_SSH_PORT else f"[{host}]:{port}"


def _expanded(path: str) -> Path:
    return Path(os.path.expandvars(os.path.expanduser(path))).absolute()


def host_key_trust(settings: SshSettings, *, point: str) -> HostKeyTrust:
    """The known_hosts file the point's (already validated) ``host_key_policy`` checks against (no I/O)."""
    policy, configured = settings.host_key_policy, settings.known_hosts
    if policy == INSECURE:
        return HostKeyTrust(point, policy, None)
    if configured:
        return HostKeyTrust(point, policy, _expanded(configured))
    if policy == STRICT:
        return HostKeyTrust(point, policy, _expanded(USER_KNOWN_HOSTS))
    return HostKeyTrust(point, policy, _expanded(os.environ.get(KNOWN_HOSTS_ENV) or str(DEFAULT_KNOWN_HOSTS)))


@dataclass(frozen=True, slots=True)
class HostKeyTrust:
    """One point's host-key policy and the known_hosts file it checks against (accept-new also records there).

    Use: load :attr:`known_hosts` into the paramiko client (paramiko then asks the server for the known key
    type first and refuses a different key with ``BadHostKeyException``), install :meth:`missing_key_policy`
    for hosts the file does not name, and turn a failed connect into a refusal with :meth:`refusal`.
    """

    point: str
    policy: str
    known_hosts: Path | None  # None: insecure, nothing is read or written

    def loadable_known_hosts(self) -> Path | None:
        """The known_hosts file to load into the client before connecting (None: none yet, or insecure)."""
        if self.known_hosts is None:
            return None
        try:
            with self.known_hosts.open("rb"):
                return self.known_hosts
        except FileNotFoundError:
            return None  # nothing known yet: every key is unknown (strict refuses it, accept-new records it)
        except OSError as exc:
            raise HostKeyRefused(f"host key rejected: cannot read known_hosts {self.known_hosts}: {exc}") from exc

    def missing_key_policy(self, host: str, port: int) -> paramiko.MissingHostKeyPolicy:
        """What paramiko calls when the loaded known_hosts does not name ``host:port``."""
        return _UnknownHostPolicy(self, host, port)

    def unknown_key(self, host: str, port: int, key: paramiko.PKey) -> None:
        """A key for an endpoint the loaded known_hosts does not name: refuse, record (accept-new) or warn."""
        if self.policy == INSECURE:
            log.warning("%s: SSH host key of %s:%d NOT verified (host_key_policy: insecure): accepted %s %s — "
                        "anyone in the path can impersonate this host", self.point, host, port, key.get_name(),
                        fingerprint(key))
            return
        if self.policy == STRICT:
            raise HostKeyRefused(
                f"host key rejected: {host}:{port} is not in {self.known_hosts} (host_key_policy: strict); it "
                f"presented {key.get_name()} {fingerprint(key)} — check that fingerprint out of band, then add the "
                f"host (ssh-keyscan -p {port} {host} >> {self.known_hosts}) or use host_key_policy: accept-new")
        self._record(host, port, key)

    def refusal(self, exc: BaseException, host: str, port: int) -> HostKeyRefused | None:
        """The host-key refusal behind a failed connect (also when netmiko re-raised it as a timeout), or None."""
        import paramiko  # noqa: PLC0415  (loaded on first use)

        for current in causes(exc):
            if isinstance(current, HostKeyRefused):
                return current
            if isinstance(current, paramiko.BadHostKeyException):
                return HostKeyRefused(self._mismatch(host, port, current.expected_key, current.key))
        return None

    # ------------------------------------------------------------------ accept-new: trust on first use

    def _record(self, host: str, port: int, key: paramiko.PKey) -> None:
        """Trust on first use: write the key to known_hosts, unless another connection recorded one meanwhile."""
        import paramiko  # noqa: PLC0415  (loaded on first use)

        path, name = self.known_hosts, known_hosts_name(host, port)
        assert path is not None  # accept-new always has a file
        try:
            with _RECORD_LOCK, _locked_directory(path.parent):
                text = path.read_text() if path.exists() else ""
                known = paramiko.HostKeys(str(path)) if text else paramiko.HostKeys()
                recorded = known.lookup(name)
                if recorded is not None:  # re-read under the lock: another point connected first
                    if recorded.get(key.get_name()) == key:
                        return
                    expected = recorded.get(key.get_name()) or next(iter(recorded.values()))
                    raise HostKeyRefused(self._mismatch(host, port, expected, key))
                separator = "" if not text or text.endswith("\n") else "\n"
                _write_atomically(path, f"{text}{separator}{name} {key.get_name()} {key.get_base64()}\n")
        except OSError as exc:
            raise HostKeyRefused(f"host key rejected: cannot record the key of {host}:{port} in {path} "
                                 f"(host_key_policy: accept-new): {exc}") from exc
        log.info("%s: first connection to %s:%d: trusted its host key %s %s and recorded it in %s", self.point,
                 host, port, key.get_name(), fingerprint(key), path)

    def _mismatch(self, host: str, port: int, expected: paramiko.PKey, presented: paramiko.PKey) -> str:
        return (f"host key rejected: {host}:{port} presented {presented.get_name()} {fingerprint(presented)} but "
                f"{self.known_hosts} holds {expected.get_name()} {fingerprint(expected)} for "
                f"{known_hosts_name(host, port)} — someone may be intercepting the connection; if the host was "
                f"really re-keyed, check the new fingerprint out of band and replace that line")


class _UnknownHostPolicy:
    """paramiko's hook for an endpoint the loaded known_hosts does not name: the trust decides (paramiko calls
    ``missing_host_key`` on whatever policy object it is given)."""

    def __init__(self, trust: HostKeyTrust, host: str, port: int) -> None:
        self.trust, self.host, self.port = trust, host, port

    def missing_host_key(self, client: Any, hostname: str, key: paramiko.PKey) -> None:
        self.trust.unknown_key(self.host, self.port, key)


@contextlib.contextmanager
def _locked_directory(directory: Path) -> Iterator[None]:
    """An exclusive flock on ``directory`` (created 0700 when missing): one writer across processes."""
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def _write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` by a complete new file (mode 0600): readers see the old file or the new one, never half."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
