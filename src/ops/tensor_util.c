/* Helpers of the tensor operator family: validation, value reading, byte transpose and broadcast copy. */
#include "ops/tensor_util.h"

#include <math.h>

keel_status *keel_tt_esize(const keel_view *v, const char *what, size_t *es) {
  *es = keel_dtype_size(v->dtype);
  if (*es == 0)
    return keel_error(KEEL_UNSUPPORTED, "%s has dtype %s, which has no fixed element size", what,
                      keel_dtype_name(v->dtype));
  return NULL;
}

keel_status *keel_tt_numel(const keel_view *v, const char *what, int64_t *n) {
  if (v->ndim < 0 || v->ndim > KEEL_MAX_DIMS)
    return keel_error(KEEL_INVALID_MODEL, "%s has invalid rank %d", what, v->ndim);
  if (!keel_shape_numel(v->dims, v->ndim, n))
    return keel_error(KEEL_SHAPE_MISMATCH, "%s has a negative dim or too many elements", what);
  return NULL;
}

keel_status *keel_tt_set_out(keel_view *out, keel_dtype dt, const int64_t *dims, int nd) {
  if (nd < 0 || nd > KEEL_MAX_DIMS)
    return keel_error(KEEL_UNSUPPORTED, "output rank %d exceeds the maximum of %d", nd, KEEL_MAX_DIMS);
  int64_t numel;
  size_t bytes;
  for (int i = 0; i < nd; i++)
    if (dims[i] < 0) return keel_error(KEEL_SHAPE_MISMATCH, "output dim %d is negative (%lld)", i, (long long)dims[i]);
  if (!keel_shape_numel(dims, nd, &numel) || !keel_shape_nbytes(numel, keel_dtype_size(dt) ? keel_dtype_size(dt) : 1, &bytes))
    return keel_error(KEEL_SHAPE_MISMATCH, "output has too many elements (size overflows)");
  keel_view_set_shape(out, dt, dims, nd);
  return NULL;
}

keel_status *keel_tt_read_ints(const keel_node *n, const keel_view *in, int n_in, int idx, const char *what,
                               int64_t *vals, int max, int *count) {
  *count = 0;
  if (idx >= n_in || !keel_view_present(&in[idx])) return NULL;
  const keel_view *v = &in[idx];
  if (v->ndim > 1) return keel_error(KEEL_INVALID_MODEL, "%s (input %d) must be 1-D, got rank %d", what, idx, v->ndim);
  if (keel_tt_is_float(v->dtype) || keel_dtype_size(v->dtype) == 0)
    return keel_error(KEEL_INVALID_MODEL, "%s (input %d) must be an integer tensor, got %s", what, idx,
                      keel_dtype_name(v->dtype));
  int64_t cnt = v->ndim == 0 ? 1 : v->dims[0];
  if (cnt < 0 || cnt > max)
    return keel_error(KEEL_INVALID_MODEL, "%s (input %d) has %lld elements, at most %d are allowed", what, idx,
                      (long long)cnt, max);
  if (cnt > 0 && !v->data) return keel_need_value(n, idx);
  for (int64_t i = 0; i < cnt; i++) vals[i] = keel_view_get_i64(v, i);
  *count = (int)cnt;
  return NULL;
}

keel_status *keel_tt_norm_axes(const int64_t *axes, int count, int rank, const char *what, int *out) {
  bool seen[KEEL_MAX_DIMS] = {false};
  for (int i = 0; i < count; i++) {
    if (!keel_axis_normalize(axes[i], rank, &out[i]))
      return keel_error(KEEL_INVALID_MODEL, "%s: axis %lld is out of range for rank %d", what, (long long)axes[i], rank);
    if (seen[out[i]]) return keel_error(KEEL_INVALID_MODEL, "%s: axis %lld is repeated", what, (long long)axes[i]);
    seen[out[i]] = true;
  }
  return NULL;
}

void keel_tt_strides(const int64_t *dims, int nd, int64_t *strides) {
  int64_t s = 1;
  for (int i = nd - 1; i >= 0; i--) {
    strides[i] = s;
    s *= dims[i];
  }
}

bool keel_tt_is_float(keel_dtype dt) {
  return dt == KEEL_FLOAT32 || dt == KEEL_FLOAT64 || dt == KEEL_FLOAT16 || dt == KEEL_BFLOAT16;
}

double keel_tt_load_f64(keel_dtype dt, const void *p, int64_t i) {
  keel_view v = {.dtype = dt, .ndim = 0, .data = (void *)p};
  return keel_view_get_f64(&v, i);
}

static double sat(double v, double lo, double hi) {
  if (isnan(v)) return 0;
  v = nearbyint(v);
  return v < lo ? lo : v > hi ? hi : v;
}

void keel_tt_store_f64(keel_dtype dt, void *p, int64_t i, double v) {
  char *c = p;
  switch (dt) {
    case KEEL_FLOAT32: { float x = (float)v; memcpy(c + i * 4, &x, 4); break; }
    case KEEL_FLOAT64: memcpy(c + i * 8, &v, 8); break;
    case KEEL_FLOAT16: { uint16_t x = keel_float_to_half((float)v); memcpy(c + i * 2, &x, 2); break; }
    case KEEL_BFLOAT16: { uint16_t x = keel_float_to_bfloat16((float)v); memcpy(c + i * 2, &x, 2); break; }
    case KEEL_BOOL: ((uint8_t *)c)[i] = v != 0; break;
    case KEEL_UINT8: ((uint8_t *)c)[i] = (uint8_t)sat(v, 0, 255); break;
    case KEEL_INT8: ((int8_t *)c)[i] = (int8_t)sat(v, -128, 127); break;
    case KEEL_UINT16: { uint16_t x = (uint16_t)sat(v, 0, 65535); memcpy(c + i * 2, &x, 2); break; }
    case KEEL_INT16: { int16_t x = (int16_t)sat(v, -32768, 32767); memcpy(c + i * 2, &x, 2); break; }
    case KEEL_UINT32: { uint32_t x = (uint32_t)sat(v, 0, 4294967295.0); memcpy(c + i * 4, &x, 4); break; }
    case KEEL_INT32: { int32_t x = (int32_t)sat(v, -2147483648.0, 2147483647.0); memcpy(c + i * 4, &x, 4); break; }
    case KEEL_UINT64: {
      double r = sat(v, 0, 18446744073709549568.0);
      uint64_t x = (uint64_t)r;
      memcpy(c + i * 8, &x, 8);
      break;
    }
    case KEEL_INT64: {
      double r = sat(v, -9223372036854775808.0, 9223372036854774784.0);
      int64_t x = (int64_t)r;
      memcpy(c + i * 8, &x, 8);
      break;
    }
    default: break;
  }
}

/* ---- transpose ---- */

#define TT_BLOCK 32
#define TT_T2D(T)                                                                                   \
  static void t2d_##T(const T *s, T *d, int64_t rows, int64_t cols) {                               \
    for (int64_t i0 = 0; i0 < rows; i0 += TT_BLOCK) {                                               \
      int64_t i1 = i0 + TT_BLOCK < rows ? i0 + TT_BLOCK : rows;                                     \
      for (int64_t j0 = 0; j0 < cols; j0 += TT_BLOCK) {                                             \
        int64_t j1 = j0 + TT_BLOCK < cols ? j0 + TT_BLOCK : cols;                                   \
        for (int64_t j = j0; j < j1; j++)                                                           \
          for (int64_t i = i0; i < i1; i++) d[j * rows + i] = s[i * cols + j];                      \
      }                                                                                             \
    }                                                                                               \
  }
TT_T2D(uint8_t)
TT_T2D(uint16_t)
TT_T2D(uint32_t)
TT_T2D(uint64_t)

static void t2d_bytes(const char *s, char *d, int64_t rows, int64_t cols, size_t es) {
  switch (es) {
    case 1: t2d_uint8_t((const uint8_t *)s, (uint8_t *)d, rows, cols); return;
    case 2: t2d_uint16_t((const uint16_t *)s, (uint16_t *)d, rows, cols); return;
    case 4: t2d_uint32_t((const uint32_t *)s, (uint32_t *)d, rows, cols); return;
    case 8: t2d_uint64_t((const uint64_t *)s, (uint64_t *)d, rows, cols); return;
    default:
      for (int64_t i0 = 0; i0 < rows; i0 += TT_BLOCK)
        for (int64_t j = 0; j < cols; j++)
          for (int64_t i = i0; i < rows && i < i0 + TT_BLOCK; i++)
            memcpy(d + (size_t)(j * rows + i) * es, s + (size_t)(i * cols + j) * es, es);
  }
}

void keel_tt_transpose(const void *src, void *dst, size_t es, const int64_t *dims, int nd, const int *perm) {
  int64_t total = 1;
  for (int i = 0; i < nd; i++) total *= dims[i];
  if (total == 0) return;
  /* Drop size-1 axes: they do not affect the layout. */
  int map[KEEL_MAX_DIMS], k = 0;
  int64_t d1[KEEL_MAX_DIMS];
  for (int a = 0; a < nd; a++) {
    map[a] = dims[a] == 1 ? -1 : k;
    if (dims[a] != 1) d1[k++] = dims[a];
  }
  int p1[KEEL_MAX_DIMS], m1 = 0;
  for (int i = 0; i < nd; i++)
    if (map[perm[i]] >= 0) p1[m1++] = map[perm[i]];
  /* Merge runs of output axes that are also consecutive source axes. */
  int gstart[KEEL_MAX_DIMS], glen[KEEL_MAX_DIMS], ng = 0;
  for (int i = 0; i < m1; i++) {
    if (ng > 0 && p1[i] == gstart[ng - 1] + glen[ng - 1]) glen[ng - 1]++;
    else { gstart[ng] = p1[i]; glen[ng] = 1; ng++; }
  }
  /* Source order of groups = order of their start axes. */
  int64_t d[KEEL_MAX_DIMS];
  int p[KEEL_MAX_DIMS];
  for (int g = 0; g < ng; g++) {
    int rank = 0;
    for (int h = 0; h < ng; h++)
      if (gstart[h] < gstart[g]) rank++;
    p[g] = rank;
    int64_t sz = 1;
    for (int a = gstart[g]; a < gstart[g] + glen[g]; a++) sz *= d1[a];
    d[rank] = sz;
  }
  int m = ng;
  const char *s = src;
  char *o = dst;
  bool ident = true;
  for (int i = 0; i < m; i++) ident = ident && p[i] == i;
  if (ident) {
    memcpy(dst, src, (size_t)total * es);
    return;
  }
  if (m == 2) { /* p == {1,0} */
    t2d_bytes(s, o, d[0], d[1], es);
    return;
  }
  if (m == 3 && p[0] == 0 && p[1] == 2 && p[2] == 1) {
    int64_t plane = d[1] * d[2];
    for (int64_t b = 0; b < d[0]; b++) t2d_bytes(s + (size_t)(b * plane) * es, o + (size_t)(b * plane) * es, d[1], d[2], es);
    return;
  }
  int64_t sstr[KEEL_MAX_DIMS], od[KEEL_MAX_DIMS], ostr_src[KEEL_MAX_DIMS];
  keel_tt_strides(d, m, sstr);
  for (int i = 0; i < m; i++) {
    od[i] = d[p[i]];
    ostr_src[i] = sstr[p[i]];
  }
  int64_t idx[KEEL_MAX_DIMS] = {0};
  if (p[m - 1] == m - 1) {
    /* Innermost axis stays innermost: copy contiguous rows. */
    size_t row = (size_t)od[m - 1] * es;
    int64_t rows = total / od[m - 1];
    int64_t off = 0;
    for (int64_t r = 0; r < rows; r++) {
      memcpy(o, s + (size_t)off * es, row);
      o += row;
      for (int a = m - 2; a >= 0; a--) {
        off += ostr_src[a];
        if (++idx[a] < od[a]) break;
        off -= ostr_src[a] * od[a];
        idx[a] = 0;
      }
    }
    return;
  }
  /* Generic: odometer over output rows, strided inner loop. */
  int64_t inner = od[m - 1], istr = ostr_src[m - 1];
  int64_t rows = total / inner, off = 0;
  for (int64_t r = 0; r < rows; r++) {
    switch (es) {
      case 4: {
        const uint32_t *sp = (const uint32_t *)s + off;
        uint32_t *op = (uint32_t *)o;
        for (int64_t j = 0; j < inner; j++) op[j] = sp[j * istr];
        break;
      }
      case 8: {
        const uint64_t *sp = (const uint64_t *)s + off;
        uint64_t *op = (uint64_t *)o;
        for (int64_t j = 0; j < inner; j++) op[j] = sp[j * istr];
        break;
      }
      default:
        for (int64_t j = 0; j < inner; j++) keel_tt_copy1(o + (size_t)j * es, s + (size_t)(off + j * istr) * es, es);
    }
    o += (size_t)inner * es;
    for (int a = m - 2; a >= 0; a--) {
      off += ostr_src[a];
      if (++idx[a] < od[a]) break;
      off -= ostr_src[a] * od[a];
      idx[a] = 0;
    }
  }
}

/* ---- broadcast copy ---- */

void keel_tt_broadcast_copy(const void *src, const int64_t *in_dims, int in_nd, void *dst, const int64_t *out_dims,
                            int out_nd, size_t es) {
  int64_t total = 1;
  for (int i = 0; i < out_nd; i++) total *= out_dims[i];
  if (total == 0) return;
  /* Right-align the input dims. */
  int64_t id[KEEL_MAX_DIMS];
  for (int i = 0; i < out_nd; i++) {
    int j = i - (out_nd - in_nd);
    id[i] = j >= 0 ? in_dims[j] : 1;
  }
  /* Fold trailing axes that are not broadcast into one contiguous chunk. */
  int r = out_nd;
  size_t chunk = es;
  while (r > 0 && id[r - 1] == out_dims[r - 1]) {
    chunk *= (size_t)out_dims[r - 1];
    r--;
  }
  const char *s = src;
  char *o = dst;
  if (r == 0) {
    memcpy(o, s, chunk);
    return;
  }
  int64_t istr[KEEL_MAX_DIMS], st = 1; /* in chunk units; 0 where broadcast */
  for (int i = r - 1; i >= 0; i--) {
    istr[i] = id[i] == 1 ? 0 : st;
    st *= id[i];
  }
  int64_t inner = out_dims[r - 1], rows = 1, idx[KEEL_MAX_DIMS] = {0}, off = 0;
  for (int i = 0; i < r - 1; i++) rows *= out_dims[i];
  for (int64_t row = 0; row < rows; row++) {
    if (istr[r - 1] == 0) {
      const char *e = s + (size_t)off * chunk;
      if (chunk == 4) {
        uint32_t v;
        memcpy(&v, e, 4);
        for (int64_t j = 0; j < inner; j++) memcpy(o + j * 4, &v, 4);
      } else {
        for (int64_t j = 0; j < inner; j++) memcpy(o + (size_t)j * chunk, e, chunk);
      }
    } else {
      memcpy(o, s + (size_t)off * chunk, (size_t)inner * chunk);
    }
    o += (size_t)inner * chunk;
    for (int a = r - 2; a >= 0; a--) {
      off += istr[a];
      if (++idx[a] < out_dims[a]) break;
      off -= istr[a] * out_dims[a];
      idx[a] = 0;
    }
  }
}
