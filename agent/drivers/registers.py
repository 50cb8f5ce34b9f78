"""Register words <-> raw values for every data type and word/byte order. Pure, both directions.

Decoding serves the poller; encoding serves the simulator and the tests, so the two are written
once, side by side, and a round-trip test keeps them honest.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from functools import lru_cache

from agent.types import DataType, Order

_INT_FORMATS = {
    DataType.U16: ">H", DataType.I16: ">h", DataType.BITS: ">H", DataType.ENUM: ">H",
    DataType.U32: ">I", DataType.I32: ">i", DataType.F32: ">f",
    DataType.U64: ">Q", DataType.I64: ">q", DataType.F64: ">d",
}


_F32 = struct.Struct(">f")
_PACKERS = {n: struct.Struct(f">{n}H") for n in range(1, 126)}


def to_bytes(words: Sequence[int], order: Order) -> bytes:
    """Registers as received -> the value's bytes in big-endian (ABCD) order."""
    ordered = words[::-1] if order.swap_words else words
    if order.swap_bytes:
        ordered = [(w & 0xFF) << 8 | w >> 8 for w in ordered]
    return _PACKERS[len(ordered)].pack(*ordered)


def words_to_bytes(words: Sequence[int]) -> bytes:
    """Registers as received -> their bytes on the wire (big-endian words, no reordering)."""
    return _PACKERS[len(words)].pack(*words)


def from_bytes(data: bytes, order: Order) -> list[int]:
    """Big-endian value bytes -> registers as the device sends them (inverse of to_bytes)."""
    words = [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
    if order.swap_bytes:
        words = [(w & 0xFF) << 8 | w >> 8 for w in words]
    return list(reversed(words)) if order.swap_words else words


def raw_unsigned(words: Sequence[int], order: Order) -> int:
    """The registers as one unsigned integer in value order: what "not available" sentinels match."""
    return int.from_bytes(to_bytes(words, order), "big")


def decode_words(words: Sequence[int], data_type: DataType, order: Order) -> int | float | str:
    """Registers -> the raw value (before scale and offset)."""
    data = to_bytes(words, order)
    if data_type is DataType.STRING:
        return data.split(b"\x00", 1)[0].decode("ascii", errors="replace").strip()
    value = struct.unpack(_INT_FORMATS[data_type], data)[0]
    if data_type is DataType.F32:
        return shortest_f32(value)
    return value


def encode_value(value: int | float | str, data_type: DataType, order: Order, length: int = 0) -> list[int]:
    """The raw value -> registers as a device would send them."""
    if data_type is DataType.STRING:
        data = str(value).encode("ascii")[: length * 2].ljust(length * 2, b"\x00")
    elif data_type in (DataType.F32, DataType.F64):
        data = struct.pack(_INT_FORMATS[data_type], float(value))
    else:
        data = struct.pack(_INT_FORMATS[data_type], int(value))
    return from_bytes(data, order)


def shortest_f32(value: float) -> float:
    """The shortest decimal that is still the same float32: 230.1, not 230.10000610351562.

    A float32 carries about 7 significant digits; printing the double it widens to invents
    digits the meter never measured, and costs bytes in the integer-scaled wire encoding.
    """
    candidate = float(f"{value:.7g}")  # %g drops trailing zeros: 230.1 stays 230.1; enough for most
    packed = _F32.pack(value)
    if _F32.pack(candidate) == packed:
        return candidate
    if not math.isfinite(value):
        return value
    for digits in (8, 9):
        candidate = float(f"{value:.{digits}g}")
        if _F32.pack(candidate) == packed:
            return candidate
    return value


@lru_cache(maxsize=256)
def decimals_of(scale: float) -> int | None:
    """Decimal places a scale implies (0.1 -> 1, 0.001 -> 3, 10 -> 0); None if not a clean decimal."""
    text = repr(float(scale))
    if "e" in text:
        mantissa, exponent = text.split("e")
        places = max(0, -int(exponent) + len(mantissa.partition(".")[2].rstrip("0")))
        return places if places <= 12 else None
    places = len(text.partition(".")[2].rstrip("0"))
    return places if places <= 12 else None
