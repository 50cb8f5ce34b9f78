#!/usr/bin/env bash
# The test command: set up what is missing, then run the whole suite (under 10 minutes).
# Extra arguments go to pytest, e.g. `scripts/test.sh --long` for full-length soaks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
