#!/usr/bin/env bash
# Build the Debian package of the agent for one architecture, on any amd64 Debian host, without emulation:
#   packaging/build-deb.sh ARCH [OUTDIR]        ARCH: arm64 | armhf | amd64; OUTDIR default dist/
# gives OUTDIR/edge-agent_<version>_<ARCH>.deb for Debian bookworm (Python 3.11): a virtual environment in
# /opt/edge-agent/venv holding the project wheel (`pip wheel .`) and every dependency as wheels for ARCH, so
# installing needs no network; /usr/bin/edge-agent; the systemd unit; /etc/edge-agent/agent.yaml (a conffile:
# never overwritten on upgrade); maintainer scripts in packaging/debian/.
#
# How: the wheels of the target are fetched with `pip download --platform ... --only-binary=:all:` (binary wheels
# for aarch64 / armv7l / x86_64), installed with `pip install --target` into the venv's site-packages, and the
# venv's skeleton (pyvenv.cfg, bin/python -> /usr/bin/python3) is written as Debian's `python3 -m venv` makes it.
# PyYAML is bundled in its pure-Python form on every architecture (the agent parses with the pure SafeLoader
# for located errors); msgpack too on armhf, which has no armv7 wheel on the registry (its cost: README).
#
# Environment: PYTHON (host Python 3.11 with pip; default .venv/bin/python, else python3),
# EDGE_AGENT_DEB_VERSION (package version; default: the wheel's version), SOURCE_DATE_EPOCH (file times).
# Needs: dpkg-deb, readelf (binutils); network for PyPI unless pip is pointed at a local index.
set -euo pipefail

usage() { echo "usage: $0 arm64|armhf|amd64 [OUTDIR]" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
arch=$1
repo=$(cd "$(dirname "$0")/.." && pwd)
outdir=$(mkdir -p "${2:-$repo/dist}" && cd "${2:-$repo/dist}" && pwd)
case "$arch" in
  amd64) machine=x86_64 ;;
  arm64) machine=aarch64 ;;
  armhf) machine=armv7l ;;
  *) usage ;;
esac
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$repo/.venv/bin/python" ]; then PYTHON=$repo/.venv/bin/python; else PYTHON=python3; fi
fi

prefix=/opt/edge-agent
venv=$prefix/venv
site=$venv/lib/python3.11/site-packages
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage=$work/root
wheels=$work/wheels
mkdir -p "$stage" "$wheels"
pip() { "$PYTHON" -m pip --disable-pip-version-check -q "$@"; }
quiet() { "$@" >"$work/log" 2>&1 || { cat "$work/log" >&2; echo "build-deb: failed: $*" >&2; exit 1; }; }

# 1. the project wheel: whatever `pip wheel .` of this tree contains (profiles and scenarios included)
quiet pip wheel --no-deps -w "$work/project" "$repo"
project_whl=$(ls "$work"/project/edge_agent-*.whl)
"$PYTHON" -c 'import sys, zipfile
sys.exit(not any("/profiles/" in n and n.endswith(".yaml") for n in zipfile.ZipFile(sys.argv[1]).namelist()))' \
  "$project_whl" || { echo "build-deb: the wheel carries no profile library: a gateway could read no device" >&2; exit 1; }
wheel_version=$(basename "$project_whl" | cut -d- -f2)
version=${EDGE_AGENT_DEB_VERSION:-$wheel_version}
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}

# 2. the dependencies as binary wheels for ARCH (glibc of bookworm: 2.36)
platforms=()
for tag in manylinux2014 manylinux_2_28 manylinux_2_31 manylinux_2_34 manylinux_2_36; do
  platforms+=(--platform "${tag}_$machine")
done
# pure-Python builds, with the project's version ranges: PyYAML everywhere (the agent parses with the pure
# SafeLoader for located errors, so the C extension would be dead weight with libyaml embedded), msgpack on
# armhf (no armv7 wheel on the registry)
pure=PyYAML
[ "$arch" = armhf ] && pure=PyYAML,msgpack
reqs=$("$PYTHON" - "$project_whl" "$pure" <<'EOF'
import re, sys, zipfile
wanted = sys.argv[2].lower().split(",")
with zipfile.ZipFile(sys.argv[1]) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    for line in z.read(meta).decode().splitlines():
        if line.startswith("Requires-Dist:") and ";" not in line:
            req = line.split(":", 1)[1].strip()
            if re.split(r"[^A-Za-z0-9_.-]", req)[0].lower() in wanted:
                print(req)
EOF
)
mapfile -t reqs <<<"$reqs"
MSGPACK_PUREPYTHON=1 PYYAML_FORCE_LIBYAML=0 quiet pip wheel --no-deps --no-binary "$pure" -w "$work/pure" "${reqs[@]}"
quiet pip download -d "$wheels" "${platforms[@]}" --find-links "$work/pure" --python-version 3.11 --implementation cp --abi cp311 --only-binary=:all: \
  "$project_whl"
for name in ${pure//,/ }; do rm -f "$wheels/$(echo "$name" | tr A-Z a-z)"-*.whl; done  # their pure builds instead
cp "$project_whl" "$work"/pure/*.whl "$wheels/"
[ "$(ls "$wheels"/*.whl | wc -l)" -gt 1 ] || { echo "build-deb: the dependencies could not be downloaded" >&2; exit 1; }

# 3. the venv, as bookworm's `python3 -m venv --without-pip /opt/edge-agent/venv` lays it out
mkdir -p "$stage$venv/bin" "$stage$site"
ln -s /usr/bin/python3 "$stage$venv/bin/python3"
ln -s python3 "$stage$venv/bin/python"
ln -s python3 "$stage$venv/bin/python3.11"
ln -s lib "$stage$venv/lib64"
cat > "$stage$venv/pyvenv.cfg" <<EOF
home = /usr/bin
include-system-site-packages = false
version = 3.11.2
executable = /usr/bin/python3.11
command = /usr/bin/python3 -m venv --without-pip $venv
EOF
quiet pip install --no-index --no-deps --no-compile --target "$stage$site" "${platforms[@]}" \
  --python-version 3.11 --implementation cp --abi cp311 --only-binary=:all: "$wheels"/*.whl
[ -d "$stage$site/agent" ] || { echo "build-deb: the agent did not install into the venv" >&2; exit 1; }
rm -rf "$stage$site/bin"  # launchers with the host's interpreter: written below for the target's
# the project's console scripts, for the venv's interpreter
"$PYTHON" - "$project_whl" "$stage$venv/bin" "$venv/bin/python3" <<'EOF'
import configparser, sys, zipfile
from pathlib import Path
whl, bindir, interp = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt"))
    eps = configparser.ConfigParser(delimiters=("=",))
    eps.read_string(z.read(name).decode())
for script, target in eps["console_scripts"].items():
    module, func = (s.strip() for s in target.split(":"))
    path = bindir / script
    path.write_text(f"#!{interp}\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n")
    path.chmod(0o755)
EOF
ver=$(basename "$project_whl" | cut -d- -f1-2)
# byte-code is compiled by postinst with the target's own interpreter (and removed by prerm), Debian's way
find "$stage$site" -name __pycache__ -prune -exec rm -rf {} +
# the bundled extensions, stripped like dh_strip would (binutils-multiarch strips foreign ELF)
find "$stage$site" -name '*.so' -type f -print0 | xargs -0 -r "${STRIP:-strip}" --strip-unneeded \
  --remove-section=.comment --remove-section=.note 2>/dev/null \
  || echo "build-deb: could not strip the $arch extensions (install binutils-multiarch)" >&2

# 4. the rest of the file system
install -D -m 0644 "$repo/systemd/edge-agent.service" "$stage/lib/systemd/system/edge-agent.service"
install -D -m 0644 "$repo/systemd/agent.example.yaml" "$stage/etc/edge-agent/agent.yaml"
install -D -m 0644 "$repo/systemd/agent.example.yaml" "$stage/usr/share/edge-agent/agent.example.yaml"
install -D -m 0644 "$repo/packaging/debian/lintian-overrides" "$stage/usr/share/lintian/overrides/edge-agent"
mkdir -p "$stage/usr/bin"
ln -s "$venv/bin/edge-agent" "$stage/usr/bin/edge-agent"
install -d "$stage/usr/share/man/man1"
gzip -9n < "$repo/packaging/debian/edge-agent.1" > "$stage/usr/share/man/man1/edge-agent.1.gz"
doc=$stage/usr/share/doc/edge-agent
mkdir -p "$doc"
{
  echo "edge-agent $version"
  echo
  echo "Bundled in $venv (wheels as published on PyPI, each with its own licence in its .dist-info):"
  for w in "$wheels"/*.whl; do basename "$w"; done | sort
} > "$doc/README.Debian"
{
  echo "Copyright: $(date -u -d "@$epoch" +%Y) the edge-agent authors"
  if [ -f "$repo/LICENSE" ] && grep -q "Apache License" "$repo/LICENSE" && grep -q "Version 2.0" "$repo/LICENSE"; then
    echo "License: Apache-2.0"
    echo " On Debian systems the full text of the Apache License, Version 2.0, is in"
    echo " /usr/share/common-licenses/Apache-2.0. The bundled libraries keep their own licences (see README.Debian)."
  elif [ -f "$repo/LICENSE" ]; then
    echo "License: the project's LICENSE file, below; the bundled libraries keep their own (see README.Debian)"
    echo
    cat "$repo/LICENSE"
  else
    echo "License: none stated in the source tree; the bundled libraries keep their own (see README.Debian)"
  fi
} > "$doc/copyright"
printf 'edge-agent (%s) bookworm; urgency=medium\n\n  * Package of %s.\n\n -- edge-agent maintainers <edge-agent@example.invalid>  %s\n' \
  "$version" "$ver" "$(date -R -u -d "@$epoch")" \
  | gzip -9n > "$doc/changelog.gz"

# 5. control data
mkdir -p "$stage/DEBIAN"
install -m 0755 "$repo"/packaging/debian/{postinst,prerm,postrm} "$stage/DEBIAN/"
echo /etc/edge-agent/agent.yaml > "$stage/DEBIAN/conffiles"
# shared libraries the bundled extensions link against -> the Debian packages that provide them
needed=$(find "$stage$site" -name '*.so*' -type f -exec readelf -d {} + 2>/dev/null | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | sort -u)
shlibs=""
for lib in $needed; do
  case "$lib" in
    libc.so.6|libm.so.6|libpthread.so.0|libdl.so.2|librt.so.1|ld-linux*) dep="libc6 (>= 2.17)" ;;
    libgcc_s.so.1) dep="libgcc-s1" ;;
    libstdc++.so.6) dep="libstdc++6" ;;
    libz.so.1) dep="zlib1g" ;;
    *) echo "build-deb: $lib (needed by a bundled extension) has no known Debian package: add it here" >&2; exit 1 ;;
  esac
  case "$shlibs" in *"$dep"*) ;; *) shlibs="$shlibs, $dep" ;; esac
done
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" -e "s/@SHLIBS@/$shlibs/" \
  "$repo/packaging/debian/control.in" > "$stage/DEBIAN/control"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) \
  > "$stage/DEBIAN/md5sums"

# reproducible file times and modes
find "$stage" -newermt "@$epoch" -print0 | xargs -0 -r touch --no-dereference --date="@$epoch"
find "$stage" -type d -exec chmod 0755 {} +
deb=$outdir/edge-agent_${version}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
