"""The MQTT side: one paho client (MQTT 5) with a persistent session and manual acknowledgement.

Threads: paho's network thread (`loop_start`) runs every callback here. `on_message` only hands
the message to `deliver` (the writer's queue) and returns; the PUBACK is sent later by `ack`, from
the writer thread, once the message is committed to PostgreSQL. So a message is acknowledged
only when it is stored (or quarantined, or parked as pending, also in the database): after a crash
or a database outage the broker still holds every unacknowledged one and sends it again.

- Telemetry and events use a shared subscription (`$share/<group>/...`): the broker spreads
  them over the instances of the group, each message to one of them.
- Schema and status use ordinary subscriptions: MQTT 5 does not send retained messages to shared
  subscriptions, and the schema is retained (so is the status). Every instance therefore gets
  every schema; storing one is idempotent.
- `ReceiveMaximum` bounds the unacknowledged messages the broker sends us at once: that is the
  back-pressure while the database is away (the rest queue in the broker's session).
- A PUBACK refers to a packet id, which is only meaningful on the connection that delivered it.
  Each connection is a new generation; acks of an older generation are not sent (the broker
  redelivers those messages on the new connection, and the batch key drops the repeat).
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions


@dataclass(frozen=True)
class BrokerSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: str | None = None
    prefix: str = "park"
    group: str = "ingest"
    shared: bool = True  # False: ordinary subscriptions (one instance only; see `subscriptions`)
    client_id: str = f"ingest-{socket.gethostname()}"
    session_expiry: int = 7 * 86400  # s the broker keeps our session (and queues for it) while we are away
    receive_maximum: int = 1000  # unacknowledged messages in flight towards us
    keepalive: int = 30


@dataclass(frozen=True)
class Delivery:
    topic: str
    payload: bytes
    received_at: float
    mid: int
    qos: int
    generation: int


def subscriptions(prefix: str, group: str, shared: bool = True) -> list[tuple[str, SubscribeOptions]]:
    """Telemetry and events shared by the group (or, with `shared=False`, ordinary: for a single
    instance on a broker that does not keep shared subscriptions over its own restart, as
    mosquitto 2.0.11 does not: docs/platform.md); schema and status always ordinary."""
    plain = SubscribeOptions(qos=1)
    retained = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
    share = f"$share/{group}/" if shared else ""
    return [(f"{share}{prefix}/+/+/telemetry", plain), (f"{share}{prefix}/+/+/events", plain),
            (f"{prefix}/+/+/schema", retained), (f"{prefix}/+/+/schema/+", retained),
            (f"{prefix}/+/+/status", retained)]


class Subscriber:
    def __init__(self, settings: BrokerSettings, deliver: Callable[[Delivery], None], log: Any) -> None:
        self.settings = settings
        self.deliver = deliver
        self.log = log
        self.generation = 0
        self.connected = threading.Event()
        self.subscribed = threading.Event()  # the SUBACK of this connection's subscriptions came
        self.received: Counter[str] = Counter()  # messages handed over, by topic leaf
        self._lock = threading.Lock()  # generation changes vs. acks being sent
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=settings.client_id,
                             protocol=MQTTProtocolVersion.MQTTv5, manual_ack=True)
        if settings.tls:
            client.tls_set(ca_certs=settings.ca_file, certfile=settings.cert_file, keyfile=settings.key_file)
        if settings.username:
            client.username_pw_set(settings.username, settings.password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.reconnect_delay_set(0.2, 10)  # type: ignore[arg-type]  # paho accepts floats
        self.client = client

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.session_expiry
        props.ReceiveMaximum = self.settings.receive_maximum
        self.client.connect_async(self.settings.host, self.settings.port, self.settings.keepalive,
                                  clean_start=False, properties=props)
        self.client.loop_start()

    def stop(self) -> None:
        """Disconnect without acknowledging what is still in flight: the session keeps it."""
        with self._lock:
            self.generation += 1
        self.client.disconnect()
        self.client.loop_stop()

    def ack(self, delivery: Delivery) -> bool:
        """PUBACK a stored message (writer thread). False when its connection is gone."""
        with self._lock:
            if delivery.generation != self.generation or not self.connected.is_set():
                return False
            self.client.ack(delivery.mid, delivery.qos)
            return True

    # paho's thread from here on

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self.log.warning("broker_refused", reason=str(reason))
            return
        with self._lock:
            self.generation += 1
            self.connected.set()
            self.subscribed.clear()
        client.subscribe(subscriptions(self.settings.prefix, self.settings.group, self.settings.shared))
        self.log.info("broker_connected", host=self.settings.host, port=self.settings.port,
                      session_present=bool(flags.session_present), generation=self.generation)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, reasons: list[Any], _p: Any) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            self.log.error("subscription_refused", reasons=refused, note="check the broker's ACL for this client")
            return
        self.subscribed.set()
        # the line a supervisor (or the demo) waits for: from here on, nothing the gateways publish is missed
        self.log.info("subscribed", prefix=self.settings.prefix, shared=self.settings.shared)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        with self._lock:
            self.generation += 1
            self.connected.clear()
            self.subscribed.clear()
        self.log.warning("broker_disconnected", reason=str(reason))

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:  # kept (and quarantined by the writer) rather than raised in paho's loop
            topic = message._topic.decode("utf-8", "replace")
        self.received[topic.rsplit("/", 1)[-1]] += 1
        self.deliver(Delivery(topic, bytes(message.payload), time.time(), message.mid, message.qos, self.generation))
