/* Operator family: nn (convolution, GEMM / MatMul, normalization, pooling).
 * Kernels live in nn_conv.c, nn_gemm.c, nn_norm.c and nn_pool.c; this file is the table. Where an operator's
 * semantics changed between opset versions there are separate entries (the kernels read node->opset or
 * the attributes that only exist in some versions). */
#include <string.h>

#include "ops/ew_types.h"
#include "ops/nn_internal.h"

/* ---- float16 / bfloat16: widen to float32, run the float32 kernel, narrow back ----
 * Half inputs are converted into the start of the planned workspace, the kernel writes float32 outputs there
 * too (its fused activation included), then they are rounded to nearest even into the real outputs. The
 * float32 kernel's own workspace follows. Only entries built with HALF_WRAP below take this path. */

#define NN_HALF_MAX_IO 8

static bool nn_is_half(keel_dtype t) { return t == KEEL_FLOAT16 || t == KEEL_BFLOAT16; }
static bool nn_any_half(const keel_view *v, int n) {
  for (int i = 0; i < n; i++)
    if (nn_is_half(v[i].dtype)) return true;
  return false;
}
static size_t nn_align64(size_t b) { return (b + 63) & ~(size_t)63; }
/* float32 bytes for a half view (0 when its shape is not known). */
static size_t nn_f32_bytes(const keel_view *v) {
  int64_t c = keel_view_numel(v);
  return c > 0 ? nn_align64((size_t)c * sizeof(float)) : 0;
}

/* The dtype a float32 output of the widened kernel has in the half-precision node: the dtype of the input it
 * derives from (BatchNormalization's running statistics follow input_mean / input_var), except
 * LayerNormalization's Mean / InvStdDev, which are in stash_type (float32 by default). */
static keel_dtype nn_half_out_dtype(const keel_node *n, const keel_view *in, int n_in, int i) {
  if (i > 0 && !strcmp(n->op_type, "LayerNormalization")) return KEEL_FLOAT32;
  int src = i > 0 && !strcmp(n->op_type, "BatchNormalization") ? (i - 1) % 2 + 3 : 0;
  return src < n_in && nn_is_half(in[src].dtype) ? in[src].dtype : KEEL_FLOAT32;
}

/* Widening every half input to float32 would hide a dtype mismatch from the float32 kernel's checks: apart
 * from BatchNormalization (whose parameters may have their own float type), all inputs share X's dtype. */
static keel_status *nn_half_check(const keel_node *n, const keel_view *in, int n_in) {
  if (!strcmp(n->op_type, "BatchNormalization")) return NULL;
  for (int i = 1; i < n_in; i++)
    if (in[i].dtype != KEEL_DTYPE_UNDEFINED && in[i].dtype != in[0].dtype)
      return keel_error(KEEL_SHAPE_MISMATCH, "input %d has dtype %s but input 0 has %s", i,
                        keel_dtype_name(in[i].dtype), keel_dtype_name(in[0].dtype));
  return NULL;
}

static keel_status *nn_half_infer(keel_infer_fn inner, const keel_node *n, const keel_view *in, int n_in,
                                  keel_view *out, int n_out) {
  if (!nn_any_half(in, n_in)) return inner(n, in, n_in, out, n_out);
  if (n_in > NN_HALF_MAX_IO) return keel_error(KEEL_UNSUPPORTED, "%d inputs with float16 data", n_in);
  KEEL_TRY(nn_half_check(n, in, n_in));
  keel_view f[NN_HALF_MAX_IO];
  for (int i = 0; i < n_in; i++) {
    f[i] = in[i];
    if (nn_is_half(f[i].dtype)) {
      f[i].dtype = KEEL_FLOAT32;
      f[i].data = NULL; /* half bits must not be read as float; these ops never need input values */
    }
  }
  KEEL_TRY(inner(n, f, n_in, out, n_out));
  for (int i = 0; i < n_out; i++)
    if (out[i].dtype == KEEL_FLOAT32) out[i].dtype = nn_half_out_dtype(n, in, n_in, i);
  return NULL;
}

/* Float32 stand-ins for the views (dtype only; data is placed by the caller); returns the bytes they need. */
static size_t nn_half_views(const keel_view *v, int n, keel_view *f) {
  size_t b = 0;
  for (int i = 0; i < n; i++) {
    f[i] = v[i];
    if (nn_is_half(v[i].dtype)) {
      f[i].dtype = KEEL_FLOAT32;
      b += nn_f32_bytes(&v[i]);
    }
  }
  return b;
}

static size_t nn_half_workspace(keel_workspace_fn inner, const keel_node *n, const keel_view *in, int n_in,
                                const keel_view *out, int n_out) {
  if ((!nn_any_half(in, n_in) && !nn_any_half(out, n_out)) || n_in > NN_HALF_MAX_IO || n_out > NN_HALF_MAX_IO)
    return inner ? inner(n, in, n_in, out, n_out) : 0;
  keel_view fi[NN_HALF_MAX_IO], fo[NN_HALF_MAX_IO];
  size_t b = nn_half_views(in, n_in, fi) + nn_half_views(out, n_out, fo);
  return b + (inner ? inner(n, fi, n_in, fo, n_out) : 0);
}

static void nn_widen(const keel_view *v, float *dst) {
  const uint16_t *s = v->data;
  int64_t c = keel_view_numel(v);
  if (v->dtype == KEEL_FLOAT16)
    for (int64_t i = 0; i < c; i++) dst[i] = ew_h2f(s[i]);
  else
    for (int64_t i = 0; i < c; i++) dst[i] = ew_bf2f(s[i]);
}
static void nn_narrow(const float *src, keel_view *v) {
  uint16_t *d = v->data;
  int64_t c = keel_view_numel(v);
  if (v->dtype == KEEL_FLOAT16)
    for (int64_t i = 0; i < c; i++) d[i] = ew_f2h(src[i]);
  else
    for (int64_t i = 0; i < c; i++) d[i] = ew_f2bf(src[i]);
}

static keel_status *nn_half_run(keel_run_fn inner, const keel_node *n, const keel_view *in, int n_in,
                                keel_view *out, int n_out, keel_exec *ex) {
  if (!nn_any_half(in, n_in) && !nn_any_half(out, n_out)) return inner(n, in, n_in, out, n_out, ex);
  if (n_in > NN_HALF_MAX_IO || n_out > NN_HALF_MAX_IO)
    return keel_error(KEEL_UNSUPPORTED, "%d inputs / %d outputs with float16 data", n_in, n_out);
  KEEL_TRY(nn_half_check(n, in, n_in));
  keel_view fi[NN_HALF_MAX_IO], fo[NN_HALF_MAX_IO];
  size_t need = nn_half_views(in, n_in, fi) + nn_half_views(out, n_out, fo);
  if (need > ex->workspace_bytes)
    return keel_error(KEEL_INTERNAL, "workspace of %zu bytes is smaller than the %zu the float16 operands need",
                      ex->workspace_bytes, need);
  char *ws = ex->workspace;
  size_t used = 0;
  for (int i = 0; i < n_in; i++)
    if (nn_is_half(in[i].dtype)) {
      fi[i].data = in[i].data ? ws + used : NULL;
      if (in[i].data) nn_widen(&in[i], fi[i].data);
      used += nn_f32_bytes(&in[i]);
    }
  for (int i = 0; i < n_out; i++)
    if (nn_is_half(out[i].dtype)) {
      fo[i].data = out[i].data ? ws + used : NULL;
      used += nn_f32_bytes(&out[i]);
    }
  keel_exec sub = *ex;
  sub.workspace = ws + used;
  sub.workspace_bytes = ex->workspace_bytes - used;
  KEEL_TRY(inner(n, fi, n_in, fo, n_out, &sub));
  for (int i = 0; i < n_out; i++)
    if (nn_is_half(out[i].dtype) && out[i].data) nn_narrow(fo[i].data, &out[i]);
  return NULL;
}

/* Entry points name##_h{infer,run,ws} around an op's float32 functions (ws may be NULL). */
#define HALF_WRAP(name, inf, run, ws)                                                                         \
  static keel_status *name##_hinfer(const keel_node *n, const keel_view *in, int n_in, keel_view *out,       \
                                    int n_out) {                                                             \
    return nn_half_infer(inf, n, in, n_in, out, n_out);                                                      \
  }                                                                                                          \
  static size_t name##_hws(const keel_node *n, const keel_view *in, int n_in, const keel_view *out,          \
                           int n_out) {                                                                      \
    return nn_half_workspace(ws, n, in, n_in, out, n_out);                                                   \
  }                                                                                                          \
  static keel_status *name##_hrun(const keel_node *n, const keel_view *in, int n_in, keel_view *out,         \
                                  int n_out, keel_exec *ex) {                                                \
    return nn_half_run(run, n, in, n_in, out, n_out, ex);                                                    \
  }

HALF_WRAP(conv, nn_conv_infer, nn_conv_run, nn_conv_workspace)
HALF_WRAP(convt, nn_convt_infer, nn_convt_run, nn_convt_workspace)
HALF_WRAP(gemm, nn_gemm_infer, nn_gemm_run, nn_gemm_workspace)
HALF_WRAP(matmul, nn_matmul_infer, nn_matmul_run, nn_matmul_workspace)
HALF_WRAP(bn, nn_bn_infer, nn_bn_run, nn_bn_workspace)
HALF_WRAP(ln, nn_ln_infer, nn_ln_run, nn_ln_workspace)
HALF_WRAP(in, nn_in_infer, nn_in_run, NULL)
HALF_WRAP(gn, nn_gn_infer, nn_gn_run, NULL)
HALF_WRAP(lrn, nn_lrn_infer, nn_lrn_run, NULL)
HALF_WRAP(mvn, nn_mvn_infer, nn_mvn_run, nn_mvn_workspace)
HALF_WRAP(lpn, nn_lpn_infer, nn_lpn_run, nn_lpn_workspace)
HALF_WRAP(pool, nn_pool_infer, nn_pool_run, NULL)
HALF_WRAP(gpool, nn_gpool_infer, nn_gpool_run, NULL)

/* H: an entry whose float16 / bfloat16 form goes through the float32 kernel. */
#define H(op, lo, hi, name) {op, "", lo, hi, name##_hinfer, name##_hrun, name##_hws, -1}
#define D(op, lo, hi, inf, run, ws) {op, "", lo, hi, inf, run, ws, -1}
#define M KEEL_MAX_OPSET

const keel_op_def keel_ops_nn[] = {
    /* Conv 1/11/22, ConvTranspose 1/11/22: same semantics (later versions add types). */
    H("Conv", 1, M, conv),
    H("ConvTranspose", 1, M, convt),
    /* Gemm: 1-6 legacy 'broadcast' attribute, 7-10 C required with unidirectional broadcast, 11+ C optional;
     * one kernel accepts the union (C optional, always broadcast). */
    H("Gemm", 1, 6, gemm),
    H("Gemm", 7, 10, gemm),
    H("Gemm", 11, M, gemm),
    H("MatMul", 1, M, matmul),
    /* Quantized integer forms (opset 10): int32 out of 8-bit inputs minus zero points. */
    D("MatMulInteger", 10, M, nn_mmint_infer, nn_mmint_run, NULL),
    D("ConvInteger", 10, M, nn_convint_infer, nn_convint_run, NULL),
    /* QLinear forms (opset 10; 21 adds float16 scales): requantized 8-bit output. */
    D("QLinearMatMul", 10, M, nn_qmm_infer, nn_qmm_run, NULL),
    D("QLinearConv", 10, M, nn_qconv_infer, nn_qconv_run, NULL),
    /* BatchNormalization: <9 has 'spatial' (0: per-activation parameters), 14+ has training_mode. */
    H("BatchNormalization", 1, 8, bn),
    H("BatchNormalization", 9, 13, bn),
    H("BatchNormalization", 14, M, bn),
    H("LayerNormalization", 17, M, ln),
    H("InstanceNormalization", 1, M, in),
    /* GroupNormalization: 18 has one scale per group, 21 one per channel. */
    H("GroupNormalization", 18, 20, gn),
    H("GroupNormalization", 21, M, gn),
    H("LRN", 1, M, lrn),
    H("MeanVarianceNormalization", 9, M, mvn),
    H("LpNormalization", 1, M, lpn),
    /* MaxPool: 8 adds Indices and storage_order, 10 ceil_mode and dilations, 12 int8/uint8. */
    H("MaxPool", 1, 7, pool),
    H("MaxPool", 8, M, pool),
    /* AveragePool: 7 adds count_include_pad, 10 ceil_mode, 19 dilations (absent attributes = defaults). */
    H("AveragePool", 1, M, pool),
    /* LpPool / GlobalLpPool: p is a float in opset 1, an int from 2; 18 adds ceil_mode and dilations. */
    H("LpPool", 1, 1, pool),
    H("LpPool", 2, M, pool),
    /* MaxUnpool 9; 11 only clarified the output_shape semantics. */
    D("MaxUnpool", 9, M, nn_unpool_infer, nn_unpool_run, NULL),
    H("GlobalAveragePool", 1, M, gpool),
    H("GlobalMaxPool", 1, M, gpool),
    H("GlobalLpPool", 1, 1, gpool),
    H("GlobalLpPool", 2, M, gpool),
};
const int keel_ops_nn_count = (int)(sizeof keel_ops_nn / sizeof keel_ops_nn[0]);
