"""The no-hardware demo: a small simulated park read by the real agent, shown live.

Two energy meters (SDM630, DTSU666) and a water meter share one RS-485 line at 9600 baud (a
paced pseudo-terminal pair: real line timing), a Huawei inverter answers Modbus TCP on loopback,
a mosquitto broker runs on a free port, `edge-agent run` is started as a real process with a
generated config, and what reaches the broker is decoded and printed (`edge-agent tail`) until
Ctrl-C. Beside it the platform end: a private PostgreSQL cluster and `edge-agent ingest`, with
what the database holds printed every few seconds and at the end (hil/demo_platform.py; skipped,
with a one-line hint, where PostgreSQL or psycopg is missing).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from agent.config import ProfileLibrary
from agent.drivers.urls import BusSpec, SerialSettings, Transport
from agent.simulate import SimulatedDevice
from agent.tail import tail
from hil.broker import Broker
from hil.demo_platform import Platform, platform
from hil.line import PacedLine
from hil.sims import SimThread

LINE = [("main-incomer", 1, "eastron/sdm630"), ("hall-b", 2, "chint/dtsu666"), ("water-main", 3, "xintai/water-meter")]
PLANT = [("pv-roof-a", 1, "huawei/sun2000")]
SHOWN = {"active_power", "energy_import", "voltage_l1", "flow_rate", "volume_total", "energy_yield_total",
         "inverter_state"}
DB_EVERY_S = 10.0  # how often the live demo prints what PostgreSQL holds


def config_text(line_port: str, plant_port: int, mqtt_port: int, buffer: Path) -> str:
    devices = [f"  - {{id: {d}, bus: line1, unit: {u}, profile: {p}, interval: 2s}}" for d, u, p in LINE]
    devices += [f"  - {{id: {d}, bus: plant, unit: {u}, profile: {p}, interval: 2s}}" for d, u, p in PLANT]
    return "\n".join([
        "gateway: {id: gw-demo-01, site: demo-park}",
        "buses:",
        f'  - {{name: line1, url: "rtu://{line_port}?baudrate=9600&parity=N&stopbits=1"}}',
        f'  - {{name: plant, url: "tcp://127.0.0.1:{plant_port}"}}',
        "devices:", *devices,
        f'mqtt: {{url: "mqtt://127.0.0.1:{mqtt_port}", topic_prefix: park, batch_interval: 2s}}',
        f'buffer: {{path: "{buffer}", max_bytes: 32MiB, min_free_bytes: 16MiB}}', ""])


@contextlib.contextmanager
def park(workdir: Path) -> Iterator[tuple[Path, int]]:
    """Simulators, line and broker up; yields (config path, broker port)."""
    library = ProfileLibrary()
    line = PacedLine(9600)
    sims = SimThread()
    (workdir / "broker").mkdir()
    broker = Broker(workdir / "broker")
    try:
        sims.serve(BusSpec(Transport.RTU, line.device_port, 0, SerialSettings(9600, "N", 1, 8)),
                   {unit: SimulatedDevice(library.load(ref)) for _, unit, ref in LINE})
        plant, _ = sims.tcp({unit: SimulatedDevice(library.load(ref)) for _, unit, ref in PLANT})
        broker.start()
        config = workdir / "agent.yaml"
        config.write_text(config_text(line.agent_port, plant.port, broker.port, workdir / "buffer"))
        yield config, broker.port
    finally:
        broker.stop()
        sims.stop()
        line.close()


def run_demo(once: bool = False, seconds: float | None = None, emit: Callable[[str], None] = print) -> int:
    with tempfile.TemporaryDirectory(prefix="edge-agent-demo-") as tmp, park(Path(tmp)) as (config, mqtt_port), \
            platform(Path(tmp), mqtt_port, sorted(SHOWN), emit) as db:
        log = open(Path(tmp) / "agent.log", "w")  # noqa: SIM115 - closed below
        agent = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(config)], stderr=log,
                                 env={**os.environ, "PYTHONUNBUFFERED": "1"})
        emit(f"simulated park: SDM630, DTSU666 and a water meter on one 9600-baud RS-485 line, a SUN2000 on "
             f"Modbus TCP; broker mqtt://127.0.0.1:{mqtt_port}; agent pid {agent.pid}. Ctrl-C stops.")
        emit(f"(watch it yourself: edge-agent tail --broker mqtt://127.0.0.1:{mqtt_port})")
        printed = 0
        try:
            limit = seconds if seconds is not None else (20.0 if once else None)
            printed = tail(f"mqtt://127.0.0.1:{mqtt_port}", "park/#", shown_lines(emit, db), count=60 if once else None,
                           timeout=limit)
        except KeyboardInterrupt:
            pass
        finally:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(10)
            except subprocess.TimeoutExpired:
                agent.kill()
            log.close()
            if agent.returncode not in (0, -signal.SIGTERM):
                emit((Path(tmp) / "agent.log").read_text()[-2000:])
        emit(f"{printed} readings decoded from the broker; agent exited with {agent.returncode}")
        if db is not None:
            final_report(db, emit)
        return 0 if printed else 1


def shown_lines(emit: Callable[[str], None], db: Platform | None, every: float = DB_EVERY_S) -> Callable[[str], None]:
    """The tail's printer: the demo's points, status and events; every `every` s (on the tail's
    thread, between readings) what PostgreSQL holds by then."""
    last = time.monotonic()

    def show(text: str) -> None:
        nonlocal last
        if " status: " in text or " events: " in text or text.split(" ")[-1] in SHOWN or \
                any(f" {name}=" in text for name in SHOWN):
            emit(text)
        if db is not None and time.monotonic() - last >= every:
            last = time.monotonic()
            for line in db.report():
                emit(line)

    return show


def final_report(db: Platform, emit: Callable[[str], None], timeout: float = 15.0) -> None:
    """What PostgreSQL holds at the end. The agent has stopped, so no batch is added after the ones
    in flight, which the ingest stores within milliseconds: report once the count has settled
    (unchanged over a second) or at the deadline."""
    deadline = time.monotonic() + timeout
    seen, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        stored = db.stored_batches()
        if stored != seen:
            seen, since = stored, time.monotonic()
        elif stored > 0 and time.monotonic() - since >= 1.0:
            break
        time.sleep(0.1)
    for line in db.report():
        emit(line)
