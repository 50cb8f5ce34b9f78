"""Real peers for the ingest tests: one private PostgreSQL cluster per test session (a fresh
database per test), a mosquitto per test, the ingest service in-process, and a publisher that
sends what a gateway sends."""

from __future__ import annotations

import io
import itertools
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
import structlog
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from agent import log as logging_setup
from agent.codec import Batch, Group, Header, encode
from ingest.devcluster import DevCluster
from ingest.service import Ingest, IngestSettings
from ingest.store import Store
from ingest.subscriber import BrokerSettings
from testkit.broker import Broker
from tests.vectors.generate import SCHEMA

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
BASE = "park/guian-ftz/gw-guian-01"
_db_numbers = itertools.count()


@pytest.fixture(scope="session")
def cluster() -> Iterator[DevCluster]:
    with DevCluster() as pg:
        yield pg


@pytest.fixture
def dsn(cluster: DevCluster) -> str:
    """A fresh, empty database in the session's cluster."""
    name = f"t{next(_db_numbers)}_{int(time.time() * 1000) % 1_000_000}"
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return cluster.dsn(name)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path).start()
    yield b
    b.stop()


def ingest_settings(dsn: str, port: int, **broker: Any) -> IngestSettings:
    values: dict[str, Any] = {"port": port, "client_id": "ingest-test", "keepalive": 5, **broker}
    return IngestSettings(dsn=dsn, broker=BrokerSettings(**values), backoff=(0.1, 0.5))


@pytest.fixture
def start_ingest(dsn: str, broker: Broker) -> Iterator[Callable[..., Ingest]]:
    logging_setup.configure(json_lines=True)
    started: list[Ingest] = []

    def start(log: Any = None, **broker_overrides: Any) -> Ingest:
        service = Ingest(ingest_settings(dsn, broker.port, **broker_overrides), log=log).start()
        started.append(service)
        assert wait_until(service.subscriber.subscribed.is_set, 10) and wait_until(service.writer.db_up.is_set, 20)
        return service

    yield start
    for service in started:
        service.stop()


class Gateway:
    """Publishes like a gateway: QoS 1, the schema retained; waits for each PUBACK."""

    def __init__(self, port: int, client_id: str = "gw-guian-01") -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5)
        self.client.connect("127.0.0.1", port, 10)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)
        assert info.is_published()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def gateway(broker: Broker) -> Iterator[Gateway]:
    g = Gateway(broker.port)
    yield g
    g.close()


def recording_log() -> tuple[Any, list[dict[str, Any]]]:
    """A real structlog logger whose lines are kept in a list instead of printed: for tests of
    what the ingest reports (an operator's only view of a quarantine or an outage)."""
    events: list[dict[str, Any]] = []

    def record(_logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
        events.append({**event, "level": method})
        raise structlog.DropEvent

    return structlog.wrap_logger(structlog.PrintLogger(io.StringIO()), processors=[record]), events


def wait_until(predicate: Callable[[], Any], timeout: float, step: float = 0.05) -> bool:
    """A bounded wait: True as soon as `predicate()` holds, False at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def query(dsn: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def count(dsn: str, table: str) -> int:
    return int(query(dsn, f"SELECT count(*) FROM {table}")[0][0])


def vector(name: str) -> tuple[bytes, str, dict[str, Any]]:
    return ((VECTORS / f"{name}.msgpack").read_bytes(), (VECTORS / f"{name}.schema.json").read_text(),
            json.loads((VECTORS / f"{name}.json").read_text()))


def migrated(dsn: str) -> Store:
    store = Store(dsn, logging_setup.get("test"))
    store.connect()
    return store


def batch(seq: int, epoch: int = 77) -> bytes:
    """A real batch of the golden schema's meter: two rows of three points (6 readings)."""
    t0 = 1_763_700_000_000 + seq * 10_000
    stamps = [t0, t0 + 1000]
    return encode(Batch(Header("gw-guian-01", epoch, seq, SCHEMA.id, t0),
                        [(0, [Group([0, 1, 2], stamps, [[230.0, 230.1], [1000.0, 1001.0], [10.0 + seq, 10.5 + seq]])])]),
                  SCHEMA)
