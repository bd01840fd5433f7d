/* A size-class caching allocator for device memory (the CUDA backend's; no CUDA types here, so it is built
 * and unit-tested everywhere against a fake backend).
 *
 * Requests are rounded up to a size class; a freed block goes to its class's free list and the next request
 * of that class takes it without calling the backend (cudaMalloc). A limit caps everything held (in use plus
 * idle); when a request would pass it, or the backend fails, idle blocks are released first and the request
 * retried once, as PyTorch's caching allocator does. Blocks are reused in stream order: the CUDA backend
 * uses one stream per device context, so work queued after a free never races work queued before it.
 * Thread-safe. */
#ifndef KEEL_BACKEND_CUDA_CACHE_H
#define KEEL_BACKEND_CUDA_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct keel_cuda_cache_backend {
  void *(*alloc)(void *user, size_t bytes); /* NULL on failure */
  void (*free)(void *user, void *ptr, size_t bytes);
  void *user;
} keel_cuda_cache_backend;

typedef struct keel_cuda_cache_stats {
  uint64_t backend_allocs; /* calls that reached the backend and succeeded (cudaMalloc calls) */
  uint64_t backend_frees;
  uint64_t backend_failures;
  uint64_t hits;           /* requests served from a free list */
  uint64_t misses;         /* requests that went to the backend */
  uint64_t limit_refusals; /* requests refused by the limit (after trimming) */
  uint64_t bytes_held;     /* obtained from the backend and not yet returned: in use + idle */
  uint64_t bytes_in_use;
  uint64_t bytes_idle;
  uint64_t peak_held;
} keel_cuda_cache_stats;

typedef struct keel_cuda_cache keel_cuda_cache;

/* limit_bytes: cap on bytes_held, 0 = none. NULL on out of host memory. */
keel_cuda_cache *keel_cuda_cache_create(const keel_cuda_cache_backend *backend, uint64_t limit_bytes);
/* Frees idle blocks; blocks still in use are returned to the backend too (the owner is going away). */
void keel_cuda_cache_destroy(keel_cuda_cache *c);

/* The size class `bytes` rounds up to: 512-byte steps up to 1 MiB, then four steps per power of two
 * (1, 1.25, 1.5, 1.75 x 2^k), so waste stays under 25% and similar sizes share blocks. */
size_t keel_cuda_cache_class(size_t bytes);

void *keel_cuda_cache_alloc(keel_cuda_cache *c, size_t bytes); /* NULL: backend failure or limit */
/* `bytes` is what was asked of alloc (the class is recomputed from it). */
void keel_cuda_cache_free(keel_cuda_cache *c, void *ptr, size_t bytes);
/* Return every idle block to the backend. */
void keel_cuda_cache_trim(keel_cuda_cache *c);
void keel_cuda_cache_set_limit(keel_cuda_cache *c, uint64_t limit_bytes);
void keel_cuda_cache_get_stats(keel_cuda_cache *c, keel_cuda_cache_stats *out);

#endif
