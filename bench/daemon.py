"""Daemon footprint: time from start to READY=1, RSS and CPU share with N devices
polled every 10 s against simulated meters on loopback, and the time SIGTERM takes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import Figure
from bench.workload import PROFILES, REFERENCE_METER, library

REPO = Path(__file__).resolve().parents[1]


def _config(directory: Path, port: int, devices: int) -> Path:
    lines = ["gateway: {id: gw-bench, site: bench}", f'profiles_dirs: ["{PROFILES}"]',
             f'buses: [{{name: plant, url: "tcp://127.0.0.1:{port}"}}]', "devices:"]
    lines += [f"  - {{id: meter-{i:03d}, bus: plant, unit: {i + 1}, profile: {REFERENCE_METER}, interval: 10s}}"
              for i in range(devices)]
    lines.append(f'buffer: {{path: "{directory}/buf", max_bytes: 64MiB, min_free_bytes: 1MiB}}')
    path = directory / "agent.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _proc_stat(pid: int) -> tuple[int, float]:
    """(VmRSS in kB, CPU seconds of all its threads). CPU from schedstat: nanoseconds, where
    /proc/<pid>/stat counts 10 ms ticks, too coarse for a process idle between polls."""
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    cpu_ns = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            cpu_ns += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError):
            pass  # a thread that ended meanwhile
    return rss_kb, cpu_ns / 1e9


def run(quick: bool = False) -> list[Figure]:
    from agent.simulate import SimulatedDevice
    from testkit.sims import SimThread

    devices = 20 if quick else 100
    sim = SimThread()
    profile = library().load(REFERENCE_METER)
    spec, _ = sim.tcp({i + 1: SimulatedDevice(profile) for i in range(devices)})
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        notify = directory / "notify.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(notify))
        sock.settimeout(30)
        started = time.monotonic()
        agent = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(_config(directory, spec.port, devices))],
                                 cwd=REPO, stderr=subprocess.DEVNULL, env={**os.environ, "NOTIFY_SOCKET": str(notify)})
        while not sock.recv(4096).decode().startswith("READY=1"):
            pass
        ready = time.monotonic() - started
        time.sleep(12 if quick else 25)  # at least two poll rounds
        rss_kb, cpu_before = _proc_stat(agent.pid)
        window = 10.0 if quick else 30.0
        time.sleep(window)
        rss_kb, cpu_after = _proc_stat(agent.pid)
        idle_share = _idle_share(agent.pid)
        stop_started = time.monotonic()
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
        stopped = time.monotonic() - stop_started
        sock.close()
    sim.stop()
    points = devices * len(profile.points)
    return [Figure("start to READY", ready, "s", 1.5, note=f"{devices} devices, {points} points"),
            Figure(f"RSS with {devices} devices x {len(profile.points)} points", rss_kb / 1024, "MB", 60.0),
            Figure("CPU share polling every 10 s", 100 * (cpu_after - cpu_before) / window, "% of one core",
                   note=f"{points / 10:.0f} values/s through poll, batch, encode, buffer"),
            Figure("CPU share idle between polls", idle_share, "% of one core",
                   note="from 3 s to 9 s after the aligned 10 s poll: timers, clock watch, buffer ticks"),
            Figure("SIGTERM to exit", stopped, "s", 5.0)]


def _idle_share(pid: int) -> float:
    """CPU share in the quiet part of the 10 s cycle (polls are aligned to wall-clock multiples)."""
    time.sleep(3.0 - time.time() % 10 if time.time() % 10 < 3.0 else 13.0 - time.time() % 10)
    _, before = _proc_stat(pid)
    time.sleep(6.0)
    _, after = _proc_stat(pid)
    return 100 * (after - before) / 6.0
