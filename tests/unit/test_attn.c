#define _POSIX_C_SOURCE 200809L
/* The multi-head attention fusion (graph/fuse_patterns.c -> keel.MultiHeadAttention, ops/fused_attn.c):
 * it fires on the exact BERT-style pattern (node counts after the passes), leaves near-misses alone, and the
 * fused graph computes what the unfused one does (both run by a small node-by-node executor over the operator
 * kernels), with one and two threads, with broadcasting batch/head dimensions and masks of several ranks.
 * The models-vs-onnxruntime test covers the fusion on BERT against onnxruntime. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <time.h>

#include "core/error.h"
#include "core/tensor_internal.h"
#include "graph/passes.h"
#include "ops/op.h"
#include "backend/cpu/gemm.h"
#include "test_main.h"

#include "fuse_harness.h"

/* ---- attention ---- */

/* Shapes of the next graph: Q [B, S, H*D], K [KB, SK, H*D], V [KB, SK, H*DV], mask MD (rank MR). */
static int64_t B = 2, S = 5, SK = 7, H = 3, D = 4, DV = 6, KB = 2;
static int64_t MD[4] = {2, 1, 1, 7};
static int MR = 4;

enum {
  AT_OK,          /* BERT's form: Reshape, Transpose, MatMul, Div, Add mask, Softmax, MatMul, Transpose, Reshape */
  AT_MUL_NOMASK,  /* Mul by 1/sqrt(D), no mask */
  AT_BARE,        /* no Reshapes: the graph takes and returns the 4-D tensors */
  AT_FUSE_N,
  AT_PERM_Q = AT_FUSE_N, /* near-misses from here */
  AT_PERM_K,
  AT_PERM_OUT,
  AT_SCORES_OUT,  /* an intermediate value is also a graph output */
  AT_PROBS_OUT,
  AT_VT_OUT,
  AT_QT_SHARED,   /* the transposed Q is read twice */
  AT_NO_OUT_T,    /* no Transpose back to [B, S, H, D] */
  AT_SWAPPED,     /* MatMul(K^T, Q) */
  AT_N
};

static void shape_const(keel_graph *g, const char *name, int64_t a, int64_t b, int64_t c, int64_t d) {
  const int64_t v[4] = {a, b, c, d}, n = d ? 4 : 3;
  constant(g, name, KEEL_INT64, &n, 1, NULL, v);
}

static void make_attention(keel_graph *g, int variant) {
  static const int64_t p0213[4] = {0, 2, 1, 3}, p0231[4] = {0, 2, 3, 1}, p2013[4] = {2, 0, 1, 3},
                       p0132[4] = {0, 1, 3, 2};
  graph_input(g, "q");
  graph_input(g, "k");
  graph_input(g, "v");
  if (variant != AT_MUL_NOMASK) graph_input(g, "mask");
  const bool bare = variant == AT_BARE;
  if (!bare) {
    shape_const(g, "qs", B, S, H, D);
    shape_const(g, "ks", KB, SK, H, D);
    shape_const(g, "vs", KB, SK, H, DV);
    shape_const(g, "os", B, S, H * DV, 0);
    node(g, "Reshape", 14, "q,qs", "q4");
    node(g, "Reshape", 14, "k,ks", "k4");
    node(g, "Reshape", 14, "v,vs", "v4");
  }
  attr_ints(node(g, "Transpose", 13, bare ? "q" : "q4", "qt"), "perm", 4, variant == AT_PERM_Q ? p2013 : p0213);
  attr_ints(node(g, "Transpose", 13, bare ? "k" : "k4", "kt"), "perm", 4, variant == AT_PERM_K ? p0213 : p0231);
  attr_ints(node(g, "Transpose", 13, bare ? "v" : "v4", "vt"), "perm", 4, p0213);
  node(g, "MatMul", 13, variant == AT_SWAPPED ? "kt,qt" : "qt,kt", "sc");
  if (variant == AT_MUL_NOMASK) {
    scalar(g, "c", 1.0f / sqrtf((float)D));
    node(g, "Mul", 14, "sc,c", "sm_in");
  } else {
    scalar(g, "c", sqrtf((float)D));
    node(g, "Div", 14, "sc,c", "scs");
    node(g, "Add", 14, "scs,mask", "sm_in");
  }
  attr_int(node(g, "Softmax", 13, "sm_in", "p"), "axis", -1);
  node(g, "MatMul", 13, "p,vt", "o");
  if (variant == AT_QT_SHARED) node(g, "Neg", 13, "qt", "qneg");
  if (variant == AT_NO_OUT_T) {
    graph_output(g, "o");
  } else {
    attr_ints(node(g, "Transpose", 13, "o", "ot"), "perm", 4, variant == AT_PERM_OUT ? p0132 : p0213);
    if (bare) {
      graph_output(g, "ot");
    } else {
      node(g, "Reshape", 14, "ot,os", "y");
      graph_output(g, "y");
    }
  }
  if (variant == AT_SCORES_OUT) graph_output(g, "sc");
  if (variant == AT_PROBS_OUT) graph_output(g, "p");
  if (variant == AT_VT_OUT) graph_output(g, "vt");
  if (variant == AT_QT_SHARED) graph_output(g, "qneg");
}

/* Feeds for the current shapes (3-D, or 4-D for AT_BARE); mask entries include BERT's -10000. */
static void attention_feeds(keel_tensor **f, bool bare) {
  const int64_t q3[3] = {B, S, H * D}, k3[3] = {KB, SK, H * D}, v3[3] = {KB, SK, H * DV};
  const int64_t q4[4] = {B, S, H, D}, k4[4] = {KB, SK, H, D}, v4[4] = {KB, SK, H, DV};
  f[0] = bare ? random_input(q4, 4, 2.0f) : random_input(q3, 3, 2.0f);
  f[1] = bare ? random_input(k4, 4, 2.0f) : random_input(k3, 3, 2.0f);
  f[2] = bare ? random_input(v4, 4, 1.0f) : random_input(v3, 3, 1.0f);
  f[3] = random_input(MD, MR, 1.0f);
  float *m = f[3]->data;
  for (int64_t i = 0; i < keel_tensor_numel(f[3]); i += 3) m[i] = -10000.0f;
}

static void release_feeds(keel_tensor **f) {
  for (int i = 0; i < 4; i++) keel_tensor_release(f[i]);
}

/* Fused vs unfused for the current shapes; returns the max abs difference and checks the node counts. */
static float attention_case(int variant) {
  keel_tensor *f[4];
  attention_feeds(f, variant == AT_BARE);
  if (variant == AT_MUL_NOMASK) { /* no mask input */
    keel_tensor_release(f[3]);
    f[3] = NULL;
  }
  int before, after;
  keel_graph *fg = NULL;
  const float err = compare(make_attention, variant, f, &before, &after, &fg);
  const int reshapes = variant == AT_BARE ? 0 : 4;
  const int scale_mask = variant == AT_MUL_NOMASK ? 1 : 2;
  CHECK(before == reshapes + 4 + 2 + scale_mask + 1);
  CHECK(after == reshapes + 1);
  CHECK(count_op(fg, "MultiHeadAttention") == 1);
  CHECK(count_op(fg, "Transpose") == 0 && count_op(fg, "MatMul") == 0);
  keel_graph_destroy(fg);
  release_feeds(f);
  return err;
}

TEST(attention_fuses) {
  for (int v = 0; v < AT_FUSE_N; v++) {
    const float err = attention_case(v);
    if (err > 1e-5f) fprintf(stderr, "attention variant %d: err %g\n", v, err);
    CHECK(err <= 1e-5f);
  }
}

/* Batch and head broadcasting (K and V with batch 1), masks of rank 2, 3 and full rank, one query row. */
TEST(attention_broadcasts) {
  struct {
    int64_t b, s, sk, kb, md[4];
    int mr;
  } cases[] = {
      {2, 5, 7, 1, {2, 1, 1, 7}, 4}, /* K, V shared by the batch */
      {2, 5, 7, 2, {5, 7}, 2},       /* one mask for every batch and head */
      {2, 5, 7, 2, {3, 5, 7}, 3},    /* a mask per head */
      {2, 5, 7, 2, {2, 3, 5, 7}, 4}, /* a full mask */
      {1, 1, 7, 1, {1, 1, 4, 7}, 4}, /* one query row, repeated by a mask with four rows */
      {2, 5, 7, 2, {1}, 1},          /* a one-element mask */
  };
  const keel_gemm_isa best = keel_gemm_isa_best();
  for (int p = 0; p < 2; p++) /* each case through the tile kernel, then through keel_sgemm */
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    keel_gemm_set_isa(p ? KEEL_GEMM_AVX2 : best);
    B = cases[c].b, S = cases[c].s, SK = cases[c].sk, KB = cases[c].kb, MR = cases[c].mr;
    memcpy(MD, cases[c].md, sizeof MD);
    /* the output Reshape of AT_OK names S rows; a mask that adds rows needs the 4-D form */
    const int variant = cases[c].mr == 4 && cases[c].md[2] > cases[c].s ? AT_BARE : AT_OK;
    const float err = attention_case(variant);
    if (err > 1e-5f) fprintf(stderr, "attention broadcast case %zu, isa %d: err %g\n", c, p, err);
    CHECK(err <= 1e-5f);
  }
  keel_gemm_set_isa(best);
  B = 2, S = 5, SK = 7, KB = 2, MR = 4;
  const int64_t md[4] = {2, 1, 1, 7};
  memcpy(MD, md, sizeof MD);
}

/* BERT-base's head geometry (12 x 64, sequence 128) at one and two threads (the heads split over the pool),
 * through the AVX-512 tile kernel and through keel_sgemm (the path of other CPUs); and odd sizes (tails of
 * the 12-row and 32-column tiles). */
TEST(attention_bert_shape_threads) {
  const keel_gemm_isa best = keel_gemm_isa_best();
  const keel_gemm_isa isas[2] = {best, KEEL_GEMM_AVX2};
  for (int p = 0; p < 2; p++) {
    keel_gemm_set_isa(isas[p]);
    B = 2, S = 128, SK = 128, H = 12, D = 64, DV = 64, KB = 2;
    int64_t md[4] = {2, 1, 1, 128};
    memcpy(MD, md, sizeof MD);
    for (exec_threads = 1; exec_threads <= 2; exec_threads++) {
      const float err = attention_case(AT_OK);
      if (err > 1e-5f) fprintf(stderr, "attention BERT shape, isa %d, %d threads: err %g\n", p, exec_threads, err);
      CHECK(err <= 1e-5f);
    }
    exec_threads = 1;
    B = 1, S = 29, SK = 53, H = 2, D = 17, DV = 35, KB = 1;
    md[0] = 1, md[3] = 53;
    memcpy(MD, md, sizeof MD);
    const float err = attention_case(AT_OK);
    if (err > 1e-5f) fprintf(stderr, "attention odd shape, isa %d: err %g\n", p, err);
    CHECK(err <= 1e-5f);
  }
  keel_gemm_set_isa(best);
  B = 2, S = 5, SK = 7, H = 3, D = 4, DV = 6, KB = 2;
  const int64_t md0[4] = {2, 1, 1, 7};
  memcpy(MD, md0, sizeof MD);
}

TEST(attention_near_misses) {
  for (int v = AT_FUSE_N; v < AT_N; v++) {
    keel_graph *g = keel_graph_create();
    make_attention(g, v);
    build(g, true);
    if (count_op(g, "MultiHeadAttention") != 0) fprintf(stderr, "near-miss %d fused\n", v);
    CHECK(count_op(g, "MultiHeadAttention") == 0);
    /* the softmax part still fuses on its own; the Transposes and MatMuls stay */
    CHECK(count_op(g, "ScaleMaskSoftmax") == 1);
    CHECK(count_op(g, "MatMul") == 2);
    CHECK(count_op(g, "Transpose") == (v == AT_NO_OUT_T ? 3 : 4));
    keel_graph_destroy(g);
  }
}

/* Bad shapes reaching the operator directly are errors naming what is wrong. */
TEST(attention_bad_shapes) {
  const keel_op_def *op = keel_op_find("MultiHeadAttention", "keel", 1);
  CHECK(op != NULL);
  if (!op) return;
  keel_view in[4], out[1];
  memset(in, 0, sizeof in);
  memset(out, 0, sizeof out);
  const int64_t q[4] = {1, 5, 3, 4}, k[4] = {1, 7, 3, 4}, v[4] = {1, 7, 3, 6};
  float dummy[1];
  for (int i = 0; i < 3; i++) {
    in[i].dtype = KEEL_FLOAT32;
    in[i].ndim = 4;
    in[i].data = dummy;
    memcpy(in[i].dims, i == 0 ? q : i == 1 ? k : v, sizeof q);
  }
  keel_node n;
  memset(&n, 0, sizeof n);
  CHECK_OK(op->infer(&n, in, 3, out, 1));
  CHECK(out[0].ndim == 4 && out[0].dims[0] == 1 && out[0].dims[1] == 5 && out[0].dims[2] == 3 && out[0].dims[3] == 6);
  in[1].dims[3] = 5;
  CHECK_ERR(op->infer(&n, in, 3, out, 1), KEEL_SHAPE_MISMATCH, "head size");
  in[1].dims[3] = 4;
  in[2].dims[1] = 8;
  CHECK_ERR(op->infer(&n, in, 3, out, 1), KEEL_SHAPE_MISMATCH, "sequence");
  in[2].dims[1] = 7;
  in[1].dims[2] = 2;
  CHECK_ERR(op->infer(&n, in, 3, out, 1), KEEL_SHAPE_MISMATCH, "head");
  in[1].dims[2] = 3;
  in[0].ndim = 3;
  CHECK_ERR(op->infer(&n, in, 3, out, 1), KEEL_SHAPE_MISMATCH, "4-D");
  in[0].ndim = 4;
  in[3] = in[0];
  in[3].dims[3] = 6;
  CHECK_ERR(op->infer(&n, in, 4, out, 1), KEEL_SHAPE_MISMATCH, "mask");
  in[3].dtype = KEEL_INT64;
  CHECK_ERR(op->infer(&n, in, 4, out, 1), KEEL_INVALID_MODEL, "float32");
}

/* Kernel time of the fused and unfused graphs at BERT-base's geometry (information, not a check: timings on a
 * shared machine are noisy). */
TEST(attention_speed_report) {
  B = 1, S = 128, SK = 128, H = 12, D = 64, DV = 64, KB = 1;
  const int64_t md[4] = {1, 1, 1, 128};
  memcpy(MD, md, sizeof MD);
  keel_tensor *f[4];
  attention_feeds(f, false);
  keel_graph *g[2];
  for (int k = 0; k < 2; k++) {
    g[k] = keel_graph_create();
    make_attention(g[k], AT_OK);
    build(g[k], k == 1);
  }
  double best[2] = {INFINITY, INFINITY};
  for (int rep = 0; rep < 20; rep++)
    for (int k = 0; k < 2; k++) {
      run_seconds = 0;
      keel_tensor_release(execute(g[k], f));
      if (run_seconds < best[k]) best[k] = run_seconds;
    }
  printf("attention [1,128,12x64] one layer, best of 20: unfused %.3f ms, fused %.3f ms\n", best[0] * 1e3,
         best[1] * 1e3);
  for (int k = 0; k < 2; k++) keel_graph_destroy(g[k]);
  release_feeds(f);
  B = 2, S = 5, SK = 7, H = 3, D = 4, DV = 6, KB = 2;
  const int64_t md0[4] = {2, 1, 1, 7};
  memcpy(MD, md0, sizeof MD);
}

RUN_TESTS(attention_fuses, attention_broadcasts, attention_bert_shape_threads, attention_near_misses,
          attention_bad_shapes, attention_speed_report)
