#!/usr/bin/env bash
# The developer path onto a test gateway with network (gateways in production: the .deb, packaging/build-deb.sh;
# do not mix the two on one machine). Installs this checkout with pip on the gateway itself, idempotently:
#   sudo systemd/install.sh [--start]          install or upgrade, enable the service (and start it)
#   systemd/install.sh --root /tmp/stage       stage the files under a directory (no users, no systemctl)
# It creates the system user `edge-agent` (in group dialout, for the serial ports), a virtualenv in
# /opt/edge-agent/venv with this source tree installed (the profile library comes inside the package),
# /etc/edge-agent/profiles for an operator's own profiles, an example /etc/edge-agent/agent.yaml
# (never overwrites an existing one) and the unit /etc/systemd/system/edge-agent.service.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
root=""
start=no
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root=$2; shift 2 ;;
    --start) start=yes; shift ;;
    *) echo "usage: $0 [--root DIR] [--start]" >&2; exit 2 ;;
  esac
done
staged() { [ -n "$root" ]; }

if ! staged; then
  [ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root (sudo)" >&2; exit 1; }
  getent group dialout >/dev/null || groupadd --system dialout
  if ! id edge-agent >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --home-dir /var/lib/edge-agent \
      --shell /usr/sbin/nologin --groups dialout edge-agent
  else
    usermod --append --groups dialout edge-agent
  fi
fi

install -d -m 0755 "$root/opt/edge-agent" "$root/etc/systemd/system"
install -d -m 0750 "$root/etc/edge-agent"
install -d -m 0755 "$root/etc/edge-agent/profiles"
if [ ! -x "$root/opt/edge-agent/venv/bin/python" ]; then
  python3 -m venv "$root/opt/edge-agent/venv"
fi
"$root/opt/edge-agent/venv/bin/python" -m pip install -q --upgrade "$src"
# older installs copied the profiles here; the package carries them now
rm -rf "$root/usr/share/edge-agent/firmware-profiles"
rmdir "$root/usr/share/edge-agent" 2>/dev/null || true
if [ ! -e "$root/etc/edge-agent/agent.yaml" ]; then
  install -m 0640 "$src/systemd/agent.example.yaml" "$root/etc/edge-agent/agent.yaml"
fi
install -m 0644 "$src/systemd/edge-agent.service" "$root/etc/systemd/system/edge-agent.service"

if ! staged; then
  chgrp edge-agent /etc/edge-agent /etc/edge-agent/agent.yaml
  systemctl daemon-reload
  systemctl enable edge-agent.service
  if [ "$start" = yes ]; then systemctl restart edge-agent.service; fi
  echo "installed; edit /etc/edge-agent/agent.yaml, check it with '/opt/edge-agent/venv/bin/edge-agent validate -c /etc/edge-agent/agent.yaml', then 'systemctl restart edge-agent'"
fi
