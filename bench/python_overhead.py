#!/usr/bin/env python3
"""Per-call cost of keel's Python package against onnxruntime's Python API, alternating in one process.

Two models: a tiny one, where the time is nearly all per-call overhead (default
tests/data/engine/matmul_bias_relu.onnx, batch 1), and a medium one (default: mobilenetv2 --small from
scripts/models/gen_models.py, 1x3x64x64). Variants, each timed call by call:
  keel fresh | preallocated | persistent   y = m(x); np.asarray(y)   (a NumPy view, no copy)
  keel bound                                 m(x) writing into a bound NumPy array
  keel submit+wait                           np.asarray(m.submit(x).wait())   (fresh outputs)
  ort run                                    sess.run(None, {name: x})
  ort iobinding                              sess.run_with_iobinding(io), input and output bound once
Rounds rotate through the variants so drift (frequency, neighbours) hits all alike. Both runtimes use one
thread. Prints medians, p99 and ratios (markdown with --md FILE).

  python3 bench/python_overhead.py [--tiny M.onnx] [--medium M.onnx] [--rounds 15] [--calls 2000] [--md F]
Runs from the repository (python/ on sys.path, library from KEEL_LIBRARY or build*/; build the extension
first with `python3 setup.py build_ext --inplace`) or an installed keel.
"""
import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
import keel  # noqa: E402
import onnxruntime as ort  # noqa: E402


def make_medium(tmp):
    subprocess.check_call([sys.executable, os.path.join(ROOT, "scripts", "models", "gen_models.py"), "--out", tmp,
                           "--only", "mobilenetv2", "--small"], stdout=subprocess.DEVNULL)
    return os.path.join(tmp, "mobilenetv2.onnx")


def concrete(shape, batch=1):
    return tuple(d if isinstance(d, int) else batch for d in shape)


def variants(path, x):
    eng = keel.Engine(path)
    name, out_name = eng.input_names[0], eng.output_names[0]
    vs = {}
    for mode in ("fresh", "preallocated", "persistent"):
        m = keel.Module(eng, output_mode=mode, num_threads=1)

        def run(m=m):
            return np.asarray(m(x))
        vs["keel " + mode] = run
    mb = keel.Module(eng, num_threads=1)
    yshape = np.asarray(mb(x)).shape
    ybuf = np.empty(yshape, np.float32)
    mb.bind_output(0, ybuf)
    vs["keel bound"] = lambda: mb(x)
    ms = keel.Module(eng, num_threads=1)
    vs["keel submit+wait"] = lambda: np.asarray(ms.submit(x).wait())

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    feeds = {name: x}
    vs["ort run"] = lambda: sess.run(None, feeds)
    io = sess.io_binding()
    io.bind_cpu_input(name, x)
    y_ort = ort.OrtValue.ortvalue_from_numpy(np.empty(yshape, np.float32))
    io.bind_ortvalue_output(out_name, y_ort)
    vs["ort iobinding"] = lambda: sess.run_with_iobinding(io)
    # same answers before timing anything
    want = sess.run(None, feeds)[0]
    for k, f in vs.items():
        got = f()
        got = {"keel bound": ybuf, "ort run": got[0] if k == "ort run" else None,
               "ort iobinding": y_ort.numpy()}.get(k, got)
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-3, atol=1e-4, err_msg=k)
    return vs, (eng, mb, ms, ybuf, sess, io, y_ort)


def measure(vs, rounds, calls):
    samples = {k: [] for k in vs}
    names = list(vs)
    for f in vs.values():  # warm-up
        for _ in range(min(calls, 200)):
            f()
    clock = time.perf_counter_ns
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for k in order:
            f, out = vs[k], samples[k]
            for _ in range(calls):
                t0 = clock()
                f()
                out.append(clock() - t0)
    return {k: np.array(v, dtype=np.float64) / 1000.0 for k, v in samples.items()}  # microseconds


def table(title, res):
    base = np.median(res["ort run"])
    iob = np.median(res["ort iobinding"])
    lines = ["### " + title, "",
             "| variant | median (us) | p99 (us) | mean (us) | vs ort run | vs ort iobinding |",
             "|---|---:|---:|---:|---:|---:|"]
    for k, v in res.items():
        med = np.median(v)
        lines.append("| %s | %.2f | %.2f | %.2f | %.2fx | %.2fx |" % (k, med, np.percentile(v, 99), v.mean(),
                                                                     med / base, med / iob))
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", default=os.path.join(ROOT, "tests", "data", "engine", "matmul_bias_relu.onnx"))
    ap.add_argument("--medium", default=None, help="default: mobilenetv2 --small, generated")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=2000, help="calls per variant per round (tiny model)")
    ap.add_argument("--medium-calls", type=int, default=100, help="calls per variant per round (medium model)")
    ap.add_argument("--md", default=None, help="also write the tables to this markdown file")
    a = ap.parse_args()

    rng = np.random.default_rng(0)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        medium = a.medium or make_medium(tmp)
        for title, path, calls in (("tiny: %s" % os.path.relpath(a.tiny, ROOT), a.tiny, a.calls),
                                   ("medium: %s" % (os.path.relpath(a.medium, ROOT) if a.medium
                                                    else "mobilenetv2 --small (gen_models.py)"), medium,
                                    a.medium_calls)):
            shape = concrete(keel.Engine(path).inputs[0].shape)
            x = rng.standard_normal(shape, dtype=np.float32)
            vs, keep = variants(path, x)
            res = measure(vs, a.rounds, calls)
            t = table("%s, input %s, %d rounds x %d calls per variant" % (title, list(shape), a.rounds, calls), res)
            print(t)
            out.append(t)
            del vs, keep
    if a.md:
        with open(a.md, "w") as f:
            f.write("\n".join(out))


if __name__ == "__main__":
    print("keel %s (%s), onnxruntime %s, numpy %s, Python %s, %s" % (
        keel.__version__, keel.library_path, ort.__version__, np.__version__, platform.python_version(),
        platform.processor() or platform.machine()))
    main()
