"""Shared fixtures: small in-memory workloads and targets for compiler-level tests."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _own_known_hosts(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test trusts SSH host keys on first use into a file of its own, never the checkout's .microseg/:
    simulators and test labs get new keys on reused ports, which a shared file would rightly refuse."""
    monkeypatch.setenv("MICROSEG_KNOWN_HOSTS", str(tmp_path_factory.mktemp("ssh") / "known_hosts"))


@dataclass(frozen=True)
class FakeWorkload:
    """A workload as the resolver sees it (the real model lives in orchestrator.inventory.workloads)."""

    name: str
    addresses: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]
    labels: dict[str, str] = field(default_factory=dict)


def workload(name: str, *addresses: str, **labels: str) -> FakeWorkload:
    return FakeWorkload(name, tuple(ipaddress.ip_address(a) for a in addresses), labels)


@pytest.fixture
def shop_workloads() -> list[FakeWorkload]:
    return [
        workload("web1", "10.20.1.11", "fd00:20:1::11", app="shop", tier="web", env="prod"),
        workload("web2", "10.20.1.12", app="shop", tier="web", env="prod"),
        workload("app1", "10.20.2.21", "fd00:20:2::21", app="shop", tier="app", env="prod"),
        workload("app2", "10.20.2.22", app="shop", tier="app", env="prod"),
        workload("db1", "10.20.3.31", app="shop", tier="db", env="prod"),
        workload("devweb", "10.30.1.11", app="shop", tier="web", env="dev"),
    ]


@pytest.fixture
def no_connections(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every socket connect attempt fails the test (and is recorded): for code that must refuse before any
    request."""
    attempts: list[Any] = []

    def refuse(_sock: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise AssertionError(f"connected to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield attempts
    assert attempts == []
