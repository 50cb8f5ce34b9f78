"""The harness commands on an install without their extras: a message that says what to install and
exit 2, never a traceback; a HIL run that found no scenario fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.errors import ConfigError
from hil import main as hil_main
from hil import scenario

REPO = Path(__file__).resolve().parents[2]


def test_hil_without_matplotlib_says_what_to_install(tmp_path: Path) -> None:
    """matplotlib made unimportable, as on a gateway installed without the `hil` extra."""
    blocker = tmp_path / "blocker" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'matplotlib'\", name='matplotlib')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker.parent), str(REPO)])}
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "agent", "hil", "--quick", "baseline", "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "pip install 'edge-agent[hil]'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()  # nothing ran


def test_a_hil_run_without_any_scenario_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """As the wheel behaved without its package data: no scenario found is an error, not "0 passed"."""
    empty = tmp_path / "scenarios"
    empty.mkdir()
    monkeypatch.setattr(scenario, "SCENARIO_DIR", empty)
    assert hil_main.main([], quick=True, out=tmp_path / "out") == 1
    assert f"no HIL scenario found in {empty}" in capsys.readouterr().err


def test_an_unknown_scenario_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ConfigError) as raised:
        scenario.load("no-such-scenario")
    assert "no such scenario; the package has: baseline, china-meters" in str(raised.value)
