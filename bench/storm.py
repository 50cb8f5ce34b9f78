"""Reconnect storm: a fleet of gateways loses its broker at once and comes back when it does.

N gateways (1,000) share one event loop; each is the agent's own reconnect policy (the backoff and
probe delays of `agent.delivery.DeliveryCore`, the wait of `Publisher._back_off`) driving a light
MQTT 3.1.1 client on asyncio streams (CONNECT, QoS 1 PUBLISH of its backlog with a window of 10,
PUBACKs), against a real mosquitto. All are connected; the broker stops (every session drops at the
same instant), stays away for the outage, and starts again on the same port.

Reported per policy: TCP connection attempts per second at the broker after it is back (probes and
MQTT connects; peak 1 s bucket and mean), MQTT CONNECTs per second (the expensive part once TLS is
on), and the time from the broker accepting connections to the first and to the last gateway
having delivered its whole backlog. Policies:

- probes (the default): one reconnect after a 0.5-1 s jittered wait; while the port refuses
  connections, a TCP probe every 1-3 s (uniform), a connect as soon as one is accepted;
- backoff, jitter 50-100 %, cap 60 s, no probes (the agent before probes);
- backoff, no jitter, cap 60 s (every gateway at the same instants);
- backoff, full jitter (0-100 %), cap 60 s; and cap 10 s.
"""

from __future__ import annotations

import asyncio
import random
import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent.delivery import DeliveryCore
from bench.report import Figure
from testkit.broker import Broker

WINDOW = 10
PAYLOAD = bytes(1200)  # about one encoded 10-meter batch


@dataclass(frozen=True)
class Policy:
    name: str
    probes: bool
    jitter: Callable[[float, float], float]
    backoff_max: float = 60.0


POLICIES = [
    Policy("probes 1-3 s (default)", True, random.uniform),
    Policy("backoff 50-100 % jitter, cap 60 s", False, random.uniform),
    Policy("backoff no jitter, cap 60 s", False, lambda _low, high: high),
    Policy("backoff full jitter, cap 60 s", False, lambda _low, high: random.uniform(0.0, high)),
    Policy("backoff full jitter, cap 10 s", False, lambda _low, high: random.uniform(0.0, high), 10.0),
]


@dataclass
class Tally:
    attempts: list[float] = field(default_factory=list)  # monotonic time of each TCP connect attempt
    connects: list[float] = field(default_factory=list)  # ... of each MQTT CONNECT sent
    delivered: list[float] = field(default_factory=list)  # ... when a gateway's backlog was all acknowledged


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + _varint(len(body)) + body


def _string(s: str) -> bytes:
    return struct.pack("!H", len(s)) + s.encode()


async def _read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    kind = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return kind, await reader.readexactly(length)


class Gateway:
    """One gateway's reconnect policy and its light MQTT client."""

    def __init__(self, name: str, port: int, policy: Policy, tally: Tally) -> None:
        self.name, self.port, self.policy, self.tally = name, port, policy, tally
        self.core = DeliveryCore(WINDOW, 50.0, 30.0, backoff_max=policy.backoff_max, jitter=policy.jitter)
        self.backlog = 0
        self.connected = asyncio.Event()
        self.lost = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        broker_down = False
        while not stop.is_set():
            try:
                await self._session()
                broker_down = False
            except ConnectionRefusedError:
                broker_down = True
            except (OSError, asyncio.IncompleteReadError):
                broker_down = False
            if stop.is_set():
                return
            await self._back_off(self.core.reconnect_delay(), broker_down and self.policy.probes)

    async def _back_off(self, delay: float, probing: bool) -> None:
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, self.core.probe_delay()) if probing else left)
            if probing:
                self.tally.attempts.append(time.monotonic())
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                except OSError:
                    continue
                writer.close()
                return

    async def _session(self) -> None:
        self.tally.attempts.append(time.monotonic())
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            self.tally.connects.append(time.monotonic())
            flags_keepalive = bytes([0x02]) + struct.pack("!H", 60)  # clean session
            writer.write(_packet(0x10, _string("MQTT") + bytes([4]) + flags_keepalive + _string(self.name)))
            kind, body = await _read_packet(reader)
            if kind >> 4 != 2 or body[1] != 0:
                raise OSError(f"refused: {body!r}")
            self.core.session_started(time.monotonic())
            self.connected.set()
            await self._drain(reader, writer)
            self.tally.delivered.append(time.monotonic())
            self.lost.clear()
            await reader.read()  # until the broker goes away
            raise OSError("lost")
        finally:
            self.connected.clear()
            self.lost.set()
            writer.close()

    async def _drain(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The backlog with at most WINDOW in flight, at the default drain rate (50 batches/s)."""
        topic = _string(f"park/storm/{self.name}/telemetry")
        sent = acked = 0
        total = self.backlog
        while acked < total:
            while sent < total and sent - acked < WINDOW and self.core.backlog_room(time.monotonic()) > 0:
                sent += 1
                writer.write(_packet(0x32, topic + struct.pack("!H", sent) + PAYLOAD))
                self.core.sent(sent, sent, True, time.monotonic())
            wake = self.core.next_wakeup(time.monotonic(), sent < total)
            try:
                kind, body = await asyncio.wait_for(_read_packet(reader), timeout=max(wake, 0.01))
            except TimeoutError:
                continue
            if kind >> 4 == 4:
                self.core.acked(struct.unpack("!H", body[:2])[0])
                acked += 1
        self.backlog = 0


async def _storm(policy: Policy, gateways: int, outage: float, backlog: int, root: Path) -> dict[str, float]:
    broker = Broker(root).start()
    tally = Tally()
    fleet = [Gateway(f"gw{i:04d}", broker.port, policy, tally) for i in range(gateways)]
    stop = asyncio.Event()
    tasks = []
    for gateway in fleet:  # connected before the outage, a few at a time as a fleet would have been
        tasks.append(asyncio.create_task(gateway.run(stop)))
        await asyncio.sleep(0.002)
    await asyncio.wait_for(asyncio.gather(*(g.connected.wait() for g in fleet)), 120)
    for gateway in fleet:
        gateway.backlog = backlog
    await asyncio.to_thread(broker.stop)
    await asyncio.wait_for(asyncio.gather(*(g.lost.wait() for g in fleet)), 30)
    await asyncio.sleep(outage)
    down_attempts = len(tally.attempts)
    tally.attempts.clear()
    tally.connects.clear()
    tally.delivered.clear()
    await asyncio.to_thread(broker.start)
    up = time.monotonic()
    limit = up + 2 * policy.backoff_max + 60
    while len(tally.delivered) < gateways and time.monotonic() < limit:
        await asyncio.sleep(0.05)
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.to_thread(broker.stop)
    after = [t - up for t in tally.attempts if t >= up]
    connects = [t - up for t in tally.connects if t >= up]
    last = max(tally.delivered, default=up) - up
    span = max(1.0, last)
    return {"peak_attempts": _peak(after), "mean_attempts": len([t for t in after if t <= span]) / span,
            "peak_connects": _peak(connects), "first": min(tally.delivered, default=float("inf")) - up,
            "all": last if len(tally.delivered) == gateways else float("inf"),
            "delivered": float(len(tally.delivered)), "attempts_down": float(down_attempts)}


def _peak(times: list[float]) -> float:
    buckets: dict[int, int] = {}
    for t in times:
        buckets[int(t)] = buckets.get(int(t), 0) + 1
    return float(max(buckets.values(), default=0))


def run(quick: bool = False, gateways: int = 1000) -> list[Figure]:
    outage = 10.0 if quick else 60.0
    backlog = 5 if quick else 30  # batches per gateway: one per 2 s of the outage
    policies = POLICIES[:2] if quick else POLICIES
    figures = []
    for policy in policies:  # one run each: a storm is minutes long, and the policies differ by factors
        r = _one(policy, gateways, outage, backlog)
        note = (f"{gateways} gateways, {outage:.0f} s outage, {backlog} batches each; attempts/s peak "
                f"{r['peak_attempts']:.0f}, mean {r['mean_attempts']:.0f}; CONNECTs/s peak {r['peak_connects']:.0f}; "
                f"first delivery {r['first']:.2f} s; {r['delivered']:.0f} delivered")
        figures.append(Figure(f"storm: all delivered, {policy.name}", r["all"], "s", 10.0, note=note))
        figures.append(Figure(f"storm: attempts/s peak, {policy.name}", r["peak_attempts"], "1/s"))
    return figures


def _one(policy: Policy, gateways: int, outage: float, backlog: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-storm-") as tmp:
        return asyncio.run(_storm(policy, gateways, outage, backlog, Path(tmp)))


if __name__ == "__main__":
    import sys

    quick = "--quick" in sys.argv
    for figure in run(quick=quick, gateways=int(sys.argv[-1]) if sys.argv[-1].isdigit() else 1000):
        print(figure.row())
