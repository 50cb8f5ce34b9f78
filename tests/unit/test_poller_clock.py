"""Clock leaps through the real scheduler's arithmetic: a leap costs one run, not one per skipped
interval, and the skipped ticks are not reported as stalled polls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from agent.poller import AlignedTrigger
from agent.schedule import TickTracker

START = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


async def _noop() -> None:
    return None


@pytest.mark.parametrize("leap", [timedelta(days=30), timedelta(hours=1), timedelta(seconds=7), timedelta(days=-30)])
def test_a_leap_gives_at_most_two_run_times(leap: timedelta) -> None:
    """apscheduler's own IntervalTrigger would list every missed second of a 30-day leap (2.6 million
    run times, ~50 s of a blocked event loop on a PC); the aligned trigger lists at most two."""
    scheduler = AsyncIOScheduler(timezone=UTC)
    job = scheduler.add_job(_noop, AlignedTrigger(1.0), next_run_time=START)
    run_times = job._get_run_times(START + leap)
    assert len(run_times) <= 2
    if leap > timedelta(0):
        assert run_times[-1] == START + leap  # the latest aligned tick, once
    after = job.trigger.get_next_fire_time(run_times[-1] if run_times else None, START + leap)
    assert after > START + leap - timedelta(seconds=1)


@pytest.mark.parametrize(("interval", "now", "expected"), [
    (1.0, "12:00:00.3", "12:00:01"),
    (10.0, "12:00:03", "12:00:10"),
    (900.0, "12:07:00", "12:15:00"),  # a 15-minute interval reads at :00, :15, ...
])
def test_the_first_run_is_the_next_aligned_tick(interval: float, now: str, expected: str) -> None:
    def at(clock: str) -> datetime:
        return datetime.fromisoformat(f"2026-11-29T{clock}+00:00")

    assert AlignedTrigger(interval).get_next_fire_time(None, at(now)) == at(expected)


def test_a_wall_clock_leap_is_not_reported_as_stalled_polls() -> None:
    tracker = TickTracker(1.0)
    wall, mono = START.timestamp(), 1000.0
    assert tracker.run(wall, mono).count == 0
    assert tracker.run(wall + 1, mono + 1).count == 0
    leapt = tracker.run(wall + 2 + 30 * 86400, mono + 2)  # NTP after a month without power
    assert leapt.count == 0 and leapt.scheduled_ms == []
    stalled = tracker.run(wall + 8 + 30 * 86400, mono + 8)  # a real stall afterwards is still counted
    assert stalled.count == 5


def test_realign_after_a_clock_jump_keeps_each_jobs_offset() -> None:
    """The seal job fires `SEAL_GRACE` after each batch window; a realign must not move it onto the
    window's end, where it would seal before the window's last polls are in."""
    import asyncio

    from agent.poller import Poller

    async def scenario() -> list[tuple[float, float]]:
        poller = Poller(lambda _readings: None, lambda _event: None)
        poller.every("seal", 10.0, _noop, offset=0.3)
        poller.start()
        poller.realign()
        triggers = [job.trigger for job in poller._scheduler.get_jobs()]
        await poller.stop(1.0)
        return [(t.interval, t.offset) for t in triggers if isinstance(t, AlignedTrigger)]

    assert asyncio.run(scenario()) == [(10.0, 0.3)]
