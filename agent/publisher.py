"""MQTT delivery: sessions, the in-flight window, PUBACKs. The decisions are `DeliveryCore`'s
(agent/delivery.py, sans I/O); paho is behind `agent.mqtt.Connection`; this module joins them to
the spool.

Threads: everything here runs on the event loop. paho's callbacks reach it through the
connection (`call_soon_threadsafe`), so a PUBACK is always processed after the `publish()` call
that produced its packet id has returned and been recorded.

Each connection gets a fresh paho client: paho's own offline queue and resend-on-reconnect are
never used (its queue drops the newest when full); what was not acknowledged is in our buffer and
is published again from there. At most `window` telemetry messages are ever in flight.

A failed PUBACK (MQTT 5 reason code >= 0x80, e.g. 0x87 not authorized) is not an acknowledgement:
the batch is kept, an event is raised and publishing backs off. An acknowledgement that does not
come within `ack_timeout` means a black-holed link: the connection is dropped and made anew.

Nothing larger than the packet limit (the broker's announced Maximum Packet Size, or
`mqtt.max_packet_size`) is ever handed to the client, since a broker drops the session for it:
the schema goes in retained parts with an index, batches are split, other messages are trimmed or
logged instead. Failed connection attempts are told once per kind (`TroubleLog`), not per retry.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent import log
from agent.buffer.ring import SealedBatch
from agent.buffer.spool import Spool
from agent.codec import compress, schema_messages, set_historical, split
from agent.config.broker import parse_broker_url
from agent.delivery import DeliveryCore, TroubleLog
from agent.errors import BrokerDown, BrokerError, BrokerRefused
from agent.events import (
    AckTimeout,
    BatchSplit,
    BatchTooLarge,
    BrokerDisconnected,
    BrokerUnreachable,
    DataDropped,
    Event,
    ProtocolFallback,
    PublisherError,
    PublishRefused,
)
from agent.metrics import PublisherStats
from agent.mqtt import Connection, Endpoint, accepts_connections
from agent.threads import confine, confined
from agent.wakeup import Wakeup

MAX_EVENTS_KEPT = 1000
CONTROL_SLOTS = 8  # paho slots beyond the telemetry window for status, schema, events and metrics
EVENTS_PER_ROUND = 4
PACKET_OVERHEAD = 16  # fixed header, length bytes, packet id, property length of a QoS 1 PUBLISH
CONNECT_LIMIT = 30.0  # s a connection attempt may take (a black-holed path must not hold us longer)


@dataclass(frozen=True)
class BrokerSettings:
    """What the publisher needs from `mqtt:` in agent.yaml, already resolved (secrets read)."""

    host: str
    port: int
    tls: bool
    client_id: str
    base_topic: str  # <prefix>/<site>/<gateway>
    username: str | None = None
    password: str | None = None  # never logged, never in repr
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    keepalive: int = 30
    window: int = 10
    ack_timeout: float = 60.0
    compress: bool = False
    drain_rate: float = 50.0
    backoff_min: float = 1.0
    backoff_max: float = 60.0
    max_packet_size: int | None = None  # a limit for brokers that announce none (MQTT 3.1.1)
    mqtt5: bool = True  # False: speak MQTT 3.1.1 from the first attempt (else only after a refusal)

    def __repr__(self) -> str:
        return f"BrokerSettings({self.host}:{self.port} tls={self.tls} client_id={self.client_id})"

    def endpoint(self) -> Endpoint:
        return Endpoint(self.host, self.port, self.tls, self.client_id, self.username, self.password, self.ca_file,
                        self.cert_file, self.key_file, self.keepalive)

    @classmethod
    def from_config(cls, mqtt_config: Any, gateway: str, site: str) -> BrokerSettings:
        address = parse_broker_url(mqtt_config.url)  # the loader has checked it and the password file
        password = None
        if mqtt_config.password_file:
            password = Path(mqtt_config.password_file).read_text().strip()
        return cls(address.host, address.port, address.tls,
                   mqtt_config.client_id or gateway, f"{mqtt_config.topic_prefix}/{site}/{gateway}",
                   mqtt_config.username, password, mqtt_config.ca_file, mqtt_config.cert_file, mqtt_config.key_file,
                   int(mqtt_config.keepalive), mqtt_config.window, mqtt_config.ack_timeout, mqtt_config.compress,
                   mqtt_config.drain_rate, backoff_max=mqtt_config.reconnect_max,
                   max_packet_size=mqtt_config.max_packet_size)


@dataclass
class _Session:
    link: Connection
    event_flights: dict[int, int]  # packet id -> id of a stored event
    event_cursor: int = 0  # stored events up to this id have been sent in this session
    stored_events_sent: bool = False  # every stored event has been sent once in this session
    control: deque[tuple[str, str]] = field(default_factory=deque)  # retained (schema) messages still to hand over


class Publisher:
    """Publishes what the spool holds; run() until stop()."""

    def __init__(self, settings: BrokerSettings, spool: Spool, status: Callable[[], dict[str, Any]],
                 schema_json: str, clock: Callable[[], float] = time.monotonic,
                 on_trouble: Callable[[str | None], None] | None = None) -> None:
        """`on_trouble(text)`: the broker cannot be used ("broker: bad credentials since 12:03 UTC"),
        or None once it can again (for systemd's STATUS=)."""
        confine(self)
        self.log = log.get("publisher")
        self.trouble = TroubleLog()
        self._on_trouble = on_trouble
        self._too_large: set[str] = set()  # topic leaves already logged as over the packet limit
        self._schema_parts = 0  # retained schema parts this process has published (stale ones are cleared)
        self.settings = settings
        self.spool = spool
        self.status = status
        self.schema_json = schema_json
        self.clock = clock
        self.core = DeliveryCore(settings.window, settings.drain_rate, settings.ack_timeout, settings.backoff_min,
                                 settings.backoff_max)
        self.stats = PublisherStats()
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS_KEPT)
        self._latest: dict[str, str] = {}  # topic leaf -> JSON to publish once (metrics)
        self._wake = Wakeup()  # set by a nudge, a PUBACK, a schema change ...: the pump looks again
        self._stop = asyncio.Event()
        self._session: _Session | None = None
        self._store_generation = 0
        self._mqtt5 = settings.mqtt5
        self._broker_down = False  # the last attempt found nothing accepting TCP connections
        self.connected = asyncio.Event()

    # ------------------------------------------------------------------ public

    def topic(self, leaf: str) -> str:
        return f"{self.settings.base_topic}/{leaf}"

    @confined
    def nudge(self) -> None:
        """New batches are waiting (called by whoever adds to the spool)."""
        self._wake.set()

    @confined
    def event(self, event: Event) -> None:
        """An event for the events topic: published from memory when connected; while offline kept
        on disk with the batches (the newest 1000), so a crash does not lose what explains a gap."""
        body = {"event": event.kind, "ts": int(time.time() * 1000), **event.body()}
        if self.connected.is_set():
            self.events.append(body)
        else:
            self.spool.keep_event(json.dumps(body))
        self._wake.set()

    @confined
    def publish_json(self, leaf: str, payload: dict[str, Any]) -> None:
        """Publish a JSON document on `<base>/<leaf>` when connected (only the latest is kept)."""
        self._latest[leaf] = json.dumps(payload)
        self._wake.set()

    @confined
    def set_schema(self, schema_json: str) -> None:
        """A reload changed the schema: publish it retained before the batches that use it."""
        if schema_json != self.schema_json:
            self.schema_json = schema_json
            if self._session is not None and self.connected.is_set():
                self._publish_schema()

    @confined
    def refresh_status(self) -> None:
        """The status changed (the buffer fell back to memory, or came back): publish it again."""
        if self._session is not None and self.connected.is_set():
            self._publish_status()

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                await self._one_session()
            except Exception as exc:  # noqa: BLE001 - the delivery loop must survive everything
                self.event(PublisherError(f"{type(exc).__name__}: {exc}"))
            if self._stop.is_set():
                break
            await self._back_off(self.core.reconnect_delay())

    async def _back_off(self, delay: float) -> None:
        """Wait `delay` before the next attempt; only stop() cuts it short. While nothing accepted the
        last TCP connection (the broker is down), look with cheap TCP probes every 1-3 s and try at
        once when one connects: back within seconds of the broker, whatever the backoff had grown
        to. A broker that accepts TCP but fails later (a proxy, TLS, CONNACK) waits the backoff."""
        deadline = self.clock() + delay
        while not self._stop.is_set() and (left := deadline - self.clock()) > 0:
            step = min(left, self.core.probe_delay()) if self._broker_down else left
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=step)
                return
            except TimeoutError:
                pass
            if self._broker_down and await accepts_connections(self.settings.host, self.settings.port):
                self.stats.probe_hits += 1
                return

    async def stop(self, timeout: float = 2.0) -> None:
        """Publish status offline (best effort: its PUBACK is awaited) and close the session."""
        session = self._session
        if session is not None and self.connected.is_set():
            offline = json.dumps({"state": "offline", "reason": "shutdown"})
            mid = self._publish_quietly(self.topic("status"), offline, retain=True)
            if mid is not None:
                await session.link.published(mid, timeout)
        self._stop.set()
        self._wake.set()
        if session is not None:
            await session.link.close()

    # ------------------------------------------------------------------ one connection

    async def _one_session(self) -> None:
        will = (self.topic("status"), json.dumps({"state": "offline", "reason": "lost"}))
        try:
            link = Connection(self.settings.endpoint(), self._on_ack, self._mqtt5, will,
                              self.settings.window + CONTROL_SLOTS)
        except BrokerError as exc:  # TLS set-up: a missing or unreadable CA, certificate or key file
            self._broker_down = False
            self._note_down(exc)
            return
        session = self._session = _Session(link, {})
        try:
            await link.open(min(CONNECT_LIMIT, self.settings.ack_timeout))
        except BrokerRefused as exc:
            await link.close()
            if self._mqtt5 and "unsupported protocol" in str(exc).lower():
                self._mqtt5 = False  # an old broker: PUBACKs carry no reason codes
                self.event(ProtocolFallback("3.1.1"))
            self._note_down(exc, "broker refused the connection: ")
            return
        except BrokerError as exc:
            await link.close()
            self._broker_down = isinstance(exc, BrokerDown)
            self._note_down(exc)
            return
        self._broker_down = False
        self._note_up()
        self.stats.connects += 1
        self.stats.protocol = "MQTT 5" if self._mqtt5 else "MQTT 3.1.1"
        self.core.session_started(self.clock())
        self.connected.set()
        self.spool.set_connected(True)
        self._publish_schema()
        self._publish_status()
        try:
            await self._pump(session)
        finally:
            self.connected.clear()
            self.stats.disconnects += 1
            if link.lost.is_set() and not self._stop.is_set():  # a failed attempt is not news:
                self.event(BrokerDisconnected(link.lost_reason))  # `broker_unreachable` said it once per outage
            while self.events:  # not sent before the link went: to disk with the batches
                self.spool.keep_event(json.dumps(self.events.popleft()))
            self.spool.set_connected(False)
            await link.close()
            self._session = None

    @confined
    def _on_ack(self, mid: int, ok: bool, reason: str) -> None:
        session = self._session
        flight = self.core.acked(mid) if ok else None
        if flight is not None:
            self.stats.acked += 1
            self.spool.acked(flight.seq)
        elif not ok and (refused := self.core.refused(mid, self.clock())) is not None:
            flight, delay = refused
            self.stats.refused += 1
            self.spool.refused(flight.seq)
            self.event(PublishRefused(flight.seq, reason, delay))
        elif session is not None and ok and (event_id := session.event_flights.pop(mid, None)) is not None:
            self.spool.event_acked(event_id)
        self._wake.set()

    # ------------------------------------------------------------------ the pump

    async def _pump(self, session: _Session) -> None:
        last_tick = self.clock()
        while not self._stop.is_set() and not session.link.lost.is_set():
            self._wake.clear()  # before looking: a nudge from here on wakes the next wait
            now = self.clock()
            if self.core.ack_overdue(now):
                self.stats.watchdog_reconnects += 1
                self.event(AckTimeout(self.settings.ack_timeout, len(self.core.inflight)))
                return
            self._report_drops()
            backlog_waiting = False
            if self._send_control(session):  # the schema goes before the batches that use it
                self._publish_events(session)
                backlog_waiting = self._fill_window(session, now)
            if now - last_tick >= 1.0:
                self.spool.tick()
                last_tick = now
            await self._wake.wait(self.core.next_wakeup(now, backlog_waiting))

    def _report_drops(self) -> None:
        """Batches evicted from a full buffer: one event per stretch of lost data, saying which seqs and
        which time span the platform will never receive; the count also rides in the next batch."""
        for loss in self.spool.take_losses():
            self.event(DataDropped([loss.first_seq, loss.last_seq], loss.batches, loss.readings, loss.from_ms,
                                   loss.to_ms, self.spool.ring.dropped_total))

    def _fill_window(self, session: _Session, now: float) -> bool:
        """Live batches first, then the backlog as the drain rate allows. True if backlog may remain."""
        for batch in self.spool.take_live(limit=self.core.live_room()):
            self._send(session, batch, historical=False, now=now)
        if self.spool.ring.generation != self._store_generation:  # recovered or re-attached: from the start
            self._store_generation, self.core.cursor = self.spool.ring.generation, 0
        room = self.core.backlog_room(now)
        if room <= 0:
            return self.spool.ring.backlog > 0
        in_flight = self.core.in_flight_seqs()
        for batch in self.spool.backlog(after=self.core.cursor):
            if room <= 0:
                return True
            if batch.seq in in_flight:
                self.core.skip(batch.seq)
                continue
            if not self._send(session, batch, historical=True, now=now):
                return True  # paho is full or the link went: this batch first, next round
            room -= 1
        return False

    def _send(self, session: _Session, batch: SealedBatch, historical: bool, now: float) -> bool:
        """Hand one batch to the client; False if it could not take it (kept, offered again)."""
        link = session.link
        limit = self.max_packet()
        if limit and len(batch.payload) + PACKET_OVERHEAD + len(self.topic("telemetry").encode()) > limit:
            self._split(batch, limit)
            return True
        payload = set_historical(batch.payload) if historical else batch.payload
        if self.settings.compress and len(packed := compress(payload)) < len(payload):
            payload = packed  # never larger than the batch itself: a split part stays within the limit
        try:
            mid = link.publish(self.topic("telemetry"), payload)
        except BrokerError:
            mid = None
        if mid is None:  # paho is full or the link is gone: keep it for later
            self.spool.refused(batch.seq)
            self.core.rewind(batch.seq)
            return False
        self.core.sent(mid, batch.seq, historical, now)
        self.stats.published += 1
        self.stats.historical += historical
        return True

    def _split(self, batch: SealedBatch, max_packet: int) -> None:
        """Replace a batch the broker would refuse for its size by smaller ones (sent from disk). A
        part that still does not fit (one reading larger than the limit: a huge text value) would
        make the broker drop every session: it is not kept, and the loss is reported."""
        limit = max_packet - PACKET_OVERHEAD - len(self.topic("telemetry").encode())
        parts = [SealedBatch(part.seq, part.payload, part.readings, batch.t_first, batch.t_last)
                 for part in split(batch.payload, limit, self.spool.ring.allocate)]
        kept = [part for part in parts if len(part.payload) <= limit]
        self.spool.replace(batch.seq, kept)
        self.core.cursor = 0
        self.event(BatchSplit(batch.seq, [p.seq for p in kept], max_packet))
        for part in parts:
            if len(part.payload) > limit:
                self.log.error("batch part larger than the broker's packet limit: not sent", seq=part.seq,
                               bytes=len(part.payload), max_packet=max_packet, readings=part.readings)
                self.event(BatchTooLarge(part.seq, len(part.payload), max_packet, part.readings))

    def max_packet(self) -> int | None:
        """The packet limit in force: the broker's announced Maximum Packet Size (MQTT 5) and
        `mqtt.max_packet_size`, whichever is smaller."""
        session = self._session
        limits = [n for n in (session.link.max_packet if session else None, self.settings.max_packet_size) if n]
        return min(limits) if limits else None

    def _room(self, topic: str) -> int:
        """Payload bytes a QoS 1 message on `topic` may have under the packet limit."""
        limit = self.max_packet()
        return (limit or 268_435_455) - PACKET_OVERHEAD - len(topic.encode())

    def _publish_schema(self) -> None:
        """The schema, retained: whole, or in parts plus an index when the packet limit is smaller."""
        try:
            messages = schema_messages(self.schema_json, self.topic("schema"),
                                       self._room if self.max_packet() else None)
        except ValueError as exc:
            self.log.error("schema not published", reason=str(exc), max_packet=self.max_packet())
            return
        if len(messages) > 1 and "schema" not in self._too_large:
            self._too_large.add("schema")
            self.log.info("schema published in parts", parts=len(messages) - 1, bytes=len(self.schema_json.encode()),
                          max_packet=self.max_packet())
        session = self._session
        if session is not None:
            schema = self.topic("schema")
            parts = len(messages) - 1
            stale = [(f"{schema}/{i}", "") for i in range(parts, self._schema_parts)]  # a shorter schema: cleared
            self._schema_parts = parts
            kept = [(t, p) for t, p in session.control if t != schema and not t.startswith(schema + "/")]
            session.control = deque([*kept, *stale, *messages])  # the index last: then all is in place
            self._wake.set()

    def _send_control(self, session: _Session) -> bool:
        """Hand the queued retained messages to the client as it takes them; True once all are."""
        while session.control:
            topic, payload = session.control[0]
            if self._publish_quietly(topic, payload, retain=True) is None and self._fits(topic, payload):
                return False  # the client is full: the rest when PUBACKs make room
            session.control.popleft()
        return True

    def _publish_status(self) -> None:
        status = {"state": "online", **self.status()}
        payload = json.dumps(status)
        if len(payload.encode()) > self._room(self.topic("status")) and "devices" in status:
            status["devices_omitted"] = len(status.pop("devices"))  # a small packet limit: the list is the bulk
            payload = json.dumps(status)
        self._publish_quietly(self.topic("status"), payload, retain=True)

    def _publish_events(self, session: _Session) -> None:
        """A few events per round (they share the control slots): first those kept on disk while
        offline (deleted once acknowledged), then those raised while connected."""
        quota = EVENTS_PER_ROUND
        if not session.stored_events_sent:
            stored = self.spool.stored_events(after=session.event_cursor, limit=quota)
            for event_id, body in stored:
                mid = self._publish_quietly(self.topic("events"), body)
                if mid is None:  # the client is full: this one again next round
                    return
                session.event_cursor = event_id
                session.event_flights[mid] = event_id
            session.stored_events_sent = len(stored) < quota
            quota -= len(stored)
        for _ in range(min(quota, len(self.events))):
            if self._publish_quietly(self.topic("events"), json.dumps(self.events[0])) is None:
                return  # the client is full: kept, next round (or to disk if the link goes)
            self.events.popleft()
        while self._latest:
            leaf, payload = self._latest.popitem()
            self._publish_quietly(self.topic(leaf), payload, qos=0)

    def _publish_quietly(self, topic: str, payload: str, qos: int = 1, retain: bool = False) -> int | None:
        """Control messages (schema, status, events, metrics): a lost link is noticed by the pump."""
        session = self._session
        if session is None:
            return None
        if not self._fits(topic, payload):  # the broker would drop the session for it
            leaf = topic.rsplit("/", 1)[-1]
            self.stats.too_large += 1
            if leaf not in self._too_large:
                self._too_large.add(leaf)
                self.log.warning("message larger than the broker's packet limit: not published", topic=topic,
                                 bytes=len(payload.encode()), max_packet=self.max_packet())
            return None
        try:
            return session.link.publish(topic, payload, qos=qos, retain=retain)
        except BrokerError:
            return None

    def _fits(self, topic: str, payload: str) -> bool:
        return len(payload.encode()) <= self._room(topic)

    def _note_down(self, exc: BrokerError, prefix: str = "") -> None:
        """A failed attempt: the first of its kind in an outage is logged in full and raised as one
        event; then a summary every few minutes, and STATUS= says it until a session is up."""
        reason = f"{prefix}{exc}"
        first, summary = self.trouble.failed(exc.problem, reason, self.clock(), time.time())
        where = f"{self.settings.host}:{self.settings.port}"
        if first:
            self.log.error("broker connection failed", problem=exc.problem, broker=where, reason=reason,
                           attempt=self.trouble.outage.attempts if self.trouble.outage else 1)
            self.event(BrokerUnreachable(reason, exc.problem))
        elif summary is not None:
            self.log.warning("broker still failing", broker=where, summary=summary)
        if self._on_trouble is not None:
            self._on_trouble(self.trouble.status(_clock_text))

    def _note_up(self) -> None:
        ended = self.trouble.connected(self.clock())
        if ended is not None:
            self.log.info("broker connected", broker=f"{self.settings.host}:{self.settings.port}", note=ended)
            if self._on_trouble is not None:
                self._on_trouble(None)


def _clock_text(wall: float) -> str:
    return time.strftime("%H:%M UTC", time.gmtime(wall))
