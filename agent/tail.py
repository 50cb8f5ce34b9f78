"""`edge-agent tail`: subscribe to a broker and print decoded readings live (the integrator's
"is my data arriving?" view). Schemas are learned from the retained `schema` topics, so any
gateway's telemetry can be decoded without its configuration."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from agent.codec import FormatError, WireSchema, decode, decode_header


def format_line(base: str, reading: Any, historical: bool) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(reading.ts / 1000)) + f".{reading.ts % 1000:03d}"
    value = "-" if reading.value is None else reading.value
    quality = "" if reading.quality == "ok" else f" [{reading.quality}{f' {reading.detail}' if reading.detail else ''}]"
    return (f"{stamp} {base.rsplit('/', 1)[-1]}/{reading.device} {reading.point}={value}"
            f"{(' ' + reading.unit) if reading.unit else ''}{quality}{' (historical)' if historical else ''}")


def tail(broker: str, topic: str, emit: Callable[[str], None], count: int | None = None,
         as_json: bool = False, timeout: float | None = None) -> int:
    """Print readings until `count` have been printed or `timeout` passes (None: forever)."""
    url = urlsplit(broker)
    messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    if url.scheme == "mqtts":
        client.tls_set()
    if url.username:
        client.username_pw_set(url.username, url.password)
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
    client.on_message = lambda c, u, m: messages.put(m)
    client.connect(url.hostname or "localhost", url.port or (8883 if url.scheme == "mqtts" else 1883), 30)
    client.loop_start()
    schemas: dict[str, WireSchema] = {}
    printed = 0
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while (count is None or printed < count) and (deadline is None or time.monotonic() < deadline):
            try:
                message = messages.get(timeout=0.2)
            except queue.Empty:
                continue
            base, _, leaf = message.topic.rpartition("/")
            if leaf == "schema":
                schemas[base] = WireSchema.from_json(message.payload)
            elif leaf == "telemetry":
                printed += _print_batch(base, message.payload, schemas.get(base), emit, as_json)
            elif leaf in ("status", "events") and message.payload:
                emit(f"{base.rsplit('/', 1)[-1]} {leaf}: {message.payload.decode(errors='replace')}")
    finally:
        client.loop_stop()
        client.disconnect()
    return printed


def _print_batch(base: str, payload: bytes, schema: WireSchema | None, emit: Callable[[str], None],
                 as_json: bool) -> int:
    if schema is None:
        emit(f"{base}: batch received before its schema (is the gateway's schema retained?)")
        return 0
    try:
        historical = bool(decode_header(payload)[0].flags & 1)
        readings = list(decode(payload, schema))
    except FormatError as exc:
        emit(f"{base}: undecodable batch: {exc}")
        return 0
    for reading in readings:
        emit(json.dumps({"gateway": base, **reading.as_dict()}) if as_json else format_line(base, reading, historical))
    return len(readings)
