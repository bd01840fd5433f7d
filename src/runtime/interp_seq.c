/* Sequence and optional values and operators for the interpreter. See interp_seq.h. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/shape.h"
#include "core/tensor_internal.h"
#include "onnx/onnx_internal.h"
#include "ops/op.h"
#include "runtime/interp_seq.h"
#include "ops/string_ops.h"

static keel_ivalue *iv_new(keel_iv_kind kind) {
  keel_ivalue *v = calloc(1, sizeof *v);
  if (!v) return NULL;
  v->refcount = 1;
  v->kind = kind;
  return v;
}

keel_ivalue *keel_iv_tensor(keel_tensor *t) {
  keel_ivalue *v = iv_new(KEEL_IV_TENSOR);
  if (!v) {
    keel_tensor_release(t);
    return NULL;
  }
  v->t = t;
  return v;
}

keel_ivalue *keel_iv_seq(keel_dtype elem, int64_t cap) {
  keel_ivalue *v = iv_new(KEEL_IV_SEQUENCE);
  if (!v) return NULL;
  v->elem = elem;
  if (cap > 0) {
    v->items = malloc((size_t)cap * sizeof *v->items);
    if (!v->items) {
      free(v);
      return NULL;
    }
    v->cap = cap;
  }
  return v;
}

keel_ivalue *keel_iv_none(void) { return iv_new(KEEL_IV_NONE); }

bool keel_iv_seq_push(keel_ivalue *s, keel_tensor *t) {
  if (s->n == s->cap) {
    int64_t nc = s->cap ? s->cap * 2 : 4;
    keel_tensor **ni = realloc(s->items, (size_t)nc * sizeof *ni);
    if (!ni) return false;
    s->items = ni;
    s->cap = nc;
  }
  s->items[s->n++] = keel_tensor_retain(t);
  if (s->elem == KEEL_DTYPE_UNDEFINED) s->elem = t->dtype;
  return true;
}

keel_ivalue *keel_iv_retain(keel_ivalue *v) {
  if (v) v->refcount++;
  return v;
}

void keel_iv_release(keel_ivalue *v) {
  if (!v || --v->refcount > 0) return;
  keel_tensor_release(v->t);
  for (int64_t i = 0; i < v->n; i++) keel_tensor_release(v->items[i]);
  free(v->items);
  free(v);
}

const char *keel_iv_kind_name(const keel_ivalue *v) {
  if (!v) return "missing";
  switch (v->kind) {
  case KEEL_IV_TENSOR: return "a tensor";
  case KEEL_IV_SEQUENCE: return "a sequence";
  default: return "an empty optional";
  }
}

static const char *const SEQ_OPS[] = {"SequenceEmpty", "SequenceConstruct", "SequenceInsert",    "SequenceAt",
                                      "SequenceErase", "SequenceLength",    "ConcatFromSequence", "SplitToSequence",
                                      "Optional",      "OptionalHasElement", "OptionalGetElement"};

bool keel_interp_is_seq_op(const keel_node *n) {
  if (n->domain[0]) return false;
  for (size_t i = 0; i < sizeof SEQ_OPS / sizeof SEQ_OPS[0]; i++)
    if (!strcmp(n->op_type, SEQ_OPS[i])) return true;
  return false;
}

/* ---- helpers ---- */

static keel_status *want_seq(keel_ivalue *const *in, int n_in, int i, keel_ivalue **s) {
  *s = i < n_in ? in[i] : NULL;
  if (!*s || (*s)->kind != KEEL_IV_SEQUENCE)
    return keel_error(KEEL_INVALID_ARGUMENT, "input %d must be a sequence, got %s", i, keel_iv_kind_name(*s));
  return NULL;
}

/* Optional tensor input: *t is NULL when omitted. */
static keel_status *want_tensor(keel_ivalue *const *in, int n_in, int i, bool required, keel_tensor **t) {
  keel_ivalue *v = i < n_in ? in[i] : NULL;
  *t = NULL;
  if (!v) return required ? keel_error(KEEL_INVALID_ARGUMENT, "input %d is missing", i) : NULL;
  if (v->kind != KEEL_IV_TENSOR)
    return keel_error(KEEL_INVALID_ARGUMENT, "input %d must be a tensor, got %s", i, keel_iv_kind_name(v));
  *t = v->t;
  return NULL;
}

/* A position tensor (int32/int64 scalar or one element) normalized into [0, n) or, if allow_end, [0, n]. */
static keel_status *position(const keel_tensor *t, int64_t n, bool allow_end, int64_t *pos) {
  if (t->dtype != KEEL_INT32 && t->dtype != KEEL_INT64)
    return keel_error(KEEL_INVALID_ARGUMENT, "position must be int32 or int64, got %s", keel_dtype_name(t->dtype));
  if (keel_tensor_numel(t) != 1) return keel_error(KEEL_INVALID_ARGUMENT, "position must be a scalar");
  int64_t p = t->dtype == KEEL_INT32 ? *(const int32_t *)t->data : *(const int64_t *)t->data;
  int64_t hi = allow_end ? n : n - 1;
  if (p < -n || p > hi)
    return keel_error(KEEL_INVALID_ARGUMENT, "position %lld is out of range for a sequence of length %lld",
                      (long long)p, (long long)n);
  *pos = p < 0 ? p + n : p;
  return NULL;
}

static keel_status *seq_oom(void) { return keel_error(KEEL_OUT_OF_MEMORY, "out of memory building a sequence"); }

/* A copy of s's items with `skip` left out (-1: none), `ins` inserted at `at` (NULL: none). */
static keel_status *seq_edit(const keel_ivalue *s, int64_t skip, keel_tensor *ins, int64_t at, keel_ivalue **out) {
  keel_ivalue *r = keel_iv_seq(s->elem, s->n + 1);
  if (!r) return seq_oom();
  for (int64_t i = 0; i <= s->n; i++) {
    if (ins && i == at) keel_iv_seq_push(r, ins); /* capacity is enough: cannot fail */
    if (i < s->n && i != skip) keel_iv_seq_push(r, s->items[i]);
  }
  *out = r;
  return NULL;
}

/* Copy [start, start+len) along axis of t into a new tensor; squeeze drops that axis (len must be 1). */
static keel_status *slice_axis(const keel_tensor *t, int axis, int64_t start, int64_t len, bool squeeze,
                               keel_allocator *al, keel_tensor **out) {
  int64_t dims[KEEL_MAX_DIMS];
  int nd = 0;
  for (int d = 0; d < t->ndim; d++) {
    if (d == axis && squeeze) continue;
    dims[nd++] = d == axis ? len : t->dims[d];
  }
  KEEL_TRY(keel_tensor_create(t->dtype, dims, nd, al, out));
  size_t es = keel_dtype_size(t->dtype);
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < axis; d++) outer *= t->dims[d];
  for (int d = axis + 1; d < t->ndim; d++) inner *= t->dims[d];
  size_t block = (size_t)(len * inner) * es;
  const char *src = t->data;
  char *dst = (*out)->data;
  for (int64_t o = 0; o < outer && block; o++)
    memcpy(dst + (size_t)o * block, src + (size_t)((o * t->dims[axis] + start) * inner) * es, block);
  keel_status *s = keel_strings_own(*out); /* string elements were copied as records: copy their bytes */
  if (s) {
    keel_tensor_release(*out);
    *out = NULL;
  }
  return s;
}

/* ---- operators ---- */

static keel_status *split_to_sequence(const keel_node *n, keel_ivalue *const *in, int n_in, keel_allocator *al,
                                      keel_ivalue **out) {
  keel_tensor *x, *split;
  KEEL_TRY(want_tensor(in, n_in, 0, true, &x));
  KEEL_TRY(want_tensor(in, n_in, 1, false, &split));
  int axis;
  if (!keel_axis_normalize(keel_attr_int(n, "axis", 0), x->ndim, &axis))
    return keel_error(KEEL_INVALID_ARGUMENT, "axis %lld is out of range for rank %d",
                      (long long)keel_attr_int(n, "axis", 0), x->ndim);
  int64_t D = x->dims[axis], count, chunk = 1;
  bool squeeze = false;
  const keel_view sv = split ? (keel_view){split->dtype, split->ndim, {0}, split->data} : (keel_view){0};
  if (split && split->dtype != KEEL_INT32 && split->dtype != KEEL_INT64)
    return keel_error(KEEL_INVALID_ARGUMENT, "split must be int32 or int64, got %s", keel_dtype_name(split->dtype));
  if (!split) {
    count = D;
    squeeze = keel_attr_int(n, "keepdims", 1) == 0;
  } else if (split->ndim == 0) {
    chunk = keel_view_get_i64(&sv, 0);
    if (chunk <= 0) return keel_error(KEEL_INVALID_ARGUMENT, "split size %lld must be positive", (long long)chunk);
    count = (D + chunk - 1) / chunk;
  } else if (split->ndim == 1) {
    count = split->dims[0];
    int64_t sum = 0;
    for (int64_t i = 0; i < count; i++) {
      int64_t c = keel_view_get_i64(&sv, i);
      if (c < 0 || c > D - sum)
        return keel_error(KEEL_INVALID_ARGUMENT, "split sizes do not add up to the axis length %lld", (long long)D);
      sum += c;
    }
    if (sum != D)
      return keel_error(KEEL_INVALID_ARGUMENT, "split sizes add up to %lld, the axis length is %lld", (long long)sum,
                        (long long)D);
  } else {
    return keel_error(KEEL_INVALID_ARGUMENT, "split must be a scalar or 1-D, got rank %d", split->ndim);
  }
  keel_ivalue *r = keel_iv_seq(x->dtype, count);
  if (!r) return seq_oom();
  int64_t start = 0;
  for (int64_t i = 0; i < count; i++) {
    int64_t len = !split ? 1 : split->ndim == 0 ? (D - start < chunk ? D - start : chunk) : keel_view_get_i64(&sv, i);
    keel_tensor *part;
    keel_status *s = slice_axis(x, axis, start, len, squeeze, al, &part);
    if (s) {
      keel_iv_release(r);
      return s;
    }
    keel_iv_seq_push(r, part);
    keel_tensor_release(part);
    start += len;
  }
  *out = r;
  return NULL;
}

static keel_status *concat_from_sequence(const keel_node *n, keel_ivalue *const *in, int n_in, keel_allocator *al,
                                         keel_ivalue **out) {
  keel_ivalue *s;
  KEEL_TRY(want_seq(in, n_in, 0, &s));
  if (s->n == 0) return keel_error(KEEL_INVALID_ARGUMENT, "the sequence is empty: nothing to concatenate");
  if (!keel_node_attr(n, "axis")) return keel_error(KEEL_INVALID_MODEL, "attribute 'axis' is required");
  bool new_axis = keel_attr_int(n, "new_axis", 0) != 0;
  const keel_tensor *t0 = s->items[0];
  int rank = t0->ndim + (new_axis ? 1 : 0), axis;
  if (rank > KEEL_MAX_DIMS || !keel_axis_normalize(keel_attr_int(n, "axis", 0), rank, &axis))
    return keel_error(KEEL_INVALID_ARGUMENT, "axis %lld is out of range for rank %d",
                      (long long)keel_attr_int(n, "axis", 0), rank);
  if (!new_axis && rank == 0) return keel_error(KEEL_INVALID_ARGUMENT, "cannot concatenate scalars without new_axis");
  /* Each item viewed with rank `rank`: with new_axis, a 1 is inserted at axis. */
  int64_t dims[KEEL_MAX_DIMS], total = 0;
  for (int64_t k = 0; k < s->n; k++) {
    const keel_tensor *t = s->items[k];
    if (t->dtype != t0->dtype || t->ndim != t0->ndim)
      return keel_error(KEEL_SHAPE_MISMATCH, "sequence item %lld has type %s rank %d, item 0 has %s rank %d",
                        (long long)k, keel_dtype_name(t->dtype), t->ndim, keel_dtype_name(t0->dtype), t0->ndim);
    for (int d = 0, src = 0; d < rank; d++) {
      int64_t v = new_axis && d == axis ? 1 : t->dims[src++];
      if (d == axis) {
        total += v;
      } else if (k == 0) {
        dims[d] = v;
      } else if (dims[d] != v) {
        return keel_error(KEEL_SHAPE_MISMATCH, "sequence item %lld differs from item 0 in dimension %d", (long long)k, d);
      }
    }
  }
  dims[axis] = total;
  keel_tensor *r;
  KEEL_TRY(keel_tensor_create(t0->dtype, dims, rank, al, &r));
  size_t es = keel_dtype_size(t0->dtype);
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < axis; d++) outer *= dims[d];
  for (int d = axis + 1; d < rank; d++) inner *= dims[d];
  char *dst = r->data;
  for (int64_t o = 0; o < outer; o++)
    for (int64_t k = 0; k < s->n; k++) {
      const keel_tensor *t = s->items[k];
      int64_t len = new_axis ? 1 : t->dims[axis];
      size_t block = (size_t)(len * inner) * es;
      if (block) memcpy(dst, (const char *)t->data + (size_t)o * block, block);
      dst += block;
    }
  keel_status *st = keel_strings_own(r); /* string elements were copied as records: copy their bytes */
  if (st) {
    keel_tensor_release(r);
    return st;
  }
  *out = keel_iv_tensor(r);
  return *out ? NULL : seq_oom();
}

static keel_status *scalar_out(keel_dtype dt, const void *val, keel_allocator *al, keel_ivalue **out) {
  keel_tensor *t;
  KEEL_TRY(keel_tensor_create(dt, NULL, 0, al, &t));
  memcpy(t->data, val, keel_dtype_size(dt));
  *out = keel_iv_tensor(t);
  return *out ? NULL : seq_oom();
}

keel_status *keel_interp_seq_run(const keel_node *n, keel_ivalue *const *in, int n_in, keel_ivalue **out,
                                 keel_allocator *al) {
  const char *op = n->op_type;
  keel_ivalue *s;
  keel_tensor *t, *p;
  int64_t pos;
  if (n->n_outputs < 1) return keel_error(KEEL_INVALID_MODEL, "%s has no output", op);
  if (!strcmp(op, "SequenceEmpty")) {
    keel_dtype dt = KEEL_FLOAT32;
    if (keel_node_attr(n, "dtype")) {
      int64_t odt = keel_attr_int(n, "dtype", 1);
      dt = keel_onnx_dtype((int32_t)odt);
      if (dt == KEEL_DTYPE_UNDEFINED) return keel_error(KEEL_UNSUPPORTED, "dtype %lld is not supported", (long long)odt);
    }
    *out = keel_iv_seq(dt, 0);
    return *out ? NULL : seq_oom();
  }
  if (!strcmp(op, "SequenceConstruct")) {
    if (n_in < 1) return keel_error(KEEL_INVALID_MODEL, "SequenceConstruct needs at least one input");
    keel_ivalue *r = NULL;
    for (int i = 0; i < n_in; i++) {
      keel_status *st = want_tensor(in, n_in, i, true, &t);
      if (!st && r && t->dtype != r->elem)
        st = keel_error(KEEL_INVALID_ARGUMENT, "input %d has type %s, input 0 has %s", i, keel_dtype_name(t->dtype),
                        keel_dtype_name(r->elem));
      if (!st && !r && !(r = keel_iv_seq(t->dtype, n_in))) st = seq_oom();
      if (st) {
        keel_iv_release(r);
        return st;
      }
      keel_iv_seq_push(r, t);
    }
    *out = r;
    return NULL;
  }
  if (!strcmp(op, "SequenceInsert")) {
    KEEL_TRY(want_seq(in, n_in, 0, &s));
    KEEL_TRY(want_tensor(in, n_in, 1, true, &t));
    KEEL_TRY(want_tensor(in, n_in, 2, false, &p));
    if (s->elem != KEEL_DTYPE_UNDEFINED && t->dtype != s->elem)
      return keel_error(KEEL_INVALID_ARGUMENT, "inserting a %s tensor into a sequence of %s", keel_dtype_name(t->dtype),
                        keel_dtype_name(s->elem));
    pos = s->n;
    if (p) KEEL_TRY(position(p, s->n, true, &pos));
    KEEL_TRY(seq_edit(s, -1, t, pos, out));
    if ((*out)->elem == KEEL_DTYPE_UNDEFINED) (*out)->elem = t->dtype;
    return NULL;
  }
  if (!strcmp(op, "SequenceAt")) {
    KEEL_TRY(want_seq(in, n_in, 0, &s));
    KEEL_TRY(want_tensor(in, n_in, 1, true, &p));
    KEEL_TRY(position(p, s->n, false, &pos));
    *out = keel_iv_tensor(keel_tensor_retain(s->items[pos]));
    return *out ? NULL : seq_oom();
  }
  if (!strcmp(op, "SequenceErase")) {
    KEEL_TRY(want_seq(in, n_in, 0, &s));
    KEEL_TRY(want_tensor(in, n_in, 1, false, &p));
    if (s->n == 0) return keel_error(KEEL_INVALID_ARGUMENT, "cannot erase from an empty sequence");
    pos = s->n - 1;
    if (p) KEEL_TRY(position(p, s->n, false, &pos));
    return seq_edit(s, pos, NULL, 0, out);
  }
  if (!strcmp(op, "SequenceLength")) {
    KEEL_TRY(want_seq(in, n_in, 0, &s));
    return scalar_out(KEEL_INT64, &s->n, al, out);
  }
  if (!strcmp(op, "ConcatFromSequence")) return concat_from_sequence(n, in, n_in, al, out);
  if (!strcmp(op, "SplitToSequence")) return split_to_sequence(n, in, n_in, al, out);
  if (!strcmp(op, "Optional")) {
    *out = n_in > 0 && in[0] ? keel_iv_retain(in[0]) : keel_iv_none();
    return *out ? NULL : seq_oom();
  }
  if (!strcmp(op, "OptionalHasElement")) {
    bool has = n_in > 0 && in[0] && in[0]->kind != KEEL_IV_NONE;
    return scalar_out(KEEL_BOOL, &has, al, out);
  }
  if (!strcmp(op, "OptionalGetElement")) {
    if (n_in < 1 || !in[0]) return keel_error(KEEL_INVALID_ARGUMENT, "input 0 is missing");
    if (in[0]->kind == KEEL_IV_NONE) return keel_error(KEEL_INVALID_ARGUMENT, "the optional input is empty");
    *out = keel_iv_retain(in[0]);
    return NULL;
  }
  return keel_error(KEEL_INTERNAL, "%s is not a sequence operator", op);
}
