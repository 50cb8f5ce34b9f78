"""One agent per buffer directory: an exclusive flock on `buffer.lock`.

The kernel drops the lock when the process dies (kill -9, power loss), so a stale lock file never
blocks a restart; a live second agent is refused with the pid of the first.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from agent.errors import BufferLocked


class DirectoryLock:
    """Held from `acquire` until `release` (or process exit)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "buffer.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise BufferLocked(f"buffer {self.path.parent} is in use by another agent (pid {holder}); "
                               "stop it first, or give this one another buffer.path") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
