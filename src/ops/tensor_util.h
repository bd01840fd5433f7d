/* Shared helpers of the "tensor" operator family (data movement, shape operators).
 * Kernels here work on bytes: the element size comes from keel_dtype_size, so one kernel serves every dtype. */
#ifndef KEEL_OPS_TENSOR_UTIL_H
#define KEEL_OPS_TENSOR_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ops/op.h"

/* Element size of a view's dtype, or an error naming the input when the dtype has no fixed size. */
keel_status *keel_tt_esize(const keel_view *v, const char *what, size_t *es);
/* Number of elements of a view; error on overflow/negative dims. */
keel_status *keel_tt_numel(const keel_view *v, const char *what, int64_t *n);
/* Set an output's shape after checking its dims (non-negative, size fits in memory). */
keel_status *keel_tt_set_out(keel_view *out, keel_dtype dt, const int64_t *dims, int nd);
/* Read a 1-D (or scalar) integer input's values into vals (at most max). Returns keel_need_value when the
 * value is unknown; *count gets the number of elements. */
keel_status *keel_tt_read_ints(const keel_node *n, const keel_view *in, int n_in, int idx, const char *what,
                               int64_t *vals, int max, int *count);
/* Axis list (attribute or input values) normalized against rank, duplicates rejected. */
keel_status *keel_tt_norm_axes(const int64_t *axes, int count, int rank, const char *what, int *out);
/* Row-major element strides. */
void keel_tt_strides(const int64_t *dims, int nd, int64_t *strides);
/* Write v (a double) into element i of a buffer of dtype dt (rounded and saturated for integers). */
void keel_tt_store_f64(keel_dtype dt, void *p, int64_t i, double v);
/* Read element i of any numeric dtype as double. */
double keel_tt_load_f64(keel_dtype dt, const void *p, int64_t i);
bool keel_tt_is_float(keel_dtype dt);
/* Element copy of one `es`-byte element. */
static inline void keel_tt_copy1(char *dst, const char *src, size_t es) {
  switch (es) {
    case 1: *dst = *src; break;
    case 2: memcpy(dst, src, 2); break;
    case 4: memcpy(dst, src, 4); break;
    case 8: memcpy(dst, src, 8); break;
    default: memcpy(dst, src, es); break;
  }
}
/* General N-D permutation of bytes: dst[perm-order] = src. dims are the source dims; dst dims are
 * dims[perm[i]]. Merges contiguous axis runs and uses a blocked path for (batched) 2-D transposes. */
void keel_tt_transpose(const void *src, void *dst, size_t es, const int64_t *dims, int nd, const int *perm);
/* Copy a tensor broadcast from in_dims (right-aligned, numpy rules already checked) to out_dims. */
void keel_tt_broadcast_copy(const void *src, const int64_t *in_dims, int in_nd, void *dst, const int64_t *out_dims,
                            int out_nd, size_t es);

/* The family's operator functions, defined across tensor*.c. */
#define KEEL_TT_DECL(name)                                                                                    \
  keel_status *keel_tt_##name##_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out,     \
                                      int n_out);                                                            \
  keel_status *keel_tt_##name##_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out,       \
                                    int n_out, keel_exec *ex);

KEEL_TT_DECL(transpose)
KEEL_TT_DECL(concat)
KEEL_TT_DECL(split)
KEEL_TT_DECL(slice)
KEEL_TT_DECL(expand)
KEEL_TT_DECL(tile)
KEEL_TT_DECL(pad)
KEEL_TT_DECL(center_crop_pad)
KEEL_TT_DECL(depth_to_space)
KEEL_TT_DECL(space_to_depth)
KEEL_TT_DECL(gather)
KEEL_TT_DECL(gather_elements)
KEEL_TT_DECL(gather_nd)
KEEL_TT_DECL(scatter_elements)
KEEL_TT_DECL(scatter_nd)
KEEL_TT_DECL(resize)
size_t keel_tt_resize_workspace(const keel_node *n, const keel_view *in, int n_in, const keel_view *out,
                                int n_out);

#endif
