"""The tick loop's and the pump's wait: set before, set during, time out, one waiter."""

from __future__ import annotations

import asyncio

import pytest

from agent.wakeup import Wakeup


def test_set_before_the_wait_returns_at_once_and_a_timeout_is_false() -> None:
    async def scenario() -> list[bool]:
        wake = Wakeup()
        wake.set()
        first = await wake.wait(10.0)
        wake.clear()
        second = await wake.wait(0.01)
        return [first, second, wake.is_set()]

    assert asyncio.run(scenario()) == [True, False, False]


def test_set_during_the_wait_wakes_it_and_cancels_its_timer() -> None:
    async def scenario() -> tuple[bool, int]:
        wake = Wakeup()
        loop = asyncio.get_running_loop()
        loop.call_soon(wake.set)
        woke = await wake.wait(60.0)
        return woke, len([h for h in loop._scheduled if not h.cancelled()])  # type: ignore[attr-defined]

    assert asyncio.run(scenario()) == (True, 0)


def test_one_waiter_at_a_time() -> None:
    async def scenario() -> None:
        wake = Wakeup()
        first = asyncio.create_task(wake.wait(1.0))
        await asyncio.sleep(0)
        try:
            with pytest.raises(RuntimeError, match="one waiter"):
                await wake.wait(1.0)
        finally:
            wake.set()
            assert await first

    asyncio.run(scenario())
