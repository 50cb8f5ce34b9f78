"""Delivery against a real mosquitto: round trip, outage, refusal, black hole, last will."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.buffer import Ring, Spool, Store
from agent.codec import FLAG_HISTORICAL, decode_header
from agent.config.models import BufferMode
from testkit.broker import Broker
from tests.mqtt.harness import BASE, Subscriber, make_batch, open_spool, publisher, wait_for

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def broker(tmp_path: Path):  # type: ignore[no-untyped-def]
    b = Broker(tmp_path / "broker-data")
    b.directory.mkdir()
    b.start()
    yield b
    b.stop()


def test_round_trip_live_batches_decode_and_status_is_retained(broker: Broker, tmp_path: Path) -> None:
    sub = Subscriber(broker.port)

    async def scenario() -> tuple[int, int]:
        ring, spool = open_spool(tmp_path / "buf")
        pub = publisher(broker.port, spool)
        task = asyncio.create_task(pub.run())
        assert await wait_for(pub.connected.is_set, 10)
        for row in range(30):
            spool.add(make_batch(ring, row))
            pub.nudge()
            await asyncio.sleep(0.01)
        assert await wait_for(lambda: len(set(sub.seqs)) == 30 and spool.in_memory == 0, 10)
        await pub.stop()
        task.cancel()
        commits = spool.commits
        ring.close()
        return commits, pub.stats.acked

    commits, acked = asyncio.run(scenario())
    sub.close()
    assert sorted(set(sub.seqs)) == list(range(1, 31)) and acked == 30
    assert commits == 0  # outage mode, online: not one write to the card
    readings = sub.readings()
    assert len(readings) == 30 * 9 and readings[0].point == "voltage_l1" and readings[0].value == 230.0
    assert sub.status[0]["state"] == "online" and sub.status[-1] == {"state": "offline", "reason": "shutdown"}
    assert sub.schema is not None and json.loads(sub.schema)["devices"][0]["id"] == "main-incomer"


def test_broker_restart_mid_stream_loses_nothing(broker: Broker, tmp_path: Path) -> None:
    """Batches keep coming while the broker is down for 2 s: all arrive, duplicates within the window."""
    sub = Subscriber(broker.port)
    window = 10

    async def scenario() -> int:
        ring, spool = open_spool(tmp_path / "buf")
        pub = publisher(broker.port, spool, window=window)
        task = asyncio.create_task(pub.run())
        assert await wait_for(pub.connected.is_set, 10)
        produced = 0
        for row in range(120):
            if row == 30:
                await asyncio.to_thread(broker.stop)
            if row == 70:
                await asyncio.to_thread(broker.start)
            spool.add(make_batch(ring, row))
            produced += 1
            pub.nudge()
            await asyncio.sleep(0.05)
        assert await wait_for(lambda: len(set(sub.seqs)) == produced, 30), (len(set(sub.seqs)), produced)
        assert await wait_for(lambda: ring.stats().batches - ring.pending_acks == 0 and spool.in_memory == 0, 20)
        assert pub.stats.historical > 0  # what waited on disk went out flagged historical
        assert pub.stats.connects == 2  # one reconnection after the restart, no churn
        await pub.stop()
        task.cancel()
        ring.close()
        return produced

    produced = asyncio.run(scenario())
    sub.close()
    assert sorted(set(sub.seqs)) == list(range(1, produced + 1))
    from collections import Counter
    doubled = sorted(seq for seq, n in Counter(sub.seqs).items() if n > 1)
    assert sub.duplicates() <= window, doubled


def test_publish_refused_by_acl_keeps_the_batches_and_raises_an_event(tmp_path: Path) -> None:
    directory = tmp_path / "broker-data"
    directory.mkdir()
    acl = f"topic read {BASE}/#\ntopic write {BASE}/events\ntopic write {BASE}/status\ntopic write {BASE}/schema\n"
    broker = Broker(directory, acl=acl).start()
    try:
        sub = Subscriber(broker.port)

        async def scenario() -> tuple[int, int, list]:
            ring, spool = open_spool(tmp_path / "buf")
            pub = publisher(broker.port, spool)
            task = asyncio.create_task(pub.run())
            assert await wait_for(pub.connected.is_set, 10)
            for row in range(3):
                spool.add(make_batch(ring, row))
            pub.nudge()
            assert await wait_for(lambda: pub.stats.refused >= 3, 10)
            await pub.stop()
            task.cancel()
            kept = ring.stats().batches
            ring.close()
            return kept, pub.stats.acked, list(sub.events)

        kept, acked, events = asyncio.run(scenario())
        sub.close()
        assert acked == 0 and kept == 3  # a refusal is not an acknowledgement: all three stay on disk
        assert sub.seqs == []
        refused = [e for e in events if e["event"] == "publish_refused"]
        assert refused and "authorized" in refused[0]["reason"].lower()
    finally:
        broker.stop()


def test_every_batch_either_arrives_or_is_announced_lost(broker: Broker, tmp_path: Path) -> None:
    """A buffer too small for the outage evicts its oldest batches; once back, the platform gets one
    `data_dropped` event per stretch of lost seqs, with the time span those batches held. The
    agent reaches the broker through a proxy (a load balancer) that accepts and closes while the
    broker is down: those failed attempts are not reported as disconnections."""
    from testkit.proxy import BlackHoleProxy

    sub = Subscriber(broker.port)
    proxy = BlackHoleProxy(broker.port)

    async def scenario() -> tuple[dict[int, tuple[int, int]], Ring]:
        ring, spool = open_spool(tmp_path / "buf", max_bytes=4 * 1024)
        pub = publisher(proxy.port, spool)
        task = asyncio.create_task(pub.run())
        assert await wait_for(pub.connected.is_set, 10)
        spans = {}
        for row in range(60):
            if row == 10:
                await asyncio.to_thread(broker.stop)
            if row == 50:
                await asyncio.to_thread(broker.start)
            batch = make_batch(ring, row)
            spans[batch.seq] = (batch.t_first, batch.t_last)
            spool.add(batch)
            pub.nudge()
            await asyncio.sleep(0.05)
        assert await wait_for(lambda: ring.stats().batches - ring.pending_acks == 0 and spool.in_memory == 0, 30)
        assert await wait_for(lambda: any(e["event"] == "data_dropped" for e in sub.events), 10)
        await pub.stop()
        task.cancel()
        ring.close()
        return spans, ring

    spans, ring = asyncio.run(scenario())
    sub.close()
    proxy.close()
    assert proxy.connections >= 3  # attempts were made while the broker was down
    drops = [e for e in sub.events if e["event"] == "data_dropped"]
    announced = {seq for e in drops for seq in range(e["seqs"][0], e["seqs"][1] + 1)}
    arrived = set(sub.seqs)
    assert announced and not announced & arrived
    assert arrived | announced == set(spans)  # nothing vanished unannounced
    for event in drops:
        first, last = event["seqs"]
        assert (event["from_ms"], event["to_ms"]) == (spans[first][0], spans[last][1])
        assert event["batches"] == last - first + 1 and event["readings"] == 9 * event["batches"]
    assert len(drops) == 1  # one outage, one stretch of lost data: one event
    assert [e["event"] for e in sub.events].count("broker_disconnected") == 1  # not one per failed attempt
    assert drops[-1]["dropped_total"] == ring.dropped_total == 9 * len(announced)


LAST_WILL_CHILD = """
import asyncio, sys
sys.path.insert(0, sys.argv[2])
from tests.mqtt.harness import open_spool, publisher
from pathlib import Path
async def main():
    ring, spool = open_spool(Path(sys.argv[3]))
    pub = publisher(int(sys.argv[1]), spool)
    task = asyncio.create_task(pub.run())
    while not pub.connected.is_set():
        await asyncio.sleep(0.01)
    print("connected", flush=True)
    await asyncio.sleep(60)
asyncio.run(main())
"""


def test_last_will_arrives_when_the_agent_is_killed(broker: Broker, tmp_path: Path) -> None:
    sub = Subscriber(broker.port)
    child = subprocess.Popen([sys.executable, "-c", LAST_WILL_CHILD, str(broker.port), str(REPO), str(tmp_path / "b")],
                             stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "connected"

        async def wait_online() -> bool:
            return await wait_for(lambda: any(s.get("state") == "online" for s in sub.status), 10)

        assert asyncio.run(wait_online())
        child.kill()
        child.wait()

        async def wait_offline() -> bool:
            return await wait_for(lambda: sub.status and sub.status[-1] == {"state": "offline", "reason": "lost"}, 10)

        assert asyncio.run(wait_offline()), sub.status
    finally:
        child.kill()
        sub.close()


OFFLINE_EVENTS_CHILD = """
import asyncio, sys
sys.path.insert(0, sys.argv[2])
from tests.mqtt.harness import open_spool, publisher
from agent.events import PollsSkipped
from pathlib import Path
async def main():
    ring, spool = open_spool(Path(sys.argv[3]))
    pub = publisher(int(sys.argv[1]), spool)  # nobody listens there: offline from the start
    task = asyncio.create_task(pub.run())
    for n in range(3):
        pub.event(PollsSkipped("main-incomer", [n * 1000], 1, "test"))
    await asyncio.sleep(0.6)  # past outage_commit (0.5 s in the harness)
    spool.tick()
    print("committed", flush=True)
    await asyncio.sleep(60)
asyncio.run(main())
"""


def test_events_raised_offline_survive_a_crash(broker: Broker, tmp_path: Path) -> None:
    """Events raised while the broker is away (a skipped poll, a device gone offline) explain gaps
    in the data: they are kept on disk like batches, and a kill -9 does not lose them."""
    from testkit.broker import free_port

    child = subprocess.Popen([sys.executable, "-c", OFFLINE_EVENTS_CHILD, str(free_port()), str(REPO),
                              str(tmp_path / "b")], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert child.stdout is not None
        assert "committed" in iter(lambda: child.stdout.readline().strip(), "")  # after the publisher's log lines
    finally:
        child.kill()
        child.wait()
    sub = Subscriber(broker.port)

    async def scenario() -> int:
        ring, spool = open_spool(tmp_path / "b")
        pub = publisher(broker.port, spool)
        task = asyncio.create_task(pub.run())
        assert await wait_for(lambda: len([e for e in sub.events if e["event"] == "polls_skipped"]) >= 3, 10)
        assert await wait_for(lambda: not ring.stored_events(), 5)  # all acknowledged: deleted at the next commit
        assert ring.pending_event_acks >= 3
        await pub.stop()
        task.cancel()
        ring.close()
        ring, _ = open_spool(tmp_path / "b")
        left = len(ring.stored_events())
        ring.close()
        return left

    left = asyncio.run(scenario())
    sub.close()
    assert sorted(e["scheduled_ms"][0] for e in sub.events if e["event"] == "polls_skipped") == [0, 1000, 2000]
    assert any(e["event"] == "broker_unreachable" for e in sub.events)  # the crashed run's own news, too
    assert left == 0  # published once, then gone from the disk


def test_black_holed_link_is_abandoned_within_ack_timeout(broker: Broker, tmp_path: Path) -> None:
    """The path stops forwarding without closing: the ack watchdog drops it, a new link delivers all."""
    from testkit.proxy import BlackHoleProxy

    proxy = BlackHoleProxy(broker.port)
    sub = Subscriber(broker.port)

    async def scenario() -> tuple[int, int]:
        ring, spool = open_spool(tmp_path / "buf")
        pub = publisher(proxy.port, spool, ack_timeout=2.0, keepalive=60)
        task = asyncio.create_task(pub.run())
        assert await wait_for(pub.connected.is_set, 10)
        for row in range(5):
            spool.add(make_batch(ring, row))
        pub.nudge()
        assert await wait_for(lambda: len(set(sub.seqs)) == 5, 10)
        proxy.set_black_hole(True)
        for row in range(5, 10):
            spool.add(make_batch(ring, row))
        pub.nudge()
        await asyncio.sleep(0.5)
        proxy.set_black_hole(False)  # healed for new connections; the old one stays dead
        started = asyncio.get_running_loop().time()
        assert await wait_for(lambda: pub.stats.watchdog_reconnects >= 1, 10)
        detected = asyncio.get_running_loop().time() - started
        assert await wait_for(lambda: len(set(sub.seqs)) == 10, 15)
        await pub.stop()
        task.cancel()
        ring.close()
        return pub.stats.watchdog_reconnects, int(detected)

    reconnects, detected_s = asyncio.run(scenario())
    proxy.close()
    sub.close()
    assert reconnects >= 1 and detected_s <= 3  # ack_timeout 2 s (+ one pump step)
    assert sorted(set(sub.seqs)) == list(range(1, 11))


def test_packet_id_wrap_loses_and_doubles_nothing(broker: Broker, tmp_path: Path, long_mode: bool) -> None:
    """More publishes in one session than there are MQTT packet ids (65535)."""
    total = 100_000 if long_mode else 70_000

    async def scenario() -> tuple[int, int, int]:
        ring, spool = open_spool(tmp_path / "buf")
        pub = publisher(broker.port, spool, window=50)
        task = asyncio.create_task(pub.run())
        assert await wait_for(pub.connected.is_set, 10)
        payload = make_batch(ring, 0).payload
        from agent.buffer import SealedBatch

        added = 0
        while added < total:
            while spool.in_memory < 200 and added < total:
                spool.add(SealedBatch(ring.allocate_seq(), payload, 9, 0, 1))
                added += 1
            pub.nudge()
            await asyncio.sleep(0.001)
        assert await wait_for(lambda: pub.stats.acked == total, 120), pub.stats
        await pub.stop()
        task.cancel()
        connects = pub.stats.connects
        spool.close()
        assert spool.in_memory == 0 and ring.stats().batches == 0  # each batch acknowledged exactly once
        ring.close()
        return pub.stats.acked, pub.stats.published, connects

    acked, published, connects = asyncio.run(scenario())
    assert (acked, published, connects) == (total, total, 1)


def make_pki(directory: Path) -> dict[str, str]:
    """A CA, a broker certificate for 127.0.0.1 and a client certificate, made with openssl."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=test-ca")
    for name, cn in (("server", "127.0.0.1"), ("client", "gw-test")):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        ext = directory / f"{name}.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1\n" if name == "server" else "extendedKeyUsage=clientAuth\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out",
            f"{name}.crt", "-days", "2", "-extfile", str(ext))
    return {k: str(directory / v) for k, v in {"ca": "ca.crt", "cert": "server.crt", "key": "server.key",
                                               "client_cert": "client.crt", "client_key": "client.key"}.items()}


def test_mutual_tls(tmp_path: Path) -> None:
    pki_dir = tmp_path / "pki"
    pki_dir.mkdir()
    pki = make_pki(pki_dir)
    data = tmp_path / "broker-data"
    data.mkdir()
    broker = Broker(data, tls={"ca": pki["ca"], "cert": pki["cert"], "key": pki["key"]}).start()
    try:
        sub = Subscriber(broker.port, ca_certs=pki["ca"], certfile=pki["client_cert"], keyfile=pki["client_key"])

        async def scenario(cert: str | None) -> tuple[int, int]:
            ring, spool = open_spool(tmp_path / f"buf-{cert is not None}")
            pub = publisher(broker.port, spool, tls=True, ca_file=pki["ca"], cert_file=cert,
                            key_file=pki["client_key"] if cert else None)
            task = asyncio.create_task(pub.run())
            connected = await wait_for(pub.connected.is_set, 3)
            if connected:
                spool.add(make_batch(ring, 0))
                pub.nudge()
                await wait_for(lambda: pub.stats.acked == 1, 10)
            await pub.stop()
            task.cancel()
            ring.close()
            return int(connected), pub.stats.acked

        assert asyncio.run(scenario(pki["client_cert"])) == (1, 1)
        assert asyncio.run(scenario(None)) == (0, 0)  # no client certificate: the broker refuses
        sub.close()
        assert sub.seqs == [1]
    finally:
        broker.stop()


def test_tail_prints_decoded_readings(broker: Broker, tmp_path: Path) -> None:
    tail = subprocess.Popen([sys.executable, "-m", "agent", "tail", "--broker", f"mqtt://127.0.0.1:{broker.port}",
                             "--topic", "park/#", "--count", "18", "--timeout", "30"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)

    async def scenario() -> None:
        ring, spool = open_spool(tmp_path / "buf")
        pub = publisher(broker.port, spool)
        task = asyncio.create_task(pub.run())
        assert await wait_for(pub.connected.is_set, 10)
        await asyncio.sleep(1.0)  # let tail subscribe; the schema is retained anyway
        for row in range(2):
            spool.add(make_batch(ring, row))
        pub.nudge()
        await asyncio.to_thread(tail.wait, 30)
        await pub.stop()
        task.cancel()
        ring.close()

    asyncio.run(scenario())
    out, err = tail.communicate(5)
    assert tail.returncode == 0, err
    lines = [line for line in out.splitlines() if "gw-test/main-incomer" in line]
    assert len(lines) == 18
    assert any("gw-test status: " in line and '"online"' in line for line in out.splitlines())
    assert "gw-test/main-incomer voltage_l1=230.0 V" in lines[0]
    assert any("energy_import=12346.0 kWh" in line for line in lines)


def test_settings_from_config_read_the_password_file_and_hide_it(tmp_path: Path) -> None:
    from agent.config.models import MqttModel
    from agent.config.validation import validate
    from agent.config.yaml_source import SourceDoc
    from agent.publisher import BrokerSettings

    secret = tmp_path / "password"
    secret.write_text("s3cret-value\n")
    model = validate(MqttModel, SourceDoc("agent.yaml", {
        "url": "mqtts://platform.example:8883", "topic_prefix": "park", "username": "gw",
        "password_file": str(secret), "reconnect_max": "10s"}))
    settings = BrokerSettings.from_config(model, "gw-guian-01", "guian-ftz")
    assert (settings.host, settings.port, settings.tls) == ("platform.example", 8883, True)
    assert (settings.backoff_min, settings.backoff_max) == (1.0, 10.0)
    assert settings.client_id == "gw-guian-01" and settings.base_topic == "park/guian-ftz/gw-guian-01"
    assert settings.password == "s3cret-value"
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings)


def test_batch_larger_than_the_brokers_packet_limit_is_split(tmp_path: Path) -> None:
    """A broker announcing Maximum Packet Size 1500: a larger batch goes out as several smaller ones
    with new sequence numbers, and every reading arrives."""
    from agent.buffer import SealedBatch
    from agent.codec import Batch, Group, Header, encode
    from tests.vectors.generate import SCHEMA

    data = tmp_path / "broker-data"
    data.mkdir()
    broker = Broker(data, extra=("max_packet_size 1500",)).start()
    try:
        sub = Subscriber(broker.port)

        async def scenario() -> list:
            ring, spool = open_spool(tmp_path / "buf")
            pub = publisher(broker.port, spool)
            task = asyncio.create_task(pub.run())
            assert await wait_for(pub.connected.is_set, 10)
            t0 = 1_763_700_000_000
            groups = [Group([i % 3], [t0 + 1000 * r for r in range(100)], [[230.0 + r * 1.37 + i for r in range(100)]])
                      for i in range(6)]
            batch = Batch(Header("gw-test", ring.epoch, ring.allocate_seq(), SCHEMA.id, t0), [(0, groups)])
            payload = encode(batch, SCHEMA)
            assert len(payload) > 1500
            spool.add(SealedBatch(batch.header.seq, payload, 600, t0, t0 + 99_000))
            pub.nudge()
            assert await wait_for(lambda: len(sub.readings()) == 600, 10), len(sub.readings())
            await pub.stop()
            task.cancel()
            ring.close()
            return list(pub.events) + sub.events

        events = asyncio.run(scenario())
        sub.close()
        assert len(set(sub.seqs)) >= 2 and 1 not in sub.seqs  # the parts, never the oversize original
        assert all(len(p) <= 1500 for p in sub.payloads)
        assert any(e["event"] == "batch_split" for e in events)
    finally:
        broker.stop()


@pytest.mark.parametrize("mode", [BufferMode.OUTAGE, BufferMode.ALWAYS])
def test_historical_is_set_exactly_on_batches_not_published_live(broker: Broker, tmp_path: Path,
                                                                   mode: BufferMode) -> None:
    """Batch by batch through a real broker: sealed while connected (and not at the edge of the
    outage) -> its first arrival is live; sealed while disconnected -> every arrival is historical."""
    sub = Subscriber(broker.port)
    sealed_online: dict[int, bool] = {}
    edge: set[int] = set()  # sealed in the second before the broker went: may or may not have gone out

    async def scenario() -> None:
        ring = Store(tmp_path / "buf", max_bytes=1 << 30, min_free_bytes=0)
        spool = Spool(ring, mode, spill_after=2.0, outage_commit=0.5)
        pub = publisher(broker.port, spool, backoff_max=1.0)
        task = asyncio.create_task(pub.run())
        assert await wait_for(pub.connected.is_set, 10)
        for row in range(90):
            if row == 30:
                edge.update(seq for seq in list(sealed_online)[-10:])
                await asyncio.to_thread(broker.stop)
            if row == 60:
                await asyncio.to_thread(broker.start)
            batch = make_batch(ring, row)
            spool.add(batch)
            sealed_online[batch.seq] = pub.connected.is_set()
            if 30 <= row < 33:  # the loss of the link is noticed a moment after the broker went
                edge.add(batch.seq)
            pub.nudge()
            await asyncio.sleep(0.1)
        assert await wait_for(lambda: set(sub.seqs) >= set(sealed_online), 30)
        await pub.stop()
        task.cancel()
        ring.close()

    asyncio.run(scenario())
    sub.close()
    first: dict[int, bool] = {}
    every: dict[int, set[bool]] = {}
    for payload in sub.payloads:
        header = decode_header(payload)[0]
        flagged = bool(header.flags & FLAG_HISTORICAL)
        first.setdefault(header.seq, flagged)
        every.setdefault(header.seq, set()).add(flagged)
    offline = [seq for seq, online in sealed_online.items() if not online]
    live = [seq for seq, online in sealed_online.items() if online and seq not in edge]
    assert len(offline) >= 20 and len(live) >= 40
    assert all(every[seq] == {True} for seq in offline), {s: every[s] for s in offline}
    assert [seq for seq in live if first[seq]] == []  # no live batch arrived first as historical


def test_back_within_seconds_of_the_broker_whatever_the_backoff_grew_to(broker: Broker, tmp_path: Path) -> None:
    """The backoff has grown to 8-16 s when the broker comes back; cheap TCP probes every 1-3 s find
    it and the publisher connects at once instead of waiting the backoff out."""
    sub_port = broker.port

    async def scenario() -> tuple[int, int]:
        ring, spool = open_spool(tmp_path / "buf")
        pub = publisher(broker.port, spool, backoff_min=4.0, backoff_max=60.0)
        await asyncio.to_thread(broker.stop)
        task = asyncio.create_task(pub.run())
        await asyncio.sleep(10)  # three failed attempts: the next full one is 8-16 s away
        spool.add(make_batch(ring, 0))
        await asyncio.to_thread(broker.start)
        connected = await wait_for(pub.connected.is_set, 20)
        hits = pub.stats.probe_hits
        await pub.stop()
        task.cancel()
        ring.close()
        return int(connected), hits

    connected, hits = asyncio.run(scenario())
    assert connected == 1 and hits >= 1  # the reconnect came from a probe, not from the backoff
    sub = Subscriber(sub_port)
    sub.close()
