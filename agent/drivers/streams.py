"""Byte streams a bus talks through: a serial port (pyserial) or a TCP socket. Thin, blocking,
owned by one bus thread.

Both carry bytes, not messages: framing is the protocol's business (agent/drivers/frames.py,
agent/meters/framing.py). `drain` throws away whatever has arrived and not been read, so that
input left from an earlier exchange (a late answer, noise) cannot be taken for the next answer.
"""

from __future__ import annotations

import select
import socket
from typing import Protocol

import serial

from agent.drivers.urls import BusSpec

StreamError = (OSError, serial.SerialException)  # what a stream raises when the port or link fails


class Stream(Protocol):
    def write(self, data: bytes) -> None: ...
    def read(self, timeout: float) -> bytes: ...
    def drain(self) -> int: ...
    def close(self) -> None: ...


def open_stream(spec: BusSpec, connect_timeout: float = 5.0) -> Stream:
    """The serial port of a local line, or a TCP connection; raises one of StreamError."""
    return SerialStream(spec) if spec.serial else TcpStream(spec, connect_timeout)


class SerialStream:
    def __init__(self, spec: BusSpec) -> None:
        settings = spec.serial
        assert settings is not None
        self._port = serial.Serial(spec.host, baudrate=settings.baudrate, parity=settings.parity,
                                   stopbits=settings.stopbits, bytesize=settings.bytesize, timeout=0)

    def write(self, data: bytes) -> None:
        self._port.write(data)
        self._port.flush()

    def read(self, timeout: float) -> bytes:
        """What has arrived, waiting up to `timeout` for the first byte; b"" if nothing came."""
        # wait with select: changing pyserial's timeout reconfigures the port (and fails on some PTYs)
        ready, _, _ = select.select([self._port.fd], [], [], max(0.0, timeout))
        return self._port.read(max(1, self._port.in_waiting)) if ready else b""

    def drain(self) -> int:
        """Discard pending input; returns how many bytes were thrown away."""
        pending = self._port.in_waiting
        self._port.reset_input_buffer()
        return int(pending)

    def close(self) -> None:
        self._port.close()


class TcpStream:
    """A non-blocking socket waited on with poll(2): two system calls per read and one per drain
    when nothing is pending (a socket timeout would cost an fcntl on every change of it)."""

    def __init__(self, spec: BusSpec, connect_timeout: float = 5.0) -> None:
        self._sock = socket.create_connection((spec.host, spec.port), timeout=connect_timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.setblocking(False)
        self._poll = select.poll()
        self._poll.register(self._sock, select.POLLIN)

    def write(self, data: bytes, timeout: float = 5.0) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[self._sock.send(view):]
            except BlockingIOError:
                if not select.select([], [self._sock], [], timeout)[1]:
                    raise TimeoutError("the peer does not take what is sent") from None

    def read(self, timeout: float) -> bytes:
        """What has arrived, waiting up to `timeout` for the first byte; b"" if nothing came."""
        if not self._poll.poll(max(0, int(timeout * 1000 + 0.999))):
            return b""
        try:
            data = self._sock.recv(4096)
        except BlockingIOError:
            return b""
        if not data:
            raise ConnectionError("the peer closed the connection")
        return data

    def drain(self) -> int:
        """Discard what has arrived and not been read; returns how many bytes that was."""
        dropped = 0
        while self._poll.poll(0):
            try:
                data = self._sock.recv(4096)
            except BlockingIOError:
                break
            if not data:
                break  # closed: the next read says so
            dropped += len(data)
        return dropped

    def close(self) -> None:
        self._sock.close()
