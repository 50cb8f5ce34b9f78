"""A small filesystem fills during an outage: commits go on, the oldest batches are evicted and
counted, nothing crashes; a disk filled by someone else ends in a clear error, never in loss of
what was committed."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.buffer import Ring, SealedBatch, Spool, Store
from agent.config.models import BufferMode
from agent.errors import BufferIOError

FS_BYTES = 4 * 2**20


@contextlib.contextmanager
def small_filesystem(where: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted for the test (needs root, as CI is); skipped where mounting is refused."""
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_BYTES}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def batch(ring: Ring, i: int, size: int = 20_000) -> SealedBatch:
    return SealedBatch(ring.allocate_seq(), os.urandom(size), 400, i * 10_000, i * 10_000 + 9_999)


def test_outage_fills_the_disk_and_the_oldest_is_evicted(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "fs") as fs:
        ring = Store(fs, max_bytes=256 * 2**20, min_free_bytes=512 * 1024)  # cap far above the disk
        spool = Spool(ring, BufferMode.OUTAGE, outage_commit=0.0)
        appended = 0
        for i in range(600):  # 12 MB of batches into 4 MB of disk, offline all along
            spool.add(batch(ring, i))
            spool.tick()
            appended += 400
        stats = ring.stats()
        free = os.statvfs(fs).f_bavail * os.statvfs(fs).f_frsize
        assert stats.dropped_total > 0 and stats.dropped_total % 400 == 0
        assert appended == stats.readings + stats.dropped_total  # every reading is buffered or counted
        newest = max(b.seq for b in ring.unacked())
        assert newest == stats.newest_seq  # the newest are kept, the oldest went
        assert free > 0
        ring.close()
        reopened = Ring.open(fs, max_bytes=256 * 2**20, min_free_bytes=512 * 1024)
        assert reopened.stats().dropped_total == stats.dropped_total
        reopened.close()


def test_disk_filled_by_someone_else_is_a_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "fs") as fs:
        ring = Ring.open(fs, max_bytes=256 * 2**20, min_free_bytes=0)
        kept = [batch(ring, i, 5_000) for i in range(20)]
        ring.commit(kept)
        filler = fs / "filler"
        with contextlib.suppress(OSError), open(filler, "wb") as f:  # another program takes every last byte
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        with pytest.raises(BufferIOError, match="buffer commit failed"):
            for i in range(200):
                ring.commit([batch(ring, 100 + i, 50_000)])
        filler.unlink()
        ring.close()
        ring = Ring.open(fs, max_bytes=256 * 2**20, min_free_bytes=0)
        present = {b.seq for b in ring.unacked()}
        missing = {b.seq for b in kept} - present
        assert len(missing) * 400 <= ring.stats().dropped_total  # whatever went is counted
        assert len(missing) < len(kept)  # and the disk error did not wipe what was committed
        ring.close()
