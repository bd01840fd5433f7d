/* An in-order executor: the CPU's "stream". Tasks run one after another on a dedicated thread, in the
 * order they were enqueued. An event is a ticket: the number of tasks enqueued so far; waiting on it
 * blocks until that many have completed (CUDA's record/wait on one stream, without allocation). */
#ifndef KEEL_BACKEND_CPU_STREAM_H
#define KEEL_BACKEND_CPU_STREAM_H

#include <stdbool.h>
#include <stdint.h>

#include <keel/status.h>

typedef struct keel_stream keel_stream;
typedef void (*keel_task_fn)(void *arg);

/* capacity: tasks that may be queued at once (enqueue blocks when full). */
keel_status *keel_stream_create(int capacity, keel_stream **out);
void keel_stream_destroy(keel_stream *s); /* runs what is queued, then joins the thread */

/* Queue fn(arg); returns the ticket that completes with it. Never allocates. */
uint64_t keel_stream_enqueue(keel_stream *s, keel_task_fn fn, void *arg);
/* The ticket of everything enqueued so far. */
uint64_t keel_stream_record(keel_stream *s);
void keel_stream_wait(keel_stream *s, uint64_t ticket);
bool keel_stream_done(keel_stream *s, uint64_t ticket);
void keel_stream_synchronize(keel_stream *s);

#endif
