"""The buffer's lock and file pulled away from under a running agent: `rm buffer.lock` lets no
second agent in, and `rm buffer.sqlite*` or another file moved to its path loses no backlog — the
open connection still reads the old file whole, and it is copied back to the path."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agent.buffer import Ring, SealedBatch, Store
from agent.buffer.store import LOOK_EVERY
from agent.errors import BufferLocked

REPO = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def batch(store: Store, size: int = 400) -> SealedBatch:
    return SealedBatch(store.allocate_seq(), os.urandom(size), 9, 1000, 1999)


def test_a_removed_lock_file_lets_no_second_ring_in(tmp_path: Path) -> None:
    first = Ring.open(tmp_path)
    try:
        (tmp_path / "buffer.lock").unlink()
        with pytest.raises(BufferLocked, match="is in use by another agent"):
            Ring.open(tmp_path)
    finally:
        first.close()
    Ring.open(tmp_path).close()  # released with the first


def test_a_removed_lock_file_lets_no_second_agent_in(tmp_path: Path) -> None:
    """A second `edge-agent run` on the same buffer directory, in its own process, with the lock file
    gone: refused in one line, exit 2."""
    buffer = tmp_path / "buf"
    first = Ring.open(buffer)
    try:
        (buffer / "buffer.lock").unlink()
        config = tmp_path / "agent.yaml"
        config.write_text(f"gateway: {{id: gw-1, site: s}}\nbuffer: {{path: {buffer}}}\n")
        done = subprocess.run([sys.executable, "-m", "agent", "run", "-c", str(config)], capture_output=True,
                              text=True, timeout=60, cwd=REPO, env={**os.environ, "NOTIFY_SOCKET": ""})
    finally:
        first.close()
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"error: buffer {buffer} is in use by another agent" in done.stderr


def _look(store: Store, clock: Clock) -> None:
    clock.now += LOOK_EVERY + 0.1
    store.tick()


def test_database_files_removed_while_running_are_copied_back(tmp_path: Path) -> None:
    clock = Clock()
    store = Store(tmp_path, 1 << 24, 0, clock=clock)
    kept = [batch(store) for _ in range(50)]
    store.commit(kept)
    store.ack(kept[0].seq)  # acknowledged, not yet committed: stays acknowledged after the rescue
    epoch = store.epoch
    store.take_notices()
    for name in ("buffer.sqlite", "buffer.sqlite-wal", "buffer.sqlite-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    _look(store, clock)
    (notice,) = store.take_notices()
    assert notice.kind == "buffer_lost"
    assert notice.body()["reason"] == "buffer file removed while in use"
    assert (notice.body()["salvaged_batches"], notice.body()["lost_batches"], notice.body()["lost_readings"]) == \
        (50, 0, 0)
    assert store.on_disk and store.epoch == epoch  # the same file's content: dedup keys stay valid
    later = batch(store)
    store.commit([later])
    store.close()
    ring = Ring.open(tmp_path)  # what the next start finds at the path
    try:
        assert [b.seq for b in ring.unacked()] == [b.seq for b in kept[1:]] + [later.seq]
        assert ring.epoch == epoch
    finally:
        ring.close()


def test_another_file_moved_to_the_path_is_noticed_and_kept_aside(tmp_path: Path) -> None:
    clock = Clock()
    store = Store(tmp_path, 1 << 24, 0, clock=clock)
    kept = [batch(store) for _ in range(20)]
    store.commit(kept)
    store.take_notices()
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:  # a valid database: the header check alone would not notice
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    os.replace(other, tmp_path / "buffer.sqlite")
    _look(store, clock)
    (notice,) = store.take_notices()
    body = notice.body()
    assert body["reason"].startswith("buffer file replaced while in use") and body["lost_batches"] == 0
    aside = Path(body["moved_to"])
    assert aside.parent == tmp_path and (aside / "buffer.sqlite").exists()  # the stranger is kept, not deleted
    assert [b.seq for b in store.unacked()] == [b.seq for b in kept]
    store.close()


def test_a_healthy_file_is_left_alone(tmp_path: Path) -> None:
    clock = Clock()
    store = Store(tmp_path, 1 << 24, 0, clock=clock)
    store.commit([batch(store)])
    store.take_notices()
    for _ in range(3):
        _look(store, clock)
    assert store.take_notices() == [] and store.generation == 0
    store.close()
