/* CUDA backend internals (C files of src/backend/cuda only): the context, error mapping and the kernel
 * interface. */
#ifndef KEEL_BACKEND_CUDA_INTERNAL_H
#define KEEL_BACKEND_CUDA_INTERNAL_H

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <pthread.h>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_cache.h"
#include "core/error.h"
#include "ops/op.h"

/* cudaError_t -> status naming the call, the device and the size (bytes < 0: no size). NULL on success.
 * Out-of-memory maps to KEEL_OUT_OF_MEMORY, no device/driver to KEEL_DEVICE_ERROR "no CUDA device: ...",
 * everything else to KEEL_DEVICE_ERROR. */
keel_status *keel_cuda_error(int err, const char *call, int device, long long bytes);
keel_status *keel_cublas_error(int st, const char *call, int device);
const char *keel_cublas_status_name(int st);

/* cuBLAS is loaded with dlopen on first use: linking it would add ~0.4 s of relocation to the start of every
 * process that links keel (the CLI, the tests, the Python package), GPU or not. */
typedef struct keel_cublas_api {
  cublasStatus_t (*create)(cublasHandle_t *h);
  cublasStatus_t (*destroy)(cublasHandle_t h);
  cublasStatus_t (*set_stream)(cublasHandle_t h, cudaStream_t s);
  cublasStatus_t (*set_math_mode)(cublasHandle_t h, cublasMath_t mode);
  cublasStatus_t (*set_workspace)(cublasHandle_t h, void *ws, size_t bytes);
  cublasStatus_t (*sgemm)(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                          const float *alpha, const float *A, int lda, const float *B, int ldb, const float *beta,
                          float *C, int ldc);
  cublasStatus_t (*sgemm_strided_batched)(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const float *alpha, const float *A, int lda, long long sa,
                                          const float *B, int ldb, long long sb, const float *beta, float *C, int ldc,
                                          long long sc, int batch);
} keel_cublas_api;
extern keel_cublas_api keel_cublas;
/* Load cuBLAS (once per process); a status naming the library when it is missing. */
keel_status *keel_cublas_load(void);

#define KEEL_CUDA_CHECK(expr, device, bytes) KEEL_TRY(keel_cuda_error((int)(expr), #expr, (device), (bytes)))
#define KEEL_CUBLAS_CHECK(expr, device) KEEL_TRY(keel_cublas_error((int)(expr), #expr, (device)))

typedef struct graph_entry graph_entry;

struct keel_cuda_ctx {
  int device;
  cudaStream_t stream;
  cublasHandle_t cublas;
  void *cublas_ws; /* cuBLAS workspace set explicitly so graph capture never makes it allocate */
  size_t cublas_ws_bytes;
  cudaEvent_t ev_caller; /* recorded on a caller's stream for the engine stream to wait on */
  keel_allocator *memory; /* counted cudaMalloc */
  keel_cuda_cache *scratch;
  pthread_mutex_t mu; /* stats and the graph cache */
  keel_cuda_stats st;
  graph_entry *graphs;
  int n_graphs;
  uint64_t clock;
};

/* What a CUDA kernel gets besides its tensors. */
typedef struct keel_cuda_exec {
  keel_cuda_ctx *ctx;
  cudaStream_t stream;
  void *workspace; /* device scratch of the size the op's workspace function asked for */
  size_t workspace_bytes;
  const keel_view *host; /* per view: constants' host data (NULL data otherwise), for shape-like inputs */
} keel_cuda_exec;

typedef keel_status *(*keel_cuda_run_fn)(const keel_node *n, const keel_view *in, int n_in, keel_view *out,
                                         int n_out, keel_cuda_exec *ex);
/* Check what the kernel supports for these views (dtypes, ranks, attributes); NULL if fine. */
typedef keel_status *(*keel_cuda_check_fn)(const keel_node *n, const keel_view *in, int n_in, const keel_view *out,
                                           int n_out);
typedef size_t (*keel_cuda_ws_fn)(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out);

typedef struct keel_cuda_op {
  const char *op_type;
  keel_cuda_run_fn run;
  keel_cuda_check_fn check; /* may be NULL */
  keel_cuda_ws_fn workspace; /* may be NULL */
} keel_cuda_op;

const keel_cuda_op *keel_cuda_op_find(const keel_node *n);
/* Every CUDA op name, for docs and `keel ops`-style listings. */
int keel_cuda_op_count(void);
const char *keel_cuda_op_name(int i);

/* Launch-error check after a kernel launch: cudaGetLastError as a status naming the kernel. */
keel_status *keel_cuda_launched(keel_cuda_exec *ex, const char *kernel);

#endif
