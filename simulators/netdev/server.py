"""SSH device simulator framework: one listener per simulated device, one thread per CLI session."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from simulators.netdev.personality import (
    CliError,
    Personality,
    SessionEnd,
    personality_class,
    register,
    registered,
    tokenize,
)
from simulators.netdev.session import Session, host_key

__all__ = [
    "CliError",
    "Counters",
    "DeviceSimulator",
    "Faults",
    "Personality",
    "SessionEnd",
    "host_key",
    "register",
    "registered",
    "tokenize",
]

log = logging.getLogger(__name__)


@dataclass
class Faults:
    """Fault injection knobs; tests may change them at any time (read under ``device.lock``).

    * ``drop_after_config_lines`` -- after that many configuration-mode lines (counted from when
      the knob is set; blank lines and the line entering configuration mode do not count) the
      next configuration line is not executed: the TCP connection is reset instead.  One-shot.
    * ``reject`` -- regex; the first configuration line matching it gets the platform's
      invalid-input error and is not applied.  One-shot.
    * ``garbage`` -- command (stripped line) -> text answered instead of executing it.
    * ``delay`` -- seconds slept before every answer (after the echo).
    * ``drop_after_command`` -- regex; eAPI and NETCONF only: the first command (NETCONF: RPC element name)
      matching it runs, then the connection closes without an answer (the client never learns it ran).  One-shot.
    * ``refuse_commit`` -- message; NETCONF only: the next ``commit-configuration`` fails with that error and
      commits nothing.  One-shot.
    * ``pause_after_config_lines`` -- after that many configuration-mode lines (counted like
      ``drop_after_config_lines``) the next configuration line waits, unexecuted, until ``resume`` is
      set; ``paused`` is set when it starts waiting (a test kills the client then).  One-shot.
    """

    drop_after_config_lines: int | None = None
    reject: str | None = None
    garbage: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop_after_command: str | None = None
    refuse_commit: str | None = None
    pause_after_config_lines: int | None = None
    paused: threading.Event = field(default_factory=threading.Event)
    resume: threading.Event = field(default_factory=threading.Event)
    _config_lines_seen: int = field(default=0, repr=False)
    _pause_lines_seen: int = field(default=0, repr=False)

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "drop_after_config_lines":
            super().__setattr__("_config_lines_seen", 0)
        if name == "pause_after_config_lines":
            super().__setattr__("_pause_lines_seen", 0)

    def take_pause(self) -> bool:
        """Count one configuration line; True when this line must wait for ``resume``."""
        if self.pause_after_config_lines is None:
            return False
        if self._pause_lines_seen >= self.pause_after_config_lines:
            self.pause_after_config_lines = None
            return True
        self._pause_lines_seen += 1
        return False

    def take_drop(self) -> bool:
        """Count one configuration line; True when the connection must drop instead."""
        if self.drop_after_config_lines is None:
            return False
        if self._config_lines_seen >= self.drop_after_config_lines:
            self.drop_after_config_lines = None
            return True
        self._config_lines_seen += 1
        return False

    def take_reject(self, command: str) -> bool:
        if self.reject is not None and re.search(self.reject, command):
            self.reject = None
            return True
        return False


@dataclass
class Counters:
    """What the device received: non-blank lines, configuration-mode lines, SSH sessions."""

    commands: int = 0
    config_lines: int = 0
    sessions: int = 0


class DeviceSimulator:
    """A simulated network device reachable over SSH on 127.0.0.1 (a test double, never production).

    ``personality`` names a registered `Personality` ("ios", "nxos", "eos", "junos").
    ``minute_seconds`` scales every device timer (``after``): tests pass 1.0 so that a one-minute
    revert timer fires after one second.  ``boot_config`` lines are applied in configuration mode
    when the device is created; ``interfaces`` lists the interfaces the device has.
    """

    def __init__(
        self,
        personality: str,
        hostname: str,
        *,
        username: str = "admin",
        password: str = "admin",
        port: int = 0,
        host: str = "127.0.0.1",
        minute_seconds: float = 60.0,
        boot_config: Sequence[str] = (),
        interfaces: Sequence[str] = (),
        authorized_keys: Sequence[str] = (),
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"simulators listen on loopback addresses only, not {host}")
        self.personality_name = personality
        self.personality_cls = personality_class(personality)
        self.hostname = hostname
        self.username = username
        self.password = password
        #: OpenSSH public key lines (``ssh-ed25519 AAAA… comment``) that log in as ``username`` (the lab's key)
        self.authorized_keys = tuple(" ".join(k.split()[:2]) for k in authorized_keys if k.strip())
        self.host = host
        self.port = port
        self.minute_seconds = minute_seconds
        self.interfaces = tuple(interfaces)
        self.boot_config = tuple(boot_config)
        self.lock = threading.RLock()
        self.booted_at = time.monotonic()  # uptime (e.g. eAPI `show version`) counts from here
        self.faults = Faults()
        self.counters = Counters()
        #: per-entry hit counters the listings print ((family, ACL name, sequence) → packets): this double carries
        #: no traffic, so tests set them (``hit``) as traffic would; IOS prints ``(N matches)`` beside an entry
        self.matches: dict[tuple[int, str, int | str], int] = {}  # Junos: (family, filter, term name)
        #: the last non-blank lines received (all sessions), for test assertions
        self.history: deque[str] = deque(maxlen=5000)
        self._timers: set[threading.Timer] = set()
        self._sessions: set[Session] = set()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        with self.lock:
            self.state: Any = self.personality_cls.create_state(self)
            self.personality_cls(self).boot(self.boot_config)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> DeviceSimulator:
        """Bind and serve in a background thread; ``self.port`` is the bound port."""
        if self._listener is not None:
            return self
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(64)
        self._listener = sock
        self.port = sock.getsockname()[1]
        self._stopping.clear()
        self._thread = threading.Thread(target=self._accept_loop, name=f"sim-{self.hostname}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listener and every session, cancel timers, join threads."""
        self._stopping.set()
        self.faults.resume.set()  # a paused line must not keep its session thread waiting
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        if self._thread is not None:
            self._thread.join(5)
        with self.lock:
            sessions = list(self._sessions)
            timers = list(self._timers)
            self._timers.clear()
        for timer in timers:
            timer.cancel()
        for session in sessions:
            session.close()
        for session in sessions:
            session.join(5)
        self._listener = None
        self._thread = None

    def __enter__(self) -> DeviceSimulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- services for personalities ----------------------------------------------------------
    def after(self, minutes: float, fn: Callable[[], None]) -> threading.Timer:
        """Run ``fn`` (under ``self.lock``) after ``minutes * minute_seconds`` seconds; cancellable."""

        def fire() -> None:
            with self.lock:
                self._timers.discard(timer)
                if self._stopping.is_set():
                    return
                try:
                    fn()
                except Exception:
                    log.exception("%s: timer callback failed", self.hostname)

        timer = threading.Timer(minutes * self.minute_seconds, fire)
        timer.daemon = True
        with self.lock:
            self._timers.add(timer)
        timer.start()
        return timer

    def cancel(self, timer: threading.Timer | None) -> None:
        """Cancel a timer made by `after` (None is fine)."""
        if timer is not None:
            timer.cancel()
            with self.lock:
                self._timers.discard(timer)

    def hit(self, family: int, acl: str, seq: int | str, packets: int = 1) -> None:
        """Count ``packets`` more on one ACL entry, as traffic matching it would (a test hook)."""
        with self.lock:
            key = (family, acl, seq)
            self.matches[key] = self.matches.get(key, 0) + packets

    def cli(self, *lines: str) -> str:
        """Run lines on a local console session (no SSH, not counted, no faults); the outputs joined.

        For tests that inspect or prepare the device: ``device.cli("show ip access-lists")``.
        """
        with self.lock:
            console = self.personality_cls(self)
            try:
                return "".join(console.respond(line) for line in lines)
            finally:
                console.session_lost()

    def session_count(self) -> int:
        with self.lock:
            return len(self._sessions)

    # -- internals ---------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        assert self._listener is not None
        listener = self._listener
        while not self._stopping.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                break
            if self._stopping.is_set():
                conn.close()
                break
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            session = Session(self, conn)
            with self.lock:
                self._sessions.add(session)
                self.counters.sessions += 1
            session.start()

    def _forget(self, session: Session) -> None:
        with self.lock:
            self._sessions.discard(session)
