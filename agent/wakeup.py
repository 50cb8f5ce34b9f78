"""A flag the event loop sets and one coroutine waits on, with a timeout that costs nothing when it runs out.

`asyncio.wait_for(event.wait(), timeout)` makes a task per wait and, when the time runs out, cancels
it and raises TimeoutError through two frames: about 60 us a time. The daemon's tick loop and the
publisher's pump wait like that several times a second, every second of the agent's life; this
waits on one future with one timer instead, and a timeout is just `False`.

Runs on the event loop only (set it from another thread with `loop.call_soon_threadsafe`).
"""

from __future__ import annotations

import asyncio


class Wakeup:
    """Like asyncio.Event for a single waiter, plus `wait(timeout)` returning whether it was set."""

    __slots__ = ("_set", "_waiter")

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future[bool] | None = None

    def set(self) -> None:
        self._set = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(True)

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    async def wait(self, timeout: float | None = None) -> bool:
        """Until set (True) or `timeout` seconds have passed (False)."""
        if self._set:
            return True
        if self._waiter is not None:
            raise RuntimeError("Wakeup has one waiter at a time")
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        timer = loop.call_later(timeout, _expire, waiter) if timeout is not None else None
        try:
            return await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)
