/* keel: element types. Values match ONNX TensorProto.DataType so files map directly. */
#ifndef KEEL_DTYPE_H
#define KEEL_DTYPE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum keel_dtype {
  KEEL_DTYPE_UNDEFINED = 0,
  KEEL_FLOAT32 = 1,
  KEEL_UINT8 = 2,
  KEEL_INT8 = 3,
  KEEL_UINT16 = 4,
  KEEL_INT16 = 5,
  KEEL_INT32 = 6,
  KEEL_INT64 = 7,
  KEEL_STRING = 8, /* recognized, not supported by kernels */
  KEEL_BOOL = 9,   /* one byte per element, 0 or 1 */
  KEEL_FLOAT16 = 10,
  KEEL_FLOAT64 = 11,
  KEEL_UINT32 = 12,
  KEEL_UINT64 = 13,
  KEEL_COMPLEX64 = 14,  /* recognized, not supported by kernels */
  KEEL_COMPLEX128 = 15, /* recognized, not supported by kernels */
  KEEL_BFLOAT16 = 16
} keel_dtype;

/* Bytes per element; 0 for UNDEFINED, STRING and values keel does not know. */
size_t keel_dtype_size(keel_dtype t);
/* Lower-case ONNX-style name ("float32", "int64", "bool"); "unknown(N)" style for others. */
const char *keel_dtype_name(keel_dtype t);
/* Parse a name as printed by keel_dtype_name (also accepts "float", "double", "half"). */
keel_dtype keel_dtype_from_name(const char *name);

/* IEEE half and bfloat16 conversions (round to nearest even). */
float keel_half_to_float(uint16_t h);
uint16_t keel_float_to_half(float f);
float keel_bfloat16_to_float(uint16_t h);
uint16_t keel_float_to_bfloat16(float f);

#ifdef __cplusplus
}
#endif
#endif
