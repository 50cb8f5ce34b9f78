"""What crosses between the meter planner, the codecs and the link: one request, one answer."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Op(enum.StrEnum):
    READ = "read"  # read one data identifier (or a block identifier)
    READ_ADDRESS = "read_address"  # who is there: answered with the meter's own address


@dataclass(frozen=True, slots=True)
class MeterRequest:
    """One request to one meter: a data identifier (DL/T 645: 4 bytes; CJ/T 188: 2) and the
    profile points its answer carries."""

    di: int
    points: tuple[str, ...] = ()
    op: Op = Op.READ

    def __str__(self) -> str:
        return f"DI {self.di:08X}" if self.op is Op.READ else "read-address"


@dataclass(frozen=True, slots=True)
class Answer:
    """A reply to our request: the value bytes (after the DI), or the meter's error byte."""

    address: bytes  # wire order, as the meter sent it
    value: bytes = b""
    error: int | None = None  # abnormal reply (DL/T 645 D1H, CJ/T 188 C1H): the error/status byte
    follows: bool = False  # DL/T 645 B1H: more data in a follow-up frame (not requested)


@dataclass(frozen=True, slots=True)
class MeterTarget:
    """Who a request goes to on a meter bus (the `unit` of a Modbus device)."""

    address: bytes  # wire order
    meter_type: int = 0  # CJ/T 188 only
    di_msb_first: bool = True  # CJ/T 188 only: `90 1F` (True) or `1F 90` on the wire
