/* Transformer building blocks of the misc family: Swish (opset 24), RMSNormalization and RotaryEmbedding
 * (opset 23) and Attention (23, with nonpad_kv_seqlen from 24). Float16 / bfloat16 are computed in float or
 * double and rounded once on store. These are straightforward loops (correct first); a model that lives
 * on Attention would want a blocked / BLAS version. */
#include <math.h>
#include <string.h>

#include "ops/misc_internal.h"

#define N_IN const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out
#define N_RUN_ARGS const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out, keel_exec *ex

static bool nn_float(keel_dtype t) {
  return t == KEEL_FLOAT32 || t == KEEL_FLOAT64 || t == KEEL_FLOAT16 || t == KEEL_BFLOAT16;
}
static double ld(keel_dtype t, const void *p, int64_t i) {
  switch (t) {
    case KEEL_FLOAT32: return ((const float *)p)[i];
    case KEEL_FLOAT64: return ((const double *)p)[i];
    case KEEL_FLOAT16: return keel_half_to_float(((const uint16_t *)p)[i]);
    case KEEL_BFLOAT16: return keel_bfloat16_to_float(((const uint16_t *)p)[i]);
    default: return 0;
  }
}
static void st(keel_dtype t, void *p, int64_t i, double v) {
  switch (t) {
    case KEEL_FLOAT32: ((float *)p)[i] = (float)v; break;
    case KEEL_FLOAT64: ((double *)p)[i] = v; break;
    case KEEL_FLOAT16: ((uint16_t *)p)[i] = keel_float_to_half((float)v); break;
    case KEEL_BFLOAT16: ((uint16_t *)p)[i] = keel_float_to_bfloat16((float)v); break;
    default: break;
  }
}

/* ---------------------------------------------------------------------------------------------------- */
/* Swish: x * sigmoid(alpha * x). */

keel_status *keel_misc_swish_infer(N_IN) {
  if (n_in != 1 || !keel_view_present(&in[0]) || n_out != 1)
    return keel_error(KEEL_INVALID_MODEL, "Swish takes 1 input and has 1 output");
  if (!nn_float(in[0].dtype))
    return keel_error(KEEL_INVALID_MODEL, "Swish: dtype %s is not a float type", keel_dtype_name(in[0].dtype));
  keel_view_set_shape(&out[0], in[0].dtype, in[0].dims, in[0].ndim);
  return NULL;
}

keel_status *keel_misc_swish_run(N_RUN_ARGS) {
  double alpha = keel_attr_float(n, "alpha", 1.0f);
  int64_t cnt = keel_view_numel(&in[0]);
  keel_dtype t = in[0].dtype;
  if (t == KEEL_FLOAT32) {
    const float *x = in[0].data;
    float *y = out[0].data, a = (float)alpha;
    for (int64_t i = 0; i < cnt; i++) y[i] = x[i] / (1.0f + expf(-a * x[i]));
    return NULL;
  }
  for (int64_t i = 0; i < cnt; i++) {
    double x = ld(t, in[0].data, i);
    st(t, out[0].data, i, x / (1.0 + exp(-alpha * x)));
  }
  return NULL;
}

/* ---------------------------------------------------------------------------------------------------- */
/* RMSNormalization: y = x / sqrt(mean(x^2 over axes [axis, rank)) + epsilon) * scale; scale broadcasts
 * unidirectionally to x. Y takes the scale's dtype (V). */

static keel_status *rms_check(const keel_node *n, const keel_view *in, int n_in, int *axis) {
  if (n_in != 2 || !keel_view_present(&in[0]) || !keel_view_present(&in[1]))
    return keel_error(KEEL_INVALID_MODEL, "RMSNormalization takes X and scale");
  if (!nn_float(in[0].dtype) || !nn_float(in[1].dtype))
    return keel_error(KEEL_INVALID_MODEL, "RMSNormalization: X (%s) and scale (%s) must be float types",
                      keel_dtype_name(in[0].dtype), keel_dtype_name(in[1].dtype));
  int64_t a = keel_attr_int(n, "axis", -1);
  if (!keel_axis_normalize(a, in[0].ndim, axis))
    return keel_error(KEEL_INVALID_MODEL, "RMSNormalization: axis %lld is out of range for rank %d", (long long)a,
                      in[0].ndim);
  if (in[1].ndim > in[0].ndim)
    return keel_error(KEEL_SHAPE_MISMATCH, "RMSNormalization: scale has a higher rank than X");
  for (int d = 0; d < in[1].ndim; d++) {
    int64_t sd = in[1].dims[in[1].ndim - 1 - d], xd = in[0].dims[in[0].ndim - 1 - d];
    if (sd != 1 && sd != xd)
      return keel_error(KEEL_SHAPE_MISMATCH, "RMSNormalization: scale does not broadcast to X");
  }
  return NULL;
}

keel_status *keel_misc_rmsnorm_infer(N_IN) {
  int axis;
  if (n_out != 1) return keel_error(KEEL_INVALID_MODEL, "RMSNormalization has 1 output, got %d", n_out);
  KEEL_TRY(rms_check(n, in, n_in, &axis));
  keel_view_set_shape(&out[0], in[1].dtype, in[0].dims, in[0].ndim);
  return NULL;
}

keel_status *keel_misc_rmsnorm_run(N_RUN_ARGS) {
  int axis;
  KEEL_TRY(rms_check(n, in, n_in, &axis));
  const keel_view *x = &in[0], *s = &in[1];
  double eps = keel_attr_float(n, "epsilon", 1e-5f);
  int rank = x->ndim;
  int64_t outer = 1, R = 1;
  for (int d = 0; d < axis; d++) outer *= x->dims[d];
  for (int d = axis; d < rank; d++) R *= x->dims[d];
  /* Scale strides over x's dims (0 where broadcast). */
  int64_t sstr[KEEL_MAX_DIMS], acc = 1;
  for (int d = rank - 1; d >= 0; d--) {
    int sd = d - (rank - s->ndim);
    if (sd < 0 || s->dims[sd] == 1) {
      sstr[d] = 0;
    } else {
      sstr[d] = acc;
    }
    if (sd >= 0) acc *= s->dims[sd];
  }
  for (int64_t o = 0; o < outer; o++) {
    double ss = 0;
    for (int64_t r = 0; r < R; r++) {
      double v = ld(x->dtype, x->data, o * R + r);
      ss += v * v;
    }
    /* As the reference (stash_type 1): the normalized value is computed in float32. */
    float inv = (float)(1.0 / sqrt((double)(float)(ss / (double)R) + eps));
    for (int64_t r = 0; r < R; r++) {
      int64_t e = o * R + r, rem = e, si = 0;
      for (int d = rank - 1; d >= 0; d--) {
        si += (rem % x->dims[d]) * sstr[d];
        rem /= x->dims[d];
      }
      float norm = (float)ld(x->dtype, x->data, e) * inv;
      st(out[0].dtype, out[0].data, e, (double)norm * ld(s->dtype, s->data, si));
    }
  }
  return NULL;
}

/* ---------------------------------------------------------------------------------------------------- */
/* RotaryEmbedding. X is [B, H, S, D] or [B, S, H*D] (num_heads given). cos/sin caches are [B, S, rd/2], or
 * [max_pos, rd/2] indexed by position_ids [B, S]. The first rd entries of each head rotate as pairs
 * (j, j + rd/2), or (2j, 2j+1) when interleaved; the rest pass through. */

typedef struct rope_dims {
  int64_t B, H, S, D, rd;
  bool four;
} rope_dims;

static keel_status *rope_check(const keel_node *n, const keel_view *in, int n_in, rope_dims *r) {
  if (n_in < 3 || n_in > 4 || !keel_view_present(&in[0]) || !keel_view_present(&in[1]) ||
      !keel_view_present(&in[2]))
    return keel_error(KEEL_INVALID_MODEL, "RotaryEmbedding takes X, cos_cache, sin_cache and optional position_ids");
  const keel_view *x = &in[0], *c = &in[1], *s = &in[2];
  if (!nn_float(x->dtype) || c->dtype != x->dtype || s->dtype != x->dtype)
    return keel_error(KEEL_INVALID_MODEL, "RotaryEmbedding: X, cos_cache and sin_cache must share a float dtype");
  memset(r, 0, sizeof *r);
  int64_t nh = keel_attr_int(n, "num_heads", 0);
  if (x->ndim == 4) {
    r->four = true;
    r->B = x->dims[0], r->H = x->dims[1], r->S = x->dims[2], r->D = x->dims[3];
  } else if (x->ndim == 3) {
    if (nh <= 0 || x->dims[2] % nh)
      return keel_error(KEEL_INVALID_MODEL, "RotaryEmbedding: 3-D input needs num_heads dividing its last dim");
    r->B = x->dims[0], r->S = x->dims[1], r->H = nh, r->D = x->dims[2] / nh;
  } else {
    return keel_error(KEEL_INVALID_MODEL, "RotaryEmbedding: X must be 3-D or 4-D, got rank %d", x->ndim);
  }
  r->rd = keel_attr_int(n, "rotary_embedding_dim", 0);
  if (r->rd == 0) r->rd = r->D;
  if (r->rd < 0 || r->rd > r->D || r->rd % 2)
    return keel_error(KEEL_INVALID_MODEL, "RotaryEmbedding: rotary_embedding_dim %lld must be even and <= %lld",
                      (long long)r->rd, (long long)r->D);
  bool pos = n_in > 3 && keel_view_present(&in[3]);
  if (!keel_shape_equal(c->dims, c->ndim, s->dims, s->ndim) || c->ndim < 1 || c->dims[c->ndim - 1] != r->rd / 2)
    return keel_error(KEEL_SHAPE_MISMATCH, "RotaryEmbedding: caches must match and end in rotary_dim/2 = %lld",
                      (long long)(r->rd / 2));
  if (pos) {
    const keel_view *p = &in[3];
    if (p->dtype != KEEL_INT64 || p->ndim != 2 || p->dims[0] != r->B || p->dims[1] != r->S || c->ndim != 2)
      return keel_error(KEEL_SHAPE_MISMATCH, "RotaryEmbedding: position_ids must be int64 [B, S] with 2-D caches");
  } else if (c->ndim != 3 || c->dims[0] != r->B || c->dims[1] != r->S) {
    return keel_error(KEEL_SHAPE_MISMATCH, "RotaryEmbedding: without position_ids the caches must be [B, S, rd/2]");
  }
  return NULL;
}

keel_status *keel_misc_rope_infer(N_IN) {
  rope_dims r;
  if (n_out != 1) return keel_error(KEEL_INVALID_MODEL, "RotaryEmbedding has 1 output, got %d", n_out);
  KEEL_TRY(rope_check(n, in, n_in, &r));
  keel_view_set_shape(&out[0], in[0].dtype, in[0].dims, in[0].ndim);
  return NULL;
}

keel_status *keel_misc_rope_run(N_RUN_ARGS) {
  rope_dims r;
  KEEL_TRY(rope_check(n, in, n_in, &r));
  const keel_view *x = &in[0], *cc = &in[1], *sc = &in[2];
  const keel_view *pos = n_in > 3 && keel_view_present(&in[3]) ? &in[3] : NULL;
  bool inter = keel_attr_int(n, "interleaved", 0) != 0;
  keel_dtype t = x->dtype;
  int64_t half = r.rd / 2;
  for (int64_t b = 0; b < r.B; b++)
    for (int64_t s = 0; s < r.S; s++) {
      int64_t crow;
      if (pos) {
        int64_t p = keel_view_get_i64(pos, b * r.S + s);
        if (p < 0 || p >= cc->dims[0])
          return keel_error(KEEL_INVALID_ARGUMENT, "RotaryEmbedding: position id %lld is outside [0, %lld)",
                            (long long)p, (long long)cc->dims[0]);
        crow = p * half;
      } else {
        crow = (b * r.S + s) * half;
      }
      for (int64_t h = 0; h < r.H; h++) {
        int64_t base = r.four ? ((b * r.H + h) * r.S + s) * r.D : ((b * r.S + s) * r.H + h) * r.D;
        for (int64_t j = 0; j < half; j++) {
          int64_t i1 = inter ? 2 * j : j, i2 = inter ? 2 * j + 1 : j + half;
          double x1 = ld(t, x->data, base + i1), x2 = ld(t, x->data, base + i2);
          double c = ld(t, cc->data, crow + j), sn = ld(t, sc->data, crow + j);
          st(t, out[0].data, base + i1, c * x1 - sn * x2);
          st(t, out[0].data, base + i2, sn * x1 + c * x2);
        }
        for (int64_t d = r.rd; d < r.D; d++) st(t, out[0].data, base + d, ld(t, x->data, base + d));
      }
    }
  return NULL;
}

/* ---------------------------------------------------------------------------------------------------- */
/* Attention (opset 23; 24 adds nonpad_kv_seqlen). Q is [B, Hq, Sq, Dh] or [B, Sq, Hq*Dh] (3-D needs
 * q_num_heads and kv_num_heads); K, V likewise with Hkv heads. past_key/past_value [B, Hkv, P, *] are
 * prepended to K/V (present_* outputs), giving T = P + Skv keys. Hq must be a multiple of Hkv (GQA/MQA:
 * query head h reads kv head h / (Hq/Hkv)).
 *
 * Per query row: s_j = scale * q.k_j, then softcap (c * tanh(s/c)), then the bias (additive float mask,
 * or bool mask false -> -inf; a mask shorter than T is padded with -inf/false; causal hides j > i + P;
 * nonpad_kv_seqlen hides j >= len[b]), softmax, and y = sum_j p_j v_j. qk_matmul_output is the row at
 * the stage qk_matmul_output_mode names (0 matmul, 1 softcap, 2 bias, 3 softmax). The row lives in the
 * workspace (T doubles). */

typedef struct attn_dims {
  int64_t B, Hq, Hkv, Sq, Skv, P, T, Dh, Dv;
  bool three; /* 3-D Q/K/V */
  const keel_view *mask, *pk, *pv, *nonpad;
} attn_dims;

static keel_status *attn_check(const keel_node *n, const keel_view *in, int n_in, attn_dims *a) {
  int max_in = n->opset >= 24 ? 7 : 6;
  if (n_in < 3 || n_in > max_in || !keel_view_present(&in[0]) || !keel_view_present(&in[1]) ||
      !keel_view_present(&in[2]))
    return keel_error(KEEL_INVALID_MODEL, "Attention takes Q, K, V and up to %d optional inputs", max_in - 3);
  const keel_view *q = &in[0], *k = &in[1], *v = &in[2];
  if (!nn_float(q->dtype) || k->dtype != q->dtype || !nn_float(v->dtype))
    return keel_error(KEEL_INVALID_MODEL, "Attention: Q and K must share a float dtype, V must be float");
  if (q->ndim != k->ndim || q->ndim != v->ndim || (q->ndim != 3 && q->ndim != 4))
    return keel_error(KEEL_INVALID_MODEL, "Attention: Q, K and V must all be 3-D or all 4-D");
  memset(a, 0, sizeof *a);
  a->B = q->dims[0];
  if (k->dims[0] != a->B || v->dims[0] != a->B)
    return keel_error(KEEL_SHAPE_MISMATCH, "Attention: Q, K and V batch sizes differ");
  if (q->ndim == 3) {
    a->three = true;
    int64_t hq = keel_attr_int(n, "q_num_heads", 0), hk = keel_attr_int(n, "kv_num_heads", 0);
    if (hq <= 0 || hk <= 0 || q->dims[2] % hq || k->dims[2] % hk || v->dims[2] % hk)
      return keel_error(KEEL_INVALID_MODEL,
                        "Attention: 3-D inputs need q_num_heads and kv_num_heads dividing the hidden sizes");
    a->Hq = hq, a->Hkv = hk, a->Sq = q->dims[1], a->Skv = k->dims[1];
    a->Dh = q->dims[2] / hq;
    if (k->dims[2] / hk != a->Dh) return keel_error(KEEL_SHAPE_MISMATCH, "Attention: Q and K head sizes differ");
    if (v->dims[1] != a->Skv) return keel_error(KEEL_SHAPE_MISMATCH, "Attention: K and V sequence lengths differ");
    a->Dv = v->dims[2] / hk;
  } else {
    a->Hq = q->dims[1], a->Sq = q->dims[2], a->Dh = q->dims[3];
    a->Hkv = k->dims[1], a->Skv = k->dims[2];
    if (k->dims[3] != a->Dh) return keel_error(KEEL_SHAPE_MISMATCH, "Attention: Q and K head sizes differ");
    if (v->dims[1] != a->Hkv || v->dims[2] != a->Skv)
      return keel_error(KEEL_SHAPE_MISMATCH, "Attention: K and V heads or sequence lengths differ");
    a->Dv = v->dims[3];
  }
  if (a->Hkv <= 0 || a->Hq % a->Hkv)
    return keel_error(KEEL_INVALID_MODEL, "Attention: %lld query heads are not a multiple of %lld kv heads",
                      (long long)a->Hq, (long long)a->Hkv);
  bool has_pk = n_in > 4 && keel_view_present(&in[4]), has_pv = n_in > 5 && keel_view_present(&in[5]);
  if (has_pk != has_pv)
    return keel_error(KEEL_INVALID_MODEL, "Attention: past_key and past_value must be given together");
  if (has_pk) {
    const keel_view *pk = &in[4], *pv = &in[5];
    if (pk->dtype != k->dtype || pv->dtype != v->dtype || pk->ndim != 4 || pv->ndim != 4 || pk->dims[0] != a->B ||
        pk->dims[1] != a->Hkv || pk->dims[3] != a->Dh || pv->dims[0] != a->B || pv->dims[1] != a->Hkv ||
        pv->dims[2] != pk->dims[2] || pv->dims[3] != a->Dv)
      return keel_error(KEEL_SHAPE_MISMATCH, "Attention: past_key/past_value must be [B, kv_heads, P, head_size]");
    a->pk = pk, a->pv = pv, a->P = pk->dims[2];
  }
  a->T = a->P + a->Skv;
  if (n_in > 3 && keel_view_present(&in[3])) {
    const keel_view *m = &in[3];
    if (m->ndim < 1 || m->ndim > 4 || m->dims[m->ndim - 1] > a->T)
      return keel_error(KEEL_SHAPE_MISMATCH, "Attention: attn_mask must have rank 1..4 and at most %lld columns",
                        (long long)a->T);
    const int64_t full[4] = {a->B, a->Hq, a->Sq, a->T};
    for (int d = 0; d < m->ndim - 1; d++) {
      int64_t md = m->dims[m->ndim - 1 - 1 - d], fd = full[2 - d];
      if (md != 1 && md != fd)
        return keel_error(KEEL_SHAPE_MISMATCH, "Attention: attn_mask does not broadcast to [B, heads, Sq, T]");
    }
    if (m->dtype != KEEL_BOOL && !nn_float(m->dtype))
      return keel_error(KEEL_UNSUPPORTED, "Attention: attn_mask dtype %s is not supported (bool or float)",
                        keel_dtype_name(m->dtype));
    a->mask = m;
  }
  if (n_in > 6 && keel_view_present(&in[6])) {
    const keel_view *np = &in[6];
    if (np->dtype != KEEL_INT64 || np->ndim != 1 || np->dims[0] != a->B)
      return keel_error(KEEL_INVALID_MODEL, "Attention: nonpad_kv_seqlen must be int64 [B]");
    if (has_pk) return keel_error(KEEL_INVALID_MODEL, "Attention: nonpad_kv_seqlen cannot be used with past_key");
    a->nonpad = np;
  }
  int64_t mode = keel_attr_int(n, "qk_matmul_output_mode", 0);
  if (mode < 0 || mode > 3)
    return keel_error(KEEL_INVALID_MODEL, "Attention: qk_matmul_output_mode %lld is not 0..3", (long long)mode);
  return NULL;
}

keel_status *keel_misc_attention_infer(N_IN) {
  attn_dims a;
  if (n_out < 1 || n_out > 4) return keel_error(KEEL_INVALID_MODEL, "Attention has 1 to 4 outputs, got %d", n_out);
  KEEL_TRY(attn_check(n, in, n_in, &a));
  if (a.three) {
    int64_t y[3] = {a.B, a.Sq, a.Hq * a.Dv};
    keel_view_set_shape(&out[0], in[0].dtype, y, 3);
  } else {
    int64_t y[4] = {a.B, a.Hq, a.Sq, a.Dv};
    keel_view_set_shape(&out[0], in[0].dtype, y, 4);
  }
  if (n_out > 1) {
    int64_t d[4] = {a.B, a.Hkv, a.T, a.Dh};
    keel_view_set_shape(&out[1], in[1].dtype, d, 4);
  }
  if (n_out > 2) {
    int64_t d[4] = {a.B, a.Hkv, a.T, a.Dv};
    keel_view_set_shape(&out[2], in[2].dtype, d, 4);
  }
  if (n_out > 3) {
    int64_t d[4] = {a.B, a.Hq, a.Sq, a.T};
    keel_view_set_shape(&out[3], in[0].dtype, d, 4);
  }
  return NULL;
}

size_t keel_misc_attention_ws(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  attn_dims a;
  keel_status *s = attn_check(n, in, n_in, &a);
  if (s) {
    keel_status_free(s);
    return 0;
  }
  return (size_t)(a.T > 0 ? a.T : 1) * sizeof(double);
}

/* Offset of element (b, h, s, d) of a Q/K/V-style tensor with H heads, S rows and D per head. */
static int64_t attn_off(bool three, int64_t b, int64_t h, int64_t s, int64_t d, int64_t H, int64_t S, int64_t D) {
  return three ? ((b * S + s) * H + h) * D + d : ((b * H + h) * S + s) * D + d;
}

/* Row j of the present key/value: past (always 4-D) for j < P, then the new K/V. */
static double attn_kv(const attn_dims *a, const keel_view *past, const keel_view *cur, int64_t b, int64_t h, int64_t j,
                      int64_t d, int64_t D) {
  if (j < a->P) return ld(past->dtype, past->data, ((b * a->Hkv + h) * a->P + j) * D + d);
  return ld(cur->dtype, cur->data, attn_off(a->three, b, h, j - a->P, d, a->Hkv, a->Skv, D));
}

/* Bias of (b, h, i, j) from the mask alone (0 without one). */
static double attn_mask_at(const attn_dims *a, int64_t b, int64_t h, int64_t i, int64_t j) {
  const keel_view *m = a->mask;
  if (!m) return 0;
  int r = m->ndim;
  if (j >= m->dims[r - 1]) return -INFINITY; /* padded columns */
  const int64_t idx[4] = {b, h, i, j};
  int64_t off = 0;
  for (int d = 0; d < r; d++) {
    int64_t md = m->dims[d];
    int64_t ix = idx[4 - r + d];
    off = off * md + (md == 1 ? 0 : ix);
  }
  if (m->dtype == KEEL_BOOL) return ((const uint8_t *)m->data)[off] ? 0 : -INFINITY;
  return ld(m->dtype, m->data, off);
}

keel_status *keel_misc_attention_run(N_RUN_ARGS) {
  attn_dims a;
  KEEL_TRY(attn_check(n, in, n_in, &a));
  if ((size_t)a.T * sizeof(double) > ex->workspace_bytes && a.T > 0)
    return keel_error(KEEL_INTERNAL, "Attention: workspace too small");
  const keel_view *q = &in[0], *k = &in[1], *v = &in[2];
  double *row = ex->workspace;
  int64_t mode = keel_attr_int(n, "qk_matmul_output_mode", 0);
  double softcap = keel_attr_float(n, "softcap", 0.0f);
  const keel_attr *sa = keel_node_attr(n, "scale");
  double scale = sa ? (double)sa->f : 1.0 / sqrt((double)a.Dh);
  bool causal = keel_attr_int(n, "is_causal", 0) != 0;
  int64_t group = a.Hq / a.Hkv;
  keel_view *qk = n_out > 3 && out[3].data ? &out[3] : NULL;

  /* present_key / present_value: concatenation of past and new along the sequence. */
  if (n_out > 1 && out[1].data)
    for (int64_t b = 0; b < a.B; b++)
      for (int64_t h = 0; h < a.Hkv; h++)
        for (int64_t j = 0; j < a.T; j++)
          for (int64_t d = 0; d < a.Dh; d++)
            st(out[1].dtype, out[1].data, ((b * a.Hkv + h) * a.T + j) * a.Dh + d, attn_kv(&a, a.pk, k, b, h, j, d, a.Dh));
  if (n_out > 2 && out[2].data)
    for (int64_t b = 0; b < a.B; b++)
      for (int64_t h = 0; h < a.Hkv; h++)
        for (int64_t j = 0; j < a.T; j++)
          for (int64_t d = 0; d < a.Dv; d++)
            st(out[2].dtype, out[2].data, ((b * a.Hkv + h) * a.T + j) * a.Dv + d, attn_kv(&a, a.pv, v, b, h, j, d, a.Dv));

  for (int64_t b = 0; b < a.B; b++) {
    int64_t valid = a.T;
    if (a.nonpad) {
      valid = keel_view_get_i64(a.nonpad, b);
      if (valid < 0 || valid > a.T)
        return keel_error(KEEL_INVALID_ARGUMENT, "Attention: nonpad_kv_seqlen[%lld] = %lld is outside [0, %lld]",
                          (long long)b, (long long)valid, (long long)a.T);
    }
    for (int64_t h = 0; h < a.Hq; h++) {
      int64_t hk = h / group;
      for (int64_t i = 0; i < a.Sq; i++) {
        int64_t qoff = attn_off(a.three, b, h, i, 0, a.Hq, a.Sq, a.Dh);
        int64_t qkoff = ((b * a.Hq + h) * a.Sq + i) * a.T;
        double mx = -INFINITY;
        for (int64_t j = 0; j < a.T; j++) {
          double s = 0;
          for (int64_t d = 0; d < a.Dh; d++) s += ld(q->dtype, q->data, qoff + d) * attn_kv(&a, a.pk, k, b, hk, j, d, a.Dh);
          s *= scale;
          if (qk && mode == 0) st(qk->dtype, qk->data, qkoff + j, s);
          if (softcap > 0) s = softcap * tanh(s / softcap);
          if (qk && mode == 1) st(qk->dtype, qk->data, qkoff + j, s);
          s += attn_mask_at(&a, b, h, i, j);
          if (causal && j > i + a.P) s = -INFINITY;
          if (j >= valid) s = -INFINITY;
          if (qk && mode == 2) st(qk->dtype, qk->data, qkoff + j, s);
          row[j] = s;
          if (s > mx || s != s) mx = s;
        }
        /* Softmax; a fully masked row gives NaN, as the reference does. */
        double sum = 0;
        for (int64_t j = 0; j < a.T; j++) sum += (row[j] = exp(row[j] - mx));
        for (int64_t j = 0; j < a.T; j++) {
          row[j] /= sum;
          if (qk && mode == 3) st(qk->dtype, qk->data, qkoff + j, row[j]);
        }
        for (int64_t d = 0; d < a.Dv; d++) {
          double y = 0;
          for (int64_t j = 0; j < a.T; j++) y += row[j] * attn_kv(&a, a.pv, v, b, hk, j, d, a.Dv);
          st(out[0].dtype, out[0].data, attn_off(a.three, b, h, i, d, a.Hq, a.Sq, a.Dv), y);
        }
      }
    }
  }
  return NULL;
}
