"""The `edge-agent` command on bad input and a hostile machine: one clear line and an exit code,
never a traceback. Each case runs the real command in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.buffer.ring import Ring, SealedBatch

REPO = Path(__file__).resolve().parents[2]


def edge_agent(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env={**os.environ, "NOTIFY_SOCKET": ""})


def failed_cleanly(done: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The error lines (stderr without the count header), after checking the exit code and no traceback."""
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == code, (done.returncode, done.stderr)
    return "\n".join(line.strip() for line in done.stderr.splitlines() if not line.endswith("error(s):"))


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def config(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text("gateway: {id: gw-1, site: s}\n" + f"buffer: {{path: {tmp_path}/buf}}\n" + textwrap.dedent(extra))
    return path


def test_validate_and_run_with_the_prometheus_port_taken(tmp_path: Path, taken_port: int) -> None:
    path = config(tmp_path, f"prometheus: '127.0.0.1:{taken_port}'\n")
    said = failed_cleanly(edge_agent("validate", "-c", str(path)))
    assert said == f"{path}:3: prometheus: port {taken_port} is in use by another program: `run` could not " \
                   "listen there; choose another port"
    said = failed_cleanly(edge_agent("run", "-c", str(path)))
    assert f"{path}:3: prometheus: cannot listen on 127.0.0.1:{taken_port}: address already in use" in said
    assert len([line for line in said.splitlines() if not line.startswith("{")]) == 1, said  # one line beside the log


def test_run_with_a_missing_password_file_refuses_in_one_line(tmp_path: Path) -> None:
    path = config(tmp_path, "mqtt: {url: 'mqtt://127.0.0.1:1', password_file: /nonexistent/pw}\n")
    said = failed_cleanly(edge_agent("run", "-c", str(path)))
    assert said == f"{path}:3: mqtt.password_file: cannot read /nonexistent/pw: No such file or directory"


def test_validate_with_a_buffer_directory_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "afile").touch()
    path = tmp_path / "agent.yaml"
    path.write_text(f"gateway: {{id: gw-1, site: s}}\nbuffer: {{path: {tmp_path}/afile/buf}}\n")
    said = failed_cleanly(edge_agent("validate", "-c", str(path)))
    assert said.startswith(f"{path}:2: buffer.path: {tmp_path}/afile is not a directory"), said


def _buffer_with_batches(directory: Path, count: int) -> None:
    ring = Ring.open(directory, full_check=True)
    ring.commit([SealedBatch(ring.allocate_seq(), os.urandom(3000), 9, 1000, 1999) for _ in range(count)])
    ring.close()


@pytest.mark.parametrize("command", ["stats", "dump"])
def test_buffer_commands_on_a_file_of_garbage(tmp_path: Path, command: str) -> None:
    (tmp_path / "buffer.sqlite").write_bytes(os.urandom(8192))
    said = failed_cleanly(edge_agent("buffer", command, "--path", str(tmp_path)))
    assert said == f"{tmp_path}/buffer.sqlite: cannot read the buffer: file is not a database; the agent moves a " \
                   "damaged file aside and salvages it at its next start"


@pytest.mark.parametrize("command", ["stats", "dump"])
def test_buffer_commands_on_a_truncated_file(tmp_path: Path, command: str) -> None:
    _buffer_with_batches(tmp_path, 200)
    db = tmp_path / "buffer.sqlite"
    os.truncate(db, db.stat().st_size // 3)
    said = failed_cleanly(edge_agent("buffer", command, "--path", str(tmp_path)))
    assert said.startswith(f"{db}: cannot read the buffer: database disk image is malformed"), said


@pytest.mark.parametrize("where", ["missing/dir", "afile"])
def test_buffer_commands_where_there_is_no_buffer(tmp_path: Path, where: str) -> None:
    (tmp_path / "afile").touch()
    said = failed_cleanly(edge_agent("buffer", "stats", "--path", str(tmp_path / where)))
    assert said == f"{tmp_path / where}: no buffer here (buffer.sqlite not found)"


def test_a_good_buffer_still_shows(tmp_path: Path) -> None:
    _buffer_with_batches(tmp_path, 3)
    done = edge_agent("buffer", "stats", "--path", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "batches              3" in done.stdout


@pytest.mark.parametrize(("units", "said"), [
    ("1-300", "error: --units: unit ids are 1-247, got '1-300'"),
    ("0-5", "error: --units: unit ids are 1-247, got '0-5'"),
    ("1-x", "error: --units: expected unit ids like 1-20 or 1,2,11, got '1-x'"),
])
def test_scan_with_unit_ids_out_of_range(units: str, said: str) -> None:
    assert failed_cleanly(edge_agent("scan", "--url", "tcp://127.0.0.1:1", "--units", units)) == said


@pytest.mark.parametrize(("args", "said"), [
    (("probe", "--url", "foo://x", "--profile", "eastron/sdm630"), "argument --url: unknown scheme 'foo'"),
    (("scan", "--url", "tcp://h:99999"), "argument --url: 'tcp://h:99999': the port must be a number from 1 to 65535"),
    (("simulate", "--profile", "eastron/sdm630", "--listen", "rtu://x"), "argument --listen: 'rtu://x': a serial URL"),
])
def test_bad_bus_urls_on_the_command_line_are_usage_errors(args: tuple[str, ...], said: str) -> None:
    done = edge_agent(*args)
    assert said in failed_cleanly(done, code=2)  # argparse's usage-error code
