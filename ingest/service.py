"""`edge-agent ingest`: wires the subscriber (paho's thread) to the writer (the database thread)
through a queue, and runs until SIGTERM/SIGINT or until the writer dies.

Threads: main (signals, supervision), paho's network thread (callbacks, enqueue only), the
writer (PostgreSQL, then PUBACKs). The queue needs no bound of its own: the broker never has
more than `receive_maximum` unacknowledged messages out to us.
"""

from __future__ import annotations

import queue
import signal
import threading
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from agent import log as logging_setup
from ingest.store import Store
from ingest.subscriber import BrokerSettings, Delivery, Subscriber
from ingest.writer import Writer


@dataclass(frozen=True)
class IngestSettings:
    dsn: str
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    chunk: int = 200  # messages per transaction at most
    backoff: tuple[float, float] = (0.5, 30.0)  # database retry delays, s


class Ingest:
    """The running service; `start()`/`stop()` for embedding (tests, benchmarks), `run()` for the CLI."""

    def __init__(self, settings: IngestSettings, log: Any = None) -> None:
        self.log = log or logging_setup.get("ingest")
        self.inbox: queue.Queue[Delivery] = queue.Queue()
        self.subscriber = Subscriber(settings.broker, self.inbox.put, self.log)
        self.writer = Writer(Store(settings.dsn, self.log), self.inbox, self.subscriber.ack, self.log,
                             settings.chunk, settings.backoff)
        self._stop = threading.Event()

    def start(self) -> Ingest:
        self.writer.start()
        self.subscriber.start()
        return self

    def stop(self) -> None:
        self.subscriber.stop()
        self.writer.stop()
        self.writer.join(30)

    def run(self) -> int:
        """Until a signal (0) or a dead writer (1: systemd restarts us; nothing unstored was acknowledged)."""
        def on_signal(_signum: int, _frame: FrameType | None) -> None:
            self._stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        while not self._stop.wait(1.0):
            if not self.writer.is_alive():
                self.log.error("writer_died", note="exiting so that the service manager restarts us")
                self.subscriber.stop()
                return 1
        self.log.info("stopping", outcomes=dict(self.writer.outcomes), acked=self.writer.acked)
        self.stop()
        return 0
