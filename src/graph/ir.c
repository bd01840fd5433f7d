/* IR construction, lookup and topological ordering. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "graph/ir.h"

static char *dupstr(const char *s) {
  if (!s) s = "";
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

keel_graph *keel_graph_create(void) { return calloc(1, sizeof(keel_graph)); }

static void attr_free(keel_attr *a) {
  free(a->name);
  free(a->s);
  free(a->floats);
  free(a->ints);
  if (a->strings)
    for (int i = 0; i < a->n; i++) free(a->strings[i]);
  free(a->strings);
  keel_tensor_release(a->t);
  keel_graph_destroy(a->g);
}

void keel_graph_destroy(keel_graph *g) {
  if (!g) return;
  for (int i = 0; i < g->n_values; i++) {
    keel_value *v = &g->values[i];
    free(v->name);
    for (int d = 0; d < KEEL_MAX_DIMS; d++) free(v->dim_params[d]);
    keel_tensor_release(v->constant);
  }
  for (int i = 0; i < g->n_nodes; i++) {
    keel_node *n = &g->nodes[i];
    free(n->name);
    free(n->op_type);
    free(n->domain);
    free(n->inputs);
    free(n->outputs);
    for (int a = 0; a < n->n_attrs; a++) attr_free(&n->attrs[a]);
    free(n->attrs);
  }
  for (int i = 0; i < g->n_opsets; i++) free(g->opsets[i].domain);
  free(g->opsets);
  free(g->values);
  free(g->nodes);
  free(g->inputs);
  free(g->outputs);
  free(g->name);
  free(g->producer_name);
  free(g);
}

static bool grow(void **arr, int *cap, int need, size_t elem) {
  if (need <= *cap) return true;
  int nc = *cap ? *cap * 2 : 16;
  while (nc < need) nc *= 2;
  void *p = realloc(*arr, (size_t)nc * elem);
  if (!p) return false;
  memset((char *)p + (size_t)*cap * elem, 0, (size_t)(nc - *cap) * elem);
  *arr = p;
  *cap = nc;
  return true;
}

int keel_graph_add_value(keel_graph *g, const char *name) {
  if (!grow((void **)&g->values, &g->cap_values, g->n_values + 1, sizeof(keel_value))) return -1;
  keel_value *v = &g->values[g->n_values];
  memset(v, 0, sizeof *v);
  v->name = dupstr(name);
  if (!v->name) return -1;
  v->ndim = -1;
  v->producer = -1;
  return g->n_values++;
}

int keel_graph_find_value(const keel_graph *g, const char *name) {
  for (int i = 0; i < g->n_values; i++)
    if (!strcmp(g->values[i].name, name)) return i;
  return -1;
}

int keel_graph_add_node(keel_graph *g, const char *name, const char *op_type, const char *domain) {
  if (!grow((void **)&g->nodes, &g->cap_nodes, g->n_nodes + 1, sizeof(keel_node))) return -1;
  keel_node *n = &g->nodes[g->n_nodes];
  memset(n, 0, sizeof *n);
  n->name = dupstr(name);
  n->op_type = dupstr(op_type);
  n->domain = dupstr(domain);
  if (!n->name || !n->op_type || !n->domain) {
    free(n->name);
    free(n->op_type);
    free(n->domain);
    return -1;
  }
  return g->n_nodes++;
}

keel_attr *keel_node_add_attr(keel_node *n, const char *name) {
  keel_attr *p = realloc(n->attrs, (size_t)(n->n_attrs + 1) * sizeof *p);
  if (!p) return NULL;
  n->attrs = p;
  keel_attr *a = &p[n->n_attrs];
  memset(a, 0, sizeof *a);
  a->name = dupstr(name);
  if (!a->name) return NULL;
  n->n_attrs++;
  return a;
}

static bool resize_ids(int **arr, int *n, int count) {
  int *p = realloc(*arr, (size_t)(count ? count : 1) * sizeof(int));
  if (!p) return false;
  for (int i = *n; i < count; i++) p[i] = -1;
  *arr = p;
  *n = count;
  return true;
}

bool keel_node_set_n_inputs(keel_node *n, int count) { return resize_ids(&n->inputs, &n->n_inputs, count); }
bool keel_node_set_n_outputs(keel_node *n, int count) { return resize_ids(&n->outputs, &n->n_outputs, count); }

keel_status *keel_graph_toposort(keel_graph *g) {
  /* Producers of every value, then Kahn's algorithm keeping model order among ready nodes. */
  int nn = g->n_nodes;
  keel_status *err = NULL;
  int *producer = malloc((size_t)(g->n_values + 1) * sizeof(int));
  int *pending = calloc((size_t)nn + 1, sizeof(int));
  int *order = malloc(((size_t)nn + 1) * sizeof(int));
  char *done = calloc((size_t)nn + 1, 1);
  keel_node *sorted = malloc(((size_t)nn + 1) * sizeof(keel_node));
  if (!producer || !pending || !order || !done || !sorted) {
    err = keel_error(KEEL_OUT_OF_MEMORY, "out of memory sorting the graph");
    goto out;
  }
  for (int i = 0; i < g->n_values; i++) producer[i] = -1;
  for (int i = 0; i < nn; i++) {
    keel_node *n = &g->nodes[i];
    if (n->dead) continue;
    for (int o = 0; o < n->n_outputs; o++) {
      int v = n->outputs[o];
      if (v < 0) continue;
      if (producer[v] >= 0) {
        err = keel_error(KEEL_INVALID_MODEL, "value '%s' is produced twice: by %s and by node '%s'",
                         g->values[v].name, keel_node_desc(&g->nodes[producer[v]]), n->name);
        goto out;
      }
      if (g->values[v].constant || g->values[v].is_input) {
        err = keel_error(KEEL_INVALID_MODEL, "%s writes '%s', which is a graph input or initializer",
                         keel_node_desc(n), g->values[v].name);
        goto out;
      }
      producer[v] = i;
    }
  }
  for (int i = 0; i < nn; i++) {
    keel_node *n = &g->nodes[i];
    if (n->dead) continue;
    for (int k = 0; k < n->n_inputs; k++) {
      int v = n->inputs[k];
      if (v < 0) continue;
      keel_value *val = &g->values[v];
      if (producer[v] >= 0) pending[i]++;
      else if (!val->constant && !val->is_input && !val->is_outer) {
        err = keel_error(KEEL_INVALID_MODEL, "%s reads '%s', which no node produces and is neither a graph input nor an initializer",
                         keel_node_desc(n), val->name);
        goto out;
      }
    }
  }
  /* Simple O(n^2)-worst scan keeps model order; fine for graphs of thousands of nodes. */
  int count = 0, live = 0;
  for (int i = 0; i < nn; i++) live += !g->nodes[i].dead;
  int start = 0;
  while (count < live) {
    int picked = -1;
    for (int i = start; i < nn; i++)
      if (!done[i] && !g->nodes[i].dead && pending[i] == 0) {
        picked = i;
        break;
      }
    if (picked < 0) {
      for (int i = 0; i < nn; i++)
        if (!done[i] && !g->nodes[i].dead) {
          err = keel_error(KEEL_INVALID_MODEL, "the graph has a cycle through %s", keel_node_desc(&g->nodes[i]));
          goto out;
        }
    }
    done[picked] = 1;
    order[count++] = picked;
    keel_node *n = &g->nodes[picked];
    int lowest = nn;
    for (int o = 0; o < n->n_outputs; o++) {
      int v = n->outputs[o];
      if (v < 0) continue;
      for (int j = 0; j < nn; j++) {
        if (done[j] || g->nodes[j].dead) continue;
        for (int k = 0; k < g->nodes[j].n_inputs; k++)
          if (g->nodes[j].inputs[k] == v) {
            if (--pending[j] == 0 && j < lowest) lowest = j;
          }
      }
    }
    /* Continue scanning from the earliest node that may have become ready. */
    start = lowest < picked ? lowest : 0;
    while (start < nn && (done[start] || g->nodes[start].dead || pending[start])) start++;
    if (start >= nn) start = 0;
  }
  /* Rebuild the node array in sorted order, freeing dead nodes. */
  for (int i = 0; i < count; i++) sorted[i] = g->nodes[order[i]];
  for (int i = 0; i < nn; i++) {
    if (!g->nodes[i].dead) continue;
    keel_node *n = &g->nodes[i];
    free(n->name);
    free(n->op_type);
    free(n->domain);
    free(n->inputs);
    free(n->outputs);
    for (int a = 0; a < n->n_attrs; a++) attr_free(&n->attrs[a]);
    free(n->attrs);
  }
  free(g->nodes);
  g->nodes = sorted;
  sorted = NULL;
  g->n_nodes = count;
  g->cap_nodes = nn + 1;
  for (int i = 0; i < g->n_values; i++) g->values[i].producer = -1;
  for (int i = 0; i < count; i++)
    for (int o = 0; o < g->nodes[i].n_outputs; o++)
      if (g->nodes[i].outputs[o] >= 0) g->values[g->nodes[i].outputs[o]].producer = i;
out:
  free(producer);
  free(pending);
  free(order);
  free(done);
  free(sorted);
  return err;
}

const keel_attr *keel_node_attr(const keel_node *n, const char *name) {
  for (int i = 0; i < n->n_attrs; i++)
    if (!strcmp(n->attrs[i].name, name)) return &n->attrs[i];
  return NULL;
}

int64_t keel_attr_int(const keel_node *n, const char *name, int64_t dflt) {
  const keel_attr *a = keel_node_attr(n, name);
  if (!a) return dflt;
  if (a->type == KEEL_ATTR_INT) return a->i;
  if (a->type == KEEL_ATTR_FLOAT) { /* saturate: converting an out-of-range float is undefined */
    if (!(a->f == a->f)) return dflt;
    if (a->f >= 9.2233720e18f) return INT64_MAX;
    if (a->f <= -9.2233720e18f) return INT64_MIN;
    return (int64_t)a->f;
  }
  return dflt;
}

float keel_attr_float(const keel_node *n, const char *name, float dflt) {
  const keel_attr *a = keel_node_attr(n, name);
  if (!a) return dflt;
  if (a->type == KEEL_ATTR_FLOAT) return a->f;
  if (a->type == KEEL_ATTR_INT) return (float)a->i;
  return dflt;
}

const char *keel_attr_string(const keel_node *n, const char *name, const char *dflt) {
  const keel_attr *a = keel_node_attr(n, name);
  return a && a->type == KEEL_ATTR_STRING && a->s ? a->s : dflt;
}

int keel_attr_ints(const keel_node *n, const char *name, const int64_t **out) {
  const keel_attr *a = keel_node_attr(n, name);
  if (!a || a->type != KEEL_ATTR_INTS) {
    *out = NULL;
    return -1;
  }
  *out = a->ints;
  return a->n;
}

int keel_attr_floats(const keel_node *n, const char *name, const float **out) {
  const keel_attr *a = keel_node_attr(n, name);
  if (!a || a->type != KEEL_ATTR_FLOATS) {
    *out = NULL;
    return -1;
  }
  *out = a->floats;
  return a->n;
}

const char *keel_node_desc(const keel_node *n) {
  static _Thread_local char buf[256];
  snprintf(buf, sizeof buf, "node '%s' (%s)", n->name, n->op_type);
  return buf;
}
