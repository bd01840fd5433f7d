/* Operator family: signal. */
#include "ops/op.h"

const keel_op_def keel_ops_signal[] = {
    {0},
};
const int keel_ops_signal_count = 0;
