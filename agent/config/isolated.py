"""Load the config in a short-lived child process, so the daemon never imports pydantic.

Validation needs pydantic, and pydantic costs a long-running process about 14 MB that it never
gives back (its import, its schema machinery, the validators of every model). `edge-agent run`
therefore starts `python -m agent.config.isolated CONFIG`, at start and on SIGHUP: the child loads
and checks everything exactly as `validate` does and hands back the result, plain frozen
dataclasses (models.py), pickled on its stdout. The daemon unpickles them without pydantic.

The child is started before the daemon imports its own modules, so the two overlap: on two cores
starting this way is no slower than validating in the process.

Runs on: the caller's thread (the daemon's start, or a worker thread for a reload). The child is
this same interpreter and package: sys.executable with `-P` (the working directory is not on its
path, so a stray `agent/` or `yaml.py` there is never imported) and the package's own directory on
PYTHONPATH. It answers with the agent version it ran: after a package upgrade without a restart,
a SIGHUP is refused ("restart the agent") instead of mixing the new code's settings into the old.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

from agent import __version__
from agent.config.loader import LoadedConfig
from agent.errors import ConfigError, Problem

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding the `agent` package
TIMEOUT_S = 60.0  # a config of 1,000 devices loads in about a second on a Raspberry Pi 4
STDERR_LINES = 5  # of a failed child's output, in the problem reported


class PendingConfig:
    """A config being loaded by a child process; `result()` waits for it."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(PACKAGE_ROOT),
                                                                          os.environ.get("PYTHONPATH"))))}
        self._child = subprocess.Popen([sys.executable, "-P", "-m", "agent.config.isolated", self.path],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       env=env)

    def result(self) -> LoadedConfig:
        """The loaded config, or ConfigError with every problem (as `validate` reports them)."""
        try:
            out, err = self._child.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.communicate()
            raise self._problem(f"loading the config took over {TIMEOUT_S:.0f} s (gave up)") from None
        if self._child.returncode != 0 or not out:
            lines = err.decode(errors="replace").strip().splitlines()[-STDERR_LINES:]
            raise self._problem(f"the config loader failed: {' | '.join(lines) or f'exit {self._child.returncode}'}")
        try:
            version, kind, value = pickle.loads(out)  # our own child: this same interpreter and package
        except Exception as exc:  # noqa: BLE001 - whatever a damaged answer raises, it is one located line
            raise self._problem(f"the config loader's answer could not be read ({type(exc).__name__}: {exc})") from None
        if version != __version__:
            raise self._problem(f"the installed agent is {version}, this one runs {__version__}: "
                                "restart the agent to load the config")
        if kind == "problems":
            raise ConfigError(value)
        if not isinstance(value, LoadedConfig):
            raise self._problem(f"the config loader sent {type(value).__name__}")
        return value

    def _problem(self, message: str) -> ConfigError:
        """A problem of the config file as a whole (no line: the loader, not the file, went wrong)."""
        return ConfigError([Problem(self.path, None, "", message)])


def load_config_isolated(path: str | Path) -> LoadedConfig:
    """`load_config` in a child process: same result, same errors, no pydantic in this one."""
    return PendingConfig(path).result()


def main(argv: list[str]) -> int:
    """The child: load the config named in argv[0] and pickle (version, kind, outcome) to stdout.
    Anything else that would print to stdout (a library's warning) goes to stderr instead, so the
    answer cannot be corrupted."""
    answer = os.dup(1)
    os.dup2(2, 1)
    from agent.config.loader import load_config

    try:
        outcome: tuple[str, str, object] = (__version__, "config", load_config(argv[0]))
    except ConfigError as exc:
        outcome = (__version__, "problems", exc.problems)
    data = memoryview(pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL))
    while data:
        data = data[os.write(answer, data):]
    os.close(answer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
