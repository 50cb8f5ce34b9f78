"""The Debian package end to end in a fresh bookworm root (amd64, chroot: no emulation): install v1, run it
with the broker down so it buffers, upgrade to v2 while it runs, restart on v2 with the broker up, and every
batch v1 stored arrives with its readings; the edited conffile and the buffer survive the upgrade.

Runs where the tools are (root, dpkg-deb, chroot, mosquitto, an amd64 host, and a cached root tarball or
mmdebstrap to make one: packaging/root-tarball.sh); CI installs them. Elsewhere it skips and says why.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.broker import Broker, free_port, wait_port
from testkit.platform import Platform

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("EDGE_AGENT_CI_CACHE", "/var/cache/edge-agent-ci"))
NO_SOURCES = ["-o", "Dir::Etc::SourceList=/tmp/no-sources.list", "-o", "Dir::Etc::SourceParts=/nonexistent"]


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (chroot, mounts)"
    for tool in ("dpkg-deb", "chroot", "readelf"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    if not (CACHE / "bookworm-amd64-minbase.tar").is_file() and shutil.which("mmdebstrap") is None:
        return "needs mmdebstrap or a cached root tarball (apt-get install mmdebstrap)"
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    if arch != "amd64":
        return f"the chroot test runs amd64 packages without emulation; this host is {arch}"
    return None


pytestmark = [pytest.mark.skipif(_missing() is not None, reason=f"Debian package test: {_missing()}"),
              pytest.mark.timeout(900)]


def _build(version: str, outdir: Path) -> Path:
    env = {**os.environ, "EDGE_AGENT_DEB_VERSION": version, "PYTHON": sys.executable}
    out = subprocess.run([str(REPO / "packaging/build-deb.sh"), "amd64", str(outdir)], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    return Path(out.stdout.strip().splitlines()[-1])


class Root:
    """A bookworm root unpacked from the cached tarball, with /proc and /dev; commands run in it by chroot."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.procs: list[subprocess.Popen[bytes]] = []

    def command(self, *args: str, user: str | None = None) -> list[str]:
        spec = [f"--userspec={user}"] if user else []
        return ["chroot", *spec, str(self.path), "/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME=/root", "LANG=C.UTF-8", *args]

    def run(self, *args: str, user: str | None = None) -> str:
        out = subprocess.run(self.command(*args, user=user), capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, f"{' '.join(args)}: exit {out.returncode}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
        return out.stdout + out.stderr

    def spawn(self, *args: str, user: str | None = None, log: str) -> subprocess.Popen[bytes]:
        with open(self.path / "tmp" / log, "ab") as sink:
            proc = subprocess.Popen(self.command(*args, user=user), stdout=sink, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def install(self, deb: Path) -> str:
        shutil.copy(deb, self.path / "tmp" / deb.name)
        return self.run("apt-get", "install", "-y", "-q", *NO_SOURCES, f"/tmp/{deb.name}")

    def service_user(self) -> str:
        return f"{self.run('id', '-u', 'edge-agent').strip()}:{self.run('id', '-g', 'edge-agent').strip()}"

    def buffer_rows(self, missing_ok: bool = False) -> dict[int, int]:
        """seq -> readings of every batch in the agent's buffer (`edge-agent buffer dump`, as the service user)."""
        args = ("edge-agent", "buffer", "dump", "--path", "/var/lib/edge-agent/buffer")
        out = subprocess.run(self.command(*args, user=self.service_user()), capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            assert missing_ok, f"no readable buffer: {out.stderr[-1000:]}"
            return {}  # not created yet
        rows = {}
        for line in out.stdout.splitlines():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            if "seq" in fields:
                rows[int(fields["seq"])] = int(fields["readings"])
        return rows


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Root]:
    tarball = subprocess.run([str(REPO / "packaging/root-tarball.sh"), "amd64"], capture_output=True, text=True,
                             check=True).stdout.strip()
    path = tmp_path / "root"
    path.mkdir()
    subprocess.run(["tar", "-C", str(path), "-xf", tarball], check=True)
    (path / "tmp" / "no-sources.list").write_text("")
    subprocess.run(["mount", "-t", "proc", "proc", str(path / "proc")], check=True)
    subprocess.run(["mount", "--bind", "/dev", str(path / "dev")], check=True)
    r = Root(path)
    try:
        yield r
    finally:
        for proc in r.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for mount in ("dev", "proc"):
            subprocess.run(["umount", "-l", str(path / mount)], check=False)
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60)


def test_upgrade_keeps_the_buffer_and_delivers_the_backlog(root: Root, tmp_path: Path) -> None:
    v1 = _build("0.0.1~test", tmp_path / "v1")
    v2 = _build("0.0.2~test", tmp_path / "v2")

    out = root.install(v1)
    assert "is still the example" in out  # fresh install with the untouched example: enabled, not started
    assert (root.path / "etc/systemd/system/multi-user.target.wants/edge-agent.service").is_symlink()

    # a simulated meter in the root, the broker's port reserved but nothing listening: the agent buffers
    sim_port = free_port()
    root.spawn("edge-agent", "simulate", "--profile", "eastron/sdm630", "--listen", f"tcp://127.0.0.1:{sim_port}",
               log="sim.log")
    wait_port(sim_port, timeout=60)
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker")
    config = (f"gateway: {{id: gw-upgrade, site: upgrade}}\n"
              f"buses:\n  - {{name: line1, url: \"tcp://127.0.0.1:{sim_port}\"}}\n"
              f"devices:\n  - {{id: main-incomer, bus: line1, unit: 1, profile: eastron/sdm630, interval: 1s}}\n"
              f"mqtt: {{url: \"mqtt://127.0.0.1:{broker.port}\", topic_prefix: park, batch_interval: 1s}}\n"
              f"buffer: {{path: /var/lib/edge-agent/buffer, max_bytes: 16MiB}}\n")
    (root.path / "etc/edge-agent/agent.yaml").write_text(config)  # the operator's edit of the conffile
    user = root.service_user()
    v1_agent = root.spawn("edge-agent", "run", "-c", "/etc/edge-agent/agent.yaml", user=user, log="agent-v1.log")
    _wait(lambda: len(root.buffer_rows(missing_ok=True)) >= 4, 120, "v1 to buffer four batches with the broker down")
    before = root.buffer_rows()

    # the upgrade, v1 still running (as under systemd until postinst restarts it)
    out = root.install(v2)
    assert "systemd is not running here" in out  # the edited config validated; no systemd in a chroot
    assert root.run("dpkg-query", "-W", "-f", "${Version}", "edge-agent") == "0.0.2~test"
    assert (root.path / "etc/edge-agent/agent.yaml").read_text() == config  # conffile kept as edited
    assert not list((root.path / "etc/edge-agent").glob("agent.yaml.dpkg-*"))
    assert _stop(v1_agent) == 0
    stored = root.buffer_rows()  # read by v2's code
    assert set(before) <= set(stored), "batches buffered before the upgrade are gone"

    # v2 with the broker up: the backlog arrives, every batch once, with all its readings
    broker.start()
    platform = Platform(broker.port)
    try:
        v2_agent = root.spawn("edge-agent", "run", "-c", "/etc/edge-agent/agent.yaml", user=user, log="agent-v2.log")
        _wait(lambda: set(stored) <= set(platform.seqs), 120, "the backlog to arrive")
        _wait(lambda: platform.schema is not None, 30, "the retained schema")
        received = {header.seq: len(readings) for _, header, readings in platform.batches()}
        assert {seq: received[seq] for seq in stored} == stored
        assert platform.duplicates() == 0
        assert _stop(v2_agent) == 0
    finally:
        platform.close()
        broker.stop()
    assert sum(stored.values()) > 0

    # a config that does not validate: postinst says where and how to finish, and the install still succeeds
    (root.path / "etc/edge-agent/agent.yaml").write_text(config.replace("unit: 1,", "unit: 1, bogus_key: 3,"))
    out = root.run("/var/lib/dpkg/info/edge-agent.postinst", "configure", "0.0.1~test")
    assert "does not validate" in out and "bogus_key" in out and "edge-agent validate -c" in out
