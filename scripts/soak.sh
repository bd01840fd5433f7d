#!/usr/bin/env bash
# Soak the runtime: threads sharing engines through module pools for a while, every output checked against
# keel_engine_run, memory bounded. Prints the peak memory (module peak_bytes and the process's peak RSS).
#   scripts/soak.sh [SECONDS=60] [THREADS=4]
# Uses the soak binary of KEEL_SOAK_BUILD (default build, the normal build folder); builds it if needed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${1:-60}
THREADS=${2:-4}
BUILD=${KEEL_SOAK_BUILD:-$ROOT/build}
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$BUILD" -j2 --target soak >/dev/null
BIN=$BUILD/tests/soak/soak
cd "$ROOT/tests/data"
echo "soak: $THREADS threads for ${SECS}s ($BIN)" >&2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
set +e
KEEL_SOAK_SECONDS=$SECS KEEL_SOAK_THREADS=$THREADS /usr/bin/time -v "$BIN" 2>"$out"
rc=$?
set -e
grep -v -E '^\s+(Average|Exit|File|Involuntary|Major|Minor|Page|Percent|Signals|Socket|Swaps|System|User|Voluntary|Command|Elapsed)' "$out" >&2 || true
echo "peak RSS: $(awk -F': ' '/Maximum resident set size/ {print $2}' "$out") KiB" >&2
exit $rc
