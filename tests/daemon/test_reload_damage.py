"""SIGHUP with a damaged config, against a real `edge-agent run`: each reload fails with a
`config_reload_failed` event whose problems are located in the file, the agent keeps polling on
the config it has, and nothing is left as a traceback or an unretrieved task exception."""

from __future__ import annotations

import signal
from pathlib import Path

from agent.config import ProfileLibrary
from agent.simulate import SimulatedDevice
from testkit.broker import Broker
from tests.conftest import SimThread
from tests.daemon.test_run import PINNED, Platform, start_agent, write_config

DAMAGE = {
    "non-UTF-8 byte": lambda good: good.replace(b"gw-test", b"gw-t\xffest"),
    "control character": lambda good: good.replace(b"test-site", b"test\x07site"),
    "list as a key": lambda good: good + b"? [a, b]\n: 1\n",
    "list where a name is expected": lambda good: good.replace(b"bus: plant", b"bus: [plant]"),
    "profiles_dirs: [1]": lambda good: good + b"profiles_dirs: [1]\n",
    "!!int 'x'": lambda good: good.replace(b"unit: 1,", b"unit: !!int 'x',"),
    "<<: 5": lambda good: good + b"x: {<<: 5}\n",
    "300-character profile name": lambda good: good.replace(b"eastron/sdm630", b"eastron/" + b"s" * 300),
    "2000 nested brackets": lambda good: good + b"x: " + b"[" * 2000 + b"]" * 2000 + b"\n",
    "mqtt port 99999": lambda good: good.replace(b"mqtt://127.0.0.1:", b"mqtt://127.0.0.1:9999"),
}


def test_sighup_with_damaged_configs_reports_each_and_keeps_running(sim: SimThread, broker: Broker,
                                                                    tmp_path: Path) -> None:
    spec, _ = sim.tcp({1: SimulatedDevice(ProfileLibrary().load("eastron/sdm630"), dict(PINNED), moving=False)})
    platform = Platform(broker.port)
    config = write_config(tmp_path / "agent.yaml", spec.port, broker.port, tmp_path / "buf")
    good = config.read_bytes()
    agent = start_agent(config)
    failures: list[list[str]] = []
    try:
        assert platform.wait(lambda: len(platform.readings()) > 0, 20)
        for name, damage in DAMAGE.items():
            config.write_bytes(damage(good))
            agent.send_signal(signal.SIGHUP)
            assert platform.wait(lambda: _failed(platform) > len(failures), 10), name
            failures.append(_problems(platform)[len(failures)])
        before = len(platform.readings())
        assert platform.wait(lambda: len(platform.readings()) > before + 9, 10)  # still polling, old config
        assert agent.poll() is None
    finally:
        agent.send_signal(signal.SIGTERM)
        _out, err = agent.communicate(15)
    platform.close()
    assert agent.returncode == 0, err[-3000:]
    assert "Traceback" not in err and "Task exception was never retrieved" not in err, err[-3000:]
    for name, problems in zip(DAMAGE, failures, strict=True):
        assert problems and all(p.startswith(f"{config}:") for p in problems), (name, problems)
        assert all(p.split(":", 2)[1].strip().isdigit() for p in problems), (name, problems)  # with a line


def _failed(platform: Platform) -> int:
    return len(_problems(platform))


def _problems(platform: Platform) -> list[list[str]]:
    return [e["problems"] for e in platform.events if e["event"] == "config_reload_failed"]
