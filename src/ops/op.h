/* The operator interface: one keel_op_def per ONNX operator (op_type + domain + opset range).
 *
 * An operator contributes three things:
 *   infer    - output dtypes and shapes from input dtypes and shapes (and input *values* when the shape
 *              depends on them: Reshape's shape, Slice's starts... those values are available whenever
 *              they are constants or were computed while planning, which is how Shape->Gather->Concat->
 *              Reshape chains resolve);
 *   workspace- optional: scratch bytes the kernel needs for these shapes (planned, never allocated per call);
 *   run      - the CPU kernel.
 * Kernels never allocate: outputs and workspace are provided. A kernel returns NULL or a status naming what
 * went wrong (e.g. an index out of range), and keel prefixes the node's name. */
#ifndef KEEL_OPS_OP_H
#define KEEL_OPS_OP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <keel/status.h>
#include <keel/tensor.h>

#include "core/error.h"
#include "core/shape.h"
#include "graph/ir.h"

/* A non-owning view of a tensor: dtype, shape and (maybe) data. Omitted optional inputs have
 * dtype == KEEL_DTYPE_UNDEFINED. During infer, data is non-NULL only when the value is known. */
typedef struct keel_view {
  keel_dtype dtype;
  int ndim;
  int64_t dims[KEEL_MAX_DIMS];
  void *data;
} keel_view;

/* Kernels may compute `workspace + 0` even when they asked for no scratch, so callers never pass NULL:
 * they pass this (empty, never written) buffer instead. */
extern char keel_empty_workspace[64];

/* What a kernel gets besides its tensors. */
typedef struct keel_exec {
  void *workspace;        /* at least the bytes op->workspace asked for, 64-byte aligned */
  size_t workspace_bytes;
  int num_threads;        /* threads the kernel may use */
} keel_exec;

typedef keel_status *(*keel_infer_fn)(const keel_node *n, const keel_view *in, int n_in, keel_view *out,
                                      int n_out);
typedef size_t (*keel_workspace_fn)(const keel_node *n, const keel_view *in, int n_in, const keel_view *out,
                                    int n_out);
typedef keel_status *(*keel_run_fn)(const keel_node *n, const keel_view *in, int n_in, keel_view *out,
                                    int n_out, keel_exec *ex);
/* Called once per node at engine build, after the graph passes: may build immutable kernel state from the
 * node's constant inputs (packed weights) into n->prepared / n->prepared_free. Every plan and thread then
 * reads it without locks; run must still work when it is absent (constant folding runs nodes before). An
 * error fails the load; a prepare that cannot help (a non-constant weight, out of memory) just returns NULL. */
typedef keel_status *(*keel_prepare_fn)(keel_node *n, const keel_graph *g);

typedef struct keel_op_def {
  const char *op_type;
  const char *domain;   /* "" for the ONNX default domain, "keel" for internal fused ops */
  int min_opset;        /* inclusive range of opset versions this definition implements */
  int max_opset;
  keel_infer_fn infer;
  keel_run_fn run;
  keel_workspace_fn workspace; /* may be NULL */
  /* May the output share the buffer of input `inplace_input` (elementwise, same size)? -1: never. */
  int inplace_input;
  keel_prepare_fn prepare; /* may be NULL (last so positional table entries need not name it) */
} keel_op_def;

/* The prepare step for Conv / Gemm / MatMul (ops/nn_gemm.c), used for nodes whose definition has no
 * prepare of its own (the nn table predates the hook); does nothing for other nodes. */
keel_status *keel_nn_prepare(keel_node *n, const keel_graph *g);

/* Highest ONNX default-domain opset keel accepts (onnx 1.22 defines 27). Operators whose semantics changed
 * after their last table entry must add one; the node suites check. */
#define KEEL_MAX_OPSET 27

/* Find the definition for an op_type/domain at opset `opset`; NULL if none. */
const keel_op_def *keel_op_find(const char *op_type, const char *domain, int opset);
/* Is any version of op_type/domain known at all? (for "unsupported at opset N" vs "unknown" messages) */
bool keel_op_known(const char *op_type, const char *domain);

/* Random generators (RandomUniform/Normal and their *Like forms, Bernoulli, Multinomial) must run on every
 * call: constant folding skips them. */
static inline bool keel_node_is_random(const keel_node *n) {
  return n->domain[0] == 0 && (!strncmp(n->op_type, "Random", 6) || !strcmp(n->op_type, "Bernoulli") ||
                               !strcmp(n->op_type, "Multinomial"));
}

/* Every definition, for listings (`keel ops`): i in [0, keel_op_def_count()). */
int keel_op_def_count(void);
const keel_op_def *keel_op_def_at(int i);

/* ---- helpers for operator implementations (ops/op_util.c) ---- */
int64_t keel_view_numel(const keel_view *v);
size_t keel_view_nbytes(const keel_view *v);
bool keel_view_present(const keel_view *v); /* optional input given? */
/* Read element i of an integer-typed view (int32/int64/...) as int64; for shape-like inputs. */
int64_t keel_view_get_i64(const keel_view *v, int64_t i);
double keel_view_get_f64(const keel_view *v, int64_t i);
/* Set output shape. */
void keel_view_set_shape(keel_view *v, keel_dtype dtype, const int64_t *dims, int ndim);
/* Common infer error helpers */
keel_status *keel_need_value(const keel_node *n, int input); /* input value required for shape */

/* Set (by keel_need_value, or directly) when infer failed only because an input's value is not known yet;
 * planning then retries with more values known, or runs the graph in the interpreter. */
extern _Thread_local bool keel_tls_needs_value;

/* Each operator family file defines a table and its length; ops/registry.c lists the families. */
#define KEEL_OP_FAMILY(name)                      \
  extern const keel_op_def keel_ops_##name[];     \
  extern const int keel_ops_##name##_count;

#endif
