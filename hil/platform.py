"""The platform's side, for tests and the HIL harness: a subscriber with a persistent session
(QoS 1, so nothing published while it is connected is missed) that keeps every telemetry payload
with its arrival time, the retained schema and status, and the events."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.codec import DecodedReading, Header, WireSchema, decode, decode_header


class Platform:
    def __init__(self, port: int, topic: str = "park/#", client_id: str = "platform", **tls: Any) -> None:
        self.arrivals: list[tuple[float, bytes]] = []
        self.status: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.metrics: list[dict[str, Any]] = []
        self.schema: str | None = None
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5)
        if tls:
            self.client.tls_set(**tls)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.reconnect_delay_set(0.1, 0.5)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, keepalive=5, clean_start=False, properties=props)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        leaf = message.topic.rsplit("/", 1)[-1]
        with self.lock:
            if leaf == "telemetry":
                self.arrivals.append((time.time(), message.payload))
            elif leaf == "status" and message.payload:
                self.status.append(json.loads(message.payload))
            elif leaf == "events":
                self.events.append(json.loads(message.payload))
            elif leaf == "metrics":
                self.metrics.append(json.loads(message.payload))
            elif leaf == "schema":
                self.schema = message.payload.decode()

    @property
    def payloads(self) -> list[bytes]:
        with self.lock:
            return [p for _, p in self.arrivals]

    @property
    def seqs(self) -> list[int]:
        return [decode_header(p)[0].seq for p in self.payloads]

    def duplicates(self) -> int:
        return sum(n - 1 for n in Counter(self.seqs).values())

    def batches(self, schema: WireSchema | None = None) -> list[tuple[float, Header, list[DecodedReading]]]:
        """(arrival time, header, readings) of every batch received, decoded with the retained schema."""
        schema = schema or (WireSchema.from_json(self.schema) if self.schema else None)
        if schema is None:
            return []
        with self.lock:
            arrivals = list(self.arrivals)
        return [(at, decode_header(p)[0], list(decode(p, schema))) for at, p in arrivals]

    def readings(self, schema: WireSchema | None = None) -> list[DecodedReading]:
        return [r for _, _, rs in self.batches(schema) for r in rs]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
