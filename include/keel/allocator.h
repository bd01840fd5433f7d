/* keel: allocators.
 * Every tensor buffer keel creates comes from a keel_allocator, so the runtime can count system
 * allocations, bytes and peak usage exactly (the runtime-module work builds on these counters), and
 * tests can inject failures. Allocators are thread-safe. */
#ifndef KEEL_ALLOCATOR_H
#define KEEL_ALLOCATOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Counters of one allocator. "allocations" counts calls that reached the underlying system allocator. */
typedef struct keel_alloc_stats {
  uint64_t allocations;     /* successful system allocations */
  uint64_t frees;           /* buffers returned to the system */
  uint64_t failed;          /* allocations that failed (real or injected) */
  uint64_t bytes_allocated; /* cumulative bytes obtained from the system */
  uint64_t bytes_in_use;    /* bytes currently held */
  uint64_t peak_bytes;      /* maximum of bytes_in_use */
} keel_alloc_stats;

typedef struct keel_allocator keel_allocator;

/* User-defined allocators: alloc returns memory aligned to at least `align` (a power of two) or NULL. */
typedef struct keel_allocator_vtable {
  void *(*alloc)(void *user, size_t size, size_t align);
  void (*free)(void *user, void *ptr, size_t size);
} keel_allocator_vtable;

/* The process-wide default allocator (aligned system allocation, counted). Never freed. */
keel_allocator *keel_allocator_default(void);

/* A new counting allocator over `vt` (NULL for the system allocator). */
keel_allocator *keel_allocator_create(const keel_allocator_vtable *vt, void *user);
/* Gives up the creator's reference: the allocator itself is freed once every buffer it handed out has been
 * freed too, so tensors made from it stay releasable (its vtable and `user` must stay valid until then). */
void keel_allocator_destroy(keel_allocator *a);

void *keel_allocator_alloc(keel_allocator *a, size_t size); /* 64-byte aligned; NULL on failure */
void keel_allocator_free(keel_allocator *a, void *ptr, size_t size);
void keel_allocator_get_stats(const keel_allocator *a, keel_alloc_stats *out);
void keel_allocator_reset_stats(keel_allocator *a); /* zero the cumulative counters, keep in-use */

/* Fault injection for tests: the n-th allocation from now (1-based) fails, and every one after it if
 * `sticky`; n = 0 disables. */
void keel_allocator_fail_after(keel_allocator *a, uint64_t n, int sticky);

/* Limit: allocations that would raise bytes_in_use above `max_bytes` fail (0 = unlimited). */
void keel_allocator_set_limit(keel_allocator *a, uint64_t max_bytes);

#ifdef __cplusplus
}
#endif
#endif
