/* LinearAttention and CausalConvWithState (opset 27): the recurrent pieces of linear-attention models
 * (Gated DeltaNet, Mamba-style blocks). Both run their recurrence token by token, which is exactly the
 * spec's definition; the state is kept in float (double for float64 inputs would change nothing the
 * tests can see, and float is what the spec's reference accumulates in). */
#include <math.h>
#include <string.h>

#include "ops/attention_internal.h"

/* ---------------------------------------------------------------------------------------------------- */
/* LinearAttention */

enum { LA_Q, LA_K, LA_V, LA_PAST, LA_DECAY, LA_BETA };
enum { RULE_LINEAR, RULE_GATED, RULE_DELTA, RULE_GATED_DELTA };

typedef struct la_p {
  int64_t B, T, Hq, Hkv, dk, dv;
  int rule;
  bool gating, delta, has_past;
  int64_t decay_last, beta_last; /* last dims of decay / beta (0 when absent) */
  float scale;
} la_p;

static keel_status *la_shape(const keel_node *n, const keel_view *in, int n_in, la_p *p) {
  memset(p, 0, sizeof *p);
  if (n_in < 3 || !keel_view_present(&in[LA_Q]) || !keel_view_present(&in[LA_K]) || !keel_view_present(&in[LA_V]))
    return keel_error(KEEL_INVALID_MODEL, "LinearAttention needs query, key and value");
  const char *rule = keel_attr_string(n, "update_rule", "gated_delta");
  if (!strcmp(rule, "linear")) p->rule = RULE_LINEAR;
  else if (!strcmp(rule, "gated")) p->rule = RULE_GATED;
  else if (!strcmp(rule, "delta")) p->rule = RULE_DELTA;
  else if (!strcmp(rule, "gated_delta")) p->rule = RULE_GATED_DELTA;
  else return keel_error(KEEL_INVALID_MODEL, "LinearAttention: unknown update_rule '%s'", rule);
  p->gating = p->rule == RULE_GATED || p->rule == RULE_GATED_DELTA;
  p->delta = p->rule == RULE_DELTA || p->rule == RULE_GATED_DELTA;
  p->Hq = keel_attr_int(n, "q_num_heads", 0);
  p->Hkv = keel_attr_int(n, "kv_num_heads", 0);
  if (p->Hq <= 0 || p->Hkv <= 0 || p->Hq % p->Hkv)
    return keel_error(KEEL_INVALID_MODEL, "LinearAttention: q_num_heads %lld must be a positive multiple of "
                      "kv_num_heads %lld", (long long)p->Hq, (long long)p->Hkv);
  const keel_view *q = &in[LA_Q], *k = &in[LA_K], *v = &in[LA_V];
  if (!keel_elem_is_float(q->dtype) || k->dtype != q->dtype || v->dtype != q->dtype)
    return keel_error(KEEL_UNSUPPORTED, "LinearAttention: query/key/value dtypes %s/%s/%s (one float type)",
                      keel_dtype_name(q->dtype), keel_dtype_name(k->dtype), keel_dtype_name(v->dtype));
  if (q->ndim != 3 || k->ndim != 3 || v->ndim != 3)
    return keel_error(KEEL_INVALID_MODEL, "LinearAttention: query, key and value must be 3-D (B, T, H*D)");
  p->B = q->dims[0];
  p->T = q->dims[1];
  if (k->dims[0] != p->B || v->dims[0] != p->B || k->dims[1] != p->T || v->dims[1] != p->T)
    return keel_error(KEEL_INVALID_MODEL, "LinearAttention: query, key and value disagree on (B, T)");
  if (q->dims[2] % p->Hq || k->dims[2] % p->Hkv || v->dims[2] % p->Hkv)
    return keel_error(KEEL_INVALID_MODEL, "LinearAttention: hidden sizes are not multiples of the head counts");
  p->dk = q->dims[2] / p->Hq;
  p->dv = v->dims[2] / p->Hkv;
  if (k->dims[2] / p->Hkv != p->dk)
    return keel_error(KEEL_INVALID_MODEL, "LinearAttention: key head size %lld differs from query's %lld",
                      (long long)(k->dims[2] / p->Hkv), (long long)p->dk);
  p->has_past = n_in > LA_PAST && keel_view_present(&in[LA_PAST]);
  if (p->has_past) {
    const keel_view *s = &in[LA_PAST];
    int64_t want[4] = {p->B, p->Hkv, p->dk, p->dv};
    if (!keel_elem_is_float(s->dtype) || !keel_shape_equal(s->dims, s->ndim, want, 4))
      return keel_error(KEEL_INVALID_MODEL, "LinearAttention: past_state must be float (%lld, %lld, %lld, %lld)",
                        (long long)p->B, (long long)p->Hkv, (long long)p->dk, (long long)p->dv);
  }
  bool has_decay = n_in > LA_DECAY && keel_view_present(&in[LA_DECAY]);
  bool has_beta = n_in > LA_BETA && keel_view_present(&in[LA_BETA]);
  if (has_decay != p->gating)
    return keel_error(KEEL_INVALID_MODEL, "LinearAttention: update_rule '%s' %s the decay input", rule,
                      p->gating ? "requires" : "forbids");
  if (has_beta != p->delta)
    return keel_error(KEEL_INVALID_MODEL, "LinearAttention: update_rule '%s' %s the beta input", rule,
                      p->delta ? "requires" : "forbids");
  if (has_decay) {
    const keel_view *d = &in[LA_DECAY];
    if (d->dtype != q->dtype || d->ndim != 3 || d->dims[0] != p->B || d->dims[1] != p->T ||
        (d->dims[2] != p->Hkv && d->dims[2] != p->Hkv * p->dk))
      return keel_error(KEEL_INVALID_MODEL, "LinearAttention: decay must be (%lld, %lld, %lld or %lld)",
                        (long long)p->B, (long long)p->T, (long long)p->Hkv, (long long)(p->Hkv * p->dk));
    p->decay_last = d->dims[2];
  }
  if (has_beta) {
    const keel_view *b = &in[LA_BETA];
    if (b->dtype != q->dtype || b->ndim != 3 || b->dims[0] != p->B || b->dims[1] != p->T ||
        (b->dims[2] != p->Hkv && b->dims[2] != 1))
      return keel_error(KEEL_INVALID_MODEL, "LinearAttention: beta must be (%lld, %lld, %lld or 1)",
                        (long long)p->B, (long long)p->T, (long long)p->Hkv);
    p->beta_last = b->dims[2];
  }
  float sc = keel_attr_float(n, "scale", 0.0f);
  p->scale = sc != 0.0f ? sc : (float)(1.0 / sqrt((double)(p->dk ? p->dk : 1)));
  return NULL;
}

keel_status *keel_at_linattn_infer(AT_IN) {
  la_p p;
  KEEL_TRY(la_shape(n, in, n_in, &p));
  if (n_out < 1 || n_out > 2) return keel_error(KEEL_INVALID_MODEL, "LinearAttention has 2 outputs, got %d", n_out);
  int64_t od[3] = {p.B, p.T, p.Hq * p.dv};
  keel_view_set_shape(&out[0], in[LA_Q].dtype, od, 3);
  if (n_out > 1) {
    int64_t sd[4] = {p.B, p.Hkv, p.dk, p.dv};
    keel_view_set_shape(&out[1], p.has_past ? in[LA_PAST].dtype : in[LA_Q].dtype, sd, 4);
  }
  return NULL;
}

/* one float state (dk x dv), the retrieved/corrected value row (dv) and one output row (dv) */
size_t keel_at_linattn_ws(AT_WS) {
  la_p p;
  keel_status *s = la_shape(n, in, n_in, &p);
  if (s) {
    keel_status_free(s);
    return 0;
  }
  return (size_t)(p.dk * p.dv + 2 * p.dv + p.dk) * sizeof(float);
}

keel_status *keel_at_linattn_run(AT_RUN) {
  la_p p;
  KEEL_TRY(la_shape(n, in, n_in, &p));
  keel_dtype t = in[LA_Q].dtype;
  const int64_t dk = p.dk, dv = p.dv, G = p.Hq / p.Hkv;
  float *S = ex->workspace, *u = S + dk * dv, *o = u + dv, *kr = o + dv;
  const keel_view *q = &in[LA_Q], *k = &in[LA_K], *v = &in[LA_V];
  for (int64_t b = 0; b < p.B; b++)
    for (int64_t h = 0; h < p.Hkv; h++) {
      int64_t sbase = ((b * p.Hkv + h) * dk) * dv;
      if (p.has_past) at_to_f32(in[LA_PAST].dtype, (const char *)in[LA_PAST].data +
                                keel_dtype_size(in[LA_PAST].dtype) * (size_t)sbase, S, dk * dv);
      else memset(S, 0, (size_t)(dk * dv) * sizeof(float));
      for (int64_t ti = 0; ti < p.T; ti++) {
        int64_t kbase = (b * p.T + ti) * p.Hkv * dk + h * dk, vbase = (b * p.T + ti) * p.Hkv * dv + h * dv;
        for (int64_t d = 0; d < dk; d++) kr[d] = (float)keel_elem_load(t, k->data, kbase + d);
        if (p.gating) {
          const keel_view *dc = &in[LA_DECAY];
          int64_t drow = (b * p.T + ti) * p.decay_last;
          for (int64_t d = 0; d < dk; d++) {
            int64_t di = p.decay_last == p.Hkv ? drow + h : drow + h * dk + d;
            float g = expf((float)keel_elem_load(t, dc->data, di));
            for (int64_t m = 0; m < dv; m++) S[d * dv + m] *= g;
          }
        }
        for (int64_t m = 0; m < dv; m++) u[m] = (float)keel_elem_load(t, v->data, vbase + m);
        if (p.delta) {
          int64_t bi = (b * p.T + ti) * p.beta_last + (p.beta_last == 1 ? 0 : h);
          float beta = (float)keel_elem_load(t, in[LA_BETA].data, bi);
          for (int64_t m = 0; m < dv; m++) {
            float r = 0;
            for (int64_t d = 0; d < dk; d++) r += S[d * dv + m] * kr[d];
            u[m] = beta * (u[m] - r);
          }
        }
        for (int64_t d = 0; d < dk; d++)
          for (int64_t m = 0; m < dv; m++) S[d * dv + m] += kr[d] * u[m];
        /* read out for every query head sharing this state */
        for (int64_t g = 0; g < G; g++) {
          int64_t hq = h * G + g;
          int64_t qbase = (b * p.T + ti) * p.Hq * dk + hq * dk;
          for (int64_t m = 0; m < dv; m++) o[m] = 0;
          for (int64_t d = 0; d < dk; d++) {
            float qd = (float)keel_elem_load(t, q->data, qbase + d);
            for (int64_t m = 0; m < dv; m++) o[m] += qd * S[d * dv + m];
          }
          int64_t obase = (b * p.T + ti) * p.Hq * dv + hq * dv;
          for (int64_t m = 0; m < dv; m++) keel_elem_store(t, out[0].data, obase + m, p.scale * o[m]);
        }
      }
      if (at_out_wanted(n, out, n_out, 1))
        at_from_f32(out[1].dtype, S, (char *)out[1].data + keel_dtype_size(out[1].dtype) * (size_t)sbase, dk * dv);
    }
  return NULL;
}

/* ---------------------------------------------------------------------------------------------------- */
/* CausalConvWithState: depthwise causal 1-D convolution over concat(past_state or zeros, input). */

enum { CC_X, CC_W, CC_BIAS, CC_PAST };

static keel_status *cc_check(const keel_node *n, const keel_view *in, int n_in, int *act) {
  if (n_in < 2 || !keel_view_present(&in[CC_X]) || !keel_view_present(&in[CC_W]))
    return keel_error(KEEL_INVALID_MODEL, "CausalConvWithState needs input and weight");
  const keel_view *x = &in[CC_X], *w = &in[CC_W];
  if (!keel_elem_is_float(x->dtype) || w->dtype != x->dtype)
    return keel_error(KEEL_UNSUPPORTED, "CausalConvWithState: dtypes %s/%s (one float type)",
                      keel_dtype_name(x->dtype), keel_dtype_name(w->dtype));
  if (x->ndim != 3 || w->ndim != 3 || w->dims[0] != x->dims[1] || w->dims[1] != 1 || w->dims[2] < 1)
    return keel_error(KEEL_INVALID_MODEL, "CausalConvWithState: input (B, C, L) and weight (C, 1, k) expected");
  int64_t C = x->dims[1], K = w->dims[2];
  if (n_in > CC_BIAS && keel_view_present(&in[CC_BIAS])) {
    const keel_view *b = &in[CC_BIAS];
    if (b->dtype != x->dtype || b->ndim != 1 || b->dims[0] != C)
      return keel_error(KEEL_INVALID_MODEL, "CausalConvWithState: bias must be (%lld)", (long long)C);
  }
  if (n_in > CC_PAST && keel_view_present(&in[CC_PAST])) {
    const keel_view *s = &in[CC_PAST];
    int64_t want[3] = {x->dims[0], C, K - 1};
    if (s->dtype != x->dtype || !keel_shape_equal(s->dims, s->ndim, want, 3))
      return keel_error(KEEL_INVALID_MODEL, "CausalConvWithState: past_state must be (%lld, %lld, %lld)",
                        (long long)want[0], (long long)want[1], (long long)want[2]);
  }
  const char *a = keel_attr_string(n, "activation", "none");
  if (!strcmp(a, "none")) *act = 0;
  else if (!strcmp(a, "silu") || !strcmp(a, "swish")) *act = 1;
  else return keel_error(KEEL_INVALID_MODEL, "CausalConvWithState: unknown activation '%s'", a);
  return NULL;
}

keel_status *keel_at_causalconv_infer(AT_IN) {
  int act;
  KEEL_TRY(cc_check(n, in, n_in, &act));
  if (n_out < 1 || n_out > 2)
    return keel_error(KEEL_INVALID_MODEL, "CausalConvWithState has 2 outputs, got %d", n_out);
  keel_view_set_shape(&out[0], in[CC_X].dtype, in[CC_X].dims, 3);
  if (n_out > 1) {
    int64_t sd[3] = {in[CC_X].dims[0], in[CC_X].dims[1], in[CC_W].dims[2] - 1};
    keel_view_set_shape(&out[1], in[CC_X].dtype, sd, 3);
  }
  return NULL;
}

size_t keel_at_causalconv_ws(AT_WS) { return 0; }

keel_status *keel_at_causalconv_run(AT_RUN) {
  int act;
  KEEL_TRY(cc_check(n, in, n_in, &act));
  const keel_view *x = &in[CC_X], *w = &in[CC_W];
  keel_dtype t = x->dtype;
  const int64_t B = x->dims[0], C = x->dims[1], L = x->dims[2], K = w->dims[2];
  bool has_bias = n_in > CC_BIAS && keel_view_present(&in[CC_BIAS]);
  bool has_past = n_in > CC_PAST && keel_view_present(&in[CC_PAST]);
  bool want_state = at_out_wanted(n, out, n_out, 1);
  for (int64_t b = 0; b < B; b++)
    for (int64_t c = 0; c < C; c++) {
      int64_t xrow = (b * C + c) * L, prow = (b * C + c) * (K - 1);
      /* padded[j], j in [0, K-1+L): the carried state, then the input */
#define CC_PAD(j) ((j) < K - 1 ? (has_past ? keel_elem_load(t, in[CC_PAST].data, prow + (j)) : 0.0) \
                               : keel_elem_load(t, x->data, xrow + (j) - (K - 1)))
      double bias = has_bias ? keel_elem_load(t, in[CC_BIAS].data, c) : 0.0;
      for (int64_t i = 0; i < L; i++) {
        double acc = bias;
        for (int64_t j = 0; j < K; j++) acc += keel_elem_load(t, w->data, c * K + j) * CC_PAD(i + j);
        if (act) {
          double r = (double)(float)acc; /* the conv result is rounded to the input type first */
          if (t == KEEL_FLOAT16) r = keel_half_to_float(keel_float_to_half((float)acc));
          else if (t == KEEL_BFLOAT16) r = keel_bfloat16_to_float(keel_float_to_bfloat16((float)acc));
          else if (t == KEEL_FLOAT64) r = acc;
          acc = r / (1.0 + exp(-r));
        }
        keel_elem_store(t, out[0].data, xrow + i, acc);
      }
      if (want_state) /* the state must be read before anything overwrites it: outputs never alias inputs */
        for (int64_t j = 0; j < K - 1; j++) keel_elem_store(t, out[1].data, prow + j, CC_PAD(L + j));
#undef CC_PAD
    }
  return NULL;
}
