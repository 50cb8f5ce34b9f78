"""A broker with a small packet limit (mosquitto `max_packet_size 400`) and a gateway of 50 meters
whose schema is ~70 KB: the schema goes out in parts, batches are cut to fit, every reading arrives
and decodes with the schema joined again. MQTT 5 (the limit announced in CONNACK) and MQTT 3.1.1
(no announcement: `mqtt.max_packet_size`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.buffer import Ring, SealedBatch
from agent.codec import Batch, Group, Header, WireSchema, encode, schema_messages
from agent.publisher import Publisher
from testkit.broker import Broker
from testkit.platform import Platform
from tests.ingest.conftest import Gateway, wait_until
from tests.mqtt.harness import BASE, Subscriber, fleet_schema, open_spool, settings, status, wait_for

LIMIT = 400
DEVICES = 50


def fleet_batch(ring: Ring, schema: WireSchema, row: int, devices: int = 5) -> SealedBatch:
    """Three rows of every point of `devices` meters: about 1.5 KB, so it must be split too."""
    seq = ring.allocate_seq()
    t0 = 1_763_700_000_000 + row * 10_000
    stamps = [t0 + 1000 * r for r in range(3)]
    groups = []
    for device in range(devices):
        points = list(range(len(schema.devices[device].points)))
        columns = [[100.0 + p + r / 10 + device for r in range(3)] for p in points]
        groups.append((device, [Group(points, stamps, columns)]))
    batch = Batch(Header(schema.gateway, ring.epoch, seq, schema.id, t0), groups)
    return SealedBatch(seq, encode(batch, schema), batch.readings, stamps[0], stamps[-1])


def fleet_status() -> dict[str, object]:
    return {**status(), "devices": [f"meter-{i:03d}" for i in range(DEVICES)]}


def deliver(broker: Broker, tmp_path: Path, batches: int, **overrides: object) -> tuple[Subscriber, Publisher, int]:
    """Publish `batches` fleet batches through a publisher and return what the platform got."""
    schema = fleet_schema(DEVICES)
    sub = Subscriber(broker.port)

    async def scenario() -> tuple[Publisher, int]:
        ring, spool = open_spool(tmp_path / "buf")
        pub = Publisher(settings(broker.port, **overrides), spool, fleet_status, schema.to_json())
        task = asyncio.create_task(pub.run())
        pub.publish_json("metrics", {"devices": {f"meter-{i:03d}": {"polls": i} for i in range(DEVICES)}})
        expected = 0
        for row in range(batches):
            batch = fleet_batch(ring, schema, row)
            expected += batch.readings
            spool.add(batch)
            pub.nudge()
        await wait_for(lambda: len(sub.readings(schema)) >= expected, 30)
        await pub.stop()
        task.cancel()
        ring.close()
        return pub, expected

    pub, expected = asyncio.run(scenario())
    sub.close()
    return sub, pub, expected


@pytest.mark.parametrize("protocol", ["mqtt5", "mqtt311", "mqtt5-compressed"])
def test_a_400_byte_packet_limit_delivers_every_reading_and_the_schema(tmp_path: Path, protocol: str) -> None:
    data = tmp_path / "broker-data"
    data.mkdir()
    broker = Broker(data, extra=(f"max_packet_size {LIMIT}",)).start()
    try:
        overrides = {"mqtt5": {}, "mqtt311": {"mqtt5": False, "max_packet_size": LIMIT},
                     "mqtt5-compressed": {"compress": True}}[protocol]
        sub, pub, expected = deliver(broker, tmp_path, 5, **overrides)
    finally:
        broker.stop()
    schema = fleet_schema(DEVICES)
    assert sub.schema == schema.to_json()  # joined from its parts
    assert len(sub.readings(schema)) == expected  # every reading, decoded with that schema
    assert all(len(p) <= LIMIT for p in sub.payloads)
    assert pub.stats.connects == 1  # never dropped by the broker for an oversize packet
    assert pub.stats.protocol == ("MQTT 3.1.1" if protocol == "mqtt311" else "MQTT 5")
    assert sub.status[0]["devices_omitted"] == DEVICES and "devices" not in sub.status[0]  # the rest of it fits
    assert not sub.metrics and pub.stats.too_large == 1  # not sent (it would cost the session), logged


def test_a_shorter_schema_clears_the_parts_it_no_longer_has(tmp_path: Path) -> None:
    data = tmp_path / "broker-data"
    data.mkdir()
    broker = Broker(data, extra=(f"max_packet_size {LIMIT}",)).start()
    big, small = fleet_schema(DEVICES), fleet_schema(10)
    try:
        sub = Subscriber(broker.port)

        async def scenario() -> None:
            ring, spool = open_spool(tmp_path / "buf")
            pub = Publisher(settings(broker.port), spool, status, big.to_json())
            task = asyncio.create_task(pub.run())
            assert await wait_for(lambda: sub.schema == big.to_json(), 20)
            pub.set_schema(small.to_json())  # a reload with fewer devices
            assert await wait_for(lambda: sub.schema == small.to_json(), 20)
            await pub.stop()
            task.cancel()
            ring.close()

        asyncio.run(scenario())
        sub.close()
        late = Platform(broker.port, f"{BASE}/schema/#", "late-platform")  # what a platform starting now gets
        marker = Gateway(broker.port, "marker")
        try:
            marker.publish(f"{BASE}/schema/999999", "{}")  # arrives after every retained message sent at subscription
            assert wait_until(lambda: 999999 in late._schema_parts.parts, 10)
            with late.lock:
                retained_parts = len(late._schema_parts.parts) - 1
            assert late.schema == small.to_json()
        finally:
            marker.close()
            late.close()
    finally:
        broker.stop()
    parts = len(schema_messages(small.to_json(), f"{BASE}/schema", lambda t: LIMIT - 16 - len(t))) - 1
    assert retained_parts == parts < len(schema_messages(big.to_json(), f"{BASE}/schema", lambda t: LIMIT - 16 - len(t)))
