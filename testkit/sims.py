"""Simulated devices served from a background event loop, so that a test, the demo or the HIL
harness (sync or async code, or a subprocess) talks to them over real sockets or PTYs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping

from agent.drivers.pymodbus_adapter import Faults, ServerHandle
from agent.drivers.urls import BusSpec, Transport
from agent.meters.server import MeterFaults, MeterHandle, serve_meters
from agent.simulate import SimulatedDevice, serve


class SimThread:
    """Simulated devices served from a background event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="sim", daemon=True)
        self._thread.start()
        self.handles: list[ServerHandle | MeterHandle] = []

    def serve(self, listen: BusSpec, devices: Mapping[int, SimulatedDevice], faults: Faults | None = None) -> ServerHandle:
        handle = asyncio.run_coroutine_threadsafe(serve(listen, devices, faults), self.loop).result(10)
        self.handles.append(handle)
        return handle

    def tcp(self, devices: Mapping[int, SimulatedDevice], faults: Faults | None = None,
            rtu_framing: bool = False) -> tuple[BusSpec, ServerHandle]:
        """Serve on a free loopback port; returns the client-side spec."""
        transport = Transport.RTU_OVER_TCP if rtu_framing else Transport.TCP
        handle = self.serve(BusSpec(transport, "127.0.0.1", 0), devices, faults)
        return BusSpec(transport, "127.0.0.1", handle.port), handle

    def meters(self, listen: BusSpec, meters: Mapping[str, SimulatedDevice],
               faults: MeterFaults | None = None) -> MeterHandle:
        """DL/T 645 or CJ/T 188 meters (nameplate address -> meter) on a TCP port or a serial line."""
        handle = asyncio.run_coroutine_threadsafe(serve_meters(listen, meters, faults), self.loop).result(10)
        self.handles.append(handle)
        return handle

    def meters_tcp(self, protocol: str, meters: Mapping[str, SimulatedDevice],
                   faults: MeterFaults | None = None) -> tuple[BusSpec, MeterHandle]:
        """Meters on a free loopback port (a serial-to-Ethernet converter); returns the client-side spec."""
        transport = Transport(f"{protocol}+tcp")
        handle = self.meters(BusSpec(transport, "127.0.0.1", 0), meters, faults)
        return BusSpec(transport, "127.0.0.1", handle.port), handle

    def stop(self) -> None:
        for handle in self.handles:
            asyncio.run_coroutine_threadsafe(handle.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


