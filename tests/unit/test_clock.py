"""Clock safety and scheduling alignment (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agent.clock import JumpDetector
from agent.schedule import aligned_start


def test_jump_detector_reports_wall_clock_jumps_only() -> None:
    detector = JumpDetector(tolerance=2.0)
    detector.check(wall=1000.0, mono=10.0)
    assert detector.check(wall=1001.0, mono=11.0) is None  # both moved together
    assert detector.check(wall=1002.5, mono=12.0) is None  # 0.5 s drift: NTP slewing, not a jump
    jump = detector.check(wall=1_800_000_000.0, mono=13.0)  # NTP sets a Pi's clock from 1970-ish boot time
    assert jump is not None and jump.seconds == pytest.approx(1_800_000_000.0 - 1002.5 - 1.0)
    back = detector.check(wall=1_799_999_900.0, mono=14.0)
    assert back is not None and back.seconds == pytest.approx(-101.0)


@pytest.mark.parametrize(("interval", "now", "expected"), [
    (900.0, datetime(2026, 11, 21, 10, 7, 3, tzinfo=UTC).timestamp(), datetime(2026, 11, 21, 10, 15, tzinfo=UTC)),
    (10.0, datetime(2026, 11, 21, 10, 7, 3, tzinfo=UTC).timestamp(), datetime(2026, 11, 21, 10, 7, 10, tzinfo=UTC)),
    (1.0, datetime(2026, 11, 21, 10, 7, 3, 500000, tzinfo=UTC).timestamp(), datetime(2026, 11, 21, 10, 7, 4, tzinfo=UTC)),
])
def test_polls_align_to_wall_clock_boundaries(interval: float, now: float, expected: datetime) -> None:
    """A 15-minute interval reads at :00, :15, ... so meters across gateways line up."""
    assert aligned_start(interval, now) == expected


def test_a_clock_jump_raises_one_event_and_unsynchronized_time_is_bracketed() -> None:
    """The daemon's clock watch: NTP moves the wall clock an hour; the event says by how much, once,
    and the interval the clock was not synchronized is given by a pair of events."""
    from agent.clock import ClockWatch, JumpDetector
    from agent.events import ClockJump, ClockSynchronized, ClockUnsynchronized

    wall, synced = [1_000_000.0], [False]
    watch = ClockWatch(JumpDetector(wall=lambda: wall[0], mono=lambda: 50.0), lambda: synced[0], lambda: wall[0])
    assert watch.check() == (None, [ClockUnsynchronized(1_000_000_000)])
    wall[0] += 3600.0
    synced[0] = True
    jump, events = watch.check()
    assert jump is not None and jump.seconds == 3600.0
    assert events == [ClockJump(3600.0, 1_000_000.0), ClockSynchronized(1_000_000_000, 1_003_600_000)]
    assert watch.check() == (None, [])


def test_point_groups_split_by_interval_and_carry_their_references(library) -> None:  # type: ignore[no-untyped-def]
    """DTSU666 with energy totals once a minute: the energy group reads the CT/PT ratios too (hidden)."""
    from agent.pipeline import split_by_interval

    points = library.load("chint/dtsu666").points
    groups = split_by_interval(points, 1.0, {"energy_*": 60.0})
    assert list(groups) == [1.0, 60.0]
    assert set(groups[60.0]) == {"energy_import", "energy_export", "ct_ratio", "pt_ratio"}
    assert groups[60.0]["ct_ratio"].hidden and not groups[1.0]["ct_ratio"].hidden
    assert "energy_import" not in groups[1.0] and "voltage_l1" in groups[1.0]
    assert split_by_interval(points, 5.0, {}) == {5.0: points}
