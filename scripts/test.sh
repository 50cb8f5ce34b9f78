#!/usr/bin/env bash
# The test command: set up what is missing, run the test suite (tests/: the agent, and tests/ingest: the
# platform end against a private PostgreSQL cluster and a real mosquitto), then the quick HIL scenario set
# (a simulated park end to end; report and PNG timelines land in the current directory).
# Extra arguments go to pytest, e.g. `scripts/test.sh --long` for full-length soaks;
# SKIP_HIL=1 skips the HIL run; `edge-agent hil` without --quick runs the long versions.
# Then the Debian packages (needs root): EMULATED=quick (default) builds the amd64 .deb, lints it, and installs
# the arm64 one in an emulated bookworm root (validate, probe, first READY); EMULATED=full adds the HIL baseline
# scenario in the arm64 root, remove/purge, and armhf; EMULATED=0 skips them.
set -euo pipefail
here=$(pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
bash scripts/bootstrap.sh
.venv/bin/ruff check .          # lint: no findings allowed
.venv/bin/mypy                  # types of agent/, ingest/, testkit/ and bench/: no findings allowed
.venv/bin/python -m pytest "$@"
if [ "${SKIP_HIL:-0}" != 1 ]; then
  cd "$here"
  "$repo/.venv/bin/edge-agent" hil --quick
fi
emulated=${EMULATED:-quick}
if [ "$emulated" != 0 ] && [ "$(id -u)" -eq 0 ]; then
  cd "$repo"
  export PYTHON=$repo/.venv/bin/python HOSTPY=$repo/.venv/bin/python
  deb=$(packaging/build-deb.sh amd64 dist)
  lintian --fail-on error "$deb"
  packaging/verify-emulated.sh arm64 "--$emulated"
  if [ "$emulated" = full ]; then
    packaging/verify-emulated.sh armhf --quick
  fi
elif [ "$emulated" != 0 ]; then
  echo "test.sh: not root: the Debian package steps are skipped (EMULATED=0 to skip them quietly)" >&2
fi
