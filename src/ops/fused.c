/* keel-internal fused operators (domain "keel"), created by the fusion passes in src/graph/ (fuse_patterns.c).
 * Each one computes exactly what the ONNX subgraph it replaces computes (same broadcasting, same output
 * shape), float32 only; the pass only builds them where the constants it matched say the data is float32.
 *
 *   LayerNorm(X, gamma, beta; epsilon)   (x - mean) / sqrt(var + epsilon) * gamma + beta over X's last axis;
 *                                        gamma and beta are 1-D (length of the last axis, or 1).
 *   SkipLayerNorm(X, S, gamma, beta; epsilon)  LayerNorm(X + S): the residual Add in the same pass; X and S
 *                                        broadcast as Add does.
 *   ScaleMaskSoftmax(X, [mask]; scale)   softmax(X * scale + mask) over the last axis; mask broadcasts.
 *   Gelu(X)                              0.5 x (1 + erf(x / sqrt 2)).
 *   MultiHeadAttention(Q, K, V, [mask]; scale)  per head softmax(Q K^T * scale + mask) V, heads not
 *                                        transposed (ops/fused_attn.c). */
#include <math.h>

#include "ops/act.h"
#include "ops/broadcast.h"
#include "ops/fast_exp.h"
#include "ops/fused_attn.h"
#include "ops/op.h"
#include "ops/row_reduce.h"

#define KEEL_IN const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out
#define KEEL_RUN_ARGS const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out, keel_exec *ex

static keel_status *need_f32(const keel_view *in, int n_in, int i, bool optional) {
  if (i >= n_in || !keel_view_present(&in[i])) {
    if (optional) return NULL;
    return keel_error(KEEL_INVALID_MODEL, "input %d is required", i);
  }
  if (in[i].dtype != KEEL_FLOAT32)
    return keel_error(KEEL_INVALID_MODEL, "input %d has dtype %s; the fused operator takes float32", i,
                      keel_dtype_name(in[i].dtype));
  return NULL;
}

/* Sum of squared deviations from `mean`, with the lane trick of ops/row_reduce.h. */
#define LANES KEEL_ROW_LANES
static float row_sq_dev(const float *x, int64_t n, float mean) {
  float acc[LANES] = {0};
  int64_t i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int k = 0; k < LANES; k++) {
      const float d = x[i + k] - mean;
      acc[k] += d * d;
    }
  float s = 0.0f;
  for (; i < n; i++) s += (x[i] - mean) * (x[i] - mean);
  for (int k = 0; k < LANES; k++) s += acc[k];
  return s;
}

/* ---- LayerNorm ---- */

/* x: the normalized input's shape; gb: gamma and beta (two views). */
static keel_status *ln_dims_of(const int64_t *xd, int xnd, const keel_view *gb, int64_t *L, int64_t *G, int64_t *B,
                               int64_t *OL) {
  if (xnd < 1) return keel_error(KEEL_SHAPE_MISMATCH, "X must have at least one dimension");
  if (gb[0].ndim != 1 || gb[1].ndim != 1)
    return keel_error(KEEL_SHAPE_MISMATCH, "gamma and beta must be 1-D (ranks %d and %d)", gb[0].ndim, gb[1].ndim);
  *L = xd[xnd - 1];
  *G = gb[0].dims[0];
  *B = gb[1].dims[0];
  int64_t ol = *L;
  const int64_t ds[2] = {*G, *B};
  for (int k = 0; k < 2; k++) {
    if (ds[k] == ol || ds[k] == 1) continue;
    if (ol != 1)
      return keel_error(KEEL_SHAPE_MISMATCH, "last dimension %lld does not broadcast with %s length %lld",
                        (long long)ol, k ? "beta" : "gamma", (long long)ds[k]);
    ol = ds[k];
  }
  if ((*G != ol && *G != 1) || (*B != ol && *B != 1))
    return keel_error(KEEL_SHAPE_MISMATCH, "gamma (%lld) and beta (%lld) do not broadcast to %lld", (long long)*G,
                      (long long)*B, (long long)ol);
  *OL = ol;
  return NULL;
}

static keel_status *ln_dims(const keel_view *in, int64_t *L, int64_t *G, int64_t *B, int64_t *OL) {
  return ln_dims_of(in[0].dims, in[0].ndim, &in[1], L, G, B, OL);
}

static keel_status *infer_LayerNorm(KEEL_IN) {
  if (n_in != 3 || n_out < 1) return keel_error(KEEL_INVALID_MODEL, "LayerNorm takes X, gamma, beta");
  for (int i = 0; i < 3; i++) KEEL_TRY(need_f32(in, n_in, i, false));
  int64_t L, G, B, OL;
  KEEL_TRY(ln_dims(in, &L, &G, &B, &OL));
  int64_t d[KEEL_MAX_DIMS];
  memcpy(d, in[0].dims, sizeof(int64_t) * (size_t)in[0].ndim);
  d[in[0].ndim - 1] = OL;
  keel_view_set_shape(&out[0], KEEL_FLOAT32, d, in[0].ndim);
  (void)n;
  return NULL;
}

/* One row: y[0, OL) = LayerNorm(x[0, L)). In place (y == x) works: every x[i] is read before y[i] is written. */
static void ln_row(const float *xr, float *yr, int64_t L, int64_t G, int64_t B, int64_t OL, const float *g,
                   const float *b, float eps) {
  if (L == OL && G == OL && B == OL) { /* the usual case: three sweeps over a row that stays in L1 */
    const float mean = keel_row_sum_f32(xr, L) / (float)L;
    const float inv = 1.0f / sqrtf(row_sq_dev(xr, L, mean) / (float)L + eps);
    for (int64_t i = 0; i < L; i++) yr[i] = (xr[i] - mean) * inv * g[i] + b[i];
    return;
  }
  /* broadcasting corners: a length-1 axis somewhere */
  double s = 0.0;
  for (int64_t i = 0; i < L; i++) s += xr[i];
  const float mean = (float)(s / (double)L);
  double v = 0.0;
  for (int64_t i = 0; i < L; i++) v += (double)(xr[i] - mean) * (xr[i] - mean);
  const float sd = sqrtf((float)(v / (double)L) + eps);
  const float x0 = xr[0]; /* L == 1 < OL: the one input value, read for every output */
  for (int64_t i = 0; i < OL; i++) yr[i] = ((L == 1 ? x0 : xr[i]) - mean) / sd * g[G == 1 ? 0 : i] + b[B == 1 ? 0 : i];
}

static keel_status *run_LayerNorm(KEEL_RUN_ARGS) {
  (void)n_in, (void)n_out, (void)ex;
  int64_t L, G, B, OL;
  KEEL_TRY(ln_dims(in, &L, &G, &B, &OL));
  const float eps = keel_attr_float(n, "epsilon", 1e-5f);
  const float *x = in[0].data, *g = in[1].data, *b = in[2].data;
  float *y = out[0].data;
  const int64_t rows = L ? keel_view_numel(&in[0]) / L : 0;
  for (int64_t r = 0; r < rows; r++) ln_row(x + r * L, y + r * OL, L, G, B, OL, g, b, eps);
  return NULL;
}

/* ---- SkipLayerNorm ---- */

static keel_status *skip_ln_shape(const keel_view *in, int64_t *od, int *ond) {
  const int64_t *dims[2] = {in[0].dims, in[1].dims};
  const int nd[2] = {in[0].ndim, in[1].ndim};
  return keel_broadcast_shapes(NULL, 2, dims, nd, od, ond);
}

static keel_status *infer_SkipLayerNorm(KEEL_IN) {
  if (n_in != 4 || n_out < 1) return keel_error(KEEL_INVALID_MODEL, "SkipLayerNorm takes X, skip, gamma, beta");
  for (int i = 0; i < 4; i++) KEEL_TRY(need_f32(in, n_in, i, false));
  int64_t d[KEEL_MAX_DIMS];
  int nd;
  KEEL_TRY(skip_ln_shape(in, d, &nd));
  int64_t L, G, B, OL;
  KEEL_TRY(ln_dims_of(d, nd, &in[2], &L, &G, &B, &OL));
  d[nd - 1] = OL;
  keel_view_set_shape(&out[0], KEEL_FLOAT32, d, nd);
  (void)n;
  return NULL;
}

static void bcast_strides(const keel_view *v, int ond, int64_t *st);

static keel_status *run_SkipLayerNorm(KEEL_RUN_ARGS) {
  (void)n_in, (void)n_out, (void)ex;
  int64_t d[KEEL_MAX_DIMS];
  int nd;
  KEEL_TRY(skip_ln_shape(in, d, &nd));
  int64_t L, G, B, OL;
  KEEL_TRY(ln_dims_of(d, nd, &in[2], &L, &G, &B, &OL));
  const float eps = keel_attr_float(n, "epsilon", 1e-5f);
  const float *x = in[0].data, *sk = in[1].data, *g = in[2].data, *b = in[3].data;
  float *y = out[0].data;
  int64_t total = 1;
  for (int k = 0; k < nd; k++) total *= d[k];
  const int64_t rows = L ? total / L : 0;
  const bool same = in[0].ndim == nd && in[1].ndim == nd && keel_view_numel(&in[0]) == total &&
                    keel_view_numel(&in[1]) == total;
  int64_t xs[KEEL_MAX_DIMS], ss[KEEL_MAX_DIMS];
  bcast_strides(&in[0], nd, xs);
  bcast_strides(&in[1], nd, ss);
  for (int64_t r = 0; r < rows; r++) {
    /* the sum goes into the output row (OL >= L), then is normalized in place */
    float *yr = y + r * OL;
    if (same) {
      const float *xr = x + r * L, *sr = sk + r * L;
      for (int64_t i = 0; i < L; i++) yr[i] = xr[i] + sr[i];
    } else {
      int64_t rem = r, xo = 0, so = 0;
      for (int k = nd - 2; k >= 0; k--) {
        const int64_t i = rem % d[k];
        rem /= d[k];
        xo += i * xs[k];
        so += i * ss[k];
      }
      for (int64_t i = 0; i < L; i++) yr[i] = x[xo + i * xs[nd - 1]] + sk[so + i * ss[nd - 1]];
    }
    ln_row(yr, yr, L, G, B, OL, g, b, eps);
  }
  return NULL;
}

/* ---- ScaleMaskSoftmax ---- */

static keel_status *infer_ScaleMaskSoftmax(KEEL_IN) {
  if (n_in < 1 || n_in > 2 || n_out < 1) return keel_error(KEEL_INVALID_MODEL, "ScaleMaskSoftmax takes X and a mask");
  KEEL_TRY(need_f32(in, n_in, 0, false));
  KEEL_TRY(need_f32(in, n_in, 1, true));
  if (n_in < 2 || !keel_view_present(&in[1])) {
    if (in[0].ndim < 1) return keel_error(KEEL_SHAPE_MISMATCH, "X must have at least one dimension");
    keel_view_set_shape(&out[0], KEEL_FLOAT32, in[0].dims, in[0].ndim);
    return NULL;
  }
  const int64_t *dims[2] = {in[0].dims, in[1].dims};
  const int nd[2] = {in[0].ndim, in[1].ndim};
  int64_t od[KEEL_MAX_DIMS];
  int ond;
  KEEL_TRY(keel_broadcast_shapes(NULL, 2, dims, nd, od, &ond));
  if (ond < 1) return keel_error(KEEL_SHAPE_MISMATCH, "softmax input must have at least one dimension");
  keel_view_set_shape(&out[0], KEEL_FLOAT32, od, ond);
  (void)n;
  return NULL;
}

/* Element strides of a view broadcast to `ond` output dims (0 where it broadcasts). */
static void bcast_strides(const keel_view *v, int ond, int64_t *st) {
  int64_t s = 1;
  for (int d = ond - 1; d >= 0; d--) {
    const int k = d - (ond - v->ndim);
    if (k < 0 || v->dims[k] == 1) {
      st[d] = 0;
    } else {
      st[d] = s;
    }
    if (k >= 0) s *= v->dims[k];
  }
}

/* y = softmax(y) over one row of length L (y already holds the scaled, masked logits). */
static void softmax_row(float *y, int64_t L) {
  float m = keel_row_max_f32(y, L);
  if (m == -INFINITY) m = 0.0f; /* all -inf: exp gives 0/0 = NaN below, as the unfused graph does */
  for (int64_t i = 0; i < L; i++) y[i] = keel_expf_softmax(y[i] - m);
  const float inv = 1.0f / keel_row_sum_f32(y, L);
  for (int64_t i = 0; i < L; i++) y[i] *= inv;
}

static keel_status *run_ScaleMaskSoftmax(KEEL_RUN_ARGS) {
  (void)n_out, (void)ex;
  const float scale = keel_attr_float(n, "scale", 1.0f);
  const bool has_mask = n_in >= 2 && keel_view_present(&in[1]);
  const keel_view *o = &out[0];
  const int ond = o->ndim;
  const int64_t L = o->dims[ond - 1];
  const int64_t total = keel_view_numel(o);
  if (total == 0 || L == 0) return NULL;
  const int64_t rows = total / L;
  int64_t xs[KEEL_MAX_DIMS], ms[KEEL_MAX_DIMS] = {0};
  bcast_strides(&in[0], ond, xs);
  if (has_mask) bcast_strides(&in[1], ond, ms);
  const float *x = in[0].data, *mk = has_mask ? in[1].data : NULL;
  float *y = o->data;
  const int64_t xl = xs[ond - 1], ml = ms[ond - 1];
  for (int64_t r = 0; r < rows; r++) {
    /* offsets of this row in X and the mask: walk the leading output dims */
    int64_t rem = r, xo = 0, mo = 0;
    for (int d = ond - 2; d >= 0; d--) {
      const int64_t i = rem % o->dims[d];
      rem /= o->dims[d];
      xo += i * xs[d];
      mo += i * ms[d];
    }
    float *yr = y + r * L;
    const float *xr = x + xo;
    if (has_mask) {
      const float *mr = mk + mo;
      if (xl == 1 && ml == 1)
        for (int64_t i = 0; i < L; i++) yr[i] = xr[i] * scale + mr[i];
      else
        for (int64_t i = 0; i < L; i++) yr[i] = xr[i * xl] * scale + mr[i * ml];
    } else {
      for (int64_t i = 0; i < L; i++) yr[i] = xr[i * xl] * scale;
    }
    softmax_row(yr, L);
  }
  return NULL;
}

/* ---- Gelu ---- */

static keel_status *infer_Gelu(KEEL_IN) {
  if (n_in != 1 || n_out < 1) return keel_error(KEEL_INVALID_MODEL, "Gelu takes one input");
  KEEL_TRY(need_f32(in, n_in, 0, false));
  keel_view_set_shape(&out[0], KEEL_FLOAT32, in[0].dims, in[0].ndim);
  (void)n;
  return NULL;
}

static keel_status *run_Gelu(KEEL_RUN_ARGS) {
  (void)n, (void)n_in, (void)n_out, (void)ex;
  keel_gelu_f32(in[0].data, out[0].data, (size_t)keel_view_numel(&in[0]));
  return NULL;
}

const keel_op_def keel_ops_fused[] = {
    {"LayerNorm", "keel", 1, 1, infer_LayerNorm, run_LayerNorm, NULL, 0},
    {"SkipLayerNorm", "keel", 1, 1, infer_SkipLayerNorm, run_SkipLayerNorm, NULL, -1},
    {"ScaleMaskSoftmax", "keel", 1, 1, infer_ScaleMaskSoftmax, run_ScaleMaskSoftmax, NULL, 0},
    {"Gelu", "keel", 1, 1, infer_Gelu, run_Gelu, NULL, 0},
    {"MultiHeadAttention", "keel", 1, 1, keel_mha_infer, keel_mha_run, keel_mha_workspace, -1},
};
const int keel_ops_fused_count = (int)(sizeof keel_ops_fused / sizeof keel_ops_fused[0]);
