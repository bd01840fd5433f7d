/* The runtime module on the CUDA device. Without a GPU (or without the CUDA backend) this checks that the
 * absence is reported cleanly and that what can be decided on the host is (error mapping, unsupported
 * operators named at module creation), then prints "SKIP: ..." for the GPU tests. On a GPU it checks every
 * output mode, with and without CUDA graphs, against the CPU backend, and the steady-state allocation counts
 * (scripts/gpu-check runs it there). */
#include <math.h>

#include "core/tensor_internal.h"
#include "runtime/engine_internal.h"
#include "test_main.h"
#ifdef KEEL_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "backend/cuda/cuda_internal.h"
#endif

static bool g_gpu = false;


static keel_tensor *input(const int64_t *dims, int ndim, float phase) {
  return test_wave_input(dims, ndim, 0.37f, phase, 2.0f);
}

TEST(device_check) {
  TEST_BEGIN("device_check");
  keel_status *s = keel_device_check(KEEL_DEVICE_CUDA);
#ifndef KEEL_HAVE_CUDA
  CHECK(keel_status_code(s) == KEEL_UNSUPPORTED && strstr(keel_status_message(s), "without the CUDA backend"));
  printf("SKIP: GPU tests: this keel was built without the CUDA backend\n");
#else
  if (s) {
    CHECK(keel_status_code(s) == KEEL_DEVICE_ERROR || keel_status_code(s) == KEEL_INVALID_ARGUMENT);
    if (keel_status_code(s) == KEEL_DEVICE_ERROR) CHECK(strstr(keel_status_message(s), "no CUDA device") != NULL);
    printf("SKIP: GPU tests: %s\n", keel_status_message(s));
  } else {
    g_gpu = true;
  }
#endif
  /* creating a module on a missing device fails cleanly, names the reason, and leaves nothing behind */
  if (!g_gpu) {
    keel_engine *e = test_load("engine/conv_bn_relu.onnx");
    keel_module_options o;
    keel_module_options_init(&o);
    o.device = KEEL_DEVICE_CUDA;
    keel_module *m = (keel_module *)1;
    keel_status *c = keel_module_create(e, &o, &m);
    CHECK(c != NULL && m == NULL);
    CHECK(keel_status_code(c) == keel_status_code(s));
    keel_status_free(c);
    keel_engine_release(e);
  }
  keel_status_free(s);
  /* host-side helpers that must work without a GPU */
  keel_tensor *t = NULL;
  int64_t dims[1] = {4};
  float host[4] = {1, 2, 3, 4}, back[4] = {0};
  CHECK_OK(keel_tensor_wrap_device(KEEL_DEVICE_CPU, KEEL_FLOAT32, dims, 1, host, sizeof host, NULL, NULL, &t));
  CHECK(keel_tensor_device(t) == KEEL_DEVICE_CPU);
  CHECK_OK(keel_tensor_copy_to_host(t, back, sizeof back));
  CHECK(back[3] == 4);
  CHECK_ERR(keel_tensor_copy_to_host(t, back, 8), KEEL_INVALID_ARGUMENT, "16 bytes");
  keel_tensor_release(t);
}

TEST(unsupported_named_at_creation) {
  TEST_BEGIN("unsupported_named_at_creation");
#ifdef KEEL_HAVE_CUDA
  keel_module_options o;
  keel_module_options_init(&o);
  o.device = KEEL_DEVICE_CUDA;
  keel_module *m = NULL;
  /* NonZero has no CUDA kernel: refused before any device work, with the operator named */
  keel_engine *e = test_load("engine/nonzero.onnx");
  CHECK_ERR(keel_module_create(e, &o, &m), KEEL_UNSUPPORTED, "NonZero");
  CHECK(m == NULL);
  keel_engine_release(e);
  /* control flow needs the interpreter */
  e = test_load("engine/if_sign.onnx");
  CHECK_ERR(keel_module_create(e, &o, &m), KEEL_UNSUPPORTED, "interpreter");
  keel_engine_release(e);
  /* models the CUDA table covers pass the check */
  const char *ok[] = {"engine/conv_bn_relu.onnx", "engine/matmul_bias_relu.onnx", "engine/elementwise_chain.onnx",
                      "engine/flatten_by_shape.onnx"};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    e = test_load(ok[i]);
    CHECK_OK(keel_cuda_check_graph(e->graph));
    keel_engine_release(e);
  }
#endif
}

TEST(error_mapping) {
  TEST_BEGIN("error_mapping");
#ifdef KEEL_HAVE_CUDA
  CHECK(keel_cuda_error(cudaSuccess, "cudaMalloc", 0, 16) == NULL);
  CHECK_ERR(keel_cuda_error(cudaErrorMemoryAllocation, "cudaMalloc", 1, 1 << 20), KEEL_OUT_OF_MEMORY,
            "cudaMalloc on device 1, 1048576 bytes");
  CHECK_ERR(keel_cuda_error(cudaErrorNoDevice, "cudaGetDeviceCount", -1, -1), KEEL_DEVICE_ERROR, "no CUDA device");
  CHECK_ERR(keel_cuda_error(cudaErrorInsufficientDriver, "cudaSetDevice", 0, -1), KEEL_DEVICE_ERROR, "no CUDA device");
  CHECK_ERR(keel_cuda_error(cudaErrorIllegalAddress, "cudaStreamSynchronize", 0, -1), KEEL_DEVICE_ERROR, "sticky");
  CHECK_ERR(keel_cuda_error(cudaErrorInvalidValue, "cudaMemcpyAsync", 2, 64), KEEL_DEVICE_ERROR,
            "cudaMemcpyAsync failed on device 2, 64 bytes: cudaErrorInvalidValue");
  CHECK_ERR(keel_cublas_error(CUBLAS_STATUS_ALLOC_FAILED, "cublasCreate", 0), KEEL_OUT_OF_MEMORY,
            "CUBLAS_STATUS_ALLOC_FAILED");
  CHECK_ERR(keel_cublas_error(CUBLAS_STATUS_EXECUTION_FAILED, "cublasSgemm", 3), KEEL_DEVICE_ERROR,
            "cublasSgemm failed on device 3");
  CHECK(keel_cublas_error(CUBLAS_STATUS_SUCCESS, "x", 0) == NULL);
#endif
}

/* ---- on a GPU ------------------------------------------------------------------------------------------------ */

static float max_rel_err(const keel_tensor *ref, const float *got) {
  const float *r = keel_tensor_data((keel_tensor *)ref);
  float worst = 0;
  for (int64_t i = 0; i < keel_tensor_numel(ref); i++) {
    float e = fabsf(r[i] - got[i]) / (fabsf(r[i]) + 1e-3f);
    if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
  }
  return worst;
}

typedef struct model_case {
  const char *path;
  int64_t dims[4], dims2[4]; /* two input shapes (a shape change) */
  int ndim;
} model_case;

static const model_case g_models[] = {
    {"engine/conv_bn_relu.onnx", {2, 3, 8, 8}, {5, 3, 8, 8}, 4},
    {"engine/matmul_bias_relu.onnx", {4, 16}, {9, 16}, 2},
    {"engine/elementwise_chain.onnx", {64, 1024}, {64, 1024}, 2},
};

static void check_against_cpu(keel_module *m, keel_engine *e, keel_tensor *x, const char *what) {
  keel_tensor *ref = NULL, *y = NULL;
  CHECK_OK(keel_engine_run(e, &x, 1, &ref, 1));
  CHECK_OK(keel_module_forward(m, &x, 1, &y, 1));
  if (!ref || !y) {
    keel_tensor_release(ref);
    keel_tensor_release(y);
    return;
  }
  CHECK(keel_tensor_device(y) == KEEL_DEVICE_CUDA);
  CHECK(keel_tensor_numel(y) == keel_tensor_numel(ref));
  float *host = malloc(keel_tensor_nbytes(y));
  CHECK_OK(keel_module_copy_to_host(m, y, host, keel_tensor_nbytes(y)));
  float err = max_rel_err(ref, host);
  if (!(err < 1e-3f)) fprintf(stderr, "  %s: max relative error %g\n", what, err);
  CHECK(err < 1e-3f);
  free(host);
  keel_tensor_release(ref);
  if (keel_module_output_mode(m) != KEEL_OUTPUTS_PERSISTENT) keel_tensor_release(y);
  else keel_tensor_release(y); /* borrowed, but forward hands out a reference either way */
}

TEST(modes_match_cpu) {
  TEST_BEGIN("modes_match_cpu");
  if (!g_gpu) return;
  for (size_t mi = 0; mi < sizeof g_models / sizeof g_models[0]; mi++) {
    const model_case *mc = &g_models[mi];
    keel_engine *e = test_load(mc->path);
    for (int mode = KEEL_OUTPUTS_FRESH; mode <= KEEL_OUTPUTS_PERSISTENT; mode++)
      for (int graphs = 0; graphs <= 1; graphs++) {
        char what[256];
        snprintf(what, sizeof what, "%s mode %d graphs %d", mc->path, mode, graphs);
        test_current = what;
        keel_module_options o;
        keel_module_options_init(&o);
        o.device = KEEL_DEVICE_CUDA;
        o.output_mode = (keel_output_mode)mode;
        keel_module *m = NULL;
        CHECK_OK(keel_module_create(e, &o, &m));
        if (!m) continue;
        CHECK_OK(keel_module_set_cuda_graphs(m, graphs));
        keel_tensor *x = input(mc->dims, mc->ndim, 0.1f), *x2 = input(mc->dims2, mc->ndim, 0.7f);
        for (int it = 0; it < 4; it++) check_against_cpu(m, e, x, what);
        if (mode != KEEL_OUTPUTS_FRESH) {
          /* steady state: no device allocation at all */
          keel_module_stats st;
          keel_module_get_last_call_stats(m, &st);
          CHECK(st.system_allocations == 0);
        }
        keel_device_stats ds;
        keel_module_get_device_stats(m, &ds);
        if (graphs && mode != KEEL_OUTPUTS_FRESH) CHECK(ds.graph_replays >= 2 && ds.graph_captures >= 1);
        if (!graphs) CHECK(ds.graph_replays == 0 && ds.eager_runs == 4);
        CHECK(ds.compute_ms > 0);
        /* a shape change re-plans (and re-captures); then back */
        for (int it = 0; it < 3; it++) check_against_cpu(m, e, x2, what);
        check_against_cpu(m, e, x, what);
        keel_tensor_release(x);
        keel_tensor_release(x2);
        keel_module_destroy(m);
      }
    keel_engine_release(e);
  }
}

#ifdef KEEL_HAVE_CUDA
static void *cb_realloc(void *user, const char *name, void *cur, size_t size, size_t align) {
  (void)name;
  (void)align;
  size_t *cap = user;
  if (cur && *cap >= size) return cur;
  if (cur) cudaFree(cur);
  void *p = NULL;
  if (cudaMalloc(&p, size) != cudaSuccess) return NULL;
  *cap = size;
  return p;
}
#endif

TEST(bound_outputs_graphs_and_streams) {
  TEST_BEGIN("bound_outputs_graphs_and_streams");
  if (!g_gpu) return;
#ifdef KEEL_HAVE_CUDA
  keel_engine *e = test_load("engine/matmul_bias_relu.onnx");
  keel_module_options o;
  keel_module_options_init(&o);
  o.device = KEEL_DEVICE_CUDA;
  keel_module *m = NULL;
  CHECK_OK(keel_module_create(e, &o, &m));
  if (!m) return;
  int64_t dims[2] = {8, 16};
  keel_tensor *x = input(dims, 2, 0.3f), *ref = NULL;
  CHECK_OK(keel_engine_run(e, &x, 1, &ref, 1));
  /* a host tensor cannot be bound to a CUDA module */
  CHECK_ERR(keel_module_bind_output(m, 0, ref), KEEL_INVALID_ARGUMENT, "another device");
  void *dev = NULL;
  CHECK(cudaMalloc(&dev, keel_tensor_nbytes(ref)) == cudaSuccess);
  keel_tensor *bound = NULL;
  CHECK_OK(keel_tensor_wrap_device(KEEL_DEVICE_CUDA, KEEL_FLOAT32, keel_tensor_dims(ref), 2, dev, keel_tensor_nbytes(ref),
                                   NULL, NULL, &bound));
  CHECK_OK(keel_module_bind_output(m, 0, bound));
  CHECK_OK(keel_module_set_cuda_graphs(m, 1));
  cudaStream_t caller = NULL;
  CHECK(cudaStreamCreate(&caller) == cudaSuccess);
  CHECK_OK(keel_module_set_cuda_stream(m, caller));
  float *host = malloc(keel_tensor_nbytes(ref));
  for (int it = 0; it < 5; it++) {
    keel_tensor *y = NULL;
    CHECK_OK(keel_module_forward(m, &x, 1, &y, 1));
    CHECK(y == bound);
    keel_tensor_release(y);
    memset(host, 0, keel_tensor_nbytes(ref));
    CHECK(cudaMemcpyAsync(host, dev, keel_tensor_nbytes(ref), cudaMemcpyDeviceToHost, caller) == cudaSuccess);
    CHECK(cudaStreamSynchronize(caller) == cudaSuccess);
    CHECK(max_rel_err(ref, host) < 1e-3f);
  }
  keel_device_stats ds;
  keel_module_get_device_stats(m, &ds);
  CHECK(ds.graph_replays >= 3);
  keel_module_stats st;
  keel_module_get_last_call_stats(m, &st);
  CHECK(st.system_allocations == 0);
  CHECK_OK(keel_module_bind_output(m, 0, NULL));
  CHECK_OK(keel_module_set_cuda_stream(m, NULL));
  /* the output allocator hands out cudaMalloc memory */
  size_t cap = 0;
  keel_output_allocator oa = {cb_realloc, NULL, &cap};
  CHECK_OK(keel_module_set_output_allocator(m, 0, &oa));
  keel_tensor *y = NULL;
  CHECK_OK(keel_module_forward(m, &x, 1, &y, 1));
  CHECK(y && keel_tensor_device(y) == KEEL_DEVICE_CUDA && cap == keel_tensor_nbytes(ref));
  if (y) {
    CHECK_OK(keel_tensor_copy_to_host(y, host, keel_tensor_nbytes(ref)));
    CHECK(max_rel_err(ref, host) < 1e-3f);
    void *mem = keel_tensor_data(y);
    keel_tensor_release(y);
    CHECK_OK(keel_module_set_output_allocator(m, 0, NULL));
    cudaFree(mem);
  }
  /* device-resident input: the output of one call fed to the next module call as is */
  free(host);
  keel_tensor_release(bound);
  keel_module_destroy(m);
  cudaFree(dev);
  cudaStreamDestroy(caller);
  keel_tensor_release(x);
  keel_tensor_release(ref);
  keel_engine_release(e);
#endif
}

/* $KEEL_GPU_MODELS: a folder of .onnx files (scripts/gpu-check points it at the generated model set); each
 * runs on the CUDA module (inputs with symbolic dims set to 1) and must match the CPU engine. */
#include <dirent.h>

static keel_tensor *input_for(const keel_io_info *info, float phase) {
  int64_t dims[KEEL_MAX_DIMS];
  for (int d = 0; d < info->ndim; d++) dims[d] = info->dims[d] > 0 ? info->dims[d] : 1;
  keel_tensor *t = NULL;
  CHECK_OK(keel_tensor_create(info->dtype, dims, info->ndim, NULL, &t));
  if (!t) return NULL;
  int64_t n = keel_tensor_numel(t);
  if (info->dtype == KEEL_FLOAT32) {
    float *p = keel_tensor_data(t);
    for (int64_t i = 0; i < n; i++) p[i] = sinf((float)i * 0.37f + phase);
  } else if (info->dtype == KEEL_INT64) {
    int64_t *p = keel_tensor_data(t);
    for (int64_t i = 0; i < n; i++) p[i] = i % 7; /* token ids, masks */
  } else {
    memset(keel_tensor_data(t), 0, keel_tensor_nbytes(t));
  }
  return t;
}

TEST(model_set) {
  TEST_BEGIN("model_set");
  const char *dir = getenv("KEEL_GPU_MODELS");
  if (!g_gpu || !dir || !*dir) return;
  DIR *d = opendir(dir);
  CHECK(d != NULL);
  if (!d) return;
  struct dirent *ent;
  while ((ent = readdir(d))) {
    size_t len = strlen(ent->d_name);
    if (len < 6 || strcmp(ent->d_name + len - 5, ".onnx")) continue;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
    test_current = ent->d_name;
    keel_engine *e = test_load(path);
    if (!e) continue;
    size_t ni = keel_engine_input_count(e), no = keel_engine_output_count(e);
    keel_tensor *in[16] = {0}, *ref[16] = {0}, *out[16] = {0};
    if (ni > 16 || no > 16) {
      keel_engine_release(e);
      continue;
    }
    for (size_t i = 0; i < ni; i++) {
      keel_io_info info;
      CHECK_OK(keel_engine_input_info(e, i, &info));
      in[i] = input_for(&info, (float)i);
    }
    CHECK_OK(keel_engine_run(e, in, ni, ref, no));
    keel_module_options o;
    keel_module_options_init(&o);
    o.device = KEEL_DEVICE_CUDA;
    o.output_mode = KEEL_OUTPUTS_PERSISTENT;
    keel_module *m = NULL;
    keel_status *s = keel_module_create(e, &o, &m);
    if (s) {
      printf("  %s: not run on CUDA: %s\n", ent->d_name, keel_status_message(s));
      keel_status_free(s);
    } else {
      for (int graphs = 0; graphs <= 1; graphs++) {
        CHECK_OK(keel_module_set_cuda_graphs(m, graphs));
        for (int it = 0; it < 3; it++) {
          CHECK_OK(keel_module_forward(m, in, ni, out, no));
          for (size_t k = 0; k < no && ref[k] && out[k]; k++) {
            if (keel_tensor_dtype(ref[k]) != KEEL_FLOAT32) {
              keel_tensor_release(out[k]);
              continue;
            }
            float *h = malloc(keel_tensor_nbytes(out[k]) + 4);
            CHECK_OK(keel_module_copy_to_host(m, out[k], h, keel_tensor_nbytes(out[k])));
            float err = max_rel_err(ref[k], h);
            if (!(err < 2e-3f)) fprintf(stderr, "  %s output %zu graphs %d: max relative error %g\n", ent->d_name, k, graphs, err);
            CHECK(err < 2e-3f);
            free(h);
            keel_tensor_release(out[k]);
          }
        }
      }
      printf("  %s: CUDA matches the CPU\n", ent->d_name);
      keel_module_destroy(m);
    }
    for (size_t i = 0; i < ni; i++) keel_tensor_release(in[i]);
    for (size_t k = 0; k < no; k++) keel_tensor_release(ref[k]);
    keel_engine_release(e);
  }
  closedir(d);
}

RUN_TESTS(device_check, unsupported_named_at_creation, error_mapping, modes_match_cpu, bound_outputs_graphs_and_streams,
          model_set)
