#!/usr/bin/env bash
# Install the .deb in a fresh Debian bookworm root of its architecture and use it there:
#   packaging/verify-emulated.sh ARCH [--quick|--full] [DEB]      ARCH: arm64 | armhf | amd64
# Steps (each timed, table at the end): build the .deb unless DEB is given; unpack a cached bookworm root
# (mmdebstrap minbase + python3, adduser, mosquitto; cached in $EDGE_AGENT_CI_CACHE, default
# /var/cache/edge-agent-ci); `apt-get install --no-download ./edge-agent_*.deb` in it (offline: nothing is
# fetched); `edge-agent validate` on the shipped example; `edge-agent simulate` + `edge-agent probe` (sdm630 over
# Modbus TCP on loopback); `edge-agent run` until READY=1; --full adds the HIL `baseline` scenario (quick form)
# with the root's mosquitto (not on armhf: no matplotlib wheel for the report), and remove/purge.
# Foreign architectures run through qemu-user-static's binfmt_misc entries (F flag: the interpreter is opened
# at registration, so nothing is copied into the root). A chroot shares the host's network: the simulator, the
# agent and the broker talk over loopback. systemd is not running in the root: postinst must cope.
# Needs root, mmdebstrap, qemu-user-static, binfmt-support (apt-get install mmdebstrap qemu-user-static binfmt-support).
set -euo pipefail

usage() { echo "usage: $0 arm64|armhf|amd64 [--quick|--full] [DEB]" >&2; exit 2; }
[ $# -ge 1 ] || usage
arch=$1; shift
mode=quick
deb=""
for arg in "$@"; do
  case "$arg" in
    --quick) mode=quick ;;
    --full) mode=full ;;
    *.deb) deb=$(readlink -f "$arg") ;;
    *) usage ;;
  esac
done
case "$arch" in amd64) qarch="" ;; arm64) qarch=aarch64 ;; armhf) qarch=arm ;; *) usage ;; esac
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${EDGE_AGENT_CI_CACHE:-/var/cache/edge-agent-ci}  # root tarballs (packaging/root-tarball.sh), HIL wheels
[ "$(id -u)" -eq 0 ] || { echo "verify-emulated: needs root (chroot, mounts)" >&2; exit 1; }
HOSTPY=${HOSTPY:-python3}

steps=()
step() {  # step NAME COMMAND...: run and time it; the table is printed at the end either way
  local name=$1 start rc=0; shift
  start=$(date +%s%N)
  echo "== $arch: $name" >&2
  set +e
  ( set -e; "$@" )  # a subshell, so `set -e` holds inside the step's function
  rc=$?
  set -e
  local ms=$(( ($(date +%s%N) - start) / 1000000 ))
  steps+=("$(printf '%-34s %5d.%01d s  %s' "$name" $((ms / 1000)) $((ms % 1000 / 100)) "$([ $rc -eq 0 ] && echo ok || echo "FAILED ($rc)")")")
  return $rc
}
table() {
  echo
  echo "verify-emulated $arch ($mode)${deb:+: $(basename "$deb") $(du -k "$deb" | cut -f1) KiB}"
  printf '%s\n' "${steps[@]}"
}

root=""
cleanup() {
  set +e
  if [ -n "$root" ]; then
    [ -f "$root/tmp/bg.pids" ] && while read -r pid; do kill "$pid" 2>/dev/null; done < "$root/tmp/bg.pids"
    sleep 0.5
    for m in dev/pts dev proc; do mountpoint -q "$root/$m" && umount -l "$root/$m"; done
    rm -rf --one-file-system "$root"
  fi
  table
}
trap cleanup EXIT

binfmt() {
  [ -z "$qarch" ] && return 0
  if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  fi
  [ -e "/proc/sys/fs/binfmt_misc/qemu-$qarch" ] || update-binfmts --enable "qemu-$qarch"
  grep -q enabled "/proc/sys/fs/binfmt_misc/qemu-$qarch"
}

make_root_tarball() { "$repo/packaging/root-tarball.sh" "$arch" > /dev/null; }

root=$(mktemp -d /var/tmp/edge-agent-root.XXXXXX)
unpack_root() {
  tar -C "$root" -xf "$("$repo/packaging/root-tarball.sh" "$arch")"
  mount -t proc proc "$root/proc"
  mount --bind /dev "$root/dev"
  mount --bind /dev/pts "$root/dev/pts"
  : > "$root/tmp/bg.pids"
  : > "$root/tmp/no-sources.list"
}

in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }
# for background commands: chroot, env and the program exec one another, so $! is the program itself
in_root_exec() { exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }

build() { "$repo/packaging/build-deb.sh" "$arch" "${OUTDIR:-$repo/dist}" > "$root/.deb-path"; }

install_deb() {
  cp "$deb" "$root/tmp/"
  # no package lists and no sources: apt can use nothing but the root and the .deb (no network)
  in_root apt-get install -y -q -o Dir::Etc::SourceList=/tmp/no-sources.list -o Dir::Etc::SourceParts=/nonexistent \
    "/tmp/$(basename "$deb")"
  in_root test -x /usr/bin/edge-agent
  in_root getent passwd edge-agent >/dev/null
  in_root id -nG edge-agent | grep -qw dialout
  in_root test -d /var/lib/edge-agent
  [ "$(in_root stat -c %U /var/lib/edge-agent)" = edge-agent ]
  in_root dpkg-query -W -f '${Conffiles}\n' edge-agent | grep -q /etc/edge-agent/agent.yaml
}

validate() { in_root edge-agent validate -c /etc/edge-agent/agent.yaml; }

free_port() { "$HOSTPY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_port() {  # wait_port PORT SECONDS
  "$HOSTPY" - "$1" "$2" <<'EOF'
import socket, sys, time
port, deadline = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.3)
sys.exit(f"nothing listens on {port}")
EOF
}

probe() {
  local port
  port=$(free_port)
  in_root_exec edge-agent simulate --profile eastron/sdm630 --listen "tcp://127.0.0.1:$port" >"$root/tmp/sim.log" 2>&1 &
  echo $! >> "$root/tmp/bg.pids"
  wait_port "$port" 120
  in_root edge-agent probe --url "tcp://127.0.0.1:$port" --unit 1 --profile eastron/sdm630 --json > "$root/tmp/probe.json"
  # every point answered with a number
  "$HOSTPY" - "$root/tmp/probe.json" <<'EOF'
import json, sys
values = json.load(open(sys.argv[1]))
missing = [k for k, v in values.items() if not isinstance(v, (int, float))]
assert values and not missing, f"probe: no value for {missing or 'any point'}"
print(f"probe: {len(values)} points, e.g. {next(iter(values.items()))}")
EOF
  echo "$port" > "$root/tmp/sim.port"
}

first_ready() {  # `edge-agent run` in the root, from spawn to READY=1 on its notify socket
  local port
  port=$(cat "$root/tmp/sim.port")
  cat > "$root/tmp/ready.yaml" <<EOF
gateway: {id: gw-verify, site: verify}
buses:
  - {name: line1, url: "tcp://127.0.0.1:$port"}
devices:
  - {id: main-incomer, bus: line1, unit: 1, profile: eastron/sdm630, interval: 5s}
mqtt: {url: "mqtt://127.0.0.1:$(free_port)", topic_prefix: park, batch_interval: 5s}
buffer: {path: /var/lib/edge-agent/buffer, max_bytes: 16MiB}
EOF
  chmod 0644 "$root/tmp/ready.yaml"
  local ids
  ids=$(in_root id -u edge-agent):$(in_root id -g edge-agent)
  "$HOSTPY" "$repo/packaging/first_ready.py" "$root" 300 \
    chroot --userspec="$ids" "$root" /usr/bin/env -i PATH=/usr/bin:/bin LANG=C.UTF-8 \
    NOTIFY_SOCKET=/tmp/notify.sock edge-agent run -c /tmp/ready.yaml
}

hil_baseline() {
  # the harness is test support, not product: it comes from this tree, with matplotlib (report timeline)
  # as ARCH wheels, on PYTHONPATH beside the installed package
  local overlay=$root/root/hil-overlay plat
  case "$arch" in amd64) plat=x86_64 ;; arm64) plat=aarch64 ;; armhf) plat=armv7l ;; esac
  mkdir -p "$overlay" "$cache/hil-wheels-$arch"
  "$HOSTPY" -m pip download -q -d "$cache/hil-wheels-$arch" --only-binary=:all: --python-version 3.11 \
    --implementation cp --abi cp311 --platform "manylinux2014_$plat" --platform "manylinux_2_28_$plat" \
    'matplotlib>=3.8,<4' 2>&1 | grep -v '^WARNING: Location' >&2 || true
  "$HOSTPY" -m pip install -q --no-index --no-deps --no-compile --target "$overlay" --only-binary=:all: \
    --python-version 3.11 --implementation cp --abi cp311 --platform "manylinux2014_$plat" \
    --platform "manylinux_2_28_$plat" "$cache/hil-wheels-$arch"/*.whl 2>&1 | grep -v '^WARNING: Location' >&2 || true
  for pkg in hil testkit; do
    [ -d "$repo/$pkg" ] && cp -r "$repo/$pkg" "$overlay/"
  done
  cp "$repo/hil/scenarios/baseline.yaml" "$root/tmp/baseline.yaml" 2>/dev/null \
    || cp "$(find "$repo" -path '*/scenarios/baseline.yaml' -not -path '*/.venv/*' | head -1)" "$root/tmp/baseline.yaml"
  mkdir -p "$root/tmp/hil-out"
  in_root env PYTHONPATH=/root/hil-overlay MPLCONFIGDIR=/tmp/mpl /opt/edge-agent/venv/bin/python3 -m agent \
    hil /tmp/baseline.yaml --quick --out /tmp/hil-out
}

remove_purge() {
  in_root apt-get remove -y -q -o Dir::Etc::SourceList=/tmp/no-sources.list -o Dir::Etc::SourceParts=/nonexistent edge-agent
  in_root test -f /etc/edge-agent/agent.yaml
  in_root test -d /var/lib/edge-agent
  in_root test ! -e /opt/edge-agent
  in_root apt-get purge -y -q -o Dir::Etc::SourceList=/tmp/no-sources.list -o Dir::Etc::SourceParts=/nonexistent edge-agent
  in_root test ! -e /etc/edge-agent
  in_root test ! -e /var/lib/edge-agent
}

step "binfmt (qemu-$arch)" binfmt
step "root tarball (cached)" make_root_tarball
if [ -z "$deb" ]; then
  step "build .deb" build
  deb=$(cat "$root/.deb-path")
fi
step "unpack root" unpack_root
step "apt install (offline)" install_deb
step "validate shipped example" validate
step "simulate + probe" probe
step "run to first READY=1" first_ready
if [ "$mode" = full ]; then
  # armhf: the HIL report needs matplotlib, which publishes no armv7 wheel (building it under qemu: too slow)
  [ "$arch" = armhf ] || step "HIL baseline (--quick)" hil_baseline
  step "remove, purge" remove_purge
fi
echo "verify-emulated: $arch $mode: all steps passed" >&2
