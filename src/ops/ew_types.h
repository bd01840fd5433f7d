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
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <keel/dtype.h>

#define EW_ID(v) (v)

/* Inline float16/bfloat16 conversions, bit-identical to keel_half_to_float & co. (checked exhaustively
 * over all inputs) but branch-light and visible to the vectorizer: the out-of-line calls cost ~3 ns an
 * element, more than the arithmetic they wrap. */
static inline uint32_t ew_f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static inline float ew_bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static inline float ew_h2f(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000) << 16, em = h & 0x7fffu;
  /* Reading the exponent/mantissa bits as a float off by 2^-112 is exact for normals and subnormals. */
  uint32_t u = ew_f32_bits(ew_bits_f32(em << 13) * 0x1p112f);
  if (em >= 0x7c00u) u = (em << 13) | 0x7f800000u; /* inf / nan */
  return ew_bits_f32(u | sign);
}
static inline uint16_t ew_f2h(float f) {
  const uint32_t x = ew_f32_bits(f), sign = (x >> 16) & 0x8000u, a = x & 0x7fffffffu;
  uint32_t o;
  if (a >= 0x477ff000u) { /* rounds to >= 65520: inf; nan stays a quiet nan */
    o = a > 0x7f800000u ? 0x7e00u : 0x7c00u;
  } else if (a < 0x38800000u) { /* half subnormal or zero: let the FPU round at the right bit */
    o = ew_f32_bits(ew_bits_f32(a) + 0.5f) - 0x3f000000u;
  } else { /* normal: rebias, round to nearest even */
    o = (a + 0xc8000fffu + ((a >> 13) & 1)) >> 13;
  }
  return (uint16_t)(o | sign);
}
static inline float ew_bf2f(uint16_t h) { return ew_bits_f32((uint32_t)h << 16); }
static inline uint16_t ew_f2bf(float f) {
  const uint32_t u = ew_f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet nan */
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

#define EW_FLOAT_TYPES(X, A)                                                          \
  X(KEEL_FLOAT32, float, float, EW_ID, EW_ID, uint32_t, A)                            \
  X(KEEL_FLOAT64, double, double, EW_ID, EW_ID, uint64_t, A)                          \
  X(KEEL_FLOAT16, uint16_t, float, ew_h2f, ew_f2h, uint32_t, A) \
  X(KEEL_BFLOAT16, uint16_t, float, ew_bf2f, ew_f2bf, uint32_t, A)

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

/* Cast with ONNX's Cast-19+ attributes: `saturate` (float8 targets) and `round_mode` (float8e8m0 target,
 * a keel_e8m0_round). Handles every pair keel_ew_cast does plus the narrow dtypes (keel_dtype_is_narrow).
 * keel_ew_cast(x, y) is keel_ew_cast_ex(x, y, 1, KEEL_E8M0_UP). Defined in ew_cast.c. */
#include <keel/status.h>
struct keel_view;
bool keel_ew_cast_ex_supported(keel_dtype t);
keel_status *keel_ew_cast_ex(const struct keel_view *x, struct keel_view *y, int saturate, int round_mode);

#endif
