"""One device on a bus: plan its reads, run them, decode, and keep its health.

Isolation rules (what other acquisition gateways got wrong, avoided here):
- one bad register never loses the rest: a block answering exception 2 is read point by point in
  the same poll, the unreadable point is marked unavailable, and the split is remembered;
- one dead device never slows the others: after the first timeout of a poll the rest of that
  poll is skipped, and after `offline_after` failed polls the device is only re-probed with a
  single request on a capped backoff, so it costs the shared bus one timeout per probe.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.drivers.bus import Backoff, Bus, Outcome
from agent.drivers.decode import BlockDecoder, Decoded, block_decoder, decode_point, derive, words_of
from agent.drivers.health import Health, HealthTracker, proper_answer
from agent.drivers.plan import Learned, learn_from_split, plan_reads
from agent.drivers.sunspec import NotSunSpec, SunSpecMap, discover, place
from agent.errors import (
    ILLEGAL_ADDRESS,
    BusError,
    DeviceError,
    DeviceException,
    DeviceTimeout,
    FrameError,
)
from agent.types import DeviceTiming, PointSpec, Quality, Reading, ReadRequest

ISOLATED_RETRY_POLLS = 60  # a point that only fails is tried again alone every N polls


@dataclass
class PollResult:
    """What one poll produced; `transition` is set when health changed in this poll."""

    readings: list[Reading]
    skipped: bool = False  # offline and not due for a re-probe: no request was sent
    transition: Health | None = None
    error: str = ""

    @property
    def answered(self) -> bool:
        """Some request got a proper answer (values, or a refusal). Silence and malformed answers
        (decode_error with `error` saying what came back) are not: the daemon logs them as failing."""
        return any(proper_answer(r.quality, r.raw) for r in self.readings)


@dataclass
class DeviceStats:
    polls: int = 0
    requests: int = 0
    timeouts: int = 0
    exceptions: int = 0
    bus_errors: int = 0
    skipped: int = 0
    last_latency: float = 0.0


@dataclass
class DeviceReader:
    """Reads one device through a shared Bus."""

    device_id: str
    unit: int
    points: Mapping[str, PointSpec]
    timing: DeviceTiming
    bus: Bus
    constants: Mapping[str, float] = field(default_factory=dict)
    offline_after: int = 3
    backoff: Backoff = Backoff(first=2.0, cap=60.0)
    clock: Any = time  # anything with time() and monotonic()
    discovery: str | None = None  # "sunspec": addresses are found on the device at first contact

    def __post_init__(self) -> None:
        self.declared = dict(self.points)
        self.sunspec: SunSpecMap | None = None
        self.learned = Learned()
        self.plan: list[ReadRequest] = []
        self._decoders: dict[ReadRequest, BlockDecoder] = {}
        self._replan()
        self._health = HealthTracker(self.offline_after, self.backoff, self.clock)
        self.stats = DeviceStats()
        self._unreadable: set[str] = set()  # isolated points that failed even when read alone

    @property
    def health(self) -> Health:
        return self._health.state

    def _read_points(self) -> list[PointSpec]:
        return [p for p in self.points.values() if p.name not in self.constants and p.constant is None]

    async def poll(self) -> PollResult:
        """Read every point once (or re-probe, or skip while backing off)."""
        if not self._health.due():
            self.stats.skipped += 1
            return PollResult([], skipped=True)
        self.stats.polls += 1
        started = self.clock.monotonic()
        failure = await self._discover()
        if failure is not None:
            transition = self._update_health(failure[0])
            return PollResult(self._readings(failure[0], {}), transition=transition, error=failure[1])
        decoded, stamps, error = await self._run_plan(probe_only=self.health is Health.OFFLINE)
        self.stats.last_latency = self.clock.monotonic() - started
        transition = self._update_health(decoded)
        if self.health is Health.OFFLINE:
            return PollResult(self._readings(decoded, stamps), transition=transition, error=error)
        if transition is Health.ONLINE and len(decoded) < len(self.plan_points()):
            decoded, stamps, error = await self._run_plan(probe_only=False)  # came back: full poll now
        return PollResult(self._readings(decoded, stamps), transition=transition, error=error)

    async def _discover(self) -> tuple[dict[str, Decoded], str] | None:
        """SunSpec devices: walk the model chain once, then place the points; None when ready."""
        if self.discovery != "sunspec" or self.sunspec is not None:
            return None
        try:
            found = await discover(lambda request, timing: self._read(request), self.timing)
        except NotSunSpec as exc:
            return {n: Decoded(None, Quality.UNAVAILABLE) for n in self.declared}, str(exc)
        except (BusError, DeviceError) as exc:
            return {n: Decoded(None, Quality.TIMEOUT) for n in self.declared}, str(exc)
        self.sunspec = found
        self.points = place(self.declared, found)
        self._replan()
        return None

    def plan_points(self) -> list[str]:
        return [name for request in self.plan for name in request.points]

    async def _run_plan(self, probe_only: bool) -> tuple[dict[str, Decoded], dict[str, int], str]:
        """The whole plan in one exchange; blocks refused with exception 2 are then read point by point."""
        decoded: dict[str, Decoded] = {}
        stamps: dict[str, int] = {}
        plan = self.plan[:1] if probe_only else self._due_requests()
        if not plan:
            return derive(self.points.values(), decoded, self.constants), stamps, ""
        outcomes = await self._exchange(plan)
        last = outcomes[-1]
        abort_quality = _abort_quality(last)  # set when the device stopped answering mid-poll
        refused: list[ReadRequest] = []
        for request, outcome in zip(plan, outcomes):
            stamps.update(dict.fromkeys(request.points, int(outcome.sent_at * 1000)))
            if outcome.words is not None:
                decoded.update(self._decoders[request](outcome.words))
            elif isinstance(outcome.error, DeviceException):
                code = outcome.error.code
                if code == ILLEGAL_ADDRESS and len(request.points) > 1:
                    refused.append(request)
                else:
                    decoded.update(self._failed(request, _refusal_quality(code), code))
        if abort_quality is not None:  # the rest was not sent, and a refused block is not split now
            for request in [*refused, *plan[len(outcomes) - 1:]]:
                decoded.update(self._failed(request, abort_quality))
                stamps.update(dict.fromkeys(request.points, int(last.sent_at * 1000)))
        else:
            for request in refused:
                decoded.update(await self._split(request, stamps))
        self._mark_isolated_skipped(decoded, plan)
        return derive(self.points.values(), decoded, self.constants), stamps, _first_error(outcomes)

    def _due_requests(self) -> list[ReadRequest]:
        """Requests of isolated points that keep failing are retried only every N polls."""
        retry = self.stats.polls % ISOLATED_RETRY_POLLS == 0
        return [r for r in self.plan
                if retry or not (len(r.points) == 1 and r.points[0] in self.learned.isolated
                                 and r.points[0] in self._unreadable)]

    def _mark_isolated_skipped(self, decoded: dict[str, Decoded], plan: list[ReadRequest]) -> None:
        planned = {name for request in plan for name in request.points}
        for name in self._unreadable - planned:
            decoded[name] = Decoded(None, Quality.UNAVAILABLE, detail=ILLEGAL_ADDRESS)

    async def _read(self, request: ReadRequest) -> list[int]:
        return (await self._exchange([request]))[0].unwrap()

    async def _exchange(self, requests: list[ReadRequest]) -> list[Outcome]:
        outcomes = await self.bus.exchange(self.unit, requests, self.timing)
        stats = self.stats
        stats.requests += len(outcomes)
        for outcome in outcomes:
            if isinstance(outcome.error, DeviceException):
                stats.exceptions += 1
            elif isinstance(outcome.error, DeviceTimeout):
                stats.timeouts += 1
            elif isinstance(outcome.error, BusError):
                stats.bus_errors += 1
        return outcomes

    async def _split(self, request: ReadRequest, stamps: dict[str, int]) -> dict[str, Decoded]:
        """Exception 2 on a block: read its points one by one, keep what reads, remember the split.
        If the device stops answering meanwhile, the rest is a timeout and nothing is learned."""
        singles = [plan_reads([self.points[name]], self.timing)[0] for name in request.points]
        outcomes = await self._exchange(singles)
        decoded: dict[str, Decoded] = {}
        failed: set[str] = set()
        for single, outcome in zip(singles, outcomes):
            name = single.points[0]
            stamps[name] = int(outcome.sent_at * 1000)
            if outcome.words is not None:
                decoded[name] = decode_point(self.points[name], words_of(self.points[name], single, outcome.words))
            elif isinstance(outcome.error, DeviceException):
                decoded[name] = Decoded(None, _refusal_quality(outcome.error.code), outcome.error.code)
                failed.add(name)
        if outcomes[-1].ends_exchange:
            decoded.update({n: Decoded(None, Quality.TIMEOUT) for n in request.points if n not in decoded})
            return decoded
        self.learned = learn_from_split(self.learned, request, dict(self.points), failed)
        self._unreadable |= failed
        self._replan()
        return decoded

    def _failed(self, request: ReadRequest, quality: Quality, detail: int = 0) -> dict[str, Decoded]:
        return {name: Decoded(None, quality, detail) for name in request.points}

    def _replan(self) -> None:
        """Plan the reads again (after discovery or a split) and compile a decoder per request."""
        self.plan = plan_reads(self._read_points(), self.timing, self.learned)
        self._decoders = {request: block_decoder(request, tuple(self.points[name] for name in request.points))
                          for request in self.plan}

    def _update_health(self, decoded: Mapping[str, Decoded]) -> Health | None:
        return self._health.update(any(proper_answer(d.quality, d.raw) for d in decoded.values()))

    def _readings(self, decoded: Mapping[str, Decoded], stamps: Mapping[str, int]) -> list[Reading]:
        fallback = int(self.clock.time() * 1000)
        return [Reading(self.device_id, name, stamps.get(name, fallback), d.value, d.quality, d.detail, d.raw)
                for name, d in decoded.items()
                if name in self.points and not self.points[name].hidden]


def _abort_quality(last: Outcome) -> Quality | None:
    """How the points left unread by an exchange that ended early are marked; None if it did not."""
    if not last.ends_exchange:
        return None
    return Quality.DECODE_ERROR if isinstance(last.error, FrameError) else Quality.TIMEOUT


def _refusal_quality(code: int) -> Quality:
    """Exception 2 means the register is not there (unavailable); any other code is reported as is."""
    return Quality.UNAVAILABLE if code == ILLEGAL_ADDRESS else Quality.EXCEPTION


def _first_error(outcomes: list[Outcome]) -> str:
    return next((str(o.error) for o in outcomes if o.error is not None), "")
