"""Buffer modes: when batches touch the disk. A fake clock drives time; the ring is real SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.buffer import Ring, SealedBatch, Spool, Store
from agent.config.models import BufferMode


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ring(tmp_path: Path):  # type: ignore[no-untyped-def]
    ring = Store(tmp_path, max_bytes=1 << 30, min_free_bytes=0)
    yield ring
    ring.close()


def sealed(ring: Ring, readings: int = 40) -> SealedBatch:
    return SealedBatch(ring.allocate_seq(), b"p" * 300, readings, 0, 1)


def on_disk(ring: Ring) -> list[int]:
    return [b.seq for b in ring.unacked()]


def test_outage_mode_online_never_touches_the_disk_when_acks_come(ring: Ring) -> None:
    clock = Clock()
    spool = Spool(ring, BufferMode.OUTAGE, spill_after=2.0, clock=clock)
    spool.set_connected(True)
    for _ in range(100):
        batch = sealed(ring)
        spool.add(batch)
        assert spool.take_live() == [batch]
        clock.now += 0.5
        spool.acked(batch.seq)
        spool.tick()
    assert spool.commits == 0 and on_disk(ring) == []


def test_offline_events_are_committed_with_the_batches_and_deleted_once_acknowledged(ring: Ring) -> None:
    from agent.buffer.ring import EVENTS_KEPT

    clock = Clock()
    spool = Spool(ring, BufferMode.OUTAGE, outage_commit=1.0, clock=clock)
    spool.keep_event('{"event": "device_offline"}')
    spool.add(sealed(ring))
    spool.tick()
    assert ring.stored_events() == [] and spool.commits == 0  # not yet: within outage_commit
    clock.now += 1.0
    spool.tick()
    assert spool.commits == 1  # events and batches in one transaction
    (event_id, body), = ring.stored_events()
    assert body == '{"event": "device_offline"}'
    spool.event_acked(event_id)
    assert ring.stored_events() == []  # acknowledged: no longer offered, deleted at the next commit
    for n in range(EVENTS_KEPT + 5):
        spool.keep_event(f'{{"n": {n}}}')
    spool.close()
    kept = ring.stored_events(limit=2 * EVENTS_KEPT)
    assert len(kept) == EVENTS_KEPT and kept[0][1] == '{"n": 5}'  # the newest are kept
    assert dict(ring._ring._conn.execute("SELECT key, value FROM meta"))["events_dropped"] == 5


def test_outage_mode_spills_a_batch_whose_ack_is_late(ring: Ring) -> None:
    clock = Clock()
    spool = Spool(ring, BufferMode.OUTAGE, spill_after=2.0, clock=clock)
    spool.set_connected(True)
    batch = sealed(ring)
    spool.add(batch)
    spool.take_live()
    clock.now += 1.9
    spool.tick()
    assert on_disk(ring) == []
    clock.now += 0.2
    spool.tick()
    assert on_disk(ring) == [batch.seq]
    spool.acked(batch.seq)  # the late ack still removes it: with the next commit, or after ACK_LINGER
    clock.now += 14.0
    spool.tick()
    assert on_disk(ring) == [] and ring.backlog == 1 and spool.commits == 1  # not resent, deleted later
    clock.now += 1.0
    spool.tick()
    assert ring.backlog == 0 and spool.commits == 2


def test_acknowledgements_ride_along_with_the_next_insert(ring: Ring) -> None:
    """always mode: one commit per batch, carrying the previous batch's deletion (card wear)."""
    clock = Clock()
    spool = Spool(ring, BufferMode.ALWAYS, clock=clock)
    spool.set_connected(True)
    for _ in range(10):
        batch = sealed(ring)
        spool.add(batch)
        assert list(spool.backlog()) == []  # live, not backlog: published once, unflagged
        for stored in spool.take_live():
            spool.acked(stored.seq)
        for _ in range(10):
            clock.now += 1.0
            spool.tick()
    assert spool.commits == 10
    assert ring.backlog == 1 and ring.pending_acks == 1  # the last deletion waits for the next insert


def test_disconnect_spills_everything_in_memory(ring: Ring) -> None:
    clock = Clock()
    spool = Spool(ring, clock=clock)
    spool.set_connected(True)
    batches = [sealed(ring) for _ in range(3)]
    for b in batches:
        spool.add(b)
    spool.take_live()
    spool.set_connected(False)
    assert on_disk(ring) == [b.seq for b in batches] and spool.in_memory == 0


def test_offline_batches_are_committed_within_outage_commit(ring: Ring) -> None:
    clock = Clock()
    spool = Spool(ring, BufferMode.OUTAGE, outage_commit=1.0, clock=clock)
    first, second = sealed(ring), sealed(ring)
    spool.add(first)
    clock.now += 0.5
    spool.add(second)
    assert on_disk(ring) == []
    clock.now += 0.5
    spool.tick()
    assert on_disk(ring) == [first.seq, second.seq]
    assert spool.commits == 1  # one commit for both: the card sees one write per second at most


def test_live_batches_go_first_while_the_backlog_drains(ring: Ring) -> None:
    """After an outage the present is published live from memory; the backlog follows from disk."""
    clock = Clock()
    spool = Spool(ring, outage_commit=0.0, clock=clock)
    old = sealed(ring)
    spool.add(old)
    spool.set_connected(True)
    new = sealed(ring)
    spool.add(new)
    assert spool.take_live() == [new]
    assert [b.seq for b in spool.backlog()] == [old.seq]


def test_always_mode_commits_before_publishing_and_publishes_live(ring: Ring) -> None:
    spool = Spool(ring, BufferMode.ALWAYS, clock=Clock())
    spool.set_connected(True)
    batch = sealed(ring)
    spool.add(batch)
    assert on_disk(ring) == [batch.seq]  # committed first
    assert spool.take_live() == [batch] and list(spool.backlog()) == []  # then offered live, once
    spool.set_connected(False)  # not acknowledged before the link went: a re-send is from the backlog
    assert [b.seq for b in spool.backlog()] == [batch.seq]


def test_a_late_unpublished_batch_goes_to_disk_and_stays_live(ring: Ring) -> None:
    """outage mode: a batch still waiting for a window slot after spill_after is written for safety
    but is still published live (historical is only for what was not)."""
    clock = Clock()
    spool = Spool(ring, BufferMode.OUTAGE, spill_after=2.0, clock=clock)
    spool.set_connected(True)
    batch = sealed(ring)
    spool.add(batch)
    clock.now += 3.0
    spool.tick()
    assert on_disk(ring) == [batch.seq] and list(spool.backlog()) == []
    assert spool.take_live() == [batch]
    spool.acked(batch.seq)
    spool.close()
    assert on_disk(ring) == []  # the acknowledgement reached the disk copy too


def test_close_commits_everything_unacknowledged(ring: Ring) -> None:
    clock = Clock()
    spool = Spool(ring, clock=clock)
    spool.set_connected(True)
    live = sealed(ring)
    spool.add(live)
    spool.set_connected(False)
    offline = sealed(ring)
    spool.add(offline)  # not yet due for commit
    spool.close()
    assert on_disk(ring) == [live.seq, offline.seq]


def test_buffer_cli_reads_beside_a_running_owner(tmp_path: Path) -> None:
    """`edge-agent buffer stats|dump` open read-only: they work while the ring is held open."""
    import json
    import subprocess
    import sys

    import msgpack

    ring = Ring.open(tmp_path / "buf", max_bytes=1 << 30, min_free_bytes=0)
    ring.commit([SealedBatch(ring.allocate_seq(), msgpack.packb({"v": 1, "rows": [1, 2]}), 2, 10, 20)
                 for _ in range(3)])
    try:
        stats = subprocess.run([sys.executable, "-m", "agent", "buffer", "stats", "--path", str(tmp_path / "buf"),
                                "--json"], capture_output=True, text=True, check=True)
        figures = json.loads(stats.stdout)
        assert figures["batches"] == 3 and figures["readings"] == 6 and figures["epoch"] == ring.epoch
        dump = subprocess.run([sys.executable, "-m", "agent", "buffer", "dump", "--path", str(tmp_path / "buf"),
                               "--decode"], capture_output=True, text=True, check=True)
        lines = dump.stdout.splitlines()
        assert lines[0].startswith("seq=1 readings=2") and "crc=ok" in lines[0]
        assert json.loads(lines[1]) == {"v": 1, "rows": [1, 2]}
    finally:
        ring.close()
    missing = subprocess.run([sys.executable, "-m", "agent", "buffer", "stats", "--path", str(tmp_path / "none")],
                             capture_output=True, text=True)
    assert missing.returncode == 1 and "no buffer here" in missing.stderr
