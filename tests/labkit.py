"""A lab for engine tests: the worked example's Linux hosts in namespaces, an inventory copy that points at them.

The inventory copy differs from ``inventory/`` only in where SSH lands (free
loopback ports of this test session's forwarders) and which key is used (the
test lab's).  Everything else — policy, workloads, capabilities — is the
worked example.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.inventory.inventory import load_inventory
from orchestrator.lab import Lab, LabError, check_tools, plan_lab_from_directory
from tests.conftest import REPO

LINUX_POINTS = ("app-prod-01", "db-prod-01", "db-prod-02", "jump-01", "web-prod-01", "web-prod-02")


def lab_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces)"
    try:
        check_tools()
    except LabError as exc:
        return str(exc)
    return None


def _free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        port: int = probe.getsockname()[1]
        return port


def inventory_copy(target: Path, key_file: Path) -> Path:
    """``inventory/`` with each Linux host on a free loopback port and the lab key."""
    shutil.copytree(REPO / "inventory", target)
    hosts = yaml.safe_load((target / "hosts.yaml").read_text())
    hosts = {name: host for name, host in hosts.items() if name in LINUX_POINTS}  # the lab has Linux hosts only
    for name in LINUX_POINTS:
        hosts[name]["port"] = _free_port(hosts[name]["hostname"])
    (target / "hosts.yaml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    groups = yaml.safe_load((target / "groups.yaml").read_text())
    groups["linux-nftables"]["data"]["microseg"]["settings"]["key_file"] = str(key_file)
    groups["linux-nftables"]["data"]["microseg"]["settings"]["known_hosts"] = str(key_file.parent / "known_hosts")
    (target / "groups.yaml").write_text(yaml.safe_dump(groups, sort_keys=False))
    return target


@dataclass
class LabFixture:
    """A running lab and the inventory that reaches it."""

    lab: Lab
    inventory: Path
    scripts: Path

    def reset(self) -> None:
        """Every host back to no firewall at all, sshd without fault injection."""
        for name in LINUX_POINTS:
            self.lab.exec(name, ["nft", "flush", "ruleset"])
        for name in self._faulty:
            self.lab.restart_sshd(name)
        self._faulty.clear()

    def nft(self, host: str, command: str) -> str:
        """``nft -s COMMAND`` on a lab host: listings without counter values (rules count their packets, so that
        comparing two listings tells whether the ruleset changed, not whether traffic passed)."""
        result = self.lab.exec(host, ["sh", "-c", f"nft -s {command}"])
        assert result.returncode == 0, result.stderr
        return result.stdout

    def has_table(self, host: str) -> bool:
        return "table inet microseg" in self.nft(host, "list tables")

    def inject(self, host: str, script: str) -> None:
        """Run ``script`` as a ForceCommand in front of every SSH command to ``host`` (fault injection).

        The script sees the command in $SSH_ORIGINAL_COMMAND and a per-host counter file in $COUNTER.
        """
        path = self.scripts / f"{host}-{secrets.token_hex(3)}.sh"
        counter = self.scripts / f"{host}.count"
        counter.write_text("0\n")
        path.write_text("#!/bin/sh\n" + f"COUNTER={counter}\n" + textwrap.dedent(script))
        path.chmod(0o755)
        self.lab.restart_sshd(host, f"ForceCommand {path}\n")
        self._faulty.add(host)

    def __post_init__(self) -> None:
        self._faulty: set[str] = set()


PASS_THROUGH = 'exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"\n'


def on_nft_f(action: str, *, times: str = "all") -> str:
    """A ForceCommand script that does ``action`` on `nft -f` commands (the n-th one with times="n")."""
    match = 'case "$SSH_ORIGINAL_COMMAND" in *"-f -"*)'
    if times == "all":
        return f'{match}\n  {action};;\nesac\n{PASS_THROUGH}'
    return (f'{match}\n  n=$(($(cat $COUNTER) + 1)); echo $n > $COUNTER\n'
            f'  if [ "$n" = "{times}" ]; then {action}; fi;;\nesac\n{PASS_THROUGH}')


FAIL = 'cat >/dev/null; echo "Error: Could not process rule: simulated failure" >&2; exit 1'
DROP = 'kill -9 $PPID; exit 1'  # the session dies before the command runs


def build(directory: Path) -> LabFixture:
    prefix = f"me{secrets.token_hex(2)}"
    lab = Lab(directory / "lab", prefix=prefix)
    inventory = inventory_copy(directory / "inventory", lab.key_file)
    scripts = directory / "scripts"
    scripts.mkdir()
    plan = plan_lab_from_directory(inventory, load_inventory(inventory), prefix=prefix)
    lab.up(plan)
    return LabFixture(lab, inventory, scripts)


def module_lab(label: str) -> tuple[Any, Any]:
    """The ``testlab`` (one lab per test module, torn down at its end) and ``lab`` (reset per test) fixtures.

    Use as ``testlab, lab = module_lab("enginelab")`` at module level."""

    @pytest.fixture(scope="module")
    def testlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabFixture]:
        reason = lab_unavailable()
        if reason:
            pytest.skip(reason)
        built = build(tmp_path_factory.mktemp(label))
        try:
            yield built
        finally:
            built.lab.down()

    @pytest.fixture
    def lab(testlab: LabFixture) -> LabFixture:
        testlab.reset()
        return testlab

    return testlab, lab


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A fresh SQLite store for one test."""
    return f"sqlite:///{tmp_path}/state.db"
