/* keel: a C11 inference runtime for ONNX models. Umbrella header. */
#ifndef KEEL_H
#define KEEL_H

#include "allocator.h"
#include "dtype.h"
#include "engine.h"
#include "module.h"
#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

const char *keel_version(void);  /* "0.1.0" */
const char *keel_backends(void); /* backends compiled in, e.g. "cpu" or "cpu cuda" */

#ifdef __cplusplus
}
#endif
#endif
