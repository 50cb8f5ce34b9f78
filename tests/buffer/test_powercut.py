"""Power cuts, not only kill -9: the buffer on a file system that loses what was not fsynced
(testkit/powercut.py), killed at random moments, then the power cut (dropping, tearing or reordering the
unsynced writes), then restarted.

Every batch whose commit returned is present after the restart or was acknowledged; no
acknowledged batch comes back; nothing appears that was never written; sequence numbers are never
handed out twice; the gap the first batch after the start reports (from `last_before_start`) covers
every batch that was lost and nothing that was committed; no start fails and no payload fails its CRC.
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testkit.powercut import MODES, CrashModel, PowerCutFS

CHILD = Path(__file__).with_name("powercut_child.py")
REPO = Path(__file__).resolve().parents[2]



# ------------------------------------------------------------------ the model alone (no FUSE)


def test_model_reads_durable_content_with_pending_operations_on_top(tmp_path: Path) -> None:
    model = CrashModel(tmp_path)
    fh = model.open(str(tmp_path / "f"), create_mode=0o644)
    node = model.handles[fh]
    model.write(node, b"0123456789", 0)
    model.fsync(node)
    model.truncate(node, 4)
    model.write(node, b"xy", 6)  # 4..5 read as zeros: the truncate removed them
    assert node.read(100, 0) == b"0123\x00\x00xy"
    assert (tmp_path / "f").read_bytes() == b"0123456789"  # nothing of it is durable yet
    cut = model.cut("drop")
    assert (cut.pending, cut.lost, cut.kept) == (2, 2, 0)
    assert node.read(100, 0) == b"0123456789"


@pytest.mark.parametrize("seed", range(20))
def test_model_torn_cut_keeps_a_prefix_of_the_writes_in_issue_order(tmp_path: Path, seed: int) -> None:
    model = CrashModel(tmp_path)
    a, b = (model.handles[model.open(str(tmp_path / name), create_mode=0o644)] for name in "ab")
    writes = [(a, b"A" * 100, 0), (b, b"B" * 100, 0), (a, b"C" * 100, 100), (b, b"D" * 100, 100)]
    for node, data, offset in writes:
        model.write(node, data, offset)
    cut = model.cut("torn", seed)
    expected = {"a": b"", "b": b""}
    for i, (node, data, offset) in enumerate(writes[:cut.kept]):
        name = Path(node.path).name
        part = data if i < cut.kept - 1 else data[:cut.torn[1]] if cut.torn else data
        expected[name] = expected[name][:offset] + part
    assert {"a": (tmp_path / "a").read_bytes(), "b": (tmp_path / "b").read_bytes()} == expected
    assert cut.lost == len(writes) - cut.kept


OPS = st.lists(st.one_of(
    st.tuples(st.just("write"), st.integers(0, 300), st.binary(min_size=1, max_size=80)),
    st.tuples(st.just("truncate"), st.integers(0, 300), st.just(b"")),
    st.tuples(st.just("fsync"), st.just(0), st.just(b"")),
    st.tuples(st.just("cut"), st.just(0), st.just(b""))), max_size=30)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_model_matches_a_reference_file(tmp_path: Path, ops: list[tuple[str, int, bytes]]) -> None:
    """Reads see durable content + pending operations; fsync makes them durable; a cut (drop) goes back."""
    path = tmp_path / "f"
    path.unlink(missing_ok=True)
    model = CrashModel(tmp_path)
    node = model.handles[model.open(str(path), create_mode=0o644)]
    durable, current = b"", bytearray()
    for kind, n, data in ops:
        if kind == "write":
            current.extend(bytes(max(0, n - len(current))))
            current[n:n + len(data)] = data
            model.write(node, data, n)
        elif kind == "truncate":
            current = current[:n] + bytearray(max(0, n - len(current)))
            model.truncate(node, n)
        elif kind == "fsync":
            model.fsync(node)
            durable = bytes(current)
        else:
            model.cut("drop")
            node = model.handles[model.open(str(path))]  # the writer's handle died with it
            current = bytearray(durable)
        assert node.read(1000, 0) == bytes(current)
        assert node.read(7, 13) == bytes(current[13:20])
        assert path.read_bytes() == durable


def test_model_volatile_files_pass_through(tmp_path: Path) -> None:
    model = CrashModel(tmp_path)
    node = model.handles[model.open(str(tmp_path / "x.db-shm"), create_mode=0o644)]
    model.write(node, b"index", 0)
    assert (tmp_path / "x.db-shm").read_bytes() == b"index"
    assert model.cut("drop").pending == 0


def test_model_strict_namespace_needs_a_directory_fsync(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    model = CrashModel(disk, strict=True)
    for name in ("old", "kept"):
        node = model.handles[model.create(str(disk / name), 0o644)]
        model.write(node, name.encode(), 0)
        model.fsync(node)
    model.fsyncdir(str(disk))
    fresh = model.handles[model.create(str(disk / "fresh"), 0o644)]
    model.write(fresh, b"fsynced, but its name is not", 0)
    model.fsync(fresh)
    model.rename(str(disk / "old"), str(disk / "new"))
    model.unlink(str(disk / "kept"))
    assert sorted(os.listdir(disk)) == ["fresh", "new"]
    cut = model.cut("drop")
    assert cut.undone == 3
    assert sorted(os.listdir(disk)) == ["kept", "old"]
    assert (disk / "kept").read_bytes() == b"kept"
    model.rename(str(disk / "old"), str(disk / "new"))
    model.fsyncdir(str(disk))
    assert model.cut("drop").undone == 0
    assert sorted(os.listdir(disk)) == ["kept", "new"]


# ------------------------------------------------------------------ the file system mounted


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def test_mounted_file_system_loses_what_was_not_fsynced(powercut_fs: PowerCutFS) -> None:
    root = powercut_fs.mountpoint
    for name in ("synced", "unsynced"):
        (root / name).touch()
    fsync_dir(root)
    with open(root / "synced", "wb") as f:
        f.write(b"kept")
        f.flush()
        os.fsync(f.fileno())
        f.write(b" and lost")
    (root / "unsynced").write_bytes(b"lost")
    (root / "unnamed").write_bytes(b"")  # its directory is not fsynced after this
    assert (root / "synced").read_bytes() == b"kept and lost"
    cut = powercut_fs.cut("drop")
    assert (cut.lost, cut.undone) == (3, 1)  # " and lost"; "unsynced" truncated on open (O_TRUNC), then written
    assert (root / "synced").read_bytes() == b"kept"
    assert (root / "unsynced").read_bytes() == b""
    assert not (root / "unnamed").exists()


def test_sqlite_in_wal_mode_through_the_mount(powercut_fs: PowerCutFS) -> None:
    """The -shm is memory-mapped through FUSE; every committed row survives a cut, torn or not."""
    import sqlite3
    db = powercut_fs.mountpoint / "t.db"
    for cut in range(6):
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER PRIMARY KEY)")
        for i in range(20):
            conn.execute("INSERT INTO t VALUES (?)", (cut * 100 + i,))
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t VALUES (?)", (cut * 100 + 99,))  # never committed
        conn.close()  # rolls back; a crash would too
        powercut_fs.cut(MODES[cut % len(MODES)], cut)
        conn = sqlite3.connect(db)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = {x for (x,) in conn.execute("SELECT x FROM t")}
        conn.close()
        assert rows == {c * 100 + i for c in range(cut + 1) for i in range(20)}


# ------------------------------------------------------------------ the buffer's crash loop


class Zygote:
    """powercut_child.py: forks a writer on `run`, reaps it on `wait`; its lines are collected."""

    def __init__(self, directory: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, str(CHILD), str(directory)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=REPO,
                                     env={**os.environ, "PYTHONPATH": str(REPO)})
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self._next() == "ZYGOTE"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put("")

    def _next(self) -> str:
        line = self.lines.get(timeout=60)
        assert line, "the writer's zygote died"
        return line

    def _send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def run_until_killed(self, seed: int, lifetime: float, after_open: bool = True, after: str = "OPEN ") -> list[str]:
        """Fork a writer, let it run `lifetime` s (from its start, or from when it printed a line
        starting with `after`: by default, once it has opened the buffer), kill -9 it and wait until
        it is gone: its lines."""
        out: list[str] = []
        self._send(f"run {seed}")
        while not (line := self._next()).startswith("PID "):
            out.append(line)
        pid = int(line.split()[1])
        while after_open and not any(line.startswith((after, "ERROR ")) for line in out):
            out.append(self._next())
        time.sleep(lifetime)
        os.kill(pid, signal.SIGKILL)
        self._send(f"wait {pid}")
        while (line := self._next()) != f"EXIT {pid}":
            out.append(line)
        return out

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


@dataclass
class History:
    """What the writers reported across all cycles: the truth the next start is checked against."""

    committed: set[int] = field(default_factory=set)
    acked: set[int] = field(default_factory=set)
    in_doubt: set[int] = field(default_factory=set)  # ack commit started, not known to have returned
    written: dict[int, int] = field(default_factory=dict)  # seq -> t_last of every batch a commit was tried for
    boot: int = 0
    epoch: int | None = None
    opens: int = 0
    recoveries: int = 0
    open_ms: list[int] = field(default_factory=list)
    uncommitted: set[int] = field(default_factory=set)  # commit tried, not known to have returned
    lost_batches: int = 0  # batches whose commit did not return and that are gone (inside the gap)

    def check_open(self, cycle: int, state: dict) -> None:
        where = f"cycle {cycle}"
        present = set(state["present"])
        assert state["on_disk"], f"{where}: the store started in memory"
        assert state["quarantined"] == 0, f"{where}: a payload failed its CRC"
        assert not state["recovered"], f"{where}: the file needed recovery: {state['lost']}"
        if self.epoch is not None:
            assert state["epoch"] == self.epoch, f"{where}: a new epoch without a recovery"
        self.epoch = state["epoch"]
        self.acked |= self.in_doubt - present  # an ack in flight at the kill took effect: fine
        self.in_doubt.clear()
        lost = self.committed - self.acked - present
        assert not lost, f"{where}: committed batches lost: {sorted(lost)[:10]}"
        assert not (present & self.acked), f"{where}: acknowledged batches came back: {sorted(present & self.acked)[:10]}"
        phantoms = present - set(self.written)
        assert not phantoms, f"{where}: batches never written: {sorted(phantoms)[:10]}"
        assert state["boot"] > self.boot, f"{where}: boot count {state['boot']} after {self.boot}"
        self.boot = state["boot"]
        # the gap the first batch reports starts at the newest reading on disk: after everything committed,
        # before everything lost
        gap_from = state["last_before_start"]
        newest_committed = max((self.written[s] for s in self.committed), default=None)
        if newest_committed is not None:
            assert gap_from is not None and gap_from >= newest_committed, \
                f"{where}: the gap starts at {gap_from}, before the committed reading at {newest_committed}"
        gone = {s for s in self.uncommitted if s not in present}
        for seq in gone:
            assert gap_from is None or self.written[seq] > gap_from, \
                f"{where}: batch {seq} lost but before the reported gap ({self.written[seq]} <= {gap_from})"
        self.lost_batches += len(gone)
        self.uncommitted.clear()
        self.committed |= present  # seen on disk after a cut: durable from now on, whatever the writer printed
        self.opens += 1
        self.open_ms.append(state["open_ms"])

    def record(self, cycle: int, lines: list[str]) -> None:
        for line in lines:
            kind, _, rest = line.partition(" ")
            if kind == "OPEN":
                self.check_open(cycle, json.loads(rest))
            elif kind == "ERROR":
                pytest.fail(f"cycle {cycle}: the writer failed: {rest}")
            elif kind == "M":
                pytest.fail(f"cycle {cycle}: the store fell back to memory")
            elif kind == "c":
                seq, t_last = (int(x) for x in rest.split())
                assert seq not in self.written, f"cycle {cycle}: seq {seq} handed out twice"
                self.written[seq] = t_last
                self.uncommitted.add(seq)
            elif kind == "C":
                self.committed.add(int(rest))
                self.uncommitted.discard(int(rest))
            elif kind == "a":
                self.in_doubt.add(int(rest))
            elif kind == "A":
                self.acked.add(int(rest))
                self.in_doubt.discard(int(rest))


def test_a_new_buffer_directory_survives_a_cut_right_after_the_first_commit(powercut_fs: PowerCutFS) -> None:
    """The agent creates its buffer directory (and parents) and the database file: POSIX makes a new
    name durable only once its directory is fsynced, so without that a cut can take the whole
    buffer, committed batches and epoch included."""
    zygote = Zygote(powercut_fs.mountpoint / "var" / "buffer")
    try:
        history = History()
        history.record(0, zygote.run_until_killed(1, 0.0, after="C "))
        assert history.committed
        powercut_fs.cut("drop")
        history.record(1, zygote.run_until_killed(2, 0.0))
        assert history.opens == 2
    finally:
        zygote.close()


@pytest.mark.timeout(900)  # ~1 min in the default run (250 cuts), ~8 min with --long (2,000)
def test_buffer_survives_power_cuts(powercut_fs: PowerCutFS, long_mode: bool) -> None:
    cycles = 2000 if long_mode else int(os.environ.get("POWERCUT_CYCLES", 250))
    rng = random.Random(20261129)
    zygote = Zygote(powercut_fs.mountpoint / "buffer")
    history = History()
    lost_writes = torn = 0
    started = time.monotonic()
    try:
        for cycle in range(cycles):
            during_start = rng.random() < 0.2  # else while committing and acknowledging
            lifetime = rng.uniform(0.0, 0.08) if during_start else rng.uniform(0.0, 0.2)
            history.record(cycle, zygote.run_until_killed(rng.randrange(1 << 30), lifetime, not during_start))
            cut = powercut_fs.cut(rng.choice(MODES), rng.randrange(1 << 30))
            lost_writes += cut.lost
            torn += cut.torn is not None
        final = zygote.run_until_killed(1, 0.3)
        history.record(cycles, final)
        assert any(line.startswith("OPEN ") for line in final), "the last start did not open the buffer"
    finally:
        zygote.close()
    elapsed = time.monotonic() - started
    print(f"\n{cycles} power cuts in {elapsed:.0f} s: {history.opens} starts, {len(history.committed)} batches "
          f"committed, {len(history.acked)} acknowledged, {history.lost_batches} uncommitted batches lost "
          f"(inside the reported gap), {lost_writes} unsynced writes dropped, {torn} torn; "
          f"start to open: median {sorted(history.open_ms)[len(history.open_ms) // 2]} ms, max {max(history.open_ms)} ms")
    # the loop did real work: writers ran, commits returned, cuts dropped data that was in flight
    assert history.opens > cycles // 2
    assert len(history.committed) > cycles
    assert lost_writes > 0 and torn > 0
