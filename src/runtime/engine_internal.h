/* Engine internals shared by the runtime module and the keel command. */
#ifndef KEEL_RUNTIME_ENGINE_INTERNAL_H
#define KEEL_RUNTIME_ENGINE_INTERNAL_H

#include <stdatomic.h>

#include <keel/engine.h>

#include "graph/ir.h"
#include "runtime/plan.h"

struct keel_engine {
  atomic_int refcount;
  keel_graph *graph;          /* optimized, topologically sorted; immutable after load */
  keel_engine_options options;
  int n_nodes_loaded;         /* node count as imported, before optimization */
  /* Graph inputs whose values feed shapes (bit i = input i). Learned the first time planning needs them;
   * only ever gains bits, so racing planners at worst plan twice. */
  _Atomic uint64_t value_input_mask;
  /* The graph needs the interpreter (control flow, or shapes that depend on computed data): set at build
   * for control flow, or the first time planning proves impossible. */
  atomic_bool interp_only;
};

/* Plan for inputs (dtype/shape, data needed only for shape-feeding inputs), learning the value mask.
 * If no static plan can express the graph, returns NULL with *out = NULL and *use_interp = true (when
 * use_interp is NULL that is an error instead): run it with keel_interp_run. */
keel_status *keel_engine_plan(keel_engine *e, const keel_view *inputs, int n_inputs, keel_plan **out,
                              bool *use_interp);
/* Total number of parameter elements (constants) in the optimized graph. */
int64_t keel_engine_param_count(const keel_engine *e);

#endif
