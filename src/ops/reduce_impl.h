/* Internal to the reduce family (reduce.c, reduce_*.c): shared helpers and the kernels that the table in
 * reduce.c points at. */
#ifndef KEEL_OPS_REDUCE_IMPL_H
#define KEEL_OPS_REDUCE_IMPL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ops/fast_exp.h"
#include "ops/op.h"

/* ---- element access by dtype (generic, slower paths) ---- */

static inline bool kr_is_float(keel_dtype t) {
  return t == KEEL_FLOAT32 || t == KEEL_FLOAT64 || t == KEEL_FLOAT16 || t == KEEL_BFLOAT16;
}
static inline bool kr_is_int(keel_dtype t) {
  switch (t) {
    case KEEL_INT8: case KEEL_UINT8: case KEEL_INT16: case KEEL_UINT16:
    case KEEL_INT32: case KEEL_UINT32: case KEEL_INT64: case KEEL_UINT64:
      return true;
    default:
      return false;
  }
}

/* Load element i as double (any numeric dtype, bool as 0/1). */
static inline double kr_ld(keel_dtype t, const void *p, int64_t i) {
  const char *c = p;
  switch (t) {
    case KEEL_FLOAT32: { float x; memcpy(&x, c + i * 4, 4); return x; }
    case KEEL_FLOAT64: { double x; memcpy(&x, c + i * 8, 8); return x; }
    case KEEL_FLOAT16: { uint16_t x; memcpy(&x, c + i * 2, 2); return keel_half_to_float(x); }
    case KEEL_BFLOAT16: { uint16_t x; memcpy(&x, c + i * 2, 2); return keel_bfloat16_to_float(x); }
    case KEEL_INT8: return ((const int8_t *)p)[i];
    case KEEL_UINT8: case KEEL_BOOL: return ((const uint8_t *)p)[i];
    case KEEL_INT16: { int16_t x; memcpy(&x, c + i * 2, 2); return x; }
    case KEEL_UINT16: { uint16_t x; memcpy(&x, c + i * 2, 2); return x; }
    case KEEL_INT32: { int32_t x; memcpy(&x, c + i * 4, 4); return x; }
    case KEEL_UINT32: { uint32_t x; memcpy(&x, c + i * 4, 4); return x; }
    case KEEL_INT64: { int64_t x; memcpy(&x, c + i * 8, 8); return (double)x; }
    case KEEL_UINT64: { uint64_t x; memcpy(&x, c + i * 8, 8); return (double)x; }
    default: return 0;
  }
}

/* Store a double into element i, converting; integer targets truncate toward zero and saturate (NaN -> 0)
 * so that no out-of-range float-to-int conversion (undefined behaviour) ever happens. */
static inline int64_t kr_sat_i64(double v, double lo, double hi) {
  if (!(v == v)) return 0;
  if (v <= lo) return (int64_t)lo;
  if (v >= hi) return (int64_t)hi;
  return (int64_t)v;
}
static inline void kr_st(keel_dtype t, void *p, int64_t i, double v) {
  char *c = p;
  switch (t) {
    case KEEL_FLOAT32: { float x = (float)v; memcpy(c + i * 4, &x, 4); return; }
    case KEEL_FLOAT64: memcpy(c + i * 8, &v, 8); return;
    case KEEL_FLOAT16: { uint16_t x = keel_float_to_half((float)v); memcpy(c + i * 2, &x, 2); return; }
    case KEEL_BFLOAT16: { uint16_t x = keel_float_to_bfloat16((float)v); memcpy(c + i * 2, &x, 2); return; }
    case KEEL_INT8: ((int8_t *)p)[i] = (int8_t)kr_sat_i64(v, -128, 127); return;
    case KEEL_UINT8: ((uint8_t *)p)[i] = (uint8_t)kr_sat_i64(v, 0, 255); return;
    case KEEL_BOOL: ((uint8_t *)p)[i] = v != 0; return;
    case KEEL_INT16: { int16_t x = (int16_t)kr_sat_i64(v, -32768, 32767); memcpy(c + i * 2, &x, 2); return; }
    case KEEL_UINT16: { uint16_t x = (uint16_t)kr_sat_i64(v, 0, 65535); memcpy(c + i * 2, &x, 2); return; }
    case KEEL_INT32: { int32_t x = (int32_t)kr_sat_i64(v, -2147483648.0, 2147483647.0); memcpy(c + i * 4, &x, 4); return; }
    case KEEL_UINT32: { uint32_t x = (uint32_t)kr_sat_i64(v, 0, 4294967295.0); memcpy(c + i * 4, &x, 4); return; }
    case KEEL_INT64: { int64_t x = kr_sat_i64(v, -9223372036854775808.0, 9223372036854774784.0); memcpy(c + i * 8, &x, 8); return; }
    case KEEL_UINT64: {
      uint64_t x = (v == v && v > 0) ? (v >= 18446744073709549568.0 ? UINT64_MAX : (uint64_t)v) : 0;
      memcpy(c + i * 8, &x, 8);
      return;
    }
    default: return;
  }
}


/* ---- kernels defined in reduce_*.c ---- */
keel_status *keel_kr_softmax_infer_v1(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out);
keel_status *keel_kr_softmax_infer_v13(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out);
size_t keel_kr_softmax_ws(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out);
keel_status *keel_kr_softmax_run_v1(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out, keel_exec *ex);
keel_status *keel_kr_softmax_run_v13(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out, keel_exec *ex);
keel_status *keel_kr_logsoftmax_run_v1(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out, keel_exec *ex);
keel_status *keel_kr_logsoftmax_run_v13(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out, keel_exec *ex);
keel_status *keel_kr_hardmax_run_v1(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out, keel_exec *ex);
keel_status *keel_kr_hardmax_run_v13(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out, keel_exec *ex);

keel_status *keel_kr_arg_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out);
keel_status *keel_kr_argmax_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out, keel_exec *ex);
keel_status *keel_kr_argmin_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out, keel_exec *ex);

keel_status *keel_kr_cumsum_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out);
keel_status *keel_kr_cumsum_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out, keel_exec *ex);

keel_status *keel_kr_topk_infer_v1(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out);
keel_status *keel_kr_topk_infer_v10(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out);
size_t keel_kr_topk_ws(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out);
keel_status *keel_kr_topk_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out, keel_exec *ex);

keel_status *keel_kr_einsum_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out);
keel_status *keel_kr_einsum_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out, keel_exec *ex);

keel_status *keel_kr_det_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out);
size_t keel_kr_det_ws(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out);
keel_status *keel_kr_det_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out, keel_exec *ex);

#endif
