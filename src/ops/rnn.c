/* Operator family: rnn. */
#include "ops/op.h"

const keel_op_def keel_ops_rnn[] = {
    {0},
};
const int keel_ops_rnn_count = 0;
