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
from typing import Any

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
    """Cut an uncompressed batch into batches of at most `max_bytes`, by device, by group, then a
    group by its columns and a column by its rows, without decoding values: the first timestamp
    and the first integer of a cut-off run of rows are made absolute, so t0 and the deltas stay
    valid. Each part gets a new dedup key (epoch, seq) from `next_key` (the buffer's numbering: the
    original's epoch may be over); `dropped_new` stays with the first part. Only a single reading
    larger than `max_bytes` (a long text value) is left whole: the caller must not send it."""
    header, devices = decode_header(payload)
    def size(part: list[object]) -> int:  # with the largest key the part may get
        return len(_pack(replace(header, epoch=2**32), part, 2**32, header.dropped_new))

    pieces: list[list[object]] = []
    for device_index, groups in devices:  # type: ignore[misc]
        for group in groups:  # type: ignore[has-type]
            pieces += _fitting(device_index, group, lambda piece: size([piece]) <= max_bytes)  # type: ignore[has-type]
    parts: list[list[object]] = []
    for piece in pieces:
        candidate = _merge(parts[-1], piece) if parts else None
        if candidate is not None and size(candidate) <= max_bytes:
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


def _fitting(device_index: object, group: list[Any], fits: Callable[[list[object]], bool]) -> list[list[object]]:
    """`[device_index, [group]]` pieces that fit: halves by columns first, then by rows."""
    piece: list[object] = [device_index, [group]]
    points, deltas, columns, issues = group
    if fits(piece) or len(points) * len(deltas) <= 1:
        return [piece]
    if len(points) > 1:
        h = len(points) // 2
        halves = [[points[:h], deltas, columns[:h], [i for i in issues if i[1] < h]],
                  [points[h:], deltas, columns[h:], [[i[0], i[1] - h, *i[2:]] for i in issues if i[1] >= h]]]
    else:
        h = len(deltas) // 2
        tail_deltas = [sum(deltas[:h + 1]), *deltas[h + 1:]]  # the tail's first row relative to t0
        halves = [[points, deltas[:h], [c[:h] for c in columns], [i for i in issues if i[0] < h]],
                  [points, tail_deltas, [_absolute_from(c, h) for c in columns],
                   [[i[0] - h, *i[1:]] for i in issues if i[0] >= h]]]
    return [p for half in halves for p in _fitting(device_index, half, fits)]


def _absolute_from(column: list[Any], cut: int) -> list[Any]:
    """column[cut:] decodable on its own: its first integer, if no float comes before it, absolute."""
    running = None
    for item in column[:cut]:
        if isinstance(item, float):
            running = None
        elif isinstance(item, int):
            running = item if running is None else running + item
    tail = list(column[cut:])
    for index, item in enumerate(tail):
        if isinstance(item, float):
            break
        if isinstance(item, int):
            if running is not None:
                tail[index] = running + item
            break
    return tail


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


# --------------------------------------------------------------------------- the schema in parts

PARTS_PLACEHOLDER = 999_999  # measured in place of the part count, which is known only at the end


def schema_messages(schema_json: str, topic: str, room: Callable[[str], int] | None) -> list[tuple[str, str]]:
    """The retained messages that carry a schema, in publishing order: `(topic, schema_json)` when
    it fits, else its JSON text cut into parts `<topic>/<i>` followed by an index on `topic`, so a
    broker with a small Maximum Packet Size takes them all (docs/payload.md says how a platform
    joins them). `room(topic)`: the payload bytes a message on that topic may have; None: no limit."""
    if room is None or len(schema_json.encode()) <= room(topic):
        return [(topic, schema_json)]
    head = json.loads(schema_json)
    schema_id = head["schema_id"]
    texts: list[str] = []
    start = 0
    while start < len(schema_json):
        budget = room(f"{topic}/{len(texts)}")
        n = _longest_part(schema_json, start, budget, schema_id, len(texts))
        if n == 0:
            raise ValueError(f"a packet limit leaving {budget} bytes cannot carry a schema part")
        texts.append(schema_json[start:start + n])
        start += n
    messages = [(f"{topic}/{i}", _part(schema_id, i, len(texts), text)) for i, text in enumerate(texts)]
    index = json.dumps({"format": head["format"], "gateway": head["gateway"], "schema_id": schema_id,
                        "parts": len(texts)}, ensure_ascii=False)
    return [*messages, (topic, index)]


def _part(schema_id: int, index: int, parts: int, text: str) -> str:
    return json.dumps({"schema_id": schema_id, "part": index, "parts": parts, "text": text}, ensure_ascii=False)


def _longest_part(text: str, start: int, budget: int, schema_id: int, index: int) -> int:
    """How many characters from `start` fit in one part of `budget` bytes (binary search)."""
    low, high = 0, min(len(text) - start, budget)
    while low < high:
        mid = (low + high + 1) // 2
        if len(_part(schema_id, index, PARTS_PLACEHOLDER, text[start:start + mid]).encode()) <= budget:
            low = mid
        else:
            high = mid - 1
    return low


def join_schema(index: dict[str, Any], parts: dict[int, dict[str, Any]]) -> str | None:
    """The schema's JSON text from its index message and the parts received so far (part number ->
    parsed part), or None while one is missing or belongs to another schema."""
    count, schema_id = index.get("parts"), index.get("schema_id")
    if not isinstance(count, int):
        return None
    texts = []
    for number in range(count):
        part = parts.get(number)
        if part is None or part.get("schema_id") != schema_id or part.get("parts") != count:
            return None
        texts.append(part["text"])
    return "".join(texts)


class SchemaAssembler:
    """The newest schema of one gateway from its retained schema messages, whole or in parts (for
    `tail` and the test platform; `edge-agent ingest` keeps the parts in PostgreSQL instead)."""

    def __init__(self) -> None:
        self.index: dict[str, Any] | None = None
        self.parts: dict[int, dict[str, Any]] = {}

    def add(self, suffix: str, payload: bytes | str) -> str | None:
        """A message on `<base>/schema` (suffix "") or `<base>/schema/<i>`: the whole schema's JSON
        once it is complete, else None."""
        if not payload:  # a cleared retained message
            if suffix:
                self.parts.pop(int(suffix), None)
            return None
        body = json.loads(payload)
        if suffix:
            self.parts[int(suffix)] = body
        elif "devices" in body:
            return payload.decode() if isinstance(payload, bytes) else payload
        else:
            self.index = body
        return join_schema(self.index, self.parts) if self.index is not None else None


def schema_topic(topic: str) -> tuple[str, str] | None:
    """`<base>/schema` -> (base, ""), `<base>/schema/<i>` -> (base, "<i>"); None for other topics."""
    base, _, leaf = topic.rpartition("/")
    if leaf == "schema":
        return base, ""
    base, _, parent = base.rpartition("/")
    return (base, leaf) if parent == "schema" and leaf.isdigit() else None
