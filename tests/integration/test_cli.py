"""The `edge-agent` command as a person runs it: a subprocess against real simulated devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.config import ProfileLibrary
from agent.simulate import SimulatedDevice
from tests.conftest import SimThread, rtu_spec

# values an SDM630 would hold (float32-exact where it matters), pinned in the simulator
SDM630_VALUES = {"voltage_l1": 231.5, "voltage_l2": 229.25, "voltage_l3": 230.0, "current_l1": 12.5,
                 "active_power": 8612.5, "frequency": 49.98, "energy_import": 12345.6, "energy_export": 78.9}


def edge_agent(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_probe_json_prints_the_servers_values_in_canonical_names(sim: SimThread, library: ProfileLibrary) -> None:
    """The issue's acceptance check: probe --json against a pymodbus server holding SDM630 registers."""
    spec, _ = sim.tcp({1: SimulatedDevice(library.load("eastron/sdm630"), dict(SDM630_VALUES), moving=False)})
    done = edge_agent("probe", "--url", f"tcp://127.0.0.1:{spec.port}", "--unit", "1", "--profile", "eastron/sdm630",
                      "--json")
    assert done.returncode == 0, done.stderr
    values = json.loads(done.stdout)  # exactly one JSON object on stdout
    for name, expected in SDM630_VALUES.items():
        assert values[name] == pytest.approx(expected, rel=1e-6), name
    assert len(values) == 21 and all(v is not None for v in values.values())


def test_probe_table_over_rtu_shows_raw_registers(sim: SimThread, library: ProfileLibrary,
                                                  socat_pair: tuple[str, str]) -> None:
    device_end, agent_end = socat_pair
    sim.serve(rtu_spec(device_end), {3: SimulatedDevice(library.load("xintai/water-meter"),
                                                        {"flow_rate": 0.545, "volume_total": 1234.5}, moving=False)})
    done = edge_agent("probe", "--url", f"rtu://{agent_end}?baudrate=9600", "--unit", "3",
                      "--profile", "xintai/water-meter", "--all-orders")
    assert done.returncode == 0, done.stderr
    flow = next(line for line in done.stdout.splitlines() if line.startswith("flow_rate"))
    assert "0.545" in flow and "1F85 0B3F" in flow  # 0.545 = 0x3F0B851F, byte-reversed on the wire
    assert "7/7 points ok" in done.stdout


def test_probe_without_answer_explains(sim: SimThread, library: ProfileLibrary) -> None:
    """A unit id nobody answers: exit 2 and a message with what was tried and the usual causes."""
    from agent.drivers.pymodbus_adapter import Faults

    spec, _ = sim.tcp({1: SimulatedDevice(library.load("eastron/sdm630"))}, Faults(silent={1}))
    done = edge_agent("probe", "--url", f"tcp://127.0.0.1:{spec.port}", "--profile", "eastron/sdm630",
                      "--timeout", "0.3")
    assert done.returncode == 2
    assert f"no answer from unit 1 at tcp://127.0.0.1:{spec.port} within 0.3 s" in done.stderr
    assert "wrong unit id" in done.stderr
    assert done.stdout == ""


def test_probe_serial_hint_names_baud_and_wiring(socat_pair: tuple[str, str]) -> None:
    _, agent_end = socat_pair  # nobody on the other end
    done = edge_agent("probe", "--url", f"rtu://{agent_end}?baudrate=2400&parity=E", "--profile", "eastron/sdm630",
                      "--timeout", "0.2")
    assert done.returncode == 2
    assert "tried 2400 8E1; profile default 9600 8N1" in done.stderr
    assert "A and B swapped" in done.stderr


def test_validate_ok_and_broken(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(textwrap.dedent("""\
        gateway: {id: gw-1, site: park}
        buses: [{name: line1, url: "rtu:///dev/ttyUSB0"}]
        devices: [{id: m1, bus: line1, unit: 1, profile: eastron/sdm630}]
        """))
    done = edge_agent("validate", "-c", str(good))
    assert done.returncode == 0 and "OK: 1 bus(es), 1 device(s), 21 point(s)" in done.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent("""\
        gateway: {id: gw-1, site: park}
        buses: [{name: line1, url: "rtu:///dev/ttyUSB0"}]
        devices:
          - {id: m1, bus: line1, unit: 1, profile: eastron/sdm630, intervall: 5s}
          - {id: m2, bus: line2, unit: 2, profile: nobody/nothing}
        """))
    done = edge_agent("validate", "-c", str(bad))
    assert done.returncode == 1
    assert "3 error(s):" in done.stderr
    assert f"{bad}:4: devices[0].intervall: unknown key" in done.stderr
    assert f"{bad}:5: devices[1].bus: no bus named 'line2'" in done.stderr
    assert f"{bad}:5: devices[1].profile: unknown profile 'nobody/nothing'" in done.stderr


def test_profiles_list_and_show() -> None:
    listed = edge_agent("profiles", "list")
    assert listed.returncode == 0 and "eastron/sdm630" in listed.stdout and "INVALID" not in listed.stdout
    shown = edge_agent("profiles", "show", "chint/dtsu666")
    assert shown.returncode == 0
    assert "active_power" in shown.stdout and "x(pt_ratio*ct_ratio)" in shown.stdout
    unknown = edge_agent("profiles", "show", "eastron/sdm360")
    assert unknown.returncode == 1 and "did you mean eastron/sdm630" in unknown.stderr


def test_output_piped_into_a_reader_that_stops_early_is_not_an_error() -> None:
    """`edge-agent profiles show ... | head -1`: the closed pipe ends the command quietly, exit 0."""
    command = [sys.executable, "-m", "agent", "profiles", "show", "eastron/sdm630"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # block-buffered, as for users
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as agent:
        assert agent.stdout is not None and agent.stderr is not None
        agent.stdout.close()  # what head does once it has its line; here before the first one
        stderr = agent.stderr.read().decode()
        assert agent.wait(30) == 0, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr


def test_demo_shows_the_park_through_the_real_pipeline() -> None:
    """The README's run command: paced RS-485 line, TCP inverter, mosquitto, `edge-agent run`, tail."""
    done = edge_agent("demo", "--once", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    for device in ("main-incomer", "hall-b", "water-main", "pv-roof-a"):
        assert f"gw-demo-01/{device} " in done.stdout, device
    assert "inverter_state=on_grid" in done.stdout and "flow_rate=" in done.stdout
    assert '"state": "online"' in done.stdout
    assert "agent exited with 0" in done.stdout
    if not postgresql_available():
        assert "PostgreSQL part skipped" in done.stdout
        return
    # the platform end: the same readings through `edge-agent ingest` into PostgreSQL, queried at the end
    lines = [line for line in done.stdout.splitlines() if line.startswith("[postgresql] ")]
    assert any("edge-agent ingest pid" in line for line in lines), done.stdout
    stored = next(line for line in lines if "batches stored" in line)
    assert int(stored.split()[1]) > 0, stored
    for device in ("main-incomer", "hall-b", "water-main", "pv-roof-a"):
        assert any(line.startswith(f"[postgresql]   {device}: ") for line in lines), device
    assert any("inverter_state=on_grid" in line for line in lines)
    # the PV line: energy and CO2 once the inverter's yield counter has two readings stored (a short
    # --once run may end before its second one reaches PostgreSQL), and saying so otherwise
    pv = [line for line in lines if "last hour:" in line]
    assert len(pv) == 1 and ("kg CO₂ avoided (grid factor 0.5306 kg/kWh)" in pv[0]
                             or "no PV generation yet" in pv[0]), lines


def test_demo_without_psycopg_runs_and_says_how_to_get_the_database_part() -> None:
    """A gateway-only install: the demo still shows the park, plus one line on the PostgreSQL part."""
    code = "import sys; sys.modules['psycopg'] = None; from agent.cli import main; sys.exit(main(['demo', '--once']))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    hints = [line for line in done.stdout.splitlines() if "PostgreSQL part skipped" in line]
    assert len(hints) == 1 and "pip install 'edge-agent[ingest]'" in hints[0], done.stdout
    assert "gw-demo-01/" in done.stdout and "agent exited with 0" in done.stdout and "[postgresql]" not in done.stdout


def postgresql_available() -> bool:
    """psycopg (the ingest extra) and PostgreSQL's server binaries: what the demo's database part needs."""
    try:
        import psycopg  # noqa: F401

        from ingest.devcluster import bin_dir
        bin_dir()
    except (ImportError, RuntimeError):
        return False
    return True
