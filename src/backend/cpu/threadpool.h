/* keel's own small thread pool for splitting one kernel over cores (GEMM blocks for now).
 *
 * One process-wide pool, created on first use and grown to the largest thread count asked for. Workers spin
 * briefly after a job (the next kernel usually follows within microseconds), then sleep on a condition
 * variable. One job at a time: a caller that finds the pool busy (another module on another thread) runs its
 * job alone on its own thread instead of waiting. Each worker owns a scratch buffer of
 * KEEL_POOL_SCRATCH_BYTES, allocated once when it starts, so kernels never allocate per call. */
#ifndef KEEL_BACKEND_CPU_THREADPOOL_H
#define KEEL_BACKEND_CPU_THREADPOOL_H

#include <stddef.h>

#define KEEL_POOL_MAX_THREADS 64
#define KEEL_POOL_SCRATCH_BYTES ((size_t)3 << 20)

/* fn(ctx, tid, nt, scratch) runs exactly once for every tid in [0, nt), on whichever thread claims it
 * first: usually tid 0 on the caller and the others on workers, but the caller also runs the tids of
 * workers that were not scheduled in time (a busy machine), one after the other. scratch is the running
 * thread's buffer: NULL on the caller (it uses its own workspace), else the worker's
 * (KEEL_POOL_SCRATCH_BYTES, 64-byte aligned). */
typedef void (*keel_pool_fn)(void *ctx, int tid, int nt, void *scratch);

/* Run fn for tids [0, nt) and return when all are done. Returns nt (1 when the pool is busy, cannot start
 * threads, or nt <= 1: then fn(ctx, 0, 1, NULL) ran on the caller). */
int keel_parallel_run(int nt, keel_pool_fn fn, void *ctx);

/* Threads a kernel should use: the KEEL_NUM_THREADS environment variable when set (a positive integer; for
 * tools that cannot set the module option), else `requested` (keel_exec.num_threads), at least 1. */
int keel_threads_effective(int requested);

/* Helpers for kernels that split a loop (additive; header-only). */
#include <stdint.h>

/* How many of nt threads to use for `work` units when each thread should get at least `min_per_thread`
 * (waking the pool costs microseconds, so tiny operators stay on the caller). */
static inline int keel_threads_for(int nt, double work, double min_per_thread) {
  if (nt < 1) nt = 1;
  const double k = work / min_per_thread;
  if (k < (double)nt) nt = k < 1.0 ? 1 : (int)k;
  return nt;
}

/* [*b, *e): thread tid's share of [0, n) out of nt, boundaries on multiples of `align` (>= 1; e.g. 16
 * floats so that two threads never write the same cache line). */
static inline void keel_split_range(int64_t n, int tid, int nt, int64_t align, int64_t *b, int64_t *e) {
  const int64_t units = (n + align - 1) / align;
  const int64_t u0 = units * tid / nt, u1 = units * (tid + 1) / nt;
  *b = u0 * align < n ? u0 * align : n;
  *e = u1 * align < n ? u1 * align : n;
}

#endif
