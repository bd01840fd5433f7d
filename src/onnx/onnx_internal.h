/* Internal to src/onnx: TensorProto decoding shared by the model importer and the test-data decoder. */
#ifndef KEEL_ONNX_INTERNAL_H
#define KEEL_ONNX_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include <keel/allocator.h>
#include <keel/engine.h>
#include <keel/status.h>
#include <keel/tensor.h>

#include "onnx.pb-c.h"

#define KEEL_DEFAULT_MAX_MODEL_BYTES (UINT64_C(4) << 30)
#define KEEL_DEFAULT_MAX_TENSOR_ELEMENTS (UINT64_C(1) << 34)
/* Nesting limit for protobuf messages (subgraphs inside subgraphs...): deeper input is refused before
 * protobuf-c, whose unpacker recurses without a limit, could run out of stack. */
#define KEEL_ONNX_MAX_NESTING 64

/* What tensor decoding needs to know: limits, where weights go, where external data may come from. */
typedef struct keel_onnx_tensor_ctx {
  uint64_t max_tensor_elements;
  keel_allocator *alloc; /* NULL: default allocator */
  const char *base_dir;  /* NULL: external data refused */
  char *base_real;       /* realpath(base_dir), resolved on first use; freed by keel_onnx_tensor_ctx_fini */
} keel_onnx_tensor_ctx;

void keel_onnx_tensor_ctx_init(keel_onnx_tensor_ctx *c, const keel_engine_options *opt, const char *base_dir);
void keel_onnx_tensor_ctx_fini(keel_onnx_tensor_ctx *c);

/* Decode one TensorProto. `what` names it in errors ("initializer 'w'", "attribute 'value' of node 'c'"). */
keel_status *keel_onnx_tensor_from_proto(const Onnx__TensorProto *tp, const char *what, keel_onnx_tensor_ctx *c,
                                         keel_tensor **out);

/* Convert an ONNX TensorProto.DataType to a keel dtype keel can hold in memory; UNDEFINED if unknown.
 * STRING and complex types map to themselves (callers decide whether they are supported). */
keel_dtype keel_onnx_dtype(int32_t onnx_type);
/* Name of any ONNX data type number, including ones keel does not know ("float8e4m3fn", ...). */
const char *keel_onnx_dtype_name(int32_t onnx_type);

/* Check that serialized bytes of message `d` nest no deeper than KEEL_ONNX_MAX_NESTING and that every
 * length-delimited field fits in its parent. Returns 0 if fine, 1 if too deep, 2 if malformed. */
int keel_onnx_wire_check(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n);

#endif
