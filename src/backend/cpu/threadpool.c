/* The shared thread pool (threadpool.h). A job is published under the mutex with a new generation number;
 * workers that are spinning see the generation change, sleeping ones are woken by the condition variable.
 * A worker joins the job (a CAS on `join`: generation, closed bit, active count) before touching it, then
 * claims thread indices (tids) from a counter until none is left; the caller claims them too. When no tid
 * is left the caller closes the job and waits only for the workers that joined: on a busy machine a
 * worker that was not scheduled in time is not waited for, the caller ran its share instead. */
#define _GNU_SOURCE
#include "backend/cpu/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Spin iterations (each a pause) before a worker sleeps: tens of microseconds on current x86, longer than
 * the gap between two GEMMs in a network, far shorter than a scheduler tick. */
#define POOL_SPIN 10000

typedef struct worker {
  pthread_t thread;
  int index; /* 1.. (0 is the caller) */
  void *scratch;
  uint64_t start_word; /* the job word when it was created: jobs after it are new */
} worker;

static struct {
  pthread_mutex_t mu;
  pthread_cond_t wake;
  atomic_flag busy; /* one job at a time */
  int n_workers;
  worker workers[KEEL_POOL_MAX_THREADS];
  /* The current job: generation << 8 | thread count in one word, so a worker that wakes late never pairs
   * one job's generation with another's thread count (fn / ctx are stable while it is a participant). */
  _Atomic uint64_t word;
  keel_pool_fn fn;
  void *ctx;
  /* (generation & 0xffffffff) << 32 | JOIN_CLOSED | workers inside fn */
  _Atomic uint64_t join;
  atomic_int next_tid; /* the next tid to claim */
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .busy = ATOMIC_FLAG_INIT};

#define JOIN_CLOSED ((uint64_t)1 << 31)
#define JOIN_ACTIVE ((uint64_t)0x7fffffff)

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

static void *worker_main(void *arg) {
  worker *w = arg;
  uint64_t seen = w->start_word;
  for (;;) {
    uint64_t word;
    int spins = 0;
    while ((word = atomic_load_explicit(&pool.word, memory_order_acquire)) == seen && spins < POOL_SPIN) {
      cpu_relax();
      spins++;
    }
    if (word == seen) {
      pthread_mutex_lock(&pool.mu);
      while ((word = atomic_load_explicit(&pool.word, memory_order_acquire)) == seen)
        pthread_cond_wait(&pool.wake, &pool.mu);
      pthread_mutex_unlock(&pool.mu);
    }
    seen = word;
    const int nt = (int)(word & 0xff);
    const uint64_t gen = (word >> 8) & 0xffffffff;
    /* A job with fewer threads than workers leaves the rest idle. */
    if (w->index < nt) {
      uint64_t j = atomic_load_explicit(&pool.join, memory_order_acquire);
      bool joined = false;
      while ((j >> 32) == gen && !(j & JOIN_CLOSED))
        if (atomic_compare_exchange_weak_explicit(&pool.join, &j, j + 1, memory_order_acq_rel, memory_order_acquire)) {
          joined = true;
          break;
        }
      if (joined) {
        for (int t; (t = atomic_fetch_add_explicit(&pool.next_tid, 1, memory_order_acq_rel)) < nt;)
          pool.fn(pool.ctx, t, nt, w->scratch);
        atomic_fetch_sub_explicit(&pool.join, 1, memory_order_release);
      }
    }
  }
  return NULL;
}

/* Grow the pool to `want` workers (caller holds `busy`). Returns how many exist. */
static int grow(int want) {
  if (want > KEEL_POOL_MAX_THREADS - 1) want = KEEL_POOL_MAX_THREADS - 1;
  while (pool.n_workers < want) {
    worker *w = &pool.workers[pool.n_workers];
    w->index = pool.n_workers + 1;
    w->scratch = aligned_alloc(64, KEEL_POOL_SCRATCH_BYTES);
    w->start_word = atomic_load_explicit(&pool.word, memory_order_relaxed);
    if (!w->scratch) break;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&w->thread, &attr, worker_main, w);
    pthread_attr_destroy(&attr);
    if (rc) {
      free(w->scratch);
      w->scratch = NULL;
      break;
    }
    pool.n_workers++;
  }
  return pool.n_workers;
}

int keel_parallel_run(int nt, keel_pool_fn fn, void *ctx) {
  if (nt > KEEL_POOL_MAX_THREADS) nt = KEEL_POOL_MAX_THREADS;
  if (nt <= 1 || atomic_flag_test_and_set_explicit(&pool.busy, memory_order_acquire)) {
    fn(ctx, 0, 1, NULL);
    return 1;
  }
  int have = grow(nt - 1);
  if (nt > have + 1) nt = have + 1;
  if (nt <= 1) {
    atomic_flag_clear_explicit(&pool.busy, memory_order_release);
    fn(ctx, 0, 1, NULL);
    return 1;
  }
  pool.fn = fn;
  pool.ctx = ctx;
  pthread_mutex_lock(&pool.mu);
  uint64_t gen = (atomic_load_explicit(&pool.word, memory_order_relaxed) >> 8) + 1;
  atomic_store_explicit(&pool.join, (gen & 0xffffffff) << 32, memory_order_relaxed);
  atomic_store_explicit(&pool.next_tid, 0, memory_order_relaxed);
  atomic_store_explicit(&pool.word, gen << 8 | (uint64_t)nt, memory_order_release);
  pthread_cond_broadcast(&pool.wake);
  pthread_mutex_unlock(&pool.mu);
  for (int t; (t = atomic_fetch_add_explicit(&pool.next_tid, 1, memory_order_acq_rel)) < nt;) fn(ctx, t, nt, NULL);
  /* Every tid is taken: close the job (late workers stay out) and wait for those inside. */
  atomic_fetch_or_explicit(&pool.join, JOIN_CLOSED, memory_order_acq_rel);
  for (int spins = 0; atomic_load_explicit(&pool.join, memory_order_acquire) & JOIN_ACTIVE; spins++) {
    cpu_relax();
    if ((spins & 1023) == 1023) sched_yield(); /* a preempted worker on a busy machine */
  }
  atomic_flag_clear_explicit(&pool.busy, memory_order_release);
  return nt;
}

int keel_threads_effective(int requested) {
  static atomic_int env = -1; /* -1 not read yet, 0 unset */
  int e = atomic_load_explicit(&env, memory_order_relaxed);
  if (e < 0) {
    const char *s = getenv("KEEL_NUM_THREADS");
    e = s ? atoi(s) : 0;
    if (e < 0) e = 0;
    if (e > KEEL_POOL_MAX_THREADS) e = KEEL_POOL_MAX_THREADS;
    atomic_store_explicit(&env, e, memory_order_relaxed);
  }
  int t = e > 0 ? e : requested;
  return t < 1 ? 1 : t;
}
