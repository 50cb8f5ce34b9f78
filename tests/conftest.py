"""Shared fixtures: real peers, started and stopped by the tests.

- `sim`: a `testkit.sims.SimThread` (pymodbus servers of simulated devices on their own event loop).
- `socat_pair`: two linked pseudo-terminals, an RS-485 line on one machine.
- `write_profile`: a profile file in a temporary search directory.
"""

from __future__ import annotations

import os

# asyncio debug mode for every loop the tests start, in this process and in the agents they spawn:
# pipeline state then refuses calls from a foreign thread (agent/threads.py), and asyncio itself
# refuses non-thread-safe calls on the loop from other threads.
os.environ["PYTHONASYNCIODEBUG"] = "1"

import shutil
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from agent import threads
from agent.config import ProfileLibrary
from agent.drivers.urls import BusSpec, SerialSettings, Transport
from testkit.sims import SimThread

if TYPE_CHECKING:
    from testkit.powercut import PowerCutFS

threads.set_checking(True)

__all__ = ["SimThread", "rtu_spec"]

REPO = Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", help="run long soaks and crash loops at full length")


@pytest.fixture
def long_mode(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--long"))


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


@pytest.fixture
def powercut_fs(tmp_path: Path) -> Iterator[PowerCutFS]:
    """The power-cut file system (testkit/powercut.py) mounted on tmp_path/mnt over tmp_path/disk;
    where FUSE cannot run the test fails and says why (CI runs as root with /dev/fuse)."""
    from testkit.powercut import PowerCutFS

    problem = PowerCutFS.unavailable()
    if problem:
        pytest.fail(f"the power-cut file system cannot run here: {problem}")
    with PowerCutFS(tmp_path / "disk", tmp_path / "mnt") as fs:
        yield fs
