"""The buffer's disk fails under a running `edge-agent run`: live data keeps arriving at a real broker,
and every reading is delivered or counted lost.

Real file systems (needs root, as CI has): an ext4 image on a loop device driven into its
errors=remount-ro state through ext4's own `trigger_fs_error` (what an SD card with errors does to a
gateway), then fsck'd and mounted again; a small tmpfs filled by another program; the database file
overwritten with garbage in place.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import ProfileLibrary
from agent.simulate import SimulatedDevice
from testkit.broker import Broker
from testkit.card import Card, CardUnavailable
from tests.conftest import SimThread
from tests.daemon.test_run import PINNED, Platform, start_agent, write_config


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a test file system here: {done.stderr.strip()}")


@contextlib.contextmanager
def sd_card(tmp_path: Path) -> Iterator[Card]:
    try:
        card = Card(tmp_path / "sd.img", tmp_path / "sd", mib=32)
    except CardUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield card
    finally:
        card.close()


@contextlib.contextmanager
def tmpfs(where: Path, mib: int) -> Iterator[Path]:
    where.mkdir()
    _mount("-t", "tmpfs", "-o", f"size={mib}M", "tmpfs", str(where))
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def seconds_of(platform: Platform) -> set[int]:
    return {r.ts // 1000 for r in platform.readings() if r.point == "voltage_l1"}


def events(platform: Platform, kind: str) -> list[dict]:  # type: ignore[type-arg]
    return [e for e in platform.events if e.get("event") == kind]


def stop(agent: subprocess.Popen[str]) -> str:
    agent.send_signal(signal.SIGTERM)
    _, err = agent.communicate(15)
    assert agent.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    return err


def missing_seconds(platform: Platform, lost_spans: list[tuple[int, int]]) -> list[int]:
    """Seconds between the first and the last reading with no reading and no announced loss."""
    got = seconds_of(platform)
    covered = {s for a, b in lost_spans for s in range(a // 1000, b // 1000 + 1)}
    return [s for s in range(min(got), max(got) + 1) if s not in got and s not in covered]


def serve_meter(sim: SimThread) -> int:
    spec, _ = sim.tcp({1: SimulatedDevice(ProfileLibrary().load("eastron/sdm630"), dict(PINNED), moving=False)})
    return spec.port


def test_sd_card_remounted_read_only_mid_run(sim: SimThread, broker: Broker, tmp_path: Path) -> None:
    """always mode writes every batch: the card goes read-only (ext4 errors=remount-ro), batches go on
    from memory, live; after fsck and a fresh mount the agent re-attaches by itself and replays."""
    with sd_card(tmp_path) as card:
        platform = Platform(broker.port)
        config = write_config(tmp_path / "agent.yaml", serve_meter(sim), broker.port, card.where / "buffer")
        config.write_text(config.read_text().replace("min_free_bytes: 1MiB}", "min_free_bytes: 1MiB, mode: always}"))
        agent = start_agent(config)
        try:
            assert platform.wait(lambda: len(seconds_of(platform)) >= 3, 20)
            card.fail()
            assert platform.wait(lambda: events(platform, "buffer_unavailable"), 15)
            during = len(seconds_of(platform))
            assert platform.wait(lambda: len(seconds_of(platform)) >= during + 5, 15)  # live, from memory
            assert any("memory" in str(s.get("buffer", "")) for s in platform.status)  # retained status says so
            card.repair()  # the operator checks the card and mounts it again
            assert platform.wait(lambda: events(platform, "buffer_restored"), 40)
            newest = int(time.time())  # live data from now on, not the backlog arriving
            assert platform.wait(lambda: max(seconds_of(platform)) >= newest + 2 and not missing_seconds(platform, []), 30)
        finally:
            err = stop(agent)
        platform.close()
        assert missing_seconds(platform, []) == [], err[-2000:]
        unavailable = events(platform, "buffer_unavailable")[0]
        assert "I/O" in unavailable["reason"] or "read" in unavailable["reason"].lower(), unavailable
        assert (card.where / "buffer" / "buffer.sqlite").exists()


def test_disk_filled_by_another_program_during_an_outage(sim: SimThread, broker: Broker, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", 6) as disk:
        platform = Platform(broker.port)
        agent = start_agent(write_config(tmp_path / "agent.yaml", serve_meter(sim), broker.port, disk / "buffer"))
        filler = disk / "filler"
        try:
            assert platform.wait(lambda: len(seconds_of(platform)) >= 2, 20)
            broker.stop()  # an outage: batches are committed every second
            time.sleep(3)
            with contextlib.suppress(OSError), open(filler, "wb") as f:
                while True:  # another program takes every last byte
                    f.write(b"\0" * 65536)
                    f.flush()
            time.sleep(6)
            assert agent.poll() is None  # still running
            broker.start()
            assert platform.wait(lambda: events(platform, "buffer_unavailable") or events(platform, "data_dropped"), 30)
            newest = int(time.time())  # live data from now on, not the backlog arriving
            assert platform.wait(lambda: max(seconds_of(platform)) >= newest + 4, 20)  # live data keeps arriving
            filler.unlink()
            if events(platform, "buffer_unavailable"):
                assert platform.wait(lambda: events(platform, "buffer_restored"), 40)
            lost_spans = lambda: [(e["from_ms"], e["to_ms"]) for e in events(platform, "data_dropped")]
            assert platform.wait(lambda: not missing_seconds(platform, lost_spans()), 30)  # the backlog drained
        finally:
            err = stop(agent)
        platform.close()
        lost = [(e["from_ms"], e["to_ms"]) for e in events(platform, "data_dropped")]
        assert platform.wait(lambda: True, 0) and missing_seconds(platform, lost) == [], err[-2000:]


def test_buffer_file_overwritten_while_running(sim: SimThread, broker: Broker, tmp_path: Path) -> None:
    platform = Platform(broker.port)
    buffer = tmp_path / "buf"
    agent = start_agent(write_config(tmp_path / "agent.yaml", serve_meter(sim), broker.port, buffer))
    try:
        assert platform.wait(lambda: len(seconds_of(platform)) >= 2, 20)
        broker.stop()
        time.sleep(4)  # a backlog on disk
        db = buffer / "buffer.sqlite"
        with open(db, "r+b") as f:  # garbage over the whole file, in place
            f.write(os.urandom(db.stat().st_size))
        time.sleep(8)
        assert agent.poll() is None
        broker.start()
        assert platform.wait(lambda: events(platform, "buffer_lost"), 30)
        newest = int(time.time())  # live data from now on, not the backlog arriving
        # live data goes on, and the backlog drains behind it (at mqtt.drain_rate)
        assert platform.wait(lambda: max(seconds_of(platform)) >= newest + 4 and not missing_seconds(platform, []), 30)
    finally:
        stop(agent)
    platform.close()
    lost = events(platform, "buffer_lost")[0]
    assert "overwritten" in lost["reason"] or "damaged" in lost["reason"], lost
    # the backlog on disk was accounted for: salvaged (what the WAL still held passes its CRC) or counted
    assert lost["salvaged_batches"] + (lost["lost_batches"] or 0) > 0, lost
    epochs = {h.epoch for _, h, _ in platform.batches()}
    assert len(epochs) == 2  # the salvaged file is a new epoch: no dedup key reused
    # readings the garbage took are not delivered, and are counted; the rest all are
    per_second = 9  # pinned SDM630 points per poll that travel
    missing = missing_seconds(platform, [])
    assert len(missing) * per_second <= (lost["lost_readings"] or 0), (missing, lost)
