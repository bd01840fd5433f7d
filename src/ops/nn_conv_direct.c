/* Direct float32 convolution (ops/nn_conv_direct.h), AVX-512: stride 1 with the output as wide as the
 * input, and stride 2 along rows.
 *
 * The convolution GEMM Y[M, P] = W[M, K] x cols[K, P] (K = C * kh * kw, P = OH * OW) with its B operand read
 * from the input instead of an im2col / implicit-im2col panel. Stride 1: for a tile of 32 consecutive
 * output positions of the flattened map, operand row k = (c, i, j) is 32 consecutive input floats at a
 * fixed offset from the tile (output row oh reads input row oh + i*dh - pad_top, column ow + j*dw -
 * pad_left), with the lanes whose tap falls outside the map (rows above / below, columns wrapping into the
 * neighbouring row, positions past the end) masked off: masked lanes read 0 and are not accessed, so the
 * address may lie outside the input (it is formed as an integer). Stride 2: tiles of up to 32 positions
 * along one output row, whose row of k is the even floats of 64 consecutive input floats (two masked loads
 * and a permute per 16 lanes). The masks and offsets depend only on the tile and the tap, so they are
 * computed once per tile. The inner loop is the GEMM microkernel's (14 x 32 accumulators, per k two B
 * loads, 14 broadcasts of the packed weights, 28 FMAs) minus the packing pass that used to copy every
 * window into a panel first.
 *
 * Loop order: per tile, the 14-row panels of the weights over the whole K (the accumulators stay in
 * registers; bias and activation are applied there and each output element is written once), so the
 * tile's input (C * kh rows of ~32 floats) is loaded from memory once and re-read from L1 / L2 by the
 * other panels. Weights beyond L2 go in blocks of panels: all of an image's tiles pass under one block
 * before the next, whose weights are prefetched into L2 meanwhile, a slice per tile. The next tile's input
 * is prefetched during its predecessor's first panel: its rows are C * kh short streams that the hardware
 * prefetchers do not follow (the batch-8 stride-2 stem ran 1.3-1.5x slower without). Threads take
 * contiguous ranges of (image, block, tile, panel). */
#include "ops/nn_conv_direct.h"

#include <stdint.h>

#include "backend/cpu/gemm_internal.h"
#include "backend/cpu/threadpool.h"
#include "ops/act.h"

static int force_mode = -1;
static uint64_t calls;

void keel_conv_direct_force(int mode) { __atomic_store_n(&force_mode, mode, __ATOMIC_RELAXED); }
uint64_t keel_conv_direct_calls(void) { return __atomic_load_n(&calls, __ATOMIC_RELAXED); }

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#include "backend/cpu/gemm_avx512_tile.h"

#define DC_MAXT 64 /* kernel taps (kh * kw) per channel */
#define DC_MR 14   /* rows per packed weight panel (the AVX-512 GEMM's MR) */
/* Weights up to DC_WEIGHTS_L2 bytes are one block (they stay in L2 across tiles); larger ones go in blocks
 * of DC_BLOCK_BYTES. 256 -> 256 3x3 on 14x14 (2.4 MB) at batch 1 in ResNet-50, where the weights come from
 * memory: 1.33 ms unblocked, 1.05 ms in blocks with the next block prefetched. */
#define DC_WEIGHTS_L2 (768 * 1024)
#define DC_BLOCK_BYTES (256 * 1024)

#define AVX512 __attribute__((target("avx512f,fma")))
#define INLINE_AVX512 __attribute__((target("avx512f,fma"), always_inline)) static inline

typedef struct dc_job {
  const float *x, *A, *bias;
  float *y;
  int64_t N, C, H, W, M, OW, P, K, Mpad, HW;
  /* Tiles: 32 consecutive positions of the flattened map (tpr 0: stride 1, OW == W), or tpr tiles of up to
   * 32 positions per output row (stride 2). ntiles per image. */
  int64_t tpr, ntiles;
  int64_t npanels, pblock; /* weight panels of DC_MR rows; panels per block */
  int T, sh, sw;
  int64_t rh[DC_MAXT], cw[DC_MAXT]; /* per tap: input row and column shift */
  int64_t off[DC_MAXT];             /* per tap: byte offset of the tap's first lane from the tile start */
  int act;
  float act_alpha, act_beta;
} dc_job;

/* Weights to fetch into L2 during a kernel run: slice `slice` of `nslices` of the panel dpan panels away
 * (the same panel of the next block), per K block; dpan 0: none. */
typedef struct dc_wpf {
  int64_t dpan, slice, nslices;
} dc_wpf;

/* One tile: the load masks of each tap, for stride 1 of output lanes 0-15 and 16-31 (m[0], m[1]), for
 * stride 2 of the 64 input floats whose even ones are output lanes 0-31 (m[0] to m[3]); where the tile's
 * lane 0 reads (bytes from the image's channel 0, before the tap's offset) and writes. */
typedef struct dc_tile {
  __mmask16 m[4][DC_MAXT];
  int64_t xoff, yoff;
  int nr; /* positions */
} dc_tile;

/* The shape limits, weights aside. */
static bool dc_shape_ok(const keel_conv_direct_params *p) {
  if (!p || keel_gemm_get_isa() != KEEL_GEMM_AVX512) return false;
  if (p->N < 1 || p->C < 1 || p->H < 1 || p->W < 1 || p->M < 1 || p->OH < 1 || p->OW < 1) return false;
  if (p->kh < 1 || p->kw < 1 || p->dh < 1 || p->dw < 1 || p->kh > DC_MAXT || p->kw > DC_MAXT ||
      p->kh * p->kw > DC_MAXT)
    return false;
  if (p->pad_top < 0 || p->pad_left < 0) return false;
  /* stride 1 flattens the map: the output must be as wide as the input */
  if (p->sw == 1 && (p->sh != 1 || p->OW != p->W || (int64_t)p->pad_left > (int64_t)(p->kw - 1) * p->dw)) return false;
  if (p->sw != 1 && (p->sw != 2 || p->sh < 1)) return false;
  /* lane coordinates are compared as 32-bit integers */
  const int64_t lim = (int64_t)1 << 28;
  return p->H <= lim && p->W <= lim && p->OH <= lim && p->OW <= lim && (int64_t)p->kh * p->dh <= lim &&
         (int64_t)p->kw * p->dw <= lim && p->OH * p->sh <= lim && p->pad_top <= lim && p->pad_left <= lim;
}

bool keel_conv_direct_supported(const keel_conv_direct_params *p, const keel_gemm_packed *pa) {
  return dc_shape_ok(p) && pa && pa->is_a && pa->isa == KEEL_GEMM_AVX512 && pa->rows == p->M &&
         pa->K == p->C * p->kh * p->kw;
}

/* Stride 1: lane l is position p0 + l = (oh, ow); tap t reads it iff the shifted row and column are inside
 * the map and the position exists. */
AVX512 static void dc_masks_flat(const dc_job *J, int64_t p0, dc_tile *ti) {
  int32_t oh[32], ow[32];
  int64_t q = p0 / J->W, r = p0 - q * J->W;
  for (int l = 0; l < 32; l++) {
    oh[l] = (int32_t)q, ow[l] = (int32_t)r;
    if (++r == J->W) r = 0, q++;
  }
  const int64_t valid = J->P - p0 < 32 ? J->P - p0 : 32;
  const uint32_t lanes = valid >= 32 ? 0xFFFFFFFFu : ((uint32_t)1 << valid) - 1;
  const __m512i oh0 = _mm512_loadu_si512(oh), oh1 = _mm512_loadu_si512(oh + 16);
  const __m512i ow0 = _mm512_loadu_si512(ow), ow1 = _mm512_loadu_si512(ow + 16);
  const __m512i vh = _mm512_set1_epi32((int32_t)J->H), vw = _mm512_set1_epi32((int32_t)J->W);
  for (int t = 0; t < J->T; t++) {
    /* unsigned compare: a negative shifted coordinate is out of range too */
    const __m512i dr = _mm512_set1_epi32((int32_t)J->rh[t]), dc = _mm512_set1_epi32((int32_t)J->cw[t]);
    const __mmask16 a0 = _mm512_cmplt_epu32_mask(_mm512_add_epi32(oh0, dr), vh) &
                         _mm512_cmplt_epu32_mask(_mm512_add_epi32(ow0, dc), vw);
    const __mmask16 a1 = _mm512_cmplt_epu32_mask(_mm512_add_epi32(oh1, dr), vh) &
                         _mm512_cmplt_epu32_mask(_mm512_add_epi32(ow1, dc), vw);
    ti->m[0][t] = (__mmask16)(a0 & lanes);
    ti->m[1][t] = (__mmask16)(a1 & (lanes >> 16));
  }
}

/* Bytes from an image's channel 0 to where tile `tile` reads (dc_tile.xoff). */
static int64_t dc_tile_xoff(const dc_job *J, int64_t tile) {
  if (!J->tpr) return tile * 32 * (int64_t)sizeof(float);
  const int64_t oh = tile / J->tpr, ow0 = (tile - oh * J->tpr) * 32;
  return (oh * J->sh * J->W + ow0 * 2) * (int64_t)sizeof(float);
}

/* Tile `tile` of an image: masks and offsets. */
AVX512 static void dc_tile_setup(const dc_job *J, int64_t tile, dc_tile *ti) {
  if (!J->tpr) {
    const int64_t p0 = tile * 32;
    ti->xoff = dc_tile_xoff(J, tile);
    ti->yoff = p0;
    ti->nr = (int)(J->P - p0 < 32 ? J->P - p0 : 32);
    dc_masks_flat(J, p0, ti);
    return;
  }
  /* Stride 2: output row oh, columns ow0 + l read input columns ow0*2 + 2l + shift: the tap's 64 input
   * floats from column c0 = ow0*2 + shift are valid where inside the row and up to the tile's last lane. */
  const int64_t oh = tile / J->tpr, ow0 = (tile - oh * J->tpr) * 32;
  ti->nr = (int)(J->OW - ow0 < 32 ? J->OW - ow0 : 32);
  ti->xoff = dc_tile_xoff(J, tile);
  ti->yoff = oh * J->OW + ow0;
  for (int t = 0; t < J->T; t++) {
    const int64_t row = oh * J->sh + J->rh[t], c0 = ow0 * 2 + J->cw[t];
    int64_t lo = -c0, hi = J->W - c0;
    if (lo < 0) lo = 0;
    if (hi > 2 * ti->nr - 1) hi = 2 * ti->nr - 1;
    uint64_t bits = 0;
    if (row >= 0 && row < J->H && hi > lo)
      bits = (hi >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << hi) - 1) & ~(((uint64_t)1 << lo) - 1);
    for (int q = 0; q < 4; q++) ti->m[q][t] = (__mmask16)(bits >> (16 * q));
  }
}

#define DC_ROW(i)                                                          \
  if ((i) < R && (i) < mr) {                                               \
    __m512 x0 = c##i##a, x1 = c##i##b;                                     \
    if (bias) {                                                            \
      const __m512 rb = _mm512_set1_ps(bias[i]);                           \
      x0 = _mm512_add_ps(x0, rb);                                          \
      x1 = _mm512_add_ps(x1, rb);                                          \
    }                                                                      \
    if (clamp) {                                                           \
      TILE512_CLAMP(x0);                                                   \
      TILE512_CLAMP(x1);                                                   \
    }                                                                      \
    _mm512_mask_storeu_ps(y + (i) * J->P, s0, x0);                         \
    if (NV > 1) _mm512_mask_storeu_ps(y + (i) * J->P + 16, s1, x1);        \
  }

/* Rows [m, m + mr) x the tile's nr positions (R >= mr rows of the panel, NV 16-lane vectors; both
 * constants in each instance). xt: the tile's first position in channel 0 of the image, as an integer; pf:
 * bytes from this tile to the next one (PF instances prefetch its input). */
INLINE_AVX512 void dc_kernel(const int R, const int NV, const int PF, const int SW, const dc_job *J,
                             const dc_tile *ti, uintptr_t xt, intptr_t pf, const dc_wpf *wp, int64_t m, float *y,
                             int mr) {
  TILE512_ACC_ZERO;
  const int T = J->T;
  const int64_t K = J->K, HWb = J->HW * (int64_t)sizeof(float);
  const int64_t *off = J->off;
  const __mmask16 *m0 = ti->m[0], *m1 = ti->m[1], *m2 = ti->m[2], *m3 = ti->m[3];
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const int nr = ti->nr;
  uintptr_t xc = xt; /* channel c of the tile */
  int t = 0;         /* tap of the next k */
  /* The packed weights come in K blocks of GEMM_KC (gemm_internal.h); the accumulators carry across them. */
  for (int64_t pc = 0; pc < K; pc += GEMM_KC) {
    const int64_t kc = K - pc < GEMM_KC ? K - pc : GEMM_KC;
    const float *restrict A = J->A + pc * J->Mpad + m * kc;
    uintptr_t wq = 0, wend = 0;
    if (wp->dpan) {
      const int64_t lines = (kc * DC_MR * (int64_t)sizeof(float) + 63) / 64;
      const uintptr_t base = (uintptr_t)A + (uintptr_t)(wp->dpan * kc * DC_MR * (int64_t)sizeof(float));
      wq = base + (uintptr_t)(lines * wp->slice / wp->nslices * 64);
      wend = base + (uintptr_t)(lines * (wp->slice + 1) / wp->nslices * 64);
    }
    for (int64_t left = kc; left > 0;) {
      int te = T - t;
      if (te > left) te = (int)left;
      left -= te;
      te += t;
      for (; t < te; t++, A += DC_MR) {
        const uintptr_t s = xc + (uintptr_t)off[t];
        __m512 b0, b1;
        if (SW == 1) {
          b0 = _mm512_maskz_loadu_ps(m0[t], (const void *)s);
          b1 = NV > 1 ? _mm512_maskz_loadu_ps(m1[t], (const void *)(s + 64)) : b0;
        } else { /* the even floats of 32 (64) */
          b0 = _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(m0[t], (const void *)s), even,
                                      _mm512_maskz_loadu_ps(m1[t], (const void *)(s + 64)));
          b1 = NV > 1 ? _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(m2[t], (const void *)(s + 128)), even,
                                               _mm512_maskz_loadu_ps(m3[t], (const void *)(s + 192)))
                      : b0;
        }
        if (PF) {
          /* the next tile's floats for this tap: up to three lines (five at stride 2; prefetches never
           * fault) */
          _mm_prefetch((const char *)(s + (uintptr_t)pf), _MM_HINT_T0);
          _mm_prefetch((const char *)(s + (uintptr_t)pf + 64), _MM_HINT_T0);
          if (SW == 1) {
            _mm_prefetch((const char *)(s + (uintptr_t)pf + 124), _MM_HINT_T0);
          } else {
            _mm_prefetch((const char *)(s + (uintptr_t)pf + 128), _MM_HINT_T0);
            _mm_prefetch((const char *)(s + (uintptr_t)pf + 192), _MM_HINT_T0);
            _mm_prefetch((const char *)(s + (uintptr_t)pf + 252), _MM_HINT_T0);
          }
        }
        TILE512_FMA_ROWS
      }
      if (t == T) t = 0, xc += (uintptr_t)HWb;
      for (int q = 0; q < 2 && wq < wend; q++, wq += 64) _mm_prefetch((const char *)wq, _MM_HINT_T1);
    }
  }
  __mmask16 s0, s1;
  tile512_col_masks(nr, &s0, &s1);
  const float *bias = J->bias ? J->bias + m : NULL;
  __m512 vlo, vhi;
  const int clamp = tile512_bounds(J->act, J->act_alpha, J->act_beta, &vlo, &vhi);
  DC_ROW(0) DC_ROW(1) DC_ROW(2) DC_ROW(3) DC_ROW(4) DC_ROW(5) DC_ROW(6)
  DC_ROW(7) DC_ROW(8) DC_ROW(9) DC_ROW(10) DC_ROW(11) DC_ROW(12) DC_ROW(13)
  if (!clamp && J->act != KEEL_ACT_NONE)
    for (int i = 0; i < mr; i++)
      keel_act_apply_f32(y + i * J->P, (size_t)nr, (keel_act)J->act, J->act_alpha, J->act_beta);
}

typedef void (*dc_kernel_fn)(const dc_job *J, const dc_tile *ti, uintptr_t xt, intptr_t pf, const dc_wpf *wp,
                             int64_t m, float *y, int mr);

#define DC_VARIANT(R, NV, PF, SW)                                                                          \
  AVX512 static void dc_##R##_##NV##_##PF##_##SW(const dc_job *J, const dc_tile *ti, uintptr_t xt,         \
                                                 intptr_t pf, const dc_wpf *wp, int64_t m, float *y, int mr) { \
    dc_kernel(R, NV, PF, SW, J, ti, xt, pf, wp, m, y, mr);                                                 \
  }
#define DC_VARIANTS(PF, SW)                                                                              \
  DC_VARIANT(14, 2, PF, SW) DC_VARIANT(8, 2, PF, SW) DC_VARIANT(4, 2, PF, SW) DC_VARIANT(2, 2, PF, SW) \
  DC_VARIANT(14, 1, PF, SW) DC_VARIANT(8, 1, PF, SW) DC_VARIANT(4, 1, PF, SW) DC_VARIANT(2, 1, PF, SW)
DC_VARIANTS(0, 1)
DC_VARIANTS(1, 1)
DC_VARIANTS(0, 2)
DC_VARIANTS(1, 2)

#define DC_ROWS(NV, PF, SW) \
  {dc_14_##NV##_##PF##_##SW, dc_8_##NV##_##PF##_##SW, dc_4_##NV##_##PF##_##SW, dc_2_##NV##_##PF##_##SW}
/* [stride - 1][PF][NV - 1][rows class: 14, 8, 4, 2] */
static const dc_kernel_fn dc_kernels[2][2][2][4] = {
    {{DC_ROWS(1, 0, 1), DC_ROWS(2, 0, 1)}, {DC_ROWS(1, 1, 1), DC_ROWS(2, 1, 1)}},
    {{DC_ROWS(1, 0, 2), DC_ROWS(2, 0, 2)}, {DC_ROWS(1, 1, 2), DC_ROWS(2, 1, 2)}},
};

/* The work: units (image, panel block, tile, panel) in that order, split into contiguous ranges per thread
 * (balanced to a panel even when there are few tiles per thread; a range may start and end inside a tile).
 * A block's weights stay in L2 while the image's tiles pass under them, and the image's input stays in L2
 * while the blocks pass: each weight is fetched once per image, not once per tile (256 -> 256 3x3 weights
 * are 2.4 MB, from memory in a whole network). */
static void dc_part(void *ctx, int tid, int nt, void *scratch) {
  (void)scratch;
  const dc_job *J = ctx;
  const int64_t nti = J->ntiles, np = J->npanels, PB = J->pblock, nb = (np + PB - 1) / PB;
  int64_t u, u1;
  keel_split_range(J->N * nti * np, tid, nt, 1, &u, &u1);
  dc_tile ti;
  while (u < u1) {
    const int64_t img = u / (nti * np), r = u - img * nti * np, b = r / (nti * PB), r2 = r - b * nti * PB;
    const int64_t pbb = np - b * PB < PB ? np - b * PB : PB; /* panels in this block */
    const int64_t tile = r2 / pbb, pi0 = r2 - tile * pbb, pend = pbb - pi0 < u1 - u ? pbb : pi0 + (u1 - u);
    dc_tile_setup(J, tile, &ti);
    /* integers: the tile may start past the image (more output rows than input rows) */
    const uintptr_t xi = (uintptr_t)(J->x + img * J->C * J->HW);
    const uintptr_t xt = xi + (uintptr_t)ti.xoff;
    intptr_t pf = 0; /* to the next tile, when this thread works on it */
    if (u + (pend - pi0) < u1) {
      const uintptr_t xn = tile + 1 < nti ? xi + (uintptr_t)dc_tile_xoff(J, tile + 1)
                           : b + 1 < nb   ? xi
                                          : xi + (uintptr_t)(J->C * J->HW * (int64_t)sizeof(float));
      pf = (intptr_t)(xn - xt);
    }
    float *y = J->y + img * J->M * J->P + ti.yoff;
    /* the next block's weights (after the last, the first block's for the next image), a slice per tile */
    const int64_t nbk = b + 1 < nb ? b + 1 : 0, nbp = np - nbk * PB < PB ? np - nbk * PB : PB;
    const bool wnext = nb > 1 && (b + 1 < nb || img + 1 < J->N);
    for (int64_t pi = pi0; pi < pend; pi++) {
      const int64_t m = (b * PB + pi) * DC_MR;
      const int mr = (int)(J->M - m < DC_MR ? J->M - m : DC_MR);
      const int rc = mr > 8 ? 0 : mr > 4 ? 1 : mr > 2 ? 2 : 3;
      const dc_wpf wp = {wnext && pi < nbp ? (nbk - b) * PB : 0, tile, nti};
      dc_kernels[J->sw - 1][pi == pi0 && pf != 0][ti.nr > 16][rc](J, &ti, xt, pf, &wp, m, y + m * J->P, mr);
    }
    u += pend - pi0;
  }
}

void keel_conv_direct_f32(const keel_conv_direct_params *p, const float *x, const keel_gemm_packed *pa,
                          const float *bias, float *y, int num_threads) {
  dc_job J = {.x = x, .A = pa->data, .bias = bias, .y = y, .N = p->N, .C = p->C, .H = p->H, .W = p->W, .M = p->M,
              .OW = p->OW, .P = p->OH * p->OW, .K = pa->K, .Mpad = (p->M + DC_MR - 1) / DC_MR * DC_MR,
              .HW = p->H * p->W, .T = p->kh * p->kw, .sh = p->sh, .sw = p->sw, .act = (int)p->act,
              .act_alpha = p->act_alpha, .act_beta = p->act_beta};
  J.tpr = p->sw == 1 ? 0 : (p->OW + 31) / 32;
  J.ntiles = p->sw == 1 ? (J.P + 31) / 32 : p->OH * J.tpr;
  J.npanels = J.Mpad / DC_MR;
  J.pblock = J.npanels;
  if (J.Mpad * J.K * (int64_t)sizeof(float) > DC_WEIGHTS_L2) {
    J.pblock = DC_BLOCK_BYTES / (DC_MR * J.K * (int64_t)sizeof(float));
    if (J.pblock < 1) J.pblock = 1;
  }
  for (int i = 0, t = 0; i < p->kh; i++)
    for (int j = 0; j < p->kw; j++, t++) {
      J.rh[t] = (int64_t)i * p->dh - p->pad_top;
      J.cw[t] = (int64_t)j * p->dw - p->pad_left;
      J.off[t] = (J.rh[t] * J.W + J.cw[t]) * (int64_t)sizeof(float);
    }
  __atomic_fetch_add(&calls, 1, __ATOMIC_RELAXED);
  const int64_t items = J.N * J.ntiles * J.npanels;
  int nt = keel_threads_for(num_threads, 2.0 * (double)J.N * (double)J.P * (double)J.M * (double)J.K, 1 << 19);
  if (nt > items) nt = (int)items;
  if (nt > 1)
    keel_parallel_run(nt, dc_part, &J);
  else
    dc_part(&J, 0, 1, NULL);
}

#else
static bool dc_shape_ok(const keel_conv_direct_params *p) {
  (void)p;
  return false;
}
bool keel_conv_direct_supported(const keel_conv_direct_params *p, const keel_gemm_packed *pa) {
  (void)p, (void)pa;
  return false;
}
void keel_conv_direct_f32(const keel_conv_direct_params *p, const float *x, const keel_gemm_packed *pa,
                          const float *bias, float *y, int num_threads) {
  (void)p, (void)x, (void)pa, (void)bias, (void)y, (void)num_threads;
}
#endif

bool keel_conv_direct_wanted(const keel_conv_direct_params *p) {
  const int mode = __atomic_load_n(&force_mode, __ATOMIC_RELAXED);
  if (mode == 0 || !dc_shape_ok(p)) return false;
  /* Stride 2 loads twice the floats and permutes them for every weight panel, where the GEMM packs them
   * once per tile: faster with few panels and a short K (3x3 stems 3 -> 32 / 64: 15-25%; 16 -> 32: 25%;
   * the 7x7 stem 3 -> 64 in ResNet-50: 16%), not with many (128 -> 128 on 56x56: even; 256 -> 256 on
   * 28x28: 1.5x slower). */
  return mode == 1 || p->sw == 1 || (p->M <= 64 && p->C * p->kh * p->kw <= 160);
}

bool keel_conv_direct_over_swapped(const keel_conv_direct_params *p) {
  if (!keel_conv_direct_wanted(p)) return false;
  /* lanes computed: 32 per tile, 16 for a last tile of at most 16 (the half-width kernels) */
  const int64_t n = p->sw == 1 ? p->OH * p->W : p->OW, r = n % 32;
  const double lanes = (double)(n / 32 * 32 + (r == 0 ? 0 : r <= 16 ? 16 : 32));
  return __atomic_load_n(&force_mode, __ATOMIC_RELAXED) == 1 || (double)n >= 0.8 * lanes;
}
