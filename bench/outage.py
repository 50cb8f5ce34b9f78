"""Outage: how fast a gateway catches up after a day without its broker.

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
from pathlib import Path

from agent.buffer import Ring, SealedBatch, Spool, Store
from bench.report import Figure
from bench.workload import PARK_INTERVAL_S, park_batches
from testkit.broker import Broker

BATCHES_PER_HOUR = 3600 // PARK_INTERVAL_S
READINGS_PER_BATCH = 2000
DEFAULT_DRAIN_RATE = 50.0


def run(quick: bool = False) -> list[Figure]:
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
