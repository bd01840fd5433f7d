#!/usr/bin/env python3
"""Markdown tables from the JSON files `keel bench --json` wrote (bench/run_runtime_module.sh names them
MODEL.CONFIG.json), and a check of the runtime-module targets.

  python3 bench/report.py OUT_DIR
"""
import glob
import json
import os
import statistics
import sys

CONFIGS = [  # file suffix, what it is
    ("cpu", "cpu, inflight 1 (caller's thread, the CPU default)"),
    ("cpu.libc", "cpu, inflight 1, LD_PRELOAD counter"),
    ("cpu.async", "cpu --async (the module's stream thread)"),
    ("cpu.inflight4", "cpu, inflight 4"),
    ("sim", "sim (30 us alloc), inflight 1"),
    ("sim.libc", "sim, inflight 1, LD_PRELOAD counter"),
    ("cpu-blas1.libc", "cpu, OPENBLAS_NUM_THREADS=1, LD_PRELOAD counter"),
    ("sim-blas1.libc", "sim, OPENBLAS_NUM_THREADS=1, LD_PRELOAD counter"),
    ("sim-if1.r1", "sim, inflight 1 (rep 1)"),
    ("sim-if4.r1", "sim, inflight 4 (rep 1)"),
]
NOISE = 0.02  # "never slower": median latency within 2% of FRESH (run-to-run noise on a shared VM)


def load(out):
    runs = {}
    for path in sorted(glob.glob(os.path.join(out, "*.json"))):
        base = os.path.basename(path)[:-5]
        model, _, config = base.partition(".")
        try:
            with open(path) as f:
                runs[(model, config)] = json.load(f)
        except (OSError, ValueError) as e:
            print(f"<!-- skipped {path}: {e} -->")
    return runs


def fmt(v, digits=4):
    if v is None:
        return "-"
    if isinstance(v, float) and v >= 100:
        return f"{v:.1f}"
    return f"{v:.{digits}g}"


def by_mode(doc):
    return {r["outputs"]: r for r in doc["runs"]}


def tables(runs):
    models = sorted({m for m, _ in runs}, key=lambda m: ["mlp", "mobilenetv2", "bert", "ppocr_cls"].index(m)
                    if m in ["mlp", "mobilenetv2", "bert", "ppocr_cls"] else 99)
    for model in models:
        print(f"\n### {model}\n")
        print("| config | outputs | calls | qps | qps(med) | min ms | median ms | mean ms | p90 ms | p99 ms | max ms "
              "| enqueue ms | sys allocs/call | bytes/call | faults/call | libc allocs/call |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for config, label in CONFIGS:
            doc = runs.get((model, config))
            if not doc:
                continue
            for r in doc["runs"]:
                lat = r["latency_ms"]
                print(f"| {label} | {r['outputs']} | {r['iterations']} | {r['throughput_qps']:.0f} "
                      f"| {r.get('throughput_qps_from_median', 0):.0f} | {fmt(lat['min'])} "
                      f"| {fmt(lat['median'])} | {fmt(lat['mean'])} | {fmt(lat['p90'])} | {fmt(lat['p99'])} "
                      f"| {fmt(lat['max'])} | {fmt(r['enqueue_ms']['mean'], 3)} | {fmt(r['allocations_per_call'], 3)} "
                      f"| {r['bytes_allocated_per_call']:.0f} | {fmt(r['page_faults_per_call'], 3)} "
                      f"| {fmt(r.get('libc_allocations_per_call'), 3)} |")
    return models


def check(runs, models):
    print("\n### Targets\n")
    print("| model | target | measured | met |")
    print("|---|---|---|---|")
    for model in models:
        # zero allocations in steady state, confirmed by the libc counter
        for config in ("cpu.libc", "sim.libc", "cpu-blas1.libc", "sim-blas1.libc"):
            doc = runs.get((model, config))
            if not doc:
                continue
            m = by_mode(doc)
            for mode in ("preallocated", "persistent"):
                if mode in m:
                    r = m[mode]
                    ok = r["allocations_per_call"] == 0 and r.get("libc_allocations_per_call") == 0
                    print(f"| {model} | {config}: {mode} 0 allocations/call (keel and libc) "
                          f"| keel {r['allocations_per_call']:.3g}, libc {fmt(r.get('libc_allocations_per_call'), 3)} "
                          f"| {'yes' if ok else 'NO'} |")
            if "fresh" in m:
                r = m["fresh"]
                # keel_engine_output_count is not in the JSON: FRESH must allocate at least once per call
                outs = doc.get("model_outputs", 1)
                ok = r["allocations_per_call"] >= outs
                print(f"| {model} | {config}: fresh >= 1 allocation per output ({outs} outputs) "
                      f"| keel {r['allocations_per_call']:.3g}, libc {fmt(r.get('libc_allocations_per_call'), 3)} "
                      f"| {'yes' if ok else 'NO'} |")
        doc = runs.get((model, "sim"))
        if doc:
            m = by_mode(doc)
            for mode in ("preallocated", "persistent"):
                ratio = m[mode]["latency_ms"]["median"] / m["fresh"]["latency_ms"]["median"]
                print(f"| {model} | sim: {mode} median latency >= 10% below fresh | {ratio:.3f}x fresh "
                      f"({(ratio - 1) * 100:+.1f}%) | {'yes' if ratio <= 0.9 else 'NO'} |")
        reps = sorted({c.split(".")[1] for (m, c) in runs if m == model and c.startswith("sim-if1.")})
        pairs = [(runs.get((model, "sim-if1." + r)), runs.get((model, "sim-if4." + r))) for r in reps]
        pairs = [(a, b) for a, b in pairs if a and b]
        if pairs:
            for mode in ("fresh", "preallocated", "persistent"):
                key = "throughput_qps_from_median"  # robust to preemption by other work on a shared machine
                q1 = sorted(by_mode(a)[mode][key] for a, _ in pairs)
                q4 = sorted(by_mode(b)[mode][key] for _, b in pairs)
                g = statistics.median(q4) / statistics.median(q1)
                each = ", ".join(f"{by_mode(b)[mode][key] / by_mode(a)[mode][key]:.2f}" for a, b in pairs)
                print(f"| {model} | sim {mode}: inflight 4 throughput >= 1.15x inflight 1 | {g:.3f}x (median qps "
                      f"{statistics.median(q4):.0f} vs {statistics.median(q1):.0f}; per rep {each}) "
                      f"| {'yes' if g >= 1.15 else 'NO'} |")
        for config in ("cpu", "cpu.async"):
            doc = runs.get((model, config))
            if not doc:
                continue
            m = by_mode(doc)
            for mode in ("preallocated", "persistent"):
                ratio = m[mode]["latency_ms"]["median"] / m["fresh"]["latency_ms"]["median"]
                tq = m[mode]["throughput_qps"] / m["fresh"]["throughput_qps"]
                tqm = m[mode]["throughput_qps_from_median"] / m["fresh"]["throughput_qps_from_median"]
                ok = ratio <= 1.0 + NOISE
                print(f"| {model} | {config}: {mode} never slower than fresh (median within {NOISE:.0%}) "
                      f"| median {ratio:.3f}x, qps {tq:.3f}x, qps(med) {tqm:.3f}x | {'yes' if ok else 'NO'} |")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    runs = load(sys.argv[1])
    if not runs:
        print(f"no JSON files in {sys.argv[1]}", file=sys.stderr)
        return 1
    check(runs, tables(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
