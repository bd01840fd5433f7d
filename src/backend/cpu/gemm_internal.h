/* Between the GEMM driver (gemm.c) and its microkernels (gemm_avx512.c, gemm_avx2.c, gemm.c's generic one). */
#ifndef KEEL_BACKEND_CPU_GEMM_INTERNAL_H
#define KEEL_BACKEND_CPU_GEMM_INTERNAL_H

#include <stdint.h>

#include "backend/cpu/gemm.h"

/* Blocking shared by every kernel (MC is a multiple of each MR, NC of each NR). KC * NR floats of B stay in
 * L1 (32 KiB at NR 32) while MR x KC slices of A stream through; an MC x KC block of A (336 KiB) sits in L2. */
#define GEMM_KC 256
#define GEMM_MC 336
/* With B pre-packed (weights streaming from memory), A blocks twice as tall: each B panel is fetched half as
 * often (BERT at batch 8: 1024 rows), the A block (688 KiB) still in L2. */
#define GEMM_MC_BPACKED 672
#define GEMM_NC 2048
#define GEMM_MR_MAX 14
#define GEMM_NR_MAX 32

/* What the microkernel does with its tile after the K loop. */
typedef struct gemm_tile_epi {
  float alpha;
  float beta;            /* C = alpha * acc + beta * C when load_c */
  int load_c;            /* read C (beta != 0, or a later K block: beta 1) */
  const float *row_bias; /* first K block only: mr values for this tile, or NULL */
  const float *col_bias; /* first K block only: nr values, or NULL */
  int act;               /* last K block only: keel_act */
  float act_alpha, act_beta;
} gemm_tile_epi;

/* acc tile (mr x nr) of alpha * Ap Bp; Ap: kc x MR (k-major), Bp: kc rows of NR floats, ldb apart (NR for
 * a packed panel; a row stride when the kernel reads B in place: then all NR floats of a row exist). C row
 * stride ldc. */
typedef void (*gemm_ukr_fn)(int64_t kc, const float *Ap, const float *Bp, int64_t ldb, float *C, int64_t ldc, int mr,
                            int nr, const gemm_tile_epi *e);

/* Apply the epilogue to an mr x nr tile of raw products acc (row stride ldacc) into C, in plain C. */
void keel_gemm_epi_scalar(const float *acc, int ldacc, float *C, int64_t ldc, int mr, int nr, const gemm_tile_epi *e);

void keel_gemm_ukr_avx512(int64_t kc, const float *Ap, const float *Bp, int64_t ldb, float *C, int64_t ldc, int mr,
                          int nr, const gemm_tile_epi *e);
void keel_gemm_ukr_avx2(int64_t kc, const float *Ap, const float *Bp, int64_t ldb, float *C, int64_t ldc, int mr,
                        int nr, const gemm_tile_epi *e);

#endif
