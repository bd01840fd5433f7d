/* Core: statuses, dtypes and half conversions, checked shape arithmetic, allocator counters and fault
 * injection, tensor reference counting. */
#include <math.h>

#include "core/error.h"
#include "core/shape.h"
#include "test_main.h"

TEST(status_basics) {
  TEST_BEGIN("status_basics");
  CHECK(keel_status_code(NULL) == KEEL_OK);
  CHECK(strcmp(keel_status_message(NULL), "") == 0);
  keel_status *s = keel_error(KEEL_SHAPE_MISMATCH, "input '%s' has %d dims", "x", 3);
  CHECK(keel_status_code(s) == KEEL_SHAPE_MISMATCH);
  CHECK(strcmp(keel_status_message(s), "input 'x' has 3 dims") == 0);
  s = keel_error_prefix(s, "node '%s': ", "n1");
  CHECK(strcmp(keel_status_message(s), "node 'n1': input 'x' has 3 dims") == 0);
  keel_status_free(s);
  keel_status_free(NULL);
  CHECK(strcmp(keel_code_name(KEEL_INVALID_MODEL), "INVALID_MODEL") == 0);
}

TEST(dtypes) {
  TEST_BEGIN("dtypes");
  CHECK(keel_dtype_size(KEEL_FLOAT32) == 4 && keel_dtype_size(KEEL_INT64) == 8 && keel_dtype_size(KEEL_BOOL) == 1);
  CHECK(keel_dtype_size(KEEL_FLOAT16) == 2 && keel_dtype_size(KEEL_STRING) == 0);
  CHECK(keel_dtype_from_name("float") == KEEL_FLOAT32 && keel_dtype_from_name("int8") == KEEL_INT8);
  CHECK(strcmp(keel_dtype_name(KEEL_BFLOAT16), "bfloat16") == 0);
  /* half: exact values, rounding to nearest even, overflow, subnormals, nan */
  CHECK(keel_float_to_half(1.0f) == 0x3c00 && keel_half_to_float(0x3c00) == 1.0f);
  CHECK(keel_float_to_half(-2.0f) == 0xc000);
  CHECK(keel_float_to_half(65504.0f) == 0x7bff && keel_float_to_half(70000.0f) == 0x7c00);
  CHECK(keel_half_to_float(0x0001) == 5.9604644775390625e-8f);
  CHECK(keel_float_to_half(5.9604644775390625e-8f) == 0x0001);
  CHECK(keel_float_to_half(1.0f + 1.0f / 2048) == 0x3c00); /* halfway: ties to even (down) */
  CHECK(keel_float_to_half(1.0f + 3.0f / 2048) == 0x3c02); /* halfway: ties to even (up) */
  CHECK(isnan(keel_half_to_float(keel_float_to_half(NAN))));
  for (int h = 0; h < 0x7c00; h += 7) CHECK(keel_float_to_half(keel_half_to_float((uint16_t)h)) == h);
  CHECK(keel_float_to_bfloat16(1.0f) == 0x3f80 && keel_bfloat16_to_float(0x3f80) == 1.0f);
}

TEST(shape_arith) {
  TEST_BEGIN("shape_arith");
  int64_t n;
  int64_t ok[] = {2, 3, 4};
  CHECK(keel_shape_numel(ok, 3, &n) && n == 24);
  int64_t big[] = {1 << 30, 1 << 30, 1 << 30};
  CHECK(!keel_shape_numel(big, 3, &n)); /* 2^90 overflows */
  int64_t neg[] = {2, -1};
  CHECK(!keel_shape_numel(neg, 2, &n));
  size_t nb;
  CHECK(!keel_shape_nbytes(INT64_MAX / 2, 8, &nb));
  int64_t a[] = {8, 1, 6, 1}, b[] = {7, 1, 5}, out[8];
  int no;
  CHECK(keel_shape_broadcast(a, 4, b, 3, out, &no) && no == 4 && out[0] == 8 && out[1] == 7 && out[2] == 6 && out[3] == 5);
  int64_t c[] = {3}, d[] = {4};
  CHECK(!keel_shape_broadcast(c, 1, d, 1, out, &no));
  int ax;
  CHECK(keel_axis_normalize(-1, 4, &ax) && ax == 3);
  CHECK(!keel_axis_normalize(4, 4, &ax) && !keel_axis_normalize(-5, 4, &ax));
}

TEST(allocator_counts_and_faults) {
  TEST_BEGIN("allocator_counts_and_faults");
  keel_allocator *a = keel_allocator_create(NULL, NULL);
  keel_alloc_stats st;
  void *p = keel_allocator_alloc(a, 1000);
  void *q = keel_allocator_alloc(a, 24);
  CHECK(p && q && ((uintptr_t)p % 64) == 0);
  keel_allocator_get_stats(a, &st);
  CHECK(st.allocations == 2 && st.bytes_in_use == 1024 && st.peak_bytes == 1024 && st.bytes_allocated == 1024);
  keel_allocator_free(a, p, 1000);
  keel_allocator_get_stats(a, &st);
  CHECK(st.frees == 1 && st.bytes_in_use == 24 && st.peak_bytes == 1024);
  /* the 2nd allocation from now fails, once */
  keel_allocator_fail_after(a, 2, 0);
  void *r1 = keel_allocator_alloc(a, 8), *r2 = keel_allocator_alloc(a, 8), *r3 = keel_allocator_alloc(a, 8);
  CHECK(r1 && !r2 && r3);
  keel_allocator_get_stats(a, &st);
  CHECK(st.failed == 1);
  /* sticky: everything from the 1st fails until reset */
  keel_allocator_fail_after(a, 1, 1);
  CHECK(!keel_allocator_alloc(a, 8) && !keel_allocator_alloc(a, 8));
  keel_allocator_fail_after(a, 0, 0);
  void *r4 = keel_allocator_alloc(a, 8);
  CHECK(r4);
  /* limit */
  keel_allocator_set_limit(a, 100);
  CHECK(keel_allocator_alloc(a, 200) == NULL);
  keel_allocator_set_limit(a, 0);
  keel_allocator_free(a, q, 24);
  keel_allocator_free(a, r1, 8);
  keel_allocator_free(a, r3, 8);
  keel_allocator_free(a, r4, 8);
  keel_allocator_get_stats(a, &st);
  CHECK(st.bytes_in_use == 0);
  keel_allocator_destroy(a);
}

static int deleted;
static void on_delete(void *data, void *user) {
  (void)data;
  *(int *)user += 1;
}

TEST(tensors) {
  TEST_BEGIN("tensors");
  int64_t dims[] = {2, 3};
  keel_tensor *t = NULL;
  CHECK_OK(keel_tensor_create(KEEL_FLOAT32, dims, 2, NULL, &t));
  CHECK(keel_tensor_numel(t) == 6 && keel_tensor_nbytes(t) == 24 && keel_tensor_ndim(t) == 2);
  keel_tensor *t2 = keel_tensor_retain(t);
  CHECK(t2 == t);
  keel_tensor_release(t);
  ((float *)keel_tensor_data(t2))[5] = 1.5f; /* still alive after one release */
  keel_tensor_release(t2);
  int64_t huge[] = {1LL << 40, 1LL << 40};
  keel_tensor *bad = NULL;
  CHECK_ERR(keel_tensor_create(KEEL_FLOAT32, huge, 2, NULL, &bad), KEEL_OUT_OF_MEMORY, "overflow");
  CHECK(bad == NULL);
  int64_t negd[] = {-1};
  CHECK_ERR(keel_tensor_create(KEEL_FLOAT32, negd, 1, NULL, &bad), KEEL_INVALID_ARGUMENT, "negative");
  CHECK_ERR(keel_tensor_create(KEEL_STRING, dims, 2, NULL, &bad), KEEL_UNSUPPORTED, "string");
  float buf[6] = {0};
  keel_tensor *w = NULL;
  CHECK_ERR(keel_tensor_wrap(KEEL_FLOAT32, dims, 2, buf, 8, NULL, NULL, &w), KEEL_INVALID_ARGUMENT, "smaller");
  CHECK_OK(keel_tensor_wrap(KEEL_FLOAT32, dims, 2, buf, sizeof buf, on_delete, &deleted, &w));
  CHECK(keel_tensor_data(w) == buf);
  keel_tensor_release(w);
  CHECK(deleted == 1);
  /* allocation failure surfaces as a clear error */
  keel_allocator *a = keel_allocator_create(NULL, NULL);
  keel_allocator_fail_after(a, 1, 0);
  CHECK_ERR(keel_tensor_create(KEEL_FLOAT32, dims, 2, a, &bad), KEEL_OUT_OF_MEMORY, "out of memory");
  keel_allocator_destroy(a);
}

RUN_TESTS(status_basics, dtypes, shape_arith, allocator_counts_and_faults, tensors)
