"""Read-only views of a buffer directory for `edge-agent buffer stats|dump`.

They open the SQLite file read-only and take no lock, so they work beside a running agent
(WAL readers never block the writer) and can never damage the buffer they look at.
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agent.buffer.schema import COLUMNS, DB_NAME
from agent.errors import ConfigError, Problem


@dataclass(frozen=True)
class DumpRow:
    seq: int
    readings: int
    t_first: int
    t_last: int
    size: int
    crc_ok: bool
    payload: bytes


def _open(directory: Path) -> sqlite3.Connection:
    path = directory / DB_NAME
    try:
        if not path.is_file():
            raise ConfigError([Problem(str(directory), None, "", f"no buffer here ({DB_NAME} not found)")])
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except (OSError, sqlite3.Error) as exc:
        raise _unreadable(directory, exc) from None


def _unreadable(directory: Path, exc: Exception) -> ConfigError:
    """A damaged, truncated or foreign file, or one this user may not read: one line that says so."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    hint = "; the agent moves a damaged file aside and salvages it at its next start" \
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError) else ""
    return ConfigError([Problem(str(directory / DB_NAME), None, "", f"cannot read the buffer: {reason}{hint}")])


def buffer_stats(directory: Path) -> dict[str, int | None]:
    conn = _open(directory)
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        count, payload, readings, oldest, newest, t_oldest, t_newest = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(size),0), COALESCE(SUM(readings),0), MIN(seq), MAX(seq), "
            "MIN(t_first), MAX(t_last) FROM batches").fetchone()
        pages, page_size = (conn.execute("PRAGMA page_count").fetchone()[0],
                            conn.execute("PRAGMA page_size").fetchone()[0])
    except sqlite3.Error as exc:
        raise _unreadable(directory, exc) from None
    finally:
        conn.close()
    return {"epoch": meta.get("epoch"), "boot_count": meta.get("boot_count"), "batches": count,
            "payload_bytes": payload, "file_bytes": pages * page_size, "readings": readings,
            "oldest_seq": oldest, "newest_seq": newest, "oldest_reading_ms": t_oldest, "newest_reading_ms": t_newest,
            "dropped_total": meta.get("dropped_total", 0), "dropped_batches": meta.get("dropped_batches", 0),
            "quarantined": meta.get("quarantined", 0), "last_committed_ms": meta.get("last_ts")}


def buffer_dump(directory: Path) -> Iterator[DumpRow]:
    conn = _open(directory)
    try:
        cursor = 0
        while rows := conn.execute(f"SELECT {COLUMNS} FROM batches WHERE seq > ? ORDER BY seq LIMIT 256",
                                   (cursor,)).fetchall():
            for seq, crc, readings, t_first, t_last, _, payload in rows:
                cursor = seq
                yield DumpRow(seq, readings, t_first, t_last, len(payload), zlib.crc32(payload) == crc, payload)
    except sqlite3.Error as exc:
        raise _unreadable(directory, exc) from None
    finally:
        conn.close()


def decode_generic(payload: bytes) -> object:
    """The payload as plain msgpack data (bytes shown as hex), or a note if it is not msgpack.
    The batch format's own decoder (with names, units and scaling) replaces this once it exists."""
    import msgpack

    def plain(value: object) -> object:
        if isinstance(value, bytes):
            return value.hex()
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    try:
        return plain(msgpack.unpackb(payload, raw=False, strict_map_key=False))
    except (ValueError, msgpack.UnpackException) as exc:
        return {"undecodable": str(exc), "hex": payload[:64].hex()}
