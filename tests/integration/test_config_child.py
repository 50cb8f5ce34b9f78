"""`run` loads its config in a child process: same result and problems as `validate`, and the
child neither picks up code from the working directory nor mixes versions after an upgrade."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import load_config
from agent.config.isolated import PendingConfig, load_config_isolated
from agent.errors import ConfigError

CONFIG = """\
gateway: {id: gw-1, site: park}
buses: [{name: plant, url: "tcp://127.0.0.1:5020"}]
devices:
  - {id: meter-1, bus: plant, unit: 1, profile: eastron/sdm630, interval: 2s}
buffer: {path: "BUFFER"}
"""


def _config(tmp_path: Path, text: str = CONFIG) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(text.replace("BUFFER", str(tmp_path / "buf")))
    return path


def test_the_child_loads_what_validate_loads(tmp_path: Path) -> None:
    path = _config(tmp_path)
    here, there = load_config(path), load_config_isolated(path)
    assert there.config == here.config and there.digest == here.digest
    assert [(d.config, d.profile.points, d.timing) for d in there.devices] == \
        [(d.config, d.profile.points, d.timing) for d in here.devices]


def test_the_childs_problems_are_validates_problems(tmp_path: Path) -> None:
    path = _config(tmp_path, CONFIG.replace("interval: 2s", "intervall: 2s"))
    with pytest.raises(ConfigError) as here:
        load_config(path)
    with pytest.raises(ConfigError) as there:
        load_config_isolated(path)
    assert [str(p) for p in there.value.problems] == [str(p) for p in here.value.problems]
    assert any("intervall" in str(p) and "agent.yaml:4" in str(p) for p in there.value.problems)


def test_a_stray_package_in_the_working_directory_is_not_imported(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    stray = tmp_path / "cwd" / "agent"
    stray.mkdir(parents=True)
    (stray / "__init__.py").write_text('raise SystemExit("the stray agent package was imported")\n')
    (tmp_path / "cwd" / "yaml.py").write_text('raise SystemExit("the stray yaml module was imported")\n')
    path = _config(tmp_path)
    monkeypatch.chdir(tmp_path / "cwd")
    assert load_config_isolated(path).config.gateway.id == "gw-1"


def test_a_child_of_another_version_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After `apt upgrade` without a restart, the child runs the new code: its settings are not
    unpickled into the old code's classes; the reload says to restart."""
    import agent.config.isolated as isolated

    monkeypatch.setattr(isolated, "__version__", "0.0.1")  # this process: an older agent still running
    with pytest.raises(ConfigError, match="restart the agent"):
        PendingConfig(_config(tmp_path)).result()
