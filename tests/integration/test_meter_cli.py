"""`edge-agent probe`, `scan` and `simulate` on DL/T 645 and CJ/T 188 lines, as a person runs them."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import ProfileLibrary
from agent.meters.server import MeterFaults
from agent.simulate import SimulatedDevice
from tests.conftest import SimThread
from tests.integration.test_cli import edge_agent

VALUES = {"energy_import": 4321.09, "voltage_l1": 229.8, "current_l1": -3.25, "active_power": -745.5,
          "power_factor": -0.982, "frequency": 49.97, "energy_export": 12.0}


def test_probe_json_by_address(sim: SimThread, library: ProfileLibrary) -> None:
    meter = SimulatedDevice(library.load("dlt645/single-phase"), dict(VALUES), moving=False)
    spec, _ = sim.meters_tcp("dlt645", {"000000123456": meter})
    done = edge_agent("probe", "--url", f"dlt645+tcp://127.0.0.1:{spec.port}", "--address", "000000123456",
                      "--profile", "dlt645/single-phase", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == VALUES


def test_probe_without_address_finds_the_meter_and_shows_raw_bytes(sim: SimThread, library: ProfileLibrary) -> None:
    meter = SimulatedDevice(library.load("cjt188/water-meter"), {"volume_total": 1234.56}, moving=False)
    spec, _ = sim.meters_tcp("cjt188", {"12345678901234": meter})
    done = edge_agent("probe", "--url", f"cjt188+tcp://127.0.0.1:{spec.port}", "--profile", "cjt188/water-meter")
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("volume_total "))
    assert "1234.56" in row and "56 34 12 00 2C" in row  # BCD low byte first, then the m³ unit code
    assert "meter 12345678901234" in done.stdout


def test_probe_of_a_silent_meter_explains(sim: SimThread, library: ProfileLibrary) -> None:
    meter = SimulatedDevice(library.load("dlt645/single-phase"))
    spec, _ = sim.meters_tcp("dlt645", {"000000123456": meter}, MeterFaults(silent={"000000123456"}))
    done = edge_agent("probe", "--url", f"dlt645+tcp://127.0.0.1:{spec.port}", "--address", "000000123456",
                      "--profile", "dlt645/single-phase", "--timeout", "0.3")
    assert done.returncode == 2
    assert "no answer from meter 000000123456" in done.stderr and "wrong meter address" in done.stderr


def test_scan_lists_the_meters_that_answer(sim: SimThread, library: ProfileLibrary, tmp_path: Path) -> None:
    meters = {a: SimulatedDevice(library.load("dlt645/single-phase")) for a in ("000000000007", "000000000009")}
    spec, _ = sim.meters_tcp("dlt645", meters)
    candidates = tmp_path / "addresses.txt"
    candidates.write_text("# meter numbers from the site survey\n000000000007\n000000000008\n000000000009\n")
    done = edge_agent("scan", "--url", f"dlt645+tcp://127.0.0.1:{spec.port}", "--profile", "dlt645/single-phase",
                      "--addresses", str(candidates), "--timeout", "0.3")
    assert done.returncode == 0, done.stderr
    assert '"000000000007"' in done.stdout and '"000000000009"' in done.stdout and "000000000008" not in done.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_simulate_serves_a_meter_the_probe_reads(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "agent", "simulate", "--profile", "cjt188/heat-meter",
                               "--listen", f"cjt188+tcp://127.0.0.1:{port}", "--address", "00000000004242",
                               "--set", "heat_energy=5000.5"], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and "simulating cjt188/heat-meter" in server.stdout.readline()
        done = edge_agent("probe", "--url", f"cjt188+tcp://127.0.0.1:{port}", "--address", "00000000004242",
                          "--profile", "cjt188/heat-meter", "--json")
    finally:
        server.terminate()
        server.wait(10)
    assert done.returncode == 0, done.stderr
    values = json.loads(done.stdout)
    assert values["heat_energy"] == 5000.5 and all(v is not None for v in values.values())


@pytest.mark.parametrize("ref", ["dlt645/three-phase", "cjt188/heat-meter"])
def test_profiles_show_lists_data_identifiers(ref: str) -> None:
    done = edge_agent("profiles", "show", ref)
    assert done.returncode == 0 and " DI " in done.stdout


def test_scan_finds_meters_by_shortened_addressing(sim: SimThread, library: ProfileLibrary) -> None:
    """Three meters, two of them ending in the same two digits (their answers collide and the
    search narrows by one more byte); no address list given."""
    addresses = ("000000001207", "000000003407", "220101000042")
    meters = {a: SimulatedDevice(library.load("dlt645/single-phase")) for a in addresses}
    spec, handle = sim.meters_tcp("dlt645", meters)
    done = edge_agent("scan", "--url", f"dlt645+tcp://127.0.0.1:{spec.port}", "--profile", "dlt645/single-phase",
                      "--timeout", "0.05", timeout=120)
    assert done.returncode == 0, done.stderr
    assert all(f'"{a}"' in done.stdout for a in addresses), done.stdout
    assert handle.line.requests == 200  # 100 for the last byte, 100 more under the collision on 07


def test_read_address_with_several_meters_is_a_collision_not_a_wrong_answer(sim: SimThread,
                                                                           library: ProfileLibrary) -> None:
    meters = {a: SimulatedDevice(library.load("dlt645/single-phase")) for a in ("000000000001", "000000000002")}
    spec, _ = sim.meters_tcp("dlt645", meters)
    done = edge_agent("probe", "--url", f"dlt645+tcp://127.0.0.1:{spec.port}", "--profile", "dlt645/single-phase",
                      "--timeout", "0.3")
    assert done.returncode == 2 and "give --address" in done.stderr


def test_validate_locates_a_wrong_meter_address(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text('gateway: {id: gw-1, site: s}\n'
                      'buses:\n  - {name: elec, url: "dlt645:///dev/ttyUSB1"}\n'
                      'devices:\n'
                      '  - {id: incomer, bus: elec, address: "000000123456", profile: dlt645/three-phase}\n'
                      '  - {id: hall, bus: elec, address: "12345678901", profile: chint/dtsu666-dlt645}\n')
    done = edge_agent("validate", "-c", str(config))
    assert done.returncode == 1
    assert f"{config}:6: devices[1].address: a dlt645 address has 12 digits, this one 11" in done.stdout + done.stderr
    config.write_text(config.read_text().replace('"12345678901"', '"000012345678"'))
    assert edge_agent("validate", "-c", str(config)).returncode == 0


def test_probe_refuses_a_profile_of_another_protocol() -> None:
    done = edge_agent("probe", "--url", "dlt645+tcp://127.0.0.1:9", "--address", "000000123456",
                      "--profile", "eastron/sdm630")
    assert done.returncode == 1 and "eastron/sdm630 is a modbus profile" in done.stderr
