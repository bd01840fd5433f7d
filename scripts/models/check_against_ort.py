#!/usr/bin/env python3
"""Run ONNX models through onnxruntime (CPUExecutionProvider) and keel; compare outputs.

For each model (files, or every *.onnx in the given directories):
  1. make deterministic inputs with numpy (seeded from the model's file name);
  2. run onnxruntime;
  3. run `keel run MODEL --input NAME=FILE.pb ... --output-dir DIR`, read DIR/output_<i>.pb;
  4. compare: |keel - ort| <= atol + rtol * |ort| elementwise (exact for integer outputs).
One line per model (max_abs; max_rel = max |d|/max(|ref|, atol); tol_used = max |d|/(atol +
rtol*|ref|), <= 1 passes), a closing "N passed, N failed" line; exit status 1 on any mismatch.

Input sizes: fixed dims are used as they are. Symbolic dims come from, in this order:
--input-file NAME=FILE.pb (use that tensor), --shape NAME=1x3x48x192, --dim PARAM=VALUE, the model's metadata_props
"keel.test.dims" ("batch=1,sequence=16"), then 1 for batch-like names (N, batch, -1 ...).
Integer inputs use "keel.test.input.<name>" = "int:LO:HI" or "mask:N" when present,
otherwise values in [0, 2).

--write-cases DIR writes each model as an ONNX backend test case (DIR/<name>/model.onnx,
test_data_set_0/input_<i>.pb, output_<i>.pb with onnxruntime's outputs) for `keel test`,
and --no-keel skips running keel (use with --write-cases to prepare cases without it).
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np
import onnx
from onnx import numpy_helper

BATCH_NAMES = {"n", "batch", "batch_size", "b", "bs", "-1", "none", "unk__0"}


def parse_kv(items, what):
    out = {}
    for it in items or []:
        if "=" not in it:
            raise SystemExit(f"error: {what} {it!r} is not NAME=VALUE")
        k, v = it.split("=", 1)
        out[k] = v
    return out


def model_meta(model):
    return {p.key: p.value for p in model.metadata_props}


def graph_inputs(model):
    inits = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def input_shape(vi, shapes, dims, meta_dims, default_batch):
    if vi.name in shapes:
        return [int(d) for d in shapes[vi.name].lower().split("x")]
    out = []
    tshape = vi.type.tensor_type.shape
    for axis, d in enumerate(tshape.dim):
        if d.HasField("dim_value") and d.dim_value > 0:
            out.append(d.dim_value)
            continue
        name = d.dim_param if d.HasField("dim_param") else str(d.dim_value if d.HasField("dim_value") else "")
        if name in dims:
            out.append(int(dims[name]))
        elif name in meta_dims:
            out.append(int(meta_dims[name]))
        elif axis == 0 and (name.lower() in BATCH_NAMES or name == "" or "batch" in name.lower()
                            or "dynamicdimension.0" in name.lower()):
            out.append(default_batch)
        else:
            raise ValueError(f"input {vi.name!r} axis {axis}: cannot choose a size for dim "
                             f"{name or '?'!r}; pass --shape {vi.name}=AxBx... or --dim {name}=N")
    return out


def make_inputs(model, path, shapes, dims, default_batch, seed, files=None):
    meta = model_meta(model)
    meta_dims = parse_kv([s for s in meta.get("keel.test.dims", "").split(",") if s], "dims")
    rng = np.random.default_rng(zlib.crc32(os.path.basename(path).encode()) + seed)
    feeds = {}
    for vi in graph_inputs(model):
        if files and vi.name in files:
            feeds[vi.name] = read_tensor(files[vi.name])
            continue
        shape = input_shape(vi, shapes, dims, meta_dims, default_batch)
        np_dtype = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        hint = meta.get("keel.test.input." + vi.name, "")
        if hint.startswith("mask:"):
            pad = int(hint.split(":")[1])
            arr = np.ones(shape, dtype=np_dtype)
            if shape and shape[-1] > pad:
                arr[..., shape[-1] - pad:] = 0
        elif np.issubdtype(np_dtype, np.integer):
            lo, hi = 0, 2
            if hint.startswith("int:"):
                lo, hi = (int(v) for v in hint.split(":")[1:3])
            arr = rng.integers(lo, hi, size=shape).astype(np_dtype)
        elif np_dtype == np.bool_:
            arr = rng.integers(0, 2, size=shape).astype(np.bool_)
        else:
            arr = rng.standard_normal(shape).astype(np_dtype)
        feeds[vi.name] = arr
    return feeds


def run_ort(path, feeds):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    t0 = time.perf_counter()
    outs = sess.run(None, feeds)
    return names, outs, (time.perf_counter() - t0) * 1e3


def write_tensor(arr, name, path):
    t = numpy_helper.from_array(arr, name)
    with open(path, "wb") as f:
        f.write(t.SerializeToString())


def read_tensor(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


def run_keel(keel, path, feeds, n_out, workdir, timeout):
    args = [keel, "run", path]
    for i, (name, arr) in enumerate(feeds.items()):
        p = os.path.join(workdir, f"input_{i}.pb")
        write_tensor(arr, name, p)
        args += ["--input", f"{name}={p}"]
    outdir = os.path.join(workdir, "out")
    os.makedirs(outdir, exist_ok=True)
    args += ["--output-dir", outdir]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"keel timed out after {timeout}s", 0.0
    ms = (time.perf_counter() - t0) * 1e3
    if proc.returncode != 0:
        msg = (proc.stderr.strip() or proc.stdout.strip() or "(no message)").splitlines()
        return None, f"keel exited {proc.returncode}: " + " | ".join(msg[-3:]), ms
    outs = []
    for i in range(n_out):
        p = os.path.join(outdir, f"output_{i}.pb")
        if not os.path.exists(p):
            return None, f"keel wrote no {os.path.basename(p)}", ms
        outs.append(read_tensor(p))
    return outs, None, ms


def compare(name, ref, got, rtol, atol):
    """Returns (ok, max_abs, max_rel, tol_frac, message); tol_frac is the largest share of
    the allowed error (atol + rtol*|ref|) that an element used: <= 1 passes."""
    if got.shape != ref.shape:
        return False, np.inf, np.inf, np.inf, f"{name}: shape {list(got.shape)}, expected {list(ref.shape)}"
    if got.dtype != ref.dtype:
        return False, np.inf, np.inf, np.inf, f"{name}: dtype {got.dtype}, expected {ref.dtype}"
    if ref.size == 0:
        return True, 0.0, 0.0, 0.0, ""
    if not np.issubdtype(ref.dtype, np.floating):
        bad = int(np.count_nonzero(got != ref))
        return bad == 0, float(bad), float(bad), float(bad), f"{name}: {bad} elements differ" if bad else ""
    r = ref.astype(np.float64)
    g = got.astype(np.float64)
    if not np.array_equal(np.isnan(r), np.isnan(g)):
        return False, np.inf, np.inf, np.inf, f"{name}: NaN positions differ"
    fin = ~np.isnan(r)
    diff = np.abs(g[fin] - r[fin])
    max_abs = float(diff.max()) if diff.size else 0.0
    # relative to |ref|, floored at atol so that near-zero references do not dominate
    rel = diff / np.maximum(np.abs(r[fin]), max(atol, 1e-12))
    max_rel = float(rel.max()) if rel.size else 0.0
    allowed = atol + rtol * np.abs(r[fin])
    bad = diff > allowed
    nbad = int(np.count_nonzero(bad))
    frac = float((diff / np.maximum(allowed, 1e-30)).max()) if diff.size else 0.0
    if nbad:
        idx = int(np.argmax(diff - (atol + rtol * np.abs(r[fin]))))
        return False, max_abs, max_rel, frac, (f"{name}: {nbad}/{ref.size} elements off, e.g. got "
                                         f"{g[fin][idx]:.6g} expected {r[fin][idx]:.6g}")
    return True, max_abs, max_rel, frac, ""


def write_case(case_dir, path, feeds, out_names, outs):
    if os.path.isdir(case_dir):
        shutil.rmtree(case_dir)
    data = os.path.join(case_dir, "test_data_set_0")
    os.makedirs(data)
    shutil.copyfile(path, os.path.join(case_dir, "model.onnx"))
    ext = path + ".data"  # external weights of a >2 GB model travel with it
    if os.path.exists(ext):
        shutil.copyfile(ext, os.path.join(case_dir, os.path.basename(ext)))
    for i, (name, arr) in enumerate(feeds.items()):
        write_tensor(arr, name, os.path.join(data, f"input_{i}.pb"))
    for i, (name, arr) in enumerate(zip(out_names, outs)):
        write_tensor(arr, name, os.path.join(data, f"output_{i}.pb"))


def collect(paths, only):
    files = []
    for p in paths:
        if os.path.isdir(p):
            files += sorted(glob.glob(os.path.join(p, "*.onnx")))
        else:
            files.append(p)
    if only:
        keep = set(only.split(","))
        files = [f for f in files if os.path.splitext(os.path.basename(f))[0] in keep]
    return files


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="model files or directories of *.onnx")
    ap.add_argument("--keel", default="build/keel", help="keel binary (default build/keel)")
    ap.add_argument("--rtol", type=float, default=1e-3)
    ap.add_argument("--atol", type=float, default=1e-4)
    ap.add_argument("--only", help="comma-separated model names (file names without .onnx)")
    ap.add_argument("--shape", action="append", help="NAME=AxBxC: the shape of input NAME")
    ap.add_argument("--dim", action="append", help="PARAM=N: the size of symbolic dim PARAM")
    ap.add_argument("--input-file", action="append",
                    help="NAME=FILE.pb: use this TensorProto for input NAME instead of random data")
    ap.add_argument("--batch", type=int, default=1, help="size of an unnamed/batch dim (default 1)")
    ap.add_argument("--seed", type=int, default=0, help="added to the per-model input seed")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per keel run")
    ap.add_argument("--write-cases", metavar="DIR", help="also write ONNX test cases into DIR")
    ap.add_argument("--no-keel", action="store_true", help="only run onnxruntime (and --write-cases)")
    ap.add_argument("--keep", metavar="DIR", help="keep keel's inputs/outputs under DIR")
    args = ap.parse_args(argv)

    shapes = parse_kv(args.shape, "--shape")
    dims = parse_kv(args.dim, "--dim")
    in_files = parse_kv(args.input_file, "--input-file")
    files = collect(args.models, args.only)
    if not files:
        print("error: no models found", file=sys.stderr)
        return 2
    if not args.no_keel and not os.access(args.keel, os.X_OK):
        print(f"error: keel binary {args.keel!r} not found or not executable (use --keel PATH "
              f"or --no-keel)", file=sys.stderr)
        return 2
    width = max(len(os.path.splitext(os.path.basename(f))[0]) for f in files)
    passed = failed = 0
    for path in files:
        name = os.path.splitext(os.path.basename(path))[0]
        label = name.ljust(width)
        try:
            model = onnx.load(path, load_external_data=False)
            feeds = make_inputs(model, path, shapes, dims, args.batch, args.seed, in_files)
            out_names, ref, ort_ms = run_ort(path, feeds)
        except Exception as e:  # a model ORT cannot run is a setup error, not a keel failure
            print(f"FAIL {label}  onnxruntime/setup: {type(e).__name__}: {str(e).splitlines()[0]}")
            failed += 1
            continue
        if args.write_cases:
            write_case(os.path.join(args.write_cases, name), path, feeds, out_names, ref)
        if args.no_keel:
            shapes_s = " ".join(f"{k}{list(v.shape)}" for k, v in zip(out_names, ref))
            print(f"OK   {label}  onnxruntime {ort_ms:8.2f} ms  {shapes_s}")
            passed += 1
            continue
        if args.keep:
            work = os.path.join(args.keep, name)
            shutil.rmtree(work, ignore_errors=True)
            os.makedirs(work)
            tmp = None
        else:
            tmp = tempfile.TemporaryDirectory(prefix="keel-check-")
            work = tmp.name
        try:
            got, err, keel_ms = run_keel(os.path.abspath(args.keel), path, feeds, len(ref), work,
                                         args.timeout)
        finally:
            if tmp:
                tmp.cleanup()
        if err:
            print(f"FAIL {label}  {err}")
            failed += 1
            continue
        ok, worst_abs, worst_rel, worst_frac, msgs = True, 0.0, 0.0, 0.0, []
        for oname, r, g in zip(out_names, ref, got):
            o_ok, a, rl, fr, msg = compare(oname, r, g, args.rtol, args.atol)
            ok &= o_ok
            worst_abs, worst_rel = max(worst_abs, a), max(worst_rel, rl)
            worst_frac = max(worst_frac, fr)
            if msg:
                msgs.append(msg)
        stats = (f"max_abs={worst_abs:.3g} max_rel={worst_rel:.3g} tol_used={worst_frac:.3g}  "
                 f"ort={ort_ms:.1f}ms keel={keel_ms:.1f}ms(process)")
        if ok:
            print(f"PASS {label}  {stats}")
            passed += 1
        else:
            print(f"FAIL {label}  {stats}  " + "; ".join(msgs))
            failed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
