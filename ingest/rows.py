"""What arrives -> what is stored. Pure: no I/O, tested with data tables.

The reference decoder (`agent.codec.decode`) turns a batch into readings; this module turns those
into the column arrays the samples table takes, and headers and events into lost spans.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.codec import DecodedReading, Header
from agent.types import Quality

DAY_MS = 86_400_000
QUALITY_CODES = {q.name.lower(): int(q) for q in Quality}
LEAVES = frozenset({"telemetry", "schema", "status", "events"})


class BadMessage(ValueError):
    """A message the platform cannot take as it is: quarantined with this message."""


@dataclass(frozen=True)
class Topic:
    prefix: str
    site: str
    gateway: str
    leaf: str
    part: int | None = None  # `<...>/schema/<part>`: one part of a schema too large for the broker's packets


def parse_topic(topic: str) -> Topic:
    """`<prefix>/<site>/<gateway>/<leaf>`, or `.../schema/<part>`; the prefix may itself have levels."""
    parts = topic.split("/")
    if len(parts) >= 5 and parts[-2] == "schema" and parts[-1].isdigit() and all(parts[:-2]):
        return Topic("/".join(parts[:-4]), parts[-4], parts[-3], "schema", int(parts[-1]))
    if len(parts) < 4 or parts[-1] not in LEAVES or not all(parts[-3:-1]) or not all(parts[:-3]):
        raise BadMessage(f"topic {topic!r} is not <prefix>/<site>/<gateway>/telemetry|schema|status|events")
    return Topic("/".join(parts[:-3]), parts[-3], parts[-2], parts[-1])


@dataclass
class SampleColumns:
    """The samples of one or more batches as parallel arrays (one INSERT ... SELECT unnest(...))."""

    series: list[int] = field(default_factory=list)
    ts_ms: list[int] = field(default_factory=list)
    value: list[float | None] = field(default_factory=list)
    text: list[str | None] = field(default_factory=list)
    quality: list[int] = field(default_factory=list)
    detail: list[int | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.series)

    def days(self) -> set[int]:
        """UTC days (days since the epoch) the samples fall on: the partitions they need."""
        return {ms // DAY_MS for ms in set(self.ts_ms)}


@dataclass(frozen=True)
class SeriesRef:
    id: int
    kind: str  # gauge | counter | enum | text


def sample_columns(readings: Iterable[DecodedReading], series_of: Mapping[tuple[str, str], SeriesRef]) -> SampleColumns:
    """Decoded readings -> columns. Text points keep their string in `text`; enums their name in
    `text` and their code in `value` and `detail`; numbers go to `value` (as double precision)."""
    out = SampleColumns()
    for r in readings:
        try:
            ref = series_of[(r.device, r.point)]
        except KeyError:
            raise BadMessage(f"reading of {r.device}/{r.point}, which its schema does not list") from None
        series = ref.id
        value, text = _value_and_text(r, ref.kind)
        out.series.append(series)
        out.ts_ms.append(r.ts)
        out.value.append(value)
        out.text.append(text)
        out.quality.append(QUALITY_CODES[r.quality])
        out.detail.append(r.detail or None)
    return out


def _value_and_text(r: DecodedReading, kind: str) -> tuple[float | None, str | None]:
    if r.value is None:
        return None, None
    if kind == "enum":
        return float(r.detail), str(r.value)
    if kind == "text" or isinstance(r.value, str):
        return None, str(r.value)
    return float(r.value), None


@dataclass(frozen=True)
class LostSpan:
    kind: str  # restart_gap | buffer_evicted
    from_ms: int
    to_ms: int
    readings: int | None = None
    epoch: int | None = None
    seq_first: int | None = None
    seq_last: int | None = None


def header_lost_spans(header: Header) -> list[LostSpan]:
    """A batch after a start says how long nothing reached the disk before it (gap_ms)."""
    if header.gap_ms is None or header.gap_ms <= 0:
        return []
    return [LostSpan("restart_gap", header.t0 - header.gap_ms, header.t0, epoch=header.epoch)]


@dataclass(frozen=True)
class Event:
    kind: str
    ts_ms: int
    body: dict[str, Any]
    body_text: str  # canonical JSON: the dedup hash is taken over it


def parse_event(payload: bytes) -> Event:
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadMessage(f"event is not JSON: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("event"), str) or not _is_int(body.get("ts")):
        raise BadMessage('event is not an object with "event" (string) and "ts" (integer ms)')
    return Event(body["event"], body["ts"], body, json.dumps(body, sort_keys=True, separators=(",", ":")))


def event_lost_spans(event: Event, epoch: int | None = None) -> list[LostSpan]:
    """`data_dropped`: consecutive seqs evicted from a full buffer, with their time range."""
    if event.kind != "data_dropped":
        return []
    body = event.body
    if not (_is_int(body.get("from_ms")) and _is_int(body.get("to_ms"))):
        raise BadMessage("data_dropped event without integer from_ms/to_ms")
    seqs = body.get("seqs") if isinstance(body.get("seqs"), list) and len(body["seqs"]) == 2 else [None, None]
    readings = body.get("readings") if _is_int(body.get("readings")) else None
    first, last = seqs if isinstance(seqs, list) else (None, None)
    return [LostSpan("buffer_evicted", body["from_ms"], body["to_ms"], readings, epoch, first, last)]


def parse_status(payload: bytes) -> dict[str, Any]:
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadMessage(f"status is not JSON: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("state"), str):
        raise BadMessage('status is not an object with "state" (string)')
    return body


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


MAX_TS_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def check_times(columns: SampleColumns) -> None:
    """Timestamps outside 1970..9999 are a corrupt batch, not a partition to create."""
    if columns.ts_ms and (min(columns.ts_ms) < 0 or max(columns.ts_ms) > MAX_TS_MS):
        raise BadMessage(f"reading timestamps out of range ({min(columns.ts_ms)}..{max(columns.ts_ms)} ms)")
