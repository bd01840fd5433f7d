/* Classical-ML and text operators (ai.onnx.ml LabelEncoder, TreeEnsemble, Binarizer, ArrayFeatureExtractor;
 * TfIdfVectorizer). */
#include "ops/op.h"

const keel_op_def keel_ops_ml[] = {
    {NULL, NULL, 0, 0, NULL, NULL, NULL, -1},
};
const int keel_ops_ml_count = 0;
