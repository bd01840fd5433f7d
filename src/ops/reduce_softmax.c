/* Softmax, LogSoftmax, Hardmax, ArgMax/ArgMin and CumSum: operators along one axis.
 *
 * Every one of them views the input as [outer, A, inner] (A the axis length). Softmax before opset 13
 * coerces the input to 2-D at `axis`, which is the same view with A = prod(dims[axis:]) and inner = 1.
 * The float32 inner == 1 case (softmax over the last axis, attention) is the hot one: three passes over a
 * row (max, exp and sum, scale) written in 16-wide blocks the compiler vectorizes, with a polynomial exp
 * (keel_expf_softmax, ops/fast_exp.h) instead of the scalar libm call. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "ops/reduce_impl.h"

/* The build uses -O2, whose "very cheap" vectorizer cost model skips loops that need a scalar tail;
 * these kernels are loops over arbitrary lengths, so let GCC vectorize them with a tail. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("vect-cost-model=dynamic")
#endif

#define SM_BLK 16

typedef struct axis_view {
  int64_t outer, a, inner;
} axis_view;

static keel_status *softmax_axes(const keel_node *n, const keel_view *x, bool v13, axis_view *av) {
  int rank = x->ndim;
  int64_t axis = keel_attr_int(n, "axis", v13 ? -1 : 1);
  int ax;
  if (v13) {
    if (!keel_axis_normalize(axis, rank, &ax))
      return keel_error(KEEL_INVALID_MODEL, "%s: axis %lld is out of range for rank %d", n->op_type,
                        (long long)axis, rank);
  } else {
    /* coerce to 2-D at axis; axis == rank gives [N, 1] and a scalar is one row of one element */
    if (axis < 0) axis += rank;
    if (axis < 0 || axis > rank)
      return keel_error(KEEL_INVALID_MODEL, "%s: axis %lld is out of range for rank %d", n->op_type,
                        (long long)keel_attr_int(n, "axis", 1), rank);
    ax = (int)axis;
  }
  av->outer = 1;
  av->a = 1;
  av->inner = 1;
  for (int d = 0; d < ax; d++) av->outer *= x->dims[d];
  if (v13) {
    av->a = x->dims[ax];
    for (int d = ax + 1; d < rank; d++) av->inner *= x->dims[d];
  } else {
    for (int d = ax; d < rank; d++) av->a *= x->dims[d];
  }
  return NULL;
}

static keel_status *softmax_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                  bool v13) {
  if (n_in != 1 || n_out != 1 || !keel_view_present(&in[0]))
    return keel_error(KEEL_INVALID_MODEL, "%s takes 1 input and 1 output (got %d and %d)", n->op_type, n_in, n_out);
  if (!kr_is_float(in[0].dtype))
    return keel_error(KEEL_UNSUPPORTED, "%s does not support input dtype %s (float types only)", n->op_type,
                      keel_dtype_name(in[0].dtype));
  axis_view av;
  KEEL_TRY(softmax_axes(n, &in[0], v13, &av));
  keel_view_set_shape(&out[0], in[0].dtype, in[0].dims, in[0].ndim);
  return NULL;
}

keel_status *keel_kr_softmax_infer_v1(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  return softmax_infer(n, in, n_in, out, n_out, false);
}
keel_status *keel_kr_softmax_infer_v13(const keel_node *n, const keel_view *in, int n_in, keel_view *out,
                                       int n_out) {
  return softmax_infer(n, in, n_in, out, n_out, true);
}

/* Max and sum per inner position when the axis is not the innermost one (float32 only). */
size_t keel_kr_softmax_ws(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  if (n_in < 1 || in[0].dtype != KEEL_FLOAT32) return 0;
  axis_view av;
  keel_status *s = softmax_axes(n, &in[0], n->opset >= 13, &av);
  if (s) {
    keel_status_free(s);
    return 0;
  }
  return av.inner > 1 ? (size_t)av.inner * 2 * sizeof(float) : 0;
}

/* ---- float32 rows ---- */

static float max_f32(const float *restrict x, int64_t n) {
  float acc[SM_BLK];
  for (int j = 0; j < SM_BLK; j++) acc[j] = -INFINITY;
  int64_t i = 0;
  for (; i + SM_BLK <= n; i += SM_BLK)
    for (int j = 0; j < SM_BLK; j++) acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
  float m = -INFINITY;
  for (int j = 0; j < SM_BLK; j++) m = acc[j] > m ? acc[j] : m;
  for (; i < n; i++) m = x[i] > m ? x[i] : m;
  return m;
}

/* y = exp(x - m); returns the sum (float lanes: 16 partial sums keep the error small). */
static float exp_store_f32(const float *restrict x, float *restrict y, int64_t n, float m) {
  float acc[SM_BLK] = {0};
  int64_t i = 0;
  for (; i + SM_BLK <= n; i += SM_BLK)
    for (int j = 0; j < SM_BLK; j++) {
      float e = keel_expf_softmax(x[i + j] - m);
      y[i + j] = e;
      acc[j] += e;
    }
  float s = 0;
  for (; i < n; i++) {
    float e = keel_expf_softmax(x[i] - m);
    y[i] = e;
    s += e;
  }
  for (int j = 0; j < SM_BLK; j++) s += acc[j];
  return s;
}

static float exp_sum_f32(const float *restrict x, int64_t n, float m) {
  float acc[SM_BLK] = {0};
  int64_t i = 0;
  for (; i + SM_BLK <= n; i += SM_BLK)
    for (int j = 0; j < SM_BLK; j++) acc[j] += keel_expf_softmax(x[i + j] - m);
  float s = 0;
  for (; i < n; i++) s += keel_expf_softmax(x[i] - m);
  for (int j = 0; j < SM_BLK; j++) s += acc[j];
  return s;
}

static void scale_f32(float *restrict y, int64_t n, float k) {
  int64_t i = 0;
  for (; i + SM_BLK <= n; i += SM_BLK)
    for (int j = 0; j < SM_BLK; j++) y[i + j] *= k;
  for (; i < n; i++) y[i] *= k;
}

static void sub_f32(const float *restrict x, float *restrict y, int64_t n, float k) {
  int64_t i = 0;
  for (; i + SM_BLK <= n; i += SM_BLK)
    for (int j = 0; j < SM_BLK; j++) y[i + j] = x[i + j] - k;
  for (; i < n; i++) y[i] = x[i] - k;
}

static void softmax_rows_f32(const float *x, float *y, int64_t rows, int64_t a, bool log_form) {
  for (int64_t r = 0; r < rows; r++, x += a, y += a) {
    float m = max_f32(x, a);
    if (m == -INFINITY) m = 0; /* an all -inf row: exp gives 0s and the result is NaN, as in the formula */
    if (m == INFINITY) {       /* +inf dominates: the formula gives NaN (inf - inf); keep that */
      for (int64_t i = 0; i < a; i++) y[i] = NAN;
      continue;
    }
    if (log_form) {
      float s = exp_sum_f32(x, a, m);
      sub_f32(x, y, a, m + logf(s));
    } else {
      float s = exp_store_f32(x, y, a, m);
      scale_f32(y, a, 1.0f / s);
    }
  }
}

/* axis not innermost: vectorize across the inner positions. ws holds max and sum per inner position. */
static void softmax_strided_f32(const float *restrict x, float *restrict y, const axis_view *av, bool log_form,
                                float *restrict ws) {
  int64_t inner = av->inner, a_len = av->a;
  float *restrict mx = ws, *restrict sm = ws + inner;
  for (int64_t o = 0; o < av->outer; o++) {
    const float *xo = x + o * a_len * inner;
    float *yo = y + o * a_len * inner;
    for (int64_t i = 0; i < inner; i++) mx[i] = -INFINITY, sm[i] = 0;
    for (int64_t a = 0; a < a_len; a++) {
      const float *xr = xo + a * inner;
      for (int64_t i = 0; i < inner; i++) mx[i] = xr[i] > mx[i] ? xr[i] : mx[i];
    }
    for (int64_t i = 0; i < inner; i++)
      if (mx[i] == -INFINITY) mx[i] = 0;
    for (int64_t a = 0; a < a_len; a++) {
      const float *xr = xo + a * inner;
      float *yr = yo + a * inner;
      if (log_form) {
        for (int64_t i = 0; i < inner; i++) sm[i] += keel_expf_softmax(xr[i] - mx[i]);
      } else {
        for (int64_t i = 0; i < inner; i++) {
          float e = keel_expf_softmax(xr[i] - mx[i]);
          yr[i] = e;
          sm[i] += e;
        }
      }
    }
    if (log_form) {
      for (int64_t i = 0; i < inner; i++) sm[i] = mx[i] + logf(sm[i]);
      for (int64_t a = 0; a < a_len; a++) {
        const float *xr = xo + a * inner;
        float *yr = yo + a * inner;
        for (int64_t i = 0; i < inner; i++) yr[i] = xr[i] - sm[i];
      }
    } else {
      for (int64_t i = 0; i < inner; i++) sm[i] = 1.0f / sm[i];
      for (int64_t a = 0; a < a_len; a++) {
        float *yr = yo + a * inner;
        for (int64_t i = 0; i < inner; i++) yr[i] *= sm[i];
      }
    }
    for (int64_t i = 0; i < inner; i++)
      if (mx[i] == INFINITY)
        for (int64_t a = 0; a < a_len; a++) yo[a * inner + i] = NAN;
  }
}

/* Other float types (float64, float16, bfloat16): one strided pass per (outer, inner), in double. */
static void softmax_generic(keel_dtype t, const void *x, void *y, const axis_view *av, bool log_form) {
  for (int64_t o = 0; o < av->outer; o++)
    for (int64_t i = 0; i < av->inner; i++) {
      int64_t base = o * av->a * av->inner + i, st = av->inner;
      double m = -INFINITY;
      for (int64_t a = 0; a < av->a; a++) {
        double v = kr_ld(t, x, base + a * st);
        m = v > m ? v : m;
      }
      if (m == -INFINITY) m = 0;
      double s = 0;
      for (int64_t a = 0; a < av->a; a++) s += exp(kr_ld(t, x, base + a * st) - m);
      double ls = log(s);
      for (int64_t a = 0; a < av->a; a++) {
        double v = kr_ld(t, x, base + a * st) - m;
        kr_st(t, y, base + a * st, m == INFINITY ? NAN : log_form ? v - ls : exp(v) / s);
      }
    }
}

static keel_status *softmax_run(const keel_node *n, const keel_view *in, keel_view *out, keel_exec *ex, bool v13,
                                bool log_form) {
  axis_view av;
  KEEL_TRY(softmax_axes(n, &in[0], v13, &av));
  if (keel_view_numel(&in[0]) == 0) return NULL;
  if (in[0].dtype == KEEL_FLOAT32) {
    if (av.inner == 1) {
      softmax_rows_f32(in[0].data, out[0].data, av.outer, av.a, log_form);
    } else {
      size_t need = (size_t)av.inner * 2 * sizeof(float);
      if (!ex || !ex->workspace || ex->workspace_bytes < need)
        return keel_error(KEEL_INTERNAL, "%s: workspace of %zu bytes expected", n->op_type, need);
      softmax_strided_f32(in[0].data, out[0].data, &av, log_form, ex->workspace);
    }
  } else {
    softmax_generic(in[0].dtype, in[0].data, out[0].data, &av, log_form);
  }
  return NULL;
}

keel_status *keel_kr_softmax_run_v1(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                    keel_exec *ex) {
  return softmax_run(n, in, out, ex, false, false);
}
keel_status *keel_kr_softmax_run_v13(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                     keel_exec *ex) {
  return softmax_run(n, in, out, ex, true, false);
}
keel_status *keel_kr_logsoftmax_run_v1(const keel_node *n, const keel_view *in, int n_in, keel_view *out,
                                       int n_out, keel_exec *ex) {
  return softmax_run(n, in, out, ex, false, true);
}
keel_status *keel_kr_logsoftmax_run_v13(const keel_node *n, const keel_view *in, int n_in, keel_view *out,
                                        int n_out, keel_exec *ex) {
  return softmax_run(n, in, out, ex, true, true);
}

/* Hardmax: 1 at the first maximum along the axis, 0 elsewhere. */
static keel_status *hardmax_run(const keel_node *n, const keel_view *in, keel_view *out, bool v13) {
  axis_view av;
  KEEL_TRY(softmax_axes(n, &in[0], v13, &av));
  keel_dtype t = in[0].dtype;
  int64_t total = keel_view_numel(&in[0]);
  if (total == 0) return NULL;
  memset(out[0].data, 0, keel_view_nbytes(&out[0]));
  for (int64_t o = 0; o < av.outer; o++)
    for (int64_t i = 0; i < av.inner; i++) {
      int64_t base = o * av.a * av.inner + i, st = av.inner;
      int64_t best = 0;
      if (t == KEEL_FLOAT32) {
        const float *x = (const float *)in[0].data + base;
        float bv = x[0];
        for (int64_t a = 1; a < av.a; a++)
          if (x[a * st] > bv) bv = x[a * st], best = a;
      } else {
        double bv = kr_ld(t, in[0].data, base);
        for (int64_t a = 1; a < av.a; a++) {
          double v = kr_ld(t, in[0].data, base + a * st);
          if (v > bv) bv = v, best = a;
        }
      }
      if (av.a > 0) kr_st(t, out[0].data, base + best * st, 1.0);
    }
  return NULL;
}
keel_status *keel_kr_hardmax_run_v1(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                    keel_exec *ex) {
  return hardmax_run(n, in, out, false);
}
keel_status *keel_kr_hardmax_run_v13(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                     keel_exec *ex) {
  return hardmax_run(n, in, out, true);
}

/* ---------------------------------------------------------------------------------------------------- */
/* ArgMax / ArgMin */

static keel_status *arg_axis(const keel_node *n, const keel_view *x, int *ax) {
  int64_t axis = keel_attr_int(n, "axis", 0);
  int rank = x->ndim;
  if (rank == 0 && (axis == 0 || axis == -1)) { /* a scalar: its only element, index 0 */
    *ax = -1;
    return NULL;
  }
  if (!keel_axis_normalize(axis, rank, ax))
    return keel_error(KEEL_INVALID_MODEL, "%s: axis %lld is out of range for rank %d", n->op_type, (long long)axis,
                      rank);
  return NULL;
}

keel_status *keel_kr_arg_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  if (n_in != 1 || n_out != 1 || !keel_view_present(&in[0]))
    return keel_error(KEEL_INVALID_MODEL, "%s takes 1 input and 1 output (got %d and %d)", n->op_type, n_in, n_out);
  keel_dtype t = in[0].dtype;
  if (!kr_is_float(t) && !kr_is_int(t) && t != KEEL_BOOL)
    return keel_error(KEEL_UNSUPPORTED, "%s does not support input dtype %s", n->op_type, keel_dtype_name(t));
  int ax;
  KEEL_TRY(arg_axis(n, &in[0], &ax));
  bool keep = keel_attr_int(n, "keepdims", 1) != 0;
  int64_t dims[KEEL_MAX_DIMS];
  int nd = 0;
  for (int d = 0; d < in[0].ndim; d++) {
    if (d != ax)
      dims[nd++] = in[0].dims[d];
    else if (keep)
      dims[nd++] = 1;
  }
  if (ax >= 0 && in[0].dims[ax] == 0) {
    int64_t rest = 1;
    for (int d = 0; d < nd; d++) rest *= dims[d];
    if (rest > 0)
      return keel_error(KEEL_INVALID_ARGUMENT, "%s: cannot reduce an empty axis %d", n->op_type, ax);
  }
  keel_view_set_shape(&out[0], KEEL_INT64, dims, nd);
  return NULL;
}

/* Scan along the axis; for inner > 1 the running best index of each inner position lives in y and the
 * row is compared against x at that index, so the input is read row by row (cache friendly). */
#define KR_ARG_IMPL(SUF, T)                                                                          \
  static void arg_##SUF(const T *restrict x, int64_t outer, int64_t alen, int64_t inner, bool want_max, bool last, \
                        int64_t *restrict y) {                                                               \
    for (int64_t o = 0; o < outer; o++) {                                                           \
      const T *xo = x + o * alen * inner;                                                           \
      int64_t *yo = y + o * inner;                                                                  \
      for (int64_t i = 0; i < inner; i++) yo[i] = 0;                                                \
      for (int64_t a = 1; a < alen; a++) {                                                          \
        const T *xr = xo + a * inner;                                                               \
        for (int64_t i = 0; i < inner; i++) {                                                       \
          T v = xr[i], b = xo[yo[i] * inner + i];                                                   \
          bool better = want_max ? (last ? v >= b : v > b) : (last ? v <= b : v < b);               \
          if (better) yo[i] = a;                                                                    \
        }                                                                                           \
      }                                                                                             \
    }                                                                                               \
  }
KR_ARG_IMPL(f32, float)
KR_ARG_IMPL(f64, double)
KR_ARG_IMPL(i8, int8_t)
KR_ARG_IMPL(u8, uint8_t)
KR_ARG_IMPL(i16, int16_t)
KR_ARG_IMPL(u16, uint16_t)
KR_ARG_IMPL(i32, int32_t)
KR_ARG_IMPL(u32, uint32_t)
KR_ARG_IMPL(i64, int64_t)
KR_ARG_IMPL(u64, uint64_t)

static void arg_generic(keel_dtype t, const void *x, int64_t outer, int64_t alen, int64_t inner, bool want_max,
                        bool last, int64_t *y) {
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      int64_t base = o * alen * inner + i, best = 0;
      double b = kr_ld(t, x, base);
      for (int64_t a = 1; a < alen; a++) {
        double v = kr_ld(t, x, base + a * inner);
        bool better = want_max ? (last ? v >= b : v > b) : (last ? v <= b : v < b);
        if (better) b = v, best = a;
      }
      y[o * inner + i] = best;
    }
}

static keel_status *arg_run(const keel_node *n, const keel_view *in, keel_view *out, bool want_max) {
  int ax;
  KEEL_TRY(arg_axis(n, &in[0], &ax));
  bool last = keel_attr_int(n, "select_last_index", 0) != 0;
  const keel_view *x = &in[0];
  int64_t outer = 1, alen = 1, inner = 1;
  if (ax >= 0) {
    for (int d = 0; d < ax; d++) outer *= x->dims[d];
    alen = x->dims[ax];
    for (int d = ax + 1; d < x->ndim; d++) inner *= x->dims[d];
  }
  if (outer * inner == 0) return NULL;
  if (alen == 0) return keel_error(KEEL_INVALID_ARGUMENT, "%s: cannot reduce an empty axis %d", n->op_type, ax);
  int64_t *y = out[0].data;
  switch (x->dtype) {
    case KEEL_FLOAT32: arg_f32(x->data, outer, alen, inner, want_max, last, y); break;
    case KEEL_FLOAT64: arg_f64(x->data, outer, alen, inner, want_max, last, y); break;
    case KEEL_INT8: arg_i8(x->data, outer, alen, inner, want_max, last, y); break;
    case KEEL_UINT8: case KEEL_BOOL: arg_u8(x->data, outer, alen, inner, want_max, last, y); break;
    case KEEL_INT16: arg_i16(x->data, outer, alen, inner, want_max, last, y); break;
    case KEEL_UINT16: arg_u16(x->data, outer, alen, inner, want_max, last, y); break;
    case KEEL_INT32: arg_i32(x->data, outer, alen, inner, want_max, last, y); break;
    case KEEL_UINT32: arg_u32(x->data, outer, alen, inner, want_max, last, y); break;
    case KEEL_INT64: arg_i64(x->data, outer, alen, inner, want_max, last, y); break;
    case KEEL_UINT64: arg_u64(x->data, outer, alen, inner, want_max, last, y); break;
    default: arg_generic(x->dtype, x->data, outer, alen, inner, want_max, last, y); break;
  }
  return NULL;
}

keel_status *keel_kr_argmax_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                keel_exec *ex) {
  return arg_run(n, in, out, true);
}
keel_status *keel_kr_argmin_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                keel_exec *ex) {
  return arg_run(n, in, out, false);
}

/* ---------------------------------------------------------------------------------------------------- */
/* CumSum */

keel_status *keel_kr_cumsum_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  if (n_in != 2 || n_out != 1 || !keel_view_present(&in[0]) || !keel_view_present(&in[1]))
    return keel_error(KEEL_INVALID_MODEL, "CumSum takes inputs x and axis and 1 output (got %d and %d)", n_in, n_out);
  keel_dtype t = in[0].dtype;
  if (!kr_is_float(t) && !kr_is_int(t))
    return keel_error(KEEL_UNSUPPORTED, "CumSum does not support input dtype %s", keel_dtype_name(t));
  if (in[1].dtype != KEEL_INT32 && in[1].dtype != KEEL_INT64)
    return keel_error(KEEL_INVALID_MODEL, "CumSum: axis must be int32 or int64, got %s", keel_dtype_name(in[1].dtype));
  if (keel_view_numel(&in[1]) != 1 || in[1].ndim > 1)
    return keel_error(KEEL_INVALID_MODEL, "CumSum: axis must be a scalar");
  if (in[1].data) {
    int ax;
    int64_t axis = keel_view_get_i64(&in[1], 0);
    if (!keel_axis_normalize(axis, in[0].ndim, &ax))
      return keel_error(KEEL_INVALID_MODEL, "CumSum: axis %lld is out of range for rank %d", (long long)axis,
                        in[0].ndim);
  }
  keel_view_set_shape(&out[0], t, in[0].dims, in[0].ndim);
  return NULL;
}

/* Forward inclusive: y[a] = y[a-1] + x[a]; exclusive: y[a] = y[a-1] + x[a-1]; reverse walks a backwards.
 * The running sums live in y itself, so the inner positions are processed as contiguous rows. */
#define KR_CUMSUM_IMPL(SUF, T)                                                                        \
  static void cumsum_##SUF(const T *restrict x, T *restrict y, int64_t outer, int64_t alen, int64_t inner, bool excl,    \
                           bool rev) {                                                                \
    for (int64_t o = 0; o < outer; o++) {                                                             \
      const T *xo = x + o * alen * inner;                                                             \
      T *yo = y + o * alen * inner;                                                                   \
      for (int64_t k = 0; k < alen; k++) {                                                            \
        int64_t a = rev ? alen - 1 - k : k, prev = rev ? a + 1 : a - 1;                               \
        T *yr = yo + a * inner;                                                                       \
        if (k == 0) {                                                                                 \
          if (excl)                                                                                   \
            for (int64_t i = 0; i < inner; i++) yr[i] = 0;                                            \
          else                                                                                        \
            for (int64_t i = 0; i < inner; i++) yr[i] = xo[a * inner + i];                            \
        } else {                                                                                      \
          const T *yp = yo + prev * inner, *xr = xo + (excl ? prev : a) * inner;                      \
          for (int64_t i = 0; i < inner; i++) yr[i] = (T)(yp[i] + xr[i]);                             \
        }                                                                                             \
      }                                                                                               \
    }                                                                                                 \
  }
KR_CUMSUM_IMPL(f32, float)
KR_CUMSUM_IMPL(f64, double)
/* Signed integers go through their unsigned twins, which wrap without undefined behaviour. */
KR_CUMSUM_IMPL(u8, uint8_t)
KR_CUMSUM_IMPL(u16, uint16_t)
KR_CUMSUM_IMPL(u32, uint32_t)
KR_CUMSUM_IMPL(u64, uint64_t)

static void cumsum_generic(keel_dtype t, const void *x, void *y, int64_t outer, int64_t alen, int64_t inner,
                           bool excl, bool rev) {
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      double s = 0;
      for (int64_t k = 0; k < alen; k++) {
        int64_t a = rev ? alen - 1 - k : k, idx = (o * alen + a) * inner + i;
        double v = kr_ld(t, x, idx);
        if (excl) {
          kr_st(t, y, idx, s);
          s += v;
        } else {
          s += v;
          kr_st(t, y, idx, s);
        }
      }
    }
}

keel_status *keel_kr_cumsum_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                keel_exec *ex) {
  const keel_view *x = &in[0];
  if (!in[1].data) return keel_error(KEEL_INTERNAL, "CumSum: axis value missing at run time");
  int64_t axis = keel_view_get_i64(&in[1], 0);
  int ax;
  if (!keel_axis_normalize(axis, x->ndim, &ax))
    return keel_error(KEEL_INVALID_ARGUMENT, "CumSum: axis %lld is out of range for rank %d", (long long)axis,
                      x->ndim);
  bool excl = keel_attr_int(n, "exclusive", 0) != 0, rev = keel_attr_int(n, "reverse", 0) != 0;
  int64_t outer = 1, alen = x->dims[ax], inner = 1;
  for (int d = 0; d < ax; d++) outer *= x->dims[d];
  for (int d = ax + 1; d < x->ndim; d++) inner *= x->dims[d];
  if (outer * alen * inner == 0) return NULL;
  void *y = out[0].data;
  switch (x->dtype) {
    case KEEL_FLOAT32: cumsum_f32(x->data, y, outer, alen, inner, excl, rev); break;
    case KEEL_FLOAT64: cumsum_f64(x->data, y, outer, alen, inner, excl, rev); break;
    case KEEL_INT64: case KEEL_UINT64: cumsum_u64(x->data, y, outer, alen, inner, excl, rev); break;
    case KEEL_INT32: case KEEL_UINT32: cumsum_u32(x->data, y, outer, alen, inner, excl, rev); break;
    case KEEL_INT16: case KEEL_UINT16: cumsum_u16(x->data, y, outer, alen, inner, excl, rev); break;
    case KEEL_INT8: case KEEL_UINT8: cumsum_u8(x->data, y, outer, alen, inner, excl, rev); break;
    default: cumsum_generic(x->dtype, x->data, y, outer, alen, inner, excl, rev); break;
  }
  return NULL;
}
