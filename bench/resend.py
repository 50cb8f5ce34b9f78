"""Re-sends after a crash during a drain: a backlog of a few thousand batches drains through a local
mosquitto at the default `drain_rate` (50 batches/s) in a child process that is killed with SIGKILL
a few times on the way (each at a random moment) and restarted; an independent subscriber counts
every arrival. Re-sends per kill = (arrivals - distinct batches) / kills.

The README's rule: acknowledgements are committed with the next commit, at the latest at 100
pending (or 15 s), so a crash re-sends at most the 100 acknowledged-but-not-committed batches plus
those in flight (the window, 10)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import msgpack

from agent.buffer import Ring, SealedBatch
from bench.report import Figure
from bench.workload import PARK_INTERVAL_S, park_batches
from testkit.broker import Broker
from testkit.platform import Platform

RULE = 100 + 10  # ACK_BATCH + the default window

CHILD = """
import asyncio, sys
from agent.buffer import Spool, Store
from agent.publisher import BrokerSettings, Publisher
async def main():
    store = Store(sys.argv[2], max_bytes=1 << 30, min_free_bytes=0)
    spool = Spool(store)
    settings = BrokerSettings("127.0.0.1", int(sys.argv[1]), False, "gw-bench", "park/bench/gw-bench")
    publisher = Publisher(settings, spool, dict, open(sys.argv[3]).read())
    await publisher.run()
asyncio.run(main())
"""


def run(quick: bool = False) -> list[Figure]:
    batches, kills = (1500, 3) if quick else (3000, 5)
    hour, schema_json = park_batches(3600 // PARK_INTERVAL_S)
    with tempfile.TemporaryDirectory(prefix="bench-resend-", dir=os.environ.get("BENCH_DIR", "/var/tmp")) as tmp:
        root = Path(tmp)
        _fill(root / "buf", hour, batches)
        (root / "schema.json").write_text(schema_json)
        (root / "broker").mkdir()
        broker = Broker(root / "broker").start()
        platform = Platform(broker.port, "park/bench/gw-bench/telemetry", "bench-platform")
        try:
            rate, rounds = _drain_with_kills(root, broker.port, platform, batches, kills)
        finally:
            platform.close()
            broker.stop()
    seen: set[int] = set()
    resent = []  # per restart: arrivals of batches that had arrived before the kill
    for arrivals in rounds:
        resent.append(sum(n for seq, n in Counter(arrivals).items() if seq in seen) + sum(
            n - 1 for n in Counter(arrivals).values()))
        seen.update(arrivals)
    per_kill = resent[1:]
    return [Figure("drain rate at the default drain_rate (50/s)", round(rate, 1), "batches/s", 50.0),
            Figure(f"re-sends per kill -9 during a drain, worst of {kills}", max(per_kill), "batches", RULE,
                   note=f"mean {sum(per_kill) / kills:.0f}, each {per_kill}; README rule: at most {RULE}; "
                        f"{len(seen)} of {batches} arrived")]


def _fill(directory: Path, hour: list[bytes], batches: int) -> None:
    """The backlog: the park's batches, each re-keyed with its own seq (a platform dedups on it)."""
    ring = Ring.open(directory, max_bytes=1 << 30, min_free_bytes=0)
    stored = []
    for i in range(batches):
        seq = ring.allocate_seq()
        fields = msgpack.unpackb(hour[i % len(hour)], raw=False)
        fields[3], fields[4] = ring.epoch, seq
        stored.append(SealedBatch(seq, msgpack.packb(fields, use_bin_type=True), 2000, i * 10_000, i * 10_000 + 9_999))
    ring.commit(stored)
    ring.close()


def _drain_with_kills(root: Path, port: int, platform: Platform, batches: int,
                      kills: int) -> tuple[float, list[list[int]]]:
    """(drain rate, the seqs that arrived during each run of the child)."""
    rng = random.Random(7)
    rate = 0.0
    rounds = []
    for round_ in range(kills + 1):
        before = len(platform.seqs)
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(port), str(root / "buf"), str(root / "schema.json")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if round_ == 0:  # the rate, measured over a clean stretch of the first run
                _wait(lambda: len(platform.seqs) >= 20, 30)
                first, at = len(platform.seqs), time.monotonic()
                time.sleep(5.0)
                rate = (len(platform.seqs) - first) / (time.monotonic() - at)
            if round_ < kills:
                time.sleep(rng.uniform(2.0, 6.0))
                child.send_signal(signal.SIGKILL)
            else:
                _wait(lambda: len(set(platform.seqs)) >= batches, 300)
                child.send_signal(signal.SIGKILL)
        finally:
            child.wait()
        time.sleep(0.5)  # what was on its way to the subscriber
        rounds.append(platform.seqs[before:])
    return rate, rounds


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


if __name__ == "__main__":
    for figure in run(quick="--quick" in sys.argv):
        print(figure.row())
