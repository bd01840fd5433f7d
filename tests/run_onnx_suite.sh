#!/bin/sh
# Run one ONNX backend test suite folder through `keel test` with its skip list.
# usage: run_onnx_suite.sh KEEL SUITE_DIR SKIP_LIST
set -eu
keel=$1 suite=$2 skip=$3
exec "$keel" test --quiet --skip-list "$skip" "$suite"/*/
