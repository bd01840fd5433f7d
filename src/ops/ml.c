/* Classical-ML and text operators: ai.onnx.ml LabelEncoder, Binarizer, ArrayFeatureExtractor (TreeEnsemble is
 * in ops/ml_tree.c) and the default-domain TfIdfVectorizer.
 *
 * LabelEncoder and TfIdfVectorizer look keys up in hash tables of int32 slots built per call in the planned
 * workspace (kernels never allocate). Operators here that make string tensors (LabelEncoder to strings,
 * ArrayFeatureExtractor on strings) own their output elements' bytes like the string kernels of ops/string.c
 * (see ops/string_ops.h): the interpreter treats every operator of this family as OWNED. */
#include <math.h>

#include "ops/op.h"

#define ML "ai.onnx.ml"
#define ML_MAX_OPSET 5 /* highest ai.onnx.ml opset onnx 1.22 defines */

static keel_status *oom_str(void) { return keel_error(KEEL_OUT_OF_MEMORY, "out of memory building a string"); }

/* ---- typed lists: attribute lists, tensor attributes and inputs seen alike ---- */

typedef struct ml_list {
  keel_dtype dt; /* STRING, INT64, INT32, INT16, FLOAT32 or FLOAT64 */
  int64_t n;
  const void *p;
  bool cstr; /* strings given as a char* array (attribute) instead of keel_string records */
} ml_list;

static bool ml_is_real(keel_dtype t) { return t == KEEL_FLOAT32 || t == KEEL_FLOAT64; }
static bool ml_is_int(keel_dtype t) { return t == KEEL_INT64 || t == KEEL_INT32 || t == KEEL_INT16; }
static bool ml_dtype_ok(keel_dtype t) { return t == KEEL_STRING || ml_is_real(t) || ml_is_int(t); }

static const char *ml_str(const ml_list *l, int64_t i, size_t *len) {
  if (l->cstr) {
    const char *s = ((char *const *)l->p)[i];
    *len = s ? strlen(s) : 0;
    return s ? s : "";
  }
  const keel_string *s = &((const keel_string *)l->p)[i];
  *len = s->data ? s->len : 0;
  return s->data ? s->data : "";
}

static int64_t ml_i64(const ml_list *l, int64_t i) {
  switch (l->dt) {
    case KEEL_INT64: return ((const int64_t *)l->p)[i];
    case KEEL_INT32: return ((const int32_t *)l->p)[i];
    default: return ((const int16_t *)l->p)[i];
  }
}

static double ml_f64(const ml_list *l, int64_t i) {
  return l->dt == KEEL_FLOAT32 ? (double)((const float *)l->p)[i] : ((const double *)l->p)[i];
}

static uint64_t mix64(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  return h ^ (h >> 33);
}

static uint64_t ml_hash(const ml_list *l, int64_t i) {
  if (l->dt == KEEL_STRING) {
    size_t len;
    const char *s = ml_str(l, i, &len);
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t k = 0; k < len; k++) h = (h ^ (unsigned char)s[k]) * 1099511628211ULL;
    return mix64(h);
  }
  if (ml_is_int(l->dt)) return mix64((uint64_t)ml_i64(l, i));
  double d = ml_f64(l, i);
  if (d != d) d = NAN; /* every NaN matches every NaN */
  if (d == 0) d = 0;   /* and -0 matches 0 */
  uint64_t b;
  memcpy(&b, &d, sizeof b);
  return mix64(b);
}

/* Element equality across two lists of the same kind (both strings, both integers or both reals). */
static bool ml_eq(const ml_list *a, int64_t i, const ml_list *b, int64_t j) {
  if (a->dt == KEEL_STRING) {
    size_t la, lb;
    const char *sa = ml_str(a, i, &la), *sb = ml_str(b, j, &lb);
    return la == lb && !memcmp(sa, sb, la);
  }
  if (ml_is_int(a->dt)) return ml_i64(a, i) == ml_i64(b, j);
  double x = ml_f64(a, i), y = ml_f64(b, j);
  return x == y || (x != x && y != y);
}

static int64_t table_cap(int64_t n) {
  int64_t c = 8;
  while (c < 2 * n) c *= 2;
  return c;
}

/* A list from an attribute: a tensor attribute or a floats/ints/strings list. Returns false if absent. */
static bool list_from_attr(const keel_node *n, const char *name, ml_list *l) {
  const keel_attr *a = keel_node_attr(n, name);
  if (!a) return false;
  memset(l, 0, sizeof *l);
  switch (a->type) {
    case KEEL_ATTR_TENSOR:
      if (!a->t) return false;
      l->dt = keel_tensor_dtype(a->t), l->n = keel_tensor_numel(a->t), l->p = keel_tensor_data_const(a->t);
      return true;
    case KEEL_ATTR_FLOATS: l->dt = KEEL_FLOAT32, l->n = a->n, l->p = a->floats; return true;
    case KEEL_ATTR_INTS: l->dt = KEEL_INT64, l->n = a->n, l->p = a->ints; return true;
    case KEEL_ATTR_STRINGS: l->dt = KEEL_STRING, l->n = a->n, l->p = a->strings, l->cstr = true; return true;
    default: return false;
  }
}

/* Copy element i of src into element o of out (same dtype): strings get their own bytes. */
static keel_status *put_elem(keel_view *out, int64_t o, const ml_list *src, int64_t i) {
  switch (out->dtype) {
    case KEEL_STRING: {
      size_t len;
      const char *s = ml_str(src, i, &len);
      if (keel_string_assign(&((keel_string *)out->data)[o], s, len)) return oom_str();
      return NULL;
    }
    case KEEL_INT64: ((int64_t *)out->data)[o] = ml_i64(src, i); return NULL;
    case KEEL_INT32: ((int32_t *)out->data)[o] = (int32_t)ml_i64(src, i); return NULL;
    case KEEL_INT16: ((int16_t *)out->data)[o] = (int16_t)ml_i64(src, i); return NULL;
    case KEEL_FLOAT32: ((float *)out->data)[o] = (float)ml_f64(src, i); return NULL;
    default: ((double *)out->data)[o] = ml_f64(src, i); return NULL;
  }
}

/* ---- LabelEncoder ---- */

typedef struct {
  bool legacy; /* opset 1: classes_strings maps strings to their index and back */
  ml_list keys, vals, def;
  int64_t def_i;
  float def_f;
  const char *def_s;
} lenc;

static const char *const key_attrs[] = {"keys_tensor", "keys_strings", "keys_int64s", "keys_floats"};
static const char *const val_attrs[] = {"values_tensor", "values_strings", "values_int64s", "values_floats"};

static keel_status *one_of(const keel_node *n, const char *const *names, const char *what, ml_list *l) {
  int found = -1;
  for (int i = 0; i < 4; i++) {
    ml_list t;
    if (!list_from_attr(n, names[i], &t)) continue;
    if (found >= 0)
      return keel_error(KEEL_INVALID_MODEL, "LabelEncoder sets both '%s' and '%s'; exactly one %s_* is allowed",
                        names[found], names[i], what);
    found = i, *l = t;
  }
  if (found < 0) return keel_error(KEEL_INVALID_MODEL, "LabelEncoder needs one of the attributes %s_*", what);
  if (!ml_dtype_ok(l->dt))
    return keel_error(KEEL_UNSUPPORTED, "LabelEncoder %s of element type %s are not supported", what,
                      keel_dtype_name(l->dt));
  return NULL;
}

/* Reads the attributes into e (which must stay where it is: e->def may point into it). */
static keel_status *lenc_get(const keel_node *n, lenc *e) {
  memset(e, 0, sizeof *e);
  if (n->opset <= 1) {
    e->legacy = true;
    if (!list_from_attr(n, "classes_strings", &e->keys) || e->keys.dt != KEEL_STRING)
      return keel_error(KEEL_INVALID_MODEL, "LabelEncoder (opset 1) needs a 'classes_strings' attribute");
    e->def_i = keel_attr_int(n, "default_int64", -1);
    e->def_s = keel_attr_string(n, "default_string", "_Unused");
    return NULL;
  }
  KEEL_TRY(one_of(n, key_attrs, "keys", &e->keys));
  KEEL_TRY(one_of(n, val_attrs, "values", &e->vals));
  if (e->keys.n != e->vals.n)
    return keel_error(KEEL_INVALID_MODEL, "LabelEncoder has %lld keys but %lld values; they must pair up",
                      (long long)e->keys.n, (long long)e->vals.n);
  if (e->keys.n > INT32_MAX / 4) return keel_error(KEEL_UNSUPPORTED, "LabelEncoder has too many keys");
  const keel_attr *dt = keel_node_attr(n, "default_tensor");
  bool tensor_vals = keel_node_attr(n, "values_tensor") != NULL;
  if (dt && dt->type == KEEL_ATTR_TENSOR && dt->t) {
    if (!list_from_attr(n, "default_tensor", &e->def) || e->def.dt != e->vals.dt || e->def.n < 1)
      return keel_error(KEEL_INVALID_MODEL, "LabelEncoder default_tensor must hold one %s (the values' type), got %s with %lld elements",
                        keel_dtype_name(e->vals.dt), keel_dtype_name(keel_tensor_dtype(dt->t)),
                        (long long)keel_tensor_numel(dt->t));
    e->def.n = 1;
    return NULL;
  }
  /* the default of the values' type: from default_* (list forms) or the spec's defaults */
  e->def.n = 1;
  e->def.dt = e->vals.dt;
  if (e->vals.dt == KEEL_STRING) {
    e->def_s = tensor_vals ? "_Unused" : keel_attr_string(n, "default_string", "_Unused");
    e->def.p = &e->def_s, e->def.cstr = true;
  } else if (ml_is_int(e->vals.dt)) {
    e->def_i = tensor_vals ? -1 : keel_attr_int(n, "default_int64", -1);
    e->def.dt = KEEL_INT64, e->def.p = &e->def_i;
  } else {
    e->def_f = tensor_vals ? -0.0f : keel_attr_float(n, "default_float", -0.0f);
    e->def.dt = KEEL_FLOAT32, e->def.p = &e->def_f;
  }
  return NULL;
}

static keel_status *lenc_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  if (n_in != 1 || n_out != 1) return keel_error(KEEL_INVALID_MODEL, "LabelEncoder takes 1 input and 1 output");
  lenc e;
  KEEL_TRY(lenc_get(n, &e));
  keel_dtype od;
  if (e.legacy) {
    if (in[0].dtype != KEEL_STRING && in[0].dtype != KEEL_INT64)
      return keel_error(KEEL_INVALID_ARGUMENT, "LabelEncoder (opset 1) maps strings or int64, got %s", keel_dtype_name(in[0].dtype));
    od = in[0].dtype == KEEL_STRING ? KEEL_INT64 : KEEL_STRING;
  } else {
    bool same = in[0].dtype == e.keys.dt || (e.keys.dt == KEEL_INT64 && !keel_node_attr(n, "keys_tensor") &&
                                              ml_is_int(in[0].dtype));
    if (!same)
      return keel_error(KEEL_INVALID_ARGUMENT, "LabelEncoder keys are %s but the input is %s",
                        keel_dtype_name(e.keys.dt), keel_dtype_name(in[0].dtype));
    od = e.vals.dt;
  }
  keel_view_set_shape(&out[0], od, in[0].dims, in[0].ndim);
  return NULL;
}

static size_t lenc_workspace(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  (void)in, (void)n_in, (void)out, (void)n_out;
  lenc e;
  if (lenc_get(n, &e) || e.legacy) return 0;
  return (size_t)table_cap(e.keys.n) * sizeof(int32_t);
}

static keel_status *lenc_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                             keel_exec *ex) {
  (void)n_in, (void)n_out;
  lenc e;
  KEEL_TRY(lenc_get(n, &e));
  int64_t c = keel_view_numel(&in[0]);
  ml_list x = {in[0].dtype, c, in[0].data, false};
  if (e.legacy) {
    for (int64_t i = 0; i < c; i++) {
      if (in[0].dtype == KEEL_STRING) {
        int64_t v = e.def_i;
        for (int64_t k = 0; k < e.keys.n; k++)
          if (ml_eq(&x, i, &e.keys, k)) {
            v = k;
            break;
          }
        ((int64_t *)out[0].data)[i] = v;
      } else {
        int64_t k = ((const int64_t *)in[0].data)[i];
        size_t len = 0;
        const char *s = k >= 0 && k < e.keys.n ? ml_str(&e.keys, k, &len) : e.def_s;
        if (!(k >= 0 && k < e.keys.n)) len = strlen(s);
        if (keel_string_assign(&((keel_string *)out[0].data)[i], s, len)) return oom_str();
      }
    }
    return NULL;
  }
  int64_t cap = table_cap(e.keys.n);
  if (ex->workspace_bytes < (size_t)cap * sizeof(int32_t))
    return keel_error(KEEL_INTERNAL, "LabelEncoder got a %zu-byte workspace", ex->workspace_bytes);
  int32_t *slot = ex->workspace; /* key index + 1; 0 is empty */
  memset(slot, 0, (size_t)cap * sizeof *slot);
  for (int64_t k = 0; k < e.keys.n; k++) {
    int64_t h = (int64_t)(ml_hash(&e.keys, k) & (uint64_t)(cap - 1));
    while (slot[h] && !ml_eq(&e.keys, slot[h] - 1, &e.keys, k)) h = (h + 1) & (cap - 1);
    slot[h] = (int32_t)(k + 1); /* a repeated key: the last one wins */
  }
  for (int64_t i = 0; i < c; i++) {
    int64_t h = (int64_t)(ml_hash(&x, i) & (uint64_t)(cap - 1));
    while (slot[h] && !ml_eq(&e.keys, slot[h] - 1, &x, i)) h = (h + 1) & (cap - 1);
    KEEL_TRY(slot[h] ? put_elem(&out[0], i, &e.vals, slot[h] - 1) : put_elem(&out[0], i, &e.def, 0));
  }
  return NULL;
}

/* ---- Binarizer ---- */

static keel_status *bin_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  (void)n;
  if (n_in != 1 || n_out != 1) return keel_error(KEEL_INVALID_MODEL, "Binarizer takes 1 input and 1 output");
  keel_dtype t = in[0].dtype;
  if (!ml_is_real(t) && t != KEEL_INT64 && t != KEEL_INT32)
    return keel_error(KEEL_INVALID_ARGUMENT, "Binarizer takes float, double, int64 or int32, got %s", keel_dtype_name(t));
  keel_view_set_shape(&out[0], t, in[0].dims, in[0].ndim);
  return NULL;
}

static keel_status *bin_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                            keel_exec *ex) {
  (void)n_in, (void)n_out, (void)ex;
  double th = keel_attr_float(n, "threshold", 0.0f);
  int64_t c = keel_view_numel(&in[0]);
  switch (in[0].dtype) {
    case KEEL_FLOAT32: {
      const float *x = in[0].data;
      float *y = out[0].data;
      for (int64_t i = 0; i < c; i++) y[i] = (double)x[i] > th ? 1.0f : 0.0f;
      break;
    }
    case KEEL_FLOAT64: {
      const double *x = in[0].data;
      double *y = out[0].data;
      for (int64_t i = 0; i < c; i++) y[i] = x[i] > th ? 1.0 : 0.0;
      break;
    }
    case KEEL_INT64: {
      const int64_t *x = in[0].data;
      int64_t *y = out[0].data;
      for (int64_t i = 0; i < c; i++) y[i] = (double)x[i] > th;
      break;
    }
    default: {
      const int32_t *x = in[0].data;
      int32_t *y = out[0].data;
      for (int64_t i = 0; i < c; i++) y[i] = (double)x[i] > th;
      break;
    }
  }
  return NULL;
}

/* ---- ArrayFeatureExtractor ---- */

static keel_status *afe_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  (void)n;
  if (n_in != 2 || n_out != 1) return keel_error(KEEL_INVALID_MODEL, "ArrayFeatureExtractor takes 2 inputs and 1 output");
  if (!ml_dtype_ok(in[0].dtype) || in[0].dtype == KEEL_INT16)
    return keel_error(KEEL_INVALID_ARGUMENT, "ArrayFeatureExtractor takes float, double, int64, int32 or string data, got %s",
                      keel_dtype_name(in[0].dtype));
  if (in[1].dtype != KEEL_INT64)
    return keel_error(KEEL_INVALID_ARGUMENT, "ArrayFeatureExtractor indices must be int64, got %s", keel_dtype_name(in[1].dtype));
  if (in[0].ndim < 1) return keel_error(KEEL_INVALID_ARGUMENT, "ArrayFeatureExtractor data must have rank >= 1, got a scalar");
  int64_t dims[KEEL_MAX_DIMS];
  int nd = in[0].ndim;
  if (nd == 1) dims[0] = 1, nd = 2; /* a vector gives one row, as ONNX Runtime does */
  else memcpy(dims, in[0].dims, sizeof(int64_t) * (size_t)nd);
  dims[nd - 1] = keel_view_numel(&in[1]);
  keel_view_set_shape(&out[0], in[0].dtype, dims, nd);
  return NULL;
}

static keel_status *afe_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                            keel_exec *ex) {
  (void)n, (void)n_in, (void)n_out, (void)ex;
  int64_t C = in[0].dims[in[0].ndim - 1], K = keel_view_numel(&in[1]);
  int64_t rows = C ? keel_view_numel(&in[0]) / C : 0;
  const int64_t *idx = in[1].data;
  for (int64_t k = 0; k < K; k++)
    if (idx[k] < 0 || idx[k] >= C)
      return keel_error(KEEL_INVALID_ARGUMENT, "index %lld (element %lld of the indices) is out of range for %lld features",
                        (long long)idx[k], (long long)k, (long long)C);
  if (in[0].dtype == KEEL_STRING) {
    ml_list x = {KEEL_STRING, 0, in[0].data, false};
    for (int64_t r = 0; r < rows; r++)
      for (int64_t k = 0; k < K; k++) KEEL_TRY(put_elem(&out[0], r * K + k, &x, r * C + idx[k]));
    return NULL;
  }
  size_t es = keel_dtype_size(in[0].dtype);
  const char *src = in[0].data;
  char *dst = out[0].data;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t k = 0; k < K; k++) memcpy(dst + (size_t)(r * K + k) * es, src + (size_t)(r * C + idx[k]) * es, es);
  return NULL;
}

/* ---- TfIdfVectorizer ---- */

/* The pool's n-grams: ngram_counts[i] is where the (i+1)-grams start in the pool; n-gram ids count every
 * n-gram of every size in pool order, and id k is counted at output coordinate ngram_indexes[k]. Only sizes
 * within [min_gram_length, max_gram_length] are looked for. */
typedef struct {
  ml_list pool;
  const int64_t *counts, *indexes;
  int n_counts, n_indexes, n_weights;
  const float *weights;
  int64_t min_n, max_n, skip, out_size, n_grams; /* n_grams: those of the sizes looked for */
  int mode;                                       /* 0 TF, 1 IDF, 2 TFIDF */
} tfidf;

static keel_status *tfidf_get(const keel_node *n, tfidf *z) {
  memset(z, 0, sizeof *z);
  const char *mode = keel_attr_string(n, "mode", NULL);
  if (!mode) return keel_error(KEEL_INVALID_MODEL, "TfIdfVectorizer needs a 'mode' attribute");
  z->mode = !strcmp(mode, "TF") ? 0 : !strcmp(mode, "IDF") ? 1 : !strcmp(mode, "TFIDF") ? 2 : -1;
  if (z->mode < 0) return keel_error(KEEL_INVALID_MODEL, "TfIdfVectorizer mode must be TF, IDF or TFIDF, got '%s'", mode);
  ml_list a, b;
  bool has_i = list_from_attr(n, "pool_int64s", &a) && a.dt == KEEL_INT64;
  bool has_s = list_from_attr(n, "pool_strings", &b) && b.dt == KEEL_STRING;
  if (has_i == has_s)
    return keel_error(KEEL_INVALID_MODEL, "TfIdfVectorizer needs exactly one of pool_int64s and pool_strings");
  z->pool = has_i ? a : b;
  z->min_n = keel_attr_int(n, "min_gram_length", 0);
  z->max_n = keel_attr_int(n, "max_gram_length", 0);
  z->skip = keel_attr_int(n, "max_skip_count", -1);
  if (z->min_n < 1 || z->max_n < z->min_n)
    return keel_error(KEEL_INVALID_MODEL, "TfIdfVectorizer needs 1 <= min_gram_length <= max_gram_length, got %lld and %lld",
                      (long long)z->min_n, (long long)z->max_n);
  if (z->skip < 0) return keel_error(KEEL_INVALID_MODEL, "TfIdfVectorizer max_skip_count must be >= 0");
  z->n_counts = keel_attr_ints(n, "ngram_counts", &z->counts);
  z->n_indexes = keel_attr_ints(n, "ngram_indexes", &z->indexes);
  if (z->n_counts < 1 || z->n_indexes < 1)
    return keel_error(KEEL_INVALID_MODEL, "TfIdfVectorizer needs non-empty ngram_counts and ngram_indexes");
  z->out_size = 0;
  for (int i = 0; i < z->n_indexes; i++) {
    if (z->indexes[i] < 0 || z->indexes[i] >= INT32_MAX)
      return keel_error(KEEL_INVALID_MODEL, "TfIdfVectorizer ngram_indexes[%d] = %lld is out of range", i, (long long)z->indexes[i]);
    if (z->indexes[i] + 1 > z->out_size) z->out_size = z->indexes[i] + 1;
  }
  int64_t id = 0;
  for (int i = 0; i < z->n_counts; i++) {
    int64_t start = z->counts[i], end = i + 1 < z->n_counts ? z->counts[i + 1] : z->pool.n;
    if (start < 0 || end < start || end > z->pool.n)
      return keel_error(KEEL_INVALID_MODEL, "TfIdfVectorizer ngram_counts[%d] = %lld does not fit a pool of %lld items",
                        i, (long long)start, (long long)z->pool.n);
    int64_t grams = (end - start) / (i + 1);
    if ((end - start) % (i + 1))
      return keel_error(KEEL_INVALID_MODEL, "TfIdfVectorizer pool has %lld items for %d-grams, not a multiple of %d",
                        (long long)(end - start), i + 1, i + 1);
    if (id + grams > z->n_indexes)
      return keel_error(KEEL_INVALID_MODEL, "TfIdfVectorizer pool holds more n-grams than ngram_indexes has entries (%d)", z->n_indexes);
    if (i + 1 >= z->min_n && i + 1 <= z->max_n) z->n_grams += grams;
    id += grams;
  }
  z->n_weights = keel_attr_floats(n, "weights", &z->weights);
  if (z->n_weights < 0) z->n_weights = 0;
  if (z->mode && z->n_weights && z->n_weights != z->n_indexes)
    return keel_error(KEEL_INVALID_MODEL, "TfIdfVectorizer has %d weights for %d n-grams (ngram_indexes)", z->n_weights,
                      z->n_indexes);
  return NULL;
}

static keel_status *tfidf_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  if (n_in != 1 || n_out != 1) return keel_error(KEEL_INVALID_MODEL, "TfIdfVectorizer takes 1 input and 1 output");
  tfidf z;
  KEEL_TRY(tfidf_get(n, &z));
  keel_dtype t = in[0].dtype;
  if (z.pool.dt == KEEL_STRING ? t != KEEL_STRING : (t != KEEL_INT64 && t != KEEL_INT32))
    return keel_error(KEEL_INVALID_ARGUMENT, "TfIdfVectorizer with pool_%s takes %s input, got %s",
                      z.pool.dt == KEEL_STRING ? "strings" : "int64s", z.pool.dt == KEEL_STRING ? "string" : "int32 or int64",
                      keel_dtype_name(t));
  if (in[0].ndim > 2) return keel_error(KEEL_INVALID_ARGUMENT, "TfIdfVectorizer input must be [C] or [N,C], got rank %d", in[0].ndim);
  int64_t dims[2] = {in[0].ndim == 2 ? in[0].dims[0] : 1, z.out_size};
  if (in[0].ndim == 2) keel_view_set_shape(&out[0], KEEL_FLOAT32, dims, 2);
  else keel_view_set_shape(&out[0], KEEL_FLOAT32, &dims[1], 1);
  return NULL;
}

/* Workspace: the hash table's slots, then for each n-gram looked for its pool offset, size and coordinate,
 * then each output coordinate's weight. */
static size_t tfidf_ws(const tfidf *z) {
  return (size_t)table_cap(z->n_grams) * sizeof(int32_t) + (size_t)z->n_grams * 3 * sizeof(int64_t) +
         (size_t)z->out_size * sizeof(float);
}

static size_t tfidf_workspace(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  (void)in, (void)n_in, (void)out, (void)n_out;
  tfidf z;
  return tfidf_get(n, &z) ? 0 : tfidf_ws(&z);
}

/* Hash of the m items of l at positions p, p+step, ... */
static uint64_t gram_hash(const ml_list *l, int64_t p, int64_t step, int64_t m) {
  uint64_t h = mix64((uint64_t)m);
  for (int64_t j = 0; j < m; j++) h = mix64(h ^ ml_hash(l, p + j * step)) + (uint64_t)j;
  return h;
}

static keel_status *tfidf_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                              keel_exec *ex) {
  (void)n_in, (void)n_out;
  tfidf z;
  KEEL_TRY(tfidf_get(n, &z));
  if (ex->workspace_bytes < tfidf_ws(&z))
    return keel_error(KEEL_INTERNAL, "TfIdfVectorizer got a %zu-byte workspace", ex->workspace_bytes);
  int64_t cap = table_cap(z.n_grams);
  int32_t *slot = ex->workspace;
  int64_t *g_off = (int64_t *)(void *)((char *)ex->workspace + (size_t)cap * sizeof(int32_t));
  int64_t *g_len = g_off + z.n_grams, *g_out = g_len + z.n_grams;
  float *w_out = (float *)(void *)(g_out + z.n_grams);
  memset(slot, 0, (size_t)cap * sizeof *slot);
  /* weights[i] belongs to the pool's i-th n-gram (the spec, and ONNX Runtime), so to its coordinate */
  for (int64_t c = 0; c < z.out_size; c++) w_out[c] = 1.0f;
  for (int i = 0; i < z.n_weights; i++) w_out[z.indexes[i]] = z.weights[i];
  int64_t id = 0, k = 0;
  for (int i = 0; i < z.n_counts; i++) {
    int64_t size = i + 1, start = z.counts[i], end = i + 1 < z.n_counts ? z.counts[i + 1] : z.pool.n;
    for (int64_t p = start; p + size <= end; p += size, id++) {
      if (size < z.min_n || size > z.max_n) continue;
      g_off[k] = p, g_len[k] = size, g_out[k] = z.indexes[id];
      int64_t h = (int64_t)(gram_hash(&z.pool, p, 1, size) & (uint64_t)(cap - 1));
      for (;; h = (h + 1) & (cap - 1)) {
        int32_t s = slot[h];
        if (!s) break;
        bool same = g_len[s - 1] == size;
        for (int64_t j = 0; same && j < size; j++) same = ml_eq(&z.pool, g_off[s - 1] + j, &z.pool, p + j);
        if (same) break;
      }
      slot[h] = (int32_t)(k + 1); /* a repeated n-gram: the last one's coordinate wins */
      k++;
    }
  }
  int64_t rows = in[0].ndim == 2 ? in[0].dims[0] : 1, C = in[0].ndim == 0 ? 1 : in[0].dims[in[0].ndim - 1];
  float *y = out[0].data;
  memset(y, 0, (size_t)(rows * z.out_size) * sizeof *y);
  ml_list x = {in[0].dtype, rows * C, in[0].data, false};
  for (int64_t r = 0; r < rows && z.n_grams; r++) {
    float *yr = y + r * z.out_size;
    /* every skip distance d (1 + skipped items); 1-grams only once, at d = 1 */
    for (int64_t d = 1; d <= z.skip + 1; d++) {
      int64_t lo = d == 1 ? z.min_n : (z.min_n < 2 ? 2 : z.min_n);
      if (lo > z.max_n) break;
      for (int64_t s = 0; s < C; s++)
        for (int64_t m = lo; m <= z.max_n && s + (m - 1) * d < C; m++) {
          int64_t p = r * C + s;
          int64_t h = (int64_t)(gram_hash(&x, p, d, m) & (uint64_t)(cap - 1));
          for (;; h = (h + 1) & (cap - 1)) {
            int32_t sl = slot[h];
            if (!sl) break;
            bool same = g_len[sl - 1] == m;
            for (int64_t j = 0; same && j < m; j++) same = ml_eq(&z.pool, g_off[sl - 1] + j, &x, p + j * d);
            if (same) {
              yr[g_out[sl - 1]] += 1.0f;
              break;
            }
          }
        }
    }
  }
  if (z.mode) /* IDF: presence times weight; TFIDF: count times weight */
    for (int64_t r = 0; r < rows; r++)
      for (int64_t i = 0; i < z.out_size; i++) {
        float *v = &y[r * z.out_size + i];
        float w = w_out[i];
        *v = z.mode == 1 ? (*v > 0 ? w : 0.0f) : *v * w;
      }
  return NULL;
}

/* ---- the table ---- */

keel_status *keel_ml_tree_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out);
keel_status *keel_ml_tree_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                              keel_exec *ex);
size_t keel_ml_tree_workspace(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out);

const keel_op_def keel_ops_ml[] = {
    {"LabelEncoder", ML, 1, ML_MAX_OPSET, lenc_infer, lenc_run, lenc_workspace, -1},
    {"Binarizer", ML, 1, ML_MAX_OPSET, bin_infer, bin_run, NULL, 0},
    {"ArrayFeatureExtractor", ML, 1, ML_MAX_OPSET, afe_infer, afe_run, NULL, -1},
    {"TreeEnsemble", ML, 5, ML_MAX_OPSET, keel_ml_tree_infer, keel_ml_tree_run, keel_ml_tree_workspace, -1},
    {"TfIdfVectorizer", "", 9, KEEL_MAX_OPSET, tfidf_infer, tfidf_run, tfidf_workspace, -1},
    {NULL, NULL, 0, 0, NULL, NULL, NULL, -1},
};
const int keel_ops_ml_count = 5;
