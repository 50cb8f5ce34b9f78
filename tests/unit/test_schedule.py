"""Tick arithmetic: which scheduled polls never ran (pure)."""

from __future__ import annotations

import pytest

from agent.schedule import REPORT_AT_MOST, TickTracker, tick_index, tick_ms

T0 = 1_763_699_400.0  # a multiple of every interval below (900 s included)


@pytest.mark.parametrize(("interval", "runs", "reported", "expected"), [
    # on time, slightly late: nothing missed
    (1.0, [T0 + 0.01, T0 + 1.3, T0 + 2.02], [], [[], [], []]),
    # the loop stalled 2.5 s: the runs for +1 and +2 were coalesced into one at +3.4
    (1.0, [T0 + 0.01, T0 + 3.4], [], [[], [1000, 2000]]),
    # the scheduler already reported +1 (previous poll still running): not reported twice
    (1.0, [T0 + 0.01, T0 + 3.4], [1000], [[], [2000]]),
    # a run late by most of an interval lands in its own tick; the next one on time
    (10.0, [T0 + 0.0, T0 + 19.9, T0 + 20.0], [], [[], [], []]),
    # sub-second interval
    (0.25, [T0, T0 + 0.26, T0 + 1.01], [], [[], [], [500, 750]]),
    # a run late past its successor's start is still the next tick, not a duplicate
    (1.0, [T0 + 0.0, T0 + 2.05, T0 + 2.1], [], [[], [1000], []]),
    # the scheduler reported a run before the tracker's first (the immediate first poll, missed on a
    # slow start): it is not subtracted from the gaps the tracker finds (that gave counts of 0 and -1)
    (1.0, [T0 + 3.2, T0 + 4.1, T0 + 6.3], [-1234], [[], [], [5000]]),
    # ... nor one from the old clock's schedule, reported after a forward leap restarted the count
    (1.0, [T0 + 0.1, T0 + 3.2], [-86_400_000], [[], [1000, 2000]]),
])
def test_missed_ticks(interval: float, runs: list[float], reported: list[int], expected: list[list[int]]) -> None:
    tracker = TickTracker(interval)
    for stamp in reported:
        tracker.note_reported(round(T0 * 1000) + stamp)
    got = []
    for now in runs:
        missed = tracker.run(now)
        assert missed.count == len(missed.scheduled_ms)
        got.append([t - round(T0 * 1000) for t in missed.scheduled_ms])
    assert got == expected


def test_a_long_gap_is_counted_whole_and_listed_in_part() -> None:
    tracker = TickTracker(1.0)
    tracker.run(T0)
    missed = tracker.run(T0 + 5000.5)
    assert missed.count == 4999 and len(missed.scheduled_ms) == REPORT_AT_MOST
    assert missed.scheduled_ms[0] == round((T0 + 1) * 1000)


def test_restart_forgets_the_sequence_after_a_clock_jump() -> None:
    tracker = TickTracker(1.0)
    tracker.run(T0)
    tracker.restart()
    assert tracker.run(T0 + 3600.2).count == 0  # NTP moved the clock an hour: not 3599 missed polls


def test_tick_times_are_whole_milliseconds_of_the_aligned_schedule() -> None:
    assert tick_ms(tick_index(T0 + 0.35, 0.1), 0.1) == round((T0 + 0.3) * 1000)
    assert tick_ms(tick_index(T0 + 899.0, 900.0), 900.0) == round(T0 * 1000)


def test_reports_of_one_tick_add_up_sorted_and_capped() -> None:
    from agent.schedule import Missed

    both = Missed([3000, 5000], 2) + Missed([1000], 1)
    assert both == Missed([1000, 3000, 5000], 3)
    big = Missed(list(range(REPORT_AT_MOST)), 5000) + Missed([-1], 1)
    assert big.count == 5001 and len(big.scheduled_ms) == REPORT_AT_MOST and big.scheduled_ms[0] == -1
