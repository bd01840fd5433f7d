/* Gemm and MatMul. float32 goes to keel's GEMM (backend/cpu/gemm.h), with a constant B packed once at
 * engine build (keel_nn_prepare) and bias / activation applied in its epilogue; float64 to OpenBLAS
 * (cblas_dgemm), as do float32 single-row products without a packed B (GEMV streams B once); 32/64-bit
 * integers use a plain i-k-j loop with wrap-around arithmetic (as ONNX Runtime does). All apply node->act
 * (fused activation). MatMul also takes an optional third input: a bias of length N added to every row,
 * which the fusion pass creates from MatMul+Add. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "backend/cpu/gemm.h"
#include "backend/cpu/threadpool.h"
#include "ops/act.h"
#include "ops/nn_internal.h"

/* ---------------------------------------------------------------- packed constant B (Gemm, MatMul) */

typedef struct mm_prep {
  const void *src; /* the constant's data: the run uses the packing only when B is still this */
  int64_t K, N;
  keel_gemm_packed *pb;
} mm_prep;

static void mm_prep_free(void *p) {
  mm_prep *m = p;
  keel_gemm_packed_free(m->pb);
  free(m);
}

/* The packed B of node n when it matches this call's B (same data, K, N); NULL otherwise. */
static const keel_gemm_packed *mm_packed(const keel_node *n, const keel_view *b, int64_t K, int64_t N) {
  const mm_prep *m = n->prepared;
  if (!m || n->prepared_free != mm_prep_free || m->src != b->data || m->K != K || m->N != N) return NULL;
  return m->pb;
}

static void mm_prepare(keel_node *n, const keel_graph *g, bool is_gemm) {
  if (n->n_inputs < 2 || n->inputs[1] < 0 || n->inputs[0] < 0) return;
  const keel_tensor *b = g->values[n->inputs[1]].constant;
  if (!b || keel_tensor_dtype(b) != KEEL_FLOAT32 || keel_tensor_ndim(b) != 2) return;
  const keel_value *a = &g->values[n->inputs[0]];
  if (a->dtype != KEEL_DTYPE_UNDEFINED && a->dtype != KEEL_FLOAT32) return;
  const int64_t *d = keel_tensor_dims(b);
  const bool tb = is_gemm && keel_attr_int(n, "transB", 0) != 0;
  const int64_t K = tb ? d[1] : d[0], N = tb ? d[0] : d[1];
  if (K < 1 || N < 1) return;
  mm_prep *m = calloc(1, sizeof *m);
  if (!m) return;
  m->src = keel_tensor_data_const(b);
  m->K = K;
  m->N = N;
  m->pb = tb ? keel_gemm_pack_b(m->src, K, N, 1, K) : keel_gemm_pack_b(m->src, K, N, N, 1);
  if (!m->pb) {
    free(m);
    return;
  }
  n->prepared = m;
  n->prepared_free = mm_prep_free;
}

keel_status *nn_conv_prepare(keel_node *n, const keel_graph *g); /* nn_conv.c */

keel_status *keel_nn_prepare(keel_node *n, const keel_graph *g) {
  if (n->domain[0] || n->prepared) return NULL;
  if (!strcmp(n->op_type, "Gemm")) mm_prepare(n, g, true);
  else if (!strcmp(n->op_type, "MatMul")) mm_prepare(n, g, false);
  else if (!strcmp(n->op_type, "Conv")) return nn_conv_prepare(n, g);
  return NULL;
}

static bool gemm_dtype_ok(keel_dtype t) {
  return t == KEEL_FLOAT32 || t == KEEL_FLOAT64 || t == KEEL_INT32 || t == KEEL_INT64 || t == KEEL_UINT32 ||
         t == KEEL_UINT64;
}

static keel_status *blas_range(int64_t a, int64_t b, int64_t c, int64_t d) {
  if (a > INT_MAX || b > INT_MAX || c > INT_MAX || d > INT_MAX)
    return keel_error(KEEL_UNSUPPORTED, "matrix dimensions exceed the BLAS int range");
  return NULL;
}

/* Integer products: unsigned arithmetic so overflow wraps instead of being undefined. */
#define DEFINE_INT_MM(SUF, T, U)                                                                               \
  /* y[M,N] (+)= a[M,K] * b[K,N] with element strides (lda etc. in elements; ta/tb swap the a/b strides). */  \
  static void int_mm_##SUF(const T *a, const T *b, T *y, int64_t M, int64_t N, int64_t K, int64_t a_rs,      \
                           int64_t a_cs, int64_t b_rs, int64_t b_cs, bool accumulate) {                       \
    for (int64_t i = 0; i < M; i++) {                                                                          \
      U *yr = (U *)(y + i * N);                                                                                \
      if (!accumulate)                                                                                         \
        for (int64_t j = 0; j < N; j++) yr[j] = 0;                                                             \
      for (int64_t k = 0; k < K; k++) {                                                                        \
        const U av = (U)a[i * a_rs + k * a_cs];                                                                \
        const T *br = b + k * b_rs;                                                                            \
        for (int64_t j = 0; j < N; j++) yr[j] += av * (U)br[j * b_cs];                                         \
      }                                                                                                        \
    }                                                                                                          \
  }
DEFINE_INT_MM(i32, int32_t, uint32_t)
DEFINE_INT_MM(i64, int64_t, uint64_t)
DEFINE_INT_MM(u32, uint32_t, uint32_t)
DEFINE_INT_MM(u64, uint64_t, uint64_t)

static void int_mm(keel_dtype t, const void *a, const void *b, void *y, int64_t M, int64_t N, int64_t K,
                   int64_t a_rs, int64_t a_cs, int64_t b_rs, int64_t b_cs, bool acc) {
  switch (t) {
    case KEEL_INT32: int_mm_i32(a, b, y, M, N, K, a_rs, a_cs, b_rs, b_cs, acc); break;
    case KEEL_INT64: int_mm_i64(a, b, y, M, N, K, a_rs, a_cs, b_rs, b_cs, acc); break;
    case KEEL_UINT32: int_mm_u32(a, b, y, M, N, K, a_rs, a_cs, b_rs, b_cs, acc); break;
    case KEEL_UINT64: int_mm_u64(a, b, y, M, N, K, a_rs, a_cs, b_rs, b_cs, acc); break;
    default: break;
  }
}

/* Element i of an int view as double / store a double into an int view (Gemm's alpha / beta scaling). */
static double int_get(keel_dtype t, const void *p, int64_t i) {
  switch (t) {
    case KEEL_INT32: return ((const int32_t *)p)[i];
    case KEEL_INT64: return (double)((const int64_t *)p)[i];
    case KEEL_UINT32: return ((const uint32_t *)p)[i];
    case KEEL_UINT64: return (double)((const uint64_t *)p)[i];
    default: return 0;
  }
}
static void int_set(keel_dtype t, void *p, int64_t i, double v) {
  switch (t) {
    case KEEL_INT32: ((int32_t *)p)[i] = (int32_t)v; break;
    case KEEL_INT64: ((int64_t *)p)[i] = (int64_t)v; break;
    case KEEL_UINT32: ((uint32_t *)p)[i] = (uint32_t)v; break;
    case KEEL_UINT64: ((uint64_t *)p)[i] = (uint64_t)v; break;
    default: break;
  }
}
/* Copy element si of src into di of dst (same int dtype). */
static void int_copy(keel_dtype t, void *dst, int64_t di, const void *src, int64_t si) {
  size_t e = keel_dtype_size(t);
  memcpy((char *)dst + (size_t)di * e, (const char *)src + (size_t)si * e, e);
}

/* Fused activation on integer outputs (rare: the fusion pass does not look at dtypes), through double. */
static void int_act(const keel_node *n, keel_dtype t, void *y, int64_t count) {
  if (n->act == KEEL_ACT_NONE) return;
  for (int64_t i = 0; i < count; i++) {
    double v = int_get(t, y, i);
    keel_act_apply_f64(&v, 1, n->act, n->act_alpha, n->act_beta);
    int_set(t, y, i, v);
  }
}

/* ---------------------------------------------------------------- Gemm */

typedef struct gemm_geom {
  int64_t M, N, K;
  bool ta, tb;
  int64_t c_rs, c_cs; /* element strides of C broadcast over (M, N); 0 on broadcast dims */
  bool has_c;
} gemm_geom;

static keel_status *gemm_geom_get(const keel_node *n, const keel_view *in, int n_in, gemm_geom *g) {
  KEEL_TRY(nn_need_inputs(n, n_in, 2, 3));
  const keel_view *a = &in[0], *b = &in[1];
  if (!nn_has(in, n_in, 0) || !nn_has(in, n_in, 1))
    return keel_error(KEEL_INVALID_MODEL, "inputs A and B are required");
  if (!gemm_dtype_ok(a->dtype))
    return keel_error(KEEL_UNSUPPORTED, "input A has dtype %s; float32, float64, float16, bfloat16 and 32/64-bit integers are"
                                          " supported",
                      keel_dtype_name(a->dtype));
  if (b->dtype != a->dtype)
    return keel_error(KEEL_SHAPE_MISMATCH, "input B has dtype %s but A has %s", keel_dtype_name(b->dtype),
                      keel_dtype_name(a->dtype));
  if (a->ndim != 2 || b->ndim != 2)
    return keel_error(KEEL_SHAPE_MISMATCH, "inputs A and B must be 2-D (got rank %d and %d)", a->ndim, b->ndim);
  g->ta = keel_attr_int(n, "transA", 0) != 0;
  g->tb = keel_attr_int(n, "transB", 0) != 0;
  g->M = a->dims[g->ta ? 1 : 0];
  g->K = a->dims[g->ta ? 0 : 1];
  int64_t kb = b->dims[g->tb ? 1 : 0];
  g->N = b->dims[g->tb ? 0 : 1];
  if (g->K >= 0 && kb >= 0 && g->K != kb)
    return keel_error(KEEL_SHAPE_MISMATCH, "inner dims differ: A gives K = %lld, B gives K = %lld%s",
                      (long long)g->K, (long long)kb, (g->ta || g->tb) ? " (after transA/transB)" : "");
  if (g->K < 0) g->K = kb;
  g->has_c = nn_has(in, n_in, 2);
  g->c_rs = g->c_cs = 0;
  if (g->has_c) {
    const keel_view *c = &in[2];
    if (c->dtype != a->dtype)
      return keel_error(KEEL_SHAPE_MISMATCH, "input C has dtype %s but A has %s", keel_dtype_name(c->dtype),
                        keel_dtype_name(a->dtype));
    if (c->ndim > 2) return keel_error(KEEL_SHAPE_MISMATCH, "input C has rank %d; at most 2 allowed", c->ndim);
    int64_t cr = c->ndim == 2 ? c->dims[0] : 1, cc = c->ndim >= 1 ? c->dims[c->ndim - 1] : 1;
    if ((cr != 1 && cr >= 0 && g->M >= 0 && cr != g->M) || (cc != 1 && cc >= 0 && g->N >= 0 && cc != g->N)) {
      char buf[80];
      return keel_error(KEEL_SHAPE_MISMATCH, "input C of shape %s does not broadcast to [%lld,%lld]",
                        keel_shape_format(c->dims, c->ndim, buf, sizeof buf), (long long)g->M, (long long)g->N);
    }
    g->c_cs = cc == 1 ? 0 : 1;
    g->c_rs = cr == 1 ? 0 : cc;
  }
  return NULL;
}

keel_status *nn_gemm_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  gemm_geom g;
  KEEL_TRY(gemm_geom_get(n, in, n_in, &g));
  int64_t dims[2] = {g.M, g.N};
  KEEL_TRY(nn_check_numel(n, dims, 2, keel_dtype_size(in[0].dtype)));
  keel_view_set_shape(&out[0], in[0].dtype, dims, 2);
  return NULL;
}

/* Scratch for keel's GEMM (float32): the panels of the operands that are not pre-packed (planned). */
size_t nn_gemm_workspace(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  gemm_geom g;
  keel_status *s = gemm_geom_get(n, in, n_in, &g);
  if (s) {
    keel_status_free(s);
    return 0;
  }
  if (in[0].dtype != KEEL_FLOAT32 || g.M < 1 || g.N < 1) return 0;
  return keel_gemm_workspace(g.M, g.N, g.K, false, mm_packed(n, &in[1], g.K, g.N) != NULL);
}

keel_status *nn_gemm_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                         keel_exec *ex) {
  gemm_geom g;
  KEEL_TRY(gemm_geom_get(n, in, n_in, &g));
  KEEL_TRY(blas_range(g.M, g.N, g.K, 0));
  const keel_dtype t = in[0].dtype;
  const float alpha = keel_attr_float(n, "alpha", 1.0f), beta = keel_attr_float(n, "beta", 1.0f);
  const bool use_c = g.has_c && beta != 0.0f;
  const void *A = in[0].data, *B = in[1].data, *C = use_c ? in[2].data : NULL;
  void *Y = out[0].data;
  const int64_t M = g.M, N = g.N, K = g.K;
  if (M == 0 || N == 0) return NULL;
  const int lda = (int)(in[0].dims[1] > 0 ? in[0].dims[1] : 1), ldb = (int)(in[1].dims[1] > 0 ? in[1].dims[1] : 1);
  const keel_gemm_packed *pb = t == KEEL_FLOAT32 ? mm_packed(n, &in[1], K, N) : NULL;
  if (t == KEEL_FLOAT32 && (M > 1 || pb)) {
    keel_gemm_operand oa = {A, g.ta ? 1 : lda, g.ta ? lda : 1, NULL}, ob = {B, g.tb ? 1 : ldb, g.tb ? ldb : 1, pb};
    keel_gemm_epilogue e = {.act = n->act, .act_alpha = n->act_alpha, .act_beta = n->act_beta};
    const float *Cf = C;
    if (C && g.c_rs == 0 && g.c_cs == 1 && beta == 1.0f) {
      e.col_bias = Cf; /* a bias row: added in the epilogue */
    } else if (C && g.c_rs == 1 && g.c_cs == 0 && beta == 1.0f) {
      e.row_bias = Cf;
    } else if (C) {
      for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) ((float *)Y)[i * N + j] = beta * Cf[i * g.c_rs + j * g.c_cs];
      e.beta = 1.0f;
    }
    if (!keel_sgemm(M, N, K, alpha, &oa, &ob, Y, N, &e, ex->workspace, ex->workspace_bytes,
                    keel_threads_effective(ex->num_threads)))
      return keel_error(KEEL_OUT_OF_MEMORY, "out of memory for GEMM scratch");
    return NULL;
  }
  if (t == KEEL_FLOAT32 || t == KEEL_FLOAT64) {
    const bool f32 = t == KEEL_FLOAT32;
    /* Y = beta * C (broadcast), then Y += alpha * op(A) op(B). */
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        if (f32)
          ((float *)Y)[i * N + j] = C ? beta * ((const float *)C)[i * g.c_rs + j * g.c_cs] : 0.0f;
        else
          ((double *)Y)[i * N + j] = C ? (double)beta * ((const double *)C)[i * g.c_rs + j * g.c_cs] : 0.0;
      }
    if (K > 0 && M == 1) {
      /* A single row (a classifier head): GEMV streams B once, where GEMM would pack it. */
      const int incx = g.ta ? lda : 1;
      if (f32) {
        if (g.tb)
          cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)N, (int)K, alpha, B, ldb, A, incx, 1.0f, Y, 1);
        else
          cblas_sgemv(CblasRowMajor, CblasTrans, (int)K, (int)N, alpha, B, ldb, A, incx, 1.0f, Y, 1);
      } else {
        if (g.tb)
          cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)N, (int)K, alpha, B, ldb, A, incx, 1.0, Y, 1);
        else
          cblas_dgemv(CblasRowMajor, CblasTrans, (int)K, (int)N, alpha, B, ldb, A, incx, 1.0, Y, 1);
      }
    } else if (K > 0) {
      enum CBLAS_TRANSPOSE TA = g.ta ? CblasTrans : CblasNoTrans, TB = g.tb ? CblasTrans : CblasNoTrans;
      if (f32)
        cblas_sgemm(CblasRowMajor, TA, TB, (int)M, (int)N, (int)K, alpha, A, lda, B, ldb, 1.0f, Y, (int)N);
      else
        cblas_dgemm(CblasRowMajor, TA, TB, (int)M, (int)N, (int)K, alpha, A, lda, B, ldb, 1.0, Y, (int)N);
    }
    if (f32)
      keel_act_apply_f32(Y, (size_t)(M * N), n->act, n->act_alpha, n->act_beta);
    else
      keel_act_apply_f64(Y, (size_t)(M * N), n->act, n->act_alpha, n->act_beta);
    return NULL;
  }
  /* Integers: exact when alpha == beta == 1 (the usual case), scaled through double otherwise. */
  int64_t a_rs = g.ta ? 1 : lda, a_cs = g.ta ? lda : 1, b_rs = g.tb ? 1 : ldb, b_cs = g.tb ? ldb : 1;
  if (alpha == 1.0f && (beta == 1.0f || !C)) {
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        if (C)
          int_copy(t, Y, i * N + j, C, i * g.c_rs + j * g.c_cs);
        else
          int_set(t, Y, i * N + j, 0);
      }
    int_mm(t, A, B, Y, M, N, K, a_rs, a_cs, b_rs, b_cs, true);
  } else {
    int_mm(t, A, B, Y, M, N, K, a_rs, a_cs, b_rs, b_cs, false);
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        double v = alpha * int_get(t, Y, i * N + j);
        if (C) v += beta * int_get(t, C, i * g.c_rs + j * g.c_cs);
        int_set(t, Y, i * N + j, v);
      }
  }
  int_act(n, t, Y, M * N);
  return NULL;
}

/* ---------------------------------------------------------------- MatMul */

typedef struct mm_geom {
  int64_t M, N, K;
  bool a1, b1; /* 1-D operands */
  int nb;      /* batch rank of the output */
  int64_t batch[KEEL_MAX_DIMS];
  int64_t a_bs[KEEL_MAX_DIMS], b_bs[KEEL_MAX_DIMS]; /* matrix strides per batch dim; 0 when broadcast */
  int64_t a_batch, b_batch;                          /* batch element counts of A and B */
  int ndim;
  int64_t out_dims[KEEL_MAX_DIMS];
  bool has_bias;
} mm_geom;

static bool is_q8(keel_dtype t) { return t == KEEL_UINT8 || t == KEEL_INT8; }

/* integer: MatMulInteger (8-bit A and B, zero points as inputs 2 and 3, int32 output). */
static keel_status *mm_geom_get(const keel_node *n, const keel_view *in, int n_in, mm_geom *g, bool integer) {
  KEEL_TRY(nn_need_inputs(n, n_in, 2, integer ? 4 : 3));
  const keel_view *a = &in[0], *b = &in[1];
  if (!nn_has(in, n_in, 0) || !nn_has(in, n_in, 1))
    return keel_error(KEEL_INVALID_MODEL, "inputs A and B are required");
  if (integer) {
    if (!is_q8(a->dtype) || !is_q8(b->dtype))
      return keel_error(KEEL_UNSUPPORTED, "inputs A and B have dtypes %s and %s; uint8 / int8 are supported",
                        keel_dtype_name(a->dtype), keel_dtype_name(b->dtype));
  } else if (!gemm_dtype_ok(a->dtype)) {
    return keel_error(KEEL_UNSUPPORTED, "input A has dtype %s; float32, float64, float16, bfloat16 and 32/64-bit integers are"
                                          " supported",
                      keel_dtype_name(a->dtype));
  } else if (b->dtype != a->dtype) {
    return keel_error(KEEL_SHAPE_MISMATCH, "input B has dtype %s but A has %s", keel_dtype_name(b->dtype),
                      keel_dtype_name(a->dtype));
  }
  if (a->ndim < 1 || b->ndim < 1)
    return keel_error(KEEL_SHAPE_MISMATCH, "MatMul inputs must have rank >= 1 (got %d and %d)", a->ndim, b->ndim);
  memset(g, 0, sizeof *g);
  g->a1 = a->ndim == 1;
  g->b1 = b->ndim == 1;
  g->M = g->a1 ? 1 : a->dims[a->ndim - 2];
  g->K = a->dims[a->ndim - 1];
  int64_t kb = g->b1 ? b->dims[0] : b->dims[b->ndim - 2];
  g->N = g->b1 ? 1 : b->dims[b->ndim - 1];
  if (g->K >= 0 && kb >= 0 && g->K != kb) {
    char sa[160], sb[160];
    return keel_error(KEEL_SHAPE_MISMATCH, "inner dims differ: A %s, B %s", keel_shape_format(a->dims, a->ndim, sa, sizeof sa),
                      keel_shape_format(b->dims, b->ndim, sb, sizeof sb));
  }
  if (g->K < 0) g->K = kb;
  const int na = g->a1 ? 0 : a->ndim - 2, nbb = g->b1 ? 0 : b->ndim - 2;
  g->nb = na > nbb ? na : nbb;
  /* Broadcast batch dims (right-aligned), computing per-dim strides in units of whole matrices. */
  int64_t sa = 1, sb = 1;
  g->a_batch = g->b_batch = 1;
  for (int i = g->nb - 1; i >= 0; i--) {
    int ia = i - (g->nb - na), ib = i - (g->nb - nbb);
    int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1, d;
    if (da == db || db == 1)
      d = da;
    else if (da == 1)
      d = db;
    else if (da < 0 || db < 0)
      d = -1;
    else {
      char s1[160], s2[160];
      return keel_error(KEEL_SHAPE_MISMATCH, "batch dims of A %s and B %s do not broadcast",
                        keel_shape_format(a->dims, a->ndim, s1, sizeof s1),
                        keel_shape_format(b->dims, b->ndim, s2, sizeof s2));
    }
    g->batch[i] = d;
    g->a_bs[i] = da == 1 ? 0 : sa;
    g->b_bs[i] = db == 1 ? 0 : sb;
    if (da >= 0) sa *= da;
    if (db >= 0) sb *= db;
  }
  g->a_batch = sa;
  g->b_batch = sb;
  g->ndim = 0;
  for (int i = 0; i < g->nb; i++) g->out_dims[g->ndim++] = g->batch[i];
  if (!g->a1) g->out_dims[g->ndim++] = g->M;
  if (!g->b1) g->out_dims[g->ndim++] = g->N;
  g->has_bias = !integer && nn_has(in, n_in, 2);
  if (g->has_bias) {
    const keel_view *c = &in[2];
    if (c->dtype != a->dtype)
      return keel_error(KEEL_SHAPE_MISMATCH, "bias has dtype %s but A has %s", keel_dtype_name(c->dtype),
                        keel_dtype_name(a->dtype));
    int64_t cn = keel_view_numel(c);
    if (c->ndim > 1 || (cn >= 0 && g->N >= 0 && cn != g->N && cn != 1))
      return keel_error(KEEL_SHAPE_MISMATCH, "fused bias must be 1-D of length N = %lld", (long long)g->N);
  }
  return NULL;
}

keel_status *nn_matmul_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  mm_geom g;
  KEEL_TRY(mm_geom_get(n, in, n_in, &g, false));
  KEEL_TRY(nn_check_numel(n, g.out_dims, g.ndim, keel_dtype_size(in[0].dtype)));
  keel_view_set_shape(&out[0], in[0].dtype, g.out_dims, g.ndim);
  return NULL;
}

/* Row-fill Y (rows x N) with the bias (length N or 1). */
static void fill_rows(keel_dtype t, void *Y, int64_t rows, int64_t N, const void *bias, int64_t bn) {
  size_t e = keel_dtype_size(t);
  char *y = Y;
  for (int64_t j = 0; j < N; j++) memcpy(y + (size_t)j * e, (const char *)bias + (bn == 1 ? 0 : (size_t)j * e), e);
  for (int64_t i = 1; i < rows; i++) memcpy(y + (size_t)(i * N) * e, y, (size_t)N * e);
}

size_t nn_matmul_workspace(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  mm_geom g;
  keel_status *s = mm_geom_get(n, in, n_in, &g, false);
  if (s) {
    keel_status_free(s);
    return 0;
  }
  if (in[0].dtype != KEEL_FLOAT32 || g.M < 1 || g.N < 1) return 0;
  const bool packed = g.b_batch == 1 && !g.b1 && mm_packed(n, &in[1], g.K, g.N) != NULL;
  return keel_gemm_workspace(g.M, g.N, g.K, false, packed);
}

/* float32 through keel's GEMM: `calls` products of rows x K by K x N (one when B is shared: A's batch folded
 * into rows), bias and activation in the epilogue. */
static keel_status *matmul_f32(const keel_node *n, const mm_geom *g, const keel_view *in, char *Y, int64_t rows,
                               int64_t calls, const keel_gemm_packed *pb, keel_exec *ex) {
  const int64_t M = g->M, N = g->N, K = g->K;
  const float *A = in[0].data, *B = in[1].data;
  keel_gemm_epilogue e = {.act = n->act, .act_alpha = n->act_alpha, .act_beta = n->act_beta};
  if (g->has_bias) {
    if (keel_view_numel(&in[2]) == N) {
      e.col_bias = in[2].data;
    } else {
      fill_rows(KEEL_FLOAT32, Y, calls * rows, N, in[2].data, keel_view_numel(&in[2]));
      e.beta = 1.0f;
    }
  }
  const int nt = keel_threads_effective(ex->num_threads);
  int64_t idx[KEEL_MAX_DIMS] = {0};
  int64_t ao = 0, bo = 0;
  for (int64_t c = 0; c < calls; c++) {
    keel_gemm_operand oa = {A + ao * M * K, K, 1, NULL}, ob = {B + bo * K * N, N, 1, pb};
    if (!keel_sgemm(rows, N, K, 1.0f, &oa, &ob, (float *)Y + c * rows * N, N, &e, ex->workspace, ex->workspace_bytes,
                    nt))
      return keel_error(KEEL_OUT_OF_MEMORY, "out of memory for GEMM scratch");
    for (int i = g->nb - 1; i >= 0 && calls > 1; i--) {
      idx[i]++;
      ao += g->a_bs[i];
      bo += g->b_bs[i];
      if (idx[i] < g->batch[i]) break;
      ao -= g->a_bs[i] * idx[i];
      bo -= g->b_bs[i] * idx[i];
      idx[i] = 0;
    }
  }
  return NULL;
}

keel_status *nn_matmul_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                           keel_exec *ex) {
  mm_geom g;
  KEEL_TRY(mm_geom_get(n, in, n_in, &g, false));
  const keel_dtype t = in[0].dtype;
  const int64_t M = g.M, N = g.N, K = g.K;
  int64_t total_batch = nn_prod(g.batch, 0, g.nb);
  if (M == 0 || N == 0 || total_batch == 0) return NULL;
  const char *A = in[0].data, *B = in[1].data;
  char *Y = out[0].data;
  const size_t e = keel_dtype_size(t);
  const bool is_f = t == KEEL_FLOAT32 || t == KEEL_FLOAT64;
  /* When B is one shared matrix, A's batch folds into the rows: one GEMM of (batch*M) x K by K x N. */
  bool fold = g.b_batch == 1;
  int64_t rows = fold ? total_batch * M : M, calls = fold ? 1 : total_batch;
  const keel_gemm_packed *pb = t == KEEL_FLOAT32 && fold && !g.b1 ? mm_packed(n, &in[1], K, N) : NULL;
  if (t == KEEL_FLOAT32 && (rows > 1 || pb)) return matmul_f32(n, &g, in, Y, rows, calls, pb, ex);
  if (is_f) KEEL_TRY(blas_range(rows, N, K, 0));
  if (g.has_bias)
    fill_rows(t, Y, total_batch * M, N, in[2].data, keel_view_numel(&in[2]));
  else if (K == 0 || !is_f)
    memset(Y, 0, (size_t)(total_batch * M * N) * e);
  if (K > 0) {
    int64_t idx[KEEL_MAX_DIMS] = {0};
    int64_t ao = 0, bo = 0; /* matrix offsets (in matrices) of the current batch element */
    for (int64_t c = 0; c < calls; c++) {
      const char *Am = A + (size_t)(ao * M * K) * e, *Bm = B + (size_t)(bo * K * N) * e;
      char *Ym = Y + (size_t)(c * rows * N) * e;
      if (t == KEEL_FLOAT32 && rows == 1)
        cblas_sgemv(CblasRowMajor, CblasTrans, (int)K, (int)N, 1.0f, (const float *)Bm, (int)N, (const float *)Am, 1,
                    g.has_bias ? 1.0f : 0.0f, (float *)Ym, 1);
      else if (t == KEEL_FLOAT32)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)N, (int)K, 1.0f, (const float *)Am,
                    (int)K, (const float *)Bm, (int)N, g.has_bias ? 1.0f : 0.0f, (float *)Ym, (int)N);
      else if (t == KEEL_FLOAT64)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)N, (int)K, 1.0, (const double *)Am,
                    (int)K, (const double *)Bm, (int)N, g.has_bias ? 1.0 : 0.0, (double *)Ym, (int)N);
      else
        int_mm(t, Am, Bm, Ym, rows, N, K, K, 1, N, 1, true);
      /* Advance the batch odometer (last dim fastest), keeping A/B offsets in step. */
      for (int i = g.nb - 1; i >= 0 && !fold; i--) {
        idx[i]++;
        ao += g.a_bs[i];
        bo += g.b_bs[i];
        if (idx[i] < g.batch[i]) break;
        ao -= g.a_bs[i] * idx[i];
        bo -= g.b_bs[i] * idx[i];
        idx[i] = 0;
      }
    }
  }
  size_t numel = (size_t)(total_batch * M * N);
  if (t == KEEL_FLOAT32)
    keel_act_apply_f32((float *)Y, numel, n->act, n->act_alpha, n->act_beta);
  else if (t == KEEL_FLOAT64)
    keel_act_apply_f64((double *)Y, numel, n->act, n->act_alpha, n->act_beta);
  else
    int_act(n, t, Y, (int64_t)numel);
  return NULL;
}

/* ---------------------------------------------------------------- MatMulInteger */

static inline int32_t q8_at(const keel_view *v, int64_t i) {
  return v->dtype == KEEL_INT8 ? (int32_t)((const int8_t *)v->data)[i] : (int32_t)((const uint8_t *)v->data)[i];
}

/* Zero point i: a scalar, or one value per row of A (len M) / per column of B (len N). */
static keel_status *mmint_check_zp(const keel_view *in, int n_in, int i, int64_t per, const char *name) {
  if (!nn_has(in, n_in, i)) return NULL;
  int64_t c = keel_view_numel(&in[i]);
  if (in[i].dtype != in[i - 2].dtype)
    return keel_error(KEEL_SHAPE_MISMATCH, "%s has dtype %s but its matrix has %s", name,
                      keel_dtype_name(in[i].dtype), keel_dtype_name(in[i - 2].dtype));
  if (c != 1 && c != per)
    return keel_error(KEEL_UNSUPPORTED, "%s has %lld values; a scalar or %lld (one per %s) is supported", name,
                      (long long)c, (long long)per, i == 2 ? "row" : "column");
  return NULL;
}

keel_status *nn_mmint_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  mm_geom g;
  KEEL_TRY(mm_geom_get(n, in, n_in, &g, true));
  KEEL_TRY(mmint_check_zp(in, n_in, 2, g.M, "a_zero_point"));
  KEEL_TRY(mmint_check_zp(in, n_in, 3, g.N, "b_zero_point"));
  KEEL_TRY(nn_check_numel(n, g.out_dims, g.ndim, 4));
  keel_view_set_shape(&out[0], KEEL_INT32, g.out_dims, g.ndim);
  return NULL;
}

keel_status *nn_mmint_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                          keel_exec *ex) {
  mm_geom g;
  KEEL_TRY(mm_geom_get(n, in, n_in, &g, true));
  KEEL_TRY(mmint_check_zp(in, n_in, 2, g.M, "a_zero_point"));
  KEEL_TRY(mmint_check_zp(in, n_in, 3, g.N, "b_zero_point"));
  const int64_t M = g.M, N = g.N, K = g.K, total = nn_prod(g.batch, 0, g.nb);
  const keel_view *azp = nn_has(in, n_in, 2) ? &in[2] : NULL, *bzp = nn_has(in, n_in, 3) ? &in[3] : NULL;
  const bool a_per = azp && keel_view_numel(azp) > 1, b_per = bzp && keel_view_numel(bzp) > 1;
  uint32_t *y = out[0].data; /* unsigned: sums wrap instead of overflowing */
  int64_t idx[KEEL_MAX_DIMS] = {0}, ao = 0, bo = 0;
  for (int64_t c = 0; c < total; c++) {
    uint32_t *ym = y + c * M * N;
    for (int64_t i = 0; i < M * N; i++) ym[i] = 0;
    for (int64_t i = 0; i < M; i++) {
      const int32_t az = azp ? q8_at(azp, a_per ? i : 0) : 0;
      for (int64_t k = 0; k < K; k++) {
        const uint32_t av = (uint32_t)(q8_at(&in[0], (ao * M + i) * K + k) - az);
        const int64_t brow = (bo * K + k) * N;
        for (int64_t j = 0; j < N; j++) {
          const int32_t bz = bzp ? q8_at(bzp, b_per ? j : 0) : 0;
          ym[i * N + j] += av * (uint32_t)(q8_at(&in[1], brow + j) - bz);
        }
      }
    }
    for (int d = g.nb - 1; d >= 0; d--) {
      idx[d]++;
      ao += g.a_bs[d];
      bo += g.b_bs[d];
      if (idx[d] < g.batch[d]) break;
      ao -= g.a_bs[d] * idx[d];
      bo -= g.b_bs[d] * idx[d];
      idx[d] = 0;
    }
  }
  return NULL;
}

/* ---------------------------------------------------------------- QLinearMatMul */
/* a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point; scales / zero points are
 * scalars or per row of A / per column of B. y = saturate(round(acc * a_s * b_s / y_s) + y_zp). */

static bool is_scale(const keel_view *v) {
  return v->dtype == KEEL_FLOAT32 || v->dtype == KEEL_FLOAT16 || v->dtype == KEEL_BFLOAT16;
}
static inline float scale_at(const keel_view *v, int64_t i) {
  if (keel_view_numel(v) == 1) i = 0;
  switch (v->dtype) {
    case KEEL_FLOAT16: return keel_half_to_float(((const uint16_t *)v->data)[i]);
    case KEEL_BFLOAT16: return keel_bfloat16_to_float(((const uint16_t *)v->data)[i]);
    default: return ((const float *)v->data)[i];
  }
}

static keel_status *qmm_geom(const keel_node *n, const keel_view *in, int n_in, mm_geom *g) {
  KEEL_TRY(nn_need_inputs(n, n_in, 8, 8));
  for (int i = 0; i < 8; i++)
    if (!nn_has(in, n_in, i)) return keel_error(KEEL_INVALID_MODEL, "input %d is required", i);
  keel_view ab[2] = {in[0], in[3]};
  KEEL_TRY(mm_geom_get(n, ab, 2, g, true));
  const int64_t per[3] = {g->M, g->N, 1};
  static const int sc_i[3] = {1, 4, 6}, zp_i[3] = {2, 5, 7};
  static const char *names[3] = {"a", "b", "y"};
  for (int k = 0; k < 3; k++) {
    const keel_view *sc = &in[sc_i[k]], *zp = &in[zp_i[k]];
    int64_t cs = keel_view_numel(sc), cz = keel_view_numel(zp);
    if (!is_scale(sc) || (cs != 1 && cs != per[k]))
      return keel_error(KEEL_SHAPE_MISMATCH, "%s_scale must be a float scalar%s", names[k],
                        k < 2 ? (k == 0 ? " or one value per row" : " or one value per column") : "");
    if (!is_q8(zp->dtype) || (cz != 1 && cz != per[k]))
      return keel_error(KEEL_SHAPE_MISMATCH, "%s_zero_point must be an 8-bit scalar%s", names[k],
                        k < 2 ? (k == 0 ? " or one value per row" : " or one value per column") : "");
  }
  if (in[2].dtype != in[0].dtype || in[5].dtype != in[3].dtype)
    return keel_error(KEEL_SHAPE_MISMATCH, "zero points must have the dtypes of a and b");
  return NULL;
}

keel_status *nn_qmm_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  mm_geom g;
  KEEL_TRY(qmm_geom(n, in, n_in, &g));
  keel_view_set_shape(&out[0], in[7].dtype, g.out_dims, g.ndim);
  return NULL;
}

keel_status *nn_qmm_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                        keel_exec *ex) {
  mm_geom g;
  KEEL_TRY(qmm_geom(n, in, n_in, &g));
  const int64_t M = g.M, N = g.N, K = g.K, total = nn_prod(g.batch, 0, g.nb);
  const keel_view *A = &in[0], *B = &in[3], *azp = &in[2], *bzp = &in[5], *y = &out[0];
  const bool a_per = keel_view_numel(azp) > 1, b_per = keel_view_numel(bzp) > 1;
  const float ys = scale_at(&in[6], 0);
  const int32_t yz = q8_at(&in[7], 0);
  int64_t idx[KEEL_MAX_DIMS] = {0}, ao = 0, bo = 0, yi = 0;
  for (int64_t c = 0; c < total; c++) {
    for (int64_t i = 0; i < M; i++) {
      const int32_t az = q8_at(azp, a_per ? i : 0);
      const float as = scale_at(&in[1], i);
      for (int64_t j = 0; j < N; j++, yi++) {
        const int32_t bz = q8_at(bzp, b_per ? j : 0);
        uint32_t acc = 0;
        for (int64_t k = 0; k < K; k++)
          acc += (uint32_t)((q8_at(A, (ao * M + i) * K + k) - az) * (q8_at(B, (bo * K + k) * N + j) - bz));
        float v = nearbyintf((float)(int32_t)acc * (as * scale_at(&in[4], j) / ys)) + (float)yz;
        if (y->dtype == KEEL_UINT8)
          ((uint8_t *)y->data)[yi] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        else
          ((int8_t *)y->data)[yi] = (int8_t)(v < -128 ? -128 : v > 127 ? 127 : v);
      }
    }
    for (int d = g.nb - 1; d >= 0; d--) {
      idx[d]++;
      ao += g.a_bs[d];
      bo += g.b_bs[d];
      if (idx[d] < g.batch[d]) break;
      ao -= g.a_bs[d] * idx[d];
      bo -= g.b_bs[d] * idx[d];
      idx[d] = 0;
    }
  }
  return NULL;
}
