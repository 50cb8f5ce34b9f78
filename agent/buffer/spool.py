"""When sealed batches touch the disk: the buffer modes (docs/design.md), as a policy over the store.

mode `outage` (default): while the broker is connected, a batch is published from memory (ahead of
any backlog still draining: the platform wants the present first) and written to disk only if its
PUBACK has not come within `spill_after`, when the connection drops, or at shutdown. While
disconnected, sealed batches, and events that could not be published, are committed at least every
`outage_commit`. Online with an empty backlog, the card sees no writes at all.
mode `always`: every batch is committed before it is handed to the publisher.

`historical` means historical: in both modes a batch sealed while connected is offered live
(`take_live`), once, whether or not it is also on disk; only what was not published live — sealed
while disconnected, or sent again after a lost session or a refusal — comes out of `backlog`.

The publisher drives it: `add` a sealed batch, `take` what to publish, `acked` on PUBACK,
`set_connected` on link changes, and `tick` about once a second. It runs on the event loop
(agent/threads.py); the store under it (`Store`: disk, or memory while the disk fails) is too.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from agent.buffer.ring import Loss, SealedBatch, add_loss
from agent.buffer.store import Store
from agent.config.models import BufferMode
from agent.threads import confine, confined

ACK_LINGER = 15.0  # seconds an acknowledgement may wait to ride along with the next insert commit
ACK_BATCH = 100  # ... or until this many are pending (draining a backlog)
LOSSES_KEPT = 1000  # unreported runs of lost batches; past this the oldest two are joined (counts stay exact)


@dataclass
class _Held:
    batch: SealedBatch
    since: float
    published: bool = False
    on_disk: bool = False  # committed too (mode always, a final draft, a late spill): acks go to the store


class Spool:
    def __init__(self, ring: Store, mode: BufferMode = BufferMode.OUTAGE, spill_after: float = 2.0,
                 outage_commit: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        confine(self)
        self.ring = ring
        self.mode = mode
        self.spill_after = spill_after
        self.outage_commit = outage_commit
        self.clock = clock
        self.connected = False
        self._memory: OrderedDict[int, _Held] = OrderedDict()  # published or about to be, not on disk
        self._unwritten: list[SealedBatch] = []  # sealed while offline, committed within outage_commit
        self._unwritten_since = 0.0
        self._unwritten_events: list[str] = []  # events raised while offline, committed with the batches
        self._acks_since: float | None = None  # when the oldest pending disk acknowledgement arrived
        self.commits = 0
        self.slowest_commit = 0.0  # seconds, the longest commit so far (an SD card's fsync can take seconds)
        self._losses: list[Loss] = []  # evicted and not yet reported, one entry per run of consecutive seqs
        self._held: int | None = None  # seq of the open batch's draft: on disk, not to be published yet
        self._held_generation = 0  # the store generation that draft was written to

    # ------------------------------------------------------------------ inputs

    @confined
    def add(self, batch: SealedBatch) -> None:
        """A newly sealed batch."""
        self._forget_stale_draft()
        if batch.seq == self._held or self.mode is BufferMode.ALWAYS:
            if batch.seq == self._held:  # the final version of a draft replaces it on disk at once
                self._held = None
            self._commit([batch])
            if self.connected:
                self._memory[batch.seq] = _Held(batch, self.clock(), on_disk=True)
        elif self.connected:  # live first, even while a backlog drains behind it
            self._memory[batch.seq] = _Held(batch, self.clock())
        else:
            if not self._unwritten and not self._unwritten_events:
                self._unwritten_since = self.clock()
            self._unwritten.append(batch)
            if self.clock() - self._unwritten_since >= self.outage_commit:
                self._flush_unwritten()

    @confined
    def acked(self, seq: int) -> None:
        """PUBACK with a success code for `seq`."""
        held = self._memory.pop(seq, None)
        if held is None or held.on_disk:
            self.ring.ack(seq)
            if self._acks_since is None:
                self._acks_since = self.clock()
            if self.ring.pending_acks >= ACK_BATCH:  # draining a backlog: a crash re-sends at most this many
                self._commit([])

    def keep_event(self, body: str) -> None:
        """An event that cannot be published now (offline): on disk within `outage_commit`, with the
        batches, so a crash or a power cut does not lose what explains a gap in the data."""
        if not self._unwritten and not self._unwritten_events:
            self._unwritten_since = self.clock()
        self._unwritten_events.append(body)

    def stored_events(self, after: int = 0, limit: int = 100) -> list[tuple[int, str]]:
        """Events kept on disk, oldest first: (id, JSON body)."""
        self._flush_unwritten()
        return self.ring.stored_events(after, limit)

    def event_acked(self, event_id: int) -> None:
        """PUBACK for a stored event: deleted with the next commit."""
        self.ring.ack_event(event_id)
        if self._acks_since is None:
            self._acks_since = self.clock()

    def replace(self, seq: int, parts: list[SealedBatch]) -> None:
        """`seq` is too large for the broker: its parts take its place, on disk, in one commit."""
        self._memory.pop(seq, None)
        self.ring.ack(seq)
        self._commit(parts)

    def draft(self, batch: SealedBatch) -> None:
        """The open batch so far, committed under its final seq and held back from publishing until
        sealed: a power cut during an outage then loses only what came after the last draft."""
        self._held, self._held_generation = batch.seq, self.ring.generation
        self._commit([batch])

    def refused(self, seq: int) -> None:
        """The broker refused `seq` (or it could not be handed to the client): keep it, on disk."""
        self._spill([seq])

    def set_connected(self, connected: bool) -> None:
        """Link state changed; on a drop everything held in memory goes to disk at once. On a
        connection what was sealed offline is committed now, ahead of the backlog it joins (so
        whatever that evicts is known before the publisher reports the outage's losses)."""
        self.connected = connected
        if connected:
            self._flush_unwritten()
        else:
            self._spill(list(self._memory))

    def tick(self) -> None:
        """Periodic duties: spill batches whose PUBACK is late, commit offline batches, flush acks."""
        now = self.clock()
        late = [seq for seq, held in self._memory.items() if now - held.since >= self.spill_after and not held.on_disk]
        self._spill(late)
        self.ring.tick()
        if (self._unwritten or self._unwritten_events) and now - self._unwritten_since >= self.outage_commit:
            self._flush_unwritten()
        pending = self.ring.pending_acks + self.ring.pending_event_acks
        if self._acks_since is not None and (pending >= ACK_BATCH or now - self._acks_since >= ACK_LINGER):
            self._commit([])

    def close(self) -> None:
        """Shutdown: everything not acknowledged reaches the disk."""
        self._spill(list(self._memory))
        self._flush_unwritten()
        self._commit([])

    # ------------------------------------------------------------------ output

    def take_live(self, limit: int | None = None) -> list[SealedBatch]:
        """Batches held in memory that have not been handed to the publisher yet (oldest first)."""
        fresh = [held for held in self._memory.values() if not held.published][:limit]
        for held in fresh:
            held.published = True
        return [held.batch for held in fresh]

    def backlog(self, after: int = 0) -> Iterator[SealedBatch]:
        """Stored batches not yet acknowledged and not offered live, oldest first (streaming)."""
        self._flush_unwritten()
        self._forget_stale_draft()
        return (batch for batch in self.ring.unacked(after) if batch.seq != self._held and batch.seq not in self._memory)

    def take_losses(self) -> list[Loss]:
        """What the ring has given up since the last call, for the publisher to announce."""
        for loss in self.ring.take_losses():
            add_loss(self._losses, loss)
        losses, self._losses = self._losses, []
        return losses

    @property
    def in_memory(self) -> int:
        return len(self._memory)

    # ------------------------------------------------------------------ internals

    def _forget_stale_draft(self) -> None:
        """The store changed since the draft was written: the assembler has made that draft a batch
        of its own (see Assembler._settle), to be published like any other."""
        if self._held is not None and self.ring.generation != self._held_generation:
            self._held = None

    def _spill(self, seqs: list[int]) -> None:
        """To disk. A batch already published leaves the live queue (a re-send is historical); one
        still waiting for its turn stays in it, now also on disk."""
        batches = []
        for seq in seqs:
            held = self._memory.get(seq)
            if held is None:
                continue
            if not held.on_disk:
                batches.append(held.batch)
                held.on_disk = True
            if held.published or not self.connected:
                del self._memory[seq]
        if batches:
            self._commit(batches)

    def _flush_unwritten(self) -> None:
        if self._unwritten or self._unwritten_events:
            batches, self._unwritten = self._unwritten, []
            events, self._unwritten_events = self._unwritten_events, []
            self._commit(batches, events)

    def _commit(self, batches: list[SealedBatch], events: list[str] | None = None) -> None:
        started = time.monotonic()
        result = self.ring.commit(batches, events or ())  # carries every pending acknowledgement too
        self.slowest_commit = max(self.slowest_commit, time.monotonic() - started)
        self._acks_since = None
        self.commits += 1
        for loss in result.losses:
            add_loss(self._losses, loss)
        if len(self._losses) > LOSSES_KEPT:  # an envelope: its span may cover batches that did arrive
            self._losses[:2] = [self._losses[1].joined_to(self._losses[0])]
