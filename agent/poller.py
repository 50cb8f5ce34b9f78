"""The poller: every device read on its interval, aligned to wall-clock multiples, and an account of
every scheduled poll that did not run. apscheduler 3 lives behind this one file.

Every job is a coroutine, so apscheduler runs it on the event loop (a plain function would go to a
worker thread). There is one job per poll interval, not per device: it starts the poll of every
device due at that tick as a task of its own (a scheduler run costs more than a poll's own work on
the loop; with 100 devices at 1 s it ran 100 times a second). A poll still running when its next
turn comes is skipped, never queued (`previous poll still running`); a poll the agent could not
start on time (a stalled loop, a suspended machine) is found by `TickTracker` or reported by the
scheduler (`agent stalled: not started on time`); both become `polls_skipped` events once per tick.
A device's health changes are events; its failures are logged in full the first time, then
summarised every 10 minutes.

Clock leaps: `AlignedTrigger` never enumerates the run times a leap skipped over (apscheduler's
interval trigger walks every one of them: a 30-day leap at 1 s intervals was 2.6 million), and a
gap in wall time that monotonic time did not see is a leap, not a stall (the daemon reports it as
one `clock_jump` and realigns).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger

from agent import log
from agent.drivers.health import Health
from agent.events import DeviceOffline, DeviceOnline, Event, PollsSkipped
from agent.pipeline import DeviceState
from agent.schedule import Missed, tick_index, tick_ms
from agent.threads import confine, confined
from agent.types import Reading

FAILURE_SUMMARY_EVERY = 600.0
OVERRUN = "previous poll still running"
STALLED = "agent stalled: not started on time"


class AlignedTrigger(BaseTrigger):
    """Fires at wall-clock multiples of `interval` (plus `offset`), or at once the first time if
    `immediate` (a device's first reading as soon as the agent is up, then aligned). After a stall
    or a clock leap it goes straight to the latest multiple instead of walking every one it skipped
    (the skipped ones are the TickTracker's to count)."""

    __slots__ = ("immediate", "interval", "offset")

    def __init__(self, interval: float, immediate: bool = False, offset: float = 0.0) -> None:
        self.interval, self.immediate, self.offset = interval, immediate, offset

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime:
        t, i = now.timestamp() - self.offset, self.interval
        if previous_fire_time is None:
            if self.immediate:
                return now
            tick = math.ceil(t / i - 1e-9)
        else:
            tick = math.floor((previous_fire_time.timestamp() - self.offset) / i + 1e-9) + 1
            latest = math.floor(t / i + 1e-9)
            if tick < latest:  # far behind: one run for the latest multiple, not one per missed one
                tick = latest
        return datetime.fromtimestamp(tick * i + self.offset, UTC)


class Poller:
    def __init__(self, on_readings: Callable[[Sequence[Reading]], None], emit: Callable[[Event], None],
                 on_poll_done: Callable[[int], None] | None = None) -> None:
        """`on_poll_done(tick_ms)`: after each poll's readings are handed over (the daemon seals a
        batch as soon as every poll due in its window is in)."""
        confine(self)
        self.on_readings = on_readings
        self.emit = emit
        self.on_poll_done = on_poll_done
        self.log = log.get("poller")
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler.add_listener(self._on_not_run, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        self._devices: dict[str, DeviceState] = {}
        self._groups: dict[str, list[DeviceState]] = {}  # job id -> the devices that job starts
        self._skipped: dict[tuple[str, str], Missed] = {}  # (device, reason) -> polls not run, reported each tick
        self._running: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ jobs

    def every(self, name: str, interval: float, job: Callable[[], Awaitable[None]], offset: float = 0.0) -> None:
        """Another aligned periodic job (the batch seal's deadline): a coroutine function, run on the loop."""
        self._scheduler.add_job(job, AlignedTrigger(interval, offset=offset), id=name, max_instances=1,
                                coalesce=True, misfire_grace_time=max(1, math.ceil(interval)))

    @confined
    def schedule(self, devices: dict[str, DeviceState], immediate: bool = True) -> None:
        """Every device on its interval; with `immediate`, the first poll of each runs at once."""
        self._devices = devices
        now = time.time()
        for state in devices.values():
            state.next_tick_ms = tick_ms(tick_index(now, state.interval) + (0 if immediate else 1), state.interval)
            self._groups.setdefault(f"poll:{state.interval!r}s", []).append(state)
        for job_id, states in self._groups.items():
            interval = states[0].interval
            self._scheduler.add_job(self._start_polls, AlignedTrigger(interval, immediate), args=[states],
                                    id=job_id, max_instances=1, coalesce=True,
                                    misfire_grace_time=max(1, math.ceil(interval)))

    def window_complete(self, window_end_ms: int) -> bool:
        """Every poll due before `window_end_ms` has run to its end: the batch of that window is whole.
        Called after every poll: while any poll is in flight the answer is no at once, so the walk over
        all devices happens about once per tick, not once per poll."""
        if self._running:
            return False
        return all(s.next_tick_ms >= window_end_ms for s in self._devices.values())

    @confined
    def unschedule(self) -> None:
        for job_id in self._groups:
            self._scheduler.remove_job(job_id)
        self._groups = {}
        self._devices = {}

    def start(self) -> None:
        self._scheduler.start()

    @confined
    def realign(self) -> None:
        """After a clock jump: every job's next run from now, and a new count of ticks."""
        for state in self._devices.values():
            state.ticks.restart()
        for job in self._scheduler.get_jobs():
            if isinstance(job.trigger, AlignedTrigger):  # the seal job keeps its offset after the window
                job.reschedule(AlignedTrigger(job.trigger.interval, offset=job.trigger.offset))

    async def stop(self, timeout: float) -> None:
        """No new polls; wait (up to `timeout`) for those in flight, so their readings are sealed."""
        self._scheduler.shutdown(wait=False)
        await asyncio.sleep(0)  # poll tasks the scheduler created but that have not started register now
        if self._running:
            _, late = await asyncio.wait(set(self._running), timeout=timeout)
            for task in late:
                task.cancel()

    # ------------------------------------------------------------------ the ledger

    @confined
    def report_skipped(self) -> None:
        """Once per tick: one `polls_skipped` event per device and reason."""
        for (device, reason), missed in self._skipped.items():
            self.emit(PollsSkipped(device, missed.scheduled_ms, missed.count, reason))
        self._skipped.clear()

    def _on_not_run(self, event: JobExecutionEvent) -> None:
        """apscheduler could not start a run of a poll job within the grace time (missed): every
        device of that job missed that tick. Counted and reported, never queued."""
        times = getattr(event, "scheduled_run_times", None) or [event.scheduled_run_time]
        stamps = [round(t.timestamp() * 1000) for t in times if t is not None]
        for state in self._groups.get(event.job_id, []):
            self._note_not_run(state, stamps, overrun=event.code == EVENT_JOB_MAX_INSTANCES)

    def _note_not_run(self, state: DeviceState, stamps: list[int], overrun: bool) -> None:
        for stamp in stamps:
            state.ticks.note_reported(stamp)
        if overrun:
            state.overruns += len(stamps)
        else:
            state.stalls += len(stamps)
        self._note_skipped(state.reader.device_id, OVERRUN if overrun else STALLED, Missed(stamps, len(stamps)))

    def _note_stall(self, state: DeviceState, now: float) -> None:
        """Polls the scheduler silently coalesced away because the agent could not start them on time
        (a stalled event loop, a suspended process): reported like any other skipped poll."""
        missed = state.ticks.run(now, time.monotonic())
        if missed.count:
            state.stalls += missed.count
            self.log.warning("polls not started on time", device=state.reader.device_id, missed=missed.count,
                             first_ms=missed.scheduled_ms[:1])
            self._note_skipped(state.reader.device_id, STALLED, missed)

    def _note_skipped(self, device: str, reason: str, missed: Missed) -> None:
        key = (device, reason)
        self._skipped[key] = self._skipped[key] + missed if key in self._skipped else missed

    # ------------------------------------------------------------------ one poll

    async def _start_polls(self, states: list[DeviceState]) -> None:
        """The job of one interval: each device's poll as a task of its own, unless its previous poll
        is still running (then this tick is skipped for that device, and reported)."""
        now = time.time()
        for state in states:
            tick = tick_index(now, state.interval)
            if state.running:
                self._note_not_run(state, [tick_ms(tick, state.interval)], overrun=True)
                continue
            state.running, state.next_tick_ms = True, tick_ms(tick + 1, state.interval)
            task = asyncio.create_task(self._poll(state, now))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _poll(self, state: DeviceState, now: float) -> None:
        tick = tick_index(now, state.interval)
        try:
            self._note_stall(state, now)
            result = await state.reader.poll()
        except asyncio.CancelledError:
            return  # shutting down: what is left is cancelled; nothing to report
        except Exception as exc:  # noqa: BLE001 - one device's bug must not stop its schedule
            self.log.error("poll crashed", device=state.reader.device_id, error=repr(exc))
            return
        finally:
            state.running = False
            self._running.discard(asyncio.current_task())  # before on_poll_done asks whether any is in flight
        self.on_readings(result.readings)
        self._note_health(state, result.transition, result.error, result.answered)
        if self.on_poll_done is not None:
            self.on_poll_done(tick_ms(tick, state.interval))

    def _note_health(self, state: DeviceState, transition: Health | None, error: str, answered: bool) -> None:
        device = state.reader.device_id
        if transition is Health.OFFLINE:
            self.log.warning("device offline", device=device, error=error)
            self.emit(DeviceOffline(device, error))
        elif transition is Health.ONLINE:
            self.log.info("device online", device=device)
            self.emit(DeviceOnline(device))
        now = time.monotonic()
        if error and not answered:
            if state.failing_since is None:
                state.failing_since = state.last_summary = now
                self.log.warning("device failing", device=device, error=error)  # the first error, in full
            state.failures_since_summary += 1
            if now - state.last_summary >= FAILURE_SUMMARY_EVERY:
                self.log.warning("device still failing", device=device, failed_polls=state.failures_since_summary,
                                 since_s=round(now - state.failing_since), last_error=error)
                state.last_summary, state.failures_since_summary = now, 0
        elif answered:
            state.failing_since = None
            state.failures_since_summary = 0
