/* keel's single-precision GEMM: C = alpha * op(A) op(B) (+ beta * C) (+ bias), then an activation.
 *
 * Classic five-loop blocking (N in NC columns, K in KC, M in MC rows) around a register-tile microkernel
 * chosen once at run time: AVX-512 (14 x 32), AVX2 + FMA (6 x 16) or portable C (4 x 16). Operands are
 * copied into "panels" (MR rows or NR columns, k-major) so the microkernel reads both streams linearly;
 * a constant operand (a weight) can be packed once at engine build (keel_gemm_pack_a / _b) and reused by
 * every call and thread. The epilogue (bias per row or column, beta * C, activation) runs on each tile
 * while it is still in registers / L1.
 *
 * Per-call scratch (the panels of the operands that are not pre-packed) comes from the caller's workspace
 * (keel_gemm_workspace bytes) for the calling thread; pool threads use their own buffers. */
#ifndef KEEL_BACKEND_CPU_GEMM_H
#define KEEL_BACKEND_CPU_GEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "graph/ir.h"

typedef enum keel_gemm_isa {
  KEEL_GEMM_GENERIC = 0,
  KEEL_GEMM_AVX2 = 1,
  KEEL_GEMM_AVX512 = 2,
} keel_gemm_isa;

/* The best kernel this CPU runs (KEEL_GEMM_ISA=generic|avx2|avx512 in the environment lowers it). */
keel_gemm_isa keel_gemm_isa_best(void);
/* Kernel used by calls and packings from now on (tests compare paths); clamps to what the CPU has.
 * Returns the ISA actually selected. Not thread-safe against concurrent GEMMs: call it before them. */
keel_gemm_isa keel_gemm_set_isa(keel_gemm_isa isa);
keel_gemm_isa keel_gemm_get_isa(void);
const char *keel_gemm_isa_name(keel_gemm_isa isa);

/* An operand packed once: A (rows = M) or B (rows = N, "rows" being the packed dimension), K deep.
 * Immutable after creation: any number of threads may read it. */
typedef struct keel_gemm_packed {
  keel_gemm_isa isa; /* the kernel whose panel width it was packed for */
  bool is_a;
  int64_t rows, K;
  float *data; /* 64-byte aligned */
  size_t bytes;
} keel_gemm_packed;

/* A(i, k) = a[i * rs + k * cs], i < M, k < K. NULL on out of memory. */
keel_gemm_packed *keel_gemm_pack_a(const float *a, int64_t M, int64_t K, int64_t rs, int64_t cs);
/* B(k, j) = b[k * rs + j * cs], k < K, j < N. */
keel_gemm_packed *keel_gemm_pack_b(const float *b, int64_t K, int64_t N, int64_t rs, int64_t cs);
void keel_gemm_packed_free(keel_gemm_packed *p);

/* Writes an operand's panels itself (e.g. implicit im2col). For B: columns [j0, j0 + nj) and rows
 * [k0, k0 + kc) as panels of nr columns, each kc x nr (k-major); columns past N are zero. For A the same
 * with j = A's rows (past M: zero) and nr = the kernel's row count. */
typedef void (*keel_gemm_pack_fn)(const void *ctx, float *dst, int64_t k0, int64_t kc, int64_t j0, int64_t nj,
                                  int nr);

/* One operand: strided memory (element (r, c) at p[r * rs + c * cs]), pre-packed, or (B) a pack callback. */
typedef struct keel_gemm_operand {
  const float *p;
  int64_t rs, cs;
  const keel_gemm_packed *packed; /* when non-NULL, the rest is ignored */
  keel_gemm_pack_fn pack;         /* when non-NULL, p / rs / cs are ignored */
  const void *pack_ctx;
} keel_gemm_operand;

typedef struct keel_gemm_epilogue {
  float beta;            /* C = ... + beta * C (0: C is only written) */
  const float *row_bias; /* [M] added to row i, or NULL */
  const float *col_bias; /* [N] added to column j, or NULL */
  keel_act act;          /* applied last (ops/act.h) */
  float act_alpha, act_beta;
} keel_gemm_epilogue;

/* Workspace bytes keel_sgemm needs on the calling thread for this shape; a_packed / b_packed: which
 * operands are pre-packed (their panels need no room). */
size_t keel_gemm_workspace(int64_t M, int64_t N, int64_t K, bool a_packed, bool b_packed);

/* C[M, N] (row stride ldc) = alpha * A[M, K] B[K, N] then the epilogue. epi may be NULL (beta 0, nothing
 * else). ws: keel_gemm_workspace bytes; when NULL or smaller, a per-thread buffer kept for the thread's life
 * is used (allocated on the first such call only). Uses up to num_threads threads of the shared pool.
 * Returns false when that buffer cannot be allocated or a packed operand does not match M/N/K. */
bool keel_sgemm(int64_t M, int64_t N, int64_t K, float alpha, const keel_gemm_operand *A, const keel_gemm_operand *B,
                float *C, int64_t ldc, const keel_gemm_epilogue *epi, void *ws, size_t ws_bytes, int num_threads);

/* `batch` products sharing A, K and the epilogue: product i reads B at B->p + i * b_stride floats (with a
 * pack callback: its pack_ctx is (const char *)B->pack_ctx + i * b_stride, an array of contexts; B must not
 * be pre-packed) and writes C + i * c_stride. One fork / join for all of
 * them, the threads' chunks spread over every product (a batch-8 1x1 convolution: one GEMM per image, each
 * too short to split well alone). keel_sgemm is the batch-1 case. */
bool keel_sgemm_batch(int64_t batch, int64_t b_stride, int64_t c_stride, int64_t M, int64_t N, int64_t K, float alpha,
                      const keel_gemm_operand *A, const keel_gemm_operand *B, float *C, int64_t ldc,
                      const keel_gemm_epilogue *epi, void *ws, size_t ws_bytes, int num_threads);

#endif
