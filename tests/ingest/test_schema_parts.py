"""A schema too large for the broker's packets arrives in parts (docs/payload.md): ingest keeps the
parts in PostgreSQL until all are there, joins them, checks the id and decodes the batches that
waited for it. End to end through a mosquitto with `max_packet_size 400` and the agent's publisher."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.codec import schema_messages
from agent.publisher import Publisher
from ingest.service import Ingest
from testkit.broker import Broker
from tests.ingest.conftest import BASE, Gateway, count, query, vector, wait_until
from tests.mqtt.harness import fleet_schema, open_spool, settings, status
from tests.mqtt.test_packet_limit import fleet_batch

LIMIT = 400


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """The broker of these tests refuses packets over 400 bytes."""
    b = Broker(tmp_path, extra=(f"max_packet_size {LIMIT}",)).start()
    yield b
    b.stop()


def test_a_50_meter_gateway_through_a_400_byte_broker_lands_in_postgresql(
        dsn: str, broker: Broker, tmp_path: Path, start_ingest: Callable[..., Ingest]) -> None:
    start_ingest()
    schema = fleet_schema(50, gateway="gw-guian-01")

    async def publish() -> tuple[int, int]:
        ring, spool = open_spool(tmp_path / "buf")
        pub = Publisher(settings(broker.port, base_topic=BASE, client_id="gw-guian-01"), spool, status,
                        schema.to_json())
        task = asyncio.create_task(pub.run())
        readings = 0
        for row in range(4):
            batch = fleet_batch(ring, schema, row)
            readings += batch.readings
            spool.add(batch)
            pub.nudge()
        await asyncio.to_thread(wait_until, lambda: count(dsn, "samples") >= readings, 60)
        await pub.stop()
        task.cancel()
        ring.close()
        return readings, pub.stats.acked

    readings, acked = asyncio.run(publish())
    assert query(dsn, "SELECT schema_id FROM schemas") == [(schema.id,)]
    assert count(dsn, "samples") == readings
    assert count(dsn, "batches") == acked > 4  # the batches were split to fit, every part stored
    assert count(dsn, "schema_parts") == 0 and count(dsn, "pending_batches") == 0 and count(dsn, "quarantine") == 0


def test_parts_in_any_order_after_the_batch_are_joined_once(dsn: str, gateway: Gateway,
                                                            start_ingest: Callable[..., Ingest]) -> None:
    payload, schema_json, expected = vector("qualities")
    start_ingest()
    gateway.publish(f"{BASE}/telemetry", payload)
    assert wait_until(lambda: count(dsn, "pending_batches") == 1, 20)
    *parts, (index_topic, index) = schema_messages(schema_json, f"{BASE}/schema", lambda t: 150 - len(t))
    assert len(parts) >= 3
    gateway.publish(index_topic, index, retain=True)  # the index first, the parts backwards
    for topic, part in reversed(parts[1:]):
        gateway.publish(topic, part, retain=True)
    assert wait_until(lambda: count(dsn, "schema_parts") == len(parts) - 1, 20)
    assert count(dsn, "batches") == 0
    gateway.publish(*parts[0], retain=True)
    assert wait_until(lambda: count(dsn, "batches") == 1, 20)
    gateway.publish(*parts[1], retain=True)  # a repeat after the join: not kept again
    gateway.publish(f"{BASE}/status", json.dumps({"state": "online"}), retain=True)
    assert wait_until(lambda: count(dsn, "gateway_status") == 1, 20)
    assert count(dsn, "schema_parts") == 0 and count(dsn, "pending_batches") == 0 and count(dsn, "quarantine") == 0
    assert count(dsn, "samples") == len(expected["readings"])
