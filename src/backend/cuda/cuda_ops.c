/* The CUDA kernel table: per operator, a check (what the kernel supports for these dtypes/attributes), an
 * optional workspace size and a run function that computes launch parameters on the host and enqueues
 * cuBLAS calls or the kernels of ops_*.cu on the engine stream. Every launch is checked. */
#ifdef KEEL_HAVE_CUDA
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "backend/cuda/cuda_internal.h"
#include "backend/cuda/cuda_kernels.h"

#define LAUNCH(ex, expr) KEEL_TRY(keel_cuda_error((expr), #expr, (ex)->ctx->device, -1))
#define CUBLAS(ex, expr) KEEL_TRY(keel_cublas_error((int)(expr), #expr, (ex)->ctx->device))

static int64_t numel(const keel_view *v) { return keel_view_numel(v); }

static keel_status *need_f32(const keel_view *v, int n, const char *what) {
  for (int i = 0; i < n; i++)
    if (keel_view_present(&v[i]) && v[i].dtype != KEEL_FLOAT32)
      return keel_error(KEEL_UNSUPPORTED, "%s %d is %s; the CUDA kernel takes float32 only", what, i,
                        keel_dtype_name(v[i].dtype));
  return NULL;
}

static keel_status *check_f32(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  KEEL_TRY(need_f32(in, n_in, "input"));
  return need_f32(out, 1, "output");
}

/* ---- broadcasting --------------------------------------------------------------------------------------------- */

/* Strides of `v` aligned right against out's dims (0 where v broadcasts). */
static void bcast_strides(const keel_view *v, const keel_view *out, int64_t *s) {
  int64_t st = 1;
  for (int d = out->ndim - 1; d >= 0; d--) {
    int vd = d - (out->ndim - v->ndim);
    int64_t dim = vd >= 0 ? v->dims[vd] : 1;
    s[d] = (dim == 1) ? 0 : st;
    st *= dim;
  }
}

static void make_bcast(const keel_view *a, const keel_view *b, const keel_view *out, kcu_bcast *bc) {
  memset(bc, 0, sizeof *bc);
  bc->ndim = out->ndim;
  bc->n = numel(out);
  for (int d = 0; d < out->ndim; d++) bc->dims[d] = out->dims[d];
  bcast_strides(a, out, bc->sa);
  if (b) bcast_strides(b, out, bc->sb);
  if (bc->ndim == 0) { /* scalars: one element */
    bc->ndim = 1;
    bc->dims[0] = 1;
  }
}

/* ---- activations fused by the graph passes ------------------------------------------------------------------- */

static int act_code(const keel_node *n, float *a, float *b) {
  *a = n->act_alpha;
  *b = n->act_beta;
  switch (n->act) {
    case KEEL_ACT_NONE: return KCU_IDENTITY;
    case KEEL_ACT_RELU: return KCU_RELU;
    case KEEL_ACT_LEAKY_RELU: return KCU_LEAKY_RELU;
    case KEEL_ACT_CLIP: return KCU_CLIP;
    case KEEL_ACT_SIGMOID: return KCU_SIGMOID;
    case KEEL_ACT_TANH: return KCU_TANH;
    case KEEL_ACT_HARD_SIGMOID: return KCU_HARD_SIGMOID;
    case KEEL_ACT_HARD_SWISH: return KCU_HARD_SWISH;
    case KEEL_ACT_GELU: return KCU_GELU;
  }
  return -1;
}

static keel_status *check_act(const keel_node *n) {
  float a, b;
  if (act_code(n, &a, &b) < 0) return keel_error(KEEL_UNSUPPORTED, "fused activation %d has no CUDA epilogue", (int)n->act);
  return NULL;
}

/* ---- elementwise ----------------------------------------------------------------------------------------------- */

static int binary_code(const char *op) {
  static const char *names[] = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "PRelu"};
  for (int i = 0; i < 8; i++)
    if (!strcmp(op, names[i])) return i;
  return -1;
}

static keel_status *check_binary(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  if (n_in != 2)
    return keel_error(KEEL_UNSUPPORTED, "%d inputs; the CUDA kernel takes exactly two", n_in);
  KEEL_TRY(check_act(n)); /* Add+Relu / Add+Clip fusions leave their activation on the Add */
  return check_f32(n, in, n_in, out, n_out);
}

static keel_status *run_binary(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                               keel_cuda_exec *ex) {
  kcu_bcast bc;
  make_bcast(&in[0], &in[1], &out[0], &bc);
  LAUNCH(ex, kcu_binary(ex->stream, binary_code(n->op_type), in[0].data, in[1].data, out[0].data, &bc));
  float a, b;
  int act = act_code(n, &a, &b);
  if (act != KCU_IDENTITY) LAUNCH(ex, kcu_bias_act(ex->stream, out[0].data, NULL, 1, 1, bc.n, act, a, b));
  return NULL;
}

typedef struct unary_entry {
  const char *name;
  int code;
} unary_entry;

static const unary_entry unary_ops[] = {
    {"Relu", KCU_RELU},       {"LeakyRelu", KCU_LEAKY_RELU}, {"Sigmoid", KCU_SIGMOID},
    {"Tanh", KCU_TANH},       {"Erf", KCU_ERF},             {"Exp", KCU_EXP},
    {"Log", KCU_LOG},         {"Sqrt", KCU_SQRT},           {"Neg", KCU_NEG},
    {"Abs", KCU_ABS},         {"Reciprocal", KCU_RECIPROCAL}, {"HardSigmoid", KCU_HARD_SIGMOID},
    {"HardSwish", KCU_HARD_SWISH}, {"Elu", KCU_ELU},         {"Softplus", KCU_SOFTPLUS},
    {"Floor", KCU_FLOOR},     {"Ceil", KCU_CEIL},           {"Sin", KCU_SIN},
    {"Cos", KCU_COS},         {"Softsign", KCU_SOFTSIGN},   {"Selu", KCU_SELU},
    {"Gelu", KCU_GELU},
};

static keel_status *run_unary(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                              keel_cuda_exec *ex) {
  int code = KCU_IDENTITY;
  for (size_t i = 0; i < sizeof unary_ops / sizeof unary_ops[0]; i++)
    if (!strcmp(n->op_type, unary_ops[i].name)) code = unary_ops[i].code;
  float a = 0, b = 0;
  switch (code) {
    case KCU_LEAKY_RELU: a = keel_attr_float(n, "alpha", 0.01f); break;
    case KCU_ELU: a = keel_attr_float(n, "alpha", 1.0f); break;
    case KCU_HARD_SIGMOID:
      a = keel_attr_float(n, "alpha", 0.2f);
      b = keel_attr_float(n, "beta", 0.5f);
      break;
    case KCU_SELU:
      a = keel_attr_float(n, "alpha", 1.67326319217681884765625f);
      b = keel_attr_float(n, "gamma", 1.05070102214813232421875f);
      break;
    case KCU_GELU:
      if (!strcmp(keel_attr_string(n, "approximate", "none"), "tanh")) code = KCU_GELU_TANH;
      break;
    default: break;
  }
  LAUNCH(ex, kcu_unary(ex->stream, code, in[0].data, out[0].data, numel(&out[0]), a, b));
  return NULL;
}

static keel_status *check_clip(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  return check_f32(n, in, n_in, out, n_out);
}

static keel_status *run_clip(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                             keel_cuda_exec *ex) {
  if (n->opset < 11) {
    LAUNCH(ex, kcu_unary(ex->stream, KCU_CLIP, in[0].data, out[0].data, numel(&out[0]),
                         keel_attr_float(n, "min", -INFINITY), keel_attr_float(n, "max", INFINITY)));
    return NULL;
  }
  const float *lo = n_in > 1 && keel_view_present(&in[1]) ? in[1].data : NULL;
  const float *hi = n_in > 2 && keel_view_present(&in[2]) ? in[2].data : NULL;
  LAUNCH(ex, kcu_clip_ptr(ex->stream, in[0].data, out[0].data, numel(&out[0]), lo, hi));
  return NULL;
}

/* Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout (inference): the planner usually gives the output
 * the input's memory; otherwise one device copy. */
static keel_status *run_alias(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                              keel_cuda_exec *ex) {
  size_t bytes = keel_view_nbytes(&out[0]);
  if (out[0].data != in[0].data && bytes)
    KEEL_CUDA_CHECK(cudaMemcpyAsync(out[0].data, in[0].data, bytes, cudaMemcpyDeviceToDevice, ex->stream),
                    ex->ctx->device, (long long)bytes);
  if (n_out > 1 && keel_view_present(&out[1])) /* Dropout's mask: all true in inference */
    KEEL_CUDA_CHECK(cudaMemsetAsync(out[1].data, 1, keel_view_nbytes(&out[1]), ex->stream), ex->ctx->device,
                    (long long)keel_view_nbytes(&out[1]));
  return NULL;
}


/* ---- GEMM ------------------------------------------------------------------------------------------------------ */

/* Row-major C[M,N] = alpha * op(A)[M,K] op(B)[K,N] + beta * C through column-major cuBLAS (C^T = B^T A^T). */
static keel_status *sgemm(keel_cuda_exec *ex, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                          const float *A, const float *B, float beta, float *C) {
  if (M > INT32_MAX || N > INT32_MAX || K > INT32_MAX)
    return keel_error(KEEL_UNSUPPORTED, "GEMM of %lld x %lld x %lld exceeds cuBLAS's 32-bit sizes", (long long)M,
                      (long long)N, (long long)K);
  if (M == 0 || N == 0) return NULL;
  int lda = (int)(ta ? M : K), ldb = (int)(tb ? K : N);
  CUBLAS(ex, keel_cublas.sgemm(ex->ctx->cublas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, (int)N, (int)M,
                         (int)K, &alpha, B, ldb > 0 ? ldb : 1, A, lda > 0 ? lda : 1, &beta, C, (int)N));
  return NULL;
}

static keel_status *check_gemm(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  KEEL_TRY(check_f32(n, in, n_in, out, n_out));
  return check_act(n);
}

static keel_status *run_gemm(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                             keel_cuda_exec *ex) {
  bool ta = keel_attr_int(n, "transA", 0) != 0, tb = keel_attr_int(n, "transB", 0) != 0;
  float alpha = keel_attr_float(n, "alpha", 1.f), beta = keel_attr_float(n, "beta", 1.f);
  int64_t M = out[0].dims[0], N = out[0].dims[1], K = ta ? in[0].dims[0] : in[0].dims[1];
  bool has_c = n_in > 2 && keel_view_present(&in[2]) && beta != 0.f;
  if (has_c) {
    kcu_bcast bc;
    make_bcast(&in[2], NULL, &out[0], &bc);
    LAUNCH(ex, kcu_broadcast_fill(ex->stream, in[2].data, out[0].data, &bc, beta));
  }
  KEEL_TRY(sgemm(ex, ta, tb, M, N, K, alpha, in[0].data, in[1].data, has_c ? 1.f : 0.f, out[0].data));
  float a, b;
  int act = act_code(n, &a, &b);
  if (act != KCU_IDENTITY) LAUNCH(ex, kcu_bias_act(ex->stream, out[0].data, NULL, 1, 1, M * N, act, a, b));
  return NULL;
}

static keel_status *check_matmul(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  KEEL_TRY(check_f32(n, in, n_in, out, n_out));
  if (n_in > 2 && keel_view_present(&in[2]) && numel(&in[2]) != (out[0].ndim ? out[0].dims[out[0].ndim - 1] : 1))
    return keel_error(KEEL_UNSUPPORTED, "fused bias of %lld elements does not match the output's last dimension",
                      (long long)numel(&in[2]));
  return check_act(n);
}

static keel_status *run_matmul(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                               keel_cuda_exec *ex) {
  const keel_view *A = &in[0], *B = &in[1], *Y = &out[0];
  int64_t K = A->dims[A->ndim - 1];
  int64_t M = A->ndim >= 2 ? A->dims[A->ndim - 2] : 1;
  int64_t N = B->ndim >= 2 ? B->dims[B->ndim - 1] : 1;
  /* batch dims of the output and of each operand, aligned right */
  int nb = Y->ndim - (A->ndim >= 2) - (B->ndim >= 2);
  if (nb < 0) nb = 0;
  int64_t batch = 1;
  for (int d = 0; d < nb; d++) batch *= Y->dims[d];
  int64_t a_batch = 1, b_batch = 1;
  for (int d = 0; d < A->ndim - 2; d++) a_batch *= A->dims[d];
  for (int d = 0; d < B->ndim - 2; d++) b_batch *= B->dims[d];
  const float *a = A->data, *b = B->data;
  float *y = Y->data;
  if (batch > 0 && M > 0 && N > 0) {
    if (b_batch == 1 && a_batch == batch) {
      /* the common case (activations x weights): one GEMM over all rows */
      KEEL_TRY(sgemm(ex, false, false, batch * M, N, K, 1.f, a, b, 0.f, y));
    } else if (a_batch == batch && b_batch == batch) {
      float one = 1.f, zero = 0.f;
      if (batch > INT32_MAX || M > INT32_MAX || N > INT32_MAX || K > INT32_MAX)
        return keel_error(KEEL_UNSUPPORTED, "batched GEMM sizes exceed cuBLAS's 32-bit limits");
      CUBLAS(ex, keel_cublas.sgemm_strided_batched(ex->ctx->cublas, CUBLAS_OP_N, CUBLAS_OP_N, (int)N, (int)M, (int)K, &one, b,
                                           (int)N, K * N, a, (int)K, M * K, &zero, y, (int)N, M * N, (int)batch));
    } else {
      /* general broadcasting of batch dims: one GEMM per output matrix */
      int64_t sa[KEEL_MAX_DIMS] = {0}, sb[KEEL_MAX_DIMS] = {0};
      int64_t st = 1;
      for (int d = nb - 1, ad = A->ndim - 3; d >= 0; d--, ad--) {
        int64_t dim = ad >= 0 ? A->dims[ad] : 1;
        sa[d] = dim == 1 ? 0 : st;
        st *= dim;
      }
      st = 1;
      for (int d = nb - 1, bd = B->ndim - 3; d >= 0; d--, bd--) {
        int64_t dim = bd >= 0 ? B->dims[bd] : 1;
        sb[d] = dim == 1 ? 0 : st;
        st *= dim;
      }
      for (int64_t i = 0; i < batch; i++) {
        int64_t r = i, ia = 0, ib = 0;
        for (int d = nb - 1; d >= 0; d--) {
          int64_t idx = r % Y->dims[d];
          r /= Y->dims[d];
          ia += idx * sa[d];
          ib += idx * sb[d];
        }
        KEEL_TRY(sgemm(ex, false, false, M, N, K, 1.f, a + ia * M * K, b + ib * K * N, 0.f, y + i * M * N));
      }
    }
  }
  float al, be;
  int act = act_code(n, &al, &be);
  const float *bias = n_in > 2 && keel_view_present(&in[2]) ? in[2].data : NULL;
  int64_t total = numel(Y);
  if (bias || act != KCU_IDENTITY)
    LAUNCH(ex, kcu_bias_act(ex->stream, y, bias, N ? total / N : 0, N, 1, act, al, be));
  return NULL;
}

/* ---- convolution: im2col + cuBLAS (strided-batched over groups) ------------------------------------------------ */

typedef struct conv_geom {
  int64_t N, C, H, W, M, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw, group;
} conv_geom;

/* Begin pads for one spatial dim from auto_pad (output size as planned) or the pads attribute. */
static int64_t begin_pad(const keel_node *n, int d, int nsp, int64_t in, int64_t k, int64_t s, int64_t dil, int64_t outd) {
  const char *ap = keel_attr_string(n, "auto_pad", "NOTSET");
  if (!strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER")) {
    int64_t total = (outd - 1) * s + (k - 1) * dil + 1 - in;
    if (total < 0) total = 0;
    return !strcmp(ap, "SAME_UPPER") ? total / 2 : total - total / 2;
  }
  if (!strcmp(ap, "VALID")) return 0;
  const int64_t *pads = NULL;
  int np = keel_attr_ints(n, "pads", &pads);
  return np == 2 * nsp ? pads[d] : 0;
}

static int64_t attr_at(const keel_node *n, const char *name, int d, int nsp, int64_t dflt) {
  const int64_t *v = NULL;
  int c = keel_attr_ints(n, name, &v);
  return c == nsp ? v[d] : dflt;
}

static void conv_geometry(const keel_node *n, const keel_view *x, const keel_view *w, const keel_view *y, conv_geom *g) {
  int nsp = x->ndim - 2;
  g->N = x->dims[0];
  g->C = x->dims[1];
  g->M = y->dims[1];
  g->group = keel_attr_int(n, "group", 1);
  if (nsp == 1) {
    g->H = 1, g->W = x->dims[2], g->kh = 1, g->kw = w->dims[2], g->oh = 1, g->ow = y->dims[2];
    g->sh = 1, g->dh = 1, g->ph = 0;
    g->sw = attr_at(n, "strides", 0, 1, 1), g->dw = attr_at(n, "dilations", 0, 1, 1);
    g->pw = begin_pad(n, 0, 1, g->W, g->kw, g->sw, g->dw, g->ow);
  } else {
    g->H = x->dims[2], g->W = x->dims[3], g->kh = w->dims[2], g->kw = w->dims[3], g->oh = y->dims[2], g->ow = y->dims[3];
    g->sh = attr_at(n, "strides", 0, 2, 1), g->sw = attr_at(n, "strides", 1, 2, 1);
    g->dh = attr_at(n, "dilations", 0, 2, 1), g->dw = attr_at(n, "dilations", 1, 2, 1);
    g->ph = begin_pad(n, 0, 2, g->H, g->kh, g->sh, g->dh, g->oh);
    g->pw = begin_pad(n, 1, 2, g->W, g->kw, g->sw, g->dw, g->ow);
  }
}

static bool conv_is_pointwise(const conv_geom *g) {
  return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0 && g->oh == g->H &&
         g->ow == g->W;
}

static keel_status *check_conv(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  KEEL_TRY(check_f32(n, in, n_in, out, n_out));
  if (in[0].ndim != 3 && in[0].ndim != 4)
    return keel_error(KEEL_UNSUPPORTED, "%d-D convolution; the CUDA kernel does 1-D and 2-D", in[0].ndim - 2);
  int64_t group = keel_attr_int(n, "group", 1);
  if (group < 1 || in[0].dims[1] % group || out[0].dims[1] % group)
    return keel_error(KEEL_UNSUPPORTED, "group %lld does not divide the channels", (long long)group);
  return check_act(n);
}

static size_t ws_conv(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  conv_geom g;
  conv_geometry(n, &in[0], &in[1], &out[0], &g);
  if (conv_is_pointwise(&g)) return 0;
  return (size_t)(g.C * g.kh * g.kw * g.oh * g.ow) * sizeof(float);
}

static keel_status *run_conv(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                             keel_cuda_exec *ex) {
  conv_geom g;
  conv_geometry(n, &in[0], &in[1], &out[0], &g);
  const float *x = in[0].data, *w = in[1].data;
  float *y = out[0].data;
  int64_t Cg = g.C / g.group, Mg = g.M / g.group, KK = Cg * g.kh * g.kw, P = g.oh * g.ow;
  bool pw = conv_is_pointwise(&g);
  if (!pw && ex->workspace_bytes < (size_t)(g.C * g.kh * g.kw * P) * sizeof(float))
    return keel_error(KEEL_INTERNAL, "convolution workspace of %zu bytes is too small", ex->workspace_bytes);
  if (P > INT32_MAX || Mg > INT32_MAX || KK > INT32_MAX || g.group > INT32_MAX)
    return keel_error(KEEL_UNSUPPORTED, "convolution sizes exceed cuBLAS's 32-bit limits");
  float one = 1.f, zero = 0.f;
  for (int64_t b = 0; b < g.N; b++) {
    const float *xb = x + b * g.C * g.H * g.W;
    const float *col = xb;
    if (!pw) {
      LAUNCH(ex, kcu_im2col(ex->stream, xb, ex->workspace, g.C, g.H, g.W, g.kh, g.kw, g.ph, g.pw, g.sh, g.sw, g.dh,
                            g.dw, g.oh, g.ow));
      col = ex->workspace;
    }
    /* per group: Y_g[Mg, P] = W_g[Mg, KK] x col_g[KK, P] */
    CUBLAS(ex, keel_cublas.sgemm_strided_batched(ex->ctx->cublas, CUBLAS_OP_N, CUBLAS_OP_N, (int)P, (int)Mg, (int)KK, &one, col,
                                         (int)P, KK * P, w, (int)KK, Mg * KK, &zero, y + b * g.M * P, (int)P, Mg * P,
                                         (int)g.group));
  }
  float a, bb;
  int act = act_code(n, &a, &bb);
  const float *bias = n_in > 2 && keel_view_present(&in[2]) ? in[2].data : NULL;
  if (bias || act != KCU_IDENTITY) LAUNCH(ex, kcu_bias_act(ex->stream, y, bias, g.N, g.M, P, act, a, bb));
  return NULL;
}

/* ---- pooling ----------------------------------------------------------------------------------------------------- */

static keel_status *check_pool(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  KEEL_TRY(need_f32(in, 1, "input"));
  if (n_out > 1 && keel_view_present(&out[1]))
    return keel_error(KEEL_UNSUPPORTED, "MaxPool's Indices output has no CUDA kernel");
  if (in[0].ndim != 3 && in[0].ndim != 4)
    return keel_error(KEEL_UNSUPPORTED, "%d-D pooling; the CUDA kernel does 1-D and 2-D", in[0].ndim - 2);
  return NULL;
}

static keel_status *run_pool(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                             keel_cuda_exec *ex) {
  const keel_view *x = &in[0], *y = &out[0];
  int nsp = x->ndim - 2;
  bool is_max = !strcmp(n->op_type, "MaxPool");
  int64_t H = nsp == 2 ? x->dims[2] : 1, W = x->dims[x->ndim - 1];
  int64_t oh = nsp == 2 ? y->dims[2] : 1, ow = y->dims[y->ndim - 1];
  int64_t kh = nsp == 2 ? attr_at(n, "kernel_shape", 0, 2, 1) : 1, kw = attr_at(n, "kernel_shape", nsp - 1, nsp, 1);
  int64_t sh = nsp == 2 ? attr_at(n, "strides", 0, 2, 1) : 1, sw = attr_at(n, "strides", nsp - 1, nsp, 1);
  int64_t dh = nsp == 2 ? attr_at(n, "dilations", 0, 2, 1) : 1, dw = attr_at(n, "dilations", nsp - 1, nsp, 1);
  int64_t ph = nsp == 2 ? begin_pad(n, 0, 2, H, kh, sh, dh, oh) : 0, pw = begin_pad(n, nsp - 1, nsp, W, kw, sw, dw, ow);
  int count_pad = (int)keel_attr_int(n, "count_include_pad", 0);
  LAUNCH(ex, kcu_pool2d(ex->stream, x->data, y->data, x->dims[0] * x->dims[1], H, W, oh, ow, kh, kw, sh, sw, ph, pw, dh,
                        dw, is_max, count_pad));
  return NULL;
}

static keel_status *run_global_pool(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                    keel_cuda_exec *ex) {
  int64_t rows = in[0].dims[0] * (in[0].ndim > 1 ? in[0].dims[1] : 1);
  int64_t len = rows ? numel(&in[0]) / rows : 0;
  int op = !strcmp(n->op_type, "GlobalMaxPool") ? KCU_RMAX : KCU_RMEAN;
  LAUNCH(ex, kcu_rows_reduce(ex->stream, in[0].data, out[0].data, rows, len, op));
  return NULL;
}

/* ---- reductions --------------------------------------------------------------------------------------------------- */

static int reduce_code(const char *op) {
  static const struct {
    const char *name;
    int code;
  } t[] = {{"ReduceSum", KCU_RSUM},   {"ReduceMean", KCU_RMEAN}, {"ReduceMax", KCU_RMAX},
           {"ReduceMin", KCU_RMIN},   {"ReduceProd", KCU_RPROD}, {"ReduceL2", KCU_RL2},
           {"ReduceL1", KCU_RL1},     {"ReduceSumSquare", KCU_RSUMSQ}, {"ReduceLogSumExp", KCU_RLOGSUMEXP}};
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
    if (!strcmp(op, t[i].name)) return t[i].code;
  return -1;
}

/* Which input axes are reduced (from the axes attribute or the constant axes input). */
static keel_status *reduce_axes(const keel_node *n, const keel_view *hin, int n_in, int rank, bool *red) {
  memset(red, 0, sizeof(bool) * KEEL_MAX_DIMS);
  bool from_input = (!strcmp(n->op_type, "ReduceSum") && n->opset >= 13) || n->opset >= 18;
  int64_t axes[KEEL_MAX_DIMS];
  int na = -1;
  if (from_input) {
    if (n_in > 1 && keel_view_present(&hin[1])) {
      if (!hin[1].data) return keel_error(KEEL_UNSUPPORTED, "axes computed at run time; CUDA needs them constant");
      int64_t c = keel_view_numel(&hin[1]);
      if (c > KEEL_MAX_DIMS) return keel_error(KEEL_INVALID_MODEL, "%lld axes for a rank-%d input", (long long)c, rank);
      na = (int)c;
      for (int i = 0; i < na; i++) axes[i] = keel_view_get_i64(&hin[1], i);
    }
  } else {
    const int64_t *a = NULL;
    int c = keel_attr_ints(n, "axes", &a);
    if (c > KEEL_MAX_DIMS) return keel_error(KEEL_INVALID_MODEL, "%d axes for a rank-%d input", c, rank);
    if (c >= 0) {
      na = c;
      for (int i = 0; i < na; i++) axes[i] = a[i];
    }
  }
  if (na <= 0) {
    bool noop = keel_attr_int(n, "noop_with_empty_axes", 0) != 0;
    for (int d = 0; d < rank; d++) red[d] = !noop;
    return NULL;
  }
  for (int i = 0; i < na; i++) {
    int64_t ax = axes[i] < 0 ? axes[i] + rank : axes[i];
    if (ax < 0 || ax >= rank) return keel_error(KEEL_INVALID_MODEL, "axis %lld out of range for rank %d", (long long)axes[i], rank);
    red[ax] = true;
  }
  return NULL;
}

static keel_status *check_reduce(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  KEEL_TRY(need_f32(in, 1, "input"));
  bool red[KEEL_MAX_DIMS];
  return reduce_axes(n, in, n_in, in[0].ndim, red);
}

static keel_status *run_reduce(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                               keel_cuda_exec *ex) {
  const keel_view *x = &in[0];
  bool red[KEEL_MAX_DIMS];
  KEEL_TRY(reduce_axes(n, ex->host, n_in, x->ndim, red));
  int op = reduce_code(n->op_type);
  kcu_reduce r;
  memset(&r, 0, sizeof r);
  int64_t st[KEEL_MAX_DIMS], s = 1;
  for (int d = x->ndim - 1; d >= 0; d--) {
    st[d] = s;
    s *= x->dims[d];
  }
  r.n_out = r.n_red = 1;
  bool trailing = true, seen_red = false;
  for (int d = 0; d < x->ndim; d++) {
    if (red[d]) {
      r.red_dims[r.ndim_red] = x->dims[d];
      r.red_strides[r.ndim_red++] = st[d];
      r.n_red *= x->dims[d];
      seen_red = true;
    } else {
      if (seen_red && x->dims[d] != 1) trailing = false;
      r.out_dims[r.ndim_out] = x->dims[d];
      r.out_strides[r.ndim_out++] = st[d];
      r.n_out *= x->dims[d];
    }
  }
  if (r.ndim_out == 0) {
    r.ndim_out = 1;
    r.out_dims[0] = 1;
    r.out_strides[0] = 0;
  }
  if (r.ndim_red == 0) { /* nothing reduced (noop_with_empty_axes): still apply the op to each element */
    r.ndim_red = 1;
    r.red_dims[0] = 1;
    r.red_strides[0] = 0;
  }
  if (trailing && op != KCU_RPROD && op != KCU_RLOGSUMEXP && r.n_red > 1)
    LAUNCH(ex, kcu_rows_reduce(ex->stream, x->data, out[0].data, r.n_out, r.n_red, op));
  else
    LAUNCH(ex, kcu_reduce_general(ex->stream, x->data, out[0].data, &r, op));
  return NULL;
}

/* ---- softmax, normalization ----------------------------------------------------------------------------------- */

static keel_status *run_softmax(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                keel_cuda_exec *ex) {
  const keel_view *x = &in[0];
  int rank = x->ndim;
  int64_t axis = keel_attr_int(n, "axis", n->opset < 13 ? 1 : -1);
  if (axis < 0) axis += rank;
  if (rank == 0) axis = 0;
  int64_t outer = 1, mid = 1, inner = 1;
  for (int d = 0; d < rank; d++) {
    if (d < axis) outer *= x->dims[d];
    else if (d == axis || n->opset < 13) mid *= x->dims[d];
    else inner *= x->dims[d];
  }
  LAUNCH(ex, kcu_softmax(ex->stream, x->data, out[0].data, outer, mid, inner, !strcmp(n->op_type, "LogSoftmax")));
  return NULL;
}

/* keel.ScaleMaskSoftmax (attention scores): scale, broadcast mask add and last-axis softmax in one kernel */
static keel_status *run_scale_mask_softmax(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                           keel_cuda_exec *ex) {
  const bool has_mask = n_in >= 2 && keel_view_present(&in[1]);
  kcu_bcast bc;
  make_bcast(&in[0], has_mask ? &in[1] : NULL, &out[0], &bc);
  LAUNCH(ex, kcu_scale_mask_softmax(ex->stream, in[0].data, has_mask ? in[1].data : NULL, out[0].data, &bc,
                                    keel_attr_float(n, "scale", 1.0f)));
  return NULL;
}


static keel_status *check_layernorm(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  KEEL_TRY(check_f32(n, in, n_in, out, 1));
  for (int k = 1; k < n_out; k++)
    if (keel_view_present(&out[k])) return keel_error(KEEL_UNSUPPORTED, "the Mean/InvStdDev outputs have no CUDA kernel");
  int64_t axis = keel_attr_int(n, "axis", -1);
  if (axis < 0) axis += in[0].ndim;
  int64_t len = 1;
  for (int d = (int)axis; d < in[0].ndim; d++) len *= in[0].dims[d];
  for (int k = 1; k < n_in && k < 3; k++)
    if (keel_view_present(&in[k]) && numel(&in[k]) != len)
      return keel_error(KEEL_UNSUPPORTED, "input %d broadcasts (%lld elements for %lld normalized); CUDA needs full size", k,
                        (long long)numel(&in[k]), (long long)len);
  return NULL;
}

static keel_status *run_layernorm(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                  keel_cuda_exec *ex) {
  int64_t axis = keel_attr_int(n, "axis", -1);
  if (axis < 0) axis += in[0].ndim;
  int64_t rows = 1, len = 1;
  for (int d = 0; d < in[0].ndim; d++) {
    if (d < axis) rows *= in[0].dims[d];
    else len *= in[0].dims[d];
  }
  const float *scale = n_in > 1 && keel_view_present(&in[1]) ? in[1].data : NULL;
  const float *bias = n_in > 2 && keel_view_present(&in[2]) ? in[2].data : NULL;
  LAUNCH(ex, kcu_layernorm(ex->stream, in[0].data, scale, bias, out[0].data, rows, len,
                           keel_attr_float(n, "epsilon", 1e-5f)));
  return NULL;
}

static keel_status *check_batchnorm(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  KEEL_TRY(check_f32(n, in, n_in, out, 1));
  if (keel_attr_int(n, "training_mode", 0)) return keel_error(KEEL_UNSUPPORTED, "training_mode has no CUDA kernel");
  if (n_in < 5) return keel_error(KEEL_INVALID_MODEL, "BatchNormalization needs 5 inputs, got %d", n_in);
  for (int k = 1; k < n_out; k++)
    if (keel_view_present(&out[k])) return keel_error(KEEL_UNSUPPORTED, "training outputs have no CUDA kernel");
  return NULL;
}

static keel_status *run_batchnorm(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                  keel_cuda_exec *ex) {
  const keel_view *x = &in[0];
  int64_t N = x->dims[0], C = x->ndim > 1 ? x->dims[1] : 1, inner = 1;
  for (int d = 2; d < x->ndim; d++) inner *= x->dims[d];
  LAUNCH(ex, kcu_batchnorm(ex->stream, x->data, in[1].data, in[2].data, in[3].data, in[4].data, out[0].data, N, C, inner,
                           keel_attr_float(n, "epsilon", 1e-5f)));
  return NULL;
}

/* ---- data movement ------------------------------------------------------------------------------------------------- */

static void strides_of(const keel_view *v, int64_t *st) {
  int64_t s = 1;
  for (int d = v->ndim - 1; d >= 0; d--) {
    st[d] = s;
    s *= v->dims[d];
  }
}

static keel_status *check_esize(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  size_t es = keel_dtype_size(out[0].dtype);
  if (es != 1 && es != 2 && es != 4 && es != 8)
    return keel_error(KEEL_UNSUPPORTED, "dtype %s has no CUDA copy kernel", keel_dtype_name(out[0].dtype));
  return NULL;
}

static keel_status *run_transpose(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                  keel_cuda_exec *ex) {
  const keel_view *x = &in[0];
  int64_t st[KEEL_MAX_DIMS];
  strides_of(x, st);
  const int64_t *perm = NULL;
  int np = keel_attr_ints(n, "perm", &perm);
  kcu_strided d;
  memset(&d, 0, sizeof d);
  d.ndim = x->ndim;
  d.n = numel(&out[0]);
  for (int k = 0; k < x->ndim; k++) {
    int64_t p = np == x->ndim ? perm[k] : x->ndim - 1 - k;
    d.dims[k] = out[0].dims[k];
    d.strides[k] = st[p];
  }
  if (d.ndim == 0) d.ndim = 1, d.dims[0] = 1, d.strides[0] = 0;
  LAUNCH(ex, kcu_strided_copy(ex->stream, x->data, out[0].data, (int)keel_dtype_size(x->dtype), &d));
  return NULL;
}

static keel_status *run_expand(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                               keel_cuda_exec *ex) {
  kcu_strided d;
  memset(&d, 0, sizeof d);
  d.ndim = out[0].ndim;
  d.n = numel(&out[0]);
  bcast_strides(&in[0], &out[0], d.strides);
  for (int k = 0; k < d.ndim; k++) d.dims[k] = out[0].dims[k];
  if (d.ndim == 0) d.ndim = 1, d.dims[0] = 1, d.strides[0] = 0;
  LAUNCH(ex, kcu_strided_copy(ex->stream, in[0].data, out[0].data, (int)keel_dtype_size(out[0].dtype), &d));
  return NULL;
}

static keel_status *check_slice(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  KEEL_TRY(check_esize(n, in, n_in, out, n_out));
  if (n->opset >= 10)
    for (int k = 1; k < n_in && k < 5; k++)
      if (keel_view_present(&in[k]) && !in[k].data)
        return keel_error(KEEL_UNSUPPORTED, "input %d is computed at run time; CUDA Slice needs constant starts/ends/axes/steps", k);
  return NULL;
}

static keel_status *run_slice(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                              keel_cuda_exec *ex) {
  const keel_view *x = &in[0];
  const keel_view *h = ex->host;
  int64_t st[KEEL_MAX_DIMS], start[KEEL_MAX_DIMS] = {0}, step[KEEL_MAX_DIMS];
  strides_of(x, st);
  for (int d = 0; d < x->ndim; d++) step[d] = 1;
  int64_t cnt;
  const int64_t *s_attr = NULL, *a_attr = NULL;
  if (n->opset < 10) {
    cnt = keel_attr_ints(n, "starts", &s_attr);
    int na = keel_attr_ints(n, "axes", &a_attr);
    if (na >= 0 && na != cnt) a_attr = NULL;
  } else {
    cnt = keel_view_numel(&h[1]);
  }
  for (int64_t i = 0; i < cnt && cnt > 0; i++) {
    int64_t ax, s, sp = 1;
    if (n->opset < 10) {
      ax = a_attr ? a_attr[i] : i;
      s = s_attr[i];
    } else {
      ax = n_in > 3 && keel_view_present(&h[3]) ? keel_view_get_i64(&h[3], i) : i;
      s = keel_view_get_i64(&h[1], i);
      sp = n_in > 4 && keel_view_present(&h[4]) ? keel_view_get_i64(&h[4], i) : 1;
    }
    if (ax < 0) ax += x->ndim;
    if (ax < 0 || ax >= x->ndim) return keel_error(KEEL_INVALID_MODEL, "slice axis %lld out of range", (long long)ax);
    int64_t dim = x->dims[ax];
    if (s < 0) s += dim;
    if (sp > 0) s = s < 0 ? 0 : (s > dim ? dim : s);
    else s = s < 0 ? 0 : (s > dim - 1 ? dim - 1 : s);
    start[ax] = s;
    step[ax] = sp;
  }
  kcu_strided d;
  memset(&d, 0, sizeof d);
  d.ndim = x->ndim;
  d.n = numel(&out[0]);
  for (int k = 0; k < x->ndim; k++) {
    d.dims[k] = out[0].dims[k];
    d.strides[k] = step[k] * st[k];
    d.offset += start[k] * st[k];
  }
  if (d.ndim == 0) d.ndim = 1, d.dims[0] = 1, d.strides[0] = 0;
  LAUNCH(ex, kcu_strided_copy(ex->stream, x->data, out[0].data, (int)keel_dtype_size(x->dtype), &d));
  return NULL;
}

static keel_status *run_concat(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                               keel_cuda_exec *ex) {
  const keel_view *y = &out[0];
  int64_t axis = keel_attr_int(n, "axis", 0);
  if (axis < 0) axis += y->ndim;
  size_t es = keel_dtype_size(y->dtype);
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < y->ndim; d++) {
    if (d < axis) outer *= y->dims[d];
    else if (d > axis) inner *= y->dims[d];
  }
  size_t row = (size_t)(y->dims[axis] * inner) * es, off = 0;
  for (int k = 0; k < n_in; k++) {
    if (!keel_view_present(&in[k])) continue;
    size_t width = (size_t)(in[k].dims[axis] * inner) * es;
    if (width && outer)
      KEEL_CUDA_CHECK(cudaMemcpy2DAsync((char *)y->data + off, row, in[k].data, width, width, (size_t)outer,
                                        cudaMemcpyDeviceToDevice, ex->stream),
                      ex->ctx->device, (long long)(width * (size_t)outer));
    off += width;
  }
  return NULL;
}

static keel_status *check_gather(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  KEEL_TRY(check_esize(n, in, n_in, out, n_out));
  if (in[1].dtype != KEEL_INT64 && in[1].dtype != KEEL_INT32)
    return keel_error(KEEL_UNSUPPORTED, "indices of dtype %s", keel_dtype_name(in[1].dtype));
  return NULL;
}

static keel_status *run_gather(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                               keel_cuda_exec *ex) {
  const keel_view *x = &in[0];
  int64_t axis = keel_attr_int(n, "axis", 0);
  if (axis < 0) axis += x->ndim;
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < x->ndim; d++) {
    if (d < axis) outer *= x->dims[d];
    else if (d > axis) inner *= x->dims[d];
  }
  LAUNCH(ex, kcu_gather(ex->stream, x->data, in[1].data, in[1].dtype == KEEL_INT64, out[0].data,
                        (int)keel_dtype_size(x->dtype), outer, x->dims[axis], numel(&in[1]), inner));
  return NULL;
}

static int cast_type(keel_dtype t) {
  switch (t) {
    case KEEL_FLOAT32: return 0;
    case KEEL_INT64: return 1;
    case KEEL_INT32: return 2;
    case KEEL_BOOL: return 3;
    default: return -1;
  }
}

static keel_status *check_cast(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  if (cast_type(in[0].dtype) < 0 || cast_type(out[0].dtype) < 0)
    return keel_error(KEEL_UNSUPPORTED, "Cast %s -> %s; CUDA casts among float32, int64, int32 and bool",
                      keel_dtype_name(in[0].dtype), keel_dtype_name(out[0].dtype));
  return NULL;
}

static keel_status *run_cast(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                             keel_cuda_exec *ex) {
  if (in[0].dtype == out[0].dtype) return run_alias(n, in, n_in, out, n_out, ex);
  LAUNCH(ex, kcu_cast(ex->stream, in[0].data, cast_type(in[0].dtype), out[0].data, cast_type(out[0].dtype),
                      numel(&out[0])));
  return NULL;
}

static keel_status *check_where(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  if (in[0].dtype != KEEL_BOOL) return keel_error(KEEL_UNSUPPORTED, "condition of dtype %s", keel_dtype_name(in[0].dtype));
  KEEL_TRY(need_f32(in + 1, 2, "value input"));
  return NULL;
}

static keel_status *run_where(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                              keel_cuda_exec *ex) {
  kcu_bcast ab, cc;
  make_bcast(&in[1], &in[2], &out[0], &ab);
  make_bcast(&in[0], NULL, &out[0], &cc);
  LAUNCH(ex, kcu_where(ex->stream, in[0].data, in[1].data, in[2].data, out[0].data, &ab, &cc));
  return NULL;
}

/* ---- the table ---------------------------------------------------------------------------------------------------- */

static const keel_cuda_op cuda_ops[] = {
    {"Add", run_binary, check_binary, NULL},       {"Sub", run_binary, check_binary, NULL},
    {"Mul", run_binary, check_binary, NULL},       {"Div", run_binary, check_binary, NULL},
    {"Pow", run_binary, check_binary, NULL},       {"Max", run_binary, check_binary, NULL},
    {"Min", run_binary, check_binary, NULL},       {"PRelu", run_binary, check_binary, NULL},
    {"Relu", run_unary, check_f32, NULL},          {"LeakyRelu", run_unary, check_f32, NULL},
    {"Sigmoid", run_unary, check_f32, NULL},       {"Tanh", run_unary, check_f32, NULL},
    {"Erf", run_unary, check_f32, NULL},           {"Exp", run_unary, check_f32, NULL},
    {"Log", run_unary, check_f32, NULL},           {"Sqrt", run_unary, check_f32, NULL},
    {"Neg", run_unary, check_f32, NULL},           {"Abs", run_unary, check_f32, NULL},
    {"Reciprocal", run_unary, check_f32, NULL},    {"HardSigmoid", run_unary, check_f32, NULL},
    {"HardSwish", run_unary, check_f32, NULL},     {"Elu", run_unary, check_f32, NULL},
    {"Softplus", run_unary, check_f32, NULL},      {"Floor", run_unary, check_f32, NULL},
    {"Ceil", run_unary, check_f32, NULL},          {"Sin", run_unary, check_f32, NULL},
    {"Cos", run_unary, check_f32, NULL},           {"Softsign", run_unary, check_f32, NULL},
    {"Selu", run_unary, check_f32, NULL},          {"Gelu", run_unary, check_f32, NULL},
    {"Clip", run_clip, check_clip, NULL},
    {"Reshape", run_alias, NULL, NULL},            {"Flatten", run_alias, NULL, NULL},
    {"Squeeze", run_alias, NULL, NULL},            {"Unsqueeze", run_alias, NULL, NULL},
    {"Identity", run_alias, NULL, NULL},           {"Dropout", run_alias, NULL, NULL},
    {"Gemm", run_gemm, check_gemm, NULL},          {"MatMul", run_matmul, check_matmul, NULL},
    {"Conv", run_conv, check_conv, ws_conv},
    {"MaxPool", run_pool, check_pool, NULL},       {"AveragePool", run_pool, check_pool, NULL},
    {"GlobalAveragePool", run_global_pool, check_f32, NULL},
    {"GlobalMaxPool", run_global_pool, check_f32, NULL},
    {"ReduceSum", run_reduce, check_reduce, NULL}, {"ReduceMean", run_reduce, check_reduce, NULL},
    {"ReduceMax", run_reduce, check_reduce, NULL}, {"ReduceMin", run_reduce, check_reduce, NULL},
    {"ReduceProd", run_reduce, check_reduce, NULL}, {"ReduceL1", run_reduce, check_reduce, NULL},
    {"ReduceL2", run_reduce, check_reduce, NULL},  {"ReduceSumSquare", run_reduce, check_reduce, NULL},
    {"ReduceLogSumExp", run_reduce, check_reduce, NULL},
    {"Softmax", run_softmax, check_f32, NULL},     {"LogSoftmax", run_softmax, check_f32, NULL},
    {"LayerNormalization", run_layernorm, check_layernorm, NULL},
    {"BatchNormalization", run_batchnorm, check_batchnorm, NULL},
    {"Transpose", run_transpose, check_esize, NULL}, {"Expand", run_expand, check_esize, NULL},
    {"Slice", run_slice, check_slice, NULL},       {"Concat", run_concat, NULL, NULL},
    {"Gather", run_gather, check_gather, NULL},    {"Cast", run_cast, check_cast, NULL},
    {"Where", run_where, check_where, NULL},
};

/* keel.SkipLayerNorm(X, skip, gamma, beta): the residual Add into the output, then LayerNorm in place over
 * the last axis (the row kernel reads a row fully before writing it). */
static keel_status *check_skip_layernorm(const keel_node *n, const keel_view *in, int n_in, const keel_view *out,
                                         int n_out) {
  KEEL_TRY(check_f32(n, in, n_in, out, 1));
  if (n_in != 4) return keel_error(KEEL_INVALID_MODEL, "SkipLayerNorm takes X, skip, gamma, beta");
  const int64_t len = out[0].ndim ? out[0].dims[out[0].ndim - 1] : 1;
  for (int k = 2; k < 4; k++)
    if (numel(&in[k]) != len)
      return keel_error(KEEL_UNSUPPORTED, "input %d has %lld elements for rows of %lld; CUDA needs full size", k,
                        (long long)numel(&in[k]), (long long)len);
  return NULL;
}

static keel_status *run_skip_layernorm(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                       keel_cuda_exec *ex) {
  kcu_bcast bc;
  make_bcast(&in[0], &in[1], &out[0], &bc);
  LAUNCH(ex, kcu_binary(ex->stream, binary_code("Add"), in[0].data, in[1].data, out[0].data, &bc));
  const int64_t len = out[0].ndim ? out[0].dims[out[0].ndim - 1] : 1;
  LAUNCH(ex, kcu_layernorm(ex->stream, out[0].data, in[2].data, in[3].data, out[0].data, len ? bc.n / len : 0, len,
                           keel_attr_float(n, "epsilon", 1e-5f)));
  return NULL;
}

/* keel.MultiHeadAttention(Q [B,S,H,D], K [B,Sk,H,D], V [B,Sk,H,Dv], [mask]; scale) -> [B,S,H,Dv]: per batch,
 * one strided-batched GEMM over the heads for the scores (read through the head stride, no transposes),
 * one scale+mask+softmax launch over all scores, one strided-batched GEMM for the context. The CPU kernel
 * also broadcasts B and H between Q, K and V; CUDA takes equal B and H (what the fusion makes of BERT). */
static keel_status *check_mha(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  KEEL_TRY(check_f32(n, in, n_in, out, 1));
  if (n_in < 3) return keel_error(KEEL_INVALID_MODEL, "MultiHeadAttention takes Q, K, V and a mask");
  for (int k = 0; k < 3; k++)
    if (in[k].ndim != 4) return keel_error(KEEL_UNSUPPORTED, "input %d is not 4-D", k);
  const keel_view *q = &in[0], *k = &in[1], *v = &in[2];
  if (k->dims[0] != q->dims[0] || v->dims[0] != q->dims[0] || k->dims[2] != q->dims[2] || v->dims[2] != q->dims[2])
    return keel_error(KEEL_UNSUPPORTED, "Q, K and V broadcast batch or heads; the CUDA kernel takes equal ones");
  if (out[0].ndim != 4 || out[0].dims[1] != q->dims[1])
    return keel_error(KEEL_UNSUPPORTED, "the mask broadcasts the query length; the CUDA kernel does not");
  if (q->dims[1] > INT32_MAX || k->dims[1] > INT32_MAX || q->dims[3] > INT32_MAX || v->dims[3] > INT32_MAX ||
      q->dims[2] > INT32_MAX || q->dims[2] * q->dims[3] > INT32_MAX || q->dims[2] * v->dims[3] > INT32_MAX)
    return keel_error(KEEL_UNSUPPORTED, "attention sizes exceed cuBLAS's 32-bit limits");
  return NULL;
}

static size_t ws_mha(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  /* the scores, [B, H, S, Sk] */
  return (size_t)in[0].dims[0] * (size_t)in[0].dims[2] * (size_t)in[0].dims[1] * (size_t)in[1].dims[1] * sizeof(float);
}

static keel_status *run_mha(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                            keel_cuda_exec *ex) {
  const int64_t B = in[0].dims[0], S = in[0].dims[1], H = in[0].dims[2], D = in[0].dims[3];
  const int64_t Sk = in[1].dims[1], Dv = in[2].dims[3];
  if (B * H * S * Sk == 0 || Dv == 0) return NULL;
  float *scores = ex->workspace;
  const float *q = in[0].data, *k = in[1].data, *v = in[2].data;
  float *y = out[0].data;
  const float one = 1.f, zero = 0.f;
  /* column-major view of row-major data: scores_bh^T (Sk x S) = K_bh (Sk x D) . Q_bh^T, heads batched */
  for (int64_t b = 0; b < B; b++)
    CUBLAS(ex, keel_cublas.sgemm_strided_batched(ex->ctx->cublas, CUBLAS_OP_T, CUBLAS_OP_N, (int)Sk, (int)S, (int)D, &one,
                                                 k + b * Sk * H * D, (int)(H * D), D, q + b * S * H * D, (int)(H * D), D,
                                                 &zero, scores + b * H * S * Sk, (int)Sk, S * Sk, (int)H));
  kcu_bcast bc;
  memset(&bc, 0, sizeof bc);
  const int64_t sd[4] = {B, H, S, Sk};
  bc.ndim = 4;
  bc.n = B * H * S * Sk;
  int64_t st = 1;
  for (int d = 3; d >= 0; d--) {
    bc.dims[d] = sd[d];
    bc.sa[d] = st;
    st *= sd[d];
  }
  const bool has_mask = n_in >= 4 && keel_view_present(&in[3]);
  if (has_mask) { /* the mask's strides against [B, H, S, Sk], right-aligned, 0 where it broadcasts */
    const keel_view *m = &in[3];
    int64_t ms = 1;
    for (int d = 3, md = m->ndim - 1; d >= 0; d--, md--) {
      const int64_t dim = md >= 0 ? m->dims[md] : 1;
      bc.sb[d] = dim == 1 ? 0 : ms;
      ms *= dim;
    }
  }
  LAUNCH(ex, kcu_scale_mask_softmax(ex->stream, scores, has_mask ? in[3].data : NULL, scores, &bc,
                                    keel_attr_float(n, "scale", 1.0f)));
  /* y_bh^T (Dv x S) = V_bh^T (Dv x Sk) . P_bh^T (Sk x S), written through the head stride of y */
  for (int64_t b = 0; b < B; b++)
    CUBLAS(ex, keel_cublas.sgemm_strided_batched(ex->ctx->cublas, CUBLAS_OP_N, CUBLAS_OP_N, (int)Dv, (int)S, (int)Sk, &one,
                                                 v + b * Sk * H * Dv, (int)(H * Dv), Dv, scores + b * H * S * Sk, (int)Sk,
                                                 S * Sk, &zero, y + b * S * H * Dv, (int)(H * Dv), Dv, (int)H));
  return NULL;
}

/* keel's own fusions (src/ops/fused.c) that map onto the kernels above: Gelu (erf form) and LayerNorm over the
 * last axis with full-size scale and bias (the check refuses anything else), ScaleMaskSoftmax, SkipLayerNorm and
 * MultiHeadAttention (above). */
static const keel_cuda_op cuda_keel_ops[] = {
    {"Gelu", run_unary, check_f32, NULL},
    {"LayerNorm", run_layernorm, check_layernorm, NULL},
    {"ScaleMaskSoftmax", run_scale_mask_softmax, check_f32, NULL},
    {"SkipLayerNorm", run_skip_layernorm, check_skip_layernorm, NULL},
    {"MultiHeadAttention", run_mha, check_mha, ws_mha},
};

const keel_cuda_op *keel_cuda_op_find(const keel_node *n) {
  if (!strcmp(n->domain, "keel")) {
    for (size_t i = 0; i < sizeof cuda_keel_ops / sizeof cuda_keel_ops[0]; i++)
      if (!strcmp(n->op_type, cuda_keel_ops[i].op_type)) return &cuda_keel_ops[i];
    return NULL;
  }
  if (n->domain[0] && strcmp(n->domain, "ai.onnx")) return NULL;
  for (size_t i = 0; i < sizeof cuda_ops / sizeof cuda_ops[0]; i++)
    if (!strcmp(n->op_type, cuda_ops[i].op_type)) return &cuda_ops[i];
  return NULL;
}

int keel_cuda_op_count(void) { return (int)(sizeof cuda_ops / sizeof cuda_ops[0]); }
const char *keel_cuda_op_name(int i) { return i >= 0 && i < keel_cuda_op_count() ? cuda_ops[i].op_type : NULL; }
#endif
