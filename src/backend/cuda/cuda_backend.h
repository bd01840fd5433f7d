/* The CUDA backend as the runtime sees it: no CUDA types cross this header (streams are void *), so the
 * runtime compiles the same with or without the toolkit. Everything here exists only when KEEL_HAVE_CUDA
 * is defined; docs/CUDA.md describes the design.
 *
 * Error model: every CUDA, cuBLAS call is checked; a failure becomes a keel_status naming the call, the
 * device and (where one is involved) the size, never an abort. "No CUDA device" (no driver, no GPU) is a
 * KEEL_DEVICE_ERROR whose message starts with "no CUDA device". */
#ifndef KEEL_BACKEND_CUDA_BACKEND_H
#define KEEL_BACKEND_CUDA_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <keel/allocator.h>
#include <keel/status.h>

#include "graph/ir.h"
#include "runtime/plan.h"

typedef struct keel_cuda_ctx keel_cuda_ctx;
typedef struct keel_cuda_plan keel_cuda_plan;
typedef struct keel_cuda_events keel_cuda_events;

/* Number of CUDA devices; a status (and *n = 0) when there are none or no driver. */
keel_status *keel_cuda_device_count(int *n);
/* "NVIDIA H100 80GB HBM3 (sm_90, 79 GiB)" into buf. */
keel_status *keel_cuda_device_describe(int device, char *buf, size_t n);

/* A per-module context on `device`: the engine stream, a cuBLAS handle bound to it, device memory (a
 * counting allocator over cudaMalloc/cudaFree), a caching allocator for scratch, and the CUDA-graph cache. */
keel_status *keel_cuda_ctx_create(int device, keel_cuda_ctx **out);
void keel_cuda_ctx_destroy(keel_cuda_ctx *c); /* synchronizes its stream first */
int keel_cuda_ctx_device(const keel_cuda_ctx *c);
keel_allocator *keel_cuda_ctx_memory(keel_cuda_ctx *c); /* every allocation is one cudaMalloc (counted) */
void *keel_cuda_ctx_stream(keel_cuda_ctx *c);           /* the engine stream (cudaStream_t) */

/* Pinned host memory for staging (cudaHostAlloc), counted separately. */
keel_status *keel_cuda_pinned_alloc(keel_cuda_ctx *c, size_t n, void **out);
void keel_cuda_pinned_free(keel_cuda_ctx *c, void *p);

/* Asynchronous copy on the engine stream (any direction, cudaMemcpyDefault). */
keel_status *keel_cuda_copy_async(keel_cuda_ctx *c, void *dst, const void *src, size_t n, const char *what);
/* Synchronous copy (for tensors handed to the caller): waits for the engine stream first. */
keel_status *keel_cuda_copy_sync(keel_cuda_ctx *c, void *dst, const void *src, size_t n, const char *what);
keel_status *keel_cuda_copy_any(void *dst, const void *src, size_t n, const char *what); /* no context */
keel_status *keel_cuda_sync(keel_cuda_ctx *c);

/* Per-call events: START (before the host->device copies), STAGED (inputs on the device), DONE (outputs
 * written). Host code waits on DONE; a caller's stream waits on DONE through cudaStreamWaitEvent. */
enum { KEEL_CUDA_EV_START = 0, KEEL_CUDA_EV_STAGED = 1, KEEL_CUDA_EV_DONE = 2, KEEL_CUDA_EV_COUNT = 3 };
keel_status *keel_cuda_events_create(keel_cuda_ctx *c, keel_cuda_events **out);
void keel_cuda_events_destroy(keel_cuda_events *e);
keel_status *keel_cuda_events_record(keel_cuda_ctx *c, keel_cuda_events *e, int which);
keel_status *keel_cuda_events_wait_host(keel_cuda_ctx *c, keel_cuda_events *e, int which);
/* Milliseconds between two recorded events of the set (after DONE completed); -1 if unavailable. */
float keel_cuda_events_elapsed_ms(keel_cuda_events *e, int from, int to);
/* The engine stream waits for everything queued so far on `caller_stream` (Torch-TensorRT's pattern). */
keel_status *keel_cuda_wait_on_caller(keel_cuda_ctx *c, void *caller_stream);
/* `caller_stream` waits for event `which` of `e` before its later work. */
keel_status *keel_cuda_caller_waits(keel_cuda_ctx *c, keel_cuda_events *e, int which, void *caller_stream);

/* Does every node of `g` have a CUDA kernel? Otherwise KEEL_UNSUPPORTED naming each missing operator. */
keel_status *keel_cuda_check_graph(const keel_graph *g);

/* Device-side state for one plan: the kernel per step, constants uploaded once, scratch sizes. Creating
 * it checks each step's dtypes/attributes against what the CUDA kernels support. */
keel_status *keel_cuda_plan_create(keel_cuda_ctx *c, const keel_plan *p, keel_cuda_plan **out);
void keel_cuda_plan_destroy(keel_cuda_ctx *c, keel_cuda_plan *cp); /* also drops its captured graphs */
size_t keel_cuda_plan_workspace(const keel_cuda_plan *cp);

/* Enqueue one execution of the plan on the engine stream: eagerly, or (use_graphs) by replaying a CUDA
 * graph captured for exactly these device pointers, capturing it when the same pointers come a second
 * time. `arena` has plan->arena_bytes, `workspace` keel_cuda_plan_workspace bytes. */
keel_status *keel_cuda_plan_run(keel_cuda_ctx *c, keel_cuda_plan *cp, void *arena, void *workspace,
                                void *const *inputs, void *const *outputs, bool use_graphs);

typedef struct keel_cuda_stats {
  uint64_t graph_captures;   /* graphs captured and instantiated */
  uint64_t graph_replays;    /* calls served by a captured graph */
  uint64_t graph_failures;   /* captures that failed (the call ran eagerly) */
  uint64_t eager_runs;       /* calls launched kernel by kernel */
  uint64_t kernel_launches;  /* launches (and cuBLAS calls) enqueued eagerly or while capturing */
  uint64_t scratch_hits, scratch_misses; /* the caching allocator behind plan constants and workspaces */
  uint64_t pinned_allocs;    /* cudaHostAlloc calls */
} keel_cuda_stats;
void keel_cuda_get_stats(keel_cuda_ctx *c, keel_cuda_stats *out);
void keel_cuda_trim(keel_cuda_ctx *c); /* drop idle cached scratch blocks */

#endif
