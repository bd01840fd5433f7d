#!/usr/bin/env bash
# The keel command as a user meets it: the bundled real model gives the right answers, bad files give a
# clear error and a non-zero exit (never a crash), and the output formats other tools parse stay stable.
# usage: test_cli.sh KEEL
set -uo pipefail
keel=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
passes=0
pass() { echo "ok   $1"; passes=$((passes + 1)); }
fail() { echo "FAIL $1"; failures=$((failures + 1)); }

# expect NAME EXIT_CODE PATTERN -- command...: exit status and a line of output matching PATTERN
expect() {
  local name=$1 code=$2 pattern=$3
  shift 4
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  local rc_ok=0
  if [ "$code" = nonzero ]; then
    [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] && rc_ok=1
  else
    [ "$rc" -eq "$code" ] && rc_ok=1
  fi
  if [ "$rc_ok" -ne 1 ]; then
    fail "$name: exit $rc, expected $code; output: $(echo "$out" | tail -3)"
  elif ! echo "$out" | grep -qE -- "$pattern"; then
    fail "$name: output does not match /$pattern/: $(echo "$out" | tail -3)"
  else
    pass "$name"
  fi
}

model=$root/models/ppocr_mobile_v2_cls.onnx
expect "version lists backends" 0 '^backends: cpu' -- "$keel" --version
expect "run: upright text is class 0" 0 'argmax=0 .*first=\[0\.99' -- \
  "$keel" run "$model" --input x="$root/models/ppocr_cls_input_upright.pb"
expect "run: upside-down text is class 1" 0 'argmax=1 ' -- \
  "$keel" run "$model" --input x="$root/models/ppocr_cls_input_rot180.pb"
expect "run: writes outputs" 0 'float32\[1,2\]' -- \
  "$keel" run "$model" --input x="$root/models/ppocr_cls_input_upright.pb" --output-dir "$work/out"
[ -s "$work/out/output_0.pb" ] && pass "run: output_0.pb exists" || fail "run: output_0.pb missing"
expect "info: arena and parameters" 0 'arena: .* MiB' -- "$keel" info "$model" --shape x=1x3x48x192
expect "info: symbolic dims" 0 'in  x +float32\[' -- "$keel" info "$model"

# bad input: clear errors, non-zero exits, no crash (exit codes >= 128 are signals)
head -c 1000 "$model" > "$work/truncated.onnx"
expect "truncated model" nonzero 'INVALID_MODEL' -- "$keel" run "$work/truncated.onnx"
echo "this is not a model" > "$work/text.onnx"
expect "text file as model" nonzero 'INVALID_MODEL' -- "$keel" info "$work/text.onnx"
expect "missing model" nonzero 'IO_ERROR.*nope.onnx' -- "$keel" run "$work/nope.onnx"
expect "directory as model" nonzero 'IO_ERROR' -- "$keel" run "$work"
expect "unknown input name" nonzero "no input named 'y'" -- \
  "$keel" run "$model" --input y="$root/models/ppocr_cls_input_upright.pb"
expect "input file is not a tensor" nonzero "cannot read input 'x'" -- "$keel" run "$model" --input x="$model"
expect "wrong input shape" nonzero "SHAPE_MISMATCH.*input 'x' has shape \[1,3,48\]" -- \
  "$keel" run "$model" --shape x=1x3x48
expect "bad --shape syntax" 2 'expects NAME=DIMS' -- "$keel" run "$model" --shape x=1xbanana
expect "unknown command" 2 "unknown command 'frobnicate'" -- "$keel" frobnicate

# keel test: the summary line, skip lists, exit status
node=/usr/share/libonnx-testdata/data/node
if [ -d "$node/test_relu" ]; then
  expect "test: pass line and summary" 0 '^1 passed, 0 failed, 0 skipped$' -- "$keel" test "$node/test_relu"
  printf 'test_relu  # reason\n' > "$work/skip.txt"
  expect "test: skip list" 0 '^SKIP test_relu' -- "$keel" test --skip-list "$work/skip.txt" "$node/test_relu"
  # a case whose expected output is wrong must FAIL with a reason, and exit 1
  mkdir -p "$work/badcase" && cp -r "$node/test_relu/." "$work/badcase/"
  cp "$node/test_abs/test_data_set_0/output_0.pb" "$work/badcase/test_data_set_0/output_0.pb"
  expect "test: wrong answer fails" 1 '^FAIL badcase: ' -- "$keel" test "$work/badcase"
fi

echo "cli: $passes passed, $failures failed"
exit $((failures > 0))
