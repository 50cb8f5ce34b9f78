"""Modbus against servers that answer late, behind line noise, or with crafted bytes.

Every honest answer carries registers whose value is their own address (testkit/hostile.py), so a
value published under another block's name is caught exactly. Nothing is mocked: DeviceReader ->
Bus -> our client -> TCP socket or PTY -> hostile server, or a pymodbus server behind a noisy line.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from agent.cli import format_probe
from agent.config import ProfileLibrary
from agent.drivers import frames
from agent.drivers.bus import Backoff, Bus
from agent.drivers.device import DeviceReader
from agent.drivers.frames import Read
from agent.drivers.urls import BusSpec, Transport
from agent.probe import probe
from agent.simulate import SimulatedDevice
from agent.types import Quality, Reading
from testkit.hostile import Chunks, HostileServer, honest_rtu, honest_tcp, words_for
from testkit.line import PacedLine
from tests.conftest import SimThread, rtu_spec

TIMEOUT = 0.2
TWO_BLOCKS = """\
vendor: Test
model: two blocks
source: tests
defaults: {register: holding, max_registers: 10, max_gap: 0, timeout: 0.2}
points:
""" + "".join(f"  a{i}: {{address: {i}, type: u16}}\n" for i in range(10)) \
    + "".join(f"  b{i}: {{address: {100 + i}, type: u16}}\n" for i in range(10))


@pytest.fixture
def two_blocks(write_profile) -> ProfileLibrary:  # type: ignore[no-untyped-def]
    return write_profile("test/two-blocks", TWO_BLOCKS)


@pytest.fixture
def hostile() -> Iterator[Callable[..., HostileServer]]:
    servers: list[HostileServer] = []

    def start(respond: Callable[[Read], Chunks], rtu: bool = True) -> HostileServer:
        servers.append(HostileServer(respond, rtu))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def address_of(reading: Reading) -> int:
    return int(reading.point[1:]) + (100 if reading.point[0] == "b" else 0)


async def poll_many(spec: BusSpec, lib: ProfileLibrary, polls: int) -> tuple[list[Reading], list[str]]:
    profile = lib.load("test/two-blocks")
    bus = Bus("t", spec, Backoff(0.05, 0.2))
    reader = DeviceReader("dev", 1, profile.points, profile.timing(), bus, offline_after=1_000_000)
    readings: list[Reading] = []
    errors: list[str] = []
    try:
        for _ in range(polls):
            result = await reader.poll()
            readings += result.readings
            errors.append(result.error)
    finally:
        await bus.close()
    return readings, errors


def test_a_late_answer_is_never_taken_for_the_next_request(hostile, two_blocks: ProfileLibrary) -> None:  # type: ignore[no-untyped-def]
    """rtu+tcp: the unit answers some requests after the timeout. RTU frames carry no transaction
    id and both blocks have the same shape, so a late answer left in the socket would be read as
    the other block's answer: every value published ok must be the register it is named for."""
    delays = itertools.cycle([0.01, 0.3, 0.01, 0.01, 0.26, 0.01, 0.45, 0.01])
    server = hostile(lambda read: [(next(delays), honest_rtu(read))])
    readings, errors = asyncio.run(poll_many(BusSpec(Transport.RTU_OVER_TCP, "127.0.0.1", server.port),
                                             two_blocks, 12))
    ok = [r for r in readings if r.quality is Quality.OK]
    wrong = [r for r in ok if r.value != address_of(r)]
    assert not wrong, f"{len(wrong)} of {len(ok)} values published under another block's names"
    assert ok, "nothing was read at all"
    assert any("later than its 0.2 s timeout (answer discarded)" in e for e in errors), errors


NOISE: dict[str, Callable[[bytes], bytes]] = {
    "one 0x00 before each answer": lambda frame: b"\x00" + frame,
    "random bytes before and after": lambda frame: b"\x55\x01\xff" + frame + b"\x7f\x00",
    "bytes that look like our header before": lambda frame: frame[:3] + b"\x00" + frame,
}


@pytest.mark.parametrize("noise", NOISE.values(), ids=NOISE.keys())
def test_noise_around_answers_over_rtu_tcp_loses_nothing(hostile, two_blocks: ProfileLibrary,  # type: ignore[no-untyped-def]
                                                         noise: Callable[[bytes], bytes]) -> None:
    server = hostile(lambda read: [(0.0, noise(honest_rtu(read)))])
    polls = 10
    readings, errors = asyncio.run(poll_many(BusSpec(Transport.RTU_OVER_TCP, "127.0.0.1", server.port),
                                             two_blocks, polls))
    assert [r for r in readings if r.quality is Quality.OK and r.value == address_of(r)] == readings
    assert len(readings) == 20 * polls, errors


def test_a_zero_byte_before_each_answer_on_a_serial_line(sim: SimThread, two_blocks: ProfileLibrary) -> None:
    """A pymodbus RTU server on a paced pseudo-terminal line that puts 0x00 in front of every answer,
    as an auto-direction RS-485 converter does when its driver switches on: N of N readings."""
    line = PacedLine(19200, noise=lambda data: b"\x00" + data)
    try:
        image = {f"{p}{i}": (100 if p == "b" else 0) + i for p in "ab" for i in range(10)}
        sim.serve(rtu_spec(line.device_port, 19200),
                  {1: SimulatedDevice(two_blocks.load("test/two-blocks"), image, moving=False)})  # type: ignore[arg-type]
        polls = 5
        readings, errors = asyncio.run(poll_many(rtu_spec(line.agent_port, 19200), two_blocks, polls))
    finally:
        line.close()
    assert len([r for r in readings if r.quality is Quality.OK and r.value == address_of(r)]) == 20 * polls, errors


# --------------------------------------------------------------------------- malformed answers

DATA = struct.pack(">2H", 0, 1)


def _mbap(read: Read, length: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", read.tid, 0, length, unit) + pdu


def _rtu(body: bytes) -> bytes:
    return body + frames.crc16(body)


def _bad_crc(read: Read) -> bytes:
    frame = honest_rtu(read)
    return frame[:-1] + bytes([frame[-1] ^ 0xFF])


TCP_CASES: dict[str, tuple[Callable[[Read], bytes], str]] = {
    "wrong transaction id": (lambda r: frames.tcp_reply(r.tid + 1, 1, 3, DATA), "answer to transaction "),
    "wrong unit id": (lambda r: frames.tcp_reply(r.tid, 3, 3, DATA), "answer from unit 3, expected 1"),
    "wrong function": (lambda r: frames.tcp_reply(r.tid, 1, 4, DATA), "answer with function 4, expected 3"),
    "truncated frame": (lambda r: honest_tcp(r)[:-2], "truncated: 11 of 13 bytes (MBAP length 7)"),
    "byte count longer than the data": (lambda r: _mbap(r, 7, 1, b"\x03\x06" + DATA),
                                        "byte count 6, expected 4 for 2 value(s)"),
    "MBAP length too long": (lambda r: _mbap(r, 9, 1, b"\x03\x04" + DATA), "MBAP length 9, expected 7"),
    "garbage only": (lambda r: b"\xde\xad" * 6, "12 byte(s) that are no Modbus TCP frame"),
}
RTU_CASES: dict[str, tuple[Callable[[Read], bytes], str]] = {
    "wrong unit id": (lambda r: frames.rtu_reply(3, 3, DATA), "answer from unit 3, expected 1"),
    "wrong function": (lambda r: frames.rtu_reply(1, 4, DATA), "answer with function 4, expected 3"),
    "truncated frame": (lambda r: honest_rtu(r)[:5], "truncated: 5 of 9 bytes"),
    "byte count longer than the data": (lambda r: _rtu(b"\x01\x03\x06" + DATA), "byte count 6, expected 4"),
    "bad CRC": (_bad_crc, "bad CRC"),
    "garbage only": (lambda r: b"\x55\xaa\x12", "no Modbus RTU answer in it"),
}
ONE_BLOCK = """\
vendor: Test
model: one block
source: tests
defaults: {register: holding}
points:
  p0: {address: 0, type: u16}
  p1: {address: 1, type: u16}
"""


@pytest.mark.parametrize(("rtu", "crafted", "detail"),
                         [(False, *case) for case in TCP_CASES.values()] + [(True, *case) for case in RTU_CASES.values()],
                         ids=[f"tcp: {name}" for name in TCP_CASES] + [f"rtu+tcp: {name}" for name in RTU_CASES])
def test_a_malformed_answer_is_a_decode_error_that_says_what_came_back(
        hostile, write_profile, rtu: bool, crafted: Callable[[Read], bytes], detail: str) -> None:  # type: ignore[no-untyped-def]
    """probe (and the daemon, through the same poll) reports what came back, not "no answer"."""
    server = hostile(lambda read: [(0.0, crafted(read))], rtu=rtu)
    profile = write_profile("test/one-block", ONE_BLOCK).load("test/one-block")
    url = f"{'rtu+tcp' if rtu else 'tcp'}://127.0.0.1:{server.port}"
    report = asyncio.run(probe(url, 1, profile, TIMEOUT))
    assert {r.quality for r in report.readings} == {Quality.DECODE_ERROR}
    assert detail in report.error, report.error
    assert "received " in report.error and "no answer" not in report.error
    printed = format_probe(report, profile, show_orders=False)
    assert "decode_error" in printed and "first failure: unit 1: " in printed and detail in printed


@pytest.mark.parametrize("rtu", [False, True], ids=["tcp", "rtu+tcp"])
def test_leading_garbage_then_the_answer_is_read(hostile, write_profile, rtu: bool) -> None:  # type: ignore[no-untyped-def]
    honest = honest_rtu if rtu else honest_tcp
    server = hostile(lambda read: [(0.0, b"\xde\xad\x00"), (0.01, honest(read))], rtu=rtu)
    profile = write_profile("test/one-block", ONE_BLOCK).load("test/one-block")
    url = f"{'rtu+tcp' if rtu else 'tcp'}://127.0.0.1:{server.port}"
    report = asyncio.run(probe(url, 1, profile, TIMEOUT))
    assert [(r.point, r.value, r.quality) for r in report.readings] == [("p0", 0, Quality.OK), ("p1", 1, Quality.OK)]


def test_silence_is_still_a_timeout(hostile, write_profile) -> None:  # type: ignore[no-untyped-def]
    server = hostile(lambda read: [])
    profile = write_profile("test/one-block", ONE_BLOCK).load("test/one-block")
    report = asyncio.run(probe(f"rtu+tcp://127.0.0.1:{server.port}", 1, profile, TIMEOUT))
    assert {r.quality for r in report.readings} == {Quality.TIMEOUT}
    assert report.error == "unit 1: no answer within 0.2 s"



def test_the_daemon_logs_what_came_back_and_the_device_goes_offline(hostile, write_profile) -> None:  # type: ignore[no-untyped-def]
    """The poller's first-failure-in-full log line names the answer (not "no answer"); a device that
    only sends malformed answers (another unit id, a wrong baud rate) goes offline like a silent one,
    and the device_offline event says what came back."""
    import structlog

    from agent.events import DeviceOffline, Event
    from agent.pipeline import DeviceState
    from agent.poller import Poller

    server = hostile(lambda read: [(0.0, frames.rtu_reply(3, 3, DATA))])
    profile = write_profile("test/one-block", ONE_BLOCK).load("test/one-block")
    readings: list[Reading] = []
    events: list[Event] = []

    async def run() -> list[dict[str, object]]:
        poller = Poller(readings.extend, events.append)
        bus = Bus("t", BusSpec(Transport.RTU_OVER_TCP, "127.0.0.1", server.port), Backoff(0.05, 0.2))
        reader = DeviceReader("meter-1", 1, profile.points, replace(profile.timing(), timeout=TIMEOUT), bus,
                              offline_after=3)
        try:
            state = DeviceState(reader, 1.0)
            with structlog.testing.capture_logs() as logs:
                for _ in range(3):
                    await poller._poll(state, time.time())
        finally:
            await bus.close()
        return logs

    logs = asyncio.run(run())
    failing = [entry for entry in logs if entry["event"] == "device failing"]
    assert len(failing) == 1  # the first failure in full; later ones go into the periodic summary
    assert "answer from unit 3, expected 1" in str(failing[0]["error"])
    assert {r.quality for r in readings} == {Quality.DECODE_ERROR}
    offline = [e for e in events if isinstance(e, DeviceOffline)]
    assert len(offline) == 1 and "answer from unit 3, expected 1" in offline[0].error


@pytest.mark.parametrize(("answer", "quality"), [(False, Quality.TIMEOUT), (True, Quality.OK)],
                         ids=["echo then silence", "echo then the answer"])
def test_our_own_echo_is_neither_an_answer_nor_a_malformed_one(hostile, write_profile, answer: bool,  # type: ignore[no-untyped-def]
                                                               quality: Quality) -> None:
    """A 2-wire RS-485 adapter hears its own request: a silent unit is still a timeout."""
    server = hostile(lambda read: [(0.0, frames.rtu_request(read)), (0.01, honest_rtu(read) if answer else b"")])
    profile = write_profile("test/one-block", ONE_BLOCK).load("test/one-block")
    report = asyncio.run(probe(f"rtu+tcp://127.0.0.1:{server.port}", 1, profile, TIMEOUT))
    assert {r.quality for r in report.readings} == {quality}, report.error



def test_scan_survives_malformed_answers(hostile) -> None:  # type: ignore[no-untyped-def]
    """Finding units on a line where one answers as another unit: a malformed answer is not a
    device there, and not a crash."""
    from agent.scan import find_units

    answers = {1: honest_rtu, 2: lambda read: frames.rtu_reply(7, read.function, words_for(read))}
    server = hostile(lambda read: [(0.0, answers[read.unit](read))] if read.unit in answers else [])

    async def run() -> list[int]:
        bus = Bus("t", BusSpec(Transport.RTU_OVER_TCP, "127.0.0.1", server.port))
        try:
            return await find_units(bus, [1, 2, 3], TIMEOUT, 100.0)
        finally:
            await bus.close()

    assert asyncio.run(run()) == [1]


def test_a_unit_answering_late_on_a_serial_line_is_reported_late(sim: SimThread, two_blocks: ProfileLibrary) -> None:
    """Serial RTU: a pymodbus unit that answers every read 0.3 s late (timeout 0.2 s) on a paced
    line. Every answer is discarded and named late; none is published under the next block's names."""
    line = PacedLine(19200)
    try:
        image = {f"{p}{i}": (100 if p == "b" else 0) + i for p in "ab" for i in range(10)}
        device = SimulatedDevice(two_blocks.load("test/two-blocks"), image, moving=False, delay=0.3)  # type: ignore[arg-type]
        sim.serve(rtu_spec(line.device_port, 19200), {1: device})
        readings, errors = asyncio.run(poll_many(rtu_spec(line.agent_port, 19200), two_blocks, 3))
    finally:
        line.close()
    assert {r.quality for r in readings} == {Quality.TIMEOUT}
    assert all("later than its 0.2 s timeout (answer discarded)" in e for e in errors), errors


def test_a_dead_unit_costs_one_window_then_none_and_a_late_one_rearms_it(hostile) -> None:  # type: ignore[no-untyped-def]
    """A window that heard nothing marks the unit silent: its next timeouts skip the window (a dead
    meter must not hold an RS-485 line three timeouts per request and starve its neighbours);
    anything heard from it again re-arms the window."""
    from agent.drivers.client import ModbusClient
    from agent.errors import DeviceTimeout
    from agent.types import RegisterKind

    answering = {"late": False}

    def respond(read: Read) -> Chunks:
        return [(TIMEOUT * 1.5, honest_rtu(read))] if answering["late"] else []

    server = hostile(respond)
    client = ModbusClient(BusSpec(Transport.RTU_OVER_TCP, "127.0.0.1", server.port), timeout=TIMEOUT)
    client.connect()
    try:
        for _ in range(3):
            with pytest.raises(DeviceTimeout):
                client.read(RegisterKind.HOLDING, 1, 0, 2, TIMEOUT)
        assert client.late_windows == 1  # silent: one window, then none
        answering["late"] = True
        with pytest.raises(DeviceTimeout, match="no answer within"):  # no window: the line is free at once
            client.read(RegisterKind.HOLDING, 1, 0, 2, TIMEOUT)
        assert client.late_windows == 1
        # asked again at once: it waits out the window, drains the late answer (never taken for this
        # request's), and the unit, heard again, gets its window back
        with pytest.raises(DeviceTimeout, match=r"later than its 0\.2 s timeout"):
            client.read(RegisterKind.HOLDING, 1, 0, 2, TIMEOUT)
        assert client.late_windows == 2
    finally:
        client.close()
