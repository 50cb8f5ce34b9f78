"""One owner per bus: every transaction on one RS-485 line or TCP endpoint goes through one Bus.

A Bus runs its blocking transport on a single thread of its own and takes one exchange at a
time: a device hands over the requests of a whole poll at once, and they go out back to back with
the pauses the device asks for (after connect, between requests, and the 3.5-character RTU
silence). Thread hand-offs are few because on a gateway a hand-off costs more CPU than a Modbus
request: the exchanges asked for in one turn of the event loop (the devices of one tick) go to the
bus thread together, and their outcomes come back in one wake-up of the loop when the last is done.
Meanwhile the loop collects finished outcomes every `DELIVER_AFTER`, so a device is not kept
waiting for a neighbour that times out. Devices queue fairly behind each other in the thread's
FIFO instead of colliding on the wire. The bus reconnects with capped exponential backoff, forever;
while the link is down an exchange fails at once with BusError instead of making every device wait
out a connect timeout. Only the bus thread touches the transport and the link state.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from agent.drivers.client import ModbusClient
from agent.drivers.urls import BusSpec
from agent.errors import BusError, DeviceError, DeviceException
from agent.meters.link import MeterLink
from agent.meters.messages import Answer, MeterRequest, MeterTarget
from agent.types import DeviceTiming, ReadRequest

Transport = ModbusClient | MeterLink
TransportFactory = Callable[[BusSpec], Transport]
Target = int | MeterTarget  # a Modbus unit id, or a DL/T 645 / CJ/T 188 meter
Request = ReadRequest | MeterRequest
DELIVER_AFTER = 0.05  # s: while a hand-off is still running, the loop collects finished outcomes this often


def open_transport(spec: BusSpec) -> Transport:
    """The transport for the bus's protocol: ModbusClient for Modbus, MeterLink for DL/T 645 and CJ/T 188."""
    return ModbusClient(spec) if spec.protocol == "modbus" else MeterLink(spec)


class BusState(enum.Enum):
    IDLE = "idle"  # not connected yet
    UP = "up"
    DOWN = "down"  # waiting for the next reconnect attempt
    CLOSED = "closed"


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff: first, 2*first, 4*first ... up to `cap` seconds."""

    first: float = 1.0
    cap: float = 30.0

    def delay(self, failures: int) -> float:
        """The exponent stops growing once past the cap: 2 ** 1024 is no float (a bus away for a day
        failed that many times and its poll raised OverflowError from then on)."""
        return min(self.cap, self.first * 2.0 ** min(max(0, failures - 1), 64))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one request of an exchange came back with: its words or its error, and the wall time
    it went out (after the pauses), which is the timestamp its readings carry."""

    sent_at: float
    words: list[int] | None = None
    error: BusError | DeviceError | None = None
    reply: Answer | None = None  # DL/T 645 and CJ/T 188: the meter's answer (a value or its error byte)

    @property
    def ends_exchange(self) -> bool:
        """A timeout, a garbled answer or a dead link: the device or the line is not answering, so
        the rest of the exchange is not sent. An exception response is an answer; it does not."""
        return self.error is not None and not isinstance(self.error, DeviceException)

    def unwrap(self) -> list[int]:
        """The words, or the error raised: for callers that want one request's answer or an exception."""
        if self.error is not None:
            raise self.error
        assert self.words is not None
        return self.words


@dataclass(frozen=True, slots=True)
class _Exchange:
    """One device's requests waiting for the bus thread, and the future its poll awaits."""

    unit: Target
    requests: tuple[Request, ...]
    timing: DeviceTiming
    future: asyncio.Future[list[Outcome]]


class _HandOff:
    """Exchanges handed to the bus thread in one job. The thread appends each outcome to `done` (a
    deque: appends and pops are atomic) and sets `finished` after the last; the loop pops."""

    def __init__(self, work: list[_Exchange]) -> None:
        self.work = work
        self.done: deque[tuple[_Exchange, list[Outcome] | BaseException]] = deque()
        self.finished = False
        self.collect: asyncio.TimerHandle | None = None

    def deliver(self) -> None:
        """On the loop: hand each finished outcome to the poll awaiting it (unless it was cancelled)."""
        while self.done:
            item, result = self.done.popleft()
            if item.future.done():
                continue
            if isinstance(result, BaseException):
                item.future.set_exception(result)
            else:
                item.future.set_result(result)

    def last(self) -> None:
        """On the loop, once the thread is through: the rest, and no more collecting."""
        if self.collect is not None:
            self.collect.cancel()
        self.deliver()


class Bus:
    """Serialized access to one transport; safe to share between the devices on it."""

    def __init__(self, name: str, spec: BusSpec, backoff: Backoff = Backoff(),
                 transport_factory: TransportFactory = open_transport) -> None:
        self.name = name
        self.spec = spec
        self.backoff = backoff
        self.state = BusState.IDLE
        self.transactions = 0
        self.hand_offs = 0  # jobs given to the bus thread (one per turn of the loop that asked for exchanges)
        self.connects = 0
        self.last_error = ""
        self._factory = transport_factory
        self._transport: Transport | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"bus-{name}")
        self._queued: list[_Exchange] = []  # asked for in this turn of the loop, handed over at its end
        self._failures = 0
        self._retry_at = 0.0
        self._quiet_until = 0.0  # monotonic time before which no request may go out
        self._closing = False

    def __repr__(self) -> str:
        return f"<Bus {self.name} {self.spec} {self.state.value} transactions={self.transactions}>"

    async def exchange(self, unit: Target, requests: Sequence[Request], timing: DeviceTiming) -> list[Outcome]:
        """Send `requests` to `unit` back to back in one hand-off to the bus thread.

        Returns one Outcome per request sent; it stops after the first outcome that `ends_exchange`
        (so the list can be shorter than `requests`: the rest was not sent).
        """
        if self._closing:
            return self._closed()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Outcome]] = loop.create_future()
        self._queued.append(_Exchange(unit, tuple(requests), timing, future))
        if len(self._queued) == 1:
            loop.call_soon(self._hand_over, loop)
        return await future

    def _closed(self) -> list[Outcome]:
        return [Outcome(time.time(), error=BusError(f"bus {self.name} is closed"))]

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop: the exchanges asked for in this turn go to the bus thread in one job."""
        hand_off = _HandOff(self._queued)
        self._queued = []
        self.hand_offs += 1
        self._executor.submit(self._run_all, hand_off, loop)
        hand_off.collect = loop.call_later(DELIVER_AFTER, self._collect, hand_off, loop)

    def _collect(self, hand_off: _HandOff, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop, while the bus thread is still at it: outcomes finished so far go to their polls."""
        hand_off.deliver()
        if not hand_off.finished:
            hand_off.collect = loop.call_later(DELIVER_AFTER, self._collect, hand_off, loop)

    async def transact(self, unit: int, request: ReadRequest, timing: DeviceTiming) -> tuple[list[int], float]:
        """One request; returns its words and send time, raises BusError or a DeviceError."""
        outcome = (await self.exchange(unit, (request,), timing))[0]
        return outcome.unwrap(), outcome.sent_at

    async def read(self, unit: int, request: ReadRequest, timing: DeviceTiming) -> list[int]:
        """One read transaction; raises BusError (link) or a DeviceError (this device only)."""
        words, _ = await self.transact(unit, request, timing)
        return words

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True  # exchanges from now on fail at once; those queued run first
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=False)

    # ---------------------------------------------------------------- on the bus thread only

    def _run_all(self, hand_off: _HandOff, loop: asyncio.AbstractEventLoop) -> None:
        """Run the exchanges in order; one wake-up of the loop when all are done."""
        for item in hand_off.work:
            if self._closing or item.future.cancelled():  # shutting down: no time spent on the wire for it
                hand_off.done.append((item, self._closed()))
                continue
            try:
                hand_off.done.append((item, self._exchange(item.unit, item.requests, item.timing)))
            except Exception as exc:  # noqa: BLE001 - a bug in one exchange fails that exchange, not the others
                hand_off.done.append((item, exc))
        hand_off.finished = True
        try:
            loop.call_soon_threadsafe(hand_off.last)
        except RuntimeError:  # the loop is closed: nobody waits for these any more
            pass

    def _exchange(self, unit: Target, requests: tuple[Request, ...], timing: DeviceTiming) -> list[Outcome]:
        outcomes = []
        for request in requests:
            outcome = self._request(unit, request, timing)
            outcomes.append(outcome)
            if outcome.ends_exchange:
                break
        return outcomes

    def _request(self, unit: Target, request: Request, timing: DeviceTiming) -> Outcome:
        try:
            transport = self._connected(timing)
        except BusError as exc:
            return Outcome(time.time(), error=exc)
        self._wait_quiet()
        sent_at = time.time()
        try:
            if isinstance(transport, MeterLink):
                assert isinstance(unit, MeterTarget) and isinstance(request, MeterRequest)
                return Outcome(sent_at, reply=transport.transact(unit, request, timing.timeout))
            assert isinstance(unit, int) and isinstance(request, ReadRequest)
            words = transport.read(request.kind, unit, request.start, request.count, timing.timeout)
            return Outcome(sent_at, words=words)
        except BusError as exc:
            self._mark_down(str(exc))
            return Outcome(sent_at, error=exc)
        except DeviceError as exc:
            return Outcome(sent_at, error=exc)
        finally:
            self.transactions += 1
            self._quiet_until = time.monotonic() + max(timing.pause_between_requests, self._frame_gap())

    def _connected(self, timing: DeviceTiming) -> Transport:
        if self.state is BusState.CLOSED:
            raise BusError(f"bus {self.name} is closed")
        if self._transport is not None and self._transport.connected:
            return self._transport
        now = time.monotonic()
        if self.state is BusState.DOWN and now < self._retry_at:
            raise BusError(f"bus {self.name} down ({self.last_error}); next attempt in {self._retry_at - now:.1f} s")
        try:
            if self._transport is None:
                self._transport = self._factory(self.spec)
            self._transport.connect()
        except BusError as exc:
            self._mark_down(str(exc))
            raise
        self.connects += 1
        self.state = BusState.UP
        self._failures = 0
        if timing.pause_after_connect:
            time.sleep(timing.pause_after_connect)  # Huawei dongles drop the first request otherwise
        return self._transport

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._transport = None
        self.state = BusState.CLOSED

    def _mark_down(self, reason: str) -> None:
        self._failures += 1
        self.state = BusState.DOWN
        self.last_error = reason
        self._retry_at = time.monotonic() + self.backoff.delay(self._failures)

    def _wait_quiet(self) -> None:
        delay = self._quiet_until - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def _frame_gap(self) -> float:
        """RTU needs 3.5 characters of silence between frames."""
        return 3.5 * self.spec.serial.char_time if self.spec.serial else 0.0
