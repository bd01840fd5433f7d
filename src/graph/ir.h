/* The intermediate representation: a graph of nodes over values, decoded from ONNX.
 *
 * Values are addressed by index into graph->values; nodes by index into graph->nodes. A value's shape
 * here is the *declared* one (graph inputs) or the one inferred for the most recent plan; plans keep their
 * own copies (runtime/plan.h), so the engine graph stays immutable after load. */
#ifndef KEEL_GRAPH_IR_H
#define KEEL_GRAPH_IR_H

#include <stdbool.h>
#include <stdint.h>

#include <keel/status.h>
#include <keel/tensor.h>

struct keel_op_def;
struct keel_graph;

typedef enum keel_attr_type {
  KEEL_ATTR_UNDEFINED = 0,
  KEEL_ATTR_FLOAT = 1,
  KEEL_ATTR_INT = 2,
  KEEL_ATTR_STRING = 3,
  KEEL_ATTR_TENSOR = 4,
  KEEL_ATTR_GRAPH = 5,
  KEEL_ATTR_FLOATS = 6,
  KEEL_ATTR_INTS = 7,
  KEEL_ATTR_STRINGS = 8,
} keel_attr_type; /* values match onnx.AttributeProto.AttributeType */

typedef struct keel_attr {
  char *name;
  keel_attr_type type;
  float f;
  int64_t i;
  char *s;          /* NUL-terminated copy (binary strings also keep s_len) */
  size_t s_len;
  float *floats;
  int64_t *ints;
  char **strings;
  int n; /* element count of floats / ints / strings */
  keel_tensor *t;
  struct keel_graph *g; /* subgraph (control flow); may be NULL if unsupported */
} keel_attr;

/* Activation fused into a producer (Conv, Gemm, MatMul, Add) by the fusion pass. */
typedef enum keel_act {
  KEEL_ACT_NONE = 0,
  KEEL_ACT_RELU,
  KEEL_ACT_LEAKY_RELU, /* alpha */
  KEEL_ACT_CLIP,       /* alpha = min, beta = max */
  KEEL_ACT_SIGMOID,
  KEEL_ACT_TANH,
  KEEL_ACT_HARD_SIGMOID, /* alpha, beta */
  KEEL_ACT_HARD_SWISH,
  KEEL_ACT_GELU,
} keel_act;

/* What a value holds. Only the interpreter runs graphs with sequences and optionals (runtime/interp_seq.h);
 * graph inputs/outputs declared so are kept, but the tensor-only public API refuses them at run time. */
typedef enum keel_value_kind {
  KEEL_VALUE_TENSOR = 0,
  KEEL_VALUE_SEQUENCE,          /* seq(tensor); dtype is the element type */
  KEEL_VALUE_OPTIONAL,          /* optional(tensor); dtype is the element type */
  KEEL_VALUE_OPTIONAL_SEQUENCE, /* optional(seq(tensor)) */
} keel_value_kind;

typedef struct keel_value {
  char *name;
  keel_dtype dtype;               /* UNDEFINED until known */
  int ndim;                       /* -1 until known */
  int64_t dims[KEEL_MAX_DIMS];    /* -1 for unknown dims */
  char *dim_params[KEEL_MAX_DIMS];/* symbolic names from the model (graph inputs/outputs), or NULL */
  keel_tensor *constant;          /* initializer or folded constant; NULL otherwise */
  int producer;                   /* node index, or -1 for graph inputs and constants */
  bool is_input;                  /* a graph input the caller feeds */
  bool is_output;                 /* a graph output */
  bool is_outer;                  /* subgraphs only: a value of an enclosing graph, read by name */
  keel_value_kind kind;           /* declared kind (graph inputs/outputs); TENSOR when undeclared */
} keel_value;

typedef struct keel_node {
  char *name;    /* may be empty in ONNX; the importer fills "<op_type>_<index>" then */
  char *op_type;
  char *domain;  /* "" for the default ONNX domain */
  int opset;     /* opset version of the node's domain, from the model's opset imports */
  int n_inputs;
  int *inputs;   /* value indices; -1 for an omitted optional input */
  /* The last n_implicit_inputs of inputs[] are not ONNX inputs: they are values of this graph that the
   * node's subgraphs read by name (outer scope), listed so lifetimes and dead-node removal see them. */
  int n_implicit_inputs;
  int n_outputs;
  int *outputs;  /* value indices; -1 for an omitted optional output */
  int n_attrs;
  keel_attr *attrs;
  const struct keel_op_def *op; /* resolved at engine build */
  /* Set by fusion passes; kernels that support fusion apply them to their output. */
  keel_act act;
  float act_alpha, act_beta;
  bool dead; /* removed by a pass; skipped everywhere */
  /* Kernel state from the op's prepare hook at engine build (packed weights), read-only afterwards and
   * shared by every plan and thread; freed with the engine through prepared_free. NULL when none. */
  void *prepared;
  void (*prepared_free)(void *prepared);
} keel_node;

typedef struct keel_opset_import {
  char *domain;
  int64_t version;
} keel_opset_import;

typedef struct keel_graph {
  keel_value *values;
  int n_values, cap_values;
  keel_node *nodes;
  int n_nodes, cap_nodes;
  int *inputs; /* graph inputs the caller feeds (initializers excluded), in model order */
  int n_inputs;
  int *outputs;
  int n_outputs;
  keel_opset_import *opsets;
  int n_opsets;
  char *name;
  char *producer_name;
  int64_t ir_version;
  uint64_t max_tensor_elements; /* limit on any planned tensor (from keel_engine_options); 0 = none */
} keel_graph;

keel_graph *keel_graph_create(void);
void keel_graph_destroy(keel_graph *g);

/* Append a value / node; return its index or -1 on out of memory. Names are copied. */
int keel_graph_add_value(keel_graph *g, const char *name);
int keel_graph_find_value(const keel_graph *g, const char *name); /* -1 if absent (linear; build a map) */
int keel_graph_add_node(keel_graph *g, const char *name, const char *op_type, const char *domain);
/* Append attribute slot to node; returns pointer to a zeroed attr with the copied name, or NULL. */
keel_attr *keel_node_add_attr(keel_node *n, const char *name);
/* Resize a node's input/output arrays (new slots = -1). Return false on out of memory. */
bool keel_node_set_n_inputs(keel_node *n, int count);
bool keel_node_set_n_outputs(keel_node *n, int count);

/* Sort nodes topologically (Kahn, stable w.r.t. model order). Error names a node on a cycle or a value
 * that is used but never produced. Dead nodes are dropped. */
keel_status *keel_graph_toposort(keel_graph *g);

/* Attribute lookup. */
const keel_attr *keel_node_attr(const keel_node *n, const char *name);
int64_t keel_attr_int(const keel_node *n, const char *name, int64_t dflt);
float keel_attr_float(const keel_node *n, const char *name, float dflt);
const char *keel_attr_string(const keel_node *n, const char *name, const char *dflt);
/* Returns element count and sets *out (NULL if absent: returns -1). */
int keel_attr_ints(const keel_node *n, const char *name, const int64_t **out);
int keel_attr_floats(const keel_node *n, const char *name, const float **out);

/* "node 'conv1' (Conv)" for messages; returns a thread-local buffer. */
const char *keel_node_desc(const keel_node *n);

#endif
