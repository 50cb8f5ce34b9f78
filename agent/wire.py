"""A config's devices as the wire sees them: which points travel, of what kind, at which decimal
exponent. Built once per config (and again on reload); the schema message and every batch of that
config refer to it by its id."""

from __future__ import annotations

import math
from collections.abc import Iterable

from agent.codec import DeviceInfo, PointInfo, WireSchema
from agent.config.loader import DeviceSetup
from agent.drivers.registers import decimals_of
from agent.types import DataType, PointSpec

# decimal exponent of the wire resolution per canonical unit, for float points without `resolution`
DEFAULT_EXP = {"V": 2, "A": 3, "W": 1, "var": 1, "VA": 1, "1": 3, "Hz": 3, "kWh": 3, "m³": 4, "m³/h": 4,
               "°C": 2, "%": 2}


def point_info(spec: PointSpec, resolution: float | None) -> PointInfo:
    """How one point travels: its kind and decimal exponent."""
    if spec.type is DataType.STRING:
        return PointInfo(spec.name, spec.unit, "text")
    if spec.type is DataType.ENUM:
        return PointInfo(spec.name, spec.unit, "enum", 0, spec.values)
    kind = spec.kind.value
    if resolution is not None:
        return PointInfo(spec.name, spec.unit, kind, -math.floor(math.log10(resolution) + 1e-9))
    if spec.type in (DataType.F32, DataType.F64) or spec.derived:
        return PointInfo(spec.name, spec.unit, kind, DEFAULT_EXP.get(spec.unit, 3))
    places = decimals_of(spec.scale * 1.0) if spec.offset == 0 else None
    return PointInfo(spec.name, spec.unit, kind, places if places is not None else DEFAULT_EXP.get(spec.unit, 3))


def build_schema(gateway: str, devices: Iterable[DeviceSetup]) -> WireSchema:
    infos = []
    shared: dict[int, tuple[PointInfo, ...]] = {}  # devices of one loaded profile share its point list
    for setup in devices:
        points = shared.get(id(setup.profile))
        if points is None:
            models = setup.profile.model.points
            points = shared[id(setup.profile)] = tuple(
                point_info(spec, models[name].resolution) for name, spec in setup.profile.points.items()
                if not spec.hidden)
        infos.append(DeviceInfo(setup.config.id, setup.profile.ref, points))
    return WireSchema(gateway, tuple(infos))


