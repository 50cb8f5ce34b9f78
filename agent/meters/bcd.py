"""Packed BCD as DL/T 645 and CJ/T 188 carry numbers and addresses. Pure.

Values go on the wire low byte first; a data format such as `XXXXXX.XX` gives the digits and the
decimals (8 digits = 4 bytes, 2 decimals). A signed quantity keeps its sign in the top bit of the
highest (last) byte: sign-magnitude, not two's complement. Addresses are written in config as on
the nameplate (most significant digit first) and reversed byte-wise for the wire.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FORMAT = re.compile(r"^(X+)(?:\.(X+))?$")


class BcdError(ValueError):
    """Bytes that are not valid packed BCD (a nibble above 9)."""


@dataclass(frozen=True, slots=True)
class BcdFormat:
    """A data format of the standards: `XXX.XXX` is 6 digits, 3 of them decimals, 3 bytes."""

    digits: int
    decimals: int

    @property
    def size(self) -> int:
        return (self.digits + 1) // 2

    def __str__(self) -> str:
        whole = "X" * (self.digits - self.decimals)
        return f"{whole}.{'X' * self.decimals}" if self.decimals else whole


def parse_format(text: str) -> BcdFormat:
    """`XXXXXX.XX` -> BcdFormat(8, 2); ValueError for anything else."""
    match = _FORMAT.match(text.strip().upper())
    if not match:
        raise ValueError(f"data format {text!r} is not like XXXXXX.XX (X = one BCD digit)")
    whole, fraction = match.group(1), match.group(2) or ""
    return BcdFormat(len(whole) + len(fraction), len(fraction))


def decode(data: bytes, fmt: BcdFormat, signed: bool = False) -> int | float:
    """Low-byte-first BCD -> number with the format's decimals; BcdError on a non-decimal nibble."""
    if len(data) != fmt.size:
        raise BcdError(f"expected {fmt.size} bytes for {fmt}, got {len(data)}")
    negative = signed and bool(data[-1] & 0x80)
    body = data[:-1] + bytes([data[-1] & 0x7F]) if signed else data
    magnitude = digits_of(body)
    number = -magnitude if negative else magnitude
    if fmt.decimals == 0:
        return number
    return round(number / 10**fmt.decimals, fmt.decimals)


def digits_of(data: bytes) -> int:
    """Low-byte-first packed BCD -> integer."""
    text = data[::-1].hex()
    if not text.isdigit():
        raise BcdError(f"not BCD: {data.hex(' ')}")
    return int(text) if text else 0


def encode(value: float, fmt: BcdFormat, signed: bool = False) -> bytes:
    """Number -> low-byte-first BCD of the format; ValueError if it does not fit."""
    scaled = round(abs(value) * 10**fmt.decimals)
    text = f"{scaled:0{fmt.size * 2}d}"
    if scaled >= 10**fmt.digits or (signed and int(text[0]) > 7):
        raise ValueError(f"{value} does not fit the format {fmt}{' (signed)' if signed else ''}")
    data = bytearray(bytes.fromhex(text)[::-1])
    if signed and value < 0:
        data[-1] |= 0x80
    return bytes(data)


def address_to_wire(nameplate: str, digits: int) -> bytes:
    """`123456789012` (as printed, most significant first) -> `12 90 78 56 34 12` (wire order).

    `A` stands for a wildcard digit (DL/T 645 broadcast and wildcard addressing)."""
    text = nameplate.strip().upper()
    if len(text) != digits or not all(c.isdigit() or c == "A" for c in text):
        raise ValueError(f"address {nameplate!r} must be {digits} digits, written as on the nameplate")
    return bytes.fromhex(text)[::-1]


def address_from_wire(wire: bytes) -> str:
    """Wire-order address bytes -> nameplate text, most significant digit first."""
    return wire[::-1].hex().upper()
