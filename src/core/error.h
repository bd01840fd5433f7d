/* Internal helpers for building statuses. */
#ifndef KEEL_CORE_ERROR_H
#define KEEL_CORE_ERROR_H

#include <keel/status.h>

/* A new status with a printf-style message. Never returns NULL: if memory for the message cannot be
 * had, a static out-of-memory status is returned (keel_status_free ignores it). */
keel_status *keel_error(keel_code code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepend context ("in node 'conv1' (Conv): ") to an existing status; returns it. */
keel_status *keel_error_prefix(keel_status *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Evaluate `expr`; if it returns an error, return it from the enclosing function. */
#define KEEL_TRY(expr)               \
  do {                               \
    keel_status *keel_try_s_ = (expr); \
    if (keel_try_s_) return keel_try_s_; \
  } while (0)

#endif
