"""The publisher's decisions, sans I/O: data tables and a fake clock."""

from __future__ import annotations

import pytest

from agent.delivery import LIVE_RESERVE, DeliveryCore


def core(**overrides: float) -> DeliveryCore:
    values = {"window": 10, "drain_rate": 50.0, "ack_timeout": 60.0, "backoff_min": 1.0, "backoff_max": 60.0}
    values.update(overrides)
    return DeliveryCore(int(values.pop("window")), jitter=lambda low, high: 1.0, **values)


@pytest.mark.parametrize(("live_in_flight", "live_room", "backlog_room"), [
    (0, 10, 8),  # the backlog leaves LIVE_RESERVE slots for live batches
    (7, 3, 1),
    (8, 2, 0),
    (10, 0, 0),
])
def test_live_first_and_the_backlog_never_takes_the_last_slots(live_in_flight: int, live_room: int,
                                                               backlog_room: int) -> None:
    c = core()
    c.session_started(0.0)
    for mid in range(live_in_flight):
        c.sent(mid, 1000 + mid, historical=False, now=0.0)
    assert c.live_room() == live_room
    assert c.backlog_room(10.0) == backlog_room  # tokens are plenty after 10 s
    assert LIVE_RESERVE == 2


@pytest.mark.parametrize(("rate", "seconds", "at_most"), [(50.0, 10.0, 550), (5.0, 60.0, 305), (1.0, 3.0, 4)])
def test_the_drain_rate_is_enforced(rate: float, seconds: float, at_most: int) -> None:
    """A pump that wakes every 10 ms and acks at once may send no more than rate x time (+ one burst)."""
    c = core(window=1000, drain_rate=rate)
    c.session_started(0.0)
    sent, mid, now = 0, 0, 0.0
    while now < seconds:
        for _ in range(c.backlog_room(now)):
            c.sent(mid, mid + 1, historical=True, now=now)
            c.acked(mid)
            mid, sent = mid + 1, sent + 1
        now = round(now + 0.01, 2)
    assert rate * seconds * 0.95 - 1 <= sent <= at_most


def test_a_refusal_pauses_with_backoff_and_rewinds_the_cursor() -> None:
    c = core()
    c.session_started(0.0)
    pauses = []
    for n in range(8):
        c.sent(n, 100 + n, historical=True, now=10.0 * n)
        refused = c.refused(n, 10.0 * n)
        assert refused is not None and refused[0].seq == 100 + n
        pauses.append(refused[1])
        assert c.cursor == 99 + n  # the refused batch is offered again
        assert c.backlog_room(10.0 * n + refused[1] - 0.01) == 0
    assert pauses == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    c.sent(99, 200, historical=True, now=100.0)
    assert c.acked(99) is not None and c.refusals == 0  # an acceptance ends the backoff
    assert c.acked(12345) is None and c.refused(12345, 0.0) is None  # not ours: status, events


def test_an_overdue_acknowledgement_is_a_black_hole() -> None:
    c = core(ack_timeout=3.0)
    c.session_started(0.0)
    c.sent(1, 5, historical=False, now=1.0)
    assert not c.ack_overdue(3.9)
    assert c.ack_overdue(4.1)
    assert c.next_wakeup(2.0, backlog_waiting=False) == pytest.approx(1.0)  # at most a second
    assert c.next_wakeup(3.5, backlog_waiting=False) == pytest.approx(0.5)  # the watchdog is due first


def test_reconnect_backoff_doubles_to_its_ceiling_and_resets_on_a_session() -> None:
    c = core(backoff_min=1.0, backoff_max=8.0)
    assert [c.reconnect_delay() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    c.session_started(0.0)
    assert c.reconnect_delay() == 1.0


def test_a_day_of_failed_reconnects_stays_at_the_ceiling() -> None:
    """A reconnect a minute for 17 hours is 1,025 failures: 2 ** 1024 is no float, and the error it
    raised ended the publisher, so nothing was delivered after a long outage."""
    c = core(backoff_min=1.0, backoff_max=60.0)
    delays = [c.reconnect_delay() for _ in range(24 * 60 * 2)]
    assert delays[-1] == 60.0 and max(delays) == 60.0


@pytest.mark.parametrize(("failures", "delay"), [(0, 1.0), (1, 1.0), (2, 2.0), (6, 30.0), (1025, 30.0), (10**6, 30.0)])
def test_the_bus_and_device_backoff_stays_at_its_cap_however_many_failures(failures: int, delay: float) -> None:
    from agent.drivers.bus import Backoff

    assert Backoff(first=1.0, cap=30.0).delay(failures) == delay


def test_a_new_session_starts_with_no_flights_and_the_cursor_at_the_start() -> None:
    c = core()
    c.session_started(0.0)
    c.sent(1, 40, historical=True, now=1.0)
    c.skip(45)
    assert c.cursor == 45 and c.in_flight_seqs() == {40}
    c.session_started(5.0)
    assert c.cursor == 0 and c.in_flight_seqs() == set()
