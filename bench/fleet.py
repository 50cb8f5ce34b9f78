"""Fleet figures: the platform end under many gateways.

Real parts throughout: a private PostgreSQL cluster (durable: fsync on), a mosquitto, and
`edge-agent ingest` as its own process (so its CPU can be read from /proc). The simulated fleet
is G paho clients, each its own MQTT connection, driven from one thread by a selector (paho's
external-loop sockets callbacks), publishing real encoded batches of the reference park's meter
(bench/workload.py, via agent.batcher and agent.codec.encode): M meters x P points per gateway
in one batch per poll.

Phases:
1. capacity: every gateway publishes K batches at once (each connection keeps 10 in flight,
   like the agent's window); values/s stored, CPU per value of the ingest, PostgreSQL and the
   broker, disk bytes per stored value.
2. real time: every gateway publishes one batch per interval (spread over the interval), its
   readings stamped at publication; latency reading -> row (stored_at - the batch's newest reading).
3. JSON: the same readings as ThingsBoard-style JSON (`{"device": [{"ts", "values"}]}`, one
   message per device and poll) through the same broker: bytes and messages; and the CPU to
   turn either payload into rows, measured in one process over the same readings.
4. reconnect storm: the broker restarts; while it is away every gateway gathers a backlog; all
   reconnect at once and send it (flagged historical); time to CONNACK all, time until all
   stored, losses and duplicates.

From the measured per-value costs it computes how many ingest instances and PostgreSQL cores the
full fleet needs (1,000 gateways x 50 meters x 40 points every 10 s = 200,000 values/s).
`python -m bench.fleet --gateways G --meters M --points P --batches K --duration S` for other sizes.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import selectors
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import msgpack
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from agent.batcher import Batcher
from agent.codec import FLAG_HISTORICAL, FORMAT_VERSION, Header, WireSchema, decode, decode_header
from agent.types import Reading
from agent.wire import build_schema
from bench.report import Figure
from bench.workload import readings, setups
from ingest.devcluster import DevCluster
from ingest.rows import SampleColumns, SeriesRef, sample_columns
from testkit.broker import Broker

FULL_FLEET = (1000, 50, 40, 10)  # gateways, meters, points, interval s
TICK = os.sysconf("SC_CLK_TCK")
UTILISATION = 0.7  # plan instances to run at 70 % of a core at most


@dataclass(frozen=True)
class Size:
    gateways: int
    meters: int
    points: int
    interval: int  # s between polls (one batch per poll)
    batches: int  # per gateway in the capacity phase
    duration: int  # s of the real-time phase
    backlog: int  # batches per gateway gathered during the storm's outage


QUICK = Size(gateways=20, meters=50, points=40, interval=10, batches=8, duration=30, backlog=8)
FULL = Size(gateways=100, meters=50, points=40, interval=10, batches=10, duration=60, backlog=15)


# --------------------------------------------------------------------------- payloads


@dataclass
class Template:
    """Encoded batches of one gateway, re-addressed cheaply for each simulated gateway."""

    payloads: list[bytes]
    schema: WireSchema
    polls: list[list[Reading]]  # the readings of each batch (for the JSON comparison)

    def schema_for(self, gateway: str) -> WireSchema:
        return WireSchema(gateway, self.schema.devices)

    def batch(self, index: int, gateway: str, schema_id: int, epoch: int, seq: int, t0: int | None = None,
              historical: bool = False) -> bytes:
        """The template batch `index` as gateway's batch (epoch, seq), optionally moved to start at t0."""
        header, devices = decode_header(self.payloads[index % len(self.payloads)])
        return msgpack.packb([FORMAT_VERSION, FLAG_HISTORICAL if historical else 0, gateway, epoch, seq, schema_id,
                              header.t0 if t0 is None else t0, 0, 0, 0, None, devices], use_bin_type=True)

    @property
    def span_ms(self) -> int:
        """From a batch's first reading to its last (the register blocks are read 40 ms apart)."""
        stamps = [r.ts_ms for r in self.polls[0]]
        return max(stamps) - min(stamps)


def template(meters: int, points: int, polls: int, interval: int) -> Template:
    schema = build_schema("gw-template", setups(meters, interval=interval))
    keep = {p.name for p in schema.devices[0].points[:points]}
    rows = [r for r in readings(meters, polls, interval) if r.point in keep]
    per_poll = len(rows) // polls
    batcher = Batcher(schema)
    payloads, by_poll = [], []
    for poll in range(polls):
        chunk = rows[poll * per_poll:(poll + 1) * per_poll]
        batcher.add(chunk)
        sealed = batcher.seal(Header("gw-template", 1, poll + 1, 0, 0))
        assert sealed is not None
        payloads.append(sealed.encode(schema))
        by_poll.append(chunk)
    return Template(payloads, schema, by_poll)


def thingsboard_json(poll: list[Reading], ts_ms: int) -> list[tuple[str, bytes]]:
    """One ThingsBoard gateway-API message per device: (device, payload)."""
    by_device: dict[str, dict[str, object]] = {}
    for r in poll:
        by_device.setdefault(r.device, {})[r.point] = r.value
    return [(device, json.dumps({device: [{"ts": ts_ms, "values": values}]}).encode())
            for device, values in by_device.items()]


# --------------------------------------------------------------------------- the simulated fleet


class Fleet:
    """G paho clients on one thread: a selector over their sockets (paho's socket callbacks keep
    it up to date) and loop_read/loop_write/loop_misc, as paho documents for external loops."""

    def __init__(self, port: int, gateways: list[str], window: int = 10) -> None:
        self.port = port
        self.selector = selectors.DefaultSelector()
        self.acked = 0
        self.connacks = 0
        self.on_connect: Callable[[mqtt.Client], None] | None = None
        self.clients: list[mqtt.Client] = []
        for gateway in gateways:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=gateway, protocol=MQTTProtocolVersion.MQTTv5)
            client.max_inflight_messages_set(window)
            client.max_queued_messages_set(0)
            client.user_data_set(gateway)
            client.on_socket_open = self._on_socket_open
            client.on_socket_close = lambda c, u, sock: self._unregister(sock)
            client.on_socket_register_write = self._on_register_write
            client.on_socket_unregister_write = self._on_unregister_write
            client.on_publish = self._on_publish
            client.on_connect = self._on_connect
            self.clients.append(client)

    def _on_socket_open(self, client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        self.selector.register(sock, selectors.EVENT_READ, client)

    def _on_register_write(self, client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        self.selector.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, client)

    def _on_unregister_write(self, client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        self.selector.modify(sock, selectors.EVENT_READ, client)

    def _unregister(self, sock: Any) -> None:
        try:
            self.selector.unregister(sock)
        except (KeyError, ValueError):
            pass

    def _on_publish(self, *_args: Any) -> None:
        self.acked += 1

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            self.connacks += 1
            if self.on_connect:
                self.on_connect(client)

    def connect_all(self) -> None:
        for client in self.clients:
            client.connect("127.0.0.1", self.port, keepalive=60)

    def reconnect_all(self) -> None:
        for client in self.clients:
            try:
                client.reconnect()
            except OSError:
                pass

    def pump(self, until: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        last_misc = 0.0
        while time.monotonic() < deadline:
            if until():
                return True
            for key, mask in self.selector.select(timeout=0.05):
                client = key.data
                if mask & selectors.EVENT_READ:
                    client.loop_read()
                if mask & selectors.EVENT_WRITE:
                    client.loop_write()
            if time.monotonic() - last_misc > 0.5:
                last_misc = time.monotonic()
                for client in self.clients:
                    client.loop_misc()
        return until()

    def close(self) -> None:
        for client in self.clients:
            client.disconnect()
        self.pump(lambda: False, 0.3)


# --------------------------------------------------------------------------- CPU accounting


def cpu_of(pid: int) -> float:
    """CPU seconds of a process, plus those of its waited-for children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / TICK


def cpu_of_tree(root: int) -> float:
    """A process and its live children (PostgreSQL: postmaster and its backends)."""
    total = cpu_of(root)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == root:
            total += sum(int(x) for x in fields[11:13]) / TICK
    return total


class Meter:
    """CPU seconds of the ingest, PostgreSQL and the broker between start() and stop()."""

    def __init__(self, ingest: int, postgres: int, broker: int) -> None:
        self.pids = (ingest, postgres, broker)
        self.start_values = (0.0, 0.0, 0.0)
        self.wall = 0.0

    def read(self) -> tuple[float, float, float]:
        return cpu_of(self.pids[0]), cpu_of_tree(self.pids[1]), cpu_of(self.pids[2])

    def start(self) -> None:
        self.start_values = self.read()
        self.wall = time.monotonic()

    def stop(self) -> tuple[float, float, float, float]:
        """(ingest, postgres, broker CPU s, wall s)."""
        now = self.read()
        return (*(b - a for a, b in zip(self.start_values, now, strict=True)), time.monotonic() - self.wall)  # type: ignore[return-value]


# --------------------------------------------------------------------------- the run


class Rig:
    def __init__(self, root: Path, size: Size) -> None:
        self.size = size
        self.pg = DevCluster(durable=True).start()
        (root / "broker").mkdir()
        self.broker = Broker(root / "broker").start()
        assert self.broker.proc is not None
        self.log = open(root / "ingest.log", "w")  # noqa: SIM115 - closed in close()
        self.ingest = subprocess.Popen(
            [str(Path(sys.executable).parent / "edge-agent"), "ingest", "--broker", f"mqtt://127.0.0.1:{self.broker.port}",
             "--db", self.pg.dsn(), "--client-id", "ingest-bench", "--chunk", "50", "--exclusive"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.db = psycopg.connect(self.pg.dsn(), autocommit=True)
        self.gateways = [f"gw-{i:04d}" for i in range(size.gateways)]
        self.fleet = Fleet(self.broker.port, self.gateways)

    def meter(self) -> Meter:
        assert self.broker.proc is not None
        return Meter(self.ingest.pid, self.pg.postmaster_pid() or 0, self.broker.proc.pid)

    def scalar(self, query: str, params: Any = None) -> Any:
        row = self.db.execute(query, params).fetchone()
        return None if row is None else row[0]

    def wait_stored(self, epoch: int, batches: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stored(epoch) >= batches:
                return True
            self.fleet.pump(lambda: False, 0.2)
        return self.stored(epoch) >= batches

    def stored(self, epoch: int) -> int:
        return int(self.scalar("SELECT count(*) FROM batches WHERE epoch = %s", (epoch,)) or 0)

    def close(self) -> None:
        self.fleet.close()
        self.ingest.terminate()
        try:
            self.ingest.wait(20)
        except subprocess.TimeoutExpired:
            self.ingest.kill()
        self.db.close()
        self.log.close()
        self.broker.stop()
        self.pg.destroy()


def run(quick: bool = False, size: Size | None = None) -> list[Figure]:
    size = size or (QUICK if quick else FULL)
    tpl = template(size.meters, size.points, max(size.batches, size.backlog, 3), size.interval)
    values_per_batch = len(tpl.polls[0])
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="bench-fleet-", dir=os.environ.get("BENCH_DIR", "/var/tmp")) as tmp:
        rig = Rig(Path(tmp), size)
        try:
            schemas = {g: tpl.schema_for(g) for g in rig.gateways}
            _setup(rig, schemas)
            figures += _capacity(rig, tpl, schemas, values_per_batch)
            figures += _real_time(rig, tpl, schemas)
            figures += _json(rig, tpl, schemas, values_per_batch, figures)
            figures = _with_json_baseline(figures)
            figures += _storm(rig, tpl, schemas, values_per_batch, figures)
        finally:
            rig.close()
    return figures


def _setup(rig: Rig, schemas: dict[str, WireSchema]) -> None:
    rig.fleet.connect_all()
    if not rig.fleet.pump(lambda: rig.fleet.connacks == len(rig.gateways), 60):
        raise RuntimeError(f"only {rig.fleet.connacks} of {len(rig.gateways)} gateways connected")
    for gateway, client in zip(rig.gateways, rig.fleet.clients, strict=True):
        client.publish(f"park/bench/{gateway}/schema", schemas[gateway].to_json(), qos=1, retain=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (rig.scalar("SELECT to_regclass('schemas') IS NOT NULL") is not True
                                           or rig.scalar("SELECT count(*) FROM schemas") < len(schemas)):
        rig.fleet.pump(lambda: False, 0.2)
    if rig.scalar("SELECT count(*) FROM schemas") < len(schemas):
        raise RuntimeError("the ingest did not store the schemas: see ingest.log")


def _capacity(rig: Rig, tpl: Template, schemas: dict[str, WireSchema], per_batch: int) -> list[Figure]:
    size = rig.size
    # warm-up: one batch per gateway (partition created, caches filled), not measured
    _publish_all(rig, tpl, schemas, epoch=1, count=1)
    rig.wait_stored(1, len(rig.gateways), 120)
    size_before = _db_bytes(rig)
    meter = rig.meter()
    acked_before = rig.fleet.acked
    meter.start()
    _publish_all(rig, tpl, schemas, epoch=1, count=size.batches, first_seq=2)
    total = len(rig.gateways) * (size.batches + 1)
    done = rig.wait_stored(1, total, 600)
    ingest_cpu, pg_cpu, broker_cpu, wall = meter.stop()
    values = len(rig.gateways) * size.batches * per_batch
    stored_values = int(rig.scalar("SELECT count(*) FROM samples"))
    parts = [(b - a) / values for a, b in zip(size_before, _db_bytes(rig), strict=True)]
    disk = sum(parts)
    msgs = rig.fleet.acked - acked_before
    full_values = FULL_FLEET[0] * FULL_FLEET[1] * FULL_FLEET[2] / FULL_FLEET[3]
    ingest_us = ingest_cpu / values * 1e6
    pg_us = pg_cpu / values * 1e6
    instances = math.ceil(full_values * ingest_cpu / values / UTILISATION)
    pg_cores = full_values * pg_cpu / values / UTILISATION
    scale = f"{len(rig.gateways)} gateways x {size.meters} meters x {size.points} points, {size.batches} batches each"
    return [
        Figure("fleet: ingest values/s (wall, 2 shared cores)", values / wall, "values/s", 20_000, True,
               note=f"{scale}; {'all stored' if done else 'NOT all stored'}; {stored_values} rows in total; "
                    "broker, PostgreSQL, ingest and the simulator share the 2 cores"),
        Figure("fleet: rows/s into PostgreSQL", values / wall, "rows/s", 20_000, True,
               note="one row per value (samples)"),
        Figure("fleet: ingest CPU per value", ingest_us, "us/value", 35.0,
               note=f"{ingest_cpu:.1f} CPU s; target: one core at 70 % takes 20,000 values/s"),
        Figure("fleet: PostgreSQL CPU per value", pg_us, "us/value", 35.0,
               note=f"{pg_cpu:.1f} CPU s (postmaster and backends, fsync on)"),
        Figure("fleet: broker CPU per value (msgpack batches)", broker_cpu / values * 1e6, "us/value",
               note=f"{broker_cpu:.2f} CPU s"),
        Figure("fleet: broker msgs/s (msgpack batches)", msgs / wall, "msgs/s",
               note=f"{per_batch} values per message; full fleet: {FULL_FLEET[0] / FULL_FLEET[3]:.0f} msgs/s; "
                    f"baseline: ThingsBoard JSON, one message per meter: {msgs / wall * size.meters:.0f} msgs/s here, "
                    f"{FULL_FLEET[0] * FULL_FLEET[1] / FULL_FLEET[3]:.0f} for the full fleet"),
        Figure("fleet: disk bytes per stored value", disk, "B/value", 64.0,
               note=f"samples rows {parts[0]:.1f} + their indexes {parts[1]:.1f} ((series, ts) b-tree, BRIN) + "
                    f"batches {parts[2]:.1f}; target: 200,000 values/s under 1.1 TB a day"),
        Figure("fleet: ingest instances for the full fleet", instances, "instances", 10.0,
               note=f"1,000 x 50 x 40 every 10 s = {full_values:,.0f} values/s x {ingest_us:.1f} us / 0.7 of a core; "
                    "target: 10"),
        Figure("fleet: PostgreSQL cores for the full fleet", pg_cores, "cores", 16.0,
               note=f"{full_values:,.0f} values/s x {pg_us:.1f} us / 0.7; disk "
                    f"{full_values * disk * 86400 / 1e12:.2f} TB/day; target: one 16-core server"),
    ]


def _publish_all(rig: Rig, tpl: Template, schemas: dict[str, WireSchema], epoch: int, count: int,
                 first_seq: int = 1, historical: bool = False) -> None:
    for gateway, client in zip(rig.gateways, rig.fleet.clients, strict=True):
        for i in range(count):
            payload = tpl.batch(i, gateway, schemas[gateway].id, epoch, first_seq + i, historical=historical)
            client.publish(f"park/bench/{gateway}/telemetry", payload, qos=1)


def _real_time(rig: Rig, tpl: Template, schemas: dict[str, WireSchema]) -> list[Figure]:
    size = rig.size
    gateways = list(zip(rig.gateways, rig.fleet.clients, strict=True))
    step = size.interval / len(gateways)
    start = time.monotonic()
    sent = 0
    rounds = max(1, size.duration // size.interval)
    for r in range(rounds):
        for i, (gateway, client) in enumerate(gateways):
            due = start + r * size.interval + i * step
            rig.fleet.pump(functools.partial(_past, due), due - time.monotonic() + 1)
            t0 = int(time.time() * 1000) - tpl.span_ms  # the poll just finished: its newest reading is now
            client.publish(f"park/bench/{gateway}/telemetry",
                           tpl.batch(r, gateway, schemas[gateway].id, 2, r + 1, t0=t0), qos=1)
            sent += 1
    rig.wait_stored(2, sent, 120)
    lat = [float(x[0]) for x in rig.db.execute(
        "SELECT extract(epoch FROM stored_at - t_last) FROM batches WHERE epoch = 2").fetchall()]
    if len(lat) < 2:
        return [Figure("fleet: latency reading->row p50", float("nan"), "s", 2.0, note="too few batches stored")]
    p95 = statistics.quantiles(lat, n=20)[-1]
    note = (f"{len(lat)} batches, {len(gateways)} gateways each one per {size.interval} s; from the batch's newest "
            "reading (published at once) to its row; the agent's batch window adds up to mqtt.batch_interval")
    return [Figure("fleet: latency reading->row p50", statistics.median(lat), "s", 1.0, note=note),
            Figure("fleet: latency reading->row p95", p95, "s", 2.0, note=note)]


def _json(rig: Rig, tpl: Template, schemas: dict[str, WireSchema], per_batch: int,
          earlier: list[Figure]) -> list[Figure]:
    """The same readings as ThingsBoard-style JSON through the same broker (to a counting
    subscriber), and the CPU to turn each form into rows."""
    polls = min(3, len(tpl.polls))
    messages = [(device, body) for poll in tpl.polls[:polls] for device, body in thingsboard_json(poll, poll[0].ts_ms)]
    json_bytes = sum(len(b) for _, b in messages) / polls
    mp_bytes = sum(len(tpl.payloads[i]) for i in range(polls)) / polls
    counter = _Counter(rig.broker.port)
    meter = rig.meter()
    acked_before = rig.fleet.acked
    meter.start()
    for gateway, client in zip(rig.gateways, rig.fleet.clients, strict=True):
        for device, body in messages:
            client.publish(f"tb/{gateway}/{device}", body, qos=1)
    expected = len(messages) * len(rig.gateways)
    rig.fleet.pump(lambda: rig.fleet.acked - acked_before >= expected and counter.count >= expected, 300)
    _, _, broker_cpu, wall = meter.stop()
    counter.close()
    values = per_batch * polls * len(rig.gateways)
    json_decode, mp_decode = _decode_costs(tpl, polls)
    mp_broker = next((f.value for f in earlier if f.name.startswith("fleet: broker CPU per value")), None)
    return [
        Figure("fleet: broker bytes per value, msgpack batch", mp_bytes / per_batch, "B/value",
               note=f"baseline: ThingsBoard JSON {json_bytes / per_batch:.1f} B/value "
                    f"({json_bytes / mp_bytes:.1f}x larger)"),
        Figure("fleet: broker CPU per value, ThingsBoard JSON", broker_cpu / values * 1e6, "us/value",
               note=f"the baseline of the msgpack figure ({float('nan') if mp_broker is None else mp_broker:.2f} us/value); "
                    f"{len(messages) // polls} messages per gateway and poll instead of 1, {expected / wall:.0f} msgs/s"),
        Figure("fleet: decode to rows, msgpack (CPU per value)", mp_decode * 1e6, "us/value", json_decode * 1e6,
               note=f"agent.codec.decode + ingest.rows; baseline: JSON {json_decode * 1e6:.2f} us/value "
                    "(json.loads + the same rows)"),
    ]


class _Counter:
    def __init__(self, port: int) -> None:
        self.count = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="tb-counter", protocol=MQTTProtocolVersion.MQTTv5)
        self.subscribed = False
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("tb/#", qos=1)
        self.client.on_subscribe = lambda *_a: setattr(self, "subscribed", True)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, 30)
        self.client.loop_start()
        deadline = time.monotonic() + 10
        while not self.subscribed and time.monotonic() < deadline:  # the SUBACK, before anything is published
            time.sleep(0.02)

    def _on_message(self, *_a: Any) -> None:
        self.count += 1

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _decode_costs(tpl: Template, polls: int) -> tuple[float, float]:
    """CPU seconds per value: (JSON -> rows, msgpack -> rows), same readings, best of 3."""
    series = {(d.id, p.name): SeriesRef(i * 100 + j, p.kind) for i, d in enumerate(tpl.schema.devices)
              for j, p in enumerate(d.points)}
    bodies = [b for poll in tpl.polls[:polls] for _, b in thingsboard_json(poll, poll[0].ts_ms)]
    values = sum(len(p) for p in tpl.polls[:polls])

    def json_rows() -> None:  # the same columns as ingest.rows.sample_columns makes
        for body in bodies:
            for device, entries in json.loads(body).items():
                out = SampleColumns()
                for entry in entries:
                    ts = entry["ts"]
                    for point, value in entry["values"].items():
                        out.series.append(series[(device, point)].id)
                        out.ts_ms.append(ts)
                        out.value.append(float(value))
                        out.text.append(None)
                        out.quality.append(0)
                        out.detail.append(None)

    def mp_rows() -> None:
        for payload in tpl.payloads[:polls]:
            sample_columns(decode(payload, tpl.schema), series)

    def best(fn: Callable[[], None]) -> float:
        times = []
        for _ in range(3):
            t = time.process_time()
            fn()
            times.append(time.process_time() - t)
        return min(times) / values

    return best(json_rows), best(mp_rows)


def _storm(rig: Rig, tpl: Template, schemas: dict[str, WireSchema], per_batch: int,
           earlier: list[Figure]) -> list[Figure]:
    size = rig.size
    rig.broker.stop()  # SIGTERM: mosquitto saves the ingest's persistent session
    rig.fleet.pump(lambda: False, 1.0)  # the clients see their sockets close
    backlog = {g: [tpl.batch(i, g, schemas[g].id, 3, i + 1, historical=True) for i in range(size.backlog)]
               for g in rig.gateways}
    rig.broker.start()  # same port
    meter = rig.meter()
    meter.start()
    connacks_before = rig.fleet.connacks
    t_restart = time.monotonic()

    def send_backlog(client: mqtt.Client) -> None:
        gateway = client.user_data_get()
        for payload in backlog.pop(gateway, []):
            client.publish(f"park/bench/{gateway}/telemetry", payload, qos=1)

    rig.fleet.on_connect = send_backlog
    rig.fleet.reconnect_all()  # all at once
    rig.fleet.pump(lambda: rig.fleet.connacks - connacks_before >= len(rig.gateways), 120)
    t_connected = time.monotonic() - t_restart
    total = len(rig.gateways) * size.backlog
    done = rig.wait_stored(3, total, 600)
    _ingest_cpu, _pg_cpu, _, wall = meter.stop()
    stored = rig.stored(3)
    samples = int(rig.scalar("SELECT coalesce(sum(readings), 0) FROM batches WHERE epoch = 3"))
    capacity = next((f.value for f in earlier if f.name.startswith("fleet: ingest values/s")), None)
    return [
        Figure("fleet: storm, all gateways reconnected", t_connected, "s", 10.0,
               note=f"{len(rig.gateways)} connections at once after a broker restart"),
        Figure("fleet: storm, backlog stored", wall, "s", size.backlog * size.interval / 2,
               note=f"{total} batches ({total * per_batch:,} values) of {size.backlog * size.interval} s of outage; "
                    f"{'all' if done else 'NOT all'} stored; target: half the outage"),
        Figure("fleet: storm, values/s", total * per_batch / wall, "values/s", capacity, True,
               note="target: the capacity phase's rate"),
        Figure("fleet: storm, batches lost", total - stored, "batches", 0.0, note=f"{stored} of {total} stored"),
        Figure("fleet: storm, readings stored twice", samples - stored * per_batch, "values", 0.0,
               note="dedup by (gateway, epoch, seq)"),
    ]


def _with_json_baseline(figures: list[Figure]) -> list[Figure]:
    """The msgpack broker figures get the JSON run's as their baseline (measured after them)."""
    by_name = {f.name: f for f in figures}
    json_cpu = by_name.get("fleet: broker CPU per value, ThingsBoard JSON")
    out = []
    for f in figures:
        if f.name == "fleet: broker CPU per value (msgpack batches)" and json_cpu is not None:
            more = f"{json_cpu.value / f.value:.1f}x more" if f.value else "too short to measure"
            f = replace(f, target=json_cpu.value, note=f"{f.note}; target: below JSON's {json_cpu.value:.2f} ({more})")
        out.append(f)
    return out


def _db_bytes(rig: Rig) -> tuple[int, int, int]:
    """(samples heap, samples indexes, batches table with its indexes) in bytes."""
    heap, indexes = rig.db.execute("SELECT coalesce(sum(pg_table_size(relid)), 0), coalesce(sum(pg_indexes_size(relid)), 0)"
                                   " FROM pg_partition_tree('samples') WHERE isleaf").fetchone()  # type: ignore[misc]
    return int(heap), int(indexes), int(rig.scalar("SELECT pg_total_relation_size('batches')") or 0)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__.split("\n")[0])
    parser.add_argument("--gateways", type=int, default=QUICK.gateways)
    parser.add_argument("--meters", type=int, default=QUICK.meters)
    parser.add_argument("--points", type=int, default=QUICK.points, help="per meter, at most 40")
    parser.add_argument("--interval", type=int, default=QUICK.interval, help="s between polls (one batch each)")
    parser.add_argument("--batches", type=int, default=QUICK.batches, help="per gateway in the capacity phase")
    parser.add_argument("--duration", type=int, default=QUICK.duration, help="s of the real-time phase")
    parser.add_argument("--backlog", type=int, default=QUICK.backlog, help="batches per gateway in the storm")
    args = parser.parse_args()
    size = Size(args.gateways, args.meters, min(args.points, 40), args.interval, args.batches, args.duration,
                args.backlog)
    for figure in run(size=size):
        print(figure.row(), flush=True)
    return 0


def _past(due: float) -> bool:
    return time.monotonic() >= due


if __name__ == "__main__":
    sys.exit(main())
