/* String operators (StringNormalizer, StringConcat, StringSplit, RegexFullMatch...). */
#include "ops/op.h"

const keel_op_def keel_ops_string[] = {
    {NULL, NULL, 0, 0, NULL, NULL, NULL, -1},
};
const int keel_ops_string_count = 0;
