#define _POSIX_C_SOURCE 200809L
/* Fusion passes (graph/passes.c, graph/fuse_patterns.c): each fusion fires on its exact pattern (node
 * counts after the passes), leaves near-misses alone, and the fused graph computes what the unfused one
 * does (both run by a small node-by-node executor over the operator kernels). The models-vs-onnxruntime
 * test covers the same fusions on BERT, MobileNetV2 and ResNet-50 against onnxruntime. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <time.h>

#include "core/error.h"
#include "core/tensor_internal.h"
#include "graph/passes.h"
#include "ops/op.h"
#include "test_main.h"

#include "fuse_harness.h"

/* ---- LayerNorm ---- */

static int64_t ln_width = 8; /* gamma/beta length (the last axis of x) */

enum {
  LN_OK, LN_OPSET18, LN_MULSQ, LN_AXIS1, LN_POW3, LN_GAMMA2D, LN_D_OUTPUT, LN_EPS_INPUT, LN_NOKEEP,
  LN_SKIP,          /* x = Add(a, b): the residual sum ahead of the LayerNorm */
  LN_SKIP_X_OUT,    /* ... and x is also a graph output */
  LN_SKIP_X_SHARED, /* ... and x is also read by another node */
  LN_N
};

static void make_layernorm(keel_graph *g, int variant) {
  if (variant >= LN_SKIP) {
    graph_input(g, "a");
    graph_input(g, "b");
    node(g, "Add", 14, "a,b", "x");
  } else {
    graph_input(g, "x");
  }
  if (variant == LN_EPS_INPUT) graph_input(g, "eps");
  const int64_t c8[1] = {ln_width}, c18[2] = {1, ln_width}, axes[1] = {variant == LN_AXIS1 ? 1 : -1};
  constant(g, "gamma", KEEL_FLOAT32, variant == LN_GAMMA2D ? c18 : c8, variant == LN_GAMMA2D ? 2 : 1, NULL, NULL);
  constant(g, "beta", KEEL_FLOAT32, c8, 1, NULL, NULL);
  scalar(g, "two", variant == LN_POW3 ? 3.0f : 2.0f);
  if (variant != LN_EPS_INPUT) scalar(g, "eps", 1e-5f);
  const int op18 = variant == LN_OPSET18 ? 18 : 13;
  if (op18 == 18) {
    const int64_t one[1] = {1};
    constant(g, "axes", KEEL_INT64, one, 1, NULL, axes);
  }
  keel_node *n = node(g, "ReduceMean", op18, op18 == 18 ? "x,axes" : "x", "mean");
  if (op18 != 18) attr_ints(n, "axes", 1, axes);
  if (variant == LN_NOKEEP) attr_int(n, "keepdims", 0);
  node(g, "Sub", 14, "x,mean", "d");
  if (variant == LN_MULSQ) node(g, "Mul", 14, "d,d", "sq");
  else node(g, "Pow", 15, "d,two", "sq");
  n = node(g, "ReduceMean", op18, op18 == 18 ? "sq,axes" : "sq", "var");
  if (op18 != 18) attr_ints(n, "axes", 1, axes);
  node(g, "Add", 14, "var,eps", "ve");
  node(g, "Sqrt", 13, "ve", "sd");
  node(g, "Div", 14, "d,sd", "nrm");
  node(g, "Mul", 14, "gamma,nrm", "sc"); /* gamma first: either order is a match */
  node(g, "Add", 14, "sc,beta", "y");
  graph_output(g, "y");
  if (variant == LN_D_OUTPUT) graph_output(g, "d");
  if (variant == LN_SKIP_X_OUT) graph_output(g, "x");
  if (variant == LN_SKIP_X_SHARED) {
    node(g, "Neg", 13, "x", "xn");
    graph_output(g, "xn");
  }
}

TEST(layernorm_fuses) {
  const int64_t dims[3] = {2, 3, 8};
  keel_tensor *x = random_input(dims, 3, 3.0f);
  const int variants[] = {LN_OK, LN_OPSET18, LN_MULSQ};
  for (size_t k = 0; k < 3; k++) {
    int before, after;
    keel_graph *f = NULL;
    float err = compare(make_layernorm, variants[k], &x, &before, &after, &f);
    CHECK(before == 9);
    CHECK(after == 1);
    CHECK(count_op(f, "LayerNorm") == 1);
    CHECK(err <= 1e-5f);
    keel_graph_destroy(f);
  }
  keel_tensor_release(x);
  /* a last axis of 1 broadcasting against gamma/beta of 8: the fused kernel's general path */
  const int64_t d1[3] = {2, 3, 1};
  x = random_input(d1, 3, 3.0f);
  int before, after;
  float err = compare(make_layernorm, LN_OK, &x, &before, &after, NULL);
  CHECK(after == 1);
  CHECK(err <= 1e-5f);
  keel_tensor_release(x);
}

TEST(layernorm_near_misses) {
  const int variants[] = {LN_AXIS1, LN_POW3, LN_GAMMA2D, LN_D_OUTPUT, LN_EPS_INPUT, LN_NOKEEP};
  for (size_t k = 0; k < sizeof variants / sizeof variants[0]; k++) {
    keel_graph *g = keel_graph_create();
    make_layernorm(g, variants[k]);
    build(g, true);
    if (count_op(g, "LayerNorm") != 0 || live_nodes(g) != 9)
      fprintf(stderr, "variant %d: %d LayerNorm, %d nodes\n", variants[k], count_op(g, "LayerNorm"), live_nodes(g));
    CHECK(count_op(g, "LayerNorm") == 0);
    CHECK(live_nodes(g) == 9);
    keel_graph_destroy(g);
  }
}

/* Residual Add + LayerNorm -> keel.SkipLayerNorm, with the Add broadcasting in several ways. */
TEST(skip_layernorm_fuses) {
  struct {
    int64_t a[3], b[3];
    int bnd;
  } cases[] = {
      {{2, 3, 8}, {2, 3, 8}, 3}, /* BERT's residual: same shapes */
      {{2, 3, 8}, {8}, 1},       /* a bias-like vector */
      {{2, 3, 8}, {2, 1, 8}, 3},
      {{1, 3, 8}, {2, 1, 8}, 3}, /* both broadcast */
      {{2, 3, 1}, {2, 3, 1}, 3}, /* a last axis of 1 against gamma/beta of 8 */
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    keel_tensor *f[2] = {random_input(cases[c].a, 3, 3.0f), random_input(cases[c].b, cases[c].bnd, 3.0f)};
    int before, after;
    keel_graph *fg = NULL;
    float err = compare(make_layernorm, LN_SKIP, f, &before, &after, &fg);
    CHECK(before == 10);
    CHECK(after == 1);
    CHECK(count_op(fg, "SkipLayerNorm") == 1 && count_op(fg, "LayerNorm") == 0);
    if (err > 1e-5f) fprintf(stderr, "skip LayerNorm case %zu: err %g\n", c, err);
    CHECK(err <= 1e-5f);
    keel_graph_destroy(fg);
    keel_tensor_release(f[0]);
    keel_tensor_release(f[1]);
  }
}

TEST(skip_layernorm_near_misses) {
  const int variants[] = {LN_SKIP_X_OUT, LN_SKIP_X_SHARED};
  for (size_t k = 0; k < 2; k++) {
    keel_graph *g = keel_graph_create();
    make_layernorm(g, variants[k]);
    build(g, true);
    /* the LayerNorm still fuses; the Add stays because its sum is needed elsewhere */
    CHECK(count_op(g, "SkipLayerNorm") == 0);
    CHECK(count_op(g, "LayerNorm") == 1 && count_op(g, "Add") == 1);
    CHECK(live_nodes(g) == (variants[k] == LN_SKIP_X_SHARED ? 3 : 2));
    keel_graph_destroy(g);
  }
}

/* ---- GELU ---- */

enum { GE_MATMUL, GE_PLAIN, GE_HALF_FIRST, GE_MUL_RSQRT2, GE_BAD_SQRT, GE_BAD_ONE, GE_BAD_HALF, GE_ERF_OUT, GE_N };

static void make_gelu(keel_graph *g, int variant) {
  graph_input(g, "x");
  const char *h = "x";
  if (variant == GE_MATMUL) {
    const int64_t wd[2] = {6, 5}, bd[1] = {5};
    constant(g, "W", KEEL_FLOAT32, wd, 2, NULL, NULL);
    constant(g, "B", KEEL_FLOAT32, bd, 1, NULL, NULL);
    node(g, "MatMul", 13, "x,W", "mm");
    node(g, "Add", 14, "mm,B", "h");
    h = "h";
  }
  char ins[64];
  scalar(g, "sqrt2", variant == GE_BAD_SQRT ? 1.5f : 1.41421356f);
  scalar(g, "rsqrt2", 0.70710678f);
  scalar(g, "one", variant == GE_BAD_ONE ? 2.0f : 1.0f);
  scalar(g, "half", variant == GE_BAD_HALF ? 0.4f : 0.5f);
  if (variant == GE_MUL_RSQRT2) snprintf(ins, sizeof ins, "rsqrt2,%s", h), node(g, "Mul", 14, ins, "t");
  else snprintf(ins, sizeof ins, "%s,sqrt2", h), node(g, "Div", 14, ins, "t");
  node(g, "Erf", 13, "t", "e");
  node(g, "Add", 14, "one,e", "a");
  if (variant == GE_HALF_FIRST) {
    snprintf(ins, sizeof ins, "%s,half", h);
    node(g, "Mul", 14, ins, "hx");
    node(g, "Mul", 14, "hx,a", "y");
  } else {
    snprintf(ins, sizeof ins, "a,%s", h);
    node(g, "Mul", 14, ins, "m");
    node(g, "Mul", 14, "m,half", "y");
  }
  graph_output(g, "y");
  if (variant == GE_ERF_OUT) graph_output(g, "e");
}

TEST(gelu_fuses) {
  const int64_t d6[2] = {4, 6}, d5[2] = {4, 5};
  keel_tensor *x6 = random_input(d6, 2, 3.0f), *x5 = random_input(d5, 2, 4.0f);
  int before, after;
  keel_graph *f = NULL;
  /* into the MatMul+bias as its activation: one node left */
  float err = compare(make_gelu, GE_MATMUL, &x6, &before, &after, &f);
  CHECK(before == 7 && after == 1);
  CHECK(count_op(f, "MatMul") == 1 && f->n_nodes == 1 && f->nodes[0].act == KEEL_ACT_GELU);
  CHECK(err <= 1e-5f);
  keel_graph_destroy(f);
  const int plain[] = {GE_PLAIN, GE_HALF_FIRST, GE_MUL_RSQRT2};
  for (size_t k = 0; k < 3; k++) {
    err = compare(make_gelu, plain[k], &x5, &before, &after, &f);
    CHECK(before == 5 && after == 1);
    CHECK(count_op(f, "Gelu") == 1);
    CHECK(err <= 1e-5f);
    keel_graph_destroy(f);
  }
  keel_tensor_release(x6);
  keel_tensor_release(x5);
}

/* ONNX's own Gelu (opset 20, erf form) after a MatMul becomes its activation too; the tanh form does not. */
static void make_onnx_gelu(keel_graph *g, int tanh_form) {
  graph_input(g, "x");
  const int64_t wd[2] = {6, 5};
  constant(g, "W", KEEL_FLOAT32, wd, 2, NULL, NULL);
  node(g, "MatMul", 13, "x,W", "mm");
  keel_node *n = node(g, "Gelu", 20, "mm", "y");
  if (tanh_form) {
    keel_attr *a = keel_node_add_attr(n, "approximate");
    a->type = KEEL_ATTR_STRING;
    a->s = strdup("tanh");
    a->s_len = 4;
  }
  graph_output(g, "y");
}

TEST(onnx_gelu_activation) {
  const int64_t d6[2] = {4, 6};
  keel_tensor *x6 = random_input(d6, 2, 3.0f);
  for (int t = 0; t < 2; t++) {
    int before, after;
    float err = compare(make_onnx_gelu, t, &x6, &before, &after, NULL);
    CHECK(before == 2);
    CHECK(after == (t ? 2 : 1));
    CHECK(err <= 1e-5f);
  }
  keel_tensor_release(x6);
}

TEST(gelu_near_misses) {
  const int variants[] = {GE_BAD_SQRT, GE_BAD_ONE, GE_BAD_HALF, GE_ERF_OUT};
  for (size_t k = 0; k < 4; k++) {
    keel_graph *g = keel_graph_create();
    make_gelu(g, variants[k]);
    build(g, true);
    CHECK(count_op(g, "Gelu") == 0);
    CHECK(count_op(g, "Erf") == 1);
    CHECK(live_nodes(g) == 5);
    keel_graph_destroy(g);
  }
}

/* ---- Softmax with scale and mask ---- */

enum { SM_DIV_ADD, SM_MUL_ADD, SM_MASK_FIRST, SM_DIV_ONLY, SM_AXIS1, SM_OPSET11_NOAXIS, SM_SCALE_INPUT,
       SM_SCALED_OUT, SM_N };

static void make_softmax(keel_graph *g, int variant) {
  graph_input(g, "x");
  graph_input(g, "mask");
  if (variant == SM_SCALE_INPUT) graph_input(g, "s");
  else scalar(g, "s", variant == SM_MUL_ADD ? 0.125f : 8.0f);
  if (variant == SM_MUL_ADD) node(g, "Mul", 14, "s,x", "xs");
  else node(g, "Div", 14, "x,s", "xs");
  const char *sin = "xs";
  if (variant != SM_DIV_ONLY) {
    node(g, "Add", 14, variant == SM_MASK_FIRST ? "mask,xs" : "xs,mask", "xm");
    sin = "xm";
  }
  keel_node *n = node(g, "Softmax", variant == SM_OPSET11_NOAXIS ? 11 : 13, sin, "y");
  if (variant == SM_AXIS1) attr_int(n, "axis", 1);
  graph_output(g, "y");
  if (variant == SM_SCALED_OUT) graph_output(g, "xs");
}

TEST(softmax_fuses) {
  const int64_t xd[4] = {2, 3, 5, 7}, md[4] = {2, 1, 1, 7};
  keel_tensor *feeds[2] = {random_input(xd, 4, 20.0f), random_input(md, 4, 5.0f)};
  /* a strongly negative mask entry, as attention masks have */
  ((float *)feeds[1]->data)[3] = -10000.0f;
  const int variants[] = {SM_DIV_ADD, SM_MUL_ADD, SM_MASK_FIRST, SM_DIV_ONLY};
  for (size_t k = 0; k < 4; k++) {
    int before, after;
    keel_graph *f = NULL;
    float err = compare(make_softmax, variants[k], feeds, &before, &after, &f);
    CHECK(before == (variants[k] == SM_DIV_ONLY ? 2 : 3));
    CHECK(after == 1);
    CHECK(count_op(f, "ScaleMaskSoftmax") == 1);
    if (err > 1e-6f) fprintf(stderr, "softmax variant %d: err %g\n", variants[k], err);
    CHECK(err <= 1e-6f);
    keel_graph_destroy(f);
  }
  keel_tensor_release(feeds[0]);
  keel_tensor_release(feeds[1]);
}

TEST(softmax_near_misses) {
  const int variants[] = {SM_AXIS1, SM_OPSET11_NOAXIS, SM_SCALE_INPUT, SM_SCALED_OUT};
  for (size_t k = 0; k < 4; k++) {
    keel_graph *g = keel_graph_create();
    make_softmax(g, variants[k]);
    build(g, true);
    /* a near-miss may still fuse the parts it fully matches (Add+Softmax without the scale: no dtype proof,
     * left alone); the scale node must survive in every case */
    CHECK(count_op(g, "ScaleMaskSoftmax") == 0);
    CHECK(live_nodes(g) == 3);
    keel_graph_destroy(g);
  }
}

/* ---- Add + Relu / Clip ---- */

enum { AR_RELU, AR_CLIP, AR_SIGMOID, AR_CLIP_NOBOUNDS, AR_N };

static void make_add_act(keel_graph *g, int variant) {
  graph_input(g, "a");
  graph_input(g, "b");
  node(g, "Add", 14, "a,b", "s");
  scalar(g, "lo", 0.0f);
  scalar(g, "hi", 0.75f);
  if (variant == AR_RELU) node(g, "Relu", 14, "s", "y");
  else if (variant == AR_CLIP) node(g, "Clip", 13, "s,lo,hi", "y");
  else if (variant == AR_SIGMOID) node(g, "Sigmoid", 13, "s", "y");
  else node(g, "Clip", 13, "s", "y");
  graph_output(g, "y");
}

TEST(add_activation) {
  const int64_t d[3] = {3, 4, 37}, db[1] = {37};
  keel_tensor *feeds[2] = {random_input(d, 3, 1.0f), random_input(db, 1, 1.0f)};
  for (int v = 0; v < AR_N; v++) {
    int before, after;
    float err = compare(make_add_act, v, feeds, &before, &after, NULL);
    CHECK(before == 2);
    CHECK(after == (v == AR_RELU || v == AR_CLIP ? 1 : 2));
    CHECK(err == 0.0f);
  }
  /* same shapes (the one-pass kernel) */
  keel_tensor_release(feeds[1]);
  feeds[1] = random_input(d, 3, 1.0f);
  for (int v = 0; v < 2; v++) {
    int before, after;
    float err = compare(make_add_act, v, feeds, &before, &after, NULL);
    CHECK(after == 1 && err == 0.0f);
  }
  keel_tensor_release(feeds[0]);
  keel_tensor_release(feeds[1]);
}

/* Not pass/fail on speed: kernel time of the unfused and fused graphs at BERT-base shapes (best of 5). */
static void time_pair(const char *what, make_fn make, int variant, keel_tensor **feeds) {
  keel_graph *a = keel_graph_create(), *b = keel_graph_create();
  make(a, variant);
  make(b, variant);
  build(a, false);
  build(b, true);
  double best[2] = {1e30, 1e30};
  for (int r = 0; r < 5; r++)
    for (int k = 0; k < 2; k++) {
      run_seconds = 0;
      keel_tensor *y = execute(k ? b : a, feeds);
      CHECK(y != NULL);
      keel_tensor_release(y);
      if (run_seconds < best[k]) best[k] = run_seconds;
    }
  fprintf(stderr, "%-44s unfused %8.1f us (%d nodes), fused %8.1f us (%d nodes): %.2fx\n", what, best[0] * 1e6,
          live_nodes(a), best[1] * 1e6, live_nodes(b), best[0] / best[1]);
  keel_graph_destroy(a);
  keel_graph_destroy(b);
}

TEST(speed_report) {
  const int64_t ln[3] = {1, 128, 768}, ge[2] = {128, 3072}, sx[4] = {1, 12, 128, 128}, sm[4] = {1, 1, 1, 128},
                ad[4] = {1, 256, 56, 56};
  ln_width = 768;
  keel_tensor *x = random_input(ln, 3, 2.0f);
  time_pair("LayerNorm [1,128,768]", make_layernorm, LN_OK, &x);
  keel_tensor_release(x);
  ln_width = 8;
  x = random_input(ge, 2, 3.0f);
  time_pair("GELU [128,3072]", make_gelu, GE_PLAIN, &x);
  keel_tensor_release(x);
  keel_tensor *f2[2] = {random_input(sx, 4, 10.0f), random_input(sm, 4, 1.0f)};
  time_pair("Div+Add mask+Softmax [1,12,128,128]", make_softmax, SM_DIV_ADD, f2);
  keel_tensor_release(f2[0]);
  keel_tensor_release(f2[1]);
  keel_tensor *f3[2] = {random_input(ad, 4, 1.0f), random_input(ad, 4, 1.0f)};
  time_pair("Add+Relu [1,256,56,56]", make_add_act, AR_RELU, f3);
  keel_tensor_release(f3[0]);
  keel_tensor_release(f3[1]);
}

RUN_TESTS(layernorm_fuses, layernorm_near_misses, skip_layernorm_fuses, skip_layernorm_near_misses, gelu_fuses, onnx_gelu_activation, gelu_near_misses, softmax_fuses, softmax_near_misses,
          add_activation, speed_report)
