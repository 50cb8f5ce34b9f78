"""The durable ring: sealed batches on disk until the broker acknowledges them.

Contract (docs/design.md, the buffer): SQLite in WAL mode with synchronous=FULL and one writer; inserts,
evictions, acknowledged deletes and counters change in one transaction; acknowledgements are
coalesced into the next commit; a CRC over every payload is checked on read; the ring is bounded
by `max_bytes` and by a free-disk reserve, and when full the oldest batches go, their readings
counted exactly in `dropped_total`, which the batcher puts into the next batch it seals.

Sequence numbers are allocated before a batch is encoded (its header carries the number) and are
never reused within an epoch, even for batches that lived only in memory: the ring reserves them
on disk in blocks, so a restart continues past anything that may have been published.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import sqlite3
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agent.buffer.lock import DirectoryLock
from agent.buffer.openfile import OpenFile
from agent.buffer.schema import (
    COLUMNS,
    DB_NAME,
    WAL_LIMIT,
    Recovery,
    make_directory,
    move_aside,
    open_checked,
    storage_error,
    sync_directory,
    verify,
)
from agent.errors import BufferIOError, StorageError
from agent.threads import confine, confined

ROW_OVERHEAD = 48  # bytes a row costs beyond its payload (key, columns, b-tree cell): counted against max_bytes
SEQ_RESERVE = 1024  # sequence numbers reserved on disk per reservation commit
QUARANTINE_KEEP = 100
EVENTS_KEPT = 1000  # stored events; beyond this the oldest go (counted in meta `events_dropped`)
RESCUE_NAME = "rescue.sqlite"  # where a removed file's content is copied before it takes the path
PAGE_FILL = 0.85  # payload bytes per byte of file, conservatively (overflow pages, partly filled tails)


@dataclass(frozen=True, slots=True)
class SealedBatch:
    """An encoded batch as the ring keeps it."""

    seq: int
    payload: bytes
    readings: int
    t_first: int  # ms, first reading
    t_last: int  # ms, last reading

    @property
    def cost(self) -> int:
        return len(self.payload) + ROW_OVERHEAD


@dataclass(frozen=True, slots=True)
class Loss:
    """A run of consecutive batches given up to keep the ring in bounds: what the platform will never
    receive, by sequence number and by the time its readings span (for a `data_dropped` event)."""

    first_seq: int
    last_seq: int
    batches: int
    readings: int
    from_ms: int  # first reading of the first batch
    to_ms: int  # last reading of the last batch

    @classmethod
    def of(cls, seq: int, readings: int, t_first: int, t_last: int) -> Loss:
        return cls(seq, seq, 1, readings, t_first, t_last)

    def continues(self, earlier: Loss) -> bool:
        """Directly after `earlier`: nothing between them reached the platform."""
        return self.first_seq == earlier.last_seq + 1

    def joined_to(self, earlier: Loss) -> Loss:
        return Loss(earlier.first_seq, self.last_seq, earlier.batches + self.batches,
                    earlier.readings + self.readings, min(earlier.from_ms, self.from_ms), max(earlier.to_ms, self.to_ms))


def add_loss(losses: list[Loss], loss: Loss) -> None:
    """Append `loss`, joined to the last run when it continues it (one event per stretch of lost data)."""
    if losses and loss.continues(losses[-1]):
        losses[-1] = loss.joined_to(losses[-1])
    else:
        losses.append(loss)


@dataclass(frozen=True, slots=True)
class CommitResult:
    losses: tuple[Loss, ...] = ()  # batches evicted by this commit, as runs of consecutive seqs

    @property
    def evicted_batches(self) -> int:
        return sum(loss.batches for loss in self.losses)

    @property
    def evicted_readings(self) -> int:
        return sum(loss.readings for loss in self.losses)


@dataclass(frozen=True, slots=True)
class RingStats:
    epoch: int
    boot_count: int
    batches: int
    bytes: int
    readings: int
    oldest_seq: int | None
    newest_seq: int | None
    oldest_ts: int | None
    dropped_total: int  # readings lost to eviction or corruption since the epoch began
    dropped_batches: int
    quarantined: int


class Ring:
    """Single-writer durable ring. Not thread-safe: its owner's thread (the event loop) calls it."""

    def __init__(self, directory: Path, conn: sqlite3.Connection, lock: DirectoryLock, recovery: Recovery,
                 max_bytes: int, min_free_bytes: int) -> None:
        confine(self)
        self.directory = directory
        self.max_bytes = max_bytes
        self.min_free_bytes = min_free_bytes
        self.recovery = recovery
        self._conn = conn
        self._lock = lock
        self._pending_acks: set[int] = set()
        self._pending_event_acks: set[int] = set()
        self._after_commit: tuple | None = None  # in-memory counters to apply once a transaction commits
        self._page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        self._file = OpenFile.find(self.path)  # watched: removed or replaced under the connection
        self.closed = False  # detached: the connection and the lock are let go
        self.integrity: str | None = None  # None while the background check runs, then "ok" or the damage
        meta = self._meta()
        self.epoch = meta.get("epoch") or secrets.randbits(31)
        self.boot_count = meta.get("boot_count", 0) + 1
        self.last_committed_ts = meta.get("last_ts")  # ms of the newest reading that reached the disk
        self.dropped_total = meta.get("dropped_total", 0) + (recovery.lost_readings or 0)
        self.dropped_batches = meta.get("dropped_batches", 0) + (recovery.lost_batches or 0)
        self.quarantined = meta.get("quarantined", 0)
        row = conn.execute("SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(SUM(readings), 0), "
                           "MAX(seq) FROM batches").fetchone()
        self._batches, payload_bytes, self._readings, max_seq = row
        self._bytes = payload_bytes + self._batches * ROW_OVERHEAD
        self._reserved = max(meta.get("seq_reserved", 0), max_seq or 0)
        self._next_seq = self._reserved + 1
        self._write_meta({"epoch": self.epoch, "boot_count": self.boot_count,
                          "dropped_total": self.dropped_total, "dropped_batches": self.dropped_batches})

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(cls, directory: str | Path, max_bytes: int = 256 * 2**20, min_free_bytes: int = 64 * 2**20,
             full_check: bool = False, known_damage: str = "") -> Ring:
        """Lock the directory, check the file, recover if needed. Raises BufferLocked if in use.

        By default the page-by-page integrity check runs in a background thread after opening
        (it reads the whole file: 4.4 s for 256 MiB from a cold cache here, longer on an SD card);
        the owner looks at `integrity` and calls `recover()` if it reports damage.
        """
        directory = Path(directory)
        try:
            make_directory(directory)
            lock = DirectoryLock(directory)
            lock.acquire()
        except OSError as exc:
            raise BufferIOError(f"buffer directory {directory} cannot be used: {exc.strerror or exc}") from exc
        try:
            conn, recovery = open_checked(directory, full_check, known_damage)
            try:
                ring = cls(directory, conn, lock, recovery, max_bytes, min_free_bytes)
            except sqlite3.OperationalError:
                conn.close()
                raise
            except sqlite3.DatabaseError as exc:  # the cheap checks passed, reading the counters did not
                conn.close()
                conn, recovery = open_checked(directory, known_damage=str(exc))
                ring = cls(directory, conn, lock, recovery, max_bytes, min_free_bytes)
        except sqlite3.Error as exc:
            lock.release()
            raise storage_error(exc, f"opening the buffer in {directory}") from exc
        except OSError as exc:  # moving a damaged file aside on a failing disk
            lock.release()
            raise BufferIOError(f"opening the buffer in {directory}: {exc}") from exc
        except BaseException:
            lock.release()
            raise
        try:  # the file's name (new, or a fresh file after a recovery) survives a power cut from now on
            sync_directory(directory)
        except OSError as exc:
            ring.detach()
            raise BufferIOError(f"opening the buffer in {directory}: {exc}") from exc
        if full_check or recovery.happened:
            ring.integrity = "ok"
        else:
            threading.Thread(target=ring._verify, name="buffer-verify", daemon=True).start()
        return ring

    def _verify(self) -> None:
        self.integrity = verify(self.path)

    def recover(self, reason: str = "") -> Ring:
        """Damage found while running (the background check, or a read or write that met it): move
        the file aside, salvage, reopen with a new epoch. Returns the new ring, which continues the
        sequence numbers past every one this ring handed out. Raises StorageError if the disk
        cannot even do that (the caller falls back to memory)."""
        reason = reason or self.integrity or "damage found while running"
        acks = self.take_pending_acks()
        self.detach()
        ring = Ring.open(self.directory, self.max_bytes, self.min_free_bytes, known_damage=reason)
        try:
            if ring.recovery.lost_readings is None:  # the counters were unreadable: ours were not
                lost_batches = max(0, self._batches - ring.recovery.salvaged_batches)
                lost_readings = max(0, self._readings - ring._readings)
                ring.count_lost(lost_batches, lost_readings)
                ring.recovery = replace(ring.recovery, lost_batches=lost_batches, lost_readings=lost_readings)
            ring.reserve_from(self._next_seq)
        except BaseException:
            ring.detach()  # never keep the lock of a ring nobody will use
            raise
        for seq in acks:  # acknowledged before the damage: salvaged copies must not be sent again
            ring.ack(seq)
        return ring

    def detach(self) -> None:
        """Let go of the file without writing to it (the disk failed or the file is damaged)."""
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()
        self._lock.release()
        self.closed = True

    def reserve_from(self, next_seq: int) -> None:
        """Sequence numbers below `next_seq` were handed out elsewhere (an earlier file, memory):
        continue after them, reserved on disk first."""
        if next_seq > self._next_seq:
            self._next_seq = next_seq
            self._write_meta({"seq_reserved": next_seq + SEQ_RESERVE - 1})
            self._reserved = next_seq + SEQ_RESERVE - 1

    def count_lost(self, batches: int, readings: int) -> None:
        """Readings known lost outside a commit (a damaged file's unreadable rows): counted as dropped."""
        if batches > 0 or readings > 0:
            self.dropped_total += max(0, readings)
            self.dropped_batches += max(0, batches)
            self._write_meta({"dropped_total": self.dropped_total, "dropped_batches": self.dropped_batches})

    def take_pending_acks(self) -> set[int]:
        """Acknowledgements not yet committed, handed to whoever takes over (the disk is failing)."""
        acks, self._pending_acks = self._pending_acks, set()
        return acks

    def file_problem(self) -> str | None:
        """A cheap look at the file under the open connection: None if the path still names it and it
        is still an SQLite database, else what happened (removed, replaced, overwritten). Damage
        inside pages is found by reads and by the integrity check."""
        return self._file.problem()

    def rescue(self, reason: str) -> Ring:
        """The file was removed, or another put at its path, while the connection still has it open
        and reads it whole: copy it (SQLite's backup: a consistent snapshot, the WAL included) to a
        new file at the path and go on with that, same epoch, nothing lost. Whatever was put at the
        path is moved aside, not deleted. Raises StorageError if the copy cannot be made (the caller
        then recovers what it can and counts the rest)."""
        staging = self.directory / RESCUE_NAME
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            _remove_db(staging)
            target = sqlite3.connect(staging)
            try:
                self._conn.backup(target)
            finally:
                target.close()
        except (sqlite3.Error, OSError) as exc:
            with contextlib.suppress(OSError):
                _remove_db(staging)
            raise BufferIOError(f"rescuing the buffer ({reason}): {exc}") from exc
        acks = self.take_pending_acks()
        try:
            moved = move_aside(self.directory) if _db_exists(self.path) else None
        except OSError as exc:
            raise BufferIOError(f"moving aside the file now at {self.path}: {exc}") from exc
        self.detach()  # the old file goes with its last descriptor
        try:
            os.replace(staging, self.path)
        except OSError as exc:
            raise BufferIOError(f"putting the rescued buffer at {self.path}: {exc}") from exc
        ring = Ring.open(self.directory, self.max_bytes, self.min_free_bytes)
        try:
            ring.reserve_from(self._next_seq)
        except BaseException:
            ring.detach()
            raise
        for seq in acks:
            ring.ack(seq)
        ring.recovery = Recovery(moved, reason, ring.backlog, 0, 0)
        return ring

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def reserved(self) -> int:
        """The highest sequence number reserved on disk: a restart continues after it."""
        return self._reserved

    def close(self) -> None:
        """Commit pending acknowledgements, checkpoint the WAL, release the lock."""
        try:
            if self._pending_acks or self._pending_event_acks:
                self.commit()
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except (sqlite3.Error, StorageError):
            pass  # what is not committed is re-sent after the restart (at least once)
        finally:
            self._conn.close()
            self._lock.release()

    # ------------------------------------------------------------------ writing

    @confined
    def allocate_seq(self) -> int:
        """The next sequence number; reserves a block on disk when the last one is used up."""
        seq = self._next_seq
        if seq > self._reserved:  # on disk first: a number is handed out only once it is reserved there
            self._write_meta({"seq_reserved": seq + SEQ_RESERVE - 1})
            self._reserved = seq + SEQ_RESERVE - 1
        self._next_seq += 1
        return seq

    @confined
    def ack(self, seq: int) -> None:
        """The broker acknowledged `seq`; deleted at the next commit (coalesced)."""
        self._pending_acks.add(seq)

    def ack_event(self, event_id: int) -> None:
        """The broker acknowledged stored event `event_id`; deleted at the next commit."""
        self._pending_event_acks.add(event_id)

    @confined
    def commit(self, batches: Sequence[SealedBatch] = (), events: Sequence[str] = ()) -> CommitResult:
        """One transaction: pending acks deleted, `batches` inserted (a batch already present under
        its seq is replaced: a growing draft), the oldest evicted to respect the bounds, `events`
        (JSON messages not yet published) stored."""
        for squeeze in (False, True):  # the second try evicts 10 % more: the disk had less room than it said
            try:
                return self._transaction(functools.partial(self._commit_body, batches, squeeze, events))
            except sqlite3.OperationalError as exc:
                if squeeze or "full" not in str(exc).lower():
                    raise BufferIOError(f"buffer commit failed in {self.directory}: {exc}") from exc
            except sqlite3.Error as exc:
                raise storage_error(exc, f"buffer commit failed in {self.directory}") from exc
        raise AssertionError("unreachable")

    def _commit_body(self, batches: Sequence[SealedBatch], squeeze: bool, events: Sequence[str] = ()) -> CommitResult:
        conn = self._conn
        self._store_events(events)
        delta_bytes = delta_batches = delta_readings = 0
        newest = self.last_committed_ts
        # acknowledged batches go; a batch stored again under its seq (a growing draft) replaces itself
        for seq in [*self._pending_acks, *(b.seq for b in batches)]:
            for size, readings in conn.execute("DELETE FROM batches WHERE seq=? RETURNING size, readings", (seq,)):
                delta_bytes -= size + ROW_OVERHEAD
                delta_batches -= 1
                delta_readings -= readings
        incoming = sum(b.cost for b in batches)
        limit = self._limit(squeeze)
        losses, freed = self._evict(self._bytes + delta_bytes + incoming - limit)
        delta_bytes -= freed
        delta_batches -= sum(loss.batches for loss in losses)
        delta_readings -= sum(loss.readings for loss in losses)
        kept = list(batches)
        while kept and self._bytes + delta_bytes + sum(b.cost for b in kept) > limit:
            lost = kept.pop(0)  # even an empty ring cannot hold it: the oldest incoming goes too, counted
            add_loss(losses, Loss.of(lost.seq, lost.readings, lost.t_first, lost.t_last))
        result = CommitResult(tuple(losses))
        conn.executemany(f"INSERT INTO batches ({COLUMNS}) VALUES (?,?,?,?,?,?,?)",
                         [(b.seq, zlib.crc32(b.payload), b.readings, b.t_first, b.t_last, len(b.payload), b.payload)
                          for b in kept])
        for batch in kept:
            delta_bytes += batch.cost
            delta_batches += 1
            delta_readings += batch.readings
            newest = batch.t_last if newest is None else max(newest, batch.t_last)
        meta = {"dropped_total": self.dropped_total + result.evicted_readings,
                "dropped_batches": self.dropped_batches + result.evicted_batches,
                "batches": self._batches + delta_batches, "readings": self._readings + delta_readings}
        if newest is not None:
            meta["last_ts"] = newest
        self._put_meta(meta)
        # the transaction commits after this returns; the in-memory view follows only then
        self._after_commit = (delta_bytes, delta_batches, delta_readings, meta, newest)
        return result

    def _store_events(self, events: Sequence[str]) -> None:
        """Acknowledged events go, new ones are stored; past EVENTS_KEPT the oldest are dropped."""
        conn = self._conn
        conn.executemany("DELETE FROM events WHERE id=?", [(i,) for i in self._pending_event_acks])
        if not events:
            return
        conn.executemany("INSERT INTO events (body) VALUES (?)", [(body,) for body in events])
        dropped = conn.execute("DELETE FROM events WHERE id NOT IN (SELECT id FROM events ORDER BY id DESC LIMIT ?)",
                               (EVENTS_KEPT,)).rowcount
        if dropped > 0:
            self._put_meta({"events_dropped": self._meta().get("events_dropped", 0) + dropped})

    def _evict(self, excess: int) -> tuple[list[Loss], int]:
        """Delete the oldest batches until `excess` bytes are freed: (what was lost, bytes freed)."""
        losses: list[Loss] = []
        freed = 0
        while excess > freed:
            rows = self._conn.execute("SELECT seq, readings, size, t_first, t_last FROM batches ORDER BY seq "
                                      "LIMIT 256").fetchall()
            if not rows:
                break
            chosen = []
            for seq, readings, size, t_first, t_last in rows:
                if freed >= excess:
                    break
                chosen.append((seq,))
                add_loss(losses, Loss.of(seq, readings, t_first, t_last))
                freed += size + ROW_OVERHEAD
            self._conn.executemany("DELETE FROM batches WHERE seq=?", chosen)
        return losses, freed

    def _limit(self, squeeze: bool) -> int:
        """Bytes the ring may hold now: max_bytes, less if the disk's free space is short of the reserve.

        The disk can give the ring its file's pages (free ones are reused) plus the free space above
        the reserve, less room for the WAL; rows fill pages to about PAGE_FILL.
        """
        try:
            stat = os.statvfs(self.directory)
            pages = self._conn.execute("PRAGMA page_count").fetchone()[0] * self._page_size
            # the file's own pages stay ours: a disk filled by another program must not make the ring
            # throw away its backlog (deleting rows frees nothing for others); it only stops growing
            grow = pages + stat.f_bavail * stat.f_frsize - self.min_free_bytes - 2 * WAL_LIMIT
            room = int(max(pages, grow) * PAGE_FILL)
        except (OSError, sqlite3.Error):
            room = self.max_bytes
        limit = min(self.max_bytes, max(0, room))
        return int(limit * 0.9) if squeeze else limit

    def _transaction(self, body: Callable[[], Any]) -> Any:
        self._after_commit = None
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            result = body()
            self._conn.execute("COMMIT")
        except BaseException:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
        if self._after_commit is not None:
            delta_bytes, delta_batches, delta_readings, meta, newest = self._after_commit
            self._bytes += delta_bytes
            self._batches += delta_batches
            self._readings += delta_readings
            self.dropped_total = meta["dropped_total"]
            self.dropped_batches = meta["dropped_batches"]
            self.last_committed_ts = newest
            self._pending_acks.clear()
            self._pending_event_acks.clear()
        return result

    # ------------------------------------------------------------------ reading

    @confined
    def unacked(self, after: int = 0, page: int = 64) -> Iterator[SealedBatch]:
        """Batches not yet acknowledged, in sequence order, read a page at a time (never the whole
        backlog in memory). A payload failing its CRC is quarantined, counted and skipped. No batch
        on disk (online in outage mode: the publisher asks several times a second) is no query."""
        if not self._batches:
            return
        cursor = after
        while True:
            with self._mapped("reading the backlog"):
                rows = self._conn.execute(f"SELECT {COLUMNS} FROM batches WHERE seq > ? ORDER BY seq LIMIT ?",
                                          (cursor, page)).fetchall()
            if not rows:
                return
            for seq, crc, readings, t_first, t_last, _, payload in rows:
                cursor = seq
                if seq in self._pending_acks:
                    continue
                if zlib.crc32(payload) != crc:
                    self._quarantine(seq, payload, readings)
                    continue
                yield SealedBatch(seq, payload, readings, t_first, t_last)

    def stored_events(self, after: int = 0, limit: int = 100) -> list[tuple[int, str]]:
        """Events kept on disk and not yet acknowledged, oldest first: (id, JSON body)."""
        with self._mapped("reading stored events"):
            rows = self._conn.execute("SELECT id, body FROM events WHERE id > ? ORDER BY id LIMIT ?",
                                      (after, limit + len(self._pending_event_acks))).fetchall()
        return [(i, body) for i, body in rows if i not in self._pending_event_acks][:limit]

    def _quarantine(self, seq: int, payload: bytes, readings: int) -> None:
        def body() -> None:
            self._conn.execute("CREATE TABLE IF NOT EXISTS quarantine (seq INTEGER, payload BLOB, readings INTEGER)")
            self._conn.execute("DELETE FROM batches WHERE seq=?", (seq,))
            self._conn.execute("INSERT INTO quarantine VALUES (?,?,?)", (seq, payload, readings))
            self._conn.execute("DELETE FROM quarantine WHERE rowid NOT IN "
                               "(SELECT rowid FROM quarantine ORDER BY rowid DESC LIMIT ?)", (QUARANTINE_KEEP,))
            meta = {"dropped_total": self.dropped_total + readings, "dropped_batches": self.dropped_batches + 1,
                    "quarantined": self.quarantined + 1, "batches": self._batches - 1,
                    "readings": self._readings - readings}
            self._put_meta(meta)
            self._after_commit = (-(len(payload) + ROW_OVERHEAD), -1, -readings, meta, self.last_committed_ts)
        pending, pending_events = set(self._pending_acks), set(self._pending_event_acks)
        with self._mapped("quarantining a damaged batch"):
            self._transaction(body)
        self._pending_acks, self._pending_event_acks = pending, pending_events  # not a commit of the acks
        self.quarantined += 1

    # ------------------------------------------------------------------ state

    def stats(self) -> RingStats:
        with self._mapped("reading the buffer's statistics"):
            oldest = self._conn.execute("SELECT seq, t_first FROM batches ORDER BY seq LIMIT 1").fetchone()
            newest = self._conn.execute("SELECT MAX(seq) FROM batches").fetchone()[0]
        return RingStats(self.epoch, self.boot_count, self._batches, self._bytes, self._readings,
                         oldest[0] if oldest else None, newest, oldest[1] if oldest else None,
                         self.dropped_total, self.dropped_batches, self.quarantined)

    @property
    def pending_acks(self) -> int:
        """Acknowledgements of batches waiting for the next commit."""
        return len(self._pending_acks)

    @property
    def pending_event_acks(self) -> int:
        return len(self._pending_event_acks)

    @property
    def backlog(self) -> int:
        """Batches on disk, acknowledged-but-not-yet-deleted ones included."""
        return self._batches

    @property
    def path(self) -> Path:
        return self.directory / DB_NAME

    def _meta(self) -> dict[str, int]:
        return dict(self._conn.execute("SELECT key, value FROM meta").fetchall())

    def _put_meta(self, values: dict[str, int]) -> None:
        self._conn.executemany("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                               list(values.items()))

    def _write_meta(self, values: dict[str, int]) -> None:
        with self._mapped(f"buffer in {self.directory} cannot be written"):
            self._transaction(lambda: self._put_meta(values))

    @contextlib.contextmanager
    def _mapped(self, what: str) -> Iterator[None]:
        """The seam: sqlite3's errors leave this module as the agent's StorageError kinds."""
        try:
            yield
        except sqlite3.Error as exc:
            raise storage_error(exc, what) from exc



def _db_exists(path: Path) -> bool:
    return any(Path(f"{path}{suffix}").exists() for suffix in ("", "-wal", "-shm"))


def _remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
