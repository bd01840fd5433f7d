/* keel: the runtime module.
 *
 * A module is per-caller execution state over a shared, immutable engine: plans per input-shape key, an
 * arena for intermediates, output buffers and their pool, a stream (an in-order executor) and statistics.
 * Its job is to make steady-state inference allocate nothing and to hide what buffer work remains behind
 * compute (see docs/RUNTIME.md). A module serializes its own calls; use one module per thread, or a
 * keel_module_pool, for concurrency. */
#ifndef KEEL_MODULE_H
#define KEEL_MODULE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "engine.h"
#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct keel_module keel_module;
typedef struct keel_call keel_call;

/* What forward returns (docs/RUNTIME.md has the full contract).
 *  FRESH         new tensors from the system allocator every call; the caller owns them.
 *  PREALLOCATED  tensors prepared during the previous call, while it computed (Torch-TensorRT's
 *                use_pre_allocated_outputs). The caller owns them; no later call ever writes into them.
 *                Released outputs go back to the module's pool, so steady state allocates nothing.
 *  PERSISTENT    the same buffers every call, owned by the module: the caller borrows them until the next
 *                forward (or submit) on this module, which overwrites them. */
typedef enum keel_output_mode {
  KEEL_OUTPUTS_FRESH = 0,
  KEEL_OUTPUTS_PREALLOCATED = 1,
  KEEL_OUTPUTS_PERSISTENT = 2,
} keel_output_mode;

/* Where the module computes. SIM is a simulated accelerator: separate memory, a stream on its own thread,
 * host<->device copies, and allocations that cost a configurable delay (like cudaMalloc). */
typedef enum keel_device_kind {
  KEEL_DEVICE_CPU = 0,
  KEEL_DEVICE_SIM = 1,
  KEEL_DEVICE_CUDA = 2, /* an NVIDIA GPU (builds with the CUDA backend; device index from $KEEL_CUDA_DEVICE, default 0) */
} keel_device_kind;

/* TensorRT IOutputAllocator-style callbacks for caller-managed outputs: keel asks for memory once it knows
 * an output's size, then reports the final shape. Return NULL from reallocate to fail the call. */
typedef struct keel_output_allocator {
  void *(*reallocate)(void *user, const char *output_name, void *current, size_t size, size_t alignment);
  void (*notify_shape)(void *user, const char *output_name, const int64_t *dims, int ndim);
  void *user;
} keel_output_allocator;

typedef struct keel_module_options {
  keel_output_mode output_mode;  /* default FRESH */
  keel_device_kind device;       /* default CPU */
  int async;                     /* 1: compute on the module's stream and prepare the next call's outputs
                                    meanwhile; 0: compute on the caller's thread. -1 (default): 1 for
                                    devices, 0 on the CPU, where a thread hand-off costs more than the
                                    (pooled, already-faulted) buffers it would hide */
  int prefault;                  /* 1 (default): touch prepared buffers' pages off the critical path */
  int plan_cache_size;           /* plans kept per shape key (LRU); default 8 */
  uint64_t pool_limit_bytes;     /* idle bytes the output pool may keep; 0 = unlimited */
  int max_inflight;              /* submitted calls in flight at once; default 4 */
  int num_threads;               /* threads a kernel may use; default 1 */
  keel_allocator *allocator;     /* system allocations are counted here; NULL: a module-private counter */
  int profile;                   /* 1: time every step of CPU plans (keel_module_write_profile); default 0 */
  /* SIM only */
  double sim_alloc_delay_us;     /* cost of one device allocation; default 30 us (a typical cudaMalloc) */
  double sim_free_delay_us;      /* cost of one device free; default 10 us */
  double sim_copy_gbps;          /* host<->device copy bandwidth; default 25 GB/s (PCIe 4 x16) */
} keel_module_options;

void keel_module_options_init(keel_module_options *opt);

keel_status *keel_module_create(keel_engine *engine, const keel_module_options *opt, keel_module **out);
/* Waits for calls in flight, frees what the module owns. Tensors the caller still holds stay valid. */
void keel_module_destroy(keel_module *m);

keel_status *keel_module_set_output_mode(keel_module *m, keel_output_mode mode);
keel_output_mode keel_module_output_mode(const keel_module *m);

/* Run once: inputs in graph-input order; out receives n_out tensors the caller releases (in PERSISTENT mode
 * they are borrowed: valid until the next call, then overwritten). */
keel_status *keel_module_forward(keel_module *m, keel_tensor *const *inputs, size_t n_in, keel_tensor **out,
                                 size_t n_out);

/* Asynchronous forward: submit returns at once with a call handle (inputs are retained until the call ends);
 * wait blocks until it finished and hands over its outputs (or its error). Up to max_inflight calls may be
 * submitted before waiting; calls complete in submission order. Every call must be waited exactly once. */
keel_status *keel_module_submit(keel_module *m, keel_tensor *const *inputs, size_t n_in, keel_call **call);
keel_status *keel_call_wait(keel_call *call, keel_tensor **out, size_t n_out);

/* Bound outputs (ONNX Runtime IoBinding / TensorRT setTensorAddress): forward writes output `index` into
 * `t` (retained by the module until unbound) and returns it. Its dtype and shape must match; else the call
 * fails with KEEL_SHAPE_MISMATCH. Pass NULL to unbind. */
keel_status *keel_module_bind_output(keel_module *m, size_t index, keel_tensor *t);
/* Caller-allocated output `index` through callbacks (NULL to remove). */
keel_status *keel_module_set_output_allocator(keel_module *m, size_t index, const keel_output_allocator *a);

typedef struct keel_module_stats {
  uint64_t calls;              /* forward + submitted calls completed */
  uint64_t failed_calls;
  uint64_t system_allocations; /* allocations that reached the system (or device) allocator */
  uint64_t system_frees;
  uint64_t bytes_allocated;    /* bytes those allocations asked for */
  uint64_t pool_hits;          /* output buffers served from the pool */
  uint64_t pool_misses;
  uint64_t pool_bytes_idle;    /* bytes held in the pool, free for reuse (current) */
  uint64_t bytes_held;         /* everything the module holds now: arena, pool, persistent outputs */
  uint64_t peak_bytes;         /* maximum of bytes_held plus bytes out with callers */
  uint64_t shape_changes;      /* calls whose shape key differed from the previous call's */
  uint64_t plan_cache_hits;
  uint64_t plan_cache_misses;  /* plans built */
  uint64_t prepared_used;      /* PREALLOCATED: calls served by buffers prepared during the previous call */
  uint64_t prepared_discarded; /* prepared buffers dropped because shapes changed */
} keel_module_stats;

void keel_module_get_stats(const keel_module *m, keel_module_stats *out);     /* cumulative */
void keel_module_get_last_call_stats(const keel_module *m, keel_module_stats *out); /* the last call only */
void keel_module_reset_stats(keel_module *m);
/* Per-node time of the current plan, averaged over the calls that ran it (ORT's profiling, trtexec
 * --dumpProfile): a table sorted by time with each node's share, op type, name and output shape, then the
 * time per op type. Needs options.profile = 1 (which adds two clock reads per node). max_rows <= 0: all. */
keel_status *keel_module_write_profile(keel_module *m, FILE *f, int max_rows);
/* Free idle pooled buffers and cached plans other than the current one. */
void keel_module_trim(keel_module *m);

/* A pool of modules over one engine for concurrent callers: acquire blocks until a module is free. */
typedef struct keel_module_pool keel_module_pool;
keel_status *keel_module_pool_create(keel_engine *engine, size_t n, const keel_module_options *opt,
                                     keel_module_pool **out);
keel_module *keel_module_pool_acquire(keel_module_pool *p);
void keel_module_pool_release(keel_module_pool *p, keel_module *m);
void keel_module_pool_destroy(keel_module_pool *p);

/* Where a tensor's memory lives (KEEL_DEVICE_CPU for host memory). SIM memory is host-addressable, but
 * stands for device memory: read it only after the call that wrote it completed. */
keel_device_kind keel_tensor_device(const keel_tensor *t);

/* ---- devices (docs/CUDA.md) --------------------------------------------------------------------------------
 * Is `kind` usable here? NULL if so; else why not (CUDA: KEEL_UNSUPPORTED when not compiled in,
 * KEEL_DEVICE_ERROR "no CUDA device: ..." when there is no GPU or driver). */
keel_status *keel_device_check(keel_device_kind kind);

/* Copy a tensor's bytes to host memory, wherever they live (for CUDA: a synchronous cudaMemcpy).
 * nbytes must equal the tensor's size. */
keel_status *keel_tensor_copy_to_host(const keel_tensor *t, void *dst, size_t nbytes);
/* The same on the module's stream, timed as the call's device-to-host copy (see keel_device_stats). */
keel_status *keel_module_copy_to_host(keel_module *m, const keel_tensor *t, void *dst, size_t nbytes);
/* A tensor over caller device memory (e.g. a CUDA pointer from another framework) for bound outputs or
 * device-resident inputs; keel never frees it; `deleter` runs when the last reference goes. */
keel_status *keel_tensor_wrap_device(keel_device_kind kind, keel_dtype dtype, const int64_t *dims, int ndim, void *data,
                                     size_t nbytes, void (*deleter)(void *data, void *user), void *user,
                                     keel_tensor **out);

/* CUDA only. Graphs: capture the plan's kernels the second time a call uses the same shapes and device
 * pointers, replay while they stay the same (PERSISTENT and bound outputs keep them so; PREALLOCATED
 * cycles through a few pooled buffers, one graph each). Off by default. */
keel_status *keel_module_set_cuda_graphs(keel_module *m, int enable);
/* CUDA only. The caller's stream (a cudaStream_t; NULL for none): each call's work waits for what was
 * queued on it before, and it waits for the call's outputs, so the caller may queue work on the outputs
 * without a host wait. keel_module_forward still waits on the host. */
keel_status *keel_module_set_cuda_stream(keel_module *m, void *cuda_stream);

typedef struct keel_device_stats {
  double h2d_ms, compute_ms, d2h_ms;                /* cumulative, from events on the module's stream */
  double last_h2d_ms, last_compute_ms, last_d2h_ms; /* the last call (and the last copy to host) */
  uint64_t graph_captures, graph_replays, graph_failures, eager_runs;
  uint64_t pinned_allocs;                /* cudaHostAlloc calls for input staging */
  uint64_t scratch_hits, scratch_misses; /* the caching allocator behind constants and workspaces */
} keel_device_stats;
/* Zeroes for CPU and SIM modules. */
void keel_module_get_device_stats(const keel_module *m, keel_device_stats *out);

#ifdef __cplusplus
}
#endif
#endif
