/* Tensors over reference-counted storage. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keel/tensor.h>

#include "core/error.h"
#include "core/shape.h"
#include "core/tensor_internal.h"

static keel_status *check_shape(keel_dtype dtype, const int64_t *dims, int ndim, size_t *nbytes) {
  if (ndim < 0 || ndim > KEEL_MAX_DIMS)
    return keel_error(KEEL_INVALID_ARGUMENT, "tensor rank %d is outside 0..%d", ndim, KEEL_MAX_DIMS);
  if (ndim > 0 && !dims) return keel_error(KEEL_INVALID_ARGUMENT, "tensor dims are NULL for rank %d", ndim);
  size_t es = keel_dtype_size(dtype);
  if (es == 0)
    return keel_error(KEEL_UNSUPPORTED, "tensor dtype %s (%d) is not supported", keel_dtype_name(dtype), (int)dtype);
  int64_t numel;
  for (int i = 0; i < ndim; i++)
    if (dims[i] < 0) return keel_error(KEEL_INVALID_ARGUMENT, "tensor dim %d is negative (%lld)", i, (long long)dims[i]);
  if (!keel_shape_numel(dims, ndim, &numel) || !keel_shape_nbytes(numel, es, nbytes))
    return keel_error(KEEL_OUT_OF_MEMORY, "tensor size overflows (rank %d, dtype %s)", ndim, keel_dtype_name(dtype));
  return NULL;
}

keel_storage *keel_storage_new(keel_allocator *alloc, size_t nbytes) {
  keel_storage *s = malloc(sizeof *s);
  if (!s) return NULL;
  if (!alloc) alloc = keel_allocator_default();
  s->data = keel_allocator_alloc(alloc, nbytes);
  if (!s->data) {
    free(s);
    return NULL;
  }
  atomic_init(&s->refcount, 1);
  s->nbytes = nbytes;
  s->allocator = alloc;
  s->release = NULL;
  s->release_user = NULL;
  s->embedded = false;
  s->device = 0;
  return s;
}

/* String storage: the elements' bytes are malloc'd one by one (kernels producing strings allocate them, the
 * one exception to "kernels never allocate") and freed here, before the element array itself. The storage
 * is recognized by this release function, so no other storage (an arena, a pool, wrapped memory) can ever
 * hold owned strings: keel_tensor_new_with_storage refuses STRING tensors over anything else. */
static void string_storage_release(keel_storage *s, void *user) {
  (void)user;
  keel_string *e = s->data;
  size_t n = s->nbytes / sizeof(keel_string);
  for (size_t i = 0; i < n; i++) free(e[i].data);
  keel_allocator_free(s->allocator, s->data, s->nbytes);
}

static keel_storage *string_storage_new(keel_allocator *alloc, size_t nbytes) {
  keel_storage *s = keel_storage_new(alloc, nbytes);
  if (!s) return NULL;
  if (nbytes) memset(s->data, 0, nbytes); /* every element empty: releasing a half-written tensor is safe */
  s->release = string_storage_release;
  return s;
}

void keel_string_clear(keel_string *s) {
  free(s->data);
  s->data = NULL;
  s->len = 0;
}

int keel_string_assign(keel_string *s, const char *bytes, size_t len) {
  char *d = NULL;
  if (len) {
    if (len == SIZE_MAX || !(d = malloc(len + 1))) return -1;
    memcpy(d, bytes, len);
    d[len] = 0;
  }
  free(s->data);
  s->data = d;
  s->len = len;
  return 0;
}

static keel_status *check_string_index(const keel_tensor *t, int64_t i, const char *fn) {
  if (!t) return keel_error(KEEL_INVALID_ARGUMENT, "%s: tensor is NULL", fn);
  if (t->dtype != KEEL_STRING)
    return keel_error(KEEL_INVALID_ARGUMENT, "%s: tensor has dtype %s, not string", fn, keel_dtype_name(t->dtype));
  int64_t n = keel_tensor_numel(t);
  if (i < 0 || i >= n)
    return keel_error(KEEL_INVALID_ARGUMENT, "%s: element %lld is outside the tensor's %lld", fn, (long long)i, (long long)n);
  return NULL;
}

keel_status *keel_tensor_set_string(keel_tensor *t, int64_t i, const char *bytes, size_t len) {
  KEEL_TRY(check_string_index(t, i, "keel_tensor_set_string"));
  if (len && !bytes) return keel_error(KEEL_INVALID_ARGUMENT, "keel_tensor_set_string: bytes is NULL for length %zu", len);
  if (keel_string_assign(&((keel_string *)t->data)[i], bytes, len))
    return keel_error(KEEL_OUT_OF_MEMORY, "out of memory storing a string of %zu bytes", len);
  return NULL;
}

const char *keel_tensor_get_string(const keel_tensor *t, int64_t i, size_t *len) {
  keel_status *s = check_string_index(t, i, "keel_tensor_get_string");
  if (s) {
    keel_status_free(s);
    return NULL;
  }
  const keel_string *e = &((const keel_string *)t->data)[i];
  if (len) *len = e->len;
  return e->data ? e->data : "";
}

void keel_storage_retain(keel_storage *s) { atomic_fetch_add(&s->refcount, 1); }

void keel_storage_release(keel_storage *s) {
  if (!s || atomic_fetch_sub(&s->refcount, 1) != 1) return;
  bool embedded = s->embedded; /* an embedded record may be recycled by release() itself */
  if (s->release) s->release(s, s->release_user);
  else if (s->allocator) keel_allocator_free(s->allocator, s->data, s->nbytes);
  if (!embedded) free(s);
}

keel_status *keel_tensor_new_with_storage(keel_dtype dtype, const int64_t *dims, int ndim, keel_storage *st,
                                          keel_tensor **out) {
  size_t nbytes;
  KEEL_TRY(check_shape(dtype, dims, ndim, &nbytes));
  if (nbytes > st->nbytes)
    return keel_error(KEEL_INTERNAL, "storage of %zu bytes too small for tensor of %zu", st->nbytes, nbytes);
  if (dtype == KEEL_STRING && st->release != string_storage_release)
    return keel_error(KEEL_UNSUPPORTED, "string tensors own their elements' bytes: they cannot live in shared, "
                      "pooled or caller-provided buffers");
  keel_tensor *t = malloc(sizeof *t);
  if (!t) return keel_error(KEEL_OUT_OF_MEMORY, "out of memory allocating a tensor header");
  t->dtype = dtype;
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++) t->dims[i] = dims[i];
  t->nbytes = nbytes;
  t->storage = st;
  t->data = st->data;
  atomic_init(&t->refcount, 1);
  t->free_self = NULL;
  keel_storage_retain(st);
  *out = t;
  return NULL;
}

keel_status *keel_tensor_create(keel_dtype dtype, const int64_t *dims, int ndim, keel_allocator *alloc,
                                keel_tensor **out) {
  if (!out) return keel_error(KEEL_INVALID_ARGUMENT, "keel_tensor_create: out is NULL");
  *out = NULL;
  size_t nbytes;
  KEEL_TRY(check_shape(dtype, dims, ndim, &nbytes));
  keel_storage *st = dtype == KEEL_STRING ? string_storage_new(alloc, nbytes) : keel_storage_new(alloc, nbytes);
  if (!st) return keel_error(KEEL_OUT_OF_MEMORY, "out of memory allocating a %s tensor of %zu bytes",
                             keel_dtype_name(dtype), nbytes);
  keel_status *s = keel_tensor_new_with_storage(dtype, dims, ndim, st, out);
  keel_storage_release(st);
  return s;
}

typedef struct {
  void (*deleter)(void *, void *);
  void *user;
} wrap_ctx;

static void wrap_release(keel_storage *s, void *user) {
  wrap_ctx *w = user;
  if (w->deleter) w->deleter(s->data, w->user);
  free(w);
}

keel_status *keel_tensor_wrap(keel_dtype dtype, const int64_t *dims, int ndim, void *data, size_t nbytes,
                              void (*deleter)(void *data, void *user), void *user, keel_tensor **out) {
  if (!out) return keel_error(KEEL_INVALID_ARGUMENT, "keel_tensor_wrap: out is NULL");
  *out = NULL;
  size_t need;
  KEEL_TRY(check_shape(dtype, dims, ndim, &need));
  if (dtype == KEEL_STRING)
    return keel_error(KEEL_UNSUPPORTED, "keel_tensor_wrap: string tensors own their elements and cannot wrap caller "
                      "memory; use keel_tensor_create and keel_tensor_set_string");
  if (need > nbytes)
    return keel_error(KEEL_INVALID_ARGUMENT, "keel_tensor_wrap: buffer of %zu bytes is smaller than the %zu the shape needs",
                      nbytes, need);
  if (!data && need) return keel_error(KEEL_INVALID_ARGUMENT, "keel_tensor_wrap: data is NULL");
  keel_storage *st = malloc(sizeof *st);
  wrap_ctx *w = malloc(sizeof *w);
  if (!st || !w) {
    free(st);
    free(w);
    return keel_error(KEEL_OUT_OF_MEMORY, "out of memory wrapping a tensor");
  }
  w->deleter = deleter;
  w->user = user;
  atomic_init(&st->refcount, 1);
  st->data = data;
  st->nbytes = nbytes;
  st->allocator = NULL;
  st->release = wrap_release;
  st->release_user = w;
  st->embedded = false;
  st->device = 0;
  keel_status *s = keel_tensor_new_with_storage(dtype, dims, ndim, st, out);
  keel_storage_release(st);
  return s;
}

keel_status *keel_tensor_from_data(keel_dtype dtype, const int64_t *dims, int ndim, const void *data,
                                   keel_tensor **out) {
  KEEL_TRY(keel_tensor_create(dtype, dims, ndim, NULL, out));
  if (dtype == KEEL_STRING) { /* `data` is an array of keel_string: copy the bytes, not the pointers */
    const keel_string *src = data;
    keel_string *dst = (*out)->data;
    int64_t n = keel_tensor_numel(*out);
    for (int64_t i = 0; i < n; i++)
      if (keel_string_assign(&dst[i], src[i].data, src[i].data ? src[i].len : 0)) {
        keel_tensor_release(*out);
        *out = NULL;
        return keel_error(KEEL_OUT_OF_MEMORY, "out of memory copying a string tensor");
      }
    return NULL;
  }
  if ((*out)->nbytes) memcpy((*out)->data, data, (*out)->nbytes);
  return NULL;
}

keel_tensor *keel_tensor_retain(keel_tensor *t) {
  if (t) atomic_fetch_add(&t->refcount, 1);
  return t;
}

void keel_tensor_release(keel_tensor *t) {
  if (!t || atomic_fetch_sub(&t->refcount, 1) != 1) return;
  /* Read the header's fate first: releasing the storage may recycle a pooled block holding the header. */
  void (*free_self)(keel_tensor *) = t->free_self;
  keel_storage *st = t->storage;
  if (free_self) {
    free_self(t);
    keel_storage_release(st);
  } else {
    free(t);
    keel_storage_release(st);
  }
}

keel_dtype keel_tensor_dtype(const keel_tensor *t) { return t->dtype; }
int keel_tensor_ndim(const keel_tensor *t) { return t->ndim; }
const int64_t *keel_tensor_dims(const keel_tensor *t) { return t->dims; }
int64_t keel_tensor_numel(const keel_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++) n *= t->dims[i];
  return n;
}
size_t keel_tensor_nbytes(const keel_tensor *t) { return t->nbytes; }
void *keel_tensor_data(keel_tensor *t) { return t->data; }
const void *keel_tensor_data_const(const keel_tensor *t) { return t->data; }
const void *keel_tensor_storage_id(const keel_tensor *t) { return t->storage; }

char *keel_shape_format(const int64_t *dims, int ndim, char *buf, size_t size) {
  size_t off = 0;
  if (size == 0) return buf;
  buf[0] = 0;
  off += (size_t)snprintf(buf + off, size - off, "[");
  for (int i = 0; i < ndim && off < size; i++)
    off += (size_t)snprintf(buf + off, size - off, i ? ",%lld" : "%lld", (long long)dims[i]);
  if (off < size) snprintf(buf + off, size - off, "]");
  return buf;
}
