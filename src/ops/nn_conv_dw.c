/* Depthwise convolution: see nn_conv_dw.h.
 *
 * Each output row is computed in one sweep: the kernel rows that fall inside the input are found once per
 * row (so vertical padding costs nothing), the columns whose taps all land inside the input (the interior)
 * run SIMD across the output row, and the few border columns run a scalar loop that skips missing taps.
 * Stride 1 reads the input row with unaligned loads; stride 2 loads two vectors and keeps the even lanes.
 * Other strides take the scalar path for the whole row. ReLU and Clip are applied in registers; other fused
 * activations run over the finished row while it is still in L1.
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

/* Inline activations for the SIMD paths: ReLU and Clip as lane-wise min/max bounds. */
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
    _mm512_mask_storeu_ps(y, om, _mm512_min_ps(_mm512_max_ps(a0, vlo), vhi));
    if (R == 4) {
      _mm512_mask_storeu_ps(y + OW, om, _mm512_min_ps(_mm512_max_ps(a1, vlo), vhi));
      _mm512_mask_storeu_ps(y + 2 * OW, om, _mm512_min_ps(_mm512_max_ps(a2, vlo), vhi));
      _mm512_mask_storeu_ps(y + 3 * OW, om, _mm512_min_ps(_mm512_max_ps(a3, vlo), vhi));
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
    acc = _mm256_min_ps(_mm256_max_ps(acc, vlo), vhi);
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
    _mm512_storeu_ps(out + q, _mm512_min_ps(_mm512_max_ps(a0, vlo), vhi));
    _mm512_storeu_ps(out + q + 16, _mm512_min_ps(_mm512_max_ps(a1, vlo), vhi));
    _mm512_storeu_ps(out + q + 32, _mm512_min_ps(_mm512_max_ps(a2, vlo), vhi));
    _mm512_storeu_ps(out + q + 48, _mm512_min_ps(_mm512_max_ps(a3, vlo), vhi));
  }
  for (; q < nq; q += 16) { /* reads and writes up to 15 floats past nq: the buffers have slack */
    __m512 a0 = vb;
#pragma GCC unroll 9
    for (int t = 0; t < KH * KW; t++) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(tp[t] + q), _mm512_set1_ps(wt[t]), a0);
    _mm512_storeu_ps(out + q, _mm512_min_ps(_mm512_max_ps(a0, vlo), vhi));
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
#endif

enum { DW_SCALAR, DW_AVX2, DW_AVX512 };

static int flat_mode = -1; /* tests / benchmarks: -1 auto, 0 never, 1 always (where it applies) */

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
  const bool flat = isa == DW_AVX512 && flat_ok(p) && flat_geom(p, &fC2, &ftb, &fps);
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
        keel_act_apply_f32(yr, (size_t)p->OW, p->act, p->act_alpha, p->act_beta);
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
      keel_act_apply_f32(yr, (size_t)p->OW, p->act, p->act_alpha, p->act_beta);
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
  /* threads only where each gets a few hundred thousand MACs (waking the pool costs microseconds) */
  const double macs = (double)planes * (double)(p->OH * p->OW) * p->kh * p->kw;
  int nt = num_threads < 1 ? 1 : num_threads;
  if (nt > planes) nt = (int)planes;
  while (nt > 1 && macs / nt < 2e5) nt--;
  if (nt <= 1) {
    dw_planes(p, x, w, bias, y, 0, planes);
    return;
  }
  dw_job job = {p, x, w, bias, y};
  keel_parallel_run(nt, dw_thread, &job);
}
