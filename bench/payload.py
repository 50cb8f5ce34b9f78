"""Payload figures: bytes per value on the wire for the reference workload at several
batch windows, against a JSON encoding of the same readings; poll-to-broker latency through a
real mosquitto at 1 s and 10 s windows (polls every second, each stamped when taken; the batch is
sealed right after the window's last poll and published at once)."""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from agent.assembly import Assembler
from agent.batcher import Batcher
from agent.buffer import Spool, Store
from agent.codec import Header, compress, decode, encode
from agent.types import Reading
from agent.wire import build_schema
from bench.report import Figure
from bench.workload import PARK_INTERVAL_S, PARK_METERS, T0, readings, setups


def wire_bytes(meters: int, polls: int, window: int, interval_s: int = 1, zlib: bool = False) -> tuple[int, int]:
    """(bytes of all batches, values) for `polls` polls of the workload, sealed every `window` polls."""
    schema = build_schema("gw-guian-01", setups(meters))
    batcher = Batcher(schema)
    by_poll: dict[int, list[Reading]] = {}
    for r in readings(meters, polls, interval_s):
        by_poll.setdefault((r.ts_ms - T0) // (interval_s * 1000), []).append(r)
    total = values = 0
    for poll in range(polls):
        batcher.add(by_poll[poll])
        values += len(by_poll[poll])
        if (poll + 1) % window == 0:
            sealed = batcher.seal(Header("gw-guian-01", 1_234_567_890, 100_000 + poll, 0, 0))
            assert sealed is not None
            payload = encode(sealed.batch, schema)
            total += len(compress(payload) if zlib else payload)
    return total, values


def json_bytes(meters: int, polls: int, interval_s: int = 1) -> tuple[int, int]:
    """The same readings as ThingsBoard-style JSON: per device and poll, {"ts", "values": {...}}."""
    by_poll: dict[tuple[str, int], dict[str, object]] = {}
    rows = readings(meters, polls, interval_s)
    for r in rows:
        by_poll.setdefault((r.device, (r.ts_ms - T0) // (interval_s * 1000)), {})[r.point] = r.value
    size = sum(len(json.dumps({device: [{"ts": T0 + poll * interval_s * 1000, "values": values}]}))
               for (device, poll), values in by_poll.items())
    return size, len(rows)


def run(quick: bool = False) -> list[Figure]:
    figures = []
    meters, seconds = 10, (60 if quick else 600)
    json_total, values = json_bytes(meters, seconds)
    json_per_value = json_total / values
    for window in (1, 10, 60):
        total, values = wire_bytes(meters, seconds, window)
        per_value = total / values
        figures.append(Figure(f"bytes/value, 1 s polls, {window} s batches", per_value, "B/value",
                              3.0 if window == 10 else None,
                              note=f"{meters} reference meters; JSON of the same readings {json_per_value:.1f} B/value "
                                   f"({json_per_value / per_value:.1f}x larger); ThingsBoard measured 19.9"))
    polls = 12 if quick else 60
    json_total, values = json_bytes(PARK_METERS, polls, PARK_INTERVAL_S)
    json_per_value = json_total / values
    for window, zlib in ((1, False), (1, True), (6, False)):
        total, values = wire_bytes(PARK_METERS, polls, window, PARK_INTERVAL_S, zlib)
        per_value = total / values
        figures.append(Figure(f"bytes/value, reference park, {window * PARK_INTERVAL_S} s batches"
                              f"{', compress: true' if zlib else ''}", per_value,
                              "B/value", note=f"{PARK_METERS} x 40 points every {PARK_INTERVAL_S} s, "
                                              f"{total / values * PARK_METERS * 40 * 3600 / PARK_INTERVAL_S / 1e6:.1f} "
                                              f"MB/h; JSON {json_per_value:.1f} B/value "
                                              f"({json_per_value / per_value:.1f}x larger)"))
    for window in (1, 10):
        figures.append(_latency(window, (3 if quick else 6) * window))
    return figures


def _latency(window: int, seconds: int) -> Figure:
    from testkit.broker import Broker
    from testkit.mqtt import BASE, publisher, wait_for
    from testkit.platform import Platform

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "broker").mkdir()
        broker = Broker(root / "broker").start()
        schema = build_schema("gw-test", setups(2))
        sub = Platform(broker.port, f"{BASE}/#", "platform")
        arrivals: list[float] = []

        async def scenario() -> None:
            ring = Store(root / "buf", max_bytes=1 << 30, min_free_bytes=0)
            spool = Spool(ring)
            pub = publisher(broker.port, spool, schema)
            task = asyncio.create_task(pub.run())
            await wait_for(pub.connected.is_set, 10)
            assembler = Assembler("gw-test", schema, ring)
            start = time.time()
            for second in range(seconds):
                now_ms = int(time.time() * 1000)
                assembler.add(Reading(r.device, r.point, now_ms, r.value) for r in readings(2, 1, seed=second))
                if (second + 1) % window == 0:
                    sealed = assembler.seal()
                    assert sealed is not None
                    spool.add(sealed)
                    pub.nudge()
                await asyncio.sleep(max(0.0, start + second + 1 - time.time()))
            await wait_for(lambda: len(sub.payloads) == seconds // window, 10)
            await pub.stop()
            task.cancel()
            ring.close()

        asyncio.run(scenario())
        for at, payload in list(sub.arrivals):  # arrival time as the subscriber saw it, per reading's own stamp
            arrivals += [at * 1000 - r.ts for r in decode(payload, schema)]
        sub.close()
        broker.stop()
    median = statistics.median(arrivals) / 1000 if arrivals else float("nan")
    return Figure(f"poll-to-broker latency, {window} s batches (median)", median, "s",
                  note=f"p95 {statistics.quantiles(arrivals, n=20)[-1] / 1000:.2f} s over {len(arrivals)} readings; "
                       "ThingsBoard 0.04-0.2 s (one message per poll)")
