"""How shell commands reach a host — SSH (paramiko) or this machine — with foreign errors translated once, here."""

from __future__ import annotations

import os
import select
import shlex
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import paramiko

from drivers.nftables.layout import DRIVER
from orchestrator.model import Connection, PermanentDriverError, TransientDriverError

HOST_KEY_POLICIES = ("accept-new", "strict")
TRANSIENT_NFT_ERRORS = ("Resource temporarily unavailable", "Interrupted system call")
CHUNK = 65536


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What one command did: exit status and its decoded output."""

    rc: int
    stdout: str
    stderr: str


class Runner(Protocol):
    """Runs one shell command (``sh -c``) on the point; raises only DriverError subclasses."""

    def run(self, command: str, *, stdin: str | None = None, timeout: float, check: bool = True) -> CommandResult:
        """Run ``command``; with ``check`` a nonzero exit raises PermanentDriverError carrying stderr."""
        ...

    def close(self) -> None:
        """Drop the session (safe to call twice)."""
        ...


def checked(result: CommandResult, command: str, point: str) -> CommandResult:
    """``result`` when the command succeeded; otherwise the DriverError that says why, with its stderr."""
    if result.rc == 0:
        return result
    message = result.stderr.strip() or result.stdout.strip() or "(no output)"
    lines = [line for line in command.strip().splitlines() if line and not line.startswith("set -")]
    first = lines[0] if lines else command
    text = f"command `{first[:100]}` failed (exit {result.rc}): {message}"
    if any(marker in message for marker in TRANSIENT_NFT_ERRORS):
        raise TransientDriverError(text, point=point, driver=DRIVER)
    raise PermanentDriverError(text, point=point, driver=DRIVER)


class LocalRunner:
    """Commands on this machine (optionally inside a network namespace): for tests and for the orchestrator's host."""

    def __init__(self, point: str, *, netns: str | None = None, sudo: bool = False) -> None:
        self.point = point
        self.prefix: list[str] = []
        if sudo and os.geteuid() != 0:
            self.prefix += ["sudo", "-n"]
        if netns:
            self.prefix += ["ip", "netns", "exec", netns]

    def run(self, command: str, *, stdin: str | None = None, timeout: float, check: bool = True) -> CommandResult:
        argv = [*self.prefix, "sh", "-c", command]
        try:
            done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            message = f"command timed out after {timeout:g}s"
            raise TransientDriverError(message, point=self.point, driver=DRIVER) from exc
        except OSError as exc:
            raise PermanentDriverError(f"cannot start {argv[0]}: {exc}", point=self.point, driver=DRIVER) from exc
        result = CommandResult(done.returncode, done.stdout, done.stderr)
        return checked(result, command, self.point) if check else result

    def close(self) -> None:
        return None


class _HostKeyRejected(paramiko.SSHException):  # type: ignore[misc]
    """The server's host key is not in the known hosts and the policy is strict."""


class _RejectUnknown(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        raise _HostKeyRejected(f"host key of {hostname} ({key.get_name()}) is not in known_hosts")


class SshRunner:
    """Commands over one reused SSH connection (paramiko), opened on first use and kept until ``close``."""

    def __init__(
        self,
        point: str,
        connection: Connection,
        *,
        key_file: str | None = None,
        host_key_policy: str = "accept-new",
        known_hosts: str | None = None,
        sudo: bool = False,
        connect_timeout: float = 10.0,
    ) -> None:
        if host_key_policy not in HOST_KEY_POLICIES:
            raise PermanentDriverError(
                f"host_key_policy {host_key_policy!r}: use one of {', '.join(HOST_KEY_POLICIES)}",
                point=point,
                driver=DRIVER,
            )
        self.point = point
        self.connection = connection
        self.key_file = os.path.expandvars(os.path.expanduser(key_file)) if key_file else None
        self.host_key_policy = host_key_policy
        self.known_hosts = os.path.expandvars(os.path.expanduser(known_hosts)) if known_hosts else None
        self.sudo = sudo and connection.username != "root"
        self.connect_timeout = connect_timeout
        self._client: Any = None

    def _error(self, cls: type[PermanentDriverError] | type[TransientDriverError], message: str) -> Exception:
        return cls(f"ssh {self.connection.hostname}: {message}", point=self.point, driver=DRIVER)

    def _connect(self) -> Any:
        if self._client is not None:
            transport = self._client.get_transport()
            if transport is not None and transport.is_active():
                return self._client
            self.close()
        client = paramiko.SSHClient()
        if self.known_hosts:
            client.load_host_keys(self.known_hosts)
        else:
            client.load_system_host_keys()
        client.set_missing_host_key_policy(
            paramiko.AutoAddPolicy() if self.host_key_policy == "accept-new" else _RejectUnknown()
        )
        conn = self.connection
        pkey = self._load_key()
        try:
            client.connect(
                conn.hostname,
                port=conn.port or 22,
                username=conn.username,
                password=conn.password,
                pkey=pkey,
                look_for_keys=pkey is None and conn.password is None,
                allow_agent=pkey is None and conn.password is None,
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
            )
        except paramiko.AuthenticationException as exc:
            client.close()
            raise self._error(PermanentDriverError, f"authentication failed for {conn.username}: {exc}") from exc
        except (paramiko.BadHostKeyException, _HostKeyRejected) as exc:
            client.close()
            raise self._error(PermanentDriverError, f"host key rejected: {exc}") from exc
        except (paramiko.SSHException, EOFError, OSError) as exc:  # OSError: refused, unreachable, socket timeout
            client.close()
            raise self._error(TransientDriverError, f"cannot connect: {exc or type(exc).__name__}") from exc
        self._client = client
        return client

    def _load_key(self) -> Any:
        if self.key_file is None:
            return None
        try:
            return paramiko.PKey.from_path(self.key_file, passphrase=self.connection.password)
        except (OSError, paramiko.SSHException, ValueError) as exc:
            raise self._error(PermanentDriverError, f"cannot load key file {self.key_file}: {exc}") from exc

    def run(self, command: str, *, stdin: str | None = None, timeout: float, check: bool = True) -> CommandResult:
        wrapped = f"{'sudo -n ' if self.sudo else ''}sh -c {shlex.quote(command)}"
        client = self._connect()
        try:
            result = self._exec(client, wrapped, stdin, timeout)
        except TimeoutError as exc:
            self.close()
            raise self._error(TransientDriverError, f"command timed out after {timeout:g}s") from exc
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self.close()
            raise self._error(TransientDriverError, f"session dropped: {exc or type(exc).__name__}") from exc
        return checked(result, command, self.point) if check else result

    def _exec(self, client: Any, command: str, stdin: str | None, timeout: float) -> CommandResult:
        deadline = time.monotonic() + timeout
        channel = client.get_transport().open_session(timeout=timeout)
        try:
            channel.settimeout(timeout)
            channel.exec_command(command)
            if stdin is not None:
                channel.sendall(stdin.encode())
            channel.shutdown_write()
            out, err = bytearray(), bytearray()
            while True:  # both streams, so a full stderr window cannot stall stdout
                if channel.recv_ready():
                    out += channel.recv(CHUNK)
                elif channel.recv_stderr_ready():
                    err += channel.recv_stderr(CHUNK)
                elif channel.exit_status_ready() and (channel.eof_received or channel.closed):
                    break  # sshd may send the exit status before the last output: wait for EOF too
                elif time.monotonic() > deadline:
                    raise TimeoutError
                else:
                    select.select([channel], [], [], 0.1)
            status = channel.recv_exit_status()
        finally:
            channel.close()
        if status < 0:
            raise EOFError("the channel closed without an exit status")
        return CommandResult(status, out.decode(errors="replace"), err.decode(errors="replace"))

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()


def make_runner(point: str, connection: Connection, settings: Mapping[str, Any], timeout: float) -> Runner:
    """The runner the point's settings ask for: ``transport: ssh`` (default) or ``local`` (``netns`` optional)."""
    transport = settings.get("transport", "ssh")
    sudo = bool(settings.get("sudo", False))
    if transport == "local":
        netns = settings.get("netns")
        return LocalRunner(point, netns=str(netns) if netns else None, sudo=sudo)
    if transport == "ssh":
        return SshRunner(
            point,
            connection,
            key_file=settings.get("key_file"),
            host_key_policy=str(settings.get("host_key_policy", "accept-new")),
            known_hosts=settings.get("known_hosts"),
            sudo=sudo,
            connect_timeout=timeout,
        )
    raise PermanentDriverError(f"transport {transport!r}: use ssh or local", point=point, driver=DRIVER)
