"""DL/T 645-2007 codec: the standard's worked example, BCD data formats, answers recognised or
ignored, streaming resynchronisation, and interop with an independent implementation (the
`dlt645` package, Apache-2.0: frames the agent builds are parsed by it and vice versa)."""

from __future__ import annotations

import random

import pytest
from dlt645 import DLT645Protocol
from dlt645.common.transform import bcd_to_float, float_to_bcd

from agent.meters import bcd, dlt645
from agent.meters.framing import Receiver
from agent.meters.messages import Answer, MeterRequest, Op

METER = bcd.address_to_wire("123456789012", 12)
OTHER = bcd.address_to_wire("000000000042", 12)
ENERGY = MeterRequest(0x00010000, ("energy_import",))


def reply(address: bytes, di: int, value: bytes, control: int = 0x91, preamble: bytes = b"") -> bytes:
    return dlt645.encode(dlt645.Frame(address, control, di.to_bytes(4, "little") + value), preamble)


def test_worked_example_of_the_standard() -> None:
    """Read forward active total energy from meter 123456789012 (reference: DL/T 645-2007 section 7)."""
    assert dlt645.request(METER, ENERGY).hex(" ") == "fe fe fe fe 68 12 90 78 56 34 12 68 11 04 33 33 34 33 68 16"


def test_value_on_the_wire_is_bcd_low_byte_first_plus_33h() -> None:
    raw = reply(METER, 0x00010000, bcd.encode(123456.78, bcd.parse_format("XXXXXX.XX")))
    assert raw[14:18].hex(" ") == "ab 89 67 45"  # 123456.78 kWh as the reference gives it
    answer = dlt645.answer(raw, METER, ENERGY)
    assert answer is not None and bcd.decode(answer.value, bcd.parse_format("XXXXXX.XX")) == 123456.78


@pytest.mark.parametrize(("nameplate", "wire"), [
    ("123456789012", "12 90 78 56 34 12"),
    ("000000123456", "56 34 12 00 00 00"),
    ("AAAAAAAAAAAA", "aa aa aa aa aa aa"),
])
def test_addresses_are_written_as_on_the_nameplate(nameplate: str, wire: str) -> None:
    assert bcd.address_to_wire(nameplate, 12).hex(" ") == wire
    assert bcd.address_from_wire(bytes.fromhex(wire)) == nameplate


@pytest.mark.parametrize("bad", ["12345678901", "1234567890123", "12345678901X", ""])
def test_addresses_of_the_wrong_length_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="12 digits"):
        bcd.address_to_wire(bad, 12)


# (format, signed, value, wire bytes low first, before +33H)
FORMATS = [
    ("XXXXXX.XX", False, 123456.78, "78 56 34 12"),
    ("XXX.X", False, 230.1, "01 23"),
    ("XXX.XXX", True, 12.345, "45 23 01"),
    ("XXX.XXX", True, -12.345, "45 23 81"),  # sign in the top bit of the highest byte
    ("XX.XXXX", True, -1.2345, "45 23 81"),
    ("X.XXX", True, -0.95, "50 89"),
    ("XX.XX", False, 50.02, "02 50"),
    ("XXXXXX", False, 8123, "23 81 00"),
]


@pytest.mark.parametrize(("fmt", "signed", "value", "wire"), FORMATS)
def test_data_formats(fmt: str, signed: bool, value: float, wire: str) -> None:
    parsed = bcd.parse_format(fmt)
    assert bcd.encode(value, parsed, signed).hex(" ") == wire
    assert bcd.decode(bytes.fromhex(wire), parsed, signed) == value


@pytest.mark.parametrize(("fmt", "signed", "value", "wire"), [f for f in FORMATS if f[0] != "XXXXXX"])
def test_data_formats_agree_with_the_dlt645_package(fmt: str, signed: bool, value: float, wire: str) -> None:
    assert bytes(float_to_bcd(value, fmt, "little")) == bcd.encode(value, bcd.parse_format(fmt), signed)
    assert bcd_to_float(bytes.fromhex(wire), fmt, "little") == pytest.approx(value)


def test_a_nibble_above_nine_is_not_a_number() -> None:
    with pytest.raises(bcd.BcdError):
        bcd.decode(bytes.fromhex("7a 56 34 12"), bcd.parse_format("XXXXXX.XX"))


@pytest.mark.parametrize("fmt", ["XX.X.X", "9999", "", "XX,XX"])
def test_bad_formats_are_refused(fmt: str) -> None:
    with pytest.raises(ValueError, match="data format"):
        bcd.parse_format(fmt)


def test_the_package_parses_the_frames_the_agent_builds() -> None:
    for di in (0x00010000, 0x02010100, 0x0201FF00, 0x02800002):
        frame = DLT645Protocol.deserialize(dlt645.request(METER, MeterRequest(di)))
        assert (bytes(frame.addr), frame.ctrl_code, bytes(frame.data)) == (METER, 0x11, di.to_bytes(4, "little"))


def test_the_agent_parses_the_frames_the_package_builds() -> None:
    value = bytes(float_to_bcd(-3.2768, "XX.XXXX", "little"))
    for preamble in range(5):
        raw = bytes(DLT645Protocol.build_frame(METER, 0x91, (0x02030000).to_bytes(4, "little") + value, preamble))
        answer = Receiver(dlt645.SHAPE, lambda f: dlt645.answer(f, METER, MeterRequest(0x02030000))).feed(raw)
        assert answer == Answer(METER, value=value)
        assert bcd.decode(answer.value, bcd.parse_format("XX.XXXX"), signed=True) == -3.2768


def test_abnormal_reply_carries_the_error_byte() -> None:
    raw = dlt645.encode(dlt645.Frame(METER, 0xD1, bytes([dlt645.NO_DATA])), preamble=b"")
    assert dlt645.answer(raw, METER, ENERGY) == Answer(METER, error=0x02)
    assert dlt645.error_text(0x02) == "no requested data"
    assert dlt645.error_text(0x05) == "other error, password error or unauthorised"


def test_read_address_goes_to_the_broadcast_address_and_reads_the_meters() -> None:
    request = MeterRequest(0, op=Op.READ_ADDRESS)
    assert dlt645.request(METER, request, preamble=b"").hex(" ") == "68 aa aa aa aa aa aa 68 13 00 df 16"
    raw = dlt645.encode(dlt645.Frame(METER, 0x93, METER), preamble=b"")
    assert dlt645.answer(raw, dlt645.BROADCAST, request) == Answer(METER, value=METER)


@pytest.mark.parametrize(("label", "frame"), [
    ("our own request (echo)", dlt645.request(METER, ENERGY)),
    ("a reply from another meter", reply(OTHER, 0x00010000, b"\x00" * 4)),
    ("a reply to another DI", reply(METER, 0x00020000, b"\x00" * 4)),
    ("a reply to read-address", dlt645.encode(dlt645.Frame(METER, 0x93, METER))),
    ("another master's broadcast time", dlt645.encode(dlt645.Frame(dlt645.BROADCAST, 0x08, bytes(6)))),
])
def test_frames_that_do_not_answer_us_are_ignored(label: str, frame: bytes) -> None:
    assert dlt645.answer(frame[frame.index(0x68):], METER, ENERGY) is None, label


VALUE = bcd.encode(1234.56, bcd.parse_format("XXXXXX.XX"))
ANSWER = reply(METER, 0x00010000, VALUE, preamble=b"\xfe" * 4)
TRUNCATED = reply(METER, 0x00010000, VALUE * 10)[:14]  # claims 44 data bytes, cut off after 4
FOREIGN_REQUEST = dlt645.request(OTHER, MeterRequest(0x02010100))
BROADCAST_TIME = dlt645.encode(dlt645.Frame(dlt645.BROADCAST, 0x08, bytes.fromhex("261129195000")))
BAD_CHECKSUM = ANSWER[:-2] + bytes([ANSWER[-2] ^ 1]) + ANSWER[-1:]

RESYNC = [
    ("clean", ANSWER, b""),
    *[(f"{n} x FE", reply(METER, 0x00010000, VALUE, preamble=b"\xfe" * n), b"") for n in range(5)],
    ("00 as the transceiver turns", b"\x00" + ANSWER, b"\x00"),
    ("random noise", bytes([0x12, 0x68, 0x00, 0x68, 0x99]) + ANSWER, bytes([0x12, 0x68, 0x00, 0x68, 0x99])),
    ("another master's request", FOREIGN_REQUEST + ANSWER, FOREIGN_REQUEST[4:]),
    ("a broadcast", BROADCAST_TIME + ANSWER, BROADCAST_TIME[4:]),
    ("a truncated frame", TRUNCATED + ANSWER, TRUNCATED),
    ("a corrupt copy first", BAD_CHECKSUM + ANSWER, BAD_CHECKSUM[4:]),
    ("a reply of another meter", reply(OTHER, 0x00010000, VALUE) + ANSWER, reply(OTHER, 0x00010000, VALUE)),
]


@pytest.mark.parametrize(("label", "stream", "unexplained"), RESYNC, ids=[r[0] for r in RESYNC])
@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_streaming_resynchronisation(label: str, stream: bytes, unexplained: bytes, chunk: int) -> None:
    """Whatever precedes the answer, in whatever pieces it arrives, the answer is found once complete."""
    receiver = Receiver(dlt645.SHAPE, lambda f: dlt645.answer(f, METER, ENERGY), echo=dlt645.request(METER, ENERGY))
    answers = [receiver.feed(stream[i:i + chunk]) for i in range(0, len(stream), chunk)]
    assert answers[-1] == Answer(METER, value=VALUE), label
    assert not any(answers[:-1]), "accepted before the frame was complete"
    assert receiver.unexplained == unexplained


def test_random_noise_never_yields_a_false_answer() -> None:
    rng = random.Random(645)
    for _ in range(300):
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60)))
        receiver = Receiver(dlt645.SHAPE, lambda f: dlt645.answer(f, METER, ENERGY))
        assert receiver.feed(junk + ANSWER) == Answer(METER, value=VALUE)


def test_what_came_back_is_kept_when_no_answer_arrives() -> None:
    receiver = Receiver(dlt645.SHAPE, lambda f: dlt645.answer(f, METER, ENERGY))
    assert receiver.feed(BAD_CHECKSUM) is None
    assert receiver.unexplained == BAD_CHECKSUM[4:]


@pytest.mark.parametrize("after", [b"\x00", b"\x68\x16", b"\x55" * 5])
def test_noise_after_the_answer_in_the_same_read(after: bytes) -> None:
    receiver = Receiver(dlt645.SHAPE, lambda f: dlt645.answer(f, METER, ENERGY))
    assert receiver.feed(b"\x00\xfe\xfe" + ANSWER + after) == Answer(METER, value=VALUE)
