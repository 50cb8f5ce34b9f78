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
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from agent.config import ProfileLibrary
from agent.drivers.urls import BusSpec, SerialSettings, Transport
from agent.simulate import SimulatedDevice
from agent.tail import tail
from hil.demo_platform import Platform, platform
from testkit.broker import Broker
from testkit.line import PacedLine
from testkit.sims import SimThread

LINE = [("main-incomer", 1, "eastron/sdm630"), ("hall-b", 2, "chint/dtsu666"), ("water-main", 3, "xintai/water-meter")]
PLANT = [("pv-roof-a", 1, "huawei/sun2000")]
SHOWN = {"active_power", "energy_import", "voltage_l1", "flow_rate", "volume_total", "energy_yield_total",
         "inverter_state"}
DEVICES = {d for d, _, _ in LINE + PLANT}
ONCE_READINGS = 60  # --once: at least this many readings, and every device shown twice, then stop (20 s at most)
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
    stop_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="edge-agent-demo-") as tmp, park(Path(tmp)) as (config, mqtt_port), \
            platform(Path(tmp), mqtt_port, sorted(SHOWN), emit) as db:
        log = open(Path(tmp) / "agent.log", "w")  # noqa: SIM115 - closed below
        agent = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(config)], stderr=log,
                                 env={**os.environ, "PYTHONUNBUFFERED": "1"})
        emit(f"simulated park: SDM630, DTSU666 and a water meter on one 9600-baud RS-485 line, a SUN2000 on "
             f"Modbus TCP; broker mqtt://127.0.0.1:{mqtt_port}; agent pid {agent.pid}. Ctrl-C stops.")
        emit(f"(watch it yourself: edge-agent tail --broker mqtt://127.0.0.1:{mqtt_port})")
        view = LiveView(emit, db, enough=ONCE_READINGS if once else None)
        try:
            limit = seconds if seconds is not None else (20.0 if once else None)
            printed = tail(f"mqtt://127.0.0.1:{mqtt_port}", "park/#", view, timeout=limit)
        except (KeyboardInterrupt, Enough):
            printed = view.readings
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


def stop_on_sigterm() -> None:
    """SIGTERM ends the demo as Ctrl-C does, through the `finally` blocks that stop the agent, the
    ingest and the private PostgreSQL (a daemon in a session of its own: no signal sent to the
    demo's process group reaches it, so only the demo can stop it)."""
    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


class Enough(Exception):
    """`--once` has shown what it promised: raised through the tail to end it."""


class LiveView:
    """The tail's printer: the demo's points, status and events; every `every` s (on the tail's
    thread, between readings) what PostgreSQL holds by then. It counts the readings itself, so
    that a Ctrl-C, which cuts the tail short before it returns its count, still reports them.
    With `enough`, it ends the tail after that many readings once every device has shown a point
    twice: a count alone can be reached before the inverter's first poll (a batch lists devices
    one after another), and two polls make the first interval of the PV counter (the CO₂ figure)."""

    def __init__(self, emit: Callable[[str], None], db: Platform | None, every: float = DB_EVERY_S,
                 enough: int | None = None) -> None:
        self.emit = emit
        self.db = db
        self.every = every
        self.enough = enough
        self.readings = 0
        self.shown: Counter[tuple[str, str]] = Counter()  # (device, point) -> lines shown
        self._last_report = time.monotonic()

    def __call__(self, text: str) -> None:
        notice = " status: " in text or " events: " in text
        reading = not notice and "before its schema" not in text
        self.readings += reading
        if notice or text.split(" ")[-1] in SHOWN or any(f" {name}=" in text for name in SHOWN):
            self.emit(text)
            if reading and len(parts := text.split(" ")) >= 3:  # "HH:MM:SS.mmm gateway/device point=value unit"
                self.shown[(parts[1].rsplit("/", 1)[-1], parts[2].split("=", 1)[0])] += 1
        if self.db is not None and time.monotonic() - self._last_report >= self.every:
            self._last_report = time.monotonic()
            for line in self.db.report():
                self.emit(line)
        if self.enough is not None and self.readings >= self.enough and self._every_device_twice():
            raise Enough

    def _every_device_twice(self) -> bool:
        return all(any(n >= 2 for (d, _), n in self.shown.items() if d == device) for device in DEVICES)


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
