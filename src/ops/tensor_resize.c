/* Tensor family: Resize (opset 10, 11-12, 13-17, 18, 19+) and Upsample (7-9).
 *
 * Resize is separable: for every resized axis and output coordinate we build a small table of taps
 * (input index, weight) in the workspace, then each output element is the tensor product of its axes'
 * taps. Nearest mode only moves bytes (any dtype); linear/cubic compute in double (float32 has a direct
 * path) and round/saturate for integer dtypes. Coordinate mapping follows the ONNX reference
 * implementation, including its use of scale * input_length as the "output width" of align_corners,
 * pytorch_half_pixel and tf_crop_and_resize. */
#include <math.h>

#include "ops/tensor_util.h"

enum { RZ_NEAREST, RZ_LINEAR, RZ_CUBIC };
enum { CT_HALF_PIXEL, CT_HALF_PIXEL_SYM, CT_PYTORCH, CT_ALIGN, CT_ASYM, CT_TF_NN, CT_TF_CROP };
enum { NM_ROUND_FLOOR, NM_ROUND_CEIL, NM_FLOOR, NM_CEIL, NM_SIMPLE };

typedef struct {
  int r, mode, ctm, nearest, n_taps[KEEL_MAX_DIMS];
  bool antialias, exclude_outside, identity[KEEL_MAX_DIMS];
  double cubic_a, extrap;
  double scale[KEEL_MAX_DIMS], roi_s[KEEL_MAX_DIMS], roi_e[KEEL_MAX_DIMS];
  int64_t in[KEEL_MAX_DIMS], out[KEEL_MAX_DIMS];
} rz_plan;

static bool is_upsample(const keel_node *n) { return !strcmp(n->op_type, "Upsample"); }

static keel_status *rz_attrs(const keel_node *n, rz_plan *p) {
  const char *m = keel_attr_string(n, "mode", "nearest");
  if (!strcmp(m, "nearest")) p->mode = RZ_NEAREST;
  else if (!strcmp(m, "linear") || !strcmp(m, "bilinear")) p->mode = RZ_LINEAR;
  else if (!strcmp(m, "cubic") && !is_upsample(n) && n->opset >= 11) p->mode = RZ_CUBIC;
  else return keel_error(KEEL_INVALID_MODEL, "unknown mode '%s'", m);
  p->ctm = CT_ASYM;
  p->nearest = NM_SIMPLE;
  p->antialias = false;
  p->exclude_outside = false;
  p->cubic_a = -0.75;
  p->extrap = 0;
  if (is_upsample(n) || n->opset < 11) return NULL;
  const char *c = keel_attr_string(n, "coordinate_transformation_mode", "half_pixel");
  static const char *const ctms[] = {"half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                                     "asymmetric", "tf_half_pixel_for_nn", "tf_crop_and_resize"};
  p->ctm = -1;
  for (int i = 0; i < 7; i++)
    if (!strcmp(c, ctms[i])) p->ctm = i;
  if (p->ctm < 0 || (p->ctm == CT_HALF_PIXEL_SYM && n->opset < 19))
    return keel_error(KEEL_INVALID_MODEL, "unknown coordinate_transformation_mode '%s'", c);
  const char *nm = keel_attr_string(n, "nearest_mode", "round_prefer_floor");
  static const char *const nms[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
  p->nearest = -1;
  for (int i = 0; i < 4; i++)
    if (!strcmp(nm, nms[i])) p->nearest = i;
  if (p->nearest < 0) return keel_error(KEEL_INVALID_MODEL, "unknown nearest_mode '%s'", nm);
  p->cubic_a = keel_attr_float(n, "cubic_coeff_a", -0.75f);
  p->exclude_outside = keel_attr_int(n, "exclude_outside", 0) != 0;
  p->extrap = keel_attr_float(n, "extrapolation_value", 0.0f);
  if (n->opset >= 18) {
    p->antialias = keel_attr_int(n, "antialias", 0) != 0;
    if (p->antialias && p->mode == RZ_NEAREST) return keel_error(KEEL_INVALID_MODEL, "antialias is not defined for nearest mode");
  }
  return NULL;
}

static bool view_given(const keel_view *in, int n_in, int i) {
  return i < n_in && keel_view_present(&in[i]) && keel_view_numel(&in[i]) > 0;
}

/* Fill the plan: per-axis scales and output sizes. roi values are read only when `need_roi`. */
static keel_status *rz_make(const keel_node *n, const keel_view *in, int n_in, rz_plan *p, bool need_roi) {
  if (n_in < 1 || !keel_view_present(&in[0])) return keel_error(KEEL_INVALID_MODEL, "input X is missing");
  size_t es;
  KEEL_TRY(keel_tt_esize(&in[0], "X", &es));
  KEEL_TRY(rz_attrs(n, p));
  int r = p->r = in[0].ndim;
  if (r < 1) return keel_error(KEEL_INVALID_MODEL, "X must have rank >= 1");
  if (p->mode != RZ_NEAREST && !keel_tt_is_float(in[0].dtype) && keel_dtype_size(in[0].dtype) > 4 &&
      in[0].dtype != KEEL_INT64)
    return keel_error(KEEL_UNSUPPORTED, "interpolating resize of dtype %s", keel_dtype_name(in[0].dtype));
  int ax[KEEL_MAX_DIMS], na = r;
  for (int i = 0; i < r; i++) ax[i] = i;
  if (!is_upsample(n) && n->opset >= 18) {
    const int64_t *a;
    int c = keel_attr_ints(n, "axes", &a);
    if (c > r) return keel_error(KEEL_INVALID_MODEL, "axes has %d entries for rank %d", c, r);
    if (c >= 0) {
      KEEL_TRY(keel_tt_norm_axes(a, c, r, "axes", ax));
      na = c;
    }
  }
  for (int i = 0; i < r; i++) {
    p->in[i] = in[0].dims[i];
    p->scale[i] = 1;
    p->out[i] = in[0].dims[i];
    p->roi_s[i] = 0;
    p->roi_e[i] = 1;
  }
  /* Where the scales / sizes / roi come from. */
  const keel_view *sc = NULL, *sz = NULL, *roi = NULL;
  const float *sattr = NULL;
  int ns = 0;
  if (is_upsample(n) && n->opset < 9) {
    ns = keel_attr_floats(n, "scales", &sattr);
    if (ns < 0) return keel_error(KEEL_INVALID_MODEL, "Upsample needs the 'scales' attribute");
  } else if (is_upsample(n) || n->opset == 10) {
    if (!view_given(in, n_in, 1)) return keel_error(KEEL_INVALID_MODEL, "input scales is missing");
    sc = &in[1];
  } else {
    if (view_given(in, n_in, 1)) roi = &in[1];
    if (view_given(in, n_in, 2)) sc = &in[2];
    if (view_given(in, n_in, 3)) sz = &in[3];
    if (!sc == !sz) return keel_error(KEEL_INVALID_MODEL, "exactly one of scales and sizes must be given");
  }
  if (sc) {
    if (!keel_tt_is_float(sc->dtype)) return keel_error(KEEL_INVALID_MODEL, "scales must be a float tensor");
    if (!sc->data) return keel_need_value(n, (int)(sc - in));
    ns = (int)keel_view_numel(sc);
  }
  if (sattr || sc) {
    if (ns != na) return keel_error(KEEL_INVALID_MODEL, "scales has %d entries, expected %d", ns, na);
    for (int i = 0; i < na; i++) {
      double s = sattr ? sattr[i] : keel_view_get_f64(sc, i);
      if (!(s > 0) || !isfinite(s)) return keel_error(KEEL_INVALID_MODEL, "scales[%d] = %g must be positive", i, s);
      if (is_upsample(n) && s < 1) return keel_error(KEEL_INVALID_MODEL, "Upsample scales[%d] = %g must be >= 1", i, s);
      double o = s * (double)p->in[ax[i]];
      if (o >= 9e15) return keel_error(KEEL_SHAPE_MISMATCH, "output dim %d overflows", ax[i]);
      p->scale[ax[i]] = s;
      p->out[ax[i]] = (int64_t)o;
    }
  } else {
    if (sz->dtype != KEEL_INT64) return keel_error(KEEL_INVALID_MODEL, "sizes must be int64");
    if (!sz->data) return keel_need_value(n, 3);
    if (keel_view_numel(sz) != na) return keel_error(KEEL_INVALID_MODEL, "sizes has %lld entries, expected %d", (long long)keel_view_numel(sz), na);
    for (int i = 0; i < na; i++) {
      int64_t o = keel_view_get_i64(sz, i);
      if (o < 0) return keel_error(KEEL_INVALID_MODEL, "sizes[%d] = %lld is negative", i, (long long)o);
      p->out[ax[i]] = o;
      p->scale[ax[i]] = p->in[ax[i]] ? (double)o / (double)p->in[ax[i]] : 1;
    }
    const char *pol = n->opset >= 18 ? keel_attr_string(n, "keep_aspect_ratio_policy", "stretch") : "stretch";
    if (strcmp(pol, "stretch")) {
      bool larger = !strcmp(pol, "not_smaller");
      if (!larger && strcmp(pol, "not_larger")) return keel_error(KEEL_INVALID_MODEL, "unknown keep_aspect_ratio_policy '%s'", pol);
      double s = p->scale[ax[0]];
      for (int i = 1; i < na; i++) s = larger ? fmax(s, p->scale[ax[i]]) : fmin(s, p->scale[ax[i]]);
      for (int i = 0; i < na; i++) {
        p->scale[ax[i]] = s;
        p->out[ax[i]] = (int64_t)(s * (double)p->in[ax[i]] + 0.5);
      }
    }
  }
  if (roi && p->ctm == CT_TF_CROP) {
    if (!keel_tt_is_float(roi->dtype)) return keel_error(KEEL_INVALID_MODEL, "roi must be a float tensor");
    if (keel_view_numel(roi) != 2 * na) return keel_error(KEEL_INVALID_MODEL, "roi has %lld entries, expected %d", (long long)keel_view_numel(roi), 2 * na);
    if (need_roi) {
      if (!roi->data) return keel_error(KEEL_INTERNAL, "roi values unavailable");
      for (int i = 0; i < na; i++) {
        p->roi_s[ax[i]] = keel_view_get_f64(roi, i);
        p->roi_e[ax[i]] = keel_view_get_f64(roi, na + i);
      }
    }
  }
  for (int i = 0; i < r; i++) {
    /* Like the reference: an axis with scale ~1, same length and a trivial roi is left alone. */
    p->identity[i] = fabs(p->scale[i] - 1) <= 1e-9 && p->out[i] == p->in[i] &&
                     (p->ctm != CT_TF_CROP || (fabs(p->roi_s[i]) <= 1e-9 && fabs(p->roi_e[i] - 1) <= 1e-9));
    if (p->in[i] == 0 && p->out[i] > 0)
      return keel_error(KEEL_SHAPE_MISMATCH, "cannot resize axis %d of length 0 to %lld", i, (long long)p->out[i]);
  }
  return NULL;
}

keel_status *keel_tt_resize_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  rz_plan p;
  KEEL_TRY(rz_make(n, in, n_in, &p, false));
  return keel_tt_set_out(&out[0], in[0].dtype, p.out, p.r);
}

/* Taps per output coordinate along an axis (an upper bound that depends on dims only, for the workspace). */
static int taps_bound(int mode, bool antialias, int64_t in, int64_t out) {
  if (mode == RZ_NEAREST) return 1;
  int base = mode == RZ_LINEAR ? 2 : 4;
  if (!antialias || out <= 0) return base;
  /* antialias support grows with 1/scale <= in / (out - 0.5) */
  double inv = (double)in / ((double)out - 0.5);
  return 2 * (int)ceil(base / 2 * inv) + 4;
}

static size_t ws_bytes(const keel_node *n, const int64_t *ind, const int64_t *outd, int r) {
  const char *m = keel_attr_string(n, "mode", "nearest");
  int mode = !strcmp(m, "cubic") ? RZ_CUBIC : !strcmp(m, "nearest") ? RZ_NEAREST : RZ_LINEAR;
  bool aa = !is_upsample(n) && n->opset >= 18 && keel_attr_int(n, "antialias", 0) != 0;
  size_t total = 64;
  for (int a = 0; a < r; a++) total += (size_t)outd[a] * (size_t)taps_bound(mode, aa, ind[a], outd[a]) * 16 + 16;
  return total;
}

size_t keel_tt_resize_workspace(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  return ws_bytes(n, in[0].dims, out[0].dims, in[0].ndim);
}

static double cubic_w(double x, double A) {
  x = fabs(x);
  if (x <= 1) return ((A + 2) * x - (A + 3)) * x * x + 1;
  if (x < 2) return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
  return 0;
}

/* Source coordinate of output coordinate x along axis a; *outside for tf_crop_and_resize extrapolation. */
static double rz_coord(const rz_plan *p, int a, int64_t x, bool *outside) {
  double s = p->scale[a], D = (double)p->in[a], Of = s * D, xo;
  *outside = false;
  switch (p->ctm) {
    case CT_HALF_PIXEL: xo = ((double)x + 0.5) / s - 0.5; break;
    case CT_HALF_PIXEL_SYM: {
      double adj = (double)p->out[a] / Of, off = D / 2 * (1 - adj);
      xo = off + ((double)x + 0.5) / s - 0.5;
      break;
    }
    case CT_PYTORCH: xo = Of == 1 ? -0.5 : ((double)x + 0.5) / s - 0.5; break;
    case CT_ALIGN: xo = Of == 1 ? 0 : (double)x * (D - 1) / (Of - 1); break;
    case CT_TF_NN: xo = ((double)x + 0.5) / s; break;
    case CT_TF_CROP: {
      double rs = p->roi_s[a], re = p->roi_e[a];
      xo = Of == 1 ? (re - rs) * (D - 1) / 2 : (double)x * (re - rs) * (D - 1) / (Of - 1);
      xo += rs * (D - 1);
      *outside = xo < 0 || xo > D - 1;
      break;
    }
    default: xo = (double)x / s; break;
  }
  return xo;
}

/* Build one axis' tap table: idx[o*T + t], w[o*T + t]; idx[o*T] = -1 marks an extrapolated coordinate. */
static keel_status *rz_axis_taps(const rz_plan *p, int a, int T, int64_t *idx, double *w) {
  int64_t D = p->in[a];
  for (int64_t x = 0; x < p->out[a]; x++) {
    int64_t *ix = idx + x * T;
    double *wx = w + x * T;
    for (int t = 0; t < T; t++) {
      ix[t] = 0;
      wx[t] = 0;
    }
    if (p->identity[a]) {
      ix[0] = x;
      wx[0] = 1;
      continue;
    }
    bool outside;
    double xo = rz_coord(p, a, x, &outside);
    if (outside) {
      ix[0] = -1;
      continue;
    }
    double fl = floor(xo), ratio = xo - fl;
    if (p->mode == RZ_NEAREST) {
      int64_t k;
      if (ratio == 0) k = (int64_t)fl;
      else switch (p->nearest) {
          case NM_ROUND_FLOOR: k = (int64_t)(ratio <= 0.5 ? fl : fl + 1); break;
          case NM_ROUND_CEIL: k = (int64_t)(ratio < 0.5 ? fl : fl + 1); break;
          case NM_FLOOR: k = (int64_t)fl; break;
          case NM_CEIL: k = (int64_t)fl + 1; break;
          default: k = (int64_t)(p->scale[a] < 1 ? fl + 1 : fl); break; /* opset-10 / Upsample behaviour */
        }
      ix[0] = k < 0 ? 0 : k >= D ? D - 1 : k;
      wx[0] = 1;
      continue;
    }
    /* The reference prefers the pixel left of xo: an exact integer gets ratio 1 from the previous pixel. */
    if (ratio == 0) {
      fl -= 1;
      ratio = 1;
    }
    double s = p->antialias ? fmin(p->scale[a], 1.0) : 1.0;
    int64_t start;
    int n;
    if (p->mode == RZ_LINEAR) {
      start = p->antialias ? (int64_t)floor(-1 / s) + 1 : 0;
    } else {
      start = p->antialias ? (int64_t)floor(-2 / s) + 1 : -1;
    }
    n = (int)(2 - 2 * start);
    if (n > T) return keel_error(KEEL_INTERNAL, "resize needs %d taps, workspace has %d", n, T);
    double sum = 0;
    for (int t = 0; t < n; t++) {
      double arg = ((double)(start + t) - ratio) * s;
      double c = p->mode == RZ_LINEAR ? fmax(0.0, 1 - fabs(arg)) : cubic_w(arg, p->cubic_a);
      int64_t k = (int64_t)fl + start + t;
      if (p->exclude_outside && (k < 0 || k >= D)) c = 0;
      ix[t] = k < 0 ? 0 : k >= D ? D - 1 : k;
      wx[t] = c;
      sum += c;
    }
    /* Antialias and exclude_outside renormalize; plain linear/cubic weights already sum to 1. */
    if ((p->antialias || p->exclude_outside) && sum != 0)
      for (int t = 0; t < n; t++) wx[t] /= sum;
  }
  return NULL;
}

typedef struct {
  const rz_plan *p;
  int T[KEEL_MAX_DIMS];
  const int64_t *idx[KEEL_MAX_DIMS];
  const double *w[KEEL_MAX_DIMS];
  int64_t istr[KEEL_MAX_DIMS];
  keel_dtype dt;
  const void *src;
} rz_ctx;

/* Weighted sum over the taps of axes a..r-1 for output coordinates x. */
static double rz_sum(const rz_ctx *c, int a, const int64_t *x, int64_t off) {
  if (a == c->p->r) {
    if (c->dt == KEEL_FLOAT32) return ((const float *)c->src)[off];
    return keel_tt_load_f64(c->dt, c->src, off);
  }
  int T = c->T[a];
  const int64_t *ix = c->idx[a] + x[a] * T;
  const double *wx = c->w[a] + x[a] * T;
  double acc = 0;
  for (int t = 0; t < T; t++)
    if (wx[t] != 0) acc += wx[t] * rz_sum(c, a + 1, x, off + ix[t] * c->istr[a]);
  return acc;
}

keel_status *keel_tt_resize_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                keel_exec *ex) {
  rz_plan p;
  KEEL_TRY(rz_make(n, in, n_in, &p, true));
  int r = p.r;
  for (int a = 0; a < r; a++)
    if (p.out[a] != out[0].dims[a]) return keel_error(KEEL_SHAPE_MISMATCH, "Resize output shape does not match its inputs");
  int64_t total = keel_view_numel(&out[0]);
  if (total == 0) return NULL;
  size_t need = ws_bytes(n, p.in, p.out, r);
  if (!ex || !ex->workspace || ex->workspace_bytes < need)
    return keel_error(KEEL_INTERNAL, "Resize needs %zu bytes of workspace, got %zu", need, ex ? ex->workspace_bytes : 0);
  rz_ctx c = {.p = &p, .dt = in[0].dtype, .src = in[0].data};
  char *ws = ex->workspace;
  for (int a = 0; a < r; a++) {
    c.T[a] = taps_bound(p.mode, p.antialias, p.in[a], p.out[a]);
    if (p.identity[a]) c.T[a] = 1;
    size_t cnt = (size_t)p.out[a] * (size_t)c.T[a];
    int64_t *ix = (int64_t *)ws;
    ws += (cnt * 8 + 15) / 16 * 16;
    double *w = (double *)ws;
    ws += (cnt * 8 + 15) / 16 * 16;
    KEEL_TRY(rz_axis_taps(&p, a, c.T[a], ix, w));
    c.idx[a] = ix;
    c.w[a] = w;
  }
  keel_tt_strides(p.in, r, c.istr);
  size_t es = keel_dtype_size(in[0].dtype);
  unsigned char fill[16] = {0};
  keel_tt_store_f64(in[0].dtype, fill, 0, p.extrap);
  const char *s = in[0].data;
  char *o = out[0].data;
  int64_t x[KEEL_MAX_DIMS] = {0}, L = p.out[r - 1], rows = total / L;
  const int64_t *lix = c.idx[r - 1];
  int lT = c.T[r - 1];
  for (int64_t row = 0; row < rows; row++) {
    /* Rows whose outer coordinates fall outside the crop are all extrapolation. */
    bool outside = false;
    int64_t off = 0;
    for (int a = 0; a < r - 1; a++) {
      if (c.idx[a][x[a] * c.T[a]] < 0) outside = true;
      off += c.idx[a][x[a] * c.T[a]] * c.istr[a];
    }
    if (outside) {
      for (int64_t j = 0; j < L; j++) memcpy(o + (size_t)j * es, fill, es);
    } else if (p.mode == RZ_NEAREST) {
      const char *sr = s + (size_t)off * es;
      for (int64_t j = 0; j < L; j++) {
        int64_t k = lix[j * lT];
        if (k < 0) memcpy(o + (size_t)j * es, fill, es);
        else keel_tt_copy1(o + (size_t)j * es, sr + (size_t)k * es, es);
      }
    } else {
      for (int64_t j = 0; j < L; j++) {
        x[r - 1] = j;
        double v = lix[j * lT] < 0 ? p.extrap : rz_sum(&c, 0, x, 0);
        if (c.dt == KEEL_FLOAT32) ((float *)o)[j] = (float)v;
        else keel_tt_store_f64(c.dt, o, j, v);
      }
      x[r - 1] = 0;
    }
    o += (size_t)L * es;
    for (int a = r - 2; a >= 0; a--) {
      if (++x[a] < p.out[a]) break;
      x[a] = 0;
    }
  }
  return NULL;
}
