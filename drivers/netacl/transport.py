"""The device CLI through netmiko over SSH, with netmiko's and paramiko's errors translated once, here."""

from __future__ import annotations

import contextlib
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

from orchestrator.driver import Connection
from orchestrator.errors import PermanentDriverError, TransientDriverError

T = TypeVar("T")


class RejectedLine(PermanentDriverError):
    """The device refused one configuration line (invalid input); ``line`` is the refused line."""

    def __init__(self, message: str, *, line: str, point: str, driver: str) -> None:
        super().__init__(message, point=point, driver=driver)
        self.line = line


class CliTransport:
    """One lazily opened netmiko session to one device; every method raises only DriverError subclasses."""

    def __init__(self, connection: Connection, *, device_type: str, point: str, driver: str, timeout: float,
                 error_pattern: str, connect: Callable[..., Any] = ConnectHandler) -> None:
        self.connection = connection
        self.device_type = device_type
        self.point = point
        self.driver = driver
        self.timeout = timeout
        self.error_pattern = error_pattern
        self._connect = connect
        self._session: Any = None
        self.lines_sent = 0

    # ------------------------------------------------------------ session

    def session(self) -> Any:
        if self._session is None:
            extras = dict(self.connection.extras)
            params: dict[str, Any] = {
                "device_type": self.device_type,
                "host": self.connection.hostname,
                "port": self.connection.port or 22,
                "username": self.connection.username,
                "password": self.connection.password,
                "secret": extras.get("secret", self.connection.password or ""),
                "conn_timeout": self.timeout,
                "auth_timeout": self.timeout,
                "banner_timeout": self.timeout,
                "read_timeout_override": None,
                "fast_cli": True,
                "use_keys": bool(extras.get("key_file")),
                "key_file": extras.get("key_file"),
                "allow_agent": False,
                "ssh_strict": extras.get("host_key_policy") == "strict",
                "system_host_keys": extras.get("host_key_policy") == "strict",
            }
            self._session = self._guard("connect", lambda: self._connect(**params))
        return self._session

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
            kwargs: dict[str, Any] = {"read_timeout": self.timeout * 3}
            if expect:
                kwargs["expect_string"] = expect
            return str(self.session().send_command(command, **kwargs))
        self.lines_sent += 1
        return self._guard(command, run)

    def configure(self, lines: Sequence[str], *, mode_command: str | None = None, exit_mode: bool = True) -> str:
        """Configuration lines in config mode (entered with ``mode_command``); a refused line raises RejectedLine."""
        session = self.session()

        def run() -> str:
            return str(session.send_config_set(list(lines), config_mode_command=mode_command,
                                               exit_config_mode=exit_mode, error_pattern=self.error_pattern,
                                               read_timeout=self.timeout * 3, cmd_verify=True))
        self.lines_sent += len(lines) + (1 if mode_command else 0)
        return self._guard("configure", run)

    # ------------------------------------------------------------ errors

    def _guard(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except ConfigInvalidException as exc:
            line = str(exc).partition("at command: ")[2].partition(", matched error")[0]
            raise RejectedLine(f"{self.point}: the device refused `{line}`: {exc}", line=line, point=self.point,
                               driver=self.driver) from exc
        except NetmikoAuthenticationException as exc:
            raise PermanentDriverError(f"{self.point}: SSH authentication failed: {exc}", point=self.point,
                                       driver=self.driver) from exc
        except (NetmikoTimeoutException, ReadTimeout, ReadException, TimeoutError) as exc:
            self._drop()
            raise TransientDriverError(f"{self.point}: {what}: timed out ({type(exc).__name__}: {exc})",
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
