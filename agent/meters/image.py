"""What a simulated DL/T 645 or CJ/T 188 meter answers, from a profile and its moving values. Pure.

The decoder's pipeline run backwards: engineering value -> (minus offset) / scale -> BCD of the
point's format (with the sign bit, and for CJ/T 188 the unit code) -> placed at its offset in the
DI's answer. A block DI answers its elements back to back from the block's first element, with
zeros for elements the profile does not name (a real meter fills them with its own quantities).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from agent.meters import bcd
from agent.meters.plan import Block
from agent.types import PointSpec, Value

NO_DATA = 0x02
# the unit code a simulated CJ/T 188 meter reports each base unit in (W as kW: exercises conversion)
SERVED_UNIT = {"kWh": (0x05, 1.0), "W": (0x17, 0.001), "m³": (0x2C, 1.0), "m³/h": (0x35, 1.0)}


def encode_point(spec: PointSpec, value: Value) -> bytes:
    """One point's bytes as the meter sends them."""
    fmt = bcd.parse_format(spec.bcd)
    number = (float(value or 0) - spec.offset) / spec.scale
    if not spec.unit_code:
        return bcd.encode(number, fmt, spec.signed)
    code, factor = SERVED_UNIT[spec.unit]
    return bcd.encode(number * factor, fmt, spec.signed) + bytes([code])


def on_the_wire(points: Mapping[str, PointSpec], values: Mapping[str, Value]) -> dict[str, Value]:
    """Values rounded as the BCD formats carry them, so what a simulator records as served is
    exactly what a reader can decode (230.123 V is served as 230.1 in XXX.X)."""
    rounded = dict(values)
    for name, spec in points.items():
        value = values.get(name)
        if spec.di is None or not isinstance(value, int | float) or not spec.bcd:
            continue
        decimals = bcd.parse_format(spec.bcd).decimals
        factor = SERVED_UNIT[spec.unit][1] if spec.unit_code else 1.0
        steps = round((float(value) - spec.offset) / spec.scale * factor * 10**decimals)
        rounded[name] = float(f"{steps / 10**decimals / factor * spec.scale + spec.offset:.12g}")
    return rounded


def answer_for(di: int, points: Iterable[PointSpec], values: Mapping[str, Value],
               blocks: Iterable[Block] = (), missing: frozenset[str] = frozenset()) -> bytes | int:
    """The value bytes a meter answers `di` with, or the error byte (02H: no requested data)."""
    specs = [p for p in points if p.di is not None and p.name not in missing]
    block = next((b for b in blocks if b.di == di), None)
    if block is not None:
        return _block(block, specs, values)
    own = [p for p in specs if p.di == di]
    if not own:
        return NO_DATA
    return _place([(p.at, encode_point(p, values.get(p.name))) for p in own])


def _block(block: Block, specs: list[PointSpec], values: Mapping[str, Value]) -> bytes | int:
    members = [(s, block.index_of(s.di)) for s in specs]  # type: ignore[arg-type]
    placed = [(s, i) for s, i in members if i is not None]
    if not placed:
        return NO_DATA
    size = len(encode_point(placed[0][0], 0))
    return _place([(i * size + s.at, encode_point(s, values.get(s.name))) for s, i in placed])


def _place(parts: list[tuple[int, bytes]]) -> bytes:
    data = bytearray(max(at + len(b) for at, b in parts))
    for at, chunk in parts:
        data[at:at + len(chunk)] = chunk
    return bytes(data)
