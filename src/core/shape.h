/* Shapes and checked size arithmetic. Overflow is an error, never a wrap. */
#ifndef KEEL_CORE_SHAPE_H
#define KEEL_CORE_SHAPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <keel/tensor.h>

/* Checked a*b and a+b on non-negative int64; return false on overflow. */
bool keel_mul_i64(int64_t a, int64_t b, int64_t *out);
bool keel_add_i64(int64_t a, int64_t b, int64_t *out);
/* Number of elements; false on overflow or negative dim. */
bool keel_shape_numel(const int64_t *dims, int ndim, int64_t *out);
/* Bytes for numel elements of `elem_size`; false on overflow of size_t. */
bool keel_shape_nbytes(int64_t numel, size_t elem_size, size_t *out);
bool keel_shape_equal(const int64_t *a, int na, const int64_t *b, int nb);
/* numpy-style broadcast of two shapes into out (rank max(na,nb)); false if incompatible. */
bool keel_shape_broadcast(const int64_t *a, int na, const int64_t *b, int nb, int64_t *out, int *nout);
/* Normalize a possibly negative axis against rank; false if out of range. */
bool keel_axis_normalize(int64_t axis, int rank, int *out);

#endif
