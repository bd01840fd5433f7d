/* Depthwise 2-D convolution (group == input channels == output channels), float32, NCHW.
 * The contract between Conv (ops/nn_conv.c, which decides when to call it) and the kernel
 * (ops/nn_conv_dw.c, which may specialize 3x3/5x5 and strides 1/2 with SIMD). */
#ifndef KEEL_OPS_NN_CONV_DW_H
#define KEEL_OPS_NN_CONV_DW_H

#include <stdint.h>

#include "graph/ir.h"

typedef struct keel_conv_dw_params {
  int64_t N, C, H, W, OH, OW;
  int kh, kw, sh, sw, dh, dw;
  int pad_top, pad_left; /* bottom/right padding follows from OH/OW */
  keel_act act;          /* fused activation, applied to the output (see ops/act.h) */
  float act_alpha, act_beta;
} keel_conv_dw_params;

/* y[n,c,oh,ow] = bias[c] + sum_{i,j} x[n,c,oh*sh-pad_top+i*dh, ow*sw-pad_left+j*dw] * w[c,0,i,j], then act.
 * bias may be NULL. Runs with up to num_threads threads. Never allocates. */
void keel_conv_dw_f32(const keel_conv_dw_params *p, const float *x, const float *w, const float *bias, float *y,
                      int num_threads);

/* Tests: force the scalar (0), AVX2 (1) or AVX-512 (2) path (only where the CPU has it); -1 restores run-time
 * detection. Not for concurrent use with running convolutions. */
void keel_conv_dw_force_isa(int isa);
/* Tests / benchmarks: the AVX-512 "flat" band path never (0), wherever it applies (1), or where it is
 * faster (-1, the default). Same caveat. */
void keel_conv_dw_force_flat(int mode);
/* Tests / benchmarks: the stride-1 sweep and stride-2 row paths never (0) or wherever they apply (1, -1: the
 * default). Same caveat. */
void keel_conv_dw_force_new(int mode);

#endif
