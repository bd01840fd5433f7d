/* `keel test`: run ONNX backend-style test cases (model.onnx + test_data_set_N/{input,output}_N.pb) and
 * compare outputs with a tolerance. One line per case, then a summary; exit 0 only if nothing failed. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <keel/keel.h>

#include "cli.h"
#include "onnx/onnx_import.h"
#include "runtime/engine_internal.h"
#include "runtime/interp.h"
#include "runtime/interp_seq.h"


typedef struct test_opts {
  double rtol, atol;
  bool quiet, list_failing;
} test_opts;

typedef struct skip_entry {
  char *name, *reason;
} skip_entry;

typedef struct str_list {
  char **v;
  size_t n, cap;
} str_list;

static bool list_push(str_list *l, char *s) {
  if (l->n == l->cap) {
    size_t nc = l->cap ? l->cap * 2 : 16;
    char **nv = realloc(l->v, nc * sizeof *nv);
    if (!nv) return false;
    l->v = nv;
    l->cap = nc;
  }
  l->v[l->n++] = s;
  return true;
}

static void list_free(str_list *l) {
  for (size_t i = 0; i < l->n; i++) free(l->v[i]);
  free(l->v);
  memset(l, 0, sizeof *l);
}

static char *path_join(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  while (la > 1 && a[la - 1] == '/') la--;
  char *r = malloc(la + lb + 2);
  if (!r) return NULL;
  memcpy(r, a, la);
  r[la] = '/';
  memcpy(r + la + 1, b, lb + 1);
  return r;
}

static bool is_file(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static bool is_dir(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Case name: the folder's basename (trailing slashes ignored). Writes into buf. */
static const char *case_name(const char *dir, char *buf, size_t size) {
  size_t n = strlen(dir);
  while (n > 1 && dir[n - 1] == '/') n--;
  size_t start = n;
  while (start > 0 && dir[start - 1] != '/') start--;
  size_t len = n - start;
  if (len >= size) len = size - 1;
  memcpy(buf, dir + start, len);
  buf[len] = '\0';
  return buf;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sort "test_data_set_10" after "test_data_set_9". */
static int cmp_natural(const void *pa, const void *pb) {
  const char *a = *(char *const *)pa, *b = *(char *const *)pb;
  size_t la = strlen(a), lb = strlen(b);
  if (la != lb) return la < lb ? -1 : 1;
  return strcmp(a, b);
}

/* Subfolders of `dir` whose name starts with `prefix` (all if NULL), sorted. */
static bool list_subdirs(const char *dir, const char *prefix, str_list *out, bool natural) {
  DIR *d = opendir(dir);
  if (!d) return false;
  struct dirent *e;
  bool ok = true;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    if (prefix && strncmp(e->d_name, prefix, strlen(prefix)) != 0) continue;
    char *p = path_join(dir, e->d_name);
    if (!p) {
      ok = false;
      break;
    }
    if (!is_dir(p) || !list_push(out, p)) {
      free(p);
      continue;
    }
  }
  closedir(d);
  if (out->n) qsort(out->v, out->n, sizeof *out->v, natural ? cmp_natural : cmp_str);
  return ok;
}

/* ---- comparison ------------------------------------------------------------------------------------ */

static bool is_float_type(keel_dtype t) {
  return t == KEEL_FLOAT32 || t == KEEL_FLOAT64 || t == KEEL_FLOAT16 || t == KEEL_BFLOAT16;
}

static double get_f(const void *p, keel_dtype t, size_t i) {
  switch (t) {
  case KEEL_FLOAT32: return ((const float *)p)[i];
  case KEEL_FLOAT64: return ((const double *)p)[i];
  case KEEL_FLOAT16: return keel_half_to_float(((const uint16_t *)p)[i]);
  case KEEL_BFLOAT16: return keel_bfloat16_to_float(((const uint16_t *)p)[i]);
  default: /* float8 / float4 codes */
    return keel_dtype_is_narrow(t) ? keel_fp8_to_float(t, ((const uint8_t *)p)[i]) : 0;
  }
}

/* float8/float4 codes: compared exactly, by value (so the several nan codes of e5m2 count as one). */
static bool is_fp_narrow(keel_dtype t) {
  return t == KEEL_FLOAT8E4M3FN || t == KEEL_FLOAT8E4M3FNUZ || t == KEEL_FLOAT8E5M2 || t == KEEL_FLOAT8E5M2FNUZ ||
         t == KEEL_FLOAT4E2M1 || t == KEEL_FLOAT8E8M0;
}

static bool is_unsigned(keel_dtype t) {
  return t == KEEL_UINT8 || t == KEEL_UINT16 || t == KEEL_UINT32 || t == KEEL_UINT64 || t == KEEL_BOOL ||
         t == KEEL_UINT4 || t == KEEL_UINT2;
}

/* Integers widened to 64 bits (unsigned ones as uint64 bits). */
static uint64_t get_i(const void *p, keel_dtype t, size_t i) {
  switch (t) {
  case KEEL_INT8: return (uint64_t)(int64_t)((const int8_t *)p)[i];
  case KEEL_INT16: return (uint64_t)(int64_t)((const int16_t *)p)[i];
  case KEEL_INT32: return (uint64_t)(int64_t)((const int32_t *)p)[i];
  case KEEL_INT64: return (uint64_t)((const int64_t *)p)[i];
  case KEEL_UINT8: return ((const uint8_t *)p)[i];
  case KEEL_BOOL: return ((const uint8_t *)p)[i] != 0;
  case KEEL_UINT16: return ((const uint16_t *)p)[i];
  case KEEL_UINT32: return ((const uint32_t *)p)[i];
  case KEEL_UINT64: return ((const uint64_t *)p)[i];
  case KEEL_INT4: case KEEL_INT2: case KEEL_UINT4: case KEEL_UINT2: /* masked, sign-extended */
    return (uint64_t)(int64_t)keel_narrow_int_value(t, ((const uint8_t *)p)[i]);
  default: return 0;
  }
}

static void fmt_i(char *buf, size_t n, uint64_t v, keel_dtype t) {
  if (is_unsigned(t))
    snprintf(buf, n, "%llu", (unsigned long long)v);
  else
    snprintf(buf, n, "%lld", (long long)(int64_t)v);
}

static bool float_close(double g, double x, double rtol, double atol) {
  if (isnan(x) || isnan(g)) return isnan(x) && isnan(g);
  if (isinf(x) || isinf(g)) return g == x;
  return fabs(g - x) <= atol + rtol * fabs(x);
}

/* Index as "[i,j,k]" for messages. */
static void fmt_index(char *buf, size_t n, size_t flat, const int64_t *dims, int ndim) {
  int64_t idx[KEEL_MAX_DIMS];
  for (int d = ndim - 1; d >= 0; d--) {
    int64_t dd = dims[d] > 0 ? dims[d] : 1;
    idx[d] = (int64_t)(flat % (uint64_t)dd);
    flat /= (uint64_t)dd;
  }
  size_t w = 0;
  w += (size_t)snprintf(buf + w, n - w, "[");
  for (int d = 0; d < ndim && w < n; d++)
    w += (size_t)snprintf(buf + w, n - w, d ? ",%lld" : "%lld", (long long)idx[d]);
  if (w < n) snprintf(buf + w, n - w, "]");
}

static bool compare_tensor(const keel_tensor *got, const keel_tensor *exp, const char *label, const test_opts *o,
                           char *msg, size_t msz) {
  keel_dtype gt = keel_tensor_dtype(got), et = keel_tensor_dtype(exp);
  char gs[160], es[160];
  if (gt == KEEL_BFLOAT16 && et == KEEL_UINT16) et = KEEL_BFLOAT16; /* see retag_bfloat16 */
  if (gt != et) {
    snprintf(msg, msz, "%s: dtype %s, expected %s", label, keel_dtype_name(gt), keel_dtype_name(et));
    return false;
  }
  int gn = keel_tensor_ndim(got), en = keel_tensor_ndim(exp);
  const int64_t *gd = keel_tensor_dims(got), *ed = keel_tensor_dims(exp);
  bool same = gn == en;
  for (int i = 0; same && i < gn; i++) same = gd[i] == ed[i];
  if (!same) {
    snprintf(msg, msz, "%s: shape %s, expected %s", label, keel_shape_format(gd, gn, gs, sizeof gs),
             keel_shape_format(ed, en, es, sizeof es));
    return false;
  }
  size_t n = (size_t)keel_tensor_numel(exp);
  const void *g = keel_tensor_data_const(got), *x = keel_tensor_data_const(exp);
  size_t bad = 0, first = 0;
  if (is_fp_narrow(et)) {
    for (size_t i = 0; i < n; i++)
      if (!float_close(get_f(g, gt, i), get_f(x, et, i), 0, 0) && bad++ == 0) first = i;
  } else if (is_float_type(et)) {
    for (size_t i = 0; i < n; i++)
      if (!float_close(get_f(g, gt, i), get_f(x, et, i), o->rtol, o->atol) && bad++ == 0) first = i;
  } else if (et == KEEL_STRING) { /* exact bytes */
    for (size_t i = 0; i < n; i++) {
      size_t gl, xl;
      const char *ga = keel_tensor_get_string(got, (int64_t)i, &gl), *xa = keel_tensor_get_string(exp, (int64_t)i, &xl);
      if ((gl != xl || memcmp(ga, xa, gl)) && bad++ == 0) first = i;
    }
  } else if (keel_dtype_size(et) > 0 && et != KEEL_COMPLEX64 && et != KEEL_COMPLEX128) {
    for (size_t i = 0; i < n; i++)
      if (get_i(g, gt, i) != get_i(x, et, i) && bad++ == 0) first = i;
  } else {
    snprintf(msg, msz, "%s: cannot compare tensors of type %s", label, keel_dtype_name(et));
    return false;
  }
  if (!bad) return true;
  char ix[128];
  fmt_index(ix, sizeof ix, first, ed, en);
  if (et == KEEL_STRING) {
    snprintf(gs, sizeof gs, "\"%.60s\"", keel_tensor_get_string(got, (int64_t)first, NULL));
    snprintf(es, sizeof es, "\"%.60s\"", keel_tensor_get_string(exp, (int64_t)first, NULL));
  } else if (is_float_type(et) || is_fp_narrow(et)) {
    snprintf(gs, sizeof gs, "%.9g", get_f(g, gt, first));
    snprintf(es, sizeof es, "%.9g", get_f(x, et, first));
  } else {
    fmt_i(gs, sizeof gs, get_i(g, gt, first), gt);
    fmt_i(es, sizeof es, get_i(x, et, first), et);
  }
  snprintf(msg, msz, "%s: %zu of %zu values differ; first at %s: got %s, expected %s%s", label, bad, n, ix, gs,
           es, is_float_type(et) ? "" : " (exact match required)");
  return false;
}

/* ---- one case ---------------------------------------------------------------------------------------- */

/* Decode "<dir>/<prefix>_<k>.pb" for k = 0, 1, ... until one is missing. */
static bool load_pbs(const char *dir, const char *prefix, keel_tensor ***tensors, char ***names, size_t *count,
                     char *msg, size_t msz) {
  *tensors = NULL;
  *names = NULL;
  *count = 0;
  size_t cap = 0;
  for (size_t k = 0;; k++) {
    char fname[64];
    snprintf(fname, sizeof fname, "%s_%zu.pb", prefix, k);
    char *p = path_join(dir, fname);
    if (!p) {
      snprintf(msg, msz, "out of memory");
      return false;
    }
    if (!is_file(p)) {
      free(p);
      return true;
    }
    if (k == cap) {
      cap = cap ? cap * 2 : 8;
      keel_tensor **nt = realloc(*tensors, cap * sizeof *nt);
      if (nt) *tensors = nt;
      char **nn = realloc(*names, cap * sizeof *nn);
      if (nn) *names = nn;
      if (!nt || !nn) {
        free(p);
        snprintf(msg, msz, "out of memory");
        return false;
      }
    }
    void *data = NULL;
    size_t size = 0;
    keel_status *s = keel_read_file(p, 0, &data, &size);
    keel_tensor *t = NULL;
    char *name = NULL;
    if (!s) s = keel_onnx_decode_tensor(data, size, &t, &name);
    free(data);
    if (s) {
      char cn[256];
      snprintf(msg, msz, "%s/%s: %s", case_name(dir, cn, sizeof cn), fname, keel_status_message(s));
      keel_status_free(s);
      free(p);
      return false;
    }
    free(p);
    (*tensors)[k] = t;
    (*names)[k] = name;
    *count = k + 1;
  }
}

static void free_pbs(keel_tensor **t, char **names, size_t n) {
  for (size_t i = 0; i < n; i++) {
    keel_tensor_release(t[i]);
    free(names[i]);
  }
  free(t);
  free(names);
}

typedef keel_status *(*info_fn)(const keel_engine *, size_t, keel_io_info *);

/* Place decoded tensors into engine slots: by name when the .pb's name is an engine name, else by position. */
static bool match_slots(const keel_engine *e, info_fn info, size_t n_slots, keel_tensor **src, char **names,
                        size_t n_src, keel_tensor **slots, const char *what, char *msg, size_t msz) {
  for (size_t k = 0; k < n_src; k++) {
    size_t slot = k;
    if (names[k]) {
      for (size_t i = 0; i < n_slots; i++) {
        keel_io_info io;
        keel_status *s = info(e, i, &io);
        if (!s && io.name && strcmp(io.name, names[k]) == 0) slot = i;
        keel_status_free(s);
      }
    }
    if (slot >= n_slots) {
      snprintf(msg, msz, "%s_%zu.pb matches no model %s (the model has %zu)", what, k, what, n_slots);
      return false;
    }
    if (slots[slot]) {
      snprintf(msg, msz, "two %s files map to model %s %zu", what, what, slot);
      return false;
    }
    slots[slot] = src[k];
  }
  for (size_t i = 0; i < n_slots; i++)
    if (!slots[i]) {
      keel_io_info io;
      keel_status *s = info(e, i, &io);
      snprintf(msg, msz, "model %s %zu ('%s') has no %s_N.pb file in the data set", what, i,
               !s && io.name ? io.name : "?", what);
      keel_status_free(s);
      return false;
    }
  return true;
}

/* Older ONNX test generators stored bfloat16 data as uint16 tensors (numpy has no bfloat16). Where the
 * model declares bfloat16 and the file holds uint16, reinterpret the bits; the tensor borrows the data. */
static keel_status *retag_bfloat16(const keel_engine *e, size_t i, keel_tensor *t, keel_tensor **out) {
  *out = NULL;
  keel_io_info io;
  keel_status *s = keel_engine_input_info(e, i, &io);
  if (s || io.dtype != KEEL_BFLOAT16 || keel_tensor_dtype(t) != KEEL_UINT16) return s;
  return keel_tensor_wrap(KEEL_BFLOAT16, keel_tensor_dims(t), keel_tensor_ndim(t), keel_tensor_data(t),
                          keel_tensor_nbytes(t), NULL, NULL, out);
}

static bool run_data_set(keel_engine *e, const char *set_dir, const test_opts *o, char *msg, size_t msz) {
  keel_tensor **in_t = NULL, **exp_t = NULL, **ins = NULL, **outs = NULL, **exps = NULL, **retagged = NULL;
  char **in_n = NULL, **exp_n = NULL;
  size_t n_in_f = 0, n_exp_f = 0;
  size_t n_in = keel_engine_input_count(e), n_out = keel_engine_output_count(e);
  bool ok = false;
  char sn[256];
  case_name(set_dir, sn, sizeof sn);
  if (!load_pbs(set_dir, "input", &in_t, &in_n, &n_in_f, msg, msz)) goto done;
  if (!load_pbs(set_dir, "output", &exp_t, &exp_n, &n_exp_f, msg, msz)) goto done;
  ins = calloc(n_in + 1, sizeof *ins);
  outs = calloc(n_out + 1, sizeof *outs);
  exps = calloc(n_out + 1, sizeof *exps);
  retagged = calloc(n_in + 1, sizeof *retagged);
  if (!ins || !outs || !exps || !retagged) {
    snprintf(msg, msz, "out of memory");
    goto done;
  }
  char sub[512];
  if (n_in_f != n_in) {
    snprintf(msg, msz, "%s: %zu input_N.pb files for a model with %zu inputs", sn, n_in_f, n_in);
    goto done;
  }
  if (n_exp_f != n_out) {
    snprintf(msg, msz, "%s: %zu output_N.pb files for a model with %zu outputs", sn, n_exp_f, n_out);
    goto done;
  }
  if (!match_slots(e, keel_engine_input_info, n_in, in_t, in_n, n_in_f, ins, "input", sub, sizeof sub) ||
      !match_slots(e, keel_engine_output_info, n_out, exp_t, exp_n, n_exp_f, exps, "output", sub, sizeof sub)) {
    snprintf(msg, msz, "%s: %s", sn, sub);
    goto done;
  }
  for (size_t i = 0; i < n_in; i++) {
    keel_status *rs = retag_bfloat16(e, i, ins[i], &retagged[i]);
    if (rs) {
      snprintf(msg, msz, "%s: input %zu: %s", sn, i, keel_status_message(rs));
      keel_status_free(rs);
      goto done;
    }
    if (retagged[i]) ins[i] = retagged[i];
  }
  keel_status *s = keel_engine_run(e, ins, n_in, outs, n_out);
  if (s) {
    snprintf(msg, msz, "%s: run: %s: %s", sn, keel_code_name(keel_status_code(s)), keel_status_message(s));
    keel_status_free(s);
    /* A failed run must not leave partial outputs behind. */
    for (size_t i = 0; i < n_out; i++) {
      keel_tensor_release(outs[i]);
      outs[i] = NULL;
    }
    goto done;
  }
  ok = true;
  for (size_t i = 0; i < n_out && ok; i++) {
    keel_io_info io;
    keel_status *is = keel_engine_output_info(e, i, &io);
    char label[300];
    snprintf(label, sizeof label, "%s: output %zu ('%s')", sn, i, !is && io.name ? io.name : "?");
    keel_status_free(is);
    if (!outs[i]) {
      snprintf(msg, msz, "%s: the engine returned no tensor", label);
      ok = false;
    } else {
      ok = compare_tensor(outs[i], exps[i], label, o, msg, msz);
    }
  }
done:
  if (outs)
    for (size_t i = 0; i < n_out; i++) keel_tensor_release(outs[i]);
  free(outs);
  if (retagged)
    for (size_t i = 0; i < n_in; i++) keel_tensor_release(retagged[i]);
  free(retagged);
  free(ins);  /* borrowed from in_t */
  free(exps); /* borrowed from exp_t */
  free_pbs(in_t, in_n, n_in_f);
  free_pbs(exp_t, exp_n, n_exp_f);
  return ok;
}

/* ---- sequences and optionals ----------------------------------------------------------------------------
 * The public API is tensor-only. Models whose graph inputs or outputs are sequences or optionals run here
 * through the interpreter's value interface (keel-internal: runtime/interp.h, keel_interp_run_values).
 * Their test data are SequenceProto / OptionalProto messages (onnx-data.proto), which the generated decoder
 * (from onnx.proto) does not include, so they are read with a small wire-format reader; their tensors go
 * through the usual TensorProto decoder. */

static bool graph_has_values(const keel_graph *g) {
  for (int i = 0; i < g->n_inputs; i++)
    if (g->values[g->inputs[i]].kind != KEEL_VALUE_TENSOR) return true;
  for (int i = 0; i < g->n_outputs; i++)
    if (g->values[g->outputs[i]].kind != KEEL_VALUE_TENSOR) return true;
  return false;
}

static bool pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  *v = 0;
  for (int shift = 0; shift < 64 && *p < end; shift += 7) {
    uint8_t b = *(*p)++;
    *v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return true;
  }
  return false;
}

/* Next field of a message: its number, and for length-delimited fields (wire type 2) the bytes; other wire
 * types are skipped (bytes NULL). Returns 0 at the end, 1 for a field, -1 if malformed. */
static int pb_next(const uint8_t **p, const uint8_t *end, uint32_t *field, const uint8_t **bytes, size_t *len) {
  if (*p >= end) return 0;
  uint64_t key, v;
  if (!pb_varint(p, end, &key)) return -1;
  *field = (uint32_t)(key >> 3);
  *bytes = NULL;
  *len = 0;
  switch (key & 7) {
  case 0: return pb_varint(p, end, &v) ? 1 : -1;
  case 1: if (end - *p < 8) return -1; *p += 8; return 1;
  case 5: if (end - *p < 4) return -1; *p += 4; return 1;
  case 2:
    if (!pb_varint(p, end, &v) || v > (uint64_t)(end - *p)) return -1;
    *bytes = *p;
    *len = (size_t)v;
    *p += v;
    return 1;
  default: return -1;
  }
}

/* name (field 1) of a SequenceProto/OptionalProto, malloc'd, or NULL. */
static char *pb_name(const uint8_t *b, size_t len) {
  char *r = malloc(len + 1);
  if (r) {
    memcpy(r, b, len);
    r[len] = '\0';
  }
  return r;
}

static bool decode_sequence(const uint8_t *p, size_t n, keel_dtype elem, keel_ivalue **out, char **name, char *msg,
                            size_t msz) {
  const uint8_t *end = p + n, *b;
  size_t len;
  uint32_t f;
  int r;
  keel_ivalue *s = keel_iv_seq(elem, 0);
  if (!s) {
    snprintf(msg, msz, "out of memory");
    return false;
  }
  while ((r = pb_next(&p, end, &f, &b, &len)) > 0) {
    if (f == 1 && b && name && !*name) *name = pb_name(b, len);
    if (f == 3 && b) { /* tensor_values */
      keel_tensor *t = NULL;
      keel_status *st = keel_onnx_decode_tensor(b, len, &t, NULL);
      if (st) {
        snprintf(msg, msz, "sequence element %lld: %s", (long long)s->n, keel_status_message(st));
        keel_status_free(st);
        keel_iv_release(s);
        return false;
      }
      bool ok = keel_iv_seq_push(s, t);
      keel_tensor_release(t);
      if (!ok) {
        snprintf(msg, msz, "out of memory");
        keel_iv_release(s);
        return false;
      }
    } else if (f >= 4 && f <= 7) {
      snprintf(msg, msz, "sequences of sparse tensors, sequences, maps or optionals are not supported");
      keel_iv_release(s);
      return false;
    }
  }
  if (r < 0) {
    snprintf(msg, msz, "not a valid SequenceProto (%zu bytes)", n);
    keel_iv_release(s);
    return false;
  }
  *out = s;
  return true;
}

/* Decode one test-data file as the declared kind of its graph input/output. */
static bool decode_value(const uint8_t *p, size_t n, const keel_value *decl, keel_ivalue **out, char **name,
                         char *msg, size_t msz) {
  *out = NULL;
  *name = NULL;
  if (decl->kind == KEEL_VALUE_TENSOR) {
    keel_tensor *t = NULL;
    keel_status *st = keel_onnx_decode_tensor(p, n, &t, name);
    if (st) {
      snprintf(msg, msz, "%s", keel_status_message(st));
      keel_status_free(st);
      return false;
    }
    if (!(*out = keel_iv_tensor(t))) snprintf(msg, msz, "out of memory");
    return *out != NULL;
  }
  if (decl->kind == KEEL_VALUE_SEQUENCE) return decode_sequence(p, n, decl->dtype, out, name, msg, msz);
  /* OptionalProto: tensor_value (3) or sequence_value (5); neither: empty. */
  const uint8_t *end = p + n, *b;
  size_t len;
  uint32_t f;
  int r;
  while ((r = pb_next(&p, end, &f, &b, &len)) > 0 && !*out) {
    if (f == 1 && b && !*name) *name = pb_name(b, len);
    if (f == 3 && b) {
      keel_value tv = *decl;
      tv.kind = KEEL_VALUE_TENSOR;
      char *ignored = NULL;
      bool ok = decode_value(b, len, &tv, out, &ignored, msg, msz);
      free(ignored);
      if (!ok) return false;
    } else if (f == 5 && b) {
      if (!decode_sequence(b, len, decl->dtype, out, NULL, msg, msz)) return false;
    } else if ((f == 4 || f >= 6) && b) {
      snprintf(msg, msz, "optionals of sparse tensors, maps or optionals are not supported");
      return false;
    }
  }
  if (r < 0) {
    keel_iv_release(*out);
    *out = NULL;
    snprintf(msg, msz, "not a valid OptionalProto (%zu bytes)", n);
    return false;
  }
  if (!*out && !(*out = keel_iv_none())) snprintf(msg, msz, "out of memory");
  return *out != NULL;
}

/* Load "<dir>/<prefix>_<k>.pb" for each of the graph's `n` values `ids`, placed by name when the file names
 * one of them, else by position. */
static bool load_values(const char *dir, const char *prefix, const keel_graph *g, const int *ids, int n,
                        keel_ivalue **vals, char *msg, size_t msz) {
  for (int k = 0; k < n; k++) {
    char fname[64], sub[400];
    snprintf(fname, sizeof fname, "%s_%d.pb", prefix, k);
    char *p = path_join(dir, fname);
    if (!p) {
      snprintf(msg, msz, "out of memory");
      return false;
    }
    void *data = NULL;
    size_t size = 0;
    keel_status *s = is_file(p) ? keel_read_file(p, 0, &data, &size) : keel_error(KEEL_INVALID_ARGUMENT, "missing");
    free(p);
    if (s) {
      snprintf(msg, msz, "%s: %s", fname, keel_status_message(s));
      keel_status_free(s);
      return false;
    }
    /* The file's name decides the slot; decode as the positional slot's kind first to read the name. */
    int slot = k;
    keel_ivalue *v = NULL;
    char *name = NULL;
    bool ok = decode_value(data, size, &g->values[ids[k]], &v, &name, sub, sizeof sub);
    if (ok && name && strcmp(name, g->values[ids[k]].name) != 0) {
      for (int i = 0; i < n; i++)
        if (!strcmp(name, g->values[ids[i]].name)) slot = i;
      if (slot != k) {
        keel_iv_release(v);
        free(name);
        name = NULL;
        ok = decode_value(data, size, &g->values[ids[slot]], &v, &name, sub, sizeof sub);
      }
    }
    free(data);
    free(name);
    if (!ok) {
      snprintf(msg, msz, "%s: %s", fname, sub);
      return false;
    }
    if (vals[slot]) {
      keel_iv_release(v);
      snprintf(msg, msz, "two %s files map to %s %d", prefix, prefix, slot);
      return false;
    }
    vals[slot] = v;
  }
  return true;
}

static bool compare_value(const keel_ivalue *got, const keel_ivalue *exp, const char *label, const test_opts *o,
                          char *msg, size_t msz) {
  if (!got || got->kind != exp->kind) {
    snprintf(msg, msz, "%s: got %s, expected %s", label, keel_iv_kind_name(got), keel_iv_kind_name(exp));
    return false;
  }
  if (got->kind == KEEL_IV_TENSOR) return compare_tensor(got->t, exp->t, label, o, msg, msz);
  if (got->kind == KEEL_IV_NONE) return true;
  if (got->n != exp->n) {
    snprintf(msg, msz, "%s: sequence of %lld tensors, expected %lld", label, (long long)got->n, (long long)exp->n);
    return false;
  }
  for (int64_t i = 0; i < got->n; i++) {
    char el[400];
    snprintf(el, sizeof el, "%s element %lld", label, (long long)i);
    if (!compare_tensor(got->items[i], exp->items[i], el, o, msg, msz)) return false;
  }
  return true;
}

static bool run_data_set_values(keel_engine *e, const char *set_dir, const test_opts *o, char *msg, size_t msz) {
  const keel_graph *g = e->graph;
  char sn[256], sub[512];
  case_name(set_dir, sn, sizeof sn);
  keel_ivalue **ins = calloc((size_t)g->n_inputs + 1, sizeof *ins);
  keel_ivalue **exps = calloc((size_t)g->n_outputs + 1, sizeof *exps);
  keel_ivalue **outs = calloc((size_t)g->n_outputs + 1, sizeof *outs);
  bool ok = false;
  if (!ins || !exps || !outs) {
    snprintf(msg, msz, "out of memory");
    goto done;
  }
  if (!load_values(set_dir, "input", g, g->inputs, g->n_inputs, ins, sub, sizeof sub) ||
      !load_values(set_dir, "output", g, g->outputs, g->n_outputs, exps, sub, sizeof sub)) {
    snprintf(msg, msz, "%s: %s", sn, sub);
    goto done;
  }
  keel_status *s = keel_interp_run_values(g, ins, g->n_inputs, outs, e->options.allocator);
  if (s) {
    snprintf(msg, msz, "%s: run: %s: %s", sn, keel_code_name(keel_status_code(s)), keel_status_message(s));
    keel_status_free(s);
    goto done;
  }
  ok = true;
  for (int i = 0; i < g->n_outputs && ok; i++) {
    char label[300];
    snprintf(label, sizeof label, "%s: output %d ('%s')", sn, i, g->values[g->outputs[i]].name);
    ok = compare_value(outs[i], exps[i], label, o, msg, msz);
  }
done:
  for (int i = 0; ins && i < g->n_inputs; i++) keel_iv_release(ins[i]);
  for (int i = 0; outs && i < g->n_outputs; i++) keel_iv_release(outs[i]);
  for (int i = 0; exps && i < g->n_outputs; i++) keel_iv_release(exps[i]);
  free(ins);
  free(outs);
  free(exps);
  return ok;
}

/* Returns true if the case passes; otherwise `msg` says why. */
static bool run_case(const char *dir, const test_opts *o, char *msg, size_t msz) {
  char *model = path_join(dir, "model.onnx");
  if (!model) {
    snprintf(msg, msz, "out of memory");
    return false;
  }
  keel_engine *e = NULL;
  keel_status *s = keel_engine_load_file(model, NULL, &e);
  free(model);
  if (s) {
    snprintf(msg, msz, "load: %s: %s", keel_code_name(keel_status_code(s)), keel_status_message(s));
    keel_status_free(s);
    return false;
  }
  str_list sets = {0};
  bool ok = list_subdirs(dir, "test_data_set_", &sets, true);
  if (!ok) {
    snprintf(msg, msz, "cannot list '%s': %s", dir, strerror(errno));
  } else if (sets.n == 0) {
    snprintf(msg, msz, "no test_data_set_* folder");
    ok = false;
  }
  bool values = graph_has_values(e->graph); /* sequences/optionals: keel-internal value path */
  for (size_t i = 0; ok && i < sets.n; i++)
    ok = values ? run_data_set_values(e, sets.v[i], o, msg, msz) : run_data_set(e, sets.v[i], o, msg, msz);
  list_free(&sets);
  keel_engine_release(e);
  return ok;
}

/* ---- skip list and driver ------------------------------------------------------------------------ */

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t') s++;
  size_t n = strlen(s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) s[--n] = '\0';
  return s;
}

static bool load_skip_list(const char *path, skip_entry **out, size_t *count) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "keel test: cannot open skip list '%s': %s\n", path, strerror(errno));
    return false;
  }
  char *line = NULL;
  size_t lcap = 0, cap = 0;
  bool ok = true;
  while (getline(&line, &lcap, f) >= 0) {
    char *hash = strchr(line, '#');
    const char *reason = "in skip list";
    if (hash) {
      *hash = '\0';
      char *r = trim(hash + 1);
      if (*r) reason = r;
    }
    char *name = trim(line);
    if (!*name) continue;
    char *sp = name + strcspn(name, " \t");
    *sp = '\0';
    if (*count == cap) {
      cap = cap ? cap * 2 : 32;
      skip_entry *ne = realloc(*out, cap * sizeof *ne);
      if (!ne) {
        ok = false;
        break;
      }
      *out = ne;
    }
    skip_entry *se = &(*out)[*count];
    se->name = strdup(name);
    se->reason = strdup(reason);
    if (!se->name || !se->reason) {
      free(se->name);
      free(se->reason);
      ok = false;
      break;
    }
    (*count)++;
  }
  free(line);
  fclose(f);
  if (!ok) fprintf(stderr, "keel test: out of memory reading '%s'\n", path);
  return ok;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: keel test [--rtol R] [--atol A] [--skip-list FILE] [--quiet] [--list-failing] CASE_DIR...\n"
          "  Each CASE_DIR holds model.onnx and test_data_set_*/input_N.pb, output_N.pb; a folder of such\n"
          "  folders runs them all. Prints PASS/FAIL/SKIP per case and 'N passed, N failed, N skipped'.\n"
          "  --rtol R, --atol A  tolerance |got-expected| <= A + R*|expected| (default 1e-3, 1e-5)\n"
          "  --skip-list FILE    cases to skip, one per line: 'name  # reason'\n"
          "  --quiet             print only failures and the summary\n"
          "  --list-failing      print only the names of failing cases (skipped ones included)\n");
}

static bool parse_double(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !(v >= 0) || isinf(v)) return false;
  *out = v;
  return true;
}

int keel_cmd_test(int argc, char **argv) {
  test_opts o = {.rtol = 1e-3, .atol = 1e-5};
  const char *skip_path = NULL;
  str_list args = {0}, cases = {0};
  skip_entry *skips = NULL;
  size_t n_skips = 0;
  int rc = 2;
  bool opts_done = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!opts_done && a[0] == '-' && a[1]) {
      const char *val = NULL;
      const char *eq = strchr(a, '=');
      char opt[32];
      size_t ol = eq ? (size_t)(eq - a) : strlen(a);
      if (ol >= sizeof opt) ol = sizeof opt - 1;
      memcpy(opt, a, ol);
      opt[ol] = '\0';
      bool takes = !strcmp(opt, "--rtol") || !strcmp(opt, "--atol") || !strcmp(opt, "--skip-list");
      if (takes) {
        if (eq)
          val = eq + 1;
        else if (i + 1 < argc)
          val = argv[++i];
        else {
          fprintf(stderr, "keel test: %s needs a value\n", opt);
          goto out;
        }
      }
      if (!strcmp(opt, "--")) {
        opts_done = true;
      } else if (!strcmp(opt, "--rtol") || !strcmp(opt, "--atol")) {
        if (!parse_double(val, opt[2] == 'r' ? &o.rtol : &o.atol)) {
          fprintf(stderr, "keel test: %s: '%s' is not a non-negative number\n", opt, val);
          goto out;
        }
      } else if (!strcmp(opt, "--skip-list")) {
        skip_path = val;
      } else if (!strcmp(opt, "--quiet") || !strcmp(opt, "-q")) {
        o.quiet = true;
      } else if (!strcmp(opt, "--list-failing")) {
        o.list_failing = true;
      } else if (!strcmp(opt, "--help") || !strcmp(opt, "-h")) {
        usage(stdout);
        rc = 0;
        goto out;
      } else {
        fprintf(stderr, "keel test: unknown option '%s'\n", a);
        usage(stderr);
        goto out;
      }
      continue;
    }
    char *c = strdup(a);
    if (!c || !list_push(&args, c)) {
      free(c);
      fprintf(stderr, "keel test: out of memory\n");
      goto out;
    }
  }
  if (args.n == 0) {
    usage(stderr);
    goto out;
  }
  if (skip_path && !load_skip_list(skip_path, &skips, &n_skips)) goto out;

  /* A folder without model.onnx whose subfolders are cases stands for all of them. */
  for (size_t i = 0; i < args.n; i++) {
    char *m = path_join(args.v[i], "model.onnx");
    bool direct = m && is_file(m);
    free(m);
    size_t before = cases.n;
    if (!direct && is_dir(args.v[i])) {
      str_list sub = {0};
      list_subdirs(args.v[i], NULL, &sub, false);
      for (size_t k = 0; k < sub.n; k++) {
        char *mm = path_join(sub.v[k], "model.onnx");
        bool has = mm && is_file(mm);
        free(mm);
        if (has && list_push(&cases, sub.v[k]))
          sub.v[k] = NULL;
      }
      list_free(&sub);
    }
    if (cases.n == before) { /* a case (or a broken path: it FAILs with a clear reason) */
      if (!list_push(&cases, args.v[i])) {
        fprintf(stderr, "keel test: out of memory\n");
        goto out;
      }
      args.v[i] = NULL;
    }
  }

  size_t passed = 0, failed = 0, skipped = 0;
  char msg[2048], name[256];
  for (size_t i = 0; i < cases.n; i++) {
    const char *dir = cases.v[i];
    case_name(dir, name, sizeof name);
    const skip_entry *se = NULL;
    for (size_t k = 0; k < n_skips && !se; k++)
      if (!strcmp(skips[k].name, name)) se = &skips[k];
    msg[0] = '\0';
    bool ok = run_case(dir, &o, msg, sizeof msg);
    if (se) {
      skipped++;
      if (ok)
        fprintf(stderr, "warning: skip-list entry '%s' now passes; consider removing it from %s\n", name,
                skip_path);
      if (o.list_failing && !ok) printf("%s\n", name);
      else if (!o.quiet && !o.list_failing) printf("SKIP %s: %s\n", name, se->reason);
    } else if (ok) {
      passed++;
      if (!o.quiet && !o.list_failing) printf("PASS %s\n", name);
    } else {
      failed++;
      if (o.list_failing) printf("%s\n", name);
      else printf("FAIL %s: %s\n", name, msg);
    }
    fflush(stdout);
  }
  fprintf(o.list_failing ? stderr : stdout, "%zu passed, %zu failed, %zu skipped\n", passed, failed, skipped);
  rc = failed ? 1 : 0;
out:
  for (size_t k = 0; k < n_skips; k++) {
    free(skips[k].name);
    free(skips[k].reason);
  }
  free(skips);
  list_free(&args);
  list_free(&cases);
  return rc;
}
