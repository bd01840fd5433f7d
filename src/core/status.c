/* Status objects: code + heap message. A static status stands in when even that allocation fails. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

struct keel_status {
  keel_code code;
  char *message;
};

static keel_status oom_status = {KEEL_OUT_OF_MEMORY, (char *)"out of memory while reporting an error"};

static keel_status *status_vnew(keel_code code, const char *prefix, const char *fmt, va_list ap) {
  keel_status *s = malloc(sizeof *s);
  if (!s) return &oom_status;
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  size_t plen = prefix ? strlen(prefix) : 0;
  if (n < 0) n = 0;
  s->message = malloc(plen + (size_t)n + 1);
  if (!s->message) {
    free(s);
    return &oom_status;
  }
  if (plen) memcpy(s->message, prefix, plen);
  vsnprintf(s->message + plen, (size_t)n + 1, fmt, ap);
  s->code = code;
  return s;
}

keel_status *keel_error(keel_code code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  keel_status *s = status_vnew(code, NULL, fmt, ap);
  va_end(ap);
  return s;
}

keel_status *keel_error_prefix(keel_status *s, const char *fmt, ...) {
  if (!s || s == &oom_status) return s;
  va_list ap;
  va_start(ap, fmt);
  char prefix[512];
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  size_t pl = strlen(prefix), ml = strlen(s->message);
  char *m = malloc(pl + ml + 1);
  if (!m) return s; /* keep the original message rather than lose it */
  memcpy(m, prefix, pl);
  memcpy(m + pl, s->message, ml + 1);
  free(s->message);
  s->message = m;
  return s;
}

keel_code keel_status_code(const keel_status *s) { return s ? s->code : KEEL_OK; }
const char *keel_status_message(const keel_status *s) { return s ? s->message : ""; }

void keel_status_free(keel_status *s) {
  if (!s || s == &oom_status) return;
  free(s->message);
  free(s);
}

const char *keel_code_name(keel_code code) {
  switch (code) {
    case KEEL_OK: return "OK";
    case KEEL_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case KEEL_INVALID_MODEL: return "INVALID_MODEL";
    case KEEL_UNSUPPORTED: return "UNSUPPORTED";
    case KEEL_OUT_OF_MEMORY: return "OUT_OF_MEMORY";
    case KEEL_SHAPE_MISMATCH: return "SHAPE_MISMATCH";
    case KEEL_DEVICE_ERROR: return "DEVICE_ERROR";
    case KEEL_IO_ERROR: return "IO_ERROR";
    case KEEL_INTERNAL: return "INTERNAL";
  }
  return "UNKNOWN";
}
