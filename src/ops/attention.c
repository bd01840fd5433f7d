/* Operator family: attention. */
#include "ops/op.h"

const keel_op_def keel_ops_attention[] = {
    {0},
};
const int keel_ops_attention_count = 0;
