"""DL/T 645 and CJ/T 188 wire time: a full poll of one meter on an RS-485 line at a real 2400 baud
8E1 (11 bits a character: start, 8 data, parity, stop), against the theoretical minimum for the
same bytes. The DL/T 645 three-phase meter is polled twice: with the block DIs its profile lists,
and DI by DI (a meter without block support). The simulated meter answers at once and without an
FE preamble, so the ratio shows what the agent adds (pauses between requests, the inter-frame gap,
thread hand-offs), not a real meter's turnaround (20-500 ms per request in DL/T 645-2007)."""

from __future__ import annotations

import asyncio
import statistics
import time

from agent.config import ProfileLibrary
from agent.drivers.bus import Bus
from agent.drivers.urls import BusSpec, SerialSettings, Transport
from agent.meters.reader import MeterReader
from agent.meters.server import MeterFaults
from agent.simulate import SimulatedDevice
from bench.report import Figure
from testkit.line import PacedLine
from testkit.sims import SimThread

BAUD = 2400
BITS = 11  # 8E1
CASES = [  # (label, profile, address, use blocks)
    ("dlt645/three-phase, block DIs", "dlt645/three-phase", "000000123456", True),
    ("dlt645/three-phase, single DIs", "dlt645/three-phase", "000000123456", False),
    ("dlt645/single-phase", "dlt645/single-phase", "000000123456", True),
    ("cjt188/water-meter", "cjt188/water-meter", "00000000000012", True),
    ("cjt188/heat-meter", "cjt188/heat-meter", "00000000000012", True),
]


def measure(ref: str, address: str, blocks: bool, rounds: int) -> tuple[float, int, float]:
    """(median seconds per poll, requests per poll, bytes on the wire per poll)."""
    from agent.drivers.readers import build_reader

    profile = ProfileLibrary().load(ref)
    protocol = profile.model.protocol
    line = PacedLine(BAUD, bits_per_byte=BITS)
    sims = SimThread()
    serial = SerialSettings(BAUD, "E", 1, 8)
    sims.meters(BusSpec(Transport(protocol), line.device_port, 0, serial),
                {address: SimulatedDevice(profile)}, MeterFaults())

    async def run() -> tuple[list[float], int, float]:
        bus = Bus("line", BusSpec(Transport(protocol), line.agent_port, 0, serial))
        reader = build_reader("m", profile, bus, profile.timing(), address=address)
        assert isinstance(reader, MeterReader)
        if not blocks:
            reader.blocks = ()
            reader._replan()
        await reader.poll()  # open the port
        requests, wire = reader.stats.requests, line.bytes
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            result = await reader.poll()
            times.append(time.perf_counter() - started)
            assert all(r.quality.name == "OK" for r in result.readings), result.error
        per_poll = (reader.stats.requests - requests) // rounds
        await bus.close()
        return times, per_poll, (line.bytes - wire) / rounds

    try:
        times, requests, wire = asyncio.run(run())
    finally:
        sims.stop()
        line.close()
    return statistics.median(times), requests, wire


def run(quick: bool = False) -> list[Figure]:
    rounds = 2 if quick else 5
    figures = []
    for label, ref, address, blocks in CASES:
        seconds, requests, wire = measure(ref, address, blocks, rounds)
        minimum = wire * BITS / BAUD
        figures.append(Figure(f"poll {label} at 2400 8E1", seconds, "s",
                              note=f"{requests} requests, {wire:.0f} bytes, minimum {minimum:.3f} s"))
        figures.append(Figure(f"wire time / minimum, {label}", seconds / minimum, "ratio", 1.5))
    return figures
