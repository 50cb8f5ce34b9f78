"""Simulated DL/T 645 and CJ/T 188 meters on a TCP port or a serial line (a PTY), for `simulate`,
the tests, the bench and the HIL harness.

`MeterLine` is the protocol side and pure (bytes in, bytes out): it finds request frames in the
stream with the same scanner the agent uses, answers those addressed to one of its meters, and
ignores the rest, as meters on a shared RS-485 line do. `serve_meters` is the thin I/O around it:
an asyncio TCP server, or a reader on the PTY's file descriptor, on the caller's event loop.
Faults are switched while it runs: silent (unplugged), corrupt checksum, noise before answers,
blocks refused.
"""

from __future__ import annotations

import asyncio
import functools
import os
import termios
import tty
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from agent.drivers.urls import BusSpec
from agent.errors import BusError
from agent.meters import cjt188, dlt645
from agent.meters.bcd import address_from_wire, address_to_wire
from agent.meters.framing import next_frame
from agent.meters.image import NO_DATA, answer_for, on_the_wire
from agent.meters.plan import Block
from agent.simulate import SimulatedDevice


@dataclass
class MeterFaults:
    silent: set[str] = field(default_factory=set)  # nameplate addresses that do not answer (unplugged)
    corrupt: set[str] = field(default_factory=set)  # answers with a wrong checksum
    noise: bytes = b""  # sent before every answer: a 00 as the transceiver turns, a foreign frame ...
    no_blocks: bool = False  # refuse block DIs with "no requested data" (a meter without block support)


@dataclass
class MeterLine:
    """The meters on one line: request bytes in, answer bytes out."""

    protocol: str  # dlt645 | cjt188
    meters: Mapping[str, SimulatedDevice]  # nameplate address -> simulated meter
    faults: MeterFaults = field(default_factory=MeterFaults)
    requests: int = 0

    def __post_init__(self) -> None:
        self._buffer = bytearray()
        self._shape = cjt188.SHAPE if self.protocol == "cjt188" else dlt645.SHAPE

    def feed(self, data: bytes) -> bytes:
        """Bytes from the line -> what the meters send back (possibly nothing)."""
        self._buffer += data
        out = b""
        while (found := next_frame(self._buffer, self._shape)) is not None:
            out += self._answer(found.frame)
        return out

    def _answer(self, raw: bytes) -> bytes:
        replies = self._dlt645(raw) if self.protocol == "dlt645" else self._cjt188(raw)
        sent = [out for address, frame in replies if (out := self._faulted(address, frame))]
        return sent[0] if len(sent) == 1 else _collide(sent)

    def _faulted(self, address: str, frame: bytes) -> bytes:
        if address in self.faults.silent:
            return b""
        if address in self.faults.corrupt:
            frame = frame[:-2] + bytes([frame[-2] ^ 0xFF]) + frame[-1:]
        return self.faults.noise + frame

    def _dlt645(self, raw: bytes) -> list[tuple[str, bytes]]:
        frame = dlt645.decode(raw)
        if frame.from_meter:
            return []
        self.requests += 1
        replies = []
        for address, meter in self._addressed(frame.address):
            wire = address_to_wire(address, dlt645.ADDRESS_DIGITS)
            if frame.function == dlt645.READ_ADDRESS:
                reply = dlt645.Frame(wire, dlt645.READ_ADDRESS | dlt645.REPLY, wire)
            elif frame.function == dlt645.READ_DATA and len(frame.data) >= 4:
                value = self._value(meter, int.from_bytes(frame.data[:4], "little"))
                reply = dlt645.Frame(wire, dlt645.READ_DATA | dlt645.REPLY, frame.data[:4] + value) \
                    if isinstance(value, bytes) else dlt645.Frame(wire, 0xD1, bytes([value]))
            else:
                continue
            replies.append((address, dlt645.encode(reply)))
        return replies

    def _cjt188(self, raw: bytes) -> list[tuple[str, bytes]]:
        frame = cjt188.decode(raw)
        if frame.from_meter or len(frame.data) < 3:
            return []
        self.requests += 1
        replies = []
        for address, meter in self._addressed(frame.address):
            model = meter.profile.model
            wire = address_to_wire(address, cjt188.ADDRESS_DIGITS)
            meter_type = model.meter_type or 0
            if frame.meter_type not in (cjt188.ANY_TYPE, meter_type):
                continue
            head = frame.data[:3]
            if frame.control == cjt188.READ_ADDRESS:
                reply = cjt188.Frame(meter_type, wire, cjt188.READ_ADDRESS | cjt188.REPLY, head)
            elif frame.control == cjt188.READ_DATA:
                di = int.from_bytes(head[:2], "big" if model.di_order == "msb_first" else "little")
                value = self._value(meter, di)
                reply = cjt188.Frame(meter_type, wire, 0x81, head + value) if isinstance(value, bytes) \
                    else cjt188.Frame(meter_type, wire, 0xC1, head + bytes([value]))
            else:
                continue
            replies.append((address, cjt188.encode(reply)))
        return replies

    def _addressed(self, wire: bytes) -> list[tuple[str, SimulatedDevice]]:
        """Meters this address selects: exact, or by AA wildcard bytes (broadcast, shortened)."""
        wanted = address_from_wire(wire)
        return [(a, m) for a, m in self.meters.items()
                if all(w == "A" or w == d for w, d in zip(wanted, a, strict=True))]

    def _value(self, meter: SimulatedDevice, di: int) -> bytes | int:
        model = meter.profile.model
        blocks = () if self.faults.no_blocks else tuple(Block(b.di, b.first) for b in model.blocks)
        if _is_block(di) and not blocks:
            return NO_DATA
        return answer_for(di, meter.profile.points.values(), meter.values(), blocks, frozenset(meter.missing))


def _collide(frames: list[bytes]) -> bytes:
    """Several meters answering at once (a broadcast, a wildcard address): on RS-485 the drivers
    fight and the receiver sees a mixture, never a clean frame. Emulated as the bytes AND-ed
    (a driven 0 wins on the line), which breaks every checksum."""
    if not frames:
        return b""
    mixed = bytearray(max(len(f) for f in frames))
    for i in range(len(mixed)):
        mixed[i] = 0xFF
        for frame in frames:
            mixed[i] &= frame[i] if i < len(frame) else 0xFF
    return bytes(mixed)


def _is_block(di: int) -> bool:
    return any((di >> s) & 0xFF == 0xFF for s in (0, 8, 16, 24))


@dataclass
class MeterHandle:
    """A running meter server; `port` is the bound TCP port (0 on a serial line)."""

    line: MeterLine
    port: int
    _close: asyncio.AbstractServer | Callable[[], None] | None = None

    @property
    def faults(self) -> MeterFaults:
        return self.line.faults

    async def stop(self) -> None:
        closer = self._close
        if isinstance(closer, asyncio.AbstractServer):
            closer.close()
            await closer.wait_closed()
        elif callable(closer):
            closer()


async def serve_meters(listen: BusSpec, meters: Mapping[str, SimulatedDevice],
                       faults: MeterFaults | None = None) -> MeterHandle:
    """Serve `meters` (nameplate address -> simulated meter) on a dlt645/cjt188 (+tcp) spec."""
    for meter in meters.values():  # record what the wire carries, not the unrounded value
        meter.wire = functools.partial(on_the_wire, meter.profile.points)
    line = MeterLine(listen.protocol, meters, faults or MeterFaults())
    if listen.serial is not None:
        return MeterHandle(line, 0, _serve_pty(listen.host, line))

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(512):
                if out := line.feed(data):
                    writer.write(out)
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    try:
        server = await asyncio.start_server(client, listen.host, listen.port)
    except OSError as exc:
        raise BusError(f"cannot listen on {listen}: {exc}") from exc
    return MeterHandle(line, server.sockets[0].getsockname()[1], server)


def _serve_pty(path: str, line: MeterLine) -> Callable[[], None]:
    """Answer on a serial device from the running loop; returns the function that stops it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        raise BusError(f"cannot open {path}: {exc}") from exc
    if os.isatty(fd):
        tty.setraw(fd)
        attrs = termios.tcgetattr(fd)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            data = os.read(fd, 512)
        except (BlockingIOError, OSError):
            return
        if out := line.feed(data):
            os.write(fd, out)

    loop.add_reader(fd, readable)

    def close() -> None:
        loop.remove_reader(fd)
        os.close(fd)
    return close
