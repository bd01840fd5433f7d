/* TopK: the K largest (or smallest) elements along an axis, with their int64 indices.
 *
 * Each slice along the axis is loaded into the workspace as sortable keys (double for float types, int64
 * for integers, uint64 mapped to an order-preserving int64), then a heap of K indices whose root is the
 * worst element kept so far selects the top K in O(A log K); popping the heap yields them sorted. Ties go
 * to the lower index (the ONNX rule); NaN ranks above every number (as if it were the largest value). */
#include <math.h>
#include <string.h>

#include "ops/reduce_impl.h"

typedef union tk_key {
  double d;
  int64_t i;
} tk_key;

typedef struct tk_ctx {
  const tk_key *k;
  bool is_f;
  bool largest;
} tk_ctx;

/* -1: a ranks before b, 1: after, 0: same value */
static inline int key_cmp_val(const tk_ctx *c, int64_t a, int64_t b) {
  if (c->is_f) {
    double x = c->k[a].d, y = c->k[b].d;
    bool xn = x != x, yn = y != y;
    if (xn || yn) return xn && yn ? 0 : (xn ? 1 : -1) * (c->largest ? -1 : 1);
    if (x == y) return 0;
    return (x > y) == c->largest ? -1 : 1;
  }
  int64_t x = c->k[a].i, y = c->k[b].i;
  if (x == y) return 0;
  return (x > y) == c->largest ? -1 : 1;
}
/* does a rank strictly before b (value, then lower index)? */
static inline bool before(const tk_ctx *c, int64_t a, int64_t b) {
  int r = key_cmp_val(c, a, b);
  return r < 0 || (r == 0 && a < b);
}

/* heap with the worst element at the root: parent ranks after its children */
static void sift_down(const tk_ctx *c, int64_t *h, int64_t n, int64_t i) {
  for (;;) {
    int64_t l = 2 * i + 1, r = l + 1, w = i;
    if (l < n && before(c, h[w], h[l])) w = l;
    if (r < n && before(c, h[w], h[r])) w = r;
    if (w == i) return;
    int64_t t = h[i];
    h[i] = h[w];
    h[w] = t;
    i = w;
  }
}

static keel_status *topk_axis(const keel_node *n, const keel_view *x, int *ax) {
  int64_t axis = keel_attr_int(n, "axis", -1);
  if (!keel_axis_normalize(axis, x->ndim, ax))
    return keel_error(KEEL_INVALID_MODEL, "TopK: axis %lld is out of range for rank %d", (long long)axis, x->ndim);
  return NULL;
}

static keel_status *topk_k(const keel_node *n, const keel_view *in, int n_in, bool k_input, int64_t *k) {
  if (!k_input) {
    const keel_attr *a = keel_node_attr(n, "k");
    if (!a) return keel_error(KEEL_INVALID_MODEL, "TopK: attribute k is required at this opset");
    *k = a->i;
    return NULL;
  }
  if (n_in < 2 || !keel_view_present(&in[1])) return keel_error(KEEL_INVALID_MODEL, "TopK: input K is missing");
  const keel_view *kv = &in[1];
  if (kv->dtype != KEEL_INT64 && kv->dtype != KEEL_INT32)
    return keel_error(KEEL_INVALID_MODEL, "TopK: K must be int64, got %s", keel_dtype_name(kv->dtype));
  if (keel_view_numel(kv) != 1 || kv->ndim > 1)
    return keel_error(KEEL_INVALID_MODEL, "TopK: K must be a 1-element 1-D tensor");
  if (!kv->data) return keel_need_value(n, 1);
  *k = keel_view_get_i64(kv, 0);
  return NULL;
}

static keel_status *topk_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                               bool k_input) {
  if (n_in != (k_input ? 2 : 1) || n_out != 2 || !keel_view_present(&in[0]))
    return keel_error(KEEL_INVALID_MODEL, "TopK takes %d input(s) and 2 outputs (got %d and %d)", k_input ? 2 : 1,
                      n_in, n_out);
  keel_dtype t = in[0].dtype;
  if (!kr_is_float(t) && !kr_is_int(t))
    return keel_error(KEEL_UNSUPPORTED, "TopK does not support input dtype %s", keel_dtype_name(t));
  int ax;
  KEEL_TRY(topk_axis(n, &in[0], &ax));
  int64_t k;
  KEEL_TRY(topk_k(n, in, n_in, k_input, &k));
  if (k < 0 || (in[0].dims[ax] >= 0 && k > in[0].dims[ax]))
    return keel_error(KEEL_INVALID_ARGUMENT, "TopK: K = %lld but the axis has %lld elements", (long long)k,
                      (long long)in[0].dims[ax]);
  int64_t dims[KEEL_MAX_DIMS];
  memcpy(dims, in[0].dims, sizeof(int64_t) * (size_t)in[0].ndim);
  dims[ax] = k;
  keel_view_set_shape(&out[0], t, dims, in[0].ndim);
  keel_view_set_shape(&out[1], KEEL_INT64, dims, in[0].ndim);
  return NULL;
}

keel_status *keel_kr_topk_infer_v1(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  return topk_infer(n, in, n_in, out, n_out, false);
}
keel_status *keel_kr_topk_infer_v10(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  return topk_infer(n, in, n_in, out, n_out, true);
}

/* keys of one slice (A) and the heap (at most A) */
size_t keel_kr_topk_ws(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  if (n_in < 1) return 0;
  int ax;
  keel_status *s = topk_axis(n, &in[0], &ax);
  if (s) {
    keel_status_free(s);
    return 0;
  }
  int64_t a = in[0].dims[ax];
  return a > 0 ? (size_t)a * 16 : 0;
}

static void load_keys(keel_dtype t, const void *x, int64_t base, int64_t st, int64_t alen, tk_key *k) {
  const char *c = x;
  switch (t) {
    case KEEL_FLOAT32:
      for (int64_t a = 0; a < alen; a++) k[a].d = ((const float *)x)[base + a * st];
      break;
    case KEEL_FLOAT64:
      for (int64_t a = 0; a < alen; a++) k[a].d = ((const double *)x)[base + a * st];
      break;
    case KEEL_FLOAT16: case KEEL_BFLOAT16:
      for (int64_t a = 0; a < alen; a++) k[a].d = kr_ld(t, x, base + a * st);
      break;
    case KEEL_INT64:
      for (int64_t a = 0; a < alen; a++) memcpy(&k[a].i, c + (base + a * st) * 8, 8);
      break;
    case KEEL_UINT64:
      for (int64_t a = 0; a < alen; a++) {
        uint64_t u;
        memcpy(&u, c + (base + a * st) * 8, 8);
        k[a].i = (int64_t)(u ^ 0x8000000000000000ull);
      }
      break;
    default: /* narrower integers are exact in double, but keep them as int64 */
      for (int64_t a = 0; a < alen; a++) k[a].i = (int64_t)kr_ld(t, x, base + a * st);
      break;
  }
}

keel_status *keel_kr_topk_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                              keel_exec *ex) {
  const keel_view *x = &in[0];
  int ax;
  KEEL_TRY(topk_axis(n, x, &ax));
  int64_t k;
  KEEL_TRY(topk_k(n, in, n_in, n_in > 1, &k));
  int64_t alen = x->dims[ax];
  if (k < 0 || k > alen)
    return keel_error(KEEL_INVALID_ARGUMENT, "TopK: K = %lld but the axis has %lld elements", (long long)k,
                      (long long)alen);
  if (out[0].ndim != x->ndim || out[0].dims[ax] != k)
    return keel_error(KEEL_INTERNAL, "TopK: output shape does not match K = %lld", (long long)k);
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < ax; d++) outer *= x->dims[d];
  for (int d = ax + 1; d < x->ndim; d++) inner *= x->dims[d];
  if (outer * inner * k == 0) return NULL;
  size_t need = (size_t)alen * 16;
  if (!ex || !ex->workspace || ex->workspace_bytes < need)
    return keel_error(KEEL_INTERNAL, "TopK: workspace of %zu bytes expected", need);
  tk_key *keys = ex->workspace;
  int64_t *heap = (int64_t *)(keys + alen);
  tk_ctx c = {keys, kr_is_float(x->dtype), keel_attr_int(n, "largest", 1) != 0};
  size_t es = keel_dtype_size(x->dtype);
  const char *xd = x->data;
  char *vd = out[0].data;
  int64_t *id = out[1].data;
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      int64_t base = o * alen * inner + i;
      load_keys(x->dtype, x->data, base, inner, alen, keys);
      for (int64_t a = 0; a < k; a++) heap[a] = a;
      for (int64_t a = k / 2 - 1; a >= 0; a--) sift_down(&c, heap, k, a);
      for (int64_t a = k; a < alen; a++)
        if (before(&c, a, heap[0])) {
          heap[0] = a;
          sift_down(&c, heap, k, 0);
        }
      /* pop the worst to the back: the output comes out best first */
      int64_t obase = o * k * inner + i;
      for (int64_t m = k; m > 0; m--) {
        int64_t w = heap[0];
        int64_t pos = obase + (m - 1) * inner;
        id[pos] = w;
        memcpy(vd + (size_t)pos * es, xd + (size_t)(base + w * inner) * es, es);
        heap[0] = heap[m - 1];
        sift_down(&c, heap, m - 1, 0);
      }
    }
  return NULL;
}
