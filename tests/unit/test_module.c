/* The runtime module's contract: output modes, ownership, shape changes and the plan cache, shape-feeding
 * inputs, aliasing, bound outputs, the output allocator, async calls, the simulated device, errors and
 * fault injection. References come from keel_engine_run (checked against the ONNX node tests elsewhere). */
#include <math.h>

#include "core/tensor_internal.h"
#include "test_main.h"


static keel_tensor *input(const int64_t *dims, int ndim, float phase) {
  return test_wave_input(dims, ndim, 0.01f, phase, 3.0f);
}

static void poison(keel_tensor *t) {
  float *p = keel_tensor_data(t);
  for (int64_t i = 0; i < keel_tensor_numel(t); i++) p[i] = NAN;
}

/* exact equality: the module must compute exactly what the engine computes */
static bool same(keel_tensor *a, keel_tensor *b) {
  if (!a || !b || keel_tensor_dtype(a) != keel_tensor_dtype(b) || keel_tensor_ndim(a) != keel_tensor_ndim(b)) return false;
  for (int d = 0; d < keel_tensor_ndim(a); d++)
    if (keel_tensor_dims(a)[d] != keel_tensor_dims(b)[d]) return false;
  return memcmp(keel_tensor_data(a), keel_tensor_data(b), keel_tensor_nbytes(a)) == 0;
}

static keel_tensor *reference(keel_engine *e, keel_tensor *x) {
  keel_tensor *y = NULL;
  CHECK_OK(keel_engine_run(e, &x, 1, &y, 1));
  return y;
}

static int g_async = -1; /* the module default; the *_on_cpu_stream test reruns everything with 1 */

static keel_module *module(keel_engine *e, keel_output_mode mode, keel_device_kind dev, keel_allocator *a) {
  keel_module_options o;
  keel_module_options_init(&o);
  o.async = g_async;
  o.output_mode = mode;
  o.device = dev;
  o.allocator = a;
  o.sim_alloc_delay_us = 1; /* keep tests fast */
  keel_module *m = NULL;
  CHECK_OK(keel_module_create(e, &o, &m));
  return m;
}

TEST(preallocated_never_reuses_held_outputs) {
  TEST_BEGIN("preallocated_never_reuses_held_outputs");
  keel_engine *e = test_load("engine/elementwise_chain.onnx");
  keel_module *m = module(e, KEEL_OUTPUTS_PREALLOCATED, KEEL_DEVICE_CPU, NULL);
  if (!m) return;
  int64_t dims[] = {64, 1024};
  enum { N = 6 };
  keel_tensor *held[N] = {0}, *xs[N] = {0};
  for (int i = 0; i < N; i++) {
    xs[i] = input(dims, 2, (float)i);
    CHECK_OK(keel_module_forward(m, &xs[i], 1, &held[i], 1));
  }
  /* every output is distinct storage and still holds its own call's result */
  for (int i = 0; i < N; i++) {
    for (int j = 0; j < i; j++) CHECK(held[i] && held[j] && keel_tensor_storage_id(held[i]) != keel_tensor_storage_id(held[j]));
    keel_tensor *ref = reference(e, xs[i]);
    CHECK(same(held[i], ref));
    keel_tensor_release(ref);
  }
  for (int i = 0; i < N; i++) keel_tensor_release(held[i]);
  /* steady state with the caller releasing each output: zero system allocations per call */
  keel_module_stats st;
  for (int i = 0; i < 3; i++) {
    keel_tensor *y = NULL;
    CHECK_OK(keel_module_forward(m, &xs[0], 1, &y, 1));
    keel_tensor_release(y);
  }
  for (int i = 0; i < 10; i++) {
    keel_tensor *y = NULL;
    CHECK_OK(keel_module_forward(m, &xs[i % N], 1, &y, 1));
    keel_module_get_last_call_stats(m, &st);
    CHECK(st.system_allocations == 0);
    /* with a stream the buffers were prepared during the previous call; without, taken from the pool now */
    if (g_async == 1) CHECK(st.prepared_used == 1);
    else CHECK(st.pool_hits == 1 && st.pool_misses == 0);
    keel_tensor *ref = reference(e, xs[i % N]);
    CHECK(same(y, ref));
    keel_tensor_release(ref);
    keel_tensor_release(y);
  }
  for (int i = 0; i < N; i++) keel_tensor_release(xs[i]);
  keel_module_destroy(m);
  keel_engine_release(e);
}

TEST(persistent_returns_same_storage) {
  TEST_BEGIN("persistent_returns_same_storage");
  keel_engine *e = test_load("engine/elementwise_chain.onnx");
  keel_module *m = module(e, KEEL_OUTPUTS_PERSISTENT, KEEL_DEVICE_CPU, NULL);
  if (!m) return;
  int64_t dims[] = {64, 1024};
  keel_tensor *x = input(dims, 2, 0.5f), *y1 = NULL, *y2 = NULL;
  CHECK_OK(keel_module_forward(m, &x, 1, &y1, 1));
  const void *id = y1 ? keel_tensor_storage_id(y1) : NULL;
  keel_tensor_release(y1);
  keel_module_stats st;
  for (int i = 0; i < 5; i++) {
    CHECK_OK(keel_module_forward(m, &x, 1, &y2, 1));
    CHECK(y2 && keel_tensor_storage_id(y2) == id);
    keel_module_get_last_call_stats(m, &st);
    CHECK(st.system_allocations == 0 && st.pool_misses == 0);
    keel_tensor_release(y2);
  }
  keel_tensor_release(x);
  keel_module_destroy(m);
  keel_engine_release(e);
}

TEST(fresh_allocates_every_call) {
  TEST_BEGIN("fresh_allocates_every_call");
  keel_engine *e = test_load("engine/elementwise_chain.onnx");
  keel_module *m = module(e, KEEL_OUTPUTS_FRESH, KEEL_DEVICE_CPU, NULL);
  if (!m) return;
  int64_t dims[] = {64, 1024};
  keel_tensor *x = input(dims, 2, 0.f);
  for (int i = 0; i < 4; i++) {
    keel_tensor *y = NULL;
    CHECK_OK(keel_module_forward(m, &x, 1, &y, 1));
    keel_module_stats st;
    keel_module_get_last_call_stats(m, &st);
    if (i > 0) CHECK(st.system_allocations == 1); /* one per output (the arena is kept) */
    keel_tensor_release(y);
  }
  keel_tensor_release(x);
  keel_module_destroy(m);
  keel_engine_release(e);
}

TEST(shape_changes_replan_and_cache) {
  TEST_BEGIN("shape_changes_replan_and_cache");
  keel_engine *e = test_load("engine/conv_bn_relu.onnx");
  for (int mode = 0; mode < 3; mode++) {
    keel_module *m = module(e, (keel_output_mode)mode, KEEL_DEVICE_CPU, NULL);
    if (!m) return;
    int64_t a[] = {1, 3, 8, 8}, b[] = {3, 3, 8, 8};
    keel_tensor *xa = input(a, 4, 0.f), *xb = input(b, 4, 1.f);
    keel_tensor *ra = reference(e, xa), *rb = reference(e, xb);
    for (int i = 0; i < 6; i++) {
      keel_tensor *x = i % 2 ? xb : xa, *y = NULL;
      CHECK_OK(keel_module_forward(m, &x, 1, &y, 1));
      CHECK(same(y, i % 2 ? rb : ra)); /* never a buffer of a stale shape */
      keel_tensor_release(y);
    }
    keel_module_stats st;
    keel_module_get_stats(m, &st);
    CHECK(st.shape_changes == 5);
    CHECK(st.plan_cache_misses == 2 && st.plan_cache_hits == 4);
    keel_tensor_release(xa);
    keel_tensor_release(xb);
    keel_tensor_release(ra);
    keel_tensor_release(rb);
    keel_module_destroy(m);
  }
  keel_engine_release(e);
}

TEST(shape_feeding_values_are_in_the_key) {
  TEST_BEGIN("shape_feeding_values_are_in_the_key");
  keel_engine *e = test_load("engine/reshape_by_input.onnx");
  keel_module *m = module(e, KEEL_OUTPUTS_PERSISTENT, KEEL_DEVICE_CPU, NULL);
  if (!m) return;
  int64_t xd[] = {2, 6}, sd[] = {2};
  int64_t targets[3][2] = {{3, 4}, {4, 3}, {3, 4}};
  keel_tensor *x = input(xd, 2, 0.f);
  for (int k = 0; k < 3; k++) {
    keel_tensor *s = NULL, *y = NULL;
    CHECK_OK(keel_tensor_from_data(KEEL_INT64, sd, 1, targets[k], &s));
    keel_tensor *ins[2] = {x, s};
    CHECK_OK(keel_module_forward(m, ins, 2, &y, 1));
    /* same input shapes every call: only the shape tensor's values change the output shape */
    CHECK(y && keel_tensor_dims(y)[0] == targets[k][0] && keel_tensor_dims(y)[1] == targets[k][1]);
    keel_tensor_release(s);
    keel_tensor_release(y);
  }
  keel_module_stats st;
  keel_module_get_stats(m, &st);
  CHECK(st.shape_changes == 2 && st.plan_cache_hits == 1);
  keel_tensor_release(x);
  keel_module_destroy(m);
  keel_engine_release(e);
}

TEST(outputs_never_alias_inputs) {
  TEST_BEGIN("outputs_never_alias_inputs");
  keel_engine *e = test_load("engine/elementwise_chain.onnx");
  for (int mode = 0; mode < 3; mode++) {
    keel_module *m = module(e, (keel_output_mode)mode, KEEL_DEVICE_CPU, NULL);
    if (!m) return;
    int64_t dims[] = {64, 1024};
    keel_tensor *x = input(dims, 2, 0.f), *y = NULL;
    CHECK_OK(keel_module_forward(m, &x, 1, &y, 1));
    /* feed the output back in (a recurrent loop): the module must not write over its own input */
    for (int i = 0; i < 3; i++) {
      keel_tensor *ref = reference(e, y), *y2 = NULL;
      CHECK_OK(keel_module_forward(m, &y, 1, &y2, 1));
      CHECK(y2 && keel_tensor_storage_id(y2) != keel_tensor_storage_id(y));
      CHECK(same(y2, ref));
      keel_tensor_release(ref);
      keel_tensor_release(y);
      y = y2;
    }
    keel_tensor_release(y);
    keel_tensor_release(x);
    keel_module_destroy(m);
  }
  keel_engine_release(e);
}

TEST(bound_outputs) {
  TEST_BEGIN("bound_outputs");
  keel_engine *e = test_load("engine/elementwise_chain.onnx");
  keel_module *m = module(e, KEEL_OUTPUTS_PREALLOCATED, KEEL_DEVICE_CPU, NULL);
  if (!m) return;
  int64_t dims[] = {64, 1024}, bad[] = {64, 1000};
  keel_tensor *x = input(dims, 2, 0.f), *buf = input(dims, 2, 0.f), *wrong = input(bad, 2, 0.f), *y = NULL;
  poison(buf);
  CHECK_OK(keel_module_bind_output(m, 0, buf));
  CHECK_OK(keel_module_forward(m, &x, 1, &y, 1));
  CHECK(y == buf);
  keel_tensor *ref = reference(e, x);
  CHECK(same(buf, ref)); /* every poisoned element overwritten with the right value */
  keel_tensor_release(y);
  keel_module_stats st;
  keel_module_get_last_call_stats(m, &st);
  CHECK(st.pool_misses == 0 && st.pool_hits == 0);
  CHECK_OK(keel_module_bind_output(m, 0, wrong));
  CHECK_ERR(keel_module_forward(m, &x, 1, &y, 1), KEEL_SHAPE_MISMATCH, "output 0 ('y') is bound to a float32[64,1000] tensor");
  CHECK(y == NULL);
  CHECK_OK(keel_module_bind_output(m, 0, x));
  CHECK_ERR(keel_module_forward(m, &x, 1, &y, 1), KEEL_INVALID_ARGUMENT, "memory of an input");
  CHECK_ERR(keel_module_bind_output(m, 3, buf), KEEL_INVALID_ARGUMENT, "out of range");
  CHECK_OK(keel_module_bind_output(m, 0, NULL));
  CHECK_OK(keel_module_forward(m, &x, 1, &y, 1)); /* usable again, with pooled outputs */
  CHECK(same(y, ref));
  keel_tensor_release(y);
  keel_tensor_release(ref);
  keel_tensor_release(x);
  keel_tensor_release(buf);
  keel_tensor_release(wrong);
  keel_module_destroy(m);
  keel_engine_release(e);
}

typedef struct {
  void *mem;
  size_t size;
  int reallocs, notified;
  int64_t dims[8];
  int ndim;
} user_alloc;

static void *ua_realloc(void *user, const char *name, void *current, size_t size, size_t align) {
  user_alloc *u = user;
  (void)name;
  (void)current;
  (void)align;
  if (size > u->size) {
    free(u->mem);
    u->mem = aligned_alloc(64, (size + 63) / 64 * 64);
    u->size = size;
    u->reallocs++;
  }
  return u->mem;
}

static void ua_notify(void *user, const char *name, const int64_t *dims, int ndim) {
  user_alloc *u = user;
  (void)name;
  u->notified++;
  u->ndim = ndim;
  memcpy(u->dims, dims, sizeof(int64_t) * (size_t)ndim);
}

TEST(output_allocator_callback) {
  TEST_BEGIN("output_allocator_callback");
  keel_engine *e = test_load("engine/conv_bn_relu.onnx");
  keel_module *m = module(e, KEEL_OUTPUTS_FRESH, KEEL_DEVICE_CPU, NULL);
  if (!m) return;
  user_alloc u = {0};
  keel_output_allocator oa = {ua_realloc, ua_notify, &u};
  CHECK_OK(keel_module_set_output_allocator(m, 0, &oa));
  int64_t a[] = {1, 3, 8, 8}, b[] = {2, 3, 8, 8};
  for (int i = 0; i < 3; i++) {
    keel_tensor *x = input(i == 1 ? b : a, 4, (float)i), *y = NULL;
    CHECK_OK(keel_module_forward(m, &x, 1, &y, 1));
    CHECK(y && keel_tensor_data(y) == u.mem);
    CHECK(u.ndim == 4 && u.dims[0] == (i == 1 ? 2 : 1) && u.dims[1] == 4);
    keel_tensor *ref = reference(e, x);
    CHECK(same(y, ref));
    keel_tensor_release(ref);
    keel_tensor_release(y);
    keel_tensor_release(x);
  }
  CHECK(u.notified == 3 && u.reallocs == 2); /* grew once for batch 2, reused for batch 1 */
  keel_module_destroy(m);
  free(u.mem);
  keel_engine_release(e);
}

TEST(async_calls_in_flight) {
  TEST_BEGIN("async_calls_in_flight");
  keel_engine *e = test_load("engine/elementwise_chain.onnx");
  for (int dev = 0; dev < 2; dev++) {
    keel_module *m = module(e, KEEL_OUTPUTS_PREALLOCATED, (keel_device_kind)dev, NULL);
    if (!m) return;
    int64_t dims[] = {64, 1024};
    enum { K = 4 };
    keel_tensor *xs[K], *ys[K] = {0};
    keel_call *calls[K];
    for (int i = 0; i < K; i++) {
      xs[i] = input(dims, 2, (float)i * 0.3f);
      CHECK_OK(keel_module_submit(m, &xs[i], 1, &calls[i]));
    }
    keel_call *extra = NULL;
    CHECK_ERR(keel_module_submit(m, &xs[0], 1, &extra), KEEL_INVALID_ARGUMENT, "in flight");
    for (int i = 0; i < K; i++) {
      CHECK_OK(keel_call_wait(calls[i], &ys[i], 1));
      keel_tensor *ref = reference(e, xs[i]);
      CHECK(same(ys[i], ref));
      CHECK(keel_tensor_device(ys[i]) == (keel_device_kind)dev);
      keel_tensor_release(ref);
    }
    keel_tensor *again = NULL;
    CHECK_ERR(keel_call_wait(calls[K - 1], &again, 1), KEEL_INVALID_ARGUMENT, "already waited");
    CHECK(again == NULL);
    for (int i = 0; i < K; i++) {
      keel_tensor_release(xs[i]);
      keel_tensor_release(ys[i]);
    }
    keel_module_destroy(m);
  }
  keel_engine_release(e);
}

TEST(sim_device_counts_device_allocations) {
  TEST_BEGIN("sim_device_counts_device_allocations");
  keel_engine *e = test_load("engine/conv_bn_relu.onnx");
  for (int mode = 0; mode < 3; mode++) {
    keel_module *m = module(e, (keel_output_mode)mode, KEEL_DEVICE_SIM, NULL);
    if (!m) return;
    int64_t dims[] = {2, 3, 8, 8};
    keel_tensor *x = input(dims, 4, 0.f), *ref = reference(e, x);
    keel_module_stats st;
    for (int i = 0; i < 5; i++) {
      keel_tensor *y = NULL;
      CHECK_OK(keel_module_forward(m, &x, 1, &y, 1));
      CHECK(same(y, ref) && keel_tensor_device(y) == KEEL_DEVICE_SIM);
      keel_tensor_release(y);
      keel_module_get_last_call_stats(m, &st);
      if (i >= 2) CHECK(st.system_allocations == (mode == KEEL_OUTPUTS_FRESH ? 1u : 0u));
    }
    keel_tensor_release(x);
    keel_tensor_release(ref);
    keel_module_destroy(m);
  }
  keel_engine_release(e);
}

TEST(errors_leave_module_usable) {
  TEST_BEGIN("errors_leave_module_usable");
  keel_engine *e = test_load("engine/conv_bn_relu.onnx");
  keel_module *m = module(e, KEEL_OUTPUTS_PREALLOCATED, KEEL_DEVICE_CPU, NULL);
  if (!m) return;
  int64_t good[] = {1, 3, 8, 8}, bad[] = {1, 2, 8, 8};
  keel_tensor *xg = input(good, 4, 0.f), *xb = input(bad, 4, 0.f), *y = NULL;
  keel_tensor *ref = reference(e, xg);
  CHECK_OK(keel_module_forward(m, &xg, 1, &y, 1));
  keel_tensor_release(y);
  CHECK_ERR(keel_module_forward(m, &xb, 1, &y, 1), KEEL_SHAPE_MISMATCH, "input 'x' has shape [1,2,8,8]");
  CHECK(y == NULL);
  keel_tensor *xi = NULL;
  CHECK_OK(keel_tensor_create(KEEL_INT32, good, 4, NULL, &xi));
  CHECK_ERR(keel_module_forward(m, &xi, 1, &y, 1), KEEL_SHAPE_MISMATCH, "dtype int32");
  keel_tensor *two[2] = {xg, xg};
  CHECK_ERR(keel_module_forward(m, two, 2, &y, 1), KEEL_INVALID_ARGUMENT, "has 1 inputs, got 2");
  CHECK_OK(keel_module_forward(m, &xg, 1, &y, 1));
  CHECK(same(y, ref));
  keel_tensor_release(y);
  keel_module_stats st;
  keel_module_get_stats(m, &st);
  /* the count mismatch is refused before the call starts; the other two failed inside it */
  CHECK(st.failed_calls == 2 && st.calls == 2);
  keel_tensor_release(xi);
  keel_tensor_release(xg);
  keel_tensor_release(xb);
  keel_tensor_release(ref);
  keel_module_destroy(m);
  keel_engine_release(e);
}

/* Fail each allocation site in turn: every call returns OK or OUT_OF_MEMORY, the next call succeeds with the
 * right answer, and after destroy nothing is left allocated (LeakSanitizer checks malloc'd memory too). */
TEST(fault_injection_sweep) {
  TEST_BEGIN("fault_injection_sweep");
  keel_engine *e = test_load("engine/conv_bn_relu.onnx");
  int64_t a[] = {1, 3, 8, 8}, b[] = {2, 3, 8, 8};
  keel_tensor *xa = input(a, 4, 0.f), *xb = input(b, 4, 1.f);
  keel_tensor *ra = reference(e, xa), *rb = reference(e, xb);
  for (int mode = 0; mode < 3; mode++) {
    /* k = 0 is a clean run that counts the allocation sites; then each one fails in turn */
    uint64_t sites = 0;
    for (uint64_t k = 0; k == 0 || k <= sites; k++) {
      keel_allocator *al = keel_allocator_create(NULL, NULL);
      keel_module *m = module(e, (keel_output_mode)mode, KEEL_DEVICE_CPU, al);
      if (!m) return;
      keel_allocator_fail_after(al, k, 0);
      keel_alloc_stats before;
      keel_allocator_get_stats(al, &before);
      int failures = 0;
      for (int i = 0; i < 4; i++) {
        keel_tensor *x = i % 2 ? xb : xa, *y = NULL;
        keel_status *s = keel_module_forward(m, &x, 1, &y, 1);
        if (s) {
          CHECK(keel_status_code(s) == KEEL_OUT_OF_MEMORY);
          CHECK(y == NULL);
          keel_status_free(s);
          failures++;
        } else {
          CHECK(same(y, i % 2 ? rb : ra));
          keel_tensor_release(y);
        }
      }
      CHECK(failures <= (k ? 1 : 0));
      if (k == 0) {
        keel_alloc_stats after;
        keel_allocator_get_stats(al, &after);
        sites = after.allocations - before.allocations;
        CHECK(sites >= 3);
      } else {
        /* the k-th allocation happened inside one of the four calls; in PREALLOCATED a failed preparation of
         * the next call's buffers is not an error (that call allocates for itself) */
        CHECK(failures == 1 || (mode == KEEL_OUTPUTS_PREALLOCATED && failures == 0));
      }
      keel_allocator_fail_after(al, 0, 0);
      keel_tensor *y = NULL;
      CHECK_OK(keel_module_forward(m, &xa, 1, &y, 1));
      CHECK(same(y, ra));
      keel_tensor_release(y);
      keel_module_destroy(m);
      keel_alloc_stats st;
      keel_allocator_get_stats(al, &st);
      CHECK(st.bytes_in_use == 0);
      keel_allocator_destroy(al);
    }
  }
  keel_tensor_release(xa);
  keel_tensor_release(xb);
  keel_tensor_release(ra);
  keel_tensor_release(rb);
  keel_engine_release(e);
}

TEST(outputs_outlive_module) {
  TEST_BEGIN("outputs_outlive_module");
  keel_engine *e = test_load("engine/elementwise_chain.onnx");
  for (int mode = 0; mode < 3; mode++) {
    keel_module *m = module(e, (keel_output_mode)mode, KEEL_DEVICE_CPU, NULL);
    if (!m) return;
    int64_t dims[] = {64, 1024};
    keel_tensor *x = input(dims, 2, 0.f), *y = NULL, *ref = reference(e, x);
    CHECK_OK(keel_module_forward(m, &x, 1, &y, 1));
    keel_module_destroy(m); /* the caller still holds y: it stays valid */
    CHECK(same(y, ref));
    keel_tensor_release(y); /* the last reference frees the module's remaining memory */
    keel_tensor_release(x);
    keel_tensor_release(ref);
  }
  keel_engine_release(e);
  /* and outputs of data-dependent shape (the interpreter's) */
  e = test_load("engine/nonzero.onnx");
  float vals[6] = {1, -1, 2, 0, 3, -4};
  int64_t d6[] = {6};
  for (int mode = 0; e && mode < 3; mode++) {
    keel_module *m = module(e, (keel_output_mode)mode, KEEL_DEVICE_CPU, NULL);
    if (!m) return;
    keel_tensor *x = NULL, *y = NULL;
    CHECK_OK(keel_tensor_from_data(KEEL_FLOAT32, d6, 1, vals, &x));
    CHECK_OK(keel_module_forward(m, &x, 1, &y, 1));
    keel_module_destroy(m);
    const float *p = y ? keel_tensor_data(y) : NULL;
    CHECK(p && keel_tensor_dims(y)[1] == 3 && p[0] == 0 && p[1] == 4 && p[2] == 8);
    keel_tensor_release(y);
    keel_tensor_release(x);
  }
  keel_engine_release(e);
}

TEST(mode_switch_and_trim) {
  TEST_BEGIN("mode_switch_and_trim");
  keel_engine *e = test_load("engine/elementwise_chain.onnx");
  keel_module *m = module(e, KEEL_OUTPUTS_PREALLOCATED, KEEL_DEVICE_CPU, NULL);
  if (!m) return;
  int64_t dims[] = {64, 1024};
  keel_tensor *x = input(dims, 2, 0.f), *y = NULL;
  for (int i = 0; i < 3; i++) {
    CHECK_OK(keel_module_forward(m, &x, 1, &y, 1));
    keel_tensor_release(y);
  }
  keel_module_stats st;
  keel_module_get_stats(m, &st);
  CHECK(st.pool_bytes_idle > 0);
  CHECK_OK(keel_module_set_output_mode(m, KEEL_OUTPUTS_PERSISTENT));
  CHECK(keel_module_output_mode(m) == KEEL_OUTPUTS_PERSISTENT);
  CHECK_OK(keel_module_forward(m, &x, 1, &y, 1));
  keel_module_get_last_call_stats(m, &st);
  CHECK(st.system_allocations == 0); /* served from the pool the previous mode filled */
  keel_tensor_release(y);
  keel_module_trim(m);
  keel_module_get_stats(m, &st);
  CHECK(st.pool_bytes_idle == 0);
  CHECK_ERR(keel_module_set_output_mode(m, (keel_output_mode)7), KEEL_INVALID_ARGUMENT, "unknown output mode");
  keel_tensor_release(x);
  keel_module_destroy(m);
  keel_engine_release(e);
}

/* keel_module_write_profile: per-node times of the current plan, only when asked for at creation. */
TEST(profile_per_node) {
  TEST_BEGIN("profile_per_node");
  keel_engine *e = test_load("engine/elementwise_chain.onnx");
  if (!e) return;
  keel_module_options o;
  keel_module_options_init(&o);
  keel_module *plain = NULL, *m = NULL;
  CHECK_OK(keel_module_create(e, &o, &plain));
  o.profile = 1;
  CHECK_OK(keel_module_create(e, &o, &m));
  if (!plain || !m) return;
  FILE *f = tmpfile();
  CHECK_ERR(keel_module_write_profile(plain, f, 0), KEEL_INVALID_ARGUMENT, "without options.profile");
  CHECK_ERR(keel_module_write_profile(m, f, 0), KEEL_INVALID_ARGUMENT, "no call has run");
  int64_t dims[] = {64, 1024};
  keel_tensor *x = input(dims, 2, 0.f), *y = NULL;
  for (int i = 0; i < 3; i++) {
    CHECK_OK(keel_module_forward(m, &x, 1, &y, 1));
    keel_tensor_release(y);
  }
  CHECK_OK(keel_module_write_profile(m, f, 0));
  char text[8192] = "";
  rewind(f);
  size_t got = fread(text, 1, sizeof text - 1, f);
  text[got] = 0;
  fclose(f);
  CHECK(strstr(text, "(mean over 3 calls)") != NULL);
  CHECK(strstr(text, "by op type:") != NULL);
  CHECK(strstr(text, "[64,1024]") != NULL); /* output shapes are printed */
  /* every step of the plan appears once in the table: count the rank column's rows */
  int steps = 0, rows = 0;
  CHECK(sscanf(text, "profile: %d steps", &steps) == 1);
  for (const char *l = strchr(text, '\n'); l && *++l;) {
    int r;
    if (sscanf(l, "%d ", &r) == 1 && r == rows + 1) rows++;
    l = strchr(l, '\n');
    if (!l) break;
  }
  CHECK(steps > 1);
  CHECK(rows == steps);
  keel_tensor_release(x);
  keel_module_destroy(plain);
  keel_module_destroy(m);
  keel_engine_release(e);
}

/* Data-dependent shapes and control flow run in the interpreter, in every mode, with callbacks too. */
TEST(interpreter_models) {
  TEST_BEGIN("interpreter_models");
  keel_engine *e = test_load("engine/nonzero.onnx"), *eif = test_load("engine/if_sign.onnx");
  if (!e || !eif) return;
  float vals[2][6] = {{1, -1, 2, 0, 3, -4}, {-1, -2, 5, 0, 0, 0}};
  int64_t d6[] = {6};
  for (int mode = 0; mode < 3; mode++) {
    keel_module *m = module(e, (keel_output_mode)mode, KEEL_DEVICE_CPU, NULL);
    if (!m) return;
    for (int k = 0; k < 2; k++) {
      keel_tensor *x = NULL, *y = NULL;
      CHECK_OK(keel_tensor_from_data(KEEL_FLOAT32, d6, 1, vals[k], &x));
      CHECK_OK(keel_module_forward(m, &x, 1, &y, 1));
      /* NonZero of x > 0, times 2 */
      int64_t expect_n = k == 0 ? 3 : 1;
      CHECK(y && keel_tensor_ndim(y) == 2 && keel_tensor_dims(y)[0] == 1 && keel_tensor_dims(y)[1] == expect_n);
      const float *p = y ? keel_tensor_data(y) : NULL;
      if (p && k == 0) CHECK(p[0] == 0 && p[1] == 4 && p[2] == 8);
      if (p && k == 1) CHECK(p[0] == 4);
      keel_tensor_release(x);
      keel_tensor_release(y);
    }
    keel_module_destroy(m);
  }
  /* the output allocator learns the data-dependent shape */
  keel_module *m = module(e, KEEL_OUTPUTS_FRESH, KEEL_DEVICE_CPU, NULL);
  user_alloc u = {0};
  keel_output_allocator oa = {ua_realloc, ua_notify, &u};
  CHECK_OK(keel_module_set_output_allocator(m, 0, &oa));
  keel_tensor *x = NULL, *y = NULL;
  CHECK_OK(keel_tensor_from_data(KEEL_FLOAT32, d6, 1, vals[0], &x));
  CHECK_OK(keel_module_forward(m, &x, 1, &y, 1));
  CHECK(y && keel_tensor_data(y) == u.mem && u.notified == 1 && u.ndim == 2 && u.dims[1] == 3);
  CHECK(u.mem && ((float *)u.mem)[2] == 8);
  keel_tensor_release(y);
  keel_tensor_release(x);
  keel_module_destroy(m);
  free(u.mem);
  /* If with outer-scope reads */
  m = module(eif, KEEL_OUTPUTS_PREALLOCATED, KEEL_DEVICE_CPU, NULL);
  float a[4] = {1, 2, 3, -1}, b[4] = {-1, -2, 1, 0};
  int64_t d4[] = {4};
  for (int k = 0; k < 2; k++) {
    x = NULL;
    y = NULL;
    CHECK_OK(keel_tensor_from_data(KEEL_FLOAT32, d4, 1, k ? b : a, &x));
    CHECK_OK(keel_module_forward(m, &x, 1, &y, 1));
    const float *p = y ? keel_tensor_data(y) : NULL;
    for (int i = 0; p && i < 4; i++) CHECK(p[i] == (k ? -b[i] : 2 * a[i]));
    keel_tensor_release(x);
    keel_tensor_release(y);
  }
  keel_module_destroy(m);
  keel_engine_release(e);
  keel_engine_release(eif);
}

/* The same contract with the CPU computing on the module's stream thread (async = 1). */
TEST(everything_again_on_cpu_stream) {
  g_async = 1;
  preallocated_never_reuses_held_outputs();
  persistent_returns_same_storage();
  fresh_allocates_every_call();
  shape_changes_replan_and_cache();
  shape_feeding_values_are_in_the_key();
  outputs_never_alias_inputs();
  bound_outputs();
  output_allocator_callback();
  async_calls_in_flight();
  errors_leave_module_usable();
  fault_injection_sweep();
  outputs_outlive_module();
  mode_switch_and_trim();
  interpreter_models();
  g_async = -1;
}

RUN_TESTS(interpreter_models, preallocated_never_reuses_held_outputs, persistent_returns_same_storage, fresh_allocates_every_call,
          shape_changes_replan_and_cache, shape_feeding_values_are_in_the_key, outputs_never_alias_inputs,
          bound_outputs, output_allocator_callback, async_calls_in_flight, sim_device_counts_device_allocations,
          errors_leave_module_usable, fault_injection_sweep, outputs_outlive_module, mode_switch_and_trim,
          profile_per_node, everything_again_on_cpu_stream)
