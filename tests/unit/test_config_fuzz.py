"""The config loader against damaged input: every mutation of the shipped example either loads or
raises ConfigError whose problems are located (a file, and a line or a key path) — never another
exception, which `validate` would print as a traceback and a SIGHUP would lose.

300 mutations by default, 3,000 with --long; each named case below once.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import load_config
from agent.errors import ConfigError
from tests.unit.config_mutations import mutate

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = (REPO / "systemd" / "agent.example.yaml").read_bytes()
HEAD = b"gateway: {id: gw-1, site: s}\n"
DEVICE = b"buses: [{name: line1, url: 'tcp://127.0.0.1:5020'}]\n"


def load_or_located_error(path: Path) -> list[str]:
    """The problems (empty if it loaded); fails the test on any other exception or an unlocated problem."""
    try:
        load_config(path)
    except ConfigError as exc:
        assert exc.problems, "a ConfigError without problems"
        for problem in exc.problems:
            assert problem.file and problem.message, problem
            assert problem.line is not None or problem.path, f"not located: {problem}"
        return [str(p) for p in exc.problems]
    return []


NAMED = {
    "non-UTF-8 byte": (HEAD + b"buffer: {path: /tmp/b\xff}\n", "agent.yaml:2: not UTF-8"),
    "control character": (HEAD + b"buffer: {path: /tmp/\x01b}\n", "agent.yaml:2: character U+0001"),
    "list as a key": (HEAD + b"? [a, b]\n: 1\n", "agent.yaml:2: a key must be a plain name"),
    "mapping as a key": (HEAD + b"buses: [{name: line1, {x: 1}: 2}]\n", "a key must be a plain name"),
    "list where a name is expected": (HEAD + DEVICE + b"devices: [{id: [a], bus: [line1], unit: [1], "
                                                       b"profile: eastron/sdm630}]\n", "devices[0].id"),
    "profiles_dirs: [1]": (HEAD + b"profiles_dirs: [1]\n", "profiles_dirs[0]"),
    "!!int 'x'": (HEAD + b"mqtt: {url: 'mqtt://h', window: !!int 'x'}\n", "agent.yaml:2: mqtt.window: cannot read"),
    "<<: 5": (HEAD + b"buffer: {<<: 5}\n", "agent.yaml:2: buffer: bad merge key"),
    "300-character profile name": (HEAD + DEVICE + b"devices: [{id: d, bus: line1, unit: 1, profile: "
                                   + b"a" * 300 + b"/b}]\n", "unknown profile"),
    "2000 nested brackets": (HEAD + b"x: " + b"[" * 2000 + b"]" * 2000 + b"\n", "nested more than 50 levels"),
    "alias to its own collection": (HEAD + b"x: &a [*a]\n", "an alias refers to the collection that contains it"),
    "aliases expanding without end": (HEAD + b"a: &a [x, x, x, x, x, x, x, x, x, x]\n" + b"".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n".encode() for i in range(6)),
        "more than 200000 values"),
    "bad timestamp": (HEAD + b"x: !!timestamp '2001-13-45'\n", "agent.yaml:2: x: cannot read"),
    "unknown tag": (HEAD + b"x: !!python/object:os.system ls\n", "agent.yaml:2: x: cannot read this value"),
    "profiles dir name too long": (HEAD + b"profiles_dirs: [" + b"d" * 5000 + b"]\n" + DEVICE
                                   + b"devices: [{id: d, bus: line1, unit: 1, profile: x/y}]\n", "unknown profile"),
    "truncated in a string": (HEAD + b"buffer: {path: '/tmp", "YAML syntax error"),
}


@pytest.mark.parametrize("name", NAMED)
def test_named_damage_is_a_located_problem(name: str, tmp_path: Path) -> None:
    text, expected = NAMED[name]
    path = tmp_path / "agent.yaml"
    path.write_bytes(text)
    found = load_or_located_error(path)
    assert any(expected in problem for problem in found), found


def test_fuzzed_example_configs_load_or_fail_located(tmp_path: Path, long_mode: bool) -> None:
    path = tmp_path / "agent.yaml"

    @settings(max_examples=3000 if long_mode else 300, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.randoms(use_true_random=False))
    def check(rng: random.Random) -> None:
        path.write_bytes(mutate(EXAMPLE, rng))
        load_or_located_error(path)

    check()
