/* A pool of output tensors. Each block holds a tensor header, its storage record and the data, so a pool
 * hit allocates nothing at all. Releasing the last reference to a pooled tensor returns its block, from any
 * thread. The pool outlives its module while blocks are out with callers. */
#ifndef KEEL_RUNTIME_OUTPUT_POOL_H
#define KEEL_RUNTIME_OUTPUT_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include <keel/allocator.h>
#include <keel/tensor.h>

typedef struct keel_output_pool keel_output_pool;

typedef struct keel_pool_stats {
  uint64_t hits, misses;
  uint64_t idle_bytes, idle_blocks; /* in the pool now */
  uint64_t out_bytes, out_blocks;   /* handed out now */
} keel_pool_stats;

/* `memory` provides the data (host or device memory); `device` tags the storages. `on_destroy(user)` runs
 * when the pool is finally freed (after close and the last outstanding block), so whoever owns `memory`
 * can free it then. */
keel_output_pool *keel_output_pool_create(keel_allocator *memory, int device, uint64_t limit_bytes,
                                          void (*on_destroy)(void *user), void *user);
/* Close the pool: idle blocks are freed now, outstanding ones when released. */
void keel_output_pool_close(keel_output_pool *p);

/* A tensor of this dtype/shape from the pool (hit) or a new block (miss). NULL on out of memory.
 * `prefault` touches every page of a new block so its page faults happen here, not in a kernel. */
keel_tensor *keel_output_pool_acquire(keel_output_pool *p, keel_dtype dtype, const int64_t *dims, int ndim,
                                      bool prefault);
/* A tensor that bypasses the free list: always a new allocation, freed (not pooled) on release. This is the
 * FRESH baseline; it goes through the pool only so its memory outlives the module safely. */
keel_tensor *keel_output_pool_acquire_unpooled(keel_output_pool *p, keel_dtype dtype, const int64_t *dims, int ndim);
void keel_output_pool_trim(keel_output_pool *p);
void keel_output_pool_set_limit(keel_output_pool *p, uint64_t limit_bytes);
void keel_output_pool_get_stats(keel_output_pool *p, keel_pool_stats *out);
/* Is this tensor's storage a block of pool p? */
bool keel_output_pool_owns(const keel_output_pool *p, const keel_tensor *t);

#endif
