/* Operator family: image. */
#include "ops/op.h"

const keel_op_def keel_ops_image[] = {
    {0},
};
const int keel_ops_image_count = 0;
