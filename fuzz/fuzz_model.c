/* libFuzzer harness: arbitrary bytes as an ONNX model.
 * Loads with small limits; when the model loads, runs it once with generated inputs (symbolic and unknown
 * dims = 1), then releases everything. Any crash, leak, sanitizer report or abort is a bug: malformed
 * models must come back as a keel_status. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keel/keel.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_INPUT_ELEMENTS ((int64_t)1 << 16) /* per input; larger inputs skip the run */
#define FUZZ_ARENA_LIMIT ((uint64_t)256 << 20)      /* run buffers beyond this fail with OUT_OF_MEMORY */

static keel_allocator *fuzz_allocator(void) {
  /* One counting allocator with a byte limit: models whose plans need huge arenas fail cleanly instead of
   * exhausting the fuzzer's RSS limit. Created once, never freed (the fuzzer process is long-lived). */
  static keel_allocator *a;
  if (!a) {
    a = keel_allocator_create(NULL, NULL);
    if (a) keel_allocator_set_limit(a, FUZZ_ARENA_LIMIT);
  }
  return a;
}

/* A deterministic small value for element i: small integers keep shape-feeding inputs (Reshape shapes,
 * Slice starts, Gather indices) in range often enough for the run to reach the kernels. */
static void fill(keel_tensor *t) {
  void *p = keel_tensor_data(t);
  int64_t n = keel_tensor_numel(t);
  for (int64_t i = 0; i < n; i++) {
    int v = (int)(i % 3); /* 0, 1, 2 */
    switch (keel_tensor_dtype(t)) {
      case KEEL_FLOAT32: ((float *)p)[i] = 0.5f * (float)v - 0.25f; break;
      case KEEL_FLOAT64: ((double *)p)[i] = 0.5 * v - 0.25; break;
      case KEEL_FLOAT16: ((uint16_t *)p)[i] = keel_float_to_half(0.5f * (float)v); break;
      case KEEL_BFLOAT16: ((uint16_t *)p)[i] = keel_float_to_bfloat16(0.5f * (float)v); break;
      case KEEL_INT8: ((int8_t *)p)[i] = (int8_t)v; break;
      case KEEL_UINT8: ((uint8_t *)p)[i] = (uint8_t)v; break;
      case KEEL_INT16: ((int16_t *)p)[i] = (int16_t)v; break;
      case KEEL_UINT16: ((uint16_t *)p)[i] = (uint16_t)v; break;
      case KEEL_INT32: ((int32_t *)p)[i] = v; break;
      case KEEL_UINT32: ((uint32_t *)p)[i] = (uint32_t)v; break;
      case KEEL_INT64: ((int64_t *)p)[i] = 1; break; /* shapes of 1 are always valid */
      case KEEL_UINT64: ((uint64_t *)p)[i] = (uint64_t)v; break;
      case KEEL_BOOL: ((uint8_t *)p)[i] = (uint8_t)(v & 1); break;
      default: memset(p, 0, keel_tensor_nbytes(t)); return;
    }
  }
}

static void run_once(keel_engine *e) {
  size_t n_in = keel_engine_input_count(e), n_out = keel_engine_output_count(e);
  if (n_in > 64 || n_out > 64) return;
  keel_tensor *in[64] = {0}, *out[64] = {0};
  int ok = 1;
  for (size_t i = 0; i < n_in && ok; i++) {
    keel_io_info info;
    keel_status *s = keel_engine_input_info(e, i, &info);
    if (s) {
      keel_status_free(s);
      ok = 0;
      break;
    }
    if (keel_dtype_size(info.dtype) == 0) { /* string, undefined: no tensor can be made */
      ok = 0;
      break;
    }
    int64_t dims[KEEL_MAX_DIMS];
    int ndim = info.ndim < 0 ? 1 : info.ndim;
    if (ndim > KEEL_MAX_DIMS) ndim = KEEL_MAX_DIMS;
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) {
      dims[d] = info.ndim < 0 || info.dims[d] < 0 ? 1 : info.dims[d];
      if (dims[d] > FUZZ_MAX_INPUT_ELEMENTS || (dims[d] && numel > FUZZ_MAX_INPUT_ELEMENTS / dims[d])) {
        ok = 0; /* too big to bother: the limits are tested elsewhere */
        break;
      }
      numel *= dims[d];
    }
    if (!ok) break;
    s = keel_tensor_create(info.dtype, dims, ndim, NULL, &in[i]);
    if (s) {
      keel_status_free(s);
      ok = 0;
      break;
    }
    fill(in[i]);
  }
  if (ok) {
    keel_status *s = keel_engine_run(e, in, n_in, out, n_out);
    if (!s) {
      /* Outputs must be readable end to end: ASan flags a tensor whose storage is shorter than its shape. */
      volatile uint8_t sink = 0;
      for (size_t i = 0; i < n_out; i++) {
        if (!out[i]) abort(); /* success must fill every output */
        const uint8_t *p = keel_tensor_data_const(out[i]);
        size_t nb = keel_tensor_nbytes(out[i]);
        if (nb) sink ^= p[0] ^ p[nb - 1];
      }
      (void)sink;
    }
    int ran = s == NULL;
    keel_status_free(s);
    /* Fault injection: the same run with the first, then the second run allocation failing must report
     * OUT_OF_MEMORY (or succeed without needing it) and leak nothing (LeakSanitizer checks). */
    for (uint64_t k = 1; ran && k <= 2; k++) {
      keel_tensor *out2[64] = {0};
      keel_allocator_fail_after(fuzz_allocator(), k, 0);
      keel_status *s2 = keel_engine_run(e, in, n_in, out2, n_out);
      keel_allocator_fail_after(fuzz_allocator(), 0, 0);
      if (s2 && keel_status_code(s2) != KEEL_OUT_OF_MEMORY) {
        fprintf(stderr, "fuzz_model: allocation %llu failing gave %s: %s\n", (unsigned long long)k,
                keel_code_name(keel_status_code(s2)), keel_status_message(s2));
        abort();
      }
      keel_status_free(s2);
      for (size_t i = 0; i < n_out; i++) keel_tensor_release(out2[i]);
    }
  }
  for (size_t i = 0; i < n_in; i++) keel_tensor_release(in[i]);
  for (size_t i = 0; i < n_out; i++) keel_tensor_release(out[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  keel_engine_options opt;
  keel_engine_options_init(&opt);
  opt.max_model_bytes = (uint64_t)1 << 20;
  opt.max_tensor_elements = (uint64_t)1 << 20;
  opt.allocator = fuzz_allocator();
  keel_engine *e = NULL;
  keel_status *s = keel_engine_load_memory(data, size, NULL, &opt, &e);
  if (s) {
    /* Every error must carry a message and a real code. */
    if (keel_status_code(s) == KEEL_OK || !keel_status_message(s)) abort();
    keel_status_free(s);
    return 0;
  }
  if (!e) abort();
  run_once(e);
  keel_engine_release(e);
  return 0;
}
