"""The reference workload: the reference park's meters with realistic, seeded noise.

The reference park is 50 meters x 40 points polled every 10 s; its meter is the
bench profile `reference/meter40` (bench/profiles: 40 float32 points, three register blocks).
Values follow seeded random walks around plausible levels (mains voltage wanders by tenths of a
volt, loads by about a percent a second) and are float32 like the meter's registers; energy
counters rise with the power. Points of one register block share the stamp of their request,
the blocks going out 40 ms apart, as the planner and the bus make them.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

from agent.batcher import Batcher
from agent.codec import Header
from agent.config import ProfileLibrary
from agent.config.loader import DeviceSetup
from agent.config.models import DeviceModel
from agent.drivers.plan import plan_reads
from agent.drivers.registers import shortest_f32
from agent.types import Reading
from agent.wire import build_schema

PROFILES = Path(__file__).resolve().parent / "profiles"
REFERENCE_METER = "reference/meter40"
PARK_METERS = 50
PARK_INTERVAL_S = 10
T0 = 1_763_700_000_000

LEVELS = {"voltage_l1": (230.0, 0.3), "voltage_l2": (230.0, 0.3), "voltage_l3": (230.0, 0.3),
          "voltage_ln": (230.0, 0.3), "voltage": (400.0, 0.5), "current_neutral": (0.8, 0.02),
          "current": (12.5, 0.01), "active_power": (2900.0, 0.01), "apparent_power": (3050.0, 0.01),
          "reactive_power": (280.0, 0.02), "power_factor": (0.95, 0.002), "frequency": (50.0, 0.005)}


def library() -> ProfileLibrary:
    """The built-in profiles plus the bench's reference meter."""
    return ProfileLibrary([str(PROFILES)])


def setups(meters: int, ref: str = REFERENCE_METER, interval: float = 1) -> list[DeviceSetup]:
    profile = library().load(ref)
    return [DeviceSetup(DeviceModel(id=f"meter-{i:02d}", bus="line1", unit=i + 1, profile=ref, interval=interval),
                        profile, profile.timing()) for i in range(meters)]


def readings(meters: int, polls: int, interval_s: int = 1, ref: str = REFERENCE_METER, seed: int = 7,
             t0: int = T0) -> list[Reading]:
    """`polls` polls of `meters` meters, `interval_s` apart, in poll order."""
    rng = random.Random(seed)
    devices = setups(meters, ref)
    profile = devices[0].profile
    block_of = {name: index for index, request in enumerate(plan_reads(list(profile.points.values()), profile.timing()))
                for name in request.points}
    state = {(d.config.id, n): _start(n, rng) for d in devices for n in block_of}
    out = []
    for poll in range(polls):
        for device in devices:
            for name, block in block_of.items():
                key = (device.config.id, name)
                state[key] = _step(name, state[key], rng, interval_s)
                out.append(Reading(device.config.id, name, t0 + poll * interval_s * 1000 + 40 * block, f32(state[key])))
    return out


def f32(value: float) -> float:
    return shortest_f32(struct.unpack(">f", struct.pack(">f", value))[0])


def _start(name: str, rng: random.Random) -> float:
    if "energy" in name:
        return rng.uniform(1000, 50000)
    return _level(name)[0] * rng.uniform(0.97, 1.03)


def _step(name: str, value: float, rng: random.Random, seconds: int) -> float:
    if "energy" in name:
        return value + rng.uniform(0.0005, 0.003) * seconds  # kWh per second at a few kW
    level, wander = _level(name)
    step = rng.gauss(0, (wander if name.startswith("voltage") else wander * level) * seconds ** 0.5)
    return value + step + (level - value) * min(1.0, 0.05 * seconds)


def _level(name: str) -> tuple[float, float]:
    """Exact name first (voltage_l1 is not voltage_l12), then the longest matching prefix."""
    if name in LEVELS:
        return LEVELS[name]
    prefixes = sorted((p for p in LEVELS if name.startswith(p)), key=len, reverse=True)
    return LEVELS[prefixes[0]] if prefixes else (1.0, 0.01)


def park_batches(count: int, gateway: str = "gw-bench") -> tuple[list[bytes], str]:
    """`count` consecutive 10 s batches of the reference park, encoded; and the schema's JSON."""
    schema = build_schema(gateway, setups(PARK_METERS, interval=PARK_INTERVAL_S))
    batcher = Batcher(schema)
    rows = readings(PARK_METERS, count, PARK_INTERVAL_S)
    per_poll = len(rows) // count
    payloads = []
    for poll in range(count):
        batcher.add(rows[poll * per_poll:(poll + 1) * per_poll])
        sealed = batcher.seal(Header(gateway, 1, poll + 1, 0, 0))
        assert sealed is not None
        payloads.append(sealed.encode(schema))
    return payloads, schema.to_json()


def park_config(directory: Path, modbus_port: int, mqtt_port: int, devices: int, profile: str = "eastron/sdm630",
                interval: str = "1s", batch: str = "1s") -> Path:
    """An agent.yaml for `devices` meters of `profile` on one simulated Modbus TCP endpoint (units 1..N)
    and a broker on loopback: the park the process benchmarks run `edge-agent run` on."""
    lines = ["gateway: {id: gw-bench, site: bench}", f'profiles_dirs: ["{PROFILES}"]',
             f'buses: [{{name: plant, url: "tcp://127.0.0.1:{modbus_port}"}}]', "devices:"]
    lines += [f"  - {{id: meter-{i:03d}, bus: plant, unit: {i + 1}, profile: {profile}, interval: {interval}}}"
              for i in range(devices)]
    lines.append(f'mqtt: {{url: "mqtt://127.0.0.1:{mqtt_port}", topic_prefix: park, batch_interval: {batch}}}')
    lines.append(f'buffer: {{path: "{directory}/buf", max_bytes: 64MiB, min_free_bytes: 1MiB}}')
    path = directory / "agent.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path
