#!/usr/bin/env bash
# The README's second command (and CI's): set up, build, and run the whole test suite:
#   1. release build: unit tests, the ONNX backend node tests (against tests/skip/), models vs onnxruntime;
#   2. AddressSanitizer + UndefinedBehaviorSanitizer build: unit tests and the node tests again.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

echo "== build (release)"
scripts/build.sh build
echo "== tests (release)"
ctest --test-dir build --output-on-failure -j2
echo "== Python package tests (tests/python, over build/libkeel.so)"
KEEL_LIBRARY=build/libkeel.so python3 -m pytest -q tests/python

echo "== build (ASan + UBSan)"
scripts/build.sh build-asan -DKEEL_SANITIZE=ON
echo "== tests (ASan + UBSan)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j2 -LE models

echo "== build (ThreadSanitizer)"
scripts/build.sh build-tsan -DKEEL_TSAN=ON
echo "== concurrency tests (ThreadSanitizer)"
TSAN_OPTIONS=halt_on_error=1 ctest --test-dir build-tsan --output-on-failure -L concurrency
