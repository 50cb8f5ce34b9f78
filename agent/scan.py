"""`edge-agent scan`: find the devices on a bus and tell which profile fits each.

Opt-in and rate-limited: every unit id in the range gets one small read (any answer, even a
Modbus exception, means something is there). Each device found is then read once with every
profile whose serial defaults suit the line, and the profiles are ranked by how many of their
points answered and how many of those are physically plausible (mains voltage, frequency, power
factor ...). A SunSpec marker settles it at once. The result is a device block to paste.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from agent.config import Profile, ProfileLibrary
from agent.drivers.bus import Bus, Transport, open_transport
from agent.drivers.client import ModbusClient
from agent.drivers.device import DeviceReader
from agent.drivers.urls import BusSpec
from agent.errors import BusError, DeviceException, DeviceTimeout, FrameError
from agent.types import Quality, Reading, ReadRequest, RegisterKind

CONNECT_PAUSE = 1.0  # some dongles ignore requests right after a connect (Huawei): wait once
GATEWAY_NO_TARGET = (10, 11)  # a TCP gateway saying nothing is behind that unit id
PLAUSIBLE: dict[str, tuple[float, float]] = {
    "voltage_l": (80.0, 300.0), "voltage_l12": (150.0, 520.0), "voltage_l23": (150.0, 520.0),
    "voltage_l31": (150.0, 520.0), "frequency": (45.0, 65.0), "power_factor": (-1.0, 1.0),
    "current_l": (0.0, 10000.0), "internal_temperature": (-40.0, 100.0), "flow_rate": (-1000.0, 100000.0),
}


@dataclass(frozen=True)
class Candidate:
    ref: str
    ok: int  # points that answered
    plausible: int  # of the canonical ones with a known range, in range
    checked: int  # canonical points with a known range that answered

    @property
    def score(self) -> float:
        fit = (self.plausible + 1) / (self.checked + 1)
        return fit * self.ok


@dataclass(frozen=True)
class Found:
    unit: int
    candidates: list[Candidate]

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates and self.candidates[0].ok else None


def _range(point: str) -> tuple[float, float] | None:
    for prefix, bounds in PLAUSIBLE.items():
        if point == prefix or (prefix.endswith("_l") and point.startswith(prefix) and point[len(prefix):].isdigit()):
            return bounds
    return None


def rate(ref: str, readings: list[Reading]) -> Candidate:
    """How well one poll's readings fit the profile that decoded them. Pure."""
    ok = [r for r in readings if r.quality is Quality.OK]
    checked = plausible = 0
    for reading in ok:
        bounds = _range(reading.point)
        if bounds is None or not isinstance(reading.value, int | float):
            continue
        checked += 1
        plausible += bounds[0] <= reading.value <= bounds[1]
    return Candidate(ref, len(ok), plausible, checked)


async def find_units(bus: Bus, units: Sequence[int], timeout: float, per_second: float,
                     progress: Callable[[int], None] = lambda unit: None) -> list[int]:
    """Unit ids that answer anything at all (a value or an exception)."""
    from agent.types import DeviceTiming

    timing = DeviceTiming(timeout=timeout, pause_after_connect=CONNECT_PAUSE)
    found = []
    for unit in units:
        started = time.monotonic()
        progress(unit)
        try:
            await bus.read(unit, ReadRequest(RegisterKind.HOLDING, 0, 1, ()), timing)
            found.append(unit)
        except DeviceException as exc:
            if exc.code not in GATEWAY_NO_TARGET:
                found.append(unit)
        except (DeviceTimeout, FrameError, BusError):
            pass  # silent, or a malformed answer (noise, another unit's late answer): nothing known there
        await asyncio.sleep(max(0.0, 1 / per_second - (time.monotonic() - started)))
    return found


async def identify(bus: Bus, unit: int, profiles: list[Profile], timeout: float) -> Found:
    candidates = []
    for profile in profiles:
        timing = replace(profile.timing(), timeout=timeout, pause_after_connect=CONNECT_PAUSE)  # on connect only
        reader = DeviceReader("scan", unit, profile.points, timing, bus, discovery=profile.model.discovery,
                              offline_after=1_000_000)
        result = await reader.poll()
        read = [r for r in result.readings if profile.points[r.point].constant is None]  # constants prove nothing
        candidate = rate(profile.ref, read)
        if reader.sunspec is not None:
            candidate = replace(candidate, ok=candidate.ok + 1000)  # the marker is proof
        candidates.append(candidate)
    candidates.sort(key=lambda c: (-c.score, -c.ok, c.ref))
    return Found(unit, candidates)


async def scan(spec: BusSpec, units: Sequence[int], library: ProfileLibrary, timeout: float = 0.3,
               per_second: float = 10.0, progress: Callable[[int], None] = lambda unit: None) -> list[Found]:
    profiles = [library.load(ref) for ref in library.available()]
    if spec.serial is not None:
        profiles = [p for p in profiles if p.defaults.serial.baudrate == spec.serial.baudrate] or profiles
    finder = Bus("scan", spec, transport_factory=_finder_transport)
    try:
        present = await find_units(finder, units, timeout, per_second, progress)
    finally:
        await finder.close()
    if not present:
        return []
    bus = Bus("scan", spec)  # reading devices that are there: late answers are listened for again
    try:
        return [await identify(bus, unit, profiles, timeout) for unit in present]
    finally:
        await bus.close()


def device_block(found: Found, bus_name: str) -> str:
    best = found.best
    if best is None:
        return (f"  # unit {found.unit} answers, but no profile fits: write one in /etc/edge-agent/profiles "
                "(see agent/profiles/README.md)")
    name = best.ref.split("/")[1].replace(".", "-")
    return f"  - {{id: {name}-{found.unit}, bus: {bus_name}, unit: {found.unit}, profile: {best.ref}, interval: 10s}}"


def _finder_transport(spec: BusSpec) -> Transport:
    """Finding units asks each once, so no late-answer window after each silent one (a late answer
    is never taken for another unit's: the unit id differs); with it a 247-unit RTU scan would
    take three timeouts per absent unit instead of one."""
    return ModbusClient(spec, listen_late=False) if spec.protocol == "modbus" else open_transport(spec)
