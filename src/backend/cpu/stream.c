/* In-order executor thread with a fixed ring of tasks (no allocation after creation).
 *
 * Waking a sleeping thread through a condition variable costs 10-50 us, more than a small model's whole
 * compute. So both sides spin briefly on atomic counters before sleeping: the worker for new work after
 * finishing a task, the waiter for completion. Spinning is bounded (SPIN_NS), so idle streams sleep. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "backend/cpu/stream.h"
#include "core/error.h"

typedef struct {
  keel_task_fn fn;
  void *arg;
} task;

struct keel_stream {
  pthread_mutex_t mu;
  pthread_cond_t has_work, has_room, progressed;
  task *ring;
  int capacity;
  /* tickets; written under mu, read without it while spinning */
  _Atomic uint64_t enqueued, completed;
  atomic_bool stopping;
  atomic_int sleepers; /* threads blocked (or about to block) on a condition variable */
  pthread_t thread;
};

/* The waiter spins longer than the worker: a caller waiting for its result is about to get it, while an idle
 * worker spinning for the next call would steal a core from whoever runs meanwhile. */
#define WAIT_SPIN_NS 50000 /* 50 us */
#define WORKER_SPIN_NS 20000 /* 20 us */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

/* Spin until cond holds or ns nanoseconds pass; evaluates to whether it held. */
#define SPIN_UNTIL(cond, ns)                                     \
  ({                                                             \
    bool ok_ = (cond);                                           \
    uint64_t until_ = ok_ ? 0 : now_ns() + (ns);                 \
    for (int i_ = 0; !ok_; i_++) {                               \
      cpu_relax();                                               \
      ok_ = (cond);                                              \
      if (!ok_ && (i_ & 63) == 63 && now_ns() > until_) break;   \
    }                                                            \
    ok_;                                                         \
  })

static void *worker(void *p) {
  keel_stream *s = p;
  for (;;) {
    if (!SPIN_UNTIL(atomic_load(&s->completed) != atomic_load(&s->enqueued) || atomic_load(&s->stopping), WORKER_SPIN_NS)) {
      pthread_mutex_lock(&s->mu);
      atomic_fetch_add(&s->sleepers, 1);
      while (atomic_load(&s->completed) == atomic_load(&s->enqueued) && !atomic_load(&s->stopping))
        pthread_cond_wait(&s->has_work, &s->mu);
      atomic_fetch_sub(&s->sleepers, 1);
      pthread_mutex_unlock(&s->mu);
    }
    uint64_t c = atomic_load(&s->completed);
    if (c == atomic_load(&s->enqueued)) {
      if (atomic_load(&s->stopping)) break;
      continue;
    }
    pthread_mutex_lock(&s->mu);
    task t = s->ring[c % (uint64_t)s->capacity];
    pthread_mutex_unlock(&s->mu);
    t.fn(t.arg);
    pthread_mutex_lock(&s->mu);
    atomic_store(&s->completed, c + 1);
    if (atomic_load(&s->sleepers)) {
      pthread_cond_broadcast(&s->progressed);
      pthread_cond_signal(&s->has_room);
    }
    pthread_mutex_unlock(&s->mu);
  }
  return NULL;
}

static void free_stream(keel_stream *s) {
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->has_work);
  pthread_cond_destroy(&s->has_room);
  pthread_cond_destroy(&s->progressed);
  free(s->ring);
  free(s);
}

keel_status *keel_stream_create(int capacity, keel_stream **out) {
  *out = NULL;
  keel_stream *s = calloc(1, sizeof *s);
  if (!s) return keel_error(KEEL_OUT_OF_MEMORY, "out of memory creating a stream");
  s->capacity = capacity > 0 ? capacity : 16;
  s->ring = calloc((size_t)s->capacity, sizeof *s->ring);
  if (!s->ring) {
    free(s);
    return keel_error(KEEL_OUT_OF_MEMORY, "out of memory creating a stream");
  }
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->has_work, NULL);
  pthread_cond_init(&s->has_room, NULL);
  pthread_cond_init(&s->progressed, NULL);
  int rc = pthread_create(&s->thread, NULL, worker, s);
  if (rc) {
    free_stream(s);
    return keel_error(KEEL_DEVICE_ERROR, "cannot start the stream thread (pthread_create returned %d)", rc);
  }
  *out = s;
  return NULL;
}

void keel_stream_destroy(keel_stream *s) {
  if (!s) return;
  pthread_mutex_lock(&s->mu);
  atomic_store(&s->stopping, true);
  pthread_cond_signal(&s->has_work);
  pthread_mutex_unlock(&s->mu);
  pthread_join(s->thread, NULL);
  free_stream(s);
}

uint64_t keel_stream_enqueue(keel_stream *s, keel_task_fn fn, void *arg) {
  pthread_mutex_lock(&s->mu);
  if (atomic_load(&s->enqueued) - atomic_load(&s->completed) >= (uint64_t)s->capacity) {
    atomic_fetch_add(&s->sleepers, 1);
    while (atomic_load(&s->enqueued) - atomic_load(&s->completed) >= (uint64_t)s->capacity)
      pthread_cond_wait(&s->has_room, &s->mu);
    atomic_fetch_sub(&s->sleepers, 1);
  }
  uint64_t e = atomic_load(&s->enqueued);
  s->ring[e % (uint64_t)s->capacity] = (task){fn, arg};
  atomic_store(&s->enqueued, e + 1);
  pthread_cond_signal(&s->has_work);
  pthread_mutex_unlock(&s->mu);
  return e + 1;
}

uint64_t keel_stream_record(keel_stream *s) { return atomic_load(&s->enqueued); }

void keel_stream_wait(keel_stream *s, uint64_t ticket) {
  if (SPIN_UNTIL(atomic_load(&s->completed) >= ticket, WAIT_SPIN_NS)) return;
  pthread_mutex_lock(&s->mu);
  atomic_fetch_add(&s->sleepers, 1);
  while (atomic_load(&s->completed) < ticket) pthread_cond_wait(&s->progressed, &s->mu);
  atomic_fetch_sub(&s->sleepers, 1);
  pthread_mutex_unlock(&s->mu);
}

bool keel_stream_done(keel_stream *s, uint64_t ticket) { return atomic_load(&s->completed) >= ticket; }

void keel_stream_synchronize(keel_stream *s) { keel_stream_wait(s, keel_stream_record(s)); }
