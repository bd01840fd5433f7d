// Neural-network CUDA kernels: im2col for convolution, pooling, reductions, softmax, normalization.
#include <cuda_runtime.h>
#include <float.h>
#include <math.h>
#include <stdint.h>

#include "cuda_kernels.h"

namespace {

constexpr int kThreads = 256;

inline unsigned blocks_for(int64_t n) {
  int64_t b = (n + kThreads - 1) / kThreads;
  return (unsigned)(b > 65535 * 16 ? 65535 * 16 : (b < 1 ? 1 : b));
}

inline unsigned rows_grid(int64_t rows) { return (unsigned)(rows > 65535 * 16 ? 65535 * 16 : rows); }

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Block-wide reduction (sum or max) of one value per thread; every thread gets the result.
__device__ float block_reduce(float v, bool is_max) {
  __shared__ float part[32];
  __shared__ float result;
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
  v = is_max ? warp_max(v) : warp_sum(v);
  if (lane == 0) part[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float w = lane < nwarps ? part[lane] : (is_max ? -INFINITY : 0.f);
    w = is_max ? warp_max(w) : warp_sum(w);
    if (lane == 0) result = w;
  }
  __syncthreads();
  float r = result;
  __syncthreads(); // `result` and `part` are reused by the next call
  return r;
}

__global__ void im2col_kernel(const float *x, float *col, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw,
                              int64_t ph, int64_t pw, int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t oh,
                              int64_t ow) {
  int64_t n = C * kh * kw * oh * ow;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t ox = i % ow, t = i / ow, oy = t % oh;
    t /= oh;
    int64_t kx = t % kw;
    t /= kw;
    int64_t ky = t % kh, c = t / kh;
    int64_t iy = oy * sh - ph + ky * dh, ix = ox * sw - pw + kx * dw;
    col[i] = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? x[(c * H + iy) * W + ix] : 0.f;
  }
}

__global__ void pool2d_kernel(const float *x, float *y, int64_t planes, int64_t H, int64_t W, int64_t oh, int64_t ow,
                              int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh,
                              int64_t dw, int is_max, int count_pad) {
  int64_t n = planes * oh * ow;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t ox = i % ow, t = i / ow, oy = t % oh, p = t / oh;
    const float *xp = x + p * H * W;
    float acc = is_max ? -INFINITY : 0.f;
    int64_t cnt = 0, cnt_pad = 0;
    for (int64_t ky = 0; ky < kh; ky++) {
      int64_t iy = oy * sh - ph + ky * dh;
      for (int64_t kx = 0; kx < kw; kx++) {
        int64_t ix = ox * sw - pw + kx * dw;
        // count_include_pad counts window cells inside the padded input, not those past it (ceil_mode)
        if (iy < H + ph && ix < W + pw) cnt_pad++;
        if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
        float v = xp[iy * W + ix];
        acc = is_max ? fmaxf(acc, v) : acc + v;
        cnt++;
      }
    }
    if (!is_max) acc = acc / (float)((count_pad ? cnt_pad : cnt) > 0 ? (count_pad ? cnt_pad : cnt) : 1);
    y[i] = acc;
  }
}

__device__ __forceinline__ float red_init(int op) {
  switch (op) {
    case KCU_RMAX: return -INFINITY;
    case KCU_RMIN: return INFINITY;
    case KCU_RPROD: return 1.f;
    default: return 0.f;
  }
}
__device__ __forceinline__ float red_step(int op, float acc, float v) {
  switch (op) {
    case KCU_RMAX: return fmaxf(acc, v);
    case KCU_RMIN: return fminf(acc, v);
    case KCU_RPROD: return acc * v;
    case KCU_RL1: return acc + fabsf(v);
    case KCU_RL2:
    case KCU_RSUMSQ: return acc + v * v;
    default: return acc + v;
  }
}
__device__ __forceinline__ float red_final(int op, float acc, int64_t n) {
  switch (op) {
    case KCU_RMEAN: return acc / (float)(n > 0 ? n : 1);
    case KCU_RL2: return sqrtf(acc);
    default: return acc;
  }
}

// One block per row: sum/mean/max/min/... of rows of `len` contiguous values (GlobalAveragePool, last-axis
// reductions). LogSumExp is handled by the general kernel.
__global__ void rows_reduce_kernel(const float *x, float *y, int64_t rows, int64_t len, int op) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float *xr = x + r * len;
    float acc = red_init(op);
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x) acc = red_step(op, acc, xr[j]);
    bool is_max = op == KCU_RMAX;
    float tot;
    if (op == KCU_RMIN) tot = -block_reduce(-acc, true);
    else if (op == KCU_RPROD) tot = acc; // not reached: the C side sends products to the general kernel
    else tot = block_reduce(acc, is_max);
    if (threadIdx.x == 0) y[r] = red_final(op, tot, len);
  }
}

// Input offset of the j-th element reduced into the output element whose input offset is `base`.
__device__ __forceinline__ int64_t red_offset(const kcu_reduce &r, int64_t base, int64_t j) {
  for (int d = r.ndim_red - 1; d >= 0; d--) {
    int64_t q = j / r.red_dims[d];
    base += (j - q * r.red_dims[d]) * r.red_strides[d];
    j = q;
  }
  return base;
}

__global__ void reduce_general_kernel(const float *x, float *y, kcu_reduce r, int op) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < r.n_out; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t rem = i, base = 0;
    for (int d = r.ndim_out - 1; d >= 0; d--) {
      int64_t q = rem / r.out_dims[d];
      base += (rem - q * r.out_dims[d]) * r.out_strides[d];
      rem = q;
    }
    float mx = -INFINITY;
    if (op == KCU_RLOGSUMEXP) {
      for (int64_t j = 0; j < r.n_red; j++) mx = fmaxf(mx, x[red_offset(r, base, j)]);
    }
    float acc = red_init(op);
    for (int64_t j = 0; j < r.n_red; j++) {
      int64_t off = red_offset(r, base, j);
      acc = op == KCU_RLOGSUMEXP ? acc + expf(x[off] - mx) : red_step(op, acc, x[off]);
    }
    y[i] = op == KCU_RLOGSUMEXP ? (isinf(mx) ? mx : mx + logf(acc)) : red_final(op, acc, r.n_red);
  }
}

__global__ void softmax_rows(const float *x, float *y, int64_t rows, int64_t n, int log) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float *xr = x + r * n;
    float *yr = y + r * n;
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) mx = fmaxf(mx, xr[j]);
    mx = block_reduce(mx, true);
    float sum = 0.f;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) sum += expf(xr[j] - mx);
    sum = block_reduce(sum, false);
    float inv = 1.f / sum, lsum = logf(sum);
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) yr[j] = log ? xr[j] - mx - lsum : expf(xr[j] - mx) * inv;
  }
}

__global__ void softmax_strided(const float *x, float *y, int64_t outer, int64_t n, int64_t inner, int log) {
  int64_t total = outer * inner;
  for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < total; t += (int64_t)gridDim.x * blockDim.x) {
    int64_t o = t / inner, i = t % inner;
    const float *xp = x + o * n * inner + i;
    float *yp = y + o * n * inner + i;
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; j++) mx = fmaxf(mx, xp[j * inner]);
    float sum = 0.f;
    for (int64_t j = 0; j < n; j++) sum += expf(xp[j * inner] - mx);
    float inv = 1.f / sum, lsum = logf(sum);
    for (int64_t j = 0; j < n; j++) yp[j * inner] = log ? xp[j * inner] - mx - lsum : expf(xp[j * inner] - mx) * inv;
  }
}

/* keel.ScaleMaskSoftmax: y = softmax(x * scale + mask) over the last axis, one block per row. X and the mask
 * broadcast to y's shape (bc.sa / bc.sb are their element strides per output dim, 0 where broadcast). The row
 * is staged in y itself; each thread rereads only the elements it wrote, so y may alias x. */
__global__ void scale_mask_softmax_rows(const float *x, const float *mask, float *y, kcu_bcast bc, int64_t rows,
                                        int64_t L, float scale) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    float *yr = y + r * L;
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < L; j += blockDim.x) {
      int64_t rem = r * L + j, oa = 0, ob = 0;
      for (int d = bc.ndim - 1; d >= 0; d--) {
        int64_t q = rem / bc.dims[d], idx = rem - q * bc.dims[d];
        rem = q;
        oa += idx * bc.sa[d];
        ob += idx * bc.sb[d];
      }
      float v = x[oa] * scale + (mask ? mask[ob] : 0.f);
      yr[j] = v;
      mx = fmaxf(mx, v);
    }
    mx = block_reduce(mx, true);
    float sum = 0.f;
    for (int64_t j = threadIdx.x; j < L; j += blockDim.x) sum += expf(yr[j] - mx);
    sum = block_reduce(sum, false);
    float inv = 1.f / sum;
    for (int64_t j = threadIdx.x; j < L; j += blockDim.x) yr[j] = expf(yr[j] - mx) * inv;
  }
}

__global__ void layernorm_kernel(const float *x, const float *scale, const float *bias, float *y, int64_t rows,
                                 int64_t n, float eps) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float *xr = x + r * n;
    float *yr = y + r * n;
    float s = 0.f;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) s += xr[j];
    float mean = block_reduce(s, false) / (float)n;
    float v = 0.f;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      float d = xr[j] - mean;
      v += d * d;
    }
    float rstd = rsqrtf(block_reduce(v, false) / (float)n + eps);
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      float o = (xr[j] - mean) * rstd * (scale ? scale[j] : 1.f);
      yr[j] = bias ? o + bias[j] : o;
    }
  }
}

__global__ void batchnorm_kernel(const float *x, const float *scale, const float *bias, const float *mean,
                                 const float *var, float *y, int64_t n, int64_t C, int64_t inner, float eps) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t c = (i / inner) % C;
    y[i] = (x[i] - mean[c]) * rsqrtf(var[c] + eps) * scale[c] + bias[c];
  }
}

} // namespace

extern "C" int kcu_im2col(void *stream, const float *x, float *col, int64_t C, int64_t H, int64_t W, int64_t kh,
                          int64_t kw, int64_t ph, int64_t pw, int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t oh,
                          int64_t ow) {
  int64_t n = C * kh * kw * oh * ow;
  if (n <= 0) return 0;
  im2col_kernel<<<blocks_for(n), kThreads, 0, (cudaStream_t)stream>>>(x, col, C, H, W, kh, kw, ph, pw, sh, sw, dh, dw,
                                                                       oh, ow);
  return (int)cudaGetLastError();
}

extern "C" int kcu_pool2d(void *stream, const float *x, float *y, int64_t planes, int64_t H, int64_t W, int64_t oh,
                          int64_t ow, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh,
                          int64_t dw, int is_max, int count_pad) {
  int64_t n = planes * oh * ow;
  if (n <= 0) return 0;
  pool2d_kernel<<<blocks_for(n), kThreads, 0, (cudaStream_t)stream>>>(x, y, planes, H, W, oh, ow, kh, kw, sh, sw, ph,
                                                                       pw, dh, dw, is_max, count_pad);
  return (int)cudaGetLastError();
}

extern "C" int kcu_rows_reduce(void *stream, const float *x, float *y, int64_t rows, int64_t len, int op) {
  if (rows <= 0) return 0;
  rows_reduce_kernel<<<rows_grid(rows), kThreads, 0, (cudaStream_t)stream>>>(x, y, rows, len, op);
  return (int)cudaGetLastError();
}

extern "C" int kcu_reduce_general(void *stream, const float *x, float *y, const kcu_reduce *r, int op) {
  if (r->n_out <= 0) return 0;
  reduce_general_kernel<<<blocks_for(r->n_out), kThreads, 0, (cudaStream_t)stream>>>(x, y, *r, op);
  return (int)cudaGetLastError();
}

extern "C" int kcu_softmax(void *stream, const float *x, float *y, int64_t outer, int64_t n, int64_t inner, int log) {
  if (outer * n * inner <= 0) return 0;
  cudaStream_t s = (cudaStream_t)stream;
  if (inner == 1) softmax_rows<<<rows_grid(outer), kThreads, 0, s>>>(x, y, outer, n, log);
  else softmax_strided<<<blocks_for(outer * inner), kThreads, 0, s>>>(x, y, outer, n, inner, log);
  return (int)cudaGetLastError();
}

extern "C" int kcu_scale_mask_softmax(void *stream, const float *x, const float *mask, float *y, const kcu_bcast *bc,
                                      float scale) {
  int64_t L = bc->ndim ? bc->dims[bc->ndim - 1] : 1;
  if (bc->n <= 0 || L <= 0) return 0;
  int64_t rows = bc->n / L;
  scale_mask_softmax_rows<<<rows_grid(rows), kThreads, 0, (cudaStream_t)stream>>>(x, mask, y, *bc, rows, L, scale);
  return (int)cudaGetLastError();
}

extern "C" int kcu_layernorm(void *stream, const float *x, const float *scale, const float *bias, float *y,
                             int64_t rows, int64_t n, float eps) {
  if (rows * n <= 0) return 0;
  layernorm_kernel<<<rows_grid(rows), kThreads, 0, (cudaStream_t)stream>>>(x, scale, bias, y, rows, n, eps);
  return (int)cudaGetLastError();
}

extern "C" int kcu_batchnorm(void *stream, const float *x, const float *scale, const float *bias, const float *mean,
                             const float *var, float *y, int64_t N, int64_t C, int64_t inner, float eps) {
  int64_t n = N * C * inner;
  if (n <= 0) return 0;
  batchnorm_kernel<<<blocks_for(n), kThreads, 0, (cudaStream_t)stream>>>(x, scale, bias, mean, var, y, n, C,
                                                                          inner > 0 ? inner : 1, eps);
  return (int)cudaGetLastError();
}
