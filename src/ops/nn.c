/* Operator family: nn (convolution, GEMM / MatMul, normalization, pooling).
 * Kernels live in nn_conv.c, nn_gemm.c, nn_norm.c and nn_pool.c; this file is the table. Separate entries
 * exist where the semantics changed between opset versions. */
#include "ops/nn_internal.h"

#define D(op, lo, hi, inf, run, ws) {op, "", lo, hi, inf, run, ws, -1}

const keel_op_def keel_ops_nn[] = {
    D("Conv", 1, KEEL_MAX_OPSET, nn_conv_infer, nn_conv_run, nn_conv_workspace),
    D("ConvTranspose", 1, KEEL_MAX_OPSET, nn_convt_infer, nn_convt_run, nn_convt_workspace),
};
const int keel_ops_nn_count = (int)(sizeof keel_ops_nn / sizeof keel_ops_nn[0]);
