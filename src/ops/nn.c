/* Operator family: nn (convolution, GEMM / MatMul, normalization, pooling).
 * Kernels live in nn_conv.c, nn_gemm.c, nn_norm.c and nn_pool.c; this file is the table. Where an operator's
 * semantics changed between opset versions there are separate entries (the kernels read node->opset or
 * the attributes that only exist in some versions). */
#include "ops/nn_internal.h"

#define D(op, lo, hi, inf, run, ws) {op, "", lo, hi, inf, run, ws, -1}
#define M KEEL_MAX_OPSET

const keel_op_def keel_ops_nn[] = {
    /* Conv 1/11/22, ConvTranspose 1/11/22: same semantics (later versions add types). */
    D("Conv", 1, M, nn_conv_infer, nn_conv_run, nn_conv_workspace),
    D("ConvTranspose", 1, M, nn_convt_infer, nn_convt_run, nn_convt_workspace),
    /* Gemm: 1-6 legacy 'broadcast' attribute, 7-10 C required with unidirectional broadcast, 11+ C optional;
     * one kernel accepts the union (C optional, always broadcast). */
    D("Gemm", 1, 6, nn_gemm_infer, nn_gemm_run, NULL),
    D("Gemm", 7, 10, nn_gemm_infer, nn_gemm_run, NULL),
    D("Gemm", 11, M, nn_gemm_infer, nn_gemm_run, NULL),
    D("MatMul", 1, M, nn_matmul_infer, nn_matmul_run, NULL),
    /* Quantized integer forms (opset 10): int32 out of 8-bit inputs minus zero points. */
    D("MatMulInteger", 10, M, nn_mmint_infer, nn_mmint_run, NULL),
    D("ConvInteger", 10, M, nn_convint_infer, nn_convint_run, NULL),
    /* QLinear forms (opset 10; 21 adds float16 scales): requantized 8-bit output. */
    D("QLinearMatMul", 10, M, nn_qmm_infer, nn_qmm_run, NULL),
    D("QLinearConv", 10, M, nn_qconv_infer, nn_qconv_run, NULL),
    /* BatchNormalization: <9 has 'spatial' (0: per-activation parameters), 14+ has training_mode. */
    D("BatchNormalization", 1, 8, nn_bn_infer, nn_bn_run, nn_bn_workspace),
    D("BatchNormalization", 9, 13, nn_bn_infer, nn_bn_run, nn_bn_workspace),
    D("BatchNormalization", 14, M, nn_bn_infer, nn_bn_run, nn_bn_workspace),
    D("LayerNormalization", 17, M, nn_ln_infer, nn_ln_run, nn_ln_workspace),
    D("InstanceNormalization", 1, M, nn_in_infer, nn_in_run, NULL),
    /* GroupNormalization: 18 has one scale per group, 21 one per channel. */
    D("GroupNormalization", 18, 20, nn_gn_infer, nn_gn_run, NULL),
    D("GroupNormalization", 21, M, nn_gn_infer, nn_gn_run, NULL),
    D("LRN", 1, M, nn_lrn_infer, nn_lrn_run, NULL),
    D("MeanVarianceNormalization", 9, M, nn_mvn_infer, nn_mvn_run, nn_mvn_workspace),
    D("LpNormalization", 1, M, nn_lpn_infer, nn_lpn_run, nn_lpn_workspace),
    /* MaxPool: 8 adds Indices and storage_order, 10 ceil_mode and dilations, 12 int8/uint8. */
    D("MaxPool", 1, 7, nn_pool_infer, nn_pool_run, NULL),
    D("MaxPool", 8, M, nn_pool_infer, nn_pool_run, NULL),
    /* AveragePool: 7 adds count_include_pad, 10 ceil_mode, 19 dilations (absent attributes = defaults). */
    D("AveragePool", 1, M, nn_pool_infer, nn_pool_run, NULL),
    /* LpPool / GlobalLpPool: p is a float in opset 1, an int from 2; 18 adds ceil_mode and dilations. */
    D("LpPool", 1, 1, nn_pool_infer, nn_pool_run, NULL),
    D("LpPool", 2, M, nn_pool_infer, nn_pool_run, NULL),
    /* MaxUnpool 9; 11 only clarified the output_shape semantics. */
    D("MaxUnpool", 9, M, nn_unpool_infer, nn_unpool_run, NULL),
    D("GlobalAveragePool", 1, M, nn_gpool_infer, nn_gpool_run, NULL),
    D("GlobalMaxPool", 1, M, nn_gpool_infer, nn_gpool_run, NULL),
    D("GlobalLpPool", 1, 1, nn_gpool_infer, nn_gpool_run, NULL),
    D("GlobalLpPool", 2, M, nn_gpool_infer, nn_gpool_run, NULL),
};
const int keel_ops_nn_count = (int)(sizeof keel_ops_nn / sizeof keel_ops_nn[0]);
