#!/usr/bin/env bash
# Runtime-module benchmark suite: every model on cpu and sim, --outputs all, with and without the libc
# allocation counter, --sync on cpu, and --inflight 1 against 4 on sim (alternated REPS times). Writes raw text + JSON to OUT and
# prints the markdown tables (bench/report.py).
#
#   bench/run_runtime_module.sh [BUILD_DIR] [OUT_DIR]     (defaults: build, $TMPDIR/keel-bench-out)
#   DURATION=5 WARMUP=1 REPS=3 REP_DURATION=2 bench/run_runtime_module.sh   (seconds per run)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
OUT=${2:-${TMPDIR:-/tmp}/keel-bench-out}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
REPS=${REPS:-3}
REP_DURATION=${REP_DURATION:-2}
KEEL=$BUILD/keel
PRELOAD=$BUILD/libkeel_malloc_count.so
[ -x "$KEEL" ] || { echo "no $KEEL: build keel first" >&2; exit 1; }
[ -f "$PRELOAD" ] || { echo "no $PRELOAD: build the keel_malloc_count target" >&2; exit 1; }
mkdir -p "$OUT/models"

# Small generated models (seeded, deterministic) and the bundled PP-OCR classifier.
python3 "$ROOT/scripts/models/gen_models.py" --out "$OUT/models" --only mlp,mobilenetv2,bert --small --batch 1 >/dev/null
# Outputs large relative to compute: one Relu over 16 MiB (below glibc's largest mmap threshold, so FRESH
# reuses the freed block) and over 64 MiB (above it: FRESH maps and faults fresh pages every call).
python3 - "$OUT/models" <<'PY'
import sys
import onnx
from onnx import TensorProto, helper
for name, c in (("bigout16", 16), ("bigout64", 64)):
    shape = [1, c, 512, 512]
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], name,
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), f"{sys.argv[1]}/{name}.onnx")
PY
SEQ="--shape input_ids=1x16 --shape attention_mask=1x16 --shape token_type_ids=1x16"
MODELS=(
  "mlp|$OUT/models/mlp.onnx|"
  "mobilenetv2|$OUT/models/mobilenetv2.onnx|"
  "bert|$OUT/models/bert.onnx|$SEQ"
  "ppocr_cls|$ROOT/models/ppocr_mobile_v2_cls.onnx|--shape x=1x3x48x192"
  "bigout16|$OUT/models/bigout16.onnx|"
  "bigout64|$OUT/models/bigout64.onnx|"
)

run() { # name, then keel bench arguments; echoes the command into OUT/commands.txt
  local name=$1; shift
  echo "$*" >> "$OUT/commands.txt"
  echo "== $name" >&2
  "$@" --no-progress --json "$OUT/$name.json" > "$OUT/$name.txt"
}

: > "$OUT/commands.txt"
for spec in "${MODELS[@]}"; do
  IFS='|' read -r name model shapes <<< "$spec"
  # shellcheck disable=SC2086
  {
    run "$name.cpu" "$KEEL" bench "$model" $shapes --duration "$DURATION" --warmup "$WARMUP"
    run "$name.sim" "$KEEL" bench "$model" $shapes --device sim --duration "$DURATION" --warmup "$WARMUP"
    run "$name.cpu.libc" env LD_PRELOAD="$PRELOAD" "$KEEL" bench "$model" $shapes --duration "$DURATION" --warmup "$WARMUP"
    run "$name.sim.libc" env LD_PRELOAD="$PRELOAD" "$KEEL" bench "$model" $shapes --device sim --duration "$DURATION" --warmup "$WARMUP"
    run "$name.cpu.async" "$KEEL" bench "$model" $shapes --async --duration "$DURATION" --warmup "$WARMUP"
    # --inflight 1 against 4 are separate processes: alternate them REPS times so background load on a
    # shared machine hits both, and compare the medians.
    for r in $(seq 1 "$REPS"); do
      run "$name.sim-if1.r$r" "$KEEL" bench "$model" $shapes --device sim --inflight 1 --duration "$REP_DURATION" --warmup "$WARMUP"
      run "$name.sim-if4.r$r" "$KEEL" bench "$model" $shapes --device sim --inflight 4 --duration "$REP_DURATION" --warmup "$WARMUP"
    done
  }
done
python3 "$ROOT/bench/report.py" "$OUT"
