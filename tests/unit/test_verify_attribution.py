"""The HIL verifier's bookkeeping of a poll delayed past its interval (pure, data tables)."""

from __future__ import annotations

import pytest

from hil.verify import _attribute_late_polls


@pytest.mark.parametrize(("ticks", "skipped", "expected"), [
    # poll of tick 10 read late (stamped in 11), tick 11's own poll reported skipped: the reading is tick 10's
    ({11: ["r"]}, {11_000}, {10: ["r"]}),
    # tick 11 not reported skipped: its reading is its own, tick 10 stays missing
    ({11: ["r"]}, set(), {11: ["r"]}),
    # tick 10 has its own reading: nothing moves (a skipped tick 11 stays reported skipped)
    ({10: ["a"], 11: ["b"]}, {11_000}, {10: ["a"], 11: ["b"]}),
])
def test_a_late_poll_is_counted_for_its_own_interval(ticks: dict[int, list], skipped: set[int],
                                                      expected: dict[int, list]) -> None:
    _attribute_late_polls(ticks, skipped, 1.0)
    assert {k: v for k, v in ticks.items() if v} == expected
