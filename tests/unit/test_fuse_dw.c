#define _POSIX_C_SOURCE 200809L
/* Depthwise convolution kernel (ops/nn_conv_dw.c) against a naive reference: odd sizes, strides 1-3,
 * dilations, asymmetric pads, every fused activation the kernel applies inline or after. */
#include <math.h>
#include <stdint.h>
#include <time.h>

#include "ops/act.h"
#include "ops/nn_conv_dw.h"
#include "dw_reference.h"
#include "test_main.h"

static uint32_t rng = 12345;
static float frand(void) { return test_frand_lcg(&rng); }

/* Run one configuration; pads are top/left/bottom/right. Returns the max abs error. */
static float run_case(int64_t N, int64_t C, int64_t H, int64_t W, int kh, int kw, int sh, int sw, int dh, int dw,
                      int pt, int pl, int pb, int pr, keel_act act, bool with_bias) {
  keel_conv_dw_params p = {0};
  p.N = N, p.C = C, p.H = H, p.W = W, p.kh = kh, p.kw = kw, p.sh = sh, p.sw = sw, p.dh = dh, p.dw = dw;
  p.pad_top = pt, p.pad_left = pl;
  p.OH = (H + pt + pb - ((int64_t)(kh - 1) * dh + 1)) / sh + 1;
  p.OW = (W + pl + pr - ((int64_t)(kw - 1) * dw + 1)) / sw + 1;
  p.act = act;
  p.act_alpha = act == KEEL_ACT_CLIP ? 0.0f : 0.1f;
  p.act_beta = act == KEEL_ACT_CLIP ? 0.5f : 0.5f;
  if (p.OH <= 0 || p.OW <= 0) return 0;
  size_t nx = (size_t)(N * C * H * W), ny = (size_t)(N * C * p.OH * p.OW), nw = (size_t)(C * kh * kw);
  float *x = malloc(nx * 4), *w = malloc(nw * 4), *b = malloc((size_t)C * 4), *y = malloc(ny * 4 + 64),
        *r = malloc(ny * 4);
  for (size_t i = 0; i < nx; i++) x[i] = frand();
  for (size_t i = 0; i < nw; i++) w[i] = frand();
  for (int64_t i = 0; i < C; i++) b[i] = frand();
  for (size_t i = 0; i < ny + 16; i++) y[i] = NAN;
  keel_conv_dw_f32(&p, x, w, with_bias ? b : NULL, y, 1);
  dw_reference(&p, x, w, with_bias ? b : NULL, r);
  float err = 0;
  for (size_t i = 0; i < ny; i++) {
    float d = fabsf(y[i] - r[i]);
    if (!(d <= err)) err = isnan(d) ? INFINITY : d;
  }
  /* nothing written past the output */
  for (size_t i = ny; i < ny + 16; i++)
    if (!isnan(y[i])) err = INFINITY;
  free(x), free(w), free(b), free(y), free(r);
  return err;
}

static void dw_mobilenet_shapes_isa(void);
static void dw_odd_configs_isa(void);

/* Every code path this CPU has: scalar, AVX2, AVX-512 (the kernel clamps a forced one to what exists). */
TEST(dw_all_isas) {
  for (int isa = 0; isa <= 2; isa++)
    for (int flat = 0; flat <= (isa == 2 ? 2 : 0); flat++) {
      /* AVX-512: the row kernels, the flat path, and the sweep / stride-2 paths where they apply */
      keel_conv_dw_force_isa(isa);
      keel_conv_dw_force_flat(isa == 2 && flat < 2 ? flat : -1);
      keel_conv_dw_force_new(isa == 2 && flat < 2 ? 0 : -1);
      dw_mobilenet_shapes_isa();
      dw_odd_configs_isa();
    }
  keel_conv_dw_force_isa(-1);
  keel_conv_dw_force_flat(-1);
  keel_conv_dw_force_new(-1);
}

TEST(dw_mobilenet_shapes_isa) {
  /* 3x3 pad 1, strides 1 and 2, widths around the SIMD widths */
  const int64_t sizes[] = {1, 2, 3, 7, 8, 9, 14, 15, 16, 17, 31, 32, 33, 56, 57};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
    for (int s = 1; s <= 2; s++) {
      float e = run_case(1, 3, sizes[k], sizes[k], 3, 3, s, s, 1, 1, 1, 1, 1, 1, KEEL_ACT_NONE, true);
      if (e > 1e-5f) fprintf(stderr, "size %lld stride %d: err %g\n", (long long)sizes[k], s, e);
      CHECK(e <= 1e-5f);
      e = run_case(2, 5, sizes[k], sizes[k] + 3, 3, 3, s, s, 1, 1, 1, 1, 1, 1, KEEL_ACT_CLIP, false);
      CHECK(e <= 1e-5f);
    }
}

TEST(dw_odd_configs_isa) {
  const keel_act acts[] = {KEEL_ACT_NONE, KEEL_ACT_RELU, KEEL_ACT_CLIP, KEEL_ACT_SIGMOID, KEEL_ACT_LEAKY_RELU,
                           KEEL_ACT_HARD_SWISH};
  int cases = 0;
  for (int kh = 1; kh <= 5; kh += 2)
    for (int kw = 1; kw <= 5; kw += 2)
      for (int s = 1; s <= 3; s++)
        for (int d = 1; d <= 2; d++)
          for (int pad = 0; pad <= 2; pad++) {
            keel_act a = acts[(kh + kw + s + d + pad) % 6];
            float e = run_case(2, 3, 11, 23, kh, kw, s, s, d, 3 - d, pad, pad + 1 > 2 ? 0 : pad + 1,
                               (pad + 1) % 3, pad, a, (s + d) % 2 == 0);
            if (e > 1e-5f)
              fprintf(stderr, "k %dx%d s %d d %d pad %d act %d: err %g\n", kh, kw, s, d, pad, (int)a, e);
            CHECK(e <= 1e-5f);
            cases++;
          }
  CHECK(cases == 162);
  /* pads larger than the kernel reach, and a 1x1 input */
  CHECK(run_case(1, 4, 1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, KEEL_ACT_RELU, true) <= 1e-5f);
  CHECK(run_case(1, 2, 4, 40, 3, 3, 2, 2, 1, 1, 3, 3, 3, 3, KEEL_ACT_NONE, true) <= 1e-5f);
  CHECK(run_case(1, 2, 9, 70, 5, 5, 2, 2, 2, 2, 4, 4, 4, 4, KEEL_ACT_CLIP, true) <= 1e-5f);
  /* rows wide enough that the flat path works in several bands of output rows */
  CHECK(run_case(1, 2, 61, 301, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, KEEL_ACT_CLIP, true) <= 1e-5f);
  CHECK(run_case(1, 2, 45, 500, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, KEEL_ACT_NONE, true) <= 1e-5f);
  CHECK(run_case(1, 2, 40, 333, 5, 5, 2, 2, 1, 1, 2, 2, 1, 2, KEEL_ACT_SIGMOID, false) <= 1e-5f);
  CHECK(run_case(2, 3, 33, 35, 5, 5, 1, 1, 1, 1, 0, 2, 2, 0, KEEL_ACT_RELU, true) <= 1e-5f);
}

/* Split across the thread pool: the same bits as one thread (planes are independent). */
TEST(dw_threads) {
  keel_conv_dw_params p = {0};
  p.N = 2, p.C = 37, p.H = 29, p.W = 31, p.kh = 3, p.kw = 3, p.sh = 2, p.sw = 2, p.dh = 1, p.dw = 1;
  p.pad_top = 1, p.pad_left = 1, p.OH = 15, p.OW = 16, p.act = KEEL_ACT_RELU;
  size_t nx = (size_t)(p.N * p.C * p.H * p.W), ny = (size_t)(p.N * p.C * p.OH * p.OW);
  float *x = malloc(nx * 4), *w = malloc((size_t)p.C * 9 * 4), *y1 = malloc(ny * 4), *y3 = malloc(ny * 4);
  for (size_t i = 0; i < nx; i++) x[i] = frand();
  for (int64_t i = 0; i < p.C * 9; i++) w[i] = frand();
  for (int flat = 0; flat <= 2; flat++) { /* row kernels, flat path, sweep / stride-2 paths */
    keel_conv_dw_force_flat(flat < 2 ? flat : -1);
    keel_conv_dw_force_new(flat < 2 ? 0 : -1);
    keel_conv_dw_f32(&p, x, w, NULL, y1, 1);
    for (int t = 2; t <= 3; t++) {
      keel_conv_dw_f32(&p, x, w, NULL, y3, t);
      CHECK(!memcmp(y1, y3, ny * 4));
    }
  }
  keel_conv_dw_force_flat(-1);
  keel_conv_dw_force_new(-1);
  free(x), free(w), free(y1), free(y3);
}

/* Not a pass/fail timing: prints the speed against the reference formula for the MobileNetV2 shape. */
TEST(dw_speed_report) {
  keel_conv_dw_params p = {0};
  p.N = 1, p.C = 144, p.H = 56, p.W = 56, p.OH = 56, p.OW = 56, p.kh = 3, p.kw = 3, p.sh = 1, p.sw = 1;
  p.dh = 1, p.dw = 1, p.pad_top = 1, p.pad_left = 1, p.act = KEEL_ACT_CLIP, p.act_beta = 6.0f;
  size_t n = (size_t)(p.C * 56 * 56);
  float *x = calloc(n, 4), *y = calloc(n, 4), *w = calloc((size_t)p.C * 9, 4);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int it = 0; it < 20; it++) keel_conv_dw_f32(&p, x, w, NULL, y, 1);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double us = ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / 20 / 1e3;
  fprintf(stderr, "depthwise 3x3 s1 144x56x56: %.1f us per call (%.2f GFLOP/s)\n", us, 2.0 * 9 * n / us / 1e3);
  CHECK(us > 0);
  free(x), free(y), free(w);
}

RUN_TESTS(dw_all_isas, dw_threads, dw_speed_report)
