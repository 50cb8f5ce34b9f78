"""The stand-in for the disk ring while the disk fails: the same calls, bounded by bytes, gone with
the process.

On a gateway the SD card going read-only (ext4 remounts `ro` on errors), filling up or returning EIO
is the common failure; polling and publishing must not stop for it. The memory ring keeps what
would have gone to disk, evicts the oldest (counted, reported like disk evictions) past its bound,
and is replayed into the disk ring when the disk is back (`Store`).

Numbering: it continues the disk ring's epoch and sequence numbers within the block already
reserved on disk; past that block it switches to a fresh epoch, so that if the agent dies now and
restarts on the disk ring (which continues after its reserved block, under its own epoch) no dedup
key (epoch, seq) is ever used twice. Without any knowledge of the disk (it failed at start) it
starts a fresh epoch at a sequence number above anything a ring could have reached (the time in
seconds), so replaying it into that ring later cannot collide with the ring's rows.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence

from agent.buffer.ring import EVENTS_KEPT, CommitResult, Loss, RingStats, SealedBatch, add_loss
from agent.threads import confine, confined


class MemoryRing:
    def __init__(self, max_bytes: int, epoch: int | None = None, next_seq: int | None = None,
                 reserved: int | None = None, boot_count: int = 1, dropped_total: int = 0,
                 last_committed_ts: int | None = None) -> None:
        """`next_seq`/`reserved`/`epoch` from the disk ring when it was known; None: start blind."""
        confine(self)
        self.max_bytes = max_bytes
        blind = next_seq is None or epoch is None
        self.epoch = secrets.randbits(31) if blind or epoch is None else epoch
        self._next_seq = int(time.time()) if next_seq is None else next_seq
        self._reserved = reserved if reserved is not None and not blind else None  # None: own epoch already
        self.boot_count = boot_count
        self.dropped_total = 0 if blind else dropped_total
        self.dropped_batches = 0  # evicted from memory, all epochs
        self.lost_readings = 0  # ... and their readings
        self.last_committed_ts = last_committed_ts
        self.first_seq = self._next_seq  # sequence numbers from here on were handed out by memory
        self._batches: OrderedDict[int, SealedBatch] = OrderedDict()
        self._bytes = 0
        self._events: OrderedDict[int, str] = OrderedDict()
        self._event_id = 0
        self.events_dropped = 0
        self._pending_acks: set[int] = set()
        self._pending_event_acks: set[int] = set()

    # ------------------------------------------------------------------ the ring's calls

    @confined
    def allocate_seq(self) -> int:
        seq = self._next_seq
        if self._reserved is not None and seq > self._reserved:  # past the disk's block: an epoch of our own
            self.epoch = secrets.randbits(31)
            self.dropped_total = 0
            self._reserved = None
        self._next_seq += 1
        return seq

    @confined
    def ack(self, seq: int) -> None:
        self._pending_acks.add(seq)

    def ack_event(self, event_id: int) -> None:
        self._pending_event_acks.add(event_id)

    @confined
    def commit(self, batches: Sequence[SealedBatch] = (), events: Sequence[str] = ()) -> CommitResult:
        for seq in [*self._pending_acks, *(b.seq for b in batches)]:
            gone = self._batches.pop(seq, None)
            if gone is not None:
                self._bytes -= gone.cost
        self._pending_acks.clear()
        for event_id in self._pending_event_acks:
            self._events.pop(event_id, None)
        self._pending_event_acks.clear()
        for body in events:
            self._event_id += 1
            self._events[self._event_id] = body
        while len(self._events) > EVENTS_KEPT:
            self._events.popitem(last=False)
            self.events_dropped += 1
        for batch in batches:
            self._batches[batch.seq] = batch
            self._bytes += batch.cost
            newest = self.last_committed_ts
            self.last_committed_ts = batch.t_last if newest is None else max(newest, batch.t_last)
        if batches and list(self._batches)[-1] != max(self._batches):  # a late spill: keep seq order
            self._batches = OrderedDict(sorted(self._batches.items()))
        return CommitResult(tuple(self._evict()))

    def unacked(self, after: int = 0, page: int = 64) -> Iterator[SealedBatch]:
        for seq, batch in list(self._batches.items()):
            if seq > after and seq in self._batches and seq not in self._pending_acks:
                yield batch

    def stored_events(self, after: int = 0, limit: int = 100) -> list[tuple[int, str]]:
        return [(i, body) for i, body in self._events.items()
                if i > after and i not in self._pending_event_acks][:limit]

    def stats(self) -> RingStats:
        seqs = list(self._batches)
        readings = sum(b.readings for b in self._batches.values())
        oldest = self._batches[seqs[0]] if seqs else None
        return RingStats(self.epoch, self.boot_count, len(seqs), self._bytes, readings, seqs[0] if seqs else None,
                         seqs[-1] if seqs else None, oldest.t_first if oldest else None, self.dropped_total,
                         self.dropped_batches, 0)

    def close(self) -> None:
        """Nothing to close: what memory holds is lost with the process (said by buffer_unavailable)."""

    def holds(self, seq: int) -> bool:
        return seq in self._batches

    @property
    def pending_acks(self) -> int:
        return len(self._pending_acks)

    @property
    def pending_event_acks(self) -> int:
        return len(self._pending_event_acks)

    @property
    def backlog(self) -> int:
        return len(self._batches)

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def bytes(self) -> int:
        return self._bytes

    # ------------------------------------------------------------------ handing over to the disk

    def snapshot(self) -> tuple[list[SealedBatch], list[str]]:
        """Everything not acknowledged, for the disk ring (oldest first)."""
        self.commit()  # apply pending acknowledgements first
        return list(self._batches.values()), list(self._events.values())

    def clear(self) -> None:
        """The disk ring has taken everything over."""
        self._batches.clear()
        self._events.clear()
        self._bytes = 0

    def _evict(self) -> list[Loss]:
        losses: list[Loss] = []
        while self._bytes > self.max_bytes and self._batches:
            _, lost = self._batches.popitem(last=False)
            self._bytes -= lost.cost
            add_loss(losses, Loss.of(lost.seq, lost.readings, lost.t_first, lost.t_last))
            self.dropped_total += lost.readings
            self.dropped_batches += 1
            self.lost_readings += lost.readings
        return losses
