"""When polls are due, and which due polls never ran: pure arithmetic on wall-clock ticks.

Polls are aligned to wall-clock multiples of their interval (a 15 min interval reads at :00, :15,
...). The scheduler coalesces runs it could not start on time (a stalled event loop, a suspended
process) without telling anyone; `TickTracker` finds those gaps so every scheduled poll is either
delivered or reported as skipped.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

REPORT_AT_MOST = 1000  # scheduled times listed in one report; a longer gap is summarised by its count
LEAP_TOLERANCE = 2.0  # s the wall clock may move against the monotonic clock between runs before it is a leap


def aligned_start(interval: float, now: float | None = None) -> datetime:
    """The next wall-clock multiple of `interval` (a 15 min interval reads at :00, :15, ...)."""
    now = time.time() if now is None else now
    return datetime.fromtimestamp(math.ceil(now / interval) * interval, UTC)


def tick_index(when: float, interval: float) -> int:
    """Which tick (counted from the epoch) `when` (s) falls in."""
    return math.floor(when / interval)


def tick_ms(index: int, interval: float) -> int:
    """The scheduled time (ms) of tick `index`."""
    return round(index * interval * 1000)


@dataclass(frozen=True, slots=True)
class Missed:
    """Scheduled polls that never ran: their times (the first REPORT_AT_MOST) and how many."""

    scheduled_ms: list[int]
    count: int

    def __add__(self, other: Missed) -> Missed:
        return Missed(sorted(self.scheduled_ms + other.scheduled_ms)[:REPORT_AT_MOST], self.count + other.count)


@dataclass
class TickTracker:
    """Follows one scheduled job: which tick each run belongs to, and the ticks between runs that
    no run and no scheduler event accounted for.

    A run may start late, up to the scheduler's misfire grace (one interval for whole-second
    intervals); ticks are taken in order, so a late run landing in its successor's tick is counted
    as the next tick, not as a second run of the same one.
    """

    interval: float
    last: int | None = None  # tick index of the previous run
    reported: set[int] = field(default_factory=set)  # scheduled ms the scheduler already reported as skipped
    last_clocks: tuple[float, float] | None = None  # (wall, monotonic) of the previous run

    def note_reported(self, scheduled_ms: int) -> None:
        self.reported.add(scheduled_ms)

    def run(self, now: float, mono: float | None = None) -> Missed:
        """A run starts at `now` (s, wall clock; `mono`: the monotonic clock, when known): the ticks
        since the previous run that silently never ran. A gap the monotonic clock did not see is
        the wall clock leaping (NTP after a month without power, a suspend): a new count starts,
        nothing is reported missed (the leap is reported once, as a clock jump)."""
        if mono is not None:
            leapt = self.last_clocks is not None and abs(
                (now - self.last_clocks[0]) - (mono - self.last_clocks[1])) > LEAP_TOLERANCE
            self.last_clocks = (now, mono)
            if leapt:
                self.restart()
                self.last_clocks = (now, mono)
        this = tick_index(now, self.interval)
        if self.last is not None and this <= self.last:
            this = self.last + 1
        first = this if self.last is None else self.last + 1
        horizon = tick_ms(this, self.interval)
        low = tick_ms(first, self.interval)  # only reports of ticks in this gap are in its count
        already = sum(1 for t in self.reported if low <= t < horizon)
        listed = [t for t in (tick_ms(i, self.interval) for i in range(first, min(this, first + REPORT_AT_MOST)))
                  if t not in self.reported]
        self.reported = {t for t in self.reported if t > horizon}
        self.last = this
        return Missed(listed, this - first - already)

    def restart(self) -> None:
        """The schedule was realigned (a clock jump): the next run starts a new sequence."""
        self.last = None
        self.reported.clear()
        self.last_clocks = None
