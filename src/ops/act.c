/* Fused activation epilogues. Written as simple branch-free loops (ternaries, not fmaxf) so the compiler
 * vectorizes them; expf/tanhf are scalar calls, GELU has its own vectorizable erfc (keel_gelu_f32). */
#include "ops/act.h"

#include <math.h>

#include "ops/fast_exp.h"

void keel_gelu_f32(const float *x, float *y, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const float v = x[i];
    const float z = fabsf(v) * 0.70710678118654752f; /* |v| / sqrt(2) */
    const float t = 1.0f / (1.0f + 0.3275911f * z);
    float q = 1.061405429f;
    q = q * t - 1.453152027f;
    q = q * t + 1.421413741f;
    q = q * t - 0.284496736f;
    q = q * t + 0.254829592f;
    q = q * t * keel_expf_fast(-z * z); /* erfc(z) */
    /* Phi(v) = erfc(-v / sqrt 2) / 2: 1 - q/2 for v >= 0, q/2 below */
    const float phi = v >= 0.0f ? 1.0f - 0.5f * q : 0.5f * q;
    y[i] = v * phi;
  }
}

void keel_act_apply_f32(float *p, size_t n, keel_act act, float alpha, float beta) {
  switch (act) {
    case KEEL_ACT_NONE:
      return;
    case KEEL_ACT_RELU:
      for (size_t i = 0; i < n; i++) p[i] = p[i] < 0.0f ? 0.0f : p[i]; /* NaN stays NaN, like the Relu op */
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
      keel_gelu_f32(p, p, n);
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
