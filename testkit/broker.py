"""A real mosquitto for the tests, the demo and the HIL harness: own config, free port, stop/restart
on the same port, ACLs, TLS.

Readiness is a handshake (the port accepts a connection), never a sleep.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


class Broker:
    def __init__(self, directory: Path, acl: str | None = None, tls: dict[str, str] | None = None,
                 extra: tuple[str, ...] = ()) -> None:
        self.extra = extra
        self.directory = directory
        self.port = free_port()
        self.acl = acl
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = directory / "mosquitto.log"

    def config(self) -> Path:
        lines = [*(["user root"] if os.geteuid() == 0 else []),  # else it drops to a user that cannot read tmp dirs
                 f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence true",
                 f"persistence_location {self.directory}/", "autosave_interval 1", "log_type error",
                 "log_type warning", "log_type notice", f"log_dest file {self.log}", "max_queued_messages 100000"]
        lines += list(self.extra)
        if self.acl is not None:
            acl_file = self.directory / "acl"
            acl_file.write_text(self.acl)
            lines.append(f"acl_file {acl_file}")
        if self.tls:
            lines += [f"cafile {self.tls['ca']}", f"certfile {self.tls['cert']}", f"keyfile {self.tls['key']}",
                      "require_certificate true", "use_identity_as_username true"]
        path = self.directory / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> Broker:
        if not Path(MOSQUITTO).exists():
            raise RuntimeError("mosquitto is not installed: run scripts/bootstrap.sh (CI installs it)")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.config())], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        try:
            wait_port(self.port)
        except TimeoutError:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=5)
            raise RuntimeError(f"mosquitto did not start: {err.decode(errors='replace')[-500:]}") from None
        return self

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its persistence (subscriber sessions, queued messages) and exits."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()
