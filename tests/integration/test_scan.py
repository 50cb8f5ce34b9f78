"""`edge-agent scan` on a simulated bus with different devices: each is found and identified."""

from __future__ import annotations

from agent.config import ProfileLibrary
from agent.scan import Candidate, rate
from agent.simulate import SimulatedDevice
from agent.types import Quality, Reading
from testkit.sims import SimThread
from tests.integration.test_cli import edge_agent


def test_scan_finds_and_identifies_three_devices(sim: SimThread) -> None:
    library = ProfileLibrary()
    spec, _ = sim.tcp({1: SimulatedDevice(library.load("eastron/sdm630")),
                       4: SimulatedDevice(library.load("chint/dtsu666")),
                       7: SimulatedDevice(library.load("xintai/water-meter"))})
    done = edge_agent("scan", "--url", f"tcp://127.0.0.1:{spec.port}", "--units", "1-8", "--rate", "100",
                      "--timeout", "0.2", "--bus-name", "plant", timeout=180)
    assert done.returncode == 0, done.stderr
    blocks = [line.strip() for line in done.stdout.splitlines() if line.strip().startswith("- {")]
    assert blocks == [
        "- {id: sdm630-1, bus: plant, unit: 1, profile: eastron/sdm630, interval: 10s}",
        "- {id: dtsu666-4, bus: plant, unit: 4, profile: chint/dtsu666, interval: 10s}",
        "- {id: water-meter-7, bus: plant, unit: 7, profile: xintai/water-meter, interval: 10s}",
    ], done.stdout


def test_rating_prefers_plausible_values() -> None:
    good = [Reading("d", "voltage_l1", 0, 231.0), Reading("d", "frequency", 0, 50.0),
            Reading("d", "energy_import", 0, 12.0)]
    garbage = [Reading("d", "voltage_l1", 0, 2.4e-41), Reading("d", "frequency", 0, 16384.0),
               Reading("d", "energy_import", 0, 12.0)]
    failed = [Reading("d", "voltage_l1", 0, None, Quality.EXCEPTION, 2)]
    assert rate("a", good) == Candidate("a", 3, 2, 2)
    assert rate("b", garbage).score < rate("a", good).score
    assert rate("c", failed).score == 0
