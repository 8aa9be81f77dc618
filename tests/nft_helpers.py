"""nftables test helpers: throwaway network namespaces, nft inside them, and a driver bound to one."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from drivers.nftables import NftablesDriver
from orchestrator.model.driver import Connection, PointContext, RenderRequest
from orchestrator.model.rules import Ruleset

POINT = "host1"


def netns_available() -> bool:
    """Root, iproute2 and nft: what every test that touches real nftables needs."""
    return os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("nft") is not None


needs_netns = pytest.mark.skipif(not netns_available(), reason="needs root, iproute2 and nft (network namespaces)")


@contextmanager
def network_namespace() -> Iterator[str]:
    """A fresh namespace ``mstnft<random>`` with lo up, deleted on exit (also when the test fails)."""
    name = f"mstnft{secrets.token_hex(4)}"
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


def driver_in(ns: str, *, point: str = POINT, timeout: float = 30.0, **settings: Any) -> NftablesDriver:
    """An nftables driver that reaches namespace ``ns`` through the local transport."""
    context = PointContext(
        point, "nftables", Connection("localhost"), {"transport": "local", "netns": ns, **settings}, timeout
    )
    return NftablesDriver(context)


def apply_ruleset(driver: NftablesDriver, ruleset: Ruleset) -> None:
    """Render ``ruleset`` against the current state and apply it."""
    snapshot = driver.fetch()
    actual = driver.normalize(snapshot).ruleset
    driver.apply(driver.render(RenderRequest(driver.point, ruleset, actual, snapshot)))
