/* The AVX-512 microkernel: a 14 x 32 tile in 28 zmm accumulators. Per k: two 16-float loads of B, 14
 * broadcasts of A, 28 FMAs (14 cycles on two 512-bit FMA pipes). Compiled for AVX-512 only in this function
 * (target attribute), so the binary still runs on any x86-64; gemm.c calls it only when the CPU has it. */
#include "backend/cpu/gemm_internal.h"

#include "ops/act.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,fma")))
#define INLINE_AVX512 __attribute__((target("avx512f,fma"), always_inline)) static inline

/* One row of the tile: scale, add C / biases, clamp, masked store. The clamp's operand order keeps NaN
 * (max / min return their second operand when either is NaN), like the standalone Relu and Clip ops. */
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
      x0 = _mm512_min_ps(vhi, _mm512_max_ps(vlo, x0));                                        \
      x1 = _mm512_min_ps(vhi, _mm512_max_ps(vlo, x1));                                        \
    }                                                                                         \
    _mm512_mask_storeu_ps(cr, m0, x0);                                                        \
    if (NV > 1) _mm512_mask_storeu_ps(cr + 16, m1, x1);                                       \
  }

/* Rows beyond R and the second column vector when NV is 1 compile away (R, NV are constants). */
#define FMA_ROW(i)                                              \
  if ((i) < R) {                                                \
    const __m512 a = _mm512_set1_ps(A[i]);                      \
    c##i##a = _mm512_fmadd_ps(a, b0, c##i##a);                  \
    if (NV > 1) c##i##b = _mm512_fmadd_ps(a, b1, c##i##b);      \
  }

/* R rows (of the 14 packed per panel: edge panels skip the zero rows) x NV 16-float vectors. */
INLINE_AVX512 void ukr(const int R, const int NV, int64_t kc, const float *restrict A, const float *restrict B,
                       int64_t ldb, float *C, int64_t ldc, int mr, int nr, const gemm_tile_epi *e) {
  __m512 c0a = _mm512_setzero_ps(), c0b = c0a, c1a = c0a, c1b = c0a, c2a = c0a, c2b = c0a, c3a = c0a, c3b = c0a;
  __m512 c4a = c0a, c4b = c0a, c5a = c0a, c5b = c0a, c6a = c0a, c6b = c0a, c7a = c0a, c7b = c0a;
  __m512 c8a = c0a, c8b = c0a, c9a = c0a, c9b = c0a, c10a = c0a, c10b = c0a, c11a = c0a, c11b = c0a;
  __m512 c12a = c0a, c12b = c0a, c13a = c0a, c13b = c0a;
  /* The tile's C rows (both cache lines of each: a later K block reads them back) arrive during the K loop;
   * rows of a wide C (BERT's 3072-column FFN) are one stream each and would otherwise miss to L3 / memory at
   * the epilogue, 14 at a time. */
  for (int i = 0; i < mr; i++) {
    _mm_prefetch((const char *)(C + i * ldc), _MM_HINT_T0);
    if (NV > 1) _mm_prefetch((const char *)(C + i * ldc + 16), _MM_HINT_T0);
  }
  for (int64_t k = 0; k < kc; k++) {
    const __m512 b0 = _mm512_loadu_ps(B), b1 = NV > 1 ? _mm512_loadu_ps(B + 16) : b0;
    FMA_ROW(0) FMA_ROW(1) FMA_ROW(2) FMA_ROW(3) FMA_ROW(4) FMA_ROW(5) FMA_ROW(6)
    FMA_ROW(7) FMA_ROW(8) FMA_ROW(9) FMA_ROW(10) FMA_ROW(11) FMA_ROW(12) FMA_ROW(13)
    A += 14;
    B += ldb;
  }
  const __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
  const __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF : nr <= 16 ? (__mmask16)0 : (__mmask16)((1u << (nr - 16)) - 1);
  const __m512 va = _mm512_set1_ps(e->alpha), vbeta = _mm512_set1_ps(e->beta);
  const __m512 cb0 = e->col_bias ? _mm512_maskz_loadu_ps(m0, e->col_bias) : _mm512_setzero_ps();
  const __m512 cb1 = e->col_bias && NV > 1 ? _mm512_maskz_loadu_ps(m1, e->col_bias + 16) : _mm512_setzero_ps();
  const int clamp = e->act == KEEL_ACT_RELU || e->act == KEEL_ACT_CLIP;
  const __m512 vlo = _mm512_set1_ps(e->act == KEEL_ACT_CLIP ? e->act_alpha : 0.0f);
  const __m512 vhi = _mm512_set1_ps(e->act == KEEL_ACT_CLIP ? e->act_beta : __builtin_inff());
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
