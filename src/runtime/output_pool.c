/* Output tensor pool: free list of blocks, best fit by capacity, mutex-protected. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/shape.h"
#include "core/tensor_internal.h"
#include "runtime/output_pool.h"

typedef struct block {
  keel_tensor tensor;   /* embedded header: recycled with the block */
  keel_storage storage; /* embedded storage record */
  struct block *next;
  size_t capacity;
  keel_output_pool *pool;
  bool unpooled; /* FRESH: freed on return */
} block;

struct keel_output_pool {
  pthread_mutex_t mu;
  keel_allocator *memory;
  int device;
  uint64_t limit;
  bool closed;
  block *idle;
  keel_pool_stats st;
  void (*on_destroy)(void *user);
  void *user;
};

static void free_block(keel_output_pool *p, block *b) {
  keel_allocator_free(p->memory, b->storage.data, b->capacity);
  free(b);
}

static void destroy_pool(keel_output_pool *p) {
  if (p->on_destroy) p->on_destroy(p->user);
  pthread_mutex_destroy(&p->mu);
  free(p);
}

keel_output_pool *keel_output_pool_create(keel_allocator *memory, int device, uint64_t limit_bytes,
                                          void (*on_destroy)(void *user), void *user) {
  keel_output_pool *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  pthread_mutex_init(&p->mu, NULL);
  p->memory = memory;
  p->device = device;
  p->limit = limit_bytes;
  p->on_destroy = on_destroy;
  p->user = user;
  return p;
}

/* Evict idle blocks (largest-first is not needed: the list is short) until within the limit. */
static void enforce_limit_locked(keel_output_pool *p, block **to_free) {
  while (p->limit && p->st.idle_bytes > p->limit && p->idle) {
    block *b = p->idle;
    p->idle = b->next;
    p->st.idle_bytes -= b->capacity;
    p->st.idle_blocks--;
    b->next = *to_free;
    *to_free = b;
  }
}

static void block_returned(keel_storage *s, void *user) {
  block *b = user;
  keel_output_pool *p = b->pool;
  block *to_free = NULL;
  bool destroy = false;
  pthread_mutex_lock(&p->mu);
  p->st.out_bytes -= b->capacity;
  p->st.out_blocks--;
  if (p->closed || b->unpooled) {
    b->next = to_free;
    to_free = b;
    destroy = p->closed && p->st.out_blocks == 0;
  } else {
    b->next = p->idle;
    p->idle = b;
    p->st.idle_bytes += b->capacity;
    p->st.idle_blocks++;
    enforce_limit_locked(p, &to_free);
  }
  pthread_mutex_unlock(&p->mu);
  (void)s;
  while (to_free) {
    block *n = to_free->next;
    free_block(p, to_free);
    to_free = n;
  }
  if (destroy) destroy_pool(p);
}

static void header_noop(keel_tensor *t) { (void)t; }

static void touch_pages(void *data, size_t n) {
  volatile char *c = data;
  for (size_t i = 0; i < n; i += 4096) c[i] = 0;
  if (n) c[n - 1] = 0;
}

static keel_tensor *acquire(keel_output_pool *p, keel_dtype dtype, const int64_t *dims, int ndim, bool prefault,
                            bool unpooled) {
  int64_t numel;
  size_t nbytes;
  if (ndim < 0 || ndim > KEEL_MAX_DIMS || !keel_shape_numel(dims, ndim, &numel) ||
      !keel_shape_nbytes(numel, keel_dtype_size(dtype), &nbytes))
    return NULL;
  block *b = NULL;
  pthread_mutex_lock(&p->mu);
  /* best fit among blocks no more than twice the size, so big buffers do not serve tiny requests */
  block **best = NULL;
  for (block **it = &p->idle; !unpooled && *it; it = &(*it)->next) {
    size_t c = (*it)->capacity;
    if (c >= nbytes && c <= 2 * nbytes + 64 && (!best || c < (*best)->capacity)) best = it;
  }
  if (best) {
    b = *best;
    *best = b->next;
    p->st.idle_bytes -= b->capacity;
    p->st.idle_blocks--;
    p->st.hits++;
  } else if (!unpooled) {
    p->st.misses++;
  }
  pthread_mutex_unlock(&p->mu);
  if (!b) {
    b = malloc(sizeof *b);
    if (!b) return NULL;
    b->capacity = nbytes ? nbytes : 1;
    b->pool = p;
    b->storage.data = keel_allocator_alloc(p->memory, b->capacity);
    if (!b->storage.data) {
      free(b);
      return NULL;
    }
    if (prefault) touch_pages(b->storage.data, b->capacity);
  }
  b->unpooled = unpooled;
  keel_storage *s = &b->storage;
  atomic_init(&s->refcount, 1);
  s->nbytes = b->capacity;
  s->allocator = NULL;
  s->release = block_returned;
  s->release_user = b;
  s->embedded = true;
  s->device = p->device;
  keel_tensor *t = &b->tensor;
  atomic_init(&t->refcount, 1);
  t->dtype = dtype;
  t->ndim = ndim;
  memset(t->dims, 0, sizeof t->dims);
  for (int i = 0; i < ndim; i++) t->dims[i] = dims[i];
  t->nbytes = nbytes;
  t->data = s->data;
  t->storage = s;
  t->free_self = header_noop;
  pthread_mutex_lock(&p->mu);
  p->st.out_bytes += b->capacity;
  p->st.out_blocks++;
  pthread_mutex_unlock(&p->mu);
  return t;
}

keel_tensor *keel_output_pool_acquire(keel_output_pool *p, keel_dtype dtype, const int64_t *dims, int ndim,
                                      bool prefault) {
  return acquire(p, dtype, dims, ndim, prefault, false);
}

keel_tensor *keel_output_pool_acquire_unpooled(keel_output_pool *p, keel_dtype dtype, const int64_t *dims, int ndim) {
  return acquire(p, dtype, dims, ndim, false, true);
}

void keel_output_pool_trim(keel_output_pool *p) {
  pthread_mutex_lock(&p->mu);
  block *list = p->idle;
  p->idle = NULL;
  p->st.idle_bytes = 0;
  p->st.idle_blocks = 0;
  pthread_mutex_unlock(&p->mu);
  while (list) {
    block *n = list->next;
    free_block(p, list);
    list = n;
  }
}

void keel_output_pool_close(keel_output_pool *p) {
  if (!p) return;
  keel_output_pool_trim(p);
  pthread_mutex_lock(&p->mu);
  p->closed = true;
  bool destroy = p->st.out_blocks == 0;
  pthread_mutex_unlock(&p->mu);
  if (destroy) destroy_pool(p);
}

void keel_output_pool_set_limit(keel_output_pool *p, uint64_t limit_bytes) {
  block *to_free = NULL;
  pthread_mutex_lock(&p->mu);
  p->limit = limit_bytes;
  enforce_limit_locked(p, &to_free);
  pthread_mutex_unlock(&p->mu);
  while (to_free) {
    block *n = to_free->next;
    free_block(p, to_free);
    to_free = n;
  }
}

void keel_output_pool_get_stats(keel_output_pool *p, keel_pool_stats *out) {
  pthread_mutex_lock(&p->mu);
  *out = p->st;
  pthread_mutex_unlock(&p->mu);
}

bool keel_output_pool_owns(const keel_output_pool *p, const keel_tensor *t) {
  return t->storage->release == block_returned && ((block *)t->storage->release_user)->pool == p;
}
