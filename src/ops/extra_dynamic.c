/* Unique (11) and NonMaxSuppression (10, 11): operators whose output shapes depend on the input values.
 *
 * Their infer needs the data (keel_need_value otherwise, which sends the graph to the interpreter), runs the
 * selection once to count the outputs (with a temporary index buffer: infer may allocate, run may not), and
 * keeps nothing: run repeats the selection in its workspace and writes the results. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/attention_internal.h"

/* Stable merge sort of idx[0..n) with tmp[n] scratch under a "less than" with context. */
typedef int (*cmp_fn)(const void *ctx, int64_t a, int64_t b); /* <0, 0, >0 */

static void msort(int64_t *idx, int64_t *tmp, int64_t n, cmp_fn cmp, const void *ctx) {
  for (int64_t w = 1; w < n; w *= 2) {
    for (int64_t lo = 0; lo < n; lo += 2 * w) {
      int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
      int64_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi) tmp[k++] = cmp(ctx, idx[j], idx[i]) < 0 ? idx[j++] : idx[i++];
      while (i < mid) tmp[k++] = idx[i++];
      while (j < hi) tmp[k++] = idx[j++];
    }
    memcpy(idx, tmp, (size_t)n * sizeof *idx);
  }
}

/* ---------------------------------------------------------------------------------------------------- */
/* Unique */

typedef struct uq_ctx {
  const keel_view *x;
  int64_t outer, A, inner; /* slices along the axis: element (o, k) of slice i is at (o*A + i)*inner + k */
} uq_ctx;

static int cmp_u(uint64_t u, uint64_t v) { return u < v ? -1 : u > v; }
static int cmp_i(int64_t u, int64_t v) { return u < v ? -1 : u > v; }

static int uq_elem_cmp(const keel_view *x, int64_t a, int64_t b) {
  switch (x->dtype) {
    case KEEL_FLOAT32: case KEEL_FLOAT64: case KEEL_FLOAT16: case KEEL_BFLOAT16: {
      double u = keel_elem_load(x->dtype, x->data, a), v = keel_elem_load(x->dtype, x->data, b);
      bool nu = u != u, nv = v != v; /* NaNs sort last and equal each other */
      if (nu || nv) return nu == nv ? 0 : (nu ? 1 : -1);
      return u < v ? -1 : u > v;
    }
    case KEEL_UINT8: case KEEL_BOOL: return cmp_u(((const uint8_t *)x->data)[a], ((const uint8_t *)x->data)[b]);
    case KEEL_UINT16: return cmp_u(((const uint16_t *)x->data)[a], ((const uint16_t *)x->data)[b]);
    case KEEL_UINT32: return cmp_u(((const uint32_t *)x->data)[a], ((const uint32_t *)x->data)[b]);
    case KEEL_UINT64: return cmp_u(((const uint64_t *)x->data)[a], ((const uint64_t *)x->data)[b]);
    case KEEL_INT8: return cmp_i(((const int8_t *)x->data)[a], ((const int8_t *)x->data)[b]);
    case KEEL_INT16: return cmp_i(((const int16_t *)x->data)[a], ((const int16_t *)x->data)[b]);
    case KEEL_INT32: return cmp_i(((const int32_t *)x->data)[a], ((const int32_t *)x->data)[b]);
    default: return cmp_i(((const int64_t *)x->data)[a], ((const int64_t *)x->data)[b]);
  }
}

static int uq_cmp(const void *vctx, int64_t a, int64_t b) {
  const uq_ctx *c = vctx;
  for (int64_t o = 0; o < c->outer; o++)
    for (int64_t k = 0; k < c->inner; k++) {
      int r = uq_elem_cmp(c->x, (o * c->A + a) * c->inner + k, (o * c->A + b) * c->inner + k);
      if (r) return r;
    }
  return 0;
}

static keel_status *uq_setup(const keel_node *n, const keel_view *in, int n_in, uq_ctx *c, int *axis) {
  if (n_in != 1 || !keel_view_present(&in[0]))
    return keel_error(KEEL_INVALID_MODEL, "Unique takes 1 input");
  const keel_view *x = &in[0];
  keel_dtype t = x->dtype;
  if (keel_dtype_size(t) == 0 || t == KEEL_STRING || t == KEEL_COMPLEX64 || t == KEEL_COMPLEX128)
    return keel_error(KEEL_UNSUPPORTED, "Unique: dtype %s is not supported", keel_dtype_name(t));
  c->x = x;
  const keel_attr *ax = keel_node_attr(n, "axis");
  *axis = -1;
  if (ax) {
    if (!keel_axis_normalize(ax->i, x->ndim, axis))
      return keel_error(KEEL_INVALID_MODEL, "Unique: axis %lld is out of range for rank %d", (long long)ax->i, x->ndim);
    c->outer = 1, c->inner = 1, c->A = x->dims[*axis];
    for (int d = 0; d < *axis; d++) c->outer *= x->dims[d];
    for (int d = *axis + 1; d < x->ndim; d++) c->inner *= x->dims[d];
  } else {
    c->outer = 1, c->inner = 1, c->A = keel_view_numel(x);
  }
  return NULL;
}

/* Sort the slices and group them. perm/tmp: A entries. Returns the number of distinct slices; when gid is
 * given, gid[slice] = its group (in sorted order), first[g] = the group's first occurrence, count[g]. */
static int64_t uq_group(const uq_ctx *c, int64_t *perm, int64_t *tmp, int64_t *gid, int64_t *first, int64_t *count) {
  for (int64_t i = 0; i < c->A; i++) perm[i] = i;
  msort(perm, tmp, c->A, uq_cmp, c);
  int64_t g = -1;
  for (int64_t k = 0; k < c->A; k++) {
    if (k == 0 || uq_cmp(c, perm[k - 1], perm[k]) != 0) {
      g++;
      if (first) first[g] = perm[k], count[g] = 0; /* stable sort: the group's first entry is its first occurrence */
    }
    if (gid) gid[perm[k]] = g, count[g]++;
  }
  return g + 1;
}

keel_status *keel_at_unique_infer(AT_IN) {
  uq_ctx c;
  int axis;
  KEEL_TRY(uq_setup(n, in, n_in, &c, &axis));
  if (n_out < 1 || n_out > 4) return keel_error(KEEL_INVALID_MODEL, "Unique has 1 to 4 outputs, got %d", n_out);
  if (!in[0].data && c.A > 0) return keel_need_value(n, 0);
  int64_t *buf = c.A > 0 ? malloc((size_t)c.A * 2 * sizeof *buf) : NULL;
  if (c.A > 0 && !buf) return keel_error(KEEL_OUT_OF_MEMORY, "Unique: out of memory sorting %lld slices", (long long)c.A);
  int64_t U = c.A > 0 ? uq_group(&c, buf, buf + c.A, NULL, NULL, NULL) : 0;
  free(buf);
  if (axis >= 0) {
    int64_t d[KEEL_MAX_DIMS];
    memcpy(d, in[0].dims, sizeof(int64_t) * (size_t)in[0].ndim);
    d[axis] = U;
    keel_view_set_shape(&out[0], in[0].dtype, d, in[0].ndim);
  } else {
    keel_view_set_shape(&out[0], in[0].dtype, &U, 1);
  }
  if (n_out > 1) keel_view_set_shape(&out[1], KEEL_INT64, &U, 1);
  if (n_out > 2) keel_view_set_shape(&out[2], KEEL_INT64, &c.A, 1);
  if (n_out > 3) keel_view_set_shape(&out[3], KEEL_INT64, &U, 1);
  return NULL;
}

size_t keel_at_unique_ws(AT_WS) {
  uq_ctx c;
  int axis;
  keel_status *s = uq_setup(n, in, n_in, &c, &axis);
  if (s) {
    keel_status_free(s);
    return 0;
  }
  return (size_t)c.A * 6 * sizeof(int64_t);
}

keel_status *keel_at_unique_run(AT_RUN) {
  uq_ctx c;
  int axis;
  KEEL_TRY(uq_setup(n, in, n_in, &c, &axis));
  int64_t A = c.A;
  int64_t *perm = ex->workspace, *tmp = perm + A, *gid = tmp + A, *first = gid + A, *count = first + A,
          *remap = count + A;
  int64_t U = A > 0 ? uq_group(&c, perm, tmp, gid, first, count) : 0;
  int64_t expect = axis >= 0 ? out[0].dims[axis] : out[0].dims[0];
  if (U != expect)
    return keel_error(KEEL_INTERNAL, "Unique: found %lld distinct values, the output was sized for %lld",
                      (long long)U, (long long)expect);
  bool sorted = keel_attr_int(n, "sorted", 1) != 0;
  /* final position of each group: sorted order, or order of first occurrence */
  for (int64_t g = 0; g < U; g++) remap[g] = sorted ? g : -1;
  if (!sorted) {
    int64_t next = 0;
    for (int64_t i = 0; i < A; i++)
      if (remap[gid[i]] < 0) remap[gid[i]] = next++;
  }
  size_t es = keel_dtype_size(in[0].dtype), row = (size_t)c.inner * es;
  for (int64_t g = 0; g < U; g++) {
    int64_t u = remap[g];
    for (int64_t o = 0; o < c.outer; o++)
      memcpy((char *)out[0].data + (size_t)(o * U + u) * row, (const char *)in[0].data + (size_t)(o * A + first[g]) * row,
             row);
    if (at_out_wanted(n, out, n_out, 1)) ((int64_t *)out[1].data)[u] = first[g];
    if (at_out_wanted(n, out, n_out, 3)) ((int64_t *)out[3].data)[u] = count[g];
  }
  if (at_out_wanted(n, out, n_out, 2))
    for (int64_t i = 0; i < A; i++) ((int64_t *)out[2].data)[i] = remap[gid[i]];
  return NULL;
}

/* ---------------------------------------------------------------------------------------------------- */
/* NonMaxSuppression: per batch and class, greedily keep the highest-scoring boxes (score above
 * score_threshold when given), dropping any whose IoU with a kept box exceeds iou_threshold, up to
 * max_output_boxes_per_class. Output rows (batch, class, box) in that order. */

enum { NMS_BOXES, NMS_SCORES, NMS_MAX, NMS_IOU, NMS_SCORE_T };

typedef struct nms_p {
  int64_t B, C, N, max_out;
  double iou, score_t;
  bool has_score_t, center;
} nms_p;

static keel_status *nms_setup(const keel_node *n, const keel_view *in, int n_in, nms_p *p, bool need_data) {
  memset(p, 0, sizeof *p);
  if (n_in < 2 || !keel_view_present(&in[NMS_BOXES]) || !keel_view_present(&in[NMS_SCORES]))
    return keel_error(KEEL_INVALID_MODEL, "NonMaxSuppression needs boxes and scores");
  const keel_view *bx = &in[NMS_BOXES], *sc = &in[NMS_SCORES];
  if (!keel_elem_is_float(bx->dtype) || !keel_elem_is_float(sc->dtype))
    return keel_error(KEEL_UNSUPPORTED, "NonMaxSuppression: boxes/scores dtypes %s/%s (float)",
                      keel_dtype_name(bx->dtype), keel_dtype_name(sc->dtype));
  if (bx->ndim != 3 || bx->dims[2] != 4 || sc->ndim != 3 || sc->dims[0] != bx->dims[0] || sc->dims[2] != bx->dims[1])
    return keel_error(KEEL_INVALID_MODEL, "NonMaxSuppression: boxes must be (B, N, 4) and scores (B, C, N)");
  p->B = bx->dims[0], p->C = sc->dims[1], p->N = bx->dims[1];
  p->center = keel_attr_int(n, "center_point_box", 0) != 0;
  for (int i = NMS_MAX; i <= NMS_SCORE_T && i < n_in; i++) {
    if (!keel_view_present(&in[i])) continue;
    if (keel_view_numel(&in[i]) > 1)
      return keel_error(KEEL_INVALID_MODEL, "NonMaxSuppression: input %d must be a scalar", i);
    if (i == NMS_MAX ? in[i].dtype != KEEL_INT64 && in[i].dtype != KEEL_INT32 : !keel_elem_is_float(in[i].dtype))
      return keel_error(KEEL_INVALID_MODEL, "NonMaxSuppression: input %d has dtype %s", i, keel_dtype_name(in[i].dtype));
    if (need_data && !in[i].data) return keel_need_value(n, i);
    if (!in[i].data || keel_view_numel(&in[i]) == 0) continue;
    if (i == NMS_MAX) p->max_out = keel_view_get_i64(&in[i], 0);
    else if (i == NMS_IOU) p->iou = keel_elem_load(in[i].dtype, in[i].data, 0);
    else p->score_t = keel_elem_load(in[i].dtype, in[i].data, 0), p->has_score_t = true;
  }
  if (p->max_out < 0) p->max_out = 0;
  if (p->iou < 0 || p->iou > 1)
    return keel_error(KEEL_INVALID_ARGUMENT, "NonMaxSuppression: iou_threshold %g is outside [0, 1]", p->iou);
  if (need_data && (!bx->data || !sc->data) && p->B * p->N > 0 && p->max_out > 0)
    return keel_need_value(n, !bx->data ? NMS_BOXES : NMS_SCORES);
  return NULL;
}

typedef struct nms_sort {
  const keel_view *sc;
  int64_t base;
} nms_sort;

static int nms_cmp(const void *vctx, int64_t a, int64_t b) { /* higher score first; the sort is stable */
  const nms_sort *c = vctx;
  double u = keel_elem_load(c->sc->dtype, c->sc->data, c->base + a), v = keel_elem_load(c->sc->dtype, c->sc->data, c->base + b);
  return u > v ? -1 : u < v;
}

/* corners (ymin, xmin, ymax, xmax) of box i */
static void nms_box(const nms_p *p, const keel_view *bx, int64_t off, double r[4]) {
  double a = keel_elem_load(bx->dtype, bx->data, off), b = keel_elem_load(bx->dtype, bx->data, off + 1);
  double c = keel_elem_load(bx->dtype, bx->data, off + 2), d = keel_elem_load(bx->dtype, bx->data, off + 3);
  if (p->center) { /* (x_center, y_center, width, height) */
    r[0] = b - d / 2, r[1] = a - c / 2, r[2] = b + d / 2, r[3] = a + c / 2;
  } else { /* (y1, x1, y2, x2), any diagonal pair */
    r[0] = fmin(a, c), r[1] = fmin(b, d), r[2] = fmax(a, c), r[3] = fmax(b, d);
  }
}

static bool nms_suppress(const double a[4], const double b[4], double thr) {
  double ih = fmin(a[2], b[2]) - fmax(a[0], b[0]), iw = fmin(a[3], b[3]) - fmax(a[1], b[1]);
  if (ih <= 0 || iw <= 0) return false;
  double inter = ih * iw, aa = (a[2] - a[0]) * (a[3] - a[1]), ab = (b[2] - b[0]) * (b[3] - b[1]);
  double uni = aa + ab - inter;
  if (aa <= 0 || ab <= 0 || uni <= 0) return false;
  return inter / uni > thr;
}

/* Run the selection; idx/tmp/sel hold N entries each. Writes rows to `res` when given; returns the count. */
static int64_t nms_select(const nms_p *p, const keel_view *in, int64_t *idx, int64_t *tmp, int64_t *sel, int64_t *res) {
  const keel_view *bx = &in[NMS_BOXES], *sc = &in[NMS_SCORES];
  int64_t total = 0;
  if (p->max_out == 0) return 0;
  for (int64_t b = 0; b < p->B; b++)
    for (int64_t c = 0; c < p->C; c++) {
      nms_sort ctx = {sc, (b * p->C + c) * p->N};
      int64_t m = 0;
      for (int64_t i = 0; i < p->N; i++)
        if (!p->has_score_t || keel_elem_load(sc->dtype, sc->data, ctx.base + i) > p->score_t) idx[m++] = i;
      msort(idx, tmp, m, nms_cmp, &ctx);
      int64_t ns = 0;
      for (int64_t k = 0; k < m && ns < p->max_out; k++) {
        double cand[4], kept[4];
        nms_box(p, bx, (b * p->N + idx[k]) * 4, cand);
        bool keep = true;
        for (int64_t s = 0; s < ns && keep; s++) {
          nms_box(p, bx, (b * p->N + sel[s]) * 4, kept);
          if (nms_suppress(cand, kept, p->iou)) keep = false;
        }
        if (!keep) continue;
        sel[ns++] = idx[k];
        if (res) res[total * 3] = b, res[total * 3 + 1] = c, res[total * 3 + 2] = idx[k];
        total++;
      }
    }
  return total;
}

keel_status *keel_at_nms_infer(AT_IN) {
  nms_p p;
  KEEL_TRY(nms_setup(n, in, n_in, &p, true));
  if (n_out != 1) return keel_error(KEEL_INVALID_MODEL, "NonMaxSuppression has 1 output, got %d", n_out);
  int64_t cnt = 0;
  if (p.max_out > 0 && p.N > 0) {
    int64_t *buf = malloc((size_t)p.N * 3 * sizeof *buf);
    if (!buf) return keel_error(KEEL_OUT_OF_MEMORY, "NonMaxSuppression: out of memory for %lld boxes", (long long)p.N);
    cnt = nms_select(&p, in, buf, buf + p.N, buf + 2 * p.N, NULL);
    free(buf);
  }
  int64_t d[2] = {cnt, 3};
  keel_view_set_shape(&out[0], KEEL_INT64, d, 2);
  return NULL;
}

size_t keel_at_nms_ws(AT_WS) {
  nms_p p;
  keel_status *s = nms_setup(n, in, n_in, &p, false);
  if (s) {
    keel_status_free(s);
    return 0;
  }
  return (size_t)p.N * 3 * sizeof(int64_t);
}

keel_status *keel_at_nms_run(AT_RUN) {
  nms_p p;
  KEEL_TRY(nms_setup(n, in, n_in, &p, false));
  int64_t *idx = ex->workspace;
  if (p.max_out == 0 || p.N == 0) {
    if (out[0].dims[0] != 0) return keel_error(KEEL_INTERNAL, "NonMaxSuppression: output sized for %lld rows, selected 0",
                                               (long long)out[0].dims[0]);
    return NULL;
  }
  /* count first so a mis-sized output is reported instead of overrun */
  int64_t cnt = nms_select(&p, in, idx, idx + p.N, idx + 2 * p.N, NULL);
  if (cnt != out[0].dims[0])
    return keel_error(KEEL_INTERNAL, "NonMaxSuppression: output sized for %lld rows, selected %lld",
                      (long long)out[0].dims[0], (long long)cnt);
  nms_select(&p, in, idx, idx + p.N, idx + 2 * p.N, out[0].data);
  return NULL;
}
