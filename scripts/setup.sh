#!/usr/bin/env bash
# Install what building and testing keel needs, on Debian (run as root, or with sudo available).
# Idempotent: only missing packages are installed.
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(build-essential cmake pkg-config libprotobuf-c-dev protobuf-c-compiler libonnx-dev libopenblas-dev
      libonnx-testdata clang libclang-rt-dev python3 python3-pip python3-dev)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python reference tools (onnx, onnxruntime, numpy), pinned.
if ! python3 - <<'PY' 2>/dev/null
import importlib.metadata as m, sys
want = {}
for line in open("requirements-dev.txt"):
    line = line.split("#")[0].strip()
    if "==" in line:
        k, v = line.split("==")
        want[k] = v
sys.exit(0 if all(m.version(k) == v for k, v in want.items()) else 1)
PY
then
  echo "setup: installing Python packages from requirements-dev.txt"
  python3 -m pip install -q --disable-pip-version-check -r requirements-dev.txt 2>&1 | grep -v "Running pip as the 'root' user" || true
fi
