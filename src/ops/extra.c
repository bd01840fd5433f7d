/* Operator family: extra. Small operators of recent opsets here (CumProd, BitCast, TensorScatter, Swish);
 * DeformConv in extra_deform.c; Unique and NonMaxSuppression, whose output shapes depend on the data, in
 * extra_dynamic.c. */
#include <math.h>
#include <string.h>

#include "ops/attention_internal.h"

/* ---------------------------------------------------------------------------------------------------- */
/* CumProd (26): running product along `axis` (an input), optionally exclusive (shifted by one, starting at
 * 1) and/or reversed. Integers wrap as their type does (products run in uint64 and are truncated); floats
 * accumulate in double and round once per element. */

static bool cumprod_dtype(keel_dtype t) {
  return keel_elem_is_float(t) || t == KEEL_INT32 || t == KEEL_INT64 || t == KEEL_UINT32 || t == KEEL_UINT64;
}

static keel_status *cumprod_infer(AT_IN) {
  if (n_in != 2 || !keel_view_present(&in[0]) || !keel_view_present(&in[1]) || n_out != 1)
    return keel_error(KEEL_INVALID_MODEL, "CumProd takes x and axis and has 1 output");
  if (!cumprod_dtype(in[0].dtype))
    return keel_error(KEEL_UNSUPPORTED, "CumProd: dtype %s is not supported", keel_dtype_name(in[0].dtype));
  if ((in[1].dtype != KEEL_INT32 && in[1].dtype != KEEL_INT64) || in[1].ndim > 1 || keel_view_numel(&in[1]) != 1)
    return keel_error(KEEL_INVALID_MODEL, "CumProd: axis must be an int32/int64 scalar");
  if (in[0].ndim == 0) return keel_error(KEEL_INVALID_MODEL, "CumProd: x must have rank >= 1");
  keel_view_set_shape(&out[0], in[0].dtype, in[0].dims, in[0].ndim);
  return NULL;
}

static keel_status *cumprod_run(AT_RUN) {
  const keel_view *x = &in[0];
  int64_t a = keel_view_get_i64(&in[1], 0);
  int axis;
  if (!keel_axis_normalize(a, x->ndim, &axis))
    return keel_error(KEEL_INVALID_ARGUMENT, "CumProd: axis %lld is out of range for rank %d", (long long)a, x->ndim);
  bool excl = keel_attr_int(n, "exclusive", 0) != 0, rev = keel_attr_int(n, "reverse", 0) != 0;
  int64_t outer = 1, A = x->dims[axis], inner = 1;
  for (int d = 0; d < axis; d++) outer *= x->dims[d];
  for (int d = axis + 1; d < x->ndim; d++) inner *= x->dims[d];
  keel_dtype t = x->dtype;
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      double pf = 1;
      uint64_t pu = 1;
      for (int64_t k = 0; k < A; k++) {
        int64_t e = (o * A + (rev ? A - 1 - k : k)) * inner + i;
        double vf = 0;
        uint64_t vu = 0;
        switch (t) {
          case KEEL_INT32: vu = (uint64_t)(int64_t)((const int32_t *)x->data)[e]; break;
          case KEEL_INT64: vu = (uint64_t)((const int64_t *)x->data)[e]; break;
          case KEEL_UINT32: vu = ((const uint32_t *)x->data)[e]; break;
          case KEEL_UINT64: vu = ((const uint64_t *)x->data)[e]; break;
          default: vf = keel_elem_load(t, x->data, e); break;
        }
        if (!excl) pf *= vf, pu *= vu;
        switch (t) {
          case KEEL_INT32: ((int32_t *)out[0].data)[e] = (int32_t)(uint32_t)pu; break;
          case KEEL_INT64: ((int64_t *)out[0].data)[e] = (int64_t)pu; break;
          case KEEL_UINT32: ((uint32_t *)out[0].data)[e] = (uint32_t)pu; break;
          case KEEL_UINT64: ((uint64_t *)out[0].data)[e] = pu; break;
          default: keel_elem_store(t, out[0].data, e, pf); break;
        }
        if (excl) pf *= vf, pu *= vu;
      }
    }
  return NULL;
}

/* ---------------------------------------------------------------------------------------------------- */
/* BitCast (26): the same bytes under another type of the same width (little-endian host assumed). */

static keel_status *bitcast_infer(AT_IN) {
  if (n_in != 1 || !keel_view_present(&in[0]) || n_out != 1)
    return keel_error(KEEL_INVALID_MODEL, "BitCast takes 1 input and has 1 output");
  int64_t to = keel_attr_int(n, "to", 0);
  keel_dtype t = (keel_dtype)to;
  size_t si = keel_dtype_size(in[0].dtype), so = (to > 0 && to <= KEEL_BFLOAT16) ? keel_dtype_size(t) : 0;
  if (si == 0 || in[0].dtype == KEEL_STRING || in[0].dtype == KEEL_COMPLEX64 || in[0].dtype == KEEL_COMPLEX128)
    return keel_error(KEEL_UNSUPPORTED, "BitCast: input dtype %s is not supported", keel_dtype_name(in[0].dtype));
  if (so == 0 || t == KEEL_STRING || t == KEEL_COMPLEX64 || t == KEEL_COMPLEX128)
    return keel_error(KEEL_UNSUPPORTED, "BitCast: target type %lld is not supported", (long long)to);
  if (si != so)
    return keel_error(KEEL_INVALID_MODEL, "BitCast: %s (%zu bytes) and %s (%zu bytes) differ in width",
                      keel_dtype_name(in[0].dtype), si, keel_dtype_name(t), so);
  keel_view_set_shape(&out[0], t, in[0].dims, in[0].ndim);
  return NULL;
}

static keel_status *bitcast_run(AT_RUN) {
  size_t nb = keel_view_nbytes(&in[0]);
  if (out[0].data != in[0].data && nb) memcpy(out[0].data, in[0].data, nb);
  return NULL;
}

/* ---------------------------------------------------------------------------------------------------- */
/* TensorScatter (24): present = past with `update` written along `axis` at write_indices[batch] (linear), or
 * modulo the cache length (circular). */

static keel_status *tscatter_check(const keel_node *n, const keel_view *in, int n_in, int *axis) {
  if (n_in < 2 || !keel_view_present(&in[0]) || !keel_view_present(&in[1]))
    return keel_error(KEEL_INVALID_MODEL, "TensorScatter needs past_cache and update");
  const keel_view *c = &in[0], *u = &in[1];
  if (keel_dtype_size(c->dtype) == 0 || u->dtype != c->dtype)
    return keel_error(KEEL_INVALID_MODEL, "TensorScatter: past_cache and update dtypes %s/%s",
                      keel_dtype_name(c->dtype), keel_dtype_name(u->dtype));
  int64_t a = keel_attr_int(n, "axis", -2);
  if (c->ndim < 2 || !keel_axis_normalize(a, c->ndim, axis) || *axis == 0)
    return keel_error(KEEL_INVALID_MODEL, "TensorScatter: axis %lld is invalid for rank %d (not the batch axis)",
                      (long long)a, c->ndim);
  if (u->ndim != c->ndim)
    return keel_error(KEEL_INVALID_MODEL, "TensorScatter: update rank %d differs from the cache's %d", u->ndim, c->ndim);
  for (int d = 0; d < c->ndim; d++)
    if (d != *axis ? u->dims[d] != c->dims[d] : u->dims[d] > c->dims[d])
      return keel_error(KEEL_INVALID_MODEL, "TensorScatter: update dim %d is %lld against the cache's %lld", d,
                        (long long)u->dims[d], (long long)c->dims[d]);
  if (n_in > 2 && keel_view_present(&in[2])) {
    const keel_view *w = &in[2];
    if (w->dtype != KEEL_INT64 || w->ndim != 1 || w->dims[0] != c->dims[0])
      return keel_error(KEEL_INVALID_MODEL, "TensorScatter: write_indices must be int64 (%lld)", (long long)c->dims[0]);
  }
  const char *mode = keel_attr_string(n, "mode", "linear");
  if (strcmp(mode, "linear") && strcmp(mode, "circular"))
    return keel_error(KEEL_INVALID_MODEL, "TensorScatter: unknown mode '%s'", mode);
  return NULL;
}

static keel_status *tscatter_infer(AT_IN) {
  int axis;
  KEEL_TRY(tscatter_check(n, in, n_in, &axis));
  if (n_out != 1) return keel_error(KEEL_INVALID_MODEL, "TensorScatter has 1 output, got %d", n_out);
  keel_view_set_shape(&out[0], in[0].dtype, in[0].dims, in[0].ndim);
  return NULL;
}

static keel_status *tscatter_run(AT_RUN) {
  int axis;
  KEEL_TRY(tscatter_check(n, in, n_in, &axis));
  const keel_view *c = &in[0], *u = &in[1];
  const keel_view *wi = n_in > 2 && keel_view_present(&in[2]) ? &in[2] : NULL;
  bool circ = !strcmp(keel_attr_string(n, "mode", "linear"), "circular");
  size_t es = keel_dtype_size(c->dtype);
  int64_t B = c->dims[0], mid = 1, M = c->dims[axis], S = u->dims[axis], inner = 1;
  for (int d = 1; d < axis; d++) mid *= c->dims[d];
  for (int d = axis + 1; d < c->ndim; d++) inner *= c->dims[d];
  size_t row = (size_t)inner * es;
  /* check every index before writing anything */
  for (int64_t b = 0; wi && !circ && b < B; b++) {
    int64_t w0 = keel_view_get_i64(wi, b);
    if (w0 < 0 || w0 + S > M)
      return keel_error(KEEL_INVALID_ARGUMENT, "TensorScatter: write_indices[%lld] = %lld plus %lld rows exceeds %lld",
                        (long long)b, (long long)w0, (long long)S, (long long)M);
  }
  if (out[0].data != c->data) memcpy(out[0].data, c->data, keel_view_nbytes(c));
  if (M == 0) return NULL;
  for (int64_t b = 0; b < B; b++) {
    int64_t w0 = wi ? keel_view_get_i64(wi, b) : 0;
    for (int64_t m = 0; m < mid; m++)
      for (int64_t s = 0; s < S; s++) {
        int64_t pos = w0 + s;
        if (circ) pos = ((pos % M) + M) % M;
        memcpy((char *)out[0].data + (size_t)((b * mid + m) * M + pos) * row,
               (const char *)u->data + (size_t)((b * mid + m) * S + s) * row, row);
      }
  }
  return NULL;
}

/* ---------------------------------------------------------------------------------------------------- */
/* Swish (24): x * sigmoid(alpha * x). */

static keel_status *swish_infer(AT_IN) {
  if (n_in != 1 || !keel_view_present(&in[0]) || n_out != 1)
    return keel_error(KEEL_INVALID_MODEL, "Swish takes 1 input and has 1 output");
  if (!keel_elem_is_float(in[0].dtype))
    return keel_error(KEEL_UNSUPPORTED, "Swish: dtype %s (float types only)", keel_dtype_name(in[0].dtype));
  keel_view_set_shape(&out[0], in[0].dtype, in[0].dims, in[0].ndim);
  return NULL;
}

static keel_status *swish_run(AT_RUN) {
  float alpha = keel_attr_float(n, "alpha", 1.0f);
  int64_t cnt = keel_view_numel(&in[0]);
  keel_dtype t = in[0].dtype;
  if (t == KEEL_FLOAT32) {
    const float *x = in[0].data;
    float *y = out[0].data;
    for (int64_t i = 0; i < cnt; i++) y[i] = x[i] / (1.0f + expf(-alpha * x[i]));
    return NULL;
  }
  for (int64_t i = 0; i < cnt; i++) {
    double x = keel_elem_load(t, in[0].data, i);
    keel_elem_store(t, out[0].data, i, x / (1.0 + exp(-(double)alpha * x)));
  }
  return NULL;
}

const keel_op_def keel_ops_extra[] = {
    {"CumProd", "", 26, KEEL_MAX_OPSET, cumprod_infer, cumprod_run, NULL, -1},
    {"BitCast", "", 26, KEEL_MAX_OPSET, bitcast_infer, bitcast_run, NULL, 0},
    {"TensorScatter", "", 24, KEEL_MAX_OPSET, tscatter_infer, tscatter_run, NULL, 0},
    {"Swish", "", 24, KEEL_MAX_OPSET, swish_infer, swish_run, NULL, 0},
    {"DeformConv", "", 19, KEEL_MAX_OPSET, keel_at_deform_infer, keel_at_deform_run, keel_at_deform_ws, -1},
    {"Unique", "", 11, KEEL_MAX_OPSET, keel_at_unique_infer, keel_at_unique_run, keel_at_unique_ws, -1},
    {"NonMaxSuppression", "", 10, KEEL_MAX_OPSET, keel_at_nms_infer, keel_at_nms_run, keel_at_nms_ws, -1},
};
const int keel_ops_extra_count = (int)(sizeof keel_ops_extra / sizeof keel_ops_extra[0]);
