/* Shared helpers of the attention and extra families (attention*.c, extra*.c): element load/store for the
 * float types keel computes in float or double, and the family tables' function declarations. */
#ifndef KEEL_OPS_ATTENTION_INTERNAL_H
#define KEEL_OPS_ATTENTION_INTERNAL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ops/elem.h"
#include "ops/fast_exp.h"
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
