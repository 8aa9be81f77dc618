"""The shared driver contract suite against each switch platform's SSH simulator, through unmodified netmiko."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from drivers.netacl.base import AclDriver
from drivers.testing import DriverContract
from orchestrator.model.rules import Direction, Ruleset
from simulators.netdev.server import DeviceSimulator
from tests.netdev_kit import FIRST, SECOND, driver_for, simulator


class SwitchContract(DriverContract):
    platform: str

    @pytest.fixture
    def sim(self) -> Iterator[DeviceSimulator]:
        with simulator(self.platform) as sim:
            yield sim

    @pytest.fixture
    def driver(self, sim: DeviceSimulator) -> Iterator[AclDriver]:
        drv = driver_for(sim, self.platform)
        yield drv
        drv.close()

    @pytest.fixture
    def ingress_only_driver(self, sim: DeviceSimulator) -> Iterator[AclDriver]:
        drv = driver_for(sim, self.platform, directions=frozenset({Direction.INGRESS}))
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
