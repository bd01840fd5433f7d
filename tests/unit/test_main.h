/* A tiny test framework: each test file defines TEST(name) functions and lists them in RUN_TESTS(...).
 * CHECK failures print file:line and the expression, and the program exits non-zero at the end. */
#ifndef KEEL_TEST_MAIN_H
#define KEEL_TEST_MAIN_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keel/keel.h>

static int test_failures = 0;
static const char *test_current = "";

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      fprintf(stderr, "%s:%d: [%s] CHECK failed: %s\n", __FILE__, __LINE__, test_current, #cond); \
      test_failures++;                                                               \
    }                                                                                \
  } while (0)

/* The status must be NULL (success); otherwise print its message and free it. */
#define CHECK_OK(expr)                                                               \
  do {                                                                               \
    keel_status *check_s_ = (expr);                                                  \
    if (check_s_) {                                                                  \
      fprintf(stderr, "%s:%d: [%s] %s failed: %s\n", __FILE__, __LINE__, test_current, #expr, \
              keel_status_message(check_s_));                                        \
      keel_status_free(check_s_);                                                    \
      test_failures++;                                                               \
    }                                                                                \
  } while (0)

/* The status must be an error with `code` whose message contains `substr`. */
#define CHECK_ERR(expr, code, substr)                                                \
  do {                                                                               \
    keel_status *check_s_ = (expr);                                                  \
    if (!check_s_) {                                                                 \
      fprintf(stderr, "%s:%d: [%s] %s succeeded, expected %s\n", __FILE__, __LINE__, test_current, #expr, #code); \
      test_failures++;                                                               \
    } else {                                                                         \
      if (keel_status_code(check_s_) != (code) || !strstr(keel_status_message(check_s_), (substr))) { \
        fprintf(stderr, "%s:%d: [%s] %s: expected %s containing \"%s\", got %s: %s\n", __FILE__, __LINE__, \
                test_current, #expr, #code, (substr), keel_code_name(keel_status_code(check_s_)),          \
                keel_status_message(check_s_));                                      \
        test_failures++;                                                             \
      }                                                                              \
      keel_status_free(check_s_);                                                    \
    }                                                                                \
  } while (0)

/* Deterministic test data in [-1, 1): a 32-bit LCG and a 64-bit xorshift (each test file keeps its own
 * state and seed, so its draws do not depend on other files). */
static inline float test_frand_lcg(uint32_t *s) {
  *s = *s * 1664525u + 1013904223u;
  return (float)((*s >> 8) & 0xFFFF) / 32768.0f - 1.0f;
}
static inline float test_frand_xorshift(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return (float)((*s >> 40) & 0xFFFFFF) / (float)(1 << 23) - 1.0f;
}

#define TEST(name) static void name(void)

#define RUN_TESTS(...)                                                               \
  int main(void) {                                                                   \
    void (*tests_[])(void) = {__VA_ARGS__};                                          \
    const char *names_ = #__VA_ARGS__;                                               \
    (void)names_;                                                                    \
    for (size_t i_ = 0; i_ < sizeof tests_ / sizeof tests_[0]; i_++) {               \
      test_current = "";                                                             \
      tests_[i_]();                                                                  \
    }                                                                                \
    if (test_failures) fprintf(stderr, "%d check(s) failed\n", test_failures);       \
    else printf("all tests passed\n");                                               \
    return test_failures ? 1 : 0;                                                    \
  }

/* Name the running test in failure messages: call at the top of each TEST. */
#define TEST_BEGIN(name) (test_current = (name))

/* Load a model file (relative to tests/data, where the tests run); NULL (and a failure) if it does not load. */
static inline keel_engine *test_load(const char *path) {
  keel_engine *e = NULL;
  CHECK_OK(keel_engine_load_file(path, NULL, &e));
  return e;
}

/* A float32 input filled with amp * sin(freq * i + phase): deterministic, and different per phase. */
static inline keel_tensor *test_wave_input(const int64_t *dims, int ndim, float freq, float phase, float amp) {
  keel_tensor *t = NULL;
  CHECK_OK(keel_tensor_create(KEEL_FLOAT32, dims, ndim, NULL, &t));
  float *p = t ? keel_tensor_data(t) : NULL;
  for (int64_t i = 0; p && i < keel_tensor_numel(t); i++) p[i] = sinf((float)i * freq + phase) * amp;
  return t;
}

#endif
