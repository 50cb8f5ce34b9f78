"""Test harness for delivery: a producer of real batches into a real buffer, the Publisher, and an
independent subscriber (its own paho client with a persistent session) that decodes what arrives."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.buffer import Ring, SealedBatch, Spool
from agent.codec import Batch, Group, Header, decode, decode_header, encode
from agent.publisher import BrokerSettings, Publisher
from tests.vectors.generate import SCHEMA

BASE = "park/test-site/gw-test"


def make_batch(ring: Ring, row: int, readings: int = 3) -> SealedBatch:
    """A real encoded batch: the meter of the golden schema, `readings` rows of three points."""
    seq = ring.allocate_seq()
    t0 = 1_763_700_000_000 + row * 1000
    stamps = [t0 + i * 100 for i in range(readings)]
    group = Group([0, 1, 2], stamps, [[230.0 + i / 10 for i in range(readings)], [8600.0] * readings,
                                      [12345.0 + row + i / 1000 for i in range(readings)]])
    batch = Batch(Header("gw-test", ring.epoch, seq, SCHEMA.id, t0), [(0, [group])])
    return SealedBatch(seq, encode(batch, SCHEMA), 3 * readings, stamps[0], stamps[-1])


def settings(port: int, **overrides: Any) -> BrokerSettings:
    values: dict[str, Any] = {"host": "127.0.0.1", "port": port, "tls": False, "client_id": "gw-test",
                              "base_topic": BASE, "backoff_min": 0.2, "backoff_max": 1.0, "window": 10}
    values.update(overrides)
    return BrokerSettings(**values)


class Subscriber:
    """Collects telemetry seqs (with duplicates), status and events; persistent session, QoS 1."""

    def __init__(self, port: int, client_id: str = "platform", **tls: Any) -> None:
        self.seqs: list[int] = []
        self.payloads: list[bytes] = []
        self.status: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.schema: str | None = None
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5)
        if tls:
            self.client.tls_set(**tls)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{BASE}/#", qos=1)
        self.client.reconnect_delay_set(0.1, 0.5)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, keepalive=5, clean_start=False, properties=props)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            leaf = message.topic.rsplit("/", 1)[-1]
            if leaf == "telemetry":
                self.payloads.append(message.payload)
                self.seqs.append(decode_header(message.payload)[0].seq)
            elif leaf == "status":
                self.status.append(json.loads(message.payload))
            elif leaf == "events":
                self.events.append(json.loads(message.payload))
            elif leaf == "schema":
                self.schema = message.payload.decode()

    def duplicates(self) -> int:
        with self.lock:
            return sum(n - 1 for n in Counter(self.seqs).values())

    def readings(self) -> list[Any]:
        with self.lock:
            return [r for p in self.payloads for r in decode(p, SCHEMA)]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def wait_for(predicate: Any, timeout: float, step: float = 0.05) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step)
    return bool(predicate())


def open_spool(directory: Path) -> tuple[Ring, Spool]:
    ring = Ring.open(directory, max_bytes=1 << 30, min_free_bytes=0)
    return ring, Spool(ring, spill_after=2.0, outage_commit=0.5)


def status() -> dict[str, Any]:
    return {"version": "test", "config_hash": "0" * 8, "schema_id": SCHEMA.id, "devices": ["main-incomer"]}


def publisher(port: int, spool: Spool, **overrides: Any) -> Publisher:
    return Publisher(settings(port, **overrides), spool, status, SCHEMA.to_json())
