/* Fused activations (graph/ir.h keel_act) applied in place to a producer's output. For kernels of any
 * family that support fusion (Conv, Gemm, MatMul, Add...): call once on the finished output buffer, or per
 * tile while it is still in cache. */
#ifndef KEEL_OPS_EW_ACT_H
#define KEEL_OPS_EW_ACT_H

#include <stdint.h>

#include "graph/ir.h"

/* x[i] = act(x[i]) for float32 data. KEEL_ACT_NONE does nothing. GELU is the exact (erf) form. */
void keel_ew_act_f32(keel_act act, float alpha, float beta, float *x, int64_t n);
/* Same for any float dtype (float32/float64/float16/bfloat16); other dtypes are left untouched. */
void keel_ew_act(keel_act act, float alpha, float beta, keel_dtype dtype, void *x, int64_t n);

#endif
