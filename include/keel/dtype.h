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
  KEEL_STRING = 8, /* elements are keel_string (below); the tensor owns their bytes */
  KEEL_BOOL = 9,   /* one byte per element, 0 or 1 */
  KEEL_FLOAT16 = 10,
  KEEL_FLOAT64 = 11,
  KEEL_UINT32 = 12,
  KEEL_UINT64 = 13,
  KEEL_COMPLEX64 = 14,  /* recognized, not supported by kernels */
  KEEL_COMPLEX128 = 15, /* recognized, not supported by kernels */
  KEEL_BFLOAT16 = 16,
  /* Narrow types. keel stores each of them UNPACKED, one byte per element, so byte-moving operators
   * work unchanged; only the ONNX importer/encoder packs 4-bit and 2-bit values. The byte holds the
   * format's code (float8/float4: the bit pattern in the low bits) or the integer value (int4/int2:
   * sign-extended two's complement; uint4/uint2: 0..15 / 0..3). Readers mask, so any byte is safe. */
  KEEL_FLOAT8E4M3FN = 17,   /* 1-4-3, bias 7, no inf, nan S.1111.111, max 448 */
  KEEL_FLOAT8E4M3FNUZ = 18, /* 1-4-3, bias 8, no inf, no -0, single nan 0x80, max 240 */
  KEEL_FLOAT8E5M2 = 19,     /* 1-5-2, bias 15, IEEE-like inf/nan, max 57344 */
  KEEL_FLOAT8E5M2FNUZ = 20, /* 1-5-2, bias 16, no inf, no -0, single nan 0x80, max 57344 */
  KEEL_UINT4 = 21,
  KEEL_INT4 = 22,
  KEEL_FLOAT4E2M1 = 23, /* 1-2-1: {0, 0.5, 1, 1.5, 2, 3, 4, 6} and sign; no inf, no nan */
  KEEL_FLOAT8E8M0 = 24, /* exponent only: 2^(code-127), 0xff is nan; no sign, no zero */
  KEEL_UINT2 = 25,
  KEEL_INT2 = 26
} keel_dtype;

/* Bytes per element (sizeof(keel_string) for STRING); 0 for UNDEFINED and values keel does not know. */
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

/* Narrow types (float8 variants, float4e2m1, int4/uint4, int2/uint2). */
/* True for the ten narrow dtypes 17..26. */
int keel_dtype_is_narrow(keel_dtype t);
/* Elements per byte in ONNX's packed encoding (2 for 4-bit, 4 for 2-bit types, else 1). */
int keel_dtype_pack_factor(keel_dtype t);
/* Canonical in-memory byte for a packed field value (masks to the width, sign-extends int4/int2). */
uint8_t keel_narrow_canonical(keel_dtype t, uint8_t bits);
/* Decode a float8/float4 code (t: FLOAT8E4M3FN, FLOAT8E4M3FNUZ, FLOAT8E5M2, FLOAT8E5M2FNUZ, FLOAT4E2M1,
 * FLOAT8E8M0) to float. Exact. */
float keel_fp8_to_float(keel_dtype t, uint8_t code);
/* Encode to a float8/float4 code with round to nearest even, as ONNX Cast: with `saturate`, values whose
 * rounding exceeds the largest finite value (and +-inf) become +-max; without, they become inf (e5m2) or
 * nan. FLOAT4E2M1 always saturates (it has no inf or nan). FLOAT8E8M0 uses keel_float_to_e8m0 with round
 * mode "up". */
uint8_t keel_float_to_fp8(keel_dtype t, float f, int saturate);
uint8_t keel_double_to_fp8(keel_dtype t, double f, int saturate);
/* float -> float8e8m0 with ONNX's round_mode: 0 "up", 1 "nearest", 2 "down". */
typedef enum { KEEL_E8M0_UP = 0, KEEL_E8M0_NEAREST = 1, KEEL_E8M0_DOWN = 2 } keel_e8m0_round;
uint8_t keel_float_to_e8m0(float f, int saturate, keel_e8m0_round mode);
/* Value of an int4/uint4/int2/uint2 byte (masked and sign-extended). */
int32_t keel_narrow_int_value(keel_dtype t, uint8_t b);
/* Wrap an integer into int4/uint4/int2/uint2 (two's complement, dropping higher bits), as a stored byte. */
uint8_t keel_narrow_int_wrap(keel_dtype t, int64_t v);

/* ---- String tensors ----
 * A KEEL_STRING element is a keel_string: `len` bytes at `data` (any bytes, NUL included), always followed by
 * a NUL so the text can be read as a C string; data == NULL is the empty string. A string tensor OWNS its
 * elements' bytes: they are freed with its storage, copies (keel_tensor_from_data) copy the bytes, and a
 * string tensor cannot wrap caller memory (keel_tensor_wrap refuses STRING). keel_tensor_create returns
 * every element empty. Write elements with keel_tensor_set_string, never by assigning `data` directly. */
typedef struct keel_string {
  char *data;
  size_t len;
} keel_string;

struct keel_tensor;
struct keel_status;
/* Element i of a string tensor becomes a copy of bytes[0, len) (bytes may be NULL when len is 0). */
struct keel_status *keel_tensor_set_string(struct keel_tensor *t, int64_t i, const char *bytes, size_t len);
/* Element i as a NUL-terminated string (never NULL; "" for empty); *len (if given) gets its byte count. NULL
 * when t is not a string tensor or i is out of range. */
const char *keel_tensor_get_string(const struct keel_tensor *t, int64_t i, size_t *len);
/* Replace one element's bytes with a copy of bytes[0, len): 0 on success, -1 out of memory (the element
 * is then unchanged). For code writing elements of a tensor it owns (kernels). */
int keel_string_assign(keel_string *s, const char *bytes, size_t len);
/* Free one element's bytes and make it empty. */
void keel_string_clear(keel_string *s);

#ifdef __cplusplus
}
#endif
#endif
