"""Throughput: values per CPU-second of the agent's process through the whole
path — Modbus TCP request and decode -> batch -> encode -> buffer -> MQTT publish and PUBACK —
against fast simulators (in child processes, so their CPU is not counted) and a local mosquitto.

Run for the reference meter (40 points in three requests) and for the SDM630 (21 points in two),
so the per-request share of the cost shows."""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from agent.assembly import Assembler
from agent.buffer import Spool, Store
from agent.config.loader import DeviceSetup
from agent.config.models import DeviceModel
from agent.drivers.bus import Bus
from agent.drivers.client import ModbusClient
from agent.drivers.device import DeviceReader
from agent.drivers.plan import plan_reads
from agent.drivers.urls import BusSpec, Transport
from agent.types import ReadRequest
from agent.wire import build_schema
from bench.report import Figure
from bench.workload import REFERENCE_METER, library
from testkit.broker import Broker

REPO = Path(__file__).resolve().parents[1]
SIMULATORS = """
import sys
from agent.simulate import SimulatedDevice
from bench.workload import library
from testkit.sims import SimThread
profile = library().load(sys.argv[1])
sims = SimThread()
spec, _ = sims.tcp({u: SimulatedDevice(profile) for u in range(1, int(sys.argv[2]) + 1)})
print(spec.port, flush=True)
sys.stdin.read()
"""
DEVICES_PER_ENDPOINT, ENDPOINTS = 10, 4


WINDOW_S = 5.0
WARM_UP_S = 1.0  # connects and first polls are not the steady state


def run(quick: bool = False) -> list[Figure]:
    windows = 1 if quick else 5
    reference = _measure(REFERENCE_METER, windows)
    sdm630 = _measure("eastron/sdm630", windows)
    return [reference.figure(f"values per CPU-second, poll to PUBACK ({REFERENCE_METER})", 50_000.0),
            reference.baseline_figure(f"CPU per request / bare pymodbus request ({REFERENCE_METER})"),
            sdm630.figure("values per CPU-second, poll to PUBACK (eastron/sdm630)", None),
            sdm630.baseline_figure("CPU per request / bare pymodbus request (eastron/sdm630)")]


def _bare_request_cpu(port: int, plan: list[ReadRequest], rounds: int = 500) -> float:
    """The naive baseline: CPU-s per request of the synchronous Modbus client reading the
    same blocks in a tight loop on one thread, nothing decoded, batched or sent on."""
    transport = ModbusClient(BusSpec(Transport.TCP, "127.0.0.1", port))
    transport.connect()
    cpu = time.process_time()
    for _ in range(rounds):
        for request in plan:
            transport.read(request.kind, 1, request.start, request.count, 1.0)
    cpu = time.process_time() - cpu
    transport.close()
    return cpu / (rounds * len(plan))


@dataclass
class Measured:
    rates: list[float]  # values per CPU-second in each window
    values: int
    requests: int
    cpu: float
    acked: int
    bare_request_cpu: float = 0.0  # CPU-s of one bare pymodbus request in this run (the baseline)

    @property
    def request_cpu(self) -> float:
        return self.cpu / self.requests

    def figure(self, name: str, target: float | None) -> Figure:
        devices = DEVICES_PER_ENDPOINT * ENDPOINTS
        return Figure(name, statistics.median(self.rates), "values/CPU-s", target, higher_is_better=True,
                      note=f"median of {len(self.rates)} windows of {WINDOW_S:g} s (min {min(self.rates):.0f}, "
                           f"max {max(self.rates):.0f}); {self.values} values, {self.requests} requests "
                           f"({self.request_cpu * 1e6:.0f} CPU-us each, all included) from {devices} devices "
                           f"on {ENDPOINTS} TCP endpoints, {self.acked} batches acknowledged")

    def baseline_figure(self, name: str) -> Figure:
        return Figure(name, self.request_cpu / self.bare_request_cpu, "x bare request",
                      note=f"whole path {self.request_cpu * 1e6:.0f} CPU-us per request; the same requests "
                           f"with a bare pymodbus client in a loop {self.bare_request_cpu * 1e6:.0f} CPU-us "
                           f"in this run (noise on a shared machine moves both)")


def _measure(ref: str, windows: int) -> Measured:
    from agent.publisher import BrokerSettings, Publisher

    profile = library().load(ref)
    children = [subprocess.Popen([sys.executable, "-c", SIMULATORS, ref, str(DEVICES_PER_ENDPOINT)], cwd=REPO,
                                 text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(ENDPOINTS)]
    ports = [int(child.stdout.readline()) for child in children]  # type: ignore[union-attr]
    bare = _bare_request_cpu(ports[0], plan_reads(list(profile.points.values()), profile.timing()))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "broker").mkdir()
        broker = Broker(root / "broker").start()
        setups = [DeviceSetup(DeviceModel(id=f"m{e}-{u}", bus=f"b{e}", unit=u, profile=ref, interval=1),
                              profile, profile.timing())
                  for e in range(ENDPOINTS) for u in range(1, DEVICES_PER_ENDPOINT + 1)]
        schema = build_schema("gw-bench", setups)

        async def scenario() -> Measured:
            ring = Store(root / "buf", max_bytes=1 << 30, min_free_bytes=0)
            spool = Spool(ring)
            settings = BrokerSettings("127.0.0.1", broker.port, False, "gw-bench", "park/bench/gw-bench", window=50)
            publisher = Publisher(settings, spool, dict, schema.to_json())
            task = asyncio.create_task(publisher.run())
            while not publisher.connected.is_set():
                await asyncio.sleep(0.01)
            buses = [Bus(f"b{e}", BusSpec(Transport.TCP, "127.0.0.1", port)) for e, port in enumerate(ports)]
            readers = [DeviceReader(s.config.id, s.config.unit or 1, profile.points, profile.timing(),
                                    buses[int(s.config.bus[1:])]) for s in setups]
            assembler = Assembler("gw-bench", schema, ring)
            values = 0
            stop_at = time.monotonic() + WARM_UP_S + windows * WINDOW_S

            async def poll_forever(reader: DeviceReader) -> None:
                nonlocal values
                while time.monotonic() < stop_at:
                    result = await reader.poll()
                    assembler.add(result.readings)
                    values += len(result.readings)

            async def seal_forever() -> None:
                while time.monotonic() < stop_at + 0.2:
                    await asyncio.sleep(0.5)
                    sealed = assembler.seal()
                    if sealed:
                        spool.add(sealed)
                        publisher.nudge()

            async def sample() -> list[float]:
                rates = []
                await asyncio.sleep(WARM_UP_S)
                for _ in range(windows):
                    cpu, count = time.process_time(), values
                    await asyncio.sleep(WINDOW_S)
                    rates.append((values - count) / (time.process_time() - cpu))
                return rates

            cpu = time.process_time()
            rates, *_ = await asyncio.gather(sample(), seal_forever(), *(poll_forever(r) for r in readers))
            assert isinstance(rates, list)
            while spool.in_memory and publisher.connected.is_set():
                await asyncio.sleep(0.01)
            cpu = time.process_time() - cpu
            measured = Measured(rates, values, sum(r.stats.requests for r in readers), cpu, publisher.stats.acked,
                                bare)
            await publisher.stop()
            task.cancel()
            for bus in buses:
                await bus.close()
            ring.close()
            return measured

        try:
            return asyncio.run(scenario())
        finally:
            broker.stop()
            for child in children:
                child.kill()
