/* Devices behind the runtime module: where buffers live, what allocating them costs, how bytes move.
 * CPU: host memory, no copies. SIM: a simulated accelerator whose allocations cost a configurable delay
 * (like cudaMalloc/cudaFree) and whose host<->device copies run at a configurable bandwidth, so latency
 * hiding and allocation counts are measurable without a GPU. Compute runs on a keel_stream either way.
 * CUDA: real device memory (one cudaMalloc per allocation, counted) and a per-module context
 * (backend/cuda/cuda_backend.h) with the engine stream; the module enqueues on it directly. */
#ifndef KEEL_RUNTIME_DEVICE_H
#define KEEL_RUNTIME_DEVICE_H

#include <stdbool.h>

#include <keel/module.h>

typedef struct keel_device {
  keel_device_kind kind;
  keel_allocator *memory; /* device memory, counted (for CPU: the module's host allocator) */
  bool owns_memory;
  double alloc_delay_us, free_delay_us, copy_gbps;
  struct keel_cuda_ctx *cuda; /* KEEL_DEVICE_CUDA only */
} keel_device;

/* "cpu sim" or "cpu sim cuda": the devices compiled in. */
const char *keel_device_backends(void);

keel_status *keel_device_create(const keel_module_options *opt, keel_allocator *host, keel_device **out);
void keel_device_destroy(keel_device *d);
/* Copy between host and device memory (runs on the stream; SIM adds the transfer time). */
void keel_device_copy(const keel_device *d, void *dst, const void *src, size_t n);
/* Busy-wait for `us` microseconds: simulated driver work blocks the calling thread like the real thing. */
void keel_spin_us(double us);
double keel_now_us(void);

#endif
