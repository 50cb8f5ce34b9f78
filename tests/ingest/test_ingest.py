"""End to end through a real mosquitto into a real PostgreSQL: the golden vectors land exactly as
their expected JSON; schemas that come late, duplicates, bad input, events, status."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agent.codec import Batch, DeviceInfo, Group, Header, PointInfo, WireSchema, encode
from ingest.service import Ingest
from tests.ingest.conftest import BASE, Gateway, batch, count, migrated, query, recording_log, vector, wait_until

VECTOR_NAMES = ["basic", "qualities", "odd-values", "historical-zlib"]


def stored_readings(dsn: str) -> list[dict[str, Any]]:
    """The readings view, back in the reference decoder's JSON shape."""
    rows = query(dsn, "SELECT device, point, unit, (extract(epoch FROM ts) * 1000)::bigint, value, text, quality, detail"
                      " FROM readings")
    out = []
    for device, point, unit, ts, value, text, quality, detail in rows:
        out.append({"device": device, "point": point, "unit": unit, "ts": ts,
                    "value": text if text is not None else value, "quality": quality,
                    **({"detail": detail} if detail else {})})
    return sorted(out, key=lambda r: (r["device"], r["point"], r["ts"]))


@pytest.mark.parametrize("name", VECTOR_NAMES)
def test_golden_vectors_land_as_their_expected_json(name: str, dsn: str, gateway: Gateway,
                                                    start_ingest: Callable[..., Ingest]) -> None:
    payload, schema, expected = vector(name)
    start_ingest()
    gateway.publish(f"{BASE}/schema", schema, retain=True)
    gateway.publish(f"{BASE}/telemetry", payload)
    assert wait_until(lambda: count(dsn, "batches") == 1, 20)
    want = sorted(expected["readings"], key=lambda r: (r["device"], r["point"], r["ts"]))
    got = stored_readings(dsn)
    assert got == want
    assert [type(r["value"]) for r in got] == [type(r["value"]) if not isinstance(r["value"], int) else float
                                               for r in want]
    h = expected["header"]
    row = query(dsn, "SELECT gateway, epoch, seq, schema_id, (extract(epoch FROM t0) * 1000)::bigint, dropped_total,"
                     " dropped_new, boot, gap_ms, flags, historical, readings, site, bytes FROM batches")[0]
    assert row == (h["gateway"], h["epoch"], h["seq"], h["schema_id"], h["t0"], h["dropped_total"], h["dropped_new"],
                   h["boot"], h["gap_ms"], h["flags"], bool(h["flags"] & 1), len(want), "guian-ftz", len(payload))
    assert count(dsn, "quarantine") == 0 and count(dsn, "pending_batches") == 0


def test_a_batch_before_its_schema_waits_and_is_decoded_when_the_schema_comes(
        dsn: str, gateway: Gateway, start_ingest: Callable[..., Ingest]) -> None:
    payload, schema, expected = vector("qualities")
    start_ingest()
    gateway.publish(f"{BASE}/telemetry", payload)
    assert wait_until(lambda: count(dsn, "pending_batches") == 1, 20)
    assert count(dsn, "batches") == 0 and count(dsn, "samples") == 0
    gateway.publish(f"{BASE}/schema", schema, retain=True)
    assert wait_until(lambda: count(dsn, "batches") == 1, 20)
    assert count(dsn, "pending_batches") == 0
    assert len(stored_readings(dsn)) == len(expected["readings"])
    # its gap_ms is a lost span: 95 s before the batch's first reading
    assert query(dsn, "SELECT kind, extract(epoch FROM to_ts - from_ts)::int, (extract(epoch FROM to_ts) * 1000)::bigint"
                      " FROM lost_spans") == [("restart_gap", 95, expected["header"]["t0"])]


def test_a_repeated_batch_is_stored_once(dsn: str, gateway: Gateway, start_ingest: Callable[..., Ingest]) -> None:
    payload, schema, expected = vector("basic")
    again, _, _ = vector("historical-zlib")  # the same batch (same key), compressed and flagged historical
    service = start_ingest()
    gateway.publish(f"{BASE}/schema", schema, retain=True)
    for p in (payload, payload, again):
        gateway.publish(f"{BASE}/telemetry", p)
    assert wait_until(lambda: service.writer.outcomes["duplicate"] == 2, 20)
    assert count(dsn, "batches") == 1 and count(dsn, "samples") == len(expected["readings"])


def text_batch(text: str, seq: int) -> tuple[bytes, WireSchema]:
    schema = WireSchema("gw-guian-01", (DeviceInfo("pv-roof-a", "huawei/sun2000", (PointInfo("model_name", "", "text"),)),))
    group = Group([0], [1_763_700_000_000], [[text]])
    batch = Batch(Header("gw-guian-01", 9, seq, schema.id, 1_763_700_000_000), [(0, [group])])
    return encode(batch, schema), schema


def test_bad_input_is_quarantined_with_its_reason_and_blocks_nothing(
        dsn: str, gateway: Gateway, start_ingest: Callable[..., Ingest]) -> None:
    good, schema, _ = vector("basic")
    nul, nul_schema = text_batch("bad\x00text", 1)  # PostgreSQL text cannot hold NUL: the database refuses it
    fine, _ = text_batch("SUN2000", 2)
    log, events = recording_log()
    service = start_ingest(log=log)
    gateway.publish(f"{BASE}/schema", schema, retain=True)
    gateway.publish("park/guian-ftz/gw-other/schema", nul_schema.to_json(), retain=True)  # foreign: gateway mismatch
    gateway.publish("park/guian-ftz/gw-guian-01/telemetry", b"\x9c\x01garbage")
    gateway.publish("park/guian-ftz/gw-impostor/telemetry", good)  # a batch of gw-guian-01 on another's topic
    gateway.publish(f"{BASE}/events", b"{not json")
    gateway.publish(f"{BASE}/status", b'{"state": 3}')
    gateway.publish(f"{BASE}/telemetry", good)
    assert wait_until(lambda: count(dsn, "batches") == 1, 20)
    assert sorted(r[0] for r in query(dsn, "SELECT error FROM quarantine")) == sorted([
        "schema of gateway 'gw-guian-01' on the topic of 'gw-other'",
        "not a batch: not msgpack: 12 exceeds max_array_len(9)",
        "batch of gateway 'gw-guian-01' on the topic of 'gw-impostor'",
        "event is not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        'status is not an object with "state" (string)']), query(dsn, "SELECT error FROM quarantine")
    assert query(dsn, "SELECT payload FROM quarantine WHERE topic = %s", ("park/guian-ftz/gw-impostor/telemetry",)) \
        == [(good,)]  # kept byte for byte
    # a refusal by the database itself: only that batch is quarantined, the next one is stored
    gateway.publish(f"{BASE}/schema", nul_schema.to_json(), retain=True)
    gateway.publish(f"{BASE}/telemetry", nul)
    gateway.publish(f"{BASE}/telemetry", fine)
    assert wait_until(lambda: count(dsn, "batches") == 2, 20)
    assert query(dsn, "SELECT text FROM readings WHERE point = 'model_name'") == [("SUN2000",)]
    refused = query(dsn, "SELECT error FROM quarantine WHERE error LIKE 'database refused%'")
    assert len(refused) == 1 and "0x00" in refused[0][0]
    assert service.writer.outcomes["quarantined"] == 6
    # each one a warning naming the topic, the size and the reason, as stored
    logged = sorted((e["topic"], e["bytes"], e["error"]) for e in events if e["event"] == "quarantined")
    assert all(e["level"] == "warning" for e in events if e["event"] == "quarantined")
    assert logged == sorted(query(dsn, "SELECT topic, length(payload), error FROM quarantine"))
    # a gateway whose first message was quarantined is still registered by its first good one
    gateway.publish("park/guian-ftz/gw-other/schema", WireSchema("gw-other", nul_schema.devices).to_json())
    assert wait_until(lambda: count(dsn, "schemas") == 3, 20)
    assert query(dsn, "SELECT gateway, site FROM gateways ORDER BY gateway") == [
        ("gw-guian-01", "guian-ftz"), ("gw-other", "guian-ftz")]


def test_events_once_with_lost_spans_and_retained_status_and_schema(
        dsn: str, gateway: Gateway, start_ingest: Callable[..., Ingest]) -> None:
    """Retained schema and status published before the platform subscribes still arrive (they are
    on ordinary subscriptions: shared ones get no retained messages)."""
    payload, schema, _ = vector("basic")
    gateway.publish(f"{BASE}/schema", schema, retain=True)
    gateway.publish(f"{BASE}/status", b'{"state": "online", "version": "0.1.0"}', retain=True)
    start_ingest()
    assert wait_until(lambda: count(dsn, "gateway_status") == 1 and count(dsn, "schemas") == 1, 20)
    dropped = (b'{"event": "data_dropped", "ts": 1763700100000, "seqs": [3, 7], "batches": 5, "readings": 10000,'
               b' "from_ms": 1763690000000, "to_ms": 1763690050000, "dropped_total": 10000}')
    gateway.publish(f"{BASE}/events", dropped)
    gateway.publish(f"{BASE}/events", dropped)  # at least once: a repeat after a crash
    gateway.publish(f"{BASE}/telemetry", payload)  # stored without waiting: the schema came retained
    assert wait_until(lambda: count(dsn, "batches") == 1, 20)
    assert query(dsn, "SELECT kind, site, body->>'readings' FROM events") == [("data_dropped", "guian-ftz", "10000")]
    assert query(dsn, "SELECT kind, readings, seq_first, seq_last, extract(epoch FROM to_ts - from_ts)::int"
                      " FROM lost_spans") == [("buffer_evicted", 10000, 3, 7, 50)]
    assert query(dsn, "SELECT state FROM gateway_status") == [("online",)]
    assert count(dsn, "pending_batches") == 0
    gateway.publish(f"{BASE}/status", b'{"state": "offline"}', retain=True)
    assert wait_until(lambda: query(dsn, "SELECT state FROM gateway_status") == [("offline",)], 20)


def test_two_instances_share_the_telemetry_and_each_batch_is_stored_once(
        dsn: str, gateway: Gateway, start_ingest: Callable[..., Ingest]) -> None:
    """A shared subscription spreads batches over the group; both instances get the schema."""
    _, schema, _ = vector("basic")
    a, b = start_ingest(client_id="ingest-a"), start_ingest(client_id="ingest-b")
    gateway.publish(f"{BASE}/schema", schema, retain=True)
    assert wait_until(lambda: a.subscriber.received["schema"] == 1 and b.subscriber.received["schema"] == 1, 20)
    for seq in range(1, 41):
        gateway.publish(f"{BASE}/telemetry", batch(seq))
    assert wait_until(lambda: count(dsn, "batches") == 40, 30)
    assert a.writer.outcomes["stored"] + b.writer.outcomes["stored"] == 40
    assert a.writer.outcomes["stored"] > 0 and b.writer.outcomes["stored"] > 0
    assert count(dsn, "samples") == 40 * 6


def test_an_ack_from_an_earlier_connection_is_not_sent_and_the_message_comes_again(broker: Any) -> None:
    """Packet ids belong to a connection: after a reconnect the old id is not acknowledged
    (it might name another message now); the broker redelivers the unacknowledged message."""
    import queue

    from agent import log as logging_setup
    from ingest.subscriber import BrokerSettings, Delivery, Subscriber

    inbox: queue.Queue[Delivery] = queue.Queue()
    sub = Subscriber(BrokerSettings(port=broker.port, client_id="ingest-gen", keepalive=5), inbox.put,
                     logging_setup.get("test"))
    sub.start()
    gateway = Gateway(broker.port)
    try:
        assert wait_until(sub.subscribed.is_set, 10)
        gateway.publish(f"{BASE}/telemetry", b"first")
        first = inbox.get(timeout=10)
        broker.restart()  # the connection drops; the session (and the unacknowledged message) persist
        again = inbox.get(timeout=30)
        assert again.payload == b"first" and again.generation > first.generation
        assert sub.ack(first) is False
        assert sub.ack(again) is True
    finally:
        gateway.close()
        sub.stop()


def test_the_readings_view_has_the_columns_a_platform_queries(dsn: str) -> None:
    """Names and types are the contract of the view (a dashboard's SQL depends on them)."""
    migrated(dsn).close()
    columns = query(dsn, "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'readings'"
                         " ORDER BY ordinal_position")
    assert columns[:8] == [("gateway", "text"), ("device", "text"), ("point", "text"), ("unit", "text"),
                           ("ts", "timestamp with time zone"), ("value", "double precision"), ("text", "text"),
                           ("quality", "text")]
    assert sorted(r[0] for r in query(dsn, "SELECT name FROM qualities")) == sorted(
        ["ok", "timeout", "exception", "unavailable", "decode_error"])


def test_enums_and_text_points_have_no_numeric_value(dsn: str, gateway: Gateway,
                                                      start_ingest: Callable[..., Ingest]) -> None:
    """An enum's name and a text point's string are in `text`, `value` is NULL (not a number);
    the enum's code stays in `detail`."""
    payload, schema, _ = vector("qualities")
    start_ingest()
    gateway.publish(f"{BASE}/schema", schema, retain=True)
    gateway.publish(f"{BASE}/telemetry", payload)
    assert wait_until(lambda: count(dsn, "batches") == 1, 20)
    for view in ("readings", "latest_readings"):
        rows = query(dsn, f"SELECT point, value, text, quality, detail FROM {view} WHERE device = 'pv-roof-a'"
                          " ORDER BY point")
        assert rows == [("active_power", None, None, "unavailable", None), ("inverter_state", None, "on_grid", "ok", 512),
                        ("model_name", None, "SUN2000-50KTL", "ok", None)], view
