"""DL/T 645-2007 frames: build requests, recognise the answer to ours. Pure.

    FE×0..4 | 68 | A0..A5 | 68 | C | L | DATA (each byte +33H) | CS | 16

A0..A5: 6-byte BCD address, low byte first; AA×6 is the broadcast. C: D7 direction (1 = from the
meter), D6 abnormal reply, D5 follow-up frame exists, D4..D0 function (11H read data, 12H read
follow-up, 13H read address). DATA of a read: DI0..DI3 (the identifier, low byte first) then the
value. CS: sum mod 256 from the first 68 to the end of DATA. Details and sources: docs/dlt645.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.meters.framing import START, Shape, checksum
from agent.meters.messages import Answer, MeterRequest, Op

READ_DATA, READ_FOLLOW, READ_ADDRESS = 0x11, 0x12, 0x13
REPLY, ABNORMAL, FOLLOWS = 0x80, 0x40, 0x20
BROADCAST = b"\xAA" * 6
ADDRESS_DIGITS = 12
OFFSET = 0x33
PREAMBLE = b"\xFE" * 4
NO_DATA = 0x02  # error bit 1: no requested data (the DI is not implemented)
ERRORS = {0x01: "other error", 0x02: "no requested data", 0x04: "password error or unauthorised",
          0x08: "baud rate cannot be changed", 0x10: "too many annual time zones",
          0x20: "too many daily periods", 0x40: "too many tariffs"}

SHAPE = Shape(length_at=9, header_ok=lambda buf, i: buf[i + 7] == START)


@dataclass(frozen=True, slots=True)
class Frame:
    address: bytes  # wire order
    control: int
    data: bytes  # with the +33H removed

    @property
    def function(self) -> int:
        return self.control & 0x1F

    @property
    def from_meter(self) -> bool:
        return bool(self.control & REPLY)

    @property
    def abnormal(self) -> bool:
        return bool(self.control & ABNORMAL)


def encode(frame: Frame, preamble: bytes = PREAMBLE) -> bytes:
    """A frame on the wire: +33H on every data byte, checksum, end byte, FE preamble in front."""
    if len(frame.address) != 6 or len(frame.data) > 255:
        raise ValueError("a DL/T 645 frame has a 6-byte address and at most 255 data bytes")
    body = bytes([START, *frame.address, START, frame.control, len(frame.data)])
    body += bytes((b + OFFSET) & 0xFF for b in frame.data)
    return preamble + body + bytes([checksum(body), 0x16])


def decode(raw: bytes) -> Frame:
    """A well-formed frame (68..16, as `framing.next_frame` returns it) -> Frame."""
    length = raw[9]
    data = bytes((b - OFFSET) & 0xFF for b in raw[10:10 + length])
    return Frame(bytes(raw[1:7]), raw[8], data)


def request(address: bytes, req: MeterRequest, preamble: bytes = PREAMBLE) -> bytes:
    """Read data (11H, the DI low byte first) or read address (13H, to the broadcast address)."""
    if req.op is Op.READ_ADDRESS:
        return encode(Frame(BROADCAST, READ_ADDRESS, b""), preamble)
    return encode(Frame(address, READ_DATA, req.di.to_bytes(4, "little")), preamble)


def answer(raw: bytes, address: bytes, req: MeterRequest) -> Answer | None:
    """The answer to `req` sent to `address`, or None when this frame is something else on the
    line (our own echo, another master's request, a reply from another meter or to another DI)."""
    frame = decode(raw)
    function = READ_ADDRESS if req.op is Op.READ_ADDRESS else READ_DATA
    if not frame.from_meter or frame.function != function or not _addressed(frame.address, address):
        return None
    if frame.abnormal:
        return Answer(frame.address, error=frame.data[0] if frame.data else 0)
    if req.op is Op.READ_ADDRESS:
        return Answer(frame.address, value=frame.data[:6]) if len(frame.data) >= 6 else None
    if frame.data[:4] != req.di.to_bytes(4, "little"):
        return None
    return Answer(frame.address, value=frame.data[4:], follows=bool(frame.control & FOLLOWS))


def _addressed(got: bytes, sent: bytes) -> bool:
    """A reply carries the meter's full address; AA bytes in ours are wildcards (broadcast,
    shortened addressing), which any value matches."""
    return all(s == 0xAA or g == s for g, s in zip(got, sent, strict=True))


def error_text(code: int) -> str:
    """The error byte of an abnormal reply in words (several bits may be set)."""
    names = [name for bit, name in ERRORS.items() if code & bit]
    return ", ".join(names) or f"error byte {code:#04x}"


def di_text(di: int) -> str:
    return f"{di:08X}"
