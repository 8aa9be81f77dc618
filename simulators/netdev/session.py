"""The SSH side of a simulated device: authentication, the shell channel, echo, line assembly, pagination."""

from __future__ import annotations

import contextlib
import hmac
import io
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from simulators.netdev.personality import Personality, SessionEnd

if TYPE_CHECKING:
    from simulators.netdev.server import DeviceSimulator

log = logging.getLogger(__name__)
_KEY_LOCK = threading.Lock()
_HOST_KEY: list[paramiko.PKey] = []


def use_host_key(path: str) -> None:
    """Serve every simulated device of this process with the private key at ``path`` (OpenSSH format):
    a fleet restarted with the same key keeps the identity its clients recorded."""
    key = paramiko.Ed25519Key.from_private_key_file(path)
    with _KEY_LOCK:
        _HOST_KEY[:] = [key]


def host_key() -> paramiko.PKey:
    """One Ed25519 host key per process, shared by every simulated device (made up unless :func:`use_host_key`)."""
    with _KEY_LOCK:
        if not _HOST_KEY:
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
            )
            _HOST_KEY.append(paramiko.Ed25519Key.from_private_key(io.StringIO(pem.decode())))
        return _HOST_KEY[0]


class _Dropped(Exception):
    """The drop fault fired: reset the connection."""


class _SshServer(paramiko.ServerInterface):
    def __init__(self, device: DeviceSimulator) -> None:
        self.device = device
        self.shell = threading.Event()  # a shell or a subsystem was asked for
        self.subsystem: str | None = None

    def get_allowed_auths(self, username: str) -> str:
        return "publickey,password" if self.device.authorized_keys else "password"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        offered = f"{key.get_name()} {key.get_base64()}"
        ok = username == self.device.username and offered in self.device.authorized_keys
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_auth_password(self, username: str, password: str) -> int:
        if not self.device.password:  # key-only device (the lab's)
            return paramiko.AUTH_FAILED
        ok = hmac.compare_digest(username.encode(), self.device.username.encode()) and hmac.compare_digest(
            password.encode(), self.device.password.encode()
        )
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_pty_request(self, *args: Any) -> bool:
        return True

    def check_channel_window_change_request(self, *args: Any) -> bool:
        return True

    def check_channel_shell_request(self, channel: paramiko.Channel) -> bool:
        self.shell.set()
        return True

    def check_channel_subsystem_request(self, channel: paramiko.Channel, name: str) -> bool:
        """NETCONF (RFC 6242) on the devices that speak it (Junos): the ``netconf`` subsystem."""
        if name != "netconf" or self.device.personality_name != "junos":
            return False
        self.subsystem = name
        self.shell.set()
        return True


class Session(threading.Thread):
    """One SSH connection: echo input, assemble lines, run them through the personality."""

    def __init__(self, device: DeviceSimulator, conn: socket.socket) -> None:
        super().__init__(name=f"sim-{device.hostname}-session", daemon=True)
        self.device = device
        self.conn = conn
        self.transport: paramiko.Transport | None = None
        self.chan: paramiko.Channel | None = None
        self.personality: Personality | None = None
        self._buf: list[str] = []
        self._echoed = 0
        self._skip_lf = False
        self._more: list[str] | None = None
        self._more_prompt = ""

    def run(self) -> None:
        try:
            self._serve()
        except (_Dropped, SessionEnd, EOFError, OSError, paramiko.SSHException):
            pass
        except Exception:
            log.exception("%s: session failed", self.device.hostname)
        finally:
            if self.personality is not None:
                with self.device.lock:
                    self.personality.session_lost()
            self.close()
            self.device._forget(self)

    def close(self) -> None:
        if self.transport is not None:
            with contextlib.suppress(Exception):
                self.transport.close()
        with contextlib.suppress(OSError):
            self.conn.close()

    def reset(self) -> None:
        """Abrupt close: TCP reset, no SSH disconnect message."""
        with contextlib.suppress(OSError):
            self.conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            self.conn.shutdown(socket.SHUT_RDWR)
        self.close()

    def _serve(self) -> None:
        self.transport = paramiko.Transport(self.conn)
        self.transport.add_server_key(host_key())
        server = _SshServer(self.device)
        self.transport.start_server(server=server)
        chan = self._wait(lambda: self.transport.accept(timeout=0.2) if self.transport else None)
        if chan is None or not self._wait(lambda: server.shell.wait(0.2)):
            return
        self.chan = chan
        if server.subsystem == "netconf":
            from simulators.netdev.netconf import serve_netconf  # noqa: PLC0415  (junos imports this module's kin)

            serve_netconf(self, chan)
            return
        with self.device.lock:
            self.personality = self.device.personality_cls(self.device)
            greeting = self.personality.banner() + "\n" + self.personality.prompt()
        self._send(greeting)
        while not self.device._stopping.is_set():
            data = chan.recv(4096)
            if not data:
                return
            self._feed(data.decode("utf-8", "replace"))

    def _wait(self, poll: Callable[[], Any], seconds: float = 20.0) -> Any:
        """Poll (each call blocks briefly) until it returns something truthy, the device stops, or time runs out."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.device._stopping.is_set():
            result = poll()
            if result:
                return result
        return None

    def _send(self, text: str) -> None:
        assert self.chan is not None
        self.chan.sendall(text.replace("\r\n", "\n").replace("\n", "\r\n").encode())

    def _feed(self, text: str) -> None:
        for ch in text:
            if self._skip_lf and ch == "\n":
                self._skip_lf = False
                continue
            self._skip_lf = ch == "\r"
            if self._more is not None:
                self._more_key(ch)
            elif ch in "\r\n":
                self._line()
            elif ch in "\x08\x7f":
                if self._buf:
                    self._buf.pop()
                    if self._echoed > len(self._buf):
                        self._echoed = len(self._buf)
                        self._send("\b \b")
            elif ch >= " ":
                self._buf.append(ch)
        if self._more is None and self._echoed < len(self._buf):
            self._send("".join(self._buf[self._echoed :]))
            self._echoed = len(self._buf)

    def _line(self) -> None:
        assert self.personality is not None
        line = "".join(self._buf)
        echo = line[self._echoed :]
        self._buf.clear()
        self._echoed = 0
        device, command = self.device, line.strip()
        with device.lock:
            config = bool(command) and self.personality.in_config_mode()
            drop = config and device.faults.take_drop()
            pause = config and not drop and device.faults.take_pause()
        if pause:  # the line waits, unexecuted, until the test resumes it (it may kill the client meanwhile)
            device.faults.paused.set()
            device.faults.resume.wait()
        with device.lock:
            if command and not drop:
                device.counters.commands += 1
                device.counters.config_lines += config
                device.history.append(command)
            delay = device.faults.delay
        if drop:
            self.reset()
            raise _Dropped
        echo += "\n"
        if delay:
            self._send(echo)
            echo = ""
            time.sleep(delay)
        with device.lock:
            try:
                output = self._answer(line, command, config)
            except SessionEnd:
                self._send(echo)
                raise
            finally:
                prompt = self.personality.prompt()
        self._output(echo, output, prompt)

    def _answer(self, line: str, command: str, config: bool) -> str:
        assert self.personality is not None
        faults = self.device.faults
        if command in faults.garbage:
            return faults.garbage[command]
        if config and faults.take_reject(command):
            return self.personality.invalid_input(line, 0)
        try:
            return self.personality.respond(line)
        except SessionEnd:
            raise
        except Exception as exc:
            log.exception("%s: %r failed", self.device.hostname, line)
            return f"%SIM-3-INTERNAL: simulator error {exc!r}\n"

    def _output(self, echo: str, output: str, prompt: str) -> None:
        """One write: the rest of the echo, the output (paginated unless ``terminal length 0``), the prompt."""
        if output and not output.endswith("\n"):
            output += "\n"
        lines = output.split("\n")[:-1] if output else []
        assert self.personality is not None
        page = self.personality.page_length - 1
        if page <= 0 or len(lines) <= page:
            self._send(echo + output + prompt)
            return
        self._more, self._more_prompt = lines[page:], prompt
        self._send(echo + "\n".join(lines[:page]) + "\n --More-- ")

    def _more_key(self, ch: str) -> None:
        assert self._more is not None and self.personality is not None
        erase = "\b" * 10 + " " * 10 + "\b" * 10
        count = {" ": max(self.personality.page_length - 1, 1), "\r": 1, "\n": 1}.get(ch, 0)
        shown, self._more = self._more[:count], self._more[count:]
        text = erase + "".join(f"{line}\n" for line in shown)
        if not self._more or count == 0:
            self._more = None
            self._send(text + self._more_prompt)
        else:
            self._send(text + " --More-- ")
