"""CJ/T 188 frames (water, heat, gas meters): build requests, recognise the answer to ours. Pure.

    FE×2..4 | 68 | T | A0..A6 | C | L | DI DI SER DATA... | CS | 16

T: meter type (10H cold water, 20H heat, 30H gas, ...; AAH any). A0..A6: 7-byte BCD address, low
byte first. C: D7 direction, D6 abnormal; 01H read data -> 81H, 03H read address -> 83H. No +33H
offset. SER: a sequence number the master increments per request and the meter echoes. The DI's
byte order on the wire differs between meters (`90 1F` or `1F 90`): `di_order` in the profile.
Details and sources: docs/cjt188.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.meters.framing import START, Shape, checksum
from agent.meters.messages import Answer, MeterRequest, Op

READ_DATA, READ_ADDRESS = 0x01, 0x03
REPLY, ABNORMAL = 0x80, 0x40
ADDRESS_DIGITS = 14
ANY_TYPE = 0xAA
BROADCAST = b"\xAA" * 7
PREAMBLE = b"\xFE" * 3
CURRENT_DATA = 0x901F  # the main DI: current metering data
READ_ADDRESS_DI = 0x810A  # the DI of the read-address command

METER_TYPES = {0x10: "cold water", 0x11: "hot water", 0x12: "drinking water", 0x13: "reclaimed water",
               0x20: "heat (heating)", 0x21: "heat (cooling)", 0x30: "gas", 0x40: "electricity"}

# unit codes that follow a quantity: code -> (unit, factor into that unit)
UNITS: dict[int, tuple[str, float]] = {
    0x02: ("Wh", 1.0), 0x05: ("kWh", 1.0), 0x08: ("MWh", 1.0), 0x0A: ("MWh", 100.0),
    0x01: ("J", 1.0), 0x0B: ("kJ", 1.0), 0x0E: ("MJ", 1.0), 0x11: ("GJ", 1.0), 0x13: ("GJ", 100.0),
    0x14: ("W", 1.0), 0x17: ("kW", 1.0), 0x1A: ("MW", 1.0),
    0x29: ("L", 1.0), 0x2C: ("m³", 1.0), 0x32: ("L/h", 1.0), 0x35: ("m³/h", 1.0),
}

SHAPE = Shape(length_at=10)


@dataclass(frozen=True, slots=True)
class Frame:
    meter_type: int
    address: bytes  # wire order
    control: int
    data: bytes

    @property
    def from_meter(self) -> bool:
        return bool(self.control & REPLY)


def encode(frame: Frame, preamble: bytes = PREAMBLE) -> bytes:
    if len(frame.address) != 7 or len(frame.data) > 255:
        raise ValueError("a CJ/T 188 frame has a 7-byte address and at most 255 data bytes")
    body = bytes([START, frame.meter_type, *frame.address, frame.control, len(frame.data)]) + frame.data
    return preamble + body + bytes([checksum(body), 0x16])


def decode(raw: bytes) -> Frame:
    return Frame(raw[1], bytes(raw[2:9]), raw[9], bytes(raw[11:11 + raw[10]]))


def di_bytes(di: int, msb_first: bool) -> bytes:
    return di.to_bytes(2, "big" if msb_first else "little")


def request(meter_type: int, address: bytes, req: MeterRequest, seq: int, msb_first: bool = True,
            preamble: bytes = PREAMBLE) -> bytes:
    """Read data (01H: DI, SER) or read address (03H to the broadcast address, DI 810AH)."""
    if req.op is Op.READ_ADDRESS:
        data = di_bytes(READ_ADDRESS_DI, msb_first) + bytes([seq & 0xFF])
        return encode(Frame(ANY_TYPE, BROADCAST, READ_ADDRESS, data), preamble)
    data = di_bytes(req.di, msb_first) + bytes([seq & 0xFF])
    return encode(Frame(meter_type, address, READ_DATA, data), preamble)


def answer(raw: bytes, meter_type: int, address: bytes, req: MeterRequest, seq: int,
           msb_first: bool = True) -> Answer | None:
    """The answer to `req`, or None when the frame is something else on the line. The SER must
    echo ours, so a late answer to an earlier request is never taken for this one."""
    frame = decode(raw)
    function = READ_ADDRESS if req.op is Op.READ_ADDRESS else READ_DATA
    if not frame.from_meter or frame.control & 0x3F != function:
        return None
    if req.op is not Op.READ_ADDRESS and (frame.address != address or meter_type not in (ANY_TYPE, frame.meter_type)):
        return None
    if frame.control & ABNORMAL:
        return Answer(frame.address, error=frame.data[-1] if frame.data else 0)
    di = READ_ADDRESS_DI if req.op is Op.READ_ADDRESS else req.di
    if frame.data[:3] != di_bytes(di, msb_first) + bytes([seq & 0xFF]):
        return None
    value = frame.address if req.op is Op.READ_ADDRESS else frame.data[3:]
    return Answer(frame.address, value=value)


def unit_of(code: int) -> tuple[str, float] | None:
    return UNITS.get(code)
