/* ONNX decoding: ModelProto bytes -> IR graph, and TensorProto <-> keel_tensor. */
#ifndef KEEL_ONNX_IMPORT_H
#define KEEL_ONNX_IMPORT_H

#include <stddef.h>

#include <keel/engine.h>
#include <keel/status.h>
#include <keel/tensor.h>

#include "graph/ir.h"

/* Decode a serialized ModelProto into a new graph.
 * - initializers (typed fields and raw_data, little-endian) and Constant nodes become value->constant;
 *   graph inputs that are also initializers are constants (not in graph->inputs);
 * - external data (location/offset/length) is read from files under `base_dir` only: absolute paths,
 *   ".." components and symlinks leaving base_dir are refused; base_dir NULL refuses external data;
 * - opset imports fill graph->opsets and each node's `opset`;
 * - graph input/output declared dtypes and dims (dim_param -> dims[i] = -1 and dim_params[i]);
 * - subgraph attributes (If/Loop/Scan bodies) are decoded into attr->g (not toposorted).
 * `opt` supplies limits (max_model_bytes, max_tensor_elements); NULL: defaults.
 * Errors name what and where (which initializer, which node, which field). */
keel_status *keel_onnx_import(const void *data, size_t size, const char *base_dir,
                              const keel_engine_options *opt, keel_graph **out);

/* Decode a serialized TensorProto (test data input_N.pb / output_N.pb). If name_out is non-NULL it
 * receives a malloc'd copy of the tensor's name (or NULL). */
keel_status *keel_onnx_decode_tensor(const void *data, size_t size, keel_tensor **out, char **name_out);

/* Encode a tensor as a serialized TensorProto with raw_data; *out is malloc'd (caller frees). */
keel_status *keel_onnx_encode_tensor(const keel_tensor *t, const char *name, void **out, size_t *size);

/* Read a whole file into memory (malloc'd), refusing files larger than max_bytes (0: no limit). */
keel_status *keel_read_file(const char *path, size_t max_bytes, void **data, size_t *size);

#endif
