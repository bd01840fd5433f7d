/* Plans on the device: constants uploaded once per plan, steps launched on the engine stream, and a small
 * cache of CUDA graphs keyed by the exact device pointers a call uses. */
#ifdef KEEL_HAVE_CUDA
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_internal.h"

struct keel_cuda_plan {
  const keel_plan *plan;
  const keel_cuda_op **ops; /* per step */
  size_t *const_off;        /* per value: offset in consts, or SIZE_MAX */
  void *consts;
  size_t consts_bytes;
  size_t workspace_bytes;
  keel_view *views;  /* scratch: device pointers (the module serializes enqueues) */
  keel_view *hviews; /* host view of constants (data NULL for everything else) */
};

struct graph_entry {
  keel_cuda_plan *cp;
  void **key; /* arena, workspace, inputs..., outputs... */
  int n_key;
  cudaGraphExec_t exec;
  bool failed; /* capture did not work for this plan: run it eagerly */
  uint64_t last_used;
};

#define MAX_GRAPHS 8

/* ---- support check --------------------------------------------------------------------------------------- */

keel_status *keel_cuda_check_graph(const keel_graph *g) {
  char missing[512] = "";
  size_t len = 0;
  int n_missing = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    const keel_node *n = &g->nodes[i];
    if (n->dead || keel_cuda_op_find(n)) continue;
    /* shape arithmetic the planner folds into constants never runs as a step; if it does (its input is
     * only known at run time), plan creation names it */
    static const char *folded[] = {"Shape", "Size", "Constant", "ConstantOfShape", "Range", "EyeLike"};
    bool fold = false;
    for (size_t k = 0; !n->domain[0] && k < sizeof folded / sizeof folded[0]; k++)
      if (!strcmp(n->op_type, folded[k])) fold = true;
    if (fold) continue;
    char item[96];
    snprintf(item, sizeof item, "%s%s%s", n->domain[0] ? n->domain : "", n->domain[0] ? "." : "", n->op_type);
    if (strstr(missing, item)) continue; /* each op type once */
    n_missing++;
    len += (size_t)snprintf(missing + len, len < sizeof missing ? sizeof missing - len : 0, "%s%s (node '%s')",
                            len ? ", " : "", item, n->name);
    if (len >= sizeof missing) len = sizeof missing - 1;
  }
  if (!n_missing) return NULL;
  return keel_error(KEEL_UNSUPPORTED,
                    "the CUDA backend has no kernel for %d operator%s of this model: %s (run it on the CPU, or with "
                    "engine optimization off if the operator is a keel fusion)",
                    n_missing, n_missing == 1 ? "" : "s", missing);
}

/* ---- plans ----------------------------------------------------------------------------------------------- */

static void *value_dev(const keel_cuda_plan *cp, int v, void *arena, void *const *in, void *const *out) {
  const keel_plan_value *pv = &cp->plan->values[v];
  switch (pv->loc) {
    case KEEL_LOC_CONST: return cp->const_off[v] == SIZE_MAX ? NULL : (char *)cp->consts + cp->const_off[v];
    case KEEL_LOC_INPUT: return in[pv->index];
    case KEEL_LOC_OUTPUT: return out[pv->index];
    case KEEL_LOC_ARENA: return (char *)arena + pv->offset;
    default: return NULL;
  }
}

void keel_cuda_forget_plan(keel_cuda_ctx *c, keel_cuda_plan *cp);

void keel_cuda_plan_destroy(keel_cuda_ctx *c, keel_cuda_plan *cp) {
  if (!cp) return;
  keel_cuda_forget_plan(c, cp);
  if (cp->consts) {
    /* work queued earlier may still read the constants */
    if (cudaStreamSynchronize(c->stream) != cudaSuccess) (void)cudaGetLastError();
    keel_cuda_cache_free(c->scratch, cp->consts, cp->consts_bytes);
  }
  free(cp->ops);
  free(cp->const_off);
  free(cp->views);
  free(cp->hviews);
  free(cp);
}

keel_status *keel_cuda_plan_create(keel_cuda_ctx *c, const keel_plan *p, keel_cuda_plan **out) {
  *out = NULL;
  keel_cuda_plan *cp = calloc(1, sizeof *cp);
  if (!cp) return keel_error(KEEL_OUT_OF_MEMORY, "out of memory preparing a CUDA plan");
  cp->plan = p;
  cp->ops = calloc((size_t)p->n_steps + 1, sizeof *cp->ops);
  cp->const_off = malloc(sizeof *cp->const_off * ((size_t)p->n_values + 1));
  cp->views = calloc((size_t)p->n_views + 1, sizeof *cp->views);
  cp->hviews = calloc((size_t)p->n_views + 1, sizeof *cp->hviews);
  keel_status *s = NULL;
  if (!cp->ops || !cp->const_off || !cp->views || !cp->hviews) {
    s = keel_error(KEEL_OUT_OF_MEMORY, "out of memory preparing a CUDA plan");
    goto fail;
  }
  for (int v = 0; v < p->n_values; v++) cp->const_off[v] = SIZE_MAX;
  /* constants the steps read or the final copies use, packed 256-byte aligned */
  size_t total = 0;
#define USE_CONST(v)                                                                  \
  do {                                                                                \
    int v_ = (v);                                                                     \
    if (v_ >= 0 && p->values[v_].loc == KEEL_LOC_CONST && cp->const_off[v_] == SIZE_MAX) { \
      cp->const_off[v_] = total;                                                      \
      total += (p->values[v_].nbytes + 255) & ~(size_t)255;                            \
    }                                                                                 \
  } while (0)
  for (int i = 0; i < p->n_views; i++) USE_CONST(p->view_values[i]);
  for (int k = 0; k < p->n_copies; k++) USE_CONST(p->copies[k].value);
#undef USE_CONST
  memcpy(cp->hviews, p->views, sizeof(keel_view) * (size_t)p->n_views);
  for (int i = 0; i < p->n_views; i++) {
    int v = p->view_values[i];
    cp->hviews[i].data = v >= 0 && p->values[v].loc == KEEL_LOC_CONST ? p->values[v].const_data : NULL;
  }
  for (int st = 0; st < p->n_steps; st++) {
    const keel_node *n = p->steps[st].node;
    const keel_cuda_op *op = keel_cuda_op_find(n);
    if (!op) {
      s = keel_error(KEEL_UNSUPPORTED, "%s: the CUDA backend has no kernel for %s%s%s", keel_node_desc(n),
                     n->domain[0] ? n->domain : "", n->domain[0] ? "." : "", n->op_type);
      goto fail;
    }
    cp->ops[st] = op;
    keel_view *in = &cp->hviews[p->steps[st].first_view];
    if (op->check) {
      s = op->check(n, in, n->n_inputs, in + n->n_inputs, n->n_outputs);
      if (s) {
        s = keel_error_prefix(s, "%s on CUDA: ", keel_node_desc(n));
        goto fail;
      }
    }
    if (op->workspace) {
      size_t w = op->workspace(n, in, n->n_inputs, in + n->n_inputs, n->n_outputs);
      if (w > cp->workspace_bytes) cp->workspace_bytes = w;
    }
  }
  if (total) {
    cp->consts_bytes = total;
    cp->consts = keel_cuda_cache_alloc(c->scratch, total);
    if (!cp->consts) {
      s = keel_error(KEEL_OUT_OF_MEMORY, "CUDA out of memory: model constants on device %d, %zu bytes", c->device, total);
      goto fail;
    }
    KEEL_CUDA_CHECK(cudaSetDevice(c->device), c->device, -1);
    for (int v = 0; v < p->n_values; v++) {
      if (cp->const_off[v] == SIZE_MAX || !p->values[v].nbytes) continue;
      s = keel_cuda_error((int)cudaMemcpyAsync((char *)cp->consts + cp->const_off[v], p->values[v].const_data,
                                               p->values[v].nbytes, cudaMemcpyHostToDevice, c->stream),
                          "cudaMemcpyAsync (model constant)", c->device, (long long)p->values[v].nbytes);
      if (s) goto fail;
    }
    /* pageable sources: the copies are staged before returning, but wait anyway so failures show here */
    s = keel_cuda_sync(c);
    if (s) goto fail;
  }
  *out = cp;
  return NULL;
fail:
  keel_cuda_plan_destroy(c, cp);
  return s;
}

size_t keel_cuda_plan_workspace(const keel_cuda_plan *cp) { return cp->workspace_bytes; }

static keel_status *enqueue(keel_cuda_ctx *c, keel_cuda_plan *cp, void *arena, void *workspace, void *const *inputs,
                            void *const *outputs) {
  const keel_plan *p = cp->plan;
  memcpy(cp->views, p->views, sizeof(keel_view) * (size_t)p->n_views);
  for (int i = 0; i < p->n_views; i++) {
    int v = p->view_values[i];
    if (v >= 0) cp->views[i].data = value_dev(cp, v, arena, inputs, outputs);
  }
  keel_cuda_exec ex = {c, c->stream, workspace, cp->workspace_bytes, NULL};
  for (int st = 0; st < p->n_steps; st++) {
    const keel_node *n = p->steps[st].node;
    int fv = p->steps[st].first_view;
    keel_view *in = &cp->views[fv];
    ex.host = &cp->hviews[fv];
    keel_status *s = cp->ops[st]->run(n, in, n->n_inputs, in + n->n_inputs, n->n_outputs, &ex);
    if (s) return keel_error_prefix(s, "%s on CUDA: ", keel_node_desc(n));
  }
  for (int k = 0; k < p->n_copies; k++) {
    int v = p->copies[k].value;
    void *src = value_dev(cp, v, arena, inputs, outputs);
    if (src && p->values[v].nbytes)
      KEEL_TRY(keel_cuda_copy_async(c, outputs[p->copies[k].output], src, p->values[v].nbytes, "graph output copy"));
  }
  pthread_mutex_lock(&c->mu);
  c->st.kernel_launches += (uint64_t)p->n_steps;
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

/* ---- CUDA graphs ------------------------------------------------------------------------------------------ */

static void drop_entry(graph_entry *g) {
  if (g->exec) cudaGraphExecDestroy(g->exec);
  free(g->key);
  memset(g, 0, sizeof *g);
}

void keel_cuda_forget_plan(keel_cuda_ctx *c, keel_cuda_plan *cp) {
  pthread_mutex_lock(&c->mu);
  for (int i = 0; i < c->n_graphs; i++)
    if (c->graphs[i].cp == cp) drop_entry(&c->graphs[i]);
  pthread_mutex_unlock(&c->mu);
}

void keel_cuda_graphs_clear(keel_cuda_ctx *c) {
  for (int i = 0; i < c->n_graphs; i++) drop_entry(&c->graphs[i]);
  free(c->graphs);
  c->graphs = NULL;
  c->n_graphs = 0;
}

/* Capture one execution into a graph and instantiate it; NULL exec (and a status only for real errors in
 * the steps themselves) when capture is not possible. */
static keel_status *capture(keel_cuda_ctx *c, keel_cuda_plan *cp, void *arena, void *ws, void *const *in,
                            void *const *out, cudaGraphExec_t *exec) {
  *exec = NULL;
  KEEL_CUDA_CHECK(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal), c->device, -1);
  keel_status *s = enqueue(c, cp, arena, ws, in, out);
  cudaGraph_t graph = NULL;
  cudaError_t e = cudaStreamEndCapture(c->stream, &graph);
  if (e != cudaSuccess) (void)cudaGetLastError();
  if (s || e != cudaSuccess || !graph) {
    if (graph) cudaGraphDestroy(graph);
    keel_status_free(s); /* the eager run that follows reports a real error again, outside capture */
    return NULL;
  }
  e = cudaGraphInstantiate(exec, graph, 0);
  cudaGraphDestroy(graph);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    *exec = NULL;
  }
  return NULL;
}

keel_status *keel_cuda_plan_run(keel_cuda_ctx *c, keel_cuda_plan *cp, void *arena, void *workspace,
                                void *const *inputs, void *const *outputs, bool use_graphs) {
  KEEL_CUDA_CHECK(cudaSetDevice(c->device), c->device, -1);
  if (!use_graphs) {
    pthread_mutex_lock(&c->mu);
    c->st.eager_runs++;
    pthread_mutex_unlock(&c->mu);
    return enqueue(c, cp, arena, workspace, inputs, outputs);
  }
  int n_key = 2 + cp->plan->n_inputs + cp->plan->n_outputs;
  void *key[2 + 2 * 64];
  void **k = n_key <= (int)(sizeof key / sizeof key[0]) ? key : malloc(sizeof(void *) * (size_t)n_key);
  if (!k) return keel_error(KEEL_OUT_OF_MEMORY, "out of memory keying a CUDA graph");
  k[0] = arena;
  k[1] = workspace;
  for (int i = 0; i < cp->plan->n_inputs; i++) k[2 + i] = inputs[i];
  for (int i = 0; i < cp->plan->n_outputs; i++) k[2 + cp->plan->n_inputs + i] = outputs[i];
  keel_status *s = NULL;
  pthread_mutex_lock(&c->mu);
  if (!c->graphs) {
    c->graphs = calloc(MAX_GRAPHS, sizeof *c->graphs);
    c->n_graphs = c->graphs ? MAX_GRAPHS : 0;
  }
  graph_entry *g = NULL, *victim = NULL;
  for (int i = 0; i < c->n_graphs; i++) {
    graph_entry *e = &c->graphs[i];
    if (e->cp == cp && e->n_key == n_key && !memcmp(e->key, k, sizeof(void *) * (size_t)n_key)) g = e;
    if (!victim || !e->cp || (victim->cp && e->last_used < victim->last_used)) victim = e;
  }
  bool eager = true;
  if (g) {
    g->last_used = ++c->clock;
    if (g->exec) {
      c->st.graph_replays++;
      cudaGraphExec_t ex = g->exec;
      pthread_mutex_unlock(&c->mu);
      s = keel_cuda_error((int)cudaGraphLaunch(ex, c->stream), "cudaGraphLaunch", c->device, -1);
      eager = false;
    } else if (!g->failed) {
      /* second call with the same pointers: the shapes and buffers are stable, capture */
      pthread_mutex_unlock(&c->mu);
      cudaGraphExec_t ex = NULL;
      s = capture(c, cp, arena, workspace, inputs, outputs, &ex);
      pthread_mutex_lock(&c->mu);
      if (!s && ex) {
        g->exec = ex;
        c->st.graph_captures++;
        c->st.graph_replays++;
        pthread_mutex_unlock(&c->mu);
        s = keel_cuda_error((int)cudaGraphLaunch(ex, c->stream), "cudaGraphLaunch", c->device, -1);
        eager = false;
      } else {
        g->failed = true;
        c->st.graph_failures++;
        pthread_mutex_unlock(&c->mu);
      }
    } else {
      pthread_mutex_unlock(&c->mu);
    }
  } else {
    if (victim) { /* first sight of these pointers: remember them, run eagerly */
      drop_entry(victim);
      victim->key = malloc(sizeof(void *) * (size_t)n_key);
      if (victim->key) {
        memcpy(victim->key, k, sizeof(void *) * (size_t)n_key);
        victim->n_key = n_key;
        victim->cp = cp;
        victim->last_used = ++c->clock;
      }
    }
    pthread_mutex_unlock(&c->mu);
  }
  if (k != key) free(k);
  if (s) return s;
  if (eager) {
    pthread_mutex_lock(&c->mu);
    c->st.eager_runs++;
    pthread_mutex_unlock(&c->mu);
    return enqueue(c, cp, arena, workspace, inputs, outputs);
  }
  return NULL;
}
#endif
