/* keel's GEMM (backend/cpu/gemm.h) against a naive double-precision reference: odd sizes around every
 * blocking boundary, transposed operands, alpha / beta, pre-packed A and B, bias per row / column, each
 * activation, one and two threads, and every kernel this CPU has (generic, AVX2, AVX-512). */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "backend/cpu/gemm.h"
#include "backend/cpu/threadpool.h"
#include "ops/act.h"
#include "test_main.h"

static uint64_t rng = 88172645463325252ull;
static float frand(void) { return test_frand_xorshift(&rng); } /* [-1, 1) */
static int irand(int n) { return (int)((frand() + 1.0f) * 0.5f * (float)n) % n; }

typedef struct cfg {
  int64_t M, N, K;
  bool ta, tb, pack_a, pack_b, row_bias, col_bias;
  bool a_cb, b_cb; /* operand written by a keel_gemm_pack_fn callback (implicit im2col's interface) */
  float alpha, beta;
  keel_act act;
  int threads;
} cfg;

static int64_t cases_run = 0;

/* A pack callback over a strided matrix: element (r, k) of the packed dimension r at p[r * rs + k * cs]. */
typedef struct cb_src {
  const float *p;
  int64_t rs, cs, rows;
} cb_src;

static void cb_pack(const void *ctx, float *dst, int64_t k0, int64_t kc, int64_t j0, int64_t nj, int nr) {
  const cb_src *s = ctx;
  for (int64_t p = 0; p < (nj + nr - 1) / nr; p++)
    for (int64_t k = 0; k < kc; k++)
      for (int r = 0; r < nr; r++) {
        const int64_t row = j0 + p * nr + r;
        dst[(p * kc + k) * nr + r] = row < s->rows ? s->p[row * s->rs + (k0 + k) * s->cs] : 0.0f;
      }
}

/* Run one configuration; return false (and print it) on a mismatch. */
static bool run_case(const cfg *c) {
  const int64_t M = c->M, N = c->N, K = c->K, ldc = N + 3;
  float *A = malloc(sizeof(float) * (size_t)(M * K + 1)), *B = malloc(sizeof(float) * (size_t)(K * N + 1));
  float *C = malloc(sizeof(float) * (size_t)(M * ldc)), *C0 = malloc(sizeof(float) * (size_t)(M * ldc));
  float *rb = malloc(sizeof(float) * (size_t)M), *cb = malloc(sizeof(float) * (size_t)N);
  double *ref = malloc(sizeof(double) * (size_t)(M * N)), *mag = malloc(sizeof(double) * (size_t)(M * N));
  for (int64_t i = 0; i < M * K; i++) A[i] = frand();
  for (int64_t i = 0; i < K * N; i++) B[i] = frand();
  for (int64_t i = 0; i < M * ldc; i++) C0[i] = C[i] = frand();
  for (int64_t i = 0; i < M; i++) rb[i] = frand();
  for (int64_t i = 0; i < N; i++) cb[i] = frand();
  /* A stored as [M, K] or, transposed, [K, M]; B as [K, N] or [N, K]. */
  const int64_t a_rs = c->ta ? 1 : K, a_cs = c->ta ? M : 1, b_rs = c->tb ? 1 : N, b_cs = c->tb ? K : 1;
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      double s = 0, m = 0;
      for (int64_t k = 0; k < K; k++) {
        double p = (double)A[i * a_rs + k * a_cs] * B[k * b_rs + j * b_cs];
        s += p;
        m += fabs(p);
      }
      s = c->alpha * s + c->beta * C0[i * ldc + j];
      if (c->row_bias) s += rb[i];
      if (c->col_bias) s += cb[j];
      ref[i * N + j] = s;
      mag[i * N + j] = fabs(c->alpha) * m + fabs(c->beta * C0[i * ldc + j]) + 2;
    }
  for (int64_t i = 0; i < M; i++) {
    float row[256];
    for (int64_t j0 = 0; j0 < N; j0 += 256) {
      int64_t n = N - j0 < 256 ? N - j0 : 256;
      for (int64_t j = 0; j < n; j++) row[j] = (float)ref[i * N + j0 + j];
      keel_act_apply_f32(row, (size_t)n, c->act, 0.1f, 0.6f);
      for (int64_t j = 0; j < n; j++) ref[i * N + j0 + j] = row[j];
    }
  }
  keel_gemm_operand oa = {A, a_rs, a_cs, NULL}, ob = {B, b_rs, b_cs, NULL};
  keel_gemm_packed *pa = c->pack_a ? keel_gemm_pack_a(A, M, K, a_rs, a_cs) : NULL;
  keel_gemm_packed *pb = c->pack_b ? keel_gemm_pack_b(B, K, N, b_rs, b_cs) : NULL;
  oa.packed = pa;
  ob.packed = pb;
  const cb_src sa = {A, a_rs, a_cs, M}, sb = {B, b_cs, b_rs, N};
  if (c->a_cb && !pa) oa = (keel_gemm_operand){.pack = cb_pack, .pack_ctx = &sa};
  if (c->b_cb && !pb) ob = (keel_gemm_operand){.pack = cb_pack, .pack_ctx = &sb};
  keel_gemm_epilogue e = {.beta = c->beta, .row_bias = c->row_bias ? rb : NULL, .col_bias = c->col_bias ? cb : NULL,
                          .act = c->act, .act_alpha = 0.1f, .act_beta = 0.6f};
  size_t wsb = keel_gemm_workspace(M, N, K, pa != NULL, pb != NULL);
  void *ws = aligned_alloc(64, (wsb + 63) / 64 * 64);
  bool ok = keel_sgemm(M, N, K, c->alpha, &oa, &ob, C, ldc, &e, ws, wsb, c->threads);
  double worst = 0;
  for (int64_t i = 0; i < M && ok; i++) {
    for (int64_t j = 0; j < N; j++) {
      double d = fabs(C[i * ldc + j] - ref[i * N + j]) / mag[i * N + j];
      if (!(d <= 2e-6)) {
        ok = false;
        worst = d;
        fprintf(stderr, "C[%lld,%lld] = %g, reference %g\n", (long long)i, (long long)j, C[i * ldc + j],
                ref[i * N + j]);
        break;
      }
    }
    for (int64_t j = N; j < ldc; j++) /* the padding between rows is never written */
      if (C[i * ldc + j] != C0[i * ldc + j]) {
        ok = false;
        fprintf(stderr, "wrote past row end at [%lld,%lld]\n", (long long)i, (long long)j);
        break;
      }
  }
  if (!ok)
    fprintf(stderr,
            "mismatch (%g): isa %s M %lld N %lld K %lld ta %d tb %d pack_a %d pack_b %d alpha %g beta %g rb %d cb %d "
            "act %d threads %d a_cb %d b_cb %d\n",
            worst, keel_gemm_isa_name(keel_gemm_get_isa()), (long long)M, (long long)N, (long long)K, c->ta, c->tb,
            c->pack_a, c->pack_b, c->alpha, c->beta, c->row_bias, c->col_bias, (int)c->act, c->threads, c->a_cb,
            c->b_cb);
  cases_run++;
  keel_gemm_packed_free(pa);
  keel_gemm_packed_free(pb);
  free(ws);
  free(A), free(B), free(C), free(C0), free(rb), free(cb), free(ref), free(mag);
  return ok;
}

static void random_variant(cfg *c) {
  static const float alphas[] = {1.0f, 1.0f, -0.5f, 2.0f}, betas[] = {0.0f, 0.0f, 1.0f, 0.25f};
  static const keel_act acts[] = {KEEL_ACT_NONE, KEEL_ACT_NONE, KEEL_ACT_RELU, KEEL_ACT_CLIP, KEEL_ACT_SIGMOID,
                                  KEEL_ACT_LEAKY_RELU, KEEL_ACT_GELU};
  c->ta = irand(2);
  c->tb = irand(2);
  c->pack_a = irand(3) == 0;
  c->pack_b = !c->pack_a && irand(2);
  c->alpha = alphas[irand(4)];
  c->beta = betas[irand(4)];
  c->row_bias = irand(3) == 0;
  c->col_bias = irand(3) == 0;
  c->act = acts[irand(7)];
  c->a_cb = !c->pack_a && irand(4) == 0;
  c->b_cb = !c->pack_b && irand(4) == 0;
  c->threads = 1;
}

/* Every ISA the machine has, small odd sizes (each dimension over 1..67 around the tile sizes). */
TEST(small_sizes_all_kernels) {
  TEST_BEGIN("small_sizes_all_kernels");
  static const int64_t sizes[] = {1, 2, 3, 5, 6, 7, 13, 14, 15, 16, 17, 29, 31, 32, 33, 47, 64, 67};
  const int ns = (int)(sizeof sizes / sizeof sizes[0]);
  keel_gemm_isa best = keel_gemm_isa_best();
  for (int isa = KEEL_GEMM_GENERIC; isa <= (int)best; isa++) {
    CHECK(keel_gemm_set_isa((keel_gemm_isa)isa) == (keel_gemm_isa)isa);
    int fails = 0;
    for (int a = 0; a < ns; a++)
      for (int b = 0; b < ns; b++)
        for (int k = 0; k < ns; k += 1 + irand(3)) {
          cfg c = {.M = sizes[a], .N = sizes[b], .K = sizes[k]};
          random_variant(&c);
          if (!run_case(&c) && ++fails > 5) goto next;
        }
  next:
    CHECK(fails == 0);
  }
  keel_gemm_set_isa(best);
  printf("%lld small cases\n", (long long)cases_run);
}

/* Each variant alone on a few sizes, so none depends on the random draw. */
TEST(every_variant) {
  TEST_BEGIN("every_variant");
  static const int64_t shapes[][3] = {{15, 33, 17}, {1, 40, 9}, {29, 1, 70}, {14, 32, 256}};
  for (int s = 0; s < 4; s++)
    for (int v = 0; v < 64; v++) {
      cfg c = {.M = shapes[s][0], .N = shapes[s][1], .K = shapes[s][2], .alpha = 1, .threads = 1};
      c.ta = v & 1;
      c.tb = (v >> 1) & 1;
      c.pack_a = ((v >> 2) & 3) == 1;
      c.pack_b = ((v >> 2) & 3) == 2;
      c.row_bias = (v >> 4) & 1;
      c.col_bias = (v >> 5) & 1;
      c.beta = (v & 4) ? 0.5f : 0.0f;
      c.alpha = (v & 8) ? 1.5f : 1.0f;
      c.act = (keel_act)(v % 9);
      CHECK(run_case(&c));
    }
}

/* Sizes that cross KC (256), MC (336) and NC (2048) and split over two threads. */
TEST(blocking_boundaries_and_threads) {
  TEST_BEGIN("blocking_boundaries_and_threads");
  static const int64_t shapes[][3] = {{340, 70, 520}, {20, 2090, 260}, {337, 33, 257}, {3, 700, 600}, {700, 5, 300}};
  for (int s = 0; s < 5; s++)
    for (int t = 1; t <= 2; t++) {
      cfg c = {.M = shapes[s][0], .N = shapes[s][1], .K = shapes[s][2]};
      random_variant(&c);
      c.threads = t;
      c.pack_a = s % 2 == 0;
      c.pack_b = s == 3;
      c.a_cb = c.b_cb = false;
      CHECK(run_case(&c));
      /* A from a pack callback against a pre-packed B (the swapped convolution), and B from a callback
       * against a pre-packed A (implicit im2col) */
      c.pack_a = false, c.a_cb = true, c.pack_b = true, c.b_cb = false;
      CHECK(run_case(&c));
      c.pack_a = true, c.a_cb = false, c.pack_b = false, c.b_cb = true;
      CHECK(run_case(&c));
    }
}

/* K = 0: C = beta * C + biases, activation; packed operands that do not match the call are refused. */
TEST(edge_cases) {
  TEST_BEGIN("edge_cases");
  cfg c = {.M = 5, .N = 7, .K = 0, .alpha = 1, .beta = 0.5f, .row_bias = true, .col_bias = true, .act = KEEL_ACT_RELU,
           .threads = 1};
  CHECK(run_case(&c));
  float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 0, 0, 1, 1, 1}, y[4];
  keel_gemm_packed *pa = keel_gemm_pack_a(a, 2, 3, 3, 1);
  CHECK(pa != NULL);
  keel_gemm_operand oa = {.packed = pa}, ob = {b, 2, 1, NULL};
  CHECK(!keel_sgemm(2, 2, 2, 1.0f, &oa, &ob, y, 2, NULL, NULL, 0, 1)); /* packed with K 3 */
  CHECK(keel_sgemm(2, 2, 3, 1.0f, &oa, &ob, y, 2, NULL, NULL, 0, 1));
  CHECK(y[0] == 4 && y[1] == 5 && y[2] == 10 && y[3] == 11);
  keel_gemm_packed_free(pa);
}

/* The pool runs every tid exactly once per job, with a worker's scratch or (caller) none, also when several
 * threads submit jobs at once (one gets the pool, the others run alone). */
typedef struct pool_probe {
  atomic_int runs[8];
  atomic_int bad_scratch, by_worker;
} pool_probe;

static void probe_fn(void *ctx, int tid, int nt, void *scratch) {
  pool_probe *p = ctx;
  if (tid >= 0 && tid < 8) atomic_fetch_add(&p->runs[tid], 1);
  if (scratch) atomic_fetch_add(&p->by_worker, 1);
  /* tid 0 lingers a little so the workers get the other tids (else the caller often takes them all) */
  for (volatile int i = 0; !scratch && tid == 0 && i < 20000 && !atomic_load(&p->by_worker); i++) {
  }
  if (scratch && ((uintptr_t)scratch % 64 != 0 || nt < 2)) atomic_fetch_add(&p->bad_scratch, 1);
  if (scratch) memset(scratch, 0, KEEL_POOL_SCRATCH_BYTES); /* all of it is the worker's */
}

static atomic_int pool_worker_runs;

static int pool_rounds(int nt, int rounds) {
  int bad = 0;
  for (int r = 0; r < rounds; r++) {
    pool_probe p = {0};
    int used = keel_parallel_run(nt, probe_fn, &p);
    for (int t = 0; t < 8; t++) {
      int want = t < used ? 1 : 0;
      if (atomic_load(&p.runs[t]) != want) bad++;
    }
    if (used != 1 && used != nt) bad++;
    bad += atomic_load(&p.bad_scratch);
    atomic_fetch_add(&pool_worker_runs, atomic_load(&p.by_worker));
  }
  return bad;
}

static void *pool_caller(void *arg) {
  *(int *)arg = pool_rounds(3, 300);
  return NULL;
}

TEST(thread_pool) {
  TEST_BEGIN("thread_pool");
  CHECK(pool_rounds(1, 10) == 0);
  CHECK(pool_rounds(2, 500) == 0);
  CHECK(pool_rounds(4, 200) == 0);
  CHECK(atomic_load(&pool_worker_runs) > 0); /* the workers did take part */
  printf("pool: %d tids run by workers\n", atomic_load(&pool_worker_runs));
  int bad[3] = {0};
  pthread_t th[3];
  for (int i = 0; i < 3; i++) CHECK(pthread_create(&th[i], NULL, pool_caller, &bad[i]) == 0);
  for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
  CHECK(bad[0] == 0 && bad[1] == 0 && bad[2] == 0);
  if (!getenv("KEEL_NUM_THREADS")) {
    CHECK(setenv("KEEL_NUM_THREADS", "3", 1) == 0);
    CHECK(keel_threads_effective(1) == 3); /* the environment overrides the module option */
    CHECK(keel_threads_effective(7) == 3);
  }
}


/* keel_sgemm_batch: every product equals its own keel_sgemm call bit for bit (same blocking, whichever
 * thread ran which chunk), for plain, transposed and callback B, packed and plain A, one and two threads. */
TEST(batch_matches_single_calls) {
  TEST_BEGIN("batch_matches_single_calls");
  for (int round = 0; round < 40; round++) {
    const int64_t batch = 1 + irand(9), M = 1 + irand(70), N = 1 + irand(90), K = 1 + irand(300);
    const bool pack_a = irand(2), b_cb = irand(3) == 0, tb = !b_cb && irand(3) == 0;
    const int threads = 1 + irand(2);
    const int64_t bst = K * N + 5, cst = M * N + 7; /* gaps between products */
    float *A = malloc(sizeof(float) * (size_t)(M * K)), *B = malloc(sizeof(float) * (size_t)(bst * batch));
    float *C1 = malloc(sizeof(float) * (size_t)(cst * batch)), *C2 = malloc(sizeof(float) * (size_t)(cst * batch));
    float *rb = malloc(sizeof(float) * (size_t)M);
    for (int64_t i = 0; i < M * K; i++) A[i] = frand();
    for (int64_t i = 0; i < bst * batch; i++) B[i] = frand();
    for (int64_t i = 0; i < M; i++) rb[i] = frand();
    for (int64_t i = 0; i < cst * batch; i++) C1[i] = C2[i] = frand();
    keel_gemm_packed *pa = pack_a ? keel_gemm_pack_a(A, M, K, K, 1) : NULL;
    keel_gemm_operand oa = {A, K, 1, pa};
    keel_gemm_epilogue e = {.beta = irand(2) ? 0.5f : 0.0f, .row_bias = rb, .act = KEEL_ACT_RELU};
    cb_src srcs[9];
    for (int64_t i = 0; i < batch; i++) /* B(k, j): plain at k * N + j, transposed at j * K + k */
      srcs[i] = (cb_src){B + i * bst, tb ? K : 1, tb ? 1 : N, N};
    bool ok = true;
    for (int64_t i = 0; i < batch && ok; i++) {
      keel_gemm_operand ob = {B + i * bst, tb ? 1 : N, tb ? K : 1, NULL};
      if (b_cb) ob = (keel_gemm_operand){.pack = cb_pack, .pack_ctx = &srcs[i]};
      ok = keel_sgemm(M, N, K, 0.75f, &oa, &ob, C1 + i * cst, N, &e, NULL, 0, threads);
    }
    CHECK(ok);
    keel_gemm_operand ob = {B, tb ? 1 : N, tb ? K : 1, NULL};
    if (b_cb) ob = (keel_gemm_operand){.pack = cb_pack, .pack_ctx = srcs};
    CHECK(keel_sgemm_batch(batch, b_cb ? (int64_t)sizeof(cb_src) : bst, cst, M, N, K, 0.75f, &oa, &ob, C2, N, &e,
                           NULL, 0, threads));
    CHECK(memcmp(C1, C2, sizeof(float) * (size_t)(cst * batch)) == 0);
    cases_run++;
    keel_gemm_packed_free(pa);
    free(A), free(B), free(C1), free(C2), free(rb);
  }
  /* a pre-packed B cannot serve several products */
  float a[4] = {1, 2, 3, 4}, y[8];
  keel_gemm_packed *pb = keel_gemm_pack_b(a, 2, 2, 2, 1);
  keel_gemm_operand oa = {a, 2, 1, NULL}, ob = {.packed = pb};
  CHECK(!keel_sgemm_batch(2, 4, 4, 2, 2, 2, 1.0f, &oa, &ob, y, 2, NULL, NULL, 0, 1));
  keel_gemm_packed_free(pb);
}

/* A NaN in an input row reaches its output row through a fused ReLU / Clip on every kernel, as through the
 * standalone Relu and Clip ops (x < 0 ? 0 : x keeps NaN; a max(x, 0) instruction with x first would not). */
TEST(fused_clamps_keep_nan) {
  TEST_BEGIN("fused_clamps_keep_nan");
  enum { M = 20, N = 40, K = 8 };
  float a[M * K], b[K * N], c[M * N];
  for (int i = 0; i < M * K; i++) a[i] = frand();
  for (int i = 0; i < K * N; i++) b[i] = frand();
  for (int k = 0; k < K; k++) a[3 * K + k] = NAN;
  const keel_gemm_isa best = keel_gemm_isa_best();
  for (int isa = KEEL_GEMM_GENERIC; isa <= (int)best; isa++) {
    keel_gemm_set_isa((keel_gemm_isa)isa);
    for (int act = 0; act < 2; act++) {
      keel_gemm_epilogue e = {.act = act ? KEEL_ACT_CLIP : KEEL_ACT_RELU, .act_alpha = 0.0f, .act_beta = 0.5f};
      keel_gemm_operand oa = {a, K, 1, NULL}, ob = {b, N, 1, NULL};
      for (int i = 0; i < M * N; i++) c[i] = -7.0f;
      CHECK(keel_sgemm(M, N, K, 1.0f, &oa, &ob, c, N, &e, NULL, 0, 1));
      int nan_ok = 0, rest_ok = 0;
      for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
          double ref = 0;
          for (int k = 0; k < K; k++) ref += (double)a[i * K + k] * b[k * N + j];
          ref = ref < 0 ? 0 : ref;
          if (act && ref > 0.5) ref = 0.5;
          if (i == 3) nan_ok += isnan(c[i * N + j]);
          else rest_ok += fabs(c[i * N + j] - ref) < 1e-4;
        }
      CHECK(nan_ok == N);
      CHECK(rest_ok == (M - 1) * N);
    }
  }
  keel_gemm_set_isa(best);
}

RUN_TESTS(small_sizes_all_kernels, every_variant, blocking_boundaries_and_threads, edge_cases, thread_pool,
          batch_matches_single_calls, fused_clamps_keep_nan)
