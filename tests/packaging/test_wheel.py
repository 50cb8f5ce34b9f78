"""The wheel and the sdist are complete: built from this tree with the environment's own backend (no
network), the wheel alone, unpacked outside the source tree, knows every profile and HIL scenario and
validates the shipped example config; the sdist carries what a build, a review and the tests need."""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from agent import __version__

REPO = Path(__file__).resolve().parents[2]
PROFILES = sorted(str(p.relative_to(REPO)) for p in (REPO / "agent/profiles").glob("*/*.yaml"))
SCENARIOS = sorted(str(p.relative_to(REPO)) for p in (REPO / "hil/scenarios").glob("*.yaml"))


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m build --no-isolation`: the sdist, then the wheel built from the unpacked sdist."""
    out = tmp_path_factory.mktemp("dist")
    # from a copy without build leftovers: a stale *.egg-info/SOURCES.txt would add files the
    # configuration itself no longer names, and hide exactly the omission this test is for
    source = tmp_path_factory.mktemp("source") / "edge-agent"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "*.egg-info", "build", "dist", "__pycache__", ".*_cache", ".hypothesis", "hil-*"))
    done = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.fail("building failed (the test extra brings setuptools>=77 and build: run scripts/bootstrap.sh)\n"
                    + done.stdout[-2000:] + done.stderr[-2000:])
    return out


def _wheel(dist: Path) -> Path:
    (wheel,) = dist.glob(f"edge_agent-{__version__}-py3-none-any.whl")
    return wheel


def test_the_wheel_carries_the_profiles_the_scenarios_and_the_licence(dist: Path) -> None:
    assert len(PROFILES) >= 26 and len(SCENARIOS) >= 6  # the globs above see the library
    with zipfile.ZipFile(_wheel(dist)) as wheel:
        names = set(wheel.namelist())
        metadata = email.message_from_bytes(wheel.read(f"edge_agent-{__version__}.dist-info/METADATA"))
    assert set(PROFILES) <= names, set(PROFILES) - names
    assert set(SCENARIOS) <= names, set(SCENARIOS) - names
    assert {"agent/profiles/README.md", "ingest/sql/schema.sql", "testkit/broker.py",
            f"edge_agent-{__version__}.dist-info/licenses/LICENSE"} <= names
    assert not [n for n in names if n.startswith(("tests/", "bench/"))]  # the sdist has them, the wheel not
    assert metadata["Version"] == __version__
    assert metadata["License-Expression"] == "Apache-2.0"


def _run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "EDGE_AGENT_PROFILES"}
    env["PYTHONPATH"] = str(site)  # ahead of the environment's own (editable) install
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=60)


def test_the_unpacked_wheel_alone_knows_every_profile_and_scenario(dist: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(_wheel(dist)) as wheel:
        wheel.extractall(site)
    elsewhere = tmp_path / "elsewhere"  # not the source tree: nothing is found relative to the checkout
    elsewhere.mkdir()
    where = _run(site, elsewhere, "-c", "import agent, hil, testkit; print(agent.__file__, hil.__file__, testkit.__file__)")
    assert where.returncode == 0, where.stderr
    assert all(Path(f).is_relative_to(site) for f in where.stdout.split()), where.stdout

    listed = _run(site, elsewhere, "-m", "agent", "profiles", "list")
    assert listed.returncode == 0, listed.stderr
    refs = [line.split()[0] for line in listed.stdout.splitlines()]
    assert refs == sorted(p.removeprefix("agent/profiles/").removesuffix(".yaml") for p in PROFILES)
    assert "INVALID" not in listed.stdout

    config = elsewhere / "agent.yaml"
    config.write_text((REPO / "systemd/agent.example.yaml").read_text())
    valid = _run(site, elsewhere, "-m", "agent", "validate", "-c", str(config))
    assert valid.returncode == 0, valid.stdout + valid.stderr

    scenarios = _run(site, elsewhere, "-c", "from hil import scenario; print(*scenario.available())")
    assert scenarios.returncode == 0, scenarios.stderr
    assert scenarios.stdout.split() == [Path(p).stem for p in SCENARIOS]


def test_a_library_that_is_not_there_is_reported_with_where_it_was_looked_for(dist: Path, tmp_path: Path) -> None:
    """The failure this packaging fixes, made plain if it comes back: no profiles is an error naming the
    search path, not an empty list."""
    site = tmp_path / "site"
    with zipfile.ZipFile(_wheel(dist)) as wheel:
        wheel.extractall(site)
    shutil.rmtree(site / "agent" / "profiles")
    listed = _run(site, tmp_path, "-m", "agent", "profiles", "list")
    assert listed.returncode == 1
    assert f"no profiles found; searched /etc/edge-agent/profiles, {site / 'agent' / 'profiles'}" in listed.stderr


def test_the_sdist_carries_sources_data_docs_and_tests(dist: Path) -> None:
    (sdist,) = dist.glob(f"edge_agent-{__version__}.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    docs = {str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md")}
    wanted = {*PROFILES, *SCENARIOS, *docs, "LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml",
              "systemd/agent.example.yaml", "systemd/edge-agent.service", "scripts/bootstrap.sh",
              "tests/conftest.py", "testkit/broker.py", "bench/__main__.py", "ingest/sql/schema.sql"}
    assert docs and wanted <= names, wanted - names
