"""Delivery helpers shared by tests/mqtt and bench: broker settings for a local mosquitto, a Publisher
over a spool, and an awaitable poll for a condition."""

from __future__ import annotations

import asyncio
from typing import Any

from agent.buffer import Spool
from agent.codec import WireSchema
from agent.publisher import BrokerSettings, Publisher

BASE = "park/test-site/gw-test"


def settings(port: int, **overrides: Any) -> BrokerSettings:
    values: dict[str, Any] = {"host": "127.0.0.1", "port": port, "tls": False, "client_id": "gw-test",
                              "base_topic": BASE, "backoff_min": 0.2, "backoff_max": 1.0, "window": 10}
    values.update(overrides)
    return BrokerSettings(**values)


def publisher(port: int, spool: Spool, schema: WireSchema, **overrides: Any) -> Publisher:
    """The real Publisher for gateway gw-test, announcing `schema` (its retained status names it)."""
    def status() -> dict[str, Any]:
        return {"version": "test", "config_hash": "0" * 8, "schema_id": schema.id, "devices": ["main-incomer"]}

    return Publisher(settings(port, **overrides), spool, status, schema.to_json())


async def wait_for(predicate: Any, timeout: float, step: float = 0.05) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step)
    return bool(predicate())
