/* keel.MultiHeadAttention(Q, K, V, [mask]; scale): the attention core of a transformer layer without the
 * head transposes (built by graph/fuse_patterns.c from Transpose/MatMul/ScaleMaskSoftmax/MatMul/Transpose).
 *
 *   Q [Bq, S, Hq, D], K [Bk, Sk, Hk, D], V [Bv, Sk, Hv, Dv] (the projections reshaped to heads, not transposed)
 *   mask: rank <= 4, broadcasts against the scores [B, H, S, Sk] (numpy rules, right-aligned)
 *   Y [B, S', H, Dv] with Y[b, i, h, :] = sum_j P[b, h, i, j] V[b, j, h, :],
 *                         P[b, h, i, :] = softmax_j(scale * Q[b, i, h, :] . K[b, j, h, :] + mask[b, h, i, j])
 *
 * B and H broadcast over the four inputs (a 1 repeats), S' = broadcast(S, mask rows), as the unfused
 * graph's MatMul batch broadcasting and Add would give. Per (b, h) the scores of a block of query rows stay
 * in a thread's scratch (L2) between the two products; the heads are split over the thread pool. Each
 * product runs single-threaded: on AVX-512 through the unpacked tile kernel below, elsewhere on keel's GEMM
 * reading Q, K and V through strides. */
#include <math.h>
#include <stdatomic.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#define MHA_AVX512 1
#endif

#include "backend/cpu/gemm.h"
#include "backend/cpu/threadpool.h"
#include "ops/fast_exp.h"
#include "ops/fused_attn.h"
#include "ops/row_reduce.h"

/* Score rows kept at once per thread: at most this many floats (512 KiB; a pool thread's scratch is 3 MiB). */
#define MHA_SCORE_FLOATS ((int64_t)1 << 17)
/* The direct kernel keeps one head's K^T (D x Sk) per thread: at most this many floats (512 KiB). */
#define MHA_KT_FLOATS ((int64_t)1 << 17)

typedef struct mha_geom {
  int64_t B, H, S, Sk, D, Dv, R; /* R: query rows per block */
  int64_t q_b, q_h, q_r;         /* element strides; 0 where that input broadcasts */
  int64_t k_b, k_h, k_r;
  int64_t v_b, v_h, v_r;
  int64_t m_b, m_h, m_r, m_c;
  bool has_mask;
  bool direct; /* the AVX-512 tile kernel below (no packing), else keel_sgemm */
} mha_geom;

static keel_status *bcast_dim(const char *what, const int64_t *d, int cnt, int64_t *out) {
  int64_t r = 1;
  for (int i = 0; i < cnt; i++) {
    if (d[i] == 1 || d[i] == r) continue;
    if (r != 1)
      return keel_error(KEEL_SHAPE_MISMATCH, "%s dimensions %lld and %lld do not broadcast", what, (long long)r,
                        (long long)d[i]);
    r = d[i];
  }
  *out = r;
  return NULL;
}

static keel_status *mha_geom_get(const keel_view *in, int n_in, mha_geom *g) {
  if (n_in < 3 || n_in > 4) return keel_error(KEEL_INVALID_MODEL, "MultiHeadAttention takes Q, K, V and a mask");
  const char *names[4] = {"Q", "K", "V", "mask"};
  for (int i = 0; i < n_in; i++) {
    if (!keel_view_present(&in[i])) {
      if (i == 3) continue;
      return keel_error(KEEL_INVALID_MODEL, "input %s is required", names[i]);
    }
    if (in[i].dtype != KEEL_FLOAT32)
      return keel_error(KEEL_INVALID_MODEL, "input %s has dtype %s; the fused operator takes float32", names[i],
                        keel_dtype_name(in[i].dtype));
    if (i < 3 && in[i].ndim != 4)
      return keel_error(KEEL_SHAPE_MISMATCH, "%s must be 4-D [batch, sequence, heads, head size], not rank %d",
                        names[i], in[i].ndim);
  }
  memset(g, 0, sizeof *g);
  const keel_view *q = &in[0], *k = &in[1], *v = &in[2];
  g->has_mask = n_in == 4 && keel_view_present(&in[3]);
  int64_t md[4] = {1, 1, 1, 1};
  if (g->has_mask) {
    const keel_view *m = &in[3];
    if (m->ndim > 4) return keel_error(KEEL_SHAPE_MISMATCH, "mask has rank %d; the scores have rank 4", m->ndim);
    for (int i = 0; i < m->ndim; i++) md[4 - m->ndim + i] = m->dims[i];
  }
  if (q->dims[3] != k->dims[3])
    return keel_error(KEEL_SHAPE_MISMATCH, "Q head size %lld differs from K head size %lld", (long long)q->dims[3],
                      (long long)k->dims[3]);
  if (k->dims[1] != v->dims[1])
    return keel_error(KEEL_SHAPE_MISMATCH, "K sequence %lld differs from V sequence %lld", (long long)k->dims[1],
                      (long long)v->dims[1]);
  g->D = q->dims[3];
  g->Sk = k->dims[1];
  g->Dv = v->dims[3];
  if (md[3] != 1 && md[3] != g->Sk)
    return keel_error(KEEL_SHAPE_MISMATCH, "mask's last dimension %lld does not broadcast to the key length %lld",
                      (long long)md[3], (long long)g->Sk);
  const int64_t bs[4] = {q->dims[0], k->dims[0], v->dims[0], md[0]};
  const int64_t hs[4] = {q->dims[2], k->dims[2], v->dims[2], md[1]};
  const int64_t ss[2] = {q->dims[1], md[2]};
  KEEL_TRY(bcast_dim("batch", bs, 4, &g->B));
  KEEL_TRY(bcast_dim("head", hs, 4, &g->H));
  KEEL_TRY(bcast_dim("query sequence", ss, 2, &g->S));
  const int64_t qrow = q->dims[2] * g->D, krow = k->dims[2] * g->D, vrow = v->dims[2] * g->Dv;
  g->q_r = q->dims[1] == 1 ? 0 : qrow;
  g->q_h = q->dims[2] == 1 ? 0 : g->D;
  g->q_b = q->dims[0] == 1 ? 0 : q->dims[1] * qrow;
  g->k_r = krow;
  g->k_h = k->dims[2] == 1 ? 0 : g->D;
  g->k_b = k->dims[0] == 1 ? 0 : g->Sk * krow;
  g->v_r = vrow;
  g->v_h = v->dims[2] == 1 ? 0 : g->Dv;
  g->v_b = v->dims[0] == 1 ? 0 : g->Sk * vrow;
  g->m_c = md[3] == 1 ? 0 : 1;
  g->m_r = md[2] == 1 ? 0 : md[3];
  g->m_h = md[1] == 1 ? 0 : md[2] * md[3];
  g->m_b = md[0] == 1 ? 0 : md[1] * md[2] * md[3];
  int64_t r = g->Sk > 0 ? MHA_SCORE_FLOATS / g->Sk : g->S;
  if (r < 1) r = 1;
  g->R = r < g->S ? r : g->S;
#if MHA_AVX512
  g->direct = keel_gemm_get_isa() == KEEL_GEMM_AVX512 && g->D > 0 && g->Sk > 0 && g->D * g->Sk <= MHA_KT_FLOATS;
#endif
  return NULL;
}

keel_status *keel_mha_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  (void)n;
  if (n_out < 1) return keel_error(KEEL_INVALID_MODEL, "MultiHeadAttention has one output");
  mha_geom g;
  KEEL_TRY(mha_geom_get(in, n_in, &g));
  const int64_t d[4] = {g.B, g.S, g.H, g.Dv};
  keel_view_set_shape(&out[0], KEEL_FLOAT32, d, 4);
  return NULL;
}

static size_t align64(size_t b) { return (b + 63) & ~(size_t)63; }

/* Bytes one thread needs: a block of scores, then the GEMM's panels for either product. */
static size_t mha_thread_bytes(const mha_geom *g) {
  if (g->direct) return align64((size_t)(g->R * g->Sk) * sizeof(float)) + (size_t)(g->D * g->Sk) * sizeof(float);
  const size_t w1 = keel_gemm_workspace(g->R, g->Sk, g->D, false, false);
  const size_t w2 = keel_gemm_workspace(g->R, g->Dv, g->Sk, false, false);
  return align64((size_t)(g->R * g->Sk) * sizeof(float)) + (w1 > w2 ? w1 : w2);
}

size_t keel_mha_workspace(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  (void)n, (void)out, (void)n_out;
  mha_geom g;
  keel_status *s = mha_geom_get(in, n_in, &g);
  if (s) {
    keel_status_free(s);
    return 0;
  }
  return mha_thread_bytes(&g);
}

/* y = softmax(y + mask row) over one row of length L (y holds the scaled scores); each loop vectorizes. */
static void mask_softmax_row(float *y, int64_t L, const float *mr, int64_t mc) {
  if (mr && mc == 1)
    for (int64_t j = 0; j < L; j++) y[j] += mr[j];
  else if (mr)
    for (int64_t j = 0; j < L; j++) y[j] += mr[0];
  float m = keel_row_max_f32(y, L);
  if (m == -INFINITY) m = 0.0f; /* all -inf: 0/0 = NaN below, as the unfused Softmax gives */
  for (int64_t j = 0; j < L; j++) y[j] = keel_expf_softmax(y[j] - m);
  const float inv = 1.0f / keel_row_sum_f32(y, L);
  for (int64_t j = 0; j < L; j++) y[j] *= inv;
}

typedef struct mha_job {
  const mha_geom *g;
  const float *q, *k, *v, *mask;
  float *y, scale;
  char *ws; /* the caller's workspace */
  size_t ws_bytes;
  atomic_int failed;
} mha_job;

#if MHA_AVX512
/* The two products of one head are small (K = 64 or the sequence, N = the sequence or 64) and their operands
 * are activations, so the GEMM's panel packing costs about as much as the arithmetic. This kernel reads them
 * in place instead: A through its row stride (one broadcast per row and k), B as rows of 32 contiguous floats
 * (V as it is; K transposed once per head into a D x Sk buffer). C = alpha * A B, MR x 32 tiles in registers. */
static inline __attribute__((always_inline)) void mha_tile(const int MR, int64_t K, float alpha, const float *A,
                                                           int64_t lda, const float *B, int64_t ldb, float *C,
                                                           int64_t ldc, __mmask16 m0, __mmask16 m1) {
  __m512 c0[12], c1[12];
#pragma GCC unroll 12
  for (int r = 0; r < MR; r++) c0[r] = c1[r] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k++) {
    const __m512 b0 = _mm512_maskz_loadu_ps(m0, B + k * ldb), b1 = _mm512_maskz_loadu_ps(m1, B + k * ldb + 16);
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
      const __m512 a = _mm512_set1_ps(A[r * lda + k]);
      c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);
      c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);
    }
  }
  const __m512 al = _mm512_set1_ps(alpha);
#pragma GCC unroll 12
  for (int r = 0; r < MR; r++) {
    _mm512_mask_storeu_ps(C + r * ldc, m0, _mm512_mul_ps(c0[r], al));
    _mm512_mask_storeu_ps(C + r * ldc + 16, m1, _mm512_mul_ps(c1[r], al));
  }
}

static void mha_gemm(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda, const float *B,
                     int64_t ldb, float *C, int64_t ldc) {
  for (int64_t j0 = 0; j0 < N; j0 += 32) {
    const int64_t nj = N - j0 < 32 ? N - j0 : 32;
    const __mmask16 m0 = (__mmask16)(nj >= 16 ? 0xFFFF : (1u << nj) - 1);
    const __mmask16 m1 = (__mmask16)(nj >= 32 ? 0xFFFF : nj > 16 ? (1u << (nj - 16)) - 1 : 0);
    int64_t i = 0;
    for (; i + 12 <= M; i += 12) mha_tile(12, K, alpha, A + i * lda, lda, B + j0, ldb, C + i * ldc + j0, ldc, m0, m1);
    for (; i + 4 <= M; i += 4) mha_tile(4, K, alpha, A + i * lda, lda, B + j0, ldb, C + i * ldc + j0, ldc, m0, m1);
    for (; i < M; i++) mha_tile(1, K, alpha, A + i * lda, lda, B + j0, ldb, C + i * ldc + j0, ldc, m0, m1);
  }
}

/* One head through the tile kernel. */
static void mha_head_direct(const mha_job *j, const float *qh, const float *kh, const float *vh, const float *mh,
                            float *yh, char *ws) {
  const mha_geom *g = j->g;
  float *sc = (float *)ws;
  float *kt = (float *)(ws + align64((size_t)(g->R * g->Sk) * sizeof(float)));
  for (int64_t c = 0; c < g->Sk; c++)
    for (int64_t d = 0; d < g->D; d++) kt[d * g->Sk + c] = kh[c * g->k_r + d];
  const int64_t ldy = g->H * g->Dv;
  for (int64_t r0 = 0; r0 < g->S; r0 += g->R) {
    const int64_t rows = g->S - r0 < g->R ? g->S - r0 : g->R;
    mha_gemm(rows, g->Sk, g->D, j->scale, qh + r0 * g->q_r, g->q_r, kt, g->Sk, sc, g->Sk);
    for (int64_t i = 0; i < rows; i++)
      mask_softmax_row(sc + i * g->Sk, g->Sk, mh ? mh + (r0 + i) * g->m_r : NULL, g->m_c);
    mha_gemm(rows, g->Dv, g->Sk, 1.0f, sc, g->Sk, vh, g->v_r, yh + r0 * ldy, ldy);
  }
}
#endif

/* One (b, h) pair: every block of query rows. */
static bool mha_head(const mha_job *j, int64_t b, int64_t h, char *ws, size_t ws_bytes) {
  const mha_geom *g = j->g;
  float *sc = (float *)ws;
  const size_t sc_bytes = align64((size_t)(g->R * g->Sk) * sizeof(float));
  char *gws = ws + sc_bytes;
  const size_t gws_bytes = ws_bytes - sc_bytes;
  const float *qh = j->q + b * g->q_b + h * g->q_h;
  const float *kh = j->k + b * g->k_b + h * g->k_h;
  const float *vh = j->v + b * g->v_b + h * g->v_h;
  const float *mh = j->mask ? j->mask + b * g->m_b + h * g->m_h : NULL;
  const int64_t ldy = g->H * g->Dv;
#if MHA_AVX512
  if (g->direct) {
    mha_head_direct(j, qh, kh, vh, mh, j->y + b * g->S * ldy + h * g->Dv, ws);
    return true;
  }
#endif
  for (int64_t r0 = 0; r0 < g->S; r0 += g->R) {
    const int64_t rows = g->S - r0 < g->R ? g->S - r0 : g->R;
    float *yb = j->y + (b * g->S + r0) * ldy + h * g->Dv;
    if (g->Sk == 0) { /* softmax over nothing, then a product over nothing: zeros */
      for (int64_t i = 0; i < rows; i++) memset(yb + i * ldy, 0, sizeof(float) * (size_t)g->Dv);
      continue;
    }
    if (g->D == 0) {
      memset(sc, 0, sizeof(float) * (size_t)(rows * g->Sk));
    } else {
      /* scores = scale * Q_rows K^T: A(i, d) = q[i * q_r + d], B(d, j) = k[j * k_r + d] */
      const keel_gemm_operand A = {.p = qh + r0 * g->q_r, .rs = g->q_r, .cs = 1};
      const keel_gemm_operand B = {.p = kh, .rs = 1, .cs = g->k_r};
      if (!keel_sgemm(rows, g->Sk, g->D, j->scale, &A, &B, sc, g->Sk, NULL, gws, gws_bytes, 1)) return false;
    }
    for (int64_t i = 0; i < rows; i++)
      mask_softmax_row(sc + i * g->Sk, g->Sk, mh ? mh + (r0 + i) * g->m_r : NULL, g->m_c);
    if (g->Dv == 0) continue;
    const keel_gemm_operand P = {.p = sc, .rs = g->Sk, .cs = 1};
    const keel_gemm_operand V = {.p = vh, .rs = g->v_r, .cs = 1};
    if (!keel_sgemm(rows, g->Dv, g->Sk, 1.0f, &P, &V, yb, ldy, NULL, gws, gws_bytes, 1)) return false;
  }
  return true;
}

static void mha_thread(void *ctx, int tid, int nt, void *scratch) {
  mha_job *j = ctx;
  const int64_t T = j->g->B * j->g->H;
  char *ws = scratch ? scratch : j->ws;
  const size_t ws_bytes = scratch ? KEEL_POOL_SCRATCH_BYTES : j->ws_bytes;
  for (int64_t t = T * tid / nt; t < T * (tid + 1) / nt; t++)
    if (!mha_head(j, t / j->g->H, t % j->g->H, ws, ws_bytes)) atomic_store(&j->failed, 1);
}

keel_status *keel_mha_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                          keel_exec *ex) {
  (void)n_out;
  mha_geom g;
  KEEL_TRY(mha_geom_get(in, n_in, &g));
  if (g.B == 0 || g.H == 0 || g.S == 0 || g.Dv == 0) return NULL;
  const size_t need = mha_thread_bytes(&g);
  if (ex->workspace_bytes < (g.direct ? need : align64((size_t)(g.R * g.Sk) * sizeof(float))))
    return keel_error(KEEL_INTERNAL, "workspace of %zu bytes is smaller than the %zu the kernel asked for",
                      ex->workspace_bytes, need);
  mha_job job = {&g, in[0].data, in[1].data, in[2].data, g.has_mask ? in[3].data : NULL, out[0].data,
                 keel_attr_float(n, "scale", 1.0f), ex->workspace, ex->workspace_bytes, 0};
  const int64_t T = g.B * g.H;
  int nt = keel_threads_effective(ex->num_threads);
  if (nt > T) nt = (int)T;
  /* threads only where each gets some work (waking the pool costs microseconds) */
  const double flops = 2.0 * (double)T * (double)g.S * (double)g.Sk * (double)(g.D + g.Dv);
  while (nt > 1 && flops / nt < 4e5) nt--;
  if (nt <= 1) { /* (pool threads whose scratch is short of GEMM room use the GEMM's own buffer) */
    mha_thread(&job, 0, 1, NULL);
  } else {
    keel_parallel_run(nt, mha_thread, &job);
  }
  if (atomic_load(&job.failed)) return keel_error(KEEL_OUT_OF_MEMORY, "out of memory for GEMM scratch");
  return NULL;
}
