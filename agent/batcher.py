"""Readings -> columnar batches. Pure: data in, data out; the clock and sequence numbers come in.

Readings are appended per device and point as they arrive (cheap, in the poll path); sealing
groups each device's points by identical timestamp rows (the points of one Modbus request share
their stamps), which is what makes the columns compact.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from agent.buffer.ring import SealedBatch
from agent.codec import Batch, DeviceInfo, Group, Header, PointInfo, WireSchema, encode
from agent.config.loader import DeviceSetup
from agent.drivers.registers import decimals_of
from agent.types import DataType, PointSpec, Quality, Reading, Value

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
    for setup in devices:
        models = setup.profile.model.points
        points = tuple(point_info(spec, models[name].resolution) for name, spec in setup.profile.points.items()
                       if not spec.hidden)
        infos.append(DeviceInfo(setup.config.id, setup.profile.ref, points))
    return WireSchema(gateway, tuple(infos))


@dataclass(frozen=True)
class Sealed:
    batch: Batch
    readings: int
    t_first: int
    t_last: int

    def encoded(self, schema: WireSchema) -> SealedBatch:
        """The batch on the wire, as the buffer keeps it."""
        return SealedBatch(self.batch.header.seq, encode(self.batch, schema), self.readings, self.t_first, self.t_last)


class Batcher:
    """Collects readings until sealed; one open batch at a time."""

    def __init__(self, schema: WireSchema) -> None:
        self.schema = schema
        self._index = schema.device_index()
        self._kinds = {d.id: {p.name: p.kind for p in d.points} for d in schema.devices}
        self._rows: dict[str, dict[str, list[tuple[int, Value, int, int]]]] = {}
        self.count = 0
        self.t_first: int | None = None
        self.t_last: int | None = None
        self.unknown = 0  # readings of devices or points the schema does not have (dropped, counted)

    def add(self, readings: Iterable[Reading]) -> None:
        """Append readings (in the poll path: one device's poll at a time, so lookups are per run)."""
        device: str | None = None
        kinds: dict[str, str] = {}
        t_first, t_last = self.t_first, self.t_last
        for r in readings:
            if r.device != device:
                device = r.device
                kinds = self._kinds.get(device, {})
            kind = kinds.get(r.point)
            if kind is None:
                self.unknown += 1
                continue
            if r.quality is not Quality.OK:
                value: Value = None
            else:
                value = r.detail if kind == "enum" else r.value
            self._rows.setdefault(device, {}).setdefault(r.point, []).append((r.ts_ms, value, r.quality, r.detail))
            self.count += 1
            ts = r.ts_ms
            if t_first is None or ts < t_first:
                t_first = ts
            if t_last is None or ts > t_last:
                t_last = ts
        self.t_first, self.t_last = t_first, t_last

    def peek(self, header: Header) -> Sealed | None:
        """The open batch as it stands, without closing it (a draft for the disk during outages)."""
        return self._build(header)

    def seal(self, header: Header) -> Sealed | None:
        """The open batch as a Batch with `header` (t0 is set here), or None if empty; starts a new one."""
        sealed = self._build(header)
        if sealed is not None:
            self._rows = {}
            self.count = 0
            self.t_first = self.t_last = None
        return sealed

    def _build(self, header: Header) -> Sealed | None:
        if not self.count or self.t_first is None or self.t_last is None:
            return None
        devices = []
        for device_id, points in self._rows.items():
            device_index, point_index = self._index[device_id]
            devices.append((device_index, _groups(points, point_index)))
        devices.sort(key=lambda d: d[0])
        head = Header(header.gateway, header.epoch, header.seq, self.schema.id, self.t_first, header.dropped_total,
                      header.dropped_new, header.boot, header.gap_ms, header.flags)
        return Sealed(Batch(head, devices), self.count, self.t_first, self.t_last)


def _groups(points: dict[str, list[tuple[int, Value, int, int]]], point_index: dict[str, int]) -> list[Group]:
    by_stamps: dict[tuple[int, ...], Group] = {}
    for name, unsorted in sorted(points.items(), key=lambda item: point_index[item[0]]):
        rows = sorted(unsorted, key=lambda row: row[0])
        stamps = tuple(row[0] for row in rows)
        group = by_stamps.get(stamps)
        if group is None:
            group = by_stamps[stamps] = Group([], list(stamps), [])
        column = len(group.points)
        group.points.append(point_index[name])
        group.columns.append([row[1] for row in rows])
        group.issues += [(i, column, int(row[2]), row[3]) for i, row in enumerate(rows) if row[2] != Quality.OK]
    return sorted(by_stamps.values(), key=lambda g: g.points[0])
