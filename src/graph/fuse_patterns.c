/* Pattern fusions for decomposed transformer blocks (run by keel_pass_fuse before the producer fusions):
 *
 *   LayerNorm  ReduceMean(x) -> Sub -> Pow 2 (or Mul d d) -> ReduceMean -> Add eps -> Sqrt -> Div -> Mul gamma
 *              -> Add beta                                  => keel.LayerNorm(x, gamma, beta; epsilon)
 *   GELU       Div sqrt2 (or Mul 1/sqrt2) -> Erf -> Add 1 -> Mul x -> Mul 0.5 (or Mul(Mul(x, 0.5), .))
 *                                                           => keel.Gelu(x), which the producer fusion then
 *                                                              folds into a MatMul/Gemm/Conv as act = GELU
 *   Softmax    [Div/Mul by a scalar] -> [Add mask] -> Softmax(last axis)
 *                                                           => keel.ScaleMaskSoftmax(x, mask; scale)
 *   SkipLN     (after the LayerNorm fusion) Add(a, b) -> keel.LayerNorm
 *                                                           => keel.SkipLayerNorm(a, b, gamma, beta; epsilon)
 *   Attention  (after the above) MatMul(Transpose(q, 0 2 1 3), Transpose(k, 0 2 3 1)) -> ScaleMaskSoftmax
 *              -> MatMul(., Transpose(v, 0 2 1 3)) -> Transpose(0 2 1 3)
 *                                                           => keel.MultiHeadAttention(q, k, v, mask; scale)
 *
 * Every match is exact: operator types and default domain, opsets whose semantics are the numpy-broadcast
 * ones, reduction axes = -1 with keepdims, the constants' values, dtypes (float32) and ranks (scalars are
 * rank 0, so they cannot raise the output rank), and every intermediate value read only inside the pattern
 * (and not a graph output). Anything else leaves the graph as it was. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "core/tensor_internal.h"
#include "graph/passes.h"
#include "ops/op.h"

static bool is_onnx(const keel_node *n, const char *op) {
  return !n->dead && n->domain[0] == 0 && !strcmp(n->op_type, op);
}

static bool is_output(const keel_graph *g, int v) {
  for (int k = 0; k < g->n_outputs; k++)
    if (g->outputs[k] == v) return true;
  return false;
}

/* The live node producing v, or -1. */
static int producer_of(const keel_graph *g, int v) {
  if (v < 0) return -1;
  for (int i = 0; i < g->n_nodes; i++) {
    const keel_node *n = &g->nodes[i];
    if (n->dead) continue;
    for (int k = 0; k < n->n_outputs; k++)
      if (n->outputs[k] == v) return i;
  }
  return -1;
}

/* Input slots reading v (node indices, repeated when a node reads it twice); -1 when v is a graph output. */
static int readers(const keel_graph *g, int v, int *idx, int max) {
  if (v < 0 || is_output(g, v)) return -1;
  int c = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    const keel_node *n = &g->nodes[i];
    if (n->dead) continue;
    for (int k = 0; k < n->n_inputs; k++)
      if (n->inputs[k] == v) {
        if (c < max) idx[c] = i;
        c++;
      }
  }
  return c;
}

/* The only reader of v (exactly one input slot of one node), else -1. */
static int only_reader(const keel_graph *g, int v) {
  int idx[2];
  return readers(g, v, idx, 2) == 1 ? idx[0] : -1;
}

static const keel_tensor *const_of(const keel_graph *g, int v) { return v >= 0 ? g->values[v].constant : NULL; }

/* A rank-0 float32 constant (rank_ok_1: a [1] also passes, where the other operand has rank >= 1). */
static bool scalar_f32(const keel_graph *g, int v, bool rank_ok_1, float *out) {
  const keel_tensor *t = const_of(g, v);
  if (!t || t->dtype != KEEL_FLOAT32 || keel_tensor_numel(t) != 1) return false;
  if (t->ndim != 0 && !(rank_ok_1 && t->ndim == 1)) return false;
  *out = *(const float *)t->data;
  return true;
}

/* A binary node of the numpy-broadcast era (opset >= 7) with two inputs and one output. */
static bool binary(const keel_node *n, const char *op) {
  return is_onnx(n, op) && n->opset >= 7 && n->n_inputs == 2 && n->n_outputs == 1 && n->outputs[0] >= 0;
}

/* For a commutative binary node reading `v`, the other input (or -1 if it does not read v exactly once). */
static int other_input(const keel_node *n, int v) {
  if (n->inputs[0] == v && n->inputs[1] != v) return n->inputs[1];
  if (n->inputs[1] == v && n->inputs[0] != v) return n->inputs[0];
  return -1;
}

/* ReduceMean over the last axis with keepdims = 1. */
static bool mean_last_axis(const keel_graph *g, const keel_node *n) {
  if (!is_onnx(n, "ReduceMean") || n->n_outputs != 1 || n->outputs[0] < 0) return false;
  if (keel_attr_int(n, "keepdims", 1) != 1) return false;
  if (n->opset >= 18) {
    if (n->n_inputs != 2 || keel_node_attr(n, "axes")) return false;
    const keel_tensor *a = const_of(g, n->inputs[1]);
    if (!a || a->dtype != KEEL_INT64 || keel_tensor_numel(a) != 1) return false;
    return *(const int64_t *)a->data == -1;
  }
  const int64_t *axes = NULL;
  if (n->n_inputs != 1 || keel_attr_ints(n, "axes", &axes) != 1) return false;
  return axes[0] == -1;
}

/* Append a keel-domain node; returns its index or -1 (out of memory). Node pointers taken before are stale. */
static int add_keel_node(keel_graph *g, const char *base, const char *op, int n_in) {
  char name[512];
  snprintf(name, sizeof name, "%s/keel_%s", base, op);
  int k = keel_graph_add_node(g, name, op, "keel");
  if (k < 0) return -1;
  keel_node *n = &g->nodes[k];
  n->opset = 1;
  n->op = keel_op_find(op, "keel", 1);
  if (!n->op || !keel_node_set_n_inputs(n, n_in) || !keel_node_set_n_outputs(n, 1)) return -1;
  return k;
}

static bool set_float_attr(keel_node *n, const char *name, float v) {
  keel_attr *a = keel_node_add_attr(n, name);
  if (!a) return false;
  a->type = KEEL_ATTR_FLOAT;
  a->f = v;
  return true;
}

static keel_status *oom(const char *what) { return keel_error(KEEL_OUT_OF_MEMORY, "out of memory fusing %s", what); }

/* ---- LayerNorm ---- */

static keel_status *fuse_layernorm(keel_graph *g, int i_mean, int *fused) {
  const keel_node *rm1 = &g->nodes[i_mean];
  if (!mean_last_axis(g, rm1)) return NULL;
  const int x = rm1->inputs[0], mean = rm1->outputs[0];
  const int i_sub = only_reader(g, mean);
  if (i_sub < 0 || !binary(&g->nodes[i_sub], "Sub")) return NULL;
  const keel_node *sub = &g->nodes[i_sub];
  if (sub->inputs[0] != x || sub->inputs[1] != mean) return NULL;
  const int d = sub->outputs[0];
  int rd[4];
  const int nrd = readers(g, d, rd, 4);
  /* d feeds the square and the Div: Pow(d, 2) + Div (2 slots) or Mul(d, d) + Div (3 slots) */
  int i_sq = -1, i_div = -1;
  if (nrd == 2 || nrd == 3) {
    for (int k = 0; k < nrd && k < 4; k++) {
      const keel_node *r = &g->nodes[rd[k]];
      if (binary(r, "Div") && r->inputs[0] == d && r->inputs[1] != d) {
        if (i_div >= 0 && i_div != rd[k]) return NULL;
        i_div = rd[k];
      } else if (nrd == 2 && binary(r, "Pow") && r->inputs[0] == d) {
        i_sq = rd[k];
      } else if (nrd == 3 && binary(r, "Mul") && r->inputs[0] == d && r->inputs[1] == d) {
        i_sq = rd[k];
      } else {
        return NULL;
      }
    }
  }
  if (i_sq < 0 || i_div < 0) return NULL;
  if (is_onnx(&g->nodes[i_sq], "Pow")) {
    float e;
    if (!scalar_f32(g, g->nodes[i_sq].inputs[1], true, &e) || e != 2.0f) return NULL;
  }
  const int i_var = only_reader(g, g->nodes[i_sq].outputs[0]);
  if (i_var < 0 || !mean_last_axis(g, &g->nodes[i_var]) || g->nodes[i_var].inputs[0] != g->nodes[i_sq].outputs[0])
    return NULL;
  const int var = g->nodes[i_var].outputs[0];
  const int i_eps = only_reader(g, var);
  if (i_eps < 0 || !binary(&g->nodes[i_eps], "Add")) return NULL;
  float eps;
  if (!scalar_f32(g, other_input(&g->nodes[i_eps], var), true, &eps) || !(eps >= 0.0f)) return NULL;
  const int i_sqrt = only_reader(g, g->nodes[i_eps].outputs[0]);
  if (i_sqrt < 0 || !is_onnx(&g->nodes[i_sqrt], "Sqrt") || g->nodes[i_sqrt].n_outputs != 1) return NULL;
  const int sd = g->nodes[i_sqrt].outputs[0];
  if (sd < 0 || only_reader(g, sd) != i_div || g->nodes[i_div].inputs[1] != sd) return NULL;
  const int nrm = g->nodes[i_div].outputs[0];
  const int i_mul = only_reader(g, nrm);
  if (i_mul < 0 || !binary(&g->nodes[i_mul], "Mul")) return NULL;
  const int gamma = other_input(&g->nodes[i_mul], nrm);
  const int i_add = only_reader(g, g->nodes[i_mul].outputs[0]);
  if (i_add < 0 || !binary(&g->nodes[i_add], "Add")) return NULL;
  const int beta = other_input(&g->nodes[i_add], g->nodes[i_mul].outputs[0]);
  const keel_tensor *tg = const_of(g, gamma), *tb = const_of(g, beta);
  if (!tg || !tb || tg->dtype != KEEL_FLOAT32 || tb->dtype != KEEL_FLOAT32 || tg->ndim != 1 || tb->ndim != 1)
    return NULL;
  /* matched: one node replaces the nine */
  char base[400];
  snprintf(base, sizeof base, "%s", g->nodes[i_add].name);
  const int out = g->nodes[i_add].outputs[0];
  const int k = add_keel_node(g, base, "LayerNorm", 3);
  if (k < 0) return oom("LayerNorm");
  keel_node *ln = &g->nodes[k];
  ln->inputs[0] = x;
  ln->inputs[1] = gamma;
  ln->inputs[2] = beta;
  ln->outputs[0] = out;
  if (!set_float_attr(ln, "epsilon", eps)) return oom("LayerNorm");
  const int dead[] = {i_mean, i_sub, i_sq, i_var, i_eps, i_sqrt, i_div, i_mul, i_add};
  for (size_t j = 0; j < sizeof dead / sizeof dead[0]; j++) g->nodes[dead[j]].dead = true;
  (*fused)++;
  return NULL;
}

/* ---- GELU ---- */

static keel_status *fuse_gelu(keel_graph *g, int i_erf, int *fused) {
  const keel_node *erf = &g->nodes[i_erf];
  if (!is_onnx(erf, "Erf") || erf->n_inputs != 1 || erf->n_outputs != 1 || erf->outputs[0] < 0) return NULL;
  const int t = erf->inputs[0];
  const int i_scale = producer_of(g, t);
  if (i_scale < 0 || only_reader(g, t) != i_erf) return NULL;
  const keel_node *sc = &g->nodes[i_scale];
  int x = -1;
  float c;
  if (binary(sc, "Div") && scalar_f32(g, sc->inputs[1], false, &c) && fabsf(c - 1.41421356f) <= 2e-7f) {
    x = sc->inputs[0];
  } else if (binary(sc, "Mul")) {
    for (int k = 0; k < 2 && x < 0; k++)
      if (scalar_f32(g, sc->inputs[k], false, &c) && fabsf(c - 0.70710678f) <= 1e-7f) x = sc->inputs[1 - k];
  }
  if (x < 0 || const_of(g, x)) return NULL;
  const int e = erf->outputs[0];
  const int i_one = only_reader(g, e);
  if (i_one < 0 || !binary(&g->nodes[i_one], "Add")) return NULL;
  float one;
  if (!scalar_f32(g, other_input(&g->nodes[i_one], e), false, &one) || one != 1.0f) return NULL;
  const int a = g->nodes[i_one].outputs[0];
  const int i_m1 = only_reader(g, a);
  if (i_m1 < 0 || !binary(&g->nodes[i_m1], "Mul")) return NULL;
  const int m1_other = other_input(&g->nodes[i_m1], a);
  int i_last = -1, i_half = -1; /* i_half: Mul(x, 0.5) ahead of the product, in the second form */
  float half;
  if (m1_other == x) { /* Mul(x, 1 + erf) -> Mul(., 0.5) */
    i_last = only_reader(g, g->nodes[i_m1].outputs[0]);
    if (i_last < 0 || !binary(&g->nodes[i_last], "Mul")) return NULL;
    if (!scalar_f32(g, other_input(&g->nodes[i_last], g->nodes[i_m1].outputs[0]), false, &half) || half != 0.5f)
      return NULL;
  } else { /* Mul(Mul(x, 0.5), 1 + erf) */
    i_half = producer_of(g, m1_other);
    if (i_half < 0 || !binary(&g->nodes[i_half], "Mul") || only_reader(g, m1_other) != i_m1) return NULL;
    if (other_input(&g->nodes[i_half], x) < 0 ||
        !scalar_f32(g, other_input(&g->nodes[i_half], x), false, &half) || half != 0.5f)
      return NULL;
    i_last = i_m1;
  }
  /* x itself is read by the scale node and by the product (or the half); others may read it too */
  char base[400];
  snprintf(base, sizeof base, "%s", g->nodes[i_last].name);
  const int out = g->nodes[i_last].outputs[0];
  const int k = add_keel_node(g, base, "Gelu", 1);
  if (k < 0) return oom("Gelu");
  g->nodes[k].inputs[0] = x;
  g->nodes[k].outputs[0] = out;
  const int dead[] = {i_scale, i_erf, i_one, i_m1, i_last, i_half};
  for (size_t j = 0; j < sizeof dead / sizeof dead[0]; j++)
    if (dead[j] >= 0) g->nodes[dead[j]].dead = true;
  (*fused)++;
  return NULL;
}

/* ---- Softmax with scale and mask ---- */

/* Node i scales one input by a scalar constant: returns that input and sets *scale, else -1. */
static int scale_input(const keel_graph *g, int i, float *scale) {
  const keel_node *n = &g->nodes[i];
  float c;
  if (binary(n, "Div") && scalar_f32(g, n->inputs[1], false, &c) && c != 0.0f && !const_of(g, n->inputs[0])) {
    *scale = 1.0f / c;
    return n->inputs[0];
  }
  if (binary(n, "Mul"))
    for (int k = 0; k < 2; k++)
      if (scalar_f32(g, n->inputs[k], false, &c) && !const_of(g, n->inputs[1 - k])) {
        *scale = c;
        return n->inputs[1 - k];
      }
  return -1;
}

static keel_status *fuse_softmax(keel_graph *g, int i_sm, int *fused) {
  const keel_node *sm = &g->nodes[i_sm];
  if (!is_onnx(sm, "Softmax") || sm->n_inputs != 1 || sm->n_outputs != 1 || sm->outputs[0] < 0) return NULL;
  const keel_attr *ax = keel_node_attr(sm, "axis");
  if (ax ? keel_attr_int(sm, "axis", 0) != -1 : sm->opset < 13) return NULL; /* opset < 13 defaults to 1 */
  const int in = sm->inputs[0];
  const int i_p = producer_of(g, in);
  if (i_p < 0 || only_reader(g, in) != i_sm) return NULL;
  int x = -1, mask = -1, i_scale = -1, i_add = -1;
  float scale = 1.0f;
  if (binary(&g->nodes[i_p], "Add")) {
    i_add = i_p;
    const keel_node *add = &g->nodes[i_add];
    if (add->inputs[0] == add->inputs[1]) return NULL;
    for (int k = 0; k < 2 && x < 0; k++) {
      const int i_s = producer_of(g, add->inputs[k]);
      if (i_s < 0 || only_reader(g, add->inputs[k]) != i_add) continue;
      const int xs = scale_input(g, i_s, &scale);
      if (xs >= 0) {
        x = xs;
        i_scale = i_s;
        mask = add->inputs[1 - k];
      }
    }
    if (x < 0) { /* no scale: softmax(a + b) */
      scale = 1.0f;
      x = add->inputs[0];
      mask = add->inputs[1];
    }
  } else {
    x = scale_input(g, i_p, &scale);
    if (x < 0) return NULL;
    i_scale = i_p;
  }
  /* float32 only: a constant mask tells; otherwise the scale constant does; an unscaled Add of two
   * non-constants has no dtype evidence, so it is left alone */
  const keel_tensor *mt = const_of(g, mask);
  if (mt && mt->dtype != KEEL_FLOAT32) return NULL;
  if (i_scale < 0 && !mt) return NULL;
  char base[400];
  snprintf(base, sizeof base, "%s", g->nodes[i_sm].name);
  const int out = g->nodes[i_sm].outputs[0];
  const int k = add_keel_node(g, base, "ScaleMaskSoftmax", mask >= 0 ? 2 : 1);
  if (k < 0) return oom("ScaleMaskSoftmax");
  keel_node *f = &g->nodes[k];
  f->inputs[0] = x;
  if (mask >= 0) f->inputs[1] = mask;
  f->outputs[0] = out;
  if (!set_float_attr(f, "scale", scale)) return oom("ScaleMaskSoftmax");
  g->nodes[i_sm].dead = true;
  if (i_add >= 0) g->nodes[i_add].dead = true;
  if (i_scale >= 0) g->nodes[i_scale].dead = true;
  (*fused)++;
  return NULL;
}

/* ---- residual Add + LayerNorm ---- */

/* Anchor: a keel.LayerNorm built above whose input is an Add read by nothing else (the residual sum is not
 * needed apart from its normalization). */
static keel_status *fuse_skip_layernorm(keel_graph *g, int i_ln, int *fused) {
  const keel_node *ln = &g->nodes[i_ln];
  if (ln->dead || strcmp(ln->domain, "keel") || strcmp(ln->op_type, "LayerNorm") || ln->n_inputs != 3 ||
      ln->n_outputs != 1)
    return NULL;
  const int x = ln->inputs[0];
  const int i_add = producer_of(g, x);
  if (i_add < 0 || !binary(&g->nodes[i_add], "Add") || only_reader(g, x) != i_ln) return NULL;
  const int a = g->nodes[i_add].inputs[0], b = g->nodes[i_add].inputs[1];
  if (a < 0 || b < 0) return NULL;
  char base[400];
  snprintf(base, sizeof base, "%s", ln->name);
  const int gamma = ln->inputs[1], beta = ln->inputs[2], out = ln->outputs[0];
  const float eps = keel_attr_float(ln, "epsilon", 1e-5f);
  const int k = add_keel_node(g, base, "SkipLayerNorm", 4);
  if (k < 0) return oom("SkipLayerNorm");
  keel_node *f = &g->nodes[k];
  f->inputs[0] = a;
  f->inputs[1] = b;
  f->inputs[2] = gamma;
  f->inputs[3] = beta;
  f->outputs[0] = out;
  if (!set_float_attr(f, "epsilon", eps)) return oom("SkipLayerNorm");
  g->nodes[i_ln].dead = true;
  g->nodes[i_add].dead = true;
  (*fused)++;
  return NULL;
}

/* ---- multi-head attention ---- */

/* Node i is a Transpose with exactly this 4-value perm attribute. */
static bool transpose_perm(const keel_graph *g, int i, const int64_t *perm) {
  if (i < 0) return false;
  const keel_node *t = &g->nodes[i];
  if (!is_onnx(t, "Transpose") || t->n_inputs != 1 || t->n_outputs != 1 || t->outputs[0] < 0) return false;
  const int64_t *p = NULL;
  if (keel_attr_ints(t, "perm", &p) != 4) return false;
  for (int k = 0; k < 4; k++)
    if (p[k] != perm[k]) return false;
  return true;
}

static bool matmul2(const keel_node *n) {
  return is_onnx(n, "MatMul") && n->n_inputs == 2 && n->n_outputs == 1 && n->outputs[0] >= 0;
}

/* Anchor: a keel.ScaleMaskSoftmax built above. Its scores come from Q.K^T of head-transposed operands and
 * its probabilities go only into P.V whose result is transposed back: the four Transposes and both MatMuls
 * read and feed nothing else, so the fused node computes every value that stays live. */
static keel_status *fuse_attention(keel_graph *g, int i_sm, int *fused) {
  static const int64_t to_heads[4] = {0, 2, 1, 3}, to_heads_t[4] = {0, 2, 3, 1};
  const keel_node *sm = &g->nodes[i_sm];
  if (sm->dead || strcmp(sm->domain, "keel") || strcmp(sm->op_type, "ScaleMaskSoftmax") || sm->n_outputs != 1)
    return NULL;
  const int scores = sm->inputs[0], probs = sm->outputs[0];
  const int mask = sm->n_inputs > 1 ? sm->inputs[1] : -1;
  const int i_mm1 = producer_of(g, scores);
  if (i_mm1 < 0 || !matmul2(&g->nodes[i_mm1]) || only_reader(g, scores) != i_sm) return NULL;
  const int qt = g->nodes[i_mm1].inputs[0], kt = g->nodes[i_mm1].inputs[1];
  if (qt < 0 || kt < 0 || qt == kt) return NULL;
  const int i_tq = producer_of(g, qt), i_tk = producer_of(g, kt);
  if (!transpose_perm(g, i_tq, to_heads) || only_reader(g, qt) != i_mm1) return NULL;
  if (!transpose_perm(g, i_tk, to_heads_t) || only_reader(g, kt) != i_mm1) return NULL;
  const int i_mm2 = only_reader(g, probs);
  if (i_mm2 < 0 || !matmul2(&g->nodes[i_mm2]) || g->nodes[i_mm2].inputs[0] != probs) return NULL;
  const int vt = g->nodes[i_mm2].inputs[1];
  const int i_tv = producer_of(g, vt);
  if (!transpose_perm(g, i_tv, to_heads) || only_reader(g, vt) != i_mm2) return NULL;
  const int o = g->nodes[i_mm2].outputs[0];
  const int i_to = only_reader(g, o);
  if (!transpose_perm(g, i_to, to_heads) || g->nodes[i_to].inputs[0] != o) return NULL;
  const int q = g->nodes[i_tq].inputs[0], k = g->nodes[i_tk].inputs[0], v = g->nodes[i_tv].inputs[0];
  if (q < 0 || k < 0 || v < 0) return NULL;
  char base[400];
  snprintf(base, sizeof base, "%s", g->nodes[i_to].name);
  const float scale = keel_attr_float(sm, "scale", 1.0f);
  const int out = g->nodes[i_to].outputs[0];
  const int f = add_keel_node(g, base, "MultiHeadAttention", mask >= 0 ? 4 : 3);
  if (f < 0) return oom("MultiHeadAttention");
  keel_node *a = &g->nodes[f];
  a->inputs[0] = q;
  a->inputs[1] = k;
  a->inputs[2] = v;
  if (mask >= 0) a->inputs[3] = mask;
  a->outputs[0] = out;
  if (!set_float_attr(a, "scale", scale)) return oom("MultiHeadAttention");
  const int dead[] = {i_tq, i_tk, i_mm1, i_sm, i_tv, i_mm2, i_to};
  for (size_t j = 0; j < sizeof dead / sizeof dead[0]; j++) g->nodes[dead[j]].dead = true;
  (*fused)++;
  return NULL;
}

keel_status *keel_pass_fuse_patterns(keel_graph *g, keel_fuse_counts *counts) {
  keel_fuse_counts c = {0};
  const int n0 = g->n_nodes; /* nodes appended by the fusions are not anchors */
  for (int i = 0; i < n0; i++) {
    if (g->nodes[i].dead) continue;
    if (is_onnx(&g->nodes[i], "ReduceMean")) KEEL_TRY(fuse_layernorm(g, i, &c.layernorm));
    else if (is_onnx(&g->nodes[i], "Erf")) KEEL_TRY(fuse_gelu(g, i, &c.gelu));
    else if (is_onnx(&g->nodes[i], "Softmax")) KEEL_TRY(fuse_softmax(g, i, &c.softmax));
  }
  const int n1 = g->n_nodes; /* the attention anchors are the ScaleMaskSoftmax nodes appended above */
  for (int i = n0; i < n1; i++) {
    KEEL_TRY(fuse_attention(g, i, &c.attention));
    KEEL_TRY(fuse_skip_layernorm(g, i, &c.skip_layernorm));
  }
  if (counts) *counts = c;
  return NULL;
}
