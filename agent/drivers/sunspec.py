"""SunSpec discovery: find the "SunS" marker, walk the model chain, place model-relative points.

Never hard-code SunSpec offsets: SolarEdge and Fronius report the common model (1) with L = 65,
the specification says 66, and every model after it shifts (sunspec/models#22). Discovery tries
the bases 40000, 0 and 50000 (pysunspec2's order), reads each model's id and length, and stops at
the end marker 0xFFFF (or a 0, as Kostal ends it; an exception after the last model also ends it).

`walk` is pure over a `read(address, count) -> words` function, so it is tested with data tables;
`discover` runs it over a Bus.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from agent.errors import DeviceError
from agent.types import DeviceTiming, PointSpec, ReadRequest, RegisterKind

BASES = (40000, 0, 50000)
MARKER = (0x5375, 0x6E53)  # "SunS"
END = 0xFFFF
MAX_MODELS = 64

Read = Callable[[int, int], Awaitable[list[int]]]


@dataclass(frozen=True)
class SunSpecMap:
    base: int
    models: dict[int, int]  # model id -> address of its ID register (the first one found, for repeats)
    lengths: dict[int, int]

    def describe(self) -> str:
        chain = ", ".join(f"{m}@{a} (L={self.lengths[m]})" for m, a in self.models.items())
        return f"SunSpec at {self.base}: {chain}"


class NotSunSpec(DeviceError):
    """No "SunS" marker at any base."""


async def walk(read: Read) -> SunSpecMap:
    for base in BASES:
        try:
            head = await read(base, 2)
        except DeviceError:
            continue
        if tuple(head) == MARKER:
            return await _chain(read, base)
    raise NotSunSpec(f"no SunSpec marker at {', '.join(map(str, BASES))}")


async def _chain(read: Read, base: int) -> SunSpecMap:
    models: dict[int, int] = {}
    lengths: dict[int, int] = {}
    address = base + 2
    for _ in range(MAX_MODELS):
        try:
            model_id = (await read(address, 1))[0]
        except DeviceError:
            break  # Kostal answers an exception after the last model
        if model_id in (END, 0):
            break
        length = (await read(address + 1, 1))[0]  # read apart: some devices give no L for the end model
        models.setdefault(model_id, address)
        lengths.setdefault(model_id, length)
        address += length + 2
    return SunSpecMap(base, models, lengths)


def place(points: dict[str, PointSpec], found: SunSpecMap) -> dict[str, PointSpec]:
    """Points with absolute addresses; those whose models the device lacks are left out."""
    placed = {}
    for name, spec in points.items():
        if not spec.models:
            placed[name] = spec
            continue
        model = next((m for m in spec.models if m in found.models), None)
        if model is not None:
            placed[name] = replace(spec, address=found.models[model] + spec.address)
    # a point scaled by a factor its model lacks cannot be decoded: leave it out too
    return {n: s for n, s in placed.items() if all(r in placed for r in s.refs)}


async def discover(read_registers: Callable[[ReadRequest, DeviceTiming], Awaitable[list[int]]],
                   timing: DeviceTiming) -> SunSpecMap:
    async def read(address: int, count: int) -> list[int]:
        return await read_registers(ReadRequest(RegisterKind.HOLDING, address, count, ()), timing)
    return await walk(read)
