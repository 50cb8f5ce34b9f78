#!/usr/bin/env bash
# Print the path of a cached Debian bookworm root tarball for ARCH, making it first if missing:
#   packaging/root-tarball.sh ARCH       (minbase + python3, adduser, mosquitto; about 200 MB each)
# Cache: $EDGE_AGENT_CI_CACHE (default /var/cache/edge-agent-ci); delete a tarball to refresh it.
# Foreign architectures need qemu-user-static and binfmt-support (mmdebstrap runs their maintainer scripts).
set -euo pipefail
arch=${1:?usage: $0 arm64|armhf|amd64}
cache=${EDGE_AGENT_CI_CACHE:-/var/cache/edge-agent-ci}
tarball=$cache/bookworm-$arch-minbase.tar
if [ ! -s "$tarball" ]; then
  mkdir -p "$cache"
  mmdebstrap --quiet --variant=minbase --arch="$arch" --include=python3,adduser,mosquitto \
    bookworm "${tarball%.tar}.tmp.tar" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >&2
  mv "${tarball%.tar}.tmp.tar" "$tarball"
fi
echo "$tarball"
