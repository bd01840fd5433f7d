#define _POSIX_C_SOURCE 200809L
/* Depthwise convolution kernel (ops/nn_conv_dw.c): the stride-1 "sweep" path (3x3 and 5x5, in place and
 * through the small-plane copy) and the stride-2 row path against a naive reference and against the older
 * kernels: every size 1..17 and 55, 56, 112, pads that keep or change the output size, batch 1 and 3,
 * 1-3 threads, every fused activation, unaligned tensors, NaN-poisoned outputs and guard floats around them,
 * and NaN inputs (which must reach exactly the outputs whose window holds them). */
#include <math.h>
#include <stdint.h>

#include "ops/act.h"
#include "ops/nn_conv_dw.h"
#include "dw_reference.h"
#include "test_main.h"

static uint32_t rng = 2024;
static float frand(void) { return test_frand_lcg(&rng); }

typedef struct dw_case {
  int64_t N, C, H, W;
  int k, s;
  int pt, pl, pb, pr;
  keel_act act;
  bool bias;
  int nan_at; /* >= 0: x[nan_at % size] is NaN */
} dw_case;

#define GUARD 32 /* floats checked untouched before and after the output */

/* Runs one case with the new paths on and off at 1..3 threads, x and y offset by xo / yo floats from
 * malloc's alignment. Returns the number of mismatching runs (0 = pass). */
static int run(const dw_case *t, int xo, int yo) {
  keel_conv_dw_params p = {0};
  p.N = t->N, p.C = t->C, p.H = t->H, p.W = t->W, p.kh = p.kw = t->k, p.sh = p.sw = t->s, p.dh = p.dw = 1;
  p.pad_top = t->pt, p.pad_left = t->pl;
  p.OH = (t->H + t->pt + t->pb - t->k) / t->s + 1;
  p.OW = (t->W + t->pl + t->pr - t->k) / t->s + 1;
  p.act = t->act;
  p.act_alpha = t->act == KEEL_ACT_CLIP ? -0.25f : 0.1f;
  p.act_beta = 0.5f;
  if (p.OH <= 0 || p.OW <= 0) return 0;
  const size_t nx = (size_t)(p.N * p.C * p.H * p.W), ny = (size_t)(p.N * p.C * p.OH * p.OW);
  const size_t nw = (size_t)(p.C * p.kh * p.kw);
  /* exact sizes (malloc: 16-byte aligned), so that ASan sees any read past x or write past the guards */
  float *xb = malloc((nx + (size_t)xo) * 4), *yb = malloc((ny + 2 * GUARD + (size_t)yo) * 4);
  float *w = malloc(nw * 4), *b = malloc((size_t)p.C * 4), *r = malloc(ny * 4), *first = malloc(ny * 4);
  float *x = xb + xo, *y = yb + GUARD + yo;
  for (size_t i = 0; i < nx; i++) x[i] = frand();
  if (t->nan_at >= 0) x[(size_t)t->nan_at % nx] = NAN;
  for (size_t i = 0; i < nw; i++) w[i] = frand();
  for (int64_t i = 0; i < p.C; i++) b[i] = frand();
  dw_reference(&p, x, w, t->bias ? b : NULL, r);
  int bad = 0;
  for (int mode = 1; mode >= 0; mode--)
    for (int nt = 1; nt <= 3; nt++) {
      keel_conv_dw_force_new(mode);
      for (size_t i = 0; i < ny + 2 * GUARD; i++) y[(int64_t)i - GUARD] = NAN;
      keel_conv_dw_f32(&p, x, w, t->bias ? b : NULL, y, nt);
      float err = 0;
      for (size_t i = 0; i < ny; i++) {
        if (!isnan(r[i]) != !isnan(y[i])) err = INFINITY;
        else if (!isnan(r[i]) && !(fabsf(y[i] - r[i]) <= err)) err = fabsf(y[i] - r[i]);
      }
      for (int i = 1; i <= GUARD; i++)
        if (!isnan(y[-i]) || !isnan(y[ny + (size_t)i - 1])) err = INFINITY;
      /* each path gives the same bits at any thread count */
      if (nt == 1) memcpy(first, y, ny * 4);
      else if (memcmp(first, y, ny * 4)) err = INFINITY;
      if (!(err <= 1e-5f)) {
        fprintf(stderr,
                "N %lld C %lld %lldx%lld k %d s %d pads %d %d %d %d act %d bias %d nan %d offs %d %d new %d nt %d: "
                "err %g\n",
                (long long)t->N, (long long)t->C, (long long)t->H, (long long)t->W, t->k, t->s, t->pt, t->pl, t->pb,
                t->pr, (int)t->act, (int)t->bias, t->nan_at, xo, yo, mode, nt, err);
        bad++;
      }
    }
  keel_conv_dw_force_new(-1);
  free(xb), free(yb), free(w), free(b), free(r), free(first);
  return bad;
}

static const keel_act acts[] = {KEEL_ACT_NONE,       KEEL_ACT_RELU,      KEEL_ACT_CLIP,
                                KEEL_ACT_SIGMOID,    KEEL_ACT_LEAKY_RELU, KEEL_ACT_HARD_SWISH};

/* 3x3 pad 1, strides 1 and 2, square and not: every size 1..17, MobileNetV2's 55/56/112, and stride-2
 * output rows one short of, at, and one past a vector (30, 31, 33, 63). */
TEST(dw_sizes) {
  TEST_BEGIN("dw_sizes");
  const int64_t sizes[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 30, 31, 33, 55, 56, 63, 112};
  int cases = 0;
  for (size_t a = 0; a < sizeof sizes / sizeof *sizes; a++)
    for (int s = 1; s <= 2; s++) {
      const int64_t h = sizes[a], w2 = sizes[(a * 7 + 3) % (sizeof sizes / sizeof *sizes)];
      dw_case t = {1, 2, h, h, 3, s, 1, 1, 1, 1, acts[(a + s) % 6], (a + s) % 2 == 0, -1};
      CHECK(run(&t, 0, 0) == 0);
      t = (dw_case){h < 56 ? 3 : 1, 3, h, w2, 3, s, 1, 1, 1, 1, acts[(a + s + 3) % 6], (a + s) % 2 == 1, -1};
      CHECK(run(&t, 0, 0) == 0);
      cases += 2;
    }
  CHECK(cases == 96);
}

/* Pads that move the rows (top 0..2), change the output height, and TF's SAME for stride 2 (0 before, 1
 * after); 5x5 pad 2; column-mask periods other than 7 (W / gcd(W, 16)) and too long for the table. */
TEST(dw_pads_kernels) {
  TEST_BEGIN("dw_pads_kernels");
  const int64_t hw[][2] = {{1, 1}, {2, 9}, {7, 7}, {14, 14}, {9, 33}, {28, 28}, {23, 100}, {40, 48}, {56, 56},
                           {5, 257}, {31, 17}};
  for (size_t a = 0; a < sizeof hw / sizeof *hw; a++) {
    const int64_t H = hw[a][0], W = hw[a][1];
    for (int pt = 0; pt <= 2; pt++)
      for (int pb = 0; pb <= 2; pb++) {
        keel_act act = acts[(a + (size_t)pt * 3 + (size_t)pb) % 6];
        dw_case t = {2, 2, H, W, 3, 1, pt, 1, pb, 1, act, pt != pb, -1};
        CHECK(run(&t, 0, 0) == 0);
        t = (dw_case){1, 3, H, W, 3, 2, pt, pt % 2, pb, pb % 2, act, pt == pb, -1}; /* pad_left 0 and 1 */
        CHECK(run(&t, 0, 0) == 0);
        t = (dw_case){1, 2, H, W, 5, 1, pt + 1, 2, pb, 2, act, true, -1};
        CHECK(run(&t, 0, 0) == 0);
        t = (dw_case){1, 2, H, W, 5, 2, pt, 2, pb, 2, act, false, -1};
        CHECK(run(&t, 0, 0) == 0);
      }
  }
  /* pads other than the path's (3x3 pad_left 0 or 2 at stride 1): the older kernels */
  dw_case t = {1, 2, 19, 21, 3, 1, 0, 0, 2, 2, KEEL_ACT_RELU, true, -1};
  CHECK(run(&t, 0, 0) == 0);
  t = (dw_case){1, 2, 19, 21, 3, 1, 2, 2, 0, 0, KEEL_ACT_NONE, true, -1};
  CHECK(run(&t, 0, 0) == 0);
  /* stride-2 rows wider than the zero row (2048 floats): the older kernels */
  t = (dw_case){1, 1, 3, 2100, 3, 2, 1, 1, 1, 1, KEEL_ACT_CLIP, true, -1};
  CHECK(run(&t, 0, 0) == 0);
}

/* Tensors not 64-byte aligned, and planes whose size is not a multiple of 16 floats. */
TEST(dw_unaligned) {
  TEST_BEGIN("dw_unaligned");
  const int64_t hw[][2] = {{7, 7}, {14, 14}, {28, 28}, {56, 56}, {13, 37}, {112, 112}};
  for (size_t a = 0; a < sizeof hw / sizeof *hw; a++)
    for (int s = 1; s <= 2; s++) {
      dw_case t = {2, 3, hw[a][0], hw[a][1], 3, s, 1, 1, 1, 1, KEEL_ACT_CLIP, true, -1};
      CHECK(run(&t, 1, 3) == 0);
      CHECK(run(&t, 5, 0) == 0);
      CHECK(run(&t, 0, 9) == 0);
    }
}

/* A NaN in the input reaches exactly the outputs whose window covers it: the lanes the kernels shift in
 * from the neighbouring rows or planes and then mask off must not leak it. */
TEST(dw_nan_inputs) {
  TEST_BEGIN("dw_nan_inputs");
  const int64_t hw[][2] = {{7, 7}, {14, 14}, {28, 28}, {56, 56}, {16, 16}, {9, 32}, {112, 112}};
  for (size_t a = 0; a < sizeof hw / sizeof *hw; a++)
    for (int s = 1; s <= 2; s++) {
      const int64_t H = hw[a][0], W = hw[a][1], plane = H * W;
      /* first and last column of a middle row, the first and last float of plane 1, and a middle one */
      const int64_t at[] = {(H / 2) * W, (H / 2) * W + W - 1, plane, 2 * plane - 1, plane + (H / 2) * W + W / 2};
      for (size_t k = 0; k < sizeof at / sizeof *at; k++) {
        /* NaN stays NaN through the inline bounds (as the Relu and Clip ops leave it) */
        dw_case t = {1, 3, H, W, 3, s, 1, 1, 1, 1, k % 2 ? KEEL_ACT_CLIP : KEEL_ACT_NONE, true, (int)at[k]};
        CHECK(run(&t, 0, 0) == 0);
        t.k = 5, t.pt = t.pl = t.pb = t.pr = 2;
        CHECK(run(&t, 0, 0) == 0);
      }
    }
}

/* Every path (scalar, AVX2, the older AVX-512 kernels, the new ones) gives the same outputs, NaNs included,
 * for the activations applied inline (ReLU and Clip keep a NaN, as the Relu and Clip ops do). */
TEST(dw_nan_all_paths) {
  TEST_BEGIN("dw_nan_all_paths");
  const int64_t hw[][2] = {{7, 7}, {14, 14}, {29, 29}, {56, 56}};
  const keel_act inl[] = {KEEL_ACT_NONE, KEEL_ACT_RELU, KEEL_ACT_CLIP};
  for (size_t a = 0; a < sizeof hw / sizeof *hw; a++)
    for (int s = 1; s <= 2; s++)
      for (size_t k = 0; k < 3; k++) {
        keel_conv_dw_params p = {0};
        p.N = 1, p.C = 2, p.H = hw[a][0], p.W = hw[a][1], p.kh = p.kw = 3, p.sh = p.sw = s, p.dh = p.dw = 1;
        p.pad_top = p.pad_left = 1, p.OH = (p.H - 1) / s + 1, p.OW = (p.W - 1) / s + 1, p.act = inl[k];
        p.act_alpha = -0.25f, p.act_beta = 0.5f;
        const size_t nx = (size_t)(p.C * p.H * p.W), ny = (size_t)(p.C * p.OH * p.OW);
        float *x = malloc(nx * 4), *w = malloc((size_t)p.C * 9 * 4), *y0 = malloc(ny * 4), *y = malloc(ny * 4);
        for (size_t i = 0; i < nx; i++) x[i] = frand();
        for (size_t i = 0; i < (size_t)p.C * 9; i++) w[i] = frand();
        x[(size_t)(p.H / 2 * p.W)] = NAN;           /* a row's first column */
        x[nx - 1] = NAN;                            /* the last float of the last plane */
        int bad = 0;
        for (int path = 0; path < 4; path++) { /* scalar, AVX2, AVX-512 old kernels, AVX-512 new paths */
          keel_conv_dw_force_isa(path < 2 ? path : 2);
          keel_conv_dw_force_new(path == 3 ? -1 : 0);
          keel_conv_dw_f32(&p, x, w, NULL, path ? y : y0, 1);
          for (size_t i = 0; path && i < ny; i++)
            if (!isnan(y0[i]) != !isnan(y[i]) || (!isnan(y0[i]) && fabsf(y0[i] - y[i]) > 1e-5f)) bad++;
        }
        size_t nans = 0;
        for (size_t i = 0; i < ny; i++) nans += isnan(y0[i]) != 0;
        if (bad) fprintf(stderr, "%lldx%lld s %d act %d: %d mismatches\n", (long long)p.H, (long long)p.W, s,
                         (int)p.act, bad);
        CHECK(bad == 0);
        CHECK(nans >= 2); /* the NaNs reached the outputs (a 3x3 window holds each) */
        free(x), free(w), free(y0), free(y);
      }
  keel_conv_dw_force_isa(-1);
  keel_conv_dw_force_new(-1);
}

/* Batch 3 with many channels: plane ranges split across threads start and end inside a batch item. */
TEST(dw_batch_threads) {
  TEST_BEGIN("dw_batch_threads");
  const int64_t hw[][2] = {{7, 7}, {14, 14}, {28, 28}, {56, 56}};
  for (size_t a = 0; a < sizeof hw / sizeof *hw; a++)
    for (int s = 1; s <= 2; s++) {
      dw_case t = {3, 37, hw[a][0], hw[a][1], 3, s, 1, 1, 1, 1, acts[(a + (size_t)s) % 6], true, -1};
      CHECK(run(&t, 0, 0) == 0);
    }
}

RUN_TESTS(dw_sizes, dw_pads_kernels, dw_unaligned, dw_nan_inputs, dw_nan_all_paths, dw_batch_threads)
