"""One DL/T 645 or CJ/T 188 meter on a bus: plan its DI reads, run them, decode, keep its health.

The same contract as the Modbus DeviceReader, so the daemon, batches, buffer and HIL see no
difference: one exchange per poll handed to the shared Bus, readings with the same qualities, the
rest of a poll skipped after the first timeout, offline after 3 failed polls with backoff. A
meter's abnormal reply is its answer: "no requested data" (02H) makes the point `unavailable`, any
other error byte `exception` with the byte as detail. A block DI refused with "no requested data"
is read DI by DI in the same poll and never asked for again (learned, like a Modbus split); a
single DI refused so is asked again only every 60 polls.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.drivers.bus import Backoff, Bus, Outcome
from agent.drivers.decode import Decoded, derive
from agent.drivers.device import DeviceStats, PollResult
from agent.drivers.health import Health, HealthTracker, proper_answer
from agent.errors import BusError, DeviceTimeout, FrameError
from agent.meters import dlt645
from agent.meters.messages import Answer, MeterTarget
from agent.meters.plan import Block, Planned, decode_answer, plan_requests
from agent.types import DeviceTiming, PointSpec, Quality, Reading

RETRY_MISSING = 60  # polls between two requests for a DI the meter said it does not have
_NOT_READ = Decoded(None, Quality.TIMEOUT)


@dataclass
class MeterReader:
    """Reads one meter through a shared Bus."""

    device_id: str
    target: MeterTarget
    points: Mapping[str, PointSpec]
    timing: DeviceTiming
    bus: Bus
    blocks: tuple[Block, ...] = ()
    constants: Mapping[str, float] = field(default_factory=dict)
    offline_after: int = 3
    backoff: Backoff = Backoff(first=2.0, cap=60.0)
    clock: Any = time

    def __post_init__(self) -> None:
        self.refused: frozenset[int] = frozenset()  # block DIs the meter does not answer
        self.missing: set[str] = set()  # points whose DI the meter answered "no requested data"
        self.plan: list[Planned] = []
        self._replan()
        self._health = HealthTracker(self.offline_after, self.backoff, self.clock)
        self.stats = DeviceStats()

    @property
    def health(self) -> Health:
        return self._health.state

    def plan_points(self) -> list[str]:
        return [name for planned in self.plan for name in planned.request.points]

    async def poll(self) -> PollResult:
        """Read every point once (or re-probe with one request, or skip while backing off)."""
        if not self._health.due():
            self.stats.skipped += 1
            return PollResult([], skipped=True)
        self.stats.polls += 1
        started = self.clock.monotonic()
        offline = self.health is Health.OFFLINE
        decoded, stamps, error = await self._run(self.plan[:1] if offline else self._due())
        transition = self._health.update(any(proper_answer(d.quality, d.raw) for d in decoded.values()))
        if transition is Health.ONLINE and len(self.plan) > 1:
            decoded, stamps, error = await self._run(self._due())  # came back: a full poll now
        self.stats.last_latency = self.clock.monotonic() - started
        if self.health is Health.ONLINE and any(proper_answer(d.quality, d.raw) for d in decoded.values()):
            for name in self.missing - set(decoded):  # not asked this poll: still missing
                decoded[name] = Decoded(None, Quality.UNAVAILABLE, dlt645.NO_DATA)
        return PollResult(self._readings(decoded, stamps), transition=transition, error=error)

    async def _run(self, plan: list[Planned]) -> tuple[dict[str, Decoded], dict[str, int], str]:
        decoded: dict[str, Decoded] = {}
        stamps: dict[str, int] = {}
        if not plan:
            return derive(self.points.values(), decoded, self.constants), stamps, ""
        outcomes = await self._exchange(plan)
        refused: list[Planned] = []
        for planned, outcome in zip(plan, outcomes):
            stamps.update(dict.fromkeys(planned.request.points, int(outcome.sent_at * 1000)))
            reply = outcome.reply
            if reply is None:
                decoded.update(_all(planned, _lost_quality(outcome)))
            elif reply.error is None:
                decoded.update(decode_answer(planned, reply.value, self.points))
            elif reply.error & dlt645.NO_DATA and _is_block(planned.request.di):
                refused.append(planned)
            else:
                decoded.update(_refusal(planned, reply))
        for planned in plan[len(outcomes):]:  # not sent: the exchange ended on a timeout or bad frame
            decoded.update(_all(planned, _lost_quality(outcomes[-1])))
            stamps.update(dict.fromkeys(planned.request.points, int(outcomes[-1].sent_at * 1000)))
        if refused and not outcomes[-1].ends_exchange:
            decoded.update(await self._split(refused, stamps))
        else:  # the meter stopped answering: a refused block is not split now
            for planned in refused:
                decoded.update(_all(planned, _lost_quality(outcomes[-1])))
        self._note_missing(plan, decoded)
        return derive(self.points.values(), decoded, self.constants), stamps, _first_error(outcomes)

    def _due(self) -> list[Planned]:
        """DIs the meter said it lacks are asked again only every RETRY_MISSING polls; in between
        their points are reported unavailable without a request (a 2400-baud line has no time to waste)."""
        if self.stats.polls % RETRY_MISSING == 0:
            return self.plan
        return [p for p in self.plan if not set(p.request.points) <= self.missing]

    def _note_missing(self, plan: list[Planned], decoded: dict[str, Decoded]) -> None:
        for planned in plan:
            names = planned.request.points
            if all(decoded.get(n, _NOT_READ).quality is Quality.UNAVAILABLE for n in names):
                self.missing |= set(names)
            elif any(n in decoded and decoded[n].quality is Quality.OK for n in names):
                self.missing -= set(names)

    async def _split(self, refused: list[Planned], stamps: dict[str, int]) -> dict[str, Decoded]:
        """Blocks answered "no requested data": learn it, and read their points DI by DI now."""
        self.refused |= {planned.request.di for planned in refused if _is_block(planned.request.di)}
        names = {name for planned in refused for name in planned.request.points}
        self._replan()
        singles = [p for p in self.plan if set(p.request.points) & names]
        return (await self._run(singles))[0]

    async def _exchange(self, plan: list[Planned]) -> list[Outcome]:
        outcomes = await self.bus.exchange(self.target, [p.request for p in plan], self.timing)
        self.stats.requests += len(outcomes)
        for outcome in outcomes:
            if outcome.reply is not None and outcome.reply.error is not None:
                self.stats.exceptions += 1
            elif isinstance(outcome.error, DeviceTimeout):
                self.stats.timeouts += 1
            elif isinstance(outcome.error, BusError):
                self.stats.bus_errors += 1
        return outcomes

    def _replan(self) -> None:
        readable = [p for p in self.points.values() if p.name not in self.constants and p.constant is None]
        self.plan = plan_requests(readable, self.blocks, self.refused)

    def _readings(self, decoded: Mapping[str, Decoded], stamps: Mapping[str, int]) -> list[Reading]:
        fallback = int(self.clock.time() * 1000)
        return [Reading(self.device_id, name, stamps.get(name, fallback), d.value, d.quality, d.detail, d.raw)
                for name, d in decoded.items()
                if name in self.points and not self.points[name].hidden]


def _is_block(di: int) -> bool:
    return any((di >> shift) & 0xFF == 0xFF for shift in (0, 8, 16, 24))


def _all(planned: Planned, quality: Quality, detail: int = 0) -> dict[str, Decoded]:
    return {name: Decoded(None, quality, detail) for name in planned.request.points}


def _refusal(planned: Planned, reply: Answer) -> dict[str, Decoded]:
    """The meter's error byte: "no requested data" is a point it does not have; the rest as is."""
    code = reply.error or 0
    quality = Quality.UNAVAILABLE if code & dlt645.NO_DATA else Quality.EXCEPTION
    return _all(planned, quality, code)


def _lost_quality(outcome: Outcome) -> Quality:
    return Quality.DECODE_ERROR if isinstance(outcome.error, FrameError) else Quality.TIMEOUT


def _first_error(outcomes: list[Outcome]) -> str:
    for outcome in outcomes:
        if outcome.error is not None:
            return str(outcome.error)
        if outcome.reply is not None and outcome.reply.error is not None:
            return f"meter refused: {dlt645.error_text(outcome.reply.error)}"
    return ""
