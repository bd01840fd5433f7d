/* In-order executor thread with a fixed ring of tasks (no allocation after creation). */
#include <pthread.h>
#include <stdlib.h>

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
  uint64_t enqueued, completed; /* tickets */
  bool stopping;
  pthread_t thread;
};

static void *worker(void *p) {
  keel_stream *s = p;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    while (s->completed == s->enqueued && !s->stopping) pthread_cond_wait(&s->has_work, &s->mu);
    if (s->completed == s->enqueued && s->stopping) break;
    task t = s->ring[s->completed % (uint64_t)s->capacity];
    pthread_mutex_unlock(&s->mu);
    t.fn(t.arg);
    pthread_mutex_lock(&s->mu);
    s->completed++;
    pthread_cond_broadcast(&s->progressed);
    pthread_cond_signal(&s->has_room);
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
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
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->has_work);
    pthread_cond_destroy(&s->has_room);
    pthread_cond_destroy(&s->progressed);
    free(s->ring);
    free(s);
    return keel_error(KEEL_DEVICE_ERROR, "cannot start the stream thread (pthread_create returned %d)", rc);
  }
  *out = s;
  return NULL;
}

void keel_stream_destroy(keel_stream *s) {
  if (!s) return;
  pthread_mutex_lock(&s->mu);
  s->stopping = true;
  pthread_cond_signal(&s->has_work);
  pthread_mutex_unlock(&s->mu);
  pthread_join(s->thread, NULL);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->has_work);
  pthread_cond_destroy(&s->has_room);
  pthread_cond_destroy(&s->progressed);
  free(s->ring);
  free(s);
}

uint64_t keel_stream_enqueue(keel_stream *s, keel_task_fn fn, void *arg) {
  pthread_mutex_lock(&s->mu);
  while (s->enqueued - s->completed >= (uint64_t)s->capacity) pthread_cond_wait(&s->has_room, &s->mu);
  s->ring[s->enqueued % (uint64_t)s->capacity] = (task){fn, arg};
  uint64_t ticket = ++s->enqueued;
  pthread_cond_signal(&s->has_work);
  pthread_mutex_unlock(&s->mu);
  return ticket;
}

uint64_t keel_stream_record(keel_stream *s) {
  pthread_mutex_lock(&s->mu);
  uint64_t t = s->enqueued;
  pthread_mutex_unlock(&s->mu);
  return t;
}

void keel_stream_wait(keel_stream *s, uint64_t ticket) {
  pthread_mutex_lock(&s->mu);
  while (s->completed < ticket) pthread_cond_wait(&s->progressed, &s->mu);
  pthread_mutex_unlock(&s->mu);
}

bool keel_stream_done(keel_stream *s, uint64_t ticket) {
  pthread_mutex_lock(&s->mu);
  bool d = s->completed >= ticket;
  pthread_mutex_unlock(&s->mu);
  return d;
}

void keel_stream_synchronize(keel_stream *s) { keel_stream_wait(s, keel_stream_record(s)); }
