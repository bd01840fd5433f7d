/* Node-by-node interpreter with subgraph support. See interp.h. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/shape.h"
#include "core/tensor_internal.h"
#include "ops/op.h"
#include "runtime/interp.h"

typedef struct scope {
  const keel_graph *g;
  keel_tensor **env;
  const struct scope *parent;
} scope;

typedef struct {
  keel_allocator *alloc;
  int depth;
} interp_ctx;

#define MAX_DEPTH 64

static keel_status *run_graph(interp_ctx *cx, const keel_graph *g, keel_tensor *const *inputs, int n_in,
                              const scope *parent, keel_tensor **outputs);

static keel_tensor *lookup_outer(const scope *s, const char *name) {
  for (; s; s = s->parent) {
    int v = keel_graph_find_value(s->g, name);
    if (v >= 0 && s->env[v]) return s->env[v];
  }
  return NULL;
}

static void to_view(keel_tensor *t, keel_view *v) {
  if (!t) {
    memset(v, 0, sizeof *v);
    return;
  }
  v->dtype = t->dtype;
  v->ndim = t->ndim;
  memcpy(v->dims, t->dims, sizeof v->dims);
  v->data = t->data;
}

static const keel_graph *graph_attr(const keel_node *n, const char *name) {
  const keel_attr *a = keel_node_attr(n, name);
  return a && a->type == KEEL_ATTR_GRAPH ? a->g : NULL;
}

static keel_status *scalar(keel_dtype dt, const void *val, keel_tensor **out) {
  return keel_tensor_from_data(dt, NULL, 0, val, out);
}

static bool truthy(const keel_tensor *t) {
  if (!t || keel_tensor_numel(t) < 1) return false;
  return ((const uint8_t *)t->data)[0] != 0;
}

/* Copy slice `i` along `axis` of t into a new tensor without that axis. */
static keel_status *take_slice(const keel_tensor *t, int axis, int64_t i, keel_allocator *al, keel_tensor **out) {
  int64_t dims[KEEL_MAX_DIMS];
  int nd = 0;
  for (int d = 0; d < t->ndim; d++)
    if (d != axis) dims[nd++] = t->dims[d];
  KEEL_TRY(keel_tensor_create(t->dtype, dims, nd, al, out));
  size_t es = keel_dtype_size(t->dtype);
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < axis; d++) outer *= t->dims[d];
  for (int d = axis + 1; d < t->ndim; d++) inner *= t->dims[d];
  const char *src = t->data;
  char *dst = (*out)->data;
  for (int64_t o = 0; o < outer; o++)
    memcpy(dst + (size_t)(o * inner) * es, src + (size_t)((o * t->dims[axis] + i) * inner) * es, (size_t)inner * es);
  return NULL;
}

/* Stack n equally shaped parts along a new `axis` (parts[k] goes to position k, or n-1-k if reversed). */
static keel_status *stack(keel_tensor **parts, int64_t n, int axis, bool reverse, keel_dtype dt_if_empty,
                          keel_allocator *al, keel_tensor **out) {
  if (n == 0) {
    int64_t zero = 0;
    return keel_tensor_create(dt_if_empty, &zero, 1, al, out);
  }
  const keel_tensor *p0 = parts[0];
  if (axis < 0 || axis > p0->ndim || p0->ndim + 1 > KEEL_MAX_DIMS)
    return keel_error(KEEL_INVALID_MODEL, "scan output axis %d is out of range for rank %d", axis, p0->ndim + 1);
  int64_t dims[KEEL_MAX_DIMS];
  for (int d = 0, s = 0; d <= p0->ndim; d++) dims[d] = d == axis ? n : p0->dims[s++];
  for (int64_t k = 0; k < n; k++)
    if (parts[k]->dtype != p0->dtype || !keel_shape_equal(parts[k]->dims, parts[k]->ndim, p0->dims, p0->ndim))
      return keel_error(KEEL_SHAPE_MISMATCH, "scan output parts have different shapes across iterations");
  KEEL_TRY(keel_tensor_create(p0->dtype, dims, p0->ndim + 1, al, out));
  size_t es = keel_dtype_size(p0->dtype);
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < axis; d++) outer *= p0->dims[d];
  for (int d = axis; d < p0->ndim; d++) inner *= p0->dims[d];
  char *dst = (*out)->data;
  for (int64_t k = 0; k < n; k++) {
    int64_t pos = reverse ? n - 1 - k : k;
    const char *src = parts[k]->data;
    for (int64_t o = 0; o < outer; o++)
      memcpy(dst + (size_t)((o * n + pos) * inner) * es, src + (size_t)(o * inner) * es, (size_t)inner * es);
  }
  return NULL;
}

static keel_status *run_if(interp_ctx *cx, const keel_node *n, keel_tensor **in, const scope *sc,
                           keel_tensor **out) {
  const keel_graph *branch = graph_attr(n, truthy(in[0]) ? "then_branch" : "else_branch");
  if (!branch) return keel_error(KEEL_INVALID_MODEL, "If has no then_branch/else_branch graph");
  if (branch->n_outputs != n->n_outputs)
    return keel_error(KEEL_INVALID_MODEL, "If branch has %d outputs, the node %d", branch->n_outputs, n->n_outputs);
  return run_graph(cx, branch, NULL, 0, sc, out);
}

static keel_status *run_loop(interp_ctx *cx, const keel_node *n, keel_tensor **in, int n_formal, const scope *sc,
                             keel_tensor **out) {
  const keel_graph *body = graph_attr(n, "body");
  if (!body) return keel_error(KEEL_INVALID_MODEL, "Loop has no body graph");
  int N = n_formal - 2; /* loop-carried values */
  if (N < 0) return keel_error(KEEL_INVALID_MODEL, "Loop needs at least 2 inputs (M, cond)");
  int K = body->n_outputs - 1 - N; /* scan outputs */
  if (K < 0 || body->n_inputs != N + 2 || n->n_outputs != N + K)
    return keel_error(KEEL_INVALID_MODEL, "Loop body has %d inputs and %d outputs, which does not fit %d carried values",
                      body->n_inputs, body->n_outputs, N);
  bool has_m = in[0] != NULL, cond = in[1] ? truthy(in[1]) : true;
  int64_t M = has_m ? (int64_t)keel_view_get_i64(&(keel_view){in[0]->dtype, in[0]->ndim, {0}, in[0]->data}, 0) : 0;
  keel_status *s = NULL;
  keel_tensor **carried = calloc((size_t)N + 1, sizeof *carried);
  keel_tensor **body_in = calloc((size_t)N + 2, sizeof *body_in);
  keel_tensor **body_out = calloc((size_t)body->n_outputs + 1, sizeof *body_out);
  keel_tensor ***scan = calloc((size_t)K + 1, sizeof *scan);
  int64_t iters = 0, cap = 0;
  if (!carried || !body_in || !body_out || !scan) {
    s = keel_error(KEEL_OUT_OF_MEMORY, "out of memory running Loop");
    goto done;
  }
  for (int i = 0; i < N; i++) carried[i] = keel_tensor_retain(in[2 + i]);
  for (int64_t it = 0; (!has_m || it < M) && cond; it++) {
    if (it >= (int64_t)1 << 24) {
      s = keel_error(KEEL_UNSUPPORTED, "Loop ran more than 2^24 iterations");
      goto done;
    }
    bool c = true;
    s = scalar(KEEL_INT64, &it, &body_in[0]);
    if (!s) s = scalar(KEEL_BOOL, &c, &body_in[1]);
    if (s) goto done;
    for (int i = 0; i < N; i++) body_in[2 + i] = carried[i];
    s = run_graph(cx, body, body_in, N + 2, sc, body_out);
    keel_tensor_release(body_in[0]);
    keel_tensor_release(body_in[1]);
    body_in[0] = body_in[1] = NULL;
    if (s) goto done;
    cond = truthy(body_out[0]);
    keel_tensor_release(body_out[0]);
    for (int i = 0; i < N; i++) {
      keel_tensor_release(carried[i]);
      carried[i] = body_out[1 + i];
    }
    if (iters == cap) {
      cap = cap ? cap * 2 : 8;
      for (int k = 0; k < K; k++) {
        keel_tensor **g2 = realloc(scan[k], (size_t)cap * sizeof **scan);
        if (!g2) {
          s = keel_error(KEEL_OUT_OF_MEMORY, "out of memory running Loop");
          for (int j = k; j < K; j++) keel_tensor_release(body_out[1 + N + j]);
          goto done;
        }
        scan[k] = g2;
      }
    }
    for (int k = 0; k < K; k++) scan[k][iters] = body_out[1 + N + k];
    iters++;
  }
  for (int i = 0; i < N; i++) {
    out[i] = carried[i];
    carried[i] = NULL;
  }
  for (int k = 0; k < K && !s; k++) {
    keel_dtype dt = body->values[body->outputs[1 + N + k]].dtype;
    s = stack(scan[k], iters, 0, false, dt ? dt : KEEL_FLOAT32, cx->alloc, &out[N + k]);
  }
done:
  for (int i = 0; carried && i < N; i++) keel_tensor_release(carried[i]);
  for (int k = 0; scan && k < K; k++) {
    for (int64_t i = 0; i < iters; i++) keel_tensor_release(scan[k][i]);
    free(scan[k]);
  }
  free(scan);
  free(carried);
  free(body_in);
  free(body_out);
  return s;
}

static int64_t attr_at(const keel_node *n, const char *name, int i, int64_t dflt) {
  const int64_t *v;
  int c = keel_attr_ints(n, name, &v);
  return c > i ? v[i] : dflt;
}

static keel_status *run_scan(interp_ctx *cx, const keel_node *n, keel_tensor **in, int n_formal, const scope *sc,
                             keel_tensor **out) {
  const keel_graph *body = graph_attr(n, "body");
  if (!body) return keel_error(KEEL_INVALID_MODEL, "Scan has no body graph");
  int M = (int)keel_attr_int(n, "num_scan_inputs", -1);
  int N = n_formal - M;
  int K = body->n_outputs - N;
  if (M < 1 || N < 0 || K < 0 || body->n_inputs != N + M || n->n_outputs != N + K)
    return keel_error(KEEL_INVALID_MODEL, "Scan's num_scan_inputs=%d does not fit its %d inputs and body", M, n_formal);
  int64_t T = -1;
  int axes[64];
  if (M > 64) return keel_error(KEEL_UNSUPPORTED, "Scan with more than 64 scan inputs");
  for (int j = 0; j < M; j++) {
    keel_tensor *x = in[N + j];
    if (!x) return keel_error(KEEL_INVALID_MODEL, "Scan input %d is missing", N + j);
    int ax;
    if (!keel_axis_normalize(attr_at(n, "scan_input_axes", j, 0), x->ndim, &ax))
      return keel_error(KEEL_INVALID_MODEL, "Scan input axis out of range");
    axes[j] = ax;
    if (T >= 0 && x->dims[ax] != T) return keel_error(KEEL_SHAPE_MISMATCH, "Scan inputs have different lengths");
    T = x->dims[ax];
  }
  keel_status *s = NULL;
  keel_tensor **state = calloc((size_t)N + 1, sizeof *state);
  keel_tensor **body_in = calloc((size_t)(N + M) + 1, sizeof *body_in);
  keel_tensor **body_out = calloc((size_t)body->n_outputs + 1, sizeof *body_out);
  keel_tensor **parts = calloc((size_t)K * (size_t)(T > 0 ? T : 1) + 1, sizeof *parts);
  int64_t done_iters = 0;
  if (!state || !body_in || !body_out || !parts) {
    s = keel_error(KEEL_OUT_OF_MEMORY, "out of memory running Scan");
    goto done;
  }
  for (int i = 0; i < N; i++) state[i] = keel_tensor_retain(in[i]);
  for (int64_t t = 0; t < T; t++) {
    for (int i = 0; i < N; i++) body_in[i] = state[i];
    for (int j = 0; j < M && !s; j++) {
      int64_t pos = attr_at(n, "scan_input_directions", j, 0) ? T - 1 - t : t;
      s = take_slice(in[N + j], axes[j], pos, cx->alloc, &body_in[N + j]);
    }
    if (!s) s = run_graph(cx, body, body_in, N + M, sc, body_out);
    for (int j = 0; j < M; j++) {
      keel_tensor_release(body_in[N + j]);
      body_in[N + j] = NULL;
    }
    if (s) goto done;
    for (int i = 0; i < N; i++) {
      keel_tensor_release(state[i]);
      state[i] = body_out[i];
    }
    for (int k = 0; k < K; k++) parts[(size_t)k * (size_t)T + (size_t)t] = body_out[N + k];
    done_iters++;
  }
  for (int i = 0; i < N; i++) {
    out[i] = state[i];
    state[i] = NULL;
  }
  for (int k = 0; k < K && !s; k++) {
    int rank = parts[0] ? parts[(size_t)k * (size_t)T]->ndim + 1 : 1;
    int ax;
    if (!keel_axis_normalize(attr_at(n, "scan_output_axes", k, 0), rank, &ax)) {
      s = keel_error(KEEL_INVALID_MODEL, "Scan output axis out of range");
      break;
    }
    keel_dtype dt = body->values[body->outputs[N + k]].dtype;
    s = stack(&parts[(size_t)k * (size_t)T], T, ax, attr_at(n, "scan_output_directions", k, 0) != 0,
              dt ? dt : KEEL_FLOAT32, cx->alloc, &out[N + k]);
  }
done:
  for (int i = 0; state && i < N; i++) keel_tensor_release(state[i]);
  for (int64_t t = 0; parts && t < done_iters; t++)
    for (int k = 0; k < K; k++) keel_tensor_release(parts[(size_t)k * (size_t)T + (size_t)t]);
  free(state);
  free(body_in);
  free(body_out);
  free(parts);
  return s;
}

static keel_status *run_node(interp_ctx *cx, const keel_node *n, keel_tensor **env, const scope *sc) {
  int n_formal = n->n_inputs - n->n_implicit_inputs;
  keel_tensor *in_stack[16], *out_stack[16];
  keel_view vin_stack[16], vout_stack[16];
  bool big = n->n_inputs > 16 || n->n_outputs > 16;
  keel_tensor **in = big ? calloc((size_t)n->n_inputs + 1, sizeof *in) : in_stack;
  keel_tensor **out = big ? calloc((size_t)n->n_outputs + 1, sizeof *out) : out_stack;
  keel_view *vin = big ? calloc((size_t)n->n_inputs + 1, sizeof *vin) : vin_stack;
  keel_view *vout = big ? calloc((size_t)n->n_outputs + 1, sizeof *vout) : vout_stack;
  void *ws = NULL;
  keel_status *s = NULL;
  if (!in || !out || !vin || !vout) {
    s = keel_error(KEEL_OUT_OF_MEMORY, "out of memory");
    goto done;
  }
  for (int k = 0; k < n->n_outputs; k++) out[k] = NULL;
  for (int k = 0; k < n->n_inputs; k++) {
    in[k] = n->inputs[k] >= 0 ? env[n->inputs[k]] : NULL;
    if (n->inputs[k] >= 0 && !in[k]) {
      s = keel_error(KEEL_INTERNAL, "input %d of %s was not computed", k, keel_node_desc(n));
      goto done;
    }
    to_view(in[k], &vin[k]);
  }
  const char *op = n->op_type;
  if (n->domain[0] == 0 && !strcmp(op, "If")) s = run_if(cx, n, in, sc, out);
  else if (n->domain[0] == 0 && !strcmp(op, "Loop")) s = run_loop(cx, n, in, n_formal, sc, out);
  else if (n->domain[0] == 0 && !strcmp(op, "Scan")) s = run_scan(cx, n, in, n_formal, sc, out);
  else if (!n->op->run) s = keel_error(KEEL_UNSUPPORTED, "no kernel");
  else {
    memset(vout, 0, sizeof *vout * (size_t)n->n_outputs);
    s = n->op->infer(n, vin, n_formal, vout, n->n_outputs);
    for (int k = 0; !s && k < n->n_outputs; k++) {
      if (n->outputs[k] < 0 && vout[k].dtype == KEEL_DTYPE_UNDEFINED) continue;
      s = keel_tensor_create(vout[k].dtype, vout[k].dims, vout[k].ndim, cx->alloc, &out[k]);
      if (!s) vout[k].data = out[k]->data;
    }
    if (!s) {
      size_t wsb = n->op->workspace ? n->op->workspace(n, vin, n_formal, vout, n->n_outputs) : 0;
      ws = wsb ? aligned_alloc(64, (wsb + 63) & ~(size_t)63) : NULL;
      if (wsb && !ws) s = keel_error(KEEL_OUT_OF_MEMORY, "out of memory for a %zu-byte workspace", wsb);
      keel_exec ex = {ws, wsb, 1};
      if (!s) s = n->op->run(n, vin, n_formal, vout, n->n_outputs, &ex);
    }
  }
  if (!s)
    for (int k = 0; k < n->n_outputs; k++) {
      if (n->outputs[k] >= 0) {
        env[n->outputs[k]] = out[k];
        out[k] = NULL;
      }
    }
done:
  if (s) s = keel_error_prefix(s, "%s: ", keel_node_desc(n));
  for (int k = 0; out && k < n->n_outputs; k++) keel_tensor_release(out[k]);
  free(ws);
  if (big) {
    free(in);
    free(out);
    free(vin);
    free(vout);
  }
  return s;
}

static keel_status *run_graph(interp_ctx *cx, const keel_graph *g, keel_tensor *const *inputs, int n_in,
                              const scope *parent, keel_tensor **outputs) {
  if (cx->depth >= MAX_DEPTH) return keel_error(KEEL_UNSUPPORTED, "subgraphs nest more than %d deep at run time", MAX_DEPTH);
  if (n_in != g->n_inputs)
    return keel_error(KEEL_INVALID_ARGUMENT, "graph '%s' has %d inputs, got %d", g->name ? g->name : "", g->n_inputs, n_in);
  keel_tensor **env = calloc((size_t)g->n_values + 1, sizeof *env);
  int *uses = calloc((size_t)g->n_values + 1, sizeof *uses);
  keel_status *s = NULL;
  if (!env || !uses) {
    free(env);
    free(uses);
    return keel_error(KEEL_OUT_OF_MEMORY, "out of memory running a graph");
  }
  cx->depth++;
  scope sc = {g, env, parent};
  for (int v = 0; v < g->n_values; v++) {
    if (g->values[v].constant) env[v] = keel_tensor_retain(g->values[v].constant);
    else if (g->values[v].is_outer) env[v] = keel_tensor_retain(lookup_outer(parent, g->values[v].name));
  }
  for (int i = 0; i < n_in; i++) {
    keel_tensor_release(env[g->inputs[i]]);
    env[g->inputs[i]] = keel_tensor_retain(inputs[i]);
  }
  for (int i = 0; i < g->n_nodes; i++)
    for (int k = 0; k < g->nodes[i].n_inputs; k++)
      if (g->nodes[i].inputs[k] >= 0) uses[g->nodes[i].inputs[k]]++;
  for (int i = 0; i < g->n_nodes && !s; i++) {
    const keel_node *n = &g->nodes[i];
    if (n->dead) continue;
    s = run_node(cx, n, env, &sc);
    /* free what no later node reads (graph outputs stay) */
    for (int k = 0; !s && k < n->n_inputs; k++) {
      int v = n->inputs[k];
      if (v >= 0 && --uses[v] == 0 && !g->values[v].is_output) {
        keel_tensor_release(env[v]);
        env[v] = NULL;
      }
    }
  }
  for (int k = 0; !s && k < g->n_outputs; k++) {
    keel_tensor *t = env[g->outputs[k]];
    if (!t) s = keel_error(KEEL_INTERNAL, "graph output '%s' was not computed", g->values[g->outputs[k]].name);
  }
  if (!s)
    for (int k = 0; k < g->n_outputs; k++) outputs[k] = keel_tensor_retain(env[g->outputs[k]]);
  for (int v = 0; v < g->n_values; v++) keel_tensor_release(env[v]);
  free(env);
  free(uses);
  cx->depth--;
  return s;
}

keel_status *keel_interp_run(const keel_graph *g, keel_tensor *const *inputs, int n_in, keel_tensor **outputs,
                             keel_allocator *alloc) {
  interp_ctx cx = {alloc, 0};
  for (int k = 0; k < g->n_outputs; k++) outputs[k] = NULL;
  return run_graph(&cx, g, inputs, n_in, NULL, outputs);
}
