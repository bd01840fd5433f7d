/* Helpers shared by keel subcommands. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

bool cli_parse_shape(const char *arg, cli_shape *out) {
  const char *eq = strrchr(arg, '=');
  if (!eq || eq == arg) return false;
  static char names[64][256];
  static int next;
  char *name = names[next++ % 64];
  size_t len = (size_t)(eq - arg);
  if (len >= 256) return false;
  memcpy(name, arg, len);
  name[len] = 0;
  out->name = name;
  out->ndim = 0;
  const char *p = eq + 1;
  if (!*p) return true; /* scalar */
  while (*p) {
    char *end;
    long long d = strtoll(p, &end, 10);
    if (end == p || d < 0 || out->ndim >= KEEL_MAX_DIMS) return false;
    out->dims[out->ndim++] = d;
    p = end;
    if (*p == 'x' || *p == ',') p++;
    else if (*p) return false;
  }
  return true;
}

void cli_input_shape(const keel_io_info *info, const cli_shape *shapes, int n_shapes, int64_t *dims, int *ndim) {
  for (int i = 0; i < n_shapes; i++)
    if (!strcmp(shapes[i].name, info->name)) {
      *ndim = shapes[i].ndim;
      memcpy(dims, shapes[i].dims, sizeof(int64_t) * (size_t)shapes[i].ndim);
      return;
    }
  *ndim = info->ndim < 0 ? 1 : info->ndim;
  for (int d = 0; d < *ndim; d++) dims[d] = info->ndim < 0 || info->dims[d] < 0 ? 1 : info->dims[d];
}

static uint64_t next_rand(uint64_t *s) {
  /* splitmix64: deterministic across platforms */
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

keel_status *cli_generate_input(keel_dtype dtype, const int64_t *dims, int ndim, uint64_t seed, keel_tensor **out) {
  keel_status *s = keel_tensor_create(dtype, dims, ndim, NULL, out);
  if (s) return s;
  int64_t n = keel_tensor_numel(*out);
  if (dtype == KEEL_STRING) { /* owned element bytes: never write raw bytes over the records */
    for (int64_t i = 0; i < n && !s; i++) {
      char w[32];
      int len = snprintf(w, sizeof w, "s%llu", (unsigned long long)(next_rand(&seed) % 1000));
      s = keel_tensor_set_string(*out, i, w, (size_t)len);
    }
    if (s) {
      keel_tensor_release(*out);
      *out = NULL;
    }
    return s;
  }
  char *p = keel_tensor_data(*out);
  uint64_t st = seed;
  for (int64_t i = 0; i < n; i++) {
    uint64_t r = next_rand(&st);
    double u = (double)(r >> 11) / 9007199254740992.0 * 2.0 - 1.0;
    switch (dtype) {
      case KEEL_FLOAT32: ((float *)p)[i] = (float)u; break;
      case KEEL_FLOAT64: ((double *)p)[i] = u; break;
      case KEEL_FLOAT16: ((uint16_t *)p)[i] = keel_float_to_half((float)u); break;
      case KEEL_BFLOAT16: ((uint16_t *)p)[i] = keel_float_to_bfloat16((float)u); break;
      case KEEL_BOOL: ((uint8_t *)p)[i] = (uint8_t)(i & 1); break;
      case KEEL_INT64: ((int64_t *)p)[i] = (int64_t)(r & 1); break;
      case KEEL_INT32: ((int32_t *)p)[i] = (int32_t)(r & 1); break;
      default: memset(p + (size_t)i * keel_dtype_size(dtype), 0, keel_dtype_size(dtype)); if (r & 1) p[(size_t)i * keel_dtype_size(dtype)] = 1; break;
    }
  }
  return NULL;
}

static double elem(keel_tensor *t, int64_t i) {
  const char *p = keel_tensor_data(t);
  switch (keel_tensor_dtype(t)) {
    case KEEL_FLOAT32: return ((const float *)p)[i];
    case KEEL_FLOAT64: return ((const double *)p)[i];
    case KEEL_FLOAT16: return keel_half_to_float(((const uint16_t *)p)[i]);
    case KEEL_BFLOAT16: return keel_bfloat16_to_float(((const uint16_t *)p)[i]);
    case KEEL_INT64: return (double)((const int64_t *)p)[i];
    case KEEL_INT32: return ((const int32_t *)p)[i];
    case KEEL_INT16: return ((const int16_t *)p)[i];
    case KEEL_INT8: return ((const int8_t *)p)[i];
    case KEEL_UINT8: case KEEL_BOOL: return ((const uint8_t *)p)[i];
    case KEEL_UINT16: return ((const uint16_t *)p)[i];
    case KEEL_UINT32: return ((const uint32_t *)p)[i];
    case KEEL_UINT64: return (double)((const uint64_t *)p)[i];
    case KEEL_INT4: case KEEL_UINT4: case KEEL_INT2: case KEEL_UINT2:
      return keel_narrow_int_value(keel_tensor_dtype(t), ((const uint8_t *)p)[i]);
    default: /* float8 / float4 codes; NaN for types without a numeric value */
      return keel_dtype_is_narrow(keel_tensor_dtype(t)) ? keel_fp8_to_float(keel_tensor_dtype(t), ((const uint8_t *)p)[i])
                                                        : NAN;
  }
}

void cli_print_summary(const char *name, keel_tensor *t) {
  char shape[256];
  int64_t n = keel_tensor_numel(t);
  printf("%s: %s%s", name, keel_dtype_name(keel_tensor_dtype(t)),
         keel_shape_format(keel_tensor_dims(t), keel_tensor_ndim(t), shape, sizeof shape));
  if (n > 0 && keel_tensor_dtype(t) == KEEL_STRING) {
    printf("  first=[");
    for (int64_t i = 0; i < n && i < 5; i++) printf(i ? ", \"%.40s\"" : "\"%.40s\"", keel_tensor_get_string(t, i, NULL));
    printf(n > 5 ? ", ...]" : "]");
  } else if (n > 0) {
    double mn = INFINITY, mx = -INFINITY, sum = 0;
    int64_t argmax = 0;
    for (int64_t i = 0; i < n; i++) {
      double x = elem(t, i);
      if (x < mn) mn = x;
      if (x > mx) mx = x, argmax = i;
      sum += x;
    }
    printf("  min=%.6g max=%.6g mean=%.6g argmax=%lld  first=[", mn, mx, sum / (double)n, (long long)argmax);
    for (int64_t i = 0; i < n && i < 5; i++) printf(i ? ", %.6g" : "%.6g", elem(t, i));
    printf(n > 5 ? ", ...]" : "]");
  }
  printf("\n");
}

int cli_fail(const char *what, keel_status *s) {
  fprintf(stderr, "keel: %s: %s: %s\n", what, keel_code_name(keel_status_code(s)), keel_status_message(s));
  keel_status_free(s);
  return 1;
}
