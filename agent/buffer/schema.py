"""The buffer's SQLite file: schema, pragmas, integrity check, and moving a corrupt file aside.

The only module besides ring.py that touches sqlite3. Opening never crash-loops: a file that
fails to open or to pass `quick_check` is moved to `corrupt-<timestamp>/`, whatever batches can
still be read from it are salvaged (CRC-checked) into a fresh file, and the caller is told what
was lost.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from agent.errors import BufferCorrupt, BufferIOError, StorageError

DB_NAME = "buffer.sqlite"
SCHEMA_VERSION = 1
PAGE_SIZE = 1024  # small pages: a commit rewrites whole pages, so fewer bytes reach the card per commit
WAL_LIMIT = 1 << 20  # bytes the WAL file is truncated to after a checkpoint
KEEP_CORRUPT = 2  # corrupt-* directories kept for forensics; older ones are deleted (disk is finite)

COLUMNS = "seq, crc, readings, t_first, t_last, size, payload"
DDL = """
CREATE TABLE IF NOT EXISTS batches (
    seq      INTEGER PRIMARY KEY,
    crc      INTEGER NOT NULL,
    readings INTEGER NOT NULL,
    t_first  INTEGER NOT NULL,
    t_last   INTEGER NOT NULL,
    size     INTEGER NOT NULL,
    payload  BLOB    NOT NULL  -- last: the small columns stay in the b-tree cell, so counting and
                               -- evicting never read a payload's overflow pages
);
CREATE TABLE IF NOT EXISTS events (
    id   INTEGER PRIMARY KEY,  -- events that could not be published yet (offline), oldest first
    body TEXT    NOT NULL      -- the JSON message as it goes to the events topic
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class Recovery:
    """What opening found wrong, for the "buffer lost" event; empty when the file was healthy."""

    moved_to: Path | None = None
    reason: str = ""
    salvaged_batches: int = 0
    lost_batches: int | None = None  # None: unknown (the counters were unreadable too)
    lost_readings: int | None = None

    @property
    def happened(self) -> bool:
        return self.moved_to is not None


CORRUPT_CODES = {"SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_FORMAT"}


def storage_error(exc: sqlite3.Error, what: str) -> StorageError:
    """sqlite3's error mapped onto the agent's tree: damage (recover the file) or the disk failing
    (keep going in memory and retry). A DatabaseError without a code is damage: sqlite3 raises it
    for a malformed image."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.split("_", 2)[:2] == ["SQLITE", "CORRUPT"] or name in CORRUPT_CODES or (
            not name and type(exc) is sqlite3.DatabaseError):
        return BufferCorrupt(f"{what}: the buffer file is damaged ({exc})")
    return BufferIOError(f"{what}: {exc}")


def connect(path: Path) -> sqlite3.Connection:
    """Open with the contract's settings: WAL, synchronous=FULL, explicit transactions."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
    conn.execute(f"PRAGMA page_size={PAGE_SIZE}")  # only takes effect on a new file
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA wal_autocheckpoint=1000")  # pages; bounds the WAL at about 1 MiB
    conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
    conn.execute("PRAGMA cache_size=-2048")  # KiB: keep RSS small on a full buffer
    return conn


def open_checked(directory: Path, full_check: bool = True,
                 known_damage: str = "") -> tuple[sqlite3.Connection, Recovery]:
    """Open the buffer file, creating it if absent, recovering it if corrupt.

    `full_check` runs `quick_check` (reads every page: seconds on a cold SD card); without it only
    the header and schema are checked here and `verify` runs later, off the startup path.
    `known_damage` skips the checks: the file is already known bad and is recovered at once.
    """
    path = directory / DB_NAME
    conn: sqlite3.Connection | None = None
    reason = known_damage
    if not known_damage:
        try:
            conn = connect(path)
            _check(conn, full_check)
            conn.executescript(DDL)
            conn.execute("SELECT COUNT(*) FROM meta").fetchone()
            return conn, Recovery()
        except sqlite3.DatabaseError as exc:
            reason = str(exc)
            if conn is not None:
                conn.close()
    moved = move_aside(directory)
    conn = connect(path)
    conn.executescript(DDL)
    salvaged, lost_batches, lost_readings = _salvage(moved / DB_NAME, conn)
    _prune_corrupt(directory)
    return conn, Recovery(moved, reason, salvaged, lost_batches, lost_readings)


def make_directory(directory: Path) -> None:
    """Create the buffer directory and any missing parent, each name fsynced into its parent: POSIX
    makes a new name durable only once its directory is fsynced, and a power cut must not take a
    directory whose files were fsynced (the whole buffer, committed batches and epoch)."""
    missing = []
    probe = directory
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    directory.mkdir(parents=True, exist_ok=True)
    for created in reversed(missing):
        sync_directory(created.parent)


def sync_directory(directory: Path) -> None:
    """fsync a directory: the names in it (a new database file, one moved aside) survive a power cut.
    SQLite does this for the WAL and journals it creates, not for the database file itself."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except PermissionError:
        return  # writable but not readable by us: its names are as durable as the file system makes them
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # a file system that cannot: nothing to do
            raise
    finally:
        os.close(fd)


def verify(path: Path) -> str:
    """`quick_check` on a separate read-only connection: "ok" or what is wrong."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        if isinstance(storage_error(exc, ""), BufferCorrupt):
            return str(exc)
        return f"unverified: {exc}"  # an I/O error or a busy file says nothing about damage
    return "ok" if rows == [("ok",)] else "; ".join(str(r[0]) for r in rows[:3])


def _check(conn: sqlite3.Connection, full: bool) -> None:
    if full:
        row = conn.execute("PRAGMA quick_check").fetchone()
        if row is None or row[0] != "ok":
            raise sqlite3.DatabaseError(f"integrity check failed: {row[0] if row else 'no answer'}")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == 0:
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    elif version != SCHEMA_VERSION:
        raise sqlite3.DatabaseError(f"unknown buffer schema version {version}")


def move_aside(directory: Path) -> Path:
    target = directory / time.strftime("corrupt-%Y%m%dT%H%M%S", time.gmtime())
    suffix = 0
    while target.exists():
        suffix += 1
        target = target.with_name(f"{target.name.split('.')[0]}.{suffix}")
    target.mkdir()
    for name in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm"):
        if (directory / name).exists():
            shutil.move(str(directory / name), target / name)
    return target


def _salvage(old: Path, new: sqlite3.Connection) -> tuple[int, int | None, int | None]:
    """Copy every batch that still reads and passes its CRC, row by row so that one damaged page
    costs only the rows on it; count the rest where the counters are still readable."""
    if not old.exists():
        return 0, None, None
    try:
        src = sqlite3.connect(f"file:{old}?mode=ro", uri=True)
    except sqlite3.Error:
        return 0, None, None
    upper = _first_int(src, "SELECT MAX(seq) FROM batches", "SELECT value FROM meta WHERE key='seq_reserved'")
    expected = _first_int(src, "SELECT value FROM meta WHERE key='batches'", "SELECT COUNT(*) FROM batches")
    expected_readings = _first_int(src, "SELECT value FROM meta WHERE key='readings'")
    salvaged = salvaged_readings = 0
    new.execute("BEGIN IMMEDIATE")
    for seq in range(1, (upper or 0) + 1):
        try:
            row = src.execute(f"SELECT {COLUMNS} FROM batches WHERE seq=?", (seq,)).fetchone()
        except sqlite3.Error:
            continue
        if row is not None and zlib.crc32(row[-1]) == row[1]:
            new.execute(f"INSERT INTO batches ({COLUMNS}) VALUES (?,?,?,?,?,?,?)", row)
            salvaged += 1
            salvaged_readings += row[2]
    new.execute("COMMIT")
    src.close()
    lost = None if expected is None else max(0, expected - salvaged)
    lost_readings = None if expected_readings is None else max(0, expected_readings - salvaged_readings)
    return salvaged, lost, lost_readings


def _first_int(conn: sqlite3.Connection, *queries: str) -> int | None:
    """The first query that answers with a number, or None if the damage hides them all."""
    for query in queries:
        try:
            row = conn.execute(query).fetchone()
        except sqlite3.Error:
            continue
        if row and isinstance(row[0], int):
            return row[0]
    return None


def _prune_corrupt(directory: Path) -> None:
    for old in sorted(directory.glob("corrupt-*"))[:-KEEP_CORRUPT]:
        shutil.rmtree(old, ignore_errors=True)
