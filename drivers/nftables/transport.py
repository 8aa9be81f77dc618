"""How shell commands reach a host — SSH (paramiko) or this machine — with foreign errors translated once, here.

With ``sudo: true`` the command's shell runs as the login user and only nft itself runs as root: every
``nft`` in it is a shell function running ``sudo -n /usr/sbin/nft ARGS`` (see :func:`sudo_nft`), so the
sudoers file names exact nft command lines and never a shell.  ``conntrack`` (reading the connection table,
:meth:`~drivers.nftables.NftablesDriver.read_flows`) runs the same way: ``sudo -n /usr/sbin/conntrack ARGS``.
"""

from __future__ import annotations

import os
import select
import shlex
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Protocol

from drivers.endpoints import connection_refused, refused_message
from drivers.nftables.layout import DRIVER, NftSettings
from drivers.sshtrust import HostKeyRefused, HostKeyTrust, SshSettings, host_key_trust
from orchestrator.model import Connection, PermanentDriverError, TransientDriverError

SUDO_NFT = "/usr/sbin/nft"  # what sudo runs when the `nft` setting is not an absolute path
SUDO_CONNTRACK = "/usr/sbin/conntrack"  # what sudo runs for `conntrack` (conntrack-tools' path on Debian, Fedora)
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

    def __init__(self, point: str, *, netns: str | None = None, sudo: bool = False, nft: str = "nft") -> None:
        self.point = point
        self.prefix: list[str] = []
        self.privileged: list[str] | None = None  # sudo: the argv prefix every nft call runs with
        netns_exec = ["ip", "netns", "exec", netns] if netns else []
        if sudo and os.geteuid() != 0:
            self.privileged = [*netns_exec, sudo_target(nft, point)]
        else:
            self.prefix += netns_exec
        self.nft = nft

    def run(self, command: str, *, stdin: str | None = None, timeout: float, check: bool = True) -> CommandResult:
        script = command if self.privileged is None else sudo_nft(command, self.nft, self.privileged)
        argv = [*self.prefix, "sh", "-c", script]
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


class SshRunner:
    """Commands over one reused SSH connection (paramiko), opened on first use and kept until ``close``."""

    def __init__(
        self,
        point: str,
        connection: Connection,
        *,
        key_file: str | None = None,
        host_keys: HostKeyTrust | None = None,
        sudo: bool = False,
        nft: str = "nft",
        connect_timeout: float = 10.0,
    ) -> None:
        self.point = point
        self.connection = connection
        self.key_file = os.path.expandvars(os.path.expanduser(key_file)) if key_file else None
        self.host_keys = host_keys or host_key_trust(SshSettings(), point=point)
        self.sudo = sudo and connection.username != "root"  # root needs no sudo
        self.nft = nft
        self.sudo_nft = sudo_target(nft, point) if sudo else SUDO_NFT
        self.connect_timeout = connect_timeout
        self._client: Any = None

    def _error(self, cls: type[PermanentDriverError] | type[TransientDriverError], message: str) -> Exception:
        return cls(f"ssh {self.connection.hostname}: {message}", point=self.point, driver=DRIVER)

    def _connect(self) -> Any:
        import paramiko  # noqa: PLC0415 — on first SSH use: importing the driver does not load it

        if self._client is not None:
            transport = self._client.get_transport()
            if transport is not None and transport.is_active():
                return self._client
            self.close()
        conn = self.connection
        host, port = conn.hostname, conn.port or 22
        pkey = self._load_key()
        client = paramiko.SSHClient()
        try:
            known_hosts = self.host_keys.loadable_known_hosts()
            if known_hosts is not None:  # paramiko then asks for the known key type and refuses another key
                client.load_host_keys(str(known_hosts))
            client.set_missing_host_key_policy(self.host_keys.missing_key_policy(host, port))
            client.connect(
                host,
                port=port,
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
        except (paramiko.BadHostKeyException, HostKeyRefused) as exc:
            client.close()
            refusal = self.host_keys.refusal(exc, host, port)
            raise self._error(PermanentDriverError, str(refusal or exc)) from exc
        except (paramiko.SSHException, EOFError, OSError) as exc:  # OSError: refused, unreachable, socket timeout
            client.close()
            if connection_refused(exc):  # nothing listens: retrying won't change that
                raise self._error(PermanentDriverError, refused_message(host, port)) from exc
            raise self._error(TransientDriverError, f"cannot connect: {exc or type(exc).__name__}") from exc
        self._client = client
        return client

    def _load_key(self) -> Any:
        import paramiko  # noqa: PLC0415 — on first SSH use: importing the driver does not load it

        if self.key_file is None:
            return None
        try:
            return paramiko.PKey.from_path(self.key_file, passphrase=self.connection.password)
        except (OSError, paramiko.SSHException, ValueError) as exc:
            raise self._error(PermanentDriverError, f"cannot load key file {self.key_file}: {exc}") from exc

    def run(self, command: str, *, stdin: str | None = None, timeout: float, check: bool = True) -> CommandResult:
        import paramiko  # noqa: PLC0415 — on first SSH use: importing the driver does not load it

        script = sudo_nft(command, self.nft, [self.sudo_nft]) if self.sudo else command
        wrapped = f"sh -c {shlex.quote(script)}"
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


def make_runner(point: str, connection: Connection, settings: NftSettings, timeout: float) -> Runner:
    """The runner the point's settings ask for: ``transport: ssh`` (default) or ``local`` (``netns`` optional)."""
    if settings.transport == "local":
        return LocalRunner(point, netns=settings.netns, sudo=settings.sudo, nft=settings.nft)
    return SshRunner(point, connection, key_file=settings.key_file, host_keys=host_key_trust(settings, point=point),
                     sudo=settings.sudo, nft=settings.nft, connect_timeout=timeout)


def sudo_target(nft: str, point: str) -> str:
    """The absolute nft path sudo runs: the ``nft`` setting when it is one, else ``/usr/sbin/nft``."""
    if nft == "nft":
        return SUDO_NFT
    if not os.path.isabs(nft) or any(ch.isspace() for ch in nft):
        raise PermanentDriverError(f"{point}: settings: nft {nft!r}: with sudo: true give nft's absolute path "
                                   "(the one the sudoers line names)", point=point, driver=DRIVER)
    return nft


def sudo_nft(command: str, nft: str, privileged: list[str]) -> str:
    """``command`` (a script of the driver's) with only its nft (and conntrack) calls under sudo.

    A shell function ``nft`` runs ``sudo -n PRIVILEGED… ARGS``; the driver writes every nft call as the
    (quoted) ``nft`` setting followed by a space, so an absolute path there is routed to the function too.
    A function ``conntrack`` runs ``sudo -n`` with the same prefix (``ip netns exec NS`` locally) and
    :data:`SUDO_CONNTRACK`.  The shell itself — ``case``, ``grep``, ``echo`` combining several listings into one
    round trip — keeps the login user's rights.
    """
    token = shlex.quote(nft)
    body = command if token == "nft" else command.replace(f"{token} ", "nft ")
    conntrack = [*privileged[:-1], SUDO_CONNTRACK]  # privileged ends with the nft path
    return (f'nft() {{ {shlex.join(["sudo", "-n", *privileged])} "$@"; }}\n'
            f'conntrack() {{ {shlex.join(["sudo", "-n", *conntrack])} "$@"; }}\n{body}')
