#!/usr/bin/env python3
"""Regenerate the skip lists of the ONNX backend test suites from what `keel test` reports.

usage: tests/skip/update_skip_lists.py KEEL [SUITE...]    (default: every suite in SUITES)

Each failing case is listed with the reason keel gave, grouped the way ONNX Runtime groups its backend-test
filters: not implemented yet, a dtype or value kind keel does not support, not applicable to inference, and
known failures (numerical or test-data differences, explained by hand in KNOWN below). CI runs the suites
against these lists and fails on any case that fails without being listed, so a list only shrinks by
implementing things; rerun this after making cases pass (`keel test` also warns about listed cases that pass).
"""
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def onnx_data():
    import onnx
    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")


SUITES = {
    "debian-node.txt": lambda: "/usr/share/libonnx-testdata/data/node",
    "debian-simple.txt": lambda: "/usr/share/libonnx-testdata/data/simple",
    "debian-pytorch-converted.txt": lambda: "/usr/share/libonnx-testdata/data/pytorch-converted",
    "debian-pytorch-operator.txt": lambda: "/usr/share/libonnx-testdata/data/pytorch-operator",
    "onnx-node.txt": lambda: os.path.join(onnx_data(), "node"),
    "onnx-simple.txt": lambda: os.path.join(onnx_data(), "simple"),
    "onnx-pytorch-converted.txt": lambda: os.path.join(onnx_data(), "pytorch-converted"),
    "onnx-pytorch-operator.txt": lambda: os.path.join(onnx_data(), "pytorch-operator"),
}

# Cases whose failure is understood and is not a missing feature: the reason, written by hand.
KNOWN = {
    "test_cast_FLOAT_to_BFLOAT16": "test data: expects bfloat16 by truncation; keel rounds to nearest even like ONNX Runtime",
    "test_castlike_FLOAT_to_BFLOAT16": "test data: expects bfloat16 by truncation; keel rounds to nearest even",
    "test_castlike_FLOAT_to_BFLOAT16_expanded": "test data: expects bfloat16 by truncation; keel rounds to nearest even",
    "test_adam_multiple": "test data (Debian's older copy): the model omits epsilon (spec default 0) but the expected "
                          "outputs were computed with epsilon=0.01; the onnx 1.22 copy sets it and passes",
}

# (Gradient is implemented: a load-time rewrite into ordinary nodes, src/graph/gradient.c; Adam, Adagrad and
# Momentum run as pure functions, src/ops/optimizer.c. Other training-domain operators would land here.)
TRAINING_OPS = set()
RANDOM_OPS = {"Bernoulli", "RandomUniform", "RandomUniformLike", "RandomNormal", "RandomNormalLike", "Multinomial"}
# String tensors are supported (ops/string.c, ops/ml.c: LabelEncoder and TfIdfVectorizer run on strings);
# string-processing operators not implemented yet would be listed here.
STRING_OPS = set()


def classify(name, msg):
    if name in KNOWN:
        return "known failures", KNOWN[name]
    if name.startswith("test_bernoulli"):
        return "not applicable to inference", "Bernoulli: random output, not comparable"
    if name.startswith("test_castlike_") and "input 'like' has shape [1]" in msg:
        return "known failures", "test data: feeds 'like' as [1] where the model declares [3,4] (ONNX Runtime refuses it too)"
    m = re.search(r"unsupported operator (\w+) \(domain ([\w.]+), opset (\d+)\)", msg)
    if m:
        op, domain = m.group(1), m.group(2)
        if op in TRAINING_OPS or "training" in domain:
            return "not applicable to inference", f"training operator {op}"
        if op in STRING_OPS:
            return "not implemented yet", f"operator {op} ({domain}; text processing)"
        if op == "ImageDecoder":
            return "not implemented yet", "operator ImageDecoder (ai.onnx; decoding JPEG/PNG/WebP/TIFF... needs image codec libraries)"
        if op in RANDOM_OPS:
            return "not applicable to inference", f"{op}: random output, not comparable"
        return "not implemented yet", f"operator {op} ({domain})"
    m = re.search(r"operator (\w+) \(domain ([\w.]+)\) at opset (\d+) is not supported", msg)
    if m:
        return "not implemented yet", f"operator {m.group(1)} at opset {m.group(3)}"
    if re.search(r"is not a tensor \(sequence, map, optional", msg) or "sequence" in msg.lower() and "not supported" in msg:
        return "value kind not supported", "sequence, map or optional values"
    m = re.search(r"element type (\w+)", msg)
    if m:
        return "dtype not supported", f"element type {m.group(1)}"
    if re.search(r"type string|strings? (are|is) not supported|string \(8\)", msg):
        return "dtype not supported", "string tensors"
    if "training_mode" in msg:
        return "not applicable to inference", "training mode with random dropout"
    if re.search(r"float16|bfloat16", msg) and "UNSUPPORTED" in msg:
        return "dtype not supported", re.sub(r"\s+", " ", msg)[:140]
    return "known failures", "fails: " + re.sub(r"\s+", " ", msg)[:160]


def update(keel, fname, suite):
    out = subprocess.run([keel, "test", "--quiet", suite + "/"], capture_output=True, text=True).stdout
    groups = {}
    for line in out.splitlines():
        m = re.match(r"FAIL (\S+): (.*)", line)
        if m:
            cat, reason = classify(m.group(1), m.group(2))
            groups.setdefault(cat, []).append((m.group(1), reason))
    total = sum(1 for e in os.scandir(suite) if e.is_dir())
    listed = sum(len(v) for v in groups.values())
    path = os.path.join(HERE, fname)
    with open(path, "w") as f:
        f.write(f"# Skip list for {suite}\n# {listed} of {total} cases; generated by tests/skip/update_skip_lists.py"
                " (edit reasons in its KNOWN table).\n")
        for cat in ["not implemented yet", "dtype not supported", "value kind not supported",
                    "not applicable to inference", "known failures"]:
            if cat not in groups:
                continue
            f.write(f"\n# --- {cat} ({len(groups[cat])})\n")
            for name, reason in sorted(groups[cat]):
                f.write(f"{name}  # {reason}\n")
    print(f"{fname}: {listed} of {total} cases listed")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    keel = sys.argv[1]
    names = sys.argv[2:] or list(SUITES)
    for n in names:
        suite = SUITES[n]()
        if os.path.isdir(suite):
            update(keel, n, suite)
        else:
            print(f"{n}: {suite} not found, skipped")


if __name__ == "__main__":
    main()
