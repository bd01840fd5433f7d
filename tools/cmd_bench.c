/* keel bench: latency, throughput and allocations per call of a model through the runtime module
 * (what trtexec is to TensorRT).
 *
 * Each output mode gets its own keel_module over one shared keel_engine. With --outputs all the modes run
 * interleaved in one process (one call of each mode in turn), so frequency scaling, cache state and other
 * drift hit all of them alike. Latency is submit-to-wait-return (the whole forward call as the caller sees
 * it); the caller releases the outputs right after each call, which is the PREALLOCATED steady state.
 *
 * Allocation figures come from keel_module_get_stats deltas over the timed calls (system allocations keel
 * made), from getrusage (page faults) and, when libkeel_malloc_count.so is preloaded, from its counters of
 * every malloc-family call in the process (an independent check). With one caller thread these are taken
 * right around each call (or each --inflight phase) and charged to its mode; with several caller threads
 * and several modes only the process-wide total over the timed region is exact, and is reported as such. */
#define _GNU_SOURCE /* dlsym(RTLD_DEFAULT), pthread barriers, getrusage */
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <keel/module.h>

#include "cli.h"
#include "core/error.h"

#define MAX_SHAPES 64
#define MAX_MODES 3

static const char *const mode_names[MAX_MODES] = {"fresh", "preallocated", "persistent"};

typedef void (*mc_get_fn)(unsigned long long out[4]);
typedef void (*mc_trace_fn)(int on);

/* What one caller thread measured for one mode. */
typedef struct mode_acc {
  double *lat, *enq; /* ms per timed call */
  size_t n, cap;
  double *cyc;       /* ms per call of the caller's loop: call + release (inflight 1), or between completions */
  size_t ncyc;
  double busy_s;     /* seconds this thread spent on this mode's calls (incl. releasing outputs) */
  unsigned long long libc[4]; /* malloc_count deltas charged to this mode (one caller thread only) */
  uint64_t faults;   /* page-fault deltas charged to this mode (one caller thread only) */
  keel_module_stats before, after;
} mode_acc;

struct bench;

typedef struct worker {
  struct bench *b;
  int id;
  pthread_t thread;
  keel_module *mod[MAX_MODES];
  keel_tensor **inputs;
  keel_tensor **outs;
  keel_call **ring;
  double *ring_t0;
  mode_acc acc[MAX_MODES];
  keel_status *err;
  atomic_ullong done; /* timed calls so far, for the progress line */
} worker;

typedef struct bench {
  const char *model;
  keel_engine *engine;
  size_t n_in, n_out;
  int n_modes;
  int modes[MAX_MODES];
  int threads, inflight;
  double warmup_s, duration_s;
  long long iterations; /* per mode, all threads together; 0 = by duration */
  bool duration_given;
  bool cuda_graphs;
  keel_module_options opt;
  cli_shape shapes[MAX_SHAPES];
  int n_shapes;
  bool progress;
  mc_get_fn mc_get;
  mc_trace_fn mc_trace; /* set only when KEEL_MALLOC_TRACE asks for backtraces */
  pthread_barrier_t barrier;
  atomic_int failed;
  atomic_int timed_done; /* workers that finished their timed calls */
  double timed_start;
} bench;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t page_faults(void) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  return (uint64_t)r.ru_minflt + (uint64_t)r.ru_majflt;
}

static void libc_counts(const bench *b, unsigned long long out[4]) {
  if (b->mc_get) b->mc_get(out);
  else memset(out, 0, 4 * sizeof *out);
}

/* ---- argument parsing ------------------------------------------------------------------------------------ */

static const char *const usage_text =
    "usage: keel bench MODEL [--shape NAME=DIMS]... [--outputs fresh|preallocated|persistent|all]\n"
    "                  [--iterations N] [--duration S] [--warmup S] [--threads N] [--num-threads N]\n"
    "                  [--device cpu|sim|cuda]\n"
    "                  [--inflight K] [--sim-alloc-us X] [--sim-free-us X] [--cuda-graphs] [--json FILE]\n"
    "                  [--sync | --async] [--progress | --no-progress]\n"
    "\n"
    "  --shape NAME=DIMS   input shape, e.g. data=1x3x224x224 (symbolic dims default to 1)\n"
    "  --outputs MODE      output mode to measure; all (default) interleaves the three round-robin\n"
    "  --iterations N      timed calls per mode (default: run for --duration)\n"
    "  --duration S        timed seconds (default 5; with --iterations, whichever ends first)\n"
    "  --warmup S          warm-up seconds per run, at least 10 calls per mode (default 1)\n"
    "  --threads N         caller threads, each with its own modules over one engine (default 1)\n"
    "  --num-threads N     threads each call's kernels may use (ORT's intra_op_num_threads; default 1,\n"
    "                      or the KEEL_NUM_THREADS environment variable)\n"
    "  --device cpu|sim|cuda  cpu (default), the simulated accelerator (allocations cost like cudaMalloc) or a\n"
    "                      CUDA GPU (builds with the CUDA backend; inputs from the host, outputs stay on the GPU)\n"
    "  --cuda-graphs       cuda: capture each mode's calls in CUDA graphs and replay them\n"
    "  --inflight K        keep K calls submitted per module (throughput mode; default 1)\n"
    "  --sim-alloc-us X    simulated device allocation cost (default 30 us); --sim-free-us likewise (10 us)\n"
    "  --sync              cpu: compute on the calling thread (module option async = 0; the CPU default)\n"
    "  --async             cpu: compute on the module's stream thread (async = 1; implied by --inflight > 1)\n"
    "  --json FILE         also write the results as JSON\n"
    "  --progress          progress line on stderr (default: when stderr is a terminal)\n"
    "\n"
    "Preload libkeel_malloc_count.so (LD_PRELOAD) to count every libc allocation as well;\n"
    "KEEL_MALLOC_TRACE=N then prints backtraces of the first N allocations made during timed calls.\n";

static int bad_arg(const char *fmt, const char *a) {
  fprintf(stderr, "keel bench: ");
  fprintf(stderr, fmt, a);
  fprintf(stderr, "\n(keel bench --help shows the options)\n");
  return 2;
}

static bool parse_double(const char *s, double lo, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || *end || errno || !isfinite(v) || v < lo) return false;
  *out = v;
  return true;
}

static bool parse_int(const char *s, long long lo, long long hi, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (end == s || *end || errno || v < lo || v > hi) return false;
  *out = v;
  return true;
}

static bool is_value_option(const char *a) {
  static const char *const names[] = {"--shape",   "--outputs", "--iterations",   "--duration",    "--warmup", "--threads",
                                      "--num-threads", "--inflight", "--device", "--sim-alloc-us", "--sim-free-us", "--json"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    if (!strcmp(a, names[i])) return true;
  return false;
}

/* ---- one caller thread ---------------------------------------------------------------------------------- */

static void fail(worker *w, keel_status *s) {
  if (!w->err) w->err = s;
  else keel_status_free(s);
  atomic_store(&w->b->failed, 1);
}

/* Keeps one sample; false only when growing the sample arrays failed. */
static bool record(mode_acc *a, double lat_ms, double enq_ms, double cyc_ms) {
  if (a->n == a->cap) {
    /* outside every measured window: only the harness's own bookkeeping (rare: sized from the warm-up) */
    size_t cap = a->cap ? a->cap * 2 : 1024;
    double *l = realloc(a->lat, cap * sizeof *l);
    if (!l) return false;
    a->lat = l;
    double *e = realloc(a->enq, cap * sizeof *e);
    if (!e) return false;
    a->enq = e;
    double *c = realloc(a->cyc, cap * sizeof *c);
    if (!c) return false;
    a->cyc = c;
    a->cap = cap;
  }
  a->lat[a->n] = lat_ms;
  a->enq[a->n] = enq_ms;
  a->n++;
  if (cyc_ms >= 0) a->cyc[a->ncyc++] = cyc_ms;
  return true;
}

static void release_outputs(worker *w) {
  for (size_t k = 0; k < w->b->n_out; k++) {
    keel_tensor_release(w->outs[k]);
    w->outs[k] = NULL;
  }
}

/* One forward call of mode slot mi (submit + wait), outputs released right after. */
static keel_status *one_call(worker *w, int mi, bool timed) {
  bench *b = w->b;
  mode_acc *a = &w->acc[mi];
  unsigned long long c0[4], c1[4];
  uint64_t f0 = 0;
  bool charge = timed && b->threads == 1;
  if (charge) {
    libc_counts(b, c0);
    f0 = page_faults();
    if (b->mc_trace) b->mc_trace(1);
  }
  keel_call *c = NULL;
  double t0 = now_s();
  keel_status *s = keel_module_submit(w->mod[mi], w->inputs, b->n_in, &c);
  double t1 = now_s();
  if (!s) s = keel_call_wait(c, w->outs, b->n_out);
  double t2 = now_s();
  release_outputs(w);
  double t3 = now_s();
  if (charge) {
    if (b->mc_trace) b->mc_trace(0);
    uint64_t f1 = page_faults();
    libc_counts(b, c1);
    for (int i = 0; i < 4; i++) a->libc[i] += c1[i] - c0[i];
    a->faults += f1 - f0;
  }
  if (s) return s;
  if (timed) {
    a->busy_s += t3 - t0;
    atomic_fetch_add_explicit(&w->done, 1, memory_order_relaxed);
    if (!record(a, (t2 - t0) * 1e3, (t1 - t0) * 1e3, (t3 - t0) * 1e3))
      return keel_error(KEEL_OUT_OF_MEMORY, "out of memory keeping latency samples");
  }
  return NULL;
}

/* --inflight K: one phase of mode slot mi, keeping K calls submitted for about slice_s seconds (or until
 * `budget` calls were submitted), then draining. Every call's latency is submit to wait-return. */
static keel_status *inflight_phase(worker *w, int mi, double slice_s, long long budget, bool timed, long long *calls) {
  bench *b = w->b;
  mode_acc *a = &w->acc[mi];
  int K = b->inflight;
  unsigned long long c0[4], c1[4];
  uint64_t f0 = 0;
  bool charge = timed && b->threads == 1;
  if (charge) {
    libc_counts(b, c0);
    f0 = page_faults();
    if (b->mc_trace) b->mc_trace(1);
  }
  keel_status *s = NULL;
  int head = 0, live = 0; /* ring[head] is the oldest call in flight */
  double prev_done = -1;   /* completion time of the previous call in this phase */
  long long submitted = 0;
  *calls = 0;
  double start = now_s(), end = start + slice_s;
  for (;;) {
    bool more = !s && submitted < budget && now_s() < end && !atomic_load_explicit(&b->failed, memory_order_relaxed);
    if (more && live < K) {
      int slot = (head + live) % K;
      double t0 = now_s();
      keel_status *e = keel_module_submit(w->mod[mi], w->inputs, b->n_in, &w->ring[slot]);
      double t1 = now_s();
      if (e) {
        s = e;
        continue;
      }
      w->ring_t0[slot] = t0;
      if (timed) w->ring_t0[slot + K] = (t1 - t0) * 1e3; /* enqueue time, kept beside its call */
      live++;
      submitted++;
      continue;
    }
    if (!live) break;
    keel_status *e = keel_call_wait(w->ring[head], w->outs, b->n_out);
    double t2 = now_s();
    release_outputs(w);
    if (e) {
      if (!s) s = e;
      else keel_status_free(e);
    } else {
      (*calls)++;
      if (timed) {
        atomic_fetch_add_explicit(&w->done, 1, memory_order_relaxed);
        double cyc = prev_done >= 0 ? (t2 - prev_done) * 1e3 : -1;
        if (!record(a, (t2 - w->ring_t0[head]) * 1e3, w->ring_t0[head + K], cyc) && !s)
          s = keel_error(KEEL_OUT_OF_MEMORY, "out of memory keeping latency samples");
      }
    }
    prev_done = t2;
    w->ring[head] = NULL;
    head = (head + 1) % K;
    live--;
  }
  double stop = now_s();
  if (charge) {
    if (b->mc_trace) b->mc_trace(0);
    uint64_t f1 = page_faults();
    libc_counts(b, c1);
    for (int i = 0; i < 4; i++) a->libc[i] += c1[i] - c0[i];
    a->faults += f1 - f0;
  }
  if (timed) a->busy_s += stop - start;
  return s;
}

static double slice_seconds(const bench *b) {
  double d = b->duration_s / 20;
  return d < 0.05 ? 0.05 : d > 0.25 ? 0.25 : d;
}

static void warmup(worker *w) {
  bench *b = w->b;
  double start = now_s();
  long long calls[MAX_MODES] = {0};
  unsigned turn = 0;
  for (;;) {
    bool enough = now_s() - start >= b->warmup_s;
    for (int mi = 0; mi < b->n_modes; mi++)
      if (calls[mi] < 10) enough = false;
    if (enough || atomic_load(&b->failed)) break;
    turn++;
    for (int j = 0; j < b->n_modes && !atomic_load(&b->failed); j++) {
      int mi = (int)((j + turn) % b->n_modes); /* rotate who goes first: no mode always follows another */
      keel_status *s;
      if (b->inflight == 1) {
        s = one_call(w, mi, false);
        calls[mi]++;
      } else {
        long long n = 0;
        s = inflight_phase(w, mi, slice_seconds(b) / 2, 1000000000LL, false, &n);
        calls[mi] += n;
      }
      if (s) fail(w, s);
    }
  }
  /* Room for the timed samples, sized from the warm-up rate so the timed loop (normally) never grows it. */
  double rate = 0, el = now_s() - start;
  for (int mi = 0; mi < b->n_modes; mi++) {
    double r = el > 0 ? (double)calls[mi] / el : 0;
    if (r > rate) rate = r;
  }
  double want = b->iterations ? (double)b->iterations / b->threads + 16 : rate * b->duration_s * 2 + 1024;
  if (b->iterations && b->duration_given && rate * b->duration_s * 2 + 1024 < want) want = rate * b->duration_s * 2 + 1024;
  if (want > 5e7) want = 5e7;
  for (int mi = 0; mi < b->n_modes; mi++) {
    mode_acc *a = &w->acc[mi];
    a->cap = (size_t)want;
    a->lat = malloc(a->cap * sizeof *a->lat);
    a->enq = malloc(a->cap * sizeof *a->enq);
    a->cyc = malloc(a->cap * sizeof *a->cyc);
    if (!a->lat || !a->enq || !a->cyc) {
      fail(w, NULL);
      a->cap = 0;
    }
  }
}

static void timed(worker *w) {
  bench *b = w->b;
  long long share = b->iterations ? (b->iterations + b->threads - 1) / b->threads : 0;
  long long calls[MAX_MODES] = {0};
  unsigned turn = 0;
  for (int mi = 0; mi < b->n_modes; mi++) keel_module_get_stats(w->mod[mi], &w->acc[mi].before);
  double start = b->timed_start;
  double slice = slice_seconds(b);
  for (;;) {
    if (atomic_load_explicit(&b->failed, memory_order_relaxed)) break;
    bool time_up = (!b->iterations || b->duration_given) && now_s() - start >= b->duration_s;
    bool all_done = share > 0;
    for (int mi = 0; mi < b->n_modes; mi++)
      if (calls[mi] < share) all_done = false;
    if (time_up || all_done) break;
    turn++;
    for (int j = 0; j < b->n_modes; j++) {
      int mi = (int)((j + turn) % b->n_modes); /* rotate who goes first: no mode always follows another */
      if (share && calls[mi] >= share) continue;
      keel_status *s;
      if (b->inflight == 1) {
        s = one_call(w, mi, true);
        if (!s) calls[mi]++;
      } else {
        long long n = 0;
        s = inflight_phase(w, mi, slice, share ? share - calls[mi] : 1000000000LL, true, &n);
        calls[mi] += n;
      }
      if (s) {
        fail(w, s);
        break;
      }
    }
  }
  for (int mi = 0; mi < b->n_modes; mi++) keel_module_get_stats(w->mod[mi], &w->acc[mi].after);
}

static keel_status *setup(worker *w) {
  bench *b = w->b;
  w->inputs = calloc(b->n_in + 1, sizeof *w->inputs);
  w->outs = calloc(b->n_out + 1, sizeof *w->outs);
  w->ring = calloc((size_t)b->inflight, sizeof *w->ring);
  w->ring_t0 = calloc(2 * (size_t)b->inflight, sizeof *w->ring_t0);
  if (!w->inputs || !w->outs || !w->ring || !w->ring_t0) return NULL; /* reported by the caller */
  for (size_t i = 0; i < b->n_in; i++) {
    keel_io_info info;
    keel_status *s = keel_engine_input_info(b->engine, i, &info);
    if (s) return s;
    int64_t dims[KEEL_MAX_DIMS];
    int ndim;
    cli_input_shape(&info, b->shapes, b->n_shapes, dims, &ndim);
    s = cli_generate_input(info.dtype, dims, ndim, 1000 + i, &w->inputs[i]);
    if (s) return s;
  }
  for (int mi = 0; mi < b->n_modes; mi++) {
    keel_module_options o = b->opt;
    o.output_mode = (keel_output_mode)b->modes[mi];
    keel_status *s = keel_module_create(b->engine, &o, &w->mod[mi]);
    if (s) return s;
    if (b->cuda_graphs) {
      s = keel_module_set_cuda_graphs(w->mod[mi], 1);
      if (s) return s;
    }
  }
  return NULL;
}

static void *worker_main(void *arg) {
  worker *w = arg;
  bench *b = w->b;
  keel_status *s = setup(w);
  if (s) fail(w, s);
  else if (!w->inputs || !w->outs || !w->ring || !w->ring_t0 || !w->mod[b->n_modes - 1])
    atomic_store(&b->failed, 1);
  pthread_barrier_wait(&b->barrier); /* A: everyone set up */
  if (!atomic_load(&b->failed)) warmup(w);
  pthread_barrier_wait(&b->barrier); /* B: warm; the main thread takes its region snapshots */
  pthread_barrier_wait(&b->barrier); /* C: go */
  if (!atomic_load(&b->failed)) timed(w);
  atomic_fetch_add(&b->timed_done, 1);
  pthread_barrier_wait(&b->barrier); /* D: the main thread took its end snapshots */
  return NULL;
}

/* ---- statistics and reports ------------------------------------------------------------------------------ */

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, c = *(const double *)y;
  return a < c ? -1 : a > c;
}

/* Percentile with linear interpolation between closest ranks (numpy's default). */
static double percentile(const double *v, size_t n, double p) {
  if (!n) return 0;
  double pos = p / 100.0 * (double)(n - 1);
  size_t lo = (size_t)pos;
  if (lo + 1 >= n) return v[n - 1];
  return v[lo] + (v[lo + 1] - v[lo]) * (pos - (double)lo);
}

typedef struct summary {
  const char *name;
  size_t calls;
  double min, mean, median, p90, p95, p99, max;
  double enq_mean, enq_median, enq_p99;
  double qps;
  double qps_median; /* from the median time per call of each caller: robust to preemption by other work */
  double allocs, frees, bytes, faults; /* per call */
  double libc[4];                      /* per call; valid when libc_exact */
  bool libc_exact, faults_exact;
  double pool_hits, prepared_used;     /* per call */
} summary;

static void summarize(bench *b, worker *ws, int mi, summary *out, double *merged_lat, double *merged_enq) {
  memset(out, 0, sizeof *out);
  out->name = mode_names[b->modes[mi]];
  size_t n = 0;
  double sum = 0, esum = 0;
  for (int t = 0; t < b->threads; t++) {
    mode_acc *a = &ws[t].acc[mi];
    memcpy(merged_lat + n, a->lat, a->n * sizeof *a->lat);
    memcpy(merged_enq + n, a->enq, a->n * sizeof *a->enq);
    n += a->n;
    if (a->busy_s > 0) out->qps += (double)a->n / a->busy_s; /* each caller's rate, summed */
    if (a->ncyc) {
      /* Median of the mean time per call over blocks of BLOCK consecutive calls: a block hit by preemption
       * is an outlier the median ignores, while within a block bursts of completions (inflight K) average
       * out. Few calls: plain median. */
      enum { BLOCK = 16 };
      size_t nb = a->ncyc / BLOCK;
      if (nb >= 3) {
        for (size_t k = 0; k < nb; k++) {
          double sum_b = 0;
          for (size_t j = 0; j < BLOCK; j++) sum_b += a->cyc[k * BLOCK + j];
          a->cyc[k] = sum_b / BLOCK; /* in place: block k reads entries >= k * BLOCK >= k */
        }
      } else {
        nb = a->ncyc;
      }
      qsort(a->cyc, nb, sizeof *a->cyc, cmp_double);
      double med = percentile(a->cyc, nb, 50);
      if (med > 0) out->qps_median += 1e3 / med;
    }
    out->allocs += (double)(a->after.system_allocations - a->before.system_allocations);
    out->frees += (double)(a->after.system_frees - a->before.system_frees);
    out->bytes += (double)(a->after.bytes_allocated - a->before.bytes_allocated);
    out->pool_hits += (double)(a->after.pool_hits - a->before.pool_hits);
    out->prepared_used += (double)(a->after.prepared_used - a->before.prepared_used);
    for (int i = 0; i < 4; i++) out->libc[i] += (double)a->libc[i];
    out->faults += (double)a->faults;
  }
  out->calls = n;
  if (!n) return;
  for (size_t i = 0; i < n; i++) sum += merged_lat[i], esum += merged_enq[i];
  qsort(merged_lat, n, sizeof *merged_lat, cmp_double);
  qsort(merged_enq, n, sizeof *merged_enq, cmp_double);
  out->min = merged_lat[0];
  out->max = merged_lat[n - 1];
  out->mean = sum / (double)n;
  out->median = percentile(merged_lat, n, 50);
  out->p90 = percentile(merged_lat, n, 90);
  out->p95 = percentile(merged_lat, n, 95);
  out->p99 = percentile(merged_lat, n, 99);
  out->enq_mean = esum / (double)n;
  out->enq_median = percentile(merged_enq, n, 50);
  out->enq_p99 = percentile(merged_enq, n, 99);
  double dn = (double)n;
  out->allocs /= dn;
  out->frees /= dn;
  out->bytes /= dn;
  out->pool_hits /= dn;
  out->prepared_used /= dn;
  out->libc_exact = b->threads == 1;
  out->faults_exact = b->threads == 1;
  for (int i = 0; i < 4; i++) out->libc[i] /= dn;
  out->faults /= dn;
}

/* Latency cell: ms with enough digits for microsecond-scale models. */
static void fmt_ms(char *buf, size_t n, double ms) {
  if (ms < 1) snprintf(buf, n, "%.4f", ms);
  else if (ms < 100) snprintf(buf, n, "%.3f", ms);
  else snprintf(buf, n, "%.1f", ms);
}

static void json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c < 0x20) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

static void json_num(FILE *f, double v) {
  if (!isfinite(v)) fprintf(f, "null");
  else fprintf(f, "%.6g", v);
}

static const char *device_name(const bench *b) {
  switch (b->opt.device) {
    case KEEL_DEVICE_SIM: return "sim";
    case KEEL_DEVICE_CUDA: return "cuda";
    default: return "cpu";
  }
}

/* CUDA: device time per call of mode mi, over worker 0's module (warm-up included). */
static void device_means(const bench *b, worker *ws, int mi, double *h2d, double *compute, uint64_t *replays,
                         uint64_t *captures) {
  keel_device_stats ds;
  keel_module_stats st;
  keel_module_get_device_stats(ws[0].mod[mi], &ds);
  keel_module_get_stats(ws[0].mod[mi], &st);
  double n = st.calls ? (double)st.calls : 1;
  *h2d = ds.h2d_ms / n;
  *compute = ds.compute_ms / n;
  *replays = ds.graph_replays;
  *captures = ds.graph_captures;
  (void)b;
}

static int write_json(FILE *f, const char *path, bench *b, worker *ws0, const summary *sm, double region_libc,
                      double region_faults, bool have_region) {
  fprintf(f, "{\"model\": ");
  json_string(f, b->model);
  fprintf(f, ", \"device\": \"%s\", \"threads\": %d, \"inflight\": %d, \"model_outputs\": %zu", device_name(b),
          b->threads, b->inflight, b->n_out);
  if (b->opt.device == KEEL_DEVICE_CUDA) fprintf(f, ", \"cuda_graphs\": %s", b->cuda_graphs ? "true" : "false");
  if (b->opt.device == KEEL_DEVICE_SIM) {
    fprintf(f, ", \"sim_alloc_us\": ");
    json_num(f, b->opt.sim_alloc_delay_us);
    fprintf(f, ", \"sim_free_us\": ");
    json_num(f, b->opt.sim_free_delay_us);
  }
  fprintf(f, ", \"async\": %s, \"warmup_s\": ", b->opt.async ? "true" : "false");
  json_num(f, b->warmup_s);
  fprintf(f, ", \"interleaved\": %s", b->n_modes > 1 ? "true" : "false");
  fprintf(f, ", \"malloc_count\": %s", b->mc_get ? "true" : "false");
  if (have_region && b->mc_get) {
    fprintf(f, ", \"libc_allocations_per_call_all_runs\": ");
    json_num(f, region_libc);
  }
  if (have_region) {
    fprintf(f, ", \"page_faults_per_call_all_runs\": ");
    json_num(f, region_faults);
  }
  fprintf(f, ",\n \"runs\": [");
  for (int mi = 0; mi < b->n_modes; mi++) {
    const summary *s = &sm[mi];
    fprintf(f, "%s\n  {\"outputs\": \"%s\", \"iterations\": %zu, \"latency_ms\": {", mi ? "," : "", s->name, s->calls);
    const char *keys[] = {"min", "mean", "median", "p90", "p95", "p99", "max"};
    double vals[] = {s->min, s->mean, s->median, s->p90, s->p95, s->p99, s->max};
    for (int i = 0; i < 7; i++) {
      fprintf(f, "%s\"%s\": ", i ? ", " : "", keys[i]);
      json_num(f, vals[i]);
    }
    if (b->opt.device == KEEL_DEVICE_CUDA && ws0) {
      double h2d, comp;
      uint64_t rep, cap;
      device_means(b, ws0, mi, &h2d, &comp, &rep, &cap);
      fprintf(f, "}, \"device_h2d_ms_mean\": ");
      json_num(f, h2d);
      fprintf(f, ", \"device_compute_ms_mean\": ");
      json_num(f, comp);
      fprintf(f, ", \"graph_replays\": %llu, \"graph_captures\": %llu", (unsigned long long)rep,
              (unsigned long long)cap);
      fprintf(f, ", \"enqueue_ms\": {\"mean\": ");
    } else {
      fprintf(f, "}, \"enqueue_ms\": {\"mean\": ");
    }
    json_num(f, s->enq_mean);
    fprintf(f, ", \"median\": ");
    json_num(f, s->enq_median);
    fprintf(f, ", \"p99\": ");
    json_num(f, s->enq_p99);
    fprintf(f, "}, \"throughput_qps\": ");
    json_num(f, s->qps);
    fprintf(f, ", \"throughput_qps_from_median\": ");
    json_num(f, s->qps_median);
    fprintf(f, ", \"allocations_per_call\": ");
    json_num(f, s->allocs);
    fprintf(f, ", \"frees_per_call\": ");
    json_num(f, s->frees);
    fprintf(f, ", \"bytes_allocated_per_call\": ");
    json_num(f, s->bytes);
    fprintf(f, ", \"page_faults_per_call\": ");
    if (s->faults_exact) json_num(f, s->faults);
    else json_num(f, region_faults);
    fprintf(f, ", \"pool_hits_per_call\": ");
    json_num(f, s->pool_hits);
    if (b->mc_get) {
      fprintf(f, ", \"libc_allocations_per_call\": ");
      if (s->libc_exact) json_num(f, s->libc[0]);
      else json_num(f, region_libc);
      if (s->libc_exact) {
        fprintf(f, ", \"libc_frees_per_call\": ");
        json_num(f, s->libc[1]);
        fprintf(f, ", \"libc_mmaps_per_call\": ");
        json_num(f, s->libc[2]);
      }
    }
    fprintf(f, "}");
  }
  fprintf(f, "\n ]");
  if (b->n_modes > 1 && sm[0].calls && b->modes[0] == KEEL_OUTPUTS_FRESH) {
    fprintf(f, ",\n \"ratios_vs_fresh\": {");
    for (int mi = 1; mi < b->n_modes; mi++) {
      fprintf(f, "%s\"%s\": {\"median_latency\": ", mi > 1 ? ", " : "", sm[mi].name);
      json_num(f, sm[mi].median / sm[0].median);
      fprintf(f, ", \"throughput\": ");
      json_num(f, sm[mi].qps / sm[0].qps);
      fprintf(f, ", \"throughput_from_median\": ");
      json_num(f, sm[0].qps_median > 0 ? sm[mi].qps_median / sm[0].qps_median : NAN);
      fprintf(f, "}");
    }
    fprintf(f, "}");
  }
  fprintf(f, "\n}\n");
  if (fclose(f)) {
    fprintf(stderr, "keel bench: cannot write %s: %s\n", path, strerror(errno));
    return 1;
  }
  return 0;
}

/* Progress: "\r" line on stderr, four times a second at most; formatted without allocating. */
static void show_progress(bench *b, worker *ws, double elapsed, bool final) {
  unsigned long long done = 0;
  for (int t = 0; t < b->threads; t++) done += atomic_load_explicit(&ws[t].done, memory_order_relaxed);
  char line[160];
  int n;
  if (final) n = snprintf(line, sizeof line, "\r%-70s\r", "");
  else if (b->iterations && !b->duration_given)
    n = snprintf(line, sizeof line, "\rkeel bench: %llu/%lld calls, %.1f s", done,
                 b->iterations * (long long)b->n_modes, elapsed);
  else
    n = snprintf(line, sizeof line, "\rkeel bench: %.1f/%.1f s, %llu calls", elapsed, b->duration_s, done);
  if (n > 0) {
    ssize_t r = write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    (void)r;
  }
}

/* ---- the command ----------------------------------------------------------------------------------------- */

int keel_cmd_bench(int argc, char **argv) {
  bench B;
  memset(&B, 0, sizeof B);
  bench *b = &B;
  keel_module_options_init(&b->opt);
  b->threads = 1;
  b->inflight = 1;
  b->warmup_s = 1;
  b->duration_s = 5;
  b->n_modes = 3;
  for (int i = 0; i < 3; i++) b->modes[i] = i;
  const char *json = NULL;
  int progress = -1;
  bool sync_calls = false, async_calls = false;
  double sim_alloc = -1, sim_free = -1;
  const char *device_arg = "cpu";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    long long n;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      printf("%s", usage_text);
      return 0;
    } else if (!strcmp(a, "--sync")) {
      sync_calls = true;
    } else if (!strcmp(a, "--async")) {
      async_calls = true;
    } else if (!strcmp(a, "--cuda-graphs")) {
      b->cuda_graphs = true;
    } else if (!strcmp(a, "--profile")) {
      b->opt.profile = 1;
    } else if (!strcmp(a, "--progress")) {
      progress = 1;
    } else if (!strcmp(a, "--no-progress")) {
      progress = 0;
    } else if (is_value_option(a) && !v) {
      return bad_arg("option '%s' needs a value", a);
    } else if (!strcmp(a, "--shape")) {
      i++;
      if (b->n_shapes >= MAX_SHAPES || !cli_parse_shape(v, &b->shapes[b->n_shapes]))
        return bad_arg("--shape expects NAME=DIMS like data=1x3x224x224, got '%s'", v);
      b->n_shapes++;
    } else if (!strcmp(a, "--outputs")) {
      i++;
      if (!strcmp(v, "all")) {
        b->n_modes = 3;
      } else {
        int m = -1;
        for (int k = 0; k < 3; k++)
          if (!strcmp(v, mode_names[k])) m = k;
        if (m < 0) return bad_arg("--outputs expects fresh, preallocated, persistent or all, got '%s'", v);
        b->n_modes = 1;
        b->modes[0] = m;
      }
    } else if (!strcmp(a, "--iterations")) {
      i++;
      if (!parse_int(v, 1, 1000000000LL, &n)) return bad_arg("--iterations expects a positive integer, got '%s'", v);
      b->iterations = n;
    } else if (!strcmp(a, "--duration")) {
      i++;
      if (!parse_double(v, 0, &b->duration_s) || b->duration_s <= 0 || b->duration_s > 86400)
        return bad_arg("--duration expects seconds > 0, got '%s'", v);
      b->duration_given = true;
    } else if (!strcmp(a, "--warmup")) {
      i++;
      if (!parse_double(v, 0, &b->warmup_s) || b->warmup_s > 3600)
        return bad_arg("--warmup expects seconds >= 0, got '%s'", v);
    } else if (!strcmp(a, "--threads")) {
      i++;
      if (!parse_int(v, 1, 256, &n)) return bad_arg("--threads expects an integer from 1 to 256, got '%s'", v);
      b->threads = (int)n;
    } else if (!strcmp(a, "--num-threads")) {
      i++;
      if (!parse_int(v, 1, 256, &n))
        return bad_arg("--num-threads expects an integer from 1 to 256, got '%s'", v);
      b->opt.num_threads = (int)n;
    } else if (!strcmp(a, "--inflight")) {
      i++;
      if (!parse_int(v, 1, 1024, &n)) return bad_arg("--inflight expects an integer from 1 to 1024, got '%s'", v);
      b->inflight = (int)n;
    } else if (!strcmp(a, "--device")) {
      i++;
      if (!strcmp(v, "cpu")) b->opt.device = KEEL_DEVICE_CPU;
      else if (!strcmp(v, "sim")) b->opt.device = KEEL_DEVICE_SIM;
      else if (!strcmp(v, "cuda")) b->opt.device = KEEL_DEVICE_CUDA;
      else return bad_arg("--device expects cpu, sim or cuda, got '%s'", v);
      device_arg = v;
    } else if (!strcmp(a, "--sim-alloc-us")) {
      i++;
      if (!parse_double(v, 0, &sim_alloc) || sim_alloc > 1e6)
        return bad_arg("--sim-alloc-us expects microseconds >= 0, got '%s'", v);
    } else if (!strcmp(a, "--sim-free-us")) {
      i++;
      if (!parse_double(v, 0, &sim_free) || sim_free > 1e6)
        return bad_arg("--sim-free-us expects microseconds >= 0, got '%s'", v);
    } else if (!strcmp(a, "--json")) {
      i++;
      json = v;
    } else if (a[0] == '-') {
      return bad_arg("unknown option '%s'", a);
    } else if (!b->model) {
      b->model = a;
    } else {
      return bad_arg("unexpected argument '%s' (one model at a time)", a);
    }
  }
  if (!b->model) return bad_arg("%s", "no model given");
  if ((sim_alloc >= 0 || sim_free >= 0) && b->opt.device != KEEL_DEVICE_SIM)
    return bad_arg("--sim-alloc-us and --sim-free-us need --device sim (device is %s)", device_arg);
  if (sim_alloc >= 0) b->opt.sim_alloc_delay_us = sim_alloc;
  if (sim_free >= 0) b->opt.sim_free_delay_us = sim_free;
  if (b->cuda_graphs && b->opt.device != KEEL_DEVICE_CUDA)
    return bad_arg("--cuda-graphs needs --device cuda (device is %s)", device_arg);
  if (b->opt.device == KEEL_DEVICE_CUDA) {
    keel_status *ds = keel_device_check(KEEL_DEVICE_CUDA);
    if (ds) return cli_fail("cannot use --device cuda", ds);
  }
  if (sync_calls && b->opt.device != KEEL_DEVICE_CPU)
    return bad_arg("--sync is for --device cpu (a device always computes on its stream; device is %s)", device_arg);
  if (sync_calls && b->inflight > 1)
    return bad_arg("%s", "--sync computes on the calling thread: it cannot keep several calls in flight (--inflight)");
  if (sync_calls && async_calls) return bad_arg("%s", "--sync and --async contradict each other");
  if (sync_calls) b->opt.async = 0;
  /* default: the module's own (the stream for devices, the caller's thread on the CPU); several calls in
   * flight need the stream */
  if (async_calls || b->inflight > 1) b->opt.async = 1;
  if (b->opt.async < 0) b->opt.async = b->opt.device != KEEL_DEVICE_CPU;
  b->opt.max_inflight = b->inflight;
  b->progress = progress < 0 ? isatty(2) : progress;

  /* Opened now so a bad path fails before a long run, not after it. */
  FILE *json_f = NULL;
  if (json && !(json_f = fopen(json, "w"))) {
    fprintf(stderr, "keel bench: cannot write %s: %s\n", json, strerror(errno));
    return 1;
  }
  keel_status *s = keel_engine_load_file(b->model, NULL, &b->engine);
  if (s) {
    if (json_f) fclose(json_f);
    return cli_fail("cannot load model", s);
  }
  b->n_in = keel_engine_input_count(b->engine);
  b->n_out = keel_engine_output_count(b->engine);
  for (int k = 0; k < b->n_shapes; k++) {
    bool found = false;
    for (size_t i = 0; i < b->n_in && !found; i++) {
      keel_io_info info;
      if (!keel_engine_input_info(b->engine, i, &info) && !strcmp(info.name, b->shapes[k].name)) found = true;
    }
    if (!found) {
      fprintf(stderr, "keel bench: --shape names '%s', which is not an input of %s (inputs:", b->shapes[k].name,
              b->model);
      for (size_t i = 0; i < b->n_in; i++) {
        keel_io_info info;
        if (!keel_engine_input_info(b->engine, i, &info)) fprintf(stderr, " %s", info.name);
      }
      fprintf(stderr, ")\n");
      keel_engine_release(b->engine);
      if (json_f) fclose(json_f);
      return 2;
    }
  }

  b->mc_get = (mc_get_fn)dlsym(RTLD_DEFAULT, "keel_malloc_count_get");
  const char *tr = getenv("KEEL_MALLOC_TRACE");
  if (b->mc_get && tr && *tr && *tr != '0') b->mc_trace = (mc_trace_fn)dlsym(RTLD_DEFAULT, "keel_malloc_count_trace");

  /* Header: what runs, on what. */
  printf("keel bench: %s\n", b->model);
  printf("  device %s", device_name(b));
  if (b->opt.device == KEEL_DEVICE_CUDA) printf(" (CUDA graphs %s)", b->cuda_graphs ? "on" : "off");
  if (b->opt.device == KEEL_DEVICE_SIM)
    printf(" (allocation %.1f us, free %.1f us, copies %.0f GB/s)", b->opt.sim_alloc_delay_us,
           b->opt.sim_free_delay_us, b->opt.sim_copy_gbps);
  const char *env_threads = getenv("KEEL_NUM_THREADS"); /* overrides the option inside keel (threadpool.h) */
  const int kernel_threads = env_threads && atoi(env_threads) > 0 ? atoi(env_threads) : b->opt.num_threads;
  printf("%s, caller threads %d, kernel threads %d, inflight %d, warm-up %.2f s, ",
         b->opt.async ? "" : " (sync: no stream)", b->threads, kernel_threads, b->inflight, b->warmup_s);
  if (b->iterations) printf("%lld calls per mode", b->iterations);
  if (b->iterations && b->duration_given) printf(" or ");
  if (!b->iterations || b->duration_given) printf("%.2f s", b->duration_s);
  printf("\n");
  for (size_t i = 0; i < b->n_in; i++) {
    keel_io_info info;
    if (keel_engine_input_info(b->engine, i, &info)) continue;
    int64_t dims[KEEL_MAX_DIMS];
    int ndim;
    char sh[256];
    cli_input_shape(&info, b->shapes, b->n_shapes, dims, &ndim);
    printf("  input %s: %s%s\n", info.name, keel_dtype_name(info.dtype), keel_shape_format(dims, ndim, sh, sizeof sh));
  }
  if (b->n_modes > 1)
    printf("  outputs fresh, preallocated, persistent: interleaved %s, one module each over one engine\n",
           b->inflight > 1 ? "in alternating phases" : "round-robin call by call");
  printf("  libc allocation counter: %s\n", b->mc_get ? "preloaded (libkeel_malloc_count.so)" : "not preloaded");
  fflush(stdout);

  worker *ws = calloc((size_t)b->threads, sizeof *ws);
  if (!ws) {
    if (json_f) fclose(json_f);
    keel_engine_release(b->engine);
    fprintf(stderr, "keel bench: out of memory\n");
    return 1;
  }
  pthread_barrier_init(&b->barrier, NULL, (unsigned)b->threads + 1);
  int started = 0;
  for (int t = 0; t < b->threads; t++) {
    ws[t].b = b;
    ws[t].id = t;
    if (pthread_create(&ws[t].thread, NULL, worker_main, &ws[t])) break;
    started++;
  }
  int rc = 0;
  unsigned long long r0[4] = {0}, r1[4] = {0};
  uint64_t pf0 = 0, pf1 = 0;
  if (started < b->threads) {
    /* Threads that started are waiting at barrier A, which can never fill: say so and leave. */
    fprintf(stderr, "keel bench: cannot start %d caller threads\n", b->threads);
    exit(1);
  }
  pthread_barrier_wait(&b->barrier); /* A */
  pthread_barrier_wait(&b->barrier); /* B: warm */
  pf0 = page_faults();
  libc_counts(b, r0);
  b->timed_start = now_s();
  pthread_barrier_wait(&b->barrier); /* C: go */
  double last = 0;
  while (atomic_load(&b->timed_done) < b->threads) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    double el = now_s() - b->timed_start;
    if (b->progress && el - last >= 0.25) {
      show_progress(b, ws, el, false);
      last = el;
    }
  }
  libc_counts(b, r1);
  pf1 = page_faults();
  double region_s = now_s() - b->timed_start;
  pthread_barrier_wait(&b->barrier); /* D */
  for (int t = 0; t < b->threads; t++) pthread_join(ws[t].thread, NULL);
  if (b->progress) show_progress(b, ws, 0, true);
  pthread_barrier_destroy(&b->barrier);

  for (int t = 0; t < b->threads; t++)
    if (ws[t].err) {
      rc = cli_fail("benchmark failed", ws[t].err);
      ws[t].err = NULL;
    }
  if (!rc && atomic_load(&b->failed)) {
    fprintf(stderr, "keel bench: out of memory setting up the benchmark\n");
    rc = 1;
  }

  summary sm[MAX_MODES];
  size_t total = 0;
  if (!rc) {
    size_t most = 0;
    for (int mi = 0; mi < b->n_modes; mi++) {
      size_t n = 0;
      for (int t = 0; t < b->threads; t++) n += ws[t].acc[mi].n;
      if (n > most) most = n;
      total += n;
    }
    double *ml = malloc((most + 1) * sizeof *ml), *me = malloc((most + 1) * sizeof *me);
    if (!ml || !me) {
      fprintf(stderr, "keel bench: out of memory summarizing\n");
      rc = 1;
    } else {
      for (int mi = 0; mi < b->n_modes; mi++) summarize(b, ws, mi, &sm[mi], ml, me);
    }
    free(ml);
    free(me);
  }
  double region_libc = total ? (double)(r1[0] - r0[0]) / (double)total : 0;
  double region_faults = total ? (double)(pf1 - pf0) / (double)total : 0;
  if (!rc) {
    printf("\ntimed: %.2f s, %zu calls\n", region_s, total);
    printf("%-13s %8s %10s %10s | %9s %9s %9s %9s %9s %9s %9s | %9s %9s | %7s %9s %7s", "outputs", "calls", "qps",
           "qps(med)", "min ms", "mean", "median", "p90", "p95", "p99", "max", "enq mean", "enq med", "allocs", "bytes", "faults");
    if (b->mc_get) printf(" %7s", "libc");
    printf("\n");
    for (int mi = 0; mi < b->n_modes; mi++) {
      summary *m = &sm[mi];
      char c[9][24];
      double v[9] = {m->min, m->mean, m->median, m->p90, m->p95, m->p99, m->max, m->enq_mean, m->enq_median};
      for (int i = 0; i < 9; i++) fmt_ms(c[i], sizeof c[i], v[i]);
      printf("%-13s %8zu %10.1f %10.1f | %9s %9s %9s %9s %9s %9s %9s | %9s %9s | %7.3f %9.0f %7.3f", m->name,
             m->calls, m->qps, m->qps_median, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], m->allocs, m->bytes,
             m->faults_exact ? m->faults : region_faults);
      if (b->mc_get) printf(" %7.3f", m->libc_exact ? m->libc[0] : region_libc);
      printf("\n");
    }
    printf("(latency: submit to wait-return, ms; enq: time for keel_module_submit to return, ms;\n"
           " qps: calls per second of each caller's time in that mode, summed over callers; qps(med): the same from\n"
           " the median over blocks of 16 calls of the time per call (inflight 1: call + release; inflight K:\n"
           " between completions), which preemption by other processes does not skew; per call: allocs =\n"
           " system allocations keel made (keel_module_get_stats), bytes = bytes they asked for, faults = page\n"
           " faults (getrusage)%s)\n",
           b->mc_get ? ", libc = malloc-family calls in the whole process (libkeel_malloc_count.so)" : "");
    if (b->threads > 1 && b->n_modes > 1)
      printf("note: with %d caller threads the faults%s columns are process-wide over all modes together\n",
             b->threads, b->mc_get ? " and libc" : "");
    if (b->mc_get && b->threads == 1) {
      printf("libc per call (mallocs/frees/mmaps/munmaps):");
      for (int mi = 0; mi < b->n_modes; mi++)
        printf("  %s %.3f/%.3f/%.3f/%.3f", sm[mi].name, sm[mi].libc[0], sm[mi].libc[1], sm[mi].libc[2], sm[mi].libc[3]);
      printf("\n");
    }
    if (b->n_modes > 1 && sm[0].calls && sm[0].median > 0 && sm[0].qps > 0) {
      printf("relative to fresh:");
      for (int mi = 1; mi < b->n_modes; mi++)
        printf("\n  %-13s median latency %.3fx (%+.1f%%), throughput %.3fx (%+.1f%%), qps(med) %.3fx", sm[mi].name,
               sm[mi].median / sm[0].median, (sm[mi].median / sm[0].median - 1) * 100, sm[mi].qps / sm[0].qps,
               (sm[mi].qps / sm[0].qps - 1) * 100, sm[0].qps_median > 0 ? sm[mi].qps_median / sm[0].qps_median : 0);
      printf("\n");
    }
    if (b->opt.device == KEEL_DEVICE_CUDA) {
      printf("device time per call (CUDA events, warm-up included):");
      for (int mi = 0; mi < b->n_modes; mi++) {
        double h2d, comp;
        uint64_t rep, cap;
        device_means(b, ws, mi, &h2d, &comp, &rep, &cap);
        printf("\n  %-13s H2D %.4f ms, compute %.4f ms, graph replays %llu (captures %llu)", sm[mi].name, h2d, comp,
               (unsigned long long)rep, (unsigned long long)cap);
      }
      printf("\n");
    }
    if (b->opt.profile) {
      /* worker 0's first mode; warm-up calls included (their plan is the same one) */
      printf("\n%s outputs, ", sm[0].name);
      fflush(stdout);
      keel_status *ps = keel_module_write_profile(ws[0].mod[0], stdout, 40);
      if (ps) rc = cli_fail("profile", ps);
    }
    if (json_f) {
      rc = write_json(json_f, json, b, ws, sm, region_libc, region_faults, true);
      json_f = NULL;
    }
  }

  for (int t = 0; t < b->threads; t++) {
    worker *w = &ws[t];
    for (int mi = 0; mi < MAX_MODES; mi++) {
      keel_module_destroy(w->mod[mi]);
      free(w->acc[mi].lat);
      free(w->acc[mi].enq);
      free(w->acc[mi].cyc);
    }
    for (size_t i = 0; w->inputs && i < b->n_in; i++) keel_tensor_release(w->inputs[i]);
    release_outputs(w);
    free(w->inputs);
    free(w->outs);
    free(w->ring);
    free(w->ring_t0);
  }
  free(ws);
  if (json_f) fclose(json_f); /* a failed run leaves it empty */
  keel_engine_release(b->engine);
  return rc;
}
