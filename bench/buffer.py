"""Buffer figures: throughput, drain rate, bytes written to the device per hour for the
reference park, startup time and RSS on a full buffer.

Reference load: 50 meters x 40 points every 10 s, sealed into one batch per 10 s (2000 values,
the size of a real encoded reference-park batch: about 12 KB uncompressed, bench/workload.py).
An hour is 360 batches; time is simulated with a fake clock (the modes' timers), the disk is
real, and bytes written are read from /proc/self/io (`write_bytes`: what reached the block
layer, fsyncs included).
"""

from __future__ import annotations

import functools
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from agent.buffer import Ring, SealedBatch, Spool, Store
from agent.config.models import BufferMode
from bench.report import Figure
from bench.workload import park_batches

BATCH_READINGS = 2000
BATCHES_PER_HOUR = 360


def write_bytes() -> int:
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    return 0


@functools.cache
def batch_bytes() -> int:
    """Bytes of one encoded 10 s batch of the reference park (its last poll: counters are warm)."""
    payloads, _ = park_batches(2)
    return len(payloads[-1])


def payload(rng: random.Random) -> bytes:
    return rng.randbytes(batch_bytes())


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def one_hour(directory: Path, mode: BufferMode, online: bool) -> int:
    """Bytes written to the device for one simulated hour of the reference load."""
    ring = Store(directory, max_bytes=256 * 2**20, min_free_bytes=0)
    clock = FakeClock()
    spool = Spool(ring, mode, spill_after=2.0, outage_commit=1.0, clock=clock)
    spool.set_connected(online)
    rng = random.Random(1)
    os.sync()
    before = write_bytes()
    for i in range(BATCHES_PER_HOUR):
        seq = ring.allocate_seq()
        batch = SealedBatch(seq, payload(rng), BATCH_READINGS, i * 10_000, i * 10_000 + 9_999)
        spool.add(batch)
        for sent in spool.take_live():
            clock.now += 0.05  # PUBACK after 50 ms
            spool.acked(sent.seq)
        if online:
            for stored in list(spool.backlog()):
                spool.acked(stored.seq)
        for _ in range(10):  # ten 1 s ticks per 10 s batch
            clock.now += 1.0
            spool.tick()
    spool.close()
    ring.close()
    os.sync()
    return write_bytes() - before


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    started = time.perf_counter()
    count = fn()
    return time.perf_counter() - started, count


def fill(directory: Path, total_bytes: int) -> int:
    ring = Ring.open(directory, max_bytes=total_bytes, min_free_bytes=0)
    rng = random.Random(2)
    chunk: list[SealedBatch] = []
    count = 0
    while ring.stats().bytes + len(chunk) * (batch_bytes() + 48) < total_bytes * 0.98:
        chunk.append(SealedBatch(ring.allocate_seq(), payload(rng), BATCH_READINGS, count, count + 1))
        count += 1
        if len(chunk) == 500:
            ring.commit(chunk)
            chunk = []
    ring.commit(chunk)
    ring.close()
    return count


STARTUP_PROBE = """
import sys, time
t = time.perf_counter()
from agent.buffer import Ring
t_import = time.perf_counter()
ring = Ring.open(sys.argv[1], max_bytes=int(sys.argv[2]), min_free_bytes=0)
stats = ring.stats()
opened = time.perf_counter()
first = next(ring.unacked())
while ring.integrity is None:
    time.sleep(0.01)
verified = time.perf_counter()
# VmHWM, not ru_maxrss: after fork+exec ru_maxrss can be the (large) bench parent's peak
hwm_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(opened - t_import, time.perf_counter() - t, hwm_kb, stats.batches,
      verified - t_import, ring.integrity)
"""


def run(quick: bool = False) -> list[Figure]:
    root = Path(tempfile.mkdtemp(prefix="bench-buffer-", dir=os.environ.get("BENCH_DIR", "/var/tmp")))
    figures: list[Figure] = []
    try:
        figures += _throughput(root / "tp", 300 if quick else 2000)
        for mode in (BufferMode.OUTAGE, BufferMode.ALWAYS):
            for online in (True, False):
                target = {(BufferMode.OUTAGE, True): 1.0, (BufferMode.ALWAYS, True): 15.0}.get((mode, online))
                written = one_hour(root / f"{mode.value}-{online}", mode, online) / 1e6
                figures.append(Figure(f"disk writes/hour {mode.value} mode {'online' if online else 'outage'}",
                                      written, "MB/hour", target,
                                      note=f"payload {BATCHES_PER_HOUR * batch_bytes() / 1e6:.1f} MB/h"))
        size = (64 if quick else 256) * 2**20
        batches = fill(root / "full", size)
        figures += _startup(root / "full", size, batches)
        figures += _drain(root / "full", size)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return figures


def _throughput(directory: Path, count: int) -> list[Figure]:
    ring = Ring.open(directory, max_bytes=256 * 2**20, min_free_bytes=0)
    rng = random.Random(3)
    blobs = [payload(rng) for _ in range(16)]

    def cycle() -> int:
        for i in range(count):  # always-mode worst case: one commit to append, one to delete
            seq = ring.allocate_seq()
            ring.commit([SealedBatch(seq, blobs[i % 16], BATCH_READINGS, i, i)])
            ring.ack(seq)
            ring.commit()
        return count

    elapsed, done = timed(cycle)
    ring.close()
    return [Figure("append+ack (2 fsync commits each)", done / elapsed, "batches/s", higher_is_better=True),
            Figure("append+ack readings", done * BATCH_READINGS / elapsed, "readings/s", higher_is_better=True)]


def _startup(directory: Path, size: int, batches: int) -> list[Figure]:
    done = subprocess.run([sys.executable, "-c", STARTUP_PROBE, str(directory), str(size)], capture_output=True,
                          text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    open_s, total_s, rss_kb, seen, verified_s, verdict = done.stdout.split()
    return [Figure(f"startup on full {size >> 20} MiB buffer (open)", float(open_s), "s", 5.0,
                   note=f"{seen} batches; with imports {float(total_s):.2f} s; warm cache"),
            Figure("background page check of that buffer", float(verified_s), "s",
                   note=f"runs after READY; verdict {verdict}"),
            Figure("RSS after opening full buffer", int(rss_kb) / 1024, "MB", 80.0)]


def _drain(directory: Path, size: int) -> list[Figure]:
    ring = Ring.open(directory, max_bytes=size, min_free_bytes=0)

    def drain() -> int:
        drained = 0
        for batch in ring.unacked():
            ring.ack(batch.seq)
            drained += 1
            if drained % 100 == 0:  # acks coalesced, as the spool does once a second
                ring.commit()
        ring.commit()
        return drained

    elapsed, drained = timed(drain)
    ring.close()
    return [Figure("drain of a full backlog (read+ack)", drained / elapsed, "batches/s", 500.0, higher_is_better=True,
                   note=f"{drained} batches in {elapsed:.1f} s")]
