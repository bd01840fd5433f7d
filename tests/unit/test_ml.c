/* Classical-ML, text and training-update operators (ops/ml.c, ops/ml_tree.c, ops/optimizer.c) end to end on
 * models built here: hand-computed expectations beyond the ONNX node cases (strings out of LabelEncoder,
 * repeated keys, ArrayFeatureExtractor on strings, TfIdfVectorizer IDF/TFIDF on strings with skips, tree
 * averaging and post transforms), and the error paths: bad attributes, mismatched keys and values,
 * out-of-range indices, broken trees. Each must be a clear error, never a crash (run under ASan too). */
#define _GNU_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "test_main.h"
#include "model_builder.h"

/* ---- attribute helpers the shared builder lacks ---- */

#define ATTR_INTS(b, n, name, ...)                                                   \
  do {                                                                               \
    const int64_t v_[] = {__VA_ARGS__};                                              \
    mb_attr_ints((b), (n), (name), v_, sizeof v_ / sizeof *v_);                      \
  } while (0)

static void attr_floats(mb *b, Onnx__NodeProto *n, const char *name, const float *v, size_t k) {
  Onnx__AttributeProto *a = mb_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS);
  a->floats = mb_alloc(b, sizeof(float) * (k + 1));
  memcpy(a->floats, v, sizeof(float) * k);
  a->n_floats = k;
}

static void attr_float(mb *b, Onnx__NodeProto *n, const char *name, float v) {
  Onnx__AttributeProto *a = mb_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
  a->has_f = 1;
  a->f = v;
}

/* A 1-D tensor attribute of raw elements (elem: ONNX data type, es: bytes each). */
static void attr_tensor(mb *b, Onnx__NodeProto *n, const char *name, int elem, const void *v, size_t k, size_t es) {
  Onnx__AttributeProto *a = mb_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR);
  Onnx__TensorProto *t = mb_alloc(b, sizeof *t);
  onnx__tensor_proto__init(t);
  t->has_data_type = 1;
  t->data_type = elem;
  t->n_dims = 1;
  t->dims = mb_alloc(b, sizeof(int64_t));
  t->dims[0] = (int64_t)k;
  t->has_raw_data = 1;
  t->raw_data.len = k * es;
  t->raw_data.data = mb_alloc(b, k * es);
  memcpy(t->raw_data.data, v, k * es);
  a->t = t;
}

static keel_tensor *strings(const char *const *v, int64_t n, int ndim, const int64_t *dims) {
  keel_tensor *t = NULL;
  CHECK_OK(keel_tensor_create(KEEL_STRING, ndim ? dims : &n, ndim ? ndim : 1, NULL, &t));
  for (int64_t i = 0; t && i < n; i++) CHECK_OK(keel_tensor_set_string(t, i, v[i], strlen(v[i])));
  return t;
}

static keel_tensor *tensor(keel_dtype dt, int ndim, const int64_t *dims, const void *data) {
  keel_tensor *t = NULL;
  CHECK_OK(keel_tensor_from_data(dt, dims, ndim, data, &t));
  return t;
}

/* Load b's model and run it once: the first error (load or run), or NULL with outputs set. */
static keel_status *load_run(mb *b, keel_tensor **in, int n_in, keel_tensor **out, int n_out) {
  keel_status *s = NULL;
  keel_engine *e = mb_load(b, &s);
  if (!s) s = keel_engine_run(e, in, n_in, out, n_out);
  keel_engine_release(e);
  return s;
}

static void check_strs(const keel_tensor *t, const char *const *want, int64_t n, int line) {
  if (!t || keel_tensor_dtype(t) != KEEL_STRING || keel_tensor_numel(t) != n) {
    fprintf(stderr, "%s:%d: [%s] expected %lld strings\n", __FILE__, line, test_current, (long long)n);
    test_failures++;
    return;
  }
  for (int64_t i = 0; i < n; i++) {
    const char *s = keel_tensor_get_string(t, i, NULL);
    if (strcmp(s, want[i])) {
      fprintf(stderr, "%s:%d: [%s] element %lld is \"%s\", expected \"%s\"\n", __FILE__, line, test_current,
              (long long)i, s, want[i]);
      test_failures++;
    }
  }
}
#define CHECK_STRS(t, ...)                                                           \
  do {                                                                               \
    const char *const w_[] = {__VA_ARGS__};                                          \
    check_strs((t), w_, (int64_t)(sizeof w_ / sizeof *w_), __LINE__);                \
  } while (0)

static void check_floats(const keel_tensor *t, const float *want, int64_t n, int line) {
  if (!t || keel_tensor_dtype(t) != KEEL_FLOAT32 || keel_tensor_numel(t) != n) {
    fprintf(stderr, "%s:%d: [%s] expected %lld floats, got %lld values\n", __FILE__, line, test_current,
            (long long)n, t ? (long long)keel_tensor_numel(t) : -1LL);
    test_failures++;
    return;
  }
  const float *g = keel_tensor_data_const(t);
  for (int64_t i = 0; i < n; i++)
    if (fabsf(g[i] - want[i]) > 1e-5f * (1 + fabsf(want[i]))) {
      fprintf(stderr, "%s:%d: [%s] element %lld is %.7g, expected %.7g\n", __FILE__, line, test_current,
              (long long)i, g[i], want[i]);
      test_failures++;
    }
}
#define CHECK_FLOATS(t, ...)                                                         \
  do {                                                                               \
    const float w_[] = {__VA_ARGS__};                                                \
    check_floats((t), w_, (int64_t)(sizeof w_ / sizeof *w_), __LINE__);              \
  } while (0)

/* ---- LabelEncoder ---- */

TEST(test_label_encoder_to_strings) {
  TEST_BEGIN("label_encoder_to_strings");
  /* int64 -> string with a repeated key (the last one wins) and a default; also float keys with NaN. */
  mb b = {0};
  mb_opset(&b, "ai.onnx.ml", 2);
  mb_input(&b, "X", 7);
  mb_input(&b, "F", 1);
  Onnx__NodeProto *n = mb_node(&b, "LabelEncoder", "ai.onnx.ml", "X", "Y");
  ATTR_INTS(&b, n, "keys_int64s", 1, 7, 1);
  mb_attr_strs(&b, n, "values_strings", "one,seven,uno");
  mb_attr_str(&b, n, "default_string", "none");
  Onnx__NodeProto *f = mb_node(&b, "LabelEncoder", "ai.onnx.ml", "F", "G");
  const float keys[] = {NAN, -0.0f, 2.5f};
  attr_floats(&b, f, "keys_floats", keys, 3);
  const int64_t vals[] = {10, 20, 30};
  mb_attr_ints(&b, f, "values_int64s", vals, 3);
  mb_output(&b, "Y", 8);
  mb_output(&b, "G", 7);
  int64_t d4 = 4;
  const int64_t x[] = {7, 1, 3, -1};
  const float fx[] = {0.0f, 2.5f, NAN, 1.0f};
  keel_tensor *in[2] = {tensor(KEEL_INT64, 1, &d4, x), tensor(KEEL_FLOAT32, 1, &d4, fx)}, *out[2] = {0};
  CHECK_OK(load_run(&b, in, 2, out, 2));
  CHECK_STRS(out[0], "seven", "uno", "none", "none");
  const int64_t *g = out[1] ? keel_tensor_data_const(out[1]) : NULL;
  CHECK(g && g[0] == 20 && g[1] == 30 && g[2] == 10 && g[3] == -1); /* 0 matches -0, NaN matches NaN */
  for (int k = 0; k < 2; k++) keel_tensor_release(in[k]), keel_tensor_release(out[k]);
  mb_free(&b);
}

TEST(test_label_encoder_errors) {
  TEST_BEGIN("label_encoder_errors");
  int64_t d2 = 2;
  const char *xs[] = {"a", "b"};
  keel_tensor *x = strings(xs, 2, 0, NULL), *y = NULL;
  for (int c = 0; c < 5; c++) {
    mb b = {0};
    mb_opset(&b, "ai.onnx.ml", 4);
    mb_input(&b, "X", 8);
    Onnx__NodeProto *n = mb_node(&b, "LabelEncoder", "ai.onnx.ml", "X", "Y");
    const int16_t v16[] = {1, 2};
    const int32_t def32[] = {5};
    if (c == 0) { /* 3 keys, 2 values */
      mb_attr_strs(&b, n, "keys_strings", "a,b,c");
      ATTR_INTS(&b, n, "values_int64s", 1, 2);
    } else if (c == 1) { /* two keys_* */
      mb_attr_strs(&b, n, "keys_strings", "a,b");
      ATTR_INTS(&b, n, "keys_int64s", 1, 2);
      ATTR_INTS(&b, n, "values_int64s", 1, 2);
    } else if (c == 2) { /* no values */
      mb_attr_strs(&b, n, "keys_strings", "a,b");
    } else if (c == 3) { /* default_tensor of another type than the values */
      mb_attr_strs(&b, n, "keys_strings", "a,b");
      attr_tensor(&b, n, "values_tensor", 5, v16, 2, 2);
      attr_tensor(&b, n, "default_tensor", 6, def32, 1, 4);
    } else { /* int keys for a string input */
      ATTR_INTS(&b, n, "keys_int64s", 1, 2);
      ATTR_INTS(&b, n, "values_int64s", 1, 2);
    }
    mb_output(&b, "Y", c == 3 ? 5 : 7);
    static const char *const want[] = {"3 keys but 2 values", "exactly one keys_*", "needs one of the attributes values_*",
                                       "default_tensor must hold one int16", "keys are int64 but the input is string"};
    keel_status *s = load_run(&b, &x, 1, &y, 1);
    CHECK(s && strstr(keel_status_message(s), want[c]));
    if (s && !strstr(keel_status_message(s), want[c])) fprintf(stderr, "  case %d got: %s\n", c, keel_status_message(s));
    keel_status_free(s);
    keel_tensor_release(y);
    y = NULL;
    mb_free(&b);
  }
  (void)d2;
  keel_tensor_release(x);
}

/* ---- ArrayFeatureExtractor ---- */

TEST(test_array_feature_extractor) {
  TEST_BEGIN("array_feature_extractor");
  for (int c = 0; c < 2; c++) {
    mb b = {0};
    mb_opset(&b, "ai.onnx.ml", 1);
    mb_input(&b, "X", 8);
    mb_input(&b, "I", 7);
    mb_node(&b, "ArrayFeatureExtractor", "ai.onnx.ml", "X,I", "Y");
    mb_output(&b, "Y", 8);
    const char *xs[] = {"a", "b", "c", "d", "e", "f"};
    int64_t xd[2] = {2, 3}, k = 3;
    const int64_t good[] = {2, 0, 2}, bad[] = {1, 3, 0};
    keel_tensor *in[2] = {strings(xs, 6, 2, xd), tensor(KEEL_INT64, 1, &k, c ? bad : good)}, *y = NULL;
    keel_status *s = load_run(&b, in, 2, &y, 1);
    if (!c) {
      CHECK_OK(s);
      CHECK(y && keel_tensor_ndim(y) == 2 && keel_tensor_dims(y)[0] == 2 && keel_tensor_dims(y)[1] == 3);
      CHECK_STRS(y, "c", "a", "c", "f", "d", "f");
    } else {
      CHECK(s && keel_status_code(s) == KEEL_INVALID_ARGUMENT &&
            strstr(keel_status_message(s), "index 3 (element 1 of the indices) is out of range for 3 features"));
      keel_status_free(s);
    }
    keel_tensor_release(y);
    keel_tensor_release(in[0]);
    keel_tensor_release(in[1]);
    mb_free(&b);
  }
}

/* ---- TfIdfVectorizer ---- */

TEST(test_tfidf_strings) {
  TEST_BEGIN("tfidf_strings");
  /* Pool: 1-grams "a","b"; 2-grams ("a","b"), ("b","c"). Input rows of 4 tokens; max_skip_count 1. */
  const char *modes[] = {"TF", "IDF", "TFIDF"};
  for (int m = 0; m < 3; m++) {
    mb b = {0};
    mb_opset(&b, "", 11);
    mb_input(&b, "X", 8);
    Onnx__NodeProto *n = mb_node(&b, "TfIdfVectorizer", "", "X", "Y");
    mb_attr_str(&b, n, "mode", modes[m]);
    mb_attr_int(&b, n, "min_gram_length", 1);
    mb_attr_int(&b, n, "max_gram_length", 2);
    mb_attr_int(&b, n, "max_skip_count", 1);
    ATTR_INTS(&b, n, "ngram_counts", 0, 2);
    ATTR_INTS(&b, n, "ngram_indexes", 3, 2, 1, 0);
    mb_attr_strs(&b, n, "pool_strings", "a,b,a,b,b,c");
    const float w[] = {0.5f, 2.0f, 3.0f, 4.0f};
    attr_floats(&b, n, "weights", w, 4);
    mb_output(&b, "Y", 1);
    const char *xs[] = {"a", "b", "c", "b", "a", "x", "b", "a"};
    int64_t xd[2] = {2, 4};
    keel_tensor *x = strings(xs, 8, 2, xd), *y = NULL;
    CHECK_OK(load_run(&b, &x, 1, &y, 1));
    /* Row 0 "a b c b": a=1, b=2; skip 0: ab, bc, cb -> ab=1, bc=1; skip 1: (a,c), (b,b) -> none.
     * Row 1 "a x b a": a=2, b=1; skip 0: ax, xb, ba -> none; skip 1: (a,b) -> ab=1, (x,a) -> none.
     * Coordinates: a->3, b->2, ab->1, bc->0;
     * weights[i] is the i-th pool n-gram's (the spec and ONNX Runtime; onnx's reference indexes them by
     * coordinate): a 0.5, b 2, ab 3, bc 4. Checked against onnxruntime 1.32. */
    if (m == 0) CHECK_FLOATS(y, 1, 1, 2, 1, 0, 1, 1, 2);
    else if (m == 1) CHECK_FLOATS(y, 4, 3, 2, 0.5f, 0, 3, 2, 0.5f);
    else CHECK_FLOATS(y, 4, 3, 4, 0.5f, 0, 3, 2, 1);
    keel_tensor_release(x);
    keel_tensor_release(y);
    mb_free(&b);
  }
}

TEST(test_tfidf_errors) {
  TEST_BEGIN("tfidf_errors");
  static const char *const want[] = {"mode must be TF, IDF or TFIDF", "exactly one of pool_int64s and pool_strings",
                                     "not a multiple of 2", "min_gram_length <= max_gram_length",
                                     "with pool_int64s takes int32 or int64 input"};
  for (int c = 0; c < 5; c++) {
    mb b = {0};
    mb_opset(&b, "", 11);
    mb_input(&b, "X", c == 4 ? 8 : 7);
    Onnx__NodeProto *n = mb_node(&b, "TfIdfVectorizer", "", "X", "Y");
    mb_attr_str(&b, n, "mode", c == 0 ? "BM25" : "TF");
    mb_attr_int(&b, n, "min_gram_length", c == 3 ? 3 : 1);
    mb_attr_int(&b, n, "max_gram_length", 2);
    mb_attr_int(&b, n, "max_skip_count", 0);
    ATTR_INTS(&b, n, "ngram_counts", 0, 1);
    ATTR_INTS(&b, n, "ngram_indexes", 0, 1, 2);
    if (c == 2) ATTR_INTS(&b, n, "pool_int64s", 5, 6, 7, 8); /* 1 unigram + 3 items for 2-grams */
    else ATTR_INTS(&b, n, "pool_int64s", 5, 6, 7);
    if (c == 1) mb_attr_strs(&b, n, "pool_strings", "a");
    mb_output(&b, "Y", 1);
    int64_t d3 = 3;
    const int64_t xv[] = {5, 6, 7};
    const char *xs[] = {"5", "6", "7"};
    keel_tensor *x = c == 4 ? strings(xs, 3, 0, NULL) : tensor(KEEL_INT64, 1, &d3, xv), *y = NULL;
    keel_status *s = load_run(&b, &x, 1, &y, 1);
    CHECK(s && strstr(keel_status_message(s), want[c]));
    if (s && !strstr(keel_status_message(s), want[c])) fprintf(stderr, "  case %d got: %s\n", c, keel_status_message(s));
    keel_status_free(s);
    keel_tensor_release(x);
    keel_tensor_release(y);
    mb_free(&b);
  }
}

/* ---- TreeEnsemble ---- */

/* Two trees on 2 features, 2 targets: tree 0 = node 0 (x0 <= 1 ? leaf 0 : leaf 1); tree 1 = node 1
 * (x1 > 0 ? leaf 2 : node 2), node 2 (x1 == -1 ? leaf 3 : leaf 2). Leaves: (t0, 1), (t1, 2), (t0, 3), (t1, 5). */
static void tree_model(mb *b, int agg, int post, int breakage) {
  mb_opset(b, "ai.onnx.ml", 5);
  mb_input(b, "X", 1);
  Onnx__NodeProto *n = mb_node(b, "TreeEnsemble", "ai.onnx.ml", "X", "Y");
  ATTR_INTS(b, n, "nodes_featureids", 0, 1, 1);
  const uint8_t modes[] = {0, 3, 4};
  attr_tensor(b, n, "nodes_modes", 2, modes, 3, 1);
  const float splits[] = {1, 0, -1};
  attr_tensor(b, n, "nodes_splits", 1, splits, 3, 4);
  ATTR_INTS(b, n, "nodes_truenodeids", 0, 2, 3);
  if (breakage == 1) ATTR_INTS(b, n, "nodes_falsenodeids", 1, 2, 1); /* node 2's false branch loops to node 1 */
  else ATTR_INTS(b, n, "nodes_falsenodeids", 1, 2, 2);
  ATTR_INTS(b, n, "nodes_trueleafs", 1, 1, 1);
  if (breakage == 1) ATTR_INTS(b, n, "nodes_falseleafs", 1, 0, 0);
  else ATTR_INTS(b, n, "nodes_falseleafs", 1, 0, 1);
  if (breakage == 2) ATTR_INTS(b, n, "leaf_targetids", 0, 1, 0, 2); /* target 2 of 2 */
  else ATTR_INTS(b, n, "leaf_targetids", 0, 1, 0, 1);
  const float w[] = {1, 2, 3, 5};
  attr_tensor(b, n, "leaf_weights", 1, w, 4, 4);
  ATTR_INTS(b, n, "tree_roots", 0, 1);
  mb_attr_int(b, n, "n_targets", 2);
  mb_attr_int(b, n, "aggregate_function", agg);
  mb_attr_int(b, n, "post_transform", post);
  mb_output(b, "Y", 1);
}

TEST(test_tree_ensemble) {
  TEST_BEGIN("tree_ensemble");
  int64_t xd[2] = {3, 2};
  const float xv[] = {0, 2, 5, -1, 1, -3};
  /* rows -> leaves: [0, 2] -> leaf 0 (t0 1) + leaf 2 (t0 3); [5, -1] -> leaf 1 (t1 2) + leaf 3 (t1 5);
   * [1, -3] -> leaf 0 (t0 1) + leaf 2 (t0 3). */
  for (int c = 0; c < 3; c++) {
    mb b = {0};
    tree_model(&b, c == 0 ? 1 : c == 1 ? 0 : 3, c == 2 ? 2 : 0, 0);
    keel_tensor *x = tensor(KEEL_FLOAT32, 2, xd, xv), *y = NULL;
    CHECK_OK(load_run(&b, &x, 1, &y, 1));
    if (c == 0) CHECK_FLOATS(y, 4, 0, 0, 7, 4, 0); /* SUM */
    else if (c == 1) CHECK_FLOATS(y, 2, 0, 0, 3.5f, 2, 0); /* AVERAGE over 2 trees */
    else { /* MAX then LOGISTIC; a target no leaf reached is 0 before the transform (as in ONNX Runtime) */
      float l3 = 1 / (1 + expf(-3)), l5 = 1 / (1 + expf(-5));
      CHECK_FLOATS(y, l3, 0.5f, 0.5f, l5, l3, 0.5f);
    }
    keel_tensor_release(x);
    keel_tensor_release(y);
    mb_free(&b);
  }
  static const char *const want[] = {"has a cycle", "leaf 3 targets 2, outside [0, 2)"};
  for (int c = 0; c < 2; c++) {
    mb b = {0};
    tree_model(&b, 1, 0, c + 1);
    keel_tensor *x = tensor(KEEL_FLOAT32, 2, xd, xv), *y = NULL;
    keel_status *s = load_run(&b, &x, 1, &y, 1);
    CHECK(s && strstr(keel_status_message(s), want[c]));
    if (s && !strstr(keel_status_message(s), want[c])) fprintf(stderr, "  case %d got: %s\n", c, keel_status_message(s));
    keel_status_free(s);
    keel_tensor_release(x);
    keel_tensor_release(y);
    mb_free(&b);
  }
}

/* ---- Binarizer, optimizers ---- */

TEST(test_binarizer_and_optimizers) {
  TEST_BEGIN("binarizer_and_optimizers");
  {
    mb b = {0};
    mb_opset(&b, "ai.onnx.ml", 1);
    mb_input(&b, "X", 1);
    Onnx__NodeProto *n = mb_node(&b, "Binarizer", "ai.onnx.ml", "X", "Y");
    attr_float(&b, n, "threshold", 0.5f);
    mb_output(&b, "Y", 1);
    int64_t d4 = 4;
    const float xv[] = {0.5f, 0.6f, -1, NAN};
    keel_tensor *x = tensor(KEEL_FLOAT32, 1, &d4, xv), *y = NULL;
    CHECK_OK(load_run(&b, &x, 1, &y, 1));
    CHECK_FLOATS(y, 0, 1, 0, 0);
    keel_tensor_release(x);
    keel_tensor_release(y);
    mb_free(&b);
  }
  /* Momentum (standard, T = 1 so beta applies): g' = 0.1*2 + 1 = 1.2; v' = 0.9*0.5 + 0.5*1.2 = 1.05;
   * x' = 2 - 0.01*1.05 = 1.9895. A bad mode is an error. */
  for (int c = 0; c < 2; c++) {
    mb b = {0};
    mb_opset(&b, "ai.onnx.preview.training", 1);
    mb_input(&b, "R", 1);
    mb_input(&b, "T", 7);
    mb_input(&b, "X", 1);
    mb_input(&b, "G", 1);
    mb_input(&b, "V", 1);
    Onnx__NodeProto *n = mb_node(&b, "Momentum", "ai.onnx.preview.training", "R,T,X,G,V", "X2,V2");
    attr_float(&b, n, "alpha", 0.9f);
    attr_float(&b, n, "beta", 0.5f);
    attr_float(&b, n, "norm_coefficient", 0.1f);
    mb_attr_str(&b, n, "mode", c ? "adam" : "standard");
    mb_output(&b, "X2", 1);
    mb_output(&b, "V2", 1);
    const float r = 0.01f, xv = 2, gv = 1, vv = 0.5f;
    const int64_t t = 1;
    int64_t one = 1;
    keel_tensor *in[5] = {tensor(KEEL_FLOAT32, 0, NULL, &r), tensor(KEEL_INT64, 0, NULL, &t),
                          tensor(KEEL_FLOAT32, 1, &one, &xv), tensor(KEEL_FLOAT32, 1, &one, &gv),
                          tensor(KEEL_FLOAT32, 1, &one, &vv)};
    keel_tensor *out[2] = {0};
    keel_status *s = load_run(&b, in, 5, out, 2);
    if (!c) {
      CHECK_OK(s);
      CHECK_FLOATS(out[0], 1.9895f);
      CHECK_FLOATS(out[1], 1.05f);
    } else {
      CHECK(s && strstr(keel_status_message(s), "mode must be 'standard' or 'nesterov', got 'adam'"));
      keel_status_free(s);
    }
    for (int k = 0; k < 5; k++) keel_tensor_release(in[k]);
    for (int k = 0; k < 2; k++) keel_tensor_release(out[k]);
    mb_free(&b);
  }
}

RUN_TESTS(test_label_encoder_to_strings, test_label_encoder_errors, test_array_feature_extractor, test_tfidf_strings,
          test_tfidf_errors, test_tree_ensemble, test_binarizer_and_optimizers)
