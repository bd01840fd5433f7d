/* keel's sgemm against OpenBLAS's cblas_sgemm on the shapes that dominate the benchmark models, alternating
 * the two in one process. Build (after building keel in build-gemm):
 *   cc -O2 -Isrc -Iinclude bench/gemm_bench.c build-gemm/libkeel.a -lopenblas -lprotobuf-c -lm -lpthread \
 *      -o /tmp/gemm_bench && /tmp/gemm_bench [threads]
 * Prints GFLOP/s per shape (best of 5): keel with A pre-packed (as Conv weights are), with B pre-packed (as
 * MatMul weights are), keel unpacked, OpenBLAS. The machine's load shows in every column alike. */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "backend/cpu/gemm.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1;
  openblas_set_num_threads(threads);
  /* M, N, K: ResNet-50 convs as W[M, C*k*k] x X[C*k*k, HW], BERT MatMuls as X[128, K] x W[K, N], square. */
  static const int shapes[][3] = {{64, 3136, 576},  {256, 3136, 64}, {128, 784, 1152}, {512, 784, 128},
                                  {256, 196, 2304}, {1024, 196, 256}, {512, 49, 4608}, {2048, 49, 512},
                                  {128, 768, 768},  {128, 3072, 768}, {128, 768, 3072}, {1024, 768, 768},
                                  {1024, 3072, 768}, {1024, 768, 3072}, {1024, 1024, 1024}};
  const int ns = (int)(sizeof shapes / sizeof shapes[0]);
  printf("isa %s, %d thread(s)\n%-18s %10s %10s %10s %10s\n", keel_gemm_isa_name(keel_gemm_get_isa()), threads,
         "M x N x K", "keel-pA", "keel-pB", "keel", "openblas");
  for (int s = 0; s < ns; s++) {
    const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
    float *A = aligned_alloc(64, sizeof(float) * (size_t)M * K), *B = aligned_alloc(64, sizeof(float) * (size_t)K * N);
    float *C = aligned_alloc(64, sizeof(float) * (size_t)M * N);
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)K * N; i++) B[i] = (float)(i % 5) * 0.1f;
    keel_gemm_packed *pa = keel_gemm_pack_a(A, M, K, K, 1);
    size_t wsb = keel_gemm_workspace(M, N, K, false, false);
    void *ws = aligned_alloc(64, (wsb + 63) / 64 * 64);
    keel_gemm_operand oa = {A, K, 1, NULL}, opa = {.packed = pa}, ob = {B, N, 1, NULL};
    const double flops = 2.0 * M * N * K;
    const int reps = (int)(2e9 / flops) + 1;
    keel_gemm_packed *pb = keel_gemm_pack_b(B, K, N, N, 1);
    keel_gemm_operand opb = {.packed = pb};
    double best[4] = {1e30, 1e30, 1e30, 1e30};
    for (int round = 0; round < 5; round++)
      for (int v = 0; v < 4; v++) {
        double t0 = now();
        for (int r = 0; r < reps; r++) {
          if (v == 0)
            keel_sgemm(M, N, K, 1.0f, &opa, &ob, C, N, NULL, ws, wsb, threads);
          else if (v == 1)
            keel_sgemm(M, N, K, 1.0f, &oa, &ob, C, N, NULL, ws, wsb, threads);
          else if (v == 3)
            keel_sgemm(M, N, K, 1.0f, &oa, &opb, C, N, NULL, ws, wsb, threads);
          else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
        }
        double t = (now() - t0) / reps;
        if (t < best[v]) best[v] = t;
      }
    char name[32];
    snprintf(name, sizeof name, "%dx%dx%d", M, N, K);
    printf("%-18s %10.1f %10.1f %10.1f %10.1f\n", name, flops / best[0] * 1e-9, flops / best[3] * 1e-9,
           flops / best[1] * 1e-9, flops / best[2] * 1e-9);
    keel_gemm_packed_free(pa);
    keel_gemm_packed_free(pb);
    free(ws), free(A), free(B), free(C);
  }
  return 0;
}
