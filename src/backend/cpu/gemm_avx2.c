/* The AVX2 + FMA microkernel: a 6 x 16 tile in 12 ymm accumulators (two B loads, six broadcasts, twelve
 * FMAs per k). Full tiles get a vector epilogue; edge tiles go through a small buffer and the scalar one. */
#include "backend/cpu/gemm_internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

#define FMA_ROW(i)                             \
  {                                            \
    const __m256 a = _mm256_set1_ps(A[i]);     \
    c##i##a = _mm256_fmadd_ps(a, b0, c##i##a); \
    c##i##b = _mm256_fmadd_ps(a, b1, c##i##b); \
  }

#define ROW_EPI(i)                                                           \
  {                                                                          \
    __m256 x0 = _mm256_mul_ps(va, c##i##a), x1 = _mm256_mul_ps(va, c##i##b); \
    float *cr = C + (i) * ldc;                                               \
    if (e->load_c) {                                                         \
      x0 = _mm256_fmadd_ps(vbeta, _mm256_loadu_ps(cr), x0);                  \
      x1 = _mm256_fmadd_ps(vbeta, _mm256_loadu_ps(cr + 8), x1);              \
    }                                                                        \
    if (e->row_bias) {                                                       \
      __m256 rb = _mm256_set1_ps(e->row_bias[i]);                            \
      x0 = _mm256_add_ps(x0, rb);                                            \
      x1 = _mm256_add_ps(x1, rb);                                            \
    }                                                                        \
    x0 = _mm256_add_ps(x0, cb0);                                             \
    x1 = _mm256_add_ps(x1, cb1);                                             \
    if (clamp) {                                                             \
      x0 = _mm256_min_ps(vhi, _mm256_max_ps(vlo, x0));                       \
      x1 = _mm256_min_ps(vhi, _mm256_max_ps(vlo, x1));                       \
    }                                                                        \
    _mm256_storeu_ps(cr, x0);                                                \
    _mm256_storeu_ps(cr + 8, x1);                                            \
  }

#define ROW_SAVE(i)                        \
  _mm256_storeu_ps(t + (i) * 16, c##i##a); \
  _mm256_storeu_ps(t + (i) * 16 + 8, c##i##b);

AVX2 void keel_gemm_ukr_avx2(int64_t kc, const float *restrict A, const float *restrict B, int64_t ldb, float *C,
                             int64_t ldc, int mr, int nr, const gemm_tile_epi *e) {
  __m256 c0a = _mm256_setzero_ps(), c0b = c0a, c1a = c0a, c1b = c0a, c2a = c0a, c2b = c0a;
  __m256 c3a = c0a, c3b = c0a, c4a = c0a, c4b = c0a, c5a = c0a, c5b = c0a;
  for (int64_t k = 0; k < kc; k++) {
    const __m256 b0 = _mm256_loadu_ps(B), b1 = _mm256_loadu_ps(B + 8);
    FMA_ROW(0) FMA_ROW(1) FMA_ROW(2) FMA_ROW(3) FMA_ROW(4) FMA_ROW(5)
    A += 6;
    B += ldb;
  }
  const int clamp = e->act == KEEL_ACT_RELU || e->act == KEEL_ACT_CLIP;
  if (mr == 6 && nr == 16 && (clamp || e->act == KEEL_ACT_NONE)) {
    const __m256 va = _mm256_set1_ps(e->alpha), vbeta = _mm256_set1_ps(e->beta);
    const __m256 cb0 = e->col_bias ? _mm256_loadu_ps(e->col_bias) : _mm256_setzero_ps();
    const __m256 cb1 = e->col_bias ? _mm256_loadu_ps(e->col_bias + 8) : _mm256_setzero_ps();
    const __m256 vlo = _mm256_set1_ps(e->act == KEEL_ACT_CLIP ? e->act_alpha : 0.0f);
    const __m256 vhi = _mm256_set1_ps(e->act == KEEL_ACT_CLIP ? e->act_beta : __builtin_inff());
    ROW_EPI(0) ROW_EPI(1) ROW_EPI(2) ROW_EPI(3) ROW_EPI(4) ROW_EPI(5)
    return;
  }
  float t[6 * 16] __attribute__((aligned(32)));
  ROW_SAVE(0) ROW_SAVE(1) ROW_SAVE(2) ROW_SAVE(3) ROW_SAVE(4) ROW_SAVE(5)
  keel_gemm_epi_scalar(t, 16, C, ldc, mr, nr, e);
}

#else
void keel_gemm_ukr_avx2(int64_t kc, const float *Ap, const float *Bp, int64_t ldb, float *C, int64_t ldc, int mr,
                        int nr, const gemm_tile_epi *e) {
  (void)kc, (void)Ap, (void)Bp, (void)ldb, (void)C, (void)ldc, (void)mr, (void)nr, (void)e;
}
#endif
