/* Depthwise convolution: see nn_conv_dw.h.
 *
 * AVX-512, the common shapes (3x3 and 5x5 at stride 1 with "same" width, 3x3 at stride 2), take two paths
 * written for how Zen 5 spends its cycles: an unaligned 512-bit load costs about three aligned ones (it
 * crosses a cache line), so each kernel row is loaded once per 16 outputs and the other columns are made
 * from it with lane shifts (valignd) or even/odd splits (vpermt2ps); and at batch 8 the input streams from
 * memory, so each path prefetches its own input stream a few KiB ahead:
 *  - the "sweep" (stride 1, OW == W): the plane as one 1-D convolution over oh*W + ow, small planes copied
 *    between zero rows first (MobileNetV2's 7x7 and 14x14 lose no lanes to short rows);
 *  - stride 2: two output rows per pass over five input rows, or two output rows per vector on planes at
 *    most 16 wide.
 * Everything else takes the older kernels: each output row in one sweep, the kernel rows inside the input
 * found once per row, SIMD across the row with masked loads at the borders (four rows at a time in the
 * vertical interior), a "flat" phase-plane variant for stride 2 and narrow planes, AVX2 and scalar
 * fallbacks. ReLU and Clip are applied in registers; other fused activations run over each finished row or
 * plane while it is still in cache.
 *
 * The SIMD variants are compiled with function target attributes and picked at run time with
 * __builtin_cpu_supports, so the file needs no global -mavx512f. */
#include "ops/nn_conv_dw.h"

#include <math.h>

#include "backend/cpu/threadpool.h"
#include "ops/act.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define DW_X86 1
#else
#define DW_X86 0
#endif

/* Which output columns [lo, hi) have every tap inside the input row. */
static void interior_cols(const keel_conv_dw_params *p, int64_t *lo, int64_t *hi) {
  int64_t first = p->pad_left <= 0 ? 0 : (p->pad_left + p->sw - 1) / p->sw;
  int64_t last_in = p->W - 1 - (int64_t)(p->kw - 1) * p->dw + p->pad_left; /* ow*sw <= last_in */
  int64_t end = last_in < 0 ? 0 : last_in / p->sw + 1;
  if (end > p->OW) end = p->OW;
  if (first > end) first = end;
  *lo = first;
  *hi = end;
}

/* Scalar columns [c0, c1) of output row oh; taps outside the input are skipped. rows/nrows: valid kernel rows. */
static void row_scalar(const keel_conv_dw_params *p, const float *xc, const float *wc, float b, float *yr,
                       const int *rows, int nrows, int64_t oh, int64_t c0, int64_t c1) {
  for (int64_t ow = c0; ow < c1; ow++) {
    float acc = b;
    for (int r = 0; r < nrows; r++) {
      const int i = rows[r];
      const float *xr = xc + (oh * p->sh - p->pad_top + (int64_t)i * p->dh) * p->W;
      for (int j = 0; j < p->kw; j++) {
        const int64_t iw = ow * p->sw - p->pad_left + (int64_t)j * p->dw;
        if (iw < 0 || iw >= p->W) continue;
        acc += xr[iw] * wc[i * p->kw + j];
      }
    }
    yr[ow] = acc;
  }
}

/* Inline activations for the SIMD paths: ReLU and Clip as lane-wise min/max bounds, applied as
 * min(hi, max(lo, v)) so that a NaN stays NaN (x86 max/min return their second operand on NaN), as the
 * Relu and Clip ops leave it. */
static bool act_bounds(const keel_conv_dw_params *p, float *lo, float *hi) {
  if (p->act == KEEL_ACT_RELU) {
    *lo = 0.0f;
    *hi = INFINITY;
    return true;
  }
  if (p->act == KEEL_ACT_CLIP) {
    *lo = p->act_alpha;
    *hi = p->act_beta;
    return true;
  }
  *lo = -INFINITY;
  *hi = INFINITY;
  return p->act == KEEL_ACT_NONE;
}

/* The activation over n scalar-path outputs: the SIMD paths' bounds where they apply inline (so a NaN
 * comes out of every path the same), else keel_act_apply_f32. */
static void act_row(const keel_conv_dw_params *p, float *y, int64_t n, bool inline_act, float lo, float hi) {
  if (!inline_act) {
    keel_act_apply_f32(y, (size_t)n, p->act, p->act_alpha, p->act_beta);
    return;
  }
  for (int64_t k = 0; k < n; k++) {
    const float v = y[k] < lo ? lo : y[k]; /* NaN compares false: stays NaN */
    y[k] = v > hi ? hi : v;
  }
}

#if DW_X86
/* The body, inlined into wrappers where kw and the stride are compile-time constants (3x3 s1/s2) so the tap
 * loop unrolls, and into a generic one. */
/* Lanes [lo, hi) of a 16-lane mask, clamped to 0..16. */
__attribute__((target("avx512f"))) static inline __mmask16 lane_range(int64_t lo, int64_t hi) {
  if (lo < 0) lo = 0;
  if (hi > 16) hi = 16;
  if (hi <= lo) return 0;
  return (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
}

/* R output rows (R = 4 in the vertical interior, 1 elsewhere) over the whole output width. Taps that fall
 * outside the input row are masked off the loads (masked lanes never fault and read as 0), so the left and
 * right borders need no scalar path. Kernel rows: rows[0..nrows) (for R = 4 all of them). Inlined into
 * wrappers where kw, the stride and R are constants, so the tap loops unroll and the R accumulators form
 * independent FMA chains. */
__attribute__((target("avx512f"), always_inline)) static inline void
dw_avx512_body(const keel_conv_dw_params *p, const int kw, const int sw, const int R, const float *xc,
               const float *wc, float b, float *yc, int64_t oh, const int *rows, const int nrows, float lo,
               float hi) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
  const int64_t W = p->W, rstep = p->sh * W, OW = p->OW;
  const float *xr[64];
  for (int r = 0; r < nrows; r++) xr[r] = xc + (oh * p->sh - p->pad_top + (int64_t)rows[r] * p->dh) * W;
  __mmask16 k1[16] = {0}, k2[16] = {0};
  int64_t base[16] = {0};
  for (int64_t ow = 0; ow < OW; ow += 16) {
    const int64_t m = OW - ow < 16 ? OW - ow : 16;
    const __mmask16 om = (__mmask16)((1u << m) - 1u);
    const int64_t need = (int64_t)sw * (m - 1) + 1; /* input floats one tap spans */
#pragma GCC unroll 16
    for (int j = 0; j < kw; j++) {
      const int64_t bj = ow * sw - p->pad_left + (int64_t)j * p->dw;
      const int64_t end = need < W - bj ? need : W - bj;
      base[j] = bj;
      k1[j] = lane_range(-bj, end);
      if (sw == 2) k2[j] = lane_range(-bj - 16, end - 16);
    }
    /* named accumulators (an array would live on the stack); R is a constant, so unused ones vanish */
    __m512 a0 = _mm512_set1_ps(b), a1 = a0, a2 = a0, a3 = a0;
    for (int r = 0; r < nrows; r++) {
      const float *wr = wc + rows[r] * kw;
#pragma GCC unroll 16
      for (int j = 0; j < kw; j++) {
        const __m512 wv = _mm512_set1_ps(wr[j]);
        const float *q = xr[r] + base[j];
        if (sw == 1) {
          a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k1[j], q), wv, a0);
          if (R == 4) {
            a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k1[j], q + rstep), wv, a1);
            a2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k1[j], q + 2 * rstep), wv, a2);
            a3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k1[j], q + 3 * rstep), wv, a3);
          }
        } else {
#define DW_EVEN(Q) \
  _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(k1[j], (Q)), even, _mm512_maskz_loadu_ps(k2[j], (Q) + 16))
          a0 = _mm512_fmadd_ps(DW_EVEN(q), wv, a0);
          if (R == 4) {
            a1 = _mm512_fmadd_ps(DW_EVEN(q + rstep), wv, a1);
            a2 = _mm512_fmadd_ps(DW_EVEN(q + 2 * rstep), wv, a2);
            a3 = _mm512_fmadd_ps(DW_EVEN(q + 3 * rstep), wv, a3);
          }
#undef DW_EVEN
        }
      }
    }
    float *y = yc + oh * OW + ow;
    _mm512_mask_storeu_ps(y, om, _mm512_min_ps(vhi, _mm512_max_ps(vlo, a0)));
    if (R == 4) {
      _mm512_mask_storeu_ps(y + OW, om, _mm512_min_ps(vhi, _mm512_max_ps(vlo, a1)));
      _mm512_mask_storeu_ps(y + 2 * OW, om, _mm512_min_ps(vhi, _mm512_max_ps(vlo, a2)));
      _mm512_mask_storeu_ps(y + 3 * OW, om, _mm512_min_ps(vhi, _mm512_max_ps(vlo, a3)));
    }
  }
}

__attribute__((target("avx512f"), noinline)) static void dw_avx512_rows4(const keel_conv_dw_params *p, const float *xc,
                                                                 const float *wc, float b, float *yc, int64_t oh,
                                                                 const int *all, float lo, float hi) {
  if (p->kh == 3 && p->kw == 3 && p->sw == 1)
    dw_avx512_body(p, 3, 1, 4, xc, wc, b, yc, oh, all, 3, lo, hi);
  else if (p->kh == 3 && p->kw == 3 && p->sw == 2)
    dw_avx512_body(p, 3, 2, 4, xc, wc, b, yc, oh, all, 3, lo, hi);
  else if (p->sw == 1)
    dw_avx512_body(p, p->kw, 1, 4, xc, wc, b, yc, oh, all, p->kh, lo, hi);
  else
    dw_avx512_body(p, p->kw, 2, 4, xc, wc, b, yc, oh, all, p->kh, lo, hi);
}

__attribute__((target("avx512f"), noinline)) static void dw_avx512_row(const keel_conv_dw_params *p, const float *xc,
                                                               const float *wc, float b, float *yc, int64_t oh,
                                                               const int *rows, int nrows, float lo, float hi) {
  if (p->kw == 3 && p->sw == 1)
    dw_avx512_body(p, 3, 1, 1, xc, wc, b, yc, oh, rows, nrows, lo, hi);
  else if (p->kw == 3 && p->sw == 2)
    dw_avx512_body(p, 3, 2, 1, xc, wc, b, yc, oh, rows, nrows, lo, hi);
  else if (p->sw == 1)
    dw_avx512_body(p, p->kw, 1, 1, xc, wc, b, yc, oh, rows, nrows, lo, hi);
  else
    dw_avx512_body(p, p->kw, 2, 1, xc, wc, b, yc, oh, rows, nrows, lo, hi);
}


__attribute__((target("avx2,fma"))) static void row_avx2(const keel_conv_dw_params *p, const float *xc,
                                                           const float *wc, float b, float *yr, const int *rows,
                                                           int nrows, int64_t oh, int64_t c0, int64_t c1,
                                                           float lo, float hi) {
  const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  const float *xrow[64];
  const float *wrow[64];
  for (int r = 0; r < nrows; r++) {
    xrow[r] = xc + (oh * p->sh - p->pad_top + (int64_t)rows[r] * p->dh) * p->W - p->pad_left;
    wrow[r] = wc + rows[r] * p->kw;
  }
  /* full vectors only, and for stride 2 only where the 16-float load stays inside the row */
  int64_t ow = c0;
  for (; ow + 8 <= c1; ow += 8) {
    if (p->sw == 2 && 2 * (ow + 7) + 1 + (int64_t)(p->kw - 1) * p->dw - p->pad_left >= p->W) break;
    __m256 acc = _mm256_set1_ps(b);
    for (int r = 0; r < nrows; r++) {
      const float *xs = xrow[r] + ow * p->sw;
      for (int j = 0; j < p->kw; j++) {
        const float *q = xs + (int64_t)j * p->dw;
        __m256 v;
        if (p->sw == 1) {
          v = _mm256_loadu_ps(q);
        } else {
          __m256 a = _mm256_loadu_ps(q), c = _mm256_loadu_ps(q + 8);
          v = _mm256_shuffle_ps(a, c, _MM_SHUFFLE(2, 0, 2, 0)); /* a0 a2 c0 c2 | a4 a6 c4 c6 */
          v = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), _MM_SHUFFLE(3, 1, 2, 0)));
        }
        acc = _mm256_fmadd_ps(v, _mm256_set1_ps(wrow[r][j]), acc);
      }
    }
    acc = _mm256_min_ps(vhi, _mm256_max_ps(vlo, acc));
    _mm256_storeu_ps(yr + ow, acc);
  }
  if (ow < c1) { /* the tail: scalar, then the same bounds */
    row_scalar(p, xc, wc, b, yr, rows, nrows, oh, ow, c1);
    for (int64_t k = ow; k < c1; k++) {
      float v = yr[k] < lo ? lo : yr[k];
      yr[k] = v > hi ? hi : v;
    }
  }
}

/* ---- the "flat" AVX-512 path: a band of output rows as one 1-D convolution ----
 * The input rows a band needs are copied (zero padding included) into s*s phase planes, one per (row,
 * column) residue mod the stride s: Q_ab[r][c] = padded input[s*r + a][s*c + b]. Every tap (i, j) then
 * reads one phase plane at a constant offset (i/s)*C2 + j/s from the output position q = oh*C2 + ow, where
 * C2 = OW + (kw-1)/s is the phase width. So the whole band is a flat 1-D convolution over q: 16 outputs per
 * vector with no masks, no per-row setup and no lanes wasted on narrow planes (7x7, 14x14) or on stride-2
 * deinterleaving inside the tap loop. The C2 - OW extra columns per row are computed and dropped when the
 * band is copied out. Each output sums bias + taps in (i, j) order like the row kernels. */
#define DW_FLAT_FLOATS 8192 /* stack buffer per call (32 KiB): phase planes + the band's flat output */

__attribute__((target("avx512f"), always_inline)) static inline void
flat_band(const int KH, const int KW, const int S, const float *const *ph, int64_t C2, const float *wc, float b,
          float *out, int64_t nq, float lo, float hi) {
  const float *tp[64];
  float wt[64];
  int nt = 0;
  for (int i = 0; i < KH; i++)
    for (int j = 0; j < KW; j++, nt++) {
      tp[nt] = ph[(i % S) * S + (j % S)] + (int64_t)(i / S) * C2 + j / S;
      wt[nt] = wc[i * KW + j];
    }
  const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi), vb = _mm512_set1_ps(b);
  int64_t q = 0;
  for (; q + 64 <= nq; q += 64) {
    __m512 a0 = vb, a1 = vb, a2 = vb, a3 = vb;
#pragma GCC unroll 9
    for (int t = 0; t < KH * KW; t++) {
      const __m512 w = _mm512_set1_ps(wt[t]);
      const float *r = tp[t] + q;
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(r), w, a0);
      a1 = _mm512_fmadd_ps(_mm512_loadu_ps(r + 16), w, a1);
      a2 = _mm512_fmadd_ps(_mm512_loadu_ps(r + 32), w, a2);
      a3 = _mm512_fmadd_ps(_mm512_loadu_ps(r + 48), w, a3);
    }
    _mm512_storeu_ps(out + q, _mm512_min_ps(vhi, _mm512_max_ps(vlo, a0)));
    _mm512_storeu_ps(out + q + 16, _mm512_min_ps(vhi, _mm512_max_ps(vlo, a1)));
    _mm512_storeu_ps(out + q + 32, _mm512_min_ps(vhi, _mm512_max_ps(vlo, a2)));
    _mm512_storeu_ps(out + q + 48, _mm512_min_ps(vhi, _mm512_max_ps(vlo, a3)));
  }
  for (; q < nq; q += 16) { /* reads and writes up to 15 floats past nq: the buffers have slack */
    __m512 a0 = vb;
#pragma GCC unroll 9
    for (int t = 0; t < KH * KW; t++) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(tp[t] + q), _mm512_set1_ps(wt[t]), a0);
    _mm512_storeu_ps(out + q, _mm512_min_ps(vhi, _mm512_max_ps(vlo, a0)));
  }
}

__attribute__((target("avx512f"), noinline)) static void flat_band_any(int kh, int kw, int s, const float *const *ph,
                                                                int64_t C2, const float *wc, float b, float *out,
                                                                int64_t nq, float lo, float hi) {
  if (kh == 3 && kw == 3 && s == 1) flat_band(3, 3, 1, ph, C2, wc, b, out, nq, lo, hi);
  else if (kh == 3 && kw == 3 && s == 2) flat_band(3, 3, 2, ph, C2, wc, b, out, nq, lo, hi);
  else if (kh == 5 && kw == 5 && s == 1) flat_band(5, 5, 1, ph, C2, wc, b, out, nq, lo, hi);
  else if (kh == 5 && kw == 5 && s == 2) flat_band(5, 5, 2, ph, C2, wc, b, out, nq, lo, hi);
  else flat_band(kh, kw, s, ph, C2, wc, b, out, nq, lo, hi);
}

/* Geometry of the flat path for p, or false when it does not apply (dilation, stride > 2, big kernels,
 * rows too wide for the buffer). tb: output rows per band; pstride: floats per phase plane. */
static bool flat_geom(const keel_conv_dw_params *p, int64_t *C2, int64_t *tb, int64_t *pstride) {
  if (p->dh != 1 || p->dw != 1 || p->sh != p->sw || (p->sh != 1 && p->sh != 2) || p->kh * p->kw > 64 ||
      p->kh > 8 || p->kw > 8)
    return false;
  const int s = p->sh;
  const int64_t c2 = p->OW + (p->kw - 1) / s, extra = (p->kh - 1) / s;
  /* per band: s*s planes of (tb + extra) rows + 64 slack, and tb rows of output + 64 slack */
  const int64_t fixed = (int64_t)s * s * (extra * c2 + 80) + 64, per_row = ((int64_t)s * s + 1) * c2;
  int64_t t = (DW_FLAT_FLOATS - fixed) / per_row;
  if (t < 1) return false;
  if (t > p->OH) t = p->OH;
  *C2 = c2;
  *tb = t;
  *pstride = (((t + extra) * c2 + 64) + 15) & ~(int64_t)15;
  return true;
}

/* Column masks of the phase fill, the same for every row: block k (16 phase columns) loads input columns
 * base .. base + 16*s - 1, base = 16*k*s - pad_left; lanes outside [0, W) read as 0 (the padding). */
__attribute__((target("avx512f"))) static void flat_masks(const keel_conv_dw_params *p, int64_t C2, __mmask16 *m1,
                                                           __mmask16 *m2) {
  for (int64_t c = 0, k = 0; c < C2; c += 16, k++) {
    const int64_t base = c * p->sw - p->pad_left;
    m1[k] = lane_range(-base, p->W - base);
    m2[k] = lane_range(-base - 16, p->W - base - 16);
  }
}

/* Fill the phase planes for phase rows r0 .. r0 + nrows. */
__attribute__((target("avx512f"))) static void flat_fill(const keel_conv_dw_params *p, const float *xc, float *buf,
                                                          int64_t C2, int64_t pstride, int64_t r0, int64_t nrows,
                                                          const __mmask16 *m1, const __mmask16 *m2) {
  const int s = p->sh;
  const int64_t W = p->W, step = 16 * s;
  const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  for (int a = 0; a < s; a++)
    for (int64_t r = 0; r < nrows; r++) {
      const int64_t ih = (r0 + r) * s + a - p->pad_top;
      float *q0 = buf + (int64_t)(a * s) * pstride + r * C2, *q1 = s == 2 ? q0 + pstride : q0;
      /* stores run up to 15 floats past the row, into the next row (written after) or the slack */
      if (ih < 0 || ih >= p->H) {
        for (int64_t c = 0; c < C2; c += 16) {
          _mm512_storeu_ps(q0 + c, _mm512_setzero_ps());
          if (s == 2) _mm512_storeu_ps(q1 + c, _mm512_setzero_ps());
        }
        continue;
      }
      const float *xr = xc + ih * W - p->pad_left;
      if (s == 1) {
        for (int64_t c = 0, k = 0; c < C2; c += 16, k++)
          _mm512_storeu_ps(q0 + c, _mm512_maskz_loadu_ps(m1[k], xr + c));
      } else {
        for (int64_t c = 0, k = 0; c < C2; c += 16, k++, xr += step) {
          const __m512 lo = _mm512_maskz_loadu_ps(m1[k], xr), hi = _mm512_maskz_loadu_ps(m2[k], xr + 16);
          _mm512_storeu_ps(q0 + c, _mm512_permutex2var_ps(lo, ev, hi));
          _mm512_storeu_ps(q1 + c, _mm512_permutex2var_ps(lo, od, hi));
        }
      }
    }
}

/* One plane through the flat path. */
__attribute__((target("avx512f"))) static void flat_plane(const keel_conv_dw_params *p, const float *xc,
                                                           const float *wc, float b, float *yc, float lo, float hi,
                                                           bool inline_act, int64_t C2, int64_t tb,
                                                           int64_t pstride) {
  float buf[DW_FLAT_FLOATS] __attribute__((aligned(64)));
  const int s = p->sh;
  const int64_t extra = (p->kh - 1) / s;
  float *out = buf + (int64_t)s * s * pstride;
  const float *ph[4] = {buf, buf + pstride, buf + 2 * pstride, buf + 3 * pstride};
  __mmask16 m1[DW_FLAT_FLOATS / 16], m2[DW_FLAT_FLOATS / 16];
  flat_masks(p, C2, m1, m2);
  for (int64_t r0 = 0; r0 < p->OH; r0 += tb) {
    const int64_t rows = p->OH - r0 < tb ? p->OH - r0 : tb;
    flat_fill(p, xc, buf, C2, pstride, r0, rows + extra, m1, m2);
    for (int i = 0; i < s * s; i++) { /* the few floats past the rows the last vectors read (never used) */
      _mm512_storeu_ps(buf + i * pstride + (rows + extra) * C2 + 16, _mm512_setzero_ps());
      _mm512_storeu_ps(buf + i * pstride + (rows + extra) * C2 + 32, _mm512_setzero_ps());
    }
    flat_band_any(p->kh, p->kw, s, ph, C2, wc, b, out, rows * C2, lo, hi);
    for (int64_t r = 0; r < rows; r++) {
      float *yr = yc + (r0 + r) * p->OW;
      const float *src = out + r * C2;
      int64_t c = 0;
      for (; c + 16 <= p->OW; c += 16) _mm512_storeu_ps(yr + c, _mm512_loadu_ps(src + c));
      if (c < p->OW)
        _mm512_mask_storeu_ps(yr + c, (__mmask16)((1u << (p->OW - c)) - 1u), _mm512_loadu_ps(src + c));
    }
    if (!inline_act) keel_act_apply_f32(yc + r0 * p->OW, (size_t)(rows * p->OW), p->act, p->act_alpha, p->act_beta);
  }
}

/* ---- the "sweep" AVX-512 path: stride 1 with OW == W, 3x3 (pad_left 1) or 5x5 (pad_left 2) ----
 * With OW == W, output q = oh*W + ow reads input q + (i - pad_top)*W + (j - pad_left) for tap (i, j): the
 * whole plane is one 1-D convolution over q, with no lanes lost to short rows. Unaligned 512-bit loads cost
 * about three times an aligned one on Zen 5 (each crosses a cache line), so each kernel row is loaded once
 * per 16 outputs and the other columns are made from it and its neighbours with valignd, zero-masked where
 * the column falls off the row (the mask pattern repeats every W / gcd(W, 16) vectors: a table built once
 * per call). Small planes are first copied between zero rows, so every vector takes that loop; in big ones
 * the few vectors whose window reaches past the first or last row take masked loads instead. */
#define DW_SWEEP_PERIOD 256 /* column-mask table rows (W / gcd(W, 16)) */
#define DW_SWEEP_SMALL 1536 /* floats of the small-plane copy, zero rows included */

typedef struct dw_sweep {
  int64_t P;                        /* column-mask period in vectors */
  int64_t va, vb;                   /* in place: vectors [va, vb) take the valignd loop */
  int64_t pre;                      /* small planes: floats of zeros before the copied plane, else -1 */
  __mmask16 cm[DW_SWEEP_PERIOD][5]; /* lanes whose column j stays inside the row, per vector mod P */
  float buf[2][DW_SWEEP_SMALL] __attribute__((aligned(64))); /* planes alternate (see sweep_range_k) */
} dw_sweep;

static int64_t gcd64(int64_t a, int64_t b) {
  while (b) {
    const int64_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

static bool sweep_ok(const keel_conv_dw_params *p) {
  if (p->sh != 1 || p->sw != 1 || p->dh != 1 || p->dw != 1 || p->OW != p->W) return false;
  if (!((p->kh == 3 && p->kw == 3 && p->pad_left == 1) || (p->kh == 5 && p->kw == 5 && p->pad_left == 2)))
    return false;
  if (p->pad_top < 0 || p->pad_top >= p->kh) return false;
  return p->W / gcd64(p->W, 16) <= DW_SWEEP_PERIOD;
}

static void sweep_geom(const keel_conv_dw_params *p, dw_sweep *g) {
  const int64_t W = p->W, H = p->H, pt = p->pad_top, below = p->kh - 1 - pt;
  g->P = W / gcd64(W, 16);
  for (int64_t r = 0; r < g->P; r++) {
    unsigned m[5] = {0, 0, 0, 0, 0};
    for (int64_t l = 0, col = (16 * r) % W; l < 16; l++, col = col + 1 == W ? 0 : col + 1)
      for (int j = 0; j < p->kw; j++) {
        const int64_t c = col + j - p->pad_left;
        if (c >= 0 && c < W) m[j] |= 1u << l;
      }
    for (int j = 0; j < p->kw; j++) g->cm[r][j] = (__mmask16)m[j];
  }
  /* in place, fast vectors: every tap row inside the input for all 16 lanes, the rolling loads (16 floats
   * before the first row's window, 16 after the last's) inside the plane, all 16 outputs inside the plane */
  int64_t va = (pt * W + 16 + 15) / 16;
  int64_t end = H * W - below * W - 32; /* 16 * v <= end */
  if (end > p->OH * W - 16) end = p->OH * W - 16;
  int64_t vb = end < 0 ? 0 : end / 16 + 1;
  if (vb < va) vb = va;
  g->va = va;
  g->vb = vb;
  /* small planes: zeros above (the first row's window and its rolling load) and below (the last output
   * row's window, its rolling load and the last vector's lanes past the plane), the plane copied between */
  int64_t rows_below = p->OH + p->kh - 1 - pt - H;
  if (rows_below < 0) rows_below = 0;
  const int64_t pre = ((pt * W + 16) + 15) & ~(int64_t)15, total = pre + H * W + rows_below * W + 48;
  g->pre = -1;
  if (total <= DW_SWEEP_SMALL) {
    g->pre = pre;
    for (int64_t i = 0; i < total; i++) g->buf[0][i] = g->buf[1][i] = 0.0f;
  }
}

/* Vectors [v0, v1) with masked loads: any row, any border. */
__attribute__((target("avx512f"), always_inline)) static inline void
sweep_edge(const keel_conv_dw_params *p, const dw_sweep *g, const int KH, const int KW, const int PL,
           const float *xc, const float *wc, float b, float *yc, int64_t v0, int64_t v1, __m512 vlo, __m512 vhi) {
  const int64_t W = p->W, H = p->H, pt = p->pad_top, nout = p->OH * W;
  for (int64_t v = v0; v < v1; v++) {
    const int64_t q = 16 * v;
    const __mmask16 *cm = g->cm[v % g->P];
    __m512 acc = _mm512_set1_ps(b);
    for (int i = 0; i < KH; i++) {
      /* lanes whose input row oh - pt + i lies in [0, H) */
      const __mmask16 rm = lane_range((pt - i) * W - q, (H + pt - i) * W - q);
      if (!rm) continue;
      const float *src = xc + q + (int64_t)(i - pt) * W - PL;
#pragma GCC unroll 8
      for (int j = 0; j < KW; j++)
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(rm & cm[j], src + j), _mm512_set1_ps(wc[i * KW + j]), acc);
    }
    _mm512_mask_storeu_ps(yc + q, lane_range(0, nout - q), _mm512_min_ps(vhi, _mm512_max_ps(vlo, acc)));
  }
}

/* Column o (-2..2) of a kernel row from the row's vectors before / at / after q, zeroed off the row. */
#define DW_SHIFT(o, prev, cur, next, m)                                                                         \
  ((o) == 0   ? (cur)                                                                                           \
   : (o) < 0 ? _mm512_castsi512_ps(_mm512_maskz_alignr_epi32((m), _mm512_castps_si512(cur),                     \
                                                             _mm512_castps_si512(prev), ((o) + 16) & 15))       \
             : _mm512_castsi512_ps(_mm512_maskz_alignr_epi32((m), _mm512_castps_si512(next),                     \
                                                             _mm512_castps_si512(cur), (o) & 15)))

/* Vectors [v0, v1) with aligned-row loads and valignd: the K rows of each vector's window, and the 16
 * floats before and after each, must be readable at xc (zero where padding). Outputs past nout are not
 * stored. Prefetches one line per vector at pf + q (the caller points it 8 KiB ahead of the loads) while
 * below pf_end. */
__attribute__((target("avx512f"), always_inline)) static inline void
sweep_fast(const keel_conv_dw_params *p, const dw_sweep *g, const int K, const float *xc, const float *wc, float b,
           float *yc, int64_t v0, int64_t v1, int64_t nout, __m512 vlo, __m512 vhi, const float *pf,
           const float *pf_end) {
  const int PL = K / 2;
  const int64_t W = p->W, pt = p->pad_top;
  const float *rp[5];
  __m512 pv[5], cv[5], wv[25];
#pragma GCC unroll 5
  for (int i = 0; i < K; i++) {
    rp[i] = xc + (int64_t)(i - pt) * W;
    pv[i] = _mm512_loadu_ps(rp[i] + 16 * v0 - 16);
    cv[i] = _mm512_loadu_ps(rp[i] + 16 * v0);
  }
#pragma GCC unroll 25
  for (int t = 0; t < K * K; t++) wv[t] = _mm512_set1_ps(wc[t]);
  const int64_t P = g->P; /* locals: the stores below may alias anything */
  const __mmask16(*cmt)[5] = g->cm;
  int64_t r = v0 % P;
  for (int64_t v = v0; v < v1; v++) {
    const int64_t q = 16 * v;
    const __mmask16 *cm = cmt[r];
    if (++r == P) r = 0;
    if (pf + q < pf_end) _mm_prefetch((const char *)(pf + q), _MM_HINT_T0);
    __m512 acc[5]; /* one chain per kernel row */
#pragma GCC unroll 5
    for (int i = 0; i < K; i++) {
      const __m512 nv = _mm512_loadu_ps(rp[i] + q + 16);
      acc[i] = i == 0 ? _mm512_set1_ps(b) : _mm512_setzero_ps();
#pragma GCC unroll 5
      for (int j = 0; j < K; j++) {
        const __m512 t = DW_SHIFT(j - PL, pv[i], cv[i], nv, cm[j]);
        acc[i] = _mm512_fmadd_ps(t, wv[i * K + j], acc[i]);
      }
      pv[i] = cv[i];
      cv[i] = nv;
    }
    __m512 sum = _mm512_add_ps(acc[0], acc[1]);
#pragma GCC unroll 5
    for (int i = 2; i < K; i++) sum = _mm512_add_ps(sum, acc[i]);
    sum = _mm512_min_ps(vhi, _mm512_max_ps(vlo, sum));
    if (q + 16 <= nout) _mm512_storeu_ps(yc + q, sum);
    else _mm512_mask_storeu_ps(yc + q, lane_range(0, nout - q), sum);
  }
}
#undef DW_SHIFT

/* Small planes: plane x (n floats) into copy buffer k between its zero rows, prefetching 8 KiB ahead. */
__attribute__((target("avx512f"))) static void sweep_copy(dw_sweep *g, int k, const float *x, int64_t n,
                                                           const float *pf_end) {
  float *dst = g->buf[k] + g->pre;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    if (x + i + 2048 < pf_end) _mm_prefetch((const char *)(x + i + 2048), _MM_HINT_T0);
    _mm512_store_ps(dst + i, _mm512_loadu_ps(x + i));
  }
  if (i < n) {
    const __mmask16 m = lane_range(0, n - i);
    _mm512_mask_storeu_ps(dst + i, m, _mm512_maskz_loadu_ps(m, x + i));
  }
}

/* Big planes in place: masked loads for the vectors near the first and last rows, the valignd loop between.
 * A call per plane (inlined into the plane loop, the loop allocates registers worse). */
__attribute__((target("avx512f"), always_inline)) static inline void
sweep_inplace_k(const keel_conv_dw_params *p, const dw_sweep *g, const int K, const float *xc, const float *wc,
                float b, float *yc, float lo, float hi, const float *pf_end) {
  const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
  const int64_t W = p->W, nout = p->OH * W, nvec = (nout + 15) / 16;
  const int64_t va = g->va < nvec ? g->va : nvec, vb = g->vb < nvec ? g->vb : nvec;
  sweep_edge(p, g, K, K, K / 2, xc, wc, b, yc, 0, va, vlo, vhi);
  if (va < vb)
    sweep_fast(p, g, K, xc, wc, b, yc, va, vb, nout, vlo, vhi, xc + (int64_t)(K - 1 - p->pad_top) * W + 2048,
               pf_end);
  sweep_edge(p, g, K, K, K / 2, xc, wc, b, yc, vb > va ? vb : va, nvec, vlo, vhi);
}

__attribute__((target("avx512f"), noinline)) static void sweep_inplace(const keel_conv_dw_params *p,
                                                                const dw_sweep *g, const float *xc,
                                                                const float *wc, float b, float *yc, float lo,
                                                                float hi, const float *pf_end) {
  if (p->kw == 3) sweep_inplace_k(p, g, 3, xc, wc, b, yc, lo, hi, pf_end);
  else sweep_inplace_k(p, g, 5, xc, wc, b, yc, lo, hi, pf_end);
}

/* What the per-plane loops of the sweep and stride-2 paths need: planes [p0, p1) of x / y. */
typedef struct dw_range {
  const keel_conv_dw_params *p;
  const float *x, *w, *bias;
  float *y;
  int64_t p0, p1;
  float lo, hi;       /* inline bounds */
  bool inline_act;    /* else the activation runs over each finished plane (still in cache) */
  const float *pf_end; /* prefetch no further: the end of this thread's input */
} dw_range;

/* Small planes run from a copy, made one plane ahead (into the other buffer) so that the loads never wait on
 * the copy's stores. */
__attribute__((target("avx512f"), always_inline)) static inline void sweep_range_k(const dw_range *R, dw_sweep *g,
                                                                                  const int K) {
  const keel_conv_dw_params *p = R->p;
  const __m512 vlo = _mm512_set1_ps(R->lo), vhi = _mm512_set1_ps(R->hi);
  const int64_t W = p->W, n = p->H * W, nout = p->OH * W, nvec = (nout + 15) / 16;
  if (g->pre >= 0 && R->p0 < R->p1) sweep_copy(g, (int)(R->p0 & 1), R->x + R->p0 * n, n, R->pf_end);
  for (int64_t pl = R->p0; pl < R->p1; pl++) {
    const int64_t c = pl % p->C;
    const float *xc = R->x + pl * n, *wc = R->w + c * (int64_t)K * K;
    const float b = R->bias ? R->bias[c] : 0.0f;
    float *yc = R->y + pl * nout;
    if (g->pre >= 0) {
      if (pl + 1 < R->p1) sweep_copy(g, (int)((pl + 1) & 1), xc + n, n, R->pf_end);
      sweep_fast(p, g, K, g->buf[pl & 1] + g->pre, wc, b, yc, 0, nvec, nout, vlo, vhi, R->pf_end, R->pf_end);
    } else {
      sweep_inplace(p, g, xc, wc, b, yc, R->lo, R->hi, R->pf_end);
    }
    if (!R->inline_act) keel_act_apply_f32(yc, (size_t)nout, p->act, p->act_alpha, p->act_beta);
  }
}

__attribute__((target("avx512f"), noinline)) static void sweep_range(const dw_range *R, dw_sweep *g) {
  if (R->p->kw == 3) sweep_range_k(R, g, 3);
  else sweep_range_k(R, g, 5);
}

/* ---- stride 2, 3x3, pad_left 0 or 1 ----
 * Each kernel row's 32 input floats per 16 outputs are loaded once (aligned when the row is) and split into
 * even and odd columns with two vpermt2ps; the third column is one of them shifted by a lane (valignd), the
 * lane it shifts in carried from the previous vector. No load is unaligned by a lane and no phase-plane
 * copy is made. Planes at most 16 wide with at most 8 outputs per row put two output rows in one vector. */
#define DW_ZERO_ROW 2048
static float dw_zero_row[DW_ZERO_ROW + 32] __attribute__((aligned(64))); /* never written: padding rows */

static bool s2_ok(const keel_conv_dw_params *p) {
  return p->sh == 2 && p->sw == 2 && p->dh == 1 && p->dw == 1 && p->kh == 3 && p->kw == 3 &&
         (p->pad_left == 0 || p->pad_left == 1) && p->pad_top >= 0 && p->pad_top < 3 && p->W <= DW_ZERO_ROW;
}

/* Two output rows per vector (OW <= 8, W <= 16): lanes 0-7 are row oh, lanes 8-15 row oh + 1; each kernel
 * row is one masked load per output row (rows outside the input read the zero row), each tap one vpermt2ps
 * of the pair. All planes of the range in one loop: the per-plane work is a few vectors. */
__attribute__((target("avx512f"), always_inline)) static inline void s2_pairs(const dw_range *R) {
  const keel_conv_dw_params *p = R->p;
  const int64_t W = p->W, H = p->H, OW = p->OW, OH = p->OH, n = H * W, nout = OH * OW;
  /* tap j of output column k (lane k, and lane 8 + k from the second row) reads input column 2k - pad + j */
  const __m512i two_k = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 2, 4, 6, 8, 10, 12, 14);
  const __m512i second = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 16, 16, 16, 16, 16, 16, 16, 16);
  const __m512i c15 = _mm512_set1_epi32(15);
  __m512i ix[3];
  __mmask16 tm[3];
#pragma GCC unroll 3
  for (int j = 0; j < 3; j++) {
    const __m512i c = _mm512_add_epi32(two_k, _mm512_set1_epi32(j - p->pad_left));
    ix[j] = _mm512_or_si512(_mm512_and_si512(c, c15), second);
    tm[j] = _mm512_cmp_epi32_mask(_mm512_andnot_si512(c15, c), _mm512_setzero_si512(), _MM_CMPINT_EQ); /* 0..15 */
  }
  const __mmask16 lm = lane_range(0, W), s0 = lane_range(0, OW), s1 = lane_range(8, 8 + OW);
  const __m512 vlo = _mm512_set1_ps(R->lo), vhi = _mm512_set1_ps(R->hi);
  for (int64_t pl = R->p0, c = R->p0 % p->C; pl < R->p1; pl++, c = c + 1 == p->C ? 0 : c + 1) {
    const float *xc = R->x + pl * n, *wc = R->w + c * 9;
    float *yc = R->y + pl * nout;
    const __m512 vb = _mm512_set1_ps(R->bias ? R->bias[c] : 0.0f);
    /* the next planes, 8 KiB ahead: the pairs read too little per plane for the hardware prefetchers to
     * follow across pages (MobileNetV2's 14x14 layer at batch 8: 0.20 -> 0.16 ms) */
    if (xc + 2048 + n <= R->pf_end)
      for (int64_t o = 2048; o < 2048 + n; o += 16) _mm_prefetch((const char *)(xc + o), _MM_HINT_T0);
    for (int64_t oh = 0; oh < OH; oh += 2) {
      const int64_t ih = 2 * oh - p->pad_top;
      /* input rows ih .. ih + 4: the first output row reads rows 0-2 (A), the second rows 2-4 (B) */
      __m512 in[5];
#pragma GCC unroll 5
      for (int i = 0; i < 5; i++) {
        const bool ok = ih + i >= 0 && ih + i < H && (i < 3 || oh + 1 < OH);
        in[i] = _mm512_maskz_loadu_ps(lm, ok ? xc + (ih + i) * W : dw_zero_row);
      }
      __m512 acc[3];
#pragma GCC unroll 3
      for (int i = 0; i < 3; i++) {
        const __m512 A = in[i], B = in[i + 2];
        const __m512 w0 = _mm512_set1_ps(wc[i * 3]), w1 = _mm512_set1_ps(wc[i * 3 + 1]);
        const __m512 w2 = _mm512_set1_ps(wc[i * 3 + 2]);
        acc[i] = _mm512_mul_ps(_mm512_maskz_permutex2var_ps(tm[0], A, ix[0], B), w0);
        acc[i] = _mm512_fmadd_ps(_mm512_maskz_permutex2var_ps(tm[1], A, ix[1], B), w1, acc[i]);
        acc[i] = _mm512_fmadd_ps(_mm512_maskz_permutex2var_ps(tm[2], A, ix[2], B), w2, acc[i]);
      }
      const __m512 sum = _mm512_add_ps(_mm512_add_ps(acc[0], vb), _mm512_add_ps(acc[1], acc[2]));
      const __m512 r = _mm512_min_ps(vhi, _mm512_max_ps(vlo, sum));
      _mm512_mask_storeu_ps(yc + oh * OW, s0, r);
      if (oh + 1 < OH) _mm512_mask_storeu_ps(yc + (oh + 1) * OW - 8, s1, r);
    }
    if (!R->inline_act) keel_act_apply_f32(yc, (size_t)nout, p->act, p->act_alpha, p->act_beta);
  }
}

/* The three tap columns of one kernel row for 16 outputs starting at input column c0 (a multiple of 32):
 * PL 1: columns 2ow - 1, 2ow, 2ow + 1 (the first from the odd columns shifted by a lane, the lane carried in
 * *op from the previous vector); PL 0: 2ow, 2ow + 1, 2ow + 2 (the last lane of the third from one scalar). */
__attribute__((target("avx512f"), always_inline)) static inline void
s2_cols(const int PL, const float *rp, int64_t c0, int64_t W, bool inner, __mmask16 ma, __mmask16 mb, __m512 *op,
        __m512 *t0, __m512 *t1, __m512 *t2) {
  const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const float *n = rp + c0;
  const __m512 A = inner ? _mm512_loadu_ps(n) : _mm512_maskz_loadu_ps(ma, n);
  const __m512 B = inner ? _mm512_loadu_ps(n + 16) : _mm512_maskz_loadu_ps(mb, n + 16);
  const __m512 e = _mm512_permutex2var_ps(A, ev, B), o = _mm512_permutex2var_ps(A, od, B);
  if (PL == 1) {
    *t0 = _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(o), _mm512_castps_si512(*op), 15));
    *t1 = e;
    *t2 = o;
    *op = o;
  } else {
    const __m512i e1 = _mm512_setr_epi32(2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 0);
    const float nx = c0 + 32 < W ? n[32] : 0.0f;
    *t0 = e;
    *t1 = o;
    *t2 = _mm512_mask_mov_ps(_mm512_permutex2var_ps(A, e1, B), (__mmask16)0x8000, _mm512_set1_ps(nx));
  }
}

/* Two output rows per pass (five input rows, the middle one shared), 16 outputs per vector. */
__attribute__((target("avx512f"), always_inline)) static inline void
s2_plane_k(const keel_conv_dw_params *p, const int PL, const float *xc, const float *wc, float b, float *yc,
           __m512 vlo, __m512 vhi, const float *pf_end) {
  const __m512 vb = _mm512_set1_ps(b);
  const int64_t W = p->W, H = p->H, OW = p->OW, OH = p->OH, nv = (OW + 15) / 16;
  /* prefetch the input rows of the output rows about 16 KiB of input ahead (the hardware prefetchers do not
   * keep up with the five-row sweep at batch 8: 1.13 -> 1.06 ms on MobileNetV2's 112x112 layer) */
  const int64_t pf_ahead = 4096 / (2 * W) + 1;
#define W_(i, j) _mm512_set1_ps(wc[(i) * 3 + (j)])
  /* vectors [0, full) read 32 floats inside the row; vector full reads the rest (masked), later ones none */
  const int64_t full = W / 32;
  const __mmask16 ma_last = lane_range(0, W - 32 * full), mb_last = lane_range(0, W - 32 * full - 16);
  for (int64_t oh = 0; oh < OH; oh += 2) {
    {
      const float *a = xc + (2 * (oh + pf_ahead) - p->pad_top + 1) * W;
      if (a + 4 * W <= pf_end)
        for (int64_t o = 0; o < 4 * W; o += 16) _mm_prefetch((const char *)(a + o), _MM_HINT_T0);
    }
    const int64_t ih = 2 * oh - p->pad_top;
    const bool two = oh + 1 < OH;
    /* rows outside the input (padding, or a missing second output row) read zeros */
#define ROW_(i) (ih + (i) >= 0 && ih + (i) < H && ((i) < 3 || two) ? xc + (ih + (i)) * W : dw_zero_row)
    const float *r0 = ROW_(0), *r1 = ROW_(1), *r2 = ROW_(2), *r3 = ROW_(3), *r4 = ROW_(4);
#undef ROW_
    __m512 p0 = _mm512_setzero_ps(), p1 = p0, p2 = p0, p3 = p0, p4 = p0; /* column -1: padding */
    float *y0 = yc + oh * OW, *y1 = y0 + OW;
    for (int64_t v = 0; v < nv; v++) {
      const int64_t c0 = 32 * v;
      const bool inner = v < full;
      const __mmask16 ma = v == full ? ma_last : 0, mb = v == full ? mb_last : 0;
      __m512 t0, t1, t2;
      /* one chain per kernel row of each output row */
      s2_cols(PL, r0, c0, W, inner, ma, mb, &p0, &t0, &t1, &t2);
      __m512 a0 = _mm512_fmadd_ps(t2, W_(0, 2), _mm512_fmadd_ps(t1, W_(0, 1), _mm512_fmadd_ps(t0, W_(0, 0), vb)));
      s2_cols(PL, r1, c0, W, inner, ma, mb, &p1, &t0, &t1, &t2);
      __m512 a1 = _mm512_fmadd_ps(t2, W_(1, 2), _mm512_fmadd_ps(t1, W_(1, 1), _mm512_mul_ps(t0, W_(1, 0))));
      s2_cols(PL, r2, c0, W, inner, ma, mb, &p2, &t0, &t1, &t2);
      __m512 a2 = _mm512_fmadd_ps(t2, W_(2, 2), _mm512_fmadd_ps(t1, W_(2, 1), _mm512_mul_ps(t0, W_(2, 0))));
      __m512 b0 = _mm512_fmadd_ps(t2, W_(0, 2), _mm512_fmadd_ps(t1, W_(0, 1), _mm512_fmadd_ps(t0, W_(0, 0), vb)));
      s2_cols(PL, r3, c0, W, inner, ma, mb, &p3, &t0, &t1, &t2);
      __m512 b1 = _mm512_fmadd_ps(t2, W_(1, 2), _mm512_fmadd_ps(t1, W_(1, 1), _mm512_mul_ps(t0, W_(1, 0))));
      s2_cols(PL, r4, c0, W, inner, ma, mb, &p4, &t0, &t1, &t2);
      __m512 b2 = _mm512_fmadd_ps(t2, W_(2, 2), _mm512_fmadd_ps(t1, W_(2, 1), _mm512_mul_ps(t0, W_(2, 0))));
      a0 = _mm512_min_ps(vhi, _mm512_max_ps(vlo, _mm512_add_ps(_mm512_add_ps(a0, a1), a2)));
      b0 = _mm512_min_ps(vhi, _mm512_max_ps(vlo, _mm512_add_ps(_mm512_add_ps(b0, b1), b2)));
      if (16 * v + 16 <= OW) {
        _mm512_storeu_ps(y0 + 16 * v, a0);
        if (two) _mm512_storeu_ps(y1 + 16 * v, b0);
      } else {
        const __mmask16 sm = lane_range(0, OW - 16 * v);
        _mm512_mask_storeu_ps(y0 + 16 * v, sm, a0);
        if (two) _mm512_mask_storeu_ps(y1 + 16 * v, sm, b0);
      }
    }
  }
#undef W_
}

/* One plane (a call per plane: inlined into the plane loop, the row loop allocates registers worse). */
__attribute__((target("avx512f"), noinline)) static void s2_plane(const keel_conv_dw_params *p, const float *xc,
                                                           const float *wc, float b, float *yc, float lo, float hi,
                                                           const float *pf_end) {
  const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
  if (p->pad_left == 1) s2_plane_k(p, 1, xc, wc, b, yc, vlo, vhi, pf_end);
  else s2_plane_k(p, 0, xc, wc, b, yc, vlo, vhi, pf_end);
}

__attribute__((target("avx512f"), noinline)) static void s2_pairs_range(const dw_range *R) { s2_pairs(R); }

static void s2_range(const dw_range *R) {
  const keel_conv_dw_params *p = R->p;
  if (p->OW <= 8 && p->W <= 16) {
    s2_pairs_range(R);
    return;
  }
  const int64_t n = p->H * p->W, nout = p->OH * p->OW;
  for (int64_t pl = R->p0; pl < R->p1; pl++) {
    const int64_t c = pl % p->C;
    float *yc = R->y + pl * nout;
    s2_plane(p, R->x + pl * n, R->w + c * 9, R->bias ? R->bias[c] : 0.0f, yc, R->lo, R->hi, R->pf_end);
    if (!R->inline_act) keel_act_apply_f32(yc, (size_t)nout, p->act, p->act_alpha, p->act_beta);
  }
}
#endif

enum { DW_SCALAR, DW_AVX2, DW_AVX512 };

static int flat_mode = -1; /* tests / benchmarks: -1 auto, 0 never, 1 always (where it applies) */
static int new_paths = -1; /* tests / benchmarks: the sweep and stride-2 paths: 0 never, else where they apply */

#if DW_X86
/* Where the flat path beats the row kernels (measured on MobileNetV2's shapes). */
static bool flat_ok(const keel_conv_dw_params *p) {
  const int m = __atomic_load_n(&flat_mode, __ATOMIC_RELAXED);
  if (m >= 0) return m == 1;
  /* Measured on MobileNetV2's 3x3 shapes (bench/results/threads-2026-11-25.md): 20-60% faster at stride 2
   * and on 7x7-28x28 planes. Stride-1 rows of 56 and more: the row kernel already fills its vectors; the
   * flat path won 8-15% there on one thread but lost at two (56x56 at batch 8), so they stay on it. */
  return p->sw == 2 || p->OW < 48;
}
#endif

static int detect_isa(void) {
#if DW_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return DW_AVX512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return DW_AVX2;
#endif
  return DW_SCALAR;
}

static int isa_cached = -1, isa_forced = -1; /* relaxed atomics: every thread computes the same value */

static int dw_isa(void) {
  int f = __atomic_load_n(&isa_forced, __ATOMIC_RELAXED);
  int isa = __atomic_load_n(&isa_cached, __ATOMIC_RELAXED);
  if (isa < 0) {
    isa = detect_isa();
    __atomic_store_n(&isa_cached, isa, __ATOMIC_RELAXED);
  }
  return f >= 0 && f < isa ? f : isa;
}

void keel_conv_dw_force_isa(int isa) { __atomic_store_n(&isa_forced, isa, __ATOMIC_RELAXED); }

void keel_conv_dw_force_flat(int mode) { __atomic_store_n(&flat_mode, mode, __ATOMIC_RELAXED); }

void keel_conv_dw_force_new(int mode) { __atomic_store_n(&new_paths, mode, __ATOMIC_RELAXED); }

#if DW_X86
static void prefetch_plane(const float *x, int64_t n) {
  for (int64_t o = 0; o < n; o += 16) _mm_prefetch((const char *)(x + o), _MM_HINT_T1);
}
#endif

/* Planes [p0, p1) of the N*C planes (keel_conv_dw_f32 splits them across the thread pool). */
static void dw_planes(const keel_conv_dw_params *p, const float *x, const float *w, const float *bias, float *y,
                      int64_t p0, int64_t p1) {
  const int64_t plane_in = p->H * p->W, plane_out = p->OH * p->OW;
  int64_t lo_c, hi_c;
  interior_cols(p, &lo_c, &hi_c);
  float lo = -INFINITY, hi = INFINITY;
  const bool inline_act = act_bounds(p, &lo, &hi);
  int isa = (p->sw == 1 || p->sw == 2) && p->kh <= 64 ? dw_isa() : DW_SCALAR;
  if (isa == DW_AVX512 && p->kw > 16) isa = DW_AVX2; /* the AVX-512 body keeps one mask per kernel column */
  int rows[64], all_rows[64];
  for (int i = 0; i < p->kh && i < 64; i++) all_rows[i] = i;
#if !DW_X86
  (void)all_rows, (void)inline_act, (void)lo_c, (void)hi_c; /* used by the SIMD paths only */
#else
  int64_t fC2 = 0, ftb = 0, fps = 0;
  const int new_mode = __atomic_load_n(&new_paths, __ATOMIC_RELAXED);
  const bool sweep = isa == DW_AVX512 && new_mode != 0 && sweep_ok(p);
  const bool s2 = isa == DW_AVX512 && new_mode != 0 && !sweep && s2_ok(p);
  const bool flat = isa == DW_AVX512 && !sweep && !s2 && flat_ok(p) && flat_geom(p, &fC2, &ftb, &fps);
  if (sweep || s2) {
    const dw_range R = {p, x, w, bias, y, p0, p1, lo, hi, inline_act, x + p1 * plane_in};
    if (sweep) {
      dw_sweep sg;
      sweep_geom(p, &sg);
      sweep_range(&R, &sg);
    } else {
      s2_range(&R);
    }
    return;
  }
#endif
  for (int64_t pl = p0; pl < p1; pl++) {
    const int64_t c = pl % p->C;
    const float *xc = x + pl * plane_in;
    const float *wc = w + c * (int64_t)p->kh * p->kw;
    float *yc = y + pl * plane_out;
    const float b = bias ? bias[c] : 0.0f;
#if DW_X86
    /* The next plane into L2 now: the hardware prefetchers do not follow the kernels' row-window sweeps,
     * and at batch 8 (tensors past L3) planes otherwise arrive from memory at a third of the bandwidth. */
    if (pl + 1 < p1) prefetch_plane(xc + plane_in, plane_in);
    if (flat) {
      flat_plane(p, xc, wc, b, yc, lo, hi, inline_act, fC2, ftb, fps);
      continue;
    }
#endif
    for (int64_t oh = 0; oh < p->OH; oh++) {
      float *yr = yc + oh * p->OW;
#if DW_X86
      /* AVX-512: four rows of the vertical interior at once, whole width, borders masked */
      if (isa == DW_AVX512 && oh + 3 < p->OH && oh * p->sh - p->pad_top >= 0 &&
          (oh + 3) * p->sh - p->pad_top + (int64_t)(p->kh - 1) * p->dh < p->H) {
        dw_avx512_rows4(p, xc, wc, b, yc, oh, all_rows, lo, hi);
        if (!inline_act)
          keel_act_apply_f32(yr, (size_t)(4 * p->OW), p->act, p->act_alpha, p->act_beta);
        oh += 3;
        continue;
      }
#endif
      int nrows = 0;
      int rows_big = 0; /* kernels taller than 64 rows: the scalar path checks rows itself */
      for (int i = 0; i < p->kh; i++) {
        const int64_t ih = oh * p->sh - p->pad_top + (int64_t)i * p->dh;
        if (ih < 0 || ih >= p->H) continue;
        if (nrows < 64) rows[nrows++] = i;
        else rows_big = 1;
      }
      if (rows_big) { /* rare: fall back to the reference formula for this row */
        for (int64_t ow = 0; ow < p->OW; ow++) {
          float acc = b;
          for (int i = 0; i < p->kh; i++) {
            const int64_t ih = oh * p->sh - p->pad_top + (int64_t)i * p->dh;
            if (ih < 0 || ih >= p->H) continue;
            for (int j = 0; j < p->kw; j++) {
              const int64_t iw = ow * p->sw - p->pad_left + (int64_t)j * p->dw;
              if (iw >= 0 && iw < p->W) acc += xc[ih * p->W + iw] * wc[i * p->kw + j];
            }
          }
          yr[ow] = acc;
        }
        act_row(p, yr, p->OW, inline_act, lo, hi);
        continue;
      }
#if DW_X86
      if (isa == DW_AVX512) {
        dw_avx512_row(p, xc, wc, b, yc, oh, rows, nrows, lo, hi);
        if (!inline_act) keel_act_apply_f32(yr, (size_t)p->OW, p->act, p->act_alpha, p->act_beta);
        continue;
      }
      if (isa == DW_AVX2 && hi_c > lo_c) {
        row_scalar(p, xc, wc, b, yr, rows, nrows, oh, 0, lo_c);
        row_avx2(p, xc, wc, b, yr, rows, nrows, oh, lo_c, hi_c, lo, hi);
        row_scalar(p, xc, wc, b, yr, rows, nrows, oh, hi_c, p->OW);
        if (inline_act) { /* the SIMD middle is bounded already; bound the scalar borders */
          for (int64_t k = 0; k < lo_c; k++) yr[k] = yr[k] < lo ? lo : yr[k] > hi ? hi : yr[k];
          for (int64_t k = hi_c; k < p->OW; k++) yr[k] = yr[k] < lo ? lo : yr[k] > hi ? hi : yr[k];
        } else {
          keel_act_apply_f32(yr, (size_t)p->OW, p->act, p->act_alpha, p->act_beta);
        }
        continue;
      }
#endif
      row_scalar(p, xc, wc, b, yr, rows, nrows, oh, 0, p->OW);
      act_row(p, yr, p->OW, inline_act, lo, hi);
    }
  }
}

typedef struct dw_job {
  const keel_conv_dw_params *p;
  const float *x, *w, *bias;
  float *y;
} dw_job;

/* One thread's share: a contiguous range of the N*C planes. */
static void dw_thread(void *ctx, int tid, int nt, void *scratch) {
  (void)scratch;
  const dw_job *j = ctx;
  const int64_t planes = j->p->N * j->p->C;
  dw_planes(j->p, j->x, j->w, j->bias, j->y, planes * tid / nt, planes * (tid + 1) / nt);
}

void keel_conv_dw_f32(const keel_conv_dw_params *p, const float *x, const float *w, const float *bias, float *y,
                      int num_threads) {
  if (p->N <= 0 || p->C <= 0 || p->OH <= 0 || p->OW <= 0) return;
  const int64_t planes = p->N * p->C;
  /* threads only where each gets at least 50 thousand MACs (2-3 us here; waking the pool costs about 1 us) */
  const double macs = (double)planes * (double)(p->OH * p->OW) * p->kh * p->kw;
  int nt = num_threads < 1 ? 1 : num_threads;
  if (nt > planes) nt = (int)planes;
  while (nt > 1 && macs / nt < 5e4) nt--;
  if (nt <= 1) {
    dw_planes(p, x, w, bias, y, 0, planes);
    return;
  }
  dw_job job = {p, x, w, bias, y};
  keel_parallel_run(nt, dw_thread, &job);
}
