// Data-movement CUDA kernels: strided copies (Transpose, Slice, Expand), Gather, Cast.
#include <cuda_runtime.h>
#include <stdint.h>

#include "cuda_kernels.h"

namespace {

constexpr int kThreads = 256;

inline unsigned blocks_for(int64_t n) {
  int64_t b = (n + kThreads - 1) / kThreads;
  return (unsigned)(b > 65535 * 16 ? 65535 * 16 : (b < 1 ? 1 : b));
}

template <typename T>
__global__ void strided_copy(const T *src, T *dst, kcu_strided d) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < d.n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t r = i, off = d.offset;
    for (int k = d.ndim - 1; k >= 0; k--) {
      int64_t q = r / d.dims[k];
      off += (r - q * d.dims[k]) * d.strides[k];
      r = q;
    }
    dst[i] = src[off];
  }
}

template <typename T, typename I>
__global__ void gather_kernel(const T *data, const I *idx, T *out, int64_t outer, int64_t axis_dim, int64_t n_idx,
                              int64_t inner) {
  int64_t n = outer * n_idx * inner;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t in = i % inner, t = i / inner, j = t % n_idx, o = t / n_idx;
    int64_t k = (int64_t)idx[j];
    if (k < 0) k += axis_dim;
    out[i] = (k >= 0 && k < axis_dim) ? data[(o * axis_dim + k) * inner + in] : T();
  }
}

template <typename S, typename D>
__global__ void cast_kernel(const S *s, D *d, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    d[i] = (D)s[i];
}

template <typename S>
__global__ void cast_to_bool(const S *s, uint8_t *d, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    d[i] = s[i] != S(0);
}

template <typename S>
int cast_from(cudaStream_t st, const S *src, void *dst, int dst_type, int64_t n) {
  switch (dst_type) {
    case 0: cast_kernel<<<blocks_for(n), kThreads, 0, st>>>(src, (float *)dst, n); break;
    case 1: cast_kernel<<<blocks_for(n), kThreads, 0, st>>>(src, (int64_t *)dst, n); break;
    case 2: cast_kernel<<<blocks_for(n), kThreads, 0, st>>>(src, (int32_t *)dst, n); break;
    case 3: cast_to_bool<<<blocks_for(n), kThreads, 0, st>>>(src, (uint8_t *)dst, n); break;
    default: return (int)cudaErrorInvalidValue;
  }
  return (int)cudaGetLastError();
}

} // namespace

extern "C" int kcu_strided_copy(void *stream, const void *src, void *dst, int esize, const kcu_strided *d) {
  if (d->n <= 0) return 0;
  cudaStream_t s = (cudaStream_t)stream;
  switch (esize) {
    case 1: strided_copy<<<blocks_for(d->n), kThreads, 0, s>>>((const uint8_t *)src, (uint8_t *)dst, *d); break;
    case 2: strided_copy<<<blocks_for(d->n), kThreads, 0, s>>>((const uint16_t *)src, (uint16_t *)dst, *d); break;
    case 4: strided_copy<<<blocks_for(d->n), kThreads, 0, s>>>((const uint32_t *)src, (uint32_t *)dst, *d); break;
    case 8: strided_copy<<<blocks_for(d->n), kThreads, 0, s>>>((const uint64_t *)src, (uint64_t *)dst, *d); break;
    default: return (int)cudaErrorInvalidValue;
  }
  return (int)cudaGetLastError();
}

template <typename T>
static void gather_t(cudaStream_t s, const void *data, const void *idx, int i64, void *out, int64_t outer,
                     int64_t axis_dim, int64_t n_idx, int64_t inner) {
  int64_t n = outer * n_idx * inner;
  if (i64)
    gather_kernel<<<blocks_for(n), kThreads, 0, s>>>((const T *)data, (const int64_t *)idx, (T *)out, outer, axis_dim,
                                                     n_idx, inner);
  else
    gather_kernel<<<blocks_for(n), kThreads, 0, s>>>((const T *)data, (const int32_t *)idx, (T *)out, outer, axis_dim,
                                                     n_idx, inner);
}

extern "C" int kcu_gather(void *stream, const void *data, const void *idx, int idx_is_i64, void *out, int esize,
                          int64_t outer, int64_t axis_dim, int64_t n_idx, int64_t inner) {
  if (outer * n_idx * inner <= 0) return 0;
  cudaStream_t s = (cudaStream_t)stream;
  switch (esize) {
    case 1: gather_t<uint8_t>(s, data, idx, idx_is_i64, out, outer, axis_dim, n_idx, inner); break;
    case 2: gather_t<uint16_t>(s, data, idx, idx_is_i64, out, outer, axis_dim, n_idx, inner); break;
    case 4: gather_t<uint32_t>(s, data, idx, idx_is_i64, out, outer, axis_dim, n_idx, inner); break;
    case 8: gather_t<uint64_t>(s, data, idx, idx_is_i64, out, outer, axis_dim, n_idx, inner); break;
    default: return (int)cudaErrorInvalidValue;
  }
  return (int)cudaGetLastError();
}

extern "C" int kcu_cast(void *stream, const void *src, int src_type, void *dst, int dst_type, int64_t n) {
  if (n <= 0) return 0;
  cudaStream_t s = (cudaStream_t)stream;
  switch (src_type) {
    case 0: return cast_from(s, (const float *)src, dst, dst_type, n);
    case 1: return cast_from(s, (const int64_t *)src, dst, dst_type, n);
    case 2: return cast_from(s, (const int32_t *)src, dst, dst_type, n);
    case 3: return cast_from(s, (const uint8_t *)src, dst, dst_type, n);
    default: return (int)cudaErrorInvalidValue;
  }
}
