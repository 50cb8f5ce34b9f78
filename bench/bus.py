"""Bus efficiency: wall time of a full poll of N SDM630s on an RS-485 line
running at a real 9600 baud, against the theoretical minimum for the same requests:
(request + response bytes) x 10 bits / baud, plus 3.5 characters of silence before each frame.
The simulated device's own turnaround is counted as zero, so the ratio is an upper bound."""

from __future__ import annotations

import asyncio
import statistics
import time

from agent.config import ProfileLibrary
from agent.drivers.bus import Bus
from agent.drivers.device import DeviceReader
from agent.drivers.plan import plan_reads
from agent.drivers.urls import BusSpec, SerialSettings, Transport
from agent.simulate import SimulatedDevice
from bench.report import Figure
from testkit.line import PacedLine
from testkit.sims import SimThread

BAUD = 9600


def minimum_seconds(requests: list[tuple[int, int]], baud: int = BAUD) -> float:
    """(request bytes, response bytes) per transaction -> the least time the line needs."""
    char = 10 / baud
    return sum((req + resp) * char + 2 * 3.5 * char for req, resp in requests)


def run(quick: bool = False) -> list[Figure]:
    devices = 3 if quick else 8
    rounds = 3 if quick else 6
    profile = ProfileLibrary().load("eastron/sdm630")
    plan = plan_reads(profile.points.values(), profile.timing())
    per_device = [(8, 5 + 2 * r.count) for r in plan]  # RTU: addr+fc+start+count+crc; addr+fc+len+data+crc
    line = PacedLine(BAUD)
    sims = SimThread()
    serial = SerialSettings(BAUD, "N", 1, 8)
    sims.serve(BusSpec(Transport.RTU, line.device_port, 0, serial),
               {unit: SimulatedDevice(profile) for unit in range(1, devices + 1)})

    async def measure() -> list[float]:
        bus = Bus("line", BusSpec(Transport.RTU, line.agent_port, 0, serial))
        readers = [DeviceReader(f"m{u}", u, profile.points, profile.timing(), bus) for u in range(1, devices + 1)]
        await readers[0].poll()  # open the port
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            for reader in readers:
                result = await reader.poll()
                assert all(r.quality.name == "OK" for r in result.readings)
            times.append(time.perf_counter() - started)
        await bus.close()
        return times

    try:
        times = asyncio.run(measure())
    finally:
        sims.stop()
        line.close()
    measured = statistics.median(times)
    minimum = minimum_seconds(per_device * devices)
    return [Figure(f"full poll of {devices} SDM630 at 9600 baud", measured, "s",
                   note=f"theoretical minimum {minimum:.3f} s for {len(plan) * devices} requests; "
                        f"one request per point would need {minimum_seconds([(8, 9)] * 21 * devices):.3f} s minimum"),
            Figure("RTU wire time / theoretical minimum", measured / minimum, "ratio", 1.15)]
