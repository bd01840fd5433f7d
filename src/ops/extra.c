/* Operator family: extra. */
#include "ops/op.h"

const keel_op_def keel_ops_extra[] = {
    {0},
};
const int keel_ops_extra_count = 0;
