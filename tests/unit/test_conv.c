#define _POSIX_C_SOURCE 200809L
/* float32 Conv through the engine (prepare, planning, run) against a naive double-precision reference:
 * both GEMM orientations (Y = W x cols, and the swapped Y^T = cols^T x W^T used for small output maps,
 * batch folded into one GEMM), implicit-im2col packing with strides, dilations, asymmetric pads, 1x1 and
 * k x k kernels, odd sizes, bias or not, a fused Relu, one and two threads, the output shape declared in
 * the model (weights packed at engine build) or not (packed while planning), and every GEMM kernel this CPU
 * has (generic, AVX2, AVX-512). */
#include <math.h>
#include <stdint.h>

#include <keel/keel.h>

#include "backend/cpu/gemm.h"
#include "model_builder.h"
#include "test_main.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void) { return test_frand_xorshift(&rng); } /* [-1, 1) */

typedef struct ccfg {
  int64_t N, C, H, W, M, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr;
  bool bias, relu, declare_out;
  int threads;
} ccfg;

static int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t d, int64_t p0, int64_t p1) {
  return (in + p0 + p1 - ((k - 1) * d + 1)) / s + 1;
}

static bool run_conv(const ccfg *c) {
  const int64_t OH = out_size(c->H, c->kh, c->sh, c->dh, c->pt, c->pb);
  const int64_t OW = out_size(c->W, c->kw, c->sw, c->dw, c->pl, c->pr);
  const int64_t nx = c->N * c->C * c->H * c->W, nw = c->M * c->C * c->kh * c->kw, ny = c->N * c->M * OH * OW;
  float *x = malloc(sizeof(float) * (size_t)nx), *w = malloc(sizeof(float) * (size_t)nw);
  float *b = malloc(sizeof(float) * (size_t)c->M);
  double *ref = malloc(sizeof(double) * (size_t)ny), *mag = malloc(sizeof(double) * (size_t)ny);
  for (int64_t i = 0; i < nx; i++) x[i] = frand();
  for (int64_t i = 0; i < nw; i++) w[i] = frand();
  for (int64_t i = 0; i < c->M; i++) b[i] = frand();
  for (int64_t n = 0; n < c->N; n++)
    for (int64_t m = 0; m < c->M; m++)
      for (int64_t oh = 0; oh < OH; oh++)
        for (int64_t ow = 0; ow < OW; ow++) {
          double s = c->bias ? b[m] : 0.0, a = 1.0;
          for (int64_t ch = 0; ch < c->C; ch++)
            for (int64_t i = 0; i < c->kh; i++)
              for (int64_t j = 0; j < c->kw; j++) {
                const int64_t ih = oh * c->sh - c->pt + i * c->dh, iw = ow * c->sw - c->pl + j * c->dw;
                if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W) continue;
                const double p = (double)x[((n * c->C + ch) * c->H + ih) * c->W + iw] *
                                 w[((m * c->C + ch) * c->kh + i) * c->kw + j];
                s += p;
                a += fabs(p);
              }
          if (c->relu && s < 0) s = 0;
          const int64_t o = ((n * c->M + m) * OH + oh) * OW + ow;
          ref[o] = s;
          mag[o] = a;
        }

  mb mdl = {0};
  mb_opset(&mdl, "", 17);
  mb_input(&mdl, "x", 1);
  const int64_t ydims[4] = {c->N, c->M, OH, OW};
  mdl.outs[mdl.n_out++] = mb_vi(&mdl, "y", 1, c->declare_out ? 4 : -1, ydims);
  mdl.inits[mdl.n_init++] = mb_float_tensor(&mdl, "W", 4, (const int64_t[]){c->M, c->C, c->kh, c->kw}, w);
  mdl.inits[mdl.n_init++] = mb_float_tensor(&mdl, "B", 1, (const int64_t[]){c->M}, b);
  Onnx__NodeProto *nd = mb_node(&mdl, "Conv", "", c->bias ? "x,W,B" : "x,W", c->relu ? "t" : "y");
  mb_attr_ints(&mdl, nd, "strides", (const int64_t[]){c->sh, c->sw}, 2);
  mb_attr_ints(&mdl, nd, "dilations", (const int64_t[]){c->dh, c->dw}, 2);
  mb_attr_ints(&mdl, nd, "pads", (const int64_t[]){c->pt, c->pl, c->pb, c->pr}, 4);
  mb_attr_ints(&mdl, nd, "kernel_shape", (const int64_t[]){c->kh, c->kw}, 2);
  if (c->relu) mb_node(&mdl, "Relu", "", "t", "y");
  keel_status *s = NULL;
  keel_engine *e = mb_load(&mdl, &s);
  CHECK_OK(s);
  bool ok = e != NULL;
  keel_module *mod = NULL;
  keel_tensor *in = NULL, *out = NULL;
  if (ok) {
    keel_module_options o;
    keel_module_options_init(&o);
    o.num_threads = c->threads;
    CHECK_OK(keel_module_create(e, &o, &mod));
    CHECK_OK(keel_tensor_from_data(KEEL_FLOAT32, (const int64_t[]){c->N, c->C, c->H, c->W}, 4, x, &in));
    ok = mod && in;
  }
  /* twice: the second call runs on whatever the first planned / packed */
  for (int it = 0; ok && it < 2; it++) {
    keel_status *fs = keel_module_forward(mod, &in, 1, &out, 1);
    CHECK_OK(fs);
    if (!out || keel_tensor_numel(out) != ny) {
      ok = false;
      break;
    }
    const float *y = keel_tensor_data(out);
    double worst = 0;
    int64_t at = -1;
    for (int64_t i = 0; i < ny; i++) {
      const double err = fabs((double)y[i] - ref[i]) / (mag[i] * 1e-6 + 1e-30);
      if (!(err <= 4.0) && (at < 0 || !(err <= worst))) worst = err, at = i;
    }
    if (at >= 0) {
      fprintf(stderr,
              "conv N%lld C%lld %lldx%lld M%lld k%lldx%lld s%lld,%lld d%lld,%lld pads %lld,%lld,%lld,%lld bias %d relu %d"
              " declared %d threads %d isa %s: y[%lld] = %g, expected %g\n",
              (long long)c->N, (long long)c->C, (long long)c->H, (long long)c->W, (long long)c->M, (long long)c->kh,
              (long long)c->kw, (long long)c->sh, (long long)c->sw, (long long)c->dh, (long long)c->dw,
              (long long)c->pt, (long long)c->pl, (long long)c->pb, (long long)c->pr, c->bias, c->relu,
              c->declare_out, c->threads, keel_gemm_isa_name(keel_gemm_get_isa()), (long long)at, (double)y[at],
              ref[at]);
      ok = false;
    }
    keel_tensor_release(out);
    out = NULL;
  }
  keel_tensor_release(in);
  keel_module_destroy(mod);
  keel_engine_release(e);
  mb_free(&mdl);
  free(x), free(w), free(b), free(ref), free(mag);
  return ok;
}

static int64_t cases_run = 0;

static void check_case(ccfg c) {
  for (int decl = 0; decl < 2; decl++)
    for (int t = 1; t <= 2; t++) {
      c.declare_out = decl;
      c.threads = t;
      CHECK(run_conv(&c));
      cases_run++;
    }
}

static ccfg cc(int64_t N, int64_t C, int64_t H, int64_t W, int64_t M, int64_t k, int64_t s, int64_t p) {
  return (ccfg){.N = N, .C = C, .H = H, .W = W, .M = M, .kh = k, .kw = k, .sh = s, .sw = s, .dh = 1, .dw = 1,
                .pt = p, .pl = p, .pb = p, .pr = p, .bias = true};
}

static void shapes_one_isa(void) {
  /* small maps, long K: the swapped orientation (3x3, 1x1, strided 1x1; batch folded) */
  check_case(cc(1, 64, 7, 7, 48, 3, 1, 1));
  check_case(cc(3, 100, 5, 5, 48, 3, 1, 1));
  check_case(cc(2, 300, 7, 7, 64, 1, 1, 0));
  check_case(cc(2, 400, 13, 13, 80, 1, 2, 0));
  check_case(cc(1, 100, 14, 14, 48, 3, 1, 1));
  check_case(cc(1, 37, 7, 7, 33, 3, 1, 1)); /* odd sizes: normal orientation by the rule */
  check_case(cc(5, 70, 3, 2, 17, 1, 1, 0)); /* OW 2: many runs per panel */
  check_case(cc(2, 96, 6, 1, 20, 3, 1, 1)); /* OW 1 */
  /* large maps: weights as A, implicit im2col of B (stride 1 / 2, the 7x7 stem) */
  check_case(cc(1, 3, 30, 29, 16, 7, 2, 3));
  check_case(cc(2, 5, 19, 37, 21, 3, 1, 1));
  check_case(cc(1, 8, 40, 33, 30, 1, 1, 0));
  check_case(cc(1, 9, 35, 41, 13, 3, 2, 1));
  /* batches as one threaded GEMM call (keel_sgemm_batch): 1x1 read in place; k x k past 16 images */
  check_case(cc(3, 24, 30, 31, 40, 1, 1, 0));
  check_case(cc(17, 3, 20, 24, 8, 3, 1, 1));
  /* asymmetric pads, dilation, rectangular kernel, no bias, fused Relu, pads wider than the kernel reach */
  ccfg c = cc(2, 40, 9, 11, 35, 3, 1, 0);
  c.kw = 5, c.dh = 2, c.pt = 2, c.pl = 3, c.pb = 0, c.pr = 1, c.bias = false, c.relu = true;
  check_case(c);
  c = cc(1, 11, 33, 50, 19, 3, 1, 0);
  c.kh = 5, c.dw = 2, c.pt = 1, c.pb = 4, c.pl = 0, c.pr = 2, c.relu = true;
  check_case(c);
  c = cc(1, 6, 4, 45, 9, 3, 2, 5);
  c.sh = 1;
  check_case(c);
  c = cc(1, 200, 4, 4, 64, 3, 1, 4);
  c.relu = true;
  check_case(c);
}

TEST(conv_against_reference_all_kernels) {
  TEST_BEGIN("conv_against_reference_all_kernels");
  const keel_gemm_isa best = keel_gemm_isa_best();
  for (int isa = 0; isa <= (int)best; isa++) {
    keel_gemm_set_isa((keel_gemm_isa)isa);
    shapes_one_isa();
  }
  keel_gemm_set_isa(best);
  CHECK(cases_run == (int64_t)(best + 1) * 18 * 4);
}

RUN_TESTS(conv_against_reference_all_kernels)
