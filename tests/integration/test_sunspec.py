"""SunSpec discovery against simulated devices served by pymodbus over TCP."""

from __future__ import annotations

import asyncio

import pytest

from agent.config import ProfileLibrary
from agent.drivers.bus import Bus
from agent.drivers.device import DeviceReader
from agent.simulate import SimulatedDevice, SunSpecLayout
from agent.types import Quality
from testkit.sims import SimThread

VALUES = {"active_power": 8812.0, "voltage_l1": 231.4, "frequency": 50.02, "energy_yield_total": 35210.5,
          "inverter_state": "throttled", "internal_temperature": 41.5, "power_factor": 0.98}


@pytest.mark.parametrize(("base", "common", "unit"), [(40000, 66, 1), (40000, 65, 1), (0, 66, 1), (50000, 65, 126)])
def test_discovered_inverter_reads_correctly(sim: SimThread, base: int, common: int, unit: int) -> None:
    profile = ProfileLibrary().load("sunspec/inverter")
    device = SimulatedDevice(profile, dict(VALUES), moving=False, sunspec=SunSpecLayout(base, common))
    spec, _ = sim.tcp({unit: device})

    async def read() -> tuple[dict, object, int]:
        bus = Bus("t", spec)
        reader = DeviceReader("inv", unit, profile.points, profile.timing(), bus, discovery="sunspec")
        result = await reader.poll()
        await bus.close()
        return {r.point: r for r in result.readings}, reader.sunspec, len(reader.plan)

    readings, found, requests = asyncio.run(read())
    assert found is not None and found.base == base and found.lengths[1] == common
    assert found.models[103] == base + 2 + common + 2
    for name, value in VALUES.items():
        assert readings[name].quality is Quality.OK, (name, readings[name])
        assert readings[name].value == pytest.approx(value) if isinstance(value, float) else readings[name].value == value
    assert requests == 1  # the whole model 103 block in one read
    assert not any(name.endswith("_sf") for name in readings)  # scale factors are hidden helpers


def test_a_device_without_sunspec_is_reported_not_guessed(sim: SimThread) -> None:
    profile = ProfileLibrary().load("sunspec/inverter")
    spec, _ = sim.tcp({1: SimulatedDevice(ProfileLibrary().load("eastron/sdm630"))})

    async def read() -> tuple[list, str]:
        bus = Bus("t", spec)
        reader = DeviceReader("inv", 1, profile.points, profile.timing(), bus, discovery="sunspec")
        result = await reader.poll()
        await bus.close()
        return result.readings, result.error

    readings, error = asyncio.run(read())
    assert "no SunSpec marker" in error
    assert readings and all(r.quality is Quality.UNAVAILABLE for r in readings)
