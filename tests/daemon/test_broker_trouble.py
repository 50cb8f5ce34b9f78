"""`edge-agent run` against a broker it cannot use: journald (stderr) gets one full line per kind of
failure, not one per retry, and systemd's STATUS= says what is wrong and since when."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from agent.config import ProfileLibrary
from agent.simulate import SimulatedDevice
from testkit.broker import Broker
from tests.conftest import SimThread
from tests.daemon.test_run import start_agent


def config(tmp_path: Path, modbus_port: int, mqtt: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(textwrap.dedent(f"""\
        gateway: {{id: gw-test, site: test-site}}
        buses: [{{name: plant, url: "tcp://127.0.0.1:{modbus_port}"}}]
        devices:
          - {{id: main-incomer, bus: plant, unit: 1, profile: eastron/sdm630, interval: 1s}}
        mqtt: {mqtt}
        buffer: {{path: "{tmp_path / 'buf'}", max_bytes: 16MiB, min_free_bytes: 1MiB}}
        """))
    return path


def run_until_status(path: Path, wanted: str, seconds: float = 20.0) -> tuple[list[str], list[dict], int]:
    """Start the agent with our own NOTIFY_SOCKET; collect STATUS= lines until one contains `wanted`
    and a few seconds more (retries), then SIGTERM: (STATUS texts, stderr JSON lines, connection attempts seen)."""
    notify = path.parent / "notify.sock"
    statuses: list[str] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(notify))
        sock.settimeout(0.2)
        agent = start_agent(path, NOTIFY_SOCKET=str(notify))
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline and agent.poll() is None:
                try:
                    message = sock.recv(4096).decode()
                except TimeoutError:
                    continue
                statuses += [f[len("STATUS="):] for f in message.split("\n") if f.startswith("STATUS=")]
                if any(wanted in s for s in statuses):
                    deadline = min(deadline, time.monotonic() + 4.0)  # let it retry a few times
        finally:
            agent.send_signal(signal.SIGTERM)
            _out, err = agent.communicate(15)
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    return statuses, lines, agent.returncode


def test_refused_credentials_are_logged_once_and_in_status(sim: SimThread, tmp_path: Path) -> None:
    spec, _ = sim.tcp({1: SimulatedDevice(ProfileLibrary().load("eastron/sdm630"))})
    (tmp_path / "broker").mkdir()
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(tmp_path / "broker" / "passwd"), "gw-test", "right"],
                   check=True)
    broker = Broker(tmp_path / "broker", extra=("allow_anonymous false",
                                                f"password_file {tmp_path / 'broker' / 'passwd'}")).start()
    (tmp_path / "password").write_text("wrong\n")
    mqtt = (f'{{url: "mqtt://127.0.0.1:{broker.port}", username: gw-test, '
            f'password_file: "{tmp_path / "password"}"}}')
    try:
        statuses, lines, code = run_until_status(config(tmp_path, spec.port, mqtt), "broker: not authorized")
    finally:
        broker.stop()
    attempts = broker.log.read_text().count("not authorised")
    assert code == 0
    assert attempts >= 2  # it retried ...
    failures = [line for line in lines if line["event"] == "broker connection failed"]
    assert len(failures) == 1  # ... and said it once, in full
    assert failures[0]["problem"] == "not_authorized" and "0x87" in failures[0]["reason"]
    assert failures[0]["broker"] == f"127.0.0.1:{broker.port}" and failures[0]["level"] == "error"
    assert "wrong" not in json.dumps(lines)  # the password is never logged
    status = next(s for s in statuses if "broker: not authorized" in s)
    assert status.startswith("1/1 devices online") or status.startswith("0/1 devices online")
    assert " since " in status and status.endswith(" UTC")


def test_a_missing_ca_file_is_named(sim: SimThread, tmp_path: Path) -> None:
    """At start the file is checked with the rest of the config: one located line naming it, exit 1, no
    traceback (a file that goes missing later is named by the publisher: tests/mqtt/test_broker_trouble.py)."""
    spec, _ = sim.tcp({1: SimulatedDevice(ProfileLibrary().load("eastron/sdm630"))})
    missing = tmp_path / "pki" / "platform-ca.pem"
    mqtt = f'{{url: "mqtts://127.0.0.1:8883", ca_file: "{missing}"}}'
    path = config(tmp_path, spec.port, mqtt)
    done = subprocess.run([sys.executable, "-m", "agent", "run", "-c", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1
    assert str(missing) in done.stderr and "mqtt.ca_file" in done.stderr
    assert "Traceback" not in done.stderr
