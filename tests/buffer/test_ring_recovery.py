"""Damage on the card: the buffer opens anyway, quarantines what it must, counts what it lost,
and five restarts in a row all reach "open" (never a crash loop)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from agent.buffer import Ring, SealedBatch
from agent.buffer.schema import DB_NAME
from agent.errors import BufferLocked

REPO = Path(__file__).resolve().parents[2]


FILL = """
import os, sys
from agent.buffer import Ring, SealedBatch
ring = Ring.open(sys.argv[1], max_bytes=1 << 30, min_free_bytes=0)
for i in range(int(sys.argv[2])):
    seq = ring.allocate_seq()
    ring.commit([SealedBatch(seq, bytes([i % 251]) * int(sys.argv[3]), 10, i * 1000, i * 1000 + 999)])
    print(seq)
print("epoch", ring.epoch, flush=True)
os._exit(0)  # no close: WAL and shm stay behind, as after a power cut
"""


def fill(directory: Path, batches: int = 40, size: int = 3000) -> tuple[list[int], int]:
    out = subprocess.run([sys.executable, "-c", FILL, str(directory), str(batches), str(size)], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.split()
    return [int(x) for x in out[:-2]], int(out[-1])


def reopen_five_times(directory: Path) -> list[Ring]:
    rings = []
    for _ in range(5):
        ring = Ring.open(directory, max_bytes=1 << 30, min_free_bytes=0, full_check=True)
        list(ring.unacked())
        rings.append(ring)
        ring.close()
    return rings


def test_truncated_wal(tmp_path: Path) -> None:
    seqs, _ = fill(tmp_path)
    wal = tmp_path / f"{DB_NAME}-wal"
    assert wal.stat().st_size > 0
    with open(wal, "r+b") as f:
        f.truncate(wal.stat().st_size // 2)
    first, *_ = reopen_five_times(tmp_path)
    ring = Ring.open(tmp_path, max_bytes=1 << 30, min_free_bytes=0)
    present = [b.seq for b in ring.unacked()]
    ring.close()
    assert present == seqs[: len(present)]  # a prefix survives: commits are ordered
    assert not first.recovery.happened


def test_garbage_wal(tmp_path: Path) -> None:
    fill(tmp_path)
    wal = tmp_path / f"{DB_NAME}-wal"
    with open(wal, "r+b") as f:
        f.seek(200)
        f.write(os.urandom(4096))
    rings = reopen_five_times(tmp_path)
    assert all(not r.recovery.happened for r in rings[1:])


def test_missing_shm(tmp_path: Path) -> None:
    seqs, _ = fill(tmp_path)
    (tmp_path / f"{DB_NAME}-shm").unlink()
    ring = Ring.open(tmp_path, max_bytes=1 << 30, min_free_bytes=0)
    assert [b.seq for b in ring.unacked()] == seqs
    ring.close()


def test_zeroed_page_is_moved_aside_and_salvaged(tmp_path: Path) -> None:
    seqs, old_epoch = fill(tmp_path, batches=60)
    # checkpoint: everything in the main file (full_check: no background reader to hold the WAL back)
    ring = Ring.open(tmp_path, max_bytes=1 << 30, min_free_bytes=0, full_check=True)
    ring.close()
    db = tmp_path / DB_NAME
    page = 1024
    with open(db, "r+b") as f:
        f.seek(page * 40)
        f.write(b"\x00" * page)
    rings = reopen_five_times(tmp_path)
    first = rings[0]
    assert first.recovery.happened and "corrupt" in first.recovery.moved_to.name
    assert (first.recovery.moved_to / DB_NAME).exists()
    assert all(not r.recovery.happened for r in rings[1:])
    ring = Ring.open(tmp_path, max_bytes=1 << 30, min_free_bytes=0)
    salvaged = [b.seq for b in ring.unacked()]
    stats = ring.stats()
    ring.close()
    assert set(salvaged) <= set(seqs)
    assert first.recovery.salvaged_batches == len(salvaged)
    assert stats.epoch != old_epoch  # a fresh file starts a new epoch; salvaged payloads keep their own keys
    assert len(salvaged) > 0 and first.recovery.lost_batches == len(seqs) - len(salvaged)
    assert first.recovery.lost_readings == 10 * (len(seqs) - len(salvaged))
    assert stats.dropped_total == first.recovery.lost_readings  # the loss is counted and will be reported


def test_background_check_finds_damage_and_recover_salvages(tmp_path: Path) -> None:
    """The default open is fast; the page check runs afterwards and `recover` handles what it finds
    (damage on the pages the open reads itself is recovered during the open)."""
    seqs, _ = fill(tmp_path, batches=60)
    Ring.open(tmp_path, max_bytes=1 << 30, min_free_bytes=0).close()
    db = tmp_path / DB_NAME
    conn = sqlite3.connect(db)
    pages = conn.execute("SELECT pageno FROM dbstat WHERE name='batches' AND path LIKE '%+000000' "
                         "ORDER BY pageno").fetchall()  # first overflow page of each payload
    conn.close()
    with open(db, "r+b") as f:
        f.seek((pages[10][0] - 1) * 1024)  # break one payload's overflow chain
        f.write(b"\xff" * 1024)
    ring = Ring.open(tmp_path, max_bytes=1 << 30, min_free_bytes=0)
    assert not ring.recovery.happened  # the open reads only b-tree cells, not payload pages
    for _ in range(500):
        if ring.integrity is not None:
            break
        time.sleep(0.01)
    assert ring.integrity not in (None, "ok")
    ring = ring.recover()
    assert ring.recovery.happened and ring.integrity == "ok"
    salvaged = [b.seq for b in ring.unacked()]
    assert 0 < len(salvaged) < len(seqs) and set(salvaged) <= set(seqs)
    assert ring.stats().dropped_total == 10 * (len(seqs) - len(salvaged))
    ring.close()


def test_damage_seen_while_opening_recovers_at_once(tmp_path: Path) -> None:
    """Damage on the pages the open itself reads (the table's leaves) is recovered on the spot."""
    fill(tmp_path, batches=60, size=100)  # small rows: the table is leaf pages, read by the counters
    Ring.open(tmp_path, max_bytes=1 << 30, min_free_bytes=0).close()
    with open(tmp_path / DB_NAME, "r+b") as f:
        f.seek(1024 * 4)
        f.write(b"\xff" * 1024)
    ring = Ring.open(tmp_path, max_bytes=1 << 30, min_free_bytes=0)
    assert ring.recovery.happened and "malformed" in ring.recovery.reason
    ring.close()
    assert not Ring.open(tmp_path, max_bytes=1 << 30, min_free_bytes=0).recovery.happened


def test_flipped_payload_bit_is_quarantined_and_counted(tmp_path: Path) -> None:
    seqs, _ = fill(tmp_path, batches=10)
    conn = sqlite3.connect(tmp_path / DB_NAME)
    payload = conn.execute("SELECT payload FROM batches WHERE seq=?", (seqs[3],)).fetchone()[0]
    flipped = bytes([payload[0] ^ 0x01]) + payload[1:]
    assert zlib.crc32(flipped) != zlib.crc32(payload)
    conn.execute("UPDATE batches SET payload=? WHERE seq=?", (flipped, seqs[3]))
    conn.commit()
    conn.close()
    ring = Ring.open(tmp_path, max_bytes=1 << 30, min_free_bytes=0)
    read = [b.seq for b in ring.unacked()]
    stats = ring.stats()
    ring.close()
    assert read == seqs[:3] + seqs[4:]
    assert stats.quarantined == 1 and stats.dropped_total == 10 and stats.dropped_batches == 1
    ring = Ring.open(tmp_path, max_bytes=1 << 30, min_free_bytes=0)
    assert [b.seq for b in ring.unacked()] == read  # stays quarantined; the count persists
    assert ring.stats().dropped_total == 10
    ring.close()


def test_not_a_database(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_bytes(b"this is not sqlite" * 100)
    rings = reopen_five_times(tmp_path)
    assert rings[0].recovery.happened and "not a database" in rings[0].recovery.reason
    assert all(not r.recovery.happened for r in rings[1:])


def test_stale_lock_file_does_not_block(tmp_path: Path) -> None:
    fill(tmp_path, batches=3)
    (tmp_path / "buffer.lock").write_text("99999\n")  # left by a process that died
    reopen_five_times(tmp_path)


def test_second_agent_is_refused(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys,time; from agent.buffer import Ring; r = Ring.open(sys.argv[1]); "
         "print('held', flush=True); time.sleep(30)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(BufferLocked, match=f"in use by another agent \\(pid {holder.pid}\\)"):
            Ring.open(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    Ring.open(tmp_path).close()  # the kernel released the lock with the process


def test_boot_count_and_last_committed_reading_survive(tmp_path: Path) -> None:
    """What the first batch after a start reports: boots, and the gap since the last committed reading."""
    ring = Ring.open(tmp_path)
    assert ring.boot_count == 1 and ring.last_committed_ts is None
    ring.commit([SealedBatch(ring.allocate_seq(), b"x", 1, 1_700_000_000_000, 1_700_000_009_500)])
    ring.close()
    ring = Ring.open(tmp_path)
    assert ring.boot_count == 2 and ring.last_committed_ts == 1_700_000_009_500
    ring.close()


def test_sequence_numbers_never_repeat_across_restarts(tmp_path: Path) -> None:
    """Batches published from memory were never committed; their numbers must not come back."""
    ring = Ring.open(tmp_path)
    used = [ring.allocate_seq() for _ in range(5)]  # published from memory, never committed
    ring.close()
    ring = Ring.open(tmp_path)
    assert ring.allocate_seq() > max(used)
    ring.close()
