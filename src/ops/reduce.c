/* Operator family: reduce.
 *
 * Reductions (ReduceSum ... ReduceSumSquare) live here; Softmax/LogSoftmax/Hardmax, ArgMax/ArgMin and
 * CumSum in reduce_softmax.c, TopK in reduce_topk.c, Einsum and Det in reduce_einsum.c.
 *
 * A reduction is planned as follows: dims of size 1 are dropped and adjacent dims that are all reduced
 * (or all kept) are merged, so any reduction becomes an alternation of kept and reduced groups. The
 * innermost group is then walked contiguously: either it is reduced (a row reduction into one output
 * element) or kept (an elementwise combine of a row into a row of accumulators). float32 rows that are
 * reduced whole ("[outer, R]": ReduceMean over the last axis, global pooling) take a fast path that
 * accumulates in double lanes the compiler vectorizes. Everything else accumulates in a workspace of
 * doubles (float types, and LogSumExp for all types) or of int64 (integer types, exact and wrapping as the
 * integer type would). */
#include <float.h>
#include <math.h>
#include <string.h>

#include "ops/reduce_impl.h"

/* The build uses -O2, whose "very cheap" vectorizer cost model skips loops that need a scalar tail;
 * these kernels are loops over arbitrary lengths, so let GCC vectorize them with a tail. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("vect-cost-model=dynamic")
#endif

typedef enum { R_SUM, R_MEAN, R_MAX, R_MIN, R_PROD, R_L1, R_L2, R_LOGSUM, R_LSE, R_SUMSQ } rop;

static const char *rop_name(rop op) {
  static const char *names[] = {"ReduceSum", "ReduceMean", "ReduceMax",    "ReduceMin",       "ReduceProd",
                                "ReduceL1",  "ReduceL2",   "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"};
  return names[op];
}

/* How the elements are combined once pre-transformed (abs, square, exp). */
typedef enum { C_ADD, C_MUL, C_MAX, C_MIN } comb;
static comb rop_comb(rop op) {
  switch (op) {
    case R_MAX: return C_MAX;
    case R_MIN: return C_MIN;
    case R_PROD: return C_MUL;
    default: return C_ADD;
  }
}
typedef enum { P_NONE, P_ABS, P_SQUARE } pre;
static pre rop_pre(rop op) {
  switch (op) {
    case R_L1: return P_ABS;
    case R_L2: case R_SUMSQ: return P_SQUARE;
    default: return P_NONE;
  }
}

/* ---------------------------------------------------------------------------------------------------- */
/* Planning: which axes, output shape. Shared by infer and run. */

typedef struct rplan {
  int rank;
  bool red[KEEL_MAX_DIMS];
  bool noop; /* empty axes with noop_with_empty_axes: output = input */
  int out_ndim;
  int64_t out_dims[KEEL_MAX_DIMS];
} rplan;

static keel_status *reduce_plan(const keel_node *n, rop op, bool axes_input, const keel_view *in, int n_in,
                                rplan *p) {
  if (n_in < 1 || !keel_view_present(&in[0]))
    return keel_error(KEEL_INVALID_MODEL, "%s needs a data input", rop_name(op));
  int rank = in[0].ndim;
  if (rank < 0 || rank > KEEL_MAX_DIMS) return keel_error(KEEL_UNSUPPORTED, "%s: rank %d", rop_name(op), rank);
  keel_dtype t = in[0].dtype;
  bool ok = kr_is_float(t) || kr_is_int(t) || (t == KEEL_BOOL && (op == R_MAX || op == R_MIN));
  if (!ok)
    return keel_error(KEEL_UNSUPPORTED, "%s does not support input dtype %s", rop_name(op), keel_dtype_name(t));
  memset(p, 0, sizeof *p);
  p->rank = rank;
  int64_t keepdims = keel_attr_int(n, "keepdims", 1);
  int64_t axes_buf[KEEL_MAX_DIMS];
  int n_axes = 0;
  bool noop_flag = false;
  if (axes_input) {
    noop_flag = keel_attr_int(n, "noop_with_empty_axes", 0) != 0;
    if (n_in > 2) return keel_error(KEEL_INVALID_MODEL, "%s takes at most 2 inputs, got %d", rop_name(op), n_in);
    if (n_in > 1 && keel_view_present(&in[1])) {
      const keel_view *a = &in[1];
      if (a->dtype != KEEL_INT64 && a->dtype != KEEL_INT32)
        return keel_error(KEEL_INVALID_MODEL, "%s: axes input must be int64, got %s", rop_name(op),
                          keel_dtype_name(a->dtype));
      if (a->ndim > 1)
        return keel_error(KEEL_INVALID_MODEL, "%s: axes input must be 1-D, got rank %d", rop_name(op), a->ndim);
      int64_t cnt = keel_view_numel(a);
      if (cnt > 0 && !a->data) return keel_need_value(n, 1);
      if (cnt > rank)
        return keel_error(KEEL_INVALID_MODEL, "%s: %lld axes for an input of rank %d", rop_name(op),
                          (long long)cnt, rank);
      for (int64_t i = 0; i < cnt; i++) axes_buf[i] = keel_view_get_i64(a, i);
      n_axes = (int)cnt;
    }
  } else {
    if (n_in > 1) return keel_error(KEEL_INVALID_MODEL, "%s at this opset takes 1 input, got %d", rop_name(op), n_in);
    const int64_t *ax = NULL;
    int cnt = keel_attr_ints(n, "axes", &ax);
    if (cnt > rank)
      return keel_error(KEEL_INVALID_MODEL, "%s: %d axes for an input of rank %d", rop_name(op), cnt, rank);
    for (int i = 0; i < cnt; i++) axes_buf[i] = ax[i];
    n_axes = cnt > 0 ? cnt : 0;
  }
  if (n_axes == 0) {
    if (noop_flag) {
      p->noop = true;
      p->out_ndim = rank;
      memcpy(p->out_dims, in[0].dims, sizeof(int64_t) * (size_t)rank);
      return NULL;
    }
    for (int d = 0; d < rank; d++) p->red[d] = true;
  } else {
    for (int i = 0; i < n_axes; i++) {
      int a;
      if (!keel_axis_normalize(axes_buf[i], rank, &a))
        return keel_error(KEEL_INVALID_MODEL, "%s: axis %lld is out of range for rank %d", rop_name(op),
                          (long long)axes_buf[i], rank);
      if (p->red[a])
        return keel_error(KEEL_INVALID_MODEL, "%s: axis %lld is listed twice", rop_name(op), (long long)axes_buf[i]);
      p->red[a] = true;
    }
  }
  for (int d = 0; d < rank; d++) {
    if (!p->red[d])
      p->out_dims[p->out_ndim++] = in[0].dims[d];
    else if (keepdims)
      p->out_dims[p->out_ndim++] = 1;
  }
  return NULL;
}

static keel_status *reduce_infer(const keel_node *n, rop op, bool axes_input, const keel_view *in, int n_in,
                                 keel_view *out, int n_out) {
  if (n_out != 1) return keel_error(KEEL_INVALID_MODEL, "%s has 1 output, got %d", rop_name(op), n_out);
  rplan p;
  KEEL_TRY(reduce_plan(n, op, axes_input, in, n_in, &p));
  keel_view_set_shape(&out[0], in[0].dtype, p.out_dims, p.out_ndim);
  return NULL;
}

/* Accumulators: one per output element, double or int64. LogSumExp also keeps its shift (the max). */
static size_t reduce_ws(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  if (n_out < 1) return 0;
  int64_t numel = keel_view_numel(&out[0]);
  if (numel < 0) return 0;
  return (size_t)numel * 16;
}

/* ---------------------------------------------------------------------------------------------------- */
/* float32 whole-row fast path. Eight independent double lanes: vectorizable without -ffast-math (no
 * reassociation needed) and far more accurate than one float running sum. */

#define KR_LANES 16

static double row_sum_f32(const float *restrict x, int64_t n) {
  double acc[KR_LANES] = {0};
  int64_t i = 0;
  for (; i + KR_LANES <= n; i += KR_LANES)
    for (int j = 0; j < KR_LANES; j++) acc[j] += (double)x[i + j];
  double s = 0;
  for (; i < n; i++) s += (double)x[i];
  for (int j = 0; j < KR_LANES; j++) s += acc[j];
  return s;
}
static double row_sumsq_f32(const float *restrict x, int64_t n) {
  double acc[KR_LANES] = {0};
  int64_t i = 0;
  for (; i + KR_LANES <= n; i += KR_LANES)
    for (int j = 0; j < KR_LANES; j++) acc[j] += (double)x[i + j] * (double)x[i + j];
  double s = 0;
  for (; i < n; i++) s += (double)x[i] * (double)x[i];
  for (int j = 0; j < KR_LANES; j++) s += acc[j];
  return s;
}
static double row_sumabs_f32(const float *restrict x, int64_t n) {
  double acc[KR_LANES] = {0};
  int64_t i = 0;
  for (; i + KR_LANES <= n; i += KR_LANES)
    for (int j = 0; j < KR_LANES; j++) acc[j] += fabs((double)x[i + j]);
  double s = 0;
  for (; i < n; i++) s += fabs((double)x[i]);
  for (int j = 0; j < KR_LANES; j++) s += acc[j];
  return s;
}
/* max/min that propagate NaN: lanes use a select (maps to maxps), NaN is tracked separately. */
static float row_max_f32(const float *restrict x, int64_t n, bool want_max) {
  float acc[16];
  float nan_acc[16];
  for (int j = 0; j < 16; j++) acc[j] = want_max ? -INFINITY : INFINITY, nan_acc[j] = 0;
  int64_t i = 0;
  if (want_max) {
    for (; i + 16 <= n; i += 16)
      for (int j = 0; j < 16; j++) {
        float v = x[i + j];
        acc[j] = v > acc[j] ? v : acc[j];
        nan_acc[j] += v - v; /* 0 unless v is NaN or inf: inf - inf = NaN too, checked below */
      }
  } else {
    for (; i + 16 <= n; i += 16)
      for (int j = 0; j < 16; j++) {
        float v = x[i + j];
        acc[j] = v < acc[j] ? v : acc[j];
        nan_acc[j] += v - v;
      }
  }
  float m = want_max ? -INFINITY : INFINITY;
  bool maybe_nan = false;
  for (int j = 0; j < 16; j++) {
    m = want_max ? (acc[j] > m ? acc[j] : m) : (acc[j] < m ? acc[j] : m);
    if (nan_acc[j] != 0 || nan_acc[j] != nan_acc[j]) maybe_nan = true;
  }
  for (; i < n; i++) {
    float v = x[i];
    if (v != v) return v;
    m = want_max ? (v > m ? v : m) : (v < m ? v : m);
  }
  if (maybe_nan) /* rare: rescan the vector part for a real NaN */
    for (int64_t k = 0; k < n; k++)
      if (x[k] != x[k]) return x[k];
  return m;
}
static double row_prod_f32(const float *restrict x, int64_t n) {
  double acc[KR_LANES];
  for (int j = 0; j < KR_LANES; j++) acc[j] = 1;
  int64_t i = 0;
  for (; i + KR_LANES <= n; i += KR_LANES)
    for (int j = 0; j < KR_LANES; j++) acc[j] *= (double)x[i + j];
  double s = 1;
  for (; i < n; i++) s *= (double)x[i];
  for (int j = 0; j < KR_LANES; j++) s *= acc[j];
  return s;
}
static double row_lse_f32(const float *restrict x, int64_t n) {
  float m = row_max_f32(x, n, true);
  if (m != m) return m;
  if (isinf(m)) return m; /* all -inf (or empty): -inf; any +inf: +inf */
  double acc[KR_LANES] = {0};
  int64_t i = 0;
  for (; i + KR_LANES <= n; i += KR_LANES)
    for (int j = 0; j < KR_LANES; j++) acc[j] += (double)keel_expf_softmax(x[i + j] - m);
  double s = 0;
  for (; i < n; i++) s += (double)keel_expf_softmax(x[i] - m);
  for (int j = 0; j < KR_LANES; j++) s += acc[j];
  return log(s) + (double)m;
}

static void rows_f32(rop op, const float *restrict x, int64_t rows, int64_t r, float *restrict y) {
  for (int64_t k = 0; k < rows; k++, x += r) {
    double v;
    switch (op) {
      case R_SUM: v = row_sum_f32(x, r); break;
      case R_MEAN: v = row_sum_f32(x, r) / (double)r; break;
      case R_MAX: y[k] = row_max_f32(x, r, true); continue;
      case R_MIN: y[k] = row_max_f32(x, r, false); continue;
      case R_PROD: v = row_prod_f32(x, r); break;
      case R_L1: v = row_sumabs_f32(x, r); break;
      case R_L2: v = sqrt(row_sumsq_f32(x, r)); break;
      case R_LOGSUM: v = log(row_sum_f32(x, r)); break;
      case R_LSE: v = row_lse_f32(x, r); break;
      case R_SUMSQ: v = row_sumsq_f32(x, r); break;
      default: v = 0;
    }
    y[k] = (float)v;
  }
}

/* ---------------------------------------------------------------------------------------------------- */
/* Generic path. */

#define KR_CHUNK 256

/* Load m elements starting at element `off` as double, pre-transformed. */
static void load_f64(keel_dtype t, const void *restrict base, int64_t off, int m, pre pr, double *restrict buf) {
  switch (t) {
    case KEEL_FLOAT32: {
      const float *x = (const float *)base + off;
      for (int i = 0; i < m; i++) buf[i] = (double)x[i];
      break;
    }
    case KEEL_FLOAT64: memcpy(buf, (const double *)base + off, sizeof(double) * (size_t)m); break;
    default:
      for (int i = 0; i < m; i++) buf[i] = kr_ld(t, base, off + i);
  }
  if (pr == P_ABS)
    for (int i = 0; i < m; i++) buf[i] = fabs(buf[i]);
  else if (pr == P_SQUARE)
    for (int i = 0; i < m; i++) buf[i] = buf[i] * buf[i];
}

/* Integers as int64. uint64 max/min compare in a sign-flipped domain (order preserving). Arithmetic wraps
 * (done in uint64, which is defined), matching what the integer type itself would do modulo its width. */
static void load_i64(keel_dtype t, const void *base, int64_t off, int m, pre pr, bool flip, int64_t *buf) {
  const char *c = (const char *)base;
  switch (t) {
    case KEEL_INT64: memcpy(buf, c + off * 8, 8 * (size_t)m); break;
    case KEEL_UINT64:
      memcpy(buf, c + off * 8, 8 * (size_t)m);
      if (flip)
        for (int i = 0; i < m; i++) buf[i] = (int64_t)((uint64_t)buf[i] ^ 0x8000000000000000ull);
      break;
    case KEEL_INT32: {
      const int32_t *x = (const int32_t *)base + off;
      for (int i = 0; i < m; i++) buf[i] = x[i];
      break;
    }
    case KEEL_UINT32: {
      const uint32_t *x = (const uint32_t *)base + off;
      for (int i = 0; i < m; i++) buf[i] = x[i];
      break;
    }
    case KEEL_INT8: {
      const int8_t *x = (const int8_t *)base + off;
      for (int i = 0; i < m; i++) buf[i] = x[i];
      break;
    }
    case KEEL_UINT8: case KEEL_BOOL: {
      const uint8_t *x = (const uint8_t *)base + off;
      for (int i = 0; i < m; i++) buf[i] = x[i];
      break;
    }
    case KEEL_INT16: {
      const int16_t *x = (const int16_t *)base + off;
      for (int i = 0; i < m; i++) buf[i] = x[i];
      break;
    }
    case KEEL_UINT16: {
      const uint16_t *x = (const uint16_t *)base + off;
      for (int i = 0; i < m; i++) buf[i] = x[i];
      break;
    }
    default:
      for (int i = 0; i < m; i++) buf[i] = 0;
  }
  if (pr == P_ABS)
    for (int i = 0; i < m; i++) buf[i] = (int64_t)(buf[i] < 0 ? 0 - (uint64_t)buf[i] : (uint64_t)buf[i]);
  else if (pr == P_SQUARE)
    for (int i = 0; i < m; i++) buf[i] = (int64_t)((uint64_t)buf[i] * (uint64_t)buf[i]);
}

static double comb_row_f64(comb c, const double *b, int m, double init) {
  double s = init;
  switch (c) {
    case C_ADD: {
      double acc[KR_LANES] = {0};
      int i = 0;
      for (; i + KR_LANES <= m; i += KR_LANES)
        for (int j = 0; j < KR_LANES; j++) acc[j] += b[i + j];
      for (; i < m; i++) s += b[i];
      for (int j = 0; j < KR_LANES; j++) s += acc[j];
      break;
    }
    case C_MUL: for (int i = 0; i < m; i++) s *= b[i]; break;
    case C_MAX: for (int i = 0; i < m; i++) s = (b[i] > s || b[i] != b[i]) && s == s ? b[i] : s; break;
    case C_MIN: for (int i = 0; i < m; i++) s = (b[i] < s || b[i] != b[i]) && s == s ? b[i] : s; break;
  }
  return s;
}
static void comb_elem_f64(comb c, double *restrict acc, const double *restrict b, int m) {
  switch (c) {
    case C_ADD: for (int i = 0; i < m; i++) acc[i] += b[i]; break;
    case C_MUL: for (int i = 0; i < m; i++) acc[i] *= b[i]; break;
    case C_MAX: for (int i = 0; i < m; i++) acc[i] = (b[i] > acc[i] || b[i] != b[i]) && acc[i] == acc[i] ? b[i] : acc[i]; break;
    case C_MIN: for (int i = 0; i < m; i++) acc[i] = (b[i] < acc[i] || b[i] != b[i]) && acc[i] == acc[i] ? b[i] : acc[i]; break;
  }
}
static int64_t comb_row_i64(comb c, const int64_t *b, int m, int64_t init) {
  uint64_t s = (uint64_t)init;
  switch (c) {
    case C_ADD: for (int i = 0; i < m; i++) s += (uint64_t)b[i]; break;
    case C_MUL: for (int i = 0; i < m; i++) s *= (uint64_t)b[i]; break;
    case C_MAX: for (int i = 0; i < m; i++) s = b[i] > (int64_t)s ? (uint64_t)b[i] : s; break;
    case C_MIN: for (int i = 0; i < m; i++) s = b[i] < (int64_t)s ? (uint64_t)b[i] : s; break;
  }
  return (int64_t)s;
}
static void comb_elem_i64(comb c, int64_t *restrict acc, const int64_t *restrict b, int m) {
  switch (c) {
    case C_ADD: for (int i = 0; i < m; i++) acc[i] = (int64_t)((uint64_t)acc[i] + (uint64_t)b[i]); break;
    case C_MUL: for (int i = 0; i < m; i++) acc[i] = (int64_t)((uint64_t)acc[i] * (uint64_t)b[i]); break;
    case C_MAX: for (int i = 0; i < m; i++) acc[i] = b[i] > acc[i] ? b[i] : acc[i]; break;
    case C_MIN: for (int i = 0; i < m; i++) acc[i] = b[i] < acc[i] ? b[i] : acc[i]; break;
  }
}

/* Merged layout of the input: groups of dims alternately kept/reduced (size-1 dims dropped). */
typedef struct layout {
  int m;
  int64_t size[KEEL_MAX_DIMS];
  bool red[KEEL_MAX_DIMS];
  int64_t ostride[KEEL_MAX_DIMS]; /* output element stride of each group; 0 for reduced groups */
} layout;

static void make_layout(const rplan *p, const int64_t *dims, layout *L) {
  L->m = 0;
  for (int d = 0; d < p->rank; d++) {
    if (dims[d] == 1) continue;
    if (L->m > 0 && L->red[L->m - 1] == p->red[d]) {
      L->size[L->m - 1] *= dims[d];
    } else {
      L->size[L->m] = dims[d];
      L->red[L->m] = p->red[d];
      L->m++;
    }
  }
  if (L->m == 0) { /* a single element (or all dims 1): a kept group of 1 */
    L->size[0] = 1;
    L->red[0] = false;
    L->m = 1;
  }
  int64_t s = 1;
  for (int g = L->m - 1; g >= 0; g--) {
    if (L->red[g]) {
      L->ostride[g] = 0;
    } else {
      L->ostride[g] = s;
      s *= L->size[g];
    }
  }
}

/* Walk the input in rows of the innermost group; call the row handler with input and output offsets. */
#define KR_WALK(L, total, BODY)                                                    \
  do {                                                                             \
    int64_t idx_[KEEL_MAX_DIMS] = {0};                                             \
    int64_t inner_ = (L)->size[(L)->m - 1];                                        \
    int64_t rows_ = (total) / inner_;                                              \
    int64_t ioff = 0, ooff = 0;                                                    \
    for (int64_t r_ = 0; r_ < rows_; r_++) {                                       \
      BODY;                                                                        \
      ioff += inner_;                                                              \
      for (int g_ = (L)->m - 2; g_ >= 0; g_--) {                                   \
        ooff += (L)->ostride[g_];                                                  \
        if (++idx_[g_] < (L)->size[g_]) break;                                     \
        ooff -= (L)->ostride[g_] * (L)->size[g_];                                  \
        idx_[g_] = 0;                                                              \
      }                                                                            \
    }                                                                              \
  } while (0)

static double init_f64(comb c) {
  switch (c) {
    case C_MUL: return 1;
    case C_MAX: return -INFINITY;
    case C_MIN: return INFINITY;
    default: return 0;
  }
}

static void int_limits(keel_dtype t, int64_t *lo, int64_t *hi) {
  switch (t) {
    case KEEL_INT8: *lo = INT8_MIN, *hi = INT8_MAX; break;
    case KEEL_UINT8: *lo = 0, *hi = UINT8_MAX; break;
    case KEEL_BOOL: *lo = 0, *hi = 1; break;
    case KEEL_INT16: *lo = INT16_MIN, *hi = INT16_MAX; break;
    case KEEL_UINT16: *lo = 0, *hi = UINT16_MAX; break;
    case KEEL_INT32: *lo = INT32_MIN, *hi = INT32_MAX; break;
    case KEEL_UINT32: *lo = 0, *hi = UINT32_MAX; break;
    case KEEL_UINT64: *lo = INT64_MIN, *hi = INT64_MAX; break; /* flipped domain */
    default: *lo = INT64_MIN, *hi = INT64_MAX; break;
  }
}

static void store_i64_raw(keel_dtype t, void *y, int64_t i, int64_t v) {
  char *c = y;
  switch (t) {
    case KEEL_INT8: ((int8_t *)y)[i] = (int8_t)(uint8_t)(uint64_t)v; break;
    case KEEL_UINT8: ((uint8_t *)y)[i] = (uint8_t)(uint64_t)v; break;
    case KEEL_BOOL: ((uint8_t *)y)[i] = v != 0; break;
    case KEEL_INT16: { int16_t x = (int16_t)(uint16_t)(uint64_t)v; memcpy(c + i * 2, &x, 2); break; }
    case KEEL_UINT16: { uint16_t x = (uint16_t)(uint64_t)v; memcpy(c + i * 2, &x, 2); break; }
    case KEEL_INT32: { int32_t x = (int32_t)(uint32_t)(uint64_t)v; memcpy(c + i * 4, &x, 4); break; }
    case KEEL_UINT32: { uint32_t x = (uint32_t)(uint64_t)v; memcpy(c + i * 4, &x, 4); break; }
    default: memcpy(c + i * 8, &v, 8); break;
  }
}

static keel_status *reduce_run(const keel_node *n, rop op, bool axes_input, const keel_view *in, int n_in,
                               keel_view *out, int n_out, keel_exec *ex) {
  rplan p;
  KEEL_TRY(reduce_plan(n, op, axes_input, in, n_in, &p));
  const keel_view *x = &in[0];
  keel_view *y = &out[0];
  keel_dtype t = x->dtype;
  int64_t out_numel, in_numel;
  if (!keel_shape_numel(p.out_dims, p.out_ndim, &out_numel) || !keel_shape_numel(x->dims, x->ndim, &in_numel))
    return keel_error(KEEL_INVALID_ARGUMENT, "%s: bad shape", rop_name(op));
  if (y->dtype != t || keel_view_numel(y) != out_numel)
    return keel_error(KEEL_INTERNAL, "%s: output buffer does not match the inferred shape", rop_name(op));
  if (p.noop) {
    /* "not reduced" still means a reduction over one element: L1 gives |x|, LogSum log(x), ... */
    if (op == R_SUM || op == R_MEAN || op == R_MAX || op == R_MIN || op == R_PROD || op == R_LSE) {
      if (y->data != x->data && in_numel > 0) memmove(y->data, x->data, keel_view_nbytes(x));
      return NULL;
    }
  }
  if (out_numel == 0) return NULL;
  int64_t count = 1; /* elements reduced into each output */
  for (int d = 0; d < p.rank; d++)
    if (p.red[d]) count *= x->dims[d];

  layout L;
  make_layout(&p, x->dims, &L);
  comb c = rop_comb(op);
  pre pr = rop_pre(op);

  /* Fast path: float32, whole rows reduced. */
  if (t == KEEL_FLOAT32 && count > 0 && L.red[L.m - 1] && L.m <= 2) {
    rows_f32(op, (const float *)x->data, out_numel, count, (float *)y->data);
    return NULL;
  }

  bool use_f64 = kr_is_float(t) || op == R_LSE;
  size_t need = (size_t)out_numel * (op == R_LSE ? 16 : 8);
  if (!ex || ex->workspace_bytes < need || !ex->workspace)
    return keel_error(KEEL_INTERNAL, "%s: workspace of %zu bytes expected", rop_name(op), need);

  if (use_f64) {
    double *acc = ex->workspace;
    double *shift = acc + out_numel;
    double buf[KR_CHUNK];
    if (op == R_LSE) {
      /* pass 1: max (the shift that keeps exp from overflowing) */
      for (int64_t i = 0; i < out_numel; i++) shift[i] = -INFINITY;
      if (count > 0)
        KR_WALK(&L, in_numel, {
          for (int64_t c0 = 0; c0 < inner_; c0 += KR_CHUNK) {
            int m = (int)(inner_ - c0 < KR_CHUNK ? inner_ - c0 : KR_CHUNK);
            load_f64(t, x->data, ioff + c0, m, P_NONE, buf);
            if (L.red[L.m - 1])
              shift[ooff] = comb_row_f64(C_MAX, buf, m, shift[ooff]);
            else
              comb_elem_f64(C_MAX, shift + ooff + c0, buf, m);
          }
        });
      for (int64_t i = 0; i < out_numel; i++)
        if (!isfinite(shift[i])) shift[i] = 0;
    }
    double init = init_f64(c);
    for (int64_t i = 0; i < out_numel; i++) acc[i] = init;
    if (count > 0)
      KR_WALK(&L, in_numel, {
        for (int64_t c0 = 0; c0 < inner_; c0 += KR_CHUNK) {
          int m = (int)(inner_ - c0 < KR_CHUNK ? inner_ - c0 : KR_CHUNK);
          load_f64(t, x->data, ioff + c0, m, pr, buf);
          if (op == R_LSE) {
            if (L.red[L.m - 1])
              for (int i = 0; i < m; i++) buf[i] = exp(buf[i] - shift[ooff]);
            else
              for (int i = 0; i < m; i++) buf[i] = exp(buf[i] - shift[ooff + c0 + i]);
          }
          if (L.red[L.m - 1])
            acc[ooff] = comb_row_f64(c, buf, m, acc[ooff]);
          else
            comb_elem_f64(c, acc + ooff + c0, buf, m);
        }
      });
    for (int64_t i = 0; i < out_numel; i++) {
      double v = acc[i];
      switch (op) {
        case R_MEAN: v = v / (double)count; break;
        case R_L2: v = sqrt(v); break;
        case R_LOGSUM: v = log(v); break;
        case R_LSE: v = log(v) + shift[i]; break;
        default: break;
      }
      if (t == KEEL_FLOAT32)
        ((float *)y->data)[i] = (float)v;
      else if (t == KEEL_FLOAT64)
        ((double *)y->data)[i] = v;
      else
        kr_st(t, y->data, i, v);
    }
    return NULL;
  }

  /* integer path */
  int64_t *acc = ex->workspace;
  int64_t buf[KR_CHUNK];
  bool flip = t == KEEL_UINT64 && (c == C_MAX || c == C_MIN);
  int64_t lo, hi;
  int_limits(t, &lo, &hi);
  int64_t init = c == C_MUL ? 1 : c == C_MAX ? lo : c == C_MIN ? hi : 0;
  for (int64_t i = 0; i < out_numel; i++) acc[i] = init;
  if (count > 0)
    KR_WALK(&L, in_numel, {
      for (int64_t c0 = 0; c0 < inner_; c0 += KR_CHUNK) {
        int m = (int)(inner_ - c0 < KR_CHUNK ? inner_ - c0 : KR_CHUNK);
        load_i64(t, x->data, ioff + c0, m, pr, flip, buf);
        if (L.red[L.m - 1])
          acc[ooff] = comb_row_i64(c, buf, m, acc[ooff]);
        else
          comb_elem_i64(c, acc + ooff + c0, buf, m);
      }
    });
  for (int64_t i = 0; i < out_numel; i++) {
    int64_t v = acc[i];
    switch (op) {
      case R_MEAN:
        if (count == 0) {
          store_i64_raw(t, y->data, i, 0);
        } else if (t == KEEL_UINT64) {
          store_i64_raw(t, y->data, i, (int64_t)((uint64_t)v / (uint64_t)count));
        } else {
          store_i64_raw(t, y->data, i, v / count); /* truncates toward zero like the float mean cast */
        }
        break;
      case R_L2: kr_st(t, y->data, i, sqrt(t == KEEL_UINT64 ? (double)(uint64_t)v : (double)v)); break;
      case R_LOGSUM: kr_st(t, y->data, i, log(t == KEEL_UINT64 ? (double)(uint64_t)v : (double)v)); break;
      default:
        if (flip) v = (int64_t)((uint64_t)v ^ 0x8000000000000000ull);
        store_i64_raw(t, y->data, i, v);
    }
  }
  return NULL;
}

/* ---------------------------------------------------------------------------------------------------- */
/* Per-operator entry points. */

#define KR_REDUCE_FNS(NAME, OP)                                                                              \
  static keel_status *infer_##NAME##_attr(const keel_node *n, const keel_view *in, int n_in, keel_view *out, \
                                          int n_out) {                                                      \
    return reduce_infer(n, OP, false, in, n_in, out, n_out);                                                 \
  }                                                                                                          \
  static keel_status *infer_##NAME##_input(const keel_node *n, const keel_view *in, int n_in, keel_view *out,\
                                           int n_out) {                                                     \
    return reduce_infer(n, OP, true, in, n_in, out, n_out);                                                  \
  }                                                                                                          \
  static keel_status *run_##NAME##_attr(const keel_node *n, const keel_view *in, int n_in, keel_view *out,   \
                                        int n_out, keel_exec *ex) {                                         \
    return reduce_run(n, OP, false, in, n_in, out, n_out, ex);                                               \
  }                                                                                                          \
  static keel_status *run_##NAME##_input(const keel_node *n, const keel_view *in, int n_in, keel_view *out,  \
                                         int n_out, keel_exec *ex) {                                        \
    return reduce_run(n, OP, true, in, n_in, out, n_out, ex);                                                \
  }

KR_REDUCE_FNS(sum, R_SUM)
KR_REDUCE_FNS(mean, R_MEAN)
KR_REDUCE_FNS(max, R_MAX)
KR_REDUCE_FNS(min, R_MIN)
KR_REDUCE_FNS(prod, R_PROD)
KR_REDUCE_FNS(l1, R_L1)
KR_REDUCE_FNS(l2, R_L2)
KR_REDUCE_FNS(logsum, R_LOGSUM)
KR_REDUCE_FNS(lse, R_LSE)
KR_REDUCE_FNS(sumsq, R_SUMSQ)

/* Axes moved from attribute to input at opset 13 for ReduceSum and at 18 for the others. */
#define KR_REDUCE_DEFS(OPNAME, NAME, SPLIT)                                                  \
  {OPNAME, "", 1, (SPLIT) - 1, infer_##NAME##_attr, run_##NAME##_attr, reduce_ws, -1},      \
  {OPNAME, "", SPLIT, KEEL_MAX_OPSET, infer_##NAME##_input, run_##NAME##_input, reduce_ws, -1}

const keel_op_def keel_ops_reduce[] = {
    KR_REDUCE_DEFS("ReduceSum", sum, 13),
    KR_REDUCE_DEFS("ReduceMean", mean, 18),
    KR_REDUCE_DEFS("ReduceMax", max, 18),
    KR_REDUCE_DEFS("ReduceMin", min, 18),
    KR_REDUCE_DEFS("ReduceProd", prod, 18),
    KR_REDUCE_DEFS("ReduceL1", l1, 18),
    KR_REDUCE_DEFS("ReduceL2", l2, 18),
    KR_REDUCE_DEFS("ReduceLogSum", logsum, 18),
    KR_REDUCE_DEFS("ReduceLogSumExp", lse, 18),
    KR_REDUCE_DEFS("ReduceSumSquare", sumsq, 18),
    /* Softmax family: "coerce to 2-D at axis" until opset 12, "along one axis" from 13. */
    {"Softmax", "", 1, 12, keel_kr_softmax_infer_v1, keel_kr_softmax_run_v1, keel_kr_softmax_ws, -1},
    {"Softmax", "", 13, KEEL_MAX_OPSET, keel_kr_softmax_infer_v13, keel_kr_softmax_run_v13, keel_kr_softmax_ws, -1},
    {"LogSoftmax", "", 1, 12, keel_kr_softmax_infer_v1, keel_kr_logsoftmax_run_v1, keel_kr_softmax_ws, -1},
    {"LogSoftmax", "", 13, KEEL_MAX_OPSET, keel_kr_softmax_infer_v13, keel_kr_logsoftmax_run_v13, keel_kr_softmax_ws, -1},
    {"Hardmax", "", 1, 12, keel_kr_softmax_infer_v1, keel_kr_hardmax_run_v1, NULL, -1},
    {"Hardmax", "", 13, KEEL_MAX_OPSET, keel_kr_softmax_infer_v13, keel_kr_hardmax_run_v13, NULL, -1},
    {"ArgMax", "", 1, KEEL_MAX_OPSET, keel_kr_arg_infer, keel_kr_argmax_run, NULL, -1},
    {"ArgMin", "", 1, KEEL_MAX_OPSET, keel_kr_arg_infer, keel_kr_argmin_run, NULL, -1},
    {"CumSum", "", 11, KEEL_MAX_OPSET, keel_kr_cumsum_infer, keel_kr_cumsum_run, NULL, -1},
    {"TopK", "", 1, 9, keel_kr_topk_infer_v1, keel_kr_topk_run, keel_kr_topk_ws, -1},
    {"TopK", "", 10, KEEL_MAX_OPSET, keel_kr_topk_infer_v10, keel_kr_topk_run, keel_kr_topk_ws, -1},
    {"Einsum", "", 12, KEEL_MAX_OPSET, keel_kr_einsum_infer, keel_kr_einsum_run, NULL, -1},
    {"Det", "", 11, KEEL_MAX_OPSET, keel_kr_det_infer, keel_kr_det_run, keel_kr_det_ws, -1},
};
const int keel_ops_reduce_count = (int)(sizeof keel_ops_reduce / sizeof keel_ops_reduce[0]);
