"""One version string: agent.__version__ is what the package metadata, `edge-agent --version` and
the retained status message say (the status side: tests/daemon/test_run.py)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from agent import __version__

REPO = Path(__file__).resolve().parents[2]


def test_pyproject_takes_the_version_from_the_package() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"]  # no second copy to forget
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "agent.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_the_cli_prints_the_package_version() -> None:
    done = subprocess.run([sys.executable, "-m", "agent", "--version"], capture_output=True, text=True, cwd=REPO,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"edge-agent {__version__}"


def test_the_changelog_describes_this_version() -> None:
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(__version__)}\]", changelog, re.MULTILINE), "CHANGELOG.md has no entry"
