"""The shared driver contract suite against each switch platform's SSH simulator, through unmodified netmiko; and
EOS again over eAPI (HTTPS JSON-RPC) through napalm's unmodified EOS driver, and
Junos over NETCONF through napalm's unmodified Junos driver (``transport: napalm``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.netacl.base import AclDriver
from drivers.testing import DriverContract
from orchestrator.model.rules import Direction, Ruleset
from simulators.netdev.eapi import serving_eapi
from simulators.netdev.server import DeviceSimulator
from tests.netdev_kit import FIRST, SECOND, driver_for, simulator


class SwitchContract(DriverContract):
    platform: str

    @pytest.fixture
    def sim(self) -> Iterator[DeviceSimulator]:
        with simulator(self.platform) as sim:
            yield sim

    @pytest.fixture
    def transport(self, sim: DeviceSimulator) -> dict[str, Any]:
        return {}  # the CLI over SSH

    @pytest.fixture
    def driver(self, sim: DeviceSimulator, transport: dict[str, Any]) -> Iterator[AclDriver]:
        drv = driver_for(sim, self.platform, **transport)
        yield drv
        drv.close()

    @pytest.fixture
    def ingress_only_driver(self, sim: DeviceSimulator, transport: dict[str, Any]) -> Iterator[AclDriver]:
        drv = driver_for(sim, self.platform, directions=frozenset({Direction.INGRESS}), **transport)
        yield drv
        drv.close()

    @pytest.fixture
    def intended(self) -> list[Ruleset]:
        return [FIRST, SECOND]


class TestIosContract(SwitchContract):
    platform = "ios"


class TestNxosContract(SwitchContract):
    platform = "nxos"


class TestEosContract(SwitchContract):
    platform = "eos"


class TestJunosContract(SwitchContract):
    platform = "junos"


class TestEosNapalmContract(SwitchContract):
    """EOS through napalm over eAPI: the same contract, the same device state as the SSH simulator's."""

    platform = "eos"

    @pytest.fixture
    def transport(self, sim: DeviceSimulator, tmp_path: Path) -> Iterator[dict[str, Any]]:
        with serving_eapi(sim, tmp_path / "eapi-ca.pem") as port:
            yield {"transport": "napalm", "eapi_port": port, "eapi_ca_file": str(tmp_path / "eapi-ca.pem")}


class TestJunosNapalmContract(SwitchContract):
    """Junos through napalm over NETCONF (the SSH ``netconf`` subsystem): the same contract, the same device
    state as the CLI's."""

    platform = "junos"

    @pytest.fixture
    def transport(self, sim: DeviceSimulator) -> dict[str, Any]:
        return {"transport": "napalm", "netconf_port": sim.port}
