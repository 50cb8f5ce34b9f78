"""The database file the SQLite connection has open, watched for being pulled away.

`rm buffer.sqlite*` (or `mv other.sqlite buffer.sqlite`) does not disturb an open connection: it
goes on reading and writing the unlinked file, and the backlog vanishes at the next start. The
file the connection has open is found once by its descriptor (Linux: /proc/self/fd) and compared
with whatever the path names now. Its header is read with pread on that same descriptor: opening
and closing another descriptor of the file would drop SQLite's POSIX locks on it (they belong to
the process and the inode, not to a descriptor).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"SQLite format 3\x00"
REMOVED = "buffer file removed while in use"
REPLACED = "buffer file replaced while in use (another file is at its path now)"
OVERWRITTEN = "buffer file overwritten: not an SQLite database any more"


@dataclass(frozen=True)
class OpenFile:
    path: Path
    identity: tuple[int, int]  # (st_dev, st_ino) of the file when it was opened
    fd: int | None  # the connection's own descriptor of it, if found

    @classmethod
    def find(cls, path: Path) -> OpenFile:
        """Right after the connection opened `path` (under the directory lock, so it is that file)."""
        st = os.stat(path)
        identity = (st.st_dev, st.st_ino)
        fd = None
        with contextlib.suppress(OSError):
            for name in sorted(os.listdir("/proc/self/fd"), key=int):
                with contextlib.suppress(OSError):
                    other = os.fstat(int(name))
                    if (other.st_dev, other.st_ino) == identity:
                        fd = int(name)
                        break
        return cls(path, identity, fd)

    def problem(self) -> str | None:
        """None while the path still names the open file and it is still an SQLite database."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return REMOVED
        except OSError:
            return None  # an I/O error is not a removal: the next read or write meets it and detaches
        if (st.st_dev, st.st_ino) != self.identity:
            return REPLACED
        try:
            header = self._header()
        except OSError:
            return None
        return None if header == MAGIC else OVERWRITTEN

    def _header(self) -> bytes:
        fd = self.fd
        if fd is not None:
            with contextlib.suppress(OSError):
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) == self.identity:  # not a reused descriptor number
                    return os.pread(fd, len(MAGIC), 0)
        with open(self.path, "rb") as f:  # no descriptor of ours to read through
            return f.read(len(MAGIC))
