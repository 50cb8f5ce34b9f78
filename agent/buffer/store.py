"""Where batches are kept: the disk ring, or memory while the disk fails — swapped by itself.

Storage policy (docs/design.md): the agent never stops polling and publishing because the disk
failed. A failing read or write (EIO, a full disk, a read-only remount) detaches the store from
the disk: batches and offline events go to a bounded `MemoryRing`, a `buffer_unavailable` notice
says why and what is at risk, and the disk is retried with backoff (5 s doubling to 5 min). When it
opens again, what memory holds is replayed into it in one commit (`buffer_restored`). Damage (a
malformed page met by a read, the background integrity check, the file overwritten) is recovered
at once: the file is moved aside, every batch that passes its CRC is salvaged into a fresh file
with a new epoch, and the rest is counted lost (`buffer_lost`). Polls never wait for any of it.

While detached, the batches that were on disk stay there (they are delivered after re-attaching);
acknowledgements for them are kept and applied then. Losses in memory (the bound) are counted
and reported like disk evictions; a crash while detached loses what memory held, which the next
start's gap reports.

Runs on the event loop, like everything that holds pipeline state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from agent import log
from agent.buffer.memory import MemoryRing
from agent.buffer.openfile import REMOVED, REPLACED
from agent.buffer.ring import CommitResult, Loss, Ring, RingStats, SealedBatch, add_loss
from agent.buffer.schema import Recovery
from agent.errors import BufferCorrupt, BufferLocked, StorageError
from agent.events import BufferLost, BufferRestored, BufferUnavailable, Event
from agent.threads import confine, confined

RETRY_FIRST = 5.0  # seconds before the first attempt to re-attach the disk
RETRY_MAX = 300.0
LOOK_EVERY = 5.0  # seconds between looks at the file's header (overwritten or removed under us)
DEFAULT_MEMORY_BYTES = 32 * 2**20  # a 512 MB gateway keeps ~50 min of a 50-meter park at 10 s


class Store:
    def __init__(self, directory: str | Path, max_bytes: int, min_free_bytes: int,
                 memory_bytes: int = DEFAULT_MEMORY_BYTES, clock: Callable[[], float] = time.monotonic) -> None:
        """Opens the disk ring; if the disk fails already, starts in memory (BufferLocked still
        raises: a second agent on the same directory is refused, not worked around)."""
        confine(self)
        self.directory = Path(directory)
        self.max_bytes, self.min_free_bytes, self.memory_bytes = max_bytes, min_free_bytes, memory_bytes
        self.clock = clock
        self.log = log.get("buffer")
        self.generation = 0  # changes whenever the backing ring does: readers restart their cursors
        self.notices: list[Event] = []  # what the operator must hear (buffer_unavailable, _restored, _lost)
        self._losses: list[Loss] = []  # given up outside a commit (a replay into the disk that overflowed)
        self._ring: Ring | None = None
        self._memory: MemoryRing | None = None
        self._deferred_acks: set[int] = set()  # acks for disk batches while detached
        self._retry_at = 0.0
        self._look_at = 0.0  # next look at the file's header
        self._backoff = RETRY_FIRST
        self.unavailable: tuple[str, float] | None = None  # (reason, since: wall s) while in memory
        try:
            ring = Ring.open(self.directory, max_bytes, min_free_bytes)
        except BufferLocked:
            raise
        except StorageError as exc:
            self._detach(str(exc), None)
            self.recovery = Recovery()
            self.last_before_start: int | None = None
        else:
            self._ring = ring
            self.recovery = ring.recovery
            self.last_before_start = ring.last_committed_ts  # for the gap the first batch reports
            if ring.recovery.happened:
                self._note_lost(ring.recovery, ring)

    # ------------------------------------------------------------------ numbering (for the assembler)

    @property
    def epoch(self) -> int:
        return self._current.epoch

    @property
    def boot_count(self) -> int:
        return self._current.boot_count

    @property
    def dropped_total(self) -> int:
        return self._current.dropped_total

    @confined
    def allocate(self) -> tuple[int, int]:
        """A fresh dedup key (epoch, seq); reserving a block on a failing disk detaches the store."""
        seq = self._guarded(lambda ring: ring.allocate_seq())
        return self._current.epoch, seq

    def allocate_seq(self) -> int:
        return self.allocate()[1]

    # ------------------------------------------------------------------ the ring's calls, guarded

    @confined
    def commit(self, batches: Sequence[SealedBatch] = (), events: Sequence[str] = ()) -> CommitResult:
        return self._guarded(lambda ring: ring.commit(batches, events))  # the spool times its commits

    @confined
    def ack(self, seq: int) -> None:
        memory = self._memory
        if memory is not None and seq < memory.first_seq and not memory.holds(seq):
            self._deferred_acks.add(seq)  # a disk batch acknowledged while the disk is away
        else:
            self._current.ack(seq)

    def ack_event(self, event_id: int) -> None:
        self._current.ack_event(event_id)

    def unacked(self, after: int = 0) -> Iterator[SealedBatch]:
        """The backlog, oldest first. A read that meets damage or a failing disk ends the iteration
        (after the store has recovered or detached: `generation` says so)."""
        ring = self._current
        try:
            yield from ring.unacked(after)
        except StorageError as exc:
            self._fault(exc)

    def stored_events(self, after: int = 0, limit: int = 100) -> list[tuple[int, str]]:
        return self._guarded(lambda ring: ring.stored_events(after, limit))

    def stats(self) -> RingStats:
        return self._guarded(lambda ring: ring.stats())

    @property
    def pending_acks(self) -> int:
        return self._current.pending_acks

    @property
    def pending_event_acks(self) -> int:
        return self._current.pending_event_acks

    @property
    def backlog(self) -> int:
        return self._current.backlog

    @property
    def last_committed_ts(self) -> int | None:
        return self._current.last_committed_ts

    @property
    def on_disk(self) -> bool:
        return self._ring is not None

    def take_losses(self) -> list[Loss]:
        losses, self._losses = self._losses, []
        return losses

    def take_notices(self) -> list[Event]:
        notices, self.notices = self.notices, []
        return notices

    # ------------------------------------------------------------------ lifecycle

    @confined
    def tick(self) -> None:
        """About once a second: recover damage the background check found; retry a detached disk."""
        ring, now = self._ring, self.clock()
        if ring is not None and ring.integrity not in (None, "ok") and not ring.integrity.startswith("unverified"):
            self._recover(f"integrity check: {ring.integrity}")
        elif ring is not None and now >= self._look_at:
            self._look_at = now + LOOK_EVERY
            problem = ring.file_problem()
            if problem in (REMOVED, REPLACED):
                self._rescue(problem)
            elif problem is not None:
                self._recover(problem)
        elif self._memory is not None and now >= self._retry_at:
            self._attach()

    def close(self) -> None:
        if self._ring is not None:
            self._ring.close()
        elif self._memory is not None and self._memory.backlog:
            self.log.error("stopping with the disk unavailable: batches held in memory are lost",
                           batches=self._memory.backlog, reason=self.unavailable[0] if self.unavailable else "")

    # ------------------------------------------------------------------ faults

    @property
    def _current(self) -> Ring | MemoryRing:
        current = self._ring or self._memory
        assert current is not None
        return current

    def _guarded(self, op: Callable[[Any], Any]) -> Any:
        for _ in range(3):  # disk -> recovered disk -> memory, at most
            ring = self._current
            try:
                return op(ring)
            except StorageError as exc:
                self._fault(exc)
        return op(self._current)

    def _fault(self, exc: StorageError) -> None:
        if isinstance(exc, BufferLocked):
            raise exc
        if isinstance(exc, BufferCorrupt) and self._ring is not None:
            self._recover(str(exc))
        elif self._ring is not None:
            self._detach(str(exc), self._ring)

    def _recover(self, reason: str) -> None:
        old = self._ring
        assert old is not None
        self.log.error("buffer damaged while running: moving it aside and salvaging", reason=reason)
        try:
            new = old.recover(reason)
        except StorageError as exc:
            self._ring = None
            self._detach(f"{reason}; recovering it failed: {exc}", old, released=True)
            return
        self._ring = new
        self.generation += 1
        self._note_lost(new.recovery, new)

    def _rescue(self, reason: str) -> None:
        """The file was pulled away under the open connection, which still reads all of it: copy
        it to the path and go on. If the copy cannot be made, recover what the path holds and
        count the rest as lost: the backlog never vanishes unsaid."""
        old = self._ring
        assert old is not None
        self.log.error("buffer file pulled away while running: copying what the agent still has open", reason=reason)
        try:
            new = old.rescue(reason)
        except StorageError as exc:
            if old.closed:  # the copy is at the path or beside it: the next attach opens it
                self._ring = None
                self._detach(f"{reason}; reopening the rescued copy failed: {exc}", old, released=True)
            else:
                self._recover(f"{reason}; copying it failed: {exc}")
            return
        self._ring = new
        self.generation += 1
        self._note_lost(new.recovery, new)

    def _detach(self, reason: str, ring: Ring | None, released: bool = False) -> None:
        if ring is not None:
            self._memory = MemoryRing(self.memory_bytes, ring.epoch, ring.next_seq, ring.reserved, ring.boot_count,
                                      ring.dropped_total, ring.last_committed_ts)
            self._deferred_acks |= ring.take_pending_acks()
            if not released:
                ring.detach()
        else:
            self._memory = MemoryRing(self.memory_bytes)
        self._ring = None
        self.generation += 1
        self.unavailable = (reason, time.time())
        self._retry_at, self._backoff = self.clock() + RETRY_FIRST, RETRY_FIRST
        self.log.error("buffer disk unavailable: keeping batches in memory", reason=reason,
                       memory_max_bytes=self.memory_bytes, retry_in_s=RETRY_FIRST)
        self.notices.append(BufferUnavailable(
            reason, str(self.directory), self.memory_bytes,
            "batches not yet acknowledged are only in memory: a restart or power cut loses them, "
            "and past memory_max_bytes the oldest are dropped (counted)"))

    def _attach(self) -> None:
        memory = self._memory
        assert memory is not None
        try:
            ring = Ring.open(self.directory, self.max_bytes, self.min_free_bytes)
        except StorageError as exc:
            self._retry_later(exc)
            return
        batches, events = memory.snapshot()
        batches = [b for b in batches if b.seq not in self._deferred_acks]  # acknowledged while away
        try:
            ring.reserve_from(memory.next_seq)
            for seq in self._deferred_acks:
                ring.ack(seq)
            result = ring.commit(batches, events)
            ring.count_lost(memory.dropped_batches, memory.lost_readings)
        except StorageError as exc:
            ring.detach()
            self._retry_later(exc)
            return
        memory.clear()
        for loss in result.losses:
            add_loss(self._losses, loss)
        reason, since = self.unavailable or ("", time.time())
        self._ring, self._memory, self.unavailable = ring, None, None
        self._deferred_acks.clear()
        self.generation += 1
        self.log.info("buffer disk back: batches kept in memory written to it", replayed_batches=len(batches),
                      after_s=round(time.time() - since, 1))
        self.notices.append(BufferRestored(round(time.time() - since, 1), reason, len(batches), len(events),
                                           memory.lost_readings))
        if ring.recovery.happened:
            self._note_lost(ring.recovery, ring)

    def _retry_later(self, exc: StorageError) -> None:
        if isinstance(exc, BufferLocked):
            self.log.error("buffer directory taken by another agent while detached", error=str(exc))
        self._backoff = min(RETRY_MAX, self._backoff * 2)
        self._retry_at = self.clock() + self._backoff
        self.log.info("buffer disk still unavailable", reason=str(exc), retry_in_s=self._backoff)

    def _note_lost(self, recovery: Recovery, ring: Ring) -> None:
        self.notices.append(BufferLost(recovery.reason, str(recovery.moved_to or ""), recovery.salvaged_batches,
                                       recovery.lost_batches, recovery.lost_readings, ring.epoch))
