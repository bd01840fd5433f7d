/* Size-class caching allocator (see cuda_cache.h). Free lists are kept per class in a small sorted array;
 * block records come from malloc only when a block is first obtained from the backend. */
#include "backend/cuda/cuda_cache.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct block {
  void *ptr;
  size_t size; /* the class size */
  struct block *next;
} block;

typedef struct bucket {
  size_t size;
  block *idle;
} bucket;

struct keel_cuda_cache {
  pthread_mutex_t mu;
  keel_cuda_cache_backend be;
  uint64_t limit;
  bucket *buckets;
  int n_buckets, cap_buckets;
  block *spare; /* records of blocks in use: ptr -> record is looked up here on free */
  keel_cuda_cache_stats st;
};

size_t keel_cuda_cache_class(size_t bytes) {
  if (bytes == 0) bytes = 1;
  const size_t small = (size_t)1 << 20;
  if (bytes <= small) return (bytes + 511) & ~(size_t)511;
  size_t p = small;
  while (p <= bytes / 2) p *= 2; /* now p <= bytes < 2p */
  if (p > SIZE_MAX / 4) return bytes; /* beyond the class range: exact */
  for (int q = 4; q <= 8; q++) {
    size_t c = p / 4 * (size_t)q;
    if (c >= bytes) return c;
  }
  return bytes; /* beyond the class range: exact */
}

keel_cuda_cache *keel_cuda_cache_create(const keel_cuda_cache_backend *backend, uint64_t limit_bytes) {
  if (!backend || !backend->alloc || !backend->free) return NULL;
  keel_cuda_cache *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  pthread_mutex_init(&c->mu, NULL);
  c->be = *backend;
  c->limit = limit_bytes;
  return c;
}

static bucket *find_bucket(keel_cuda_cache *c, size_t size, bool create) {
  int lo = 0, hi = c->n_buckets;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (c->buckets[mid].size < size) lo = mid + 1;
    else hi = mid;
  }
  if (lo < c->n_buckets && c->buckets[lo].size == size) return &c->buckets[lo];
  if (!create) return NULL;
  if (c->n_buckets == c->cap_buckets) {
    int cap = c->cap_buckets ? 2 * c->cap_buckets : 16;
    bucket *nb = realloc(c->buckets, sizeof *nb * (size_t)cap);
    if (!nb) return NULL;
    c->buckets = nb;
    c->cap_buckets = cap;
  }
  memmove(&c->buckets[lo + 1], &c->buckets[lo], sizeof *c->buckets * (size_t)(c->n_buckets - lo));
  c->buckets[lo].size = size;
  c->buckets[lo].idle = NULL;
  c->n_buckets++;
  return &c->buckets[lo];
}

/* Return every idle block to the backend (mutex held). */
static void trim_locked(keel_cuda_cache *c) {
  for (int i = 0; i < c->n_buckets; i++) {
    block *b = c->buckets[i].idle;
    c->buckets[i].idle = NULL;
    while (b) {
      block *next = b->next;
      c->be.free(c->be.user, b->ptr, b->size);
      c->st.backend_frees++;
      c->st.bytes_held -= b->size;
      c->st.bytes_idle -= b->size;
      free(b);
      b = next;
    }
  }
}

void *keel_cuda_cache_alloc(keel_cuda_cache *c, size_t bytes) {
  size_t size = keel_cuda_cache_class(bytes);
  pthread_mutex_lock(&c->mu);
  bucket *bk = find_bucket(c, size, true);
  if (!bk) {
    pthread_mutex_unlock(&c->mu);
    return NULL;
  }
  block *b = bk->idle;
  if (b) {
    bk->idle = b->next;
    c->st.hits++;
    c->st.bytes_idle -= size;
    c->st.bytes_in_use += size;
    b->next = c->spare;
    c->spare = b;
    void *p = b->ptr;
    pthread_mutex_unlock(&c->mu);
    return p;
  }
  c->st.misses++;
  if (c->limit && c->st.bytes_held + size > c->limit) trim_locked(c);
  if (c->limit && c->st.bytes_held + size > c->limit) {
    c->st.limit_refusals++;
    pthread_mutex_unlock(&c->mu);
    return NULL;
  }
  b = malloc(sizeof *b);
  if (!b) {
    pthread_mutex_unlock(&c->mu);
    return NULL;
  }
  void *p = c->be.alloc(c->be.user, size);
  if (!p && c->st.bytes_idle) { /* out of device memory: give back what is idle and try once more */
    trim_locked(c);
    p = c->be.alloc(c->be.user, size);
  }
  if (!p) {
    c->st.backend_failures++;
    free(b);
    pthread_mutex_unlock(&c->mu);
    return NULL;
  }
  c->st.backend_allocs++;
  c->st.bytes_held += size;
  c->st.bytes_in_use += size;
  if (c->st.bytes_held > c->st.peak_held) c->st.peak_held = c->st.bytes_held;
  b->ptr = p;
  b->size = size;
  b->next = c->spare;
  c->spare = b;
  pthread_mutex_unlock(&c->mu);
  return p;
}

void keel_cuda_cache_free(keel_cuda_cache *c, void *ptr, size_t bytes) {
  if (!ptr) return;
  size_t size = keel_cuda_cache_class(bytes);
  pthread_mutex_lock(&c->mu);
  block **pp = &c->spare;
  while (*pp && (*pp)->ptr != ptr) pp = &(*pp)->next;
  block *b = *pp;
  if (!b) { /* not ours: a caller bug; leave it rather than corrupt the lists */
    pthread_mutex_unlock(&c->mu);
    return;
  }
  *pp = b->next;
  (void)size; /* the record knows its class; `bytes` is kept in the API for backends that need it */
  bucket *bk = find_bucket(c, b->size, true);
  c->st.bytes_in_use -= b->size;
  if (!bk) { /* no memory for a bucket: hand the block back */
    c->be.free(c->be.user, b->ptr, b->size);
    c->st.backend_frees++;
    c->st.bytes_held -= b->size;
    free(b);
  } else {
    b->next = bk->idle;
    bk->idle = b;
    c->st.bytes_idle += b->size;
    /* over the limit (it was lowered): shed idle memory now */
    if (c->limit && c->st.bytes_held > c->limit) trim_locked(c);
  }
  pthread_mutex_unlock(&c->mu);
}

void keel_cuda_cache_trim(keel_cuda_cache *c) {
  pthread_mutex_lock(&c->mu);
  trim_locked(c);
  pthread_mutex_unlock(&c->mu);
}

void keel_cuda_cache_set_limit(keel_cuda_cache *c, uint64_t limit_bytes) {
  pthread_mutex_lock(&c->mu);
  c->limit = limit_bytes;
  if (c->limit && c->st.bytes_held > c->limit) trim_locked(c);
  pthread_mutex_unlock(&c->mu);
}

void keel_cuda_cache_get_stats(keel_cuda_cache *c, keel_cuda_cache_stats *out) {
  pthread_mutex_lock(&c->mu);
  *out = c->st;
  pthread_mutex_unlock(&c->mu);
}

void keel_cuda_cache_destroy(keel_cuda_cache *c) {
  if (!c) return;
  trim_locked(c);
  while (c->spare) {
    block *b = c->spare;
    c->spare = b->next;
    c->be.free(c->be.user, b->ptr, b->size);
    free(b);
  }
  free(c->buckets);
  pthread_mutex_destroy(&c->mu);
  free(c);
}
