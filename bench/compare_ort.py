#!/usr/bin/env python3
"""keel against ONNX Runtime on the same machine, same inputs, same thread count.

For each model and batch size (models from scripts/models/gen_models.py, cached in --work):
  1. inputs: exactly the ones `keel bench` generates (splitmix64 from seed 1000+i, as in
     tools/cli_util.c), reproduced here with numpy, so both runtimes compute on the same data;
  2. agreement, once per model and batch: onnxruntime's outputs against `keel run MODEL --input
     NAME=FILE.pb ... --output-dir DIR` on those inputs, |keel - ort| <= atol + rtol*|ort|
     (rtol 1e-3, atol 1e-4);
  3. timing, per thread configuration T, ALTERNATING in blocks so that machine drift (frequency,
     other processes, cache state) hits both: ORT warm-up block, keel warm-up block (both discarded),
     then ORT block, keel block, ORT block, keel block, ...
       ORT : onnxruntime.InferenceSession (CPUExecutionProvider, intra_op_num_threads=T,
             inter_op_num_threads=1, ORT_SEQUENTIAL, ORT_ENABLE_ALL), one session per (model, T) kept
             for all its blocks; each session.run timed with time.perf_counter_ns.
       keel: one `keel bench MODEL --shape ... --outputs preallocated --iterations N --warmup 0
             --json FILE --no-progress` process per block, with T kernel threads (see below) and
             OPENBLAS_NUM_THREADS=1. Per-call latencies come from keel's own JSON (submit to wait-return of
             keel_module_forward), so process start and model load are not in them. keel bench
             always runs at least 10 warm-up calls per process before timing.
     Both runtimes get the same N calls per block, N chosen from the warm-up blocks so that the
     slower one spends about --block-seconds per block (at least --min-iters).
  4. statistics: keel's JSON has per-block percentiles, not every call, so both runtimes are
     summarized the same way: per block the median and p99 (numpy's linear interpolation, as keel
     bench), then the median over blocks of each. ratio = keel median / ORT median (> 1: keel is
     slower). The geometric mean of the ratios is taken over all configurations and per thread count.
  5. GFLOP/s: FLOPs counted from the ONNX graph after onnx shape inference, 2*MACs for Conv, MatMul
     and Gemm (ConvTranspose too), everything else ignored; divided by the median latency. Peak: a
     tight FMA loop (bench/peak_flops.c, compiled here with cc -O2 -march=native) on one core and on
     all cores, and the best GEMM numpy's OpenBLAS does (1024x1024 fp32 matmul) at 1 and 2 threads.

Thread configurations (what T means):
  T=1: ORT intra_op_num_threads=1; keel with one kernel thread.
  T=2: ORT intra_op_num_threads=2 (its own operator-level parallelism everywhere); keel with 2 kernel
       threads (its own thread pool: GEMM / Conv blocks today; other operators still run on one).
  keel's kernel threads are the module option num_threads: `keel bench --num-threads T` when the keel
  binary has that option, else the KEEL_NUM_THREADS=T environment variable (read by keel's kernels;
  `keel bench --threads` means caller threads, not kernel threads). OpenBLAS (still used for float64
  and single-row products) stays at 1 thread.

Usage:
  bench/compare_ort.py                       # full size: mlp squeezenet mobilenetv2 resnet50 bert, batch 1 and 8, T=1,2
  bench/compare_ort.py --quick               # small models, short blocks: a quick check (~30 s)
  bench/compare_ort.py --models resnet50,bert --batches 1 --threads 1 --blocks 3
  bench/compare_ort.py --json out.json --markdown out.md
"""
import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts", "models"))
from check_against_ort import compare  # noqa: E402  (same agreement rule as the model tests)

ALL_MODELS = ["mlp", "squeezenet", "mobilenetv2", "resnet50", "bert"]
RTOL, ATOL = 1e-3, 1e-4


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- inputs (keel's generator)

def splitmix_u64(seed, n):
    """The first n outputs of splitmix64 seeded with `seed` (tools/cli_util.c next_rand)."""
    M = np.uint64(0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        st = (np.uint64(seed) + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) & M
        z = st
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def keel_input(dtype, shape, seed):
    """What cli_generate_input makes: floats in [-1, 1), integers and bools 0/1."""
    n = int(np.prod(shape)) if shape else 1
    r = splitmix_u64(seed, n)
    if dtype in (np.float32, np.float64, np.float16):
        u = (r >> np.uint64(11)).astype(np.float64) / 9007199254740992.0 * 2.0 - 1.0
        return u.astype(dtype).reshape(shape)
    if dtype == np.bool_:
        return (np.arange(n) & 1).astype(np.bool_).reshape(shape)
    if dtype in (np.int64, np.int32):
        return (r & np.uint64(1)).astype(dtype).reshape(shape)
    raise SystemExit(f"error: input dtype {dtype} is not handled by this script")


def graph_inputs(model):
    inits = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def input_shapes(model, batch, seq):
    shapes = {}
    for vi in graph_inputs(model):
        dims = []
        for axis, d in enumerate(vi.type.tensor_type.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(d.dim_value)
            elif axis == 0:
                dims.append(batch)
            elif "seq" in d.dim_param.lower():
                dims.append(seq)
            else:
                raise SystemExit(f"error: input {vi.name} axis {axis}: no size for dim {d.dim_param!r}")
        shapes[vi.name] = dims
    return shapes


def make_feeds(model, shapes, seed_base):
    feeds = {}
    for i, vi in enumerate(graph_inputs(model)):
        dt = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        feeds[vi.name] = keel_input(dt, shapes[vi.name], seed_base + i)
    return feeds


# ---------------------------------------------------------------- FLOPs

def count_flops(model, shapes, feeds):
    """2*MACs of Conv/ConvTranspose/MatMul/Gemm. Operand shapes come from onnx shape inference with
    the given input shapes; where it leaves a dim unknown (data-dependent Reshape targets, as in BERT
    at batch 1), from one unoptimized onnxruntime run that exposes those tensors as outputs.
    Returns (flops, number of such nodes whose shapes stayed unknown)."""
    ops = ("Conv", "ConvTranspose", "MatMul", "Gemm")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in graph_inputs(m):
        if vi.name in shapes:
            for d, v in zip(vi.type.tensor_type.shape.dim, shapes[vi.name]):
                d.ClearField("dim_param")
                d.dim_value = v
    m = shape_inference.infer_shapes(m, data_prop=True)
    known = {}
    for vi in list(m.graph.input) + list(m.graph.value_info) + list(m.graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        if vi.type.tensor_type.HasField("shape") and all(d is not None for d in dims):
            known[vi.name] = dims
    for t in m.graph.initializer:
        known[t.name] = list(t.dims)
    missing = []
    for n in m.graph.node:
        if n.op_type in ops:
            missing += [x for x in list(n.input[:2]) + [n.output[0]] if x and x not in known and x not in missing]
    if missing:
        import onnxruntime as ort
        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        have = {o.name for o in probe.graph.output}
        for x in missing:
            if x not in have:
                probe.graph.output.append(onnx.ValueInfoProto(name=x))
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.log_severity_level = 3
        try:
            sess = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
            for x, v in zip(missing, sess.run(missing, feeds)):
                known[x] = list(v.shape)
        except Exception as e:
            log(f"  FLOP count: onnxruntime could not report operand shapes: {str(e)[:200]}")

    def numel(s):
        return int(np.prod(s)) if s else 1

    flops, unknown = 0, 0
    for n in m.graph.node:
        if n.op_type not in ("Conv", "ConvTranspose", "MatMul", "Gemm"):
            continue
        ins = [known.get(x) for x in n.input]
        out = known.get(n.output[0])
        if out is None or any(s is None for s in ins[:2]):
            unknown += 1
            continue
        if n.op_type == "Conv":
            w = ins[1]  # [M, C/group, k...]: each output element is C/group * prod(k) MACs
            flops += 2 * numel(out) * numel(w[1:])
        elif n.op_type == "ConvTranspose":
            w = ins[1]  # [C, M/group, k...]: each input element scatters M/group * prod(k) MACs
            flops += 2 * numel(ins[0]) * numel(w[1:])
        elif n.op_type == "MatMul":
            a = ins[0]
            k = a[-1] if len(a) >= 1 else 1
            flops += 2 * numel(out) * k
        else:  # Gemm
            trans_a = next((at.i for at in n.attribute if at.name == "transA"), 0)
            a = ins[0]
            k = a[0] if trans_a else a[1]
            flops += 2 * numel(out) * k
    return flops, unknown


# ---------------------------------------------------------------- peak

def measure_peak(work, quick):
    peak = {}
    src = os.path.join(REPO, "bench", "peak_flops.c")
    exe = os.path.join(work, "peak_flops")
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc:
        r = subprocess.run([cc, "-O2", "-march=native", "-pthread", src, "-o", exe], capture_output=True, text=True)
        if r.returncode == 0:
            out = subprocess.run([exe, "0.1" if quick else "0.3"], capture_output=True, text=True).stdout
            for line in out.splitlines():
                kv = dict(p.split("=", 1) for p in line.split())
                peak[f"fma_{kv['isa']}"] = {"1": float(kv["single_core_gflops"]),
                                            "all": float(kv["all_core_gflops"]), "threads": int(kv["threads"])}
        else:
            log(f"peak_flops.c did not compile: {r.stderr.strip()[:300]}")
    code = ("import numpy as np, time\n"
            "a=np.random.default_rng(0).standard_normal((1024,1024),dtype=np.float32); b=a.copy(); a@b\n"
            "best=0\n"
            "for _ in range(%d):\n"
            "  t=time.perf_counter(); a@b; best=max(best, 2*1024**3/(time.perf_counter()-t))\n"
            "print(best/1e9)\n") % (5 if quick else 20)
    for t in (1, 2):
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(t), OMP_NUM_THREADS=str(t))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout.strip()
        try:
            peak.setdefault("numpy_gemm_1024", {})[str(t)] = float(out)
        except ValueError:
            log(f"numpy GEMM measurement failed: {out!r}")
    return peak


def peak_for(peak, threads):
    """Best FMA-loop peak for this thread count (all-core when threads > 1)."""
    best = None
    for k, v in peak.items():
        if k.startswith("fma_"):
            val = v["1"] if threads == 1 else v["all"] * min(threads, v["threads"]) / v["threads"]
            best = val if best is None else max(best, val)
    return best


# ---------------------------------------------------------------- runtimes

def ort_session(path, threads):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def ort_block(sess, feeds, n):
    lat = []
    run = sess.run
    for _ in range(n):
        t0 = time.perf_counter_ns()
        run(None, feeds)
        lat.append((time.perf_counter_ns() - t0) / 1e6)
    return lat


_keel_has_num_threads = {}


def keel_thread_args(keel, threads):
    """`--num-threads T` when this keel bench has the option (cached per binary), else nothing."""
    if keel not in _keel_has_num_threads:
        r = subprocess.run([keel, "bench", "--help"], capture_output=True, text=True)
        _keel_has_num_threads[keel] = "--num-threads" in (r.stdout + r.stderr)
    return ["--num-threads", str(threads)] if _keel_has_num_threads[keel] else []


def keel_env(threads):
    return dict(os.environ, OPENBLAS_NUM_THREADS="1", KEEL_NUM_THREADS=str(threads))


def shape_args(shapes):
    out = []
    for name, dims in shapes.items():
        out += ["--shape", f"{name}={'x'.join(str(d) for d in dims)}"]
    return out


def keel_block(keel, path, shapes, n, threads, tmp):
    js = os.path.join(tmp, "bench.json")
    if os.path.exists(js):
        os.remove(js)
    args = [keel, "bench", path] + shape_args(shapes) + keel_thread_args(keel, threads) + [
        "--outputs", "preallocated", "--iterations", str(n), "--warmup", "0", "--json", js, "--no-progress"]
    r = subprocess.run(args, capture_output=True, text=True, env=keel_env(threads))
    if r.returncode != 0 or not os.path.exists(js):
        msg = (r.stderr.strip() or r.stdout.strip()).splitlines()[-3:]
        raise RuntimeError(f"keel bench exited {r.returncode}: {' | '.join(msg)}\n  command: {' '.join(args)}")
    with open(js) as f:
        d = json.load(f)
    run = d["runs"][0]
    lat = run["latency_ms"]
    return {"n": run["iterations"], "median": lat["median"], "p99": lat["p99"], "mean": lat["mean"],
            "min": lat["min"], "max": lat["max"]}


def keel_run_outputs(keel, path, feeds, n_out, tmp):
    args = [keel, "run", path]
    for i, (name, arr) in enumerate(feeds.items()):
        p = os.path.join(tmp, f"input_{i}.pb")
        with open(p, "wb") as f:
            f.write(numpy_helper.from_array(arr, name).SerializeToString())
        args += ["--input", f"{name}={p}"]
    outdir = os.path.join(tmp, "out")
    shutil.rmtree(outdir, ignore_errors=True)
    os.makedirs(outdir)
    args += ["--output-dir", outdir]
    r = subprocess.run(args, capture_output=True, text=True, env=keel_env(1))
    if r.returncode != 0:
        raise RuntimeError(f"keel run exited {r.returncode}: {r.stderr.strip()[-300:]}")
    outs = []
    for i in range(n_out):
        t = onnx.TensorProto()
        with open(os.path.join(outdir, f"output_{i}.pb"), "rb") as f:
            t.ParseFromString(f.read())
        outs.append(numpy_helper.to_array(t))
    return outs


# ---------------------------------------------------------------- one configuration

def summarize(blocks):
    """blocks: list of {"median", "p99", ...}; the median over blocks of each statistic."""
    return {"median": float(np.median([b["median"] for b in blocks])),
            "p99": float(np.median([b["p99"] for b in blocks])),
            "calls": int(sum(b["n"] for b in blocks)), "blocks": len(blocks)}


def block_stats(lat):
    a = np.asarray(lat)
    return {"n": len(lat), "median": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
            "mean": float(a.mean()), "min": float(a.min()), "max": float(a.max())}


def time_config(args, path, shapes, feeds, threads, tmp):
    sess = ort_session(path, threads)
    # Warm-up blocks (discarded): ORT's first calls allocate its arena; keel's process warms the page
    # cache. Both also give a latency estimate for sizing the timed blocks.
    ort_warm = ort_block(sess, feeds, args.warmup_calls)
    keel_warm = keel_block(args.keel, path, shapes, max(1, args.warmup_calls), threads, tmp)
    est = max(float(np.median(ort_warm[1:] or ort_warm)), keel_warm["median"])
    n = int(min(args.max_iters, max(args.min_iters, round(args.block_seconds * 1e3 / max(est, 1e-6)))))
    ort_blocks, keel_blocks = [], []
    for _ in range(args.blocks):
        ort_blocks.append(block_stats(ort_block(sess, feeds, n)))
        keel_blocks.append(keel_block(args.keel, path, shapes, n, threads, tmp))
    del sess
    return {"iters_per_block": n, "ort": summarize(ort_blocks), "keel": summarize(keel_blocks),
            "ort_blocks": ort_blocks, "keel_blocks": keel_blocks}


def model_path(args, name, batch):
    d = os.path.join(args.work, f"{'small' if args.small else 'full'}-b{batch}")
    p = os.path.join(d, f"{name}.onnx")
    if not os.path.exists(p):
        os.makedirs(d, exist_ok=True)
        cmd = [sys.executable, os.path.join(REPO, "scripts", "models", "gen_models.py"), "--out", d, "--only", name,
               "--batch", str(batch)] + (["--small"] if args.small else [])
        log("  generating: " + " ".join(cmd))
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return p


# ---------------------------------------------------------------- report

def geomean(xs):
    xs = [x for x in xs if x and x > 0 and math.isfinite(x)]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def fmt_ms(x):
    return f"{x:.4f}" if x < 0.1 else f"{x:.3f}" if x < 10 else f"{x:.1f}"


def render(results, peak, threads_list):
    lines = []
    lines.append("| model | batch | T | ORT median ms | ORT p99 ms | keel median ms | keel p99 ms | keel/ORT | "
                 "GFLOP | ORT GFLOP/s | keel GFLOP/s | % of peak ORT / keel | agree (tol_used) |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['batch']} | {r.get('threads', '-')} | error: {r['error']} |")
            continue
        o, k = r["ort"], r["keel"]
        g = r["flops"] / 1e9
        og = g / (o["median"] / 1e3) if o["median"] else 0
        kg = g / (k["median"] / 1e3) if k["median"] else 0
        pk = peak_for(peak, r["threads"])
        pct = f"{100 * og / pk:.0f}% / {100 * kg / pk:.0f}%" if pk else "-"
        agree = r.get("agree", "-")
        lines.append(f"| {r['model']} | {r['batch']} | {r['threads']} | {fmt_ms(o['median'])} | {fmt_ms(o['p99'])} | "
                     f"{fmt_ms(k['median'])} | {fmt_ms(k['p99'])} | **{r['ratio']:.2f}** | {g:.3f} | {og:.1f} | "
                     f"{kg:.1f} | {pct} | {agree} |")
    lines.append("")
    ok = [r for r in results if "ratio" in r]
    lines.append(f"Geometric mean of keel/ORT (median latency) over all {len(ok)} configurations: "
                 f"**{geomean([r['ratio'] for r in ok]):.2f}**")
    for t in threads_list:
        sel = [r["ratio"] for r in ok if r["threads"] == t]
        if sel:
            lines.append(f"- T={t}: {geomean(sel):.2f} over {len(sel)} configurations")
    lines.append("")
    lines.append("Peak (GFLOP/s): " + "; ".join(
        f"{k}: 1 core {v['1']:.1f}, all {v['threads']} cores {v['all']:.1f}" if k.startswith("fma_")
        else f"{k}: " + ", ".join(f"{t} thread(s) {x:.1f}" for t, x in v.items())
        for k, v in peak.items()))
    lines.append("(% of peak: achieved GFLOP/s over the best FMA-loop peak for that thread count: one core for "
                 "T=1, all cores scaled to T cores for T>1.)")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keel", default=os.path.join(REPO, "build", "keel"), help="keel binary (default: build/keel)")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "keel-compare-ort"),
                    help="where generated models are cached (default: $TMPDIR/keel-compare-ort)")
    ap.add_argument("--models", default=",".join(ALL_MODELS), help=f"comma-separated (default: {','.join(ALL_MODELS)})")
    ap.add_argument("--batches", default="1,8", help="comma-separated batch sizes (default 1,8)")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread configurations (default 1,2)")
    ap.add_argument("--seq", type=int, default=None, help="BERT sequence length (default 128; 16 with --quick)")
    ap.add_argument("--quick", action="store_true", help="small models (--small), 2 blocks of ~0.2 s")
    ap.add_argument("--blocks", type=int, default=None, help="timed blocks per runtime (default 4; 2 with --quick)")
    ap.add_argument("--block-seconds", type=float, default=None,
                    help="target time of one block of the slower runtime (default 1.5; 0.2 with --quick)")
    ap.add_argument("--min-iters", type=int, default=3, help="calls per block at least (default 3)")
    ap.add_argument("--max-iters", type=int, default=2000, help="calls per block at most (default 2000)")
    ap.add_argument("--warmup-calls", type=int, default=None,
                    help="calls in each discarded warm-up block (default 3; keel adds its own 10)")
    ap.add_argument("--no-peak", action="store_true", help="skip measuring the machine's peak")
    ap.add_argument("--json", help="write every number (per block too) as JSON")
    ap.add_argument("--markdown", help="also write the table to this file")
    args = ap.parse_args()

    args.small = args.quick
    args.seq = args.seq or (16 if args.quick else 128)
    args.blocks = args.blocks or (2 if args.quick else 4)
    args.block_seconds = args.block_seconds or (0.2 if args.quick else 1.5)
    args.warmup_calls = args.warmup_calls or (2 if args.quick else 3)
    args.keel = os.path.abspath(args.keel)
    if not os.access(args.keel, os.X_OK):
        raise SystemExit(f"error: {args.keel} is not an executable keel (build it, or pass --keel)")
    models = [m for m in args.models.split(",") if m]
    for m in models:
        if m not in ALL_MODELS:
            raise SystemExit(f"error: unknown model {m!r} (choose from {','.join(ALL_MODELS)})")
    batches = [int(b) for b in args.batches.split(",") if b]
    threads_list = [int(t) for t in args.threads.split(",") if t]
    os.makedirs(args.work, exist_ok=True)

    import onnxruntime as ort
    t_start = time.time()
    log(f"keel {args.keel}; onnxruntime {ort.__version__}; numpy {np.__version__}; onnx {onnx.__version__}; "
        f"python {platform.python_version()}")
    peak = {} if args.no_peak else measure_peak(args.work, args.quick)
    if peak:
        log("peak: " + json.dumps(peak))

    results = []
    with tempfile.TemporaryDirectory(prefix="keel-cmp-") as tmp:
        for name in models:
            for batch in batches:
                path = model_path(args, name, batch)
                model = onnx.load(path)
                shapes = input_shapes(model, batch, args.seq)
                feeds = make_feeds(model, shapes, 1000)  # keel bench's seeds
                flops, unknown = count_flops(model, shapes, feeds)
                if unknown:
                    log(f"  {name}: {unknown} Conv/MatMul/Gemm nodes with unknown shapes left out of the FLOPs")
                base = {"model": name, "batch": batch, "shapes": shapes, "flops": flops, "flops_unknown_nodes": unknown}
                # agreement, once per model and batch (ORT at 1 thread, keel single-threaded)
                agree = "-"
                try:
                    sess = ort_session(path, 1)
                    ref = sess.run(None, feeds)
                    out_names = [o.name for o in sess.get_outputs()]
                    del sess
                    got = keel_run_outputs(args.keel, path, feeds, len(ref), tmp)
                    worst, ok_all, msgs = 0.0, True, []
                    for on, rv, gv in zip(out_names, ref, got):
                        ok, _, _, frac, msg = compare(on, rv, gv, RTOL, ATOL)
                        ok_all &= ok
                        worst = max(worst, frac)
                        if msg:
                            msgs.append(msg)
                    agree = f"{'PASS' if ok_all else 'FAIL'} ({worst:.3g})"
                    if msgs:
                        log("  " + "; ".join(msgs))
                except Exception as e:  # a failed check is reported, the timing still runs
                    agree = f"ERROR: {e}"
                log(f"{name} batch {batch}: {flops / 1e9:.3f} GFLOP, outputs {agree}")
                for t in threads_list:
                    t0 = time.time()
                    r = dict(base, threads=t, agree=agree)
                    try:
                        r.update(time_config(args, path, shapes, feeds, t, tmp))
                        r["ratio"] = r["keel"]["median"] / r["ort"]["median"]
                        log(f"  T={t}: ORT {fmt_ms(r['ort']['median'])} ms, keel {fmt_ms(r['keel']['median'])} ms, "
                            f"keel/ORT {r['ratio']:.2f}  ({r['iters_per_block']} calls x {args.blocks} blocks, "
                            f"{time.time() - t0:.0f} s)")
                    except Exception as e:
                        r["error"] = str(e).splitlines()[0]
                        log(f"  T={t}: error: {e}")
                    results.append(r)

    table = render(results, peak, threads_list)
    print(table)
    print(f"\n(total {time.time() - t_start:.0f} s)")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"peak": peak, "results": results, "keel": args.keel, "onnxruntime": ort.__version__,
                       "blocks": args.blocks, "block_seconds": args.block_seconds, "seq": args.seq,
                       "small": args.small}, f, indent=1)
    return 1 if any("error" in r or str(r.get("agree", "")).startswith(("FAIL", "ERROR")) for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
