/* Gradient (ai.onnx.preview.training) by reverse-mode differentiation at load time. See gradient.h.
 *
 * The forward nodes between the xs and y stay as they are; the backward pass is emitted as ordinary ONNX
 * nodes (opset EMIT_OPSET), so the rest of keel (folding, planning, kernels) needs to know nothing about
 * training. Shapes are generally unknown at load time, so the reduction of a broadcast operand's gradient
 * back to the operand's shape is computed by nodes too:
 *
 *   pad  = ConstantOfShape(Shape(Shape(g)) - Shape(Shape(x)), 1)   leading axes x lacks
 *   axes = Reshape(NonZero(Concat(pad, Shape(x)) == 1), [-1])      axes where x is 1 (or absent)
 *   gx   = Reshape(ReduceSum(g, axes, keepdims=1, noop_with_empty_axes=1), Shape(x))
 *
 * All of it reads only shapes, so plan-time folding turns it into constants and a static plan remains. */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "graph/gradient.h"

#define EMIT_OPSET 18
#define TRAINING_DOMAIN "ai.onnx.preview.training"

typedef struct {
  keel_graph *g;
  const char *prefix; /* the Gradient node's name: emitted names are "<prefix>/<hint>_<k>" */
  int counter;
  keel_status *err;
} emitter;

static keel_status *oom(void) { return keel_error(KEEL_OUT_OF_MEMORY, "out of memory expanding a Gradient node"); }

/* A fresh value with a name no existing value has. */
static int fresh_value(emitter *e, const char *hint) {
  char name[512];
  do snprintf(name, sizeof name, "%s/grad_%s_%d", e->prefix, hint, e->counter++);
  while (keel_graph_find_value(e->g, name) >= 0);
  int v = keel_graph_add_value(e->g, name);
  if (v < 0 && !e->err) e->err = oom();
  return v;
}

/* A node op(ins...) with one new output value; returns the node index (-1 on error, e->err set). Inputs
 * of -1 (an earlier failure) propagate the failure. */
static int emit_node(emitter *e, const char *op, const int *ins, int n_in, int *out_value) {
  *out_value = -1;
  if (e->err) return -1;
  for (int k = 0; k < n_in; k++)
    if (ins[k] < 0) {
      if (!e->err) e->err = keel_error(KEEL_INTERNAL, "Gradient expansion lost a value");
      return -1;
    }
  int v = fresh_value(e, op);
  if (v < 0) return -1;
  int ni = keel_graph_add_node(e->g, e->g->values[v].name, op, "");
  if (ni < 0) {
    e->err = oom();
    return -1;
  }
  keel_node *n = &e->g->nodes[ni];
  n->opset = EMIT_OPSET;
  if (!keel_node_set_n_inputs(n, n_in) || !keel_node_set_n_outputs(n, 1)) {
    e->err = oom();
    return -1;
  }
  for (int k = 0; k < n_in; k++) n->inputs[k] = ins[k];
  n->outputs[0] = v;
  e->g->values[v].producer = ni;
  *out_value = v;
  return ni;
}

static int op1(emitter *e, const char *op, int a) {
  int v;
  emit_node(e, op, &a, 1, &v);
  return v;
}
static int op2(emitter *e, const char *op, int a, int b) {
  int ins[2] = {a, b}, v;
  emit_node(e, op, ins, 2, &v);
  return v;
}

static void attr_int(emitter *e, int ni, const char *name, int64_t val) {
  if (ni < 0 || e->err) return;
  keel_attr *a = keel_node_add_attr(&e->g->nodes[ni], name);
  if (!a) {
    e->err = oom();
    return;
  }
  a->type = KEEL_ATTR_INT;
  a->i = val;
}

static void attr_str(emitter *e, int ni, const char *name, const char *val) {
  if (ni < 0 || e->err) return;
  keel_attr *a = keel_node_add_attr(&e->g->nodes[ni], name);
  if (!a || !(a->s = strdup(val))) {
    e->err = oom();
    return;
  }
  a->type = KEEL_ATTR_STRING;
  a->s_len = strlen(val);
}

/* A constant value holding t (taken over). */
static int constant(emitter *e, keel_tensor *t) {
  if (!t) {
    if (!e->err) e->err = oom();
    return -1;
  }
  int v = e->err ? -1 : fresh_value(e, "const");
  if (v < 0) {
    keel_tensor_release(t);
    return -1;
  }
  keel_value *val = &e->g->values[v];
  val->constant = t;
  val->dtype = keel_tensor_dtype(t);
  val->ndim = keel_tensor_ndim(t);
  memcpy(val->dims, keel_tensor_dims(t), sizeof(int64_t) * (size_t)val->ndim);
  return v;
}

static int const_f32(emitter *e, float x) {
  keel_tensor *t = NULL;
  keel_status *s = keel_tensor_from_data(KEEL_FLOAT32, NULL, 0, &x, &t);
  if (s) {
    if (!e->err) e->err = s;
    else keel_status_free(s);
    return -1;
  }
  return constant(e, t);
}

static int const_i64(emitter *e, const int64_t *x, int n, bool vector) {
  keel_tensor *t = NULL;
  int64_t d = n;
  keel_status *s = keel_tensor_from_data(KEEL_INT64, &d, vector ? 1 : 0, x, &t);
  if (s) {
    if (!e->err) e->err = s;
    else keel_status_free(s);
    return -1;
  }
  return constant(e, t);
}

/* A float constant in the dtype of `like`. */
static int scalar_like(emitter *e, float x, int like) { return op2(e, "CastLike", const_f32(e, x), like); }

/* x-shaped tensor of `val` (dtype of x). */
static int filled_like(emitter *e, float val, int x) {
  return op2(e, "Expand", scalar_like(e, val, x), op1(e, "Shape", x));
}

/* The gradient g of a broadcast result, summed back to the shape of operand x. */
static int unbroadcast(emitter *e, int g, int x) {
  int sx = op1(e, "Shape", x), sg = op1(e, "Shape", g);
  int diff = op2(e, "Sub", op1(e, "Shape", sg), op1(e, "Shape", sx));
  int ni, pad, one = 1;
  ni = emit_node(e, "ConstantOfShape", &diff, 1, &pad);
  if (ni >= 0 && !e->err) {
    keel_tensor *t = NULL;
    int64_t v1 = 1, d1 = 1;
    keel_status *s = keel_tensor_from_data(KEEL_INT64, &d1, 1, &v1, &t);
    keel_attr *a = s ? NULL : keel_node_add_attr(&e->g->nodes[ni], "value");
    if (s) e->err = s;
    else if (!a) {
      keel_tensor_release(t);
      e->err = oom();
    } else {
      a->type = KEEL_ATTR_TENSOR;
      a->t = t;
    }
  }
  int cat_in[2] = {pad, sx}, sxp;
  attr_int(e, emit_node(e, "Concat", cat_in, 2, &sxp), "axis", 0);
  int64_t one64 = one, minus1 = -1;
  int mask = op2(e, "Equal", sxp, const_i64(e, &one64, 1, false));
  int axes = op2(e, "Reshape", op1(e, "NonZero", mask), const_i64(e, &minus1, 1, true));
  int red_in[2] = {g, axes}, red;
  ni = emit_node(e, "ReduceSum", red_in, 2, &red);
  attr_int(e, ni, "keepdims", 1);
  attr_int(e, ni, "noop_with_empty_axes", 1);
  return op2(e, "Reshape", red, sx);
}

static int einsum(emitter *e, const char *eq, int a, int b) {
  int ins[2] = {a, b}, v;
  attr_str(e, emit_node(e, "Einsum", ins, 2, &v), "equation", eq);
  return v;
}

/* ---- the pass ---- */

typedef struct {
  int *grad;   /* per value: accumulated gradient value, -1 none */
  bool *active;/* per value: depends on some x */
} tape;

static void accumulate(emitter *e, tape *t, int v, int contrib) {
  if (v < 0 || contrib < 0 || !t->active[v]) return;
  t->grad[v] = t->grad[v] < 0 ? contrib : op2(e, "Add", t->grad[v], contrib);
}

static bool is(const keel_node *n, const char *op) { return !strcmp(n->op_type, op); }

/* Emit the gradients of node ni's inputs from the gradient gy of its (single) output y. */
static keel_status *backward(emitter *e, tape *t, int ni, const char *grad_name) {
  /* copy what we need: emitting nodes may move g->nodes */
  keel_node *n = &e->g->nodes[ni];
  int nin = n->n_inputs, yv = n->outputs[0], gy = t->grad[n->outputs[0]];
  int a = nin > 0 ? n->inputs[0] : -1, b = nin > 1 ? n->inputs[1] : -1;
  char op[64], name[256];
  snprintf(op, sizeof op, "%s", n->op_type);
  snprintf(name, sizeof name, "%s", n->name);
  bool dom = n->domain[0] == 0, one_out = n->n_outputs == 1;
  const keel_node tmp = {.op_type = op};
  const keel_node *m = &tmp;
  bool aa = a >= 0 && t->active[a], ba = b >= 0 && t->active[b];
  if (dom && one_out && (is(m, "Add") || is(m, "Sub")) && nin == 2) {
    if (aa) accumulate(e, t, a, unbroadcast(e, gy, a));
    if (ba) accumulate(e, t, b, unbroadcast(e, is(m, "Sub") ? op1(e, "Neg", gy) : gy, b));
  } else if (dom && one_out && is(m, "Mul") && nin == 2) {
    if (aa) accumulate(e, t, a, unbroadcast(e, op2(e, "Mul", gy, b), a));
    if (ba) accumulate(e, t, b, unbroadcast(e, op2(e, "Mul", gy, a), b));
  } else if (dom && one_out && is(m, "Div") && nin == 2) {
    if (aa) accumulate(e, t, a, unbroadcast(e, op2(e, "Div", gy, b), a));
    if (ba) /* d(a/b)/db = -(a/b)/b */
      accumulate(e, t, b, unbroadcast(e, op1(e, "Neg", op2(e, "Div", op2(e, "Mul", gy, yv), b)), b));
  } else if (dom && one_out && is(m, "Sum")) {
    for (int k = 0; k < nin; k++) {
      int x = e->g->nodes[ni].inputs[k];
      if (x >= 0 && t->active[x]) accumulate(e, t, x, unbroadcast(e, gy, x));
    }
  } else if (dom && one_out && is(m, "Neg") && nin == 1) {
    accumulate(e, t, a, op1(e, "Neg", gy));
  } else if (dom && one_out && is(m, "Identity") && nin == 1) {
    accumulate(e, t, a, gy);
  } else if (dom && one_out && (is(m, "Reshape") || is(m, "Flatten") || is(m, "Squeeze") || is(m, "Unsqueeze"))) {
    if (aa) accumulate(e, t, a, op2(e, "Reshape", gy, op1(e, "Shape", a)));
  } else if (dom && one_out && is(m, "Relu") && nin == 1) {
    int pos = op2(e, "Greater", a, scalar_like(e, 0.f, a));
    accumulate(e, t, a, op2(e, "Mul", gy, op2(e, "CastLike", pos, gy)));
  } else if (dom && one_out && is(m, "Sigmoid") && nin == 1) { /* y (1 - y) */
    accumulate(e, t, a, op2(e, "Mul", gy, op2(e, "Mul", yv, op2(e, "Sub", scalar_like(e, 1.f, yv), yv))));
  } else if (dom && one_out && is(m, "Tanh") && nin == 1) { /* 1 - y^2 */
    accumulate(e, t, a, op2(e, "Mul", gy, op2(e, "Sub", scalar_like(e, 1.f, yv), op2(e, "Mul", yv, yv))));
  } else if (dom && one_out && is(m, "Exp") && nin == 1) {
    accumulate(e, t, a, op2(e, "Mul", gy, yv));
  } else if (dom && one_out && is(m, "Log") && nin == 1) {
    accumulate(e, t, a, op2(e, "Div", gy, a));
  } else if (dom && one_out && is(m, "Sqrt") && nin == 1) { /* 1 / (2 y) */
    accumulate(e, t, a, op2(e, "Div", gy, op2(e, "Mul", scalar_like(e, 2.f, yv), yv)));
  } else if (dom && one_out && is(m, "MatMul") && nin == 2) {
    /* batched: dA = dY B^T, dB = A^T dY over the last two axes (operands of rank >= 2), then unbroadcast */
    if (aa) accumulate(e, t, a, unbroadcast(e, einsum(e, "...ik,...jk->...ij", gy, b), a));
    if (ba) accumulate(e, t, b, unbroadcast(e, einsum(e, "...ij,...ik->...jk", a, gy), b));
  } else {
    return keel_error(KEEL_UNSUPPORTED, "%s: cannot differentiate through node '%s' (%s); differentiable operators: "
                      "Add, Sub, Mul, Div, Sum, Neg, Identity, Reshape, Flatten, Squeeze, Unsqueeze, Relu, Sigmoid, "
                      "Tanh, Exp, Log, Sqrt, MatMul", grad_name, name, op);
  }
  return e->err;
}

/* Post-order DFS from y over producers: the nodes y depends on, inputs before users. */
static keel_status *ancestors(const keel_graph *g, int y, int *order, int *n_order) {
  int *state = calloc((size_t)g->n_nodes + 1, sizeof *state); /* 0 new, 1 on stack, 2 done */
  int *stack = malloc(((size_t)g->n_nodes + 1) * sizeof *stack), *pos = calloc((size_t)g->n_nodes + 1, sizeof *pos);
  keel_status *s = NULL;
  *n_order = 0;
  if (!state || !stack || !pos) {
    s = oom();
    goto out;
  }
  int top = 0, p0 = g->values[y].producer;
  if (p0 >= 0) {
    stack[top++] = p0;
    state[p0] = 1;
  }
  while (top > 0 && !s) {
    int ni = stack[top - 1];
    const keel_node *n = &g->nodes[ni];
    if (pos[ni] < n->n_inputs) {
      int v = n->inputs[pos[ni]++];
      int p = v >= 0 ? g->values[v].producer : -1;
      if (p < 0 || state[p] == 2) continue;
      if (state[p] == 1) s = keel_error(KEEL_INVALID_MODEL, "the graph has a cycle through node '%s'", g->nodes[p].name);
      else {
        state[p] = 1;
        stack[top++] = p;
      }
    } else {
      state[ni] = 2;
      order[(*n_order)++] = ni;
      top--;
    }
  }
out:
  free(state);
  free(stack);
  free(pos);
  return s;
}

static keel_status *expand_one(keel_graph *g, int gi) {
  keel_node *gn = &g->nodes[gi];
  char gname[256];
  snprintf(gname, sizeof gname, "Gradient node '%s'", gn->name);
  const keel_attr *xs = keel_node_attr(gn, "xs");
  const char *yname = keel_attr_string(gn, "y", NULL);
  if (!xs || xs->type != KEEL_ATTR_STRINGS || xs->n < 1 || !yname)
    return keel_error(KEEL_INVALID_MODEL, "%s needs the attributes xs (strings) and y (string)", gname);
  if (gn->n_outputs != xs->n)
    return keel_error(KEEL_INVALID_MODEL, "%s has %d outputs for %d xs", gname, gn->n_outputs, xs->n);
  int y = keel_graph_find_value(g, yname);
  if (y < 0) return keel_error(KEEL_INVALID_MODEL, "%s: y '%s' is not a value of the graph", gname, yname);
  int nx = xs->n;
  int *xv = calloc((size_t)nx, sizeof *xv);
  int *order = malloc(((size_t)g->n_nodes + 1) * sizeof *order);
  tape t = {calloc((size_t)g->n_values + 1, sizeof(int)), calloc((size_t)g->n_values + 1, sizeof(bool))};
  emitter e = {g, NULL, 0, NULL};
  char *prefix = strdup(gn->name);
  keel_status *s = NULL;
  int n_order = 0, n_values0 = g->n_values;
  if (!xv || !order || !t.grad || !t.active || !prefix) {
    s = oom();
    goto out;
  }
  e.prefix = prefix;
  for (int i = 0; i < n_values0; i++) t.grad[i] = -1;
  for (int i = 0; i < nx; i++) {
    if ((xv[i] = keel_graph_find_value(g, xs->strings[i])) < 0) {
      s = keel_error(KEEL_INVALID_MODEL, "%s: xs '%s' is not a value of the graph", gname, xs->strings[i]);
      goto out;
    }
    t.active[xv[i]] = true;
  }
  if ((s = ancestors(g, y, order, &n_order))) goto out;
  for (int k = 0; k < n_order; k++) { /* forward: which values depend on an x */
    const keel_node *n = &g->nodes[order[k]];
    if (order[k] == gi) {
      s = keel_error(KEEL_INVALID_MODEL, "%s: y depends on the Gradient node itself", gname);
      goto out;
    }
    bool act = false;
    for (int j = 0; j < n->n_inputs; j++) act |= n->inputs[j] >= 0 && t.active[n->inputs[j]];
    for (int j = 0; act && j < n->n_outputs; j++)
      if (n->outputs[j] >= 0) t.active[n->outputs[j]] = true;
  }
  if (t.active[y]) {
    t.grad[y] = filled_like(&e, 1.f, y);
    if ((s = e.err)) goto out;
  }
  for (int k = n_order - 1; k >= 0; k--) { /* backward, users before their inputs */
    const keel_node *n = &g->nodes[order[k]];
    bool needed = false, act = false;
    for (int j = 0; j < n->n_outputs; j++) needed |= n->outputs[j] >= 0 && n->outputs[j] < n_values0 && t.grad[n->outputs[j]] >= 0;
    for (int j = 0; j < n->n_inputs; j++) act |= n->inputs[j] >= 0 && t.active[n->inputs[j]];
    if (!needed || !act) continue;
    if (n->n_outputs != 1 || n->outputs[0] < 0 || t.grad[n->outputs[0]] < 0) {
      s = keel_error(KEEL_UNSUPPORTED, "%s: cannot differentiate through node '%s' (%s): only single-output "
                     "operators are differentiable", gname, n->name, n->op_type);
      goto out;
    }
    if ((s = backward(&e, &t, order[k], gname))) goto out;
  }
  /* Outputs: Identity(grad) into the Gradient node's output values. The Gradient node itself becomes the
   * first of those Identity nodes (operators are resolved for every node, dead or not, so it cannot stay). */
  int srcs_first = -1, first_out = -1;
  for (int i = 0; i < nx; i++) {
    int out_v = g->nodes[gi].outputs[i];
    if (out_v < 0) continue;
    int src = t.grad[xv[i]] >= 0 ? t.grad[xv[i]] : filled_like(&e, 0.f, xv[i]);
    if ((s = e.err)) goto out;
    if (srcs_first < 0) { /* rewritten in place below */
      srcs_first = src;
      first_out = out_v;
      continue;
    }
    int ni = keel_graph_add_node(g, g->values[out_v].name, "Identity", "");
    if (ni < 0 || !keel_node_set_n_inputs(&g->nodes[ni], 1) || !keel_node_set_n_outputs(&g->nodes[ni], 1)) {
      s = oom();
      goto out;
    }
    g->nodes[ni].opset = EMIT_OPSET;
    g->nodes[ni].inputs[0] = src;
    g->nodes[ni].outputs[0] = out_v;
    g->nodes[gi].outputs[i] = -1;
    g->values[out_v].producer = ni;
  }
  keel_node *gn2 = &g->nodes[gi];
  char *op = strdup("Identity"), *dom = strdup("");
  if (!op || !dom || !keel_node_set_n_inputs(gn2, 1) || !keel_node_set_n_outputs(gn2, 1)) {
    free(op);
    free(dom);
    s = oom();
    goto out;
  }
  free(gn2->op_type);
  free(gn2->domain);
  gn2->op_type = op;
  gn2->domain = dom;
  gn2->opset = EMIT_OPSET;
  gn2->inputs[0] = srcs_first >= 0 ? srcs_first : xv[0];
  gn2->outputs[0] = first_out;
  if (first_out < 0) gn2->dead = true; /* no output is read */
out:
  if (!s) s = e.err;
  else if (e.err && e.err != s) keel_status_free(e.err);
  free(xv);
  free(order);
  free(t.grad);
  free(t.active);
  free(prefix);
  return s;
}

keel_status *keel_graph_expand_gradients(keel_graph *g) {
  int n0 = g->n_nodes;
  for (int i = 0; i < n0; i++) {
    keel_node *n = &g->nodes[i];
    if (n->dead || strcmp(n->op_type, "Gradient") || strcmp(n->domain, TRAINING_DOMAIN)) continue;
    KEEL_TRY(expand_one(g, i));
  }
  return NULL;
}
