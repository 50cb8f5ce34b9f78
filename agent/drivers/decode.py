"""Registers of one answered request -> engineering values with a quality per point. Pure.

Each point goes through the same short pipeline: slice its words out of the answer -> raw value
(type and order) -> "not available" sentinel -> enum name or scale/offset. A second pass applies
what needs other points: CT/PT ratios (`multiply_by`) and SunSpec scale factors (`scale_factor`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from agent.drivers.registers import decimals_of, decode_words, raw_unsigned
from agent.types import DataType, PointSpec, Quality, ReadRequest, Value


@dataclass(frozen=True, slots=True)
class Decoded:
    """One point's outcome; `detail` is the exception code, or the raw code of an enum."""

    value: Value
    quality: Quality = Quality.OK
    detail: int = 0
    raw: tuple[int, ...] = ()

    @property
    def ok(self) -> bool:
        return self.quality is Quality.OK


def words_of(spec: PointSpec, request: ReadRequest, answer: Sequence[int]) -> tuple[int, ...]:
    """The slice of `answer` (the registers or bits of `request`) that belongs to `spec`."""
    offset = spec.address - request.start
    return tuple(answer[offset:offset + spec.words])


def decode_point(spec: PointSpec, words: Sequence[int]) -> Decoded:
    """Registers of one point -> its value before cross-point steps."""
    raw = tuple(words)
    if spec.register.is_bit:
        return Decoded(int(bool(raw[0])), raw=raw)
    if len(raw) != spec.words:
        return Decoded(None, Quality.DECODE_ERROR, raw=raw)
    if spec.na and raw_unsigned(raw, spec.order) in spec.na:
        return Decoded(None, Quality.UNAVAILABLE, raw=raw)
    value = decode_words(raw, spec.type, spec.order)
    if isinstance(value, float) and not math.isfinite(value):
        return Decoded(None, Quality.UNAVAILABLE, raw=raw)
    if spec.type is DataType.ENUM:
        code = int(value)
        return Decoded(dict(spec.values).get(code, f"unknown_{code:#06x}"), detail=code, raw=raw)
    if spec.type in (DataType.STRING, DataType.BITS):
        return Decoded(value, raw=raw)
    return Decoded(scale(spec, value), raw=raw)


def scale(spec: PointSpec, raw: float | int, factor: float = 1.0) -> float | int:
    """raw * scale * factor + offset; integers scaled by a clean decimal are rounded to its places."""
    if spec.scale == 1.0 and spec.offset == 0.0 and factor == 1.0:
        return raw
    value = raw * spec.scale * factor + spec.offset
    if isinstance(raw, int) and factor == 1.0 and (places := decimals_of(spec.scale)) is not None:
        return round(value, places)
    return value


def derive(specs: Iterable[PointSpec], decoded: Mapping[str, Decoded],
           constants: Mapping[str, float] | None = None) -> dict[str, Decoded]:
    """Second pass: points scaled by other points. A missing reference makes the point unavailable.

    `constants` give fixed values for reference points (a CT ratio written on the panel, for a
    meter that does not expose it); they take the place of the read value.
    """
    specs = list(specs)
    result = dict(decoded)
    fixed = {s.name: s.constant for s in specs if s.constant is not None}
    for name, value in {**fixed, **(constants or {})}.items():
        result[name] = Decoded(value)
    for spec in specs:
        if not spec.derived or spec.name not in result or not result[spec.name].ok:
            continue
        own = result[spec.name]
        if any(ref not in result or not result[ref].ok for ref in spec.refs):
            result[spec.name] = Decoded(None, Quality.UNAVAILABLE, raw=own.raw)
            continue
        factor = math.prod(float(result[r].value) for r in spec.multiply_by)  # type: ignore[arg-type]
        if spec.scale_factor:
            factor *= 10.0 ** int(result[spec.scale_factor].value)  # type: ignore[arg-type]
        raw_value = decode_words(own.raw, spec.type, spec.order)
        value = scale(spec, raw_value, factor)  # type: ignore[arg-type]
        value += sum(float(result[r].value) for r in spec.plus)  # type: ignore[arg-type]
        result[spec.name] = Decoded(_tidy(value), raw=own.raw)
    return result


def _tidy(value: float | int) -> float | int:
    """Drop binary noise from products of decimals (0.1 * 3 = 0.30000000000000004)."""
    return float(f"{value:.12g}") if isinstance(value, float) else value
