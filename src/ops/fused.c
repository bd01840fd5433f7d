/* keel-internal fused operators (domain "keel"), created by the fusion passes in src/graph/. */
#include "ops/op.h"

const keel_op_def keel_ops_fused[] = {
    {NULL, NULL, 0, 0, NULL, NULL, NULL, -1},
};
const int keel_ops_fused_count = 0;
