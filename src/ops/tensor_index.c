/* Tensor family, indexing: Gather, GatherElements, GatherND, Scatter/ScatterElements, ScatterND.
 * Indices may be negative (counted from the end); an index out of range is a run-time error. */
#include "ops/tensor_util.h"

static keel_status *need(const keel_view *in, int n_in, int i, const char *what) {
  if (i >= n_in || !keel_view_present(&in[i])) return keel_error(KEEL_INVALID_MODEL, "required input %d (%s) is missing", i, what);
  return NULL;
}

static keel_status *check_indices(const keel_view *v, const char *what) {
  if (v->dtype != KEEL_INT32 && v->dtype != KEEL_INT64)
    return keel_error(KEEL_INVALID_MODEL, "%s must be int32 or int64, got %s", what, keel_dtype_name(v->dtype));
  return NULL;
}

static inline int64_t idx_at(const keel_view *v, int64_t i) {
  if (v->dtype == KEEL_INT64) return ((const int64_t *)v->data)[i];
  return ((const int32_t *)v->data)[i];
}

/* Normalize index k against dim; error when out of range. */
static keel_status *fix_index(int64_t *k, int64_t dim, int axis) {
  int64_t v = *k;
  if (v < 0) v += dim;
  if (v < 0 || v >= dim)
    return keel_error(KEEL_INVALID_ARGUMENT, "index %lld is out of range [-%lld, %lld] on axis %d", (long long)*k,
                      (long long)dim, (long long)dim - 1, axis);
  *k = v;
  return NULL;
}

/* ---- Gather ---- */

static keel_status *gather_axis(const keel_node *n, const keel_view *in, int *axis) {
  int64_t a = keel_attr_int(n, "axis", 0);
  if (!keel_axis_normalize(a, in[0].ndim, axis))
    return keel_error(KEEL_INVALID_MODEL, "axis %lld out of range for rank %d", (long long)a, in[0].ndim);
  return NULL;
}

keel_status *keel_tt_gather_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  KEEL_TRY(need(in, n_in, 0, "data"));
  KEEL_TRY(need(in, n_in, 1, "indices"));
  size_t es;
  KEEL_TRY(keel_tt_esize(&in[0], "data", &es));
  KEEL_TRY(check_indices(&in[1], "indices"));
  int axis;
  KEEL_TRY(gather_axis(n, in, &axis));
  int r = in[0].ndim, q = in[1].ndim, ro = r - 1 + q;
  if (ro > KEEL_MAX_DIMS) return keel_error(KEEL_UNSUPPORTED, "output rank %d exceeds %d", ro, KEEL_MAX_DIMS);
  int64_t d[KEEL_MAX_DIMS];
  int k = 0;
  for (int i = 0; i < axis; i++) d[k++] = in[0].dims[i];
  for (int i = 0; i < q; i++) d[k++] = in[1].dims[i];
  for (int i = axis + 1; i < r; i++) d[k++] = in[0].dims[i];
  return keel_tt_set_out(&out[0], in[0].dtype, d, ro);
}

keel_status *keel_tt_gather_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                keel_exec *ex) {
  int axis;
  KEEL_TRY(gather_axis(n, in, &axis));
  size_t es = keel_dtype_size(in[0].dtype);
  int64_t outer = 1, inner = 1, dim = in[0].dims[axis], ni = keel_view_numel(&in[1]);
  for (int i = 0; i < axis; i++) outer *= in[0].dims[i];
  for (int i = axis + 1; i < in[0].ndim; i++) inner *= in[0].dims[i];
  /* Validate every index before writing anything. */
  for (int64_t j = 0; j < ni; j++) {
    int64_t k = idx_at(&in[1], j);
    KEEL_TRY(fix_index(&k, dim, axis));
  }
  size_t chunk = (size_t)inner * es;
  const char *s = in[0].data;
  char *o = out[0].data;
  if (chunk == 0 || outer == 0) return NULL;
  for (int64_t a = 0; a < outer; a++) {
    const char *base = s + (size_t)(a * dim) * chunk;
    for (int64_t j = 0; j < ni; j++, o += chunk) {
      int64_t k = idx_at(&in[1], j);
      if (k < 0) k += dim;
      if (chunk == 4) memcpy(o, base + (size_t)k * 4, 4);
      else memcpy(o, base + (size_t)k * chunk, chunk);
    }
  }
  return NULL;
}

/* ---- GatherElements ---- */

static keel_status *elements_check(const keel_node *n, const keel_view *data, const keel_view *ind, int *axis) {
  size_t es;
  KEEL_TRY(keel_tt_esize(data, "data", &es));
  KEEL_TRY(check_indices(ind, "indices"));
  int64_t a = keel_attr_int(n, "axis", 0);
  if (!keel_axis_normalize(a, data->ndim, axis))
    return keel_error(KEEL_INVALID_MODEL, "axis %lld out of range for rank %d", (long long)a, data->ndim);
  if (ind->ndim != data->ndim)
    return keel_error(KEEL_SHAPE_MISMATCH, "indices have rank %d, data has rank %d", ind->ndim, data->ndim);
  for (int i = 0; i < data->ndim; i++)
    if (i != *axis && ind->dims[i] > data->dims[i])
      return keel_error(KEEL_SHAPE_MISMATCH, "indices dim %d (%lld) exceeds the data dim (%lld)", i, (long long)ind->dims[i],
                        (long long)data->dims[i]);
  return NULL;
}

keel_status *keel_tt_gather_elements_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out,
                                           int n_out) {
  KEEL_TRY(need(in, n_in, 0, "data"));
  KEEL_TRY(need(in, n_in, 1, "indices"));
  int axis;
  KEEL_TRY(elements_check(n, &in[0], &in[1], &axis));
  return keel_tt_set_out(&out[0], in[0].dtype, in[1].dims, in[1].ndim);
}

keel_status *keel_tt_gather_elements_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                         keel_exec *ex) {
  int axis, r = in[0].ndim;
  KEEL_TRY(elements_check(n, &in[0], &in[1], &axis));
  size_t es = keel_dtype_size(in[0].dtype);
  int64_t ds[KEEL_MAX_DIMS], idx[KEEL_MAX_DIMS] = {0}, ni = keel_view_numel(&in[1]), dim = in[0].dims[axis];
  keel_tt_strides(in[0].dims, r, ds);
  const char *s = in[0].data;
  char *o = out[0].data;
  int64_t base = 0; /* offset of the current index position without the axis term */
  for (int64_t j = 0; j < ni; j++) {
    int64_t k = idx_at(&in[1], j);
    KEEL_TRY(fix_index(&k, dim, axis));
    keel_tt_copy1(o + (size_t)j * es, s + (size_t)(base + k * ds[axis]) * es, es);
    for (int a = r - 1; a >= 0; a--) {
      if (a != axis) base += ds[a];
      if (++idx[a] < in[1].dims[a]) break;
      if (a != axis) base -= ds[a] * in[1].dims[a];
      idx[a] = 0;
    }
  }
  return NULL;
}

/* ---- GatherND ---- */

typedef struct {
  int b, k;
  int64_t batches, tuples, chunk_elems, batch_stride;
  int64_t str[KEEL_MAX_DIMS]; /* strides (in chunks) of the k indexed data axes */
} gnd_plan;

static keel_status *gnd_make(const keel_node *n, const keel_view *data, const keel_view *ind, gnd_plan *p, int64_t *od,
                             int *ond) {
  size_t es;
  KEEL_TRY(keel_tt_esize(data, "data", &es));
  KEEL_TRY(check_indices(ind, "indices"));
  int r = data->ndim, q = ind->ndim;
  int64_t b = n->opset >= 12 ? keel_attr_int(n, "batch_dims", 0) : 0;
  if (r < 1 || q < 1) return keel_error(KEEL_INVALID_MODEL, "data and indices must have rank >= 1");
  if (b < 0 || b >= q || b >= r) return keel_error(KEEL_INVALID_MODEL, "batch_dims %lld is invalid for ranks %d and %d", (long long)b, r, q);
  int64_t k = ind->dims[q - 1];
  if (k < 1 || k > r - b)
    return keel_error(KEEL_SHAPE_MISMATCH, "indices' last dim %lld must be in [1, %lld]", (long long)k, (long long)(r - b));
  p->b = (int)b;
  p->k = (int)k;
  p->batches = 1;
  for (int i = 0; i < b; i++) {
    if (data->dims[i] != ind->dims[i])
      return keel_error(KEEL_SHAPE_MISMATCH, "batch dim %d differs: data %lld, indices %lld", i, (long long)data->dims[i],
                        (long long)ind->dims[i]);
    p->batches *= data->dims[i];
  }
  p->tuples = 1;
  for (int i = (int)b; i < q - 1; i++) p->tuples *= ind->dims[i];
  p->chunk_elems = 1;
  for (int i = (int)(b + k); i < r; i++) p->chunk_elems *= data->dims[i];
  int64_t s = 1;
  for (int i = (int)(b + k) - 1; i >= (int)b; i--) {
    p->str[i - b] = s;
    s *= data->dims[i];
  }
  p->batch_stride = s; /* in chunks */
  if (od) {
    int nd = 0;
    for (int i = 0; i < q - 1; i++) {
      if (nd >= KEEL_MAX_DIMS) return keel_error(KEEL_UNSUPPORTED, "output rank exceeds %d", KEEL_MAX_DIMS);
      od[nd++] = ind->dims[i];
    }
    for (int i = (int)(b + k); i < r; i++) {
      if (nd >= KEEL_MAX_DIMS) return keel_error(KEEL_UNSUPPORTED, "output rank exceeds %d", KEEL_MAX_DIMS);
      od[nd++] = data->dims[i];
    }
    *ond = nd;
  }
  return NULL;
}

/* Chunk offset (within the batch) of tuple t; error when an index is out of range. */
static keel_status *gnd_offset(const gnd_plan *p, const keel_view *data, const keel_view *ind, int64_t tuple_index,
                               int64_t *off) {
  int64_t o = 0;
  for (int j = 0; j < p->k; j++) {
    int64_t v = idx_at(ind, tuple_index * p->k + j);
    KEEL_TRY(fix_index(&v, data->dims[p->b + j], p->b + j));
    o += v * p->str[j];
  }
  *off = o;
  return NULL;
}

keel_status *keel_tt_gather_nd_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  KEEL_TRY(need(in, n_in, 0, "data"));
  KEEL_TRY(need(in, n_in, 1, "indices"));
  gnd_plan p;
  int64_t d[KEEL_MAX_DIMS];
  int nd;
  KEEL_TRY(gnd_make(n, &in[0], &in[1], &p, d, &nd));
  return keel_tt_set_out(&out[0], in[0].dtype, d, nd);
}

keel_status *keel_tt_gather_nd_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                   keel_exec *ex) {
  gnd_plan p;
  KEEL_TRY(gnd_make(n, &in[0], &in[1], &p, NULL, NULL));
  size_t chunk = (size_t)p.chunk_elems * keel_dtype_size(in[0].dtype);
  const char *s = in[0].data;
  char *o = out[0].data;
  for (int64_t bi = 0; bi < p.batches; bi++)
    for (int64_t t = 0; t < p.tuples; t++, o += chunk) {
      int64_t off;
      KEEL_TRY(gnd_offset(&p, &in[0], &in[1], bi * p.tuples + t, &off));
      if (chunk) memcpy(o, s + (size_t)(bi * p.batch_stride + off) * chunk, chunk);
    }
  return NULL;
}

/* ---- reductions of Scatter* ---- */

enum { RED_NONE, RED_ADD, RED_MUL, RED_MAX, RED_MIN };

static keel_status *get_reduction(const keel_node *n, int *red) {
  const char *s = n->opset >= 16 ? keel_attr_string(n, "reduction", "none") : "none";
  if (!strcmp(s, "none")) *red = RED_NONE;
  else if (!strcmp(s, "add")) *red = RED_ADD;
  else if (!strcmp(s, "mul")) *red = RED_MUL;
  else if (!strcmp(s, "max") && n->opset >= 18) *red = RED_MAX;
  else if (!strcmp(s, "min") && n->opset >= 18) *red = RED_MIN;
  else return keel_error(KEEL_INVALID_MODEL, "unknown reduction '%s'", s);
  return NULL;
}

#define RED_T(T)                                                       \
  {                                                                    \
    T a, b;                                                            \
    memcpy(&a, dst, sizeof a);                                         \
    memcpy(&b, src, sizeof b);                                         \
    switch (red) {                                                     \
      case RED_ADD: a = (T)(a + b); break;                             \
      case RED_MUL: a = (T)(a * b); break;                             \
      case RED_MAX: a = a > b ? a : b; break;                          \
      default: a = a < b ? a : b; break;                               \
    }                                                                  \
    memcpy(dst, &a, sizeof a);                                         \
    return;                                                            \
  }

/* dst = dst (red) src for one element. */
static void reduce1(keel_dtype dt, int red, char *dst, const char *src) {
  switch (dt) {
    case KEEL_FLOAT32: RED_T(float)
    case KEEL_FLOAT64: RED_T(double)
    case KEEL_INT8: RED_T(int8_t)
    case KEEL_UINT8: RED_T(uint8_t)
    case KEEL_INT16: RED_T(int16_t)
    case KEEL_UINT16: RED_T(uint16_t)
    case KEEL_INT32: RED_T(int32_t)
    case KEEL_UINT32: RED_T(uint32_t)
    case KEEL_INT64: RED_T(int64_t)
    case KEEL_UINT64: RED_T(uint64_t)
    case KEEL_BOOL: {
      bool a = *dst != 0, b = *src != 0;
      *dst = (red == RED_ADD || red == RED_MAX) ? (a || b) : (a && b);
      return;
    }
    case KEEL_FLOAT16:
    case KEEL_BFLOAT16: {
      float a = (float)keel_tt_load_f64(dt, dst, 0), b = (float)keel_tt_load_f64(dt, src, 0);
      float r = red == RED_ADD ? a + b : red == RED_MUL ? a * b : red == RED_MAX ? (a > b ? a : b) : (a < b ? a : b);
      keel_tt_store_f64(dt, dst, 0, r);
      return;
    }
    default: return;
  }
}

static void copy_data(const keel_view *in, keel_view *out) {
  size_t bytes = keel_view_nbytes(in);
  if (bytes && out->data != in->data) memcpy(out->data, in->data, bytes);
}

/* ---- Scatter / ScatterElements ---- */

keel_status *keel_tt_scatter_elements_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out,
                                            int n_out) {
  KEEL_TRY(need(in, n_in, 0, "data"));
  KEEL_TRY(need(in, n_in, 1, "indices"));
  KEEL_TRY(need(in, n_in, 2, "updates"));
  int axis, red;
  KEEL_TRY(elements_check(n, &in[0], &in[1], &axis));
  KEEL_TRY(get_reduction(n, &red));
  if (in[2].dtype != in[0].dtype) return keel_error(KEEL_INVALID_MODEL, "updates dtype differs from data");
  if (!keel_shape_equal(in[1].dims, in[1].ndim, in[2].dims, in[2].ndim))
    return keel_error(KEEL_SHAPE_MISMATCH, "updates must have the shape of indices");
  return keel_tt_set_out(&out[0], in[0].dtype, in[0].dims, in[0].ndim);
}

keel_status *keel_tt_scatter_elements_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                          keel_exec *ex) {
  int axis, red, r = in[0].ndim;
  KEEL_TRY(elements_check(n, &in[0], &in[1], &axis));
  KEEL_TRY(get_reduction(n, &red));
  size_t es = keel_dtype_size(in[0].dtype);
  int64_t ds[KEEL_MAX_DIMS], idx[KEEL_MAX_DIMS] = {0}, ni = keel_view_numel(&in[1]), dim = in[0].dims[axis];
  /* Validate before touching the output (which may alias data). */
  for (int64_t j = 0; j < ni; j++) {
    int64_t k = idx_at(&in[1], j);
    KEEL_TRY(fix_index(&k, dim, axis));
  }
  copy_data(&in[0], &out[0]);
  keel_tt_strides(in[0].dims, r, ds);
  char *o = out[0].data;
  const char *u = in[2].data;
  int64_t base = 0;
  for (int64_t j = 0; j < ni; j++) {
    int64_t k = idx_at(&in[1], j);
    if (k < 0) k += dim;
    char *dst = o + (size_t)(base + k * ds[axis]) * es;
    if (red == RED_NONE) keel_tt_copy1(dst, u + (size_t)j * es, es);
    else reduce1(in[0].dtype, red, dst, u + (size_t)j * es);
    for (int a = r - 1; a >= 0; a--) {
      if (a != axis) base += ds[a];
      if (++idx[a] < in[1].dims[a]) break;
      if (a != axis) base -= ds[a] * in[1].dims[a];
      idx[a] = 0;
    }
  }
  return NULL;
}

/* ---- ScatterND ---- */

static keel_status *snd_check(const keel_node *n, const keel_view *in, int n_in, gnd_plan *p) {
  KEEL_TRY(need(in, n_in, 0, "data"));
  KEEL_TRY(need(in, n_in, 1, "indices"));
  KEEL_TRY(need(in, n_in, 2, "updates"));
  int red;
  KEEL_TRY(get_reduction(n, &red));
  if (in[2].dtype != in[0].dtype) return keel_error(KEEL_INVALID_MODEL, "updates dtype differs from data");
  /* ScatterND has no batch_dims: reuse GatherND's plan with b = 0 and check updates' shape. */
  int64_t d[KEEL_MAX_DIMS];
  int nd;
  keel_node tmp = *n;
  tmp.opset = 11; /* batch_dims is a GatherND attribute; ignore any */
  KEEL_TRY(gnd_make(&tmp, &in[0], &in[1], p, d, &nd));
  if (!keel_shape_equal(d, nd, in[2].dims, in[2].ndim)) {
    char a[128], b[128];
    return keel_error(KEEL_SHAPE_MISMATCH, "updates have shape %s, expected %s", keel_shape_format(in[2].dims, in[2].ndim, a, sizeof a),
                      keel_shape_format(d, nd, b, sizeof b));
  }
  return NULL;
}

keel_status *keel_tt_scatter_nd_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  gnd_plan p;
  KEEL_TRY(snd_check(n, in, n_in, &p));
  return keel_tt_set_out(&out[0], in[0].dtype, in[0].dims, in[0].ndim);
}

keel_status *keel_tt_scatter_nd_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                    keel_exec *ex) {
  gnd_plan p;
  int red;
  KEEL_TRY(snd_check(n, in, n_in, &p));
  KEEL_TRY(get_reduction(n, &red));
  size_t es = keel_dtype_size(in[0].dtype), chunk = (size_t)p.chunk_elems * es;
  for (int64_t t = 0; t < p.tuples; t++) {
    int64_t off;
    KEEL_TRY(gnd_offset(&p, &in[0], &in[1], t, &off));
  }
  copy_data(&in[0], &out[0]);
  char *o = out[0].data;
  const char *u = in[2].data;
  for (int64_t t = 0; t < p.tuples; t++, u += chunk) {
    int64_t off;
    KEEL_TRY(gnd_offset(&p, &in[0], &in[1], t, &off));
    char *dst = o + (size_t)off * chunk;
    if (red == RED_NONE) {
      if (chunk) memcpy(dst, u, chunk);
    } else {
      for (int64_t e = 0; e < p.chunk_elems; e++) reduce1(in[0].dtype, red, dst + (size_t)e * es, u + (size_t)e * es);
    }
  }
  return NULL;
}
