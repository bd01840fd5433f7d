/* Soak test: many threads share engines through keel_module_pool, mixing input shapes, output modes
 * (FRESH / PREALLOCATED / PERSISTENT), synchronous and submitted calls, and outputs released on other
 * threads. Every output is checked against keel_engine_run, and the memory held must stay bounded:
 * module bytes_held after the run may not grow past what it was after warm-up (plus slack), and the process
 * RSS may not keep growing (checked only without sanitizers, whose allocators hold memory on purpose).
 *
 * Short by default so it also runs under ThreadSanitizer in CI (4 threads x 200 calls). Environment:
 *   KEEL_SOAK_CALLS    calls per thread (default 200)
 *   KEEL_SOAK_SECONDS  run for this long instead (calls per thread ignored); scripts/soak.sh uses it
 *   KEEL_SOAK_THREADS  threads (default 4)
 * Prints a summary line with the peak memory: "soak: ... peak_bytes ... rss_peak_kib ...". */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <keel/keel.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SOAK_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SOAK_SANITIZED 1
#endif
#endif
#ifndef SOAK_SANITIZED
#define SOAK_SANITIZED 0
#endif

enum { MAX_THREADS = 64, MAX_VARIANTS = 4, N_MODELS = 3, POOL_SIZE = 2, HANDOFF = 8 };

typedef struct model {
  const char *path;
  keel_device_kind device;
  int async; /* keel_module_options.async: 1 stream, 0 caller's thread, -1 default */
  int n_variants;
  int64_t dims[MAX_VARIANTS][4];
  int ndim;
  keel_engine *engine;
  keel_module_pool *pool;
  keel_tensor *in[MAX_VARIANTS], *ref[MAX_VARIANTS];
  keel_module *mods[POOL_SIZE]; /* filled at the end, to read the stats */
} model;

/* Symbolic batch dims vary per call; elementwise_chain has a fixed shape and runs on the simulated device.
 * The CPU pools cover both execution paths: the module's stream (async 1) and the caller's thread (0). */
static model models[N_MODELS] = {
    {"engine/conv_bn_relu.onnx", KEEL_DEVICE_CPU, 1, 4, {{1, 3, 8, 8}, {2, 3, 8, 8}, {3, 3, 8, 8}, {4, 3, 8, 8}}, 4},
    {"engine/matmul_bias_relu.onnx", KEEL_DEVICE_CPU, 0, 3, {{1, 16}, {5, 16}, {32, 16}}, 2},
    {"engine/elementwise_chain.onnx", KEEL_DEVICE_SIM, -1, 1, {{64, 1024}}, 2},
};

static atomic_int failures;
static atomic_long total_calls, async_calls;
static long calls_per_thread = 200;
static double run_seconds = 0;
static struct timespec t_start;

/* Outputs handed from thread to thread, released by whoever takes them (into the producing module's pool). */
static pthread_mutex_t handoff_mu = PTHREAD_MUTEX_INITIALIZER;
static keel_tensor *handoff[HANDOFF];
static int n_handoff;

#define FAIL(...)                                  \
  do {                                             \
    fprintf(stderr, "soak: FAIL: " __VA_ARGS__);   \
    fprintf(stderr, "\n");                         \
    atomic_fetch_add(&failures, 1);                \
  } while (0)

static double elapsed(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)(t.tv_sec - t_start.tv_sec) + 1e-9 * (double)(t.tv_nsec - t_start.tv_nsec);
}

static long rss_kib(const char *field) { /* VmRSS or VmHWM from /proc/self/status; -1 if unknown */
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  long v = -1;
  size_t n = strlen(field);
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, field, n) && line[n] == ':') v = strtol(line + n + 1, NULL, 10);
  fclose(f);
  return v;
}

static uint64_t rng_next(uint64_t *s) { /* xorshift64* */
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 2685821657736338717ull;
}

static bool same(const keel_tensor *a, const keel_tensor *b) {
  return a && b && keel_tensor_ndim(a) == keel_tensor_ndim(b) &&
         !memcmp(keel_tensor_dims(a), keel_tensor_dims(b), sizeof(int64_t) * (size_t)keel_tensor_ndim(a)) &&
         keel_tensor_nbytes(a) == keel_tensor_nbytes(b) &&
         !memcmp(keel_tensor_data_const(a), keel_tensor_data_const(b), keel_tensor_nbytes(a));
}

static void give_away(keel_tensor *y) {
  keel_tensor *other = NULL;
  pthread_mutex_lock(&handoff_mu);
  if (n_handoff == HANDOFF) { /* full: take the oldest, most likely made by another thread */
    other = handoff[0];
    memmove(handoff, handoff + 1, sizeof handoff[0] * (HANDOFF - 1));
    n_handoff--;
  }
  handoff[n_handoff++] = y;
  pthread_mutex_unlock(&handoff_mu);
  keel_tensor_release(other);
}

/* One checked call: forward, or up to two submitted calls waited in order. */
static void one_call(int tid, uint64_t *rng) {
  model *md = &models[rng_next(rng) % N_MODELS];
  keel_output_mode mode = (keel_output_mode)(rng_next(rng) % 3);
  bool async = rng_next(rng) % 4 == 0;
  /* PERSISTENT outputs are overwritten by the next submit, so only one PERSISTENT call is in flight. */
  int n_sub = async ? (mode == KEEL_OUTPUTS_PERSISTENT ? 1 : 1 + (int)(rng_next(rng) % 2)) : 0;
  int var[2] = {(int)(rng_next(rng) % (uint64_t)md->n_variants), (int)(rng_next(rng) % (uint64_t)md->n_variants)};

  keel_module *m = keel_module_pool_acquire(md->pool);
  keel_status *s = keel_module_set_output_mode(m, mode);
  keel_tensor *y[2] = {NULL, NULL};
  if (s) {
    FAIL("thread %d: set_output_mode: %s", tid, keel_status_message(s));
    keel_status_free(s);
    keel_module_pool_release(md->pool, m);
    return;
  }
  if (!async) {
    s = keel_module_forward(m, &md->in[var[0]], 1, &y[0], 1);
    if (s) FAIL("thread %d: %s forward: %s", tid, md->path, keel_status_message(s));
    keel_status_free(s);
    n_sub = 1;
  } else {
    keel_call *c[2] = {NULL, NULL};
    for (int k = 0; k < n_sub; k++) {
      s = keel_module_submit(m, &md->in[var[k]], 1, &c[k]);
      if (s) FAIL("thread %d: %s submit: %s", tid, md->path, keel_status_message(s));
      keel_status_free(s);
    }
    for (int k = 0; k < n_sub; k++) {
      if (!c[k]) continue;
      s = keel_call_wait(c[k], &y[k], 1);
      if (s) FAIL("thread %d: %s wait: %s", tid, md->path, keel_status_message(s));
      keel_status_free(s);
    }
    atomic_fetch_add(&async_calls, n_sub);
  }
  for (int k = 0; k < n_sub; k++) {
    if (y[k] && !same(y[k], md->ref[var[k]]))
      FAIL("thread %d: %s mode %d %s: output differs from keel_engine_run", tid, md->path, (int)mode,
           async ? "submitted" : "forward");
  }
  /* Borrowed PERSISTENT outputs are checked above, before the module can be reused, and released here. */
  keel_module_pool_release(md->pool, m);
  for (int k = 0; k < n_sub; k++) {
    if (!y[k]) continue;
    if (mode != KEEL_OUTPUTS_PERSISTENT && rng_next(rng) % 2) give_away(y[k]);
    else keel_tensor_release(y[k]);
  }
  atomic_fetch_add(&total_calls, n_sub);
}

static bool keep_going(long i) {
  if (run_seconds > 0) return elapsed() < run_seconds;
  return i < calls_per_thread;
}

static void *worker(void *arg) {
  int tid = (int)(intptr_t)arg;
  uint64_t rng = 0x9e3779b97f4a7c15ull * (uint64_t)(tid + 1);
  for (long i = 0; keep_going(i); i++) one_call(tid, &rng);
  return NULL;
}

/* Sum of bytes_held and max of peak_bytes over every module of every pool. */
static void pool_stats(uint64_t *held, uint64_t *peak, uint64_t *calls, bool trim) {
  *held = *peak = *calls = 0;
  for (int k = 0; k < N_MODELS; k++) {
    model *md = &models[k];
    for (int j = 0; j < POOL_SIZE; j++) md->mods[j] = keel_module_pool_acquire(md->pool);
    for (int j = 0; j < POOL_SIZE; j++) {
      if (trim) keel_module_trim(md->mods[j]);
      keel_module_stats st;
      keel_module_get_stats(md->mods[j], &st);
      *held += st.bytes_held;
      if (st.peak_bytes > *peak) *peak = st.peak_bytes;
      *calls += st.calls;
    }
    for (int j = 0; j < POOL_SIZE; j++) keel_module_pool_release(md->pool, md->mods[j]);
  }
}

static void run_threads(int n_threads) {
  pthread_t th[MAX_THREADS];
  for (int t = 0; t < n_threads; t++)
    if (pthread_create(&th[t], NULL, worker, (void *)(intptr_t)t)) {
      FAIL("pthread_create");
      n_threads = t;
      break;
    }
  for (int t = 0; t < n_threads; t++) pthread_join(th[t], NULL);
}

static void drain_handoff(void) {
  pthread_mutex_lock(&handoff_mu);
  for (int i = 0; i < n_handoff; i++) keel_tensor_release(handoff[i]);
  n_handoff = 0;
  pthread_mutex_unlock(&handoff_mu);
}

int main(void) {
  int n_threads = 4;
  const char *e;
  if ((e = getenv("KEEL_SOAK_CALLS")) && atol(e) > 0) calls_per_thread = atol(e);
  if ((e = getenv("KEEL_SOAK_SECONDS")) && atof(e) > 0) run_seconds = atof(e);
  if ((e = getenv("KEEL_SOAK_THREADS")) && atoi(e) > 0) n_threads = atoi(e) > MAX_THREADS ? MAX_THREADS : atoi(e);

  for (int k = 0; k < N_MODELS; k++) {
    model *md = &models[k];
    keel_status *s = keel_engine_load_file(md->path, NULL, &md->engine);
    if (s) {
      fprintf(stderr, "soak: cannot load %s: %s\n", md->path, keel_status_message(s));
      return 1;
    }
    for (int v = 0; v < md->n_variants; v++) {
      s = keel_tensor_create(KEEL_FLOAT32, md->dims[v], md->ndim, NULL, &md->in[v]);
      if (!s) {
        float *p = keel_tensor_data(md->in[v]);
        for (int64_t i = 0; i < keel_tensor_numel(md->in[v]); i++) p[i] = sinf((float)i * 0.37f + (float)v);
        s = keel_engine_run(md->engine, &md->in[v], 1, &md->ref[v], 1);
      }
      if (s) {
        fprintf(stderr, "soak: reference for %s variant %d: %s\n", md->path, v, keel_status_message(s));
        return 1;
      }
    }
    keel_module_options o;
    keel_module_options_init(&o);
    o.device = md->device;
    if (md->async >= 0) o.async = md->async;
    if (md->device == KEEL_DEVICE_SIM) o.sim_alloc_delay_us = o.sim_free_delay_us = 1; /* keep it quick */
    s = keel_module_pool_create(md->engine, POOL_SIZE, &o, &md->pool);
    if (s) {
      fprintf(stderr, "soak: pool for %s: %s\n", md->path, keel_status_message(s));
      return 1;
    }
  }

  clock_gettime(CLOCK_MONOTONIC, &t_start);
  /* Warm-up: every shape, mode and plan once, so the steady state is what the main phase measures. */
  long saved_calls = calls_per_thread;
  double saved_seconds = run_seconds;
  calls_per_thread = 30;
  run_seconds = 0;
  run_threads(n_threads);
  calls_per_thread = saved_calls;
  run_seconds = saved_seconds;
  drain_handoff();
  uint64_t warm_held, warm_peak, warm_calls;
  pool_stats(&warm_held, &warm_peak, &warm_calls, false);
  long warm_rss = rss_kib("VmRSS");
  atomic_store(&total_calls, 0);
  atomic_store(&async_calls, 0);

  clock_gettime(CLOCK_MONOTONIC, &t_start);
  run_threads(n_threads);
  double secs = elapsed();
  drain_handoff();
  uint64_t held, peak, calls;
  pool_stats(&held, &peak, &calls, false);
  long rss = rss_kib("VmRSS"), hwm = rss_kib("VmHWM");

  /* Bounded: what the modules hold after thousands of calls is what they held after warm-up, give or take
   * the idle pool's churn (a few output buffers of the largest shapes). */
  const uint64_t slack = (uint64_t)4 << 20;
  if (held > 2 * warm_held + slack)
    FAIL("modules hold %llu bytes after the run, %llu after warm-up: memory grows with calls",
         (unsigned long long)held, (unsigned long long)warm_held);
  if (peak > (uint64_t)256 << 20) FAIL("module peak_bytes %llu is implausibly large", (unsigned long long)peak);
  if (!SOAK_SANITIZED && warm_rss > 0 && rss > warm_rss + 64 * 1024)
    FAIL("process RSS grew from %ld KiB after warm-up to %ld KiB", warm_rss, rss);
  if ((long)calls != atomic_load(&total_calls) + (long)warm_calls)
    FAIL("module stats count %llu calls, the threads made %ld", (unsigned long long)calls,
         atomic_load(&total_calls) + (long)warm_calls);

  uint64_t trimmed_held, p2, c2;
  pool_stats(&trimmed_held, &p2, &c2, true);
  if (trimmed_held > held) FAIL("trim raised bytes_held from %llu to %llu", (unsigned long long)held,
                                (unsigned long long)trimmed_held);

  printf("soak: %d threads, %ld calls (%ld submitted) in %.1f s (%.0f calls/s); modules: bytes_held %llu "
         "(after warm-up %llu, after trim %llu), peak_bytes %llu; process rss %ld KiB (after warm-up %ld), "
         "rss_peak_kib %ld%s; failures %d\n",
         n_threads, atomic_load(&total_calls), atomic_load(&async_calls), secs,
         secs > 0 ? (double)atomic_load(&total_calls) / secs : 0.0, (unsigned long long)held,
         (unsigned long long)warm_held, (unsigned long long)trimmed_held, (unsigned long long)peak, rss, warm_rss,
         hwm, SOAK_SANITIZED ? " (sanitized: RSS not checked)" : "", atomic_load(&failures));

  for (int k = 0; k < N_MODELS; k++) {
    model *md = &models[k];
    keel_module_pool_destroy(md->pool);
    for (int v = 0; v < md->n_variants; v++) {
      keel_tensor_release(md->in[v]);
      keel_tensor_release(md->ref[v]);
    }
    keel_engine_release(md->engine);
  }
  return atomic_load(&failures) ? 1 : 0;
}
