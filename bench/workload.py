"""The reference workload: SDM630-like meters polled every second, with realistic noise.

Values follow seeded random walks around plausible levels (mains voltage wanders by tenths of a
volt, loads by about a percent a second) and are float32 like the meter's registers; energy
counters rise with the power. Two Modbus requests per poll, 40 ms apart, as the planner makes them.
"""

from __future__ import annotations

import random
import struct

from agent.config import ProfileLibrary
from agent.config.loader import DeviceSetup
from agent.config.models import DeviceModel
from agent.drivers.registers import shortest_f32
from agent.types import Reading

LEVELS = {"voltage": (230.0, 0.3), "current": (12.5, 0.01), "active_power": (2900.0, 0.01),
          "power_factor": (0.95, 0.002), "frequency": (50.0, 0.005)}


def f32(value: float) -> float:
    return shortest_f32(struct.unpack(">f", struct.pack(">f", value))[0])


def setups(meters: int) -> list[DeviceSetup]:
    profile = ProfileLibrary().load("eastron/sdm630")
    return [DeviceSetup(DeviceModel(id=f"meter-{i:02d}", bus="line1", unit=i + 1, profile="eastron/sdm630", interval=1),
                        profile, profile.timing()) for i in range(meters)]


def readings(meters: int, seconds: int, seed: int = 7, t0: int = 1_763_700_000_000) -> list[Reading]:
    rng = random.Random(seed)
    devices = setups(meters)
    names = list(devices[0].profile.points)
    state = {(d.config.id, n): _start(n, rng) for d in devices for n in names}
    out = []
    for second in range(seconds):
        for device in devices:
            for name in names:
                key = (device.config.id, name)
                state[key] = _step(name, state[key], rng)
                address = device.profile.points[name].address
                ts = t0 + second * 1000 + (40 if address >= 0x100 else 0)
                out.append(Reading(device.config.id, name, ts, f32(state[key])))
    return out


def _start(name: str, rng: random.Random) -> float:
    if name.startswith("energy"):
        return rng.uniform(1000, 50000)
    for prefix, (level, _) in LEVELS.items():
        if name.startswith(prefix):
            return level * rng.uniform(0.97, 1.03)
    return 1.0


def _step(name: str, value: float, rng: random.Random) -> float:
    if name.startswith("energy"):
        return value + rng.uniform(0.0005, 0.003)  # kWh per second at a few kW
    for prefix, (level, wander) in LEVELS.items():
        if name.startswith(prefix):
            step = rng.gauss(0, wander if prefix == "voltage" else wander * level)
            return value + step + (level - value) * 0.05
    return value
