"""Device health, shared by every kind of device reader (Modbus, DL/T 645, CJ/T 188).

A device that fails `offline_after` polls in a row (no answer at all: timeouts, a dead link) is
offline, and is then only re-probed on a capped backoff, so a dead meter costs its shared bus one
timeout per probe instead of one per point per poll. Any proper answer (even a refusal) brings it
back; a malformed one does not.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any

from agent.drivers.bus import Backoff
from agent.types import Quality


def proper_answer(quality: Quality, raw: tuple[int, ...]) -> bool:
    """Whether a point shows that its device answered: a value, a refusal, or words that do not
    decode (they came in a well-formed answer, so they carry raw). Silence does not, and neither
    does a malformed answer (decode_error without raw: wrong unit, bad CRC, truncated ...):
    a device that only sends those (a wrong baud rate, another unit id) is failing, not online."""
    return quality is not Quality.TIMEOUT and (quality is not Quality.DECODE_ERROR or bool(raw))


class Health(enum.Enum):
    ONLINE = "online"
    OFFLINE = "offline"


@dataclass
class HealthTracker:
    offline_after: int = 3
    backoff: Backoff = Backoff(first=2.0, cap=60.0)
    clock: Any = time  # anything with monotonic()
    state: Health = Health.ONLINE
    _failed_polls: int = field(default=0, init=False)
    _offline_probes: int = field(default=0, init=False)
    _next_probe: float = field(default=0.0, init=False)

    def due(self) -> bool:
        """False while offline and backing off: the poll should send nothing."""
        return self.state is Health.ONLINE or self.clock.monotonic() >= self._next_probe

    def update(self, answered: bool) -> Health | None:
        """Record one poll's outcome; returns the new health when it changed."""
        if answered:
            self._failed_polls = 0
            self._offline_probes = 0
            if self.state is Health.OFFLINE:
                self.state = Health.ONLINE
                return Health.ONLINE
            return None
        self._failed_polls += 1
        if self.state is Health.OFFLINE:
            self._offline_probes += 1
            self._next_probe = self.clock.monotonic() + self.backoff.delay(self._offline_probes)
            return None
        if self._failed_polls >= self.offline_after:
            self.state = Health.OFFLINE
            self._offline_probes = 1
            self._next_probe = self.clock.monotonic() + self.backoff.delay(1)
            return Health.OFFLINE
        return None
