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

import time

from agent.drivers.streams import Stream, StreamError, open_stream
from agent.drivers.urls import BusSpec
from agent.errors import BusError, DeviceTimeout, FrameError
from agent.meters import cjt188, dlt645
from agent.meters.framing import Receiver, Shape
from agent.meters.messages import Answer, MeterRequest, MeterTarget

SHOW_BYTES = 48  # bytes of an unrecognised answer quoted in the error


class MeterLink:
    """A blocking DL/T 645 or CJ/T 188 master on one line (serial port or TCP converter)."""

    def __init__(self, spec: BusSpec) -> None:
        self.spec = spec
        self._stream: Stream | None = None
        self._seq = 0  # CJ/T 188 SER

    @property
    def connected(self) -> bool:
        return self._stream is not None

    def connect(self) -> None:
        try:
            self._stream = open_stream(self.spec)
        except StreamError as exc:
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
        except StreamError as exc:
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

    def _await(self, stream: Stream, target: MeterTarget, request: MeterRequest, sent: bytes,
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
