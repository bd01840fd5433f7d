/* Pooling: MaxPool (with optional int64 Indices), AveragePool, LpPool and their Global forms. 1-D to 3-D.
 * Window bounds are computed per output position so the inner loops carry no padding branches. */
#include <math.h>
#include <string.h>

#include "backend/cpu/threadpool.h"
#include "ops/nn_internal.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

/* Taps [k0, k1) of a window starting at `start` (dilation d, k taps) that land inside [0, in). */
static inline void pool_range(int64_t start, int64_t d, int64_t k, int64_t in, int64_t *k0, int64_t *k1) {
  int64_t a, b;
  if (d == 1) { /* the common case, without divisions */
    a = start < 0 ? -start : 0;
    b = in - start;
  } else {
    a = start < 0 ? nn_ceildiv(-start, d) : 0;
    b = nn_floordiv(in - 1 - start, d) + 1;
  }
  if (b > k) b = k;
  if (b < a) b = a;
  *k0 = a;
  *k1 = b;
}
/* Taps that land before `limit` (input plus end padding): the divisor with count_include_pad. */
static inline int64_t pad_count(int64_t start, int64_t d, int64_t k, int64_t limit) {
  int64_t c = d == 1 ? limit - start : nn_ceildiv(limit - start, d);
  return c < 0 ? 0 : c > k ? k : c;
}

#define NN_T float
#define NN_SUF f32
#define NN_FLOAT 1
#include "ops/nn_pool_tmpl.h"
#undef NN_T
#undef NN_SUF
#undef NN_FLOAT
#define NN_T double
#define NN_SUF f64
#define NN_FLOAT 1
#include "ops/nn_pool_tmpl.h"
#undef NN_T
#undef NN_SUF
#undef NN_FLOAT
#define NN_T int8_t
#define NN_SUF i8
#define NN_FLOAT 0
#include "ops/nn_pool_tmpl.h"
#undef NN_T
#undef NN_SUF
#undef NN_FLOAT
#define NN_T uint8_t
#define NN_SUF u8
#define NN_FLOAT 0
#include "ops/nn_pool_tmpl.h"
#undef NN_T
#undef NN_SUF
#undef NN_FLOAT

enum { POOL_MAX, POOL_AVG, POOL_LP };

static int pool_kind(const keel_node *n) {
  const char *t = n->op_type;
  if (strstr(t, "Max")) return POOL_MAX;
  if (strstr(t, "Average")) return POOL_AVG;
  return POOL_LP;
}

/* LpPool / GlobalLpPool: p is a float attribute in opset 1, an int from opset 2. */
static keel_status *read_p(const keel_node *n, double *p) {
  const keel_attr *a = keel_node_attr(n, "p");
  *p = 2;
  if (a) *p = a->type == KEEL_ATTR_FLOAT ? a->f : (double)a->i;
  if (!(*p > 0)) return keel_error(KEEL_INVALID_MODEL, "attribute p = %g must be positive", *p);
  return NULL;
}

static keel_status *pool_x(const keel_node *n, const keel_view *in, int n_in, int kind) {
  KEEL_TRY(nn_need_inputs(n, n_in, 1, 1));
  if (!nn_has(in, n_in, 0)) return keel_error(KEEL_INVALID_MODEL, "input X is required");
  const keel_view *x = &in[0];
  bool ok = x->dtype == KEEL_FLOAT32 || x->dtype == KEEL_FLOAT64 ||
            (kind == POOL_MAX && (x->dtype == KEEL_INT8 || x->dtype == KEEL_UINT8));
  if (!ok)
    return keel_error(KEEL_UNSUPPORTED, "input X has dtype %s; float32, float64, float16, bfloat16%s are supported",
                      keel_dtype_name(x->dtype), kind == POOL_MAX ? ", int8 and uint8" : "");
  if (x->ndim < 3 || x->ndim > 2 + NN_MAX_SP)
    return keel_error(KEEL_SHAPE_MISMATCH, "input X has rank %d; expected 3 to %d (N, C, 1 to %d spatial dims)",
                      x->ndim, 2 + NN_MAX_SP, NN_MAX_SP);
  return NULL;
}

static keel_status *pool_geom(const keel_node *n, const keel_view *in, int n_in, nn_window *w, int64_t *odims) {
  const int kind = pool_kind(n);
  KEEL_TRY(pool_x(n, in, n_in, kind));
  const keel_view *x = &in[0];
  const int nsp = x->ndim - 2;
  const int64_t *ks = NULL;
  int nk = keel_attr_ints(n, "kernel_shape", &ks);
  if (nk < 0 || !ks) return keel_error(KEEL_INVALID_MODEL, "attribute kernel_shape is required");
  if (nk != nsp)
    return keel_error(KEEL_INVALID_MODEL, "kernel_shape has %d values but X has %d spatial dims", nk, nsp);
  KEEL_TRY(nn_window_init(n, nsp, x->dims + 2, ks, true, w));
  if (kind == POOL_MAX) {
    int64_t so = keel_attr_int(n, "storage_order", 0);
    if (so != 0 && so != 1) return keel_error(KEEL_INVALID_MODEL, "storage_order = %lld", (long long)so);
  }
  if (kind == POOL_LP) {
    double p;
    KEEL_TRY(read_p(n, &p));
  }
  odims[0] = x->dims[0];
  odims[1] = x->dims[1];
  for (int i = 0; i < nsp; i++) odims[2 + i] = w->out[i];
  return nn_check_numel(n, odims, x->ndim, 8);
}

keel_status *nn_pool_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  nn_window w;
  int64_t od[KEEL_MAX_DIMS];
  KEEL_TRY(pool_geom(n, in, n_in, &w, od));
  keel_view_set_shape(&out[0], in[0].dtype, od, in[0].ndim);
  if (pool_kind(n) == POOL_MAX && nn_want(n, n_out, 1)) keel_view_set_shape(&out[1], KEEL_INT64, od, in[0].ndim);
  return NULL;
}

#if defined(__AVX512F__)
/* Lanes 0,2,..,30 of the 32 floats a:b. */
static inline __m512 even_lanes(__m512 a, __m512 b) {
  const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  return _mm512_permutex2var_ps(a, ev, b);
}
#endif

/* Max of the 3-wide window starting at column sw of a row of IW values, over the taps inside the row (0 when
 * none is: an all-padding window); for the border outputs of the 3x3 stride-2 path below. */
static inline float border_max3s2(const float *row, int64_t sw, int64_t IW) {
  int64_t w0, w1;
  pool_range(sw, 1, 3, IW, &w0, &w1);
  float m = -INFINITY;
  for (int64_t k = w0; k < w1; k++) m = row[sw + k] > m ? row[sw + k] : m;
  return w1 > w0 ? m : 0.0f;
}

/* MaxPool 3x3, stride 2 (dilation 1, 2-D, float32, no Indices): per output row, the element-wise max of the
 * (up to three) valid input rows into a row buffer, then the max of three neighbours at every other
 * position. Each output is the max over exactly the taps of pool_rows (max is exact, so the results
 * agree). Returns false when the row does not fit the buffer (the caller takes the generic path). */
#define MP_ROW_MAX 4096
static bool maxpool33s2_f32(const float *x, float *y, int64_t planes, const nn_window *w) {
  const int64_t IH = w->in[1], IW = w->in[2], OH = w->out[1], OW = w->out[2], pt = w->pb[1], pl = w->pb[2];
  if (IW > MP_ROW_MAX) return false;
  float tmp[MP_ROW_MAX + 64];
  for (int i = 0; i < 64; i++) tmp[IW + i] = 0.0f; /* read past the row by the SIMD loads, never used */
  int64_t lo3 = nn_ceildiv(pl, 2), hi3 = nn_floordiv(IW - 3 + pl, 2) + 1; /* all three taps inside */
  lo3 = lo3 < 0 ? 0 : lo3 > OW ? OW : lo3;
  hi3 = hi3 > OW ? OW : hi3 < lo3 ? lo3 : hi3;
  for (int64_t p = 0; p < planes; p++) {
    const float *xp = x + p * IH * IW;
    for (int64_t oh = 0; oh < OH; oh++) {
      float *yr = y + (p * OH + oh) * OW;
      int64_t h0, h1;
      const int64_t sh = oh * 2 - pt;
      pool_range(sh, 1, 3, IH, &h0, &h1);
      if (h1 <= h0) { /* only padding */
        for (int64_t ow = 0; ow < OW; ow++) yr[ow] = 0.0f;
        continue;
      }
      const float *r0 = xp + (sh + h0) * IW, *r1 = h1 - h0 > 1 ? r0 + IW : r0, *r2 = h1 - h0 > 2 ? r0 + 2 * IW : r1;
      int64_t j = 0;
#if defined(__AVX512F__)
      for (; j + 16 <= IW; j += 16)
        _mm512_storeu_ps(tmp + j, _mm512_max_ps(_mm512_max_ps(_mm512_loadu_ps(r0 + j), _mm512_loadu_ps(r1 + j)),
                                                _mm512_loadu_ps(r2 + j)));
#endif
      for (; j < IW; j++) {
        float m = r0[j] > r1[j] ? r0[j] : r1[j];
        tmp[j] = r2[j] > m ? r2[j] : m;
      }
      int64_t ow = 0;
      for (; ow < lo3; ow++) { /* left border: taps that land inside */
        yr[ow] = border_max3s2(tmp, ow * 2 - pl, IW);
      }
#if defined(__AVX512F__)
      for (; ow < hi3; ow += 16) {
        const int64_t m = hi3 - ow < 16 ? hi3 - ow : 16;
        const float *t = tmp + ow * 2 - pl;
        const __m512 a = _mm512_loadu_ps(t), b = _mm512_loadu_ps(t + 16);
        const __m512 a2 = _mm512_loadu_ps(t + 2), b2 = _mm512_loadu_ps(t + 18);
        const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        const __m512 r = _mm512_max_ps(_mm512_max_ps(even_lanes(a, b), _mm512_permutex2var_ps(a, od, b)),
                                       even_lanes(a2, b2));
        _mm512_mask_storeu_ps(yr + ow, (__mmask16)((1u << m) - 1u), r);
      }
      ow = hi3;
#endif
      for (; ow < hi3; ow++) {
        const float *t = tmp + ow * 2 - pl;
        const float m = t[0] > t[1] ? t[0] : t[1];
        yr[ow] = t[2] > m ? t[2] : m;
      }
      for (; ow < OW; ow++) { /* right border */
        yr[ow] = border_max3s2(tmp, ow * 2 - pl, IW);
      }
    }
  }
  return true;
}

/* One pooling call, split across threads by planes (N*C): planes are independent, and every output is
 * computed by the same code whatever the split, so results do not depend on the thread count. */
typedef struct pool_job {
  int kind; /* POOL_MAX, POOL_AVG (row kernel), POOL_LP (avgpool: Lp, or average when p == 0) */
  keel_dtype dt;
  const char *x;
  char *y;
  int64_t *idx;
  const nn_window *w;
  int64_t planes, iplane, oplane;
  size_t es;
  bool cm, include_pad, fast33;
  double p;
} pool_job;

static void pool_planes(const pool_job *j, int64_t p0, int64_t p1) {
  const int64_t np = p1 - p0;
  if (np <= 0) return;
  const void *x = j->x + (size_t)(p0 * j->iplane) * j->es;
  void *y = j->y + (size_t)(p0 * j->oplane) * j->es;
  const nn_window *w = j->w;
  if (j->kind == POOL_MAX && j->idx) {
    int64_t *idx = j->idx + p0 * j->oplane;
    const int64_t base = p0 * j->iplane;
    switch (j->dt) {
      case KEEL_FLOAT32: maxpool_f32(x, y, idx, np, w, j->cm, base); break;
      case KEEL_FLOAT64: maxpool_f64(x, y, idx, np, w, j->cm, base); break;
      case KEEL_INT8: maxpool_i8(x, y, idx, np, w, j->cm, base); break;
      case KEEL_UINT8: maxpool_u8(x, y, idx, np, w, j->cm, base); break;
      default: break;
    }
    return;
  }
  if (j->kind == POOL_MAX) {
    switch (j->dt) {
      case KEEL_FLOAT32:
        if (!j->fast33 || !maxpool33s2_f32(x, y, np, w)) pool_rows_f32(x, y, np, w, false, false, -INFINITY);
        break;
      case KEEL_FLOAT64: pool_rows_f64(x, y, np, w, false, false, -INFINITY); break;
      case KEEL_INT8: pool_rows_i8(x, y, np, w, false, false, INT8_MIN); break;
      case KEEL_UINT8: pool_rows_u8(x, y, np, w, false, false, 0); break;
      default: break;
    }
    return;
  }
  if (j->kind == POOL_AVG) {
    if (j->dt == KEEL_FLOAT32) pool_rows_f32(x, y, np, w, true, j->include_pad, 0);
    else pool_rows_f64(x, y, np, w, true, j->include_pad, 0);
    return;
  }
  if (j->dt == KEEL_FLOAT32) avgpool_f32(x, y, np, w, j->include_pad, j->p);
  else avgpool_f64(x, y, np, w, j->include_pad, j->p);
}

static void pool_thread(void *ctx, int tid, int nt, void *scratch) {
  (void)scratch;
  const pool_job *j = ctx;
  int64_t p0, p1;
  keel_split_range(j->planes, tid, nt, 1, &p0, &p1);
  pool_planes(j, p0, p1);
}

keel_status *nn_pool_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                         keel_exec *ex) {
  nn_window w, w3;
  int64_t od[KEEL_MAX_DIMS];
  KEEL_TRY(pool_geom(n, in, n_in, &w, od));
  nn_window_pad3(&w, &w3);
  const keel_view *x = &in[0];
  pool_job j = {.kind = pool_kind(n), .dt = x->dtype, .x = x->data, .y = out[0].data, .w = &w3,
                .planes = x->dims[0] * x->dims[1], .iplane = w3.in[0] * w3.in[1] * w3.in[2],
                .oplane = w3.out[0] * w3.out[1] * w3.out[2], .es = keel_dtype_size(x->dtype)};
  if (j.kind == POOL_MAX) {
    j.idx = nn_want_run(n, out, n_out, 1) ? out[1].data : NULL;
    j.cm = keel_attr_int(n, "storage_order", 0) == 1;
    j.fast33 = x->dtype == KEEL_FLOAT32 && w3.in[0] == 1 && w3.k[0] == 1 && w3.k[1] == 3 && w3.k[2] == 3 &&
               w3.s[1] == 2 && w3.s[2] == 2 && w3.d[1] == 1 && w3.d[2] == 1 && w3.out[0] == 1;
  } else {
    if (j.kind == POOL_LP) KEEL_TRY(read_p(n, &j.p));
    j.include_pad = j.kind == POOL_AVG && keel_attr_int(n, "count_include_pad", 0) != 0;
  }
  if (j.planes <= 0 || j.oplane <= 0) return NULL;
  const double taps = (double)(w3.k[0] * w3.k[1] * w3.k[2]);
  const double work = (double)j.planes * ((double)j.oplane * taps + (double)j.iplane);
  int nt = keel_threads_for(keel_threads_effective(ex ? ex->num_threads : 1), work, 1.5e5);
  if (nt > j.planes) nt = (int)j.planes;
  if (nt <= 1) pool_planes(&j, 0, j.planes);
  else keel_parallel_run(nt, pool_thread, &j);
  return NULL;
}

/* ---- Global pools ---- */

keel_status *nn_gpool_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  const int kind = pool_kind(n);
  KEEL_TRY(nn_need_inputs(n, n_in, 1, 1));
  if (!nn_has(in, n_in, 0)) return keel_error(KEEL_INVALID_MODEL, "input X is required");
  if (in[0].dtype != KEEL_FLOAT32 && in[0].dtype != KEEL_FLOAT64)
    return keel_error(KEEL_UNSUPPORTED, "input X has dtype %s; float32, float64, float16 and bfloat16 are supported",
                      keel_dtype_name(in[0].dtype));
  if (in[0].ndim < 3)
    return keel_error(KEEL_SHAPE_MISMATCH, "input X has rank %d; expected N, C and spatial dims", in[0].ndim);
  if (kind == POOL_LP) {
    double p;
    KEEL_TRY(read_p(n, &p));
  }
  int64_t od[KEEL_MAX_DIMS];
  for (int i = 0; i < in[0].ndim; i++) od[i] = i < 2 ? in[0].dims[i] : 1;
  keel_view_set_shape(&out[0], in[0].dtype, od, in[0].ndim);
  return NULL;
}

typedef struct gpool_job {
  const keel_view *x;
  void *y;
  int64_t planes, S;
  int k;
  double p;
} gpool_job;

static void gpool_thread(void *ctx, int tid, int nt, void *scratch) {
  (void)scratch;
  const gpool_job *j = ctx;
  int64_t p0, p1;
  keel_split_range(j->planes, tid, nt, 1, &p0, &p1);
  if (p1 <= p0) return;
  if (j->x->dtype == KEEL_FLOAT32)
    gpool_f32((const float *)j->x->data + p0 * j->S, (float *)j->y + p0, p1 - p0, j->S, j->k, j->p);
  else
    gpool_f64((const double *)j->x->data + p0 * j->S, (double *)j->y + p0, p1 - p0, j->S, j->k, j->p);
}

keel_status *nn_gpool_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                          keel_exec *ex) {
  const int kind = pool_kind(n);
  double p = 0;
  if (kind == POOL_LP) KEEL_TRY(read_p(n, &p));
  const keel_view *x = &in[0];
  if (x->dtype != KEEL_FLOAT32 && x->dtype != KEEL_FLOAT64)
    return keel_error(KEEL_UNSUPPORTED, "dtype %s", keel_dtype_name(x->dtype));
  gpool_job j = {x, out[0].data, x->dims[0] * x->dims[1], nn_prod(x->dims, 2, x->ndim),
                 kind == POOL_AVG ? 0 : kind == POOL_MAX ? 1 : 2, p};
  if (j.planes <= 0) return NULL;
  /* each plane is summed by one thread in a fixed order: the split never changes a result */
  int nt = keel_threads_for(keel_threads_effective(ex ? ex->num_threads : 1), (double)j.planes * (double)j.S, 1e5);
  if (nt > j.planes) nt = (int)j.planes;
  if (nt <= 1) gpool_thread(&j, 0, 1, NULL);
  else keel_parallel_run(nt, gpool_thread, &j);
  return NULL;
}

/* ---- MaxUnpool: scatter X into a zeroed output at the flat positions in I (MaxPool's Indices). ---- */

static keel_status *unpool_shape(const keel_node *n, const keel_view *in, int n_in, int64_t *idims, int64_t *od) {
  KEEL_TRY(nn_need_inputs(n, n_in, 2, 3));
  if (!nn_has(in, n_in, 0) || !nn_has(in, n_in, 1)) return keel_error(KEEL_INVALID_MODEL, "inputs X and I are required");
  const keel_view *x = &in[0], *ix = &in[1];
  if (keel_dtype_size(x->dtype) == 0 || x->dtype == KEEL_STRING)
    return keel_error(KEEL_UNSUPPORTED, "input X has dtype %s", keel_dtype_name(x->dtype));
  if (ix->dtype != KEEL_INT64)
    return keel_error(KEEL_SHAPE_MISMATCH, "input I has dtype %s; int64 expected", keel_dtype_name(ix->dtype));
  if (x->ndim < 3) return keel_error(KEEL_SHAPE_MISMATCH, "input X has rank %d; at least 3 expected", x->ndim);
  if (!keel_shape_equal(x->dims, x->ndim, ix->dims, ix->ndim)) {
    char b1[160], b2[160];
    return keel_error(KEEL_SHAPE_MISMATCH, "X %s and I %s must have the same shape",
                      keel_shape_format(x->dims, x->ndim, b1, sizeof b1),
                      keel_shape_format(ix->dims, ix->ndim, b2, sizeof b2));
  }
  const int nsp = x->ndim - 2;
  const int64_t *ks = NULL, *st = NULL, *pads = NULL;
  int nk = keel_attr_ints(n, "kernel_shape", &ks), ns = keel_attr_ints(n, "strides", &st),
      np = keel_attr_ints(n, "pads", &pads);
  if (nk != nsp || !ks) return keel_error(KEEL_INVALID_MODEL, "attribute kernel_shape must have %d values", nsp);
  if (ns >= 0 && st && ns != nsp) return keel_error(KEEL_INVALID_MODEL, "attribute strides must have %d values", nsp);
  if (np >= 0 && pads && np != 2 * nsp) return keel_error(KEEL_INVALID_MODEL, "attribute pads must have %d values", 2 * nsp);
  /* The indices address the default (inferred) shape; an explicit output_shape places that block at its
   * origin. */
  idims[0] = x->dims[0];
  idims[1] = x->dims[1];
  for (int i = 0; i < nsp; i++) {
    int64_t s = (ns >= 0 && st) ? st[i] : 1, pb = (np >= 0 && pads) ? pads[i] : 0, pe = (np >= 0 && pads) ? pads[nsp + i] : 0;
    if (s < 1 || ks[i] < 1 || pb < 0 || pe < 0) return keel_error(KEEL_INVALID_MODEL, "bad kernel / stride / pads in dim %d", i);
    idims[2 + i] = x->dims[2 + i] < 0 ? -1 : (x->dims[2 + i] - 1) * s + ks[i] - pb - pe;
    if (x->dims[2 + i] >= 0 && idims[2 + i] < 0)
      return keel_error(KEEL_SHAPE_MISMATCH, "output spatial dim %d would be %lld", i, (long long)idims[2 + i]);
  }
  memcpy(od, idims, sizeof(int64_t) * (size_t)x->ndim);
  if (nn_has(in, n_in, 2)) {
    const keel_view *os = &in[2];
    if (os->dtype != KEEL_INT64 || os->ndim != 1 || os->dims[0] != x->ndim)
      return keel_error(KEEL_SHAPE_MISMATCH, "output_shape must be an int64 vector of %d values", x->ndim);
    if (!os->data) return keel_need_value(n, 2);
    for (int i = 0; i < x->ndim; i++) {
      od[i] = ((const int64_t *)os->data)[i];
      if (od[i] < 0 || (idims[i] >= 0 && od[i] < idims[i]))
        return keel_error(KEEL_SHAPE_MISMATCH, "output_shape[%d] = %lld is smaller than the unpooled size %lld", i,
                          (long long)od[i], (long long)idims[i]);
    }
  }
  return NULL;
}

keel_status *nn_unpool_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  int64_t idims[KEEL_MAX_DIMS], od[KEEL_MAX_DIMS];
  KEEL_TRY(unpool_shape(n, in, n_in, idims, od));
  KEEL_TRY(nn_check_numel(n, od, in[0].ndim, keel_dtype_size(in[0].dtype)));
  keel_view_set_shape(&out[0], in[0].dtype, od, in[0].ndim);
  return NULL;
}

keel_status *nn_unpool_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                           keel_exec *ex) {
  int64_t idims[KEEL_MAX_DIMS], od[KEEL_MAX_DIMS];
  KEEL_TRY(unpool_shape(n, in, n_in, idims, od));
  const int nd = in[0].ndim;
  const size_t e = keel_dtype_size(in[0].dtype);
  const int64_t total = keel_view_numel(&out[0]), cnt = keel_view_numel(&in[0]), itotal = nn_prod(idims, 0, nd);
  const bool same = keel_shape_equal(idims, nd, od, nd);
  memset(out[0].data, 0, (size_t)total * e);
  const int64_t *ix = in[1].data;
  const char *x = in[0].data;
  char *y = out[0].data;
  for (int64_t j = 0; j < cnt; j++) {
    int64_t t = ix[j];
    if (t < 0 || t >= itotal)
      return keel_error(KEEL_INVALID_ARGUMENT, "index I[%lld] = %lld is outside the unpooled tensor (%lld elements)",
                        (long long)j, (long long)t, (long long)itotal);
    if (!same) { /* re-linearize from the inferred shape into the larger output */
      int64_t o = 0, mul = 1;
      for (int d = nd - 1; d >= 0; d--) {
        o += (t % idims[d]) * mul;
        t /= idims[d];
        mul *= od[d];
      }
      t = o;
    }
    memcpy(y + (size_t)t * e, x + (size_t)j * e, e);
  }
  return NULL;
}
