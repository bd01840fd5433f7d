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
  CHECK(keel_dtype_size(KEEL_FLOAT16) == 2 && keel_dtype_size(KEEL_STRING) == sizeof(keel_string));
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

/* float8 / float4 / e8m0 / 4- and 2-bit integers: exhaustive over every code. */
TEST(narrow_dtypes) {
  TEST_BEGIN("narrow_dtypes");
  static const keel_dtype fps[] = {KEEL_FLOAT8E4M3FN, KEEL_FLOAT8E4M3FNUZ, KEEL_FLOAT8E5M2, KEEL_FLOAT8E5M2FNUZ,
                                   KEEL_FLOAT4E2M1};
  for (int t = KEEL_FLOAT8E4M3FN; t <= KEEL_INT2; t++) {
    CHECK(keel_dtype_size((keel_dtype)t) == 1 && keel_dtype_is_narrow((keel_dtype)t));
    CHECK(keel_dtype_from_name(keel_dtype_name((keel_dtype)t)) == (keel_dtype)t);
  }
  CHECK(!keel_dtype_is_narrow(KEEL_BFLOAT16) && keel_dtype_pack_factor(KEEL_UINT8) == 1);
  CHECK(keel_dtype_pack_factor(KEEL_INT4) == 2 && keel_dtype_pack_factor(KEEL_FLOAT4E2M1) == 2);
  CHECK(keel_dtype_pack_factor(KEEL_UINT2) == 4 && keel_dtype_pack_factor(KEEL_FLOAT8E5M2) == 1);
  for (size_t k = 0; k < sizeof fps / sizeof fps[0]; k++) {
    const keel_dtype t = fps[k];
    const int ncodes = t == KEEL_FLOAT4E2M1 ? 16 : 256, sbit = t == KEEL_FLOAT4E2M1 ? 8 : 0x80;
    for (int c = 0; c < ncodes; c++) {
      float f = keel_fp8_to_float(t, (uint8_t)c);
      if (isnan(f)) {
        CHECK(isnan(keel_fp8_to_float(t, keel_float_to_fp8(t, f, 0))));
        continue;
      }
      /* every non-nan code round trips (with saturate off, so e5m2's inf does too) */
      CHECK(keel_float_to_fp8(t, f, 0) == c);
      if (!isinf(f)) CHECK(keel_float_to_fp8(t, f, 1) == c);
      /* nearest even between neighbours: codes of one sign are ordered by value */
      int m = c & (sbit - 1);
      if (m + 1 < sbit && !(c & sbit)) {
        float g = keel_fp8_to_float(t, (uint8_t)(c + 1));
        if (isnan(g) || isinf(g)) continue;
        CHECK(g > f);
        float mid = (f + g) / 2;
        int even = (c & 1) ? c + 1 : c;
        CHECK(keel_float_to_fp8(t, mid, 1) == even);
        CHECK(keel_float_to_fp8(t, nextafterf(mid, 0), 1) == c);
        CHECK(keel_float_to_fp8(t, nextafterf(mid, INFINITY), 1) == c + 1);
        const bool fnuz = t == KEEL_FLOAT8E4M3FNUZ || t == KEEL_FLOAT8E5M2FNUZ;
        CHECK(keel_float_to_fp8(t, -mid, 1) == ((fnuz && even == 0) ? 0 : (even | sbit))); /* fnuz: no -0 */
      }
    }
  }
  /* e4m3fn: max 448, no inf; nan S.1111.111 */
  CHECK(keel_fp8_to_float(KEEL_FLOAT8E4M3FN, 0x7e) == 448.0f && isnan(keel_fp8_to_float(KEEL_FLOAT8E4M3FN, 0xff)));
  CHECK(keel_float_to_fp8(KEEL_FLOAT8E4M3FN, 464.0f, 0) == 0x7e); /* tie rounds to the even 448 */
  CHECK(keel_float_to_fp8(KEEL_FLOAT8E4M3FN, 465.0f, 0) == 0x7f && keel_float_to_fp8(KEEL_FLOAT8E4M3FN, 465.0f, 1) == 0x7e);
  CHECK(keel_float_to_fp8(KEEL_FLOAT8E4M3FN, INFINITY, 1) == 0x7e && keel_float_to_fp8(KEEL_FLOAT8E4M3FN, -INFINITY, 1) == 0xfe);
  CHECK(keel_float_to_fp8(KEEL_FLOAT8E4M3FN, INFINITY, 0) == 0x7f && keel_float_to_fp8(KEEL_FLOAT8E4M3FN, -INFINITY, 0) == 0xff);
  CHECK(keel_float_to_fp8(KEEL_FLOAT8E4M3FN, -0.0f, 1) == 0x80 && keel_fp8_to_float(KEEL_FLOAT8E4M3FN, 1) == 0x1p-9f);
  /* fnuz: single nan 0x80, no -0 */
  CHECK(isnan(keel_fp8_to_float(KEEL_FLOAT8E4M3FNUZ, 0x80)) && keel_fp8_to_float(KEEL_FLOAT8E4M3FNUZ, 0x7f) == 240.0f);
  CHECK(keel_float_to_fp8(KEEL_FLOAT8E4M3FNUZ, -0.0f, 1) == 0 && keel_float_to_fp8(KEEL_FLOAT8E5M2FNUZ, -1e-30f, 0) == 0);
  CHECK(keel_float_to_fp8(KEEL_FLOAT8E4M3FNUZ, NAN, 1) == 0x80 && keel_float_to_fp8(KEEL_FLOAT8E5M2FNUZ, -NAN, 0) == 0x80);
  CHECK(keel_float_to_fp8(KEEL_FLOAT8E4M3FNUZ, 1e6f, 0) == 0x80 && keel_float_to_fp8(KEEL_FLOAT8E4M3FNUZ, -1e6f, 1) == 0xff);
  CHECK(keel_float_to_fp8(KEEL_FLOAT8E5M2FNUZ, INFINITY, 0) == 0x80 && keel_float_to_fp8(KEEL_FLOAT8E5M2FNUZ, INFINITY, 1) == 0x7f);
  /* e5m2: IEEE-like inf and nan */
  CHECK(isinf(keel_fp8_to_float(KEEL_FLOAT8E5M2, 0x7c)) && isnan(keel_fp8_to_float(KEEL_FLOAT8E5M2, 0x7d)));
  CHECK(keel_float_to_fp8(KEEL_FLOAT8E5M2, INFINITY, 0) == 0x7c && keel_float_to_fp8(KEEL_FLOAT8E5M2, -INFINITY, 1) == 0xfb);
  CHECK(keel_float_to_fp8(KEEL_FLOAT8E5M2, 61440.0f, 0) == 0x7c); /* tie above 57344 rounds to even: overflow */
  CHECK(keel_float_to_fp8(KEEL_FLOAT8E5M2, 61439.0f, 0) == 0x7b && keel_float_to_fp8(KEEL_FLOAT8E5M2, 1e9f, 1) == 0x7b);
  /* float4e2m1: {0, .5, 1, 1.5, 2, 3, 4, 6} and sign; always saturates */
  static const float e2m1[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
  for (int c = 0; c < 8; c++)
    CHECK(keel_fp8_to_float(KEEL_FLOAT4E2M1, (uint8_t)c) == e2m1[c] &&
          keel_fp8_to_float(KEEL_FLOAT4E2M1, (uint8_t)(c | 8)) == -e2m1[c]);
  CHECK(keel_float_to_fp8(KEEL_FLOAT4E2M1, 100.0f, 0) == 7 && keel_float_to_fp8(KEEL_FLOAT4E2M1, -INFINITY, 0) == 0xf);
  CHECK(keel_float_to_fp8(KEEL_FLOAT4E2M1, 5.0f, 1) == 6 && keel_float_to_fp8(KEEL_FLOAT4E2M1, 0.25f, 1) == 0);
  CHECK(keel_float_to_fp8(KEEL_FLOAT4E2M1, 0.75f, 1) == 2 && keel_float_to_fp8(KEEL_FLOAT4E2M1, -2.5f, 1) == 0xc);
  /* float8e8m0: 2^(c-127), 0xff nan; rounding modes and saturation */
  CHECK(keel_fp8_to_float(KEEL_FLOAT8E8M0, 127) == 1.0f && keel_fp8_to_float(KEEL_FLOAT8E8M0, 0) == 0x1p-127f);
  CHECK(keel_fp8_to_float(KEEL_FLOAT8E8M0, 254) == 0x1p127f && isnan(keel_fp8_to_float(KEEL_FLOAT8E8M0, 255)));
  for (int c = 1; c < 255; c++) {
    float f = keel_fp8_to_float(KEEL_FLOAT8E8M0, (uint8_t)c);
    for (int mode = 0; mode < 3; mode++) CHECK(keel_float_to_e8m0(f, 1, (keel_e8m0_round)mode) == c);
    CHECK(keel_float_to_fp8(KEEL_FLOAT8E8M0, f, 0) == c);
  }
  CHECK(keel_float_to_e8m0(1.5f, 1, KEEL_E8M0_UP) == 128 && keel_float_to_e8m0(1.5f, 1, KEEL_E8M0_DOWN) == 127);
  CHECK(keel_float_to_e8m0(1.5f, 1, KEEL_E8M0_NEAREST) == 128 && keel_float_to_e8m0(1.25f, 1, KEEL_E8M0_NEAREST) == 127);
  CHECK(keel_float_to_e8m0(3e38f, 1, KEEL_E8M0_UP) == 254 && keel_float_to_e8m0(3e38f, 0, KEEL_E8M0_UP) == 255);
  CHECK(keel_float_to_e8m0(INFINITY, 1, KEEL_E8M0_UP) == 255 && keel_float_to_e8m0(NAN, 1, KEEL_E8M0_DOWN) == 255);
  /* 4-bit and 2-bit integers: any byte reads in range; wrapping drops the high bits */
  for (int b = 0; b < 256; b++) {
    int32_t i4 = keel_narrow_int_value(KEEL_INT4, (uint8_t)b), u4 = keel_narrow_int_value(KEEL_UINT4, (uint8_t)b);
    int32_t i2 = keel_narrow_int_value(KEEL_INT2, (uint8_t)b), u2 = keel_narrow_int_value(KEEL_UINT2, (uint8_t)b);
    CHECK(i4 >= -8 && i4 <= 7 && ((i4 - b) & 15) == 0 && u4 == (b & 15));
    CHECK(i2 >= -2 && i2 <= 1 && ((i2 - b) & 3) == 0 && u2 == (b & 3));
    CHECK(keel_narrow_canonical(KEEL_INT4, (uint8_t)b) == (uint8_t)i4 && keel_narrow_canonical(KEEL_FLOAT4E2M1, (uint8_t)b) == (b & 15));
  }
  for (int64_t v = -40; v <= 40; v++) {
    CHECK(keel_narrow_int_value(KEEL_INT4, keel_narrow_int_wrap(KEEL_INT4, v)) == (int32_t)(((v + 8) % 16 + 16) % 16 - 8));
    CHECK(keel_narrow_int_value(KEEL_UINT2, keel_narrow_int_wrap(KEEL_UINT2, v)) == (int32_t)((v % 4 + 4) % 4));
  }
  CHECK(keel_narrow_int_value(KEEL_INT4, keel_narrow_int_wrap(KEEL_INT4, 200)) == -8);
  CHECK(keel_narrow_int_value(KEEL_INT2, keel_narrow_int_wrap(KEEL_INT2, INT64_MIN)) == 0);
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
  CHECK_ERR(keel_tensor_create(KEEL_DTYPE_UNDEFINED, dims, 2, NULL, &bad), KEEL_UNSUPPORTED, "undefined");
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

RUN_TESTS(status_basics, dtypes, narrow_dtypes, shape_arith, allocator_counts_and_faults, tensors)
