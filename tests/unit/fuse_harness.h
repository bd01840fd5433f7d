/* Shared by the fusion tests (test_fuse.c, test_attn.c): build small IR graphs by hand, run the engine-build
 * passes on them, and execute a graph node by node over the operator kernels (no planner), so a fused graph
 * can be compared with the unfused one on the same feeds. Include after test_main.h. */
#ifndef KEEL_TESTS_FUSE_HARNESS_H
#define KEEL_TESTS_FUSE_HARNESS_H
/* ---- graph building ---- */

static int val(keel_graph *g, const char *name) {
  int v = keel_graph_find_value(g, name);
  return v >= 0 ? v : keel_graph_add_value(g, name);
}

static void graph_input(keel_graph *g, const char *name) {
  int v = val(g, name);
  g->values[v].is_input = true;
  g->inputs = realloc(g->inputs, sizeof(int) * (size_t)(g->n_inputs + 1));
  g->inputs[g->n_inputs++] = v;
}

static void graph_output(keel_graph *g, const char *name) {
  int v = val(g, name);
  g->values[v].is_output = true;
  g->outputs = realloc(g->outputs, sizeof(int) * (size_t)(g->n_outputs + 1));
  g->outputs[g->n_outputs++] = v;
}

static uint32_t rng = 777;
static float frand(void) { return test_frand_lcg(&rng); }

/* A constant: float32 (data NULL: random) or int64 (i64). */
static void constant(keel_graph *g, const char *name, keel_dtype dt, const int64_t *dims, int ndim,
                     const float *data, const int64_t *i64) {
  keel_tensor *t = NULL;
  keel_status *s = keel_tensor_create(dt, dims, ndim, NULL, &t);
  CHECK(!s);
  int64_t cnt = keel_tensor_numel(t);
  for (int64_t i = 0; i < cnt; i++) {
    if (dt == KEEL_FLOAT32) ((float *)t->data)[i] = data ? data[i] : frand();
    else ((int64_t *)t->data)[i] = i64[i];
  }
  int v = val(g, name);
  g->values[v].constant = t;
  g->values[v].dtype = dt;
  g->values[v].ndim = ndim;
  if (ndim) memcpy(g->values[v].dims, dims, sizeof(int64_t) * (size_t)ndim);
}

static void scalar(keel_graph *g, const char *name, float x) {
  constant(g, name, KEEL_FLOAT32, NULL, 0, &x, NULL);
}

/* node(g, "Op", opset, "in1,in2", "out") ; inputs/outputs comma-separated value names ("" = omitted) */
static keel_node *node(keel_graph *g, const char *op, int opset, const char *ins, const char *outs) {
  char name[64];
  snprintf(name, sizeof name, "%s_%d", op, g->n_nodes);
  int k = keel_graph_add_node(g, name, op, "");
  keel_node *n = &g->nodes[k];
  n->opset = opset;
  const char *lists[2] = {ins, outs};
  for (int l = 0; l < 2; l++) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", lists[l]);
    int cnt = 0, ids[16];
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) ids[cnt++] = val(g, tok);
    if (l == 0) {
      keel_node_set_n_inputs(n, cnt);
      memcpy(n->inputs, ids, sizeof(int) * (size_t)cnt);
    } else {
      keel_node_set_n_outputs(n, cnt);
      memcpy(n->outputs, ids, sizeof(int) * (size_t)cnt);
    }
  }
  return n;
}

static void attr_ints(keel_node *n, const char *name, int cnt, const int64_t *v) {
  keel_attr *a = keel_node_add_attr(n, name);
  a->type = KEEL_ATTR_INTS;
  a->ints = malloc(sizeof(int64_t) * (size_t)cnt);
  memcpy(a->ints, v, sizeof(int64_t) * (size_t)cnt);
  a->n = cnt;
}

static void attr_int(keel_node *n, const char *name, int64_t v) {
  keel_attr *a = keel_node_add_attr(n, name);
  a->type = KEEL_ATTR_INT;
  a->i = v;
}

/* Run the engine-build passes (optimize: with folding and fusion, as the engine does). */
static void build(keel_graph *g, bool optimize) {
  CHECK_OK(keel_pass_resolve_ops(g));
  CHECK_OK(keel_graph_toposort(g));
  if (optimize) {
    CHECK_OK(keel_pass_fold_constants(g));
    CHECK_OK(keel_pass_fuse(g));
    CHECK_OK(keel_pass_remove_dead(g));
    CHECK_OK(keel_graph_toposort(g));
  }
}

static int count_op(const keel_graph *g, const char *op) {
  int c = 0;
  for (int i = 0; i < g->n_nodes; i++) c += !g->nodes[i].dead && !strcmp(g->nodes[i].op_type, op);
  return c;
}

static int live_nodes(const keel_graph *g) {
  int c = 0;
  for (int i = 0; i < g->n_nodes; i++) c += !g->nodes[i].dead;
  return c;
}

/* ---- a tiny executor: infer, allocate and run node by node ---- */

static void view_of(const keel_tensor *t, keel_view *v) {
  memset(v, 0, sizeof *v);
  if (!t) return;
  v->dtype = t->dtype;
  v->ndim = t->ndim;
  memcpy(v->dims, t->dims, sizeof(int64_t) * (size_t)t->ndim);
  v->data = t->data;
}

/* Time spent in the kernels' run functions (allocation excluded), summed by execute(). */
static double run_seconds = 0;
static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int exec_threads = 1;

/* Feeds: one tensor per graph input (in order). Returns the first output (caller releases) or NULL. */
static keel_tensor *execute(keel_graph *g, keel_tensor **feeds) {
  keel_tensor **vals = calloc((size_t)g->n_values, sizeof *vals);
  for (int i = 0; i < g->n_inputs; i++) vals[g->inputs[i]] = keel_tensor_retain(feeds[i]);
  keel_tensor *result = NULL;
  bool ok = true;
  for (int i = 0; i < g->n_nodes && ok; i++) {
    keel_node *n = &g->nodes[i];
    if (n->dead) continue;
    keel_view in[16], out[4];
    for (int k = 0; k < n->n_inputs; k++) {
      int v = n->inputs[k];
      view_of(v < 0 ? NULL : g->values[v].constant ? g->values[v].constant : vals[v], &in[k]);
    }
    memset(out, 0, sizeof out);
    keel_status *s = n->op->infer(n, in, n->n_inputs, out, n->n_outputs);
    for (int k = 0; k < n->n_outputs && !s; k++) {
      if (n->outputs[k] < 0) continue;
      s = keel_tensor_create(out[k].dtype, out[k].dims, out[k].ndim, NULL, &vals[n->outputs[k]]);
      if (!s) out[k].data = vals[n->outputs[k]]->data;
    }
    size_t ws = !s && n->op->workspace ? n->op->workspace(n, in, n->n_inputs, out, n->n_outputs) : 0;
    void *wsp = ws ? aligned_alloc(64, (ws + 63) & ~(size_t)63) : NULL;
    keel_exec ex = {wsp ? wsp : keel_empty_workspace, ws, exec_threads};
    const double t0 = now_s();
    if (!s) s = n->op->run(n, in, n->n_inputs, out, n->n_outputs, &ex);
    run_seconds += now_s() - t0;
    free(wsp);
    if (s) {
      fprintf(stderr, "[%s] %s: %s\n", test_current, keel_node_desc(n), keel_status_message(s));
      keel_status_free(s);
      test_failures++;
      ok = false;
    }
  }
  if (ok) result = keel_tensor_retain(vals[g->outputs[0]]);
  for (int v = 0; v < g->n_values; v++) keel_tensor_release(vals[v]);
  free(vals);
  return result;
}

static keel_tensor *random_input(const int64_t *dims, int ndim, float scale) {
  keel_tensor *t = NULL;
  CHECK_OK(keel_tensor_create(KEEL_FLOAT32, dims, ndim, NULL, &t));
  for (int64_t i = 0; i < keel_tensor_numel(t); i++) ((float *)t->data)[i] = frand() * scale;
  return t;
}

/* Max abs difference between the fused and unfused graphs made by `make`, on the same feeds. */
typedef void (*make_fn)(keel_graph *g, int variant);
static float compare(make_fn make, int variant, keel_tensor **feeds, int *nodes_before, int *nodes_after,
                     keel_graph **fused_out) {
  keel_graph *a = keel_graph_create(), *b = keel_graph_create();
  uint32_t seed = rng;
  make(a, variant);
  rng = seed; /* the same random constants in both */
  make(b, variant);
  build(a, false);
  build(b, true);
  *nodes_before = live_nodes(a);
  *nodes_after = live_nodes(b);
  keel_tensor *ya = execute(a, feeds), *yb = execute(b, feeds);
  float err = INFINITY;
  if (ya && yb && ya->ndim == yb->ndim && keel_tensor_numel(ya) == keel_tensor_numel(yb) &&
      !memcmp(ya->dims, yb->dims, sizeof(int64_t) * (size_t)ya->ndim)) {
    err = 0;
    for (int64_t i = 0; i < keel_tensor_numel(ya); i++) {
      float d = fabsf(((float *)ya->data)[i] - ((float *)yb->data)[i]);
      if (!(d <= err)) err = isnan(d) ? INFINITY : d;
    }
  }
  keel_tensor_release(ya);
  keel_tensor_release(yb);
  keel_graph_destroy(a);
  if (fused_out) *fused_out = b;
  else keel_graph_destroy(b);
  return err;
}

#endif
