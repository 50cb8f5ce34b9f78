"""What goes to the broker when: the publisher's decisions, sans I/O — data and a clock in, decisions
out, tested with data tables and a fake clock (agent/publisher.py does the I/O).

- At most `window` QoS 1 messages of telemetry in flight; live batches first; the backlog never
  takes the last `LIVE_RESERVE` slots, so the present goes ahead of a draining past.
- The backlog drains at `drain_rate` batches/s (a token bucket refilled by elapsed time, with a
  burst of one second's worth): 500 gateways coming back after a broker outage must not all
  empty their buffers into it at once.
- A refused PUBACK pauses publishing (2 s doubling to 60 s) and rewinds the backlog cursor, so the
  batch is retried; a PUBACK that does not come within `ack_timeout` means a black-holed link.
- Reconnects back off from `backoff_min` doubling to `backoff_max`, with jitter (50-100 %).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

LIVE_RESERVE = 2  # window slots the backlog leaves free for live batches
PROBE_EVERY = (1.0, 3.0)  # s between TCP probes while the broker is down (uniform: a fleet spreads out)
REFUSAL_PAUSE_MAX = 60.0


@dataclass(frozen=True)
class Flight:
    seq: int
    sent_at: float
    historical: bool


class DeliveryCore:
    def __init__(self, window: int, drain_rate: float, ack_timeout: float, backoff_min: float = 1.0,
                 backoff_max: float = 60.0, jitter: Callable[[float, float], float] = random.uniform) -> None:
        self.window = window
        self.drain_rate = drain_rate
        self.ack_timeout = ack_timeout
        self.backoff_min, self.backoff_max = backoff_min, backoff_max
        self.jitter = jitter
        self.inflight: dict[int, Flight] = {}  # packet id -> batch
        self.cursor = 0  # backlog seqs up to this one were handed out in this session
        self.tokens = 0.0
        self._refilled_at = 0.0
        self.pause_until = 0.0
        self.refusals = 0
        self.failures = 0  # connection attempts failed in a row

    # ------------------------------------------------------------------ sessions

    def session_started(self, now: float) -> None:
        self.inflight.clear()
        self.cursor = 0
        self.tokens, self._refilled_at = 0.0, now
        self.failures = 0

    def probe_delay(self) -> float:
        """While nothing accepts connections: when to look again (cheap TCP probe, full jitter)."""
        return self.jitter(*PROBE_EVERY)

    def reconnect_delay(self) -> float:
        """After a failed or lost session: how long to wait before the next attempt."""
        self.failures += 1
        # the exponent stops growing once past the cap: after 1,024 failures (17 hours at 60 s) 2 ** n
        # is no float, and the OverflowError ended the publisher: nothing was delivered after the outage
        delay = min(self.backoff_max, self.backoff_min * 2.0 ** min(self.failures - 1, 64))
        return delay * self.jitter(0.5, 1.0)

    # ------------------------------------------------------------------ the window

    def live_room(self) -> int:
        return max(0, self.window - len(self.inflight))

    def backlog_room(self, now: float) -> int:
        """How many backlog batches may go now: window slots beyond the live reserve, and tokens."""
        if now < self.pause_until:
            return 0
        self._refill(now)
        slots = self.window - len(self.inflight) - min(LIVE_RESERVE, self.window - 1)
        return max(0, min(slots, int(self.tokens)))

    def sent(self, mid: int, seq: int, historical: bool, now: float) -> None:
        self.inflight[mid] = Flight(seq, now, historical)
        if historical:
            self.tokens -= 1
            self.cursor = max(self.cursor, seq)

    def skip(self, seq: int) -> None:
        """A backlog batch passed over (already in flight): the cursor moves past it."""
        self.cursor = max(self.cursor, seq)

    def in_flight_seqs(self) -> set[int]:
        return {flight.seq for flight in self.inflight.values()}

    def acked(self, mid: int) -> Flight | None:
        """A PUBACK with a success code; None if the packet id is not ours (status, events, another session)."""
        flight = self.inflight.pop(mid, None)
        if flight is not None:
            self.refusals = 0
        return flight

    def refused(self, mid: int, now: float) -> tuple[Flight, float] | None:
        """A PUBACK with a failure code: the batch is kept, publishing pauses, the cursor rewinds."""
        flight = self.inflight.pop(mid, None)
        if flight is None:
            return None
        self.refusals += 1
        delay = min(REFUSAL_PAUSE_MAX, 2.0 ** min(self.refusals, 6))
        self.pause_until = now + delay
        self.rewind(flight.seq)
        return flight, delay

    def rewind(self, seq: int) -> None:
        """`seq` must be offered again (refused, or it could not be handed to the client)."""
        self.cursor = min(self.cursor, seq - 1)

    def ack_overdue(self, now: float) -> bool:
        """The oldest message in flight waited longer than `ack_timeout`: the link is black-holed."""
        return bool(self.inflight) and now - min(f.sent_at for f in self.inflight.values()) > self.ack_timeout

    def next_wakeup(self, now: float, backlog_waiting: bool) -> float:
        """Seconds until something is due even if nothing happens: the ack watchdog, the end of a
        refusal pause, the next drain token. At most 1 s (the spool's timers tick once a second)."""
        due = [1.0]
        if self.inflight:
            due.append(min(f.sent_at for f in self.inflight.values()) + self.ack_timeout - now)
        if now < self.pause_until:
            due.append(self.pause_until - now)
        elif backlog_waiting and self.tokens < 1 and self.drain_rate > 0:
            due.append((1 - self.tokens) / self.drain_rate)
        return max(0.0, min(due))

    def _refill(self, now: float) -> None:
        burst = max(1.0, self.drain_rate)  # one second's worth
        self.tokens = min(burst, self.tokens + (now - self._refilled_at) * self.drain_rate)
        self._refilled_at = now


# ---------------------------------------------------------------- telling the operator

SUMMARY_EVERY = 300.0  # s between "still failing" lines while the broker cannot be used
PROBLEMS = {  # BrokerError.problem -> what the operator reads
    "unreachable": "unreachable",
    "bad_credentials": "bad credentials",
    "not_authorized": "not authorized (credentials or client id refused)",  # mosquitto says this for both
    "client_id_refused": "client id refused",
    "refused": "connection refused",
    "tls_untrusted": "TLS certificate not trusted",
    "tls_hostname": "TLS certificate for another host",
    "tls_setup": "TLS set-up failed",
    "tls": "TLS handshake failed",
    "error": "connection failed",
}


@dataclass
class Outage:
    started: float  # monotonic s of the first failed attempt
    started_wall: float  # the same, as Unix time (for the operator)
    attempts: int = 0
    problem: str = ""  # the latest failure's kind ...
    problem_since_wall: float = 0.0  # ... since when it has been that kind
    reason: str = ""  # ... and its message
    told: set[str] = field(default_factory=set)  # kinds already logged in full (and raised as events) in this outage
    summarized_at: float = 0.0


class TroubleLog:
    """Failed connection attempts, told without flooding: the first of each kind in an outage in full
    (the caller logs it and raises one event), then one summary line every `summary_every` s, and a
    short text for systemd's STATUS= until a connection succeeds. Data in, decisions out."""

    def __init__(self, summary_every: float = SUMMARY_EVERY) -> None:
        self.summary_every = summary_every
        self.outage: Outage | None = None

    def failed(self, problem: str, reason: str, now: float, wall: float) -> tuple[bool, str | None]:
        """One failed attempt: (first of its kind in this outage, the summary line if one is due)."""
        outage = self.outage
        if outage is None:
            outage = self.outage = Outage(now, wall, summarized_at=now)
        outage.attempts += 1
        if problem != outage.problem:
            outage.problem, outage.problem_since_wall = problem, wall
        outage.reason = reason
        first = problem not in outage.told
        outage.told.add(problem)
        if first or now - outage.summarized_at < self.summary_every:
            return first, None
        outage.summarized_at = now
        return False, self.summary(now)

    def summary(self, now: float) -> str:
        outage = self.outage
        assert outage is not None
        return (f"broker: {PROBLEMS.get(outage.problem, outage.problem)} for {_minutes(now - outage.started)}, "
                f"{outage.attempts} attempts, last: {outage.reason}")

    def connected(self, now: float) -> str | None:
        """A session is up: the outage that ended, in one line (None if there was none)."""
        outage, self.outage = self.outage, None
        if outage is None:
            return None
        return f"broker connected after {_minutes(now - outage.started)} and {outage.attempts} failed attempts"

    def status(self, clock_text: Callable[[float], str]) -> str | None:
        """For STATUS=: "broker: bad credentials since 12:03 UTC"; None while nothing is wrong."""
        outage = self.outage
        if outage is None:
            return None
        return f"broker: {PROBLEMS.get(outage.problem, outage.problem)} since {clock_text(outage.problem_since_wall)}"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
