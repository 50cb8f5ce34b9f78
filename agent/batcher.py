"""Readings -> columnar batches. Pure: data in, data out; the clock and sequence numbers come in.

Readings are appended per device and point as they arrive (cheap, in the poll path); sealing
groups each device's points by identical timestamp rows (the points of one Modbus request share
their stamps), which is what makes the columns compact.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from agent.codec import Batch, Group, Header, WireSchema, encode
from agent.types import Quality, Reading, Value


@dataclass(frozen=True)
class Sealed:
    batch: Batch
    readings: int
    t_first: int
    t_last: int

    def encode(self, schema: WireSchema) -> bytes:
        """The batch on the wire."""
        return encode(self.batch, schema)


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

    def marks(self) -> dict[tuple[str, str], int]:
        """How many readings each (device, point) holds now (what a draft contains)."""
        return {(device, point): len(rows) for device, points in self._rows.items() for point, rows in points.items()}

    def drop(self, marks: dict[tuple[str, str], int]) -> None:
        """Forget the readings a draft held (`marks`): the draft became a batch of its own."""
        for (device, point), n in marks.items():
            rows = self._rows.get(device, {}).get(point)
            if rows is not None:
                del rows[:n]
                if not rows:
                    del self._rows[device][point]
            if device in self._rows and not self._rows[device]:
                del self._rows[device]
        stamps = [row[0] for points in self._rows.values() for rows in points.values() for row in rows]
        self.count = len(stamps)
        self.t_first = min(stamps, default=None)
        self.t_last = max(stamps, default=None)

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
    for name, rows in sorted(points.items(), key=lambda item: point_index[item[0]]):
        if len(rows) > 1:
            rows = sorted(rows, key=_stamp)
        stamps = tuple([row[0] for row in rows])
        group = by_stamps.get(stamps)
        if group is None:
            group = by_stamps[stamps] = Group([], list(stamps), [])
        column = len(group.points)
        group.points.append(point_index[name])
        group.columns.append([row[1] for row in rows])
        if any(row[2] for row in rows):  # Quality.OK is 0
            group.issues += [(i, column, int(row[2]), row[3]) for i, row in enumerate(rows) if row[2]]
    return sorted(by_stamps.values(), key=_first_point)


def _stamp(row: tuple[int, Value, int, int]) -> int:
    return row[0]


def _first_point(group: Group) -> int:
    return group.points[0]
