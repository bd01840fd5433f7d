/* Fault injection over every heap allocation keel makes: this test links with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=aligned_alloc, so each allocation inside libkeel goes
 * through __wrap_* below, which can fail the k-th one. For a model load, and for a forward call that has to
 * plan a new shape in each output mode, every k in turn: the call returns OUT_OF_MEMORY (or succeeds, when
 * the failed allocation was optional), the next call succeeds with the right answer, and nothing leaks
 * (LeakSanitizer checks at exit in the sanitizer build). Tensor buffers have their own counting allocator
 * with the same kind of hook (keel_allocator_fail_after); this covers everything else. */
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "test_main.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);

static long long alloc_calls, fail_at; /* fail the fail_at-th call from now; 0 = never */

static bool injected(void) {
  alloc_calls++;
  if (fail_at && alloc_calls == fail_at) return true;
  return false;
}
void *__wrap_malloc(size_t n) { return injected() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t m) { return injected() ? NULL : __real_calloc(n, m); }
void *__wrap_realloc(void *p, size_t n) { return injected() ? NULL : __real_realloc(p, n); }
void *__wrap_aligned_alloc(size_t a, size_t n) { return injected() ? NULL : __real_aligned_alloc(a, n); }

static void arm(long long k) {
  alloc_calls = 0;
  fail_at = k;
}

static const char *models[] = {"engine/conv_bn_relu.onnx", "engine/matmul_bias_relu.onnx",
                               "engine/flatten_by_shape.onnx", "engine/if_sign.onnx", "engine/nonzero.onnx",
                               "onnx_import/constants.onnx", "onnx_import/subgraph.onnx", "onnx_import/ext/good.onnx"};

TEST(model_load_sweep) {
  TEST_BEGIN("model_load_sweep");
  for (size_t mi = 0; mi < sizeof models / sizeof models[0]; mi++) {
    keel_engine *e = NULL;
    arm(0);
    CHECK_OK(keel_engine_load_file(models[mi], NULL, &e));
    long long sites = alloc_calls;
    keel_engine_release(e);
    CHECK(sites > 5);
    int failures = 0;
    for (long long k = 1; k <= sites; k++) {
      e = NULL;
      arm(k);
      keel_status *s = keel_engine_load_file(models[mi], NULL, &e);
      arm(0);
      if (s) {
        failures++;
        if (keel_status_code(s) != KEEL_OUT_OF_MEMORY)
          fprintf(stderr, "%s, allocation %lld failed: %s: %s\n", models[mi], k,
                  keel_code_name(keel_status_code(s)), keel_status_message(s));
        CHECK(keel_status_code(s) == KEEL_OUT_OF_MEMORY);
        CHECK(e == NULL);
        keel_status_free(s);
      }
      keel_engine_release(e);
    }
    CHECK(failures > sites / 2); /* most allocations of a load are not optional */
  }
}

static keel_tensor *input(const int64_t *dims, int ndim) {
  keel_tensor *t = NULL;
  CHECK_OK(keel_tensor_create(KEEL_FLOAT32, dims, ndim, NULL, &t));
  float *p = keel_tensor_data(t);
  for (int64_t i = 0; i < keel_tensor_numel(t); i++) p[i] = cosf((float)i * 0.3f);
  return t;
}

static bool same(keel_tensor *a, keel_tensor *b) {
  return a && b && keel_tensor_nbytes(a) == keel_tensor_nbytes(b) &&
         memcmp(keel_tensor_data(a), keel_tensor_data(b), keel_tensor_nbytes(a)) == 0;
}

TEST(forward_sweep_each_mode) {
  TEST_BEGIN("forward_sweep_each_mode");
  keel_engine *e = NULL;
  CHECK_OK(keel_engine_load_file("engine/conv_bn_relu.onnx", NULL, &e));
  if (!e) return;
  int64_t a[] = {1, 3, 8, 8}, b[] = {2, 3, 8, 8};
  keel_tensor *xa = input(a, 4), *xb = input(b, 4), *ra = NULL, *rb = NULL;
  CHECK_OK(keel_engine_run(e, &xa, 1, &ra, 1));
  CHECK_OK(keel_engine_run(e, &xb, 1, &rb, 1));
  for (int mode = 0; mode < 3; mode++) {
    long long sites = -1;
    for (long long k = 0; k == 0 || k <= sites; k++) {
      keel_module_options o;
      keel_module_options_init(&o);
      o.output_mode = (keel_output_mode)mode;
      keel_module *m = NULL;
      arm(0);
      CHECK_OK(keel_module_create(e, &o, &m));
      if (!m) break;
      keel_tensor *y = NULL;
      for (int i = 0; i < 2; i++) {
        CHECK_OK(keel_module_forward(m, &xa, 1, &y, 1));
        keel_tensor_release(y);
      }
      /* a new shape: plan, cache, arena growth, new output buffers */
      arm(k);
      keel_status *s = keel_module_forward(m, &xb, 1, &y, 1);
      long long used = alloc_calls;
      arm(0);
      if (k == 0) {
        CHECK(!s);
        sites = used;
        CHECK(sites >= 3);
      }
      if (s) {
        CHECK(keel_status_code(s) == KEEL_OUT_OF_MEMORY);
        CHECK(y == NULL);
        keel_status_free(s);
      } else {
        CHECK(same(y, rb));
        keel_tensor_release(y);
      }
      /* usable afterwards, both shapes */
      y = NULL;
      CHECK_OK(keel_module_forward(m, &xb, 1, &y, 1));
      CHECK(same(y, rb));
      keel_tensor_release(y);
      y = NULL;
      CHECK_OK(keel_module_forward(m, &xa, 1, &y, 1));
      CHECK(same(y, ra));
      keel_tensor_release(y);
      keel_module_destroy(m);
    }
  }
  keel_tensor_release(xa);
  keel_tensor_release(xb);
  keel_tensor_release(ra);
  keel_tensor_release(rb);
  keel_engine_release(e);
}

RUN_TESTS(model_load_sweep, forward_sweep_each_mode)
