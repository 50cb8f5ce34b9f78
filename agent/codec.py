"""The wire format (docs/payload.md): columnar msgpack batches and the schema that names them. Pure.

One module serves the encoder (publisher side), the reference decoder (`edge-agent decode`, the
tests, `tail`) and the golden vectors, so the spec, the agent and the decoder cannot drift apart.

A batch is a msgpack array:
    [version, flags, gateway, epoch, seq, schema_id, t0, dropped_total, dropped_new, boot, gap_ms, devices]
    devices = [[device_index, [group, ...]], ...]
    group   = [point_indexes, ts_deltas, columns, issues]
Timestamps are ms, delta-encoded from t0; values are integers at the point's decimal exponent,
delta-encoded down each column (a float element is an absolute engineering value and restarts the
chain; nil is a reading without a value, its quality in `issues` as [row, column, quality, detail]).
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import msgpack

from agent.types import Quality, Value

FORMAT_VERSION = 1
FLAG_HISTORICAL = 0x01  # published from the backlog after an outage, not live
ZLIB_FIRST_BYTE = 0x78  # a compressed payload is a zlib stream; an uncompressed one starts with 0x9c (array)
MAX_EXP = 9


class FormatError(ValueError):
    """A payload that is not a batch of a format version this decoder knows."""


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class PointInfo:
    name: str
    unit: str
    kind: str  # gauge | counter | enum | text
    exp: int = 0  # value on the wire = round(engineering value * 10**exp)
    values: tuple[tuple[int, str], ...] = ()  # enum code -> name


@dataclass(frozen=True)
class DeviceInfo:
    id: str
    profile: str
    points: tuple[PointInfo, ...]


@dataclass(frozen=True)
class WireSchema:
    """What batches refer to by index; published retained as JSON on `<base>/schema`."""

    gateway: str
    devices: tuple[DeviceInfo, ...]
    id: int = field(init=False)

    def __post_init__(self) -> None:
        body = json.dumps(self._body(), sort_keys=True, separators=(",", ":")).encode()
        object.__setattr__(self, "id", int.from_bytes(hashlib.sha256(body).digest()[:4], "big"))

    def _body(self) -> dict[str, object]:
        return {"format": FORMAT_VERSION, "gateway": self.gateway, "devices": [
            {"id": d.id, "profile": d.profile, "points": [
                {"name": p.name, "unit": p.unit, "kind": p.kind, "exp": p.exp,
                 **({"values": {str(k): v for k, v in p.values}} if p.values else {})} for p in d.points]}
            for d in self.devices]}

    def to_json(self) -> str:
        return json.dumps({**self._body(), "schema_id": self.id}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> WireSchema:
        data = json.loads(text)
        schema = cls(data["gateway"], tuple(
            DeviceInfo(d["id"], d["profile"], tuple(
                PointInfo(p["name"], p["unit"], p["kind"], p["exp"],
                          tuple(sorted((int(k), v) for k, v in p.get("values", {}).items())))
                for p in d["points"]))
            for d in data["devices"]))
        if data.get("schema_id") not in (None, schema.id):
            raise FormatError(f"schema_id {data['schema_id']} does not match its content ({schema.id})")
        return schema

    def device_index(self) -> dict[str, tuple[int, dict[str, int]]]:
        """device id -> (index, point name -> index)."""
        return {d.id: (i, {p.name: j for j, p in enumerate(d.points)}) for i, d in enumerate(self.devices)}


# --------------------------------------------------------------------------- batch


@dataclass(frozen=True)
class Header:
    gateway: str
    epoch: int
    seq: int
    schema_id: int
    t0: int  # ms: the batch's first timestamp
    dropped_total: int = 0  # readings lost (evicted, corrupt) since the epoch began: cumulative
    dropped_new: int = 0  # of which since the previous batch
    boot: int = 0  # agent starts on this buffer
    gap_ms: int | None = None  # first batch after a start: ms since the last reading that reached the disk
    flags: int = 0


@dataclass
class Group:
    """Points of one device read at the same instants (one Modbus request, typically)."""

    points: list[int]
    ts: list[int]  # absolute ms per row
    columns: list[list[Value]]  # per point, per row: engineering value, or None
    issues: list[tuple[int, int, int, int]] = field(default_factory=list)  # row, column, quality, detail


@dataclass
class Batch:
    header: Header
    devices: list[tuple[int, list[Group]]]

    @property
    def readings(self) -> int:
        return sum(len(g.ts) * len(g.points) for _, groups in self.devices for g in groups)


def encode(batch: Batch, schema: WireSchema) -> bytes:
    h = batch.header
    devices = []
    for device_index, groups in batch.devices:
        infos = schema.devices[device_index].points
        devices.append([device_index, [_encode_group(g, infos, h.t0) for g in groups]])
    return msgpack.packb([FORMAT_VERSION, h.flags, h.gateway, h.epoch, h.seq, h.schema_id, h.t0, h.dropped_total,
                          h.dropped_new, h.boot, h.gap_ms, devices], use_bin_type=True)


def _encode_group(group: Group, infos: Sequence[PointInfo], t0: int) -> list[object]:
    ts_deltas = []
    previous = t0
    for ts in group.ts:
        ts_deltas.append(ts - previous)
        previous = ts
    columns = [_encode_column(column, infos[p]) for p, column in zip(group.points, group.columns, strict=True)]
    return [group.points, ts_deltas, columns, [list(i) for i in group.issues]]


def _encode_column(values: Sequence[Value], info: PointInfo) -> list[object]:
    if info.kind == "text":
        return list(values)
    out: list[object] = []
    last: int | None = None
    scale = 10 ** info.exp
    for value in values:
        if value is None:
            out.append(None)
            continue
        scaled = value * scale if info.exp >= 0 else value / 10 ** -info.exp
        as_int = round(scaled)
        if isinstance(value, bool) or not math.isfinite(scaled) or abs(as_int) >= 2**62 \
                or abs(scaled - as_int) > 0.5:
            out.append(float(value))
            last = None
            continue
        out.append(as_int if last is None else as_int - last)
        last = as_int
    return out


def set_historical(payload: bytes) -> bytes:
    """The same batch flagged as historical (byte 2 is the flags fixint, right after the version)."""
    if len(payload) < 3 or payload[1] != FORMAT_VERSION or payload[2] > 0x7F:
        raise FormatError("not a version-1 batch")
    return payload[:2] + bytes([payload[2] | FLAG_HISTORICAL]) + payload[3:]


def compress(payload: bytes) -> bytes:
    return zlib.compress(payload, 9)


# --------------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class DecodedReading:
    device: str
    point: str
    unit: str
    ts: int
    value: Value
    quality: str
    detail: int = 0

    def as_dict(self) -> dict[str, object]:
        return {"device": self.device, "point": self.point, "unit": self.unit, "ts": self.ts, "value": self.value,
                "quality": self.quality, **({"detail": self.detail} if self.detail else {})}


def decode_header(payload: bytes) -> tuple[Header, list[object]]:
    data = _unpack(payload)
    if not isinstance(data, list) or len(data) != 12 or data[0] != FORMAT_VERSION:
        raise FormatError(f"not a version-{FORMAT_VERSION} batch")
    (_, flags, gateway, epoch, seq, schema_id, t0, dropped_total, dropped_new, boot, gap_ms, devices) = data
    return Header(gateway, epoch, seq, schema_id, t0, dropped_total, dropped_new, boot, gap_ms, flags), devices


def decode(payload: bytes, schema: WireSchema) -> Iterator[DecodedReading]:
    """Every reading of a batch as (device, point, unit, ts, engineering value, quality)."""
    header, devices = decode_header(payload)
    if header.schema_id != schema.id:
        raise FormatError(f"batch uses schema {header.schema_id}, this schema is {schema.id}")
    for device_index, groups in devices:  # type: ignore[misc]
        device = schema.devices[device_index]  # type: ignore[has-type]
        for point_indexes, ts_deltas, columns, issues in groups:  # type: ignore[has-type]
            stamps = _undelta(ts_deltas, header.t0)
            problems = {(row, col): (q, d) for row, col, q, d in issues}
            for col, (point_index, column) in enumerate(zip(point_indexes, columns, strict=True)):
                info = device.points[point_index]
                for row, value in enumerate(_decode_column(column, info)):
                    quality, detail = problems.get((row, col), (int(Quality.OK), 0))
                    if info.kind == "enum" and value is not None:
                        detail, value = int(value), dict(info.values).get(int(value), f"unknown_{int(value):#06x}")
                    yield DecodedReading(device.id, info.name, info.unit, stamps[row], value,
                                         Quality(quality).name.lower(), detail)


def _decode_column(column: Sequence[object], info: PointInfo) -> list[Value]:
    if info.kind == "text":
        return list(column)  # type: ignore[arg-type]
    out: list[Value] = []
    last: int | None = None
    for item in column:
        if item is None:
            out.append(None)
        elif isinstance(item, float):
            out.append(item)
            last = None
        else:
            last = int(item) if last is None else last + int(item)  # type: ignore[call-overload]
            out.append(_unscale(last, info.exp))
    return out


def _unscale(value: int, exp: int) -> float | int:
    if exp == 0:
        return value
    if exp < 0:
        return value * 10 ** -exp
    return round(value / 10**exp, exp)


def _undelta(deltas: Sequence[int], start: int) -> list[int]:
    out = []
    current = start
    for delta in deltas:
        current += delta
        out.append(current)
    return out


def _unpack(payload: bytes) -> object:
    if payload[:1] == bytes([ZLIB_FIRST_BYTE]):
        try:
            payload = zlib.decompress(payload)
        except zlib.error as exc:
            raise FormatError(f"bad zlib stream: {exc}") from None
    try:
        return msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise FormatError(f"not msgpack: {exc}") from None


@dataclass(frozen=True)
class Part:
    """One piece of a split batch: its new key, its bytes and how many readings it carries."""

    epoch: int
    seq: int
    payload: bytes
    readings: int


def split(payload: bytes, max_bytes: int, next_key: Callable[[], tuple[int, int]]) -> list[Part]:
    """Cut an uncompressed batch into batches of at most `max_bytes`, by device and then by group,
    without decoding values: t0 and the deltas stay valid. Each part gets a new dedup key (epoch,
    seq) from `next_key` (the buffer's numbering: the original's epoch may be over); `dropped_new`
    stays with the first part. A single group larger than `max_bytes` is left whole."""
    header, devices = decode_header(payload)
    pieces: list[list[object]] = []
    for device_index, groups in devices:  # type: ignore[misc]
        pieces += [[device_index, [group]] for group in groups]  # type: ignore[has-type]
    parts: list[list[object]] = []
    for piece in pieces:
        candidate = _merge(parts[-1], piece) if parts else None
        if candidate is not None and len(_pack(header, candidate, 0, 0)) <= max_bytes:
            parts[-1] = candidate
        else:
            parts.append([piece])
    out = []
    for index, part in enumerate(parts):
        epoch, seq = next_key()
        readings = sum(len(group[0]) * len(group[1]) for _, groups in part for group in groups)  # type: ignore[misc, has-type]
        body = _pack(replace(header, epoch=epoch), part, seq, header.dropped_new if index == 0 else 0)
        out.append(Part(epoch, seq, body, readings))
    return out


def _merge(part: list[object], piece: list[object]) -> list[object]:
    merged = [list(d) for d in part]  # type: ignore[call-overload]
    if merged and merged[-1][0] == piece[0]:
        merged[-1] = [piece[0], [*merged[-1][1], *piece[1]]]  # type: ignore[misc]
    else:
        merged.append(piece)
    return merged


def _pack(h: Header, devices: list[object], seq: int, dropped_new: int) -> bytes:
    return msgpack.packb([FORMAT_VERSION, h.flags, h.gateway, h.epoch, seq, h.schema_id, h.t0, h.dropped_total,
                          dropped_new, h.boot, h.gap_ms, devices], use_bin_type=True)
