"""Pure logic, data tables: topics, decoded readings -> sample columns, lost spans, events."""

from __future__ import annotations

import pytest

from agent.codec import DecodedReading, Header
from ingest.rows import (
    BadMessage,
    LostSpan,
    SampleColumns,
    SeriesRef,
    check_times,
    event_lost_spans,
    header_lost_spans,
    parse_event,
    parse_status,
    parse_topic,
    sample_columns,
)


@pytest.mark.parametrize("topic, expected", [
    ("park/guian-ftz/gw-1/telemetry", ("park", "guian-ftz", "gw-1", "telemetry")),
    ("park/guian-ftz/gw-1/schema", ("park", "guian-ftz", "gw-1", "schema")),
    ("energy/cn/park/site-a/gw-2/events", ("energy/cn/park", "site-a", "gw-2", "events")),
    ("park/s/g/status", ("park", "s", "g", "status")),
])
def test_topic_levels(topic: str, expected: tuple[str, ...]) -> None:
    t = parse_topic(topic)
    assert (t.prefix, t.site, t.gateway, t.leaf) == expected


@pytest.mark.parametrize("topic", ["park/gw/telemetry", "park/s/g/metrics", "park//g/telemetry", "/s/g/telemetry",
                                   "park/s/g/telemetry/extra", ""])
def test_topics_that_are_not_ours(topic: str) -> None:
    with pytest.raises(BadMessage, match="is not <prefix>"):
        parse_topic(topic)


SERIES = {("m", "v"): SeriesRef(1, "gauge"), ("m", "e"): SeriesRef(2, "counter"), ("pv", "state"): SeriesRef(3, "enum"),
          ("pv", "model"): SeriesRef(4, "text")}


@pytest.mark.parametrize("reading, row", [
    # reading (device, point, value, quality, detail) -> (series, value, text, quality code, detail)
    (("m", "v", 230.12, "ok", 0), (1, 230.12, None, 0, None)),
    (("m", "e", 12345, "ok", 0), (2, 12345.0, None, 0, None)),          # an integer column at exp 0
    (("m", "v", None, "timeout", 0), (1, None, None, 1, None)),
    (("m", "v", None, "exception", 4), (1, None, None, 2, 4)),          # Modbus exception code kept
    (("m", "v", None, "unavailable", 0), (1, None, None, 3, None)),
    (("m", "v", 1e20, "ok", 0), (1, 1e20, None, 0, None)),
    (("pv", "state", "on_grid", "ok", 512), (3, 512.0, "on_grid", 0, 512)),   # enum: name and code
    (("pv", "state", "off", "ok", 0), (3, 0.0, "off", 0, None)),              # code 0 is a value, not "none"
    (("pv", "state", None, "timeout", 0), (3, None, None, 1, None)),
    (("pv", "model", "SUN2000-50KTL", "ok", 0), (4, None, "SUN2000-50KTL", 0, None)),
])
def test_reading_to_row(reading: tuple[object, ...], row: tuple[object, ...]) -> None:
    device, point, value, quality, detail = reading
    columns = sample_columns([DecodedReading(device, point, "", 1_000, value, quality, detail)], SERIES)  # type: ignore[arg-type]
    assert (columns.series[0], columns.value[0], columns.text[0], columns.quality[0], columns.detail[0]) == row
    assert columns.ts_ms == [1_000]


def test_a_reading_the_schema_does_not_list_is_a_bad_batch() -> None:
    with pytest.raises(BadMessage, match="m/ghost"):
        sample_columns([DecodedReading("m", "ghost", "V", 0, 1.0, "ok")], SERIES)


@pytest.mark.parametrize("stamps, days", [
    ([0], {0}),
    ([86_399_999, 86_400_000], {0, 1}),
    ([1_763_700_000_000, 1_763_700_000_000, 1_763_700_001_000], {20413}),   # 2025-11-21
])
def test_partition_days(stamps: list[int], days: set[int]) -> None:
    assert SampleColumns(ts_ms=stamps).days() == days


@pytest.mark.parametrize("stamps, ok", [([0, 1_763_700_000_000], True), ([-1], False),
                                        ([253_402_300_799_999], True), ([253_402_300_800_000], False), ([], True)])
def test_time_range(stamps: list[int], ok: bool) -> None:
    if ok:
        check_times(SampleColumns(ts_ms=stamps))
    else:
        with pytest.raises(BadMessage, match="out of range"):
            check_times(SampleColumns(ts_ms=stamps))


@pytest.mark.parametrize("gap_ms, spans", [
    (None, []),
    (0, []),
    (95_000, [LostSpan("restart_gap", 1_000_000 - 95_000, 1_000_000, epoch=7)]),
])
def test_restart_gap(gap_ms: int | None, spans: list[LostSpan]) -> None:
    assert header_lost_spans(Header("gw", 7, 1, 0, 1_000_000, gap_ms=gap_ms)) == spans


@pytest.mark.parametrize("payload, spans", [
    (b'{"event": "data_dropped", "ts": 5, "seqs": [10, 19], "batches": 10, "readings": 20000, "from_ms": 100,'
     b' "to_ms": 200, "dropped_total": 20000}', [LostSpan("buffer_evicted", 100, 200, 20000, None, 10, 19)]),
    (b'{"event": "device_offline", "ts": 5, "device": "m", "error": "timeout"}', []),
])
def test_event_spans(payload: bytes, spans: list[LostSpan]) -> None:
    assert event_lost_spans(parse_event(payload)) == spans


@pytest.mark.parametrize("payload, message", [
    (b"not json", "not JSON"),
    (b"[1, 2]", "object"),
    (b'{"event": "x"}', "object"),
    (b'{"event": "x", "ts": true}', "object"),
    (b'\xff\xfe', "not JSON"),
])
def test_bad_events(payload: bytes, message: str) -> None:
    with pytest.raises(BadMessage, match=message):
        parse_event(payload)


def test_a_data_dropped_event_without_its_range_is_bad() -> None:
    with pytest.raises(BadMessage, match="from_ms"):
        event_lost_spans(parse_event(b'{"event": "data_dropped", "ts": 5}'))


def test_event_dedup_text_is_canonical() -> None:
    a = parse_event(b'{"event": "e", "ts": 1, "b": 2, "a": 1}')
    b = parse_event(b'{"a": 1, "ts": 1,   "event": "e", "b": 2}')
    assert a.body_text == b.body_text


@pytest.mark.parametrize("payload, ok", [(b'{"state": "online", "version": "1"}', True), (b'{"state": 1}', False),
                                         (b"offline", False)])
def test_status(payload: bytes, ok: bool) -> None:
    if ok:
        assert parse_status(payload)["state"] == "online"
    else:
        with pytest.raises(BadMessage):
            parse_status(payload)
