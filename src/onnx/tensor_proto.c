/* TensorProto -> keel_tensor: every data encoding (typed repeated fields, raw_data, external files),
 * validated against dims and limits before anything is allocated. */
#define _GNU_SOURCE /* realpath, pread */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/shape.h"
#include "onnx/onnx_internal.h"

void keel_onnx_tensor_ctx_init(keel_onnx_tensor_ctx *c, const keel_engine_options *opt, const char *base_dir) {
  memset(c, 0, sizeof *c);
  c->max_tensor_elements = KEEL_DEFAULT_MAX_TENSOR_ELEMENTS;
  if (opt && opt->max_tensor_elements) c->max_tensor_elements = opt->max_tensor_elements;
  c->alloc = opt ? opt->allocator : NULL;
  c->base_dir = base_dir;
}

void keel_onnx_tensor_ctx_fini(keel_onnx_tensor_ctx *c) {
  free(c->base_real);
  c->base_real = NULL;
}

keel_dtype keel_onnx_dtype(int32_t t) {
  if (t >= 1 && t <= 26) return (keel_dtype)t; /* 17..26: float8, 4-bit and 2-bit types (stored unpacked) */
  return KEEL_DTYPE_UNDEFINED;
}

const char *keel_onnx_dtype_name(int32_t t) {
  static const char *const names[] = {
      "undefined",   "float32",        "uint8",      "int8",           "uint16",     "int16",
      "int32",       "int64",          "string",     "bool",           "float16",    "float64",
      "uint32",      "uint64",         "complex64",  "complex128",     "bfloat16",   "float8e4m3fn",
      "float8e4m3fnuz", "float8e5m2",  "float8e5m2fnuz", "uint4",      "int4",       "float4e2m1",
      "float8e8m0",  "uint2",          "int2",       "float6e2m3",     "float6e3m2"};
  if (t >= 0 && (size_t)t < sizeof names / sizeof names[0]) return names[t];
  return "unknown";
}

/* ---- wire-format pre-check ---------------------------------------------------------------------- */

static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (*p >= end) return false;
    uint8_t b = *(*p)++;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *out = v;
      return true;
    }
  }
  return false;
}

static int wire_check(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n, int depth) {
  if (depth > KEEL_ONNX_MAX_NESTING) return 1;
  const uint8_t *end = p + n;
  while (p < end) {
    uint64_t key, v;
    if (!read_varint(&p, end, &key)) return 2;
    uint32_t field = (uint32_t)(key >> 3);
    if (field == 0 || (key >> 3) > 0x1fffffff) return 2;
    switch (key & 7) {
    case 0:
      if (!read_varint(&p, end, &v)) return 2;
      break;
    case 1:
      if ((size_t)(end - p) < 8) return 2;
      p += 8;
      break;
    case 5:
      if ((size_t)(end - p) < 4) return 2;
      p += 4;
      break;
    case 2: {
      if (!read_varint(&p, end, &v)) return 2;
      if (v > (uint64_t)(end - p)) return 2;
      const ProtobufCFieldDescriptor *f = d ? protobuf_c_message_descriptor_get_field(d, field) : NULL;
      if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
        int r = wire_check((const ProtobufCMessageDescriptor *)f->descriptor, p, (size_t)v, depth + 1);
        if (r) return r;
      }
      p += v;
      break;
    }
    default: /* groups (3, 4) are not used by ONNX; 6 and 7 do not exist */
      return 2;
    }
  }
  return 0;
}

int keel_onnx_wire_check(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n) {
  return wire_check(d, p, n, 0);
}

/* ---- helpers --------------------------------------------------------------------------------------- */

static bool host_is_big_endian(void) {
  const uint16_t one = 1;
  uint8_t b;
  memcpy(&b, &one, 1);
  return b == 0;
}

/* raw_data and external files are little-endian; swap in place on big-endian hosts. */
static void le_to_host(void *data, size_t n_elems, size_t elem) {
  if (!host_is_big_endian() || elem <= 1) return;
  uint8_t *p = data;
  for (size_t i = 0; i < n_elems; i++, p += elem)
    for (size_t a = 0, b = elem - 1; a < b; a++, b--) {
      uint8_t t = p[a];
      p[a] = p[b];
      p[b] = t;
    }
}

static const char *entry_value(const Onnx__TensorProto *tp, const char *key) {
  for (size_t i = 0; i < tp->n_external_data; i++) {
    const Onnx__StringStringEntryProto *e = tp->external_data[i];
    if (e && e->key && strcmp(e->key, key) == 0) return e->value ? e->value : "";
  }
  return NULL;
}

/* Strict decimal parse (no sign, no spaces, no overflow). */
static bool parse_u64(const char *s, uint64_t *out) {
  if (!s || !*s) return false;
  uint64_t v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return false;
    unsigned d = (unsigned)(*s - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

/* True if `loc` has a ".." component ('/' and '\\' both count as separators: models made on Windows). */
static bool has_dotdot(const char *loc) {
  const char *p = loc;
  while (*p) {
    const char *q = p;
    while (*q && *q != '/' && *q != '\\') q++;
    if (q - p == 2 && p[0] == '.' && p[1] == '.') return true;
    p = *q ? q + 1 : q;
  }
  return false;
}

/* Read `nbytes` at `offset` of the external file named by the tensor into `dst` (dst NULL: only check that
 * the reference is valid and the file holds those bytes). */
static keel_status *read_external(const Onnx__TensorProto *tp, const char *what, keel_onnx_tensor_ctx *c,
                                  void *dst, size_t nbytes) {
  const char *loc = entry_value(tp, "location");
  if (!loc || !*loc)
    return keel_error(KEEL_INVALID_MODEL, "%s: external data without a 'location' entry", what);
  if (!c->base_dir)
    return keel_error(KEEL_INVALID_ARGUMENT,
                      "%s: external data file '%s' cannot be resolved: the model was loaded from memory "
                      "without a base directory",
                      what, loc);
  uint64_t offset = 0, length = 0;
  const char *s_off = entry_value(tp, "offset"), *s_len = entry_value(tp, "length");
  if (s_off && !parse_u64(s_off, &offset))
    return keel_error(KEEL_INVALID_MODEL, "%s: external data offset '%s' is not a non-negative integer", what,
                      s_off);
  if (s_len && !parse_u64(s_len, &length))
    return keel_error(KEEL_INVALID_MODEL, "%s: external data length '%s' is not a non-negative integer", what,
                      s_len);
  if (s_len && length != (uint64_t)nbytes)
    return keel_error(KEEL_INVALID_MODEL,
                      "%s: external data length %llu in '%s' does not match the %zu bytes its dims and dtype "
                      "need",
                      what, (unsigned long long)length, loc, nbytes);
  if (loc[0] == '/' || loc[0] == '\\')
    return keel_error(KEEL_INVALID_MODEL, "%s: external data path '%s' is absolute; only paths inside the "
                      "model's folder are allowed", what, loc);
  if (has_dotdot(loc))
    return keel_error(KEEL_INVALID_MODEL,
                      "%s: external data path '%s' contains '..'; only paths inside the model's folder are "
                      "allowed",
                      what, loc);
  if (!c->base_real) {
    c->base_real = realpath(c->base_dir, NULL);
    if (!c->base_real)
      return keel_error(KEEL_IO_ERROR, "%s: model folder '%s' for external data: %s", what, c->base_dir,
                        strerror(errno));
  }
  size_t blen = strlen(c->base_real), llen = strlen(loc);
  char *joined = malloc(blen + llen + 2);
  if (!joined) return keel_error(KEEL_OUT_OF_MEMORY, "%s: out of memory", what);
  memcpy(joined, c->base_real, blen);
  joined[blen] = '/';
  memcpy(joined + blen + 1, loc, llen + 1);
  char *real = realpath(joined, NULL);
  int err = errno;
  free(joined);
  if (!real)
    return keel_error(KEEL_IO_ERROR, "%s: external data file '%s' (in '%s'): %s", what, loc, c->base_dir,
                      strerror(err));
  /* Symlinks may point anywhere: the resolved path must still be inside the resolved base folder. */
  bool inside = strncmp(real, c->base_real, blen) == 0 &&
                (real[blen] == '/' || (blen == 1 && c->base_real[0] == '/'));
  if (!inside) {
    keel_status *s = keel_error(KEEL_INVALID_MODEL,
                                "%s: external data file '%s' resolves to '%s', outside the model's folder '%s'",
                                what, loc, real, c->base_real);
    free(real);
    return s;
  }
  int fd = open(real, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    keel_status *s = keel_error(KEEL_IO_ERROR, "%s: cannot open external data file '%s': %s", what, loc,
                                strerror(errno));
    free(real);
    return s;
  }
  free(real);
  keel_status *st = NULL;
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    st = keel_error(KEEL_IO_ERROR, "%s: cannot stat external data file '%s': %s", what, loc, strerror(errno));
    goto done;
  }
  if (!S_ISREG(sb.st_mode)) {
    st = keel_error(KEEL_INVALID_MODEL, "%s: external data file '%s' is not a regular file", what, loc);
    goto done;
  }
  uint64_t fsize = (uint64_t)sb.st_size;
  if (offset > fsize || (uint64_t)nbytes > fsize - offset) {
    st = keel_error(KEEL_INVALID_MODEL,
                    "%s: external data in '%s' at offset %llu needs %zu bytes but the file has %llu bytes",
                    what, loc, (unsigned long long)offset, nbytes, (unsigned long long)fsize);
    goto done;
  }
  size_t got = 0;
  while (dst && got < nbytes) { /* dst NULL: validate the reference only */
    ssize_t r = pread(fd, (char *)dst + got, nbytes - got, (off_t)(offset + got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      st = keel_error(KEEL_IO_ERROR, "%s: reading external data file '%s' failed at byte %llu: %s", what,
                      loc, (unsigned long long)(offset + got), r < 0 ? strerror(errno) : "unexpected end");
      goto done;
    }
    got += (size_t)r;
  }
done:
  close(fd);
  return st;
}

/* Which typed field an ONNX dtype uses, and its element count in `tp`. */
static const char *typed_field(const Onnx__TensorProto *tp, keel_dtype dt, size_t *count) {
  switch (dt) {
  case KEEL_FLOAT32: *count = tp->n_float_data; return "float_data";
  case KEEL_INT32: case KEEL_INT16: case KEEL_INT8: case KEEL_UINT16: case KEEL_UINT8: case KEEL_BOOL:
  case KEEL_FLOAT16: case KEEL_BFLOAT16:
  case KEEL_FLOAT8E4M3FN: case KEEL_FLOAT8E4M3FNUZ: case KEEL_FLOAT8E5M2: case KEEL_FLOAT8E5M2FNUZ:
  case KEEL_FLOAT8E8M0: case KEEL_UINT4: case KEEL_INT4: case KEEL_FLOAT4E2M1: case KEEL_UINT2: case KEEL_INT2:
    *count = tp->n_int32_data; return "int32_data";
  case KEEL_INT64: *count = tp->n_int64_data; return "int64_data";
  case KEEL_FLOAT64: *count = tp->n_double_data; return "double_data";
  case KEEL_UINT32: case KEEL_UINT64: *count = tp->n_uint64_data; return "uint64_data";
  default: *count = 0; return "?";
  }
}

static void copy_typed(const Onnx__TensorProto *tp, keel_dtype dt, void *dst, size_t n) {
  switch (dt) {
  case KEEL_FLOAT32: memcpy(dst, tp->float_data, n * sizeof(float)); break;
  case KEEL_INT32: memcpy(dst, tp->int32_data, n * sizeof(int32_t)); break;
  case KEEL_INT64: memcpy(dst, tp->int64_data, n * sizeof(int64_t)); break;
  case KEEL_FLOAT64: memcpy(dst, tp->double_data, n * sizeof(double)); break;
  case KEEL_UINT64: memcpy(dst, tp->uint64_data, n * sizeof(uint64_t)); break;
  case KEEL_UINT32:
    for (size_t i = 0; i < n; i++) ((uint32_t *)dst)[i] = (uint32_t)tp->uint64_data[i];
    break;
  case KEEL_INT16:
    for (size_t i = 0; i < n; i++) ((int16_t *)dst)[i] = (int16_t)tp->int32_data[i];
    break;
  case KEEL_UINT16: case KEEL_FLOAT16: case KEEL_BFLOAT16: /* half types: the bits, in the low 16 bits */
    for (size_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = (uint16_t)tp->int32_data[i];
    break;
  case KEEL_INT8:
    for (size_t i = 0; i < n; i++) ((int8_t *)dst)[i] = (int8_t)tp->int32_data[i];
    break;
  case KEEL_UINT8:
    for (size_t i = 0; i < n; i++) ((uint8_t *)dst)[i] = (uint8_t)tp->int32_data[i];
    break;
  case KEEL_BOOL:
    for (size_t i = 0; i < n; i++) ((uint8_t *)dst)[i] = tp->int32_data[i] != 0;
    break;
  default:
    if (keel_dtype_is_narrow(dt)) /* one element per int32 (callers unpack the packed form) */
      for (size_t i = 0; i < n; i++) ((uint8_t *)dst)[i] = keel_narrow_canonical(dt, (uint8_t)tp->int32_data[i]);
    break;
  }
}

/* Strings live only in string_data (one bytes field per element); raw and external data cannot hold them. */
static keel_status *string_from_proto(const Onnx__TensorProto *tp, const char *what, const int64_t *dims, int ndim,
                                      int64_t numel, keel_onnx_tensor_ctx *c, keel_tensor **out) {
  bool external = tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
  if (external || tp->has_raw_data || tp->raw_data.len > 0)
    return keel_error(KEEL_INVALID_MODEL, "%s: string tensors store their data in string_data, not raw or external data",
                      what);
  if (tp->n_string_data != (size_t)numel)
    return keel_error(KEEL_INVALID_MODEL, "%s: string_data has %zu values but the shape needs %lld", what,
                      tp->n_string_data, (long long)numel);
  keel_tensor *t;
  KEEL_TRY(keel_tensor_create(KEEL_STRING, dims, ndim, c->alloc, &t));
  keel_string *e = keel_tensor_data(t);
  for (size_t i = 0; i < tp->n_string_data; i++)
    if (keel_string_assign(&e[i], (const char *)tp->string_data[i].data, tp->string_data[i].len)) {
      keel_tensor_release(t);
      return keel_error(KEEL_OUT_OF_MEMORY, "%s: out of memory decoding string %zu", what, i);
    }
  *out = t;
  return NULL;
}

keel_status *keel_onnx_tensor_from_proto(const Onnx__TensorProto *tp, const char *what, keel_onnx_tensor_ctx *c,
                                         keel_tensor **out) {
  *out = NULL;
  if (!tp->has_data_type || tp->data_type == 0)
    return keel_error(KEEL_INVALID_MODEL, "%s: tensor has no data_type", what);
  keel_dtype dt = keel_onnx_dtype(tp->data_type);
  if (dt == KEEL_DTYPE_UNDEFINED || dt == KEEL_COMPLEX64 || dt == KEEL_COMPLEX128)
    return keel_error(KEEL_UNSUPPORTED, "%s: tensors of type %s (%d) are not supported", what,
                      keel_onnx_dtype_name(tp->data_type), (int)tp->data_type);
  if (tp->n_dims > KEEL_MAX_DIMS)
    return keel_error(KEEL_UNSUPPORTED, "%s: rank %zu exceeds keel's maximum of %d", what, tp->n_dims,
                      KEEL_MAX_DIMS);
  int ndim = (int)tp->n_dims;
  int64_t dims[KEEL_MAX_DIMS];
  for (int i = 0; i < ndim; i++) {
    dims[i] = tp->dims[i];
    if (dims[i] < 0)
      return keel_error(KEEL_INVALID_MODEL, "%s: dimension %d is negative (%lld)", what, i, (long long)dims[i]);
  }
  char shp[128];
  keel_shape_format(dims, ndim, shp, sizeof shp);
  int64_t numel;
  if (!keel_shape_numel(dims, ndim, &numel))
    return keel_error(KEEL_INVALID_MODEL, "%s: element count of shape %s overflows", what, shp);
  if ((uint64_t)numel > c->max_tensor_elements)
    return keel_error(KEEL_OUT_OF_MEMORY,
                      "%s: shape %s declares %lld elements, above the limit of %llu (max_tensor_elements)", what,
                      shp, (long long)numel, (unsigned long long)c->max_tensor_elements);
  size_t esize = keel_dtype_size(dt), nbytes;
  if (esize == 0 || !keel_shape_nbytes(numel, esize, &nbytes))
    return keel_error(KEEL_INVALID_MODEL, "%s: byte size of %s %s overflows", what, keel_dtype_name(dt), shp);
  if (tp->segment)
    return keel_error(KEEL_UNSUPPORTED, "%s: segmented tensors are not supported", what);
  if (dt == KEEL_STRING) return string_from_proto(tp, what, dims, ndim, numel, c, out);

  bool external = tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
  bool raw = !external && (tp->has_raw_data || tp->raw_data.len > 0);
  /* 4-bit and 2-bit types are packed in the file (pf elements a byte, first in the low bits); keel holds
   * them one a byte, so `stored` (the file's bytes) can be less than nbytes. */
  const int pf = keel_dtype_pack_factor(dt);
  const size_t stored = pf > 1 ? (size_t)((numel + pf - 1) / pf) : nbytes;
  bool packed_typed = false;
  size_t n_typed = 0;
  const char *field = NULL;
  if (external) {
    /* checked when the file is read */
  } else if (raw) {
    if (tp->raw_data.len != stored)
      return keel_error(KEEL_INVALID_MODEL, "%s: raw_data has %zu bytes but %s %s needs %zu", what,
                        tp->raw_data.len, keel_dtype_name(dt), shp, stored);
  } else {
    field = typed_field(tp, dt, &n_typed);
    /* The proto packs 4-/2-bit values in int32_data too (one packed byte per int32); one value per int32
     * is accepted as well (the two readings agree when they coincide, for a single element). */
    if (pf > 1 && n_typed == stored && n_typed != (size_t)numel) packed_typed = true;
    if (n_typed != (size_t)numel && !packed_typed) {
      size_t other = tp->n_float_data + tp->n_int32_data + tp->n_int64_data + tp->n_double_data +
                     tp->n_uint64_data + tp->n_string_data;
      if (n_typed == 0 && other > 0)
        return keel_error(KEEL_INVALID_MODEL, "%s: %s tensors store their data in %s, but this one has %zu "
                          "values in another field", what, keel_dtype_name(dt), field, other);
      return keel_error(KEEL_INVALID_MODEL, "%s: %s has %zu values but %s %s needs %lld", what, field, n_typed,
                        keel_dtype_name(dt), shp, pf > 1 ? (long long)stored : (long long)numel);
    }
  }

  /* A bad external reference must fail before the (possibly large) tensor is allocated. */
  if (external && nbytes > 0) KEEL_TRY(read_external(tp, what, c, NULL, stored));
  keel_tensor *t = NULL;
  KEEL_TRY(keel_tensor_create(dt, dims, ndim, c->alloc, &t));
  uint8_t *dst = keel_tensor_data(t);
  bool unpack = false; /* dst[0, stored) holds packed bytes to spread over dst[0, numel) */
  if (nbytes > 0) {
    if (external) {
      keel_status *s = read_external(tp, what, c, dst, stored);
      if (s) {
        keel_tensor_release(t);
        return s;
      }
      le_to_host(dst, (size_t)numel, esize);
      unpack = pf > 1;
    } else if (raw) {
      memcpy(dst, tp->raw_data.data, stored);
      le_to_host(dst, (size_t)numel, esize);
      unpack = pf > 1;
    } else if (packed_typed) {
      for (size_t i = 0; i < stored; i++) dst[i] = (uint8_t)tp->int32_data[i];
      unpack = true;
    } else {
      copy_typed(tp, dt, dst, (size_t)numel);
    }
    if (unpack) {
      /* Backwards, in place: element i reads byte i/pf <= i, and later (lower) elements never read byte i. */
      const int bits = 8 / pf;
      const uint8_t mask = (uint8_t)((1u << bits) - 1);
      for (size_t i = (size_t)numel; i-- > 0;)
        dst[i] = keel_narrow_canonical(dt, (uint8_t)((dst[i / (size_t)pf] >> (bits * (int)(i % (size_t)pf))) & mask));
    }
    if (dt == KEEL_BOOL && (external || raw)) /* keel's bools are exactly 0 or 1 */
      for (size_t i = 0; i < nbytes; i++) dst[i] = dst[i] != 0;
  } else if (external) {
    /* Empty tensor: still validate the reference so bad paths are reported consistently. */
    keel_status *s = read_external(tp, what, c, NULL, 0);
    if (s) {
      keel_tensor_release(t);
      return s;
    }
  }
  *out = t;
  return NULL;
}
