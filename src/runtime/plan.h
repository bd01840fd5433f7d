/* Plans: everything that depends on input shapes, computed once per shape key.
 *
 * Planning walks the engine's graph in topological order, infers every value's dtype and shape, folds what
 * became computable (Shape -> Gather -> Concat chains, anything whose inputs are known and small), and
 * assigns each intermediate an offset in one arena by lifetime (greedy by size, TFLite/XNNPACK style),
 * letting elementwise ops write in place over inputs that die at that node. Executing a plan allocates
 * nothing: the caller provides the arena, the inputs and the output buffers. */
#ifndef KEEL_RUNTIME_PLAN_H
#define KEEL_RUNTIME_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "graph/ir.h"
#include "ops/op.h"

typedef enum keel_loc {
  KEEL_LOC_NONE = 0, /* omitted / unused */
  KEEL_LOC_CONST,    /* engine constant or plan-folded value: data is fixed */
  KEEL_LOC_INPUT,    /* graph input `index`: the caller's buffer */
  KEEL_LOC_OUTPUT,   /* graph output `index`: a buffer handed back to the caller */
  KEEL_LOC_ARENA,    /* arena + offset */
} keel_loc;

typedef struct keel_plan_value {
  keel_dtype dtype;
  int ndim;
  int64_t dims[KEEL_MAX_DIMS];
  size_t nbytes;
  keel_loc loc;
  int index;        /* input or output index */
  size_t offset;    /* arena offset */
  void *const_data; /* KEEL_LOC_CONST */
} keel_plan_value;

typedef struct keel_plan_step {
  const keel_node *node;
  int first_view; /* views[first_view .. + n_inputs + n_outputs) */
} keel_plan_step;

/* A graph output whose buffer must be filled by a copy after the steps (its value is a constant, a graph
 * input, or a value already returned under another output index). */
typedef struct keel_plan_copy {
  int output;
  int value;
} keel_plan_copy;

typedef struct keel_plan {
  const keel_graph *graph;
  int n_values;
  keel_plan_value *values;
  int n_steps;
  keel_plan_step *steps;
  int n_views;
  keel_view *views;   /* template views: dtype and shape filled, data filled at execution */
  int *view_values;   /* value index per view, -1 for omitted */
  int n_copies;
  keel_plan_copy *copies;
  size_t arena_bytes;       /* intermediates after lifetime sharing, plus workspace */
  size_t workspace_offset;  /* workspace lives at the end of the arena */
  size_t workspace_bytes;
  size_t intermediate_bytes;/* sum of all intermediates, for comparison */
  int n_folded;
  keel_tensor **folded; /* storage of values folded while planning */
  int n_inputs, n_outputs;
  uint64_t value_input_mask; /* graph inputs whose values were part of planning */
} keel_plan;

/* Plan for the given inputs (graph-input order). inputs[i].data may be NULL; it is read only for inputs whose
 * bit is set in value_input_mask (inputs that feed shapes). If planning needs the value of an input not in
 * the mask, returns KEEL_UNSUPPORTED and sets *needs_values (if non-NULL) so the caller can retry with a
 * wider mask. */
keel_status *keel_plan_create(const keel_graph *g, const keel_view *inputs, int n_inputs, uint64_t value_input_mask,
                              bool *needs_values, keel_plan **out);
void keel_plan_destroy(keel_plan *p);
/* Validate inputs against the graph's declared dtypes and shapes (also used by the interpreter path). */
keel_status *keel_check_inputs(const keel_graph *g, const keel_view *inputs, int n_inputs);

/* Shapes of graph outputs as planned. */
const keel_plan_value *keel_plan_output(const keel_plan *p, int k);

/* Run the plan. `arena` has p->arena_bytes (64-byte aligned); inputs/outputs are data pointers in graph order;
 * `views` is scratch of p->n_views entries (so one plan can be executed by several threads at once).
 * `step_ns`: NULL, or p->n_steps counters that each step's wall time is added to (profiling). */
keel_status *keel_plan_execute(const keel_plan *p, void *arena, void *const *inputs, void *const *outputs,
                               keel_view *views, int num_threads, uint64_t *step_ns);

/* Profile table of step_ns summed over `calls` runs (profile.c; keel_module_write_profile). */
void keel_plan_write_profile(const keel_plan *p, const uint64_t *step_ns, uint64_t calls, FILE *f, int max_rows);


#endif
