/* Small helpers shared by operator implementations. */
#include <string.h>

#include "ops/op.h"
#include "runtime/plan.h"

_Thread_local bool keel_tls_needs_value;
_Alignas(64) char keel_empty_workspace[64];

int64_t keel_view_numel(const keel_view *v) {
  int64_t n = 1;
  for (int i = 0; i < v->ndim; i++) n *= v->dims[i];
  return n;
}

size_t keel_view_nbytes(const keel_view *v) { return (size_t)keel_view_numel(v) * keel_dtype_size(v->dtype); }

bool keel_view_present(const keel_view *v) { return v->dtype != KEEL_DTYPE_UNDEFINED; }

int64_t keel_view_get_i64(const keel_view *v, int64_t i) {
  const char *p = v->data;
  switch (v->dtype) {
    case KEEL_INT64: { int64_t x; memcpy(&x, p + i * 8, 8); return x; }
    case KEEL_INT32: { int32_t x; memcpy(&x, p + i * 4, 4); return x; }
    case KEEL_INT16: { int16_t x; memcpy(&x, p + i * 2, 2); return x; }
    case KEEL_INT8: return ((const int8_t *)p)[i];
    case KEEL_UINT8: case KEEL_BOOL: return ((const uint8_t *)p)[i];
    case KEEL_UINT16: { uint16_t x; memcpy(&x, p + i * 2, 2); return x; }
    case KEEL_UINT32: { uint32_t x; memcpy(&x, p + i * 4, 4); return x; }
    case KEEL_UINT64: { uint64_t x; memcpy(&x, p + i * 8, 8); return (int64_t)x; }
    case KEEL_FLOAT32: case KEEL_FLOAT64: case KEEL_FLOAT16: case KEEL_BFLOAT16: {
      double d = keel_view_get_f64(v, i);
      /* saturate instead of the undefined behaviour of an out-of-range conversion */
      if (!(d == d)) return 0;
      if (d >= 9.2233720368547758e18) return INT64_MAX;
      if (d <= -9.2233720368547758e18) return INT64_MIN;
      return (int64_t)d;
    }
    default: return 0; /* callers validate dtypes; never recurse on types neither side knows */
  }
}

double keel_view_get_f64(const keel_view *v, int64_t i) {
  const char *p = v->data;
  switch (v->dtype) {
    case KEEL_FLOAT32: { float x; memcpy(&x, p + i * 4, 4); return x; }
    case KEEL_FLOAT64: { double x; memcpy(&x, p + i * 8, 8); return x; }
    case KEEL_FLOAT16: { uint16_t x; memcpy(&x, p + i * 2, 2); return keel_half_to_float(x); }
    case KEEL_BFLOAT16: { uint16_t x; memcpy(&x, p + i * 2, 2); return keel_bfloat16_to_float(x); }
    case KEEL_INT64: case KEEL_INT32: case KEEL_INT16: case KEEL_INT8: case KEEL_UINT8: case KEEL_BOOL:
    case KEEL_UINT16: case KEEL_UINT32: case KEEL_UINT64:
      return (double)keel_view_get_i64(v, i);
    default: return 0;
  }
}

void keel_view_set_shape(keel_view *v, keel_dtype dtype, const int64_t *dims, int ndim) {
  v->dtype = dtype;
  v->ndim = ndim;
  for (int i = 0; i < ndim; i++) v->dims[i] = dims[i];
}

keel_status *keel_need_value(const keel_node *n, int input) {
  keel_tls_needs_value = true;
  return keel_error(KEEL_UNSUPPORTED,
                    "the output shape depends on the values of input %d, which are only known at run time "
                    "(data-dependent shapes are not supported here yet)",
                    input);
}
