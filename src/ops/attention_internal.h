/* Shared helpers of the attention and extra families (attention*.c, extra*.c): element load/store for the
 * float types keel computes in float or double, and the family tables' function declarations. */
#ifndef KEEL_OPS_ATTENTION_INTERNAL_H
#define KEEL_OPS_ATTENTION_INTERNAL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ops/elem.h"
#include "ops/op.h"

#define AT_IN const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out
#define AT_RUN const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out, keel_exec *ex
#define AT_WS const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out

/* n elements of a float16/bfloat16 array to float and back (staging for kernels that compute in float). */
static inline void at_to_f32(keel_dtype t, const void *src, float *dst, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] = (float)keel_elem_load(t, src, i);
}
static inline void at_from_f32(keel_dtype t, const float *src, void *dst, int64_t n) {
  for (int64_t i = 0; i < n; i++) keel_elem_store(t, dst, i, src[i]);
}

/* exp(x) for float in a form the compiler vectorizes (softmax rows): x = n ln2 + r with |r| <= ln2/2, a
 * degree-6 polynomial for e^r, and 2^n put straight into the exponent bits. Relative error ~2 ulp; inputs
 * below -87 give 0 (including -inf), above 88 saturate to e^88. NaN in gives a NaN-free garbage value, so
 * callers that can see NaN must screen for it (softmax does, through its row maximum). */
static inline float at_expf(float x) {
  float xc = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float magic = 12582912.0f; /* 1.5 * 2^23: adding and subtracting it rounds to an integer */
  float n = (xc * 1.4426950408889634f + magic) - magic;
  float r = xc - n * 0.693359375f;   /* ln2 = 0.693359375 - 2.12194440e-4, the first part exact in float */
  r = r + n * 2.12194440e-4f;
  float p = 1.3888889e-3f;           /* 1/720 */
  p = p * r + 8.3333333e-3f;         /* 1/120 */
  p = p * r + 4.1666667e-2f;         /* 1/24 */
  p = p * r + 1.6666667e-1f;         /* 1/6 */
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t e = (int32_t)n + 127;
  uint32_t bits = (uint32_t)e << 23;
  float s;
  memcpy(&s, &bits, sizeof s);
  return x < -87.0f ? 0.0f : p * s;
}

/* Round a byte count up to a 64-byte multiple so workspace carve-outs stay aligned. */
static inline size_t at_align(size_t b) { return (b + 63) & ~(size_t)63; }

/* Is output k requested (present in the node and given a buffer)? */
static inline bool at_out_wanted(const keel_node *n, const keel_view *out, int n_out, int k) {
  return k < n_out && (k >= n->n_outputs || n->outputs[k] >= 0) && out[k].data != NULL;
}

#define AT_FNS(NAME)                            \
  keel_status *keel_at_##NAME##_infer(AT_IN);   \
  keel_status *keel_at_##NAME##_run(AT_RUN);    \
  size_t keel_at_##NAME##_ws(AT_WS);

AT_FNS(linattn)
AT_FNS(causalconv)
AT_FNS(flex)
AT_FNS(deform)
AT_FNS(unique)
AT_FNS(nms)

#endif
