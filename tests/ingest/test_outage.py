"""Nothing is lost when the database goes away or the ingest process dies: messages are
acknowledged only after their commit, the broker keeps the rest in our persistent session."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agent import log as logging_setup
from ingest.devcluster import DevCluster
from ingest.service import Ingest
from testkit.broker import Broker
from tests.ingest.conftest import BASE, Gateway, batch, count, ingest_settings, recording_log, vector, wait_until

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def own_cluster() -> Iterator[DevCluster]:
    """A cluster of this test's own: it is stopped and started."""
    with DevCluster() as pg:
        yield pg


def test_database_outage_acknowledges_nothing_and_loses_nothing(own_cluster: DevCluster, broker: Broker,
                                                                gateway: Gateway) -> None:
    """The database stops with batches in flight; the ingest retries without acknowledging.
    Then it is stopped too (as if it crashed) before the database returns: a new instance with
    the same client id must get every one of those batches again from the broker."""
    logging_setup.configure(json_lines=True)
    dsn = own_cluster.dsn()
    _, schema, _ = vector("basic")
    first = Ingest(ingest_settings(dsn, broker.port)).start()
    try:
        assert wait_until(first.writer.db_up.is_set, 20) and wait_until(first.subscriber.subscribed.is_set, 10)
        gateway.publish(f"{BASE}/schema", schema, retain=True)
        gateway.publish(f"{BASE}/telemetry", batch(1))
        assert wait_until(lambda: count(dsn, "batches") == 1, 20)
        own_cluster.stop()
        for seq in range(2, 12):
            gateway.publish(f"{BASE}/telemetry", batch(seq))
        assert wait_until(lambda: first.writer.db_failures >= 2, 30)  # it noticed, and retried
        assert wait_until(lambda: first.subscriber.received["telemetry"] == 11, 10)  # all arrived, none stored
    finally:
        first.stop()  # unacknowledged batches stay in the broker's session
    own_cluster.start()
    second = Ingest(ingest_settings(dsn, broker.port)).start()
    try:
        assert wait_until(lambda: count(dsn, "batches") == 11, 30), count(dsn, "batches")
        assert count(dsn, "samples") == 11 * 6
    finally:
        second.stop()


def test_the_ingest_recovers_when_the_database_returns(own_cluster: DevCluster, broker: Broker,
                                                       gateway: Gateway) -> None:
    logging_setup.configure(json_lines=True)
    dsn = own_cluster.dsn()
    _, schema, _ = vector("basic")
    service = Ingest(ingest_settings(dsn, broker.port)).start()
    try:
        assert wait_until(service.writer.db_up.is_set, 20) and wait_until(service.subscriber.subscribed.is_set, 10)
        gateway.publish(f"{BASE}/schema", schema, retain=True)
        own_cluster.stop("immediate")  # like a crash of the database server
        for seq in range(1, 6):
            gateway.publish(f"{BASE}/telemetry", batch(seq))
        assert wait_until(lambda: service.writer.db_failures >= 1, 30)
        own_cluster.start()
        assert wait_until(lambda: count(dsn, "batches") == 5, 60)
        assert count(dsn, "samples") == 30 and service.writer.db_up.is_set()
    finally:
        service.stop()


def test_kill_9_of_the_ingest_process_loses_and_repeats_nothing(dsn: str, broker: Broker, gateway: Gateway) -> None:
    """`edge-agent ingest` as a real process, killed with SIGKILL while the first half of the
    batches streams in; the second half is published while it is dead; started again, every
    batch is stored exactly once."""
    _, schema, _ = vector("basic")
    gateway.publish(f"{BASE}/schema", schema, retain=True)
    command = [str(Path(sys.executable).parent / "edge-agent"), "ingest", "--broker", f"mqtt://127.0.0.1:{broker.port}",
               "--db", dsn, "--client-id", "ingest-crash", "--chunk", "5"]
    total = 150
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    try:
        assert wait_until(lambda: _table_exists(dsn) and count(dsn, "schemas") == 1, 30)
        publisher = threading.Thread(target=lambda: [gateway.publish(f"{BASE}/telemetry", batch(seq))
                                                     for seq in range(1, total // 2 + 1)])
        publisher.start()
        assert wait_until(lambda: count(dsn, "batches") >= 10, 30)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        publisher.join(60)
        for seq in range(total // 2 + 1, total + 1):
            gateway.publish(f"{BASE}/telemetry", batch(seq))
        assert count(dsn, "batches") <= total // 2
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
        assert wait_until(lambda: count(dsn, "batches") == total, 60), count(dsn, "batches")
        assert count(dsn, "samples") == total * 6
        assert count(dsn, "quarantine") == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def _table_exists(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            return conn.execute("SELECT to_regclass('schemas') IS NOT NULL").fetchone()[0]  # type: ignore[index]
    except psycopg.Error:
        return False


def test_broker_restart_with_batches_sent_before_the_ingest_is_back(dsn: str, broker: Broker,
                                                                    start_ingest: Any) -> None:
    """The broker restarts (keeping its persistence); a gateway reconnects and publishes before
    the ingest has reconnected. With ordinary subscriptions the broker queues them in the
    ingest's session; nothing is lost. (Shared subscriptions on mosquitto 2.0.11 lose exactly
    these: docs/platform.md.)"""
    _, schema, _ = vector("basic")
    service = start_ingest(shared=False)
    first = Gateway(broker.port, "gw-first")
    first.publish(f"{BASE}/schema", schema, retain=True)
    first.publish(f"{BASE}/telemetry", batch(1))
    first.close()
    assert wait_until(lambda: count(dsn, "batches") == 1, 20)
    service.subscriber.client.reconnect_delay_set(3, 5)  # the gateway is back seconds before us
    broker.restart()
    again = Gateway(broker.port, "gw-again")
    try:
        for seq in range(2, 7):
            again.publish(f"{BASE}/telemetry", batch(seq))
        assert wait_until(lambda: count(dsn, "batches") == 6, 30), count(dsn, "batches")
    finally:
        again.close()


def test_while_the_database_is_away_the_broker_holds_all_but_receive_maximum(own_cluster: DevCluster, broker: Broker,
                                                                             gateway: Gateway) -> None:
    """Back-pressure: with nothing acknowledged, the broker sends at most ReceiveMaximum
    messages; the rest wait in the session (not in the ingest's memory) and come when the
    database is back."""
    logging_setup.configure(json_lines=True)
    dsn = own_cluster.dsn()
    _, schema, _ = vector("basic")
    service = Ingest(ingest_settings(dsn, broker.port, receive_maximum=3)).start()
    try:
        assert wait_until(service.writer.db_up.is_set, 20) and wait_until(service.subscriber.subscribed.is_set, 10)
        gateway.publish(f"{BASE}/schema", schema, retain=True)
        assert wait_until(lambda: count(dsn, "schemas") == 1, 20)
        own_cluster.stop()
        for seq in range(1, 11):
            gateway.publish(f"{BASE}/telemetry", batch(seq))  # each one PUBACKed by the broker
        assert wait_until(lambda: service.subscriber.received["telemetry"] == 3, 20)
        time.sleep(1.0)  # room for a broker that ignored the limit to send more (it can only be caught, not faked)
        assert service.subscriber.received["telemetry"] == 3
        own_cluster.start()
        assert wait_until(lambda: count(dsn, "batches") == 10, 60), count(dsn, "batches")
    finally:
        service.stop()


OUTAGE_S = 30.0  # the outage: long enough for many retries and a backoff at its ceiling


def test_thirty_seconds_without_the_database_nothing_acknowledged_reported_nothing_lost(
        own_cluster: DevCluster, broker: Broker, gateway: Gateway) -> None:
    """PostgreSQL stopped for 30 s with batches arriving: not one PUBACK goes out while it is away
    (the broker keeps every batch as unacknowledged), the ingest says so in its log, and when
    the database is back it reports that, stores every batch once and acknowledges them."""
    log, events = recording_log()
    dsn = own_cluster.dsn()
    _, schema, _ = vector("basic")
    service = Ingest(ingest_settings(dsn, broker.port), log=log).start()
    try:
        assert wait_until(service.writer.db_up.is_set, 20) and wait_until(service.subscriber.subscribed.is_set, 10)
        gateway.publish(f"{BASE}/schema", schema, retain=True)
        gateway.publish(f"{BASE}/telemetry", batch(1))
        assert wait_until(lambda: count(dsn, "batches") == 1 and service.writer.acked == 2, 20)
        own_cluster.stop()
        back_at = time.monotonic() + OUTAGE_S
        for seq in range(2, 12):
            gateway.publish(f"{BASE}/telemetry", batch(seq))
        assert wait_until(lambda: service.subscriber.received["telemetry"] == 11, 20)
        assert wait_until(lambda: any(e["event"] == "database_unavailable" for e in events), 20)
        while time.monotonic() < back_at:  # the outage lasts its 30 s; nothing may be acknowledged in it
            assert service.writer.acked == 2 and count_unstored(service) == 10
            time.sleep(0.5)
        reports = [e for e in events if e["event"] == "database_unavailable"]
        assert len(reports) >= 2 and all("not acknowledging" in e["note"] for e in reports)
        own_cluster.start()
        assert wait_until(lambda: count(dsn, "batches") == 11, 60), count(dsn, "batches")
        assert wait_until(lambda: service.writer.acked == 12, 10)
        assert count(dsn, "samples") == 11 * 6 and service.writer.outcomes["duplicate"] == 0
        assert any(e["event"] == "database_back" for e in events)
    finally:
        service.stop()


def count_unstored(service: Ingest) -> int:
    """Batches received from the broker but not yet stored (hence not acknowledged)."""
    return service.subscriber.received["telemetry"] - service.writer.outcomes["stored"]
