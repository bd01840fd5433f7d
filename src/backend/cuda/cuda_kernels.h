/* Launchers of the backend's own CUDA kernels (ops_*.cu), callable from C. Each enqueues on `stream` and
 * returns the launch error (cudaGetLastError) as an int, 0 on success. Shapes are decided by the C side
 * (cuda_ops.c); kernels only index. */
#ifndef KEEL_BACKEND_CUDA_KERNELS_H
#define KEEL_BACKEND_CUDA_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KCU_MAX_DIMS 8

/* Unary float ops (also the fused activations). */
enum {
  KCU_IDENTITY = 0, KCU_RELU, KCU_LEAKY_RELU, KCU_SIGMOID, KCU_TANH, KCU_ERF, KCU_EXP, KCU_LOG, KCU_SQRT, KCU_NEG,
  KCU_ABS, KCU_RECIPROCAL, KCU_CLIP, KCU_HARD_SIGMOID, KCU_HARD_SWISH, KCU_GELU, KCU_ELU, KCU_SOFTPLUS, KCU_FLOOR,
  KCU_CEIL, KCU_SIN, KCU_COS, KCU_SOFTSIGN, KCU_SELU, KCU_GELU_TANH
};
/* Binary float ops. */
enum { KCU_ADD = 0, KCU_SUB, KCU_MUL, KCU_DIV, KCU_POW, KCU_MAX, KCU_MIN, KCU_PRELU };
/* Reductions. */
enum { KCU_RSUM = 0, KCU_RMEAN, KCU_RMAX, KCU_RMIN, KCU_RPROD, KCU_RL2, KCU_RL1, KCU_RSUMSQ, KCU_RLOGSUMEXP };

/* Output dims plus, per output dim, the element stride of each operand (0 where it broadcasts). */
typedef struct kcu_bcast {
  int ndim;
  int64_t n;
  int64_t dims[KCU_MAX_DIMS];
  int64_t sa[KCU_MAX_DIMS];
  int64_t sb[KCU_MAX_DIMS];
} kcu_bcast;

/* dst[i] = src[offset + sum_d idx_d * strides_d] over dst's dims (Transpose, Slice, Expand). */
typedef struct kcu_strided {
  int ndim;
  int64_t n;
  int64_t dims[KCU_MAX_DIMS];
  int64_t strides[KCU_MAX_DIMS];
  int64_t offset;
} kcu_strided;

int kcu_unary(void *stream, int op, const float *x, float *y, int64_t n, float alpha, float beta);
/* y = clip(x, *lo, *hi); lo/hi device scalars or NULL */
int kcu_clip_ptr(void *stream, const float *x, float *y, int64_t n, const float *lo, const float *hi);
int kcu_binary(void *stream, int op, const float *a, const float *b, float *y, const kcu_bcast *bc);
/* y[r, c, i] = act(y[r, c, i] + (bias ? bias[c] : 0)) for r < rows, c < cols, i < inner */
int kcu_bias_act(void *stream, float *y, const float *bias, int64_t rows, int64_t cols, int64_t inner, int act,
                 float alpha, float beta);
/* y[r, c] = beta * C[broadcast] (Gemm's C term before the product is added by cuBLAS) */
int kcu_broadcast_fill(void *stream, const float *c, float *y, const kcu_bcast *bc, float beta);
int kcu_strided_copy(void *stream, const void *src, void *dst, int esize, const kcu_strided *d);
/* out[o, j, i] = data[o, idx[j] (wrapped if negative), i]; out-of-range indices write zeros */
int kcu_gather(void *stream, const void *data, const void *idx, int idx_is_i64, void *out, int esize, int64_t outer,
               int64_t axis_dim, int64_t n_idx, int64_t inner);
int kcu_cast(void *stream, const void *src, int src_type, void *dst, int dst_type, int64_t n); /* types: 0 f32 1 i64 2 i32 3 bool(u8) */
int kcu_where(void *stream, const uint8_t *cond, const float *a, const float *b, float *y, const kcu_bcast *bca,
              const kcu_bcast *bcc);

int kcu_im2col(void *stream, const float *x, float *col, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw,
               int64_t ph, int64_t pw, int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t oh, int64_t ow);
/* 2-D pooling over planes (N*C) of H x W into oh x ow. is_max; avg counts padding if count_pad */
int kcu_pool2d(void *stream, const float *x, float *y, int64_t planes, int64_t H, int64_t W, int64_t oh, int64_t ow,
               int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, int is_max,
               int count_pad);
int kcu_rows_reduce(void *stream, const float *x, float *y, int64_t rows, int64_t len, int op); /* per row */
/* general reduction: out element -> input base through out_strides, then loop over the reduced dims */
typedef struct kcu_reduce {
  int ndim_out, ndim_red;
  int64_t n_out, n_red;
  int64_t out_dims[KCU_MAX_DIMS], out_strides[KCU_MAX_DIMS]; /* strides into the input */
  int64_t red_dims[KCU_MAX_DIMS], red_strides[KCU_MAX_DIMS];
} kcu_reduce;
int kcu_reduce_general(void *stream, const float *x, float *y, const kcu_reduce *r, int op);
/* softmax over the middle axis of [outer, n, inner]; log: LogSoftmax; hard: Hardmax */
int kcu_softmax(void *stream, const float *x, float *y, int64_t outer, int64_t n, int64_t inner, int log);
/* softmax(x * scale + mask) over the last axis of bc->dims; x (bc->sa) and mask (bc->sb, may be NULL) broadcast */
int kcu_scale_mask_softmax(void *stream, const float *x, const float *mask, float *y, const kcu_bcast *bc,
                           float scale);
int kcu_layernorm(void *stream, const float *x, const float *scale, const float *bias, float *y, int64_t rows,
                  int64_t n, float eps);
int kcu_batchnorm(void *stream, const float *x, const float *scale, const float *bias, const float *mean,
                  const float *var, float *y, int64_t N, int64_t C, int64_t inner, float eps);

#ifdef __cplusplus
}
#endif
#endif
