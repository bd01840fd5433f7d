/* FlexAttention (ai.onnx.preview, version 1): scaled dot-product attention over rank-4 Q/K/V with optional
 * score_mod / prob_mod subgraphs applied to the whole (B, Hq, L, S) score / probability tensor.
 *
 * Scores and probabilities are computed in the softmax precision (float, or double for float64 inputs or
 * softmax_precision = DOUBLE) in the workspace. The modifier subgraphs run through the interpreter, which
 * allocates their intermediates; so a node with a modifier reports (from infer) that it needs Q's value,
 * which sends its graph to the interpreter, where per-call allocation is the norm. Without modifiers it is
 * an ordinary allocation-free kernel. */
#include <math.h>
#include <string.h>

#include <cblas.h>

#include "ops/attention_internal.h"
#include "runtime/interp.h"

typedef struct flex_p {
  int64_t B, Hq, Hkv, L, S, D, Dv;
  keel_dtype ct; /* compute type: float32 or float64 */
  double scale;
  const keel_graph *score_mod, *prob_mod;
} flex_p;

static const keel_graph *flex_graph(const keel_node *n, const char *name) {
  const keel_attr *a = keel_node_attr(n, name);
  return a && a->type == KEEL_ATTR_GRAPH ? a->g : NULL;
}

static keel_status *flex_shape(const keel_node *n, const keel_view *in, int n_in, flex_p *p) {
  memset(p, 0, sizeof *p);
  if (n_in != 3 || !keel_view_present(&in[0]) || !keel_view_present(&in[1]) || !keel_view_present(&in[2]))
    return keel_error(KEEL_INVALID_MODEL, "FlexAttention takes Q, K and V");
  const keel_view *q = &in[0], *k = &in[1], *v = &in[2];
  if (!keel_elem_is_float(q->dtype) || k->dtype != q->dtype || v->dtype != q->dtype)
    return keel_error(KEEL_UNSUPPORTED, "FlexAttention: Q/K/V dtypes %s/%s/%s (one float type)",
                      keel_dtype_name(q->dtype), keel_dtype_name(k->dtype), keel_dtype_name(v->dtype));
  if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4)
    return keel_error(KEEL_INVALID_MODEL, "FlexAttention: Q, K and V must be rank 4 (ranks %d, %d, %d)", q->ndim,
                      k->ndim, v->ndim);
  p->B = q->dims[0], p->Hq = q->dims[1], p->L = q->dims[2], p->D = q->dims[3];
  p->Hkv = k->dims[1], p->S = k->dims[2], p->Dv = v->dims[3];
  if (k->dims[0] != p->B || v->dims[0] != p->B || v->dims[1] != p->Hkv || v->dims[2] != p->S || k->dims[3] != p->D)
    return keel_error(KEEL_INVALID_MODEL, "FlexAttention: K/V shapes do not match Q (B, Hkv, S, D) / (B, Hkv, S, Dv)");
  if (p->Hkv <= 0 || p->Hq % p->Hkv)
    return keel_error(KEEL_INVALID_MODEL, "FlexAttention: q heads %lld not a multiple of kv heads %lld",
                      (long long)p->Hq, (long long)p->Hkv);
  const keel_attr *sp = keel_node_attr(n, "softmax_precision");
  if (sp) {
    if (sp->i == KEEL_FLOAT32) p->ct = KEEL_FLOAT32;
    else if (sp->i == KEEL_FLOAT64) p->ct = KEEL_FLOAT64;
    else
      return keel_error(KEEL_UNSUPPORTED, "FlexAttention: softmax_precision %lld (float or double supported)",
                        (long long)sp->i);
  } else {
    p->ct = q->dtype == KEEL_FLOAT64 ? KEEL_FLOAT64 : KEEL_FLOAT32;
  }
  const keel_attr *sa = keel_node_attr(n, "scale");
  p->scale = sa ? (double)sa->f : (p->D > 0 ? 1.0 / sqrt((double)p->D) : 1.0);
  p->score_mod = flex_graph(n, "score_mod");
  p->prob_mod = flex_graph(n, "prob_mod");
  if ((keel_node_attr(n, "score_mod") && !p->score_mod) || (keel_node_attr(n, "prob_mod") && !p->prob_mod))
    return keel_error(KEEL_UNSUPPORTED, "FlexAttention: a modifier attribute is not a usable graph");
  if (p->L > INT32_MAX || p->S > INT32_MAX || p->D > INT32_MAX || p->Dv > INT32_MAX)
    return keel_error(KEEL_UNSUPPORTED, "FlexAttention: dimensions exceed BLAS's 32-bit sizes");
  return NULL;
}

keel_status *keel_at_flex_infer(AT_IN) {
  flex_p p;
  KEEL_TRY(flex_shape(n, in, n_in, &p));
  if (n_out != 1) return keel_error(KEEL_INVALID_MODEL, "FlexAttention has 1 output, got %d", n_out);
  if ((p.score_mod || p.prob_mod) && !in[0].data) return keel_need_value(n, 0);
  int64_t d[4] = {p.B, p.Hq, p.L, p.Dv};
  keel_view_set_shape(&out[0], in[0].dtype, d, 4);
  return NULL;
}

/* the full score tensor, plus compute-type copies of Q, K, V and Y when the input type differs */
size_t keel_at_flex_ws(AT_WS) {
  flex_p p;
  keel_status *s = flex_shape(n, in, n_in, &p);
  if (s) {
    keel_status_free(s);
    return 0;
  }
  size_t es = keel_dtype_size(p.ct);
  size_t b = at_align((size_t)(p.B * p.Hq * p.L * p.S) * es);
  if (in[0].dtype != p.ct)
    b += at_align((size_t)keel_view_numel(&in[0]) * es) + at_align((size_t)keel_view_numel(&in[1]) * es) +
         at_align((size_t)keel_view_numel(&in[2]) * es) + at_align((size_t)(p.B * p.Hq * p.L * p.Dv) * es);
  return b;
}

/* Run a modifier subgraph over the (B, Hq, L, S) tensor in place. */
static keel_status *flex_mod(const flex_p *p, const keel_graph *g, const char *what, void *data) {
  int64_t dims[4] = {p->B, p->Hq, p->L, p->S};
  size_t nb = (size_t)(p->B * p->Hq * p->L * p->S) * keel_dtype_size(p->ct);
  if (g->n_inputs != 1 || g->n_outputs != 1)
    return keel_error(KEEL_INVALID_MODEL, "FlexAttention: %s must have 1 input and 1 output (has %d and %d)", what,
                      g->n_inputs, g->n_outputs);
  keel_tensor *t = NULL, *r = NULL;
  KEEL_TRY(keel_tensor_wrap(p->ct, dims, 4, data, nb, NULL, NULL, &t));
  keel_status *s = keel_interp_run(g, &t, 1, &r, NULL);
  keel_tensor_release(t);
  if (s) return keel_error_prefix(s, "FlexAttention %s: ", what);
  if (keel_tensor_dtype(r) != p->ct || !keel_shape_equal(keel_tensor_dims(r), keel_tensor_ndim(r), dims, 4)) {
    keel_tensor_release(r);
    return keel_error(KEEL_INVALID_MODEL, "FlexAttention: %s must return a %s tensor of its input's shape", what,
                      keel_dtype_name(p->ct));
  }
  if (keel_tensor_data_const(r) != data) memcpy(data, keel_tensor_data_const(r), nb);
  keel_tensor_release(r);
  return NULL;
}

#define FLEX_SOFTMAX(T, EXP)                                                   \
  for (int64_t r = 0; r < rows; r++) {                                         \
    T *s = (T *)S + r * p.S, mx = -INFINITY, sum = 0;                          \
    for (int64_t j = 0; j < p.S; j++) mx = s[j] > mx ? s[j] : mx;              \
    if (mx == -INFINITY || mx == INFINITY || mx != mx) {                       \
      for (int64_t j = 0; j < p.S; j++) s[j] = NAN;                            \
      continue;                                                                \
    }                                                                          \
    for (int64_t j = 0; j < p.S; j++) sum += (s[j] = EXP(s[j] - mx));          \
    for (int64_t j = 0; j < p.S; j++) s[j] /= sum;                             \
  }

keel_status *keel_at_flex_run(AT_RUN) {
  flex_p p;
  KEEL_TRY(flex_shape(n, in, n_in, &p));
  bool dbl = p.ct == KEEL_FLOAT64;
  size_t es = keel_dtype_size(p.ct);
  char *ws = ex->workspace;
  void *S = ws;
  ws += at_align((size_t)(p.B * p.Hq * p.L * p.S) * es);
  const void *Q = in[0].data, *K = in[1].data, *V = in[2].data;
  void *Y = out[0].data;
  bool staged = in[0].dtype != p.ct;
  if (staged) {
    const void *src[3] = {in[0].data, in[1].data, in[2].data};
    void *dst[3];
    for (int i = 0; i < 3; i++) {
      int64_t cnt = keel_view_numel(&in[i]);
      dst[i] = ws;
      for (int64_t e = 0; e < cnt; e++) keel_elem_store(p.ct, ws, e, keel_elem_load(in[i].dtype, src[i], e));
      ws += at_align((size_t)cnt * es);
    }
    Q = dst[0], K = dst[1], V = dst[2], Y = ws;
  }
  const int64_t G = p.Hq / p.Hkv, rows = p.B * p.Hq * p.L;
  /* scores = scale * Q K^T per (batch, head) */
  for (int64_t b = 0; b < p.B; b++)
    for (int64_t h = 0; h < p.Hq; h++) {
      int64_t hk = h / G;
      size_t qo = (size_t)((b * p.Hq + h) * p.L * p.D), ko = (size_t)((b * p.Hkv + hk) * p.S * p.D);
      size_t so = (size_t)((b * p.Hq + h) * p.L * p.S);
      if (p.L == 0 || p.S == 0) continue;
      if (p.D == 0) {
        for (int64_t i = 0; i < p.L * p.S; i++) keel_elem_store(p.ct, S, (int64_t)so + i, 0);
      } else if (dbl) {
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)p.L, (int)p.S, (int)p.D, p.scale,
                    (const double *)Q + qo, (int)p.D, (const double *)K + ko, (int)p.D, 0, (double *)S + so, (int)p.S);
      } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)p.L, (int)p.S, (int)p.D, (float)p.scale,
                    (const float *)Q + qo, (int)p.D, (const float *)K + ko, (int)p.D, 0, (float *)S + so, (int)p.S);
      }
    }
  if (p.score_mod) KEEL_TRY(flex_mod(&p, p.score_mod, "score_mod", S));
  if (dbl) {
    FLEX_SOFTMAX(double, exp)
  } else {
    FLEX_SOFTMAX(float, expf)
  }
  if (p.prob_mod) KEEL_TRY(flex_mod(&p, p.prob_mod, "prob_mod", S));
  /* Y = P V */
  for (int64_t b = 0; b < p.B; b++)
    for (int64_t h = 0; h < p.Hq; h++) {
      int64_t hk = h / G;
      size_t so = (size_t)((b * p.Hq + h) * p.L * p.S), vo = (size_t)((b * p.Hkv + hk) * p.S * p.Dv);
      size_t yo = (size_t)((b * p.Hq + h) * p.L * p.Dv);
      if (p.L == 0 || p.Dv == 0) continue;
      if (p.S == 0) {
        for (int64_t i = 0; i < p.L * p.Dv; i++) keel_elem_store(p.ct, Y, (int64_t)yo + i, 0);
      } else if (dbl) {
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)p.L, (int)p.Dv, (int)p.S, 1, (const double *)S + so,
                    (int)p.S, (const double *)V + vo, (int)p.Dv, 0, (double *)Y + yo, (int)p.Dv);
      } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)p.L, (int)p.Dv, (int)p.S, 1, (const float *)S + so,
                    (int)p.S, (const float *)V + vo, (int)p.Dv, 0, (float *)Y + yo, (int)p.Dv);
      }
    }
  if (staged) {
    int64_t cnt = keel_view_numel(&out[0]);
    for (int64_t e = 0; e < cnt; e++) keel_elem_store(out[0].dtype, out[0].data, e, keel_elem_load(p.ct, Y, e));
  }
  return NULL;
}
