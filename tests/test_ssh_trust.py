"""SSH host-key trust (strict, accept-new, insecure) of the switch and nftables drivers, and nft-only sudo.

The switch drivers are tested against the SSH device simulators (through unmodified netmiko), the nftables
driver against a real sshd in a network namespace; fingerprints are computed independently of the code
under test (hashlib / ssh-keygen).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import paramiko
import pytest

from orchestrator.engine.retry import RetryPolicy, with_retries
from orchestrator.model import (
    Action,
    AddressSet,
    Connection,
    Direction,
    Ordering,
    PermanentDriverError,
    PointContext,
    Rule,
    Ruleset,
    TransientDriverError,
)
from simulators.netdev.server import DeviceSimulator
from tests.netdev_kit import FOREIGN, INTERFACES, driver_for, new_host_key, serving_host_key, simulator
from tests.nft_helpers import (
    POINT,
    SshdNamespace,
    apply_ruleset,
    driver_in,
    fake_sudo,
    netns_available,
    network_namespace,
    nft,
    ssh_fingerprint,
    ssh_keygen,
    sshd_available,
    sshd_namespace,
)

RETRY = RetryPolicy(attempts=3, base=0.01)
RULESET = Ruleset(POINT, Ordering.FIRST_MATCH, Action.DENY, (
    Rule(Action.PERMIT, Direction.INGRESS, 6, AddressSet.of(["10.0.0.0/8"]), AddressSet.of(["0.0.0.0/0"]),
         dst_ports=((22, 22),)),
))
needs_sshd = pytest.mark.skipif(not sshd_available(), reason="needs root, nft, sshd, socat and ssh-keygen")


@pytest.fixture(autouse=True)
def _no_inherited_known_hosts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every test starts from a working directory of its own and no MICROSEG_KNOWN_HOSTS."""
    monkeypatch.delenv("MICROSEG_KNOWN_HOSTS", raising=False)
    monkeypatch.chdir(tmp_path)


def sha256(key: paramiko.PKey) -> str:
    """OpenSSH's fingerprint notation, computed here rather than by the code under test."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def line(port: int, key: paramiko.PKey) -> str:
    return f"[127.0.0.1]:{port} {key.get_name()} {key.get_base64()}\n"


def attempts(call: Callable[[], Any]) -> tuple[int, BaseException | None]:
    """Run ``call`` under the engine's retry policy: (tries made, the error it ended with)."""
    tries = 0

    def counted() -> Any:
        nonlocal tries
        tries += 1
        return call()
    try:
        with_retries(counted, RETRY, sleep=lambda _: None)
    except Exception as exc:  # the test looks at which
        return tries, exc
    return tries, None


def fetch_once(sim: DeviceSimulator, point: str = "sw", **settings: Any) -> tuple[int, BaseException | None]:
    """One driver's fetch under the retry policy; (SSH connections the device saw, the error)."""
    before = sim.counters.sessions
    driver = driver_for(sim, "ios", point, **settings)
    try:
        _, error = attempts(driver.fetch)
    finally:
        driver.close()
    return sim.counters.sessions - before, error


@pytest.fixture
def ios() -> Iterator[DeviceSimulator]:
    with simulator("ios") as sim:
        yield sim


# ---------------------------------------------------------------- switch drivers (netmiko) vs. simulators


def test_strict_trusts_exactly_the_configured_known_hosts(ios: DeviceSimulator, tmp_path: Path) -> None:
    key, stranger = new_host_key(), new_host_key()
    known = tmp_path / "known_hosts"
    known.write_text("# the lab's devices\n" + line(ios.port, key))
    with serving_host_key(ios, key):
        assert fetch_once(ios, host_key_policy="strict", known_hosts=str(known)) == (1, None)
    with serving_host_key(ios, stranger):
        sessions, error = fetch_once(ios, host_key_policy="strict", known_hosts=str(known))
    assert sessions == 1 and isinstance(error, PermanentDriverError)
    assert known.read_text() == "# the lab's devices\n" + line(ios.port, key)  # strict never writes


def test_strict_refuses_an_unknown_host_permanently_without_retrying(ios: DeviceSimulator, tmp_path: Path) -> None:
    key = new_host_key()
    known = tmp_path / "known_hosts"
    known.write_text(line(ios.port + 1, new_host_key()))  # another endpoint only
    with serving_host_key(ios, key):
        sessions, error = fetch_once(ios, "sw-strict", host_key_policy="strict", known_hosts=str(known))
    assert sessions == 1, "a host-key refusal must not be retried"
    assert isinstance(error, PermanentDriverError) and not isinstance(error, TransientDriverError), error
    message = str(error)
    assert "sw-strict" in message and f"127.0.0.1:{ios.port}" in message and sha256(key) in message
    assert str(known) in message and "strict" in message


def test_strict_refuses_a_changed_key_naming_both_fingerprints(ios: DeviceSimulator, tmp_path: Path) -> None:
    expected, presented = new_host_key(), new_host_key()
    known = tmp_path / "known_hosts"
    known.write_text(line(ios.port, expected))
    with serving_host_key(ios, presented):
        sessions, error = fetch_once(ios, host_key_policy="strict", known_hosts=str(known))
    assert sessions == 1 and isinstance(error, PermanentDriverError) and not isinstance(error, TransientDriverError)
    assert sha256(expected) in str(error) and sha256(presented) in str(error)
    assert f"127.0.0.1:{ios.port}" in str(error)


def test_strict_defaults_to_the_users_known_hosts(ios: DeviceSimulator, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    key = new_host_key()
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    with serving_host_key(ios, key):
        assert isinstance(fetch_once(ios, host_key_policy="strict")[1], PermanentDriverError)
        (tmp_path / ".ssh" / "known_hosts").write_text(line(ios.port, key))
        assert fetch_once(ios, host_key_policy="strict") == (1, None)


def test_accept_new_records_the_first_key_and_refuses_a_swapped_one(tmp_path: Path) -> None:
    first, second = new_host_key(), new_host_key()
    known = tmp_path / ".microseg" / "known_hosts"  # the default: relative to the working directory
    with simulator("ios") as sim, serving_host_key(sim, first):
        port = sim.port
        assert fetch_once(sim) == (1, None)
        assert known.read_text() == line(port, first)
        assert stat.S_IMODE(known.stat().st_mode) == 0o600
        assert stat.S_IMODE(known.parent.stat().st_mode) == 0o700
        assert fetch_once(sim) == (1, None)  # known now: accepted, recorded once
        assert known.read_text() == line(port, first)
    impostor = DeviceSimulator("ios", "sim-ios", port=port, boot_config=FOREIGN["ios"], interfaces=INTERFACES["ios"])
    with impostor, serving_host_key(impostor, second):
        sessions, error = fetch_once(impostor, "sw-tofu")
    assert sessions == 1, "a changed key must not be retried"
    assert isinstance(error, PermanentDriverError) and not isinstance(error, TransientDriverError), error
    message = str(error)
    assert "sw-tofu" in message and f"127.0.0.1:{port}" in message
    assert sha256(first) in message and sha256(second) in message
    assert known.read_text() == line(port, first)  # the impostor's key was not recorded


def test_accept_new_file_setting_beats_the_environment(ios: DeviceSimulator, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    key = new_host_key()
    from_env = tmp_path / "env" / "known_hosts"
    monkeypatch.setenv("MICROSEG_KNOWN_HOSTS", str(from_env))
    with serving_host_key(ios, key):
        assert fetch_once(ios) == (1, None)
        assert from_env.read_text() == line(ios.port, key)
        configured = tmp_path / "configured_known_hosts"
        configured.write_text("# mine\n")
        assert fetch_once(ios, host_key_policy="accept-new", known_hosts=str(configured)) == (1, None)
        assert configured.read_text() == "# mine\n" + line(ios.port, key)
        assert stat.S_IMODE(configured.stat().st_mode) == 0o600
    assert not (tmp_path / ".microseg").exists()


def test_accept_new_records_every_device_of_a_parallel_run(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    with ExitStack() as stack:
        sims = [stack.enter_context(simulator("ios", hostname=f"sim-{i}")) for i in range(6)]
        keys = [stack.enter_context(serving_host_key(sim, new_host_key())) for sim in sims]
        with ThreadPoolExecutor(len(sims)) as pool:
            results = list(pool.map(lambda s: fetch_once(s, f"sw{s.port}", known_hosts=str(known)), sims))
    assert results == [(1, None)] * len(sims)
    wanted = sorted(line(s.port, k) for s, k in zip(sims, keys, strict=True))
    assert sorted(known.read_text().splitlines(keepends=True)) == wanted


def test_insecure_connects_to_anything_and_warns_every_time(ios: DeviceSimulator, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(line(ios.port, new_host_key()))  # not the key the device presents: ignored
    before = known.read_text()
    caplog.set_level(logging.WARNING)
    for _ in range(2):
        assert fetch_once(ios, "sw-yolo", host_key_policy="insecure", known_hosts=str(known)) == (1, None)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "sw-yolo" in r.getMessage()]
    assert len(warnings) == 2, [r.getMessage() for r in caplog.records]
    assert "insecure" in warnings[0].getMessage() and f"127.0.0.1:{ios.port}" in warnings[0].getMessage()
    assert known.read_text() == before and not (tmp_path / ".microseg").exists()  # nothing written


@pytest.mark.parametrize("driver", ["ios", "nftables"])
def test_an_unknown_policy_is_a_permanent_error_naming_the_point(driver: str) -> None:
    if driver == "ios":
        with simulator("ios") as sim, pytest.raises(PermanentDriverError) as info:
            driver_for(sim, "ios", "sw-typo", host_key_policy="strict-ish").fetch()
    else:
        from drivers.nftables import NftablesDriver
        context = PointContext("host-typo", "nftables", Connection("127.0.0.1"), {"host_key_policy": "strict-ish"})
        with pytest.raises(PermanentDriverError) as info:
            NftablesDriver(context).fetch()
    assert not isinstance(info.value, TransientDriverError)
    assert re.search(r"(sw|host)-typo", str(info.value)) and "'strict-ish'" in str(info.value)
    assert "accept-new" in str(info.value) and "insecure" in str(info.value)


def test_the_old_connection_option_is_refused_loudly() -> None:
    with simulator("ios") as sim:
        connection = Connection("127.0.0.1", sim.port, "admin", "admin", "ios", {"host_key_policy": "strict"})
        context = PointContext("sw", "ios", connection, {"bindings": ["Vlan301"]}, timeout=10.0)
        from tests.netdev_kit import DRIVERS
        with pytest.raises(PermanentDriverError, match=r"settings\.host_key_policy"):
            DRIVERS["ios"](context)
        assert sim.counters.sessions == 0


def test_concurrent_first_connections_to_one_endpoint_record_one_key(tmp_path: Path) -> None:
    from drivers.sshtrust import HostKeyRefused, SshSettings, host_key_trust  # the shared module itself

    known = tmp_path / "state" / "known_hosts"
    trust = host_key_trust(SshSettings(known_hosts=str(known)), point="p")
    keys = [new_host_key() for _ in range(8)]
    outcomes: list[str] = []
    gate = threading.Barrier(len(keys) + 8)

    def connect(host: str, key: paramiko.PKey) -> None:
        gate.wait()
        try:
            trust.unknown_key(host, 2222, key)
            outcomes.append(f"{host} ok")
        except HostKeyRefused:
            outcomes.append(f"{host} refused")
    threads = [threading.Thread(target=connect, args=("127.0.0.9", k)) for k in keys]  # one endpoint, 8 keys
    threads += [threading.Thread(target=connect, args=(f"127.0.1.{i}", new_host_key())) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes).count("127.0.0.9 ok") == 1 and outcomes.count("127.0.0.9 refused") == 7
    lines = known.read_text().splitlines()
    assert len(lines) == 9 and sum(entry.startswith("[127.0.0.9]:2222 ") for entry in lines) == 1
    assert stat.S_IMODE(known.stat().st_mode) == 0o600 and stat.S_IMODE(known.parent.stat().st_mode) == 0o700
    assert not [p for p in known.parent.iterdir() if p.name != "known_hosts"]  # no temporary file left behind


# ---------------------------------------------------------------- nftables (paramiko) vs. sshd in a namespace


def nft_driver(lab: SshdNamespace, **settings: Any) -> Any:
    from drivers.nftables import NftablesDriver
    connection = Connection("127.0.0.1", lab.port, "root")
    return NftablesDriver(PointContext(POINT, "nftables", connection, {"key_file": str(lab.client_key), **settings},
                                       10.0))


def nft_fetch(lab: SshdNamespace, **settings: Any) -> tuple[int, BaseException | None]:
    driver = nft_driver(lab, **settings)
    try:
        return attempts(driver.fetch)
    finally:
        driver.close()


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshdNamespace]:
    if not sshd_available():
        pytest.skip("needs root, nft, sshd, socat and ssh-keygen")
    directory = tmp_path / "sshd"
    directory.mkdir()
    with sshd_namespace(directory) as lab:
        yield lab


@needs_sshd
def test_nft_accept_new_records_the_key_and_refuses_a_swapped_sshd_key(sshd: SshdNamespace, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    known = tmp_path / "microseg_known_hosts"
    monkeypatch.setenv("MICROSEG_KNOWN_HOSTS", str(known))
    assert nft_fetch(sshd) == (1, None)
    assert known.read_text() == sshd.known_hosts_line() + "\n"
    assert stat.S_IMODE(known.stat().st_mode) == 0o600
    original = sshd.host_key
    sshd.start(host_key=ssh_keygen(tmp_path / "impostor_key"))
    tries, error = nft_fetch(sshd)
    assert tries == 1 and isinstance(error, PermanentDriverError) and not isinstance(error, TransientDriverError)
    message = str(error)
    assert ssh_fingerprint(original.with_suffix(".pub")) in message
    assert ssh_fingerprint(sshd.host_key.with_suffix(".pub")) in message
    assert f"127.0.0.1:{sshd.port}" in message and POINT in message
    assert known.read_text() == sshd.known_hosts_line(original) + "\n"


@needs_sshd
def test_nft_strict_with_the_lab_known_hosts(sshd: SshdNamespace, tmp_path: Path) -> None:
    known = tmp_path / "lab_known_hosts"
    known.write_text(sshd.known_hosts_line() + "\n")
    assert nft_fetch(sshd, host_key_policy="strict", known_hosts=str(known)) == (1, None)
    expected = sshd.host_key
    sshd.start(host_key=ssh_keygen(tmp_path / "rekeyed"))
    tries, error = nft_fetch(sshd, host_key_policy="strict", known_hosts=str(known))
    assert tries == 1 and isinstance(error, PermanentDriverError) and not isinstance(error, TransientDriverError)
    assert ssh_fingerprint(expected.with_suffix(".pub")) in str(error)
    assert ssh_fingerprint(sshd.host_key.with_suffix(".pub")) in str(error)
    unknown = tmp_path / "empty_known_hosts"
    unknown.write_text("")
    tries, error = nft_fetch(sshd, host_key_policy="strict", known_hosts=str(unknown))
    assert tries == 1 and isinstance(error, PermanentDriverError) and not isinstance(error, TransientDriverError)
    assert ssh_fingerprint(sshd.host_key.with_suffix(".pub")) in str(error) and str(unknown) in str(error)
    assert known.read_text() == sshd.known_hosts_line(expected) + "\n" and unknown.read_text() == ""


# ---------------------------------------------------------------- sudo: only nft, with fixed command lines

SUDOERS_COMMANDS = {  # exactly what the README's sudoers example allows (table `microseg`)
    "/usr/sbin/nft -j list tables",
    "/usr/sbin/nft -j list chains",
    "/usr/sbin/nft -j -p list table inet microseg",
    "/usr/sbin/nft list table inet microseg",
    "/usr/sbin/nft list tables",
    "/usr/sbin/nft -f -",
}


def recording_sshd(sshd: SshdNamespace) -> tuple[Path, Path]:
    """Restart sshd so that every SSH command is recorded and runs with a logging fake ``sudo`` first on PATH."""
    root = sshd.directory
    (root / "bin").mkdir()
    (root / "commands").mkdir()
    sudo_log = root / "sudo.log"
    fake_sudo = root / "bin" / "sudo"
    fake_sudo.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {sudo_log}\n'
                         '[ "$1" = -n ] || { echo "sudo: -n expected" >&2; exit 1; }\nshift\nexec "$@"\n')
    wrapper = root / "force_command"
    wrapper.write_text(f'#!/bin/sh\nn=$(ls {root}/commands | wc -l)\n'
                       f'printf "%s" "$SSH_ORIGINAL_COMMAND" > {root}/commands/$n\n'
                       f'PATH={root}/bin:$PATH\nexport PATH\nexec /bin/sh -c "$SSH_ORIGINAL_COMMAND"\n')
    for script in (fake_sudo, wrapper):
        script.chmod(0o755)
    sshd.start(extra_config=f"ForceCommand {wrapper}\n")
    return sudo_log, root / "commands"


@needs_sshd
@pytest.mark.parametrize("nft_setting", [None, "/usr/sbin/nft"])
def test_sudo_runs_only_fixed_nft_command_lines(sshd: SshdNamespace, tmp_path: Path, nft_setting: str | None) -> None:
    sudo_log, commands = recording_sshd(sshd)
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line() + "\n")
    settings: dict[str, Any] = {"sudo": True, "host_key_policy": "strict", "known_hosts": str(known)}
    if nft_setting:
        settings["nft"] = nft_setting
    driver = nft_driver(sshd, **settings)
    driver.runner.sudo = True  # the namespace's sshd logs in as root, for whom the driver skips sudo
    try:
        before = driver.checkpoint()  # no table yet
        apply_ruleset(driver, RULESET)  # first install: conntrack bootstrap, then the change
        assert driver.normalize(driver.fetch()).ruleset == RULESET
        driver.checkpoint()  # the table exists: text and JSON listings
        driver.rollback(before)
    finally:
        driver.close()
    assert "microseg" not in nft(sshd.ns, "list", "tables").stdout  # the commands really ran, as root
    ran = sudo_log.read_text().splitlines()
    assert {entry.removeprefix("-n ") for entry in ran} == SUDOERS_COMMANDS
    assert all(entry.startswith("-n /usr/sbin/nft ") for entry in ran), ran  # never a shell under sudo
    sent = [path.read_text() for path in sorted(commands.iterdir(), key=lambda p: int(p.name))]
    assert sent and all(command.startswith("sh -c ") for command in sent)  # the shell runs as the login user
    assert not any(re.search(r"sudo\s+(-n\s+)?(sh|bash|/bin/sh)\b", command) for command in sent)
    assert all('nft() { sudo -n /usr/sbin/nft "$@"; }' in command for command in sent)


def test_sudo_needs_an_absolute_nft_path() -> None:
    from drivers.nftables import NftablesDriver
    context = PointContext("host1", "nftables", Connection("192.0.2.10", 22, "deploy"), {"sudo": True, "nft": "nft2"})
    with pytest.raises(PermanentDriverError, match=r"host1.*absolute path"):
        NftablesDriver(context)


@pytest.mark.skipif(not netns_available(), reason="needs root, iproute2 and nft (network namespaces)")
def test_local_transport_sudo_runs_only_nft_in_the_namespace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sudo_log = fake_sudo(tmp_path, monkeypatch)
    with network_namespace() as ns:
        with monkeypatch.context() as patch:
            patch.setattr(os, "geteuid", lambda: 1000)  # as a user that is not root: the sudo path
            driver = driver_in(ns, sudo=True)
        before = driver.checkpoint()
        apply_ruleset(driver, RULESET)
        assert driver.normalize(driver.fetch()).ruleset == RULESET
        driver.rollback(before)
    ran = {entry.removeprefix(f"-n ip netns exec {ns} ") for entry in sudo_log.read_text().splitlines()}
    assert ran <= SUDOERS_COMMANDS and "/usr/sbin/nft -f -" in ran, ran
