"""Meter points -> the fewest data-identifier reads, and answers -> values. Pure.

Points sharing a DI are one request (a CJ/T 188 `901F` answer carries volume, time and status).
A DL/T 645 block DI (`0201FF00`: the voltages of phases A, B, C) answers its elements back to back
in DI order; the profile lists the blocks its meter supports with the first element's DI, so a
point's place in the answer is (its DI - the first's) at the FF position times its size. A block
the meter refuses with "no requested data" is remembered and its points read one DI at a time,
as a Modbus block refused with exception 2 is split.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from agent.drivers.decode import Decoded
from agent.meters import bcd, cjt188
from agent.meters.messages import MeterRequest
from agent.types import PointSpec, Quality

# CJ/T 188 unit codes -> (the base unit a profile point is in, factor into it)
_BASE: dict[str, tuple[str, float]] = {
    "Wh": ("kWh", 0.001), "kWh": ("kWh", 1.0), "MWh": ("kWh", 1000.0),
    "J": ("kWh", 1 / 3.6e6), "kJ": ("kWh", 1 / 3600.0), "MJ": ("kWh", 1 / 3.6), "GJ": ("kWh", 1000 / 3.6),
    "W": ("W", 1.0), "kW": ("W", 1000.0), "MW": ("W", 1e6),
    "L": ("m³", 0.001), "m³": ("m³", 1.0), "L/h": ("m³/h", 0.001), "m³/h": ("m³/h", 1.0),
}
UNIT_BASES = frozenset(base for base, _ in _BASE.values())


@dataclass(frozen=True, slots=True)
class Block:
    """A block DI the meter supports (one byte FF) and the DI of the element it starts with."""

    di: int
    first: int

    @property
    def wildcard_shift(self) -> int:
        """Bit position of the FF byte."""
        return next(s for s in (0, 8, 16, 24) if (self.di >> s) & 0xFF == 0xFF)

    def index_of(self, di: int) -> int | None:
        """Element index of `di` in this block's answer, or None when it is not a member."""
        shift = self.wildcard_shift
        mask = ~(0xFF << shift) & 0xFFFFFFFF
        if di & mask != self.di & mask:
            return None
        index = ((di >> shift) & 0xFF) - ((self.first >> shift) & 0xFF)
        return index if index >= 0 else None


@dataclass(frozen=True, slots=True)
class Planned:
    """One request and where each of its points sits in the answer's value bytes."""

    request: MeterRequest
    offsets: tuple[tuple[str, int], ...]


def plan_requests(points: Iterable[PointSpec], blocks: Iterable[Block] = (),
                  refused: frozenset[int] = frozenset()) -> list[Planned]:
    """Blocks (not refused, covering two points or more) first, then one request per remaining DI."""
    specs = sorted((p for p in points if p.di is not None), key=lambda p: (p.di, p.at, p.name))
    planned: list[Planned] = []
    taken: set[str] = set()
    for block in blocks:
        if block.di in refused:
            continue
        members = [(s, block.index_of(s.di)) for s in specs if s.name not in taken]  # type: ignore[arg-type]
        members = [(s, i) for s, i in members if i is not None]
        if len(members) < 2:
            continue
        offsets = tuple((s.name, (i or 0) * _size(s) + s.at) for s, i in members)  # None filtered out above
        planned.append(Planned(MeterRequest(block.di, tuple(n for n, _ in offsets)), offsets))
        taken.update(s.name for s, _ in members)
    by_di: dict[int, list[PointSpec]] = {}
    for spec in specs:
        if spec.name not in taken:
            by_di.setdefault(spec.di, []).append(spec)  # type: ignore[arg-type]
    for di, group in by_di.items():
        planned.append(Planned(MeterRequest(di, tuple(s.name for s in group)), tuple((s.name, s.at) for s in group)))
    return planned


def _size(spec: PointSpec) -> int:
    return bcd.parse_format(spec.bcd).size + (1 if spec.unit_code else 0)


def decode_answer(planned: Planned, value: bytes, specs: Mapping[str, PointSpec]) -> dict[str, Decoded]:
    """The value bytes of one answer -> every planned point's Decoded."""
    return {name: decode_point(specs[name], value, at) for name, at in planned.offsets}


def decode_point(spec: PointSpec, value: bytes, at: int) -> Decoded:
    """One point's bytes -> engineering value: BCD with sign, unit code, then the profile's scale."""
    fmt = bcd.parse_format(spec.bcd)
    size = fmt.size + (1 if spec.unit_code else 0)
    raw = value[at:at + size]
    if len(raw) < size:
        return Decoded(None, Quality.DECODE_ERROR, raw=tuple(raw))
    try:
        number = bcd.decode(raw[:fmt.size], fmt, spec.signed)
    except bcd.BcdError:
        return Decoded(None, Quality.DECODE_ERROR, raw=tuple(raw))
    factor = 1.0
    if spec.unit_code:
        converted = unit_factor(raw[-1], spec.unit)
        if converted is None:
            return Decoded(None, Quality.DECODE_ERROR, detail=raw[-1], raw=tuple(raw))
        factor = converted
    return Decoded(_scaled(spec, number, factor, fmt.decimals), raw=tuple(raw))


def unit_factor(code: int, unit: str) -> float | None:
    """Factor from the unit a CJ/T 188 unit code names into `unit`, or None if they do not match."""
    named = cjt188.unit_of(code)
    if named is None or named[0] not in _BASE:
        return None
    base, factor = _BASE[named[0]]
    return factor * named[1] if base == unit else None


def _scaled(spec: PointSpec, number: int | float, factor: float, decimals: int) -> int | float:
    if spec.scale == 1.0 and spec.offset == 0.0 and factor == 1.0:
        return number
    value = number * spec.scale * factor + spec.offset
    if factor == 1.0:
        places = max(0, decimals - round(math.log10(abs(spec.scale)))) if spec.scale else decimals
        return round(value, places) if places else round(value)
    return float(f"{value:.12g}")
