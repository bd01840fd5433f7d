/* String tensors: ownership (every element's bytes freed with the tensor, copies are deep), API errors, and
 * string models end to end (StringNormalizer, StringConcat, StringSplit, RegexFullMatch, Equal, Cast, string
 * constants, byte-moving operators over strings, refused operators). Run under ASan/LSan to prove the
 * ownership rules: a shallow copy would be a double free, a missed release a leak. Models are built here
 * with protobuf-c, so the test needs no data files. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "test_main.h"
#include "model_builder.h"

/* ---- helpers ---- */

static keel_tensor *strings(const char *const *v, int64_t n) {
  keel_tensor *t = NULL;
  CHECK_OK(keel_tensor_create(KEEL_STRING, &n, 1, NULL, &t));
  for (int64_t i = 0; t && i < n; i++) CHECK_OK(keel_tensor_set_string(t, i, v[i], strlen(v[i])));
  return t;
}

static void check_strings(const keel_tensor *t, const char *const *want, int64_t n, int line) {
  if (!t || keel_tensor_dtype(t) != KEEL_STRING || keel_tensor_numel(t) != n) {
    fprintf(stderr, "%s:%d: [%s] expected %lld strings, got %s with %lld elements\n", __FILE__, line, test_current,
            (long long)n, t ? keel_dtype_name(keel_tensor_dtype(t)) : "NULL", t ? (long long)keel_tensor_numel(t) : -1LL);
    test_failures++;
    return;
  }
  for (int64_t i = 0; i < n; i++) {
    size_t len;
    const char *s = keel_tensor_get_string(t, i, &len);
    if (len != strlen(want[i]) || memcmp(s, want[i], len)) {
      fprintf(stderr, "%s:%d: [%s] element %lld is \"%s\", expected \"%s\"\n", __FILE__, line, test_current,
              (long long)i, s, want[i]);
      test_failures++;
    }
  }
}
#define CHECK_STRINGS(t, ...)                                                  \
  do {                                                                         \
    const char *const want_[] = {__VA_ARGS__};                                 \
    check_strings((t), want_, (int64_t)(sizeof want_ / sizeof *want_), __LINE__); \
  } while (0)

/* ---- tensors ---- */

TEST(test_ownership) {
  TEST_BEGIN("ownership");
  CHECK(keel_dtype_size(KEEL_STRING) == sizeof(keel_string));
  CHECK(!strcmp(keel_dtype_name(KEEL_STRING), "string"));
  CHECK(keel_dtype_from_name("string") == KEEL_STRING);
  int64_t n = 3;
  keel_tensor *t = NULL;
  CHECK_OK(keel_tensor_create(KEEL_STRING, &n, 1, NULL, &t));
  size_t len = 99;
  CHECK(!strcmp(keel_tensor_get_string(t, 1, &len), "") && len == 0); /* created empty */
  CHECK_OK(keel_tensor_set_string(t, 0, "hello", 5));
  CHECK_OK(keel_tensor_set_string(t, 0, "replaced", 8)); /* the old bytes are freed (LSan) */
  CHECK_OK(keel_tensor_set_string(t, 1, "a\0b", 3));     /* embedded NUL kept, with its length */
  CHECK(!memcmp(keel_tensor_get_string(t, 1, &len), "a\0b", 3) && len == 3);
  CHECK_OK(keel_tensor_set_string(t, 2, NULL, 0));
  /* A copy owns its own bytes: changing or releasing the original does not touch it. */
  keel_tensor *c = NULL;
  CHECK_OK(keel_tensor_from_data(KEEL_STRING, &n, 1, keel_tensor_data(t), &c));
  CHECK(((keel_string *)keel_tensor_data(c))[0].data != ((keel_string *)keel_tensor_data(t))[0].data);
  CHECK_OK(keel_tensor_set_string(t, 0, "changed", 7));
  keel_tensor_release(t);
  CHECK(!strcmp(keel_tensor_get_string(c, 0, NULL), "replaced") && !strcmp(keel_tensor_get_string(c, 2, NULL), ""));
  CHECK(!memcmp(keel_tensor_get_string(c, 1, &len), "a\0b", 3) && len == 3);
  /* Retained tensors share the storage: freed once, when the last reference goes. */
  keel_tensor *r = keel_tensor_retain(c);
  keel_tensor_release(c);
  CHECK(!strcmp(keel_tensor_get_string(r, 0, NULL), "replaced"));
  keel_tensor_release(r);
  /* Empty and scalar string tensors. */
  int64_t zero = 0;
  CHECK_OK(keel_tensor_create(KEEL_STRING, &zero, 1, NULL, &t));
  CHECK(keel_tensor_numel(t) == 0 && keel_tensor_get_string(t, 0, NULL) == NULL);
  keel_tensor_release(t);
  CHECK_OK(keel_tensor_create(KEEL_STRING, NULL, 0, NULL, &t));
  CHECK_OK(keel_tensor_set_string(t, 0, "scalar", 6));
  CHECK_STRINGS(t, "scalar");
  keel_tensor_release(t);
}

TEST(test_api_errors) {
  TEST_BEGIN("api_errors");
  int64_t n = 2;
  keel_tensor *t = NULL, *f = NULL;
  CHECK_OK(keel_tensor_create(KEEL_STRING, &n, 1, NULL, &t));
  CHECK_OK(keel_tensor_create(KEEL_FLOAT32, &n, 1, NULL, &f));
  CHECK_ERR(keel_tensor_set_string(t, 2, "x", 1), KEEL_INVALID_ARGUMENT, "outside");
  CHECK_ERR(keel_tensor_set_string(t, -1, "x", 1), KEEL_INVALID_ARGUMENT, "outside");
  CHECK_ERR(keel_tensor_set_string(t, 0, NULL, 4), KEEL_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(keel_tensor_set_string(f, 0, "x", 1), KEEL_INVALID_ARGUMENT, "not string");
  CHECK_ERR(keel_tensor_set_string(NULL, 0, "x", 1), KEEL_INVALID_ARGUMENT, "NULL");
  CHECK(keel_tensor_get_string(f, 0, NULL) == NULL);
  CHECK(keel_tensor_get_string(t, 5, NULL) == NULL);
  /* Caller memory cannot hold owned strings. */
  keel_string raw[2] = {{NULL, 0}, {NULL, 0}};
  keel_tensor *w = NULL;
  CHECK_ERR(keel_tensor_wrap(KEEL_STRING, &n, 1, raw, sizeof raw, NULL, NULL, &w), KEEL_UNSUPPORTED, "cannot wrap");
  CHECK(w == NULL);
  keel_tensor_release(t);
  keel_tensor_release(f);
}

/* ---- models ---- */

TEST(test_normalizer_chain) {
  TEST_BEGIN("normalizer_chain");
  /* X -> StringNormalizer(UPPER, stopwords) -> Y; Identity(Y) -> Z (a byte-moving kernel: Z must own its
   * copies); Concat(Y, Z); Equal(Z, Y); RegexFullMatch(Y) */
  mb b = {0};
  mb_opset(&b, "", 20);
  mb_input(&b, "X", 8);
  Onnx__NodeProto *sn = mb_node(&b, "StringNormalizer", "", "X", "Y");
  mb_attr_str(&b, sn, "case_change_action", "UPPER");
  mb_attr_strs(&b, sn, "stopwords", "the,A");
  mb_node(&b, "Identity", "", "Y", "Z");
  Onnx__NodeProto *cat = mb_node(&b, "Concat", "", "Y,Z", "C");
  mb_attr_int(&b, cat, "axis", 0);
  mb_node(&b, "Equal", "", "Z,Y", "E");
  Onnx__NodeProto *re = mb_node(&b, "RegexFullMatch", "", "Y", "R");
  mb_attr_str(&b, re, "pattern", "[A-Z]+\\d?");
  mb_output(&b, "Y", 8);
  mb_output(&b, "Z", 8);
  mb_output(&b, "C", 8);
  mb_output(&b, "E", 9);
  mb_output(&b, "R", 9);
  keel_status *s;
  keel_engine *e = mb_load(&b, &s);
  CHECK_OK(s);
  const char *in[] = {"The", "quick", "a", "FOX9", "\xc3\xa9t\xc3\xa9"};
  keel_tensor *x = strings(in, 5), *out[5] = {0};
  for (int rep = 0; e && rep < 2; rep++) { /* twice: nothing of the first call may leak into the second */
    CHECK_OK(keel_engine_run(e, &x, 1, out, 5));
    CHECK_STRINGS(out[0], "QUICK", "FOX9", "\xc3\x89T\xc3\x89");
    CHECK_STRINGS(out[1], "QUICK", "FOX9", "\xc3\x89T\xc3\x89");
    CHECK(out[0] && out[1] && ((keel_string *)keel_tensor_data(out[0]))[0].data !=
                                  ((keel_string *)keel_tensor_data(out[1]))[0].data);
    CHECK_STRINGS(out[2], "QUICK", "FOX9", "\xc3\x89T\xc3\x89", "QUICK", "FOX9", "\xc3\x89T\xc3\x89");
    const uint8_t *eq = out[3] ? keel_tensor_data(out[3]) : NULL;
    CHECK(eq && keel_tensor_numel(out[3]) == 3 && eq[0] == 1 && eq[1] == 1 && eq[2] == 1);
    const uint8_t *r = out[4] ? keel_tensor_data(out[4]) : NULL;
    CHECK(r && r[0] == 1 && r[1] == 1 && r[2] == 0);
    for (int k = 0; k < 5; k++) keel_tensor_release(out[k]);
  }
  keel_tensor_release(x);
  keel_engine_release(e);
  mb_free(&b);
}

TEST(test_split_concat_cast_constant) {
  TEST_BEGIN("split_concat_cast_constant");
  /* A string initializer and a string Constant (kept as nodes, never folded), StringConcat with
   * broadcasting, StringSplit with its two outputs, Cast string -> float and float -> string. */
  mb b = {0};
  mb_opset(&b, "", 20);
  mb_input(&b, "X", 8);
  mb_input(&b, "F", 1);
  b.inits[b.n_init++] = mb_string_tensor(&b, "suffix", "-x");
  Onnx__NodeProto *k = mb_node(&b, "Constant", "", "", "sep");
  mb_attr_str(&b, k, "value_string", ",");
  mb_node(&b, "StringConcat", "", "X,sep", "X1");
  mb_node(&b, "StringConcat", "", "X1,suffix", "X2");
  Onnx__NodeProto *sp = mb_node(&b, "StringSplit", "", "X2", "P,N");
  mb_attr_str(&b, sp, "delimiter", ",");
  Onnx__NodeProto *c1 = mb_node(&b, "Cast", "", "F", "FS");
  mb_attr_int(&b, c1, "to", 8);
  Onnx__NodeProto *c2 = mb_node(&b, "Cast", "", "FS", "FF");
  mb_attr_int(&b, c2, "to", 1);
  mb_output(&b, "P", 8);
  mb_output(&b, "N", 7);
  mb_output(&b, "FS", 8);
  mb_output(&b, "FF", 1);
  keel_status *s;
  keel_engine *e = mb_load(&b, &s);
  CHECK_OK(s);
  const char *in[] = {"a,b", "c"};
  keel_tensor *x = strings(in, 2), *f = NULL, *out[4] = {0};
  float fv[3] = {0.1f, -2.5f, 1e20f};
  int64_t three = 3;
  CHECK_OK(keel_tensor_from_data(KEEL_FLOAT32, &three, 1, fv, &f));
  keel_tensor *ins[2] = {x, f};
  if (e) {
    CHECK_OK(keel_engine_run(e, ins, 2, out, 4));
    CHECK(out[0] && keel_tensor_ndim(out[0]) == 2 && keel_tensor_dims(out[0])[1] == 3);
    CHECK_STRINGS(out[0], "a", "b", "-x", "c", "-x", "");
    const int64_t *nn = out[1] ? keel_tensor_data(out[1]) : NULL;
    CHECK(nn && nn[0] == 3 && nn[1] == 2);
    CHECK_STRINGS(out[2], "0.1", "-2.5", "1e+20");
    const float *ff = out[3] ? keel_tensor_data(out[3]) : NULL;
    CHECK(ff && ff[0] == 0.1f && ff[1] == -2.5f && ff[2] == 1e20f);
    for (int i = 0; i < 4; i++) keel_tensor_release(out[i]);
  }
  keel_tensor_release(x);
  keel_tensor_release(f);
  keel_engine_release(e);
  mb_free(&b);
}

TEST(test_errors) {
  TEST_BEGIN("errors");
  /* Operators that do not take strings are refused by name; a bad number in a string Cast is an error
   * naming the element; an RE2 feature POSIX lacks is refused with its name. Nothing leaks. */
  mb b = {0};
  mb_opset(&b, "", 20);
  mb_input(&b, "X", 8);
  mb_node(&b, "Add", "", "X,X", "Y");
  mb_output(&b, "Y", 8);
  keel_status *s;
  keel_engine *e = mb_load(&b, &s);
  CHECK_OK(s);
  const char *in[] = {"1", "x"};
  keel_tensor *x = strings(in, 2), *y = NULL;
  if (e) CHECK_ERR(keel_engine_run(e, &x, 1, &y, 1), KEEL_UNSUPPORTED, "Add does not take string tensors");
  keel_engine_release(e);
  mb_free(&b);

  mb b2 = {0};
  mb_opset(&b2, "", 20);
  mb_input(&b2, "X", 8);
  Onnx__NodeProto *c = mb_node(&b2, "Cast", "", "X", "Y");
  mb_attr_int(&b2, c, "to", 7);
  mb_output(&b2, "Y", 7);
  e = mb_load(&b2, &s);
  CHECK_OK(s);
  if (e) CHECK_ERR(keel_engine_run(e, &x, 1, &y, 1), KEEL_INVALID_ARGUMENT, "element 1 (\"x\") does not parse as int64");
  keel_engine_release(e);
  mb_free(&b2);

  mb b3 = {0};
  mb_opset(&b3, "", 20);
  mb_input(&b3, "X", 8);
  Onnx__NodeProto *r = mb_node(&b3, "RegexFullMatch", "", "X", "Y");
  mb_attr_str(&b3, r, "pattern", "a+?");
  mb_output(&b3, "Y", 9);
  e = mb_load(&b3, &s);
  CHECK_OK(s);
  if (e) CHECK_ERR(keel_engine_run(e, &x, 1, &y, 1), KEEL_UNSUPPORTED, "lazy");
  keel_engine_release(e);
  mb_free(&b3);
  keel_tensor_release(x);
}

static void *refuse_alloc(void *user, const char *name, void *cur, size_t size, size_t align) {
  (void)name; (void)cur; (void)size; (void)align;
  ++*(int *)user;
  return NULL;
}

TEST(test_module_string_outputs) {
  TEST_BEGIN("module_string_outputs");
  /* A string output through the runtime module: the default path hands out owned tensors in every mode;
   * binding a string tensor or routing a string output to an output allocator is refused by name (a byte
   * copy would share, then double-free, the element strings). */
  mb b = {0};
  mb_opset(&b, "", 20);
  mb_input(&b, "X", 8);
  Onnx__NodeProto *sn = mb_node(&b, "StringNormalizer", "", "X", "Y");
  mb_attr_str(&b, sn, "case_change_action", "LOWER");
  mb_output(&b, "Y", 8);
  keel_status *s;
  keel_engine *e = mb_load(&b, &s);
  CHECK_OK(s);
  const char *in[] = {"AbC", "DEF"};
  keel_tensor *x = strings(in, 2);
  for (int mode = 0; e && mode < 3; mode++) {
    keel_module_options o;
    keel_module_options_init(&o);
    o.output_mode = (keel_output_mode)mode;
    keel_module *m = NULL;
    CHECK_OK(keel_module_create(e, &o, &m));
    if (!m) continue;
    for (int rep = 0; rep < 2; rep++) {
      keel_tensor *y = NULL;
      CHECK_OK(keel_module_forward(m, &x, 1, &y, 1));
      CHECK_STRINGS(y, "abc", "def");
      keel_tensor_release(y);
    }
    keel_tensor *bound = strings(in, 2);
    s = keel_module_bind_output(m, 0, bound);
    CHECK(s && keel_status_code(s) == KEEL_UNSUPPORTED && strstr(keel_status_message(s), "string"));
    keel_status_free(s);
    keel_tensor_release(bound);
    int asked = 0;
    keel_output_allocator a = {refuse_alloc, NULL, &asked};
    CHECK_OK(keel_module_set_output_allocator(m, 0, &a));
    keel_tensor *y = NULL;
    s = keel_module_forward(m, &x, 1, &y, 1);
    CHECK(s && y == NULL && asked == 0 && strstr(keel_status_message(s), "string tensor"));
    keel_status_free(s);
    CHECK_OK(keel_module_set_output_allocator(m, 0, NULL));
    CHECK_OK(keel_module_forward(m, &x, 1, &y, 1)); /* the module stays usable */
    CHECK_STRINGS(y, "abc", "def");
    keel_tensor_release(y);
    CHECK_OK(keel_module_forward(m, &x, 1, &y, 1));
    keel_module_destroy(m); /* y outlives the module that made it */
    CHECK_STRINGS(y, "abc", "def");
    keel_tensor_release(y);
  }
  keel_tensor_release(x);
  keel_engine_release(e);
  mb_free(&b);
}

TEST(test_cast_constant_to_string) {
  TEST_BEGIN("cast_constant_to_string");
  /* Cast(float constant -> string) has only constant inputs: load-time folding must leave it to the
   * interpreter (a folded string constant would be a shallow copy) and the model must still load and run. */
  mb b = {0};
  mb_opset(&b, "", 20);
  mb_input(&b, "X", 8);
  const int64_t two = 2;
  const float v[] = {1.5f, -2.0f};
  b.inits[b.n_init++] = mb_float_tensor(&b, "F", 1, &two, v);
  Onnx__NodeProto *c = mb_node(&b, "Cast", "", "F", "FS");
  mb_attr_int(&b, c, "to", 8);
  mb_node(&b, "StringConcat", "", "X,FS", "Y");
  mb_output(&b, "Y", 8);
  keel_status *s;
  keel_engine *e = mb_load(&b, &s);
  CHECK_OK(s);
  const char *in[] = {"a=", "b="};
  keel_tensor *x = strings(in, 2), *y = NULL;
  if (e) CHECK_OK(keel_engine_run(e, &x, 1, &y, 1));
  CHECK_STRINGS(y, "a=1.5", "b=-2");
  keel_tensor_release(y);
  keel_tensor_release(x);
  keel_engine_release(e);
  mb_free(&b);
}

RUN_TESTS(test_ownership, test_api_errors, test_normalizer_chain, test_split_concat_cast_constant, test_errors,
          test_module_string_outputs, test_cast_constant_to_string)
