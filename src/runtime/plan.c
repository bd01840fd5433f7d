/* Shape inference, plan-time folding and static memory planning. See plan.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/shape.h"
#include "core/tensor_internal.h"
#include "ops/string_ops.h"
#include "runtime/device.h"
#include "runtime/plan.h"

/* Values up to this size whose inputs are all known are computed while planning (shape arithmetic). */
#define FOLD_MAX_BYTES (64 * 1024)
#define ARENA_ALIGN 64

/* Sizes here come from model-declared shapes: every sum is checked, and anything near SIZE_MAX saturates
 * so that the final arena size check fails cleanly instead of wrapping. */
static size_t align_up(size_t x) {
  if (x > SIZE_MAX - (ARENA_ALIGN - 1)) return SIZE_MAX & ~(size_t)(ARENA_ALIGN - 1);
  return (x + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
}
static size_t add_sat(size_t a, size_t b) { return a > SIZE_MAX - b ? SIZE_MAX : a + b; }

void keel_plan_destroy(keel_plan *p) {
  if (!p) return;
  for (int i = 0; i < p->n_folded; i++) keel_tensor_release(p->folded[i]);
  free(p->folded);
  free(p->values);
  free(p->steps);
  free(p->views);
  free(p->view_values);
  free(p->copies);
  free(p);
}

const keel_plan_value *keel_plan_output(const keel_plan *p, int k) {
  return &p->values[p->graph->outputs[k]];
}

static void value_to_view(const keel_plan_value *pv, keel_view *v, bool with_const) {
  v->dtype = pv->dtype;
  v->ndim = pv->ndim;
  memcpy(v->dims, pv->dims, sizeof v->dims);
  v->data = with_const && pv->loc == KEEL_LOC_CONST ? pv->const_data : NULL;
}

/* Ops whose kernels read only input shapes, never input data: always foldable once shapes are known. */
static bool shape_only_op(const keel_node *n) {
  return n->domain[0] == 0 && (!strcmp(n->op_type, "Shape") || !strcmp(n->op_type, "Size"));
}

typedef struct {
  int start, end; /* step indices of definition and last use */
  size_t size;
  size_t offset;
  bool placed;
} live_buf;


/* Greedy by size: biggest buffers first, each at the lowest offset that does not overlap a placed buffer
 * whose lifetime intersects. */
static size_t assign_offsets(live_buf *bufs, int n) {
  int *order = malloc((size_t)(n ? n : 1) * sizeof(int));
  if (!order) return SIZE_MAX;
  for (int i = 0; i < n; i++) order[i] = i;
  /* insertion sort is fine for the few thousand buffers of real models; stable on ties */
  for (int i = 1; i < n; i++) {
    int x = order[i], j = i - 1;
    while (j >= 0 && bufs[order[j]].size < bufs[x].size) {
      order[j + 1] = order[j];
      j--;
    }
    order[j + 1] = x;
  }
  size_t total = 0;
  int *placed = malloc((size_t)(n ? n : 1) * sizeof(int));
  if (!placed) {
    free(order);
    return SIZE_MAX;
  }
  int n_placed = 0;
  for (int oi = 0; oi < n; oi++) {
    live_buf *b = &bufs[order[oi]];
    size_t off = 0;
    bool moved = true;
    /* Repeatedly bump past conflicting buffers until a gap fits. */
    while (moved) {
      moved = false;
      for (int k = 0; k < n_placed; k++) {
        live_buf *o = &bufs[placed[k]];
        if (o->end < b->start || b->end < o->start) continue;
        if (off < add_sat(o->offset, align_up(o->size)) && o->offset < add_sat(off, align_up(b->size))) {
          off = add_sat(o->offset, align_up(o->size));
          if (off == SIZE_MAX) break;
          moved = true;
        }
      }
    }
    b->offset = off;
    b->placed = true;
    placed[n_placed++] = order[oi];
    size_t end = add_sat(off, align_up(b->size));
    if (end == SIZE_MAX) { /* the plan does not fit any address space: report it as out of memory */
      free(order);
      free(placed);
      return SIZE_MAX;
    }
    if (end > total) total = end;
  }
  free(order);
  free(placed);
  return total;
}

/* Inputs against the model's declarations: dtype, rank, fixed dims; sizes must not overflow. */
keel_status *keel_check_inputs(const keel_graph *g, const keel_view *inputs, int n_inputs) {
  if (n_inputs != g->n_inputs)
    return keel_error(KEEL_INVALID_ARGUMENT, "the model has %d inputs, got %d", g->n_inputs, n_inputs);
  for (int i = 0; i < g->n_inputs; i++) {
    const keel_view *in = &inputs[i];
    const keel_value *gv = &g->values[g->inputs[i]];
    if (gv->dtype != KEEL_DTYPE_UNDEFINED && in->dtype != gv->dtype)
      return keel_error(KEEL_SHAPE_MISMATCH, "input '%s' has dtype %s, the model expects %s", gv->name,
                        keel_dtype_name(in->dtype), keel_dtype_name(gv->dtype));
    if (in->ndim < 0 || in->ndim > KEEL_MAX_DIMS)
      return keel_error(KEEL_SHAPE_MISMATCH, "input '%s' has rank %d, outside 0..%d", gv->name, in->ndim, KEEL_MAX_DIMS);
    if (gv->ndim >= 0) {
      char a[128], b[128];
      bool ok = in->ndim == gv->ndim;
      for (int d = 0; ok && d < gv->ndim; d++)
        if (gv->dims[d] >= 0 && gv->dims[d] != in->dims[d]) ok = false;
      if (!ok) {
        /* print the declared shape with the symbolic names */
        size_t off = 0;
        off += (size_t)snprintf(b + off, sizeof b - off, "[");
        for (int d = 0; d < gv->ndim && off < sizeof b; d++) {
          if (gv->dims[d] >= 0) off += (size_t)snprintf(b + off, sizeof b - off, d ? ",%lld" : "%lld", (long long)gv->dims[d]);
          else off += (size_t)snprintf(b + off, sizeof b - off, d ? ",%s" : "%s", gv->dim_params[d] ? gv->dim_params[d] : "?");
        }
        if (off < sizeof b) snprintf(b + off, sizeof b - off, "]");
        return keel_error(KEEL_SHAPE_MISMATCH, "input '%s' has shape %s, the model expects %s", gv->name,
                          keel_shape_format(in->dims, in->ndim, a, sizeof a), b);
      }
    }
    int64_t numel;
    size_t nb;
    if (!keel_shape_numel(in->dims, in->ndim, &numel) || !keel_shape_nbytes(numel, keel_dtype_size(in->dtype), &nb))
      return keel_error(KEEL_SHAPE_MISMATCH, "input '%s' has an invalid or overflowing shape", gv->name);
    if (g->max_tensor_elements && (uint64_t)numel > g->max_tensor_elements)
      return keel_error(KEEL_OUT_OF_MEMORY, "input '%s' has %lld elements, above the limit of %llu (max_tensor_elements)",
                        gv->name, (long long)numel, (unsigned long long)g->max_tensor_elements);
  }
  return NULL;
}

static keel_status *strings_need_interp(const char *name, bool *needs_values) {
  if (needs_values) *needs_values = true;
  return keel_error(KEEL_UNSUPPORTED, "value '%s' holds strings: string tensors run in the interpreter, not a static plan",
                    name ? name : "");
}

keel_status *keel_plan_create(const keel_graph *g, const keel_view *inputs, int n_inputs, uint64_t value_input_mask,
                              bool *needs_values, keel_plan **out) {
  *out = NULL;
  if (needs_values) *needs_values = false;
  KEEL_TRY(keel_check_inputs(g, inputs, n_inputs));
  /* String tensors own their elements' bytes, which arena buffers cannot: such graphs run in the interpreter
   * (needs_values is how planning asks for it). Checked before any input value is copied. */
  for (int i = 0; i < n_inputs; i++)
    if (inputs[i].dtype == KEEL_STRING) return strings_need_interp(g->values[g->inputs[i]].name, needs_values);
  for (int v = 0; v < g->n_values; v++)
    if (g->values[v].constant && keel_tensor_dtype(g->values[v].constant) == KEEL_STRING)
      return strings_need_interp(g->values[v].name, needs_values);
  keel_status *err = NULL;
  keel_plan *p = calloc(1, sizeof *p);
  if (!p) return keel_error(KEEL_OUT_OF_MEMORY, "out of memory creating a plan");
  p->graph = g;
  p->n_values = g->n_values;
  p->n_inputs = g->n_inputs;
  p->n_outputs = g->n_outputs;
  p->value_input_mask = value_input_mask;
  p->values = calloc((size_t)g->n_values + 1, sizeof *p->values);
  p->steps = calloc((size_t)g->n_nodes + 1, sizeof *p->steps);
  /* folded node outputs, plus the values of shape-feeding graph inputs */
  int max_folded = 1 + g->n_inputs;
  for (int i = 0; i < g->n_nodes; i++) max_folded += g->nodes[i].n_outputs;
  p->folded = calloc((size_t)max_folded, sizeof *p->folded);
  int total_views = 0;
  for (int i = 0; i < g->n_nodes; i++) total_views += g->nodes[i].n_inputs + g->nodes[i].n_outputs;
  p->views = calloc((size_t)total_views + 1, sizeof *p->views);
  p->view_values = calloc((size_t)total_views + 1, sizeof *p->view_values);
  p->copies = calloc((size_t)g->n_outputs + 1, sizeof *p->copies);
  int *def_step = malloc(((size_t)g->n_values + 1) * sizeof(int));
  int *last_use = malloc(((size_t)g->n_values + 1) * sizeof(int));
  int *buf_of = malloc(((size_t)g->n_values + 1) * sizeof(int));
  live_buf *bufs = calloc((size_t)g->n_values + 1, sizeof *bufs);
  keel_view *scratch_in = NULL, *scratch_out = NULL;
  int max_io = 1;
  for (int i = 0; i < g->n_nodes; i++) {
    if (g->nodes[i].n_inputs > max_io) max_io = g->nodes[i].n_inputs;
    if (g->nodes[i].n_outputs > max_io) max_io = g->nodes[i].n_outputs;
  }
  scratch_in = calloc((size_t)max_io, sizeof *scratch_in);
  scratch_out = calloc((size_t)max_io, sizeof *scratch_out);
  if (!p->values || !p->steps || !p->folded || !p->views || !p->view_values || !p->copies || !def_step ||
      !last_use || !buf_of || !bufs || !scratch_in || !scratch_out) {
    err = keel_error(KEEL_OUT_OF_MEMORY, "out of memory creating a plan");
    goto fail;
  }

  /* Seed: constants and graph inputs. */
  for (int v = 0; v < g->n_values; v++) {
    keel_plan_value *pv = &p->values[v];
    const keel_value *gv = &g->values[v];
    def_step[v] = -1;
    last_use[v] = -1;
    buf_of[v] = -1;
    if (gv->constant) {
      keel_tensor *t = gv->constant;
      pv->dtype = t->dtype;
      pv->ndim = t->ndim;
      memcpy(pv->dims, t->dims, sizeof(int64_t) * (size_t)t->ndim);
      pv->nbytes = t->nbytes;
      pv->loc = KEEL_LOC_CONST;
      pv->const_data = t->data;
    }
  }
  for (int i = 0; i < g->n_inputs; i++) {
    const keel_view *in = &inputs[i];
    keel_plan_value *pv = &p->values[g->inputs[i]];
    int64_t numel;
    size_t nb;
    keel_shape_numel(in->dims, in->ndim, &numel);
    keel_shape_nbytes(numel, keel_dtype_size(in->dtype), &nb);
    pv->dtype = in->dtype;
    pv->ndim = in->ndim;
    memcpy(pv->dims, in->dims, sizeof(int64_t) * (size_t)in->ndim);
    pv->nbytes = nb;
    pv->loc = KEEL_LOC_INPUT;
    pv->index = i;
    if (i < 64 && (value_input_mask >> i & 1) && in->data) {
      /* A shape-feeding input: its value is part of the plan (and of the module's shape key). */
      keel_tensor *t;
      err = keel_tensor_from_data(in->dtype, in->dims, in->ndim, in->data, &t);
      if (err) goto fail;
      p->folded[p->n_folded++] = t;
      pv->loc = KEEL_LOC_CONST;
      pv->const_data = t->data;
      def_step[g->inputs[i]] = -1;
    }
  }
  for (int k = 0; k < g->n_outputs; k++) {
    keel_plan_value *pv = &p->values[g->outputs[k]];
    (void)pv;
  }

  /* Infer and fold, node by node. */
  int view_pos = 0;
  for (int ni = 0; ni < g->n_nodes; ni++) {
    const keel_node *n = &g->nodes[ni];
    if (n->dead) continue;
    bool all_known = true;
    for (int k = 0; k < n->n_inputs; k++) {
      int v = n->inputs[k];
      if (v < 0) {
        memset(&scratch_in[k], 0, sizeof scratch_in[k]);
        continue;
      }
      value_to_view(&p->values[v], &scratch_in[k], true);
      if (p->values[v].loc != KEEL_LOC_CONST) all_known = false;
    }
    for (int k = 0; k < n->n_outputs; k++) memset(&scratch_out[k], 0, sizeof scratch_out[k]);
    if (!n->op->run) { /* control flow: only the interpreter runs it */
      if (needs_values) *needs_values = true;
      err = keel_error(KEEL_UNSUPPORTED, "%s needs the interpreter", keel_node_desc(n));
      goto fail;
    }
    if (keel_strings_involved(n, scratch_in, n->n_inputs)) { /* Cast to string... */
      err = strings_need_interp(n->n_outputs > 0 && n->outputs[0] >= 0 ? g->values[n->outputs[0]].name : n->name,
                                needs_values);
      goto fail;
    }
    keel_tls_needs_value = false;
    err = n->op->infer(n, scratch_in, n->n_inputs, scratch_out, n->n_outputs);
    if (err) {
      if (keel_tls_needs_value && needs_values) *needs_values = true;
      err = keel_error_prefix(err, "%s: ", keel_node_desc(n));
      goto fail;
    }
    size_t out_bytes = 0;
    for (int k = 0; k < n->n_outputs; k++) {
      int v = n->outputs[k];
      if (v < 0) continue;
      keel_plan_value *pv = &p->values[v];
      keel_view *o = &scratch_out[k];
      int64_t numel;
      size_t nb;
      if (o->dtype == KEEL_DTYPE_UNDEFINED || o->ndim < 0 || o->ndim > KEEL_MAX_DIMS ||
          !keel_shape_numel(o->dims, o->ndim, &numel) || !keel_shape_nbytes(numel, keel_dtype_size(o->dtype), &nb)) {
        err = keel_error(KEEL_INVALID_MODEL, "%s: output %d ('%s') has an invalid or overflowing shape", keel_node_desc(n),
                         k, g->values[v].name);
        goto fail;
      }
      if (g->max_tensor_elements && (uint64_t)numel > g->max_tensor_elements) {
        err = keel_error(KEEL_OUT_OF_MEMORY, "%s: output %d ('%s') would have %lld elements, above the limit of %llu "
                         "(max_tensor_elements)", keel_node_desc(n), k, g->values[v].name, (long long)numel,
                         (unsigned long long)g->max_tensor_elements);
        goto fail;
      }
      if (o->dtype == KEEL_STRING) {
        err = strings_need_interp(g->values[v].name, needs_values);
        goto fail;
      }
      pv->dtype = o->dtype;
      pv->ndim = o->ndim;
      memcpy(pv->dims, o->dims, sizeof(int64_t) * (size_t)o->ndim);
      pv->nbytes = nb;
      out_bytes = add_sat(out_bytes, nb);
    }
    /* Fold while planning: shape-only ops always; others when inputs are known and outputs small. */
    if ((shape_only_op(n) || (all_known && !keel_node_is_random(n))) && out_bytes <= FOLD_MAX_BYTES) {
      bool ok = true;
      for (int k = 0; k < n->n_outputs && ok; k++) {
        int v = n->outputs[k];
        if (v < 0) continue;
        keel_plan_value *pv = &p->values[v];
        keel_tensor *t;
        err = keel_tensor_create(pv->dtype, pv->dims, pv->ndim, NULL, &t);
        if (err) goto fail;
        p->folded[p->n_folded++] = t;
        scratch_out[k].data = t->data;
      }
      size_t ws = n->op->workspace ? n->op->workspace(n, scratch_in, n->n_inputs, scratch_out, n->n_outputs) : 0;
      void *wsp = ws ? aligned_alloc(ARENA_ALIGN, align_up(ws)) : NULL;
      if (ws && !wsp) {
        err = keel_error(KEEL_OUT_OF_MEMORY, "out of memory folding %s", keel_node_desc(n));
        goto fail;
      }
      keel_exec ex = {wsp ? wsp : keel_empty_workspace, ws, 1};
      err = n->op->run(n, scratch_in, n->n_inputs, scratch_out, n->n_outputs, &ex);
      free(wsp);
      if (err) {
        err = keel_error_prefix(err, "%s: ", keel_node_desc(n));
        goto fail;
      }
      for (int k = 0; k < n->n_outputs; k++) {
        int v = n->outputs[k];
        if (v < 0) continue;
        p->values[v].loc = KEEL_LOC_CONST;
        p->values[v].const_data = scratch_out[k].data;
      }
      continue;
    }
    /* A real step. */
    keel_plan_step *st = &p->steps[p->n_steps];
    st->node = n;
    st->first_view = view_pos;
    for (int k = 0; k < n->n_inputs; k++) {
      int v = n->inputs[k];
      p->view_values[view_pos] = v;
      p->views[view_pos] = scratch_in[k];
      p->views[view_pos].data = NULL;
      if (v >= 0) last_use[v] = p->n_steps;
      view_pos++;
    }
    for (int k = 0; k < n->n_outputs; k++) {
      int v = n->outputs[k];
      p->view_values[view_pos] = v;
      memset(&p->views[view_pos], 0, sizeof(keel_view));
      if (v >= 0) {
        value_to_view(&p->values[v], &p->views[view_pos], false);
        def_step[v] = p->n_steps;
        if (last_use[v] < p->n_steps) last_use[v] = p->n_steps;
        p->values[v].loc = KEEL_LOC_ARENA; /* may become OUTPUT below */
      }
      view_pos++;
    }
    size_t ws = n->op->workspace ? n->op->workspace(n, scratch_in, n->n_inputs, scratch_out, n->n_outputs) : 0;
    if (ws > p->workspace_bytes) p->workspace_bytes = ws;
    p->n_steps++;
  }
  p->n_views = view_pos;

  /* Graph outputs: produced by a step -> written straight into the caller's buffer; otherwise copied. */
  for (int k = 0; k < g->n_outputs; k++) {
    int v = g->outputs[k];
    keel_plan_value *pv = &p->values[v];
    bool dup = false;
    for (int j = 0; j < k; j++)
      if (g->outputs[j] == v) dup = true;
    if (pv->loc == KEEL_LOC_ARENA && !dup) {
      pv->loc = KEEL_LOC_OUTPUT;
      pv->index = k;
    } else {
      p->copies[p->n_copies].output = k;
      p->copies[p->n_copies].value = v;
      p->n_copies++;
    }
  }

  /* Buffers for arena values, with in-place reuse where the op allows it. */
  int n_bufs = 0;
  for (int s = 0; s < p->n_steps; s++) {
    const keel_node *n = p->steps[s].node;
    for (int k = 0; k < n->n_outputs; k++) {
      int v = n->outputs[k];
      if (v < 0 || p->values[v].loc != KEEL_LOC_ARENA) continue;
      p->intermediate_bytes = add_sat(p->intermediate_bytes, align_up(p->values[v].nbytes));
      int ip = n->op->inplace_input;
      if (k == 0 && ip >= 0 && ip < n->n_inputs) {
        int iv = n->inputs[ip];
        if (iv >= 0 && p->values[iv].loc == KEEL_LOC_ARENA && buf_of[iv] >= 0 && last_use[iv] == s &&
            p->values[iv].nbytes == p->values[v].nbytes) {
          /* the input must not be read by another input slot of this node (aliasing within the op is fine
           * for elementwise kernels, which read each element before writing it) */
          live_buf *b = &bufs[buf_of[iv]];
          if (b->end <= s) {
            buf_of[v] = buf_of[iv];
            if (last_use[v] > b->end) b->end = last_use[v];
            continue;
          }
        }
      }
      buf_of[v] = n_bufs;
      bufs[n_bufs].start = s;
      bufs[n_bufs].end = last_use[v];
      bufs[n_bufs].size = p->values[v].nbytes;
      n_bufs++;
    }
  }
  size_t arena = assign_offsets(bufs, n_bufs);
  if (arena == SIZE_MAX) {
    err = keel_error(KEEL_OUT_OF_MEMORY, "the arena does not fit in memory (its size overflows, or the planner's tables could not be allocated)");
    goto fail;
  }
  for (int v = 0; v < g->n_values; v++)
    if (p->values[v].loc == KEEL_LOC_ARENA && buf_of[v] >= 0) p->values[v].offset = bufs[buf_of[v]].offset;
  p->workspace_offset = arena;
  p->arena_bytes = add_sat(arena, align_up(p->workspace_bytes));
  if (p->arena_bytes == SIZE_MAX || p->arena_bytes > ((size_t)1 << 50)) {
    err = keel_error(KEEL_OUT_OF_MEMORY, "the plan needs a %zu-byte arena, more than keel allows (2^50)", p->arena_bytes);
    goto fail;
  }
  *out = p;
  p = NULL;
fail:
  free(def_step);
  free(last_use);
  free(buf_of);
  free(bufs);
  free(scratch_in);
  free(scratch_out);
  keel_plan_destroy(p);
  return err;
}

static uint64_t now_ns(void) { return (uint64_t)(keel_now_us() * 1000.0); }

static void *value_data(const keel_plan *p, int v, void *arena, void *const *inputs, void *const *outputs) {
  const keel_plan_value *pv = &p->values[v];
  switch (pv->loc) {
    case KEEL_LOC_CONST: return pv->const_data;
    case KEEL_LOC_INPUT: return inputs[pv->index];
    case KEEL_LOC_OUTPUT: return outputs[pv->index];
    case KEEL_LOC_ARENA: return arena ? (char *)arena + pv->offset : NULL;
    default: return NULL;
  }
}

keel_status *keel_plan_execute(const keel_plan *p, void *arena, void *const *inputs, void *const *outputs,
                               keel_view *views, int num_threads, uint64_t *step_ns) {
  memcpy(views, p->views, sizeof(keel_view) * (size_t)p->n_views);
  for (int i = 0; i < p->n_views; i++) {
    int v = p->view_values[i];
    if (v >= 0) views[i].data = value_data(p, v, arena, inputs, outputs);
  }
  keel_exec ex;
  ex.workspace = arena && p->workspace_bytes ? (char *)arena + p->workspace_offset : keel_empty_workspace;
  ex.workspace_bytes = p->workspace_bytes;
  ex.num_threads = num_threads;
  for (int s = 0; s < p->n_steps; s++) {
    const keel_plan_step *st = &p->steps[s];
    const keel_node *n = st->node;
    keel_view *in = &views[st->first_view];
    uint64_t t0 = step_ns ? now_ns() : 0;
    keel_status *err = n->op->run(n, in, n->n_inputs, in + n->n_inputs, n->n_outputs, &ex);
    if (step_ns) step_ns[s] += now_ns() - t0;
    if (err) return keel_error_prefix(err, "%s: ", keel_node_desc(n));
  }
  for (int c = 0; c < p->n_copies; c++) {
    int v = p->copies[c].value;
    void *src = value_data(p, v, arena, inputs, outputs);
    if (src && p->values[v].nbytes) memcpy(outputs[p->copies[c].output], src, p->values[v].nbytes);
  }
  return NULL;
}
