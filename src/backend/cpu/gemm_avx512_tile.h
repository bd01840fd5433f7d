/* The pieces of a 14 x 32 AVX-512 register tile shared by the GEMM microkernel (gemm_avx512.c) and the
 * direct convolution (ops/nn_conv_direct.c): the 28 accumulators, the per-k FMA rows, the tail-column
 * masks and the inline ReLU / Clip bounds. Include inside an x86-64 GCC/Clang block after <immintrin.h>;
 * the inline functions carry their own target attribute. */
#ifndef KEEL_BACKEND_CPU_GEMM_AVX512_TILE_H
#define KEEL_BACKEND_CPU_GEMM_AVX512_TILE_H

#include <immintrin.h>

#include "ops/act.h"

/* Accumulators c0a..c13b (rows 0..13, column vectors a and b), zeroed. */
#define TILE512_ACC_ZERO                                                                                          \
  __m512 c0a = _mm512_setzero_ps(), c0b = c0a, c1a = c0a, c1b = c0a, c2a = c0a, c2b = c0a, c3a = c0a, c3b = c0a; \
  __m512 c4a = c0a, c4b = c0a, c5a = c0a, c5b = c0a, c6a = c0a, c6b = c0a, c7a = c0a, c7b = c0a;                 \
  __m512 c8a = c0a, c8b = c0a, c9a = c0a, c9b = c0a, c10a = c0a, c10b = c0a, c11a = c0a, c11b = c0a;             \
  __m512 c12a = c0a, c12b = c0a, c13a = c0a, c13b = c0a

/* One k step for row i: broadcast A[i], FMA into both column vectors b0 / b1. Rows beyond R and the second
 * vector when NV is 1 compile away (R, NV are constants in each instance). */
#define TILE512_FMA_ROW(i)                                 \
  if ((i) < R) {                                           \
    const __m512 a = _mm512_set1_ps(A[i]);                 \
    c##i##a = _mm512_fmadd_ps(a, b0, c##i##a);             \
    if (NV > 1) c##i##b = _mm512_fmadd_ps(a, b1, c##i##b); \
  }
#define TILE512_FMA_ROWS                                                                                      \
  TILE512_FMA_ROW(0) TILE512_FMA_ROW(1) TILE512_FMA_ROW(2) TILE512_FMA_ROW(3) TILE512_FMA_ROW(4)             \
  TILE512_FMA_ROW(5) TILE512_FMA_ROW(6) TILE512_FMA_ROW(7) TILE512_FMA_ROW(8) TILE512_FMA_ROW(9)             \
  TILE512_FMA_ROW(10) TILE512_FMA_ROW(11) TILE512_FMA_ROW(12) TILE512_FMA_ROW(13)

/* The first nr (<= 32) columns as masks of the two 16-lane vectors. */
static inline void tile512_col_masks(int nr, __mmask16 *m0, __mmask16 *m1) {
  *m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
  *m1 = nr >= 32 ? (__mmask16)0xFFFF : nr <= 16 ? (__mmask16)0 : (__mmask16)((1u << (nr - 16)) - 1);
}

/* ReLU and Clip as lane-wise bounds in registers (returns 1; 0 for other activations, which the caller
 * applies over the stored rows with keel_act_apply_f32). */
__attribute__((target("avx512f"), always_inline)) static inline int tile512_bounds(int act, float alpha, float beta,
                                                                                  __m512 *lo, __m512 *hi) {
  *lo = _mm512_set1_ps(act == KEEL_ACT_CLIP ? alpha : 0.0f);
  *hi = _mm512_set1_ps(act == KEEL_ACT_CLIP ? beta : __builtin_inff());
  return act == KEEL_ACT_RELU || act == KEEL_ACT_CLIP;
}

/* Bound x to [vlo, vhi]. The operand order keeps NaN (max / min return their second operand when either is
 * NaN), like the standalone Relu and Clip ops. */
#define TILE512_CLAMP(x) ((x) = _mm512_min_ps(vhi, _mm512_max_ps(vlo, (x))))

#endif
