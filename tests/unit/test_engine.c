/* Engine: optimization passes (fusions, plan-time folding), the memory planner, shape-feeding inputs,
 * allocation accounting and input validation, on small generated models (tests/data/engine). */
#include <math.h>

#include "runtime/engine_internal.h"
#include "test_main.h"

static keel_engine *load(const char *path, int optimize, keel_allocator *alloc) {
  keel_engine_options o;
  keel_engine_options_init(&o);
  o.optimize = optimize;
  o.allocator = alloc;
  keel_engine *e = NULL;
  CHECK_OK(keel_engine_load_file(path, &o, &e));
  return e;
}

static keel_tensor *make_input(const int64_t *dims, int ndim, float scale) {
  keel_tensor *t = NULL;
  CHECK_OK(keel_tensor_create(KEEL_FLOAT32, dims, ndim, NULL, &t));
  float *p = keel_tensor_data(t);
  for (int64_t i = 0; i < keel_tensor_numel(t); i++) p[i] = scale * sinf((float)i * 0.37f);
  return t;
}

static float max_diff(keel_tensor *a, keel_tensor *b) {
  if (keel_tensor_numel(a) != keel_tensor_numel(b)) return INFINITY;
  const float *x = keel_tensor_data(a), *y = keel_tensor_data(b);
  float m = 0;
  for (int64_t i = 0; i < keel_tensor_numel(a); i++) m = fmaxf(m, fabsf(x[i] - y[i]));
  return m;
}

TEST(conv_bn_relu_fuses_and_matches) {
  TEST_BEGIN("conv_bn_relu_fuses_and_matches");
  keel_engine *fused = load("engine/conv_bn_relu.onnx", 1, NULL), *plain = load("engine/conv_bn_relu.onnx", 0, NULL);
  if (!fused || !plain) return;
  CHECK(fused->graph->n_nodes == 1 && plain->graph->n_nodes == 3);
  CHECK(fused->graph->nodes[0].act == KEEL_ACT_RELU);
  int64_t dims[] = {2, 3, 8, 8};
  keel_tensor *x = make_input(dims, 4, 2.0f), *y1 = NULL, *y2 = NULL;
  CHECK_OK(keel_engine_run(fused, &x, 1, &y1, 1));
  CHECK_OK(keel_engine_run(plain, &x, 1, &y2, 1));
  if (y1 && y2) {
    CHECK(keel_tensor_ndim(y1) == 4 && keel_tensor_dims(y1)[0] == 2 && keel_tensor_dims(y1)[1] == 4);
    CHECK(max_diff(y1, y2) < 1e-4f);
    /* Relu really applied: no negatives, some zeros */
    const float *p = keel_tensor_data(y1);
    int zeros = 0, neg = 0;
    for (int64_t i = 0; i < keel_tensor_numel(y1); i++) zeros += p[i] == 0, neg += p[i] < 0;
    CHECK(neg == 0 && zeros > 0);
  }
  keel_tensor_release(x);
  keel_tensor_release(y1);
  keel_tensor_release(y2);
  keel_engine_release(fused);
  keel_engine_release(plain);
}

TEST(matmul_bias_relu_against_reference) {
  TEST_BEGIN("matmul_bias_relu_against_reference");
  keel_engine *e = load("engine/matmul_bias_relu.onnx", 1, NULL);
  if (!e) return;
  CHECK(e->graph->n_nodes == 1 && e->graph->nodes[0].n_inputs == 3 && e->graph->nodes[0].act == KEEL_ACT_RELU);
  /* reference: y = relu(x @ W + b) with the initializers read back from the unoptimized engine */
  keel_engine *raw = load("engine/matmul_bias_relu.onnx", 0, NULL);
  if (!raw) {
    keel_engine_release(e);
    return;
  }
  const float *W = NULL, *b = NULL;
  for (int v = 0; v < raw->graph->n_values; v++) {
    if (!strcmp(raw->graph->values[v].name, "Wm")) W = keel_tensor_data(raw->graph->values[v].constant);
    if (!strcmp(raw->graph->values[v].name, "bm")) b = keel_tensor_data(raw->graph->values[v].constant);
  }
  CHECK(W && b);
  int64_t dims[] = {5, 16};
  keel_tensor *x = make_input(dims, 2, 1.0f), *y = NULL;
  CHECK_OK(keel_engine_run(e, &x, 1, &y, 1));
  if (y && W && b) {
    const float *xp = keel_tensor_data(x), *yp = keel_tensor_data(y);
    float worst = 0;
    for (int i = 0; i < 5; i++)
      for (int j = 0; j < 8; j++) {
        float acc = b[j];
        for (int k = 0; k < 16; k++) acc += xp[i * 16 + k] * W[k * 8 + j];
        worst = fmaxf(worst, fabsf(fmaxf(acc, 0.f) - yp[i * 8 + j]));
      }
    CHECK(worst < 1e-4f);
  }
  keel_tensor_release(x);
  keel_tensor_release(y);
  keel_engine_release(e);
  keel_engine_release(raw);
}

TEST(elementwise_chain_runs_in_place) {
  TEST_BEGIN("elementwise_chain_runs_in_place");
  keel_engine *e = load("engine/elementwise_chain.onnx", 1, NULL);
  if (!e) return;
  keel_view in = {KEEL_FLOAT32, 2, {64, 1024}, NULL};
  keel_plan *p = NULL;
  CHECK_OK(keel_engine_plan(e, &in, 1, &p, NULL));
  if (p) {
    const size_t one = 64 * 1024 * 4;
    CHECK(p->n_steps == 8);
    CHECK(p->intermediate_bytes == 7 * one);
    CHECK(p->workspace_offset == one); /* all seven intermediates share one buffer */
    keel_plan_destroy(p);
  }
  keel_engine_release(e);
}

TEST(shape_chains_fold_while_planning) {
  TEST_BEGIN("shape_chains_fold_while_planning");
  keel_engine *e = load("engine/flatten_by_shape.onnx", 1, NULL);
  if (!e) return;
  int64_t shapes[2][3] = {{2, 3, 4}, {5, 1, 2}};
  for (int k = 0; k < 2; k++) {
    keel_view in = {KEEL_FLOAT32, 3, {shapes[k][0], shapes[k][1], shapes[k][2]}, NULL};
    keel_plan *p = NULL;
    CHECK_OK(keel_engine_plan(e, &in, 1, &p, NULL));
    if (p) {
      CHECK(p->n_steps == 2); /* Reshape and Relu; the shape arithmetic is gone */
      keel_plan_destroy(p);
    }
    keel_tensor *x = make_input(shapes[k], 3, 1.0f), *y = NULL;
    CHECK_OK(keel_engine_run(e, &x, 1, &y, 1));
    if (y) {
      CHECK(keel_tensor_ndim(y) == 2 && keel_tensor_dims(y)[0] == shapes[k][0] &&
            keel_tensor_dims(y)[1] == shapes[k][1] * shapes[k][2]);
      const float *xp = keel_tensor_data(x), *yp = keel_tensor_data(y);
      for (int64_t i = 0; i < keel_tensor_numel(x); i++) CHECK(yp[i] == fmaxf(xp[i], 0.f));
    }
    keel_tensor_release(x);
    keel_tensor_release(y);
  }
  keel_engine_release(e);
}

TEST(shape_feeding_input_values_are_planned) {
  TEST_BEGIN("shape_feeding_input_values_are_planned");
  keel_engine *e = load("engine/reshape_by_input.onnx", 1, NULL);
  if (!e) return;
  int64_t xd[] = {2, 6}, sd[] = {2};
  int64_t targets[2][2] = {{3, 4}, {4, 3}};
  for (int k = 0; k < 2; k++) {
    keel_tensor *x = make_input(xd, 2, 1.0f), *s = NULL, *y = NULL;
    CHECK_OK(keel_tensor_from_data(KEEL_INT64, sd, 1, targets[k], &s));
    keel_tensor *ins[2] = {x, s};
    CHECK_OK(keel_engine_run(e, ins, 2, &y, 1));
    if (y) CHECK(keel_tensor_dims(y)[0] == targets[k][0] && keel_tensor_dims(y)[1] == targets[k][1]);
    keel_tensor_release(x);
    keel_tensor_release(s);
    keel_tensor_release(y);
  }
  CHECK(atomic_load(&e->value_input_mask) == 2); /* input 1 ("shape") feeds shapes, input 0 does not */
  keel_engine_release(e);
}

TEST(run_allocations_are_counted) {
  TEST_BEGIN("run_allocations_are_counted");
  keel_allocator *a = keel_allocator_create(NULL, NULL);
  keel_engine *e = load("engine/conv_bn_relu.onnx", 1, a);
  if (!e) return;
  int64_t dims[] = {1, 3, 8, 8};
  keel_tensor *x = make_input(dims, 4, 1.0f), *y = NULL;
  keel_allocator_reset_stats(a);
  CHECK_OK(keel_engine_run(e, &x, 1, &y, 1));
  keel_alloc_stats st;
  keel_allocator_get_stats(a, &st);
  /* one output tensor, plus the conv's im2col workspace arena */
  CHECK(st.allocations >= 1 && st.allocations <= 2);
  CHECK(st.bytes_in_use == keel_tensor_nbytes(y));
  keel_tensor_release(y);
  keel_allocator_get_stats(a, &st);
  CHECK(st.bytes_in_use == 0);
  /* an allocation failure mid-run is a clear error and leaks nothing */
  for (uint64_t k = 1; k <= 2; k++) {
    keel_allocator_fail_after(a, k, 0);
    keel_status *s = keel_engine_run(e, &x, 1, &y, 1);
    if (s) {
      CHECK(keel_status_code(s) == KEEL_OUT_OF_MEMORY);
      CHECK(y == NULL);
      keel_status_free(s);
    } else {
      keel_tensor_release(y);
    }
    keel_allocator_get_stats(a, &st);
    CHECK(st.bytes_in_use == 0);
  }
  keel_allocator_fail_after(a, 0, 0);
  keel_tensor_release(x);
  keel_engine_release(e);
  keel_allocator_destroy(a);
}

TEST(bad_inputs_are_clear_errors) {
  TEST_BEGIN("bad_inputs_are_clear_errors");
  keel_engine *e = load("engine/conv_bn_relu.onnx", 1, NULL);
  if (!e) return;
  keel_tensor *y = NULL;
  int64_t wrong_rank[] = {3, 8, 8}, wrong_dim[] = {1, 5, 8, 8};
  keel_tensor *x = make_input(wrong_rank, 3, 1.0f);
  CHECK_ERR(keel_engine_run(e, &x, 1, &y, 1), KEEL_SHAPE_MISMATCH, "input 'x' has shape [3,8,8], the model expects [N,3,8,8]");
  keel_tensor_release(x);
  x = make_input(wrong_dim, 4, 1.0f);
  CHECK_ERR(keel_engine_run(e, &x, 1, &y, 1), KEEL_SHAPE_MISMATCH, "[1,5,8,8]");
  keel_tensor_release(x);
  int64_t ok_dims[] = {1, 3, 8, 8};
  keel_tensor *xi = NULL;
  CHECK_OK(keel_tensor_create(KEEL_INT64, ok_dims, 4, NULL, &xi));
  CHECK_ERR(keel_engine_run(e, &xi, 1, &y, 1), KEEL_SHAPE_MISMATCH, "dtype int64, the model expects float32");
  keel_tensor_release(xi);
  CHECK_ERR(keel_engine_run(e, NULL, 0, &y, 1), KEEL_INVALID_ARGUMENT, "has 1 inputs, got 0");
  keel_tensor *null_in = NULL;
  CHECK_ERR(keel_engine_run(e, &null_in, 1, &y, 1), KEEL_INVALID_ARGUMENT, "is NULL");
  CHECK(y == NULL);
  keel_engine_release(e);
  keel_engine *none = NULL;
  CHECK_ERR(keel_engine_load_file("engine/does_not_exist.onnx", NULL, &none), KEEL_IO_ERROR, "does_not_exist.onnx");
  CHECK(none == NULL);
  /* resource limits */
  keel_engine_options o;
  keel_engine_options_init(&o);
  o.max_nodes = 2;
  CHECK_ERR(keel_engine_load_file("engine/conv_bn_relu.onnx", &o, &none), KEEL_OUT_OF_MEMORY, "more than 2 nodes");
  keel_engine_options_init(&o);
  o.max_tensor_elements = 10;
  CHECK_ERR(keel_engine_load_file("engine/conv_bn_relu.onnx", &o, &none), KEEL_OUT_OF_MEMORY, "max_tensor_elements");
  keel_engine_options_init(&o);
  o.max_model_bytes = 100;
  CHECK_ERR(keel_engine_load_file("engine/conv_bn_relu.onnx", &o, &none), KEEL_OUT_OF_MEMORY, "above the limit of 100 bytes");
  CHECK(none == NULL);
}

RUN_TESTS(conv_bn_relu_fuses_and_matches, matmul_bias_relu_against_reference, elementwise_chain_runs_in_place,
          shape_chains_fold_while_planning, shape_feeding_input_values_are_planned, run_allocations_are_counted,
          bad_inputs_are_clear_errors)
