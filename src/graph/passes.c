/* Engine-build passes. Each pass keeps the graph valid; dead nodes are dropped by the next toposort. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/tensor_internal.h"
#include "graph/passes.h"
#include "ops/op.h"
#include "ops/string_ops.h"

/* Folding at load time never materializes outputs larger than this (e.g. a huge ConstantOfShape). */
#define LOAD_FOLD_MAX_BYTES ((size_t)64 << 20)

keel_status *keel_pass_resolve_ops(keel_graph *g) {
  for (int i = 0; i < g->n_nodes; i++) {
    keel_node *n = &g->nodes[i];
    const char *dom = n->domain[0] ? n->domain : "ai.onnx";
    n->op = keel_op_find(n->op_type, n->domain, n->opset);
    if (n->op) continue;
    if (keel_op_known(n->op_type, n->domain))
      return keel_error(KEEL_UNSUPPORTED, "operator %s (domain %s) at opset %d is not supported (node '%s')",
                        n->op_type, dom, n->opset, n->name);
    return keel_error(KEEL_UNSUPPORTED, "unsupported operator %s (domain %s, opset %d) in node '%s'", n->op_type, dom,
                      n->opset, n->name);
  }
  return NULL;
}

int keel_graph_use_count(const keel_graph *g, int v) {
  int c = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    const keel_node *n = &g->nodes[i];
    if (n->dead) continue;
    for (int k = 0; k < n->n_inputs; k++) c += n->inputs[k] == v;
  }
  for (int k = 0; k < g->n_outputs; k++) c += g->outputs[k] == v;
  return c;
}

static bool is_graph_output(const keel_graph *g, int v) {
  for (int k = 0; k < g->n_outputs; k++)
    if (g->outputs[k] == v) return true;
  return false;
}

static void tensor_view(const keel_tensor *t, keel_view *v) {
  v->dtype = t->dtype;
  v->ndim = t->ndim;
  memcpy(v->dims, t->dims, sizeof(int64_t) * (size_t)t->ndim);
  v->data = t->data;
}

/* ...and never more than this in total, so a small model cannot make loading allocate gigabytes. */
#define LOAD_FOLD_BUDGET_BYTES ((size_t)256 << 20)

keel_status *keel_pass_fold_constants(keel_graph *g) {
  keel_view in[64], out[16];
  size_t folded_total = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    keel_node *n = &g->nodes[i];
    if (n->dead || n->n_inputs > 64 || n->n_outputs > 16 || n->n_inputs == 0 || !n->op->run || keel_node_is_random(n))
      continue;
    bool all_const = true;
    for (int k = 0; k < n->n_inputs; k++) {
      int v = n->inputs[k];
      if (v < 0) {
        memset(&in[k], 0, sizeof in[k]);
        continue;
      }
      if (!g->values[v].constant) {
        all_const = false;
        break;
      }
      tensor_view(g->values[v].constant, &in[k]);
    }
    if (!all_const) continue;
    /* String values own their element bytes; they stay with the interpreter, which copies them properly. */
    if (keel_strings_involved(n, in, n->n_inputs)) continue;
    memset(out, 0, sizeof out);
    keel_tls_needs_value = false;
    keel_status *s = n->op->infer(n, in, n->n_inputs, out, n->n_outputs);
    if (s && keel_tls_needs_value) { /* left for plan time or the interpreter */
      keel_status_free(s);
      continue;
    }
    if (s) return keel_error_prefix(s, "%s: ", keel_node_desc(n));
    size_t total = 0;
    bool ok = true;
    keel_tensor *made[16] = {0};
    for (int k = 0; k < n->n_outputs && ok; k++) {
      if (n->outputs[k] < 0) continue;
      int64_t numel;
      size_t nb;
      if (!keel_shape_numel(out[k].dims, out[k].ndim, &numel) ||
          !keel_shape_nbytes(numel, keel_dtype_size(out[k].dtype), &nb))
        return keel_error(KEEL_INVALID_MODEL, "%s: output shape overflows", keel_node_desc(n));
      if (g->max_tensor_elements && (uint64_t)numel > g->max_tensor_elements)
        return keel_error(KEEL_OUT_OF_MEMORY, "%s: output %d would have %lld elements, above the limit of %llu "
                          "(max_tensor_elements)", keel_node_desc(n), k, (long long)numel,
                          (unsigned long long)g->max_tensor_elements);
      total += nb;
      if (total > LOAD_FOLD_MAX_BYTES) ok = false;
    }
    if (!ok || total > LOAD_FOLD_BUDGET_BYTES - folded_total) continue; /* left for run time */
    folded_total += total;
    for (int k = 0; k < n->n_outputs; k++) {
      if (n->outputs[k] < 0) continue;
      s = keel_tensor_create(out[k].dtype, out[k].dims, out[k].ndim, NULL, &made[k]);
      if (s) goto fail;
      out[k].data = made[k]->data;
    }
    size_t ws = n->op->workspace ? n->op->workspace(n, in, n->n_inputs, out, n->n_outputs) : 0;
    void *wsp = ws ? aligned_alloc(64, (ws + 63) & ~(size_t)63) : NULL;
    if (ws && !wsp) {
      s = keel_error(KEEL_OUT_OF_MEMORY, "out of memory folding %s", keel_node_desc(n));
      goto fail;
    }
    keel_exec ex = {wsp ? wsp : keel_empty_workspace, ws, 1};
    s = n->op->run(n, in, n->n_inputs, out, n->n_outputs, &ex);
    free(wsp);
    if (s) goto fail;
    for (int k = 0; k < n->n_outputs; k++) {
      int v = n->outputs[k];
      if (v < 0) continue;
      keel_value *val = &g->values[v];
      val->constant = made[k];
      val->dtype = made[k]->dtype;
      val->ndim = made[k]->ndim;
      memcpy(val->dims, made[k]->dims, sizeof(int64_t) * (size_t)made[k]->ndim);
      val->producer = -1;
    }
    n->dead = true;
    continue;
  fail:
    for (int k = 0; k < 16; k++) keel_tensor_release(made[k]);
    return keel_error_prefix(s, "while folding constants, %s: ", keel_node_desc(n));
  }
  return NULL;
}

/* The single live consumer of value v (node index) or -1 if it has zero or several, or is a graph output. */
static int sole_consumer(const keel_graph *g, int v) {
  if (is_graph_output(g, v)) return -1;
  int found = -1;
  for (int i = 0; i < g->n_nodes; i++) {
    const keel_node *n = &g->nodes[i];
    if (n->dead) continue;
    for (int k = 0; k < n->n_inputs; k++)
      if (n->inputs[k] == v) {
        if (found >= 0 && found != i) return -1;
        if (found == i) return -1; /* read twice by one node */
        found = i;
      }
  }
  return found;
}

static bool is_op(const keel_node *n, const char *op) { return n->domain[0] == 0 && !strcmp(n->op_type, op); }

static const keel_tensor *const_input(const keel_graph *g, const keel_node *n, int k) {
  if (k >= n->n_inputs || n->inputs[k] < 0) return NULL;
  return g->values[n->inputs[k]].constant;
}

/* Add a new constant value; returns its index or -1. Takes ownership of t on success. */
static int add_constant(keel_graph *g, const char *base, const char *suffix, keel_tensor *t) {
  char name[512];
  snprintf(name, sizeof name, "%s%s", base, suffix);
  int v = keel_graph_add_value(g, name);
  if (v < 0) return -1;
  g->values[v].constant = t;
  g->values[v].dtype = t->dtype;
  g->values[v].ndim = t->ndim;
  memcpy(g->values[v].dims, t->dims, sizeof(int64_t) * (size_t)t->ndim);
  return v;
}

static keel_status *fuse_conv_bn(keel_graph *g, int ci) {
  keel_node *conv = &g->nodes[ci];
  if (conv->n_outputs < 1 || conv->outputs[0] < 0 || conv->act != KEEL_ACT_NONE) return NULL;
  int bi = sole_consumer(g, conv->outputs[0]);
  if (bi < 0 || !is_op(&g->nodes[bi], "BatchNormalization")) return NULL;
  keel_node *bn = &g->nodes[bi];
  if (bn->inputs[0] != conv->outputs[0] || bn->n_inputs < 5) return NULL;
  for (int k = 1; k < bn->n_outputs; k++)
    if (bn->outputs[k] >= 0 && keel_graph_use_count(g, bn->outputs[k]) > 0) return NULL;
  if (keel_attr_int(bn, "training_mode", 0)) return NULL;
  const keel_tensor *W = const_input(g, conv, 1), *B = conv->n_inputs > 2 ? const_input(g, conv, 2) : NULL;
  if (!W || (conv->n_inputs > 2 && conv->inputs[2] >= 0 && !B)) return NULL;
  const keel_tensor *sc = const_input(g, bn, 1), *bb = const_input(g, bn, 2), *mean = const_input(g, bn, 3),
                    *var = const_input(g, bn, 4);
  if (!sc || !bb || !mean || !var || W->dtype != KEEL_FLOAT32 || W->ndim < 3) return NULL;
  int64_t M = W->dims[0];
  const keel_tensor *ps[4] = {sc, bb, mean, var};
  for (int k = 0; k < 4; k++)
    if (ps[k]->dtype != KEEL_FLOAT32 || keel_tensor_numel(ps[k]) != M) return NULL;
  if (B && (B->dtype != KEEL_FLOAT32 || keel_tensor_numel(B) != M)) return NULL;
  float eps = keel_attr_float(bn, "epsilon", 1e-5f);
  keel_tensor *W2 = NULL, *B2 = NULL;
  KEEL_TRY(keel_tensor_create(KEEL_FLOAT32, W->dims, W->ndim, NULL, &W2));
  int64_t bdim = M;
  keel_status *s = keel_tensor_create(KEEL_FLOAT32, &bdim, 1, NULL, &B2);
  if (s) {
    keel_tensor_release(W2);
    return s;
  }
  int64_t per = keel_tensor_numel(W) / (M ? M : 1);
  const float *w = W->data, *b = B ? B->data : NULL, *scale = sc->data, *shift = bb->data, *mu = mean->data,
              *v = var->data;
  float *w2 = W2->data, *b2 = B2->data;
  for (int64_t m = 0; m < M; m++) {
    float f = scale[m] / sqrtf(v[m] + eps);
    for (int64_t j = 0; j < per; j++) w2[m * per + j] = w[m * per + j] * f;
    b2[m] = ((b ? b[m] : 0.f) - mu[m]) * f + shift[m];
  }
  char base[400];
  snprintf(base, sizeof base, "%s", conv->name);
  int wv = add_constant(g, base, "/bn_folded_W", W2);
  if (wv < 0) {
    keel_tensor_release(W2);
    keel_tensor_release(B2);
    return keel_error(KEEL_OUT_OF_MEMORY, "out of memory fusing Conv+BatchNormalization");
  }
  int bv = add_constant(g, base, "/bn_folded_B", B2);
  if (bv < 0) {
    keel_tensor_release(B2);
    return keel_error(KEEL_OUT_OF_MEMORY, "out of memory fusing Conv+BatchNormalization");
  }
  conv = &g->nodes[ci];
  bn = &g->nodes[bi];
  if (conv->n_inputs < 3 && !keel_node_set_n_inputs(conv, 3))
    return keel_error(KEEL_OUT_OF_MEMORY, "out of memory fusing Conv+BatchNormalization");
  conv->inputs[1] = wv;
  conv->inputs[2] = bv;
  conv->outputs[0] = bn->outputs[0];
  bn->dead = true;
  return NULL;
}

static bool fuse_bias(keel_graph *g, int mi) {
  keel_node *mm = &g->nodes[mi];
  if (mm->n_inputs != 2 || mm->act != KEEL_ACT_NONE || mm->outputs[0] < 0) return false;
  const keel_tensor *Bw = const_input(g, mm, 1);
  if (!Bw || Bw->ndim != 2 || Bw->dtype != KEEL_FLOAT32) return false;
  int ai = sole_consumer(g, mm->outputs[0]);
  if (ai < 0 || !is_op(&g->nodes[ai], "Add")) return false;
  keel_node *add = &g->nodes[ai];
  int other = add->inputs[0] == mm->outputs[0] ? 1 : 0;
  const keel_tensor *bias = const_input(g, add, other);
  if (!bias || bias->dtype != KEEL_FLOAT32 || keel_tensor_numel(bias) != Bw->dims[1]) return false;
  for (int d = 0; d + 1 < bias->ndim; d++)
    if (bias->dims[d] != 1) return false;
  if (bias->ndim > 1) return false; /* a [1,N] bias could broadcast the output rank up; keep it simple */
  int bias_v = add->inputs[other];
  if (!keel_node_set_n_inputs(mm, 3)) return false;
  mm->inputs[2] = bias_v;
  mm->outputs[0] = add->outputs[0];
  add->dead = true;
  return true;
}

static bool fuse_activation(keel_graph *g, int pi) {
  keel_node *p = &g->nodes[pi];
  if (p->act != KEEL_ACT_NONE || p->n_outputs < 1 || p->outputs[0] < 0) return false;
  /* Activations are float math: fuse only where the weights say the op computes in float32. An Add has
   * no weights: it takes Relu (which its kernel applies for every dtype) and Clip with float32 bounds. */
  const bool add = is_op(p, "Add");
  const keel_tensor *w = const_input(g, p, 1);
  if (!add && (!w || w->dtype != KEEL_FLOAT32)) return false;
  int ai = sole_consumer(g, p->outputs[0]);
  if (ai < 0) return false;
  keel_node *a = &g->nodes[ai];
  if (a->n_outputs < 1 || a->outputs[0] < 0) return false;
  if (!strcmp(a->domain, "keel") && !strcmp(a->op_type, "Gelu") && !add) { /* from keel_pass_fuse_patterns */
    p->act = KEEL_ACT_GELU;
    p->outputs[0] = a->outputs[0];
    a->dead = true;
    return true;
  }
  if (a->domain[0]) return false;
  if (add && strcmp(a->op_type, "Relu") && strcmp(a->op_type, "Clip")) return false;
  keel_act act = KEEL_ACT_NONE;
  float alpha = 0, beta = 0;
  if (!strcmp(a->op_type, "Relu")) act = KEEL_ACT_RELU;
  else if (!strcmp(a->op_type, "LeakyRelu")) act = KEEL_ACT_LEAKY_RELU, alpha = keel_attr_float(a, "alpha", 0.01f);
  else if (!strcmp(a->op_type, "Sigmoid")) act = KEEL_ACT_SIGMOID;
  else if (!strcmp(a->op_type, "Tanh")) act = KEEL_ACT_TANH;
  else if (!strcmp(a->op_type, "HardSigmoid"))
    act = KEEL_ACT_HARD_SIGMOID, alpha = keel_attr_float(a, "alpha", 0.2f), beta = keel_attr_float(a, "beta", 0.5f);
  else if (!strcmp(a->op_type, "HardSwish")) act = KEEL_ACT_HARD_SWISH;
  else if (!strcmp(a->op_type, "Gelu") && !strcmp(keel_attr_string(a, "approximate", "none"), "none"))
    act = KEEL_ACT_GELU; /* ONNX Gelu (opset 20), erf form */
  else if (!strcmp(a->op_type, "Clip")) {
    alpha = -INFINITY;
    beta = INFINITY;
    if (a->opset < 11) {
      if (add) return false; /* attribute bounds say nothing about the data's dtype */
      alpha = keel_attr_float(a, "min", -INFINITY);
      beta = keel_attr_float(a, "max", INFINITY);
    } else {
      if (add && (a->n_inputs < 2 || a->inputs[1] < 0) && (a->n_inputs < 3 || a->inputs[2] < 0))
        return false; /* no float32 bound to prove the dtype */
      for (int k = 1; k < a->n_inputs && k < 3; k++) {
        if (a->inputs[k] < 0) continue;
        const keel_tensor *t = const_input(g, a, k);
        if (!t || t->dtype != KEEL_FLOAT32 || keel_tensor_numel(t) != 1) return false;
        float x = *(const float *)t->data;
        if (k == 1) alpha = x;
        else beta = x;
      }
    }
    act = KEEL_ACT_CLIP;
  }
  if (act == KEEL_ACT_NONE) return false;
  p->act = act;
  p->act_alpha = alpha;
  p->act_beta = beta;
  p->outputs[0] = a->outputs[0];
  a->dead = true;
  return true;
}

keel_status *keel_pass_fuse(keel_graph *g) {
  keel_fuse_counts c;
  KEEL_TRY(keel_pass_fuse_patterns(g, &c));
  /* the fused nodes were appended: restore topological order (keel_pass_remove_dead relies on it) */
  if (c.layernorm || c.gelu || c.softmax || c.attention || c.skip_layernorm) KEEL_TRY(keel_graph_toposort(g));
  for (int i = 0; i < g->n_nodes; i++) {
    if (g->nodes[i].dead) continue;
    if (is_op(&g->nodes[i], "Conv")) KEEL_TRY(fuse_conv_bn(g, i));
    if (is_op(&g->nodes[i], "MatMul")) fuse_bias(g, i);
    if (is_op(&g->nodes[i], "Conv") || is_op(&g->nodes[i], "Gemm") || is_op(&g->nodes[i], "MatMul") ||
        is_op(&g->nodes[i], "Add"))
      fuse_activation(g, i);
  }
  return NULL;
}

keel_status *keel_pass_remove_dead(keel_graph *g) {
  char *live = calloc((size_t)g->n_values + 1, 1);
  if (!live) return keel_error(KEEL_OUT_OF_MEMORY, "out of memory removing dead nodes");
  for (int k = 0; k < g->n_outputs; k++) live[g->outputs[k]] = 1;
  /* nodes are in topological order: one backward sweep marks everything that reaches an output */
  for (int i = g->n_nodes - 1; i >= 0; i--) {
    keel_node *n = &g->nodes[i];
    if (n->dead) continue;
    bool used = false;
    for (int k = 0; k < n->n_outputs; k++)
      if (n->outputs[k] >= 0 && live[n->outputs[k]]) used = true;
    if (!used) {
      n->dead = true;
      continue;
    }
    for (int k = 0; k < n->n_inputs; k++)
      if (n->inputs[k] >= 0) live[n->inputs[k]] = 1;
  }
  /* constants nobody reads any more (folded away, fused into new weights) are released */
  for (int v = 0; v < g->n_values; v++)
    if (!live[v] && g->values[v].constant) {
      keel_tensor_release(g->values[v].constant);
      g->values[v].constant = NULL;
    }
  free(live);
  return NULL;
}
