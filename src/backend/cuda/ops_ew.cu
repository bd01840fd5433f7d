// Elementwise CUDA kernels: unary ops and activations, broadcasting binary ops, bias+activation epilogues.
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "cuda_kernels.h"

namespace {

constexpr int kThreads = 256;

inline unsigned blocks_for(int64_t n) {
  int64_t b = (n + kThreads - 1) / kThreads;
  return (unsigned)(b > 65535 * 16 ? 65535 * 16 : (b < 1 ? 1 : b)); // grid-stride loops cover the rest
}

__device__ __forceinline__ float apply_unary(int op, float x, float a, float b) {
  switch (op) {
    case KCU_IDENTITY: return x;
    case KCU_RELU: return x > 0.f ? x : 0.f;
    case KCU_LEAKY_RELU: return x >= 0.f ? x : a * x;
    case KCU_SIGMOID: return 1.f / (1.f + expf(-x));
    case KCU_TANH: return tanhf(x);
    case KCU_ERF: return erff(x);
    case KCU_EXP: return expf(x);
    case KCU_LOG: return logf(x);
    case KCU_SQRT: return sqrtf(x);
    case KCU_NEG: return -x;
    case KCU_ABS: return fabsf(x);
    case KCU_RECIPROCAL: return 1.f / x;
    case KCU_CLIP: return fminf(fmaxf(x, a), b);
    case KCU_HARD_SIGMOID: return fminf(fmaxf(a * x + b, 0.f), 1.f);
    case KCU_HARD_SWISH: return x * fminf(fmaxf(x / 6.f + 0.5f, 0.f), 1.f);
    case KCU_GELU: return 0.5f * x * (1.f + erff(x * 0.70710678118654752f));
    case KCU_GELU_TANH: return 0.5f * x * (1.f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    case KCU_ELU: return x >= 0.f ? x : a * (expf(x) - 1.f);
    case KCU_SOFTPLUS: return x > 20.f ? x : log1pf(expf(x));
    case KCU_FLOOR: return floorf(x);
    case KCU_CEIL: return ceilf(x);
    case KCU_SIN: return sinf(x);
    case KCU_COS: return cosf(x);
    case KCU_SOFTSIGN: return x / (1.f + fabsf(x));
    case KCU_SELU: return b * (x > 0.f ? x : a * (expf(x) - 1.f));
    default: return x;
  }
}

__global__ void unary_kernel(int op, const float *x, float *y, int64_t n, float a, float b) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y[i] = apply_unary(op, x[i], a, b);
}

__global__ void clip_ptr_kernel(const float *x, float *y, int64_t n, const float *lo, const float *hi) {
  float l = lo ? *lo : -INFINITY, h = hi ? *hi : INFINITY;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y[i] = fminf(fmaxf(x[i], l), h);
}

__device__ __forceinline__ float apply_binary(int op, float a, float b) {
  switch (op) {
    case KCU_ADD: return a + b;
    case KCU_SUB: return a - b;
    case KCU_MUL: return a * b;
    case KCU_DIV: return a / b;
    case KCU_POW: return powf(a, b);
    case KCU_MAX: return fmaxf(a, b);
    case KCU_MIN: return fminf(a, b);
    case KCU_PRELU: return a >= 0.f ? a : a * b;
    default: return a;
  }
}

// Same-shape and scalar-operand fast paths, then the general strided one.
__global__ void binary_same(int op, const float *a, const float *b, float *y, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y[i] = apply_binary(op, a[i], b[i]);
}

__global__ void binary_scalar_b(int op, const float *a, const float *b, float *y, int64_t n) {
  float s = *b;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y[i] = apply_binary(op, a[i], s);
}

__global__ void binary_bcast(int op, const float *a, const float *b, float *y, kcu_bcast bc) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < bc.n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t r = i, oa = 0, ob = 0;
    for (int d = bc.ndim - 1; d >= 0; d--) {
      int64_t q = r / bc.dims[d], idx = r - q * bc.dims[d];
      r = q;
      oa += idx * bc.sa[d];
      ob += idx * bc.sb[d];
    }
    y[i] = apply_binary(op, a[oa], b[ob]);
  }
}

__global__ void fill_bcast(const float *c, float *y, kcu_bcast bc, float beta) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < bc.n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t r = i, oc = 0;
    for (int d = bc.ndim - 1; d >= 0; d--) {
      int64_t q = r / bc.dims[d], idx = r - q * bc.dims[d];
      r = q;
      oc += idx * bc.sa[d];
    }
    y[i] = beta * c[oc];
  }
}

__global__ void bias_act_kernel(float *y, const float *bias, int64_t n, int64_t cols, int64_t inner, int act,
                                float a, float b) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float v = y[i];
    if (bias) v += bias[(i / inner) % cols];
    y[i] = apply_unary(act, v, a, b);
  }
}

__global__ void where_kernel(const uint8_t *cond, const float *a, const float *b, float *y, kcu_bcast bab,
                             kcu_bcast bc) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < bab.n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t r = i, oa = 0, ob = 0, oc = 0;
    for (int d = bab.ndim - 1; d >= 0; d--) {
      int64_t q = r / bab.dims[d], idx = r - q * bab.dims[d];
      r = q;
      oa += idx * bab.sa[d];
      ob += idx * bab.sb[d];
      oc += idx * bc.sa[d];
    }
    y[i] = cond[oc] ? a[oa] : b[ob];
  }
}

} // namespace

extern "C" int kcu_unary(void *stream, int op, const float *x, float *y, int64_t n, float alpha, float beta) {
  if (n <= 0) return 0;
  unary_kernel<<<blocks_for(n), kThreads, 0, (cudaStream_t)stream>>>(op, x, y, n, alpha, beta);
  return (int)cudaGetLastError();
}

extern "C" int kcu_clip_ptr(void *stream, const float *x, float *y, int64_t n, const float *lo, const float *hi) {
  if (n <= 0) return 0;
  clip_ptr_kernel<<<blocks_for(n), kThreads, 0, (cudaStream_t)stream>>>(x, y, n, lo, hi);
  return (int)cudaGetLastError();
}

extern "C" int kcu_binary(void *stream, int op, const float *a, const float *b, float *y, const kcu_bcast *bc) {
  if (bc->n <= 0) return 0;
  bool a_full = true, b_full = true, b_scalar = true;
  int64_t sz = 1;
  for (int d = bc->ndim - 1; d >= 0; d--) {
    if (bc->dims[d] != 1) {
      if (bc->sa[d] != sz) a_full = false;
      if (bc->sb[d] != sz) b_full = false;
      if (bc->sb[d] != 0) b_scalar = false;
    }
    sz *= bc->dims[d];
  }
  cudaStream_t s = (cudaStream_t)stream;
  if (a_full && b_full) binary_same<<<blocks_for(bc->n), kThreads, 0, s>>>(op, a, b, y, bc->n);
  else if (a_full && b_scalar) binary_scalar_b<<<blocks_for(bc->n), kThreads, 0, s>>>(op, a, b, y, bc->n);
  else binary_bcast<<<blocks_for(bc->n), kThreads, 0, s>>>(op, a, b, y, *bc);
  return (int)cudaGetLastError();
}

extern "C" int kcu_broadcast_fill(void *stream, const float *c, float *y, const kcu_bcast *bc, float beta) {
  if (bc->n <= 0) return 0;
  fill_bcast<<<blocks_for(bc->n), kThreads, 0, (cudaStream_t)stream>>>(c, y, *bc, beta);
  return (int)cudaGetLastError();
}

extern "C" int kcu_bias_act(void *stream, float *y, const float *bias, int64_t rows, int64_t cols, int64_t inner,
                            int act, float alpha, float beta) {
  int64_t n = rows * cols * inner;
  if (n <= 0 || (!bias && act == KCU_IDENTITY)) return 0;
  bias_act_kernel<<<blocks_for(n), kThreads, 0, (cudaStream_t)stream>>>(y, bias, n, cols, inner > 0 ? inner : 1, act,
                                                                        alpha, beta);
  return (int)cudaGetLastError();
}

extern "C" int kcu_where(void *stream, const uint8_t *cond, const float *a, const float *b, float *y,
                         const kcu_bcast *bca, const kcu_bcast *bcc) {
  if (bca->n <= 0) return 0;
  where_kernel<<<blocks_for(bca->n), kThreads, 0, (cudaStream_t)stream>>>(cond, a, b, y, *bca, *bcc);
  return (int)cudaGetLastError();
}
