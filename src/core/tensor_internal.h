/* Tensor and storage layout, visible inside keel only (the runtime module pools storages). */
#ifndef KEEL_CORE_TENSOR_INTERNAL_H
#define KEEL_CORE_TENSOR_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <keel/tensor.h>

typedef struct keel_storage keel_storage;
struct keel_storage {
  atomic_int refcount;
  void *data;
  size_t nbytes;
  keel_allocator *allocator; /* frees data when release is NULL */
  /* Custom release (wrapped memory, pools returning buffers): called instead of freeing data. It must free
   * nothing but what it owns; the storage struct itself is freed by keel_storage_release afterwards. */
  void (*release)(keel_storage *s, void *user);
  void *release_user;
  /* The struct is embedded in a pooled block: keel_storage_release must not free it. */
  bool embedded;
  int device; /* 0: host memory; otherwise a keel_device_kind (runtime/device.h) */
};

struct keel_tensor {
  atomic_int refcount;
  keel_dtype dtype;
  int ndim;
  int64_t dims[KEEL_MAX_DIMS];
  size_t nbytes;
  void *data;
  keel_storage *storage;
  /* How to free this header when its last reference goes; NULL: free(). Pooled tensors embed their header
   * in a pool block, recycled together with the storage, so they set a no-op here. */
  void (*free_self)(keel_tensor *t);
};

keel_storage *keel_storage_new(keel_allocator *alloc, size_t nbytes); /* NULL on failure */
void keel_storage_retain(keel_storage *s);
void keel_storage_release(keel_storage *s);
/* A tensor header over existing storage (takes its own reference). */
keel_status *keel_tensor_new_with_storage(keel_dtype dtype, const int64_t *dims, int ndim, keel_storage *st,
                                          keel_tensor **out);

#endif
