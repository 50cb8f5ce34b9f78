"""Batch assembly: readings in, sealed batches out. The one place a batch header is built.

The assembler owns the open batch (a pure `Batcher`), its draft while the broker is away, and the
header: the dedup key (epoch, seq) taken from the buffer's numbering when the batch is first
written or sealed, the drop counters (cumulative and new since the previous batch of the same
epoch), the boot count, and the gap since the last reading that reached the disk (first batch
after a start only). A draft keeps its (epoch, seq) when it becomes the final batch, so the disk
row it occupies is replaced, not duplicated.

Runs on the event loop (see agent/threads.py): polls add, the seal job seals, the tick drafts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from agent.batcher import Batcher, Sealed
from agent.buffer.ring import SealedBatch
from agent.codec import Header, WireSchema
from agent.threads import confine, confined
from agent.types import Reading


class Numbering(Protocol):
    """What the buffer tells a batch header: where (epoch, seq) come from, and the counters."""

    @property
    def epoch(self) -> int: ...

    @property
    def boot_count(self) -> int: ...

    @property
    def dropped_total(self) -> int: ...

    @property
    def generation(self) -> int:
        """Changes whenever the storage behind the numbering does (recovered, detached, re-attached)."""
        ...

    def allocate(self) -> tuple[int, int]:
        """A fresh dedup key (epoch, seq), never handed out before."""
        ...


class Assembler:
    def __init__(self, gateway: str, schema: WireSchema, numbering: Numbering,
                 last_before_start: int | None = None) -> None:
        """`last_before_start`: ms of the newest reading the buffer held at start (the first batch
        reports the gap from it); None on a fresh buffer."""
        confine(self)
        self.gateway = gateway
        self.schema = schema
        self.numbering = numbering
        self._batcher = Batcher(schema)
        self._key: tuple[int, int] | None = None  # (epoch, seq) of the open batch once a draft took it
        self._key_generation = 0  # the storage generation the key (and its drafts) belong to
        self._drafted = 0  # readings in the last draft
        self._draft: tuple[dict[tuple[str, str], int], Header] | None = None  # its marks and header
        # (epoch, dropped_total) the previous batch carried; at start, what the buffer knew then (a
        # recovery's losses are announced by its own event, not again as dropped_new)
        self._reported = (numbering.epoch, numbering.dropped_total)
        self._gap_from = last_before_start
        self._first = True

    @property
    def count(self) -> int:
        """Readings in the open batch."""
        return self._batcher.count

    @confined
    def add(self, readings: Iterable[Reading]) -> None:
        self._batcher.add(readings)

    @confined
    def seal(self) -> SealedBatch | None:
        """Close the open batch (None if it is empty); the next reading opens a new one."""
        self._settle()
        if not self._batcher.count:
            return None
        header = self._header()
        sealed = self._batcher.seal(header)
        assert sealed is not None
        self._reported = (header.epoch, header.dropped_total)
        self._first = False
        self._key, self._drafted, self._draft = None, 0, None
        return _stored(sealed, self.schema)

    @confined
    def draft(self) -> SealedBatch | None:
        """The open batch as it stands, under the key it will be sealed with; None when nothing was
        added since the last draft."""
        self._settle()
        if not self._batcher.count or self._batcher.count == self._drafted:
            return None
        header = self._header()
        sealed = self._batcher.peek(header)
        assert sealed is not None
        self._drafted = self._batcher.count
        self._draft = (self._batcher.marks(), sealed.batch.header)
        return _stored(sealed, self.schema)

    @confined
    def set_schema(self, schema: WireSchema) -> SealedBatch | None:
        """A reload changed the schema: the open batch is sealed under the old one and returned."""
        sealed = self.seal()
        self.schema = schema
        self._batcher = Batcher(schema)
        return sealed

    @property
    def unknown(self) -> int:
        """Readings dropped because the schema has no such device or point (a programming error)."""
        return self._batcher.unknown

    def _settle(self) -> None:
        """The storage changed under a drafted batch (the disk failed, came back, was recovered): the
        last draft, as written, becomes a batch of its own, and the open batch goes on with what came
        after it under a new key. So a key is never published with two contents, even if the old
        disk's draft surfaces after a restart."""
        if self._draft is None or self._key is None or self.numbering.generation == self._key_generation:
            return
        marks, header = self._draft
        self._batcher.drop(marks)
        self._reported = (header.epoch, header.dropped_total)
        self._first = False
        self._key, self._drafted, self._draft = None, 0, None

    def _header(self) -> Header:
        if self._key is None:
            self._key = self.numbering.allocate()
            self._key_generation = self.numbering.generation
        epoch, seq = self._key
        total = self.numbering.dropped_total
        reported = self._reported[1] if self._reported[0] == epoch else 0
        gap = None
        if self._first and self._gap_from is not None and self._batcher.t_first is not None:
            gap = max(0, self._batcher.t_first - self._gap_from)
        return Header(self.gateway, epoch, seq, self.schema.id, 0, total, max(0, total - reported),
                      self.numbering.boot_count, gap)


def _stored(sealed: Sealed, schema: WireSchema) -> SealedBatch:
    header = sealed.batch.header
    return SealedBatch(header.seq, sealed.encode(schema), sealed.readings, sealed.t_first, sealed.t_last)
