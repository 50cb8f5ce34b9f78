#!/usr/bin/env bash
# The main job on a machine without hardware: set up what is missing, then run the demo
# (simulated meters on loopback, read live through the real stack) until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/edge-agent demo "$@"
