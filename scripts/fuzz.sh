#!/usr/bin/env bash
# Run one libFuzzer harness for a while.
#   scripts/fuzz.sh TARGET SECONDS [--merge] [-- extra libFuzzer flags]
# TARGET: model | tensor. Needs the clang fuzz build:
#   CC=clang cmake -S . -B build-fuzz -DKEEL_FUZZ=ON -DKEEL_SANITIZE=ON && cmake --build build-fuzz -j2
# New corpus entries and crash artifacts go to a work folder (KEEL_FUZZ_WORK, default
# build-fuzz/fuzz-work/TARGET), never into the repository, unless --merge is given: then the new entries that
# add coverage are merged into fuzz/corpus/TARGET at the end. Crashes: minimize them
# (BIN -minimize_crash=1 -runs=10000 CRASH), copy to fuzz/regressions/TARGET/ and fix.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -lt 2 ]; then
  echo "usage: $0 model|tensor SECONDS [--merge] [-- libFuzzer flags]" >&2
  exit 2
fi
TARGET=$1 SECONDS_=$2
shift 2
MERGE=0
if [ "${1:-}" = "--merge" ]; then MERGE=1; shift; fi
if [ "${1:-}" = "--" ]; then shift; fi
case "$TARGET" in
  model) MAX_LEN=65536 ;;
  tensor) MAX_LEN=16384 ;;
  *) echo "unknown target '$TARGET' (model or tensor)" >&2; exit 2 ;;
esac
BUILD=${KEEL_FUZZ_BUILD:-$ROOT/build-fuzz}
BIN=$BUILD/fuzz/fuzz_$TARGET
if [ ! -x "$BIN" ]; then
  echo "$BIN not found: build with CC=clang -DKEEL_FUZZ=ON -DKEEL_SANITIZE=ON (see the top of this script)" >&2
  exit 1
fi
WORK=${KEEL_FUZZ_WORK:-$BUILD/fuzz-work/$TARGET}
mkdir -p "$WORK/corpus" "$WORK/crashes"
# Single allocations above 512 MiB return NULL (keel reports OUT_OF_MEMORY) instead of ending the run on
# libFuzzer's RSS limit: planning still trusts declared sizes up to the allocator (docs/SECURITY.md, known
# gaps), and before 077a934 external tensors were allocated before their reference was checked.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1:max_allocation_size_mb=512}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:suppressions=$ROOT/fuzz/ubsan-open.supp}
LOG=$WORK/fuzz-$(date +%Y%m%d-%H%M%S).log
echo "fuzzing $TARGET for ${SECONDS_}s; log $LOG; new inputs $WORK/corpus; crashes $WORK/crashes" >&2
# The first corpus folder receives new entries; the seed corpus in the repository is read only.
set +e
nice -n 10 "$BIN" -max_total_time="$SECONDS_" -timeout=10 -rss_limit_mb=2048 -max_len=$MAX_LEN \
  -print_final_stats=1 -artifact_prefix="$WORK/crashes/" "$@" \
  "$WORK/corpus" "$ROOT/fuzz/corpus/$TARGET" 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
set -e
if [ $MERGE = 1 ]; then
  echo "merging new coverage into fuzz/corpus/$TARGET" >&2
  "$BIN" -merge=1 -max_len=$MAX_LEN -timeout=10 -rss_limit_mb=2048 "$ROOT/fuzz/corpus/$TARGET" "$WORK/corpus" 2>&1 | tail -3
fi
echo "fuzz_$TARGET exit status $rc (0: no crash); stats:" >&2
grep -E '^(#[0-9]+.*(DONE|pulse)|stat::)' "$LOG" | tail -12 >&2 || true
ls -1 "$WORK/crashes" 2>/dev/null | sed 's/^/artifact: /' >&2 || true
exit $rc
