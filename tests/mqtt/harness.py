"""Test harness for delivery: a producer of real batches into a real buffer, the Publisher, and an
independent subscriber (its own paho client with a persistent session) that decodes what arrives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.buffer import Ring, SealedBatch, Spool, Store
from agent.codec import Batch, Group, Header, encode
from agent.publisher import Publisher
from testkit import mqtt as testkit_mqtt
from testkit.mqtt import BASE, settings, wait_for
from testkit.platform import Platform
from tests.vectors.generate import SCHEMA

__all__ = ["BASE", "Subscriber", "make_batch", "open_spool", "publisher", "settings", "status", "wait_for"]


def make_batch(ring: Ring, row: int, readings: int = 3) -> SealedBatch:
    """A real encoded batch: the meter of the golden schema, `readings` rows of three points."""
    seq = ring.allocate_seq()
    t0 = 1_763_700_000_000 + row * 1000
    stamps = [t0 + i * 100 for i in range(readings)]
    group = Group([0, 1, 2], stamps, [[230.0 + i / 10 for i in range(readings)], [8600.0] * readings,
                                      [12345.0 + row + i / 1000 for i in range(readings)]])
    batch = Batch(Header("gw-test", ring.epoch, seq, SCHEMA.id, t0), [(0, [group])])
    return SealedBatch(seq, encode(batch, SCHEMA), 3 * readings, stamps[0], stamps[-1])


class Subscriber(Platform):
    """The platform, subscribed to this harness's gateway, decoding with the golden schema."""

    def __init__(self, port: int, client_id: str = "platform", **tls: Any) -> None:
        super().__init__(port, f"{BASE}/#", client_id, **tls)

    def readings(self, schema: Any = None) -> list[Any]:
        return super().readings(schema or SCHEMA)


def open_spool(directory: Path, max_bytes: int = 1 << 30) -> tuple[Ring, Spool]:
    ring = Store(directory, max_bytes=max_bytes, min_free_bytes=0)
    return ring, Spool(ring, spill_after=2.0, outage_commit=0.5)


def status() -> dict[str, Any]:
    """A retained status like the daemon's, for tests that build a Publisher themselves."""
    return {"version": "test", "config_hash": "0" * 8, "schema_id": SCHEMA.id, "devices": ["main-incomer"]}


def publisher(port: int, spool: Spool, **overrides: Any) -> Publisher:
    return testkit_mqtt.publisher(port, spool, SCHEMA, **overrides)


def fleet_schema(devices: int, gateway: str = "gw-test", profile: str = "eastron/sdm630") -> Any:
    """The wire schema of `devices` meters of one real profile (as `edge-agent run` builds it):
    50 SDM630s make a schema of about 70 KB."""
    from agent.codec import DeviceInfo, WireSchema
    from agent.config import ProfileLibrary
    from agent.wire import point_info

    loaded = ProfileLibrary().load(profile)
    models = loaded.model.points
    points = tuple(point_info(spec, models[name].resolution) for name, spec in loaded.points.items() if not spec.hidden)
    return WireSchema(gateway, tuple(DeviceInfo(f"meter-{i:03d}", loaded.ref, points) for i in range(devices)))


def recording_log() -> tuple[Any, list[dict[str, Any]]]:
    """A real structlog logger whose lines are kept in a list (what the operator would read)."""
    import io

    import structlog

    lines: list[dict[str, Any]] = []

    def record(_logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
        lines.append({**event, "level": method})
        raise structlog.DropEvent

    return structlog.wrap_logger(structlog.PrintLogger(io.StringIO()), processors=[record]), lines
