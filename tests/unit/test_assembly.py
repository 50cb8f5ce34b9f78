"""Batch assembly: headers built once, from the buffer's numbering; drafts keep their key; split parts
count their readings. Data tables, a fake numbering, no I/O."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent import threads
from agent.assembly import Assembler
from agent.codec import DeviceInfo, PointInfo, WireSchema, decode, decode_header, split
from agent.types import Quality, Reading

SCHEMA = WireSchema("gw-t", (DeviceInfo("m1", "x/y", (PointInfo("p", "V", "gauge", 1), PointInfo("q", "V", "gauge", 1))),
                             DeviceInfo("m2", "x/y", (PointInfo("p", "V", "gauge", 1),))))
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Numbering:
    """What the buffer would say: epoch, boot, drops, and seqs handed out in order."""

    epoch: int = 7
    boot_count: int = 3
    dropped_total: int = 0
    next_seq: int = 100
    generation: int = 0

    def allocate(self) -> tuple[int, int]:
        self.next_seq += 1
        return self.epoch, self.next_seq - 1


def readings(t: int, device: str = "m1") -> list[Reading]:
    return [Reading(device, "p", t, 1.5, Quality.OK), Reading(device, "q", t, 2.5, Quality.OK)]


@pytest.mark.parametrize(("last_before_start", "first_ts", "gap"), [
    (None, 10_000, None),  # a fresh buffer: no gap to report
    (4_000, 10_000, 6_000),  # the first batch after a start: ms since the last reading on disk
    (12_000, 10_000, 0),  # a clock set back: never negative
])
def test_gap_is_reported_on_the_first_batch_only(last_before_start: int | None, first_ts: int, gap: int | None) -> None:
    assembler = Assembler("gw-t", SCHEMA, Numbering(), last_before_start)
    assembler.add(readings(first_ts))
    first = decode_header(assembler.seal().payload)[0]  # type: ignore[union-attr]
    assembler.add(readings(first_ts + 1000))
    second = decode_header(assembler.seal().payload)[0]  # type: ignore[union-attr]
    assert (first.gap_ms, second.gap_ms) == (gap, None)
    assert (first.epoch, first.seq, first.boot, second.seq) == (7, 100, 3, 101)


@pytest.mark.parametrize(("drops", "expected"), [
    # dropped_total as the buffer counts it before each seal -> (dropped_total, dropped_new) per batch
    ([5, 5, 9], [(5, 0), (5, 0), (9, 4)]),  # 5 were known at start: announced by their own event
    ([5, 12, 12], [(5, 0), (12, 7), (12, 0)]),
])
def test_dropped_new_counts_since_the_previous_batch(drops: list[int], expected: list[tuple[int, int]]) -> None:
    numbering = Numbering(dropped_total=5)
    assembler = Assembler("gw-t", SCHEMA, numbering)
    got = []
    for i, total in enumerate(drops):
        numbering.dropped_total = total
        assembler.add(readings(1000 * i))
        header = decode_header(assembler.seal().payload)[0]  # type: ignore[union-attr]
        got.append((header.dropped_total, header.dropped_new))
    assert got == expected


def test_a_new_epoch_starts_its_drop_count_afresh() -> None:
    numbering = Numbering(dropped_total=50)
    assembler = Assembler("gw-t", SCHEMA, numbering)
    numbering.epoch, numbering.dropped_total = 8, 3  # the buffer was recovered: a new epoch, 3 lost
    assembler.add(readings(1000))
    header = decode_header(assembler.seal().payload)[0]  # type: ignore[union-attr]
    assert (header.epoch, header.dropped_total, header.dropped_new) == (8, 3, 3)


def test_a_draft_becomes_the_final_batch_under_the_same_key() -> None:
    numbering = Numbering()
    assembler = Assembler("gw-t", SCHEMA, numbering)
    assert assembler.draft() is None  # nothing to draft
    assembler.add(readings(1000))
    first = assembler.draft()
    assert first is not None and assembler.draft() is None  # nothing new since
    assembler.add(readings(2000, "m2"))
    second = assembler.draft()
    final = assembler.seal()
    assert first.seq == second.seq == final.seq == 100  # type: ignore[union-attr]
    assert (first.readings, second.readings, final.readings) == (2, 3, 3)  # type: ignore[union-attr]
    assert assembler.unknown == 1  # m2 has no point q: dropped and counted
    assert numbering.next_seq == 101  # one key for the whole batch
    assembler.add(readings(3000))
    assert assembler.seal().seq == 101  # type: ignore[union-attr]


def test_set_schema_seals_the_open_batch_under_the_old_schema() -> None:
    assembler = Assembler("gw-t", SCHEMA, Numbering())
    assembler.add(readings(1000))
    other = WireSchema("gw-t", (DeviceInfo("m9", "x/y", (PointInfo("p", "V", "gauge", 1),)),))
    sealed = assembler.set_schema(other)
    assert sealed is not None and decode_header(sealed.payload)[0].schema_id == SCHEMA.id
    assert assembler.seal() is None and assembler.schema is other


@pytest.mark.parametrize(("limit", "parts"), [(10_000, 1), (60, 2), (1, 6)])  # 2 groups: m1 (p, q), m2 (p)
def test_split_parts_carry_new_keys_and_their_reading_counts(limit: int, parts: int) -> None:
    """Whole groups when they fit; below that down to one reading per part (6 readings: 6 parts)."""
    assembler = Assembler("gw-t", SCHEMA, Numbering())
    for t in (1000, 2000):
        assembler.add([*readings(t), Reading("m2", "p", t + 1, 3.0, Quality.OK)])
    whole = assembler.seal()
    assert whole is not None
    keys = iter([(9, 500 + n) for n in range(6)])
    pieces = split(whole.payload, limit, lambda: next(keys))
    assert len(pieces) == parts
    assert sum(p.readings for p in pieces) == whole.readings == 6
    for piece in pieces:
        header, _ = decode_header(piece.payload)
        assert (header.epoch, header.seq) == (piece.epoch, piece.seq)
        assert len(list(decode(piece.payload, SCHEMA))) == piece.readings


def test_pipeline_state_refuses_a_call_from_another_thread() -> None:
    assert threads.checking()  # the test suite runs with checking on (tests/conftest.py)
    assembler = Assembler("gw-t", SCHEMA, Numbering())
    errors: list[BaseException] = []

    def foreign() -> None:
        try:
            assembler.add(readings(1000))
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=foreign, name="apscheduler-worker")
    worker.start()
    worker.join(5)
    assert len(errors) == 1 and isinstance(errors[0], threads.ForeignThreadError)
    assert "apscheduler-worker" in str(errors[0]) and assembler.count == 0  # refused before any change
    assembler.add(readings(1000))  # the owner's thread is welcome
    assert assembler.count == 2


def test_a_draft_on_storage_that_changed_becomes_a_batch_of_its_own() -> None:
    """The disk failed (or came back, or was recovered) after a draft was written: the draft as
    written is final under its key; what came after goes on under a new key. No key gets two
    contents, no reading is in two batches."""
    numbering = Numbering()
    assembler = Assembler("gw-t", SCHEMA, numbering)
    assembler.add(readings(1000))
    draft = assembler.draft()
    assert draft is not None and draft.seq == 100
    numbering.generation += 1  # the store detached to memory
    assembler.add(readings(2000))
    final = assembler.seal()
    assert final is not None and final.seq == 101 and final.readings == 2
    assert {r.ts for r in decode(final.payload, SCHEMA)} == {2000}  # only what came after the draft
    assert assembler.seal() is None
