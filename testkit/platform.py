"""The platform's side, for tests and the HIL harness: a subscriber with a persistent session
(QoS 1, so nothing published while it is connected is missed; the constructor returns once the
broker has acknowledged the subscription) that keeps every telemetry payload
with its arrival time, the retained schema and status, and the events."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

from agent.codec import DecodedReading, Header, SchemaAssembler, WireSchema, decode, decode_header, schema_topic
from agent.mqtt import Endpoint, Message, Subscriber


class Platform:
    def __init__(self, port: int, topic: str = "park/#", client_id: str = "platform", **tls: Any) -> None:
        self.arrivals: list[tuple[float, bytes]] = []
        self.status: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.metrics: list[dict[str, Any]] = []
        self.schema: str | None = None
        self._schema_parts = SchemaAssembler()  # the schema may come in parts (a broker's small packet limit)
        self.lock = threading.Lock()
        endpoint = Endpoint("127.0.0.1", port, client_id=client_id, keepalive=5)
        self.subscriber = Subscriber(endpoint, topic, self._on_message, session_expiry=3600, tls_options=tls or None)
        if not self.subscriber.wait_subscribed(15):  # a handshake: nothing published from now on is missed
            raise TimeoutError(f"the platform's subscription to {topic} was not acknowledged")

    def _on_message(self, message: Message) -> None:
        leaf = message.topic.rsplit("/", 1)[-1]
        with self.lock:
            if leaf == "telemetry":
                self.arrivals.append((time.time(), bytes(message.payload)))
            elif leaf == "status" and message.payload:
                self.status.append(json.loads(message.payload))
            elif leaf == "events":
                self.events.append(json.loads(message.payload))
            elif leaf == "metrics":
                self.metrics.append(json.loads(message.payload))
            elif (where := schema_topic(message.topic)) is not None:
                text = self._schema_parts.add(where[1], bytes(message.payload))
                if text is not None:
                    self.schema = text

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
        self.subscriber.close()
