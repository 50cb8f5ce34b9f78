"""Throughput (issue 8, item 2): values per CPU-second of the agent's process through the whole
path — Modbus TCP request and decode -> batch -> encode -> buffer -> MQTT publish and PUBACK —
against fast simulators (in a child process, so their CPU is not counted) and a local mosquitto."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent.batcher import Batcher, build_schema
from agent.buffer import Ring, Spool
from agent.codec import Header
from agent.config import ProfileLibrary
from agent.config.loader import DeviceSetup
from agent.config.models import DeviceModel
from agent.drivers.bus import Bus
from agent.drivers.device import DeviceReader
from agent.drivers.urls import BusSpec, Transport
from bench.report import Figure
from hil.broker import Broker

REPO = Path(__file__).resolve().parents[1]
SIMULATORS = """
import sys, time
from agent.config import ProfileLibrary
from agent.simulate import SimulatedDevice
from hil.sims import SimThread
profile = ProfileLibrary().load("eastron/sdm630")
sims = SimThread()
spec, _ = sims.tcp({u: SimulatedDevice(profile) for u in range(1, int(sys.argv[1]) + 1)})
print(spec.port, flush=True)
sys.stdin.read()
"""


def run(quick: bool = False) -> list[Figure]:
    from agent.publisher import BrokerSettings, Publisher

    devices, endpoints = 10, 4
    seconds = 5.0 if quick else 15.0
    profile = ProfileLibrary().load("eastron/sdm630")
    children = [subprocess.Popen([sys.executable, "-c", SIMULATORS, str(devices)], cwd=REPO, text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(endpoints)]
    ports = [int(child.stdout.readline()) for child in children]  # type: ignore[union-attr]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "broker").mkdir()
        broker = Broker(root / "broker").start()
        setups = [DeviceSetup(DeviceModel(id=f"m{e}-{u}", bus=f"b{e}", unit=u, profile="eastron/sdm630", interval=1),
                              profile, profile.timing()) for e in range(endpoints) for u in range(1, devices + 1)]
        schema = build_schema("gw-bench", setups)

        async def scenario() -> tuple[int, float, int]:
            ring = Ring.open(root / "buf", max_bytes=1 << 30, min_free_bytes=0)
            spool = Spool(ring)
            settings = BrokerSettings("127.0.0.1", broker.port, False, "gw-bench", "park/bench/gw-bench", window=50)
            publisher = Publisher(settings, spool, lambda: {}, schema.to_json())
            task = asyncio.create_task(publisher.run())
            while not publisher.connected.is_set():
                await asyncio.sleep(0.01)
            buses = [Bus(f"b{e}", BusSpec(Transport.TCP, "127.0.0.1", port)) for e, port in enumerate(ports)]
            readers = [DeviceReader(s.config.id, s.config.unit, profile.points, profile.timing(),
                                    buses[int(s.config.bus[1:])]) for s in setups]
            batcher = Batcher(schema)
            values = 0
            stop_at = time.monotonic() + seconds

            async def poll_forever(reader: DeviceReader) -> None:
                nonlocal values
                while time.monotonic() < stop_at:
                    result = await reader.poll()
                    batcher.add(result.readings)
                    values += len(result.readings)

            async def seal_forever() -> None:
                while time.monotonic() < stop_at + 0.2:
                    await asyncio.sleep(0.5)
                    sealed = batcher.seal(Header("gw-bench", ring.epoch, ring.allocate_seq(), 0, 0))
                    if sealed:
                        spool.add(sealed.encoded(schema))
                        publisher.nudge()

            cpu = time.process_time()
            await asyncio.gather(seal_forever(), *(poll_forever(r) for r in readers))
            while spool.in_memory and publisher.connected.is_set():
                await asyncio.sleep(0.01)
            cpu = time.process_time() - cpu
            acked = publisher.stats.acked
            await publisher.stop()
            task.cancel()
            for bus in buses:
                await bus.close()
            ring.close()
            return values, cpu, acked

        try:
            values, cpu, acked = asyncio.run(scenario())
        finally:
            broker.stop()
            for child in children:
                child.kill()
    return [Figure("values per CPU-second, poll to PUBACK", values / cpu, "values/CPU-s", 50_000.0,
                   higher_is_better=True,
                   note=f"{values} values from {devices * endpoints} devices on {endpoints} TCP endpoints, "
                        f"{acked} batches acknowledged, {cpu:.1f} CPU-s")]
