"""A private, throwaway PostgreSQL cluster for the tests, the fleet benchmark and local trials.

Debian's server binaries (`initdb`, `pg_ctl`) on a free 127.0.0.1 port in a temporary directory.
PostgreSQL refuses to run as root, so as root the directory is handed to an unprivileged user
(`nobody` unless told otherwise) and the binaries run through `runuser`. Readiness is a real
connection (`pg_isready`), never a sleep.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class ClusterError(RuntimeError):
    """The cluster could not be created or started; the message carries the server's log tail."""


def bin_dir() -> Path:
    """Where initdb and pg_ctl live: the PATH first, then Debian's /usr/lib/postgresql/<newest>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not candidates:
        raise ClusterError("PostgreSQL server binaries not found: run scripts/bootstrap.sh "
                           "(or apt-get install postgresql)")
    return Path(candidates[-1]).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DevCluster:
    """`with DevCluster() as pg: psycopg.connect(pg.dsn())`. `stop()`/`start()` keep the data and
    the port, for outage tests."""

    def __init__(self, durable: bool = False, user: str = "nobody", settings: dict[str, str] | None = None) -> None:
        self.durable = durable  # fsync on (benchmarks); off for tests, where a crash of the OS is not the subject
        self.user = user if os.geteuid() == 0 else None
        self.settings = settings or {}
        self.bin = bin_dir()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="edge-agent-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._created = False

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)

    def _init(self) -> None:
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        result = self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                           "--locale=C", *([] if self.durable else ["--no-sync"]))
        if result.returncode:
            raise ClusterError(f"initdb failed: {result.stderr[-800:]}")
        lines = [f"port = {self.port}", "listen_addresses = '127.0.0.1'", f"unix_socket_directories = '{self.root}'",
                 f"fsync = {'on' if self.durable else 'off'}", "max_connections = 50", "shared_buffers = 128MB",
                 "timezone = 'UTC'", *(f"{k} = {v}" for k, v in self.settings.items())]
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("\n".join(lines) + "\n")
        self._created = True

    def start(self) -> DevCluster:
        if not self._created:
            self._init()
        result = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")
        if result.returncode:
            raise ClusterError(f"pg_ctl start failed: {result.stderr[-400:]} {self.log_tail()}")
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._run("pg_isready", "-h", "127.0.0.1", "-p", str(self.port), timeout=10).returncode == 0:
                return
            time.sleep(0.05)
        raise ClusterError(f"PostgreSQL on port {self.port} not ready after {timeout} s: {self.log_tail()}")

    def stop(self, mode: str = "fast") -> None:
        """`fast`: clean shutdown; `immediate`: like a crash (recovery on the next start)."""
        if self.data.exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", timeout=60)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def log_tail(self, chars: int = 800) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> DevCluster:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.destroy()
