/* Normalization operators: BatchNormalization (inference and training_mode), LayerNormalization,
 * InstanceNormalization, GroupNormalization, LRN, MeanVarianceNormalization, LpNormalization.
 * X is float32 (BatchNormalization also float64); statistics are accumulated in double. */
#include <math.h>
#include <string.h>

#include "backend/cpu/threadpool.h"
#include "ops/nn_internal.h"

/* Parameter element i of a float-typed view, as double. */
static double pget(const keel_view *v, int64_t i) {
  switch (v->dtype) {
    case KEEL_FLOAT32: return ((const float *)v->data)[i];
    case KEEL_FLOAT64: return ((const double *)v->data)[i];
    case KEEL_FLOAT16: return keel_half_to_float(((const uint16_t *)v->data)[i]);
    case KEEL_BFLOAT16: return keel_bfloat16_to_float(((const uint16_t *)v->data)[i]);
    default: return 0;
  }
}
static void pset(keel_view *v, int64_t i, double x) {
  switch (v->dtype) {
    case KEEL_FLOAT32: ((float *)v->data)[i] = (float)x; break;
    case KEEL_FLOAT64: ((double *)v->data)[i] = x; break;
    case KEEL_FLOAT16: ((uint16_t *)v->data)[i] = keel_float_to_half((float)x); break;
    case KEEL_BFLOAT16: ((uint16_t *)v->data)[i] = keel_float_to_bfloat16((float)x); break;
    default: break;
  }
}
static bool is_float_param(keel_dtype t) {
  return t == KEEL_FLOAT32 || t == KEEL_FLOAT64 || t == KEEL_FLOAT16 || t == KEEL_BFLOAT16;
}

static keel_status *need_x(const keel_view *in, int n_in, int min_rank, bool allow_f64) {
  if (!nn_has(in, n_in, 0)) return keel_error(KEEL_INVALID_MODEL, "input X is required");
  const keel_view *x = &in[0];
  if (x->dtype != KEEL_FLOAT32 && !(allow_f64 && x->dtype == KEEL_FLOAT64))
    return keel_error(KEEL_UNSUPPORTED, "input X has dtype %s; %s supported", keel_dtype_name(x->dtype),
                      allow_f64 ? "float32, float64, float16 and bfloat16 are" : "float32, float16 and bfloat16 are");
  if (x->ndim < min_rank)
    return keel_error(KEEL_SHAPE_MISMATCH, "input X has rank %d; at least %d required", x->ndim, min_rank);
  return NULL;
}

/* A per-channel parameter input: float-typed, `len` elements (or `alt_len` if >= 0). */
static keel_status *need_param(const keel_view *in, int n_in, int i, const char *name, int64_t len,
                               int64_t alt_len) {
  if (!nn_has(in, n_in, i)) return keel_error(KEEL_INVALID_MODEL, "input %s is required", name);
  const keel_view *p = &in[i];
  if (!is_float_param(p->dtype))
    return keel_error(KEEL_SHAPE_MISMATCH, "input %s has dtype %s; a float type is required", name,
                      keel_dtype_name(p->dtype));
  int64_t c = keel_view_numel(p);
  bool known = c >= 0 && len >= 0;
  if (known && c != len && !(alt_len >= 0 && c == alt_len)) {
    char buf[160];
    return keel_error(KEEL_SHAPE_MISMATCH, "input %s has shape %s; %lld elements expected", name,
                      keel_shape_format(p->dims, p->ndim, buf, sizeof buf), (long long)len);
  }
  return NULL;
}

/* Mean and 1/sqrt(var + eps) of n floats: two passes, 16 independent float lanes (so the loops vectorize
 * without reassociation flags), lanes summed in double. */
#define NN_LANES 16
static void row_stats(const float *restrict x, int64_t n, double eps, double *mean, double *inv) {
  float acc[NN_LANES] = {0};
  int64_t i = 0;
  for (; i + NN_LANES <= n; i += NN_LANES)
    for (int l = 0; l < NN_LANES; l++) acc[l] += x[i + l];
  double s = 0;
  for (; i < n; i++) s += x[i];
  for (int l = 0; l < NN_LANES; l++) s += acc[l];
  const double m = n > 0 ? s / (double)n : 0;
  const float mf = (float)m;
  float q[NN_LANES] = {0};
  for (i = 0; i + NN_LANES <= n; i += NN_LANES)
    for (int l = 0; l < NN_LANES; l++) {
      float d = x[i + l] - mf;
      q[l] += d * d;
    }
  double v = 0;
  for (; i < n; i++) {
    double d = x[i] - m;
    v += d * d;
  }
  for (int l = 0; l < NN_LANES; l++) v += q[l];
  v = n > 0 ? v / (double)n : 0;
  *mean = m;
  *inv = 1.0 / sqrt(v + eps);
}

/* y = x * a + b over n floats. */
static void axpb(const float *restrict x, float *restrict y, int64_t n, float a, float b) {
  for (int64_t i = 0; i < n; i++) y[i] = x[i] * a + b;
}

/* ---------------------------------------------------------------- BatchNormalization */

/* y = x * a + b per (n, c) plane, planes [p0, p1) of N*C: threads split the planes (each plane is computed
 * the same way whatever the split). */
typedef struct bn_job {
  const keel_view *x;
  keel_view *y;
  const double *a, *b;
  int64_t C, S, P;
} bn_job;

static void bn_apply(const bn_job *j, int64_t p0, int64_t p1) {
  const int64_t C = j->C, S = j->S, P = j->P;
  const double *a = j->a, *b = j->b;
  for (int64_t pl = p0; pl < p1; pl++) {
    const int64_t c = pl % C, off = pl * S;
    if (j->x->dtype == KEEL_FLOAT32) {
      const float *xs = (const float *)j->x->data + off;
      float *ys = (float *)j->y->data + off;
      if (P == C)
        axpb(xs, ys, S, (float)a[c], (float)b[c]);
      else
        for (int64_t k = 0; k < S; k++) ys[k] = xs[k] * (float)a[c * S + k] + (float)b[c * S + k];
    } else {
      const double *xs = (const double *)j->x->data + off;
      double *ys = (double *)j->y->data + off;
      for (int64_t k = 0; k < S; k++) ys[k] = xs[k] * a[P == C ? c : c * S + k] + b[P == C ? c : c * S + k];
    }
  }
}

static void bn_thread(void *ctx, int tid, int nt, void *scratch) {
  (void)scratch;
  const bn_job *j = ctx;
  int64_t p0, p1;
  const int64_t planes = j->x->dims[0] * j->C;
  keel_split_range(planes, tid, nt, 1, &p0, &p1);
  bn_apply(j, p0, p1);
}

static bool bn_training(const keel_node *n) {
  return n->opset >= 14 && keel_attr_int(n, "training_mode", 0) != 0;
}

keel_status *nn_bn_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  KEEL_TRY(nn_need_inputs(n, n_in, 5, 5));
  KEEL_TRY(need_x(in, n_in, 2, true));
  const keel_view *x = &in[0];
  const int64_t C = x->dims[1];
  int64_t S = nn_prod(x->dims, 2, x->ndim);
  if (S < 0 || C < 0) S = -1;
  /* Before opset 9, spatial=0 gives per-activation parameters of shape (C, D1, ..., Dn). */
  bool per_act = n->opset < 9 && keel_attr_int(n, "spatial", 1) == 0;
  int64_t alt = per_act && S >= 0 ? C * S : -1;
  static const char *names[] = {"X", "scale", "B", "input_mean", "input_var"};
  for (int i = 1; i < 5; i++) KEEL_TRY(need_param(in, n_in, i, names[i], C, alt));
  keel_view_set_shape(&out[0], x->dtype, x->dims, x->ndim);
  for (int i = 1; i < n_out && i < 5; i++)
    if (nn_want(n, n_out, i)) {
      const keel_view *src = &in[(i - 1) % 2 + 3]; /* mean-like or var-like */
      keel_view_set_shape(&out[i], src->dtype, src->dims, src->ndim);
    }
  return NULL;
}

size_t nn_bn_workspace(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  int64_t p = n_in >= 2 ? keel_view_numel(&in[1]) : 0;
  int64_t c = in[0].ndim >= 2 ? in[0].dims[1] : 0;
  if (p < 0 || c < 0) return 0;
  return (size_t)(2 * p + 2 * c) * sizeof(double);
}

keel_status *nn_bn_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                       keel_exec *ex) {
  const keel_view *x = &in[0];
  const int64_t N = x->dims[0], C = x->dims[1], S = nn_prod(x->dims, 2, x->ndim);
  const int64_t P = keel_view_numel(&in[1]);
  if (P != C && P != C * S) return keel_error(KEEL_SHAPE_MISMATCH, "scale has %lld elements", (long long)P);
  if (ex->workspace_bytes < (size_t)(2 * P + 2 * C) * sizeof(double))
    return keel_error(KEEL_INTERNAL, "workspace too small");
  double *a = ex->workspace, *b = a + P, *bmean = b + P, *bvar = bmean + C;
  const double eps = keel_attr_float(n, "epsilon", 1e-5f);
  const bool train = bn_training(n);
  const bool f32 = x->dtype == KEEL_FLOAT32;
  if (train) { /* batch statistics per channel */
    for (int64_t c = 0; c < C; c++) {
      double s = 0, q = 0;
      for (int64_t i = 0; i < N; i++) {
        const int64_t off = (i * C + c) * S;
        for (int64_t j = 0; j < S; j++) s += f32 ? ((const float *)x->data)[off + j] : ((const double *)x->data)[off + j];
      }
      double cnt = (double)(N * S), m = cnt > 0 ? s / cnt : 0;
      for (int64_t i = 0; i < N; i++) {
        const int64_t off = (i * C + c) * S;
        for (int64_t j = 0; j < S; j++) {
          double d = (f32 ? ((const float *)x->data)[off + j] : ((const double *)x->data)[off + j]) - m;
          q += d * d;
        }
      }
      bmean[c] = m;
      bvar[c] = cnt > 0 ? q / cnt : 0;
    }
  }
  for (int64_t p = 0; p < P; p++) {
    const int64_t c = P == C ? p : p / S;
    double mean = train ? bmean[c] : pget(&in[3], p), var = train ? bvar[c] : pget(&in[4], p);
    a[p] = pget(&in[1], p) / sqrt(var + eps);
    b[p] = pget(&in[2], p) - mean * a[p];
  }
  bn_job job = {x, &out[0], a, b, C, S, P};
  const int nt = keel_threads_for(keel_threads_effective(ex->num_threads), (double)(N * C * S), 32768.0);
  if (nt <= 1) bn_apply(&job, 0, N * C);
  else keel_parallel_run(nt, bn_thread, &job);
  /* Extra outputs. Training (opset 14+): running mean / var. Otherwise the statistics used (inputs). */
  const double mom = keel_attr_float(n, "momentum", 0.9f);
  for (int o = 1; o < n_out && o < 5; o++) {
    if (!nn_want_run(n, out, n_out, o)) continue;
    const bool is_var = (o % 2) == 0;
    const keel_view *src = &in[is_var ? 4 : 3];
    for (int64_t p = 0; p < P; p++) {
      double v = pget(src, p);
      if (train) {
        const int64_t c = P == C ? p : p / S;
        v = v * mom + (is_var ? bvar[c] : bmean[c]) * (1.0 - mom);
      }
      pset(&out[o], p, v);
    }
  }
  return NULL;
}

/* ---------------------------------------------------------------- LayerNormalization */

typedef struct ln_geom {
  int axis;
  int64_t outer, D;
} ln_geom;

static keel_status *ln_check_bcast(const keel_view *x, const keel_view *p, int axis, const char *name) {
  if (p->ndim > x->ndim) return keel_error(KEEL_SHAPE_MISMATCH, "%s has rank %d > rank of X %d", name, p->ndim, x->ndim);
  for (int i = 0; i < p->ndim; i++) {
    int xi = x->ndim - p->ndim + i;
    int64_t pd = p->dims[i], xd = x->dims[xi];
    bool ok = pd == 1 || pd < 0 || xd < 0 || (pd == xd && xi >= axis);
    if (!ok) {
      char b1[160], b2[160];
      return keel_error(KEEL_SHAPE_MISMATCH, "%s of shape %s does not broadcast over the normalized dims of X %s",
                        name, keel_shape_format(p->dims, p->ndim, b1, sizeof b1),
                        keel_shape_format(x->dims, x->ndim, b2, sizeof b2));
    }
  }
  return NULL;
}

static keel_status *ln_geom_get(const keel_node *n, const keel_view *in, int n_in, ln_geom *g) {
  KEEL_TRY(nn_need_inputs(n, n_in, 2, 3));
  KEEL_TRY(need_x(in, n_in, 1, false));
  const keel_view *x = &in[0];
  if (!keel_axis_normalize(keel_attr_int(n, "axis", -1), x->ndim, &g->axis))
    return keel_error(KEEL_INVALID_MODEL, "axis %lld out of range for rank %d", (long long)keel_attr_int(n, "axis", -1),
                      x->ndim);
  for (int i = 1; i < 3; i++) {
    if (!nn_has(in, n_in, i)) {
      if (i == 1) return keel_error(KEEL_INVALID_MODEL, "input Scale is required");
      continue;
    }
    if (in[i].dtype != x->dtype)
      return keel_error(KEEL_SHAPE_MISMATCH, "input %s has dtype %s but X has %s", i == 1 ? "Scale" : "B",
                        keel_dtype_name(in[i].dtype), keel_dtype_name(x->dtype));
    KEEL_TRY(ln_check_bcast(x, &in[i], g->axis, i == 1 ? "Scale" : "B"));
  }
  g->outer = nn_prod(x->dims, 0, g->axis);
  g->D = nn_prod(x->dims, g->axis, x->ndim);
  return NULL;
}

keel_status *nn_ln_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  ln_geom g;
  KEEL_TRY(ln_geom_get(n, in, n_in, &g));
  const keel_view *x = &in[0];
  keel_view_set_shape(&out[0], x->dtype, x->dims, x->ndim);
  int64_t sd[KEEL_MAX_DIMS];
  for (int i = 0; i < x->ndim; i++) sd[i] = i < g.axis ? x->dims[i] : 1;
  keel_dtype st = keel_attr_int(n, "stash_type", 1) == KEEL_FLOAT64 ? KEEL_FLOAT64 : KEEL_FLOAT32;
  for (int i = 1; i < 3; i++)
    if (nn_want(n, n_out, i)) keel_view_set_shape(&out[i], st, sd, x->ndim);
  return NULL;
}

size_t nn_ln_workspace(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  ln_geom g;
  keel_status *s = ln_geom_get(n, in, n_in, &g);
  if (s) {
    keel_status_free(s);
    return 0;
  }
  return g.D > 0 ? (size_t)(2 * g.D) * sizeof(float) : 0;
}

/* Expand a parameter broadcast over the normalized dims [axis, rank) of x into dst (D floats). */
static void ln_expand(const keel_view *x, int axis, const keel_view *p, float *dst, int64_t D) {
  int64_t pn = keel_view_numel(p);
  if (pn == D) { /* already the full normalized block (possibly with leading 1s) */
    memcpy(dst, p->data, (size_t)D * sizeof(float));
    return;
  }
  int nd = x->ndim - axis;
  int64_t strides[KEEL_MAX_DIMS], idx[KEEL_MAX_DIMS] = {0};
  int64_t st = 1;
  for (int i = nd - 1; i >= 0; i--) { /* stride of p along normalized dim i (0 when broadcast) */
    int pi = p->ndim - (nd - i);
    int64_t pd = pi >= 0 ? p->dims[pi] : 1;
    strides[i] = pd == 1 ? 0 : st;
    st *= pd;
  }
  const float *src = p->data;
  int64_t off = 0;
  for (int64_t j = 0; j < D; j++) {
    dst[j] = src[off];
    for (int i = nd - 1; i >= 0; i--) {
      idx[i]++;
      off += strides[i];
      if (idx[i] < x->dims[axis + i]) break;
      off -= strides[i] * idx[i];
      idx[i] = 0;
    }
  }
}

keel_status *nn_ln_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                       keel_exec *ex) {
  ln_geom g;
  KEEL_TRY(ln_geom_get(n, in, n_in, &g));
  const int64_t D = g.D;
  if (D == 0 || g.outer == 0) return NULL;
  if (ex->workspace_bytes < (size_t)(2 * D) * sizeof(float)) return keel_error(KEEL_INTERNAL, "workspace too small");
  float *scale = ex->workspace, *bias = scale + D;
  ln_expand(&in[0], g.axis, &in[1], scale, D);
  const bool has_b = nn_has(in, n_in, 2);
  if (has_b)
    ln_expand(&in[0], g.axis, &in[2], bias, D);
  else
    memset(bias, 0, (size_t)D * sizeof(float));
  const double eps = keel_attr_float(n, "epsilon", 1e-5f);
  const bool want_m = nn_want_run(n, out, n_out, 1), want_i = nn_want_run(n, out, n_out, 2);
  for (int64_t r = 0; r < g.outer; r++) {
    const float *restrict xr = (const float *)in[0].data + r * D;
    float *restrict yr = (float *)out[0].data + r * D;
    double mean, inv;
    row_stats(xr, D, eps, &mean, &inv);
    const float m = (float)mean, iv = (float)inv;
    for (int64_t j = 0; j < D; j++) yr[j] = (xr[j] - m) * iv * scale[j] + bias[j];
    if (want_m) pset(&out[1], r, mean);
    if (want_i) pset(&out[2], r, inv);
  }
  return NULL;
}

/* ---------------------------------------------------------------- InstanceNormalization */

keel_status *nn_in_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  KEEL_TRY(nn_need_inputs(n, n_in, 3, 3));
  KEEL_TRY(need_x(in, n_in, 3, false));
  KEEL_TRY(need_param(in, n_in, 1, "scale", in[0].dims[1], -1));
  KEEL_TRY(need_param(in, n_in, 2, "B", in[0].dims[1], -1));
  keel_view_set_shape(&out[0], in[0].dtype, in[0].dims, in[0].ndim);
  return NULL;
}

keel_status *nn_in_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                       keel_exec *ex) {
  const keel_view *x = &in[0];
  const int64_t N = x->dims[0], C = x->dims[1], S = nn_prod(x->dims, 2, x->ndim);
  const double eps = keel_attr_float(n, "epsilon", 1e-5f);
  for (int64_t i = 0; i < N; i++)
    for (int64_t c = 0; c < C; c++) {
      const float *xs = (const float *)x->data + (i * C + c) * S;
      float *ys = (float *)out[0].data + (i * C + c) * S;
      double mean, inv;
      row_stats(xs, S, eps, &mean, &inv);
      double a = pget(&in[1], c) * inv;
      axpb(xs, ys, S, (float)a, (float)(pget(&in[2], c) - mean * a));
    }
  return NULL;
}

/* ---------------------------------------------------------------- GroupNormalization */
/* Opset 18: scale and bias have num_groups elements; opset 21: one per channel. */

keel_status *nn_gn_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  KEEL_TRY(nn_need_inputs(n, n_in, 3, 3));
  KEEL_TRY(need_x(in, n_in, 2, false));
  const int64_t C = in[0].dims[1], G = keel_attr_int(n, "num_groups", -1);
  if (G < 1) return keel_error(KEEL_INVALID_MODEL, "attribute num_groups is required and must be >= 1");
  if (C >= 0 && C % G)
    return keel_error(KEEL_SHAPE_MISMATCH, "%lld channels are not divisible by num_groups %lld", (long long)C,
                      (long long)G);
  int64_t plen = n->opset >= 21 ? C : G;
  KEEL_TRY(need_param(in, n_in, 1, "scale", plen, -1));
  KEEL_TRY(need_param(in, n_in, 2, "bias", plen, -1));
  keel_view_set_shape(&out[0], in[0].dtype, in[0].dims, in[0].ndim);
  return NULL;
}

keel_status *nn_gn_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                       keel_exec *ex) {
  const keel_view *x = &in[0];
  const int64_t N = x->dims[0], C = x->dims[1], S = nn_prod(x->dims, 2, x->ndim);
  const int64_t G = keel_attr_int(n, "num_groups", 1), Cg = C / G;
  const bool per_channel = n->opset >= 21;
  const double eps = keel_attr_float(n, "epsilon", 1e-5f);
  for (int64_t i = 0; i < N; i++)
    for (int64_t gi = 0; gi < G; gi++) {
      const int64_t off = (i * C + gi * Cg) * S;
      double mean, inv;
      row_stats((const float *)x->data + off, Cg * S, eps, &mean, &inv);
      for (int64_t c = 0; c < Cg; c++) {
        const int64_t pi = per_channel ? gi * Cg + c : gi;
        double a = pget(&in[1], pi) * inv;
        axpb((const float *)x->data + off + c * S, (float *)out[0].data + off + c * S, S, (float)a,
             (float)(pget(&in[2], pi) - mean * a));
      }
    }
  return NULL;
}

/* ---------------------------------------------------------------- LRN */

keel_status *nn_lrn_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  KEEL_TRY(nn_need_inputs(n, n_in, 1, 1));
  KEEL_TRY(need_x(in, n_in, 2, false));
  if (keel_attr_int(n, "size", 0) < 1) return keel_error(KEEL_INVALID_MODEL, "attribute size is required and must be >= 1");
  keel_view_set_shape(&out[0], in[0].dtype, in[0].dims, in[0].ndim);
  return NULL;
}

keel_status *nn_lrn_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                        keel_exec *ex) {
  const keel_view *x = &in[0];
  const int64_t N = x->dims[0], C = x->dims[1], S = nn_prod(x->dims, 2, x->ndim);
  const int64_t size = keel_attr_int(n, "size", 1);
  const float alpha = keel_attr_float(n, "alpha", 1e-4f), beta = keel_attr_float(n, "beta", 0.75f),
              bias = keel_attr_float(n, "bias", 1.0f);
  const int64_t lo = (size - 1) / 2, hi = size - 1 - lo; /* channels before / after c */
  const float k = alpha / (float)size;
  for (int64_t i = 0; i < N; i++) {
    const float *xn = (const float *)x->data + i * C * S;
    float *yn = (float *)out[0].data + i * C * S;
    for (int64_t c = 0; c < C; c++) {
      float *y = yn + c * S;
      memset(y, 0, (size_t)S * sizeof(float));
      int64_t c0 = c - lo < 0 ? 0 : c - lo, c1 = c + hi >= C ? C - 1 : c + hi;
      for (int64_t cc = c0; cc <= c1; cc++) {
        const float *xc = xn + cc * S;
        for (int64_t j = 0; j < S; j++) y[j] += xc[j] * xc[j];
      }
      const float *xc = xn + c * S;
      for (int64_t j = 0; j < S; j++) y[j] = xc[j] * powf(bias + k * y[j], -beta);
    }
  }
  return NULL;
}

/* ---------------------------------------------------------------- MeanVarianceNormalization */

/* Bitmask of reduced axes; kept-group count. */
static keel_status *mvn_axes(const keel_node *n, const keel_view *x, unsigned *mask, int64_t *kept) {
  const int64_t *ax = NULL;
  static const int64_t dflt[3] = {0, 2, 3};
  int na = keel_attr_ints(n, "axes", &ax);
  if (na < 0 || !ax) {
    ax = dflt;
    na = 3;
  }
  *mask = 0;
  for (int i = 0; i < na; i++) {
    int a;
    if (!keel_axis_normalize(ax[i], x->ndim, &a))
      return keel_error(KEEL_INVALID_MODEL, "axes[%d] = %lld out of range for rank %d", i, (long long)ax[i], x->ndim);
    *mask |= 1u << a;
  }
  *kept = 1;
  for (int i = 0; i < x->ndim; i++)
    if (!(*mask & (1u << i))) *kept *= x->dims[i];
  return NULL;
}

keel_status *nn_mvn_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  KEEL_TRY(nn_need_inputs(n, n_in, 1, 1));
  KEEL_TRY(need_x(in, n_in, 1, false));
  unsigned mask;
  int64_t kept;
  KEEL_TRY(mvn_axes(n, &in[0], &mask, &kept));
  keel_view_set_shape(&out[0], in[0].dtype, in[0].dims, in[0].ndim);
  return NULL;
}

size_t nn_mvn_workspace(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  unsigned mask;
  int64_t kept;
  keel_status *s = mvn_axes(n, &in[0], &mask, &kept);
  if (s) {
    keel_status_free(s);
    return 0;
  }
  return kept > 0 ? (size_t)(2 * kept) * sizeof(double) : 0;
}

/* Visit every element in row-major order, calling body with the flat index i and its kept-group index g. */
#define MVN_FOREACH(x, mask, body)                                                        \
  do {                                                                                    \
    int64_t idx_[KEEL_MAX_DIMS] = {0}, ks_[KEEL_MAX_DIMS], st_ = 1, g = 0;                \
    for (int d_ = (x)->ndim - 1; d_ >= 0; d_--) {                                         \
      ks_[d_] = ((mask) & (1u << d_)) ? 0 : st_;                                          \
      if (!((mask) & (1u << d_))) st_ *= (x)->dims[d_];                                   \
    }                                                                                     \
    for (int64_t i = 0; i < total; i++) {                                                 \
      body;                                                                               \
      for (int d_ = (x)->ndim - 1; d_ >= 0; d_--) {                                       \
        idx_[d_]++;                                                                       \
        g += ks_[d_];                                                                     \
        if (idx_[d_] < (x)->dims[d_]) break;                                              \
        g -= ks_[d_] * idx_[d_];                                                          \
        idx_[d_] = 0;                                                                     \
      }                                                                                   \
    }                                                                                     \
  } while (0)

keel_status *nn_mvn_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                        keel_exec *ex) {
  const keel_view *x = &in[0];
  unsigned mask;
  int64_t kept;
  KEEL_TRY(mvn_axes(n, x, &mask, &kept));
  const int64_t total = keel_view_numel(x);
  if (total == 0) return NULL;
  if (ex->workspace_bytes < (size_t)(2 * kept) * sizeof(double)) return keel_error(KEEL_INTERNAL, "workspace too small");
  double *mean = ex->workspace, *sd = mean + kept;
  const double cnt = (double)(total / kept);
  const float *xd = x->data;
  float *yd = out[0].data;
  memset(mean, 0, (size_t)(2 * kept) * sizeof(double));
  MVN_FOREACH(x, mask, mean[g] += xd[i]);
  for (int64_t g = 0; g < kept; g++) mean[g] /= cnt;
  MVN_FOREACH(x, mask, { double d_ = xd[i] - mean[g]; sd[g] += d_ * d_; });
  for (int64_t g = 0; g < kept; g++) sd[g] = sqrt(sd[g] / cnt) + 1e-9; /* ONNX adds epsilon to the std */
  MVN_FOREACH(x, mask, yd[i] = (float)((xd[i] - mean[g]) / sd[g]));
  return NULL;
}

/* ---------------------------------------------------------------- LpNormalization */

typedef struct lpn_geom {
  int64_t outer, len, inner;
  int64_t p;
} lpn_geom;

static keel_status *lpn_geom_get(const keel_node *n, const keel_view *in, int n_in, lpn_geom *g) {
  KEEL_TRY(nn_need_inputs(n, n_in, 1, 1));
  KEEL_TRY(need_x(in, n_in, 1, false));
  const keel_view *x = &in[0];
  int axis;
  if (!keel_axis_normalize(keel_attr_int(n, "axis", -1), x->ndim, &axis))
    return keel_error(KEEL_INVALID_MODEL, "axis %lld out of range for rank %d", (long long)keel_attr_int(n, "axis", -1),
                      x->ndim);
  g->p = keel_attr_int(n, "p", 2);
  if (g->p != 1 && g->p != 2) return keel_error(KEEL_INVALID_MODEL, "p = %lld; only 1 and 2 are defined", (long long)g->p);
  g->outer = nn_prod(x->dims, 0, axis);
  g->len = x->dims[axis];
  g->inner = nn_prod(x->dims, axis + 1, x->ndim);
  return NULL;
}

keel_status *nn_lpn_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  lpn_geom g;
  KEEL_TRY(lpn_geom_get(n, in, n_in, &g));
  keel_view_set_shape(&out[0], in[0].dtype, in[0].dims, in[0].ndim);
  return NULL;
}

size_t nn_lpn_workspace(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  lpn_geom g;
  keel_status *s = lpn_geom_get(n, in, n_in, &g);
  if (s) {
    keel_status_free(s);
    return 0;
  }
  return g.inner > 0 ? (size_t)g.inner * sizeof(double) : 0;
}

keel_status *nn_lpn_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                        keel_exec *ex) {
  lpn_geom g;
  KEEL_TRY(lpn_geom_get(n, in, n_in, &g));
  if (ex->workspace_bytes < (size_t)g.inner * sizeof(double)) return keel_error(KEEL_INTERNAL, "workspace too small");
  double *acc = ex->workspace;
  for (int64_t o = 0; o < g.outer; o++) {
    const float *x = (const float *)in[0].data + o * g.len * g.inner;
    float *y = (float *)out[0].data + o * g.len * g.inner;
    for (int64_t j = 0; j < g.inner; j++) acc[j] = 0;
    for (int64_t a = 0; a < g.len; a++)
      for (int64_t j = 0; j < g.inner; j++) {
        double v = x[a * g.inner + j];
        acc[j] += g.p == 1 ? fabs(v) : v * v;
      }
    for (int64_t j = 0; j < g.inner; j++) {
      double nrm = g.p == 1 ? acc[j] : sqrt(acc[j]);
      acc[j] = nrm > 0 ? 1.0 / nrm : 0; /* an all-zero slice stays zero rather than NaN */
    }
    for (int64_t a = 0; a < g.len; a++)
      for (int64_t j = 0; j < g.inner; j++) y[a * g.inner + j] = (float)(x[a * g.inner + j] * acc[j]);
  }
  return NULL;
}
