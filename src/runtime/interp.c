/* Node-by-node interpreter with subgraph support. See interp.h. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/shape.h"
#include "core/tensor_internal.h"
#include "ops/op.h"
#include "runtime/interp.h"
#include "runtime/interp_seq.h"
#include "ops/string_ops.h"

typedef struct scope {
  const keel_graph *g;
  keel_ivalue **env;
  const struct scope *parent;
} scope;

typedef struct {
  keel_allocator *alloc;
  int depth;
} interp_ctx;

#define MAX_DEPTH 64

/* The ml family's kernels (ops/ml.c: LabelEncoder, ArrayFeatureExtractor, TfIdfVectorizer...) take strings
 * themselves and own any string outputs they make; everything else asks ops/string.c. */
KEEL_OP_FAMILY(ml)

static const keel_op_def *string_def_for(const keel_node *n, keel_strings_mode *mode) {
  for (int i = 0; i < keel_ops_ml_count; i++)
    if (n->op == &keel_ops_ml[i]) {
      *mode = KEEL_STRINGS_OWNED;
      return n->op;
    }
  return keel_string_def_for(n, mode);
}

static keel_status *run_graph(interp_ctx *cx, const keel_graph *g, keel_ivalue *const *inputs, int n_in,
                              const scope *parent, keel_ivalue **outputs);

static keel_ivalue *lookup_outer(const scope *s, const char *name) {
  for (; s; s = s->parent) {
    int v = keel_graph_find_value(s->g, name);
    if (v >= 0 && s->env[v]) return s->env[v];
  }
  return NULL;
}

static keel_status *iv_oom(void) { return keel_error(KEEL_OUT_OF_MEMORY, "out of memory wrapping a value"); }

/* The tensor inside v, or an error naming what v is instead. NULL v gives NULL (an omitted input). */
static keel_status *iv_as_tensor(const keel_ivalue *v, const char *what, int i, keel_tensor **t) {
  *t = NULL;
  if (!v) return NULL;
  if (v->kind != KEEL_IV_TENSOR)
    return keel_error(KEEL_UNSUPPORTED, "%s %d is %s; this operator takes tensors", what, i, keel_iv_kind_name(v));
  *t = v->t;
  return NULL;
}

static void to_view(keel_tensor *t, keel_view *v) {
  if (!t) {
    memset(v, 0, sizeof *v);
    return;
  }
  v->dtype = t->dtype;
  v->ndim = t->ndim;
  memcpy(v->dims, t->dims, sizeof v->dims);
  v->data = t->data;
}

static const keel_graph *graph_attr(const keel_node *n, const char *name) {
  const keel_attr *a = keel_node_attr(n, name);
  return a && a->type == KEEL_ATTR_GRAPH ? a->g : NULL;
}

static keel_status *scalar(keel_dtype dt, const void *val, keel_ivalue **out) {
  keel_tensor *t;
  KEEL_TRY(keel_tensor_from_data(dt, NULL, 0, val, &t));
  *out = keel_iv_tensor(t);
  return *out ? NULL : iv_oom();
}

static bool truthy(const keel_ivalue *v) {
  if (!v || v->kind != KEEL_IV_TENSOR || keel_tensor_numel(v->t) < 1) return false;
  return ((const uint8_t *)v->t->data)[0] != 0;
}

static keel_status *own_or_release(keel_tensor **t) {
  keel_status *s = keel_strings_own(*t);
  if (s) {
    keel_tensor_release(*t);
    *t = NULL;
  }
  return s;
}

static keel_status *take_slice(const keel_tensor *t, int axis, int64_t i, keel_allocator *al, keel_tensor **out) {
  int64_t dims[KEEL_MAX_DIMS];
  int nd = 0;
  for (int d = 0; d < t->ndim; d++)
    if (d != axis) dims[nd++] = t->dims[d];
  KEEL_TRY(keel_tensor_create(t->dtype, dims, nd, al, out));
  size_t es = keel_dtype_size(t->dtype);
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < axis; d++) outer *= t->dims[d];
  for (int d = axis + 1; d < t->ndim; d++) inner *= t->dims[d];
  const char *src = t->data;
  char *dst = (*out)->data;
  for (int64_t o = 0; o < outer; o++)
    memcpy(dst + (size_t)(o * inner) * es, src + (size_t)((o * t->dims[axis] + i) * inner) * es, (size_t)inner * es);
  return own_or_release(out); /* string elements were copied as records: copy their bytes */
}

/* Stack n equally shaped parts along a new `axis` (parts[k] goes to position k, or n-1-k if reversed). */
static keel_status *stack(keel_tensor **parts, int64_t n, int axis, bool reverse, keel_dtype dt_if_empty,
                          keel_allocator *al, keel_tensor **out) {
  if (n == 0) {
    int64_t zero = 0;
    return keel_tensor_create(dt_if_empty, &zero, 1, al, out);
  }
  const keel_tensor *p0 = parts[0];
  if (axis < 0 || axis > p0->ndim || p0->ndim + 1 > KEEL_MAX_DIMS)
    return keel_error(KEEL_INVALID_MODEL, "scan output axis %d is out of range for rank %d", axis, p0->ndim + 1);
  int64_t dims[KEEL_MAX_DIMS];
  for (int d = 0, s = 0; d <= p0->ndim; d++) dims[d] = d == axis ? n : p0->dims[s++];
  for (int64_t k = 0; k < n; k++)
    if (parts[k]->dtype != p0->dtype || !keel_shape_equal(parts[k]->dims, parts[k]->ndim, p0->dims, p0->ndim))
      return keel_error(KEEL_SHAPE_MISMATCH, "scan output parts have different shapes across iterations");
  KEEL_TRY(keel_tensor_create(p0->dtype, dims, p0->ndim + 1, al, out));
  size_t es = keel_dtype_size(p0->dtype);
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < axis; d++) outer *= p0->dims[d];
  for (int d = axis; d < p0->ndim; d++) inner *= p0->dims[d];
  char *dst = (*out)->data;
  for (int64_t k = 0; k < n; k++) {
    int64_t pos = reverse ? n - 1 - k : k;
    const char *src = parts[k]->data;
    for (int64_t o = 0; o < outer; o++)
      memcpy(dst + (size_t)((o * n + pos) * inner) * es, src + (size_t)(o * inner) * es, (size_t)inner * es);
  }
  return own_or_release(out); /* string elements were copied as records: copy their bytes */
}

static keel_status *run_if(interp_ctx *cx, const keel_node *n, keel_ivalue **in, int n_formal, const scope *sc,
                           keel_ivalue **out) {
  if (n_formal < 1 || !in[0] || in[0]->kind != KEEL_IV_TENSOR || keel_tensor_numel(in[0]->t) != 1)
    return keel_error(KEEL_INVALID_MODEL, "If needs a condition input holding one element");
  const keel_graph *branch = graph_attr(n, truthy(in[0]) ? "then_branch" : "else_branch");
  if (!branch) return keel_error(KEEL_INVALID_MODEL, "If has no then_branch/else_branch graph");
  if (branch->n_outputs != n->n_outputs)
    return keel_error(KEEL_INVALID_MODEL, "If branch has %d outputs, the node %d", branch->n_outputs, n->n_outputs);
  return run_graph(cx, branch, NULL, 0, sc, out);
}

/* Stack the tensors of per-iteration ivalues (scan outputs of Loop/Scan must be tensors). */
static keel_status *stack_values(keel_ivalue **vals, int64_t n, size_t stride, int axis, bool reverse,
                                 keel_dtype dt_if_empty, keel_allocator *al, keel_ivalue **out) {
  keel_tensor **parts = calloc((size_t)n + 1, sizeof *parts);
  if (!parts) return iv_oom();
  keel_status *s = NULL;
  for (int64_t k = 0; k < n && !s; k++) s = iv_as_tensor(vals[(size_t)k * stride], "scan output of iteration", (int)k, &parts[k]);
  keel_tensor *t = NULL;
  if (!s) s = stack(parts, n, axis, reverse, dt_if_empty, al, &t);
  free(parts);
  if (s) return s;
  *out = keel_iv_tensor(t);
  return *out ? NULL : iv_oom();
}

static keel_status *run_loop(interp_ctx *cx, const keel_node *n, keel_ivalue **in, int n_formal, const scope *sc,
                             keel_ivalue **out) {
  const keel_graph *body = graph_attr(n, "body");
  if (!body) return keel_error(KEEL_INVALID_MODEL, "Loop has no body graph");
  int N = n_formal - 2; /* loop-carried values */
  if (N < 0) return keel_error(KEEL_INVALID_MODEL, "Loop needs at least 2 inputs (M, cond)");
  int K = body->n_outputs - 1 - N; /* scan outputs */
  if (K < 0 || body->n_inputs != N + 2 || n->n_outputs != N + K)
    return keel_error(KEEL_INVALID_MODEL, "Loop body has %d inputs and %d outputs, which does not fit %d carried values",
                      body->n_inputs, body->n_outputs, N);
  keel_tensor *m_t, *c_t;
  KEEL_TRY(iv_as_tensor(in[0], "input", 0, &m_t));
  KEEL_TRY(iv_as_tensor(in[1], "input", 1, &c_t));
  bool has_m = m_t != NULL, cond = c_t ? truthy(in[1]) : true;
  int64_t M = has_m ? (int64_t)keel_view_get_i64(&(keel_view){m_t->dtype, m_t->ndim, {0}, m_t->data}, 0) : 0;
  keel_status *s = NULL;
  keel_ivalue **carried = calloc((size_t)N + 1, sizeof *carried);
  keel_ivalue **body_in = calloc((size_t)N + 2, sizeof *body_in);
  keel_ivalue **body_out = calloc((size_t)body->n_outputs + 1, sizeof *body_out);
  keel_ivalue ***scan = calloc((size_t)K + 1, sizeof *scan);
  int64_t iters = 0, cap = 0;
  if (!carried || !body_in || !body_out || !scan) {
    s = keel_error(KEEL_OUT_OF_MEMORY, "out of memory running Loop");
    goto done;
  }
  for (int i = 0; i < N; i++) carried[i] = keel_iv_retain(in[2 + i]);
  for (int64_t it = 0; (!has_m || it < M) && cond; it++) {
    if (it >= (int64_t)1 << 24) {
      s = keel_error(KEEL_UNSUPPORTED, "Loop ran more than 2^24 iterations");
      goto done;
    }
    bool c = true;
    s = scalar(KEEL_INT64, &it, &body_in[0]);
    if (!s) s = scalar(KEEL_BOOL, &c, &body_in[1]);
    if (s) {
      keel_iv_release(body_in[0]);
      body_in[0] = NULL;
      goto done;
    }
    for (int i = 0; i < N; i++) body_in[2 + i] = carried[i];
    s = run_graph(cx, body, body_in, N + 2, sc, body_out);
    keel_iv_release(body_in[0]);
    keel_iv_release(body_in[1]);
    body_in[0] = body_in[1] = NULL;
    if (s) goto done;
    cond = truthy(body_out[0]);
    keel_iv_release(body_out[0]);
    for (int i = 0; i < N; i++) {
      keel_iv_release(carried[i]);
      carried[i] = body_out[1 + i];
    }
    if (iters == cap) {
      cap = cap ? cap * 2 : 8;
      for (int k = 0; k < K; k++) {
        keel_ivalue **g2 = realloc(scan[k], (size_t)cap * sizeof **scan);
        if (!g2) {
          s = keel_error(KEEL_OUT_OF_MEMORY, "out of memory running Loop");
          /* scan[0..k) may already be grown; release this iteration's outputs, none is stored yet */
          for (int j = 0; j < K; j++) keel_iv_release(body_out[1 + N + j]);
          goto done;
        }
        scan[k] = g2;
      }
    }
    for (int k = 0; k < K; k++) scan[k][iters] = body_out[1 + N + k];
    iters++;
  }
  for (int i = 0; i < N; i++) {
    out[i] = carried[i];
    carried[i] = NULL;
  }
  for (int k = 0; k < K && !s; k++) {
    keel_dtype dt = body->values[body->outputs[1 + N + k]].dtype;
    s = stack_values(scan[k], iters, 1, 0, false, dt ? dt : KEEL_FLOAT32, cx->alloc, &out[N + k]);
  }
done:
  for (int i = 0; carried && i < N; i++) keel_iv_release(carried[i]);
  for (int k = 0; scan && k < K; k++) {
    for (int64_t i = 0; i < iters; i++) keel_iv_release(scan[k][i]);
    free(scan[k]);
  }
  free(scan);
  free(carried);
  free(body_in);
  free(body_out);
  return s;
}

static int64_t attr_at(const keel_node *n, const char *name, int i, int64_t dflt) {
  const int64_t *v;
  int c = keel_attr_ints(n, name, &v);
  return c > i ? v[i] : dflt;
}

static keel_status *run_scan(interp_ctx *cx, const keel_node *n, keel_ivalue **in, int n_formal, const scope *sc,
                             keel_ivalue **out) {
  const keel_graph *body = graph_attr(n, "body");
  if (!body) return keel_error(KEEL_INVALID_MODEL, "Scan has no body graph");
  int M = (int)keel_attr_int(n, "num_scan_inputs", -1);
  int N = n_formal - M;
  int K = body->n_outputs - N;
  if (M < 1 || N < 0 || K < 0 || body->n_inputs != N + M || n->n_outputs != N + K)
    return keel_error(KEEL_INVALID_MODEL, "Scan's num_scan_inputs=%d does not fit its %d inputs and body", M, n_formal);
  int64_t T = -1;
  int axes[64];
  keel_tensor *xs[64];
  if (M > 64) return keel_error(KEEL_UNSUPPORTED, "Scan with more than 64 scan inputs");
  for (int j = 0; j < M; j++) {
    KEEL_TRY(iv_as_tensor(in[N + j], "input", N + j, &xs[j]));
    keel_tensor *x = xs[j];
    if (!x) return keel_error(KEEL_INVALID_MODEL, "Scan input %d is missing", N + j);
    int ax;
    if (!keel_axis_normalize(attr_at(n, "scan_input_axes", j, 0), x->ndim, &ax))
      return keel_error(KEEL_INVALID_MODEL, "Scan input axis out of range");
    axes[j] = ax;
    if (T >= 0 && x->dims[ax] != T) return keel_error(KEEL_SHAPE_MISMATCH, "Scan inputs have different lengths");
    T = x->dims[ax];
  }
  keel_status *s = NULL;
  keel_ivalue **state = calloc((size_t)N + 1, sizeof *state);
  keel_ivalue **body_in = calloc((size_t)(N + M) + 1, sizeof *body_in);
  keel_ivalue **body_out = calloc((size_t)body->n_outputs + 1, sizeof *body_out);
  keel_ivalue **parts = calloc((size_t)K * (size_t)(T > 0 ? T : 1) + 1, sizeof *parts);
  int64_t done_iters = 0;
  if (!state || !body_in || !body_out || !parts) {
    s = keel_error(KEEL_OUT_OF_MEMORY, "out of memory running Scan");
    goto done;
  }
  for (int i = 0; i < N; i++) state[i] = keel_iv_retain(in[i]);
  for (int64_t t = 0; t < T; t++) {
    for (int i = 0; i < N; i++) body_in[i] = state[i];
    for (int j = 0; j < M && !s; j++) {
      int64_t pos = attr_at(n, "scan_input_directions", j, 0) ? T - 1 - t : t;
      keel_tensor *sl;
      s = take_slice(xs[j], axes[j], pos, cx->alloc, &sl);
      if (!s && !(body_in[N + j] = keel_iv_tensor(sl))) s = iv_oom();
    }
    if (!s) s = run_graph(cx, body, body_in, N + M, sc, body_out);
    for (int j = 0; j < M; j++) {
      keel_iv_release(body_in[N + j]);
      body_in[N + j] = NULL;
    }
    if (s) goto done;
    for (int i = 0; i < N; i++) {
      keel_iv_release(state[i]);
      state[i] = body_out[i];
    }
    for (int k = 0; k < K; k++) parts[(size_t)k * (size_t)T + (size_t)t] = body_out[N + k];
    done_iters++;
  }
  for (int i = 0; i < N; i++) {
    out[i] = state[i];
    state[i] = NULL;
  }
  for (int k = 0; k < K && !s; k++) {
    keel_ivalue *p0 = T > 0 ? parts[(size_t)k * (size_t)T] : NULL;
    int rank = p0 && p0->kind == KEEL_IV_TENSOR ? p0->t->ndim + 1 : 1;
    int ax;
    if (!keel_axis_normalize(attr_at(n, "scan_output_axes", k, 0), rank, &ax)) {
      s = keel_error(KEEL_INVALID_MODEL, "Scan output axis out of range");
      break;
    }
    keel_dtype dt = body->values[body->outputs[N + k]].dtype;
    s = stack_values(&parts[(size_t)k * (size_t)T], T, 1, ax, attr_at(n, "scan_output_directions", k, 0) != 0,
                     dt ? dt : KEEL_FLOAT32, cx->alloc, &out[N + k]);
  }
done:
  for (int i = 0; state && i < N; i++) keel_iv_release(state[i]);
  for (int64_t t = 0; parts && t < done_iters; t++)
    for (int k = 0; k < K; k++) keel_iv_release(parts[(size_t)k * (size_t)T + (size_t)t]);
  free(state);
  free(body_in);
  free(body_out);
  free(parts);
  return s;
}

/* Scan at opset 8: inputs are [sequence_lens], states [B, ...] and scan inputs [B, T, ...] (batch axis 0,
 * scan axis 1). The body runs per batch row over that row's first sequence_lens[b] steps (all T if omitted;
 * `directions` reverses within them); states come out [B, ...], scan outputs [B, T, ...] zero-padded after
 * each row's length. */
static keel_status *run_scan8(interp_ctx *cx, const keel_node *n, keel_ivalue **in, int n_formal, const scope *sc,
                              keel_ivalue **out) {
  const keel_graph *body = graph_attr(n, "body");
  if (!body) return keel_error(KEEL_INVALID_MODEL, "Scan has no body graph");
  int M = (int)keel_attr_int(n, "num_scan_inputs", -1);
  int N = n_formal - 1 - M;
  int K = body->n_outputs - N;
  if (M < 1 || N < 0 || K < 0 || body->n_inputs != N + M || n->n_outputs != N + K)
    return keel_error(KEEL_INVALID_MODEL, "Scan's num_scan_inputs=%d does not fit its %d inputs and body", M, n_formal);
  keel_tensor *lens, *ts[64 + 64];
  if (N + M > 128) return keel_error(KEEL_UNSUPPORTED, "Scan with more than 128 states and scan inputs");
  KEEL_TRY(iv_as_tensor(in[0], "input", 0, &lens));
  int64_t B = -1, T = -1;
  for (int j = 0; j < N + M; j++) {
    KEEL_TRY(iv_as_tensor(in[1 + j], "input", 1 + j, &ts[j]));
    keel_tensor *x = ts[j];
    bool scan_in = j >= N;
    if (!x || x->ndim < (scan_in ? 2 : 1))
      return keel_error(KEEL_INVALID_ARGUMENT, "Scan input %d must have a batch axis%s", 1 + j, scan_in ? " and a scan axis" : "");
    if (B >= 0 && x->dims[0] != B) return keel_error(KEEL_SHAPE_MISMATCH, "Scan inputs have different batch sizes");
    B = x->dims[0];
    if (scan_in && T >= 0 && x->dims[1] != T) return keel_error(KEEL_SHAPE_MISMATCH, "Scan inputs have different sequence lengths");
    if (scan_in) T = x->dims[1];
  }
  if (lens && (lens->dtype != KEEL_INT32 && lens->dtype != KEEL_INT64))
    return keel_error(KEEL_INVALID_ARGUMENT, "Scan sequence_lens must be int32 or int64, got %s", keel_dtype_name(lens->dtype));
  if (lens && keel_tensor_numel(lens) != B)
    return keel_error(KEEL_SHAPE_MISMATCH, "Scan sequence_lens has %lld entries for a batch of %lld",
                      (long long)keel_tensor_numel(lens), (long long)B);
  for (int64_t b = 0; lens && b < B; b++) {
    int64_t l = keel_view_get_i64(&(keel_view){lens->dtype, lens->ndim, {0}, lens->data}, b);
    if (l < 0 || l > T)
      return keel_error(KEEL_INVALID_ARGUMENT, "Scan sequence_lens[%lld] = %lld is outside [0, %lld]", (long long)b, (long long)l, (long long)T);
  }
  keel_status *s = NULL;
  size_t slots = (size_t)B * (size_t)(N + K * (T > 0 ? T : 1));
  keel_ivalue **res = calloc(slots + 1, sizeof *res); /* per row: N final states, then K x T parts */
  keel_ivalue **state = calloc((size_t)N + 1, sizeof *state);
  keel_ivalue **body_in = calloc((size_t)(N + M) + 1, sizeof *body_in);
  keel_ivalue **body_out = calloc((size_t)body->n_outputs + 1, sizeof *body_out);
  size_t row = (size_t)(N + K * (T > 0 ? T : 1));
  if (!res || !state || !body_in || !body_out) {
    s = keel_error(KEEL_OUT_OF_MEMORY, "out of memory running Scan");
    goto done;
  }
  for (int64_t b = 0; b < B && !s; b++) {
    int64_t len = lens ? keel_view_get_i64(&(keel_view){lens->dtype, lens->ndim, {0}, lens->data}, b) : T;
    for (int i = 0; i < N && !s; i++) {
      keel_tensor *st;
      s = take_slice(ts[i], 0, b, cx->alloc, &st);
      if (!s && !(state[i] = keel_iv_tensor(st))) s = iv_oom();
    }
    for (int64_t t = 0; t < len && !s; t++) {
      for (int i = 0; i < N; i++) body_in[i] = state[i];
      for (int j = 0; j < M && !s; j++) {
        int64_t pos = attr_at(n, "directions", j, 0) ? len - 1 - t : t;
        keel_tensor *rowt = NULL, *sl = NULL;
        s = take_slice(ts[N + j], 0, b, cx->alloc, &rowt);
        if (!s) s = take_slice(rowt, 0, pos, cx->alloc, &sl);
        keel_tensor_release(rowt);
        if (!s && !(body_in[N + j] = keel_iv_tensor(sl))) s = iv_oom();
      }
      if (!s) s = run_graph(cx, body, body_in, N + M, sc, body_out);
      for (int j = 0; j < M; j++) {
        keel_iv_release(body_in[N + j]);
        body_in[N + j] = NULL;
      }
      if (s) break;
      for (int i = 0; i < N; i++) {
        keel_iv_release(state[i]);
        state[i] = body_out[i];
      }
      for (int k = 0; k < K; k++) res[(size_t)b * row + (size_t)N + (size_t)k * (size_t)T + (size_t)t] = body_out[N + k];
    }
    for (int i = 0; i < N; i++) {
      res[(size_t)b * row + (size_t)i] = state[i];
      state[i] = NULL;
    }
  }
  /* final states: stack the rows' states on the batch axis */
  for (int i = 0; i < N && !s; i++) {
    keel_dtype dt = ts[i]->dtype;
    s = stack_values(&res[i], B, row, 0, false, dt, cx->alloc, &out[i]);
  }
  /* scan outputs [B, T, part...]: every part shaped like the first one found, zeros where a row ended */
  for (int k = 0; k < K && !s; k++) {
    keel_tensor *p0 = NULL;
    for (size_t q = 0; q < (size_t)B * (size_t)T && !p0 && !s; q++) {
      keel_ivalue *v = res[(q / (size_t)T) * row + (size_t)N + (size_t)k * (size_t)T + q % (size_t)T];
      if (v) s = iv_as_tensor(v, "scan output", k, &p0);
    }
    if (s) break;
    int64_t dims[KEEL_MAX_DIMS];
    int nd = 2;
    dims[0] = B, dims[1] = T;
    keel_dtype dt = body->values[body->outputs[N + k]].dtype;
    if (p0) {
      if (p0->ndim + 2 > KEEL_MAX_DIMS) {
        s = keel_error(KEEL_UNSUPPORTED, "Scan output %d has too high a rank", N + k);
        break;
      }
      for (int d = 0; d < p0->ndim; d++) dims[nd++] = p0->dims[d];
      dt = p0->dtype;
    }
    keel_tensor *o = NULL;
    s = keel_tensor_create(dt ? dt : KEEL_FLOAT32, dims, nd, cx->alloc, &o);
    if (s) break;
    size_t es = keel_dtype_size(o->dtype), part = p0 ? (size_t)keel_tensor_numel(p0) * es : 0;
    if (dt != KEEL_STRING && keel_tensor_nbytes(o)) memset(o->data, 0, keel_tensor_nbytes(o));
    for (int64_t b = 0; b < B && !s; b++)
      for (int64_t t = 0; t < T && !s; t++) {
        keel_ivalue *v = res[(size_t)b * row + (size_t)N + (size_t)k * (size_t)T + (size_t)t];
        keel_tensor *p;
        if (!v) continue;
        s = iv_as_tensor(v, "scan output", k, &p);
        if (!s && (p->dtype != p0->dtype || !keel_shape_equal(p->dims, p->ndim, p0->dims, p0->ndim)))
          s = keel_error(KEEL_SHAPE_MISMATCH, "scan output parts have different shapes across iterations");
        if (!s && part) memcpy((char *)o->data + (size_t)(b * T + t) * part, p->data, part);
      }
    if (!s) s = own_or_release(&o);
    else if (dt == KEEL_STRING) keel_strings_forget(o);
    if (!s && !(out[N + k] = keel_iv_tensor(o))) s = iv_oom();
    if (s) keel_tensor_release(o);
  }
done:
  for (size_t q = 0; res && q < slots; q++) keel_iv_release(res[q]);
  for (int i = 0; state && i < N; i++) keel_iv_release(state[i]);
  free(res);
  free(state);
  free(body_in);
  free(body_out);
  return s;
}

/* SequenceMap: the body runs once per element of the first input (a sequence); sequence inputs give their
 * element at that position, tensor inputs are passed whole; each body output is gathered into a sequence. */
static keel_status *run_sequence_map(interp_ctx *cx, const keel_node *n, keel_ivalue **in, int n_formal,
                                     const scope *sc, keel_ivalue **out) {
  const keel_graph *body = graph_attr(n, "body");
  if (!body) return keel_error(KEEL_INVALID_MODEL, "SequenceMap has no body graph");
  if (n_formal < 1 || !in[0] || in[0]->kind != KEEL_IV_SEQUENCE)
    return keel_error(KEEL_INVALID_ARGUMENT, "input 0 must be a sequence, got %s",
                      keel_iv_kind_name(n_formal > 0 ? in[0] : NULL));
  if (body->n_inputs != n_formal || body->n_outputs != n->n_outputs)
    return keel_error(KEEL_INVALID_MODEL, "SequenceMap body has %d inputs and %d outputs, the node %d and %d",
                      body->n_inputs, body->n_outputs, n_formal, n->n_outputs);
  int64_t L = in[0]->n;
  for (int i = 0; i < n_formal; i++) {
    if (!in[i] || in[i]->kind == KEEL_IV_NONE)
      return keel_error(KEEL_INVALID_ARGUMENT, "input %d is %s", i, keel_iv_kind_name(in[i]));
    if (in[i]->kind == KEEL_IV_SEQUENCE && in[i]->n != L)
      return keel_error(KEEL_SHAPE_MISMATCH, "input %d has %lld elements, input 0 has %lld", i, (long long)in[i]->n,
                        (long long)L);
  }
  keel_status *s = NULL;
  keel_ivalue **body_in = calloc((size_t)n_formal + 1, sizeof *body_in);
  keel_ivalue **body_out = calloc((size_t)n->n_outputs + 1, sizeof *body_out);
  if (!body_in || !body_out) s = iv_oom();
  for (int k = 0; k < n->n_outputs && !s; k++) {
    keel_dtype dt = body->values[body->outputs[k]].dtype;
    if (!(out[k] = keel_iv_seq(dt, L))) s = iv_oom();
  }
  for (int64_t e = 0; e < L && !s; e++) {
    for (int i = 0; i < n_formal && !s; i++) {
      if (in[i]->kind == KEEL_IV_TENSOR) body_in[i] = keel_iv_retain(in[i]);
      else if (!(body_in[i] = keel_iv_tensor(keel_tensor_retain(in[i]->items[e])))) s = iv_oom();
    }
    if (!s) s = run_graph(cx, body, body_in, n_formal, sc, body_out);
    for (int i = 0; i < n_formal; i++) {
      keel_iv_release(body_in[i]);
      body_in[i] = NULL;
    }
    for (int k = 0; k < n->n_outputs && !s; k++) {
      keel_tensor *t;
      s = iv_as_tensor(body_out[k], "body output", k, &t);
      if (!s && !t) s = keel_error(KEEL_INTERNAL, "body output %d was not computed", k);
      if (!s && !keel_iv_seq_push(out[k], t)) s = iv_oom();
    }
    for (int k = 0; k < n->n_outputs && body_out; k++) {
      keel_iv_release(body_out[k]);
      body_out[k] = NULL;
    }
  }
  free(body_in);
  free(body_out);
  return s; /* on error, run_node releases out[] */
}

static keel_status *run_node(interp_ctx *cx, const keel_node *n, keel_ivalue **env, const scope *sc) {
  int n_formal = n->n_inputs - n->n_implicit_inputs;
  keel_ivalue *in_stack[16], *out_stack[16];
  keel_tensor *tout_stack[16];
  keel_view vin_stack[16], vout_stack[16];
  bool big = n->n_inputs > 16 || n->n_outputs > 16;
  keel_ivalue **in = big ? calloc((size_t)n->n_inputs + 1, sizeof *in) : in_stack;
  keel_ivalue **out = big ? calloc((size_t)n->n_outputs + 1, sizeof *out) : out_stack;
  keel_tensor **tout = big ? calloc((size_t)n->n_outputs + 1, sizeof *tout) : tout_stack;
  keel_view *vin = big ? calloc((size_t)n->n_inputs + 1, sizeof *vin) : vin_stack;
  keel_view *vout = big ? calloc((size_t)n->n_outputs + 1, sizeof *vout) : vout_stack;
  void *ws = NULL;
  keel_status *s = NULL;
  if (!in || !out || !tout || !vin || !vout) {
    s = keel_error(KEEL_OUT_OF_MEMORY, "out of memory");
    goto done;
  }
  for (int k = 0; k < n->n_outputs; k++) out[k] = NULL, tout[k] = NULL;
  for (int k = 0; k < n->n_inputs; k++) {
    in[k] = n->inputs[k] >= 0 ? env[n->inputs[k]] : NULL;
    if (n->inputs[k] >= 0 && !in[k]) {
      s = keel_error(KEEL_INTERNAL, "input %d of %s was not computed", k, keel_node_desc(n));
      goto done;
    }
  }
  const char *op = n->op_type;
  bool onnx = n->domain[0] == 0;
  if (onnx && !strcmp(op, "If")) s = run_if(cx, n, in, n_formal, sc, out);
  else if (onnx && !strcmp(op, "Loop")) s = run_loop(cx, n, in, n_formal, sc, out);
  else if (onnx && !strcmp(op, "Scan") && n->opset < 9) s = run_scan8(cx, n, in, n_formal, sc, out);
  else if (onnx && !strcmp(op, "Scan")) s = run_scan(cx, n, in, n_formal, sc, out);
  else if (onnx && !strcmp(op, "SequenceMap")) s = run_sequence_map(cx, n, in, n_formal, sc, out);
  else if (keel_interp_is_seq_op(n)) s = keel_interp_seq_run(n, in, n_formal, out, cx->alloc);
  else if (onnx && !strcmp(op, "Identity") && n_formal == 1 && in[0] && in[0]->kind != KEEL_IV_TENSOR)
    out[0] = keel_iv_retain(in[0]); /* Identity also passes sequences and optionals through */
  else if (!n->op->run) s = keel_error(KEEL_UNSUPPORTED, "no kernel");
  else {
    /* Strings (ops/string_ops.h): string operators and string variants own their outputs' bytes; byte-moving
     * kernels borrow them, and the outputs get their own copies below; any other operator is refused. */
    const keel_op_def *def = n->op;
    keel_strings_mode smode = KEEL_STRINGS_REFUSED;
    bool strs = false;
    for (int k = 0; k < n->n_inputs && !s; k++) {
      keel_tensor *t;
      s = iv_as_tensor(in[k], "input", k, &t);
      to_view(t, &vin[k]);
    }
    if (s) goto done;
    strs = keel_strings_involved(n, vin, n_formal);
    if (strs && !(def = string_def_for(n, &smode))) {
      s = keel_error(KEEL_UNSUPPORTED, "%s does not take string tensors", n->op_type);
      goto done;
    }
    memset(vout, 0, sizeof *vout * (size_t)n->n_outputs);
    s = def->infer(n, vin, n_formal, vout, n->n_outputs);
    for (int k = 0; !s && !strs && k < n->n_outputs; k++)
      if (vout[k].dtype == KEEL_STRING) { /* strings made from non-strings (Cast...) */
        strs = true;
        const keel_op_def *d2 = string_def_for(n, &smode);
        if (!d2) s = keel_error(KEEL_UNSUPPORTED, "%s cannot produce string tensors", n->op_type);
        else if (d2 != def) {
          def = d2;
          memset(vout, 0, sizeof *vout * (size_t)n->n_outputs);
          s = def->infer(n, vin, n_formal, vout, n->n_outputs);
        }
      }
    for (int k = 0; !s && k < n->n_outputs; k++) {
      if (n->outputs[k] < 0 && vout[k].dtype == KEEL_DTYPE_UNDEFINED) continue;
      s = keel_tensor_create(vout[k].dtype, vout[k].dims, vout[k].ndim, cx->alloc, &tout[k]);
      if (!s) vout[k].data = tout[k]->data;
    }
    if (!s) {
      size_t wsb = def->workspace ? def->workspace(n, vin, n_formal, vout, n->n_outputs) : 0;
      ws = wsb ? aligned_alloc(64, (wsb + 63) & ~(size_t)63) : NULL;
      if (wsb && !ws) s = keel_error(KEEL_OUT_OF_MEMORY, "out of memory for a %zu-byte workspace", wsb);
      keel_exec ex = {ws ? ws : keel_empty_workspace, wsb, 1};
      if (!s) {
        s = def->run(n, vin, n_formal, vout, n->n_outputs, &ex);
        for (int k = 0; smode == KEEL_STRINGS_BORROWED && k < n->n_outputs; k++) {
          if (s) keel_strings_forget(tout[k]); /* maybe half written: holds only borrowed pointers */
          else s = keel_strings_own(tout[k]);
        }
      }
    }
    for (int k = 0; !s && k < n->n_outputs; k++) {
      if (!tout[k] || n->outputs[k] < 0) continue;
      out[k] = keel_iv_tensor(tout[k]);
      tout[k] = NULL;
      if (!out[k]) s = iv_oom();
    }
  }
  if (!s)
    for (int k = 0; k < n->n_outputs; k++) {
      if (n->outputs[k] >= 0) {
        env[n->outputs[k]] = out[k];
        out[k] = NULL;
      }
    }
done:
  if (s) s = keel_error_prefix(s, "%s: ", keel_node_desc(n));
  for (int k = 0; out && k < n->n_outputs; k++) keel_iv_release(out[k]);
  for (int k = 0; tout && k < n->n_outputs; k++) keel_tensor_release(tout[k]);
  free(ws);
  if (big) {
    free(in);
    free(out);
    free(tout);
    free(vin);
    free(vout);
  }
  return s;
}

static keel_status *run_graph(interp_ctx *cx, const keel_graph *g, keel_ivalue *const *inputs, int n_in,
                              const scope *parent, keel_ivalue **outputs) {
  if (cx->depth >= MAX_DEPTH) return keel_error(KEEL_UNSUPPORTED, "subgraphs nest more than %d deep at run time", MAX_DEPTH);
  if (n_in != g->n_inputs)
    return keel_error(KEEL_INVALID_ARGUMENT, "graph '%s' has %d inputs, got %d", g->name ? g->name : "", g->n_inputs, n_in);
  keel_ivalue **env = calloc((size_t)g->n_values + 1, sizeof *env);
  int *uses = calloc((size_t)g->n_values + 1, sizeof *uses);
  keel_status *s = NULL;
  if (!env || !uses) {
    free(env);
    free(uses);
    return keel_error(KEEL_OUT_OF_MEMORY, "out of memory running a graph");
  }
  cx->depth++;
  scope sc = {g, env, parent};
  for (int v = 0; v < g->n_values && !s; v++) {
    if (g->values[v].constant) {
      if (!(env[v] = keel_iv_tensor(keel_tensor_retain(g->values[v].constant)))) s = iv_oom();
    } else if (g->values[v].is_outer) {
      env[v] = keel_iv_retain(lookup_outer(parent, g->values[v].name));
    }
  }
  for (int i = 0; i < n_in && !s; i++) {
    keel_iv_release(env[g->inputs[i]]);
    env[g->inputs[i]] = keel_iv_retain(inputs[i]);
  }
  for (int i = 0; i < g->n_nodes; i++)
    for (int k = 0; k < g->nodes[i].n_inputs; k++)
      if (g->nodes[i].inputs[k] >= 0) uses[g->nodes[i].inputs[k]]++;
  for (int i = 0; i < g->n_nodes && !s; i++) {
    const keel_node *n = &g->nodes[i];
    if (n->dead) continue;
    s = run_node(cx, n, env, &sc);
    /* free what no later node reads (graph outputs stay) */
    for (int k = 0; !s && k < n->n_inputs; k++) {
      int v = n->inputs[k];
      if (v >= 0 && --uses[v] == 0 && !g->values[v].is_output) {
        keel_iv_release(env[v]);
        env[v] = NULL;
      }
    }
  }
  for (int k = 0; !s && k < g->n_outputs; k++) {
    if (!env[g->outputs[k]])
      s = keel_error(KEEL_INTERNAL, "graph output '%s' was not computed", g->values[g->outputs[k]].name);
  }
  if (!s)
    for (int k = 0; k < g->n_outputs; k++) outputs[k] = keel_iv_retain(env[g->outputs[k]]);
  for (int v = 0; v < g->n_values; v++) keel_iv_release(env[v]);
  free(env);
  free(uses);
  cx->depth--;
  return s;
}

keel_status *keel_interp_run_values(const keel_graph *g, keel_ivalue *const *inputs, int n_in, keel_ivalue **outputs,
                                    keel_allocator *alloc) {
  interp_ctx cx = {alloc, 0};
  for (int k = 0; k < g->n_outputs; k++) outputs[k] = NULL;
  return run_graph(&cx, g, inputs, n_in, NULL, outputs);
}

keel_status *keel_interp_run(const keel_graph *g, keel_tensor *const *inputs, int n_in, keel_tensor **outputs,
                             keel_allocator *alloc) {
  for (int k = 0; k < g->n_outputs; k++) outputs[k] = NULL;
  keel_ivalue **iv_in = calloc((size_t)n_in + 1, sizeof *iv_in);
  keel_ivalue **iv_out = calloc((size_t)g->n_outputs + 1, sizeof *iv_out);
  keel_status *s = !iv_in || !iv_out ? iv_oom() : NULL;
  for (int i = 0; i < n_in && i < g->n_inputs && !s; i++) {
    keel_value_kind k = g->values[g->inputs[i]].kind;
    if (k == KEEL_VALUE_SEQUENCE || k == KEEL_VALUE_OPTIONAL_SEQUENCE)
      s = keel_error(KEEL_UNSUPPORTED, "graph input '%s' is a sequence; the API takes tensors only",
                     g->values[g->inputs[i]].name);
  }
  for (int i = 0; i < n_in && !s; i++)
    if (inputs[i] && !(iv_in[i] = keel_iv_tensor(keel_tensor_retain(inputs[i])))) s = iv_oom();
  if (!s) s = keel_interp_run_values(g, iv_in, n_in, iv_out, alloc);
  for (int k = 0; !s && k < g->n_outputs; k++)
    if (iv_out[k]->kind != KEEL_IV_TENSOR)
      s = keel_error(KEEL_UNSUPPORTED, "graph output '%s' is %s; the API returns tensors only",
                     g->values[g->outputs[k]].name, keel_iv_kind_name(iv_out[k]));
  for (int k = 0; !s && k < g->n_outputs; k++) outputs[k] = keel_tensor_retain(iv_out[k]->t);
  for (int i = 0; iv_in && i < n_in; i++) keel_iv_release(iv_in[i]);
  for (int k = 0; iv_out && k < g->n_outputs; k++) keel_iv_release(iv_out[k]);
  free(iv_in);
  free(iv_out);
  return s;
}
