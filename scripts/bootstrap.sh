#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine or an existing one: OS packages the tests need
# (socat for pseudo-terminal RS-485 lines, mosquitto for the broker tests, postgresql for the ingest tests, fuse3 for the
# power-cut tests' file system, libfaketime for the clock-leap tests), then a virtualenv
# in .venv with the agent and its test dependencies. Safe to run again: it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v socat >/dev/null 2>&1 || need_apt+=(socat)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
# the agent's wall clock leaps under libfaketime in tests/daemon/test_clock_leaps.py
compgen -G "/usr/lib/*/faketime/libfaketime.so.1" >/dev/null || need_apt+=(libfaketime)
# PostgreSQL server binaries for the ingest tests (each run starts a private cluster with initdb/pg_ctl);
# Debian keeps them in /usr/lib/postgresql/<version>/bin, off the PATH
command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need_apt+=(postgresql)
# libfuse 3 (loaded by mfusepy through ctypes) and fusermount3 for the power-cut file system (testkit/powercut.py)
{ command -v fusermount3 >/dev/null 2>&1 && compgen -G "/usr/lib/*/libfuse3.so.3*" >/dev/null; } || need_apt+=(fuse3 libfuse3-3)
# the Debian package: built and checked (packaging/build-deb.sh, lintian), installed in a fresh bookworm root
# (mmdebstrap; tests/packaging), and for EMULATED=quick|full (the default: quick) in an arm64/armhf root under qemu
if [ "$(id -u)" -eq 0 ]; then
  command -v dpkg-deb >/dev/null 2>&1 || need_apt+=(dpkg-dev)
  command -v mmdebstrap >/dev/null 2>&1 || need_apt+=(mmdebstrap)
  command -v lintian >/dev/null 2>&1 || need_apt+=(lintian)
  dpkg -s binutils-multiarch >/dev/null 2>&1 || need_apt+=(binutils-multiarch)  # strips the arm extensions
  if [ "${EMULATED:-quick}" != 0 ]; then
    [ -x /usr/bin/qemu-aarch64-static ] || need_apt+=(qemu-user-static)
    command -v update-binfmts >/dev/null 2>&1 || need_apt+=(binfmt-support)
  fi
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing ${need_apt[*]} with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    # the Debian packages start a system broker on 1883 and a system cluster on 5432; the tests
    # start their own on free ports
    if command -v systemctl >/dev/null 2>&1; then
      systemctl disable --now mosquitto >/dev/null 2>&1 || true
      systemctl disable --now postgresql >/dev/null 2>&1 || true
    fi
  else
    echo "bootstrap: please install ${need_apt[*]} (sudo apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".[test]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
