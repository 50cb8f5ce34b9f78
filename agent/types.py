"""The boundary vocabulary: the few shapes that cross module boundaries.

Pure modules (planning, decoding, encoding) speak only these types, so they can be tested with
data tables and no I/O. Everything here is immutable and cheap to build in the poll loop.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TypeAlias

Value: TypeAlias = float | int | str | None


class RegisterKind(enum.StrEnum):
    """The four Modbus data tables; the value is the profile keyword."""

    HOLDING = "holding"
    INPUT = "input"
    COIL = "coil"
    DISCRETE = "discrete"

    @property
    def is_bit(self) -> bool:
        """Coils and discrete inputs address single bits, not 16-bit words."""
        return self in (RegisterKind.COIL, RegisterKind.DISCRETE)


class DataType(enum.StrEnum):
    """Wire data types a profile point can have."""

    U16 = "u16"
    I16 = "i16"
    U32 = "u32"
    I32 = "i32"
    U64 = "u64"
    I64 = "i64"
    F32 = "f32"
    F64 = "f64"
    STRING = "string"
    BITS = "bits"  # a u16 bit field: value is the integer, flags named in the profile
    ENUM = "enum"  # a u16 code: value is the state name, the raw code is kept

    @property
    def words(self) -> int:
        """Registers one value occupies (strings give their own length)."""
        return _WORDS[self]


_WORDS = {
    DataType.U16: 1, DataType.I16: 1, DataType.BITS: 1, DataType.ENUM: 1,
    DataType.U32: 2, DataType.I32: 2, DataType.F32: 2,
    DataType.U64: 4, DataType.I64: 4, DataType.F64: 4,
    DataType.STRING: 0,
}


class Order(enum.StrEnum):
    """Word and byte order of a multi-register value, as letters of the big-endian bytes.

    ABCD: high word first, high byte first (Modbus default). CDAB: low word first ("word swap").
    BADC: bytes swapped inside each word. DCBA: fully byte-reversed. For 64-bit values the same
    two swaps apply to all four words.
    """

    ABCD = "ABCD"
    CDAB = "CDAB"
    BADC = "BADC"
    DCBA = "DCBA"

    @property
    def swap_words(self) -> bool:
        return self in (Order.CDAB, Order.DCBA)

    @property
    def swap_bytes(self) -> bool:
        return self in (Order.BADC, Order.DCBA)


class PointKind(enum.StrEnum):
    """Gauge: a level that can go up and down. Counter: monotonic total (energy, volume)."""

    GAUGE = "gauge"
    COUNTER = "counter"


class Quality(enum.IntEnum):
    """How good one reading is; the integer goes on the wire."""

    OK = 0
    TIMEOUT = 1  # no answer (or no connection) within the timeout
    EXCEPTION = 2  # the device answered with a Modbus exception; the code is in Reading.detail
    UNAVAILABLE = 3  # a "not available" sentinel, or a register the device does not implement
    DECODE_ERROR = 4  # the answer arrived but could not be turned into a value


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One Modbus read: a contiguous span of one table, covering the named points."""

    kind: RegisterKind
    start: int
    count: int
    points: tuple[str, ...]

    @property
    def end(self) -> int:
        """One past the last address read."""
        return self.start + self.count


@dataclass(slots=True)
class Reading:
    """One point of one device at one instant: the unit of data the rest of the agent moves.

    Never changed once made, but not `frozen`: a frozen dataclass costs four times as much to
    construct (1.0 against 0.25 us), and every value polled is one of these."""

    device: str
    point: str
    ts_ms: int  # wall-clock milliseconds when the request went out
    value: Value
    quality: Quality = Quality.OK
    detail: int = 0  # Modbus exception code for Quality.EXCEPTION, raw code for enums
    raw: tuple[int, ...] = field(default=(), compare=False)  # registers as read, for probe/debug


@dataclass(frozen=True, slots=True)
class PointSpec:
    """A profile point with the profile's defaults applied: everything needed to read and decode it."""

    name: str
    register: RegisterKind
    address: int
    type: DataType
    words: int  # registers (or bits) occupied
    order: Order = Order.ABCD
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    kind: PointKind = PointKind.GAUGE
    na: frozenset[int] = frozenset()
    multiply_by: tuple[str, ...] = ()
    scale_factor: str | None = None
    plus: tuple[str, ...] = ()
    constant: float | None = None  # not read from the device
    models: tuple[int, ...] = ()  # SunSpec: the address is an offset into the first of these models found
    values: tuple[tuple[int, str], ...] = ()  # enum codes, as pairs to stay hashable
    hidden: bool = False
    # DL/T 645 and CJ/T 188 points: data identifier, byte offset in its answer, BCD format
    di: int | None = None
    at: int = 0
    bcd: str = ""  # data format such as XXXXXX.XX
    signed: bool = False  # sign in the top bit of the highest byte
    unit_code: bool = False  # CJ/T 188: a unit code byte follows the value

    @property
    def end(self) -> int:
        return self.address + self.words

    @property
    def refs(self) -> tuple[str, ...]:
        """Points this one's value is computed with."""
        return (*self.multiply_by, *((self.scale_factor,) if self.scale_factor else ()), *self.plus)

    @property
    def derived(self) -> bool:
        """True when the value needs other points (ratios, scale factors, addends) after decoding."""
        return bool(self.multiply_by or self.scale_factor or self.plus)


@dataclass(frozen=True, slots=True)
class DeviceTiming:
    """Request limits and pauses of one device (profile defaults, then the device entry's overrides)."""

    max_registers: int = 125
    max_gap: int = 10
    even_aligned: bool = False
    pause_after_connect: float = 0.0
    pause_between_requests: float = 0.0
    timeout: float = 1.0
