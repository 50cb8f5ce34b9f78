"""A simulated device for any profile: plausible, moving values encoded exactly as the profile
says the real device encodes them, served by a pymodbus server (via the adapter).

Used by `edge-agent simulate`, the demo and the tests. Values come from, in order: explicit
overrides (tests pin exact values), the point's `example`, then a plausible value for its
canonical name. Energy and volume counters rise consistently with power and flow.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from agent.config.profiles import Profile
from agent.drivers.pymodbus_adapter import Faults, ServerHandle, UnitImage, serve_units
from agent.drivers.registers import encode_value
from agent.drivers.sunspec import END, MARKER, SunSpecMap, place
from agent.drivers.urls import BusSpec
from agent.errors import ILLEGAL_ADDRESS
from agent.types import DataType, PointSpec, RegisterKind, Value

_PLAUSIBLE: dict[str, float] = {
    "voltage_l1": 230.0, "voltage_l2": 231.0, "voltage_l3": 229.0,
    "voltage_l12": 399.0, "voltage_l23": 400.0, "voltage_l31": 398.0,
    "current_l1": 12.5, "current_l2": 11.8, "current_l3": 13.1,
    "active_power": 8600.0, "active_power_l1": 2900.0, "active_power_l2": 2750.0, "active_power_l3": 2950.0,
    "reactive_power": 820.0, "apparent_power": 8700.0, "power_factor": 0.95, "frequency": 50.0,
    "energy_import": 12345.6, "energy_export": 78.9, "energy_yield_total": 35210.0, "energy_yield_today": 12.4,
    "dc_power": 9100.0, "internal_temperature": 41.5,
    "volume_total": 1234.5, "volume_reverse": 0.0, "flow_rate": 0.545,
}
FILL_HOLES_UP_TO = 125
_RATES = {"energy_import": "active_power", "energy_yield_total": "active_power", "energy_yield_today": "active_power",
          "volume_total": "flow_rate"}  # counter -> the gauge it integrates (per hour)


SUNSPEC_LENGTHS = {1: 66, 101: 50, 102: 50, 103: 50}


@dataclass(frozen=True)
class SunSpecLayout:
    """Where a simulated SunSpec device keeps its model chain."""

    base: int = 40000
    common_length: int = 66  # SolarEdge and Fronius: 65
    inverter_model: int = 103

    def chain(self) -> SunSpecMap:
        models, lengths, address = {}, {}, self.base + 2
        for model in (1, self.inverter_model):
            length = self.common_length if model == 1 else SUNSPEC_LENGTHS[model]
            models[model], lengths[model] = address, length
            address += length + 2
        return SunSpecMap(self.base, models, lengths)

    def registers(self) -> dict[int, int]:
        """The marker, each model's ID and length, the end model; bodies are zero until values land."""
        chain = self.chain()
        words = {self.base: MARKER[0], self.base + 1: MARKER[1]}
        end = self.base + 2
        for model, address in chain.models.items():
            length = chain.lengths[model]
            words.update({a: 0 for a in range(address + 2, address + 2 + length)})
            words[address], words[address + 1] = model, length
            end = address + length + 2
        words[end], words[end + 1] = END, 0
        return words


@dataclass
class SimulatedDevice:
    """Values of one simulated device over time, and the register image that serves them."""

    profile: Profile
    overrides: dict[str, Value] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)  # points the device lacks: reads answer exception 2
    moving: bool = True
    quirks: bool = True  # emulate the profile's timing quirks (pause after connect)
    fail_with: int | None = None  # answer every read with this Modbus exception code (fault injection)
    delay: float = 0.0  # answer every read this many seconds late (a slow or overloaded device)
    history: int = 0  # keep the last N served value sets with their wall time (verification)
    sunspec: SunSpecLayout = field(default_factory=SunSpecLayout)  # used by `discovery: sunspec` profiles
    clock: Callable[[], float] = time.time
    # values as the wire carries them, recorded in `served` (BCD meters round to their format's decimals)
    wire: Callable[[dict[str, Value]], dict[str, Value]] | None = None

    def __post_init__(self) -> None:
        self._t0 = self.clock()
        self.served: dict[str, Value] = {}  # the last values encoded, for verification
        self.served_log: deque[tuple[float, dict[str, Value]]] = deque(maxlen=self.history or 1)
        self._multipliers = {ref for spec in self.profile.points.values() for ref in spec.multiply_by}

    def values(self) -> dict[str, Value]:
        """Engineering value of every point now."""
        elapsed = self.clock() - self._t0
        values = {name: self._value(spec, elapsed) for name, spec in self.profile.points.items()}
        for spec in self.profile.points.values():
            if spec.plus and isinstance(values[spec.name], int | float) and spec.name not in self.overrides:
                whole = math.floor(values[spec.name])  # type: ignore[arg-type]
                for ref in spec.plus:  # integer register + fraction register (TUF-2000 totalizers)
                    values[ref] = values[spec.name] - whole  # type: ignore[operator]
        if self.wire is not None:
            values = self.wire(values)
        self.served = values
        if self.history:
            self.served_log.append((time.time(), values))
        return values

    def _value(self, spec: PointSpec, elapsed: float) -> Value:
        if spec.name in self.overrides:
            return self.overrides[spec.name]
        if spec.constant is not None:
            return spec.constant
        example = self.profile.model.points[spec.name].example
        base: Value = example if example is not None else _PLAUSIBLE.get(spec.name)
        if spec.type is DataType.ENUM:
            return base if isinstance(base, str) else spec.values[0][1]
        if spec.type is DataType.STRING:
            return base if isinstance(base, str) else self.profile.model.model
        if base is None or isinstance(base, str):
            return 1 if spec.name in self._multipliers else 0  # a ratio of 1, a scale factor of 10^0
        if not self.moving:
            return base
        if spec.name in _RATES:
            rate = _PLAUSIBLE.get(_RATES[spec.name], 0.0)
            per_hour = rate / 1000.0 if _RATES[spec.name] == "active_power" else rate
            return base + per_hour * elapsed / 3600.0
        if spec.kind.value == "gauge" and spec.name in _PLAUSIBLE and base:
            return base * (1 + 0.02 * math.sin(elapsed / 7.0))
        return base

    def words(self) -> dict[RegisterKind, dict[int, int]]:
        """Every point encoded into its table, as the device would hold it."""
        values = self.values()
        tables: dict[RegisterKind, dict[int, int]] = {}
        points = self.profile.points
        if self.profile.model.discovery == "sunspec":
            tables[RegisterKind.HOLDING] = self.sunspec.registers()
            points = place(points, self.sunspec.chain())
        for name, spec in points.items():
            if name in self.missing or spec.constant is not None:
                continue
            table = tables.setdefault(spec.register, {})
            for offset, word in enumerate(encode_point(spec, values[name], values)):
                table[spec.address + offset] = word
        return {kind: _fill_holes(table, self._holes(kind)) for kind, table in tables.items()}

    def _holes(self, kind: RegisterKind) -> set[int]:
        """Addresses of missing points: they stay unimplemented when small holes are filled."""
        return {spec.address + i for spec in self.profile.points.values()
                if spec.name in self.missing and spec.register is kind for i in range(spec.words)}

    def image(self) -> UnitImage:
        """A register image whose refresh hook re-encodes the values and applies the quirks."""
        timing = self.profile.timing()

        async def refresh(kind: RegisterKind, address: int, count: int) -> int | Mapping[int, int]:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.fail_with is not None:
                return self.fail_with
            if not kind.is_bit and timing.even_aligned and (address % 2 or count % 2):
                return ILLEGAL_ADDRESS  # Eastron: odd start or count is refused
            if not kind.is_bit and count > timing.max_registers:
                return ILLEGAL_ADDRESS
            return self.words().get(kind, {})

        return UnitImage(self.words(), refresh)


def _fill_holes(table: dict[int, int], keep_out: set[int]) -> dict[int, int]:
    """Real meters implement the registers between the points a profile names (other quantities):
    serve zeros in holes shorter than a request, so bridging reads work as on the device."""
    filled = dict(table)
    addresses = sorted(table)
    for lo, hi in itertools.pairwise(addresses):
        if 1 < hi - lo <= FILL_HOLES_UP_TO:
            filled.update({a: 0 for a in range(lo + 1, hi) if a not in keep_out})
    return filled


def encode_point(spec: PointSpec, value: Value, values: Mapping[str, Value]) -> list[int]:
    """Engineering value -> registers: the decoder's pipeline run backwards."""
    if spec.register.is_bit:
        return [1 if value else 0]
    if spec.type is DataType.ENUM:
        codes = {name: code for code, name in spec.values}
        return encode_value(codes.get(str(value), 0), spec.type, spec.order)
    if spec.type is DataType.STRING:
        return encode_value(str(value), spec.type, spec.order, spec.words)
    if value is None:
        return encode_value(max(spec.na, default=0), _unsigned(spec.type), spec.order)
    factor = math.prod(float(values[r] or 1) for r in spec.multiply_by)
    if spec.scale_factor:
        factor *= 10.0 ** int(values[spec.scale_factor] or 0)
    addend = sum(float(values[r] or 0) for r in spec.plus)
    raw = (float(value) - addend - spec.offset) / (spec.scale * factor)
    if spec.type not in (DataType.F32, DataType.F64):
        raw = round(raw)
    return encode_value(raw, spec.type, spec.order)


def _unsigned(data_type: DataType) -> DataType:
    return {DataType.I16: DataType.U16, DataType.I32: DataType.U32, DataType.I64: DataType.U64,
            DataType.F32: DataType.U32, DataType.F64: DataType.U64}.get(data_type, data_type)


async def serve(listen: BusSpec, devices: Mapping[int, SimulatedDevice], faults: Faults | None = None) -> ServerHandle:
    """Serve simulated devices (unit id -> device) on `listen` until the handle is stopped. A device
    that needs a pause after connecting (Huawei's dongle) ignores requests that come sooner."""
    faults = faults or Faults()
    # deaf for 90 % of the profile's pause: the two ends note "connected" at slightly different
    # moments, and a busy machine's scheduling jitter must not decide whether the first request is heard
    pauses = [0.9 * d.profile.timing().pause_after_connect for d in devices.values() if d.quirks]
    faults.deaf_after_connect = max([faults.deaf_after_connect, *pauses])
    return await serve_units(listen, {unit: device.image() for unit, device in devices.items()}, faults)
