/* Type lists and conversions used to generate the per-dtype elementwise loops with macros.
 *
 * Each list entry is X(ENUM, T, CT, LD, ST, W, A), A being the list's pass-through argument (an op):
 *   T  - storage type;  CT - compute type (float for float16/bfloat16);
 *   LD - storage -> compute, ST - compute -> storage (EW_ID for native types);
 *   W  - unsigned type integer arithmetic wraps in (signed overflow is undefined in C, and uint16*uint16
 *        would overflow int after promotion), unused for floats. */
#ifndef KEEL_OPS_EW_TYPES_H
#define KEEL_OPS_EW_TYPES_H

#include <math.h>
#include <stdint.h>

#include <keel/dtype.h>

#define EW_ID(v) (v)

#define EW_FLOAT_TYPES(X, A)                                                          \
  X(KEEL_FLOAT32, float, float, EW_ID, EW_ID, uint32_t, A)                            \
  X(KEEL_FLOAT64, double, double, EW_ID, EW_ID, uint64_t, A)                          \
  X(KEEL_FLOAT16, uint16_t, float, keel_half_to_float, keel_float_to_half, uint32_t, A) \
  X(KEEL_BFLOAT16, uint16_t, float, keel_bfloat16_to_float, keel_float_to_bfloat16, uint32_t, A)

#define EW_SINT_TYPES(X, A)                                  \
  X(KEEL_INT8, int8_t, int8_t, EW_ID, EW_ID, uint32_t, A)    \
  X(KEEL_INT16, int16_t, int16_t, EW_ID, EW_ID, uint32_t, A) \
  X(KEEL_INT32, int32_t, int32_t, EW_ID, EW_ID, uint32_t, A) \
  X(KEEL_INT64, int64_t, int64_t, EW_ID, EW_ID, uint64_t, A)

#define EW_UINT_TYPES(X, A)                                     \
  X(KEEL_UINT8, uint8_t, uint8_t, EW_ID, EW_ID, uint32_t, A)    \
  X(KEEL_UINT16, uint16_t, uint16_t, EW_ID, EW_ID, uint32_t, A) \
  X(KEEL_UINT32, uint32_t, uint32_t, EW_ID, EW_ID, uint32_t, A) \
  X(KEEL_UINT64, uint64_t, uint64_t, EW_ID, EW_ID, uint64_t, A)

#define EW_BOOL_TYPES(X, A) X(KEEL_BOOL, uint8_t, uint8_t, EW_ID, EW_ID, uint32_t, A)

/* Float -> integer without undefined behaviour: NaN -> 0, out of range saturates. */
static inline int64_t ew_f2i64(double v) {
  if (!(v == v)) return 0;
  if (v >= 9223372036854775807.0) return INT64_MAX;
  if (v <= -9223372036854775808.0) return INT64_MIN;
  return (int64_t)v;
}
static inline uint64_t ew_f2u64(double v) {
  if (!(v == v) || v <= 0) return 0;
  if (v >= 18446744073709551615.0) return UINT64_MAX;
  return (uint64_t)v;
}
/* Narrower integer types go through int64 and wrap (as numpy's astype does on x86 for in-range values). */
#define EW_F2I(T, v) ((T)ew_f2i64((double)(v)))
#define EW_F2U64(v) ew_f2u64((double)(v))

#endif
