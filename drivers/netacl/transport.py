"""The device CLI through netmiko over SSH, with netmiko's and paramiko's errors translated once, here."""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import paramiko
from netmiko import ConnectHandler
from netmiko.exceptions import (
    ConfigInvalidException,
    NetmikoAuthenticationException,
    NetmikoTimeoutException,
    ReadException,
    ReadTimeout,
)

from drivers.endpoints import connection_refused, refused_message
from drivers.netacl.errors import RejectedLine
from drivers.sshtrust import (
    HostKeyRefused,
    HostKeyTrust,
    SshSettings,
    host_key_trust,
    refuse_connection_host_key_policy,
)
from orchestrator.model import Connection, PermanentDriverError, TransientDriverError

T = TypeVar("T")
CHUNK = 64  # configuration lines per write


class CliTransport:
    """One lazily opened netmiko session to one device; every method raises only DriverError subclasses."""

    def __init__(self, connection: Connection, *, device_type: str, point: str, driver: str, timeout: float,
                 error_pattern: str, key_file: str | None = None, host_keys: HostKeyTrust | None = None,
                 connect: Callable[..., Any] = ConnectHandler) -> None:
        refuse_connection_host_key_policy(connection, point=point, driver=driver)
        self.connection = connection
        self.device_type = device_type
        self.point = point
        self.driver = driver
        self.timeout = timeout
        self.error_pattern = error_pattern
        self.key_file = key_file or connection.extras.get("key_file")
        self.host_keys = host_keys or host_key_trust(SshSettings(), point=point)
        self._connect = connect
        self._session: Any = None
        self.lines_sent = 0

    # ------------------------------------------------------------ session

    def session(self) -> Any:
        if self._session is None:
            if self.key_file and not os.path.exists(self.key_file):
                raise PermanentDriverError(f"{self.point}: SSH key file {self.key_file} does not exist "
                                           "(settings.key_file — the lab's key appears with `microseg lab up`)",
                                           point=self.point, driver=self.driver)
            self._session = self._guard("connect", self._open)
            _fail_fast_on_close(self._session)
        return self._session

    def _open(self) -> Any:
        """A logged-in netmiko session whose SSH host key passed :attr:`host_keys` (see drivers.sshtrust)."""
        host, port = self.connection.hostname, self.connection.port or 22
        known_hosts = self.host_keys.loadable_known_hosts()
        extras = dict(self.connection.extras)
        session = self._connect(
            device_type=self.device_type, host=host, port=port, username=self.connection.username,
            password=self.connection.password, secret=extras.get("secret", self.connection.password or ""),
            conn_timeout=self.timeout, auth_timeout=self.timeout, banner_timeout=self.timeout,
            read_timeout_override=None, fast_cli=True, use_keys=bool(self.key_file), key_file=self.key_file,
            allow_agent=False, ssh_strict=False, system_host_keys=False,
            alt_host_keys=known_hosts is not None, alt_key_file=str(known_hosts or ""),
            auto_connect=False)  # connected below, once the host-key policy is in place
        session.key_policy = self.host_keys.missing_key_policy(host, port)
        try:
            session._open()  # netmiko's own connect + session preparation (what auto_connect would run)
        except BaseException as exc:
            session.disconnect()  # also stops paramiko's transport thread, which netmiko leaves running here
            refusal = self.host_keys.refusal(exc, host, port)  # netmiko re-raises paramiko's as a timeout
            if refusal is not None:
                raise refusal from exc
            if connection_refused(exc):
                raise PermanentDriverError(f"{self.point}: {refused_message(host, port)}", point=self.point,
                                           driver=self.driver) from exc
            raise
        return session

    def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(OSError, EOFError, paramiko.SSHException, ReadException, ReadTimeout):
                session.disconnect()  # the session is gone either way

    # ------------------------------------------------------------ commands

    def show(self, command: str) -> str:
        """One read-only command's output."""
        return str(self._guard(command, lambda: self.session().send_command(
            command, read_timeout=self.timeout * 3, strip_prompt=True, strip_command=True)))

    def exec(self, command: str, expect: str | None = None) -> str:
        """One exec-mode command that changes state (confirm, checkpoint …); its output."""
        def run() -> str:
            session = self.session()
            # the prompt may change (config → exec after a commit): wait for any prompt of this device
            pattern = expect or rf"(?m)^{re.escape(session.base_prompt)}[^\n]*[#>]\s*$"
            return str(session.send_command(command, read_timeout=self.timeout * 3, expect_string=pattern))
        self.lines_sent += 1
        return self._guard(command, run)

    def configure(self, lines: Sequence[str], *, mode_command: str | None = None, exit_mode: bool = True,
                  then: Sequence[str] = ()) -> str:
        """Configuration lines in config mode (entered with ``mode_command``); a refused line raises RejectedLine.

        Lines go out in chunks of ``CHUNK`` (one write, then read up to the prompt after the last echo) rather
        than one round trip per line: a 2,000-line first install costs 32 round trips, not 2,000.  A refusal
        anywhere in a chunk stops the push there (the later lines of that chunk were sent too — every platform
        lifecycle then throws the whole change away: abort, rollback 0, revert, checkpoint rollback).  ``then``
        (a commit) is sent alone, only once every line was accepted.
        """
        session = self.session()

        def run() -> str:
            output = str(session.config_mode(mode_command) if mode_command else session.config_mode())
            for start in range(0, len(lines), CHUNK):
                output += self._chunk(session, lines[start:start + CHUNK])
            for line in then:
                output += self._chunk(session, [line])
            if exit_mode:
                output += str(session.exit_config_mode())
            return output
        self.lines_sent += len(lines) + len(then) + (1 if mode_command else 0)
        return self._guard("configure", run)

    def _chunk(self, session: Any, lines: Sequence[str]) -> str:
        session.write_channel("".join(session.normalize_cmd(line) for line in lines))
        out = self._read_echoes(session, lines)
        error = re.search(self.error_pattern, out, flags=re.M)
        if error:
            line = _refused_line(lines, out[:error.start()])
            raise ConfigInvalidException(f"Invalid input detected at command: {line}, matched error: {error.group(0)}")
        return out

    def _read_echoes(self, session: Any, lines: Sequence[str]) -> str:
        """Read until every line of the chunk was echoed and the prompt after the last one came back."""
        last = lines[-1].strip()
        wanted = sum(1 for line in lines if line.strip() == last)
        echo = re.compile(rf"{re.escape(last)}[ \t]*\r?$", re.M)  # the whole echoed line, not a prefix of another
        prompt = re.compile(rf"^{re.escape(session.base_prompt)}[^\n]*[#>]\s*$", re.M)
        out, deadline = "", time.monotonic() + self.timeout * 3
        while True:
            out += str(session.read_channel())
            echoes = list(echo.finditer(out))
            if len(echoes) >= wanted and prompt.search(out, echoes[-1].end()):
                return out
            if time.monotonic() > deadline:
                raise ReadTimeout(f"no prompt after `{last}` within {self.timeout * 3:g}s")
            time.sleep(0.002)

    # ------------------------------------------------------------ errors

    def _guard(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except ConfigInvalidException as exc:
            line = str(exc).partition("at command: ")[2].partition(", matched error")[0]
            raise RejectedLine(f"{self.point}: the device refused `{line}`: {exc}", line=line, point=self.point,
                               driver=self.driver) from exc
        except HostKeyRefused as exc:
            raise PermanentDriverError(f"{self.point}: SSH {exc}", point=self.point, driver=self.driver) from exc
        except NetmikoAuthenticationException as exc:
            raise PermanentDriverError(f"{self.point}: SSH authentication failed: {exc}", point=self.point,
                                       driver=self.driver) from exc
        except (NetmikoTimeoutException, ReadTimeout, ReadException, TimeoutError) as exc:
            self._drop()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""  # not netmiko's list of causes
            raise TransientDriverError(f"{self.point}: {what}: timed out ({type(exc).__name__}: {first})",
                                       point=self.point, driver=self.driver) from exc
        except (OSError, EOFError, paramiko.SSHException) as exc:
            self._drop()
            raise TransientDriverError(f"{self.point}: {what}: session lost ({type(exc).__name__}: {exc})",
                                       point=self.point, driver=self.driver) from exc

    def _drop(self) -> None:
        """Forget a broken session so the next call reconnects."""
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(Exception):  # a broken session may fail to close in any way; it is dropped
                session.disconnect()


def _fail_fast_on_close(session: Any) -> None:
    """Make a read on a session the device closed fail at once instead of waiting out the read timeout.

    netmiko polls ``recv_ready()``, which stays False on a closed channel, so a device that drops the session
    mid-change would otherwise look like a slow device for ``read_timeout`` seconds.
    """
    channel, conn = getattr(session, "channel", None), getattr(session, "remote_conn", None)
    if channel is None or not isinstance(conn, paramiko.Channel):
        return
    read = channel.read_channel

    def read_channel() -> str:
        data: str = read()
        if not data and (conn.closed or conn.eof_received or not conn.get_transport()
                         or not conn.get_transport().is_active()):
            raise EOFError("the device closed the SSH session")
        return data

    channel.read_channel = read_channel


def _refused_line(lines: Sequence[str], before: str) -> str:
    """The line a refusal answers: the last of the chunk's lines echoed, in order, before the error (a line the
    chunk holds twice — ``statistics per-entry`` in every ACL — is found where its echo is, not elsewhere)."""
    found, at = lines[0], 0
    for line in lines:
        text = line.strip()
        if not text:
            continue
        where = before.find(text, at)
        if where < 0:
            break
        found, at = line, where + len(text)
    return found

