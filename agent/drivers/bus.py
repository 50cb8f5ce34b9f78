"""One owner per bus: every transaction on one RS-485 line or TCP endpoint goes through one Bus.

A Bus runs its blocking transport on a single thread of its own, takes one transaction at a time
(an asyncio lock, so devices queue fairly instead of colliding on the wire), keeps the pauses a
device asks for (after connect, between requests, and the 3.5-character RTU silence), and
reconnects with capped exponential backoff, forever. While the link is down, `read` fails at
once with BusError instead of making every device wait out a connect timeout.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from agent.drivers.pymodbus_adapter import ModbusTransport
from agent.drivers.urls import BusSpec
from agent.errors import BusError
from agent.types import DeviceTiming, ReadRequest

TransportFactory = Callable[[BusSpec], ModbusTransport]


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
        return min(self.cap, self.first * 2 ** max(0, failures - 1))


class Bus:
    """Serialized access to one transport; safe to share between the devices on it."""

    def __init__(self, name: str, spec: BusSpec, backoff: Backoff = Backoff(),
                 transport_factory: TransportFactory = ModbusTransport) -> None:
        self.name = name
        self.spec = spec
        self.backoff = backoff
        self.state = BusState.IDLE
        self.transactions = 0
        self.connects = 0
        self._factory = transport_factory
        self._transport: ModbusTransport | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"bus-{name}")
        self._lock = asyncio.Lock()
        self._failures = 0
        self._retry_at = 0.0
        self._quiet_until = 0.0  # monotonic time before which no request may go out
        self.last_error = ""

    def __repr__(self) -> str:
        return f"<Bus {self.name} {self.spec} {self.state.value} transactions={self.transactions}>"

    async def read(self, unit: int, request: ReadRequest, timing: DeviceTiming) -> list[int]:
        """One read transaction; raises BusError (link) or a DeviceError (this device only)."""
        words, _ = await self.transact(unit, request, timing)
        return words

    async def transact(self, unit: int, request: ReadRequest, timing: DeviceTiming) -> tuple[list[int], float]:
        """Like read(), also returning the wall time the request went out (after the pauses)."""
        async with self._lock:
            await self._ensure_connected(timing)
            await self._wait_quiet()
            assert self._transport is not None
            sent_at = time.time()
            try:
                words = await self._run(self._transport.read, request.kind, unit, request.start,
                                        request.count, timing.timeout)
                return words, sent_at  # type: ignore[return-value]
            except BusError as exc:
                self._mark_down(str(exc))
                raise
            finally:
                self.transactions += 1
                self._quiet_until = time.monotonic() + max(timing.pause_between_requests, self._frame_gap())

    async def close(self) -> None:
        async with self._lock:
            if self._transport is not None:
                await self._run(self._transport.close)
            self._transport = None
            self.state = BusState.CLOSED
        self._executor.shutdown(wait=False)

    async def _ensure_connected(self, timing: DeviceTiming) -> None:
        if self.state is BusState.CLOSED:
            raise BusError(f"bus {self.name} is closed")
        if self._transport is not None and self._transport.connected:
            return
        now = time.monotonic()
        if self.state is BusState.DOWN and now < self._retry_at:
            raise BusError(f"bus {self.name} down ({self.last_error}); next attempt in {self._retry_at - now:.1f} s")
        try:
            if self._transport is None:
                self._transport = self._factory(self.spec)
            await self._run(self._transport.connect)
        except BusError as exc:
            self._mark_down(str(exc))
            raise
        self.connects += 1
        self.state = BusState.UP
        self._failures = 0
        if timing.pause_after_connect:
            await asyncio.sleep(timing.pause_after_connect)  # Huawei dongles drop the first request otherwise

    def _mark_down(self, reason: str) -> None:
        self._failures += 1
        self.state = BusState.DOWN
        self.last_error = reason
        self._retry_at = time.monotonic() + self.backoff.delay(self._failures)

    async def _wait_quiet(self) -> None:
        delay = self._quiet_until - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    def _frame_gap(self) -> float:
        """RTU needs 3.5 characters of silence between frames."""
        return 3.5 * self.spec.serial.char_time if self.spec.serial else 0.0

    async def _run(self, fn: Callable[..., object], *args: object):  # type: ignore[no-untyped-def]
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
