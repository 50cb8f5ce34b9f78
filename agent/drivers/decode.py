"""Registers of one answered request -> engineering values with a quality per point. Pure.

Each point goes through the same short pipeline: slice its words out of the answer -> raw value
(type and order) -> "not available" sentinel -> enum name or scale/offset. A second pass applies
what needs other points: CT/PT ratios (`multiply_by`) and SunSpec scale factors (`scale_factor`).
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from agent.drivers.registers import (
    decimals_of,
    decode_words,
    raw_unsigned,
    shortest_f32,
    words_to_bytes,
)
from agent.types import DataType, Order, PointSpec, Quality, ReadRequest, Value


@dataclass(slots=True)
class Decoded:
    """One point's outcome; `detail` is the exception code, or the raw code of an enum. Never
    changed once made; not `frozen` for the same reason as `Reading` (made once per value polled)."""

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
    return Decoded(scale(spec, value), raw=raw)  # type: ignore[arg-type]  # numeric types here


_NUMBER_CODES = {DataType.U16: "H", DataType.I16: "h", DataType.U32: "I", DataType.I32: "i",
                 DataType.U64: "Q", DataType.I64: "q", DataType.F32: "f", DataType.F64: "d"}
_UNSIGNED_CODES = {1: "H", 2: "I", 4: "Q"}


@dataclass(frozen=True, slots=True)
class _Unpack:
    """How one point is read straight out of the answer's bytes (everything the per-poll loop needs,
    worked out once)."""

    spec: PointSpec
    offset: int  # in words from the start of the answer
    value: struct.Struct
    unsigned: struct.Struct | None  # for the "not available" sentinels, in value order
    is_float: bool
    name: str
    end: int  # offset + words
    at: int  # byte offset in the answer
    f32: bool  # a float32: shown as the shortest decimal that is the same float32
    scaled: bool  # scale or offset to apply


class BlockDecoder:
    """Decodes the answer to one planned request: built once per plan, called every poll.

    The answer is packed to bytes once, and every number whose bytes need at most a full
    reversal (ABCD, DCBA, and 16-bit words in any order) is unpacked from it with a precompiled
    struct. Strings, bit fields, enums, bits and the half-swapped 32/64-bit orders (CDAB, BADC)
    take `decode_point`; a table test holds both paths to the same results.
    """

    def __init__(self, request: ReadRequest, specs: Sequence[PointSpec]) -> None:
        self.request = request
        self._specs = list(specs)
        self._fast: list[_Unpack] = []
        self._slow: list[PointSpec] = []
        for spec in specs:
            unpack = _compile(spec, spec.address - request.start)
            if unpack is None:
                self._slow.append(spec)
            else:
                self._fast.append(unpack)

    def __call__(self, answer: Sequence[int]) -> dict[str, Decoded]:
        if self.request.kind.is_bit or len(answer) != self.request.count:
            return {spec.name: decode_point(spec, words_of(spec, self.request, answer)) for spec in self._specs}
        data = words_to_bytes(answer)
        words = tuple(answer)  # each point's raw registers are a slice of it
        decoded = {}
        for u in self._fast:
            raw = words[u.offset:u.end]
            if u.unsigned is not None and u.unsigned.unpack_from(data, u.at)[0] in u.spec.na:
                decoded[u.name] = Decoded(None, Quality.UNAVAILABLE, raw=raw)
                continue
            value = u.value.unpack_from(data, u.at)[0]
            if u.is_float:
                if not math.isfinite(value):
                    decoded[u.name] = Decoded(None, Quality.UNAVAILABLE, raw=raw)
                    continue
                if u.f32:
                    value = shortest_f32(value)
            decoded[u.name] = Decoded(scale(u.spec, value) if u.scaled else value, Quality.OK, 0, raw)
        for spec in self._slow:
            decoded[spec.name] = decode_point(spec, words_of(spec, self.request, answer))
        return decoded


@functools.lru_cache(maxsize=1024)
def block_decoder(request: ReadRequest, specs: tuple[PointSpec, ...]) -> BlockDecoder:
    """One decoder per distinct (request, points), shared by every device with that plan: a park of
    100 identical meters holds one set, not 100 (1.1 MB of unpackers for 100 x 40 points)."""
    return BlockDecoder(request, specs)


_struct = functools.cache(struct.Struct)  # a handful of formats ('>f', '<H' ...), shared by every point


def _compile(spec: PointSpec, offset: int) -> _Unpack | None:
    code = _NUMBER_CODES.get(spec.type)
    if code is None or spec.register.is_bit or offset < 0:
        return None
    if spec.words == 1:
        endian = "<" if spec.order.swap_bytes else ">"
    elif spec.order in (Order.ABCD, Order.DCBA):
        endian = ">" if spec.order is Order.ABCD else "<"
    else:
        return None
    unsigned = _struct(endian + _UNSIGNED_CODES[spec.words]) if spec.na else None
    return _Unpack(spec, offset, _struct(endian + code), unsigned, is_float=spec.type in (DataType.F32, DataType.F64),
                   name=spec.name, end=offset + spec.words, at=2 * offset, f32=spec.type is DataType.F32,
                   scaled=spec.scale != 1.0 or spec.offset != 0.0)


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
        factor: float = math.prod(float(result[r].value) for r in spec.multiply_by)  # type: ignore[arg-type, misc]
        if spec.scale_factor:
            factor *= 10.0 ** int(result[spec.scale_factor].value)  # type: ignore[arg-type]
        raw_value = decode_words(own.raw, spec.type, spec.order)
        value = scale(spec, raw_value, factor)  # type: ignore[arg-type]
        value += sum(float(result[r].value) for r in spec.plus)  # type: ignore[arg-type, misc, operator]
        result[spec.name] = Decoded(_tidy(value), raw=own.raw)
    return result


def _tidy(value: float | int) -> float | int:
    """Drop binary noise from products of decimals (0.1 * 3 = 0.30000000000000004)."""
    return float(f"{value:.12g}") if isinstance(value, float) else value
