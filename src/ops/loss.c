/* Operator family: loss. */
#include "ops/op.h"

const keel_op_def keel_ops_loss[] = {
    {0},
};
const int keel_ops_loss_count = 0;
