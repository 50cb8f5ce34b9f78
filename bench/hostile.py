"""Hostile lines: wrong values published with a unit that answers late over `rtu+tcp://`, and
readings per second on a noisy line (a 0x00 before each answer, as auto-direction RS-485
converters emit; or a few random bytes before and after each answer).

The server (testkit/hostile.py) answers every register with its own address, so a value read under
the wrong block is caught exactly. `python -m bench.hostile` prints the figures; the same script
ran against the pymodbus client measures "before".
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

from agent.config import ProfileLibrary
from agent.drivers.bus import Bus
from agent.drivers.device import DeviceReader
from agent.drivers.frames import Read
from agent.drivers.urls import BusSpec, SerialSettings, Transport
from agent.simulate import SimulatedDevice
from agent.types import DeviceTiming, Quality, ReadRequest, RegisterKind
from bench.report import Figure
from testkit.hostile import HostileServer, honest_rtu
from testkit.line import PacedLine
from testkit.sims import SimThread

TIMEOUT = 0.2
BLOCKS = (ReadRequest(RegisterKind.HOLDING, 0, 10, ("a",)), ReadRequest(RegisterKind.HOLDING, 100, 10, ("b",)))


def expected(request: ReadRequest) -> list[int]:
    return list(range(request.start, request.end))


async def _poll_for(port: int, seconds: float) -> tuple[int, int, int]:
    """Poll both blocks of unit 1 back to back for `seconds`: (ok answers, wrong ones, polls)."""
    bus = Bus("bench", BusSpec(Transport.RTU_OVER_TCP, "127.0.0.1", port))
    timing = DeviceTiming(timeout=TIMEOUT)
    ok = wrong = polls = 0
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            polls += 1
            for request, outcome in zip(BLOCKS, await bus.exchange(1, BLOCKS, timing)):
                if outcome.words is not None:
                    ok += 1
                    wrong += outcome.words != expected(request)
    finally:
        await bus.close()
    return ok, wrong, polls


def late_answers(seconds: float = 10.0, latest: float = 0.35) -> tuple[int, int, int]:
    """A unit whose answer time varies around the timeout (0.05 .. `latest` s against 0.2 s)."""
    rng = random.Random(1)
    server = HostileServer(lambda read: [(rng.uniform(0.05, latest), honest_rtu(read))])
    try:
        return asyncio.run(_poll_for(server.port, seconds))
    finally:
        server.close()


def noisy(noise: str, seconds: float = 5.0) -> float:
    """Answers (registers blocks) per second read OK with noise around every answer."""
    rng = random.Random(2)

    def respond(read: Read) -> list[tuple[float, bytes]]:
        if noise == "zero":
            return [(0.0, b"\x00" + honest_rtu(read))]
        before, after = rng.randbytes(rng.randint(1, 4)), rng.randbytes(rng.randint(0, 3))
        return [(0.0, before + honest_rtu(read) + after)]

    server = HostileServer(respond)
    try:
        ok, wrong, _ = asyncio.run(_poll_for(server.port, seconds))
    finally:
        server.close()
    assert wrong == 0, f"{wrong} wrong values on a noisy line"
    return ok / seconds


def serial_line(noise: Callable[[bytes], bytes] | None, seconds: float = 5.0) -> float:
    """Readings/s read OK from an SDM630 (pymodbus server) polled back to back on a 9600-baud
    paced RS-485 line, with `noise` applied to everything the meter sends."""
    line = PacedLine(9600, noise=noise)
    sims = SimThread()
    serial = SerialSettings(9600, "N", 1, 8)
    profile = ProfileLibrary().load("eastron/sdm630")
    sims.serve(BusSpec(Transport.RTU, line.device_port, 0, serial), {1: SimulatedDevice(profile)})

    async def measure() -> int:
        bus = Bus("line", BusSpec(Transport.RTU, line.agent_port, 0, serial))
        reader = DeviceReader("m1", 1, profile.points, profile.timing(), bus, offline_after=1_000_000)
        ok = 0
        end = time.monotonic() + seconds
        try:
            while time.monotonic() < end:
                ok += sum(r.quality is Quality.OK for r in (await reader.poll()).readings)
        finally:
            await bus.close()
        return ok

    try:
        return asyncio.run(measure()) / seconds
    finally:
        sims.stop()
        line.close()


def run(quick: bool = False) -> list[Figure]:
    seconds = 3.0 if quick else 10.0
    late = []
    for latest in (0.35, 0.6):
        ok, wrong, polls = late_answers(seconds, latest)
        late.append(Figure(f"wrong blocks in {seconds:g} s, unit answering 0.05-{latest:g} s, timeout {TIMEOUT:g} s",
                           wrong, "blocks", 0, note=f"{ok} blocks ok in {polls} polls"))
    return [*late,
            Figure("blocks/s read ok, one 0x00 before each answer", noisy("zero", seconds / 2), "1/s",
                   higher_is_better=True),
            Figure("blocks/s read ok, 1-4 random bytes before and 0-3 after each answer",
                   noisy("random", seconds / 2), "1/s", higher_is_better=True),
            Figure("SDM630 readings/s, 9600-baud line, clean", serial_line(None, seconds / 2), "1/s",
                   higher_is_better=True),
            Figure("SDM630 readings/s, 9600-baud line, a 0x00 before each answer",
                   serial_line(lambda data: b"\x00" + data, seconds / 2), "1/s", higher_is_better=True)]


if __name__ == "__main__":
    for figure in run():
        print(figure.row(), flush=True)
