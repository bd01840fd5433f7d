/* Engine: load an ONNX model, optimize it once, and run it (simple synchronous path). */
#define _GNU_SOURCE /* strdup, dirname */
#include <cblas.h>
#include <libgen.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <keel/keel.h>

#include "core/error.h"
#include "core/tensor_internal.h"
#include "graph/passes.h"
#include "onnx/onnx_import.h"
#include "ops/op.h"
#include "runtime/engine_internal.h"
#include "runtime/interp.h"

const char *keel_version(void) { return KEEL_VERSION_STRING; }
const char *keel_backends(void) { return "cpu"; }

void keel_engine_options_init(keel_engine_options *opt) {
  memset(opt, 0, sizeof *opt);
  opt->optimize = 1;
  opt->max_model_bytes = (uint64_t)4 << 30;
  opt->max_tensor_elements = (uint64_t)1 << 34;
  opt->max_nodes = (uint64_t)1 << 20;
  opt->max_graph_depth = 16;
}

/* OpenBLAS's threaded GEMM driver mallocs a job array on every call and spawns work on its own pool, which
 * fights keel's threads and breaks "zero allocations per call". keel decides threading itself, so it runs
 * OpenBLAS single-threaded unless the user asked otherwise through OPENBLAS_NUM_THREADS. */
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static void configure_blas(void) {
  if (!getenv("OPENBLAS_NUM_THREADS")) openblas_set_num_threads(1);
}

static keel_status *build(keel_graph *g, const keel_engine_options *opt) {
  pthread_once(&blas_once, configure_blas);
  KEEL_TRY(keel_pass_resolve_ops(g));
  KEEL_TRY(keel_pass_prepare_subgraphs(g));
  KEEL_TRY(keel_graph_toposort(g));
  if (opt->optimize) {
    KEEL_TRY(keel_pass_fold_constants(g));
    KEEL_TRY(keel_pass_fuse(g));
    KEEL_TRY(keel_pass_remove_dead(g));
    KEEL_TRY(keel_graph_toposort(g));
  }
  return NULL;
}

/* Kernel state from constant inputs (packed weights), once per node of the top-level graph. */
static keel_status *prepare_nodes(keel_graph *g) {
  for (int i = 0; i < g->n_nodes; i++) {
    keel_node *n = &g->nodes[i];
    if (n->dead || !n->op) continue;
    keel_prepare_fn fn = n->op->prepare ? n->op->prepare : keel_nn_prepare;
    keel_status *s = fn(n, g);
    if (s) return keel_error_prefix(s, "%s: ", keel_node_desc(n));
  }
  return NULL;
}

static void unprepare_nodes(keel_graph *g) {
  for (int i = 0; i < g->n_nodes; i++) {
    keel_node *n = &g->nodes[i];
    if (n->prepared && n->prepared_free) n->prepared_free(n->prepared);
    n->prepared = NULL;
    n->prepared_free = NULL;
  }
}

keel_status *keel_engine_load_memory(const void *data, size_t size, const char *base_dir,
                                     const keel_engine_options *opt, keel_engine **out) {
  if (!out) return keel_error(KEEL_INVALID_ARGUMENT, "keel_engine_load: out is NULL");
  *out = NULL;
  if (!data && size) return keel_error(KEEL_INVALID_ARGUMENT, "keel_engine_load: data is NULL");
  keel_engine_options o;
  keel_engine_options_init(&o);
  if (opt) {
    o = *opt;
    if (!o.max_model_bytes) o.max_model_bytes = (uint64_t)4 << 30;
    if (!o.max_tensor_elements) o.max_tensor_elements = (uint64_t)1 << 34;
    if (!o.max_nodes) o.max_nodes = (uint64_t)1 << 20;
    if (o.max_graph_depth <= 0) o.max_graph_depth = 16;
  }
  keel_graph *g = NULL;
  KEEL_TRY(keel_onnx_import(data, size, base_dir, &o, &g));
  int loaded = g->n_nodes;
  g->max_tensor_elements = o.max_tensor_elements; /* folding and planning respect it */
  keel_status *s = build(g, &o);
  if (!s) s = prepare_nodes(g);
  if (s) {
    unprepare_nodes(g);
    keel_graph_destroy(g);
    return s;
  }
  keel_engine *e = calloc(1, sizeof *e);
  if (!e) {
    unprepare_nodes(g);
    keel_graph_destroy(g);
    return keel_error(KEEL_OUT_OF_MEMORY, "out of memory creating an engine");
  }
  atomic_init(&e->refcount, 1);
  atomic_init(&e->value_input_mask, 0);
  /* control flow, sequence operators, or sequence/optional graph I/O: only the interpreter runs them */
  bool control = false;
  for (int i = 0; i < g->n_nodes; i++) control |= g->nodes[i].op->run == NULL;
  for (int i = 0; i < g->n_inputs; i++) control |= g->values[g->inputs[i]].kind != KEEL_VALUE_TENSOR;
  for (int i = 0; i < g->n_outputs; i++) control |= g->values[g->outputs[i]].kind != KEEL_VALUE_TENSOR;
  atomic_init(&e->interp_only, control);
  e->graph = g;
  e->options = o;
  e->n_nodes_loaded = loaded;
  *out = e;
  return NULL;
}

keel_status *keel_engine_load_file(const char *path, const keel_engine_options *opt, keel_engine **out) {
  if (!out) return keel_error(KEEL_INVALID_ARGUMENT, "keel_engine_load_file: out is NULL");
  *out = NULL;
  if (!path) return keel_error(KEEL_INVALID_ARGUMENT, "keel_engine_load_file: path is NULL");
  uint64_t max = opt && opt->max_model_bytes ? opt->max_model_bytes : (uint64_t)4 << 30;
  void *data;
  size_t size;
  KEEL_TRY(keel_read_file(path, (size_t)max, &data, &size));
  char *copy = strdup(path);
  if (!copy) {
    free(data);
    return keel_error(KEEL_OUT_OF_MEMORY, "out of memory");
  }
  keel_status *s = keel_engine_load_memory(data, size, dirname(copy), opt, out);
  free(copy);
  free(data);
  if (s) s = keel_error_prefix(s, "%s: ", path);
  return s;
}

keel_engine *keel_engine_retain(keel_engine *e) {
  if (e) atomic_fetch_add(&e->refcount, 1);
  return e;
}

void keel_engine_release(keel_engine *e) {
  if (!e || atomic_fetch_sub(&e->refcount, 1) != 1) return;
  unprepare_nodes(e->graph);
  keel_graph_destroy(e->graph);
  free(e);
}

size_t keel_engine_input_count(const keel_engine *e) { return e ? (size_t)e->graph->n_inputs : 0; }
size_t keel_engine_output_count(const keel_engine *e) { return e ? (size_t)e->graph->n_outputs : 0; }

static void fill_info(const keel_value *v, keel_io_info *out) {
  memset(out, 0, sizeof *out);
  out->name = v->name;
  out->dtype = v->dtype;
  out->ndim = v->ndim;
  for (int d = 0; d < v->ndim && d < KEEL_MAX_DIMS; d++) {
    out->dims[d] = v->dims[d];
    out->dim_params[d] = v->dim_params[d];
  }
}

keel_status *keel_engine_input_info(const keel_engine *e, size_t i, keel_io_info *out) {
  if (!e || !out || i >= (size_t)e->graph->n_inputs)
    return keel_error(KEEL_INVALID_ARGUMENT, "input index %zu out of range (the model has %d inputs)", i,
                      e ? e->graph->n_inputs : 0);
  fill_info(&e->graph->values[e->graph->inputs[i]], out);
  return NULL;
}

keel_status *keel_engine_output_info(const keel_engine *e, size_t i, keel_io_info *out) {
  if (!e || !out || i >= (size_t)e->graph->n_outputs)
    return keel_error(KEEL_INVALID_ARGUMENT, "output index %zu out of range (the model has %d outputs)", i,
                      e ? e->graph->n_outputs : 0);
  fill_info(&e->graph->values[e->graph->outputs[i]], out);
  return NULL;
}

int64_t keel_engine_param_count(const keel_engine *e) {
  int64_t n = 0;
  for (int v = 0; v < e->graph->n_values; v++)
    if (e->graph->values[v].constant) n += keel_tensor_numel(e->graph->values[v].constant);
  return n;
}

keel_status *keel_engine_plan(keel_engine *e, const keel_view *inputs, int n_inputs, keel_plan **out,
                              bool *use_interp) {
  *out = NULL;
  if (use_interp) *use_interp = false;
  if (atomic_load(&e->interp_only)) {
    KEEL_TRY(keel_check_inputs(e->graph, inputs, n_inputs));
    if (use_interp) {
      *use_interp = true;
      return NULL;
    }
    return keel_error(KEEL_UNSUPPORTED, "the model needs the interpreter (control flow or data-dependent shapes): it has no static plan");
  }
  uint64_t mask = atomic_load(&e->value_input_mask);
  bool needs = false;
  keel_status *s = keel_plan_create(e->graph, inputs, n_inputs, mask, &needs, out);
  /* Some shape depends on an input's value. Treat small integer inputs as shape-feeding and retry; if that
   * is not enough, every small input. The engine remembers the mask, so this happens once per engine. */
  for (int pass = 0; s && needs && pass < 2; pass++) {
    uint64_t wider = mask;
    for (int i = 0; i < n_inputs && i < 64; i++) {
      int64_t numel = 1;
      for (int d = 0; d < inputs[i].ndim; d++) numel *= inputs[i].dims[d];
      keel_dtype t = inputs[i].dtype;
      bool is_float = t == KEEL_FLOAT32 || t == KEEL_FLOAT64 || t == KEEL_FLOAT16 || t == KEEL_BFLOAT16;
      if (numel <= 64 && (pass == 1 || !is_float)) wider |= (uint64_t)1 << i;
    }
    if (wider == mask) continue;
    keel_status_free(s);
    needs = false;
    s = keel_plan_create(e->graph, inputs, n_inputs, wider, &needs, out);
    if (!s) atomic_fetch_or(&e->value_input_mask, wider);
    mask = wider;
  }
  if (s && needs && use_interp) {
    /* Still some shape needs a value computed inside the graph: only the interpreter knows it. */
    keel_status_free(s);
    atomic_store(&e->interp_only, true);
    *use_interp = true;
    return NULL;
  }
  return s;
}

keel_status *keel_engine_run(keel_engine *e, keel_tensor *const *inputs, size_t n_in, keel_tensor **outputs,
                             size_t n_out) {
  if (!e) return keel_error(KEEL_INVALID_ARGUMENT, "keel_engine_run: engine is NULL");
  const keel_graph *g = e->graph;
  if (n_in != (size_t)g->n_inputs)
    return keel_error(KEEL_INVALID_ARGUMENT, "keel_engine_run: the model has %d inputs, got %zu", g->n_inputs, n_in);
  if (n_out != (size_t)g->n_outputs)
    return keel_error(KEEL_INVALID_ARGUMENT, "keel_engine_run: the model has %d outputs, got room for %zu",
                      g->n_outputs, n_out);
  if (n_in && !inputs) return keel_error(KEEL_INVALID_ARGUMENT, "keel_engine_run: inputs is NULL");
  if (!outputs) return keel_error(KEEL_INVALID_ARGUMENT, "keel_engine_run: outputs is NULL");
  for (size_t k = 0; k < n_out; k++) outputs[k] = NULL;
  keel_view stack_views[16];
  void *stack_ptrs[16];
  keel_view *iv = n_in <= 16 ? stack_views : calloc(n_in, sizeof *iv);
  void **in_ptrs = n_in <= 16 ? stack_ptrs : calloc(n_in, sizeof *in_ptrs);
  void **out_ptrs = calloc(n_out + 1, sizeof *out_ptrs);
  keel_plan *p = NULL;
  void *arena = NULL;
  keel_view *views = NULL;
  keel_status *s = NULL;
  if (!iv || !in_ptrs || !out_ptrs) {
    s = keel_error(KEEL_OUT_OF_MEMORY, "out of memory");
    goto done;
  }
  for (size_t i = 0; i < n_in; i++) {
    if (!inputs[i]) {
      s = keel_error(KEEL_INVALID_ARGUMENT, "input %zu ('%s') is NULL", i, g->values[g->inputs[i]].name);
      goto done;
    }
    iv[i].dtype = inputs[i]->dtype;
    iv[i].ndim = inputs[i]->ndim;
    memcpy(iv[i].dims, inputs[i]->dims, sizeof iv[i].dims);
    iv[i].data = inputs[i]->data;
    in_ptrs[i] = inputs[i]->data;
  }
  bool interp = false;
  s = keel_engine_plan(e, iv, (int)n_in, &p, &interp);
  if (s) goto done;
  if (interp) {
    s = keel_interp_run(g, inputs, (int)n_in, outputs, e->options.allocator);
    goto done;
  }
  for (size_t k = 0; k < n_out; k++) {
    const keel_plan_value *pv = keel_plan_output(p, (int)k);
    s = keel_tensor_create(pv->dtype, pv->dims, pv->ndim, e->options.allocator, &outputs[k]);
    if (s) goto done;
    out_ptrs[k] = outputs[k]->data;
  }
  if (p->arena_bytes) {
    arena = keel_allocator_alloc(e->options.allocator, p->arena_bytes);
    if (!arena) {
      s = keel_error(KEEL_OUT_OF_MEMORY, "out of memory allocating a %zu-byte arena", p->arena_bytes);
      goto done;
    }
  }
  views = malloc(sizeof *views * ((size_t)p->n_views + 1));
  if (!views) {
    s = keel_error(KEEL_OUT_OF_MEMORY, "out of memory");
    goto done;
  }
  s = keel_plan_execute(p, arena, in_ptrs, out_ptrs, views, 1, NULL);
done:
  if (s)
    for (size_t k = 0; k < n_out; k++) {
      keel_tensor_release(outputs[k]);
      outputs[k] = NULL;
    }
  if (arena) keel_allocator_free(e->options.allocator, arena, p->arena_bytes);
  free(views);
  keel_plan_destroy(p);
  if (iv != stack_views) free(iv);
  if (in_ptrs != stack_ptrs) free(in_ptrs);
  free(out_ptrs);
  return s;
}
