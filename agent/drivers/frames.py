"""Modbus read requests and their answers, in RTU and in Modbus TCP (MBAP) framing. Pure.

    RTU   unit | function | byte count | data ... | CRC lo | CRC hi
    TCP   transaction id (2) | protocol 0 (2) | length (2) | unit | function | byte count | data ...

An answer is taken only when it can be proven to answer this request: the unit, the function (or
function | 0x80 with an exception code), the byte count the quantity asked for, and the CRC (RTU)
or the transaction id and MBAP length (TCP). RTU frames carry no transaction id, and a line
carries what is not ours: a 0x00 when an auto-direction RS-485 converter switches on, noise, our
own echo, a late answer to an earlier request. So the answer is looked for where it should start
(the clean case: one comparison and one CRC), and only when that fails the bytes that arrived are
scanned for a position where unit, function and byte count match and the CRC holds (resync, with
bytes.find, not a Python loop per byte).

When no answer is found, `explain_rtu` / `explain_tcp` say what came back instead ("answer from
unit 3, expected 1", "bad CRC", "truncated: 5 of 9 bytes"): an integrator who reads "timeout"
checks baud rate and cabling, one who reads "answer from unit 3" fixes the unit id.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from agent.types import RegisterKind

FUNCTIONS = {RegisterKind.COIL: 1, RegisterKind.DISCRETE: 2, RegisterKind.HOLDING: 3, RegisterKind.INPUT: 4}
EXCEPTION = 0x80
SHOW_BYTES = 32  # bytes of an unrecognised answer quoted in a message


@dataclass(frozen=True, slots=True)
class Read:
    """One read request: unit, function, first address, quantity, and (TCP) the transaction id."""

    unit: int
    function: int
    start: int
    count: int
    tid: int = 0

    @property
    def byte_count(self) -> int:
        """Data bytes the answer must carry: 2 per register, or the bits packed 8 to a byte."""
        return (self.count + 7) // 8 if self.function in (1, 2) else 2 * self.count

    @property
    def rtu_length(self) -> int:
        return 5 + self.byte_count


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer to a Read: its data bytes, or the exception code it carried; `end` is the
    index just past it in the bytes searched."""

    data: bytes = b""
    exception: int | None = None
    end: int = 0


@dataclass(frozen=True, slots=True)
class Rejected:
    """An answer that certainly is the reply to this request (TCP: our transaction id) and is
    malformed: there is no point waiting for another one."""

    reason: str


# --------------------------------------------------------------------------- CRC

def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _crc_table()


def crc16(data: bytes | bytearray | memoryview) -> bytes:
    """The Modbus CRC of `data` as it goes on the wire (low byte first)."""
    crc = 0xFFFF
    table = _TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc.to_bytes(2, "little")


def _crc_ok(buf: bytes, start: int, end: int) -> bool:
    return crc16(memoryview(buf)[start:end - 2]) == buf[end - 2:end]


# --------------------------------------------------------------------------- requests

def rtu_request(read: Read) -> bytes:
    body = struct.pack(">BBHH", read.unit, read.function, read.start, read.count)
    return body + crc16(body)


def tcp_request(read: Read) -> bytes:
    return struct.pack(">HHHBBHH", read.tid, 0, 6, read.unit, read.function, read.start, read.count)


def rtu_reply(unit: int, function: int, data: bytes) -> bytes:
    """An RTU answer (for simulators and tests): unit, function, byte count, data, CRC."""
    body = bytes([unit, function, len(data)]) + data
    return body + crc16(body)


def rtu_exception(unit: int, function: int, code: int) -> bytes:
    body = bytes([unit, function | EXCEPTION, code])
    return body + crc16(body)


def tcp_reply(tid: int, unit: int, function: int, data: bytes) -> bytes:
    return struct.pack(">HHHBBB", tid, 0, 3 + len(data), unit, function, len(data)) + data


# --------------------------------------------------------------------------- RTU answers

def find_rtu(buf: bytes, read: Read) -> Answer | None:
    """The answer to `read` in what arrived, or None while there is none (yet)."""
    header = bytes((read.unit, read.function, read.byte_count))
    failed = bytes((read.unit, read.function | EXCEPTION))
    if buf.startswith(header):  # the clean case: no scan
        if len(buf) < read.rtu_length:
            return None
        if _crc_ok(buf, 0, read.rtu_length):
            return Answer(buf[3:read.rtu_length - 2], end=read.rtu_length)
    elif buf.startswith(failed):
        if len(buf) < 5:
            return None
        if _crc_ok(buf, 0, 5):
            return Answer(exception=buf[2], end=5)
    return _resync_rtu(buf, read, header, failed)


def _resync_rtu(buf: bytes, read: Read, header: bytes, failed: bytes) -> Answer | None:
    """Every later position where the expected answer or exception starts, first one that holds."""
    for pattern, length in ((header, read.rtu_length), (failed, 5)):
        at = buf.find(pattern, 1)
        while at != -1 and at + length <= len(buf):
            if _crc_ok(buf, at, at + length):
                if length == 5:
                    return Answer(exception=buf[at + 2], end=at + 5)
                return Answer(buf[at + 3:at + length - 2], end=at + length)
            at = buf.find(pattern, at + 1)
    return None


def explain_rtu(buf: bytes, read: Read) -> str:
    """What came back instead of the answer to `read` (only called once none was found)."""
    reason = _other_rtu_frame(buf, read) or _damaged_rtu_answer(buf, read) or "no Modbus RTU answer in it"
    return f"{reason}; received {show(buf)}"


def _other_rtu_frame(buf: bytes, read: Read) -> str:
    """A well-formed (CRC-valid) answer that is not ours: another unit, another function."""
    for at in range(len(buf) - 4):
        unit, function = buf[at], buf[at + 1]
        if function & 0x7F not in (1, 2, 3, 4):
            continue
        length = 5 if function & EXCEPTION else 5 + buf[at + 2]
        if at + length > len(buf) or not _crc_ok(buf, at, at + length):
            continue
        if unit != read.unit:
            return f"answer from unit {unit}, expected {read.unit}"
        if function & 0x7F != read.function:
            return f"answer with function {function & 0x7F}, expected {read.function}"
        if buf[at + 2] != read.byte_count:
            return f"byte count {buf[at + 2]}, expected {read.byte_count} for {read.count} value(s)"
    return ""


def _damaged_rtu_answer(buf: bytes, read: Read) -> str:
    """Where our unit and function start: a wrong byte count, a short frame, a bad CRC."""
    at = _first(buf, bytes((read.unit, read.function)), bytes((read.unit, read.function | EXCEPTION)))
    if at < 0:
        return ""
    if buf[at + 1] & EXCEPTION:
        length = 5
    else:
        if at + 2 < len(buf) and buf[at + 2] != read.byte_count:
            return f"byte count {buf[at + 2]}, expected {read.byte_count} for {read.count} value(s)"
        length = read.rtu_length
    have = len(buf) - at
    if have < length:
        return f"truncated: {have} of {length} bytes"
    return "bad CRC"


def _first(buf: bytes, *patterns: bytes) -> int:
    found = [at for at in (buf.find(p) for p in patterns) if at >= 0]
    return min(found, default=-1)


# --------------------------------------------------------------------------- TCP answers

_MBAP = struct.Struct(">HHHBB")


def find_tcp(buf: bytes, read: Read) -> Answer | Rejected | None:
    """The answer to `read` (by transaction id), Rejected when the answer with our transaction id
    is malformed, or None while it has not (completely) arrived. Stale answers to earlier
    transactions are skipped."""
    header = _MBAP.pack(read.tid, 0, 3 + read.byte_count, read.unit, read.function) + bytes((read.byte_count,))
    length = 9 + read.byte_count
    if buf.startswith(header) and len(buf) >= length:  # the clean case
        return Answer(buf[9:length], end=length)
    at = 0
    while len(buf) - at >= 8:
        tid, protocol, size, _, _ = _MBAP.unpack_from(buf, at)
        if protocol != 0 or size < 2:
            return _tcp_resync(buf, read, header, at + 1)
        end = at + 6 + size
        if tid == read.tid:
            verdict = _check_tcp(buf, at, read)
            if verdict is not None:
                return verdict
        at = end
    return _tcp_resync(buf, read, header, 1)


def _check_tcp(buf: bytes, at: int, read: Read) -> Answer | Rejected | None:
    """The frame at `at` carries our transaction id: it is our answer, or a malformed one."""
    _, _, size, unit, function = _MBAP.unpack_from(buf, at)
    if unit != read.unit and read.unit != 0:  # unit 0 addresses the TCP device itself, whatever it answers as
        return Rejected(f"answer from unit {unit}, expected {read.unit}")
    if function == read.function | EXCEPTION:
        if size != 3:
            return Rejected(f"MBAP length {size}, expected 3 for an exception")
        return Answer(exception=buf[at + 8], end=at + 9) if len(buf) >= at + 9 else None
    if function != read.function:
        return Rejected(f"answer with function {function}, expected {read.function}")
    if len(buf) < at + 9:
        return None
    byte_count = buf[at + 8]
    if byte_count != read.byte_count:
        return Rejected(f"byte count {byte_count}, expected {read.byte_count} for {read.count} value(s)")
    if size != 3 + byte_count:
        return Rejected(f"MBAP length {size}, expected {3 + byte_count}")
    end = at + 6 + size
    return Answer(buf[at + 9:end], end=end) if len(buf) >= end else None


def _tcp_resync(buf: bytes, read: Read, header: bytes, start: int) -> Answer | None:
    """Bytes that are no MBAP frame (garbage in the stream): look for our exact header after them."""
    at = buf.find(header, start)
    length = 9 + read.byte_count
    if at >= 0 and at + length <= len(buf):
        return Answer(buf[at + 9:at + length], end=at + length)
    failed = _MBAP.pack(read.tid, 0, 3, read.unit, read.function | EXCEPTION)
    at = buf.find(failed, start)
    if at >= 0 and at + 9 <= len(buf):
        return Answer(exception=buf[at + 8], end=at + 9)
    return None


def explain_tcp(buf: bytes, read: Read) -> str:
    """What came back instead of the answer to `read` (only called once none was found)."""
    reasons: list[str] = []
    at = 0
    while at < len(buf):
        if len(buf) - at < 9:
            reasons.append(f"truncated: {len(buf) - at} of at least 9 bytes")
            break
        tid, protocol, size, _, _ = _MBAP.unpack_from(buf, at)
        if protocol != 0 or size < 2:
            reasons.append(f"{len(buf) - at} byte(s) that are no Modbus TCP frame")
            break
        end = at + 6 + size
        if tid != read.tid:
            reasons.append(f"answer to transaction {tid}, expected {read.tid}")
        elif isinstance(verdict := _check_tcp(buf, at, read), Rejected):
            reasons.append(verdict.reason)
        if end > len(buf):
            reasons.append(f"truncated: {len(buf) - at} of {end - at} bytes (MBAP length {size})")
            break
        at = end
    return f"{'; '.join(dict.fromkeys(reasons)) or 'no Modbus TCP answer in it'}; received {show(buf)}"


def show(buf: bytes) -> str:
    shown = buf[:SHOW_BYTES].hex(" ")
    return f"{len(buf)} byte(s): {shown}{' ...' if len(buf) > SHOW_BYTES else ''}"


# --------------------------------------------------------------------------- decoding

def registers(data: bytes) -> list[int]:
    return list(struct.unpack(f">{len(data) // 2}H", data))


def bits(data: bytes, count: int) -> list[int]:
    """Coils and discrete inputs, LSB of the first byte first."""
    value = int.from_bytes(data, "little")
    return [(value >> i) & 1 for i in range(count)]
