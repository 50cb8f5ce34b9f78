"""The ring against a model (hypothesis stateful): conservation, ack-only deletion, order, bounds,
exact drop counts, across commits and reopenings."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from agent.buffer import CommitResult, Ring, SealedBatch
from agent.buffer.ring import ROW_OVERHEAD

MAX_BYTES = 4000


class RingMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="ring-model-"))
        self.ring = Ring.open(self.dir, max_bytes=MAX_BYTES, min_free_bytes=0)
        self.stored: dict[int, tuple[int, int]] = {}  # seq -> (readings, cost), committed and not deleted
        self.pending: list[SealedBatch] = []  # sealed, not committed yet
        self.pending_acks: set[int] = set()
        self.appended = self.acked_readings = self.dropped = 0

    @rule(readings=st.integers(1, 50), size=st.integers(1, 900))
    def seal(self, readings: int, size: int) -> None:
        seq = self.ring.allocate_seq()
        assert all(seq > s for s in self.stored) and all(seq > b.seq for b in self.pending)
        batch = SealedBatch(seq, bytes([seq % 256]) * size, readings, seq * 1000, seq * 1000 + 999)
        assert batch.cost == size + ROW_OVERHEAD
        self.pending.append(batch)
        self.appended += readings

    @precondition(lambda self: self.stored)
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        seq = data.draw(st.sampled_from(sorted(self.stored)))
        self.ring.ack(seq)
        self.pending_acks.add(seq)

    @rule()
    def commit(self) -> None:
        result = self.ring.commit(self.pending)
        lost: list[int] = []
        for seq in self.pending_acks:
            if seq in self.stored:
                self.acked_readings += self.stored.pop(seq)[0]
        self.pending_acks.clear()
        incoming = [(b.seq, b.readings, b.cost) for b in self.pending]
        self.pending = []
        total = sum(c for _, c in self.stored.values()) + sum(c for _, _, c in incoming)
        for seq in sorted(self.stored):  # the model of eviction: oldest first, until it fits
            if total <= MAX_BYTES:
                break
            readings, cost = self.stored.pop(seq)
            self.dropped += readings
            total -= cost
            lost.append(seq)
        while incoming and total > MAX_BYTES:
            seq, readings, cost = incoming.pop(0)
            self.dropped += readings
            total -= cost
            lost.append(seq)
        for seq, readings, cost in incoming:
            self.stored[seq] = (readings, cost)
        assert _runs(result) == _consecutive_runs(lost)


def _runs(result: CommitResult) -> list[tuple[int, int, int, int]]:
    """The losses a commit reported, as (first seq, last seq, from ms, to ms), checked to be consistent."""
    for loss in result.losses:
        assert loss.batches == loss.last_seq - loss.first_seq + 1
    return [(loss.first_seq, loss.last_seq, loss.from_ms, loss.to_ms) for loss in result.losses]


def _consecutive_runs(seqs: list[int]) -> list[tuple[int, int, int, int]]:
    """The model: lost seqs grouped into runs of consecutive numbers; a batch `seq` spans
    seq*1000 .. seq*1000+999 (see `seal`)."""
    runs: list[list[int]] = []
    for seq in seqs:
        if runs and seq == runs[-1][1] + 1:
            runs[-1][1] = seq
        else:
            runs.append([seq, seq])
    return [(a, b, a * 1000, b * 1000 + 999) for a, b in runs]

    @rule()
    def reopen(self) -> None:
        """Close (which commits pending acks) and open again, as after a clean restart."""
        self.ring.close()
        for seq in self.pending_acks:
            if seq in self.stored:
                self.acked_readings += self.stored.pop(seq)[0]
        self.pending_acks.clear()
        self.appended -= sum(b.readings for b in self.pending)  # never committed: lived in memory only
        self.pending = []
        self.ring = Ring.open(self.dir, max_bytes=MAX_BYTES, min_free_bytes=0)

    @invariant()
    def contents_match_the_model(self) -> None:
        on_disk = {b.seq: b.readings for b in self.ring.unacked()}
        expected = {seq: r for seq, (r, _) in self.stored.items() if seq not in self.pending_acks}
        assert on_disk == expected
        assert list(on_disk) == sorted(on_disk)

    @invariant()
    def conservation(self) -> None:
        stats = self.ring.stats()
        buffered = sum(r for r, _ in self.stored.values())
        in_memory = sum(b.readings for b in self.pending)
        assert stats.dropped_total == self.dropped
        assert self.appended == self.acked_readings + buffered + self.dropped + in_memory
        assert stats.readings == buffered

    @invariant()
    def bounded(self) -> None:
        stats = self.ring.stats()
        assert stats.bytes <= MAX_BYTES
        assert stats.bytes == sum(c for _, c in self.stored.values())

    def teardown(self) -> None:
        self.ring.close()
        shutil.rmtree(self.dir, ignore_errors=True)


RingMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)
TestRingModel = RingMachine.TestCase
