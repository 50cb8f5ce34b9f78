"""A blocking Modbus master for one bus (Modbus TCP, RTU over TCP, RTU on a serial port); one
bus thread owns it.

Our own rather than pymodbus's client: pymodbus's RTU framer takes the first frame of the right
shape as the answer (a late answer to an earlier request left in a converter's socket was
published under another block's names), discards its whole receive buffer on a CRC failure
(one 0x00 from an RS-485 converter before each answer lost every answer), and reports every
malformed answer as "no answer". Here, per request:

- pending input is drained before the request goes out;
- the answer is found in what arrives by `frames.find_rtu` / `frames.find_tcp`: unit, function,
  byte count and CRC (RTU) or transaction id (TCP) must match, with resync past noise;
- when none is found, a FrameError says what came back (reported as decode_error), and a
  DeviceTimeout is kept for silence;
- on an RTU line, a timeout is followed by a late-answer window in which the line is listened
  to and whatever arrives is discarded, so a unit that answers late cannot have its answer taken
  for the next request. It ends as soon as the late answer is in, else three timeouts after the
  request, or 1.5 times the slowest answer this unit has given if that is longer (late answers
  seen in the window, and input still pending before the next request after a timeout, count),
  and at most LATE_WINDOW s past the timeout: a unit whose answers straggle teaches the window to
  cover them. A window in which nothing at all was heard marks the unit silent (dead, unplugged):
  its next timeouts skip the window, so a dead unit costs its line one timeout per request, as
  before, and never starves its neighbours; only a request to that same unit within the window
  waits for the window's end (then drains), so its late answer still cannot be taken; anything
  heard from it again (an answer, a late one, input pending before the next request) re-arms the
  window.
  A unit that answers later still than the window can still have its answer taken for the next
  request of the same shape: RTU frames carry no transaction id; its timeout must be raised (the
  error says how late it answered).

The pymodbus server stays in pymodbus_adapter.py (simulator and tests).
"""

from __future__ import annotations

import time

from agent.drivers import frames
from agent.drivers.frames import Answer, Read, Rejected
from agent.drivers.streams import Stream, StreamError, open_stream
from agent.drivers.urls import BusSpec, Transport
from agent.errors import BusError, DeviceException, DeviceTimeout, FrameError
from agent.types import RegisterKind

LATE_WINDOW = 3.0  # longest wait for a late answer past an RTU timeout, seconds


class ModbusClient:
    """Reads registers and bits; raises BusError (the link) or a DeviceError (this request)."""

    def __init__(self, spec: BusSpec, timeout: float = 1.0, listen_late: bool = True) -> None:
        """`listen_late=False` skips the late-answer window: for a scan, which asks each unit once
        (a late answer from one unit is never taken for another's: the unit id differs)."""
        self.spec = spec
        self.rtu = spec.transport is not Transport.TCP
        self.listen_late = listen_late
        self.late_answers = 0  # answers that arrived after their timeout, and were discarded
        self.discarded_bytes = 0  # bytes drained before requests: late answers, noise
        self.late_windows = 0  # late-answer windows listened to (a silent unit gets one, then none)
        self._connect_timeout = max(timeout, 3.0)
        self._stream: Stream | None = None
        self._tid = 0
        self._slowest: dict[int, float] = {}  # unit -> its slowest answer seen, seconds after the request
        self._unanswered: tuple[int, float] | None = None  # (unit, sent) of the last request that timed out
        self._silent: set[int] = set()  # units whose last late-answer window heard nothing: no window for them
        self._quiet_until: dict[int, float] = {}  # silent unit -> end of its window: its next request waits for it

    @property
    def connected(self) -> bool:
        return self._stream is not None

    def connect(self) -> None:
        try:
            self._stream = open_stream(self.spec, self._connect_timeout)
        except StreamError as exc:
            raise BusError(f"{self.spec}: cannot connect: {exc}") from exc

    def close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.close()
            except StreamError:
                pass
        self._stream = None

    def read(self, kind: RegisterKind, unit: int, start: int, count: int, timeout: float) -> list[int]:
        """Registers (or bits, as 0/1) start..start+count of `unit`."""
        stream = self._stream
        if stream is None:
            raise BusError(f"{self.spec}: not connected")
        self._tid = (self._tid + 1) & 0xFFFF
        read = Read(unit, frames.FUNCTIONS[kind], start, count, self._tid)
        wait = self._quiet_until.pop(unit, 0.0) - time.monotonic()
        if wait > 0:  # a silent unit asked again within its late-answer window: let a late answer land first
            time.sleep(wait)
        try:
            self._drain(stream)
            request = frames.rtu_request(read) if self.rtu else frames.tcp_request(read)
            stream.write(request)
            answer = self._await(stream, read, request, timeout)
        except StreamError as exc:
            self.close()
            raise BusError(f"{self.spec}: connection lost: {exc}") from exc
        if answer.exception is not None:
            raise DeviceException(answer.exception)
        return frames.bits(answer.data, count) if kind.is_bit else frames.registers(answer.data)

    def _await(self, stream: Stream, read: Read, request: bytes, timeout: float) -> Answer:
        find = frames.find_rtu if self.rtu else frames.find_tcp
        sent = time.monotonic()
        deadline = sent + timeout
        buf = b""
        while (remaining := deadline - time.monotonic()) > 0:
            chunk = stream.read(remaining)
            if not chunk:
                continue
            buf += chunk
            found = find(buf, read)
            if isinstance(found, Rejected):
                raise FrameError(f"unit {read.unit}: {found.reason}; received {frames.show(buf)}")
            if found is not None:
                self._note_latency(read.unit, time.monotonic() - sent)
                self._silent.discard(read.unit)
                return found
        if self.rtu:
            self._unanswered = (read.unit, sent)
            if self.listen_late:
                if buf or read.unit not in self._silent:
                    self._late_window(stream, read, sent, timeout, buf)
                else:  # silent: the window is not spent on the line, only this unit waits it out
                    self._quiet_until[read.unit] = sent + self._window(read.unit, timeout)
        if buf.startswith(request):  # a 2-wire adapter that hears itself: our echo is not an answer
            buf = buf[len(request):]
        if buf:
            explain = frames.explain_rtu if self.rtu else frames.explain_tcp
            raise FrameError(f"unit {read.unit}: no valid answer within {timeout:g} s: {explain(buf, read)}")
        raise DeviceTimeout(f"unit {read.unit}: no answer within {timeout:g} s")

    def _late_window(self, stream: Stream, read: Read, sent: float, timeout: float, buf: bytes) -> None:
        """Listen past the timeout so a late answer is not left on the line for the next request:
        RTU answers carry no transaction id, and one of the same shape would be taken for its
        answer. Everything heard is discarded; a late answer of ours is reported as such."""
        self.late_windows += 1
        self._silent.discard(read.unit)
        window_end = sent + self._window(read.unit, timeout)
        late = b""
        while (remaining := window_end - time.monotonic()) > 0:
            late += stream.read(remaining)
            if late and isinstance(frames.find_rtu(buf + late, read), Answer):
                self.late_answers += 1
                self._unanswered = None  # it did answer: what is still pending before the next request is noise
                self._note_latency(read.unit, time.monotonic() - sent)
                raise DeviceTimeout(f"unit {read.unit}: answered {time.monotonic() - sent:.2f} s after the "
                                    f"request, later than its {timeout:g} s timeout (answer discarded)")
        self.discarded_bytes += len(late)
        if not buf and not late:
            self._silent.add(read.unit)  # nothing at all: dead, not late; its next timeouts skip the window

    def _window(self, unit: int, timeout: float) -> float:
        """How long after a request its late answer is waited for, seconds."""
        return min(max(3 * timeout, 1.5 * self._slowest.get(unit, 0.0)), timeout + LATE_WINDOW)

    def _drain(self, stream: Stream) -> None:
        """Discard pending input. Input pending after a timeout is that unit answering later than
        its window: it widens the window (the time since that request, an upper bound)."""
        dropped = stream.drain()
        self.discarded_bytes += dropped
        if dropped and self._unanswered is not None and self.rtu:
            unit, sent = self._unanswered
            self._note_latency(unit, time.monotonic() - sent)
            self._silent.discard(unit)  # it answered after all, later than the window
        self._unanswered = None

    def _note_latency(self, unit: int, seconds: float) -> None:
        if seconds > self._slowest.get(unit, 0.0):
            self._slowest[unit] = seconds
