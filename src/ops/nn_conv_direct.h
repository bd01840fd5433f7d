/* Direct float32 convolution on NCHW maps, AVX-512 only: stride 1 with the output as wide as the input
 * (pad_left + pad_right == (kw - 1) * dw), and stride 2 along rows. The contract between Conv
 * (ops/nn_conv.c, which decides when to call it) and the kernel (ops/nn_conv_direct.c).
 *
 * With OW == W, output position p = oh * W + ow reads input element p + (i * dh - pad_top) * W + j * dw -
 * pad_left for tap (i, j): linear in p. A tile of 32 consecutive positions therefore loads each k = (c, i, j)
 * operand of the convolution GEMM straight from the input with masked loads (lanes whose tap falls outside
 * the map read 0), with no im2col / packing pass; at stride 2 a tile covers up to 32 positions of one
 * output row. The weights are the GEMM's pre-packed A operand. */
#ifndef KEEL_OPS_NN_CONV_DIRECT_H
#define KEEL_OPS_NN_CONV_DIRECT_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/cpu/gemm.h"
#include "graph/ir.h"

typedef struct keel_conv_direct_params {
  int64_t N, C, H, W, M, OH, OW; /* the output is N x M x OH x OW */
  int kh, kw, dh, dw, sh, sw;    /* strides: 1 and 1 with OW == W, or sw 2 (any sh) */
  int pad_top, pad_left;         /* bottom / right padding follow from OH / OW */
  keel_act act;                  /* fused activation (ops/act.h) */
  float act_alpha, act_beta;
} keel_conv_direct_params;

/* Whether the kernel covers this shape with these packed weights (keel_gemm_pack_a of W as M x C*kh*kw,
 * packed for AVX-512) on this CPU with the GEMM kernel now selected. */
bool keel_conv_direct_supported(const keel_conv_direct_params *p, const keel_gemm_packed *pa);
/* Whether Conv should take the direct path for this shape (weights aside) rather than the implicit-im2col
 * GEMM: covered on this CPU, not forced off (below), and at stride 2 a short K with few output channels
 * (stems). Stride 1 was faster on every shape measured (Zen 5). */
bool keel_conv_direct_wanted(const keel_conv_direct_params *p);
/* Wanted, and also preferred to the swapped GEMM orientation that Conv picks for small maps: where the
 * 32-position tiles are at least 80% used (14x14 maps: 87%, faster; 7x7: 77%, slower), or forced on. */
bool keel_conv_direct_over_swapped(const keel_conv_direct_params *p);

/* y[n, m, oh, ow] = bias[m] + sum W[m, c, i, j] x[n, c, oh*sh + i*dh - pad_top, ow*sw + j*dw - pad_left],
 * then the activation; bias may be NULL. Requires keel_conv_direct_supported. Up to num_threads threads. Never
 * allocates. */
void keel_conv_direct_f32(const keel_conv_direct_params *p, const float *x, const keel_gemm_packed *pa,
                          const float *bias, float *y, int num_threads);

/* Tests / benchmarks: use the direct path never (0), wherever it is supported (1), or where it is expected
 * to be faster (-1, the default). Set it before building the engine: Conv packs the weights at build for
 * the orientation it expects. Not for concurrent use with running convolutions. */
void keel_conv_direct_force(int mode);
/* Tests: how many convolutions keel_conv_direct_f32 has run in this process. */
uint64_t keel_conv_direct_calls(void);

#endif
