"""`edge-agent run`: the whole pipeline in one asyncio process, in uvicorn's shape — startup, a tick
loop, shutdown.

    buses -> Poller (scheduled polls) -> readings -> Assembler -> sealed batches -> Spool/Store
          -> Publisher (MQTT)

Threads (docs/design.md): every scheduled job is a coroutine, so polls, seals, the tick, reloads
and the publisher's pump all run on the event loop's thread, which alone touches the assembler,
spool, store and publisher state (checked in asyncio debug mode: agent/threads.py). Each bus has
one thread for its blocking transport and gets a whole poll per hand-off; paho's network thread
only marshals callbacks onto the loop; `asyncio.to_thread` loads a new config on SIGHUP and
closes paho clients, touching no pipeline state.

Startup opens the buffer (recovering it, or falling back to memory, if needed), builds the devices,
starts the publisher and the poller and tells systemd READY=1. The tick (1 s) pings the watchdog,
watches the clock, keeps a draft of the open batch on disk during outages, drives the buffer's
timers and reports what happened. SIGTERM/SIGINT stop polling, wait for polls in flight, seal,
commit everything unacknowledged, publish status offline and exit 0 within a few seconds; SIGHUP
reloads the config, keeping the old one if the new one is invalid.
"""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import os
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

from agent import __version__, log, threads
from agent.assembly import Assembler
from agent.buffer import Spool, Store
from agent.clock import ClockWatch
from agent.config import LoadedConfig
from agent.config.isolated import PendingConfig, load_config_isolated
from agent.config.models import prometheus_address
from agent.drivers.health import Health
from agent.errors import ConfigError
from agent.events import ConfigReloaded, ConfigReloadFailed, Event
from agent.metrics import BufferMetrics, DeviceMetrics, Metrics
from agent.pipeline import Pipeline, build_pipeline
from agent.poller import Poller
from agent.publisher import BrokerSettings, Publisher
from agent.sdnotify import Notifier
from agent.threads import confine
from agent.wakeup import Wakeup

TICK = 1.0
METRICS_EVERY = 60.0
HANG_SECONDS = 5.0  # EDGE_AGENT_FAULTS=hang-on-usr1: SIGUSR1 blocks the event loop this long
STOP_BUDGET = 4.0  # seconds for the whole shutdown; systemd's TimeoutStopSec is larger
LAG_WARN = 0.5  # seconds the event loop may wake late before it is logged
SEAL_GRACE = 0.3  # s after a batch window's end when it is sealed even if a poll due in it is still out


class Agent:
    def __init__(self, loaded: LoadedConfig, config_path: str | Path) -> None:
        """Everything the config needs, built and connected; nothing runs until `serve()`."""
        confine(self)
        self.config_path = Path(config_path)
        self.log = log.get("agent")
        self.notifier = Notifier()
        self.stop_requested = Wakeup()
        buffer = loaded.config.buffer
        self.store = Store(buffer.path, buffer.max_bytes, buffer.min_free_bytes, buffer.memory_bytes)
        self.spool = Spool(self.store, buffer.mode, buffer.spill_after, buffer.outage_commit)
        self.pipeline = build_pipeline(loaded)
        self.assembler = Assembler(loaded.config.gateway.id, self.pipeline.schema, self.store,
                                   self.store.last_before_start)
        self.poller = Poller(self.assembler.add, self.emit, self._on_poll_done)
        self._sealed_through = 0  # ms: the end of the last batch window sealed
        self.publisher = self._publisher(loaded)
        self.clock_watch = ClockWatch()
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._reload_again = False  # a SIGHUP came while a reload ran: run once more after it
        self._on_disk = True  # the buffer state the retained status last said
        self._last_metrics = 0.0
        self._loop_lag_max = 0.0  # seconds, since the last metrics
        self._prometheus: asyncio.Server | None = None
        self._broker_trouble: str | None = None  # "broker: bad credentials since 12:03 UTC" while it lasts

    async def serve(self) -> int:
        await self.startup()
        try:
            await self.main_loop()
        finally:
            await self.shutdown()
        return 0

    # ------------------------------------------------------------------ startup

    async def startup(self) -> None:
        threads.set_checking(threads.checking() or asyncio.get_running_loop().get_debug())
        await self._start_prometheus()  # first: a port in use stops the start before anything runs
        self._install_signals()
        if self.publisher is not None:
            self.tasks["publisher"] = asyncio.create_task(self.publisher.run(), name="publisher")
        self._report_buffer()
        self.poller.schedule(self.pipeline.devices)
        window = self._batch_window()
        self.poller.every("seal", window, self._seal_job, offset=min(SEAL_GRACE, window / 4))
        self.poller.start()
        self.log.info("started", version=__version__, devices=len(self.pipeline.devices),
                      buffer=str(self.store.directory), on_disk=self.store.on_disk, backlog=self.store.backlog,
                      boot=self.store.boot_count)
        self.notifier.ready(self._status_line())
        gc.collect()
        gc.freeze()  # what start-up built lives as long as the process: the collector stops re-scanning it

    async def _start_prometheus(self) -> None:
        """Listen for scrapes, or refuse to start with the reason in one line (the port is taken)."""
        listen = self.pipeline.loaded.config.prometheus
        if not listen:
            return
        from agent.prometheus import serve

        try:
            self._prometheus = await serve(*prometheus_address(listen), self.metrics)
        except OSError as exc:
            self.store.close()
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise ConfigError([self.pipeline.loaded.problem(
                ("prometheus",), f"cannot listen on {listen}: {reason} (another program has "
                                 "the port, or a second agent runs: choose another port)")]) from None

    def _publisher(self, loaded: LoadedConfig) -> Publisher | None:
        config = loaded.config
        if config.mqtt is None:
            return None
        settings = BrokerSettings.from_config(config.mqtt, config.gateway.id, config.gateway.site)
        return Publisher(settings, self.spool, self._status, self.pipeline.schema.to_json(),
                         on_trouble=self._on_broker_trouble)

    def _on_broker_trouble(self, text: str | None) -> None:
        """The publisher cannot use the broker (or can again): systemd's STATUS= says so at once."""
        if text != self._broker_trouble:
            self._broker_trouble = text
            self.notifier.status(self._status_line())

    def _batch_window(self) -> float:
        mqtt = self.pipeline.loaded.config.mqtt
        return mqtt.batch_interval if mqtt else 10.0

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal)
        loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal)
        loop.add_signal_handler(signal.SIGUSR2, self._dump_state)
        if "hang-on-usr1" in os.environ.get("EDGE_AGENT_FAULTS", ""):  # fault injection for tests and HIL
            loop.add_signal_handler(signal.SIGUSR1, lambda: time.sleep(HANG_SECONDS))

    # ------------------------------------------------------------------ the tick loop

    async def main_loop(self) -> None:
        interval = min(TICK, self.notifier.watchdog_interval or TICK)
        while not self.stop_requested.is_set():
            self.notifier.watchdog()  # from the loop itself: a hung loop stops the pings
            self.tick()
            due = time.monotonic() + interval
            if not await self.stop_requested.wait(interval):
                self._note_lag(time.monotonic() - due)

    def tick(self) -> None:
        jump, clock_events = self.clock_watch.check()
        for event in clock_events:
            self.emit(event)
        if jump is not None:
            self.poller.realign()
        self.poller.report_skipped()
        if not self.spool.connected:  # during an outage the open batch goes to disk every tick
            draft = self.assembler.draft()
            if draft is not None:
                self.spool.draft(draft)
        self.spool.tick()
        self._report_buffer()
        now = time.monotonic()
        if now - self._last_metrics >= METRICS_EVERY:
            self._last_metrics = now
            self.notifier.status(self._status_line())
            if self.publisher is not None:
                self.publisher.publish_json("metrics", self.metrics().as_json())
            self._loop_lag_max = 0.0

    def _note_lag(self, lag: float) -> None:
        """The loop woke `lag` s after it asked to: something blocked it (a slow disk's fsync, CPU
        starvation). Polls due meanwhile ran late or not at all, so it is said, with a suspect."""
        self._loop_lag_max = max(self._loop_lag_max, lag)
        if lag >= LAG_WARN:
            self.log.warning("event loop blocked", seconds=round(lag, 3),
                             slowest_buffer_commit_s=round(self.spool.slowest_commit, 3))

    def _on_poll_done(self, tick_ms: int) -> None:
        """A batch is sealed as soon as every poll due in its window is in, not a window later: with
        1 s batches a reading reaches the broker tens of milliseconds after its poll."""
        window_ms = round(self._batch_window() * 1000)
        window_end = (tick_ms // window_ms + 1) * window_ms
        if window_end > self._sealed_through and self.poller.window_complete(window_end):
            self._sealed_through = window_end
            self._seal()

    async def _seal_job(self) -> None:
        """The deadline, shortly after each window ends, so a slow or dead device cannot hold a batch.
        A coroutine, so the scheduler runs it on the event loop (a plain function would run on a
        worker thread, racing the polls that add to the open batch)."""
        window_ms = round(self._batch_window() * 1000)
        self._sealed_through = max(self._sealed_through, int(time.time() * 1000) // window_ms * window_ms)
        self._seal()

    def _seal(self) -> None:
        sealed = self.assembler.seal()
        if sealed is not None:
            self.spool.add(sealed)
            if self.publisher is not None:
                self.publisher.nudge()

    def _report_buffer(self) -> None:
        """What the buffer store had to do (fall back to memory, come back, recover a damaged file)."""
        for event in self.store.take_notices():
            self.emit(event)
        if self.store.on_disk != self._on_disk:
            self._on_disk = self.store.on_disk
            self.notifier.status(self._status_line())
            if self.publisher is not None:
                self.publisher.refresh_status()

    # ------------------------------------------------------------------ shutdown

    async def shutdown(self) -> None:
        self.notifier.stopping()
        deadline = time.monotonic() + STOP_BUDGET
        if "reload" in self.tasks:
            self.tasks["reload"].cancel()
        await self.poller.stop(timeout=1.0)  # polls in flight finish, so their readings are sealed
        self._seal()
        self.spool.close()
        if self.publisher is not None:
            await self.publisher.stop(timeout=max(0.1, deadline - time.monotonic() - 0.5))
        if "publisher" in self.tasks:
            self.tasks["publisher"].cancel()
        if self._prometheus is not None:
            self._prometheus.close()
        await self.pipeline.close()
        self._report_buffer()
        self.spool.close()  # events the publisher handed back while stopping, and any late acks
        self.store.close()
        self.log.info("stopped", backlog_batches=self.store.backlog,
                      took_s=round(time.monotonic() - deadline + STOP_BUDGET, 3))

    def _on_stop_signal(self) -> None:
        if self.stop_requested.is_set():
            os._exit(1)  # a second signal while stopping: the operator wants out now
        self.stop_requested.set()

    def _dump_state(self) -> None:
        """`kill -USR2 PID`: every thread's and every task's stack to stderr (journald), for a stuck agent."""
        faulthandler.dump_traceback(all_threads=True)
        for task in asyncio.all_tasks():
            print(f"--- task {task.get_name()}", file=sys.stderr)
            task.print_stack(file=sys.stderr)

    # ------------------------------------------------------------------ reload

    def _on_reload_signal(self) -> None:
        """SIGHUP: one reload at a time; signals during a reload make one more run after it."""
        running = self.tasks.get("reload")
        if running is not None and not running.done():
            self._reload_again = True
            return
        self._reload_again = False
        self.tasks["reload"] = asyncio.create_task(self._reloads(), name="reload")

    async def _reloads(self) -> None:
        while True:
            await self.reload()
            if not self._reload_again or self.stop_requested.is_set():
                return
            self._reload_again = False

    async def reload(self) -> None:
        """Apply a valid new config; keep running on the old one if it is not."""
        try:
            loaded = await asyncio.to_thread(load_config_isolated, self.config_path)
        except ConfigError as exc:
            self._reload_failed([str(p) for p in exc.problems])
            return
        except Exception as exc:  # noqa: BLE001 - a reload must never leave an unretrieved task exception
            self._reload_failed([f"{type(exc).__name__}: {exc}"])
            return
        old, self.pipeline = self.pipeline, build_pipeline(loaded)
        self.poller.unschedule()
        sealed = self.assembler.set_schema(self.pipeline.schema)  # the open batch belongs to the old schema
        if sealed is not None:
            self.spool.add(sealed)
        await old.close()
        self.poller.schedule(self.pipeline.devices)
        if self.publisher is not None:
            self.publisher.set_schema(self.pipeline.schema.to_json())
        config, was = loaded.config, old.loaded.config
        restart_needed = config.buffer != was.buffer or config.mqtt != was.mqtt
        self.log.info("config reloaded", devices=len(self.pipeline.devices),
                      restart_needed_for="buffer/mqtt changes" if restart_needed else None)
        self.emit(ConfigReloaded(loaded.digest[:16], len(self.pipeline.devices), restart_needed))

    def _reload_failed(self, problems: list[str]) -> None:
        self.log.error("config reload failed; keeping the running config", problems=problems)
        self.emit(ConfigReloadFailed(problems[:20]))

    # ------------------------------------------------------------------ what the agent tells

    def emit(self, event: Event) -> None:
        """The one sink for events: the log, and the events topic (kept on disk while offline)."""
        self.log.info("event", kind=event.kind, **event.body())
        if self.publisher is not None:
            self.publisher.event(event)

    def _status(self) -> dict[str, Any]:
        unavailable = self.store.unavailable
        return {"version": __version__, "config_hash": self.pipeline.loaded.digest[:16],
                "schema_id": self.pipeline.schema.id,
                "devices": sorted({s.reader.device_id for s in self.pipeline.devices.values()}),
                "buffer": "disk" if unavailable is None else f"memory: {unavailable[0]}"}

    def _status_line(self) -> str:
        online = sum(s.reader.health is Health.ONLINE for s in self.pipeline.devices.values())
        where = "" if self.store.on_disk else " (in memory: buffer disk unavailable)"
        broker = f"; {self._broker_trouble}" if self._broker_trouble else ""
        return (f"{online}/{len(self.pipeline.devices)} devices online, backlog {self.store.backlog} batches{where}"
                f"{broker}")

    def metrics(self) -> Metrics:
        stats = self.store.stats()
        devices = {key: DeviceMetrics(state.reader.health.value, s.polls, s.requests, s.timeouts, s.exceptions,
                                      s.bus_errors, s.skipped, state.overruns, state.stalls,
                                      round(s.last_latency * 1000, 1))
                   for key, state in self.pipeline.devices.items() for s in [state.reader.stats]}
        buffer = BufferMetrics(stats.batches, stats.bytes, stats.readings, stats.oldest_ts, stats.dropped_total,
                               round(self.spool.slowest_commit * 1000, 1), self.spool.in_memory, self.store.on_disk,
                               self.store.unavailable[0] if self.store.unavailable else None)
        return Metrics(int(time.time() * 1000), devices, buffer, self.publisher.stats if self.publisher else None,
                       round(self._loop_lag_max * 1000, 1), _rss_kb())


def run(pending: PendingConfig) -> int:
    """`edge-agent run`: a config that does not load is refused before anything starts. The config
    is loaded by a child process (isolated.py), started by the caller before importing this module."""
    log.configure()
    loaded = pending.result()
    config_path = pending.path

    async def main() -> int:
        return await Agent(loaded, config_path).serve()

    return asyncio.run(main())


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


__all__ = ["Agent", "Pipeline", "run"]
