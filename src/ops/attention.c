/* Operator family: attention. Transformer building blocks: Attention (opset 23/24), RMSNormalization and
 * RotaryEmbedding (23) here; LinearAttention and CausalConvWithState (27) in attention_linear.c;
 * FlexAttention (ai.onnx.preview 1) in attention_flex.c.
 *
 * Attention runs per (batch, query head) with two OpenBLAS GEMMs (scores, then probabilities times values)
 * around a row-wise bias + softmax, reading Q/K/V through strides so 3-D (packed heads) and 4-D layouts,
 * GQA head sharing and the past/new key-value split never need a transposed or concatenated copy.
 * float32 runs in place; float16/bfloat16 are staged to float in the workspace; float64 runs in double. */
#include <math.h>
#include <string.h>

#include <cblas.h>

#include "ops/attention_internal.h"

/* ---------------------------------------------------------------------------------------------------- */
/* Attention */

typedef struct attn_p {
  int64_t B, Hq, Hkv, Lq, L, P, T, D, Dv;
  int64_t qs[3], ks[3], vs[3], ys[3]; /* element strides of (batch, head, sequence); rows are contiguous */
  bool is3d, causal;
  double scale, softcap;
  int mode;                 /* qk_matmul_output_mode */
  const keel_view *mask;    /* NULL when absent */
  int64_t ms[3], mk;        /* mask strides for (batch, q head, q row), 0 where broadcast; its last dim */
  const keel_view *nonpad;  /* nonpad_kv_seqlen, NULL when absent */
  keel_view *qk;            /* qk_matmul_output, NULL when not requested */
} attn_p;

enum { A_Q, A_K, A_V, A_MASK, A_PK, A_PV, A_NONPAD };

static keel_status *attn_shape(const keel_node *n, const keel_view *in, int n_in, attn_p *p) {
  memset(p, 0, sizeof *p);
  if (n_in < 3 || !keel_view_present(&in[A_Q]) || !keel_view_present(&in[A_K]) || !keel_view_present(&in[A_V]))
    return keel_error(KEEL_INVALID_MODEL, "Attention needs Q, K and V");
  const keel_view *q = &in[A_Q], *k = &in[A_K], *v = &in[A_V];
  if (!keel_elem_is_float(q->dtype) || k->dtype != q->dtype || !keel_elem_is_float(v->dtype))
    return keel_error(KEEL_UNSUPPORTED, "Attention: Q/K/V dtypes %s/%s/%s (float types, Q and K alike)",
                      keel_dtype_name(q->dtype), keel_dtype_name(k->dtype), keel_dtype_name(v->dtype));
  if (q->ndim != k->ndim || q->ndim != v->ndim || (q->ndim != 3 && q->ndim != 4))
    return keel_error(KEEL_INVALID_MODEL, "Attention: Q, K and V must all be 3-D or all 4-D (ranks %d, %d, %d)",
                      q->ndim, k->ndim, v->ndim);
  p->is3d = q->ndim == 3;
  p->B = q->dims[0];
  if (k->dims[0] != p->B || v->dims[0] != p->B)
    return keel_error(KEEL_INVALID_MODEL, "Attention: batch sizes of Q, K, V differ (%lld, %lld, %lld)",
                      (long long)p->B, (long long)k->dims[0], (long long)v->dims[0]);
  if (p->is3d) {
    p->Hq = keel_attr_int(n, "q_num_heads", 0);
    p->Hkv = keel_attr_int(n, "kv_num_heads", 0);
    if (p->Hq <= 0 || p->Hkv <= 0)
      return keel_error(KEEL_INVALID_MODEL, "Attention: 3-D inputs need q_num_heads and kv_num_heads > 0");
    if (q->dims[2] % p->Hq || k->dims[2] % p->Hkv || v->dims[2] % p->Hkv)
      return keel_error(KEEL_INVALID_MODEL,
                        "Attention: hidden sizes %lld/%lld/%lld are not multiples of the head counts %lld/%lld",
                        (long long)q->dims[2], (long long)k->dims[2], (long long)v->dims[2], (long long)p->Hq,
                        (long long)p->Hkv);
    p->Lq = q->dims[1];
    p->L = k->dims[1];
    p->D = q->dims[2] / p->Hq;
    if (k->dims[2] / p->Hkv != p->D)
      return keel_error(KEEL_INVALID_MODEL, "Attention: Q head size %lld differs from K head size %lld",
                        (long long)p->D, (long long)(k->dims[2] / p->Hkv));
    p->Dv = v->dims[2] / p->Hkv;
    if (v->dims[1] != p->L)
      return keel_error(KEEL_INVALID_MODEL, "Attention: K and V sequence lengths differ (%lld, %lld)",
                        (long long)p->L, (long long)v->dims[1]);
    int64_t qh = p->Hq * p->D, kh = p->Hkv * p->D, vh = p->Hkv * p->Dv;
    int64_t qs[3] = {p->Lq * qh, p->D, qh}, ks[3] = {p->L * kh, p->D, kh}, vs[3] = {p->L * vh, p->Dv, vh};
    memcpy(p->qs, qs, sizeof qs);
    memcpy(p->ks, ks, sizeof ks);
    memcpy(p->vs, vs, sizeof vs);
  } else {
    p->Hq = q->dims[1];
    p->Hkv = k->dims[1];
    if (v->dims[1] != p->Hkv)
      return keel_error(KEEL_INVALID_MODEL, "Attention: K and V head counts differ (%lld, %lld)",
                        (long long)p->Hkv, (long long)v->dims[1]);
    p->Lq = q->dims[2];
    p->L = k->dims[2];
    p->D = q->dims[3];
    p->Dv = v->dims[3];
    if (k->dims[3] != p->D)
      return keel_error(KEEL_INVALID_MODEL, "Attention: Q head size %lld differs from K head size %lld",
                        (long long)p->D, (long long)k->dims[3]);
    if (v->dims[2] != p->L)
      return keel_error(KEEL_INVALID_MODEL, "Attention: K and V sequence lengths differ (%lld, %lld)",
                        (long long)p->L, (long long)v->dims[2]);
    int64_t qs[3] = {p->Hq * p->Lq * p->D, p->Lq * p->D, p->D};
    int64_t ks[3] = {p->Hkv * p->L * p->D, p->L * p->D, p->D};
    int64_t vs[3] = {p->Hkv * p->L * p->Dv, p->L * p->Dv, p->Dv};
    memcpy(p->qs, qs, sizeof qs);
    memcpy(p->ks, ks, sizeof ks);
    memcpy(p->vs, vs, sizeof vs);
  }
  if (p->Hkv <= 0 || p->Hq % p->Hkv)
    return keel_error(KEEL_INVALID_MODEL, "Attention: q_num_heads %lld is not a multiple of kv_num_heads %lld",
                      (long long)p->Hq, (long long)p->Hkv);
  if (p->is3d) {
    int64_t ys[3] = {p->Lq * p->Hq * p->Dv, p->Dv, p->Hq * p->Dv};
    memcpy(p->ys, ys, sizeof ys);
  } else {
    int64_t ys[3] = {p->Hq * p->Lq * p->Dv, p->Lq * p->Dv, p->Dv};
    memcpy(p->ys, ys, sizeof ys);
  }
  /* past key / value: (B, Hkv, P, D) and (B, Hkv, P, Dv), both or neither */
  bool pk = n_in > A_PK && keel_view_present(&in[A_PK]), pv = n_in > A_PV && keel_view_present(&in[A_PV]);
  if (pk != pv) return keel_error(KEEL_INVALID_MODEL, "Attention: past_key and past_value go together");
  if (pk) {
    const keel_view *a = &in[A_PK], *b = &in[A_PV];
    if (a->dtype != k->dtype || b->dtype != v->dtype || a->ndim != 4 || b->ndim != 4 || a->dims[0] != p->B ||
        b->dims[0] != p->B || a->dims[1] != p->Hkv || b->dims[1] != p->Hkv || a->dims[2] != b->dims[2] ||
        a->dims[3] != p->D || b->dims[3] != p->Dv)
      return keel_error(KEEL_INVALID_MODEL,
                        "Attention: past_key/past_value must be (%lld, %lld, P, %lld) / (%lld, %lld, P, %lld) "
                        "of K's / V's dtype",
                        (long long)p->B, (long long)p->Hkv, (long long)p->D, (long long)p->B, (long long)p->Hkv,
                        (long long)p->Dv);
    p->P = a->dims[2];
  }
  p->T = p->P + p->L;
  /* attn_mask: broadcast to (B, Hq, Lq, <=T) */
  if (n_in > A_MASK && keel_view_present(&in[A_MASK])) {
    const keel_view *m = &in[A_MASK];
    if (m->dtype != KEEL_BOOL && !keel_elem_is_float(m->dtype))
      return keel_error(KEEL_UNSUPPORTED, "Attention: attn_mask dtype %s (bool or float)", keel_dtype_name(m->dtype));
    if (m->ndim < 2 || m->ndim > 4)
      return keel_error(KEEL_INVALID_MODEL, "Attention: attn_mask has rank %d (2 to 4)", m->ndim);
    int64_t md[4] = {1, 1, 1, 1};
    for (int i = 0; i < m->ndim; i++) md[4 - m->ndim + i] = m->dims[i];
    int64_t want[3] = {p->B, p->Hq, p->Lq};
    for (int i = 0; i < 3; i++)
      if (md[i] != 1 && md[i] != want[i])
        return keel_error(KEEL_INVALID_MODEL, "Attention: attn_mask dim %d is %lld, not 1 or %lld",
                          i - (4 - m->ndim), (long long)md[i], (long long)want[i]);
    if (md[3] > p->T)
      return keel_error(KEEL_INVALID_MODEL, "Attention: attn_mask's last dim %lld exceeds the kv length %lld",
                        (long long)md[3], (long long)p->T);
    p->mk = md[3];
    p->ms[2] = md[2] == 1 ? 0 : md[3];
    p->ms[1] = md[1] == 1 ? 0 : md[2] * md[3];
    p->ms[0] = md[0] == 1 ? 0 : md[1] * md[2] * md[3];
    p->mask = m;
  }
  if (n_in > A_NONPAD && keel_view_present(&in[A_NONPAD])) {
    const keel_view *np = &in[A_NONPAD];
    if (np->dtype != KEEL_INT64 || np->ndim != 1 || np->dims[0] != p->B)
      return keel_error(KEEL_INVALID_MODEL, "Attention: nonpad_kv_seqlen must be int64 of shape (%lld)",
                        (long long)p->B);
    p->nonpad = np;
  }
  p->causal = keel_attr_int(n, "is_causal", 0) != 0;
  p->softcap = keel_attr_float(n, "softcap", 0.0f);
  p->mode = (int)keel_attr_int(n, "qk_matmul_output_mode", 0);
  if (p->mode < 0 || p->mode > 3)
    return keel_error(KEEL_INVALID_MODEL, "Attention: qk_matmul_output_mode %d (0 to 3)", p->mode);
  const keel_attr *sa = keel_node_attr(n, "scale");
  p->scale = sa ? (double)sa->f : (p->D > 0 ? 1.0 / sqrt((double)p->D) : 1.0);
  if (p->Lq > INT32_MAX || p->T > INT32_MAX || p->D > INT32_MAX || p->Dv > INT32_MAX || p->qs[2] > INT32_MAX ||
      p->ks[2] > INT32_MAX || p->vs[2] > INT32_MAX || p->ys[2] > INT32_MAX)
    return keel_error(KEEL_UNSUPPORTED, "Attention: dimensions exceed BLAS's 32-bit sizes");
  return NULL;
}

static keel_status *attn_infer(AT_IN) {
  attn_p p;
  KEEL_TRY(attn_shape(n, in, n_in, &p));
  if (n_out < 1) return keel_error(KEEL_INVALID_MODEL, "Attention has no output");
  if (n_out > 4) return keel_error(KEEL_INVALID_MODEL, "Attention has at most 4 outputs, got %d", n_out);
  if (p.is3d) {
    int64_t d[3] = {p.B, p.Lq, p.Hq * p.Dv};
    keel_view_set_shape(&out[0], in[A_Q].dtype, d, 3);
  } else {
    int64_t d[4] = {p.B, p.Hq, p.Lq, p.Dv};
    keel_view_set_shape(&out[0], in[A_Q].dtype, d, 4);
  }
  if (n_out > 1) {
    int64_t d[4] = {p.B, p.Hkv, p.T, p.D};
    keel_view_set_shape(&out[1], in[A_K].dtype, d, 4);
  }
  if (n_out > 2) {
    int64_t d[4] = {p.B, p.Hkv, p.T, p.Dv};
    keel_view_set_shape(&out[2], in[A_V].dtype, d, 4);
  }
  if (n_out > 3) {
    int64_t d[4] = {p.B, p.Hq, p.Lq, p.T};
    keel_view_set_shape(&out[3], in[A_Q].dtype, d, 4);
  }
  return NULL;
}

/* Workspace: the Lq x T score block, and for float16/bfloat16 float copies of Q, K, V, the past and Y. */
static size_t attn_ws(AT_WS) {
  attn_p p;
  keel_status *s = attn_shape(n, in, n_in, &p);
  if (s) {
    keel_status_free(s);
    return 0;
  }
  keel_dtype t = in[A_Q].dtype;
  size_t es = t == KEEL_FLOAT64 ? sizeof(double) : sizeof(float);
  size_t b = at_align((size_t)(p.Lq * p.T) * es);
  if (t == KEEL_FLOAT16 || t == KEEL_BFLOAT16 || in[A_V].dtype != t) {
    b += at_align((size_t)keel_view_numel(&in[A_Q]) * es) + at_align((size_t)keel_view_numel(&in[A_K]) * es) +
         at_align((size_t)keel_view_numel(&in[A_V]) * es) + at_align((size_t)(p.B * p.Hq * p.Lq * p.Dv) * es);
    if (p.P) b += at_align((size_t)(p.B * p.Hkv * p.P * (p.D + p.Dv)) * es);
  }
  return b;
}

#define AT_T float
#define AT_SUF f32
#define AT_GEMM cblas_sgemm
#define AT_EXP keel_expf_softmax
#define AT_TANH tanhf
#include "ops/attention_tmpl.h"
#undef AT_T
#undef AT_SUF
#undef AT_GEMM
#undef AT_EXP
#undef AT_TANH

#define AT_T double
#define AT_SUF f64
#define AT_GEMM cblas_dgemm
#define AT_EXP exp
#define AT_TANH tanh
#include "ops/attention_tmpl.h"
#undef AT_T
#undef AT_SUF
#undef AT_GEMM
#undef AT_EXP
#undef AT_TANH

/* present = concat(past, new) along the sequence, new keys/values read through their strides. */
static void attn_present(const attn_p *p, const keel_view *past, const keel_view *cur, const int64_t *cs,
                         int64_t D, keel_view *dst) {
  size_t es = keel_dtype_size(dst->dtype);
  char *o = dst->data;
  for (int64_t b = 0; b < p->B; b++)
    for (int64_t h = 0; h < p->Hkv; h++) {
      if (p->P) {
        size_t nb = (size_t)(p->P * D) * es;
        memcpy(o, (const char *)past->data + (size_t)((b * p->Hkv + h) * p->P * D) * es, nb);
        o += nb;
      }
      for (int64_t s = 0; s < p->L; s++) {
        memcpy(o, (const char *)cur->data + (size_t)(b * cs[0] + h * cs[1] + s * cs[2]) * es, (size_t)D * es);
        o += (size_t)D * es;
      }
    }
}

static keel_status *attn_run(AT_RUN) {
  attn_p p;
  KEEL_TRY(attn_shape(n, in, n_in, &p));
  keel_dtype t = in[A_Q].dtype;
  p.qk = at_out_wanted(n, out, n_out, 3) ? &out[3] : NULL;
  if (at_out_wanted(n, out, n_out, 1)) attn_present(&p, &in[A_PK], &in[A_K], p.ks, p.D, &out[1]);
  if (at_out_wanted(n, out, n_out, 2)) attn_present(&p, &in[A_PV], &in[A_V], p.vs, p.Dv, &out[2]);
  bool dbl = t == KEEL_FLOAT64;
  size_t es = dbl ? sizeof(double) : sizeof(float);
  char *ws = ex->workspace;
  void *S = ws;
  ws += at_align((size_t)(p.Lq * p.T) * es);
  const void *Q = in[A_Q].data, *K = in[A_K].data, *V = in[A_V].data;
  const void *PK = p.P ? in[A_PK].data : NULL, *PV = p.P ? in[A_PV].data : NULL;
  void *Y = out[0].data;
  bool staged = t == KEEL_FLOAT16 || t == KEEL_BFLOAT16 || in[A_V].dtype != t;
  if (staged) {
    /* every operand to the compute type, in its own layout (so the strides still hold) */
    const keel_view *src[5] = {&in[A_Q], &in[A_K], &in[A_V], p.P ? &in[A_PK] : NULL, p.P ? &in[A_PV] : NULL};
    void *dst[5];
    for (int i = 0; i < 5; i++) {
      if (!src[i]) {
        dst[i] = NULL;
        continue;
      }
      int64_t cnt = keel_view_numel(src[i]);
      dst[i] = ws;
      for (int64_t e = 0; e < cnt; e++) {
        double x = keel_elem_load(src[i]->dtype, src[i]->data, e);
        if (dbl) ((double *)ws)[e] = x;
        else ((float *)ws)[e] = (float)x;
      }
      ws += at_align((size_t)cnt * es);
    }
    Q = dst[0], K = dst[1], V = dst[2], PK = dst[3], PV = dst[4];
    Y = ws;
  }
  for (int64_t b = 0; b < p.B; b++)
    for (int64_t h = 0; h < p.Hq; h++) {
      if (dbl) attn_head_f64(&p, b, h, Q, K, V, PK, PV, Y, S);
      else attn_head_f32(&p, b, h, Q, K, V, PK, PV, Y, S);
    }
  if (staged) {
    int64_t cnt = keel_view_numel(&out[0]);
    for (int64_t e = 0; e < cnt; e++) keel_elem_store(t, out[0].data, e, dbl ? ((double *)Y)[e] : ((float *)Y)[e]);
  }
  return NULL;
}

/* ---------------------------------------------------------------------------------------------------- */
/* RMSNormalization: y = x / sqrt(mean(x^2 over axes [axis, rank)) + epsilon) * scale. Accumulates in double
 * (stash_type 1 asks for at least float). */

static keel_status *rms_axes(const keel_node *n, const keel_view *x, int *axis, int64_t *outer, int64_t *inner) {
  int64_t a = keel_attr_int(n, "axis", -1);
  if (!keel_axis_normalize(a, x->ndim, axis))
    return keel_error(KEEL_INVALID_MODEL, "RMSNormalization: axis %lld is out of range for rank %d", (long long)a,
                      x->ndim);
  *outer = 1;
  *inner = 1;
  for (int d = 0; d < x->ndim; d++) {
    if (d < *axis) *outer *= x->dims[d];
    else *inner *= x->dims[d];
  }
  return NULL;
}

static keel_status *rms_infer(AT_IN) {
  if (n_in != 2 || !keel_view_present(&in[0]) || !keel_view_present(&in[1]) || n_out != 1)
    return keel_error(KEEL_INVALID_MODEL, "RMSNormalization takes X and scale and has 1 output");
  if (!keel_elem_is_float(in[0].dtype) || !keel_elem_is_float(in[1].dtype))
    return keel_error(KEEL_UNSUPPORTED, "RMSNormalization: dtypes %s/%s (float types only)",
                      keel_dtype_name(in[0].dtype), keel_dtype_name(in[1].dtype));
  int axis;
  int64_t outer, inner;
  KEEL_TRY(rms_axes(n, &in[0], &axis, &outer, &inner));
  /* scale broadcasts (numpy rules) against the normalized dims */
  const keel_view *s = &in[1];
  int nn = in[0].ndim - axis;
  if (s->ndim > nn)
    return keel_error(KEEL_INVALID_MODEL, "RMSNormalization: scale has rank %d, more than the %d normalized dims",
                      s->ndim, nn);
  for (int i = 0; i < s->ndim; i++) {
    int64_t xd = in[0].dims[in[0].ndim - s->ndim + i];
    if (s->dims[i] != 1 && s->dims[i] != xd)
      return keel_error(KEEL_INVALID_MODEL, "RMSNormalization: scale dim %d is %lld, not 1 or %lld", i,
                        (long long)s->dims[i], (long long)xd);
  }
  keel_view_set_shape(&out[0], in[0].dtype, in[0].dims, in[0].ndim);
  return NULL;
}

static keel_status *rms_run(AT_RUN) {
  const keel_view *x = &in[0], *s = &in[1];
  int axis;
  int64_t outer, inner;
  KEEL_TRY(rms_axes(n, x, &axis, &outer, &inner));
  double eps = keel_attr_float(n, "epsilon", 1e-5f);
  /* scale index for normalized position j: strides over the trailing dims, 0 where broadcast */
  int nn = x->ndim - axis;
  int64_t sstr[KEEL_MAX_DIMS], xd[KEEL_MAX_DIMS];
  int64_t acc = 1;
  for (int i = nn - 1; i >= 0; i--) {
    xd[i] = x->dims[axis + i];
    int si = i - (nn - s->ndim);
    if (si < 0 || s->dims[si] == 1) sstr[i] = 0;
    else sstr[i] = acc;
    if (si >= 0) acc *= s->dims[si];
  }
  bool full = keel_view_numel(s) == inner;
  if (x->dtype == KEEL_FLOAT32 && s->dtype == KEEL_FLOAT32 && full) {
    const float *xp = x->data, *sp = s->data;
    float *yp = out[0].data;
    for (int64_t o = 0; o < outer; o++, xp += inner, yp += inner) {
      double ss = 0;
      for (int64_t j = 0; j < inner; j++) ss += (double)xp[j] * xp[j];
      float r = (float)(1.0 / sqrt(ss / (double)(inner ? inner : 1) + eps));
      for (int64_t j = 0; j < inner; j++) yp[j] = xp[j] * r * sp[j];
    }
    return NULL;
  }
  for (int64_t o = 0; o < outer; o++) {
    double ss = 0;
    for (int64_t j = 0; j < inner; j++) {
      double v = keel_elem_load(x->dtype, x->data, o * inner + j);
      ss += v * v;
    }
    double r = 1.0 / sqrt(ss / (double)(inner ? inner : 1) + eps);
    for (int64_t j = 0; j < inner; j++) {
      int64_t rem = j, si = 0;
      for (int i = nn - 1; i >= 0; i--) {
        si += (rem % xd[i]) * sstr[i];
        rem /= xd[i];
      }
      double v = keel_elem_load(x->dtype, x->data, o * inner + j);
      keel_elem_store(x->dtype, out[0].data, o * inner + j, v * r * keel_elem_load(s->dtype, s->data, si));
    }
  }
  return NULL;
}

/* ---------------------------------------------------------------------------------------------------- */
/* RotaryEmbedding. Input (B, H, S, D) or (B, S, H*D) with num_heads; cos/sin caches (B, S, R/2), or
 * (max_pos, R/2) gathered by position_ids (B, S). The first R = rotary_embedding_dim (default D) features
 * rotate as pairs: halves [0, R/2) with [R/2, R), or adjacent (2i, 2i+1) when interleaved. */

typedef struct rope_p {
  int64_t B, S, H, D, R;
  int64_t xs[3]; /* strides of (batch, sequence, head) */
  bool interleaved, has_pos;
} rope_p;

static keel_status *rope_shape(const keel_node *n, const keel_view *in, int n_in, rope_p *p) {
  if (n_in < 3 || !keel_view_present(&in[0]) || !keel_view_present(&in[1]) || !keel_view_present(&in[2]))
    return keel_error(KEEL_INVALID_MODEL, "RotaryEmbedding needs X, cos_cache and sin_cache");
  const keel_view *x = &in[0], *c = &in[1], *s = &in[2];
  if (!keel_elem_is_float(x->dtype) || c->dtype != x->dtype || s->dtype != x->dtype)
    return keel_error(KEEL_UNSUPPORTED, "RotaryEmbedding: dtypes %s/%s/%s (one float type)",
                      keel_dtype_name(x->dtype), keel_dtype_name(c->dtype), keel_dtype_name(s->dtype));
  memset(p, 0, sizeof *p);
  p->interleaved = keel_attr_int(n, "interleaved", 0) != 0;
  int64_t nh = keel_attr_int(n, "num_heads", 0);
  if (x->ndim == 4) {
    p->B = x->dims[0], p->H = x->dims[1], p->S = x->dims[2], p->D = x->dims[3];
    p->xs[0] = p->H * p->S * p->D, p->xs[1] = p->D, p->xs[2] = p->S * p->D;
  } else if (x->ndim == 3) {
    if (nh <= 0 || x->dims[2] % nh)
      return keel_error(KEEL_INVALID_MODEL, "RotaryEmbedding: 3-D input needs num_heads dividing %lld (got %lld)",
                        (long long)x->dims[2], (long long)nh);
    p->B = x->dims[0], p->S = x->dims[1], p->H = nh, p->D = x->dims[2] / nh;
    p->xs[0] = p->S * p->H * p->D, p->xs[1] = p->H * p->D, p->xs[2] = p->D;
  } else {
    return keel_error(KEEL_INVALID_MODEL, "RotaryEmbedding: input rank %d (3 or 4)", x->ndim);
  }
  p->R = keel_attr_int(n, "rotary_embedding_dim", 0);
  if (p->R == 0) p->R = p->D;
  if (p->R < 0 || p->R > p->D || p->R % 2)
    return keel_error(KEEL_INVALID_MODEL, "RotaryEmbedding: rotary_embedding_dim %lld (even, at most %lld)",
                      (long long)p->R, (long long)p->D);
  p->has_pos = n_in > 3 && keel_view_present(&in[3]);
  int64_t half = p->R / 2;
  if (c->ndim != s->ndim || !keel_shape_equal(c->dims, c->ndim, s->dims, s->ndim))
    return keel_error(KEEL_INVALID_MODEL, "RotaryEmbedding: cos_cache and sin_cache shapes differ");
  if (p->has_pos) {
    const keel_view *pi = &in[3];
    if ((pi->dtype != KEEL_INT64 && pi->dtype != KEEL_INT32) || pi->ndim != 2 || pi->dims[0] != p->B ||
        pi->dims[1] != p->S)
      return keel_error(KEEL_INVALID_MODEL, "RotaryEmbedding: position_ids must be int64 (%lld, %lld)",
                        (long long)p->B, (long long)p->S);
    if (c->ndim != 2 || c->dims[1] != half)
      return keel_error(KEEL_INVALID_MODEL, "RotaryEmbedding: with position_ids the caches are (max_pos, %lld)",
                        (long long)half);
  } else {
    if (c->ndim != 3 || c->dims[0] != p->B || c->dims[1] != p->S || c->dims[2] != half)
      return keel_error(KEEL_INVALID_MODEL, "RotaryEmbedding: without position_ids the caches are (%lld, %lld, %lld)",
                        (long long)p->B, (long long)p->S, (long long)half);
  }
  return NULL;
}

static keel_status *rope_infer(AT_IN) {
  rope_p p;
  KEEL_TRY(rope_shape(n, in, n_in, &p));
  if (n_out != 1) return keel_error(KEEL_INVALID_MODEL, "RotaryEmbedding has 1 output, got %d", n_out);
  keel_view_set_shape(&out[0], in[0].dtype, in[0].dims, in[0].ndim);
  return NULL;
}

static keel_status *rope_run(AT_RUN) {
  rope_p p;
  KEEL_TRY(rope_shape(n, in, n_in, &p));
  const keel_view *x = &in[0];
  keel_dtype t = x->dtype;
  int64_t half = p.R / 2;
  int64_t max_pos = p.has_pos ? in[1].dims[0] : 0;
  if (x->data != out[0].data) memcpy(out[0].data, x->data, keel_view_nbytes(x)); /* the unrotated tail */
  for (int64_t b = 0; b < p.B; b++)
    for (int64_t s = 0; s < p.S; s++) {
      int64_t row;
      if (p.has_pos) {
        int64_t pos = keel_view_get_i64(&in[3], b * p.S + s);
        if (pos < 0 || pos >= max_pos)
          return keel_error(KEEL_INVALID_ARGUMENT, "RotaryEmbedding: position_ids[%lld][%lld] = %lld is outside [0, %lld)",
                            (long long)b, (long long)s, (long long)pos, (long long)max_pos);
        row = pos * half;
      } else {
        row = (b * p.S + s) * half;
      }
      for (int64_t h = 0; h < p.H; h++) {
        int64_t base = b * p.xs[0] + s * p.xs[1] + h * p.xs[2];
        for (int64_t i = 0; i < half; i++) {
          int64_t i1 = p.interleaved ? 2 * i : i, i2 = p.interleaved ? 2 * i + 1 : i + half;
          if (t == KEEL_FLOAT32) {
            const float *xp = (const float *)x->data + base, *cp = (const float *)in[1].data + row,
                        *sp = (const float *)in[2].data + row;
            float *yp = (float *)out[0].data + base;
            float x1 = xp[i1], x2 = xp[i2];
            yp[i1] = cp[i] * x1 - sp[i] * x2;
            yp[i2] = sp[i] * x1 + cp[i] * x2;
          } else {
            double x1 = keel_elem_load(t, x->data, base + i1), x2 = keel_elem_load(t, x->data, base + i2);
            double cv = keel_elem_load(t, in[1].data, row + i), sv = keel_elem_load(t, in[2].data, row + i);
            keel_elem_store(t, out[0].data, base + i1, cv * x1 - sv * x2);
            keel_elem_store(t, out[0].data, base + i2, sv * x1 + cv * x2);
          }
        }
      }
    }
  return NULL;
}

const keel_op_def keel_ops_attention[] = {
    {"Attention", "", 23, KEEL_MAX_OPSET, attn_infer, attn_run, attn_ws, -1},
    {"RMSNormalization", "", 23, KEEL_MAX_OPSET, rms_infer, rms_run, NULL, -1},
    {"RotaryEmbedding", "", 23, KEEL_MAX_OPSET, rope_infer, rope_run, NULL, -1},
    {"LinearAttention", "", 27, KEEL_MAX_OPSET, keel_at_linattn_infer, keel_at_linattn_run, keel_at_linattn_ws, -1},
    {"CausalConvWithState", "", 27, KEEL_MAX_OPSET, keel_at_causalconv_infer, keel_at_causalconv_run, NULL, -1},
    {"FlexAttention", "ai.onnx.preview", 1, 1, keel_at_flex_infer, keel_at_flex_run, keel_at_flex_ws, -1},
};
const int keel_ops_attention_count = (int)(sizeof keel_ops_attention / sizeof keel_ops_attention[0]);
