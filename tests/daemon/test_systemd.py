"""The unit file and the installer: verified, hardened, idempotent."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "edge-agent.service"


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True)


def test_unit_verifies(tmp_path: Path) -> None:
    """`systemd-analyze verify` is clean once ExecStart exists (here: this checkout's entry point)."""
    local = tmp_path / "edge-agent.service"
    local.write_text(UNIT.read_text().replace("/opt/edge-agent/venv/bin/edge-agent",
                                              str(Path(sys.executable).with_name("edge-agent"))))
    done = analyze("verify", str(local))
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


def test_unit_security_exposure_is_at_most_2() -> None:
    done = analyze("security", "--offline=true", str(UNIT))
    match = re.search(r"Overall exposure level for edge-agent\.service: ([0-9.]+)", done.stdout)
    assert match, done.stdout[-500:] + done.stderr
    assert float(match.group(1)) <= 2.0


def test_unit_keeps_what_the_agent_needs() -> None:
    text = UNIT.read_text()
    for line in ("Type=notify", "WatchdogSec=", "Restart=always", "SupplementaryGroups=dialout",
                 "StateDirectory=edge-agent", "ConfigurationDirectory=edge-agent", "DeviceAllow=char-ttyUSB rw",
                 "ExecReload=/bin/kill -HUP $MAINPID"):
        assert line in text, line


def test_staged_install_is_idempotent_and_keeps_the_config(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for _ in range(2):
        done = subprocess.run(["bash", str(REPO / "systemd" / "install.sh"), "--root", str(root)],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        config = root / "etc/edge-agent/agent.yaml"
        config.write_text(config.read_text() + "# edited by the integrator\n")
    assert (root / "etc/edge-agent/agent.yaml").read_text().count("# edited by the integrator") == 2
    assert (root / "etc/systemd/system/edge-agent.service").read_text() == UNIT.read_text()
    assert (root / "etc/edge-agent/profiles").is_dir()
    installed = subprocess.run([str(root / "opt/edge-agent/venv/bin/python"), "-c",
                                "import agent.config.profiles as p; print(p.BUILTIN_DIR)"],
                               capture_output=True, text=True, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    assert installed.returncode == 0, installed.stderr
    assert Path(installed.stdout.strip()).is_relative_to(root / "opt/edge-agent/venv"), installed.stdout
    validate = subprocess.run([str(root / "opt/edge-agent/venv/bin/edge-agent"), "validate", "-c",
                               str(REPO / "systemd" / "agent.example.yaml")], capture_output=True, text=True,
                              cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    assert validate.returncode == 0, validate.stderr  # the profiles come with the installed package
