/* Operator family: elementwise. */
#include "ops/op.h"

const keel_op_def keel_ops_elementwise[] = {
    {0},
};
const int keel_ops_elementwise_count = 0;
