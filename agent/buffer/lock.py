"""One agent per buffer directory: an exclusive flock on the directory itself.

A lock on a file in the directory can be pulled away: after `rm buffer.lock` a second agent
creates a new file, locks it and runs beside the first, both writing one buffer. The directory
cannot be removed while it holds the buffer, and a flock on its descriptor stays with it. The
`buffer.lock` file remains, locked too, for the pid of the holder (and so an agent of an earlier
version, which locks only the file, is refused as well).

The kernel drops the locks when the process dies (kill -9, power loss), so a stale lock file never
blocks a restart; a live second agent is refused with the pid of the first.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from agent.errors import BufferLocked


class DirectoryLock:
    """Held from `acquire` until `release` (or process exit)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "buffer.lock"
        self._dir_fd: int | None = None
        self._fd: int | None = None

    def acquire(self) -> None:
        dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        if not _try_lock(dir_fd):
            os.close(dir_fd)
            raise self._locked()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            os.close(dir_fd)
            raise
        if not _try_lock(fd):  # an agent of an earlier version, which locks only the file
            os.close(fd)
            os.close(dir_fd)
            raise self._locked()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            os.close(fd)
            os.close(dir_fd)
            raise
        self._dir_fd, self._fd = dir_fd, fd

    def _locked(self) -> BufferLocked:
        holder = "unknown"
        with contextlib.suppress(OSError):
            holder = self.path.read_text(errors="replace").strip() or holder
        return BufferLocked(f"buffer {self.directory} is in use by another agent (pid {holder}); "
                            "stop it first, or give this one another buffer.path")

    def release(self) -> None:
        for fd in (self._fd, self._dir_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
        self._fd = self._dir_fd = None


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
