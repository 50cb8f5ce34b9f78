"""The no-hardware demo: a small simulated park on loopback, read live through the real stack.

Two energy meters and a water meter share one RS-485 line (RTU frames over a loopback socket,
as through a serial-to-Ethernet converter), a PV inverter sits on Modbus TCP. Every round each
device is polled through its Bus and the decoded values are printed, until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import time

from agent.config import ProfileLibrary
from agent.drivers.bus import Bus
from agent.drivers.device import DeviceReader
from agent.drivers.urls import BusSpec, Transport
from agent.simulate import SimulatedDevice, serve
from agent.types import Quality

LINE = [("main-incomer", 1, "eastron/sdm630"), ("hall-b", 2, "chint/dtsu666"), ("water-main", 3, "xintai/water-meter")]
PLANT = [("pv-roof-a", 1, "huawei/sun2000")]
SHOWN = ("active_power", "energy_import", "voltage_l1", "flow_rate", "volume_total", "energy_yield_total",
         "inverter_state")


async def run_demo(once: bool = False, every: float = 2.0) -> int:
    library = ProfileLibrary()
    line_server = await serve(BusSpec(Transport.RTU_OVER_TCP, "127.0.0.1", 0),
                              {unit: SimulatedDevice(library.load(ref)) for _, unit, ref in LINE})
    plant_server = await serve(BusSpec(Transport.TCP, "127.0.0.1", 0),
                               {unit: SimulatedDevice(library.load(ref)) for _, unit, ref in PLANT})
    line = Bus("line1", BusSpec(Transport.RTU_OVER_TCP, "127.0.0.1", line_server.port))
    plant = Bus("plant-gw", BusSpec(Transport.TCP, "127.0.0.1", plant_server.port))
    readers = [DeviceReader(dev, unit, library.load(ref).points, library.load(ref).timing(), line)
               for dev, unit, ref in LINE]
    readers += [DeviceReader(dev, unit, library.load(ref).points, library.load(ref).timing(), plant)
                for dev, unit, ref in PLANT]
    print(f"simulated park: line1 = {line.spec} (units 1-3), plant-gw = {plant.spec}; Ctrl-C stops", flush=True)
    try:
        while True:
            for reader in readers:
                result = await reader.poll()
                shown = [f"{r.point}={r.value}" for r in result.readings
                         if r.point in SHOWN and r.quality is Quality.OK]
                bad = sum(r.quality is not Quality.OK for r in result.readings)
                print(f"{time.strftime('%H:%M:%S')} {reader.device_id:13} {len(result.readings):2} points "
                      f"({bad} not ok) {reader.stats.requests:3} requests so far  {'  '.join(shown)}", flush=True)
            if once:
                return 0
            await asyncio.sleep(every)
    finally:
        for bus in (line, plant):
            await bus.close()
        await line_server.stop()
        await plant_server.stop()
