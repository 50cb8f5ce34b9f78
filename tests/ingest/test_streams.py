"""Streams as real gateways produce them, through a real mosquitto into a real PostgreSQL: a config
reload that changes the schema while batches of both schemas are in flight, and a backlog that
arrives hours after its readings were taken."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from agent.codec import Batch, DeviceInfo, Group, Header, PointInfo, WireSchema, decode, encode, set_historical
from ingest.service import Ingest
from tests.ingest.conftest import BASE, Gateway, count, query, wait_until
from tests.ingest.test_ingest import stored_readings
from tests.vectors.generate import INVERTER, SCHEMA

EPOCH = 4242
HOUR_MS = 3_600_000

# the reloaded configuration: the meter's points in another order with one more, and a new device.
# Index 0 of device 0 is voltage_l1 in the old schema and energy_import in the new one, so a batch
# decoded with the wrong schema puts its values on the wrong points (and units).
METER_V2 = DeviceInfo("main-incomer", "eastron/sdm630", (
    PointInfo("energy_import", "kWh", "counter", 3),
    PointInfo("voltage_l1", "V", "gauge", 2),
    PointInfo("frequency", "Hz", "gauge", 2),
))
WATER = DeviceInfo("water-main", "xintai/water-meter", (PointInfo("volume_total", "m3", "counter", 3),))
SCHEMA_V2 = WireSchema("gw-guian-01", (METER_V2, WATER, INVERTER))


def old_batch(seq: int, t0: int, historical: bool = False) -> bytes:
    """Old schema: main-incomer voltage_l1, active_power, energy_import."""
    stamps = [t0, t0 + 1000]
    payload = encode(Batch(Header("gw-guian-01", EPOCH, seq, SCHEMA.id, t0), [
        (0, [Group([0, 1, 2], stamps, [[230.0 + seq, 230.5], [1000.0 + seq, 1001.0], [500.0 + seq, 500.5 + seq]])])]),
        SCHEMA)
    return set_historical(payload) if historical else payload


def new_batch(seq: int, t0: int) -> bytes:
    """New schema: main-incomer energy_import, voltage_l1, frequency; water-main volume_total."""
    stamps = [t0, t0 + 1000]
    return encode(Batch(Header("gw-guian-01", EPOCH, seq, SCHEMA_V2.id, t0), [
        (0, [Group([0, 1, 2], stamps, [[600.0 + seq, 600.25 + seq], [231.0, 231.5], [50.01, 49.99]])]),
        (1, [Group([0], stamps, [[12.345 + seq, 12.346 + seq]])])]), SCHEMA_V2)


def expected(*pairs: tuple[bytes, WireSchema]) -> list[dict[str, Any]]:
    """What the reference decoder makes of each batch with its own schema."""
    rows = [r.as_dict() for payload, schema in pairs for r in decode(payload, schema)]
    return sorted(rows, key=lambda r: (r["device"], r["point"], r["ts"]))


def test_a_schema_change_mid_stream_decodes_every_batch_with_its_own_schema(
        dsn: str, gateway: Gateway, start_ingest: Callable[..., Ingest]) -> None:
    t0 = 1_763_700_000_000
    start_ingest()
    gateway.publish(f"{BASE}/schema", SCHEMA.to_json(), retain=True)
    sent = [(old_batch(1, t0), SCHEMA)]
    gateway.publish(f"{BASE}/telemetry", sent[0][0])
    assert wait_until(lambda: count(dsn, "batches") == 1, 20)
    # the reload: the new schema replaces the retained one; a batch of the old schema still in the
    # agent's queue goes out between batches of the new one, then a backlog of the old schema
    gateway.publish(f"{BASE}/schema", SCHEMA_V2.to_json(), retain=True)
    sent += [(new_batch(3, t0 + 20_000), SCHEMA_V2), (old_batch(2, t0 + 10_000), SCHEMA),
             (new_batch(4, t0 + 30_000), SCHEMA_V2), (old_batch(0, t0 - HOUR_MS, historical=True), SCHEMA)]
    for payload, _ in sent[1:]:
        gateway.publish(f"{BASE}/telemetry", payload)
    assert wait_until(lambda: count(dsn, "batches") == 5, 20)
    assert count(dsn, "pending_batches") == 0 and count(dsn, "quarantine") == 0, query(dsn, "TABLE quarantine")
    assert stored_readings(dsn) == expected(*sent)
    assert query(dsn, "SELECT seq, schema_id, historical FROM batches ORDER BY seq") == [
        (0, SCHEMA.id, True), (1, SCHEMA.id, False), (2, SCHEMA.id, False), (3, SCHEMA_V2.id, False),
        (4, SCHEMA_V2.id, False)]
    assert query(dsn, "SELECT schema_id FROM schemas ORDER BY received_at") == [(SCHEMA.id,), (SCHEMA_V2.id,)]
    # the device list follows the newest schema; points of both schemas keep their units
    assert query(dsn, "SELECT device, profile, schema_id FROM devices ORDER BY device") == [
        ("main-incomer", "eastron/sdm630", SCHEMA_V2.id), ("pv-roof-a", "huawei/sun2000", SCHEMA_V2.id),
        ("water-main", "xintai/water-meter", SCHEMA_V2.id)]
    assert query(dsn, "SELECT point, unit, kind FROM series WHERE device = 'main-incomer' ORDER BY point") == [
        ("active_power", "W", "gauge"), ("energy_import", "kWh", "counter"), ("frequency", "Hz", "gauge"),
        ("voltage_l1", "V", "gauge")]


def test_a_backlog_hours_late_keeps_its_timestamps_and_is_flagged_historical(
        dsn: str, gateway: Gateway, start_ingest: Callable[..., Ingest]) -> None:
    """The gateway was cut off for hours: its live batch comes first, then its buffer drains. The
    backlog's rows carry the readings' own times (not the arrival), its batches are flagged
    historical, and it does not displace the live values as the latest."""
    now = int(time.time() * 1000) // 1000 * 1000
    live = old_batch(100, now)
    backlog = [old_batch(seq, now - 7 * HOUR_MS + seq * 60_000, historical=True) for seq in (40, 41, 42)]
    start_ingest()
    gateway.publish(f"{BASE}/schema", SCHEMA.to_json(), retain=True)
    gateway.publish(f"{BASE}/telemetry", live)
    for payload in backlog:
        gateway.publish(f"{BASE}/telemetry", payload)
    assert wait_until(lambda: count(dsn, "batches") == 4, 20)
    assert stored_readings(dsn) == expected(*((p, SCHEMA) for p in [live, *backlog]))
    rows = query(dsn, "SELECT seq, historical, (extract(epoch FROM t0) * 1000)::bigint,"
                      " received_at - t0 > interval '6 hours' FROM batches ORDER BY seq")
    assert rows == [(40, True, now - 7 * HOUR_MS + 40 * 60_000, True), (41, True, now - 7 * HOUR_MS + 41 * 60_000, True),
                    (42, True, now - 7 * HOUR_MS + 42 * 60_000, True), (100, False, now, False)]
    # the backlog's 18 readings lie 6 to 7 hours back (when they were taken), none near their arrival
    spans = query(dsn, "SELECT count(*) FILTER (WHERE ts >= to_timestamp(%s / 1000.0) AND ts < to_timestamp(%s / 1000.0)),"
                       " count(*) FROM readings", (now - 7 * HOUR_MS, now - 6 * HOUR_MS))
    assert spans == [(18, 24)]
    latest = query(dsn, "SELECT point, (extract(epoch FROM ts) * 1000)::bigint FROM latest_readings ORDER BY point")
    assert latest == [("active_power", now + 1000), ("energy_import", now + 1000), ("voltage_l1", now + 1000)]
