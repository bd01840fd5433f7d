/* Reading and writing single elements of any numeric dtype as double: for kernels whose cost is not in the
 * element access (losses, sampling, windows, small transforms), so one kernel serves every dtype. Hot loops
 * use typed code instead. */
#ifndef KEEL_OPS_ELEM_H
#define KEEL_OPS_ELEM_H

#include <stdbool.h>
#include <stdint.h>

#include <keel/dtype.h>

static inline bool keel_elem_is_float(keel_dtype t) {
  return t == KEEL_FLOAT32 || t == KEEL_FLOAT64 || t == KEEL_FLOAT16 || t == KEEL_BFLOAT16;
}

static inline double keel_elem_load(keel_dtype t, const void *p, int64_t i) {
  switch (t) {
    case KEEL_FLOAT32: return ((const float *)p)[i];
    case KEEL_FLOAT64: return ((const double *)p)[i];
    case KEEL_FLOAT16: return keel_half_to_float(((const uint16_t *)p)[i]);
    case KEEL_BFLOAT16: return keel_bfloat16_to_float(((const uint16_t *)p)[i]);
    case KEEL_INT8: return ((const int8_t *)p)[i];
    case KEEL_UINT8: return ((const uint8_t *)p)[i];
    case KEEL_BOOL: return ((const uint8_t *)p)[i] != 0;
    case KEEL_INT16: return ((const int16_t *)p)[i];
    case KEEL_UINT16: return ((const uint16_t *)p)[i];
    case KEEL_INT32: return ((const int32_t *)p)[i];
    case KEEL_UINT32: return ((const uint32_t *)p)[i];
    case KEEL_INT64: return (double)((const int64_t *)p)[i];
    case KEEL_UINT64: return (double)((const uint64_t *)p)[i];
    default: return 0;
  }
}

/* Integers truncate toward zero and saturate (numpy's astype without its overflow); NaN becomes 0. */
#define KEEL_ELEM_SAT(T, lo, hi) \
  (v != v ? (T)0 : v <= (double)(lo) ? (T)(lo) : v >= (double)(hi) ? (T)(hi) : (T)v)
static inline void keel_elem_store(keel_dtype t, void *p, int64_t i, double v) {
  switch (t) {
    case KEEL_FLOAT32: ((float *)p)[i] = (float)v; break;
    case KEEL_FLOAT64: ((double *)p)[i] = v; break;
    case KEEL_FLOAT16: ((uint16_t *)p)[i] = keel_float_to_half((float)v); break;
    case KEEL_BFLOAT16: ((uint16_t *)p)[i] = keel_float_to_bfloat16((float)v); break;
    case KEEL_INT8: ((int8_t *)p)[i] = KEEL_ELEM_SAT(int8_t, INT8_MIN, INT8_MAX); break;
    case KEEL_UINT8: ((uint8_t *)p)[i] = KEEL_ELEM_SAT(uint8_t, 0, UINT8_MAX); break;
    case KEEL_BOOL: ((uint8_t *)p)[i] = v != 0; break;
    case KEEL_INT16: ((int16_t *)p)[i] = KEEL_ELEM_SAT(int16_t, INT16_MIN, INT16_MAX); break;
    case KEEL_UINT16: ((uint16_t *)p)[i] = KEEL_ELEM_SAT(uint16_t, 0, UINT16_MAX); break;
    case KEEL_INT32: ((int32_t *)p)[i] = KEEL_ELEM_SAT(int32_t, INT32_MIN, INT32_MAX); break;
    case KEEL_UINT32: ((uint32_t *)p)[i] = KEEL_ELEM_SAT(uint32_t, 0, UINT32_MAX); break;
    case KEEL_INT64: ((int64_t *)p)[i] = KEEL_ELEM_SAT(int64_t, INT64_MIN, INT64_MAX); break;
    case KEEL_UINT64: ((uint64_t *)p)[i] = KEEL_ELEM_SAT(uint64_t, 0, UINT64_MAX); break;
    default: break;
  }
}
#undef KEEL_ELEM_SAT

#endif
