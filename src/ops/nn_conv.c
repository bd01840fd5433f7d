/* Conv and ConvTranspose (float32, float64): im2col / col2im into the planned workspace + GEMM.
 * float32 Conv uses keel's GEMM (backend/cpu/gemm.h) with the weights as the A operand, packed once per
 * group at engine build (nn_conv_prepare), and bias + activation in its epilogue: Y[M, HW] = W[M, C k k] x
 * cols[C k k, HW]. Small output maps (7x7, and 14x14 with k x k kernels at batch 1) swap the roles,
 * Y^T = cols^T x W^T with the batch folded into the rows (W^T packed as B), and transpose the result
 * (conv_swap_decide). 1x1 stride-1 unpadded convolutions multiply straight from the input; 2-D depthwise
 * convolutions go to keel_conv_dw_f32 (ops/nn_conv_dw.h). float64 and ConvTranspose use OpenBLAS; their
 * fused activation (node->act) is applied to the output at the end. */
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "backend/cpu/gemm.h"
#include "backend/cpu/threadpool.h"
#include "ops/act.h"
#include "ops/nn_conv_direct.h"
#include "ops/nn_conv_dw.h"
#include "ops/nn_internal.h"

typedef struct nn_conv_geom {
  int64_t N, C, M, group, Cg, Mg, kprod;
  int64_t in_prod;  /* Conv: input spatial size; ConvTranspose: output spatial size (w3.in) */
  int64_t out_prod; /* Conv: output spatial size; ConvTranspose: input spatial size (w3.out) */
  nn_window w3;     /* padded to 3 spatial dims */
  bool pointwise;   /* kernel 1, stride 1, no padding: the GEMM reads / writes the tensor directly */
  int64_t chunk_rows; /* Conv: output rows (od, oh) per im2col block */
  int ndim;
  int64_t out_dims[KEEL_MAX_DIMS];
} nn_conv_geom;

#define NN_T float
#define NN_SUF f32
#define NN_GEMM cblas_sgemm
#include "ops/nn_conv_tmpl.h"
#undef NN_T
#undef NN_SUF
#undef NN_GEMM
#define NN_T double
#define NN_SUF f64
#define NN_GEMM cblas_dgemm
#include "ops/nn_conv_tmpl.h"
#undef NN_T
#undef NN_SUF
#undef NN_GEMM

static bool is_q8(keel_dtype t) { return t == KEEL_UINT8 || t == KEEL_INT8; }

/* integer: ConvInteger (8-bit X and W, zero points as inputs 2 and 3). */
static keel_status *check_common(const keel_node *n, const keel_view *in, int n_in, bool integer) {
  KEEL_TRY(nn_need_inputs(n, n_in, 2, integer ? 4 : 3));
  const keel_view *x = &in[0], *w = &in[1];
  if (!nn_has(in, n_in, 0) || !nn_has(in, n_in, 1))
    return keel_error(KEEL_INVALID_MODEL, "inputs X and W are required");
  if (integer) {
    if (!is_q8(x->dtype) || !is_q8(w->dtype))
      return keel_error(KEEL_UNSUPPORTED, "inputs X and W have dtypes %s and %s; uint8 / int8 are supported",
                        keel_dtype_name(x->dtype), keel_dtype_name(w->dtype));
  } else if (x->dtype != KEEL_FLOAT32 && x->dtype != KEEL_FLOAT64) {
    return keel_error(KEEL_UNSUPPORTED, "input X has dtype %s; float32, float64, float16 and bfloat16 are"
                                          " supported",
                      keel_dtype_name(x->dtype));
  } else if (w->dtype != x->dtype) {
    return keel_error(KEEL_SHAPE_MISMATCH, "weight W has dtype %s but X has %s", keel_dtype_name(w->dtype),
                      keel_dtype_name(x->dtype));
  }
  if (x->ndim < 3 || x->ndim > 2 + NN_MAX_SP)
    return keel_error(KEEL_SHAPE_MISMATCH, "input X has rank %d; expected 3 to %d (N, C, 1 to %d spatial dims)",
                      x->ndim, 2 + NN_MAX_SP, NN_MAX_SP);
  if (w->ndim != x->ndim)
    return keel_error(KEEL_SHAPE_MISMATCH, "weight W has rank %d but X has rank %d", w->ndim, x->ndim);
  for (int i = 0; i < w->ndim; i++)
    if (w->dims[i] < 0) return keel_error(KEEL_UNSUPPORTED, "weight W has an unknown dim %d", i);
  if (w->dims[0] < 1 || w->dims[1] < 1)
    return keel_error(KEEL_SHAPE_MISMATCH, "weight W has an empty channel dim (%lld x %lld)",
                      (long long)w->dims[0], (long long)w->dims[1]);
  const int nsp = x->ndim - 2;
  const int64_t *ks = NULL;
  int nk = keel_attr_ints(n, "kernel_shape", &ks);
  if (nk >= 0 && ks) {
    if (nk != nsp)
      return keel_error(KEEL_INVALID_MODEL, "kernel_shape has %d values, expected %d", nk, nsp);
    for (int i = 0; i < nsp; i++)
      if (ks[i] != w->dims[2 + i])
        return keel_error(KEEL_SHAPE_MISMATCH, "kernel_shape[%d] = %lld does not match W's dim %lld", i,
                          (long long)ks[i], (long long)w->dims[2 + i]);
  }
  return NULL;
}

static keel_status *check_bias(const keel_view *in, int n_in, int64_t M) {
  if (!nn_has(in, n_in, 2)) return NULL;
  const keel_view *b = &in[2];
  if (b->dtype != in[0].dtype)
    return keel_error(KEEL_SHAPE_MISMATCH, "bias B has dtype %s but X has %s", keel_dtype_name(b->dtype),
                      keel_dtype_name(in[0].dtype));
  if (b->ndim != 1 || (b->dims[0] >= 0 && b->dims[0] != M))
    return keel_error(KEEL_SHAPE_MISMATCH, "bias B must be 1-D of length %lld (output channels)", (long long)M);
  return NULL;
}

/* GEMM dimensions go to cblas as int. */
static keel_status *check_int_range(const nn_conv_geom *g, int64_t rows, int64_t cols, int64_t inner) {
  if (rows > INT_MAX || cols > INT_MAX || inner > INT_MAX || g->in_prod > INT_MAX || g->out_prod > INT_MAX)
    return keel_error(KEEL_UNSUPPORTED, "matrix dimensions exceed the BLAS int range");
  return NULL;
}

/* Bytes of im2col buffer per block. With OpenBLAS, one big GEMM beat cache-sized blocks (256 KiB: 10-20%
 * slower on 3x3 / 7x7 layers; 1 MiB: ~3%), so blocks only cap the workspace of very large layers. */
#ifndef NN_IM2COL_BLOCK_BYTES
#define NN_IM2COL_BLOCK_BYTES (8 * 1024 * 1024)
#endif

/* Output rows per im2col block: enough for the budget, at least one row, and at least ~64 columns so the
 * GEMMs stay wide. */
static void conv_chunk(nn_conv_geom *g, keel_dtype dt) {
  const int64_t OW = g->w3.out[2], rows = g->w3.out[0] * g->w3.out[1];
  g->chunk_rows = rows > 0 ? rows : 1;
  if (OW <= 0 || rows <= 0) return;
  int64_t row_bytes = g->Cg * g->kprod * OW * (int64_t)keel_dtype_size(dt);
  int64_t r = row_bytes > 0 ? NN_IM2COL_BLOCK_BYTES / row_bytes : rows;
  int64_t min_r = (64 + OW - 1) / OW;
  if (r < min_r) r = min_r;
  if (r < 1) r = 1;
  if (r > rows) r = rows;
  g->chunk_rows = r;
}

static keel_status *conv_geom(const keel_node *n, const keel_view *in, int n_in, nn_conv_geom *g, bool integer) {
  KEEL_TRY(check_common(n, in, n_in, integer));
  const keel_view *x = &in[0], *w = &in[1];
  const int nsp = x->ndim - 2;
  memset(g, 0, sizeof *g);
  g->group = keel_attr_int(n, "group", 1);
  if (g->group < 1) return keel_error(KEEL_INVALID_MODEL, "group = %lld", (long long)g->group);
  g->M = w->dims[0];
  g->Cg = w->dims[1];
  if (g->M % g->group)
    return keel_error(KEEL_INVALID_MODEL, "W has %lld output channels, not divisible by group %lld",
                      (long long)g->M, (long long)g->group);
  g->Mg = g->M / g->group;
  if (!keel_mul_i64(g->Cg, g->group, &g->C)) return keel_error(KEEL_INVALID_MODEL, "channel count overflows");
  if (x->dims[1] >= 0 && x->dims[1] != g->C)
    return keel_error(KEEL_SHAPE_MISMATCH, "X has %lld channels but W expects %lld (W dim 1 = %lld x group %lld)",
                      (long long)x->dims[1], (long long)g->C, (long long)g->Cg, (long long)g->group);
  if (!integer) KEEL_TRY(check_bias(in, n_in, g->M));
  nn_window win;
  KEEL_TRY(nn_window_init(n, nsp, x->dims + 2, w->dims + 2, false, &win));
  nn_window_pad3(&win, &g->w3);
  g->N = x->dims[0];
  g->ndim = x->ndim;
  g->out_dims[0] = g->N;
  g->out_dims[1] = g->M;
  g->kprod = nn_prod(w->dims, 2, w->ndim);
  g->in_prod = 1;
  g->out_prod = 1;
  g->pointwise = g->kprod == 1;
  for (int i = 0; i < nsp; i++) {
    g->out_dims[2 + i] = win.out[i];
    g->in_prod = (g->in_prod < 0 || win.in[i] < 0) ? -1 : g->in_prod * win.in[i];
    g->out_prod = (g->out_prod < 0 || win.out[i] < 0) ? -1 : g->out_prod * win.out[i];
    if (win.s[i] != 1 || win.pb[i] || win.pe[i]) g->pointwise = false;
  }
  KEEL_TRY(nn_check_numel(n, g->out_dims, g->ndim, keel_dtype_size(x->dtype)));
  conv_chunk(g, x->dtype);
  return NULL;
}

keel_status *nn_conv_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  nn_conv_geom g;
  KEEL_TRY(conv_geom(n, in, n_in, &g, false));
  if (n_out < 1) return keel_error(KEEL_INVALID_MODEL, "has no output");
  keel_view_set_shape(&out[0], in[0].dtype, g.out_dims, g.ndim);
  return NULL;
}

/* Implicit im2col when the convolution is (at most) 2-D. */
static bool conv_implicit(const nn_conv_geom *g) { return g->w3.k[0] == 1 && g->w3.out[0] == 1 && g->w3.in[0] == 1; }

/* 2-D float32 depthwise: keel_conv_dw_f32. */
static bool conv_is_dw2d(const nn_conv_geom *g, keel_dtype dt) {
  return dt == KEEL_FLOAT32 && g->Cg == 1 && g->group == g->C && g->M == g->C && g->ndim == 4 && !g->pointwise;
}

/* The direct kernel's parameters (ops/nn_conv_direct.h): false when the convolution is not of a form it
 * may cover (group 1, 1-D / 2-D, k x k; the kernel checks strides and widths). */
static bool conv_direct_params(const nn_conv_geom *g, keel_conv_direct_params *p) {
  const nn_window *v = &g->w3;
  if (g->group != 1 || g->pointwise || g->out_prod <= 0 || !conv_implicit(g) || v->k[1] > 64 || v->k[2] > 64 ||
      v->d[1] > 1 << 20 || v->d[2] > 1 << 20 || v->s[1] > 1 << 20 || v->s[2] > 1 << 20 || v->pb[1] > 1 << 20 ||
      v->pb[2] > 1 << 20)
    return false;
  *p = (keel_conv_direct_params){.N = g->N, .C = g->C, .H = v->in[1], .W = v->in[2], .M = g->M, .OH = v->out[1],
                                 .OW = v->out[2], .kh = (int)v->k[1], .kw = (int)v->k[2], .dh = (int)v->d[1],
                                 .dw = (int)v->d[2], .sh = (int)v->s[1], .sw = (int)v->s[2],
                                 .pad_top = (int)v->pb[1], .pad_left = (int)v->pb[2]};
  return true;
}

/* Swapped orientation: Y^T[N*OH*OW, M] = cols^T x W^T into a scratch tile, then transposed into Y. With
 * few output positions (7x7 maps: 49 columns of 32-wide tiles waste 23% of the vector lanes) the channel
 * count becomes the long, lane-filling dimension, the positions fill the kernel's rows (14 at a time) and
 * the images of a batch share one GEMM (the weights stream once per batch, not once per image). The extra
 * pass over Y costs about 32 / K of the GEMM. Measured on ResNet-50 (AVX-512, Zen 5): a clear win for 7x7
 * maps at batch 1 and 8 and for 3x3 kernels on 14x14 maps at batch 1; slower for 1x1 kernels on 14x14 maps
 * at batch 8 (the normal orientation reads X in place there) and even for 3x3 on 14x14 at batch 8. Hence:
 * swap when the lane gain is real and either lanes are badly wasted (< 80% used) or, for k x k kernels at
 * batch 1, moderately. Unless the direct kernel takes it instead (direct: keel_conv_direct_over_swapped). */
static bool conv_swap_decide(int64_t N, int64_t P, int64_t M, int64_t K, int64_t kprod, bool direct) {
  if (N < 1 || P < 1 || M < 1 || K < 1 || direct) return false;
  const keel_gemm_isa isa = keel_gemm_get_isa();
  const int64_t MR = isa == KEEL_GEMM_AVX512 ? 14 : isa == KEEL_GEMM_AVX2 ? 6 : 4;
  const int64_t NR = isa == KEEL_GEMM_AVX512 ? 32 : 16;
  const double rows = (double)N * (double)P;
  const double en = (double)P / (double)((P + NR - 1) / NR * NR);
  const double er = rows / (double)((N * P + MR - 1) / MR * MR);
  const double ec = (double)M / (double)((M + NR / 2 - 1) / (NR / 2) * (NR / 2)); /* half-width edge variants */
  const double gain = er * ec / (1.0 + 32.0 / (double)K) / en;
  return gain > 1.05 && (en < 0.8 || (kprod > 1 && N == 1));
}

static void conv_prep_free(void *p);

/* n: the node, whose prepared weights the direct kernel needs (without them it does not run). */
static bool conv_swapped(const keel_node *n, const nn_conv_geom *g, keel_dtype dt) {
  if (dt != KEEL_FLOAT32 || g->group != 1 || g->out_prod <= 0 || conv_is_dw2d(g, dt) || !conv_implicit(g))
    return false;
  keel_conv_direct_params p;
  const bool direct = n->prepared && n->prepared_free == conv_prep_free && conv_direct_params(g, &p) &&
                      keel_conv_direct_over_swapped(&p);
  return conv_swap_decide(g->N, g->out_prod, g->M, g->Cg * g->kprod, g->kprod, direct);
}

static size_t conv_swap_tile_bytes(const nn_conv_geom *g) {
  return ((size_t)g->N * (size_t)g->out_prod * (size_t)g->M * sizeof(float) + 63) & ~(size_t)63;
}

/* im2col bytes (64-byte aligned) then, for float32, the GEMM's scratch. */
static size_t conv_ws_bytes(const keel_node *n, const nn_conv_geom *g, keel_dtype dt) {
  if (g->out_prod < 0 || conv_is_dw2d(g, dt)) return 0;
  size_t bytes = 0;
  if (conv_swapped(n, g, dt)) {
    int64_t e;
    if (!keel_mul_i64(g->N, g->out_prod, &e) || !keel_mul_i64(e, g->M, &e)) return SIZE_MAX;
    return 64 + conv_swap_tile_bytes(g) + keel_gemm_workspace(g->N * g->out_prod, g->M, g->Cg * g->kprod, false, false);
  }
  if (dt == KEEL_FLOAT32 && !g->pointwise && conv_implicit(g))
    return keel_gemm_workspace(g->Mg, g->out_prod, g->Cg * g->kprod, false, false);
  if (!g->pointwise && g->Cg > 1) {
    int64_t e;
    if (!keel_mul_i64(g->Cg, g->kprod, &e) || !keel_mul_i64(e, g->chunk_rows * g->w3.out[2], &e) ||
        !keel_shape_nbytes(e, keel_dtype_size(dt), &bytes))
      return SIZE_MAX;
    bytes = (bytes + 63) & ~(size_t)63;
  }
  if (dt == KEEL_FLOAT32 && !(g->Cg == 1 && !g->pointwise)) {
    int64_t cols = g->pointwise ? g->out_prod : g->chunk_rows * g->w3.out[2];
    bytes += keel_gemm_workspace(g->Mg, cols, g->Cg * g->kprod, false, false);
  }
  return bytes;
}

/* ---- float32 through keel's GEMM ---- */

/* Weights packed per group as GEMM A operands (rows: the group's output channels, K: Cg * kernel). */
typedef struct conv_prep {
  const void *src; /* W's data: used only while the call's W is this constant */
  int64_t M, K, group;
  /* W^T as the B operand (swapped orientation, group 1), or NULL: packed by prepare when the graph declares
   * the output shape, else by the first workspace query (planning) that finds the swapped orientation. */
  _Atomic(keel_gemm_packed *) pb;
  /* W as A for the direct kernel when prepare packed only pb (it could not tell the input's shape) and
   * planning then found the direct path: packed by that workspace query. */
  _Atomic(keel_gemm_packed *) pa_late;
  keel_gemm_packed *pa[]; /* per group; NULL when only pb was packed */
} conv_prep;

static void conv_prep_free(void *p) {
  conv_prep *c = p;
  for (int64_t i = 0; i < c->group; i++) keel_gemm_packed_free(c->pa[i]);
  keel_gemm_packed_free(atomic_load(&c->pb));
  keel_gemm_packed_free(atomic_load(&c->pa_late));
  free(c);
}

/* The swapped orientation for this node at the shapes the graph declares (all known), for packing. */
static bool conv_prep_swapped(const keel_node *n, const keel_graph *g, int64_t group, int64_t M, int64_t K) {
  if (group != 1 || n->n_outputs < 1 || n->outputs[0] < 0) return false;
  const keel_tensor *wt = g->values[n->inputs[1]].constant;
  /* The input's shape known: the run's own decision (which also knows whether the direct kernel applies). */
  const keel_value *xv = n->inputs[0] >= 0 ? &g->values[n->inputs[0]] : NULL;
  if (xv && xv->ndim == keel_tensor_ndim(wt) && xv->ndim >= 3 && xv->ndim <= 4) {
    keel_view in[2] = {{.dtype = KEEL_FLOAT32, .ndim = xv->ndim}, {.dtype = KEEL_FLOAT32, .ndim = xv->ndim}};
    bool known = true;
    for (int i = 0; i < xv->ndim; i++) {
      in[0].dims[i] = xv->dims[i];
      in[1].dims[i] = keel_tensor_dims(wt)[i];
      known = known && xv->dims[i] >= 1;
    }
    nn_conv_geom geo;
    keel_status *s = known ? conv_geom(n, in, 2, &geo, false) : NULL;
    if (known && !s) return conv_swapped(n, &geo, KEEL_FLOAT32);
    keel_status_free(s);
    if (known) return false;
  }
  const keel_value *v = &g->values[n->outputs[0]];
  if (v->ndim < 3 || v->ndim > 4) return false; /* 1-D / 2-D only */
  int64_t P = 1;
  for (int i = 0; i < v->ndim; i++)
    if (v->dims[i] < 1) return false;
  for (int i = 2; i < v->ndim; i++) P *= v->dims[i];
  const int64_t kprod = K / keel_tensor_dims(wt)[1];
  return v->dims[1] == M && conv_swap_decide(v->dims[0], P, M, K, kprod, false);
}

keel_status *nn_conv_prepare(keel_node *n, const keel_graph *g); /* called by keel_nn_prepare (nn_gemm.c) */
keel_status *nn_conv_prepare(keel_node *n, const keel_graph *g) {
  if (n->n_inputs < 2 || n->inputs[1] < 0) return NULL;
  const keel_tensor *w = g->values[n->inputs[1]].constant;
  if (!w || keel_tensor_dtype(w) != KEEL_FLOAT32 || keel_tensor_ndim(w) < 3) return NULL;
  const int64_t *d = keel_tensor_dims(w);
  const int64_t group = keel_attr_int(n, "group", 1), M = d[0];
  if (group < 1 || M % group || group > 1 << 20) return NULL;
  const int64_t K = keel_tensor_numel(w) / (M > 0 ? M : 1), Mg = M / group;
  if (K < 1 || Mg < 1 || (d[1] == 1 && group == M)) return NULL; /* depthwise: no GEMM */
  conv_prep *c = calloc(1, sizeof *c + sizeof(keel_gemm_packed *) * (size_t)group);
  if (!c) return NULL;
  c->src = keel_tensor_data_const(w);
  c->M = M;
  c->K = K;
  c->group = group;
  n->prepared = c;
  n->prepared_free = conv_prep_free;
  if (conv_prep_swapped(n, g, group, M, K)) {
    keel_gemm_packed *pb = keel_gemm_pack_b(c->src, K, M, 1, K); /* W^T(k, m) = W[m, k] */
    atomic_store(&c->pb, pb);
    if (!pb) {
      n->prepared = NULL;
      conv_prep_free(c);
    }
    return NULL;
  }
  for (int64_t i = 0; i < group; i++) {
    c->pa[i] = keel_gemm_pack_a((const float *)c->src + i * Mg * K, Mg, K, K, 1);
    if (!c->pa[i]) {
      n->prepared = NULL;
      conv_prep_free(c);
      return NULL;
    }
  }
  return NULL;
}

/* Implicit im2col: operand (k, j) of the convolution GEMM read straight from the input into the GEMM's
 * panels, for one group of a 1-D / 2-D convolution (k = (c, kh, kw), j = (image, oh, ow)). Skips the column
 * buffer and its second pass. The panel layout (k-major, nr positions per k) is the same whether the
 * positions are B's columns (Y = W x cols) or A's rows (swapped: Y^T = cols^T x W^T). */
typedef struct conv_src {
  const float *x;     /* image 0's first input channel of the group */
  int64_t img_stride; /* floats from one image to the next */
  int64_t P;          /* positions per image: OH * OW */
  const nn_window *w;
  int64_t N; /* positions in all: images * P */
} conv_src;

/* Copy `run` input columns starting at iw0 with stride sw from row (IW wide) into d, zeros outside [0, IW).
 * Runs are at most a panel (32) long: whole 16-float blocks are constant-size copies (inline moves, where a
 * loop would become a memcpy call), and stride 1 needs no division. */
static inline void conv_copy_run(float *restrict d, const float *restrict row, int64_t iw0, int64_t sw, int64_t run,
                                 int64_t IW) {
  int64_t lo, hi; /* valid r: 0 <= iw0 + r*sw < IW */
  if (sw == 1) {
    lo = iw0 >= 0 ? 0 : -iw0;
    hi = IW - iw0;
  } else {
    lo = iw0 >= 0 ? 0 : (-iw0 + sw - 1) / sw;
    hi = iw0 >= IW ? 0 : (IW - 1 - iw0) / sw + 1;
  }
  if (hi > run) hi = run;
  if (hi < 0) hi = 0;
  if (lo > hi) lo = hi;
  for (int64_t r = 0; r < lo; r++) d[r] = 0.0f;
  int64_t r = lo;
  if (sw == 1) {
    const float *src = row + iw0;
    for (; r + 16 <= hi; r += 16) memcpy(d + r, src + r, 16 * sizeof(float));
    for (; r < hi; r++) d[r] = src[r];
  } else {
    for (; r < hi; r++) d[r] = row[iw0 + r * sw];
  }
  for (r = hi; r < run; r++) d[r] = 0.0f;
}

/* The packing loop, with COPY(dst, row, iw0, sw, run, IW) copying one run (a macro so the AVX-512 copy can
 * be inlined into an AVX-512 instance while the portable instance stays portable). */
#define CONV_PACK_BODY(COPY)                                                                                    \
  const conv_src *cs = ctx;                                                                                     \
  const nn_window *w = cs->w;                                                                                   \
  const int64_t IH = w->in[1], IW = w->in[2], OW = w->out[2], KH = w->k[1], KW = w->k[2];                       \
  const int64_t sh = w->s[1], sw = w->s[2], dh = w->d[1], dw = w->d[2], ph = w->pb[1], pw = w->pb[2];          \
  const int64_t panels = (nj + nr - 1) / nr;                                                                    \
  for (int64_t p = 0; p < panels; p++) {                                                                        \
    /* The panel's columns as runs along output rows: (offset in panel, length, oh, ow, image); at most nr     \
     * (<= 32) runs, one per output row when OW is 1. */                                                        \
    enum { MAX_SEG = 32 };                                                                                      \
    int64_t seg_t[MAX_SEG], seg_n[MAX_SEG], seg_oh[MAX_SEG], seg_ow[MAX_SEG];                                   \
    const float *seg_x[MAX_SEG];                                                                                \
    int nseg = 0;                                                                                               \
    const int64_t jb = j0 + p * nr, je = jb + nr < cs->N ? jb + nr : cs->N;                                     \
    const int64_t valid = je > jb ? je - jb : 0;                                                                \
    for (int64_t j = jb; j < je && nseg < MAX_SEG;) {                                                           \
      const int64_t img = j / cs->P, q = j - img * cs->P, oh = q / OW, ow = q - oh * OW;                        \
      const int64_t run = OW - ow < je - j ? OW - ow : je - j;                                                  \
      seg_t[nseg] = j - jb, seg_n[nseg] = run, seg_oh[nseg] = oh, seg_ow[nseg] = ow;                            \
      seg_x[nseg] = cs->x + img * cs->img_stride;                                                               \
      nseg++;                                                                                                   \
      j += run;                                                                                                 \
    }                                                                                                           \
    float *restrict d = dst + p * kc * nr;                                                                      \
    int64_t c = k0 / (KH * KW), kh = k0 / KW % KH, kw = k0 % KW;                                                \
    for (int64_t k = 0; k < kc; k++, d += nr) {                                                                 \
      const int64_t coff = c * IH * IW;                                                                         \
      const int64_t hoff = kh * dh - ph, woff = kw * dw - pw;                                                   \
      for (int sgi = 0; sgi < nseg; sgi++) {                                                                    \
        const int64_t ih = seg_oh[sgi] * sh + hoff;                                                             \
        float *ds = d + seg_t[sgi];                                                                             \
        if (ih < 0 || ih >= IH)                                                                                 \
          for (int64_t r = 0; r < seg_n[sgi]; r++) ds[r] = 0.0f;                                                \
        else                                                                                                    \
          COPY(ds, seg_x[sgi] + coff + ih * IW, seg_ow[sgi] * sw + woff, sw, seg_n[sgi], IW);                   \
      }                                                                                                         \
      for (int64_t t = valid; t < nr; t++) d[t] = 0.0f;                                                         \
      if (++kw == KW) {                                                                                         \
        kw = 0;                                                                                                 \
        if (++kh == KH) kh = 0, c++;                                                                            \
      }                                                                                                         \
    }                                                                                                           \
  }

static void conv_pack_b_c(const void *ctx, float *dst, int64_t k0, int64_t kc, int64_t j0, int64_t nj, int nr) {
  CONV_PACK_BODY(conv_copy_run)
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define CONV_HAVE_512 1
/* conv_copy_run for stride 1 or 2 with masked AVX-512 moves: the mask keeps loads inside [0, IW) (masked-off
 * lanes are not read) and zero-fills the padding in the same store; stride 2 loads 32 floats and keeps the
 * even ones. run <= 32. The source address is formed as an integer: it may lie outside the row. */
__attribute__((target("avx512f"), always_inline)) static inline void conv_copy_run_512(float *d, const float *row,
                                                                                       int64_t iw0, int64_t sw,
                                                                                       int64_t run, int64_t IW) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  for (int64_t v = 0; v < run; v += 16) {
    const int64_t n = run - v < 16 ? run - v : 16;
    const __mmask16 sm = (__mmask16)((1u << n) - 1);
    const int64_t s0 = iw0 + v * sw; /* source column of lane 0 */
    const int64_t L = sw == 1 ? 16 : 32;
    int64_t lo = -s0, hi = IW - s0; /* valid source lanes [lo, hi) of L */
    if (lo < 0) lo = 0;
    if (hi > L) hi = L;
    const uint32_t lm = hi > lo ? (uint32_t)(((uint64_t)1 << hi) - ((uint64_t)1 << lo)) : 0u;
    const float *src = (const float *)((uintptr_t)row + (uintptr_t)(s0 * (int64_t)sizeof(float)));
    __m512 x;
    if (sw == 1) {
      x = _mm512_maskz_loadu_ps((__mmask16)(lm & sm), src);
    } else {
      const __m512 a = _mm512_maskz_loadu_ps((__mmask16)lm, src);
      const __m512 b = _mm512_maskz_loadu_ps((__mmask16)(lm >> 16), src + 16);
      x = _mm512_permutex2var_ps(a, even, b);
    }
    _mm512_mask_storeu_ps(d + v, sm, x);
  }
}

__attribute__((target("avx512f"))) static void conv_pack_b_512(const void *ctx, float *dst, int64_t k0, int64_t kc,
                                                               int64_t j0, int64_t nj, int nr) {
  CONV_PACK_BODY(conv_copy_run_512)
}
#endif

/* Stride-1 / stride-2 packing with the per-run work hoisted out of the k loop: each run's load masks and
 * source offset depend only on kw, so they are computed once per panel; per k and run what is left is a row
 * check, masked loads (zeros where the kernel hangs over the edge; stride 2 loads 32 floats per 16 and
 * keeps the even ones) and stores. Returns false (nothing written) for shapes it does not cover (KW > 16
 * or a panel of more than 8 runs). */
__attribute__((target("avx512f"))) static bool conv_pack_fast_512(const conv_src *cs, float *dst, int64_t k0,
                                                                   int64_t kc, int64_t j0, int64_t nj, int nr) {
  enum { MAXKW = 16, MAXSEG = 8 };
  const nn_window *w = cs->w;
  const int64_t IH = w->in[1], IW = w->in[2], OW = w->out[2], KH = w->k[1], KW = w->k[2];
  const int64_t sh = w->s[1], sw = w->s[2], dh = w->d[1], dw = w->d[2], ph = w->pb[1], pw = w->pb[2];
  if (KW > MAXKW || nr > 32 || (sw != 1 && sw != 2)) return false;
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const int64_t panels = (nj + nr - 1) / nr;
  for (int64_t p = 0; p < panels; p++) {
    int64_t seg_t[MAXSEG], seg_n[MAXSEG], seg_oh[MAXSEG], seg_ow[MAXSEG];
    const float *seg_x[MAXSEG];
    int nseg = 0;
    const int64_t jb = j0 + p * nr, je = jb + nr < cs->N ? jb + nr : cs->N;
    for (int64_t j = jb; j < je; nseg++) {
      if (nseg == MAXSEG) {
        if (p == 0) return false;
        conv_pack_b_c(cs, dst + p * kc * nr, k0, kc, jb, nj - p * nr, nr); /* the remaining panels */
        return true;
      }
      const int64_t img = j / cs->P, q = j - img * cs->P, oh = q / OW, ow = q - oh * OW;
      const int64_t run = OW - ow < je - j ? OW - ow : je - j;
      seg_t[nseg] = j - jb, seg_n[nseg] = run, seg_oh[nseg] = oh, seg_ow[nseg] = ow;
      seg_x[nseg] = cs->x + img * cs->img_stride;
      j += run;
    }
    const int64_t filled = je > jb ? je - jb : 0;
    /* Where the next panel starts reading: its first run's source, fetched one k ahead of its packing. Per k
     * the source moves to another channel / kernel row (a new stream the hardware prefetcher has not
     * seen), which left large layers at batch 8 waiting on memory. */
    const float *nx[2] = {NULL, NULL};
    int64_t n_oh[2] = {0, 0}, n_so[2] = {0, 0};
    for (int t = 0, jn = 0; t < 2; t++) { /* the next panel's first two runs */
      const int64_t j = je + (t ? jn : 0);
      if (j >= cs->N || (t && j >= je + nr)) break;
      const int64_t img = j / cs->P, q = j - img * cs->P, oh = q / OW, ow = q - oh * OW;
      n_oh[t] = oh;
      n_so[t] = ow * sw - pw;
      nx[t] = cs->x + img * cs->img_stride;
      jn = (int)(OW - ow);
    }
    /* lm[kw][seg][h]: load mask of source half h (16 floats): stride 1 has one half per output vector v
     * (h = v), stride 2 two (h = 2v, 2v + 1). */
    __mmask16 lm[MAXKW][MAXSEG][4], sm[MAXSEG][2];
    int64_t so[MAXKW][MAXSEG];
    for (int sg = 0; sg < nseg; sg++) {
      for (int v = 0; v < 2; v++) {
        const int64_t n = seg_n[sg] - 16 * v;
        sm[sg][v] = n <= 0 ? 0 : n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
      }
      for (int64_t kw = 0; kw < KW; kw++) {
        const int64_t s0 = seg_ow[sg] * sw + kw * dw - pw;
        so[kw][sg] = s0;
        for (int h = 0; h < 4; h++) {
          /* source lanes [16h, 16h + 16) of the run's window: valid inside the row and the run */
          const int64_t base = s0 + 16 * h, need = seg_n[sg] * sw - 16 * h;
          int64_t lo = -base, hi = IW - base;
          if (lo < 0) lo = 0;
          if (hi > 16) hi = 16;
          if (hi > need) hi = need;
          lm[kw][sg][h] = hi > lo ? (__mmask16)((1u << hi) - (1u << lo)) : 0;
        }
      }
    }
    const __mmask16 full0 = (__mmask16)(nr >= 16 ? 0xFFFF : (1u << nr) - 1);
    const __mmask16 full1 = (__mmask16)(nr >= 32 ? 0xFFFF : nr > 16 ? (1u << (nr - 16)) - 1 : 0);
    const __mmask16 tail0 = (__mmask16)(filled >= 16 ? 0 : (0xFFFFu << filled)) & full0;
    const __mmask16 tail1 = (__mmask16)(0xFFFFu << (filled > 16 ? filled - 16 : 0)) & full1;
    const __m512 z = _mm512_setzero_ps();
    float *restrict d = dst + p * kc * nr;
    int64_t c = k0 / (KH * KW), kh = k0 / KW % KH, kw = k0 % KW;
    for (int64_t k = 0; k < kc; k++, d += nr) {
      const int64_t coff = c * IH * IW, hoff = kh * dh - ph;
      for (int t = 0; t < 2 && nx[t]; t++) {
        const int64_t ih = n_oh[t] * sh + hoff;
        if (ih >= 0 && ih < IH) {
          const float *q = nx[t] + coff + ih * IW + (n_so[t] + kw * dw > 0 ? n_so[t] + kw * dw : 0);
          _mm_prefetch((const char *)q, _MM_HINT_T0);
          _mm_prefetch((const char *)(q + 16), _MM_HINT_T0);
          if (sw > 1) _mm_prefetch((const char *)(q + 32), _MM_HINT_T0);
        }
      }
      for (int sg = 0; sg < nseg; sg++) {
        const int64_t ih = seg_oh[sg] * sh + hoff;
        const bool ok = ih >= 0 && ih < IH;
        /* formed as an integer: the window may start before the row (those lanes are masked off) */
        const float *src = (const float *)((uintptr_t)(seg_x[sg] + coff) +
                                           (uintptr_t)((ih * IW + so[kw][sg]) * (int64_t)sizeof(float)));
        const __mmask16 *m = lm[kw][sg];
        float *ds = d + seg_t[sg];
        if (sw == 1) {
          _mm512_mask_storeu_ps(ds, sm[sg][0], _mm512_maskz_loadu_ps(ok ? m[0] : 0, src));
          if (sm[sg][1]) _mm512_mask_storeu_ps(ds + 16, sm[sg][1], _mm512_maskz_loadu_ps(ok ? m[1] : 0, src + 16));
        } else {
          for (int v = 0; v < 2 && sm[sg][v]; v++) {
            const __m512 a = _mm512_maskz_loadu_ps(ok ? m[2 * v] : 0, src + 32 * v);
            const __m512 b = _mm512_maskz_loadu_ps(ok ? m[2 * v + 1] : 0, src + 32 * v + 16);
            _mm512_mask_storeu_ps(ds + 16 * v, sm[sg][v], _mm512_permutex2var_ps(a, even, b));
          }
        }
      }
      if (tail0) _mm512_mask_storeu_ps(d, tail0, z);
      if (tail1) _mm512_mask_storeu_ps(d + 16, tail1, z);
      if (++kw == KW) {
        kw = 0;
        if (++kh == KH) kh = 0, c++;
      }
    }
  }
  return true;
}

/* Implicit-im2col panels (keel_gemm_pack_fn) for either operand. */
static void conv_pack_b(const void *ctx, float *dst, int64_t k0, int64_t kc, int64_t j0, int64_t nj, int nr) {
#ifdef CONV_HAVE_512
  const nn_window *w = ((const conv_src *)ctx)->w;
  if (w->s[2] <= 2 && nr <= 32 && keel_gemm_get_isa() == KEEL_GEMM_AVX512) {
    if (conv_pack_fast_512(ctx, dst, k0, kc, j0, nj, nr)) return;
    if (w->s[2] == 1) {
      conv_pack_b_512(ctx, dst, k0, kc, j0, nj, nr);
      return;
    }
  }
#endif
  conv_pack_b_c(ctx, dst, k0, kc, j0, nj, nr);
}

/* y[n][m][p] = yt[(n * P + p) * M + m], in 16 x 16 blocks (both sides touch whole cache lines). */
typedef struct conv_untr_job {
  const float *yt;
  float *y;
  int64_t N, P, M, nchunks;
} conv_untr_job;

static void conv_untranspose_part(void *ctx, int tid, int nt, void *scratch) {
  (void)scratch;
  const conv_untr_job *J = ctx;
  const int64_t P = J->P, M = J->M;
  for (int64_t c = tid; c < J->nchunks; c += nt) { /* chunk: one image x 16 channels */
    const int64_t img = c / ((M + 15) / 16), m0 = c % ((M + 15) / 16) * 16, mn = M - m0 < 16 ? M - m0 : 16;
    const float *src = J->yt + img * P * M + m0;
    float *dst = J->y + (img * M + m0) * P;
    for (int64_t p0 = 0; p0 < P; p0 += 16) {
      const int64_t pn = P - p0 < 16 ? P - p0 : 16;
      if (mn == 16 && pn == 16) {
        float t[16][16];
        for (int i = 0; i < 16; i++)
          for (int j = 0; j < 16; j++) t[j][i] = src[(p0 + i) * M + j];
        for (int j = 0; j < 16; j++) memcpy(dst + j * P + p0, t[j], 16 * sizeof(float));
      } else {
        for (int64_t j = 0; j < mn; j++)
          for (int64_t i = 0; i < pn; i++) dst[j * P + p0 + i] = src[(p0 + i) * M + j];
      }
    }
  }
}

static void conv_untranspose(const float *yt, float *y, int64_t N, int64_t P, int64_t M, int nt) {
  conv_untr_job J = {yt, y, N, P, M, N * ((M + 15) / 16)};
  const int64_t per_thread = 65536; /* floats: below that a pool wake-up costs more than it saves */
  if (nt > 1 && N * P * M / per_thread < nt) nt = (int)(N * P * M / per_thread > 1 ? N * P * M / per_thread : 1);
  if (nt > 1)
    keel_parallel_run(nt, conv_untranspose_part, &J);
  else
    conv_untranspose_part(&J, 0, 1, NULL);
}

/* The direct kernel (ops/nn_conv_direct.h) where it applies and is wanted: it reads the GEMM's B operand
 * straight from the input, without the packing pass. pa: the weights packed as A. */
static bool conv_direct(const keel_node *n, const nn_conv_geom *g, const float *x, const keel_gemm_packed *pa,
                        const float *b, float *y, int nt) {
  keel_conv_direct_params p;
  if (!pa || !conv_direct_params(g, &p) || !keel_conv_direct_wanted(&p) || !keel_conv_direct_supported(&p, pa))
    return false;
  p.act = n->act, p.act_alpha = n->act_alpha, p.act_beta = n->act_beta;
  keel_conv_direct_f32(&p, x, pa, b, y, nt);
  return true;
}

static bool conv_f32_gemm(const keel_node *n, const nn_conv_geom *g, const float *x, const float *w, const float *b,
                          float *y, char *ws, size_t ws_bytes, int nt) {
  const int64_t K = g->Cg * g->kprod, P = g->out_prod;
  const conv_prep *cp = n->prepared;
  if (cp && (n->prepared_free != conv_prep_free || cp->src != w || cp->M != g->M || cp->K != K ||
             cp->group != g->group))
    cp = NULL;
  if (conv_swapped(n, g, KEEL_FLOAT32)) {
    float *yt = (float *)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
    const size_t used = (size_t)((char *)yt - ws) + conv_swap_tile_bytes(g);
    const int64_t rows = g->N * P;
    conv_src src = {x, g->C * g->in_prod, P, &g->w3, rows};
    keel_gemm_operand oa = {.pack = conv_pack_b, .pack_ctx = &src};
    keel_gemm_operand ob = {w, 1, K, cp ? atomic_load_explicit(&((conv_prep *)cp)->pb, memory_order_acquire) : NULL};
    keel_gemm_epilogue e = {.col_bias = b, .act = n->act, .act_alpha = n->act_alpha, .act_beta = n->act_beta};
    if (!keel_sgemm(rows, g->M, K, 1.0f, &oa, &ob, yt, g->M, &e, (char *)yt + used, ws_bytes > used ? ws_bytes - used : 0, nt))
      return false;
    conv_untranspose(yt, y, g->N, P, g->M, nt);
    return true;
  }
  if (cp) {
    const keel_gemm_packed *pa =
        cp->pa[0] ? cp->pa[0] : atomic_load_explicit(&((conv_prep *)cp)->pa_late, memory_order_acquire);
    if (conv_direct(n, g, x, pa, b, y, nt)) return true;
  }
  if (cp && !cp->pa[0]) cp = NULL; /* packed for the swapped orientation only */
  const bool implicit = !g->pointwise && conv_implicit(g);
  size_t col_bytes = 0;
  if (!g->pointwise && !implicit) col_bytes = ((size_t)K * (size_t)(g->chunk_rows * g->w3.out[2]) * sizeof(float) + 63) & ~(size_t)63;
  float *col = (float *)ws;
  char *gws = ws + col_bytes;
  size_t gws_bytes = ws_bytes > col_bytes ? ws_bytes - col_bytes : 0;
  keel_gemm_epilogue e = {.act = n->act, .act_alpha = n->act_alpha, .act_beta = n->act_beta};
  if (g->pointwise && g->group == 1 && g->N > 1) {
    /* 1x1 over a batch: one GEMM per image, all in one fork / join so the threads share every image's
     * blocks (one image's GEMM is often too short to split evenly over the threads by itself) */
    keel_gemm_operand oa = {w, K, 1, cp ? cp->pa[0] : NULL};
    keel_gemm_operand ob = {x, P, 1, NULL};
    e.row_bias = b;
    return keel_sgemm_batch(g->N, g->C * g->in_prod, g->M * P, g->Mg, P, K, 1.0f, &oa, &ob, y, P, &e, gws, gws_bytes,
                            nt);
  }
  for (int64_t in = 0; in < g->N; in++)
    for (int64_t grp = 0; grp < g->group; grp++) {
      const float *xg = x + (in * g->C + grp * g->Cg) * g->in_prod;
      float *yg = y + (in * g->M + grp * g->Mg) * P;
      keel_gemm_operand oa = {w + grp * g->Mg * K, K, 1, cp ? cp->pa[grp] : NULL};
      e.row_bias = b ? b + grp * g->Mg : NULL;
      if (g->pointwise) {
        keel_gemm_operand ob = {xg, P, 1, NULL};
        if (!keel_sgemm(g->Mg, P, K, 1.0f, &oa, &ob, yg, P, &e, gws, gws_bytes, nt)) return false;
        continue;
      }
      if (implicit && g->group == 1 && g->N > 1) {
        /* k x k over a batch: up to 16 images per fork / join, each image one chunk of the threads' work,
         * so no two threads build the same image's columns (splitting one image's rows would) */
        conv_src srcs[16];
        const int64_t nb = g->N - in < 16 ? g->N - in : 16;
        for (int64_t i = 0; i < nb; i++)
          srcs[i] = (conv_src){x + (in + i) * g->C * g->in_prod, g->C * g->in_prod, P, &g->w3, P};
        keel_gemm_operand ob = {.pack = conv_pack_b, .pack_ctx = srcs};
        if (!keel_sgemm_batch(nb, (int64_t)sizeof(conv_src), g->M * P, g->Mg, P, K, 1.0f, &oa, &ob, yg, P, &e, gws,
                              gws_bytes, nt))
          return false;
        in += nb - 1;
        continue;
      }
      if (implicit) {
        conv_src src = {xg, g->C * g->in_prod, P, &g->w3, P};
        keel_gemm_operand ob = {.pack = conv_pack_b, .pack_ctx = &src};
        if (!keel_sgemm(g->Mg, P, K, 1.0f, &oa, &ob, yg, P, &e, gws, gws_bytes, nt)) return false;
        continue;
      }
      /* im2col a block of output rows at a time so the column buffer stays in cache for the GEMM. */
      const int64_t OW = g->w3.out[2], rows = g->w3.out[0] * g->w3.out[1];
      for (int64_t r0 = 0; r0 < rows; r0 += g->chunk_rows) {
        const int64_t r1 = r0 + g->chunk_rows < rows ? r0 + g->chunk_rows : rows, nc = (r1 - r0) * OW;
        im2col_f32(xg, g->Cg, &g->w3, col, r0, r1);
        keel_gemm_operand ob = {col, nc, 1, NULL};
        if (!keel_sgemm(g->Mg, nc, K, 1.0f, &oa, &ob, yg + r0 * OW, P, &e, gws, gws_bytes, nt)) return false;
      }
    }
  return true;
}

static void conv_f32_dw(const keel_node *n, const nn_conv_geom *g, const float *x, const float *w, const float *b,
                        float *y, int nt) {
  const nn_window *v = &g->w3;
  keel_conv_dw_params p = {.N = g->N, .C = g->C, .H = v->in[1], .W = v->in[2], .OH = v->out[1], .OW = v->out[2],
                           .kh = (int)v->k[1], .kw = (int)v->k[2], .sh = (int)v->s[1], .sw = (int)v->s[2],
                           .dh = (int)v->d[1], .dw = (int)v->d[2], .pad_top = (int)v->pb[1],
                           .pad_left = (int)v->pb[2], .act = n->act, .act_alpha = n->act_alpha,
                           .act_beta = n->act_beta};
  keel_conv_dw_f32(&p, x, w, b, y, nt);
}

size_t nn_conv_workspace(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  nn_conv_geom g;
  keel_status *s = conv_geom(n, in, n_in, &g, false);
  if (s) {
    keel_status_free(s);
    return 0;
  }
  /* Planning knows the shapes prepare may not have: pack W^T now if the swapped orientation will run (once;
   * concurrent planners race with a compare-exchange, the loser frees its copy). */
  conv_prep *cp = n->prepared;
  if (cp && n->prepared_free == conv_prep_free && conv_swapped(n, &g, in[0].dtype) && cp->M == g.M &&
      cp->K == g.Cg * g.kprod && cp->group == 1 && !atomic_load(&cp->pb)) {
    keel_gemm_packed *pb = keel_gemm_pack_b(cp->src, cp->K, cp->M, 1, cp->K), *none = NULL;
    if (pb && !atomic_compare_exchange_strong(&cp->pb, &none, pb)) keel_gemm_packed_free(pb);
  }
  /* Likewise W as A for the direct kernel if prepare packed only W^T. */
  keel_conv_direct_params dp;
  if (cp && n->prepared_free == conv_prep_free && in[0].dtype == KEEL_FLOAT32 && cp->group == 1 && !cp->pa[0] &&
      cp->M == g.M && cp->K == g.Cg * g.kprod && !conv_swapped(n, &g, in[0].dtype) && conv_direct_params(&g, &dp) &&
      keel_conv_direct_wanted(&dp) && !atomic_load(&cp->pa_late)) {
    keel_gemm_packed *pa = keel_gemm_pack_a(cp->src, cp->M, cp->K, cp->K, 1), *none = NULL;
    if (pa && !atomic_compare_exchange_strong(&cp->pa_late, &none, pa)) keel_gemm_packed_free(pa);
  }
  return conv_ws_bytes(n, &g, in[0].dtype);
}


keel_status *nn_conv_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                         keel_exec *ex) {
  nn_conv_geom g;
  KEEL_TRY(conv_geom(n, in, n_in, &g, false));
  KEEL_TRY(check_int_range(&g, g.Mg, g.out_prod, g.Cg * g.kprod));
  size_t need = conv_ws_bytes(n, &g, in[0].dtype);
  if (need > ex->workspace_bytes)
    return keel_error(KEEL_INTERNAL, "workspace of %zu bytes given, %zu needed", ex->workspace_bytes, need);
  const void *b = nn_has(in, n_in, 2) ? in[2].data : NULL;
  size_t numel = (size_t)keel_view_numel(&out[0]);
  if (numel == 0) return NULL;
  if (in[0].dtype == KEEL_FLOAT32) {
    const int nt = keel_threads_effective(ex->num_threads);
    if (conv_is_dw2d(&g, KEEL_FLOAT32)) {
      conv_f32_dw(n, &g, in[0].data, in[1].data, b, out[0].data, nt);
    } else if (g.Cg == 1 && !g.pointwise) {
      conv_f32(&g, in[0].data, in[1].data, b, out[0].data, ex->workspace); /* 1-D / 3-D depthwise */
      keel_act_apply_f32(out[0].data, numel, n->act, n->act_alpha, n->act_beta);
    } else if (!conv_f32_gemm(n, &g, in[0].data, in[1].data, b, out[0].data, ex->workspace, ex->workspace_bytes,
                              nt)) {
      return keel_error(KEEL_OUT_OF_MEMORY, "out of memory for GEMM scratch");
    }
  } else {
    conv_f64(&g, in[0].data, in[1].data, b, out[0].data, ex->workspace);
    keel_act_apply_f64(out[0].data, numel, n->act, n->act_alpha, n->act_beta);
  }
  return NULL;
}

/* ---- ConvTranspose ---- */

static keel_status *read_sp(const keel_node *n, const char *name, int nsp, int64_t dflt, int64_t min, int64_t *v) {
  const int64_t *a = NULL;
  int c = keel_attr_ints(n, name, &a);
  if (c < 0 || !a) {
    for (int i = 0; i < nsp; i++) v[i] = dflt;
    return NULL;
  }
  if (c != nsp) return keel_error(KEEL_INVALID_MODEL, "attribute '%s' has %d values, expected %d", name, c, nsp);
  for (int i = 0; i < nsp; i++) {
    if (a[i] < min)
      return keel_error(KEEL_INVALID_MODEL, "attribute '%s'[%d] = %lld, must be >= %lld", name, i,
                        (long long)a[i], (long long)min);
    v[i] = a[i];
  }
  return NULL;
}

static keel_status *convt_geom(const keel_node *n, const keel_view *in, int n_in, nn_conv_geom *g) {
  KEEL_TRY(check_common(n, in, n_in, false));
  const keel_view *x = &in[0], *w = &in[1];
  const int nsp = x->ndim - 2;
  memset(g, 0, sizeof *g);
  g->group = keel_attr_int(n, "group", 1);
  if (g->group < 1) return keel_error(KEEL_INVALID_MODEL, "group = %lld", (long long)g->group);
  g->C = w->dims[0];
  if (x->dims[1] >= 0 && x->dims[1] != g->C)
    return keel_error(KEEL_SHAPE_MISMATCH, "X has %lld channels but W has %lld input channels",
                      (long long)x->dims[1], (long long)g->C);
  if (g->C % g->group)
    return keel_error(KEEL_INVALID_MODEL, "%lld input channels are not divisible by group %lld", (long long)g->C,
                      (long long)g->group);
  g->Cg = g->C / g->group;
  g->Mg = w->dims[1];
  if (!keel_mul_i64(g->Mg, g->group, &g->M)) return keel_error(KEEL_INVALID_MODEL, "channel count overflows");
  KEEL_TRY(check_bias(in, n_in, g->M));

  int64_t s[NN_MAX_SP], d[NN_MAX_SP], opad[NN_MAX_SP], pads[2 * NN_MAX_SP];
  KEEL_TRY(read_sp(n, "strides", nsp, 1, 1, s));
  KEEL_TRY(read_sp(n, "dilations", nsp, 1, 1, d));
  KEEL_TRY(read_sp(n, "output_padding", nsp, 0, 0, opad));
  KEEL_TRY(read_sp(n, "pads", 2 * nsp, 0, 0, pads));
  const int64_t *os = NULL;
  int nos = keel_attr_ints(n, "output_shape", &os);
  if (nos >= 0 && os) {
    if (nos != nsp && nos != nsp + 2)
      return keel_error(KEEL_INVALID_MODEL, "output_shape has %d values, expected %d", nos, nsp);
    os += nos - nsp; /* a full N,C,... shape: keep the spatial part */
    for (int i = 0; i < nsp; i++)
      if (os[i] < 1) return keel_error(KEEL_INVALID_MODEL, "output_shape[%d] = %lld", i, (long long)os[i]);
  } else {
    os = NULL;
  }
  const char *ap = keel_attr_string(n, "auto_pad", "NOTSET");
  bool same = !strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER");
  bool upper = !strcmp(ap, "SAME_UPPER");
  if (!same && ap[0] && strcmp(ap, "NOTSET") && strcmp(ap, "VALID"))
    return keel_error(KEEL_INVALID_MODEL, "unknown auto_pad '%s'", ap);
  bool valid = !strcmp(ap, "VALID");

  nn_window win = {.nsp = nsp};
  g->N = x->dims[0];
  g->ndim = x->ndim;
  g->out_dims[0] = g->N;
  g->out_dims[1] = g->M;
  g->in_prod = g->out_prod = 1;
  g->pointwise = true;
  for (int i = 0; i < nsp; i++) {
    const int64_t xin = x->dims[2 + i], k = w->dims[2 + i];
    if (k < 1) return keel_error(KEEL_SHAPE_MISMATCH, "W has kernel size %lld in spatial dim %d", (long long)k, i);
    win.k[i] = k;
    win.s[i] = s[i];
    win.d[i] = d[i];
    win.out[i] = xin;
    int64_t full = -1; /* stride*(in-1) + output_padding + dilated kernel: the unpadded output size */
    if (xin >= 0) {
      if (!keel_mul_i64(s[i], xin > 0 ? xin - 1 : 0, &full) || !keel_add_i64(full, opad[i], &full) ||
          !keel_add_i64(full, (k - 1) * d[i] + 1, &full))
        return keel_error(KEEL_SHAPE_MISMATCH, "output size overflows in spatial dim %d", i);
    }
    int64_t yout;
    if (os || same) {
      yout = os ? os[i] : (xin >= 0 ? xin * s[i] : -1);
      int64_t total = (full >= 0 && yout >= 0) ? full - yout : 0;
      if (total < 0) total = 0;
      win.pb[i] = upper ? total / 2 : total - total / 2;
      win.pe[i] = total - win.pb[i];
    } else {
      win.pb[i] = valid ? 0 : pads[i];
      win.pe[i] = valid ? 0 : pads[nsp + i];
      yout = full >= 0 ? full - win.pb[i] - win.pe[i] : -1;
    }
    if (xin >= 0 && yout < 1)
      return keel_error(KEEL_SHAPE_MISMATCH, "output spatial dim %d would be %lld", i, (long long)yout);
    win.in[i] = yout;
    g->out_dims[2 + i] = yout;
    g->in_prod = (g->in_prod < 0 || yout < 0) ? -1 : g->in_prod * yout;
    g->out_prod = (g->out_prod < 0 || xin < 0) ? -1 : g->out_prod * xin;
    if (k != 1 || s[i] != 1 || win.pb[i] != 0 || yout != xin) g->pointwise = false;
  }
  nn_window_pad3(&win, &g->w3);
  g->kprod = nn_prod(w->dims, 2, w->ndim);
  KEEL_TRY(nn_check_numel(n, g->out_dims, g->ndim, keel_dtype_size(x->dtype)));
  return NULL;
}

keel_status *nn_convt_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  nn_conv_geom g;
  KEEL_TRY(convt_geom(n, in, n_in, &g));
  if (n_out < 1) return keel_error(KEEL_INVALID_MODEL, "has no output");
  keel_view_set_shape(&out[0], in[0].dtype, g.out_dims, g.ndim);
  return NULL;
}

static size_t convt_ws_bytes(const nn_conv_geom *g, keel_dtype dt) {
  if (g->pointwise || g->out_prod < 0) return 0;
  int64_t e;
  size_t bytes;
  if (!keel_mul_i64(g->Mg, g->kprod, &e) || !keel_mul_i64(e, g->out_prod, &e) ||
      !keel_shape_nbytes(e, keel_dtype_size(dt), &bytes))
    return SIZE_MAX;
  return bytes;
}

size_t nn_convt_workspace(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  nn_conv_geom g;
  keel_status *s = convt_geom(n, in, n_in, &g);
  if (s) {
    keel_status_free(s);
    return 0;
  }
  return convt_ws_bytes(&g, in[0].dtype);
}

keel_status *nn_convt_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                          keel_exec *ex) {
  nn_conv_geom g;
  KEEL_TRY(convt_geom(n, in, n_in, &g));
  KEEL_TRY(check_int_range(&g, g.Mg * g.kprod, g.out_prod, g.Cg));
  size_t need = convt_ws_bytes(&g, in[0].dtype);
  if (need > ex->workspace_bytes)
    return keel_error(KEEL_INTERNAL, "workspace of %zu bytes given, %zu needed", ex->workspace_bytes, need);
  const void *b = nn_has(in, n_in, 2) ? in[2].data : NULL;
  size_t numel = (size_t)keel_view_numel(&out[0]);
  if (numel == 0) return NULL;
  if (in[0].dtype == KEEL_FLOAT32) {
    convt_f32(&g, in[0].data, in[1].data, b, out[0].data, ex->workspace);
    keel_act_apply_f32(out[0].data, numel, n->act, n->act_alpha, n->act_beta);
  } else {
    convt_f64(&g, in[0].data, in[1].data, b, out[0].data, ex->workspace);
    keel_act_apply_f64(out[0].data, numel, n->act, n->act_alpha, n->act_beta);
  }
  return NULL;
}

/* ---- ConvInteger: int32 output of (x - x_zero_point) * (w - w_zero_point); a direct loop (padding adds 0). */

static inline int32_t q8_at(const keel_view *v, int64_t i) {
  return v->dtype == KEEL_INT8 ? (int32_t)((const int8_t *)v->data)[i] : (int32_t)((const uint8_t *)v->data)[i];
}

static keel_status *convint_check_zp(const keel_view *in, int n_in, int i, keel_dtype like, int64_t per,
                                     const char *name) {
  if (!nn_has(in, n_in, i)) return NULL;
  int64_t c = keel_view_numel(&in[i]);
  if (in[i].dtype != like)
    return keel_error(KEEL_SHAPE_MISMATCH, "%s has dtype %s, expected %s", name, keel_dtype_name(in[i].dtype),
                      keel_dtype_name(like));
  if (in[i].ndim > 1 || (c != 1 && c != per))
    return keel_error(KEEL_SHAPE_MISMATCH, "%s must be a scalar%s", name, per > 1 ? " or have one value per channel" : "");
  return NULL;
}

keel_status *nn_convint_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  nn_conv_geom g;
  KEEL_TRY(conv_geom(n, in, n_in, &g, true));
  KEEL_TRY(convint_check_zp(in, n_in, 2, in[0].dtype, 1, "x_zero_point"));
  KEEL_TRY(convint_check_zp(in, n_in, 3, in[1].dtype, g.M, "w_zero_point"));
  keel_view_set_shape(&out[0], KEEL_INT32, g.out_dims, g.ndim);
  return NULL;
}

/* Requantization parameters of QLinearConv / QLinearMatMul: y = saturate(round(acc * scale[c]) + zp). */
typedef struct nn_requant {
  const keel_view *in_scale, *w_scale, *y_scale, *y_zp;
} nn_requant;

static inline float scale_at(const keel_view *v, int64_t i) {
  if (keel_view_numel(v) == 1) i = 0;
  switch (v->dtype) {
    case KEEL_FLOAT16: return keel_half_to_float(((const uint16_t *)v->data)[i]);
    case KEEL_BFLOAT16: return keel_bfloat16_to_float(((const uint16_t *)v->data)[i]);
    default: return ((const float *)v->data)[i];
  }
}

static inline void requant_store(const keel_view *y, int64_t i, int32_t acc, float scale, int32_t zp) {
  float v = nearbyintf((float)acc * scale) + (float)zp;
  if (y->dtype == KEEL_UINT8)
    ((uint8_t *)y->data)[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
  else
    ((int8_t *)y->data)[i] = (int8_t)(v < -128 ? -128 : v > 127 ? 127 : v);
}

/* Direct integer convolution; rq == NULL stores int32 accumulators (ConvInteger). */
static void convq_core(const nn_conv_geom *g, const keel_view *x, const keel_view *w, int32_t xz, const keel_view *wzp,
                       const keel_view *bias, const nn_requant *rq, const keel_view *y) {
  const nn_window *wn = &g->w3;
  const bool wz_per = wzp && keel_view_numel(wzp) > 1;
  const int32_t yz = rq ? q8_at(rq->y_zp, 0) : 0;
  int64_t yi = 0;
  for (int64_t b = 0; b < g->N; b++)
    for (int64_t oc = 0; oc < g->M; oc++) {
      const int32_t wz = wzp ? q8_at(wzp, wz_per ? oc : 0) : 0;
      const int32_t bv = bias ? ((const int32_t *)bias->data)[oc] : 0;
      const float sc = rq ? scale_at(rq->in_scale, 0) * scale_at(rq->w_scale, oc) / scale_at(rq->y_scale, 0) : 0;
      const int64_t xbase = (b * g->C + (oc / g->Mg) * g->Cg) * g->in_prod, wbase = oc * g->Cg * g->kprod;
      for (int64_t od = 0; od < wn->out[0]; od++)
        for (int64_t oh = 0; oh < wn->out[1]; oh++)
          for (int64_t ow = 0; ow < wn->out[2]; ow++, yi++) {
            uint32_t acc = (uint32_t)bv; /* unsigned: sums wrap instead of overflowing */
            for (int64_t c = 0; c < g->Cg; c++)
              for (int64_t kd = 0; kd < wn->k[0]; kd++) {
                const int64_t id = od * wn->s[0] + kd * wn->d[0] - wn->pb[0];
                if (id < 0 || id >= wn->in[0]) continue;
                for (int64_t kh = 0; kh < wn->k[1]; kh++) {
                  const int64_t ih = oh * wn->s[1] + kh * wn->d[1] - wn->pb[1];
                  if (ih < 0 || ih >= wn->in[1]) continue;
                  for (int64_t kw = 0; kw < wn->k[2]; kw++) {
                    const int64_t iw = ow * wn->s[2] + kw * wn->d[2] - wn->pb[2];
                    if (iw < 0 || iw >= wn->in[2]) continue;
                    const int32_t xv = q8_at(x, xbase + c * g->in_prod + (id * wn->in[1] + ih) * wn->in[2] + iw) - xz;
                    const int32_t wv = q8_at(w, wbase + ((c * wn->k[0] + kd) * wn->k[1] + kh) * wn->k[2] + kw) - wz;
                    acc += (uint32_t)(xv * wv);
                  }
                }
              }
            if (rq)
              requant_store(y, yi, (int32_t)acc, sc, yz);
            else
              ((uint32_t *)y->data)[yi] = acc;
          }
    }
}

keel_status *nn_convint_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                            keel_exec *ex) {
  nn_conv_geom g;
  KEEL_TRY(conv_geom(n, in, n_in, &g, true));
  const int32_t xz = nn_has(in, n_in, 2) ? q8_at(&in[2], 0) : 0;
  convq_core(&g, &in[0], &in[1], xz, nn_has(in, n_in, 3) ? &in[3] : NULL, NULL, NULL, &out[0]);
  return NULL;
}

/* ---- QLinearConv: x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B (int32). */

static bool is_scale(const keel_view *v) {
  return v->dtype == KEEL_FLOAT32 || v->dtype == KEEL_FLOAT16 || v->dtype == KEEL_BFLOAT16;
}

static keel_status *qconv_geom(const keel_node *n, const keel_view *in, int n_in, nn_conv_geom *g) {
  KEEL_TRY(nn_need_inputs(n, n_in, 8, 9));
  for (int i = 0; i < 8; i++)
    if (!nn_has(in, n_in, i)) return keel_error(KEEL_INVALID_MODEL, "input %d is required", i);
  keel_view xw[2] = {in[0], in[3]};
  KEEL_TRY(conv_geom(n, xw, 2, g, true));
  const int64_t per[3] = {1, g->M, 1};
  const char *names[3] = {"x", "w", "y"};
  static const int sc_i[3] = {1, 4, 6}, zp_i[3] = {2, 5, 7};
  for (int k = 0; k < 3; k++) {
    const keel_view *sc = &in[sc_i[k]], *zp = &in[zp_i[k]];
    int64_t cs = keel_view_numel(sc), cz = keel_view_numel(zp);
    if (!is_scale(sc) || (cs != 1 && cs != per[k]))
      return keel_error(KEEL_SHAPE_MISMATCH, "%s_scale must be a float scalar%s", names[k],
                        per[k] > 1 ? " or one value per output channel" : "");
    if (!is_q8(zp->dtype) || (cz != 1 && cz != per[k]))
      return keel_error(KEEL_SHAPE_MISMATCH, "%s_zero_point must be an 8-bit scalar%s", names[k],
                        per[k] > 1 ? " or one value per output channel" : "");
  }
  if (in[2].dtype != in[0].dtype || in[5].dtype != in[3].dtype)
    return keel_error(KEEL_SHAPE_MISMATCH, "zero points must have the dtypes of x and w");
  if (nn_has(in, n_in, 8) && (in[8].dtype != KEEL_INT32 || keel_view_numel(&in[8]) != g->M))
    return keel_error(KEEL_SHAPE_MISMATCH, "bias B must be int32 with %lld values", (long long)g->M);
  return NULL;
}

keel_status *nn_qconv_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  nn_conv_geom g;
  KEEL_TRY(qconv_geom(n, in, n_in, &g));
  keel_view_set_shape(&out[0], in[7].dtype, g.out_dims, g.ndim);
  return NULL;
}

keel_status *nn_qconv_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                          keel_exec *ex) {
  nn_conv_geom g;
  KEEL_TRY(qconv_geom(n, in, n_in, &g));
  nn_requant rq = {&in[1], &in[4], &in[6], &in[7]};
  convq_core(&g, &in[0], &in[3], q8_at(&in[2], 0), &in[5], nn_has(in, n_in, 8) ? &in[8] : NULL, &rq, &out[0]);
  return NULL;
}
