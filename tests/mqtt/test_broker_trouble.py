"""What the operator learns when the broker cannot be used, against a real mosquitto: unreachable,
refused credentials, a client id it does not allow, a broker certificate from another CA or for
another host, a CA file that is not there. The first failure of each kind is logged in full and
raised as one event (however many attempts follow), STATUS= text says it until a session is up."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from testkit.broker import Broker
from tests.mqtt.harness import open_spool, publisher, recording_log, wait_for
from tests.mqtt.test_delivery import make_pki

ATTEMPTS = 4


def password_broker(directory: Path, *extra: str) -> Broker:
    directory.mkdir()
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(directory / "passwd"), "gw-test", "right"], check=True)
    return Broker(directory, extra=("allow_anonymous false", f"password_file {directory / 'passwd'}", *extra))


def tls_broker(tmp_path: Path) -> tuple[Broker, dict[str, str], dict[str, str]]:
    """A TLS broker with its PKI, and a second, unrelated PKI (the wrong CA)."""
    pkis = []
    for name in ("pki", "other-pki"):
        (tmp_path / name).mkdir()
        pkis.append(make_pki(tmp_path / name))
    (tmp_path / "tls-broker").mkdir()
    pki = pkis[0]
    return Broker(tmp_path / "tls-broker", tls={"ca": pki["ca"], "cert": pki["cert"], "key": pki["key"]}), pki, pkis[1]


def attempts(tmp_path: Path, port: int, **overrides: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                                   list[str | None], Any]:
    """Run a publisher until it has failed ATTEMPTS times: (log lines, stored events, STATUS texts, publisher)."""
    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str | None], Any]:
        ring, spool = open_spool(tmp_path / "buf")
        statuses: list[str | None] = []
        pub = publisher(port, spool, **overrides)
        pub._on_trouble = statuses.append
        pub.log, lines = recording_log()
        task = asyncio.create_task(pub.run())
        assert await wait_for(lambda: pub.trouble.outage is not None and pub.trouble.outage.attempts >= ATTEMPTS, 30)
        await pub.stop()
        task.cancel()
        events = [json.loads(body) for _, body in spool.stored_events()]
        ring.close()
        return lines, events, statuses, pub

    return asyncio.run(scenario())


def case(tmp_path: Path, name: str) -> tuple[Broker | None, int, dict[str, Any]]:
    """The broker (None: nothing listens) and publisher settings of one kind of trouble."""
    if name == "unreachable":
        return None, Broker(tmp_path / "none").port, {}
    if name == "bad-password":
        broker = password_broker(tmp_path / "pw-broker")
        return broker, broker.port, {"username": "gw-test", "password": "wrong"}
    if name == "client-id-refused":
        broker = password_broker(tmp_path / "id-broker", "clientid_prefixes gw-")
        return broker, broker.port, {"username": "gw-test", "password": "right", "client_id": "meter-gw"}
    broker, pki, other = tls_broker(tmp_path)
    tls = {"tls": True, "cert_file": pki["client_cert"], "key_file": pki["client_key"]}
    if name == "wrong-ca":
        return broker, broker.port, {**tls, "ca_file": other["ca"]}
    if name == "hostname-mismatch":
        return broker, broker.port, {**tls, "ca_file": pki["ca"], "host": "localhost"}
    return broker, broker.port, {**tls, "ca_file": str(tmp_path / "etc" / "ca.pem")}  # missing-ca


@pytest.mark.parametrize("name, problem, says", [
    ("unreachable", "unreachable", "cannot connect to 127.0.0.1:"),
    ("bad-password", "not_authorized", "Not authorized (CONNACK reason code 0x87)"),
    ("client-id-refused", "not_authorized", "Not authorized (CONNACK reason code 0x87)"),
    ("wrong-ca", "tls_untrusted", "certificate is not trusted by"),
    ("hostname-mismatch", "tls_hostname", "not for this host name"),
    ("missing-ca", "tls_setup", "etc/ca.pem does not exist"),
])
def test_the_first_failure_of_each_kind_is_logged_in_full_and_raised_once(tmp_path: Path, name: str, problem: str,
                                                                          says: str) -> None:
    broker, port, overrides = case(tmp_path, name)
    if broker is not None:
        broker.start()
    try:
        lines, events, statuses, pub = attempts(tmp_path, port, **overrides)
    finally:
        if broker is not None:
            broker.stop()
    failures = [line for line in lines if line["event"] == "broker connection failed"]
    assert len(failures) == 1, lines
    assert failures[0]["problem"] == problem and says in failures[0]["reason"], failures[0]
    assert failures[0]["level"] == "error"
    raised = [e for e in events if e["event"] == "broker_unreachable"]
    assert len(raised) == 1 and raised[0]["problem"] == problem and says in raised[0]["reason"]
    assert not [e for e in events if e["event"] == "publisher_error"]  # not every retry, not as a crash
    label = {"unreachable": "unreachable", "not_authorized": "not authorized", "tls_untrusted": "TLS certificate "
             "not trusted", "tls_hostname": "TLS certificate for another host", "tls_setup": "TLS set-up failed"}
    assert statuses and statuses[-1] is not None and statuses[-1].startswith(f"broker: {label[problem]}")
    assert " since " in statuses[-1] and statuses[-1].endswith(" UTC")
    assert pub.stats.connects == 0


def test_a_summary_while_it_lasts_and_a_line_when_it_is_over(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "later")
    (tmp_path / "later").mkdir()

    async def scenario() -> tuple[list[dict[str, Any]], list[str | None]]:
        ring, spool = open_spool(tmp_path / "buf")
        statuses: list[str | None] = []
        pub = publisher(broker.port, spool)
        pub._on_trouble = statuses.append
        pub.log, lines = recording_log()
        pub.trouble.summary_every = 0.5  # 5 min in production
        task = asyncio.create_task(pub.run())
        assert await wait_for(lambda: any(line["event"] == "broker still failing" for line in lines), 30)
        broker.start()
        assert await wait_for(pub.connected.is_set, 10)
        await pub.stop()
        task.cancel()
        ring.close()
        return lines, statuses

    try:
        lines, statuses = asyncio.run(scenario())
    finally:
        broker.stop()
    summaries = [line["summary"] for line in lines if line["event"] == "broker still failing"]
    assert summaries[0].startswith("broker: unreachable for ") and " attempts, last: cannot connect to" in summaries[0]
    assert [line["event"] for line in lines].count("broker connection failed") == 1
    assert any(line["event"] == "broker connected" and "failed attempts" in line["note"] for line in lines)
    assert statuses[-1] is None  # STATUS= no longer speaks of the broker
