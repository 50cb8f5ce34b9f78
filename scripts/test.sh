#!/usr/bin/env bash
# The test command: set up what is missing, run the test suite (tests/: the agent, and tests/ingest: the
# platform end against a private PostgreSQL cluster and a real mosquitto), then the quick HIL scenario set
# (a simulated park end to end; report and PNG timelines land in the current directory).
# Extra arguments go to pytest, e.g. `scripts/test.sh --long` for full-length soaks;
# SKIP_HIL=1 skips the HIL run; `edge-agent hil` without --quick runs the long versions.
set -euo pipefail
here=$(pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
bash scripts/bootstrap.sh
.venv/bin/ruff check .          # lint: no findings allowed
.venv/bin/mypy                  # types of agent/, ingest/ and testkit/: no findings allowed
.venv/bin/python -m pytest "$@"
if [ "${SKIP_HIL:-0}" != 1 ]; then
  cd "$here"
  "$repo/.venv/bin/edge-agent" hil --quick
fi
