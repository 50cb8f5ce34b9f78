"""The I/O of a meter bus: one request out, the answer to it back. Thin; one bus thread owns it.

A serial port (pyserial) or a TCP socket to a serial-to-Ethernet converter carries a byte stream,
not messages: the answer is found in it by `framing.next_frame` and accepted only when the codec
says it answers this request (address, control code, DI, and for CJ/T 188 the SER). Everything
else that arrives — noise, preambles, another master's frames, our own echo, a truncated frame —
is skipped; when no answer came, the error names what did (a FrameError with the bytes, reported
as decode_error) rather than a plain timeout. Input left over from an earlier exchange is drained
before each request, so a late answer cannot be taken for the next one.
"""

from __future__ import annotations

import select
import socket
import time
from typing import Protocol

import serial

from agent.drivers.urls import BusSpec
from agent.errors import BusError, DeviceTimeout, FrameError
from agent.meters import cjt188, dlt645
from agent.meters.framing import Receiver, Shape
from agent.meters.messages import Answer, MeterRequest, MeterTarget

SHOW_BYTES = 48  # bytes of an unrecognised answer quoted in the error


class _Stream(Protocol):
    def write(self, data: bytes) -> None: ...
    def read(self, timeout: float) -> bytes: ...
    def drain(self) -> None: ...
    def close(self) -> None: ...


class MeterLink:
    """A blocking DL/T 645 or CJ/T 188 master on one line (serial port or TCP converter)."""

    def __init__(self, spec: BusSpec) -> None:
        self.spec = spec
        self._stream: _Stream | None = None
        self._seq = 0  # CJ/T 188 SER

    @property
    def connected(self) -> bool:
        return self._stream is not None

    def connect(self) -> None:
        try:
            self._stream = _SerialStream(self.spec) if self.spec.serial else _TcpStream(self.spec)
        except (OSError, serial.SerialException) as exc:
            raise BusError(f"{self.spec}: cannot connect: {exc}") from exc

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
        self._stream = None

    def transact(self, target: MeterTarget, request: MeterRequest, timeout: float) -> Answer:
        """Send `request` to `target` and return its answer; DeviceTimeout, FrameError or BusError."""
        stream = self._stream
        if stream is None:
            raise BusError(f"{self.spec}: not connected")
        self._seq = (self._seq + 1) & 0xFF
        frame = self._encode(target, request)
        try:
            stream.drain()
            stream.write(frame)
            return self._await(stream, target, request, frame, timeout)
        except (OSError, serial.SerialException) as exc:
            self.close()
            raise BusError(f"{self.spec}: I/O error: {exc}") from exc

    def _encode(self, target: MeterTarget, request: MeterRequest) -> bytes:
        if self.spec.protocol == "cjt188":
            return cjt188.request(target.meter_type, target.address, request, self._seq, target.di_msb_first)
        return dlt645.request(target.address, request)

    def _match(self, raw: bytes, target: MeterTarget, request: MeterRequest) -> Answer | None:
        if self.spec.protocol == "cjt188":
            return cjt188.answer(raw, target.meter_type, target.address, request, self._seq, target.di_msb_first)
        return dlt645.answer(raw, target.address, request)

    @property
    def _shape(self) -> Shape:
        return cjt188.SHAPE if self.spec.protocol == "cjt188" else dlt645.SHAPE

    def _await(self, stream: _Stream, target: MeterTarget, request: MeterRequest, sent: bytes,
               timeout: float) -> Answer:
        receiver = Receiver(self._shape, lambda raw: self._match(raw, target, request), echo=sent)
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            answer = receiver.feed(stream.read(remaining))
            if answer is not None:
                return answer
        who = f"{request} to {target.address[::-1].hex()}"
        if seen := receiver.unexplained:
            shown = seen[:SHOW_BYTES].hex(" ") + (" ..." if len(seen) > SHOW_BYTES else "")
            raise FrameError(f"{who}: no valid answer within {timeout:g} s; received {len(seen)} other byte(s): {shown}")
        raise DeviceTimeout(f"{who}: no answer within {timeout:g} s")


class _SerialStream:
    def __init__(self, spec: BusSpec) -> None:
        settings = spec.serial
        assert settings is not None
        self._port = serial.Serial(spec.host, baudrate=settings.baudrate, parity=settings.parity,
                                   stopbits=settings.stopbits, bytesize=settings.bytesize, timeout=0)

    def write(self, data: bytes) -> None:
        self._port.write(data)
        self._port.flush()

    def read(self, timeout: float) -> bytes:
        # wait with select: changing pyserial's timeout reconfigures the port (and fails on some PTYs)
        ready, _, _ = select.select([self._port.fd], [], [], timeout)
        return self._port.read(max(1, self._port.in_waiting)) if ready else b""

    def drain(self) -> None:
        self._port.reset_input_buffer()

    def close(self) -> None:
        self._port.close()


class _TcpStream:
    def __init__(self, spec: BusSpec) -> None:
        self._sock = socket.create_connection((spec.host, spec.port), timeout=5.0)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def write(self, data: bytes) -> None:
        self._sock.sendall(data)

    def read(self, timeout: float) -> bytes:
        self._sock.settimeout(timeout)
        try:
            data = self._sock.recv(512)
        except TimeoutError:
            return b""
        if not data:
            raise ConnectionError("the converter closed the connection")
        return data

    def drain(self) -> None:
        self._sock.setblocking(False)
        try:
            while self._sock.recv(512):
                pass
        except BlockingIOError:
            pass
        finally:
            self._sock.setblocking(True)

    def close(self) -> None:
        self._sock.close()

