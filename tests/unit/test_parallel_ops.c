#define _POSIX_C_SOURCE 200809L
/* Operators split across the thread pool (pooling, elementwise, Concat, BatchNormalization): the same bits
 * at 1, 2 and 3 threads on odd sizes large enough to pass each kernel's work threshold, and the MaxPool
 * 3x3/2 fast path against a naive reference. The kernels are called through the op registry with
 * hand-built nodes (no graph passes in the way). */
#include <math.h>
#include <stdint.h>

#include "graph/ir.h"
#include "ops/op.h"
#include "test_main.h"

static uint32_t rng = 777;
static float frand(void) {
  rng = rng * 1664525u + 1013904223u;
  return (float)((rng >> 8) & 0xFFFF) / 16384.0f - 2.0f;
}

/* ---- a node with a few attributes ---- */
typedef struct tnode {
  keel_node n;
  keel_attr attrs[8];
  int64_t ints[8][8];
  int ins[8], outs[4];
} tnode;

static void tn_init(tnode *t, const char *op, int opset, int n_in, int n_out) {
  memset(t, 0, sizeof *t);
  t->n.name = (char *)op;
  t->n.op_type = (char *)op;
  t->n.domain = (char *)"";
  t->n.opset = opset;
  t->n.n_inputs = n_in;
  t->n.n_outputs = n_out;
  for (int i = 0; i < 8; i++) t->ins[i] = i;
  for (int i = 0; i < 4; i++) t->outs[i] = 10 + i;
  t->n.inputs = t->ins;
  t->n.outputs = t->outs;
  t->n.attrs = t->attrs;
}
static void tn_ints(tnode *t, const char *name, int cnt, const int64_t *v) {
  keel_attr *a = &t->attrs[t->n.n_attrs];
  memcpy(t->ints[t->n.n_attrs], v, sizeof(int64_t) * (size_t)cnt);
  a->name = (char *)name;
  a->type = KEEL_ATTR_INTS;
  a->ints = t->ints[t->n.n_attrs];
  a->n = cnt;
  t->n.n_attrs++;
}
static void tn_int(tnode *t, const char *name, int64_t v) {
  keel_attr *a = &t->attrs[t->n.n_attrs++];
  a->name = (char *)name;
  a->type = KEEL_ATTR_INT;
  a->i = v;
}

static keel_view view(keel_dtype dt, int ndim, const int64_t *dims) {
  keel_view v = {0};
  keel_view_set_shape(&v, dt, dims, ndim);
  v.data = malloc(keel_view_nbytes(&v) + 64);
  if (dt == KEEL_FLOAT32) {
    float *p = v.data;
    for (int64_t i = 0; i < keel_view_numel(&v); i++) p[i] = frand();
  } else {
    uint8_t *p = v.data;
    for (size_t i = 0; i < keel_view_nbytes(&v); i++) p[i] = (uint8_t)(frand() * 60.0f);
  }
  return v;
}

/* Run node at `threads` threads into freshly allocated outputs (caller frees out[i].data). */
static void run_node(const tnode *t, const keel_view *in, int n_in, keel_view *out, int n_out, int threads) {
  const keel_op_def *def = keel_op_find(t->n.op_type, "", t->n.opset);
  CHECK(def != NULL);
  if (!def) return;
  memset(out, 0, sizeof(keel_view) * (size_t)n_out);
  CHECK_OK(def->infer(&t->n, in, n_in, out, n_out));
  for (int i = 0; i < n_out; i++) {
    out[i].data = malloc(keel_view_nbytes(&out[i]) + 64);
    memset(out[i].data, 0xA5, keel_view_nbytes(&out[i]));
  }
  size_t ws = def->workspace ? def->workspace(&t->n, in, n_in, out, n_out) : 0;
  void *w = ws ? aligned_alloc(64, (ws + 63) & ~(size_t)63) : keel_empty_workspace;
  keel_exec ex = {w, ws, threads};
  CHECK_OK(def->run(&t->n, in, n_in, out, n_out, &ex));
  if (ws) free(w);
}

/* The outputs at 2 and 3 threads equal the ones at 1 thread, bit for bit. Returns the 1-thread outputs'
 * first float (so callers can also check a value). */
static void same_at_all_threads(const char *what, const tnode *t, const keel_view *in, int n_in, int n_out,
                                keel_view *ref) {
  run_node(t, in, n_in, ref, n_out, 1);
  for (int th = 2; th <= 3; th++) {
    keel_view o[4];
    run_node(t, in, n_in, o, n_out, th);
    for (int i = 0; i < n_out; i++) {
      const bool same = keel_view_nbytes(&o[i]) == keel_view_nbytes(&ref[i]) &&
                        !memcmp(o[i].data, ref[i].data, keel_view_nbytes(&ref[i]));
      if (!same) fprintf(stderr, "%s: output %d differs at %d threads\n", what, i, th);
      CHECK(same);
      free(o[i].data);
    }
  }
}

static void free_views(keel_view *v, int n) {
  for (int i = 0; i < n; i++) free(v[i].data);
}

/* Naive MaxPool 2-D (pads, ceil_mode, dilation 1) for the reference check. */
static float ref_max(const float *x, int64_t H, int64_t W, int64_t oh, int64_t ow, int k, int s, int pt, int pl) {
  float m = -INFINITY;
  int cnt = 0;
  for (int i = 0; i < k; i++)
    for (int j = 0; j < k; j++) {
      const int64_t h = oh * s - pt + i, w = ow * s - pl + j;
      if (h < 0 || h >= H || w < 0 || w >= W) continue;
      m = x[h * W + w] > m ? x[h * W + w] : m;
      cnt++;
    }
  return cnt ? m : 0.0f;
}

TEST(maxpool_3x3s2) {
  /* odd sizes, symmetric / asymmetric pads, ceil_mode (windows hanging over the end) */
  const int64_t shapes[][4] = {{1, 37, 113, 113}, {2, 19, 57, 61}, {1, 64, 112, 112}, {3, 5, 8, 300}};
  const int64_t pads[][4] = {{0, 0, 0, 0}, {1, 1, 1, 1}, {0, 1, 1, 0}, {1, 0, 0, 2}};
  for (int si = 0; si < 4; si++)
    for (int pi = 0; pi < 4; pi++)
      for (int ceil = 0; ceil <= 1; ceil++) {
        tnode t;
        tn_init(&t, "MaxPool", 13, 1, 1);
        const int64_t k[2] = {3, 3}, s[2] = {2, 2};
        tn_ints(&t, "kernel_shape", 2, k);
        tn_ints(&t, "strides", 2, s);
        tn_ints(&t, "pads", 4, pads[pi]);
        tn_int(&t, "ceil_mode", ceil);
        keel_view x = view(KEEL_FLOAT32, 4, shapes[si]), y[1];
        same_at_all_threads("MaxPool 3x3/2", &t, &x, 1, 1, y);
        const int64_t planes = x.dims[0] * x.dims[1], H = x.dims[2], W = x.dims[3], OH = y[0].dims[2],
                      OW = y[0].dims[3];
        int bad = 0;
        for (int64_t p = 0; p < planes; p++)
          for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
              const float r = ref_max((const float *)x.data + p * H * W, H, W, oh, ow, 3, 2, (int)pads[pi][0],
                                      (int)pads[pi][1]);
              if (((const float *)y[0].data)[(p * OH + oh) * OW + ow] != r) bad++;
            }
        if (bad) fprintf(stderr, "MaxPool 3x3/2 shape %d pads %d ceil %d: %d wrong\n", si, pi, ceil, bad);
        CHECK(bad == 0);
        free(x.data);
        free_views(y, 1);
      }
}

TEST(pools_other) {
  const int64_t xs[4] = {2, 23, 67, 145};
  keel_view x = view(KEEL_FLOAT32, 4, xs), y[2];
  tnode t;
  /* MaxPool 3x3/1 pad 1 (the generic row kernel), with Indices */
  tn_init(&t, "MaxPool", 12, 1, 2);
  const int64_t k3[2] = {3, 3}, s1[2] = {1, 1}, p1[4] = {1, 1, 1, 1}, k2[2] = {2, 2}, s2[2] = {2, 2};
  tn_ints(&t, "kernel_shape", 2, k3);
  tn_ints(&t, "strides", 2, s1);
  tn_ints(&t, "pads", 4, p1);
  same_at_all_threads("MaxPool with Indices", &t, &x, 1, 2, y);
  /* the last index points into the last plane */
  const int64_t *ix = y[1].data;
  const int64_t last = keel_view_numel(&y[1]) - 1;
  CHECK(ix[last] >= (x.dims[0] * x.dims[1] - 1) * 67 * 145 && ix[last] < keel_view_numel(&x));
  CHECK(((const float *)y[0].data)[last] == ((const float *)x.data)[ix[last]]);
  free_views(y, 2);
  /* AveragePool 3x3/2 count_include_pad, and 2x2/2 */
  tn_init(&t, "AveragePool", 19, 1, 1);
  tn_ints(&t, "kernel_shape", 2, k3);
  tn_ints(&t, "strides", 2, s2);
  tn_ints(&t, "pads", 4, p1);
  tn_int(&t, "count_include_pad", 1);
  same_at_all_threads("AveragePool", &t, &x, 1, 1, y);
  free_views(y, 1);
  tn_init(&t, "AveragePool", 19, 1, 1);
  tn_ints(&t, "kernel_shape", 2, k2);
  tn_ints(&t, "strides", 2, s2);
  same_at_all_threads("AveragePool 2x2", &t, &x, 1, 1, y);
  free_views(y, 1);
  /* LpPool */
  tn_init(&t, "LpPool", 18, 1, 1);
  tn_ints(&t, "kernel_shape", 2, k3);
  tn_int(&t, "p", 2);
  same_at_all_threads("LpPool", &t, &x, 1, 1, y);
  free_views(y, 1);
  /* Global pools */
  const char *g[3] = {"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"};
  for (int i = 0; i < 3; i++) {
    tn_init(&t, g[i], 2, 1, 1);
    same_at_all_threads(g[i], &t, &x, 1, 1, y);
    free_views(y, 1);
  }
  free(x.data);
  /* int8 MaxPool */
  keel_view xi = view(KEEL_INT8, 4, xs);
  tn_init(&t, "MaxPool", 12, 1, 1);
  tn_ints(&t, "kernel_shape", 2, k3);
  tn_ints(&t, "strides", 2, s2);
  same_at_all_threads("MaxPool int8", &t, &xi, 1, 1, y);
  free_views(y, 1);
  free(xi.data);
}

TEST(elementwise) {
  const int64_t big[4] = {1, 37, 41, 73}, chan[4] = {1, 37, 1, 1}, row[1] = {73}, b3[4] = {3, 37, 41, 73};
  tnode t;
  keel_view y[1];
  /* same shape, channel broadcast, row broadcast, batch > 1 with a broadcast of a leading-1 operand */
  const int64_t *bshapes[4] = {big, chan, row, big};
  const int bnd[4] = {4, 4, 1, 4};
  const char *ops[4] = {"Add", "Mul", "Sub", "Div"};
  for (int c = 0; c < 4; c++) {
    keel_view a = view(KEEL_FLOAT32, 4, c == 3 ? b3 : big), b = view(KEEL_FLOAT32, bnd[c], bshapes[c]);
    keel_view in[2] = {a, b};
    tn_init(&t, ops[c], 14, 2, 1);
    same_at_all_threads(ops[c], &t, in, 2, 1, y);
    /* spot check an element: y[last] = a[last] op b[broadcast] */
    const int64_t n = keel_view_numel(&y[0]);
    CHECK(n == keel_view_numel(&a));
    free_views(y, 1);
    /* the fused Add + Relu / Clip (the fusion pass sets act on Add) */
    if (c < 2) {
      tn_init(&t, "Add", 14, 2, 1);
      t.n.act = c == 0 ? KEEL_ACT_RELU : KEEL_ACT_CLIP;
      t.n.act_alpha = 0.0f, t.n.act_beta = 1.5f;
      same_at_all_threads("Add+act", &t, in, 2, 1, y);
      const float *py = y[0].data, *pa = a.data, *pb = b.data;
      const float v = pa[0] + pb[0];
      CHECK(py[0] == (c == 0 ? (v > 0 ? v : 0) : (v < 0 ? 0 : v > 1.5f ? 1.5f : v)));
      free_views(y, 1);
    }
    free(a.data);
    free(b.data);
  }
  /* comparisons (bool out) with broadcasting */
  keel_view a = view(KEEL_FLOAT32, 4, b3), b = view(KEEL_FLOAT32, 4, chan);
  keel_view in2[2] = {a, b};
  tn_init(&t, "Greater", 13, 2, 1);
  same_at_all_threads("Greater", &t, in2, 2, 1, y);
  free_views(y, 1);
  /* unary */
  const char *un[5] = {"Relu", "Sigmoid", "Tanh", "Exp", "Abs"};
  for (int i = 0; i < 5; i++) {
    tn_init(&t, un[i], 14, 1, 1);
    same_at_all_threads(un[i], &t, &a, 1, 1, y);
    free_views(y, 1);
  }
  /* Clip with tensor bounds (opset 13) and attribute bounds (opset 6) */
  float lo = -0.5f, hi = 0.75f;
  const int64_t none[1] = {0};
  keel_view l = {0}, h = {0};
  keel_view_set_shape(&l, KEEL_FLOAT32, none, 0);
  keel_view_set_shape(&h, KEEL_FLOAT32, none, 0);
  l.data = &lo, h.data = &hi;
  keel_view cin[3] = {a, l, h};
  tn_init(&t, "Clip", 13, 3, 1);
  same_at_all_threads("Clip", &t, cin, 3, 1, y);
  CHECK(((const float *)y[0].data)[5] >= lo && ((const float *)y[0].data)[5] <= hi);
  free_views(y, 1);
  tn_init(&t, "Clip", 6, 1, 1);
  keel_attr *at = &t.attrs[t.n.n_attrs++];
  at->name = (char *)"max";
  at->type = KEEL_ATTR_FLOAT;
  at->f = 0.25f;
  same_at_all_threads("Clip-6", &t, &a, 1, 1, y);
  free_views(y, 1);
  free(a.data);
  free(b.data);
}

TEST(concat) {
  const int64_t d1[4] = {3, 17, 29, 31}, d2[4] = {3, 5, 29, 31}, d3[4] = {3, 64, 29, 31};
  keel_view in[3] = {view(KEEL_FLOAT32, 4, d1), view(KEEL_FLOAT32, 4, d2), view(KEEL_FLOAT32, 4, d3)}, y[1];
  for (int axis = 1; axis <= 1; axis++) {
    tnode t;
    tn_init(&t, "Concat", 13, 3, 1);
    tn_int(&t, "axis", axis);
    same_at_all_threads("Concat", &t, in, 3, 1, y);
    /* element [2, 17 + 4, 28, 30] comes from input 1 */
    const float *py = y[0].data, *p1 = in[1].data;
    CHECK(py[((2 * 86 + 21) * 29 + 28) * 31 + 30] == p1[((2 * 5 + 4) * 29 + 28) * 31 + 30]);
    free_views(y, 1);
  }
  /* axis 0 on uint8 (byte sizes that are not multiples of the 64-byte split) */
  const int64_t e1[2] = {733, 517}, e2[2] = {201, 517};
  keel_view ib[2] = {view(KEEL_UINT8, 2, e1), view(KEEL_UINT8, 2, e2)};
  tnode t;
  tn_init(&t, "Concat", 13, 2, 1);
  tn_int(&t, "axis", 0);
  same_at_all_threads("Concat uint8", &t, ib, 2, 1, y);
  CHECK(!memcmp((const uint8_t *)y[0].data + 733 * 517, ib[1].data, 201 * 517));
  free_views(y, 1);
  free_views(ib, 2);
  free_views(in, 3);
}

TEST(batchnorm) {
  const int64_t xd[4] = {2, 29, 37, 83}, cd[1] = {29};
  keel_view in[5] = {view(KEEL_FLOAT32, 4, xd), view(KEEL_FLOAT32, 1, cd), view(KEEL_FLOAT32, 1, cd),
                     view(KEEL_FLOAT32, 1, cd), view(KEEL_FLOAT32, 1, cd)},
            y[1];
  float *var = in[4].data;
  for (int i = 0; i < 29; i++) var[i] = fabsf(var[i]) + 0.1f;
  tnode t;
  tn_init(&t, "BatchNormalization", 15, 5, 1);
  same_at_all_threads("BatchNormalization", &t, in, 5, 1, y);
  /* y = (x - mean) / sqrt(var + eps) * scale + bias, within float rounding */
  const float *x = in[0].data, *sc = in[1].data, *bi = in[2].data, *mu = in[3].data, *py = y[0].data;
  const int64_t off = ((1 * 29 + 28) * 37 + 36) * 83 + 82;
  const double r = (x[off] - mu[28]) / sqrt(var[28] + 1e-5) * sc[28] + bi[28];
  CHECK(fabs(py[off] - r) < 1e-4);
  free_views(y, 1);
  free_views(in, 5);
}

RUN_TESTS(maxpool_3x3s2, pools_other, elementwise, concat, batchnorm)
