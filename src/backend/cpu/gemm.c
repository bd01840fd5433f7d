/* The GEMM driver (gemm.h): kernel choice, packing, the blocked loops, and the split over threads. */
#include "backend/cpu/gemm.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/gemm_internal.h"
#include "backend/cpu/threadpool.h"
#include "ops/act.h"

/* ---------------------------------------------------------------- kernels and their shapes */

typedef struct isa_info {
  int mr, nr;
  gemm_ukr_fn ukr;
} isa_info;

static void ukr_generic(int64_t kc, const float *restrict A, const float *restrict B, int64_t ldb, float *C,
                        int64_t ldc, int mr, int nr, const gemm_tile_epi *e) {
  float acc[4 * 16] = {0};
  for (int64_t k = 0; k < kc; k++, A += 4, B += ldb)
    for (int i = 0; i < 4; i++) {
      const float a = A[i];
      for (int j = 0; j < 16; j++) acc[i * 16 + j] += a * B[j];
    }
  keel_gemm_epi_scalar(acc, 16, C, ldc, mr, nr, e);
}

static const isa_info isas[3] = {
    [KEEL_GEMM_GENERIC] = {4, 16, ukr_generic},
    [KEEL_GEMM_AVX2] = {6, 16, keel_gemm_ukr_avx2},
    [KEEL_GEMM_AVX512] = {14, 32, keel_gemm_ukr_avx512},
};

static keel_gemm_isa cpu_best(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma")) return KEEL_GEMM_AVX512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return KEEL_GEMM_AVX2;
#endif
  return KEEL_GEMM_GENERIC;
}

const char *keel_gemm_isa_name(keel_gemm_isa isa) {
  return isa == KEEL_GEMM_AVX512 ? "avx512" : isa == KEEL_GEMM_AVX2 ? "avx2" : "generic";
}

keel_gemm_isa keel_gemm_isa_best(void) {
  keel_gemm_isa best = cpu_best();
  const char *s = getenv("KEEL_GEMM_ISA");
  if (s) {
    keel_gemm_isa want = !strcmp(s, "generic") ? KEEL_GEMM_GENERIC : !strcmp(s, "avx2") ? KEEL_GEMM_AVX2 : best;
    if (want < best) best = want;
  }
  return best;
}

static atomic_int current_isa = -1;

keel_gemm_isa keel_gemm_get_isa(void) {
  int v = atomic_load_explicit(&current_isa, memory_order_relaxed);
  if (v < 0) {
    v = (int)keel_gemm_isa_best();
    atomic_store_explicit(&current_isa, v, memory_order_relaxed);
  }
  return (keel_gemm_isa)v;
}

keel_gemm_isa keel_gemm_set_isa(keel_gemm_isa isa) {
  keel_gemm_isa best = cpu_best();
  if (isa > best) isa = best;
  atomic_store_explicit(&current_isa, (int)isa, memory_order_relaxed);
  return isa;
}

void keel_gemm_epi_scalar(const float *acc, int ldacc, float *C, int64_t ldc, int mr, int nr, const gemm_tile_epi *e) {
  for (int i = 0; i < mr; i++) {
    float *cr = C + i * ldc;
    const float rb = e->row_bias ? e->row_bias[i] : 0.0f;
    for (int j = 0; j < nr; j++) {
      float v = e->alpha * acc[i * ldacc + j] + rb;
      if (e->load_c) v += e->beta * cr[j];
      if (e->col_bias) v += e->col_bias[j];
      cr[j] = v;
    }
    if (e->act != KEEL_ACT_NONE) keel_act_apply_f32(cr, (size_t)nr, (keel_act)e->act, e->act_alpha, e->act_beta);
  }
}

/* ---------------------------------------------------------------- packing */

static inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Panels of R "rows" (the packed dimension) x kc: dst[p][k][r] = src(r0 + p*R + r, k0 + k), zero past
 * `rows`. src(r, k) = s[r * rs + k * cs]. */
static void pack_panels(float *restrict dst, const float *s, int64_t rs, int64_t cs, int64_t r0, int64_t nrows,
                        int64_t rows, int64_t k0, int64_t kc, int R) {
  for (int64_t p = 0; p < nrows; p += R) {
    const int64_t r = r0 + p, valid = min64(R, rows - r);
    const float *base = s + r * rs + k0 * cs;
    if (rs == 1 && valid == R && R == 32) {
      /* the packed dimension is contiguous in memory: one row copy per k (a constant size: inline moves) */
      for (int64_t k = 0; k < kc; k++) memcpy(dst + k * 32, base + k * cs, 32 * sizeof(float));
    } else if (rs == 1 && valid == R) {
      for (int64_t k = 0; k < kc; k++) memcpy(dst + k * R, base + k * cs, (size_t)R * sizeof(float));
    } else if (cs == 1) {
      for (int64_t i = 0; i < valid; i++) {
        const float *src = base + i * rs;
        for (int64_t k = 0; k < kc; k++) dst[k * R + i] = src[k];
      }
      for (int64_t i = valid; i < R; i++)
        for (int64_t k = 0; k < kc; k++) dst[k * R + i] = 0.0f;
    } else {
      for (int64_t k = 0; k < kc; k++) {
        for (int64_t i = 0; i < valid; i++) dst[k * R + i] = base[i * rs + k * cs];
        for (int64_t i = valid; i < R; i++) dst[k * R + i] = 0.0f;
      }
    }
    dst += kc * R;
  }
}

/* A whole operand, K block by K block: block pc starts at pc * round_up(rows, R). */
static keel_gemm_packed *pack_whole(const float *s, int64_t rows, int64_t K, int64_t rs, int64_t cs, bool is_a) {
  keel_gemm_isa isa = keel_gemm_get_isa();
  const int R = is_a ? isas[isa].mr : isas[isa].nr;
  const int64_t rpad = round_up(rows > 0 ? rows : 1, R);
  size_t bytes = (size_t)rpad * (size_t)(K > 0 ? K : 1) * sizeof(float);
  bytes = (bytes + 63) / 64 * 64;
  keel_gemm_packed *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->data = aligned_alloc(64, bytes);
  if (!p->data) {
    free(p);
    return NULL;
  }
  p->isa = isa;
  p->is_a = is_a;
  p->rows = rows;
  p->K = K;
  p->bytes = bytes;
  for (int64_t pc = 0; pc < K; pc += GEMM_KC)
    pack_panels(p->data + pc * rpad, s, rs, cs, 0, rpad, rows, pc, min64(GEMM_KC, K - pc), R);
  return p;
}

keel_gemm_packed *keel_gemm_pack_a(const float *a, int64_t M, int64_t K, int64_t rs, int64_t cs) {
  return pack_whole(a, M, K, rs, cs, true);
}

keel_gemm_packed *keel_gemm_pack_b(const float *b, int64_t K, int64_t N, int64_t rs, int64_t cs) {
  /* B(k, j) = b[k*rs + j*cs]: packed "rows" are columns j. */
  return pack_whole(b, N, K, cs, rs, false);
}

void keel_gemm_packed_free(keel_gemm_packed *p) {
  if (!p) return;
  free(p->data);
  free(p);
}

/* ---------------------------------------------------------------- the blocked loops */

typedef struct gemm_job {
  int64_t M, N, K;
  float alpha;
  const keel_gemm_operand *A, *B;
  float *C;
  int64_t ldc;
  keel_gemm_epilogue epi;
  const isa_info *k;
  keel_gemm_isa isa;
  void *ws; /* the caller's (thread 0's) scratch */
  bool split_n;  /* threads share N panels (else M panels) in chunks */
  int64_t chunk_panels, nchunks;
  int64_t per_product;        /* chunks per product of a batch (nchunks = batch * per_product) */
  int64_t b_stride, c_stride; /* product i: B.p + i * b_stride (or pack_ctx + i * b_stride bytes), C + i * c_stride */
  atomic_llong next; /* the next chunk to take */
} gemm_job;

/* Largest A block (rows x KC floats) for which gemm_block_apacked is used: about 3/4 of L2. */
#define GEMM_APACKED_MAX_BYTES (768 * 1024)

static size_t scratch_bytes(int64_t N, bool a_packed, bool b_packed) {
  size_t f = 0;
  if (!a_packed) f += (size_t)(b_packed ? GEMM_MC_BPACKED : GEMM_MC) * GEMM_KC;
  if (!b_packed) f += (size_t)GEMM_KC * (size_t)min64(round_up(N > 0 ? N : 1, GEMM_NR_MAX), GEMM_NC);
  return f * sizeof(float) + 64;
}

size_t keel_gemm_workspace(int64_t M, int64_t N, int64_t K, bool a_packed, bool b_packed) {
  (void)M, (void)K;
  return scratch_bytes(N, a_packed, b_packed);
}

/* The epilogue of the K block [pc, pc + kc): the first block applies beta * C (or overwrites C), the last
 * one the activation; biases are set per tile by the caller. */
static gemm_tile_epi k_block_epi(const gemm_job *J, int64_t pc, int64_t kc) {
  const keel_gemm_epilogue *ep = &J->epi;
  const bool first = pc == 0, last = pc + kc >= J->K;
  gemm_tile_epi e = {.alpha = J->alpha,
                     .load_c = first ? ep->beta != 0.0f : 1,
                     .beta = first ? ep->beta : 1.0f,
                     .act = last ? (int)ep->act : KEEL_ACT_NONE,
                     .act_alpha = ep->act_alpha,
                     .act_beta = ep->act_beta};
  return e;
}

/* Pre-packed A (weights) with B packed per call: pack one NR-wide panel of B into an L1-sized buffer and run
 * every row tile over it at once, so the panel goes from the source to L1 to the FMAs without a round trip
 * through L2 / L3. A (the whole K block of rows m0..m1) streams from L2. */
static void gemm_block_apacked(const gemm_job *J, const keel_gemm_operand *B, float *C, int64_t m0, int64_t m1, int64_t n0, int64_t n1, float *bbuf) {
  const int MR = J->k->mr, NR = J->k->nr;
  const keel_gemm_packed *pa = J->A->packed;
  const int64_t K = J->K, Mpad = round_up(J->M, MR);
  const keel_gemm_epilogue *ep = &J->epi;
  for (int64_t pc = 0; pc < K; pc += GEMM_KC) {
    const int64_t kc = min64(GEMM_KC, K - pc);
    gemm_tile_epi e = k_block_epi(J, pc, kc);
    const bool first = pc == 0;
    const float *Ablk = pa->data + pc * Mpad;
    for (int64_t jr = n0; jr < n1; jr += NR) {
      const int nr = (int)min64(NR, n1 - jr);
      const float *Bp = bbuf;
      int64_t ldb = NR;
      if (B->pack) {
        B->pack(B->pack_ctx, bbuf, pc, kc, jr, nr, NR);
      } else if (B->cs == 1 && nr == NR) {
        Bp = B->p + pc * B->rs + jr; /* rows of B are contiguous: the kernel reads them in place */
        ldb = B->rs;
        /* kc rows one row-stride apart are more streams than the hardware prefetchers follow (a 1x1 Conv
         * over a batch-8 map ran at a third of memory bandwidth): fetch the next panel while this one runs */
        if (jr + 2 * NR <= n1)
          for (int64_t k = 0; k < kc; k++) {
            __builtin_prefetch(Bp + k * ldb + NR, 0, 2);
            __builtin_prefetch(Bp + k * ldb + NR + 16, 0, 2);
          }
      } else {
        pack_panels(bbuf, B->p, B->cs, B->rs, jr, NR, J->N, pc, kc, NR);
      }
      e.col_bias = first && ep->col_bias ? ep->col_bias + jr : NULL;
      for (int64_t ir = m0; ir < m1; ir += MR) {
        const int mr = (int)min64(MR, m1 - ir);
        e.row_bias = first && ep->row_bias ? ep->row_bias + ir : NULL;
        J->k->ukr(kc, Ablk + (ir / MR) * kc * MR, Bp, ldb, C + ir * J->ldc + jr, J->ldc, mr, nr, &e);
      }
    }
  }
}

/* Rows [m0, m1) x columns [n0, n1) of C; m0 / n0 are multiples of MR / NR. */
static void gemm_block(const gemm_job *J, const keel_gemm_operand *B, float *C, int64_t m0, int64_t m1, int64_t n0, int64_t n1, float *scratch) {
  const int MR = J->k->mr, NR = J->k->nr;
  const keel_gemm_packed *pa = J->A->packed, *pb = B->packed;
  /* A written by a callback (implicit im2col, swapped conv) is re-read from L2 for every B panel: keep its
   * block at the normal height so it stays there next to a wide pre-packed B block. */
  const int64_t MC = pb && !J->A->pack ? GEMM_MC_BPACKED : GEMM_MC;
  float *abuf = scratch, *bbuf = pa ? scratch : scratch + (size_t)MC * GEMM_KC;
  const int64_t K = J->K, Mpad = round_up(J->M, MR), Npad = round_up(J->N, NR);
  const keel_gemm_epilogue *ep = &J->epi;
  for (int64_t jc = n0; jc < n1; jc += GEMM_NC) {
    const int64_t nc = min64(GEMM_NC, n1 - jc);
    for (int64_t pc = 0; pc < K; pc += GEMM_KC) {
      const int64_t kc = min64(GEMM_KC, K - pc);
      const float *Bblk;
      if (pb) {
        Bblk = pb->data + pc * Npad + (jc / NR) * kc * NR;
      } else if (B->pack) {
        B->pack(B->pack_ctx, bbuf, pc, kc, jc, nc, NR);
        Bblk = bbuf;
      } else {
        pack_panels(bbuf, B->p, B->cs, B->rs, jc, round_up(nc, NR), J->N, pc, kc, NR);
        Bblk = bbuf;
      }
      gemm_tile_epi e = k_block_epi(J, pc, kc);
      const bool first = pc == 0;
      for (int64_t ic = m0; ic < m1; ic += MC) {
        const int64_t mc = min64(MC, m1 - ic);
        const float *Ablk;
        if (pa) {
          Ablk = pa->data + pc * Mpad + (ic / MR) * kc * MR;
        } else if (J->A->pack) {
          J->A->pack(J->A->pack_ctx, abuf, pc, kc, ic, mc, MR);
          Ablk = abuf;
        } else {
          pack_panels(abuf, J->A->p, J->A->rs, J->A->cs, ic, round_up(mc, MR), J->M, pc, kc, MR);
          Ablk = abuf;
        }
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const int nr = (int)min64(NR, nc - jr);
          const float *Bp = Bblk + (jr / NR) * kc * NR;
          e.col_bias = first && ep->col_bias ? ep->col_bias + jc + jr : NULL;
          for (int64_t ir = 0; ir < mc; ir += MR) {
            const int mr = (int)min64(MR, mc - ir);
            e.row_bias = first && ep->row_bias ? ep->row_bias + ic + ir : NULL;
            J->k->ukr(kc, Ablk + (ir / MR) * kc * MR, Bp, NR, C + (ic + ir) * J->ldc + jc + jr, J->ldc, mr, nr, &e);
          }
        }
      }
    }
  }
}

static void gemm_chunk(const gemm_job *J, int64_t c, float *buf) {
  const int MR = J->k->mr, NR = J->k->nr;
  /* chunk c: product c / per_product of the batch, block c % per_product of that product */
  const int64_t prod = c / J->per_product;
  c -= prod * J->per_product;
  keel_gemm_operand Bi = *J->B;
  if (prod && Bi.pack)
    Bi.pack_ctx = (const char *)Bi.pack_ctx + prod * J->b_stride;
  else if (prod)
    Bi.p += prod * J->b_stride;
  float *C = J->C + prod * J->c_stride;
  int64_t m0 = 0, m1 = J->M, n0 = 0, n1 = J->N;
  if (J->split_n) {
    n0 = c * J->chunk_panels * NR;
    n1 = min64(n0 + J->chunk_panels * NR, J->N);
  } else {
    m0 = c * J->chunk_panels * MR;
    m1 = min64(m0 + J->chunk_panels * MR, J->M);
  }
  if (m0 >= m1 || n0 >= n1) return;
  /* Panel streaming while this chunk's A block (rows x KC) stays in L2; classic blocking beyond. */
  if (J->A->packed && !Bi.packed && (m1 - m0) * GEMM_KC * (int64_t)sizeof(float) <= GEMM_APACKED_MAX_BYTES)
    gemm_block_apacked(J, &Bi, C, m0, m1, n0, n1, buf);
  else
    gemm_block(J, &Bi, C, m0, m1, n0, n1, buf);
}

/* Every thread takes chunks until none is left (the caller alone finishes them if workers are late). */
static void gemm_thread(void *ctx, int tid, int nt, void *scratch) {
  gemm_job *J = ctx;
  (void)tid, (void)nt;
  float *buf = scratch ? scratch : (float *)J->ws;
  for (int64_t c; (c = atomic_fetch_add_explicit(&J->next, 1, memory_order_relaxed)) < J->nchunks;)
    gemm_chunk(J, c, buf);
}

/* One row of A against a pre-packed B (a classifier head, a batch-1 MLP): no A panel to pack, and four
 * partial sums per column so the FMA latency is hidden (a 1-row tile would wait on one chain). NRC is a
 * constant in each instance so the sums stay in vector registers. */
static inline __attribute__((always_inline)) void gemv_panel(const int NRC, const float *a, int64_t as,
                                                             const float *data, int64_t K, int64_t Npad, int64_t p,
                                                             float *out) {
  float acc[4][GEMM_NR_MAX];
  for (int u = 0; u < 4; u++)
    for (int j = 0; j < NRC; j++) acc[u][j] = 0.0f;
  for (int64_t pc = 0; pc < K; pc += GEMM_KC) {
    const int64_t kc = min64(GEMM_KC, K - pc);
    const float *b = data + pc * Npad + p * kc * NRC, *ak = a + pc * as;
    int64_t k = 0;
    for (; k + 4 <= kc; k += 4)
      for (int u = 0; u < 4; u++) {
        const float av = ak[(k + u) * as];
        for (int j = 0; j < NRC; j++) acc[u][j] += av * b[(k + u) * NRC + j];
      }
    for (; k < kc; k++)
      for (int j = 0; j < NRC; j++) acc[0][j] += ak[k * as] * b[k * NRC + j];
  }
  for (int j = 0; j < NRC; j++) out[j] = (acc[0][j] + acc[1][j]) + (acc[2][j] + acc[3][j]);
}

static void gemv_packed(const gemm_job *J) {
  const int NR = J->k->nr;
  const keel_gemm_packed *pb = J->B->packed;
  const int64_t K = J->K, N = J->N, Npad = round_up(N, NR), as = J->A->cs;
  const keel_gemm_epilogue *ep = &J->epi;
  gemm_tile_epi e = {.alpha = J->alpha, .beta = ep->beta, .load_c = ep->beta != 0.0f, .row_bias = ep->row_bias,
                     .act = (int)ep->act, .act_alpha = ep->act_alpha, .act_beta = ep->act_beta};
  for (int64_t j0 = 0; j0 < N; j0 += NR) {
    float out[GEMM_NR_MAX];
    if (NR == 32)
      gemv_panel(32, J->A->p, as, pb->data, K, Npad, j0 / NR, out);
    else
      gemv_panel(16, J->A->p, as, pb->data, K, Npad, j0 / NR, out); /* AVX2 and generic panels are 16 wide */
    e.col_bias = ep->col_bias ? ep->col_bias + j0 : NULL;
    keel_gemm_epi_scalar(out, GEMM_NR_MAX, J->C + j0, J->ldc, 1, (int)min64(NR, N - j0), &e);
  }
}

/* K == 0: C = beta * C + biases, then the activation. */
static void gemm_k0(int64_t M, int64_t N, float *C, int64_t ldc, const keel_gemm_epilogue *e) {
  for (int64_t i = 0; i < M; i++) {
    float *cr = C + i * ldc;
    for (int64_t j = 0; j < N; j++) {
      float v = e->beta != 0.0f ? e->beta * cr[j] : 0.0f;
      if (e->row_bias) v += e->row_bias[i];
      if (e->col_bias) v += e->col_bias[j];
      cr[j] = v;
    }
    keel_act_apply_f32(cr, (size_t)N, e->act, e->act_alpha, e->act_beta);
  }
}

/* Scratch for callers that have no planned workspace for the GEMM (operators whose table entry asks for
 * none yet): one buffer per thread, grown once to the largest need and kept for the thread's life, so the
 * steady state allocates nothing. Freed by the thread-exit destructor. */
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static _Thread_local void *tls_buf;
static _Thread_local size_t tls_bytes;
static void tls_init(void) { pthread_key_create(&tls_key, free); }

static void *thread_scratch(size_t bytes) {
  if (tls_bytes >= bytes) return tls_buf;
  pthread_once(&tls_once, tls_init);
  bytes = (bytes + 65535) & ~(size_t)65535;
  void *p = aligned_alloc(64, bytes);
  if (!p) return NULL;
  free(tls_buf);
  tls_buf = p;
  tls_bytes = bytes;
  pthread_setspecific(tls_key, p);
  return p;
}

/* Work below which a second thread costs more than it saves (fork/join is a few microseconds). */
#define GEMM_MIN_FLOPS_PER_THREAD (1 << 19)

bool keel_sgemm(int64_t M, int64_t N, int64_t K, float alpha, const keel_gemm_operand *A, const keel_gemm_operand *B,
                float *C, int64_t ldc, const keel_gemm_epilogue *epi, void *ws, size_t ws_bytes, int num_threads) {
  return keel_sgemm_batch(1, 0, 0, M, N, K, alpha, A, B, C, ldc, epi, ws, ws_bytes, num_threads);
}

bool keel_sgemm_batch(int64_t batch, int64_t b_stride, int64_t c_stride, int64_t M, int64_t N, int64_t K, float alpha,
                      const keel_gemm_operand *A, const keel_gemm_operand *B, float *C, int64_t ldc,
                      const keel_gemm_epilogue *epi, void *ws, size_t ws_bytes, int num_threads) {
  static const keel_gemm_epilogue none = {0};
  if (!epi) epi = &none;
  if (M <= 0 || N <= 0 || batch <= 0) return true;
  if (batch > 1 && B->packed) return false; /* one packed B cannot move between products */
  if (K <= 0) {
    for (int64_t i = 0; i < batch; i++) gemm_k0(M, N, C + i * c_stride, ldc, epi);
    return true;
  }
  const keel_gemm_packed *pa = A->packed, *pb = B->packed;
  if ((pa && (!pa->is_a || pa->rows != M || pa->K != K)) || (pb && (pb->is_a || pb->rows != N || pb->K != K)) ||
      (pa && pb && pa->isa != pb->isa))
    return false;
  gemm_job J = {.M = M, .N = N, .K = K, .alpha = alpha, .A = A, .B = B, .C = C, .ldc = ldc, .epi = *epi,
                .b_stride = b_stride, .c_stride = c_stride};
  atomic_init(&J.next, 0);
  J.isa = pa ? pa->isa : pb ? pb->isa : keel_gemm_get_isa();
  J.k = &isas[J.isa];
  if (M == 1 && pb && !pa && !A->pack && batch == 1) {
    gemv_packed(&J);
    return true;
  }
  size_t need = scratch_bytes(N, pa != NULL, pb != NULL);
  if (!ws || ws_bytes < need) {
    ws = thread_scratch(need);
    if (!ws) return false;
  }
  J.ws = (void *)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
  /* Threads: split the dimension with more panels; never more threads than work for them. */
  int nt = num_threads < 1 ? 1 : num_threads;
  const double flops = 2.0 * (double)M * (double)N * (double)K * (double)batch;
  while (nt > 1 && flops / nt < GEMM_MIN_FLOPS_PER_THREAD) nt--;
  const int64_t pm = (M + J.k->mr - 1) / J.k->mr, pn = (N + J.k->nr - 1) / J.k->nr;
  J.split_n = pn >= pm;
  const int64_t panels = J.split_n ? pn : pm;
  if (nt > panels * batch) nt = (int)(panels * batch > 1 ? panels * batch : 1);
  /* Chunks: a few per thread (over the whole batch) for balance; exactly one per thread when each chunk
   * would re-pack the other operand (N split with A not pre-packed, M split with B not pre-packed): in a
   * batch, one chunk per product when the products divide evenly over the threads (or are many). */
  int64_t chunks = ((int64_t)nt * 4 + batch - 1) / batch;
  /* One product: one chunk per thread. Every chunk streams all of the operand it does not split, so fewer,
   * taller chunks read it fewer times (ResNet-50 at batch 1 on 2 threads: 3% faster than 4 per thread). */
  if (batch == 1) chunks = nt;
  if ((J.split_n && !pa) || (!J.split_n && !pb)) chunks = batch % nt == 0 || batch >= 4 * (int64_t)nt ? 1 : nt;
  if (nt <= 1 || chunks < 1) chunks = 1;
  if (chunks > panels) chunks = panels;
  J.chunk_panels = (panels + chunks - 1) / chunks;
  J.per_product = (panels + J.chunk_panels - 1) / J.chunk_panels;
  J.nchunks = J.per_product * batch;
  if (nt <= 1)
    gemm_thread(&J, 0, 1, NULL);
  else
    keel_parallel_run(nt, gemm_thread, &J);
  return true;
}
