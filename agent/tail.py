"""`edge-agent tail`: subscribe to a broker and print decoded readings live (the integrator's
"is my data arriving?" view). Schemas are learned from the retained `schema` topics, so any
gateway's telemetry can be decoded without its configuration."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable
from typing import Any

from agent.codec import FormatError, SchemaAssembler, WireSchema, decode, decode_header, schema_topic
from agent.mqtt import Endpoint, Message, Subscriber


def format_line(base: str, reading: Any, historical: bool) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(reading.ts / 1000)) + f".{reading.ts % 1000:03d}"
    value = "-" if reading.value is None else reading.value
    quality = "" if reading.quality == "ok" else f" [{reading.quality}{f' {reading.detail}' if reading.detail else ''}]"
    return (f"{stamp} {base.rsplit('/', 1)[-1]}/{reading.device} {reading.point}={value}"
            f"{(' ' + reading.unit) if reading.unit else ''}{quality}{' (historical)' if historical else ''}")


def tail(broker: str, topic: str, emit: Callable[[str], None], count: int | None = None,
         as_json: bool = False, timeout: float | None = None) -> int:
    """Print readings until `count` have been printed or `timeout` passes (None: forever)."""
    messages: queue.Queue[Message] = queue.Queue()
    subscriber = Subscriber(Endpoint.from_url(broker), topic, messages.put)
    schemas: dict[str, WireSchema] = {}
    parts: dict[str, SchemaAssembler] = {}
    printed = 0
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while (count is None or printed < count) and (deadline is None or time.monotonic() < deadline):
            try:
                message = messages.get(timeout=0.2 if deadline is None else max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                continue
            base, _, leaf = message.topic.rpartition("/")
            if (where := schema_topic(message.topic)) is not None:
                text = parts.setdefault(where[0], SchemaAssembler()).add(where[1], bytes(message.payload))
                if text is not None:
                    schemas[where[0]] = WireSchema.from_json(text)
            elif leaf == "telemetry":
                printed += _print_batch(base, bytes(message.payload), schemas.get(base), emit, as_json)
            elif leaf in ("status", "events") and message.payload:
                emit(f"{base.rsplit('/', 1)[-1]} {leaf}: {message.payload.decode(errors='replace')}")
    finally:
        subscriber.close()
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
