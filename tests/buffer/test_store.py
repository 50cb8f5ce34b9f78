"""The store under disk faults, on real file systems: an ext4 card driven read-only (testkit/card.py, needs
root) and a file overwritten in place. What goes to memory, what is acknowledged where, what comes
back after a recovery."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.buffer import SealedBatch, Spool, Store
from agent.config.models import BufferMode
from testkit.card import Card, CardUnavailable


@pytest.fixture
def card(tmp_path: Path) -> Iterator[Card]:
    try:
        sd = Card(tmp_path / "sd.img", tmp_path / "sd", mib=16)
    except CardUnavailable as exc:
        pytest.skip(str(exc))
    yield sd
    sd.close()


def batch(store: Store, size: int = 400) -> SealedBatch:
    return SealedBatch(store.allocate_seq(), os.urandom(size), 9, 1000, 1999)


def test_a_batch_that_fell_to_memory_is_acknowledged_there(card: Card) -> None:
    """always mode: the commit that meets the read-only card puts the batch in memory; its PUBACK
    must release it there (not wait for a disk that is away) and it must not be offered again."""
    store = Store(card.where / "buf", 1 << 24, 0)
    spool = Spool(store, BufferMode.ALWAYS)
    spool.set_connected(True)
    first = batch(store)
    spool.add(first)
    card.fail()
    second = batch(store)  # allocated from the disk's block, committed after the failure
    spool.add(second)
    assert not store.on_disk and [n.kind for n in store.take_notices()] == ["buffer_unavailable"]
    assert [b.seq for b in spool.take_live()] == [first.seq, second.seq]
    spool.acked(first.seq)
    spool.acked(second.seq)
    store.commit()  # acknowledgements take effect with the next commit
    assert list(spool.backlog()) == [] and store.backlog == 0
    card.repair()
    store._retry_at = 0
    spool.tick()
    assert store.on_disk and [n.kind for n in store.take_notices()] == ["buffer_restored"]
    assert list(spool.backlog()) == []  # the acknowledged first batch did not come back from the disk
    store.close()


def test_a_recovery_keeps_the_acknowledgements_not_yet_committed(tmp_path: Path) -> None:
    store = Store(tmp_path / "buf", 1 << 24, 0)
    batches = [batch(store) for _ in range(3)]
    store.commit(batches)
    store.ack(batches[0].seq)
    store.ack(batches[1].seq)
    db = tmp_path / "buf" / "buffer.sqlite"
    with open(db, "r+b") as f:
        f.write(os.urandom(db.stat().st_size))
    store._look_at = 0
    store.tick()
    assert [n.kind for n in store.take_notices()] == ["buffer_lost"]
    assert [b.seq for b in store.unacked()] == [batches[2].seq]  # acknowledged ones are not sent again
    store.close()
