"""The demo's live view (hil/demo.py): which tail lines it shows, how it counts, when `--once` has
shown enough. Lines as `edge-agent tail` prints them."""

from __future__ import annotations

import pytest

from hil.demo import DEVICES, Enough, LiveView


def poll(ts: str) -> list[str]:
    """One poll of every device: a shown point and a hidden one each."""
    return [line for device in sorted(DEVICES) for line in (
        f"{ts} gw-demo-01/{device} voltage_l1=230.1 V", f"{ts} gw-demo-01/{device} frequency=50.0 Hz")]


def test_it_shows_the_demo_points_and_notices_and_counts_every_reading() -> None:
    shown: list[str] = []
    view = LiveView(shown.append, None)
    status = 'gw-demo-01 status: {"state": "online"}'
    for line in [status, *poll("10:00:00.000")]:
        view(line)
    assert shown == [status, *[line for line in poll("10:00:00.000") if "voltage_l1" in line]]
    assert view.readings == 2 * len(DEVICES)


@pytest.mark.parametrize(("enough", "polls", "ends"), [
    (4, 1, False),   # enough readings, but every device only once: no PV interval yet
    (4, 2, True),
    (100, 2, False),  # every device twice, but not enough readings
])
def test_once_ends_after_enough_readings_and_every_device_twice(enough: int, polls: int, ends: bool) -> None:
    view = LiveView(lambda _line: None, None, enough=enough)
    lines = [line for n in range(polls) for line in poll(f"10:00:0{2 * n}.000")]
    try:
        for line in lines:
            view(line)
    except Enough:
        assert ends and view.readings == len(lines) - 1  # the last device's hidden point was not needed
        return
    assert not ends
