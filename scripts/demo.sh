#!/usr/bin/env bash
# The README's first command: set up, build keel, and run the bundled real model (PaddleOCR's text
# direction classifier) on two sample text lines, one upright and one turned upside down.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh build >/dev/null
echo "== keel info"
build/keel info models/ppocr_mobile_v2_cls.onnx --shape x=1x3x48x192
for sample in upright rot180; do
  echo "== keel run (sample: text $sample; output = [P(upright), P(upside down)])"
  build/keel run models/ppocr_mobile_v2_cls.onnx --input x=models/ppocr_cls_input_$sample.pb
done
