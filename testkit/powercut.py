"""A FUSE file system that loses what was not fsynced: power cuts for tests, not only kill -9.

kill -9 keeps the page cache: everything a process wrote reaches the disk in the end. A power cut
does not: whatever was not fsynced is gone, and the write in flight may be torn. This file system
(in the spirit of LazyFS, which Jepsen uses) passes every operation through to a backing directory
but holds written data in memory until the file is fsynced; `cut()` then drops it.

What is modelled:
- **Data** (write, truncate) is pending per file, in issue order, on top of the file's durable
  content in the backing directory; reads see durable content + pending operations. fsync and
  fdatasync of a file write its pending operations into the backing file (and fsync that).
- **Namespace operations** (create, mkdir, rename, unlink, rmdir) in strict mode (the default of
  `PowerCutFS`) are durable only once a directory they touch is fsynced, as POSIX promises: the
  cut undoes the others, newest first (a file created and fsynced in a directory never fsynced is
  gone; an unlinked file comes back, kept meanwhile as a hard link beside the backing directory;
  a rename goes back). An fsync of a directory makes all its pending operations durable. Without
  strict mode they are durable at once (what ext4's ordered journal nearly gives); either way a
  renamed file keeps only the durable part of its content (the zero-length file after a rename
  without fsync). chmod, chown and utimens are durable at once.
- **Volatile files** (names ending in `-shm` by default: SQLite's wal-index, a shared-memory map
  whose content SQLite rebuilds from the WAL after a crash) pass straight through, so mmap of them
  works as on a real disk and nothing there is ever held back.
- **The cut** (`drop`): every pending operation is lost. `torn`: a random prefix of the pending
  operations (in issue order, across files) reached the disk, the last of them only partly (a
  prefix of its bytes, at any byte). `reorder`: each pending operation reached the disk or not at
  random (a disk cache that reorders), one of those that did torn.

The process using the file system must be dead before the cut (kill -9 and wait: a killed process
waits for the answers to its requests already sent, so nothing of it lands after the cut); files
it had open are re-read from the new state on the next open (no `keep_cache`, zero attribute and
entry timeouts).

Use: `with PowerCutFS(backing, mountpoint) as fs: ...; proc.kill(); proc.wait(); fs.cut("torn")`.
The file system runs in a child process (`python -m testkit.powercut BACKING MOUNTPOINT`) driven over
its stdin/stdout: `cut MODE SEED`, `stats`. Needs libfuse 3 (Debian `fuse3`), `mfusepy`, and
/dev/fuse with the right to mount (root).
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODES = ("drop", "torn", "reorder")
VOLATILE_SUFFIXES = ("-shm",)


# ---------------------------------------------------------------------------------------- the model


@dataclass
class Op:
    """One pending change to a file: a write of `data` at `offset`, or a truncate to `offset`."""

    seq: int  # global issue order (across files), for torn and reordered cuts
    offset: int
    data: bytes | None  # None: truncate to `offset`

    def apply(self, fd: int, keep: int | None = None) -> None:
        """Onto the backing file; `keep` bytes only of a write (torn)."""
        if self.data is None:
            os.ftruncate(fd, self.offset)
        else:
            os.pwrite(fd, self.data if keep is None else self.data[:keep], self.offset)


@dataclass
class Node:
    """A file as the file system holds it: the backing file's descriptor and what is not durable yet."""

    path: str  # backing path (follows renames)
    fd: int
    size: int  # size as readers see it (durable + pending)
    volatile: bool
    handles: int = 0
    ops: list[Op] = field(default_factory=list)

    def read(self, size: int, offset: int) -> bytes:
        end = min(offset + size, self.size)
        if end <= offset:
            return b""
        buf = bytearray(os.pread(self.fd, end - offset, offset))
        buf.extend(bytes(end - offset - len(buf)))  # past the durable end: zeros until a pending op says otherwise
        for op in self.ops:
            if op.data is None:
                if op.offset < end:
                    start = max(op.offset, offset) - offset
                    buf[start:] = bytes(len(buf) - start)
            else:
                lo, hi = max(op.offset, offset), min(op.offset + len(op.data), end)
                if lo < hi:
                    buf[lo - offset:hi - offset] = op.data[lo - op.offset:hi - op.offset]
        return bytes(buf)

    def durable_size(self) -> int:
        return os.fstat(self.fd).st_size

    def sync(self) -> None:
        for op in self.ops:
            op.apply(self.fd)
        self.ops.clear()
        os.fsync(self.fd)


@dataclass
class NameOp:
    """A namespace change not yet made durable by an fsync of its directory (strict mode only)."""

    kind: str  # create, mkdir, unlink, rmdir, rename
    path: str  # backing path (the new name of a rename)
    dirs: tuple[str, ...]  # an fsync of any of these directories makes it durable
    old: str = ""  # rename: the old name
    stash: str = ""  # unlink, rename over a file: the file removed, kept (hard link) to bring it back

    def undo(self) -> None:
        if self.kind == "create":
            if os.path.lexists(self.path):
                os.unlink(self.path)
        elif self.kind == "mkdir":
            shutil.rmtree(self.path, ignore_errors=True)
        elif self.kind == "rmdir":
            os.makedirs(self.path, exist_ok=True)
        elif self.kind == "rename" and os.path.lexists(self.path):
            os.rename(self.path, self.old)
        if self.stash:
            os.rename(self.stash, self.path)


@dataclass(frozen=True)
class Cut:
    """What a power cut did: pending operations lost, kept, and the torn one (path, bytes kept of)."""

    mode: str
    pending: int
    lost: int
    lost_bytes: int
    kept: int
    torn: tuple[str, int, int] | None
    undone: int = 0  # namespace operations undone (strict mode)


class CrashModel:
    """The file system's state, independent of FUSE: testable directly, driven by `CrashFS`."""

    def __init__(self, backing: str | Path, volatile_suffixes: tuple[str, ...] = VOLATILE_SUFFIXES,
                 strict: bool = False) -> None:
        self.backing = str(Path(backing).resolve())
        self.volatile_suffixes = volatile_suffixes
        self.strict = strict  # namespace operations durable only once their directory is fsynced
        self.names: list[NameOp] = []
        self._stash_dir = self.backing.rstrip("/") + ".stash"  # beside the backing directory, outside the mount
        self._stashed = 0
        self.lock = threading.Lock()
        self.nodes: dict[str, Node] = {}  # backing path -> node, for files open or with pending data
        self.handles: dict[int, Node] = {}
        self._next_fh = 1
        self._seq = 0
        self.cuts = 0
        self.synced = 0  # fsync calls that made something durable

    def real(self, path: str) -> str:
        return os.path.join(self.backing, path.lstrip("/"))

    # ------------------------------------------------------------------ files

    def node(self, real: str, create_mode: int | None = None) -> Node:
        node = self.nodes.get(real)
        if node is None:
            flags = os.O_RDWR | (os.O_CREAT if create_mode is not None else 0)
            try:
                fd = os.open(real, flags, create_mode or 0o644)
            except PermissionError:
                fd = os.open(real, os.O_RDONLY)
            node = Node(real, fd, os.fstat(fd).st_size, real.endswith(self.volatile_suffixes))
            self.nodes[real] = node
        return node

    def open(self, real: str, create_mode: int | None = None) -> int:
        node = self.node(real, create_mode)
        node.handles += 1
        fh, self._next_fh = self._next_fh, self._next_fh + 1
        self.handles[fh] = node
        return fh

    def release(self, fh: int) -> None:
        node = self.handles.pop(fh)
        node.handles -= 1
        self._forget_if_idle(node)

    def _forget_if_idle(self, node: Node) -> None:
        if node.handles == 0 and not node.ops:
            if self.nodes.get(node.path) is node:
                del self.nodes[node.path]
            os.close(node.fd)

    def write(self, node: Node, data: bytes, offset: int) -> int:
        if node.volatile:
            written = os.pwrite(node.fd, data, offset)
        else:
            self._seq += 1
            node.ops.append(Op(self._seq, offset, bytes(data)))
            written = len(data)
        node.size = max(node.size, offset + written)
        return written

    def truncate(self, node: Node, length: int) -> None:
        if node.volatile:
            os.ftruncate(node.fd, length)
        else:
            self._seq += 1
            node.ops.append(Op(self._seq, length, None))
        node.size = length

    def fsync(self, node: Node) -> None:
        if node.ops:
            self.synced += 1
        node.sync()

    def size_of(self, real: str) -> int | None:
        node = self.nodes.get(real)
        return None if node is None else node.size

    # ------------------------------------------------------------------ namespace

    def create(self, real: str, mode: int) -> int:
        existed = os.path.lexists(real)
        fh = self.open(real, create_mode=mode)
        if not existed:
            self._name_op("create", real)
        return fh

    def mkdir(self, real: str, mode: int) -> None:
        os.mkdir(real, mode)
        self._name_op("mkdir", real)

    def rmdir(self, real: str) -> None:
        os.rmdir(real)
        self._name_op("rmdir", real)

    def unlink(self, real: str) -> None:
        stash = self._stash(real)
        os.unlink(real)
        self._unlinked(real)
        self._name_op("unlink", real, stash=stash)

    def rename(self, old: str, new: str) -> None:
        stash = self._stash(new) if os.path.isfile(new) else ""
        os.rename(old, new)
        self._unlinked(new)
        for path in [p for p in self.nodes if p == old or p.startswith(old + "/")]:
            node = self.nodes.pop(path)
            node.path = new + path[len(old):]
            node.volatile = node.path.endswith(self.volatile_suffixes)
            self.nodes[node.path] = node
        self._name_op("rename", new, old=old, stash=stash, dirs=(os.path.dirname(old), os.path.dirname(new)))

    def fsyncdir(self, real: str) -> None:
        """Every pending namespace operation in this directory is durable now."""
        real = real.rstrip("/") or "/"
        durable = [op for op in self.names if real in op.dirs]
        self.names = [op for op in self.names if real not in op.dirs]
        for op in durable:
            if op.stash:
                os.unlink(op.stash)

    def _name_op(self, kind: str, real: str, old: str = "", stash: str = "", dirs: tuple[str, ...] = ()) -> None:
        if self.strict:
            self.names.append(NameOp(kind, real, dirs or (os.path.dirname(real),), old, stash))
        elif stash:
            os.unlink(stash)

    def _stash(self, real: str) -> str:
        if not self.strict or not os.path.isfile(real):
            return ""
        os.makedirs(self._stash_dir, exist_ok=True)
        self._stashed += 1
        stash = os.path.join(self._stash_dir, str(self._stashed))
        os.link(real, stash)
        return stash

    def _unlinked(self, real: str) -> None:
        node = self.nodes.pop(real, None)
        if node is not None:
            node.ops.clear()  # nothing of an unlinked file can reach the disk any more
            node.path = ""
            if node.handles == 0:
                os.close(node.fd)

    # ------------------------------------------------------------------ the cut

    def pending(self) -> int:
        return sum(len(node.ops) for node in self.nodes.values()) + len(self.names)

    def cut(self, mode: str = "drop", seed: int | None = None) -> Cut:
        """The power goes: what was not fsynced is lost (`drop`), or partly reached the disk (`torn`,
        `reorder`: see the module's docstring). Every file's view falls back to its backing file."""
        if mode not in MODES:
            raise ValueError(f"unknown cut mode {mode!r}: one of {', '.join(MODES)}")
        rng = random.Random(seed)
        ops = sorted(((op, node) for node in self.nodes.values() for op in node.ops), key=lambda pair: pair[0].seq)
        keep: list[bool] = [False] * len(ops)
        torn_at: int | None = None
        if ops and mode == "torn":
            reached = rng.randrange(len(ops) + 1)  # this many reached the disk, the last of them torn
            keep[:reached] = [True] * reached
            torn_at = reached - 1 if reached else None
        elif ops and mode == "reorder":
            keep = [rng.random() < 0.5 for _ in ops]
            chosen = [i for i, k in enumerate(keep) if k]
            torn_at = rng.choice(chosen) if chosen else None
        torn: tuple[str, int, int] | None = None
        lost = lost_bytes = kept = 0
        for i, (op, node) in enumerate(ops):
            size = len(op.data) if op.data is not None else 0
            if not keep[i]:
                lost, lost_bytes = lost + 1, lost_bytes + size
                continue
            kept += 1
            if i == torn_at and op.data is not None:
                part = rng.randrange(size + 1)
                op.apply(node.fd, part)
                torn = (node.path[len(self.backing):], part, size)
                lost_bytes += size - part
            else:
                op.apply(node.fd)
        undone = len(self.names)
        for name_op in reversed(self.names):
            name_op.undo()
        self.names.clear()
        for node in self.nodes.values():  # every file is looked up afresh: a name may mean another file now
            node.ops.clear()
            node.size = node.durable_size()
            if node.handles == 0:
                os.close(node.fd)
            # else: a release still on its way (asynchronous after a kill) closes it
        self.nodes.clear()
        self.cuts += 1
        return Cut(mode, len(ops), lost, lost_bytes, kept, torn, undone)


# ---------------------------------------------------------------------------------------- FUSE


def _fuse_ops(model: CrashModel) -> Any:
    """The mfusepy operations over `model` (imported here: the model itself needs no FUSE)."""
    import mfusepy as fuse

    def guard(fn: Any) -> Any:
        def call(*args: Any) -> Any:
            with model.lock:
                try:
                    return fn(*args)
                except OSError as exc:
                    raise fuse.FuseOSError(exc.errno or errno.EIO) from None
        call.__name__ = fn.__name__
        return call

    class CrashFS(fuse.Operations):
        use_ns = True

        def init(self, path: str) -> None:
            print("ready", flush=True)

        @guard
        def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
            node = model.handles.get(fh) if fh is not None else None
            real = node.path if node is not None and node.path else model.real(path)
            st = os.fstat(node.fd) if node is not None else os.lstat(real)
            attrs = {key: getattr(st, key) for key in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size",
                                                        "st_atime_ns", "st_mtime_ns", "st_ctime_ns", "st_blocks")}
            for key in ("st_atime", "st_mtime", "st_ctime"):
                attrs[key] = attrs.pop(key + "_ns")
            size = node.size if node is not None else model.size_of(real)
            if size is not None:
                attrs["st_size"] = size
            return attrs

        @guard
        def readdir(self, path: str, fh: int) -> list[str]:
            return [".", "..", *os.listdir(model.real(path))]

        @guard
        def statfs(self, path: str) -> dict[str, int]:
            st = os.statvfs(model.real(path))
            return {key: getattr(st, key) for key in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail",
                                                       "f_files", "f_ffree", "f_favail", "f_flag", "f_namemax")}

        @guard
        def access(self, path: str, amode: int) -> int:
            if not os.access(model.real(path), amode):
                raise OSError(errno.EACCES, "")
            return 0

        @guard
        def open(self, path: str, flags: int) -> int:
            real = model.real(path)
            fh = model.open(real)
            if flags & os.O_TRUNC:
                model.truncate(model.handles[fh], 0)
            return fh

        @guard
        def create(self, path: str, mode: int, flags: int = 0) -> int:
            return model.create(model.real(path), mode)

        @guard
        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            return model.handles[fh].read(size, offset)

        @guard
        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            return model.write(model.handles[fh], data, offset)

        @guard
        def truncate(self, path: str, length: int, fh: int | None = None) -> int:
            if fh is not None and fh in model.handles:
                model.truncate(model.handles[fh], length)
            else:
                tmp = model.open(model.real(path))
                model.truncate(model.handles[tmp], length)
                model.release(tmp)
            return 0

        @guard
        def fsync(self, path: str, datasync: int, fh: int) -> int:
            model.fsync(model.handles[fh])
            return 0

        def flush(self, path: str, fh: int) -> int:
            return 0

        @guard
        def release(self, path: str, fh: int) -> int:
            model.release(fh)
            return 0

        @guard
        def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
            model.fsyncdir(model.real(path))
            return 0

        @guard
        def mkdir(self, path: str, mode: int) -> int:
            model.mkdir(model.real(path), mode)
            return 0

        @guard
        def rmdir(self, path: str) -> int:
            model.rmdir(model.real(path))
            return 0

        @guard
        def unlink(self, path: str) -> int:
            model.unlink(model.real(path))
            return 0

        @guard
        def rename(self, old: str, new: str) -> int:
            model.rename(model.real(old), model.real(new))
            return 0

        @guard
        def chmod(self, path: str, mode: int) -> int:
            os.chmod(model.real(path), mode)
            return 0

        @guard
        def chown(self, path: str, uid: int, gid: int) -> int:
            os.chown(model.real(path), uid, gid)
            return 0

        @guard
        def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
            if times is None:
                os.utime(model.real(path))
            else:
                os.utime(model.real(path), ns=times)
            return 0

    return CrashFS()


def _control(model: CrashModel) -> None:
    """Commands on stdin, one answer (a JSON line) each on stdout."""
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        with model.lock:
            if words[0] == "cut":
                cut = model.cut(words[1] if len(words) > 1 else "drop", int(words[2]) if len(words) > 2 else None)
                answer: dict[str, Any] = {"cut": cut.__dict__}
            elif words[0] == "stats":
                answer = {"pending": model.pending(), "pending_names": len(model.names), "cuts": model.cuts,
                          "synced": model.synced, "open": len(model.handles)}
            else:
                answer = {"error": f"unknown command {words[0]!r}"}
        print(json.dumps(answer), flush=True)


def serve(backing: str, mountpoint: str, strict: bool = False) -> None:
    """Mount and serve until unmounted (single-threaded: operations are serialised anyway)."""
    import mfusepy as fuse

    model = CrashModel(backing, strict=strict)
    threading.Thread(target=_control, args=(model,), name="powercut-control", daemon=True).start()
    fuse.FUSE(_fuse_ops(model), mountpoint, foreground=True, nothreads=True, fsname="powercut", hard_remove=True,
              attr_timeout=0, entry_timeout=0, negative_timeout=0)


# ---------------------------------------------------------------------------------------- the test side


class PowerCutFS:
    """The file system mounted at `mountpoint` over `backing`, served by a child process."""

    def __init__(self, backing: str | Path, mountpoint: str | Path, strict: bool = True) -> None:
        self.backing, self.mountpoint = Path(backing).resolve(), Path(mountpoint).resolve()
        self.strict = strict
        self._proc: subprocess.Popen[str] | None = None

    @staticmethod
    def unavailable() -> str | None:
        """Why this machine cannot mount it (None if it can): for a test to fail with a clear message."""
        if not os.path.exists("/dev/fuse"):
            return "/dev/fuse is missing"
        if shutil.which("fusermount3") is None:
            return "fusermount3 is missing: install the Debian package fuse3 (scripts/bootstrap.sh does)"
        try:
            import mfusepy  # noqa: F401
        except (ImportError, OSError) as exc:
            return f"mfusepy cannot load libfuse 3 ({exc}): pip install -e '.[test]' and apt-get install fuse3"
        return None

    def __enter__(self) -> PowerCutFS:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        root = Path(__file__).resolve().parents[1]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
        self._proc = subprocess.Popen([sys.executable, "-m", "testkit.powercut", str(self.backing), str(self.mountpoint),
                                       *(["--strict"] if self.strict else [])],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=root)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if line.strip() != "ready":
            self._proc.kill()
            self._proc.wait(10)
            raise RuntimeError(f"the power-cut file system did not mount at {self.mountpoint} (got {line!r})")
        deadline = time.monotonic() + 10
        while not os.path.ismount(self.mountpoint):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.mountpoint} is not a mount point after start")
            time.sleep(0.01)

    def _ask(self, command: str) -> dict[str, Any]:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None, "not started"
        proc.stdin.write(command + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("the power-cut file system died")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise ValueError(answer["error"])
        return answer

    def cut(self, mode: str = "drop", seed: int | None = None) -> Cut:
        """Power cut: kill (and wait for) every process using the mount first."""
        data = self._ask(f"cut {mode} {seed if seed is not None else random.randrange(1 << 30)}")["cut"]
        return Cut(**{**data, "torn": tuple(data["torn"]) if data["torn"] else None})

    def stats(self) -> dict[str, Any]:
        return self._ask("stats")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)], capture_output=True, check=False)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--strict"]
    if len(args) != 2:
        sys.exit("usage: python -m testkit.powercut BACKING_DIR MOUNTPOINT [--strict]"
                 " (commands on stdin: cut MODE SEED, stats)")
    serve(args[0], args[1], strict="--strict" in sys.argv)
