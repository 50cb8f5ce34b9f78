"""The only module that imports pymodbus (its API broke in 3.7, 3.8, 3.10 and 3.13).

Server side only: `serve_units`, a pymodbus server for the simulator and the tests, serving
register images with hooks for moving values, device quirks and injected faults. Serving real
pymodbus keeps our own client (agent/drivers/client.py) honest against an independent
implementation. The client is ours: pymodbus's RTU framer takes a late answer for the next one,
loses the answer after a noise byte, and reports malformed answers as timeouts (see client.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

if TYPE_CHECKING:  # the servers are for `simulate` and the tests; `run` does not load them
    from pymodbus.server import ModbusSerialServer, ModbusTcpServer

from agent.drivers.urls import BusSpec, Transport
from agent.errors import BusError
from agent.types import RegisterKind

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # we report failures ourselves, once
logging.getLogger("pymodbus.logging").setLevel(logging.CRITICAL)

# --------------------------------------------------------------------------- server side

RefreshHook = Callable[[RegisterKind, int, int], Awaitable[int | Mapping[int, int] | None]]
"""Called before a read is served: (table, address, count) -> an exception code to answer with,
or new words {address: word} to store first, or None."""

_FC_TABLE = {1: RegisterKind.COIL, 2: RegisterKind.DISCRETE, 3: RegisterKind.HOLDING, 4: RegisterKind.INPUT}


@dataclass
class Faults:
    """Faults a test or the HIL harness switches on and off while the server runs."""

    silent: set[int] = field(default_factory=set)  # units that never answer (unplugged)
    corrupt: set[int] = field(default_factory=set)  # units whose answers carry a bad CRC
    deaf_after_connect: float = 0.0  # seconds after a connection during which requests get no answer (Huawei)
    connected_at: float = 0.0


@dataclass
class UnitImage:
    """The registers one simulated unit exposes; addresses not listed answer exception 2."""

    tables: dict[RegisterKind, dict[int, int]]
    refresh: RefreshHook | None = None


@dataclass
class ServerHandle:
    """A running simulator server; `port` is the bound TCP port (0 for serial)."""

    server: ModbusTcpServer | ModbusSerialServer
    port: int
    faults: Faults

    async def stop(self) -> None:
        await self.server.shutdown()


async def serve_units(listen: BusSpec, units: Mapping[int, UnitImage], faults: Faults | None = None) -> ServerHandle:
    """Start serving `units` on `listen` (tcp://, rtu+tcp:// or rtu://); returns once it accepts."""
    from pymodbus.server import ModbusSerialServer, ModbusTcpServer

    faults = faults or Faults()
    devices = [_sim_device(unit, image) for unit, image in units.items()]
    rtu_framing = listen.transport is not Transport.TCP
    trace = _fault_filter(faults, rtu_framing, set(units))

    def on_connect(connected: bool) -> None:
        if connected:
            faults.connected_at = time.monotonic()

    server: ModbusTcpServer | ModbusSerialServer
    if listen.transport is Transport.RTU:
        serial = listen.serial
        assert serial is not None
        server = ModbusSerialServer(devices, framer=FramerType.RTU, port=listen.host, baudrate=serial.baudrate,
                                    parity=serial.parity, stopbits=serial.stopbits, bytesize=serial.bytesize,
                                    trace_packet=trace, trace_connect=on_connect)
    else:
        server = ModbusTcpServer(devices, framer=FramerType.RTU if rtu_framing else FramerType.SOCKET,
                                 address=(listen.host, listen.port), trace_packet=trace, trace_connect=on_connect)
    try:
        await server.serve_forever(background=True)
    except RuntimeError as exc:
        raise BusError(f"cannot listen on {listen}: {exc}") from exc
    port = 0
    if listen.transport is not Transport.RTU and server.transport is not None:
        port = server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    return ServerHandle(server, port, faults)


def _fault_filter(faults: Faults, rtu_framing: bool, served: set[int]) -> Callable[[bool, bytes], bytes]:
    def trace(sending: bool, data: bytes) -> bytes:
        if not sending or not data:
            return data
        unit = data[0] if rtu_framing else (data[6] if len(data) > 6 else -1)
        if unit in faults.silent or unit not in served:
            return b""  # absent units stay silent, as on RS-485 (pymodbus would answer exception 4)
        if time.monotonic() - faults.connected_at < faults.deaf_after_connect:
            return b""
        if unit in faults.corrupt:
            return data[:-1] + bytes([data[-1] ^ 0xFF])
        return data
    return trace


def _sim_device(unit: int, image: UnitImage) -> SimDevice:
    blocks = []
    for kind in (RegisterKind.COIL, RegisterKind.DISCRETE, RegisterKind.HOLDING, RegisterKind.INPUT):
        words = image.tables.get(kind, {})
        blocks.append(_bit_runs(words) if kind.is_bit else _word_runs(words))
    return SimDevice(id=unit, simdata=tuple(blocks), action=_action(image))  # type: ignore[arg-type]


def _word_runs(words: Mapping[int, int]) -> list[SimData]:
    """Contiguous runs of defined registers; the holes between runs answer exception 2."""
    if not words:
        return [SimData(65535, values=[0], datatype=SimType.REGISTERS)]  # pymodbus needs a block
    runs: list[SimData] = []
    addresses = sorted(words)
    start = previous = addresses[0]
    for address in [*addresses[1:], None]:
        if address is not None and address == previous + 1:
            previous = address
            continue
        runs.append(SimData(start, values=[words[a] for a in range(start, previous + 1)], datatype=SimType.REGISTERS))
        if address is not None:
            start = previous = address
    return runs


def _bit_runs(bits: Mapping[int, int]) -> list[SimData]:
    top = max(bits, default=0)
    values = [bool(bits.get(i, 0)) for i in range((top // 16 + 1) * 16)]
    return [SimData(0, values=values, datatype=SimType.BITS)]


def _action(image: UnitImage) -> Callable[..., Awaitable[int | None]]:
    async def action(function_code: int, block_start: int, address: int, count: int,
                     registers: list[int], set_values: object) -> int | None:
        kind = _FC_TABLE.get(function_code)
        if kind is None or image.refresh is None or set_values is not None:
            return None
        outcome = await image.refresh(kind, address, count)
        if isinstance(outcome, int):
            return ExcCodes(outcome)
        if outcome and not kind.is_bit:
            for addr, word in outcome.items():
                if 0 <= addr - block_start < len(registers):
                    registers[addr - block_start] = word
        return None
    return action

