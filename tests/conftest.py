"""Shared fixtures: real peers, started and stopped by the tests.

- `SimThread`: pymodbus servers of simulated devices on their own event loop in a thread, so a
  test (sync or async, or a CLI subprocess) talks to them over real sockets or PTYs.
- `socat_pair`: two linked pseudo-terminals, an RS-485 line on one machine.
- `write_profile`: a profile file in a temporary search directory.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from agent.config import ProfileLibrary
from agent.drivers.pymodbus_adapter import Faults, ServerHandle
from agent.drivers.urls import BusSpec, SerialSettings, Transport
from agent.simulate import SimulatedDevice, serve

REPO = Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", help="run long soaks and crash loops at full length")


@pytest.fixture
def long_mode(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--long"))


class SimThread:
    """Simulated devices served from a background event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="sim", daemon=True)
        self._thread.start()
        self.handles: list[ServerHandle] = []

    def serve(self, listen: BusSpec, devices: Mapping[int, SimulatedDevice], faults: Faults | None = None) -> ServerHandle:
        handle = asyncio.run_coroutine_threadsafe(serve(listen, devices, faults), self.loop).result(10)
        self.handles.append(handle)
        return handle

    def tcp(self, devices: Mapping[int, SimulatedDevice], faults: Faults | None = None,
            rtu_framing: bool = False) -> tuple[BusSpec, ServerHandle]:
        """Serve on a free loopback port; returns the client-side spec."""
        transport = Transport.RTU_OVER_TCP if rtu_framing else Transport.TCP
        handle = self.serve(BusSpec(transport, "127.0.0.1", 0), devices, faults)
        return BusSpec(transport, "127.0.0.1", handle.port), handle

    def stop(self) -> None:
        for handle in self.handles:
            asyncio.run_coroutine_threadsafe(handle.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


@pytest.fixture
def sim() -> Iterator[SimThread]:
    thread = SimThread()
    yield thread
    thread.stop()


@pytest.fixture
def socat_pair(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two linked PTYs (device side, agent side); waits until both exist."""
    if not shutil.which("socat"):
        pytest.fail("socat is not installed: run scripts/bootstrap.sh (CI installs it)")
    device_end, agent_end = tmp_path / "ttyDEV", tmp_path / "ttyAGENT"
    proc = subprocess.Popen(["socat", f"pty,raw,echo=0,link={device_end}", f"pty,raw,echo=0,link={agent_end}"],
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while not (device_end.exists() and agent_end.exists()):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("socat did not create the PTY pair")
        time.sleep(0.01)
    yield str(device_end), str(agent_end)
    proc.terminate()
    proc.wait(5)


def rtu_spec(path: str, baudrate: int = 9600) -> BusSpec:
    return BusSpec(Transport.RTU, path, 0, SerialSettings(baudrate, "N", 1, 8))


@pytest.fixture
def profile_dir(tmp_path: Path) -> Path:
    root = tmp_path / "profiles"
    root.mkdir()
    return root


@pytest.fixture
def write_profile(profile_dir: Path):  # type: ignore[no-untyped-def]
    """write_profile("test/zoo", yaml_text) -> ProfileLibrary that finds it (built-ins too)."""
    def write(ref: str, text: str) -> ProfileLibrary:
        path = profile_dir / f"{ref}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return ProfileLibrary([str(profile_dir)])
    return write


@pytest.fixture
def library() -> ProfileLibrary:
    return ProfileLibrary()
