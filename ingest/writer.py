"""The writer thread: the only code that touches PostgreSQL.

It takes what paho's thread queued, a chunk at a time (up to `chunk` messages, whatever is
waiting), stores the chunk in one transaction and only then acknowledges each of its messages,
in the order they arrived. When the database is away it acknowledges nothing, logs it, and
retries the same chunk with exponential backoff until the database is back (the broker holds the
rest meanwhile); when stopped it leaves the chunk unacknowledged for the broker to redeliver.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg

from ingest.store import Message, NeedPartitions, Store
from ingest.subscriber import Delivery


class Writer(threading.Thread):
    def __init__(self, store: Store, inbox: queue.Queue[Delivery], ack: Callable[[Delivery], bool], log: Any,
                 chunk: int = 200, backoff: tuple[float, float] = (0.5, 30.0)) -> None:
        super().__init__(name="ingest-writer", daemon=True)
        self.store = store
        self.inbox = inbox
        self.ack = ack
        self.log = log
        self.chunk = chunk
        self.backoff = backoff
        self.stopping = threading.Event()
        self.outcomes: Counter[str] = Counter()
        self.db_up = threading.Event()
        self.db_failures = 0
        self.acked = 0  # PUBACKs sent: flat while the database is away (what the broker sees)

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        try:
            self._until_connected()
            while not self.stopping.is_set():
                deliveries = self._take()
                if deliveries and self._store(deliveries):
                    for delivery in deliveries:
                        self.acked += self.ack(delivery)
        except BaseException:
            self.log.exception("writer_failed", note="nothing unstored was acknowledged")
            raise
        finally:
            self.store.close()

    def _take(self) -> list[Delivery]:
        try:
            first = self.inbox.get(timeout=0.2)
        except queue.Empty:
            return []
        taken = [first]
        while len(taken) < self.chunk:
            try:
                taken.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        return taken

    def _store(self, deliveries: list[Delivery]) -> bool:
        """True once the chunk is committed; False only when stopping (nothing acknowledged)."""
        messages = [Message(d.topic, d.payload, d.received_at) for d in deliveries]
        while not self.stopping.is_set():
            try:
                self.store.connect()
                outcomes = self.store.write(messages)
            except NeedPartitions as need:
                self.store.create_partitions(need.days)
                continue
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self._database_down(exc)
                continue
            self.outcomes.update(outcomes)
            return True
        return False

    def _until_connected(self) -> None:
        while not self.stopping.is_set():
            try:
                self.store.connect()
                swept = self.store.sweep_pending()
                self.db_up.set()
                self.log.info("database_connected", pending_schemas_swept=swept)
                return
            except NeedPartitions as need:
                self.store.create_partitions(need.days)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self._database_down(exc)

    def _database_down(self, exc: Exception) -> None:
        self.db_up.clear()
        self.db_failures += 1
        self.store.close()
        delay = min(self.backoff[1], self.backoff[0] * 2 ** min(self.db_failures - 1, 16))
        self.log.warning("database_unavailable", error=str(exc).strip()[:300], retry_in_s=delay,
                         waiting=self.inbox.qsize(), note="not acknowledging: the broker keeps the messages")
        self.stopping.wait(delay)
        try:
            self.store.connect()
        except (psycopg.OperationalError, psycopg.InterfaceError):
            return
        self.db_failures = 0
        self.db_up.set()
        self.log.info("database_back")
