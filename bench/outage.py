"""Outage: how soon a gateway is back after its broker was away, and how fast it catches up after a day.

Back: the real agent as a process (10 SDM630s on a simulated Modbus TCP server, 1 s polls and
batches) and a real mosquitto, stopped for 1 minute (and 10 in the long run); measured from the
moment the restarted broker accepts TCP connections (the bench's own connect loop, 20 ms steps) to
the first telemetry batch at a subscriber that subscribed as the broker came back.

Catch-up:
A 24-hour backlog of the reference park (50 meters x 40 points every 10 s, one batch per 10 s:
8,640 batches of 2,000 readings) is put in the buffer on disk, then a `Publisher` with the
default window connects to a local mosquitto and drains it: every batch read from SQLite, flagged
historical, published at QoS 1, its PUBACK awaited and the ack committed. The batches are real
encoded reference-park batches (one hour of them, generated and repeated for each hour).

`drain_rate` (default 50 batches/s) exists to protect a slow uplink and would make the day take
8,640 / 50 = 173 s; the bench lifts it to show what the agent itself can do.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from agent.buffer import Ring, SealedBatch, Spool, Store
from bench.report import Figure
from bench.workload import PARK_INTERVAL_S, park_batches
from testkit.broker import Broker

BATCHES_PER_HOUR = 3600 // PARK_INTERVAL_S
READINGS_PER_BATCH = 2000
DEFAULT_DRAIN_RATE = 50.0


def run(quick: bool = False) -> list[Figure]:
    return _back_figures(quick) + _drain_figures(quick)


def _back_figures(quick: bool) -> list[Figure]:
    outages = [60.0] if quick else [60.0, 600.0]
    figures = []
    for outage in outages:
        back = first_delivery_after(outage)
        label = f"{outage / 60:g} min"
        figures.append(Figure(f"first delivery after a {label} broker outage", back, "s", 5.0,
                              note="from the broker accepting connections again to the first batch at a subscriber"
                                   + ("; the 10 min outage runs without --quick" if quick else "")))
    return figures


def first_delivery_after(outage_s: float) -> float:
    """Seconds from the broker accepting TCP connections again to the first telemetry at a subscriber."""
    import signal
    import subprocess
    import sys

    from agent.config import ProfileLibrary
    from agent.simulate import SimulatedDevice
    from bench.latency import REPO
    from bench.workload import park_config
    from testkit.platform import Platform
    from testkit.sims import SimThread

    sim = SimThread()
    spec, _ = sim.tcp({i + 1: SimulatedDevice(ProfileLibrary().load("eastron/sdm630")) for i in range(10)})
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "broker").mkdir()
        broker = Broker(directory / "broker").start()
        agent = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c",
                                  str(park_config(directory, spec.port, broker.port, 10, batch="1s"))],
                                 cwd=REPO, stderr=subprocess.DEVNULL, env=dict(os.environ))
        try:
            before = Platform(broker.port, "park/#", client_id="bench-before")
            _wait(lambda: bool(before.arrivals), 30)
            before.close()
            broker.stop()
            time.sleep(outage_s)
            broker.start()
            up = time.time()
            after = Platform(broker.port, "park/+/+/telemetry", client_id="bench-after")
            _wait(lambda: bool(after.arrivals), 60 + outage_s)
            first = after.arrivals[0][0] if after.arrivals else float("inf")
            after.close()
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(30)
            broker.stop()
    sim.stop()
    return first - up


def _wait(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def _drain_figures(quick: bool) -> list[Figure]:
    hours = 1 if quick else 24
    hour, schema_json = park_batches(BATCHES_PER_HOUR)
    with tempfile.TemporaryDirectory(prefix="bench-outage-", dir=os.environ.get("BENCH_DIR", "/var/tmp")) as tmp:
        root = Path(tmp)
        stored = _fill(root / "buf", hour, hours)
        (root / "broker").mkdir()
        broker = Broker(root / "broker").start()
        try:
            elapsed, cpu, acked = asyncio.run(_drain(root / "buf", broker.port, schema_json, len(hour) * hours))
        finally:
            broker.stop()
    batches = len(hour) * hours
    label = f"{hours} h backlog"
    return [
        Figure(f"drain of a {label} through mosquitto", elapsed, "s",
               note=f"{acked}/{batches} batches ({stored / 1e6:.0f} MB) published and acknowledged: "
                    f"{batches / elapsed:.0f} batches/s, {stored / elapsed / 1e6:.1f} MB/s, "
                    f"{hours * 3600 / elapsed:.0f}x real time; {cpu:.1f} CPU-s; at the default "
                    f"drain_rate {DEFAULT_DRAIN_RATE:g}/s it takes {batches / DEFAULT_DRAIN_RATE:.0f} s by design"),
        Figure(f"drain of a {label}, readings per second", acked * READINGS_PER_BATCH / elapsed, "readings/s",
               higher_is_better=True, note="the reference park produces 200 readings/s"),
    ]


def _fill(directory: Path, hour: list[bytes], hours: int) -> int:
    """The backlog on disk, one commit per hour of batches; returns its payload bytes."""
    ring = Ring.open(directory, max_bytes=1 << 30, min_free_bytes=0)
    stored = 0
    for h in range(hours):
        batches = []
        for i, payload in enumerate(hour):
            t = (h * len(hour) + i) * PARK_INTERVAL_S * 1000
            batches.append(SealedBatch(ring.allocate_seq(), payload, READINGS_PER_BATCH, t, t + 9_999))
            stored += len(payload)
        ring.commit(batches)
    ring.close()
    return stored


async def _drain(directory: Path, port: int, schema_json: str, batches: int) -> tuple[float, float, int]:
    from agent.publisher import BrokerSettings, Publisher

    ring = Store(directory, max_bytes=1 << 30, min_free_bytes=0)
    spool = Spool(ring)
    settings = BrokerSettings("127.0.0.1", port, False, "gw-bench", "park/bench/gw-bench", drain_rate=1e9)
    publisher = Publisher(settings, spool, dict, schema_json)
    started, cpu = time.monotonic(), time.process_time()
    task = asyncio.create_task(publisher.run())
    deadline = started + 600
    while publisher.stats.acked < batches and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
    acked = publisher.stats.acked
    await publisher.stop()
    task.cancel()
    spool.close()
    ring.close()
    return elapsed, cpu, acked
