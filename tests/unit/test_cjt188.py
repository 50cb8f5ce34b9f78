"""CJ/T 188 codec: frames from a published implementation's worked bytes, the SER echo, the DI byte
order setting, unit codes, and streaming resynchronisation."""

from __future__ import annotations

import pytest

from agent.meters import bcd, cjt188
from agent.meters.framing import Receiver
from agent.meters.messages import Answer, MeterRequest, Op
from agent.meters.plan import unit_factor

WATER = 0x10
METER = bytes.fromhex("12 00 00 00 00 00 00")  # nameplate 00000000000012
READ = MeterRequest(cjt188.CURRENT_DATA, ("volume_total",))
# a cold-water meter's answer to 901F: 1000.10 m³ now and at settlement (aixiwang/python_cjt188 test frame)
WORKED_ANSWER = bytes.fromhex("68 10 12 00 00 00 00 00 00 81 16 90 1f 00 10 00 10 00 2c"
                              " 10 00 10 00 2c 00 00 00 00 00 00 00 00 ff 67 16")


def test_worked_read_request() -> None:
    """`68 10 12 00 00 00 00 00 00 01 03 90 1F 00 3D 16` (aixiwang/python_cjt188, DI 901F, SER 0)."""
    raw = cjt188.request(WATER, METER, READ, seq=0, preamble=b"")
    assert raw.hex(" ") == "68 10 12 00 00 00 00 00 00 01 03 90 1f 00 3d 16"


def test_worked_answer() -> None:
    answer = cjt188.answer(WORKED_ANSWER, WATER, METER, READ, seq=0)
    assert answer is not None and answer.error is None
    assert answer.value[4] == 0x2C  # m³
    assert bcd.decode(answer.value[:4], bcd.parse_format("XXXXXX.XX")) == 1000.10


def test_nameplate_address() -> None:
    assert bcd.address_to_wire("00000000000012", 14) == METER
    assert bcd.address_to_wire("12345678901234", 14).hex(" ") == "34 12 90 78 56 34 12"


@pytest.mark.parametrize(("msb_first", "wire"), [(True, "90 1f"), (False, "1f 90")])
def test_di_byte_order_is_a_setting(msb_first: bool, wire: str) -> None:
    raw = cjt188.request(WATER, METER, READ, seq=7, msb_first=msb_first, preamble=b"")
    assert raw[11:14].hex(" ") == f"{wire} 07"


def test_an_answer_with_another_ser_is_not_ours() -> None:
    """A late answer to the previous request must not be taken for this one."""
    assert cjt188.answer(WORKED_ANSWER, WATER, METER, READ, seq=1) is None


@pytest.mark.parametrize(("label", "meter_type", "address"), [
    ("another meter", WATER, bytes.fromhex("13 00 00 00 00 00 00")),
    ("another meter type", 0x20, METER),
])
def test_frames_for_others_are_ignored(label: str, meter_type: int, address: bytes) -> None:
    assert cjt188.answer(WORKED_ANSWER, meter_type, address, READ, seq=0) is None, label


def test_abnormal_reply() -> None:
    raw = cjt188.encode(cjt188.Frame(WATER, METER, 0xC1, bytes.fromhex("90 1f 00 02")), preamble=b"")
    assert cjt188.answer(raw, WATER, METER, READ, seq=0) == Answer(METER, error=0x02)


def test_read_address() -> None:
    request = MeterRequest(0, op=Op.READ_ADDRESS)
    raw = cjt188.request(WATER, METER, request, seq=0, preamble=b"")
    assert raw.hex(" ") == "68 aa aa aa aa aa aa aa aa 03 03 81 0a 00 49 16"  # aixiwang/python_cjt188 cmd2
    reply = bytes.fromhex("68 10 12 00 00 00 00 00 00 83 03 81 0a 00 9b 16")  # its debug response
    assert cjt188.answer(reply, WATER, cjt188.BROADCAST, request, seq=0) == Answer(METER, value=METER)


@pytest.mark.parametrize(("code", "unit", "factor"), [
    (0x2C, "m³", 1.0), (0x29, "m³", 0.001), (0x05, "kWh", 1.0), (0x08, "kWh", 1000.0),
    (0x11, "kWh", 1000 / 3.6), (0x17, "W", 1000.0), (0x35, "m³/h", 1.0), (0x32, "m³/h", 0.001),
    (0x2C, "kWh", None), (0x99, "m³", None),
])
def test_unit_codes(code: int, unit: str, factor: float | None) -> None:
    assert unit_factor(code, unit) == (pytest.approx(factor) if factor else None)


@pytest.mark.parametrize("junk", [b"", b"\xfe\xfe\xfe", b"\x00", b"\x68\x10\x12", WORKED_ANSWER[:20],
                                  cjt188.request(WATER, bytes(7), READ, seq=0)])
def test_streaming_resynchronisation(junk: bytes) -> None:
    receiver = Receiver(cjt188.SHAPE, lambda f: cjt188.answer(f, WATER, METER, READ, seq=0))
    stream = junk + b"\xfe\xfe" + WORKED_ANSWER
    answers = [receiver.feed(stream[i:i + 1]) for i in range(len(stream))]
    assert answers[-1] is not None and answers[-1].value == WORKED_ANSWER[14:-2]
    assert not any(answers[:-1])


@pytest.mark.parametrize("after", [b"\x00", b"\x68\x16", b"\x55" * 5])
def test_noise_after_the_answer_in_the_same_read(after: bytes) -> None:
    receiver = Receiver(cjt188.SHAPE, lambda f: cjt188.answer(f, WATER, METER, READ, seq=0))
    answer = receiver.feed(b"\x00\xfe\xfe" + WORKED_ANSWER + after)
    assert answer is not None and answer.value == WORKED_ANSWER[14:-2]
