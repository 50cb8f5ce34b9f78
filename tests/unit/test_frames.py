"""Modbus answers found in what arrived, RTU and TCP: data tables, no I/O."""

from __future__ import annotations

import pytest

from agent.drivers import frames
from agent.drivers.frames import Answer, Read, Rejected

READ = Read(unit=1, function=3, start=100, count=2, tid=7)
DATA = bytes.fromhex("00640065")
GOOD = frames.rtu_reply(1, 3, DATA)
FAILED = frames.rtu_exception(1, 3, 2)
FROM_3 = frames.rtu_reply(3, 3, DATA)
LATE_OTHER_SHAPE = frames.rtu_reply(1, 3, bytes(8))  # an earlier request's answer, 4 registers


def test_crc_of_a_known_frame() -> None:
    assert frames.rtu_request(Read(1, 3, 0, 1)) == bytes.fromhex("010300000001840a")
    assert frames.crc16(b"") == b"\xff\xff"


@pytest.mark.parametrize(("arrived", "data", "exception"), [
    (GOOD, DATA, None),
    (GOOD + b"\x00\x13", DATA, None),  # noise after
    (b"\x00" + GOOD, DATA, None),  # an auto-direction converter's 0x00 before
    (b"\xff\x01\x03\x04" + GOOD, DATA, None),  # noise that looks like our header, then the answer
    (bytes.fromhex("0103000000018 40a".replace(" ", "")) + GOOD, DATA, None),  # our own echo first
    (FROM_3 + GOOD, DATA, None),  # another unit on the line first
    (LATE_OTHER_SHAPE + GOOD, DATA, None),  # a late answer of another shape first
    (GOOD[:-1] + b"\x00" + GOOD, DATA, None),  # a damaged copy, then the real one
    (FAILED, b"", 2),
    (b"\x00\x00" + FAILED + b"\x55", b"", 2),
])
def test_rtu_answer_found(arrived: bytes, data: bytes, exception: int | None) -> None:
    found = frames.find_rtu(arrived, READ)
    assert isinstance(found, Answer)
    assert (found.data, found.exception) == (data, exception)


@pytest.mark.parametrize("arrived", [
    b"", GOOD[:4], b"\x00" + GOOD[:-1], FROM_3, LATE_OTHER_SHAPE, GOOD[:-1] + bytes([GOOD[-1] ^ 1]),
    FAILED[:4], b"\x00" * 20,
])
def test_rtu_no_answer(arrived: bytes) -> None:
    assert frames.find_rtu(arrived, READ) is None


@pytest.mark.parametrize(("arrived", "reason"), [
    (FROM_3, "answer from unit 3, expected 1"),
    (frames.rtu_reply(1, 4, DATA), "answer with function 4, expected 3"),
    (LATE_OTHER_SHAPE, "byte count 8, expected 4 for 2 value(s)"),
    (GOOD[:5], "truncated: 5 of 9 bytes"),
    (b"\x00" + GOOD[:6], "truncated: 6 of 9 bytes"),
    (GOOD[:-1] + bytes([GOOD[-1] ^ 1]), "bad CRC"),
    (FAILED[:-1] + b"\x00", "bad CRC"),
    (bytes([1, 3, 10]) + DATA + frames.crc16(bytes([1, 3, 10]) + DATA), "byte count 10, expected 4 for 2 value(s)"),
    (b"\x55\xaa\x12", "no Modbus RTU answer in it"),
])
def test_rtu_explained(arrived: bytes, reason: str) -> None:
    text = frames.explain_rtu(arrived, READ)
    assert text.startswith(reason + ";"), text
    assert f"received {len(arrived)} byte(s): {arrived[:4].hex(' ')}" in text


TCP_GOOD = frames.tcp_reply(7, 1, 3, DATA)
TCP_STALE = frames.tcp_reply(6, 1, 3, bytes(4))
TCP_FAILED = bytes.fromhex("0007 0000 0003 01 83 02".replace(" ", ""))


@pytest.mark.parametrize(("arrived", "data", "exception"), [
    (TCP_GOOD, DATA, None),
    (TCP_STALE + TCP_GOOD, DATA, None),  # a late answer to the previous transaction is skipped
    (frames.tcp_reply(5, 1, 3, bytes(8)) + TCP_STALE + TCP_GOOD, DATA, None),
    (b"\x00" + TCP_GOOD, DATA, None),  # garbage before: resync on our exact header
    (b"\xde\xad\xbe\xef\x00" + TCP_GOOD, DATA, None),
    (TCP_FAILED, b"", 2),
    (TCP_STALE + TCP_FAILED, b"", 2),
])
def test_tcp_answer_found(arrived: bytes, data: bytes, exception: int | None) -> None:
    found = frames.find_tcp(arrived, READ)
    assert isinstance(found, Answer)
    assert (found.data, found.exception) == (data, exception)


def test_a_tcp_request_to_unit_0_takes_the_answer_whatever_unit_it_names() -> None:
    """Unit 0 addresses the Modbus TCP device itself; devices answer it as 0, 1 or 255. The
    transaction id proves the answer."""
    found = frames.find_tcp(frames.tcp_reply(7, 1, 3, DATA), Read(0, 3, 100, 2, tid=7))
    assert isinstance(found, Answer) and found.data == DATA


def _mbap(tid: int, length: int, unit: int, pdu: bytes) -> bytes:
    return tid.to_bytes(2, "big") + b"\x00\x00" + length.to_bytes(2, "big") + bytes([unit]) + pdu


@pytest.mark.parametrize(("arrived", "reason"), [
    (_mbap(7, 7, 3, b"\x03\x04" + DATA), "answer from unit 3, expected 1"),
    (_mbap(7, 7, 1, b"\x04\x04" + DATA), "answer with function 4, expected 3"),
    (_mbap(7, 9, 1, b"\x03\x06" + DATA + b"\x00\x00"), "byte count 6, expected 4 for 2 value(s)"),
    (_mbap(7, 9, 1, b"\x03\x04" + DATA), "MBAP length 9, expected 7"),
    (_mbap(7, 4, 1, b"\x83\x02"), "MBAP length 4, expected 3 for an exception"),
])
def test_tcp_malformed_answer_with_our_transaction_id_is_rejected_at_once(arrived: bytes, reason: str) -> None:
    assert frames.find_tcp(arrived, READ) == Rejected(reason)


@pytest.mark.parametrize(("arrived", "reason"), [
    (TCP_STALE, "answer to transaction 6, expected 7"),
    (TCP_GOOD[:10], "truncated: 10 of 13 bytes (MBAP length 7)"),
    (TCP_GOOD[:5], "truncated: 5 of at least 9 bytes"),
    (_mbap(7, 7, 1, b"\x03\x04" + DATA[:2]), "truncated: 11 of 13 bytes (MBAP length 7)"),
    (b"\xde\xad\xbe\xef" * 3, "12 byte(s) that are no Modbus TCP frame"),
])
def test_tcp_explained(arrived: bytes, reason: str) -> None:
    assert frames.find_tcp(arrived, READ) is None
    text = frames.explain_tcp(arrived, READ)
    assert text.startswith(reason + ";"), text


@pytest.mark.parametrize(("data", "count", "expected"), [
    (b"\x05", 3, [1, 0, 1]), (b"\x00\x01", 9, [0] * 8 + [1]), (b"\xff", 8, [1] * 8),
])
def test_bits(data: bytes, count: int, expected: list[int]) -> None:
    assert frames.bits(data, count) == expected


def test_bit_reads_expect_packed_byte_count() -> None:
    assert Read(1, 1, 0, 9).byte_count == 2
    assert Read(1, 3, 0, 9).byte_count == 18
