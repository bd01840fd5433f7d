/* keel: status model.
 * Every fallible function returns a keel_status*. NULL means success (as in ONNX Runtime's OrtStatus*);
 * a non-NULL status carries a code and a message that says what failed and where. The caller frees it. */
#ifndef KEEL_STATUS_H
#define KEEL_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum keel_code {
  KEEL_OK = 0,
  KEEL_INVALID_ARGUMENT, /* caller passed something wrong (null, wrong count, bad name) */
  KEEL_INVALID_MODEL,    /* the model file is malformed, truncated or inconsistent */
  KEEL_UNSUPPORTED,      /* valid ONNX that keel does not implement (operator, dtype, attribute) */
  KEEL_OUT_OF_MEMORY,    /* an allocation failed or a limit was exceeded */
  KEEL_SHAPE_MISMATCH,   /* input shape or dtype does not fit the model */
  KEEL_DEVICE_ERROR,     /* a backend (CUDA, simulated device) reported a failure */
  KEEL_IO_ERROR,         /* a file could not be read or written */
  KEEL_INTERNAL          /* a broken invariant inside keel: please report it */
} keel_code;

typedef struct keel_status keel_status;

keel_code keel_status_code(const keel_status *s);      /* KEEL_OK for NULL */
const char *keel_status_message(const keel_status *s); /* "" for NULL; valid until keel_status_free */
void keel_status_free(keel_status *s);                 /* NULL is fine */
const char *keel_code_name(keel_code code);            /* "INVALID_MODEL", ... */

#ifdef __cplusplus
}
#endif
#endif
