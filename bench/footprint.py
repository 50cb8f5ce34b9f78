"""Footprint of `edge-agent run` as a process: RSS with 10 meters x 20 points and with 100 x 40, and
CPU per 1,000 values at 200 values/s (10 SDM630-like meters x 20 points, polled every second,
1 s batches to a real mosquitto).

The meters are simulated in this (the bench's) process, so the agent's CPU is its own. CPU comes
from each thread's schedstat (nanoseconds); on a shared machine it is noisy, RSS is not.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.daemon import _proc_stat
from bench.report import Figure
from bench.workload import REFERENCE_METER, library, park_config

REPO = Path(__file__).resolve().parents[1]
METER20 = "eastron/sdm630"  # 21 float32 points: the peer comparison's meter


def measure(devices: int, ref: str, interval_s: int, warm_up: float, window: float) -> tuple[float, float, int]:
    """(RSS in MB at the end, CPU seconds in the window, values polled per second) of one agent."""
    from agent.simulate import SimulatedDevice
    from testkit.broker import Broker
    from testkit.sims import SimThread

    sim = SimThread()
    profile = library().load(ref)
    spec, _ = sim.tcp({i + 1: SimulatedDevice(profile) for i in range(devices)})
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "broker").mkdir()
        broker = Broker(directory / "broker").start()
        notify = directory / "notify.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(notify))
        sock.settimeout(30)
        config = park_config(directory, spec.port, broker.port, devices, ref, f"{interval_s}s")
        agent = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(config)], cwd=REPO,
                                 stderr=subprocess.DEVNULL, env={**os.environ, "NOTIFY_SOCKET": str(notify)})
        try:
            while not sock.recv(4096).decode().startswith("READY=1"):
                pass
            time.sleep(warm_up)
            _, cpu_before = _proc_stat(agent.pid)
            time.sleep(window)
            rss_kb, cpu_after = _proc_stat(agent.pid)
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(30)
            sock.close()
            broker.stop()
    sim.stop()
    return rss_kb / 1024, cpu_after - cpu_before, devices * len(profile.points) // interval_s


def run(quick: bool = False) -> list[Figure]:
    runs = 1 if quick else 3
    window = 20.0 if quick else 60.0
    small = [measure(10, METER20, 1, 5.0, window) for _ in range(runs)]
    large = [measure(100, REFERENCE_METER, 10, 25.0 if quick else 35.0, 1.0) for _ in range(runs)]
    rate = small[0][2]
    cpu_per_1000 = statistics.median(cpu / (rate * window) * 1000 for _, cpu, _ in small)
    note = f"median of {runs}" if runs > 1 else "one run"
    return [
        Figure("RSS, 10 meters x 20 points (1 s polls and batches)", statistics.median(r for r, _, _ in small), "MB",
               40.0, note=f"{note}; eastron/sdm630 (21 points), mosquitto"),
        Figure("RSS, 100 meters x 40 points (10 s polls)", statistics.median(r for r, _, _ in large), "MB", 45.0,
               note=f"{note}; {REFERENCE_METER}, after two poll rounds"),
        Figure("CPU per 1,000 values at 200 values/s", cpu_per_1000 * 1000, "ms", 25.0,
               note=f"{note}; {rate} values/s for {window:.0f} s, all threads of the agent; noisy on a shared machine"),
    ]
