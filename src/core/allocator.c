/* Counting allocators. Counters are atomics so stats can be read while other threads allocate. */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include <keel/allocator.h>

#define KEEL_ALIGN 64

struct keel_allocator {
  keel_allocator_vtable vt;
  void *user;
  bool has_vt;
  atomic_uint_fast64_t allocations, frees, failed, bytes_allocated, bytes_in_use, peak_bytes;
  atomic_uint_fast64_t fail_countdown; /* 0: off; else fail when it reaches 1 */
  atomic_bool fail_sticky, failing;
  atomic_uint_fast64_t limit;
  /* 1 for the owner (dropped by keel_allocator_destroy) + 1 per buffer handed out and not yet freed: a
   * module's private allocator must outlive the module while the caller still holds outputs it made. */
  atomic_uint_fast64_t refs;
};

static keel_allocator default_allocator;

keel_allocator *keel_allocator_default(void) { return &default_allocator; }

keel_allocator *keel_allocator_create(const keel_allocator_vtable *vt, void *user) {
  keel_allocator *a = calloc(1, sizeof *a);
  if (!a) return NULL;
  if (vt) {
    a->vt = *vt;
    a->has_vt = true;
  }
  a->user = user;
  atomic_init(&a->refs, 1);
  return a;
}

static void unref(keel_allocator *a) {
  if (a != &default_allocator && atomic_fetch_sub(&a->refs, 1) == 1) free(a);
}

void keel_allocator_destroy(keel_allocator *a) {
  if (a) unref(a);
}

/* Decide whether fault injection fails this allocation. */
static bool inject_failure(keel_allocator *a) {
  if (atomic_load(&a->failing)) return true;
  uint_fast64_t c = atomic_load(&a->fail_countdown);
  while (c > 0) {
    if (atomic_compare_exchange_weak(&a->fail_countdown, &c, c - 1)) {
      if (c == 1) {
        if (atomic_load(&a->fail_sticky)) atomic_store(&a->failing, true);
        return true;
      }
      return false;
    }
  }
  return false;
}

void *keel_allocator_alloc(keel_allocator *a, size_t size) {
  if (!a) a = &default_allocator;
  if (size == 0) size = 1; /* empty tensors still get a distinct, freeable pointer */
  if (inject_failure(a)) {
    atomic_fetch_add(&a->failed, 1);
    return NULL;
  }
  uint_fast64_t limit = atomic_load(&a->limit);
  if (limit && atomic_load(&a->bytes_in_use) + size > limit) {
    atomic_fetch_add(&a->failed, 1);
    return NULL;
  }
  void *p;
  if (a->has_vt) {
    p = a->vt.alloc(a->user, size, KEEL_ALIGN);
  } else {
    size_t rounded = (size + KEEL_ALIGN - 1) & ~(size_t)(KEEL_ALIGN - 1);
    if (rounded < size) return NULL;
    p = aligned_alloc(KEEL_ALIGN, rounded);
  }
  if (!p) {
    atomic_fetch_add(&a->failed, 1);
    return NULL;
  }
  atomic_fetch_add(&a->refs, 1);
  atomic_fetch_add(&a->allocations, 1);
  atomic_fetch_add(&a->bytes_allocated, size);
  uint_fast64_t now = atomic_fetch_add(&a->bytes_in_use, size) + size;
  uint_fast64_t peak = atomic_load(&a->peak_bytes);
  while (now > peak && !atomic_compare_exchange_weak(&a->peak_bytes, &peak, now)) {
  }
  return p;
}

void keel_allocator_free(keel_allocator *a, void *ptr, size_t size) {
  if (!ptr) return;
  if (!a) a = &default_allocator;
  if (size == 0) size = 1;
  if (a->has_vt) a->vt.free(a->user, ptr, size);
  else free(ptr);
  atomic_fetch_add(&a->frees, 1);
  atomic_fetch_sub(&a->bytes_in_use, size);
  unref(a);
}

void keel_allocator_get_stats(const keel_allocator *ca, keel_alloc_stats *out) {
  keel_allocator *a = (keel_allocator *)(ca ? ca : &default_allocator);
  out->allocations = atomic_load(&a->allocations);
  out->frees = atomic_load(&a->frees);
  out->failed = atomic_load(&a->failed);
  out->bytes_allocated = atomic_load(&a->bytes_allocated);
  out->bytes_in_use = atomic_load(&a->bytes_in_use);
  out->peak_bytes = atomic_load(&a->peak_bytes);
}

void keel_allocator_reset_stats(keel_allocator *a) {
  if (!a) a = &default_allocator;
  atomic_store(&a->allocations, 0);
  atomic_store(&a->frees, 0);
  atomic_store(&a->failed, 0);
  atomic_store(&a->bytes_allocated, 0);
  atomic_store(&a->peak_bytes, atomic_load(&a->bytes_in_use));
}

void keel_allocator_fail_after(keel_allocator *a, uint64_t n, int sticky) {
  if (!a) a = &default_allocator;
  atomic_store(&a->failing, false);
  atomic_store(&a->fail_sticky, sticky != 0);
  atomic_store(&a->fail_countdown, n);
}

void keel_allocator_set_limit(keel_allocator *a, uint64_t max_bytes) {
  if (!a) a = &default_allocator;
  atomic_store(&a->limit, max_bytes);
}
