/* ModelProto -> IR graph. Names are resolved through a hash map per graph (keel_graph_find_value is
 * linear, and models have tens of thousands of values). */
#define _GNU_SOURCE
#include "onnx/onnx_import.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/shape.h"
#include "graph/gradient.h"
#include "onnx/onnx_internal.h"

/* ---- name -> value index map (open addressing) ---------------------------------------------------- */

typedef struct name_map {
  int *slots; /* value index + 1; 0 = empty */
  size_t cap; /* power of two */
  size_t count;
} name_map;

static uint64_t hash_name(const char *s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
  return h;
}

static int map_find(const name_map *m, const keel_graph *g, const char *name) {
  if (!m->cap) return -1;
  for (size_t i = hash_name(name) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
    int v = m->slots[i];
    if (!v) return -1;
    if (strcmp(g->values[v - 1].name, name) == 0) return v - 1;
  }
}

static bool map_put(name_map *m, const keel_graph *g, int idx) {
  if ((m->count + 1) * 2 > m->cap) {
    size_t ncap = m->cap ? m->cap * 2 : 64;
    int *ns = calloc(ncap, sizeof *ns);
    if (!ns) return false;
    for (size_t i = 0; i < m->cap; i++) {
      int v = m->slots[i];
      if (!v) continue;
      size_t j = hash_name(g->values[v - 1].name) & (ncap - 1);
      while (ns[j]) j = (j + 1) & (ncap - 1);
      ns[j] = v;
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
  }
  size_t j = hash_name(g->values[idx].name) & (m->cap - 1);
  while (m->slots[j]) j = (j + 1) & (m->cap - 1);
  m->slots[j] = idx + 1;
  m->count++;
  return true;
}

/* ---- import context -------------------------------------------------------------------------------- */

typedef struct import_ctx {
  keel_onnx_tensor_ctx tc;
  const Onnx__ModelProto *model;
  int depth; /* subgraph nesting */
  int max_depth;
  uint64_t nodes, max_nodes; /* nodes imported so far (all graphs) and the limit */
} import_ctx;

typedef struct graph_builder {
  keel_graph *g;
  name_map map;
  bool top;
} graph_builder;

static const char *nz(const char *s) { return s ? s : ""; }

static const char *canon_domain(const char *d) {
  if (!d || strcmp(d, "ai.onnx") == 0) return "";
  return d;
}

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *r = malloc(n);
  if (r) memcpy(r, s, n);
  return r;
}

static keel_status *oom(const char *where) { return keel_error(KEEL_OUT_OF_MEMORY, "out of memory %s", where); }

/* New value named `name` with nothing known about it yet. */
static keel_status *new_value(graph_builder *b, const char *name, int *out) {
  int idx = keel_graph_add_value(b->g, name);
  if (idx < 0) return oom("adding a value");
  keel_value *v = &b->g->values[idx];
  v->dtype = KEEL_DTYPE_UNDEFINED;
  v->ndim = -1;
  for (int i = 0; i < KEEL_MAX_DIMS; i++) v->dims[i] = -1;
  v->producer = -1;
  if (!map_put(&b->map, b->g, idx)) return oom("indexing value names");
  *out = idx;
  return NULL;
}

static keel_status *get_value(graph_builder *b, const char *name, int *out) {
  int idx = map_find(&b->map, b->g, name);
  if (idx >= 0) {
    *out = idx;
    return NULL;
  }
  return new_value(b, name, out);
}

static void set_value_tensor_info(keel_value *v, const keel_tensor *t) {
  v->dtype = keel_tensor_dtype(t);
  v->ndim = keel_tensor_ndim(t);
  const int64_t *d = keel_tensor_dims(t);
  for (int i = 0; i < v->ndim; i++) v->dims[i] = d[i];
}

/* Declared type of a graph input/output. Tensors, sequences of tensors and optionals of either are kept
 * (value->kind; the interpreter runs sequences and optionals); maps, sparse tensors and nested sequences are
 * refused at the top level and left unknown inside subgraphs. */
static keel_status *apply_value_info(graph_builder *b, const Onnx__ValueInfoProto *vi, keel_value *v,
                                     const char *role) {
  const Onnx__TypeProto *tp = vi->type;
  if (!tp) return NULL; /* untyped (allowed in subgraphs and old models) */
  keel_value_kind kind = KEEL_VALUE_TENSOR;
  if (tp->value_case == ONNX__TYPE_PROTO__VALUE_OPTIONAL_TYPE && tp->optional_type && tp->optional_type->elem_type) {
    kind = KEEL_VALUE_OPTIONAL;
    tp = tp->optional_type->elem_type;
  }
  if (tp->value_case == ONNX__TYPE_PROTO__VALUE_SEQUENCE_TYPE && tp->sequence_type && tp->sequence_type->elem_type) {
    kind = kind == KEEL_VALUE_OPTIONAL ? KEEL_VALUE_OPTIONAL_SEQUENCE : KEEL_VALUE_SEQUENCE;
    tp = tp->sequence_type->elem_type;
  }
  if (tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type) {
    if (!b->top) return NULL;
    return keel_error(KEEL_UNSUPPORTED, "graph %s '%s' is not a tensor, a sequence of tensors or an optional of "
                      "those (map, sparse and nested sequence values are not supported)", role, v->name);
  }
  v->kind = kind;
  const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
  if (tt->has_elem_type && tt->elem_type != 0) {
    keel_dtype dt = keel_onnx_dtype(tt->elem_type);
    if (dt == KEEL_DTYPE_UNDEFINED)
      return keel_error(KEEL_UNSUPPORTED, "graph %s '%s' has element type %s (%d), which keel does not support",
                        role, v->name, keel_onnx_dtype_name(tt->elem_type), (int)tt->elem_type);
    v->dtype = dt;
  }
  /* Element shapes of sequences vary, and an optional may be empty: only tensors keep a declared shape. */
  if (!tt->shape || kind != KEEL_VALUE_TENSOR) return NULL;
  if (tt->shape->n_dim > KEEL_MAX_DIMS)
    return keel_error(KEEL_UNSUPPORTED, "graph %s '%s' has rank %zu, above keel's maximum of %d", role, v->name,
                      tt->shape->n_dim, KEEL_MAX_DIMS);
  v->ndim = (int)tt->shape->n_dim;
  for (int i = 0; i < v->ndim; i++) {
    const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
    v->dims[i] = -1;
    if (!d) continue;
    if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
      /* Some exporters write -1 for "unknown": treat any negative value so. */
      v->dims[i] = d->dim_value >= 0 ? d->dim_value : -1;
    } else if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM && d->dim_param &&
               d->dim_param[0]) {
      free(v->dim_params[i]);
      v->dim_params[i] = dup_str(d->dim_param);
      if (!v->dim_params[i]) return oom("copying a dimension name");
    }
  }
  return NULL;
}

static keel_status *import_graph(import_ctx *c, const Onnx__GraphProto *gp, bool top, keel_graph **out);

static int64_t opset_of(const keel_graph *g, const char *domain) {
  for (int i = 0; i < g->n_opsets; i++)
    if (strcmp(g->opsets[i].domain, domain) == 0) return g->opsets[i].version;
  return -1;
}

/* Heuristic for IR version 1 attributes, which had no `type`: the field that is set. */
static int attr_guess_type(const Onnx__AttributeProto *a) {
  if (a->has_f) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
  if (a->has_i) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
  if (a->has_s) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
  if (a->t) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR;
  if (a->g) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH;
  if (a->n_floats) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS;
  if (a->n_ints) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
  if (a->n_strings) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS;
  return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED;
}

static char *dup_bytes(const ProtobufCBinaryData *d) {
  char *r = malloc(d->len + 1);
  if (!r) return NULL;
  if (d->len) memcpy(r, d->data, d->len);
  r[d->len] = '\0';
  return r;
}

static keel_status *import_attr(import_ctx *c, keel_node *n, const Onnx__AttributeProto *a) {
  const char *an = nz(a->name);
  if (!an[0]) return keel_error(KEEL_INVALID_MODEL, "%s has an attribute without a name", keel_node_desc(n));
  if (a->ref_attr_name && a->ref_attr_name[0])
    return keel_error(KEEL_INVALID_MODEL, "%s: attribute '%s' refers to function attribute '%s' outside a function",
                      keel_node_desc(n), an, a->ref_attr_name);
  int type = a->has_type ? (int)a->type : attr_guess_type(a);
  keel_attr *at = keel_node_add_attr(n, an);
  if (!at) return oom("adding an attribute");
  char what[512];
  switch (type) {
  case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT:
    at->type = KEEL_ATTR_FLOAT;
    at->f = a->f;
    break;
  case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT:
    at->type = KEEL_ATTR_INT;
    at->i = a->i;
    break;
  case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING:
    at->type = KEEL_ATTR_STRING;
    at->s = dup_bytes(&a->s);
    if (!at->s) return oom("copying a string attribute");
    at->s_len = a->s.len;
    break;
  case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR:
    if (!a->t) return keel_error(KEEL_INVALID_MODEL, "%s: tensor attribute '%s' has no tensor", keel_node_desc(n), an);
    snprintf(what, sizeof what, "attribute '%s' of %s", an, keel_node_desc(n));
    KEEL_TRY(keel_onnx_tensor_from_proto(a->t, what, &c->tc, &at->t));
    at->type = KEEL_ATTR_TENSOR;
    break;
  case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH: {
    if (!a->g) return keel_error(KEEL_INVALID_MODEL, "%s: graph attribute '%s' has no graph", keel_node_desc(n), an);
    at->type = KEEL_ATTR_GRAPH;
    /* keel_node_desc uses a thread-local buffer that the subgraph import overwrites: copy it first. */
    snprintf(what, sizeof what, "in subgraph '%s' of %s: ", an, keel_node_desc(n));
    keel_status *s = import_graph(c, a->g, false, &at->g);
    if (s) return keel_error_prefix(s, "%s", what);
    break;
  }
  case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS:
    at->type = KEEL_ATTR_FLOATS;
    if (a->n_floats > (size_t)INT32_MAX) return keel_error(KEEL_INVALID_MODEL, "attribute '%s' too long", an);
    at->floats = malloc((a->n_floats ? a->n_floats : 1) * sizeof(float));
    if (!at->floats) return oom("copying an attribute");
    if (a->n_floats) memcpy(at->floats, a->floats, a->n_floats * sizeof(float));
    at->n = (int)a->n_floats;
    break;
  case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS:
    at->type = KEEL_ATTR_INTS;
    if (a->n_ints > (size_t)INT32_MAX) return keel_error(KEEL_INVALID_MODEL, "attribute '%s' too long", an);
    at->ints = malloc((a->n_ints ? a->n_ints : 1) * sizeof(int64_t));
    if (!at->ints) return oom("copying an attribute");
    if (a->n_ints) memcpy(at->ints, a->ints, a->n_ints * sizeof(int64_t));
    at->n = (int)a->n_ints;
    break;
  case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS:
    at->type = KEEL_ATTR_STRINGS;
    if (a->n_strings > (size_t)INT32_MAX) return keel_error(KEEL_INVALID_MODEL, "attribute '%s' too long", an);
    at->strings = calloc(a->n_strings ? a->n_strings : 1, sizeof(char *));
    if (!at->strings) return oom("copying an attribute");
    for (size_t i = 0; i < a->n_strings; i++) {
      at->strings[i] = dup_bytes(&a->strings[i]);
      if (!at->strings[i]) return oom("copying an attribute");
      at->n = (int)i + 1; /* count only what is allocated, so cleanup is exact */
    }
    break;
  case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__SPARSE_TENSOR:
  case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__SPARSE_TENSORS:
    return keel_error(KEEL_UNSUPPORTED, "%s: attribute '%s' is a sparse tensor, which keel does not support",
                      keel_node_desc(n), an);
  default:
    /* TENSORS, GRAPHS, TYPE_PROTO(S): kept as UNDEFINED so a kernel that needs it can say so. */
    at->type = KEEL_ATTR_UNDEFINED;
    break;
  }
  return NULL;
}

/* keel_tensor_from_data, but with the weights' allocator. */
static keel_status *tensor_copy(keel_dtype dt, const int64_t *dims, int ndim, const void *src, keel_allocator *al,
                                keel_tensor **out) {
  KEEL_TRY(keel_tensor_create(dt, dims, ndim, al, out));
  size_t nb = keel_tensor_nbytes(*out);
  if (nb) memcpy(keel_tensor_data(*out), src, nb);
  return NULL;
}

/* String constants stay nodes (keel::StringConstant, ops/string.c) rather than constant values: constant
 * folding runs byte-moving kernels over constants, and string elements copied that way would be owned
 * twice. A node with no inputs is never folded, and its value lives in the interpreter like any string. */
static keel_status *string_constant_node(graph_builder *b, int vi, keel_tensor *t, const char *what) {
  char name[300];
  snprintf(name, sizeof name, "%s", b->g->values[vi].name);
  int ni = keel_graph_add_node(b->g, name, "StringConstant", "keel");
  keel_node *n = ni >= 0 ? &b->g->nodes[ni] : NULL;
  keel_attr *a = n && keel_node_set_n_outputs(n, 1) ? keel_node_add_attr(n, "value") : NULL;
  if (!a) {
    keel_tensor_release(t);
    return keel_error(KEEL_OUT_OF_MEMORY, "out of memory importing %s", what);
  }
  n->opset = 1;
  n->outputs[0] = vi;
  a->type = KEEL_ATTR_TENSOR;
  a->t = t;
  b->g->values[vi].producer = ni;
  set_value_tensor_info(&b->g->values[vi], t);
  return NULL;
}

/* A Constant node: its tensor becomes the constant of its output value. */
static keel_status *import_constant(import_ctx *c, graph_builder *b, const Onnx__NodeProto *np, const char *nname) {
  if (np->n_output != 1 || !np->output[0] || !np->output[0][0])
    return keel_error(KEEL_INVALID_MODEL, "Constant node '%s' must have exactly one output", nname);
  if (np->n_attribute != 1 || !np->attribute[0])
    return keel_error(KEEL_INVALID_MODEL, "Constant node '%s' must have exactly one attribute (has %zu)", nname,
                      np->n_attribute);
  const Onnx__AttributeProto *a = np->attribute[0];
  const char *an = nz(a->name);
  char what[512];
  snprintf(what, sizeof what, "Constant node '%s'", nname);
  keel_tensor *t = NULL;
  keel_allocator *al = c->tc.alloc;
  if (strcmp(an, "value") == 0) {
    if (!a->t) return keel_error(KEEL_INVALID_MODEL, "%s: attribute 'value' holds no tensor", what);
    KEEL_TRY(keel_onnx_tensor_from_proto(a->t, what, &c->tc, &t));
  } else if (strcmp(an, "value_float") == 0) {
    KEEL_TRY(tensor_copy(KEEL_FLOAT32, NULL, 0, &a->f, al, &t));
  } else if (strcmp(an, "value_int") == 0) {
    KEEL_TRY(tensor_copy(KEEL_INT64, NULL, 0, &a->i, al, &t));
  } else if (strcmp(an, "value_floats") == 0 || strcmp(an, "value_ints") == 0) {
    bool f = an[6] == 'f';
    int64_t n = f ? (int64_t)a->n_floats : (int64_t)a->n_ints;
    float dummyf = 0;
    int64_t dummyi = 0;
    const void *src = f ? (n ? (const void *)a->floats : &dummyf) : (n ? (const void *)a->ints : &dummyi);
    KEEL_TRY(tensor_copy(f ? KEEL_FLOAT32 : KEEL_INT64, &n, 1, src, al, &t));
  } else if (strcmp(an, "value_string") == 0 || strcmp(an, "value_strings") == 0) {
    bool one = an[12] == 0;
    int64_t n = one ? 1 : (int64_t)a->n_strings;
    KEEL_TRY(keel_tensor_create(KEEL_STRING, &n, one ? 0 : 1, al, &t));
    for (int64_t k = 0; k < n; k++) {
      const ProtobufCBinaryData *d = one ? &a->s : &a->strings[k];
      keel_status *s = keel_tensor_set_string(t, k, (const char *)d->data, d->len);
      if (s) {
        keel_tensor_release(t);
        return s;
      }
    }
  } else if (strcmp(an, "sparse_value") == 0) {
    return keel_error(KEEL_UNSUPPORTED, "%s: sparse constants are not supported", what);
  } else {
    return keel_error(KEEL_INVALID_MODEL, "%s: unknown attribute '%s'", what, an);
  }
  int vi;
  keel_status *s = get_value(b, np->output[0], &vi);
  if (!s) {
    keel_value *v = &b->g->values[vi];
    if (v->producer >= 0 || v->constant || v->is_input)
      s = keel_error(KEEL_INVALID_MODEL, "value '%s' is produced twice (second time by %s)", v->name, what);
  }
  if (s) {
    keel_tensor_release(t);
    return s;
  }
  if (keel_tensor_dtype(t) == KEEL_STRING) return string_constant_node(b, vi, t, what);
  keel_value *v = &b->g->values[vi];
  v->constant = t;
  set_value_tensor_info(v, t);
  return NULL;
}

static keel_status *import_node(import_ctx *c, graph_builder *b, const Onnx__NodeProto *np, size_t index) {
  const char *op = nz(np->op_type);
  if (++c->nodes > c->max_nodes)
    return keel_error(KEEL_OUT_OF_MEMORY, "the model has more than %llu nodes (max_nodes)", (unsigned long long)c->max_nodes);
  char namebuf[256];
  const char *nname = nz(np->name);
  if (!op[0]) return keel_error(KEEL_INVALID_MODEL, "node %zu ('%s') has no op_type", index, nname);
  if (!nname[0]) {
    snprintf(namebuf, sizeof namebuf, "%s_%zu", op, index);
    nname = namebuf;
  }
  const char *domain = canon_domain(np->domain);
  int64_t opset = opset_of(b->g, domain);
  if (opset < 0)
    return keel_error(KEEL_INVALID_MODEL, "node '%s' (%s) uses domain '%s', which the model does not import "
                      "(no opset_import entry)", nname, op, domain[0] ? domain : "ai.onnx");
  if (domain[0] == '\0' && strcmp(op, "Constant") == 0) return import_constant(c, b, np, nname);

  int ni = keel_graph_add_node(b->g, nname, op, domain);
  if (ni < 0) return oom("adding a node");
  keel_node *n = &b->g->nodes[ni];
  n->opset = opset > INT32_MAX ? INT32_MAX : (int)opset;
  if (np->n_input > (size_t)INT32_MAX || np->n_output > (size_t)INT32_MAX)
    return keel_error(KEEL_INVALID_MODEL, "node '%s' has too many inputs or outputs", nname);
  if (!keel_node_set_n_inputs(n, (int)np->n_input) || !keel_node_set_n_outputs(n, (int)np->n_output))
    return oom("sizing a node");
  for (size_t i = 0; i < np->n_input; i++) {
    const char *in = nz(np->input[i]);
    if (!in[0]) continue; /* omitted optional input: stays -1 */
    int vi;
    KEEL_TRY(get_value(b, in, &vi));
    b->g->nodes[ni].inputs[i] = vi;
  }
  for (size_t i = 0; i < np->n_output; i++) {
    const char *on = nz(np->output[i]);
    if (!on[0]) continue;
    int vi;
    KEEL_TRY(get_value(b, on, &vi));
    keel_value *v = &b->g->values[vi];
    if (v->producer >= 0)
      return keel_error(KEEL_INVALID_MODEL, "value '%s' is produced twice: by node '%s' and by node '%s'", on,
                        b->g->nodes[v->producer].name, nname);
    if (v->constant || v->is_input)
      return keel_error(KEEL_INVALID_MODEL, "node '%s' (%s) writes value '%s', which is already a graph %s", nname,
                        op, on, v->is_input ? "input" : "initializer or constant");
    v->producer = ni;
    b->g->nodes[ni].outputs[i] = vi;
  }
  for (size_t i = 0; i < np->n_attribute; i++) {
    if (!np->attribute[i]) continue;
    /* Re-fetch the node each time: a subgraph import does not touch this graph, but be safe. */
    KEEL_TRY(import_attr(c, &b->g->nodes[ni], np->attribute[i]));
  }
  return NULL;
}

static keel_status *copy_opsets(import_ctx *c, keel_graph *g) {
  const Onnx__ModelProto *m = c->model;
  g->opsets = calloc(m->n_opset_import ? m->n_opset_import : 1, sizeof *g->opsets);
  if (!g->opsets) return oom("copying opset imports");
  for (size_t i = 0; i < m->n_opset_import; i++) {
    const Onnx__OperatorSetIdProto *o = m->opset_import[i];
    if (!o) continue;
    const char *d = canon_domain(o->domain);
    int64_t ver = o->has_version ? o->version : 0;
    int prev = -1;
    for (int j = 0; j < g->n_opsets; j++)
      if (strcmp(g->opsets[j].domain, d) == 0) prev = j;
    if (prev >= 0) { /* repeated domain: the highest version binds (as the spec says for nodes) */
      if (ver > g->opsets[prev].version) g->opsets[prev].version = ver;
      continue;
    }
    char *dd = dup_str(d);
    if (!dd) return oom("copying opset imports");
    g->opsets[g->n_opsets].domain = dd;
    g->opsets[g->n_opsets].version = ver;
    g->n_opsets++;
  }
  return NULL;
}

static keel_status *build_graph(import_ctx *c, graph_builder *b, const Onnx__GraphProto *gp) {
  keel_graph *g = b->g;
  if (gp->name) {
    g->name = dup_str(gp->name);
    if (!g->name) return oom("copying the graph name");
  }
  KEEL_TRY(copy_opsets(c, g));
  if (gp->n_sparse_initializer)
    return keel_error(KEEL_UNSUPPORTED, "sparse initializer '%s' is not supported",
                      gp->sparse_initializer[0] && gp->sparse_initializer[0]->values
                          ? nz(gp->sparse_initializer[0]->values->name)
                          : "?");
  char what[512];
  for (size_t i = 0; i < gp->n_initializer; i++) {
    Onnx__TensorProto *tp = gp->initializer[i];
    if (!tp) continue;
    const char *nm = nz(tp->name);
    if (!nm[0]) return keel_error(KEEL_INVALID_MODEL, "initializer %zu has no name", i);
    if (map_find(&b->map, g, nm) >= 0)
      return keel_error(KEEL_INVALID_MODEL, "initializer '%s' is defined twice", nm);
    int vi;
    KEEL_TRY(new_value(b, nm, &vi));
    snprintf(what, sizeof what, "initializer '%s'", nm);
    keel_tensor *t;
    KEEL_TRY(keel_onnx_tensor_from_proto(tp, what, &c->tc, &t));
    if (keel_tensor_dtype(t) == KEEL_STRING) {
      KEEL_TRY(string_constant_node(b, vi, t, what));
      continue;
    }
    g->values[vi].constant = t;
    set_value_tensor_info(&g->values[vi], t);
    /* The weights now live in the tensor: drop protobuf-c's copy (malloc'd by its default allocator) so
     * peak memory stays near two copies of the model instead of three. */
    if (tp->raw_data.data) {
      free(tp->raw_data.data);
      tp->raw_data.data = NULL;
      tp->raw_data.len = 0;
      tp->has_raw_data = 0;
    }
  }

  g->inputs = malloc((gp->n_input ? gp->n_input : 1) * sizeof(int));
  if (!g->inputs) return oom("listing graph inputs");
  for (size_t i = 0; i < gp->n_input; i++) {
    const Onnx__ValueInfoProto *vi = gp->input[i];
    if (!vi) continue;
    const char *nm = nz(vi->name);
    if (!nm[0]) return keel_error(KEEL_INVALID_MODEL, "graph input %zu has no name", i);
    int idx = map_find(&b->map, g, nm);
    if (idx >= 0) {
      if (g->values[idx].is_input) return keel_error(KEEL_INVALID_MODEL, "graph input '%s' is listed twice", nm);
      continue; /* an initializer: a constant, not something the caller feeds */
    }
    KEEL_TRY(new_value(b, nm, &idx));
    g->values[idx].is_input = true;
    g->inputs[g->n_inputs++] = idx;
    KEEL_TRY(apply_value_info(b, vi, &g->values[idx], "input"));
  }

  for (size_t i = 0; i < gp->n_node; i++) {
    if (!gp->node[i]) continue;
    KEEL_TRY(import_node(c, b, gp->node[i], i));
  }

  g->outputs = malloc((gp->n_output ? gp->n_output : 1) * sizeof(int));
  if (!g->outputs) return oom("listing graph outputs");
  for (size_t i = 0; i < gp->n_output; i++) {
    const Onnx__ValueInfoProto *vi = gp->output[i];
    if (!vi) continue;
    const char *nm = nz(vi->name);
    if (!nm[0]) return keel_error(KEEL_INVALID_MODEL, "graph output %zu has no name", i);
    int idx;
    KEEL_TRY(get_value(b, nm, &idx));
    keel_value *v = &g->values[idx];
    if (b->top && v->producer < 0 && !v->constant && !v->is_input)
      return keel_error(KEEL_INVALID_MODEL,
                        "graph output '%s' is not produced by any node and is neither an input nor an initializer",
                        nm);
    v->is_output = true;
    g->outputs[g->n_outputs++] = idx;
    if (v->producer >= 0 && v->dtype == KEEL_DTYPE_UNDEFINED)
      KEEL_TRY(apply_value_info(b, vi, v, "output"));
  }
  return NULL;
}

static keel_status *import_graph(import_ctx *c, const Onnx__GraphProto *gp, bool top, keel_graph **out) {
  *out = NULL;
  if (c->depth > c->max_depth)
    return keel_error(KEEL_INVALID_MODEL, "subgraphs are nested more than %d deep (max_graph_depth)", c->max_depth);
  graph_builder b = {0};
  b.top = top;
  b.g = keel_graph_create();
  if (!b.g) return oom("creating a graph");
  c->depth++;
  keel_status *s = build_graph(c, &b, gp);
  c->depth--;
  free(b.map.slots);
  if (s) {
    keel_graph_destroy(b.g);
    return s;
  }
  *out = b.g;
  return NULL;
}

static bool looks_like_text(const uint8_t *p, size_t n) {
  size_t k = n < 64 ? n : 64;
  if (k == 0) return false;
  for (size_t i = 0; i < k; i++)
    if (!(p[i] == '\n' || p[i] == '\r' || p[i] == '\t' || (p[i] >= 0x20 && p[i] < 0x7f))) return false;
  return true;
}

keel_status *keel_onnx_import(const void *data, size_t size, const char *base_dir, const keel_engine_options *opt,
                              keel_graph **out) {
  if (!out) return keel_error(KEEL_INVALID_ARGUMENT, "keel_onnx_import: out is NULL");
  *out = NULL;
  if (!data && size) return keel_error(KEEL_INVALID_ARGUMENT, "keel_onnx_import: data is NULL");
  uint64_t max_bytes = opt && opt->max_model_bytes ? opt->max_model_bytes : KEEL_DEFAULT_MAX_MODEL_BYTES;
  if ((uint64_t)size > max_bytes)
    return keel_error(KEEL_OUT_OF_MEMORY, "model is %zu bytes, above the limit of %llu (max_model_bytes)", size,
                      (unsigned long long)max_bytes);
  if (size == 0) return keel_error(KEEL_INVALID_MODEL, "model is empty (0 bytes)");
  int wc = keel_onnx_wire_check(&onnx__model_proto__descriptor, data, size);
  if (wc == 1)
    return keel_error(KEEL_INVALID_MODEL, "model nests messages more than %d deep; refusing it",
                      KEEL_ONNX_MAX_NESTING);
  Onnx__ModelProto *m = wc ? NULL : onnx__model_proto__unpack(NULL, size, data);
  if (!m)
    return keel_error(KEEL_INVALID_MODEL,
                      "not a valid ONNX model (%zu bytes): the protobuf data is truncated or corrupt%s", size,
                      looks_like_text(data, size) ? " (the file looks like text, not a binary .onnx file)" : "");
  keel_status *s = NULL;
  if (!m->graph) {
    s = keel_error(KEEL_INVALID_MODEL, "not a valid ONNX model: it has no graph%s",
                   m->has_ir_version ? "" : " and no ir_version (is this an ONNX file?)");
    goto done;
  }
  import_ctx c = {0};
  c.model = m;
  c.max_depth = opt && opt->max_graph_depth > 0 ? opt->max_graph_depth : 16;
  if (c.max_depth > KEEL_ONNX_MAX_NESTING) c.max_depth = KEEL_ONNX_MAX_NESTING;
  c.max_nodes = opt && opt->max_nodes ? opt->max_nodes : (uint64_t)1 << 20;
  keel_onnx_tensor_ctx_init(&c.tc, opt, base_dir);
  keel_graph *g = NULL;
  s = import_graph(&c, m->graph, true, &g);
  keel_onnx_tensor_ctx_fini(&c.tc);
  if (!s) s = keel_graph_expand_gradients(g); /* training Gradient nodes become ordinary nodes */
  if (s) {
    keel_graph_destroy(g);
    goto done;
  }
  g->ir_version = m->has_ir_version ? m->ir_version : 0;
  if (m->producer_name) {
    g->producer_name = dup_str(m->producer_name);
    if (!g->producer_name) {
      keel_graph_destroy(g);
      s = oom("copying the producer name");
      goto done;
    }
  }
  *out = g;
done:
  onnx__model_proto__free_unpacked(m, NULL);
  return s;
}

/* ---- test-data tensors ----------------------------------------------------------------------------- */

keel_status *keel_onnx_decode_tensor(const void *data, size_t size, keel_tensor **out, char **name_out) {
  if (!out) return keel_error(KEEL_INVALID_ARGUMENT, "keel_onnx_decode_tensor: out is NULL");
  *out = NULL;
  if (name_out) *name_out = NULL;
  if (!data && size) return keel_error(KEEL_INVALID_ARGUMENT, "keel_onnx_decode_tensor: data is NULL");
  int wc = keel_onnx_wire_check(&onnx__tensor_proto__descriptor, data, size);
  Onnx__TensorProto *tp = wc ? NULL : onnx__tensor_proto__unpack(NULL, size, data);
  if (!tp)
    return keel_error(KEEL_INVALID_MODEL, "not a valid TensorProto (%zu bytes): truncated or corrupt", size);
  keel_onnx_tensor_ctx tc;
  keel_onnx_tensor_ctx_init(&tc, NULL, NULL);
  char what[300];
  snprintf(what, sizeof what, "tensor '%.256s'", nz(tp->name));
  keel_status *s = keel_onnx_tensor_from_proto(tp, what, &tc, out);
  keel_onnx_tensor_ctx_fini(&tc);
  if (!s && name_out && tp->name && tp->name[0]) {
    *name_out = dup_str(tp->name);
    if (!*name_out) {
      keel_tensor_release(*out);
      *out = NULL;
      s = oom("copying a tensor name");
    }
  }
  onnx__tensor_proto__free_unpacked(tp, NULL);
  return s;
}

keel_status *keel_onnx_encode_tensor(const keel_tensor *t, const char *name, void **out, size_t *size) {
  if (!t || !out || !size) return keel_error(KEEL_INVALID_ARGUMENT, "keel_onnx_encode_tensor: NULL argument");
  *out = NULL;
  *size = 0;
  keel_dtype dt = keel_tensor_dtype(t);
  if (keel_dtype_size(dt) == 0)
    return keel_error(KEEL_UNSUPPORTED, "cannot encode a tensor of type %s", keel_dtype_name(dt));
  Onnx__TensorProto tp = ONNX__TENSOR_PROTO__INIT;
  ProtobufCBinaryData *strs = NULL;
  int ndim = keel_tensor_ndim(t);
  int64_t dims[KEEL_MAX_DIMS];
  memcpy(dims, keel_tensor_dims(t), (size_t)ndim * sizeof(int64_t));
  tp.n_dims = (size_t)ndim;
  tp.dims = dims;
  tp.has_data_type = 1;
  tp.data_type = (int32_t)dt;
  tp.name = (char *)(name ? name : "");
  if (dt == KEEL_STRING) { /* string_data: one bytes field per element (borrowed from the tensor) */
    size_t n = (size_t)keel_tensor_numel(t);
    const keel_string *e = keel_tensor_data_const(t);
    strs = calloc(n ? n : 1, sizeof *strs);
    if (!strs) return oom("encoding a tensor");
    for (size_t i = 0; i < n; i++) {
      strs[i].len = e[i].data ? e[i].len : 0;
      strs[i].data = (uint8_t *)e[i].data;
    }
    tp.n_string_data = n;
    tp.string_data = strs;
    size_t sz = onnx__tensor_proto__get_packed_size(&tp);
    uint8_t *sb = malloc(sz ? sz : 1);
    size_t w = sb ? onnx__tensor_proto__pack(&tp, sb) : 0;
    free(strs);
    if (!sb) return oom("encoding a tensor");
    if (w != sz) {
      free(sb);
      return keel_error(KEEL_INTERNAL, "TensorProto packing wrote %zu bytes, expected %zu", w, sz);
    }
    *out = sb;
    *size = sz;
    return NULL;
  }
  size_t nbytes = keel_tensor_nbytes(t);
  uint8_t *swapped = NULL;
  tp.has_raw_data = 1;
  tp.raw_data.len = nbytes;
  tp.raw_data.data = (uint8_t *)keel_tensor_data_const(t);
  size_t esize = keel_dtype_size(dt);
  if (esize > 1 && nbytes) {
    const uint16_t one = 1;
    uint8_t lo;
    memcpy(&lo, &one, 1);
    if (!lo) { /* big-endian host: raw_data is little-endian */
      swapped = malloc(nbytes);
      if (!swapped) return oom("encoding a tensor");
      for (size_t i = 0; i < nbytes; i += esize)
        for (size_t k = 0; k < esize; k++) swapped[i + k] = tp.raw_data.data[i + esize - 1 - k];
      tp.raw_data.data = swapped;
    }
  }
  const int pf = keel_dtype_pack_factor(dt);
  if (pf > 1 && nbytes) { /* 4-/2-bit types: pack pf elements a byte, the first in the low bits */
    const size_t numel = nbytes, packed = (numel + (size_t)pf - 1) / (size_t)pf;
    const int bits = 8 / pf;
    const uint8_t mask = (uint8_t)((1u << bits) - 1);
    swapped = calloc(packed, 1);
    if (!swapped) return oom("encoding a tensor");
    for (size_t i = 0; i < numel; i++)
      swapped[i / (size_t)pf] |= (uint8_t)((tp.raw_data.data[i] & mask) << (bits * (int)(i % (size_t)pf)));
    tp.raw_data.data = swapped;
    tp.raw_data.len = packed;
  }
  size_t n = onnx__tensor_proto__get_packed_size(&tp);
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) {
    free(swapped);
    return oom("encoding a tensor");
  }
  size_t w = onnx__tensor_proto__pack(&tp, buf);
  free(swapped);
  if (w != n) {
    free(buf);
    return keel_error(KEEL_INTERNAL, "TensorProto packing wrote %zu bytes, expected %zu", w, n);
  }
  *out = buf;
  *size = n;
  return NULL;
}

/* ---- files ----------------------------------------------------------------------------------------- */

keel_status *keel_read_file(const char *path, size_t max_bytes, void **data, size_t *size) {
  if (!path || !data || !size) return keel_error(KEEL_INVALID_ARGUMENT, "keel_read_file: NULL argument");
  *data = NULL;
  *size = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return keel_error(KEEL_IO_ERROR, "cannot open '%s': %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    int e = errno;
    close(fd);
    return keel_error(KEEL_IO_ERROR, "cannot stat '%s': %s", path, strerror(e));
  }
  if (S_ISDIR(sb.st_mode)) {
    close(fd);
    return keel_error(KEEL_IO_ERROR, "'%s' is a directory, not a file", path);
  }
  if (S_ISREG(sb.st_mode) && max_bytes && (uint64_t)sb.st_size > (uint64_t)max_bytes) {
    close(fd);
    return keel_error(KEEL_OUT_OF_MEMORY, "'%s' is %lld bytes, above the limit of %zu bytes", path,
                      (long long)sb.st_size, max_bytes);
  }
  if ((uint64_t)sb.st_size >= (uint64_t)SIZE_MAX / 2) {
    close(fd);
    return keel_error(KEEL_OUT_OF_MEMORY, "'%s' is too large to read into memory", path);
  }
  /* One byte of slack so that end-of-file is seen without growing; pipes and /proc files report size 0
   * and grow as needed. */
  size_t cap = S_ISREG(sb.st_mode) ? (size_t)sb.st_size + 1 : 4096, len = 0;
  uint8_t *buf = malloc(cap);
  keel_status *s = NULL;
  if (!buf) s = keel_error(KEEL_OUT_OF_MEMORY, "out of memory reading '%s' (%zu bytes)", path, cap);
  while (!s) {
    if (len == cap) {
      uint8_t *nb = cap < SIZE_MAX / 4 ? realloc(buf, cap * 2) : NULL;
      if (!nb) {
        s = keel_error(KEEL_OUT_OF_MEMORY, "out of memory reading '%s'", path);
        break;
      }
      buf = nb;
      cap *= 2;
    }
    ssize_t r = read(fd, buf + len, cap - len);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) s = keel_error(KEEL_IO_ERROR, "reading '%s' failed: %s", path, strerror(errno));
    if (r <= 0) break;
    len += (size_t)r;
    if (max_bytes && len > max_bytes)
      s = keel_error(KEEL_OUT_OF_MEMORY, "'%s' is larger than the limit of %zu bytes", path, max_bytes);
  }
  close(fd);
  if (s) {
    free(buf);
    return s;
  }
  *data = buf;
  *size = len;
  return NULL;
}
