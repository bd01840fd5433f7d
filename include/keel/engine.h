/* keel: engines.
 * An engine is a model compiled once: decoded, optimized (constant folding, dead-node removal, fusions)
 * and ready to plan. It is immutable after load and may be shared by any number of threads. */
#ifndef KEEL_ENGINE_H
#define KEEL_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "allocator.h"
#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct keel_engine keel_engine;

typedef struct keel_engine_options {
  int optimize;                /* 1 (default): fold constants, remove dead nodes, fuse; 0: run as written */
  keel_allocator *allocator;   /* for weights and run buffers; NULL: keel_allocator_default() */
  uint64_t max_model_bytes;    /* refuse larger model files; 0: default (4 GiB) */
  uint64_t max_tensor_elements;/* refuse larger tensors anywhere; 0: default (2^34) */
  uint64_t max_nodes;          /* refuse models with more nodes, subgraphs included; 0: default (2^20) */
  int max_graph_depth;         /* refuse subgraphs nested deeper (If in Loop in ...); 0: default (16) */
} keel_engine_options;

void keel_engine_options_init(keel_engine_options *opt); /* fill defaults */

/* Load an ONNX model. External data is resolved relative to the model's folder (never outside it). */
keel_status *keel_engine_load_file(const char *path, const keel_engine_options *opt, keel_engine **out);
/* Load from memory. External data (if any) is resolved relative to `base_dir` (NULL: refused). */
keel_status *keel_engine_load_memory(const void *data, size_t size, const char *base_dir,
                                     const keel_engine_options *opt, keel_engine **out);

keel_engine *keel_engine_retain(keel_engine *e);
void keel_engine_release(keel_engine *e); /* NULL is fine */

/* Description of a graph input or output. dims[i] < 0 means unknown; dim_params[i] names it if symbolic. */
typedef struct keel_io_info {
  const char *name;
  keel_dtype dtype;
  int ndim; /* -1 if the rank is unknown */
  int64_t dims[KEEL_MAX_DIMS];
  const char *dim_params[KEEL_MAX_DIMS];
} keel_io_info;

size_t keel_engine_input_count(const keel_engine *e);
size_t keel_engine_output_count(const keel_engine *e);
keel_status *keel_engine_input_info(const keel_engine *e, size_t i, keel_io_info *out);
keel_status *keel_engine_output_info(const keel_engine *e, size_t i, keel_io_info *out);

/* Simple synchronous run: inputs in graph-input order; writes n_out new tensors (caller releases them).
 * Thread-safe: concurrent calls on one engine are fine (each call plans and allocates its own buffers;
 * the runtime module in module.h is the fast path that reuses them). */
keel_status *keel_engine_run(keel_engine *e, keel_tensor *const *inputs, size_t n_in, keel_tensor **outputs,
                             size_t n_out);

#ifdef __cplusplus
}
#endif
#endif
