/* Depthwise convolution: see nn_conv_dw.h. Reference loop; specialized kernels go here. */
#include "ops/nn_conv_dw.h"

#include "ops/act.h"

void keel_conv_dw_f32(const keel_conv_dw_params *p, const float *x, const float *w, const float *bias, float *y,
                      int num_threads) {
  (void)num_threads;
  const int64_t plane_in = p->H * p->W, plane_out = p->OH * p->OW;
  for (int64_t n = 0; n < p->N; n++) {
    for (int64_t c = 0; c < p->C; c++) {
      const float *xc = x + (n * p->C + c) * plane_in;
      const float *wc = w + c * (int64_t)p->kh * p->kw;
      float *yc = y + (n * p->C + c) * plane_out;
      const float b = bias ? bias[c] : 0.0f;
      for (int64_t oh = 0; oh < p->OH; oh++) {
        for (int64_t ow = 0; ow < p->OW; ow++) {
          float acc = b;
          for (int i = 0; i < p->kh; i++) {
            const int64_t ih = oh * p->sh - p->pad_top + (int64_t)i * p->dh;
            if (ih < 0 || ih >= p->H) continue;
            for (int j = 0; j < p->kw; j++) {
              const int64_t iw = ow * p->sw - p->pad_left + (int64_t)j * p->dw;
              if (iw < 0 || iw >= p->W) continue;
              acc += xc[ih * p->W + iw] * wc[i * p->kw + j];
            }
          }
          yc[oh * p->OW + ow] = acc;
        }
      }
      keel_act_apply_f32(yc, (size_t)plane_out, p->act, p->act_alpha, p->act_beta);
    }
  }
}
