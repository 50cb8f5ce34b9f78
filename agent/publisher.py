"""MQTT delivery (paho-mqtt 2.x behind this one module): sessions, the in-flight window, PUBACKs.

Threading model: paho runs its network loop in its own thread; its callbacks only hand events to
the asyncio loop (`call_soon_threadsafe`), never touch our state and never take our locks. All
decisions (what to publish, what an acknowledgement means, when to reconnect) happen on the
asyncio loop, so a PUBACK is always processed after the `publish()` call that produced its mid
has returned and been recorded.

Each connection gets a fresh paho client: paho's own offline queue and resend-on-reconnect are
never used (its queue drops the newest when full, paho #856); what was not acknowledged is in our
buffer and is published again from there. At most `window` messages are ever in flight.

A failed PUBACK (MQTT 5 reason code >= 0x80, e.g. 0x87 not authorized) is not an acknowledgement:
the batch is kept, an event is raised and publishing backs off. An acknowledgement that does not
come within `ack_timeout` means a black-holed link: the connection is dropped and made anew.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.buffer.ring import SealedBatch
from agent.buffer.spool import Spool
from agent.codec import compress, set_historical, split
from agent.metrics import PublisherStats
from agent.events import (AckTimeout, BatchSplit, BrokerDisconnected, BrokerUnreachable, DataDropped, Event,
                          ProtocolFallback, PublisherError, PublishRefused)
from agent.threads import confine, confined

MAX_EVENTS_KEPT = 1000
CONTROL_SLOTS = 8  # paho slots beyond the telemetry window for status, schema, events and metrics
EVENTS_PER_ROUND = 4
LIVE_RESERVE = 2  # window slots the backlog leaves free for live batches
PACKET_OVERHEAD = 16  # fixed header, length bytes, packet id, property length of a QoS 1 PUBLISH


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

    def __repr__(self) -> str:
        return f"BrokerSettings({self.host}:{self.port} tls={self.tls} client_id={self.client_id})"

    @classmethod
    def from_config(cls, mqtt_config: Any, gateway: str, site: str) -> BrokerSettings:
        url = urlsplit(mqtt_config.url)
        tls = url.scheme == "mqtts"
        password = None
        if mqtt_config.password_file:
            password = Path(mqtt_config.password_file).read_text().strip()
        return cls(url.hostname or "localhost", url.port or (8883 if tls else 1883), tls,
                   mqtt_config.client_id or gateway, f"{mqtt_config.topic_prefix}/{site}/{gateway}",
                   mqtt_config.username, password, mqtt_config.ca_file, mqtt_config.cert_file, mqtt_config.key_file,
                   int(mqtt_config.keepalive), mqtt_config.window, mqtt_config.ack_timeout, mqtt_config.compress,
                   mqtt_config.drain_rate, backoff_max=mqtt_config.reconnect_max)


@dataclass
class _InFlight:
    seq: int
    sent_at: float
    from_disk: bool


@dataclass
class _Session:
    client: mqtt.Client
    connected: asyncio.Future[Any]
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    inflight: dict[int, _InFlight] = field(default_factory=dict)  # mid -> batch
    event_flights: dict[int, int] = field(default_factory=dict)  # mid -> id of a stored event
    event_cursor: int = 0  # stored events up to this id have been sent in this session
    stored_events_sent: bool = False  # every stored event has been sent once in this session
    max_packet: int | None = None


class Publisher:
    """Publishes what the spool holds; run() until stop()."""

    def __init__(self, settings: BrokerSettings, spool: Spool, status: Callable[[], dict[str, Any]],
                 schema_json: str, clock: Callable[[], float] = time.monotonic) -> None:
        confine(self)
        self.settings = settings
        self.spool = spool
        self.status = status
        self.schema_json = schema_json
        self.clock = clock
        self.stats = PublisherStats()
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS_KEPT)
        self._latest: dict[str, str] = {}  # topic leaf -> JSON to publish once (metrics, schema updates)
        self._wake = asyncio.Event()
        self._stopping = False
        self._failures = 0
        self._pause_until = 0.0
        self._refusals = 0
        self._session: _Session | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._backlog_cursor = 0
        self._store_generation = 0
        self._tokens = 0.0
        self._protocol = MQTTProtocolVersion.MQTTv5
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

    def set_schema(self, schema_json: str) -> None:
        """A reload changed the schema: publish it retained before the batches that use it."""
        if schema_json != self.schema_json:
            self.schema_json = schema_json
            if self._session is not None and self.connected.is_set():
                self._session.client.publish(self.topic("schema"), schema_json, qos=1, retain=True)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        while not self._stopping:
            try:
                await self._one_session()
            except Exception as exc:  # noqa: BLE001 - the delivery loop must survive everything
                self.event(PublisherError(f"{type(exc).__name__}: {exc}"))
            if self._stopping:
                break
            self._failures += 1
            delay = min(self.settings.backoff_max, self.settings.backoff_min * 2 ** (self._failures - 1))
            await self._sleep(delay * random.uniform(0.5, 1.0))

    async def stop(self, timeout: float = 2.0) -> None:
        """Publish status offline (best effort) and close the session."""
        session = self._session
        if session is not None and self.connected.is_set():  # the session stays up until this is acknowledged
            offline = json.dumps({"state": "offline", "reason": "shutdown"})
            info = session.client.publish(self.topic("status"), offline, qos=1, retain=True)
            deadline = time.monotonic() + timeout
            while not info.is_published() and time.monotonic() < deadline and not session.lost.is_set():
                await asyncio.sleep(0.01)
        self._stopping = True
        self._wake.set()
        if session is not None:
            await self._close(session)

    # ------------------------------------------------------------------ one connection

    async def _one_session(self) -> None:
        assert self._loop is not None
        session = self._connect_client()
        self._session = session
        try:
            limit = min(30.0, self.settings.ack_timeout)  # a black-holed path must not hold us for long
            await asyncio.wait_for(asyncio.to_thread(self._open_socket, session.client), timeout=limit)
            session.client.loop_start()
            await asyncio.wait_for(session.connected, timeout=limit)
        except (OSError, TimeoutError, ConnectionRefusedError) as exc:
            await self._close(session)
            self._note_down(f"cannot connect to {self.settings.host}:{self.settings.port}: {exc}")
            return
        except ConnectionError as exc:  # CONNACK refused
            await self._close(session)
            if self._protocol is MQTTProtocolVersion.MQTTv5 and "unsupported protocol" in str(exc).lower():
                self._protocol = MQTTProtocolVersion.MQTTv311  # an old broker: PUBACKs carry no reason codes
                self.event(ProtocolFallback("3.1.1"))
            self._note_down(str(exc))
            return
        self.stats.connects += 1
        self._failures = 0
        self.connected.set()
        self._backlog_cursor = 0
        self.spool.set_connected(True)
        self._publish_retained(session)
        try:
            await self._pump(session)
        finally:
            self.connected.clear()
            self.stats.disconnects += 1
            while self.events:  # not sent before the link went: to disk with the batches
                self.spool.keep_event(json.dumps(self.events.popleft()))
            self.spool.set_connected(False)
            await self._close(session)
            self._session = None

    def _connect_client(self) -> _Session:
        assert self._loop is not None
        loop = self._loop
        s = self.settings
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=s.client_id, protocol=self._protocol)
        connected: asyncio.Future[Any] = loop.create_future()
        session = _Session(client, connected)
        if s.username:
            client.username_pw_set(s.username, s.password)
        if s.tls:
            context = ssl.create_default_context(cafile=s.ca_file)
            if s.cert_file:
                context.load_cert_chain(s.cert_file, s.key_file)
            client.tls_set_context(context)
        client.will_set(self.topic("status"), json.dumps({"state": "offline", "reason": "lost"}), qos=1, retain=True)
        client.max_inflight_messages_set(s.window + CONTROL_SLOTS)  # telemetry keeps to `window` itself
        client.max_queued_messages_set(s.window + CONTROL_SLOTS)

        def on_connect(_c: Any, _u: Any, _flags: Any, reason: Any, properties: Any) -> None:
            max_packet = getattr(properties, "MaximumPacketSize", None) if properties else None
            loop.call_soon_threadsafe(self._on_connect, session, reason, max_packet)

        def on_disconnect(_c: Any, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
            loop.call_soon_threadsafe(self._on_lost, session, str(reason))

        def on_publish(_c: Any, _u: Any, mid: int, reason: Any, _p: Any) -> None:
            loop.call_soon_threadsafe(self._on_ack, session, mid, reason)

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_publish = on_publish
        return session

    def _open_socket(self, client: mqtt.Client) -> None:
        if self._protocol is MQTTProtocolVersion.MQTTv311:
            client.connect(self.settings.host, self.settings.port, self.settings.keepalive)
            return
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 0
        client.connect(self.settings.host, self.settings.port, self.settings.keepalive, clean_start=True,
                       properties=properties)

    @confined
    def _on_connect(self, session: _Session, reason: Any, max_packet: int | None) -> None:
        if session.connected.done():
            return
        if getattr(reason, "is_failure", False):
            session.connected.set_exception(ConnectionError(f"broker refused the connection: {reason}"))
        else:
            session.max_packet = max_packet
            self.stats.protocol = "MQTT 5" if self._protocol is MQTTProtocolVersion.MQTTv5 else "MQTT 3.1.1"
            session.connected.set_result(True)

    @confined
    def _on_lost(self, session: _Session, reason: str) -> None:
        connected = session.connected
        established = connected.done() and not connected.cancelled() and connected.exception() is None
        if not connected.done():
            connected.set_exception(ConnectionError(f"connection closed before CONNACK: {reason}"))
        session.lost.set()
        self._wake.set()
        if established and session is self._session and not self._stopping:  # a failed attempt is not news:
            self.event(BrokerDisconnected(reason))  # `broker_unreachable` said it once per outage

    @confined
    def _on_ack(self, session: _Session, mid: int, reason: Any) -> None:
        flight = session.inflight.pop(mid, None)
        if flight is None:
            event_id = session.event_flights.pop(mid, None)
            if event_id is not None and not getattr(reason, "is_failure", False):
                self.spool.event_acked(event_id)
            return  # status, schema or live event messages, or a previous session's
        if getattr(reason, "is_failure", False):
            self.stats.refused += 1
            self._refusals += 1
            self.spool.refused(flight.seq)
            self._backlog_cursor = min(self._backlog_cursor, flight.seq - 1)  # retried after the pause
            delay = min(60.0, 2.0 ** min(self._refusals, 6))
            self._pause_until = self.clock() + delay
            self.event(PublishRefused(flight.seq, str(reason), delay))
        else:
            self._refusals = 0
            self.stats.acked += 1
            self.spool.acked(flight.seq)
        self._wake.set()

    # ------------------------------------------------------------------ the pump

    async def _pump(self, session: _Session) -> None:
        last_tick = self.clock()
        while not self._stopping and not session.lost.is_set():
            now = self.clock()
            if self._watchdog_fired(session, now):
                self.stats.watchdog_reconnects += 1
                self.event(AckTimeout(self.settings.ack_timeout, len(session.inflight)))
                return
            self._report_drops()
            self._publish_events(session)
            if now >= self._pause_until:
                self._fill_window(session, now - last_tick)
            if now - last_tick >= 1.0:
                self.spool.tick()
                last_tick = now
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=0.2)
            except TimeoutError:
                pass

    def _report_drops(self) -> None:
        """Batches evicted from a full buffer: one event per stretch of lost data, saying which seqs and
        which time span the platform will never receive; the count also rides in the next batch."""
        for loss in self.spool.take_losses():
            self.event(DataDropped([loss.first_seq, loss.last_seq], loss.batches, loss.readings, loss.from_ms,
                                   loss.to_ms, self.spool.ring.dropped_total))

    def _watchdog_fired(self, session: _Session, now: float) -> bool:
        if not session.inflight:
            return False
        oldest = min(f.sent_at for f in session.inflight.values())
        return now - oldest > self.settings.ack_timeout

    def _fill_window(self, session: _Session, elapsed: float) -> None:
        room = self.settings.window - len(session.inflight)
        for batch in self.spool.take_live(limit=max(room, 0)):
            self._send(session, batch, historical=False)
            room -= 1
        self._tokens = min(self.settings.drain_rate, self._tokens + elapsed * self.settings.drain_rate + 1)
        room -= min(LIVE_RESERVE, self.settings.window - 1)  # the backlog never takes the last slots: live first
        if room <= 0 or self._tokens < 1:
            return
        if self.spool.ring.generation != self._store_generation:  # recovered or re-attached: from the start
            self._store_generation, self._backlog_cursor = self.spool.ring.generation, 0
        in_flight = {f.seq for f in session.inflight.values()}
        for batch in self.spool.backlog(after=self._backlog_cursor):
            if room <= 0 or self._tokens < 1:
                break
            self._backlog_cursor = batch.seq
            if batch.seq in in_flight:
                continue
            self._send(session, batch, historical=True)
            room -= 1
            self._tokens -= 1

    def _send(self, session: _Session, batch: SealedBatch, historical: bool) -> None:
        if session.max_packet and len(batch.payload) + PACKET_OVERHEAD + len(self.topic("telemetry")) > session.max_packet:
            self._split(session, batch)
            return
        payload = set_historical(batch.payload) if historical else batch.payload
        if self.settings.compress:
            payload = compress(payload)
        info = session.client.publish(self.topic("telemetry"), payload, qos=1)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:  # paho is full (should not happen): keep it for later
            self.spool.refused(batch.seq)
            self._backlog_cursor = min(self._backlog_cursor, batch.seq - 1)
            return
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.spool.refused(batch.seq)
            session.lost.set()
            return
        session.inflight[info.mid] = _InFlight(batch.seq, self.clock(), historical)
        self.stats.published += 1
        self.stats.historical += historical

    def _split(self, session: _Session, batch: SealedBatch) -> None:
        """Replace a batch the broker would refuse for its size by smaller ones (sent from disk)."""
        assert session.max_packet is not None
        limit = session.max_packet - PACKET_OVERHEAD - len(self.topic("telemetry"))
        parts = [SealedBatch(part.seq, part.payload, part.readings, batch.t_first, batch.t_last)
                 for part in split(batch.payload, limit, self.spool.ring.allocate)]
        self.spool.replace(batch.seq, parts)
        self._backlog_cursor = 0
        self.event(BatchSplit(batch.seq, [p.seq for p in parts], session.max_packet))

    def _publish_retained(self, session: _Session) -> None:
        session.client.publish(self.topic("schema"), self.schema_json, qos=1, retain=True)
        self._publish_status(session)

    @confined
    def refresh_status(self) -> None:
        """The status changed (the buffer fell back to memory, or came back): publish it again."""
        if self._session is not None and self.connected.is_set():
            self._publish_status(self._session)

    def _publish_status(self, session: _Session) -> None:
        session.client.publish(self.topic("status"), json.dumps({"state": "online", **self.status()}), qos=1,
                               retain=True)

    def _publish_events(self, session: _Session) -> None:
        """A few events per round (they share the control slots): first those kept on disk while
        offline (deleted once acknowledged), then those raised while connected."""
        quota = EVENTS_PER_ROUND
        if not session.stored_events_sent:
            stored = self.spool.stored_events(after=session.event_cursor, limit=quota)
            for event_id, body in stored:
                info = session.client.publish(self.topic("events"), body, qos=1)
                session.event_cursor = event_id
                if info.rc == mqtt.MQTT_ERR_SUCCESS:
                    session.event_flights[info.mid] = event_id
            session.stored_events_sent = len(stored) < quota
            quota -= len(stored)
        for _ in range(min(quota, len(self.events))):
            session.client.publish(self.topic("events"), json.dumps(self.events.popleft()), qos=1)
        while self._latest:
            leaf, payload = self._latest.popitem()
            session.client.publish(self.topic(leaf), payload, qos=0)

    def _note_down(self, reason: str) -> None:
        if self._failures == 0:
            self.event(BrokerUnreachable(reason))

    async def _close(self, session: _Session) -> None:
        """Off the event loop: paho's loop_stop() joins its thread, which can take a second."""
        await asyncio.to_thread(_close_client, session.client)

    async def _sleep(self, seconds: float) -> None:
        """Back off; only stop() cuts it short (new batches wait in the buffer meanwhile)."""
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            await asyncio.sleep(min(0.2, deadline - time.monotonic()))


def _close_client(client: mqtt.Client) -> None:
    try:
        client.disconnect()
    except Exception:  # noqa: BLE001 - closing a broken client must not raise
        pass
    client.loop_stop()
