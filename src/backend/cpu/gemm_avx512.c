/* The AVX-512 microkernel: a 14 x 32 tile in 28 zmm accumulators. Per k: two 16-float loads of B, 14
 * broadcasts of A, 28 FMAs (14 cycles on two 512-bit FMA pipes). Compiled for AVX-512 only in this function
 * (target attribute), so the binary still runs on any x86-64; gemm.c calls it only when the CPU has it. */
#include "backend/cpu/gemm_internal.h"

#include "ops/act.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#include "backend/cpu/gemm_avx512_tile.h"

#define AVX512 __attribute__((target("avx512f,fma")))
#define INLINE_AVX512 __attribute__((target("avx512f,fma"), always_inline)) static inline

/* One row of the tile: scale, add C / biases, clamp, masked store. */
#define ROW_EPI(i)                                                                            \
  if ((i) < R && (i) < mr) {                                                                  \
    __m512 x0 = _mm512_mul_ps(va, c##i##a), x1 = _mm512_mul_ps(va, c##i##b);                  \
    float *cr = C + (i) * ldc;                                                                \
    if (e->load_c) {                                                                          \
      x0 = _mm512_fmadd_ps(vbeta, _mm512_maskz_loadu_ps(m0, cr), x0);                         \
      if (NV > 1) x1 = _mm512_fmadd_ps(vbeta, _mm512_maskz_loadu_ps(m1, cr + 16), x1);        \
    }                                                                                         \
    if (e->row_bias) {                                                                        \
      __m512 rb = _mm512_set1_ps(e->row_bias[i]);                                             \
      x0 = _mm512_add_ps(x0, rb);                                                             \
      x1 = _mm512_add_ps(x1, rb);                                                             \
    }                                                                                         \
    x0 = _mm512_add_ps(x0, cb0);                                                              \
    x1 = _mm512_add_ps(x1, cb1);                                                              \
    if (clamp) {                                                                              \
      TILE512_CLAMP(x0);                                                                      \
      TILE512_CLAMP(x1);                                                                      \
    }                                                                                         \
    _mm512_mask_storeu_ps(cr, m0, x0);                                                        \
    if (NV > 1) _mm512_mask_storeu_ps(cr + 16, m1, x1);                                       \
  }

/* R rows (of the 14 packed per panel: edge panels skip the zero rows) x NV 16-float vectors. */
INLINE_AVX512 void ukr(const int R, const int NV, int64_t kc, const float *restrict A, const float *restrict B,
                       int64_t ldb, float *C, int64_t ldc, int mr, int nr, const gemm_tile_epi *e) {
  TILE512_ACC_ZERO;
  /* The tile's C rows (both cache lines of each: a later K block reads them back) arrive during the K loop;
   * rows of a wide C (BERT's 3072-column FFN) are one stream each and would otherwise miss to L3 / memory at
   * the epilogue, 14 at a time. */
  for (int i = 0; i < mr; i++) {
    _mm_prefetch((const char *)(C + i * ldc), _MM_HINT_T0);
    if (NV > 1) _mm_prefetch((const char *)(C + i * ldc + 16), _MM_HINT_T0);
  }
  for (int64_t k = 0; k < kc; k++) {
    const __m512 b0 = _mm512_loadu_ps(B), b1 = NV > 1 ? _mm512_loadu_ps(B + 16) : b0;
    TILE512_FMA_ROWS
    A += 14;
    B += ldb;
  }
  __mmask16 m0, m1;
  tile512_col_masks(nr, &m0, &m1);
  const __m512 va = _mm512_set1_ps(e->alpha), vbeta = _mm512_set1_ps(e->beta);
  const __m512 cb0 = e->col_bias ? _mm512_maskz_loadu_ps(m0, e->col_bias) : _mm512_setzero_ps();
  const __m512 cb1 = e->col_bias && NV > 1 ? _mm512_maskz_loadu_ps(m1, e->col_bias + 16) : _mm512_setzero_ps();
  __m512 vlo, vhi;
  const int clamp = tile512_bounds(e->act, e->act_alpha, e->act_beta, &vlo, &vhi);
  ROW_EPI(0) ROW_EPI(1) ROW_EPI(2) ROW_EPI(3) ROW_EPI(4) ROW_EPI(5) ROW_EPI(6)
  ROW_EPI(7) ROW_EPI(8) ROW_EPI(9) ROW_EPI(10) ROW_EPI(11) ROW_EPI(12) ROW_EPI(13)
  if (!clamp && e->act != KEEL_ACT_NONE)
    for (int i = 0; i < mr; i++) keel_act_apply_f32(C + i * ldc, (size_t)nr, (keel_act)e->act, e->act_alpha, e->act_beta);
}

#define VARIANT(R, NV)                                                                                      \
  AVX512 static void ukr_##R##_##NV(int64_t kc, const float *A, const float *B, int64_t ldb, float *C,         \
                                    int64_t ldc, int mr, int nr, const gemm_tile_epi *e) {                  \
    ukr(R, NV, kc, A, B, ldb, C, ldc, mr, nr, e);                                                           \
  }
VARIANT(14, 2)
VARIANT(8, 2)
VARIANT(4, 2)
VARIANT(2, 2)
VARIANT(14, 1)
VARIANT(8, 1)
VARIANT(4, 1)
VARIANT(2, 1)

/* A 14 x 32 panel pair; smaller variants for the edge tiles, so partial tiles do not pay for the zeros. */
void keel_gemm_ukr_avx512(int64_t kc, const float *A, const float *B, int64_t ldb, float *C, int64_t ldc, int mr,
                          int nr, const gemm_tile_epi *e) {
  if (nr > 16) {
    if (mr > 8) ukr_14_2(kc, A, B, ldb, C, ldc, mr, nr, e);
    else if (mr > 4) ukr_8_2(kc, A, B, ldb, C, ldc, mr, nr, e);
    else if (mr > 2) ukr_4_2(kc, A, B, ldb, C, ldc, mr, nr, e);
    else ukr_2_2(kc, A, B, ldb, C, ldc, mr, nr, e);
  } else {
    if (mr > 8) ukr_14_1(kc, A, B, ldb, C, ldc, mr, nr, e);
    else if (mr > 4) ukr_8_1(kc, A, B, ldb, C, ldc, mr, nr, e);
    else if (mr > 2) ukr_4_1(kc, A, B, ldb, C, ldc, mr, nr, e);
    else ukr_2_1(kc, A, B, ldb, C, ldc, mr, nr, e);
  }
}

#else
/* Not x86-64: never selected. */
void keel_gemm_ukr_avx512(int64_t kc, const float *Ap, const float *Bp, int64_t ldb, float *C, int64_t ldc, int mr,
                          int nr, const gemm_tile_epi *e) {
  (void)kc, (void)Ap, (void)Bp, (void)ldb, (void)C, (void)ldc, (void)mr, (void)nr, (void)e;
}
#endif
