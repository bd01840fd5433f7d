/* Fused activation epilogues. Written as simple branch-free loops (ternaries, not fmaxf) so the compiler
 * vectorizes them; expf/tanhf/erff are scalar calls. */
#include "ops/act.h"

#include <math.h>

void keel_act_apply_f32(float *p, size_t n, keel_act act, float alpha, float beta) {
  switch (act) {
    case KEEL_ACT_NONE:
      return;
    case KEEL_ACT_RELU:
      for (size_t i = 0; i < n; i++) p[i] = p[i] > 0.0f ? p[i] : 0.0f;
      return;
    case KEEL_ACT_LEAKY_RELU:
      for (size_t i = 0; i < n; i++) p[i] = p[i] >= 0.0f ? p[i] : p[i] * alpha;
      return;
    case KEEL_ACT_CLIP:
      for (size_t i = 0; i < n; i++) {
        float v = p[i] < alpha ? alpha : p[i];
        p[i] = v > beta ? beta : v;
      }
      return;
    case KEEL_ACT_SIGMOID:
      for (size_t i = 0; i < n; i++) {
        /* Split by sign so exp never overflows. */
        float x = p[i];
        if (x >= 0.0f) {
          p[i] = 1.0f / (1.0f + expf(-x));
        } else {
          float e = expf(x);
          p[i] = e / (1.0f + e);
        }
      }
      return;
    case KEEL_ACT_TANH:
      for (size_t i = 0; i < n; i++) p[i] = tanhf(p[i]);
      return;
    case KEEL_ACT_HARD_SIGMOID:
      for (size_t i = 0; i < n; i++) {
        float v = alpha * p[i] + beta;
        v = v < 0.0f ? 0.0f : v;
        p[i] = v > 1.0f ? 1.0f : v;
      }
      return;
    case KEEL_ACT_HARD_SWISH:
      for (size_t i = 0; i < n; i++) {
        float v = p[i] * (1.0f / 6.0f) + 0.5f;
        v = v < 0.0f ? 0.0f : v;
        v = v > 1.0f ? 1.0f : v;
        p[i] = p[i] * v;
      }
      return;
    case KEEL_ACT_GELU:
      for (size_t i = 0; i < n; i++) p[i] = 0.5f * p[i] * (1.0f + erff(p[i] * 0.70710678118654752f));
      return;
  }
}

void keel_act_apply_f64(double *p, size_t n, keel_act act, float alpha_f, float beta_f) {
  double alpha = alpha_f, beta = beta_f;
  switch (act) {
    case KEEL_ACT_NONE:
      return;
    case KEEL_ACT_RELU:
      for (size_t i = 0; i < n; i++) p[i] = p[i] > 0.0 ? p[i] : 0.0;
      return;
    case KEEL_ACT_LEAKY_RELU:
      for (size_t i = 0; i < n; i++) p[i] = p[i] >= 0.0 ? p[i] : p[i] * alpha;
      return;
    case KEEL_ACT_CLIP:
      for (size_t i = 0; i < n; i++) {
        double v = p[i] < alpha ? alpha : p[i];
        p[i] = v > beta ? beta : v;
      }
      return;
    case KEEL_ACT_SIGMOID:
      for (size_t i = 0; i < n; i++) {
        double x = p[i];
        if (x >= 0.0) {
          p[i] = 1.0 / (1.0 + exp(-x));
        } else {
          double e = exp(x);
          p[i] = e / (1.0 + e);
        }
      }
      return;
    case KEEL_ACT_TANH:
      for (size_t i = 0; i < n; i++) p[i] = tanh(p[i]);
      return;
    case KEEL_ACT_HARD_SIGMOID:
      for (size_t i = 0; i < n; i++) {
        double v = alpha * p[i] + beta;
        v = v < 0.0 ? 0.0 : v;
        p[i] = v > 1.0 ? 1.0 : v;
      }
      return;
    case KEEL_ACT_HARD_SWISH:
      for (size_t i = 0; i < n; i++) {
        double v = p[i] / 6.0 + 0.5;
        v = v < 0.0 ? 0.0 : v;
        v = v > 1.0 ? 1.0 : v;
        p[i] = p[i] * v;
      }
      return;
    case KEEL_ACT_GELU:
      for (size_t i = 0; i < n; i++) p[i] = 0.5 * p[i] * (1.0 + erf(p[i] * 0.70710678118654752));
      return;
  }
}
