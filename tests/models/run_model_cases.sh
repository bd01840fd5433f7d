#!/bin/bash
# Check keel against onnxruntime on the generated (--small) model families and the bundled
# real model: generate the models, write them as ONNX test cases whose expected outputs come
# from onnxruntime, then run `keel test` on the cases.
# usage: run_model_cases.sh KEEL WORK_DIR [extra `keel test` options]
# Exits 77 (ctest: skipped) when python3 lacks onnx, onnxruntime or numpy.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 KEEL WORK_DIR [keel test options]" >&2
  exit 2
fi
keel=$1 work=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
py=${PYTHON:-python3}

if ! "$py" -c 'import onnx, onnxruntime, numpy' 2>/dev/null; then
  echo "SKIP: $py cannot import onnx, onnxruntime and numpy (pip install onnx onnxruntime numpy)"
  exit 77
fi

rm -rf "$work/models" "$work/cases"
mkdir -p "$work/models" "$work/cases"
"$py" "$root/scripts/models/gen_models.py" --small --out "$work/models" >/dev/null
# Expected outputs come from onnxruntime; keel is not run here (--no-keel).
"$py" "$root/scripts/models/check_against_ort.py" --no-keel --write-cases "$work/cases" "$work/models"
"$py" "$root/scripts/models/check_against_ort.py" --no-keel --write-cases "$work/cases" \
  "$root/models/ppocr_mobile_v2_cls.onnx" --input-file "x=$root/models/ppocr_cls_input_upright.pb"

skip=()
if [ -s "$here/skip.txt" ]; then
  skip=(--skip-list "$here/skip.txt")
fi
# Random-weight models accumulate float32 rounding over dozens of layers: atol 1e-4.
exec "$keel" test --rtol 1e-3 --atol 1e-4 "${skip[@]}" "$@" "$work/cases"
