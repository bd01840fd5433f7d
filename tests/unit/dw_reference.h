/* The naive depthwise convolution the depthwise tests compare keel_conv_dw_f32 against (double sums, the
 * fused activation applied per element). Shared by test_fuse_dw.c and test_conv_dw.c. */
#ifndef KEEL_TEST_DW_REFERENCE_H
#define KEEL_TEST_DW_REFERENCE_H

#include <stdint.h>

#include "ops/act.h"
#include "ops/nn_conv_dw.h"

static inline void dw_reference(const keel_conv_dw_params *p, const float *x, const float *w, const float *bias,
                                float *y) {
  for (int64_t n = 0; n < p->N; n++)
    for (int64_t c = 0; c < p->C; c++)
      for (int64_t oh = 0; oh < p->OH; oh++)
        for (int64_t ow = 0; ow < p->OW; ow++) {
          double acc = bias ? bias[c] : 0.0;
          for (int i = 0; i < p->kh; i++)
            for (int j = 0; j < p->kw; j++) {
              const int64_t ih = oh * p->sh - p->pad_top + (int64_t)i * p->dh;
              const int64_t iw = ow * p->sw - p->pad_left + (int64_t)j * p->dw;
              if (ih < 0 || ih >= p->H || iw < 0 || iw >= p->W) continue;
              acc += (double)x[((n * p->C + c) * p->H + ih) * p->W + iw] * w[(c * p->kh + i) * p->kw + j];
            }
          float v = (float)acc;
          keel_act_apply_f32(&v, 1, p->act, p->act_alpha, p->act_beta);
          y[((n * p->C + c) * p->OH + oh) * p->OW + ow] = v;
        }
}

#endif
