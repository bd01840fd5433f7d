/* Row reductions over float32 rows for the fused kernels (fused.c, fused_attn.c): 16 partial results,
 * because strict float semantics keep a single-accumulator loop scalar while a lane array lets the compiler
 * use one vector register. */
#ifndef KEEL_OPS_ROW_REDUCE_H
#define KEEL_OPS_ROW_REDUCE_H

#include <math.h>
#include <stdint.h>

#define KEEL_ROW_LANES 16

static inline float keel_row_sum_f32(const float *x, int64_t n) {
  float acc[KEEL_ROW_LANES] = {0};
  int64_t i = 0;
  for (; i + KEEL_ROW_LANES <= n; i += KEEL_ROW_LANES)
    for (int k = 0; k < KEEL_ROW_LANES; k++) acc[k] += x[i + k];
  float s = 0.0f;
  for (; i < n; i++) s += x[i];
  for (int k = 0; k < KEEL_ROW_LANES; k++) s += acc[k];
  return s;
}

static inline float keel_row_max_f32(const float *x, int64_t n) {
  float acc[KEEL_ROW_LANES];
  for (int k = 0; k < KEEL_ROW_LANES; k++) acc[k] = -INFINITY;
  int64_t i = 0;
  for (; i + KEEL_ROW_LANES <= n; i += KEEL_ROW_LANES)
    for (int k = 0; k < KEEL_ROW_LANES; k++) acc[k] = x[i + k] > acc[k] ? x[i + k] : acc[k];
  float m = -INFINITY;
  for (; i < n; i++) m = x[i] > m ? x[i] : m;
  for (int k = 0; k < KEEL_ROW_LANES; k++) m = acc[k] > m ? acc[k] : m;
  return m;
}

#endif
