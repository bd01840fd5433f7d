/* Operator family: tensor (shape and data-movement operators).
 *
 * This file holds the operators that only reinterpret or generate data (Reshape, Shape, Range...) and the
 * family table. Data movement kernels live in tensor_move.c, indexing in tensor_index.c, Resize in
 * tensor_resize.c; helpers in tensor_util.c. Everything works on bytes unless arithmetic is needed. */
#include <math.h>

#include "ops/tensor_util.h"

/* Marks the error as "needs values" so planning falls back to the interpreter, which knows them. */
#define DDS_ERROR(what)                                                                                    \
  (keel_tls_needs_value = true,                                                                            \
   keel_error(KEEL_UNSUPPORTED, "data-dependent output shape: %s is only known at run time", what))

/* ---- aliasing operators: Reshape, Flatten, Squeeze, Unsqueeze, Identity ---- */

/* The planner may alias output 0 to input 0: copy only when the buffers differ. */
static keel_status *alias_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                              keel_exec *ex) {
  size_t bytes = keel_view_nbytes(&in[0]);
  if (bytes && out[0].data != in[0].data) memcpy(out[0].data, in[0].data, bytes);
  return NULL;
}

static keel_status *need_input(const keel_view *in, int n_in, int i, const char *what) {
  if (i >= n_in || !keel_view_present(&in[i])) return keel_error(KEEL_INVALID_MODEL, "required input %d (%s) is missing", i, what);
  return NULL;
}

static keel_status *reshape_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  int64_t shape[KEEL_MAX_DIMS], numel;
  int cnt;
  KEEL_TRY(need_input(in, n_in, 0, "data"));
  KEEL_TRY(keel_tt_numel(&in[0], "data", &numel));
  if (n->opset < 5) {
    const int64_t *s;
    cnt = keel_attr_ints(n, "shape", &s);
    if (cnt < 0) return keel_error(KEEL_INVALID_MODEL, "Reshape-1 needs the 'shape' attribute");
    if (cnt > KEEL_MAX_DIMS) return keel_error(KEEL_UNSUPPORTED, "target rank %d exceeds %d", cnt, KEEL_MAX_DIMS);
    memcpy(shape, s, (size_t)cnt * sizeof *s);
  } else {
    KEEL_TRY(need_input(in, n_in, 1, "shape"));
    KEEL_TRY(keel_tt_read_ints(n, in, n_in, 1, "shape", shape, KEEL_MAX_DIMS, &cnt));
  }
  bool allowzero = n->opset >= 14 && keel_attr_int(n, "allowzero", 0) != 0;
  int neg = -1;
  int64_t known = 1;
  for (int i = 0; i < cnt; i++) {
    if (shape[i] == -1) {
      if (neg >= 0) return keel_error(KEEL_INVALID_MODEL, "shape has more than one -1");
      neg = i;
      continue;
    }
    if (shape[i] < -1) return keel_error(KEEL_INVALID_MODEL, "shape[%d] = %lld is invalid", i, (long long)shape[i]);
    if (shape[i] == 0 && !allowzero) {
      if (i >= in[0].ndim)
        return keel_error(KEEL_INVALID_MODEL, "shape[%d] = 0 copies input dim %d, but the input has rank %d", i, i,
                          in[0].ndim);
      shape[i] = in[0].dims[i];
    }
    if (!keel_mul_i64(known, shape[i], &known)) return keel_error(KEEL_SHAPE_MISMATCH, "target shape overflows");
  }
  if (neg >= 0) {
    if (known == 0)
      return keel_error(KEEL_INVALID_MODEL, "shape has -1 together with a zero dim; the -1 cannot be inferred");
    if (numel % known != 0)
      return keel_error(KEEL_SHAPE_MISMATCH, "cannot reshape %lld elements: not divisible by %lld", (long long)numel,
                        (long long)known);
    shape[neg] = numel / known;
  } else if (known != numel) {
    char a[128], b[128];
    return keel_error(KEEL_SHAPE_MISMATCH, "cannot reshape %s (%lld elements) to %s (%lld elements)",
                      keel_shape_format(in[0].dims, in[0].ndim, a, sizeof a), (long long)numel,
                      keel_shape_format(shape, cnt, b, sizeof b), (long long)known);
  }
  return keel_tt_set_out(&out[0], in[0].dtype, shape, cnt);
}

static keel_status *flatten_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  KEEL_TRY(need_input(in, n_in, 0, "input"));
  int r = in[0].ndim;
  int64_t axis = keel_attr_int(n, "axis", 1);
  if (axis < -r || axis > r) return keel_error(KEEL_INVALID_MODEL, "axis %lld out of range for rank %d", (long long)axis, r);
  if (axis < 0) axis += r;
  int64_t d[2];
  if (!keel_shape_numel(in[0].dims, (int)axis, &d[0]) || !keel_shape_numel(in[0].dims + axis, r - (int)axis, &d[1]))
    return keel_error(KEEL_SHAPE_MISMATCH, "input size overflows");
  return keel_tt_set_out(&out[0], in[0].dtype, d, 2);
}

/* Axes of Squeeze/Unsqueeze: attribute before opset 13, input 1 from 13. *cnt = -1 when absent. */
static keel_status *get_axes(const keel_node *n, const keel_view *in, int n_in, int64_t *axes, int *cnt) {
  if (n->opset < 13) {
    const int64_t *a;
    *cnt = keel_attr_ints(n, "axes", &a);
    if (*cnt > KEEL_MAX_DIMS * 2) return keel_error(KEEL_INVALID_MODEL, "too many axes (%d)", *cnt);
    if (*cnt > 0) memcpy(axes, a, (size_t)*cnt * sizeof *a);
    return NULL;
  }
  if (n_in < 2 || !keel_view_present(&in[1])) {
    *cnt = -1;
    return NULL;
  }
  return keel_tt_read_ints(n, in, n_in, 1, "axes", axes, KEEL_MAX_DIMS * 2, cnt);
}

static keel_status *squeeze_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  KEEL_TRY(need_input(in, n_in, 0, "data"));
  int64_t axes[2 * KEEL_MAX_DIMS], d[KEEL_MAX_DIMS];
  int cnt, r = in[0].ndim, nd = 0;
  KEEL_TRY(get_axes(n, in, n_in, axes, &cnt));
  bool drop[KEEL_MAX_DIMS] = {false};
  if (cnt < 0) {
    for (int i = 0; i < r; i++) drop[i] = in[0].dims[i] == 1;
  } else {
    int ax[2 * KEEL_MAX_DIMS];
    if (cnt > r) return keel_error(KEEL_INVALID_MODEL, "%d axes given for a rank-%d input", cnt, r);
    KEEL_TRY(keel_tt_norm_axes(axes, cnt, r, "axes", ax));
    for (int i = 0; i < cnt; i++) {
      if (in[0].dims[ax[i]] != 1)
        return keel_error(KEEL_SHAPE_MISMATCH, "cannot squeeze axis %d: its dim is %lld, not 1", ax[i],
                          (long long)in[0].dims[ax[i]]);
      drop[ax[i]] = true;
    }
  }
  for (int i = 0; i < r; i++)
    if (!drop[i]) d[nd++] = in[0].dims[i];
  return keel_tt_set_out(&out[0], in[0].dtype, d, nd);
}

static keel_status *unsqueeze_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  KEEL_TRY(need_input(in, n_in, 0, "data"));
  int64_t axes[2 * KEEL_MAX_DIMS], d[KEEL_MAX_DIMS];
  int cnt, r = in[0].ndim;
  KEEL_TRY(get_axes(n, in, n_in, axes, &cnt));
  if (cnt < 0) return keel_error(KEEL_INVALID_MODEL, "Unsqueeze needs axes");
  int ro = r + cnt;
  if (ro > KEEL_MAX_DIMS) return keel_error(KEEL_UNSUPPORTED, "output rank %d exceeds %d", ro, KEEL_MAX_DIMS);
  int ax[2 * KEEL_MAX_DIMS];
  KEEL_TRY(keel_tt_norm_axes(axes, cnt, ro, "axes", ax));
  bool ins[KEEL_MAX_DIMS] = {false};
  for (int i = 0; i < cnt; i++) ins[ax[i]] = true;
  for (int i = 0, j = 0; i < ro; i++) d[i] = ins[i] ? 1 : in[0].dims[j++];
  return keel_tt_set_out(&out[0], in[0].dtype, d, ro);
}

static keel_status *identity_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  KEEL_TRY(need_input(in, n_in, 0, "input"));
  size_t es;
  KEEL_TRY(keel_tt_esize(&in[0], "input", &es));
  return keel_tt_set_out(&out[0], in[0].dtype, in[0].dims, in[0].ndim);
}

/* ---- Dropout (inference: identity; the mask is all true) ---- */

static keel_status *dropout_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  KEEL_TRY(identity_infer(n, in, n_in, out, n_out));
  if (n_out > 1) KEEL_TRY(keel_tt_set_out(&out[1], n->opset < 10 ? in[0].dtype : KEEL_BOOL, in[0].dims, in[0].ndim));
  return NULL;
}

static keel_status *dropout_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                keel_exec *ex) {
  if (n->opset >= 12 && n_in > 2 && keel_view_present(&in[2]) && in[2].data && keel_view_get_i64(&in[2], 0)) {
    double ratio = n_in > 1 && keel_view_present(&in[1]) && in[1].data ? keel_view_get_f64(&in[1], 0) : 0.5;
    if (ratio != 0)
      return keel_error(KEEL_UNSUPPORTED, "Dropout with training_mode=true and ratio %g is not supported (inference only)", ratio);
  }
  KEEL_TRY(alias_run(n, in, n_in, out, n_out, ex));
  if (n_out > 1 && out[1].data) {
    int64_t cnt = keel_view_numel(&out[1]);
    if (out[1].dtype == KEEL_BOOL) memset(out[1].data, 1, (size_t)cnt);
    else for (int64_t i = 0; i < cnt; i++) keel_tt_store_f64(out[1].dtype, out[1].data, i, 1.0);
  }
  return NULL;
}

/* ---- Shape, Size ---- */

static void shape_range(const keel_node *n, int r, int64_t *s, int64_t *e) {
  *s = 0;
  *e = r;
  if (n->opset >= 15) {
    *s = keel_attr_int(n, "start", 0);
    *e = keel_attr_int(n, "end", r);
  }
  if (*s < 0) *s += r;
  if (*e < 0) *e += r;
  *s = *s < 0 ? 0 : *s > r ? r : *s;
  *e = *e < 0 ? 0 : *e > r ? r : *e;
  if (*e < *s) *e = *s;
}

static keel_status *shape_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  KEEL_TRY(need_input(in, n_in, 0, "data"));
  int64_t s, e;
  shape_range(n, in[0].ndim, &s, &e);
  int64_t d = e - s;
  return keel_tt_set_out(&out[0], KEEL_INT64, &d, 1);
}

static keel_status *shape_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                              keel_exec *ex) {
  int64_t s, e;
  shape_range(n, in[0].ndim, &s, &e);
  if (e > s) memcpy(out[0].data, in[0].dims + s, (size_t)(e - s) * sizeof(int64_t));
  return NULL;
}

static keel_status *size_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  KEEL_TRY(need_input(in, n_in, 0, "data"));
  int64_t numel;
  KEEL_TRY(keel_tt_numel(&in[0], "data", &numel));
  return keel_tt_set_out(&out[0], KEEL_INT64, NULL, 0);
}

static keel_status *size_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                             keel_exec *ex) {
  int64_t numel = keel_view_numel(&in[0]);
  memcpy(out[0].data, &numel, sizeof numel);
  return NULL;
}

/* ---- ConstantOfShape ---- */

static keel_status *cos_value(const keel_node *n, keel_dtype *dt, const void **bytes) {
  static const float zero = 0;
  const keel_attr *a = keel_node_attr(n, "value");
  *dt = KEEL_FLOAT32;
  *bytes = &zero;
  if (!a) return NULL;
  if (a->type != KEEL_ATTR_TENSOR || !a->t) return keel_error(KEEL_INVALID_MODEL, "attribute 'value' must be a tensor");
  if (keel_tensor_numel(a->t) != 1)
    return keel_error(KEEL_INVALID_MODEL, "attribute 'value' must hold one element, it has %lld",
                      (long long)keel_tensor_numel(a->t));
  *dt = keel_tensor_dtype(a->t);
  if (keel_dtype_size(*dt) == 0) return keel_error(KEEL_UNSUPPORTED, "value of dtype %s", keel_dtype_name(*dt));
  *bytes = keel_tensor_data_const(a->t);
  return NULL;
}

static keel_status *cos_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  KEEL_TRY(need_input(in, n_in, 0, "input"));
  keel_dtype dt;
  const void *b;
  KEEL_TRY(cos_value(n, &dt, &b));
  int64_t d[KEEL_MAX_DIMS];
  int cnt;
  KEEL_TRY(keel_tt_read_ints(n, in, n_in, 0, "shape", d, KEEL_MAX_DIMS, &cnt));
  for (int i = 0; i < cnt; i++)
    if (d[i] < 0) return keel_error(KEEL_INVALID_MODEL, "shape[%d] = %lld is negative", i, (long long)d[i]);
  return keel_tt_set_out(&out[0], dt, d, cnt);
}

static keel_status *cos_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                            keel_exec *ex) {
  keel_dtype dt;
  const void *b;
  KEEL_TRY(cos_value(n, &dt, &b));
  size_t es = keel_dtype_size(dt);
  int64_t cnt = keel_view_numel(&out[0]);
  bool zero = true;
  for (size_t i = 0; i < es; i++) zero = zero && ((const unsigned char *)b)[i] == 0;
  if (zero) {
    if (cnt) memset(out[0].data, 0, (size_t)cnt * es);
    return NULL;
  }
  char *o = out[0].data;
  for (int64_t i = 0; i < cnt; i++) memcpy(o + (size_t)i * es, b, es);
  return NULL;
}

/* ---- Range ---- */

static keel_status *range_params(const keel_node *n, const keel_view *in, int n_in, int64_t *count) {
  for (int i = 0; i < 3; i++) {
    KEEL_TRY(need_input(in, n_in, i, i == 0 ? "start" : i == 1 ? "limit" : "delta"));
    if (keel_view_numel(&in[i]) != 1) return keel_error(KEEL_INVALID_MODEL, "input %d must be a scalar", i);
    if (in[i].dtype != in[0].dtype) return keel_error(KEEL_INVALID_MODEL, "start, limit and delta must share a dtype");
    if (!in[i].data) return keel_need_value(n, i);
  }
  keel_dtype dt = in[0].dtype;
  if (keel_tt_is_float(dt)) {
    double s = keel_view_get_f64(&in[0], 0), l = keel_view_get_f64(&in[1], 0), d = keel_view_get_f64(&in[2], 0);
    if (d == 0 || !isfinite(s) || !isfinite(l) || !isfinite(d)) return keel_error(KEEL_INVALID_ARGUMENT, "Range: delta is 0 or a bound is not finite");
    double c = ceil((l - s) / d);
    if (c > 1e15) return keel_error(KEEL_OUT_OF_MEMORY, "Range would produce %g elements", c);
    *count = c > 0 ? (int64_t)c : 0;
    return NULL;
  }
  if (dt != KEEL_INT16 && dt != KEEL_INT32 && dt != KEEL_INT64)
    return keel_error(KEEL_UNSUPPORTED, "Range of dtype %s", keel_dtype_name(dt));
  int64_t s = keel_view_get_i64(&in[0], 0), l = keel_view_get_i64(&in[1], 0), d = keel_view_get_i64(&in[2], 0);
  if (d == 0) return keel_error(KEEL_INVALID_ARGUMENT, "Range: delta is 0");
  int64_t diff;
  if (__builtin_sub_overflow(l, s, &diff)) return keel_error(KEEL_OUT_OF_MEMORY, "Range: limit - start overflows");
  if ((diff > 0) != (d > 0) || diff == 0) {
    *count = 0;
    return NULL;
  }
  /* ceil(diff / d) with both of the same sign. */
  int64_t q = diff / d, r = diff % d;
  *count = q + (r != 0);
  return NULL;
}

static keel_status *range_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  int64_t c;
  KEEL_TRY(range_params(n, in, n_in, &c));
  return keel_tt_set_out(&out[0], in[0].dtype, &c, 1);
}

static keel_status *range_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                              keel_exec *ex) {
  int64_t c;
  KEEL_TRY(range_params(n, in, n_in, &c));
  if (c != keel_view_numel(&out[0])) return keel_error(KEEL_SHAPE_MISMATCH, "Range output has the wrong size");
  keel_dtype dt = in[0].dtype;
  if (keel_tt_is_float(dt)) {
    double s = keel_view_get_f64(&in[0], 0), d = keel_view_get_f64(&in[2], 0);
    if (dt == KEEL_FLOAT32) {
      float *o = out[0].data, fs = (float)s, fd = (float)d;
      for (int64_t i = 0; i < c; i++) o[i] = fs + (float)i * fd;
    } else {
      for (int64_t i = 0; i < c; i++) keel_tt_store_f64(dt, out[0].data, i, s + (double)i * d);
    }
    return NULL;
  }
  int64_t s = keel_view_get_i64(&in[0], 0), d = keel_view_get_i64(&in[2], 0);
  for (int64_t i = 0; i < c; i++) {
    int64_t v = s + i * d; /* stays between start and limit, so no overflow */
    switch (dt) {
      case KEEL_INT64: ((int64_t *)out[0].data)[i] = v; break;
      case KEEL_INT32: ((int32_t *)out[0].data)[i] = (int32_t)v; break;
      default: ((int16_t *)out[0].data)[i] = (int16_t)v; break;
    }
  }
  return NULL;
}

/* ---- EyeLike ---- */

static keel_status *eyelike_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  KEEL_TRY(need_input(in, n_in, 0, "input"));
  if (in[0].ndim != 2) return keel_error(KEEL_INVALID_MODEL, "input must be 2-D, got rank %d", in[0].ndim);
  keel_dtype dt = (keel_dtype)keel_attr_int(n, "dtype", in[0].dtype);
  if (keel_dtype_size(dt) == 0) return keel_error(KEEL_UNSUPPORTED, "EyeLike output dtype %d", (int)dt);
  return keel_tt_set_out(&out[0], dt, in[0].dims, 2);
}

static keel_status *eyelike_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                keel_exec *ex) {
  int64_t r = out[0].dims[0], c = out[0].dims[1], k = keel_attr_int(n, "k", 0);
  size_t es = keel_dtype_size(out[0].dtype);
  if (r * c == 0) return NULL;
  memset(out[0].data, 0, (size_t)(r * c) * es);
  if (k >= c || k <= -r) return NULL;
  for (int64_t i = k < 0 ? -k : 0; i < r && i + k < c; i++) keel_tt_store_f64(out[0].dtype, out[0].data, i * c + i + k, 1.0);
  return NULL;
}

/* ---- Trilu ---- */

static keel_status *trilu_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  KEEL_TRY(identity_infer(n, in, n_in, out, n_out));
  if (in[0].ndim < 2) return keel_error(KEEL_INVALID_MODEL, "input must have rank >= 2, got %d", in[0].ndim);
  if (n_in > 1 && keel_view_present(&in[1]) && keel_view_numel(&in[1]) != 1)
    return keel_error(KEEL_INVALID_MODEL, "k must be a scalar");
  return NULL;
}

static keel_status *trilu_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                              keel_exec *ex) {
  int nd = in[0].ndim;
  int64_t R = in[0].dims[nd - 2], C = in[0].dims[nd - 1], total = keel_view_numel(&in[0]);
  if (total == 0) return NULL;
  int64_t k = n_in > 1 && keel_view_present(&in[1]) ? keel_view_get_i64(&in[1], 0) : 0;
  bool upper = keel_attr_int(n, "upper", 1) != 0;
  /* Clamp k so that i + k cannot overflow. */
  if (k > R + C) k = R + C;
  if (k < -(R + C)) k = -(R + C);
  size_t es = keel_dtype_size(in[0].dtype);
  int64_t mats = total / (R * C);
  const char *s = in[0].data;
  char *o = out[0].data;
  for (int64_t m = 0; m < mats; m++) {
    for (int64_t i = 0; i < R; i++) {
      const char *sr = s + (size_t)((m * R + i) * C) * es;
      char *orow = o + (size_t)((m * R + i) * C) * es;
      /* Keep [lo, hi) of this row, zero the rest. */
      int64_t lo, hi;
      if (upper) { lo = i + k; hi = C; }
      else { lo = 0; hi = i + k + 1; }
      lo = lo < 0 ? 0 : lo > C ? C : lo;
      hi = hi < lo ? lo : hi > C ? C : hi;
      if (lo > 0) memset(orow, 0, (size_t)lo * es);
      if (hi > lo && orow != sr) memcpy(orow + (size_t)lo * es, sr + (size_t)lo * es, (size_t)(hi - lo) * es);
      if (hi < C) memset(orow + (size_t)hi * es, 0, (size_t)(C - hi) * es);
    }
  }
  return NULL;
}

/* ---- OneHot ---- */

static keel_status *onehot_params(const keel_node *n, const keel_view *in, int n_in, int64_t *depth, int *axis) {
  for (int i = 0; i < 3; i++) KEEL_TRY(need_input(in, n_in, i, i == 0 ? "indices" : i == 1 ? "depth" : "values"));
  if (keel_view_numel(&in[1]) != 1) return keel_error(KEEL_INVALID_MODEL, "depth must hold one element");
  if (keel_view_numel(&in[2]) != 2) return keel_error(KEEL_INVALID_MODEL, "values must hold two elements [off, on]");
  if (!in[1].data) return keel_need_value(n, 1);
  double d = keel_view_get_f64(&in[1], 0);
  if (!(d >= 1) || d > 1e12) return keel_error(KEEL_INVALID_ARGUMENT, "depth %g must be a positive count", d);
  *depth = (int64_t)d;
  int r = in[0].ndim + 1;
  if (r > KEEL_MAX_DIMS) return keel_error(KEEL_UNSUPPORTED, "output rank %d exceeds %d", r, KEEL_MAX_DIMS);
  int64_t a = keel_attr_int(n, "axis", -1);
  if (!keel_axis_normalize(a, r, axis)) return keel_error(KEEL_INVALID_MODEL, "axis %lld out of range for rank %d", (long long)a, r);
  return NULL;
}

static keel_status *onehot_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  int64_t depth, d[KEEL_MAX_DIMS];
  int axis;
  KEEL_TRY(onehot_params(n, in, n_in, &depth, &axis));
  size_t es;
  KEEL_TRY(keel_tt_esize(&in[2], "values", &es));
  for (int i = 0, j = 0; i <= in[0].ndim; i++) d[i] = i == axis ? depth : in[0].dims[j++];
  return keel_tt_set_out(&out[0], in[2].dtype, d, in[0].ndim + 1);
}

static keel_status *onehot_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                               keel_exec *ex) {
  int64_t depth;
  int axis;
  KEEL_TRY(onehot_params(n, in, n_in, &depth, &axis));
  size_t es = keel_dtype_size(in[2].dtype);
  int64_t total = keel_view_numel(&out[0]), outer = 1, inner = 1;
  for (int i = 0; i < axis; i++) outer *= in[0].dims[i];
  for (int i = axis; i < in[0].ndim; i++) inner *= in[0].dims[i];
  const char *off = in[2].data, *on = off + es;
  char *o = out[0].data;
  for (int64_t i = 0; i < total; i++) memcpy(o + (size_t)i * es, off, es);
  bool fl = keel_tt_is_float(in[0].dtype);
  for (int64_t a = 0; a < outer; a++)
    for (int64_t q = 0; q < inner; q++) {
      int64_t e = a * inner + q, idx;
      if (fl) {
        double v = keel_view_get_f64(&in[0], e);
        if (!(fabs(v) < 9e18)) continue;
        idx = (int64_t)v;
      } else {
        idx = keel_view_get_i64(&in[0], e);
      }
      if (idx < 0) idx += depth;
      if (idx < 0 || idx >= depth) continue; /* out of range: all off, as the spec says */
      memcpy(o + (size_t)((a * depth + idx) * inner + q) * es, on, es);
    }
  return NULL;
}

/* ---- Compress, NonZero (output shape depends on data) ---- */

static keel_status *compress_params(const keel_node *n, const keel_view *in, int n_in, int *axis, int64_t *dim,
                                    int64_t *kept) {
  KEEL_TRY(need_input(in, n_in, 0, "input"));
  KEEL_TRY(need_input(in, n_in, 1, "condition"));
  if (in[1].ndim != 1) return keel_error(KEEL_INVALID_MODEL, "condition must be 1-D, got rank %d", in[1].ndim);
  const keel_attr *a = keel_node_attr(n, "axis");
  if (a) {
    if (!keel_axis_normalize(a->i, in[0].ndim, axis))
      return keel_error(KEEL_INVALID_MODEL, "axis %lld out of range for rank %d", (long long)a->i, in[0].ndim);
    *dim = in[0].dims[*axis];
  } else {
    *axis = -1;
    *dim = keel_view_numel(&in[0]);
  }
  if (!in[1].data) return DDS_ERROR("Compress's condition");
  int64_t len = in[1].dims[0];
  *kept = 0;
  for (int64_t i = 0; i < len; i++) {
    if (!keel_view_get_i64(&in[1], i)) continue;
    if (i >= *dim)
      return keel_error(KEEL_INVALID_ARGUMENT, "condition selects index %lld, beyond the axis length %lld", (long long)i,
                        (long long)*dim);
    (*kept)++;
  }
  return NULL;
}

static keel_status *compress_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  int axis;
  int64_t dim, kept;
  KEEL_TRY(compress_params(n, in, n_in, &axis, &dim, &kept));
  size_t es;
  KEEL_TRY(keel_tt_esize(&in[0], "input", &es));
  if (axis < 0) return keel_tt_set_out(&out[0], in[0].dtype, &kept, 1);
  int64_t d[KEEL_MAX_DIMS];
  memcpy(d, in[0].dims, sizeof d);
  d[axis] = kept;
  return keel_tt_set_out(&out[0], in[0].dtype, d, in[0].ndim);
}

static keel_status *compress_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                 keel_exec *ex) {
  int axis;
  int64_t dim, kept;
  KEEL_TRY(compress_params(n, in, n_in, &axis, &dim, &kept));
  size_t es = keel_dtype_size(in[0].dtype);
  int64_t outer = 1, inner = 1;
  if (axis >= 0) {
    for (int i = 0; i < axis; i++) outer *= in[0].dims[i];
    for (int i = axis + 1; i < in[0].ndim; i++) inner *= in[0].dims[i];
  }
  int64_t expect = outer * kept * inner;
  if (expect != keel_view_numel(&out[0])) return keel_error(KEEL_SHAPE_MISMATCH, "Compress output has the wrong size");
  int64_t len = in[1].dims[0] < dim ? in[1].dims[0] : dim;
  size_t chunk = (size_t)inner * es;
  const char *s = in[0].data;
  char *o = out[0].data;
  for (int64_t a = 0; a < outer; a++)
    for (int64_t i = 0; i < len; i++)
      if (keel_view_get_i64(&in[1], i)) {
        memcpy(o, s + (size_t)(a * dim + i) * chunk, chunk);
        o += chunk;
      }
  return NULL;
}

static bool elem_nonzero(const keel_view *v, int64_t i, size_t es) {
  if (keel_tt_is_float(v->dtype)) return keel_view_get_f64(v, i) != 0;
  const unsigned char *p = (const unsigned char *)v->data + (size_t)i * es;
  for (size_t b = 0; b < es; b++)
    if (p[b]) return true;
  return false;
}

static keel_status *nonzero_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  KEEL_TRY(need_input(in, n_in, 0, "X"));
  size_t es;
  int64_t numel, cnt = 0;
  KEEL_TRY(keel_tt_esize(&in[0], "X", &es));
  KEEL_TRY(keel_tt_numel(&in[0], "X", &numel));
  if (!in[0].data && numel > 0) return DDS_ERROR("NonZero's input");
  for (int64_t i = 0; i < numel; i++) cnt += elem_nonzero(&in[0], i, es);
  int64_t d[2] = {in[0].ndim == 0 ? 1 : in[0].ndim, cnt};
  return keel_tt_set_out(&out[0], KEEL_INT64, d, 2);
}

static keel_status *nonzero_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                keel_exec *ex) {
  size_t es = keel_dtype_size(in[0].dtype);
  int64_t numel = keel_view_numel(&in[0]), cnt = 0;
  for (int64_t i = 0; i < numel; i++) cnt += elem_nonzero(&in[0], i, es);
  int r = in[0].ndim;
  if (out[0].ndim != 2 || out[0].dims[1] != cnt || out[0].dims[0] != (r ? r : 1))
    return keel_error(KEEL_SHAPE_MISMATCH, "NonZero output has the wrong size");
  int64_t *o = out[0].data, idx[KEEL_MAX_DIMS] = {0}, j = 0;
  for (int64_t i = 0; i < numel; i++) {
    if (elem_nonzero(&in[0], i, es)) {
      if (r == 0) o[j] = 0;
      for (int a = 0; a < r; a++) o[a * cnt + j] = idx[a];
      j++;
    }
    for (int a = r - 1; a >= 0; a--) {
      if (++idx[a] < in[0].dims[a]) break;
      idx[a] = 0;
    }
  }
  return NULL;
}

/* ---- the table ---- */

#define OP(name, lo, hi, inf, rn) {name, "", lo, hi, inf, rn, NULL, -1}
#define OP_ALIAS(name, lo, hi, inf) {name, "", lo, hi, inf, alias_run, NULL, 0}
#define OP_TT(name, lo, hi, fn) {name, "", lo, hi, keel_tt_##fn##_infer, keel_tt_##fn##_run, NULL, -1}
/* Scatter kernels copy data first and tolerate out == data, so the output may reuse data's buffer. */
#define OP_TT_INPLACE(name, lo, hi, fn) {name, "", lo, hi, keel_tt_##fn##_infer, keel_tt_##fn##_run, NULL, 0}
#define OP_RESIZE(name, lo, hi) \
  {name, "", lo, hi, keel_tt_resize_infer, keel_tt_resize_run, keel_tt_resize_workspace, -1}

const keel_op_def keel_ops_tensor[] = {
    /* Reshape: 'shape' attribute (1-4), shape input (5-13), allowzero (14+). */
    OP_ALIAS("Reshape", 1, 4, reshape_infer),
    OP_ALIAS("Reshape", 5, 13, reshape_infer),
    OP_ALIAS("Reshape", 14, KEEL_MAX_OPSET, reshape_infer),
    OP_ALIAS("Flatten", 1, KEEL_MAX_OPSET, flatten_infer),
    /* Squeeze/Unsqueeze: axes attribute (<13), axes input (13+). */
    OP_ALIAS("Squeeze", 1, 12, squeeze_infer),
    OP_ALIAS("Squeeze", 13, KEEL_MAX_OPSET, squeeze_infer),
    OP_ALIAS("Unsqueeze", 1, 12, unsqueeze_infer),
    OP_ALIAS("Unsqueeze", 13, KEEL_MAX_OPSET, unsqueeze_infer),
    OP_ALIAS("Identity", 1, KEEL_MAX_OPSET, identity_infer),
    /* Dropout: mask of type T (7-9), bool mask (10+), ratio/training_mode inputs (12+). */
    {"Dropout", "", 1, 11, dropout_infer, dropout_run, NULL, 0},
    {"Dropout", "", 12, KEEL_MAX_OPSET, dropout_infer, dropout_run, NULL, 0},
    OP("Shape", 1, 14, shape_infer, shape_run),
    OP("Shape", 15, KEEL_MAX_OPSET, shape_infer, shape_run),
    OP("Size", 1, KEEL_MAX_OPSET, size_infer, size_run),
    OP("ConstantOfShape", 9, KEEL_MAX_OPSET, cos_infer, cos_run),
    OP("Range", 11, KEEL_MAX_OPSET, range_infer, range_run),
    OP("EyeLike", 9, KEEL_MAX_OPSET, eyelike_infer, eyelike_run),
    {"Trilu", "", 14, KEEL_MAX_OPSET, trilu_infer, trilu_run, NULL, 0},
    OP("OneHot", 9, KEEL_MAX_OPSET, onehot_infer, onehot_run),
    OP("Compress", 9, KEEL_MAX_OPSET, compress_infer, compress_run),
    OP("NonZero", 9, KEEL_MAX_OPSET, nonzero_infer, nonzero_run),
    /* data movement (tensor_move.c) */
    OP_TT("Transpose", 1, KEEL_MAX_OPSET, transpose),
    OP_TT("Concat", 1, 3, concat), /* axis defaults to 1 */
    OP_TT("Concat", 4, KEEL_MAX_OPSET, concat),
    OP_TT("Split", 1, 1, split),   /* split as input or attribute */
    OP_TT("Split", 2, 12, split),  /* split attribute */
    OP_TT("Split", 13, 17, split), /* split input */
    OP_TT("Split", 18, KEEL_MAX_OPSET, split), /* num_outputs */
    OP_TT("Slice", 1, 9, slice),   /* attributes */
    OP_TT("Slice", 10, KEEL_MAX_OPSET, slice), /* inputs, steps */
    OP_TT("Expand", 8, KEEL_MAX_OPSET, expand),
    OP_TT("Tile", 6, KEEL_MAX_OPSET, tile),
    OP_TT("Pad", 1, 1, pad),       /* 'paddings' attribute */
    OP_TT("Pad", 2, 10, pad),      /* 'pads' attribute */
    OP_TT("Pad", 11, 17, pad),     /* pads / constant_value inputs */
    OP_TT("Pad", 18, 18, pad),     /* axes input */
    OP_TT("Pad", 19, KEEL_MAX_OPSET, pad), /* wrap mode */
    OP_TT("CenterCropPad", 18, KEEL_MAX_OPSET, center_crop_pad),
    OP_TT("DepthToSpace", 1, 10, depth_to_space), /* DCR only */
    OP_TT("DepthToSpace", 11, KEEL_MAX_OPSET, depth_to_space),
    OP_TT("SpaceToDepth", 1, KEEL_MAX_OPSET, space_to_depth),
    /* indexing (tensor_index.c) */
    OP_TT("Gather", 1, KEEL_MAX_OPSET, gather),
    OP_TT("GatherElements", 11, KEEL_MAX_OPSET, gather_elements),
    OP_TT("GatherND", 11, 11, gather_nd),
    OP_TT("GatherND", 12, KEEL_MAX_OPSET, gather_nd), /* batch_dims */
    OP_TT_INPLACE("Scatter", 9, 10, scatter_elements),
    OP_TT_INPLACE("ScatterElements", 11, 15, scatter_elements),
    OP_TT_INPLACE("ScatterElements", 16, 17, scatter_elements), /* reduction add/mul */
    OP_TT_INPLACE("ScatterElements", 18, KEEL_MAX_OPSET, scatter_elements), /* max/min */
    OP_TT_INPLACE("ScatterND", 11, 15, scatter_nd),
    OP_TT_INPLACE("ScatterND", 16, 17, scatter_nd),
    OP_TT_INPLACE("ScatterND", 18, KEEL_MAX_OPSET, scatter_nd),
    /* Resize / Upsample (tensor_resize.c) */
    OP_RESIZE("Resize", 10, 10),   /* scales only, asymmetric */
    OP_RESIZE("Resize", 11, 12),   /* roi, sizes, coordinate modes, cubic */
    OP_RESIZE("Resize", 13, 17),
    OP_RESIZE("Resize", 18, 18),   /* axes, antialias, keep_aspect_ratio_policy */
    OP_RESIZE("Resize", 19, KEEL_MAX_OPSET), /* half_pixel_symmetric */
    OP_RESIZE("Upsample", 7, 8),   /* scales attribute */
    OP_RESIZE("Upsample", 9, 9),   /* scales input */
};
const int keel_ops_tensor_count = (int)(sizeof keel_ops_tensor / sizeof keel_ops_tensor[0]);
