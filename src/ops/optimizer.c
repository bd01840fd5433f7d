/* Training-update operators of ai.onnx.preview.training (Adagrad, Momentum, Adam): pure functions of their
 * inputs, so an inference runtime can run them like any other operator. */
#include "ops/op.h"

const keel_op_def keel_ops_optimizer[] = {
    {NULL, NULL, 0, 0, NULL, NULL, NULL, -1},
};
const int keel_ops_optimizer_count = 0;
