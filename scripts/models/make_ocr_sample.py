#!/usr/bin/env python3
"""Make sample inputs for the bundled PP-OCR text-direction classifier (models/).

Renders a line of text with a small built-in 5x7 bitmap font (no PIL, no fonts needed),
preprocesses it as RapidOCR does for its classifier (3x48x192, x/255 -> (x-0.5)/0.5, the
unused width right of the text padded with 0), and writes onnx TensorProto files:
  <out>/ppocr_cls_input_upright.pb    the text as it is       (expected label "0")
  <out>/ppocr_cls_input_rot180.pb     the text turned 180 deg (expected label "180")
Add --check to run the model through onnxruntime and print the labels it gives.
"""
import argparse
import os
import sys

import numpy as np
from onnx import numpy_helper

# 5x7 glyphs, one string of 5 characters per row, '#' = ink.
FONT = {
    "K": ["#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"],
    "E": ["#####", "#....", "#....", "####.", "#....", "#....", "#####"],
    "L": ["#....", "#....", "#....", "#....", "#....", "#....", "#####"],
    "R": ["####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"],
    "U": ["#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."],
    "N": ["#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#", "#...#"],
    "S": [".####", "#....", "#....", ".###.", "....#", "....#", "####."],
    "O": [".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."],
    "X": ["#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"],
    "T": ["#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."],
    "Y": ["#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."],
    "P": ["####.", "#...#", "#...#", "####.", "#....", "#....", "#...."],
    "7": ["#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."],
    " ": ["....."] * 7,
}


def render(text, scale=4, height=48):
    """White background, black glyphs; returns HxWx3 uint8."""
    cell_w = 6 * scale  # 5 columns of ink, 1 of gap
    margin = scale // 2
    width = cell_w * len(text) - scale + 2 * margin
    img = np.full((height, width, 3), 255, dtype=np.uint8)
    top = (height - 7 * scale) // 2
    for i, ch in enumerate(text.upper()):
        glyph = FONT[ch]
        for r, row in enumerate(glyph):
            for c, px in enumerate(row):
                if px == "#":
                    y, x = top + r * scale, margin + i * cell_w + c * scale
                    img[y:y + scale, x:x + scale] = 0
    return img


def preprocess(img, shape=(3, 48, 192)):
    c, h, w = shape
    assert img.shape[0] == h and img.shape[1] <= w, "render() makes a 48-high line up to 192 wide"
    x = img.astype(np.float32).transpose(2, 0, 1) / 255.0
    x = (x - 0.5) / 0.5
    out = np.zeros(shape, dtype=np.float32)
    out[:, :, :x.shape[2]] = x
    return out[None]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="models")
    ap.add_argument("--text", default="RUN KEEL")
    ap.add_argument("--check", metavar="MODEL", help="run MODEL with onnxruntime on the samples")
    args = ap.parse_args()
    img = render(args.text)
    samples = {"upright": img, "rot180": img[::-1, ::-1].copy()}
    os.makedirs(args.out, exist_ok=True)
    tensors = {}
    for tag, im in samples.items():
        x = preprocess(im)
        tensors[tag] = x
        path = os.path.join(args.out, f"ppocr_cls_input_{tag}.pb")
        with open(path, "wb") as f:
            f.write(numpy_helper.from_array(x, "x").SerializeToString())
        print(f"{path}: x {list(x.shape)}")
    if args.check:
        import onnxruntime as ort
        sess = ort.InferenceSession(args.check, providers=["CPUExecutionProvider"])
        for tag, x in tensors.items():
            p = sess.run(None, {"x": x})[0][0]
            print(f"{tag}: P(0)={p[0]:.4f} P(180)={p[1]:.4f} -> label {['0', '180'][int(np.argmax(p))]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
