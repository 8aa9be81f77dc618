"""nftables test helpers: throwaway network namespaces, nft inside them, and a driver bound to one."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from drivers.nftables import NftablesDriver
from orchestrator.lab.ssh import PRIVSEP_DIR
from orchestrator.model.driver import Connection, PointContext, RenderRequest
from orchestrator.model.rules import Direction, Ruleset

POINT = "host1"


def netns_available() -> bool:
    """Root, iproute2 and nft: what every test that touches real nftables needs."""
    return os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("nft") is not None


needs_netns = pytest.mark.skipif(not netns_available(), reason="needs root, iproute2 and nft (network namespaces)")


def fake_sudo(directory: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``sudo`` first on PATH that logs its arguments to the returned file, refuses to run without ``-n`` and
    then runs the command (as root: the tests run as root)."""
    log = directory / "sudo.log"
    (directory / "bin").mkdir()
    sudo = directory / "bin" / "sudo"
    sudo.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\n[ "$1" = -n ] || exit 1\nshift\nexec "$@"\n')
    sudo.chmod(0o755)
    monkeypatch.setenv("PATH", f"{directory / 'bin'}:{os.environ['PATH']}")
    return log


@contextmanager
def network_namespace(prefix: str = "mstnft", suffix: str = "") -> Iterator[str]:
    """A fresh namespace ``<prefix><random><suffix>`` with lo up, deleted on exit (also when the test fails)."""
    name = f"{prefix}{secrets.token_hex(4)}{suffix}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def nft(ns: str, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``nft ARGS`` inside namespace ``ns`` (never in the root namespace)."""
    assert ns.startswith("mstnft"), "nft runs only inside a test namespace"
    return subprocess.run(
        ["ip", "netns", "exec", ns, "nft", *args], input=stdin, capture_output=True, text=True, check=check
    )


def driver_in(ns: str, *, point: str = POINT, timeout: float = 30.0,
              directions: frozenset[Direction] = frozenset(Direction), **settings: Any) -> NftablesDriver:
    """An nftables driver that reaches namespace ``ns`` through the local transport, for a point that filters
    ``directions`` (default: both)."""
    context = PointContext(
        point, "nftables", Connection("localhost"), {"transport": "local", "netns": ns, **settings}, timeout,
        directions=directions,
    )
    return NftablesDriver(context)


def apply_ruleset(driver: NftablesDriver, ruleset: Ruleset) -> None:
    """Render ``ruleset`` against the current state and apply it."""
    snapshot = driver.fetch()
    actual = driver.normalize(snapshot).ruleset
    driver.apply(driver.render(RenderRequest(driver.point, ruleset, actual, snapshot)))


# ---------------------------------------------------------------- sshd in a test namespace (host-key tests)

SSHD = "/usr/sbin/sshd"


def sshd_available() -> bool:
    """What :func:`sshd_namespace` needs on top of :func:`netns_available`."""
    return netns_available() and os.path.exists(SSHD) and bool(shutil.which("socat")) and bool(
        shutil.which("ssh-keygen"))


def ssh_keygen(path: Path) -> Path:
    """A fresh ed25519 key pair at ``path`` (+ ``.pub``), no passphrase."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def ssh_fingerprint(public_key: Path) -> str:
    """``SHA256:…`` of a public key file, as ssh-keygen prints it."""
    out = subprocess.run(["ssh-keygen", "-l", "-f", str(public_key)], check=True, capture_output=True, text=True)
    return out.stdout.split()[1]


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop_process(process: subprocess.Popen[Any], *, group: bool = False) -> None:
    """End a process started here (and, with ``group``, the process group it leads: socat's forks)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    if group:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)


@dataclass
class SshdNamespace:
    """sshd (root login with :attr:`client_key`) inside namespace :attr:`ns`, reached on 127.0.0.1::attr:`port`."""

    ns: str
    port: int
    directory: Path
    client_key: Path
    host_key: Path
    _sshd: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def known_hosts_line(self, host_key: Path | None = None) -> str:
        """The known_hosts line OpenSSH would write for this endpoint and ``host_key`` (default: the current one)."""
        kind, blob = (host_key or self.host_key).with_suffix(".pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {blob}"

    def start(self, host_key: Path | None = None, extra_config: str = "") -> None:
        """(Re)start sshd, with another host key and/or extra sshd_config lines; same namespace, same port."""
        self.stop()
        self.host_key = host_key or self.host_key
        config = self.directory / "sshd_config"
        config.write_text(
            f"{extra_config}ListenAddress 127.0.0.1\nPort 22\nHostKey {self.host_key}\n"
            f"PidFile {self.directory}/sshd.pid\nAuthorizedKeysFile {self.client_key}.pub\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "UsePAM no\nStrictModes no\nLogLevel ERROR\n")
        self._sshd = start_sshd(self.ns, config)
        _wait_for_banner(self.port)

    def stop(self) -> None:
        if self._sshd is not None:
            stop_process(self._sshd)
            self._sshd = None


def start_sshd(ns: str, config: Path) -> subprocess.Popen[bytes]:
    """OpenSSH's sshd in the foreground inside namespace ``ns`` (the caller stops it, by PID)."""
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)  # sshd refuses to start without it (a fresh machine has none)
    return subprocess.Popen(["ip", "netns", "exec", ns, SSHD, "-D", "-e", "-f", str(config)],
                            stderr=subprocess.DEVNULL)


def _wait_for_banner(port: int, deadline: float = 10.0) -> None:
    stop_at = time.monotonic() + deadline
    while time.monotonic() < stop_at:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            if s.recv(4) == b"SSH-":
                return
        time.sleep(0.05)
    raise AssertionError("sshd did not come up")


@contextmanager
def sshd_namespace(directory: Path, *, extra_config: str = "") -> Iterator[SshdNamespace]:
    """A fresh namespace with sshd (new host and client keys in ``directory``) and a loopback forwarder to it.

    Everything started here is stopped by PID on exit, and the namespace is deleted.
    """
    client_key = ssh_keygen(directory / "client_key")
    host_key = ssh_keygen(directory / "host_key")
    with network_namespace() as ns:
        port = _free_loopback_port()
        target = f"EXEC:ip netns exec {ns} socat STDIO TCP\\:127.0.0.1\\:22"
        forwarder = subprocess.Popen(["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr", target],
                                     start_new_session=True, stderr=subprocess.DEVNULL)
        lab = SshdNamespace(ns, port, directory, client_key, host_key)
        try:
            lab.start(extra_config=extra_config)
            yield lab
        finally:
            lab.stop()
            stop_process(forwarder, group=True)
