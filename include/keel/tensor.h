/* keel: tensors.
 * A tensor is a dtype, a shape and a reference to storage. Storage is reference-counted: a tensor holds
 * one reference and releases it when the tensor is released, so buffers live exactly as long as someone
 * may read them. Tensors themselves are reference-counted too (retain/release). Dense, row-major. */
#ifndef KEEL_TENSOR_H
#define KEEL_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "allocator.h"
#include "dtype.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KEEL_MAX_DIMS 8

typedef struct keel_tensor keel_tensor;

/* New tensor with storage from `alloc` (NULL: the default allocator). Contents are uninitialized. */
keel_status *keel_tensor_create(keel_dtype dtype, const int64_t *dims, int ndim, keel_allocator *alloc,
                                keel_tensor **out);
/* New tensor over caller memory; keel never frees it. `deleter`, if set, runs when the last reference
 * goes (for zero-copy hand-over from other frameworks). */
keel_status *keel_tensor_wrap(keel_dtype dtype, const int64_t *dims, int ndim, void *data, size_t nbytes,
                              void (*deleter)(void *data, void *user), void *user, keel_tensor **out);
/* New tensor holding a copy of `data`. */
keel_status *keel_tensor_from_data(keel_dtype dtype, const int64_t *dims, int ndim, const void *data,
                                   keel_tensor **out);

keel_tensor *keel_tensor_retain(keel_tensor *t);
void keel_tensor_release(keel_tensor *t); /* NULL is fine */

keel_dtype keel_tensor_dtype(const keel_tensor *t);
int keel_tensor_ndim(const keel_tensor *t);
const int64_t *keel_tensor_dims(const keel_tensor *t);
int64_t keel_tensor_numel(const keel_tensor *t);
size_t keel_tensor_nbytes(const keel_tensor *t);
void *keel_tensor_data(keel_tensor *t);
const void *keel_tensor_data_const(const keel_tensor *t);
/* Opaque identity of the storage (two tensors sharing storage return the same value). */
const void *keel_tensor_storage_id(const keel_tensor *t);

/* Shape as "[1,3,224,224]" into buf; returns buf. */
char *keel_shape_format(const int64_t *dims, int ndim, char *buf, size_t size);

#ifdef __cplusplus
}
#endif
#endif
