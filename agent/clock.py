"""Clock safety. A Raspberry Pi has no real-time clock: it boots with a stale time and jumps when
NTP syncs. The wall clock is compared with the monotonic clock every tick: a change of their
offset beyond a tolerance is a jump. Synchronization is read from the kernel (adjtimex STA_UNSYNC)
or from systemd-timesyncd's flag file.

Readings taken while the clock is not synchronized carry the unsynchronized time and are flagged
by a `clock_unsynchronized` event with the interval; when the clock jumps, a `clock_jump` event
gives the offset, so the platform can correct the readings of that interval (documented in
README: the agent does not rewrite timestamps it has already stamped).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.events import ClockJump, ClockSynchronized, ClockUnsynchronized, Event

STA_UNSYNC = 0x0040
TIMESYNCD_FLAG = "/run/systemd/timesync/synchronized"


class _Timex(ctypes.Structure):
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("constant", ctypes.c_long), ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
                ("time_sec", ctypes.c_long), ("time_usec", ctypes.c_long), ("tick", ctypes.c_long),
                ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long), ("shift", ctypes.c_int),
                ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
                ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
                ("padding", ctypes.c_int * 11)]


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """Looked up once: `find_library` runs `ldconfig -p` as a child process, and the clock is asked
    every tick (that was most of the agent's CPU between polls)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def kernel_synchronized() -> bool | None:
    """True/False from adjtimex(2), None when it cannot be asked."""
    libc = _libc()
    if libc is None:
        return None
    try:
        timex = _Timex()
        state = libc.adjtimex(ctypes.byref(timex))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return not (timex.status & STA_UNSYNC)


def synchronized() -> bool:
    """Whether the wall clock can be trusted (NTP has set it), by the kernel or timesyncd."""
    if os.path.exists(TIMESYNCD_FLAG):
        return True
    return bool(kernel_synchronized())


@dataclass
class Jump:
    seconds: float  # positive: the wall clock moved forward


class JumpDetector:
    """Feed `check()` every tick; it reports when wall time moved against monotonic time."""

    def __init__(self, tolerance: float = 2.0, wall: Callable[[], float] = time.time,
                 mono: Callable[[], float] = time.monotonic) -> None:
        self.tolerance = tolerance
        self._wall, self._mono = wall, mono
        self._offset = wall() - mono()

    def check(self, wall: float | None = None, mono: float | None = None) -> Jump | None:
        offset = (self._wall() if wall is None else wall) - (self._mono() if mono is None else mono)
        delta = offset - self._offset
        self._offset = offset
        return Jump(delta) if abs(delta) > self.tolerance else None


@dataclass
class ClockWatch:
    """Once a tick: a jump of the wall clock (one `clock_jump`), and the interval during which it was
    not synchronized (`clock_unsynchronized` .. `clock_synchronized`)."""

    detector: JumpDetector = field(default_factory=JumpDetector)
    synced: Callable[[], bool] = synchronized
    wall: Callable[[], float] = time.time
    unsynced_since: float | None = None

    def check(self) -> tuple[Jump | None, list[Event]]:
        events: list[Event] = []
        jump = self.detector.check()
        if jump is not None:
            events.append(ClockJump(round(jump.seconds, 3), self.unsynced_since))
        in_sync = self.synced()
        if not in_sync and self.unsynced_since is None:
            self.unsynced_since = self.wall()
            events.append(ClockUnsynchronized(int(self.unsynced_since * 1000)))
        elif in_sync and self.unsynced_since is not None:
            events.append(ClockSynchronized(int(self.unsynced_since * 1000), int(self.wall() * 1000)))
            self.unsynced_since = None
        return jump, events
