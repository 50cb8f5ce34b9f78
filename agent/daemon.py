"""`edge-agent run`: the whole pipeline in one asyncio process, with uvicorn's shape —
startup, a tick loop, graceful shutdown.

    buses -> scheduled polls (apscheduler) -> readings -> Assembler -> sealed batches -> Spool/Store
          -> Publisher (MQTT)

Threads (docs/design.md): every scheduled job is a coroutine, so polls, seals, the tick, reloads
and the publisher's pump all run on the event loop's thread, which alone touches the assembler,
spool, store and publisher state (checked in asyncio debug mode: agent/threads.py). Each bus has
one thread for its blocking transport and gets a whole poll per hand-off; paho's network thread
only marshals callbacks onto the loop; `asyncio.to_thread` loads a new config on SIGHUP and
closes paho clients, touching no pipeline state.

Startup opens the buffer (recovering it if needed), builds the devices from the config, starts
the publisher and the scheduler, and tells systemd READY=1. The tick loop (1 s) pings the
watchdog, watches the clock, drives the buffer's timers, keeps a draft of the open batch on disk
during outages and publishes metrics. SIGTERM/SIGINT stop polling, seal the open batch, commit
everything unacknowledged, publish status offline and exit 0 within a few seconds; SIGHUP
reloads the config, keeping the old one if the new one is invalid.
"""

from __future__ import annotations

import asyncio
import faulthandler
import fnmatch
import math
import os
import resource
import signal
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import UTC
from pathlib import Path
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from agent import __version__, log, threads
from agent.assembly import Assembler
from agent.buffer import Spool, Store
from agent.clock import JumpDetector, synchronized
from agent.codec import WireSchema
from agent.config import LoadedConfig, load_config
from agent.drivers.bus import Bus
from agent.drivers.device import Health
from agent.drivers.readers import Reader, build_reader
from agent.drivers.urls import parse_bus_url
from agent.errors import ConfigError
from agent.publisher import BrokerSettings, Publisher
from agent.schedule import Missed, TickTracker, aligned_start
from agent.sdnotify import Notifier
from agent.types import PointSpec
from agent.wire import build_schema

TICK = 1.0
METRICS_EVERY = 60.0
FAILURE_SUMMARY_EVERY = 600.0
HANG_SECONDS = 5.0  # EDGE_AGENT_FAULTS=hang-on-usr1: SIGUSR1 blocks the event loop this long
STOP_BUDGET = 4.0  # seconds for the whole shutdown; systemd's TimeoutStopSec is larger
LAG_WARN = 0.5  # seconds the event loop may wake late before it is logged
OVERRUN = "previous poll still running"
STALLED = "agent stalled: not started on time"


@dataclass
class DeviceState:
    """One scheduled reader: a device, or the group of its points that has its own interval."""

    reader: Reader
    interval: float
    ticks: TickTracker = field(init=False)
    overruns: int = 0  # runs the scheduler skipped because the previous one was still running
    stalls: int = 0  # runs that silently never happened (the agent could not start them on time)
    failing_since: float | None = None
    last_summary: float = 0.0
    failures_since_summary: int = 0

    def __post_init__(self) -> None:
        self.ticks = TickTracker(self.interval)


@dataclass
class Pipeline:
    """What a config builds: replaced as a whole on reload."""

    loaded: LoadedConfig
    schema: WireSchema
    buses: dict[str, Bus]
    devices: dict[str, DeviceState] = field(default_factory=dict)


def split_by_interval(points: dict[str, PointSpec], interval: float,
                      intervals: dict[str, float]) -> dict[float, dict[str, PointSpec]]:
    """Points per poll interval (the first matching pattern wins, the rest use `interval`). A point
    that others need (a CT ratio, a scale factor) is also read, hidden, with each group that needs it."""
    chosen = {name: next((i for pattern, i in intervals.items() if fnmatch.fnmatch(name, pattern)), interval)
              for name in points}
    groups: dict[float, dict[str, PointSpec]] = {}
    for name, spec in points.items():
        groups.setdefault(chosen[name], {})[name] = spec
    for group in groups.values():
        for spec in list(group.values()):
            for ref in spec.refs:
                group.setdefault(ref, replace(points[ref], hidden=True))
    return dict(sorted(groups.items()))


class Agent:
    def __init__(self, config_path: str | Path) -> None:
        self.config_path = Path(config_path)
        self.log = log.get("agent")
        self.notifier = Notifier()
        self.stop_requested = asyncio.Event()
        self.scheduler: AsyncIOScheduler | None = None
        self.pipeline: Pipeline | None = None
        self.publisher: Publisher | None = None
        self.store: Store | None = None
        self.spool: Spool | None = None
        self.assembler: Assembler | None = None
        self.clock = JumpDetector()
        self._reload_task: asyncio.Task[None] | None = None
        self._reload_again = False  # a SIGHUP came while a reload ran: run once more after it
        self._on_disk = True  # the buffer state the retained status last said
        self._skipped: dict[tuple[str, str], Missed] = {}  # (device, reason) -> polls not run, reported each tick
        self._unsynced_since: float | None = None
        self._last_metrics = 0.0
        self._loop_lag_max = 0.0  # seconds, since the last metrics
        self._publisher_task: asyncio.Task[None] | None = None
        self._prometheus: asyncio.Server | None = None

    # ------------------------------------------------------------------ lifecycle

    async def serve(self) -> int:
        loaded = load_config(self.config_path)
        threads.set_checking(threads.checking() or asyncio.get_running_loop().get_debug())
        self._install_signals()
        buffer = loaded.config.buffer
        self.store = Store(buffer.path, buffer.max_bytes, buffer.min_free_bytes, buffer.memory_bytes)
        self.spool = Spool(self.store, buffer.mode, buffer.spill_after, buffer.outage_commit)
        self.pipeline = self._build(loaded)
        self.assembler = Assembler(loaded.config.gateway.id, self.pipeline.schema, self.store,
                                   self.store.last_before_start)
        self._start_publisher(loaded)
        self._report_notices()
        self._start_scheduler()
        await self._start_prometheus(loaded)
        self.log.info("started", version=__version__, devices=len(self.pipeline.devices),
                      buffer=str(self.store.directory), on_disk=self.store.on_disk, backlog=self.store.backlog,
                      boot=self.store.boot_count)
        self.notifier.ready(self._status_line())
        try:
            await self._tick_loop()
        finally:
            await self._shutdown()
        return 0

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal)
        loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal)
        loop.add_signal_handler(signal.SIGUSR2, self._dump_state)
        if "hang-on-usr1" in os.environ.get("EDGE_AGENT_FAULTS", ""):  # fault injection for tests and HIL
            loop.add_signal_handler(signal.SIGUSR1, lambda: time.sleep(HANG_SECONDS))

    def _dump_state(self) -> None:
        """`kill -USR2 PID`: every thread's and every task's stack to stderr (journald), for a stuck agent."""
        faulthandler.dump_traceback(all_threads=True)
        for task in asyncio.all_tasks():
            print(f"--- task {task.get_name()}", file=sys.stderr)
            task.print_stack(file=sys.stderr)

    def _on_stop_signal(self) -> None:
        if self.stop_requested.is_set():
            os._exit(1)  # a second signal while stopping: the operator wants out now
        self.stop_requested.set()

    def _on_reload_signal(self) -> None:
        """SIGHUP: one reload at a time; signals during a reload make one more run after it."""
        if self._reload_task is not None and not self._reload_task.done():
            self._reload_again = True
            return
        self._reload_again = False
        self._reload_task = asyncio.create_task(self._reloads(), name="reload")

    async def _reloads(self) -> None:
        while True:
            await self.reload()
            if not self._reload_again or self.stop_requested.is_set():
                return
            self._reload_again = False

    async def _tick_loop(self) -> None:
        interval = min(TICK, self.notifier.watchdog_interval or TICK)
        while not self.stop_requested.is_set():
            self.notifier.watchdog()  # from the loop itself: a hung loop stops the pings
            self._tick()
            due = time.monotonic() + interval
            try:
                await asyncio.wait_for(self.stop_requested.wait(), timeout=interval)
            except TimeoutError:
                self._note_lag(time.monotonic() - due)

    def _note_lag(self, lag: float) -> None:
        """The loop woke `lag` s after it asked to: something blocked it (a slow disk's fsync, CPU
        starvation). Polls due meanwhile ran late or not at all, so it is said, with a suspect."""
        self._loop_lag_max = max(self._loop_lag_max, lag)
        if lag >= LAG_WARN and self.spool is not None:
            self.log.warning("event loop blocked", seconds=round(lag, 3),
                             slowest_buffer_commit_s=round(self.spool.slowest_commit, 3))

    def _tick(self) -> None:
        assert self.spool is not None
        self._watch_clock()
        self._report_skipped()
        self._commit_draft()
        self.spool.tick()
        self._report_notices()
        now = time.monotonic()
        if now - self._last_metrics >= METRICS_EVERY:
            self._last_metrics = now
            self._publish_metrics()

    async def _shutdown(self) -> None:
        self.notifier.stopping()
        deadline = time.monotonic() + STOP_BUDGET
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        if self._reload_task is not None:
            self._reload_task.cancel()
        await asyncio.sleep(0)  # let polls that are mid-flight finish their current step
        self._seal()
        assert self.spool is not None and self.store is not None
        self.spool.close()
        if self.publisher is not None:
            await self.publisher.stop(timeout=max(0.1, deadline - time.monotonic() - 0.5))
        if self._publisher_task is not None:
            self._publisher_task.cancel()
        if self._prometheus is not None:
            self._prometheus.close()
        if self.pipeline is not None:
            await self._close_buses(self.pipeline)
        self.store.close()
        self.log.info("stopped", backlog_batches=self.store.backlog,
                      took_s=round(time.monotonic() - deadline + STOP_BUDGET, 3))

    # ------------------------------------------------------------------ building

    def _build(self, loaded: LoadedConfig) -> Pipeline:
        config = loaded.config
        buses = {bus.name: Bus(bus.name, parse_bus_url(bus.url)) for bus in config.buses}
        enabled = [d for d in loaded.devices if d.config.enabled]
        schema = build_schema(config.gateway.id, enabled)
        pipeline = Pipeline(loaded, schema, buses)
        for setup in enabled:
            device = setup.config
            groups = split_by_interval(setup.profile.points, device.interval, dict(device.intervals))
            for interval, points in groups.items():
                reader = build_reader(device.id, setup.profile, buses[device.bus], setup.timing, unit=device.unit,
                                      address=device.address, points=points, constants=device.constants)
                key = device.id if interval == device.interval else f"{device.id}@{interval:g}s"
                pipeline.devices[key] = DeviceState(reader, interval)
        return pipeline

    def _start_publisher(self, loaded: LoadedConfig) -> None:
        config = loaded.config
        if config.mqtt is None or self.spool is None or self.pipeline is None:
            return
        settings = BrokerSettings.from_config(config.mqtt, config.gateway.id, config.gateway.site)
        self.publisher = Publisher(settings, self.spool, self._status, self.pipeline.schema.to_json())
        self._publisher_task = asyncio.create_task(self.publisher.run(), name="publisher")

    async def _start_prometheus(self, loaded: LoadedConfig) -> None:
        listen = loaded.config.prometheus
        if listen:
            from agent.prometheus import serve

            host, _, port = listen.rpartition(":")
            self._prometheus = await serve(host.strip("[]"), int(port), self.metrics)

    def _start_scheduler(self) -> None:
        assert self.pipeline is not None
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.scheduler.add_listener(self._on_overrun, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        self._schedule(self.pipeline)
        config = self.pipeline.loaded.config
        window = config.mqtt.batch_interval if config.mqtt else 10.0
        self.scheduler.add_job(self._seal_job, IntervalTrigger(seconds=window, start_date=aligned_start(window)),
                               id="seal", max_instances=1, coalesce=True, misfire_grace_time=max(1, math.ceil(window)))
        self.scheduler.start()

    def _schedule(self, pipeline: Pipeline) -> None:
        assert self.scheduler is not None
        for key, state in pipeline.devices.items():
            interval = state.interval
            self.scheduler.add_job(self._poll, IntervalTrigger(seconds=interval, start_date=aligned_start(interval)),
                                   args=[state], id=f"poll:{key}", max_instances=1, coalesce=True,
                                   misfire_grace_time=max(1, math.ceil(interval)))

    def _on_overrun(self, event: Any) -> None:
        """A poll still running when its next turn came: counted and coalesced, never queued, and
        reported (`polls_skipped` event with the scheduled times) so the platform knows why a
        reading is missing."""
        if not (self.pipeline and event.job_id.startswith("poll:")):
            return
        state = self.pipeline.devices.get(event.job_id[5:])
        if state is None:
            return
        state.overruns += 1
        times = getattr(event, "scheduled_run_times", None) or [getattr(event, "scheduled_run_time", None)]
        stamps = [round(t.timestamp() * 1000) for t in times if t is not None]
        for stamp in stamps:
            state.ticks.note_reported(stamp)
        self._note_skipped(state.reader.device_id, OVERRUN, Missed(stamps, len(stamps)))

    def _note_stall(self, state: DeviceState) -> None:
        """Polls the scheduler silently coalesced away because the agent could not start them on time
        (a stalled event loop, a suspended process): reported like any other skipped poll."""
        missed = state.ticks.run(time.time())
        if missed.count:
            state.stalls += missed.count
            self.log.warning("polls not started on time", device=state.reader.device_id, missed=missed.count,
                             first_ms=missed.scheduled_ms[:1])
            self._note_skipped(state.reader.device_id, STALLED, missed)

    def _note_skipped(self, device: str, reason: str, missed: Missed) -> None:
        key = (device, reason)
        self._skipped[key] = self._skipped[key] + missed if key in self._skipped else missed

    def _report_skipped(self) -> None:
        for (device, reason), missed in self._skipped.items():
            self._event("polls_skipped", device=device, scheduled_ms=missed.scheduled_ms, count=missed.count,
                        reason=reason)
        self._skipped.clear()

    # ------------------------------------------------------------------ the data path

    async def _poll(self, state: DeviceState) -> None:
        assert self.assembler is not None
        self._note_stall(state)
        try:
            result = await state.reader.poll()
        except asyncio.CancelledError:
            return  # shutting down: the loop is cancelling what is left; nothing to report
        except Exception as exc:  # noqa: BLE001 - one device's bug must not stop its schedule
            self.log.error("poll crashed", device=state.reader.device_id, error=repr(exc))
            return
        self.assembler.add(result.readings)
        self._note_health(state, result.transition, result.error, result.answered)

    def _note_health(self, state: DeviceState, transition: Health | None, error: str, answered: bool) -> None:
        device = state.reader.device_id
        if transition is Health.OFFLINE:
            self.log.warning("device offline", device=device, error=error)
            self._event("device_offline", device=device, error=error)
        elif transition is Health.ONLINE:
            self.log.info("device online", device=device)
            self._event("device_online", device=device)
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

    async def _seal_job(self) -> None:
        """A coroutine, so apscheduler runs it on the event loop (a plain function would run on a
        worker thread, racing the polls that add to the open batch)."""
        self._seal()

    def _seal(self) -> None:
        """Close the open batch and hand it to the buffer."""
        assert self.assembler is not None and self.spool is not None
        sealed = self.assembler.seal()
        if sealed is None:
            return
        self.spool.add(sealed)
        if self.publisher is not None:
            self.publisher.nudge()

    def _commit_draft(self) -> None:
        """During an outage, the open batch goes to disk every tick as a draft under its final key,
        so a power cut loses at most one tick of readings, not a whole batch window."""
        assert self.spool is not None and self.assembler is not None
        if self.spool.connected:
            return
        draft = self.assembler.draft()
        if draft is not None:
            self.spool.draft(draft)

    def _report_notices(self) -> None:
        """What the buffer store had to do (fall back to memory, come back, recover a damaged file)."""
        assert self.store is not None
        for notice in self.store.take_notices():
            self._event(notice.kind, **notice.details)
        if self.store.on_disk != self._on_disk:
            self._on_disk = self.store.on_disk
            self.notifier.status(self._status_line())
            if self.publisher is not None:
                self.publisher.refresh_status()

    # ------------------------------------------------------------------ reload

    async def reload(self) -> None:
        """SIGHUP: apply a valid new config; keep running on the old one if it is not."""
        try:
            loaded = await asyncio.to_thread(load_config, self.config_path)
        except ConfigError as exc:
            problems = [str(p) for p in exc.problems]
            self.log.error("config reload failed; keeping the running config", problems=problems)
            self._event("config_reload_failed", problems=problems[:20])
            return
        except Exception as exc:  # noqa: BLE001 - a reload must never leave an unretrieved task exception
            self.log.error("config reload failed; keeping the running config", error=repr(exc))
            self._event("config_reload_failed", problems=[f"{type(exc).__name__}: {exc}"])
            return
        assert self.pipeline is not None and self.scheduler is not None and self.assembler is not None
        old = self.pipeline
        for key in old.devices:
            self.scheduler.remove_job(f"poll:{key}")
        self.pipeline = self._build(loaded)
        sealed = self.assembler.set_schema(self.pipeline.schema)  # the open batch belongs to the old schema
        if sealed is not None and self.spool is not None:
            self.spool.add(sealed)
        await self._close_buses(old)
        self._schedule(self.pipeline)
        if self.publisher is not None:
            self.publisher.set_schema(self.pipeline.schema.to_json())
        restart_needed = loaded.config.buffer != old.loaded.config.buffer or loaded.config.mqtt != old.loaded.config.mqtt
        self.log.info("config reloaded", devices=len(self.pipeline.devices), restart_needed_for=(
            "buffer/mqtt changes" if restart_needed else None))
        self._event("config_reloaded", config_hash=loaded.digest[:16], devices=len(self.pipeline.devices),
                    restart_needed=restart_needed)

    async def _close_buses(self, pipeline: Pipeline) -> None:
        for bus in pipeline.buses.values():
            await bus.close()

    # ------------------------------------------------------------------ clock, metrics, events

    def _watch_clock(self) -> None:
        jump = self.clock.check()
        if jump is not None:
            self.log.warning("clock jump", seconds=round(jump.seconds, 3))
            self._event("clock_jump", seconds=round(jump.seconds, 3), unsynchronized_since=self._unsynced_since)
            if self.scheduler is not None and self.pipeline is not None:
                self._realign()
        in_sync = synchronized()
        if not in_sync and self._unsynced_since is None:
            self._unsynced_since = time.time()
            self._event("clock_unsynchronized", since_ms=int(self._unsynced_since * 1000))
        elif in_sync and self._unsynced_since is not None:
            self._event("clock_synchronized", unsynchronized_from_ms=int(self._unsynced_since * 1000),
                        until_ms=int(time.time() * 1000))
            self._unsynced_since = None

    def _realign(self) -> None:
        """After a jump the interval triggers' next run times are wrong (a backward jump would stall
        them): reschedule every job from now."""
        assert self.scheduler is not None and self.pipeline is not None
        for state in self.pipeline.devices.values():
            state.ticks.restart()
        for job in self.scheduler.get_jobs():
            trigger = job.trigger
            if isinstance(trigger, IntervalTrigger):
                seconds = trigger.interval.total_seconds()
                job.reschedule(IntervalTrigger(seconds=seconds, start_date=aligned_start(seconds)))

    def _status(self) -> dict[str, Any]:
        assert self.pipeline is not None
        assert self.store is not None
        unavailable = self.store.unavailable
        return {"version": __version__, "config_hash": self.pipeline.loaded.digest[:16],
                "schema_id": self.pipeline.schema.id,
                "devices": sorted({s.reader.device_id for s in self.pipeline.devices.values()}),
                "buffer": "disk" if unavailable is None else f"memory: {unavailable[0]}"}

    def _status_line(self) -> str:
        assert self.pipeline is not None and self.store is not None
        online = sum(s.reader.health is Health.ONLINE for s in self.pipeline.devices.values())
        where = "" if self.store.on_disk else " (in memory: buffer disk unavailable)"
        return f"{online}/{len(self.pipeline.devices)} devices online, backlog {self.store.backlog} batches{where}"

    def metrics(self) -> dict[str, Any]:
        assert self.pipeline is not None and self.store is not None and self.spool is not None
        stats = self.store.stats()
        devices = {}
        for device_id, state in self.pipeline.devices.items():
            s = state.reader.stats
            devices[device_id] = {"health": state.reader.health.value, "polls": s.polls, "requests": s.requests,
                                  "timeouts": s.timeouts, "exceptions": s.exceptions, "bus_errors": s.bus_errors,
                                  "skipped": s.skipped, "overruns": state.overruns, "stalls": state.stalls,
                                  "latency_ms": round(s.last_latency * 1000, 1)}
        publisher = self.publisher.stats.__dict__ if self.publisher else None
        return {"ts": int(time.time() * 1000), "devices": devices,
                "buffer": {"batches": stats.batches, "bytes": stats.bytes, "readings": stats.readings,
                           "oldest_ms": stats.oldest_ts, "dropped_total": stats.dropped_total,
                           "slowest_commit_ms": round(self.spool.slowest_commit * 1000, 1),
                           "in_memory": self.spool.in_memory, "on_disk": self.store.on_disk,
                           "unavailable_reason": self.store.unavailable[0] if self.store.unavailable else None},
                "publisher": publisher,
                "loop_lag_max_ms": round(self._loop_lag_max * 1000, 1),
                "rss_kb": _rss_kb()}

    def _publish_metrics(self) -> None:
        self.notifier.status(self._status_line())
        if self.publisher is not None:
            self.publisher.publish_json("metrics", self.metrics())
        self._loop_lag_max = 0.0

    def _event(self, kind: str, **details: Any) -> None:
        self.log.info("event", kind=kind, **details)
        if self.publisher is not None:
            self.publisher.event(kind, **details)


def run(config_path: str) -> int:
    log.configure()
    return asyncio.run(Agent(config_path).serve())


def _rss_kb() -> int:
    """Resident memory now (VmRSS). ru_maxrss is a peak, and after fork+exec it can be the
    parent's, which is not what a gauge of the agent's memory should show."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
