/* libFuzzer harness: arbitrary bytes as a serialized TensorProto (test data input_N.pb / output_N.pb).
 * Whatever decodes must encode, and decoding the encoding must give the same dtype, shape, bytes and name. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keel/keel.h>

#include "onnx/onnx_import.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, keel_status *s) {
  fprintf(stderr, "fuzz_tensor: round trip broken: %s%s%s\n", what, s ? ": " : "", s ? keel_status_message(s) : "");
  abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  keel_tensor *a = NULL, *b = NULL;
  char *name_a = NULL, *name_b = NULL;
  void *enc = NULL;
  size_t enc_size = 0;
  keel_status *s = keel_onnx_decode_tensor(data, size, &a, &name_a);
  if (s) {
    if (keel_status_code(s) == KEEL_OK) abort();
    keel_status_free(s);
    return 0;
  }
  s = keel_onnx_encode_tensor(a, name_a, &enc, &enc_size);
  if (s) {
    if (keel_status_code(s) != KEEL_OUT_OF_MEMORY) fail("encode of a decoded tensor failed", s);
    keel_status_free(s);
    goto done;
  }
  s = keel_onnx_decode_tensor(enc, enc_size, &b, &name_b);
  if (s) fail("decode of an encoded tensor failed", s);
  if (keel_tensor_dtype(a) != keel_tensor_dtype(b)) fail("dtype differs", NULL);
  if (keel_tensor_ndim(a) != keel_tensor_ndim(b)) fail("rank differs", NULL);
  if (keel_tensor_ndim(a) &&
      memcmp(keel_tensor_dims(a), keel_tensor_dims(b), sizeof(int64_t) * (size_t)keel_tensor_ndim(a)))
    fail("dims differ", NULL);
  if (keel_tensor_nbytes(a) != keel_tensor_nbytes(b)) fail("byte size differs", NULL);
  if (keel_tensor_dtype(a) == KEEL_STRING) { /* elements are owned pointers: compare their bytes */
    for (int64_t i = 0; i < keel_tensor_numel(a); i++) {
      size_t la, lb;
      const char *sa = keel_tensor_get_string(a, i, &la), *sb = keel_tensor_get_string(b, i, &lb);
      if (la != lb || memcmp(sa, sb, la)) fail("string element differs", NULL);
    }
  } else if (keel_tensor_nbytes(a) &&
      memcmp(keel_tensor_data_const(a), keel_tensor_data_const(b), keel_tensor_nbytes(a)))
    fail("data differs", NULL);
  /* A missing name and an empty name are the same thing in protobuf. */
  const char *na = name_a ? name_a : "", *nb = name_b ? name_b : "";
  if (strcmp(na, nb)) fail("name differs", NULL);
done:
  free(enc);
  free(name_a);
  free(name_b);
  keel_tensor_release(a);
  keel_tensor_release(b);
  return 0;
}
