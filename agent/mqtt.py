"""The one seam to paho-mqtt 2.x: clients configured one way (MQTT 5 or 3.1.1, TLS, credentials,
sessions), paho's failures mapped to the agent's errors, an asyncio connection for the publisher
and a threaded subscriber for `tail` and the test platform.

Threads: paho runs its network loop in its own thread. `Connection` hands every callback to the
event loop (`call_soon_threadsafe`) and never touches anything else; `Subscriber` calls its
`on_message` on paho's thread, so its users keep what they receive behind a lock or a queue.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.errors import BrokerDown, BrokerError, BrokerRefused

Message = paho.MQTTMessage
X509_HOSTNAME_MISMATCH, X509_IP_MISMATCH = 62, 64  # OpenSSL verify codes
REFUSALS = {0x85: "client_id_refused", 0x86: "bad_credentials", 0x87: "not_authorized", 0x8C: "bad_credentials"}


@dataclass(frozen=True)
class Endpoint:
    """Where a broker is and how to log in to it."""

    host: str
    port: int
    tls: bool = False
    client_id: str = ""
    username: str | None = None
    password: str | None = None  # never logged, never in repr
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    keepalive: int = 30

    def __repr__(self) -> str:
        return f"Endpoint({self.host}:{self.port} tls={self.tls} client_id={self.client_id})"

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Endpoint:
        """`mqtt://[user:password@]host[:1883]` or `mqtts://...:8883`."""
        parts = urlsplit(url)
        tls = parts.scheme == "mqtts"
        endpoint = cls(parts.hostname or "localhost", parts.port or (8883 if tls else 1883), tls,
                       username=unquote(parts.username) if parts.username else None,
                       password=unquote(parts.password) if parts.password else None)
        return replace(endpoint, **options)


def new_client(endpoint: Endpoint, mqtt5: bool = True, manual_ack: bool = False) -> paho.Client:
    """A paho client with the endpoint's identity, credentials and TLS."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=endpoint.client_id,
                         protocol=MQTTProtocolVersion.MQTTv5 if mqtt5 else MQTTProtocolVersion.MQTTv311,
                         manual_ack=manual_ack)
    if endpoint.username:
        client.username_pw_set(endpoint.username, endpoint.password)
    if endpoint.tls:
        for what, name in (("CA file", endpoint.ca_file), ("certificate file", endpoint.cert_file),
                           ("key file", endpoint.key_file)):
            if name and not os.access(name, os.R_OK):
                reason = "does not exist" if not os.path.exists(name) else "is not readable by this user"
                raise BrokerError(f"TLS set-up failed: {what} {name} {reason}", "tls_setup")
        try:
            context = ssl.create_default_context(cafile=endpoint.ca_file)
            if endpoint.cert_file:
                context.load_cert_chain(endpoint.cert_file, endpoint.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise BrokerError(f"TLS set-up failed ({endpoint.ca_file or 'system CAs'}, "
                              f"{endpoint.cert_file or 'no client certificate'}): {exc}", "tls_setup") from exc
        client.tls_set_context(context)
    return client


def connect(client: paho.Client, endpoint: Endpoint, mqtt5: bool = True, session_expiry: int | None = None) -> None:
    """Blocking TCP/TLS connect (run it off the event loop). `session_expiry`: None for a clean
    session that ends with the connection, else seconds the broker keeps it (a persistent one)."""
    try:
        if not mqtt5:  # MQTT 3.1.1: the session is clean unless the client was made otherwise (paho
            client.connect(endpoint.host, endpoint.port, endpoint.keepalive)  # refuses clean_start here)
            return
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = session_expiry or 0
        client.connect(endpoint.host, endpoint.port, endpoint.keepalive, clean_start=session_expiry is None,
                       properties=properties)
    except ssl.SSLCertVerificationError as exc:
        mismatch = exc.verify_code in (X509_HOSTNAME_MISMATCH, X509_IP_MISMATCH)
        hint = ("the broker's certificate is not for this host name or address" if mismatch
                else f"the broker's certificate is not trusted by {endpoint.ca_file or 'the system CAs'}")
        raise BrokerError(f"TLS handshake with {endpoint.host}:{endpoint.port} failed: {hint} "
                          f"({exc.verify_message})", "tls_hostname" if mismatch else "tls_untrusted") from exc
    except ssl.SSLError as exc:
        raise BrokerError(f"TLS handshake with {endpoint.host}:{endpoint.port} failed: {exc}", "tls") from exc
    except (ConnectionRefusedError, TimeoutError, OSError) as exc:
        raise BrokerDown(f"cannot connect to {endpoint.host}:{endpoint.port}: {exc}") from exc


async def accepts_connections(host: str, port: int, timeout: float = 1.0) -> bool:
    """A TCP connect and close, nothing more: far cheaper for a broker than a TLS handshake and an
    MQTT session, so a gateway can look every second or two for a broker that is back."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


def close_client(client: paho.Client) -> None:
    """Disconnect and join paho's thread (blocking: it can take a second)."""
    try:
        client.disconnect()
    except Exception:  # noqa: BLE001, S110 - closing a broken client must not raise; it is dropped anyway
        pass
    client.loop_stop()


class Connection:
    """One MQTT connection driven from the event loop: `open` awaits the CONNACK, `publish` returns
    the packet id, PUBACKs come to `on_ack(mid, ok, reason)` on the loop, `lost` is set when the
    connection ends."""

    def __init__(self, endpoint: Endpoint, on_ack: Callable[[int, bool, str], None], mqtt5: bool = True,
                 will: tuple[str, str] | None = None, max_inflight: int = 20) -> None:
        self.endpoint, self.mqtt5 = endpoint, mqtt5
        self.loop = asyncio.get_running_loop()
        self.client = new_client(endpoint, mqtt5)
        self.lost = asyncio.Event()
        self.lost_reason = ""
        self.max_packet: int | None = None  # the broker's Maximum Packet Size (MQTT 5), if it announced one
        self._connack: asyncio.Future[None] = self.loop.create_future()
        self._waiting: dict[int, asyncio.Future[bool]] = {}
        self._on_ack = on_ack
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.client.max_inflight_messages_set(max_inflight)
        self.client.max_queued_messages_set(max_inflight)
        self.client.on_connect = self._paho_connect
        self.client.on_disconnect = self._paho_disconnect
        self.client.on_publish = self._paho_publish

    @property
    def established(self) -> bool:
        return self._connack.done() and not self._connack.cancelled() and self._connack.exception() is None

    async def open(self, timeout: float) -> None:
        """Raises BrokerError (unreachable, timed out) or BrokerRefused (CONNACK with a failure)."""
        where = f"{self.endpoint.host}:{self.endpoint.port}"
        try:
            await asyncio.wait_for(asyncio.to_thread(connect, self.client, self.endpoint, self.mqtt5), timeout)
        except TimeoutError as exc:
            raise BrokerDown(f"no TCP connection to {where} within {timeout:g} s") from exc
        self.client.loop_start()
        try:
            await asyncio.wait_for(asyncio.shield(self._connack), timeout)
        except TimeoutError as exc:
            raise BrokerError(f"no CONNACK from {where} within {timeout:g} s") from exc

    def publish(self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False) -> int | None:
        """The packet id; None when paho's queue is full (try later). Raises BrokerError when the
        connection is gone."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == paho.MQTT_ERR_QUEUE_SIZE:
            return None
        if info.rc != paho.MQTT_ERR_SUCCESS:
            self.lost.set()
            raise BrokerError(f"publish failed: {paho.error_string(info.rc)}")
        return info.mid

    async def published(self, mid: int, timeout: float) -> bool:
        """Wait for the PUBACK of `mid` (True: accepted), at most `timeout` s or until the link goes."""
        future = self._waiting.setdefault(mid, self.loop.create_future())
        lost: asyncio.Future[Any] = asyncio.ensure_future(self.lost.wait())
        try:
            done, _ = await asyncio.wait([future, lost], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        return future in done and future.result()

    async def close(self) -> None:
        await asyncio.to_thread(close_client, self.client)

    # ------------------------------------------------------------------ paho's thread -> the loop

    def _paho_connect(self, _c: Any, _u: Any, _flags: Any, reason: Any, properties: Any) -> None:
        max_packet = getattr(properties, "MaximumPacketSize", None) if properties else None
        self.loop.call_soon_threadsafe(self._connected, reason, max_packet)

    def _paho_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
        self.loop.call_soon_threadsafe(self._disconnected, str(reason))

    def _paho_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        self.loop.call_soon_threadsafe(self._acked, mid, not getattr(reason, "is_failure", False), str(reason))

    def _connected(self, reason: Any, max_packet: int | None) -> None:
        if self._connack.done():
            return
        if getattr(reason, "is_failure", False):
            code = getattr(reason, "value", 0)
            self._connack.set_exception(BrokerRefused(f"{reason} (CONNACK reason code 0x{code:02X})",
                                                      REFUSALS.get(code, "refused")))
        else:
            self.max_packet = max_packet
            self._connack.set_result(None)

    def _disconnected(self, reason: str) -> None:
        if not self._connack.done():
            self._connack.set_exception(BrokerError(f"connection closed before CONNACK: {reason}"))
        self.lost_reason = reason
        self.lost.set()

    def _acked(self, mid: int, ok: bool, reason: str) -> None:
        waiting = self._waiting.pop(mid, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(ok)
        self._on_ack(mid, ok, reason)


class Subscriber:
    """A subscriber on paho's thread (for `tail` and the test platform): `on_message` is called there;
    `subscribed` is set once the broker has acknowledged the subscription (a handshake for tests,
    instead of sleeping)."""

    def __init__(self, endpoint: Endpoint, topic: str, on_message: Callable[[Message], None],
                 session_expiry: int | None = None, tls_options: dict[str, Any] | None = None) -> None:
        self.client = new_client(endpoint)
        if tls_options:
            self.client.tls_set(**tls_options)
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda _c, _u, _mid, _codes, _p: self.subscribed.set()
        self.client.on_message = lambda _c, _u, message: on_message(message)
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]  # paho accepts floats
        connect(self.client, endpoint, session_expiry=session_expiry)
        self.client.loop_start()

    def wait_subscribed(self, timeout: float = 10.0) -> bool:
        return self.subscribed.wait(timeout)

    def close(self) -> None:
        close_client(self.client)
