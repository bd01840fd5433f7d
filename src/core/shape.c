/* Checked shape arithmetic. */
#include "core/shape.h"

bool keel_mul_i64(int64_t a, int64_t b, int64_t *out) {
  if (a < 0 || b < 0) return false;
  if (a != 0 && b > INT64_MAX / a) return false;
  *out = a * b;
  return true;
}

bool keel_add_i64(int64_t a, int64_t b, int64_t *out) {
  if (a < 0 || b < 0 || a > INT64_MAX - b) return false;
  *out = a + b;
  return true;
}

bool keel_shape_numel(const int64_t *dims, int ndim, int64_t *out) {
  int64_t n = 1;
  if (ndim < 0) return false;
  for (int i = 0; i < ndim; i++)
    if (!keel_mul_i64(n, dims[i], &n)) return false;
  *out = n;
  return true;
}

bool keel_shape_nbytes(int64_t numel, size_t elem_size, size_t *out) {
  if (numel < 0) return false;
  if (elem_size && (uint64_t)numel > SIZE_MAX / elem_size) return false;
  *out = (size_t)numel * elem_size;
  return true;
}

bool keel_shape_equal(const int64_t *a, int na, const int64_t *b, int nb) {
  if (na != nb) return false;
  for (int i = 0; i < na; i++)
    if (a[i] != b[i]) return false;
  return true;
}

bool keel_shape_broadcast(const int64_t *a, int na, const int64_t *b, int nb, int64_t *out, int *nout) {
  int n = na > nb ? na : nb;
  if (n > KEEL_MAX_DIMS) return false;
  int64_t tmp[KEEL_MAX_DIMS];
  for (int i = 0; i < n; i++) {
    int ia = i - (n - na), ib = i - (n - nb);
    int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    if (da == db || db == 1) tmp[i] = da;
    else if (da == 1) tmp[i] = db;
    else return false;
  }
  for (int i = 0; i < n; i++) out[i] = tmp[i];
  *nout = n;
  return true;
}

bool keel_axis_normalize(int64_t axis, int rank, int *out) {
  if (axis < -(int64_t)rank || axis >= rank) return false;
  *out = (int)(axis < 0 ? axis + rank : axis);
  return true;
}
