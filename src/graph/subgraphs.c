/* Subgraphs (If/Loop/Scan bodies): resolve and sort them, and make outer-scope reads explicit.
 *
 * A subgraph may read any value of an enclosing graph by name. Such a value is marked is_outer in the
 * subgraph, and the node owning the subgraph gets it as an implicit input in its own graph, so dead-node
 * removal, lifetimes and the interpreter all see the dependency (ONNX Runtime calls these implicit inputs). */
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "graph/passes.h"

static bool value_defined(const keel_value *v) { return v->producer >= 0 || v->constant || v->is_input; }

static keel_status *prepare(keel_graph *g, bool top);

static keel_status *add_implicit(keel_graph *g, int ni, const char *name, bool top) {
  int idx = keel_graph_find_value(g, name);
  if (idx < 0) {
    if (top)
      return keel_error(KEEL_INVALID_MODEL, "a subgraph of %s reads '%s', which is not defined in any enclosing graph",
                        keel_node_desc(&g->nodes[ni]), name);
    idx = keel_graph_add_value(g, name); /* defined further out: this graph reads it by name in turn */
    if (idx < 0) return keel_error(KEEL_OUT_OF_MEMORY, "out of memory preparing subgraphs");
  }
  keel_node *n = &g->nodes[ni];
  for (int k = n->n_inputs - n->n_implicit_inputs; k < n->n_inputs; k++)
    if (n->inputs[k] == idx) return NULL;
  if (!keel_node_set_n_inputs(n, n->n_inputs + 1)) return keel_error(KEEL_OUT_OF_MEMORY, "out of memory preparing subgraphs");
  n->inputs[n->n_inputs - 1] = idx;
  n->n_implicit_inputs++;
  return NULL;
}

static keel_status *prepare(keel_graph *g, bool top) {
  for (int ni = 0; ni < g->n_nodes; ni++) {
    for (int a = 0; a < g->nodes[ni].n_attrs; a++) {
      keel_attr *at = &g->nodes[ni].attrs[a];
      if (at->type != KEEL_ATTR_GRAPH || !at->g) continue;
      keel_graph *sg = at->g;
      char where[300];
      snprintf(where, sizeof where, "in subgraph '%s' of %s: ", at->name, keel_node_desc(&g->nodes[ni]));
      keel_status *s = prepare(sg, false);
      if (s) return keel_error_prefix(s, "%s", where);
      /* values the subgraph reads but does not define come from outside */
      for (int v = 0; v < sg->n_values; v++) {
        keel_value *val = &sg->values[v];
        if (value_defined(val)) continue;
        bool used = val->is_output;
        for (int k = 0; k < sg->n_nodes && !used; k++)
          for (int j = 0; j < sg->nodes[k].n_inputs; j++)
            if (sg->nodes[k].inputs[j] == v) used = true;
        if (!used) continue;
        val->is_outer = true;
        KEEL_TRY(add_implicit(g, ni, val->name, top));
      }
      s = keel_pass_resolve_ops(sg);
      if (!s) s = keel_graph_toposort(sg);
      if (s) return keel_error_prefix(s, "%s", where);
    }
  }
  return NULL;
}

keel_status *keel_pass_prepare_subgraphs(keel_graph *g) { return prepare(g, true); }
