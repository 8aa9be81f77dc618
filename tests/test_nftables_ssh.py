"""nftables over real SSH: sshd inside a test namespace, reached through a loopback socat forwarder."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from drivers.nftables import NftablesDriver
from drivers.nftables.transport import SshRunner
from orchestrator.model.driver import Connection, PointContext, RenderRequest
from orchestrator.model.errors import PermanentDriverError, TransientDriverError
from orchestrator.model.rules import Action, AddressSet, Direction, Ordering, Rule, Ruleset
from tests.nft_helpers import (
    POINT,
    apply_ruleset,
    netns_available,
    network_namespace,
    ssh_keygen,
    start_sshd,
    stop_process,
)

SSHD = "/usr/sbin/sshd"
pytestmark = pytest.mark.skipif(
    not (netns_available() and os.path.exists(SSHD) and shutil.which("socat") and shutil.which("ssh-keygen")),
    reason="needs root, nft, sshd, socat and ssh-keygen",
)
RULESET = Ruleset(POINT, Ordering.FIRST_MATCH, Action.DENY, (
    Rule(Action.PERMIT, Direction.INGRESS, 6, AddressSet.of(["10.0.0.0/8"]), AddressSet.of(["0.0.0.0/0"]),
         dst_ports=((22, 22),)),
))


@dataclass(frozen=True)
class SshLab:
    ns: str
    port: int
    key: Path
    host_key_line: str
    tmp: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(process: subprocess.Popen[Any]) -> None:
    """End a process this module started, and the forwarder's per-connection children (its process group)."""
    stop_process(process, group=True)


def start_forwarder(ns: str, port: int) -> subprocess.Popen[bytes]:
    target = f"EXEC:ip netns exec {ns} socat STDIO TCP\\:127.0.0.1\\:22"
    return subprocess.Popen(["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr", target],
                            start_new_session=True, stderr=subprocess.DEVNULL)


def wait_for_ssh(port: int, deadline: float = 10.0) -> None:
    """Until sshd answers with its banner through the forwarder."""
    stop_at = time.monotonic() + deadline
    while time.monotonic() < stop_at:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(4) == b"SSH-":
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("sshd did not come up")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshLab]:
    tmp = tmp_path_factory.mktemp("sshlab")
    ssh_keygen(tmp / "host_key")
    ssh_keygen(tmp / "client_key")
    (tmp / "authorized_keys").write_text((tmp / "client_key.pub").read_text())
    (tmp / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1\nPort 22\nHostKey {tmp}/host_key\nPidFile {tmp}/sshd.pid\n"
        f"AuthorizedKeysFile {tmp}/authorized_keys\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nLogLevel ERROR\n"
    )
    with network_namespace() as ns:
        sshd = start_sshd(ns, tmp / "sshd_config")
        port = free_port()
        forwarder = start_forwarder(ns, port)
        try:
            wait_for_ssh(port)
            host_key = (tmp / "host_key.pub").read_text().split()
            yield SshLab(ns, port, tmp / "client_key", f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}", tmp)
        finally:
            stop(forwarder)
            stop(sshd)


def ssh_driver(lab: SshLab, port: int | None = None, **settings: Any) -> NftablesDriver:
    connection = Connection("127.0.0.1", port or lab.port, "root")
    context = PointContext(POINT, "nftables", connection, {"key_file": str(lab.key), **settings}, 10.0)
    return NftablesDriver(context)


def test_driver_lifecycle_over_one_ssh_connection(lab: SshLab) -> None:
    driver = ssh_driver(lab)
    try:
        checkpoint = driver.checkpoint()
        apply_ruleset(driver, RULESET)
        snapshot = driver.fetch()
        assert driver.normalize(snapshot).ruleset == RULESET
        runner = driver.runner
        assert isinstance(runner, SshRunner)
        transport = runner._client.get_transport()
        driver.rollback(checkpoint)
        assert runner._client.get_transport() is transport  # one connection for every call
        assert driver.normalize(driver.fetch()).ruleset.rules == ()
    finally:
        driver.close()
        driver.close()


def test_key_file_path_expands_home_and_variables(lab: SshLab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSEG_LAB", str(lab.tmp))
    driver = ssh_driver(lab, key_file="$MSEG_LAB/client_key")
    try:
        assert driver.normalize(driver.fetch()).ruleset.default_action is Action.PERMIT
    finally:
        driver.close()


def test_strict_host_key_policy(lab: SshLab) -> None:
    (lab.tmp / "known_hosts").write_text(lab.host_key_line + "\n")
    (lab.tmp / "empty_known_hosts").write_text("")
    good = ssh_driver(lab, host_key_policy="strict", known_hosts=str(lab.tmp / "known_hosts"))
    try:
        good.fetch()
    finally:
        good.close()
    bad = ssh_driver(lab, host_key_policy="strict", known_hosts=str(lab.tmp / "empty_known_hosts"))
    with pytest.raises(PermanentDriverError, match="host key rejected") as info:
        bad.fetch()
    assert not isinstance(info.value, TransientDriverError)


def test_wrong_key_is_a_permanent_authentication_error(lab: SshLab) -> None:
    ssh_keygen(lab.tmp / "stranger")
    driver = ssh_driver(lab, key_file=str(lab.tmp / "stranger"))
    with pytest.raises(PermanentDriverError, match="authentication failed for root"):
        driver.fetch()


def test_missing_key_file_is_permanent(lab: SshLab) -> None:
    with pytest.raises(PermanentDriverError, match="cannot load key file"):
        ssh_driver(lab, key_file=str(lab.tmp / "nope")).fetch()


def test_connection_refused_is_permanent_and_one_line(lab: SshLab) -> None:
    """Nothing listens: retrying will not change that (issue #15: no three retries of a refused connection)."""
    port = free_port()
    refused = rf"cannot connect to 127\.0\.0\.1:{port}: connection refused"
    with pytest.raises(PermanentDriverError, match=refused) as info:
        ssh_driver(lab, port=port).fetch()
    assert not isinstance(info.value, TransientDriverError)


def test_nft_error_over_ssh_is_permanent_with_nft_message(lab: SshLab) -> None:
    driver = ssh_driver(lab)
    try:
        snapshot = driver.fetch()
        change = driver.render(RenderRequest(POINT, RULESET, driver.normalize(snapshot).ruleset, snapshot))
        broken = type(change)(POINT, "nftables", change.format, (*change.commands[:-1], "\tbogus statement", "}"))
        with pytest.raises(PermanentDriverError, match=r"Error: syntax error") as info:
            driver.apply(broken)
        assert not isinstance(info.value, TransientDriverError)
    finally:
        driver.close()


def test_dropped_session_is_transient(lab: SshLab) -> None:
    port = free_port()
    forwarder = start_forwarder(lab.ns, port)
    driver = ssh_driver(lab, port=port)
    try:
        wait_for_ssh(port)
        driver.fetch()
        stop(forwarder)  # the TCP connection under the SSH session goes away
        with pytest.raises(TransientDriverError):
            driver.fetch()
    finally:
        stop(forwarder)
        driver.close()

