"""SunSpec chain walking over register tables (no I/O)."""

from __future__ import annotations

import asyncio

import pytest

from agent.drivers.sunspec import NotSunSpec, walk
from agent.errors import DeviceException


def table(base: int, models: list[tuple[int, int]], end: list[int] | None = None) -> dict[int, int]:
    words = {base: 0x5375, base + 1: 0x6E53}
    address = base + 2
    for model, length in models:
        words[address], words[address + 1] = model, length
        address += length + 2
    for i, w in enumerate(end if end is not None else [0xFFFF, 0]):
        words[address + i] = w
    return words


def reader(words: dict[int, int]):  # type: ignore[no-untyped-def]
    async def read(address: int, count: int) -> list[int]:
        if any(a not in words for a in range(address, address + count)):
            raise DeviceException(2)
        return [words[a] for a in range(address, address + count)]
    return read


@pytest.mark.parametrize(("base", "common", "inverter_at"), [
    (40000, 66, 40070),  # the specification's common model
    (40000, 65, 40069),  # SolarEdge / Fronius: one register shorter, everything after shifts
    (0, 66, 70),
    (50000, 66, 50070),
])
def test_walk_finds_models_wherever_they_are(base: int, common: int, inverter_at: int) -> None:
    found = asyncio.run(walk(reader(table(base, [(1, common), (103, 50), (160, 48)]))))
    assert found.base == base
    assert found.models == {1: base + 2, 103: inverter_at, 160: inverter_at + 52}
    assert found.lengths[1] == common


def test_kostal_end_marker_and_exception_after_the_last_model() -> None:
    kostal = asyncio.run(walk(reader(table(40000, [(1, 66), (103, 50)], end=[0x0000]))))
    assert list(kostal.models) == [1, 103]
    no_end = asyncio.run(walk(reader(table(40000, [(1, 66), (103, 50)], end=[]))))
    assert list(no_end.models) == [1, 103]


def test_no_marker_anywhere() -> None:
    with pytest.raises(NotSunSpec):
        asyncio.run(walk(reader({0: 1, 1: 2})))
