#!/bin/bash
# Compare keel with onnxruntime on the generated model families and the bundled real model.
# Builds nothing: give it a keel binary.
#
# usage: scripts/check_models.sh [--full] [--keel PATH] [--work DIR] [-- check_against_ort.py options]
#   --keel PATH  keel binary (default: $KEEL, else build/keel)
#   --full       full-size models (ResNet-50, BERT-base, ...: minutes and GBs; for benchmarks)
#   --work DIR   where the models go (default: a temporary folder, removed at the end)
# Exits non-zero when a model does not match (or cannot run).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
keel=${KEEL:-$root/build/keel}
size=--small
work=
extra=()
while [ $# -gt 0 ]; do
  case $1 in
    --keel) keel=$2; shift 2 ;;
    --full) size=; shift ;;
    --work) work=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "check_models.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
py=${PYTHON:-python3}
if [ ! -x "$keel" ]; then
  echo "check_models.sh: no keel binary at '$keel' (build it, or pass --keel PATH)" >&2
  exit 2
fi
if [ -z "$work" ]; then
  work=$(mktemp -d -t keel-models.XXXXXX)
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
echo "== generating models ${size:-(full size)} in $work"
"$py" "$root/scripts/models/gen_models.py" $size --out "$work" | sed 's/^/   /'

status=0
echo "== generated models vs onnxruntime"
"$py" "$root/scripts/models/check_against_ort.py" --keel "$keel" "${extra[@]}" "$work" \
  | tee "$work/generated.log" || status=1
echo "== bundled real model vs onnxruntime"
"$py" "$root/scripts/models/check_against_ort.py" --keel "$keel" "${extra[@]}" \
  "$root/models/ppocr_mobile_v2_cls.onnx" --input-file "x=$root/models/ppocr_cls_input_upright.pb" \
  | tee "$work/real.log" || status=1

pass=$(cat "$work/generated.log" "$work/real.log" | grep -c '^PASS' || true)
fail=$(cat "$work/generated.log" "$work/real.log" | grep -c '^FAIL' || true)
echo "== summary: $pass models match onnxruntime, $fail do not"
if [ "$fail" -gt 0 ]; then
  grep -h '^FAIL' "$work/generated.log" "$work/real.log" | awk '{print "   " $2}'
fi
echo "$pass passed, $fail failed"
exit $status
