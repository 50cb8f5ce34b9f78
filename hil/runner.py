"""Run one HIL scenario: build the park, run the real agent, inject the faults on schedule, and
collect what the platform received. Verification is `hil.verify` (pure); the report `hil.report`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from agent.codec import WireSchema
from agent.config import load_config
from agent.config.profiles import ProfileLibrary
from agent.drivers.pymodbus_adapter import Faults
from agent.drivers.urls import BusSpec, SerialSettings, Transport
from agent.meters.server import MeterFaults
from agent.simulate import SimulatedDevice
from agent.wire import build_schema
from hil.scenario import Fault, Scenario
from testkit.broker import Broker
from testkit.card import Card
from testkit.line import PacedLine
from testkit.platform import Platform
from testkit.proxy import BlackHoleProxy
from testkit.sims import SimThread

SETTLE = 8.0  # seconds the agent keeps running after the window at least, so the backlog drains
SETTLE_MAX = 120.0  # ... and at most: the reconnect backoff after a long outage can reach 60 s
HISTORY = 5000


@dataclass
class Window:
    kind: str
    start: float
    end: float
    device: str | None = None


@dataclass
class Collected:
    """Everything verification needs, in wall-clock seconds."""

    scenario: Scenario
    start: float  # first READY
    end: float  # end of the accounted window
    schema: WireSchema
    platform: Platform
    served: dict[str, list[tuple[float, dict[str, float | int | str | None]]]]
    windows: list[Window] = field(default_factory=list)
    agent_log: str = ""


class Park:
    """Simulators on paced RS-485 lines and on TCP, a broker, a black-hole proxy in front of it.
    A line carries one protocol: Modbus RTU (8N1) or DL/T 645 / CJ/T 188 meters (8E1, 11 bits a byte)."""

    def __init__(self, scenario: Scenario, workdir: Path) -> None:
        library = ProfileLibrary()
        self.sims = SimThread()
        self.lines: dict[str, PacedLine] = {}
        self.faults: dict[str, Faults | MeterFaults] = {}  # per line name, and "tcp"
        self.devices: dict[str, SimulatedDevice] = {}
        self.units: dict[str, tuple[str, int | str]] = {}  # device id -> (bus name, unit or meter address)
        groups: dict[str, list] = {}
        for device in scenario.park:
            groups.setdefault(device.bus, []).append(device)
            self.devices[device.id] = SimulatedDevice(library.load(device.profile), history=HISTORY)
            self.units[device.id] = (device.bus, device.unit if device.unit is not None else str(device.address))
        self.bus_urls: dict[str, str] = {}
        for bus, members in groups.items():
            protocols = {self.devices[d.id].profile.model.protocol for d in members}
            if len(protocols) > 1:
                raise ValueError(f"line {bus} mixes protocols {sorted(protocols)}: one protocol per line")
            protocol = protocols.pop()
            if members[0].line is None:
                faults = self.faults[bus] = Faults()
                spec, _ = self.sims.tcp({d.unit: self.devices[d.id] for d in members}, faults)
                self.bus_urls[bus] = f"tcp://127.0.0.1:{spec.port}"
            elif protocol == "modbus":
                faults = self.faults[bus] = Faults()
                line = self.lines[bus] = PacedLine(members[0].baudrate)
                serial = SerialSettings(members[0].baudrate, "N", 1, 8)
                self.sims.serve(BusSpec(Transport.RTU, line.device_port, 0, serial),
                                {d.unit: self.devices[d.id] for d in members}, faults)
                self.bus_urls[bus] = f"rtu://{line.agent_port}?baudrate={members[0].baudrate}"
            else:
                self._meter_line(bus, protocol, members)
        (workdir / "broker").mkdir(exist_ok=True)
        self.card = Card(workdir / "card.img", workdir / "buffer") if scenario.buffer_on_card else None
        self.broker = Broker(workdir / "broker").start()
        self.proxy = BlackHoleProxy(self.broker.port)

    def _meter_line(self, bus: str, protocol: str, members: list) -> None:
        baud = members[0].baudrate
        meter_faults = self.faults[bus] = MeterFaults()
        line = self.lines[bus] = PacedLine(baud, bits_per_byte=11)  # 8E1
        serial = SerialSettings(baud, "E", 1, 8)
        self.sims.meters(BusSpec(Transport(protocol), line.device_port, 0, serial),
                         {d.address: self.devices[d.id] for d in members}, meter_faults)
        self.bus_urls[bus] = f"{protocol}://{line.agent_port}?baudrate={baud}&parity=E"

    def close(self) -> None:
        self.proxy.close()
        self.broker.stop()
        if self.card is not None:
            self.card.close()
        self.sims.stop()
        for line in self.lines.values():
            line.close()


def write_config(scenario: Scenario, park: Park, workdir: Path) -> Path:
    lines = ["gateway: {id: gw-hil, site: hil-park}", "buses:"]
    lines += [f'  - {{name: {bus}, url: "{url}"}}' for bus, url in park.bus_urls.items()]
    lines.append("devices:")
    lines += [f"  - {{id: {d.id}, bus: {d.bus}, "
              f"{f'unit: {d.unit}' if d.unit is not None else f'address: {chr(34)}{d.address}{chr(34)}'}, "
              f"profile: {d.profile}, interval: {scenario.interval}}}" for d in scenario.park]
    lines.append(f'mqtt: {{url: "mqtt://127.0.0.1:{park.proxy.port}", topic_prefix: park, '
                 f"batch_interval: {scenario.batch_interval}, ack_timeout: 3s, keepalive: 5s, reconnect_max: 4s}}")
    lines.append(f'buffer: {{path: "{workdir / "buffer"}", max_bytes: {scenario.buffer_max_bytes}, '
                 "min_free_bytes: 16MiB}")
    path = workdir / "agent.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Agent:
    """`edge-agent run` as a real process; start() returns once it has said READY=1."""

    def __init__(self, config: Path, workdir: Path) -> None:
        self.config = config
        self.log_path = workdir / "agent.log"
        self.notify_path = workdir / "notify.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.notify_path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self.notify_path))
        sock.settimeout(timeout)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(self.config)], stderr=log,
                                         env={**os.environ, "NOTIFY_SOCKET": str(self.notify_path)})
        try:
            while not sock.recv(4096).startswith(b"READY=1"):
                pass
        finally:
            sock.close()

    def signal(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(15)


def run(scenario: Scenario, workdir: Path, quick: bool, say: Callable[[str], None] = print) -> Collected:
    workdir.mkdir(parents=True, exist_ok=True)
    park = Park(scenario, workdir)
    platform = Platform(park.broker.port, client_id=f"hil-{scenario.name}")
    config = write_config(scenario, park, workdir)
    loaded = load_config(config)
    schema = build_schema("gw-hil", loaded.devices)
    agent = Agent(config, workdir)
    windows: list[Window] = []
    try:
        agent.start()
        start = time.time()
        length = scenario.length(quick)
        say(f"[{scenario.name}] agent ready; running {length:g} s with {len(scenario.faults)} fault(s)")
        for action in _schedule(scenario.faults, start, length):
            delay = action.at - time.time()
            if delay > 0:
                time.sleep(delay)
            windows += _apply(action, park, agent, say)
        end = start + length
        time.sleep(max(0.0, end - time.time()))
        _settle(platform, schema, end, say)
        if agent.proc and agent.proc.poll() is None:
            agent.proc.send_signal(signal.SIGUSR2)  # thread stacks into the log, for a failing run
            time.sleep(0.2)
        agent.signal(signal.SIGTERM)
        time.sleep(1.0)
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.proc.kill()
        platform.close()
        served = {device: list(sim.served_log) for device, sim in park.devices.items()}
        park.close()
    return Collected(scenario, start, end, schema, platform, served, windows,
                     agent.log_path.read_text(errors="replace") if agent.log_path.exists() else "")


def _settle(platform: Platform, schema: WireSchema, end: float, say: Callable[[str], None]) -> None:
    """Keep the agent running until the platform has caught up with the end of the window."""
    deadline = time.time() + SETTLE_MAX
    time.sleep(SETTLE)
    while time.time() < deadline:
        newest = max((r.ts for _, _, rs in platform.batches(schema) for r in rs), default=0) / 1000
        if newest >= end:
            return
        time.sleep(1.0)
    say(f"  the platform had not caught up {SETTLE_MAX:g} s after the window")


@dataclass(frozen=True)
class _Action:
    at: float  # wall time
    fault: Fault
    begin: bool


def _schedule(faults: list[Fault], start: float, length: float) -> Iterator[_Action]:
    actions = []
    for fault in faults:
        if fault.at >= length:
            continue
        actions.append(_Action(start + fault.at, fault, True))
        if fault.kind not in ("agent_kill", "agent_term"):
            actions.append(_Action(start + min(fault.at + fault.for_, length), fault, False))
    yield from sorted(actions, key=lambda a: a.at)


_open: dict[int, float] = {}


def _apply(action: _Action, park: Park, agent: Agent, say: Callable[[str], None]) -> list[Window]:
    fault, now = action.fault, time.time()
    key = id(fault)
    if fault.kind in ("agent_kill", "agent_term"):
        say(f"  {fault.kind} at +{fault.at:g} s, restart after {fault.for_:g} s")
        agent.signal(signal.SIGKILL if fault.kind == "agent_kill" else signal.SIGTERM)
        time.sleep(fault.for_)
        agent.start()
        return [Window(fault.kind, now, time.time())]
    if action.begin:
        _open[key] = now
        say(f"  {fault.kind}{f' {fault.device}' if fault.device else ''} from +{fault.at:g} s for {fault.for_:g} s")
    _toggle(fault, park, action.begin)
    if action.begin:
        return []
    return [Window(fault.kind, _open.pop(key), now, fault.device)]


def _toggle(fault: Fault, park: Park, on: bool) -> None:
    if fault.kind == "broker_down":
        park.broker.stop() if on else park.broker.start()
    elif fault.kind == "black_hole":
        park.proxy.set_black_hole(on)
    elif fault.kind == "buffer_readonly":
        assert park.card is not None
        park.card.fail() if on else park.card.repair()
    else:
        assert fault.device is not None
        bus, unit = park.units[fault.device]
        faults = park.faults[bus]
        if isinstance(faults, MeterFaults):
            _toggle_meter(fault, faults, str(unit), on)
        elif fault.kind == "device_silent":
            (faults.silent.add if on else faults.silent.discard)(int(unit))
        elif fault.kind == "corrupt_frames":
            (faults.corrupt.add if on else faults.corrupt.discard)(int(unit))
        elif fault.kind == "device_exception":
            park.devices[fault.device].fail_with = fault.code if on else None


def _toggle_meter(fault: Fault, faults: MeterFaults, address: str, on: bool) -> None:
    if fault.kind == "device_silent":
        (faults.silent.add if on else faults.silent.discard)(address)
    elif fault.kind == "corrupt_frames":
        (faults.corrupt.add if on else faults.corrupt.discard)(address)
    else:
        raise ValueError(f"{fault.kind} is not simulated for DL/T 645 / CJ/T 188 meters")
