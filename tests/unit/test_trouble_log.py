"""Telling the operator about a broker that cannot be used: the first failure of each kind in full,
then a summary every few minutes, and a STATUS= text until a session is up. Data tables, fake clock."""

from __future__ import annotations

from agent.delivery import TroubleLog


def clock_text(wall: float) -> str:
    return f"t{wall:.0f}"


def test_first_of_each_kind_then_summaries_then_connected() -> None:
    trouble = TroubleLog(summary_every=300.0)
    steps = [  # (problem, now) -> (first of its kind, summary due)
        ("unreachable", 0.0, True, None),
        ("unreachable", 60.0, False, None),
        ("unreachable", 299.0, False, None),
        ("unreachable", 301.0, False, "broker: unreachable for 5 min, 4 attempts, last: r301"),
        ("unreachable", 400.0, False, None),
        ("not_authorized", 500.0, True, None),  # a new kind in the same outage: told in full once
        ("not_authorized", 560.0, False, None),
        ("not_authorized", 602.0, False, "broker: not authorized (credentials or client id refused) for 10 min, "
                                         "8 attempts, last: r602"),
        ("unreachable", 700.0, False, None),  # told already in this outage
    ]
    for problem, now, first, summary in steps:
        assert trouble.failed(problem, f"r{now:.0f}", now, 1000 + now) == (first, summary), (problem, now)
    assert trouble.status(clock_text) == "broker: unreachable since t1700"
    assert trouble.connected(760.0) == "broker connected after 13 min and 9 failed attempts"
    assert trouble.status(clock_text) is None
    assert trouble.connected(800.0) is None
    assert trouble.failed("unreachable", "again", 900.0, 1900.0) == (True, None)  # a new outage


def test_status_names_the_current_kind_since_it_began() -> None:
    trouble = TroubleLog()
    trouble.failed("tls_setup", "CA file /etc/x/ca.pem does not exist", 0.0, 100.0)
    trouble.failed("tls_setup", "CA file /etc/x/ca.pem does not exist", 5.0, 105.0)
    assert trouble.status(clock_text) == "broker: TLS set-up failed since t100"
