"""`edge-agent run` as a real subprocess against pymodbus servers and a real mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from agent import __version__
from agent.codec import WireSchema, decode_header
from agent.config import ProfileLibrary
from agent.simulate import SimulatedDevice
from testkit.broker import Broker
from testkit.platform import Platform as HilPlatform
from tests.conftest import SimThread

REPO = Path(__file__).resolve().parents[2]
PINNED = {"voltage_l1": 231.5, "active_power": 8612.5, "energy_import": 12345.5}


def write_config(path: Path, modbus_port: int, mqtt_port: int, buffer: Path, interval: str = "1s",
                 batch: str = "1s") -> Path:
    path.write_text(textwrap.dedent(f"""\
        gateway: {{id: gw-test, site: test-site}}
        buses: [{{name: plant, url: "tcp://127.0.0.1:{modbus_port}"}}]
        devices:
          - {{id: main-incomer, bus: plant, unit: 1, profile: eastron/sdm630, interval: {interval}}}
        mqtt: {{url: "mqtt://127.0.0.1:{mqtt_port}", topic_prefix: park, batch_interval: {batch}}}
        buffer: {{path: "{buffer}", max_bytes: 16MiB, min_free_bytes: 1MiB}}
        """))
    return path


def start_agent(config: Path, **env: str) -> subprocess.Popen[str]:
    """`edge-agent run` as systemd would start it; returns once it has said READY=1 (a handshake, as
    the HIL runner does), or has exited. A test that passes its own NOTIFY_SOCKET listens itself."""
    if "NOTIFY_SOCKET" in env:
        return _spawn(config, env)
    notify = config.parent / "ready.sock"
    with contextlib.suppress(FileNotFoundError):
        notify.unlink()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(notify))
        sock.settimeout(0.2)
        agent = _spawn(config, {**env, "NOTIFY_SOCKET": str(notify)})
        deadline = time.monotonic() + 30
        while agent.poll() is None and time.monotonic() < deadline:
            try:
                if sock.recv(4096).startswith(b"READY=1"):
                    break
            except TimeoutError:
                continue
    return agent


def _spawn(config: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(config)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **env})


class Platform(HilPlatform):
    """The platform side, subscribed to the test gateway, with a polling wait."""

    def __init__(self, port: int) -> None:
        super().__init__(port, "park/test-site/gw-test/#", client_id="platform-daemon-test")

    def wait(self, predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.1)
        return bool(predicate())


def test_readings_arrive_with_the_servers_values_on_aligned_ticks(sim: SimThread, broker: Broker,
                                                                  tmp_path: Path) -> None:
    spec, _ = sim.tcp({1: SimulatedDevice(ProfileLibrary().load("eastron/sdm630"), dict(PINNED), moving=False)})
    platform = Platform(broker.port)
    agent = start_agent(write_config(tmp_path / "agent.yaml", spec.port, broker.port, tmp_path / "buf"))
    try:
        assert platform.wait(lambda: len([r for r in platform.readings() if r.point == "voltage_l1"]) >= 4, 20)
    finally:
        agent.send_signal(signal.SIGTERM)
        _out, err = agent.communicate(10)
    platform.close()
    assert agent.returncode == 0, err
    volts = [r for r in platform.readings() if r.point == "voltage_l1"]
    assert all(r.value == 231.5 and r.unit == "V" and r.quality == "ok" for r in volts)
    power = [r for r in platform.readings() if r.point == "active_power"]
    assert power and all(r.value == 8612.5 for r in power)
    first, *aligned = sorted(r.ts for r in volts)  # the first poll runs at once, the rest on the clock
    assert aligned and first < aligned[0]
    assert all(b - a >= 900 for a, b in itertools.pairwise(aligned))  # 1 s interval, no doubles
    assert all(ts % 1000 < 500 for ts in aligned)  # aligned to the second (+ the request's own latency)
    online = [s for s in platform.status if s.get("state") == "online"]
    assert online and all(s["version"] == __version__ for s in online)  # the package's one version string
    assert platform.status[-1] == {"state": "offline", "reason": "shutdown"}


def test_sigterm_during_an_outage_loses_nothing(sim: SimThread, broker: Broker, tmp_path: Path) -> None:
    """Broker down; the agent polls for a while and is stopped; started again with the broker back,
    every second it polled reaches the platform."""
    spec, _ = sim.tcp({1: SimulatedDevice(ProfileLibrary().load("eastron/sdm630"), dict(PINNED), moving=False)})
    platform = Platform(broker.port)
    config = write_config(tmp_path / "agent.yaml", spec.port, broker.port, tmp_path / "buf", batch="5s")
    broker.stop()
    agent = start_agent(config)
    time.sleep(4.5)
    started = time.monotonic()
    agent.send_signal(signal.SIGTERM)
    _out, err = agent.communicate(10)
    stop_seconds = time.monotonic() - started
    assert agent.returncode == 0, err
    assert stop_seconds < 5.0
    broker.start()
    agent = start_agent(config)
    try:
        assert platform.wait(lambda: len({r.ts // 1000 for r in platform.readings() if r.point == "voltage_l1"}) >= 6,
                             20)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.communicate(10)
    platform.close()
    seconds = sorted({r.ts // 1000 for r in platform.readings() if r.point == "voltage_l1"})
    first_run = [s for s in seconds if s <= seconds[0] + 3]
    assert len(first_run) >= 4  # the outage's polls were kept and delivered, one per second, no hole
    assert all(b - a == 1 for a, b in itertools.pairwise(first_run))


def test_sighup_with_a_broken_config_keeps_running(sim: SimThread, broker: Broker, tmp_path: Path) -> None:
    spec, _ = sim.tcp({1: SimulatedDevice(ProfileLibrary().load("eastron/sdm630"), dict(PINNED), moving=False)})
    platform = Platform(broker.port)
    config = write_config(tmp_path / "agent.yaml", spec.port, broker.port, tmp_path / "buf")
    agent = start_agent(config)
    try:
        assert platform.wait(lambda: len(platform.readings()) > 0, 20)
        config.write_text(config.read_text().replace("interval: 1s", "intervall: 1s"))
        agent.send_signal(signal.SIGHUP)
        assert platform.wait(lambda: any(e["event"] == "config_reload_failed" for e in platform.events), 10)
        before = len(platform.readings())
        assert platform.wait(lambda: len(platform.readings()) > before + 21, 10)  # still polling, old config
        assert agent.poll() is None
    finally:
        agent.send_signal(signal.SIGTERM)
        _out, err = agent.communicate(10)
    platform.close()
    failed = next(e for e in platform.events if e["event"] == "config_reload_failed")
    assert any("intervall" in p and "agent.yaml:4" in p for p in failed["problems"])
    assert "config reload failed" in err


def test_sighups_in_quick_succession_apply_the_last_config(sim: SimThread, broker: Broker, tmp_path: Path) -> None:
    """Three SIGHUPs within a millisecond (the kernel may merge them): the reloads that run, run one
    after another, the last config wins, no task exception is left unretrieved.

    And the daemon never loads pydantic (it would cost the long-running process about 14 MB it never
    gives back): the config is validated by a short-lived child at start and on SIGHUP, so after both
    the daemon's memory map shows no pydantic_core library."""
    spec, _ = sim.tcp({1: SimulatedDevice(ProfileLibrary().load("eastron/sdm630"), dict(PINNED), moving=False)})
    platform = Platform(broker.port)
    config = write_config(tmp_path / "agent.yaml", spec.port, broker.port, tmp_path / "buf")
    agent = start_agent(config)
    try:
        assert platform.wait(lambda: len(platform.readings()) > 0, 20)
        config.write_text(config.read_text().replace("id: main-incomer", "id: main-incomer-2"))
        for _ in range(3):
            agent.send_signal(signal.SIGHUP)
        assert platform.wait(lambda: any(e["event"] == "config_reloaded" for e in platform.events), 15)
        assert platform.wait(lambda: platform.schema is not None and "main-incomer-2" in platform.schema, 15)
        new_schema = WireSchema.from_json(platform.schema or "")
        assert platform.wait(lambda: any(decode_header(p)[0].schema_id == new_schema.id for p in platform.payloads), 15)
        maps = Path(f"/proc/{agent.pid}/maps").read_text()
    finally:
        agent.send_signal(signal.SIGTERM)
        _out, err = agent.communicate(10)
    platform.close()
    assert agent.returncode == 0, err
    assert 1 <= sum(e["event"] == "config_reloaded" for e in platform.events) <= 2
    assert "never retrieved" not in err and "Traceback" not in err
    assert "_sqlite3" in maps  # the map names the extension modules the process loaded
    assert "pydantic" not in maps


def test_reloads_are_serialized(tmp_path: Path) -> None:
    """The SIGHUP handler keeps one reload task: signals during a reload make exactly one more run,
    never a second reload interleaved with the first."""
    from agent.config import load_config
    from agent.daemon import Agent

    config = tmp_path / "agent.yaml"
    config.write_text(f'gateway: {{id: gw-test, site: test-site}}\nbuffer: {{path: "{tmp_path / "buf"}"}}\n')

    async def scenario() -> tuple[int, int]:
        agent = Agent(load_config(config), config)
        running = peak = runs = 0

        async def reload() -> None:
            nonlocal running, peak, runs
            running, runs = running + 1, runs + 1
            peak = max(peak, running)
            await asyncio.sleep(0.05)
            running -= 1

        agent.reload = reload  # type: ignore[method-assign]
        for _ in range(3):
            agent._on_reload_signal()
        await asyncio.sleep(0.3)
        agent.store.close()
        return peak, runs

    assert asyncio.run(scenario()) == (1, 2)


def test_ready_and_watchdog_on_notify_socket_and_a_hung_loop_stops_the_pings(sim: SimThread, broker: Broker,
                                                                              tmp_path: Path) -> None:
    spec, _ = sim.tcp({1: SimulatedDevice(ProfileLibrary().load("eastron/sdm630"))})
    notify_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.settimeout(0.2)
    agent = start_agent(write_config(tmp_path / "agent.yaml", spec.port, broker.port, tmp_path / "buf"),
                        NOTIFY_SOCKET=str(notify_path), WATCHDOG_USEC="1000000", EDGE_AGENT_FAULTS="hang-on-usr1")
    messages: list[tuple[float, str]] = []

    def collect(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                messages.append((time.monotonic(), sock.recv(4096).decode()))
            except TimeoutError:
                pass

    try:
        collect(3.0)
        assert any(m.startswith("READY=1") for _, m in messages)
        pings_before = sum("WATCHDOG=1" in m for _, m in messages)
        assert pings_before >= 4  # every 0.5 s (half of WATCHDOG_USEC)
        hang_started = time.monotonic()
        agent.send_signal(signal.SIGUSR1)  # blocks the event loop for 5 s
        collect(6.0)
        pings = [t for t, m in messages if "WATCHDOG=1" in m and t > hang_started]
        assert pings, "pings resume after the hang"
        assert pings[0] - hang_started >= 4.0  # no ping while the loop was stuck
        agent.send_signal(signal.SIGTERM)
        collect(1.5)
        assert any("STOPPING=1" in m for _, m in messages)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.communicate(10)
        sock.close()
    assert agent.returncode == 0


def test_polls_a_stalled_agent_could_not_start_are_reported(sim: SimThread, broker: Broker, tmp_path: Path) -> None:
    """The event loop blocks for 5 s (as on an overloaded or suspended machine): the scheduler
    coalesces the polls it missed without a word; the agent reports each one as skipped, so every
    scheduled second is either delivered or accounted for."""
    spec, _ = sim.tcp({1: SimulatedDevice(ProfileLibrary().load("eastron/sdm630"), dict(PINNED), moving=False)})
    platform = Platform(broker.port)
    agent = start_agent(write_config(tmp_path / "agent.yaml", spec.port, broker.port, tmp_path / "buf"),
                        EDGE_AGENT_FAULTS="hang-on-usr1")

    def seconds() -> list[int]:
        return sorted({r.ts // 1000 for r in platform.readings() if r.point == "voltage_l1"})

    def skipped() -> list[dict]:  # type: ignore[type-arg]
        return [e for e in platform.events if e.get("event") == "polls_skipped"]

    try:
        assert platform.wait(lambda: len(seconds()) >= 2, 20)
        agent.send_signal(signal.SIGUSR1)  # blocks the event loop for 5 s
        hang = int(time.time())
        assert platform.wait(lambda: len([s for s in seconds() if s > hang + 6]) >= 2 and skipped(), 20)
    finally:
        agent.send_signal(signal.SIGTERM)
        _, err = agent.communicate(10)
    platform.close()
    assert agent.returncode == 0, err
    got = seconds()
    reported = {ms // 1000 for e in skipped() for ms in e["scheduled_ms"]}
    assert sum(e["count"] for e in skipped()) == len(reported) >= 3, skipped()
    assert all(e["reason"] in ("agent stalled: not started on time", "previous poll still running") for e in skipped())
    assert not reported & set(got)  # a poll is either delivered or reported skipped, never both
    unaccounted = [s for s in range(got[0], got[-1] + 1) if s not in got and s not in reported]
    assert unaccounted == [], (got, sorted(reported))
    blocked = [json.loads(line) for line in err.splitlines() if '"event loop blocked"' in line]
    assert blocked and blocked[0]["seconds"] >= 3.0  # the operator is told, with how long


def test_point_groups_poll_at_their_own_intervals(sim: SimThread, broker: Broker, tmp_path: Path) -> None:
    """Power every second, energy totals every 3 s (in the field: every 60 s)."""
    spec, _ = sim.tcp({1: SimulatedDevice(ProfileLibrary().load("eastron/sdm630"), dict(PINNED), moving=False)})
    platform = Platform(broker.port)
    config = write_config(tmp_path / "agent.yaml", spec.port, broker.port, tmp_path / "buf")
    config.write_text(config.read_text().replace("profile: eastron/sdm630, interval: 1s}",
                                                 'profile: eastron/sdm630, interval: 1s, intervals: {"energy_*": 3s}}'))
    agent = start_agent(config)
    try:
        arrived = platform.wait(lambda: len([r for r in platform.readings() if r.point == "voltage_l1"]) >= 7, 20)
    finally:
        agent.send_signal(signal.SIGTERM)
        _out, err = agent.communicate(10)
    platform.close()
    assert arrived, err[-2000:]
    assert agent.returncode == 0, err
    volts = sorted(r.ts for r in platform.readings() if r.point == "voltage_l1")
    energy = sorted(r.ts for r in platform.readings() if r.point == "energy_import")
    assert energy and all(r.value == 12345.5 for r in platform.readings() if r.point == "energy_import")
    assert all(b - a >= 2900 for a, b in itertools.pairwise(energy[1:]))  # the first poll runs at once
    assert len(volts) >= 2 * (len(energy) - 1)


def test_prometheus_endpoint_on_loopback(sim: SimThread, broker: Broker, tmp_path: Path) -> None:
    import urllib.request

    from testkit.broker import free_port, wait_port

    spec, _ = sim.tcp({1: SimulatedDevice(ProfileLibrary().load("eastron/sdm630"))})
    port = free_port()
    config = write_config(tmp_path / "agent.yaml", spec.port, broker.port, tmp_path / "buf")
    config.write_text(config.read_text() + f'prometheus: "127.0.0.1:{port}"\n')
    agent = start_agent(config)
    try:
        wait_port(port)
        time.sleep(2.5)
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.communicate(10)
    assert 'edge_agent_device_online{device="main-incomer"} 1' in text
    polls = next(line for line in text.splitlines() if line.startswith('edge_agent_device_polls_total{device="main'))
    assert int(polls.split()[-1]) >= 2
    assert "edge_agent_buffer_bytes" in text and "edge_agent_mqtt_acked_total" in text
    assert "edge_agent_loop_lag_max_seconds" in text and 'edge_agent_device_stalls_total{device="main-incomer"} 0' in text
