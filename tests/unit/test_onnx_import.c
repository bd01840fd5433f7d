/* ONNX importer: every initializer encoding, Constant nodes, subgraphs, external data (and its escapes),
 * limits, malformed files. Models come from tests/data/make_test_models.py (run from tests/data). */
#define _GNU_SOURCE
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "graph/ir.h"
#include "onnx/onnx_import.h"
#include "test_main.h"

#define DIR "onnx_import"

/* Import a file from tests/data; returns the status, graph in *g (NULL on error). */
static keel_status *import_file(const char *path, const char *base_dir, const keel_engine_options *opt,
                                keel_graph **g) {
  void *data = NULL;
  size_t size = 0;
  *g = NULL;
  keel_status *s = keel_read_file(path, 0, &data, &size);
  if (s) return s;
  s = keel_onnx_import(data, size, base_dir, opt, g);
  free(data);
  return s;
}

/* The status must be an error with `code` whose message contains both substrings. */
static void expect_err(keel_status *s, keel_code code, const char *a, const char *b, int line) {
  if (!s) {
    fprintf(stderr, "%s:%d: [%s] succeeded, expected %s\n", __FILE__, line, test_current, keel_code_name(code));
    test_failures++;
    return;
  }
  const char *m = keel_status_message(s);
  if (keel_status_code(s) != code || (a && !strstr(m, a)) || (b && !strstr(m, b))) {
    fprintf(stderr, "%s:%d: [%s] expected %s with \"%s\" and \"%s\", got %s: %s\n", __FILE__, line, test_current,
            keel_code_name(code), a ? a : "", b ? b : "", keel_code_name(keel_status_code(s)), m);
    test_failures++;
  }
  keel_status_free(s);
}
#define EXPECT_ERR(expr, code, a, b) expect_err((expr), (code), (a), (b), __LINE__)

/* Import that must fail; frees a graph if it unexpectedly succeeded. */
static keel_status *import_fail(const char *path, const char *base, const keel_engine_options *opt) {
  keel_graph *g = NULL;
  keel_status *s = import_file(path, base, opt, &g);
  keel_graph_destroy(g);
  return s;
}

static const keel_value *find(const keel_graph *g, const char *name) {
  int i = keel_graph_find_value(g, name);
  return i >= 0 ? &g->values[i] : NULL;
}

static const keel_node *find_node(const keel_graph *g, const char *name) {
  for (int i = 0; i < g->n_nodes; i++)
    if (!strcmp(g->nodes[i].name, name)) return &g->nodes[i];
  return NULL;
}

static double elem_f(const keel_tensor *t, int i) {
  const void *p = keel_tensor_data_const(t);
  switch (keel_tensor_dtype(t)) {
  case KEEL_FLOAT32: return ((const float *)p)[i];
  case KEEL_FLOAT64: return ((const double *)p)[i];
  case KEEL_FLOAT16: return keel_half_to_float(((const uint16_t *)p)[i]);
  case KEEL_BFLOAT16: return keel_bfloat16_to_float(((const uint16_t *)p)[i]);
  default: return NAN;
  }
}

/* Integers as int64 (uint64 reinterpreted). */
static int64_t elem_i(const keel_tensor *t, int i) {
  const void *p = keel_tensor_data_const(t);
  switch (keel_tensor_dtype(t)) {
  case KEEL_INT8: return ((const int8_t *)p)[i];
  case KEEL_UINT8: case KEEL_BOOL: return ((const uint8_t *)p)[i];
  case KEEL_INT16: return ((const int16_t *)p)[i];
  case KEEL_UINT16: return ((const uint16_t *)p)[i];
  case KEEL_INT32: return ((const int32_t *)p)[i];
  case KEEL_UINT32: return ((const uint32_t *)p)[i];
  case KEEL_INT64: return ((const int64_t *)p)[i];
  case KEEL_UINT64: return (int64_t)((const uint64_t *)p)[i];
  default: return INT64_MIN;
  }
}

/* Same table as make_test_models.py. */
typedef struct enc_case {
  const char *name;
  keel_dtype dt;
  double f[6];
  int64_t i[6];
} enc_case;

#define FLOATS {0.0, 0.5, -1.25, 3.0, 1024.0, -2.0}
static const enc_case ENC[] = {
    {"float32", KEEL_FLOAT32, FLOATS, {0}},
    {"float16", KEEL_FLOAT16, FLOATS, {0}},
    {"bfloat16", KEEL_BFLOAT16, FLOATS, {0}},
    {"float64", KEEL_FLOAT64, {0.0, 0.5, -1.25, 3.0, 1e300, -2.0}, {0}},
    {"int8", KEEL_INT8, {0}, {0, 1, -2, 3, 100, -128}},
    {"uint8", KEEL_UINT8, {0}, {0, 1, 2, 3, 100, 255}},
    {"int16", KEEL_INT16, {0}, {0, 1, -2, 3, 100, -32768}},
    {"uint16", KEEL_UINT16, {0}, {0, 1, 2, 3, 100, 65535}},
    {"int32", KEEL_INT32, {0}, {0, 1, -2, 3, 100, INT32_MIN}},
    {"uint32", KEEL_UINT32, {0}, {0, 1, 2, 3, 100, 4294967295LL}},
    {"int64", KEEL_INT64, {0}, {0, 1, -2, 3, INT64_C(1) << 40, -(INT64_C(1) << 62)}},
    {"uint64", KEEL_UINT64, {0}, {0, 1, 2, 3, INT64_C(1) << 40, -1 /* 2^64-1 */}},
    {"bool", KEEL_BOOL, {0}, {1, 0, 1, 1, 0, 0}},
};

static bool is_float(keel_dtype t) {
  return t == KEEL_FLOAT32 || t == KEEL_FLOAT64 || t == KEEL_FLOAT16 || t == KEEL_BFLOAT16;
}

TEST(test_encodings) {
  TEST_BEGIN("encodings");
  keel_graph *g = NULL;
  CHECK_OK(import_file(DIR "/initializers.onnx", DIR, NULL, &g));
  if (!g) return;
  for (size_t k = 0; k < sizeof ENC / sizeof ENC[0]; k++) {
    const enc_case *c = &ENC[k];
    for (int raw = 0; raw < 2; raw++) {
      char name[64];
      snprintf(name, sizeof name, "%s_%s", c->name, raw ? "raw" : "typed");
      const keel_value *v = find(g, name);
      CHECK(v && v->constant);
      if (!v || !v->constant) {
        fprintf(stderr, "  missing constant %s\n", name);
        continue;
      }
      const keel_tensor *t = v->constant;
      CHECK(keel_tensor_dtype(t) == c->dt && v->dtype == c->dt);
      CHECK(keel_tensor_ndim(t) == 2 && keel_tensor_dims(t)[0] == 2 && keel_tensor_dims(t)[1] == 3);
      CHECK(v->ndim == 2 && v->dims[1] == 3 && !v->is_input && v->producer == -1);
      for (int i = 0; i < 6; i++) {
        bool ok = is_float(c->dt) ? elem_f(t, i) == c->f[i] : elem_i(t, i) == c->i[i];
        if (!ok) fprintf(stderr, "  %s[%d] wrong\n", name, i);
        CHECK(ok);
      }
    }
  }
  const keel_value *v = find(g, "scalar_typed");
  CHECK(v && v->constant && keel_tensor_ndim(v->constant) == 0 && elem_f(v->constant, 0) == 7.5);
  v = find(g, "scalar_raw");
  CHECK(v && v->constant && keel_tensor_ndim(v->constant) == 0 && elem_i(v->constant, 0) == -9);
  v = find(g, "empty");
  CHECK(v && v->constant && keel_tensor_numel(v->constant) == 0 && keel_tensor_dims(v->constant)[1] == 3);

  /* Graph inputs: an initializer listed as input is a constant, not a fed input. */
  CHECK(g->n_inputs == 1);
  v = g->n_inputs == 1 ? &g->values[g->inputs[0]] : NULL;
  CHECK(v && !strcmp(v->name, "X") && v->is_input && v->dtype == KEEL_FLOAT32 && v->ndim == 2);
  CHECK(v && v->dims[0] == -1 && v->dim_params[0] && !strcmp(v->dim_params[0], "N") && v->dims[1] == 3);
  v = find(g, "as_input");
  CHECK(v && v->constant && !v->is_input);
  CHECK(g->n_outputs == 2);
  v = find(g, "Y");
  CHECK(v && v->is_output && v->dim_params[0] && !strcmp(v->dim_params[0], "N"));

  /* Opsets: "ai.onnx" is the default domain "". */
  bool def = false, ex = false;
  for (int i = 0; i < g->n_opsets; i++) {
    if (!strcmp(g->opsets[i].domain, "") && g->opsets[i].version == 17) def = true;
    if (!strcmp(g->opsets[i].domain, "com.example") && g->opsets[i].version == 2) ex = true;
  }
  CHECK(def && ex);

  CHECK(g->n_nodes == 3);
  const keel_node *n = find_node(g, "Identity_0");
  CHECK(n && n->opset == 17 && !strcmp(n->domain, ""));
  n = find_node(g, "clip");
  CHECK(n && n->n_inputs == 3 && n->inputs[1] == -1 && n->inputs[0] >= 0 && n->inputs[2] >= 0);
  CHECK(n && n->opset == 17 && n->n_outputs == 1 && n->outputs[0] == keel_graph_find_value(g, "Y"));
  n = find_node(g, "custom");
  CHECK(n && n->opset == 2 && !strcmp(n->domain, "com.example") && !strcmp(n->op_type, "Custom"));
  if (n) {
    CHECK(keel_attr_float(n, "alpha", 0) == 0.25f);
    CHECK(keel_attr_int(n, "n", 0) == 7);
    CHECK(!strcmp(keel_attr_string(n, "mode", ""), "edge"));
    const int64_t *ints = NULL;
    CHECK(keel_attr_ints(n, "sizes", &ints) == 3 && ints && ints[2] == 3);
    const float *fl = NULL;
    CHECK(keel_attr_floats(n, "scales", &fl) == 2 && fl && fl[1] == 2.0f);
    const keel_attr *a = keel_node_attr(n, "tags");
    CHECK(a && a->type == KEEL_ATTR_STRINGS && a->n == 2 && !strcmp(a->strings[1], "bc"));
  }
  CHECK(g->ir_version == 8);
  keel_graph_destroy(g);
}

TEST(test_constants) {
  TEST_BEGIN("constants");
  keel_graph *g = NULL;
  CHECK_OK(import_file(DIR "/constants.onnx", NULL, NULL, &g));
  if (!g) return;
  CHECK(g->n_nodes == 1 && !strcmp(g->nodes[0].name, "sum")); /* Constant nodes are not nodes */
  const keel_value *v = find(g, "c_tensor");
  CHECK(v && v->constant && keel_tensor_dtype(v->constant) == KEEL_INT32 && elem_i(v->constant, 5) == 6);
  v = find(g, "c_float");
  CHECK(v && v->constant && keel_tensor_ndim(v->constant) == 0 && elem_f(v->constant, 0) == 1.5);
  CHECK(v && v->dtype == KEEL_FLOAT32 && v->ndim == 0 && v->producer == -1);
  v = find(g, "c_floats");
  CHECK(v && v->constant && keel_tensor_dims(v->constant)[0] == 2 && elem_f(v->constant, 1) == 2.0);
  v = find(g, "c_int");
  CHECK(v && v->constant && keel_tensor_dtype(v->constant) == KEEL_INT64 && elem_i(v->constant, 0) == -4);
  v = find(g, "c_ints");
  CHECK(v && v->constant && keel_tensor_numel(v->constant) == 3 && elem_i(v->constant, 2) == 5);
  keel_graph_destroy(g);
  /* String constants stay nodes (keel::StringConstant) holding the tensor: never folded as values. */
  CHECK_OK(import_file(DIR "/constant_string.onnx", NULL, NULL, &g));
  v = g ? find(g, "Y") : NULL;
  CHECK(v && !v->constant && v->producer >= 0 && !strcmp(g->nodes[v->producer].op_type, "StringConstant"));
  if (v && v->producer >= 0) {
    const keel_attr *a = keel_node_attr(&g->nodes[v->producer], "value");
    CHECK(a && a->t && keel_tensor_numel(a->t) == 2 && !strcmp(keel_tensor_get_string(a->t, 1, NULL), "b"));
  }
  keel_graph_destroy(g);
}

TEST(test_subgraph) {
  TEST_BEGIN("subgraph");
  keel_graph *g = NULL;
  CHECK_OK(import_file(DIR "/subgraph.onnx", NULL, NULL, &g));
  if (!g) return;
  const keel_node *n = find_node(g, "if");
  const keel_attr *a = n ? keel_node_attr(n, "then_branch") : NULL;
  CHECK(a && a->type == KEEL_ATTR_GRAPH && a->g);
  if (a && a->g) {
    CHECK(a->g->n_nodes == 1 && a->g->n_outputs == 1 && !strcmp(a->g->values[a->g->outputs[0]].name, "t_out"));
    CHECK(keel_graph_find_value(a->g, "X") >= 0); /* outer-scope reference */
    CHECK(a->g->nodes[0].opset == 17);
  }
  a = n ? keel_node_attr(n, "else_branch") : NULL;
  CHECK(a && a->g && a->g->n_nodes == 1 && !strcmp(a->g->nodes[0].op_type, "Neg"));
  keel_graph_destroy(g);
}

TEST(test_external) {
  TEST_BEGIN("external");
  keel_graph *g = NULL;
  CHECK_OK(import_file(DIR "/ext/good.onnx", DIR "/ext", NULL, &g));
  if (g) {
    const keel_value *w = find(g, "W"), *b = find(g, "B"), *m = find(g, "M");
    CHECK(w && w->constant && elem_f(w->constant, 0) == 1.0 && elem_f(w->constant, 5) == 6.0);
    CHECK(b && b->constant && elem_i(b->constant, 0) == -5 && elem_i(b->constant, 1) == (INT64_C(1) << 33));
    CHECK(m && m->constant && elem_f(m->constant, 0) == 0.25 && elem_f(m->constant, 1) == -0.75);
    keel_graph_destroy(g);
  }
  EXPECT_ERR(import_fail(DIR "/ext/good.onnx", NULL, NULL), KEEL_INVALID_ARGUMENT, "initializer 'W'",
             "base directory");
  EXPECT_ERR(import_fail(DIR "/ext/dotdot.onnx", DIR "/ext", NULL), KEEL_INVALID_MODEL, "initializer 'W'", "'..'");
  EXPECT_ERR(import_fail(DIR "/ext/absolute.onnx", DIR "/ext", NULL), KEEL_INVALID_MODEL, "/etc/passwd",
             "absolute");
  EXPECT_ERR(import_fail(DIR "/ext/missing.onnx", DIR "/ext", NULL), KEEL_IO_ERROR, "initializer 'W'", "nope.bin");
  EXPECT_ERR(import_fail(DIR "/ext/offset.onnx", DIR "/ext", NULL), KEEL_INVALID_MODEL, "weights.bin",
             "offset 1000000");
  EXPECT_ERR(import_fail(DIR "/ext/past_end.onnx", DIR "/ext", NULL), KEEL_INVALID_MODEL, "initializer 'W'",
             "needs 48 bytes");
  EXPECT_ERR(import_fail(DIR "/ext/length.onnx", DIR "/ext", NULL), KEEL_INVALID_MODEL, "length 8", NULL);
  EXPECT_ERR(import_fail(DIR "/ext/good.onnx", DIR "/no_such_dir", NULL), KEEL_IO_ERROR, "no_such_dir", NULL);

  /* Symlinks: one pointing outside the base folder is refused, one staying inside is fine. */
  char tmp[] = "/tmp/keel_ext_XXXXXX";
  char *real_w = realpath(DIR "/ext/weights.bin", NULL);
  CHECK(real_w && mkdtemp(tmp));
  if (!real_w) return;
  char link[256], inner[256];
  snprintf(link, sizeof link, "%s/link.bin", tmp);
  snprintf(inner, sizeof inner, "%s/inner.bin", tmp);
  CHECK(symlink(real_w, link) == 0);
  EXPECT_ERR(import_fail(DIR "/ext/symlink.onnx", tmp, NULL), KEEL_INVALID_MODEL, "link.bin", "outside");
  /* inner.bin: a real copy inside the folder; link.bin -> inner.bin (relative) */
  void *wd = NULL;
  size_t wn = 0;
  CHECK_OK(keel_read_file(real_w, 0, &wd, &wn));
  FILE *f = fopen(inner, "wb");
  CHECK(f && wd && fwrite(wd, 1, wn, f) == wn);
  if (f) fclose(f);
  free(wd);
  unlink(link);
  CHECK(symlink("inner.bin", link) == 0);
  CHECK_OK(import_file(DIR "/ext/symlink.onnx", tmp, NULL, &g));
  if (g) {
    const keel_value *w = find(g, "W");
    CHECK(w && w->constant && elem_f(w->constant, 2) == 3.0);
    keel_graph_destroy(g);
  }
  unlink(link);
  unlink(inner);
  rmdir(tmp);
  free(real_w);
}

/* ModelProto bytes with subgraphs nested `levels` deep: graph{node{attribute{g: ...}}}. */
static uint8_t *nested_model(int levels, size_t *size) {
  size_t cap = (size_t)levels * 40 + 64, len = 0;
  uint8_t *buf = malloc(cap), *tmp = malloc(cap);
  if (!buf || !tmp) {
    free(buf);
    free(tmp);
    return NULL;
  }
  /* wrap(field, inner): tag, varint length, inner */
#define WRAP(field)                                                  \
  do {                                                               \
    size_t n = 0;                                                    \
    tmp[n++] = (uint8_t)((field) << 3 | 2);                          \
    size_t l = len;                                                  \
    do {                                                             \
      tmp[n++] = (uint8_t)((l & 0x7f) | (l > 0x7f ? 0x80 : 0));      \
      l >>= 7;                                                       \
    } while (l);                                                     \
    memcpy(tmp + n, buf, len);                                       \
    len += n;                                                        \
    memcpy(buf, tmp, len);                                           \
  } while (0)
  for (int i = 0; i < levels; i++) {
    WRAP(6); /* AttributeProto.g */
    WRAP(5); /* NodeProto.attribute */
    WRAP(1); /* GraphProto.node */
  }
  WRAP(7); /* ModelProto.graph */
#undef WRAP
  free(tmp);
  *size = len;
  return buf;
}

TEST(test_malformed) {
  TEST_BEGIN("malformed");
  void *data = NULL;
  size_t size = 0;
  CHECK_OK(keel_read_file(DIR "/initializers.onnx", 0, &data, &size));
  if (!data) return;
  keel_graph *g = NULL;
  /* Every prefix: an error or a graph, never a crash or leak (ASan builds check the latter). */
  int errors = 0;
  for (size_t n = 0; n < size; n++) {
    keel_status *s = keel_onnx_import(data, n, DIR, NULL, &g);
    if (s) {
      errors++;
      CHECK(g == NULL && keel_status_message(s)[0]);
      keel_status_free(s);
    }
    keel_graph_destroy(g);
    g = NULL;
  }
  CHECK(errors > (int)size / 2);
  EXPECT_ERR(keel_onnx_import(data, size / 2, DIR, NULL, &g), KEEL_INVALID_MODEL, "truncated", NULL);
  CHECK(g == NULL);
  /* Corrupt bytes: flip each byte in turn. */
  uint8_t *c = malloc(size);
  for (size_t i = 0; c && i < size; i++) {
    memcpy(c, data, size);
    c[i] ^= 0xA5;
    keel_status *s = keel_onnx_import(c, size, DIR, NULL, &g);
    keel_status_free(s);
    keel_graph_destroy(g);
    g = NULL;
  }
  memset(c, 0xff, size);
  EXPECT_ERR(keel_onnx_import(c, size, DIR, NULL, &g), KEEL_INVALID_MODEL, "not a valid ONNX model", NULL);
  free(c);
  free(data);

  EXPECT_ERR(import_fail(DIR "/not_onnx.txt", NULL, NULL), KEEL_INVALID_MODEL, "text", NULL);
  EXPECT_ERR(import_fail(DIR "/no_graph.onnx", NULL, NULL), KEEL_INVALID_MODEL, "no graph", NULL);
  EXPECT_ERR(keel_onnx_import("", 0, NULL, NULL, &g), KEEL_INVALID_MODEL, "empty", NULL);

  size_t nsize = 0;
  uint8_t *deep = nested_model(500, &nsize);
  CHECK(deep);
  if (deep) EXPECT_ERR(keel_onnx_import(deep, nsize, NULL, NULL, &g), KEEL_INVALID_MODEL, "deep", NULL);
  free(deep);
  deep = nested_model(3, &nsize); /* shallow nesting is fine as protobuf; fails later for other reasons */
  if (deep) {
    keel_status *s = keel_onnx_import(deep, nsize, NULL, NULL, &g);
    CHECK(!s || !strstr(keel_status_message(s), "deep"));
    keel_status_free(s);
    keel_graph_destroy(g);
    g = NULL;
  }
  free(deep);
}

TEST(test_limits) {
  TEST_BEGIN("limits");
  EXPECT_ERR(import_fail(DIR "/huge.onnx", NULL, NULL), KEEL_OUT_OF_MEMORY, "initializer 'huge'",
             "max_tensor_elements");
  EXPECT_ERR(import_fail(DIR "/overflow.onnx", NULL, NULL), KEEL_INVALID_MODEL, "initializer 'ovf'", "overflow");
  keel_engine_options opt;
  memset(&opt, 0, sizeof opt);
  opt.max_tensor_elements = 4;
  EXPECT_ERR(import_fail(DIR "/initializers.onnx", DIR, &opt), KEEL_OUT_OF_MEMORY, "max_tensor_elements", NULL);
  memset(&opt, 0, sizeof opt);
  opt.max_model_bytes = 100;
  EXPECT_ERR(import_fail(DIR "/initializers.onnx", DIR, &opt), KEEL_OUT_OF_MEMORY, "max_model_bytes", NULL);
  EXPECT_ERR(import_fail(DIR "/bad_raw_size.onnx", NULL, NULL), KEEL_INVALID_MODEL, "initializer 'short'",
             "raw_data has 20 bytes");
  EXPECT_ERR(import_fail(DIR "/wrong_field.onnx", NULL, NULL), KEEL_INVALID_MODEL, "initializer 'wrong'",
             "int64_data");
  keel_graph *sg = NULL; /* a string initializer imports as a StringConstant node */
  CHECK_OK(import_file(DIR "/string_init.onnx", NULL, NULL, &sg));
  const keel_value *sv = sg ? find(sg, "strs") : NULL;
  CHECK(sv && sv->producer >= 0 && !strcmp(sg->nodes[sv->producer].op_type, "StringConstant"));
  keel_graph_destroy(sg);
}

TEST(test_graph_errors) {
  TEST_BEGIN("graph errors");
  EXPECT_ERR(import_fail(DIR "/dup_producer.onnx", NULL, NULL), KEEL_INVALID_MODEL, "'Y'", "produced twice");
  EXPECT_ERR(import_fail(DIR "/bad_domain.onnx", NULL, NULL), KEEL_INVALID_MODEL, "'foo'", "com.unknown");
  keel_graph *g = NULL;
  CHECK_OK(import_file(DIR "/undefined_input.onnx", NULL, NULL, &g));
  if (g) {
    EXPECT_ERR(keel_graph_toposort(g), KEEL_INVALID_MODEL, "ghost", NULL);
    keel_graph_destroy(g);
  }
}

TEST(test_tensor_io) {
  TEST_BEGIN("tensor io");
  void *data = NULL;
  size_t size = 0;
  CHECK_OK(keel_read_file(DIR "/tensor_float.pb", 0, &data, &size));
  keel_tensor *t = NULL;
  char *name = NULL;
  CHECK_OK(keel_onnx_decode_tensor(data, size, &t, &name));
  free(data);
  CHECK(t && keel_tensor_dtype(t) == KEEL_FLOAT32 && keel_tensor_numel(t) == 6 && elem_f(t, 2) == -1.25);
  CHECK(name && !strcmp(name, "x"));
  free(name);

  /* Round trip through the encoder. */
  void *enc = NULL;
  size_t n = 0;
  if (t) CHECK_OK(keel_onnx_encode_tensor(t, "again", &enc, &n));
  keel_tensor *t2 = NULL;
  name = NULL;
  if (enc) CHECK_OK(keel_onnx_decode_tensor(enc, n, &t2, &name));
  CHECK(t2 && name && !strcmp(name, "again") && keel_tensor_nbytes(t2) == keel_tensor_nbytes(t));
  CHECK(t2 && !memcmp(keel_tensor_data_const(t2), keel_tensor_data_const(t), keel_tensor_nbytes(t)));
  free(name);
  free(enc);
  keel_tensor_release(t2);
  int64_t d0 = 0;
  keel_tensor *e = NULL, *e2 = NULL;
  CHECK_OK(keel_tensor_create(KEEL_INT64, &d0, 1, NULL, &e));
  enc = NULL;
  if (e) CHECK_OK(keel_onnx_encode_tensor(e, NULL, &enc, &n));
  if (enc) CHECK_OK(keel_onnx_decode_tensor(enc, n, &e2, NULL));
  CHECK(e2 && keel_tensor_numel(e2) == 0 && keel_tensor_dtype(e2) == KEEL_INT64 && keel_tensor_ndim(e2) == 1);
  free(enc);
  keel_tensor_release(e);
  keel_tensor_release(e2);
  /* Truncated tensor bytes */
  if (t) {
    CHECK_OK(keel_onnx_encode_tensor(t, "x", &enc, &n));
    keel_tensor *bad = NULL;
    if (enc) EXPECT_ERR(keel_onnx_decode_tensor(enc, n - 3, &bad, NULL), KEEL_INVALID_MODEL, NULL, NULL);
    CHECK(bad == NULL);
    free(enc);
  }
  keel_tensor_release(t);

  EXPECT_ERR(keel_read_file(DIR "/does_not_exist.onnx", 0, &data, &size), KEEL_IO_ERROR, "does_not_exist",
             "No such file");
  EXPECT_ERR(keel_read_file(DIR, 0, &data, &size), KEEL_IO_ERROR, "directory", NULL);
  EXPECT_ERR(keel_read_file(DIR "/initializers.onnx", 10, &data, &size), KEEL_OUT_OF_MEMORY, "limit", NULL);
}

RUN_TESTS(test_encodings, test_constants, test_subgraph, test_external, test_malformed, test_limits,
          test_graph_errors, test_tensor_io)
