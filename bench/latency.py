"""What a user feels: from spawning `edge-agent run` to its first Modbus request and to its first
telemetry at a subscriber, and the latency from each reading's own timestamp to its arrival at a
subscriber (what a platform sees), with 1 s and 10 s batches.

The park: 10 SDM630s on one simulated Modbus TCP server, polled every second, a real mosquitto, the
real agent as a process, and the test platform's subscriber (arrival stamped on its receive thread).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import Figure
from bench.workload import park_config

REPO = Path(__file__).resolve().parents[1]
METERS = 10


def _one_run(batch_s: int, seconds: float) -> dict[str, float]:
    from agent.config import ProfileLibrary
    from agent.simulate import SimulatedDevice
    from testkit.broker import Broker
    from testkit.platform import Platform
    from testkit.sims import SimThread

    sim = SimThread()
    meters = {i + 1: SimulatedDevice(ProfileLibrary().load("eastron/sdm630"), history=1000) for i in range(METERS)}
    spec, _ = sim.tcp(meters)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "broker").mkdir()
        broker = Broker(directory / "broker").start()
        platform = Platform(broker.port, "park/#", client_id="bench-latency")
        config = park_config(directory, spec.port, broker.port, METERS, batch=f"{batch_s}s")
        spawned = time.time()
        agent = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(config)], cwd=REPO,
                                 stderr=subprocess.DEVNULL, env=dict(os.environ))
        time.sleep(seconds)
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
        platform.close()
        broker.stop()
    sim.stop()
    # the simulator also logs the image it builds before the agent exists: the first request after spawning
    first_request = min(t for m in meters.values() for t, _ in m.served_log if t >= spawned)
    arrivals = list(platform.arrivals)
    live = [(at, r.ts / 1000) for at, header, rs in platform.batches() if not header.flags & 1 for r in rs]
    late = [at - ts for at, ts in live]
    beyond = [at - (ts // batch_s + 1) * batch_s for at, ts in live]  # after the end of the reading's window
    return {"first_request": first_request - spawned, "first_telemetry": arrivals[0][0] - spawned,
            "p50": statistics.median(late), "p95": statistics.quantiles(late, n=20)[-1],
            "beyond_p95": statistics.quantiles(beyond, n=20)[-1], "readings": len(live)}


def run(quick: bool = False) -> list[Figure]:
    seconds = 12.0 if quick else 40.0
    one = _one_run(1, seconds)
    ten = _one_run(10, seconds + 10)
    return [
        Figure("spawn to first Modbus request", one["first_request"], "s", 0.5,
               note=f"{METERS} SDM630 on Modbus TCP, 1 s polls (the first poll runs at once)"),
        Figure("spawn to first telemetry at a subscriber, 1 s batches", one["first_telemetry"], "s", 0.6),
        Figure("reading to subscriber latency p50, 1 s batches", one["p50"], "s", 0.1,
               note=f"from each reading's own timestamp; {one['readings']:.0f} readings"),
        Figure("reading to subscriber latency p95, 1 s batches", one["p95"], "s", 0.25),
        Figure("arrival relative to its window's end p95, 10 s batches", ten["beyond_p95"], "s", 0.1,
               note=f"negative: sealed before the window ends, once its last polls are in; latency p50 "
                    f"{ten['p50']:.2f} s (the window itself); {ten['readings']:.0f} readings"),
    ]
