/* Peak fp32 FLOP/s of this machine: tight loops of independent fused multiply-adds, on one core and on
 * every core at once (one thread per online CPU). Used by bench/compare_ort.py as the roofline that a
 * model's achieved GFLOP/s is compared against.
 *
 *   cc -O2 -march=native -pthread bench/peak_flops.c -o /tmp/peak_flops && /tmp/peak_flops [seconds]
 *
 * Prints one line per instruction set it was compiled for:
 *   isa=avx2_fma single_core_gflops=... all_core_gflops=... threads=N
 *   isa=avx512f  single_core_gflops=... all_core_gflops=... threads=N   (when built with AVX-512)
 *
 * Twelve independent accumulators per loop cover the FMA latency (4-5 cycles) times the number of FMA
 * pipes (2) on current x86 cores, so the loop is bound by FMA throughput, not latency. */
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#if !defined(__FMA__) || !defined(__AVX2__)
#error "compile with -march=native on a CPU with AVX2 and FMA (or -mavx2 -mfma)"
#endif

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Returns FLOPs done; the result is stored into *sink so the compiler keeps the work. */
static double fma256(long iters, float *sink) {
  __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  __m256 c0 = _mm256_set1_ps(0.0f), c1 = _mm256_set1_ps(0.1f), c2 = _mm256_set1_ps(0.2f), c3 = _mm256_set1_ps(0.3f);
  __m256 c4 = _mm256_set1_ps(0.4f), c5 = _mm256_set1_ps(0.5f), c6 = _mm256_set1_ps(0.6f), c7 = _mm256_set1_ps(0.7f);
  __m256 c8 = _mm256_set1_ps(0.8f), c9 = _mm256_set1_ps(0.9f), c10 = _mm256_set1_ps(1.0f), c11 = _mm256_set1_ps(1.1f);
  for (long i = 0; i < iters; i++) {
    c0 = _mm256_fmadd_ps(c0, a, b); c1 = _mm256_fmadd_ps(c1, a, b); c2 = _mm256_fmadd_ps(c2, a, b);
    c3 = _mm256_fmadd_ps(c3, a, b); c4 = _mm256_fmadd_ps(c4, a, b); c5 = _mm256_fmadd_ps(c5, a, b);
    c6 = _mm256_fmadd_ps(c6, a, b); c7 = _mm256_fmadd_ps(c7, a, b); c8 = _mm256_fmadd_ps(c8, a, b);
    c9 = _mm256_fmadd_ps(c9, a, b); c10 = _mm256_fmadd_ps(c10, a, b); c11 = _mm256_fmadd_ps(c11, a, b);
  }
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                           _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)));
  s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
  float out[8];
  _mm256_storeu_ps(out, s);
  *sink = out[0] + out[7];
  return (double)iters * 12 * 8 * 2;
}

#ifdef __AVX512F__
static double fma512(long iters, float *sink) {
  __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  __m512 c0 = _mm512_set1_ps(0.0f), c1 = _mm512_set1_ps(0.1f), c2 = _mm512_set1_ps(0.2f), c3 = _mm512_set1_ps(0.3f);
  __m512 c4 = _mm512_set1_ps(0.4f), c5 = _mm512_set1_ps(0.5f), c6 = _mm512_set1_ps(0.6f), c7 = _mm512_set1_ps(0.7f);
  __m512 c8 = _mm512_set1_ps(0.8f), c9 = _mm512_set1_ps(0.9f), c10 = _mm512_set1_ps(1.0f), c11 = _mm512_set1_ps(1.1f);
  for (long i = 0; i < iters; i++) {
    c0 = _mm512_fmadd_ps(c0, a, b); c1 = _mm512_fmadd_ps(c1, a, b); c2 = _mm512_fmadd_ps(c2, a, b);
    c3 = _mm512_fmadd_ps(c3, a, b); c4 = _mm512_fmadd_ps(c4, a, b); c5 = _mm512_fmadd_ps(c5, a, b);
    c6 = _mm512_fmadd_ps(c6, a, b); c7 = _mm512_fmadd_ps(c7, a, b); c8 = _mm512_fmadd_ps(c8, a, b);
    c9 = _mm512_fmadd_ps(c9, a, b); c10 = _mm512_fmadd_ps(c10, a, b); c11 = _mm512_fmadd_ps(c11, a, b);
  }
  __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                           _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
  s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)));
  *sink = _mm512_reduce_add_ps(s);
  return (double)iters * 12 * 16 * 2;
}
#endif

typedef double (*kernel_fn)(long, float *);

typedef struct job {
  kernel_fn fn;
  long iters;
  double flops, seconds;
  float sink;
  pthread_barrier_t *start;
} job;

static void *run_job(void *arg) {
  job *j = arg;
  if (j->start) pthread_barrier_wait(j->start);
  double t0 = now_s();
  j->flops = j->fn(j->iters, &j->sink);
  j->seconds = now_s() - t0;
  return NULL;
}

/* Iterations that take about `seconds` on one core (calibrated by doubling). */
static long calibrate(kernel_fn fn, double seconds) {
  long iters = 1 << 16;
  for (;;) {
    job j = {fn, iters, 0, 0, 0, NULL};
    run_job(&j);
    if (j.seconds > 0.05) return (long)((double)iters * seconds / j.seconds) + 1;
    iters *= 2;
  }
}

/* Best of three repetitions: the peak is what the hardware can do, not what a busy VM lets us have. */
static double single_core(kernel_fn fn, long iters) {
  double best = 0;
  for (int r = 0; r < 3; r++) {
    job j = {fn, iters, 0, 0, 0, NULL};
    run_job(&j);
    double g = j.flops / j.seconds * 1e-9;
    if (g > best) best = g;
  }
  return best;
}

/* All threads start together; FLOP/s = total FLOPs / the slowest thread's time. */
static double all_core(kernel_fn fn, long iters, int nthreads) {
  double best = 0;
  job *jobs = calloc((size_t)nthreads, sizeof *jobs);
  pthread_t *tids = calloc((size_t)nthreads, sizeof *tids);
  if (!jobs || !tids) {
    fprintf(stderr, "peak_flops: out of memory\n");
    exit(1);
  }
  for (int r = 0; r < 3; r++) {
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)nthreads);
    for (int t = 0; t < nthreads; t++) {
      jobs[t] = (job){fn, iters, 0, 0, 0, &bar};
      if (pthread_create(&tids[t], NULL, run_job, &jobs[t])) {
        fprintf(stderr, "peak_flops: pthread_create failed\n");
        exit(1);
      }
    }
    double flops = 0, slowest = 0;
    for (int t = 0; t < nthreads; t++) {
      pthread_join(tids[t], NULL);
      flops += jobs[t].flops;
      if (jobs[t].seconds > slowest) slowest = jobs[t].seconds;
    }
    pthread_barrier_destroy(&bar);
    double g = flops / slowest * 1e-9;
    if (g > best) best = g;
  }
  free(jobs);
  free(tids);
  return best;
}

static void measure(const char *isa, kernel_fn fn, double seconds, int nthreads) {
  long iters = calibrate(fn, seconds);
  double one = single_core(fn, iters);
  double all = all_core(fn, iters, nthreads);
  printf("isa=%s single_core_gflops=%.1f all_core_gflops=%.1f threads=%d\n", isa, one, all, nthreads);
  fflush(stdout);
}

int main(int argc, char **argv) {
  double seconds = argc > 1 ? atof(argv[1]) : 0.3;
  if (!(seconds > 0) || seconds > 60) {
    fprintf(stderr, "usage: peak_flops [seconds per repetition, default 0.3]\n");
    return 2;
  }
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  int nthreads = n > 0 && n < 4096 ? (int)n : 1;
  measure("avx2_fma", fma256, seconds, nthreads);
#ifdef __AVX512F__
  measure("avx512f", fma512, seconds, nthreads);
#endif
  return 0;
}
